/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The audit signing key against a real SoftHSMv2 token and PostgreSQL (the
 * harness's): creating v1 records it as current with the public key the
 * token holds, and the token reads back a sensitive, never-extractable,
 * sign-only P-256 key; a signature verifies with OpenSSL from the recorded
 * public key alone (in process and with the openssl command auditors use)
 * and fails for a changed message or signature; a second create makes v2
 * current and retires v1; a database that already records the next version,
 * bad rows and bad arguments are refused; pairs planted in the token under
 * an audit label (extractable, duplicated, half missing) are never used;
 * labels of another shape do not count as versions; and pkcs11-tool sees
 * the private key as sensitive, never extractable and sign-only, with no
 * value shown.
 *
 * Tests run in order and share the token and database: each says what it
 * leaves behind. The token PIN is handed to pkcs11-tool only and never
 * printed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "world.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "coffer/buf.h"
#include "coffer/mem.h"

static struct world w;
static char tmpdir[] = "/tmp/keys-auditkey-test.XXXXXX";

/* The public keys of v1 and v2 as create returned them. */
static struct coffer_keys_audit_key v1, v2;

static const char message[] = "coffer-audit-checkpoint v1\nseq 1\n";

static void check_ok(enum coffer_err r, const char *what)
{
    if (r != COFFER_OK) {
        fail_msg("%s: %s: %s", what, coffer_err_str(r), coffer_err_detail());
    }
}

static void assert_detail_has(const char *needle)
{
    if (strstr(coffer_err_detail(), needle) == NULL) {
        fail_msg("detail \"%s\" does not mention \"%s\"", coffer_err_detail(), needle);
    }
}

/* ECDSA-SHA256 over msg with the SubjectPublicKeyInfo alone, as an auditor verifies. */
static bool verifies(const unsigned char *spki, size_t spki_len, const void *msg, size_t len,
                     const unsigned char *sig, size_t sig_len)
{
    const unsigned char *p = spki;
    EVP_PKEY *pkey = d2i_PUBKEY(NULL, &p, (long)spki_len);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    bool ok;

    assert_non_null(pkey);
    assert_non_null(md);
    assert_int_equal(EVP_PKEY_get_base_id(pkey), EVP_PKEY_EC);
    assert_int_equal(EVP_PKEY_get_bits(pkey), 256);
    assert_int_equal(EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, pkey), 1);
    ok = EVP_DigestVerify(md, sig, sig_len, msg, len) == 1;
    EVP_MD_CTX_free(md);
    EVP_PKEY_free(pkey);
    return ok;
}

static void sign_ok(uint32_t version, const void *msg, size_t len, unsigned char *sig,
                    size_t *sig_len)
{
    check_ok(coffer_keys_audit_sign(w.k, version, msg, len, sig, sig_len), "signing");
    assert_true(*sig_len >= 8 && *sig_len <= COFFER_KEYS_AUDIT_SIG_MAX);
    /* A DER SEQUENCE of two INTEGERs. */
    assert_int_equal(sig[0], 0x30);
    assert_int_equal(sig[1], *sig_len - 2);
}

/* The attributes every audit signing key must read back with. */
static void assert_signing_attrs(const struct coffer_p11_ec_attrs *a, const char *label)
{
    assert_true(a->private_key);
    assert_true(a->ec);
    assert_true(a->p256);
    assert_true(a->common.token);
    assert_true(a->common.private_);
    assert_true(a->common.sensitive);
    assert_true(a->common.always_sensitive);
    assert_false(a->common.extractable);
    assert_true(a->common.never_extractable);
    assert_false(a->common.value_readable);
    assert_true(a->sign);
    assert_false(a->sign_recover);
    assert_false(a->derive);
    assert_false(a->common.decrypt);
    assert_false(a->common.unwrap);
    assert_false(a->common.encrypt);
    assert_false(a->common.wrap);
    assert_true(a->pub_token);
    assert_true(a->pub_verify);
    assert_false(a->pub_other_use);
    assert_true(a->same_id);
    assert_string_equal(a->common.label, label);
    assert_string_equal(a->pub_label, label);
    assert_int_equal(a->point[0], 0x04);
}

static uint32_t current_version(void)
{
    uint32_t v = 0;

    check_ok(coffer_store_audit_key_current(w.st, &v), "reading the current key");
    return v;
}

static struct coffer_p11_session *session(void)
{
    struct coffer_p11_session *s = NULL;

    check_ok(coffer_p11_session_get(w.p11, &s), "leasing a session");
    return s;
}

/* ---- Creating and signing ------------------------------------------------------------ */

/* Leaves v1 current. */
static void test_create_first(void **state)
{
    struct coffer_store_audit_key *rows = NULL;
    struct coffer_keys_audit_key loaded;
    unsigned char spki[COFFER_KEYS_SPKI_LEN];
    unsigned char fp[32];
    char sql[160];
    char hex[65];
    size_t n = 0;
    size_t len = 0;

    (void)state;
    assert_int_equal(coffer_store_audit_key_current(w.st, &(uint32_t){0}), COFFER_E_NOT_FOUND);
    check_ok(coffer_keys_audit_key_create(w.k, w.st, &v1), "creating v1");
    assert_int_equal(v1.version, 1);
    assert_string_equal(v1.label, "coffer-audit-v1");
    assert_int_equal(v1.spki_len, 91);
    assert_signing_attrs(&v1.attrs, "coffer-audit-v1");

    /* Recorded as current, with the public key the token holds. */
    assert_int_equal(current_version(), 1);
    check_ok(coffer_store_audit_key_list(w.st, &rows, &n), "listing");
    assert_int_equal(n, 1);
    assert_int_equal(rows[0].version, 1);
    assert_string_equal(rows[0].label, "coffer-audit-v1");
    assert_int_equal(rows[0].state, COFFER_KEY_CURRENT);
    assert_int_equal(rows[0].public_key_len, v1.spki_len);
    assert_memory_equal(rows[0].public_key, v1.spki, v1.spki_len);
    coffer_free(rows);

    /* The database's fingerprint is SHA-256 of exactly these bytes. */
    assert_int_equal(EVP_Digest(v1.spki, v1.spki_len, fp, NULL, EVP_sha256(), NULL), 1);
    coffer_hex(fp, sizeof(fp), hex);
    snprintf(sql, sizeof(sql),
             "SELECT encode(fingerprint, 'hex') FROM coffer.audit_signing_keys WHERE version = 1");
    assert_true(world_sql_is(&w, sql, hex));

    /* Loading finds the same key; the public key alone is the same bytes. */
    check_ok(coffer_keys_audit_key_load(w.k, 1, &loaded), "loading v1");
    assert_memory_equal(loaded.spki, v1.spki, v1.spki_len);
    assert_signing_attrs(&loaded.attrs, "coffer-audit-v1");
    check_ok(coffer_keys_audit_public(w.k, 1, spki, &len), "public key of v1");
    assert_int_equal(len, v1.spki_len);
    assert_memory_equal(spki, v1.spki, len);
}

static void test_sign_and_verify(void **state)
{
    unsigned char sig[COFFER_KEYS_AUDIT_SIG_MAX];
    unsigned char sig2[COFFER_KEYS_AUDIT_SIG_MAX];
    char changed[sizeof(message)];
    size_t sig_len = 0;
    size_t sig2_len = 0;

    (void)state;
    sign_ok(1, message, strlen(message), sig, &sig_len);
    assert_true(verifies(v1.spki, v1.spki_len, message, strlen(message), sig, sig_len));

    /* One changed byte of the message, or of the signature, and it fails. */
    memcpy(changed, message, sizeof(message));
    changed[strlen("coffer-audit-checkpoint v1\nseq ")] = '2';
    assert_false(verifies(v1.spki, v1.spki_len, changed, strlen(changed), sig, sig_len));
    assert_false(verifies(v1.spki, v1.spki_len, message, strlen(message) - 1, sig, sig_len));
    sig[sig_len - 1] ^= 1;
    assert_false(verifies(v1.spki, v1.spki_len, message, strlen(message), sig, sig_len));

    /* ECDSA is randomised: a second signature differs and verifies too. */
    sign_ok(1, message, strlen(message), sig2, &sig2_len);
    assert_true(verifies(v1.spki, v1.spki_len, message, strlen(message), sig2, sig2_len));
    sig[sig_len - 1] ^= 1;
    assert_false(sig_len == sig2_len && memcmp(sig, sig2, sig_len) == 0);
}

static void test_sign_refusals(void **state)
{
    unsigned char sig[COFFER_KEYS_AUDIT_SIG_MAX];
    unsigned char spki[COFFER_KEYS_SPKI_LEN];
    size_t sig_len = 99;

    (void)state;
    assert_int_equal(coffer_keys_audit_sign(w.k, 99, message, strlen(message), sig, &sig_len),
                     COFFER_E_NOT_FOUND);
    assert_int_equal(sig_len, 0);
    assert_detail_has("coffer-audit-v99");
    assert_int_equal(coffer_keys_audit_sign(w.k, 0, message, strlen(message), sig, &sig_len),
                     COFFER_E_INVALID);
    assert_int_equal(coffer_keys_audit_sign(w.k, 1, message, 0, sig, &sig_len), COFFER_E_INVALID);
    assert_int_equal(coffer_keys_audit_sign(w.k, 1, NULL, 4, sig, &sig_len), COFFER_E_INVALID);
    assert_int_equal(coffer_keys_audit_sign(w.k, 1, message, 4, NULL, &sig_len), COFFER_E_INVALID);
    assert_int_equal(coffer_keys_audit_sign(NULL, 1, message, 4, sig, &sig_len), COFFER_E_INVALID);
    assert_int_equal(coffer_keys_audit_key_create(w.k, NULL, NULL), COFFER_E_INVALID);
    assert_int_equal(coffer_keys_audit_public(w.k, 5, spki, &sig_len), COFFER_E_NOT_FOUND);
}

static void write_file(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wbe");

    assert_non_null(f);
    assert_int_equal(fwrite(p, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

/* The exact command an auditor runs, from the recorded public key alone. */
static void test_openssl_command_verifies(void **state)
{
    unsigned char sig[COFFER_KEYS_AUDIT_SIG_MAX];
    char pem_path[128], sig_path[128], msg_path[128], bad_path[128];
    const char *const envp[] = {"PATH=/usr/bin:/bin", NULL};
    const unsigned char *p = v1.spki;
    struct harness_run run;
    size_t sig_len = 0;
    EVP_PKEY *pkey;
    FILE *f;

    (void)state;
    sign_ok(1, message, strlen(message), sig, &sig_len);
    snprintf(pem_path, sizeof(pem_path), "%s/pub.pem", tmpdir);
    snprintf(sig_path, sizeof(sig_path), "%s/sig.der", tmpdir);
    snprintf(msg_path, sizeof(msg_path), "%s/message.txt", tmpdir);
    snprintf(bad_path, sizeof(bad_path), "%s/changed.txt", tmpdir);
    pkey = d2i_PUBKEY(NULL, &p, (long)v1.spki_len);
    assert_non_null(pkey);
    f = fopen(pem_path, "we");
    assert_non_null(f);
    assert_int_equal(PEM_write_PUBKEY(f, pkey), 1);
    assert_int_equal(fclose(f), 0);
    EVP_PKEY_free(pkey);
    write_file(sig_path, sig, sig_len);
    write_file(msg_path, message, strlen(message));
    write_file(bad_path, message, strlen(message) - 1);

    const char *const good[] = {"/usr/bin/openssl", "dgst",   "-sha256", "-verify", pem_path,
                                "-signature",       sig_path, msg_path,  NULL};
    harness_run(good, envp, &run);
    if (run.status != 0 || strstr(run.out, "Verified OK") == NULL) {
        fail_msg("openssl dgst -verify: status %d: %s", run.status, run.out);
    }
    const char *const bad[] = {"/usr/bin/openssl", "dgst",   "-sha256", "-verify", pem_path,
                               "-signature",       sig_path, bad_path,  NULL};
    harness_run(bad, envp, &run);
    assert_int_not_equal(run.status, 0);
    assert_non_null(strstr(run.out, "Verification failure"));
}

/* Leaves v2 current and v1 retired. */
static void test_second_create(void **state)
{
    struct coffer_store_audit_key *rows = NULL;
    unsigned char sig[COFFER_KEYS_AUDIT_SIG_MAX];
    size_t sig_len = 0;
    size_t n = 0;

    (void)state;
    check_ok(coffer_keys_audit_key_create(w.k, w.st, &v2), "creating v2");
    assert_int_equal(v2.version, 2);
    assert_string_equal(v2.label, "coffer-audit-v2");
    assert_signing_attrs(&v2.attrs, "coffer-audit-v2");
    assert_false(memcmp(v1.spki, v2.spki, v1.spki_len) == 0);
    assert_int_equal(current_version(), 2);
    check_ok(coffer_store_audit_key_list(w.st, &rows, &n), "listing");
    assert_int_equal(n, 2);
    assert_int_equal(rows[0].version, 1);
    assert_int_equal(rows[0].state, COFFER_KEY_RETIRED);
    assert_int_equal(rows[1].version, 2);
    assert_int_equal(rows[1].state, COFFER_KEY_CURRENT);
    assert_memory_equal(rows[1].public_key, v2.spki, v2.spki_len);
    coffer_free(rows);
    assert_true(world_sql_is(&w,
                             "SELECT retired_at IS NOT NULL FROM coffer.audit_signing_keys "
                             "WHERE version = 1",
                             "t"));

    /* Each key verifies its own signatures only. */
    sign_ok(2, message, strlen(message), sig, &sig_len);
    assert_true(verifies(v2.spki, v2.spki_len, message, strlen(message), sig, sig_len));
    assert_false(verifies(v1.spki, v1.spki_len, message, strlen(message), sig, sig_len));
    /* The retired key still loads and signs: older checkpoints stay verifiable. */
    sign_ok(1, message, strlen(message), sig, &sig_len);
    assert_true(verifies(v1.spki, v1.spki_len, message, strlen(message), sig, sig_len));
}

/* A database that records the next version already; leaves everything as it was. */
static void test_database_ahead_refused(void **state)
{
    struct coffer_p11_session *s;
    struct coffer_p11_ec_pair pair;
    struct coffer_keys_audit_key key;

    (void)state;
    check_ok(coffer_store_begin(w.st), "begin");
    check_ok(coffer_store_audit_key_insert(w.st, 3, "coffer-audit-v3", v1.spki, v1.spki_len),
             "recording v3 without a token key");
    assert_int_equal(coffer_keys_audit_key_create(w.k, w.st, &key), COFFER_E_EXISTS);
    assert_detail_has("coffer-audit-v3");
    assert_int_equal(key.version, 0);
    coffer_store_rollback(w.st);
    /* Nothing was made in the token. */
    s = session();
    assert_int_equal(coffer_p11_find_ec_pair(s, "coffer-audit-v3", &pair), COFFER_E_NOT_FOUND);
    coffer_p11_session_put(w.p11, &s);
    assert_int_equal(current_version(), 2);
}

static void test_store_refusals(void **state)
{
    unsigned char big[COFFER_STORE_SPKI_MAX + 1] = {0};

    (void)state;
    assert_int_equal(coffer_store_audit_key_insert(w.st, 0, "coffer-audit-v0", v1.spki, 91),
                     COFFER_E_INVALID);
    assert_int_equal(coffer_store_audit_key_insert(w.st, 9, "coffer-audit-v8", v1.spki, 91),
                     COFFER_E_INVALID);
    assert_int_equal(coffer_store_audit_key_insert(w.st, 9, NULL, v1.spki, 91), COFFER_E_INVALID);
    assert_int_equal(coffer_store_audit_key_insert(w.st, 9, "coffer-audit-v9", v1.spki, 0),
                     COFFER_E_INVALID);
    assert_int_equal(coffer_store_audit_key_insert(w.st, 9, "coffer-audit-v9", big, sizeof(big)),
                     COFFER_E_INVALID);
    assert_int_equal(coffer_store_audit_key_insert(w.st, 9, "coffer-audit-v9", NULL, 91),
                     COFFER_E_INVALID);
    /* A recorded version is refused, and the failed transaction retires nothing. */
    assert_int_equal(coffer_store_audit_key_insert(w.st, 1, "coffer-audit-v1", v1.spki, 91),
                     COFFER_E_EXISTS);
    assert_int_equal(current_version(), 2);
    assert_int_equal(coffer_store_audit_key_current(w.st, NULL), COFFER_E_INVALID);
    assert_int_equal(coffer_store_audit_key_list(w.st, NULL, NULL), COFFER_E_INVALID);
}

/* ---- Keys planted in the token ------------------------------------------------------- */

/* Leaves an extractable v7 in the token and v8 current. */
static void test_planted_extractable_refused(void **state)
{
    struct coffer_p11_ec_spec spec = {.label = "coffer-audit-v7", .extractable = true};
    struct coffer_p11_ec_pair pair;
    struct coffer_p11_ec_attrs attrs;
    struct coffer_keys_audit_key key;
    struct coffer_keys_audit_key v8;
    unsigned char sig[COFFER_KEYS_AUDIT_SIG_MAX];
    unsigned char spki[COFFER_KEYS_SPKI_LEN];
    size_t sig_len = 1;
    struct coffer_p11_session *s = session();

    (void)state;
    check_ok(coffer_p11_generate_ec_p256(s, &spec, &pair), "planting an extractable pair");
    check_ok(coffer_p11_ec_attrs(s, &pair, &attrs), "reading the planted pair");
    assert_true(attrs.common.extractable);
    assert_false(attrs.common.never_extractable);
    coffer_p11_session_put(w.p11, &s);

    assert_int_equal(coffer_keys_audit_key_load(w.k, 7, &key), COFFER_E_INTEGRITY);
    assert_detail_has("CKA_EXTRACTABLE");
    assert_int_equal(key.version, 0);
    assert_int_equal(coffer_keys_audit_sign(w.k, 7, message, strlen(message), sig, &sig_len),
                     COFFER_E_INTEGRITY);
    assert_int_equal(sig_len, 0);
    assert_int_equal(coffer_keys_audit_public(w.k, 7, spki, &sig_len), COFFER_E_INTEGRITY);

    /* The next version is counted from the token, planted objects included. */
    check_ok(coffer_keys_audit_key_create(w.k, w.st, &v8), "creating after the planted pair");
    assert_int_equal(v8.version, 8);
    assert_int_equal(current_version(), 8);
}

/* A second pair under v1's label makes v1 unusable until it is gone. */
static void test_duplicate_label_refused(void **state)
{
    struct coffer_p11_ec_spec spec = {.label = "coffer-audit-v1", .extractable = false};
    struct coffer_p11_ec_pair twin;
    struct coffer_keys_audit_key key;
    unsigned char sig[COFFER_KEYS_AUDIT_SIG_MAX];
    size_t sig_len = 0;
    struct coffer_p11_session *s = session();

    (void)state;
    check_ok(coffer_p11_generate_ec_p256(s, &spec, &twin), "planting a twin of v1");
    coffer_p11_session_put(w.p11, &s);
    assert_int_equal(coffer_keys_audit_key_load(w.k, 1, &key), COFFER_E_INTEGRITY);
    assert_detail_has("more than one");
    assert_int_equal(coffer_keys_audit_sign(w.k, 1, message, strlen(message), sig, &sig_len),
                     COFFER_E_INTEGRITY);

    s = session();
    coffer_p11_destroy(s, &twin.priv);
    coffer_p11_destroy(s, &twin.pub);
    coffer_p11_session_put(w.p11, &s);
    check_ok(coffer_keys_audit_key_load(w.k, 1, &key), "loading v1 again");
    assert_memory_equal(key.spki, v1.spki, v1.spki_len);
}

/* A private key without its public half (v20) is not a key; leaves it in the token. */
static void test_half_missing(void **state)
{
    struct coffer_p11_ec_spec spec = {.label = "coffer-audit-v20", .extractable = false};
    struct coffer_p11_ec_pair pair;
    struct coffer_keys_audit_key key;
    struct coffer_p11_session *s = session();

    (void)state;
    check_ok(coffer_p11_generate_ec_p256(s, &spec, &pair), "planting v20");
    coffer_p11_destroy(s, &pair.pub);
    coffer_p11_session_put(w.p11, &s);
    assert_int_equal(coffer_keys_audit_key_load(w.k, 20, &key), COFFER_E_NOT_FOUND);
    assert_detail_has("public key");
}

/* Only "coffer-audit-v<n>" with n in 1..INT32_MAX, without a leading zero, counts. */
static void test_label_versions(void **state)
{
    static const char *const odd[] = {"coffer-audit-v0999", "coffer-audit-v2147483648",
                                      "coffer-audit-v30x",  "coffer-audit-v",
                                      "coffer-audit-v-40",  "xcoffer-audit-v50"};
    struct coffer_p11_keyspec spec = {.persistent = true, .usage = COFFER_P11_ENCRYPT};
    struct coffer_p11_session *s = session();
    coffer_p11_obj obj = 0;
    uint32_t max = 0;

    (void)state;
    check_ok(coffer_p11_label_max_version(s, "coffer-audit-v", &max), "versions");
    assert_int_equal(max, 20);
    for (size_t i = 0; i < sizeof(odd) / sizeof(odd[0]); i++) {
        spec.label = odd[i];
        check_ok(coffer_p11_generate_aes(s, &spec, &obj), "planting an oddly labelled key");
    }
    check_ok(coffer_p11_label_max_version(s, "coffer-audit-v", &max), "versions");
    assert_int_equal(max, 20);
    check_ok(coffer_p11_label_max_version(s, "coffer-mk-v", &max), "master key versions");
    assert_int_equal(max, 1);
    check_ok(coffer_p11_label_max_version(s, "no-such-prefix-", &max), "no versions");
    assert_int_equal(max, 0);
    assert_int_equal(coffer_p11_label_max_version(s, "", &max), COFFER_E_INVALID);
    assert_int_equal(coffer_p11_label_max_version(s, NULL, &max), COFFER_E_INVALID);
    assert_int_equal(coffer_p11_label_max_version(s, "x", NULL), COFFER_E_INVALID);
    coffer_p11_session_put(w.p11, &s);
}

static void test_p11_refusals(void **state)
{
    struct coffer_p11_ec_spec spec = {.label = NULL};
    struct coffer_p11_ec_pair pair = {.priv = 1, .pub = 1};
    struct coffer_p11_ec_attrs attrs;
    unsigned char digest[COFFER_ECDSA_DIGEST_LEN] = {0};
    unsigned char sig[COFFER_ECDSA_P256_SIG_LEN];
    char long_label[80];
    struct coffer_p11_session *s = session();

    (void)state;
    assert_int_equal(coffer_p11_generate_ec_p256(s, &spec, &pair), COFFER_E_INVALID);
    assert_int_equal(pair.priv, 0);
    assert_int_equal(coffer_p11_generate_ec_p256(s, NULL, &pair), COFFER_E_INVALID);
    memset(long_label, 'a', sizeof(long_label) - 1);
    long_label[sizeof(long_label) - 1] = '\0';
    spec.label = long_label;
    assert_int_equal(coffer_p11_generate_ec_p256(s, &spec, &pair), COFFER_E_INVALID);
    assert_int_equal(coffer_p11_find_ec_pair(s, "", &pair), COFFER_E_INVALID);
    assert_int_equal(coffer_p11_find_ec_pair(s, "coffer-audit-v404", &pair), COFFER_E_NOT_FOUND);
    assert_detail_has("private key");
    assert_int_equal(coffer_p11_ec_attrs(s, NULL, &attrs), COFFER_E_INVALID);
    assert_int_equal(coffer_p11_ecdsa_sign(s, 0, digest, sig), COFFER_E_INVALID);
    assert_int_equal(coffer_p11_ecdsa_sign(s, 5, NULL, sig), COFFER_E_INVALID);
    assert_int_equal(coffer_p11_ecdsa_sign(NULL, 5, digest, sig), COFFER_E_INVALID);

    /* The public half cannot sign, and the token says so. */
    check_ok(coffer_p11_find_ec_pair(s, "coffer-audit-v2", &pair), "finding v2");
    assert_int_not_equal(coffer_p11_ecdsa_sign(s, pair.pub, digest, sig), COFFER_OK);
    /* The session is still usable afterwards. */
    check_ok(coffer_p11_ecdsa_sign(s, pair.priv, digest, sig), "signing with v2");
    coffer_p11_session_put(w.p11, &s);
}

/* ---- What another PKCS#11 tool sees ------------------------------------------------- */

static void read_pin(char *out, size_t n)
{
    const char *path = w.h.p11.pin_source + strlen("file:");
    FILE *f = fopen(path, "re");

    assert_int_equal(strncmp(w.h.p11.pin_source, "file:", 5), 0);
    assert_non_null(f);
    assert_non_null(fgets(out, (int)n, f));
    fclose(f);
    out[strcspn(out, "\n")] = '\0';
}

/*
 * The private-key entry labelled label in a --list-objects listing: from its
 * "Private Key Object" line through its indented attribute lines.
 */
static const char *privkey_block(const char *listing, const char *label, char *out, size_t n)
{
    char want[96];
    const char *at;
    const char *start;
    const char *end;

    snprintf(want, sizeof(want), "  label:      %s\n", label);
    at = strstr(listing, want);
    if (at == NULL) {
        return NULL;
    }
    start = at;
    while (start > listing && strncmp(start, "Private Key Object", 18) != 0) {
        start--;
    }
    if (strncmp(start, "Private Key Object", 18) != 0) {
        return NULL;
    }
    end = strchr(at, '\n');
    while (end != NULL && strncmp(end + 1, "  ", 2) == 0) {
        end = strchr(end + 1, '\n');
    }
    if (end == NULL) {
        end = at + strlen(at);
    }
    snprintf(out, n, "%.*s", (int)(end - start), start);
    return out;
}

static void test_pkcs11_tool(void **state)
{
    char conf[PATH_MAX + 16];
    char pin[256];
    char block[2048];
    const char *envp[] = {conf, "PATH=/usr/bin:/bin", NULL};
    struct harness_run run;

    (void)state;
    if (access("/usr/bin/pkcs11-tool", X_OK) != 0) {
        printf("pkcs11-tool is not installed (package opensc): this check is not run\n");
        return;
    }
    snprintf(conf, sizeof(conf), "SOFTHSM2_CONF=%s", w.h.env.softhsm_conf);
    read_pin(pin, sizeof(pin));
    const char *const list[] = {"/usr/bin/pkcs11-tool", "--module", w.h.env.module, "--token-label",
                                w.h.token_label,        "--login",  "--pin",        pin,
                                "--list-objects",       "--type",   "privkey",      NULL};
    harness_run(list, (const char *const *)envp, &run);
    coffer_wipe(pin, sizeof(pin));
    if (run.status != 0) {
        fail_msg("pkcs11-tool --list-objects exited with %d", run.status);
    }
    if (privkey_block(run.out, "coffer-audit-v2", block, sizeof(block)) == NULL) {
        fail_msg("pkcs11-tool lists no private key coffer-audit-v2:\n%s", run.out);
    }
    assert_non_null(strstr(block, "Private Key Object; EC"));
    assert_non_null(strstr(block, "\n  Usage:      sign\n"));
    assert_non_null(
        strstr(block, "\n  Access:     sensitive, always sensitive, never extractable"));
    /* No CKA_VALUE is shown, and no other use. */
    assert_null(strstr(block, "value"));
    assert_null(strstr(block, "decrypt"));
    assert_null(strstr(block, "derive"));
    assert_null(strstr(block, "unwrap"));

    /* The planted v7 shows what the checks above would catch. */
    if (privkey_block(run.out, "coffer-audit-v7", block, sizeof(block)) == NULL) {
        fail_msg("pkcs11-tool lists no private key coffer-audit-v7:\n%s", run.out);
    }
    assert_null(strstr(block, "never extractable"));
    assert_non_null(strstr(block, "extractable"));
}

static int make_tmpdir(void **state)
{
    (void)state;
    if (mkdtemp(tmpdir) == NULL) {
        fprintf(stderr, "mkdtemp: %s\n", strerror(errno));
        return -1;
    }
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_first),
        cmocka_unit_test(test_sign_and_verify),
        cmocka_unit_test(test_sign_refusals),
        cmocka_unit_test(test_openssl_command_verifies),
        cmocka_unit_test(test_second_create),
        cmocka_unit_test(test_database_ahead_refused),
        cmocka_unit_test(test_store_refusals),
        cmocka_unit_test(test_planted_extractable_refused),
        cmocka_unit_test(test_duplicate_label_refused),
        cmocka_unit_test(test_half_missing),
        cmocka_unit_test(test_label_versions),
        cmocka_unit_test(test_p11_refusals),
        cmocka_unit_test(test_pkcs11_tool),
    };
    int failed;

    world_open("keys_auditkey", "auditkey", &w);
    failed = cmocka_run_group_tests(tests, make_tmpdir, NULL);
    if (coffer_dev_remove_tree(tmpdir) != COFFER_OK) {
        fprintf(stderr, "removing %s: %s\n", tmpdir, coffer_err_detail());
    }
    world_close(&w);
    return failed;
}

/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The embedded default's test CA: provisioning into a fresh directory gives
 * every file with its mode; each leaf verifies against ca.pem for its
 * purpose (and not for the other); the server names localhost, 127.0.0.1
 * and ::1; each client certificate names its principal. A second run reuses
 * the files byte for byte; a missing, garbled, mismatched or nearly expired
 * file makes a whole new, consistent set; a link, an open mode or a missing
 * parent is refused.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "coffer/dev.h"
#include "coffer/spiffe.h"

#define FILE_MAX 16384
#define N_FILES 10

struct fixture {
    char base[64]; /* the mkdtemp directory: DIR */
    struct coffer_dev_tls tls;
};

/* A snapshot of the set: every file's bytes. */
struct snapshot {
    char data[N_FILES][FILE_MAX];
    size_t len[N_FILES];
};

static char ca_key_path[PATH_MAX + 16];

static const char *file_path(const struct coffer_dev_tls *t, int i)
{
    const char *const paths[N_FILES] = {
        t->ca,        ca_key_path,   t->server_cert, t->server_key,  t->admin_cert,
        t->admin_key, t->agent_cert, t->agent_key,   t->agent2_cert, t->agent2_key,
    };

    return paths[i];
}

static bool is_key(int i)
{
    return i % 2 == 1;
}

static void read_file(const char *path, char *buf, size_t cap, size_t *len)
{
    FILE *f = fopen(path, "rb");

    if (f == NULL) {
        fail_msg("cannot open %s", path);
    }
    *len = fread(buf, 1, cap, f);
    assert_true(*len > 0 && *len < cap);
    fclose(f);
}

static void take_snapshot(const struct coffer_dev_tls *t, struct snapshot *s)
{
    for (int i = 0; i < N_FILES; i++) {
        read_file(file_path(t, i), s->data[i], sizeof(s->data[i]), &s->len[i]);
    }
}

static bool same_file(const struct snapshot *a, const struct snapshot *b, int i)
{
    return a->len[i] == b->len[i] && memcmp(a->data[i], b->data[i], a->len[i]) == 0;
}

static X509 *load_cert(const char *path)
{
    FILE *f = fopen(path, "rb");
    X509 *x;

    assert_non_null(f);
    x = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    if (x == NULL) {
        fail_msg("%s is not a PEM certificate", path);
    }
    return x;
}

static EVP_PKEY *load_key(const char *path)
{
    FILE *f = fopen(path, "rb");
    EVP_PKEY *k;

    assert_non_null(f);
    k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    if (k == NULL) {
        fail_msg("%s is not a PEM private key", path);
    }
    return k;
}

static void write_file(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");

    assert_non_null(f);
    assert_int_equal(fwrite(p, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

static mode_t mode_of(const char *path)
{
    struct stat st;

    assert_int_equal(lstat(path, &st), 0);
    return st.st_mode & 07777;
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));

    if (f == NULL) {
        return -1;
    }
    snprintf(f->base, sizeof(f->base), "/tmp/coffer-devtls-XXXXXX");
    if (mkdtemp(f->base) == NULL) {
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    int rc = coffer_dev_remove_tree(f->base) == COFFER_OK ? 0 : -1;

    free(f);
    return rc;
}

static void provision_ok(struct fixture *f)
{
    enum coffer_err r = coffer_dev_tls_provision(f->base, &f->tls);

    if (r != COFFER_OK) {
        fail_msg("coffer_dev_tls_provision: %s: %s", coffer_err_str(r), coffer_err_detail());
    }
    snprintf(ca_key_path, sizeof(ca_key_path), "%s/ca.key", f->tls.dir);
}

/* 1 if leaf chains to ca for purpose, else 0 (the verification error is printed). */
static int verifies(X509 *ca, X509 *leaf, int purpose)
{
    X509_STORE *store = X509_STORE_new();
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    int ok;

    assert_non_null(store);
    assert_non_null(ctx);
    assert_int_equal(X509_STORE_add_cert(store, ca), 1);
    assert_int_equal(X509_STORE_CTX_init(ctx, store, leaf, NULL), 1);
    assert_int_equal(X509_STORE_CTX_set_purpose(ctx, purpose), 1);
    ok = X509_verify_cert(ctx);
    if (ok != 1) {
        print_message("verification: %s\n",
                      X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx)));
    }
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(store);
    ERR_clear_error();
    return ok == 1;
}

static void expect_principal(X509 *cert, enum coffer_principal_kind kind, const char *org,
                             const char *type, const char *instance, const char *admin)
{
    struct coffer_principal p;

    if (coffer_spiffe_from_cert(cert, COFFER_DEV_TRUST_DOMAIN, &p) != COFFER_OK) {
        fail_msg("coffer_spiffe_from_cert: %s", coffer_err_detail());
    }
    assert_int_equal(p.kind, kind);
    assert_string_equal(p.trust_domain, "coffer.dev");
    assert_string_equal(p.org, org);
    assert_string_equal(p.agent_type, type);
    assert_string_equal(p.instance, instance);
    assert_string_equal(p.admin, admin);
}

static void expect_p256(EVP_PKEY *k)
{
    char group[64];
    size_t len = 0;

    assert_int_equal(EVP_PKEY_get_base_id(k), EVP_PKEY_EC);
    assert_int_equal(EVP_PKEY_get_group_name(k, group, sizeof(group), &len), 1);
    assert_string_equal(group, "prime256v1");
}

/* Checks the whole set on disk: modes, formats, the CA, every leaf and its principal. */
static void check_set(const struct coffer_dev_tls *t)
{
    X509 *ca = load_cert(t->ca);
    X509 *cert[4] = {load_cert(t->server_cert), load_cert(t->admin_cert), load_cert(t->agent_cert),
                     load_cert(t->agent2_cert)};
    const char *keys[4] = {t->server_key, t->admin_key, t->agent_key, t->agent2_key};
    EVP_PKEY *ca_key = load_key(ca_key_path);
    char subject[256];

    assert_int_equal(mode_of(t->dir), 0700);
    for (int i = 0; i < N_FILES; i++) {
        char text[FILE_MAX];
        size_t len;

        assert_int_equal(mode_of(file_path(t, i)), is_key(i) ? 0600 : 0644);
        read_file(file_path(t, i), text, sizeof(text), &len);
        text[len] = '\0';
        /* Keys are unencrypted PKCS#8; certificates plain PEM. */
        assert_ptr_equal(strstr(text, is_key(i) ? "-----BEGIN PRIVATE KEY-----\n"
                                                : "-----BEGIN CERTIFICATE-----\n"),
                         text);
    }

    /* The CA: self-signed, a CA, for signing certificates, matching its key. */
    X509_NAME_oneline(X509_get_subject_name(ca), subject, sizeof(subject));
    assert_non_null(strstr(subject, "CN=Coffer dev CA"));
    assert_int_equal(X509_check_ca(ca), 1);
    assert_int_equal(X509_check_private_key(ca, ca_key), 1);
    assert_true((X509_get_extension_flags(ca) & EXFLAG_SS) != 0);
    assert_true((X509_get_key_usage(ca) & KU_KEY_CERT_SIGN) != 0);
    assert_true(X509_get_ext_by_NID(ca, NID_basic_constraints, -1) >= 0);
    assert_int_equal(X509_EXTENSION_get_critical(
                         X509_get_ext(ca, X509_get_ext_by_NID(ca, NID_basic_constraints, -1))),
                     1);
    assert_int_equal(X509_get_signature_nid(ca), NID_ecdsa_with_SHA256);
    expect_p256(ca_key);

    for (int i = 0; i < 4; i++) {
        EVP_PKEY *k = load_key(keys[i]);

        assert_int_equal(X509_check_private_key(cert[i], k), 1);
        assert_int_equal(X509_check_ca(cert[i]), 0);
        assert_int_equal(X509_get_signature_nid(cert[i]), NID_ecdsa_with_SHA256);
        expect_p256(k);
        /* Different keys for every certificate. */
        assert_int_equal(X509_check_private_key(cert[(i + 1) % 4], k), 0);
        ERR_clear_error();
        EVP_PKEY_free(k);
    }

    /* The server is a server for localhost and both loopback addresses, and not a client. */
    assert_true(verifies(ca, cert[0], X509_PURPOSE_SSL_SERVER));
    assert_false(verifies(ca, cert[0], X509_PURPOSE_SSL_CLIENT));
    assert_int_equal(X509_check_ip_asc(cert[0], "127.0.0.1", 0), 1);
    assert_int_equal(X509_check_ip_asc(cert[0], "::1", 0), 1);
    assert_int_equal(X509_check_host(cert[0], "localhost", 0, 0, NULL), 1);
    assert_int_equal(X509_check_ip_asc(cert[0], "127.0.0.2", 0), 0);

    /* Each client is a client, not a server, and names its principal. */
    for (int i = 1; i < 4; i++) {
        assert_true(verifies(ca, cert[i], X509_PURPOSE_SSL_CLIENT));
        assert_false(verifies(ca, cert[i], X509_PURPOSE_SSL_SERVER));
    }
    expect_principal(cert[1], COFFER_PRINCIPAL_ADMIN, "dev", "", "", "admin");
    expect_principal(cert[2], COFFER_PRINCIPAL_AGENT, "dev", "deployer", "deployer-1", "");
    expect_principal(cert[3], COFFER_PRINCIPAL_AGENT, "dev", "analyst", "analyst-1", "");

    /* Serials are random and distinct. */
    for (int i = 0; i < 4; i++) {
        assert_int_not_equal(
            ASN1_INTEGER_cmp(X509_get0_serialNumber(ca), X509_get0_serialNumber(cert[i])), 0);
    }

    EVP_PKEY_free(ca_key);
    X509_free(ca);
    for (int i = 0; i < 4; i++) {
        X509_free(cert[i]);
    }
}

static void test_fresh(void **state)
{
    struct fixture *f = *state;
    char expect[PATH_MAX];

    provision_ok(f);
    snprintf(expect, sizeof(expect), "%s/tls/agent2.key", f->base);
    assert_string_equal(f->tls.agent2_key, expect);
    snprintf(expect, sizeof(expect), "%s/tls/ca.pem", f->base);
    assert_string_equal(f->tls.ca, expect);
    check_set(&f->tls);
}

static void test_reuse_is_byte_identical(void **state)
{
    struct fixture *f = *state;
    struct snapshot *a = calloc(1, sizeof(*a));
    struct snapshot *b = calloc(1, sizeof(*b));

    assert_non_null(a);
    assert_non_null(b);
    provision_ok(f);
    take_snapshot(&f->tls, a);
    provision_ok(f);
    take_snapshot(&f->tls, b);
    for (int i = 0; i < N_FILES; i++) {
        assert_true(same_file(a, b, i));
    }
    free(a);
    free(b);
}

/* After damage to file victim (by damage), the next run makes a whole new, consistent set. */
static void expect_regenerated(struct fixture *f, int victim,
                               void (*damage)(const struct coffer_dev_tls *t, int i))
{
    struct snapshot *a = calloc(1, sizeof(*a));
    struct snapshot *b = calloc(1, sizeof(*b));

    assert_non_null(a);
    assert_non_null(b);
    provision_ok(f);
    take_snapshot(&f->tls, a);
    damage(&f->tls, victim);
    provision_ok(f);
    take_snapshot(&f->tls, b);
    /* Every file is new: no certificate or key of the old set survives beside the new CA. */
    for (int i = 0; i < N_FILES; i++) {
        assert_false(same_file(a, b, i));
    }
    check_set(&f->tls);
    free(a);
    free(b);
}

static void remove_file(const struct coffer_dev_tls *t, int i)
{
    assert_int_equal(unlink(file_path(t, i)), 0);
}

static void garble_file(const struct coffer_dev_tls *t, int i)
{
    static const char junk[] = "-----BEGIN CERTIFICATE-----\nnot base64 at all\n";

    write_file(file_path(t, i), junk, sizeof(junk) - 1);
}

/* agent.pem := agent2.pem: issued by the CA, but not for agent.key. */
static void swap_cert(const struct coffer_dev_tls *t, int i)
{
    char buf[FILE_MAX];
    size_t len;

    (void)i;
    read_file(t->agent2_cert, buf, sizeof(buf), &len);
    write_file(t->agent_cert, buf, len);
}

/* agent.pem re-issued by the same CA for the same key, expiring in an hour. */
static void nearly_expire(const struct coffer_dev_tls *t, int i)
{
    X509 *cert = load_cert(file_path(t, i));
    EVP_PKEY *ca_key = load_key(ca_key_path);
    FILE *out;

    assert_non_null(X509_gmtime_adj(X509_getm_notAfter(cert), 3600));
    assert_true(X509_sign(cert, ca_key, EVP_sha256()) > 0);
    out = fopen(file_path(t, i), "wb");
    assert_non_null(out);
    assert_int_equal(PEM_write_X509(out, cert), 1);
    assert_int_equal(fclose(out), 0);
    EVP_PKEY_free(ca_key);
    X509_free(cert);
}

/* agent.pem replaced by a certificate for agent.key from another CA. */
static void foreign_issuer(const struct coffer_dev_tls *t, int i)
{
    X509 *cert = load_cert(file_path(t, i));
    EVP_PKEY *other = EVP_EC_gen("P-256");
    FILE *out;

    assert_non_null(other);
    assert_true(X509_sign(cert, other, EVP_sha256()) > 0);
    out = fopen(file_path(t, i), "wb");
    assert_non_null(out);
    assert_int_equal(PEM_write_X509(out, cert), 1);
    assert_int_equal(fclose(out), 0);
    EVP_PKEY_free(other);
    X509_free(cert);
}

static void test_missing_file_regenerates(void **state)
{
    struct fixture *f = *state;

    for (int i = 0; i < N_FILES; i++) {
        print_message("removing file %d\n", i);
        expect_regenerated(f, i, remove_file);
    }
}

static void test_garbled_file_regenerates(void **state)
{
    struct fixture *f = *state;

    expect_regenerated(f, 0, garble_file);
    expect_regenerated(f, 5, garble_file);
    expect_regenerated(f, 8, garble_file);
}

static void test_inconsistent_set_regenerates(void **state)
{
    struct fixture *f = *state;

    expect_regenerated(f, 6, swap_cert);
    expect_regenerated(f, 6, nearly_expire);
    expect_regenerated(f, 6, foreign_issuer);
}

static void test_refusals(void **state)
{
    static struct snapshot snap[2];
    struct fixture *f = *state;
    struct coffer_dev_tls t;
    char path[128];
    char target[256];

    /* No directory, no output. */
    assert_int_equal(coffer_dev_tls_provision(NULL, &t), COFFER_E_INVALID);
    assert_int_equal(coffer_dev_tls_provision("", &t), COFFER_E_INVALID);
    assert_int_equal(coffer_dev_tls_provision(f->base, NULL), COFFER_E_INVALID);

    /* DIR must exist. */
    snprintf(path, sizeof(path), "%s/absent", f->base);
    assert_int_equal(coffer_dev_tls_provision(path, &t), COFFER_E_IO);
    assert_non_null(strstr(coffer_err_detail(), "absent/tls"));

    /* DIR/tls open to others is refused, not silently used. */
    snprintf(path, sizeof(path), "%s/open", f->base);
    assert_int_equal(mkdir(path, 0700), 0);
    snprintf(target, sizeof(target), "%s/tls", path);
    assert_int_equal(mkdir(target, 0700), 0);
    assert_int_equal(chmod(target, 0755), 0);
    assert_int_equal(coffer_dev_tls_provision(path, &t), COFFER_E_INVALID);
    assert_non_null(strstr(coffer_err_detail(), "must be 0700"));

    /* DIR/tls as a link is refused. */
    snprintf(path, sizeof(path), "%s/linked", f->base);
    assert_int_equal(mkdir(path, 0700), 0);
    snprintf(target, sizeof(target), "%s/tls", path);
    assert_int_equal(symlink(f->base, target), 0);
    assert_int_equal(coffer_dev_tls_provision(path, &t), COFFER_E_INVALID);
    assert_non_null(strstr(coffer_err_detail(), "not a directory"));

    /* A file of the set that is a link is refused, and its target left alone. */
    provision_ok(f);
    snprintf(target, sizeof(target), "%s/elsewhere", f->base);
    write_file(target, "untouched", 9);
    assert_int_equal(unlink(f->tls.agent_key), 0);
    assert_int_equal(symlink(target, f->tls.agent_key), 0);
    assert_int_equal(coffer_dev_tls_provision(f->base, &t), COFFER_E_INVALID);
    assert_non_null(strstr(coffer_err_detail(), "not a regular file"));
    {
        char buf[64];
        size_t len;

        read_file(target, buf, sizeof(buf), &len);
        assert_int_equal(len, 9);
        assert_memory_equal(buf, "untouched", 9);
    }
    assert_int_equal(unlink(f->tls.agent_key), 0);

    /* A key that others may read is refused. */
    provision_ok(f);
    take_snapshot(&f->tls, &snap[0]);
    assert_int_equal(chmod(f->tls.admin_key, 0640), 0);
    assert_int_equal(coffer_dev_tls_provision(f->base, &t), COFFER_E_INVALID);
    assert_non_null(strstr(coffer_err_detail(), "a key must be 0600"));
    assert_int_equal(chmod(f->tls.admin_key, 0600), 0);

    /* A certificate others may write is refused. */
    assert_int_equal(chmod(f->tls.admin_cert, 0666), 0);
    assert_int_equal(coffer_dev_tls_provision(f->base, &t), COFFER_E_INVALID);
    assert_non_null(strstr(coffer_err_detail(), "a certificate must be 0644"));
    assert_int_equal(chmod(f->tls.admin_cert, 0644), 0);

    /* Put right, the set is reused as it was. */
    provision_ok(f);
    take_snapshot(&f->tls, &snap[1]);
    for (int i = 0; i < N_FILES; i++) {
        assert_true(same_file(&snap[0], &snap[1], i));
    }
    check_set(&f->tls);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_fresh, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reuse_is_byte_identical, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_file_regenerates, setup, teardown),
        cmocka_unit_test_setup_teardown(test_garbled_file_regenerates, setup, teardown),
        cmocka_unit_test_setup_teardown(test_inconsistent_set_regenerates, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refusals, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The audit signing keys: persistent P-256 key pairs "coffer-audit-v<n>" in
 * the token that sign audit checkpoints. This file creates the next version
 * and records its public key, checks what the token says about a pair on
 * every use, builds the SubjectPublicKeyInfo from the token's public point,
 * and signs: SHA-256 here, ECDSA in the token, the raw r || s turned into
 * the DER ECDSA-Sig-Value that auditors' tools verify.
 *
 * The private key never leaves the token. A pair found under a label that
 * does not read back as a sensitive, never-extractable, sign-only P-256 key
 * with a valid public point is refused, never used, and a signature that
 * does not verify under the token's public key is never returned. Nothing
 * here is secret: messages are audit checkpoints, outputs are public.
 */
#include "keys_int.h"

#include "coffer/log.h"
#include "coffer/mem.h"

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#define SCALAR_LEN (COFFER_ECDSA_P256_SIG_LEN / 2)

static void label_of(uint32_t version, char out[65])
{
    snprintf(out, 65, COFFER_AUDIT_KEY_PREFIX "%" PRIu32, version);
}

/* The private key signs and does nothing else; the public key verifies and does nothing else. */
static const char *usage_problem(const struct coffer_p11_ec_attrs *a)
{
    const struct coffer_p11_attrs *c = &a->common;

    if (!a->sign || a->sign_recover || a->derive || c->decrypt || c->unwrap || c->encrypt ||
        c->wrap) {
        return "the private key's usage is not exactly CKA_SIGN";
    }
    if (!a->pub_verify || a->pub_other_use) {
        return "the public key's usage is not exactly CKA_VERIFY";
    }
    return NULL;
}

/* What makes a pair unfit to sign audit checkpoints, or NULL if nothing does. */
static const char *attrs_problem(const struct coffer_p11_ec_attrs *a, const char *label)
{
    const struct coffer_p11_attrs *c = &a->common;

    if (!a->private_key) {
        return "CKA_CLASS is not CKO_PRIVATE_KEY";
    }
    if (!a->ec) {
        return "CKA_KEY_TYPE is not CKK_EC";
    }
    if (!a->p256) {
        return "CKA_EC_PARAMS is not P-256";
    }
    if (!c->token || !a->pub_token) {
        return "CKA_TOKEN is FALSE";
    }
    if (!c->private_) {
        return "CKA_PRIVATE is FALSE";
    }
    if (!c->sensitive || !c->always_sensitive) {
        return "CKA_SENSITIVE or CKA_ALWAYS_SENSITIVE is FALSE";
    }
    if (c->extractable || !c->never_extractable) {
        return "CKA_EXTRACTABLE is TRUE or CKA_NEVER_EXTRACTABLE is FALSE";
    }
    if (c->value_readable) {
        return "CKA_VALUE is readable";
    }
    if (strcmp(c->label, label) != 0 || strcmp(a->pub_label, label) != 0) {
        return "CKA_LABEL differs";
    }
    if (!a->same_id) {
        return "the two halves do not share one CKA_ID";
    }
    return usage_problem(a);
}

/*
 * The public key from the token's point. OpenSSL decodes the point onto the
 * curve and the public check rejects the point at infinity and points off
 * the curve, so a token answer that is no P-256 public key is refused here.
 */
static enum coffer_err pkey_from_point(const unsigned char point[COFFER_EC_P256_POINT_LEN],
                                       const char *label, EVP_PKEY **out)
{
    unsigned char pt[COFFER_EC_P256_POINT_LEN];
    char group[] = "prime256v1";
    EVP_PKEY_CTX *ctx = NULL;
    EVP_PKEY_CTX *check = NULL;
    EVP_PKEY *pkey = NULL;
    enum coffer_err r = COFFER_OK;
    OSSL_PARAM params[3];

    *out = NULL;
    coffer_memcpy(pt, point, sizeof(pt));
    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, group, 0);
    params[1] = OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, pt, sizeof(pt));
    params[2] = OSSL_PARAM_construct_end();
    ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    if (ctx == NULL || EVP_PKEY_fromdata_init(ctx) != 1) {
        r = coffer_err_set(COFFER_E_CRYPTO, "audit signing key %s: OpenSSL cannot make EC keys",
                           label);
        goto out;
    }
    if (EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1 || pkey == NULL ||
        (check = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL)) == NULL ||
        EVP_PKEY_public_check(check) != 1) {
        r = coffer_err_set(COFFER_E_INTEGRITY,
                           "audit signing key %s refused: its public point is not a valid P-256 "
                           "public key",
                           label);
        goto out;
    }
    *out = pkey;
    pkey = NULL;
out:
    EVP_PKEY_free(pkey);
    EVP_PKEY_CTX_free(check);
    EVP_PKEY_CTX_free(ctx);
    return r;
}

static enum coffer_err spki_of(EVP_PKEY *pkey, const char *label,
                               unsigned char out[COFFER_KEYS_SPKI_LEN], size_t *len)
{
    unsigned char *p = out;
    int n = i2d_PUBKEY(pkey, NULL);

    *len = 0;
    if (n != COFFER_KEYS_SPKI_LEN) {
        return coffer_err_set(COFFER_E_CRYPTO,
                              "audit signing key %s: SubjectPublicKeyInfo is %d bytes, want %d",
                              label, n, COFFER_KEYS_SPKI_LEN);
    }
    if (i2d_PUBKEY(pkey, &p) != n) {
        return coffer_err_set(COFFER_E_CRYPTO, "audit signing key %s: encoding the public key",
                              label);
    }
    *len = (size_t)n;
    return COFFER_OK;
}

/* Reads back and checks the pair; on success key is filled and *pkey (if asked for) set. */
static enum coffer_err check_pair(struct coffer_p11_session *s,
                                  const struct coffer_p11_ec_pair *pair, uint32_t version,
                                  struct coffer_keys_audit_key *key, EVP_PKEY **pkey)
{
    EVP_PKEY *pk = NULL;
    const char *bad;
    enum coffer_err r;

    memset(key, 0, sizeof(*key));
    key->version = version;
    label_of(version, key->label);
    if ((r = coffer_p11_ec_attrs(s, pair, &key->attrs)) != COFFER_OK) {
        r = coffer_err_wrap(r, "audit signing key %s", key->label);
        goto out;
    }
    if ((bad = attrs_problem(&key->attrs, key->label)) != NULL) {
        r = coffer_err_set(COFFER_E_INTEGRITY, "audit signing key %s refused: %s", key->label, bad);
        goto out;
    }
    if ((r = pkey_from_point(key->attrs.point, key->label, &pk)) != COFFER_OK ||
        (r = spki_of(pk, key->label, key->spki, &key->spki_len)) != COFFER_OK) {
        goto out;
    }
    if (pkey != NULL) {
        *pkey = pk;
        pk = NULL;
    }
out:
    EVP_PKEY_free(pk);
    if (r != COFFER_OK) {
        memset(key, 0, sizeof(*key));
    }
    return r;
}

/* Finds version in the token and checks it. */
static enum coffer_err load_pair(struct coffer_p11_session *s, uint32_t version,
                                 struct coffer_p11_ec_pair *pair, struct coffer_keys_audit_key *key,
                                 EVP_PKEY **pkey)
{
    char label[65];
    enum coffer_err r;

    memset(key, 0, sizeof(*key));
    if (version == 0 || version > INT32_MAX) {
        return coffer_err_set(COFFER_E_INVALID,
                              "audit signing key version %" PRIu32 " is out of range 1..%d",
                              version, INT32_MAX);
    }
    label_of(version, label);
    if ((r = coffer_p11_find_ec_pair(s, label, pair)) != COFFER_OK) {
        return coffer_err_wrap(r, "audit signing key %s", label);
    }
    return check_pair(s, pair, version, key, pkey);
}

/* ---- Creating ------------------------------------------------------------------------ */

/* COFFER_E_EXISTS if the database records version already. */
static enum coffer_err check_unrecorded(struct coffer_store *st, uint32_t version,
                                        const char *label)
{
    struct coffer_store_audit_key *rows = NULL;
    size_t n = 0;
    enum coffer_err r;

    if ((r = coffer_store_audit_key_list(st, &rows, &n)) != COFFER_OK) {
        return coffer_err_wrap(r, "reading the recorded audit signing keys");
    }
    for (size_t i = 0; i < n; i++) {
        if (rows[i].version == version) {
            r = coffer_err_set(COFFER_E_EXISTS,
                               "the database records audit signing key %s, but the token holds "
                               "no key of that version or later; refusing to make another under "
                               "its label",
                               label);
            break;
        }
    }
    coffer_free(rows);
    return r;
}

/* Generates the pair for version, checks it, and makes sure it is the only one under its label. */
static enum coffer_err make_pair(struct coffer_p11_session *s, uint32_t version,
                                 struct coffer_keys_audit_key *key)
{
    struct coffer_p11_ec_spec spec = {.extractable = false};
    struct coffer_p11_ec_pair made = {0};
    struct coffer_p11_ec_pair found = {0};
    char label[65];
    enum coffer_err r;

    label_of(version, label);
    spec.label = label;
    if ((r = coffer_p11_generate_ec_p256(s, &spec, &made)) != COFFER_OK) {
        return coffer_err_wrap(r, "generating audit signing key %s", label);
    }
    if ((r = check_pair(s, &made, version, key, NULL)) != COFFER_OK) {
        goto out;
    }
    /* Another creator racing for the same version leaves two pairs: neither is kept. */
    if ((r = coffer_p11_find_ec_pair(s, label, &found)) != COFFER_OK) {
        r = coffer_err_wrap(r, "audit signing key %s after generation", label);
        goto out;
    }
    if (found.priv != made.priv || found.pub != made.pub) {
        r = coffer_err_set(COFFER_E_INTEGRITY,
                           "audit signing key %s: the token returns other objects than the ones "
                           "just made",
                           label);
    }
out:
    if (r != COFFER_OK) {
        /* A pair that failed its checks is never left behind for a later load to find. */
        coffer_p11_destroy(s, &made.priv);
        coffer_p11_destroy(s, &made.pub);
        memset(key, 0, sizeof(*key));
    }
    return r;
}

enum coffer_err coffer_keys_audit_key_create(struct coffer_keys *k, struct coffer_store *st,
                                             struct coffer_keys_audit_key *out)
{
    struct coffer_keys_audit_key key;
    struct coffer_p11_session *s = NULL;
    uint32_t max = 0;
    char label[65];
    enum coffer_err r;

    memset(&key, 0, sizeof(key));
    if (out != NULL) {
        memset(out, 0, sizeof(*out));
    }
    if (k == NULL || st == NULL) {
        return coffer_err_set(COFFER_E_INVALID,
                              "creating an audit signing key: no keys context or no store");
    }
    if ((r = coffer_p11_session_get(k->p11, &s)) != COFFER_OK) {
        return r;
    }
    if ((r = coffer_p11_label_max_version(s, COFFER_AUDIT_KEY_PREFIX, &max)) != COFFER_OK) {
        r = coffer_err_wrap(r, "looking for audit signing keys in the token");
        goto out;
    }
    if (max >= INT32_MAX) {
        r = coffer_err_set(
            COFFER_E_LIMIT,
            "the token holds audit signing key version %" PRIu32 ", the last there can be", max);
        goto out;
    }
    label_of(max + 1, label);
    if ((r = check_unrecorded(st, max + 1, label)) != COFFER_OK ||
        (r = make_pair(s, max + 1, &key)) != COFFER_OK) {
        goto out;
    }
    r = coffer_store_audit_key_insert(st, key.version, key.label, key.spki, key.spki_len);
    if (r != COFFER_OK) {
        /*
         * The pair stays: the database may have committed before the error
         * reached us, and a recorded key must never lose its private half.
         * An unrecorded pair signs nothing, and the next create moves past it.
         */
        r = coffer_err_wrap(r,
                            "recording audit signing key %s (the key pair stays in the token "
                            "unrecorded; the next create makes the version after it)",
                            key.label);
        goto out;
    }
    coffer_info("keys", "audit signing key %s created and recorded as current", key.label);
    if (out != NULL) {
        *out = key;
    }
out:
    coffer_p11_session_put(k->p11, &s);
    return r;
}

/* ---- Using ----------------------------------------------------------------------------- */

enum coffer_err coffer_keys_audit_key_load(struct coffer_keys *k, uint32_t version,
                                           struct coffer_keys_audit_key *out)
{
    struct coffer_p11_session *s = NULL;
    struct coffer_p11_ec_pair pair;
    enum coffer_err r;

    if (out == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "loading an audit signing key: no output");
    }
    memset(out, 0, sizeof(*out));
    if (k == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "loading an audit signing key: no keys context");
    }
    if ((r = coffer_p11_session_get(k->p11, &s)) != COFFER_OK) {
        return r;
    }
    r = load_pair(s, version, &pair, out, NULL);
    coffer_p11_session_put(k->p11, &s);
    return r;
}

enum coffer_err coffer_keys_audit_public(struct coffer_keys *k, uint32_t version,
                                         unsigned char *spki_out, size_t *len)
{
    struct coffer_keys_audit_key key;
    enum coffer_err r;

    if (spki_out == NULL || len == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "audit signing key public key: no output");
    }
    *len = 0;
    if ((r = coffer_keys_audit_key_load(k, version, &key)) != COFFER_OK) {
        return r;
    }
    coffer_memcpy(spki_out, key.spki, key.spki_len);
    *len = key.spki_len;
    return COFFER_OK;
}

/* r || s as a DER ECDSA-Sig-Value into out (COFFER_KEYS_AUDIT_SIG_MAX bytes of room). */
static enum coffer_err der_of(const unsigned char raw[COFFER_ECDSA_P256_SIG_LEN],
                              unsigned char *out, size_t *len)
{
    ECDSA_SIG *sig = ECDSA_SIG_new();
    BIGNUM *br = BN_bin2bn(raw, SCALAR_LEN, NULL);
    BIGNUM *bs = BN_bin2bn(raw + SCALAR_LEN, SCALAR_LEN, NULL);
    unsigned char *p = out;
    enum coffer_err r = COFFER_OK;
    int n;

    *len = 0;
    if (sig == NULL || br == NULL || bs == NULL || ECDSA_SIG_set0(sig, br, bs) != 1) {
        r = coffer_err_set(COFFER_E_CRYPTO, "building an ECDSA signature");
        goto out;
    }
    br = NULL; /* now owned by sig */
    bs = NULL;
    if (BN_is_zero(ECDSA_SIG_get0_r(sig)) || BN_is_zero(ECDSA_SIG_get0_s(sig))) {
        r = coffer_err_set(COFFER_E_TOKEN, "the token returned an ECDSA signature with r or s 0");
        goto out;
    }
    n = i2d_ECDSA_SIG(sig, NULL);
    if (n <= 0 || n > COFFER_KEYS_AUDIT_SIG_MAX || i2d_ECDSA_SIG(sig, &p) != n) {
        r = coffer_err_set(COFFER_E_CRYPTO, "encoding an ECDSA signature (%d bytes, at most %d)", n,
                           COFFER_KEYS_AUDIT_SIG_MAX);
        goto out;
    }
    *len = (size_t)n;
out:
    BN_free(br);
    BN_free(bs);
    ECDSA_SIG_free(sig);
    return r;
}

/* ECDSA with SHA-256 over msg, as an auditor's `openssl dgst -sha256 -verify` checks it. */
static enum coffer_err verify(EVP_PKEY *pkey, const char *label, const void *msg, size_t len,
                              const unsigned char *der, size_t der_len)
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    enum coffer_err r = COFFER_OK;

    if (md == NULL || EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, pkey) != 1) {
        r = coffer_err_set(COFFER_E_CRYPTO, "audit signing key %s: preparing verification", label);
    } else if (EVP_DigestVerify(md, der, der_len, msg, len) != 1) {
        r = coffer_err_set(COFFER_E_INTEGRITY,
                           "audit signing key %s: the token's signature does not verify under "
                           "its public key",
                           label);
    }
    EVP_MD_CTX_free(md);
    return r;
}

enum coffer_err coffer_keys_audit_sign(struct coffer_keys *k, uint32_t version, const void *msg,
                                       size_t len, unsigned char *der_out, size_t *der_len)
{
    struct coffer_keys_audit_key key;
    struct coffer_p11_session *s = NULL;
    struct coffer_p11_ec_pair pair;
    unsigned char digest[COFFER_ECDSA_DIGEST_LEN];
    unsigned char raw[COFFER_ECDSA_P256_SIG_LEN];
    unsigned char der[COFFER_KEYS_AUDIT_SIG_MAX];
    unsigned int dlen = 0;
    EVP_PKEY *pkey = NULL;
    size_t n = 0;
    enum coffer_err r;

    if (der_out == NULL || der_len == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "audit signature: no output");
    }
    *der_len = 0;
    if (k == NULL || msg == NULL || len == 0 || len > COFFER_SECRET_MAX) {
        return coffer_err_set(COFFER_E_INVALID,
                              "audit signature needs a keys context and 1 to %u bytes, not %zu",
                              COFFER_SECRET_MAX, len);
    }
    if (EVP_Digest(msg, len, digest, &dlen, EVP_sha256(), NULL) != 1 || dlen != sizeof(digest)) {
        return coffer_err_set(COFFER_E_CRYPTO, "SHA-256 of the message to sign");
    }
    if ((r = coffer_p11_session_get(k->p11, &s)) != COFFER_OK) {
        return r;
    }
    if ((r = load_pair(s, version, &pair, &key, &pkey)) != COFFER_OK) {
        goto out;
    }
    if ((r = coffer_p11_ecdsa_sign(s, pair.priv, digest, raw)) != COFFER_OK) {
        r = coffer_err_wrap(r, "signing with audit signing key %s", key.label);
        goto out;
    }
    if ((r = der_of(raw, der, &n)) != COFFER_OK ||
        (r = verify(pkey, key.label, msg, len, der, n)) != COFFER_OK) {
        goto out;
    }
    coffer_memcpy(der_out, der, n);
    *der_len = n;
out:
    EVP_PKEY_free(pkey);
    coffer_p11_session_put(k->p11, &s);
    return r;
}

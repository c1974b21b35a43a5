/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The canonical encoding and hash of one audit event, the hash chain step of
 * a checkpoint, and the fingerprint and PEM form of a signing key's public
 * half. The encoding must stay byte for byte what the database trigger
 * computes (docs/auditors.md), because an auditor recomputes it with any
 * SHA-256 tool: a field is never trimmed, normalised or re-encoded here.
 *
 * Nothing here holds a private key or touches the token.
 */
#include "audit/audit_int.h"

#include "coffer/mem.h"
#include "coffer/text.h"

#include <inttypes.h>
#include <limits.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

/* Domain separation of the event encoding, version 1: 21 bytes, no terminator. */
static const char event_prefix[] = "coffer-audit-event-v1";

const char *const coffer_audit_field_names[COFFER_AUDIT_FIELDS] = {
    [COFFER_AF_ID] = "id",
    [COFFER_AF_AT] = "at",
    [COFFER_AF_ACTION] = "action",
    [COFFER_AF_ALLOWED] = "allowed",
    [COFFER_AF_REASON] = "reason",
    [COFFER_AF_PURPOSE_UNEXPECTED] = "purpose_unexpected",
    [COFFER_AF_REQUEST_ID] = "request_id",
    [COFFER_AF_CLIENT_ADDR] = "client_addr",
    [COFFER_AF_PRINCIPAL_KIND] = "principal_kind",
    [COFFER_AF_TRUST_DOMAIN] = "trust_domain",
    [COFFER_AF_ORG] = "org",
    [COFFER_AF_AGENT_TYPE] = "agent_type",
    [COFFER_AF_INSTANCE] = "instance",
    [COFFER_AF_ADMIN] = "admin",
    [COFFER_AF_TARGET_ORG] = "target_org",
    [COFFER_AF_PROJECT] = "project",
    [COFFER_AF_CREDENTIAL] = "credential",
    [COFFER_AF_VERSION] = "version",
    [COFFER_AF_PHASE] = "phase",
    [COFFER_AF_PURPOSE] = "purpose",
    [COFFER_AF_DETAIL] = "detail",
    [COFFER_AF_ORG_KEY_VERSION] = "org_key_version",
    [COFFER_AF_MK_VERSION] = "mk_version",
};

void audit_be64(int64_t id, unsigned char out[8])
{
    uint64_t u = (uint64_t)id;
    int i;

    for (i = 7; i >= 0; i--) {
        out[i] = (unsigned char)(u & 0xff);
        u >>= 8;
    }
}

int64_t audit_read_be64(const unsigned char in[8])
{
    uint64_t u = 0;
    int i;

    for (i = 0; i < 8; i++) {
        u = (u << 8) | in[i];
    }
    return (int64_t)u;
}

enum coffer_err audit_sha256(const void *p, size_t n, unsigned char out[COFFER_AUDIT_HASH_LEN])
{
    unsigned int len = 0;

    if (EVP_Digest(p, n, out, &len, EVP_sha256(), NULL) != 1 || len != COFFER_AUDIT_HASH_LEN) {
        return coffer_err_set(COFFER_E_CRYPTO, "SHA-256 failed in OpenSSL");
    }
    return COFFER_OK;
}

/* One field of the encoding: 0x00 for NULL, else 0x01, be32 length, the bytes. */
static enum coffer_err put_field(EVP_MD_CTX *ctx, const char *value, int index)
{
    unsigned char head[5];
    size_t n;

    if (value == NULL) {
        head[0] = 0x00;
        return EVP_DigestUpdate(ctx, head, 1) == 1
                   ? COFFER_OK
                   : coffer_err_set(COFFER_E_CRYPTO, "SHA-256 failed in OpenSSL");
    }
    n = strlen(value);
    if (n > UINT32_MAX) {
        return coffer_err_set(COFFER_E_INVALID, "event field %s is %zu bytes, more than encodable",
                              coffer_audit_field_names[index], n);
    }
    head[0] = 0x01;
    head[1] = (unsigned char)(n >> 24);
    head[2] = (unsigned char)(n >> 16);
    head[3] = (unsigned char)(n >> 8);
    head[4] = (unsigned char)n;
    if (EVP_DigestUpdate(ctx, head, sizeof(head)) != 1 || EVP_DigestUpdate(ctx, value, n) != 1) {
        return coffer_err_set(COFFER_E_CRYPTO, "SHA-256 failed in OpenSSL");
    }
    return COFFER_OK;
}

enum coffer_err coffer_audit_row_hash(const struct coffer_audit_row *row,
                                      unsigned char out[COFFER_AUDIT_HASH_LEN])
{
    EVP_MD_CTX *ctx = NULL;
    unsigned int len = 0;
    enum coffer_err r = COFFER_OK;
    int i;

    if (row == NULL || out == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "row hash: no row");
    }
    if ((ctx = EVP_MD_CTX_new()) == NULL) {
        return coffer_err_set(COFFER_E_NOMEM, "row hash: digest context");
    }
    if (EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1 ||
        EVP_DigestUpdate(ctx, event_prefix, sizeof(event_prefix) - 1) != 1) {
        r = coffer_err_set(COFFER_E_CRYPTO, "SHA-256 failed in OpenSSL");
        goto out;
    }
    for (i = 0; i < COFFER_AUDIT_FIELDS; i++) {
        if ((r = put_field(ctx, row->f[i], i)) != COFFER_OK) {
            goto out;
        }
    }
    if (EVP_DigestFinal_ex(ctx, out, &len) != 1 || len != COFFER_AUDIT_HASH_LEN) {
        r = coffer_err_set(COFFER_E_CRYPTO, "SHA-256 failed in OpenSSL");
        goto out;
    }
out:
    EVP_MD_CTX_free(ctx);
    return r;
}

enum coffer_err audit_chain_step(unsigned char chain[COFFER_AUDIT_HASH_LEN], int64_t id,
                                 const unsigned char row_hash[COFFER_AUDIT_HASH_LEN])
{
    unsigned char in[COFFER_AUDIT_HASH_LEN + 8 + COFFER_AUDIT_HASH_LEN];

    coffer_memcpy(in, chain, COFFER_AUDIT_HASH_LEN);
    audit_be64(id, in + COFFER_AUDIT_HASH_LEN);
    coffer_memcpy(in + COFFER_AUDIT_HASH_LEN + 8, row_hash, COFFER_AUDIT_HASH_LEN);
    return audit_sha256(in, sizeof(in), chain);
}

void coffer_audit_chain_step(unsigned char chain[COFFER_AUDIT_HASH_LEN], int64_t id,
                             const unsigned char row_hash[COFFER_AUDIT_HASH_LEN])
{
    /*
     * SHA-256 fails only when OpenSSL cannot allocate. The chain is then
     * zeroed: it can match no signed chain, so a verification fails rather
     * than passes.
     */
    if (audit_chain_step(chain, id, row_hash) != COFFER_OK) {
        memset(chain, 0, COFFER_AUDIT_HASH_LEN);
    }
}

void coffer_audit_fingerprint(const unsigned char *spki, size_t len,
                              unsigned char out[COFFER_AUDIT_HASH_LEN])
{
    /* As in coffer_audit_chain_step: a failed digest compares equal to no key's fingerprint. */
    if (audit_sha256(spki, len, out) != COFFER_OK) {
        memset(out, 0, COFFER_AUDIT_HASH_LEN);
    }
}

enum coffer_err coffer_audit_spki_pem(const unsigned char *spki, size_t len, char **pem)
{
    const unsigned char *p = spki;
    EVP_PKEY *pkey = NULL;
    BIO *bio = NULL;
    char *data = NULL;
    long n;
    enum coffer_err r = COFFER_OK;

    if (pem == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "public key PEM: no output");
    }
    *pem = NULL;
    if (spki == NULL || len == 0 || len > COFFER_AUDIT_SPKI_MAX) {
        return coffer_err_set(COFFER_E_INVALID, "public key is %zu bytes, want 1 to %d", len,
                              COFFER_AUDIT_SPKI_MAX);
    }
    /* Only a well-formed SubjectPublicKeyInfo, with nothing after it, is printed. */
    pkey = d2i_PUBKEY(NULL, &p, (long)len);
    if (pkey == NULL || (size_t)(p - spki) != len) {
        r = coffer_err_set(COFFER_E_INVALID, "public key is not a SubjectPublicKeyInfo DER");
        goto out;
    }
    /* The PEM wraps the given bytes, not a re-encoding, so it has the same fingerprint. */
    if ((bio = BIO_new(BIO_s_mem())) == NULL ||
        PEM_write_bio(bio, "PUBLIC KEY", "", spki, (long)len) <= 0) {
        r = coffer_err_set(COFFER_E_CRYPTO, "writing the public key as PEM");
        goto out;
    }
    n = BIO_get_mem_data(bio, &data);
    if (n <= 0 || data == NULL) {
        r = coffer_err_set(COFFER_E_CRYPTO, "writing the public key as PEM");
        goto out;
    }
    if ((*pem = coffer_calloc((size_t)n + 1, 1)) == NULL) {
        r = coffer_err_set(COFFER_E_NOMEM, "public key PEM of %ld bytes", n);
        goto out;
    }
    coffer_memcpy(*pem, data, (size_t)n);
out:
    BIO_free(bio);
    EVP_PKEY_free(pkey);
    ERR_clear_error();
    return r;
}

enum audit_field_kind audit_field_kind(int i)
{
    switch (i) {
    case COFFER_AF_ID:
    case COFFER_AF_VERSION:
    case COFFER_AF_ORG_KEY_VERSION:
    case COFFER_AF_MK_VERSION:
        return AUDIT_FK_INT;
    case COFFER_AF_ALLOWED:
    case COFFER_AF_PURPOSE_UNEXPECTED:
        return AUDIT_FK_BOOL;
    case COFFER_AF_AT:
        return AUDIT_FK_TIME;
    default:
        return AUDIT_FK_TEXT;
    }
}

/* Whether the non-NULL value s has the text form of field i. */
static bool field_ok(int i, const char *s)
{
    size_t n = strlen(s);

    switch (audit_field_kind(i)) {
    case AUDIT_FK_INT:
        return audit_dec_parse(s, n, i != COFFER_AF_ID, NULL);
    case AUDIT_FK_BOOL:
        return strcmp(s, "true") == 0 || strcmp(s, "false") == 0;
    case AUDIT_FK_TIME:
        return audit_timestamp_ok(s, n);
    case AUDIT_FK_TEXT:
        return n > 0 && coffer_utf8_ok(s, n);
    default:
        return false;
    }
}

enum coffer_err audit_row_check(const struct coffer_audit_row *row)
{
    int64_t id = 0;
    int i;

    if (row->id < 1 || !audit_dec_ok(row->f[COFFER_AF_ID], false, &id) || id != row->id) {
        return coffer_err_set(COFFER_E_INVALID, "event %" PRId64 ": id field does not match",
                              row->id);
    }
    for (i = 0; i < COFFER_AUDIT_FIELDS; i++) {
        if (row->f[i] != NULL && !field_ok(i, row->f[i])) {
            return coffer_err_set(COFFER_E_INVALID, "event %" PRId64 ": field %s is malformed",
                                  row->id, coffer_audit_field_names[i]);
        }
    }
    return COFFER_OK;
}

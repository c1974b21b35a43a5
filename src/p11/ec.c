/* SPDX-License-Identifier: Apache-2.0 */
/*
 * EC key pairs inside the token: generating the persistent P-256 pair that
 * signs audit checkpoints, finding a pair's two objects by label, reading
 * back what each half may do together with the public point, signing a
 * digest with CKM_ECDSA, and finding the highest version among labels of
 * one shape.
 *
 * Like the rest of src/p11/ this file hands out handles, public points and
 * signatures, never private key bytes: it never asks for the private key's
 * CKA_VALUE (coffer_p11_attrs asks only whether the token would give it).
 * Every operation it starts is ended before it returns, so a pooled session
 * never carries an active operation to its next user. Everything the token
 * answers is checked for length and shape before it is handed on.
 */
#include "p11/p11_int.h"

#include <stdint.h>
#include <string.h>

#include "coffer/log.h"
#include "coffer/mem.h"

/* DER of the OID prime256v1 (1.2.840.10045.3.1.7): the only curve Coffer uses. */
static const unsigned char p256_oid[] = {0x06, 0x08, 0x2a, 0x86, 0x48,
                                         0xce, 0x3d, 0x03, 0x01, 0x07};

/* DER OCTET STRING header of a 65-byte uncompressed point. */
#define POINT_DER_TAG 0x04
#define POINT_DER_LEN (2 + COFFER_EC_P256_POINT_LEN)
#define POINT_UNCOMPRESSED 0x04

#define EC_PARAMS_MAX 64u
#define FIND_BATCH 64u
#define OBJECTS_MAX 100000u

static CK_FUNCTION_LIST *fn_of(const struct coffer_p11_session *s)
{
    return s->owner->fn;
}

static enum coffer_err check_label(const char *label)
{
    if (label == NULL || label[0] == '\0' || strlen(label) > P11_LABEL_MAX) {
        return coffer_err_set(COFFER_E_INVALID, "key label must be 1 to %u bytes", P11_LABEL_MAX);
    }
    return COFFER_OK;
}

/* ---- Generating ------------------------------------------------------------------- */

enum coffer_err coffer_p11_generate_ec_p256(struct coffer_p11_session *s,
                                            const struct coffer_p11_ec_spec *spec,
                                            struct coffer_p11_ec_pair *out)
{
    CK_MECHANISM mech = {CKM_EC_KEY_PAIR_GEN, NULL, 0};
    CK_OBJECT_CLASS pub_cls = CKO_PUBLIC_KEY;
    CK_OBJECT_CLASS priv_cls = CKO_PRIVATE_KEY;
    CK_KEY_TYPE type = CKK_EC;
    CK_BBOOL yes = CK_TRUE;
    CK_BBOOL no = CK_FALSE;
    CK_BBOOL extractable;
    CK_OBJECT_HANDLE pub = CK_INVALID_HANDLE;
    CK_OBJECT_HANDLE priv = CK_INVALID_HANDLE;
    CK_ULONG label_len;
    enum coffer_err rc;
    CK_RV rv;

    if (out == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "coffer_p11_generate_ec_p256: no output");
    }
    memset(out, 0, sizeof(*out));
    if ((rc = p11_check_session(s)) != COFFER_OK) {
        return rc;
    }
    if (spec == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "no key pair specification");
    }
    if ((rc = check_label(spec->label)) != COFFER_OK) {
        return rc;
    }
    extractable = spec->extractable ? CK_TRUE : CK_FALSE;
    label_len = (CK_ULONG)strlen(spec->label);
    /*
     * Every attribute that decides what a half may do is given explicitly,
     * so nothing depends on the token's defaults. The label doubles as
     * CKA_ID, which is how PKCS#11 tools pair the two halves.
     * PKCS#11 does not write through a template's pointers.
     */
    CK_ATTRIBUTE pub_tmpl[] = {
        {CKA_CLASS, &pub_cls, sizeof(pub_cls)},
        {CKA_KEY_TYPE, &type, sizeof(type)},
        {CKA_TOKEN, &yes, sizeof(yes)},
        {CKA_PRIVATE, &no, sizeof(no)},
        {CKA_EC_PARAMS, (void *)p256_oid, sizeof(p256_oid)},
        {CKA_VERIFY, &yes, sizeof(yes)},
        {CKA_VERIFY_RECOVER, &no, sizeof(no)},
        {CKA_ENCRYPT, &no, sizeof(no)},
        {CKA_WRAP, &no, sizeof(no)},
        {CKA_DERIVE, &no, sizeof(no)},
        {CKA_LABEL, (void *)spec->label, label_len},
        {CKA_ID, (void *)spec->label, label_len},
    };
    CK_ATTRIBUTE priv_tmpl[] = {
        {CKA_CLASS, &priv_cls, sizeof(priv_cls)},
        {CKA_KEY_TYPE, &type, sizeof(type)},
        {CKA_TOKEN, &yes, sizeof(yes)},
        {CKA_PRIVATE, &yes, sizeof(yes)},
        {CKA_SENSITIVE, &yes, sizeof(yes)},
        {CKA_EXTRACTABLE, &extractable, sizeof(extractable)},
        {CKA_SIGN, &yes, sizeof(yes)},
        {CKA_SIGN_RECOVER, &no, sizeof(no)},
        {CKA_DECRYPT, &no, sizeof(no)},
        {CKA_UNWRAP, &no, sizeof(no)},
        {CKA_DERIVE, &no, sizeof(no)},
        {CKA_LABEL, (void *)spec->label, label_len},
        {CKA_ID, (void *)spec->label, label_len},
    };

    rv = fn_of(s)->C_GenerateKeyPair(s->handle, &mech, pub_tmpl,
                                     sizeof(pub_tmpl) / sizeof(pub_tmpl[0]), priv_tmpl,
                                     sizeof(priv_tmpl) / sizeof(priv_tmpl[0]), &pub, &priv);
    if (rv != CKR_OK) {
        return p11_rv_fail("C_GenerateKeyPair", rv, P11_PATH_NORMAL);
    }
    if (pub == CK_INVALID_HANDLE || priv == CK_INVALID_HANDLE) {
        struct coffer_p11_ec_pair made = {.priv = priv, .pub = pub};

        coffer_p11_destroy(s, &made.priv);
        coffer_p11_destroy(s, &made.pub);
        return coffer_err_set(COFFER_E_TOKEN, "C_GenerateKeyPair returned no object handle");
    }
    out->priv = priv;
    out->pub = pub;
    return COFFER_OK;
}

/* ---- Finding ------------------------------------------------------------------------ */

/* The one token object of class cls labelled label. */
static enum coffer_err find_one(struct coffer_p11_session *s, const char *label,
                                CK_OBJECT_CLASS cls, const char *what, coffer_p11_obj *out)
{
    CK_BBOOL yes = CK_TRUE;
    CK_ATTRIBUTE tmpl[3];
    CK_OBJECT_HANDLE found[2] = {CK_INVALID_HANDLE, CK_INVALID_HANDLE};
    CK_ULONG n = 0;
    CK_RV rv, rv_final;

    *out = 0;
    tmpl[0] = (CK_ATTRIBUTE){CKA_CLASS, &cls, sizeof(cls)};
    tmpl[1] = (CK_ATTRIBUTE){CKA_TOKEN, &yes, sizeof(yes)};
    tmpl[2] = (CK_ATTRIBUTE){CKA_LABEL, (void *)label, (CK_ULONG)strlen(label)};
    rv = fn_of(s)->C_FindObjectsInit(s->handle, tmpl, 3);
    if (rv != CKR_OK) {
        return p11_rv_fail("C_FindObjectsInit", rv, P11_PATH_NORMAL);
    }
    /* Two are enough to tell "one" from "more than one". */
    rv = fn_of(s)->C_FindObjects(s->handle, found, 2, &n);
    rv_final = fn_of(s)->C_FindObjectsFinal(s->handle);
    if (rv != CKR_OK) {
        return p11_rv_fail("C_FindObjects", rv, P11_PATH_NORMAL);
    }
    if (rv_final != CKR_OK) {
        return p11_rv_fail("C_FindObjectsFinal", rv_final, P11_PATH_NORMAL);
    }
    if (n == 0) {
        return coffer_err_set(COFFER_E_NOT_FOUND, "no %s labelled '%s' on token '%s'", what, label,
                              s->owner->info.label);
    }
    if (n > 2) {
        return coffer_err_set(COFFER_E_TOKEN, "C_FindObjects returned %lu objects for room of 2",
                              (unsigned long)n);
    }
    if (n > 1 || found[0] == CK_INVALID_HANDLE) {
        return coffer_err_set(COFFER_E_INTEGRITY, "more than one %s labelled '%s' on token '%s'",
                              what, label, s->owner->info.label);
    }
    *out = found[0];
    return COFFER_OK;
}

enum coffer_err coffer_p11_find_ec_pair(struct coffer_p11_session *s, const char *label,
                                        struct coffer_p11_ec_pair *out)
{
    enum coffer_err rc;

    if (out == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "coffer_p11_find_ec_pair: no output");
    }
    memset(out, 0, sizeof(*out));
    if ((rc = p11_check_session(s)) != COFFER_OK || (rc = check_label(label)) != COFFER_OK) {
        return rc;
    }
    if ((rc = find_one(s, label, CKO_PRIVATE_KEY, "private key", &out->priv)) != COFFER_OK ||
        (rc = find_one(s, label, CKO_PUBLIC_KEY, "public key", &out->pub)) != COFFER_OK) {
        memset(out, 0, sizeof(*out));
        return rc;
    }
    return COFFER_OK;
}

/* ---- Reading back --------------------------------------------------------------------- */

/*
 * A byte-string attribute of at most cap bytes. *len is 0 for an attribute
 * the object does not have; COFFER_E_LIMIT for a longer one.
 */
static enum coffer_err get_bytes(struct coffer_p11_session *s, coffer_p11_obj obj,
                                 CK_ATTRIBUTE_TYPE type, const char *name, unsigned char *buf,
                                 size_t cap, size_t *len)
{
    CK_ATTRIBUTE a = {type, NULL, 0};
    CK_RV rv;

    *len = 0;
    rv = fn_of(s)->C_GetAttributeValue(s->handle, obj, &a, 1);
    if (rv == CKR_ATTRIBUTE_TYPE_INVALID) {
        return COFFER_OK;
    }
    if (rv != CKR_OK) {
        return coffer_err_wrap(p11_rv_fail("C_GetAttributeValue", rv, P11_PATH_NORMAL),
                               "reading %s of object %lu", name, obj);
    }
    if (a.ulValueLen == CK_UNAVAILABLE_INFORMATION || a.ulValueLen > cap) {
        return coffer_err_set(COFFER_E_LIMIT, "%s of object %lu is %ld bytes, at most %zu", name,
                              obj, (long)a.ulValueLen, cap);
    }
    if (a.ulValueLen == 0) {
        return COFFER_OK;
    }
    a.pValue = buf;
    rv = fn_of(s)->C_GetAttributeValue(s->handle, obj, &a, 1);
    if (rv != CKR_OK) {
        return coffer_err_wrap(p11_rv_fail("C_GetAttributeValue", rv, P11_PATH_NORMAL),
                               "reading %s of object %lu", name, obj);
    }
    if (a.ulValueLen > cap) {
        return coffer_err_set(COFFER_E_TOKEN, "%s of object %lu changed length between reads", name,
                              obj);
    }
    *len = a.ulValueLen;
    return COFFER_OK;
}

static enum coffer_err is_p256(struct coffer_p11_session *s, coffer_p11_obj obj, bool *out)
{
    unsigned char params[EC_PARAMS_MAX];
    size_t len = 0;
    enum coffer_err rc;

    *out = false;
    rc = get_bytes(s, obj, CKA_EC_PARAMS, "CKA_EC_PARAMS", params, sizeof(params), &len);
    if (rc == COFFER_E_LIMIT) {
        /* Longer parameters are explicit curve data or another curve: not P-256. */
        coffer_err_clear();
        return COFFER_OK;
    }
    if (rc != COFFER_OK) {
        return rc;
    }
    *out = len == sizeof(p256_oid) && coffer_mem_equal(params, p256_oid, len);
    return COFFER_OK;
}

/*
 * CKA_EC_POINT as PKCS#11 2.40 says a token keeps it: a DER OCTET STRING
 * (tag 0x04, short length 65) around the uncompressed point 0x04 || X || Y.
 * Whether X and Y lie on the curve is for the caller's cryptographic
 * library to decide; the shape is decided here.
 */
static enum coffer_err read_point(struct coffer_p11_session *s, coffer_p11_obj pub,
                                  unsigned char point[COFFER_EC_P256_POINT_LEN])
{
    unsigned char der[POINT_DER_LEN + 8];
    size_t len = 0;
    enum coffer_err rc;

    rc = get_bytes(s, pub, CKA_EC_POINT, "CKA_EC_POINT", der, sizeof(der), &len);
    if (rc == COFFER_E_LIMIT) {
        return coffer_err_set(COFFER_E_INTEGRITY,
                              "CKA_EC_POINT of public key %lu is too long for "
                              "a P-256 point",
                              pub);
    }
    if (rc != COFFER_OK) {
        return rc;
    }
    if (len != POINT_DER_LEN || der[0] != POINT_DER_TAG || der[1] != COFFER_EC_P256_POINT_LEN) {
        return coffer_err_set(COFFER_E_INTEGRITY,
                              "CKA_EC_POINT of public key %lu is %zu bytes, not a DER OCTET "
                              "STRING of a %d-byte point",
                              pub, len, COFFER_EC_P256_POINT_LEN);
    }
    if (der[2] != POINT_UNCOMPRESSED) {
        return coffer_err_set(COFFER_E_INTEGRITY,
                              "CKA_EC_POINT of public key %lu is not an uncompressed point "
                              "(first byte 0x%02x)",
                              pub, der[2]);
    }
    coffer_memcpy(point, der + 2, COFFER_EC_P256_POINT_LEN);
    return COFFER_OK;
}

/* Both halves carry the same CKA_ID, and it is not empty. */
static enum coffer_err same_id(struct coffer_p11_session *s, const struct coffer_p11_ec_pair *pair,
                               bool *out)
{
    unsigned char a[P11_LABEL_MAX];
    unsigned char b[P11_LABEL_MAX];
    size_t alen = 0;
    size_t blen = 0;
    enum coffer_err rc;

    *out = false;
    rc = get_bytes(s, pair->priv, CKA_ID, "CKA_ID", a, sizeof(a), &alen);
    if (rc == COFFER_OK) {
        rc = get_bytes(s, pair->pub, CKA_ID, "CKA_ID", b, sizeof(b), &blen);
    }
    if (rc == COFFER_E_LIMIT) {
        /* Coffer's ids are its labels; a longer one was not made by Coffer. */
        coffer_err_clear();
        return COFFER_OK;
    }
    if (rc != COFFER_OK) {
        return rc;
    }
    *out = alen > 0 && alen == blen && coffer_mem_equal(a, b, alen);
    return COFFER_OK;
}

static enum coffer_err pub_label(struct coffer_p11_session *s, coffer_p11_obj pub,
                                 char out[P11_LABEL_MAX + 1])
{
    size_t len = 0;
    enum coffer_err rc;

    out[0] = '\0';
    rc = get_bytes(s, pub, CKA_LABEL, "CKA_LABEL", (unsigned char *)out, P11_LABEL_MAX, &len);
    if (rc != COFFER_OK) {
        return rc;
    }
    out[len] = '\0';
    return COFFER_OK;
}

struct bool_attr {
    coffer_p11_obj obj;
    CK_ATTRIBUTE_TYPE type;
    const char *name;
    bool *dst;
};

static enum coffer_err read_ec_attrs(struct coffer_p11_session *s,
                                     const struct coffer_p11_ec_pair *pair,
                                     struct coffer_p11_ec_attrs *out)
{
    CK_ULONG cls = 0;
    CK_ULONG priv_type = 0;
    CK_ULONG pub_type = 0;
    bool priv_p256 = false;
    bool pub_p256 = false;
    bool pub_encrypt = false;
    bool pub_wrap = false;
    bool pub_recover = false;
    bool pub_derive = false;
    enum coffer_err rc;
    const struct bool_attr bools[] = {
        {pair->priv, CKA_SIGN, "CKA_SIGN", &out->sign},
        {pair->priv, CKA_SIGN_RECOVER, "CKA_SIGN_RECOVER", &out->sign_recover},
        {pair->priv, CKA_DERIVE, "CKA_DERIVE", &out->derive},
        {pair->pub, CKA_TOKEN, "CKA_TOKEN", &out->pub_token},
        {pair->pub, CKA_VERIFY, "CKA_VERIFY", &out->pub_verify},
        {pair->pub, CKA_VERIFY_RECOVER, "CKA_VERIFY_RECOVER", &pub_recover},
        {pair->pub, CKA_ENCRYPT, "CKA_ENCRYPT", &pub_encrypt},
        {pair->pub, CKA_WRAP, "CKA_WRAP", &pub_wrap},
        {pair->pub, CKA_DERIVE, "CKA_DERIVE", &pub_derive},
    };

    if ((rc = coffer_p11_attrs(s, pair->priv, &out->common)) != COFFER_OK ||
        (rc = p11_attr_ulong(s, pair->priv, CKA_CLASS, "CKA_CLASS", &cls)) != COFFER_OK ||
        (rc = p11_attr_ulong(s, pair->priv, CKA_KEY_TYPE, "CKA_KEY_TYPE", &priv_type)) !=
            COFFER_OK ||
        (rc = p11_attr_ulong(s, pair->pub, CKA_KEY_TYPE, "CKA_KEY_TYPE", &pub_type)) != COFFER_OK) {
        return rc;
    }
    for (size_t i = 0; i < sizeof(bools) / sizeof(bools[0]); i++) {
        if ((rc = p11_attr_bool(s, bools[i].obj, bools[i].type, bools[i].name, bools[i].dst)) !=
            COFFER_OK) {
            return rc;
        }
    }
    out->private_key = cls == CKO_PRIVATE_KEY;
    out->ec = priv_type == CKK_EC && pub_type == CKK_EC;
    out->pub_other_use = pub_encrypt || pub_wrap || pub_recover || pub_derive;
    if ((rc = same_id(s, pair, &out->same_id)) != COFFER_OK ||
        (rc = pub_label(s, pair->pub, out->pub_label)) != COFFER_OK ||
        (rc = is_p256(s, pair->priv, &priv_p256)) != COFFER_OK ||
        (rc = is_p256(s, pair->pub, &pub_p256)) != COFFER_OK) {
        return rc;
    }
    out->p256 = out->ec && priv_p256 && pub_p256;
    if (out->p256) {
        return read_point(s, pair->pub, out->point);
    }
    return COFFER_OK;
}

enum coffer_err coffer_p11_ec_attrs(struct coffer_p11_session *s,
                                    const struct coffer_p11_ec_pair *pair,
                                    struct coffer_p11_ec_attrs *out)
{
    enum coffer_err rc;

    if (out == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "coffer_p11_ec_attrs: no output");
    }
    memset(out, 0, sizeof(*out));
    if ((rc = p11_check_session(s)) != COFFER_OK) {
        return rc;
    }
    if (pair == NULL || pair->priv == 0 || pair->pub == 0) {
        return coffer_err_set(COFFER_E_INVALID, "coffer_p11_ec_attrs: no key pair");
    }
    if ((rc = read_ec_attrs(s, pair, out)) != COFFER_OK) {
        memset(out, 0, sizeof(*out));
    }
    return rc;
}

/* ---- Signing ----------------------------------------------------------------------------- */

/*
 * A single-part call that answered CKR_BUFFER_TOO_SMALL leaves its operation
 * active, and PKCS#11 2.40 has no way to cancel one: the session is replaced.
 */
static enum coffer_err end_stuck_sign(struct coffer_p11_session *s, CK_ULONG wanted)
{
    enum coffer_err rc = p11_session_reset(s);

    if (rc != COFFER_OK) {
        coffer_warn("p11", "replacing a session after C_Sign: %s", coffer_err_detail());
    }
    return coffer_err_set(COFFER_E_TOKEN,
                          "C_Sign: CKR_BUFFER_TOO_SMALL (0x150): the token wants %lu bytes for "
                          "a P-256 ECDSA signature of %d",
                          (unsigned long)wanted, COFFER_ECDSA_P256_SIG_LEN);
}

enum coffer_err coffer_p11_ecdsa_sign(struct coffer_p11_session *s, coffer_p11_obj priv,
                                      const unsigned char digest[COFFER_ECDSA_DIGEST_LEN],
                                      unsigned char sig[COFFER_ECDSA_P256_SIG_LEN])
{
    CK_MECHANISM mech = {CKM_ECDSA, NULL, 0};
    unsigned char buf[COFFER_ECDSA_P256_SIG_LEN];
    CK_ULONG len = sizeof(buf);
    enum coffer_err rc = COFFER_OK;
    CK_RV rv;

    if (sig == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "coffer_p11_ecdsa_sign: no output");
    }
    memset(sig, 0, COFFER_ECDSA_P256_SIG_LEN);
    if ((rc = p11_check_session(s)) != COFFER_OK) {
        return rc;
    }
    if (priv == 0 || digest == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "ECDSA needs a private key and a digest");
    }
    rv = fn_of(s)->C_SignInit(s->handle, &mech, priv);
    if (rv != CKR_OK) {
        return p11_rv_fail("C_SignInit", rv, P11_PATH_NORMAL);
    }
    /* PKCS#11 does not write through the data pointer. */
    rv = fn_of(s)->C_Sign(s->handle, (CK_BYTE_PTR)digest, COFFER_ECDSA_DIGEST_LEN, buf, &len);
    if (rv == CKR_BUFFER_TOO_SMALL) {
        return end_stuck_sign(s, len);
    }
    if (rv != CKR_OK) {
        /* Any other answer has ended the operation already. */
        return p11_rv_fail("C_Sign", rv, P11_PATH_NORMAL);
    }
    if (len != COFFER_ECDSA_P256_SIG_LEN) {
        return coffer_err_set(COFFER_E_TOKEN,
                              "C_Sign returned %lu bytes for a P-256 ECDSA signature of %d",
                              (unsigned long)len, COFFER_ECDSA_P256_SIG_LEN);
    }
    coffer_memcpy(sig, buf, COFFER_ECDSA_P256_SIG_LEN);
    return COFFER_OK;
}

/* ---- Versions among labels ----------------------------------------------------------------- */

/* n if s is prefix followed by a decimal 1..INT32_MAX without a leading zero, else 0. */
static uint32_t label_version(const char *s, size_t len, const char *prefix)
{
    size_t plen = strlen(prefix);
    uint64_t v = 0;

    if (len <= plen || len - plen > 10 || strncmp(s, prefix, plen) != 0 || s[plen] == '0') {
        return 0;
    }
    for (size_t i = plen; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return 0;
        }
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    return v <= INT32_MAX ? (uint32_t)v : 0;
}

/* Every token object's handle, as a new array (coffer_free it) of *n entries. */
static enum coffer_err all_token_objects(struct coffer_p11_session *s, CK_OBJECT_HANDLE **out,
                                         size_t *n)
{
    CK_BBOOL yes = CK_TRUE;
    CK_ATTRIBUTE tmpl[] = {{CKA_TOKEN, &yes, sizeof(yes)}};
    CK_OBJECT_HANDLE *all = NULL;
    size_t cap = 0;
    size_t used = 0;
    enum coffer_err rc = COFFER_OK;
    CK_RV rv, rv_final;

    *out = NULL;
    *n = 0;
    rv = fn_of(s)->C_FindObjectsInit(s->handle, tmpl, 1);
    if (rv != CKR_OK) {
        return p11_rv_fail("C_FindObjectsInit", rv, P11_PATH_NORMAL);
    }
    for (;;) {
        CK_ULONG got = 0;

        if (cap - used < FIND_BATCH) {
            CK_OBJECT_HANDLE *grown;

            if (cap >= OBJECTS_MAX) {
                rc = coffer_err_set(COFFER_E_LIMIT, "token '%s' holds more than %u objects",
                                    s->owner->info.label, OBJECTS_MAX);
                break;
            }
            grown = coffer_reallocarray(all, cap + 4 * FIND_BATCH, sizeof(*all));
            if (grown == NULL) {
                rc = coffer_err_set(COFFER_E_NOMEM, "listing token objects");
                break;
            }
            all = grown;
            cap += 4 * FIND_BATCH;
        }
        rv = fn_of(s)->C_FindObjects(s->handle, all + used, FIND_BATCH, &got);
        if (rv != CKR_OK) {
            rc = p11_rv_fail("C_FindObjects", rv, P11_PATH_NORMAL);
            break;
        }
        if (got > FIND_BATCH) {
            rc = coffer_err_set(COFFER_E_TOKEN, "C_FindObjects returned %lu objects for room of %u",
                                (unsigned long)got, FIND_BATCH);
            break;
        }
        if (got == 0) {
            break;
        }
        used += got;
    }
    rv_final = fn_of(s)->C_FindObjectsFinal(s->handle);
    if (rc == COFFER_OK && rv_final != CKR_OK) {
        rc = p11_rv_fail("C_FindObjectsFinal", rv_final, P11_PATH_NORMAL);
    }
    if (rc != COFFER_OK) {
        coffer_free(all);
        return rc;
    }
    *out = all;
    *n = used;
    return COFFER_OK;
}

enum coffer_err coffer_p11_label_max_version(struct coffer_p11_session *s, const char *prefix,
                                             uint32_t *out)
{
    CK_OBJECT_HANDLE *objs = NULL;
    size_t n = 0;
    uint32_t max = 0;
    enum coffer_err rc;

    if (out == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "coffer_p11_label_max_version: no output");
    }
    *out = 0;
    if ((rc = p11_check_session(s)) != COFFER_OK) {
        return rc;
    }
    if (prefix == NULL || prefix[0] == '\0' || strlen(prefix) >= P11_LABEL_MAX) {
        return coffer_err_set(COFFER_E_INVALID, "label prefix must be 1 to %u bytes",
                              P11_LABEL_MAX - 1);
    }
    if ((rc = all_token_objects(s, &objs, &n)) != COFFER_OK) {
        return rc;
    }
    for (size_t i = 0; i < n; i++) {
        char label[P11_LABEL_MAX + 1];
        size_t len = 0;
        uint32_t v;

        rc = get_bytes(s, objs[i], CKA_LABEL, "CKA_LABEL", (unsigned char *)label, P11_LABEL_MAX,
                       &len);
        if (rc == COFFER_E_LIMIT) {
            /* A label longer than any Coffer writes is not one of its versions. */
            coffer_err_clear();
            rc = COFFER_OK;
            continue;
        }
        if (rc != COFFER_OK) {
            goto out;
        }
        label[len] = '\0';
        v = label_version(label, len, prefix);
        if (v > max) {
            max = v;
        }
    }
    *out = max;
out:
    coffer_free(objs);
    return rc;
}

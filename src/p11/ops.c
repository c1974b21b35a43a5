/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What Coffer does inside the token: generate AES-256 keys with exactly the
 * attributes asked for, find them by label, read back their check value and
 * security attributes, copy, destroy, wrap and unwrap them with RFC 5649
 * (CKM_AES_KEY_WRAP_PAD), AES-256-GCM in both directions, and initialise a
 * fresh token for the embedded default and the tests.
 *
 * This file hands out object handles and wrapped blobs, never key bytes: it
 * never reads CKA_VALUE (only asks whether the token would give it). Every
 * operation it starts is ended before it returns, so a pooled session never
 * carries an active operation to its next user. On the decrypt and unwrap
 * paths an unauthenticated input is COFFER_E_INTEGRITY and nothing partial
 * escapes; scratch buffers that held plaintext-derived bytes are wiped.
 */
#include "p11/p11_int.h"

#include <string.h>
#include <time.h>

#include "coffer/log.h"
#include "coffer/mem.h"

#define AES256_KEY_LEN 32u
#define AES256_WRAPPED_LEN 40u /* RFC 5649: 8 bytes of integrity block, 32 of key */

static CK_FUNCTION_LIST *fn_of(const struct coffer_p11_session *s)
{
    return s->owner->fn;
}

/* ---- Key templates ---------------------------------------------------------------- */

/* A secret-key template and the values it points to; built in place, never copied. */
struct key_template {
    CK_OBJECT_CLASS cls;
    CK_KEY_TYPE key_type;
    CK_ULONG value_len;
    CK_BBOOL yes, no;
    CK_BBOOL token, extractable, wrap, unwrap, encrypt, decrypt;
    CK_ATTRIBUTE attrs[20];
    CK_ULONG n;
};

static void add_attr(struct key_template *t, CK_ATTRIBUTE_TYPE type, void *value, CK_ULONG len)
{
    t->attrs[t->n].type = type;
    t->attrs[t->n].pValue = value;
    t->attrs[t->n].ulValueLen = len;
    t->n++;
}

static CK_BBOOL bool_of(bool b)
{
    return b ? CK_TRUE : CK_FALSE;
}

static enum coffer_err check_spec(const struct coffer_p11_keyspec *spec)
{
    const unsigned all =
        COFFER_P11_WRAP | COFFER_P11_UNWRAP | COFFER_P11_ENCRYPT | COFFER_P11_DECRYPT;

    if (spec == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "no key specification");
    }
    if ((spec->usage & ~all) != 0) {
        return coffer_err_set(COFFER_E_INVALID, "key usage 0x%x has unknown bits", spec->usage);
    }
    if (spec->label != NULL && (spec->label[0] == '\0' || strlen(spec->label) > P11_LABEL_MAX)) {
        return coffer_err_set(COFFER_E_INVALID, "key label must be 1 to %u bytes", P11_LABEL_MAX);
    }
    return COFFER_OK;
}

/*
 * Every attribute that decides what the key may do is given explicitly, so
 * nothing depends on a token's defaults. with_value_len is false for unwrap,
 * where the length comes from the wrapped key itself.
 */
static void build_key_template(struct key_template *t, const struct coffer_p11_keyspec *spec,
                               bool with_value_len)
{
    memset(t, 0, sizeof(*t));
    t->cls = CKO_SECRET_KEY;
    t->key_type = CKK_AES;
    t->value_len = AES256_KEY_LEN;
    t->yes = CK_TRUE;
    t->no = CK_FALSE;
    t->token = bool_of(spec->persistent);
    t->extractable = bool_of(spec->extractable);
    t->wrap = bool_of((spec->usage & COFFER_P11_WRAP) != 0);
    t->unwrap = bool_of((spec->usage & COFFER_P11_UNWRAP) != 0);
    t->encrypt = bool_of((spec->usage & COFFER_P11_ENCRYPT) != 0);
    t->decrypt = bool_of((spec->usage & COFFER_P11_DECRYPT) != 0);

    add_attr(t, CKA_CLASS, &t->cls, sizeof(t->cls));
    add_attr(t, CKA_KEY_TYPE, &t->key_type, sizeof(t->key_type));
    if (with_value_len) {
        add_attr(t, CKA_VALUE_LEN, &t->value_len, sizeof(t->value_len));
    }
    add_attr(t, CKA_TOKEN, &t->token, sizeof(CK_BBOOL));
    add_attr(t, CKA_PRIVATE, &t->yes, sizeof(CK_BBOOL));
    add_attr(t, CKA_SENSITIVE, &t->yes, sizeof(CK_BBOOL));
    add_attr(t, CKA_EXTRACTABLE, &t->extractable, sizeof(CK_BBOOL));
    add_attr(t, CKA_WRAP, &t->wrap, sizeof(CK_BBOOL));
    add_attr(t, CKA_UNWRAP, &t->unwrap, sizeof(CK_BBOOL));
    add_attr(t, CKA_ENCRYPT, &t->encrypt, sizeof(CK_BBOOL));
    add_attr(t, CKA_DECRYPT, &t->decrypt, sizeof(CK_BBOOL));
    add_attr(t, CKA_SIGN, &t->no, sizeof(CK_BBOOL));
    add_attr(t, CKA_VERIFY, &t->no, sizeof(CK_BBOOL));
    add_attr(t, CKA_DERIVE, &t->no, sizeof(CK_BBOOL));
    if (spec->label != NULL) {
        /* PKCS#11 does not write through a template's pointers. */
        add_attr(t, CKA_LABEL, (void *)spec->label, (CK_ULONG)strlen(spec->label));
    }
}

enum coffer_err coffer_p11_generate_aes(struct coffer_p11_session *s,
                                        const struct coffer_p11_keyspec *spec, coffer_p11_obj *out)
{
    CK_MECHANISM mech = {CKM_AES_KEY_GEN, NULL, 0};
    CK_OBJECT_HANDLE obj = CK_INVALID_HANDLE;
    struct key_template t;
    enum coffer_err rc;
    CK_RV rv;

    if (out == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "coffer_p11_generate_aes: no output");
    }
    *out = 0;
    if ((rc = p11_check_session(s)) != COFFER_OK || (rc = check_spec(spec)) != COFFER_OK) {
        return rc;
    }
    build_key_template(&t, spec, true);
    rv = fn_of(s)->C_GenerateKey(s->handle, &mech, t.attrs, t.n, &obj);
    if (rv != CKR_OK) {
        return p11_rv_fail("C_GenerateKey", rv, P11_PATH_NORMAL);
    }
    if (obj == CK_INVALID_HANDLE) {
        return coffer_err_set(COFFER_E_TOKEN, "C_GenerateKey returned no object handle");
    }
    atomic_fetch_add_explicit(&s->owner->objects_made, 1, memory_order_relaxed);
    *out = obj;
    return COFFER_OK;
}

/* ---- Finding and reading ----------------------------------------------------------- */

enum coffer_err coffer_p11_find_key(struct coffer_p11_session *s, const char *label,
                                    coffer_p11_obj *out)
{
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_BBOOL yes = CK_TRUE;
    CK_ATTRIBUTE tmpl[3];
    CK_OBJECT_HANDLE found[2] = {CK_INVALID_HANDLE, CK_INVALID_HANDLE};
    CK_ULONG n = 0;
    enum coffer_err rc;
    CK_RV rv, rv_final;

    if (out == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "coffer_p11_find_key: no output");
    }
    *out = 0;
    if ((rc = p11_check_session(s)) != COFFER_OK) {
        return rc;
    }
    if (label == NULL || label[0] == '\0' || strlen(label) > P11_LABEL_MAX) {
        return coffer_err_set(COFFER_E_INVALID, "key label must be 1 to %u bytes", P11_LABEL_MAX);
    }
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
        return coffer_err_set(COFFER_E_NOT_FOUND, "no secret key labelled '%s' on token '%s'",
                              label, s->owner->info.label);
    }
    if (n > 2) {
        return coffer_err_set(COFFER_E_TOKEN, "C_FindObjects returned %lu objects for room of 2",
                              (unsigned long)n);
    }
    if (n > 1 || found[0] == CK_INVALID_HANDLE) {
        return coffer_err_set(COFFER_E_INTEGRITY,
                              "more than one secret key labelled '%s' on token '%s'", label,
                              s->owner->info.label);
    }
    *out = found[0];
    return COFFER_OK;
}

enum coffer_err coffer_p11_kcv(struct coffer_p11_session *s, coffer_p11_obj key,
                               unsigned char kcv[COFFER_KCV_LEN])
{
    CK_ATTRIBUTE a = {CKA_CHECK_VALUE, NULL, 0};
    unsigned char value[COFFER_KCV_LEN];
    enum coffer_err rc;
    CK_RV rv;

    if ((rc = p11_check_session(s)) != COFFER_OK) {
        return rc;
    }
    if (kcv == NULL || key == 0) {
        return coffer_err_set(COFFER_E_INVALID, "coffer_p11_kcv: no key or no output");
    }
    rv = fn_of(s)->C_GetAttributeValue(s->handle, key, &a, 1);
    if (rv == CKR_ATTRIBUTE_TYPE_INVALID) {
        return coffer_err_set(COFFER_E_STATE, "the token keeps no CKA_CHECK_VALUE for key %lu",
                              key);
    }
    if (rv != CKR_OK) {
        return coffer_err_wrap(p11_rv_fail("C_GetAttributeValue", rv, P11_PATH_NORMAL),
                               "reading CKA_CHECK_VALUE");
    }
    /* SoftHSMv2 computes it at generation but leaves it empty on unwrapped keys. */
    if (a.ulValueLen != COFFER_KCV_LEN) {
        return coffer_err_set(COFFER_E_STATE,
                              "CKA_CHECK_VALUE of key %lu is %ld bytes, not %d: the token has "
                              "no check value for it",
                              key, (long)a.ulValueLen, COFFER_KCV_LEN);
    }
    a.pValue = value;
    rv = fn_of(s)->C_GetAttributeValue(s->handle, key, &a, 1);
    if (rv != CKR_OK) {
        return coffer_err_wrap(p11_rv_fail("C_GetAttributeValue", rv, P11_PATH_NORMAL),
                               "reading CKA_CHECK_VALUE");
    }
    if (a.ulValueLen != COFFER_KCV_LEN) {
        return coffer_err_set(COFFER_E_TOKEN, "CKA_CHECK_VALUE changed length between reads");
    }
    coffer_memcpy(kcv, value, COFFER_KCV_LEN);
    return COFFER_OK;
}

enum coffer_err p11_attr_bool(struct coffer_p11_session *s, coffer_p11_obj obj,
                              CK_ATTRIBUTE_TYPE type, const char *name, bool *out)
{
    CK_BBOOL v = CK_FALSE;
    CK_ATTRIBUTE a = {type, &v, sizeof(v)};
    CK_RV rv;

    *out = false;
    rv = fn_of(s)->C_GetAttributeValue(s->handle, obj, &a, 1);
    if (rv == CKR_ATTRIBUTE_TYPE_INVALID || rv == CKR_ATTRIBUTE_SENSITIVE) {
        return COFFER_OK;
    }
    if (rv != CKR_OK) {
        return coffer_err_wrap(p11_rv_fail("C_GetAttributeValue", rv, P11_PATH_NORMAL),
                               "reading %s of object %lu", name, obj);
    }
    if (a.ulValueLen != sizeof(CK_BBOOL)) {
        return coffer_err_set(COFFER_E_TOKEN, "%s of object %lu is %ld bytes, not a CK_BBOOL", name,
                              obj, (long)a.ulValueLen);
    }
    *out = v != CK_FALSE;
    return COFFER_OK;
}

enum coffer_err p11_attr_ulong(struct coffer_p11_session *s, coffer_p11_obj obj,
                               CK_ATTRIBUTE_TYPE type, const char *name, CK_ULONG *out)
{
    CK_ULONG v = (CK_ULONG)-1;
    CK_ATTRIBUTE a = {type, &v, sizeof(v)};
    CK_RV rv;

    *out = (CK_ULONG)-1;
    rv = fn_of(s)->C_GetAttributeValue(s->handle, obj, &a, 1);
    if (rv != CKR_OK) {
        return coffer_err_wrap(p11_rv_fail("C_GetAttributeValue", rv, P11_PATH_NORMAL),
                               "reading %s of object %lu", name, obj);
    }
    if (a.ulValueLen != sizeof(CK_ULONG)) {
        return coffer_err_set(COFFER_E_TOKEN, "%s of object %lu is %ld bytes, not a CK_ULONG", name,
                              obj, (long)a.ulValueLen);
    }
    *out = v;
    return COFFER_OK;
}

static enum coffer_err get_value_len(struct coffer_p11_session *s, coffer_p11_obj key,
                                     unsigned long *out)
{
    CK_ULONG v = 0;
    CK_ATTRIBUTE a = {CKA_VALUE_LEN, &v, sizeof(v)};
    CK_RV rv;

    *out = 0;
    rv = fn_of(s)->C_GetAttributeValue(s->handle, key, &a, 1);
    if (rv == CKR_ATTRIBUTE_TYPE_INVALID) {
        return COFFER_OK;
    }
    if (rv != CKR_OK) {
        return coffer_err_wrap(p11_rv_fail("C_GetAttributeValue", rv, P11_PATH_NORMAL),
                               "reading CKA_VALUE_LEN of key %lu", key);
    }
    if (a.ulValueLen != sizeof(CK_ULONG)) {
        return coffer_err_set(COFFER_E_TOKEN, "CKA_VALUE_LEN of key %lu is %ld bytes", key,
                              (long)a.ulValueLen);
    }
    *out = v;
    return COFFER_OK;
}

static enum coffer_err get_label(struct coffer_p11_session *s, coffer_p11_obj key,
                                 char out[P11_LABEL_MAX + 1])
{
    CK_ATTRIBUTE a = {CKA_LABEL, NULL, 0};
    CK_RV rv;

    out[0] = '\0';
    rv = fn_of(s)->C_GetAttributeValue(s->handle, key, &a, 1);
    if (rv == CKR_ATTRIBUTE_TYPE_INVALID) {
        return COFFER_OK;
    }
    if (rv != CKR_OK) {
        return coffer_err_wrap(p11_rv_fail("C_GetAttributeValue", rv, P11_PATH_NORMAL),
                               "reading CKA_LABEL of key %lu", key);
    }
    if (a.ulValueLen == CK_UNAVAILABLE_INFORMATION || a.ulValueLen > P11_LABEL_MAX) {
        return coffer_err_set(COFFER_E_LIMIT, "CKA_LABEL of key %lu is %ld bytes, at most %u", key,
                              (long)a.ulValueLen, P11_LABEL_MAX);
    }
    a.pValue = out;
    rv = fn_of(s)->C_GetAttributeValue(s->handle, key, &a, 1);
    if (rv != CKR_OK) {
        return coffer_err_wrap(p11_rv_fail("C_GetAttributeValue", rv, P11_PATH_NORMAL),
                               "reading CKA_LABEL of key %lu", key);
    }
    if (a.ulValueLen > P11_LABEL_MAX) {
        return coffer_err_set(COFFER_E_TOKEN, "CKA_LABEL changed length between reads");
    }
    out[a.ulValueLen] = '\0';
    return COFFER_OK;
}

/*
 * Whether the token would hand out CKA_VALUE. Only the length is asked for
 * (pValue NULL): the key bytes are never requested, even when they could be.
 */
static bool value_readable(struct coffer_p11_session *s, coffer_p11_obj key)
{
    CK_ATTRIBUTE a = {CKA_VALUE, NULL, 0};
    CK_RV rv = fn_of(s)->C_GetAttributeValue(s->handle, key, &a, 1);

    return rv == CKR_OK && a.ulValueLen != CK_UNAVAILABLE_INFORMATION;
}

struct bool_attr {
    CK_ATTRIBUTE_TYPE type;
    const char *name;
    bool *dst;
};

enum coffer_err coffer_p11_attrs(struct coffer_p11_session *s, coffer_p11_obj key,
                                 struct coffer_p11_attrs *out)
{
    enum coffer_err rc;

    if (out == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "coffer_p11_attrs: no output");
    }
    memset(out, 0, sizeof(*out));
    if ((rc = p11_check_session(s)) != COFFER_OK) {
        return rc;
    }
    if (key == 0) {
        return coffer_err_set(COFFER_E_INVALID, "coffer_p11_attrs: no key");
    }
    const struct bool_attr bools[] = {
        {CKA_TOKEN, "CKA_TOKEN", &out->token},
        {CKA_PRIVATE, "CKA_PRIVATE", &out->private_},
        {CKA_SENSITIVE, "CKA_SENSITIVE", &out->sensitive},
        {CKA_ALWAYS_SENSITIVE, "CKA_ALWAYS_SENSITIVE", &out->always_sensitive},
        {CKA_EXTRACTABLE, "CKA_EXTRACTABLE", &out->extractable},
        {CKA_NEVER_EXTRACTABLE, "CKA_NEVER_EXTRACTABLE", &out->never_extractable},
        {CKA_WRAP, "CKA_WRAP", &out->wrap},
        {CKA_UNWRAP, "CKA_UNWRAP", &out->unwrap},
        {CKA_ENCRYPT, "CKA_ENCRYPT", &out->encrypt},
        {CKA_DECRYPT, "CKA_DECRYPT", &out->decrypt},
    };
    const size_t n = sizeof(bools) / sizeof(bools[0]);

    for (size_t i = 0; i < n; i++) {
        if ((rc = p11_attr_bool(s, key, bools[i].type, bools[i].name, bools[i].dst)) != COFFER_OK) {
            goto out;
        }
    }
    if ((rc = get_value_len(s, key, &out->value_len)) != COFFER_OK) {
        goto out;
    }
    if ((rc = get_label(s, key, out->label)) != COFFER_OK) {
        goto out;
    }
    out->value_readable = value_readable(s, key);
out:
    if (rc != COFFER_OK) {
        memset(out, 0, sizeof(*out));
    }
    return rc;
}

/* ---- Copy and destroy ---------------------------------------------------------------- */

enum coffer_err coffer_p11_copy_to_session(struct coffer_p11_session *s, coffer_p11_obj key,
                                           coffer_p11_obj *out)
{
    CK_BBOOL no = CK_FALSE;
    CK_ATTRIBUTE tmpl[] = {{CKA_TOKEN, &no, sizeof(no)}};
    CK_OBJECT_HANDLE obj = CK_INVALID_HANDLE;
    enum coffer_err rc;
    CK_RV rv;

    if (out == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "coffer_p11_copy_to_session: no output");
    }
    *out = 0;
    if ((rc = p11_check_session(s)) != COFFER_OK) {
        return rc;
    }
    if (key == 0) {
        return coffer_err_set(COFFER_E_INVALID, "coffer_p11_copy_to_session: no key");
    }
    rv = fn_of(s)->C_CopyObject(s->handle, key, tmpl, 1, &obj);
    if (rv != CKR_OK) {
        return p11_rv_fail("C_CopyObject", rv, P11_PATH_NORMAL);
    }
    if (obj == CK_INVALID_HANDLE) {
        return coffer_err_set(COFFER_E_TOKEN, "C_CopyObject returned no object handle");
    }
    atomic_fetch_add_explicit(&s->owner->objects_made, 1, memory_order_relaxed);
    *out = obj;
    return COFFER_OK;
}

void coffer_p11_destroy(struct coffer_p11_session *s, coffer_p11_obj *key)
{
    CK_RV rv;

    if (key == NULL || *key == 0) {
        return;
    }
    if (p11_check_session(s) != COFFER_OK) {
        coffer_warn("p11", "not destroying object %lu: %s", *key, coffer_err_detail());
        *key = 0;
        return;
    }
    rv = fn_of(s)->C_DestroyObject(s->handle, *key);
    if (rv != CKR_OK) {
        coffer_warn("p11", "C_DestroyObject of object %lu: %s (0x%lx)", *key, p11_rv_name(rv),
                    (unsigned long)rv);
    }
    *key = 0;
}

/* ---- Wrap and unwrap ------------------------------------------------------------------ */

enum coffer_err coffer_p11_wrap(struct coffer_p11_session *s, coffer_p11_obj wrapping,
                                coffer_p11_obj key, unsigned char *out, size_t *out_len)
{
    CK_MECHANISM mech = {CKM_AES_KEY_WRAP_PAD, NULL, 0};
    CK_ULONG len = COFFER_WRAPPED_MAX;
    enum coffer_err rc;
    CK_RV rv;

    if (out == NULL || out_len == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "coffer_p11_wrap: no output");
    }
    *out_len = 0;
    if ((rc = p11_check_session(s)) != COFFER_OK) {
        return rc;
    }
    if (wrapping == 0 || key == 0) {
        return coffer_err_set(COFFER_E_INVALID, "coffer_p11_wrap: no key");
    }
    rv = fn_of(s)->C_WrapKey(s->handle, &mech, wrapping, key, out, &len);
    if (rv == CKR_BUFFER_TOO_SMALL) {
        return coffer_err_set(COFFER_E_LIMIT,
                              "C_WrapKey: CKR_BUFFER_TOO_SMALL (0x150): the wrapped key needs "
                              "%lu bytes, at most %d are kept",
                              (unsigned long)len, COFFER_WRAPPED_MAX);
    }
    if (rv != CKR_OK) {
        return p11_rv_fail("C_WrapKey", rv, P11_PATH_NORMAL);
    }
    if (len == 0 || len > COFFER_WRAPPED_MAX) {
        return coffer_err_set(COFFER_E_TOKEN, "C_WrapKey reported %lu bytes", (unsigned long)len);
    }
    *out_len = len;
    return COFFER_OK;
}

enum coffer_err coffer_p11_unwrap(struct coffer_p11_session *s, coffer_p11_obj wrapping,
                                  const unsigned char *wrapped, size_t wrapped_len,
                                  const struct coffer_p11_keyspec *spec, coffer_p11_obj *out)
{
    CK_MECHANISM mech = {CKM_AES_KEY_WRAP_PAD, NULL, 0};
    CK_OBJECT_HANDLE obj = CK_INVALID_HANDLE;
    struct key_template t;
    enum coffer_err rc;
    CK_RV rv;

    if (out == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "coffer_p11_unwrap: no output");
    }
    *out = 0;
    if ((rc = p11_check_session(s)) != COFFER_OK || (rc = check_spec(spec)) != COFFER_OK) {
        return rc;
    }
    if (spec->persistent) {
        return coffer_err_set(COFFER_E_INVALID, "unwrapped keys are session objects only");
    }
    if (wrapping == 0 || wrapped == NULL || wrapped_len == 0) {
        return coffer_err_set(COFFER_E_INVALID,
                              "coffer_p11_unwrap: no wrapped key or no wrapping key");
    }
    /*
     * The token cannot be asked how long the key inside is (SoftHSMv2 leaves
     * CKA_VALUE_LEN unset on unwrapped keys), but RFC 5649 makes it plain:
     * only a 32-byte key wraps to 40 bytes among the AES key sizes.
     */
    if (wrapped_len != AES256_WRAPPED_LEN) {
        return coffer_err_set(COFFER_E_INTEGRITY,
                              "wrapped key is %zu bytes; an AES-256 key wrapped with RFC 5649 "
                              "is %u",
                              wrapped_len, AES256_WRAPPED_LEN);
    }
    /* No CKA_VALUE_LEN: the length comes from the blob, and SoftHSMv2 refuses it as read-only. */
    build_key_template(&t, spec, false);
    rv = fn_of(s)->C_UnwrapKey(s->handle, &mech, wrapping, (CK_BYTE_PTR)wrapped,
                               (CK_ULONG)wrapped_len, t.attrs, t.n, &obj);
    if (rv != CKR_OK) {
        return p11_rv_fail("C_UnwrapKey", rv, P11_PATH_INTEGRITY);
    }
    if (obj == CK_INVALID_HANDLE) {
        return coffer_err_set(COFFER_E_TOKEN, "C_UnwrapKey returned no object handle");
    }
    atomic_fetch_add_explicit(&s->owner->objects_made, 1, memory_order_relaxed);
    *out = obj;
    return COFFER_OK;
}

/* ---- AES-256-GCM ------------------------------------------------------------------------ */

struct gcm {
    unsigned char iv[COFFER_GCM_IV_LEN];
    CK_GCM_PARAMS params;
    CK_MECHANISM mech;
};

/* Builds the mechanism in place; the IV is copied so the token never sees the caller's const. */
static void gcm_init(struct gcm *g, const unsigned char iv[COFFER_GCM_IV_LEN],
                     const unsigned char *aad, size_t aad_len)
{
    memset(g, 0, sizeof(*g));
    coffer_memcpy(g->iv, iv, COFFER_GCM_IV_LEN);
    g->params.pIv = g->iv;
    g->params.ulIvLen = COFFER_GCM_IV_LEN;
    g->params.ulIvBits = COFFER_GCM_IV_LEN * 8;
    g->params.pAAD = (CK_BYTE_PTR)aad;
    g->params.ulAADLen = (CK_ULONG)aad_len;
    g->params.ulTagBits = COFFER_GCM_TAG_LEN * 8;
    g->mech.mechanism = CKM_AES_GCM;
    g->mech.pParameter = &g->params;
    g->mech.ulParameterLen = sizeof(g->params);
}

static enum coffer_err check_gcm_args(struct coffer_p11_session *s, coffer_p11_obj key,
                                      const unsigned char *iv, const unsigned char *aad,
                                      size_t aad_len, const void *in, size_t in_len)
{
    enum coffer_err rc;

    if ((rc = p11_check_session(s)) != COFFER_OK) {
        return rc;
    }
    if (key == 0 || iv == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "AES-GCM needs a key and an IV");
    }
    if ((aad == NULL && aad_len > 0) || (in == NULL && in_len > 0)) {
        return coffer_err_set(COFFER_E_INVALID, "AES-GCM input pointer is NULL with a length");
    }
    if (in_len > COFFER_SECRET_MAX - COFFER_GCM_TAG_LEN) {
        return coffer_err_set(COFFER_E_LIMIT, "AES-GCM input of %zu bytes is above %u", in_len,
                              COFFER_SECRET_MAX - COFFER_GCM_TAG_LEN);
    }
    return COFFER_OK;
}

/*
 * A single-part call that answered CKR_BUFFER_TOO_SMALL leaves its operation
 * active, and PKCS#11 2.40 has no way to cancel one: the session is replaced.
 */
static enum coffer_err end_stuck_operation(struct coffer_p11_session *s, const char *fn,
                                           CK_ULONG wanted, size_t given)
{
    enum coffer_err rc = p11_session_reset(s);

    if (rc != COFFER_OK) {
        coffer_warn("p11", "replacing a session after %s: %s", fn, coffer_err_detail());
    }
    return coffer_err_set(COFFER_E_TOKEN,
                          "%s: CKR_BUFFER_TOO_SMALL (0x150): the token wants %lu bytes of "
                          "output where %zu are enough",
                          fn, (unsigned long)wanted, given);
}

enum coffer_err coffer_p11_gcm_encrypt(struct coffer_p11_session *s, coffer_p11_obj key,
                                       const unsigned char iv[COFFER_GCM_IV_LEN],
                                       const unsigned char *aad, size_t aad_len,
                                       const unsigned char *pt, size_t pt_len, unsigned char *ct,
                                       unsigned char tag[COFFER_GCM_TAG_LEN])
{
    unsigned char empty = 0;
    unsigned char *buf = NULL;
    size_t buf_len = pt_len + COFFER_GCM_TAG_LEN;
    CK_ULONG len = (CK_ULONG)buf_len;
    struct gcm g;
    enum coffer_err rc;
    CK_RV rv;

    if ((rc = check_gcm_args(s, key, iv, aad, aad_len, pt, pt_len)) != COFFER_OK) {
        return rc;
    }
    if (tag == NULL || (ct == NULL && pt_len > 0)) {
        return coffer_err_set(COFFER_E_INVALID, "AES-GCM encryption needs ct and tag buffers");
    }
    /* Allocated before the operation starts, so no failure can leave it active. */
    buf = coffer_calloc(buf_len, 1);
    if (buf == NULL) {
        return coffer_err_set(COFFER_E_NOMEM, "AES-GCM output of %zu bytes", buf_len);
    }
    gcm_init(&g, iv, aad, aad_len);
    rv = fn_of(s)->C_EncryptInit(s->handle, &g.mech, key);
    if (rv != CKR_OK) {
        rc = p11_rv_fail("C_EncryptInit", rv, P11_PATH_NORMAL);
        goto out;
    }
    /* Some modules refuse a NULL data pointer even for zero bytes. */
    rv = fn_of(s)->C_Encrypt(s->handle, pt_len > 0 ? (CK_BYTE_PTR)pt : &empty, (CK_ULONG)pt_len,
                             buf, &len);
    if (rv == CKR_BUFFER_TOO_SMALL) {
        rc = end_stuck_operation(s, "C_Encrypt", len, buf_len);
        goto out;
    }
    if (rv != CKR_OK) {
        rc = p11_rv_fail("C_Encrypt", rv, P11_PATH_NORMAL);
        goto out;
    }
    if (len != buf_len) {
        rc = coffer_err_set(COFFER_E_TOKEN,
                            "C_Encrypt returned %lu bytes for %zu bytes of plaintext, want %zu",
                            (unsigned long)len, pt_len, buf_len);
        goto out;
    }
    coffer_memcpy(ct, buf, pt_len);
    coffer_memcpy(tag, buf + pt_len, COFFER_GCM_TAG_LEN);
out:
    coffer_freezero(buf, buf_len);
    return rc;
}

enum coffer_err coffer_p11_gcm_decrypt(struct coffer_p11_session *s, coffer_p11_obj key,
                                       const unsigned char iv[COFFER_GCM_IV_LEN],
                                       const unsigned char *aad, size_t aad_len,
                                       const unsigned char *ct, size_t ct_len,
                                       const unsigned char tag[COFFER_GCM_TAG_LEN],
                                       struct coffer_secret **out)
{
    struct coffer_secret *pt = NULL;
    struct coffer_secret_view v;
    unsigned char *in = NULL;
    size_t in_len = ct_len + COFFER_GCM_TAG_LEN;
    CK_ULONG len;
    struct gcm g;
    enum coffer_err rc;
    CK_RV rv;

    if (out == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "coffer_p11_gcm_decrypt: no output");
    }
    *out = NULL;
    if ((rc = check_gcm_args(s, key, iv, aad, aad_len, ct, ct_len)) != COFFER_OK) {
        return rc;
    }
    if (tag == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "AES-GCM decryption needs the tag");
    }
    in = coffer_calloc(in_len, 1);
    if (in == NULL) {
        return coffer_err_set(COFFER_E_NOMEM, "AES-GCM input of %zu bytes", in_len);
    }
    coffer_memcpy(in, ct, ct_len);
    coffer_memcpy(in + ct_len, tag, COFFER_GCM_TAG_LEN);
    /*
     * SoftHSMv2 wants an output buffer as long as its input (ciphertext and
     * tag) before it will decrypt; the plaintext is then cut to what was written.
     */
    if ((rc = coffer_secret_new(in_len, &pt)) != COFFER_OK) {
        goto out;
    }
    v = coffer_secret_view(pt);
    len = (CK_ULONG)v.len;
    gcm_init(&g, iv, aad, aad_len);
    rv = fn_of(s)->C_DecryptInit(s->handle, &g.mech, key);
    if (rv != CKR_OK) {
        rc = p11_rv_fail("C_DecryptInit", rv, P11_PATH_NORMAL);
        goto out;
    }
    rv = fn_of(s)->C_Decrypt(s->handle, in, (CK_ULONG)in_len, v.data, &len);
    if (rv == CKR_BUFFER_TOO_SMALL) {
        rc = end_stuck_operation(s, "C_Decrypt", len, v.len);
        goto out;
    }
    if (rv != CKR_OK) {
        /* Any other failure has ended the operation already. */
        rc = p11_rv_fail("C_Decrypt", rv, P11_PATH_INTEGRITY);
        goto out;
    }
    if (len != ct_len) {
        rc = coffer_err_set(COFFER_E_TOKEN,
                            "C_Decrypt returned %lu bytes for %zu bytes of ciphertext",
                            (unsigned long)len, ct_len);
        goto out;
    }
    if ((rc = coffer_secret_truncate(pt, ct_len)) != COFFER_OK) {
        goto out;
    }
    *out = pt;
    pt = NULL;
out:
    coffer_secret_free(&pt);
    coffer_freezero(in, in_len);
    return rc;
}

/* ---- Token initialisation ----------------------------------------------------------------- */

static enum coffer_err check_init_args(const char *label, const struct coffer_secret *so_pin,
                                       const struct coffer_secret *user_pin)
{
    if (label == NULL || label[0] == '\0' || strlen(label) > 32) {
        return coffer_err_set(COFFER_E_INVALID, "token label must be 1 to 32 bytes");
    }
    if (so_pin == NULL || user_pin == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "token initialisation needs an SO and a user PIN");
    }
    if (coffer_secret_len(so_pin) == 0 || coffer_secret_len(so_pin) > P11_PIN_MAX ||
        coffer_secret_len(user_pin) == 0 || coffer_secret_len(user_pin) > P11_PIN_MAX) {
        return coffer_err_set(COFFER_E_PIN, "token PINs must be 1 to %u bytes", P11_PIN_MAX);
    }
    return COFFER_OK;
}

/* How many times the slots are read when one of them cannot be (see coffer_p11_init_token). */
#define INIT_SCAN_ATTEMPTS 5u

/* The first slot with an uninitialised token; COFFER_E_EXISTS if label is taken. */
static enum coffer_err find_free_slot(CK_FUNCTION_LIST *fn, const char *label, CK_SLOT_ID *out)
{
    CK_SLOT_ID *slots = NULL;
    CK_ULONG n = 0;
    bool have_free = false;
    enum coffer_err rc;

    if ((rc = p11_list_slots(fn, &slots, &n)) != COFFER_OK) {
        return rc;
    }
    for (CK_ULONG i = 0; i < n; i++) {
        CK_TOKEN_INFO ti;
        char have[33];
        CK_RV rv = fn->C_GetTokenInfo(slots[i], &ti);

        if (rv == CKR_TOKEN_NOT_PRESENT || rv == CKR_TOKEN_NOT_RECOGNIZED) {
            continue;
        }
        if (rv != CKR_OK) {
            rc = p11_rv_fail("C_GetTokenInfo", rv, P11_PATH_NORMAL);
            goto out;
        }
        if ((ti.flags & CKF_TOKEN_INITIALIZED) == 0) {
            if (!have_free) {
                *out = slots[i];
                have_free = true;
            }
            continue;
        }
        p11_trim_field(have, sizeof(have), ti.label, sizeof(ti.label));
        if (strcmp(have, label) == 0) {
            rc = coffer_err_set(COFFER_E_EXISTS, "a token labelled '%s' exists already (slot %lu)",
                                label, (unsigned long)slots[i]);
            goto out;
        }
    }
    if (!have_free) {
        rc = coffer_err_set(COFFER_E_TOKEN_NOT_FOUND, "no slot holds an uninitialised token");
    }
out:
    coffer_free(slots);
    return rc;
}

/* C_Login as SO, C_InitPIN, C_Logout on a fresh session of slot. */
static enum coffer_err set_user_pin(CK_FUNCTION_LIST *fn, CK_SLOT_ID slot,
                                    const struct coffer_secret *so_pin,
                                    const struct coffer_secret *user_pin)
{
    struct coffer_secret_view so = coffer_secret_view(so_pin);
    struct coffer_secret_view user = coffer_secret_view(user_pin);
    CK_SESSION_HANDLE h = CK_INVALID_HANDLE;
    bool logged_in = false;
    enum coffer_err rc = COFFER_OK;
    CK_RV rv;

    rv = fn->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &h);
    if (rv != CKR_OK) {
        return p11_rv_fail("C_OpenSession", rv, P11_PATH_NORMAL);
    }
    rv = fn->C_Login(h, CKU_SO, so.data, so.len);
    if (rv != CKR_OK) {
        rc = p11_rv_fail("C_Login", rv, P11_PATH_NORMAL);
        goto out;
    }
    logged_in = true;
    rv = fn->C_InitPIN(h, user.data, user.len);
    if (rv != CKR_OK) {
        rc = p11_rv_fail("C_InitPIN", rv, P11_PATH_NORMAL);
        goto out;
    }
out:
    if (logged_in) {
        rv = fn->C_Logout(h);
        if (rv != CKR_OK && rc == COFFER_OK) {
            rc = p11_rv_fail("C_Logout", rv, P11_PATH_NORMAL);
        }
    }
    rv = fn->C_CloseSession(h);
    if (rv != CKR_OK && rc == COFFER_OK) {
        rc = p11_rv_fail("C_CloseSession", rv, P11_PATH_NORMAL);
    }
    return rc;
}

enum coffer_err coffer_p11_init_token(const char *module, const char *label,
                                      const struct coffer_secret *so_pin,
                                      const struct coffer_secret *user_pin)
{
    CK_FUNCTION_LIST *fn = NULL;
    CK_UTF8CHAR padded[32];
    struct coffer_secret_view so;
    CK_SLOT_ID slot = 0;
    enum coffer_err rc;
    CK_RV rv;

    if ((rc = check_init_args(label, so_pin, user_pin)) != COFFER_OK) {
        return rc;
    }
    if ((rc = p11_module_acquire(module, &fn)) != COFFER_OK) {
        return rc;
    }
    /*
     * Another process rewriting its token's file as the slots are read makes
     * that slot's C_GetTokenInfo fail with CKR_GENERAL_ERROR (see the same
     * race in coffer_p11_open): the slots are read again a few times. No PIN
     * is tried here, so trying again cannot lock anything.
     */
    for (unsigned attempt = 1;; attempt++) {
        struct timespec pause = {0, (long)attempt * 20 * 1000 * 1000};

        rc = find_free_slot(fn, label, &slot);
        if (rc != COFFER_E_TOKEN || attempt == INIT_SCAN_ATTEMPTS) {
            break;
        }
        (void)nanosleep(&pause, NULL);
    }
    if (rc != COFFER_OK) {
        goto out;
    }
    memset(padded, ' ', sizeof(padded));
    coffer_memcpy(padded, label, strlen(label));
    so = coffer_secret_view(so_pin);
    rv = fn->C_InitToken(slot, so.data, so.len, padded);
    if (rv != CKR_OK) {
        rc = coffer_err_wrap(p11_rv_fail("C_InitToken", rv, P11_PATH_NORMAL),
                             "initialising token '%s' in slot %lu", label, (unsigned long)slot);
        goto out;
    }
    if ((rc = set_user_pin(fn, slot, so_pin, user_pin)) != COFFER_OK) {
        rc = coffer_err_wrap(rc, "setting the user PIN of token '%s'", label);
        goto out;
    }
out:
    p11_module_release(fn);
    return rc;
}

/* ---- Destroying by label ------------------------------------------------------------- */

/* Handles fetched per search; a label with more objects takes several rounds. */
#define LABELLED_BATCH 32u
/* Rounds of find-and-destroy before giving up on a token that keeps answering. */
#define LABELLED_ROUNDS 64u

static enum coffer_err check_label_arg(const char *label)
{
    if (label == NULL || label[0] == '\0' || strlen(label) > P11_LABEL_MAX) {
        return coffer_err_set(COFFER_E_INVALID, "object label must be 1 to %u bytes",
                              P11_LABEL_MAX);
    }
    return COFFER_OK;
}

/* Up to LABELLED_BATCH token objects of any class labelled label. */
static enum coffer_err find_labelled(struct coffer_p11_session *s, const char *label,
                                     CK_OBJECT_HANDLE found[LABELLED_BATCH], CK_ULONG *n)
{
    CK_BBOOL yes = CK_TRUE;
    CK_ATTRIBUTE tmpl[2];
    CK_RV rv, rv_final;

    *n = 0;
    tmpl[0] = (CK_ATTRIBUTE){CKA_TOKEN, &yes, sizeof(yes)};
    tmpl[1] = (CK_ATTRIBUTE){CKA_LABEL, (void *)label, (CK_ULONG)strlen(label)};
    rv = fn_of(s)->C_FindObjectsInit(s->handle, tmpl, 2);
    if (rv != CKR_OK) {
        return p11_rv_fail("C_FindObjectsInit", rv, P11_PATH_NORMAL);
    }
    rv = fn_of(s)->C_FindObjects(s->handle, found, LABELLED_BATCH, n);
    rv_final = fn_of(s)->C_FindObjectsFinal(s->handle);
    if (rv != CKR_OK) {
        *n = 0;
        return p11_rv_fail("C_FindObjects", rv, P11_PATH_NORMAL);
    }
    if (rv_final != CKR_OK) {
        *n = 0;
        return p11_rv_fail("C_FindObjectsFinal", rv_final, P11_PATH_NORMAL);
    }
    if (*n > LABELLED_BATCH) {
        CK_ULONG got = *n;

        *n = 0;
        return coffer_err_set(COFFER_E_TOKEN, "C_FindObjects returned %lu objects for room of %u",
                              (unsigned long)got, LABELLED_BATCH);
    }
    return COFFER_OK;
}

enum coffer_err coffer_p11_count_labelled(struct coffer_p11_session *s, const char *label,
                                          size_t *out)
{
    CK_OBJECT_HANDLE found[LABELLED_BATCH];
    CK_ULONG n = 0;
    enum coffer_err rc;

    if (out == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "coffer_p11_count_labelled: no output");
    }
    *out = 0;
    if ((rc = p11_check_session(s)) != COFFER_OK || (rc = check_label_arg(label)) != COFFER_OK ||
        (rc = find_labelled(s, label, found, &n)) != COFFER_OK) {
        return rc;
    }
    *out = (size_t)n;
    return COFFER_OK;
}

enum coffer_err coffer_p11_destroy_labelled(struct coffer_p11_session *s, const char *label,
                                            size_t *destroyed)
{
    CK_OBJECT_HANDLE found[LABELLED_BATCH];
    CK_ULONG n = 0;
    size_t count = 0;
    enum coffer_err rc;
    unsigned round;

    if (destroyed != NULL) {
        *destroyed = 0;
    }
    if ((rc = p11_check_session(s)) != COFFER_OK || (rc = check_label_arg(label)) != COFFER_OK) {
        return rc;
    }
    for (round = 0; round < LABELLED_ROUNDS; round++) {
        if ((rc = find_labelled(s, label, found, &n)) != COFFER_OK) {
            goto out;
        }
        if (n == 0) {
            break;
        }
        for (CK_ULONG i = 0; i < n; i++) {
            CK_RV rv = fn_of(s)->C_DestroyObject(s->handle, found[i]);

            /* An object another process removed meanwhile is as gone as one removed here. */
            if (rv == CKR_OBJECT_HANDLE_INVALID) {
                continue;
            }
            if (rv != CKR_OK) {
                rc = coffer_err_wrap(p11_rv_fail("C_DestroyObject", rv, P11_PATH_NORMAL),
                                     "destroying an object labelled '%s' on token '%s'", label,
                                     s->owner->info.label);
                goto out;
            }
            count++;
        }
    }
    /* The token's word that the call succeeded is not enough: search once more. */
    if ((rc = find_labelled(s, label, found, &n)) != COFFER_OK) {
        goto out;
    }
    if (n > 0) {
        rc = coffer_err_set(COFFER_E_TOKEN,
                            "%lu object(s) labelled '%s' are still on token '%s' after "
                            "C_DestroyObject",
                            (unsigned long)n, label, s->owner->info.label);
        goto out;
    }
    if (count > 0) {
        coffer_info("p11", "destroyed %zu object(s) labelled '%s' on token '%s'", count, label,
                    s->owner->info.label);
    }
out:
    if (destroyed != NULL) {
        *destroyed = count;
    }
    return rc;
}

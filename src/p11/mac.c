/* SPDX-License-Identifier: Apache-2.0 */
/*
 * HMAC keys inside the token: generating the persistent generic secret that
 * digests bearer tokens, reading back what it may do, and computing
 * HMAC-SHA256 with it (C_SignInit, C_Sign).
 *
 * Like the rest of src/p11/ this file hands out handles and MAC values,
 * never key bytes: it never asks for CKA_VALUE. Every signing operation it
 * starts is ended before it returns, so a pooled session never carries an
 * active operation to its next user. The data it signs may be a secret (a
 * bearer token): it is passed to the token as it is and copied nowhere.
 */
#include "p11/p11_int.h"

#include <string.h>

#include "coffer/log.h"
#include "coffer/mem.h"

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

enum coffer_err coffer_p11_generate_hmac_key(struct coffer_p11_session *s, const char *label,
                                             coffer_p11_obj *out)
{
    CK_MECHANISM mech = {CKM_GENERIC_SECRET_KEY_GEN, NULL, 0};
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE type = CKK_GENERIC_SECRET;
    CK_ULONG value_len = COFFER_HMAC_KEY_LEN;
    CK_BBOOL yes = CK_TRUE;
    CK_BBOOL no = CK_FALSE;
    CK_OBJECT_HANDLE obj = CK_INVALID_HANDLE;
    enum coffer_err rc;
    CK_RV rv;

    if (out == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "coffer_p11_generate_hmac_key: no output");
    }
    *out = 0;
    if ((rc = p11_check_session(s)) != COFFER_OK || (rc = check_label(label)) != COFFER_OK) {
        return rc;
    }
    /*
     * Every attribute that decides what the key may do is given explicitly,
     * so nothing depends on the token's defaults: it signs and verifies,
     * and can never be read, wrapped, used to encrypt or to derive.
     */
    CK_ATTRIBUTE tmpl[] = {
        {CKA_CLASS, &cls, sizeof(cls)},
        {CKA_KEY_TYPE, &type, sizeof(type)},
        {CKA_VALUE_LEN, &value_len, sizeof(value_len)},
        {CKA_TOKEN, &yes, sizeof(yes)},
        {CKA_PRIVATE, &yes, sizeof(yes)},
        {CKA_SENSITIVE, &yes, sizeof(yes)},
        {CKA_EXTRACTABLE, &no, sizeof(no)},
        {CKA_SIGN, &yes, sizeof(yes)},
        {CKA_VERIFY, &yes, sizeof(yes)},
        {CKA_ENCRYPT, &no, sizeof(no)},
        {CKA_DECRYPT, &no, sizeof(no)},
        {CKA_WRAP, &no, sizeof(no)},
        {CKA_UNWRAP, &no, sizeof(no)},
        {CKA_DERIVE, &no, sizeof(no)},
        /* PKCS#11 does not write through a template's pointers. */
        {CKA_LABEL, (void *)label, (CK_ULONG)strlen(label)},
    };

    rv = fn_of(s)->C_GenerateKey(s->handle, &mech, tmpl, sizeof(tmpl) / sizeof(tmpl[0]), &obj);
    if (rv != CKR_OK) {
        return p11_rv_fail("C_GenerateKey", rv, P11_PATH_NORMAL);
    }
    if (obj == CK_INVALID_HANDLE) {
        return coffer_err_set(COFFER_E_TOKEN, "C_GenerateKey returned no object handle");
    }
    *out = obj;
    return COFFER_OK;
}

enum coffer_err coffer_p11_mac_attrs(struct coffer_p11_session *s, coffer_p11_obj key,
                                     struct coffer_p11_mac_attrs *out)
{
    CK_KEY_TYPE type = (CK_KEY_TYPE)-1;
    enum coffer_err rc;

    if (out == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "coffer_p11_mac_attrs: no output");
    }
    memset(out, 0, sizeof(*out));
    if ((rc = coffer_p11_attrs(s, key, &out->common)) != COFFER_OK) {
        return rc;
    }
    if ((rc = p11_attr_ulong(s, key, CKA_KEY_TYPE, "CKA_KEY_TYPE", &type)) != COFFER_OK ||
        (rc = p11_attr_bool(s, key, CKA_SIGN, "CKA_SIGN", &out->sign)) != COFFER_OK ||
        (rc = p11_attr_bool(s, key, CKA_VERIFY, "CKA_VERIFY", &out->verify)) != COFFER_OK ||
        (rc = p11_attr_bool(s, key, CKA_DERIVE, "CKA_DERIVE", &out->derive)) != COFFER_OK) {
        memset(out, 0, sizeof(*out));
        return rc;
    }
    out->generic_secret = type == CKK_GENERIC_SECRET;
    return COFFER_OK;
}

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
                          "an HMAC-SHA256 of %d",
                          (unsigned long)wanted, COFFER_HMAC_SHA256_LEN);
}

enum coffer_err coffer_p11_hmac_sha256(struct coffer_p11_session *s, coffer_p11_obj key,
                                       const void *data, size_t len,
                                       unsigned char out[COFFER_HMAC_SHA256_LEN])
{
    CK_MECHANISM mech = {CKM_SHA256_HMAC, NULL, 0};
    unsigned char mac[COFFER_HMAC_SHA256_LEN];
    CK_ULONG mac_len = sizeof(mac);
    enum coffer_err rc = COFFER_OK;
    CK_RV rv;

    if (out == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "coffer_p11_hmac_sha256: no output");
    }
    memset(out, 0, COFFER_HMAC_SHA256_LEN);
    if ((rc = p11_check_session(s)) != COFFER_OK) {
        return rc;
    }
    if (key == 0 || data == NULL || len == 0 || len > COFFER_SECRET_MAX) {
        return coffer_err_set(COFFER_E_INVALID,
                              "HMAC-SHA256 needs a key and 1 to %u bytes of data, not %zu",
                              COFFER_SECRET_MAX, len);
    }
    rv = fn_of(s)->C_SignInit(s->handle, &mech, key);
    if (rv != CKR_OK) {
        return p11_rv_fail("C_SignInit", rv, P11_PATH_NORMAL);
    }
    rv = fn_of(s)->C_Sign(s->handle, (CK_BYTE_PTR)data, (CK_ULONG)len, mac, &mac_len);
    if (rv == CKR_BUFFER_TOO_SMALL) {
        rc = end_stuck_sign(s, mac_len);
        goto out;
    }
    if (rv != CKR_OK) {
        /* Any other answer has ended the operation already. */
        rc = p11_rv_fail("C_Sign", rv, P11_PATH_NORMAL);
        goto out;
    }
    if (mac_len != COFFER_HMAC_SHA256_LEN) {
        rc = coffer_err_set(COFFER_E_TOKEN, "C_Sign returned %lu bytes for an HMAC-SHA256 of %d",
                            (unsigned long)mac_len, COFFER_HMAC_SHA256_LEN);
        goto out;
    }
    coffer_memcpy(out, mac, COFFER_HMAC_SHA256_LEN);
out:
    coffer_wipe(mac, sizeof(mac));
    return rc;
}

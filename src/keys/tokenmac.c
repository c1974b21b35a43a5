/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The token MAC key: the persistent HMAC-SHA256 generic secret
 * "coffer-token-mac-v1" whose digests of bearer tokens are all the database
 * keeps, so that a copy of the database holds no usable token. This file
 * creates the key, checks what the token says about it every time it is
 * loaded, keeps a session copy per session, and digests tokens with it.
 *
 * The key never leaves the token. A key found under the label that does
 * not read back sensitive, never extractable and able to sign and verify
 * only is refused, never used. The bytes this file digests are a bearer
 * token: it hands them to the token and keeps no copy.
 */
#include "keys_int.h"

#include "coffer/log.h"
#include "coffer/mem.h"

#include <stdio.h>
#include <string.h>

/* The name of the session copy in each session's handle cache. */
#define CACHE_NAME "tokmac:v1"

/* The token MAC key must read back as a sign/verify-only, sensitive, never-extractable secret. */
static enum coffer_err check_attrs(const struct coffer_p11_mac_attrs *m, bool want_token)
{
    const struct coffer_p11_attrs *a = &m->common;
    const char *bad = NULL;

    if (want_token && !a->token) {
        bad = "CKA_TOKEN is FALSE";
    } else if (!a->private_) {
        bad = "CKA_PRIVATE is FALSE";
    } else if (!a->sensitive || !a->always_sensitive) {
        bad = "CKA_SENSITIVE or CKA_ALWAYS_SENSITIVE is FALSE";
    } else if (a->extractable || !a->never_extractable) {
        bad = "CKA_EXTRACTABLE is TRUE or CKA_NEVER_EXTRACTABLE is FALSE";
    } else if (!m->generic_secret) {
        bad = "CKA_KEY_TYPE is not CKK_GENERIC_SECRET";
    } else if (!m->sign || !m->verify || m->derive || a->wrap || a->unwrap || a->encrypt ||
               a->decrypt) {
        bad = "usage is not exactly CKA_SIGN and CKA_VERIFY";
    } else if (a->value_readable) {
        bad = "CKA_VALUE is readable";
    } else if (a->value_len != COFFER_HMAC_KEY_LEN) {
        bad = "CKA_VALUE_LEN is not 32";
    } else if (strcmp(a->label, COFFER_TOKEN_MAC_LABEL) != 0) {
        bad = "CKA_LABEL differs";
    }
    if (bad != NULL) {
        return coffer_err_set(COFFER_E_INTEGRITY, "token MAC key %s refused: %s",
                              COFFER_TOKEN_MAC_LABEL, bad);
    }
    return COFFER_OK;
}

static enum coffer_err read_and_check(struct coffer_p11_session *s, coffer_p11_obj obj,
                                      bool want_token, struct coffer_p11_mac_attrs *attrs)
{
    enum coffer_err r;

    if ((r = coffer_p11_mac_attrs(s, obj, attrs)) != COFFER_OK) {
        return coffer_err_wrap(r, "token MAC key %s", COFFER_TOKEN_MAC_LABEL);
    }
    return check_attrs(attrs, want_token);
}

enum coffer_err coffer_keys_token_mac_create(struct coffer_keys *k, struct coffer_keys_created *out)
{
    struct coffer_p11_session *s = NULL;
    struct coffer_p11_mac_attrs attrs;
    coffer_p11_obj existing = 0;
    coffer_p11_obj obj = 0;
    bool keep = false;
    enum coffer_err r;

    if (out != NULL) {
        memset(out, 0, sizeof(*out));
    }
    if (k == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "creating the token MAC key: no keys context");
    }
    if ((r = coffer_p11_session_get(k->p11, &s)) != COFFER_OK) {
        return r;
    }
    r = coffer_p11_find_key(s, COFFER_TOKEN_MAC_LABEL, &existing);
    if (r != COFFER_E_NOT_FOUND) {
        if (r == COFFER_OK || r == COFFER_E_INTEGRITY) {
            r = coffer_err_set(COFFER_E_EXISTS, "the token already holds %s",
                               COFFER_TOKEN_MAC_LABEL);
        }
        goto out;
    }
    coffer_err_clear();
    if ((r = coffer_p11_generate_hmac_key(s, COFFER_TOKEN_MAC_LABEL, &obj)) != COFFER_OK ||
        (r = read_and_check(s, obj, true, &attrs)) != COFFER_OK) {
        goto out;
    }
    keep = true;
    if (out != NULL) {
        out->version = 1;
        (void)snprintf(out->label, sizeof(out->label), "%s", COFFER_TOKEN_MAC_LABEL);
        out->attrs = attrs.common;
    }
    coffer_info("keys", "token MAC key %s created", COFFER_TOKEN_MAC_LABEL);
out:
    if (!keep) {
        /* A key that failed its checks is never left behind for a later load to find. */
        coffer_p11_destroy(s, &obj);
    }
    coffer_p11_session_put(k->p11, &s);
    return r;
}

/* The session copy of the token MAC key, found, checked and cached on first use. */
static enum coffer_err mac_handle(struct coffer_p11_session *s, coffer_p11_obj *out)
{
    struct coffer_p11_mac_attrs attrs;
    coffer_p11_obj obj = 0;
    coffer_p11_obj copy = 0;
    enum coffer_err r;

    if (coffer_p11_cache_get(s, CACHE_NAME, out) == COFFER_OK) {
        return COFFER_OK;
    }
    coffer_err_clear();
    r = coffer_p11_find_key(s, COFFER_TOKEN_MAC_LABEL, &obj);
    if (r == COFFER_E_NOT_FOUND) {
        return coffer_err_set(COFFER_E_STATE,
                              "the token holds no token MAC key %s; an operator creates it "
                              "with `coffer keys create-token-mac`",
                              COFFER_TOKEN_MAC_LABEL);
    }
    if (r != COFFER_OK) {
        return coffer_err_wrap(r, "token MAC key %s", COFFER_TOKEN_MAC_LABEL);
    }
    if ((r = read_and_check(s, obj, true, &attrs)) != COFFER_OK) {
        return r;
    }
    /* A session copy avoids the token's per-use checks on the persistent object. */
    if ((r = coffer_p11_copy_to_session(s, obj, &copy)) != COFFER_OK) {
        return r;
    }
    if ((r = read_and_check(s, copy, false, &attrs)) != COFFER_OK ||
        (r = coffer_p11_cache_put(s, CACHE_NAME, copy)) != COFFER_OK) {
        coffer_p11_destroy(s, &copy);
        return r;
    }
    *out = copy;
    return COFFER_OK;
}

enum coffer_err coffer_keys_token_digest(struct coffer_keys *k, const void *token, size_t len,
                                         unsigned char out[COFFER_TOKEN_DIGEST_LEN])
{
    struct coffer_p11_session *s = NULL;
    coffer_p11_obj key = 0;
    enum coffer_err r;

    if (out == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "token digest: no output");
    }
    memset(out, 0, COFFER_TOKEN_DIGEST_LEN);
    if (k == NULL || token == NULL || len == 0) {
        return coffer_err_set(COFFER_E_INVALID, "token digest: no keys context or no token");
    }
    if ((r = coffer_p11_session_get(k->p11, &s)) != COFFER_OK) {
        return r;
    }
    if ((r = mac_handle(s, &key)) == COFFER_OK) {
        r = coffer_p11_hmac_sha256(s, key, token, len, out);
    }
    coffer_p11_session_put(k->p11, &s);
    return r;
}

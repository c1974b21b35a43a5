/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The envelope's encodings: the additional data that binds a ciphertext to its
 * row, and the payload format of a credential's values. Both are length-
 * prefixed so that no two distinct inputs encode alike. The payload is parsed
 * only after AES-GCM has authenticated it, yet it is still parsed through a
 * bounded cursor and rejected whole on any inconsistency.
 */
#include "keys_int.h"

#include "coffer/mem.h"

#include <string.h>

const struct coffer_p11_keyspec coffer_keys_spec_org_key_new = {
    false, true, COFFER_P11_WRAP | COFFER_P11_UNWRAP, NULL};
const struct coffer_p11_keyspec coffer_keys_spec_org_key_loaded = {
    false, false, COFFER_P11_WRAP | COFFER_P11_UNWRAP, NULL};
const struct coffer_p11_keyspec coffer_keys_spec_cek_new = {
    false, true, COFFER_P11_ENCRYPT | COFFER_P11_DECRYPT, NULL};
const struct coffer_p11_keyspec coffer_keys_spec_cek_read = {false, false, COFFER_P11_DECRYPT,
                                                             NULL};
const struct coffer_p11_keyspec coffer_keys_spec_cek_rewrap = {false, true, COFFER_P11_DECRYPT,
                                                               NULL};

enum coffer_err coffer_keys_aad(const struct coffer_uuid *org, const struct coffer_uuid *project,
                                const struct coffer_uuid *credential, uint32_t version,
                                char *const *names, size_t n_names, struct coffer_buf *out)
{
    size_t need = 4 + strlen(COFFER_AAD_PREFIX) + 3 * sizeof(org->b) + 4 + 4;
    enum coffer_err r;
    size_t i;

    if (n_names == 0 || n_names > COFFER_KEYS_MAX) {
        return coffer_err_set(COFFER_E_INVALID, "a credential has 1 to %d keys, not %zu",
                              COFFER_KEYS_MAX, n_names);
    }
    for (i = 0; i < n_names; i++) {
        need += 2 + strnlen(names[i], COFFER_KEY_NAME_MAX + 1);
    }
    if ((r = coffer_buf_reserve(out, need)) != COFFER_OK) {
        return r;
    }
    if ((r = coffer_buf_put_lv32(out, COFFER_AAD_PREFIX, strlen(COFFER_AAD_PREFIX))) != COFFER_OK ||
        (r = coffer_buf_put(out, org->b, sizeof(org->b))) != COFFER_OK ||
        (r = coffer_buf_put(out, project->b, sizeof(project->b))) != COFFER_OK ||
        (r = coffer_buf_put(out, credential->b, sizeof(credential->b))) != COFFER_OK ||
        (r = coffer_buf_put_u32(out, version)) != COFFER_OK ||
        (r = coffer_buf_put_u32(out, (uint32_t)n_names)) != COFFER_OK) {
        return r;
    }
    for (i = 0; i < n_names; i++) {
        size_t len = strlen(names[i]);

        if (!coffer_keys_name_valid(names[i])) {
            return coffer_err_set(COFFER_E_INVALID, "key name %zu is not valid", i);
        }
        if ((r = coffer_buf_put_u16(out, (uint16_t)len)) != COFFER_OK ||
            (r = coffer_buf_put(out, names[i], len)) != COFFER_OK) {
            return r;
        }
    }
    return COFFER_OK;
}

/* A bounded writer into a secret's bytes: every put checks the room left. */
struct writer {
    unsigned char *p;
    size_t left;
};

static enum coffer_err put(struct writer *w, const void *src, size_t n)
{
    if (n > w->left) {
        return coffer_err_set(COFFER_E_INVALID, "payload: encoding overran its buffer");
    }
    coffer_memcpy(w->p, src, n);
    w->p += n;
    w->left -= n;
    return COFFER_OK;
}

static enum coffer_err put_u32(struct writer *w, uint32_t v)
{
    unsigned char x[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 8), (unsigned char)v};

    return put(w, x, sizeof(x));
}

enum coffer_err coffer_keys_payload_encode(const struct coffer_keyset *ks,
                                           struct coffer_secret **out)
{
    const unsigned char format = COFFER_PAYLOAD_FORMAT;
    size_t n = coffer_keyset_count(ks);
    size_t total = 1 + 4;
    struct writer w;
    enum coffer_err r;
    size_t i;

    *out = NULL;
    if (n == 0) {
        return coffer_err_set(COFFER_E_INVALID, "a credential needs at least one key");
    }
    /* The key set bounds every length, so this sum cannot overflow. */
    for (i = 0; i < n; i++) {
        total += 4 + coffer_secret_len(coffer_keyset_value(ks, i));
    }
    if ((r = coffer_secret_new(total, out)) != COFFER_OK) {
        return r;
    }
    w.p = coffer_secret_view(*out).data;
    w.left = total;
    if ((r = put(&w, &format, 1)) != COFFER_OK || (r = put_u32(&w, (uint32_t)n)) != COFFER_OK) {
        goto out;
    }
    for (i = 0; i < n; i++) {
        struct coffer_secret_view v = coffer_secret_view(coffer_keyset_value(ks, i));

        if ((r = put_u32(&w, (uint32_t)v.len)) != COFFER_OK ||
            (r = put(&w, v.data, v.len)) != COFFER_OK) {
            goto out;
        }
    }
    r = w.left == 0 ? COFFER_OK
                    : coffer_err_set(COFFER_E_INVALID, "payload: encoding left %zu bytes", w.left);
out:
    if (r != COFFER_OK) {
        coffer_secret_free(out);
    }
    return r;
}

enum coffer_err coffer_keys_payload_decode(const unsigned char *p, size_t len, char *const *names,
                                           size_t n, struct coffer_keyset **out)
{
    struct coffer_cursor c = coffer_cursor_init(p, len);
    struct coffer_keyset *ks = NULL;
    enum coffer_err r;
    uint8_t format = 0;
    uint32_t count = 0;
    size_t i;

    *out = NULL;
    if (coffer_cursor_u8(&c, &format) != COFFER_OK || format != COFFER_PAYLOAD_FORMAT) {
        return coffer_err_set(COFFER_E_INTEGRITY, "payload: unknown format %u", format);
    }
    if (coffer_cursor_u32(&c, &count) != COFFER_OK || count != n) {
        return coffer_err_set(COFFER_E_INTEGRITY, "payload: holds %u values for %zu key names",
                              count, n);
    }
    if ((r = coffer_keyset_new(&ks)) != COFFER_OK) {
        return r;
    }
    for (i = 0; i < n; i++) {
        const unsigned char *v = NULL;
        uint32_t vlen = 0;

        if (coffer_cursor_u32(&c, &vlen) != COFFER_OK || vlen > COFFER_VALUE_MAX ||
            coffer_cursor_bytes(&c, vlen, &v) != COFFER_OK) {
            r = coffer_err_set(COFFER_E_INTEGRITY, "payload: value %zu is malformed", i);
            goto out;
        }
        if ((r = coffer_keyset_add(ks, names[i], v, vlen)) != COFFER_OK) {
            r = coffer_err_wrap(COFFER_E_INTEGRITY, "payload: key %zu", i);
            goto out;
        }
    }
    if (coffer_cursor_end(&c) != COFFER_OK) {
        r = coffer_err_set(COFFER_E_INTEGRITY, "payload: %zu trailing bytes", c.left);
        goto out;
    }
    *out = ks;
    ks = NULL;
    r = COFFER_OK;
out:
    coffer_keyset_free(&ks);
    return r;
}

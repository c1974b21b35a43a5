/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Arrays and policy values: the text[] encoding the policy statements send,
 * and the readers for the lists, names and texts they read back. Every
 * element read is checked as the policy parser checks it (name rule, or
 * UTF-8 without control characters, and length), so a row edited behind
 * Coffer's back cannot inject what a policy file could not.
 */
#include "store/store_int.h"

#include "coffer/mem.h"
#include "coffer/text.h"

#include <inttypes.h>
#include <string.h>

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

enum coffer_err store_encode_strings(const char *const *v, size_t n, struct coffer_buf *out)
{
    return store_encode_texts(v, NULL, n, out);
}

enum coffer_err store_encode_texts(const char *const *v, const size_t *lens, size_t n,
                                   struct coffer_buf *out)
{
    bool nulls = false;
    enum coffer_err r;
    size_t i;

    if (n > INT32_MAX) {
        return coffer_err_set(COFFER_E_LIMIT, "array of %zu elements", n);
    }
    for (i = 0; i < n; i++) {
        nulls = nulls || v[i] == NULL;
    }
    /* An empty array has no dimensions; otherwise one dimension of n from 1. */
    if ((r = coffer_buf_put_u32(out, n == 0 ? 0 : 1)) != COFFER_OK ||
        (r = coffer_buf_put_u32(out, nulls ? 1 : 0)) != COFFER_OK ||
        (r = coffer_buf_put_u32(out, STORE_OID_TEXT)) != COFFER_OK) {
        return r;
    }
    if (n == 0) {
        return COFFER_OK;
    }
    if ((r = coffer_buf_put_u32(out, (uint32_t)n)) != COFFER_OK ||
        (r = coffer_buf_put_u32(out, 1)) != COFFER_OK) {
        return r;
    }
    for (i = 0; i < n; i++) {
        if (v[i] == NULL) {
            r = coffer_buf_put_u32(out, UINT32_MAX);
        } else {
            size_t len = lens != NULL ? lens[i] : strlen(v[i]);

            if (len > INT32_MAX) {
                return coffer_err_set(COFFER_E_LIMIT, "array element of %zu bytes", len);
            }
            r = coffer_buf_put_lv32(out, v[i], len);
        }
        if (r != COFFER_OK) {
            return r;
        }
    }
    return COFFER_OK;
}

static bool text_fits(const unsigned char *p, size_t len, size_t max_len, enum store_text_kind kind)
{
    switch (kind) {
    case STORE_TEXT_NAME:
        return len <= max_len && store_name_ok((const char *)p, len);
    case STORE_TEXT_TEXT:
        return coffer_text_ok((const char *)p, len, max_len);
    case STORE_TEXT_NAME_LIST:
        if (len > max_len) {
            return false;
        }
        for (size_t i = 0; i < len; i++) {
            if (!((p[i] >= 'a' && p[i] <= 'z') || (p[i] >= '0' && p[i] <= '9') || p[i] == '_' ||
                  p[i] == '-' || p[i] == ',')) {
                return false;
            }
        }
        return true;
    default:
        return false;
    }
}

static const char *kind_rule(enum store_text_kind kind)
{
    switch (kind) {
    case STORE_TEXT_NAME:
        return "a name";
    case STORE_TEXT_TEXT:
        return "UTF-8 text without control characters";
    case STORE_TEXT_NAME_LIST:
        return "a comma-separated list of names";
    default:
        return "valid";
    }
}

enum coffer_err store_col_string(const PGresult *res, int row, int col, const char *where,
                                 struct coffer_arena *a, size_t max_len, enum store_text_kind kind,
                                 bool nullable, const char **out)
{
    const unsigned char *p;
    size_t len;
    enum coffer_err r;

    *out = NULL;
    if ((r = store_col_raw(res, row, col, where, STORE_OID_TEXT, &p, &len)) != COFFER_OK) {
        return r;
    }
    if (p == NULL) {
        return nullable ? COFFER_OK : coffer_err_set(COFFER_E_INTEGRITY, "%s: is NULL", where);
    }
    if (!text_fits(p, len, max_len, kind)) {
        return coffer_err_set(COFFER_E_INTEGRITY, "%s: not %s of at most %zu bytes", where,
                              kind_rule(kind), max_len);
    }
    *out = coffer_arena_strndup(a, (const char *)p, len);
    return *out != NULL ? COFFER_OK : coffer_err_set(COFFER_E_NOMEM, "%s: copying", where);
}

enum coffer_err store_col_strings(const PGresult *res, int row, int col, const char *where,
                                  struct coffer_arena *a, size_t max_n, size_t max_len,
                                  enum store_text_kind kind, bool nulls, const char ***out,
                                  size_t *n)
{
    const unsigned char *p;
    const unsigned char *elem;
    size_t len;
    struct coffer_cursor c;
    uint32_t ndim = 0;
    uint32_t flags = 0;
    uint32_t elemtype = 0;
    uint32_t count = 0;
    uint32_t lbound = 0;
    const char **v;
    enum coffer_err r;

    *out = NULL;
    *n = 0;
    if ((r = store_col_raw(res, row, col, where, STORE_OID_TEXT_ARRAY, &p, &len)) != COFFER_OK) {
        return r;
    }
    if (p == NULL) {
        return COFFER_OK;
    }
    c = coffer_cursor_init(p, len);
    if (coffer_cursor_u32(&c, &ndim) != COFFER_OK || coffer_cursor_u32(&c, &flags) != COFFER_OK ||
        coffer_cursor_u32(&c, &elemtype) != COFFER_OK) {
        return coffer_err_set(COFFER_E_INTEGRITY, "%s: truncated array header", where);
    }
    if (elemtype != STORE_OID_TEXT || flags > 1 || ndim > 1) {
        return coffer_err_set(COFFER_E_INTEGRITY, "%s: want a one-dimensional text array", where);
    }
    if (ndim == 0) {
        return coffer_cursor_end(&c) == COFFER_OK
                   ? COFFER_OK
                   : coffer_err_set(COFFER_E_INTEGRITY, "%s: bytes after an empty array", where);
    }
    if (coffer_cursor_u32(&c, &count) != COFFER_OK || coffer_cursor_u32(&c, &lbound) != COFFER_OK) {
        return coffer_err_set(COFFER_E_INTEGRITY, "%s: truncated array header", where);
    }
    if (count > max_n) {
        return coffer_err_set(COFFER_E_INTEGRITY, "%s: %" PRIu32 " elements, at most %zu", where,
                              count, max_n);
    }
    v = coffer_arena_alloc(a, count, sizeof(*v));
    if (v == NULL) {
        return coffer_err_set(COFFER_E_NOMEM, "%s: %" PRIu32 " elements", where, count);
    }
    for (uint32_t i = 0; i < count; i++) {
        uint32_t elen = 0;

        if (coffer_cursor_u32(&c, &elen) != COFFER_OK) {
            return coffer_err_set(COFFER_E_INTEGRITY, "%s: truncated at element %" PRIu32, where,
                                  i);
        }
        if (elen == UINT32_MAX) {
            if (!nulls) {
                return coffer_err_set(COFFER_E_INTEGRITY, "%s: element %" PRIu32 " is NULL", where,
                                      i);
            }
            continue;
        }
        if (coffer_cursor_bytes(&c, elen, &elem) != COFFER_OK) {
            return coffer_err_set(COFFER_E_INTEGRITY, "%s: truncated at element %" PRIu32, where,
                                  i);
        }
        if (!text_fits(elem, elen, max_len, kind)) {
            return coffer_err_set(COFFER_E_INTEGRITY,
                                  "%s: element %" PRIu32 " is not %s of at most %zu bytes", where,
                                  i, kind_rule(kind), max_len);
        }
        if ((v[i] = coffer_arena_strndup(a, (const char *)elem, elen)) == NULL) {
            return coffer_err_set(COFFER_E_NOMEM, "%s: copying", where);
        }
    }
    if (coffer_cursor_end(&c) != COFFER_OK) {
        return coffer_err_set(COFFER_E_INTEGRITY, "%s: bytes after the last element", where);
    }
    *out = v;
    *n = count;
    return COFFER_OK;
}

enum coffer_err store_col_int8_opt(const PGresult *res, int row, int col, const char *where,
                                   bool *is_null, int64_t *out)
{
    const unsigned char *p;
    size_t len;
    enum coffer_err r;

    *is_null = false;
    *out = 0;
    if ((r = store_col_raw(res, row, col, where, STORE_OID_INT8, &p, &len)) != COFFER_OK) {
        return r;
    }
    if (p == NULL) {
        *is_null = true;
        return COFFER_OK;
    }
    if (len != 8) {
        return coffer_err_set(COFFER_E_INTEGRITY, "%s: int8 of %zu bytes", where, len);
    }
    *out = (int64_t)((uint64_t)be32(p) << 32 | be32(p + 4));
    return COFFER_OK;
}

enum coffer_err store_col_bool(const PGresult *res, int row, int col, const char *where, bool *out)
{
    const unsigned char *p;
    size_t len;
    enum coffer_err r;

    *out = false;
    if ((r = store_col_raw(res, row, col, where, STORE_OID_BOOL, &p, &len)) != COFFER_OK) {
        return r;
    }
    if (p == NULL || len != 1 || p[0] > 1) {
        return coffer_err_set(COFFER_E_INTEGRITY, "%s: not a boolean", where);
    }
    *out = p[0] == 1;
    return COFFER_OK;
}

/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Parameters and columns: binding values to prepared statements in binary
 * form, and reading every column back with its type, NULL-ness, length and
 * range checked. A value the database returns that fails a check is
 * COFFER_E_INTEGRITY naming the table and column; nothing unchecked leaves
 * this file.
 */
#include "store/store_int.h"

#include <inttypes.h>
#include <limits.h>
#include <stdint.h>
#include <string.h>

#include "coffer/mem.h"

/* ---- Parameters ------------------------------------------------------------------ */

static int next_param(struct store_params *p)
{
    if (p->n >= STORE_MAX_PARAMS) {
        p->overflow = true;
        return -1;
    }
    return p->n++;
}

void store_param_uuid(struct store_params *p, const struct coffer_uuid *u)
{
    int i = next_param(p);

    if (i < 0) {
        return;
    }
    p->values[i] = (const char *)u->b;
    p->lengths[i] = (int)sizeof(u->b);
    p->formats[i] = 1;
}

void store_param_null(struct store_params *p)
{
    int i = next_param(p);

    if (i < 0) {
        return;
    }
    p->values[i] = NULL;
    p->lengths[i] = 0;
    p->formats[i] = 1;
}

void store_param_int4(struct store_params *p, int32_t v)
{
    int i = next_param(p);
    uint32_t u = (uint32_t)v;

    if (i < 0) {
        return;
    }
    p->ints[i][0] = (unsigned char)(u >> 24);
    p->ints[i][1] = (unsigned char)(u >> 16);
    p->ints[i][2] = (unsigned char)(u >> 8);
    p->ints[i][3] = (unsigned char)u;
    p->values[i] = (const char *)p->ints[i];
    p->lengths[i] = 4;
    p->formats[i] = 1;
}

void store_param_int8(struct store_params *p, int64_t v)
{
    int i = next_param(p);
    uint64_t u = (uint64_t)v;
    int b;

    if (i < 0) {
        return;
    }
    for (b = 0; b < 8; b++) {
        p->ints[i][b] = (unsigned char)(u >> (56 - 8 * b));
    }
    p->values[i] = (const char *)p->ints[i];
    p->lengths[i] = 8;
    p->formats[i] = 1;
}

void store_param_text(struct store_params *p, const char *s)
{
    int i = next_param(p);

    if (i < 0) {
        return;
    }
    p->values[i] = s;
    p->lengths[i] = 0;
    p->formats[i] = 0;
}

void store_param_bytea(struct store_params *p, const unsigned char *b, size_t len)
{
    store_param_binary(p, b, len);
}

void store_param_binary(struct store_params *p, const unsigned char *b, size_t len)
{
    static const unsigned char empty[1] = {0};
    int i = next_param(p);

    if (i < 0) {
        return;
    }
    if (len > INT_MAX) {
        p->overflow = true;
        return;
    }
    /* libpq reads a NULL value as SQL NULL; an empty blob still needs a pointer. */
    p->values[i] = (const char *)(b != NULL ? b : empty);
    p->lengths[i] = (int)len;
    p->formats[i] = 1;
}

enum coffer_err store_encode_array(uint32_t elem_oid, size_t n, const void *const *elems,
                                   const size_t *lens, struct coffer_buf *out)
{
    enum coffer_err r;
    size_t i;

    /* ndim, has-nulls flag, element type, then length and lower bound of the one dimension. */
    if ((r = coffer_buf_put_u32(out, 1)) != COFFER_OK ||
        (r = coffer_buf_put_u32(out, 0)) != COFFER_OK ||
        (r = coffer_buf_put_u32(out, elem_oid)) != COFFER_OK ||
        (r = coffer_buf_put_u32(out, (uint32_t)n)) != COFFER_OK ||
        (r = coffer_buf_put_u32(out, 1)) != COFFER_OK) {
        return r;
    }
    for (i = 0; i < n; i++) {
        if ((r = coffer_buf_put_lv32(out, elems[i], lens[i])) != COFFER_OK) {
            return r;
        }
    }
    return COFFER_OK;
}

enum coffer_err store_encode_text_array(char *const *names, size_t n, struct coffer_buf *out)
{
    const void *elems[COFFER_KEYS_MAX];
    size_t lens[COFFER_KEYS_MAX];
    size_t i;

    if (n == 0 || n > COFFER_KEYS_MAX) {
        return coffer_err_set(COFFER_E_INVALID, "key names: %zu names, want 1..%d", n,
                              COFFER_KEYS_MAX);
    }
    for (i = 0; i < n; i++) {
        lens[i] = names[i] != NULL ? strnlen(names[i], COFFER_KEY_NAME_MAX + 1) : 0;
        if (names[i] == NULL || !store_key_name_ok(names[i], lens[i])) {
            return coffer_err_set(COFFER_E_INVALID, "key name %zu is not a valid key name", i);
        }
        elems[i] = names[i];
    }
    return store_encode_array(STORE_OID_TEXT, n, elems, lens, out);
}

/* ---- Column readers ------------------------------------------------------------------ */

/* Locates a column value after checking its type; *p NULL for SQL NULL. */
static enum coffer_err col_raw(const PGresult *res, int row, int col, const char *where,
                               unsigned int oid, const unsigned char **p, size_t *len)
{
    int n;

    *p = NULL;
    *len = 0;
    if (row < 0 || row >= PQntuples(res) || col < 0 || col >= PQnfields(res)) {
        return coffer_err_set(COFFER_E_INTEGRITY, "%s: row %d column %d is not in the result",
                              where, row, col);
    }
    if (PQftype(res, col) != oid) {
        return coffer_err_set(COFFER_E_INTEGRITY, "%s: has type oid %u, want %u", where,
                              PQftype(res, col), oid);
    }
    if (PQfformat(res, col) != 1) {
        return coffer_err_set(COFFER_E_INTEGRITY, "%s: not in binary format", where);
    }
    if (PQgetisnull(res, row, col)) {
        return COFFER_OK;
    }
    n = PQgetlength(res, row, col);
    if (n < 0) {
        return coffer_err_set(COFFER_E_INTEGRITY, "%s: negative length", where);
    }
    *p = (const unsigned char *)PQgetvalue(res, row, col);
    *len = (size_t)n;
    return COFFER_OK;
}

enum coffer_err store_col_raw(const PGresult *res, int row, int col, const char *where,
                              unsigned int oid, const unsigned char **p, size_t *len)
{
    return col_raw(res, row, col, where, oid, p, len);
}

static enum coffer_err col_required(const PGresult *res, int row, int col, const char *where,
                                    unsigned int oid, const unsigned char **p, size_t *len)
{
    enum coffer_err r = col_raw(res, row, col, where, oid, p, len);

    if (r == COFFER_OK && *p == NULL) {
        return coffer_err_set(COFFER_E_INTEGRITY, "%s: is NULL", where);
    }
    return r;
}

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

enum coffer_err store_col_uuid(const PGresult *res, int row, int col, const char *where,
                               struct coffer_uuid *out)
{
    const unsigned char *p;
    size_t len;
    enum coffer_err r;

    if ((r = col_required(res, row, col, where, STORE_OID_UUID, &p, &len)) != COFFER_OK) {
        return r;
    }
    if (len != sizeof(out->b)) {
        return coffer_err_set(COFFER_E_INTEGRITY, "%s: uuid of %zu bytes, want 16", where, len);
    }
    coffer_memcpy(out->b, p, sizeof(out->b));
    return COFFER_OK;
}

static enum coffer_err decode_u32(const unsigned char *p, size_t len, const char *where,
                                  uint32_t min, uint32_t *out)
{
    int32_t v;

    if (len != 4) {
        return coffer_err_set(COFFER_E_INTEGRITY, "%s: int4 of %zu bytes", where, len);
    }
    v = (int32_t)be32(p);
    if (v < 0 || (uint32_t)v < min) {
        return coffer_err_set(COFFER_E_INTEGRITY, "%s: %" PRId32 " is out of range %" PRIu32 "..%d",
                              where, v, min, INT32_MAX);
    }
    *out = (uint32_t)v;
    return COFFER_OK;
}

enum coffer_err store_col_u32(const PGresult *res, int row, int col, const char *where,
                              uint32_t min, uint32_t *out)
{
    const unsigned char *p;
    size_t len;
    enum coffer_err r;

    if ((r = col_required(res, row, col, where, STORE_OID_INT4, &p, &len)) != COFFER_OK) {
        return r;
    }
    return decode_u32(p, len, where, min, out);
}

enum coffer_err store_col_u32_or_zero(const PGresult *res, int row, int col, const char *where,
                                      uint32_t *out)
{
    const unsigned char *p;
    size_t len;
    enum coffer_err r;

    *out = 0;
    if ((r = col_raw(res, row, col, where, STORE_OID_INT4, &p, &len)) != COFFER_OK) {
        return r;
    }
    if (p == NULL) {
        return COFFER_OK;
    }
    return decode_u32(p, len, where, 1, out);
}

enum coffer_err store_col_count(const PGresult *res, int row, int col, const char *where,
                                int64_t *out)
{
    bool null = false;
    enum coffer_err r = store_col_int8_opt(res, row, col, where, &null, out);

    if (r != COFFER_OK) {
        return r;
    }
    if (null) {
        return coffer_err_set(COFFER_E_INTEGRITY, "%s: is NULL", where);
    }
    if (*out < 0) {
        return coffer_err_set(COFFER_E_INTEGRITY, "%s: negative count", where);
    }
    return COFFER_OK;
}

static enum coffer_err text_raw(const PGresult *res, int row, int col, const char *where,
                                const unsigned char **p, size_t *len)
{
    enum coffer_err r;

    if ((r = col_required(res, row, col, where, STORE_OID_TEXT, p, len)) != COFFER_OK) {
        return r;
    }
    if (memchr(*p, '\0', *len) != NULL) {
        return coffer_err_set(COFFER_E_INTEGRITY, "%s: contains a NUL byte", where);
    }
    return COFFER_OK;
}

enum coffer_err store_col_text(const PGresult *res, int row, int col, const char *where, char *out,
                               size_t cap)
{
    const unsigned char *p;
    size_t len;
    enum coffer_err r;

    if ((r = text_raw(res, row, col, where, &p, &len)) != COFFER_OK) {
        return r;
    }
    if (len >= cap) {
        return coffer_err_set(COFFER_E_INTEGRITY, "%s: %zu bytes, at most %zu allowed", where, len,
                              cap - 1);
    }
    coffer_memcpy(out, p, len);
    out[len] = '\0';
    return COFFER_OK;
}

enum coffer_err store_col_bytea_exact(const PGresult *res, int row, int col, const char *where,
                                      unsigned char *out, size_t len)
{
    size_t got = 0;

    return store_col_bytea_range(res, row, col, where, out, len, len, &got);
}

enum coffer_err store_col_bytea_range(const PGresult *res, int row, int col, const char *where,
                                      unsigned char *out, size_t min, size_t max, size_t *len)
{
    const unsigned char *p;
    size_t n;
    enum coffer_err r;

    *len = 0;
    if ((r = col_required(res, row, col, where, STORE_OID_BYTEA, &p, &n)) != COFFER_OK) {
        return r;
    }
    if (n < min || n > max) {
        if (min == max) {
            return coffer_err_set(COFFER_E_INTEGRITY, "%s: %zu bytes, want %zu", where, n, min);
        }
        return coffer_err_set(COFFER_E_INTEGRITY, "%s: %zu bytes, want %zu..%zu", where, n, min,
                              max);
    }
    coffer_memcpy(out, p, n);
    *len = n;
    return COFFER_OK;
}

enum coffer_err store_col_bytea_alloc(const PGresult *res, int row, int col, const char *where,
                                      size_t max, unsigned char **out, size_t *len)
{
    const unsigned char *p;
    size_t n;
    enum coffer_err r;

    *out = NULL;
    *len = 0;
    if ((r = col_required(res, row, col, where, STORE_OID_BYTEA, &p, &n)) != COFFER_OK) {
        return r;
    }
    if (n == 0 || n > max) {
        return coffer_err_set(COFFER_E_INTEGRITY, "%s: %zu bytes, want 1..%zu", where, n, max);
    }
    *out = coffer_calloc(1, n);
    if (*out == NULL) {
        return coffer_err_set(COFFER_E_NOMEM, "%s: %zu bytes", where, n);
    }
    coffer_memcpy(*out, p, n);
    *len = n;
    return COFFER_OK;
}

enum coffer_err store_col_state(const PGresult *res, int row, int col, const char *where,
                                enum coffer_key_state *out)
{
    const unsigned char *p;
    size_t len;
    enum coffer_err r;

    if ((r = text_raw(res, row, col, where, &p, &len)) != COFFER_OK) {
        return r;
    }
    if (!store_state_parse((const char *)p, len, out)) {
        return coffer_err_set(COFFER_E_INTEGRITY,
                              "%s: unknown key state (want current, active, retired or destroyed)",
                              where);
    }
    return COFFER_OK;
}

enum coffer_err store_col_name(const PGresult *res, int row, int col, const char *where,
                               char out[COFFER_NAME_MAX + 1])
{
    const unsigned char *p;
    size_t len;
    enum coffer_err r;

    if ((r = text_raw(res, row, col, where, &p, &len)) != COFFER_OK) {
        return r;
    }
    if (!store_name_ok((const char *)p, len)) {
        return coffer_err_set(COFFER_E_INTEGRITY, "%s: not a valid name", where);
    }
    coffer_memcpy(out, p, len);
    out[len] = '\0';
    return COFFER_OK;
}

enum coffer_err store_col_mech(const PGresult *res, int row, int col, const char *where,
                               const char *expect, char out[COFFER_MECH_NAME_MAX + 1])
{
    const unsigned char *p;
    size_t len;
    enum coffer_err r;

    if ((r = text_raw(res, row, col, where, &p, &len)) != COFFER_OK) {
        return r;
    }
    if (len != strlen(expect) || strncmp((const char *)p, expect, len) != 0 ||
        len > COFFER_MECH_NAME_MAX) {
        return coffer_err_set(COFFER_E_INTEGRITY, "%s: unknown mechanism (want %s)", where, expect);
    }
    coffer_memcpy(out, p, len);
    out[len] = '\0';
    return COFFER_OK;
}

static void free_names(char **names, size_t n)
{
    size_t i;

    for (i = 0; names != NULL && i < n; i++) {
        coffer_free(names[i]);
    }
    coffer_free(names);
}

enum coffer_err store_col_key_names(const PGresult *res, int row, int col, const char *where,
                                    char ***out, size_t *n)
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
    char **names = NULL;
    size_t i;
    enum coffer_err r;

    *out = NULL;
    *n = 0;
    if ((r = col_required(res, row, col, where, STORE_OID_TEXT_ARRAY, &p, &len)) != COFFER_OK) {
        return r;
    }
    c = coffer_cursor_init(p, len);
    if (coffer_cursor_u32(&c, &ndim) != COFFER_OK || coffer_cursor_u32(&c, &flags) != COFFER_OK ||
        coffer_cursor_u32(&c, &elemtype) != COFFER_OK) {
        return coffer_err_set(COFFER_E_INTEGRITY, "%s: truncated array header", where);
    }
    if (ndim != 1 || elemtype != STORE_OID_TEXT || flags > 1) {
        return coffer_err_set(COFFER_E_INTEGRITY,
                              "%s: want a one-dimensional text array (ndim %" PRIu32 ")", where,
                              ndim);
    }
    if (coffer_cursor_u32(&c, &count) != COFFER_OK || coffer_cursor_u32(&c, &lbound) != COFFER_OK) {
        return coffer_err_set(COFFER_E_INTEGRITY, "%s: truncated array header", where);
    }
    if (count == 0 || count > COFFER_KEYS_MAX) {
        return coffer_err_set(COFFER_E_INTEGRITY, "%s: %" PRIu32 " names, want 1..%d", where, count,
                              COFFER_KEYS_MAX);
    }
    names = coffer_calloc(count, sizeof(*names));
    if (names == NULL) {
        return coffer_err_set(COFFER_E_NOMEM, "%s: %" PRIu32 " names", where, count);
    }
    for (i = 0; i < count; i++) {
        uint32_t elen = 0;

        if (coffer_cursor_u32(&c, &elen) != COFFER_OK) {
            r = coffer_err_set(COFFER_E_INTEGRITY, "%s: truncated at name %zu", where, i);
            goto out;
        }
        if (elen == UINT32_MAX) {
            r = coffer_err_set(COFFER_E_INTEGRITY, "%s: name %zu is NULL", where, i);
            goto out;
        }
        if (elen == 0 || elen > COFFER_KEY_NAME_MAX) {
            r = coffer_err_set(COFFER_E_INTEGRITY, "%s: name %zu is %" PRIu32 " bytes, want 1..%d",
                               where, i, elen, COFFER_KEY_NAME_MAX);
            goto out;
        }
        if (coffer_cursor_bytes(&c, elen, &elem) != COFFER_OK) {
            r = coffer_err_set(COFFER_E_INTEGRITY, "%s: truncated at name %zu", where, i);
            goto out;
        }
        if (!store_key_name_ok((const char *)elem, elen)) {
            r = coffer_err_set(COFFER_E_INTEGRITY, "%s: name %zu is not a valid key name", where,
                               i);
            goto out;
        }
        names[i] = coffer_strndup((const char *)elem, elen);
        if (names[i] == NULL) {
            r = coffer_err_set(COFFER_E_NOMEM, "%s: name %zu", where, i);
            goto out;
        }
    }
    if (coffer_cursor_end(&c) != COFFER_OK) {
        r = coffer_err_set(COFFER_E_INTEGRITY, "%s: %zu trailing bytes", where, c.left);
        goto out;
    }
    *out = names;
    *n = count;
    names = NULL;
    r = COFFER_OK;
out:
    free_names(names, count);
    return r;
}

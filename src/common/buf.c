/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Growable buffers for encodings, and the bounded read cursor every parser
 * uses. A buffer may hold secret bytes (the plaintext payload before
 * encryption), so growth copies into a new block and wipes the old one, and
 * cleanup always wipes.
 */
#include "coffer/buf.h"

#include "coffer/mem.h"
#include "coffer/secret.h"

static enum coffer_err reserve(struct coffer_buf *b, size_t extra)
{
    size_t max = b->max != 0 ? b->max : COFFER_BUF_DEFAULT_MAX;
    size_t need;
    size_t cap;
    unsigned char *p;

    if (extra > max || b->len > max - extra) {
        return coffer_err_set(COFFER_E_LIMIT, "encoding exceeds %zu bytes", max);
    }
    need = b->len + extra;
    if (need <= b->cap) {
        return COFFER_OK;
    }
    cap = b->cap < 64 ? 64 : b->cap;
    while (cap < need) {
        cap = cap > max / 2 ? max : cap * 2;
    }
    p = coffer_calloc(1, cap);
    if (p == NULL) {
        return coffer_err_set(COFFER_E_NOMEM, "buffer of %zu bytes", cap);
    }
    coffer_memcpy(p, b->data, b->len);
    coffer_freezero(b->data, b->cap);
    b->data = p;
    b->cap = cap;
    return COFFER_OK;
}

enum coffer_err coffer_buf_reserve(struct coffer_buf *b, size_t n)
{
    return reserve(b, n);
}

enum coffer_err coffer_buf_put(struct coffer_buf *b, const void *p, size_t n)
{
    enum coffer_err r;

    if ((r = reserve(b, n)) != COFFER_OK) {
        return r;
    }
    if (n > 0) { /* an empty buffer may have no data pointer to add an offset to */
        coffer_memcpy(b->data + b->len, p, n);
        b->len += n;
    }
    return COFFER_OK;
}

enum coffer_err coffer_buf_put_u8(struct coffer_buf *b, uint8_t v)
{
    return coffer_buf_put(b, &v, 1);
}

enum coffer_err coffer_buf_put_u16(struct coffer_buf *b, uint16_t v)
{
    unsigned char x[2] = {(unsigned char)(v >> 8), (unsigned char)v};

    return coffer_buf_put(b, x, sizeof(x));
}

enum coffer_err coffer_buf_put_u32(struct coffer_buf *b, uint32_t v)
{
    unsigned char x[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 8), (unsigned char)v};

    return coffer_buf_put(b, x, sizeof(x));
}

enum coffer_err coffer_buf_put_lv32(struct coffer_buf *b, const void *p, size_t n)
{
    enum coffer_err r;

    if (n > UINT32_MAX) {
        return coffer_err_set(COFFER_E_LIMIT, "field of %zu bytes exceeds a u32 length", n);
    }
    if ((r = coffer_buf_put_u32(b, (uint32_t)n)) != COFFER_OK) {
        return r;
    }
    return coffer_buf_put(b, p, n);
}

void coffer_buf_cleanup(struct coffer_buf *b)
{
    size_t max = b->max;

    coffer_freezero(b->data, b->cap);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max;
}

struct coffer_cursor coffer_cursor_init(const void *p, size_t n)
{
    struct coffer_cursor c = {p, n};

    return c;
}

enum coffer_err coffer_cursor_bytes(struct coffer_cursor *c, size_t n, const unsigned char **p)
{
    if (n > c->left) {
        return coffer_err_set(COFFER_E_INVALID, "truncated: want %zu bytes, %zu remain", n,
                              c->left);
    }
    *p = c->p;
    c->p += n;
    c->left -= n;
    return COFFER_OK;
}

enum coffer_err coffer_cursor_u8(struct coffer_cursor *c, uint8_t *v)
{
    const unsigned char *p = NULL;
    enum coffer_err r;

    if ((r = coffer_cursor_bytes(c, 1, &p)) != COFFER_OK) {
        return r;
    }
    *v = p[0];
    return COFFER_OK;
}

enum coffer_err coffer_cursor_u16(struct coffer_cursor *c, uint16_t *v)
{
    const unsigned char *p = NULL;
    enum coffer_err r;

    if ((r = coffer_cursor_bytes(c, 2, &p)) != COFFER_OK) {
        return r;
    }
    *v = (uint16_t)((unsigned)p[0] << 8 | p[1]);
    return COFFER_OK;
}

enum coffer_err coffer_cursor_u32(struct coffer_cursor *c, uint32_t *v)
{
    const unsigned char *p = NULL;
    enum coffer_err r;

    if ((r = coffer_cursor_bytes(c, 4, &p)) != COFFER_OK) {
        return r;
    }
    *v = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
    return COFFER_OK;
}

enum coffer_err coffer_cursor_end(const struct coffer_cursor *c)
{
    if (c->left != 0) {
        return coffer_err_set(COFFER_E_INVALID, "%zu trailing bytes", c->left);
    }
    return COFFER_OK;
}

void coffer_hex(const unsigned char *p, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    size_t i;

    for (i = 0; i < n; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 0x0f];
    }
    out[2 * n] = '\0';
}

/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Byte buffers for building wire and storage encodings, and a bounded cursor
 * for parsing them. Parsers read through a cursor, never with pointer
 * arithmetic: every read checks the remaining length first and a short input
 * is an error, not an overread.
 *
 * Integers are big-endian. A buffer that may hold secret bytes is released
 * with coffer_buf_cleanup, which always wipes.
 */
#ifndef COFFER_BUF_H
#define COFFER_BUF_H

#include <stddef.h>
#include <stdint.h>

#include "coffer/err.h"

/* A growable byte buffer. Zero-initialise, then append; cleanup wipes and frees. */
struct coffer_buf {
    unsigned char *data;
    size_t len;
    size_t cap;
    size_t max; /* 0 means COFFER_BUF_DEFAULT_MAX */
};

#define COFFER_BUF_DEFAULT_MAX (16u * 1024u * 1024u)

/* Makes room for n more bytes in one allocation (so a known size grows once). */
enum coffer_err coffer_buf_reserve(struct coffer_buf *b, size_t n) COFFER_MUST_USE;

/* Appends n bytes. COFFER_E_LIMIT past max, COFFER_E_NOMEM on allocation failure. */
enum coffer_err coffer_buf_put(struct coffer_buf *b, const void *p, size_t n) COFFER_MUST_USE;
enum coffer_err coffer_buf_put_u8(struct coffer_buf *b, uint8_t v) COFFER_MUST_USE;
enum coffer_err coffer_buf_put_u16(struct coffer_buf *b, uint16_t v) COFFER_MUST_USE;
enum coffer_err coffer_buf_put_u32(struct coffer_buf *b, uint32_t v) COFFER_MUST_USE;
/* Appends a u32 length prefix and then the bytes. */
enum coffer_err coffer_buf_put_lv32(struct coffer_buf *b, const void *p, size_t n) COFFER_MUST_USE;

/* Wipes and frees the contents; the struct is left zeroed and reusable. */
void coffer_buf_cleanup(struct coffer_buf *b);

/* A read cursor over bytes it does not own. */
struct coffer_cursor {
    const unsigned char *p;
    size_t left;
};

/* Starts a cursor over n bytes at p. */
struct coffer_cursor coffer_cursor_init(const void *p, size_t n);

/* Each read returns COFFER_E_INVALID if fewer bytes remain than it needs. */
enum coffer_err coffer_cursor_u8(struct coffer_cursor *c, uint8_t *v) COFFER_MUST_USE;
enum coffer_err coffer_cursor_u16(struct coffer_cursor *c, uint16_t *v) COFFER_MUST_USE;
enum coffer_err coffer_cursor_u32(struct coffer_cursor *c, uint32_t *v) COFFER_MUST_USE;
/* Borrows n bytes: *p points into the cursor's input. */
enum coffer_err coffer_cursor_bytes(struct coffer_cursor *c, size_t n,
                                    const unsigned char **p) COFFER_MUST_USE;
/* COFFER_OK if nothing remains, COFFER_E_INVALID if trailing bytes do. */
enum coffer_err coffer_cursor_end(const struct coffer_cursor *c) COFFER_MUST_USE;

/* Lower-case hex of n bytes into out (2n+1 bytes with the NUL). */
void coffer_hex(const unsigned char *p, size_t n, char *out);

#endif

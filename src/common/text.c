/* SPDX-License-Identifier: Apache-2.0 */
/*
 * UTF-8 validation by the table of well-formed byte sequences (Unicode
 * 15, table 3-7), reading only within the given length.
 */
#include "coffer/text.h"

#include <stdint.h>

/*
 * Decodes one code point at s[i] (i < len). Returns its length in bytes and
 * the code point in *cp, or 0 if the sequence is not well-formed.
 */
static size_t decode(const unsigned char *s, size_t len, size_t i, uint32_t *cp)
{
    unsigned char c = s[i];
    unsigned char lo = 0x80;
    unsigned char hi = 0xBF;
    size_t n;
    uint32_t v;

    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
        v = c & 0x1Fu;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        v = c & 0x0Fu;
        if (c == 0xE0) {
            lo = 0xA0; /* no overlong forms */
        } else if (c == 0xED) {
            hi = 0x9F; /* no surrogates */
        }
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        v = c & 0x07u;
        if (c == 0xF0) {
            lo = 0x90;
        } else if (c == 0xF4) {
            hi = 0x8F; /* nothing above U+10FFFF */
        }
    } else {
        return 0;
    }
    if (len - i < n) {
        return 0;
    }
    for (size_t k = 1; k < n; k++) {
        unsigned char b = s[i + k];

        if (b < (k == 1 ? lo : 0x80) || b > (k == 1 ? hi : 0xBF)) {
            return 0;
        }
        v = (v << 6) | (b & 0x3Fu);
    }
    *cp = v;
    return n;
}

static bool scan(const char *s, size_t len, bool controls)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;

    while (i < len) {
        uint32_t cp = 0;
        size_t n = decode(u, len, i, &cp);

        if (n == 0) {
            return false;
        }
        if (!controls && (cp < 0x20 || (cp >= 0x7F && cp <= 0x9F))) {
            return false;
        }
        i += n;
    }
    return true;
}

bool coffer_text_ok(const char *s, size_t len, size_t max)
{
    if (s == NULL || len == 0 || len > max) {
        return false;
    }
    return scan(s, len, false);
}

bool coffer_utf8_ok(const char *s, size_t len)
{
    if (s == NULL) {
        return len == 0;
    }
    return scan(s, len, true);
}

/* SPDX-License-Identifier: Apache-2.0 */
/*
 * UUID text form, parsed strictly: exactly 36 characters, hyphens at 8, 13,
 * 18 and 23, hex digits elsewhere. Nothing else is accepted.
 */
#include "coffer/uuid.h"

#include "coffer/mem.h"

#include <string.h>

static int hexval(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

enum coffer_err coffer_uuid_parse(const char *s, struct coffer_uuid *out)
{
    size_t i;
    size_t o = 0;

    if (s == NULL || strlen(s) != 36) {
        return coffer_err_set(COFFER_E_INVALID, "uuid: want 36 characters");
    }
    for (i = 0; i < 36; i++) {
        int hi;
        int lo;

        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-') {
                return coffer_err_set(COFFER_E_INVALID, "uuid: want '-' at offset %zu", i);
            }
            continue;
        }
        hi = hexval(s[i]);
        lo = i + 1 < 36 ? hexval(s[i + 1]) : -1;
        if (hi < 0 || lo < 0) {
            return coffer_err_set(COFFER_E_INVALID, "uuid: bad hex digit at offset %zu", i);
        }
        out->b[o++] = (unsigned char)(hi << 4 | lo);
        i++;
    }
    return COFFER_OK;
}

void coffer_uuid_format(const struct coffer_uuid *u, char out[COFFER_UUID_STR_LEN])
{
    static const char digits[] = "0123456789abcdef";
    size_t i;
    size_t o = 0;

    for (i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10) {
            out[o++] = '-';
        }
        out[o++] = digits[u->b[i] >> 4];
        out[o++] = digits[u->b[i] & 0x0f];
    }
    out[o] = '\0';
}

bool coffer_uuid_equal(const struct coffer_uuid *a, const struct coffer_uuid *b)
{
    return coffer_mem_equal(a->b, b->b, sizeof(a->b));
}

/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The allocation and byte-copy primitives used everywhere else. Keeping them
 * here lets CI reject a raw malloc, memcpy or memcmp anywhere outside
 * src/common/, where a missed overflow check or a timing-leaky comparison of
 * a secret would otherwise hide.
 */
#include "coffer/mem.h"

#include <openssl/crypto.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

void *coffer_calloc(size_t n, size_t size)
{
    if (n == 0 || size == 0) {
        n = 1;
        size = 1;
    }
    return calloc(n, size);
}

void *coffer_reallocarray(void *p, size_t n, size_t size)
{
    if (size != 0 && n > SIZE_MAX / size) {
        return NULL;
    }
    if (n == 0 || size == 0) {
        n = 1;
        size = 1;
    }
    return realloc(p, n * size);
}

void coffer_free(void *p)
{
    free(p);
}

void coffer_freezero(void *p, size_t len)
{
    if (p == NULL) {
        return;
    }
    OPENSSL_cleanse(p, len);
    free(p);
}

/* The size lives in front of the block, in a slot aligned for any type. */
#define WIPE_HEADER (sizeof(max_align_t))

void *coffer_wipe_malloc(size_t n)
{
    unsigned char *p;

    if (n > SIZE_MAX - WIPE_HEADER) {
        return NULL;
    }
    p = malloc(n + WIPE_HEADER);
    if (p == NULL) {
        return NULL;
    }
    memcpy(p, &n, sizeof(n));
    return p + WIPE_HEADER;
}

void coffer_wipe_free(void *p)
{
    unsigned char *base;
    size_t n;

    if (p == NULL) {
        return;
    }
    base = (unsigned char *)p - WIPE_HEADER;
    memcpy(&n, base, sizeof(n));
    OPENSSL_cleanse(base, n + WIPE_HEADER);
    free(base);
}

char *coffer_strdup(const char *s)
{
    return s == NULL ? NULL : strdup(s);
}

char *coffer_strndup(const char *s, size_t n)
{
    return s == NULL ? NULL : strndup(s, n);
}

void coffer_memcpy(void *dst, const void *src, size_t n)
{
    if (n == 0) {
        return;
    }
    memcpy(dst, src, n);
}

bool coffer_ct_equal(const void *a, const void *b, size_t n)
{
    if (n == 0) {
        return true;
    }
    return CRYPTO_memcmp(a, b, n) == 0;
}

bool coffer_mem_equal(const void *a, const void *b, size_t n)
{
    if (n == 0) {
        return true;
    }
    return memcmp(a, b, n) == 0;
}

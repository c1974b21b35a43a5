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

void *coffer_wipe_calloc(size_t n, size_t size)
{
    unsigned char *p;

    if (size != 0 && n > SIZE_MAX / size) {
        return NULL;
    }
    if ((p = coffer_wipe_malloc(n * size)) != NULL) {
        memset(p, 0, n * size);
    }
    return p;
}

void *coffer_wipe_realloc(void *p, size_t n)
{
    unsigned char *q;
    size_t old;

    if (p == NULL) {
        return coffer_wipe_malloc(n);
    }
    if (n == 0) {
        coffer_wipe_free(p);
        return NULL;
    }
    /* Never realloc in place: the block left behind would keep what it held. */
    if ((q = coffer_wipe_malloc(n)) == NULL) {
        return NULL;
    }
    memcpy(&old, (unsigned char *)p - WIPE_HEADER, sizeof(old));
    memcpy(q, p, old < n ? old : n);
    coffer_wipe_free(p);
    return q;
}

char *coffer_wipe_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = coffer_wipe_malloc(n);

    if (p != NULL) {
        memcpy(p, s, n);
    }
    return p;
}

char *coffer_strdup(const char *s)
{
    return s == NULL ? NULL : strdup(s);
}

/*
 * Callers copy fields out of buffers that are not NUL-terminated (a URL
 * within a request, an array element of a row). glibc's strndup reads at
 * most n bytes, but a sanitizer checking strings strictly treats its
 * argument as a whole C string and reports a read past such a buffer; so
 * the length is found with strnlen and the bytes copied explicitly.
 */
char *coffer_strndup(const char *s, size_t n)
{
    size_t len;
    char *p;

    if (s == NULL) {
        return NULL;
    }
    len = strnlen(s, n);
    p = malloc(len + 1);
    if (p == NULL) {
        return NULL;
    }
    memcpy(p, s, len);
    p[len] = '\0';
    return p;
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

/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Arenas: a list of blocks carved from the front, released all at once.
 * Large requests get a block of their own. The budget counts every byte
 * requested, so a parser fed hostile input fails cleanly at a known size
 * instead of exhausting memory.
 */
#include "coffer/arena.h"

#include "coffer/mem.h"

#include <stdalign.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define BLOCK_SIZE (16u * 1024u)

struct block {
    struct block *next;
    size_t used;
    size_t cap;
    alignas(max_align_t) unsigned char data[];
};

struct coffer_arena {
    struct block *head;
    size_t budget;
    size_t spent;
};

enum coffer_err coffer_arena_new(size_t budget, struct coffer_arena **out)
{
    struct coffer_arena *a = coffer_calloc(1, sizeof(*a));

    *out = NULL;
    if (a == NULL) {
        return coffer_err_set(COFFER_E_NOMEM, "allocating an arena");
    }
    a->budget = budget == 0 ? COFFER_ARENA_DEFAULT_BUDGET : budget;
    *out = a;
    return COFFER_OK;
}

void coffer_arena_free(struct coffer_arena **a)
{
    struct block *b;

    if (a == NULL || *a == NULL) {
        return;
    }
    b = (*a)->head;
    while (b != NULL) {
        struct block *next = b->next;

        coffer_free(b);
        b = next;
    }
    coffer_free(*a);
    *a = NULL;
}

static struct block *new_block(size_t cap)
{
    struct block *b;

    if (cap > SIZE_MAX - sizeof(*b)) {
        return NULL;
    }
    b = coffer_calloc(1, sizeof(*b) + cap);
    if (b != NULL) {
        b->cap = cap;
    }
    return b;
}

void *coffer_arena_alloc(struct coffer_arena *a, size_t n, size_t size)
{
    const size_t align = alignof(max_align_t);
    struct block *b;
    size_t bytes;
    size_t at;

    if (size != 0 && n > SIZE_MAX / size) {
        return NULL;
    }
    bytes = n * size;
    if (bytes == 0) {
        bytes = 1;
    }
    if (bytes > SIZE_MAX - align || bytes > a->budget - a->spent) {
        return NULL;
    }
    bytes = (bytes + align - 1) / align * align;
    if (bytes > a->budget - a->spent) {
        return NULL;
    }
    b = a->head;
    if (b == NULL || b->cap - b->used < bytes) {
        struct block *nb = new_block(bytes > BLOCK_SIZE / 4 ? bytes : BLOCK_SIZE);

        if (nb == NULL) {
            return NULL;
        }
        if (bytes > BLOCK_SIZE / 4 && b != NULL) {
            /* A large block goes behind the current one, which keeps its room. */
            nb->next = b->next;
            b->next = nb;
        } else {
            nb->next = b;
            a->head = nb;
        }
        b = nb;
    }
    at = b->used;
    b->used += bytes;
    a->spent += bytes;
    return b->data + at;
}

void *coffer_arena_grow(struct coffer_arena *a, const void *old, size_t old_n, size_t new_n,
                        size_t size)
{
    void *p;

    if (new_n < old_n) {
        return NULL;
    }
    p = coffer_arena_alloc(a, new_n, size);
    if (p != NULL && old_n > 0) {
        coffer_memcpy(p, old, old_n * size);
    }
    return p;
}

char *coffer_arena_strndup(struct coffer_arena *a, const char *s, size_t n)
{
    char *p;

    if (n == SIZE_MAX) {
        return NULL;
    }
    p = coffer_arena_alloc(a, n + 1, 1);
    if (p != NULL) {
        coffer_memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

char *coffer_arena_strdup(struct coffer_arena *a, const char *s)
{
    return s == NULL ? NULL : coffer_arena_strndup(a, s, strlen(s));
}

char *coffer_arena_printf(struct coffer_arena *a, const char *fmt, ...)
{
    va_list ap;
    int n;
    char *p;

    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        return NULL;
    }
    p = coffer_arena_alloc(a, (size_t)n + 1, 1);
    if (p == NULL) {
        return NULL;
    }
    va_start(ap, fmt);
    (void)vsnprintf(p, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return p;
}

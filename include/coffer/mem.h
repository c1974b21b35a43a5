/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Memory: the only allocation and byte-copy functions the rest of Coffer uses,
 * so that a grep in CI finds any raw malloc, memcpy or memcmp outside
 * src/common/. Allocation failure is reported, never fatal.
 */
#ifndef COFFER_MEM_H
#define COFFER_MEM_H

#include <stdbool.h>
#include <stddef.h>

/* Zeroed allocation of n * size bytes with overflow check; NULL on failure. */
void *coffer_calloc(size_t n, size_t size);

/* Resizes p to n * size bytes with overflow check; NULL (p untouched) on failure. */
void *coffer_reallocarray(void *p, size_t n, size_t size);

/* Releases p (NULL is fine). For buffers that held secrets use coffer_freezero. */
void coffer_free(void *p);

/* Wipes len bytes at p, then releases it. */
void coffer_freezero(void *p, size_t len);

/*
 * An allocation that remembers its size so that coffer_wipe_free can wipe it
 * whole: for libraries that allocate through callbacks without telling the
 * size on free (jansson holding request and response bodies).
 */
void *coffer_wipe_malloc(size_t n);
/* Wipes and releases a coffer_wipe_malloc allocation (NULL is fine). */
void coffer_wipe_free(void *p);
/* calloc, realloc and strdup of the same kind; realloc always moves and wipes the old block. */
void *coffer_wipe_calloc(size_t n, size_t size);
void *coffer_wipe_realloc(void *p, size_t n);
char *coffer_wipe_strdup(const char *s);

/* strdup that reports failure with NULL. */
char *coffer_strdup(const char *s);

/* strndup that reports failure with NULL. */
char *coffer_strndup(const char *s, size_t n);

/* memcpy that accepts n == 0 with NULL pointers. */
void coffer_memcpy(void *dst, const void *src, size_t n);

/* Constant-time equality of two buffers of length n. */
bool coffer_ct_equal(const void *a, const void *b, size_t n);

/* Plain (not constant-time) equality, for non-secret data. */
bool coffer_mem_equal(const void *a, const void *b, size_t n);

#endif

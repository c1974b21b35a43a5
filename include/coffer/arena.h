/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Arenas: many small allocations released together. The policy model (its
 * names, lists and positions) lives in one arena so that a parser that fails
 * half-way has nothing to unwind but the arena itself.
 *
 * An arena has a byte budget; an allocation past it fails like an allocation
 * failure, so hostile input cannot make it grow without bound. Arenas hold
 * identifiers and descriptions, never secret values.
 */
#ifndef COFFER_ARENA_H
#define COFFER_ARENA_H

#include <stddef.h>

#include "coffer/err.h"

struct coffer_arena;

/* The default budget: 64 MiB. */
#define COFFER_ARENA_DEFAULT_BUDGET (64u * 1024u * 1024u)

/*
 * Creates an arena that will hand out at most budget bytes (0 means the
 * default). COFFER_E_NOMEM on failure.
 */
enum coffer_err coffer_arena_new(size_t budget, struct coffer_arena **out) COFFER_MUST_USE;

/* Releases every allocation of the arena and the arena; sets *a to NULL. */
void coffer_arena_free(struct coffer_arena **a);

/*
 * n * size zeroed bytes aligned for any type, or NULL when the multiplication
 * overflows, the budget is spent or memory is short. n == 0 gives a valid
 * pointer to zero bytes.
 */
void *coffer_arena_alloc(struct coffer_arena *a, size_t n, size_t size);

/*
 * A copy of old_n elements of size bytes in room for new_n (the rest zeroed),
 * for growing arrays; old stays allocated until the arena is freed. NULL on
 * failure, old untouched.
 */
void *coffer_arena_grow(struct coffer_arena *a, const void *old, size_t old_n, size_t new_n,
                        size_t size);

/* A NUL-terminated copy of the n bytes at s, or NULL. */
char *coffer_arena_strndup(struct coffer_arena *a, const char *s, size_t n);

/* A copy of the string s (NULL gives NULL without error). */
char *coffer_arena_strdup(struct coffer_arena *a, const char *s);

/* printf into a new arena string, or NULL. */
char *coffer_arena_printf(struct coffer_arena *a, const char *fmt, ...) COFFER_PRINTF(2, 3);

#endif

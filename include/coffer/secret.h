/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Secret buffers: the only place plaintext credential bytes and PINs live.
 *
 * A struct coffer_secret is opaque. Its bytes sit in memory that is locked
 * (never swapped), excluded from core dumps, and wiped with OPENSSL_cleanse
 * when freed. The bytes are reached only through a view, to hand them to the
 * token, OpenSSL or an encoder; compare secrets with coffer_secret_equal
 * (constant time). coffer_secret_free(&s) wipes, releases and sets s to NULL.
 *
 * The process-wide hardening (no core dumps, not ptrace-attachable by other
 * users) is coffer_harden_process(), called first thing by every program.
 */
#ifndef COFFER_SECRET_H
#define COFFER_SECRET_H

#include <stdbool.h>
#include <stddef.h>

#include "coffer/err.h"

/* Largest secret one buffer may hold (credential payloads, PINs). */
#define COFFER_SECRET_MAX (1024u * 1024u)

struct coffer_secret;

/* A borrowed view of a secret's bytes; valid until the secret is freed. */
struct coffer_secret_view {
    unsigned char *data;
    size_t len;
};

/*
 * Disables core dumps (RLIMIT_CORE 0, PR_SET_DUMPABLE 0) and sets up the
 * locked secret heap. Call once at start, before any secret exists.
 * Returns COFFER_OK or COFFER_E_IO if the kernel refuses the limits.
 */
/*
 * Makes OpenSSL, libevent, libcurl and jansson allocate through wiping
 * functions (coffer_wipe_malloc and its kin), so that nothing they free
 * keeps a secret. Call first in main, before any of them allocates:
 * COFFER_E_STATE if OpenSSL already has, COFFER_E_IO if libcurl cannot
 * start.
 */
enum coffer_err coffer_wipe_libraries(void) COFFER_MUST_USE;

enum coffer_err coffer_harden_process(void) COFFER_MUST_USE;

/*
 * Allocates a zeroed secret of len bytes (len may be 0) in locked memory.
 * On success *out owns the buffer; free it with coffer_secret_free.
 * Returns COFFER_OK, COFFER_E_LIMIT (len > COFFER_SECRET_MAX) or COFFER_E_NOMEM.
 */
enum coffer_err coffer_secret_new(size_t len, struct coffer_secret **out) COFFER_MUST_USE;

/* Like coffer_secret_new, then copies len bytes from src into it. */
enum coffer_err coffer_secret_from(const void *src, size_t len,
                                   struct coffer_secret **out) COFFER_MUST_USE;

/*
 * Shrinks the secret's visible length to len (<= current length); the bytes
 * beyond are wiped. Used after a token reports how much it wrote.
 */
enum coffer_err coffer_secret_truncate(struct coffer_secret *s, size_t len) COFFER_MUST_USE;

/* Wipes and releases *s, then sets *s to NULL. Safe on NULL and *s == NULL. */
void coffer_secret_free(struct coffer_secret **s);

/* Borrowed view of the bytes. s must not be NULL. */
struct coffer_secret_view coffer_secret_view(const struct coffer_secret *s);

/* Length in bytes. */
size_t coffer_secret_len(const struct coffer_secret *s);

/* Constant-time equality of contents (lengths are compared first). */
bool coffer_secret_equal(const struct coffer_secret *a, const struct coffer_secret *b);

/* Wipes len bytes at p so that the compiler cannot elide it. */
void coffer_wipe(void *p, size_t len);

#endif

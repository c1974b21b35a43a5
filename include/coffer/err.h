/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Errors: one enum for every module, one string function, and a per-thread
 * detail line that says what went wrong and where.
 *
 * A function that can fail returns enum coffer_err and is marked
 * COFFER_MUST_USE. COFFER_OK is zero; errors are negative. The module that
 * detects an error records a human-readable detail with coffer_err_set(),
 * which also returns the code, so the idiom is
 *
 *     if (bad)
 *         return coffer_err_set(COFFER_E_INVALID, "wrapped key is %zu bytes, want 40", n);
 *
 * A detail never contains a secret value: callers format identifiers and
 * lengths only. A denial by the access decision is a reason code, not an error.
 */
#ifndef COFFER_ERR_H
#define COFFER_ERR_H

#include <stddef.h>

#define COFFER_MUST_USE __attribute__((warn_unused_result))
#define COFFER_PRINTF(f, a) __attribute__((format(printf, f, a)))

enum coffer_err {
    COFFER_OK = 0,
    COFFER_E_NOMEM = -1,              /* allocation failed */
    COFFER_E_INVALID = -2,            /* an argument or input is malformed */
    COFFER_E_LIMIT = -3,              /* an input exceeds a size or count limit */
    COFFER_E_IO = -4,                 /* a file or process operation failed */
    COFFER_E_CONFIG = -5,             /* configuration is missing or wrong */
    COFFER_E_NOT_FOUND = -6,          /* the named object does not exist */
    COFFER_E_EXISTS = -7,             /* the object already exists */
    COFFER_E_CONFLICT = -8,           /* a compare-and-swap or lock lost a race */
    COFFER_E_STATE = -9,              /* the operation is not allowed in this state */
    COFFER_E_REFERENCED = -10,        /* a key version is still referenced */
    COFFER_E_INTEGRITY = -11,         /* authenticated data failed its check */
    COFFER_E_PIN = -12,               /* the PIN is wrong, locked or unreadable */
    COFFER_E_TOKEN_NOT_FOUND = -13,   /* no token matches the configured URI */
    COFFER_E_MECHANISM = -14,         /* the token lacks a required mechanism */
    COFFER_E_TOKEN = -15,             /* the token failed (any other CK_RV) */
    COFFER_E_TOKEN_UNAVAILABLE = -16, /* the module or device is gone */
    COFFER_E_FORKED = -17,            /* a PKCS#11 context was used across fork() */
    COFFER_E_DB_UNAVAILABLE = -18,    /* the database cannot be reached */
    COFFER_E_DB = -19,                /* the database refused a statement */
    COFFER_E_SCHEMA = -20,            /* migrations are missing, unknown or altered */
    COFFER_E_CRYPTO = -21,            /* a local cryptographic primitive failed */
};

/* Static name of a code, e.g. "integrity_error". Never NULL. */
const char *coffer_err_str(enum coffer_err e);

/*
 * Records a detail for the calling thread and returns e unchanged.
 * The detail is truncated at 512 bytes. Never format a secret into it.
 */
enum coffer_err coffer_err_set(enum coffer_err e, const char *fmt, ...) COFFER_PRINTF(2, 3);

/*
 * Prepends context to the current detail ("loading org key: <detail>") and
 * returns e. Use when passing an error up with more to say about where.
 */
enum coffer_err coffer_err_wrap(enum coffer_err e, const char *fmt, ...) COFFER_PRINTF(2, 3);

/* The calling thread's last detail, or "" if none. Valid until the next set. */
const char *coffer_err_detail(void);

/* Clears the calling thread's detail. */
void coffer_err_clear(void);

#endif

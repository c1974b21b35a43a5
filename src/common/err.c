/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Error names and the per-thread detail line. The detail is a fixed buffer in
 * thread-local storage so that recording an error never allocates; it must
 * never receive a secret value (callers format identifiers and sizes only).
 */
#include "coffer/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define DETAIL_MAX 512

static _Thread_local char detail[DETAIL_MAX];

const char *coffer_err_str(enum coffer_err e)
{
    switch (e) {
    case COFFER_OK:
        return "ok";
    case COFFER_E_NOMEM:
        return "out_of_memory";
    case COFFER_E_INVALID:
        return "invalid_input";
    case COFFER_E_LIMIT:
        return "limit_exceeded";
    case COFFER_E_IO:
        return "io_error";
    case COFFER_E_CONFIG:
        return "config_error";
    case COFFER_E_NOT_FOUND:
        return "not_found";
    case COFFER_E_EXISTS:
        return "already_exists";
    case COFFER_E_CONFLICT:
        return "conflict";
    case COFFER_E_STATE:
        return "invalid_state";
    case COFFER_E_REFERENCED:
        return "still_referenced";
    case COFFER_E_INTEGRITY:
        return "integrity_error";
    case COFFER_E_PIN:
        return "pin_error";
    case COFFER_E_TOKEN_NOT_FOUND:
        return "token_not_found";
    case COFFER_E_MECHANISM:
        return "mechanism_missing";
    case COFFER_E_TOKEN:
        return "token_error";
    case COFFER_E_TOKEN_UNAVAILABLE:
        return "token_unavailable";
    case COFFER_E_FORKED:
        return "token_context_forked";
    case COFFER_E_DB_UNAVAILABLE:
        return "database_unavailable";
    case COFFER_E_DB:
        return "database_error";
    case COFFER_E_SCHEMA:
        return "schema_error";
    case COFFER_E_CRYPTO:
        return "crypto_error";
    default:
        return "unknown_error";
    }
}

enum coffer_err coffer_err_set(enum coffer_err e, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    return e;
}

enum coffer_err coffer_err_wrap(enum coffer_err e, const char *fmt, ...)
{
    char prefix[DETAIL_MAX];
    char old[DETAIL_MAX];
    va_list ap;
    int n;

    va_start(ap, fmt);
    vsnprintf(prefix, sizeof(prefix), fmt, ap);
    va_end(ap);
    snprintf(old, sizeof(old), "%s", detail);
    /* A detail longer than the buffer is cut; the start says where it happened. */
    n = snprintf(detail, sizeof(detail), "%s: %s", prefix,
                 old[0] != '\0' ? old : coffer_err_str(e));
    if (n < 0) {
        detail[0] = '\0';
    }
    return e;
}

const char *coffer_err_detail(void)
{
    return detail;
}

void coffer_err_clear(void)
{
    detail[0] = '\0';
}

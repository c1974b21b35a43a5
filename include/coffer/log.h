/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Logging: one line per event to stderr, "LEVEL module: message", with
 * compile-time format checks. Log identifiers (org, project, credential,
 * key version, request id), never values: nothing that passes through a
 * struct coffer_secret may be formatted here.
 */
#ifndef COFFER_LOG_H
#define COFFER_LOG_H

#include "coffer/err.h"

enum coffer_log_level {
    COFFER_LOG_DEBUG = 0,
    COFFER_LOG_INFO = 1,
    COFFER_LOG_WARN = 2,
    COFFER_LOG_ERROR = 3,
};

/* Messages below level are dropped. Default COFFER_LOG_INFO; COFFER_LOG env var overrides. */
void coffer_log_set_level(enum coffer_log_level level);

void coffer_log(enum coffer_log_level level, const char *module, const char *fmt, ...)
    COFFER_PRINTF(3, 4);

#define coffer_debug(mod, ...) coffer_log(COFFER_LOG_DEBUG, mod, __VA_ARGS__)
#define coffer_info(mod, ...) coffer_log(COFFER_LOG_INFO, mod, __VA_ARGS__)
#define coffer_warn(mod, ...) coffer_log(COFFER_LOG_WARN, mod, __VA_ARGS__)
#define coffer_error(mod, ...) coffer_log(COFFER_LOG_ERROR, mod, __VA_ARGS__)

#endif

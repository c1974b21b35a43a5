/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Log lines to stderr. One write(2) per line so lines of concurrent threads
 * and worker processes do not interleave. Callers pass identifiers only; this
 * file never sees a secret and must never be handed one.
 */
#include "coffer/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static int threshold = -1;

static int level_from_env(void)
{
    const char *v = getenv("COFFER_LOG");

    if (v == NULL) {
        return COFFER_LOG_INFO;
    }
    if (strcasecmp(v, "debug") == 0) {
        return COFFER_LOG_DEBUG;
    }
    if (strcasecmp(v, "warn") == 0) {
        return COFFER_LOG_WARN;
    }
    if (strcasecmp(v, "error") == 0) {
        return COFFER_LOG_ERROR;
    }
    return COFFER_LOG_INFO;
}

void coffer_log_set_level(enum coffer_log_level level)
{
    threshold = (int)level;
}

static const char *level_name(enum coffer_log_level level)
{
    switch (level) {
    case COFFER_LOG_DEBUG:
        return "debug";
    case COFFER_LOG_INFO:
        return "info";
    case COFFER_LOG_WARN:
        return "warn";
    case COFFER_LOG_ERROR:
        return "error";
    default:
        return "?";
    }
}

void coffer_log(enum coffer_log_level level, const char *module, const char *fmt, ...)
{
    char line[1024];
    char stamp[32];
    struct timespec ts;
    struct tm tm;
    va_list ap;
    int n;
    int m;

    if (threshold < 0) {
        threshold = level_from_env();
    }
    if ((int)level < threshold) {
        return;
    }
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
    n = snprintf(line, sizeof(line), "%s.%03ldZ %s %s[%ld]: ", stamp, ts.tv_nsec / 1000000L,
                 level_name(level), module, (long)getpid());
    if (n < 0 || (size_t)n >= sizeof(line)) {
        return;
    }
    va_start(ap, fmt);
    m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    va_end(ap);
    if (m < 0) {
        return;
    }
    n += m;
    if ((size_t)n > sizeof(line) - 2) {
        n = (int)sizeof(line) - 2;
    }
    line[n++] = '\n';
    (void)!write(STDERR_FILENO, line, (size_t)n);
}

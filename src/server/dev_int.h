/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Private to the embedded default (dev.c: directory, token, env.sh and the
 * whole provisioning; dev_pg.c: the PostgreSQL cluster): what the two files
 * share.
 */
#ifndef COFFER_SERVER_DEV_INT_H
#define COFFER_SERVER_DEV_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "coffer/dev.h"
#include "coffer/err.h"

#define LOG_MOD "dev"

#define PG_ROOT "/usr/lib/postgresql"
#define PG_PREFERRED_BIN PG_ROOT "/15/bin"
#define PG_PORT "5432"
#define PG_SOCKET_NAME "/.s.PGSQL." PG_PORT
#define PG_START_TIMEOUT_MS 30000
#define PG_STOP_TIMEOUT_MS 30000
#define PG_INITDB_TIMEOUT_MS 180000
#define PG_ISREADY_TIMEOUT_MS 10000
#define PG_POLL_MS 100

/* How much of the server log an error detail quotes (the detail holds 512 bytes). */
#define LOG_TAIL_MAX 200
/* How much of it goes to the log on failure. */
#define LOG_TAIL_LONG 2048

/* The children's whole environment: nothing of the caller's leaks in. */
extern const char *const dev_child_env[];

/* snprintf that reports truncation as COFFER_E_INVALID naming what was too long. */
enum coffer_err dev_fmt(char *out, size_t outlen, const char *what, const char *f, ...)
    COFFER_PRINTF(4, 5) COFFER_MUST_USE;

/*
 * Reads a small file (at most buflen - 1 bytes) into buf, NUL-terminated,
 * without following a link. COFFER_E_NOT_FOUND if it does not exist.
 */
enum coffer_err dev_read_small(const char *path, char *buf, size_t buflen,
                               size_t *len) COFFER_MUST_USE;

/* The last bytes of a log file (up to outlen - 1), starting at a line boundary. */
void dev_log_tail(const char *path, char *out, size_t outlen);

/*
 * Refuses, before anything is created, a DIR the cluster could never be
 * started in: no PostgreSQL binaries, no user to run them as, or a parent
 * directory that user cannot traverse.
 */
enum coffer_err dev_pg_precheck(const struct coffer_dev_env *env) COFFER_MUST_USE;

/* policy/dev.yaml as built in (cmake/embed_file.cmake), NUL-terminated. */
extern const unsigned char coffer_dev_policy[];
extern const size_t coffer_dev_policy_len;

#endif

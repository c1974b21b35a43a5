/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Private to src/server/: the supervisor and its workers.
 */
#ifndef COFFER_SERVER_SERVE_H
#define COFFER_SERVER_SERVE_H

#include <signal.h>
#include <sys/types.h>

#include "coffer/config.h"
#include "coffer/err.h"

/* Exit status of a worker that cannot start because of its configuration. */
#define SERVE_EXIT_CONFIG 3
/* A worker could not start because the database or the token is unavailable: start it again. */
#define SERVE_EXIT_UNAVAILABLE 4

struct serve_opts {
    const char *config_path;  /* read again on SIGHUP */
    struct coffer_config cfg; /* as loaded at start */
    pid_t watch_pid;          /* a process (the dev cluster) whose death stops the server, or 0 */
};

/*
 * Binds cfg.listen, applies cfg's policy files, starts cfg.workers worker
 * processes and supervises them until SIGINT or SIGTERM: a worker that dies
 * is replaced, SIGHUP re-applies the policy files and makes every worker
 * reload its TLS files, SIGTERM drains and stops the workers. The caller has
 * blocked SIGINT, SIGTERM, SIGHUP and SIGCHLD (set); they are taken with
 * sigtimedwait, never in a handler. The supervisor opens no token and holds
 * no key.
 */
enum coffer_err serve_run(const struct serve_opts *o, const sigset_t *set) COFFER_MUST_USE;

/*
 * The background process (background.c): seals audit events (audit.seal)
 * and sweeps rows to the current key versions (keys.sweep) until SIGTERM or
 * SIGINT, taken from set with sigtimedwait. Returns its exit status.
 */
int serve_background_main(const struct serve_opts *o, const sigset_t *set);

#endif

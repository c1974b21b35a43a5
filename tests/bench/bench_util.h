/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What the HTTPS benchmarks (api_bench, limit_bench) share: an embedded
 * default provisioned in a temporary directory, cofferd started and stopped
 * by PID, admin requests with the dev client certificate, bearer tokens and
 * the wrk script that presents one, wrk run with its output captured and
 * read, and the count of granted access events.
 *
 * One benchmark process owns the state below. A process forked from it
 * never stops what its parent started: bench_die there only exits.
 */
#ifndef COFFER_BENCH_UTIL_H
#define COFFER_BENCH_UTIL_H

#include "coffer/dev.h"

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

extern struct coffer_dev_env bench_env; /* filled by bench_setup */
#define BENCH_DIR_MAX 64                /* bytes of the temporary directory's path, with its NUL */
extern char bench_dir[BENCH_DIR_MAX];   /* the temporary directory */
extern pid_t bench_server;              /* the running cofferd, 0 if none */

/*
 * Hardens the process, makes the temporary directory from dir_template
 * ("/tmp/name.XXXXXX", shorter than BENCH_DIR_MAX), and provisions the embedded default there,
 * serving its API at listen ("127.0.0.1:port"). name prefixes every message. Dies
 * ("set-up", "provisioning") on failure.
 */
void bench_setup(const char *name, const char *dir_template, const char *listen);

/* Stops cofferd (if running) and the cluster (if this process started it), by PID. */
void bench_stop_all(void);

/* Prints "name: what: <error detail>", stops what was started (bench_stop_all) and exits 1. */
__attribute__((noreturn)) void bench_die(const char *what);

/*
 * Stops cofferd and the cluster, and removes the temporary directory if
 * remove_dir; dies ("cleaning up") if one of them fails.
 */
void bench_finish(bool remove_dir);

/* An HTTP answer: status and the first 4095 bytes of the body, NUL terminated. */
struct bench_reply {
    char body[4096];
    size_t len;
    long status;
};

/* One request to the API as the admin (client certificate); exits on a transport failure. */
void bench_admin(const char *method, const char *path, const char *body, struct bench_reply *out);

/* Waits until GET /v1/health answers 200 (at most 30 s); dies otherwise. */
void bench_wait_healthy(void);

/*
 * Starts argv with envp, its stdout and stderr going to the file out, opened
 * with flags besides O_WRONLY | O_CREAT (O_APPEND or O_TRUNC); dies on failure.
 */
pid_t bench_spawn(const char *const *argv, const char *const *envp, const char *out, int flags);

/* Starts cofferd -c bench_env.config with its output appended to log, and waits until healthy. */
void bench_start_server(const char *log);

/* Stops cofferd (SIGTERM, then waits up to 30 s). */
void bench_stop_server(void);

/* One number from a query as coffer_owner, or -1. */
double bench_owner_number(const char *sql);

/* The first column of the first row of a query as coffer_owner into out; false on failure. */
bool bench_owner_text(const char *sql, char *out, size_t cap);

/* Access events with reason granted in the audit table, or -1. */
long long bench_granted_events(void);

/*
 * Runs argv (argv[0] an absolute path) with stdout and stderr into out (cap
 * bytes, NUL terminated); returns the exit status, -1 if killed. Dies if
 * it cannot be run or takes more than ten minutes.
 */
int bench_capture(const char *const *argv, char *out, size_t cap);

/*
 * The value after label in wrk's output ("Requests/sec:", "50%", ...), as
 * text in buf ("" if absent). Percentiles are looked up in the latency
 * distribution only, since other lines hold percentages too.
 */
const char *bench_field(const char *out, const char *label, char *buf, size_t cap);

/*
 * Issues a bearer token for principal ("agent/<type>/<instance>" or
 * "admin/<name>", valid one day) as the admin, into out (cap bytes). False,
 * with the answer in *r, if none was issued; on success the answer's body
 * is wiped. The token is a secret: never print it.
 */
bool bench_token(const char *principal, char *out, size_t cap, struct bench_reply *r);

/*
 * Writes the wrk script of an access: POST with a purpose as JSON and the
 * token in the Authorization header. Dies if the file cannot be written.
 */
void bench_write_access_lua(const char *path, const char *token);

#endif

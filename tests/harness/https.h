/* SPDX-License-Identifier: Apache-2.0 */
/*
 * End-to-end HTTPS pieces shared by the test programs that run a real
 * cofferd: a free loopback port, one libcurl request with an optional
 * client certificate and extra header lines, starting `cofferd -c` against
 * this test's token and waiting until /v1/health answers, and stopping it.
 * Callers run curl_global_init once before the first request.
 */
#ifndef COFFER_TEST_HTTPS_H
#define COFFER_TEST_HTTPS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include <curl/curl.h>

#include "coffer/dev.h"
#include "coffer/err.h"

struct harness;
struct https_cert;

/* One answer: its status and the start of its body, NUL-terminated. */
struct https_reply {
    long status;
    char body[1 << 20]; /* room for a full listing of 1000 pending requests */
    size_t len;
};

/*
 * A CURLOPT_WRITEFUNCTION for a handle the test drives itself, with a
 * struct https_reply (zeroed first) as CURLOPT_WRITEDATA: keeps what fits,
 * NUL-terminated, and accepts the rest unread.
 */
size_t https_collect(char *p, size_t size, size_t n, void *arg);

/* Where requests go, which CA certifies the server, and who may call it by name. */
struct https_target {
    char base_url[64]; /* https://127.0.0.1:<port> */
    const char *ca;    /* PEM file of the CA that signed the server's certificate */
    /* For the expect.h helpers: the dev identities, and certificates named by their who. */
    const struct coffer_dev_tls *ids; /* NULL: none */
    const struct https_cert *const *certs;
    size_t n_certs;
};

/* A loopback port nobody listens on right now. Prints the reason and exits 1 if there is none. */
unsigned short https_free_port(void);

/* Fills t for 127.0.0.1:port, trusting the CA in ca (which must outlive t). */
void https_target_init(struct https_target *t, unsigned short port, const char *ca);

/* Fills t for 127.0.0.1:port, trusting tls's CA and calling as its identities (tls outlives t). */
void https_target_dev(struct https_target *t, unsigned short port,
                      const struct coffer_dev_tls *tls);

/*
 * The client certificate and key of the dev identities "admin", "agent" and
 * "agent2" in tls; false (and nothing set) for NULL or any other name.
 */
bool https_dev_identity(const struct coffer_dev_tls *tls, const char *who, const char **cert,
                        const char **key);

/*
 * One request to t's base URL followed by path. body, if not NULL, is sent
 * as application/json; cert and key (both or neither) name a client
 * certificate; headers is a NULL-terminated list of extra header lines, or
 * NULL. Returns libcurl's result; *out holds the answer only on CURLE_OK.
 */
CURLcode https_request(const struct https_target *t, const char *method, const char *path,
                       const char *body, const char *cert, const char *key,
                       const char *const *headers, struct https_reply *out);

/* https_request giving up after timeout_ms (https_request waits up to 30 s). */
CURLcode https_request_within(const struct https_target *t, const char *method, const char *path,
                              const char *body, const char *cert, const char *key,
                              const char *const *headers, long timeout_ms, struct https_reply *out);

/*
 * Copies up to cap - 1 bytes from the start of the file at path into buf,
 * NUL-terminated; an unreadable file gives an empty string.
 */
void https_read_log(const char *path, char *buf, size_t cap);

/*
 * Starts cofferd (absolute path) with `-c config` and only SOFTHSM2_CONF=
 * softhsm_conf and a plain PATH in its environment, its output appended to
 * log_path, and waits up to 30 seconds until GET /v1/health on t answers 200.
 * Returns 0 with the child's PID in *pid, or -1 after printing why and the
 * start of the log to stderr (a child that was started is killed and reaped).
 */
int https_server_start(const char *cofferd, const char *config, const char *softhsm_conf,
                       const char *log_path, const struct https_target *t, pid_t *pid);

#define HTTPS_EXTRA_ENV_MAX 8

/*
 * As https_server_start, with the NULL-terminated entries of extra_env
 * ("NAME=value", at most HTTPS_EXTRA_ENV_MAX; NULL for none) added to
 * cofferd's environment, and, if new_session, cofferd in a session and
 * process group of its own, so that kill(-*pid, sig) reaches its supervisor,
 * workers and background process at once. When the environment variable
 * COFFER_TEST_WRAPPER is set, its space-separated words are put before
 * cofferd's command line (scripts/valgrind.sh runs cofferd under memcheck so).
 */
int https_server_start_ex(const char *cofferd, const char *config, const char *softhsm_conf,
                          const char *log_path, const struct https_target *t,
                          const char *const *extra_env, bool new_session, pid_t *pid);

/*
 * Sends sig to *pid (if > 0), waits up to timeout_ms for it to exit and sets
 * *pid to 0. Returns 0 if it exited with status 0; -1 otherwise (not
 * reaped in time, a non-zero status or killed by a signal), printing why.
 * With SIGKILL only the reaping counts.
 */
int https_server_stop(pid_t *pid, int sig, int timeout_ms);

/*
 * Starts a local HTTPS upstream written in Python (script, run by
 * /usr/bin/python3 with a plain PATH) as `script PORT CERT KEY REQUEST_LOG
 * EXTRA...` on a free loopback port, with the server certificate of tls
 * (its own CA), its output appended to out_log; extra is NULL-terminated or
 * NULL. Waits up to 10 seconds for the port to accept. Returns 0 with the
 * port and the PID (stop it with https_server_stop), or -1 after printing why.
 */
int https_upstream_start(const char *script, const struct coffer_dev_tls *tls,
                         const char *request_log, const char *out_log, const char *const *extra,
                         unsigned short *port, pid_t *pid);

/* A client certificate issued by the test CA for one SPIFFE ID. */
struct https_cert {
    const char *who;    /* names the files: DIR/<who>.pem, DIR/<who>.key */
    const char *spiffe; /* the URI SAN */
    char cert[PATH_MAX];
    char key[PATH_MAX];
};

/*
 * Issues c (EC P-256, clientAuth, 2 days) signed by the CA of tls with the
 * openssl command, writing its files into dir. 0, or -1 with the reason on
 * stderr.
 */
int https_issue_cert(const struct coffer_dev_tls *tls, const char *dir, struct https_cert *c,
                     unsigned serial);

/*
 * Writes cofferd's configuration to path: listening on 127.0.0.1:port with
 * the server certificate and client CA of tls, this test's token and its
 * database as coffer_app (from h), followed by extra_fmt (YAML lines,
 * formatted like printf). 0, or -1 with the reason on stderr.
 */
int https_write_config(const char *path, unsigned short port, const struct coffer_dev_tls *tls,
                       const struct harness *h, const char *extra_fmt, ...) COFFER_PRINTF(5, 6);

/*
 * Ends the child *pid (if > 0): SIGTERM, up to 20 seconds, then SIGKILL and
 * up to 10 seconds more; sets *pid to 0. Prints the PID if it never exited.
 * For teardown, where how it ended does not matter (see https_server_stop).
 */
void https_process_stop(pid_t *pid);

/* Removes the directory tree dir (a test's mkdtemp directory), printing what failed. */
void https_remove_dir(const char *dir);

#endif

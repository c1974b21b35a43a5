/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The embedded default: a SoftHSMv2 token with its own softhsm2.conf and a
 * private PostgreSQL cluster on a unix socket, provisioned in one directory.
 * Used by `cofferd --dev DIR`, `make demo` and the test harness.
 *
 * Layout of DIR (mode 0700):
 *   softhsm2.conf  token/          the token store (SoftHSMv2 file backend)
 *   token.pin      so.pin          random PINs, mode 0600
 *   pg/data        pg/run          the cluster and its socket directory
 *   pg/log         env.sh          the server log; what a client needs
 *   tls/           (mode 0700)     the test CA and its certificates:
 *     ca.pem ca.key                  "Coffer dev CA", the issuer of the others
 *     server.pem server.key          localhost, 127.0.0.1 and ::1
 *     admin.pem admin.key            spiffe://coffer.dev/org/dev/admin/admin
 *     agent.pem agent.key            spiffe://coffer.dev/org/dev/agent/deployer/deployer-1
 *     agent2.pem agent2.key          spiffe://coffer.dev/org/dev/agent/analyst/analyst-1
 *   (keys are unencrypted PKCS#8 PEM, mode 0600: for development only)
 *
 * PostgreSQL refuses to run as root: when Coffer runs as root the cluster runs
 * as the system user "coffer" (or "nobody" if there is none). The cluster
 * listens on its unix socket only, with trust authentication limited by the
 * socket directory's permissions; it is for development and tests, never for
 * production.
 */
#ifndef COFFER_DEV_H
#define COFFER_DEV_H

#include <limits.h>
#include <sys/types.h>

#include "coffer/err.h"

#define COFFER_DEV_TOKEN_LABEL "coffer-dev"
#define COFFER_DEV_DBNAME "coffer"
#define COFFER_DEV_ORG "dev"
#define COFFER_DEV_PROJECT "demo"
#define COFFER_DEV_TRUST_DOMAIN "coffer.dev"

/* The files of DIR/tls (see the layout above); every path is DIR-based. */
struct coffer_dev_tls {
    char dir[PATH_MAX]; /* DIR/tls */
    char ca[PATH_MAX];  /* DIR/tls/ca.pem */
    char server_cert[PATH_MAX];
    char server_key[PATH_MAX];
    char admin_cert[PATH_MAX];
    char admin_key[PATH_MAX];
    char agent_cert[PATH_MAX]; /* the deployer instance deployer-1 */
    char agent_key[PATH_MAX];
    char agent2_cert[PATH_MAX]; /* the analyst instance analyst-1 */
    char agent2_key[PATH_MAX];
};

struct coffer_dev_env {
    char dir[PATH_MAX];
    char softhsm_conf[PATH_MAX];  /* DIR/softhsm2.conf */
    char module[PATH_MAX];        /* the SoftHSMv2 library */
    char token_uri[128];          /* pkcs11:token=coffer-dev */
    char pin_source[PATH_MAX];    /* file:DIR/token.pin */
    char so_pin_file[PATH_MAX];   /* DIR/so.pin */
    char pg_socket_dir[PATH_MAX]; /* DIR/pg/run */
    char db_super[PATH_MAX + 64]; /* conninfo as the cluster superuser, database postgres */
    char db_owner[PATH_MAX + 64]; /* conninfo as coffer_owner, database coffer */
    char db_app[PATH_MAX + 64];   /* conninfo as coffer_app, database coffer */
    pid_t pg_pid;                 /* postmaster this process started; 0 if none */
    struct coffer_dev_tls tls;    /* DIR/tls, filled by coffer_dev_up */
    char listen[64];              /* the API's address: COFFER_DEV_LISTEN or 127.0.0.1:8443 */
    char config[PATH_MAX];        /* DIR/coffer.yaml, cofferd's configuration */
};

/* Where the embedded default serves its API unless COFFER_DEV_LISTEN says otherwise. */
#define COFFER_DEV_LISTEN_DEFAULT "127.0.0.1:8443"

/*
 * Fills *env with the paths and conninfo strings for DIR, without touching
 * anything. DIR is made absolute. COFFER_E_INVALID if it is too long.
 */
enum coffer_err coffer_dev_env_init(const char *dir, struct coffer_dev_env *env) COFFER_MUST_USE;

/*
 * Creates DIR, softhsm2.conf, the PIN files and a token labelled label if not
 * there yet, and sets SOFTHSM2_CONF in this process's environment so that the
 * module finds it. Safe to re-run.
 */
enum coffer_err coffer_dev_token_prepare(struct coffer_dev_env *env,
                                         const char *label) COFFER_MUST_USE;

/*
 * Creates the cluster if DIR/pg/data does not exist, starts it as an
 * unprivileged user, and waits until it accepts connections; env->pg_pid is
 * then the postmaster's PID. If a postmaster from an earlier run is already
 * serving DIR it is reused and env->pg_pid stays 0.
 */
enum coffer_err coffer_dev_pg_start(struct coffer_dev_env *env) COFFER_MUST_USE;

/* Stops the postmaster env->pg_pid (SIGINT, fast shutdown) and waits for it. */
enum coffer_err coffer_dev_pg_stop(struct coffer_dev_env *env) COFFER_MUST_USE;

/*
 * Everything `cofferd --dev` needs, idempotent: token, cluster, roles and the
 * database, migrations, MK v1, org "dev" with its org key, project "demo",
 * and DIR/env.sh. Leaves the cluster running (see env->pg_pid).
 */
enum coffer_err coffer_dev_up(const char *dir, struct coffer_dev_env *env) COFFER_MUST_USE;

/*
 * Creates DIR/tls (mode 0700) with the test CA and its server, admin and
 * agent certificates (EC P-256, SHA-256) unless a complete, consistent set
 * is there already: each certificate parses, matches its key, is signed by
 * ca.pem, is valid for at least another day and names the expected
 * principal. Otherwise the whole set is made anew, so a missing or stale
 * file never leaves certificates of two CAs side by side. Files are written
 * through a temporary file and rename; keys with mode 0600. DIR must exist.
 * *out receives the paths even when provisioning fails, unless DIR is
 * NULL, empty or too long (COFFER_E_INVALID). COFFER_E_INVALID also if
 * DIR/tls or one of its files is a link, not a regular file or directory,
 * not owned by this user, or open to group or others (the directory, a key)
 * or writable by them (a certificate); COFFER_E_IO if DIR/tls cannot be
 * created or a file cannot be read or written; COFFER_E_CRYPTO if OpenSSL
 * fails.
 */
enum coffer_err coffer_dev_tls_provision(const char *dir,
                                         struct coffer_dev_tls *out) COFFER_MUST_USE;

/*
 * Removes the directory tree at path, depth first, never following a link.
 * A path that does not exist is not an error. COFFER_E_IO names what failed.
 */
enum coffer_err coffer_dev_remove_tree(const char *path) COFFER_MUST_USE;

#endif

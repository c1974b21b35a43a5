/* SPDX-License-Identifier: Apache-2.0 */
/*
 * cofferd's configuration: one YAML file (docs/config.md), read into a
 * struct that holds paths and numbers, never a secret (the PIN comes from a
 * PIN source, database passwords from libpq's own mechanisms).
 *
 * Every problem is a diagnostic "file:line:column: what is wrong", collected
 * as for policies; a file with problems is refused whole.
 */
#ifndef COFFER_CONFIG_H
#define COFFER_CONFIG_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "coffer/err.h"
#include "coffer/log.h"
#include "coffer/policy.h"
#include "coffer/spiffe.h"

#define COFFER_CONFIG_POLICY_FILES_MAX 64
#define COFFER_CONFIG_WORKERS_MAX 64

/* The default of pkcs11.renew_objects. */
#define COFFER_CONFIG_RENEW_OBJECTS 100000

struct coffer_config {
    /* listen: "host:port"; IPv6 as "[::1]:8443" */
    char listen_host[256];
    uint16_t listen_port;

    /* tls: PEM files; client_ca verifies client certificates (mTLS) */
    char tls_cert[PATH_MAX];
    char tls_key[PATH_MAX];
    char tls_client_ca[PATH_MAX];
    char trust_domain[COFFER_TRUST_DOMAIN_MAX + 1];

    /* pkcs11 */
    char pkcs11_module[PATH_MAX];
    char token_uri[512];
    char pin_source[PATH_MAX + 16];
    /* renew_objects: a process reopens its token context after making this many session
       objects (SoftHSMv2 2.6 frees their memory only then); 0 means the default */
    unsigned pkcs11_renew_objects;

    /* database: libpq conninfo as coffer_app */
    char database[2048];

    /* workers: 0 in the file means one per online core (resolved when loading) */
    unsigned workers;

    /* limits */
    size_t max_header_bytes;     /* default 16 KiB */
    size_t max_body_bytes;       /* default 1 MiB */
    unsigned request_timeout_ms; /* whole request, default 10 s */
    unsigned idle_timeout_ms;    /* keep-alive idle, default 60 s */
    unsigned max_connections;    /* per worker, default 1024 */

    /* policy: files applied at start and on SIGHUP (optional) */
    char policy_files[COFFER_CONFIG_POLICY_FILES_MAX][PATH_MAX];
    size_t n_policy_files;

    enum coffer_log_level log_level; /* log: debug|info|warn|error, default info */

    /* audit: the sealer in the background process */
    bool audit_seal;                 /* seal: default true */
    unsigned audit_seal_interval_ms; /* seal_interval_ms: pause between rounds, default 200 */
    unsigned audit_seal_wait_ms;     /* seal_wait_ms: longest pause of event writers, default 100 */

    /* keys: the sweeper in the background process, which moves rows to current key versions */
    bool keys_sweep;                 /* sweep: default true */
    unsigned keys_sweep_batch;       /* sweep_batch: rows per step, default 500 */
    unsigned keys_sweep_interval_ms; /* sweep_interval_ms: pause between steps, default 50 */
    unsigned keys_sweep_idle_ms;     /* sweep_idle_ms: looking for work when none, default 5000 */
    unsigned keys_sweep_share;       /* sweep_share: percent of one core the sweeper takes, 10 */

    /* broker: brokered calls (POST .../use) */
    char broker_ca_file[PATH_MAX];      /* ca_file: PEM CAs for upstreams; "" = system CAs */
    unsigned broker_connect_timeout_ms; /* connect_timeout_ms: default 5 s */
    unsigned broker_timeout_ms;         /* timeout_ms: the whole call, default 30 s */
    /* oauth2_refresh_margin_s: an access token this close to its expiry is refreshed first
       (default 60 s, 0 to 86400) */
    unsigned oauth2_refresh_margin_s;
};

/*
 * Reads path into *out with the defaults of docs/config.md for what the file
 * leaves out. COFFER_E_IO if it cannot be read; COFFER_E_CONFIG with
 * diagnostics in d for every problem (unknown or duplicate keys, wrong
 * types, missing required keys, out-of-range numbers, bad addresses).
 * Relative paths in the file are taken relative to the file's directory.
 */
enum coffer_err coffer_config_load(const char *path, struct coffer_config *out,
                                   struct coffer_policy_diags *d) COFFER_MUST_USE;

/*
 * As coffer_config_load, for len bytes already read (at most 1 MiB): name is
 * the file as diagnostics print it and dir the absolute directory that
 * relative paths in it are resolved against.
 */
enum coffer_err coffer_config_load_buffer(const char *name, const char *dir, const void *data,
                                          size_t len, struct coffer_config *out,
                                          struct coffer_policy_diags *d) COFFER_MUST_USE;

#endif

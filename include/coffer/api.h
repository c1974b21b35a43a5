/* SPDX-License-Identifier: Apache-2.0 */
/*
 * api: HTTPS and JSON for one worker process. A route table (method, path
 * pattern, who may call, body limit, handler) is the only way a request
 * reaches an operation; everything else is answered with a JSON error
 * {"error", "message", "request_id"} and the fitting status.
 *
 * TLS 1.2 or newer. Clients present a certificate signed by the configured
 * CA whose URI SAN is a SPIFFE ID of the configured trust domain; a request
 * without one is answered 401 with no detail beyond the error code. Request
 * and response bodies are JSON through jansson, whose allocations this
 * module wipes on free, because the bodies of credential routes carry
 * values. Nothing here logs a body or an Authorization header.
 */
#ifndef COFFER_API_H
#define COFFER_API_H

#include <event2/event.h>

#include "coffer/config.h"
#include "coffer/err.h"
#include "coffer/ops.h"

struct coffer_api;

/*
 * Counters of one worker, in memory the supervisor shares with every
 * worker (one slot each), so that /metrics shows the whole server. Counts
 * only: no names, no identities.
 */
struct coffer_api_stats {
    unsigned long long requests;
    unsigned long long status_2xx;
    unsigned long long status_4xx;
    unsigned long long status_5xx;
    unsigned long long accesses_granted;
    unsigned long long accesses_denied;
    unsigned long long batches;
    unsigned long long put_batches;  /* transactions of credential writes committed together */
    unsigned long long puts_batched; /* the writes they held */
    unsigned long long unauthenticated;
    unsigned long long connections_refused;
    unsigned long long connections_open;
};

/* The stats slots of every worker, and which one is this worker's. */
struct coffer_api_stats_view {
    struct coffer_api_stats *slots;
    unsigned n;
    unsigned self;
};

/*
 * Makes jansson allocate through a wiping allocator. Call once per process
 * before any JSON is parsed (cofferd and the tests do).
 */
void coffer_api_json_init(void);

/*
 * Serves HTTPS on listen_fd (already bound and listening, shared by the
 * workers) in base, with the TLS files, trust domain and limits of cfg, and
 * runs requests through ops, counting in stats (NULL: a private slot).
 * Connections beyond cfg's max_connections are answered 503. COFFER_E_CONFIG
 * if the TLS files cannot be loaded (the detail names which).
 */
enum coffer_err coffer_api_new(const struct coffer_config *cfg, struct event_base *base,
                               int listen_fd, struct coffer_ops *ops,
                               const struct coffer_api_stats_view *stats,
                               struct coffer_api **out) COFFER_MUST_USE;

/* Loads the TLS files of cfg again; new connections use them, open ones keep theirs. */
enum coffer_err coffer_api_reload_tls(struct coffer_api *a,
                                      const struct coffer_config *cfg) COFFER_MUST_USE;

/* Stops accepting connections; requests in flight finish. */
void coffer_api_stop_accepting(struct coffer_api *a);

/* Frees the server; open connections are closed. */
void coffer_api_free(struct coffer_api **a);

#endif

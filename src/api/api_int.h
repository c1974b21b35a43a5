/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Private to src/api/: one request as the handlers see it, and the route
 * table that maps method and path to a handler, who may call it and how big
 * its body may be.
 */
#ifndef COFFER_API_INT_H
#define COFFER_API_INT_H

#include <stdbool.h>
#include <stddef.h>

#include <event2/http.h>
#include <jansson.h>

#include "coffer/api.h"
#include "coffer/ops.h"
#include "coffer/spiffe.h"
#include "coffer/store.h"

#define API_REQUEST_ID_LEN 32 /* hex characters */
#define API_MAX_SEGMENTS 10

enum api_role {
    API_ROLE_NONE,  /* no authentication (health) */
    API_ROLE_AGENT, /* an agent's certificate */
    API_ROLE_ADMIN, /* an admin's certificate */
    API_ROLE_ANY,   /* either */
};

struct api_req;

/* How a route's requests are committed. */
enum api_batch {
    API_ALONE,        /* each in a transaction of its own */
    API_BATCH_ACCESS, /* accesses of one loop turn: one batch, one commit */
    API_BATCH_PUT,    /* credential writes of one loop turn: one transaction */
};

struct api_route {
    enum evhttp_cmd_type method;
    const char *pattern; /* "/v1/orgs/{}/projects/{}/credentials/{}/access" */
    enum api_role role;
    size_t body_limit; /* 0: no body is read */
    void (*handler)(struct api_req *r);
    enum api_batch batch; /* queued and committed with others of its kind (http.c) */
};

struct api_req {
    struct evhttp_request *req;
    enum evhttp_cmd_type method;
    const struct api_route *route;
    char id[API_REQUEST_ID_LEN + 1];
    char client_addr[128];
    char allow[64];                    /* methods of the path, for a 405 */
    char params[API_MAX_SEGMENTS][64]; /* the {} segments, in order */
    size_t n_params;
    bool authenticated;
    struct coffer_principal who;
    char token_id[COFFER_UUID_STR_LEN]; /* the bearer token that authenticated it, or "" */
    json_t *body;                       /* the parsed body of a route that takes one */
    size_t body_len;                    /* its length in bytes */
    struct coffer_ops *api_ops;
    struct coffer_api *api;
    /* A batched request waiting in its worker's queue: */
    struct coffer_op_access acc;
    struct coffer_op_put put;       /* a queued put: its body read (api_put_prepare) */
    struct coffer_keyset *put_keys; /* and its values, owned */
    bool dead;                      /* its connection closed before the batch ran */
    bool token_pending;             /* its bearer token is looked up with the batch's (token) */
    struct coffer_op_token_check token;
};

enum api_match {
    API_MATCHED,
    API_NO_PATH,
    API_NO_METHOD,
    API_BAD_PATH,
};

/* Finds the route of uri and method; fills r->route and r->params, or r->allow for a 405. */
enum api_match api_route_match(const char *uri, enum evhttp_cmd_type method, struct api_req *r);

/* Sends body (taken; NULL for none) as JSON with status. */
void api_reply(struct api_req *r, int status, json_t *body);

/* Sends {"error": code, "message": message, "request_id": id} with status. */
void api_error(struct api_req *r, int status, const char *code, const char *message);

/* ---- Helpers for handlers (routes.c) ---- */

/* Answers an operation's error with the fitting status and JSON error code. */
void api_fail_op(struct api_req *r, enum coffer_err e);
/* Refuses (answering 400) a body field not in the NULL-terminated list known. */
bool api_only_fields(struct api_req *r, const char *const *known);
/* A string field of the body: *out NULL if absent; false (answered 400) if not a string. */
bool api_string_field(struct api_req *r, const char *name, const char **out, size_t *len);
/* The request's principal, id and peer for an operation. */
struct coffer_op_meta api_meta(const struct api_req *r);
/* Parses "YYYY-MM-DDTHH:MM:SSZ" into microseconds since the epoch. */
bool api_parse_time(const char *s, int64_t *us);
/* Formats microseconds since the epoch as "YYYY-MM-DDTHH:MM:SSZ" ("" on failure). */
void api_format_time(int64_t us, char out[32]);
/*
 * Reads the body's "grants" array into g (room for COFFER_POLICY_GRANTS_MAX)
 * with phase lists in phases; false if answered 400.
 */
bool api_read_grants(struct api_req *r, struct coffer_policy_grant *g, const char *(*phases)[32],
                     size_t *n);
/*
 * Reads the body's optional "key_expires_at" object (key name to
 * "YYYY-MM-DDTHH:MM:SSZ") into out (room for COFFER_KEYS_MAX); the names
 * point into the body. false if answered 400.
 */
bool api_read_key_expiry(struct api_req *r, struct coffer_op_key_expiry *out, size_t *n);
/* {"org", "project", "credential"} of a credential route (params 0, 1, 2). */
json_t *api_cred_json(const struct api_req *r);

/* ---- Handlers (the route table in table.c names them) ---- */

void api_health(struct api_req *r);
/* Prometheus text of the counters of every worker (http.c). */
void api_metrics(struct api_req *r);
void api_access(struct api_req *r);
/* The access route in two halves, for batching: check the body (false: answered)... */
bool api_access_prepare(struct api_req *r, struct coffer_op_access *a);
/* ...and answer with the operation's result (frees a->keys). */
void api_access_answer(struct api_req *r, struct coffer_op_access *a, enum coffer_err e);

/* Answers 502 refresh_failed for a refresh that failed after the access token expired. */
void api_refresh_failed(struct api_req *r, const struct coffer_op_refresh *f);

/* Reads a put's "oauth2" object as compact JSON text (see routes.c); false: answered 400. */
bool api_read_oauth2(struct api_req *r, char *out, size_t cap, size_t *len);
void api_put(struct api_req *r);
/*
 * Reads a put to be queued into r->put and r->put_keys. A put with lists or
 * a provider of its own is written and answered at once instead (api_put).
 * False when answered.
 */
bool api_put_prepare(struct api_req *r);
/* Answers a put with the outcome of its operation. */
void api_put_answer(struct api_req *r, const struct coffer_op_put *p, enum coffer_err e);
void api_revoke(struct api_req *r);
void api_phase(struct api_req *r);

/* Credential metadata (routes_meta.c). */
void api_meta_list(struct api_req *r);
void api_meta_get(struct api_req *r);

/* Bearer tokens (routes_tokens.c): an admin issues and revokes tokens of its org. */
void api_token_create(struct api_req *r);
void api_token_revoke(struct api_req *r);

/* Credential requests and standing approvals (routes_requests.c). */
void api_request_file(struct api_req *r);
void api_request_list(struct api_req *r);
void api_request_get(struct api_req *r);
void api_request_fulfill(struct api_req *r);
void api_request_deny(struct api_req *r);
void api_approval_create(struct api_req *r);
void api_approval_revoke(struct api_req *r);

#endif

/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Brokered use of a credential (POST .../credentials/{name}/use): the
 * operation (ops_use.c) and its route (routes_use.c). Private to api.
 *
 * The operation decides as an access does, with brokered set, checks the
 * agent's request against the credential's usage spec before any
 * connection, makes the call with libcurl inside the handler, and hands back
 * the upstream's answer with every value of the credential redacted. A
 * worker makes one brokered call at a time and its event loop waits for it
 * (bounded by the broker's timeouts): run one worker per core.
 */
#ifndef COFFER_API_USE_INT_H
#define COFFER_API_USE_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "coffer/buf.h"
#include "coffer/config.h"
#include "coffer/err.h"
#include "coffer/ops.h"
#include "coffer/secret.h"

#define USE_HEADERS_MAX 32               /* headers an agent may send */
#define USE_BODY_MAX (256u * 1024u)      /* bytes of the body an agent may send */
#define USE_RESPONSE_MAX (1024u * 1024u) /* bytes of an upstream body */
#define USE_RESPONSE_HEADERS_MAX 100     /* headers of an upstream answer kept */
#define USE_RESPONSE_HEADER_BYTES 65536  /* bytes of an upstream header block */
#define USE_REDIRECTS_MAX 3              /* redirects followed, each checked against the spec */

/* One header of the agent's request (name a token, value without CR, LF or NUL). */
struct use_header {
    const char *name;
    const char *value;
    size_t value_len;
};

/* One header of the upstream's answer, its value redacted. */
struct use_resp_header {
    char *name;
    struct coffer_buf value;
};

/* How a brokered use ended; each but USE_DONE is refused with its own error code. */
enum use_outcome {
    USE_DONE = 0,         /* the upstream answered; status, headers and body are set */
    USE_DENIED,           /* the access decision refused (decision.reason) */
    USE_NO_USAGE,         /* the credential's rule has no usage spec */
    USE_DEST_REFUSED,     /* method or URL outside the spec (message says which) */
    USE_BAD_REQUEST,      /* placeholders, or a header the agent may not set */
    USE_REDIRECT_REFUSED, /* a redirect left the spec, or there were too many */
    USE_TOO_LARGE,        /* the upstream's answer passed a size limit */
    USE_UPSTREAM_FAILED,  /* no answer: connection, TLS or timeout */
    USE_REFRESH_FAILED,   /* the OAuth2 access token expired and its refresh failed (refresh) */
};

struct use_call {
    const char *org;
    const char *project;
    const char *name;
    const char *purpose; /* the bytes the agent sent, NULL if none */
    size_t purpose_len;
    const char *method; /* upper-case token */
    const char *url;
    size_t url_len;
    const struct use_header *headers;
    size_t n_headers;
    const char *body; /* NULL: none */
    size_t body_len;
    /* Results: */
    struct coffer_op_refresh refresh; /* a refresh this use set off that failed, if one did */
    enum use_outcome outcome;
    struct coffer_authz_decision decision;
    char message[256]; /* for a refusal: what was wrong, never a value */
    long status;
    struct use_resp_header *resp_headers; /* n_resp_headers of them */
    size_t n_resp_headers;
    struct coffer_buf resp_body; /* redacted */
};

/* Sets the CA file and timeouts of brokered calls from cfg, and initialises libcurl. */
enum coffer_err coffer_op_use_configure(const struct coffer_config *cfg) COFFER_MUST_USE;

/*
 * Decides, checks, calls and audits one brokered use in one transaction
 * (see the top of this file). COFFER_OK with u->outcome set (a refusal is
 * not an error); an error when the decision, the unsealing or the event
 * could not be completed (nothing is answered then but the error). Free the
 * results with use_call_cleanup.
 */
enum coffer_err coffer_op_use(struct coffer_ops *o, const struct coffer_op_meta *m,
                              struct use_call *u) COFFER_MUST_USE;

/* ---- The HTTPS client brokered calls and OAuth2 refreshes share (ops_use.c) ---- */

struct curl_slist;

/* What one request collects: the raw answer, wiped by use_answer_cleanup. */
struct use_answer {
    struct coffer_buf head; /* "name\0value\0" per header of the last response */
    size_t n_head;
    struct coffer_buf body;
    bool too_large;
};

/* Wipes and frees the answer's headers and body. */
void use_answer_cleanup(struct use_answer *a);

/* The value of the first header called name (any case) in a, or NULL; *len its length. */
const char *use_answer_header(const struct use_answer *a, const char *name, size_t *len);

/*
 * One HTTPS request (the configured CAs, timeouts, USE_RESPONSE_MAX) without
 * following redirects; body NULL for none. COFFER_OK with the status in
 * *status when an answer came; COFFER_E_LIMIT when it passed a limit;
 * COFFER_E_IO when none came (the detail names the libcurl error, never a
 * URL).
 */
enum coffer_err use_perform(const char *url, const char *method, const void *body, size_t body_len,
                            const struct curl_slist *headers, struct use_answer *a,
                            long *status) COFFER_MUST_USE;

/* Appends "name: value" to list through locked memory (libcurl keeps its own copy). */
enum coffer_err use_add_header(struct curl_slist **list, const char *name, const void *value,
                               size_t len) COFFER_MUST_USE;

/* Wipes the strings of a header list (libcurl's own copies) and frees it; *list NULL. */
void use_free_headers(struct curl_slist **list);

/* Appends len bytes to the secret s being built at *at; COFFER_E_LIMIT past its size. */
enum coffer_err use_secret_put(struct coffer_secret *s, size_t *at, const void *p,
                               size_t len) COFFER_MUST_USE;

/* The refresh margin of OAuth2 access tokens, in microseconds (broker.oauth2_refresh_margin_s). */
int64_t use_refresh_margin_us(void);

/* The time one call may take in all, in milliseconds (broker.timeout_ms). */
long use_total_ms(void);

/* Wipes and frees the results of u. */
void use_call_cleanup(struct use_call *u);

/* The handler of POST .../credentials/{name}/use (routes_use.c). */
struct api_req;
void api_use(struct api_req *r);

#endif

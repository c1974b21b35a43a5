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

#include "coffer/buf.h"
#include "coffer/config.h"
#include "coffer/err.h"
#include "coffer/ops.h"

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

/* Wipes and frees the results of u. */
void use_call_cleanup(struct use_call *u);

/* The handler of POST .../credentials/{name}/use (routes_use.c). */
struct api_req;
void api_use(struct api_req *r);

#endif

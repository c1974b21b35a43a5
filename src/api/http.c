/* SPDX-License-Identifier: Apache-2.0 */
/*
 * HTTPS for one worker: TLS contexts, connections, limits, the request id,
 * authentication (a client certificate, a bearer token or both), and
 * dispatch through the route table of routes.c. Every answer that is not a
 * handler's success is a JSON error of error.c's shape.
 *
 * This file must never log a request or response body, a query string or a
 * header value: it logs method, route, status and request id only.
 */
#include "api/api_int.h"
#include "api/use_int.h"

#include "coffer/log.h"
#include "coffer/mem.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/util.h>
#include <jansson.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#define LOG_MOD "api"

/* The most accesses one transaction commits together. */
#define BATCH_MAX COFFER_OP_BATCH_MAX
/* The most request bytes a queue holds (credential values arrive in puts of up to 320 KiB). */
#define QUEUE_BYTES_MAX (2u * 1024u * 1024u)

struct coffer_api {
    struct event_base *base;
    struct evhttp *http;
    struct evhttp_bound_socket *bound;
    SSL_CTX *ctx;
    struct coffer_ops *ops;
    char trust_domain[COFFER_TRUST_DOMAIN_MAX + 1];
    size_t max_body;
    /*
     * Accesses and puts that arrived in this turn of the event loop, waiting
     * to be committed together: one flush of the database log for all of
     * them instead of one each. queued_bytes counts their request bodies.
     */
    struct api_req *queue[BATCH_MAX];
    size_t n_queued;
    size_t queued_bytes;
    struct event *flush_ev;
    unsigned max_connections;
    struct timeval request_timeout; /* limits.request_timeout_ms */
    struct timeval idle_timeout;    /* limits.idle_timeout_ms */
    struct coffer_api_stats own;    /* when no shared slots are given */
    struct coffer_api_stats_view stats;
};

/* This worker's counters. */
static struct coffer_api_stats *stats_of(struct coffer_api *a)
{
    return &a->stats.slots[a->stats.self];
}

/*
 * Each TLS connection carries one of these as SSL ex_data; OpenSSL frees it
 * with the connection's SSL object, which is how a closed connection is
 * counted out (libevent has no close hook for server connections).
 */
struct conn_mark {
    struct coffer_api *api;
    bool over_limit; /* opened past max_connections: answer 503 and close */
    /*
     * The request deadline: armed when the connection opens (the first
     * request in request_timeout) and after each answer (the next one in
     * idle_timeout), disarmed when a whole request has arrived. libevent's own
     * timeout only measures silence, so a client that sends a byte now and
     * then (during the TLS handshake or the request) would hold the
     * connection for ever; this bounds the whole request instead.
     */
    struct event *deadline;
    struct bufferevent *bev;
};

static int conn_index = -1;

static void conn_mark_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
                           void *argp)
{
    struct conn_mark *m = ptr;

    (void)parent;
    (void)ad;
    (void)idx;
    (void)argl;
    (void)argp;
    if (m != NULL) {
        stats_of(m->api)->connections_open--;
        if (m->deadline != NULL) {
            event_free(m->deadline);
        }
        coffer_free(m);
    }
}

void coffer_api_json_init(void)
{
    json_set_alloc_funcs(coffer_wipe_malloc, coffer_wipe_free);
}

/* The first OpenSSL error as text, for a configuration detail. */
static const char *ssl_reason(void)
{
    unsigned long e = ERR_get_error();
    const char *r = e != 0 ? ERR_reason_error_string(e) : NULL;

    ERR_clear_error();
    return r != NULL ? r : "unknown OpenSSL error";
}

static enum coffer_err make_ctx(const struct coffer_config *cfg, SSL_CTX **out)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    STACK_OF(X509_NAME) *names = NULL;
    static const unsigned char sid[] = "cofferd";
    enum coffer_err r = COFFER_OK;

    *out = NULL;
    if (ctx == NULL) {
        return coffer_err_set(COFFER_E_NOMEM, "creating a TLS context");
    }
    if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1) {
        r = coffer_err_set(COFFER_E_CONFIG, "requiring TLS 1.2: %s", ssl_reason());
        goto out;
    }
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
                                 SSL_OP_NO_COMPRESSION);
    /*
     * An idle connection gives its record buffers back (wiped by the
     * allocator), rather than keeping the last decrypted request, which
     * may carry values, until the next one overwrites it.
     */
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    if (SSL_CTX_use_certificate_chain_file(ctx, cfg->tls_cert) != 1) {
        r = coffer_err_set(COFFER_E_CONFIG, "tls.cert %s: %s", cfg->tls_cert, ssl_reason());
        goto out;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, cfg->tls_key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        r = coffer_err_set(COFFER_E_CONFIG, "tls.key %s: %s", cfg->tls_key, ssl_reason());
        goto out;
    }
    if (SSL_CTX_load_verify_locations(ctx, cfg->tls_client_ca, NULL) != 1 ||
        (names = SSL_load_client_CA_file(cfg->tls_client_ca)) == NULL) {
        r = coffer_err_set(COFFER_E_CONFIG, "tls.client_ca %s: %s", cfg->tls_client_ca,
                           ssl_reason());
        goto out;
    }
    SSL_CTX_set_client_CA_list(ctx, names);
    /*
     * Ask every client for a certificate and verify what it sends, but let
     * the handshake finish without one: the request is then refused with
     * 401, a clearer answer than a failed handshake.
     */
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_verify_depth(ctx, 4);
    if (SSL_CTX_set_session_id_context(ctx, sid, sizeof(sid) - 1) != 1) {
        r = coffer_err_set(COFFER_E_CONFIG, "TLS session context: %s", ssl_reason());
        goto out;
    }
    *out = ctx;
    ctx = NULL;
out:
    SSL_CTX_free(ctx);
    return r;
}

/*
 * A connection that has not sent a whole request in time: shutting its
 * socket down makes libevent read an end of file, and libevent then closes
 * and frees the connection the way it does for any client that goes away.
 */
static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    struct conn_mark *m = arg;
    evutil_socket_t sock = m->bev != NULL ? bufferevent_getfd(m->bev) : -1;

    (void)fd;
    (void)what;
    if (sock >= 0) {
        coffer_debug(LOG_MOD, "closing a connection that sent no whole request within %ld ms",
                     (long)m->api->request_timeout.tv_sec * 1000 +
                         (long)m->api->request_timeout.tv_usec / 1000);
        (void)shutdown(sock, SHUT_RDWR);
    }
}

static struct bufferevent *new_connection(struct event_base *base, void *arg)
{
    struct coffer_api *a = arg;
    SSL *ssl = SSL_new(a->ctx);
    struct conn_mark *m = coffer_calloc(1, sizeof(*m));
    struct event *deadline = evtimer_new(base, on_deadline, m);
    struct bufferevent *bev;

    if (ssl == NULL || m == NULL || deadline == NULL || SSL_set_ex_data(ssl, conn_index, m) != 1) {
        if (deadline != NULL) {
            event_free(deadline);
        }
        coffer_free(m);
        SSL_free(ssl);
        return NULL;
    }
    m->api = a;
    m->deadline = deadline;
    stats_of(a)->connections_open++;
    if (stats_of(a)->connections_open > a->max_connections) {
        m->over_limit = true;
        stats_of(a)->connections_refused++;
    }
    bev = bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                         BEV_OPT_CLOSE_ON_FREE);
    if (bev != NULL) {
        m->bev = bev;
        (void)evtimer_add(m->deadline, &a->request_timeout);
    }
    return bev;
}

/* "address:port" of the peer. */
static void peer_of(struct evhttp_request *req, char *out, size_t cap)
{
    struct evhttp_connection *conn = evhttp_request_get_connection(req);
    char *addr = NULL;
    ev_uint16_t port = 0;

    out[0] = '\0';
    if (conn != NULL) {
        evhttp_connection_get_peer(conn, &addr, &port);
        if (addr != NULL) {
            (void)snprintf(out, cap, "%s:%u", addr, (unsigned)port);
        }
    }
}

/* ---- Authentication ------------------------------------------------------------------
 * A request is authenticated by a verified client certificate, by a bearer
 * token Coffer issued ("Authorization: Bearer cft_..."), or by both when
 * they name the same principal. The header's value is a secret: it is
 * copied into locked memory, wiped in libevent's header list at once, and
 * never logged or audited; a failure's event says only why, naming a
 * token by its id.
 */

#define AUTH_WHY_MAX 160

static void set_why(char why[AUTH_WHY_MAX], const char *text)
{
    (void)snprintf(why, AUTH_WHY_MAX, "%s", text);
}

/* The Authorization headers of the request: how many, and the first. */
static size_t authorization_headers(struct evhttp_request *req, struct evkeyval **first)
{
    struct evkeyvalq *headers = evhttp_request_get_input_headers(req);
    size_t n = 0;

    *first = NULL;
    for (struct evkeyval *kv = headers != NULL ? headers->tqh_first : NULL; kv != NULL;
         kv = kv->next.tqe_next) {
        if (evutil_ascii_strcasecmp(kv->key, "Authorization") == 0) {
            if (n == 0) {
                *first = kv;
            }
            n++;
        }
    }
    return n;
}

/* Wipes every Authorization header value, so that nothing later can read or log one. */
static void wipe_authorization(struct evhttp_request *req)
{
    struct evkeyvalq *headers = evhttp_request_get_input_headers(req);

    for (struct evkeyval *kv = headers != NULL ? headers->tqh_first : NULL; kv != NULL;
         kv = kv->next.tqe_next) {
        if (evutil_ascii_strcasecmp(kv->key, "Authorization") == 0 && kv->value != NULL) {
            OPENSSL_cleanse(kv->value, strlen(kv->value));
        }
    }
}

/*
 * The principal of the client certificate, if the client sent one:
 * *present says whether it did. A certificate that is sent must be
 * verified and name a principal of the trust domain, whatever else the
 * request carries.
 */
static enum coffer_err cert_principal(struct coffer_api *a, struct evhttp_request *req,
                                      bool *present, struct coffer_principal *who,
                                      char why[AUTH_WHY_MAX])
{
    struct evhttp_connection *conn = evhttp_request_get_connection(req);
    struct bufferevent *bev = conn != NULL ? evhttp_connection_get_bufferevent(conn) : NULL;
    SSL *ssl = bev != NULL ? bufferevent_openssl_get_ssl(bev) : NULL;
    X509 *cert;
    enum coffer_err r;

    *present = false;
    if (ssl == NULL) {
        set_why(why, "not a TLS connection");
        return coffer_err_set(COFFER_E_INVALID, "not a TLS connection");
    }
    cert = SSL_get1_peer_certificate(ssl);
    if (cert == NULL) {
        return COFFER_OK;
    }
    *present = true;
    if (SSL_get_verify_result(ssl) != X509_V_OK) {
        X509_free(cert);
        set_why(why, "client certificate not verified");
        return coffer_err_set(COFFER_E_INVALID, "client certificate not verified");
    }
    r = coffer_spiffe_from_cert(cert, a->trust_domain, who);
    X509_free(cert);
    if (r != COFFER_OK) {
        set_why(why, "client certificate names no principal of the trust domain");
    }
    return r;
}

/* A bearer token that could not be checked (token or database trouble). */
static void token_trouble(const char *request, enum coffer_err r, char why[AUTH_WHY_MAX])
{
    coffer_warn(LOG_MOD, "request %s: a bearer token could not be checked: %s: %s", request,
                coffer_err_str(r), coffer_err_detail());
    set_why(why, "bearer token could not be checked");
}

/*
 * What a looked-up bearer token gives: its principal (and its id, for the
 * request's log line) when it is valid, else COFFER_E_INVALID with why.
 */
static enum coffer_err token_judged(const struct coffer_op_token_auth *res,
                                    struct coffer_principal *who,
                                    char token_id[COFFER_UUID_STR_LEN], char why[AUTH_WHY_MAX])
{
    char id[COFFER_UUID_STR_LEN];

    coffer_uuid_format(&res->id, id);
    switch (res->state) {
    case COFFER_TOKEN_VALID:
        *who = res->who;
        coffer_memcpy(token_id, id, sizeof(id));
        return COFFER_OK;
    case COFFER_TOKEN_EXPIRED:
        (void)snprintf(why, AUTH_WHY_MAX, "bearer token %s expired", id);
        break;
    case COFFER_TOKEN_REVOKED:
        (void)snprintf(why, AUTH_WHY_MAX, "bearer token %s revoked", id);
        break;
    case COFFER_TOKEN_UNKNOWN:
    default:
        set_why(why, "unknown bearer token");
        break;
    }
    return coffer_err_set(COFFER_E_INVALID, "bearer token refused");
}

/*
 * The first half of checking the bearer token in the header value kv
 * (which is wiped before return): its format, and its digest computed in
 * the token, into c.
 */
static enum coffer_err token_read(struct coffer_api *a, const char *request, struct evkeyval *kv,
                                  struct coffer_op_token_check *c, char why[AUTH_WHY_MAX])
{
    struct coffer_secret *token = NULL;
    struct coffer_secret_view v;
    const char *start = NULL;
    enum coffer_err r;

    if (kv->value == NULL || !coffer_token_from_header(kv->value, strlen(kv->value), &start)) {
        set_why(why, "malformed Authorization header");
        return coffer_err_set(COFFER_E_INVALID, "malformed Authorization header");
    }
    r = coffer_secret_from(start, COFFER_TOKEN_LEN, &token);
    OPENSSL_cleanse(kv->value, strlen(kv->value));
    if (r == COFFER_OK) {
        v = coffer_secret_view(token);
        r = coffer_op_token_check(a->ops, (const char *)v.data, v.len, c);
        coffer_secret_free(&token);
    }
    if (r != COFFER_OK) {
        token_trouble(request, r, why);
    }
    return r;
}

/* The principal of the bearer token in the header value kv (which is wiped before return). */
static enum coffer_err token_principal(struct coffer_api *a, const char *request,
                                       struct evkeyval *kv, struct coffer_principal *who,
                                       char token_id[COFFER_UUID_STR_LEN], char why[AUTH_WHY_MAX])
{
    struct coffer_op_token_check c;
    enum coffer_err r;

    if ((r = token_read(a, request, kv, &c, why)) != COFFER_OK) {
        return r;
    }
    if ((r = coffer_op_token_check_many(a->ops, &c, 1)) != COFFER_OK) {
        token_trouble(request, r, why);
        return r;
    }
    return token_judged(&c.auth, who, token_id, why);
}

static bool same_principal(const struct coffer_principal *x, const struct coffer_principal *y)
{
    return x->kind == y->kind && strcmp(x->org, y->org) == 0 &&
           strcmp(x->agent_type, y->agent_type) == 0 && strcmp(x->instance, y->instance) == 0 &&
           strcmp(x->admin, y->admin) == 0;
}

/*
 * The request's principal. A certificate alone, or a token alone, names
 * it; with both, they must name the same principal (the certificate's,
 * which carries the trust domain, is kept). Anything else is
 * COFFER_E_INVALID (or the error that kept a token from being checked)
 * with why saying which, for the audit event only.
 */
static enum coffer_err authenticate(struct coffer_api *a, struct api_req *r, char why[AUTH_WHY_MAX])
{
    struct coffer_principal by_cert;
    struct coffer_principal by_token;
    struct evkeyval *header = NULL;
    bool cert = false;
    size_t n_headers = authorization_headers(r->req, &header);
    enum coffer_err e;

    memset(&by_cert, 0, sizeof(by_cert));
    memset(&by_token, 0, sizeof(by_token));
    why[0] = '\0';
    if ((e = cert_principal(a, r->req, &cert, &by_cert, why)) != COFFER_OK) {
        goto out;
    }
    if (n_headers == 0) {
        if (!cert) {
            set_why(why, "no client certificate and no bearer token");
            e = coffer_err_set(COFFER_E_INVALID, "no credentials");
            goto out;
        }
        r->who = by_cert;
        goto out;
    }
    if (n_headers > 1) {
        set_why(why, "more than one Authorization header");
        e = coffer_err_set(COFFER_E_INVALID, "more than one Authorization header");
        goto out;
    }
    if ((e = token_principal(a, r->id, header, &by_token, r->token_id, why)) != COFFER_OK) {
        goto out;
    }
    if (cert && !same_principal(&by_cert, &by_token)) {
        set_why(why, "the client certificate and the bearer token name different principals");
        e = coffer_err_set(COFFER_E_INVALID, "certificate and token disagree");
        goto out;
    }
    r->who = cert ? by_cert : by_token;
out:
    wipe_authorization(r->req);
    if (e != COFFER_OK) {
        memset(&r->who, 0, sizeof(r->who));
    }
    return e;
}

/* Records why a request was not authenticated; the request fails whether or not this works. */
static void audit_auth_failure(struct api_req *r, const char *why)
{
    struct coffer_audit_event e;
    int64_t id = 0;

    memset(&e, 0, sizeof(e));
    e.action = COFFER_AUDIT_AUTH_FAILURE;
    e.allowed = false;
    e.reason = "unauthenticated";
    e.request_id = r->id;
    e.client_addr = r->client_addr[0] != '\0' ? r->client_addr : NULL;
    e.detail = why != NULL && why[0] != '\0' ? why : NULL;
    if (coffer_store_audit_insert(r->api_ops->st, &e, &id) != COFFER_OK) {
        coffer_warn(LOG_MOD, "request %s: could not record an authentication failure: %s", r->id,
                    coffer_err_detail());
    }
}

static void request_id(char out[API_REQUEST_ID_LEN + 1])
{
    unsigned char b[API_REQUEST_ID_LEN / 2];

    if (RAND_bytes(b, sizeof(b)) != 1) {
        /* The id only names the request; a counter is an acceptable fallback. */
        static unsigned long n;

        (void)snprintf(out, API_REQUEST_ID_LEN + 1, "%032lx", ++n);
        return;
    }
    coffer_hex(b, sizeof(b), out);
}

static const char *method_name(enum evhttp_cmd_type m)
{
    switch (m) {
    case EVHTTP_REQ_GET:
        return "GET";
    case EVHTTP_REQ_POST:
        return "POST";
    case EVHTTP_REQ_PUT:
        return "PUT";
    case EVHTTP_REQ_DELETE:
        return "DELETE";
    case EVHTTP_REQ_HEAD:
        return "HEAD";
    default:
        return "OTHER";
    }
}

/* Sends out (taking it) with status, as JSON, and logs one line without any body. */
static void send_json(struct api_req *r, int status, json_t *out)
{
    struct evbuffer *buf = evbuffer_new();
    struct evkeyvalq *h = evhttp_request_get_output_headers(r->req);
    char *text = NULL;

    if (out != NULL) {
        text = json_dumps(out, JSON_COMPACT);
        json_decref(out);
    }
    evhttp_add_header(h, "Content-Type", "application/json");
    evhttp_add_header(h, "Cache-Control", "no-store");
    evhttp_add_header(h, "X-Request-Id", r->id);
    if (buf == NULL || text == NULL || evbuffer_add(buf, text, strlen(text)) != 0) {
        status = 500;
        if (buf != NULL) {
            evbuffer_drain(buf, evbuffer_get_length(buf));
            (void)evbuffer_add_printf(buf, "{\"error\":\"internal\",\"request_id\":\"%s\"}", r->id);
        }
    }
    if (r->api != NULL) {
        struct coffer_api_stats *st = stats_of(r->api);

        st->requests++;
        if (status >= 500) {
            st->status_5xx++;
        } else if (status >= 400) {
            st->status_4xx++;
        } else {
            st->status_2xx++;
        }
    }
    evhttp_send_reply(r->req, status, NULL, buf);
    coffer_info(LOG_MOD, "%s %s -> %d (request %s%s%s)", method_name(r->method),
                r->route != NULL ? r->route->pattern : "-", status, r->id,
                r->token_id[0] != '\0' ? ", bearer token " : "", r->token_id);
    if (buf != NULL) {
        evbuffer_free(buf);
    }
    if (text != NULL) {
        coffer_wipe_free(text);
    }
}

void api_reply(struct api_req *r, int status, json_t *body)
{
    send_json(r, status, body);
}

void api_error(struct api_req *r, int status, const char *code, const char *message)
{
    json_t *o =
        json_pack("{s:s, s:s, s:s}", "error", code, "message", message, "request_id", r->id);

    send_json(r, status, o);
}

/* Parses the request body as one JSON object (at most the route's limit). */
static bool parse_body(struct api_req *r, size_t limit)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(r->req);
    size_t len = in != NULL ? evbuffer_get_length(in) : 0;
    json_error_t err;
    unsigned char *p;

    r->body = NULL;
    if (len == 0) {
        api_error(r, 400, "invalid_request", "a JSON object body is required");
        return false;
    }
    if (len > limit) {
        api_error(r, 413, "body_too_large", "the request body is over this route's limit");
        return false;
    }
    p = evbuffer_pullup(in, (ev_ssize_t)len);
    if (p == NULL) {
        api_error(r, 500, "internal", "could not read the body");
        return false;
    }
    r->body = json_loadb((const char *)p, len, JSON_REJECT_DUPLICATES, &err);
    r->body_len = len;
    /* The body may hold credential values: wipe libevent's copy now. */
    OPENSSL_cleanse(p, len);
    evbuffer_drain(in, len);
    if (r->body == NULL) {
        char msg[256];

        (void)snprintf(msg, sizeof(msg), "malformed JSON at line %d, column %d", err.line,
                       err.column);
        api_error(r, 400, "invalid_json", msg);
        return false;
    }
    if (!json_is_object(r->body)) {
        api_error(r, 400, "invalid_request", "the body must be a JSON object");
        json_decref(r->body);
        r->body = NULL;
        return false;
    }
    return true;
}

/* Answers 401 to a request that is not authenticated, after recording why. */
static void refuse_unauthenticated(struct api_req *r, const char *why)
{
    coffer_err_clear();
    audit_auth_failure(r, why);
    stats_of(r->api)->unauthenticated++;
    api_error(r, 401, "unauthenticated", "unauthenticated");
}

/* Marks an authenticated request; false (answered 403) if its principal may not use the route. */
static bool role_fits(struct api_req *r)
{
    r->authenticated = true;
    if ((r->route->role == API_ROLE_AGENT && r->who.kind != COFFER_PRINCIPAL_AGENT) ||
        (r->route->role == API_ROLE_ADMIN && r->who.kind != COFFER_PRINCIPAL_ADMIN)) {
        api_error(r, 403, "permission_denied", "permission denied");
        return false;
    }
    return true;
}

static bool peer_certificate_sent(struct evhttp_request *req)
{
    struct evhttp_connection *conn = evhttp_request_get_connection(req);
    struct bufferevent *bev = conn != NULL ? evhttp_connection_get_bufferevent(conn) : NULL;
    SSL *ssl = bev != NULL ? bufferevent_openssl_get_ssl(bev) : NULL;

    return ssl == NULL || SSL_get0_peer_certificate(ssl) != NULL;
}

/*
 * A bearer token alone (no client certificate) on a batched route is read
 * now, its format checked and its digest computed in the token, and looked
 * up with the batch, which finds every queued token with one query: 1, the
 * request goes to the queue. 0: it is authenticated at once instead (a
 * certificate, no token or several). -1: refused, with why.
 */
static int token_deferred(struct coffer_api *a, struct api_req *r, char why[AUTH_WHY_MAX])
{
    struct evkeyval *header = NULL;
    enum coffer_err e;

    if (r->route->batch == API_ALONE || authorization_headers(r->req, &header) != 1 ||
        peer_certificate_sent(r->req)) {
        return 0;
    }
    e = token_read(a, r->id, header, &r->token, why);
    wipe_authorization(r->req);
    if (e != COFFER_OK) {
        return -1;
    }
    r->token_pending = true;
    return 1;
}

/* ---- Batched accesses ------------------------------------------------------------ */

static void on_close(struct evhttp_connection *conn, void *arg);

/* Reads a queued request's body as its batch needs it; false when it was answered instead. */
static bool queued_prepare(struct api_req *q)
{
    return q->route->batch == API_BATCH_PUT ? api_put_prepare(q) : api_access_prepare(q, &q->acc);
}

/* Frees a queued request that has left the queue (answered, or its connection gone). */
static void drop_queued(struct api_req *q)
{
    coffer_keyset_free(&q->put_keys);
    coffer_keyset_free(&q->acc.keys);
    coffer_free(q->acc.expired_keys);
    if (q->body != NULL) {
        json_decref(q->body);
    }
    coffer_wipe(&q->token, sizeof(q->token));
    coffer_free(q);
}

/*
 * Looks up the bearer tokens of the queued requests that wait for it, with
 * one query, and takes each such request as far as an authenticated one
 * gets before it is queued (the role, the body, the access's fields). The
 * ones refused are answered and dropped; returns how many of batch remain.
 */
static size_t settle_tokens(struct coffer_api *a, struct api_req **batch, size_t n)
{
    struct coffer_op_token_check checks[BATCH_MAX];
    size_t nc = 0;
    size_t kept = 0;
    enum coffer_err r = COFFER_OK;

    for (size_t i = 0; i < n; i++) {
        if (batch[i]->token_pending) {
            checks[nc++] = batch[i]->token;
        }
    }
    if (nc > 0) {
        r = coffer_op_token_check_many(a->ops, checks, nc);
    }
    nc = 0;
    for (size_t i = 0; i < n; i++) {
        struct api_req *q = batch[i];
        char why[AUTH_WHY_MAX];

        if (!q->token_pending) {
            batch[kept++] = q;
            continue;
        }
        q->token_pending = false;
        if (q->dead) {
            drop_queued(q);
            nc++;
            continue;
        }
        /* Answered now or with the batch: either way no longer when its connection closes. */
        evhttp_connection_set_closecb(evhttp_request_get_connection(q->req), NULL, NULL);
        if (r != COFFER_OK) {
            token_trouble(q->id, r, why);
        }
        if (r != COFFER_OK ||
            token_judged(&checks[nc].auth, &q->who, q->token_id, why) != COFFER_OK) {
            refuse_unauthenticated(q, why);
        } else if (role_fits(q) &&
                   (q->route->body_limit == 0 || parse_body(q, q->route->body_limit)) &&
                   queued_prepare(q)) {
            evhttp_connection_set_closecb(evhttp_request_get_connection(q->req), on_close, a);
            batch[kept++] = q;
            nc++;
            continue;
        }
        nc++;
        drop_queued(q);
    }
    coffer_wipe(checks, sizeof(checks));
    return kept;
}

/*
 * Runs the queued accesses as one batch and answers them. The batch's
 * events are inserted by one statement outside any transaction, so it
 * returns only after their commit: an access's values go out only after
 * its audit event is durable. If anything fails, every access of the batch
 * is answered with the error and no values (fail closed), and the clients
 * may retry.
 */
static void flush_accesses(struct coffer_api *a, struct api_req **batch, size_t n)
{
    struct coffer_op_meta metas[BATCH_MAX] = {{0}};
    struct coffer_op_access accs[BATCH_MAX];
    enum coffer_err r;

    for (size_t i = 0; i < n; i++) {
        metas[i] = api_meta(batch[i]);
        accs[i] = batch[i]->acc;
    }
    r = coffer_op_access_batch(a->ops, metas, accs, n);
    for (size_t i = 0; i < n; i++) {
        batch[i]->acc = accs[i];
    }
    stats_of(a)->batches += r == COFFER_OK ? 1 : 0;
    for (size_t i = 0; i < n; i++) {
        struct api_req *q = batch[i];
        enum coffer_err e = r;

        if (e == COFFER_OK && q->acc.refresh_due) {
            /* Its OAuth2 access token needs a refresh first: refreshed and decided alone. */
            struct coffer_op_meta m = api_meta(q);

            e = coffer_op_access(a->ops, &m, &q->acc);
        }
        if (e == COFFER_OK) {
            if (q->acc.decision.allow) {
                stats_of(a)->accesses_granted++;
            } else {
                stats_of(a)->accesses_denied++;
            }
        }
        api_access_answer(q, &q->acc, e);
    }
}

/*
 * Writes the queued puts in one transaction and answers them: a put leaves
 * only after the commit that holds it and its event. The puts the batch
 * does not take (see coffer_op_put_many) are written and answered one by
 * one, each with its own reason.
 */
static void flush_puts(struct coffer_api *a, struct api_req **batch, size_t n)
{
    struct coffer_op_meta metas[BATCH_MAX] = {{0}};
    struct coffer_op_put puts[BATCH_MAX];
    bool taken[BATCH_MAX] = {false};
    bool counted = false;
    enum coffer_err r;

    for (size_t i = 0; i < n; i++) {
        metas[i] = api_meta(batch[i]);
        puts[i] = batch[i]->put;
    }
    r = coffer_op_put_many(a->ops, metas, puts, n, taken);
    /* The batch's puts first, all with the commit's answer; then the others, each alone. */
    for (size_t i = 0; i < n; i++) {
        if (taken[i]) {
            if (r == COFFER_OK) {
                stats_of(a)->puts_batched++;
                stats_of(a)->put_batches += counted ? 0 : 1;
                counted = true;
            }
            coffer_keyset_free(&batch[i]->put_keys);
            api_put_answer(batch[i], &puts[i], r);
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (!taken[i]) {
            enum coffer_err e = coffer_op_put(a->ops, &metas[i], &puts[i]);

            coffer_keyset_free(&batch[i]->put_keys);
            api_put_answer(batch[i], &puts[i], e);
        }
    }
}

/* Runs every queued request, accesses and puts each as one batch, then answers them. */
static void flush_queue(struct coffer_api *a)
{
    struct api_req *batch[BATCH_MAX];
    struct api_req *accs[BATCH_MAX];
    struct api_req *puts[BATCH_MAX];
    size_t n = a->n_queued;
    size_t n_accs = 0;
    size_t n_puts = 0;

    if (n == 0) {
        return;
    }
    for (size_t i = 0; i < n; i++) {
        batch[i] = a->queue[i];
    }
    a->n_queued = 0;
    a->queued_bytes = 0;
    n = settle_tokens(a, batch, n);
    for (size_t i = 0; i < n; i++) {
        struct api_req *q = batch[i];

        if (q->dead) {
            continue;
        }
        /* Answered with the batch: no longer when its connection closes. */
        evhttp_connection_set_closecb(evhttp_request_get_connection(q->req), NULL, NULL);
        if (q->route->batch == API_BATCH_PUT) {
            puts[n_puts++] = q;
        } else {
            accs[n_accs++] = q;
        }
    }
    if (n_accs > 0) {
        flush_accesses(a, accs, n_accs);
    }
    if (n_puts > 0) {
        flush_puts(a, puts, n_puts);
    }
    for (size_t i = 0; i < n; i++) {
        drop_queued(batch[i]);
    }
}

static void on_flush(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    flush_queue(arg);
}

/* A connection closed: its queued request must not be answered (libevent frees it). */
static void on_close(struct evhttp_connection *conn, void *arg)
{
    struct coffer_api *a = arg;

    for (size_t i = 0; i < a->n_queued; i++) {
        if (evhttp_request_get_connection(a->queue[i]->req) == conn) {
            a->queue[i]->dead = true;
        }
    }
}

/*
 * Queues an access or a put (r is copied; its body moves with it). The
 * batch runs once the loop has handled everything else that was ready in
 * this turn, or at once when the queue is full, in requests or in bytes.
 */
static void enqueue(struct coffer_api *a, struct api_req *r)
{
    struct api_req *q = coffer_calloc(1, sizeof(*q));
    /* Its body, read already or still waiting in the input buffer (a token to look up first). */
    size_t bytes = r->body_len + evbuffer_get_length(evhttp_request_get_input_buffer(r->req));

    if (q == NULL) {
        coffer_wipe(&r->token, sizeof(r->token));
        api_error(r, 503, "overloaded", "out of memory; try again");
        return;
    }
    *q = *r;
    r->body = NULL;
    coffer_wipe(&r->token, sizeof(r->token));
    if (!q->token_pending && !queued_prepare(q)) {
        drop_queued(q);
        return;
    }
    if (a->n_queued == BATCH_MAX ||
        (a->n_queued > 0 && a->queued_bytes + bytes > QUEUE_BYTES_MAX)) {
        flush_queue(a);
    }
    evhttp_connection_set_closecb(evhttp_request_get_connection(q->req), on_close, a);
    a->queue[a->n_queued++] = q;
    a->queued_bytes += bytes;
    event_active(a->flush_ev, EV_TIMEOUT, 0);
}

/* The mark of the connection req came on, or NULL. */
static struct conn_mark *mark_of(struct evhttp_request *req)
{
    struct evhttp_connection *conn = evhttp_request_get_connection(req);
    struct bufferevent *bev = conn != NULL ? evhttp_connection_get_bufferevent(conn) : NULL;
    SSL *ssl = bev != NULL ? bufferevent_openssl_get_ssl(bev) : NULL;

    return ssl != NULL ? SSL_get_ex_data(ssl, conn_index) : NULL;
}

/* Whether the request came on a connection opened past the limit. */
static bool over_limit(struct evhttp_request *req)
{
    struct conn_mark *m = mark_of(req);

    return m != NULL && m->over_limit;
}

/* An answer went out: a kept-alive connection may wait idle_timeout for its next whole request. */
static void on_answered(struct evhttp_request *req, void *arg)
{
    struct conn_mark *m = mark_of(req);

    (void)arg;
    if (m != NULL && m->deadline != NULL) {
        (void)evtimer_add(m->deadline, &m->api->idle_timeout);
    }
}

void api_metrics(struct api_req *r)
{
    struct coffer_api_stats sum = {0};
    struct evbuffer *buf = evbuffer_new();
    struct coffer_api *a = r->api;

    for (unsigned i = 0; i < a->stats.n; i++) {
        const struct coffer_api_stats *s = &a->stats.slots[i];

        sum.requests += s->requests;
        sum.status_2xx += s->status_2xx;
        sum.status_4xx += s->status_4xx;
        sum.status_5xx += s->status_5xx;
        sum.accesses_granted += s->accesses_granted;
        sum.accesses_denied += s->accesses_denied;
        sum.batches += s->batches;
        sum.put_batches += s->put_batches;
        sum.puts_batched += s->puts_batched;
        sum.unauthenticated += s->unauthenticated;
        sum.connections_refused += s->connections_refused;
        sum.connections_open += s->connections_open;
    }
    if (buf == NULL ||
        evbuffer_add_printf(
            buf,
            "# HELP coffer_http_requests_total HTTP requests answered, by status class.\n"
            "# TYPE coffer_http_requests_total counter\n"
            "coffer_http_requests_total{class=\"2xx\"} %llu\n"
            "coffer_http_requests_total{class=\"4xx\"} %llu\n"
            "coffer_http_requests_total{class=\"5xx\"} %llu\n"
            "# HELP coffer_accesses_total Credential accesses decided, by outcome.\n"
            "# TYPE coffer_accesses_total counter\n"
            "coffer_accesses_total{outcome=\"granted\"} %llu\n"
            "coffer_accesses_total{outcome=\"denied\"} %llu\n"
            "# HELP coffer_access_batches_total Batches of accesses audited with one commit.\n"
            "# TYPE coffer_access_batches_total counter\n"
            "coffer_access_batches_total %llu\n"
            "# HELP coffer_put_batches_total Transactions of credential writes committed "
            "together.\n"
            "# TYPE coffer_put_batches_total counter\n"
            "coffer_put_batches_total %llu\n"
            "# HELP coffer_puts_batched_total Credential writes committed in those "
            "transactions.\n"
            "# TYPE coffer_puts_batched_total counter\n"
            "coffer_puts_batched_total %llu\n"
            "# HELP coffer_unauthenticated_total Requests refused as unauthenticated.\n"
            "# TYPE coffer_unauthenticated_total counter\n"
            "coffer_unauthenticated_total %llu\n"
            "# HELP coffer_connections_refused_total Connections opened past the limit.\n"
            "# TYPE coffer_connections_refused_total counter\n"
            "coffer_connections_refused_total %llu\n"
            "# HELP coffer_connections_open Connections open now.\n"
            "# TYPE coffer_connections_open gauge\n"
            "coffer_connections_open %llu\n"
            "# HELP coffer_workers Worker processes.\n"
            "# TYPE coffer_workers gauge\n"
            "coffer_workers %u\n",
            sum.status_2xx, sum.status_4xx, sum.status_5xx, sum.accesses_granted,
            sum.accesses_denied, sum.batches, sum.put_batches, sum.puts_batched,
            sum.unauthenticated, sum.connections_refused, sum.connections_open, a->stats.n) < 0) {
        if (buf != NULL) {
            evbuffer_free(buf);
        }
        api_error(r, 500, "internal", "internal error");
        return;
    }
    stats_of(a)->requests++;
    stats_of(a)->status_2xx++;
    evhttp_add_header(evhttp_request_get_output_headers(r->req), "Content-Type",
                      "text/plain; version=0.0.4");
    evhttp_send_reply(r->req, 200, NULL, buf);
    evbuffer_free(buf);
}

static void handle(struct evhttp_request *req, void *arg)
{
    struct coffer_api *a = arg;
    struct api_req r;
    const char *uri = evhttp_request_get_uri(req);
    struct conn_mark *mark;
    enum api_match m;

    memset(&r, 0, sizeof(r));
    r.req = req;
    r.api = a;
    r.api_ops = a->ops;
    r.method = evhttp_request_get_command(req);
    request_id(r.id);
    peer_of(req, r.client_addr, sizeof(r.client_addr));
    /* The whole request is here: however long answering takes, the deadline no longer applies. */
    mark = mark_of(req);
    if (mark != NULL && mark->deadline != NULL) {
        (void)evtimer_del(mark->deadline);
    }
    evhttp_request_set_on_complete_cb(req, on_answered, NULL);
    if (over_limit(req)) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Connection", "close");
        api_error(&r, 503, "too_many_connections", "this worker is at its connection limit");
        return;
    }
    m = api_route_match(uri, r.method, &r);
    if (m == API_NO_PATH) {
        api_error(&r, 404, "not_found", "no such route");
        return;
    }
    if (m == API_BAD_PATH) {
        api_error(&r, 400, "invalid_request", "the path is malformed");
        return;
    }
    if (m == API_NO_METHOD) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", r.allow);
        api_error(&r, 405, "method_not_allowed", "this route does not take that method");
        return;
    }
    if (r.route->role != API_ROLE_NONE) {
        char why[AUTH_WHY_MAX];
        int deferred = token_deferred(a, &r, why);

        if (deferred > 0) {
            enqueue(a, &r); /* authenticated with the batch, then as below */
            return;
        }
        if (deferred < 0 || authenticate(a, &r, why) != COFFER_OK) {
            refuse_unauthenticated(&r, why);
            return;
        }
        if (!role_fits(&r)) {
            return;
        }
    }
    if (r.route->body_limit > 0 && !parse_body(&r, r.route->body_limit)) {
        return;
    }
    if (r.route->batch != API_ALONE) {
        enqueue(a, &r);
        return;
    }
    r.route->handler(&r);
    if (r.body != NULL) {
        json_decref(r.body);
    }
}

enum coffer_err coffer_api_new(const struct coffer_config *cfg, struct event_base *base,
                               int listen_fd, struct coffer_ops *ops,
                               const struct coffer_api_stats_view *stats, struct coffer_api **out)
{
    struct coffer_api *a = coffer_calloc(1, sizeof(*a));
    struct timeval tv;
    enum coffer_err r;

    *out = NULL;
    if (a == NULL) {
        return coffer_err_set(COFFER_E_NOMEM, "HTTP server");
    }
    a->base = base;
    a->ops = ops;
    a->max_body = cfg->max_body_bytes;
    a->max_connections = cfg->max_connections > 0 ? cfg->max_connections : 1024;
    if (stats != NULL && stats->slots != NULL && stats->self < stats->n) {
        a->stats = *stats;
    } else {
        a->stats.slots = &a->own;
        a->stats.n = 1;
        a->stats.self = 0;
    }
    if (conn_index < 0) {
        conn_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, conn_mark_free);
    }
    if (conn_index < 0) {
        coffer_free(a);
        return coffer_err_set(COFFER_E_NOMEM, "TLS connection data index");
    }
    (void)snprintf(a->trust_domain, sizeof(a->trust_domain), "%s", cfg->trust_domain);
    if ((r = make_ctx(cfg, &a->ctx)) != COFFER_OK ||
        (r = coffer_op_use_configure(cfg)) != COFFER_OK) {
        goto fail;
    }
    a->flush_ev = event_new(base, -1, 0, on_flush, a);
    a->http = evhttp_new(base);
    if (a->flush_ev == NULL || a->http == NULL) {
        r = coffer_err_set(COFFER_E_NOMEM, "evhttp_new");
        goto fail;
    }
    evhttp_set_bevcb(a->http, new_connection, a);
    evhttp_set_gencb(a->http, handle, a);
    evhttp_set_allowed_methods(a->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
                                            EVHTTP_REQ_DELETE | EVHTTP_REQ_HEAD);
    evhttp_set_max_headers_size(a->http, (ev_ssize_t)cfg->max_header_bytes);
    evhttp_set_max_body_size(a->http, (ev_ssize_t)cfg->max_body_bytes);
    tv.tv_sec = cfg->request_timeout_ms / 1000;
    tv.tv_usec = (suseconds_t)(cfg->request_timeout_ms % 1000) * 1000;
    a->request_timeout = tv;
    tv.tv_sec = cfg->idle_timeout_ms / 1000;
    tv.tv_usec = (suseconds_t)(cfg->idle_timeout_ms % 1000) * 1000;
    a->idle_timeout = tv;
    /* A configuration made in code rather than loaded: the documented defaults. */
    if (!evutil_timerisset(&a->request_timeout)) {
        a->request_timeout.tv_sec = 10;
    }
    if (!evutil_timerisset(&a->idle_timeout)) {
        a->idle_timeout.tv_sec = 60;
    }
    /* libevent's own timeout measures silence only: the longer of the two, the deadline does the
     * rest. */
    tv = evutil_timercmp(&a->request_timeout, &a->idle_timeout, >) ? a->request_timeout
                                                                   : a->idle_timeout;
    evhttp_set_timeout_tv(a->http, &tv);
    a->bound = evhttp_accept_socket_with_handle(a->http, listen_fd);
    if (a->bound == NULL) {
        r = coffer_err_set(COFFER_E_IO, "accepting on the listening socket");
        goto fail;
    }
    *out = a;
    return COFFER_OK;
fail:
    coffer_api_free(&a);
    return r;
}

enum coffer_err coffer_api_reload_tls(struct coffer_api *a, const struct coffer_config *cfg)
{
    SSL_CTX *ctx = NULL;
    enum coffer_err r = make_ctx(cfg, &ctx);

    if (r != COFFER_OK) {
        return r;
    }
    SSL_CTX_free(a->ctx);
    a->ctx = ctx;
    return COFFER_OK;
}

void coffer_api_stop_accepting(struct coffer_api *a)
{
    if (a != NULL && a->bound != NULL) {
        evhttp_del_accept_socket(a->http, a->bound);
        a->bound = NULL;
    }
}

void coffer_api_free(struct coffer_api **a)
{
    if (a == NULL || *a == NULL) {
        return;
    }
    flush_queue(*a);
    if ((*a)->flush_ev != NULL) {
        event_free((*a)->flush_ev);
    }
    if ((*a)->http != NULL) {
        evhttp_free((*a)->http);
    }
    SSL_CTX_free((*a)->ctx);
    coffer_free(*a);
    *a = NULL;
}

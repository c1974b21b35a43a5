/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A brokered use: an agent has Coffer make an HTTPS call with a credential
 * the agent never sees. The decision is an access's (brokered set, so a
 * reveal: false credential passes); then the agent's request is held against
 * the credential's usage spec (method, destination, no placeholders, no
 * header the spec injects or the transport owns) before any connection is
 * opened, the values are unsealed, expanded into the spec's templates, and
 * the call is made with libcurl: https only, the peer verified, no proxy,
 * bounded in time and size, redirects followed by hand and only inside the
 * spec. The answer goes back with every value of the credential redacted.
 *
 * Decision, call and audit event share one transaction, as an access does:
 * an event that cannot be written fails the use, and nothing of the answer
 * is handed back. This file must never log, audit or put into a message a
 * header value, a body, a URL's path or query, or any value of the
 * credential; values live only in locked memory (coffer_secret) and in the
 * copies libcurl makes of the header list and the URL, which are wiped
 * before they are freed where libcurl lets us reach them.
 */
#include "api/use_int.h"

#include "api/ops_int.h"

#include "coffer/broker.h"
#include "coffer/log.h"
#include "coffer/mem.h"
#include "coffer/secret.h"
#include "coffer/text.h"

#include <curl/curl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define LOG_MOD "use"
#define DETAIL_MAX 512

/* ---- Settings --------------------------------------------------------------------- */

static struct {
    char ca_file[PATH_MAX];
    long connect_ms;
    long total_ms;
    int64_t refresh_margin_us;
    bool curl_ready;
} settings = {.connect_ms = 5000, .total_ms = 30000, .refresh_margin_us = INT64_C(60000000)};

enum coffer_err coffer_op_use_configure(const struct coffer_config *cfg)
{
    if (cfg == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "broker settings: no configuration");
    }
    (void)snprintf(settings.ca_file, sizeof(settings.ca_file), "%s", cfg->broker_ca_file);
    settings.connect_ms =
        cfg->broker_connect_timeout_ms > 0 ? cfg->broker_connect_timeout_ms : 5000;
    settings.total_ms = cfg->broker_timeout_ms > 0 ? cfg->broker_timeout_ms : 30000;
    settings.refresh_margin_us = (int64_t)cfg->oauth2_refresh_margin_s * INT64_C(1000000);
    if (!settings.curl_ready) {
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
            return coffer_err_set(COFFER_E_IO, "libcurl could not be initialised");
        }
        settings.curl_ready = true;
    }
    return COFFER_OK;
}

int64_t use_refresh_margin_us(void)
{
    return settings.refresh_margin_us;
}

long use_total_ms(void)
{
    return settings.total_ms;
}

/* ---- Results ---------------------------------------------------------------------- */

void use_call_cleanup(struct use_call *u)
{
    if (u == NULL) {
        return;
    }
    for (size_t i = 0; i < u->n_resp_headers; i++) {
        coffer_free(u->resp_headers[i].name);
        coffer_buf_cleanup(&u->resp_headers[i].value);
    }
    coffer_free(u->resp_headers);
    u->resp_headers = NULL;
    u->n_resp_headers = 0;
    coffer_buf_cleanup(&u->resp_body);
}

static void refuse(struct use_call *u, enum use_outcome why, const char *fmt, ...)
    COFFER_PRINTF(3, 4);

static void refuse(struct use_call *u, enum use_outcome why, const char *fmt, ...)
{
    va_list ap;

    u->outcome = why;
    va_start(ap, fmt);
    (void)vsnprintf(u->message, sizeof(u->message), fmt, ap);
    va_end(ap);
}

/* ---- Checks before any connection --------------------------------------------------- */

static bool method_allowed(const struct coffer_policy_usage *us, const char *method)
{
    for (size_t i = 0; i < us->n_methods; i++) {
        if (strcmp(us->methods[i], method) == 0) {
            return true;
        }
    }
    return false;
}

/* Headers the transport owns: an agent's would change how the request is framed or routed. */
static bool transport_header(const char *name)
{
    static const char *const owned[] = {
        "host", "content-length", "transfer-encoding", "connection", "expect", "te", "upgrade",
        NULL};

    for (const char *const *o = owned; *o != NULL; o++) {
        if (strcasecmp(*o, name) == 0) {
            return true;
        }
    }
    return false;
}

/* Whether the query (NULL for none) holds a parameter called name. */
static bool query_has(const char *query, const char *name)
{
    size_t nlen = strlen(name);
    const char *p = query;

    while (p != NULL && *p != '\0') {
        const char *end = strchr(p, '&');
        size_t len = end != NULL ? (size_t)(end - p) : strlen(p);

        if (len >= nlen && strncmp(p, name, nlen) == 0 && (len == nlen || p[nlen] == '=')) {
            return true;
        }
        p = end != NULL ? end + 1 : NULL;
    }
    return false;
}

/*
 * Holds the agent's request against the spec. Sets u->outcome and message
 * on a refusal; COFFER_OK either way, an error only for the machinery.
 */
static enum coffer_err check_request(struct use_call *u, const struct coffer_policy_usage *us,
                                     struct coffer_arena *arena, struct coffer_broker_dest *dests,
                                     struct coffer_broker_url *url)
{
    enum coffer_err r;

    if (!method_allowed(us, u->method)) {
        refuse(u, USE_DEST_REFUSED, "method %s is not allowed for this credential", u->method);
        return COFFER_OK;
    }
    for (size_t i = 0; i < us->n_destinations; i++) {
        const char *d = us->destinations[i].url;

        if ((r = coffer_policy_dest_split(arena, d, strlen(d), &dests[i])) != COFFER_OK) {
            return coffer_err_wrap(r, "usage spec destination %zu", i);
        }
    }
    for (size_t i = 0; i < u->n_headers; i++) {
        const struct use_header *h = &u->headers[i];

        if (transport_header(h->name)) {
            refuse(u, USE_BAD_REQUEST, "header %s is set by Coffer, not by the request", h->name);
            return COFFER_OK;
        }
        for (size_t j = 0; j < us->n_inject; j++) {
            if (!us->inject[j].query && strcasecmp(us->inject[j].name, h->name) == 0) {
                refuse(u, USE_BAD_REQUEST, "header %s is injected by Coffer for this credential",
                       h->name);
                return COFFER_OK;
            }
        }
    }
    if (us->n_inject > 0) {
        bool found = coffer_broker_has_placeholder(u->url, u->url_len) ||
                     (u->body != NULL && coffer_broker_has_placeholder(u->body, u->body_len));

        for (size_t i = 0; !found && i < u->n_headers; i++) {
            found = coffer_broker_has_placeholder(u->headers[i].name, strlen(u->headers[i].name)) ||
                    coffer_broker_has_placeholder(u->headers[i].value, u->headers[i].value_len);
        }
        if (found) {
            refuse(u, USE_BAD_REQUEST,
                   "the request holds a template placeholder ({{); Coffer inserts the "
                   "credential itself");
            return COFFER_OK;
        }
    }
    r = coffer_broker_url_parse(u->url, u->url_len, url);
    if (r == COFFER_E_INVALID || r == COFFER_E_LIMIT) {
        refuse(u, USE_DEST_REFUSED, "the url is refused: %s", coffer_err_detail());
        return COFFER_OK;
    }
    if (r != COFFER_OK) {
        return r;
    }
    if (!coffer_broker_dests_allow(dests, us->n_destinations, url)) {
        refuse(u, USE_DEST_REFUSED, "%s https://%s:%u is not a destination of this credential",
               u->method, url->host, (unsigned)url->port);
        return COFFER_OK;
    }
    for (size_t j = 0; j < us->n_inject; j++) {
        if (us->inject[j].query && query_has(url->query, us->inject[j].name)) {
            refuse(u, USE_BAD_REQUEST,
                   "query parameter %s is injected by Coffer for this credential",
                   us->inject[j].name);
            return COFFER_OK;
        }
    }
    return COFFER_OK;
}

/* ---- Secrets into the call ------------------------------------------------------------ */

/* Every value of ks (and a Basic pair of username and password) into a new redactor. */
static enum coffer_err make_redactor(const struct coffer_keyset *ks,
                                     struct coffer_broker_redactor **out)
{
    const struct coffer_secret *user = coffer_keyset_get(ks, "username");
    char name[256] = "";
    enum coffer_err r;

    if ((r = coffer_broker_redactor_new(out)) != COFFER_OK) {
        return r;
    }
    if (user != NULL) {
        struct coffer_secret_view v = coffer_secret_view(user);

        if (v.len < sizeof(name) && memchr(v.data, '\0', v.len) == NULL) {
            coffer_memcpy(name, v.data, v.len);
            name[v.len] = '\0';
        }
    }
    for (size_t i = 0; i < coffer_keyset_count(ks); i++) {
        const struct coffer_secret *v = coffer_keyset_value(ks, i);
        const char *key = coffer_keyset_name(ks, i);
        bool basic = name[0] != '\0' && strcmp(key, "password") == 0;

        /* Shorter values occur by chance in any text; redacting them would protect nothing. */
        if (coffer_secret_len(v) < COFFER_BROKER_REDACT_MIN) {
            continue;
        }
        r = coffer_broker_redactor_add(*out, v, basic ? name : NULL);
        if (r == COFFER_E_INVALID && basic) {
            r = coffer_broker_redactor_add(*out, v, NULL);
        }
        if (r != COFFER_OK) {
            coffer_wipe(name, sizeof(name));
            coffer_broker_redactor_free(out);
            return coffer_err_wrap(r, "redacting key %s", key);
        }
    }
    coffer_wipe(name, sizeof(name));
    return COFFER_OK;
}

/* Appends len bytes to a secret being built (cap bytes), failing past it. */
enum coffer_err use_secret_put(struct coffer_secret *s, size_t *at, const void *p, size_t len)
{
    struct coffer_secret_view v = coffer_secret_view(s);

    if (len > v.len - *at) {
        return coffer_err_set(COFFER_E_LIMIT, "an injected value is too long");
    }
    coffer_memcpy((unsigned char *)v.data + *at, p, len);
    *at += len;
    return COFFER_OK;
}

/* The URL to call: u in canonical form plus the spec's query injections, NUL-terminated. */
static enum coffer_err build_url(const struct coffer_broker_url *u,
                                 const struct coffer_policy_usage *us,
                                 const struct coffer_keyset *ks, struct coffer_secret **out)
{
    char *base = NULL;
    struct coffer_secret *val = NULL;
    size_t at = 0;
    bool has_query = u->query != NULL;
    enum coffer_err r;

    *out = NULL;
    if ((r = coffer_broker_url_format(u, &base)) != COFFER_OK ||
        (r = coffer_secret_new(COFFER_BROKER_URL_MAX * 2, out)) != COFFER_OK ||
        (r = use_secret_put(*out, &at, base, strlen(base))) != COFFER_OK) {
        goto out;
    }
    for (size_t i = 0; i < us->n_inject; i++) {
        const struct coffer_policy_inject *in = &us->inject[i];
        struct coffer_secret_view v;

        if (!in->query) {
            continue;
        }
        if ((r = coffer_broker_template_expand(in->value, strlen(in->value), ks,
                                               COFFER_BROKER_ENC_QUERY, &val)) != COFFER_OK) {
            goto out;
        }
        v = coffer_secret_view(val);
        if ((r = use_secret_put(*out, &at, has_query ? "&" : "?", 1)) != COFFER_OK ||
            (r = use_secret_put(*out, &at, in->name, strlen(in->name))) != COFFER_OK ||
            (r = use_secret_put(*out, &at, "=", 1)) != COFFER_OK ||
            (r = use_secret_put(*out, &at, v.data, v.len)) != COFFER_OK) {
            goto out;
        }
        coffer_secret_free(&val);
        has_query = true;
    }
    r = use_secret_put(*out, &at, "", 1);
out:
    coffer_secret_free(&val);
    coffer_free(base);
    if (r != COFFER_OK) {
        coffer_secret_free(out);
    }
    return r;
}

void use_free_headers(struct curl_slist **list)
{
    for (struct curl_slist *it = *list; it != NULL; it = it->next) {
        coffer_wipe(it->data, strlen(it->data));
    }
    curl_slist_free_all(*list);
    *list = NULL;
}

enum coffer_err use_add_header(struct curl_slist **list, const char *name, const void *value,
                               size_t len)
{
    struct coffer_secret *line = NULL;
    struct curl_slist *next;
    size_t at = 0;
    enum coffer_err r;

    if ((r = coffer_secret_new(strlen(name) + len + 3, &line)) != COFFER_OK ||
        (r = use_secret_put(line, &at, name, strlen(name))) != COFFER_OK ||
        (r = use_secret_put(line, &at, ": ", 2)) != COFFER_OK ||
        (r = use_secret_put(line, &at, value, len)) != COFFER_OK ||
        (r = use_secret_put(line, &at, "", 1)) != COFFER_OK) {
        goto out;
    }
    next = curl_slist_append(*list, (const char *)coffer_secret_view(line).data);
    if (next == NULL) {
        r = coffer_err_set(COFFER_E_NOMEM, "header list");
        goto out;
    }
    *list = next;
out:
    coffer_secret_free(&line);
    return r;
}

/* The agent's headers, then the spec's injected ones, then the framing Coffer decides. */
static enum coffer_err build_headers(const struct use_call *u, const struct coffer_policy_usage *us,
                                     const struct coffer_keyset *ks, struct curl_slist **list)
{
    struct coffer_secret *val = NULL;
    enum coffer_err r = COFFER_OK;

    for (size_t i = 0; r == COFFER_OK && i < u->n_headers; i++) {
        r = use_add_header(list, u->headers[i].name, u->headers[i].value, u->headers[i].value_len);
    }
    for (size_t i = 0; r == COFFER_OK && i < us->n_inject; i++) {
        const struct coffer_policy_inject *in = &us->inject[i];

        if (in->query) {
            continue;
        }
        if ((r = coffer_broker_template_expand(in->value, strlen(in->value), ks,
                                               COFFER_BROKER_ENC_HEADER, &val)) == COFFER_OK) {
            r = use_add_header(list, in->name, coffer_secret_view(val).data,
                               coffer_secret_len(val));
        }
        coffer_secret_free(&val);
    }
    /* No "Expect: 100-continue" round: the body goes with the request. */
    if (r == COFFER_OK) {
        struct curl_slist *next = curl_slist_append(*list, "Expect:");

        if (next == NULL) {
            r = coffer_err_set(COFFER_E_NOMEM, "header list");
        } else {
            *list = next;
        }
    }
    if (r != COFFER_OK) {
        use_free_headers(list);
    }
    return r;
}

/* ---- The call ----------------------------------------------------------------------- */

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
    struct use_answer *a = arg;
    size_t len = size * n;

    if (len > USE_RESPONSE_MAX - a->body.len || coffer_buf_put(&a->body, p, len) != COFFER_OK) {
        a->too_large = true;
        return 0;
    }
    return len;
}

static size_t on_header(char *p, size_t size, size_t n, void *arg)
{
    struct use_answer *a = arg;
    size_t len = size * n;
    size_t full = len;
    const char *colon;
    size_t nlen;
    const char *v;
    size_t vlen;

    while (len > 0 && (p[len - 1] == '\n' || p[len - 1] == '\r')) {
        len--;
    }
    if (len >= 5 && strncmp(p, "HTTP/", 5) == 0) {
        /* A new response (after a 1xx): only the last one's headers are answered. */
        coffer_buf_cleanup(&a->head);
        a->n_head = 0;
        return full;
    }
    if (len == 0 || p[0] == ' ' || p[0] == '\t') {
        return full;
    }
    colon = memchr(p, ':', len);
    if (colon == NULL || colon == p) {
        return full;
    }
    nlen = (size_t)(colon - p);
    v = colon + 1;
    vlen = len - nlen - 1;
    while (vlen > 0 && (*v == ' ' || *v == '\t')) {
        v++;
        vlen--;
    }
    while (vlen > 0 && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t')) {
        vlen--;
    }
    if (a->n_head >= USE_RESPONSE_HEADERS_MAX ||
        a->head.len + nlen + vlen + 2 > USE_RESPONSE_HEADER_BYTES ||
        coffer_buf_put(&a->head, p, nlen) != COFFER_OK ||
        coffer_buf_put_u8(&a->head, 0) != COFFER_OK ||
        coffer_buf_put(&a->head, v, vlen) != COFFER_OK ||
        coffer_buf_put_u8(&a->head, 0) != COFFER_OK) {
        a->too_large = true;
        return 0;
    }
    a->n_head++;
    return full;
}

void use_answer_cleanup(struct use_answer *a)
{
    coffer_buf_cleanup(&a->head);
    coffer_buf_cleanup(&a->body);
    a->n_head = 0;
    a->too_large = false;
}

const char *use_answer_header(const struct use_answer *a, const char *name, size_t *len)
{
    const char *p = (const char *)a->head.data;

    for (size_t i = 0; i < a->n_head; i++) {
        const char *v = p + strlen(p) + 1;

        if (strcasecmp(p, name) == 0) {
            *len = strlen(v);
            return v;
        }
        p = v + strlen(v) + 1;
    }
    return NULL;
}

enum coffer_err use_perform(const char *url, const char *method, const void *body, size_t body_len,
                            const struct curl_slist *headers, struct use_answer *a, long *status)
{
    CURL *c = curl_easy_init();
    CURLcode cc;
    enum coffer_err r = COFFER_OK;

    if (c == NULL) {
        return coffer_err_set(COFFER_E_NOMEM, "libcurl handle");
    }
    a->body.max = USE_RESPONSE_MAX;
    a->head.max = USE_RESPONSE_HEADER_BYTES;
    cc = curl_easy_setopt(c, CURLOPT_URL, url);
    if (cc == CURLE_OK) {
        (void)curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "https");
        (void)curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "https");
        (void)curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
        (void)curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
        (void)curl_easy_setopt(c, CURLOPT_PROXY, "");
        (void)curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
        (void)curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
        (void)curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, settings.connect_ms);
        (void)curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, settings.total_ms);
        (void)curl_easy_setopt(c, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)USE_RESPONSE_MAX);
        (void)curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
        (void)curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
        (void)curl_easy_setopt(c, CURLOPT_WRITEDATA, a);
        (void)curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
        (void)curl_easy_setopt(c, CURLOPT_HEADERDATA, a);
        if (settings.ca_file[0] != '\0') {
            (void)curl_easy_setopt(c, CURLOPT_CAINFO, settings.ca_file);
        }
        if (strcmp(method, "HEAD") == 0) {
            (void)curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
        } else if (body != NULL) {
            (void)curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
            (void)curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
            (void)curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
        } else if (strcmp(method, "GET") != 0) {
            (void)curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
        }
        cc = curl_easy_perform(c);
    }
    if (a->too_large || cc == CURLE_FILESIZE_EXCEEDED) {
        r = coffer_err_set(COFFER_E_LIMIT, "the upstream's answer is larger than %u bytes",
                           USE_RESPONSE_MAX);
    } else if (cc != CURLE_OK) {
        r = coffer_err_set(COFFER_E_IO, "the upstream call failed: %s", curl_easy_strerror(cc));
    } else {
        (void)curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
    }
    curl_easy_cleanup(c);
    return r;
}

/* The redacted headers and body of a into u's results. */
static enum coffer_err redact_answer(const struct coffer_broker_redactor *red,
                                     const struct use_answer *a, struct use_call *u)
{
    const char *p = (const char *)a->head.data;
    enum coffer_err r;

    if (a->n_head > 0 &&
        (u->resp_headers = coffer_calloc(a->n_head, sizeof(*u->resp_headers))) == NULL) {
        return coffer_err_set(COFFER_E_NOMEM, "response headers");
    }
    for (size_t i = 0; i < a->n_head; i++) {
        const char *v = p + strlen(p) + 1;
        struct use_resp_header *h = &u->resp_headers[u->n_resp_headers];

        r = coffer_broker_redact_header(red, p, strlen(p), v, strlen(v), &h->value);
        if (r == COFFER_E_INVALID) {
            /* A name that holds a value, or one that cannot be passed on: dropped. */
            coffer_buf_cleanup(&h->value);
        } else if (r != COFFER_OK) {
            return r;
        } else if ((h->name = coffer_strdup(p)) == NULL) {
            coffer_buf_cleanup(&h->value);
            return coffer_err_set(COFFER_E_NOMEM, "response header name");
        } else {
            u->n_resp_headers++;
        }
        p = v + strlen(v) + 1;
    }
    return coffer_broker_redact(red, a->body.data != NULL ? (const void *)a->body.data : "",
                                a->body.len, &u->resp_body);
}

/*
 * Calls url and follows redirects that stay inside the spec, at most
 * USE_REDIRECTS_MAX. Sets the outcome; the detail's target (host and
 * status) into where.
 */
static enum coffer_err call(struct use_call *u, const struct coffer_policy_usage *us,
                            const struct coffer_broker_dest *dests, const struct coffer_keyset *ks,
                            const struct coffer_broker_url *first, char *where, size_t where_len)
{
    struct coffer_broker_redactor *red = NULL;
    struct curl_slist *headers = NULL;
    struct coffer_secret *url = NULL;
    struct coffer_broker_url cur = {0};
    struct coffer_broker_url next = {0};
    struct use_answer a = {0};
    const char *method = u->method;
    bool with_body = true;
    char *canon = NULL;
    enum coffer_err r;

    if ((r = make_redactor(ks, &red)) != COFFER_OK ||
        (r = build_headers(u, us, ks, &headers)) != COFFER_OK ||
        (r = coffer_broker_url_format(first, &canon)) != COFFER_OK ||
        (r = coffer_broker_url_parse(canon, strlen(canon), &cur)) != COFFER_OK) {
        goto out;
    }
    for (int hop = 0;; hop++) {
        const char *loc;
        size_t loc_len = 0;
        bool allowed = false;

        use_answer_cleanup(&a);
        coffer_secret_free(&url);
        if ((r = build_url(&cur, us, ks, &url)) != COFFER_OK) {
            goto out;
        }
        (void)snprintf(where, where_len, "%s https://%s%s", method, cur.host,
                       cur.port == 443 ? "" : ":");
        if (cur.port != 443) {
            (void)snprintf(where + strlen(where), where_len - strlen(where), "%u",
                           (unsigned)cur.port);
        }
        r = use_perform((const char *)coffer_secret_view(url).data, method,
                        with_body ? u->body : NULL, u->body_len, headers, &a, &u->status);
        if (r == COFFER_E_LIMIT) {
            refuse(u, USE_TOO_LARGE, "the upstream's answer is larger than %u bytes",
                   USE_RESPONSE_MAX);
            r = COFFER_OK;
            goto out;
        }
        if (r == COFFER_E_IO) {
            coffer_warn(LOG_MOD, "brokered call to %s failed: %s", cur.host, coffer_err_detail());
            refuse(u, USE_UPSTREAM_FAILED, "the upstream %s could not be reached (%s)", cur.host,
                   coffer_err_detail());
            r = COFFER_OK;
            goto out;
        }
        if (r != COFFER_OK) {
            goto out;
        }
        loc = use_answer_header(&a, "location", &loc_len);
        if (u->status < 300 || u->status > 399 || u->status == 304 || loc == NULL) {
            break;
        }
        if (hop >= USE_REDIRECTS_MAX) {
            refuse(u, USE_REDIRECT_REFUSED, "more than %d redirects", USE_REDIRECTS_MAX);
            goto out;
        }
        r = coffer_broker_redirect_check(&cur, loc, loc_len, dests, us->n_destinations, &allowed,
                                         &next);
        if (r != COFFER_OK || !allowed) {
            refuse(u, USE_REDIRECT_REFUSED,
                   "the upstream redirected outside this credential's destinations%s%s",
                   r == COFFER_OK ? " to " : "", r == COFFER_OK ? next.host : "");
            coffer_broker_url_cleanup(&next);
            r = COFFER_OK;
            goto out;
        }
        if (u->status == 303 ||
            ((u->status == 301 || u->status == 302) && strcmp(method, "POST") == 0)) {
            method = "GET";
            with_body = false;
        }
        coffer_broker_url_cleanup(&cur);
        cur = next;
        memset(&next, 0, sizeof(next));
    }
    (void)snprintf(where + strlen(where), where_len - strlen(where), " -> %ld", u->status);
    if ((r = redact_answer(red, &a, u)) != COFFER_OK) {
        goto out;
    }
    u->outcome = USE_DONE;
out:
    use_answer_cleanup(&a);
    coffer_secret_free(&url);
    coffer_broker_url_cleanup(&cur);
    coffer_broker_url_cleanup(&next);
    use_free_headers(&headers);
    coffer_broker_redactor_free(&red);
    coffer_free(canon);
    return r;
}

/* ---- The operation -------------------------------------------------------------------- */

/* The reason an event records for an outcome; the decision's for a denial. */
static const char *outcome_reason(const struct use_call *u)
{
    switch (u->outcome) {
    case USE_DENIED:
        return coffer_authz_reason_str(u->decision.reason);
    case USE_NO_USAGE:
        return "no_usage";
    case USE_DEST_REFUSED:
        return "destination_refused";
    case USE_BAD_REQUEST:
        return "request_refused";
    case USE_REFRESH_FAILED:
        return "refresh_failed";
    case USE_REDIRECT_REFUSED:
    case USE_TOO_LARGE:
    case USE_UPSTREAM_FAILED:
    case USE_DONE:
    default:
        return "granted";
    }
}

static const char *outcome_name(enum use_outcome o)
{
    switch (o) {
    case USE_REDIRECT_REFUSED:
        return "redirect_refused";
    case USE_TOO_LARGE:
        return "upstream_too_large";
    case USE_UPSTREAM_FAILED:
        return "upstream_failed";
    case USE_DONE:
    case USE_DENIED:
    case USE_NO_USAGE:
    case USE_DEST_REFUSED:
    case USE_BAD_REQUEST:
    case USE_REFRESH_FAILED:
    default:
        return "";
    }
}

/*
 * Fail closed: the use is on record, committed, before the secret leaves
 * Coffer, as event "use" with detail "METHOD https://host -> sending"; a
 * second event records the outcome after the call. If this one cannot be
 * written, no call is made. A new transaction is open on return.
 */
static enum coffer_err record_intent(struct coffer_ops *o, const struct coffer_op_meta *m,
                                     const struct use_call *u, const struct coffer_authz_input *in,
                                     const struct coffer_store_access *acc,
                                     const struct coffer_keys_read_info *info,
                                     const struct coffer_broker_url *url)
{
    struct coffer_audit_event e;
    char detail[DETAIL_MAX];
    int64_t id = 0;
    enum coffer_err r;

    ops_event_init(&e, COFFER_AUDIT_USE, m, u->org, u->project, u->name);
    e.allowed = true;
    e.reason = "granted";
    e.purpose_unexpected = u->decision.purpose_unexpected;
    e.version = acc->current_version;
    e.phase = in->phase;
    e.org_key_version = info->opened_org_key_version;
    e.mk_version = info->opened_mk_version;
    (void)snprintf(detail, sizeof(detail), "%s https://%s", u->method, url->host);
    if (url->port != 443) {
        (void)snprintf(detail + strlen(detail), sizeof(detail) - strlen(detail), ":%u",
                       (unsigned)url->port);
    }
    (void)snprintf(detail + strlen(detail), sizeof(detail) - strlen(detail), " -> sending");
    e.detail = detail;
    if (u->purpose != NULL && coffer_authz_purpose_ok(u->purpose, u->purpose_len)) {
        e.purpose = u->purpose;
        e.purpose_len = u->purpose_len;
    }
    if ((r = coffer_store_audit_insert(o->st, &e, &id)) != COFFER_OK ||
        (r = coffer_store_commit(o->st)) != COFFER_OK) {
        return r;
    }
    return coffer_store_begin(o->st);
}

/*
 * Decides, checks and calls. *connected tells whether the credential left
 * Coffer (then the event is "allowed": the call took place). where gets
 * "METHOD https://host[:port] -> STATUS" as far as it is known.
 */
static enum coffer_err use_in_tx(struct coffer_ops *o, const struct coffer_op_meta *m,
                                 struct use_call *u, struct coffer_arena *arena,
                                 struct coffer_authz_input *in, struct coffer_store_access *acc,
                                 struct coffer_keys_read_info *info, bool *connected,
                                 bool *refresh_due, char *where, size_t where_len)
{
    const struct coffer_policy_usage *us = NULL;
    struct coffer_broker_dest dests[COFFER_POLICY_DESTS_MAX];
    struct coffer_broker_url url = {0};
    struct coffer_keyset *keys = NULL;
    char *expired = NULL;
    enum coffer_err r;

    memset(dests, 0, sizeof(dests));
    u->outcome = USE_DENIED;
    if (!ops_is_agent(m->who)) {
        return COFFER_OK;
    }
    in->principal.org = m->who->org;
    in->principal.agent_type = m->who->agent_type;
    in->principal.instance = m->who->instance;
    in->purpose = u->purpose;
    in->purpose_len = u->purpose != NULL ? u->purpose_len : 0;
    if ((r = coffer_store_access_load(o->st, m->who->org, u->project, u->name, arena, in, acc)) !=
        COFFER_OK) {
        return r;
    }
    if (u->org == NULL || strcmp(u->org, m->who->org) != 0) {
        in->found = false;
        in->org = NULL;
        acc->found = false;
    }
    in->brokered = true;
    coffer_authz_decide(in, &u->decision);
    if (!u->decision.allow) {
        return COFFER_OK;
    }
    if (acc->usage == NULL) {
        refuse(u, USE_NO_USAGE,
               "this credential has no usage spec: it cannot be used through "
               "Coffer");
        return COFFER_OK;
    }
    if ((r = coffer_policy_usage_from_json(arena, acc->usage, strlen(acc->usage), &us)) !=
        COFFER_OK) {
        return coffer_err_wrap(r, "the stored usage spec of %s/%s", u->project, u->name);
    }
    if (us->n_destinations > COFFER_POLICY_DESTS_MAX) {
        return coffer_err_set(COFFER_E_INVALID, "the stored usage spec has too many destinations");
    }
    u->outcome = USE_DONE;
    (void)snprintf(where, where_len, "%s", u->method);
    if ((r = check_request(u, us, arena, dests, &url)) != COFFER_OK || u->outcome != USE_DONE) {
        if (url.path != NULL) {
            (void)snprintf(where, where_len, "%s https://%s", u->method, url.host);
        }
        goto out;
    }
    if (refresh_due != NULL && ops_oauth2_due(acc, in->now_us)) {
        /* Refreshed outside this transaction first; nothing is written here. */
        *refresh_due = true;
        goto out;
    }
    r = coffer_keys_cred_read(o->k, o->st, &acc->org_id, &acc->project_id, u->name,
                              acc->current_version, &keys, info);
    if (r != COFFER_OK) {
        coffer_authz_after_unseal(&u->decision, r);
        if (u->decision.allow) {
            goto out;
        }
        coffer_warn(LOG_MOD, "credential %s/%s/%s could not be unsealed (%s)", u->org, u->project,
                    u->name, coffer_authz_reason_str(u->decision.reason));
        u->outcome = USE_DENIED;
        r = COFFER_OK;
        goto out;
    }
    if ((r = ops_key_expiry_withhold(acc, &keys, &expired)) != COFFER_OK) {
        goto out;
    }
    if (u->refresh.failed && acc->oauth2_provider != NULL &&
        coffer_keyset_get(keys, "access_token") == NULL) {
        refuse(u, USE_REFRESH_FAILED, "the access token has expired and could not be refreshed");
        goto out;
    }
    if ((r = record_intent(o, m, u, in, acc, info, &url)) != COFFER_OK) {
        goto out;
    }
    *connected = true;
    r = call(u, us, dests, keys, &url, where, where_len);
    if (r == COFFER_E_NOT_FOUND) {
        /* A template names a key this version does not hold (or whose own expiry passed). */
        *connected = false;
        refuse(u, USE_DEST_REFUSED, "the credential lacks a key its usage spec injects: %s",
               coffer_err_detail());
        r = COFFER_OK;
    }
out:
    coffer_free(expired);
    coffer_keyset_free(&keys);
    coffer_broker_url_cleanup(&url);
    return r;
}

enum coffer_err coffer_op_use(struct coffer_ops *o, const struct coffer_op_meta *m,
                              struct use_call *u)
{
    struct coffer_authz_input in;
    struct coffer_store_access acc;
    struct coffer_keys_read_info info;
    struct coffer_arena *arena = NULL;
    struct coffer_audit_event e;
    char where[DETAIL_MAX] = "";
    char detail[DETAIL_MAX];
    bool connected = false;
    bool refresh_due = false;
    int64_t id = 0;
    enum coffer_err r;

    memset(&in, 0, sizeof(in));
    memset(&acc, 0, sizeof(acc));
    memset(&info, 0, sizeof(info));
    if ((r = ops_check_call(o, m, u, "use")) != COFFER_OK) {
        return r;
    }
    u->outcome = USE_DENIED;
    u->decision = (struct coffer_authz_decision){.reason = COFFER_AUTHZ_NO_GRANT, .grant = -1};
    u->message[0] = '\0';
    u->status = 0;
    memset(&u->refresh, 0, sizeof(u->refresh));
    if (u->method == NULL || u->url == NULL || (u->n_headers > 0 && u->headers == NULL)) {
        return coffer_err_set(COFFER_E_INVALID, "use: missing method, url or headers");
    }
    if ((r = coffer_arena_new(0, &arena)) != COFFER_OK) {
        return r;
    }
    if ((r = coffer_store_begin(o->st)) != COFFER_OK) {
        goto out;
    }
    r = use_in_tx(o, m, u, arena, &in, &acc, &info, &connected, &refresh_due, where, sizeof(where));
    if (r == COFFER_OK && refresh_due) {
        /*
         * Nothing is written yet: refresh (or find it refreshed by another
         * server) with no transaction open, then check and call again
         * without refreshing; a failed refresh is in u->refresh.
         */
        coffer_store_rollback(o->st);
        if ((r = coffer_op_oauth2_refresh(o, m, u->project, u->name, &u->refresh)) != COFFER_OK ||
            (r = coffer_store_begin(o->st)) != COFFER_OK) {
            goto out;
        }
        memset(&in, 0, sizeof(in));
        memset(&acc, 0, sizeof(acc));
        memset(&info, 0, sizeof(info));
        where[0] = '\0';
        r = use_in_tx(o, m, u, arena, &in, &acc, &info, &connected, NULL, where, sizeof(where));
    }
    if (r != COFFER_OK) {
        coffer_store_rollback(o->st);
        goto out;
    }
    ops_event_init(&e, COFFER_AUDIT_USE, m, u->org, u->project, u->name);
    e.allowed = connected;
    e.reason = connected ? "granted" : outcome_reason(u);
    e.purpose_unexpected = connected && u->decision.purpose_unexpected;
    e.version = acc.found ? acc.current_version : 0;
    e.phase = acc.found ? in.phase : NULL;
    if (connected) {
        e.org_key_version = info.opened_org_key_version;
        e.mk_version = info.opened_mk_version;
    }
    if (where[0] != '\0') {
        (void)snprintf(detail, sizeof(detail), "%s%s%s", where,
                       outcome_name(u->outcome)[0] != '\0' ? " -> " : "", outcome_name(u->outcome));
        e.detail = detail;
    }
    if (u->purpose != NULL && coffer_authz_purpose_ok(u->purpose, u->purpose_len)) {
        e.purpose = u->purpose;
        e.purpose_len = u->purpose_len;
    }
    if ((r = coffer_store_audit_insert(o->st, &e, &id)) != COFFER_OK) {
        coffer_store_rollback(o->st);
        goto out;
    }
    r = coffer_store_commit(o->st);
out:
    if (r != COFFER_OK) {
        use_call_cleanup(u);
        u->outcome = USE_DENIED;
        u->decision = (struct coffer_authz_decision){.reason = COFFER_AUTHZ_NO_GRANT, .grant = -1};
    }
    coffer_arena_free(&arena);
    return r;
}

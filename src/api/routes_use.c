/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The handler of POST /v1/orgs/{org}/projects/{project}/credentials/{name}/use:
 * checks the body's shape (purpose, and a request of method, url, at most
 * USE_HEADERS_MAX headers whose names are tokens and whose values hold no
 * CR, LF or NUL, and an optional text body), runs the brokered use
 * (ops_use.c), and answers {"status", "headers", "body"} or a refusal with
 * its own error code. The answer holds only what the redactor let through;
 * this file never logs a header value, a URL or a body.
 */
#include "api/api_int.h"
#include "api/use_int.h"

#include "coffer/mem.h"
#include "coffer/text.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>

/* RFC 9110 token characters. */
static bool token_ok(const char *s, size_t len, size_t max)
{
    static const char extra[] = "!#$%&'*+-.^_`|~";

    if (len == 0 || len > max) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              (c != '\0' && strchr(extra, c) != NULL))) {
            return false;
        }
    }
    return true;
}

static bool value_ok(const char *s, size_t len)
{
    return len <= 8192 && memchr(s, '\r', len) == NULL && memchr(s, '\n', len) == NULL &&
           memchr(s, '\0', len) == NULL;
}

/* Reads "request" into u and hs; false when answered (400). */
static bool read_request(struct api_req *r, struct use_call *u, struct use_header *hs)
{
    static const char *const known[] = {"method", "url", "headers", "body", NULL};
    json_t *req = json_object_get(r->body, "request");
    json_t *method;
    json_t *url;
    json_t *headers;
    json_t *body;
    const char *key;
    json_t *v;

    if (!json_is_object(req)) {
        api_error(r, 400, "invalid_request", "'request' must be an object");
        return false;
    }
    json_object_foreach(req, key, v)
    {
        bool ok = false;

        for (const char *const *k = known; *k != NULL; k++) {
            ok = ok || strcmp(*k, key) == 0;
        }
        if (!ok) {
            api_error(r, 400, "invalid_request",
                      "unknown field in 'request' (known: method, url, headers, body)");
            return false;
        }
    }
    method = json_object_get(req, "method");
    url = json_object_get(req, "url");
    headers = json_object_get(req, "headers");
    body = json_object_get(req, "body");
    if (!json_is_string(method) ||
        !token_ok(json_string_value(method), json_string_length(method), 16)) {
        api_error(r, 400, "invalid_request", "'request.method' must be an HTTP method");
        return false;
    }
    if (!json_is_string(url) || json_string_length(url) == 0) {
        api_error(r, 400, "invalid_request", "'request.url' must be a string");
        return false;
    }
    u->method = json_string_value(method);
    u->url = json_string_value(url);
    u->url_len = json_string_length(url);
    if (body != NULL && !json_is_null(body)) {
        if (!json_is_string(body) || json_string_length(body) > USE_BODY_MAX) {
            api_error(r, 400, "invalid_request",
                      "'request.body' must be text of at most 262144 "
                      "bytes");
            return false;
        }
        u->body = json_string_value(body);
        u->body_len = json_string_length(body);
    }
    if (headers == NULL || json_is_null(headers)) {
        return true;
    }
    if (!json_is_object(headers) || json_object_size(headers) > USE_HEADERS_MAX) {
        api_error(r, 400, "invalid_request",
                  "'request.headers' must be an object of at most 32 "
                  "headers");
        return false;
    }
    json_object_foreach(headers, key, v)
    {
        if (!token_ok(key, strlen(key), 128)) {
            api_error(r, 400, "invalid_request", "a header name is not an HTTP token");
            return false;
        }
        if (!json_is_string(v) || !value_ok(json_string_value(v), json_string_length(v))) {
            api_error(r, 400, "invalid_request",
                      "a header value must be a string without CR, LF or NUL");
            return false;
        }
        hs[u->n_headers].name = key;
        hs[u->n_headers].value = json_string_value(v);
        hs[u->n_headers].value_len = json_string_length(v);
        u->n_headers++;
    }
    u->headers = hs;
    return true;
}

/* The refusal of an outcome that is not USE_DONE. */
static void refused(struct api_req *r, const struct use_call *u)
{
    switch (u->outcome) {
    case USE_DENIED:
        api_error(r, 403, "permission_denied", "permission denied");
        return;
    case USE_NO_USAGE:
        api_error(r, 403, "no_usage", u->message);
        return;
    case USE_DEST_REFUSED:
        api_error(r, 403, "destination_refused", u->message);
        return;
    case USE_BAD_REQUEST:
        api_error(r, 400, "invalid_request", u->message);
        return;
    case USE_REDIRECT_REFUSED:
        api_error(r, 502, "redirect_refused", u->message);
        return;
    case USE_TOO_LARGE:
        api_error(r, 502, "upstream_too_large", u->message);
        return;
    case USE_UPSTREAM_FAILED:
        api_error(r, 502, "upstream_failed", u->message);
        return;
    case USE_REFRESH_FAILED:
        api_refresh_failed(r, &u->refresh);
        return;
    case USE_DONE:
    default:
        api_error(r, 500, "internal", "internal error");
        return;
    }
}

/* The body as "body" when it is UTF-8 text without NUL, else as "body_base64". */
static int set_body(json_t *out, const struct coffer_buf *b)
{
    const char *p = b->data != NULL ? (const char *)b->data : "";
    char *enc;
    int rc;

    if (coffer_utf8_ok(p, b->len) && memchr(p, '\0', b->len) == NULL) {
        return json_object_set_new(out, "body", json_stringn(p, b->len));
    }
    if ((enc = coffer_calloc(4 * ((b->len + 2) / 3) + 1, 1)) == NULL) {
        return -1;
    }
    (void)EVP_EncodeBlock((unsigned char *)enc, (const unsigned char *)p, (int)b->len);
    rc = json_object_set_new(out, "body_base64", json_string(enc));
    coffer_free(enc);
    return rc;
}

static void answer(struct api_req *r, const struct use_call *u)
{
    json_t *out = api_cred_json(r);
    json_t *hs = json_object();
    bool ok = out != NULL && hs != NULL;

    for (size_t i = 0; ok && i < u->n_resp_headers; i++) {
        const struct use_resp_header *h = &u->resp_headers[i];
        const char *v = h->value.data != NULL ? (const char *)h->value.data : "";
        json_t *old = json_object_get(hs, h->name);

        if (old != NULL && json_is_string(old)) {
            /* Repeated headers are joined as HTTP allows for lists. */
            char *joined = coffer_calloc(json_string_length(old) + h->value.len + 3, 1);

            ok = joined != NULL;
            if (ok) {
                (void)snprintf(joined, json_string_length(old) + h->value.len + 3, "%s, %.*s",
                               json_string_value(old), (int)h->value.len, v);
                ok = json_object_set_new(hs, h->name, json_string(joined)) == 0;
                coffer_free(joined);
            }
        } else {
            ok = json_object_set_new(hs, h->name, json_stringn(v, h->value.len)) == 0;
        }
    }
    if (!ok || json_object_set_new(out, "status", json_integer(u->status)) != 0 ||
        json_object_set_new(out, "headers", hs) != 0 || set_body(out, &u->resp_body) != 0) {
        json_decref(out);
        if (!ok) {
            json_decref(hs);
        }
        api_error(r, 500, "internal", "the upstream's answer could not be encoded");
        return;
    }
    if (u->decision.purpose_unexpected) {
        (void)json_object_set_new(out, "purpose_unexpected", json_true());
    }
    api_reply(r, 200, out);
}

void api_use(struct api_req *r)
{
    static const char *const known[] = {"purpose", "request", NULL};
    struct use_header hs[USE_HEADERS_MAX];
    struct use_call u;
    struct coffer_op_meta m = api_meta(r);
    enum coffer_err e;

    memset(&u, 0, sizeof(u));
    if (!api_only_fields(r, known) || !api_string_field(r, "purpose", &u.purpose, &u.purpose_len) ||
        !read_request(r, &u, hs)) {
        return;
    }
    u.org = r->params[0];
    u.project = r->params[1];
    u.name = r->params[2];
    e = coffer_op_use(r->api_ops, &m, &u);
    if (e != COFFER_OK) {
        use_call_cleanup(&u);
        api_fail_op(r, e);
        return;
    }
    if (u.outcome != USE_DONE) {
        refused(r, &u);
    } else {
        answer(r, &u);
    }
    use_call_cleanup(&u);
}

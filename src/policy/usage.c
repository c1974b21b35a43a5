/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Usage specs of credential rules: the rules a destination, a method, an
 * injected header or query parameter must follow (shared by the YAML loader
 * and by the reader of stored specs), the split of a destination URL into
 * the parts the broker checks, and the canonical JSON a spec is stored as.
 * A destination is judged by the broker's own checker, so that a policy can
 * never hold a destination the broker would refuse to match. This file
 * holds templates, never the values they are filled with.
 */
#include "coffer/policy.h"

#include "coffer/broker.h"
#include "coffer/mem.h"
#include "policy/policy_int.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- Methods, header and query names ---- */

/* The methods a usage spec may allow, in their canonical order. */
static const char *const methods[] = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"};

#define N_METHODS (sizeof(methods) / sizeof(methods[0]))

int coffer_policy_method_rank(const char *s, size_t len)
{
    for (size_t i = 0; i < N_METHODS; i++) {
        if (strlen(methods[i]) == len && strncmp(methods[i], s, len) == 0) {
            return (int)i;
        }
    }
    return -1;
}

/* Headers that describe the connection or the message framing: Coffer sets them itself. */
static const char *const reserved_headers[] = {"Host", "Content-Length", "Transfer-Encoding",
                                               "Connection"};

/* RFC 9110 tchar: "!#$%&'*+-.^_`|~", digits and letters. */
static bool tchar(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

const char *coffer_policy_header_problem(const char *s, size_t len)
{
    if (len == 0) {
        return "is empty";
    }
    if (len > COFFER_POLICY_HEADER_NAME_MAX) {
        return "is longer than 128 bytes";
    }
    for (size_t i = 0; i < len; i++) {
        if (!tchar((unsigned char)s[i])) {
            return "is not an HTTP token (letters, digits and !#$%&'*+-.^_`|~ only)";
        }
    }
    for (size_t i = 0; i < sizeof(reserved_headers) / sizeof(reserved_headers[0]); i++) {
        if (strlen(reserved_headers[i]) == len && strncasecmp(reserved_headers[i], s, len) == 0) {
            return "is set by Coffer itself (Host, Content-Length, Transfer-Encoding and "
                   "Connection cannot be injected)";
        }
    }
    return NULL;
}

const char *coffer_policy_query_problem(const char *s, size_t len)
{
    if (len == 0 || len > COFFER_POLICY_QUERY_NAME_MAX) {
        return "must be 1 to 64 bytes";
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '~' || c == '-')) {
            return "may hold only letters, digits and . _ ~ -";
        }
    }
    return NULL;
}

bool coffer_policy_same_inject(bool query_a, const char *a, bool query_b, const char *b)
{
    if (query_a != query_b) {
        return false;
    }
    /* Header names are case-insensitive; query parameter names are not. */
    return query_a ? strcmp(a, b) == 0 : strcasecmp(a, b) == 0;
}

/* ---- Destinations ---- */

/* The port of len digits at s: 1..65535 without leading zeros; 0 if it is none. */
static uint16_t port_of(const char *s, size_t len)
{
    unsigned long v = 0;

    if (len == 0 || len > 5 || s[0] == '0') {
        return 0;
    }
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return 0;
        }
        v = v * 10 + (unsigned long)(s[i] - '0');
    }
    return v <= 65535 ? (uint16_t)v : 0;
}

enum coffer_err coffer_policy_dest_split(struct coffer_arena *a, const char *url, size_t len,
                                         struct coffer_broker_dest *out)
{
    static const char https[] = "https://";
    const char *auth;
    const char *end;
    const char *host_end;
    const char *host;
    const char *path = NULL;
    size_t auth_len;
    uint16_t port = 0;

    if (out == NULL || a == NULL || url == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "destination: nothing to split");
    }
    memset(out, 0, sizeof(*out));
    if (len > COFFER_POLICY_DEST_MAX) {
        return coffer_err_set(COFFER_E_INVALID, "is %zu bytes; the limit is %u", len,
                              COFFER_POLICY_DEST_MAX);
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)url[i];

        if (c <= 0x20 || c >= 0x7F) {
            return coffer_err_set(COFFER_E_INVALID,
                                  "holds a space, a control character or a byte outside ASCII "
                                  "(write an international host name as punycode, xn--...)");
        }
    }
    if (len >= 7 && strncasecmp(url, "http://", 7) == 0) {
        return coffer_err_set(COFFER_E_INVALID, "must use https, not http");
    }
    if (len < sizeof(https) - 1 || strncmp(url, https, sizeof(https) - 1) != 0) {
        return coffer_err_set(COFFER_E_INVALID, "must start with https://");
    }
    if (memchr(url, '?', len) != NULL) {
        return coffer_err_set(
            COFFER_E_INVALID,
            "holds a query ('?'); a destination is a host, a port and a path prefix only");
    }
    if (memchr(url, '#', len) != NULL) {
        return coffer_err_set(COFFER_E_INVALID, "holds a fragment ('#')");
    }
    auth = url + sizeof(https) - 1;
    end = url + len;
    path = memchr(auth, '/', (size_t)(end - auth));
    auth_len = (size_t)((path != NULL ? path : end) - auth);
    if (memchr(auth, '@', auth_len) != NULL) {
        return coffer_err_set(COFFER_E_INVALID, "holds user info ('@')");
    }
    if (auth_len == 0) {
        return coffer_err_set(COFFER_E_INVALID, "has no host");
    }
    if (auth[0] == '[') {
        const char *close = memchr(auth, ']', auth_len);

        if (close == NULL) {
            return coffer_err_set(COFFER_E_INVALID, "has an IPv6 address without its ']'");
        }
        host_end = close + 1;
    } else {
        host_end = memchr(auth, ':', auth_len);
        if (host_end == NULL) {
            host_end = auth + auth_len;
        }
    }
    if (host_end < auth + auth_len) {
        const char *p = host_end + 1;
        size_t plen = (size_t)(auth + auth_len - p);

        if (*host_end != ':' || (port = port_of(p, plen)) == 0) {
            return coffer_err_set(
                COFFER_E_INVALID,
                "has a port that is not a number from 1 to 65535 without leading zeros");
        }
    }
    host = coffer_arena_strndup(a, auth, (size_t)(host_end - auth));
    out->path_prefix = path != NULL ? coffer_arena_strndup(a, path, (size_t)(end - path)) : NULL;
    if (host == NULL || (path != NULL && out->path_prefix == NULL)) {
        return coffer_err_set(COFFER_E_NOMEM, "splitting a destination");
    }
    out->scheme = "https";
    out->host = host;
    out->port = port;
    if (coffer_broker_dest_validate(out) != COFFER_OK) {
        char why[256];

        snprintf(why, sizeof(why), "%s", coffer_err_detail());
        memset(out, 0, sizeof(*out));
        return coffer_err_set(COFFER_E_INVALID, "is refused by the broker: %s", why);
    }
    return COFFER_OK;
}

/* ---- Canonical JSON ---- */

static int str_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* A JSON string: the text is ASCII, so only quotes, backslashes and controls need escapes. */
static enum coffer_err put_json_str(struct coffer_buf *b, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    enum coffer_err r = coffer_buf_put(b, "\"", 1);

    for (const unsigned char *c = (const unsigned char *)s; r == COFFER_OK && *c != '\0'; c++) {
        if (*c == '"' || *c == '\\') {
            char esc[2] = {'\\', (char)*c};

            r = coffer_buf_put(b, esc, 2);
        } else if (*c < 0x20) {
            char esc[6] = {'\\', 'u', '0', '0', hex[*c >> 4], hex[*c & 0x0F]};

            r = coffer_buf_put(b, esc, 6);
        } else {
            r = coffer_buf_put(b, c, 1);
        }
    }
    if (r == COFFER_OK) {
        r = coffer_buf_put(b, "\"", 1);
    }
    return r;
}

static enum coffer_err put_raw(struct coffer_buf *b, const char *s)
{
    return coffer_buf_put(b, s, strlen(s));
}

static enum coffer_err write_usage(const struct coffer_policy_usage *u, const char **dests,
                                   struct coffer_buf *b)
{
    enum coffer_err r = put_raw(b, "{\"destinations\":[");
    bool first = true;

    for (size_t i = 0; r == COFFER_OK && i < u->n_destinations; i++) {
        if (i > 0) {
            r = put_raw(b, ",");
        }
        if (r == COFFER_OK) {
            r = put_json_str(b, dests[i]);
        }
    }
    if (r == COFFER_OK) {
        r = put_raw(b, "],\"methods\":[");
    }
    /* Canonical order: each known method once, where the spec lists it. */
    for (size_t m = 0; r == COFFER_OK && m < N_METHODS; m++) {
        bool listed = false;

        for (size_t i = 0; i < u->n_methods && !listed; i++) {
            listed = u->methods[i] != NULL && strcmp(u->methods[i], methods[m]) == 0;
        }
        if (listed) {
            if (!first) {
                r = put_raw(b, ",");
            }
            first = false;
            if (r == COFFER_OK) {
                r = put_json_str(b, methods[m]);
            }
        }
    }
    if (r == COFFER_OK) {
        r = put_raw(b, "],\"inject\":[");
    }
    for (size_t i = 0; r == COFFER_OK && i < u->n_inject; i++) {
        const struct coffer_policy_inject *in = &u->inject[i];

        if ((r = put_raw(b, i > 0 ? ",{" : "{")) == COFFER_OK &&
            (r = put_raw(b, in->query ? "\"query\":" : "\"header\":")) == COFFER_OK &&
            (r = put_json_str(b, in->name)) == COFFER_OK &&
            (r = put_raw(b, ",\"value\":")) == COFFER_OK &&
            (r = put_json_str(b, in->value)) == COFFER_OK) {
            r = put_raw(b, "}");
        }
    }
    if (r == COFFER_OK) {
        r = put_raw(b, "]}");
    }
    return r;
}

enum coffer_err coffer_policy_usage_json(const struct coffer_policy_usage *u,
                                         struct coffer_buf *out)
{
    const char **dests = NULL;
    size_t start;
    enum coffer_err r;

    if (u == NULL || out == NULL || (u->n_destinations > 0 && u->destinations == NULL) ||
        (u->n_methods > 0 && u->methods == NULL) || (u->n_inject > 0 && u->inject == NULL)) {
        return coffer_err_set(COFFER_E_INVALID, "writing a usage spec: no spec or no output");
    }
    for (size_t i = 0; i < u->n_destinations; i++) {
        if (u->destinations[i].url == NULL) {
            return coffer_err_set(COFFER_E_INVALID,
                                  "writing a usage spec: destination %zu is missing", i);
        }
    }
    for (size_t i = 0; i < u->n_inject; i++) {
        if (u->inject[i].name == NULL || u->inject[i].value == NULL) {
            return coffer_err_set(COFFER_E_INVALID,
                                  "writing a usage spec: inject %zu is incomplete", i);
        }
    }
    dests = coffer_calloc(u->n_destinations + 1, sizeof(*dests));
    if (dests == NULL) {
        return coffer_err_set(COFFER_E_NOMEM, "writing a usage spec");
    }
    for (size_t i = 0; i < u->n_destinations; i++) {
        dests[i] = u->destinations[i].url;
    }
    if (u->n_destinations > 1) {
        qsort(dests, u->n_destinations, sizeof(*dests), str_cmp);
    }
    start = out->len;
    r = write_usage(u, dests, out);
    if (r == COFFER_OK && out->len - start > COFFER_POLICY_USAGE_JSON_MAX) {
        r = coffer_err_set(COFFER_E_LIMIT, "a usage spec of %zu bytes; the limit is %u",
                           out->len - start, COFFER_POLICY_USAGE_JSON_MAX);
    } else if (r != COFFER_OK) {
        r = coffer_err_wrap(r, "writing a usage spec");
    }
    if (r != COFFER_OK) {
        out->len = start;
    }
    coffer_free(dests);
    return r;
}

/* ---- Reading stored JSON ---- */

/* The string of v copied into a; NULL (with *why set) if v is not a string of 1..max bytes. */
static const char *json_str(struct coffer_arena *a, const json_t *v, size_t max, const char **why)
{
    const char *s;

    if (!json_is_string(v)) {
        *why = "is not a string";
        return NULL;
    }
    s = json_string_value(v);
    if (json_string_length(v) == 0 || json_string_length(v) > max ||
        strlen(s) != json_string_length(v)) {
        *why = "is empty, too long or holds NUL";
        return NULL;
    }
    s = coffer_arena_strndup(a, s, json_string_length(v));
    if (s == NULL) {
        *why = "could not be copied (out of memory)";
    }
    return s;
}

static enum coffer_err read_dests(struct coffer_arena *a, const json_t *arr,
                                  struct coffer_policy_usage *u)
{
    size_t n = json_is_array(arr) ? json_array_size(arr) : 0;
    const char *why = NULL;
    enum coffer_err r;

    if (n < 1 || n > COFFER_POLICY_DESTS_MAX) {
        return coffer_err_set(COFFER_E_INVALID,
                              "usage spec: destinations must be an array of 1 to 16 strings");
    }
    if ((u->destinations = coffer_arena_alloc(a, n, sizeof(*u->destinations))) == NULL) {
        return coffer_err_set(COFFER_E_NOMEM, "reading a usage spec");
    }
    for (size_t i = 0; i < n; i++) {
        struct coffer_broker_dest d;
        const char *url = json_str(a, json_array_get(arr, i), COFFER_POLICY_DEST_MAX, &why);

        if (url == NULL) {
            return coffer_err_set(COFFER_E_INVALID, "usage spec: destination %zu %s", i, why);
        }
        if ((r = coffer_policy_dest_split(a, url, strlen(url), &d)) != COFFER_OK) {
            return coffer_err_wrap(r, "usage spec: destination %zu", i);
        }
        for (size_t k = 0; k < i; k++) {
            if (strcmp(u->destinations[k].url, url) == 0) {
                return coffer_err_set(COFFER_E_INVALID,
                                      "usage spec: destination %zu is listed twice", i);
            }
        }
        u->destinations[i].url = url;
    }
    u->n_destinations = n;
    return COFFER_OK;
}

static enum coffer_err read_methods(struct coffer_arena *a, const json_t *arr,
                                    struct coffer_policy_usage *u)
{
    size_t n = json_is_array(arr) ? json_array_size(arr) : 0;
    const char *why = NULL;

    if (n < 1 || n > COFFER_POLICY_METHODS_MAX) {
        return coffer_err_set(COFFER_E_INVALID,
                              "usage spec: methods must be an array of 1 to 8 strings");
    }
    if ((u->methods = coffer_arena_alloc(a, n, sizeof(*u->methods))) == NULL) {
        return coffer_err_set(COFFER_E_NOMEM, "reading a usage spec");
    }
    for (size_t i = 0; i < n; i++) {
        const char *m = json_str(a, json_array_get(arr, i), 16, &why);

        if (m == NULL) {
            return coffer_err_set(COFFER_E_INVALID, "usage spec: method %zu %s", i, why);
        }
        if (coffer_policy_method_rank(m, strlen(m)) < 0) {
            return coffer_err_set(COFFER_E_INVALID,
                                  "usage spec: method %zu is not one Coffer allows", i);
        }
        for (size_t k = 0; k < i; k++) {
            if (strcmp(u->methods[k], m) == 0) {
                return coffer_err_set(COFFER_E_INVALID, "usage spec: method %s is listed twice", m);
            }
        }
        u->methods[i] = m;
    }
    u->n_methods = n;
    return COFFER_OK;
}

static enum coffer_err read_inject_one(struct coffer_arena *a, const json_t *o, size_t i,
                                       struct coffer_policy_inject *in)
{
    const json_t *h = json_object_get(o, "header");
    const json_t *q = json_object_get(o, "query");
    const json_t *v = json_object_get(o, "value");
    const char *why = NULL;

    if (!json_is_object(o) || json_object_size(o) != 2 || v == NULL || (h == NULL) == (q == NULL)) {
        return coffer_err_set(
            COFFER_E_INVALID,
            "usage spec: inject %zu must be an object with header or query, and value", i);
    }
    in->query = q != NULL;
    in->name =
        json_str(a, q != NULL ? q : h,
                 q != NULL ? COFFER_POLICY_QUERY_NAME_MAX : COFFER_POLICY_HEADER_NAME_MAX, &why);
    if (in->name == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "usage spec: the name of inject %zu %s", i, why);
    }
    why = in->query ? coffer_policy_query_problem(in->name, strlen(in->name))
                    : coffer_policy_header_problem(in->name, strlen(in->name));
    if (why != NULL) {
        return coffer_err_set(COFFER_E_INVALID, "usage spec: the name of inject %zu %s", i, why);
    }
    in->value = json_str(a, v, COFFER_BROKER_TEMPLATE_MAX, &why);
    if (in->value == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "usage spec: the value of inject %zu %s", i, why);
    }
    if (coffer_broker_template_check(in->value, strlen(in->value)) != COFFER_OK) {
        /* Over-long templates were refused above: any failure here is the syntax. */
        return coffer_err_wrap(COFFER_E_INVALID, "usage spec: the value of inject %zu", i);
    }
    return COFFER_OK;
}

static enum coffer_err read_inject(struct coffer_arena *a, const json_t *arr,
                                   struct coffer_policy_usage *u)
{
    size_t n = json_is_array(arr) ? json_array_size(arr) : 0;
    enum coffer_err r;

    if (!json_is_array(arr) || n > COFFER_POLICY_INJECTS_MAX) {
        return coffer_err_set(COFFER_E_INVALID, "usage spec: inject must be an array of at most "
                                                "8 objects");
    }
    if (n == 0) {
        return COFFER_OK;
    }
    if ((u->inject = coffer_arena_alloc(a, n, sizeof(*u->inject))) == NULL) {
        return coffer_err_set(COFFER_E_NOMEM, "reading a usage spec");
    }
    for (size_t i = 0; i < n; i++) {
        struct coffer_policy_inject *in = &u->inject[i];

        if ((r = read_inject_one(a, json_array_get(arr, i), i, in)) != COFFER_OK) {
            return r;
        }
        for (size_t k = 0; k < i; k++) {
            if (coffer_policy_same_inject(u->inject[k].query, u->inject[k].name, in->query,
                                          in->name)) {
                return coffer_err_set(COFFER_E_INVALID,
                                      "usage spec: inject %zu names the same "
                                      "%s as inject %zu",
                                      i, in->query ? "query parameter" : "header", k);
            }
        }
    }
    u->n_inject = n;
    return COFFER_OK;
}

enum coffer_err coffer_policy_usage_from_json(struct coffer_arena *a, const char *json, size_t len,
                                              const struct coffer_policy_usage **out)
{
    struct coffer_policy_usage *u;
    json_error_t jerr;
    json_t *root = NULL;
    const json_t *inject;
    enum coffer_err r;

    if (out != NULL) {
        *out = NULL;
    }
    if (a == NULL || json == NULL || out == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "reading a usage spec: nothing to read");
    }
    if (len > COFFER_POLICY_USAGE_JSON_MAX) {
        return coffer_err_set(COFFER_E_INVALID, "usage spec of %zu bytes; the limit is %u", len,
                              COFFER_POLICY_USAGE_JSON_MAX);
    }
    root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "usage spec is not JSON (line %d, column %d)",
                              jerr.line, jerr.column);
    }
    inject = json_object_get(root, "inject");
    if (!json_is_object(root) || json_object_size(root) != 3 || inject == NULL) {
        r = coffer_err_set(
            COFFER_E_INVALID,
            "usage spec must be an object with exactly destinations, methods and inject");
        goto out;
    }
    if ((u = coffer_arena_alloc(a, 1, sizeof(*u))) == NULL) {
        r = coffer_err_set(COFFER_E_NOMEM, "reading a usage spec");
        goto out;
    }
    if ((r = read_dests(a, json_object_get(root, "destinations"), u)) != COFFER_OK ||
        (r = read_methods(a, json_object_get(root, "methods"), u)) != COFFER_OK ||
        (r = read_inject(a, inject, u)) != COFFER_OK) {
        goto out;
    }
    *out = u;
out:
    json_decref(root);
    return r;
}

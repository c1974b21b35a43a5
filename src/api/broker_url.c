/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Destinations of brokered calls (see coffer/broker.h): the strict URL
 * parser and its canonical form, the resolution of redirect references, and
 * the matching of a URL against the allowed destinations of a usage spec.
 *
 * Everything here is a pure function of its arguments: it never resolves a
 * name, opens a connection or reads a file. It never normalises a path into
 * scope: a dot segment is refused, not removed, because a checker that
 * cleans up a path and a server that cleans it up differently disagree
 * about where a request goes. Matching checks its arguments again rather
 * than trusting that they came through the parser. An error detail quotes
 * at most a short, sanitised prefix of the scheme and authority, never the
 * path or query, which may hold a value an upstream echoed into a redirect.
 */
#include "coffer/broker.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "coffer/mem.h"

#define SHOWN_MAX 40     /* bytes of the input an error detail may quote */
#define LABEL_MAX 63     /* bytes of one DNS label */
#define DEFAULT_PORT 443 /* https */
#define HTTPS "https"

/* ---- Error details -------------------------------------------------------------- */

/*
 * Writes the scheme and authority of url (at most SHOWN_MAX bytes of it) into
 * out as printable ASCII, every other byte (and '"' and '\') as '?', and
 * "..." when anything was left out.
 */
static void sanitise(const char *url, size_t len, char *out, size_t cap)
{
    size_t shown = len < SHOWN_MAX ? len : SHOWN_MAX;
    size_t from = 0;
    size_t o = 0;

    /* Stop before the path or query: only the scheme and authority are quoted. */
    for (size_t i = 0; i + 2 < shown; i++) {
        if (url[i] == ':' && url[i + 1] == '/' && url[i + 2] == '/') {
            from = i + 3;
            break;
        }
    }
    for (size_t i = from; i < shown; i++) {
        if (url[i] == '/' || url[i] == '?') {
            shown = i;
            break;
        }
    }
    for (size_t i = 0; i < shown && o + 1 < cap; i++) {
        unsigned char c = (unsigned char)url[i];

        out[o++] = (c > 0x20 && c < 0x7f && c != '"' && c != '\\') ? (char)c : '?';
    }
    for (size_t i = 0; shown < len && i < 3 && o + 1 < cap; i++) {
        out[o++] = '.';
    }
    out[o] = '\0';
}

/* Records why url is refused and returns code. */
COFFER_PRINTF(4, 5)
static enum coffer_err refuse(enum coffer_err code, const char *url, size_t len, const char *fmt,
                              ...)
{
    char shown[SHOWN_MAX + 4];
    char why[256];
    va_list ap;

    sanitise(url, len, shown, sizeof(shown));
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    return coffer_err_set(code, "URL \"%s\": %s", shown, why);
}

/* ---- Character classes ---------------------------------------------------------- */

static bool is_alpha(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static int hex_value(unsigned char c)
{
    if (is_digit(c)) {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

/* RFC 3986 pchar without pct-encoded: unreserved, sub-delims, ':' and '@'. */
static bool is_pchar(unsigned char c)
{
    if (is_alpha(c) || is_digit(c)) {
        return true;
    }
    return c != '\0' && strchr("-._~!$&'()*+,;=:@", c) != NULL;
}

/*
 * Reads the percent-escape at s[i] ('%' and two hex digits, all before end)
 * into *b. False if it is malformed or cut off.
 */
static bool read_escape(const char *s, size_t i, size_t end, unsigned char *b)
{
    int hi;
    int lo;

    if (end - i < 3) {
        return false;
    }
    hi = hex_value((unsigned char)s[i + 1]);
    lo = hex_value((unsigned char)s[i + 2]);
    if (hi < 0 || lo < 0) {
        return false;
    }
    *b = (unsigned char)(hi * 16 + lo);
    return true;
}

/* ---- Hosts ---------------------------------------------------------------------- */

/* An IPv6 literal "[...]" (n bytes at h) in canonical form into canon; NULL or the problem. */
static const char *ipv6_problem(const char *h, size_t n, char *canon)
{
    char inner[INET6_ADDRSTRLEN];
    unsigned char addr[16];
    char text[INET6_ADDRSTRLEN];

    if (n < 2 || h[n - 1] != ']') {
        return "IPv6 literal without its closing ']'";
    }
    if (n - 2 == 0 || n - 2 >= sizeof(inner)) {
        return "IPv6 literal of impossible length";
    }
    for (size_t i = 1; i + 1 < n; i++) {
        unsigned char c = (unsigned char)h[i];

        if (hex_value(c) < 0 && c != ':' && c != '.') {
            return "IPv6 literal holds a byte other than hex digits, ':' and '.' (zones and "
                   "IPvFuture are refused)";
        }
    }
    coffer_memcpy(inner, h + 1, n - 2);
    inner[n - 2] = '\0';
    if (inet_pton(AF_INET6, inner, addr) != 1) {
        return "not an IPv6 address";
    }
    if (inet_ntop(AF_INET6, addr, text, sizeof(text)) == NULL) {
        return "IPv6 address cannot be written back";
    }
    snprintf(canon, COFFER_BROKER_HOST_MAX + 1, "[%s]", text);
    return NULL;
}

/* Whether the n bytes at h are a dotted-quad IPv4 address in the one spelling inet_ntop gives. */
static bool ipv4_canonical(const char *h, size_t n)
{
    char text[INET_ADDRSTRLEN];
    char back[INET_ADDRSTRLEN];
    unsigned char addr[4];

    if (n >= sizeof(text)) {
        return false;
    }
    coffer_memcpy(text, h, n);
    text[n] = '\0';
    if (inet_pton(AF_INET, text, addr) != 1) {
        return false;
    }
    if (inet_ntop(AF_INET, addr, back, sizeof(back)) == NULL) {
        return false;
    }
    return strcmp(text, back) == 0;
}

/*
 * Checks the n bytes at h as a host (a DNS name, a dotted-quad IPv4 address
 * or a bracketed IPv6 literal) and writes its canonical form into canon
 * (COFFER_BROKER_HOST_MAX + 1 bytes). NULL or the problem. *labels receives
 * the number of labels of a DNS name (0 for an address).
 */
static const char *host_problem(const char *h, size_t n, char *canon, size_t *labels)
{
    size_t label_len = 0;
    size_t last_label = 0;

    *labels = 0;
    if (n == 0) {
        return "no host";
    }
    if (h[0] == '[') {
        return ipv6_problem(h, n, canon);
    }
    if (n > COFFER_BROKER_HOST_MAX) {
        return "host longer than 253 bytes";
    }
    if (h[n - 1] == '.') {
        return "trailing dot on the host (write it without the dot)";
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)h[i];

        if (c >= 0x80) {
            return "non-ASCII host (give an internationalised name as punycode, xn--)";
        }
        if (c == '.') {
            if (label_len == 0) {
                return "empty label in the host";
            }
            if (h[i - 1] == '-') {
                return "host label ends with '-'";
            }
            label_len = 0;
            last_label = i + 1;
            continue;
        }
        if (!is_alpha(c) && !is_digit(c) && c != '-') {
            return "host holds a byte other than letters, digits, '-' and '.'";
        }
        if (label_len == 0 && c == '-') {
            return "host label starts with '-'";
        }
        if (++label_len > LABEL_MAX) {
            return "host label longer than 63 bytes";
        }
        if (label_len == 1) {
            (*labels)++;
        }
        canon[i] = (char)((c >= 'A' && c <= 'Z') ? c - 'A' + 'a' : c);
    }
    if (h[n - 1] == '-') {
        return "host label ends with '-'";
    }
    /* No top-level domain starts with a digit: such a host is an address, in one spelling. */
    if (is_digit((unsigned char)h[last_label])) {
        if (!ipv4_canonical(h, n)) {
            return "numeric host is not a dotted-quad IPv4 address in canonical form";
        }
        *labels = 0;
    }
    for (size_t i = 0; i < n; i++) {
        if (h[i] == '.') {
            canon[i] = '.';
        }
    }
    canon[n] = '\0';
    return NULL;
}

/* ---- Paths and queries ---------------------------------------------------------- */

/*
 * Checks one path segment [s, e) of p: its bytes, its escapes, and that the
 * part before any ';' parameter is not dots only (or dots and spaces, which
 * some servers trim away). NULL or the problem.
 */
static const char *segment_problem(const char *p, size_t s, size_t e)
{
    size_t units = 0;
    bool dots_only = true;
    bool any_dot = false;
    bool in_param = false;

    for (size_t j = s; j < e;) {
        unsigned char b = (unsigned char)p[j];

        if (b == '%') {
            if (!read_escape(p, j, e, &b)) {
                return "malformed percent-escape in the path";
            }
            if (b == '/' || b == '\\') {
                return "percent-escape in the path decodes to '/' or '\\'";
            }
            if (b < 0x20 || b == 0x7f) {
                return "percent-escape in the path decodes to a control character";
            }
            j += 3;
        } else if (is_pchar(b)) {
            j++;
        } else {
            return "path holds a byte RFC 3986 does not allow there";
        }
        if (in_param) {
            continue;
        }
        if (b == ';') {
            in_param = true;
            continue;
        }
        units++;
        if (b == '.') {
            any_dot = true;
        } else if (b != ' ') {
            dots_only = false;
        }
    }
    if (units > 0 && any_dot && dots_only) {
        return "dot segment in the path ('.', '..' or dots only, raw or escaped)";
    }
    return NULL;
}

/* Checks the n bytes at p as a path. NULL or the problem. */
static const char *path_problem(const char *p, size_t n)
{
    size_t s = 1;

    if (n == 0 || p[0] != '/') {
        return "path does not start with '/'";
    }
    while (s <= n) {
        size_t e = s;
        const char *why;

        while (e < n && p[e] != '/') {
            e++;
        }
        if (e == s && e < n) {
            return "empty segment ('//') in the path";
        }
        if ((why = segment_problem(p, s, e)) != NULL) {
            return why;
        }
        s = e + 1;
    }
    return NULL;
}

/* Checks the n bytes at q as a query (without its '?'). NULL or the problem. */
static const char *query_problem(const char *q, size_t n)
{
    for (size_t j = 0; j < n;) {
        unsigned char b = (unsigned char)q[j];

        if (b == '%') {
            if (!read_escape(q, j, n, &b)) {
                return "malformed percent-escape in the query";
            }
            j += 3;
            continue;
        }
        if (!is_pchar(b) && b != '/' && b != '?') {
            return "query holds a byte RFC 3986 does not allow there";
        }
        j++;
    }
    return NULL;
}

/* ---- Parsing -------------------------------------------------------------------- */

/* Refuses the bytes no part of a URL may hold. */
static enum coffer_err check_bytes(const char *url, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)url[i];

        if (c == '\0') {
            return refuse(COFFER_E_INVALID, url, len, "NUL byte at offset %zu", i);
        }
        if (c < 0x20 || c == 0x7f) {
            return refuse(COFFER_E_INVALID, url, len, "control character at offset %zu", i);
        }
        if (c == ' ') {
            return refuse(COFFER_E_INVALID, url, len, "space at offset %zu (write it as %%20)", i);
        }
        if (c >= 0x80) {
            return refuse(COFFER_E_INVALID, url, len,
                          "non-ASCII byte at offset %zu (percent-encode it; give an "
                          "internationalised host as punycode, xn--)",
                          i);
        }
        if (c == '\\') {
            return refuse(COFFER_E_INVALID, url, len, "backslash at offset %zu", i);
        }
        if (c == '#') {
            return refuse(COFFER_E_INVALID, url, len, "fragment ('#' at offset %zu) is refused", i);
        }
    }
    return COFFER_OK;
}

/* Length of the RFC 3986 scheme at the start of s (before its ':'), or 0 if there is none. */
static size_t scheme_len(const char *s, size_t len)
{
    if (len == 0 || !is_alpha((unsigned char)s[0])) {
        return 0;
    }
    for (size_t i = 1; i < len; i++) {
        unsigned char c = (unsigned char)s[i];

        if (c == ':') {
            return i;
        }
        if (!is_alpha(c) && !is_digit(c) && c != '+' && c != '-' && c != '.') {
            return 0;
        }
    }
    return 0;
}

/* Checks the scheme and "//"; *auth receives the offset of the authority. */
static enum coffer_err parse_scheme(const char *url, size_t len, size_t *auth)
{
    size_t n = scheme_len(url, len);

    if (n == 0) {
        return refuse(COFFER_E_INVALID, url, len, "no scheme: only absolute https URLs are called");
    }
    if (n == 4 && strncasecmp(url, "http", 4) == 0) {
        return refuse(COFFER_E_INVALID, url, len, "scheme http is refused: only https");
    }
    if (n != 5 || strncasecmp(url, HTTPS, 5) != 0) {
        return refuse(COFFER_E_INVALID, url, len, "scheme is refused: only https");
    }
    if (len - n < 3 || url[n + 1] != '/' || url[n + 2] != '/') {
        return refuse(COFFER_E_INVALID, url, len, "no \"//\" and host after the scheme");
    }
    *auth = n + 3;
    return COFFER_OK;
}

/* Parses the n decimal digits at p as a port: 1 to 65535, no leading zero. */
static enum coffer_err parse_port(const char *url, size_t len, size_t off, size_t n, uint16_t *port)
{
    unsigned long v = 0;

    if (n == 0) {
        return refuse(COFFER_E_INVALID, url, len, "empty port after ':'");
    }
    for (size_t i = off; i < off + n; i++) {
        if (!is_digit((unsigned char)url[i])) {
            return refuse(COFFER_E_INVALID, url, len, "port holds a byte other than digits");
        }
    }
    if (n > 5 || url[off] == '0') {
        return refuse(COFFER_E_INVALID, url, len, "port must be 1 to 65535 without leading zeros");
    }
    for (size_t i = off; i < off + n; i++) {
        v = v * 10 + (unsigned long)(url[i] - '0');
    }
    if (v > 65535) {
        return refuse(COFFER_E_INVALID, url, len, "port must be 1 to 65535 without leading zeros");
    }
    *port = (uint16_t)v;
    return COFFER_OK;
}

/* Parses the authority [off, end) of url into u->host and u->port. */
static enum coffer_err parse_authority(const char *url, size_t len, size_t off, size_t end,
                                       struct coffer_broker_url *u)
{
    size_t host_end = end;
    size_t labels;
    const char *why;

    if (off == end) {
        return refuse(COFFER_E_INVALID, url, len, "no host");
    }
    if (memchr(url + off, '@', end - off) != NULL) {
        return refuse(COFFER_E_INVALID, url, len, "user info ('@' in the authority) is refused");
    }
    if (url[off] == '[') {
        const char *close = memchr(url + off, ']', end - off);

        host_end = close == NULL ? end : (size_t)(close - url) + 1;
        if (host_end < end && url[host_end] != ':') {
            return refuse(COFFER_E_INVALID, url, len, "bytes after the IPv6 literal");
        }
    } else {
        const char *colon = memchr(url + off, ':', end - off);

        host_end = colon == NULL ? end : (size_t)(colon - url);
    }
    if ((why = host_problem(url + off, host_end - off, u->host, &labels)) != NULL) {
        return refuse(COFFER_E_INVALID, url, len, "%s", why);
    }
    u->port = DEFAULT_PORT;
    if (host_end < end) {
        return parse_port(url, len, host_end + 1, end - host_end - 1, &u->port);
    }
    return COFFER_OK;
}

enum coffer_err coffer_broker_url_parse(const char *url, size_t len, struct coffer_broker_url *out)
{
    struct coffer_broker_url u;
    size_t auth = 0;
    size_t auth_end;
    size_t path_end;
    const char *why;
    enum coffer_err r;

    if (out == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "URL: no place for the result");
    }
    memset(&u, 0, sizeof(u));
    memset(out, 0, sizeof(*out));
    if (url == NULL || len == 0) {
        return coffer_err_set(COFFER_E_INVALID, "URL is empty");
    }
    if (len > COFFER_BROKER_URL_MAX) {
        return refuse(COFFER_E_LIMIT, url, len, "%zu bytes, limit %d", len, COFFER_BROKER_URL_MAX);
    }
    if ((r = check_bytes(url, len)) != COFFER_OK ||
        (r = parse_scheme(url, len, &auth)) != COFFER_OK) {
        return r;
    }
    for (auth_end = auth; auth_end < len; auth_end++) {
        if (url[auth_end] == '/' || url[auth_end] == '?') {
            break;
        }
    }
    if ((r = parse_authority(url, len, auth, auth_end, &u)) != COFFER_OK) {
        return r;
    }
    path_end = auth_end;
    while (path_end < len && url[path_end] != '?') {
        path_end++;
    }
    if (path_end > auth_end && (why = path_problem(url + auth_end, path_end - auth_end)) != NULL) {
        return refuse(COFFER_E_INVALID, url, len, "%s", why);
    }
    if (path_end < len && (why = query_problem(url + path_end + 1, len - path_end - 1)) != NULL) {
        return refuse(COFFER_E_INVALID, url, len, "%s", why);
    }
    coffer_memcpy(u.scheme, HTTPS, sizeof(HTTPS));
    u.path = path_end > auth_end ? coffer_strndup(url + auth_end, path_end - auth_end)
                                 : coffer_strdup("/");
    if (path_end < len) {
        u.query = coffer_strndup(url + path_end + 1, len - path_end - 1);
    }
    if (u.path == NULL || (path_end < len && u.query == NULL)) {
        coffer_broker_url_cleanup(&u);
        return coffer_err_set(COFFER_E_NOMEM, "URL of %zu bytes", len);
    }
    *out = u;
    return COFFER_OK;
}

void coffer_broker_url_cleanup(struct coffer_broker_url *u)
{
    if (u == NULL) {
        return;
    }
    if (u->path != NULL) {
        coffer_freezero(u->path, strlen(u->path));
    }
    if (u->query != NULL) {
        coffer_freezero(u->query, strlen(u->query));
    }
    coffer_wipe(u, sizeof(*u));
}

/* Whether u is something the parser could have produced. */
static bool url_valid(const struct coffer_broker_url *u)
{
    char canon[COFFER_BROKER_HOST_MAX + 1];
    size_t labels;
    size_t n = strnlen(u->host, sizeof(u->host));

    if (n == sizeof(u->host) || strcmp(u->scheme, HTTPS) != 0 || u->port == 0 || u->path == NULL) {
        return false;
    }
    if (host_problem(u->host, n, canon, &labels) != NULL || strcmp(canon, u->host) != 0) {
        return false;
    }
    if (path_problem(u->path, strlen(u->path)) != NULL) {
        return false;
    }
    return u->query == NULL || query_problem(u->query, strlen(u->query)) == NULL;
}

enum coffer_err coffer_broker_url_format(const struct coffer_broker_url *u, char **out)
{
    char port[8] = "";
    size_t n;

    if (out == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "URL: no place for the text");
    }
    *out = NULL;
    if (u == NULL || !url_valid(u)) {
        return coffer_err_set(COFFER_E_INVALID, "URL to format was not parsed");
    }
    if (u->port != DEFAULT_PORT) {
        snprintf(port, sizeof(port), ":%u", (unsigned)u->port);
    }
    n = strlen("https://") + strlen(u->host) + strlen(port) + strlen(u->path) +
        (u->query != NULL ? 1 + strlen(u->query) : 0) + 1;
    *out = coffer_calloc(1, n);
    if (*out == NULL) {
        return coffer_err_set(COFFER_E_NOMEM, "URL text of %zu bytes", n);
    }
    snprintf(*out, n, "https://%s%s%s%s%s", u->host, port, u->path, u->query != NULL ? "?" : "",
             u->query != NULL ? u->query : "");
    return COFFER_OK;
}

/* ---- References ----------------------------------------------------------------- */

/* Appends the NUL-terminated s to b. */
static enum coffer_err put_str(struct coffer_buf *b, const char *s)
{
    return coffer_buf_put(b, s, strlen(s));
}

/* Appends "https://host[:port]" of base to b. */
static enum coffer_err put_origin(struct coffer_buf *b, const struct coffer_broker_url *base)
{
    char port[8] = "";
    enum coffer_err r;

    if (base->port != DEFAULT_PORT) {
        snprintf(port, sizeof(port), ":%u", (unsigned)base->port);
    }
    if ((r = put_str(b, "https://")) != COFFER_OK || (r = put_str(b, base->host)) != COFFER_OK) {
        return r;
    }
    return put_str(b, port);
}

/* Writes the absolute form of ref (len bytes) against base into b, unchecked. */
static enum coffer_err compose(const struct coffer_broker_url *base, const char *ref, size_t len,
                               struct coffer_buf *b)
{
    enum coffer_err r = COFFER_OK;

    if (scheme_len(ref, len) > 0) {
        return coffer_buf_put(b, ref, len);
    }
    if (len >= 2 && ref[0] == '/' && ref[1] == '/') {
        if ((r = put_str(b, "https:")) != COFFER_OK) {
            return r;
        }
        return coffer_buf_put(b, ref, len);
    }
    if ((r = put_origin(b, base)) != COFFER_OK) {
        return r;
    }
    if (ref[0] == '?') {
        r = put_str(b, base->path);
    } else if (ref[0] != '/') {
        /* A relative path replaces the last segment of the base path. */
        const char *slash = strrchr(base->path, '/');

        r = coffer_buf_put(b, base->path, (size_t)(slash - base->path) + 1);
    }
    if (r != COFFER_OK) {
        return r;
    }
    return coffer_buf_put(b, ref, len);
}

enum coffer_err coffer_broker_url_resolve(const struct coffer_broker_url *base, const char *ref,
                                          size_t len, struct coffer_broker_url *out)
{
    struct coffer_buf b = {0};
    enum coffer_err r;

    if (out == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "URL: no place for the result");
    }
    memset(out, 0, sizeof(*out));
    if (base == NULL || !url_valid(base)) {
        return coffer_err_set(COFFER_E_INVALID, "base URL was not parsed");
    }
    if (ref == NULL || len == 0) {
        return coffer_err_set(COFFER_E_INVALID, "URL reference is empty");
    }
    if (len > COFFER_BROKER_URL_MAX) {
        return coffer_err_set(COFFER_E_LIMIT, "URL reference of %zu bytes, limit %d", len,
                              COFFER_BROKER_URL_MAX);
    }
    b.max = 2 * COFFER_BROKER_URL_MAX;
    if ((r = compose(base, ref, len, &b)) == COFFER_OK) {
        r = coffer_broker_url_parse((const char *)b.data, b.len, out);
    }
    coffer_buf_cleanup(&b);
    return r;
}

/* ---- Destinations --------------------------------------------------------------- */

/*
 * Checks d and writes its canonical host (without any "*.") into canon;
 * *wildcard says whether it started with "*.". NULL or the problem.
 */
static const char *dest_problem(const struct coffer_broker_dest *d, char *canon, bool *wildcard)
{
    const char *host;
    const char *prefix;
    size_t labels;
    const char *why;

    if (d->scheme == NULL || strcasecmp(d->scheme, HTTPS) != 0) {
        return "scheme must be https";
    }
    if (d->host == NULL) {
        return "no host";
    }
    host = d->host;
    *wildcard = strncmp(host, "*.", 2) == 0;
    if (*wildcard) {
        host += 2;
    }
    if ((why = host_problem(host, strlen(host), canon, &labels)) != NULL) {
        return why;
    }
    if (*wildcard && labels < 2) {
        return "a wildcard host needs a name of two labels or more after \"*.\"";
    }
    prefix = d->path_prefix;
    if (prefix != NULL && prefix[0] != '\0') {
        if (strpbrk(prefix, "?#") != NULL) {
            return "path prefix holds '?' or '#'";
        }
        if ((why = path_problem(prefix, strlen(prefix))) != NULL) {
            return why;
        }
    }
    return NULL;
}

enum coffer_err coffer_broker_dest_validate(const struct coffer_broker_dest *d)
{
    char canon[COFFER_BROKER_HOST_MAX + 1];
    bool wildcard;
    const char *why;

    if (d == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "destination is missing");
    }
    if ((why = dest_problem(d, canon, &wildcard)) != NULL) {
        return coffer_err_set(COFFER_E_INVALID, "destination: %s", why);
    }
    return COFFER_OK;
}

/* Whether path lies at or below prefix ("" or NULL meaning "/"). */
static bool path_within(const char *path, const char *prefix)
{
    size_t n;

    if (prefix == NULL || prefix[0] == '\0') {
        prefix = "/";
    }
    n = strlen(prefix);
    if (strncmp(path, prefix, n) != 0) {
        return false;
    }
    return path[n] == '\0' || path[n] == '/' || prefix[n - 1] == '/';
}

bool coffer_broker_dest_match(const struct coffer_broker_dest *d, const struct coffer_broker_url *u)
{
    char canon[COFFER_BROKER_HOST_MAX + 1];
    bool wildcard = false;
    uint16_t port;

    if (d == NULL || u == NULL || !url_valid(u) || dest_problem(d, canon, &wildcard) != NULL) {
        return false;
    }
    port = d->port != 0 ? d->port : DEFAULT_PORT;
    if (u->port != port) {
        return false;
    }
    if (wildcard) {
        size_t hl = strlen(u->host);
        size_t cl = strlen(canon);

        /* At least one label, then ".", then the name: never the bare name itself. */
        if (u->host[0] == '[' || hl < cl + 2 || u->host[hl - cl - 1] != '.' ||
            strcmp(u->host + hl - cl, canon) != 0) {
            return false;
        }
    } else if (strcmp(u->host, canon) != 0) {
        return false;
    }
    return path_within(u->path, d->path_prefix);
}

bool coffer_broker_dests_allow(const struct coffer_broker_dest *d, size_t n,
                               const struct coffer_broker_url *u)
{
    if (d == NULL) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (coffer_broker_dest_match(&d[i], u)) {
            return true;
        }
    }
    return false;
}

enum coffer_err coffer_broker_redirect_check(const struct coffer_broker_url *current,
                                             const char *location, size_t len,
                                             const struct coffer_broker_dest *dests, size_t n,
                                             bool *allowed, struct coffer_broker_url *next)
{
    enum coffer_err r;

    if (allowed == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "redirect: no place for the decision");
    }
    *allowed = false;
    if ((r = coffer_broker_url_resolve(current, location, len, next)) != COFFER_OK) {
        return coffer_err_wrap(r, "redirect Location");
    }
    *allowed = coffer_broker_dests_allow(dests, n, next);
    return COFFER_OK;
}

/* SPDX-License-Identifier: Apache-2.0 */
/*
 * cofferd's configuration file (docs/config.md) into struct coffer_config:
 * reading the file (bounded, regular files only), walking its YAML tree
 * (coffer/ytree.h) key by key, checking every value against its rule, and
 * resolving relative paths against the file's directory. Every problem is a
 * diagnostic at its position and the walk goes on, so that an operator sees
 * all of a file's problems at once; a file with any problem is refused whole
 * and the caller's struct is left zeroed.
 *
 * The configuration says where secrets are (a PIN source, libpq's password
 * file), never what they are: a database connection string that carries a
 * password is refused, and the values of pin_source and database are never
 * quoted back in a diagnostic, because either may be a misplaced PIN or
 * password.
 */
#include "coffer/config.h"

#include "coffer/mem.h"
#include "coffer/text.h"
#include "coffer/ytree.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CONFIG_FILE_MAX (1024u * 1024u)

#define DEFAULT_MAX_HEADER_BYTES 16384u
#define DEFAULT_MAX_BODY_BYTES 1048576u
#define DEFAULT_REQUEST_TIMEOUT_MS 10000u
#define DEFAULT_IDLE_TIMEOUT_MS 60000u
#define DEFAULT_MAX_CONNECTIONS 1024u

struct ctx {
    const char *file;   /* the file's name as diagnostics print it */
    char dir[PATH_MAX]; /* absolute directory of the file, for relative paths */
    struct coffer_policy_diags *d;
    size_t problems;
    enum coffer_err err; /* the first failure that is not a problem of the file */
    struct coffer_config *c;
};

/* A key of a mapping with a fixed set of keys, and the value found for it. */
struct field {
    const char *key;
    const struct coffer_ynode *k;
    const struct coffer_ynode *v;
};

static void vproblem(struct ctx *x, uint32_t line, uint32_t col, const char *fmt, va_list ap)
    COFFER_PRINTF(4, 0);
static void vproblem(struct ctx *x, uint32_t line, uint32_t col, const char *fmt, va_list ap)
{
    enum coffer_err r = coffer_ytree_vdiag(x->d, x->file, line, col, fmt, ap);

    x->problems++;
    if (r != COFFER_OK && x->err == COFFER_OK) {
        x->err = r;
    }
}

static void problem(struct ctx *x, uint32_t line, uint32_t col, const char *fmt, ...)
    COFFER_PRINTF(4, 5);
static void problem(struct ctx *x, uint32_t line, uint32_t col, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vproblem(x, line, col, fmt, ap);
    va_end(ap);
}

static void problem_at(struct ctx *x, const struct coffer_ynode *n, const char *fmt, ...)
    COFFER_PRINTF(3, 4);
static void problem_at(struct ctx *x, const struct coffer_ynode *n, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vproblem(x, n->line, n->col, fmt, ap);
    va_end(ap);
}

/* "text", "a sequence", "a mapping" or "empty": what a value is, for messages. */
static const char *kind_of(const struct coffer_ynode *n)
{
    return coffer_ytree_null(n) ? "empty" : coffer_ytree_kind_str(n->kind);
}

/* ---- Mappings with a fixed set of keys ---- */

/*
 * Sorts the keys of m into fields; any other key is reported with where
 * ("at the top level", "in tls") and the keys that are known.
 */
static void take_fields(struct ctx *x, const struct coffer_ynode *m, struct field *f, size_t nf,
                        const char *where)
{
    char known[256] = "";
    size_t used = 0;

    for (size_t i = 0; i < nf; i++) {
        int w = snprintf(known + used, sizeof(known) - used, "%s%s", i > 0 ? ", " : "", f[i].key);

        if (w > 0 && (size_t)w < sizeof(known) - used) {
            used += (size_t)w;
        }
    }
    /* The tree guarantees that a mapping's children come in key, value pairs. */
    for (const struct coffer_ynode *k = m->head; k != NULL && k->next != NULL; k = k->next->next) {
        bool found = false;

        for (size_t i = 0; i < nf && !found; i++) {
            if (strcmp(k->str, f[i].key) == 0) {
                f[i].k = k;
                f[i].v = k->next;
                found = true;
            }
        }
        if (!found) {
            problem_at(x, k, "unknown key '%s' %s (known keys: %s)",
                       coffer_ytree_quote(k->str, k->len).s, where, known);
        }
    }
}

/* The value of a required key, or NULL after reporting it missing at the mapping m. */
static const struct coffer_ynode *required(struct ctx *x, const struct coffer_ynode *m,
                                           const struct field *f, const char *where)
{
    if (f->v == NULL) {
        problem_at(x, m, "missing required key '%s' %s", f->key, where);
    }
    return f->v;
}

/*
 * The mapping of a section (tls, pkcs11, limits), or NULL: reported if it is
 * not a mapping, silently if it is empty and optional.
 */
static const struct coffer_ynode *section(struct ctx *x, const struct coffer_ynode *v,
                                          const char *name, bool optional)
{
    if (v == NULL) {
        return NULL;
    }
    if (optional && coffer_ytree_null(v)) {
        return NULL;
    }
    if (v->kind != COFFER_YNODE_MAPPING) {
        problem_at(x, v, "%s must be a mapping of keys, not %s", name, kind_of(v));
        return NULL;
    }
    return v;
}

/* ---- Values ---- */

/* A scalar that is not empty, or NULL (reported). name is the dotted key ("tls.cert"). */
static const struct coffer_ynode *text(struct ctx *x, const struct coffer_ynode *v,
                                       const char *name, const char *what)
{
    if (v->kind != COFFER_YNODE_SCALAR || coffer_ytree_null(v)) {
        problem_at(x, v, "%s must be %s, not %s", name, what, kind_of(v));
        return NULL;
    }
    if (v->len == 0) {
        problem_at(x, v, "%s is empty; it must be %s", name, what);
        return NULL;
    }
    return v;
}

/* Copies len bytes of s into dst (cap bytes) with a NUL; false if it does not fit. */
static bool put(char *dst, size_t cap, const char *s, size_t len)
{
    if (len >= cap) {
        return false;
    }
    coffer_memcpy(dst, s, len);
    dst[len] = '\0';
    return true;
}

/*
 * Writes the path s (len bytes) into dst, prefixed with the file's
 * directory when it is relative; false if the result would not fit in cap
 * bytes. *need is the length the result would have.
 */
static bool resolve(const struct ctx *x, const char *s, size_t len, char *dst, size_t cap,
                    size_t *need)
{
    size_t dlen = strlen(x->dir);
    bool slash = dlen > 0 && x->dir[dlen - 1] == '/';

    if (s[0] == '/') {
        *need = len;
        return put(dst, cap, s, len);
    }
    *need = dlen + (slash ? 0 : 1) + len;
    if (*need >= cap) {
        return false;
    }
    coffer_memcpy(dst, x->dir, dlen);
    if (!slash) {
        dst[dlen++] = '/';
    }
    coffer_memcpy(dst + dlen, s, len);
    dst[dlen + len] = '\0';
    return true;
}

/* A file path into dst (cap bytes), resolved against the file's directory; false if reported. */
static bool path_value(struct ctx *x, const struct coffer_ynode *v, const char *name, char *dst,
                       size_t cap)
{
    size_t need = 0;

    if (text(x, v, name, "a file path") == NULL) {
        return false;
    }
    if (!coffer_text_ok(v->str, v->len, SIZE_MAX)) {
        problem_at(x, v, "%s holds a control character", name);
        return false;
    }
    if (!resolve(x, v->str, v->len, dst, cap, &need)) {
        problem_at(x, v, "%s is %zu bytes%s; the limit is %zu", name, need,
                   v->str[0] == '/' ? "" : " after resolving it against the file's directory",
                   cap - 1);
        return false;
    }
    return true;
}

/*
 * A number written in plain decimal digits (no sign, no leading zero, no
 * quotes) from min to max; false if reported. Leading zeros are refused
 * because YAML 1.1 readers take 010 for octal: the file must mean the same
 * to every reader.
 */
static bool number(struct ctx *x, const struct coffer_ynode *v, const char *name, uint64_t min,
                   uint64_t max, uint64_t *out)
{
    uint64_t n = 0;

    if (v->kind != COFFER_YNODE_SCALAR || coffer_ytree_null(v)) {
        problem_at(x, v, "%s must be a number, not %s", name, kind_of(v));
        return false;
    }
    if (!v->plain) {
        problem_at(x, v, "%s must be a number without quotes", name);
        return false;
    }
    for (size_t i = 0; i < v->len; i++) {
        if (v->str[i] < '0' || v->str[i] > '9' || (i == 0 && v->str[i] == '0' && v->len > 1)) {
            problem_at(x, v, "%s must be written in plain decimal digits, not '%s'", name,
                       coffer_ytree_quote(v->str, v->len).s);
            return false;
        }
        if (n > (UINT64_MAX - 9) / 10) {
            problem_at(x, v, "%s is %s; it must be %llu to %llu", name,
                       coffer_ytree_quote(v->str, v->len).s, (unsigned long long)min,
                       (unsigned long long)max);
            return false;
        }
        n = n * 10 + (uint64_t)(v->str[i] - '0');
    }
    if (n < min || n > max) {
        problem_at(x, v, "%s is %llu; it must be %llu to %llu", name, (unsigned long long)n,
                   (unsigned long long)min, (unsigned long long)max);
        return false;
    }
    *out = n;
    return true;
}

/* ---- listen ---- */

/* Whether s (len bytes) is a port: plain decimal digits, no leading zero, 1..65535. */
static bool port_ok(const char *s, size_t len, uint16_t *out)
{
    unsigned long n = 0;

    if (len == 0 || len > 5 || s[0] == '0') {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return false;
        }
        n = n * 10 + (unsigned long)(s[i] - '0');
    }
    if (n < 1 || n > 65535) {
        return false;
    }
    *out = (uint16_t)n;
    return true;
}

/*
 * Whether s (len bytes, NUL-terminated) is an IPv4 literal (a dotted quad)
 * or a DNS host name of labels of letters, digits and '-'.
 */
static bool host_ok(const char *s, size_t len)
{
    struct in_addr a4;
    bool numeric = true;
    size_t label = 0;

    if (len == 0 || len > 253) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        if ((s[i] < '0' || s[i] > '9') && s[i] != '.') {
            numeric = false;
        }
    }
    if (numeric) {
        return inet_pton(AF_INET, s, &a4) == 1;
    }
    for (size_t i = 0; i <= len; i++) {
        char c = i < len ? s[i] : '.';

        if (c == '.') {
            /* Labels are 1..63 bytes and neither begin nor end with '-'. */
            if (label == 0 || label > 63 || s[i - 1] == '-' || s[i - label] == '-') {
                return false;
            }
            label = 0;
            continue;
        }
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-')) {
            return false;
        }
        label++;
    }
    return true;
}

static void load_listen(struct ctx *x, const struct coffer_ynode *v)
{
    const char *rule = "host:port with a port from 1 to 65535, e.g. 127.0.0.1:8443 or "
                       "\"[::1]:8443\"";
    struct coffer_ytree_quoted q;
    struct in6_addr a6;
    const char *s;
    const char *colon;
    size_t hlen;

    if (v->kind != COFFER_YNODE_SCALAR || coffer_ytree_null(v)) {
        problem_at(x, v, "listen must be %s, not %s (an IPv6 address in brackets needs quotes)",
                   rule, kind_of(v));
        return;
    }
    s = v->str;
    q = coffer_ytree_quote(s, v->len);
    colon = strrchr(s, ':');
    if (colon == NULL) {
        problem_at(x, v, "listen '%s' has no port: it must be %s", q.s, rule);
        return;
    }
    if (!port_ok(colon + 1, v->len - (size_t)(colon + 1 - s), &x->c->listen_port)) {
        problem_at(x, v, "listen '%s' has no valid port: it must be %s", q.s, rule);
        return;
    }
    hlen = (size_t)(colon - s);
    if (hlen == 0) {
        problem_at(x, v, "listen '%s' names no host (0.0.0.0 or \"[::]:port\" for every address)",
                   q.s);
        return;
    }
    if (s[0] == '[') {
        if (hlen < 3 || s[hlen - 1] != ']' ||
            !put(x->c->listen_host, sizeof(x->c->listen_host), s + 1, hlen - 2) ||
            inet_pton(AF_INET6, x->c->listen_host, &a6) != 1) {
            x->c->listen_host[0] = '\0';
            problem_at(x, v, "listen '%s': the host in brackets is not an IPv6 address", q.s);
        }
        return;
    }
    if (memchr(s, ':', hlen) != NULL || memchr(s, ']', hlen) != NULL) {
        problem_at(x, v, "listen '%s': write an IPv6 address in brackets, as \"[::1]:8443\"", q.s);
        return;
    }
    if (!put(x->c->listen_host, sizeof(x->c->listen_host), s, hlen) ||
        !host_ok(x->c->listen_host, hlen)) {
        x->c->listen_host[0] = '\0';
        problem_at(x, v, "listen '%s': the host is not an IPv4 address or a host name", q.s);
    }
}

/* ---- tls ---- */

/* The SPIFFE rule for a trust domain: 1..255 of lower-case letters, digits, '.', '-', '_'. */
static bool trust_domain_ok(const char *s, size_t len)
{
    if (len == 0 || len > COFFER_TRUST_DOMAIN_MAX) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        char c = s[i];

        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-' ||
              c == '_')) {
            return false;
        }
    }
    return true;
}

static void load_tls(struct ctx *x, const struct coffer_ynode *m)
{
    struct field f[] = {
        {.key = "cert"}, {.key = "key"}, {.key = "client_ca"}, {.key = "trust_domain"}};
    struct coffer_config *c = x->c;
    const struct coffer_ynode *v;

    take_fields(x, m, f, 4, "in tls");
    if ((v = required(x, m, &f[0], "in tls")) != NULL) {
        (void)path_value(x, v, "tls.cert", c->tls_cert, sizeof(c->tls_cert));
    }
    if ((v = required(x, m, &f[1], "in tls")) != NULL) {
        (void)path_value(x, v, "tls.key", c->tls_key, sizeof(c->tls_key));
    }
    if ((v = required(x, m, &f[2], "in tls")) != NULL) {
        (void)path_value(x, v, "tls.client_ca", c->tls_client_ca, sizeof(c->tls_client_ca));
    }
    if ((v = required(x, m, &f[3], "in tls")) != NULL &&
        text(x, v, "tls.trust_domain", "a SPIFFE trust domain") != NULL) {
        if (!trust_domain_ok(v->str, v->len) ||
            !put(c->trust_domain, sizeof(c->trust_domain), v->str, v->len)) {
            problem_at(x, v,
                       "tls.trust_domain '%s' is not a SPIFFE trust domain: 1 to %u lower-case "
                       "letters, digits, '.', '-' or '_'",
                       coffer_ytree_quote(v->str, v->len).s, COFFER_TRUST_DOMAIN_MAX);
        }
    }
}

/* ---- pkcs11 ---- */

static void load_module(struct ctx *x, const struct coffer_ynode *v)
{
    struct coffer_config *c = x->c;
    struct coffer_ytree_quoted q;

    if (text(x, v, "pkcs11.module", "a library path or a p11-kit module name") == NULL) {
        return;
    }
    q = coffer_ytree_quote(v->str, v->len);
    if (!coffer_text_ok(v->str, v->len, SIZE_MAX)) {
        problem_at(x, v, "pkcs11.module '%s' holds a control character", q.s);
        return;
    }
    /*
     * A name without '/' is a p11-kit module; a path must be absolute, since
     * a library loaded into the daemon is never searched for.
     */
    if (memchr(v->str, '/', v->len) != NULL && v->str[0] != '/') {
        problem_at(x, v, "pkcs11.module '%s' must be an absolute path or a p11-kit module name",
                   q.s);
        return;
    }
    if (!put(c->pkcs11_module, sizeof(c->pkcs11_module), v->str, v->len)) {
        problem_at(x, v, "pkcs11.module is %zu bytes; the limit is %zu", v->len,
                   sizeof(c->pkcs11_module) - 1);
    }
}

static void load_token_uri(struct ctx *x, const struct coffer_ynode *v)
{
    struct coffer_config *c = x->c;
    const char *scheme = "pkcs11:";

    if (text(x, v, "pkcs11.token_uri", "a PKCS#11 URI") == NULL) {
        return;
    }
    if (v->len < strlen(scheme) || strncmp(v->str, scheme, strlen(scheme)) != 0 ||
        !coffer_text_ok(v->str, v->len, SIZE_MAX)) {
        problem_at(x, v, "pkcs11.token_uri '%s' is not a PKCS#11 URI (pkcs11:token=...)",
                   coffer_ytree_quote(v->str, v->len).s);
        return;
    }
    if (!put(c->token_uri, sizeof(c->token_uri), v->str, v->len)) {
        problem_at(x, v, "pkcs11.token_uri is %zu bytes; the limit is %zu", v->len,
                   sizeof(c->token_uri) - 1);
    }
}

/* Whether s (len bytes) is an environment variable name: [A-Za-z_][A-Za-z0-9_]{0,254}. */
static bool env_name_ok(const char *s, size_t len)
{
    if (len == 0 || len > 255 || (s[0] >= '0' && s[0] <= '9')) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        char c = s[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_')) {
            return false;
        }
    }
    return true;
}

/*
 * The PIN source. Its value is never quoted in a message: an operator who
 * wrote the PIN itself here must not find it in a log.
 */
static void load_pin_source(struct ctx *x, const struct coffer_ynode *v)
{
    struct coffer_config *c = x->c;
    const size_t nfile = strlen("file:");
    const size_t nenv = strlen("env:");
    size_t need = 0;

    if (v->kind != COFFER_YNODE_SCALAR || coffer_ytree_null(v)) {
        problem_at(x, v, "pkcs11.pin_source must be file:PATH or env:NAME, not %s", kind_of(v));
        return;
    }
    if (strcmp(v->str, "prompt") == 0) {
        problem_at(x, v,
                   "pkcs11.pin_source prompt is not possible: a daemon has no terminal to ask on; "
                   "use file:PATH or env:NAME");
        return;
    }
    if (v->len >= nfile && strncmp(v->str, "file:", nfile) == 0) {
        if (v->len == nfile) {
            problem_at(x, v, "pkcs11.pin_source file: names no path");
            return;
        }
        if (!coffer_text_ok(v->str, v->len, SIZE_MAX)) {
            problem_at(x, v, "pkcs11.pin_source holds a control character");
            return;
        }
        coffer_memcpy(c->pin_source, "file:", nfile);
        /* The path itself is held to PATH_MAX like every other path. */
        if (!resolve(x, v->str + nfile, v->len - nfile, c->pin_source + nfile, PATH_MAX, &need)) {
            c->pin_source[0] = '\0';
            problem_at(x, v, "the path of pkcs11.pin_source is %zu bytes%s; the limit is %u", need,
                       v->str[nfile] == '/' ? ""
                                            : " after resolving it against the file's directory",
                       (unsigned)(PATH_MAX - 1));
        }
        return;
    }
    if (v->len >= nenv && strncmp(v->str, "env:", nenv) == 0) {
        if (!env_name_ok(v->str + nenv, v->len - nenv)) {
            problem_at(x, v,
                       "pkcs11.pin_source env: must name an environment variable: 1 to 255 "
                       "letters, digits or '_', not starting with a digit");
            return;
        }
        (void)put(c->pin_source, sizeof(c->pin_source), v->str, v->len);
        return;
    }
    problem_at(x, v, "pkcs11.pin_source must be file:PATH or env:NAME (the value is not shown)");
}

static void load_pkcs11(struct ctx *x, const struct coffer_ynode *m)
{
    struct field f[] = {
        {.key = "module"}, {.key = "token_uri"}, {.key = "pin_source"}, {.key = "renew_objects"}};
    const struct coffer_ynode *v;
    uint64_t n = 0;

    take_fields(x, m, f, 4, "in pkcs11");
    if ((v = required(x, m, &f[0], "in pkcs11")) != NULL) {
        load_module(x, v);
    }
    if ((v = required(x, m, &f[1], "in pkcs11")) != NULL) {
        load_token_uri(x, v);
    }
    if ((v = required(x, m, &f[2], "in pkcs11")) != NULL) {
        load_pin_source(x, v);
    }
    if (f[3].v != NULL && !coffer_ytree_null(f[3].v) &&
        number(x, f[3].v, "pkcs11.renew_objects", 1, 100000000, &n)) {
        x->c->pkcs11_renew_objects = (unsigned)n;
    }
}

/* ---- database ---- */

static bool has_prefix(const char *s, size_t len, const char *prefix)
{
    size_t n = strlen(prefix);

    return len >= n && strncmp(s, prefix, n) == 0;
}

/* Whether a postgresql:// URI carries a password in its user info or its query. */
static bool uri_has_password(const char *s, size_t len)
{
    size_t i =
        has_prefix(s, len, "postgresql://") ? strlen("postgresql://") : strlen("postgres://");
    size_t start = i;
    size_t at = len;

    /* The authority ends at the first '/', '?' or '#'; the user info at its last '@'. */
    for (; i < len && s[i] != '/' && s[i] != '?' && s[i] != '#'; i++) {
        if (s[i] == '@') {
            at = i;
        }
    }
    if (at < len && memchr(s + start, ':', at - start) != NULL) {
        return true;
    }
    while (i < len && s[i] != '?') {
        i++;
    }
    while (i < len) {
        i++; /* past '?' or '&' */
        if (has_prefix(s + i, len - i, "password=")) {
            return true;
        }
        while (i < len && s[i] != '&') {
            i++;
        }
    }
    return false;
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/*
 * Whether a libpq connection string carries a password: the keyword
 * password in keyword=value form (values plain or in single quotes with
 * backslash escapes, as libpq reads them), or a password in a URI.
 */
static bool conninfo_has_password(const char *s, size_t len)
{
    size_t i = 0;

    if (has_prefix(s, len, "postgresql://") || has_prefix(s, len, "postgres://")) {
        return uri_has_password(s, len);
    }
    while (i < len) {
        size_t kstart;
        size_t klen;

        while (i < len && is_space(s[i])) {
            i++;
        }
        kstart = i;
        while (i < len && s[i] != '=' && !is_space(s[i])) {
            i++;
        }
        klen = i - kstart;
        while (i < len && is_space(s[i])) {
            i++;
        }
        if (i >= len || s[i] != '=') {
            /* Not keyword=value: libpq refuses the string when it connects. */
            return false;
        }
        i++;
        if (klen == strlen("password") && strncmp(s + kstart, "password", klen) == 0) {
            return true;
        }
        while (i < len && is_space(s[i])) {
            i++;
        }
        if (i < len && s[i] == '\'') {
            for (i++; i < len && s[i] != '\''; i++) {
                if (s[i] == '\\') {
                    i++;
                }
            }
            i++;
        } else {
            for (; i < len && !is_space(s[i]); i++) {
                if (s[i] == '\\') {
                    i++;
                }
            }
        }
    }
    return false;
}

/* The connection string. Its value is never quoted in a message: it may hold a password. */
static void load_database(struct ctx *x, const struct coffer_ynode *v)
{
    struct coffer_config *c = x->c;

    if (text(x, v, "database", "a libpq connection string") == NULL) {
        return;
    }
    if (!coffer_text_ok(v->str, v->len, SIZE_MAX)) {
        problem_at(x, v, "database holds a control character (the value is not shown)");
        return;
    }
    if (conninfo_has_password(v->str, v->len)) {
        problem_at(x, v,
                   "database holds a password (the value is not shown): the configuration "
                   "holds no secret; use a password file (PGPASSFILE) or certificate "
                   "authentication");
        return;
    }
    if (!put(c->database, sizeof(c->database), v->str, v->len)) {
        problem_at(x, v, "database is %zu bytes; the limit is %zu", v->len,
                   sizeof(c->database) - 1);
    }
}

/* ---- workers, limits, policy, log ---- */

static void load_workers(struct ctx *x, const struct coffer_ynode *v)
{
    uint64_t n = 0;

    if (coffer_ytree_null(v)) {
        return;
    }
    if (number(x, v, "workers", 0, COFFER_CONFIG_WORKERS_MAX, &n)) {
        x->c->workers = (unsigned)n;
    }
}

struct limit {
    const char *key;
    const char *name;
    uint64_t min;
    uint64_t max;
};

static const struct limit limits[] = {
    {"max_header_bytes", "limits.max_header_bytes", 1024, 1048576},
    {"max_body_bytes", "limits.max_body_bytes", 1024, 67108864},
    {"request_timeout_ms", "limits.request_timeout_ms", 100, 600000},
    {"idle_timeout_ms", "limits.idle_timeout_ms", 100, 3600000},
    {"max_connections", "limits.max_connections", 1, 100000},
};
#define N_LIMITS (sizeof(limits) / sizeof(limits[0]))

static void set_limit(struct coffer_config *c, size_t i, uint64_t n)
{
    switch (i) {
    case 0:
        c->max_header_bytes = (size_t)n;
        break;
    case 1:
        c->max_body_bytes = (size_t)n;
        break;
    case 2:
        c->request_timeout_ms = (unsigned)n;
        break;
    case 3:
        c->idle_timeout_ms = (unsigned)n;
        break;
    case 4:
        c->max_connections = (unsigned)n;
        break;
    default:
        break;
    }
}

static void load_limits(struct ctx *x, const struct coffer_ynode *m)
{
    struct field f[N_LIMITS];

    for (size_t i = 0; i < N_LIMITS; i++) {
        f[i] = (struct field){.key = limits[i].key};
    }
    take_fields(x, m, f, N_LIMITS, "in limits");
    for (size_t i = 0; i < N_LIMITS; i++) {
        uint64_t n = 0;

        if (f[i].v == NULL || coffer_ytree_null(f[i].v)) {
            continue;
        }
        if (number(x, f[i].v, limits[i].name, limits[i].min, limits[i].max, &n)) {
            set_limit(x->c, i, n);
        }
    }
}

/* audit: seal (true|false), seal_interval_ms, seal_wait_ms. */
static void load_audit(struct ctx *x, const struct coffer_ynode *m)
{
    struct field f[] = {{.key = "seal"}, {.key = "seal_interval_ms"}, {.key = "seal_wait_ms"}};
    uint64_t n = 0;

    take_fields(x, m, f, 3, "in audit");
    if (f[0].v != NULL && !coffer_ytree_null(f[0].v)) {
        const struct coffer_ynode *v = f[0].v;

        if (v->kind == COFFER_YNODE_SCALAR && strcmp(v->str, "true") == 0) {
            x->c->audit_seal = true;
        } else if (v->kind == COFFER_YNODE_SCALAR && strcmp(v->str, "false") == 0) {
            x->c->audit_seal = false;
        } else {
            problem_at(x, v, "audit.seal must be true or false");
        }
    }
    if (f[1].v != NULL && !coffer_ytree_null(f[1].v) &&
        number(x, f[1].v, "audit.seal_interval_ms", 10, 60000, &n)) {
        x->c->audit_seal_interval_ms = (unsigned)n;
    }
    if (f[2].v != NULL && !coffer_ytree_null(f[2].v) &&
        number(x, f[2].v, "audit.seal_wait_ms", 1, 10000, &n)) {
        x->c->audit_seal_wait_ms = (unsigned)n;
    }
}

struct sweep_number {
    const char *key;
    const char *name;
    uint64_t min;
    uint64_t max;
};

/* The numbers of keys:, in the order of their fields after "sweep". */
static const struct sweep_number sweep_numbers[] = {
    {"sweep_batch", "keys.sweep_batch", 1, 10000},
    {"sweep_interval_ms", "keys.sweep_interval_ms", 0, 60000},
    {"sweep_idle_ms", "keys.sweep_idle_ms", 100, 3600000},
    {"sweep_share", "keys.sweep_share", 1, 100},
};
#define N_SWEEP_NUMBERS (sizeof(sweep_numbers) / sizeof(sweep_numbers[0]))

static void set_sweep_number(struct coffer_config *c, size_t i, uint64_t n)
{
    switch (i) {
    case 0:
        c->keys_sweep_batch = (unsigned)n;
        break;
    case 1:
        c->keys_sweep_interval_ms = (unsigned)n;
        break;
    case 2:
        c->keys_sweep_idle_ms = (unsigned)n;
        break;
    case 3:
        c->keys_sweep_share = (unsigned)n;
        break;
    default:
        break;
    }
}

/* keys: sweep (true|false), sweep_batch, sweep_interval_ms, sweep_idle_ms, sweep_share. */
static void load_keys(struct ctx *x, const struct coffer_ynode *m)
{
    struct field f[1 + N_SWEEP_NUMBERS] = {{.key = "sweep"}};

    for (size_t i = 0; i < N_SWEEP_NUMBERS; i++) {
        f[1 + i] = (struct field){.key = sweep_numbers[i].key};
    }
    take_fields(x, m, f, 1 + N_SWEEP_NUMBERS, "in keys");
    if (f[0].v != NULL && !coffer_ytree_null(f[0].v)) {
        const struct coffer_ynode *v = f[0].v;

        if (v->kind == COFFER_YNODE_SCALAR && strcmp(v->str, "true") == 0) {
            x->c->keys_sweep = true;
        } else if (v->kind == COFFER_YNODE_SCALAR && strcmp(v->str, "false") == 0) {
            x->c->keys_sweep = false;
        } else {
            problem_at(x, v, "keys.sweep must be true or false");
        }
    }
    for (size_t i = 0; i < N_SWEEP_NUMBERS; i++) {
        const struct coffer_ynode *v = f[1 + i].v;
        uint64_t n = 0;

        if (v != NULL && !coffer_ytree_null(v) &&
            number(x, v, sweep_numbers[i].name, sweep_numbers[i].min, sweep_numbers[i].max, &n)) {
            set_sweep_number(x->c, i, n);
        }
    }
}

/*
 * broker: ca_file (the CAs that upstreams of brokered calls and OAuth2
 * token endpoints are verified against; the system's when absent),
 * connect_timeout_ms, timeout_ms, oauth2_refresh_margin_s.
 */
static void load_broker(struct ctx *x, const struct coffer_ynode *m)
{
    struct field f[] = {{.key = "ca_file"},
                        {.key = "connect_timeout_ms"},
                        {.key = "timeout_ms"},
                        {.key = "oauth2_refresh_margin_s"}};
    uint64_t n = 0;

    take_fields(x, m, f, sizeof(f) / sizeof(f[0]), "in broker");
    if (f[0].v != NULL && !coffer_ytree_null(f[0].v)) {
        (void)path_value(x, f[0].v, "broker.ca_file", x->c->broker_ca_file,
                         sizeof(x->c->broker_ca_file));
    }
    if (f[1].v != NULL && !coffer_ytree_null(f[1].v) &&
        number(x, f[1].v, "broker.connect_timeout_ms", 100, 60000, &n)) {
        x->c->broker_connect_timeout_ms = (unsigned)n;
    }
    if (f[2].v != NULL && !coffer_ytree_null(f[2].v) &&
        number(x, f[2].v, "broker.timeout_ms", 100, 300000, &n)) {
        x->c->broker_timeout_ms = (unsigned)n;
    }
    if (f[3].v != NULL && !coffer_ytree_null(f[3].v) &&
        number(x, f[3].v, "broker.oauth2_refresh_margin_s", 0, 86400, &n)) {
        x->c->oauth2_refresh_margin_s = (unsigned)n;
    }
}

static void load_policy(struct ctx *x, const struct coffer_ynode *v)
{
    struct coffer_config *c = x->c;
    const struct coffer_ynode *where[COFFER_CONFIG_POLICY_FILES_MAX];
    size_t n = 0;

    if (coffer_ytree_null(v)) {
        return;
    }
    if (v->kind != COFFER_YNODE_SEQUENCE) {
        problem_at(x, v, "policy must be a sequence of file paths ([a.yaml, b.yaml]), not %s",
                   kind_of(v));
        return;
    }
    if (v->n > COFFER_CONFIG_POLICY_FILES_MAX) {
        problem_at(x, v, "policy lists %zu files; the limit is %u", v->n,
                   (unsigned)COFFER_CONFIG_POLICY_FILES_MAX);
        return;
    }
    for (const struct coffer_ynode *it = v->head; it != NULL; it = it->next) {
        bool dup = false;

        if (!path_value(x, it, "an entry of policy", c->policy_files[n],
                        sizeof(c->policy_files[n]))) {
            continue;
        }
        /* The same file twice would declare its org twice. */
        for (size_t i = 0; i < n && !dup; i++) {
            if (strcmp(c->policy_files[i], c->policy_files[n]) == 0) {
                problem_at(x, it, "policy file '%s' is listed twice (first at line %u, column %u)",
                           coffer_ytree_quote(it->str, it->len).s, where[i]->line, where[i]->col);
                dup = true;
            }
        }
        if (dup) {
            c->policy_files[n][0] = '\0';
            continue;
        }
        where[n++] = it;
    }
    c->n_policy_files = n;
}

static void load_log(struct ctx *x, const struct coffer_ynode *v)
{
    static const struct {
        const char *name;
        enum coffer_log_level level;
    } levels[] = {{"debug", COFFER_LOG_DEBUG},
                  {"info", COFFER_LOG_INFO},
                  {"warn", COFFER_LOG_WARN},
                  {"error", COFFER_LOG_ERROR}};

    if (coffer_ytree_null(v)) {
        return;
    }
    if (v->kind == COFFER_YNODE_SCALAR) {
        for (size_t i = 0; i < sizeof(levels) / sizeof(levels[0]); i++) {
            if (strcmp(v->str, levels[i].name) == 0) {
                x->c->log_level = levels[i].level;
                return;
            }
        }
        problem_at(x, v, "log must be debug, info, warn or error, not '%s'",
                   coffer_ytree_quote(v->str, v->len).s);
        return;
    }
    problem_at(x, v, "log must be debug, info, warn or error, not %s", kind_of(v));
}

/* ---- The document ---- */

static void load_root(struct ctx *x, const struct coffer_ynode *root)
{
    struct field f[] = {{.key = "listen"},   {.key = "tls"},     {.key = "pkcs11"},
                        {.key = "database"}, {.key = "workers"}, {.key = "limits"},
                        {.key = "policy"},   {.key = "log"},     {.key = "audit"},
                        {.key = "keys"},     {.key = "broker"}};
    const char *top = "at the top level";
    const struct coffer_ynode *v;

    if (root->kind != COFFER_YNODE_MAPPING) {
        problem_at(x, root,
                   "a configuration file must be a mapping with the keys listen, tls, pkcs11, "
                   "database and optionally workers, limits, policy, log, audit, keys and "
                   "broker, "
                   "not %s",
                   kind_of(root));
        return;
    }
    take_fields(x, root, f, sizeof(f) / sizeof(f[0]), top);
    if ((v = required(x, root, &f[0], top)) != NULL) {
        load_listen(x, v);
    }
    if ((v = required(x, root, &f[1], top)) != NULL && (v = section(x, v, "tls", false)) != NULL) {
        load_tls(x, v);
    }
    if ((v = required(x, root, &f[2], top)) != NULL &&
        (v = section(x, v, "pkcs11", false)) != NULL) {
        load_pkcs11(x, v);
    }
    if ((v = required(x, root, &f[3], top)) != NULL) {
        load_database(x, v);
    }
    if (f[4].v != NULL) {
        load_workers(x, f[4].v);
    }
    if ((v = section(x, f[5].v, "limits", true)) != NULL) {
        load_limits(x, v);
    }
    if (f[6].v != NULL) {
        load_policy(x, f[6].v);
    }
    if (f[7].v != NULL) {
        load_log(x, f[7].v);
    }
    if ((v = section(x, f[8].v, "audit", true)) != NULL) {
        load_audit(x, v);
    }
    if ((v = section(x, f[9].v, "keys", true)) != NULL) {
        load_keys(x, v);
    }
    if ((v = section(x, f[10].v, "broker", true)) != NULL) {
        load_broker(x, v);
    }
}

/* ---- Reading the file ---- */

/* The absolute directory of path into dir (lexically: symbolic links are not followed). */
static enum coffer_err dir_of(const char *path, char *dir, size_t cap)
{
    const char *slash;
    size_t dlen;
    size_t used = 0;

    /* "./etc/coffer.yaml" is "etc/coffer.yaml": no "/./" in the paths it resolves. */
    while (path[0] == '.' && path[1] == '/') {
        path += 2;
        while (path[0] == '/') {
            path++;
        }
    }
    slash = strrchr(path, '/');
    dlen = slash == NULL ? 0 : (size_t)(slash - path);
    if (slash == path) {
        (void)put(dir, cap, "/", 1);
        return COFFER_OK;
    }
    if (path[0] != '/') {
        if (getcwd(dir, cap) == NULL) {
            return coffer_err_set(COFFER_E_IO, "finding the current directory: %s",
                                  strerror(errno));
        }
        used = strlen(dir);
        if (dlen == 0) {
            return COFFER_OK;
        }
        if (used + 1 >= cap) {
            return coffer_err_set(COFFER_E_CONFIG, "the directory of the configuration file "
                                                   "is longer than PATH_MAX");
        }
        if (used == 0 || dir[used - 1] != '/') {
            dir[used++] = '/';
        }
    }
    if (!put(dir + used, cap - used, path, dlen)) {
        return coffer_err_set(COFFER_E_CONFIG,
                              "the directory of the configuration file is longer than PATH_MAX");
    }
    return COFFER_OK;
}

static enum coffer_err read_all(int fd, unsigned char *buf, size_t cap, size_t *n)
{
    *n = 0;
    while (*n < cap) {
        ssize_t got = read(fd, buf + *n, cap - *n);

        if (got < 0 && errno == EINTR) {
            continue;
        }
        if (got < 0) {
            return COFFER_E_IO;
        }
        if (got == 0) {
            break;
        }
        *n += (size_t)got;
    }
    return COFFER_OK;
}

/*
 * Reads at most CONFIG_FILE_MAX + 1 bytes of a regular file into *buf (the
 * caller frees it); one byte more than the limit tells a file that is too
 * large.
 */
static enum coffer_err read_file(const char *path, const char *shown, unsigned char **buf,
                                 size_t *n)
{
    const size_t cap = (size_t)CONFIG_FILE_MAX + 1;
    struct stat sb;
    int fd;
    enum coffer_err r = COFFER_OK;

    *buf = NULL;
    *n = 0;
    /* O_NONBLOCK keeps a FIFO from blocking the open before fstat can refuse it. */
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) {
        return coffer_err_set(COFFER_E_IO, "opening configuration file %s: %s", shown,
                              strerror(errno));
    }
    if (fstat(fd, &sb) != 0) {
        r = coffer_err_set(COFFER_E_IO, "reading configuration file %s: %s", shown,
                           strerror(errno));
        goto out;
    }
    if (!S_ISREG(sb.st_mode)) {
        r = coffer_err_set(COFFER_E_IO, "configuration file %s is not a regular file", shown);
        goto out;
    }
    *buf = coffer_calloc(cap, 1);
    if (*buf == NULL) {
        r = coffer_err_set(COFFER_E_NOMEM, "allocating room to read the configuration file");
        goto out;
    }
    if (read_all(fd, *buf, cap, n) != COFFER_OK) {
        r = coffer_err_set(COFFER_E_IO, "reading configuration file %s: %s", shown,
                           strerror(errno));
        coffer_free(*buf);
        *buf = NULL;
        *n = 0;
    }
out:
    (void)close(fd);
    return r;
}

#define DEFAULT_SEAL_INTERVAL_MS 200
#define DEFAULT_SEAL_WAIT_MS 100
#define DEFAULT_SWEEP_BATCH 500
#define DEFAULT_SWEEP_INTERVAL_MS 50
#define DEFAULT_SWEEP_IDLE_MS 5000
#define DEFAULT_SWEEP_SHARE 10
#define DEFAULT_BROKER_CONNECT_TIMEOUT_MS 5000
#define DEFAULT_BROKER_TIMEOUT_MS 30000
#define DEFAULT_OAUTH2_REFRESH_MARGIN_S 60

static void set_defaults(struct coffer_config *c)
{
    c->workers = 0;
    c->max_header_bytes = DEFAULT_MAX_HEADER_BYTES;
    c->max_body_bytes = DEFAULT_MAX_BODY_BYTES;
    c->request_timeout_ms = DEFAULT_REQUEST_TIMEOUT_MS;
    c->idle_timeout_ms = DEFAULT_IDLE_TIMEOUT_MS;
    c->max_connections = DEFAULT_MAX_CONNECTIONS;
    c->log_level = COFFER_LOG_INFO;
    c->audit_seal = true;
    c->audit_seal_interval_ms = DEFAULT_SEAL_INTERVAL_MS;
    c->audit_seal_wait_ms = DEFAULT_SEAL_WAIT_MS;
    c->keys_sweep = true;
    c->keys_sweep_batch = DEFAULT_SWEEP_BATCH;
    c->keys_sweep_interval_ms = DEFAULT_SWEEP_INTERVAL_MS;
    c->keys_sweep_idle_ms = DEFAULT_SWEEP_IDLE_MS;
    c->keys_sweep_share = DEFAULT_SWEEP_SHARE;
    c->broker_ca_file[0] = '\0';
    c->broker_connect_timeout_ms = DEFAULT_BROKER_CONNECT_TIMEOUT_MS;
    c->broker_timeout_ms = DEFAULT_BROKER_TIMEOUT_MS;
    c->pkcs11_renew_objects = COFFER_CONFIG_RENEW_OBJECTS;
    c->oauth2_refresh_margin_s = DEFAULT_OAUTH2_REFRESH_MARGIN_S;
}

/* workers 0: one per online core, at least 1 and at most COFFER_CONFIG_WORKERS_MAX. */
static unsigned online_cores(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);

    if (n < 1) {
        return 1;
    }
    if (n > COFFER_CONFIG_WORKERS_MAX) {
        return COFFER_CONFIG_WORKERS_MAX;
    }
    return (unsigned)n;
}

enum coffer_err coffer_config_load_buffer(const char *name, const char *dir, const void *data,
                                          size_t len, struct coffer_config *out,
                                          struct coffer_policy_diags *d)
{
    struct ctx *x = NULL;
    struct coffer_ytree *tree = NULL;
    struct coffer_ytree_quoted quoted;
    char detail[512];
    enum coffer_err r = COFFER_OK;

    if (out == NULL || name == NULL || dir == NULL || (data == NULL && len > 0)) {
        return coffer_err_set(COFFER_E_INVALID, "loading the configuration: missing argument");
    }
    memset(out, 0, sizeof(*out));
    x = coffer_calloc(1, sizeof(*x));
    if (x == NULL) {
        return coffer_err_set(COFFER_E_NOMEM, "loading the configuration");
    }
    /* The name as diagnostics print it: unchanged unless it holds control characters. */
    quoted = coffer_ytree_quote(name, strlen(name));
    x->file = coffer_text_ok(name, strlen(name), SIZE_MAX) ? name : quoted.s;
    x->d = d;
    x->c = out;
    if (!put(x->dir, sizeof(x->dir), dir, strlen(dir))) {
        r = coffer_err_set(COFFER_E_CONFIG,
                           "the directory of the configuration file is longer than PATH_MAX");
        goto out;
    }
    if (len > CONFIG_FILE_MAX) {
        problem(x, 1, 1, "the file is larger than the limit of %u bytes", CONFIG_FILE_MAX);
        goto out;
    }
    r = coffer_ytree_parse(x->file, "a configuration", data, len, d, &tree);
    if (r == COFFER_E_INVALID) {
        /* The detail lives in the buffer coffer_err_set writes: copy it first. */
        (void)snprintf(detail, sizeof(detail), "%s", coffer_err_detail());
        r = coffer_err_set(COFFER_E_CONFIG, "%s", detail);
        goto out;
    }
    if (r != COFFER_OK) {
        goto out;
    }
    set_defaults(out);
    load_root(x, tree->root);
    if (x->problems == 0 && out->workers == 0) {
        out->workers = online_cores();
    }
out:
    if (r == COFFER_OK && x->err != COFFER_OK) {
        r = coffer_err_set(x->err, "recording the problems of %s", x->file);
    }
    if (r == COFFER_OK && x->problems > 0) {
        r = coffer_err_set(COFFER_E_CONFIG, "%s has %zu problem%s", x->file, x->problems,
                           x->problems == 1 ? "" : "s");
    }
    if (r != COFFER_OK) {
        memset(out, 0, sizeof(*out));
    }
    coffer_ytree_free(&tree);
    coffer_free(x);
    return r;
}

enum coffer_err coffer_config_load(const char *path, struct coffer_config *out,
                                   struct coffer_policy_diags *d)
{
    struct coffer_ytree_quoted quoted;
    const char *shown;
    unsigned char *buf = NULL;
    char *dir = NULL;
    size_t n = 0;
    enum coffer_err r;

    if (out == NULL || path == NULL || path[0] == '\0') {
        return coffer_err_set(COFFER_E_INVALID, "loading the configuration: no path or no result");
    }
    memset(out, 0, sizeof(*out));
    quoted = coffer_ytree_quote(path, strlen(path));
    shown = coffer_text_ok(path, strlen(path), SIZE_MAX) ? path : quoted.s;
    dir = coffer_calloc(PATH_MAX, 1);
    if (dir == NULL) {
        return coffer_err_set(COFFER_E_NOMEM, "loading the configuration");
    }
    r = read_file(path, shown, &buf, &n);
    if (r != COFFER_OK) {
        goto out;
    }
    r = dir_of(path, dir, PATH_MAX);
    if (r != COFFER_OK) {
        goto out;
    }
    r = coffer_config_load_buffer(path, dir, buf, n, out, d);
out:
    coffer_free(buf);
    coffer_free(dir);
    return r;
}

/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Principals from SPIFFE IDs (see coffer/spiffe.h): the strict parser, its
 * inverse, and the reading of the one URI SAN of a verified client
 * certificate.
 *
 * The parser accepts exactly one spelling of each identity, so that two
 * strings that differ never name the same principal and one that the parser
 * refuses can never be taken for another: no case folding, no percent
 * decoding, no dot segments resolved, no empty segment skipped. It never
 * trusts a length it did not check, and an error detail never quotes more of
 * the input than a short prefix with every unusual byte replaced.
 */
#include "coffer/spiffe.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "coffer/mem.h"

#define SCHEME "spiffe://"
#define SCHEME_LEN (sizeof(SCHEME) - 1)
#define NAME_MAX_LEN 63 /* ^[a-z0-9][a-z0-9_-]{0,62}$ */
#define SHOWN_MAX 40    /* bytes of the input an error detail may quote */
#define SEGMENTS_MAX 5  /* org <org> agent <type> <instance> */

/* One path segment: an offset into the input and a length. */
struct segment {
    size_t off;
    size_t len;
};

/*
 * Writes at most SHOWN_MAX bytes of uri into out as printable ASCII: every
 * byte that is not (and the quote and backslash, which would blur where the
 * quoted text ends) becomes '?', and "..." marks a cut.
 */
static void sanitise(const char *uri, size_t len, char *out, size_t cap)
{
    size_t shown = len < SHOWN_MAX ? len : SHOWN_MAX;
    size_t o = 0;

    for (size_t i = 0; i < shown && o + 1 < cap; i++) {
        unsigned char c = (unsigned char)uri[i];

        out[o++] = (c > 0x20 && c < 0x7f && c != '"' && c != '\\') ? (char)c : '?';
    }
    for (size_t i = 0; shown < len && i < 3 && o + 1 < cap; i++) {
        out[o++] = '.';
    }
    out[o] = '\0';
}

/* Records why uri is refused, quoting only its sanitised prefix, and returns COFFER_E_INVALID. */
COFFER_PRINTF(3, 4)
static enum coffer_err refuse(const char *uri, size_t len, const char *fmt, ...)
{
    char shown[SHOWN_MAX + 4];
    char why[256];
    va_list ap;

    sanitise(uri, len, shown, sizeof(shown));
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    return coffer_err_set(COFFER_E_INVALID, "SPIFFE ID \"%s\": %s", shown, why);
}

static bool is_lower_alnum(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static bool seg_is(const char *uri, const struct segment *s, const char *word)
{
    size_t n = strlen(word);

    return s->len == n && coffer_mem_equal(uri + s->off, word, n);
}

/* Refuses the bytes no part of a SPIFFE ID may hold, naming the URI feature they would start. */
static enum coffer_err check_bytes(const char *uri, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)uri[i];

        switch (c) {
        case '%':
            return refuse(uri, len, "percent-encoding (byte %zu) is not allowed", i);
        case '?':
            return refuse(uri, len, "a query (byte %zu) is not allowed", i);
        case '#':
            return refuse(uri, len, "a fragment (byte %zu) is not allowed", i);
        default:
            break;
        }
        if (c <= 0x20 || c >= 0x7f) {
            return refuse(uri, len, "byte %zu is 0x%02x, which is not allowed", i, (unsigned)c);
        }
    }
    return COFFER_OK;
}

/* The scheme: exactly "spiffe://", in lower case. */
static enum coffer_err check_scheme(const char *uri, size_t len)
{
    if (len >= SCHEME_LEN && coffer_mem_equal(uri, SCHEME, SCHEME_LEN)) {
        return COFFER_OK;
    }
    if (len >= SCHEME_LEN && strncasecmp(uri, SCHEME, SCHEME_LEN) == 0) {
        return refuse(uri, len, "the scheme must be \"spiffe\" in lower case");
    }
    if (len >= 7 && strncasecmp(uri, "spiffe:", 7) == 0) {
        return refuse(uri, len, "must begin with \"spiffe://\"");
    }
    return refuse(uri, len, "is not a SPIFFE ID (want spiffe://<trust-domain>/org/...)");
}

/*
 * The trust domain: uri[SCHEME_LEN .. *end), up to the first '/'. Lower-case
 * letters, digits, '.', '-' and '_', 1 to COFFER_TRUST_DOMAIN_MAX bytes, dot-separated
 * labels none of which is empty.
 */
static enum coffer_err check_trust_domain(const char *uri, size_t len, size_t *end)
{
    const char *slash = memchr(uri + SCHEME_LEN, '/', len - SCHEME_LEN);
    size_t stop = slash != NULL ? (size_t)(slash - uri) : len;
    size_t td_len = stop - SCHEME_LEN;

    if (td_len == 0) {
        return refuse(uri, len, "the trust domain is empty");
    }
    if (td_len > COFFER_TRUST_DOMAIN_MAX) {
        return refuse(uri, len, "the trust domain is %zu bytes, more than %d", td_len,
                      COFFER_TRUST_DOMAIN_MAX);
    }
    for (size_t i = SCHEME_LEN; i < stop; i++) {
        unsigned char c = (unsigned char)uri[i];

        if (c == '@') {
            return refuse(uri, len, "user info (byte %zu) is not allowed", i);
        }
        if (c == ':') {
            return refuse(uri, len, "a port (byte %zu) is not allowed", i);
        }
        if (c >= 'A' && c <= 'Z') {
            return refuse(uri, len, "the trust domain must be lower case (byte %zu)", i);
        }
        if (!is_lower_alnum(c) && c != '.' && c != '-' && c != '_') {
            return refuse(uri, len,
                          "byte %zu of the trust domain is 0x%02x; allowed are a-z 0-9 . - _", i,
                          (unsigned)c);
        }
        if (c == '.' && (i == SCHEME_LEN || i + 1 == stop || uri[i + 1] == '.')) {
            return refuse(uri, len, "the trust domain has an empty label (byte %zu)", i);
        }
    }
    if (stop == len) {
        return refuse(uri, len,
                      "has no path (want /org/<org>/agent/<type>/<instance> or "
                      "/org/<org>/admin/<name>)");
    }
    *end = stop;
    return COFFER_OK;
}

/*
 * Splits uri[start..len), which begins with '/', into segments. Empty and dot
 * segments are refused, as is any segment past SEGMENTS_MAX.
 */
static enum coffer_err split_path(const char *uri, size_t len, size_t start,
                                  struct segment segs[SEGMENTS_MAX], size_t *n)
{
    size_t pos = start;

    *n = 0;
    while (pos < len) {
        /* Here uri[pos] is always a '/'. */
        size_t off = pos + 1;
        const char *slash = off < len ? memchr(uri + off, '/', len - off) : NULL;
        size_t stop = slash != NULL ? (size_t)(slash - uri) : len;
        size_t seg_len = stop - off;

        if (seg_len == 0 && stop == len) {
            return refuse(uri, len, "a trailing slash is not allowed");
        }
        if (seg_len == 0) {
            return refuse(uri, len,
                          "an empty path segment (double slash at byte %zu) is not allowed", pos);
        }
        if ((seg_len == 1 && uri[off] == '.') ||
            (seg_len == 2 && uri[off] == '.' && uri[off + 1] == '.')) {
            return refuse(uri, len, "a dot segment (byte %zu) is not allowed", off);
        }
        if (*n == SEGMENTS_MAX) {
            return refuse(uri, len, "has extra path segments after byte %zu", pos);
        }
        segs[*n] = (struct segment){.off = off, .len = seg_len};
        (*n)++;
        pos = stop;
    }
    return COFFER_OK;
}

/* A name (org, agent type, instance, admin): ^[a-z0-9][a-z0-9_-]{0,62}$, copied into out. */
static enum coffer_err take_name(const char *uri, size_t len, const struct segment *s,
                                 const char *what, char out[NAME_MAX_LEN + 1])
{
    if (s->len > NAME_MAX_LEN) {
        return refuse(uri, len, "the %s name is %zu bytes, more than %d", what, s->len,
                      NAME_MAX_LEN);
    }
    for (size_t i = 0; i < s->len; i++) {
        unsigned char c = (unsigned char)uri[s->off + i];

        if (c >= 'A' && c <= 'Z') {
            return refuse(uri, len, "the %s name must be lower case (byte %zu)", what, s->off + i);
        }
        if (i == 0 && !is_lower_alnum(c)) {
            return refuse(uri, len, "the %s name must begin with a-z or 0-9 (byte %zu)", what,
                          s->off);
        }
        if (!is_lower_alnum(c) && c != '-' && c != '_') {
            return refuse(uri, len, "byte %zu of the %s name is 0x%02x; allowed are a-z 0-9 - _",
                          s->off + i, what, (unsigned)c);
        }
    }
    coffer_memcpy(out, uri + s->off, s->len);
    out[s->len] = '\0';
    return COFFER_OK;
}

/* The path: /org/<org>/agent/<type>/<instance> or /org/<org>/admin/<name>. */
static enum coffer_err take_path(const char *uri, size_t len, size_t start,
                                 struct coffer_principal *p)
{
    static const char shape[] =
        "want /org/<org>/agent/<type>/<instance> or /org/<org>/admin/<name>";
    struct segment segs[SEGMENTS_MAX];
    enum coffer_err r;
    size_t n = 0;

    if ((r = split_path(uri, len, start, segs, &n)) != COFFER_OK) {
        return r;
    }
    if (!seg_is(uri, &segs[0], "org")) {
        return refuse(uri, len, "the path must begin with /org/ (%s)", shape);
    }
    if (n < 3) {
        return refuse(uri, len, "the path is missing segments (%s)", shape);
    }
    if (seg_is(uri, &segs[2], "agent")) {
        if (n != 5) {
            return refuse(uri, len, "an agent path has %zu segments, not 5 (%s)", n, shape);
        }
        p->kind = COFFER_PRINCIPAL_AGENT;
        if ((r = take_name(uri, len, &segs[1], "org", p->org)) != COFFER_OK ||
            (r = take_name(uri, len, &segs[3], "agent type", p->agent_type)) != COFFER_OK) {
            return r;
        }
        return take_name(uri, len, &segs[4], "instance", p->instance);
    }
    if (seg_is(uri, &segs[2], "admin")) {
        if (n != 4) {
            return refuse(uri, len, "an admin path has %zu segments, not 4 (%s)", n, shape);
        }
        p->kind = COFFER_PRINCIPAL_ADMIN;
        if ((r = take_name(uri, len, &segs[1], "org", p->org)) != COFFER_OK) {
            return r;
        }
        return take_name(uri, len, &segs[3], "admin", p->admin);
    }
    return refuse(uri, len, "the third path segment must be \"agent\" or \"admin\" (%s)", shape);
}

enum coffer_err coffer_spiffe_parse(const char *uri, size_t len, struct coffer_principal *out)
{
    struct coffer_principal p = {0};
    enum coffer_err r;
    size_t td_end = 0;

    if (out == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "coffer_spiffe_parse: out is NULL");
    }
    *out = (struct coffer_principal){0};
    if (uri == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "SPIFFE ID is missing (NULL)");
    }
    if (len == 0) {
        return coffer_err_set(COFFER_E_INVALID, "SPIFFE ID is empty");
    }
    if (len > COFFER_SPIFFE_MAX) {
        return refuse(uri, len, "is %zu bytes, more than %d", len, COFFER_SPIFFE_MAX);
    }
    if (memchr(uri, '\0', len) != NULL) {
        return refuse(uri, len, "contains a NUL byte at byte %zu",
                      (size_t)((const char *)memchr(uri, '\0', len) - uri));
    }
    if ((r = check_scheme(uri, len)) != COFFER_OK || (r = check_bytes(uri, len)) != COFFER_OK ||
        (r = check_trust_domain(uri, len, &td_end)) != COFFER_OK ||
        (r = take_path(uri, len, td_end, &p)) != COFFER_OK) {
        return r;
    }
    coffer_memcpy(p.trust_domain, uri + SCHEME_LEN, td_end - SCHEME_LEN);
    p.trust_domain[td_end - SCHEME_LEN] = '\0';
    *out = p;
    return COFFER_OK;
}

/* True if the array field f holds a terminated string that is empty exactly when empty is set. */
static bool field_ok(const char *f, size_t cap, bool empty)
{
    size_t n = strnlen(f, cap);

    return n < cap && (n == 0) == empty;
}

enum coffer_err coffer_spiffe_format(const struct coffer_principal *p, char *out, size_t cap)
{
    struct coffer_principal check;
    char buf[COFFER_SPIFFE_MAX + 1];
    enum coffer_err r;
    bool agent;
    int n;

    if (p == NULL || out == NULL || cap == 0) {
        return coffer_err_set(COFFER_E_INVALID, "coffer_spiffe_format: NULL argument or empty "
                                                "buffer");
    }
    out[0] = '\0';
    switch (p->kind) {
    case COFFER_PRINCIPAL_AGENT:
        agent = true;
        break;
    case COFFER_PRINCIPAL_ADMIN:
        agent = false;
        break;
    default:
        return coffer_err_set(COFFER_E_INVALID, "principal kind %d is neither agent nor admin",
                              (int)p->kind);
    }
    /* Every field terminated, and only the fields of its kind set: nothing left to chance. */
    if (!field_ok(p->trust_domain, sizeof(p->trust_domain), false) ||
        !field_ok(p->org, sizeof(p->org), false) ||
        !field_ok(p->agent_type, sizeof(p->agent_type), !agent) ||
        !field_ok(p->instance, sizeof(p->instance), !agent) ||
        !field_ok(p->admin, sizeof(p->admin), agent)) {
        return coffer_err_set(COFFER_E_INVALID,
                              "principal (%s) has an empty, unterminated or misplaced field",
                              agent ? "agent" : "admin");
    }
    if (agent) {
        n = snprintf(buf, sizeof(buf), SCHEME "%s/org/%s/agent/%s/%s", p->trust_domain, p->org,
                     p->agent_type, p->instance);
    } else {
        n = snprintf(buf, sizeof(buf), SCHEME "%s/org/%s/admin/%s", p->trust_domain, p->org,
                     p->admin);
    }
    if (n < 0 || (size_t)n >= sizeof(buf)) {
        return coffer_err_set(COFFER_E_LIMIT, "SPIFFE ID would exceed %d bytes", COFFER_SPIFFE_MAX);
    }
    /* Never write an ID the parser would refuse: a name with a bad byte stops here. */
    if ((r = coffer_spiffe_parse(buf, (size_t)n, &check)) != COFFER_OK) {
        return coffer_err_wrap(r, "formatting a principal");
    }
    if ((size_t)n >= cap) {
        return coffer_err_set(COFFER_E_LIMIT, "SPIFFE ID is %d bytes; the buffer holds %zu", n,
                              cap - 1);
    }
    coffer_memcpy(out, buf, (size_t)n + 1);
    return COFFER_OK;
}

/* Finds the one URI entry of names; other kinds (DNS, IP, email) are ignored. */
static enum coffer_err one_uri(const GENERAL_NAMES *names, const ASN1_IA5STRING **uri)
{
    int count = 0;

    for (int i = 0; i < sk_GENERAL_NAME_num(names); i++) {
        const GENERAL_NAME *gn = sk_GENERAL_NAME_value(names, i);

        if (gn != NULL && gn->type == GEN_URI) {
            *uri = gn->d.uniformResourceIdentifier;
            count++;
        }
    }
    if (count == 0) {
        return coffer_err_set(COFFER_E_INVALID, "the client certificate has no URI SAN; it needs "
                                                "exactly one, holding its SPIFFE ID");
    }
    if (count > 1) {
        return coffer_err_set(COFFER_E_INVALID,
                              "the client certificate has %d URI SANs; exactly one is allowed",
                              count);
    }
    return COFFER_OK;
}

enum coffer_err coffer_spiffe_from_cert(X509 *cert, const char *trust_domain,
                                        struct coffer_principal *out)
{
    const ASN1_IA5STRING *uri = NULL;
    GENERAL_NAMES *names = NULL;
    struct coffer_principal p;
    enum coffer_err r;
    int crit = 0;
    int len;

    if (out == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "coffer_spiffe_from_cert: out is NULL");
    }
    *out = (struct coffer_principal){0};
    if (cert == NULL || trust_domain == NULL || trust_domain[0] == '\0') {
        return coffer_err_set(COFFER_E_INVALID,
                              "coffer_spiffe_from_cert: no certificate or no trust domain");
    }
    names = X509_get_ext_d2i(cert, NID_subject_alt_name, &crit, NULL);
    if (names == NULL) {
        if (crit == -1) {
            r = coffer_err_set(COFFER_E_INVALID, "the client certificate has no subjectAltName "
                                                 "extension; it needs one URI SAN holding its "
                                                 "SPIFFE ID");
        } else if (crit == -2) {
            r = coffer_err_set(COFFER_E_INVALID,
                               "the client certificate has more than one subjectAltName extension");
        } else {
            r = coffer_err_set(COFFER_E_INVALID,
                               "the client certificate's subjectAltName extension is malformed");
        }
        ERR_clear_error();
        goto out;
    }
    if ((r = one_uri(names, &uri)) != COFFER_OK) {
        goto out;
    }
    len = ASN1_STRING_length(uri);
    if (len < 0 || ASN1_STRING_get0_data(uri) == NULL) {
        r = coffer_err_set(COFFER_E_INVALID, "the client certificate's URI SAN is malformed");
        goto out;
    }
    r = coffer_spiffe_parse((const char *)ASN1_STRING_get0_data(uri), (size_t)len, &p);
    if (r != COFFER_OK) {
        r = coffer_err_wrap(r, "the client certificate's URI SAN");
        goto out;
    }
    if (strcmp(p.trust_domain, trust_domain) != 0) {
        r = coffer_err_set(COFFER_E_INVALID,
                           "the client certificate's SPIFFE ID is in trust domain \"%.64s\", not "
                           "the trusted \"%.64s\"",
                           p.trust_domain, trust_domain);
        goto out;
    }
    *out = p;
out:
    GENERAL_NAMES_free(names);
    return r;
}

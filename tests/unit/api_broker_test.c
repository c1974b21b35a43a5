/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Brokered-call checks: a table of URLs the parser must accept (with the
 * canonical parts each gives) and of URLs it must refuse (with words of the
 * detail naming the rule, so that a row cannot pass by failing for another
 * reason); length limits; details that never quote a path or query;
 * matching against destinations (other host, port, scheme, path traversal,
 * user info tricks, IDN and case variants, wildcards, IPv6); redirects in
 * and out of scope, absolute and relative; redaction of raw, base64,
 * base64url, URL-encoded and JSON-escaped occurrences at the edges of a
 * buffer, overlapping and adjacent, cross-checked against OpenSSL's base64;
 * and templates, their placeholders and their expansion.
 *
 * The values used here are made up for the test; still, no assertion prints
 * a buffer that may hold one: a mismatch reports lengths only.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <openssl/evp.h>

#include "coffer/broker.h"
#include "coffer/keys.h"
#include "coffer/mem.h"

#define ALLOWED "https://allowed.example"

/* ---- URL parsing ------------------------------------------------------------------ */

struct valid_row {
    const char *url;
    const char *host;
    uint16_t port;
    const char *path;
    const char *query; /* NULL: none */
    const char *canonical;
};

static const struct valid_row valid_rows[] = {
    {ALLOWED "/allowed", "allowed.example", 443, "/allowed", NULL, ALLOWED "/allowed"},
    {"HTTPS://Allowed.EXAMPLE:8443/allowed/x?a=b&c=%2F", "allowed.example", 8443, "/allowed/x",
     "a=b&c=%2F", ALLOWED ":8443/allowed/x?a=b&c=%2F"},
    {ALLOWED, "allowed.example", 443, "/", NULL, ALLOWED "/"},
    {ALLOWED "?x=1", "allowed.example", 443, "/", "x=1", ALLOWED "/?x=1"},
    {ALLOWED ":443/a", "allowed.example", 443, "/a", NULL, ALLOWED "/a"},
    {ALLOWED "/a/", "allowed.example", 443, "/a/", NULL, ALLOWED "/a/"},
    {ALLOWED "/a?", "allowed.example", 443, "/a", "", ALLOWED "/a?"},
    {ALLOWED "/a?b/c?d", "allowed.example", 443, "/a", "b/c?d", ALLOWED "/a?b/c?d"},
    {"https://[::1]:8443/a", "[::1]", 8443, "/a", NULL, "https://[::1]:8443/a"},
    {"https://[0:0:0:0:0:0:0:1]/", "[::1]", 443, "/", NULL, "https://[::1]/"},
    {"https://[FE80::A]/", "[fe80::a]", 443, "/", NULL, "https://[fe80::a]/"},
    {"https://127.0.0.1:1/", "127.0.0.1", 1, "/", NULL, "https://127.0.0.1:1/"},
    {"https://h:65535/", "h", 65535, "/", NULL, "https://h:65535/"},
    {"https://xn--bcher-kva.example/", "xn--bcher-kva.example", 443, "/", NULL,
     "https://xn--bcher-kva.example/"},
    {"https://a-b.1x.example/", "a-b.1x.example", 443, "/", NULL, "https://a-b.1x.example/"},
    /* '@' in the path is an ordinary byte there: the host is allowed.example. */
    {ALLOWED "/@evil.example", "allowed.example", 443, "/@evil.example", NULL,
     ALLOWED "/@evil.example"},
    {ALLOWED "/a;b=c/d:e", "allowed.example", 443, "/a;b=c/d:e", NULL, ALLOWED "/a;b=c/d:e"},
    /* Escapes stay as given; only those that would change the structure are refused. */
    {ALLOWED "/a%20b/%2e%2e.txt/%41", "allowed.example", 443, "/a%20b/%2e%2e.txt/%41", NULL,
     ALLOWED "/a%20b/%2e%2e.txt/%41"},
    {ALLOWED "/.well-known/x..y", "allowed.example", 443, "/.well-known/x..y", NULL,
     ALLOWED "/.well-known/x..y"},
};

struct invalid_row {
    const char *name;
    const char *url;
    size_t len;         /* 0: strlen(url) */
    const char *detail; /* words the detail must hold */
};

static const struct invalid_row invalid_rows[] = {
    {"http", "http://allowed.example/allowed", 0, "http is refused"},
    {"HTTP", "HTTP://allowed.example/allowed", 0, "http is refused"},
    {"ftp", "ftp://allowed.example/", 0, "only https"},
    {"https-ish scheme", "httpsx://allowed.example/", 0, "only https"},
    {"javascript", "javascript:alert(1)", 0, "only https"},
    {"no scheme", "allowed.example/allowed", 0, "no scheme"},
    {"network path", "//allowed.example/allowed", 0, "no scheme"},
    {"no slashes", "https:allowed.example/", 0, "no \"//\""},
    {"one slash", "https:/allowed.example/", 0, "no \"//\""},
    {"scheme only", "https:", 0, "no \"//\""},
    {"no host", "https:///allowed", 0, "no host"},
    {"no host at all", "https://", 0, "no host"},
    {"user info before host", "https://allowed.example@evil.example/", 0, "user info"},
    {"user and password", "https://user:pass@allowed.example/", 0, "user info"},
    {"empty user info", "https://@allowed.example/", 0, "user info"},
    {"user info with port", "https://allowed.example:443@evil.example/", 0, "user info"},
    {"fragment hides user info", "https://evil.example#@allowed.example", 0, "fragment"},
    {"fragment", ALLOWED "/allowed#top", 0, "fragment"},
    {"backslash in authority", "https://allowed.example\\@evil.example/", 0, "backslash"},
    {"backslash as slash", "https://evil.example\\allowed.example/", 0, "backslash"},
    {"backslash in path", ALLOWED "/allowed\\..\\other", 0, "backslash"},
    {"space", ALLOWED "/a b", 0, "space"},
    {"tab", ALLOWED "/a\tb", 0, "control character"},
    {"CR LF", ALLOWED "/a\r\nHost: evil.example", 0, "control character"},
    {"DEL", ALLOWED "/a\x7f", 0, "control character"},
    {"NUL inside", ALLOWED "/a\0evil", sizeof(ALLOWED "/a\0evil") - 1, "NUL byte"},
    {"IDN host", "https://\xd0\xb0llowed.example/", 0, "non-ASCII"},
    {"full-width dot",
     "https://allowed\xef\xbc\x8e"
     "example/",
     0, "non-ASCII"},
    {"non-ASCII path", ALLOWED "/caf\xc3\xa9", 0, "non-ASCII"},
    {"trailing dot", "https://allowed.example./allowed", 0, "trailing dot"},
    {"empty label", "https://allowed..example/", 0, "empty label"},
    {"leading dot", "https://.allowed.example/", 0, "empty label"},
    {"label leading dash", "https://-a.example/", 0, "starts with '-'"},
    {"label trailing dash", "https://a-.example/", 0, "ends with '-'"},
    {"host trailing dash", "https://a.example-/", 0, "ends with '-'"},
    {"underscore", "https://a_b.example/", 0, "other than letters"},
    {"escaped host", "https://allowed%2eexample/", 0, "other than letters"},
    {"escaped host letter", "https://%61llowed.example/", 0, "other than letters"},
    {"short IPv4", "https://127.1/", 0, "numeric host"},
    {"hex IPv4", "https://0x7f.0.0.1/", 0, "numeric host"},
    {"decimal IPv4", "https://2130706433/", 0, "numeric host"},
    {"zero-padded IPv4", "https://127.000.0.1/", 0, "numeric host"},
    {"IPv4 out of range", "https://256.0.0.1/", 0, "numeric host"},
    {"numeric last label", "https://a.example.1/", 0, "numeric host"},
    {"unclosed IPv6", "https://[::1/", 0, "closing ']'"},
    {"bytes after IPv6", "https://[::1]x/", 0, "after the IPv6"},
    {"IPv6 zone", "https://[fe80::1%25eth0]/", 0, "zones"},
    {"IPv6 bad digit", "https://[::g]/", 0, "zones"},
    {"IPvFuture", "https://[v1.x]/", 0, "zones"},
    {"IPv4 in brackets", "https://[1.2.3.4]/", 0, "not an IPv6"},
    {"empty brackets", "https://[]/", 0, "impossible length"},
    {"empty port", ALLOWED ":/", 0, "empty port"},
    {"port 0", ALLOWED ":0/", 0, "1 to 65535"},
    {"port 65536", ALLOWED ":65536/", 0, "1 to 65535"},
    {"port leading zero", ALLOWED ":0443/", 0, "leading zeros"},
    {"port of six digits", ALLOWED ":100000/", 0, "1 to 65535"},
    {"port letters", ALLOWED ":44a/", 0, "other than digits"},
    {"two ports", ALLOWED ":443:443/", 0, "other than digits"},
    {"dot-dot", ALLOWED "/allowed/../other", 0, "dot segment"},
    {"dot", ALLOWED "/allowed/./x", 0, "dot segment"},
    {"dot-dot at the end", ALLOWED "/allowed/..", 0, "dot segment"},
    {"dot-dot first", ALLOWED "/../allowed", 0, "dot segment"},
    {"dot-dot before query", ALLOWED "/allowed/..?x", 0, "dot segment"},
    {"escaped dot-dot", ALLOWED "/allowed/%2e%2e/other", 0, "dot segment"},
    {"escaped dot-dot upper", ALLOWED "/allowed/%2E%2E/other", 0, "dot segment"},
    {"half-escaped dot-dot", ALLOWED "/allowed/.%2e/other", 0, "dot segment"},
    {"escaped dot", ALLOWED "/allowed/%2e/other", 0, "dot segment"},
    {"dot-dot parameter", ALLOWED "/allowed/..;/other", 0, "dot segment"},
    {"dot-dot escaped parameter", ALLOWED "/allowed/..%3b/other", 0, "dot segment"},
    {"dot-dot with parameter", ALLOWED "/allowed/..;x=1/other", 0, "dot segment"},
    {"three dots", ALLOWED "/allowed/.../other", 0, "dot segment"},
    {"dot-dot space", ALLOWED "/allowed/..%20/other", 0, "dot segment"},
    {"escaped slash", ALLOWED "/allowed%2f..%2fother", 0, "decodes to '/'"},
    {"escaped slash upper", ALLOWED "/allowed%2F..%2Fother", 0, "decodes to '/'"},
    {"escaped backslash", ALLOWED "/allowed%5c..%5cother", 0, "decodes to '/' or '\\'"},
    {"escaped NUL", ALLOWED "/allowed%00.json", 0, "control character"},
    {"escaped CR LF", ALLOWED "/a%0d%0aHost:%20evil", 0, "control character"},
    {"malformed escape", ALLOWED "/a%zz", 0, "malformed percent-escape in the path"},
    {"cut escape", ALLOWED "/a%2", 0, "malformed percent-escape in the path"},
    {"cut escape before slash", ALLOWED "/a%2/b", 0, "malformed percent-escape in the path"},
    {"double slash", ALLOWED "//other", 0, "empty segment"},
    {"double slash inside", ALLOWED "/allowed//x", 0, "empty segment"},
    {"angle bracket", ALLOWED "/a<b", 0, "RFC 3986"},
    {"braces", ALLOWED "/{{token}}", 0, "RFC 3986"},
    {"query angle bracket", ALLOWED "/a?b=<", 0, "query holds"},
    {"query bad escape", ALLOWED "/a?b=%g1", 0, "malformed percent-escape in the query"},
    {"query cut escape", ALLOWED "/a?b=%4", 0, "malformed percent-escape in the query"},
};

static void expect_invalid(const char *url, size_t len, const char *detail)
{
    struct coffer_broker_url u;

    memset(&u, 'x', sizeof(u));
    assert_int_equal(coffer_broker_url_parse(url, len, &u), COFFER_E_INVALID);
    if (strstr(coffer_err_detail(), detail) == NULL) {
        fail_msg("detail \"%s\" lacks \"%s\"", coffer_err_detail(), detail);
    }
    /* A refused URL leaves nothing behind that could be called. */
    assert_null(u.path);
    assert_null(u.query);
    assert_string_equal(u.host, "");
    assert_int_equal(u.port, 0);
}

static void test_valid(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(valid_rows) / sizeof(valid_rows[0]); i++) {
        const struct valid_row *row = &valid_rows[i];
        struct coffer_broker_url u;
        struct coffer_broker_url again;
        char *text = NULL;

        memset(&u, 'x', sizeof(u));
        if (coffer_broker_url_parse(row->url, strlen(row->url), &u) != COFFER_OK) {
            fail_msg("%s refused: %s", row->url, coffer_err_detail());
        }
        assert_string_equal(u.scheme, "https");
        assert_string_equal(u.host, row->host);
        assert_int_equal(u.port, row->port);
        assert_string_equal(u.path, row->path);
        if (row->query == NULL) {
            assert_null(u.query);
        } else {
            assert_non_null(u.query);
            assert_string_equal(u.query, row->query);
        }
        /* The canonical text is what the parser reads back into the same parts. */
        assert_int_equal(coffer_broker_url_format(&u, &text), COFFER_OK);
        assert_string_equal(text, row->canonical);
        assert_int_equal(coffer_broker_url_parse(text, strlen(text), &again), COFFER_OK);
        assert_string_equal(again.host, u.host);
        assert_int_equal(again.port, u.port);
        assert_string_equal(again.path, u.path);
        coffer_free(text);
        coffer_broker_url_cleanup(&again);
        coffer_broker_url_cleanup(&u);
        assert_null(u.path);
    }
}

static void test_invalid(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(invalid_rows) / sizeof(invalid_rows[0]); i++) {
        const struct invalid_row *row = &invalid_rows[i];

        print_message("row: %s\n", row->name);
        expect_invalid(row->url, row->len != 0 ? row->len : strlen(row->url), row->detail);
    }
    expect_invalid("", 0, "empty");
    expect_invalid(NULL, 5, "empty");
}

/* Only the first len bytes count. */
static void test_len_is_respected(void **state)
{
    static const char text[] = ALLOWED "/abc/../x";
    struct coffer_broker_url u;

    (void)state;
    assert_int_equal(coffer_broker_url_parse(text, strlen(ALLOWED "/abc"), &u), COFFER_OK);
    assert_string_equal(u.path, "/abc");
    coffer_broker_url_cleanup(&u);
    expect_invalid(text, strlen(ALLOWED "/abc/.."), "dot segment");
    assert_int_equal(coffer_broker_url_parse(text, 5, NULL), COFFER_E_INVALID);
}

static void test_lengths(void **state)
{
    char *url = coffer_calloc(1, COFFER_BROKER_URL_MAX + 2);
    char label[80];
    char host[300];
    struct coffer_broker_url u;
    size_t n;

    (void)state;
    assert_non_null(url);
    /* The whole URL: 8192 bytes pass, 8193 do not. */
    n = (size_t)snprintf(url, COFFER_BROKER_URL_MAX + 2, ALLOWED "/");
    memset(url + n, 'a', COFFER_BROKER_URL_MAX + 1 - n);
    assert_int_equal(coffer_broker_url_parse(url, COFFER_BROKER_URL_MAX, &u), COFFER_OK);
    assert_int_equal(strlen(u.path), COFFER_BROKER_URL_MAX - strlen(ALLOWED));
    coffer_broker_url_cleanup(&u);
    assert_int_equal(coffer_broker_url_parse(url, COFFER_BROKER_URL_MAX + 1, &u), COFFER_E_LIMIT);
    assert_null(u.path);

    /* A label of 63 bytes passes, 64 does not. */
    memset(label, 'a', 64);
    label[63] = '\0';
    snprintf(url, 200, "https://%s.example/", label);
    assert_int_equal(coffer_broker_url_parse(url, strlen(url), &u), COFFER_OK);
    coffer_broker_url_cleanup(&u);
    label[63] = 'a';
    label[64] = '\0';
    snprintf(url, 200, "https://%s.example/", label);
    expect_invalid(url, strlen(url), "longer than 63");

    /* A host of 253 bytes passes, 254 do not. */
    memset(host, 'a', sizeof(host));
    for (size_t i = 63; i < 253; i += 64) {
        host[i] = '.';
    }
    host[253] = '\0';
    snprintf(url, 400, "https://%s/", host);
    assert_int_equal(coffer_broker_url_parse(url, strlen(url), &u), COFFER_OK);
    assert_int_equal(strlen(u.host), 253);
    coffer_broker_url_cleanup(&u);
    host[253] = 'a';
    host[254] = '\0';
    snprintf(url, 400, "https://%s/", host);
    expect_invalid(url, strlen(url), "longer than 253");
    coffer_free(url);
}

/* A detail quotes the scheme and authority at most: never the path or query. */
static void test_detail_hides_path_and_query(void **state)
{
    static const char *const urls[] = {
        ALLOWED "/PATHMARK?QUERYMARK=<",
        ALLOWED "/PATHMARK/../QUERYMARK",
        "http://allowed.example/PATHMARK?QUERYMARK",
        "https://allowed.example:99999/PATHMARK",
    };
    struct coffer_broker_url u;

    (void)state;
    for (size_t i = 0; i < sizeof(urls) / sizeof(urls[0]); i++) {
        assert_int_equal(coffer_broker_url_parse(urls[i], strlen(urls[i]), &u), COFFER_E_INVALID);
        assert_null(strstr(coffer_err_detail(), "PATHMARK"));
        assert_null(strstr(coffer_err_detail(), "QUERYMARK"));
        assert_non_null(strstr(coffer_err_detail(), "allowed.example"));
    }
    /* Unusual bytes in the quoted part are replaced. */
    assert_int_equal(
        coffer_broker_url_parse("https://a\"b\x1b[31m/", strlen("https://a\"b\x1b[31m/"), &u),
        COFFER_E_INVALID);
    assert_null(strchr(coffer_err_detail(), '\x1b'));
}

static void test_format_refuses_unparsed(void **state)
{
    struct coffer_broker_url u;
    char *text = (char *)"sentinel";

    (void)state;
    memset(&u, 0, sizeof(u));
    assert_int_equal(coffer_broker_url_format(&u, &text), COFFER_E_INVALID);
    assert_null(text);
    assert_int_equal(coffer_broker_url_format(NULL, &text), COFFER_E_INVALID);
    assert_int_equal(coffer_broker_url_format(&u, NULL), COFFER_E_INVALID);
    coffer_broker_url_cleanup(NULL);
    coffer_broker_url_cleanup(&u);
}

/* ---- Destinations ------------------------------------------------------------------- */

/* Whether url parses and lies inside d. */
static bool inside(const struct coffer_broker_dest *d, const char *url)
{
    struct coffer_broker_url u;
    bool yes;

    if (coffer_broker_url_parse(url, strlen(url), &u) != COFFER_OK) {
        return false;
    }
    yes = coffer_broker_dest_match(d, &u);
    coffer_broker_url_cleanup(&u);
    return yes;
}

/* Whether url parses (so that a refusal by matching is told from one by parsing). */
static bool parses(const char *url)
{
    struct coffer_broker_url u;

    if (coffer_broker_url_parse(url, strlen(url), &u) != COFFER_OK) {
        return false;
    }
    coffer_broker_url_cleanup(&u);
    return true;
}

static void expect_inside(const struct coffer_broker_dest *d, const char *url)
{
    if (!inside(d, url)) {
        fail_msg("%s should lie inside %s%s (%s)", url, d->host,
                 d->path_prefix != NULL ? d->path_prefix : "", coffer_err_detail());
    }
}

/* url parses, and lies outside d. */
static void expect_outside(const struct coffer_broker_dest *d, const char *url)
{
    if (!parses(url)) {
        fail_msg("%s should parse: %s", url, coffer_err_detail());
    }
    if (inside(d, url)) {
        fail_msg("%s should lie outside %s%s", url, d->host,
                 d->path_prefix != NULL ? d->path_prefix : "");
    }
}

/* url is refused by the parser already. */
static void expect_unparsable(const char *url)
{
    if (parses(url)) {
        fail_msg("%s should be refused", url);
    }
}

static void test_match_host_port_path(void **state)
{
    const struct coffer_broker_dest d = {"https", "allowed.example", 0, "/allowed"};

    (void)state;
    assert_int_equal(coffer_broker_dest_validate(&d), COFFER_OK);
    expect_inside(&d, ALLOWED "/allowed");
    expect_inside(&d, ALLOWED "/allowed/");
    expect_inside(&d, ALLOWED "/allowed/x/y");
    expect_inside(&d, ALLOWED "/allowed?x=1");
    expect_inside(&d, ALLOWED ":443/allowed");
    expect_inside(&d, "HTTPS://ALLOWED.Example/allowed/x");
    expect_inside(&d, "https://aLlOwEd.eXaMpLe/allowed");
    /* Other host, other port, path outside the prefix. */
    expect_outside(&d, "https://other.example/allowed");
    expect_outside(&d, "https://sub.allowed.example/allowed");
    expect_outside(&d, "https://allowed.example.evil.example/allowed");
    expect_outside(&d, "https://evil-allowed.example/allowed");
    expect_outside(&d, "https://allowedexample/allowed");
    expect_outside(&d, "https://xn--llowed-2nf.example/allowed");
    expect_outside(&d, ALLOWED ":8443/allowed");
    expect_outside(&d, ALLOWED ":80/allowed");
    expect_outside(&d, ALLOWED "/allowedx");
    expect_outside(&d, ALLOWED "/allowed;x");
    expect_outside(&d, ALLOWED "/Allowed");
    expect_outside(&d, ALLOWED "/%61llowed");
    expect_outside(&d, ALLOWED "/other");
    expect_outside(&d, ALLOWED "/");
    expect_outside(&d, ALLOWED "/other/allowed");
    expect_outside(&d, ALLOWED "?/allowed");
    /* Refused before matching: scheme, traversal, user info, fragment, IDN. */
    expect_unparsable("http://allowed.example/allowed");
    expect_unparsable(ALLOWED "/allowed/../other");
    expect_unparsable(ALLOWED "/allowed/%2e%2e/other");
    expect_unparsable(ALLOWED "/allowed/%2E%2E/other");
    expect_unparsable(ALLOWED "/allowed%2f..%2fother");
    expect_unparsable(ALLOWED "/allowed%2Fx");
    expect_unparsable(ALLOWED "/allowed/..;/other");
    expect_unparsable("https://allowed.example@evil.example/allowed");
    expect_unparsable("https://allowed.example:443@evil.example/allowed");
    expect_unparsable("https://evil.example#@allowed.example/allowed");
    expect_unparsable("https://evil.example\\@allowed.example/allowed");
    expect_unparsable("https://\xd0\xb0llowed.example/allowed");
    expect_unparsable("https://allowed.example./allowed");
}

static void test_match_prefixes(void **state)
{
    const struct coffer_broker_dest slash = {"https", "allowed.example", 0, "/api/"};
    const struct coffer_broker_dest any = {"https", "allowed.example", 0, NULL};
    const struct coffer_broker_dest empty = {"https", "allowed.example", 0, ""};
    const struct coffer_broker_dest root = {"HTTPS", "Allowed.Example", 443, "/"};

    (void)state;
    expect_inside(&slash, ALLOWED "/api/");
    expect_inside(&slash, ALLOWED "/api/x");
    expect_outside(&slash, ALLOWED "/api");
    expect_outside(&slash, ALLOWED "/apix");
    for (size_t i = 0; i < 3; i++) {
        const struct coffer_broker_dest *d = i == 0 ? &any : i == 1 ? &empty : &root;

        expect_inside(d, ALLOWED);
        expect_inside(d, ALLOWED "/");
        expect_inside(d, ALLOWED "/anything/at/all?x");
        expect_outside(d, "https://other.example/");
        expect_outside(d, ALLOWED ":444/");
    }
}

static void test_match_ports(void **state)
{
    const struct coffer_broker_dest d = {"https", "allowed.example", 8443, "/a"};

    (void)state;
    expect_inside(&d, ALLOWED ":8443/a");
    expect_outside(&d, ALLOWED "/a");
    expect_outside(&d, ALLOWED ":443/a");
    expect_outside(&d, ALLOWED ":8444/a");
}

static void test_match_wildcard(void **state)
{
    const struct coffer_broker_dest d = {"https", "*.example.com", 0, "/"};

    (void)state;
    assert_int_equal(coffer_broker_dest_validate(&d), COFFER_OK);
    expect_inside(&d, "https://a.example.com/");
    expect_inside(&d, "https://a.b.example.com/x");
    expect_inside(&d, "https://API.Example.COM/x");
    expect_outside(&d, "https://example.com/");
    expect_outside(&d, "https://aexample.com/");
    expect_outside(&d, "https://a.example.com.evil.example/");
    expect_outside(&d, "https://a.example.org/");
    expect_outside(&d, "https://[::1]/");
    expect_outside(&d, "https://127.0.0.1/");
    expect_unparsable("https://.example.com/");
}

static void test_match_addresses(void **state)
{
    const struct coffer_broker_dest v6 = {"https", "[::1]", 8443, "/"};
    const struct coffer_broker_dest v6_long = {"https", "[0:0:0:0:0:0:0:1]", 8443, "/"};
    const struct coffer_broker_dest name = {"https", "localhost", 8443, "/"};
    const struct coffer_broker_dest v4 = {"https", "127.0.0.1", 8443, "/"};

    (void)state;
    expect_inside(&v6, "https://[::1]:8443/");
    expect_inside(&v6, "https://[0:0::1]:8443/x");
    expect_inside(&v6_long, "https://[::1]:8443/");
    expect_outside(&v6, "https://[::2]:8443/");
    expect_outside(&v6, "https://localhost:8443/");
    expect_outside(&v6, "https://127.0.0.1:8443/");
    expect_outside(&name, "https://[::1]:8443/");
    expect_outside(&name, "https://127.0.0.1:8443/");
    expect_inside(&v4, "https://127.0.0.1:8443/");
    expect_outside(&v4, "https://[::ffff:127.0.0.1]:8443/");
    expect_outside(&v4, "https://localhost:8443/");
    expect_unparsable("https://127.1:8443/");
}

struct bad_dest {
    struct coffer_broker_dest d;
    const char *detail;
};

static void test_dest_validate(void **state)
{
    static const struct bad_dest bad[] = {
        {{"http", "allowed.example", 0, "/"}, "https"},
        {{NULL, "allowed.example", 0, "/"}, "https"},
        {{"https", NULL, 0, "/"}, "no host"},
        {{"https", "", 0, "/"}, "no host"},
        {{"https", "*.com", 0, "/"}, "two labels"},
        {{"https", "*.", 0, "/"}, "no host"},
        {{"https", "*", 0, "/"}, "other than letters"},
        {{"https", "*.*.example.com", 0, "/"}, "other than letters"},
        {{"https", "a.*.example.com", 0, "/"}, "other than letters"},
        {{"https", "*.[::1]", 0, "/"}, "two labels"},
        {{"https", "*.127.0.0.1", 0, "/"}, "two labels"},
        {{"https", "allowed.example.", 0, "/"}, "trailing dot"},
        {{"https", "[::1", 0, "/"}, "closing"},
        {{"https", "::1", 0, "/"}, "other than letters"},
        {{"https", "a_b.example", 0, "/"}, "other than letters"},
        {{"https", "\xd0\xb0llowed.example", 0, "/"}, "punycode"},
        {{"https", "127.1", 0, "/"}, "numeric host"},
        {{"https", "allowed.example", 0, "allowed"}, "start with '/'"},
        {{"https", "allowed.example", 0, "/a/../b"}, "dot segment"},
        {{"https", "allowed.example", 0, "/a/%2e%2e"}, "dot segment"},
        {{"https", "allowed.example", 0, "/a?x"}, "'?' or '#'"},
        {{"https", "allowed.example", 0, "/a#x"}, "'?' or '#'"},
        {{"https", "allowed.example", 0, "/a//b"}, "empty segment"},
        {{"https", "allowed.example", 0, "/a b"}, "RFC 3986"},
    };
    static const struct coffer_broker_dest good[] = {
        {"https", "allowed.example", 0, "/allowed"},
        {"HTTPS", "ALLOWED.example", 65535, NULL},
        {"https", "*.example.com", 0, ""},
        {"https", "[::1]", 8443, "/api/"},
        {"https", "127.0.0.1", 1, "/"},
        {"https", "xn--bcher-kva.example", 0, "/a;b/%41"},
    };
    struct coffer_broker_url u;

    (void)state;
    assert_int_equal(coffer_broker_url_parse(ALLOWED "/a/b", strlen(ALLOWED "/a/b"), &u),
                     COFFER_OK);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        print_message("bad destination %zu\n", i);
        assert_int_equal(coffer_broker_dest_validate(&bad[i].d), COFFER_E_INVALID);
        if (strstr(coffer_err_detail(), bad[i].detail) == NULL) {
            fail_msg("detail \"%s\" lacks \"%s\"", coffer_err_detail(), bad[i].detail);
        }
        /* An invalid destination matches nothing, even a URL it would name textually. */
        assert_false(coffer_broker_dest_match(&bad[i].d, &u));
    }
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        if (coffer_broker_dest_validate(&good[i]) != COFFER_OK) {
            fail_msg("destination %zu refused: %s", i, coffer_err_detail());
        }
    }
    assert_int_equal(coffer_broker_dest_validate(NULL), COFFER_E_INVALID);
    coffer_broker_url_cleanup(&u);
}

/* A hand-built URL that the parser would never give matches nothing. */
static void test_match_rechecks_url(void **state)
{
    const struct coffer_broker_dest d = {"https", "allowed.example", 0, "/allowed"};
    struct coffer_broker_url u;
    char *saved;

    (void)state;
    assert_int_equal(coffer_broker_url_parse(ALLOWED "/allowed", strlen(ALLOWED "/allowed"), &u),
                     COFFER_OK);
    assert_true(coffer_broker_dest_match(&d, &u));
    saved = u.path;

    u.path = (char *)"/allowed/../other";
    assert_false(coffer_broker_dest_match(&d, &u));
    u.path = (char *)"/allowed/%2e%2e/other";
    assert_false(coffer_broker_dest_match(&d, &u));
    u.path = NULL;
    assert_false(coffer_broker_dest_match(&d, &u));
    u.path = saved;

    u.query = (char *)"a b";
    assert_false(coffer_broker_dest_match(&d, &u));
    u.query = NULL;

    memcpy(u.host, "ALLOWED.example", sizeof("ALLOWED.example"));
    assert_false(coffer_broker_dest_match(&d, &u));
    memcpy(u.host, "allowed.example", sizeof("allowed.example"));

    memcpy(u.scheme, "http", sizeof("http"));
    assert_false(coffer_broker_dest_match(&d, &u));
    memcpy(u.scheme, "https", sizeof("https"));

    u.port = 0;
    assert_false(coffer_broker_dest_match(&d, &u));
    u.port = 443;

    /* Restored, it matches again: each refusal above was the one change. */
    assert_true(coffer_broker_dest_match(&d, &u));
    assert_false(coffer_broker_dest_match(NULL, &u));
    assert_false(coffer_broker_dest_match(&d, NULL));
    coffer_broker_url_cleanup(&u);
}

static void test_dests_allow(void **state)
{
    const struct coffer_broker_dest list[] = {
        {"https", "api.example", 0, "/v1"},
        {"https", "upload.example", 8443, "/files/"},
    };
    struct coffer_broker_url a;
    struct coffer_broker_url b;
    struct coffer_broker_url c;

    (void)state;
    assert_int_equal(coffer_broker_url_parse("https://api.example/v1/x", 24, &a), COFFER_OK);
    assert_int_equal(coffer_broker_url_parse("https://upload.example:8443/files/f", 35, &b),
                     COFFER_OK);
    assert_int_equal(coffer_broker_url_parse("https://upload.example/files/f", 30, &c), COFFER_OK);
    assert_true(coffer_broker_dests_allow(list, 2, &a));
    assert_true(coffer_broker_dests_allow(list, 2, &b));
    assert_false(coffer_broker_dests_allow(list, 2, &c));
    assert_false(coffer_broker_dests_allow(list, 1, &b));
    assert_false(coffer_broker_dests_allow(list, 0, &a));
    assert_false(coffer_broker_dests_allow(NULL, 2, &a));
    coffer_broker_url_cleanup(&a);
    coffer_broker_url_cleanup(&b);
    coffer_broker_url_cleanup(&c);
}

/* ---- Redirects ---------------------------------------------------------------------- */

struct redirect_row {
    const char *location;
    enum coffer_err r;
    bool allowed;
    const char *next; /* canonical text when r is COFFER_OK */
};

static void test_redirects(void **state)
{
    static const struct coffer_broker_dest dests[] = {
        {"https", "allowed.example", 0, "/allowed"},
        {"https", "allowed.example", 8443, "/alt"},
    };
    static const struct redirect_row rows[] = {
        /* In scope: absolute, network-path, absolute-path, relative-path, query-only. */
        {ALLOWED "/allowed/next", COFFER_OK, true, ALLOWED "/allowed/next"},
        {"HTTPS://ALLOWED.EXAMPLE/allowed", COFFER_OK, true, ALLOWED "/allowed"},
        {"//allowed.example/allowed/x", COFFER_OK, true, ALLOWED "/allowed/x"},
        {"/allowed/next?y=2", COFFER_OK, true, ALLOWED "/allowed/next?y=2"},
        {"next", COFFER_OK, true, ALLOWED "/allowed/next"},
        {"sub/next?y=2", COFFER_OK, true, ALLOWED "/allowed/sub/next?y=2"},
        {"?page=2", COFFER_OK, true, ALLOWED "/allowed/start?page=2"},
        {ALLOWED ":8443/alt/x", COFFER_OK, true, ALLOWED ":8443/alt/x"},
        /* Well-formed but out of scope. */
        {"/other", COFFER_OK, false, ALLOWED "/other"},
        {"/allowedx", COFFER_OK, false, ALLOWED "/allowedx"},
        {"https://evil.example/allowed", COFFER_OK, false, "https://evil.example/allowed"},
        {"//evil.example/allowed", COFFER_OK, false, "https://evil.example/allowed"},
        {ALLOWED ":8443/allowed", COFFER_OK, false, ALLOWED ":8443/allowed"},
        {"https://allowed.example.evil.example/allowed", COFFER_OK, false,
         "https://allowed.example.evil.example/allowed"},
        /* Not a URL Coffer would call at all. */
        {"../other", COFFER_E_INVALID, false, NULL},
        {"./next", COFFER_E_INVALID, false, NULL},
        {"/allowed/../other", COFFER_E_INVALID, false, NULL},
        {"%2e%2e/other", COFFER_E_INVALID, false, NULL},
        {"http://allowed.example/allowed", COFFER_E_INVALID, false, NULL},
        {"https://allowed.example@evil.example/allowed", COFFER_E_INVALID, false, NULL},
        {"//evil.example#@allowed.example/allowed", COFFER_E_INVALID, false, NULL},
        {"/allowed/x#frag", COFFER_E_INVALID, false, NULL},
        {"https:evil.example/allowed", COFFER_E_INVALID, false, NULL},
        {"evil.example:443/allowed", COFFER_E_INVALID, false, NULL},
        {"javascript:alert(1)", COFFER_E_INVALID, false, NULL},
        {"\\\\evil.example/allowed", COFFER_E_INVALID, false, NULL},
        {"/\\evil.example/allowed", COFFER_E_INVALID, false, NULL},
        {"///evil.example/allowed", COFFER_E_INVALID, false, NULL},
        {" /allowed/x", COFFER_E_INVALID, false, NULL},
        {"", COFFER_E_INVALID, false, NULL},
    };
    struct coffer_broker_url cur;

    (void)state;
    assert_int_equal(coffer_broker_url_parse(ALLOWED "/allowed/start?x=1",
                                             strlen(ALLOWED "/allowed/start?x=1"), &cur),
                     COFFER_OK);
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        const struct redirect_row *row = &rows[i];
        struct coffer_broker_url next;
        bool allowed = !row->allowed;
        char *text = NULL;
        enum coffer_err r;

        print_message("Location: %s\n", row->location);
        r = coffer_broker_redirect_check(&cur, row->location, strlen(row->location), dests, 2,
                                         &allowed, &next);
        if (r != row->r) {
            fail_msg("%s: got %s (%s)", row->location, coffer_err_str(r), coffer_err_detail());
        }
        assert_int_equal(allowed, row->allowed);
        if (r != COFFER_OK) {
            assert_null(next.path);
            continue;
        }
        assert_int_equal(coffer_broker_url_format(&next, &text), COFFER_OK);
        assert_string_equal(text, row->next);
        coffer_free(text);
        coffer_broker_url_cleanup(&next);
    }
    coffer_broker_url_cleanup(&cur);
}

/* A relative reference keeps the current port; arguments are checked. */
static void test_resolve_keeps_port(void **state)
{
    const struct coffer_broker_dest d = {"https", "allowed.example", 8443, "/allowed"};
    struct coffer_broker_url cur;
    struct coffer_broker_url next;
    struct coffer_broker_url blank;
    bool allowed = false;

    (void)state;
    assert_int_equal(
        coffer_broker_url_parse(ALLOWED ":8443/allowed/a", strlen(ALLOWED ":8443/allowed/a"), &cur),
        COFFER_OK);
    assert_int_equal(coffer_broker_redirect_check(&cur, "b", 1, &d, 1, &allowed, &next), COFFER_OK);
    assert_true(allowed);
    assert_int_equal(next.port, 8443);
    assert_string_equal(next.path, "/allowed/b");
    coffer_broker_url_cleanup(&next);

    assert_int_equal(coffer_broker_redirect_check(&cur, "b", 1, &d, 1, NULL, &next),
                     COFFER_E_INVALID);
    memset(&blank, 0, sizeof(blank));
    assert_int_equal(coffer_broker_url_resolve(&blank, "b", 1, &next), COFFER_E_INVALID);
    assert_int_equal(coffer_broker_url_resolve(NULL, "b", 1, &next), COFFER_E_INVALID);
    assert_int_equal(coffer_broker_url_resolve(&cur, NULL, 1, &next), COFFER_E_INVALID);
    assert_int_equal(coffer_broker_url_resolve(&cur, "b", 1, NULL), COFFER_E_INVALID);
    assert_int_equal(coffer_broker_url_resolve(&cur, "b", COFFER_BROKER_URL_MAX + 1, &next),
                     COFFER_E_LIMIT);
    coffer_broker_url_cleanup(&cur);
}

/* ---- Redaction ---------------------------------------------------------------------- */

/* A value with bytes that every encoding spells differently: space, '/', '+', '%', '?'. */
#define VALUE "tok_9f/+ Q%x?Zz~"
#define VALUE2 "second-Value-77"

/* Standard or URL-safe base64 of n bytes at p, with or without padding, via OpenSSL. */
static char *b64(const void *p, size_t n, bool url, bool pad)
{
    char *out = coffer_calloc(1, (n + 2) / 3 * 4 + 1);
    int len;

    assert_non_null(out);
    len = EVP_EncodeBlock((unsigned char *)out, p, (int)n);
    assert_true(len >= 0);
    for (int i = 0; i < len; i++) {
        if (url && out[i] == '+') {
            out[i] = '-';
        } else if (url && out[i] == '/') {
            out[i] = '_';
        }
    }
    while (!pad && len > 0 && out[len - 1] == '=') {
        out[--len] = '\0';
    }
    return out;
}

/* Percent-encoding of every byte of s, with upper- or lower-case hex. */
static char *pct_all(const char *s, bool upper)
{
    size_t n = strlen(s);
    char *out = coffer_calloc(1, 3 * n + 1);

    assert_non_null(out);
    for (size_t i = 0; i < n; i++) {
        snprintf(out + 3 * i, 4, upper ? "%%%02X" : "%%%02x", (unsigned char)s[i]);
    }
    return out;
}

static struct coffer_broker_redactor *redactor_of(const char *value, const char *user)
{
    struct coffer_broker_redactor *r = NULL;
    struct coffer_secret *s = NULL;

    assert_int_equal(coffer_broker_redactor_new(&r), COFFER_OK);
    assert_int_equal(coffer_secret_from(value, strlen(value), &s), COFFER_OK);
    assert_int_equal(coffer_broker_redactor_add(r, s, user), COFFER_OK);
    coffer_secret_free(&s);
    return r;
}

/* Redacts in and checks the result is want; a mismatch reports lengths only. */
static void expect_redacted(const struct coffer_broker_redactor *r, const char *in,
                            const char *want)
{
    struct coffer_buf out = {0};
    enum coffer_err e = coffer_broker_redact(r, in, strlen(in), &out);

    if (e != COFFER_OK) {
        fail_msg("redact failed: %s", coffer_err_detail());
    }
    if (out.len != strlen(want) || !coffer_mem_equal(out.data, want, out.len)) {
        fail_msg("redacted output of %zu bytes differs from the %zu expected (input %zu bytes)",
                 out.len, strlen(want), strlen(in));
    }
    coffer_buf_cleanup(&out);
}

/* Builds before + middle + after. */
static char *cat3(const char *before, const char *middle, const char *after)
{
    size_t n = strlen(before) + strlen(middle) + strlen(after) + 1;
    char *s = coffer_calloc(1, n);

    assert_non_null(s);
    snprintf(s, n, "%s%s%s", before, middle, after);
    return s;
}

/* Every placement of form: whole buffer, start, middle, end, twice. */
static void expect_form_redacted(const struct coffer_broker_redactor *r, const char *form)
{
    static const char *const edges[][4] = {
        {"", "", "", ""},
        {"", "<-tail", "", "[REDACTED]<-tail"},
        {"head->", "<-tail", "head->", "[REDACTED]<-tail"},
        {"head->", "", "head->", "[REDACTED]"},
    };

    for (size_t i = 0; i < sizeof(edges) / sizeof(edges[0]); i++) {
        char *in = cat3(edges[i][0], form, edges[i][1]);
        char *want = i == 0 ? cat3("", "[REDACTED]", "") : cat3(edges[i][2], edges[i][3], "");

        expect_redacted(r, in, want);
        coffer_free(in);
        coffer_free(want);
    }
    {
        char *twice = cat3(form, " and ", form);

        expect_redacted(r, twice, "[REDACTED] and [REDACTED]");
        coffer_free(twice);
    }
}

static void test_redact_raw_and_base64(void **state)
{
    struct coffer_broker_redactor *r = redactor_of(VALUE, NULL);

    (void)state;
    expect_form_redacted(r, VALUE);
    for (int k = 0; k < 4; k++) {
        char *form = b64(VALUE, strlen(VALUE), k >= 2, k % 2 == 0);

        print_message("base64%s %s padding\n", k >= 2 ? "url" : "",
                      k % 2 == 0 ? "with" : "without");
        expect_form_redacted(r, form);
        coffer_free(form);
    }
    /* Text without the value passes through byte for byte. */
    expect_redacted(r, "{\"status\":\"ok\",\"n\":42}", "{\"status\":\"ok\",\"n\":42}");
    expect_redacted(r, "", "");
    /* A near miss (last byte changed) is left alone. */
    expect_redacted(r, "x tok_9f/+ Q%x?Zz! y", "x tok_9f/+ Q%x?Zz! y");
    coffer_broker_redactor_free(&r);
    assert_null(r);
}

/* Base64 of every length modulo 3, so padding of one, two and no '=' are all met. */
static void test_redact_base64_lengths(void **state)
{
    static const char *const values[] = {"abcd", "abcde", "abcdef", "\xff\xfe\xfd\xfc\xfb"};

    (void)state;
    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
        struct coffer_broker_redactor *r = redactor_of(values[i], NULL);

        for (int k = 0; k < 4; k++) {
            char *form = b64(values[i], strlen(values[i]), k >= 2, k % 2 == 0);
            char *in = cat3("a=", form, ";");

            expect_redacted(r, in, "a=[REDACTED];");
            coffer_free(in);
            coffer_free(form);
        }
        coffer_broker_redactor_free(&r);
    }
}

static void test_redact_url_encoded(void **state)
{
    struct coffer_broker_redactor *r = redactor_of(VALUE, NULL);
    char *upper = pct_all(VALUE, true);
    char *lower = pct_all(VALUE, false);
    char *b64std = b64(VALUE, strlen(VALUE), false, true);
    char *b64pct = NULL;

    (void)state;
    expect_form_redacted(r, upper);
    expect_form_redacted(r, lower);
    /* As a form encoder writes it: only the special bytes escaped, '+' for the space. */
    expect_form_redacted(r, "tok_9f%2F%2B+Q%25x%3FZz~");
    expect_form_redacted(r, "tok_9f%2f%2b%20Q%25x%3fZz%7E");
    /* Mixed case within one occurrence. */
    expect_form_redacted(r, "%74ok_9f%2F%2b+Q%25x%3FZz~");
    /* Base64 of the value with its '+', '/' and '=' escaped, as in a query string. */
    b64pct = coffer_calloc(1, 3 * strlen(b64std) + 1);
    assert_non_null(b64pct);
    for (size_t i = 0, o = 0; b64std[i] != '\0'; i++) {
        if (b64std[i] == '+' || b64std[i] == '/' || b64std[i] == '=') {
            o += (size_t)snprintf(b64pct + o, 4, "%%%02X", (unsigned char)b64std[i]);
        } else {
            b64pct[o++] = b64std[i];
        }
    }
    expect_form_redacted(r, b64pct);
    /* In a redirect Location, an echoed token is redacted but the rest stays. */
    {
        char *in = cat3("https://allowed.example/cb?token=", lower, "&state=1");

        expect_redacted(r, in, "https://allowed.example/cb?token=[REDACTED]&state=1");
        coffer_free(in);
    }
    coffer_free(b64pct);
    coffer_free(b64std);
    coffer_free(upper);
    coffer_free(lower);
    coffer_broker_redactor_free(&r);
}

static void test_redact_json_escaped(void **state)
{
    struct coffer_broker_redactor *r = redactor_of(VALUE, NULL);

    (void)state;
    expect_form_redacted(r, "tok_9f\\/+ Q%x?Zz~");
    expect_form_redacted(r, "\\u0074ok_9f\\/+\\u0020Q%x\\u003FZz~");
    expect_redacted(r, "{\"echo\":\"tok_9f\\/+ Q%x?Zz~\"}", "{\"echo\":\"[REDACTED]\"}");
    coffer_broker_redactor_free(&r);
}

/* A value holding "%25" is found raw although the escape reading would take "%25" as '%'. */
static void test_redact_value_with_escape_text(void **state)
{
    struct coffer_broker_redactor *r = redactor_of("ab%25cd", NULL);

    (void)state;
    expect_form_redacted(r, "ab%25cd");
    expect_form_redacted(r, "ab%2525cd");
    expect_form_redacted(r, "%61%62%25%32%35%63%64");
    coffer_broker_redactor_free(&r);
}

static void test_redact_overlapping(void **state)
{
    struct coffer_broker_redactor *r = redactor_of("abab", NULL);
    struct coffer_broker_redactor *two = redactor_of("1234abcd", NULL);
    struct coffer_secret *s = NULL;

    (void)state;
    /* Occurrences at 1 and 3 overlap: one replacement, no "ab" left between. */
    expect_redacted(r, "xababab y", "x[REDACTED] y");
    expect_redacted(r, "abababab", "[REDACTED]");
    /* Adjacent occurrences merge too. */
    expect_redacted(r, "-ababab%61b-", "-[REDACTED]-");
    coffer_broker_redactor_free(&r);

    /* Two values overlapping each other. */
    assert_int_equal(coffer_secret_from("abcd5678", 8, &s), COFFER_OK);
    assert_int_equal(coffer_broker_redactor_add(two, s, NULL), COFFER_OK);
    coffer_secret_free(&s);
    expect_redacted(two, "<1234abcd5678>", "<[REDACTED]>");
    expect_redacted(two, "<1234abcd> <abcd5678>", "<[REDACTED]> <[REDACTED]>");
    expect_redacted(two, "<1234abcd%35678>", "<[REDACTED]>");
    coffer_broker_redactor_free(&two);
}

/* A body cut at its size limit inside an occurrence loses the cut part too. */
static void test_redact_cut_at_end(void **state)
{
    struct coffer_broker_redactor *r = redactor_of(VALUE, NULL);
    char *b64std = b64(VALUE, strlen(VALUE), false, true);
    char *lower = pct_all(VALUE, false);
    char *in;

    (void)state;
    expect_redacted(r, "body: tok_9f", "body: [REDACTED]");
    expect_redacted(r, "body: tok_", "body: [REDACTED]");
    /* Fewer than COFFER_BROKER_REDACT_MIN bytes of it: indistinguishable from noise. */
    expect_redacted(r, "body: tok", "body: tok");
    /* Cut inside base64 and inside an escape. */
    b64std[10] = '\0';
    in = cat3("b=", b64std, "");
    expect_redacted(r, in, "b=[REDACTED]");
    coffer_free(in);
    lower[20] = '\0'; /* "%74%6f%6b%5f%39%66%2" */
    in = cat3("q=", lower, "");
    expect_redacted(r, in, "q=[REDACTED]");
    coffer_free(in);
    /* Not at the end, a partial copy is not an occurrence. */
    expect_redacted(r, "tok_9f/ and more", "tok_9f/ and more");
    coffer_free(b64std);
    coffer_free(lower);
    coffer_broker_redactor_free(&r);
}

static void test_redact_basic_auth(void **state)
{
    struct coffer_broker_redactor *r = redactor_of(VALUE, "alice");
    const char basic[] = "alice:" VALUE;

    (void)state;
    for (int k = 0; k < 4; k++) {
        char *form = b64(basic, strlen(basic), k >= 2, k % 2 == 0);
        char *in = cat3("Authorization: Basic ", form, "");

        expect_redacted(r, in, "Authorization: Basic [REDACTED]");
        coffer_free(in);
        coffer_free(form);
    }
    /* The raw value is still covered alongside. */
    expect_redacted(r, "alice:" VALUE, "alice:[REDACTED]");
    coffer_broker_redactor_free(&r);
}

/* Many placements of every form in noise: nothing of the value survives. */
static void test_redact_property(void **state)
{
    struct coffer_broker_redactor *r = redactor_of(VALUE, "bob");
    const char basic[] = "bob:" VALUE;
    char *forms[12];
    size_t n_forms = 0;
    unsigned seed = 12345;

    (void)state;
    forms[n_forms++] = coffer_strdup(VALUE);
    forms[n_forms++] = pct_all(VALUE, true);
    forms[n_forms++] = pct_all(VALUE, false);
    for (int k = 0; k < 4; k++) {
        forms[n_forms++] = b64(VALUE, strlen(VALUE), k >= 2, k % 2 == 0);
        forms[n_forms++] = b64(basic, strlen(basic), k >= 2, k % 2 == 0);
    }
    for (int round = 0; round < 500; round++) {
        struct coffer_buf in = {0};
        struct coffer_buf out = {0};

        for (int piece = 0; piece < 6; piece++) {
            size_t noise;

            seed = seed * 1103515245u + 12345u;
            noise = (seed >> 16) % 7;
            for (size_t i = 0; i < noise; i++) {
                seed = seed * 1103515245u + 12345u;
                assert_int_equal(
                    coffer_buf_put_u8(&in, (uint8_t)("ab+/=%x Q~\\\"_-9"[(seed >> 16) % 15])),
                    COFFER_OK);
            }
            seed = seed * 1103515245u + 12345u;
            {
                const char *f = forms[(seed >> 16) % n_forms];

                assert_int_equal(coffer_buf_put(&in, f, strlen(f)), COFFER_OK);
            }
        }
        assert_int_equal(coffer_broker_redact(r, in.data, in.len, &out), COFFER_OK);
        for (size_t f = 0; f < n_forms; f++) {
            assert_null(memmem(out.data, out.len, forms[f], strlen(forms[f])));
        }
        /* The longest run of the value's own bytes left is shorter than the minimum. */
        assert_null(memmem(out.data, out.len, "tok_", 4));
        assert_null(memmem(out.data, out.len, "Zz~", 3));
        coffer_buf_cleanup(&in);
        coffer_buf_cleanup(&out);
    }
    for (size_t f = 0; f < n_forms; f++) {
        coffer_free(forms[f]);
    }
    coffer_broker_redactor_free(&r);
}

static void test_redact_several_values(void **state)
{
    struct coffer_broker_redactor *r = redactor_of(VALUE, NULL);
    struct coffer_secret *s = NULL;
    char *b = b64(VALUE2, strlen(VALUE2), true, false);
    char *in;

    (void)state;
    assert_int_equal(coffer_secret_from(VALUE2, strlen(VALUE2), &s), COFFER_OK);
    assert_int_equal(coffer_broker_redactor_add(r, s, NULL), COFFER_OK);
    /* The same value twice adds nothing new and is accepted. */
    assert_int_equal(coffer_broker_redactor_add(r, s, NULL), COFFER_OK);
    coffer_secret_free(&s);
    in = cat3(VALUE " | " VALUE2 " | ", b, "");
    expect_redacted(r, in, "[REDACTED] | [REDACTED] | [REDACTED]");
    coffer_free(in);
    coffer_free(b);
    coffer_broker_redactor_free(&r);
}

static void test_redactor_refusals(void **state)
{
    struct coffer_broker_redactor *r = NULL;
    struct coffer_secret *s3 = NULL;
    struct coffer_secret *s4 = NULL;
    struct coffer_secret *s = NULL;
    char v[16];

    (void)state;
    assert_int_equal(coffer_broker_redactor_new(&r), COFFER_OK);
    assert_int_equal(coffer_secret_from("abc", 3, &s3), COFFER_OK);
    assert_int_equal(coffer_secret_from("abcd", 4, &s4), COFFER_OK);
    assert_int_equal(coffer_broker_redactor_add(r, s3, NULL), COFFER_E_INVALID);
    assert_non_null(strstr(coffer_err_detail(), "too short"));
    assert_null(strstr(coffer_err_detail(), "abc"));
    /* The short value was refused, so the redactor still leaves it alone. */
    expect_redacted(r, "abc abcd", "abc abcd");
    assert_int_equal(coffer_broker_redactor_add(r, s4, "a:b"), COFFER_E_INVALID);
    assert_int_equal(coffer_broker_redactor_add(r, s4, "a\nb"), COFFER_E_INVALID);
    assert_int_equal(coffer_broker_redactor_add(r, NULL, NULL), COFFER_E_INVALID);
    assert_int_equal(coffer_broker_redactor_add(NULL, s4, NULL), COFFER_E_INVALID);
    /* Refused adds changed nothing: abcd is not redacted yet. */
    expect_redacted(r, "abc abcd", "abc abcd");
    assert_int_equal(coffer_broker_redactor_add(r, s4, NULL), COFFER_OK);
    expect_redacted(r, "abc abcd", "abc [REDACTED]");
    /* At most COFFER_BROKER_REDACT_VALUES values. */
    for (int i = 1; i < COFFER_BROKER_REDACT_VALUES; i++) {
        snprintf(v, sizeof(v), "value-%03d", i);
        assert_int_equal(coffer_secret_from(v, strlen(v), &s), COFFER_OK);
        assert_int_equal(coffer_broker_redactor_add(r, s, NULL), COFFER_OK);
        coffer_secret_free(&s);
    }
    assert_int_equal(coffer_secret_from("one-too-many", 12, &s), COFFER_OK);
    assert_int_equal(coffer_broker_redactor_add(r, s, NULL), COFFER_E_LIMIT);
    coffer_secret_free(&s);
    expect_redacted(r, "value-063 one-too-many", "[REDACTED] one-too-many");
    coffer_secret_free(&s3);
    coffer_secret_free(&s4);
    coffer_broker_redactor_free(&r);
    coffer_broker_redactor_free(&r);
    coffer_broker_redactor_free(NULL);
    assert_int_equal(coffer_broker_redactor_new(NULL), COFFER_E_INVALID);
}

static void test_redact_output_rules(void **state)
{
    struct coffer_broker_redactor *r = redactor_of(VALUE, NULL);
    struct coffer_buf out = {0};
    static const char in[] = "0123456789 " VALUE " 0123456789";

    (void)state;
    /* A buffer that is not empty is refused and left as it was. */
    assert_int_equal(coffer_buf_put(&out, "keep", 4), COFFER_OK);
    assert_int_equal(coffer_broker_redact(r, in, strlen(in), &out), COFFER_E_INVALID);
    assert_int_equal(out.len, 4);
    assert_memory_equal(out.data, "keep", 4);
    coffer_buf_cleanup(&out);
    /* Past the output's limit: an error, and no part-written output. */
    out.max = 16;
    assert_int_equal(coffer_broker_redact(r, in, strlen(in), &out), COFFER_E_LIMIT);
    assert_int_equal(out.len, 0);
    assert_null(out.data);
    out.max = 0;
    assert_int_equal(coffer_broker_redact(NULL, in, strlen(in), &out), COFFER_E_INVALID);
    assert_int_equal(coffer_broker_redact(r, NULL, 3, &out), COFFER_E_INVALID);
    assert_int_equal(coffer_broker_redact(r, in, strlen(in), NULL), COFFER_E_INVALID);
    assert_int_equal(coffer_broker_redact(r, NULL, 0, &out), COFFER_OK);
    assert_int_equal(out.len, 0);
    coffer_buf_cleanup(&out);
    coffer_broker_redactor_free(&r);
}

static void expect_header(const struct coffer_broker_redactor *r, const char *name,
                          const char *value, enum coffer_err want_r, const char *want)
{
    struct coffer_buf out = {0};
    enum coffer_err e =
        coffer_broker_redact_header(r, name, strlen(name), value, strlen(value), &out);

    if (e != want_r) {
        fail_msg("header %s: got %s (%s)", name, coffer_err_str(e), coffer_err_detail());
    }
    if (want != NULL && (out.len != strlen(want) || !coffer_mem_equal(out.data, want, out.len))) {
        fail_msg("header %s: redacted value of %zu bytes differs from the %zu expected", name,
                 out.len, strlen(want));
    }
    if (want == NULL) {
        assert_int_equal(out.len, 0);
    }
    coffer_buf_cleanup(&out);
}

static void test_redact_headers(void **state)
{
    struct coffer_broker_redactor *r = redactor_of(VALUE, "alice");
    const char basic[] = "alice:" VALUE;
    char *b = b64(basic, strlen(basic), false, true);
    char *auth = cat3("Basic ", b, "");
    char *loc = cat3("https://allowed.example/cb?t=", "tok_9f%2F%2B+Q%25x%3FZz~", "#x");

    (void)state;
    expect_header(r, "Authorization", "Bearer " VALUE, COFFER_OK, "Bearer [REDACTED]");
    expect_header(r, "Authorization", auth, COFFER_OK, "Basic [REDACTED]");
    expect_header(r, "Location", loc, COFFER_OK, "https://allowed.example/cb?t=[REDACTED]#x");
    expect_header(r, "Set-Cookie", "sid=" VALUE "; Secure", COFFER_OK, "sid=[REDACTED]; Secure");
    expect_header(r, "Content-Type", "application/json", COFFER_OK, "application/json");
    expect_header(r, "X-Empty", "", COFFER_OK, "");
    /* Refused: line breaks (one header at a time), and a name carrying the value. */
    expect_header(r, "X-A", "a\r\nSet-Cookie: x", COFFER_E_INVALID, NULL);
    expect_header(r, "X-A\n", "a", COFFER_E_INVALID, NULL);
    expect_header(r, "X-" VALUE, "a", COFFER_E_INVALID, NULL);
    assert_non_null(strstr(coffer_err_detail(), "header name"));
    assert_null(strstr(coffer_err_detail(), "tok_"));
    expect_header(r, "", "a", COFFER_E_INVALID, NULL);
    assert_int_equal(coffer_broker_redact_header(r, "X", 1, "a", 1, NULL), COFFER_E_INVALID);
    coffer_free(loc);
    coffer_free(auth);
    coffer_free(b);
    coffer_broker_redactor_free(&r);
}

/* ---- Templates ---------------------------------------------------------------------- */

static void test_has_placeholder(void **state)
{
    static const char *const yes[] = {
        "{{x}}", "a{{", "{{", "%7B%7Bx", "%7b%7b", "%7b{", "{%7B", "x=%7B%7Baccess_token%7D%7D",
    };
    static const char *const no[] = {
        "", "{x}", "{", "%7B", "%7", "{ {", "%7B %7B", "%7C%7C", "}}", "{%7",
    };

    (void)state;
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        if (!coffer_broker_has_placeholder(yes[i], strlen(yes[i]))) {
            fail_msg("\"%s\" holds a placeholder", yes[i]);
        }
    }
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++) {
        if (coffer_broker_has_placeholder(no[i], strlen(no[i]))) {
            fail_msg("\"%s\" holds no placeholder", no[i]);
        }
    }
    /* Only len bytes are read. */
    assert_false(coffer_broker_has_placeholder("a{{", 2));
    assert_false(coffer_broker_has_placeholder(NULL, 4));
}

static void test_template_check(void **state)
{
    static const char *const good[] = {
        "Bearer {{access_token}}",       "{{a}}{{b.c-d}}", "x{y}z", "{{a}}}", "{{_0}}",
        "token {{Key_9}} and {{key-2}}",
    };
    static const struct {
        const char *t;
        const char *detail;
    } bad[] = {
        {"{{", "not closed"},
        {"Bearer {{access_token", "not closed"},
        {"{{access_token}", "not closed"},
        {"{{}}", "not a key name"},
        {"{{ a }}", "not a key name"},
        {"{{a b}}", "not a key name"},
        {"{{-a}}", "not a key name"},
        {"{{.a}}", "not a key name"},
        {"{{{a}}}", "not a key name"},
        {"{{a{{b}}", "not a key name"},
        {"a}}", "stray"},
        {"}}{{a}}", "stray"},
        {"Bearer\r\n{{a}}", "printable ASCII"},
        {"Bearer\t{{a}}", "printable ASCII"},
        {"caf\xc3\xa9 {{a}}", "printable ASCII"},
    };
    char name[80];
    char t[100];
    char *big;

    (void)state;
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        if (coffer_broker_template_check(good[i], strlen(good[i])) != COFFER_OK) {
            fail_msg("\"%s\" refused: %s", good[i], coffer_err_detail());
        }
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(coffer_broker_template_check(bad[i].t, strlen(bad[i].t)),
                         COFFER_E_INVALID);
        if (strstr(coffer_err_detail(), bad[i].detail) == NULL) {
            fail_msg("detail \"%s\" lacks \"%s\"", coffer_err_detail(), bad[i].detail);
        }
    }
    assert_int_equal(coffer_broker_template_check("", 0), COFFER_E_INVALID);
    assert_int_equal(coffer_broker_template_check(NULL, 3), COFFER_E_INVALID);
    /* Key names of 64 bytes pass, 65 do not. */
    memset(name, 'k', sizeof(name));
    name[64] = '\0';
    snprintf(t, sizeof(t), "{{%s}}", name);
    assert_int_equal(coffer_broker_template_check(t, strlen(t)), COFFER_OK);
    name[64] = 'k';
    name[65] = '\0';
    snprintf(t, sizeof(t), "{{%s}}", name);
    assert_int_equal(coffer_broker_template_check(t, strlen(t)), COFFER_E_INVALID);
    /* Templates of COFFER_BROKER_TEMPLATE_MAX bytes pass, one more does not. */
    big = coffer_calloc(1, COFFER_BROKER_TEMPLATE_MAX + 2);
    assert_non_null(big);
    memset(big, 'x', COFFER_BROKER_TEMPLATE_MAX + 1);
    assert_int_equal(coffer_broker_template_check(big, COFFER_BROKER_TEMPLATE_MAX), COFFER_OK);
    assert_int_equal(coffer_broker_template_check(big, COFFER_BROKER_TEMPLATE_MAX + 1),
                     COFFER_E_LIMIT);
    coffer_free(big);
}

static struct coffer_keyset *keyset(void)
{
    struct coffer_keyset *ks = NULL;

    assert_int_equal(coffer_keyset_new(&ks), COFFER_OK);
    assert_int_equal(coffer_keyset_add(ks, "access_token", VALUE, strlen(VALUE)), COFFER_OK);
    assert_int_equal(coffer_keyset_add(ks, "user", "alice", 5), COFFER_OK);
    assert_int_equal(coffer_keyset_add(ks, "multi.line", "a\r\nX-Evil: 1", 12), COFFER_OK);
    assert_int_equal(coffer_keyset_add(ks, "nul", "a\0b", 3), COFFER_OK);
    assert_int_equal(coffer_keyset_add(ks, "empty", "", 0), COFFER_OK);
    return ks;
}

static void expect_expansion(const struct coffer_keyset *ks, const char *t,
                             enum coffer_broker_enc enc, const char *want)
{
    struct coffer_secret *out = NULL;
    struct coffer_secret_view v;

    if (coffer_broker_template_expand(t, strlen(t), ks, enc, &out) != COFFER_OK) {
        fail_msg("expanding \"%s\": %s", t, coffer_err_detail());
    }
    v = coffer_secret_view(out);
    if (v.len != strlen(want) || !coffer_mem_equal(v.data, want, v.len)) {
        fail_msg("expanding \"%s\" gave %zu bytes, %zu expected", t, v.len, strlen(want));
    }
    coffer_secret_free(&out);
}

static void test_template_expand(void **state)
{
    struct coffer_keyset *ks = keyset();

    (void)state;
    expect_expansion(ks, "Bearer {{access_token}}", COFFER_BROKER_ENC_HEADER, "Bearer " VALUE);
    expect_expansion(ks, "{{user}}:{{access_token}}", COFFER_BROKER_ENC_HEADER, "alice:" VALUE);
    expect_expansion(ks, "{{access_token}}", COFFER_BROKER_ENC_QUERY, "tok_9f%2F%2B%20Q%25x%3FZz~");
    expect_expansion(ks, "{{multi.line}}", COFFER_BROKER_ENC_QUERY, "a%0D%0AX-Evil%3A%201");
    expect_expansion(ks, "{{nul}}", COFFER_BROKER_ENC_QUERY, "a%00b");
    expect_expansion(ks, "x{{empty}}y", COFFER_BROKER_ENC_HEADER, "xy");
    expect_expansion(ks, "no placeholder", COFFER_BROKER_ENC_HEADER, "no placeholder");
    coffer_keyset_free(&ks);
}

static void expect_expand_error(const struct coffer_keyset *ks, const char *t,
                                enum coffer_broker_enc enc, enum coffer_err want,
                                const char *detail)
{
    struct coffer_secret *out = (struct coffer_secret *)&out;

    assert_int_equal(coffer_broker_template_expand(t, strlen(t), ks, enc, &out), want);
    assert_null(out);
    if (detail != NULL && strstr(coffer_err_detail(), detail) == NULL) {
        fail_msg("detail \"%s\" lacks \"%s\"", coffer_err_detail(), detail);
    }
    /* No detail ever holds a value. */
    assert_null(strstr(coffer_err_detail(), "tok_"));
    assert_null(strstr(coffer_err_detail(), "X-Evil"));
    assert_null(strstr(coffer_err_detail(), "alice"));
}

static void test_template_errors(void **state)
{
    struct coffer_keyset *ks = keyset();
    struct coffer_secret *out = NULL;

    (void)state;
    expect_expand_error(ks, "Bearer {{missing}}", COFFER_BROKER_ENC_HEADER, COFFER_E_NOT_FOUND,
                        "{{missing}}");
    expect_expand_error(ks, "{{access_token}} {{Access_Token}}", COFFER_BROKER_ENC_HEADER,
                        COFFER_E_NOT_FOUND, "{{Access_Token}}");
    /* A value with a line break or NUL cannot become a header: header injection. */
    expect_expand_error(ks, "Bearer {{multi.line}}", COFFER_BROKER_ENC_HEADER, COFFER_E_INVALID,
                        "{{multi.line}}");
    expect_expand_error(ks, "{{nul}}", COFFER_BROKER_ENC_HEADER, COFFER_E_INVALID, "{{nul}}");
    expect_expand_error(ks, "Bearer {{access_token", COFFER_BROKER_ENC_HEADER, COFFER_E_INVALID,
                        "not closed");
    expect_expand_error(ks, "{{user}}", (enum coffer_broker_enc)7, COFFER_E_INVALID, "encoding");
    expect_expand_error(NULL, "{{user}}", COFFER_BROKER_ENC_HEADER, COFFER_E_INVALID, "key set");
    expect_expand_error(ks, "", COFFER_BROKER_ENC_HEADER, COFFER_E_INVALID, "empty");
    assert_int_equal(
        coffer_broker_template_expand("{{user}}", 8, ks, COFFER_BROKER_ENC_HEADER, NULL),
        COFFER_E_INVALID);
    /* The same template with a known name works: the errors above were the names. */
    assert_int_equal(
        coffer_broker_template_expand("{{user}}", 8, ks, COFFER_BROKER_ENC_HEADER, &out),
        COFFER_OK);
    assert_int_equal(coffer_secret_len(out), 5);
    coffer_secret_free(&out);
    coffer_keyset_free(&ks);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid),
        cmocka_unit_test(test_invalid),
        cmocka_unit_test(test_len_is_respected),
        cmocka_unit_test(test_lengths),
        cmocka_unit_test(test_detail_hides_path_and_query),
        cmocka_unit_test(test_format_refuses_unparsed),
        cmocka_unit_test(test_match_host_port_path),
        cmocka_unit_test(test_match_prefixes),
        cmocka_unit_test(test_match_ports),
        cmocka_unit_test(test_match_wildcard),
        cmocka_unit_test(test_match_addresses),
        cmocka_unit_test(test_dest_validate),
        cmocka_unit_test(test_match_rechecks_url),
        cmocka_unit_test(test_dests_allow),
        cmocka_unit_test(test_redirects),
        cmocka_unit_test(test_resolve_keeps_port),
        cmocka_unit_test(test_redact_raw_and_base64),
        cmocka_unit_test(test_redact_base64_lengths),
        cmocka_unit_test(test_redact_url_encoded),
        cmocka_unit_test(test_redact_json_escaped),
        cmocka_unit_test(test_redact_value_with_escape_text),
        cmocka_unit_test(test_redact_overlapping),
        cmocka_unit_test(test_redact_cut_at_end),
        cmocka_unit_test(test_redact_basic_auth),
        cmocka_unit_test(test_redact_property),
        cmocka_unit_test(test_redact_several_values),
        cmocka_unit_test(test_redactor_refusals),
        cmocka_unit_test(test_redact_output_rules),
        cmocka_unit_test(test_redact_headers),
        cmocka_unit_test(test_has_placeholder),
        cmocka_unit_test(test_template_check),
        cmocka_unit_test(test_template_expand),
        cmocka_unit_test(test_template_errors),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

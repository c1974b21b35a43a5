/* SPDX-License-Identifier: Apache-2.0 */
/*
 * SPIFFE principals: a table of IDs the parser must accept (with the
 * principal each gives) and of IDs it must refuse (with words of the detail
 * that name the class of refusal, so that a row cannot pass by failing for
 * an unrelated reason); the boundaries of every length; details that never
 * quote more than a sanitised prefix; formatting and its round trip; and
 * principals read from certificates built here with every shape of
 * subjectAltName.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "coffer/spiffe.h"

#define TD "coffer.dev"
#define ID(path) "spiffe://" TD path

struct valid_row {
    const char *uri;
    enum coffer_principal_kind kind;
    const char *trust_domain;
    const char *org;
    const char *agent_type;
    const char *instance;
    const char *admin;
};

static const struct valid_row valid_rows[] = {
    {ID("/org/dev/agent/deployer/deployer-1"), COFFER_PRINCIPAL_AGENT, TD, "dev", "deployer",
     "deployer-1", ""},
    {ID("/org/dev/admin/admin"), COFFER_PRINCIPAL_ADMIN, TD, "dev", "", "", "admin"},
    {"spiffe://prod-1.example_x.org/org/acme/agent/ci_bot/0", COFFER_PRINCIPAL_AGENT,
     "prod-1.example_x.org", "acme", "ci_bot", "0", ""},
    {"spiffe://a/org/0/admin/z", COFFER_PRINCIPAL_ADMIN, "a", "0", "", "", "z"},
    /* The keywords are only keywords in their place: as names they are names. */
    {ID("/org/agent/agent/admin/org"), COFFER_PRINCIPAL_AGENT, TD, "agent", "admin", "org", ""},
    {ID("/org/org/admin/agent"), COFFER_PRINCIPAL_ADMIN, TD, "org", "", "", "agent"},
    {ID("/org/9-_/agent/a_-/b--"), COFFER_PRINCIPAL_AGENT, TD, "9-_", "a_-", "b--", ""},
};

struct invalid_row {
    const char *name;
    const char *uri;
    size_t len;         /* 0: strlen(uri) */
    const char *detail; /* words the detail must hold */
};

static const struct invalid_row invalid_rows[] = {
    {"empty", "", 0, "is empty"},
    {"scheme upper case", "SPIFFE://" TD "/org/dev/admin/a", 0, "in lower case"},
    {"scheme mixed case", "Spiffe://" TD "/org/dev/admin/a", 0, "in lower case"},
    {"one slash", "spiffe:/" TD "/org/dev/admin/a", 0, "must begin with \"spiffe://\""},
    {"no slash", "spiffe:" TD "/org/dev/admin/a", 0, "must begin with \"spiffe://\""},
    {"other scheme", "https://" TD "/org/dev/admin/a", 0, "is not a SPIFFE ID"},
    {"scheme only", "spiffe://", 0, "trust domain is empty"},
    {"empty trust domain", "spiffe:///org/dev/admin/a", 0, "trust domain is empty"},
    {"trust domain upper case", "spiffe://Coffer.dev/org/dev/admin/a", 0,
     "trust domain must be lower case"},
    {"port", "spiffe://" TD ":8443/org/dev/admin/a", 0, "a port"},
    {"user info", "spiffe://user@" TD "/org/dev/admin/a", 0, "user info"},
    {"user info and password", "spiffe://u:p@" TD "/org/dev/admin/a", 0, "a port"},
    {"trust domain bad byte", "spiffe://coffer!dev/org/dev/admin/a", 0,
     "allowed are a-z 0-9 . - _"},
    {"trust domain leading dot", "spiffe://.coffer.dev/org/dev/admin/a", 0, "empty label"},
    {"trust domain trailing dot", "spiffe://coffer.dev./org/dev/admin/a", 0, "empty label"},
    {"trust domain empty label", "spiffe://coffer..dev/org/dev/admin/a", 0, "empty label"},
    {"no path", "spiffe://" TD, 0, "has no path"},
    {"percent-encoding", ID("/org/dev/admin/a%41"), 0, "percent-encoding"},
    {"percent-encoded slash", ID("/org/dev%2fadmin/a"), 0, "percent-encoding"},
    {"query", ID("/org/dev/admin/a?x=1"), 0, "a query"},
    {"empty query", ID("/org/dev/admin/a?"), 0, "a query"},
    {"fragment", ID("/org/dev/admin/a#top"), 0, "a fragment"},
    {"trailing slash", ID("/org/dev/admin/a/"), 0, "trailing slash"},
    {"root path", ID("/"), 0, "trailing slash"},
    {"double slash after trust domain", ID("//org/dev/admin/a"), 0, "double slash"},
    {"double slash in path", ID("/org//dev/admin/a"), 0, "double slash"},
    {"dot segment", ID("/org/./dev/admin/a"), 0, "dot segment"},
    {"dot-dot segment", ID("/org/dev/agent/../admin/a"), 0, "dot segment"},
    {"dot-dot at the end", ID("/org/dev/admin/.."), 0, "dot segment"},
    {"org only", ID("/org"), 0, "missing segments"},
    {"org and name only", ID("/org/dev"), 0, "missing segments"},
    {"admin without name", ID("/org/dev/admin"), 0, "3 segments, not 4"},
    {"agent without instance", ID("/org/dev/agent/deployer"), 0, "4 segments, not 5"},
    {"agent without type", ID("/org/dev/agent"), 0, "3 segments, not 5"},
    {"agent extra segment", ID("/org/dev/agent/deployer/d-1/x"), 0, "extra path segments"},
    {"admin extra segment", ID("/org/dev/admin/a/b"), 0, "5 segments, not 4"},
    {"not org", ID("/orgs/dev/admin/a"), 0, "must begin with /org/"},
    {"ORG", ID("/ORG/dev/admin/a"), 0, "must begin with /org/"},
    {"keyword agents", ID("/org/dev/agents/deployer/d-1"), 0, "\"agent\" or \"admin\""},
    {"keyword Admin", ID("/org/dev/Admin/a"), 0, "\"agent\" or \"admin\""},
    {"keyword other", ID("/org/dev/user/a"), 0, "\"agent\" or \"admin\""},
    {"name of 64 bytes",
     ID("/org/dev/admin/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"), 0,
     "64 bytes, more than 63"},
    {"org of 64 bytes",
     ID("/org/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/admin/a"), 0,
     "the org name is 64 bytes"},
    {"name leading dash", ID("/org/dev/admin/-a"), 0, "must begin with a-z or 0-9"},
    {"name leading underscore", ID("/org/dev/agent/_x/d-1"), 0, "must begin with a-z or 0-9"},
    {"org upper case", ID("/org/Dev/admin/a"), 0, "the org name must be lower case"},
    {"instance upper case", ID("/org/dev/agent/deployer/D-1"), 0,
     "the instance name must be lower case"},
    {"type upper case", ID("/org/dev/agent/Deployer/d-1"), 0,
     "the agent type name must be lower case"},
    {"name with dot", ID("/org/dev/admin/a.b"), 0, "allowed are a-z 0-9 - _"},
    {"name with colon", ID("/org/dev/admin/a:b"), 0, "allowed are a-z 0-9 - _"},
    {"NUL inside", ID("/org/dev/admin/a\0b"), sizeof(ID("/org/dev/admin/a\0b")) - 1,
     "NUL byte at byte 35"},
    {"NUL at the end", ID("/org/dev/admin/a"), sizeof(ID("/org/dev/admin/a")), "NUL byte"},
    {"space", ID("/org/dev/admin/a b"), 0, "0x20"},
    {"tab", ID("/org/dev/admin/a\tb"), 0, "0x09"},
    {"non-ASCII", ID("/org/dev/admin/caf\xc3\xa9"), 0, "0xc3"},
    {"DEL", ID("/org/dev/admin/a\x7f"), 0, "0x7f"},
};

static void expect_invalid(const char *uri, size_t len, const char *detail)
{
    struct coffer_principal p;

    /* A refused ID leaves nothing behind that could be mistaken for a principal. */
    memset(&p, 'x', sizeof(p));
    assert_int_equal(coffer_spiffe_parse(uri, len, &p), COFFER_E_INVALID);
    if (strstr(coffer_err_detail(), detail) == NULL) {
        fail_msg("detail \"%s\" lacks \"%s\"", coffer_err_detail(), detail);
    }
    assert_int_equal(p.kind, 0);
    assert_string_equal(p.trust_domain, "");
    assert_string_equal(p.org, "");
    assert_string_equal(p.admin, "");
    assert_string_equal(p.instance, "");
}

static void test_valid(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(valid_rows) / sizeof(valid_rows[0]); i++) {
        const struct valid_row *row = &valid_rows[i];
        struct coffer_principal p;

        memset(&p, 'x', sizeof(p));
        if (coffer_spiffe_parse(row->uri, strlen(row->uri), &p) != COFFER_OK) {
            fail_msg("%s refused: %s", row->uri, coffer_err_detail());
        }
        assert_int_equal(p.kind, row->kind);
        assert_string_equal(p.trust_domain, row->trust_domain);
        assert_string_equal(p.org, row->org);
        assert_string_equal(p.agent_type, row->agent_type);
        assert_string_equal(p.instance, row->instance);
        assert_string_equal(p.admin, row->admin);
    }
}

static void test_invalid(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(invalid_rows) / sizeof(invalid_rows[0]); i++) {
        const struct invalid_row *row = &invalid_rows[i];
        size_t len = row->len != 0 ? row->len : strlen(row->uri);

        print_message("row: %s\n", row->name);
        expect_invalid(row->uri, len, row->detail);
    }
}

/* Only the first len bytes count: what follows them is never read. */
static void test_len_is_respected(void **state)
{
    static const char text[] = ID("/org/dev/admin/abc/extra");
    struct coffer_principal p;

    (void)state;
    assert_int_equal(coffer_spiffe_parse(text, strlen(ID("/org/dev/admin/abc")), &p), COFFER_OK);
    assert_string_equal(p.admin, "abc");
    assert_int_equal(coffer_spiffe_parse(text, strlen(ID("/org/dev/admin/ab")), &p), COFFER_OK);
    assert_string_equal(p.admin, "ab");
    expect_invalid(text, strlen(ID("/org/dev/admin/abc/")), "trailing slash");
}

static void test_null_arguments(void **state)
{
    struct coffer_principal p;

    (void)state;
    assert_int_equal(coffer_spiffe_parse(NULL, 10, &p), COFFER_E_INVALID);
    assert_int_equal(p.kind, 0);
    assert_int_equal(coffer_spiffe_parse(ID("/org/dev/admin/a"), 5, NULL), COFFER_E_INVALID);
}

/* Builds "spiffe://" + a trust domain of td_len bytes + path into buf. */
static size_t with_trust_domain(char *buf, size_t cap, size_t td_len, const char *path)
{
    size_t n = strlen("spiffe://");

    assert_true(n + td_len + strlen(path) < cap);
    memcpy(buf, "spiffe://", n);
    for (size_t i = 0; i < td_len; i++) {
        /* Labels of 9 letters separated by dots, never a dot at either end. */
        buf[n + i] = (i % 10 == 9 && i + 1 < td_len) ? '.' : 'd';
    }
    n += td_len;
    memcpy(buf + n, path, strlen(path) + 1);
    return n + strlen(path);
}

static void test_trust_domain_length(void **state)
{
    struct coffer_principal p;
    char buf[512];
    size_t n;

    (void)state;
    n = with_trust_domain(buf, sizeof(buf), COFFER_TRUST_DOMAIN_MAX, "/org/dev/admin/a");
    assert_int_equal(coffer_spiffe_parse(buf, n, &p), COFFER_OK);
    assert_int_equal(strlen(p.trust_domain), COFFER_TRUST_DOMAIN_MAX);
    n = with_trust_domain(buf, sizeof(buf), COFFER_TRUST_DOMAIN_MAX + 1, "/org/dev/admin/a");
    expect_invalid(buf, n, "trust domain is 256 bytes, more than 255");
}

static void test_name_length(void **state)
{
    char name[65];
    char buf[256];
    struct coffer_principal p;

    (void)state;
    memset(name, 'n', 63);
    name[63] = '\0';
    snprintf(buf, sizeof(buf), ID("/org/%s/agent/%s/%s"), name, name, name);
    assert_int_equal(coffer_spiffe_parse(buf, strlen(buf), &p), COFFER_OK);
    assert_string_equal(p.org, name);
    assert_string_equal(p.agent_type, name);
    assert_string_equal(p.instance, name);
    memset(name, 'n', 64);
    name[64] = '\0';
    snprintf(buf, sizeof(buf), ID("/org/dev/agent/deployer/%s"), name);
    expect_invalid(buf, strlen(buf), "the instance name is 64 bytes");
}

static void test_total_length(void **state)
{
    static char buf[COFFER_SPIFFE_MAX + 2];

    (void)state;
    memset(buf, 'a', sizeof(buf));
    memcpy(buf, ID("/org/dev/admin/"), strlen(ID("/org/dev/admin/")));
    expect_invalid(buf, COFFER_SPIFFE_MAX + 1, "is 2049 bytes, more than 2048");
    /* Exactly at the limit the length is fine; the over-long name is what is refused. */
    expect_invalid(buf, COFFER_SPIFFE_MAX, "the admin name is");
}

/* A detail quotes at most a short prefix, with unusual bytes replaced. */
static void test_detail_is_sanitised(void **state)
{
    static const char marker[] = "SECRETMARKER";
    char buf[256];
    const char *d;

    (void)state;
    snprintf(buf, sizeof(buf), ID("/org/dev/admin/aaaaaaaaaaaaaaaaaaaaaaaa%%%s"), marker);
    expect_invalid(buf, strlen(buf), "percent-encoding");
    d = coffer_err_detail();
    assert_null(strstr(d, marker));
    assert_non_null(strstr(d, "..."));
    assert_true(strlen(d) < 200);

    expect_invalid("spiffe://\"\n\x1b[31m/org", strlen("spiffe://\"\n\x1b[31m/org"), "0x0a");
    d = coffer_err_detail();
    assert_null(strchr(d, '\n'));
    assert_null(strchr(d, '\x1b'));
    assert_non_null(strstr(d, "\"spiffe://???[31m/org\""));
}

static void test_format_round_trip(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(valid_rows) / sizeof(valid_rows[0]); i++) {
        const char *uri = valid_rows[i].uri;
        struct coffer_principal p;
        char out[COFFER_SPIFFE_MAX + 1];

        assert_int_equal(coffer_spiffe_parse(uri, strlen(uri), &p), COFFER_OK);
        assert_int_equal(coffer_spiffe_format(&p, out, sizeof(out)), COFFER_OK);
        assert_string_equal(out, uri);
        /* A buffer of exactly the right size is enough; one byte less is not. */
        assert_int_equal(coffer_spiffe_format(&p, out, strlen(uri) + 1), COFFER_OK);
        assert_string_equal(out, uri);
        assert_int_equal(coffer_spiffe_format(&p, out, strlen(uri)), COFFER_E_LIMIT);
        assert_string_equal(out, "");
    }
}

static void expect_format_invalid(const struct coffer_principal *p)
{
    char out[128] = "untouched";

    assert_int_equal(coffer_spiffe_format(p, out, sizeof(out)), COFFER_E_INVALID);
    assert_string_equal(out, "");
}

static void test_format_refuses_bad_principals(void **state)
{
    struct coffer_principal base = {0};
    struct coffer_principal p;
    char out[8];

    (void)state;
    base.kind = COFFER_PRINCIPAL_AGENT;
    strcpy(base.trust_domain, TD);
    strcpy(base.org, "dev");
    strcpy(base.agent_type, "deployer");
    strcpy(base.instance, "deployer-1");

    p = base;
    p.kind = 0;
    expect_format_invalid(&p);
    p = base;
    p.kind = 3;
    expect_format_invalid(&p);
    p = base;
    strcpy(p.admin, "admin"); /* a field of the other kind */
    expect_format_invalid(&p);
    p = base;
    p.instance[0] = '\0';
    expect_format_invalid(&p);
    p = base;
    strcpy(p.org, "Dev");
    expect_format_invalid(&p);
    p = base;
    strcpy(p.instance, "a/b");
    expect_format_invalid(&p);
    p = base;
    strcpy(p.trust_domain, "Coffer.dev");
    expect_format_invalid(&p);
    p = base;
    memset(p.org, 'a', sizeof(p.org)); /* not terminated */
    expect_format_invalid(&p);
    p = base;
    p.kind = COFFER_PRINCIPAL_ADMIN; /* agent fields on an admin */
    strcpy(p.admin, "admin");
    expect_format_invalid(&p);

    assert_int_equal(coffer_spiffe_format(NULL, out, sizeof(out)), COFFER_E_INVALID);
    assert_int_equal(coffer_spiffe_format(&base, NULL, 10), COFFER_E_INVALID);
    assert_int_equal(coffer_spiffe_format(&base, out, 0), COFFER_E_INVALID);
    assert_int_equal(coffer_spiffe_format(&base, out, sizeof(out)), COFFER_E_LIMIT);
}

/* ---- From certificates ------------------------------------------------------ */

static EVP_PKEY *test_key;

static int setup_key(void **state)
{
    (void)state;
    test_key = EVP_EC_gen("P-256");
    return test_key != NULL ? 0 : -1;
}

static int teardown_key(void **state)
{
    (void)state;
    EVP_PKEY_free(test_key);
    return 0;
}

/* A self-signed certificate with one subjectAltName extension per entry of sans (NULL-ended). */
static X509 *make_cert(const char *const *sans)
{
    X509 *x = X509_new();
    X509V3_CTX ctx;

    assert_non_null(x);
    assert_int_equal(X509_set_version(x, X509_VERSION_3), 1);
    assert_int_equal(ASN1_INTEGER_set(X509_get_serialNumber(x), 1), 1);
    assert_non_null(X509_gmtime_adj(X509_getm_notBefore(x), 0));
    assert_non_null(X509_gmtime_adj(X509_getm_notAfter(x), 3600));
    assert_int_equal(X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
                                                (const unsigned char *)"test", -1, -1, 0),
                     1);
    assert_int_equal(X509_set_issuer_name(x, X509_get_subject_name(x)), 1);
    assert_int_equal(X509_set_pubkey(x, test_key), 1);
    X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
    for (size_t i = 0; sans[i] != NULL; i++) {
        X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &ctx, NID_subject_alt_name, sans[i]);

        assert_non_null(e);
        assert_int_equal(X509_add_ext(x, e, -1), 1);
        X509_EXTENSION_free(e);
    }
    assert_true(X509_sign(x, test_key, EVP_sha256()) > 0);
    return x;
}

static enum coffer_err principal_of(const char *const *sans, const char *td,
                                    struct coffer_principal *p)
{
    X509 *x = make_cert(sans);
    enum coffer_err r;

    memset(p, 'x', sizeof(*p));
    r = coffer_spiffe_from_cert(x, td, p);
    X509_free(x);
    return r;
}

static void expect_cert_refused(const char *const *sans, const char *td, const char *detail)
{
    struct coffer_principal p;

    assert_int_equal(principal_of(sans, td, &p), COFFER_E_INVALID);
    if (strstr(coffer_err_detail(), detail) == NULL) {
        fail_msg("detail \"%s\" lacks \"%s\"", coffer_err_detail(), detail);
    }
    assert_int_equal(p.kind, 0);
    assert_string_equal(p.org, "");
}

static void test_cert_one_uri(void **state)
{
    static const char *const agent[] = {"URI:" ID("/org/dev/agent/deployer/deployer-1"), NULL};
    static const char *const admin[] = {"URI:" ID("/org/dev/admin/root"), NULL};
    static const char *const mixed[] = {
        "DNS:localhost,URI:" ID("/org/acme/agent/ci/ci-7") ",IP:127.0.0.1,email:a@example.com",
        NULL};
    struct coffer_principal p;

    (void)state;
    assert_int_equal(principal_of(agent, TD, &p), COFFER_OK);
    assert_int_equal(p.kind, COFFER_PRINCIPAL_AGENT);
    assert_string_equal(p.trust_domain, TD);
    assert_string_equal(p.org, "dev");
    assert_string_equal(p.agent_type, "deployer");
    assert_string_equal(p.instance, "deployer-1");
    assert_string_equal(p.admin, "");

    assert_int_equal(principal_of(admin, TD, &p), COFFER_OK);
    assert_int_equal(p.kind, COFFER_PRINCIPAL_ADMIN);
    assert_string_equal(p.admin, "root");

    /* Other kinds of name are ignored; the one URI decides. */
    assert_int_equal(principal_of(mixed, TD, &p), COFFER_OK);
    assert_int_equal(p.kind, COFFER_PRINCIPAL_AGENT);
    assert_string_equal(p.org, "acme");
    assert_string_equal(p.agent_type, "ci");
    assert_string_equal(p.instance, "ci-7");
}

static void test_cert_refusals(void **state)
{
    static const char *const none[] = {NULL};
    static const char *const dns[] = {"DNS:agent.example.com", NULL};
    static const char *const email[] = {"email:agent@example.com,IP:10.0.0.1", NULL};
    static const char *const two_uris[] = {
        "URI:" ID("/org/dev/admin/a") ",URI:" ID("/org/dev/admin/b"), NULL};
    static const char *const same_twice[] = {
        "URI:" ID("/org/dev/admin/a") ",URI:" ID("/org/dev/admin/a"), NULL};
    static const char *const two_exts[] = {"URI:" ID("/org/dev/admin/a"),
                                           "URI:" ID("/org/dev/admin/b"), NULL};
    static const char *const other_td[] = {"URI:spiffe://other.dev/org/dev/admin/a", NULL};
    static const char *const sub_td[] = {"URI:spiffe://x.coffer.dev/org/dev/admin/a", NULL};
    static const char *const malformed[] = {"URI:" ID("/org/dev/agent/deployer/D-1"), NULL};
    static const char *const https[] = {"URI:https://coffer.dev/org/dev/admin/a", NULL};
    static const char *const ok[] = {"URI:" ID("/org/dev/admin/a"), NULL};

    (void)state;
    expect_cert_refused(none, TD, "no subjectAltName");
    expect_cert_refused(dns, TD, "no URI SAN");
    expect_cert_refused(email, TD, "no URI SAN");
    expect_cert_refused(two_uris, TD, "2 URI SANs");
    expect_cert_refused(same_twice, TD, "2 URI SANs");
    expect_cert_refused(two_exts, TD, "more than one subjectAltName");
    expect_cert_refused(other_td, TD, "trust domain \"other.dev\"");
    expect_cert_refused(sub_td, TD, "trust domain \"x.coffer.dev\"");
    expect_cert_refused(malformed, TD, "must be lower case");
    expect_cert_refused(https, TD, "is not a SPIFFE ID");
    /* The trust domain comparison is exact: no case folding, no suffix match. */
    expect_cert_refused(ok, "Coffer.dev", "not the trusted \"Coffer.dev\"");
    expect_cert_refused(ok, "dev", "not the trusted \"dev\"");
    expect_cert_refused(ok, "", "no trust domain");
}

static void test_cert_null_arguments(void **state)
{
    static const char *const ok[] = {"URI:" ID("/org/dev/admin/a"), NULL};
    struct coffer_principal p;
    X509 *x = make_cert(ok);

    (void)state;
    assert_int_equal(coffer_spiffe_from_cert(NULL, TD, &p), COFFER_E_INVALID);
    assert_int_equal(coffer_spiffe_from_cert(x, NULL, &p), COFFER_E_INVALID);
    assert_int_equal(coffer_spiffe_from_cert(x, TD, NULL), COFFER_E_INVALID);
    /* The same certificate is accepted with proper arguments: the refusals were the arguments. */
    assert_int_equal(coffer_spiffe_from_cert(x, TD, &p), COFFER_OK);
    assert_string_equal(p.admin, "a");
    X509_free(x);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid),
        cmocka_unit_test(test_invalid),
        cmocka_unit_test(test_len_is_respected),
        cmocka_unit_test(test_null_arguments),
        cmocka_unit_test(test_trust_domain_length),
        cmocka_unit_test(test_name_length),
        cmocka_unit_test(test_total_length),
        cmocka_unit_test(test_detail_is_sanitised),
        cmocka_unit_test(test_format_round_trip),
        cmocka_unit_test(test_format_refuses_bad_principals),
        cmocka_unit_test(test_cert_one_uri),
        cmocka_unit_test(test_cert_refusals),
        cmocka_unit_test(test_cert_null_arguments),
    };

    return cmocka_run_group_tests(tests, setup_key, teardown_key);
}

/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Brokered use (POST .../credentials/{name}/use) end to end: a real cofferd
 * with this test's token and database calls a local HTTPS upstream
 * (tests/upstream/echo_upstream.py, run with python3) that has its own CA,
 * trusted through broker.ca_file. The upstream logs every request it gets,
 * so the test can tell what reached it and what never did.
 *
 * Proved here: header and query injection put the secret into the upstream
 * request, while the agent's answer shows it only as [REDACTED] (raw,
 * base64 and URL-encoded echoes, in headers and body); destinations outside
 * the spec are refused before any connection (other host, other port,
 * http, dot segments, user info, IDN and case variants); a redirect out of
 * the spec is refused and not followed, one inside is followed; a method
 * outside the spec, agent placeholders and headers Coffer owns are refused;
 * a credential without a usage spec gives no_usage; a reveal: false
 * credential cannot be accessed but can be used; an answer past 1 MiB is
 * refused; each use leaves one audit event with the host but never a path,
 * and no secret appears in any event or in the server's output.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "expect.h"
#include "world.h"

#include "coffer/dev.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* '+', '/' and '=' make the raw, base64 and URL-encoded spellings all differ. */
#define SECRET "sk-use-secret+value/9f3a="
#define SECRET_URL "sk-use-secret%2Bvalue%2F9f3a%3D"
#define SECRET_HIDDEN "hidden-use-secret-77c1ab"
#define CREDS "/v1/orgs/dev/projects/demo/credentials"

static struct world w;
static struct coffer_dev_tls tls;
static struct coffer_dev_tls up_tls;
static char dir[] = "/tmp/coffer-use-test.XXXXXX";
static char up_dir[PATH_MAX];
static char config[PATH_MAX];
static char log_path[PATH_MAX];
static char up_log[PATH_MAX];
static struct https_target target;
static unsigned short up_port;
static pid_t server;
static pid_t upstream;

static void request(const char *method, const char *path, const char *body, const char *who,
                    struct https_reply *out)
{
    expect_request(&target, method, path, body, who, NULL, out);
}

static void expect(const char *method, const char *path, const char *body, const char *who,
                   long status, const char *needle)
{
    expect_answer(&target, method, path, body, who, NULL, status, needle, NULL);
}

static long mark(void)
{
    return world_audit_mark(&w);
}

/* The events after m as "action/allowed/reason/detail" joined by ",". */
static void expect_events(long m, const char *expected)
{
    assert_true(world_events_are(&w, m, expected));
}

/* The whole upstream log, read afresh. */
static const char *upstream_log(void)
{
    static char buf[1 << 20];

    https_read_log(up_log, buf, sizeof(buf));
    return buf;
}

static size_t upstream_requests(void)
{
    size_t n = 0;

    for (const char *p = upstream_log(); *p != '\0'; p++) {
        n += *p == '\n';
    }
    return n;
}

/* {"purpose": ..., "request": {"method": method, "url": url <extra>}} as one use by who. */
static void use(const char *who, const char *name, const char *method, const char *url,
                const char *extra, struct https_reply *r)
{
    char path[256];
    static char body[4096];

    snprintf(path, sizeof(path), CREDS "/%s/use", name);
    snprintf(body, sizeof(body),
             "{\"purpose\":\"check the balance\",\"request\":{\"method\":\"%s\",\"url\":\"%s\"%s}}",
             method, url, extra != NULL ? extra : "");
    request("POST", path, body, who, r);
}

static void up_url(const char *path, char *out, size_t cap)
{
    snprintf(out, cap, "https://127.0.0.1:%u%s", (unsigned)up_port, path);
}

static void base64(const char *s, char *out)
{
    EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)s, (int)strlen(s));
}

/* The answer r holds the secret in none of its spellings, and shows [REDACTED] instead. */
static void assert_redacted(const struct https_reply *r, const char *secret)
{
    char b64[128];

    base64(secret, b64);
    if (strstr(r->body, secret) != NULL || strstr(r->body, b64) != NULL ||
        strstr(r->body, SECRET_URL) != NULL || strstr(r->body, "[REDACTED]") == NULL) {
        fail_msg("the answer is not redacted: %s", r->body);
    }
}

static void put(const char *name, const char *value)
{
    char path[256];
    char body[512];

    snprintf(path, sizeof(path), CREDS "/%s", name);
    snprintf(body, sizeof(body),
             "{\"type\":\"api_key\",\"tier\":\"medium\",\"keys\":{\"api_key\":\"%s\"}}", value);
    expect("PUT", path, body, "admin", 201, "\"version\":1");
}

/* ---- Tests ------------------------------------------------------------------------------ */

static void test_store(void **state)
{
    (void)state;
    put("api", SECRET);
    put("qapi", SECRET);
    put("plain", SECRET);
    put("hidden", SECRET_HIDDEN);
}

static void test_header_injection(void **state)
{
    static struct https_reply r;
    char url[256];
    char want[512];
    char b64[128];
    size_t before = upstream_requests();
    long m = mark();

    (void)state;
    up_url("/allowed/echo", url, sizeof(url));
    use("agent", "api", "GET", url, ",\"headers\":{\"Accept\":\"application/json\"}", &r);
    if (r.status != 200 || strstr(r.body, "\"status\":200") == NULL ||
        strstr(r.body, "\"X-Echo\":\"[REDACTED]\"") == NULL) {
        fail_msg("use of api: %ld %s", r.status, r.body);
    }
    assert_redacted(&r, SECRET);
    /* The upstream saw the secret where the spec puts it, and the agent's own header. */
    assert_int_equal(upstream_requests(), before + 1);
    assert_non_null(strstr(upstream_log(), "\"Authorization\": \"Bearer " SECRET "\""));
    assert_non_null(strstr(upstream_log(), "\"Accept\": \"application/json\""));
    base64(SECRET, b64);
    assert_non_null(strstr(upstream_log(), "GET"));
    /* Two events: the use on record before the secret left, then its outcome. */
    snprintf(want, sizeof(want),
             "use/true/granted/GET https://127.0.0.1:%u -> sending,"
             "use/true/granted/GET https://127.0.0.1:%u -> 200",
             (unsigned)up_port, (unsigned)up_port);
    expect_events(m, want);
}

static void test_query_injection(void **state)
{
    static struct https_reply r;
    char url[256];

    (void)state;
    up_url("/allowed/echo?page=2", url, sizeof(url));
    use("agent", "qapi", "GET", url, NULL, &r);
    if (r.status != 200) {
        fail_msg("use of qapi: %ld %s", r.status, r.body);
    }
    assert_redacted(&r, SECRET);
    /* The agent's query is kept; the key is added, encoded. */
    assert_non_null(strstr(upstream_log(), "/allowed/echo?page=2&key=" SECRET_URL "\""));
    /* The agent may not give the injected parameter itself. */
    up_url("/allowed/echo?key=mine", url, sizeof(url));
    use("agent", "qapi", "GET", url, NULL, &r);
    assert_int_equal(r.status, 400);
}

static void test_post_body(void **state)
{
    static struct https_reply r;
    char url[256];

    (void)state;
    up_url("/allowed/echo", url, sizeof(url));
    use("agent", "api", "POST", url, ",\"body\":\"amount=10\"", &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(upstream_log(), "\"method\": \"POST\""));
    assert_non_null(strstr(upstream_log(), "\"body\": \"amount=10\""));
    assert_redacted(&r, SECRET);
}

static void test_destinations_refused(void **state)
{
    char urls[16][256];
    size_t n = 0;
    size_t before = upstream_requests();
    long m = mark();
    char want[4096] = "";

    (void)state;
    snprintf(urls[n++], 256, "https://localhost:%u/allowed/echo", (unsigned)up_port);
    snprintf(urls[n++], 256, "https://127.0.0.1:%u/allowed/echo", (unsigned)(up_port + 1));
    snprintf(urls[n++], 256, "https://127.0.0.1/allowed/echo");
    snprintf(urls[n++], 256, "http://127.0.0.1:%u/allowed/echo", (unsigned)up_port);
    snprintf(urls[n++], 256, "https://127.0.0.1:%u/allowed/../other", (unsigned)up_port);
    snprintf(urls[n++], 256, "https://127.0.0.1:%u/allowed/%%2e%%2e/other", (unsigned)up_port);
    snprintf(urls[n++], 256, "https://127.0.0.1:%u@evil.example/allowed/echo", (unsigned)up_port);
    snprintf(urls[n++], 256, "https://user@127.0.0.1:%u/allowed/echo", (unsigned)up_port);
    snprintf(urls[n++], 256, "https://127.0.0.1:%u/Allowed/echo", (unsigned)up_port);
    snprintf(urls[n++], 256, "https://127.0.0.1:%u/allowedx", (unsigned)up_port);
    snprintf(urls[n++], 256, "https://127.0.0.1:%u/other", (unsigned)up_port);
    snprintf(urls[n++], 256, "https://xn--e1afmkfd.xn--p1ai:%u/allowed", (unsigned)up_port);
    snprintf(urls[n++], 256, "https://\\u0430pi.example/allowed");
    snprintf(urls[n++], 256, "https://127.0.0.1.:%u/allowed/echo", (unsigned)up_port);
    snprintf(urls[n++], 256, "https://0x7f.0.0.1:%u/allowed/echo", (unsigned)up_port);
    for (size_t i = 0; i < n; i++) {
        static struct https_reply r;

        use("agent", "api", "GET", urls[i], NULL, &r);
        if (r.status != 403 || strstr(r.body, "\"error\":\"destination_refused\"") == NULL) {
            fail_msg("%s: %ld %s (want 403 destination_refused)", urls[i], r.status, r.body);
        }
        assert_null(strstr(r.body, SECRET));
    }
    /* Nothing reached the upstream: every refusal came before any connection. */
    assert_int_equal(upstream_requests(), before);
    /* One refused event each, naming at most a host. */
    {
        char sql[256];

        snprintf(sql, sizeof(sql),
                 "SELECT count(*) FROM coffer.audit_events WHERE id > %ld AND action = 'use' AND "
                 "NOT allowed AND reason = 'destination_refused'",
                 m);
        snprintf(want, sizeof(want), "%zu", n);
        assert_true(world_sql_is(&w, sql, want));
        snprintf(sql, sizeof(sql),
                 "SELECT count(*) FROM coffer.audit_events WHERE id > %ld AND (detail LIKE "
                 "'%%allowed%%' OR detail LIKE '%%other%%' OR detail LIKE '%%evil%%')",
                 m);
        assert_true(world_sql_is(&w, sql, "0"));
    }
}

static void test_redirects(void **state)
{
    static struct https_reply r;
    char url[256];
    char want[512];
    long m;

    (void)state;
    m = mark();
    up_url("/allowed/redirect-out", url, sizeof(url));
    use("agent", "api", "GET", url, NULL, &r);
    if (r.status != 502 || strstr(r.body, "\"error\":\"redirect_refused\"") == NULL) {
        fail_msg("redirect out: %ld %s", r.status, r.body);
    }
    assert_non_null(strstr(upstream_log(), "/allowed/redirect-out"));
    assert_null(strstr(upstream_log(), "/other/landing"));
    snprintf(want, sizeof(want),
             "use/true/granted/GET https://127.0.0.1:%u -> sending,"
             "use/true/granted/GET https://127.0.0.1:%u -> redirect_refused",
             (unsigned)up_port, (unsigned)up_port);
    expect_events(m, want);
    /* Inside the spec it is followed, with the secret injected again. */
    up_url("/allowed/redirect-in", url, sizeof(url));
    use("agent", "api", "GET", url, NULL, &r);
    if (r.status != 200 || strstr(r.body, "echo-after-redirect") == NULL) {
        fail_msg("redirect in: %ld %s", r.status, r.body);
    }
    assert_redacted(&r, SECRET);
}

static void test_method_not_allowed(void **state)
{
    static struct https_reply r;
    char url[256];
    size_t before = upstream_requests();

    (void)state;
    up_url("/allowed/echo", url, sizeof(url));
    use("agent", "api", "DELETE", url, NULL, &r);
    if (r.status != 403 || strstr(r.body, "destination_refused") == NULL ||
        strstr(r.body, "DELETE") == NULL) {
        fail_msg("DELETE: %ld %s", r.status, r.body);
    }
    use("agent", "api", "GE T", url, NULL, &r);
    assert_int_equal(r.status, 400);
    assert_int_equal(upstream_requests(), before);
}

static void test_agent_placeholders_and_headers(void **state)
{
    static const char *const extras[] = {
        ",\"headers\":{\"X-Key\":\"{{api_key}}\"}",
        ",\"headers\":{\"X-Key\":\"%7B%7bapi_key}}\"}",
        ",\"body\":\"token={{api_key}}\"",
        ",\"headers\":{\"Authorization\":\"Bearer mine\"}",
        ",\"headers\":{\"authorization\":\"Bearer mine\"}",
        ",\"headers\":{\"Host\":\"evil.example\"}",
        ",\"headers\":{\"Content-Length\":\"5\"}",
        ",\"headers\":{\"Transfer-Encoding\":\"chunked\"}",
        ",\"headers\":{\"Connection\":\"close\"}",
        ",\"headers\":{\"X-Bad\":\"a\\r\\nX-Injected: 1\"}",
        ",\"headers\":{\"Bad Name\":\"a\"}",
    };
    static struct https_reply r;
    char url[256];
    size_t before = upstream_requests();

    (void)state;
    up_url("/allowed/echo", url, sizeof(url));
    for (size_t i = 0; i < sizeof(extras) / sizeof(extras[0]); i++) {
        use("agent", "api", "POST", url, extras[i], &r);
        if (r.status != 400) {
            fail_msg("%s: %ld %s (want 400)", extras[i], r.status, r.body);
        }
    }
    /* A placeholder in the URL itself. */
    up_url("/allowed/echo?q=%7B%7Bapi_key%7D%7D", url, sizeof(url));
    use("agent", "api", "GET", url, NULL, &r);
    assert_int_equal(r.status, 400);
    assert_int_equal(upstream_requests(), before);
}

static void test_no_usage(void **state)
{
    static struct https_reply r;
    char url[256];
    long m = mark();

    (void)state;
    up_url("/allowed/echo", url, sizeof(url));
    use("agent", "plain", "GET", url, NULL, &r);
    if (r.status != 403 || strstr(r.body, "\"error\":\"no_usage\"") == NULL) {
        fail_msg("plain: %ld %s", r.status, r.body);
    }
    expect_events(m, "use/false/no_usage/-");
}

static void test_denied_like_access(void **state)
{
    static struct https_reply r;
    char url[256];
    long m = mark();

    (void)state;
    up_url("/allowed/echo", url, sizeof(url));
    /* analyst holds no grant: the plain denial, the true reason in the log. */
    use("agent2", "api", "GET", url, NULL, &r);
    if (r.status != 403 || strstr(r.body, "\"error\":\"permission_denied\"") == NULL) {
        fail_msg("agent2: %ld %s", r.status, r.body);
    }
    use("agent", "nosuch", "GET", url, NULL, &r);
    assert_int_equal(r.status, 403);
    expect_events(m, "use/false/no_grant/-,use/false/not_found/-");
}

static void test_reveal_false(void **state)
{
    static struct https_reply r;
    char url[256];

    (void)state;
    expect("POST", CREDS "/hidden/access", "{\"purpose\":\"check the balance\"}", "agent", 403,
           "\"error\":\"secretless_only\"");
    up_url("/allowed/echo", url, sizeof(url));
    use("agent", "hidden", "GET", url, NULL, &r);
    if (r.status != 200) {
        fail_msg("use of hidden: %ld %s", r.status, r.body);
    }
    assert_redacted(&r, SECRET_HIDDEN);
    assert_non_null(strstr(upstream_log(), "Bearer " SECRET_HIDDEN));
}

static void test_too_large(void **state)
{
    static struct https_reply r;
    char url[256];

    (void)state;
    up_url("/allowed/big", url, sizeof(url));
    use("agent", "api", "GET", url, NULL, &r);
    if (r.status != 502 || strstr(r.body, "\"error\":\"upstream_too_large\"") == NULL) {
        fail_msg("big: %ld %s", r.status, r.body);
    }
}

static void test_no_secret_leaked(void **state)
{
    static const char *const secrets[] = {SECRET, SECRET_URL, SECRET_HIDDEN};
    static char buf[1 << 20];
    char sql[256];
    ssize_t n;
    int fd;

    (void)state;
    fd = open(log_path, O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    assert_true(n >= 0);
    buf[n] = '\0';
    for (size_t i = 0; i < sizeof(secrets) / sizeof(secrets[0]); i++) {
        assert_null(strstr(buf, secrets[i]));
        snprintf(sql, sizeof(sql),
                 "SELECT count(*) FROM coffer.audit_events e WHERE e::text LIKE '%%%s%%'",
                 secrets[i]);
        assert_true(world_sql_is(&w, sql, "0"));
    }
    /* Granted uses record the purpose, as accesses do. */
    assert_true(world_sql_is(&w,
                             "SELECT count(*) > 0 FROM coffer.audit_events WHERE action = 'use' "
                             "AND allowed AND purpose = 'check the balance'",
                             "t"));
}

/* ---- Processes -------------------------------------------------------------------------- */

static int start_upstream(void)
{
    return https_upstream_start(UPSTREAM_PY, &up_tls, up_log, log_path, NULL, &up_port, &upstream);
}

static int start_server(void)
{
    unsigned short port = https_free_port();

    https_target_dev(&target, port, &tls);
    if (https_write_config(config, port, &tls, &w.h,
                           "workers: 2\n"
                           "log: info\n"
                           "broker:\n  ca_file: %s\n  connect_timeout_ms: 2000\n"
                           "  timeout_ms: 10000\n",
                           up_tls.ca) != 0) {
        return -1;
    }
    return https_server_start(COFFERD_BIN, config, w.h.env.softhsm_conf, log_path, &target,
                              &server);
}

static int apply_policy(void)
{
    static char policy[4096];

    snprintf(policy, sizeof(policy),
             "version: 1\n"
             "org: dev\n"
             "agent_types: {deployer: , analyst: }\n"
             "projects:\n"
             "  demo:\n"
             "    phases: [build]\n"
             "    members: [deployer, analyst]\n"
             "    credentials:\n"
             "      api:\n"
             "        grants: [{agent_type: deployer}]\n"
             "        usage:\n"
             "          destinations: [\"https://127.0.0.1:%u/allowed\"]\n"
             "          methods: [GET, POST]\n"
             "          inject: [{header: Authorization, value: \"Bearer {{api_key}}\"}]\n"
             "      qapi:\n"
             "        grants: [{agent_type: deployer}]\n"
             "        usage:\n"
             "          destinations: [\"https://127.0.0.1:%u/allowed\"]\n"
             "          methods: [GET]\n"
             "          inject: [{query: key, value: \"{{api_key}}\"}]\n"
             "      plain:\n"
             "        grants: [{agent_type: deployer}]\n"
             "      hidden:\n"
             "        grants: [{agent_type: deployer}]\n"
             "        usage:\n"
             "          destinations: [\"https://127.0.0.1:%u/allowed\"]\n"
             "          methods: [GET]\n"
             "          inject: [{header: Authorization, value: \"Bearer {{api_key}}\"}]\n"
             "        reveal: false\n",
             (unsigned)up_port, (unsigned)up_port, (unsigned)up_port);
    return world_apply_policy(&w, policy);
}

static int setup(void **state)
{
    (void)state;
    if (mkdtemp(dir) == NULL || coffer_dev_tls_provision(dir, &tls) != COFFER_OK) {
        return -1;
    }
    /* The upstream's own CA: a second, unrelated test CA. */
    snprintf(up_dir, sizeof(up_dir), "%s/upstream", dir);
    if (mkdir(up_dir, 0700) != 0 || coffer_dev_tls_provision(up_dir, &up_tls) != COFFER_OK) {
        return -1;
    }
    snprintf(config, sizeof(config), "%s/coffer.yaml", dir);
    snprintf(log_path, sizeof(log_path), "%s/cofferd.log", dir);
    snprintf(up_log, sizeof(up_log), "%s/upstream.log", dir);
    if (start_upstream() != 0 || apply_policy() != 0) {
        return -1;
    }
    return start_server();
}

static int teardown(void **state)
{
    (void)state;
    https_process_stop(&server);
    https_process_stop(&upstream);
    https_remove_dir(dir);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_store),
        cmocka_unit_test(test_header_injection),
        cmocka_unit_test(test_query_injection),
        cmocka_unit_test(test_post_body),
        cmocka_unit_test(test_destinations_refused),
        cmocka_unit_test(test_redirects),
        cmocka_unit_test(test_method_not_allowed),
        cmocka_unit_test(test_agent_placeholders_and_headers),
        cmocka_unit_test(test_no_usage),
        cmocka_unit_test(test_denied_like_access),
        cmocka_unit_test(test_reveal_false),
        cmocka_unit_test(test_too_large),
        cmocka_unit_test(test_no_secret_leaked),
    };
    int rc;

    curl_global_init(CURL_GLOBAL_DEFAULT);
    world_open("api_use", "dev", &w);
    world_add_project(&w, "demo", NULL);
    rc = cmocka_run_group_tests(tests, setup, teardown);
    world_close(&w);
    curl_global_cleanup();
    return rc;
}

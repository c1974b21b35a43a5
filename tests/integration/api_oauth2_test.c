/* SPDX-License-Identifier: Apache-2.0 */
/*
 * OAuth2 credentials that Coffer keeps fresh, end to end: real cofferd
 * servers with this test's token and database, and a local HTTPS OAuth2
 * token endpoint with its own CA (tests/upstream/echo_upstream.py, which
 * also echoes brokered calls). The endpoint logs every request it gets, so
 * the test can count the grants that reached it.
 *
 * Proved here: a put checks the provider (type, refresh_token, the access
 * token's expiry, an https token URL, client authentication, the client
 * secret's credential); an access that finds the access token within the
 * margin refreshes it first with the refresh-token grant (client_secret
 * basic and post), answers the new token but never the refresh token, and
 * stores the new version with the new expiry; a rotated refresh token is
 * kept for the next refresh; a brokered call injects the refreshed token;
 * two servers asked at once send one grant between them; a refusal of the
 * provider leaves the current version in place, serves it while it is
 * valid and is refused with refresh_failed (the provider's error code)
 * after its expiry, for accesses and brokered calls alike; a missing client
 * secret sends nothing; every refresh is audited before and after; and no
 * token or client secret appears in the server's output or the audit log.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "expect.h"
#include "world.h"

#include "coffer/dev.h"
#include "coffer/mem.h"

#include <curl/curl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define REFRESH_TOKEN "rt-initial-0b5e+7a/c1="
/* The rotating endpoint makes a refresh token it answered invalid: that credential has its own. */
#define ROTATE_TOKEN "rt-rotate-initial-6a1f"
#define CLIENT_SECRET "client-secret-5d2f+9e/q"
#define STALE_TOKEN "stale-access-token-4c7d"
#define CREDS "/v1/orgs/dev/projects/demo/credentials"

static struct world w;
static struct coffer_dev_tls tls;
static struct coffer_dev_tls up_tls;
static struct https_target a_srv;
static struct https_target b_srv;
static char dir[] = "/tmp/coffer-oauth2-test.XXXXXX";
static char up_log[PATH_MAX];
static char log_path[PATH_MAX];
static unsigned short up_port;
static pid_t server_a;
static pid_t server_b;
static pid_t upstream;

/* ---- Requests ---------------------------------------------------------------------------- */

static void request(const struct https_target *t, const char *method, const char *path,
                    const char *body, const char *who, struct https_reply *out)
{
    expect_request(t, method, path, body, who, NULL, out);
}

static void expect(const char *method, const char *path, const char *body, const char *who,
                   long status, const char *needle)
{
    expect_answer(&a_srv, method, path, body, who, NULL, status, needle, NULL);
}

static void access_cred(const struct https_target *t, const char *name, struct https_reply *r)
{
    char path[256];

    snprintf(path, sizeof(path), CREDS "/%s/access", name);
    request(t, "POST", path, "{\"purpose\":\"deploy the release\"}", "agent", r);
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

static const char *upstream_log(void)
{
    static char buf[1 << 20];

    https_read_log(up_log, buf, sizeof(buf));
    return buf;
}

/* Requests the upstream logged whose path starts with prefix. */
static size_t upstream_count(const char *prefix)
{
    char needle[128];
    size_t n = 0;

    snprintf(needle, sizeof(needle), "\"path\": \"%s", prefix);
    for (const char *p = upstream_log(); (p = strstr(p, needle)) != NULL; p++) {
        n++;
    }
    return n;
}

/* The current version of a credential, as the database says. */
static long version_of(const char *name)
{
    char sql[256];
    char *v;
    long n;

    snprintf(sql, sizeof(sql), "SELECT current_version FROM coffer.credentials WHERE name = '%s'",
             name);
    v = world_sql_value(&w, sql);
    n = atol(v);
    coffer_free(v);
    return n;
}

/* YYYY-MM-DDTHH:MM:SSZ, s seconds from now. */
static void time_in(long s, char out[32])
{
    time_t t = time(NULL) + s;
    struct tm tm;

    gmtime_r(&t, &tm);
    strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/*
 * Stores an oauth2 credential whose access token expires in `expires_in`
 * seconds, refreshed at token path with the client secret of secret_cred
 * (NULL: a reference to no credential) and client_auth ("" for none given).
 */
static void put_oauth2(const char *name, long expires_in, const char *path, const char *secret_cred,
                       const char *client_auth)
{
    char url[256];
    char when[32];
    char auth[64] = "";
    static char body[2048];

    snprintf(url, sizeof(url), CREDS "/%s", name);
    time_in(expires_in, when);
    if (client_auth[0] != '\0') {
        snprintf(auth, sizeof(auth), ",\"client_auth\":\"%s\"", client_auth);
    }
    snprintf(body, sizeof(body),
             "{\"type\":\"oauth2\",\"tier\":\"medium\",\"keys\":{\"access_token\":\"" STALE_TOKEN
             "\",\"refresh_token\":\"%s\",\"scope\":\"repo\"},"
             "\"key_expires_at\":{\"access_token\":\"%s\"},"
             "\"oauth2\":{\"token_url\":\"https://127.0.0.1:%u%s\",\"client_id\":"
             "\"coffer-test-client\",\"client_secret\":{\"credential\":\"%s\",\"key\":"
             "\"client_secret\"}%s}}",
             strstr(path, "rotate") != NULL ? ROTATE_TOKEN : REFRESH_TOKEN, when, (unsigned)up_port,
             path, secret_cred != NULL ? secret_cred : "absent", auth);
    expect("PUT", url, body, "admin", 201, "\"version\":1");
}

/* The JSON string value of "key" in body, copied into out ("" when absent). */
static void json_value(const char *body, const char *key, char *out, size_t cap)
{
    char needle[64];
    const char *p;
    size_t n = 0;

    out[0] = '\0';
    snprintf(needle, sizeof(needle), "\"%s\":\"", key);
    if ((p = strstr(body, needle)) == NULL) {
        return;
    }
    p += strlen(needle);
    while (p[n] != '\0' && p[n] != '"' && n + 1 < cap) {
        n++;
    }
    coffer_memcpy(out, p, n);
    out[n] = '\0';
}

/* ---- Tests ------------------------------------------------------------------------------ */

static void test_put_checks(void **state)
{
    char when[32];
    static char body[2048];
    const char *const bad[][2] = {
        {"\"type\":\"api_key\",\"keys\":{\"api_key\":\"k-1\",\"refresh_token\":\"r-1\"}",
         "only an oauth2 credential"},
        {"\"type\":\"oauth2\",\"keys\":{\"access_token\":\"a-1\"}", "refresh_token"},
    };

    (void)state;
    /* The client secret's own credential: no grant, so no agent can read it. */
    expect("PUT", CREDS "/gh-client",
           "{\"type\":\"custom\",\"tier\":\"high\",\"keys\":{\"client_secret\":\"" CLIENT_SECRET
           "\"}}",
           "admin", 201, "\"version\":1");
    time_in(600, when);
    for (size_t i = 0; i < 2; i++) {
        snprintf(body, sizeof(body),
                 "{%s,\"tier\":\"medium\",\"key_expires_at\":{\"%s\":\"%s\"},\"oauth2\":"
                 "{\"token_url\":\"https://127.0.0.1:1/t\",\"client_id\":\"c\"}}",
                 bad[i][0], i == 0 ? "api_key" : "access_token", when);
        expect("PUT", CREDS "/bad", body, "admin", 400, bad[i][1]);
    }
    {
        static const char *const cases[][2] = {
            /* no expiry of the access token */
            {"\"key_expires_at\":{}", "expiry of its access_token"},
            {"\"oauth2\":{\"token_url\":\"http://127.0.0.1:1/t\",\"client_id\":\"c\"}",
             "oauth2.token_url"},
            {"\"oauth2\":{\"token_url\":\"https://127.0.0.1:1/t\",\"client_id\":\"\"}",
             "oauth2.client_id"},
            {"\"oauth2\":{\"token_url\":\"https://127.0.0.1:1/t\",\"client_id\":\"c\","
             "\"client_secret\":{\"credential\":\"gh-client\",\"key\":\"client_secret\"},"
             "\"client_auth\":\"jwt\"}",
             "basic or post"},
            {"\"oauth2\":{\"token_url\":\"https://127.0.0.1:1/t\",\"client_id\":\"c\","
             "\"client_secret\":{\"credential\":\"bad\",\"key\":\"client_secret\"}}",
             "another credential"},
            {"\"oauth2\":{\"token_url\":\"https://127.0.0.1:1/t\",\"client_id\":\"c\","
             "\"scope\":\"x\"}",
             "unknown field"},
            {"\"oauth2\":\"https://127.0.0.1:1/t\"", "'oauth2' must be an object"},
        };

        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
            bool has_expiry = strstr(cases[i][0], "key_expires_at") != NULL;
            bool has_oauth2 = strstr(cases[i][0], "\"oauth2\"") != NULL;

            snprintf(body, sizeof(body),
                     "{\"type\":\"oauth2\",\"tier\":\"medium\",\"keys\":{\"access_token\":"
                     "\"a-1\",\"refresh_token\":\"r-1\"},%s%s%s%s%s%s}",
                     cases[i][0], has_expiry ? "" : ",\"key_expires_at\":{\"access_token\":\"",
                     has_expiry ? "" : when, has_expiry ? "" : "\"}",
                     has_oauth2 ? ""
                                : ",\"oauth2\":{\"token_url\":\"https://127.0.0.1:1/t\","
                                  "\"client_id\":\"c\"}",
                     "");
            expect("PUT", CREDS "/bad", body, "admin", 400, cases[i][1]);
        }
    }
    /* Nothing of the refused puts was stored. */
    assert_true(
        world_sql_is(&w, "SELECT count(*) FROM coffer.credentials WHERE name = 'bad'", "0"));
}

static void test_refresh_on_access(void **state)
{
    static struct https_reply r;
    char token[128];
    char want[1024];
    size_t grants = upstream_count("/oauth/token\"");
    long m;

    (void)state;
    /* Within the 60 s margin: the first access refreshes. */
    put_oauth2("gh", 30, "/oauth/token", "gh-client", "");
    m = mark();
    access_cred(&a_srv, "gh", &r);
    if (r.status != 200) {
        fail_msg("access of gh: %ld", r.status);
    }
    json_value(r.body, "access_token", token, sizeof(token));
    assert_true(strncmp(token, "fresh-access-token-", 19) == 0);
    /* The refresh token is Coffer's: never handed out. Other keys are kept. */
    assert_null(strstr(r.body, "refresh_token"));
    assert_null(strstr(r.body, REFRESH_TOKEN));
    assert_non_null(strstr(r.body, "\"scope\":\"repo\""));
    assert_non_null(strstr(r.body, "\"version\":2"));
    assert_int_equal(upstream_count("/oauth/token\""), grants + 1);
    /* client_secret_basic: the pair in the Authorization header, the grant in the body. */
    assert_non_null(strstr(upstream_log(), "\"Authorization\": \"Basic "));
    assert_non_null(strstr(upstream_log(), "grant_type=refresh_token&refresh_token=rt-initial-"
                                           "0b5e%2B7a%2Fc1%3D\""));
    snprintf(want, sizeof(want),
             "refresh/true/ok/POST https://127.0.0.1:%u -> sending,"
             "refresh/true/ok/POST https://127.0.0.1:%u -> 200, version 2,"
             "access/true/granted/-",
             (unsigned)up_port, (unsigned)up_port);
    expect_events(m, want);
    /* The new version's access token expires about an hour from now. */
    assert_true(world_sql_is(&w,
                             "SELECT v.key_expires_at[1] BETWEEN now() + interval '3500 s' AND "
                             "now() + interval '3601 s' FROM coffer.credential_versions v JOIN "
                             "coffer.credentials c ON c.id = v.credential_id "
                             "WHERE c.name = 'gh' AND v.version = 2",
                             "t"));
    assert_true(world_sql_is(&w,
                             "SELECT v.oauth2_provider IS NOT NULL FROM coffer.credential_versions "
                             "v JOIN coffer.credentials c ON c.id = v.credential_id "
                             "WHERE c.name = 'gh' AND v.version = 2",
                             "t"));
    /* Fresh now: the next access sends nothing and answers the same token. */
    access_cred(&a_srv, "gh", &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, token));
    assert_int_equal(upstream_count("/oauth/token\""), grants + 1);
    assert_int_equal(version_of("gh"), 2);
}

static void test_rotation_and_post(void **state)
{
    static struct https_reply r;
    size_t grants = upstream_count("/oauth/token-rotate");

    (void)state;
    put_oauth2("gh-rotate", 30, "/oauth/token-rotate", "gh-client", "post");
    access_cred(&a_srv, "gh-rotate", &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(upstream_count("/oauth/token-rotate"), grants + 1);
    /* client_secret_post: id and secret in the body. */
    assert_non_null(strstr(upstream_log(), "refresh_token=" ROTATE_TOKEN
                                           "&client_id=coffer-test-client&client_secret=client-"
                                           "secret-5d2f%2B9e%2Fq\""));
    /*
     * The endpoint has made the first refresh token invalid: the next
     * refresh succeeds only with the rotated one Coffer stored.
     */
    world_sql(&w, "UPDATE coffer.credential_versions v SET key_expires_at[1] = now() + "
                  "interval '20 s' FROM coffer.credentials c WHERE c.id = v.credential_id "
                  "AND c.name = 'gh-rotate' AND v.version = 2");
    access_cred(&a_srv, "gh-rotate", &r);
    if (r.status != 200 || strstr(r.body, "\"version\":3") == NULL) {
        fail_msg("second refresh of gh-rotate: %ld", r.status);
    }
    assert_int_equal(upstream_count("/oauth/token-rotate"), grants + 2);
    assert_non_null(strstr(upstream_log(), "refresh_token=rotated-refresh-token-"));
}

static void test_refresh_on_use(void **state)
{
    static struct https_reply r;
    char url[256];
    static char body[1024];
    size_t grants = upstream_count("/oauth/token\"");

    (void)state;
    put_oauth2("gh-use", 30, "/oauth/token", "gh-client", "basic");
    snprintf(url, sizeof(url), "https://127.0.0.1:%u/allowed/echo", (unsigned)up_port);
    snprintf(body, sizeof(body),
             "{\"purpose\":\"list the repositories\",\"request\":{\"method\":\"GET\",\"url\":"
             "\"%s\"}}",
             url);
    request(&a_srv, "POST", CREDS "/gh-use/use", body, "agent", &r);
    if (r.status != 200 || strstr(r.body, "\"X-Echo\":\"[REDACTED]\"") == NULL) {
        fail_msg("use of gh-use: %ld %s", r.status, r.body);
    }
    assert_int_equal(upstream_count("/oauth/token\""), grants + 1);
    /* The upstream got the refreshed token, the agent saw none. */
    assert_non_null(strstr(upstream_log(), "\"Authorization\": \"Bearer fresh-access-token-"));
    assert_null(strstr(upstream_log(), "\"Authorization\": \"Bearer " STALE_TOKEN));
    assert_null(strstr(r.body, "fresh-access-token-"));
    assert_int_equal(version_of("gh-use"), 2);
}

static void test_refresh_failure(void **state)
{
    static struct https_reply r;
    char want[1024];
    size_t grants = upstream_count("/oauth/token-fail");
    long m;

    (void)state;
    /* Expires in 3 s: inside the margin, but still valid for now. */
    put_oauth2("gh-fail", 3, "/oauth/token-fail", "gh-client", "");
    m = mark();
    access_cred(&a_srv, "gh-fail", &r);
    if (r.status != 200 || strstr(r.body, STALE_TOKEN) == NULL) {
        fail_msg("access of gh-fail while valid: %ld", r.status);
    }
    assert_int_equal(upstream_count("/oauth/token-fail"), grants + 1);
    snprintf(want, sizeof(want),
             "refresh/true/ok/POST https://127.0.0.1:%u -> sending,"
             "refresh/false/refresh_failed/POST https://127.0.0.1:%u -> 400 invalid_grant,"
             "access/true/granted/-",
             (unsigned)up_port, (unsigned)up_port);
    expect_events(m, want);
    /* After its expiry: refused, with the provider's code; the version stays. */
    sleep(4);
    m = mark();
    access_cred(&a_srv, "gh-fail", &r);
    if (r.status != 502 || strstr(r.body, "\"error\":\"refresh_failed\"") == NULL ||
        strstr(r.body, "invalid_grant") == NULL) {
        fail_msg("access of gh-fail after expiry: %ld %s", r.status, r.body);
    }
    /* The provider's description is never passed on. */
    assert_null(strstr(r.body, "refresh token revoked"));
    assert_null(strstr(r.body, STALE_TOKEN));
    snprintf(want, sizeof(want),
             "refresh/true/ok/POST https://127.0.0.1:%u -> sending,"
             "refresh/false/refresh_failed/POST https://127.0.0.1:%u -> 400 invalid_grant,"
             "access/false/refresh_failed/expired keys: access_token",
             (unsigned)up_port, (unsigned)up_port);
    expect_events(m, want);
    assert_int_equal(version_of("gh-fail"), 1);
    assert_true(world_sql_is(&w,
                             "SELECT count(*) FROM coffer.credential_versions v JOIN "
                             "coffer.credentials c ON c.id = v.credential_id "
                             "WHERE c.name = 'gh-fail'",
                             "1"));
}

static void test_refresh_failure_on_use(void **state)
{
    static struct https_reply r;
    char url[256];
    static char body[1024];
    size_t echoes = upstream_count("/allowed/echo");

    (void)state;
    snprintf(url, sizeof(url), "https://127.0.0.1:%u/allowed/echo", (unsigned)up_port);
    snprintf(body, sizeof(body),
             "{\"purpose\":\"list the repositories\",\"request\":{\"method\":\"GET\",\"url\":"
             "\"%s\"}}",
             url);
    /* gh-fail's access token has expired (test_refresh_failure) and cannot be refreshed. */
    request(&a_srv, "POST", CREDS "/gh-fail/use", body, "agent", &r);
    if (r.status != 502 || strstr(r.body, "\"error\":\"refresh_failed\"") == NULL) {
        fail_msg("use of gh-fail: %ld %s", r.status, r.body);
    }
    /* Nothing was sent to the upstream with an expired token. */
    assert_int_equal(upstream_count("/allowed/echo"), echoes);
    assert_true(world_sql_is(&w,
                             "SELECT action || '/' || allowed || '/' || reason FROM "
                             "coffer.audit_events ORDER BY id DESC LIMIT 1",
                             "use/false/refresh_failed"));
}

static void test_client_secret_missing(void **state)
{
    static struct https_reply r;
    size_t calls = upstream_count("/oauth/");
    long m;

    (void)state;
    put_oauth2("gh-nosecret", 30, "/oauth/token", NULL, "");
    m = mark();
    access_cred(&a_srv, "gh-nosecret", &r);
    /* Still valid: served; the refresh failed before anything was sent. */
    assert_int_equal(r.status, 200);
    assert_int_equal(upstream_count("/oauth/"), calls);
    {
        char sql[256];
        char want[256];

        snprintf(sql, sizeof(sql),
                 "SELECT string_agg(action || '/' || reason || '/' || detail, ',' ORDER BY id) "
                 "FROM coffer.audit_events WHERE id > %ld AND action = 'refresh'",
                 m);
        snprintf(want, sizeof(want),
                 "refresh/refresh_failed/POST https://127.0.0.1:%u -> client_secret_unavailable",
                 (unsigned)up_port);
        assert_true(world_sql_is(&w, sql, want));
    }
}

/* Two accesses at once, one through each server. */
static void access_both(const char *name, struct https_reply *ra, struct https_reply *rb)
{
    const struct https_target *t[2] = {&a_srv, &b_srv};
    struct https_reply *out[2] = {ra, rb};
    CURL *c[2];
    CURLM *multi = curl_multi_init();
    char url[2][256];
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    const char *cert = NULL;
    const char *key = NULL;
    int running = 0;

    assert_non_null(multi);
    (void)https_dev_identity(&tls, "agent", &cert, &key);
    for (int i = 0; i < 2; i++) {
        memset(out[i], 0, sizeof(*out[i]));
        snprintf(url[i], sizeof(url[i]), "%s" CREDS "/%s/access", t[i]->base_url, name);
        c[i] = curl_easy_init();
        assert_non_null(c[i]);
        curl_easy_setopt(c[i], CURLOPT_URL, url[i]);
        curl_easy_setopt(c[i], CURLOPT_CAINFO, tls.ca);
        curl_easy_setopt(c[i], CURLOPT_SSLCERT, cert);
        curl_easy_setopt(c[i], CURLOPT_SSLKEY, key);
        curl_easy_setopt(c[i], CURLOPT_HTTPHEADER, h);
        curl_easy_setopt(c[i], CURLOPT_POSTFIELDS, "{\"purpose\":\"deploy the release\"}");
        curl_easy_setopt(c[i], CURLOPT_WRITEFUNCTION, https_collect);
        curl_easy_setopt(c[i], CURLOPT_WRITEDATA, out[i]);
        curl_easy_setopt(c[i], CURLOPT_TIMEOUT, 60L);
        curl_multi_add_handle(multi, c[i]);
    }
    do {
        if (curl_multi_perform(multi, &running) != CURLM_OK) {
            fail_msg("curl_multi_perform failed");
        }
        if (running > 0) {
            (void)curl_multi_poll(multi, NULL, 0, 1000, NULL);
        }
    } while (running > 0);
    for (int i = 0; i < 2; i++) {
        curl_easy_getinfo(c[i], CURLINFO_RESPONSE_CODE, &out[i]->status);
        curl_multi_remove_handle(multi, c[i]);
        curl_easy_cleanup(c[i]);
    }
    curl_multi_cleanup(multi);
    curl_slist_free_all(h);
}

static void test_race_two_servers(void **state)
{
    static struct https_reply ra;
    static struct https_reply rb;
    char ta[128];
    char tb[128];
    char sql[256];
    size_t grants = upstream_count("/oauth/token-slow");
    long m;

    (void)state;
    /* The endpoint takes 1.5 s to answer: the second server waits for the first's refresh. */
    put_oauth2("gh-race", 30, "/oauth/token-slow", "gh-client", "");
    m = mark();
    access_both("gh-race", &ra, &rb);
    if (ra.status != 200 || rb.status != 200) {
        fail_msg("race: statuses %ld and %ld", ra.status, rb.status);
    }
    json_value(ra.body, "access_token", ta, sizeof(ta));
    json_value(rb.body, "access_token", tb, sizeof(tb));
    /* Both answers carry the one refreshed token (compared, never printed). */
    assert_true(strncmp(ta, "fresh-access-token-", 19) == 0);
    assert_true(strcmp(ta, tb) == 0);
    /* One grant reached the provider, one version was written, one refresh is on record. */
    assert_int_equal(upstream_count("/oauth/token-slow"), grants + 1);
    assert_int_equal(version_of("gh-race"), 2);
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FILTER (WHERE action = 'refresh') || '/' || count(*) FILTER (WHERE "
             "action = 'access' AND allowed) FROM coffer.audit_events WHERE id > %ld",
             m);
    assert_true(world_sql_is(&w, sql, "2/2"));
}

static void test_no_secret_leaked(void **state)
{
    static char log[1 << 20];
    static const char *const secrets[] = {
        REFRESH_TOKEN,     ROTATE_TOKEN, CLIENT_SECRET, "fresh-access-token-",
        "rotated-refresh", STALE_TOKEN,  NULL};

    (void)state;
    https_read_log(log_path, log, sizeof(log));
    assert_true(strlen(log) > 0);
    for (const char *const *s = secrets; *s != NULL; s++) {
        char sql[512];

        if (strstr(log, *s) != NULL) {
            fail_msg("a secret is in the server's output");
        }
        snprintf(sql, sizeof(sql),
                 "SELECT count(*) FROM coffer.audit_events WHERE position('%s' IN "
                 "coalesce(detail, '') || coalesce(purpose, '')) > 0",
                 *s);
        assert_true(world_sql_is(&w, sql, "0"));
    }
    /* The provider is stored as metadata, and never holds the client secret. */
    assert_true(world_sql_is(&w,
                             "SELECT count(*) FROM coffer.credential_versions WHERE "
                             "position('" CLIENT_SECRET "' IN coalesce(oauth2_provider, '')) > 0",
                             "0"));
}

/* ---- Setup ------------------------------------------------------------------------------ */

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
             "      gh: {grants: [{agent_type: deployer}]}\n"
             "      gh-rotate: {grants: [{agent_type: deployer}]}\n"
             "      gh-fail:\n"
             "        grants: [{agent_type: deployer}]\n"
             "        usage:\n"
             "          destinations: [\"https://127.0.0.1:%u/allowed\"]\n"
             "          methods: [GET]\n"
             "          inject: [{header: Authorization, value: \"Bearer {{access_token}}\"}]\n"
             "      gh-use:\n"
             "        grants: [{agent_type: deployer}]\n"
             "        usage:\n"
             "          destinations: [\"https://127.0.0.1:%u/allowed\"]\n"
             "          methods: [GET]\n"
             "          inject: [{header: Authorization, value: \"Bearer {{access_token}}\"}]\n"
             "        reveal: false\n"
             "      gh-nosecret: {grants: [{agent_type: deployer}]}\n"
             "      gh-race: {grants: [{agent_type: deployer}]}\n"
             "      gh-client: {}\n"
             "      bad: {grants: [{agent_type: deployer}]}\n",
             (unsigned)up_port, (unsigned)up_port);
    return world_apply_policy(&w, policy);
}

/* A server on its own port with this test's token and database; its output goes to log_path. */
static int start_server(const char *name, struct https_target *t, pid_t *pid)
{
    char config[PATH_MAX];
    unsigned short port = https_free_port();

    snprintf(config, sizeof(config), "%s/%s.yaml", dir, name);
    https_target_dev(t, port, &tls);
    if (https_write_config(config, port, &tls, &w.h,
                           "workers: 1\n"
                           "log: info\n"
                           "audit: {seal: false}\n"
                           "keys: {sweep: false}\n"
                           "broker:\n  ca_file: %s\n  connect_timeout_ms: 2000\n"
                           "  timeout_ms: 10000\n"
                           "  oauth2_refresh_margin_s: 60\n",
                           up_tls.ca) != 0) {
        return -1;
    }
    return https_server_start(COFFERD_BIN, config, w.h.env.softhsm_conf, log_path, t, pid);
}

static int setup(void **state)
{
    char up_dir[PATH_MAX];
    const char *extra[] = {REFRESH_TOKEN "," ROTATE_TOKEN, CLIENT_SECRET, NULL};

    (void)state;
    if (mkdtemp(dir) == NULL || coffer_dev_tls_provision(dir, &tls) != COFFER_OK) {
        return -1;
    }
    snprintf(up_dir, sizeof(up_dir), "%s/upstream", dir);
    if (mkdir(up_dir, 0700) != 0 || coffer_dev_tls_provision(up_dir, &up_tls) != COFFER_OK) {
        return -1;
    }
    snprintf(log_path, sizeof(log_path), "%s/cofferd.log", dir);
    snprintf(up_log, sizeof(up_log), "%s/upstream.log", dir);
    if (https_upstream_start(UPSTREAM_PY, &up_tls, up_log, log_path, extra, &up_port, &upstream) !=
            0 ||
        apply_policy() != 0) {
        return -1;
    }
    if (start_server("a", &a_srv, &server_a) != 0 || start_server("b", &b_srv, &server_b) != 0) {
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    (void)https_server_stop(&server_a, SIGTERM, 20000);
    (void)https_server_stop(&server_b, SIGTERM, 20000);
    (void)https_server_stop(&upstream, SIGKILL, 10000);
    https_remove_dir(dir);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_put_checks),
        cmocka_unit_test(test_refresh_on_access),
        cmocka_unit_test(test_rotation_and_post),
        cmocka_unit_test(test_refresh_on_use),
        cmocka_unit_test(test_refresh_failure),
        cmocka_unit_test(test_refresh_failure_on_use),
        cmocka_unit_test(test_client_secret_missing),
        cmocka_unit_test(test_race_two_servers),
        cmocka_unit_test(test_no_secret_leaked),
    };
    int rc;

    curl_global_init(CURL_GLOBAL_DEFAULT);
    world_open("api_oauth2", "dev", &w);
    world_add_project(&w, "demo", NULL);
    rc = cmocka_run_group_tests(tests, setup, teardown);
    world_close(&w);
    curl_global_cleanup();
    return rc;
}

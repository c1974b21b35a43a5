/* SPDX-License-Identifier: Apache-2.0 */
/*
 * cofferd end to end over HTTPS, against this test's real token and
 * database: a configuration file, two workers, client certificates of the
 * test CA (the embedded default's), and libcurl as the client. Covers the
 * health route, authentication (no certificate: 401), an admin storing a
 * credential, an agent reading it with a purpose, every denial answered
 * with the same permission_denied, malformed requests answered cleanly
 * while the server keeps serving, revocation taking effect on the next
 * access, a phase change, a key past its own expiry left out of an access
 * and named, puts sent at once written in shared transactions with the
 * answers and events each gets alone, the audit rows of all of it, a worker killed and
 * replaced, and a clean stop on SIGTERM. No secret value may appear in the
 * server's output or in any audit row.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "expect.h"
#include "world.h"

#include "coffer/dev.h"
#include "server/proc.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SECRET "sk_live_4f3c2b1a0987zyx"

static struct world w;
static struct coffer_dev_tls tls;
static char dir[] = "/tmp/coffer-api-test.XXXXXX";
static char config[PATH_MAX];
static char log_path[PATH_MAX];
static struct https_target target;
static pid_t server;

static const char policy[] = "version: 1\n"
                             "org: dev\n"
                             "agent_types: {deployer: , analyst: }\n"
                             "projects:\n"
                             "  demo:\n"
                             "    phases: [build, production]\n"
                             "    members: [deployer, analyst]\n"
                             "    credentials:\n"
                             "      stripe:\n"
                             "        grants: [{agent_type: deployer}]\n"
                             "        purposes: [\"deploy *\"]\n";

/* One request; who is "admin", "agent", "agent2" or NULL (no certificate). */
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

static void start_server(void)
{
    assert_int_equal(
        https_server_start(COFFERD_BIN, config, w.h.env.softhsm_conf, log_path, &target, &server),
        0);
}

static void test_health_and_authentication(void **state)
{
    (void)state;
    expect("GET", "/v1/health", NULL, NULL, 200, "\"status\":\"ok\"");
    expect("POST", "/v1/orgs/dev/projects/demo/credentials/stripe/access",
           "{\"purpose\":\"deploy v1\"}", NULL, 401, "\"error\":\"unauthenticated\"");
    /* The right certificate in the wrong role. */
    expect("POST", "/v1/orgs/dev/projects/demo/credentials/stripe/access",
           "{\"purpose\":\"deploy v1\"}", "admin", 403, "permission_denied");
    expect("PUT", "/v1/orgs/dev/projects/demo/credentials/stripe",
           "{\"type\":\"api_key\",\"tier\":\"medium\",\"keys\":{\"api_key\":\"x\"}}", "agent", 403,
           "permission_denied");
}

static void test_store_and_access(void **state)
{
    (void)state;
    expect("PUT", "/v1/orgs/dev/projects/demo/credentials/stripe",
           "{\"type\":\"api_key\",\"tier\":\"medium\",\"keys\":{\"api_key\":\"" SECRET "\"}}",
           "admin", 201, "\"version\":1");
    expect("POST", "/v1/orgs/dev/projects/demo/credentials/stripe/access",
           "{\"purpose\":\"deploy payments v2\"}", "agent", 200, SECRET);
    /* Every denial looks the same to the agent. */
    expect("POST", "/v1/orgs/dev/projects/demo/credentials/stripe/access",
           "{\"purpose\":\"deploy payments v2\"}", "agent2", 403,
           "\"error\":\"permission_denied\"");
    expect("POST", "/v1/orgs/dev/projects/demo/credentials/nosuch/access",
           "{\"purpose\":\"deploy payments v2\"}", "agent", 403, "\"error\":\"permission_denied\"");
    expect("POST", "/v1/orgs/other/projects/demo/credentials/stripe/access",
           "{\"purpose\":\"deploy payments v2\"}", "agent", 403, "\"error\":\"permission_denied\"");
    expect("POST", "/v1/orgs/dev/projects/demo/credentials/stripe/access", "{}", "agent", 403,
           "\"error\":\"permission_denied\"");
    assert_true(world_sql_is(&w,
                             "SELECT string_agg(reason, ',' ORDER BY id) FROM coffer.audit_events "
                             "WHERE action = 'access'",
                             "granted,no_grant,not_found,not_found,purpose_missing"));
}

static void test_malformed_requests(void **state)
{
    (void)state;
    expect("POST", "/v1/orgs/dev/projects/demo/credentials/stripe/access", "{\"purpose\":", "agent",
           400, "\"error\":\"invalid_json\"");
    expect("POST", "/v1/orgs/dev/projects/demo/credentials/stripe/access",
           "{\"purpose\":\"x\",\"purpose\":\"y\"}", "agent", 400, "invalid_json");
    expect("POST", "/v1/orgs/dev/projects/demo/credentials/stripe/access",
           "{\"purpose\":\"x\",\"extra\":1}", "agent", 400, "unknown field 'extra'");
    expect("POST", "/v1/orgs/dev/projects/demo/credentials/stripe/access", "[1]", "agent", 400,
           "must be a JSON object");
    expect("POST", "/v1/orgs/dev/projects/demo/credentials/stripe/access", "{\"purpose\":7}",
           "agent", 400, "'purpose' must be a string");
    expect("GET", "/v1/orgs/dev/projects/demo/credentials/stripe/access", NULL, "agent", 405,
           "method_not_allowed");
    expect("GET", "/v1/nothing", NULL, "agent", 404, "\"error\":\"not_found\"");
    expect("GET", "/v1/orgs/dev/projects/demo/credentials/a%2Fb/access", NULL, "agent", 400,
           "invalid_request");
    expect("PUT", "/v1/orgs/dev/projects/demo/credentials/stripe",
           "{\"type\":\"basic_auth\",\"tier\":\"medium\",\"keys\":{\"username\":\"u\"}}", "admin",
           400, "password");
    /* Still serving. */
    expect("GET", "/v1/health", NULL, NULL, 200, "ok");
}

/* A stored row altered in the database: refused as integrity_error, audited, nothing returned. */
static void test_tampered_row(void **state)
{
    (void)state;
    world_sql(&w, "UPDATE coffer.credential_versions cv SET ciphertext = "
                  "set_byte(cv.ciphertext, 3, get_byte(cv.ciphertext, 3) # 1) "
                  "FROM coffer.credentials c WHERE c.id = cv.credential_id AND c.name = 'stripe'");
    expect("POST", "/v1/orgs/dev/projects/demo/credentials/stripe/access",
           "{\"purpose\":\"deploy payments v2\"}", "agent", 403, "permission_denied");
    assert_true(world_sql_is(&w,
                             "SELECT reason FROM coffer.audit_events WHERE action = 'access' "
                             "ORDER BY id DESC LIMIT 1",
                             "integrity_error"));
    /* A new version replaces the damaged one. */
    expect("PUT", "/v1/orgs/dev/projects/demo/credentials/stripe",
           "{\"type\":\"api_key\",\"tier\":\"medium\",\"keys\":{\"api_key\":\"" SECRET "\"}}",
           "admin", 200, "\"version\":2");
    expect("POST", "/v1/orgs/dev/projects/demo/credentials/stripe/access",
           "{\"purpose\":\"deploy payments v2\"}", "agent", 200, SECRET);
}

/* "YYYY-MM-DDTHH:MM:SSZ" of now plus seconds. */
static void time_in(long seconds, char out[32])
{
    time_t t = time(NULL) + seconds;
    struct tm tm;

    assert_non_null(gmtime_r(&t, &tm));
    assert_true(strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm) > 0);
}

/* Per-key expiry: stored with put, shown in metadata, an expired key left out and named. */
static void test_key_expiry(void **state)
{
    const char *path = "/v1/orgs/dev/projects/demo/credentials/oauth";
    const char *access = "/v1/orgs/dev/projects/demo/credentials/oauth/access";
    char when[32];
    char body[512];
    char needle[96];
    struct https_reply r;

    (void)state;
    time_in(3600, when);
    snprintf(body, sizeof(body),
             "{\"type\":\"oauth2\",\"tier\":\"medium\",\"ttl\":\"30d\","
             "\"grants\":[{\"agent_type\":\"deployer\"}],"
             "\"keys\":{\"access_token\":\"at-value-1\",\"refresh_token\":\"rt-value-1\"},"
             "\"key_expires_at\":{\"%s\":\"%s\"}}",
             "no_such_key", when);
    expect("PUT", path, body, "admin", 400, "not one of the keys");
    snprintf(body, sizeof(body),
             "{\"type\":\"oauth2\",\"tier\":\"medium\",\"keys\":{\"access_token\":\"a\"},"
             "\"key_expires_at\":{\"access_token\":\"tomorrow\"}}");
    expect("PUT", path, body, "admin", 400, "YYYY-MM-DDTHH:MM:SSZ");
    snprintf(body, sizeof(body),
             "{\"type\":\"oauth2\",\"tier\":\"medium\",\"ttl\":\"30d\","
             "\"grants\":[{\"agent_type\":\"deployer\"}],"
             "\"keys\":{\"access_token\":\"at-value-1\",\"refresh_token\":\"rt-value-1\"},"
             "\"key_expires_at\":{\"access_token\":\"%s\"}}",
             when);
    expect("PUT", path, body, "admin", 201, "\"version\":1");
    snprintf(needle, sizeof(needle), "\"key_expires_at\":{\"access_token\":\"%s\"}", when);
    expect("GET", path, NULL, "admin", 200, needle);

    /* Before its expiry both keys come back and nothing is named. */
    request("POST", access, "{\"purpose\":\"refresh the session\"}", "agent", &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "at-value-1"));
    assert_null(strstr(r.body, "expired_keys"));

    /* Past it: left out of the answer and listed, the event saying which. */
    world_sql(&w, "UPDATE coffer.credential_versions v SET key_expires_at = "
                  "ARRAY[now() - interval '1 second', NULL] FROM coffer.credentials c "
                  "WHERE c.id = v.credential_id AND c.name = 'oauth' "
                  "AND v.key_names = ARRAY['access_token', 'refresh_token']");
    request("POST", access, "{\"purpose\":\"refresh the session\"}", "agent", &r);
    assert_int_equal(r.status, 200);
    assert_null(strstr(r.body, "at-value-1"));
    assert_non_null(strstr(r.body, "\"refresh_token\":\"rt-value-1\""));
    assert_non_null(strstr(r.body, "\"expired_keys\":[\"access_token\"]"));
    assert_true(world_sql_is(&w,
                             "SELECT reason || '|' || detail FROM coffer.audit_events "
                             "WHERE action = 'access' ORDER BY id DESC LIMIT 1",
                             "granted|expired keys: access_token"));

    /* Every key past its own expiry: the same permission_denied, audited as expired. */
    world_sql(&w, "UPDATE coffer.credential_versions v SET key_expires_at = "
                  "ARRAY[now() - interval '1 second', now() - interval '1 second'] "
                  "FROM coffer.credentials c WHERE c.id = v.credential_id AND c.name = 'oauth'");
    expect("POST", access, "{\"purpose\":\"refresh the session\"}", "agent", 403,
           "\"error\":\"permission_denied\"");
    assert_true(world_sql_is(&w,
                             "SELECT reason FROM coffer.audit_events WHERE action = 'access' "
                             "ORDER BY id DESC LIMIT 1",
                             "expired"));
}

/* A client certificate from another CA never gets a session; the server keeps serving. */
static void test_foreign_certificate(void **state)
{
    char other[] = "/tmp/coffer-api-other.XXXXXX";
    struct coffer_dev_tls foreign;
    char url[256];
    char cmd[PATH_MAX + 16];
    CURL *c;
    CURLcode rc;
    long status = 0;

    (void)state;
    assert_non_null(mkdtemp(other));
    assert_int_equal(coffer_dev_tls_provision(other, &foreign), COFFER_OK);
    c = curl_easy_init();
    snprintf(url, sizeof(url), "%s/v1/orgs/dev/projects/demo/credentials/stripe/access",
             target.base_url);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CAINFO, tls.ca);
    curl_easy_setopt(c, CURLOPT_SSLCERT, foreign.agent_cert);
    curl_easy_setopt(c, CURLOPT_SSLKEY, foreign.agent_key);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, "{\"purpose\":\"deploy x\"}");
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
    rc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(c);
    /* Either the handshake fails or the request is refused as unauthenticated. */
    assert_true(rc != CURLE_OK || status == 401);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", other);
    assert_int_equal(system(cmd), 0);
    expect("GET", "/v1/health", NULL, NULL, 200, "ok");
}

/* SIGHUP makes every worker reload its TLS files without dropping service. */
static void test_sighup_reloads(void **state)
{
    char buf[65536];
    ssize_t n;
    int fd;
    int reloads = 0;

    (void)state;
    assert_int_equal(kill(server, SIGHUP), 0);
    for (int i = 0; i < 50 && reloads < 2; i++) {
        usleep(100 * 1000);
        fd = open(log_path, O_RDONLY | O_CLOEXEC);
        assert_true(fd >= 0);
        n = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        buf[n > 0 ? n : 0] = '\0';
        reloads = 0;
        for (const char *p = buf; (p = strstr(p, "reloaded the TLS files")) != NULL; p++) {
            reloads++;
        }
    }
    assert_int_equal(reloads, 2);
    expect("POST", "/v1/orgs/dev/projects/demo/credentials/stripe/access",
           "{\"purpose\":\"deploy payments v2\"}", "agent", 200, SECRET);
}

static void test_revoke_and_phase(void **state)
{
    (void)state;
    expect("POST", "/v1/orgs/dev/projects/demo/credentials/stripe/revoke",
           "{\"reason\":\"rotated after an incident\"}", "admin", 200, "\"revoked\":true");
    expect("POST", "/v1/orgs/dev/projects/demo/credentials/stripe/access",
           "{\"purpose\":\"deploy payments v3\"}", "agent", 403, "permission_denied");
    assert_true(world_sql_is(&w,
                             "SELECT reason FROM coffer.audit_events WHERE action = 'access' "
                             "ORDER BY id DESC LIMIT 1",
                             "revoked"));
    expect("PUT", "/v1/orgs/dev/projects/demo/phase", "{\"phase\":\"production\"}", "admin", 200,
           "\"phase\":\"production\"");
    expect("PUT", "/v1/orgs/dev/projects/demo/phase", "{\"phase\":\"qa\"}", "admin", 400,
           "has no phase 'qa'");
}

/* The number of children of the supervisor (its workers). */
static int workers(void)
{
    char cmd[128];
    FILE *f;
    int n = 0;
    long pid;

    snprintf(cmd, sizeof(cmd), "pgrep -P %ld -x cofferd-worker", (long)server);
    f = popen(cmd, "r");
    assert_non_null(f);
    while (fscanf(f, "%ld", &pid) == 1) {
        n++;
    }
    pclose(f);
    return n;
}

static void test_worker_replaced(void **state)
{
    char cmd[128];
    FILE *f;
    long pid = 0;
    int n = 0;

    (void)state;
    assert_int_equal(workers(), 2);
    snprintf(cmd, sizeof(cmd), "pgrep -P %ld -n -x cofferd-worker", (long)server);
    f = popen(cmd, "r");
    assert_non_null(f);
    assert_int_equal(fscanf(f, "%ld", &pid), 1);
    pclose(f);
    assert_true(pid > 0);
    assert_int_equal(kill((pid_t)pid, SIGKILL), 0);
    /* The other worker keeps answering meanwhile. */
    for (int i = 0; i < 20; i++) {
        expect("GET", "/v1/health", NULL, NULL, 200, "ok");
    }
    for (int i = 0; i < 100 && (n = workers()) != 2; i++) {
        usleep(100 * 1000);
    }
    assert_int_equal(n, 2);
    expect("POST", "/v1/orgs/dev/projects/demo/credentials/stripe/access",
           "{\"purpose\":\"deploy payments v4\"}", "agent", 403, "permission_denied");
}

/* Connections past a worker's limit are answered 503 and closed; service resumes after. */
static void test_connection_limit(void **state)
{
    CURL *held[10];
    int refused = 0;
    int served = 0;
    char url[128];

    (void)state;
    snprintf(url, sizeof(url), "%s/v1/health", target.base_url);
    /* Each handle keeps its connection open after its request: 10 connections, room for 8. */
    for (int i = 0; i < 10; i++) {
        struct https_reply r;

        memset(&r, 0, sizeof(r));
        held[i] = curl_easy_init();
        assert_non_null(held[i]);
        curl_easy_setopt(held[i], CURLOPT_URL, url);
        curl_easy_setopt(held[i], CURLOPT_CAINFO, tls.ca);
        curl_easy_setopt(held[i], CURLOPT_WRITEFUNCTION, https_collect);
        curl_easy_setopt(held[i], CURLOPT_WRITEDATA, &r);
        assert_int_equal(curl_easy_perform(held[i]), CURLE_OK);
        curl_easy_getinfo(held[i], CURLINFO_RESPONSE_CODE, &r.status);
        if (r.status == 503) {
            assert_non_null(strstr(r.body, "\"error\":\"too_many_connections\""));
            refused++;
        } else {
            assert_int_equal(r.status, 200);
            served++;
        }
    }
    assert_true(refused >= 2);
    assert_true(served >= 4);
    for (int i = 0; i < 10; i++) {
        curl_easy_cleanup(held[i]);
    }
    /* Once the connections are gone, every new one is served again. */
    for (int i = 0; i < 100; i++) {
        struct https_reply r;

        request("GET", "/v1/health", NULL, NULL, &r);
        if (r.status == 200) {
            break;
        }
        usleep(50 * 1000);
    }
    expect("GET", "/v1/health", NULL, NULL, 200, "ok");
}

/* /metrics sums the counters of every worker, in Prometheus text. */
/* ---- Puts at once: committed together ---- */

/* As many as one worker takes (limits.max_connections), so that none is turned away. */
#define PUT_CROWD 4

struct put_member {
    pthread_barrier_t *go;
    char path[128];
    CURLcode rc;
    struct https_reply r;
};

static void *put_main(void *arg)
{
    static const char value[] = "{\"type\":\"api_key\",\"tier\":\"medium\",\"keys\":{\"api_key\":"
                                "\"" SECRET "\"}}";
    struct put_member *m = arg;
    const char *cert = NULL;
    const char *key = NULL;

    (void)https_dev_identity(&tls, "admin", &cert, &key);
    (void)pthread_barrier_wait(m->go);
    m->rc = https_request(&target, "PUT", m->path, value, cert, key, NULL, &m->r);
    return NULL;
}

/* The value of a counter in a /metrics answer, or -1. */
static long metric(const char *body, const char *name)
{
    char needle[96];
    const char *p;

    snprintf(needle, sizeof(needle), "\n%s ", name);
    p = strstr(body, needle);
    return p != NULL ? atol(p + strlen(needle)) : -1;
}

/*
 * Puts sent at once, which a worker writes in a shared transaction: a new
 * credential, one credential twice, and a project that does not exist.
 * Every answer is the one a put alone gets, and every write has its event.
 */
static void test_concurrent_puts(void **state)
{
    static struct put_member m[PUT_CROWD];
    static const char *const paths[PUT_CROWD] = {
        "/v1/orgs/dev/projects/demo/credentials/crowd-0",
        "/v1/orgs/dev/projects/nosuch/credentials/crowd-1",
        "/v1/orgs/dev/projects/demo/credentials/same",
        "/v1/orgs/dev/projects/demo/credentials/same",
    };
    pthread_t t[PUT_CROWD];
    pthread_barrier_t go;
    struct https_reply r;
    long batched_before;
    int same_1 = 0;
    int same_2 = 0;

    (void)state;
    request("GET", "/metrics", NULL, NULL, &r);
    batched_before = metric(r.body, "coffer_puts_batched_total");
    assert_true(batched_before >= 0);
    assert_int_equal(pthread_barrier_init(&go, NULL, PUT_CROWD + 1), 0);
    for (int i = 0; i < PUT_CROWD; i++) {
        m[i] = (struct put_member){.go = &go};
        snprintf(m[i].path, sizeof(m[i].path), "%s", paths[i]);
        assert_int_equal(pthread_create(&t[i], NULL, put_main, &m[i]), 0);
    }
    (void)pthread_barrier_wait(&go);
    for (int i = 0; i < PUT_CROWD; i++) {
        (void)pthread_join(t[i], NULL);
    }
    (void)pthread_barrier_destroy(&go);
    for (int i = 0; i < PUT_CROWD; i++) {
        assert_int_equal(m[i].rc, CURLE_OK);
        assert_null(strstr(m[i].r.body, SECRET));
    }
    if (m[0].r.status != 201 || strstr(m[0].r.body, "\"version\":1") == NULL) {
        fail_msg("new credential: %ld %s", m[0].r.status, m[0].r.body);
    }
    assert_int_equal(m[1].r.status, 404);
    for (int i = 2; i < PUT_CROWD; i++) {
        same_1 += m[i].r.status == 201 && strstr(m[i].r.body, "\"version\":1") != NULL;
        same_2 += m[i].r.status == 200 && strstr(m[i].r.body, "\"version\":2") != NULL;
    }
    assert_int_equal(same_1, 1);
    assert_int_equal(same_2, 1);
    assert_true(world_sql_is(&w,
                             "SELECT count(*) FROM coffer.audit_events WHERE action = 'create' "
                             "AND allowed AND credential IN ('crowd-0', 'crowd-1', 'same')",
                             "3"));
    assert_true(world_sql_is(&w,
                             "SELECT count(*) FROM coffer.credential_versions v JOIN "
                             "coffer.credentials c ON c.id = v.credential_id WHERE c.name IN "
                             "('crowd-0', 'crowd-1', 'same')",
                             "3"));
    /* The new one and one of the pair at least were written by a shared transaction. */
    request("GET", "/metrics", NULL, NULL, &r);
    assert_true(metric(r.body, "coffer_puts_batched_total") >= batched_before + 2);
    assert_true(metric(r.body, "coffer_put_batches_total") >= 1);
}

static void test_metrics(void **state)
{
    struct https_reply r;
    const char *p;

    (void)state;
    request("GET", "/metrics", NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "# TYPE coffer_accesses_total counter"));
    assert_non_null(strstr(r.body, "coffer_workers 2"));
    p = strstr(r.body, "coffer_accesses_total{outcome=\"granted\"} ");
    assert_non_null(p);
    assert_true(atol(p + strlen("coffer_accesses_total{outcome=\"granted\"} ")) >= 3);
    p = strstr(r.body, "\ncoffer_unauthenticated_total ");
    assert_non_null(p);
    assert_true(atol(p + strlen("\ncoffer_unauthenticated_total ")) >= 1);
    assert_null(strstr(r.body, SECRET));
}

static void test_no_secret_leaked(void **state)
{
    char buf[65536];
    ssize_t n;
    int fd;

    (void)state;
    assert_true(world_sql_is(&w,
                             "SELECT count(*) FROM coffer.audit_events WHERE "
                             "concat_ws('|', purpose, detail, reason, request_id) LIKE "
                             "'%" SECRET "%'",
                             "0"));
    fd = open(log_path, O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    assert_true(n > 0);
    buf[n] = '\0';
    assert_null(strstr(buf, SECRET));
}

static void test_sigterm_stops_cleanly(void **state)
{
    int status = 0;

    (void)state;
    assert_int_equal(kill(server, SIGTERM), 0);
    assert_int_equal(coffer_proc_wait(server, 30000, &status), COFFER_OK);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    server = 0;
}

static void write_config(unsigned short port)
{
    assert_int_equal(https_write_config(config, port, &tls, &w.h,
                                        "workers: 2\n"
                                        "limits: {max_connections: 4}\n"
                                        "log: info\n"),
                     0);
}

static int setup(void **state)
{
    unsigned short port;

    (void)state;
    if (mkdtemp(dir) == NULL || coffer_dev_tls_provision(dir, &tls) != COFFER_OK) {
        return -1;
    }
    if (world_apply_policy(&w, policy) != 0) {
        return -1;
    }
    snprintf(config, sizeof(config), "%s/coffer.yaml", dir);
    snprintf(log_path, sizeof(log_path), "%s/cofferd.log", dir);
    port = https_free_port();
    https_target_dev(&target, port, &tls);
    write_config(port);
    start_server();
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    (void)https_server_stop(&server, SIGKILL, 10000);
    https_remove_dir(dir);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_health_and_authentication),
        cmocka_unit_test(test_store_and_access),
        cmocka_unit_test(test_malformed_requests),
        cmocka_unit_test(test_tampered_row),
        cmocka_unit_test(test_key_expiry),
        cmocka_unit_test(test_foreign_certificate),
        cmocka_unit_test(test_sighup_reloads),
        cmocka_unit_test(test_revoke_and_phase),
        cmocka_unit_test(test_worker_replaced),
        cmocka_unit_test(test_connection_limit),
        cmocka_unit_test(test_concurrent_puts),
        cmocka_unit_test(test_metrics),
        cmocka_unit_test(test_no_secret_leaked),
        cmocka_unit_test(test_sigterm_stops_cleanly),
    };
    int rc;

    curl_global_init(CURL_GLOBAL_DEFAULT);
    world_open("api_http", "dev", &w);
    world_add_project(&w, "demo", NULL);
    rc = cmocka_run_group_tests(tests, setup, teardown);
    world_close(&w);
    curl_global_cleanup();
    return rc;
}

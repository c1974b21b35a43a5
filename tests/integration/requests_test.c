/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The credential request flow and standing approvals, end to end over
 * HTTPS against a real cofferd (two workers), this test's token and
 * database, with client certificates of the test CA and a few more issued
 * here (another instance of the same agent type, an agent type that is not
 * a member of the project, an admin of another org):
 *
 *   - the whole flow: an agent files, the admin lists, the agent polls it
 *     pending, the admin fulfils it, the agent polls it fulfilled and
 *     reads the credential under the normal rules; the other agent type is
 *     denied;
 *   - the deny flow, and deciding a request twice (409, nothing stored);
 *   - who may read a request: its agent and the admins of its org only;
 *     other agents get 403 and admins of other orgs 404, each audited;
 *   - filing for another org, a missing project or as a non-member: 403;
 *   - validation of every body, with nothing recorded;
 *   - critical credentials: approval_required until the instance has a
 *     standing approval, granted inside its window only, refused to other
 *     instances, refused again once revoked;
 *   - the window rules, the store's own checks and coffer_app's privileges;
 *   - every step's audit event and its reason; no value in any log or row.
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
#include "coffer/ops.h"
#include "server/proc.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SECRET "sk_live_req_5e6f7a8b9c0d"
#define SECRET_CRITICAL "root-token-critical-1a2b3c"
#define SECRET_TWICE "second-fulfil-never-stored"
#define REQS "/v1/orgs/dev/projects/demo/requests"
#define CREDS "/v1/orgs/dev/projects/demo/credentials"
#define US_PER_S INT64_C(1000000)

static struct world w;
static struct coffer_dev_tls tls;
static char dir[] = "/tmp/coffer-requests-test.XXXXXX";
static char config[PATH_MAX];
static char log_path[PATH_MAX];
static struct https_target target;
static pid_t server;

/* Certificates issued by this test, beside those of coffer_dev_tls_provision. */
static struct https_cert extra[] = {
    {"deployer2", "spiffe://coffer.dev/org/dev/agent/deployer/deployer-2", "", ""},
    {"outsider", "spiffe://coffer.dev/org/dev/agent/outsider/outsider-1", "", ""},
    {"other_admin", "spiffe://coffer.dev/org/other/admin/olga", "", ""},
};

static const char policy[] = "version: 1\n"
                             "org: dev\n"
                             "agent_types: {deployer: , analyst: , outsider: }\n"
                             "projects:\n"
                             "  demo:\n"
                             "    phases: [build, production]\n"
                             "    members: [deployer, analyst]\n";

/* The certificate and key of who; false for nobody. */
/*
 * A request as who ("admin", "agent", "agent2", an extra certificate's name, or NULL) that must
 * answer status with a body containing needle; the reply in *out if given.
 */
static void expect_r(const char *method, const char *path, const char *body, const char *who,
                     long status, const char *needle, struct https_reply *out)
{
    expect_answer(&target, method, path, body, who, NULL, status, needle, out);
}

static void expect(const char *method, const char *path, const char *body, const char *who,
                   long status, const char *needle)
{
    expect_r(method, path, body, who, status, needle, NULL);
}

/* The string field of a JSON reply, copied into out. */
static void json_field(const struct https_reply *r, const char *field, char *out, size_t cap)
{
    json_error_t err;
    json_t *o = json_loads(r->body, 0, &err);
    json_t *v = o != NULL ? json_object_get(o, field) : NULL;

    if (!json_is_string(v)) {
        fail_msg("no string '%s' in %s", field, r->body);
    }
    snprintf(out, cap, "%s", json_string_value(v));
    json_decref(o);
}

/* Files a request as who with the JSON body; returns its id in id. */
static void file_request(const char *who, const char *body, char id[64])
{
    static struct https_reply r;

    expect_r("POST", REQS, body, who, 201, "\"state\":\"pending\"", &r);
    json_field(&r, "id", id, 64);
    assert_int_equal(strlen(id), 36);
}

/* The highest audit event id so far: events after it belong to what follows. */
static long mark(void)
{
    return world_audit_mark(&w);
}

/* Asserts the events written after m, as "action/allowed/reason" joined by ",". */
static void expect_events(long m, const char *expected)
{
    assert_true(world_reasons_are(&w, m, expected));
}

/* Asserts a one-value query formatted like printf. */
static void expect_sql(const char *expected, const char *fmt, ...) COFFER_PRINTF(2, 3);

static void expect_sql(const char *expected, const char *fmt, ...)
{
    char sql[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(sql, sizeof(sql), fmt, ap);
    va_end(ap);
    assert_true(world_sql_is(&w, sql, expected));
}

/* "YYYY-MM-DDTHH:MM:SSZ" of now + offset seconds. */
static void when(long offset, char out[32])
{
    time_t t = time(NULL) + offset;
    struct tm tm;

    assert_non_null(gmtime_r(&t, &tm));
    assert_true(strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm) > 0);
}

/* ---- The whole flow ------------------------------------------------------------------ */

static void test_whole_flow(void **state)
{
    char id[64];
    char path[256];
    static struct https_reply r;
    long m = mark();

    (void)state;
    file_request("agent",
                 "{\"name\":\"stripe\",\"type\":\"api_key\",\"tier\":\"high\","
                 "\"purpose\":\"deploy payments service\",\"urgency\":\"high\","
                 "\"suggested_grants\":[{\"agent_type\":\"deployer\"}],"
                 "\"description\":\"Stripe live key\"}",
                 id);
    /* The filing answer says what was filed and nothing more. */
    expect_r("GET", REQS, NULL, "admin", 200, id, &r);
    assert_non_null(strstr(r.body, "\"requester\":{"));
    assert_non_null(
        strstr(r.body, "\"spiffe\":\"spiffe://coffer.dev/org/dev/agent/deployer/deployer-1\""));
    assert_non_null(strstr(r.body, "\"purpose\":\"deploy payments service\""));
    assert_non_null(strstr(r.body, "\"suggested_grants\":[{\"agent_type\":\"deployer\"}]"));
    assert_non_null(strstr(r.body, "\"urgency\":\"high\""));

    snprintf(path, sizeof(path), REQS "/%s", id);
    expect_r("GET", path, NULL, "agent", 200, "\"state\":\"pending\"", &r);
    assert_null(strstr(r.body, "\"credential\""));
    assert_null(strstr(r.body, "\"version\""));

    snprintf(path, sizeof(path), REQS "/%s/fulfill", id);
    expect_r("POST", path, "{\"keys\":{\"api_key\":\"" SECRET "\"}}", "admin", 200,
             "\"state\":\"fulfilled\"", &r);
    assert_non_null(strstr(r.body, "\"credential\":\"stripe\""));
    assert_non_null(strstr(r.body, "\"version\":1"));
    assert_non_null(strstr(r.body, "\"expires_at\":\"20"));
    assert_null(strstr(r.body, SECRET));

    snprintf(path, sizeof(path), REQS "/%s", id);
    expect_r("GET", path, NULL, "agent", 200, "\"state\":\"fulfilled\"", &r);
    assert_non_null(strstr(r.body, "\"credential\":\"stripe\""));
    assert_non_null(strstr(r.body, "\"version\":1"));
    assert_non_null(strstr(r.body, "\"decided_by\":\"spiffe://coffer.dev/org/dev/admin/admin\""));
    /* A fulfilled request leaves the pending list. */
    expect_r("GET", REQS, NULL, "admin", 200, "\"requests\":[", &r);
    assert_null(strstr(r.body, id));

    /* The credential is read under the normal rules: the suggested grant, a purpose. */
    expect("POST", CREDS "/stripe/access", "{\"purpose\":\"deploy payments v2\"}", "agent", 200,
           SECRET);
    expect("POST", CREDS "/stripe/access", "{\"purpose\":\"deploy payments v2\"}", "agent2", 403,
           "\"error\":\"permission_denied\"");

    expect_events(m, "request/true/ok,request/true/ok,request/true/ok,create/true/ok,"
                     "fulfill/true/ok,request/true/ok,request/true/ok,access/true/granted,"
                     "access/false/no_grant");
    expect_sql("deploy payments service|deployer-1",
               "SELECT purpose || '|' || instance FROM coffer.audit_events WHERE id > %ld "
               "AND action = 'request' ORDER BY id LIMIT 1",
               m);
    expect_sql("1",
               "SELECT count(*) FROM coffer.audit_events WHERE id > %ld AND detail LIKE "
               "'request %s filed: type api_key, tier high, urgency high, 1 suggested grant'",
               m, id);
    expect_sql("stripe|1|admin",
               "SELECT credential || '|' || version || '|' || principal_kind FROM "
               "coffer.audit_events WHERE id > %ld AND action = 'fulfill'",
               m);
    expect_sql("fulfilled|1|true|spiffe://coffer.dev/org/dev/admin/admin|deployer/deployer-1",
               "SELECT r.state || '|' || r.credential_version || '|' || (r.credential_id = c.id) "
               "|| '|' || r.decided_by || '|' || r.requester_agent_type || '/' || "
               "r.requester_instance FROM coffer.credential_requests r JOIN coffer.credentials c "
               "ON c.name = 'stripe' AND c.project_id = r.project_id WHERE r.id = '%s'",
               id);
    /* The credential has the request's type and tier and the suggested grant. */
    expect_sql("api_key|high|deployer",
               "SELECT c.type || '|' || c.tier || '|' || string_agg(g.agent_type, ',') FROM "
               "coffer.credentials c JOIN coffer.grants g ON g.credential_name = c.name AND "
               "g.project_id = c.project_id WHERE c.name = 'stripe' GROUP BY c.type, c.tier");
}

/* ---- Deny, and deciding twice -------------------------------------------------------- */

static void test_deny_flow(void **state)
{
    char id[64];
    char path[256];
    static struct https_reply r;
    long m = mark();

    (void)state;
    file_request("agent",
                 "{\"name\":\"github-token\",\"type\":\"bearer_token\",\"tier\":\"medium\","
                 "\"purpose\":\"open pull requests\",\"suggested_grants\":["
                 "{\"agent_type\":\"deployer\",\"instance\":\"deployer-1\","
                 "\"phases\":[\"build\",\"production\"]},{\"agent_type\":\"analyst\"}]}",
                 id);
    /* The admin reads it whole, suggested grants as they were given. */
    snprintf(path, sizeof(path), REQS "/%s", id);
    expect_r("GET", path, NULL, "admin", 200, "\"state\":\"pending\"", &r);
    assert_non_null(strstr(r.body, "\"suggested_grants\":[{\"agent_type\":\"deployer\","
                                   "\"instance\":\"deployer-1\",\"phases\":[\"build\","
                                   "\"production\"]},{\"agent_type\":\"analyst\"}]"));
    expect_sql("{deployer,analyst}|{deployer-1,NULL}|{\"build,production\",\"\"}",
               "SELECT suggested_agent_types::text || '|' || suggested_instances::text || '|' || "
               "suggested_phases::text FROM coffer.credential_requests WHERE id = '%s'",
               id);
    snprintf(path, sizeof(path), REQS "/%s/deny", id);
    expect_r("POST", path, "{\"reason\":\"use the deploy key instead\"}", "admin", 200,
             "\"state\":\"denied\"", &r);
    assert_non_null(strstr(r.body, "\"reason\":\"use the deploy key instead\""));
    assert_non_null(strstr(r.body, "\"urgency\":\"normal\""));
    snprintf(path, sizeof(path), REQS "/%s", id);
    expect_r("GET", path, NULL, "agent", 200, "\"state\":\"denied\"", &r);
    assert_non_null(strstr(r.body, "\"reason\":\"use the deploy key instead\""));
    assert_null(strstr(r.body, "\"credential\""));

    /* A decided request is decided for good. */
    snprintf(path, sizeof(path), REQS "/%s/deny", id);
    expect("POST", path, "{\"reason\":\"again\"}", "admin", 409, "already denied");
    snprintf(path, sizeof(path), REQS "/%s/fulfill", id);
    expect("POST", path, "{\"keys\":{\"token\":\"" SECRET_TWICE "\"}}", "admin", 409,
           "\"error\":\"conflict\"");
    expect_sql("0", "SELECT count(*) FROM coffer.credentials WHERE name = 'github-token'");
    expect_sql("denied|use the deploy key instead|",
               "SELECT state || '|' || reason || '|' || coalesce(credential_version::text, '') "
               "FROM coffer.credential_requests WHERE id = '%s'",
               id);
    expect_events(m, "request/true/ok,request/true/ok,deny/true/ok,request/true/ok,"
                     "deny/false/invalid_state,fulfill/false/invalid_state");
    expect_sql("use the deploy key instead",
               "SELECT r.reason FROM coffer.credential_requests r WHERE r.id = '%s'", id);
}

static void test_fulfil_twice(void **state)
{
    char id[64];
    char path[256];
    long m;

    (void)state;
    file_request("agent",
                 "{\"name\":\"registry\",\"type\":\"basic_auth\",\"tier\":\"low\","
                 "\"purpose\":\"push images\",\"urgency\":\"low\"}",
                 id);
    m = mark();
    snprintf(path, sizeof(path), REQS "/%s/fulfill", id);
    expect("POST", path,
           "{\"keys\":{\"username\":\"bot\",\"password\":\"pw-1\"},"
           "\"grants\":[{\"agent_type\":\"deployer\",\"instance\":\"deployer-1\","
           "\"phases\":[\"build\"]}],\"ttl\":\"30d\",\"description\":\"Registry push\"}",
           "admin", 200, "\"version\":1");
    expect("POST", path, "{\"keys\":{\"username\":\"bot\",\"password\":\"" SECRET_TWICE "\"}}",
           "admin", 409, "already fulfilled");
    expect_sql("1", "SELECT current_version FROM coffer.credentials WHERE name = 'registry'");
    expect_sql("1", "SELECT count(*) FROM coffer.credential_versions v JOIN coffer.credentials c "
                    "ON c.id = v.credential_id WHERE c.name = 'registry'");
    expect_sql("deployer|deployer-1|{build}|Registry push",
               "SELECT g.agent_type || '|' || g.instance || '|' || g.phases::text || '|' || "
               "c.description FROM coffer.grants g JOIN coffer.credentials c ON c.name = "
               "g.credential_name AND c.project_id = g.project_id WHERE c.name = 'registry'");
    expect_events(m, "create/true/ok,fulfill/true/ok,fulfill/false/invalid_state");
    /* The grants given replace the (absent) suggestion: the agent reads it in phase build. */
    expect("POST", CREDS "/registry/access", "{\"purpose\":\"push images\"}", "agent", 200, "pw-1");
    expect("POST", CREDS "/registry/access", "{\"purpose\":\"push images\"}", "deployer2", 403,
           "permission_denied");
}

/* ---- Who may read and decide --------------------------------------------------------- */

static void test_reading_others(void **state)
{
    char id[64];
    char path[256];
    long m;

    (void)state;
    file_request("agent",
                 "{\"name\":\"sentry\",\"type\":\"api_key\",\"tier\":\"medium\","
                 "\"purpose\":\"report errors\"}",
                 id);
    m = mark();
    snprintf(path, sizeof(path), REQS "/%s", id);
    /* Another agent type, and another instance of the same type. */
    expect("GET", path, NULL, "agent2", 403, "\"error\":\"permission_denied\"");
    expect("GET", path, NULL, "deployer2", 403, "\"error\":\"permission_denied\"");
    /* A request that does not exist, an id that is not one, another org's path. */
    expect("GET", REQS "/00000000-0000-4000-8000-000000000000", NULL, "agent", 403,
           "permission_denied");
    expect("GET", REQS "/not-a-request-id", NULL, "agent", 403, "permission_denied");
    snprintf(path, sizeof(path), "/v1/orgs/other/projects/demo/requests/%s", id);
    expect("GET", path, NULL, "agent", 403, "permission_denied");
    /* Admins of another org are told the org does not exist, wherever they look. */
    snprintf(path, sizeof(path), REQS "/%s", id);
    expect("GET", path, NULL, "other_admin", 404, "\"error\":\"not_found\"");
    expect("GET", REQS, NULL, "other_admin", 404, "\"error\":\"not_found\"");
    snprintf(path, sizeof(path), REQS "/%s/fulfill", id);
    expect("POST", path, "{\"keys\":{\"api_key\":\"x\"}}", "other_admin", 404, "not_found");
    snprintf(path, sizeof(path), REQS "/%s/deny", id);
    expect("POST", path, "{\"reason\":\"no\"}", "other_admin", 404, "not_found");
    /* The admin of the org: a request that does not exist is 404. */
    expect("GET", REQS "/00000000-0000-4000-8000-000000000000", NULL, "admin", 404, "not_found");
    expect("POST", REQS "/00000000-0000-4000-8000-000000000000/deny", "{\"reason\":\"no\"}",
           "admin", 404, "not_found");
    expect("GET", "/v1/orgs/dev/projects/nosuch/requests", NULL, "admin", 404, "not_found");
    /* Agents cannot list or decide, admins cannot file. */
    expect("GET", REQS, NULL, "agent", 403, "permission_denied");
    snprintf(path, sizeof(path), REQS "/%s/deny", id);
    expect("POST", path, "{\"reason\":\"no\"}", "agent", 403, "permission_denied");
    expect("POST", REQS, "{\"name\":\"x\",\"type\":\"api_key\",\"tier\":\"low\",\"purpose\":\"p\"}",
           "admin", 403, "permission_denied");

    expect_events(m, "request/false/no_grant,request/false/no_grant,request/false/not_found,"
                     "request/false/not_found,request/false/not_found,request/false/not_found,"
                     "request/false/not_found,fulfill/false/not_found,deny/false/not_found,"
                     "request/false/not_found,deny/false/not_found,request/false/not_found");
    expect_sql("analyst-1,deployer-2",
               "SELECT string_agg(instance, ',' ORDER BY id) FROM coffer.audit_events WHERE "
               "id > %ld AND reason = 'no_grant'",
               m);
    expect_sql("other|dev",
               "SELECT org || '|' || target_org FROM coffer.audit_events WHERE "
               "id > %ld AND admin = 'olga' AND action = 'fulfill'",
               m);
    expect_sql("pending", "SELECT state FROM coffer.credential_requests WHERE id = '%s'", id);
}

static void test_filing_refused(void **state)
{
    static const char body[] = "{\"name\":\"pagerduty\",\"type\":\"api_key\",\"tier\":\"low\","
                               "\"purpose\":\"page the on-call\"}";
    long m = mark();

    (void)state;
    expect("POST", "/v1/orgs/other/projects/demo/requests", body, "agent", 403,
           "\"error\":\"permission_denied\"");
    expect("POST", "/v1/orgs/dev/projects/nosuch/requests", body, "agent", 403,
           "\"error\":\"permission_denied\"");
    expect("POST", REQS, body, "outsider", 403, "\"error\":\"permission_denied\"");
    expect_events(m, "request/false/not_found,request/false/not_found,"
                     "request/false/not_project_member");
    expect_sql("dev|other|page the on-call",
               "SELECT org || '|' || target_org || '|' || purpose FROM coffer.audit_events "
               "WHERE id > %ld ORDER BY id LIMIT 1",
               m);
    expect_sql("0", "SELECT count(*) FROM coffer.credential_requests WHERE name = 'pagerduty'");
}

/* ---- Validation ----------------------------------------------------------------------- */

static void test_validation(void **state)
{
    char body[2048];
    char long_purpose[600];
    char id[64];
    char path[256];
    long m = mark();

    (void)state;
#define BAD(json, needle) expect("POST", REQS, json, "agent", 400, needle)
    BAD("{\"name\":\"a\",\"type\":\"api_key\",\"tier\":\"low\"}",
        "'name', 'type', 'tier' and 'purpose' are required");
    BAD("{\"name\":\"a\",\"type\":\"api_key\",\"tier\":\"low\",\"purpose\":\"p\",\"x\":1}",
        "unknown field 'x'");
    BAD("{\"name\":\"a\",\"type\":\"api_key\",\"tier\":\"low\",\"purpose\":7}",
        "'purpose' must be a string");
    BAD("{\"name\":\"a\",\"type\":\"api_key\",\"tier\":\"low\",\"purpose\":\"\"}",
        "a purpose is required");
    BAD("{\"name\":\"a\",\"type\":\"api_key\",\"tier\":\"low\",\"purpose\":\"bell\\u0007\"}",
        "a purpose is required");
    memset(long_purpose, 'p', 513);
    long_purpose[513] = '\0';
    snprintf(body, sizeof(body),
             "{\"name\":\"a\",\"type\":\"api_key\",\"tier\":\"low\",\"purpose\":\"%s\"}",
             long_purpose);
    BAD(body, "1 to 512 bytes");
    BAD("{\"name\":\"Bad Name\",\"type\":\"api_key\",\"tier\":\"low\",\"purpose\":\"p\"}",
        "must match");
    BAD("{\"name\":\"a\",\"type\":\"password\",\"tier\":\"low\",\"purpose\":\"p\"}",
        "unknown credential type");
    BAD("{\"name\":\"a\",\"type\":\"api_key\",\"tier\":\"extreme\",\"purpose\":\"p\"}",
        "tier must be");
    BAD("{\"name\":\"a\",\"type\":\"api_key\",\"tier\":\"low\",\"purpose\":\"p\","
        "\"urgency\":\"asap\"}",
        "urgency must be low, normal or high");
    BAD("{\"name\":\"a\",\"type\":\"api_key\",\"tier\":\"low\",\"purpose\":\"p\","
        "\"suggested_grants\":{}}",
        "'suggested_grants' must be an array");
    BAD("{\"name\":\"a\",\"type\":\"api_key\",\"tier\":\"low\",\"purpose\":\"p\","
        "\"suggested_grants\":[{\"agent_type\":\"deployer\",\"role\":\"x\"}]}",
        "has only agent_type, instance and phases");
    BAD("{\"name\":\"a\",\"type\":\"api_key\",\"tier\":\"low\",\"purpose\":\"p\","
        "\"suggested_grants\":[{\"agent_type\":\"outsider\"}]}",
        "suggested grant 0: agent type outsider is not a member of project demo");
    BAD("{\"name\":\"a\",\"type\":\"api_key\",\"tier\":\"low\",\"purpose\":\"p\","
        "\"suggested_grants\":[{\"agent_type\":\"deployer\",\"phases\":[\"qa\"]}]}",
        "no phase qa");
    BAD("{\"name\":\"a\",\"type\":\"api_key\",\"tier\":\"low\",\"purpose\":\"p\","
        "\"suggested_grants\":[{\"agent_type\":\"deployer\"},{\"agent_type\":\"deployer\"}]}",
        "name the same agent type and instance");
    BAD("{\"name\":\"a\",\"type\":\"api_key\",\"tier\":\"low\",\"purpose\":\"p\","
        "\"description\":\"tab\\there\"}",
        "a description is 1 to 1024 bytes");
#undef BAD
    /* Nothing was filed or recorded. */
    expect_events(m, "");
    expect_sql("0", "SELECT count(*) FROM coffer.credential_requests WHERE name IN ('a', 'bad')");

    /* A fulfilment that breaks a rule of put stores nothing and leaves the request pending. */
    file_request("agent",
                 "{\"name\":\"signing\",\"type\":\"certificate\",\"tier\":\"critical\","
                 "\"purpose\":\"sign releases\"}",
                 id);
    m = mark();
    snprintf(path, sizeof(path), REQS "/%s/fulfill", id);
    expect("POST", path, "{}", "admin", 400, "'keys' must be an object");
    expect("POST", path, "{\"keys\":{\"certificate\":\"c\"}}", "admin", 400,
           "needs a key named private_key");
    expect("POST", path, "{\"keys\":{\"certificate\":\"c\",\"private_key\":\"k\"},\"ttl\":\"2d\"}",
           "admin", 400, "exceeds the max_ttl of tier critical");
    expect("POST", path,
           "{\"keys\":{\"certificate\":\"c\",\"private_key\":\"k\"},"
           "\"grants\":[{\"agent_type\":\"outsider\"}]}",
           "admin", 400, "not a member");
    expect("POST", path, "{\"keys\":{\"certificate\":\"c\"},\"colour\":\"red\"}", "admin", 400,
           "unknown field 'colour'");
    expect("POST", path, "{\"keys\":{\"certificate\":\"c\"},\"expires_at\":\"tomorrow\"}", "admin",
           400, "'expires_at' must be YYYY-MM-DDTHH:MM:SSZ");
    snprintf(path, sizeof(path), REQS "/%s/deny", id);
    expect("POST", path, "{}", "admin", 400, "'reason' is required");
    expect("POST", path, "{\"reason\":\"\"}", "admin", 400, "a denial reason is 1 to 1024");
    expect_events(m, "");
    expect_sql("pending", "SELECT state FROM coffer.credential_requests WHERE id = '%s'", id);
    expect_sql("0", "SELECT count(*) FROM coffer.credentials WHERE name = 'signing'");
}

/* ---- Standing approvals --------------------------------------------------------------- */

/* Gives an approval; returns its id in id. */
static void approve(const char *who_type, const char *instance, long from, long until, char id[64])
{
    char f[32];
    char u[32];
    char body[256];
    static struct https_reply r;

    when(from, f);
    when(until, u);
    snprintf(body, sizeof(body),
             "{\"agent_type\":\"%s\",\"instance\":\"%s\",\"from\":\"%s\",\"until\":\"%s\"}",
             who_type, instance, f, u);
    expect_r("POST", CREDS "/vault-root/approvals", body, "admin", 201, "\"id\":", &r);
    json_field(&r, "id", id, 64);
    assert_non_null(strstr(r.body, f));
    assert_non_null(strstr(r.body, u));
}

static void access_denied(const char *who, const char *reason)
{
    expect("POST", CREDS "/vault-root/access", "{\"purpose\":\"unseal the vault\"}", who, 403,
           "\"error\":\"permission_denied\"");
    assert_true(world_sql_is(&w,
                             "SELECT reason FROM coffer.audit_events WHERE action = 'access' "
                             "ORDER BY id DESC LIMIT 1",
                             reason));
}

static void test_critical_approvals(void **state)
{
    char body[256];
    char a1[64];
    char a2[64];
    char a3[64];
    char path[256];
    char f[32];
    char u[32];
    long m;

    (void)state;
    expect("PUT", CREDS "/vault-root",
           "{\"type\":\"api_key\",\"tier\":\"critical\",\"keys\":{\"api_key\":\"" SECRET_CRITICAL
           "\"},\"grants\":[{\"agent_type\":\"deployer\"}]}",
           "admin", 201, "\"version\":1");
    /* Granted, but critical: nobody without a standing approval. */
    access_denied("agent", "approval_required");
    access_denied("deployer2", "approval_required");

    m = mark();
    /* The window rules and the other refusals; none of them gives an approval. */
#define BAD_APPROVAL(from, until, status, needle)                                                  \
    do {                                                                                           \
        when(from, f);                                                                             \
        when(until, u);                                                                            \
        snprintf(body, sizeof(body),                                                               \
                 "{\"agent_type\":\"deployer\",\"instance\":\"deployer-1\",\"from\":\"%s\","       \
                 "\"until\":\"%s\"}",                                                              \
                 f, u);                                                                            \
        expect("POST", CREDS "/vault-root/approvals", body, "admin", status, needle);              \
    } while (0)
    BAD_APPROVAL(0, 25 * 3600, 400, "longer than 24 hours");
    BAD_APPROVAL(-7200, -3600, 400, "must end in the future");
    BAD_APPROVAL(3600, 1800, 400, "the approval window is empty");
    BAD_APPROVAL(3600, 3600, 400, "the approval window is empty");
#undef BAD_APPROVAL
    when(3600, u);
    snprintf(body, sizeof(body),
             "{\"agent_type\":\"outsider\",\"instance\":\"outsider-1\",\"until\":\"%s\"}", u);
    expect("POST", CREDS "/vault-root/approvals", body, "admin", 400,
           "agent type outsider is not a member of project demo");
    snprintf(body, sizeof(body),
             "{\"agent_type\":\"deployer\",\"instance\":\"deployer-1\",\"until\":\"%s\"}", u);
    expect("POST", CREDS "/stripe/approvals", body, "admin", 409, "tier high");
    expect("POST", CREDS "/nosuch/approvals", body, "admin", 404, "not_found");
    expect("POST", CREDS "/vault-root/approvals", body, "other_admin", 404, "not_found");
    expect("POST", CREDS "/vault-root/approvals", body, "agent", 403, "permission_denied");
    expect("POST", CREDS "/vault-root/approvals",
           "{\"agent_type\":\"deployer\",\"instance\":\"deployer-1\"}", "admin", 400,
           "'agent_type', 'instance' and 'until' are required");
    expect("POST", CREDS "/vault-root/approvals",
           "{\"agent_type\":\"deployer\",\"instance\":\"deployer-1\",\"until\":\"soon\"}", "admin",
           400, "'until' must be YYYY-MM-DDTHH:MM:SSZ");
    expect("POST", CREDS "/vault-root/approvals",
           "{\"agent_type\":\"deployer\",\"instance\":\"Deployer 1\",\"until\":\"2030-01-01T00:00:"
           "00Z\"}",
           "admin", 400, "must match");
    expect_events(m, "approve/false/not_found,approve/false/not_found");
    expect_sql("0", "SELECT count(*) FROM coffer.approvals");

    /* Without from: from now. Inside the window, this instance only. */
    m = mark();
    snprintf(body, sizeof(body),
             "{\"agent_type\":\"deployer\",\"instance\":\"deployer-1\",\"until\":\"%s\"}", u);
    {
        static struct https_reply r;

        expect_r("POST", CREDS "/vault-root/approvals", body, "admin", 201, "\"from\":\"", &r);
        json_field(&r, "id", a1, sizeof(a1));
        assert_non_null(strstr(r.body, u));
    }
    expect("POST", CREDS "/vault-root/access", "{\"purpose\":\"unseal the vault\"}", "agent", 200,
           SECRET_CRITICAL);
    access_denied("deployer2", "approval_required");
    access_denied("agent2", "no_grant");
    /* A window that has not begun yet does not count. */
    approve("deployer", "deployer-2", 7200, 10800, a2);
    access_denied("deployer2", "approval_required");
    /* Nor one that has ended (moved into the past behind the server's back). */
    approve("deployer", "deployer-2", 0, 600, a3);
    expect("POST", CREDS "/vault-root/access", "{\"purpose\":\"unseal the vault\"}", "deployer2",
           200, SECRET_CRITICAL);
    world_sql(&w, "UPDATE coffer.approvals SET from_at = now() - interval '2 hours', "
                  "until_at = now() - interval '1 hour' WHERE instance = 'deployer-2' AND "
                  "until_at < now() + interval '1 hour'");
    access_denied("deployer2", "approval_required");

    /* Revoked: refused at once. */
    snprintf(path, sizeof(path), CREDS "/vault-root/approvals/%s/revoke", a1);
    expect("POST", path, "{}", "admin", 200, "\"revoked\":true");
    access_denied("agent", "approval_required");
    expect("POST", path, "{}", "admin", 409, "already revoked");
    expect("POST", path, "{}", "other_admin", 404, "not_found");
    expect("POST", path, "{\"why\":1}", "admin", 400, "unknown field 'why'");
    expect("POST", CREDS "/vault-root/approvals/00000000-0000-4000-8000-000000000000/revoke", "{}",
           "admin", 404, "not_found");
    /* An approval is revoked only through its own credential. */
    snprintf(path, sizeof(path), CREDS "/stripe/approvals/%s/revoke", a2);
    expect("POST", path, "{}", "admin", 404, "not_found");

    expect_events(m, "approve/true/ok,access/true/granted,access/false/approval_required,"
                     "access/false/no_grant,approve/true/ok,access/false/approval_required,"
                     "approve/true/ok,access/true/granted,access/false/approval_required,"
                     "approval_revoke/true/ok,access/false/approval_required,"
                     "approval_revoke/false/invalid_state,approval_revoke/false/not_found,"
                     "approval_revoke/false/not_found,approval_revoke/false/not_found");
    expect_sql("1",
               "SELECT count(*) FROM coffer.audit_events WHERE id > %ld AND action = "
               "'approve' AND credential = 'vault-root' AND version = 1 AND detail LIKE "
               "'approval %s of deployer/deployer-1 from %% until %s'",
               m, a1, u);
    expect_sql("true|spiffe://coffer.dev/org/dev/admin/admin",
               "SELECT (revoked_at IS NOT NULL) || '|' || created_by FROM coffer.approvals "
               "WHERE id = '%s'",
               a1);
    /* The approvals are read afresh on every access: nothing was cached by the workers. */
    approve("deployer", "deployer-1", 0, 1800, a3);
    expect("POST", CREDS "/vault-root/access", "{\"purpose\":\"unseal the vault\"}", "agent", 200,
           SECRET_CRITICAL);
}

/* ---- The window rules and the store, without HTTP -------------------------------------- */

static void test_window_rules(void **state)
{
    const int64_t now = INT64_C(1800000000) * US_PER_S;
    const int64_t hour = INT64_C(3600) * US_PER_S;
    int64_t start = -1;

    (void)state;
    /* from absent: from now. */
    assert_int_equal(coffer_op_approval_window(now, 0, now + hour, &start), COFFER_OK);
    assert_true(start == now);
    /* A window that began earlier and ends later is fine; exactly 24 hours is the maximum. */
    assert_int_equal(coffer_op_approval_window(now, now - hour, now + hour, &start), COFFER_OK);
    assert_true(start == now - hour);
    assert_int_equal(coffer_op_approval_window(now, now, now + 24 * hour, &start), COFFER_OK);
    assert_int_equal(coffer_op_approval_window(now, now + hour, now + 25 * hour, &start),
                     COFFER_OK);
    assert_true(start == now + hour);
    /* Longer than 24 hours, by a microsecond. */
    assert_int_equal(coffer_op_approval_window(now, now, now + 24 * hour + 1, &start),
                     COFFER_E_INVALID);
    assert_true(start == 0);
    assert_non_null(strstr(coffer_err_detail(), "longer than 24 hours"));
    /* Empty, or reversed. */
    assert_int_equal(coffer_op_approval_window(now, now + hour, now + hour, &start),
                     COFFER_E_INVALID);
    assert_non_null(strstr(coffer_err_detail(), "empty"));
    assert_int_equal(coffer_op_approval_window(now, now + hour, now, &start), COFFER_E_INVALID);
    /* Ending now or before. */
    assert_int_equal(coffer_op_approval_window(now, now - hour, now, &start), COFFER_E_INVALID);
    assert_non_null(strstr(coffer_err_detail(), "end in the future"));
    assert_int_equal(coffer_op_approval_window(now, now - 2 * hour, now - hour, &start),
                     COFFER_E_INVALID);
    /* Nonsense inputs. */
    assert_int_equal(coffer_op_approval_window(now, -5, now + hour, &start), COFFER_E_INVALID);
    assert_int_equal(coffer_op_approval_window(0, 0, hour, &start), COFFER_E_INVALID);
    assert_int_equal(coffer_op_approval_window(now, 0, now + hour, NULL), COFFER_E_INVALID);
}

static void test_store_rules(void **state)
{
    struct coffer_arena *a = NULL;
    struct coffer_authz_input in;
    struct coffer_store_access acc;
    struct coffer_store_approval ap;
    struct coffer_store_request q;
    struct coffer_uuid none;
    PGconn *app;
    PGresult *res;
    int64_t now = (int64_t)time(NULL) * US_PER_S;
    const int64_t hour = INT64_C(3600) * US_PER_S;

    (void)state;
    assert_int_equal(coffer_arena_new(0, &a), COFFER_OK);
    memset(&in, 0, sizeof(in));
    assert_int_equal(coffer_store_access_load(w.st, "dev", "demo", "vault-root", a, &in, &acc),
                     COFFER_OK);
    assert_true(acc.found);
    /*
     * Loaded: the approvals neither revoked nor ended, that is the last one of
     * deployer-1 (covering now) and the one of deployer-2 that has not begun.
     */
    assert_int_equal(in.n_approvals, 2);
    for (size_t i = 0; i < in.n_approvals; i++) {
        const struct coffer_authz_approval *x = &in.approvals[i];

        assert_string_equal(x->agent_type, "deployer");
        if (strcmp(x->instance, "deployer-1") == 0) {
            assert_true(x->from_us <= in.now_us && in.now_us < x->until_us);
        } else {
            assert_string_equal(x->instance, "deployer-2");
            assert_true(x->from_us > in.now_us);
        }
    }
    assert_string_not_equal(in.approvals[0].instance, in.approvals[1].instance);

    /* Outside a transaction, or with a window the table would refuse. */
    assert_int_equal(coffer_store_approval_insert(w.st, &acc.org_id, &acc.project_id,
                                                  &acc.credential_id, "deployer", "deployer-9", now,
                                                  now + hour, "test", &ap),
                     COFFER_E_STATE);
    assert_int_equal(coffer_store_begin(w.st), COFFER_OK);
    assert_int_equal(coffer_store_approval_insert(w.st, &acc.org_id, &acc.project_id,
                                                  &acc.credential_id, "deployer", "deployer-9", now,
                                                  now + 25 * hour, "test", &ap),
                     COFFER_E_INVALID);
    assert_int_equal(coffer_store_approval_insert(w.st, &acc.org_id, &acc.project_id,
                                                  &acc.credential_id, "deployer", "Deployer", now,
                                                  now + hour, "test", &ap),
                     COFFER_E_INVALID);
    /* A credential of another project (or none) is not found. */
    assert_int_equal(coffer_store_approval_insert(w.st, &acc.org_id, &w.proj.id, &acc.credential_id,
                                                  "deployer", "deployer-9", now, now + hour, "test",
                                                  &ap),
                     COFFER_E_NOT_FOUND);
    coffer_store_rollback(w.st);
    memset(&none, 0, sizeof(none));
    assert_int_equal(
        coffer_store_request_get(w.st, &acc.org_id, &acc.project_id, &none, false, a, &q),
        COFFER_E_NOT_FOUND);
    assert_int_equal(
        coffer_store_request_get(w.st, &acc.org_id, &acc.project_id, &none, true, a, &q),
        COFFER_E_STATE);
    coffer_arena_free(&a);

    /* The table refuses what the server would, even from its owner. */
    app = PQconnectdb(w.h.db_owner);
    assert_int_equal(PQstatus(app), CONNECTION_OK);
    res = PQexec(app, "INSERT INTO coffer.approvals (org_id, project_id, credential_id, "
                      "agent_type, instance, from_at, until_at, created_by) SELECT org_id, "
                      "project_id, credential_id, agent_type, instance, now(), now() + interval "
                      "'25 hours', 'x' FROM coffer.approvals LIMIT 1");
    assert_int_equal(PQresultStatus(res), PGRES_FATAL_ERROR);
    PQclear(res);
    res = PQexec(app, "UPDATE coffer.credential_requests SET state = 'fulfilled' WHERE "
                      "state = 'pending'");
    assert_int_equal(PQresultStatus(res), PGRES_FATAL_ERROR);
    PQclear(res);
    res = PQexec(app, "UPDATE coffer.credential_requests SET suggested_agent_types = "
                      "'{deployer}', suggested_instances = '{NULL}', suggested_phases = "
                      "'{\",build\"}' WHERE name = 'sentry'");
    assert_int_equal(PQresultStatus(res), PGRES_FATAL_ERROR);
    PQclear(res);
    res = PQexec(app, "UPDATE coffer.credential_requests SET suggested_agent_types = "
                      "'{deployer}' WHERE name = 'sentry'");
    assert_int_equal(PQresultStatus(res), PGRES_FATAL_ERROR);
    PQclear(res);
    PQfinish(app);

    /* coffer_app appends and decides; it never deletes nor rewrites what was asked. */
    app = PQconnectdb(w.h.db_app);
    assert_int_equal(PQstatus(app), CONNECTION_OK);
    {
        static const char *const refused[] = {
            "DELETE FROM coffer.credential_requests",
            "DELETE FROM coffer.approvals",
            "UPDATE coffer.credential_requests SET purpose = 'x'",
            "UPDATE coffer.credential_requests SET requester_instance = 'x'",
            "UPDATE coffer.approvals SET until_at = now() + interval '1 hour'",
            "UPDATE coffer.approvals SET instance = 'x'",
        };

        for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
            res = PQexec(app, refused[i]);
            if (PQresultStatus(res) != PGRES_FATAL_ERROR ||
                strcmp(PQresultErrorField(res, PG_DIAG_SQLSTATE), "42501") != 0) {
                fail_msg("coffer_app was allowed: %s", refused[i]);
            }
            PQclear(res);
        }
    }
    PQfinish(app);
}

/* ---- Limits ------------------------------------------------------------------------ */

static void test_limits(void **state)
{
    static struct https_reply r;
    char u[32];
    char body[256];
    const char *sentry;
    const char *signing;
    const char *bulk;

    (void)state;
    /* Fill the project up to the cap of pending requests behind the server's back. */
    world_sql(&w, "INSERT INTO coffer.credential_requests (org_id, project_id, name, type, tier, "
                  "purpose, requester_trust_domain, requester_agent_type, requester_instance) "
                  "SELECT p.org_id, p.id, 'bulk-' || i, 'api_key', 'low', 'bulk', 'coffer.dev', "
                  "'analyst', 'analyst-1' FROM coffer.projects p, generate_series(1, 1000 - "
                  "(SELECT count(*) FROM coffer.credential_requests WHERE state = 'pending')) i "
                  "WHERE p.name = 'demo'");
    expect("POST", REQS,
           "{\"name\":\"one-too-many\",\"type\":\"api_key\",\"tier\":\"low\","
           "\"purpose\":\"p\"}",
           "agent", 400, "already has 1000 pending requests");
    /* All of them listed, oldest first. */
    expect_r("GET", REQS, NULL, "admin", 200, "\"requests\":[", &r);
    sentry = strstr(r.body, "\"name\":\"sentry\"");
    signing = strstr(r.body, "\"name\":\"signing\"");
    bulk = strstr(r.body, "\"name\":\"bulk-1\"");
    assert_non_null(sentry);
    assert_non_null(signing);
    assert_non_null(bulk);
    assert_true(sentry < signing && signing < bulk);
    assert_non_null(strstr(r.body, "\"name\":\"bulk-998\""));
    world_sql(&w, "DELETE FROM coffer.credential_requests WHERE name LIKE 'bulk-%'");

    /* The cap of approvals in force; all of them still count at an access. */
    world_sql(&w, "INSERT INTO coffer.approvals (org_id, project_id, credential_id, agent_type, "
                  "instance, from_at, until_at, created_by) SELECT c.org_id, c.project_id, c.id, "
                  "'deployer', 'bulk-' || i, now(), now() + interval '2 hours', 'test' FROM "
                  "coffer.credentials c, generate_series(1, 256 - (SELECT count(*) FROM "
                  "coffer.approvals WHERE revoked_at IS NULL AND until_at > now())) i "
                  "WHERE c.name = 'vault-root'");
    when(3600, u);
    snprintf(body, sizeof(body),
             "{\"agent_type\":\"deployer\",\"instance\":\"deployer-2\",\"until\":\"%s\"}", u);
    expect("POST", CREDS "/vault-root/approvals", body, "admin", 400,
           "already has 256 approvals in force");
    expect("POST", CREDS "/vault-root/access", "{\"purpose\":\"unseal the vault\"}", "agent", 200,
           SECRET_CRITICAL);
    world_sql(&w, "DELETE FROM coffer.approvals WHERE instance LIKE 'bulk-%'");
}

/* ---- No value anywhere -------------------------------------------------------------- */

static void test_no_secret_leaked(void **state)
{
    static char buf[1 << 20];
    static const char *const secrets[] = {SECRET, SECRET_CRITICAL, SECRET_TWICE};
    ssize_t n;
    int fd;

    (void)state;
    for (size_t i = 0; i < sizeof(secrets) / sizeof(secrets[0]); i++) {
        expect_sql("0",
                   "SELECT count(*) FROM coffer.audit_events WHERE concat_ws('|', purpose, "
                   "detail, reason, request_id) LIKE '%%%s%%'",
                   secrets[i]);
        expect_sql("0",
                   "SELECT count(*) FROM coffer.credential_requests WHERE concat_ws('|', "
                   "purpose, description, reason, decided_by) LIKE '%%%s%%'",
                   secrets[i]);
    }
    fd = open(log_path, O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    assert_true(n > 0);
    buf[n] = '\0';
    for (size_t i = 0; i < sizeof(secrets) / sizeof(secrets[0]); i++) {
        assert_null(strstr(buf, secrets[i]));
    }
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

/* ---- Setup ---------------------------------------------------------------------------- */

static int start_server(void)
{
    return https_server_start(COFFERD_BIN, config, w.h.env.softhsm_conf, log_path, &target,
                              &server);
}

static int write_config(unsigned short port)
{
    return https_write_config(config, port, &tls, &w.h, "workers: 2\nlog: info\n");
}

static int setup(void **state)
{
    static const struct https_cert *certs[sizeof(extra) / sizeof(extra[0])];
    unsigned short port;

    (void)state;
    if (mkdtemp(dir) == NULL || coffer_dev_tls_provision(dir, &tls) != COFFER_OK) {
        return -1;
    }
    for (size_t i = 0; i < sizeof(extra) / sizeof(extra[0]); i++) {
        if (https_issue_cert(&tls, dir, &extra[i], 1000 + (unsigned)i) != 0) {
            return -1;
        }
    }
    if (world_apply_policy(&w, policy) != 0) {
        return -1;
    }
    snprintf(config, sizeof(config), "%s/coffer.yaml", dir);
    snprintf(log_path, sizeof(log_path), "%s/cofferd.log", dir);
    port = https_free_port();
    https_target_dev(&target, port, &tls);
    for (size_t i = 0; i < sizeof(extra) / sizeof(extra[0]); i++) {
        certs[i] = &extra[i];
    }
    target.certs = certs;
    target.n_certs = sizeof(extra) / sizeof(extra[0]);
    if (write_config(port) != 0) {
        return -1;
    }
    return start_server();
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
        cmocka_unit_test(test_whole_flow),         cmocka_unit_test(test_deny_flow),
        cmocka_unit_test(test_fulfil_twice),       cmocka_unit_test(test_reading_others),
        cmocka_unit_test(test_filing_refused),     cmocka_unit_test(test_validation),
        cmocka_unit_test(test_critical_approvals), cmocka_unit_test(test_window_rules),
        cmocka_unit_test(test_store_rules),        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_no_secret_leaked),   cmocka_unit_test(test_sigterm_stops_cleanly),
    };
    int rc;

    curl_global_init(CURL_GLOBAL_DEFAULT);
    world_open("requests", "dev", &w);
    world_add_project(&w, "demo", NULL);
    rc = cmocka_run_group_tests(tests, setup, teardown);
    world_close(&w);
    curl_global_cleanup();
    return rc;
}

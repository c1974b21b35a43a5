/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Bearer tokens end to end over HTTPS, against this test's real token and
 * database, with cofferd -c and libcurl:
 *
 *   - a key under the token MAC key's label that is not a sign/verify-only
 *     generic secret is refused, never used;
 *   - without the token MAC key a token cannot be issued (409 naming the
 *     operator command) and a well-formed bearer token is 401; the operator
 *     command creates the key once and refuses a second time;
 *   - an admin issues a token for an agent (201, shown once), the agent uses
 *     it to access a granted credential (the audit event names the agent
 *     with no trust domain), and it is refused on admin routes;
 *   - a certificate and a token of the same principal pass together; of
 *     different principals, 401;
 *   - revoking a token makes the next request 401; expired tokens are 401;
 *     lifetimes beyond 30 days are refused;
 *   - every malformed Authorization header is 401 and audited, with a
 *     detail that never holds the header;
 *   - a token of one org cannot act in another, and an admin cannot issue
 *     or revoke another org's tokens;
 *   - an admin authenticated by a token can issue tokens;
 *   - the stored digest is the token's HMAC under the key in the token;
 *   - no token ever appears in any table of the database, in an audit row or
 *     in the server's log.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "expect.h"
#include "world.h"

#include "coffer/buf.h"
#include "coffer/dev.h"
#include "coffer/mem.h"
#include "coffer/ops.h"
#include "server/proc.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <jansson.h>
#include <openssl/rand.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SECRET "sk_live_tokens_9c8b7a6f5e"
#define OTHER_SECRET "sk_other_org_1a2b3c4d5e"
#define ACCESS "/v1/orgs/dev/projects/demo/credentials/stripe/access"
#define OTHER_ACCESS "/v1/orgs/other/projects/demo/credentials/stripe/access"
#define PURPOSE "{\"purpose\":\"deploy payments v7\"}"
#define MAX_TOKENS 32

static struct world w;
static struct coffer_ops ops;
static struct coffer_dev_tls tls;
static char dir[] = "/tmp/coffer-tokens-test.XXXXXX";
static char config[PATH_MAX];
static char log_path[PATH_MAX];
static struct https_target target;
static pid_t server;

/* Every token this test saw, for the final scans. */
static char seen[MAX_TOKENS][COFFER_TOKEN_LEN + 1];
static size_t n_seen;
/* The agent token of test_create_and_use, revoked by test_revoke. */
static char agent_token[COFFER_TOKEN_LEN + 1];
static char agent_token_id[COFFER_UUID_STR_LEN];
/* A token of org "other", issued in process. */
static char other_token[COFFER_TOKEN_LEN + 1];
static char other_token_id[COFFER_UUID_STR_LEN];

static const char dev_policy[] = "version: 1\n"
                                 "org: dev\n"
                                 "agent_types: {deployer: , analyst: }\n"
                                 "projects:\n"
                                 "  demo:\n"
                                 "    phases: [build, production]\n"
                                 "    members: [deployer, analyst]\n"
                                 "    credentials:\n"
                                 "      stripe:\n"
                                 "        grants: [{agent_type: deployer}]\n";

static const char other_policy[] = "version: 1\n"
                                   "org: other\n"
                                   "agent_types: {deployer: }\n"
                                   "projects:\n"
                                   "  demo:\n"
                                   "    phases: [build]\n"
                                   "    members: [deployer]\n"
                                   "    credentials:\n"
                                   "      stripe:\n"
                                   "        grants: [{agent_type: deployer}]\n";

/* ---- HTTP --------------------------------------------------------------------------- */

/*
 * One request. cert is "admin", "agent", "agent2" or NULL (no certificate);
 * headers a NULL-terminated list of extra header lines, or NULL.
 */
static void request(const char *method, const char *path, const char *body, const char *cert,
                    const char *const *headers, struct https_reply *out)
{
    expect_request(&target, method, path, body, cert, headers, out);
}

static void expect(const char *method, const char *path, const char *body, const char *cert,
                   const char *const *headers, long status, const char *needle)
{
    expect_answer(&target, method, path, body, cert, headers, status, needle, NULL);
}

/* A request authenticated by "Authorization: Bearer <token>" only. */
static void expect_bearer(const char *method, const char *path, const char *body, const char *token,
                          long status, const char *needle)
{
    char line[128];
    const char *headers[] = {line, NULL};

    snprintf(line, sizeof(line), "Authorization: Bearer %s", token);
    expect(method, path, body, NULL, headers, status, needle);
}

static void remember(const char *token)
{
    assert_true(n_seen < MAX_TOKENS);
    snprintf(seen[n_seen++], sizeof(seen[0]), "%s", token);
}

/*
 * Issues a token as cert (or as the bearer token as_token) with body;
 * asserts 201 and the answer's shape, and copies out the token and its id.
 */
static void issue(const char *cert, const char *as_token, const char *body,
                  const char *want_principal, char token[COFFER_TOKEN_LEN + 1],
                  char id[COFFER_UUID_STR_LEN])
{
    char line[128];
    const char *headers[] = {line, NULL};
    struct coffer_uuid u;
    struct https_reply r;
    json_error_t err;
    json_t *o;
    const char *t;
    const char *i;
    const char *p;
    const char *e;

    snprintf(line, sizeof(line), "Authorization: Bearer %s", as_token != NULL ? as_token : "");
    request("POST", "/v1/orgs/dev/tokens", body, cert, as_token != NULL ? headers : NULL, &r);
    if (r.status != 201) {
        fail_msg("issuing a token: %ld %s", r.status, r.body);
    }
    o = json_loads(r.body, 0, &err);
    assert_non_null(o);
    t = json_string_value(json_object_get(o, "token"));
    i = json_string_value(json_object_get(o, "id"));
    p = json_string_value(json_object_get(o, "principal"));
    e = json_string_value(json_object_get(o, "expires_at"));
    assert_non_null(t);
    assert_non_null(i);
    assert_non_null(p);
    assert_non_null(e);
    assert_true(coffer_token_format_ok(t, strlen(t)));
    assert_int_equal(coffer_uuid_parse(i, &u), COFFER_OK);
    assert_string_equal(p, want_principal);
    assert_int_equal(strlen(e), 20);
    assert_int_equal(e[19], 'Z');
    snprintf(token, COFFER_TOKEN_LEN + 1, "%s", t);
    snprintf(id, COFFER_UUID_STR_LEN, "%s", i);
    remember(t);
    json_decref(o);
}

static long auth_failures(void)
{
    char *v = world_sql_value(&w, "SELECT count(*) FROM coffer.audit_events "
                                  "WHERE action = 'auth_failure'");
    long n = atol(v);

    coffer_free(v);
    return n;
}

/* ---- Server ------------------------------------------------------------------------- */

static void read_log(char *buf, size_t cap)
{
    https_read_log(log_path, buf, cap);
}

static void start_server(void)
{
    assert_int_equal(
        https_server_start(COFFERD_BIN, config, w.h.env.softhsm_conf, log_path, &target, &server),
        0);
}

/* Runs `coffer keys create-token-mac` against this test's token and database. */
static void run_create_token_mac(struct harness_run *res)
{
    const char *argv[] = {COFFER_BIN, "keys", "create-token-mac", NULL};
    char vars[6][PATH_MAX + 160];
    const char *envp[8];

    snprintf(vars[0], sizeof(vars[0]), "COFFER_PKCS11_MODULE=%s", w.h.p11.module);
    snprintf(vars[1], sizeof(vars[1]), "COFFER_TOKEN_URI=%s", w.h.p11.token_uri);
    snprintf(vars[2], sizeof(vars[2]), "COFFER_PIN_SOURCE=%s", w.h.p11.pin_source);
    snprintf(vars[3], sizeof(vars[3]), "COFFER_DATABASE=%s", w.h.db_app);
    snprintf(vars[4], sizeof(vars[4]), "SOFTHSM2_CONF=%s", w.h.env.softhsm_conf);
    snprintf(vars[5], sizeof(vars[5]), "COFFER_LOG=warn");
    for (size_t i = 0; i < 6; i++) {
        envp[i] = vars[i];
    }
    envp[6] = "PATH=/usr/bin:/bin";
    envp[7] = NULL;
    harness_run(argv, envp, res);
}

/* ---- Tests --------------------------------------------------------------------------- */

/*
 * A key under the label that is not what coffer_keys_token_mac_create makes
 * (here an AES key for wrapping) is refused, never used, and blocks a
 * creation; once it is gone the label is free again.
 */
static void test_wrong_key_under_the_label(void **state)
{
    const struct coffer_p11_keyspec spec = {true, false, COFFER_P11_WRAP | COFFER_P11_UNWRAP,
                                            COFFER_TOKEN_MAC_LABEL};
    unsigned char digest[COFFER_TOKEN_DIGEST_LEN];
    struct coffer_p11_session *s = NULL;
    coffer_p11_obj rogue = 0;

    (void)state;
    memset(digest, 0x5a, sizeof(digest));
    assert_int_equal(coffer_keys_token_digest(w.k, "cft_x", 5, digest), COFFER_E_STATE);
    assert_non_null(strstr(coffer_err_detail(), "coffer keys create-token-mac"));
    for (size_t i = 0; i < sizeof(digest); i++) {
        assert_int_equal(digest[i], 0);
    }
    assert_int_equal(coffer_p11_session_get(w.p11, &s), COFFER_OK);
    assert_int_equal(coffer_p11_generate_aes(s, &spec, &rogue), COFFER_OK);
    coffer_p11_session_put(w.p11, &s);
    assert_int_equal(coffer_keys_token_digest(w.k, "cft_x", 5, digest), COFFER_E_INTEGRITY);
    assert_non_null(strstr(coffer_err_detail(), "refused"));
    assert_int_equal(coffer_keys_token_mac_create(w.k, NULL), COFFER_E_EXISTS);
    assert_int_equal(coffer_p11_session_get(w.p11, &s), COFFER_OK);
    coffer_p11_destroy(s, &rogue);
    coffer_p11_session_put(w.p11, &s);
    assert_int_equal(coffer_keys_token_digest(w.k, "cft_x", 5, digest), COFFER_E_STATE);
}

static void test_without_mac_key(void **state)
{
    long before = auth_failures();

    (void)state;
    expect("POST", "/v1/orgs/dev/tokens", "{\"principal\":\"agent/deployer/deployer-1\"}", "admin",
           NULL, 409, "create-token-mac");
    /* A well-formed token cannot be checked without the key: refused like any other. */
    expect_bearer("POST", ACCESS, PURPOSE, "cft_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", 401,
                  "\"error\":\"unauthenticated\"");
    assert_int_equal(auth_failures(), before + 1);
}

static void test_operator_creates_mac_key(void **state)
{
    struct harness_run r;

    (void)state;
    run_create_token_mac(&r);
    if (r.status != 0) {
        fail_msg("coffer keys create-token-mac: %d\n%s", r.status, r.out);
    }
    assert_non_null(strstr(r.out, "token MAC key " COFFER_TOKEN_MAC_LABEL " created"));
    assert_non_null(strstr(r.out, "CKA_SENSITIVE=TRUE CKA_EXTRACTABLE=FALSE "
                                  "CKA_NEVER_EXTRACTABLE=TRUE"));
    /* A second run refuses, and leaves the first key alone. */
    run_create_token_mac(&r);
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.out, "already_exists"));
    assert_int_equal(coffer_keys_token_mac_create(w.k, NULL), COFFER_E_EXISTS);
}

static void test_create_and_use(void **state)
{
    const char *forbidden_put = "{\"type\":\"api_key\",\"tier\":\"medium\",\"keys\":{\"api_key\":"
                                "\"x\"}}";

    (void)state;
    expect("PUT", "/v1/orgs/dev/projects/demo/credentials/stripe",
           "{\"type\":\"api_key\",\"tier\":\"medium\",\"keys\":{\"api_key\":\"" SECRET "\"}}",
           "admin", NULL, 201, "\"version\":1");
    issue("admin", NULL,
          "{\"principal\":\"agent/deployer/deployer-1\",\"description\":\"ci runner\"}",
          "agent/deployer/deployer-1", agent_token, agent_token_id);
    expect_bearer("POST", ACCESS, PURPOSE, agent_token, 200, SECRET);
    /* The event names the agent, without a trust domain: it came by token. */
    assert_true(world_sql_is(&w,
                             "SELECT concat_ws('|', reason, principal_kind, "
                             "coalesce(trust_domain, 'none'), org, agent_type, instance) "
                             "FROM coffer.audit_events WHERE action = 'access' "
                             "ORDER BY id DESC LIMIT 1",
                             "granted|agent|none|dev|deployer|deployer-1"));
    /* An agent's token on an admin route. */
    expect_bearer("PUT", "/v1/orgs/dev/projects/demo/credentials/stripe", forbidden_put,
                  agent_token, 403, "permission_denied");
    /* The row: the principal, the issuer, 24 hours by default; no token, only a digest. */
    assert_true(world_sql_is(&w,
                             "SELECT concat_ws('|', principal_kind, agent_type, instance, "
                             "created_by, description, mac_mech, mac_key, "
                             "expires_at - created_at, octet_length(digest)) "
                             "FROM coffer.tokens ORDER BY created_at DESC LIMIT 1",
                             "agent|deployer|deployer-1|spiffe://coffer.dev/org/dev/admin/admin|"
                             "ci runner|hmac-sha256|coffer-token-mac-v1|1 day|32"));
}

static void test_create_event(void **state)
{
    char sql[256];
    char want[160];

    (void)state;
    snprintf(sql, sizeof(sql),
             "SELECT concat_ws('|', allowed, reason, principal_kind, admin, target_org, detail) "
             "FROM coffer.audit_events WHERE action = 'token_create' ORDER BY id DESC LIMIT 1");
    snprintf(want, sizeof(want),
             "t|ok|admin|admin|dev|token %s for agent/deployer/deployer-1, "
             "expires in 1d",
             agent_token_id);
    assert_true(world_sql_is(&w, sql, want));
}

static void test_certificate_and_token(void **state)
{
    char line[128];
    const char *headers[] = {line, NULL};

    (void)state;
    snprintf(line, sizeof(line), "Authorization: Bearer %s", agent_token);
    /* The same principal both ways. */
    expect("POST", ACCESS, PURPOSE, "agent", headers, 200, SECRET);
    /* Another agent's certificate with the deployer's token. */
    expect("POST", ACCESS, PURPOSE, "agent2", headers, 401, "\"error\":\"unauthenticated\"");
    assert_true(world_sql_is(&w,
                             "SELECT detail FROM coffer.audit_events WHERE action = "
                             "'auth_failure' ORDER BY id DESC LIMIT 1",
                             "the client certificate and the bearer token name different "
                             "principals"));
    /* The admin's certificate with an agent's token. */
    expect("POST", "/v1/orgs/dev/tokens", "{\"principal\":\"admin/x\"}", "admin", headers, 401,
           "unauthenticated");
}

static void test_digest_is_hmac(void **state)
{
    unsigned char digest[COFFER_TOKEN_DIGEST_LEN];
    char hex[2 * COFFER_TOKEN_DIGEST_LEN + 1];
    char sql[256];
    char *stored;

    (void)state;
    assert_int_equal(coffer_keys_token_digest(w.k, agent_token, strlen(agent_token), digest),
                     COFFER_OK);
    coffer_hex(digest, sizeof(digest), hex);
    snprintf(sql, sizeof(sql), "SELECT encode(digest, 'hex') FROM coffer.tokens WHERE id = '%s'",
             agent_token_id);
    stored = world_sql_value(&w, sql);
    assert_string_equal(stored, hex);
    /* Another token has another digest: the HMAC covers every character. */
    assert_int_equal(coffer_keys_token_digest(w.k, agent_token, strlen(agent_token) - 1, digest),
                     COFFER_OK);
    coffer_hex(digest, sizeof(digest), hex);
    assert_string_not_equal(stored, hex);
    coffer_free(stored);
    assert_int_equal(coffer_keys_token_digest(w.k, NULL, 4, digest), COFFER_E_INVALID);
}

static void test_revoke(void **state)
{
    char path[160];
    char body[160];
    long before;

    (void)state;
    snprintf(path, sizeof(path), "/v1/orgs/dev/tokens/%s/revoke", agent_token_id);
    expect("POST", path, "{}", "admin", NULL, 400, "'reason' is required");
    expect("POST", path, "{\"reason\":\"laptop lost\"}", "admin", NULL, 200, "\"revoked\":true");
    before = auth_failures();
    expect_bearer("POST", ACCESS, PURPOSE, agent_token, 401, "unauthenticated");
    assert_int_equal(auth_failures(), before + 1);
    /* Refused before its body is read: a malformed body changes nothing. */
    expect_bearer("POST", ACCESS, "{\"purpose\":", agent_token, 401, "unauthenticated");
    expect_bearer("POST", ACCESS, "{\"unknown\":1}", agent_token, 401, "unauthenticated");
    assert_int_equal(auth_failures(), before + 3);
    snprintf(body, sizeof(body), "bearer token %s revoked", agent_token_id);
    assert_true(world_sql_is(&w,
                             "SELECT detail FROM coffer.audit_events WHERE action = "
                             "'auth_failure' ORDER BY id DESC LIMIT 1",
                             body));
    /* Once. */
    expect("POST", path, "{\"reason\":\"again\"}", "admin", NULL, 409, "revoked already");
    expect("POST", "/v1/orgs/dev/tokens/00000000-0000-4000-8000-000000000000/revoke",
           "{\"reason\":\"x\"}", "admin", NULL, 404, "not_found");
    expect("POST", "/v1/orgs/dev/tokens/not-a-uuid/revoke", "{\"reason\":\"x\"}", "admin", NULL,
           400, "UUID");
    /* The event, and the row keeps the reason; the database refuses an undo. */
    snprintf(body, sizeof(body), "token %s for agent/deployer/deployer-1: laptop lost",
             agent_token_id);
    assert_true(world_sql_is(&w,
                             "SELECT detail FROM coffer.audit_events WHERE action = "
                             "'token_revoke' ORDER BY id DESC LIMIT 1",
                             body));
    assert_true(world_sql_is(&w,
                             "SELECT count(*) FROM coffer.tokens WHERE revoked_at IS NOT NULL "
                             "AND reason = 'laptop lost'",
                             "1"));
    {
        PGresult *res = PQexec(w.owner, "UPDATE coffer.tokens SET revoked_at = NULL, reason = "
                                        "NULL WHERE revoked_at IS NOT NULL");

        assert_int_equal(PQresultStatus(res), PGRES_FATAL_ERROR);
        PQclear(res);
    }
}

static void test_expired_and_lifetimes(void **state)
{
    char token[COFFER_TOKEN_LEN + 1];
    char id[COFFER_UUID_STR_LEN];
    char detail[96];

    (void)state;
    issue("admin", NULL, "{\"principal\":\"agent/deployer/deployer-1\",\"ttl\":\"1s\"}",
          "agent/deployer/deployer-1", token, id);
    sleep(2);
    expect_bearer("POST", ACCESS, PURPOSE, token, 401, "unauthenticated");
    snprintf(detail, sizeof(detail), "bearer token %s expired", id);
    assert_true(world_sql_is(&w,
                             "SELECT detail FROM coffer.audit_events WHERE action = "
                             "'auth_failure' ORDER BY id DESC LIMIT 1",
                             detail));
    /* The longest lifetime is 30 days. */
    issue("admin", NULL, "{\"principal\":\"agent/deployer/deployer-1\",\"ttl\":\"30d\"}",
          "agent/deployer/deployer-1", token, id);
    expect("POST", "/v1/orgs/dev/tokens",
           "{\"principal\":\"agent/deployer/deployer-1\",\"ttl\":\"31d\"}", "admin", NULL, 400,
           "at most 30 days");
    expect("POST", "/v1/orgs/dev/tokens",
           "{\"principal\":\"agent/deployer/deployer-1\",\"ttl\":\"never\"}", "admin", NULL, 400,
           "'ttl'");
    expect("POST", "/v1/orgs/dev/tokens", "{\"principal\":\"agent/deployer\"}", "admin", NULL, 400,
           "agent/<type>/<instance>");
    expect("POST", "/v1/orgs/dev/tokens", "{\"principal\":\"agent/deployer/x\",\"extra\":1}",
           "admin", NULL, 400, "unknown field 'extra'");
    expect("POST", "/v1/orgs/dev/tokens", "{}", "admin", NULL, 400, "'principal' is required");
    /* The database holds the same limit. */
    {
        PGresult *res = PQexec(w.owner, "UPDATE coffer.tokens SET expires_at = created_at + "
                                        "interval '31 days' WHERE revoked_at IS NULL");

        assert_int_equal(PQresultStatus(res), PGRES_FATAL_ERROR);
        PQclear(res);
    }
}

static void test_malformed_headers(void **state)
{
    char t[COFFER_TOKEN_LEN + 1];
    char id[COFFER_UUID_STR_LEN];
    char lines[12][160];
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    char unknown[44];
    unsigned char raw[32];
    long before;
    size_t n = 0;

    (void)state;
    issue("admin", NULL, "{\"principal\":\"agent/deployer/deployer-1\"}",
          "agent/deployer/deployer-1", t, id);
    expect_bearer("POST", ACCESS, PURPOSE, t, 200, SECRET);
    snprintf(lines[n++], sizeof(lines[0]), "Authorization: bearer %s", t);
    snprintf(lines[n++], sizeof(lines[0]), "Authorization: Bearer  %s", t);
    snprintf(lines[n++], sizeof(lines[0]), "Authorization: Bearer cfx_%s", t + 4);
    snprintf(lines[n++], sizeof(lines[0]), "Authorization: Bearer %.46s", t);
    snprintf(lines[n++], sizeof(lines[0]), "Authorization: Bearer %sA", t);
    snprintf(lines[n++], sizeof(lines[0]), "Authorization: Bearer %.42s+", t);
    snprintf(lines[n++], sizeof(lines[0]), "Authorization: Basic %s", t);
    snprintf(lines[n++], sizeof(lines[0]), "Authorization: %s", t);
    /* curl sends an empty header for "Name;" ("Name:" would drop it). */
    snprintf(lines[n++], sizeof(lines[0]), "Authorization;");
    /* A valid-looking token nobody issued: 42 random characters and a canonical last one. */
    assert_int_equal(RAND_bytes(raw, sizeof(raw)), 1);
    for (size_t i = 0; i < 42; i++) {
        unknown[i] = alphabet[raw[i % 32] & 63];
    }
    unknown[42] = alphabet[(raw[7] & 15) << 2];
    unknown[43] = '\0';
    snprintf(lines[n++], sizeof(lines[0]), "Authorization: Bearer cft_%s", unknown);
    assert_true(
        coffer_token_format_ok(lines[n - 1] + strlen("Authorization: Bearer "), COFFER_TOKEN_LEN));
    before = auth_failures();
    for (size_t i = 0; i < n; i++) {
        const char *headers[] = {lines[i], NULL};
        long was = auth_failures();

        expect("POST", ACCESS, PURPOSE, NULL, headers, 401, "\"error\":\"unauthenticated\"");
        /* One event per refusal, whose detail never holds the header. */
        assert_int_equal(auth_failures(), was + 1);
        assert_true(world_sql_is(&w,
                                 "SELECT count(*) FROM coffer.audit_events WHERE action = "
                                 "'auth_failure' AND (detail LIKE '%cft\\_%' OR detail LIKE "
                                 "'%Bearer%')",
                                 "0"));
    }
    assert_int_equal(auth_failures(), before + (long)n);
    assert_true(world_sql_is(&w,
                             "SELECT detail FROM coffer.audit_events WHERE action = "
                             "'auth_failure' ORDER BY id DESC LIMIT 1",
                             "unknown bearer token"));
    assert_true(world_sql_is(&w,
                             "SELECT count(*) FROM coffer.audit_events WHERE action = "
                             "'auth_failure' AND detail LIKE 'malformed Authorization header%'",
                             "9"));
    /* Two Authorization headers, even both valid, and no credentials at all. */
    {
        char one[160];
        const char *two[] = {one, one, NULL};

        snprintf(one, sizeof(one), "Authorization: Bearer %s", t);
        expect("POST", ACCESS, PURPOSE, NULL, two, 401, "unauthenticated");
        assert_true(world_sql_is(&w,
                                 "SELECT detail FROM coffer.audit_events WHERE action = "
                                 "'auth_failure' ORDER BY id DESC LIMIT 1",
                                 "more than one Authorization header"));
    }
    expect("POST", ACCESS, PURPOSE, NULL, NULL, 401, "unauthenticated");
    /* The token still works: nothing above harmed it. */
    expect_bearer("POST", ACCESS, PURPOSE, t, 200, SECRET);
}

/* Issues a token of org "other" in process, as an admin of that org. */
static void issue_other_token(void)
{
    struct coffer_principal admin;
    struct coffer_op_meta m;
    struct coffer_op_token_create t;
    struct coffer_secret_view v;

    memset(&admin, 0, sizeof(admin));
    admin.kind = COFFER_PRINCIPAL_ADMIN;
    snprintf(admin.trust_domain, sizeof(admin.trust_domain), "%s", COFFER_DEV_TRUST_DOMAIN);
    snprintf(admin.org, sizeof(admin.org), "other");
    snprintf(admin.admin, sizeof(admin.admin), "boss");
    m.who = &admin;
    m.request_id = "tokens-test-other";
    m.client_addr = NULL;
    memset(&t, 0, sizeof(t));
    t.org = "other";
    t.principal = "agent/deployer/deployer-1";
    assert_int_equal(coffer_op_token_create(&ops, &m, &t), COFFER_OK);
    v = coffer_secret_view(t.token);
    assert_int_equal(v.len, COFFER_TOKEN_LEN);
    memcpy(other_token, v.data, v.len);
    other_token[v.len] = '\0';
    coffer_secret_free(&t.token);
    coffer_uuid_format(&t.id, other_token_id);
    remember(other_token);
    /* Another org's admin cannot issue in dev. */
    t.org = "dev";
    assert_int_equal(coffer_op_token_create(&ops, &m, &t), COFFER_E_NOT_FOUND);
    assert_null(t.token);
}

static void test_other_org(void **state)
{
    char path[160];
    char token[COFFER_TOKEN_LEN + 1];
    char id[COFFER_UUID_STR_LEN];

    (void)state;
    issue_other_token();
    /* The other org's agent reaches its own credential with its token... */
    expect_bearer("POST", OTHER_ACCESS, PURPOSE, other_token, 200, OTHER_SECRET);
    /* ...and not dev's, though the names match dev's agent and grant. */
    expect_bearer("POST", ACCESS, PURPOSE, other_token, 403, "\"error\":\"permission_denied\"");
    assert_true(world_sql_is(&w,
                             "SELECT concat_ws('|', reason, org, target_org) FROM "
                             "coffer.audit_events WHERE action = 'access' ORDER BY id DESC "
                             "LIMIT 1",
                             "not_found|other|dev"));
    /* A dev agent token cannot reach the other org's credential. */
    issue("admin", NULL, "{\"principal\":\"agent/deployer/deployer-1\"}",
          "agent/deployer/deployer-1", token, id);
    expect_bearer("POST", OTHER_ACCESS, PURPOSE, token, 403, "\"error\":\"permission_denied\"");
    /* The dev admin can neither issue in nor revoke for another org. */
    expect("POST", "/v1/orgs/other/tokens", "{\"principal\":\"agent/deployer/deployer-1\"}",
           "admin", NULL, 404, "not_found");
    snprintf(path, sizeof(path), "/v1/orgs/other/tokens/%s/revoke", other_token_id);
    expect("POST", path, "{\"reason\":\"x\"}", "admin", NULL, 404, "not_found");
    snprintf(path, sizeof(path), "/v1/orgs/dev/tokens/%s/revoke", other_token_id);
    expect("POST", path, "{\"reason\":\"x\"}", "admin", NULL, 404, "not_found");
    expect_bearer("POST", OTHER_ACCESS, PURPOSE, other_token, 200, OTHER_SECRET);
}

static void test_admin_token(void **state)
{
    char admin_token[COFFER_TOKEN_LEN + 1];
    char admin_id[COFFER_UUID_STR_LEN];
    char token[COFFER_TOKEN_LEN + 1];
    char id[COFFER_UUID_STR_LEN];
    char sql[256];

    (void)state;
    issue("admin", NULL, "{\"principal\":\"admin/ops\",\"ttl\":\"2h\"}", "admin/ops", admin_token,
          admin_id);
    /* An admin authenticated by its token issues a token in turn. */
    issue(NULL, admin_token, "{\"principal\":\"agent/analyst/analyst-1\"}",
          "agent/analyst/analyst-1", token, id);
    snprintf(sql, sizeof(sql), "SELECT created_by FROM coffer.tokens WHERE id = '%s'", id);
    assert_true(world_sql_is(&w, sql, "admin ops of org dev"));
    /* An admin token is no agent: the access route refuses it. */
    expect_bearer("POST", ACCESS, PURPOSE, admin_token, 403, "permission_denied");
    /* The analyst's token authenticates, and the analyst holds no grant. */
    expect_bearer("POST", ACCESS, PURPOSE, token, 403, "permission_denied");
    assert_true(world_sql_is(&w,
                             "SELECT concat_ws('|', reason, agent_type, instance) FROM "
                             "coffer.audit_events WHERE action = 'access' ORDER BY id DESC "
                             "LIMIT 1",
                             "no_grant|analyst|analyst-1"));
}

static void test_no_token_stored_or_logged(void **state)
{
    static char buf[1 << 20];
    char sql[1024];

    (void)state;
    assert_true(n_seen >= 6);
    read_log(buf, sizeof(buf));
    assert_true(strlen(buf) > 0);
    assert_null(strstr(buf, "Bearer "));
    assert_null(strstr(buf, SECRET));
    for (size_t i = 0; i < n_seen; i++) {
        /* The token, and its random part alone, in no table of the coffer schema. */
        snprintf(sql, sizeof(sql),
                 "SELECT count(*) FROM information_schema.tables t WHERE t.table_schema = "
                 "'coffer' AND t.table_type = 'BASE TABLE' AND "
                 "(query_to_xml(format('SELECT * FROM %%I.%%I', t.table_schema, t.table_name), "
                 "true, false, '')::text LIKE '%%%s%%')",
                 seen[i] + COFFER_TOKEN_PREFIX_LEN);
        assert_true(world_sql_is(&w, sql, "0"));
        snprintf(sql, sizeof(sql),
                 "SELECT count(*) FROM coffer.audit_events e WHERE e::text LIKE '%%%s%%'",
                 seen[i] + COFFER_TOKEN_PREFIX_LEN);
        assert_true(world_sql_is(&w, sql, "0"));
        assert_null(strstr(buf, seen[i]));
        assert_null(strstr(buf, seen[i] + COFFER_TOKEN_PREFIX_LEN));
    }
    /* The scan itself can find what it looks for. */
    snprintf(sql, sizeof(sql),
             "SELECT count(*) > 0 FROM information_schema.tables t WHERE t.table_schema = "
             "'coffer' AND t.table_type = 'BASE TABLE' AND "
             "(query_to_xml(format('SELECT * FROM %%I.%%I', t.table_schema, t.table_name), "
             "true, false, '')::text LIKE '%%coffer-token-mac-v1%%')");
    assert_true(world_sql_is(&w, sql, "t"));
    /* The server logged which token each request used, by id. */
    assert_non_null(strstr(buf, agent_token_id));
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

/* ---- Set-up ------------------------------------------------------------------------ */

static void write_config(unsigned short port)
{
    assert_int_equal(https_write_config(config, port, &tls, &w.h, "workers: 2\nlog: info\n"), 0);
}

static int apply_policy(const char *text)
{
    return world_apply_policy(&w, text);
}

/* The other org's credential, stored in process as that org's admin. */
static int put_other_secret(void)
{
    struct coffer_principal admin;
    struct coffer_op_meta m;
    struct coffer_op_put p;
    struct coffer_keyset *ks = NULL;
    enum coffer_err r;

    memset(&admin, 0, sizeof(admin));
    admin.kind = COFFER_PRINCIPAL_ADMIN;
    snprintf(admin.trust_domain, sizeof(admin.trust_domain), "%s", COFFER_DEV_TRUST_DOMAIN);
    snprintf(admin.org, sizeof(admin.org), "other");
    snprintf(admin.admin, sizeof(admin.admin), "boss");
    m.who = &admin;
    m.request_id = "tokens-test-put";
    m.client_addr = NULL;
    memset(&p, 0, sizeof(p));
    p.org = "other";
    p.project = "demo";
    p.name = "stripe";
    p.type = "api_key";
    p.tier = "medium";
    if (coffer_keyset_new(&ks) != COFFER_OK ||
        coffer_keyset_add(ks, "api_key", OTHER_SECRET, strlen(OTHER_SECRET)) != COFFER_OK) {
        coffer_keyset_free(&ks);
        return -1;
    }
    p.keys = ks;
    r = coffer_op_put(&ops, &m, &p);
    coffer_keyset_free(&ks);
    if (r != COFFER_OK) {
        fprintf(stderr, "put in org other: %s\n", coffer_err_detail());
        return -1;
    }
    return 0;
}

static int setup(void **state)
{
    struct coffer_project demo;
    struct coffer_org other;
    unsigned short port;

    (void)state;
    ops.st = w.st;
    ops.k = w.k;
    world_add_project(&w, "demo", NULL);
    if (coffer_keys_org_create(w.k, w.st, "other", &other, NULL) != COFFER_OK ||
        coffer_store_project_insert(w.st, &other.id, "demo", &demo) != COFFER_OK) {
        fprintf(stderr, "setup: %s\n", coffer_err_detail());
        return -1;
    }
    if (apply_policy(dev_policy) != 0 || apply_policy(other_policy) != 0 ||
        put_other_secret() != 0) {
        return -1;
    }
    if (mkdtemp(dir) == NULL || coffer_dev_tls_provision(dir, &tls) != COFFER_OK) {
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
        cmocka_unit_test(test_wrong_key_under_the_label),
        cmocka_unit_test(test_without_mac_key),
        cmocka_unit_test(test_operator_creates_mac_key),
        cmocka_unit_test(test_create_and_use),
        cmocka_unit_test(test_create_event),
        cmocka_unit_test(test_certificate_and_token),
        cmocka_unit_test(test_digest_is_hmac),
        cmocka_unit_test(test_revoke),
        cmocka_unit_test(test_expired_and_lifetimes),
        cmocka_unit_test(test_malformed_headers),
        cmocka_unit_test(test_other_org),
        cmocka_unit_test(test_admin_token),
        cmocka_unit_test(test_no_token_stored_or_logged),
        cmocka_unit_test(test_sigterm_stops_cleanly),
    };
    int rc;

    curl_global_init(CURL_GLOBAL_DEFAULT);
    world_open("tokens", "dev", &w);
    rc = cmocka_run_group_tests(tests, setup, teardown);
    world_close(&w);
    curl_global_cleanup();
    return rc;
}

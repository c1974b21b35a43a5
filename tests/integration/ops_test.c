/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The operations behind the API against the real token and database, with
 * a policy applied first:
 *
 *   - audit events: every field checked before it is bound (each bad field
 *     refused, nothing written), written inside the caller's transaction,
 *     and coffer_app able to append only;
 *   - a credential write joining the caller's transaction;
 *   - access: granted returns the values and writes one allowed event with
 *     the purpose; every denial reason reachable through an access writes
 *     exactly one denied event with that reason and returns no keys; a
 *     tampered row is audited as integrity_error and returns nothing; an
 *     event that cannot be written fails the access and returns nothing;
 *   - put: every type's required keys, lifetimes (default, maximum, never),
 *     grants checked against the policy in force, another org's admin and
 *     agents refused, the event written; nothing written when refused;
 *   - per-key expiry: the rules of put (keys stored, once each, in the
 *     future, within the credential's lifetime; nothing written when one
 *     is broken), a key past its expiry left out and named on the single
 *     and the batched access and in the event, every key past it denied as
 *     expired, and the metadata showing each key's expiry;
 *   - put, many at once: the puts the batch takes written in one
 *     transaction, each with the single path's event, lifetime and
 *     description; the ones it leaves (a credential twice, no such project,
 *     not an admin, grants, a phase not in the policy) untouched and
 *     answered alone as before; a revoked credential, a removed project or
 *     an event that cannot be written leaving the whole batch unwritten;
 *   - revoke and phase: the effect and its event together;
 *   - no audit row holds any value stored.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "world.h"

#include "coffer/arena.h"
#include "coffer/audit.h"
#include "coffer/mem.h"
#include "coffer/ops.h"
#include "coffer/policy.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TD "example.org"
#define CANARY "canary-7f3a"

static struct world w;
static struct coffer_ops ops;
static struct coffer_org other;
static unsigned rid_seq;
static char last_put[16]; /* request id of the last put_simple or put_lifetime */

static const char acme_policy[] = "version: 1\n"
                                  "org: acme\n"
                                  "agent_types:\n"
                                  "  builder:\n"
                                  "  deployer:\n"
                                  "  outsider:\n"
                                  "projects:\n"
                                  "  proj:\n"
                                  "    phases: [build, staging, production]\n"
                                  "    initial_phase: build\n"
                                  "    members: [builder, deployer]\n"
                                  "    credentials:\n"
                                  "      registry:\n"
                                  "        grants:\n"
                                  "          - agent_type: builder\n"
                                  "            phases: [build, staging]\n"
                                  "        purposes: [\"push image *\"]\n"
                                  "      prod-db:\n"
                                  "        grants:\n"
                                  "          - agent_type: deployer\n"
                                  "            phases: [production]\n"
                                  "      vault-root:\n"
                                  "        grants:\n"
                                  "          - agent_type: builder\n"
                                  "      integrity:\n"
                                  "        grants:\n"
                                  "          - agent_type: builder\n"
                                  "      short:\n"
                                  "        grants:\n"
                                  "          - agent_type: builder\n"
                                  "      rev-key:\n"
                                  "        grants:\n"
                                  "          - agent_type: builder\n";

static const char other_policy[] = "version: 1\n"
                                   "org: other\n"
                                   "agent_types:\n"
                                   "  builder:\n"
                                   "projects:\n"
                                   "  proj:\n"
                                   "    phases: [build]\n"
                                   "    members: [builder]\n"
                                   "    credentials:\n"
                                   "      registry:\n"
                                   "        grants:\n"
                                   "          - agent_type: builder\n";

/* ---- Helpers ------------------------------------------------------------------------- */

static struct coffer_principal agent(const char *org, const char *type, const char *instance)
{
    struct coffer_principal p;

    memset(&p, 0, sizeof(p));
    p.kind = COFFER_PRINCIPAL_AGENT;
    snprintf(p.trust_domain, sizeof(p.trust_domain), "%s", TD);
    snprintf(p.org, sizeof(p.org), "%s", org);
    snprintf(p.agent_type, sizeof(p.agent_type), "%s", type);
    snprintf(p.instance, sizeof(p.instance), "%s", instance);
    return p;
}

static struct coffer_principal admin(const char *org, const char *name)
{
    struct coffer_principal p;

    memset(&p, 0, sizeof(p));
    p.kind = COFFER_PRINCIPAL_ADMIN;
    snprintf(p.trust_domain, sizeof(p.trust_domain), "%s", TD);
    snprintf(p.org, sizeof(p.org), "%s", org);
    snprintf(p.admin, sizeof(p.admin), "%s", name);
    return p;
}

/* A fresh request id in out (16 bytes). */
static const char *rid(char out[16])
{
    snprintf(out, 16, "req-%u", ++rid_seq);
    return out;
}

/* The number a one-value query returns; the query is formatted like printf. */
static long count(const char *fmt, ...) COFFER_PRINTF(1, 2);

static long count(const char *fmt, ...)
{
    char sql[512];
    va_list ap;
    char *v;
    long n;

    va_start(ap, fmt);
    vsnprintf(sql, sizeof(sql), fmt, ap);
    va_end(ap);
    v = world_sql_value(&w, sql);
    n = atol(v);
    coffer_free(v);
    return n;
}

static long events_of(const char *request_id)
{
    return count("SELECT count(*) FROM coffer.audit_events WHERE request_id = '%s'", request_id);
}

/*
 * Asserts that request_id wrote exactly one event and that it reads
 * "action|allowed|reason|purpose_unexpected|purpose|version|phase|principal_kind".
 */
static void assert_event(const char *request_id, const char *expected)
{
    char sql[512];
    char *v;

    assert_int_equal(events_of(request_id), 1);
    snprintf(sql, sizeof(sql),
             "SELECT concat_ws('|', action, allowed::text, reason, purpose_unexpected::text, "
             "coalesce(purpose, '-'), coalesce(version::text, '-'), coalesce(phase, '-'), "
             "coalesce(principal_kind, '-')) FROM coffer.audit_events WHERE request_id = '%s'",
             request_id);
    v = world_sql_value(&w, sql);
    if (strcmp(v, expected) != 0) {
        fprintf(stderr, "event of %s: '%s', expected '%s'\n", request_id, v, expected);
    }
    assert_string_equal(v, expected);
    coffer_free(v);
}

static void assert_detail(const char *request_id, const char *expected)
{
    char sql[256];

    snprintf(sql, sizeof(sql),
             "SELECT coalesce(detail, '-') FROM coffer.audit_events WHERE request_id = '%s'",
             request_id);
    assert_true(world_sql_is(&w, sql, expected));
}

static void apply(const char *yaml)
{
    struct coffer_policy *p = NULL;
    struct coffer_policy_diags d = {0};
    struct coffer_arena *a = NULL;
    struct coffer_store_policy_result res;

    assert_int_equal(coffer_policy_new(&p), COFFER_OK);
    if (coffer_policy_add_buffer(p, "test.yaml", yaml, strlen(yaml), &d) != COFFER_OK ||
        coffer_policy_finish(p, &d) != COFFER_OK) {
        fail_msg("policy refused: %s", d.n > 0 ? d.lines[0] : "?");
    }
    assert_int_equal(coffer_arena_new(0, &a), COFFER_OK);
    if (coffer_store_policy_apply(w.st, &p->orgs[0], "ops@test", a, &res) != COFFER_OK) {
        fail_msg("apply: %s", coffer_err_detail());
    }
    coffer_arena_free(&a);
    coffer_policy_diags_cleanup(&d);
    coffer_policy_free(&p);
}

static struct coffer_keyset *keyset(size_t n, const char *const *names, const char *const *values)
{
    struct coffer_keyset *ks = NULL;

    assert_int_equal(coffer_keyset_new(&ks), COFFER_OK);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(coffer_keyset_add(ks, names[i], values[i], strlen(values[i])), COFFER_OK);
    }
    return ks;
}

static void put_init(struct coffer_op_put *p, const char *org, const char *name, const char *type,
                     const char *tier, const struct coffer_keyset *ks)
{
    memset(p, 0, sizeof(*p));
    p->org = org;
    p->project = "proj";
    p->name = name;
    p->type = type;
    p->tier = tier;
    p->keys = ks;
}

static enum coffer_err put_as(const struct coffer_principal *who, struct coffer_op_put *p,
                              const char *request_id)
{
    struct coffer_op_meta m = {.who = who, .request_id = request_id, .client_addr = "[::1]:5001"};

    return coffer_op_put(&ops, &m, p);
}

/* Stores an api_key credential in acme/proj with value CANARY "-" name; asserts success. */
static uint32_t put_simple(const char *name, const char *tier, const struct coffer_policy_grant *g,
                           size_t n_grants, const char *expire_on_phase_end, int64_t ttl_s)
{
    struct coffer_principal adm = admin("acme", "alice");
    static const char *const names[] = {"api_key"};
    char value[96];
    const char *values[] = {value};
    struct coffer_keyset *ks;
    struct coffer_op_put p;
    char r[16];

    snprintf(value, sizeof(value), "%s-%s", CANARY, name);
    ks = keyset(1, names, values);
    put_init(&p, "acme", name, "api_key", tier, ks);
    p.grants = g;
    p.n_grants = n_grants;
    p.expire_on_phase_end = expire_on_phase_end;
    p.ttl_s = ttl_s;
    if (put_as(&adm, &p, rid(r)) != COFFER_OK) {
        fail_msg("put %s: %s", name, coffer_err_detail());
    }
    snprintf(last_put, sizeof(last_put), "%s", r);
    coffer_keyset_free(&ks);
    return p.version;
}

static enum coffer_err access_as(const struct coffer_principal *who, const char *org,
                                 const char *name, const char *purpose, const char *request_id,
                                 struct coffer_op_access *a)
{
    struct coffer_op_meta m = {.who = who, .request_id = request_id, .client_addr = "10.0.0.7:443"};

    memset(a, 0, sizeof(*a));
    a->org = org;
    a->project = "proj";
    a->name = name;
    a->purpose = purpose;
    a->purpose_len = purpose != NULL ? strlen(purpose) : 0;
    return coffer_op_access(&ops, &m, a);
}

/* An access that must be denied with reason, leaving one denied event and no keys. */
static void expect_denied(const struct coffer_principal *who, const char *org, const char *name,
                          const char *purpose, enum coffer_authz_reason reason, const char *event)
{
    struct coffer_op_access a;
    char r[16];

    assert_int_equal(access_as(who, org, name, purpose, rid(r), &a), COFFER_OK);
    assert_false(a.decision.allow);
    assert_int_equal(a.decision.reason, reason);
    assert_null(a.keys);
    assert_int_equal(a.version, 0);
    assert_event(r, event);
}

static void move_to(const char *phase, const char *request_id,
                    struct coffer_store_phase_result *res, struct coffer_arena *a)
{
    struct coffer_principal adm = admin("acme", "alice");
    struct coffer_op_meta m = {.who = &adm, .request_id = request_id};

    if (coffer_op_phase(&ops, &m, "acme", "proj", phase, a, res) != COFFER_OK) {
        fail_msg("phase %s: %s", phase, coffer_err_detail());
    }
}

/* ---- Audit events ------------------------------------------------------------------- */

static enum coffer_err insert(const struct coffer_audit_event *e, int64_t *id)
{
    return coffer_store_audit_insert(w.st, e, id);
}

static struct coffer_audit_event base_event(const char *request_id)
{
    struct coffer_audit_event e;

    memset(&e, 0, sizeof(e));
    e.action = COFFER_AUDIT_METADATA;
    e.allowed = true;
    e.reason = "ok";
    e.request_id = request_id;
    return e;
}

static void test_audit_insert_fields(void **state)
{
    struct coffer_principal ag = agent("acme", "builder", "b-1");
    struct coffer_audit_event e;
    const char purpose[] = "deploy release 42 and more";
    char sql[512];
    char r[16];
    int64_t id1 = 0;
    int64_t id2 = 0;

    (void)state;
    e = base_event(rid(r));
    assert_int_equal(insert(&e, &id1), COFFER_OK);
    assert_true(id1 > 0);
    assert_event(r, "metadata|true|ok|false|-|-|-|-");

    e = base_event(rid(r));
    e.action = COFFER_AUDIT_ACCESS;
    e.reason = "granted";
    e.purpose_unexpected = true;
    e.who = &ag;
    e.org = "acme";
    e.project = "proj";
    e.credential = "registry";
    e.version = 3;
    e.phase = "build";
    /* Bound by length: only "deploy release 42" is the purpose. */
    e.purpose = purpose;
    e.purpose_len = strlen("deploy release 42");
    e.detail = "a detail";
    e.client_addr = "192.0.2.1:40000";
    assert_int_equal(insert(&e, &id2), COFFER_OK);
    assert_true(id2 > id1);
    assert_event(r, "access|true|granted|true|deploy release 42|3|build|agent");
    snprintf(sql, sizeof(sql),
             "SELECT concat_ws('|', trust_domain, org, agent_type, instance, coalesce(admin, '-'), "
             "target_org, project, credential, detail, client_addr) FROM coffer.audit_events "
             "WHERE request_id = '%s'",
             r);
    assert_true(world_sql_is(&w, sql,
                             TD "|acme|builder|b-1|-|acme|proj|registry|a detail|192.0.2.1:40000"));
}

static void test_audit_insert_refuses_bad_fields(void **state)
{
    struct coffer_principal ag = agent("acme", "builder", "b-1");
    struct coffer_principal bad;
    struct coffer_audit_event e;
    char long_text[1100];
    char r[16];
    int64_t id = 0;

    (void)state;
    memset(long_text, 'x', sizeof(long_text) - 1);
    long_text[sizeof(long_text) - 1] = '\0';
    rid(r);

#define REFUSED(mutation)                                                                          \
    do {                                                                                           \
        e = base_event(r);                                                                         \
        mutation;                                                                                  \
        id = 7;                                                                                    \
        assert_int_equal(insert(&e, &id), COFFER_E_INVALID);                                       \
        assert_int_equal(id, 0);                                                                   \
    } while (0)

    REFUSED(e.action = "delete");
    REFUSED(e.action = NULL);
    REFUSED(e.reason = "Not-A-Code");
    REFUSED(e.reason = "");
    REFUSED(e.reason = NULL);
    REFUSED(e.request_id = "has space");
    REFUSED(e.request_id = long_text + sizeof(long_text) - 66);
    REFUSED(e.request_id = NULL);
    REFUSED(e.client_addr = "1.2.3.4:5\n");
    REFUSED(e.org = "Acme");
    REFUSED(e.project = "../proj");
    REFUSED(e.credential = "");
    REFUSED(e.phase = "build\n");
    REFUSED(e.version = (uint32_t)INT32_MAX + 1u);
    REFUSED((e.purpose = "line\nbreak", e.purpose_len = 10));
    REFUSED((e.purpose = long_text, e.purpose_len = 513));
    REFUSED((e.purpose = "", e.purpose_len = 0));
    REFUSED(e.detail = "two\nlines");
    REFUSED(e.detail = long_text);
    REFUSED((e.action = COFFER_AUDIT_ACCESS, e.reason = "no_grant", e.allowed = true));
    REFUSED((e.action = COFFER_AUDIT_ACCESS, e.reason = "granted", e.allowed = false));
    REFUSED((e.allowed = false, e.purpose_unexpected = true));

    bad = ag;
    snprintf(bad.admin, sizeof(bad.admin), "mallory");
    REFUSED(e.who = &bad);
    bad = ag;
    bad.kind = (enum coffer_principal_kind)7;
    REFUSED(e.who = &bad);
    bad = ag;
    snprintf(bad.trust_domain, sizeof(bad.trust_domain), "Example.ORG");
    REFUSED(e.who = &bad);
    bad = ag;
    bad.instance[0] = '\0';
    REFUSED(e.who = &bad);
    bad = admin("acme", "alice");
    snprintf(bad.agent_type, sizeof(bad.agent_type), "builder");
    REFUSED(e.who = &bad);
    bad = ag;
    memset(bad.org, 'a', sizeof(bad.org)); /* not terminated inside its field */
    REFUSED(e.who = &bad);
#undef REFUSED

    e = base_event(r);
    assert_int_equal(coffer_store_audit_insert(w.st, NULL, &id), COFFER_E_INVALID);
    assert_int_equal(coffer_store_audit_insert(w.st, &e, NULL), COFFER_E_INVALID);
    assert_int_equal(events_of(r), 0);
}

static void test_audit_insert_joins_transaction(void **state)
{
    struct coffer_audit_event e;
    char r[16];
    int64_t id = 0;

    (void)state;
    assert_false(coffer_store_in_tx(w.st));
    assert_false(coffer_store_in_tx(NULL));
    assert_int_equal(coffer_store_begin(w.st), COFFER_OK);
    assert_true(coffer_store_in_tx(w.st));
    e = base_event(rid(r));
    assert_int_equal(insert(&e, &id), COFFER_OK);
    coffer_store_rollback(w.st);
    assert_false(coffer_store_in_tx(w.st));
    assert_int_equal(events_of(r), 0);

    assert_int_equal(coffer_store_begin(w.st), COFFER_OK);
    assert_int_equal(insert(&e, &id), COFFER_OK);
    assert_int_equal(coffer_store_commit(w.st), COFFER_OK);
    assert_int_equal(events_of(r), 1);
}

/* coffer_app appends and learns the id; it cannot read, change, delete or date events. */
static void test_audit_app_privileges(void **state)
{
    static const char *const refused[] = {
        "SELECT reason FROM coffer.audit_events",
        "UPDATE coffer.audit_events SET reason = 'granted'",
        "DELETE FROM coffer.audit_events",
        "TRUNCATE coffer.audit_events",
        "INSERT INTO coffer.audit_events (action, allowed, reason, request_id, at) "
        "VALUES ('metadata', true, 'ok', 'forged', now() - interval '1 day')",
        "INSERT INTO coffer.audit_events (id, action, allowed, reason, request_id) "
        "OVERRIDING SYSTEM VALUE VALUES (1, 'metadata', true, 'ok', 'forged')",
    };
    PGconn *app = PQconnectdb(w.h.db_app);
    PGresult *res;

    (void)state;
    assert_int_equal(PQstatus(app), CONNECTION_OK);
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        res = PQexec(app, refused[i]);
        if (PQresultStatus(res) != PGRES_FATAL_ERROR) {
            fail_msg("coffer_app was allowed: %s", refused[i]);
        }
        assert_string_equal(PQresultErrorField(res, PG_DIAG_SQLSTATE), "42501");
        PQclear(res);
    }
    res = PQexec(app, "INSERT INTO coffer.audit_events (action, allowed, reason, request_id) "
                      "VALUES ('metadata', true, 'ok', 'by-app') RETURNING id");
    assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
    assert_int_equal(PQntuples(res), 1);
    PQclear(res);
    PQfinish(app);
    assert_int_equal(events_of("by-app"), 1);
}

/* ---- The credential write joins a transaction ------------------------------------------ */

static void test_cred_write_joins_transaction(void **state)
{
    static const char *const names[] = {"k"};
    static const char *const values[] = {CANARY "-joined"};
    struct coffer_keyset *ks = keyset(1, names, values);
    struct coffer_keys_write wr = {.org_id = &w.org.id,
                                   .project_id = &w.proj.id,
                                   .name = "joined",
                                   .type = "custom",
                                   .tier = "low",
                                   .keys = ks};
    uint32_t version = 0;

    (void)state;
    assert_int_equal(coffer_store_begin(w.st), COFFER_OK);
    assert_int_equal(coffer_keys_cred_write(w.k, w.st, &wr, &version), COFFER_OK);
    assert_int_equal(version, 1);
    assert_true(coffer_store_in_tx(w.st)); /* the caller's transaction is still open */
    coffer_store_rollback(w.st);
    assert_int_equal(count("SELECT count(*) FROM coffer.credentials WHERE name = '%s'", "joined"),
                     0);

    assert_int_equal(coffer_store_begin(w.st), COFFER_OK);
    assert_int_equal(coffer_keys_cred_write(w.k, w.st, &wr, &version), COFFER_OK);
    assert_int_equal(coffer_store_commit(w.st), COFFER_OK);
    assert_int_equal(count("SELECT count(*) FROM coffer.credentials WHERE name = '%s'", "joined"),
                     1);

    /* Without a transaction it opens and commits its own, as before. */
    assert_int_equal(coffer_keys_cred_write(w.k, w.st, &wr, &version), COFFER_OK);
    assert_int_equal(version, 2);
    assert_false(coffer_store_in_tx(w.st));
    coffer_keyset_free(&ks);
}

/* ---- put ------------------------------------------------------------------------------- */

static void test_put_types(void **state)
{
    struct {
        const char *type;
        size_t n;
        const char *names[3];
    } good[] = {
        {"api_key", 1, {"api_key"}},
        {"oauth2", 2, {"access_token", "refresh_token"}},
        {"basic_auth", 2, {"username", "password"}},
        {"bearer_token", 1, {"token"}},
        {"certificate", 3, {"certificate", "private_key", "chain"}},
        {"connection_string", 1, {"connection_string"}},
        {"custom", 1, {"anything"}},
    };
    struct coffer_principal adm = admin("acme", "alice");
    const char *values[3] = {CANARY "-t0", CANARY "-t1", CANARY "-t2"};

    (void)state;
    assert_false(coffer_op_type_known("password"));
    assert_false(coffer_op_type_known(NULL));
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        struct coffer_keyset *ks;
        struct coffer_op_put p;
        char name[32];
        char r[16];

        assert_true(coffer_op_type_known(good[i].type));
        snprintf(name, sizeof(name), "type-%zu", i);
        /* Each required key left out in turn is refused, and nothing is written. */
        if (strcmp(good[i].type, "custom") != 0) {
            size_t required =
                strcmp(good[i].type, "basic_auth") == 0 || strcmp(good[i].type, "certificate") == 0
                    ? 2
                    : 1;

            for (size_t skip = 0; skip < required; skip++) {
                const char *n2[3];
                const char *v2[3];
                size_t k = 0;

                for (size_t j = 0; j < good[i].n; j++) {
                    if (j != skip) {
                        n2[k] = good[i].names[j];
                        v2[k++] = values[j];
                    }
                }
                if (k == 0) {
                    n2[k] = "unrelated";
                    v2[k++] = values[0];
                }
                ks = keyset(k, n2, v2);
                put_init(&p, "acme", name, good[i].type, "low", ks);
                assert_int_equal(put_as(&adm, &p, rid(r)), COFFER_E_INVALID);
                assert_non_null(strstr(coffer_err_detail(), good[i].names[skip]));
                assert_int_equal(p.version, 0);
                assert_int_equal(events_of(r), 0);
                coffer_keyset_free(&ks);
            }
        }
        ks = keyset(good[i].n, good[i].names, values);
        put_init(&p, "acme", name, good[i].type, "low", ks);
        assert_int_equal(put_as(&adm, &p, rid(r)), COFFER_OK);
        assert_int_equal(p.version, 1);
        assert_event(r, "create|true|ok|false|-|1|build|admin");
        coffer_keyset_free(&ks);
        assert_int_equal(count("SELECT count(*) FROM coffer.credentials WHERE name = '%s'", name),
                         1);
    }
    {
        struct coffer_keyset *ks = NULL;
        struct coffer_op_put p;
        char r[16];

        /* custom needs at least one key; an unknown type or tier is refused. */
        assert_int_equal(coffer_keyset_new(&ks), COFFER_OK);
        put_init(&p, "acme", "empty", "custom", "low", ks);
        assert_int_equal(put_as(&adm, &p, rid(r)), COFFER_E_INVALID);
        coffer_keyset_free(&ks);
        ks = keyset(1, good[0].names, values);
        put_init(&p, "acme", "empty", "password", "low", ks);
        assert_int_equal(put_as(&adm, &p, rid(r)), COFFER_E_INVALID);
        put_init(&p, "acme", "empty", "api_key", "secret", ks);
        assert_int_equal(put_as(&adm, &p, rid(r)), COFFER_E_INVALID);
        put_init(&p, "acme", "Bad Name", "api_key", "low", ks);
        assert_int_equal(put_as(&adm, &p, rid(r)), COFFER_E_INVALID);
        put_init(&p, "acme", "empty", "api_key", "low", ks);
        p.description = "two\nlines";
        assert_int_equal(put_as(&adm, &p, rid(r)), COFFER_E_INVALID);
        put_init(&p, "acme", "empty", "api_key", "low", NULL);
        assert_int_equal(put_as(&adm, &p, rid(r)), COFFER_E_INVALID);
        coffer_keyset_free(&ks);
        assert_int_equal(
            count("SELECT count(*) FROM coffer.credentials WHERE name = '%s'", "empty"), 0);
    }
}

/* Seconds between the credential's expiry and the time its current version was stored. */
static long lifetime_of(const char *name)
{
    return count("SELECT coalesce(extract(epoch FROM expires_at - updated_at)::bigint, -1) "
                 "FROM coffer.credentials WHERE name = '%s'",
                 name);
}

static enum coffer_err put_lifetime(const char *name, const char *tier, int64_t ttl_s,
                                    int64_t expires_at_us, int64_t *expires_us)
{
    struct coffer_principal adm = admin("acme", "alice");
    static const char *const names[] = {"api_key"};
    static const char *const values[] = {CANARY "-lifetime"};
    struct coffer_keyset *ks = keyset(1, names, values);
    struct coffer_op_put p;
    enum coffer_err r;
    char req[16];

    put_init(&p, "acme", name, "api_key", tier, ks);
    p.ttl_s = ttl_s;
    p.expires_at_us = expires_at_us;
    r = put_as(&adm, &p, rid(req));
    snprintf(last_put, sizeof(last_put), "%s", req);
    *expires_us = p.expires_us;
    if (r != COFFER_OK) {
        assert_int_equal(events_of(req), 0);
    }
    coffer_keyset_free(&ks);
    return r;
}

static int64_t now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void test_put_lifetimes(void **state)
{
    int64_t exp = 0;

    (void)state;
    /* No lifetime given: the tier's default (built-in: low 90d, medium 30d, high 1d, critical
     * 1h). */
    assert_int_equal(put_lifetime("life-low", "low", 0, 0, &exp), COFFER_OK);
    assert_int_equal(lifetime_of("life-low"), 90 * 86400);
    assert_int_equal(put_lifetime("life-medium", "medium", 0, 0, &exp), COFFER_OK);
    assert_int_equal(lifetime_of("life-medium"), 30 * 86400);
    assert_int_equal(put_lifetime("life-high", "high", 0, 0, &exp), COFFER_OK);
    assert_int_equal(lifetime_of("life-high"), 86400);
    assert_int_equal(put_lifetime("life-critical", "critical", 0, 0, &exp), COFFER_OK);
    assert_int_equal(lifetime_of("life-critical"), 3600);
    assert_true(exp > now_us());

    /* A ttl up to the maximum is kept; over it is refused, naming the maximum. */
    assert_int_equal(put_lifetime("life-high", "high", 7 * 86400, 0, &exp), COFFER_OK);
    assert_int_equal(lifetime_of("life-high"), 7 * 86400);
    assert_int_equal(put_lifetime("life-high", "high", 7 * 86400 + 1, 0, &exp), COFFER_E_INVALID);
    assert_non_null(strstr(coffer_err_detail(), "max_ttl of tier high, 7d"));
    assert_int_equal(lifetime_of("life-high"), 7 * 86400); /* unchanged */
    assert_int_equal(put_lifetime("life-critical", "critical", 86401, 0, &exp), COFFER_E_INVALID);
    assert_non_null(strstr(coffer_err_detail(), "max_ttl of tier critical, 1d"));
    assert_int_equal(put_lifetime("life-medium", "medium", 366 * 86400, 0, &exp), COFFER_E_INVALID);
    assert_non_null(strstr(coffer_err_detail(), "max_ttl of tier medium, 365d"));

    /* Never only where the tier's maximum is never. */
    assert_int_equal(put_lifetime("life-low", "low", COFFER_TTL_NEVER, 0, &exp), COFFER_OK);
    assert_true(exp == COFFER_AUTHZ_NO_EXPIRY);
    assert_int_equal(lifetime_of("life-low"), -1);
    assert_detail(last_put, "type api_key, tier low, 1 key, 0 grants, never expires");
    assert_int_equal(put_lifetime("life-medium", "medium", COFFER_TTL_NEVER, 0, &exp),
                     COFFER_E_INVALID);
    assert_int_equal(put_lifetime("life-high", "high", COFFER_TTL_NEVER, 0, &exp),
                     COFFER_E_INVALID);
    assert_non_null(strstr(coffer_err_detail(), "max_ttl of tier high, 7d"));
    assert_int_equal(put_lifetime("life-critical", "critical", COFFER_TTL_NEVER, 0, &exp),
                     COFFER_E_INVALID);

    /* An expiry time: in the future and within the maximum. */
    assert_int_equal(
        put_lifetime("life-critical", "critical", 0, now_us() + 3600 * INT64_C(1000000), &exp),
        COFFER_OK);
    assert_true(exp > now_us());
    assert_int_equal(
        put_lifetime("life-critical", "critical", 0, now_us() + 25 * 3600 * INT64_C(1000000), &exp),
        COFFER_E_INVALID);
    assert_non_null(strstr(coffer_err_detail(), "max_ttl of tier critical, 1d"));
    assert_int_equal(put_lifetime("life-critical", "critical", 0, now_us() - 1000000, &exp),
                     COFFER_E_INVALID);
    assert_int_equal(put_lifetime("life-critical", "critical", 0, -5, &exp), COFFER_E_INVALID);

    /* Not both, and nothing out of range. */
    assert_int_equal(put_lifetime("life-low", "low", 60, now_us() + 60000000, &exp),
                     COFFER_E_INVALID);
    assert_int_equal(put_lifetime("life-low", "low", -2, 0, &exp), COFFER_E_INVALID);
    assert_int_equal(put_lifetime("life-low", "low", COFFER_TTL_FINITE_MAX + 1, 0, &exp),
                     COFFER_E_INVALID);
    assert_int_equal(lifetime_of("life-low"), -1); /* none of these wrote anything */
}

static void test_put_grants(void **state)
{
    const char *build[] = {"build"};
    const char *both[] = {"build", "staging"};
    const char *nowhere[] = {"design"};
    const char *twice[] = {"build", "build"};
    struct coffer_policy_grant g;
    struct coffer_policy_grant pair[2];
    struct coffer_principal adm = admin("acme", "alice");
    struct coffer_principal builder = agent("acme", "builder", "b-1");
    static const char *const names[] = {"token"};
    static const char *const values[] = {CANARY "-granted"};
    struct coffer_keyset *ks = keyset(1, names, values);
    struct coffer_op_access a;
    struct coffer_op_put p;
    char r[16];

    (void)state;
    memset(&g, 0, sizeof(g));
    memset(pair, 0, sizeof(pair));

#define PUT_REFUSED(setup, text)                                                                   \
    do {                                                                                           \
        put_init(&p, "acme", "api-granted", "bearer_token", "medium", ks);                         \
        setup;                                                                                     \
        assert_int_equal(put_as(&adm, &p, rid(r)), COFFER_E_INVALID);                              \
        assert_non_null(strstr(coffer_err_detail(), text));                                        \
    } while (0)

    g.agent_type = "outsider"; /* declared, but not a member of proj */
    PUT_REFUSED((p.grants = &g, p.n_grants = 1), "not a member");
    g.agent_type = "ghost";
    PUT_REFUSED((p.grants = &g, p.n_grants = 1), "not a member");
    g.agent_type = "builder";
    g.phases = nowhere;
    g.n_phases = 1;
    PUT_REFUSED((p.grants = &g, p.n_grants = 1), "no phase design");
    g.phases = twice;
    g.n_phases = 2;
    PUT_REFUSED((p.grants = &g, p.n_grants = 1), "twice");
    g.phases = NULL;
    g.n_phases = 0;
    g.instance = "Bad";
    PUT_REFUSED((p.grants = &g, p.n_grants = 1), "instance");
    pair[0].agent_type = "builder";
    pair[1].agent_type = "builder";
    PUT_REFUSED((p.grants = pair, p.n_grants = 2), "same agent type");
    PUT_REFUSED(p.expire_on_phase_end = "design", "no phase design");
#undef PUT_REFUSED
    assert_int_equal(
        count("SELECT count(*) FROM coffer.credentials WHERE name = '%s'", "api-granted"), 0);

    /* A valid grant through the API works at once. */
    g.instance = NULL;
    g.phases = build;
    g.n_phases = 1;
    put_init(&p, "acme", "api-granted", "bearer_token", "medium", ks);
    p.grants = &g;
    p.n_grants = 1;
    p.description = "Token granted through the API";
    assert_int_equal(put_as(&adm, &p, rid(r)), COFFER_OK);
    assert_event(r, "create|true|ok|false|-|1|build|admin");
    assert_detail(r, "type bearer_token, tier medium, 1 key, 1 grant, expires in 30d");
    assert_true(
        world_sql_is(&w, "SELECT description FROM coffer.credentials WHERE name = 'api-granted'",
                     "Token granted through the API"));
    assert_int_equal(access_as(&builder, "acme", "api-granted", "run tests", rid(r), &a),
                     COFFER_OK);
    assert_true(a.decision.allow);
    coffer_keyset_free(&a.keys);

    /* Given again with other phases, the API grant is replaced, not duplicated. */
    g.phases = both;
    g.n_phases = 2;
    assert_int_equal(put_as(&adm, &p, rid(r)), COFFER_OK);
    assert_int_equal(p.version, 2);
    assert_true(world_sql_is(&w,
                             "SELECT string_agg(array_to_string(phases, ','), ';') FROM "
                             "coffer.grants WHERE credential_name = 'api-granted' AND source = "
                             "'api'",
                             "build,staging"));
    coffer_keyset_free(&ks);
}

static void test_put_refused_principals(void **state)
{
    struct coffer_principal other_admin = admin("other", "olga");
    struct coffer_principal builder = agent("acme", "builder", "b-1");
    static const char *const names[] = {"api_key"};
    static const char *const values[] = {CANARY "-refused"};
    struct coffer_keyset *ks = keyset(1, names, values);
    struct coffer_op_meta m = {.who = NULL, .request_id = "anonymous-put"};
    struct coffer_op_put p;
    char r[16];

    (void)state;
    put_init(&p, "acme", "intruder", "api_key", "low", ks);
    assert_int_equal(put_as(&other_admin, &p, rid(r)), COFFER_E_NOT_FOUND);
    assert_non_null(strstr(coffer_err_detail(), "no such org"));
    assert_event(r, "create|false|not_found|false|-|-|-|admin");
    {
        char sql[256];

        snprintf(sql, sizeof(sql),
                 "SELECT org || '>' || target_org FROM coffer.audit_events WHERE request_id = "
                 "'%s'",
                 r);
        assert_true(world_sql_is(&w, sql, "other>acme"));
    }
    assert_int_equal(put_as(&builder, &p, rid(r)), COFFER_E_NOT_FOUND);
    assert_event(r, "create|false|not_found|false|-|-|-|agent");
    assert_int_equal(coffer_op_put(&ops, &m, &p), COFFER_E_NOT_FOUND);
    assert_event("anonymous-put", "create|false|not_found|false|-|-|-|-");
    /* A malformed principal cannot even be audited: the request fails with nothing written. */
    assert_int_equal(put_as(&(struct coffer_principal){0}, &p, rid(r)), COFFER_E_INVALID);
    assert_int_equal(events_of(r), 0);
    /* An admin of acme naming another org is refused like anyone else. */
    p.org = "other";
    {
        struct coffer_principal adm = admin("acme", "alice");

        assert_int_equal(put_as(&adm, &p, rid(r)), COFFER_E_NOT_FOUND);
        assert_event(r, "create|false|not_found|false|-|-|-|admin");
    }
    assert_int_equal(count("SELECT count(*) FROM coffer.credentials WHERE name = '%s'", "intruder"),
                     0);
    coffer_keyset_free(&ks);
}

/* ---- access ---------------------------------------------------------------------------- */

static void test_access_granted(void **state)
{
    struct coffer_principal builder = agent("acme", "builder", "b-1");
    const struct coffer_secret *s;
    struct coffer_op_access a;
    char r[16];

    (void)state;
    assert_int_equal(put_simple("registry", "medium", NULL, 0, NULL, 0), 1);
    assert_int_equal(put_simple("registry", "medium", NULL, 0, NULL, 0), 2);
    assert_int_equal(access_as(&builder, "acme", "registry", "push image app:1", rid(r), &a),
                     COFFER_OK);
    assert_true(a.decision.allow);
    assert_int_equal(a.decision.reason, COFFER_AUTHZ_GRANTED);
    assert_false(a.decision.purpose_unexpected);
    assert_int_equal(a.version, 2);
    assert_non_null(a.keys);
    s = coffer_keyset_get(a.keys, "api_key");
    assert_non_null(s);
    assert_int_equal(coffer_secret_len(s), strlen(CANARY "-registry"));
    assert_memory_equal(coffer_secret_view(s).data, CANARY "-registry", strlen(CANARY "-registry"));
    coffer_keyset_free(&a.keys);
    assert_event(r, "access|true|granted|false|push image app:1|2|build|agent");

    /* A purpose outside the patterns is allowed and flagged. */
    assert_int_equal(access_as(&builder, "acme", "registry", "mine bitcoin", rid(r), &a),
                     COFFER_OK);
    assert_true(a.decision.allow);
    assert_true(a.decision.purpose_unexpected);
    assert_non_null(a.keys);
    coffer_keyset_free(&a.keys);
    assert_event(r, "access|true|granted|true|mine bitcoin|2|build|agent");
}

static void test_access_denials(void **state)
{
    struct coffer_principal builder = agent("acme", "builder", "b-1");
    struct coffer_principal deployer = agent("acme", "deployer", "d-1");
    struct coffer_principal outsider = agent("acme", "outsider", "o-1");
    struct coffer_principal other_builder = agent("other", "builder", "b-1");
    struct coffer_principal adm = admin("acme", "alice");
    struct coffer_principal other_admin = admin("other", "olga");
    static const char *const names[] = {"api_key"};
    static const char *const values[] = {CANARY "-other-org"};
    struct coffer_keyset *ks = keyset(1, names, values);
    struct coffer_op_put p;
    char r[16];

    (void)state;
    assert_int_equal(put_simple("prod-db", "high", NULL, 0, NULL, 0), 1);
    assert_int_equal(put_simple("vault-root", "critical", NULL, 0, NULL, 0), 1);
    put_init(&p, "other", "registry", "api_key", "low", ks);
    assert_int_equal(put_as(&other_admin, &p, rid(r)), COFFER_OK);
    coffer_keyset_free(&ks);

    /* deployer is a member with no grant for registry. */
    expect_denied(&deployer, "acme", "registry", "deploy", COFFER_AUTHZ_NO_GRANT,
                  "access|false|no_grant|false|deploy|2|build|agent");
    /* deployer's grant for prod-db covers production only; the project is in build. */
    expect_denied(&deployer, "acme", "prod-db", "deploy", COFFER_AUTHZ_WRONG_PHASE,
                  "access|false|wrong_phase|false|deploy|1|build|agent");
    expect_denied(&outsider, "acme", "registry", "look", COFFER_AUTHZ_NOT_PROJECT_MEMBER,
                  "access|false|not_project_member|false|look|2|build|agent");
    expect_denied(&builder, "acme", "registry", NULL, COFFER_AUTHZ_PURPOSE_MISSING,
                  "access|false|purpose_missing|false|-|2|build|agent");
    expect_denied(&builder, "acme", "registry", "push\nimage", COFFER_AUTHZ_PURPOSE_MISSING,
                  "access|false|purpose_missing|false|-|2|build|agent");
    expect_denied(&builder, "acme", "vault-root", "unseal", COFFER_AUTHZ_APPROVAL_REQUIRED,
                  "access|false|approval_required|false|unseal|1|build|agent");
    expect_denied(&builder, "acme", "no-such-cred", "look", COFFER_AUTHZ_NOT_FOUND,
                  "access|false|not_found|false|look|-|-|agent");
    expect_denied(&builder, "acme", "Not A Name", "look", COFFER_AUTHZ_NOT_FOUND,
                  "access|false|not_found|false|look|-|-|agent");
    /* Another org's agent naming acme, and acme's agent naming the other org (whose registry
     * exists and grants builders there): both not_found. */
    expect_denied(&other_builder, "acme", "registry", "push image x", COFFER_AUTHZ_NOT_FOUND,
                  "access|false|not_found|false|push image x|-|-|agent");
    expect_denied(&builder, "other", "registry", "push image x", COFFER_AUTHZ_NOT_FOUND,
                  "access|false|not_found|false|push image x|-|-|agent");
    assert_true(world_sql_is(&w,
                             "SELECT org || '>' || target_org FROM coffer.audit_events "
                             "ORDER BY id DESC LIMIT 1",
                             "acme>other"));
    /* A principal whose fields do not end inside them is refused before anything is read. */
    {
        struct coffer_principal broken = builder;
        struct coffer_op_access a;

        memset(broken.instance, 'i', sizeof(broken.instance));
        assert_int_equal(access_as(&broken, "acme", "registry", "push image x", rid(r), &a),
                         COFFER_E_INVALID);
        assert_false(a.decision.allow);
        assert_null(a.keys);
        assert_int_equal(events_of(r), 0);
    }
    /* Only agents access values. */
    expect_denied(&adm, "acme", "registry", "push image x", COFFER_AUTHZ_NO_GRANT,
                  "access|false|no_grant|false|push image x|-|-|admin");
    {
        struct coffer_op_meta m = {.who = NULL, .request_id = "anonymous-access"};
        struct coffer_op_access a = {.org = "acme", .project = "proj", .name = "registry"};

        assert_int_equal(coffer_op_access(&ops, &m, &a), COFFER_OK);
        assert_false(a.decision.allow);
        assert_null(a.keys);
        assert_event("anonymous-access", "access|false|no_grant|false|-|-|-|-");
    }
}

static void test_access_expired(void **state)
{
    struct coffer_principal builder = agent("acme", "builder", "b-1");
    struct timespec pause = {.tv_sec = 1, .tv_nsec = 200000000};
    struct coffer_op_access a;
    char r[16];

    (void)state;
    assert_int_equal(put_simple("short", "medium", NULL, 0, NULL, 1), 1);
    assert_int_equal(lifetime_of("short"), 1);
    nanosleep(&pause, NULL);
    expect_denied(&builder, "acme", "short", "build", COFFER_AUTHZ_EXPIRED,
                  "access|false|expired|false|build|1|build|agent");
    /* A new version with a fresh lifetime is accessible again. */
    assert_int_equal(put_simple("short", "medium", NULL, 0, NULL, 0), 2);
    assert_int_equal(access_as(&builder, "acme", "short", "build", rid(r), &a), COFFER_OK);
    assert_true(a.decision.allow);
    coffer_keyset_free(&a.keys);
}

/* ---- Per-key expiry -------------------------------------------------------------------- */

/* Stores oauth2 credential name (access_token, refresh_token) granted to builders. */
static enum coffer_err put_oauth(const char *name, int64_t ttl_s,
                                 const struct coffer_op_key_expiry *kx, size_t n_kx, char r[16])
{
    struct coffer_principal adm = admin("acme", "alice");
    static const char *const names[] = {"access_token", "refresh_token"};
    static const char *const values[] = {CANARY "-access", CANARY "-refresh"};
    static const struct coffer_policy_grant g = {.agent_type = "builder"};
    struct coffer_keyset *ks = keyset(2, names, values);
    struct coffer_op_put p;
    enum coffer_err e;

    put_init(&p, "acme", name, "oauth2", "medium", ks);
    p.ttl_s = ttl_s;
    p.grants = &g;
    p.n_grants = 1;
    p.key_expiry = kx;
    p.n_key_expiry = n_kx;
    e = put_as(&adm, &p, rid(r));
    coffer_keyset_free(&ks);
    return e;
}

/* How many versions of name are stored. */
static long versions_of(const char *name)
{
    return count("SELECT count(*) FROM coffer.credential_versions v JOIN coffer.credentials c "
                 "ON c.id = v.credential_id WHERE c.name = '%s'",
                 name);
}

/* Moves the own expiry of the named keys of name's current version into the past. */
static void expire_keys(const char *name, const char *in_list)
{
    char sql[768];

    snprintf(sql, sizeof(sql),
             "UPDATE coffer.credential_versions v SET key_expires_at = (SELECT "
             "array_agg(CASE WHEN u.k IN (%s) THEN now() - interval '1 second' "
             "ELSE v.key_expires_at[u.i] END ORDER BY u.i) FROM unnest(v.key_names) "
             "WITH ORDINALITY AS u(k, i)) FROM coffer.credentials c WHERE c.id = v.credential_id "
             "AND c.name = '%s' AND v.version = c.current_version",
             in_list, name);
    assert_int_equal(world_sql(&w, sql), 1);
}

static void test_put_key_expiry_rules(void **state)
{
    const int64_t hour = INT64_C(3600) * 1000000;
    struct coffer_op_key_expiry kx[2];
    char r[16];

    (void)state;
    /* A name that is not one of the keys, and a key given twice: refused before anything. */
    kx[0] = (struct coffer_op_key_expiry){"no_such_key", now_us() + hour};
    assert_int_equal(put_oauth("oauth-rules", 86400, kx, 1, r), COFFER_E_INVALID);
    assert_non_null(strstr(coffer_err_detail(), "not one of the keys"));
    kx[0] = (struct coffer_op_key_expiry){"access_token", now_us() + hour};
    kx[1] = (struct coffer_op_key_expiry){"access_token", now_us() + 2 * hour};
    assert_int_equal(put_oauth("oauth-rules", 86400, kx, 2, r), COFFER_E_INVALID);
    assert_non_null(strstr(coffer_err_detail(), "given twice"));
    kx[0] = (struct coffer_op_key_expiry){"access_token", 0};
    assert_int_equal(put_oauth("oauth-rules", 86400, kx, 1, r), COFFER_E_INVALID);
    assert_int_equal(put_oauth("oauth-rules", 86400, NULL, 1, r), COFFER_E_INVALID);
    assert_int_equal(events_of(r), 0);
    /* A time in the past, and one after the credential's own expiry: the write is undone. */
    kx[0] = (struct coffer_op_key_expiry){"access_token", now_us() - 10 * 1000000};
    assert_int_equal(put_oauth("oauth-rules", 86400, kx, 1, r), COFFER_E_INVALID);
    assert_non_null(strstr(coffer_err_detail(), "not in the future"));
    kx[0] = (struct coffer_op_key_expiry){"refresh_token", now_us() + 25 * hour};
    assert_int_equal(put_oauth("oauth-rules", 86400, kx, 1, r), COFFER_E_INVALID);
    assert_non_null(strstr(coffer_err_detail(), "after the credential's own"));
    assert_int_equal(events_of(r), 0);
    assert_int_equal(versions_of("oauth-rules"), 0);
    /* Within the lifetime: stored aligned with the key names, the other key without one. */
    kx[0] = (struct coffer_op_key_expiry){"access_token", now_us() + hour};
    kx[1] = (struct coffer_op_key_expiry){"refresh_token", now_us() + 24 * hour - 1000000};
    assert_int_equal(put_oauth("oauth-rules", 86400, kx, 1, r), COFFER_OK);
    assert_detail(r, "type oauth2, tier medium, 2 keys, 1 grant, expires in 1d, 1 key with an "
                     "expiry of its own");
    assert_true(world_sql_is(&w,
                             "SELECT concat_ws('|', array_to_string(v.key_names, ','), "
                             "(v.key_expires_at[1] > now())::text, "
                             "(v.key_expires_at[2] IS NULL)::text) "
                             "FROM coffer.credential_versions v JOIN coffer.credentials c ON "
                             "c.id = v.credential_id WHERE c.name = 'oauth-rules'",
                             "access_token,refresh_token|true|true"));
    /* Both keys, the second just inside the credential's day; a version without any. */
    assert_int_equal(put_oauth("oauth-rules", 86400, kx, 2, r), COFFER_OK);
    assert_int_equal(put_oauth("oauth-rules", 86400, NULL, 0, r), COFFER_OK);
    assert_int_equal(count("SELECT count(*) FROM coffer.credential_versions v JOIN "
                           "coffer.credentials c ON c.id = v.credential_id WHERE c.name = "
                           "'oauth-rules' AND v.key_expires_at IS NOT NULL "
                           "AND v.key_expires_at[2] IS NOT NULL"),
                     1);
    assert_int_equal(count("SELECT count(*) FROM coffer.credential_versions v JOIN "
                           "coffer.credentials c ON c.id = v.credential_id WHERE c.name = "
                           "'oauth-rules' AND v.version = 3 AND v.key_expires_at IS NULL"),
                     1);
    /* The column keeps its shape: the database refuses one not aligned with key_names. */
    assert_int_equal(world_sql(&w,
                               "DO $$ BEGIN UPDATE coffer.credential_versions SET "
                               "key_expires_at = ARRAY[now()] WHERE cardinality(key_names) = 2; "
                               "RAISE EXCEPTION 'accepted'; "
                               "EXCEPTION WHEN check_violation THEN NULL; END $$"),
                     0);
}

static void test_access_key_expiry(void **state)
{
    struct coffer_principal builder = agent("acme", "builder", "b-1");
    struct coffer_principal adm = admin("acme", "alice");
    const int64_t hour = INT64_C(3600) * 1000000;
    struct coffer_op_key_expiry kx = {"access_token", now_us() + hour};
    struct coffer_op_access a;
    char r[16];

    (void)state;
    assert_int_equal(put_oauth("oauth", 30 * 86400, &kx, 1, r), COFFER_OK);
    /* Before its expiry the key is handed out and nothing is left out. */
    assert_int_equal(access_as(&builder, "acme", "oauth", "sync", rid(r), &a), COFFER_OK);
    assert_true(a.decision.allow);
    assert_int_equal(coffer_keyset_count(a.keys), 2);
    assert_null(a.expired_keys);
    coffer_keyset_free(&a.keys);
    assert_detail(r, "-");

    /* Past it: left out, named, and the event says so. */
    expire_keys("oauth", "'access_token'");
    assert_int_equal(access_as(&builder, "acme", "oauth", "sync", rid(r), &a), COFFER_OK);
    assert_true(a.decision.allow);
    assert_int_equal(a.version, 1);
    assert_int_equal(coffer_keyset_count(a.keys), 1);
    assert_null(coffer_keyset_get(a.keys, "access_token"));
    assert_non_null(coffer_keyset_get(a.keys, "refresh_token"));
    assert_string_equal(a.expired_keys, "access_token");
    coffer_keyset_free(&a.keys);
    coffer_free(a.expired_keys);
    assert_event(r, "access|true|granted|false|sync|1|build|agent");
    assert_detail(r, "expired keys: access_token");

    /* The batched path leaves it out the same way. */
    {
        struct coffer_op_meta m = {.who = &builder, .request_id = rid(r)};
        struct coffer_op_access b = {.org = "acme", .project = "proj", .name = "oauth"};

        b.purpose = "sync";
        b.purpose_len = 4;
        assert_int_equal(coffer_store_begin(w.st), COFFER_OK);
        assert_int_equal(coffer_op_access_batch(&ops, &m, &b, 1), COFFER_OK);
        assert_int_equal(coffer_store_commit(w.st), COFFER_OK);
        assert_true(b.decision.allow);
        assert_int_equal(coffer_keyset_count(b.keys), 1);
        assert_non_null(coffer_keyset_get(b.keys, "refresh_token"));
        assert_string_equal(b.expired_keys, "access_token");
        coffer_keyset_free(&b.keys);
        coffer_free(b.expired_keys);
        assert_detail(r, "expired keys: access_token");
    }

    /* Metadata shows the key's expiry, aligned with its name. */
    {
        struct coffer_op_meta m = {.who = &adm, .request_id = rid(r)};
        struct coffer_op_metadata q = {.org = "acme", .project = "proj", .name = "oauth"};
        struct coffer_arena *ar = NULL;

        assert_int_equal(coffer_arena_new(0, &ar), COFFER_OK);
        assert_int_equal(coffer_op_metadata(&ops, &m, ar, &q), COFFER_OK);
        assert_int_equal(q.list.n, 1);
        assert_non_null(q.list.items[0].key_expires_us);
        assert_string_equal(q.list.items[0].keys[0], "access_token");
        assert_true(q.list.items[0].key_expires_us[0] < now_us());
        assert_true(q.list.items[0].key_expires_us[1] == COFFER_AUTHZ_NO_EXPIRY);
        coffer_arena_free(&ar);
    }

    /* Every key past its own expiry: denied as expired, nothing unsealed. */
    expire_keys("oauth", "'access_token', 'refresh_token'");
    expect_denied(&builder, "acme", "oauth", "sync", COFFER_AUTHZ_EXPIRED,
                  "access|false|expired|false|sync|1|build|agent");

    /* A new version without key expiry is whole again. */
    assert_int_equal(put_oauth("oauth", 30 * 86400, NULL, 0, r), COFFER_OK);
    assert_int_equal(access_as(&builder, "acme", "oauth", "sync", rid(r), &a), COFFER_OK);
    assert_true(a.decision.allow);
    assert_int_equal(coffer_keyset_count(a.keys), 2);
    assert_null(a.expired_keys);
    coffer_keyset_free(&a.keys);
}

/* XORs one byte of the current version's ciphertext of name with 1, as coffer_owner. */
static void flip(const char *name)
{
    char sql[512];

    snprintf(sql, sizeof(sql),
             "UPDATE coffer.credential_versions cv SET ciphertext = set_byte(cv.ciphertext, 0, "
             "get_byte(cv.ciphertext, 0) # 1) FROM coffer.credentials c WHERE c.id = "
             "cv.credential_id AND c.name = '%s' AND cv.version = c.current_version",
             name);
    assert_int_equal(world_sql(&w, sql), 1);
}

static void test_access_integrity_error(void **state)
{
    struct coffer_principal builder = agent("acme", "builder", "b-1");
    struct coffer_op_access a;
    char r[16];

    (void)state;
    assert_int_equal(put_simple("integrity", "low", NULL, 0, NULL, 0), 1);
    flip("integrity");
    assert_int_equal(access_as(&builder, "acme", "integrity", "read", rid(r), &a), COFFER_OK);
    assert_false(a.decision.allow);
    assert_int_equal(a.decision.reason, COFFER_AUTHZ_INTEGRITY_ERROR);
    assert_null(a.keys);
    assert_int_equal(a.version, 0);
    assert_event(r, "access|false|integrity_error|false|read|1|build|agent");
    flip("integrity");
    assert_int_equal(access_as(&builder, "acme", "integrity", "read", rid(r), &a), COFFER_OK);
    assert_true(a.decision.allow);
    coffer_keyset_free(&a.keys);
}

/* An event that cannot be written fails the operation, which then has no effect. */
static void test_fail_closed(void **state)
{
    struct coffer_principal builder = agent("acme", "builder", "b-1");
    struct coffer_principal deployer = agent("acme", "deployer", "d-1");
    struct coffer_principal adm = admin("acme", "alice");
    struct coffer_op_meta m = {.who = &adm, .request_id = "fail-closed-revoke"};
    struct coffer_op_revoke rv = {
        .org = "acme", .project = "proj", .name = "registry", .reason = "leaked"};
    struct coffer_arena *arena = NULL;
    struct coffer_store_phase_result res;
    struct coffer_op_access a;
    char r[16];

    (void)state;
    world_sql(&w, "ALTER TABLE coffer.audit_events ADD CONSTRAINT no_more CHECK (false) NOT VALID");
    assert_int_not_equal(access_as(&builder, "acme", "registry", "push image a", rid(r), &a),
                         COFFER_OK);
    assert_null(a.keys);
    assert_false(a.decision.allow);
    assert_int_equal(a.version, 0);
    assert_int_equal(events_of(r), 0);
    /* A denial whose event cannot be written is an error too. */
    assert_int_not_equal(access_as(&deployer, "acme", "registry", "deploy", rid(r), &a), COFFER_OK);
    assert_false(a.decision.allow);
    assert_int_equal(events_of(r), 0);
    /* put, revoke and phase leave nothing behind. */
    assert_int_not_equal(coffer_op_revoke(&ops, &m, &rv), COFFER_OK);
    assert_int_equal(
        count("SELECT count(*) FROM coffer.credentials WHERE name = '%s' AND revoked_at IS NOT "
              "NULL",
              "registry"),
        0);
    assert_int_equal(coffer_arena_new(0, &arena), COFFER_OK);
    m.request_id = "fail-closed-phase";
    assert_int_not_equal(coffer_op_phase(&ops, &m, "acme", "proj", "staging", arena, &res),
                         COFFER_OK);
    assert_false(res.changed);
    assert_true(world_sql_is(&w,
                             "SELECT phase FROM coffer.projects WHERE name = 'proj' AND "
                             "org_id = (SELECT id FROM coffer.orgs WHERE name = 'acme')",
                             "build"));
    coffer_arena_free(&arena);
    {
        struct coffer_principal other_admin = admin("other", "olga");
        struct coffer_op_put p;

        put_init(&p, "acme", "registry", "api_key", "low", NULL);
        assert_int_not_equal(put_as(&other_admin, &p, rid(r)), COFFER_E_NOT_FOUND);
    }
    assert_true(world_sql_is(&w,
                             "SELECT current_version FROM coffer.credentials WHERE name = "
                             "'registry' AND org_id = (SELECT id FROM coffer.orgs WHERE "
                             "name = 'acme')",
                             "2"));
    world_sql(&w, "ALTER TABLE coffer.audit_events DROP CONSTRAINT no_more");
    assert_int_equal(count("SELECT count(*) FROM coffer.audit_events WHERE request_id LIKE '%s'",
                           "fail-closed%"),
                     0);

    assert_int_equal(access_as(&builder, "acme", "registry", "push image a", rid(r), &a),
                     COFFER_OK);
    assert_true(a.decision.allow);
    assert_non_null(a.keys);
    coffer_keyset_free(&a.keys);
}

/* A put whose event cannot be written stores no version. */
static void test_fail_closed_put(void **state)
{
    struct coffer_principal adm = admin("acme", "alice");
    static const char *const names[] = {"api_key"};
    static const char *const values[] = {CANARY "-never-stored"};
    struct coffer_keyset *ks = keyset(1, names, values);
    struct coffer_op_put p;
    char r[16];

    (void)state;
    world_sql(&w, "ALTER TABLE coffer.audit_events ADD CONSTRAINT no_more CHECK (false) NOT VALID");
    put_init(&p, "acme", "registry", "api_key", "medium", ks);
    assert_int_not_equal(put_as(&adm, &p, rid(r)), COFFER_OK);
    assert_int_equal(p.version, 0);
    put_init(&p, "acme", "unborn", "api_key", "medium", ks);
    assert_int_not_equal(put_as(&adm, &p, rid(r)), COFFER_OK);
    world_sql(&w, "ALTER TABLE coffer.audit_events DROP CONSTRAINT no_more");
    assert_true(world_sql_is(&w,
                             "SELECT max(version) FROM coffer.credential_versions cv JOIN "
                             "coffer.credentials c ON c.id = cv.credential_id WHERE c.name = "
                             "'registry' AND c.org_id = (SELECT id FROM coffer.orgs WHERE "
                             "name = 'acme')",
                             "2"));
    assert_int_equal(count("SELECT count(*) FROM coffer.credentials WHERE name = '%s'", "unborn"),
                     0);
    coffer_keyset_free(&ks);
}

/* ---- revoke ---------------------------------------------------------------------------- */

static enum coffer_err revoke_as(const struct coffer_principal *who, const char *org,
                                 const char *name, const char *reason, const char *request_id)
{
    struct coffer_op_meta m = {.who = who, .request_id = request_id};
    struct coffer_op_revoke rv = {.org = org, .project = "proj", .name = name, .reason = reason};

    return coffer_op_revoke(&ops, &m, &rv);
}

static void test_revoke(void **state)
{
    struct coffer_principal builder = agent("acme", "builder", "b-1");
    struct coffer_principal adm = admin("acme", "alice");
    struct coffer_principal other_admin = admin("other", "olga");
    struct coffer_op_access a;
    char r[16];

    (void)state;
    assert_int_equal(put_simple("rev-key", "medium", NULL, 0, NULL, 0), 1);
    assert_int_equal(access_as(&builder, "acme", "rev-key", "use", rid(r), &a), COFFER_OK);
    assert_true(a.decision.allow);
    coffer_keyset_free(&a.keys);

    /* Refusals: another org's admin and an agent (audited), bad reasons, unknown names. */
    assert_int_equal(revoke_as(&other_admin, "acme", "rev-key", "mine now", rid(r)),
                     COFFER_E_NOT_FOUND);
    assert_event(r, "revoke|false|not_found|false|-|-|-|admin");
    assert_int_equal(revoke_as(&builder, "acme", "rev-key", "mine now", rid(r)),
                     COFFER_E_NOT_FOUND);
    assert_event(r, "revoke|false|not_found|false|-|-|-|agent");
    assert_int_equal(revoke_as(&adm, "acme", "rev-key", "bad\nreason", rid(r)), COFFER_E_INVALID);
    assert_int_equal(revoke_as(&adm, "acme", "rev-key", "", rid(r)), COFFER_E_INVALID);
    assert_int_equal(revoke_as(&adm, "acme", "rev-key", NULL, rid(r)), COFFER_E_INVALID);
    assert_int_equal(revoke_as(&adm, "acme", "no-such", "gone", rid(r)), COFFER_E_NOT_FOUND);
    assert_int_equal(events_of(r), 0);
    assert_int_equal(
        count("SELECT count(*) FROM coffer.credentials WHERE name = '%s' AND revoked_at IS NULL",
              "rev-key"),
        1);

    assert_int_equal(revoke_as(&adm, "acme", "rev-key", "key leaked in CI log", rid(r)), COFFER_OK);
    assert_event(r, "revoke|true|ok|false|-|1|build|admin");
    assert_detail(r, "key leaked in CI log");
    expect_denied(&builder, "acme", "rev-key", "use", COFFER_AUTHZ_REVOKED,
                  "access|false|revoked|false|use|1|build|agent");
    /* Twice is refused and writes nothing; a new version does not revive it. */
    assert_int_equal(revoke_as(&adm, "acme", "rev-key", "again", rid(r)), COFFER_E_STATE);
    assert_int_equal(events_of(r), 0);
    {
        static const char *const names[] = {"api_key"};
        static const char *const values[] = {CANARY "-revived"};
        struct coffer_keyset *ks = keyset(1, names, values);
        struct coffer_op_put p;

        put_init(&p, "acme", "rev-key", "api_key", "medium", ks);
        assert_int_equal(put_as(&adm, &p, rid(r)), COFFER_E_STATE);
        assert_int_equal(events_of(r), 0);
        coffer_keyset_free(&ks);
    }
    assert_true(world_sql_is(&w,
                             "SELECT current_version FROM coffer.credentials WHERE name = "
                             "'rev-key'",
                             "1"));
}

/* ---- put, many at once ------------------------------------------------------------- */

#define BATCH_PUTS 8

/* A batch of puts, each by its own principal and request id. */
struct put_batch {
    struct coffer_principal who[BATCH_PUTS];
    struct coffer_op_meta m[BATCH_PUTS];
    struct coffer_op_put p[BATCH_PUTS];
    struct coffer_keyset *ks[BATCH_PUTS];
    char r[BATCH_PUTS][16];
    bool taken[BATCH_PUTS];
    size_t n;
};

/* Adds an api_key put of name (value CANARY "-batch-" name) by who to b; returns it. */
static struct coffer_op_put *batch_add(struct put_batch *b, const struct coffer_principal *who,
                                       const char *project, const char *name)
{
    static const char *const names[] = {"api_key"};
    char value[96];
    const char *values[] = {value};
    size_t i = b->n++;

    assert_true(i < BATCH_PUTS);
    snprintf(value, sizeof(value), "%s-batch-%s", CANARY, name);
    b->who[i] = *who;
    b->ks[i] = keyset(1, names, values);
    put_init(&b->p[i], "acme", name, "api_key", "medium", b->ks[i]);
    b->p[i].project = project;
    b->m[i] = (struct coffer_op_meta){
        .who = &b->who[i], .request_id = rid(b->r[i]), .client_addr = "[::1]:5002"};
    return &b->p[i];
}

static void batch_free(struct put_batch *b)
{
    for (size_t i = 0; i < b->n; i++) {
        coffer_keyset_free(&b->ks[i]);
    }
}

/* Runs the batch b, which must write nothing: no put taken, no event. */
static void expect_batch_unwritten(struct put_batch *b)
{
    assert_int_equal(coffer_op_put_many(&ops, b->m, b->p, b->n, b->taken), COFFER_OK);
    for (size_t i = 0; i < b->n; i++) {
        assert_false(b->taken[i]);
        assert_int_equal(b->p[i].version, 0);
        assert_int_equal(events_of(b->r[i]), 0);
    }
}

static void test_put_many(void **state)
{
    struct coffer_principal adm = admin("acme", "alice");
    struct coffer_principal builder = agent("acme", "builder", "b-1");
    struct coffer_policy_grant g = {.agent_type = "deployer"};
    const struct coffer_secret *sec;
    struct coffer_op_access a;
    struct coffer_op_put single;
    struct put_batch b = {0};
    char r[16];

    (void)state;
    /* The single path's put of the same shape, to compare the batch's event with. */
    put_init(&single, "acme", "batch-single", "api_key", "medium", NULL);
    {
        static const char *const names[] = {"api_key"};
        static const char *const values[] = {CANARY "-single"};
        struct coffer_keyset *ks = keyset(1, names, values);

        single.keys = ks;
        single.ttl_s = 3600;
        single.description = "made alone";
        assert_int_equal(put_as(&adm, &single, rid(r)), COFFER_OK);
        coffer_keyset_free(&ks);
    }

    batch_add(&b, &adm, "proj", "batch-a")->ttl_s = 3600;
    b.p[0].description = "made in a batch";
    batch_add(&b, &adm, "proj", "registry");              /* a new version of a stored one */
    batch_add(&b, &adm, "proj", "batch-a");               /* the same credential again */
    batch_add(&b, &adm, "nope", "batch-b");               /* no such project */
    batch_add(&b, &builder, "proj", "batch-c");           /* not an admin */
    batch_add(&b, &adm, "proj", "batch-d")->n_grants = 1; /* a grant of its own */
    b.p[5].grants = &g;
    batch_add(&b, &adm, "proj", "batch-e")->expire_on_phase_end = "nophase";
    assert_int_equal(coffer_op_put_many(&ops, b.m, b.p, b.n, b.taken), COFFER_OK);

    /* Taken: written, each with its own event, as the single path writes it. */
    assert_true(b.taken[0]);
    assert_true(b.taken[1]);
    assert_int_equal(b.p[0].version, 1);
    assert_int_equal(b.p[1].version, 3);
    assert_event(b.r[0], "create|true|ok|false|-|1|build|admin");
    assert_event(b.r[1], "create|true|ok|false|-|3|build|admin");
    assert_int_equal(lifetime_of("batch-a"), 3600);
    assert_int_equal(b.p[0].expires_us,
                     count("SELECT (extract(epoch FROM expires_at) * 1000000)::int8 FROM "
                           "coffer.credentials WHERE name = 'batch-a'"));
    assert_true(world_sql_is(&w,
                             "SELECT description FROM coffer.credentials WHERE name = 'batch-a'",
                             "made in a batch"));
    {
        char sql[512];

        snprintf(sql, sizeof(sql),
                 "SELECT (SELECT detail FROM coffer.audit_events WHERE request_id = '%s') = "
                 "(SELECT detail FROM coffer.audit_events WHERE request_id = '%s')",
                 b.r[0], r);
        assert_true(world_sql_is(&w, sql, "t"));
    }
    /* The stored values round-trip through an access. */
    assert_int_equal(access_as(&builder, "acme", "registry", "push image app:3", rid(r), &a),
                     COFFER_OK);
    assert_true(a.decision.allow);
    assert_int_equal(a.version, 3);
    sec = coffer_keyset_get(a.keys, "api_key");
    assert_non_null(sec);
    assert_int_equal(coffer_secret_len(sec), strlen(CANARY "-batch-registry"));
    assert_memory_equal(coffer_secret_view(sec).data, CANARY "-batch-registry",
                        strlen(CANARY "-batch-registry"));
    coffer_keyset_free(&a.keys);

    /* Not taken: nothing of them written; alone, each gets the single path's answer. */
    for (size_t i = 2; i < b.n; i++) {
        assert_false(b.taken[i]);
        assert_int_equal(b.p[i].version, 0);
        assert_int_equal(events_of(b.r[i]), 0);
    }
    assert_int_equal(count("SELECT count(*) FROM coffer.credentials WHERE name IN ('batch-b', "
                           "'batch-c', 'batch-d', 'batch-e')"),
                     0);
    assert_int_equal(coffer_op_put(&ops, &b.m[2], &b.p[2]), COFFER_OK);
    assert_int_equal(b.p[2].version, 2);
    assert_int_equal(coffer_op_put(&ops, &b.m[3], &b.p[3]), COFFER_E_NOT_FOUND);
    assert_int_equal(coffer_op_put(&ops, &b.m[4], &b.p[4]), COFFER_E_NOT_FOUND);
    assert_event(b.r[4], "create|false|not_found|false|-|-|-|agent");
    assert_int_equal(coffer_op_put(&ops, &b.m[5], &b.p[5]), COFFER_OK);
    assert_int_equal(coffer_op_put(&ops, &b.m[6], &b.p[6]), COFFER_E_INVALID);
    batch_free(&b);

    /* A revoked credential in the batch: nothing of the batch is written. */
    memset(&b, 0, sizeof(b));
    batch_add(&b, &adm, "proj", "batch-f");
    batch_add(&b, &adm, "proj", "rev-key");
    expect_batch_unwritten(&b);
    assert_int_equal(count("SELECT count(*) FROM coffer.credentials WHERE name = 'batch-f'"), 0);
    assert_true(world_sql_is(&w,
                             "SELECT current_version FROM coffer.credentials WHERE name = "
                             "'rev-key'",
                             "1"));
    assert_int_equal(coffer_op_put(&ops, &b.m[0], &b.p[0]), COFFER_OK);
    assert_int_equal(coffer_op_put(&ops, &b.m[1], &b.p[1]), COFFER_E_STATE);
    batch_free(&b);

    /* A project removed from the policy: nothing of the batch is written either. */
    world_sql(&w, "INSERT INTO coffer.projects (org_id, name, removed_at) SELECT id, 'gone', now() "
                  "FROM coffer.orgs WHERE name = 'acme'");
    memset(&b, 0, sizeof(b));
    batch_add(&b, &adm, "proj", "batch-h");
    batch_add(&b, &adm, "gone", "batch-i");
    expect_batch_unwritten(&b);
    assert_int_equal(count("SELECT count(*) FROM coffer.credentials WHERE name IN ('batch-h', "
                           "'batch-i')"),
                     0);
    assert_int_equal(coffer_op_put(&ops, &b.m[0], &b.p[0]), COFFER_OK);
    assert_int_equal(coffer_op_put(&ops, &b.m[1], &b.p[1]), COFFER_E_NOT_FOUND);
    assert_int_equal(count("SELECT count(*) FROM coffer.credentials WHERE name = 'batch-i'"), 0);
    batch_free(&b);

    /* Events that cannot be written: nothing is written, and alone each fails too. */
    memset(&b, 0, sizeof(b));
    batch_add(&b, &adm, "proj", "batch-g");
    batch_add(&b, &adm, "proj", "batch-a");
    world_sql(&w, "ALTER TABLE coffer.audit_events ADD CONSTRAINT no_more CHECK (false) NOT VALID");
    expect_batch_unwritten(&b);
    assert_int_not_equal(coffer_op_put(&ops, &b.m[0], &b.p[0]), COFFER_OK);
    assert_int_not_equal(coffer_op_put(&ops, &b.m[1], &b.p[1]), COFFER_OK);
    world_sql(&w, "ALTER TABLE coffer.audit_events DROP CONSTRAINT no_more");
    assert_int_equal(count("SELECT count(*) FROM coffer.credentials WHERE name = 'batch-g'"), 0);
    assert_true(world_sql_is(&w,
                             "SELECT current_version FROM coffer.credentials WHERE name = "
                             "'batch-a'",
                             "2"));
    batch_free(&b);
}

/* ---- phase ----------------------------------------------------------------------------- */

static void test_phase(void **state)
{
    struct coffer_principal builder = agent("acme", "builder", "b-1");
    struct coffer_principal other_admin = admin("other", "olga");
    struct coffer_policy_grant g = {.agent_type = "builder"};
    struct coffer_store_phase_result res;
    struct coffer_arena *a = NULL;
    struct coffer_op_access acc;
    char r[16];

    (void)state;
    assert_int_equal(coffer_arena_new(0, &a), COFFER_OK);
    assert_int_equal(put_simple("stage-key", "medium", &g, 1, "staging", 0), 1);
    assert_detail(
        last_put,
        "type api_key, tier medium, 1 key, 1 grant, expires in 30d or at the end of phase "
        "staging");
    assert_int_equal(put_simple("stage-key-2", "medium", &g, 1, "staging", 0), 1);

    /* Refused: another org's admin (audited), an undeclared phase (nothing written). */
    {
        struct coffer_op_meta m = {.who = &other_admin, .request_id = rid(r)};

        assert_int_equal(coffer_op_phase(&ops, &m, "acme", "proj", "staging", a, &res),
                         COFFER_E_NOT_FOUND);
        assert_false(res.changed);
        assert_event(r, "phase|false|not_found|false|-|-|-|admin");
    }
    {
        struct coffer_principal adm = admin("acme", "alice");
        struct coffer_op_meta m = {.who = &adm, .request_id = rid(r)};

        assert_int_equal(coffer_op_phase(&ops, &m, "acme", "proj", "design", a, &res),
                         COFFER_E_INVALID);
        assert_int_equal(events_of(r), 0);
        assert_int_equal(coffer_op_phase(&ops, &m, "acme", "proj", "staging", NULL, &res),
                         COFFER_E_INVALID);
        assert_int_equal(events_of(r), 0);
    }

    move_to("staging", rid(r), &res, a);
    assert_true(res.changed);
    assert_int_equal(res.n_expired, 0);
    assert_event(r, "phase|true|ok|false|-|-|build|admin");
    assert_detail(r, "build -> staging");
    assert_int_equal(access_as(&builder, "acme", "stage-key", "stage", rid(r), &acc), COFFER_OK);
    assert_true(acc.decision.allow);
    coffer_keyset_free(&acc.keys);

    move_to("production", rid(r), &res, a);
    assert_true(res.changed);
    assert_int_equal(res.n_expired, 2);
    assert_event(r, "phase|true|ok|false|-|-|staging|admin");
    assert_detail(r, "staging -> production; expired: stage-key, stage-key-2");
    assert_true(world_sql_is(&w,
                             "SELECT changed_by FROM coffer.phase_changes ORDER BY id DESC LIMIT 1",
                             "spiffe://" TD "/org/acme/admin/alice"));
    expect_denied(&builder, "acme", "stage-key", "stage", COFFER_AUTHZ_EXPIRED,
                  "access|false|expired|false|stage|1|production|agent");

    move_to("production", rid(r), &res, a);
    assert_false(res.changed);
    assert_detail(r, "production -> production (unchanged)");
    move_to("build", rid(r), &res, a);
    assert_detail(r, "production -> build");
    coffer_arena_free(&a);
}

/* ---- No value ever reaches the audit log ----------------------------------------------- */

static void test_no_values_in_audit(void **state)
{
    (void)state;
    /* Every value stored above starts with CANARY; the table must hold none of them. */
    assert_true(
        count("SELECT count(*) FROM coffer.audit_events WHERE request_id LIKE '%s'", "req-%") > 20);
    assert_int_equal(
        count("SELECT count(*) FROM coffer.audit_events e WHERE e::text LIKE '%s'", "%" CANARY "%"),
        0);
    /* The check can fail: a row that held one would be found. */
    assert_int_equal(count("SELECT count(*) FROM (SELECT 'x" CANARY "-registry'::text AS t) e "
                           "WHERE e::text LIKE '%s'",
                           "%" CANARY "%"),
                     1);
}

static int setup(void **state)
{
    (void)state;
    ops.st = w.st;
    ops.k = w.k;
    if (coffer_keys_org_create(w.k, w.st, "other", &other, NULL) != COFFER_OK) {
        fprintf(stderr, "org other: %s\n", coffer_err_detail());
        return -1;
    }
    apply(acme_policy);
    apply(other_policy);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_audit_insert_fields),
        cmocka_unit_test(test_audit_insert_refuses_bad_fields),
        cmocka_unit_test(test_audit_insert_joins_transaction),
        cmocka_unit_test(test_audit_app_privileges),
        cmocka_unit_test(test_cred_write_joins_transaction),
        cmocka_unit_test(test_put_types),
        cmocka_unit_test(test_put_lifetimes),
        cmocka_unit_test(test_put_grants),
        cmocka_unit_test(test_put_refused_principals),
        cmocka_unit_test(test_access_granted),
        cmocka_unit_test(test_access_denials),
        cmocka_unit_test(test_access_expired),
        cmocka_unit_test(test_put_key_expiry_rules),
        cmocka_unit_test(test_access_key_expiry),
        cmocka_unit_test(test_access_integrity_error),
        cmocka_unit_test(test_fail_closed),
        cmocka_unit_test(test_fail_closed_put),
        cmocka_unit_test(test_revoke),
        cmocka_unit_test(test_put_many),
        cmocka_unit_test(test_phase),
        cmocka_unit_test(test_no_values_in_audit),
    };
    int failed;

    world_open("ops", "acme", &w);
    failed = cmocka_run_group_tests(tests, setup, NULL);
    world_close(&w);
    return failed;
}

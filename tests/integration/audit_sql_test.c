/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The audit schema as an auditor meets it, proved by the pgTAP files of
 * tests/sql/ against a database that a scripted scenario filled through the
 * real operations (put, access granted and denied for several reasons, an
 * unexpected purpose, a revoke, a phase move, a credential expiring within
 * days) and that the sealer then sealed completely with an audit signing key
 * in the token.
 *
 * tests/sql/views.sql holds the numbers this scenario must produce; a change
 * to the scenario is a change to that file. The run passes only when
 * pg_prove reports every file successful and the number of tests it ran is
 * the sum of the plans declared in the files, so a file that is skipped or
 * stops early cannot pass.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "world.h"

#include "coffer/arena.h"
#include "coffer/audit_seal.h"
#include "coffer/mem.h"
#include "coffer/ops.h"
#include "coffer/policy.h"

#include <glob.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TD "example.org"
#define SHORT_TTL_S (3 * 24 * 3600) /* expires within days: in audit.expiring_credentials */
#define LONG_TTL_S (90 * 24 * 3600) /* well beyond the 30 days the view looks ahead */
#define SEAL_ROUNDS_MAX 50
#define SQL_FILES_MAX 32

static struct world w;
static struct coffer_ops ops;
static unsigned rid_seq;

static const char policy_yaml[] = "version: 1\n"
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
                                  "      short-token:\n"
                                  "        grants:\n"
                                  "          - agent_type: builder\n"
                                  "      rev-key:\n"
                                  "        grants:\n"
                                  "          - agent_type: builder\n";

static struct coffer_principal agent(const char *type, const char *instance)
{
    struct coffer_principal p;

    memset(&p, 0, sizeof(p));
    p.kind = COFFER_PRINCIPAL_AGENT;
    snprintf(p.trust_domain, sizeof(p.trust_domain), "%s", TD);
    snprintf(p.org, sizeof(p.org), "acme");
    snprintf(p.agent_type, sizeof(p.agent_type), "%s", type);
    snprintf(p.instance, sizeof(p.instance), "%s", instance);
    return p;
}

static struct coffer_principal alice(void)
{
    struct coffer_principal p;

    memset(&p, 0, sizeof(p));
    p.kind = COFFER_PRINCIPAL_ADMIN;
    snprintf(p.trust_domain, sizeof(p.trust_domain), "%s", TD);
    snprintf(p.org, sizeof(p.org), "acme");
    snprintf(p.admin, sizeof(p.admin), "alice");
    return p;
}

static const char *rid(char out[16])
{
    snprintf(out, 16, "sql-%u", ++rid_seq);
    return out;
}

static void apply_policy(void)
{
    struct coffer_policy *p = NULL;
    struct coffer_policy_diags d = {0};
    struct coffer_arena *a = NULL;
    struct coffer_store_policy_result res;

    assert_int_equal(coffer_policy_new(&p), COFFER_OK);
    if (coffer_policy_add_buffer(p, "acme.yaml", policy_yaml, strlen(policy_yaml), &d) !=
            COFFER_OK ||
        coffer_policy_finish(p, &d) != COFFER_OK) {
        fail_msg("policy refused: %s", d.n > 0 ? d.lines[0] : "?");
    }
    assert_int_equal(coffer_arena_new(0, &a), COFFER_OK);
    if (coffer_store_policy_apply(w.st, &p->orgs[0], "audit-sql@test", a, &res) != COFFER_OK) {
        fail_msg("apply: %s", coffer_err_detail());
    }
    coffer_arena_free(&a);
    coffer_policy_diags_cleanup(&d);
    coffer_policy_free(&p);
}

/* Stores an api_key credential of tier medium with the given lifetime; asserts success. */
static void put(const char *name, int64_t ttl_s)
{
    struct coffer_principal adm = alice();
    struct coffer_op_meta m = {.who = &adm, .client_addr = "[::1]:5001"};
    struct coffer_keyset *ks = NULL;
    struct coffer_op_put p;
    char r[16];

    assert_int_equal(coffer_keyset_new(&ks), COFFER_OK);
    assert_int_equal(coffer_keyset_add(ks, "api_key", "value-not-audited", 17), COFFER_OK);
    memset(&p, 0, sizeof(p));
    p.org = "acme";
    p.project = "proj";
    p.name = name;
    p.type = "api_key";
    p.tier = "medium";
    p.keys = ks;
    p.ttl_s = ttl_s;
    m.request_id = rid(r);
    if (coffer_op_put(&ops, &m, &p) != COFFER_OK) {
        fail_msg("put %s: %s", name, coffer_err_detail());
    }
    assert_int_equal(p.version, 1);
    coffer_keyset_free(&ks);
}

/* One access; asserts the decision and, for a grant, whether the purpose was unexpected. */
static void access(const struct coffer_principal *who, const char *name, const char *purpose,
                   enum coffer_authz_reason want, bool unexpected)
{
    struct coffer_op_meta m = {.who = who, .client_addr = "10.0.0.7:443"};
    struct coffer_op_access a;
    char r[16];

    memset(&a, 0, sizeof(a));
    a.org = "acme";
    a.project = "proj";
    a.name = name;
    a.purpose = purpose;
    a.purpose_len = purpose != NULL ? strlen(purpose) : 0;
    m.request_id = rid(r);
    if (coffer_op_access(&ops, &m, &a) != COFFER_OK) {
        fail_msg("access %s: %s", name, coffer_err_detail());
    }
    assert_int_equal(a.decision.reason, want);
    assert_int_equal(a.decision.allow, want == COFFER_AUTHZ_GRANTED);
    if (a.decision.allow) {
        assert_int_equal(a.decision.purpose_unexpected, unexpected);
        assert_non_null(a.keys);
    } else {
        assert_null(a.keys);
    }
    coffer_keyset_free(&a.keys);
    coffer_free(a.expired_keys);
}

static void revoke(const char *name)
{
    struct coffer_principal adm = alice();
    struct coffer_op_meta m = {.who = &adm};
    struct coffer_op_revoke rv = {
        .org = "acme", .project = "proj", .name = name, .reason = "leaked in a CI log"};
    char r[16];

    m.request_id = rid(r);
    if (coffer_op_revoke(&ops, &m, &rv) != COFFER_OK) {
        fail_msg("revoke %s: %s", name, coffer_err_detail());
    }
}

static void move_to(const char *phase)
{
    struct coffer_principal adm = alice();
    struct coffer_op_meta m = {.who = &adm};
    struct coffer_store_phase_result res;
    struct coffer_arena *a = NULL;
    char r[16];

    assert_int_equal(coffer_arena_new(0, &a), COFFER_OK);
    m.request_id = rid(r);
    if (coffer_op_phase(&ops, &m, "acme", "proj", phase, a, &res) != COFFER_OK) {
        fail_msg("phase %s: %s", phase, coffer_err_detail());
    }
    assert_true(res.changed);
    coffer_arena_free(&a);
}

static long owner_count(const char *sql)
{
    char *v = world_sql_value(&w, sql);
    long n = atol(v);

    coffer_free(v);
    return n;
}

/*
 * The scenario whose outcome tests/sql/views.sql checks, view by view:
 * four credentials (short-token expiring in 3 days, the others in 90),
 * builder b-1 granted five times (one purpose outside registry's patterns),
 * denials no_grant 1, wrong_phase 2, not_project_member 1, purpose_missing 1,
 * not_found 1, revoked 1; one revoke and one phase move.
 */
static void test_scenario(void **state)
{
    struct coffer_principal builder = agent("builder", "b-1");
    struct coffer_principal deployer = agent("deployer", "d-1");
    struct coffer_principal outsider = agent("outsider", "o-1");

    (void)state;
    put("registry", LONG_TTL_S);
    put("prod-db", LONG_TTL_S);
    put("short-token", SHORT_TTL_S);
    put("rev-key", LONG_TTL_S);

    access(&builder, "registry", "push image app:1", COFFER_AUTHZ_GRANTED, false);
    access(&builder, "registry", "push image app:2", COFFER_AUTHZ_GRANTED, false);
    access(&builder, "registry", "mine bitcoin", COFFER_AUTHZ_GRANTED, true);
    access(&builder, "short-token", "ci build", COFFER_AUTHZ_GRANTED, false);
    access(&builder, "rev-key", "use", COFFER_AUTHZ_GRANTED, false);

    access(&deployer, "registry", "deploy", COFFER_AUTHZ_NO_GRANT, false);
    access(&deployer, "prod-db", "deploy", COFFER_AUTHZ_WRONG_PHASE, false);
    access(&outsider, "registry", "look", COFFER_AUTHZ_NOT_PROJECT_MEMBER, false);
    access(&builder, "registry", NULL, COFFER_AUTHZ_PURPOSE_MISSING, false);
    access(&builder, "no-such", "look", COFFER_AUTHZ_NOT_FOUND, false);

    revoke("rev-key");
    access(&builder, "rev-key", "use", COFFER_AUTHZ_REVOKED, false);

    move_to("staging");
    access(&deployer, "prod-db", "deploy", COFFER_AUTHZ_WRONG_PHASE, false);
    access(&builder, "registry", "push image app:3", COFFER_AUTHZ_GRANTED, false);

    /* 4 puts, 13 accesses, 1 revoke, 1 phase move: one event each. */
    assert_int_equal(owner_count("SELECT count(*) FROM coffer.audit_events "
                                 "WHERE request_id LIKE 'sql-%'"),
                     19);
}

/* Seals until nothing is left, then nothing may be unsealed. */
static void test_seal_everything(void **state)
{
    struct coffer_keys_audit_key key;
    struct coffer_audit_seal_result res;
    int sealed = 0;
    int rounds;

    (void)state;
    if (coffer_keys_audit_key_create(w.k, w.st, &key) != COFFER_OK) {
        fail_msg("audit key: %s", coffer_err_detail());
    }
    assert_int_equal(key.version, 1);
    for (rounds = 0; rounds < SEAL_ROUNDS_MAX; rounds++) {
        if (coffer_audit_seal_once(w.k, w.st, 2000, &res) != COFFER_OK) {
            fail_msg("seal: %s", coffer_err_detail());
        }
        if (!res.sealed && !res.busy) {
            break;
        }
        sealed += res.sealed ? 1 : 0;
    }
    assert_true(rounds < SEAL_ROUNDS_MAX);
    assert_true(sealed >= 1);
    assert_int_equal(owner_count("SELECT count(*) FROM coffer.audit_events WHERE id > "
                                 "(SELECT max(last_event) FROM coffer.audit_checkpoints)"),
                     0);
}

/* A conninfo as the cluster superuser on this test's database (of two dbname keywords, libpq takes
 * the last). */
static void super_conninfo(char *out, size_t cap)
{
    int n = snprintf(out, cap, "%s dbname=%s", w.h.env.db_super, w.h.dbname);

    assert_true(n > 0 && (size_t)n < cap);
}

static void prepare_pgtap(void)
{
    static const char *const steps[] = {
        "CREATE SCHEMA IF NOT EXISTS tap",
        "GRANT USAGE ON SCHEMA tap TO PUBLIC",
        "CREATE EXTENSION IF NOT EXISTS pgtap SCHEMA tap",
    };
    char conninfo[PATH_MAX + 256];
    PGconn *c;

    super_conninfo(conninfo, sizeof(conninfo));
    c = PQconnectdb(conninfo);
    if (PQstatus(c) != CONNECTION_OK) {
        fail_msg("superuser connection: %s", PQerrorMessage(c));
    }
    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        PGresult *res = PQexec(c, steps[i]);

        if (PQresultStatus(res) != PGRES_COMMAND_OK) {
            fail_msg("%s: %s", steps[i], PQerrorMessage(c));
        }
        PQclear(res);
    }
    PQfinish(c);
}

/* The n of the one "SELECT plan(n)" in a pgTAP file. */
static long planned(const char *path)
{
    static char text[1 << 18];
    const char *p;
    const char *again;
    FILE *f = fopen(path, "r");
    size_t n;

    assert_non_null(f);
    n = fread(text, 1, sizeof(text) - 1, f);
    assert_true(feof(f));
    fclose(f);
    text[n] = '\0';
    p = strstr(text, "SELECT plan(");
    if (p == NULL) {
        fail_msg("%s declares no plan", path);
    }
    again = strstr(p + 1, "SELECT plan(");
    assert_null(again);
    return strtol(p + strlen("SELECT plan("), NULL, 10);
}

/* The cluster superuser's name, from the fixture's conninfo ("... user=NAME ..."). */
static void super_user(char *out, size_t cap)
{
    const char *u = strstr(w.h.env.db_super, "user=");
    size_t len;

    assert_non_null(u);
    u += strlen("user=");
    len = strcspn(u, " ");
    assert_true(len > 0 && len < cap);
    snprintf(out, cap, "%.*s", (int)len, u);
}

static void test_pgtap(void **state)
{
    char pattern[PATH_MAX];
    char host[PATH_MAX + 8];
    char user[128];
    char pguser[160];
    char dbname[96];
    char want[64];
    const char *argv[SQL_FILES_MAX + 2];
    const char *envp[7];
    struct harness_run run = {.status = -1};
    bool have_privileges = false;
    bool have_views = false;
    long total = 0;
    size_t files = 0;
    size_t n = 0;
    glob_t g;

    (void)state;
    prepare_pgtap();
    /*
     * pg_prove hands these to psql through the environment: psql through
     * Debian's wrapper does not take a whole conninfo as --dbname.
     */
    super_user(user, sizeof(user));
    snprintf(host, sizeof(host), "PGHOST=%s", w.h.env.pg_socket_dir);
    snprintf(pguser, sizeof(pguser), "PGUSER=%s", user);
    snprintf(dbname, sizeof(dbname), "PGDATABASE=%s", w.h.dbname);
    envp[0] = "PATH=/usr/bin:/bin";
    envp[1] = "LANG=C";
    envp[2] = "PGTZ=UTC";
    envp[3] = host;
    envp[4] = pguser;
    envp[5] = dbname;
    envp[6] = NULL;

    snprintf(pattern, sizeof(pattern), "%s/tests/sql/*.sql", COFFER_SOURCE_DIR);
    assert_int_equal(glob(pattern, 0, NULL, &g), 0);
    assert_true(g.gl_pathc >= 2 && g.gl_pathc <= SQL_FILES_MAX);
    argv[n++] = "/usr/bin/pg_prove";
    for (size_t i = 0; i < g.gl_pathc; i++) {
        const char *base = strrchr(g.gl_pathv[i], '/') + 1;

        have_privileges |= strcmp(base, "privileges.sql") == 0;
        have_views |= strcmp(base, "views.sql") == 0;
        total += planned(g.gl_pathv[i]);
        argv[n++] = g.gl_pathv[i];
    }
    argv[n] = NULL;
    files = g.gl_pathc;
    if (have_privileges && have_views && total > 0) {
        harness_run(argv, envp, &run);
    }
    globfree(&g);
    assert_true(have_privileges);
    assert_true(have_views);
    assert_true(total > 0);
    snprintf(want, sizeof(want), "Files=%zu, Tests=%ld,", files, total);
    if (run.status != 0 || strstr(run.out, "All tests successful.") == NULL ||
        strstr(run.out, want) == NULL) {
        fprintf(stderr, "pg_prove: status %d, want '%s':\n%s\n", run.status, want, run.out);
    }
    assert_int_equal(run.status, 0);
    assert_non_null(strstr(run.out, "All tests successful."));
    assert_non_null(strstr(run.out, want));
}

static int setup(void **state)
{
    (void)state;
    ops.st = w.st;
    ops.k = w.k;
    apply_policy();
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scenario),
        cmocka_unit_test(test_seal_everything),
        cmocka_unit_test(test_pgtap),
    };
    int failed;

    world_open("audit_sql", "acme", &w);
    failed = cmocka_run_group_tests(tests, setup, NULL);
    world_close(&w);
    return failed;
}

/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The policy in force, against the real database: the worked example
 * applied, loaded back equal and shown as YAML that loads equal again
 * (round trip); a second apply writing nothing; a changed file reporting
 * exactly what changed and recording a version with the files' SHA-256; a
 * removed grant denying the next access; refusals (unknown org, a project
 * that stores credentials, a current phase dropped) that leave everything
 * as it was; phase changes expiring exactly the credentials marked for the
 * phase left, at the instant of the change; the lifetime checks of an
 * access (revoked, expired, tier maximum, another org); and usage specs with
 * reveal: false: stored as canonical JSON, loaded back equal, re-applied as
 * no change, returned by the access load, refusing the values
 * (secretless_only), and checked again when read from the database.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "world.h"

#include "coffer/arena.h"
#include "coffer/authz.h"
#include "coffer/mem.h"
#include "coffer/policy.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct world w;

static const char base_policy[] = "version: 1\n"
                                  "org: acme\n"
                                  "agent_types:\n"
                                  "  builder: {description: Builds}\n"
                                  "  deployer:\n"
                                  "  analyst:\n"
                                  "projects:\n"
                                  "  payments:\n"
                                  "    phases: [design, build, staging, production]\n"
                                  "    members: [builder, deployer, analyst]\n"
                                  "    credentials:\n"
                                  "      ci-registry:\n"
                                  "        grants:\n"
                                  "          - agent_type: builder\n"
                                  "            phases: [build, staging]\n"
                                  "        expire_on_phase_end: staging\n"
                                  "      stripe-live:\n"
                                  "        grants:\n"
                                  "          - agent_type: deployer\n"
                                  "          - agent_type: analyst\n"
                                  "            instance: metrics-1\n"
                                  "        purposes: [\"deploy *\"]\n"
                                  "      build-cache:\n"
                                  "        expire_on_phase_end: build\n"
                                  "        grants:\n"
                                  "          - agent_type: builder\n";

/* base_policy without the analyst grant of stripe-live, and with deployer described. */
static const char changed_policy[] = "version: 1\n"
                                     "org: acme\n"
                                     "agent_types:\n"
                                     "  builder: {description: Builds}\n"
                                     "  deployer: {description: Ships}\n"
                                     "  analyst:\n"
                                     "projects:\n"
                                     "  payments:\n"
                                     "    phases: [design, build, staging, production]\n"
                                     "    members: [builder, deployer, analyst]\n"
                                     "    credentials:\n"
                                     "      ci-registry:\n"
                                     "        grants:\n"
                                     "          - agent_type: builder\n"
                                     "            phases: [build, staging]\n"
                                     "        expire_on_phase_end: staging\n"
                                     "      stripe-live:\n"
                                     "        grants:\n"
                                     "          - agent_type: deployer\n"
                                     "        purposes: [\"deploy *\"]\n"
                                     "      build-cache:\n"
                                     "        expire_on_phase_end: build\n"
                                     "        grants:\n"
                                     "          - agent_type: builder\n";

/* Loads YAML text as one finished policy (asserting it is valid) and returns its only org. */
static const struct coffer_policy_org *load_text(const char *name, const char *yaml,
                                                 struct coffer_policy **p)
{
    struct coffer_policy_diags d = {0};

    assert_int_equal(coffer_policy_new(p), COFFER_OK);
    if (coffer_policy_add_buffer(*p, name, yaml, strlen(yaml), &d) != COFFER_OK ||
        coffer_policy_finish(*p, &d) != COFFER_OK) {
        for (size_t i = 0; i < d.n; i++) {
            fprintf(stderr, "%s\n", d.lines[i]);
        }
        fail_msg("policy %s did not load", name);
    }
    coffer_policy_diags_cleanup(&d);
    assert_int_equal((*p)->n_orgs, 1);
    return &(*p)->orgs[0];
}

static struct coffer_store_policy_result apply_text(const char *name, const char *yaml,
                                                    enum coffer_err want, struct coffer_arena *a)
{
    struct coffer_policy *p = NULL;
    struct coffer_store_policy_result res;
    const struct coffer_policy_org *o = load_text(name, yaml, &p);
    enum coffer_err r = coffer_store_policy_apply(w.st, o, "tester@host", a, &res);

    if (r != want) {
        fail_msg("apply %s: got %s (%s), want %s", name, coffer_err_str(r), coffer_err_detail(),
                 coffer_err_str(want));
    }
    coffer_policy_free(&p);
    return res;
}

/* Whether the changes include the line "<op> <what>[: <how>]". */
static bool has_change(const struct coffer_policy_changes *c, const char *line)
{
    char buf[512];

    for (size_t i = 0; i < c->n; i++) {
        if (c->items[i].how != NULL) {
            snprintf(buf, sizeof(buf), "%c %s: %s", (char)c->items[i].op, c->items[i].what,
                     c->items[i].how);
        } else {
            snprintf(buf, sizeof(buf), "%c %s", (char)c->items[i].op, c->items[i].what);
        }
        if (strcmp(buf, line) == 0) {
            return true;
        }
    }
    for (size_t i = 0; i < c->n; i++) {
        fprintf(stderr, "  have: %c %s%s%s\n", (char)c->items[i].op, c->items[i].what,
                c->items[i].how != NULL ? ": " : "",
                c->items[i].how != NULL ? c->items[i].how : "");
    }
    fprintf(stderr, "  want: %s\n", line);
    return false;
}

static struct coffer_project project(const char *name)
{
    struct coffer_project p;

    assert_int_equal(coffer_store_project_by_name(w.st, &w.org.id, name, &p), COFFER_OK);
    return p;
}

static void put(const char *project_name, const char *cred)
{
    static const char *const names[] = {"token"};
    static const char *const values[] = {"s3cret-value"};
    static const size_t lens[] = {12};
    struct coffer_project p = project(project_name);

    (void)world_put(&w, &w.org, &p, cred, 1, names, values, lens);
}

/* Decides an access of org/payments/cred by type/instance with purpose, as the server will. */
static struct coffer_authz_decision decide(const char *org, const char *cred, const char *type,
                                           const char *instance, const char *purpose)
{
    struct coffer_arena *a = NULL;
    struct coffer_authz_input in = {0};
    struct coffer_store_access acc;
    struct coffer_authz_decision d;

    assert_int_equal(coffer_arena_new(0, &a), COFFER_OK);
    if (coffer_store_access_load(w.st, org, "payments", cred, a, &in, &acc) != COFFER_OK) {
        fail_msg("loading %s/payments/%s: %s", org, cred, coffer_err_detail());
    }
    assert_int_equal(acc.found, in.found);
    in.principal.org = "acme";
    in.principal.agent_type = type;
    in.principal.instance = instance;
    in.purpose = purpose;
    in.purpose_len = purpose != NULL ? strlen(purpose) : 0;
    coffer_authz_decide(&in, &d);
    coffer_arena_free(&a);
    return d;
}

static enum coffer_authz_reason reason(const char *cred, const char *type, const char *instance)
{
    return decide("acme", cred, type, instance, "deploy payments v2").reason;
}

/* Moves acme/payments and returns the result (asserting want). */
static struct coffer_store_phase_result move(const char *phase, enum coffer_err want,
                                             struct coffer_arena *a)
{
    struct coffer_store_phase_result res;
    enum coffer_err r =
        coffer_store_project_phase(w.st, "acme", "payments", phase, "tester@host", a, &res);

    if (r != want) {
        fail_msg("phase %s: got %s (%s)", phase, coffer_err_str(r), coffer_err_detail());
    }
    return res;
}

static void test_round_trip(void **state)
{
    struct coffer_arena *a = NULL;
    struct coffer_policy *p = NULL;
    struct coffer_policy *again = NULL;
    struct coffer_policy_org db;
    struct coffer_policy_changes diff;
    struct coffer_buf shown = {0};
    struct coffer_buf from_file = {0};
    struct coffer_store_policy_result res;
    const struct coffer_policy_org *file;
    char path[1024];
    FILE *f;
    char *yaml;
    long len;

    (void)state;
    assert_int_equal(coffer_arena_new(0, &a), COFFER_OK);
    snprintf(path, sizeof(path), "%s/policy/acme.yaml", COFFER_SOURCE_DIR);
    assert_non_null(f = fopen(path, "rb"));
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    len = ftell(f);
    rewind(f);
    assert_non_null(yaml = coffer_calloc((size_t)len + 1, 1));
    assert_int_equal(fread(yaml, 1, (size_t)len, f), (size_t)len);
    fclose(f);

    /* The worked example applies as version 1, listing what it adds. */
    res = apply_text("acme.yaml", yaml, COFFER_OK, a);
    assert_true(res.changed);
    assert_int_equal(res.version, 1);
    assert_true(has_change(&res.changes, "+ agent type builder"));
    assert_true(has_change(&res.changes, "+ project payments"));
    assert_true(world_sql_is(&w, "SELECT count(*) FROM coffer.policy_versions", "1"));

    /* Applying the same file again changes nothing and writes nothing. */
    res = apply_text("acme.yaml", yaml, COFFER_OK, a);
    assert_false(res.changed);
    assert_int_equal(res.version, 1);
    assert_int_equal(res.changes.n, 0);
    assert_true(world_sql_is(&w, "SELECT count(*) FROM coffer.policy_versions", "1"));

    /* What is in force equals the file, and shows as the same YAML. */
    file = load_text("acme.yaml", yaml, &p);
    assert_int_equal(coffer_store_policy_load(w.st, &w.org, a, &db), COFFER_OK);
    assert_int_equal(coffer_policy_diff(&db, file, a, &diff), COFFER_OK);
    assert_int_equal(diff.n, 0);
    assert_int_equal(coffer_policy_emit(&db, &shown), COFFER_OK);
    assert_int_equal(coffer_policy_emit(file, &from_file), COFFER_OK);
    assert_int_equal(shown.len, from_file.len);
    assert_memory_equal(shown.data, from_file.data, shown.len);

    /* The shown YAML loads equal, and applying it changes nothing. */
    assert_int_equal(coffer_buf_put_u8(&shown, 0), COFFER_OK);
    res = apply_text("shown.yaml", (const char *)shown.data, COFFER_OK, a);
    assert_false(res.changed);
    (void)load_text("shown.yaml", (const char *)shown.data, &again);
    assert_int_equal(coffer_policy_diff(&db, &again->orgs[0], a, &diff), COFFER_OK);
    assert_int_equal(diff.n, 0);

    /* The version records the file's SHA-256 and the shown text's. */
    {
        unsigned char d[32];
        char hex[65];
        char sql[256];

        assert_int_equal(EVP_Digest(yaml, (size_t)len, d, NULL, EVP_sha256(), NULL), 1);
        coffer_hex(d, sizeof(d), hex);
        snprintf(sql, sizeof(sql),
                 "SELECT file_sha256[1] = '%s' AND file_paths[1] = 'acme.yaml' "
                 "FROM coffer.policy_versions WHERE version = 1",
                 hex);
        assert_true(world_sql_is(&w, sql, "t"));
        assert_int_equal(EVP_Digest(shown.data, shown.len - 1, d, NULL, EVP_sha256(), NULL), 1);
        coffer_hex(d, sizeof(d), hex);
        snprintf(sql, sizeof(sql),
                 "SELECT policy_sha256 = '%s' AND applied_by = 'tester@host' "
                 "FROM coffer.policy_versions WHERE version = 1",
                 hex);
        assert_true(world_sql_is(&w, sql, "t"));
    }
    coffer_buf_cleanup(&shown);
    coffer_buf_cleanup(&from_file);
    coffer_policy_free(&p);
    coffer_policy_free(&again);
    coffer_free(yaml);
    coffer_arena_free(&a);
}

static void test_changes_and_removed_grant(void **state)
{
    struct coffer_arena *a = NULL;
    struct coffer_store_policy_result res;

    (void)state;
    assert_int_equal(coffer_arena_new(0, &a), COFFER_OK);
    res = apply_text("base.yaml", base_policy, COFFER_OK, a);
    assert_true(res.changed);
    put("payments", "stripe-live");
    assert_int_equal(reason("stripe-live", "deployer", "d-1"), COFFER_AUTHZ_GRANTED);
    assert_int_equal(reason("stripe-live", "analyst", "metrics-1"), COFFER_AUTHZ_GRANTED);
    assert_int_equal(reason("stripe-live", "analyst", "metrics-2"), COFFER_AUTHZ_NO_GRANT);
    assert_int_equal(reason("stripe-live", "builder", "b-1"), COFFER_AUTHZ_NO_GRANT);

    /* Drop the analyst grant and describe deployer. */
    res = apply_text("changed.yaml", changed_policy, COFFER_OK, a);
    assert_true(res.changed);
    assert_true(has_change(&res.changes, "- grant payments/stripe-live to analyst/metrics-1"));
    assert_true(has_change(&res.changes, "~ agent type deployer: description"));
    assert_int_equal(res.changes.n, 2);

    /* The removed grant denies the very next access; the rest still works. */
    assert_int_equal(reason("stripe-live", "analyst", "metrics-1"), COFFER_AUTHZ_NO_GRANT);
    assert_int_equal(reason("stripe-live", "deployer", "d-1"), COFFER_AUTHZ_GRANTED);
    assert_true(world_sql_is(&w,
                             "SELECT max(version) || ':' || (SELECT cardinality(changes) "
                             "FROM coffer.policy_versions WHERE version = 3) "
                             "FROM coffer.policy_versions",
                             "3:2"));
    assert_true(world_sql_is(&w,
                             "SELECT changes[1] || '|' || changes[2] FROM coffer.policy_versions "
                             "WHERE version = 3",
                             "~ agent type deployer: description|"
                             "- grant payments/stripe-live to analyst/metrics-1"));
    coffer_arena_free(&a);
}

static void test_refusals_write_nothing(void **state)
{
    struct coffer_arena *a = NULL;
    static const char other_org[] = "version: 1\norg: nosuch\n";
    static const char no_payments[] = "version: 1\norg: acme\nagent_types: {deployer: }\n";
    char *before;
    char *after;

    (void)state;
    assert_int_equal(coffer_arena_new(0, &a), COFFER_OK);
    before = world_sql_value(&w, "SELECT count(*) || '/' || (SELECT count(*) FROM coffer.grants) "
                                 "|| '/' || (SELECT count(*) FROM coffer.agent_types) "
                                 "FROM coffer.policy_versions");

    (void)apply_text("other.yaml", other_org, COFFER_E_NOT_FOUND, a);
    assert_non_null(strstr(coffer_err_detail(), "coffer org create nosuch"));

    /* payments stores a credential: a policy cannot drop the project. */
    (void)apply_text("drop.yaml", no_payments, COFFER_E_STATE, a);
    assert_non_null(strstr(coffer_err_detail(), "payments"));
    assert_non_null(strstr(coffer_err_detail(), "1 credential"));

    after = world_sql_value(&w, "SELECT count(*) || '/' || (SELECT count(*) FROM coffer.grants) "
                                "|| '/' || (SELECT count(*) FROM coffer.agent_types) "
                                "FROM coffer.policy_versions");
    assert_string_equal(before, after);
    free(before);
    free(after);
    assert_int_equal(reason("stripe-live", "deployer", "d-1"), COFFER_AUTHZ_GRANTED);
    coffer_arena_free(&a);
}

static void test_phase_change_expires_marked(void **state)
{
    struct coffer_arena *a = NULL;
    struct coffer_store_phase_result res;
    struct coffer_store_access acc;
    struct coffer_authz_input in = {0};
    struct coffer_project p = project("payments");

    (void)state;
    assert_int_equal(coffer_arena_new(0, &a), COFFER_OK);
    put("payments", "ci-registry"); /* rule: expire_on_phase_end staging */
    put("payments", "build-cache"); /* rule: expire_on_phase_end build */
    put("payments", "own-marker");  /* no rule; the credential itself says staging */
    put("payments", "plain");       /* nothing */
    assert_int_equal(coffer_store_access_load(w.st, "acme", "payments", "own-marker", a, &in, &acc),
                     COFFER_OK);
    assert_true(acc.found);
    assert_int_equal(coffer_store_cred_set_lifetime(w.st, &w.org.id, &acc.credential_id,
                                                    COFFER_AUTHZ_NO_EXPIRY, "staging"),
                     COFFER_OK);
    (void)p;

    /* The project starts in its initial phase (the first). */
    assert_true(
        world_sql_is(&w, "SELECT phase FROM coffer.projects WHERE name = 'payments'", "design"));
    assert_int_equal(reason("ci-registry", "builder", "b-1"), COFFER_AUTHZ_WRONG_PHASE);

    /* Unknown phase: an error naming the phases, nothing changes. */
    (void)move("qa", COFFER_E_INVALID, a);
    assert_non_null(strstr(coffer_err_detail(), "design,build,staging,production"));
    assert_true(world_sql_is(&w, "SELECT count(*) FROM coffer.phase_changes", "0"));

    res = move("build", COFFER_OK, a);
    assert_true(res.changed);
    assert_string_equal(res.from, "design");
    assert_string_equal(res.to, "build");
    assert_int_equal(res.n_expired, 0);
    assert_int_equal(reason("ci-registry", "builder", "b-1"), COFFER_AUTHZ_GRANTED);

    /* Moving to the current phase changes nothing. */
    res = move("build", COFFER_OK, a);
    assert_false(res.changed);
    assert_true(world_sql_is(&w, "SELECT count(*) FROM coffer.phase_changes", "1"));

    /* Leaving build expires build-cache only. */
    res = move("staging", COFFER_OK, a);
    assert_true(res.changed);
    assert_int_equal(res.n_expired, 1);
    assert_string_equal(res.expired[0], "build-cache");
    assert_int_equal(reason("build-cache", "builder", "b-1"), COFFER_AUTHZ_EXPIRED);
    assert_int_equal(reason("ci-registry", "builder", "b-1"), COFFER_AUTHZ_GRANTED);

    /* Leaving staging expires the rule-marked and the self-marked credential, at the same instant.
     */
    res = move("production", COFFER_OK, a);
    assert_true(res.changed);
    assert_int_equal(res.n_expired, 2);
    assert_string_equal(res.expired[0], "ci-registry");
    assert_string_equal(res.expired[1], "own-marker");
    assert_true(world_sql_is(&w,
                             "SELECT count(*) FROM coffer.credentials c JOIN coffer.projects p "
                             "ON p.id = c.project_id WHERE c.expires_at = p.phase_changed_at",
                             "2"));
    assert_true(world_sql_is(&w,
                             "SELECT count(*) FROM coffer.credentials "
                             "WHERE name IN ('plain', 'stripe-live') AND expires_at IS NOT NULL",
                             "0"));
    assert_true(world_sql_is(&w,
                             "SELECT from_phase || '>' || to_phase || ':' || "
                             "array_to_string(expired_credentials, ',') || ':' || changed_by "
                             "FROM coffer.phase_changes ORDER BY id DESC LIMIT 1",
                             "staging>production:ci-registry,own-marker:tester@host"));
    /* The phase just changed: the builder grant (build, staging) no longer covers it. */
    assert_int_equal(reason("ci-registry", "builder", "b-1"), COFFER_AUTHZ_WRONG_PHASE);

    /* An expired credential stays expired when the project comes back. */
    res = move("staging", COFFER_OK, a);
    assert_int_equal(res.n_expired, 0);
    assert_int_equal(reason("ci-registry", "builder", "b-1"), COFFER_AUTHZ_EXPIRED);

    /* A policy cannot drop the phase the project is in. */
    {
        static const char drop_staging[] =
            "version: 1\norg: acme\nagent_types: {builder: , deployer: , analyst: }\n"
            "projects:\n  payments:\n    phases: [design, build, production]\n";

        (void)apply_text("drop-staging.yaml", drop_staging, COFFER_E_STATE, a);
        assert_non_null(strstr(coffer_err_detail(), "phase 'staging'"));
    }
    coffer_arena_free(&a);
}

static void test_access_lifetimes(void **state)
{
    struct coffer_arena *a = NULL;
    struct coffer_authz_input in = {0};
    struct coffer_store_access acc;

    (void)state;
    assert_int_equal(coffer_arena_new(0, &a), COFFER_OK);
    /* Another org's name finds nothing, even for a credential that exists in acme. */
    assert_int_equal(
        coffer_store_access_load(w.st, "other", "payments", "stripe-live", a, &in, &acc),
        COFFER_OK);
    assert_false(acc.found);
    assert_int_equal(decide("other", "stripe-live", "deployer", "d-1", "deploy x").reason,
                     COFFER_AUTHZ_NOT_FOUND);
    assert_int_equal(reason("no-such-cred", "deployer", "d-1"), COFFER_AUTHZ_NOT_FOUND);

    /* Purpose patterns: an unexpected purpose is allowed and flagged. */
    {
        struct coffer_authz_decision d =
            decide("acme", "stripe-live", "deployer", "d-1", "read the dashboard");

        assert_int_equal(d.reason, COFFER_AUTHZ_GRANTED);
        assert_true(d.purpose_unexpected);
        d = decide("acme", "stripe-live", "deployer", "d-1", "Deploy payments v3");
        assert_false(d.purpose_unexpected);
        d = decide("acme", "stripe-live", "deployer", "d-1", "");
        assert_int_equal(d.reason, COFFER_AUTHZ_PURPOSE_MISSING);
    }

    /* An expiry in the past refuses; none again allows. */
    assert_int_equal(
        coffer_store_access_load(w.st, "acme", "payments", "stripe-live", a, &in, &acc), COFFER_OK);
    assert_true(acc.found);
    assert_int_equal(
        coffer_store_cred_set_lifetime(w.st, &w.org.id, &acc.credential_id, in.now_us - 1, NULL),
        COFFER_OK);
    assert_int_equal(reason("stripe-live", "deployer", "d-1"), COFFER_AUTHZ_EXPIRED);
    assert_int_equal(coffer_store_cred_set_lifetime(w.st, &w.org.id, &acc.credential_id,
                                                    COFFER_AUTHZ_NO_EXPIRY, NULL),
                     COFFER_OK);
    assert_int_equal(reason("stripe-live", "deployer", "d-1"), COFFER_AUTHZ_GRANTED);

    /* The tier's max TTL applies from the time the version was stored. */
    world_sql(&w, "UPDATE coffer.credentials SET updated_at = now() - interval '400 days' "
                  "WHERE name = 'stripe-live'");
    assert_int_equal(reason("stripe-live", "deployer", "d-1"), COFFER_AUTHZ_EXPIRED);
    world_sql(&w, "UPDATE coffer.credentials SET updated_at = now() WHERE name = 'stripe-live'");
    assert_int_equal(reason("stripe-live", "deployer", "d-1"), COFFER_AUTHZ_GRANTED);

    /* Critical needs a standing approval, which nobody has given. */
    world_sql(&w, "UPDATE coffer.credentials SET tier = 'critical' WHERE name = 'stripe-live'");
    assert_int_equal(reason("stripe-live", "deployer", "d-1"), COFFER_AUTHZ_APPROVAL_REQUIRED);
    world_sql(&w, "UPDATE coffer.credentials SET tier = 'medium' WHERE name = 'stripe-live'");

    /* Revocation refuses at once, and cannot be repeated. */
    assert_int_equal(coffer_store_cred_revoke(w.st, &w.org.id, &acc.credential_id, "leaked"),
                     COFFER_OK);
    assert_int_equal(reason("stripe-live", "deployer", "d-1"), COFFER_AUTHZ_REVOKED);
    assert_int_equal(coffer_store_cred_revoke(w.st, &w.org.id, &acc.credential_id, "again"),
                     COFFER_E_STATE);
    assert_int_equal(coffer_store_cred_revoke(w.st, &w.org.id, &acc.credential_id, "bad\nreason"),
                     COFFER_E_INVALID);
    /* Not a member: the agent type exists but the project does not list it. */
    world_sql(&w, "DELETE FROM coffer.project_members WHERE agent_type = 'deployer'");
    assert_int_equal(reason("stripe-live", "deployer", "d-1"), COFFER_AUTHZ_NOT_PROJECT_MEMBER);
    coffer_arena_free(&a);
}

static void test_app_role_cannot_rewrite_history(void **state)
{
    PGconn *app = PQconnectdb(w.h.db_app);
    static const char *const denied[] = {
        "UPDATE coffer.policy_versions SET applied_by = 'someone else'",
        "DELETE FROM coffer.policy_versions",
        "DELETE FROM coffer.phase_changes",
        "UPDATE coffer.phase_changes SET to_phase = 'design'",
        "TRUNCATE coffer.grants",
        "DELETE FROM coffer.projects",
    };

    (void)state;
    assert_int_equal(PQstatus(app), CONNECTION_OK);
    for (size_t i = 0; i < sizeof(denied) / sizeof(denied[0]); i++) {
        PGresult *res = PQexec(app, denied[i]);

        if (PQresultStatus(res) != PGRES_FATAL_ERROR ||
            strcmp(PQresultErrorField(res, PG_DIAG_SQLSTATE), "42501") != 0) {
            fail_msg("coffer_app was allowed: %s", denied[i]);
        }
        PQclear(res);
    }
    PQfinish(app);
}

static void test_auditor_reads_history_only(void **state)
{
    char conninfo[PATH_MAX + 160];
    PGconn *aud;
    PGresult *res;

    (void)state;
    snprintf(conninfo, sizeof(conninfo), "%s user=coffer_auditor", w.h.db_app);
    aud = PQconnectdb(conninfo);
    assert_int_equal(PQstatus(aud), CONNECTION_OK);
    res = PQexec(aud, "SELECT count(*) FROM audit.policy_versions WHERE org = 'acme' "
                      "AND cardinality(changes) > 0 AND policy LIKE '%org: acme%'");
    assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
    assert_string_equal(PQgetvalue(res, 0, 0), "3");
    PQclear(res);
    res = PQexec(aud, "SELECT count(*) FROM audit.phase_changes WHERE project = 'payments'");
    assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
    assert_string_equal(PQgetvalue(res, 0, 0), "4");
    PQclear(res);
    res = PQexec(aud, "SELECT * FROM coffer.grants");
    assert_int_equal(PQresultStatus(res), PGRES_FATAL_ERROR);
    assert_string_equal(PQresultErrorField(res, PG_DIAG_SQLSTATE), "42501");
    PQclear(res);
    PQfinish(aud);
}

/* changed_policy with a usage spec and reveal: false on stripe-live, and a used rule for plain. */
#define STRIPE_RULE                                                                                \
    "      stripe-live:\n"                                                                         \
    "        grants:\n"                                                                            \
    "          - agent_type: deployer\n"                                                           \
    "        purposes: [\"deploy *\"]\n"                                                           \
    "        usage:\n"                                                                             \
    "          destinations: [\"https://files.stripe.com\", \"https://api.stripe.com/v1\"]\n"      \
    "          methods: [POST, GET]\n"                                                             \
    "          inject:\n"                                                                          \
    "            - header: Authorization\n"                                                        \
    "              value: \"Bearer {{token}}\"\n"
#define USAGE_HEAD                                                                                 \
    "version: 1\n"                                                                                 \
    "org: acme\n"                                                                                  \
    "agent_types:\n"                                                                               \
    "  builder: {description: Builds}\n"                                                           \
    "  deployer: {description: Ships}\n"                                                           \
    "  analyst:\n"                                                                                 \
    "projects:\n"                                                                                  \
    "  payments:\n"                                                                                \
    "    phases: [design, build, staging, production]\n"                                           \
    "    members: [builder, deployer, analyst]\n"                                                  \
    "    credentials:\n"                                                                           \
    "      ci-registry:\n"                                                                         \
    "        grants:\n"                                                                            \
    "          - agent_type: builder\n"                                                            \
    "            phases: [build, staging]\n"                                                       \
    "        expire_on_phase_end: staging\n"                                                       \
    "      build-cache:\n"                                                                         \
    "        expire_on_phase_end: build\n"                                                         \
    "        grants:\n"                                                                            \
    "          - agent_type: builder\n"                                                            \
    "      plain:\n"                                                                               \
    "        grants: [{agent_type: deployer}]\n"                                                   \
    "        usage: {destinations: [\"https://plain.example.com\"], methods: [GET]}\n"

static const char usage_policy[] = USAGE_HEAD STRIPE_RULE "        reveal: false\n";
static const char revealed_policy[] = USAGE_HEAD STRIPE_RULE;

#define STRIPE_JSON                                                                                \
    "{\"destinations\":[\"https://api.stripe.com/v1\",\"https://files.stripe.com\"],"              \
    "\"methods\":[\"GET\",\"POST\"],\"inject\":[{\"header\":\"Authorization\","                    \
    "\"value\":\"Bearer {{token}}\"}]}"

/* Runs sql as coffer_owner; it must fail with SQLSTATE state. */
static void owner_sql_fails(const char *sql, const char *state)
{
    PGconn *c = PQconnectdb(w.h.db_owner);
    PGresult *res;

    assert_int_equal(PQstatus(c), CONNECTION_OK);
    res = PQexec(c, sql);
    if (PQresultStatus(res) != PGRES_FATAL_ERROR ||
        strcmp(PQresultErrorField(res, PG_DIAG_SQLSTATE), state) != 0) {
        fail_msg("%s: expected SQLSTATE %s, got %s", sql, state, PQresStatus(PQresultStatus(res)));
    }
    PQclear(res);
    PQfinish(c);
}

static void test_usage_apply_and_access(void **state)
{
    struct coffer_arena *a = NULL;
    struct coffer_store_policy_result res;
    struct coffer_policy *p = NULL;
    struct coffer_policy_org db;
    struct coffer_policy_changes diff;
    struct coffer_buf shown = {0};
    struct coffer_buf from_file = {0};
    struct coffer_authz_input in = {0};
    struct coffer_store_access acc;
    const struct coffer_policy_org *file;

    (void)state;
    assert_int_equal(coffer_arena_new(0, &a), COFFER_OK);
    /* Adding a usage spec and reveal: false are changes of the rule, one line each. */
    res = apply_text("usage.yaml", usage_policy, COFFER_OK, a);
    assert_true(res.changed);
    assert_true(
        has_change(&res.changes, "~ credential rule payments/stripe-live: usage (none) -> set"));
    assert_true(
        has_change(&res.changes, "~ credential rule payments/stripe-live: reveal true -> false"));
    assert_true(has_change(&res.changes, "+ credential rule payments/plain"));
    /* Stored as canonical JSON beside the reveal setting. */
    assert_true(world_sql_is(&w,
                             "SELECT usage || '|' || secretless_only FROM coffer.credential_rules "
                             "WHERE name = 'stripe-live'",
                             STRIPE_JSON "|true"));
    assert_true(
        world_sql_is(&w,
                     "SELECT usage || '|' || secretless_only FROM coffer.credential_rules "
                     "WHERE name = 'plain'",
                     "{\"destinations\":[\"https://plain.example.com\"],\"methods\":[\"GET\"],"
                     "\"inject\":[]}|false"));
    assert_true(world_sql_is(&w,
                             "SELECT count(*) FROM coffer.credential_rules WHERE usage IS NULL "
                             "AND NOT secretless_only",
                             "2"));
    assert_true(world_sql_is(&w,
                             "SELECT changes[array_position(changes, '~ credential rule "
                             "payments/stripe-live: reveal true -> false')] IS NOT NULL "
                             "FROM coffer.policy_versions ORDER BY version DESC LIMIT 1",
                             "t"));

    /* Applying it again changes nothing; what is in force equals the file and shows the same. */
    res = apply_text("usage.yaml", usage_policy, COFFER_OK, a);
    assert_false(res.changed);
    assert_int_equal(res.changes.n, 0);
    file = load_text("usage.yaml", usage_policy, &p);
    assert_int_equal(coffer_store_policy_load(w.st, &w.org, a, &db), COFFER_OK);
    assert_int_equal(coffer_policy_diff(&db, file, a, &diff), COFFER_OK);
    assert_int_equal(diff.n, 0);
    assert_true(db.projects[0].creds[3].secretless_only);
    assert_string_equal(db.projects[0].creds[3].name, "stripe-live");
    assert_int_equal(db.projects[0].creds[3].usage->n_destinations, 2);
    assert_int_equal(coffer_policy_emit(&db, &shown), COFFER_OK);
    assert_int_equal(coffer_policy_emit(file, &from_file), COFFER_OK);
    assert_int_equal(shown.len, from_file.len);
    assert_memory_equal(shown.data, from_file.data, shown.len);
    assert_int_equal(coffer_buf_put_u8(&shown, 0), COFFER_OK);
    assert_non_null(strstr((const char *)shown.data, "        reveal: false\n"));
    coffer_policy_free(&p);

    /* The access load returns the spec and the setting for the decision and for brokered use. */
    assert_int_equal(
        coffer_store_access_load(w.st, "acme", "payments", "stripe-live", a, &in, &acc), COFFER_OK);
    assert_true(acc.found);
    assert_true(acc.secretless_only);
    assert_true(in.secretless_only);
    assert_non_null(acc.usage);
    assert_string_equal(acc.usage, STRIPE_JSON);
    assert_int_equal(coffer_store_access_load(w.st, "acme", "payments", "plain", a, &in, &acc),
                     COFFER_OK);
    assert_false(acc.secretless_only);
    assert_false(in.secretless_only);
    assert_non_null(acc.usage);
    assert_int_equal(coffer_store_access_load(w.st, "acme", "payments", "own-marker", a, &in, &acc),
                     COFFER_OK);
    assert_true(acc.found);
    assert_false(acc.secretless_only);
    assert_null(acc.usage);

    /*
     * The grant holder is told secretless_only, even for the revoked stripe-live (values are
     * never revealed, whatever its state); without a grant the answer stays no_grant.
     */
    assert_int_equal(reason("stripe-live", "deployer", "d-1"), COFFER_AUTHZ_SECRETLESS_ONLY);
    assert_int_equal(reason("stripe-live", "analyst", "metrics-1"), COFFER_AUTHZ_NO_GRANT);
    assert_int_equal(reason("plain", "deployer", "d-1"), COFFER_AUTHZ_GRANTED);

    /* reveal: false taken away: one change, and the values are refused for what they are. */
    res = apply_text("revealed.yaml", revealed_policy, COFFER_OK, a);
    assert_true(res.changed);
    assert_int_equal(res.changes.n, 1);
    assert_true(
        has_change(&res.changes, "~ credential rule payments/stripe-live: reveal false -> true"));
    assert_true(world_sql_is(&w,
                             "SELECT secretless_only FROM coffer.credential_rules "
                             "WHERE name = 'stripe-live'",
                             "f"));
    assert_int_equal(reason("stripe-live", "deployer", "d-1"), COFFER_AUTHZ_REVOKED);

    /* The database refuses reveal: false without a spec, and a spec that is not a JSON object. */
    owner_sql_fails("UPDATE coffer.credential_rules SET secretless_only = true, usage = NULL "
                    "WHERE name = 'stripe-live'",
                    "23514");
    owner_sql_fails("UPDATE coffer.credential_rules SET usage = '[]' WHERE name = 'stripe-live'",
                    "23514");
    /* A spec altered behind the policy is an integrity error when read, never handed on. */
    world_sql(&w, "UPDATE coffer.credential_rules SET usage = '{\"destinations\":"
                  "[\"http://evil.example.com\"],\"methods\":[\"GET\"],\"inject\":[]}' "
                  "WHERE name = 'plain'");
    assert_int_equal(coffer_store_access_load(w.st, "acme", "payments", "plain", a, &in, &acc),
                     COFFER_E_INTEGRITY);
    assert_false(acc.found);
    assert_null(acc.usage);
    assert_int_equal(coffer_store_policy_load(w.st, &w.org, a, &db), COFFER_E_INTEGRITY);
    world_sql(&w, "UPDATE coffer.credential_rules SET usage = '{\"destinations\":"
                  "[\"https://plain.example.com\"],\"methods\":[\"GET\"],\"inject\":[]}' "
                  "WHERE name = 'plain'");
    assert_int_equal(coffer_store_policy_load(w.st, &w.org, a, &db), COFFER_OK);
    coffer_buf_cleanup(&shown);
    coffer_buf_cleanup(&from_file);
    coffer_arena_free(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_changes_and_removed_grant),
        cmocka_unit_test(test_refusals_write_nothing),
        cmocka_unit_test(test_phase_change_expires_marked),
        cmocka_unit_test(test_access_lifetimes),
        cmocka_unit_test(test_app_role_cannot_rewrite_history),
        cmocka_unit_test(test_auditor_reads_history_only),
        cmocka_unit_test(test_usage_apply_and_access),
    };
    int rc;

    world_open("policy_store", "acme", &w);
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    world_close(&w);
    return rc;
}

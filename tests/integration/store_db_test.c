/* SPDX-License-Identifier: Apache-2.0 */
/*
 * store against a real PostgreSQL 15: migrations are idempotent and refuse a
 * tampered or newer ledger; connecting fails fast and never echoes a
 * password; orgs, master keys, org keys and credentials round-trip with the
 * documented errors; reads are confined to their org; compare-and-swap
 * rewraps have exactly one winner; the sweep finds stale rows page by page;
 * the roles cannot do what they must not; and a corrupted column read back
 * is an integrity error naming table and column.
 *
 * The test talks to PostgreSQL directly (as owner, app, auditor and
 * superuser) only to set up what the store must refuse and to check
 * privileges; everything under test goes through include/coffer/store.h.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <libpq-fe.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "coffer/mem.h"
#include "coffer/store.h"
#include "harness.h"

static struct harness h;
static struct coffer_store *st;

/* ---- Direct SQL, for setting up and for checking privileges ---------------- */

static PGresult *run_as(const char *conninfo, const char *sql, PGconn **keep)
{
    PGconn *c = PQconnectdb(conninfo);
    PGresult *res;

    if (PQstatus(c) != CONNECTION_OK) {
        fprintf(stderr, "connect: %s", PQerrorMessage(c));
        PQfinish(c);
        fail_msg("cannot connect for direct SQL");
    }
    res = PQexec(c, sql);
    *keep = c;
    return res;
}

static void sql_ok(const char *conninfo, const char *sql)
{
    PGconn *c = NULL;
    PGresult *res = run_as(conninfo, sql, &c);
    ExecStatusType s = PQresultStatus(res);

    if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK) {
        fprintf(stderr, "%s: %s", sql, PQresultErrorMessage(res));
    }
    assert_true(s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK);
    PQclear(res);
    PQfinish(c);
}

/* The statement must fail with exactly this SQLSTATE. */
static void sql_fails(const char *conninfo, const char *sql, const char *sqlstate)
{
    PGconn *c = NULL;
    PGresult *res = run_as(conninfo, sql, &c);
    const char *got = PQresultErrorField(res, PG_DIAG_SQLSTATE);

    assert_int_equal(PQresultStatus(res), PGRES_FATAL_ERROR);
    assert_non_null(got);
    if (strcmp(got, sqlstate) != 0) {
        fprintf(stderr, "%s: want SQLSTATE %s, got %s: %s", sql, sqlstate, got,
                PQresultErrorMessage(res));
    }
    assert_string_equal(got, sqlstate);
    PQclear(res);
    PQfinish(c);
}

/* First column of the first row as text, into out. */
static void sql_value(const char *conninfo, const char *sql, char *out, size_t cap)
{
    PGconn *c = NULL;
    PGresult *res = run_as(conninfo, sql, &c);

    assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
    assert_int_equal(PQntuples(res), 1);
    snprintf(out, cap, "%s", PQgetvalue(res, 0, 0));
    PQclear(res);
    PQfinish(c);
}

static void ok(enum coffer_err r)
{
    if (r != COFFER_OK) {
        fprintf(stderr, "unexpected %s: %s\n", coffer_err_str(r), coffer_err_detail());
    }
    assert_int_equal(r, COFFER_OK);
}

static void err_is(enum coffer_err r, enum coffer_err want)
{
    if (r != want) {
        fprintf(stderr, "want %s, got %s: %s\n", coffer_err_str(want), coffer_err_str(r),
                coffer_err_detail());
    }
    assert_int_equal(r, want);
}

static void detail_has(const char *needle)
{
    if (strstr(coffer_err_detail(), needle) == NULL) {
        fprintf(stderr, "detail \"%s\" lacks \"%s\"\n", coffer_err_detail(), needle);
        fail();
    }
}

static void fill(unsigned char *p, size_t n, unsigned char seed)
{
    for (size_t i = 0; i < n; i++) {
        p[i] = (unsigned char)(seed + i * 7);
    }
}

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- Migrations ---------------------------------------------------------------- */

static void test_migrate_idempotent(void **state)
{
    int applied = -1;

    (void)state;
    assert_true(coffer_store_schema_latest() >= 1);
    ok(coffer_store_migrate(h.db_owner, &applied));
    assert_int_equal(applied, 0);
    ok(coffer_store_migrate(h.db_owner, NULL));
}

static void test_migrate_refuses_tampered_ledger(void **state)
{
    char sha[80];
    char restore[256];
    int applied = -1;

    (void)state;
    sql_value(h.db_owner, "SELECT sha256 FROM coffer.schema_migrations WHERE version = 1", sha,
              sizeof(sha));
    assert_int_equal(strlen(sha), 64);
    sql_ok(h.db_owner, "UPDATE coffer.schema_migrations SET sha256 = repeat('0', 64) "
                       "WHERE version = 1");
    err_is(coffer_store_migrate(h.db_owner, &applied), COFFER_E_SCHEMA);
    detail_has("001_core.sql was altered after it was applied");
    detail_has(sha);
    assert_int_equal(applied, 0);

    snprintf(restore, sizeof(restore),
             "UPDATE coffer.schema_migrations SET sha256 = '%s' WHERE version = 1", sha);
    sql_ok(h.db_owner, restore);
    ok(coffer_store_migrate(h.db_owner, &applied));
    assert_int_equal(applied, 0);

    /* A ledger from a newer build. */
    sql_ok(h.db_owner, "INSERT INTO coffer.schema_migrations (version, name, sha256) "
                       "VALUES (999, '999_future.sql', repeat('a', 64))");
    err_is(coffer_store_migrate(h.db_owner, NULL), COFFER_E_SCHEMA);
    detail_has("database is at migration 999");
    detail_has("upgrade coffer");
    sql_ok(h.db_owner, "DELETE FROM coffer.schema_migrations WHERE version = 999");
    ok(coffer_store_migrate(h.db_owner, NULL));
}

static void test_open_refuses_unmigrated_database(void **state)
{
    char dbname[96];
    char conninfo[PATH_MAX + 160];
    char owner[PATH_MAX + 160];
    struct coffer_store *s = NULL;
    int applied = -1;
    int n;

    (void)state;
    n = snprintf(dbname, sizeof(dbname), "%s_bare", h.dbname);
    assert_true(n > 0 && n < 64);
    ok(coffer_store_bootstrap(h.env.db_super, dbname));
    ok(coffer_store_bootstrap(h.env.db_super, dbname)); /* safe to re-run */
    snprintf(conninfo, sizeof(conninfo), "host=%s dbname=%s user=coffer_app", h.env.pg_socket_dir,
             dbname);
    err_is(coffer_store_open(conninfo, &s), COFFER_E_SCHEMA);
    assert_null(s);
    detail_has("migrations");

    /* Migrated, it opens; with its ledger row gone, open names the missing file. */
    snprintf(owner, sizeof(owner), "host=%s dbname=%s user=coffer_owner", h.env.pg_socket_dir,
             dbname);
    ok(coffer_store_migrate(owner, &applied));
    assert_int_equal(applied, coffer_store_schema_latest());
    ok(coffer_store_open(conninfo, &s));
    coffer_store_close(&s);
    sql_ok(owner, "DELETE FROM coffer.schema_migrations");
    err_is(coffer_store_open(conninfo, &s), COFFER_E_SCHEMA);
    assert_null(s);
    detail_has("missing 001_core.sql");

    /* Re-running 001 over its own objects fails, naming the file and the server's SQLSTATE. */
    err_is(coffer_store_migrate(owner, &applied), COFFER_E_DB);
    assert_int_equal(applied, 0);
    detail_has("migration 001_core.sql failed");
    detail_has("SQLSTATE 42P06");

    /* Bootstrap checks the name before it reaches SQL. */
    err_is(coffer_store_bootstrap(h.env.db_super, "x\"; DROP DATABASE postgres; --"),
           COFFER_E_INVALID);
    err_is(coffer_store_bootstrap(h.env.db_super, "9starts_with_digit"), COFFER_E_INVALID);
}

static void test_open_unreachable_hides_password(void **state)
{
    char conninfo[PATH_MAX + 256];
    struct coffer_store *s = NULL;
    double t0;

    (void)state;
    /* No server listens on port 1 of the fixture's socket directory. */
    snprintf(conninfo, sizeof(conninfo),
             "host=%s port=1 dbname=%s user=coffer_app password=canary-not-shown",
             h.env.pg_socket_dir, h.dbname);
    t0 = now_s();
    err_is(coffer_store_open(conninfo, &s), COFFER_E_DB_UNAVAILABLE);
    assert_true(now_s() - t0 < 10.0);
    assert_null(s);
    assert_null(strstr(coffer_err_detail(), "canary-not-shown"));
    detail_has("port=1");
    detail_has("user=coffer_app");

    /* Over TCP, and as a URI carrying the password. */
    t0 = now_s();
    err_is(coffer_store_open("postgresql://coffer_app:canary-not-shown@127.0.0.1:1/x", &s),
           COFFER_E_DB_UNAVAILABLE);
    assert_true(now_s() - t0 < 10.0);
    assert_null(strstr(coffer_err_detail(), "canary-not-shown"));

    /* A malformed conninfo is reported without quoting any of it. */
    err_is(coffer_store_open("host=x password=canary-not-shown garbage", &s), COFFER_E_CONFIG);
    assert_null(strstr(coffer_err_detail(), "canary-not-shown"));
    assert_null(strstr(coffer_err_detail(), "garbage"));

    err_is(coffer_store_migrate(conninfo, NULL), COFFER_E_DB_UNAVAILABLE);
    assert_null(strstr(coffer_err_detail(), "canary-not-shown"));
}

/* ---- Orgs and projects ----------------------------------------------------------- */

static void test_orgs(void **state)
{
    struct coffer_org org;
    struct coffer_org again;
    struct coffer_project proj;
    struct coffer_project got;
    char longname[80];

    (void)state;
    ok(coffer_store_org_insert(st, "acme", &org));
    assert_string_equal(org.name, "acme");
    ok(coffer_store_org_by_name(st, "acme", &again));
    assert_true(coffer_uuid_equal(&org.id, &again.id));

    err_is(coffer_store_org_insert(st, "acme", &again), COFFER_E_EXISTS);
    err_is(coffer_store_org_by_name(st, "nobody", &again), COFFER_E_NOT_FOUND);

    /* Refused by the name check itself, not by the database's CHECK. */
    err_is(coffer_store_org_insert(st, "Acme Corp", &again), COFFER_E_INVALID);
    detail_has("org name: must be");
    err_is(coffer_store_org_insert(st, "x'); DROP TABLE coffer.orgs; --", &again),
           COFFER_E_INVALID);
    err_is(coffer_store_org_insert(st, "-leading", &again), COFFER_E_INVALID);
    err_is(coffer_store_org_insert(st, "", &again), COFFER_E_INVALID);
    memset(longname, 'a', 64);
    longname[64] = '\0';
    err_is(coffer_store_org_insert(st, longname, &again), COFFER_E_INVALID);
    longname[63] = '\0';
    ok(coffer_store_org_insert(st, longname, &again));

    ok(coffer_store_project_insert(st, &org.id, "web", &proj));
    assert_true(coffer_uuid_equal(&proj.org_id, &org.id));
    ok(coffer_store_project_by_name(st, &org.id, "web", &got));
    assert_true(coffer_uuid_equal(&proj.id, &got.id));
    err_is(coffer_store_project_insert(st, &org.id, "web", &got), COFFER_E_EXISTS);
    /* The same project name under another org is another project, and not found there. */
    err_is(coffer_store_project_by_name(st, &again.id, "web", &got), COFFER_E_NOT_FOUND);
    err_is(coffer_store_project_insert(st, &org.id, "Web", &got), COFFER_E_INVALID);
    {
        struct coffer_uuid nobody;

        memset(&nobody, 0x42, sizeof(nobody));
        err_is(coffer_store_project_insert(st, &nobody, "web", &got), COFFER_E_NOT_FOUND);
    }

    /* Row locks belong inside a transaction. */
    err_is(coffer_store_org_lock(st, &org.id), COFFER_E_STATE);
    ok(coffer_store_begin(st));
    ok(coffer_store_org_lock(st, &org.id));
    ok(coffer_store_commit(st));
}

static void test_transactions(void **state)
{
    struct coffer_org org;

    (void)state;
    err_is(coffer_store_commit(st), COFFER_E_STATE);
    ok(coffer_store_begin(st));
    err_is(coffer_store_begin(st), COFFER_E_STATE);
    ok(coffer_store_org_insert(st, "tx-rolled-back", &org));
    coffer_store_rollback(st);
    err_is(coffer_store_org_by_name(st, "tx-rolled-back", &org), COFFER_E_NOT_FOUND);

    /* A failed statement poisons the transaction; commit must say so, not pretend. */
    ok(coffer_store_begin(st));
    ok(coffer_store_org_insert(st, "tx-poisoned", &org));
    err_is(coffer_store_org_insert(st, "acme", &org), COFFER_E_EXISTS);
    err_is(coffer_store_commit(st), COFFER_E_DB);
    err_is(coffer_store_org_by_name(st, "tx-poisoned", &org), COFFER_E_NOT_FOUND);

    ok(coffer_store_begin(st));
    ok(coffer_store_org_insert(st, "tx-committed", &org));
    ok(coffer_store_commit(st));
    ok(coffer_store_org_by_name(st, "tx-committed", &org));
    coffer_store_rollback(st); /* harmless with nothing open */
}

/* ---- Master keys ------------------------------------------------------------------ */

static void test_master_keys(void **state)
{
    struct coffer_store_mk mk = {0};
    struct coffer_store_mk got;
    struct coffer_store_mk *list = NULL;
    size_t n = 0;
    uint32_t max = 99;
    int64_t refs = -1;

    (void)state;
    err_is(coffer_store_mk_current(st, &got), COFFER_E_NOT_FOUND);
    ok(coffer_store_mk_max_version(st, &max));
    assert_int_equal(max, 0);

    mk.version = 1;
    fill(mk.kcv, sizeof(mk.kcv), 1);
    ok(coffer_store_mk_insert(st, &mk)); /* empty label: derived from the version */
    ok(coffer_store_mk_get(st, 1, &got));
    assert_string_equal(got.label, "coffer-mk-v1");
    assert_int_equal(got.state, COFFER_KEY_ACTIVE);
    assert_memory_equal(got.kcv, mk.kcv, COFFER_KCV_LEN);
    err_is(coffer_store_mk_current(st, &got), COFFER_E_NOT_FOUND);

    ok(coffer_store_mk_make_current(st, 1));
    ok(coffer_store_mk_current(st, &got));
    assert_int_equal(got.version, 1);
    assert_int_equal(got.state, COFFER_KEY_CURRENT);

    mk.version = 2;
    snprintf(mk.label, sizeof(mk.label), "coffer-mk-v2");
    fill(mk.kcv, sizeof(mk.kcv), 2);
    ok(coffer_store_mk_insert(st, &mk));
    err_is(coffer_store_mk_insert(st, &mk), COFFER_E_EXISTS);

    /* Inside the caller's transaction: rolled back with it. */
    ok(coffer_store_begin(st));
    ok(coffer_store_mk_make_current(st, 2));
    coffer_store_rollback(st);
    ok(coffer_store_mk_current(st, &got));
    assert_int_equal(got.version, 1);

    ok(coffer_store_mk_make_current(st, 2));
    ok(coffer_store_mk_current(st, &got));
    assert_int_equal(got.version, 2);
    ok(coffer_store_mk_get(st, 1, &got));
    assert_int_equal(got.state, COFFER_KEY_ACTIVE);
    ok(coffer_store_mk_make_current(st, 2)); /* already current: no change */

    ok(coffer_store_mk_max_version(st, &max));
    assert_int_equal(max, 2);
    ok(coffer_store_mk_list(st, &list, &n));
    assert_int_equal(n, 2);
    assert_int_equal(list[0].version, 1);
    assert_int_equal(list[1].version, 2);
    assert_int_equal(list[1].state, COFFER_KEY_CURRENT);
    coffer_free(list);

    mk.version = 3;
    snprintf(mk.label, sizeof(mk.label), "coffer-mk-v4");
    err_is(coffer_store_mk_insert(st, &mk), COFFER_E_INVALID);
    mk.version = 0;
    err_is(coffer_store_mk_insert(st, &mk), COFFER_E_INVALID);
    err_is(coffer_store_mk_get(st, 77, &got), COFFER_E_NOT_FOUND);
    err_is(coffer_store_mk_make_current(st, 77), COFFER_E_NOT_FOUND);
    err_is(coffer_store_mk_get(st, (uint32_t)INT32_MAX + 1u, &got), COFFER_E_INVALID);

    err_is(coffer_store_mk_lock(st, 1), COFFER_E_STATE);
    ok(coffer_store_begin(st));
    ok(coffer_store_mk_lock(st, 1));
    err_is(coffer_store_mk_lock(st, 77), COFFER_E_NOT_FOUND);
    coffer_store_rollback(st);

    ok(coffer_store_mk_count_refs(st, 1, &refs));
    assert_int_equal(refs, 0);

    /* A retired key cannot become current; a destroyed one cannot come back. */
    mk.version = 3;
    snprintf(mk.label, sizeof(mk.label), "coffer-mk-v3");
    ok(coffer_store_mk_insert(st, &mk));
    ok(coffer_store_mk_set_state(st, 3, COFFER_KEY_RETIRED));
    ok(coffer_store_mk_get(st, 3, &got));
    assert_int_equal(got.state, COFFER_KEY_RETIRED);
    err_is(coffer_store_mk_make_current(st, 3), COFFER_E_STATE);
    ok(coffer_store_mk_set_state(st, 3, COFFER_KEY_DESTROYED));
    err_is(coffer_store_mk_set_state(st, 3, COFFER_KEY_ACTIVE), COFFER_E_STATE);
    err_is(coffer_store_mk_set_state(st, 78, COFFER_KEY_RETIRED), COFFER_E_NOT_FOUND);
    {
        char stamped[8];

        sql_value(h.db_owner,
                  "SELECT (retired_at IS NOT NULL AND destroyed_at IS NOT NULL)::text "
                  "FROM coffer.master_keys WHERE version = 3",
                  stamped, sizeof(stamped));
        assert_string_equal(stamped, "true");
    }
    assert_string_equal(coffer_key_state_str(COFFER_KEY_DESTROYED), "destroyed");
}

/* ---- Org keys ---------------------------------------------------------------------- */

static void org_key(struct coffer_store_org_key *k, const struct coffer_uuid *org, uint32_t version,
                    uint32_t mk_version, unsigned char seed)
{
    memset(k, 0, sizeof(*k));
    k->org_id = *org;
    k->version = version;
    k->mk_version = mk_version;
    snprintf(k->wrap_mech, sizeof(k->wrap_mech), "%s", COFFER_MECH_WRAP);
    k->wrapped_len = 40;
    fill(k->wrapped, k->wrapped_len, seed);
    fill(k->kcv, sizeof(k->kcv), seed);
}

static void test_org_keys(void **state)
{
    struct coffer_org org;
    struct coffer_org other;
    struct coffer_store_org_key k1;
    struct coffer_store_org_key k2;
    struct coffer_store_org_key bad;
    struct coffer_store_org_key got;
    struct coffer_store_org_key *list = NULL;
    struct coffer_uuid zero;
    size_t n = 0;
    unsigned char neww[40];
    bool won = false;

    (void)state;
    ok(coffer_store_org_insert(st, "keys-org", &org));
    ok(coffer_store_org_insert(st, "keys-other", &other));
    err_is(coffer_store_org_key_current(st, &org.id, &got), COFFER_E_NOT_FOUND);

    org_key(&k1, &org.id, 1, 1, 10);
    memset(&zero, 0, sizeof(zero));
    ok(coffer_store_org_key_insert(st, &k1));
    assert_false(coffer_uuid_equal(&k1.id, &zero));
    ok(coffer_store_org_key_make_current(st, &org.id, 1));
    ok(coffer_store_org_key_current(st, &org.id, &got));
    assert_true(coffer_uuid_equal(&got.id, &k1.id));
    assert_int_equal(got.version, 1);
    assert_int_equal(got.mk_version, 1);
    assert_int_equal(got.wrapped_len, 40);
    assert_memory_equal(got.wrapped, k1.wrapped, 40);
    assert_memory_equal(got.kcv, k1.kcv, COFFER_KCV_LEN);
    assert_string_equal(got.wrap_mech, "aes-kwp");
    assert_int_equal(got.state, COFFER_KEY_CURRENT);

    org_key(&k2, &org.id, 2, 2, 20);
    ok(coffer_store_org_key_insert(st, &k2));
    err_is(coffer_store_org_key_insert(st, &k2), COFFER_E_EXISTS);
    ok(coffer_store_org_key_make_current(st, &org.id, 2));
    ok(coffer_store_org_key_get(st, &org.id, 1, &got));
    assert_int_equal(got.state, COFFER_KEY_ACTIVE);
    ok(coffer_store_org_key_current(st, &org.id, &got));
    assert_int_equal(got.version, 2);

    /* Another org sees none of it. */
    err_is(coffer_store_org_key_get(st, &other.id, 1, &got), COFFER_E_NOT_FOUND);
    err_is(coffer_store_org_key_current(st, &other.id, &got), COFFER_E_NOT_FOUND);
    err_is(coffer_store_org_key_make_current(st, &other.id, 1), COFFER_E_NOT_FOUND);

    ok(coffer_store_org_key_list(st, &org.id, &list, &n));
    assert_int_equal(n, 2);
    assert_int_equal(list[0].version, 1);
    assert_int_equal(list[1].version, 2);
    coffer_free(list);
    ok(coffer_store_org_key_list(st, &other.id, &list, &n));
    assert_int_equal(n, 0);
    coffer_free(list);
    ok(coffer_store_org_key_list(st, NULL, &list, &n));
    assert_true(n >= 2);
    coffer_free(list);

    /* Refused before SQL: wrong mechanism, bad lengths, bad versions. */
    org_key(&bad, &org.id, 3, 2, 30);
    snprintf(bad.wrap_mech, sizeof(bad.wrap_mech), "aes-gcm");
    err_is(coffer_store_org_key_insert(st, &bad), COFFER_E_INVALID);
    org_key(&bad, &org.id, 3, 2, 30);
    bad.wrapped_len = 8;
    err_is(coffer_store_org_key_insert(st, &bad), COFFER_E_INVALID);
    bad.wrapped_len = COFFER_WRAPPED_MAX + 1;
    err_is(coffer_store_org_key_insert(st, &bad), COFFER_E_INVALID);
    org_key(&bad, &org.id, 0, 2, 30);
    err_is(coffer_store_org_key_insert(st, &bad), COFFER_E_INVALID);
    /* Refused by a foreign key: no master key 77. */
    org_key(&bad, &org.id, 3, 77, 30);
    err_is(coffer_store_org_key_insert(st, &bad), COFFER_E_NOT_FOUND);

    /* Org keys not under MK v2: k1 only, and paging past it yields nothing of this org. */
    ok(coffer_store_org_key_stale(st, 2, NULL, 100, &list, &n));
    {
        bool found = false;

        for (size_t i = 0; i < n; i++) {
            assert_int_not_equal(list[i].mk_version, 2);
            found = found || coffer_uuid_equal(&list[i].id, &k1.id);
        }
        assert_true(found);
    }
    coffer_free(list);
    ok(coffer_store_org_key_stale(st, 2, &k1.id, 100, &list, &n));
    for (size_t i = 0; i < n; i++) {
        assert_false(coffer_uuid_equal(&list[i].id, &k1.id));
    }
    coffer_free(list);

    /* Compare-and-swap rewrap of k1 from MK v1 to v2: one winner. */
    ok(coffer_store_org_key_get(st, &org.id, 1, &got));
    fill(neww, sizeof(neww), 99);
    ok(coffer_store_org_key_rewrap(st, &got, 2, neww, sizeof(neww), &won));
    assert_true(won);
    ok(coffer_store_org_key_rewrap(st, &got, 2, neww, sizeof(neww), &won));
    assert_false(won);
    ok(coffer_store_org_key_get(st, &org.id, 1, &k1));
    assert_int_equal(k1.mk_version, 2);
    assert_memory_equal(k1.wrapped, neww, sizeof(neww));
    err_is(coffer_store_org_key_rewrap(st, &k1, 77, neww, sizeof(neww), &won), COFFER_E_NOT_FOUND);
    err_is(coffer_store_org_key_rewrap(st, &k1, 2, neww, 4, &won), COFFER_E_INVALID);

    /* Locks, counts and states. */
    err_is(coffer_store_org_key_lock(st, &org.id, 1), COFFER_E_STATE);
    ok(coffer_store_begin(st));
    ok(coffer_store_org_key_lock(st, &org.id, 1));
    err_is(coffer_store_org_key_lock(st, &other.id, 1), COFFER_E_NOT_FOUND);
    coffer_store_rollback(st);
    {
        int64_t refs = -1;

        ok(coffer_store_org_key_count_refs(st, &org.id, 1, &refs));
        assert_int_equal(refs, 0);
        ok(coffer_store_mk_count_refs(st, 2, &refs));
        assert_true(refs >= 2);
    }
    ok(coffer_store_org_key_set_state(st, &org.id, 1, COFFER_KEY_RETIRED));
    ok(coffer_store_org_key_get(st, &org.id, 1, &got));
    assert_int_equal(got.state, COFFER_KEY_RETIRED);
    err_is(coffer_store_org_key_make_current(st, &org.id, 1), COFFER_E_STATE);
    err_is(coffer_store_org_key_set_state(st, &other.id, 1, COFFER_KEY_RETIRED),
           COFFER_E_NOT_FOUND);
}

/* ---- Credentials ---------------------------------------------------------------------- */

struct cred_world {
    struct coffer_org a;
    struct coffer_org b;
    struct coffer_project pa;
    struct coffer_project pb;
};

static struct cred_world cw;

static void version_row(struct coffer_store_cred_version *v, const struct coffer_store_cred *c,
                        uint32_t version, uint32_t okv, char **names, size_t n_names,
                        unsigned char *ct, size_t ct_len, unsigned char seed)
{
    memset(v, 0, sizeof(*v));
    v->credential_id = c->id;
    v->version = version;
    v->org_id = c->org_id;
    v->project_id = c->project_id;
    v->org_key_version = okv;
    snprintf(v->aead, sizeof(v->aead), "%s", COFFER_MECH_AEAD);
    snprintf(v->wrap_mech, sizeof(v->wrap_mech), "%s", COFFER_MECH_WRAP);
    v->key_names = names;
    v->n_keys = n_names;
    fill(v->nonce, sizeof(v->nonce), seed);
    fill(ct, ct_len, seed);
    v->ciphertext = ct;
    v->ciphertext_len = ct_len;
    fill(v->tag, sizeof(v->tag), seed);
    v->wrapped_cek_len = 40;
    fill(v->wrapped_cek, v->wrapped_cek_len, seed);
}

static void test_credentials(void **state)
{
    struct coffer_store_org_key k;
    struct coffer_store_cred c1;
    struct coffer_store_cred c2;
    struct coffer_store_cred_version v;
    struct coffer_store_cred_version got;
    char n0[] = "username";
    char n1[] = "pass.word-2";
    char *names[] = {n0, n1};
    char badname[] = "has space";
    char *badnames[] = {n0, badname};
    unsigned char ct1[100];
    unsigned char ct2[333];

    (void)state;
    ok(coffer_store_org_insert(st, "cred-a", &cw.a));
    ok(coffer_store_org_insert(st, "cred-b", &cw.b));
    ok(coffer_store_project_insert(st, &cw.a.id, "proj", &cw.pa));
    ok(coffer_store_project_insert(st, &cw.b.id, "proj", &cw.pb));
    org_key(&k, &cw.a.id, 1, 2, 40);
    ok(coffer_store_org_key_insert(st, &k));
    ok(coffer_store_org_key_make_current(st, &cw.a.id, 1));
    org_key(&k, &cw.b.id, 1, 2, 41);
    ok(coffer_store_org_key_insert(st, &k));
    ok(coffer_store_org_key_make_current(st, &cw.b.id, 1));

    /* next_version belongs inside a transaction. */
    err_is(coffer_store_cred_next_version(st, &cw.a.id, &cw.pa.id, "db", "password", "high", &c1),
           COFFER_E_STATE);

    ok(coffer_store_begin(st));
    ok(coffer_store_cred_next_version(st, &cw.a.id, &cw.pa.id, "db", "password", "high", &c1));
    assert_int_equal(c1.current_version, 1);
    assert_int_equal(c1.org_current_key_version, 1);
    assert_true(coffer_uuid_equal(&c1.org_id, &cw.a.id));
    assert_true(coffer_uuid_equal(&c1.project_id, &cw.pa.id));
    version_row(&v, &c1, 1, 1, names, 2, ct1, sizeof(ct1), 1);
    ok(coffer_store_cred_version_insert(st, &v));
    ok(coffer_store_commit(st));

    ok(coffer_store_begin(st));
    ok(coffer_store_cred_next_version(st, &cw.a.id, &cw.pa.id, "db", "db_password", "critical",
                                      &c2));
    assert_int_equal(c2.current_version, 2);
    assert_true(coffer_uuid_equal(&c1.id, &c2.id));
    assert_string_equal(c2.type, "db_password");
    assert_string_equal(c2.tier, "critical");
    version_row(&v, &c2, 2, 1, names, 1, ct2, sizeof(ct2), 2);
    ok(coffer_store_cred_version_insert(st, &v));
    err_is(coffer_store_cred_version_insert(st, &v), COFFER_E_EXISTS);
    coffer_store_rollback(st); /* the duplicate aborted it: redo cleanly */

    ok(coffer_store_begin(st));
    ok(coffer_store_cred_next_version(st, &cw.a.id, &cw.pa.id, "db", "db_password", "critical",
                                      &c2));
    assert_int_equal(c2.current_version, 2);
    version_row(&v, &c2, 2, 1, names, 1, ct2, sizeof(ct2), 2);
    ok(coffer_store_cred_version_insert(st, &v));
    ok(coffer_store_commit(st));

    /* Version 0 is the current one. */
    ok(coffer_store_cred_version_get(st, &cw.a.id, &cw.pa.id, "db", 0, &got));
    assert_int_equal(got.version, 2);
    assert_true(coffer_uuid_equal(&got.credential_id, &c1.id));
    assert_int_equal(got.n_keys, 1);
    assert_string_equal(got.key_names[0], "username");
    assert_int_equal(got.ciphertext_len, sizeof(ct2));
    assert_memory_equal(got.ciphertext, ct2, sizeof(ct2));
    assert_memory_equal(got.nonce, v.nonce, COFFER_GCM_IV_LEN);
    assert_memory_equal(got.tag, v.tag, COFFER_GCM_TAG_LEN);
    assert_int_equal(got.wrapped_cek_len, 40);
    assert_memory_equal(got.wrapped_cek, v.wrapped_cek, 40);
    assert_string_equal(got.aead, "aes-256-gcm");
    assert_string_equal(got.wrap_mech, "aes-kwp");
    assert_int_equal(got.org_key_version, 1);
    assert_int_equal(got.org_key_state, COFFER_KEY_CURRENT);
    assert_int_equal(got.org_current_key_version, 1);
    coffer_store_cred_version_cleanup(&got);
    assert_null(got.key_names);

    ok(coffer_store_cred_version_get(st, &cw.a.id, &cw.pa.id, "db", 1, &got));
    assert_int_equal(got.version, 1);
    assert_int_equal(got.n_keys, 2);
    assert_string_equal(got.key_names[1], "pass.word-2");
    assert_memory_equal(got.ciphertext, ct1, sizeof(ct1));
    coffer_store_cred_version_cleanup(&got);

    /* The org filter is part of the query: org B with A's project finds nothing. */
    err_is(coffer_store_cred_version_get(st, &cw.b.id, &cw.pa.id, "db", 0, &got),
           COFFER_E_NOT_FOUND);
    assert_null(got.ciphertext);
    err_is(coffer_store_cred_version_get(st, &cw.b.id, &cw.pb.id, "db", 0, &got),
           COFFER_E_NOT_FOUND);
    err_is(coffer_store_cred_version_get(st, &cw.a.id, &cw.pa.id, "db", 3, &got),
           COFFER_E_NOT_FOUND);
    err_is(coffer_store_cred_version_get(st, &cw.a.id, &cw.pa.id, "nothing", 0, &got),
           COFFER_E_NOT_FOUND);
    err_is(coffer_store_cred_version_get(st, &cw.a.id, &cw.pa.id, "Bad", 0, &got),
           COFFER_E_INVALID);

    /* Org B cannot add versions to A's credential through A's project. */
    ok(coffer_store_begin(st));
    err_is(coffer_store_cred_next_version(st, &cw.b.id, &cw.pa.id, "db", "password", "high", &c2),
           COFFER_E_NOT_FOUND);
    coffer_store_rollback(st);
    ok(coffer_store_begin(st));
    err_is(
        coffer_store_cred_next_version(st, &cw.b.id, &cw.pa.id, "fresh", "password", "high", &c2),
        COFFER_E_NOT_FOUND);
    coffer_store_rollback(st);
    ok(coffer_store_cred_version_get(st, &cw.a.id, &cw.pa.id, "db", 0, &got));
    assert_int_equal(got.version, 2);
    coffer_store_cred_version_cleanup(&got);

    /* A version row claiming org B for A's credential is refused by the foreign keys. */
    ok(coffer_store_begin(st));
    version_row(&v, &c1, 9, 1, names, 1, ct1, sizeof(ct1), 9);
    v.org_id = cw.b.id;
    err_is(coffer_store_cred_version_insert(st, &v), COFFER_E_NOT_FOUND);
    coffer_store_rollback(st);

    /* Refused before SQL. */
    ok(coffer_store_begin(st));
    err_is(coffer_store_cred_next_version(st, &cw.a.id, &cw.pa.id, "db", "Password", "high", &c2),
           COFFER_E_INVALID);
    err_is(
        coffer_store_cred_next_version(st, &cw.a.id, &cw.pa.id, "db", "password", "extreme", &c2),
        COFFER_E_INVALID);
    version_row(&v, &c1, 5, 1, badnames, 2, ct1, sizeof(ct1), 5);
    err_is(coffer_store_cred_version_insert(st, &v), COFFER_E_INVALID);
    version_row(&v, &c1, 5, 1, names, 0, ct1, sizeof(ct1), 5);
    err_is(coffer_store_cred_version_insert(st, &v), COFFER_E_INVALID);
    version_row(&v, &c1, 5, 1, names, 2, ct1, sizeof(ct1), 5);
    snprintf(v.aead, sizeof(v.aead), "chacha20");
    err_is(coffer_store_cred_version_insert(st, &v), COFFER_E_INVALID);
    version_row(&v, &c1, 5, 1, names, 2, ct1, sizeof(ct1), 5);
    v.wrapped_cek_len = 15;
    err_is(coffer_store_cred_version_insert(st, &v), COFFER_E_INVALID);
    version_row(&v, &c1, 5, 1, names, 2, ct1, 0, 5);
    err_is(coffer_store_cred_version_insert(st, &v), COFFER_E_INVALID);
    {
        /* Beyond the payload limit plus framing. */
        size_t big_len = 300u * 1024u;
        unsigned char *big = coffer_calloc(1, big_len);

        assert_non_null(big);
        version_row(&v, &c1, 5, 1, names, 2, big, big_len, 5);
        err_is(coffer_store_cred_version_insert(st, &v), COFFER_E_INVALID);
        coffer_free(big);
    }
    ok(coffer_store_commit(st));
}

static void test_rewrap_and_sweep(void **state)
{
    struct coffer_store_org_key k;
    struct coffer_store_cred_version got;
    struct coffer_store_cred_version *rows = NULL;
    struct coffer_store_sweep_pos pos = {0};
    size_t n = 0;
    int64_t stale_cv = -1;
    int64_t stale_ok = -1;
    unsigned char neww[40];
    bool won = false;

    (void)state;
    ok(coffer_store_count_stale(st, &stale_cv, &stale_ok));
    assert_int_equal(stale_cv, 0);

    /* Rotating org A's key makes both versions of "db" stale. */
    org_key(&k, &cw.a.id, 2, 2, 50);
    ok(coffer_store_org_key_insert(st, &k));
    ok(coffer_store_org_key_make_current(st, &cw.a.id, 2));
    ok(coffer_store_count_stale(st, &stale_cv, &stale_ok));
    assert_int_equal(stale_cv, 2);

    ok(coffer_store_cred_stale(st, &pos, 1, &rows, &n));
    assert_int_equal(n, 1);
    assert_true(pos.started);
    assert_int_equal(rows[0].version, 1);
    assert_int_equal(rows[0].org_key_version, 1);
    assert_int_equal(rows[0].org_current_key_version, 2);
    assert_int_equal(rows[0].org_key_state, COFFER_KEY_ACTIVE);
    assert_true(coffer_uuid_equal(&pos.credential_id, &rows[0].credential_id));
    assert_int_equal(pos.version, 1);
    coffer_store_cred_version_cleanup(&rows[0]);
    coffer_free(rows);
    ok(coffer_store_cred_stale(st, &pos, 1, &rows, &n));
    assert_int_equal(n, 1);
    assert_int_equal(rows[0].version, 2);
    coffer_store_cred_version_cleanup(&rows[0]);
    coffer_free(rows);
    ok(coffer_store_cred_stale(st, &pos, 1, &rows, &n));
    assert_int_equal(n, 0);
    assert_null(rows);

    /* Compare-and-swap: the first rewrap wins, a second with the stale values loses. */
    ok(coffer_store_cred_version_get(st, &cw.a.id, &cw.pa.id, "db", 2, &got));
    assert_int_equal(got.org_current_key_version, 2);
    fill(neww, sizeof(neww), 200);
    ok(coffer_store_cred_rewrap(st, &got, 2, neww, sizeof(neww), &won));
    assert_true(won);
    ok(coffer_store_cred_rewrap(st, &got, 2, neww, sizeof(neww), &won));
    assert_false(won);
    coffer_store_cred_version_cleanup(&got);
    ok(coffer_store_cred_version_get(st, &cw.a.id, &cw.pa.id, "db", 2, &got));
    assert_int_equal(got.org_key_version, 2);
    assert_memory_equal(got.wrapped_cek, neww, sizeof(neww));
    assert_int_equal(got.org_key_state, COFFER_KEY_CURRENT);
    err_is(coffer_store_cred_rewrap(st, &got, 9, neww, sizeof(neww), &won), COFFER_E_NOT_FOUND);
    coffer_store_cred_version_cleanup(&got);

    ok(coffer_store_count_stale(st, &stale_cv, &stale_ok));
    assert_int_equal(stale_cv, 1);
    pos = (struct coffer_store_sweep_pos){0};
    ok(coffer_store_cred_stale(st, &pos, 10, &rows, &n));
    assert_int_equal(n, 1);
    assert_int_equal(rows[0].version, 1);
    coffer_store_cred_version_cleanup(&rows[0]);
    coffer_free(rows);
    {
        int64_t refs = -1;

        ok(coffer_store_org_key_count_refs(st, &cw.a.id, 1, &refs));
        assert_int_equal(refs, 1);
    }

    /* The batched swap: the stale version 1 moves once; a second swap with old values loses. */
    {
        struct coffer_store_cred_version old;
        struct coffer_store_rewrap item;
        unsigned char w2[40];
        bool won2[1] = {false};

        ok(coffer_store_cred_version_get(st, &cw.a.id, &cw.pa.id, "db", 1, &old));
        fill(w2, sizeof(w2), 77);
        item.old = &old;
        item.new_org_key_version = 2;
        item.wrapped = w2;
        item.wrapped_len = sizeof(w2);
        ok(coffer_store_cred_rewrap_many(st, &item, 1, won2));
        assert_true(won2[0]);
        ok(coffer_store_cred_rewrap_many(st, &item, 1, won2));
        assert_false(won2[0]);
        item.wrapped_len = 8;
        err_is(coffer_store_cred_rewrap_many(st, &item, 1, won2), COFFER_E_INVALID);
        err_is(coffer_store_cred_rewrap_many(st, &item, 0, won2), COFFER_E_INVALID);
        coffer_store_cred_version_cleanup(&old);
        ok(coffer_store_cred_version_get(st, &cw.a.id, &cw.pa.id, "db", 1, &old));
        assert_int_equal(old.org_key_version, 2);
        assert_memory_equal(old.wrapped_cek, w2, sizeof(w2));
        coffer_store_cred_version_cleanup(&old);
        ok(coffer_store_count_stale(st, &stale_cv, &stale_ok));
        assert_int_equal(stale_cv, 0);
    }

    /* Org keys not under the current MK (v2): MK v1 still wraps none after the rewrap above. */
    ok(coffer_store_count_stale(st, &stale_cv, &stale_ok));
    assert_int_equal(stale_ok, 0);
    org_key(&k, &cw.b.id, 2, 1, 60);
    ok(coffer_store_org_key_insert(st, &k));
    ok(coffer_store_count_stale(st, &stale_cv, &stale_ok));
    assert_int_equal(stale_ok, 1);
}

/* ---- Lost connection ------------------------------------------------------------------------ */

static void test_lost_connection(void **state)
{
    struct coffer_store *s2 = NULL;
    struct coffer_org org;
    char kill_sql[256];

    (void)state;
    ok(coffer_store_open(h.db_app, &s2));
    ok(coffer_store_begin(s2));
    /* The timeout makes pg_terminate_backend wait until the backends are gone. */
    snprintf(kill_sql, sizeof(kill_sql),
             "SELECT count(pg_terminate_backend(pid, 5000)) FROM pg_stat_activity "
             "WHERE datname = '%s' AND usename = 'coffer_app'",
             h.dbname);
    sql_ok(h.env.db_super, kill_sql);
    err_is(coffer_store_org_by_name(s2, "acme", &org), COFFER_E_DB_UNAVAILABLE);
    /* Still inside the lost transaction: no silent reconnect. */
    err_is(coffer_store_org_by_name(s2, "acme", &org), COFFER_E_DB_UNAVAILABLE);
    detail_has("inside a transaction");
    coffer_store_rollback(s2);
    /* Between transactions the store reconnects and prepares again. */
    ok(coffer_store_org_by_name(s2, "acme", &org));
    /*
     * Outside a transaction a connection the server closed while it was idle
     * is found closed before anything is sent on it: the store reconnects and
     * the statement runs once, on the new connection.
     */
    ok(coffer_store_org_by_name(st, "acme", &org));
    ok(coffer_store_org_by_name(st, "acme", &org));
    coffer_store_close(&s2);
    assert_null(s2);
    coffer_store_close(&s2);
}

/* ---- Privileges -------------------------------------------------------------------------------
 */

static void test_app_privileges(void **state)
{
    char v[16];

    (void)state;
    sql_value(h.db_app, "SELECT has_schema_privilege('public', 'USAGE')::text", v, sizeof(v));
    assert_string_equal(v, "false");
    /* The control: the same role reads fine, so the refusals below are privileges. */
    sql_ok(h.db_app, "SELECT count(*) FROM coffer.credential_versions");
    sql_ok(h.db_app, "SELECT count(*) FROM coffer.schema_migrations");
    sql_fails(h.db_app, "DELETE FROM coffer.credential_versions", "42501");
    sql_fails(h.db_app, "DELETE FROM coffer.master_keys", "42501");
    sql_fails(h.db_app, "TRUNCATE coffer.credentials", "42501");
    sql_fails(h.db_app, "DROP TABLE coffer.credential_versions", "42501");
    sql_fails(h.db_app, "ALTER TABLE coffer.org_keys DROP CONSTRAINT org_keys_kcv_check", "42501");
    sql_fails(h.db_app, "UPDATE coffer.credential_versions SET ciphertext = '\\x00'", "42501");
    sql_fails(h.db_app, "UPDATE coffer.master_keys SET kcv = '\\x000000'", "42501");
    sql_fails(h.db_app,
              "INSERT INTO coffer.schema_migrations (version, name, sha256) "
              "VALUES (500, 'x', repeat('a', 64))",
              "42501");
    sql_fails(h.db_app, "CREATE TABLE public.sneaky (i int)", "42501");
    sql_fails(h.db_app, "CREATE TABLE coffer.sneaky (i int)", "42501");
}

static void test_auditor_privileges(void **state)
{
    char auditor[PATH_MAX + 160];
    char v[16];

    (void)state;
    snprintf(auditor, sizeof(auditor), "%s user=coffer_auditor", h.db_app);
    sql_value(auditor, "SELECT current_user", v, sizeof(v));
    assert_string_equal(v, "coffer_auditor");
    sql_value(auditor, "SELECT has_schema_privilege('audit', 'USAGE')::text", v, sizeof(v));
    assert_string_equal(v, "true");
    sql_fails(auditor, "SELECT * FROM coffer.credentials", "42501");
    sql_fails(auditor, "SELECT * FROM coffer.master_keys", "42501");
    sql_fails(auditor, "SELECT * FROM coffer.schema_migrations", "42501");
}

/* ---- Corrupted rows ---------------------------------------------------------------------------
 */

static void test_corrupt_columns(void **state)
{
    struct coffer_store_mk mk;
    struct coffer_store_mk *list = NULL;
    struct coffer_store_cred_version got;
    struct coffer_store_org_key ok_row;
    size_t n = 0;

    (void)state;
    /* As owner: remove the CHECKs the store must not rely on, then write bad rows. */
    sql_ok(h.db_owner, "ALTER TABLE coffer.master_keys DROP CONSTRAINT master_keys_kcv_check");
    sql_ok(h.db_owner, "INSERT INTO coffer.master_keys (version, label, kcv, state) "
                       "VALUES (50, 'coffer-mk-v50', '\\x0102030405', 'retired')");
    err_is(coffer_store_mk_get(st, 50, &mk), COFFER_E_INTEGRITY);
    detail_has("coffer.master_keys.kcv");
    err_is(coffer_store_mk_list(st, &list, &n), COFFER_E_INTEGRITY);
    assert_null(list);
    assert_int_equal(n, 0);
    ok(coffer_store_mk_get(st, 2, &mk)); /* the good rows still read */

    sql_ok(h.db_owner, "ALTER TABLE coffer.master_keys DROP CONSTRAINT master_keys_state_check");
    sql_ok(h.db_owner, "UPDATE coffer.master_keys SET state = 'bogus', kcv = '\\x010203' "
                       "WHERE version = 50");
    err_is(coffer_store_mk_get(st, 50, &mk), COFFER_E_INTEGRITY);
    detail_has("coffer.master_keys.state");

    sql_ok(
        h.db_owner,
        "ALTER TABLE coffer.credential_versions DROP CONSTRAINT credential_versions_nonce_check");
    sql_ok(h.db_owner, "UPDATE coffer.credential_versions SET nonce = '\\x0102' WHERE version = 1");
    err_is(coffer_store_cred_version_get(st, &cw.a.id, &cw.pa.id, "db", 1, &got),
           COFFER_E_INTEGRITY);
    detail_has("coffer.credential_versions.nonce");
    assert_null(got.ciphertext);
    assert_null(got.key_names);

    sql_ok(h.db_owner, "ALTER TABLE coffer.credential_versions "
                       "DROP CONSTRAINT credential_versions_key_names_check");
    sql_ok(h.db_owner, "UPDATE coffer.credential_versions SET key_names = ARRAY['ok', NULL] "
                       "WHERE version = 2");
    err_is(coffer_store_cred_version_get(st, &cw.a.id, &cw.pa.id, "db", 2, &got),
           COFFER_E_INTEGRITY);
    detail_has("coffer.credential_versions.key_names");
    sql_ok(h.db_owner, "UPDATE coffer.credential_versions SET key_names = '{}' "
                       "WHERE version = 2");
    err_is(coffer_store_cred_version_get(st, &cw.a.id, &cw.pa.id, "db", 2, &got),
           COFFER_E_INTEGRITY);
    detail_has("coffer.credential_versions.key_names");

    sql_ok(h.db_owner, "ALTER TABLE coffer.org_keys DROP CONSTRAINT org_keys_wrap_mech_check");
    sql_ok(h.db_owner, "UPDATE coffer.org_keys SET wrap_mech = 'des' "
                       "WHERE version = 1 AND org_id = (SELECT id FROM coffer.orgs "
                       "WHERE name = 'cred-b')");
    err_is(coffer_store_org_key_get(st, &cw.b.id, 1, &ok_row), COFFER_E_INTEGRITY);
    detail_has("coffer.org_keys.wrap_mech");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_migrate_idempotent),
        cmocka_unit_test(test_migrate_refuses_tampered_ledger),
        cmocka_unit_test(test_open_refuses_unmigrated_database),
        cmocka_unit_test(test_open_unreachable_hides_password),
        cmocka_unit_test(test_orgs),
        cmocka_unit_test(test_transactions),
        cmocka_unit_test(test_master_keys),
        cmocka_unit_test(test_org_keys),
        cmocka_unit_test(test_credentials),
        cmocka_unit_test(test_rewrap_and_sweep),
        cmocka_unit_test(test_lost_connection),
        cmocka_unit_test(test_app_privileges),
        cmocka_unit_test(test_auditor_privileges),
        /* Last: it breaks rows on purpose. */
        cmocka_unit_test(test_corrupt_columns),
    };
    enum coffer_err r;
    int failed;

    harness_setup("store_db", &h);
    r = coffer_store_open(h.db_app, &st);
    if (r != COFFER_OK) {
        fprintf(stderr, "store_db_test: opening the store: %s: %s\n", coffer_err_str(r),
                coffer_err_detail());
        return 1;
    }
    failed = cmocka_run_group_tests(tests, NULL, NULL);
    coffer_store_close(&st);
    harness_teardown(&h);
    return failed;
}

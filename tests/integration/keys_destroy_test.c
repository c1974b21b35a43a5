/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Destroying master key versions and crypto-shredding an org, against a real
 * token and database: destruction refuses current, active and referenced
 * versions; a destroyed version is gone from the token, through Coffer and
 * through pkcs11-tool; a shred leaves the org unreadable (a state error, also
 * in a running worker that had its org key loaded), every other org readable
 * under the new master key, and a copy of the database taken before the
 * shred unable to decrypt anything; shreds re-run and resumed after a crash
 * between any two steps finish the job; the CLI asks for the org name.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "world.h"

#include "coffer/buf.h"
#include "coffer/mem.h"
#include "keys/destroy_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static struct world w;
static char pin[128];
static char sql_buf[512];

/* ---- Helpers ------------------------------------------------------------------------ */

static void put(const struct coffer_org *org, const struct coffer_project *proj, const char *cred,
                const char *value)
{
    const char *n[] = {"token"};
    const char *v[] = {value};
    size_t l[] = {strlen(value)};

    (void)world_put(&w, org, proj, cred, 1, n, v, l);
}

/* Reads version (0: current) and checks the value; COFFER_E_INTEGRITY if it differs. */
static enum coffer_err read_value(struct coffer_keys *k, struct coffer_store *st,
                                  const struct coffer_org *org, const struct coffer_project *proj,
                                  const char *cred, uint32_t version, const char *value,
                                  struct coffer_keys_read_info *info)
{
    struct coffer_keys_read_info local;
    struct coffer_keyset *ks = NULL;
    const struct coffer_secret *s;
    enum coffer_err r;

    r = coffer_keys_cred_read(k, st, &org->id, &proj->id, cred, version, &ks,
                              info != NULL ? info : &local);
    if (r != COFFER_OK) {
        if (ks != NULL) {
            r = COFFER_E_INTEGRITY; /* an error must return nothing */
        }
        coffer_keyset_free(&ks);
        return r;
    }
    s = coffer_keyset_get(ks, "token");
    if (s == NULL || coffer_secret_len(s) != strlen(value) ||
        !coffer_mem_equal(coffer_secret_view(s).data, value, strlen(value))) {
        r = COFFER_E_INTEGRITY;
    }
    coffer_keyset_free(&ks);
    return r;
}

static void check_read(const struct coffer_org *org, const struct coffer_project *proj,
                       const char *cred, const char *value, struct coffer_keys_read_info *info)
{
    enum coffer_err r = read_value(w.k, w.st, org, proj, cred, 0, value, info);

    if (r != COFFER_OK) {
        fprintf(stderr, "read %s: %s: %s\n", cred, coffer_err_str(r), coffer_err_detail());
    }
    assert_int_equal(r, COFFER_OK);
}

static void new_org(const char *name, struct coffer_org *org, struct coffer_project *proj)
{
    struct coffer_keys_created key;

    assert_int_equal(coffer_keys_org_create(w.k, w.st, name, org, &key), COFFER_OK);
    assert_int_equal(coffer_store_project_insert(w.st, &org->id, "proj", proj), COFFER_OK);
}

static char id_buf[COFFER_UUID_STR_LEN];

/* SQL with an org's id or a version in place of the one conversion; the format is a literal. */
#define org_sql(fmt, org)                                                                          \
    (coffer_uuid_format(&(org)->id, id_buf), snprintf(sql_buf, sizeof(sql_buf), fmt, id_buf),      \
     sql_buf)
#define mk_sql(fmt, v) (snprintf(sql_buf, sizeof(sql_buf), fmt, (unsigned)(v)), sql_buf)

static uint32_t current_mk(void)
{
    struct coffer_store_mk cur;

    assert_int_equal(coffer_store_mk_current(w.st, &cur), COFFER_OK);
    return cur.version;
}

static uint32_t max_mk(void)
{
    uint32_t max = 0;

    assert_int_equal(coffer_store_mk_max_version(w.st, &max), COFFER_OK);
    return max;
}

static size_t token_objects(const char *label)
{
    struct coffer_p11_session *s = NULL;
    size_t n = 99;

    assert_int_equal(coffer_p11_session_get(w.p11, &s), COFFER_OK);
    assert_int_equal(coffer_p11_count_labelled(s, label, &n), COFFER_OK);
    coffer_p11_session_put(w.p11, &s);
    return n;
}

/* pkcs11-tool's view of the token's objects, logged in as the user. */
static void pkcs11_tool_list(struct harness_run *res)
{
    char conf[PATH_MAX + 32];
    const char *argv[] = {"/usr/bin/pkcs11-tool", "--module", w.h.p11.module, "--token-label",
                          w.h.token_label,        "--login",  "--pin",        pin,
                          "--list-objects",       NULL};
    const char *envp[] = {conf, "PATH=/usr/bin:/bin", NULL};

    snprintf(conf, sizeof(conf), "SOFTHSM2_CONF=%s", w.h.env.softhsm_conf);
    harness_run(argv, envp, res);
    if (res->status != 0) {
        fprintf(stderr, "pkcs11-tool: status %d:\n%s\n", res->status, res->out);
    }
    assert_int_equal(res->status, 0);
}

static void sweep_all(void)
{
    struct coffer_keys_sweep sw;
    int steps = 0;

    memset(&sw, 0, sizeof(sw));
    while (!sw.done) {
        assert_int_equal(coffer_keys_sweep_step(w.k, w.st, 16, &sw), COFFER_OK);
        assert_true(++steps < 1000);
    }
    assert_int_equal(sw.failed, 0);
}

/* Runs every step of a shred and checks the report of a finished one. */
static void shred_ok(const struct coffer_org *org, struct coffer_keys_shred_report *rep)
{
    enum coffer_err r = coffer_keys_org_shred(w.k, w.st, &org->id, rep);

    if (r != COFFER_OK) {
        fprintf(stderr, "shred: %s: %s\n", coffer_err_str(r), coffer_err_detail());
    }
    assert_int_equal(r, COFFER_OK);
    assert_int_equal(rep->new_mk_version, current_mk());
    /* Only the current master key is left alive, in the database and in the token. */
    assert_true(world_sql_is(&w,
                             "SELECT count(*) FROM coffer.master_keys WHERE state <> "
                             "'destroyed'",
                             "1"));
    assert_true(world_sql_is(&w,
                             org_sql("SELECT count(*) FROM coffer.org_keys WHERE org_id = '%s' "
                                     "AND state <> 'destroyed'",
                                     org),
                             "0"));
    for (uint32_t v = 1; v < rep->new_mk_version; v++) {
        char label[32];

        snprintf(label, sizeof(label), "coffer-mk-v%u", v);
        assert_int_equal(token_objects(label), 0);
    }
}

/* ---- Destroying a master key version ------------------------------------------------------ */

static void test_mk_destroy(void **state)
{
    struct coffer_keys_created mk2;
    struct coffer_keys_created mk3;
    struct coffer_keys_created gone;
    struct coffer_p11_session *s = NULL;
    struct harness_run list;
    char kcv_hex[2 * COFFER_KCV_LEN + 1];
    int64_t refs = -1;
    size_t removed = 0;

    (void)state;
    put(&w.org, &w.proj, "first", "first-value");
    /* The current version is refused; so is an unknown one. */
    assert_int_equal(coffer_keys_mk_destroy(w.k, w.st, 1, &refs, &gone), COFFER_E_STATE);
    assert_non_null(strstr(coffer_err_detail(), "current"));
    assert_int_equal(coffer_keys_mk_destroy(w.k, w.st, 99, &refs, NULL), COFFER_E_NOT_FOUND);
    /* An active version (no longer current, still wrapping org keys) is refused. */
    assert_int_equal(coffer_keys_mk_create(w.k, w.st, &mk2), COFFER_OK);
    assert_int_equal(coffer_keys_mk_destroy(w.k, w.st, 1, &refs, NULL), COFFER_E_STATE);
    assert_non_null(strstr(coffer_err_detail(), "active"));
    /* Marked retired behind Coffer's back while it still wraps an org key: refused with the count.
     */
    assert_int_equal(
        world_sql(&w, "UPDATE coffer.master_keys SET state = 'retired' WHERE version = 1"), 1);
    assert_int_equal(coffer_keys_mk_destroy(w.k, w.st, 1, &refs, NULL), COFFER_E_REFERENCED);
    assert_true(refs >= 1);
    assert_int_equal(token_objects("coffer-mk-v1"), 1);
    assert_true(
        world_sql_is(&w, "SELECT state FROM coffer.master_keys WHERE version = 1", "retired"));
    assert_int_equal(
        world_sql(&w, "UPDATE coffer.master_keys SET state = 'active' WHERE version = 1"), 1);

    /* Swept and retired, v1 is destroyed: gone from the token, its label and KCV kept. */
    sweep_all();
    assert_int_equal(coffer_keys_mk_retire(w.k, w.st, 1, &refs), COFFER_OK);
    assert_int_equal(coffer_keys_mk_destroy(w.k, w.st, 1, &refs, &gone), COFFER_OK);
    assert_int_equal(refs, 0);
    assert_int_equal(gone.version, 1);
    assert_string_equal(gone.label, "coffer-mk-v1");
    assert_memory_equal(gone.kcv, w.mk1.kcv, COFFER_KCV_LEN);
    assert_int_equal(token_objects("coffer-mk-v1"), 0);
    assert_int_equal(token_objects("coffer-mk-v2"), 1);
    pkcs11_tool_list(&list);
    assert_null(strstr(list.out, "coffer-mk-v1"));
    assert_non_null(strstr(list.out, "coffer-mk-v2"));
    coffer_hex(w.mk1.kcv, COFFER_KCV_LEN, kcv_hex);
    snprintf(sql_buf, sizeof(sql_buf),
             "SELECT state || ' ' || label || ' ' || encode(kcv, 'hex') || ' ' || "
             "(destroyed_at IS NOT NULL) FROM coffer.master_keys WHERE version = 1");
    {
        char want[96];

        snprintf(want, sizeof(want), "destroyed coffer-mk-v1 %s true", kcv_hex);
        assert_true(world_sql_is(&w, sql_buf, want));
    }
    /* Destroyed is final: a second destroy is refused. Everything still reads under v2. */
    assert_int_equal(coffer_keys_mk_destroy(w.k, w.st, 1, &refs, NULL), COFFER_E_STATE);
    assert_non_null(strstr(coffer_err_detail(), "destroyed already"));
    world_reopen_token(&w);
    check_read(&w.org, &w.proj, "first", "first-value", NULL);

    /* A retired version whose object already left the token (a crash) is marked destroyed. */
    assert_int_equal(coffer_keys_mk_create(w.k, w.st, &mk3), COFFER_OK);
    sweep_all();
    assert_int_equal(coffer_keys_mk_retire(w.k, w.st, 2, &refs), COFFER_OK);
    assert_int_equal(coffer_p11_session_get(w.p11, &s), COFFER_OK);
    assert_int_equal(coffer_p11_destroy_labelled(s, "coffer-mk-v2", &removed), COFFER_OK);
    assert_int_equal(removed, 1);
    assert_int_equal(coffer_p11_destroy_labelled(s, "coffer-mk-v2", &removed), COFFER_OK);
    assert_int_equal(removed, 0);
    assert_int_equal(coffer_p11_destroy_labelled(s, "", &removed), COFFER_E_INVALID);
    coffer_p11_session_put(w.p11, &s);
    assert_int_equal(coffer_keys_mk_destroy(w.k, w.st, 2, &refs, &gone), COFFER_OK);
    assert_memory_equal(gone.kcv, mk2.kcv, COFFER_KCV_LEN);
    assert_true(
        world_sql_is(&w, "SELECT state FROM coffer.master_keys WHERE version = 2", "destroyed"));
    world_reopen_token(&w);
    check_read(&w.org, &w.proj, "first", "first-value", NULL);
}

/* ---- Destroying one org key version ------------------------------------------------------ */

/* The hex of one org key version's stored wrapped key (caller frees). */
static char *org_key_wrapped(const struct coffer_org *org, uint32_t version)
{
    char sql[256];

    coffer_uuid_format(&org->id, id_buf);
    snprintf(sql, sizeof(sql),
             "SELECT encode(wrapped, 'hex') FROM coffer.org_keys WHERE org_id = '%s' AND "
             "version = %u",
             id_buf, (unsigned)version);
    return world_sql_value(&w, sql);
}

static bool org_key_is(const struct coffer_org *org, uint32_t version, const char *what,
                       const char *want)
{
    char sql[256];

    coffer_uuid_format(&org->id, id_buf);
    snprintf(sql, sizeof(sql),
             "SELECT %s FROM coffer.org_keys WHERE org_id = '%s' AND version = %u", what, id_buf,
             (unsigned)version);
    return world_sql_is(&w, sql, want);
}

static void test_org_key_destroy(void **state)
{
    struct coffer_keys_created ok1;
    struct coffer_keys_created ok2;
    struct coffer_keys_created ok3;
    struct coffer_keys_created gone;
    struct coffer_keys_read_info info;
    struct coffer_org org;
    struct coffer_project proj;
    char *v1_before;
    char *v1_after;
    char *v2_before;
    char *v2_after;
    int64_t refs = -1;

    (void)state;
    assert_int_equal(coffer_keys_org_create(w.k, w.st, "okd", &org, &ok1), COFFER_OK);
    assert_int_equal(coffer_store_project_insert(w.st, &org.id, "proj", &proj), COFFER_OK);
    put(&org, &proj, "c1", "value-c1");

    /* The current version is refused; so is one that does not exist. */
    assert_int_equal(coffer_keys_org_key_destroy(w.k, w.st, &org.id, 1, &refs, &gone),
                     COFFER_E_STATE);
    assert_non_null(strstr(coffer_err_detail(), "current"));
    assert_int_equal(gone.version, 0);
    assert_int_equal(coffer_keys_org_key_destroy(w.k, w.st, &org.id, 99, &refs, NULL),
                     COFFER_E_NOT_FOUND);

    /* An active version (no longer current, still wrapping c1) is refused. */
    assert_int_equal(coffer_keys_org_rotate(w.k, w.st, &org.id, &ok2), COFFER_OK);
    assert_int_equal(ok2.version, 2);
    put(&org, &proj, "c2", "value-c2");
    assert_int_equal(coffer_keys_org_key_destroy(w.k, w.st, &org.id, 1, &refs, NULL),
                     COFFER_E_STATE);
    assert_non_null(strstr(coffer_err_detail(), "active"));

    /* Marked retired behind Coffer's back while c1 is still under it: refused with the count. */
    v1_before = org_key_wrapped(&org, 1);
    assert_int_equal(world_sql(&w, org_sql("UPDATE coffer.org_keys SET state = 'retired' WHERE "
                                           "org_id = '%s' AND version = 1",
                                           &org)),
                     1);
    assert_int_equal(coffer_keys_org_key_destroy(w.k, w.st, &org.id, 1, &refs, NULL),
                     COFFER_E_REFERENCED);
    assert_int_equal(refs, 1);
    assert_non_null(strstr(coffer_err_detail(), "1 credential versions"));
    assert_true(org_key_is(&org, 1, "state", "retired"));
    v1_after = org_key_wrapped(&org, 1);
    assert_string_equal(v1_after, v1_before);
    free(v1_after);
    assert_int_equal(world_sql(&w, org_sql("UPDATE coffer.org_keys SET state = 'active' WHERE "
                                           "org_id = '%s' AND version = 1",
                                           &org)),
                     1);

    /* c1 moves to v2 when read; then v1 wraps nothing, is retired, and v3 becomes current. */
    check_read(&org, &proj, "c1", "value-c1", &info);
    assert_true(info.rewrapped);
    assert_int_equal(info.org_key_version, 2);
    assert_int_equal(coffer_keys_org_key_retire(w.k, w.st, &org.id, 1, &refs), COFFER_OK);
    assert_int_equal(coffer_keys_org_rotate(w.k, w.st, &org.id, &ok3), COFFER_OK);
    put(&org, &proj, "c3", "value-c3");
    v2_before = org_key_wrapped(&org, 2);

    /* Destroyed: marked so, with a time; its blob overwritten with bytes of the same length. */
    refs = -1;
    assert_int_equal(coffer_keys_org_key_destroy(w.k, w.st, &org.id, 1, &refs, &gone), COFFER_OK);
    assert_int_equal(refs, 0);
    assert_int_equal(gone.version, 1);
    assert_memory_equal(gone.kcv, ok1.kcv, COFFER_KCV_LEN);
    assert_string_equal(gone.label, "");
    assert_true(
        org_key_is(&org, 1, "state || ' ' || (destroyed_at IS NOT NULL)", "destroyed true"));
    v1_after = org_key_wrapped(&org, 1);
    assert_int_equal(strlen(v1_after), strlen(v1_before));
    assert_string_not_equal(v1_after, v1_before);
    free(v1_before);
    free(v1_after);
    /* Only v1 changed: v2 keeps its blob and state, v3 stays current. */
    v2_after = org_key_wrapped(&org, 2);
    assert_string_equal(v2_after, v2_before);
    free(v2_before);
    free(v2_after);
    assert_true(org_key_is(&org, 2, "state", "active"));
    assert_true(org_key_is(&org, 3, "state", "current"));

    /* Destroyed is final: a second destroy is refused, and so is retiring it. */
    assert_int_equal(coffer_keys_org_key_destroy(w.k, w.st, &org.id, 1, &refs, NULL),
                     COFFER_E_STATE);
    assert_non_null(strstr(coffer_err_detail(), "destroyed already"));
    assert_int_equal(coffer_keys_org_key_retire(w.k, w.st, &org.id, 1, &refs), COFFER_E_STATE);

    /* The credential versions under the other versions read, with every cache emptied. */
    world_reopen_token(&w);
    check_read(&org, &proj, "c1", "value-c1", &info);
    assert_int_equal(info.opened_org_key_version, 2);
    check_read(&org, &proj, "c2", "value-c2", &info);
    assert_int_equal(info.opened_org_key_version, 2);
    check_read(&org, &proj, "c3", "value-c3", &info);
    assert_int_equal(info.opened_org_key_version, 3);
    check_read(&w.org, &w.proj, "first", "first-value", NULL);

    /* A row pointed at the destroyed version behind Coffer's back reads as a state error. */
    assert_int_equal(world_sql(&w, org_sql("UPDATE coffer.credential_versions SET "
                                           "org_key_version = 1 WHERE org_id = '%s' AND "
                                           "credential_id IN (SELECT id FROM coffer.credentials "
                                           "WHERE name = 'c3')",
                                           &org)),
                     1);
    assert_int_equal(read_value(w.k, w.st, &org, &proj, "c3", 0, "value-c3", NULL), COFFER_E_STATE);
}

/* ---- Shredding ------------------------------------------------------------------------------ */

/*
 * A running worker: its own token context and connection, with both orgs'
 * keys loaded into its cache before the shred. Exit codes say which check
 * failed.
 */
static int worker(const struct coffer_org *b, const struct coffer_project *pb, int ready_fd,
                  int go_fd)
{
    const char *n[] = {"token"};
    struct coffer_keyset *ks = NULL;
    struct coffer_p11 *p = NULL;
    struct coffer_store *st = NULL;
    struct coffer_keys *k = NULL;
    struct coffer_keys_write wr = {&w.org.id, &w.proj.id, "a1", "api_key", "low", NULL};
    uint32_t version = 0;
    char go = 0;
    int code = 0;

    if (coffer_p11_open(&w.h.p11, &p) != COFFER_OK ||
        coffer_store_open(w.h.db_app, &st) != COFFER_OK || coffer_keys_new(p, &k) != COFFER_OK ||
        coffer_keyset_new(&ks) != COFFER_OK || coffer_keyset_add(ks, n[0], "x", 1) != COFFER_OK) {
        code = 20;
    } else if (read_value(k, st, &w.org, &w.proj, "a1", 0, "value-a1-2", NULL) != COFFER_OK) {
        code = 21;
    } else if (read_value(k, st, b, pb, "b1", 0, "value-b1", NULL) != COFFER_OK) {
        code = 22;
    }
    if (write(ready_fd, "r", 1) != 1) {
        code = 23;
    }
    if (read(go_fd, &go, 1) != 1) {
        code = 24;
    }
    wr.keys = ks;
    if (code != 0) {
        /* already failed */
    } else if (read_value(k, st, &w.org, &w.proj, "a1", 0, "value-a1-2", NULL) != COFFER_E_STATE) {
        code = 25;
    } else if (coffer_keys_cred_write(k, st, &wr, &version) != COFFER_E_STATE) {
        code = 26;
    } else if (read_value(k, st, b, pb, "b1", 0, "value-b1", NULL) != COFFER_OK) {
        code = 27;
    }
    coffer_keyset_free(&ks);
    coffer_keys_free(&k);
    coffer_store_close(&st);
    coffer_p11_close(&p);
    return code;
}

/* A copy of the test database, as the superuser, with no one else connected to it. */
static void copy_database(const char *copy)
{
    char sql[256];
    PGconn *super;
    PGresult *res;

    coffer_store_close(&w.st);
    PQfinish(w.owner);
    super = PQconnectdb(w.h.env.db_super);
    assert_int_equal(PQstatus(super), CONNECTION_OK);
    snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s", copy);
    res = PQexec(super, sql);
    PQclear(res);
    snprintf(sql, sizeof(sql), "CREATE DATABASE %s TEMPLATE %s", copy, w.h.dbname);
    res = PQexec(super, sql);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        fprintf(stderr, "%s: %s\n", sql, PQerrorMessage(super));
    }
    assert_int_equal(PQresultStatus(res), PGRES_COMMAND_OK);
    PQclear(res);
    PQfinish(super);
    assert_int_equal(coffer_store_open(w.h.db_app, &w.st), COFFER_OK);
    w.owner = PQconnectdb(w.h.db_owner);
    assert_int_equal(PQstatus(w.owner), CONNECTION_OK);
}

static void drop_database(const char *name)
{
    char sql[256];
    PGconn *super = PQconnectdb(w.h.env.db_super);
    PGresult *res;

    assert_int_equal(PQstatus(super), CONNECTION_OK);
    snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s WITH (FORCE)", name);
    res = PQexec(super, sql);
    assert_int_equal(PQresultStatus(res), PGRES_COMMAND_OK);
    PQclear(res);
    PQfinish(super);
}

static void test_shred_org(void **state)
{
    struct coffer_keys_shred_report rep;
    struct coffer_keys_shred_report again;
    struct coffer_keys_read_info info;
    struct coffer_org b;
    struct coffer_project pb;
    struct coffer_store *copy_st = NULL;
    struct harness_run list;
    char copy[96];
    char copy_ci[PATH_MAX + 160];
    char old_label[32];
    char new_label[32];
    char *wrapped_before;
    char *wrapped_after;
    int ready[2];
    int go[2];
    int status = 0;
    uint32_t old_mk;
    pid_t pid;

    (void)state;
    new_org("orgb", &b, &pb);
    put(&w.org, &w.proj, "a1", "value-a1-1");
    put(&w.org, &w.proj, "a1", "value-a1-2");
    put(&w.org, &w.proj, "a2", "value-a2");
    put(&b, &pb, "b1", "value-b1");
    put(&b, &pb, "b2", "value-b2");
    old_mk = current_mk();
    wrapped_before = world_sql_value(
        &w, org_sql("SELECT string_agg(encode(wrapped, 'hex'), ',' ORDER BY version) FROM "
                    "coffer.org_keys WHERE org_id = '%s'",
                    &w.org));

    /* The backup: a copy of the whole database before the shred. */
    snprintf(copy, sizeof(copy), "%s_pre", w.h.dbname);
    copy_database(copy);
    snprintf(copy_ci, sizeof(copy_ci), "host=%s dbname=%s user=coffer_app", w.h.env.pg_socket_dir,
             copy);
    assert_int_equal(coffer_store_open(copy_ci, &copy_st), COFFER_OK);
    /* Before the shred the copy reads like the original. */
    assert_int_equal(read_value(w.k, copy_st, &w.org, &w.proj, "a1", 0, "value-a1-2", NULL),
                     COFFER_OK);

    assert_int_equal(pipe(ready), 0);
    assert_int_equal(pipe(go), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        _exit(worker(&b, &pb, ready[1], go[0]));
    }
    {
        char r = 0;

        assert_int_equal(read(ready[0], &r, 1), 1);
    }

    assert_int_equal(coffer_keys_org_shred(w.k, w.st, &w.org.id, &rep), COFFER_OK);
    assert_int_equal(write(go[1], "g", 1), 1);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    close(ready[0]);
    close(ready[1]);
    close(go[0]);
    close(go[1]);

    /* The report: the org's keys and rows, the master key destroyed and its successor. */
    assert_int_equal(rep.org_key_versions, 1);
    assert_int_equal(rep.credential_versions, 4); /* "first", a1 twice, a2 */
    assert_int_equal(rep.old_mk_version, old_mk);
    assert_int_equal(rep.new_mk_version, old_mk + 1);
    assert_true(rep.org_keys_rewrapped >= 1);
    shred_ok(&w.org, &rep);

    /* The org's rows are overwritten; its credentials read as a state error, every version. */
    wrapped_after = world_sql_value(
        &w, org_sql("SELECT string_agg(encode(wrapped, 'hex'), ',' ORDER BY version) FROM "
                    "coffer.org_keys WHERE org_id = '%s'",
                    &w.org));
    assert_int_equal(strlen(wrapped_after), strlen(wrapped_before));
    assert_string_not_equal(wrapped_after, wrapped_before);
    free(wrapped_before);
    free(wrapped_after);
    assert_int_equal(read_value(w.k, w.st, &w.org, &w.proj, "a1", 0, "value-a1-2", NULL),
                     COFFER_E_STATE);
    assert_non_null(strstr(coffer_err_detail(), "destroyed"));
    assert_int_equal(read_value(w.k, w.st, &w.org, &w.proj, "a1", 1, "value-a1-1", NULL),
                     COFFER_E_STATE);
    assert_int_equal(read_value(w.k, w.st, &w.org, &w.proj, "a2", 0, "value-a2", NULL),
                     COFFER_E_STATE);
    /* The other org reads as before, through the new master key. */
    world_reopen_token(&w);
    check_read(&b, &pb, "b1", "value-b1", &info);
    assert_int_equal(info.opened_mk_version, rep.new_mk_version);
    check_read(&b, &pb, "b2", "value-b2", &info);
    assert_int_equal(info.opened_mk_version, rep.new_mk_version);
    assert_true(world_sql_is(&w,
                             org_sql("SELECT count(*) FROM coffer.org_keys WHERE org_id = '%s' "
                                     "AND mk_version <> (SELECT version FROM "
                                     "coffer.master_keys WHERE state = 'current')",
                                     &b),
                             "0"));
    snprintf(old_label, sizeof(old_label), "coffer-mk-v%u", old_mk);
    snprintf(new_label, sizeof(new_label), "coffer-mk-v%u", rep.new_mk_version);
    pkcs11_tool_list(&list);
    assert_null(strstr(list.out, old_label));
    assert_non_null(strstr(list.out, new_label));

    /*
     * The copy taken before still holds the org's wrapped keys under the old
     * master key, which the token no longer has: nothing in it opens.
     */
    assert_int_equal(token_objects(old_label), 0);
    world_reopen_token(&w);
    assert_int_equal(read_value(w.k, copy_st, &w.org, &w.proj, "a1", 0, "value-a1-2", NULL),
                     COFFER_E_NOT_FOUND);
    assert_int_equal(read_value(w.k, copy_st, &w.org, &w.proj, "a2", 0, "value-a2", NULL),
                     COFFER_E_NOT_FOUND);
    /* Nor anything else that was under the destroyed master key in the copy. */
    assert_int_equal(read_value(w.k, copy_st, &b, &pb, "b1", 0, "value-b1", NULL),
                     COFFER_E_NOT_FOUND);
    coffer_store_close(&copy_st);
    drop_database(copy);

    /* Running the shred again changes nothing and succeeds. */
    shred_ok(&w.org, &again);
    assert_int_equal(again.new_mk_version, rep.new_mk_version);
    assert_int_equal(again.old_mk_version, rep.old_mk_version);
    assert_int_equal(again.org_keys_rewrapped, 0);
    assert_int_equal(max_mk(), rep.new_mk_version);
    check_read(&b, &pb, "b1", "value-b1", NULL);
    /* A shred of an org that does not exist is refused. */
    {
        struct coffer_uuid none;

        memset(&none, 0x5a, sizeof(none));
        assert_int_equal(coffer_keys_org_shred(w.k, w.st, &none, &again), COFFER_E_NOT_FOUND);
    }
}

/* ---- Crashes between steps ------------------------------------------------------------------ */

static void test_shred_resumes_after_crash(void **state)
{
    struct coffer_keys_shred_report rep;
    struct coffer_org keep, c1, c2, c3;
    struct coffer_project pk, p1, p2, p3;
    struct coffer_p11_session *s = NULL;
    char label[32];
    int64_t refs = 0;
    uint32_t before;

    (void)state;
    new_org("keep", &keep, &pk);
    put(&keep, &pk, "k1", "value-k1");
    new_org("crash1", &c1, &p1);
    put(&c1, &p1, "c", "value-c1");
    new_org("crash2", &c2, &p2);
    put(&c2, &p2, "c", "value-c2");
    new_org("crash3", &c3, &p3);
    put(&c3, &p3, "c", "value-c3");

    /* Stopped after step 1: later steps refuse to run out of order; a re-run finishes. */
    memset(&rep, 0, sizeof(rep));
    before = max_mk();
    assert_int_equal(coffer_keys_shred_org_keys(w.k, w.st, &c1.id, &rep), COFFER_OK);
    assert_int_equal(read_value(w.k, w.st, &c1, &p1, "c", 0, "value-c1", NULL), COFFER_E_STATE);
    assert_int_equal(coffer_keys_shred_old_mks(w.k, w.st, &c1.id, &rep), COFFER_E_STATE);
    assert_int_equal(coffer_keys_shred_new_mk(w.k, w.st, &keep.id, &rep), COFFER_E_STATE);
    shred_ok(&c1, &rep);
    assert_int_equal(max_mk(), before + 1);
    check_read(&keep, &pk, "k1", "value-k1", NULL);

    /* Stopped after step 2: the re-run makes no second master key. */
    before = max_mk();
    assert_int_equal(coffer_keys_shred_org_keys(w.k, w.st, &c2.id, &rep), COFFER_OK);
    assert_int_equal(coffer_keys_shred_new_mk(w.k, w.st, &c2.id, &rep), COFFER_OK);
    assert_int_equal(max_mk(), before + 1);
    /* The old master key still wraps the other orgs' keys: it cannot be destroyed yet. */
    assert_int_equal(coffer_keys_shred_old_mks(w.k, w.st, &c2.id, &rep), COFFER_E_REFERENCED);
    assert_int_equal(token_objects(mk_sql("coffer-mk-v%u", before)), 1);
    shred_ok(&c2, &rep);
    assert_int_equal(max_mk(), before + 1);
    assert_int_equal(rep.old_mk_version, before);
    check_read(&keep, &pk, "k1", "value-k1", NULL);
    check_read(&c3, &p3, "c", "value-c3", NULL);

    /*
     * Stopped inside step 4, after the old master key left the token and before
     * its row said so: the re-run marks it destroyed.
     */
    before = max_mk();
    assert_int_equal(coffer_keys_shred_org_keys(w.k, w.st, &c3.id, &rep), COFFER_OK);
    assert_int_equal(coffer_keys_shred_new_mk(w.k, w.st, &c3.id, &rep), COFFER_OK);
    assert_int_equal(coffer_keys_shred_rewrap(w.k, w.st, &rep), COFFER_OK);
    assert_int_equal(coffer_keys_mk_retire(w.k, w.st, before, &refs), COFFER_OK);
    snprintf(label, sizeof(label), "coffer-mk-v%u", before);
    assert_int_equal(coffer_p11_session_get(w.p11, &s), COFFER_OK);
    assert_int_equal(coffer_p11_destroy_labelled(s, label, NULL), COFFER_OK);
    coffer_p11_session_put(w.p11, &s);
    assert_true(world_sql_is(
        &w, mk_sql("SELECT state FROM coffer.master_keys WHERE version = %u", before), "retired"));
    shred_ok(&c3, &rep);
    assert_true(
        world_sql_is(&w, mk_sql("SELECT state FROM coffer.master_keys WHERE version = %u", before),
                     "destroyed"));
    assert_int_equal(max_mk(), before + 1);
    world_reopen_token(&w);
    check_read(&keep, &pk, "k1", "value-k1", NULL);
    assert_int_equal(read_value(w.k, w.st, &c3, &p3, "c", 0, "value-c3", NULL), COFFER_E_STATE);
}

/* ---- The commands -----------------------------------------------------------------------------
 */

static void coffer_env(char vars[6][PATH_MAX + 160], const char *envp[8])
{
    snprintf(vars[0], PATH_MAX + 160, "COFFER_PKCS11_MODULE=%s", w.h.p11.module);
    snprintf(vars[1], PATH_MAX + 160, "COFFER_TOKEN_URI=%s", w.h.p11.token_uri);
    snprintf(vars[2], PATH_MAX + 160, "COFFER_PIN_SOURCE=%s", w.h.p11.pin_source);
    snprintf(vars[3], PATH_MAX + 160, "COFFER_DATABASE=%s", w.h.db_app);
    snprintf(vars[4], PATH_MAX + 160, "SOFTHSM2_CONF=%s", w.h.env.softhsm_conf);
    snprintf(vars[5], PATH_MAX + 160, "COFFER_LOG=warn");
    for (size_t i = 0; i < 6; i++) {
        envp[i] = vars[i];
    }
    envp[6] = "PATH=/usr/bin:/bin";
    envp[7] = NULL;
}

/* Runs coffer with args, or (typed != NULL) through sh with typed on its stdin. */
static void run(const char *const *args, const char *typed, int status, const char *needle)
{
    char vars[6][PATH_MAX + 160];
    const char *envp[8];
    const char *argv[16];
    char cmd[PATH_MAX + 256];
    struct harness_run res;
    const char *first = args[0];
    size_t n = 0;

    coffer_env(vars, envp);
    if (typed == NULL) {
        argv[n++] = COFFER_BIN;
        while (*args != NULL && n < 15) {
            argv[n++] = *args++;
        }
        argv[n] = NULL;
    } else {
        int len = snprintf(cmd, sizeof(cmd), "printf '%%s\\n' '%s' | '%s'", typed, COFFER_BIN);

        while (*args != NULL) {
            len += snprintf(cmd + len, sizeof(cmd) - (size_t)len, " '%s'", *args++);
        }
        assert_true(len > 0 && (size_t)len < sizeof(cmd));
        argv[0] = "/bin/sh";
        argv[1] = "-c";
        argv[2] = cmd;
        argv[3] = NULL;
    }
    harness_run(argv, envp, &res);
    if (res.status != status || strstr(res.out, needle) == NULL) {
        fprintf(stderr, "coffer %s: status %d (want %d), output:\n%s\n(want '%s')\n", first,
                res.status, status, res.out, needle);
    }
    assert_int_equal(res.status, status);
    assert_non_null(strstr(res.out, needle));
    assert_null(strstr(res.out, pin));
}

static void test_cli(void **state)
{
    struct coffer_keys_created mk;
    struct coffer_org org;
    struct coffer_project proj;
    const char *shred[] = {"keys", "shred-org", "clio", NULL};
    const char *shred_yes[] = {"keys", "shred-org", "clio", "--yes", NULL};
    const char *shred_none[] = {"keys", "shred-org", "nosuch", NULL};
    char ver[16];
    const char *destroy[] = {"keys", "destroy-mk", ver, NULL};
    const char *destroy_bad[] = {"keys", "destroy-mk", "zero", NULL};
    const char *dorg_current[] = {"keys", "destroy-org", "clid", "2", NULL};
    const char *dorg[] = {"keys", "destroy-org", "clid", "1", NULL};
    const char *dorg_none[] = {"keys", "destroy-org", "nosuch", "1", NULL};
    const char *dorg_bad[] = {"keys", "destroy-org", "clid", "zero", NULL};
    struct coffer_keys_created ok1;
    struct coffer_keys_created ok2;
    struct coffer_org org_d;
    char kcv[2 * COFFER_KCV_LEN + 1];
    char want[256];
    int64_t refs = 0;
    uint32_t cur;

    (void)state;
    new_org("clio", &org, &proj);
    put(&org, &proj, "c", "value-cli");
    run(shred_yes, NULL, 2, "takes no --yes");
    run(shred_none, "nosuch", 1, "nosuch");
    /* No confirmation (stdin at its end) and a wrong one do nothing. */
    run(shred, NULL, 1, "does not match");
    run(shred, "cli", 1, "does not match");
    check_read(&org, &proj, "c", "value-cli", NULL);
    run(shred, "clio", 0, "org clio shredded: 1 org key version(s) destroyed, 1 credential");
    assert_int_equal(read_value(w.k, w.st, &org, &proj, "c", 0, "value-cli", NULL), COFFER_E_STATE);

    /* destroy-mk: refuses the current version, destroys a retired one. */
    cur = current_mk();
    snprintf(ver, sizeof(ver), "%u", cur);
    run(destroy, NULL, 1, "current");
    run(destroy_bad, NULL, 1, "destroy-mk");
    assert_int_equal(coffer_keys_mk_create(w.k, w.st, &mk), COFFER_OK);
    sweep_all();
    assert_int_equal(coffer_keys_mk_retire(w.k, w.st, cur, &refs), COFFER_OK);
    snprintf(want, sizeof(want), "master key coffer-mk-v%u (KCV", cur);
    run(destroy, NULL, 0, want);
    run(destroy, NULL, 1, "destroyed already");
    assert_int_equal(token_objects(mk_sql("coffer-mk-v%u", cur)), 0);

    /* destroy-org: refuses the current version and bad arguments, destroys a retired one. */
    assert_int_equal(coffer_keys_org_create(w.k, w.st, "clid", &org_d, &ok1), COFFER_OK);
    assert_int_equal(coffer_keys_org_rotate(w.k, w.st, &org_d.id, &ok2), COFFER_OK);
    run(dorg_current, NULL, 1, "current");
    run(dorg_none, NULL, 1, "nosuch");
    run(dorg_bad, NULL, 1, "destroy-org");
    run(dorg, NULL, 1, "only a retired version");
    assert_int_equal(coffer_keys_org_key_retire(w.k, w.st, &org_d.id, 1, &refs), COFFER_OK);
    coffer_hex(ok1.kcv, COFFER_KCV_LEN, kcv);
    snprintf(want, sizeof(want),
             "org clid key v1 (KCV %s) destroyed: its wrapped key is overwritten in the "
             "database\na database backup taken before still holds it wrapped under master key "
             "v%u",
             kcv, current_mk());
    run(dorg, NULL, 0, want);
    run(dorg, NULL, 1, "destroyed already");
    assert_true(org_key_is(&org_d, 1, "state", "destroyed"));
    assert_true(org_key_is(&org_d, 2, "state", "current"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mk_destroy), cmocka_unit_test(test_org_key_destroy),
        cmocka_unit_test(test_shred_org),  cmocka_unit_test(test_shred_resumes_after_crash),
        cmocka_unit_test(test_cli),
    };
    FILE *f;
    size_t len;
    int failed;

    world_open("keys_destroy", "orga", &w);
    f = fopen(w.h.p11.pin_source + strlen("file:"), "r");
    if (f == NULL || fgets(pin, sizeof(pin), f) == NULL) {
        fprintf(stderr, "keys_destroy_test: cannot read the token PIN file\n");
        return 1;
    }
    fclose(f);
    len = strlen(pin);
    while (len > 0 && (pin[len - 1] == '\n' || pin[len - 1] == '\r')) {
        pin[--len] = '\0';
    }
    if (len < 8) {
        fprintf(stderr, "keys_destroy_test: the PIN is too short to search for\n");
        return 1;
    }
    failed = cmocka_run_group_tests(tests, NULL, NULL);
    world_close(&w);
    return failed;
}

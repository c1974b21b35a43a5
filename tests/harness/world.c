/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The integration tests' common set-up over the harness (see world.h).
 */
#include "world.h"

#include "coffer/arena.h"
#include "coffer/mem.h"
#include "coffer/policy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void die(const char *step, enum coffer_err r)
{
    fprintf(stderr, "world: %s: %s: %s\n", step, coffer_err_str(r), coffer_err_detail());
    exit(1);
}

static void open_token(struct world *w)
{
    enum coffer_err r;

    if ((r = coffer_p11_open(&w->h.p11, &w->p11)) != COFFER_OK) {
        die("coffer_p11_open", r);
    }
    if ((r = coffer_keys_new(w->p11, &w->k)) != COFFER_OK) {
        die("coffer_keys_new", r);
    }
}

void world_open(const char *name, const char *org_name, struct world *w)
{
    enum coffer_err r;

    memset(w, 0, sizeof(*w));
    if ((r = coffer_harden_process()) != COFFER_OK) {
        die("harden", r);
    }
    harness_setup(name, &w->h);
    open_token(w);
    if ((r = coffer_store_open(w->h.db_app, &w->st)) != COFFER_OK) {
        die("coffer_store_open", r);
    }
    if ((r = coffer_keys_mk_create(w->k, w->st, &w->mk1)) != COFFER_OK) {
        die("coffer_keys_mk_create", r);
    }
    if ((r = coffer_keys_org_create(w->k, w->st, org_name, &w->org, NULL)) != COFFER_OK) {
        die("coffer_keys_org_create", r);
    }
    if ((r = coffer_store_project_insert(w->st, &w->org.id, "proj", &w->proj)) != COFFER_OK) {
        die("coffer_store_project_insert", r);
    }
    w->owner = PQconnectdb(w->h.db_owner);
    if (PQstatus(w->owner) != CONNECTION_OK) {
        fprintf(stderr, "world: owner connection: %s\n", PQerrorMessage(w->owner));
        exit(1);
    }
}

void world_reopen_token(struct world *w)
{
    coffer_keys_free(&w->k);
    coffer_p11_close(&w->p11);
    open_token(w);
}

void world_close(struct world *w)
{
    coffer_keys_free(&w->k);
    coffer_store_close(&w->st);
    coffer_p11_close(&w->p11);
    if (w->owner != NULL) {
        PQfinish(w->owner);
        w->owner = NULL;
    }
    harness_teardown(&w->h);
}

long world_sql(struct world *w, const char *sql)
{
    PGresult *res = PQexec(w->owner, sql);
    long n;

    if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK) {
        fprintf(stderr, "world: SQL failed: %s\n%s\n", sql, PQerrorMessage(w->owner));
        exit(1);
    }
    n = atol(PQcmdTuples(res));
    PQclear(res);
    return n;
}

char *world_sql_value(struct world *w, const char *sql)
{
    PGresult *res = PQexec(w->owner, sql);
    char *v;

    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        fprintf(stderr, "world: query failed or not one row: %s\n%s\n", sql,
                PQerrorMessage(w->owner));
        exit(1);
    }
    v = coffer_strdup(PQgetisnull(res, 0, 0) ? "" : PQgetvalue(res, 0, 0));
    PQclear(res);
    if (v == NULL) {
        exit(1);
    }
    return v;
}

bool world_sql_is(struct world *w, const char *sql, const char *expected)
{
    char *v = world_sql_value(w, sql);
    bool same = strcmp(v, expected) == 0;

    if (!same) {
        fprintf(stderr, "world: %s\n  returned '%s', expected '%s'\n", sql, v, expected);
    }
    coffer_free(v);
    return same;
}

struct coffer_store *world_store(struct world *w)
{
    struct coffer_store *st = NULL;
    enum coffer_err r;

    if ((r = coffer_store_open(w->h.db_app, &st)) != COFFER_OK) {
        die("coffer_store_open", r);
    }
    return st;
}

uint32_t world_put(struct world *w, const struct coffer_org *org, const struct coffer_project *proj,
                   const char *cred, size_t n, const char *const *names, const char *const *values,
                   const size_t *lens)
{
    struct coffer_keyset *ks = NULL;
    struct coffer_keys_write wr;
    uint32_t version = 0;
    enum coffer_err r;
    size_t i;

    if ((r = coffer_keyset_new(&ks)) != COFFER_OK) {
        die("keyset", r);
    }
    for (i = 0; i < n; i++) {
        if ((r = coffer_keyset_add(ks, names[i], values[i], lens[i])) != COFFER_OK) {
            die("keyset_add", r);
        }
    }
    wr.org_id = &org->id;
    wr.project_id = &proj->id;
    wr.name = cred;
    wr.type = "custom";
    wr.tier = "medium";
    wr.keys = ks;
    if ((r = coffer_keys_cred_write(w->k, w->st, &wr, &version)) != COFFER_OK) {
        die("coffer_keys_cred_write", r);
    }
    coffer_keyset_free(&ks);
    return version;
}

void world_add_project(struct world *w, const char *name, struct coffer_project *out)
{
    struct coffer_project p;
    enum coffer_err r;

    if ((r = coffer_store_project_insert(w->st, &w->org.id, name, out != NULL ? out : &p)) !=
        COFFER_OK) {
        die("coffer_store_project_insert", r);
    }
}

int world_apply_policy(struct world *w, const char *yaml)
{
    struct coffer_policy *p = NULL;
    struct coffer_policy_diags d = {0};
    struct coffer_arena *a = NULL;
    struct coffer_store_policy_result res;
    int rc = 0;

    if (coffer_policy_new(&p) != COFFER_OK ||
        coffer_policy_add_buffer(p, "policy.yaml", yaml, strlen(yaml), &d) != COFFER_OK ||
        coffer_policy_finish(p, &d) != COFFER_OK || coffer_arena_new(0, &a) != COFFER_OK ||
        coffer_store_policy_apply(w->st, &p->orgs[0], "test", a, &res) != COFFER_OK) {
        fprintf(stderr, "world: policy: %s\n", d.n > 0 ? d.lines[0] : coffer_err_detail());
        rc = -1;
    }
    coffer_policy_diags_cleanup(&d);
    coffer_policy_free(&p);
    coffer_arena_free(&a);
    return rc;
}

long world_audit_mark(struct world *w)
{
    char *v = world_sql_value(w, "SELECT coalesce(max(id), 0) FROM coffer.audit_events");
    long n = atol(v);

    coffer_free(v);
    return n;
}

/* Compares the events after mark, each as the SQL expression item, joined by ",". */
static bool events_are(struct world *w, long mark, const char *item, const char *expected)
{
    char sql[512];
    char *got;
    bool same;

    snprintf(sql, sizeof(sql),
             "SELECT coalesce(string_agg(%s, ',' ORDER BY id), '') FROM coffer.audit_events "
             "WHERE id > %ld",
             item, mark);
    got = world_sql_value(w, sql);
    same = strcmp(got, expected) == 0;
    if (!same) {
        fprintf(stderr, "world: events: got '%s', want '%s'\n", got, expected);
    }
    coffer_free(got);
    return same;
}

bool world_events_are(struct world *w, long mark, const char *expected)
{
    return events_are(w, mark,
                      "action || '/' || allowed || '/' || reason || '/' || coalesce(detail, '-')",
                      expected);
}

bool world_reasons_are(struct world *w, long mark, const char *expected)
{
    return events_are(w, mark, "action || '/' || allowed || '/' || reason", expected);
}

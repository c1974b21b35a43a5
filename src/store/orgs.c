/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Orgs and projects: the rows every other table is scoped by. Names are
 * checked before any SQL runs, and every row read back is checked against
 * what was asked for, so a project can never be handed out under the wrong
 * org.
 *
 * This file must never look a project up without its org.
 */
#include "coffer/store.h"

#include <string.h>

#include "store/store_int.h"

static const struct store_stmt org_insert = {
    .name = "coffer_org_insert",
    .sql = "INSERT INTO coffer.orgs (name) VALUES ($1) RETURNING id, name",
    .nparams = 1,
    .types = {STORE_OID_TEXT},
    .ncols = 2,
};

static const struct store_stmt org_by_name = {
    .name = "coffer_org_by_name",
    .sql = "SELECT id, name FROM coffer.orgs WHERE name = $1",
    .nparams = 1,
    .types = {STORE_OID_TEXT},
    .ncols = 2,
};

static const struct store_stmt org_lock = {
    .name = "coffer_org_lock",
    .sql = "SELECT id FROM coffer.orgs WHERE id = $1 FOR UPDATE",
    .nparams = 1,
    .types = {STORE_OID_UUID},
    .ncols = 1,
};

static const struct store_stmt project_insert = {
    .name = "coffer_project_insert",
    .sql = "INSERT INTO coffer.projects (org_id, name) VALUES ($1, $2) RETURNING id, org_id, name",
    .nparams = 2,
    .types = {STORE_OID_UUID, STORE_OID_TEXT},
    .ncols = 3,
};

static const struct store_stmt project_by_name = {
    .name = "coffer_project_by_name",
    .sql = "SELECT id, org_id, name FROM coffer.projects WHERE org_id = $1 AND name = $2",
    .nparams = 2,
    .types = {STORE_OID_UUID, STORE_OID_TEXT},
    .ncols = 3,
};

const struct store_stmt *const store_stmts_orgs[] = {
    &org_insert, &org_by_name, &org_lock, &project_insert, &project_by_name, NULL,
};

static enum coffer_err org_from_row(const PGresult *res, const char *want_name,
                                    struct coffer_org *out)
{
    enum coffer_err r;

    if ((r = store_one_row(res, "coffer.orgs")) != COFFER_OK ||
        (r = store_col_uuid(res, 0, 0, "coffer.orgs.id", &out->id)) != COFFER_OK ||
        (r = store_col_name(res, 0, 1, "coffer.orgs.name", out->name)) != COFFER_OK) {
        return r;
    }
    if (strcmp(out->name, want_name) != 0) {
        return coffer_err_set(COFFER_E_INTEGRITY, "coffer.orgs.name: row does not match the query");
    }
    return COFFER_OK;
}

enum coffer_err coffer_store_org_insert(struct coffer_store *s, const char *name,
                                        struct coffer_org *out)
{
    struct store_params p = {0};
    PGresult *res = NULL;
    enum coffer_err r;

    memset(out, 0, sizeof(*out));
    if ((r = store_check_name(name, "org name")) != COFFER_OK) {
        return r;
    }
    store_param_text(&p, name);
    if ((r = store_exec(s, &org_insert, &p, "inserting org", &res)) != COFFER_OK) {
        if (r == COFFER_E_EXISTS) {
            r = coffer_err_set(COFFER_E_EXISTS, "org %s already exists", name);
        }
        return r;
    }
    r = org_from_row(res, name, out);
    PQclear(res);
    if (r != COFFER_OK) {
        memset(out, 0, sizeof(*out));
    }
    return r;
}

enum coffer_err coffer_store_org_by_name(struct coffer_store *s, const char *name,
                                         struct coffer_org *out)
{
    struct store_params p = {0};
    PGresult *res = NULL;
    enum coffer_err r;

    memset(out, 0, sizeof(*out));
    if ((r = store_check_name(name, "org name")) != COFFER_OK) {
        return r;
    }
    store_param_text(&p, name);
    if ((r = store_exec(s, &org_by_name, &p, "looking up org", &res)) != COFFER_OK) {
        return r;
    }
    r = org_from_row(res, name, out);
    PQclear(res);
    if (r == COFFER_E_NOT_FOUND) {
        r = coffer_err_set(COFFER_E_NOT_FOUND, "org %s not found", name);
    }
    if (r != COFFER_OK) {
        memset(out, 0, sizeof(*out));
    }
    return r;
}

enum coffer_err coffer_store_org_lock(struct coffer_store *s, const struct coffer_uuid *org_id)
{
    struct store_params p = {0};
    struct coffer_uuid got;
    PGresult *res = NULL;
    enum coffer_err r;

    if ((r = store_require_tx(s, "locking org")) != COFFER_OK) {
        return r;
    }
    store_param_uuid(&p, org_id);
    if ((r = store_exec(s, &org_lock, &p, "locking org", &res)) != COFFER_OK) {
        return r;
    }
    if ((r = store_one_row(res, "org")) == COFFER_OK &&
        (r = store_col_uuid(res, 0, 0, "coffer.orgs.id", &got)) == COFFER_OK &&
        !coffer_uuid_equal(&got, org_id)) {
        r = coffer_err_set(COFFER_E_INTEGRITY, "coffer.orgs.id: row does not match the query");
    }
    PQclear(res);
    return r;
}

static enum coffer_err project_from_row(const PGresult *res, const struct coffer_uuid *org_id,
                                        const char *want_name, struct coffer_project *out)
{
    enum coffer_err r;

    if ((r = store_one_row(res, "project")) != COFFER_OK ||
        (r = store_col_uuid(res, 0, 0, "coffer.projects.id", &out->id)) != COFFER_OK ||
        (r = store_col_uuid(res, 0, 1, "coffer.projects.org_id", &out->org_id)) != COFFER_OK ||
        (r = store_col_name(res, 0, 2, "coffer.projects.name", out->name)) != COFFER_OK) {
        return r;
    }
    if (!coffer_uuid_equal(&out->org_id, org_id) || strcmp(out->name, want_name) != 0) {
        return coffer_err_set(COFFER_E_INTEGRITY, "coffer.projects: row does not match the query");
    }
    return COFFER_OK;
}

enum coffer_err coffer_store_project_insert(struct coffer_store *s,
                                            const struct coffer_uuid *org_id, const char *name,
                                            struct coffer_project *out)
{
    struct store_params p = {0};
    PGresult *res = NULL;
    enum coffer_err r;

    memset(out, 0, sizeof(*out));
    if ((r = store_check_name(name, "project name")) != COFFER_OK) {
        return r;
    }
    store_param_uuid(&p, org_id);
    store_param_text(&p, name);
    if ((r = store_exec(s, &project_insert, &p, "inserting project", &res)) != COFFER_OK) {
        if (r == COFFER_E_EXISTS) {
            r = coffer_err_set(COFFER_E_EXISTS, "project %s already exists in this org", name);
        } else if (store_sqlstate_is(s, "23503")) {
            r = coffer_err_set(COFFER_E_NOT_FOUND, "inserting project %s: no such org", name);
        }
        return r;
    }
    r = project_from_row(res, org_id, name, out);
    PQclear(res);
    if (r != COFFER_OK) {
        memset(out, 0, sizeof(*out));
    }
    return r;
}

enum coffer_err coffer_store_project_by_name(struct coffer_store *s,
                                             const struct coffer_uuid *org_id, const char *name,
                                             struct coffer_project *out)
{
    struct store_params p = {0};
    PGresult *res = NULL;
    enum coffer_err r;

    memset(out, 0, sizeof(*out));
    if ((r = store_check_name(name, "project name")) != COFFER_OK) {
        return r;
    }
    store_param_uuid(&p, org_id);
    store_param_text(&p, name);
    if ((r = store_exec(s, &project_by_name, &p, "looking up project", &res)) != COFFER_OK) {
        return r;
    }
    r = project_from_row(res, org_id, name, out);
    PQclear(res);
    if (r == COFFER_E_NOT_FOUND) {
        r = coffer_err_set(COFFER_E_NOT_FOUND, "project %s not found in this org", name);
    }
    if (r != COFFER_OK) {
        memset(out, 0, sizeof(*out));
    }
    return r;
}

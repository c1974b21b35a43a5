/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Credential metadata for the metadata routes: name, type, tier, versions,
 * times, expiry, revocation, description and the names of the keys with
 * any key's own expiry, with whether a given agent holds a grant, in one
 * query per request.
 *
 * The lookup is always by the principal's org name, so another org's
 * credentials are indistinguishable from ones that do not exist. This file
 * must never select a ciphertext, a wrapped key or anything else derived
 * from a value: the query reads the key names of the current version and
 * their own expiry times, and nothing more of credential_versions.
 */
#include "coffer/store.h"

#include "coffer/authz.h"

#include <string.h>

#include "store/store_int.h"

#define TYPE_MAX 31 /* coffer.credentials.type: ^[a-z0-9_]{1,31}$ */

/*
 * One row per credential, or one row with a NULL name for a project that
 * has none; no row for an unknown org or project. The grant and membership
 * checks name the agent type and instance of $4 and $5; NULL there matches
 * neither.
 */
static const struct store_stmt meta_load = {
    .name = "coffer_meta_load",
    .sql = "SELECT p.phase, c.name, c.type, c.tier, c.current_version, "
           "(extract(epoch FROM c.created_at) * 1000000)::int8, "
           "(extract(epoch FROM c.updated_at) * 1000000)::int8, "
           "(extract(epoch FROM c.expires_at) * 1000000)::int8, "
           "c.revoked_at IS NOT NULL, COALESCE(c.description, r.description), v.key_names, "
           "EXISTS (SELECT 1 FROM coffer.grants g WHERE g.project_id = p.id "
           "AND g.org_id = o.id AND g.credential_name = c.name AND g.agent_type = $4 "
           "AND (g.instance IS NULL OR g.instance = $5)), "
           "EXISTS (SELECT 1 FROM coffer.project_members m WHERE m.project_id = p.id "
           "AND m.org_id = o.id AND m.agent_type = $4), "
           "CASE WHEN v.key_expires_at IS NULL THEN NULL ELSE ARRAY("
           "SELECT (extract(epoch FROM u.e) * 1000000)::int8 "
           "FROM unnest(v.key_expires_at) WITH ORDINALITY AS u(e, i) ORDER BY u.i) END "
           "FROM coffer.orgs o "
           "JOIN coffer.projects p ON p.org_id = o.id AND p.name = $2 AND p.removed_at IS NULL "
           "LEFT JOIN coffer.credentials c ON c.project_id = p.id AND c.org_id = o.id "
           "AND ($3::text IS NULL OR c.name = $3) "
           "LEFT JOIN coffer.credential_rules r ON r.project_id = p.id AND r.name = c.name "
           "LEFT JOIN coffer.credential_versions v ON v.credential_id = c.id "
           "AND v.org_id = o.id AND v.version = c.current_version "
           "WHERE o.name = $1 "
           "ORDER BY c.name COLLATE \"C\"",
    .nparams = 5,
    .types = {STORE_OID_TEXT, STORE_OID_TEXT, STORE_OID_TEXT, STORE_OID_TEXT, STORE_OID_TEXT},
    .ncols = 14,
};

const struct store_stmt *const store_stmts_meta[] = {&meta_load, NULL};

/* Whether a stored type is what coffer.credentials.type allows. */
static bool type_ok(const char *s)
{
    size_t len = strlen(s);

    if (len == 0 || len > TYPE_MAX) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        char c = s[i];

        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) {
            return false;
        }
    }
    return true;
}

/* The key names of the current version: present, 1..COFFER_KEYS_MAX valid names. */
static enum coffer_err read_keys(const PGresult *res, int row, struct coffer_arena *a,
                                 struct coffer_store_meta *m)
{
    const char **keys = NULL;
    enum coffer_err r;

    if (PQgetisnull(res, row, 10)) {
        return coffer_err_set(COFFER_E_INTEGRITY,
                              "coffer.credential_versions: credential %s has no row for its "
                              "current version",
                              m->name);
    }
    if ((r = store_col_strings(res, row, 10, "coffer.credential_versions.key_names", a,
                               COFFER_KEYS_MAX, COFFER_KEY_NAME_MAX, STORE_TEXT_TEXT, false, &keys,
                               &m->n_keys)) != COFFER_OK) {
        return r;
    }
    if (m->n_keys == 0) {
        return coffer_err_set(COFFER_E_INTEGRITY,
                              "coffer.credential_versions.key_names: credential %s has no keys",
                              m->name);
    }
    for (size_t i = 0; i < m->n_keys; i++) {
        if (!store_key_name_ok(keys[i], strlen(keys[i]))) {
            return coffer_err_set(COFFER_E_INTEGRITY,
                                  "coffer.credential_versions.key_names: element %zu of "
                                  "credential %s is not a key name",
                                  i, m->name);
        }
    }
    m->keys = keys;
    return store_col_key_expiry(res, row, 13, "coffer.credential_versions.key_expires_at", a,
                                m->n_keys, &m->key_expires_us);
}

static enum coffer_err read_row(const PGresult *res, int row, struct coffer_arena *a,
                                struct coffer_store_meta *m)
{
    enum coffer_tier tier;
    bool null = false;
    enum coffer_err r;

    if ((r = store_col_string(res, row, 1, "coffer.credentials.name", a, COFFER_NAME_MAX,
                              STORE_TEXT_NAME, false, &m->name)) != COFFER_OK ||
        (r = store_col_string(res, row, 2, "coffer.credentials.type", a, TYPE_MAX, STORE_TEXT_TEXT,
                              false, &m->type)) != COFFER_OK ||
        (r = store_col_string(res, row, 3, "coffer.credentials.tier", a, 8, STORE_TEXT_NAME, false,
                              &m->tier)) != COFFER_OK ||
        (r = store_col_u32(res, row, 4, "coffer.credentials.current_version", 1, &m->version)) !=
            COFFER_OK ||
        (r = store_col_count(res, row, 5, "coffer.credentials.created_at", &m->created_us)) !=
            COFFER_OK ||
        (r = store_col_count(res, row, 6, "coffer.credentials.updated_at", &m->updated_us)) !=
            COFFER_OK ||
        (r = store_col_int8_opt(res, row, 7, "coffer.credentials.expires_at", &null,
                                &m->expires_us)) != COFFER_OK ||
        (r = store_col_bool(res, row, 8, "coffer.credentials.revoked_at", &m->revoked)) !=
            COFFER_OK ||
        (r = store_col_string(res, row, 9, "coffer.credentials.description", a,
                              COFFER_POLICY_DESC_MAX, STORE_TEXT_TEXT, true, &m->description)) !=
            COFFER_OK ||
        (r = store_col_bool(res, row, 11, "coffer.grants", &m->granted)) != COFFER_OK) {
        return r;
    }
    if (!type_ok(m->type)) {
        return coffer_err_set(COFFER_E_INTEGRITY, "coffer.credentials.type: credential %s",
                              m->name);
    }
    if (!coffer_tier_parse(m->tier, strlen(m->tier), &tier)) {
        return coffer_err_set(COFFER_E_INTEGRITY, "coffer.credentials.tier: credential %s",
                              m->name);
    }
    if (null) {
        m->expires_us = COFFER_AUTHZ_NO_EXPIRY;
    }
    return read_keys(res, row, a, m);
}

static enum coffer_err read_list(const PGresult *res, struct coffer_arena *a,
                                 struct coffer_store_meta_list *out)
{
    int rows = PQntuples(res);
    enum coffer_err r;

    if ((r = store_col_string(res, 0, 0, "coffer.projects.phase", a, COFFER_NAME_MAX,
                              STORE_TEXT_NAME, true, &out->phase)) != COFFER_OK ||
        (r = store_col_bool(res, 0, 12, "coffer.project_members", &out->member)) != COFFER_OK) {
        return r;
    }
    out->project_found = true;
    /* A project without credentials answers with one row whose credential columns are NULL. */
    if (rows == 1 && PQgetisnull(res, 0, 1)) {
        return COFFER_OK;
    }
    if ((out->items = coffer_arena_alloc(a, (size_t)rows, sizeof(*out->items))) == NULL) {
        return coffer_err_set(COFFER_E_NOMEM, "loading metadata of %d credentials", rows);
    }
    for (int i = 0; i < rows; i++) {
        if ((r = read_row(res, i, a, &out->items[i])) != COFFER_OK) {
            return r;
        }
        /* The order is the query's; a row out of order means a collation changed under it. */
        if (i > 0 && strcmp(out->items[i - 1].name, out->items[i].name) >= 0) {
            return coffer_err_set(COFFER_E_INTEGRITY,
                                  "coffer.credentials.name: rows out of order at %s",
                                  out->items[i].name);
        }
    }
    out->n = (size_t)rows;
    return COFFER_OK;
}

/* Whether s is absent or a name that could exist. */
static bool name_or_null(const char *s)
{
    return s == NULL || store_name_ok(s, strnlen(s, COFFER_NAME_MAX + 1));
}

enum coffer_err coffer_store_meta_load(struct coffer_store *s, const char *org, const char *project,
                                       const char *name, const char *agent_type,
                                       const char *instance, struct coffer_arena *a,
                                       struct coffer_store_meta_list *out)
{
    struct store_params p = {0};
    PGresult *res = NULL;
    enum coffer_err r;

    if (out == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "loading metadata: no result");
    }
    memset(out, 0, sizeof(*out));
    if (s == NULL || a == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "loading metadata: no store or arena");
    }
    if (instance != NULL && agent_type == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "loading metadata: an instance without a type");
    }
    if (!name_or_null(agent_type) || !name_or_null(instance)) {
        return coffer_err_set(COFFER_E_INVALID,
                              "loading metadata: the agent is not named by names");
    }
    /* A name that cannot exist is simply not found; the caller audits the attempt. */
    if (org == NULL || project == NULL || !name_or_null(org) || !name_or_null(project) ||
        !name_or_null(name)) {
        return COFFER_OK;
    }
    store_param_text(&p, org);
    store_param_text(&p, project);
    store_param_text(&p, name);
    store_param_text(&p, agent_type);
    store_param_text(&p, instance);
    if ((r = store_exec(s, &meta_load, &p, "loading credential metadata", &res)) != COFFER_OK) {
        return r;
    }
    if (PQntuples(res) > 0) {
        r = read_list(res, a, out);
    }
    PQclear(res);
    if (r != COFFER_OK) {
        memset(out, 0, sizeof(*out));
    }
    return r;
}

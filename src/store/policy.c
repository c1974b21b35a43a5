/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The policy in force: loading it as a struct coffer_policy_org, and making
 * a new one current in one transaction with a recorded policy version.
 *
 * Lists are read in the order coffer_policy_finish sorts them (byte order,
 * COLLATE "C"), so a model loaded here compares equal to the model of the
 * files that wrote it. Applying rewrites the org's members, credential rules
 * and policy grants as a whole (they have no identity of their own), and
 * upserts agent types and projects (which credentials and history point
 * to). Grants given through the API (source 'api') are never touched here,
 * except that they go with a removed agent type or project.
 */
#include "coffer/store.h"

#include "coffer/mem.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>

#include "store/store_int.h"

/* ---- Statements ------------------------------------------------------------- */

static const struct store_stmt agent_types_get = {
    .name = "coffer_policy_agent_types",
    .sql = "SELECT name, description FROM coffer.agent_types WHERE org_id = $1 "
           "ORDER BY name COLLATE \"C\"",
    .nparams = 1,
    .types = {STORE_OID_UUID},
    .ncols = 2,
};

static const struct store_stmt tiers_get = {
    .name = "coffer_policy_tiers",
    .sql = "SELECT tier, default_ttl, max_ttl FROM coffer.tier_lifetimes WHERE org_id = $1",
    .nparams = 1,
    .types = {STORE_OID_UUID},
    .ncols = 3,
};

/* Projects without phases were made by `coffer org add-project` and are not part of a policy. */
#define IN_POLICY "p.removed_at IS NULL AND cardinality(p.phases) > 0"

static const struct store_stmt projects_get = {
    .name = "coffer_policy_projects",
    .sql = "SELECT p.name, p.description, p.phases, p.initial_phase FROM coffer.projects p "
           "WHERE p.org_id = $1 AND " IN_POLICY " ORDER BY p.name COLLATE \"C\"",
    .nparams = 1,
    .types = {STORE_OID_UUID},
    .ncols = 4,
};

static const struct store_stmt members_get = {
    .name = "coffer_policy_members",
    .sql = "SELECT p.name, m.agent_type FROM coffer.project_members m "
           "JOIN coffer.projects p ON p.id = m.project_id AND p.org_id = m.org_id "
           "WHERE m.org_id = $1 AND " IN_POLICY
           " ORDER BY p.name COLLATE \"C\", m.agent_type COLLATE \"C\"",
    .nparams = 1,
    .types = {STORE_OID_UUID},
    .ncols = 2,
};

static const struct store_stmt rules_get = {
    .name = "coffer_policy_rules",
    .sql =
        "SELECT p.name, r.name, r.description, r.expire_on_phase_end, r.purposes, r.usage, "
        "r.secretless_only FROM coffer.credential_rules r "
        "JOIN coffer.projects p ON p.id = r.project_id AND p.org_id = r.org_id "
        "WHERE r.org_id = $1 AND " IN_POLICY " ORDER BY p.name COLLATE \"C\", r.name COLLATE \"C\"",
    .nparams = 1,
    .types = {STORE_OID_UUID},
    .ncols = 7,
};

static const struct store_stmt grants_get = {
    .name = "coffer_policy_grants",
    .sql = "SELECT p.name, g.credential_name, g.agent_type, g.instance, g.phases "
           "FROM coffer.grants g "
           "JOIN coffer.projects p ON p.id = g.project_id AND p.org_id = g.org_id "
           "WHERE g.org_id = $1 AND g.source = 'policy' AND " IN_POLICY
           " ORDER BY p.name COLLATE \"C\", g.credential_name COLLATE \"C\", "
           "g.agent_type COLLATE \"C\", g.instance COLLATE \"C\" NULLS FIRST",
    .nparams = 1,
    .types = {STORE_OID_UUID},
    .ncols = 5,
};

static const struct store_stmt version_get = {
    .name = "coffer_policy_version",
    .sql = "SELECT max(version) FROM coffer.policy_versions WHERE org_id = $1",
    .nparams = 1,
    .types = {STORE_OID_UUID},
    .ncols = 1,
};

static const struct store_stmt agent_types_prune = {
    .name = "coffer_policy_agent_types_prune",
    .sql = "DELETE FROM coffer.agent_types WHERE org_id = $1 AND name <> ALL ($2)",
    .nparams = 2,
    .types = {STORE_OID_UUID, STORE_OID_TEXT_ARRAY},
};

static const struct store_stmt agent_types_put = {
    .name = "coffer_policy_agent_types_put",
    .sql = "INSERT INTO coffer.agent_types AS t (org_id, name, description) "
           "SELECT $1, u.name, u.description FROM unnest($2::text[], $3::text[]) "
           "AS u(name, description) "
           "ON CONFLICT (org_id, name) DO UPDATE SET description = excluded.description "
           "WHERE t.description IS DISTINCT FROM excluded.description",
    .nparams = 3,
    .types = {STORE_OID_UUID, STORE_OID_TEXT_ARRAY, STORE_OID_TEXT_ARRAY},
};

static const struct store_stmt tiers_clear = {
    .name = "coffer_policy_tiers_clear",
    .sql = "DELETE FROM coffer.tier_lifetimes WHERE org_id = $1",
    .nparams = 1,
    .types = {STORE_OID_UUID},
};

static const struct store_stmt tier_put = {
    .name = "coffer_policy_tier_put",
    .sql = "INSERT INTO coffer.tier_lifetimes (org_id, tier, default_ttl, max_ttl) "
           "VALUES ($1, $2, $3, $4)",
    .nparams = 4,
    .types = {STORE_OID_UUID, STORE_OID_TEXT, STORE_OID_INT8, STORE_OID_INT8},
};

/*
 * A new project starts in its initial phase; an existing one keeps its phase,
 * which must still be declared (otherwise no row comes back).
 */
static const struct store_stmt project_put = {
    .name = "coffer_policy_project_put",
    .sql = "INSERT INTO coffer.projects AS t "
           "(org_id, name, description, phases, initial_phase, phase, phase_changed_at) "
           "VALUES ($1, $2, $3, $4, $5, $5, now()) "
           "ON CONFLICT (org_id, name) DO UPDATE SET description = excluded.description, "
           "phases = excluded.phases, initial_phase = excluded.initial_phase, "
           "phase = COALESCE(t.phase, excluded.phase), "
           "phase_changed_at = CASE WHEN t.phase IS NULL THEN excluded.phase_changed_at "
           "ELSE t.phase_changed_at END, removed_at = NULL "
           "WHERE t.phase IS NULL OR t.phase = ANY (excluded.phases) "
           "RETURNING t.id",
    .nparams = 5,
    .types = {STORE_OID_UUID, STORE_OID_TEXT, STORE_OID_TEXT, STORE_OID_TEXT_ARRAY, STORE_OID_TEXT},
    .ncols = 1,
};

static const struct store_stmt project_phase_get = {
    .name = "coffer_policy_project_phase",
    .sql = "SELECT phase FROM coffer.projects WHERE org_id = $1 AND name = $2",
    .nparams = 2,
    .types = {STORE_OID_UUID, STORE_OID_TEXT},
    .ncols = 1,
};

/* A dropped project is marked removed (never deleted) unless it stores credentials. */
static const struct store_stmt project_remove = {
    .name = "coffer_policy_project_remove",
    .sql = "WITH gone AS (UPDATE coffer.projects AS t SET removed_at = now() "
           "WHERE t.org_id = $1 AND t.name = $2 AND t.removed_at IS NULL AND NOT EXISTS "
           "(SELECT 1 FROM coffer.credentials c WHERE c.project_id = t.id) RETURNING t.id), "
           "dropped AS (DELETE FROM coffer.grants g USING gone WHERE g.project_id = gone.id) "
           "SELECT (SELECT count(*) FROM gone), "
           "(SELECT count(*) FROM coffer.credentials c JOIN coffer.projects p "
           "ON p.id = c.project_id WHERE p.org_id = $1 AND p.name = $2)",
    .nparams = 2,
    .types = {STORE_OID_UUID, STORE_OID_TEXT},
    .ncols = 2,
};

static const struct store_stmt members_clear = {
    .name = "coffer_policy_members_clear",
    .sql = "DELETE FROM coffer.project_members WHERE org_id = $1",
    .nparams = 1,
    .types = {STORE_OID_UUID},
};

static const struct store_stmt members_put = {
    .name = "coffer_policy_members_put",
    .sql = "INSERT INTO coffer.project_members (project_id, org_id, agent_type) "
           "SELECT p.id, p.org_id, u.agent_type FROM unnest($2::text[], $3::text[]) "
           "AS u(project, agent_type) "
           "JOIN coffer.projects p ON p.org_id = $1 AND p.name = u.project",
    .nparams = 3,
    .types = {STORE_OID_UUID, STORE_OID_TEXT_ARRAY, STORE_OID_TEXT_ARRAY},
};

static const struct store_stmt rules_clear = {
    .name = "coffer_policy_rules_clear",
    .sql = "DELETE FROM coffer.credential_rules WHERE org_id = $1",
    .nparams = 1,
    .types = {STORE_OID_UUID},
};

/*
 * Every rule in one statement: rules travel as parallel arrays, their purpose
 * patterns flattened into (rule number, pattern) pairs and regrouped here.
 * A usage spec travels as its canonical JSON (NULL for none), reveal: false
 * as the text "true" in the secretless column.
 */
static const struct store_stmt rules_put = {
    .name = "coffer_policy_rules_put",
    .sql = "WITH pp AS (SELECT f.rule, array_agg(f.purpose ORDER BY f.ord) AS purposes "
           "FROM unnest($6::int4[], $7::text[]) WITH ORDINALITY AS f(rule, purpose, ord) "
           "GROUP BY f.rule) "
           "INSERT INTO coffer.credential_rules "
           "(project_id, org_id, name, description, expire_on_phase_end, purposes, usage, "
           "secretless_only) "
           "SELECT p.id, p.org_id, u.name, u.description, u.expire, "
           "COALESCE(pp.purposes, '{}'::text[]), u.usage, u.secretless::bool "
           "FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $8::text[], $9::text[]) "
           "WITH ORDINALITY AS u(project, name, description, expire, usage, secretless, ord) "
           "JOIN coffer.projects p ON p.org_id = $1 AND p.name = u.project "
           "LEFT JOIN pp ON pp.rule = u.ord",
    .nparams = 9,
    .types = {STORE_OID_UUID, STORE_OID_TEXT_ARRAY, STORE_OID_TEXT_ARRAY, STORE_OID_TEXT_ARRAY,
              STORE_OID_TEXT_ARRAY, STORE_OID_INT4_ARRAY, STORE_OID_TEXT_ARRAY,
              STORE_OID_TEXT_ARRAY, STORE_OID_TEXT_ARRAY},
};

static const struct store_stmt grants_clear = {
    .name = "coffer_policy_grants_clear",
    .sql = "DELETE FROM coffer.grants WHERE org_id = $1 AND source = 'policy'",
    .nparams = 1,
    .types = {STORE_OID_UUID},
};

/* Phases travel comma-joined: names cannot contain a comma. */
static const struct store_stmt grants_put = {
    .name = "coffer_policy_grants_put",
    .sql = "INSERT INTO coffer.grants "
           "(project_id, org_id, credential_name, agent_type, instance, phases, source) "
           "SELECT p.id, p.org_id, u.cred, u.agent_type, u.instance, "
           "CASE WHEN u.phases = '' THEN '{}'::text[] ELSE string_to_array(u.phases, ',') END, "
           "'policy' FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[]) "
           "AS u(project, cred, agent_type, instance, phases) "
           "JOIN coffer.projects p ON p.org_id = $1 AND p.name = u.project",
    .nparams = 6,
    .types = {STORE_OID_UUID, STORE_OID_TEXT_ARRAY, STORE_OID_TEXT_ARRAY, STORE_OID_TEXT_ARRAY,
              STORE_OID_TEXT_ARRAY, STORE_OID_TEXT_ARRAY},
};

static const struct store_stmt version_put = {
    .name = "coffer_policy_version_put",
    .sql = "INSERT INTO coffer.policy_versions (org_id, version, file_paths, file_sha256, "
           "policy_sha256, policy, changes, applied_by) "
           "SELECT $1, COALESCE(max(version), 0) + 1, $2, $3, $4, $5, $6, $7 "
           "FROM coffer.policy_versions WHERE org_id = $1 RETURNING version",
    .nparams = 7,
    .types = {STORE_OID_UUID, STORE_OID_TEXT_ARRAY, STORE_OID_TEXT_ARRAY, STORE_OID_TEXT,
              STORE_OID_TEXT, STORE_OID_TEXT_ARRAY, STORE_OID_TEXT},
    .ncols = 1,
};

const struct store_stmt *const store_stmts_policy[] = {
    &agent_types_get, &tiers_get,   &projects_get,      &members_get,     &rules_get,
    &grants_get,      &version_get, &agent_types_prune, &agent_types_put, &tiers_clear,
    &tier_put,        &project_put, &project_phase_get, &project_remove,  &members_clear,
    &members_put,     &rules_clear, &rules_put,         &grants_clear,    &grants_put,
    &version_put,     NULL,
};

/* ---- Loading ------------------------------------------------------------------ */

/* Runs a statement whose only parameter is the org id. */
static enum coffer_err by_org(struct coffer_store *s, const struct store_stmt *st,
                              const struct coffer_uuid *org_id, const char *what, PGresult **res)
{
    struct store_params p = {0};

    store_param_uuid(&p, org_id);
    return store_exec(s, st, &p, what, res);
}

static enum coffer_err load_agent_types(struct coffer_store *s, const struct coffer_org *org,
                                        struct coffer_arena *a, struct coffer_policy_org *out)
{
    PGresult *res = NULL;
    enum coffer_err r;
    int n;

    if ((r = by_org(s, &agent_types_get, &org->id, "loading agent types", &res)) != COFFER_OK) {
        return r;
    }
    n = PQntuples(res);
    out->agent_types = coffer_arena_alloc(a, (size_t)n, sizeof(*out->agent_types));
    if (out->agent_types == NULL) {
        r = coffer_err_set(COFFER_E_NOMEM, "loading %d agent types", n);
        goto out;
    }
    for (int i = 0; i < n; i++) {
        struct coffer_policy_agent_type *t = &out->agent_types[i];

        if ((r = store_col_string(res, i, 0, "coffer.agent_types.name", a, COFFER_NAME_MAX,
                                  STORE_TEXT_NAME, false, &t->name)) != COFFER_OK ||
            (r = store_col_string(res, i, 1, "coffer.agent_types.description", a,
                                  COFFER_POLICY_DESC_MAX, STORE_TEXT_TEXT, true,
                                  &t->description)) != COFFER_OK) {
            goto out;
        }
    }
    out->n_agent_types = (size_t)n;
out:
    PQclear(res);
    return r;
}

/* A TTL column: NULL is never; anything else must be a TTL the parser would accept. */
static enum coffer_err ttl_col(const PGresult *res, int row, int col, const char *where,
                               int64_t *out)
{
    bool null = false;
    enum coffer_err r = store_col_int8_opt(res, row, col, where, &null, out);

    if (r != COFFER_OK) {
        return r;
    }
    if (null) {
        *out = COFFER_TTL_NEVER;
    } else if (*out < 1 || *out > COFFER_TTL_FINITE_MAX) {
        return coffer_err_set(COFFER_E_INTEGRITY, "%s: %lld seconds is out of range", where,
                              (long long)*out);
    }
    return COFFER_OK;
}

static enum coffer_err load_tiers(struct coffer_store *s, const struct coffer_org *org,
                                  struct coffer_policy_org *out)
{
    PGresult *res = NULL;
    enum coffer_err r;
    int n;

    for (int t = 0; t < COFFER_TIER_COUNT; t++) {
        out->tiers[t] = coffer_policy_tier_default((enum coffer_tier)t);
    }
    if ((r = by_org(s, &tiers_get, &org->id, "loading tiers", &res)) != COFFER_OK) {
        return r;
    }
    n = PQntuples(res);
    for (int i = 0; i < n; i++) {
        char name[16];
        enum coffer_tier tier;
        struct coffer_policy_tier v = {.declared = true};

        if ((r = store_col_text(res, i, 0, "coffer.tier_lifetimes.tier", name, sizeof(name))) !=
                COFFER_OK ||
            (r = ttl_col(res, i, 1, "coffer.tier_lifetimes.default_ttl", &v.default_ttl)) !=
                COFFER_OK ||
            (r = ttl_col(res, i, 2, "coffer.tier_lifetimes.max_ttl", &v.max_ttl)) != COFFER_OK) {
            goto out;
        }
        if (!coffer_tier_parse(name, strlen(name), &tier)) {
            r = coffer_err_set(COFFER_E_INTEGRITY, "coffer.tier_lifetimes.tier: unknown tier");
            goto out;
        }
        out->tiers[tier] = v;
    }
out:
    PQclear(res);
    return r;
}

static enum coffer_err load_projects(struct coffer_store *s, const struct coffer_org *org,
                                     struct coffer_arena *a, struct coffer_policy_org *out)
{
    PGresult *res = NULL;
    enum coffer_err r;
    int n;

    if ((r = by_org(s, &projects_get, &org->id, "loading projects", &res)) != COFFER_OK) {
        return r;
    }
    n = PQntuples(res);
    out->projects = coffer_arena_alloc(a, (size_t)n, sizeof(*out->projects));
    if (out->projects == NULL) {
        r = coffer_err_set(COFFER_E_NOMEM, "loading %d projects", n);
        goto out;
    }
    for (int i = 0; i < n; i++) {
        struct coffer_policy_project *p = &out->projects[i];

        if ((r = store_col_string(res, i, 0, "coffer.projects.name", a, COFFER_NAME_MAX,
                                  STORE_TEXT_NAME, false, &p->name)) != COFFER_OK ||
            (r = store_col_string(res, i, 1, "coffer.projects.description", a,
                                  COFFER_POLICY_DESC_MAX, STORE_TEXT_TEXT, true,
                                  &p->description)) != COFFER_OK ||
            (r = store_col_strings(res, i, 2, "coffer.projects.phases", a, COFFER_POLICY_PHASES_MAX,
                                   COFFER_NAME_MAX, STORE_TEXT_NAME, false, &p->phases,
                                   &p->n_phases)) != COFFER_OK ||
            (r = store_col_string(res, i, 3, "coffer.projects.initial_phase", a, COFFER_NAME_MAX,
                                  STORE_TEXT_NAME, true, &p->initial_phase)) != COFFER_OK) {
            goto out;
        }
        if (p->initial_phase == NULL) {
            p->initial_phase = p->phases[0];
        }
    }
    out->n_projects = (size_t)n;
out:
    PQclear(res);
    return r;
}

/*
 * Advances *j through the org's projects (sorted) to the one named name. Rows
 * of the child tables come sorted by project name too, so one pass suffices.
 */
static struct coffer_policy_project *project_at(struct coffer_policy_org *org, size_t *j,
                                                const char *name, const char *where)
{
    while (*j < org->n_projects && strcmp(org->projects[*j].name, name) < 0) {
        (*j)++;
    }
    if (*j < org->n_projects && strcmp(org->projects[*j].name, name) == 0) {
        return &org->projects[*j];
    }
    (void)coffer_err_set(COFFER_E_INTEGRITY, "%s: row for project %s out of order", where, name);
    return NULL;
}

/* Counts how many rows of res (column 0 a project name) belong to each project. */
static enum coffer_err count_per_project(const PGresult *res, struct coffer_arena *a,
                                         struct coffer_policy_org *org, const char *where,
                                         size_t **counts)
{
    size_t j = 0;
    int n = PQntuples(res);

    *counts = coffer_arena_alloc(a, org->n_projects, sizeof(**counts));
    if (*counts == NULL) {
        return coffer_err_set(COFFER_E_NOMEM, "%s: counting", where);
    }
    for (int i = 0; i < n; i++) {
        const char *name = NULL;
        enum coffer_err r =
            store_col_string(res, i, 0, where, a, COFFER_NAME_MAX, STORE_TEXT_NAME, false, &name);

        if (r != COFFER_OK) {
            return r;
        }
        if (project_at(org, &j, name, where) == NULL) {
            return COFFER_E_INTEGRITY;
        }
        (*counts)[j]++;
    }
    return COFFER_OK;
}

static enum coffer_err load_members(struct coffer_store *s, const struct coffer_org *org,
                                    struct coffer_arena *a, struct coffer_policy_org *out)
{
    PGresult *res = NULL;
    size_t *counts = NULL;
    size_t j = 0;
    enum coffer_err r;

    if ((r = by_org(s, &members_get, &org->id, "loading members", &res)) != COFFER_OK) {
        return r;
    }
    if ((r = count_per_project(res, a, out, "coffer.project_members", &counts)) != COFFER_OK) {
        goto out;
    }
    for (size_t k = 0; k < out->n_projects; k++) {
        out->projects[k].members = coffer_arena_alloc(a, counts[k], sizeof(char *));
        if (out->projects[k].members == NULL) {
            r = coffer_err_set(COFFER_E_NOMEM, "loading members");
            goto out;
        }
    }
    for (int i = 0; i < PQntuples(res); i++) {
        const char *pname = PQgetvalue(res, i, 0);
        struct coffer_policy_project *p = project_at(out, &j, pname, "coffer.project_members");

        if (p == NULL) {
            r = COFFER_E_INTEGRITY;
            goto out;
        }
        if ((r = store_col_string(res, i, 1, "coffer.project_members.agent_type", a,
                                  COFFER_NAME_MAX, STORE_TEXT_NAME, false,
                                  &p->members[p->n_members])) != COFFER_OK) {
            goto out;
        }
        p->n_members++;
    }
out:
    PQclear(res);
    return r;
}

/* A rule's usage spec (checked as the loader checks a file's) and its reveal setting. */
static enum coffer_err read_rule_usage(const PGresult *res, int row, struct coffer_arena *a,
                                       struct coffer_policy_cred *c)
{
    const char *json = NULL;
    enum coffer_err r;

    if ((r = store_col_string(res, row, 5, "coffer.credential_rules.usage", a,
                              COFFER_POLICY_USAGE_JSON_MAX, STORE_TEXT_TEXT, true, &json)) !=
            COFFER_OK ||
        (r = store_col_bool(res, row, 6, "coffer.credential_rules.secretless_only",
                            &c->secretless_only)) != COFFER_OK) {
        return r;
    }
    if (json != NULL &&
        coffer_policy_usage_from_json(a, json, strlen(json), &c->usage) != COFFER_OK) {
        return coffer_err_wrap(COFFER_E_INTEGRITY, "coffer.credential_rules.usage of %s", c->name);
    }
    if (c->secretless_only && c->usage == NULL) {
        return coffer_err_set(COFFER_E_INTEGRITY,
                              "coffer.credential_rules: %s is secretless_only without a usage spec",
                              c->name);
    }
    return COFFER_OK;
}

static enum coffer_err load_rules(struct coffer_store *s, const struct coffer_org *org,
                                  struct coffer_arena *a, struct coffer_policy_org *out)
{
    PGresult *res = NULL;
    size_t *counts = NULL;
    size_t j = 0;
    enum coffer_err r;

    if ((r = by_org(s, &rules_get, &org->id, "loading credential rules", &res)) != COFFER_OK) {
        return r;
    }
    if ((r = count_per_project(res, a, out, "coffer.credential_rules", &counts)) != COFFER_OK) {
        goto out;
    }
    for (size_t k = 0; k < out->n_projects; k++) {
        out->projects[k].creds =
            coffer_arena_alloc(a, counts[k], sizeof(struct coffer_policy_cred));
        if (out->projects[k].creds == NULL) {
            r = coffer_err_set(COFFER_E_NOMEM, "loading credential rules");
            goto out;
        }
    }
    for (int i = 0; i < PQntuples(res); i++) {
        const char *pname = PQgetvalue(res, i, 0);
        struct coffer_policy_project *p = project_at(out, &j, pname, "coffer.credential_rules");
        struct coffer_policy_cred *c;

        if (p == NULL) {
            r = COFFER_E_INTEGRITY;
            goto out;
        }
        c = &p->creds[p->n_creds];
        if ((r = store_col_string(res, i, 1, "coffer.credential_rules.name", a, COFFER_NAME_MAX,
                                  STORE_TEXT_NAME, false, &c->name)) != COFFER_OK ||
            (r = store_col_string(res, i, 2, "coffer.credential_rules.description", a,
                                  COFFER_POLICY_DESC_MAX, STORE_TEXT_TEXT, true,
                                  &c->description)) != COFFER_OK ||
            (r = store_col_string(res, i, 3, "coffer.credential_rules.expire_on_phase_end", a,
                                  COFFER_NAME_MAX, STORE_TEXT_NAME, true,
                                  &c->expire_on_phase_end)) != COFFER_OK ||
            (r = store_col_strings(res, i, 4, "coffer.credential_rules.purposes", a,
                                   COFFER_POLICY_PURPOSES_MAX, COFFER_POLICY_PURPOSE_MAX,
                                   STORE_TEXT_TEXT, false, &c->purposes, &c->n_purposes)) !=
                COFFER_OK ||
            (r = read_rule_usage(res, i, a, c)) != COFFER_OK) {
            goto out;
        }
        p->n_creds++;
    }
out:
    PQclear(res);
    return r;
}

/* The rule named name in p (creds sorted, rows sorted: *k only moves forward). */
static struct coffer_policy_cred *rule_at(struct coffer_policy_project *p, size_t *k,
                                          const char *name)
{
    while (*k < p->n_creds && strcmp(p->creds[*k].name, name) < 0) {
        (*k)++;
    }
    if (*k < p->n_creds && strcmp(p->creds[*k].name, name) == 0) {
        return &p->creds[*k];
    }
    (void)coffer_err_set(COFFER_E_INTEGRITY,
                         "coffer.grants: policy grant of %s/%s has no credential rule", p->name,
                         name);
    return NULL;
}

static enum coffer_err load_grants(struct coffer_store *s, const struct coffer_org *org,
                                   struct coffer_arena *a, struct coffer_policy_org *out)
{
    PGresult *res = NULL;
    struct coffer_policy_project *p = NULL;
    struct coffer_policy_cred *c = NULL;
    size_t j = 0;
    size_t k = 0;
    enum coffer_err r;
    int n;

    if ((r = by_org(s, &grants_get, &org->id, "loading grants", &res)) != COFFER_OK) {
        return r;
    }
    n = PQntuples(res);
    for (int i = 0; i < n; i++) {
        const char *pname = NULL;
        const char *cname = NULL;
        struct coffer_policy_grant g = {0};

        if ((r = store_col_string(res, i, 0, "coffer.projects.name", a, COFFER_NAME_MAX,
                                  STORE_TEXT_NAME, false, &pname)) != COFFER_OK ||
            (r = store_col_string(res, i, 1, "coffer.grants.credential_name", a, COFFER_NAME_MAX,
                                  STORE_TEXT_NAME, false, &cname)) != COFFER_OK ||
            (r = store_col_string(res, i, 2, "coffer.grants.agent_type", a, COFFER_NAME_MAX,
                                  STORE_TEXT_NAME, false, &g.agent_type)) != COFFER_OK ||
            (r = store_col_string(res, i, 3, "coffer.grants.instance", a, COFFER_NAME_MAX,
                                  STORE_TEXT_NAME, true, &g.instance)) != COFFER_OK ||
            (r = store_col_strings(res, i, 4, "coffer.grants.phases", a, COFFER_POLICY_PHASES_MAX,
                                   COFFER_NAME_MAX, STORE_TEXT_NAME, false, &g.phases,
                                   &g.n_phases)) != COFFER_OK) {
            goto out;
        }
        if (p == NULL || strcmp(p->name, pname) != 0) {
            if ((p = project_at(out, &j, pname, "coffer.grants")) == NULL) {
                r = COFFER_E_INTEGRITY;
                goto out;
            }
            k = 0;
            c = NULL;
        }
        if (c == NULL || strcmp(c->name, cname) != 0) {
            if ((c = rule_at(p, &k, cname)) == NULL) {
                r = COFFER_E_INTEGRITY;
                goto out;
            }
        }
        if (c->n_grants >= COFFER_POLICY_GRANTS_MAX) {
            r = coffer_err_set(COFFER_E_INTEGRITY, "coffer.grants: more than %d grants for %s/%s",
                               COFFER_POLICY_GRANTS_MAX, p->name, c->name);
            goto out;
        }
        c->grants = coffer_arena_grow(a, c->grants, c->n_grants, c->n_grants + 1, sizeof(g));
        if (c->grants == NULL) {
            r = coffer_err_set(COFFER_E_NOMEM, "loading grants");
            goto out;
        }
        c->grants[c->n_grants++] = g;
    }
out:
    PQclear(res);
    return r;
}

enum coffer_err coffer_store_policy_load(struct coffer_store *s, const struct coffer_org *org,
                                         struct coffer_arena *a, struct coffer_policy_org *out)
{
    enum coffer_err r;

    memset(out, 0, sizeof(*out));
    out->name = coffer_arena_strdup(a, org->name);
    if (out->name == NULL) {
        return coffer_err_set(COFFER_E_NOMEM, "loading policy of %s", org->name);
    }
    if ((r = load_agent_types(s, org, a, out)) != COFFER_OK ||
        (r = load_tiers(s, org, out)) != COFFER_OK ||
        (r = load_projects(s, org, a, out)) != COFFER_OK ||
        (r = load_members(s, org, a, out)) != COFFER_OK ||
        (r = load_rules(s, org, a, out)) != COFFER_OK ||
        (r = load_grants(s, org, a, out)) != COFFER_OK) {
        return coffer_err_wrap(r, "loading policy of org %s", org->name);
    }
    return COFFER_OK;
}

enum coffer_err coffer_store_policy_version(struct coffer_store *s,
                                            const struct coffer_uuid *org_id, uint32_t *out)
{
    PGresult *res = NULL;
    enum coffer_err r;

    *out = 0;
    if ((r = by_org(s, &version_get, org_id, "reading policy version", &res)) != COFFER_OK) {
        return r;
    }
    if ((r = store_one_row(res, "coffer.policy_versions")) == COFFER_OK) {
        r = store_col_u32_or_zero(res, 0, 0, "coffer.policy_versions.version", out);
    }
    PQclear(res);
    return r;
}

/* ---- Applying ------------------------------------------------------------------- */

struct apply {
    const struct coffer_policy_org *org;
    const char *applied_by;
    struct coffer_arena *a;
    struct coffer_store_policy_result *out;
    struct coffer_org row;
};

/* Executes a command with the given parameters and discards its result. */
static enum coffer_err run(struct coffer_store *s, const struct store_stmt *st,
                           const struct store_params *p, const char *what)
{
    PGresult *res = NULL;
    enum coffer_err r = store_exec(s, st, p, what, &res);

    PQclear(res);
    return r;
}

static enum coffer_err write_agent_types(struct coffer_store *s, const struct apply *ap)
{
    const struct coffer_policy_org *o = ap->org;
    struct coffer_buf names = {0};
    struct coffer_buf descs = {0};
    struct store_params p = {0};
    const char **nv = coffer_arena_alloc(ap->a, o->n_agent_types, sizeof(char *));
    const char **dv = coffer_arena_alloc(ap->a, o->n_agent_types, sizeof(char *));
    enum coffer_err r;

    if (nv == NULL || dv == NULL) {
        return coffer_err_set(COFFER_E_NOMEM, "writing agent types");
    }
    for (size_t i = 0; i < o->n_agent_types; i++) {
        nv[i] = o->agent_types[i].name;
        dv[i] = o->agent_types[i].description;
    }
    if ((r = store_encode_strings(nv, o->n_agent_types, &names)) != COFFER_OK ||
        (r = store_encode_strings(dv, o->n_agent_types, &descs)) != COFFER_OK) {
        goto out;
    }
    store_param_uuid(&p, &ap->row.id);
    store_param_binary(&p, names.data, names.len);
    if ((r = run(s, &agent_types_prune, &p, "removing agent types")) != COFFER_OK) {
        goto out;
    }
    store_param_binary(&p, descs.data, descs.len);
    r = run(s, &agent_types_put, &p, "writing agent types");
out:
    coffer_buf_cleanup(&names);
    coffer_buf_cleanup(&descs);
    return r;
}

static enum coffer_err write_tiers(struct coffer_store *s, const struct apply *ap)
{
    struct store_params p = {0};
    enum coffer_err r;

    store_param_uuid(&p, &ap->row.id);
    if ((r = run(s, &tiers_clear, &p, "clearing tiers")) != COFFER_OK) {
        return r;
    }
    for (int t = 0; t < COFFER_TIER_COUNT; t++) {
        const struct coffer_policy_tier *v = &ap->org->tiers[t];
        struct store_params q = {0};

        store_param_uuid(&q, &ap->row.id);
        store_param_text(&q, coffer_tier_str((enum coffer_tier)t));
        if (v->default_ttl == COFFER_TTL_NEVER) {
            store_param_null(&q);
        } else {
            store_param_int8(&q, v->default_ttl);
        }
        if (v->max_ttl == COFFER_TTL_NEVER) {
            store_param_null(&q);
        } else {
            store_param_int8(&q, v->max_ttl);
        }
        if ((r = run(s, &tier_put, &q, "writing tiers")) != COFFER_OK) {
            return r;
        }
    }
    return COFFER_OK;
}

static const struct coffer_policy_project *find_project(const struct coffer_policy_org *o,
                                                        const char *name)
{
    for (size_t i = 0; i < o->n_projects; i++) {
        if (strcmp(o->projects[i].name, name) == 0) {
            return &o->projects[i];
        }
    }
    return NULL;
}

static enum coffer_err put_project(struct coffer_store *s, const struct apply *ap,
                                   const struct coffer_policy_project *pr)
{
    struct coffer_buf phases = {0};
    struct store_params p = {0};
    PGresult *res = NULL;
    char current[COFFER_NAME_MAX + 1] = "";
    enum coffer_err r;

    if ((r = store_encode_strings(pr->phases, pr->n_phases, &phases)) != COFFER_OK) {
        return r;
    }
    store_param_uuid(&p, &ap->row.id);
    store_param_text(&p, pr->name);
    store_param_text(&p, pr->description);
    store_param_binary(&p, phases.data, phases.len);
    store_param_text(&p, pr->initial_phase);
    r = store_exec(s, &project_put, &p, "writing project", &res);
    coffer_buf_cleanup(&phases);
    if (r != COFFER_OK) {
        return r;
    }
    if (PQntuples(res) == 1) {
        PQclear(res);
        return COFFER_OK;
    }
    PQclear(res);
    /* The guard held the row back: its current phase is no longer declared. */
    p = (struct store_params){0};
    store_param_uuid(&p, &ap->row.id);
    store_param_text(&p, pr->name);
    if ((r = store_exec(s, &project_phase_get, &p, "reading project phase", &res)) != COFFER_OK) {
        return r;
    }
    if (store_one_row(res, "coffer.projects") == COFFER_OK && !PQgetisnull(res, 0, 0)) {
        r = store_col_text(res, 0, 0, "coffer.projects.phase", current, sizeof(current));
    }
    PQclear(res);
    if (r != COFFER_OK) {
        return r;
    }
    return coffer_err_set(COFFER_E_STATE,
                          "project %s/%s is in phase '%s', which the policy no longer declares; "
                          "move it to a declared phase first (coffer project phase)",
                          ap->org->name, pr->name, current);
}

static enum coffer_err remove_project(struct coffer_store *s, const struct apply *ap,
                                      const char *name)
{
    struct store_params p = {0};
    PGresult *res = NULL;
    int64_t gone = 0;
    int64_t creds = 0;
    enum coffer_err r;

    store_param_uuid(&p, &ap->row.id);
    store_param_text(&p, name);
    if ((r = store_exec(s, &project_remove, &p, "removing project", &res)) != COFFER_OK) {
        return r;
    }
    if ((r = store_one_row(res, "coffer.projects")) == COFFER_OK &&
        (r = store_col_count(res, 0, 0, "removed projects", &gone)) == COFFER_OK) {
        r = store_col_count(res, 0, 1, "credentials of the project", &creds);
    }
    PQclear(res);
    if (r != COFFER_OK) {
        return r;
    }
    if (gone != 1) {
        return coffer_err_set(COFFER_E_STATE,
                              "project %s/%s stores %lld credential(s); a policy cannot remove it",
                              ap->org->name, name, (long long)creds);
    }
    return COFFER_OK;
}

static enum coffer_err write_projects(struct coffer_store *s, const struct apply *ap,
                                      const struct coffer_policy_org *old)
{
    enum coffer_err r;

    for (size_t i = 0; i < old->n_projects; i++) {
        if (find_project(ap->org, old->projects[i].name) == NULL &&
            (r = remove_project(s, ap, old->projects[i].name)) != COFFER_OK) {
            return r;
        }
    }
    for (size_t i = 0; i < ap->org->n_projects; i++) {
        if ((r = put_project(s, ap, &ap->org->projects[i])) != COFFER_OK) {
            return r;
        }
    }
    return COFFER_OK;
}

static enum coffer_err write_members(struct coffer_store *s, const struct apply *ap)
{
    const struct coffer_policy_org *o = ap->org;
    struct coffer_buf projects = {0};
    struct coffer_buf types = {0};
    struct store_params p = {0};
    const char **pv;
    const char **tv;
    size_t n = 0;
    size_t k = 0;
    enum coffer_err r;

    for (size_t i = 0; i < o->n_projects; i++) {
        n += o->projects[i].n_members;
    }
    pv = coffer_arena_alloc(ap->a, n, sizeof(char *));
    tv = coffer_arena_alloc(ap->a, n, sizeof(char *));
    if (pv == NULL || tv == NULL) {
        return coffer_err_set(COFFER_E_NOMEM, "writing %zu members", n);
    }
    for (size_t i = 0; i < o->n_projects; i++) {
        for (size_t m = 0; m < o->projects[i].n_members; m++, k++) {
            pv[k] = o->projects[i].name;
            tv[k] = o->projects[i].members[m];
        }
    }
    store_param_uuid(&p, &ap->row.id);
    if ((r = run(s, &members_clear, &p, "clearing members")) != COFFER_OK ||
        (r = store_encode_strings(pv, n, &projects)) != COFFER_OK ||
        (r = store_encode_strings(tv, n, &types)) != COFFER_OK) {
        goto out;
    }
    store_param_binary(&p, projects.data, projects.len);
    store_param_binary(&p, types.data, types.len);
    r = run(s, &members_put, &p, "writing members");
out:
    coffer_buf_cleanup(&projects);
    coffer_buf_cleanup(&types);
    return r;
}

/* The canonical JSON of a rule's usage spec in a, or NULL when it has none. */
static enum coffer_err usage_text(struct coffer_arena *a, const struct coffer_policy_cred *cr,
                                  const char **out)
{
    struct coffer_buf b = {0};
    enum coffer_err r;

    *out = NULL;
    if (cr->usage == NULL) {
        return COFFER_OK;
    }
    b.max = COFFER_POLICY_USAGE_JSON_MAX + 1;
    if ((r = coffer_policy_usage_json(cr->usage, &b)) == COFFER_OK) {
        *out = coffer_arena_strndup(a, (const char *)b.data, b.len);
        if (*out == NULL) {
            r = coffer_err_set(COFFER_E_NOMEM, "writing the usage spec of %s", cr->name);
        }
    }
    coffer_buf_cleanup(&b);
    return r;
}

static enum coffer_err write_rules(struct coffer_store *s, const struct apply *ap)
{
    const struct coffer_policy_org *o = ap->org;
    struct coffer_buf cols[8] = {{0}};
    struct store_params p = {0};
    const char **v[6];
    const char **purposes;
    const void **rule_of;
    size_t *rule_len;
    unsigned char *rule_no;
    size_t n = 0;
    size_t np = 0;
    size_t k = 0;
    size_t q = 0;
    enum coffer_err r;

    for (size_t i = 0; i < o->n_projects; i++) {
        n += o->projects[i].n_creds;
        for (size_t c = 0; c < o->projects[i].n_creds; c++) {
            np += o->projects[i].creds[c].n_purposes;
        }
    }
    for (int c = 0; c < 6; c++) {
        if ((v[c] = coffer_arena_alloc(ap->a, n, sizeof(char *))) == NULL) {
            return coffer_err_set(COFFER_E_NOMEM, "writing %zu credential rules", n);
        }
    }
    purposes = coffer_arena_alloc(ap->a, np, sizeof(char *));
    rule_of = coffer_arena_alloc(ap->a, np, sizeof(void *));
    rule_len = coffer_arena_alloc(ap->a, np, sizeof(size_t));
    rule_no = coffer_arena_alloc(ap->a, np, 4);
    if (purposes == NULL || rule_of == NULL || rule_len == NULL || rule_no == NULL) {
        return coffer_err_set(COFFER_E_NOMEM, "writing %zu purpose patterns", np);
    }
    for (size_t i = 0; i < o->n_projects; i++) {
        for (size_t c = 0; c < o->projects[i].n_creds; c++, k++) {
            const struct coffer_policy_cred *cr = &o->projects[i].creds[c];

            v[0][k] = o->projects[i].name;
            v[1][k] = cr->name;
            v[2][k] = cr->description;
            v[3][k] = cr->expire_on_phase_end;
            v[5][k] = cr->secretless_only ? "true" : "false";
            if ((r = usage_text(ap->a, cr, &v[4][k])) != COFFER_OK) {
                return r;
            }
            for (size_t j = 0; j < cr->n_purposes; j++, q++) {
                uint32_t ord = (uint32_t)(k + 1); /* WITH ORDINALITY counts from 1 */

                rule_no[4 * q] = (unsigned char)(ord >> 24);
                rule_no[4 * q + 1] = (unsigned char)(ord >> 16);
                rule_no[4 * q + 2] = (unsigned char)(ord >> 8);
                rule_no[4 * q + 3] = (unsigned char)ord;
                rule_of[q] = &rule_no[4 * q];
                rule_len[q] = 4;
                purposes[q] = cr->purposes[j];
            }
        }
    }
    if (n > INT32_MAX) {
        return coffer_err_set(COFFER_E_LIMIT, "%zu credential rules", n);
    }
    store_param_uuid(&p, &ap->row.id);
    if ((r = run(s, &rules_clear, &p, "clearing credential rules")) != COFFER_OK) {
        goto out;
    }
    for (int c = 0; c < 4; c++) {
        if ((r = store_encode_strings(v[c], n, &cols[c])) != COFFER_OK) {
            goto out;
        }
        store_param_binary(&p, cols[c].data, cols[c].len);
    }
    if ((r = store_encode_array(STORE_OID_INT4, np, rule_of, rule_len, &cols[4])) != COFFER_OK ||
        (r = store_encode_strings(purposes, np, &cols[5])) != COFFER_OK) {
        goto out;
    }
    store_param_binary(&p, cols[4].data, cols[4].len);
    store_param_binary(&p, cols[5].data, cols[5].len);
    for (int c = 4; c < 6; c++) {
        if ((r = store_encode_strings(v[c], n, &cols[c + 2])) != COFFER_OK) {
            goto out;
        }
        store_param_binary(&p, cols[c + 2].data, cols[c + 2].len);
    }
    r = run(s, &rules_put, &p, "writing credential rules");
out:
    for (int c = 0; c < 8; c++) {
        coffer_buf_cleanup(&cols[c]);
    }
    return r;
}

/* The grant's phases joined with commas ("" for every phase), in the arena. */
static const char *join_phases(struct coffer_arena *a, const struct coffer_policy_grant *g)
{
    struct coffer_buf b = {0};
    const char *out = NULL;

    for (size_t i = 0; i < g->n_phases; i++) {
        if ((i > 0 && coffer_buf_put(&b, ",", 1) != COFFER_OK) ||
            coffer_buf_put(&b, g->phases[i], strlen(g->phases[i])) != COFFER_OK) {
            coffer_buf_cleanup(&b);
            return NULL;
        }
    }
    out = coffer_arena_strndup(a, b.len > 0 ? (const char *)b.data : "", b.len);
    coffer_buf_cleanup(&b);
    return out;
}

static enum coffer_err write_grants(struct coffer_store *s, const struct apply *ap)
{
    const struct coffer_policy_org *o = ap->org;
    struct coffer_buf cols[5] = {{0}};
    struct store_params p = {0};
    const char **v[5];
    size_t n = 0;
    size_t k = 0;
    enum coffer_err r = COFFER_OK;

    for (size_t i = 0; i < o->n_projects; i++) {
        for (size_t c = 0; c < o->projects[i].n_creds; c++) {
            n += o->projects[i].creds[c].n_grants;
        }
    }
    for (int c = 0; c < 5; c++) {
        if ((v[c] = coffer_arena_alloc(ap->a, n, sizeof(char *))) == NULL) {
            return coffer_err_set(COFFER_E_NOMEM, "writing %zu grants", n);
        }
    }
    for (size_t i = 0; i < o->n_projects; i++) {
        for (size_t c = 0; c < o->projects[i].n_creds; c++) {
            const struct coffer_policy_cred *cr = &o->projects[i].creds[c];

            for (size_t g = 0; g < cr->n_grants; g++, k++) {
                v[0][k] = o->projects[i].name;
                v[1][k] = cr->name;
                v[2][k] = cr->grants[g].agent_type;
                v[3][k] = cr->grants[g].instance;
                if ((v[4][k] = join_phases(ap->a, &cr->grants[g])) == NULL) {
                    return coffer_err_set(COFFER_E_NOMEM, "writing grants");
                }
            }
        }
    }
    store_param_uuid(&p, &ap->row.id);
    if ((r = run(s, &grants_clear, &p, "clearing policy grants")) != COFFER_OK) {
        goto out;
    }
    for (int c = 0; c < 5; c++) {
        if ((r = store_encode_strings(v[c], n, &cols[c])) != COFFER_OK) {
            goto out;
        }
        store_param_binary(&p, cols[c].data, cols[c].len);
    }
    r = run(s, &grants_put, &p, "writing grants");
out:
    for (int c = 0; c < 5; c++) {
        coffer_buf_cleanup(&cols[c]);
    }
    return r;
}

static enum coffer_err write_version(struct coffer_store *s, const struct apply *ap)
{
    const struct coffer_policy_org *o = ap->org;
    const struct coffer_policy_changes *ch = &ap->out->changes;
    struct coffer_buf text = {0};
    struct coffer_buf paths = {0};
    struct coffer_buf shas = {0};
    struct coffer_buf lines = {0};
    struct store_params p = {0};
    unsigned char digest[32];
    char hex[65];
    const char **pv = coffer_arena_alloc(ap->a, o->n_files, sizeof(char *));
    const char **sv = coffer_arena_alloc(ap->a, o->n_files, sizeof(char *));
    const char **lv = coffer_arena_alloc(ap->a, ch->n, sizeof(char *));
    PGresult *res = NULL;
    enum coffer_err r;

    if (pv == NULL || sv == NULL || lv == NULL) {
        return coffer_err_set(COFFER_E_NOMEM, "recording policy version");
    }
    for (size_t i = 0; i < o->n_files; i++) {
        pv[i] = o->files[i].path;
        sv[i] = o->files[i].sha256;
    }
    for (size_t i = 0; i < ch->n; i++) {
        const struct coffer_policy_change *c = &ch->items[i];

        lv[i] = c->how != NULL
                    ? coffer_arena_printf(ap->a, "%c %s: %s", (char)c->op, c->what, c->how)
                    : coffer_arena_printf(ap->a, "%c %s", (char)c->op, c->what);
        if (lv[i] == NULL) {
            return coffer_err_set(COFFER_E_NOMEM, "recording policy version");
        }
    }
    if ((r = coffer_policy_emit(o, &text)) != COFFER_OK ||
        (r = coffer_buf_put_u8(&text, 0)) != COFFER_OK) {
        goto out;
    }
    if (EVP_Digest(text.data, text.len - 1, digest, NULL, EVP_sha256(), NULL) != 1) {
        r = coffer_err_set(COFFER_E_CRYPTO, "hashing the policy text");
        goto out;
    }
    coffer_hex(digest, sizeof(digest), hex);
    if ((r = store_encode_strings(pv, o->n_files, &paths)) != COFFER_OK ||
        (r = store_encode_strings(sv, o->n_files, &shas)) != COFFER_OK ||
        (r = store_encode_strings(lv, ch->n, &lines)) != COFFER_OK) {
        goto out;
    }
    store_param_uuid(&p, &ap->row.id);
    store_param_binary(&p, paths.data, paths.len);
    store_param_binary(&p, shas.data, shas.len);
    store_param_text(&p, hex);
    store_param_text(&p, (const char *)text.data);
    store_param_binary(&p, lines.data, lines.len);
    store_param_text(&p, ap->applied_by);
    if ((r = store_exec(s, &version_put, &p, "recording policy version", &res)) != COFFER_OK) {
        goto out;
    }
    if ((r = store_one_row(res, "coffer.policy_versions")) == COFFER_OK) {
        r = store_col_u32(res, 0, 0, "coffer.policy_versions.version", 1, &ap->out->version);
    }
out:
    PQclear(res);
    coffer_buf_cleanup(&text);
    coffer_buf_cleanup(&paths);
    coffer_buf_cleanup(&shas);
    coffer_buf_cleanup(&lines);
    return r;
}

static enum coffer_err apply_tx(struct coffer_store *s, void *arg)
{
    struct apply *ap = arg;
    struct coffer_policy_org old;
    enum coffer_err r;

    if ((r = coffer_store_org_by_name(s, ap->org->name, &ap->row)) != COFFER_OK) {
        if (r == COFFER_E_NOT_FOUND) {
            r = coffer_err_set(COFFER_E_NOT_FOUND,
                               "org %s does not exist; create it with `coffer org create %s`",
                               ap->org->name, ap->org->name);
        }
        return r;
    }
    if ((r = coffer_store_org_lock(s, &ap->row.id)) != COFFER_OK ||
        (r = coffer_store_policy_load(s, &ap->row, ap->a, &old)) != COFFER_OK ||
        (r = coffer_store_policy_version(s, &ap->row.id, &ap->out->version)) != COFFER_OK ||
        (r = coffer_policy_diff(&old, ap->org, ap->a, &ap->out->changes)) != COFFER_OK) {
        return r;
    }
    if (ap->out->changes.n == 0) {
        return COFFER_OK;
    }
    ap->out->changed = true;
    if ((r = write_agent_types(s, ap)) != COFFER_OK || (r = write_tiers(s, ap)) != COFFER_OK ||
        (r = write_projects(s, ap, &old)) != COFFER_OK || (r = write_members(s, ap)) != COFFER_OK ||
        (r = write_rules(s, ap)) != COFFER_OK || (r = write_grants(s, ap)) != COFFER_OK ||
        (r = write_version(s, ap)) != COFFER_OK) {
        return coffer_err_wrap(r, "applying policy of org %s", ap->org->name);
    }
    return COFFER_OK;
}

enum coffer_err coffer_store_policy_apply(struct coffer_store *s,
                                          const struct coffer_policy_org *org,
                                          const char *applied_by, struct coffer_arena *a,
                                          struct coffer_store_policy_result *out)
{
    struct apply ap = {.org = org, .applied_by = applied_by, .a = a, .out = out};

    memset(out, 0, sizeof(*out));
    if (org == NULL || org->name == NULL || org->n_files == 0) {
        return coffer_err_set(COFFER_E_INVALID, "a policy to apply needs an org and its files");
    }
    if (applied_by == NULL || applied_by[0] == '\0' || strlen(applied_by) > 256) {
        return coffer_err_set(COFFER_E_INVALID, "applied_by must be 1 to 256 bytes");
    }
    return store_in_tx(s, apply_tx, &ap, "applying policy");
}

/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Moving a project to another phase. The phase change, the expiry of every
 * credential marked to expire when the project leaves the old phase, and the
 * record in coffer.phase_changes are one statement inside one transaction,
 * all stamped with the transaction's time: no access can see the new phase
 * with a credential that should have expired, or the other way round.
 */
#include "coffer/store.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "store/store_int.h"

static const struct store_stmt project_lock = {
    .name = "coffer_phase_project_lock",
    .sql = "SELECT p.id, p.org_id, p.phase, p.phases FROM coffer.projects p "
           "JOIN coffer.orgs o ON o.id = p.org_id "
           "WHERE o.name = $1 AND p.name = $2 AND p.removed_at IS NULL FOR UPDATE OF p",
    .nparams = 2,
    .types = {STORE_OID_TEXT, STORE_OID_TEXT},
    .ncols = 4,
};

/*
 * $1 project, $2 org, $3 new phase, $4 old phase (NULL: none, so nothing
 * expires), $5 who. A credential expires if it or its rule names the old
 * phase and it has not expired already.
 */
static const struct store_stmt phase_move = {
    .name = "coffer_phase_move",
    .sql = "WITH moved AS (UPDATE coffer.projects SET phase = $3, phase_changed_at = now() "
           "WHERE id = $1 AND org_id = $2 RETURNING id), "
           "expired AS (UPDATE coffer.credentials c SET expires_at = now() FROM moved "
           "WHERE c.project_id = moved.id AND c.org_id = $2 "
           "AND (c.expires_at IS NULL OR c.expires_at > now()) "
           "AND (c.expire_on_phase_end = $4 OR EXISTS (SELECT 1 FROM coffer.credential_rules r "
           "WHERE r.project_id = c.project_id AND r.name = c.name "
           "AND r.expire_on_phase_end = $4)) RETURNING c.name), "
           "names AS (SELECT COALESCE(array_agg(name ORDER BY name COLLATE \"C\"), '{}') AS v "
           "FROM expired), "
           "logged AS (INSERT INTO coffer.phase_changes "
           "(project_id, org_id, from_phase, to_phase, expired_credentials, changed_by) "
           "SELECT $1, $2, $4, $3, names.v, $5 FROM names, moved RETURNING id) "
           "SELECT names.v, (extract(epoch FROM now()) * 1000000)::int8, "
           "(SELECT count(*) FROM logged) FROM names",
    .nparams = 5,
    .types = {STORE_OID_UUID, STORE_OID_UUID, STORE_OID_TEXT, STORE_OID_TEXT, STORE_OID_TEXT},
    .ncols = 3,
};

const struct store_stmt *const store_stmts_phase[] = {&project_lock, &phase_move, NULL};

struct move {
    const char *org;
    const char *project;
    const char *phase;
    const char *changed_by;
    struct coffer_arena *a;
    struct coffer_store_phase_result *out;
};

/* Lists phases comma-separated into out for an error message. */
static void list_phases(const char *const *phases, size_t n, char *out, size_t cap)
{
    size_t used = 0;

    out[0] = '\0';
    for (size_t i = 0; i < n && used < cap; i++) {
        int w = snprintf(out + used, cap - used, "%s%s", i > 0 ? "," : "", phases[i]);

        if (w < 0) {
            return;
        }
        used += (size_t)w;
    }
}

static enum coffer_err move_tx(struct coffer_store *s, void *arg)
{
    struct move *m = arg;
    struct coffer_store_phase_result *out = m->out;
    struct store_params p = {0};
    struct coffer_uuid project_id;
    struct coffer_uuid org_id;
    const char *current = NULL;
    const char **phases = NULL;
    size_t n_phases = 0;
    bool declared = false;
    PGresult *res = NULL;
    int64_t logged = 0;
    enum coffer_err r;

    store_param_text(&p, m->org);
    store_param_text(&p, m->project);
    if ((r = store_exec(s, &project_lock, &p, "locking project", &res)) != COFFER_OK) {
        return r;
    }
    if ((r = store_one_row(res, "coffer.projects")) != COFFER_OK) {
        PQclear(res);
        return r == COFFER_E_NOT_FOUND
                   ? coffer_err_set(r, "project %s/%s not found", m->org, m->project)
                   : r;
    }
    if ((r = store_col_uuid(res, 0, 0, "coffer.projects.id", &project_id)) != COFFER_OK ||
        (r = store_col_uuid(res, 0, 1, "coffer.projects.org_id", &org_id)) != COFFER_OK ||
        (r = store_col_string(res, 0, 2, "coffer.projects.phase", m->a, COFFER_NAME_MAX,
                              STORE_TEXT_NAME, true, &current)) != COFFER_OK ||
        (r = store_col_strings(res, 0, 3, "coffer.projects.phases", m->a, COFFER_POLICY_PHASES_MAX,
                               COFFER_NAME_MAX, STORE_TEXT_NAME, false, &phases, &n_phases)) !=
            COFFER_OK) {
        PQclear(res);
        return r;
    }
    PQclear(res);
    res = NULL;
    for (size_t i = 0; i < n_phases; i++) {
        declared = declared || strcmp(phases[i], m->phase) == 0;
    }
    if (!declared) {
        char list[COFFER_POLICY_PHASES_MAX * (COFFER_NAME_MAX + 1) + 1];

        list_phases(phases, n_phases, list, sizeof(list));
        return coffer_err_set(COFFER_E_INVALID, "project %s/%s has no phase '%s' (phases: %s)",
                              m->org, m->project, m->phase,
                              n_phases > 0 ? list : "none; apply a policy that declares them");
    }
    (void)snprintf(out->from, sizeof(out->from), "%s", current != NULL ? current : "");
    (void)snprintf(out->to, sizeof(out->to), "%s", m->phase);
    if (current != NULL && strcmp(current, m->phase) == 0) {
        return COFFER_OK;
    }
    p = (struct store_params){0};
    store_param_uuid(&p, &project_id);
    store_param_uuid(&p, &org_id);
    store_param_text(&p, m->phase);
    store_param_text(&p, current);
    store_param_text(&p, m->changed_by);
    if ((r = store_exec(s, &phase_move, &p, "moving project", &res)) != COFFER_OK) {
        return r;
    }
    if ((r = store_one_row(res, "coffer.phase_changes")) != COFFER_OK ||
        (r = store_col_strings(res, 0, 0, "coffer.credentials.name", m->a, SIZE_MAX,
                               COFFER_NAME_MAX, STORE_TEXT_NAME, false, &out->expired,
                               &out->n_expired)) != COFFER_OK ||
        (r = store_col_count(res, 0, 1, "phase change time", &out->changed_at_us)) != COFFER_OK ||
        (r = store_col_count(res, 0, 2, "phase change record", &logged)) != COFFER_OK) {
        PQclear(res);
        return r;
    }
    PQclear(res);
    if (logged != 1) {
        return coffer_err_set(COFFER_E_INTEGRITY,
                              "project %s/%s: the phase change was not recorded", m->org,
                              m->project);
    }
    out->changed = true;
    return COFFER_OK;
}

enum coffer_err coffer_store_project_phase(struct coffer_store *s, const char *org,
                                           const char *project, const char *phase,
                                           const char *changed_by, struct coffer_arena *a,
                                           struct coffer_store_phase_result *out)
{
    struct move m = {.org = org,
                     .project = project,
                     .phase = phase,
                     .changed_by = changed_by,
                     .a = a,
                     .out = out};
    enum coffer_err r;

    memset(out, 0, sizeof(*out));
    if ((r = store_check_name(org, "org name")) != COFFER_OK ||
        (r = store_check_name(project, "project name")) != COFFER_OK ||
        (r = store_check_name(phase, "phase")) != COFFER_OK) {
        return r;
    }
    if (changed_by == NULL || changed_by[0] == '\0' || strlen(changed_by) > 256) {
        return coffer_err_set(COFFER_E_INVALID, "changed_by must be 1 to 256 bytes");
    }
    r = store_in_tx(s, move_tx, &m, "moving project");
    if (r != COFFER_OK) {
        memset(out, 0, sizeof(*out));
    }
    return r;
}

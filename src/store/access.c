/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What an access decision reads, in one query, the lifetime changes
 * (expiry, revocation) it must see at once, and what an admin gives a
 * credential when storing it (description, grants through the API).
 *
 * The lookup is always by the principal's org name: a credential of another
 * org is indistinguishable from one that does not exist. Nothing read here is
 * cached; every access loads grants, standing approvals, phase, expiry and
 * revocation afresh, with the database's own clock as "now". The per-key
 * expiry of the current version is judged in the same query, so both the
 * single and the batched access see it before anything is unsealed.
 */
#include "coffer/store.h"

#include "coffer/buf.h"
#include "coffer/mem.h"
#include "coffer/text.h"

#include <inttypes.h>
#include <stdint.h>
#include <string.h>

#include "store/store_int.h"

/*
 * One row per lookup whose org and project exist, in the order of the
 * lookups, ending with the lookup's ordinal (from 1): $1, $2 and $3 are the
 * orgs, projects and credential names of the lookups, as parallel text[].
 * The rows of each lookup are lateral subqueries (OFFSET 0 keeps each one):
 * the statement's cached plan guesses ten lookups, and for ten a hash join
 * over a whole table (every org, every rule) looks cheaper than ten index
 * probes, which made a decision cost grow with the number of orgs.
 */
static const struct store_stmt access_load = {
    .name = "coffer_access_load",
    .sql = "SELECT c.id, o.id, p.id, c.current_version, c.tier, "
           "(extract(epoch FROM c.updated_at) * 1000000)::int8, "
           "(extract(epoch FROM c.expires_at) * 1000000)::int8, "
           "c.revoked_at IS NOT NULL, t.tier IS NOT NULL, t.max_ttl, "
           "COALESCE(r.purposes, '{}'::text[]), p.phase, "
           "ARRAY(SELECT m.agent_type FROM coffer.project_members m "
           "WHERE m.project_id = p.id ORDER BY m.agent_type COLLATE \"C\"), "
           "g.types, g.instances, g.phases, "
           "(extract(epoch FROM statement_timestamp()) * 1000000)::int8, "
           "ap.types, ap.instances, ap.froms, ap.untils, "
           /* The current version's keys, and those past their own expiry, by the same clock. */
           "COALESCE(cardinality(v.key_names), 0)::int8, "
           "ARRAY(SELECT u.k FROM unnest(v.key_names, v.key_expires_at) WITH ORDINALITY "
           "AS u(k, e, i) WHERE u.e <= statement_timestamp() ORDER BY u.i), "
           /* How the rule lets the credential be used, and whether it is ever revealed. */
           "r.usage, COALESCE(r.secretless_only, false), "
           /* The provider that refreshes the version, and its access_token's own expiry. */
           "v.oauth2_provider, (SELECT (extract(epoch FROM u.e) * 1000000)::int8 "
           "FROM unnest(v.key_names, v.key_expires_at) AS u(k, e) WHERE u.k = 'access_token'), q.i "
           "FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY AS q(org, project, "
           "name, i) "
           /* Each lookup probes its own rows (see above). */
           "CROSS JOIN LATERAL (SELECT x.id FROM coffer.orgs x WHERE x.name = q.org OFFSET 0) o "
           "CROSS JOIN LATERAL (SELECT x.id, x.phase FROM coffer.projects x "
           "WHERE x.org_id = o.id AND x.name = q.project AND x.removed_at IS NULL OFFSET 0) p "
           "LEFT JOIN LATERAL (SELECT x.* FROM coffer.credentials x "
           "WHERE x.project_id = p.id AND x.org_id = o.id AND x.name = q.name OFFSET 0) c ON true "
           "LEFT JOIN LATERAL (SELECT x.* FROM coffer.credential_rules x "
           "WHERE x.project_id = p.id AND x.name = q.name OFFSET 0) r ON true "
           "LEFT JOIN LATERAL (SELECT x.* FROM coffer.credential_versions x "
           "WHERE x.credential_id = c.id AND x.org_id = o.id AND x.version = c.current_version "
           "OFFSET 0) v ON true "
           "LEFT JOIN LATERAL (SELECT x.* FROM coffer.tier_lifetimes x "
           "WHERE x.org_id = o.id AND x.tier = c.tier OFFSET 0) t ON true "
           "CROSS JOIN LATERAL (SELECT array_agg(x.agent_type ORDER BY x.id) AS types, "
           "array_agg(x.instance ORDER BY x.id) AS instances, "
           "array_agg(array_to_string(x.phases, ',') ORDER BY x.id) AS phases "
           "FROM coffer.grants x WHERE x.project_id = p.id AND x.credential_name = q.name) g "
           /* Standing approvals neither revoked nor ended: the 256 that end last. */
           "CROSS JOIN LATERAL (SELECT array_agg(v.agent_type ORDER BY v.id) AS types, "
           "array_agg(v.instance ORDER BY v.id) AS instances, "
           "array_agg(v.from_us ORDER BY v.id) AS froms, "
           "array_agg(v.until_us ORDER BY v.id) AS untils "
           "FROM (SELECT y.id, y.agent_type, y.instance, "
           "(extract(epoch FROM y.from_at) * 1000000)::int8 AS from_us, "
           "(extract(epoch FROM y.until_at) * 1000000)::int8 AS until_us "
           "FROM coffer.approvals y WHERE y.credential_id = c.id AND y.org_id = o.id "
           "AND y.revoked_at IS NULL AND y.until_at > statement_timestamp() "
           "ORDER BY y.until_at DESC, y.id LIMIT 256) v) ap "
           "ORDER BY q.i",
    .nparams = 3,
    .types = {STORE_OID_TEXT_ARRAY, STORE_OID_TEXT_ARRAY, STORE_OID_TEXT_ARRAY},
    .ncols = 28,
};
_Static_assert(COFFER_APPROVALS_MAX == 256, "the LIMIT of access_load's approvals");

static const struct store_stmt lifetime_set = {
    .name = "coffer_cred_lifetime_set",
    .sql = "UPDATE coffer.credentials SET expires_at = CASE WHEN $3::int8 IS NULL THEN NULL "
           "ELSE timestamptz 'epoch' + $3::int8 * interval '1 microsecond' END, "
           "expire_on_phase_end = $4 WHERE id = $2 AND org_id = $1",
    .nparams = 4,
    .types = {STORE_OID_UUID, STORE_OID_UUID, STORE_OID_INT8, STORE_OID_TEXT},
};

static const struct store_stmt revoke = {
    .name = "coffer_cred_revoke",
    .sql = "WITH c AS (SELECT id, revoked_at FROM coffer.credentials "
           "WHERE id = $2 AND org_id = $1 FOR UPDATE), "
           "u AS (UPDATE coffer.credentials t SET revoked_at = now(), revoked_reason = $3 "
           "FROM c WHERE t.id = c.id AND c.revoked_at IS NULL RETURNING t.id) "
           "SELECT (SELECT count(*) FROM c), (SELECT count(*) FROM u)",
    .nparams = 3,
    .types = {STORE_OID_UUID, STORE_OID_UUID, STORE_OID_TEXT},
    .ncols = 2,
};

static const struct store_stmt description_set = {
    .name = "coffer_cred_description_set",
    .sql = "UPDATE coffer.credentials SET description = $3 WHERE id = $2 AND org_id = $1",
    .nparams = 3,
    .types = {STORE_OID_UUID, STORE_OID_UUID, STORE_OID_TEXT},
};

/*
 * A grant given again replaces the API grant of the same agent type and
 * instance (its phases may differ). The old rows go first in a statement of
 * their own: an insert in the same statement as the delete would still see
 * them in the unique index.
 */
static const struct store_stmt grants_api_clear = {
    .name = "coffer_grants_api_clear",
    .sql = "DELETE FROM coffer.grants g USING unnest($4::text[], $5::text[]) AS u(agent_type, "
           "instance) WHERE g.org_id = $1 AND g.project_id = $2 AND g.credential_name = $3 "
           "AND g.source = 'api' AND g.agent_type = u.agent_type "
           "AND g.instance IS NOT DISTINCT FROM u.instance",
    .nparams = 5,
    .types = {STORE_OID_UUID, STORE_OID_UUID, STORE_OID_TEXT, STORE_OID_TEXT_ARRAY,
              STORE_OID_TEXT_ARRAY},
};

/* Phases travel comma-joined ("" for every phase): names cannot contain a comma. */
static const struct store_stmt grants_api_add = {
    .name = "coffer_grants_api_add",
    .sql = "INSERT INTO coffer.grants "
           "(project_id, org_id, credential_name, agent_type, instance, phases, source) "
           "SELECT p.id, p.org_id, $3, u.agent_type, u.instance, "
           "CASE WHEN u.phases = '' THEN '{}'::text[] ELSE string_to_array(u.phases, ',') END, "
           "'api' FROM unnest($4::text[], $5::text[], $6::text[]) AS u(agent_type, instance, "
           "phases) JOIN coffer.projects p ON p.id = $2 AND p.org_id = $1",
    .nparams = 6,
    .types = {STORE_OID_UUID, STORE_OID_UUID, STORE_OID_TEXT, STORE_OID_TEXT_ARRAY,
              STORE_OID_TEXT_ARRAY, STORE_OID_TEXT_ARRAY},
};

const struct store_stmt *const store_stmts_access[] = {
    &access_load,      &lifetime_set,   &revoke, &description_set,
    &grants_api_clear, &grants_api_add, NULL};

/* Splits a comma-joined list of phase names ("" for none) into the arena. */
static enum coffer_err split_phases(struct coffer_arena *a, const char *joined,
                                    const char *const **out, size_t *n)
{
    const char **v;
    size_t count = 1;
    size_t k = 0;
    const char *start = joined;

    *out = NULL;
    *n = 0;
    if (joined == NULL || joined[0] == '\0') {
        return COFFER_OK;
    }
    for (const char *q = joined; *q != '\0'; q++) {
        count += *q == ',';
    }
    if (count > COFFER_POLICY_PHASES_MAX) {
        return coffer_err_set(COFFER_E_INTEGRITY, "coffer.grants.phases: %zu phases", count);
    }
    if ((v = coffer_arena_alloc(a, count, sizeof(*v))) == NULL) {
        return coffer_err_set(COFFER_E_NOMEM, "splitting grant phases");
    }
    for (const char *q = joined;; q++) {
        if (*q == ',' || *q == '\0') {
            size_t len = (size_t)(q - start);

            if (!store_name_ok(start, len)) {
                return coffer_err_set(COFFER_E_INTEGRITY,
                                      "coffer.grants.phases: element %zu is not a name", k);
            }
            if ((v[k++] = coffer_arena_strndup(a, start, len)) == NULL) {
                return coffer_err_set(COFFER_E_NOMEM, "splitting grant phases");
            }
            if (*q == '\0') {
                break;
            }
            start = q + 1;
        }
    }
    *out = v;
    *n = k;
    return COFFER_OK;
}

static enum coffer_err read_grants(const PGresult *res, int row, struct coffer_arena *a,
                                   struct coffer_authz_input *in)
{
    const char **types = NULL;
    const char **instances = NULL;
    const char **phases = NULL;
    size_t nt = 0;
    size_t ni = 0;
    size_t np = 0;
    struct coffer_authz_grant *g;
    enum coffer_err r;

    if ((r = store_col_strings(res, row, 13, "coffer.grants.agent_type", a, SIZE_MAX,
                               COFFER_NAME_MAX, STORE_TEXT_NAME, false, &types, &nt)) !=
            COFFER_OK ||
        (r = store_col_strings(res, row, 14, "coffer.grants.instance", a, SIZE_MAX, COFFER_NAME_MAX,
                               STORE_TEXT_NAME, true, &instances, &ni)) != COFFER_OK ||
        (r = store_col_strings(res, row, 15, "coffer.grants.phases", a, SIZE_MAX,
                               COFFER_POLICY_PHASES_MAX * (COFFER_NAME_MAX + 1),
                               STORE_TEXT_NAME_LIST, true, &phases, &np)) != COFFER_OK) {
        return r;
    }
    if (ni != nt || np != nt) {
        return coffer_err_set(COFFER_E_INTEGRITY, "coffer.grants: columns of different lengths");
    }
    if ((g = coffer_arena_alloc(a, nt, sizeof(*g))) == NULL) {
        return coffer_err_set(COFFER_E_NOMEM, "loading %zu grants", nt);
    }
    for (size_t i = 0; i < nt; i++) {
        g[i].agent_type = types[i];
        g[i].instance = instances[i];
        if ((r = split_phases(a, phases[i], &g[i].phases, &g[i].n_phases)) != COFFER_OK) {
            return r;
        }
    }
    in->grants = g;
    in->n_grants = nt;
    return COFFER_OK;
}

/* The tier's max TTL: the org's row if it has one (NULL there is never), else the built-in. */
static enum coffer_err read_max_ttl(const PGresult *res, int row, enum coffer_tier tier,
                                    struct coffer_authz_input *in)
{
    bool has_row = false;
    bool null = false;
    int64_t v = 0;
    enum coffer_err r;

    if ((r = store_col_bool(res, row, 8, "coffer.tier_lifetimes", &has_row)) != COFFER_OK ||
        (r = store_col_int8_opt(res, row, 9, "coffer.tier_lifetimes.max_ttl", &null, &v)) !=
            COFFER_OK) {
        return r;
    }
    if (!has_row) {
        in->tier_max_ttl_s = coffer_policy_tier_default(tier).max_ttl;
    } else if (null) {
        in->tier_max_ttl_s = COFFER_TTL_NEVER;
    } else if (v < 1 || v > COFFER_TTL_FINITE_MAX) {
        return coffer_err_set(COFFER_E_INTEGRITY, "coffer.tier_lifetimes.max_ttl: out of range");
    } else {
        in->tier_max_ttl_s = v;
    }
    return COFFER_OK;
}

/*
 * The keys of the current version and those whose own expiry has passed:
 * the version row must exist (it is written with the credential), and the
 * expired ones are distinct valid key names, no more than the keys.
 */
static enum coffer_err read_key_expiry(const PGresult *res, int row, struct coffer_arena *a,
                                       struct coffer_authz_input *in,
                                       struct coffer_store_access *out)
{
    const char **expired = NULL;
    size_t n_expired = 0;
    int64_t n_keys = 0;
    enum coffer_err r;

    if ((r = store_col_count(res, row, 21, "coffer.credential_versions.key_names", &n_keys)) !=
            COFFER_OK ||
        (r = store_col_strings(res, row, 22, "coffer.credential_versions.key_expires_at", a,
                               COFFER_KEYS_MAX, COFFER_KEY_NAME_MAX, STORE_TEXT_TEXT, false,
                               &expired, &n_expired)) != COFFER_OK) {
        return r;
    }
    if (n_keys < 1 || n_keys > COFFER_KEYS_MAX || n_expired > (size_t)n_keys) {
        return coffer_err_set(COFFER_E_INTEGRITY,
                              "coffer.credential_versions: the current version has %" PRId64
                              " keys, %zu of them expired",
                              n_keys, n_expired);
    }
    for (size_t i = 0; i < n_expired; i++) {
        if (!store_key_name_ok(expired[i], strlen(expired[i]))) {
            return coffer_err_set(COFFER_E_INTEGRITY,
                                  "coffer.credential_versions.key_names: expired key %zu is not "
                                  "a key name",
                                  i);
        }
        for (size_t k = 0; k < i; k++) {
            if (strcmp(expired[k], expired[i]) == 0) {
                return coffer_err_set(COFFER_E_INTEGRITY,
                                      "coffer.credential_versions.key_names: key %s twice",
                                      expired[i]);
            }
        }
    }
    out->n_keys = (size_t)n_keys;
    out->expired_keys = expired;
    out->n_expired_keys = n_expired;
    in->keys_expired = n_expired == (size_t)n_keys;
    return COFFER_OK;
}

/*
 * The rule's usage spec and reveal setting. The spec is read through the
 * policy's own checks, so a row that was altered behind the policy is an
 * integrity error rather than a spec handed on to the broker; reveal: false
 * without a spec cannot be written (a CHECK) and is refused here as well.
 */
static enum coffer_err read_usage(const PGresult *res, int row, struct coffer_arena *a,
                                  struct coffer_authz_input *in, struct coffer_store_access *out)
{
    const struct coffer_policy_usage *u = NULL;
    const char *json = NULL;
    enum coffer_err r;

    if ((r = store_col_string(res, row, 23, "coffer.credential_rules.usage", a,
                              COFFER_POLICY_USAGE_JSON_MAX, STORE_TEXT_TEXT, true, &json)) !=
            COFFER_OK ||
        (r = store_col_bool(res, row, 24, "coffer.credential_rules.secretless_only",
                            &out->secretless_only)) != COFFER_OK) {
        return r;
    }
    if (json != NULL && coffer_policy_usage_from_json(a, json, strlen(json), &u) != COFFER_OK) {
        return coffer_err_wrap(COFFER_E_INTEGRITY, "coffer.credential_rules.usage");
    }
    if (out->secretless_only && json == NULL) {
        return coffer_err_set(COFFER_E_INTEGRITY,
                              "coffer.credential_rules: secretless_only without a usage spec");
    }
    out->usage = json;
    in->secretless_only = out->secretless_only;
    return COFFER_OK;
}

/*
 * The version's OAuth2 provider and its access_token's own expiry. The
 * provider is checked where it is used (ops), as the usage spec is parsed
 * where it is used; here only its size and kind of text.
 */
static enum coffer_err read_oauth2(const PGresult *res, int row, struct coffer_arena *a,
                                   struct coffer_store_access *out)
{
    bool null = false;
    enum coffer_err r;

    if ((r = store_col_string(res, row, 25, "coffer.credential_versions.oauth2_provider", a,
                              COFFER_OAUTH2_PROVIDER_JSON_MAX, STORE_TEXT_TEXT, true,
                              &out->oauth2_provider)) != COFFER_OK ||
        (r = store_col_int8_opt(res, row, 26, "coffer.credential_versions.key_expires_at", &null,
                                &out->access_token_expires_us)) != COFFER_OK) {
        return r;
    }
    if (null) {
        out->access_token_expires_us = 0;
    }
    return COFFER_OK;
}

static enum coffer_err read_access(const PGresult *res, int row, const char *org,
                                   struct coffer_arena *a, struct coffer_authz_input *in,
                                   struct coffer_store_access *out)
{
    char tier[16];
    enum coffer_tier t;
    const char **members = NULL;
    const char **purposes = NULL;
    bool null = false;
    enum coffer_err r;

    if ((r = store_col_count(res, row, 16, "now", &in->now_us)) != COFFER_OK) {
        return r;
    }
    if (PQgetisnull(res, row, 0)) {
        return COFFER_OK; /* the project exists, the credential does not */
    }
    if ((r = store_col_uuid(res, row, 0, "coffer.credentials.id", &out->credential_id)) !=
            COFFER_OK ||
        (r = store_col_uuid(res, row, 1, "coffer.orgs.id", &out->org_id)) != COFFER_OK ||
        (r = store_col_uuid(res, row, 2, "coffer.projects.id", &out->project_id)) != COFFER_OK ||
        (r = store_col_u32(res, row, 3, "coffer.credentials.current_version", 1,
                           &out->current_version)) != COFFER_OK ||
        (r = store_col_text(res, row, 4, "coffer.credentials.tier", tier, sizeof(tier))) !=
            COFFER_OK ||
        (r = store_col_count(res, row, 5, "coffer.credentials.updated_at", &in->issued_us)) !=
            COFFER_OK ||
        (r = store_col_int8_opt(res, row, 6, "coffer.credentials.expires_at", &null,
                                &in->expires_us)) != COFFER_OK ||
        (r = store_col_bool(res, row, 7, "coffer.credentials.revoked_at", &in->revoked)) !=
            COFFER_OK) {
        return r;
    }
    if (null) {
        in->expires_us = COFFER_AUTHZ_NO_EXPIRY;
    }
    if (!coffer_tier_parse(tier, strlen(tier), &t)) {
        return coffer_err_set(COFFER_E_INTEGRITY, "coffer.credentials.tier: unknown tier");
    }
    in->tier = t;
    if ((r = read_max_ttl(res, row, t, in)) != COFFER_OK ||
        (r = store_col_strings(res, row, 10, "coffer.credential_rules.purposes", a,
                               COFFER_POLICY_PURPOSES_MAX, COFFER_POLICY_PURPOSE_MAX,
                               STORE_TEXT_TEXT, false, &purposes, &in->n_purposes)) != COFFER_OK ||
        (r = store_col_string(res, row, 11, "coffer.projects.phase", a, COFFER_NAME_MAX,
                              STORE_TEXT_NAME, true, &in->phase)) != COFFER_OK ||
        (r = store_col_strings(res, row, 12, "coffer.project_members.agent_type", a, SIZE_MAX,
                               COFFER_NAME_MAX, STORE_TEXT_NAME, false, &members,
                               &in->n_members)) != COFFER_OK ||
        (r = read_grants(res, row, a, in)) != COFFER_OK ||
        (r = store_read_approvals(res, row, 17, a, in)) != COFFER_OK ||
        (r = read_key_expiry(res, row, a, in, out)) != COFFER_OK ||
        (r = read_usage(res, row, a, in, out)) != COFFER_OK ||
        (r = read_oauth2(res, row, a, out)) != COFFER_OK) {
        return r;
    }
    in->purposes = purposes;
    in->members = members;
    if ((in->org = coffer_arena_strdup(a, org)) == NULL) {
        return coffer_err_set(COFFER_E_NOMEM, "loading access");
    }
    in->found = true;
    out->found = true;
    return COFFER_OK;
}

/* What a lookup gives before its row is read: nothing found. */
static void access_reset(struct coffer_authz_input *in, struct coffer_store_access *out)
{
    memset(out, 0, sizeof(*out));
    in->found = false;
    in->org = NULL;
    in->revoked = false;
    in->keys_expired = false;
    in->expires_us = COFFER_AUTHZ_NO_EXPIRY;
    in->issued_us = 0;
    in->tier_max_ttl_s = 0;
    in->purposes = NULL;
    in->n_purposes = 0;
    in->phase = NULL;
    in->members = NULL;
    in->n_members = 0;
    in->grants = NULL;
    in->n_grants = 0;
    in->approvals = NULL;
    in->n_approvals = 0;
    in->secretless_only = false;
}

static bool lookup_ok(const struct coffer_store_access_req *q)
{
    return q->org != NULL && q->project != NULL && q->name != NULL &&
           store_name_ok(q->org, strnlen(q->org, COFFER_NAME_MAX + 1)) &&
           store_name_ok(q->project, strnlen(q->project, COFFER_NAME_MAX + 1)) &&
           store_name_ok(q->name, strnlen(q->name, COFFER_NAME_MAX + 1));
}

/* Reads the rows of the lookups sent (sent[k] is the index in reqs of the k-th one). */
static enum coffer_err read_rows(const PGresult *res, struct coffer_store_access_req *reqs,
                                 const size_t *sent, size_t n_sent, struct coffer_arena *a)
{
    int64_t prev = 0;

    if (PQntuples(res) > (int)n_sent) {
        return coffer_err_set(COFFER_E_INTEGRITY, "loading access: %d rows for %zu lookups",
                              PQntuples(res), n_sent);
    }
    for (int row = 0; row < PQntuples(res); row++) {
        struct coffer_store_access_req *q;
        int64_t i = 0;
        enum coffer_err r;

        if ((r = store_col_count(res, row, 27, "lookup ordinal", &i)) != COFFER_OK) {
            return r;
        }
        if (i <= prev || i > (int64_t)n_sent) {
            return coffer_err_set(COFFER_E_INTEGRITY,
                                  "loading access: row %d answers lookup %" PRId64 " out of order",
                                  row, i);
        }
        prev = i;
        q = &reqs[sent[i - 1]];

        if ((r = read_access(res, row, q->org, a, q->in, q->out)) != COFFER_OK) {
            return r;
        }
    }
    return COFFER_OK;
}

enum coffer_err coffer_store_access_load_many(struct coffer_store *s,
                                              struct coffer_store_access_req *reqs, size_t n,
                                              struct coffer_arena *a)
{
    const char *cols[3][COFFER_STORE_BATCH_MAX];
    size_t sent[COFFER_STORE_BATCH_MAX];
    struct coffer_buf enc[3] = {{0}};
    struct store_params p = {0};
    PGresult *res = NULL;
    size_t n_sent = 0;
    enum coffer_err r = COFFER_OK;

    if (s == NULL || reqs == NULL || a == NULL || n == 0 || n > COFFER_STORE_BATCH_MAX) {
        return coffer_err_set(COFFER_E_INVALID, "loading access: %zu lookups, want 1 to %d", n,
                              COFFER_STORE_BATCH_MAX);
    }
    for (size_t i = 0; i < n; i++) {
        access_reset(reqs[i].in, reqs[i].out);
        /* A name that cannot exist is simply not found; the caller audits the attempt. */
        if (lookup_ok(&reqs[i])) {
            cols[0][n_sent] = reqs[i].org;
            cols[1][n_sent] = reqs[i].project;
            cols[2][n_sent] = reqs[i].name;
            sent[n_sent++] = i;
        }
    }
    if (n_sent == 0) {
        return COFFER_OK;
    }
    for (int c = 0; c < 3 && r == COFFER_OK; c++) {
        r = store_encode_strings(cols[c], n_sent, &enc[c]);
        store_param_binary(&p, enc[c].data, enc[c].len);
    }
    if (r == COFFER_OK &&
        (r = store_exec(s, &access_load, &p, "loading access", &res)) == COFFER_OK) {
        r = read_rows(res, reqs, sent, n_sent, a);
    }
    PQclear(res);
    for (int c = 0; c < 3; c++) {
        coffer_buf_cleanup(&enc[c]);
    }
    if (r != COFFER_OK) {
        for (size_t i = 0; i < n; i++) {
            access_reset(reqs[i].in, reqs[i].out);
        }
    }
    return r;
}

enum coffer_err coffer_store_access_load(struct coffer_store *s, const char *org,
                                         const char *project, const char *name,
                                         struct coffer_arena *a, struct coffer_authz_input *in,
                                         struct coffer_store_access *out)
{
    struct coffer_store_access_req q = {
        .org = org, .project = project, .name = name, .in = in, .out = out};

    return coffer_store_access_load_many(s, &q, 1, a);
}

enum coffer_err coffer_store_cred_set_lifetime(struct coffer_store *s,
                                               const struct coffer_uuid *org_id,
                                               const struct coffer_uuid *credential_id,
                                               int64_t expires_us, const char *expire_on_phase_end)
{
    struct store_params p = {0};
    PGresult *res = NULL;
    enum coffer_err r;
    long n;

    if (expire_on_phase_end != NULL &&
        (r = store_check_name(expire_on_phase_end, "expire_on_phase_end")) != COFFER_OK) {
        return r;
    }
    store_param_uuid(&p, org_id);
    store_param_uuid(&p, credential_id);
    if (expires_us == COFFER_AUTHZ_NO_EXPIRY) {
        store_param_null(&p);
    } else {
        store_param_int8(&p, expires_us);
    }
    store_param_text(&p, expire_on_phase_end);
    if ((r = store_exec(s, &lifetime_set, &p, "setting credential lifetime", &res)) != COFFER_OK) {
        return r;
    }
    n = store_affected(res);
    PQclear(res);
    return n == 1 ? COFFER_OK : coffer_err_set(COFFER_E_NOT_FOUND, "credential not found");
}

enum coffer_err coffer_store_cred_revoke(struct coffer_store *s, const struct coffer_uuid *org_id,
                                         const struct coffer_uuid *credential_id,
                                         const char *reason)
{
    struct store_params p = {0};
    PGresult *res = NULL;
    int64_t found = 0;
    int64_t revoked = 0;
    enum coffer_err r;

    if (reason == NULL || !coffer_text_ok(reason, strlen(reason), 1024)) {
        return coffer_err_set(COFFER_E_INVALID,
                              "a revocation reason is 1 to 1024 bytes of UTF-8 without control "
                              "characters");
    }
    store_param_uuid(&p, org_id);
    store_param_uuid(&p, credential_id);
    store_param_text(&p, reason);
    if ((r = store_exec(s, &revoke, &p, "revoking credential", &res)) != COFFER_OK) {
        return r;
    }
    if ((r = store_one_row(res, "coffer.credentials")) == COFFER_OK &&
        (r = store_col_count(res, 0, 0, "credentials found", &found)) == COFFER_OK) {
        r = store_col_count(res, 0, 1, "credentials revoked", &revoked);
    }
    PQclear(res);
    if (r != COFFER_OK) {
        return r;
    }
    if (found != 1) {
        return coffer_err_set(COFFER_E_NOT_FOUND, "credential not found");
    }
    if (revoked != 1) {
        return coffer_err_set(COFFER_E_STATE, "credential is already revoked");
    }
    return COFFER_OK;
}

enum coffer_err coffer_store_cred_set_description(struct coffer_store *s,
                                                  const struct coffer_uuid *org_id,
                                                  const struct coffer_uuid *credential_id,
                                                  const char *description)
{
    struct store_params p = {0};
    PGresult *res = NULL;
    enum coffer_err r;
    long n;

    if (description != NULL && (r = store_check_description(description)) != COFFER_OK) {
        return r;
    }
    store_param_uuid(&p, org_id);
    store_param_uuid(&p, credential_id);
    store_param_text(&p, description);
    if ((r = store_exec(s, &description_set, &p, "setting credential description", &res)) !=
        COFFER_OK) {
        return r;
    }
    n = store_affected(res);
    PQclear(res);
    return n == 1 ? COFFER_OK : coffer_err_set(COFFER_E_NOT_FOUND, "credential not found");
}

/* Checks one grant as the policy parser would: names, and phases that are distinct names. */
static enum coffer_err check_grant(const struct coffer_policy_grant *g, size_t i)
{
    if (g->agent_type == NULL ||
        !store_name_ok(g->agent_type, strnlen(g->agent_type, COFFER_NAME_MAX + 1))) {
        return coffer_err_set(COFFER_E_INVALID, "grant %zu: the agent type is not a name", i);
    }
    if (g->instance != NULL &&
        !store_name_ok(g->instance, strnlen(g->instance, COFFER_NAME_MAX + 1))) {
        return coffer_err_set(COFFER_E_INVALID, "grant %zu: the instance is not a name", i);
    }
    if (g->n_phases > COFFER_POLICY_PHASES_MAX || (g->n_phases > 0 && g->phases == NULL)) {
        return coffer_err_set(COFFER_E_INVALID, "grant %zu: %zu phases, at most %d", i, g->n_phases,
                              COFFER_POLICY_PHASES_MAX);
    }
    for (size_t j = 0; j < g->n_phases; j++) {
        if (g->phases[j] == NULL ||
            !store_name_ok(g->phases[j], strnlen(g->phases[j], COFFER_NAME_MAX + 1))) {
            return coffer_err_set(COFFER_E_INVALID, "grant %zu: phase %zu is not a name", i, j);
        }
        for (size_t k = 0; k < j; k++) {
            if (strcmp(g->phases[k], g->phases[j]) == 0) {
                return coffer_err_set(COFFER_E_INVALID, "grant %zu: phase %s is listed twice", i,
                                      g->phases[j]);
            }
        }
    }
    return COFFER_OK;
}

/* The phases of g joined with commas ("" for every phase), in a. */
static const char *join_grant_phases(struct coffer_arena *a, const struct coffer_policy_grant *g)
{
    size_t len = 0;
    char *out;
    char *w;

    for (size_t j = 0; j < g->n_phases; j++) {
        len += strlen(g->phases[j]) + 1;
    }
    if ((out = coffer_arena_alloc(a, len + 1, 1)) == NULL) {
        return NULL;
    }
    w = out;
    for (size_t j = 0; j < g->n_phases; j++) {
        size_t n = strlen(g->phases[j]);

        if (j > 0) {
            *w++ = ',';
        }
        coffer_memcpy(w, g->phases[j], n);
        w += n;
    }
    *w = '\0';
    return out;
}

static enum coffer_err run_command(struct coffer_store *s, const struct store_stmt *st,
                                   const struct store_params *p, const char *what)
{
    PGresult *res = NULL;
    enum coffer_err r = store_exec(s, st, p, what, &res);

    PQclear(res);
    return r;
}

enum coffer_err coffer_store_grants_add(struct coffer_store *s, const struct coffer_uuid *org_id,
                                        const struct coffer_uuid *project_id,
                                        const char *credential,
                                        const struct coffer_policy_grant *grants, size_t n)
{
    struct coffer_arena *a = NULL;
    struct coffer_buf cols[3] = {{0}};
    const char **types = NULL;
    const char **instances = NULL;
    const char **phases = NULL;
    struct store_params p = {0};
    PGresult *res = NULL;
    enum coffer_err r;

    if ((r = store_require_tx(s, "adding grants")) != COFFER_OK ||
        (r = store_check_name(credential, "credential name")) != COFFER_OK) {
        return r;
    }
    if (n == 0) {
        return COFFER_OK;
    }
    if (grants == NULL || n > COFFER_POLICY_GRANTS_MAX) {
        return coffer_err_set(COFFER_E_INVALID, "adding grants: %zu grants, 1 to %d", n,
                              COFFER_POLICY_GRANTS_MAX);
    }
    for (size_t i = 0; i < n; i++) {
        if ((r = check_grant(&grants[i], i)) != COFFER_OK) {
            return r;
        }
        for (size_t k = 0; k < i; k++) {
            if (strcmp(grants[k].agent_type, grants[i].agent_type) == 0 &&
                (grants[k].instance == NULL) == (grants[i].instance == NULL) &&
                (grants[k].instance == NULL ||
                 strcmp(grants[k].instance, grants[i].instance) == 0)) {
                return coffer_err_set(COFFER_E_INVALID,
                                      "grant %zu: agent type %s and its instance are already "
                                      "granted by grant %zu",
                                      i, grants[i].agent_type, k);
            }
        }
    }
    if ((r = coffer_arena_new(0, &a)) != COFFER_OK) {
        return r;
    }
    types = coffer_arena_alloc(a, n, sizeof(*types));
    instances = coffer_arena_alloc(a, n, sizeof(*instances));
    phases = coffer_arena_alloc(a, n, sizeof(*phases));
    if (types == NULL || instances == NULL || phases == NULL) {
        r = coffer_err_set(COFFER_E_NOMEM, "adding %zu grants", n);
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        types[i] = grants[i].agent_type;
        instances[i] = grants[i].instance;
        if ((phases[i] = join_grant_phases(a, &grants[i])) == NULL) {
            r = coffer_err_set(COFFER_E_NOMEM, "adding %zu grants", n);
            goto out;
        }
    }
    if ((r = store_encode_strings(types, n, &cols[0])) != COFFER_OK ||
        (r = store_encode_strings(instances, n, &cols[1])) != COFFER_OK ||
        (r = store_encode_strings(phases, n, &cols[2])) != COFFER_OK) {
        goto out;
    }
    store_param_uuid(&p, org_id);
    store_param_uuid(&p, project_id);
    store_param_text(&p, credential);
    store_param_binary(&p, cols[0].data, cols[0].len);
    store_param_binary(&p, cols[1].data, cols[1].len);
    if ((r = run_command(s, &grants_api_clear, &p, "replacing API grants")) != COFFER_OK) {
        goto out;
    }
    store_param_binary(&p, cols[2].data, cols[2].len);
    if ((r = store_exec(s, &grants_api_add, &p, "adding API grants", &res)) != COFFER_OK) {
        if (store_sqlstate_is(s, "23503")) {
            r = coffer_err_set(COFFER_E_NOT_FOUND,
                               "adding grants: an agent type is not declared in the org");
        }
        goto out;
    }
    /* The project is joined by id and org: a project of another org inserts nothing. */
    if (store_affected(res) != (long)n) {
        r = coffer_err_set(COFFER_E_NOT_FOUND, "adding grants: no such project in this org");
    }
out:
    PQclear(res);
    for (int c = 0; c < 3; c++) {
        coffer_buf_cleanup(&cols[c]);
    }
    coffer_arena_free(&a);
    return r;
}

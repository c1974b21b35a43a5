/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Credential requests and standing approvals: the rows of
 * coffer.credential_requests (filed by agents, decided once by admins) and
 * coffer.approvals (one instance, one critical credential, one window of at
 * most 24 hours), and the reader that hands the approvals in force to the
 * access decision.
 *
 * Every field is checked before it is bound and every row is checked when
 * it is read, with the rules of sql/005_requests.sql, so a row edited behind
 * Coffer's back cannot carry what the API would have refused. This file
 * never formats a purpose, a description or a reason into an error detail:
 * those are the agent's and the admin's words, and a detail names only the
 * field that was wrong.
 */
#include "coffer/store.h"

#include "coffer/buf.h"
#include "coffer/mem.h"
#include "coffer/spiffe.h"
#include "coffer/text.h"

#include <inttypes.h>
#include <stdint.h>
#include <string.h>

#include "store/store_int.h"

#define OID_INT8_ARRAY 1016u
#define US_PER_S INT64_C(1000000)
#define TYPE_MAX 31
#define TIER_MAX 15
#define URGENCY_MAX 6
#define PHASE_LIST_MAX (COFFER_POLICY_PHASES_MAX * (COFFER_NAME_MAX + 1))

/* The columns every request statement returns, in the order read_request reads them. */
#define REQUEST_COLS                                                                               \
    "r.id, r.org_id, r.project_id, r.name, r.type, r.tier, r.purpose, r.urgency, "                 \
    "r.suggested_agent_types, r.suggested_instances, r.suggested_phases, r.description, "          \
    "r.requester_trust_domain, r.requester_agent_type, r.requester_instance, r.state, "            \
    "(extract(epoch FROM r.created_at) * 1000000)::int8, "                                         \
    "(extract(epoch FROM r.decided_at) * 1000000)::int8, r.decided_by, r.reason, "                 \
    "r.credential_version"
#define REQUEST_NCOLS 21

/* The columns of an approval, in the order read_approval reads them. */
#define APPROVAL_COLS                                                                              \
    "a.id, a.agent_type, a.instance, (extract(epoch FROM a.from_at) * 1000000)::int8, "            \
    "(extract(epoch FROM a.until_at) * 1000000)::int8"
#define APPROVAL_NCOLS 5

/*
 * The cap on pending requests is checked by the insert itself, so a flood
 * of requests stops at the cap without a separate round trip.
 */
static const struct store_stmt request_insert = {
    .name = "coffer_request_insert",
    .sql = "INSERT INTO coffer.credential_requests AS r (org_id, project_id, name, type, tier, "
           "purpose, urgency, suggested_agent_types, suggested_instances, suggested_phases, "
           "description, requester_trust_domain, requester_agent_type, requester_instance) "
           "SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14 "
           "WHERE (SELECT count(*) FROM coffer.credential_requests q "
           "WHERE q.project_id = $2 AND q.state = 'pending') < $15 "
           "RETURNING " REQUEST_COLS,
    .nparams = 15,
    .types = {STORE_OID_UUID, STORE_OID_UUID, STORE_OID_TEXT, STORE_OID_TEXT, STORE_OID_TEXT,
              STORE_OID_TEXT, STORE_OID_TEXT, STORE_OID_TEXT_ARRAY, STORE_OID_TEXT_ARRAY,
              STORE_OID_TEXT_ARRAY, STORE_OID_TEXT, STORE_OID_TEXT, STORE_OID_TEXT, STORE_OID_TEXT,
              STORE_OID_INT8},
    .ncols = REQUEST_NCOLS,
};

static const struct store_stmt request_pending = {
    .name = "coffer_request_pending",
    .sql = "SELECT " REQUEST_COLS " FROM coffer.credential_requests r "
           "WHERE r.org_id = $1 AND r.project_id = $2 AND r.state = 'pending' "
           "ORDER BY r.created_at, r.id LIMIT $3",
    .nparams = 3,
    .types = {STORE_OID_UUID, STORE_OID_UUID, STORE_OID_INT8},
    .ncols = REQUEST_NCOLS,
};

static const struct store_stmt request_get = {
    .name = "coffer_request_get",
    .sql = "SELECT " REQUEST_COLS " FROM coffer.credential_requests r "
           "WHERE r.org_id = $1 AND r.project_id = $2 AND r.id = $3",
    .nparams = 3,
    .types = {STORE_OID_UUID, STORE_OID_UUID, STORE_OID_UUID},
    .ncols = REQUEST_NCOLS,
};

static const struct store_stmt request_lock = {
    .name = "coffer_request_lock",
    .sql = "SELECT " REQUEST_COLS " FROM coffer.credential_requests r "
           "WHERE r.org_id = $1 AND r.project_id = $2 AND r.id = $3 FOR UPDATE",
    .nparams = 3,
    .types = {STORE_OID_UUID, STORE_OID_UUID, STORE_OID_UUID},
    .ncols = REQUEST_NCOLS,
};

/*
 * The credential a fulfilment stored is found by the request's own name in
 * the same statement, so the row can never point at another credential.
 */
static const struct store_stmt request_decide = {
    .name = "coffer_request_decide",
    .sql = "UPDATE coffer.credential_requests r SET state = $4, decided_at = now(), "
           "decided_by = $5, reason = $6, "
           "credential_id = CASE WHEN $4 = 'fulfilled' THEN (SELECT c.id FROM "
           "coffer.credentials c WHERE c.org_id = r.org_id AND c.project_id = r.project_id "
           "AND c.name = r.name) END, credential_version = $7 "
           "WHERE r.org_id = $1 AND r.project_id = $2 AND r.id = $3 AND r.state = 'pending' "
           "RETURNING " REQUEST_COLS,
    .nparams = 7,
    .types = {STORE_OID_UUID, STORE_OID_UUID, STORE_OID_UUID, STORE_OID_TEXT, STORE_OID_TEXT,
              STORE_OID_TEXT, STORE_OID_INT4},
    .ncols = REQUEST_NCOLS,
};

/* Serialises the approvals of one credential, so that the cap below counts exactly. */
static const struct store_stmt approval_cred_lock = {
    .name = "coffer_approval_cred_lock",
    .sql = "SELECT c.id FROM coffer.credentials c "
           "WHERE c.id = $3 AND c.org_id = $1 AND c.project_id = $2 FOR UPDATE",
    .nparams = 3,
    .types = {STORE_OID_UUID, STORE_OID_UUID, STORE_OID_UUID},
    .ncols = 1,
};

static const struct store_stmt approval_insert = {
    .name = "coffer_approval_insert",
    .sql = "INSERT INTO coffer.approvals AS a (org_id, project_id, credential_id, agent_type, "
           "instance, from_at, until_at, created_by) "
           "SELECT $1, $2, $3, $4, $5, "
           "timestamptz 'epoch' + $6::int8 * interval '1 microsecond', "
           "timestamptz 'epoch' + $7::int8 * interval '1 microsecond', $8 "
           "WHERE (SELECT count(*) FROM coffer.approvals x WHERE x.credential_id = $3 "
           "AND x.revoked_at IS NULL AND x.until_at > statement_timestamp()) < $9 "
           "RETURNING " APPROVAL_COLS,
    .nparams = 9,
    .types = {STORE_OID_UUID, STORE_OID_UUID, STORE_OID_UUID, STORE_OID_TEXT, STORE_OID_TEXT,
              STORE_OID_INT8, STORE_OID_INT8, STORE_OID_TEXT, STORE_OID_INT8},
    .ncols = APPROVAL_NCOLS,
};

static const struct store_stmt approval_revoke = {
    .name = "coffer_approval_revoke",
    .sql = "WITH a AS (SELECT id, agent_type, instance, from_at, until_at, revoked_at "
           "FROM coffer.approvals WHERE id = $3 AND org_id = $1 AND credential_id = $2 "
           "FOR UPDATE), "
           "u AS (UPDATE coffer.approvals t SET revoked_at = now() FROM a "
           "WHERE t.id = a.id AND a.revoked_at IS NULL RETURNING t.id) "
           "SELECT " APPROVAL_COLS ", (SELECT count(*) FROM u) FROM a",
    .nparams = 3,
    .types = {STORE_OID_UUID, STORE_OID_UUID, STORE_OID_UUID},
    .ncols = APPROVAL_NCOLS + 1,
};

const struct store_stmt *const store_stmts_requests[] = {
    &request_insert,     &request_pending, &request_get,     &request_lock, &request_decide,
    &approval_cred_lock, &approval_insert, &approval_revoke, NULL};

/* ---- Values ------------------------------------------------------------------------ */

const char *coffer_request_state_str(enum coffer_request_state s)
{
    switch (s) {
    case COFFER_REQUEST_PENDING:
        return "pending";
    case COFFER_REQUEST_FULFILLED:
        return "fulfilled";
    case COFFER_REQUEST_DENIED:
        return "denied";
    default:
        return "unknown";
    }
}

static bool state_parse(const char *s, enum coffer_request_state *out)
{
    static const enum coffer_request_state all[] = {
        COFFER_REQUEST_PENDING, COFFER_REQUEST_FULFILLED, COFFER_REQUEST_DENIED};

    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
        if (strcmp(s, coffer_request_state_str(all[i])) == 0) {
            *out = all[i];
            return true;
        }
    }
    return false;
}

bool coffer_request_urgency_ok(const char *s)
{
    return s != NULL &&
           (strcmp(s, "low") == 0 || strcmp(s, "normal") == 0 || strcmp(s, "high") == 0);
}

static bool name_ok(const char *s)
{
    return s != NULL && store_name_ok(s, strnlen(s, COFFER_NAME_MAX + 1));
}

/* ^[a-z0-9._-]{1,255}$, as the audit log and the table check a trust domain. */
static bool trust_domain_ok(const char *s)
{
    size_t len = s != NULL ? strnlen(s, COFFER_TRUST_DOMAIN_MAX + 1) : 0;

    if (len == 0 || len > COFFER_TRUST_DOMAIN_MAX) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        char c = s[i];

        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
              c == '-')) {
            return false;
        }
    }
    return true;
}

static bool text_ok(const char *s, size_t max)
{
    return s != NULL && coffer_text_ok(s, strnlen(s, max + 1), max);
}

/* The type rule of coffer.credentials: ^[a-z0-9_]{1,31}$. */
static bool type_ok(const char *s)
{
    size_t len = s != NULL ? strnlen(s, TYPE_MAX + 1) : 0;

    if (len == 0 || len > TYPE_MAX) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_')) {
            return false;
        }
    }
    return true;
}

static bool tier_ok(const char *s)
{
    enum coffer_tier t;

    return s != NULL && coffer_tier_parse(s, strnlen(s, TIER_MAX + 1), &t);
}

/* ---- Suggested grants: three aligned arrays ------------------------------------------- */

static enum coffer_err check_grants(const struct coffer_policy_grant *g, size_t n)
{
    if (n > COFFER_POLICY_GRANTS_MAX || (n > 0 && g == NULL)) {
        return coffer_err_set(COFFER_E_INVALID, "suggested grants: %zu, at most %d", n,
                              COFFER_POLICY_GRANTS_MAX);
    }
    for (size_t i = 0; i < n; i++) {
        if (!name_ok(g[i].agent_type)) {
            return coffer_err_set(COFFER_E_INVALID,
                                  "suggested grant %zu: the agent type is not a name", i);
        }
        if (g[i].instance != NULL && !name_ok(g[i].instance)) {
            return coffer_err_set(COFFER_E_INVALID,
                                  "suggested grant %zu: the instance is not a name", i);
        }
        if (g[i].n_phases > COFFER_POLICY_PHASES_MAX ||
            (g[i].n_phases > 0 && g[i].phases == NULL)) {
            return coffer_err_set(COFFER_E_INVALID, "suggested grant %zu: %zu phases, at most %d",
                                  i, g[i].n_phases, COFFER_POLICY_PHASES_MAX);
        }
        for (size_t j = 0; j < g[i].n_phases; j++) {
            if (!name_ok(g[i].phases[j])) {
                return coffer_err_set(COFFER_E_INVALID,
                                      "suggested grant %zu: phase %zu is not a name", i, j);
            }
        }
    }
    return COFFER_OK;
}

/* The phases of one grant joined by commas ("" for every phase), in a. */
static const char *join_phases(struct coffer_arena *a, const struct coffer_policy_grant *g)
{
    size_t len = 0;
    char *out;
    char *p;

    for (size_t j = 0; j < g->n_phases; j++) {
        len += strlen(g->phases[j]) + 1;
    }
    if ((out = coffer_arena_alloc(a, len + 1, 1)) == NULL) {
        return NULL;
    }
    p = out;
    for (size_t j = 0; j < g->n_phases; j++) {
        size_t n = strlen(g->phases[j]);

        if (j > 0) {
            *p++ = ',';
        }
        coffer_memcpy(p, g->phases[j], n);
        p += n;
    }
    *p = '\0';
    return out;
}

struct grant_arrays {
    struct coffer_buf types;
    struct coffer_buf instances;
    struct coffer_buf phases;
};

static void grant_arrays_cleanup(struct grant_arrays *ga)
{
    coffer_buf_cleanup(&ga->types);
    coffer_buf_cleanup(&ga->instances);
    coffer_buf_cleanup(&ga->phases);
}

static enum coffer_err encode_grants(const struct coffer_policy_grant *g, size_t n,
                                     struct coffer_arena *a, struct grant_arrays *out)
{
    const char **types = coffer_arena_alloc(a, n, sizeof(*types));
    const char **instances = coffer_arena_alloc(a, n, sizeof(*instances));
    const char **phases = coffer_arena_alloc(a, n, sizeof(*phases));
    enum coffer_err r;

    if (types == NULL || instances == NULL || phases == NULL) {
        return coffer_err_set(COFFER_E_NOMEM, "encoding %zu suggested grants", n);
    }
    for (size_t i = 0; i < n; i++) {
        types[i] = g[i].agent_type;
        instances[i] = g[i].instance;
        if ((phases[i] = join_phases(a, &g[i])) == NULL) {
            return coffer_err_set(COFFER_E_NOMEM, "encoding suggested grant %zu", i);
        }
    }
    if ((r = store_encode_strings(types, n, &out->types)) != COFFER_OK ||
        (r = store_encode_strings(instances, n, &out->instances)) != COFFER_OK ||
        (r = store_encode_strings(phases, n, &out->phases)) != COFFER_OK) {
        return r;
    }
    return COFFER_OK;
}

/* Splits "a,b" (or "" for every phase) into names in a, checking each. */
static enum coffer_err split_phases(struct coffer_arena *a, const char *joined, size_t i,
                                    const char ***out, size_t *n)
{
    const char **v;
    size_t count = 1;
    size_t k = 0;
    const char *start = joined;

    *out = NULL;
    *n = 0;
    if (joined[0] == '\0') {
        return COFFER_OK;
    }
    for (const char *q = joined; *q != '\0'; q++) {
        count += *q == ',';
    }
    if (count > COFFER_POLICY_PHASES_MAX) {
        return coffer_err_set(COFFER_E_INTEGRITY,
                              "coffer.credential_requests.suggested_phases: element %zu has %zu "
                              "phases",
                              i, count);
    }
    if ((v = coffer_arena_alloc(a, count, sizeof(*v))) == NULL) {
        return coffer_err_set(COFFER_E_NOMEM, "reading suggested phases");
    }
    for (const char *q = joined;; q++) {
        if (*q != ',' && *q != '\0') {
            continue;
        }
        if (!store_name_ok(start, (size_t)(q - start))) {
            return coffer_err_set(COFFER_E_INTEGRITY,
                                  "coffer.credential_requests.suggested_phases: element %zu holds "
                                  "something that is not a name",
                                  i);
        }
        if ((v[k++] = coffer_arena_strndup(a, start, (size_t)(q - start))) == NULL) {
            return coffer_err_set(COFFER_E_NOMEM, "reading suggested phases");
        }
        if (*q == '\0') {
            break;
        }
        start = q + 1;
    }
    *out = v;
    *n = k;
    return COFFER_OK;
}

static enum coffer_err read_grants(const PGresult *res, int row, struct coffer_arena *a,
                                   struct coffer_store_request *out)
{
    const char **types = NULL;
    const char **instances = NULL;
    const char **phases = NULL;
    size_t nt = 0;
    size_t ni = 0;
    size_t np = 0;
    struct coffer_policy_grant *g;
    enum coffer_err r;

    if ((r = store_col_strings(res, row, 8, "coffer.credential_requests.suggested_agent_types", a,
                               COFFER_POLICY_GRANTS_MAX, COFFER_NAME_MAX, STORE_TEXT_NAME, false,
                               &types, &nt)) != COFFER_OK ||
        (r = store_col_strings(res, row, 9, "coffer.credential_requests.suggested_instances", a,
                               COFFER_POLICY_GRANTS_MAX, COFFER_NAME_MAX, STORE_TEXT_NAME, true,
                               &instances, &ni)) != COFFER_OK ||
        (r = store_col_strings(res, row, 10, "coffer.credential_requests.suggested_phases", a,
                               COFFER_POLICY_GRANTS_MAX, PHASE_LIST_MAX, STORE_TEXT_NAME_LIST,
                               false, &phases, &np)) != COFFER_OK) {
        return r;
    }
    if (ni != nt || np != nt) {
        return coffer_err_set(COFFER_E_INTEGRITY,
                              "coffer.credential_requests: suggested grant arrays of different "
                              "lengths");
    }
    if ((g = coffer_arena_alloc(a, nt, sizeof(*g))) == NULL) {
        return coffer_err_set(COFFER_E_NOMEM, "reading %zu suggested grants", nt);
    }
    for (size_t i = 0; i < nt; i++) {
        g[i].agent_type = types[i];
        g[i].instance = instances[i];
        if ((r = split_phases(a, phases[i], i, &g[i].phases, &g[i].n_phases)) != COFFER_OK) {
            return r;
        }
    }
    out->grants = g;
    out->n_grants = nt;
    return COFFER_OK;
}

/* ---- Reading a request ------------------------------------------------------------- */

#define COL(c) "coffer.credential_requests." c

static enum coffer_err read_texts(const PGresult *res, int row, struct coffer_arena *a,
                                  struct coffer_store_request *out)
{
    enum coffer_err r;

    if ((r = store_col_string(res, row, 3, COL("name"), a, COFFER_NAME_MAX, STORE_TEXT_NAME, false,
                              &out->name)) != COFFER_OK ||
        (r = store_col_string(res, row, 4, COL("type"), a, TYPE_MAX, STORE_TEXT_NAME, false,
                              &out->type)) != COFFER_OK ||
        (r = store_col_string(res, row, 5, COL("tier"), a, TIER_MAX, STORE_TEXT_NAME, false,
                              &out->tier)) != COFFER_OK ||
        (r = store_col_string(res, row, 6, COL("purpose"), a, COFFER_REQUEST_PURPOSE_MAX,
                              STORE_TEXT_TEXT, false, &out->purpose)) != COFFER_OK ||
        (r = store_col_string(res, row, 7, COL("urgency"), a, URGENCY_MAX, STORE_TEXT_NAME, false,
                              &out->urgency)) != COFFER_OK ||
        (r = store_col_string(res, row, 11, COL("description"), a, COFFER_REQUEST_TEXT_MAX,
                              STORE_TEXT_TEXT, true, &out->description)) != COFFER_OK ||
        (r = store_col_string(res, row, 12, COL("requester_trust_domain"), a,
                              COFFER_TRUST_DOMAIN_MAX, STORE_TEXT_TEXT, true,
                              &out->requester_trust_domain)) != COFFER_OK ||
        (r = store_col_string(res, row, 13, COL("requester_agent_type"), a, COFFER_NAME_MAX,
                              STORE_TEXT_NAME, false, &out->requester_agent_type)) != COFFER_OK ||
        (r = store_col_string(res, row, 14, COL("requester_instance"), a, COFFER_NAME_MAX,
                              STORE_TEXT_NAME, false, &out->requester_instance)) != COFFER_OK ||
        (r = store_col_string(res, row, 18, COL("decided_by"), a, COFFER_DECIDER_MAX,
                              STORE_TEXT_TEXT, true, &out->decided_by)) != COFFER_OK ||
        (r = store_col_string(res, row, 19, COL("reason"), a, COFFER_REQUEST_TEXT_MAX,
                              STORE_TEXT_TEXT, true, &out->reason)) != COFFER_OK) {
        return r;
    }
    if (!type_ok(out->type)) {
        return coffer_err_set(COFFER_E_INTEGRITY, COL("type") ": not ^[a-z0-9_]{1,31}$");
    }
    if (!tier_ok(out->tier)) {
        return coffer_err_set(COFFER_E_INTEGRITY, COL("tier") ": not a tier");
    }
    if (!coffer_request_urgency_ok(out->urgency)) {
        return coffer_err_set(COFFER_E_INTEGRITY, COL("urgency") ": not low, normal or high");
    }
    if (out->requester_trust_domain != NULL && !trust_domain_ok(out->requester_trust_domain)) {
        return coffer_err_set(COFFER_E_INTEGRITY,
                              COL("requester_trust_domain") ": not ^[a-z0-9._-]{1,255}$");
    }
    return COFFER_OK;
}

/* The decision columns agree with the state, as the table's constraint says. */
static enum coffer_err check_decision(const struct coffer_store_request *q, bool decided_null)
{
    bool ok;

    switch (q->state) {
    case COFFER_REQUEST_PENDING:
        ok = decided_null && q->decided_by == NULL && q->reason == NULL &&
             q->credential_version == 0;
        break;
    case COFFER_REQUEST_FULFILLED:
        ok = !decided_null && q->decided_by != NULL && q->reason == NULL &&
             q->credential_version > 0;
        break;
    case COFFER_REQUEST_DENIED:
        ok = !decided_null && q->decided_by != NULL && q->reason != NULL &&
             q->credential_version == 0;
        break;
    default:
        ok = false;
        break;
    }
    if (!ok) {
        return coffer_err_set(COFFER_E_INTEGRITY,
                              "coffer.credential_requests: decision columns do not fit state %s",
                              coffer_request_state_str(q->state));
    }
    return COFFER_OK;
}

static enum coffer_err read_request(const PGresult *res, int row, struct coffer_arena *a,
                                    struct coffer_store_request *out)
{
    char state[16];
    bool decided_null = false;
    enum coffer_err r;

    memset(out, 0, sizeof(*out));
    if ((r = store_col_uuid(res, row, 0, COL("id"), &out->id)) != COFFER_OK ||
        (r = store_col_uuid(res, row, 1, COL("org_id"), &out->org_id)) != COFFER_OK ||
        (r = store_col_uuid(res, row, 2, COL("project_id"), &out->project_id)) != COFFER_OK ||
        (r = read_texts(res, row, a, out)) != COFFER_OK ||
        (r = read_grants(res, row, a, out)) != COFFER_OK ||
        (r = store_col_text(res, row, 15, COL("state"), state, sizeof(state))) != COFFER_OK ||
        (r = store_col_count(res, row, 16, COL("created_at"), &out->created_us)) != COFFER_OK ||
        (r = store_col_int8_opt(res, row, 17, COL("decided_at"), &decided_null,
                                &out->decided_us)) != COFFER_OK ||
        (r = store_col_u32_or_zero(res, row, 20, COL("credential_version"),
                                   &out->credential_version)) != COFFER_OK) {
        return r;
    }
    if (!state_parse(state, &out->state)) {
        return coffer_err_set(COFFER_E_INTEGRITY,
                              COL("state") ": not pending, fulfilled or denied");
    }
    if (!decided_null && out->decided_us <= 0) {
        return coffer_err_set(COFFER_E_INTEGRITY, COL("decided_at") ": before the epoch");
    }
    return check_decision(out, decided_null);
}

#undef COL

/* The one row of res into *out; NOT_FOUND when there is none. */
static enum coffer_err one_request(const PGresult *res, struct coffer_arena *a,
                                   struct coffer_store_request *out)
{
    enum coffer_err r = store_one_row(res, "coffer.credential_requests");

    if (r == COFFER_E_NOT_FOUND) {
        return coffer_err_set(COFFER_E_NOT_FOUND, "no such request");
    }
    return r != COFFER_OK ? r : read_request(res, 0, a, out);
}

/* ---- Requests ------------------------------------------------------------------------- */

static enum coffer_err check_new(const struct coffer_store_request_new *in)
{
    if (in->org_id == NULL || in->project_id == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "request: missing org or project");
    }
    if (!name_ok(in->name)) {
        return coffer_err_set(COFFER_E_INVALID,
                              "request: the credential name must match ^[a-z0-9][a-z0-9_-]{0,62}$");
    }
    if (!type_ok(in->type)) {
        return coffer_err_set(COFFER_E_INVALID, "request: the type is not ^[a-z0-9_]{1,31}$");
    }
    if (!tier_ok(in->tier)) {
        return coffer_err_set(COFFER_E_INVALID, "request: tier must be low, medium, high or "
                                                "critical");
    }
    if (!text_ok(in->purpose, COFFER_REQUEST_PURPOSE_MAX)) {
        return coffer_err_set(COFFER_E_INVALID,
                              "request: the purpose is 1 to %d bytes of UTF-8 without control "
                              "characters",
                              COFFER_REQUEST_PURPOSE_MAX);
    }
    if (!coffer_request_urgency_ok(in->urgency)) {
        return coffer_err_set(COFFER_E_INVALID, "request: urgency must be low, normal or high");
    }
    if (in->description != NULL && !text_ok(in->description, COFFER_REQUEST_TEXT_MAX)) {
        return coffer_err_set(COFFER_E_INVALID,
                              "request: the description is 1 to %d bytes of UTF-8 without control "
                              "characters",
                              COFFER_REQUEST_TEXT_MAX);
    }
    if ((in->trust_domain != NULL && in->trust_domain[0] != '\0' &&
         !trust_domain_ok(in->trust_domain)) ||
        !name_ok(in->agent_type) || !name_ok(in->instance)) {
        return coffer_err_set(COFFER_E_INVALID, "request: the requester is not an agent identity");
    }
    return check_grants(in->grants, in->n_grants);
}

enum coffer_err coffer_store_request_insert(struct coffer_store *s,
                                            const struct coffer_store_request_new *in,
                                            struct coffer_arena *a,
                                            struct coffer_store_request *out)
{
    struct grant_arrays ga;
    struct store_params p = {0};
    PGresult *res = NULL;
    enum coffer_err r;

    memset(&ga, 0, sizeof(ga));
    if (out != NULL) {
        memset(out, 0, sizeof(*out));
    }
    if (s == NULL || in == NULL || a == NULL || out == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "request: missing store, request, arena or result");
    }
    if ((r = check_new(in)) != COFFER_OK ||
        (r = encode_grants(in->grants, in->n_grants, a, &ga)) != COFFER_OK) {
        goto out;
    }
    store_param_uuid(&p, in->org_id);
    store_param_uuid(&p, in->project_id);
    store_param_text(&p, in->name);
    store_param_text(&p, in->type);
    store_param_text(&p, in->tier);
    store_param_text(&p, in->purpose);
    store_param_text(&p, in->urgency);
    store_param_binary(&p, ga.types.data, ga.types.len);
    store_param_binary(&p, ga.instances.data, ga.instances.len);
    store_param_binary(&p, ga.phases.data, ga.phases.len);
    store_param_text(&p, in->description);
    store_param_text(&p, in->trust_domain != NULL && in->trust_domain[0] != '\0' ? in->trust_domain
                                                                                 : NULL);
    store_param_text(&p, in->agent_type);
    store_param_text(&p, in->instance);
    store_param_int8(&p, COFFER_REQUESTS_PENDING_MAX);
    if ((r = store_exec(s, &request_insert, &p, "filing credential request", &res)) != COFFER_OK) {
        goto out;
    }
    if (PQntuples(res) == 0) {
        r = coffer_err_set(COFFER_E_LIMIT, "the project already has %d pending requests",
                           COFFER_REQUESTS_PENDING_MAX);
        goto out;
    }
    r = one_request(res, a, out);
out:
    PQclear(res);
    grant_arrays_cleanup(&ga);
    if (r != COFFER_OK && out != NULL) {
        memset(out, 0, sizeof(*out));
    }
    return r;
}

enum coffer_err coffer_store_request_pending(struct coffer_store *s,
                                             const struct coffer_uuid *org_id,
                                             const struct coffer_uuid *project_id,
                                             struct coffer_arena *a,
                                             struct coffer_store_request **out, size_t *n)
{
    struct store_params p = {0};
    PGresult *res = NULL;
    struct coffer_store_request *v;
    int rows;
    enum coffer_err r;

    *out = NULL;
    *n = 0;
    store_param_uuid(&p, org_id);
    store_param_uuid(&p, project_id);
    store_param_int8(&p, COFFER_REQUESTS_PENDING_MAX);
    if ((r = store_exec(s, &request_pending, &p, "listing pending requests", &res)) != COFFER_OK) {
        return r;
    }
    rows = PQntuples(res);
    if (rows > COFFER_REQUESTS_PENDING_MAX) {
        r = coffer_err_set(COFFER_E_INTEGRITY, "coffer.credential_requests: %d rows past the limit",
                           rows);
        goto out;
    }
    if ((v = coffer_arena_alloc(a, (size_t)rows, sizeof(*v))) == NULL) {
        r = coffer_err_set(COFFER_E_NOMEM, "listing %d pending requests", rows);
        goto out;
    }
    for (int i = 0; i < rows; i++) {
        if ((r = read_request(res, i, a, &v[i])) != COFFER_OK) {
            goto out;
        }
        if (v[i].state != COFFER_REQUEST_PENDING) {
            r = coffer_err_set(COFFER_E_INTEGRITY, "listing pending requests: row %d is %s", i,
                               coffer_request_state_str(v[i].state));
            goto out;
        }
    }
    *out = v;
    *n = (size_t)rows;
out:
    PQclear(res);
    return r;
}

enum coffer_err coffer_store_request_get(struct coffer_store *s, const struct coffer_uuid *org_id,
                                         const struct coffer_uuid *project_id,
                                         const struct coffer_uuid *id, bool lock,
                                         struct coffer_arena *a, struct coffer_store_request *out)
{
    struct store_params p = {0};
    PGresult *res = NULL;
    enum coffer_err r;

    memset(out, 0, sizeof(*out));
    if (lock && (r = store_require_tx(s, "locking a request")) != COFFER_OK) {
        return r;
    }
    store_param_uuid(&p, org_id);
    store_param_uuid(&p, project_id);
    store_param_uuid(&p, id);
    if ((r = store_exec(s, lock ? &request_lock : &request_get, &p, "reading a request", &res)) !=
        COFFER_OK) {
        return r;
    }
    r = one_request(res, a, out);
    PQclear(res);
    if (r != COFFER_OK) {
        memset(out, 0, sizeof(*out));
    }
    return r;
}

static enum coffer_err check_decide(enum coffer_request_state state, const char *decided_by,
                                    const char *reason, uint32_t version)
{
    if (!text_ok(decided_by, COFFER_DECIDER_MAX)) {
        return coffer_err_set(COFFER_E_INVALID,
                              "decision: who decided is not 1 to %d bytes of "
                              "text",
                              COFFER_DECIDER_MAX);
    }
    switch (state) {
    case COFFER_REQUEST_FULFILLED:
        if (reason != NULL || version < 1 || version > INT32_MAX) {
            return coffer_err_set(COFFER_E_INVALID,
                                  "decision: a fulfilment has a version and no reason");
        }
        return COFFER_OK;
    case COFFER_REQUEST_DENIED:
        if (version != 0 || !text_ok(reason, COFFER_REQUEST_TEXT_MAX)) {
            return coffer_err_set(COFFER_E_INVALID,
                                  "decision: a denial reason is 1 to %d bytes of UTF-8 without "
                                  "control characters",
                                  COFFER_REQUEST_TEXT_MAX);
        }
        return COFFER_OK;
    default:
        return coffer_err_set(COFFER_E_INVALID, "decision: a request is fulfilled or denied");
    }
}

enum coffer_err
coffer_store_request_decide(struct coffer_store *s, const struct coffer_uuid *org_id,
                            const struct coffer_uuid *project_id, const struct coffer_uuid *id,
                            enum coffer_request_state state, const char *decided_by,
                            const char *reason, uint32_t credential_version, struct coffer_arena *a,
                            struct coffer_store_request *out)
{
    struct store_params p = {0};
    PGresult *res = NULL;
    enum coffer_err r;

    memset(out, 0, sizeof(*out));
    if ((r = check_decide(state, decided_by, reason, credential_version)) != COFFER_OK) {
        return r;
    }
    store_param_uuid(&p, org_id);
    store_param_uuid(&p, project_id);
    store_param_uuid(&p, id);
    store_param_text(&p, coffer_request_state_str(state));
    store_param_text(&p, decided_by);
    store_param_text(&p, reason);
    if (credential_version == 0) {
        store_param_null(&p);
    } else {
        store_param_int4(&p, (int32_t)credential_version);
    }
    if ((r = store_exec(s, &request_decide, &p, "deciding a request", &res)) != COFFER_OK) {
        return r;
    }
    if (PQntuples(res) == 0) {
        PQclear(res);
        /* Nothing changed: tell a request that is gone from one already decided. */
        if ((r = coffer_store_request_get(s, org_id, project_id, id, false, a, out)) != COFFER_OK) {
            return r;
        }
        r = coffer_err_set(COFFER_E_STATE, "the request is already %s",
                           coffer_request_state_str(out->state));
        memset(out, 0, sizeof(*out));
        return r;
    }
    r = one_request(res, a, out);
    PQclear(res);
    if (r != COFFER_OK) {
        memset(out, 0, sizeof(*out));
    }
    return r;
}

/* ---- Approvals ------------------------------------------------------------------------- */

/* A window as the table's constraint allows it: non-empty, at most the critical maximum. */
static bool window_ok(int64_t from_us, int64_t until_us)
{
    return from_us > 0 && until_us > from_us &&
           until_us - from_us <= COFFER_TTL_HARD_MAX_CRITICAL * US_PER_S;
}

static enum coffer_err read_approval(const PGresult *res, int row,
                                     struct coffer_store_approval *out)
{
    enum coffer_err r;

    memset(out, 0, sizeof(*out));
    if ((r = store_col_uuid(res, row, 0, "coffer.approvals.id", &out->id)) != COFFER_OK ||
        (r = store_col_name(res, row, 1, "coffer.approvals.agent_type", out->agent_type)) !=
            COFFER_OK ||
        (r = store_col_name(res, row, 2, "coffer.approvals.instance", out->instance)) !=
            COFFER_OK ||
        (r = store_col_count(res, row, 3, "coffer.approvals.from_at", &out->from_us)) !=
            COFFER_OK ||
        (r = store_col_count(res, row, 4, "coffer.approvals.until_at", &out->until_us)) !=
            COFFER_OK) {
        return r;
    }
    if (!window_ok(out->from_us, out->until_us)) {
        return coffer_err_set(COFFER_E_INTEGRITY,
                              "coffer.approvals: the window is empty or longer than 24 hours");
    }
    return COFFER_OK;
}

enum coffer_err coffer_store_approval_insert(
    struct coffer_store *s, const struct coffer_uuid *org_id, const struct coffer_uuid *project_id,
    const struct coffer_uuid *credential_id, const char *agent_type, const char *instance,
    int64_t from_us, int64_t until_us, const char *created_by, struct coffer_store_approval *out)
{
    struct store_params p = {0};
    PGresult *res = NULL;
    enum coffer_err r;

    memset(out, 0, sizeof(*out));
    if ((r = store_require_tx(s, "giving an approval")) != COFFER_OK) {
        return r;
    }
    if (!name_ok(agent_type) || !name_ok(instance)) {
        return coffer_err_set(COFFER_E_INVALID, "approval: agent type and instance must match "
                                                "^[a-z0-9][a-z0-9_-]{0,62}$");
    }
    if (!window_ok(from_us, until_us)) {
        return coffer_err_set(COFFER_E_INVALID,
                              "approval: the window must be non-empty and at most 24 hours long");
    }
    if (!text_ok(created_by, COFFER_DECIDER_MAX)) {
        return coffer_err_set(COFFER_E_INVALID,
                              "approval: who approved is not 1 to %d bytes of "
                              "text",
                              COFFER_DECIDER_MAX);
    }
    store_param_uuid(&p, org_id);
    store_param_uuid(&p, project_id);
    store_param_uuid(&p, credential_id);
    if ((r = store_exec(s, &approval_cred_lock, &p, "locking the credential of an approval",
                        &res)) != COFFER_OK) {
        return r;
    }
    r = store_one_row(res, "coffer.credentials");
    PQclear(res);
    res = NULL;
    if (r == COFFER_E_NOT_FOUND) {
        return coffer_err_set(COFFER_E_NOT_FOUND, "credential not found");
    }
    if (r != COFFER_OK) {
        return r;
    }
    /* The insert takes the lock's three parameters first, then its own. */
    store_param_text(&p, agent_type);
    store_param_text(&p, instance);
    store_param_int8(&p, from_us);
    store_param_int8(&p, until_us);
    store_param_text(&p, created_by);
    store_param_int8(&p, COFFER_APPROVALS_MAX);
    if ((r = store_exec(s, &approval_insert, &p, "giving an approval", &res)) != COFFER_OK) {
        return r;
    }
    if (PQntuples(res) == 0) {
        r = coffer_err_set(COFFER_E_LIMIT, "the credential already has %d approvals in force",
                           COFFER_APPROVALS_MAX);
    } else if ((r = store_one_row(res, "coffer.approvals")) == COFFER_OK) {
        r = read_approval(res, 0, out);
    }
    PQclear(res);
    if (r != COFFER_OK) {
        memset(out, 0, sizeof(*out));
    }
    return r;
}

enum coffer_err coffer_store_approval_revoke(struct coffer_store *s,
                                             const struct coffer_uuid *org_id,
                                             const struct coffer_uuid *credential_id,
                                             const struct coffer_uuid *id,
                                             struct coffer_store_approval *out)
{
    struct store_params p = {0};
    PGresult *res = NULL;
    int64_t revoked = 0;
    enum coffer_err r;

    memset(out, 0, sizeof(*out));
    store_param_uuid(&p, org_id);
    store_param_uuid(&p, credential_id);
    store_param_uuid(&p, id);
    if ((r = store_exec(s, &approval_revoke, &p, "revoking an approval", &res)) != COFFER_OK) {
        return r;
    }
    if ((r = store_one_row(res, "coffer.approvals")) == COFFER_E_NOT_FOUND) {
        r = coffer_err_set(COFFER_E_NOT_FOUND, "no such approval");
    } else if (r == COFFER_OK && (r = read_approval(res, 0, out)) == COFFER_OK &&
               (r = store_col_count(res, 0, APPROVAL_NCOLS, "approvals revoked", &revoked)) ==
                   COFFER_OK &&
               revoked != 1) {
        r = coffer_err_set(COFFER_E_STATE, "the approval is already revoked");
    }
    PQclear(res);
    if (r != COFFER_OK) {
        memset(out, 0, sizeof(*out));
    }
    return r;
}

/* ---- Approvals in force, for the access decision ------------------------------------ */

/* An int8[] column of at most max_n non-NULL elements, into a. */
static enum coffer_err col_int8s(const PGresult *res, int row, int col, const char *where,
                                 struct coffer_arena *a, size_t max_n, int64_t **out, size_t *n)
{
    const unsigned char *p;
    const unsigned char *e;
    size_t len;
    struct coffer_cursor c;
    uint32_t ndim = 0;
    uint32_t flags = 0;
    uint32_t elemtype = 0;
    uint32_t count = 0;
    uint32_t lbound = 0;
    int64_t *v;
    enum coffer_err r;

    *out = NULL;
    *n = 0;
    if ((r = store_col_raw(res, row, col, where, OID_INT8_ARRAY, &p, &len)) != COFFER_OK ||
        p == NULL) {
        return r;
    }
    c = coffer_cursor_init(p, len);
    if (coffer_cursor_u32(&c, &ndim) != COFFER_OK || coffer_cursor_u32(&c, &flags) != COFFER_OK ||
        coffer_cursor_u32(&c, &elemtype) != COFFER_OK || elemtype != STORE_OID_INT8 || flags != 0 ||
        ndim > 1) {
        return coffer_err_set(COFFER_E_INTEGRITY, "%s: want a one-dimensional int8 array", where);
    }
    if (ndim == 0) {
        return coffer_cursor_end(&c) == COFFER_OK
                   ? COFFER_OK
                   : coffer_err_set(COFFER_E_INTEGRITY, "%s: bytes after an empty array", where);
    }
    if (coffer_cursor_u32(&c, &count) != COFFER_OK || coffer_cursor_u32(&c, &lbound) != COFFER_OK ||
        count > max_n) {
        return coffer_err_set(COFFER_E_INTEGRITY, "%s: bad array header or over %zu elements",
                              where, max_n);
    }
    if ((v = coffer_arena_alloc(a, count, sizeof(*v))) == NULL) {
        return coffer_err_set(COFFER_E_NOMEM, "%s: %" PRIu32 " elements", where, count);
    }
    for (uint32_t i = 0; i < count; i++) {
        uint32_t elen = 0;
        uint32_t hi;
        uint32_t lo;

        if (coffer_cursor_u32(&c, &elen) != COFFER_OK || elen != 8 ||
            coffer_cursor_bytes(&c, 8, &e) != COFFER_OK) {
            return coffer_err_set(COFFER_E_INTEGRITY, "%s: element %" PRIu32 " is not an int8",
                                  where, i);
        }
        hi = (uint32_t)e[0] << 24 | (uint32_t)e[1] << 16 | (uint32_t)e[2] << 8 | (uint32_t)e[3];
        lo = (uint32_t)e[4] << 24 | (uint32_t)e[5] << 16 | (uint32_t)e[6] << 8 | (uint32_t)e[7];
        v[i] = (int64_t)((uint64_t)hi << 32 | lo);
    }
    if (coffer_cursor_end(&c) != COFFER_OK) {
        return coffer_err_set(COFFER_E_INTEGRITY, "%s: bytes after the last element", where);
    }
    *out = v;
    *n = count;
    return COFFER_OK;
}

enum coffer_err store_read_approvals(const PGresult *res, int row, int col, struct coffer_arena *a,
                                     struct coffer_authz_input *in)
{
    const char **types = NULL;
    const char **instances = NULL;
    int64_t *froms = NULL;
    int64_t *untils = NULL;
    size_t nt = 0;
    size_t ni = 0;
    size_t nf = 0;
    size_t nu = 0;
    struct coffer_authz_approval *v;
    enum coffer_err r;

    in->approvals = NULL;
    in->n_approvals = 0;
    if ((r = store_col_strings(res, row, col, "coffer.approvals.agent_type", a,
                               COFFER_APPROVALS_MAX, COFFER_NAME_MAX, STORE_TEXT_NAME, false,
                               &types, &nt)) != COFFER_OK ||
        (r = store_col_strings(res, row, col + 1, "coffer.approvals.instance", a,
                               COFFER_APPROVALS_MAX, COFFER_NAME_MAX, STORE_TEXT_NAME, false,
                               &instances, &ni)) != COFFER_OK ||
        (r = col_int8s(res, row, col + 2, "coffer.approvals.from_at", a, COFFER_APPROVALS_MAX,
                       &froms, &nf)) != COFFER_OK ||
        (r = col_int8s(res, row, col + 3, "coffer.approvals.until_at", a, COFFER_APPROVALS_MAX,
                       &untils, &nu)) != COFFER_OK) {
        return r;
    }
    if (ni != nt || nf != nt || nu != nt) {
        return coffer_err_set(COFFER_E_INTEGRITY, "coffer.approvals: columns of different lengths");
    }
    if ((v = coffer_arena_alloc(a, nt, sizeof(*v))) == NULL) {
        return coffer_err_set(COFFER_E_NOMEM, "loading %zu approvals", nt);
    }
    for (size_t i = 0; i < nt; i++) {
        if (!window_ok(froms[i], untils[i])) {
            return coffer_err_set(COFFER_E_INTEGRITY,
                                  "coffer.approvals: approval %zu has an empty window or one "
                                  "longer than 24 hours",
                                  i);
        }
        v[i].agent_type = types[i];
        v[i].instance = instances[i];
        v[i].from_us = froms[i];
        v[i].until_us = untils[i];
    }
    in->approvals = v;
    in->n_approvals = nt;
    return COFFER_OK;
}

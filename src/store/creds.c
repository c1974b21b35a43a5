/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Credentials and their versions: the encrypted rows. A version row holds
 * the AEAD output, the CEK wrapped under an org key version, and the
 * mechanisms that made both. Reads always filter by org, join the state of
 * the org key that wraps the row and the org's current key version, and
 * check every column before handing the row out. Rewrapping is a
 * compare-and-swap on the old (org_key_version, wrapped_cek) pair.
 *
 * This file must never look a credential up without its org, and never
 * return a row whose org or project differs from the one asked for.
 */
#include "coffer/store.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "coffer/buf.h"
#include "coffer/mem.h"
#include "store/store_int.h"

#define WRAPPED_MIN 16

static const struct store_stmt cred_next = {
    .name = "coffer_cred_next",
    .sql = "INSERT INTO coffer.credentials AS c "
           "(org_id, project_id, name, type, tier, current_version) "
           "VALUES ($1, $2, $3, $4, $5, 1) "
           "ON CONFLICT (project_id, name) DO UPDATE SET "
           "current_version = c.current_version + 1, type = excluded.type, tier = excluded.tier, "
           "updated_at = now() "
           "WHERE c.org_id = excluded.org_id "
           "RETURNING id, org_id, project_id, name, type, tier, current_version, "
           "(SELECT k.version FROM coffer.org_keys k WHERE k.org_id = c.org_id "
           "AND k.state = 'current')",
    .nparams = 5,
    .types = {STORE_OID_UUID, STORE_OID_UUID, STORE_OID_TEXT, STORE_OID_TEXT, STORE_OID_TEXT},
    .ncols = 8,
};

static const struct store_stmt cv_insert = {
    .name = "coffer_cv_insert",
    .sql = "INSERT INTO coffer.credential_versions (credential_id, version, org_id, project_id, "
           "org_key_version, aead, wrap_mech, key_names, nonce, ciphertext, tag, wrapped_cek) "
           "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    .nparams = 12,
    .types = {STORE_OID_UUID, STORE_OID_INT4, STORE_OID_UUID, STORE_OID_UUID, STORE_OID_INT4,
              STORE_OID_TEXT, STORE_OID_TEXT, STORE_OID_TEXT_ARRAY, STORE_OID_BYTEA,
              STORE_OID_BYTEA, STORE_OID_BYTEA, STORE_OID_BYTEA},
    .ncols = 0,
};

/*
 * coffer_cred_next for many credentials in one statement. The rows come back
 * in no set order, so each names itself (project, name); with them come what
 * the write's event needs: when the version was issued, whether
 * the credential is revoked or its project removed (the caller must then
 * roll back), and the project's phase.
 */
static const struct store_stmt cred_next_many = {
    .name = "coffer_cred_next_many",
    .sql = "INSERT INTO coffer.credentials AS c "
           "(org_id, project_id, name, type, tier, current_version, expires_at, "
           "expire_on_phase_end, description) "
           "SELECT q.org_id, q.project_id, q.name, q.type, q.tier, 1, "
           "timestamptz 'epoch' + q.expires::int8 * interval '1 microsecond', q.phase_end, "
           "q.description "
           "FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[], "
           "$7::text[], $8::text[]) "
           "AS q(org_id, project_id, name, type, tier, expires, phase_end, description) "
           "ON CONFLICT (project_id, name) DO UPDATE SET "
           "current_version = c.current_version + 1, type = excluded.type, tier = excluded.tier, "
           "updated_at = now(), expires_at = excluded.expires_at, "
           "expire_on_phase_end = excluded.expire_on_phase_end, "
           "description = COALESCE(excluded.description, c.description) "
           "WHERE c.org_id = excluded.org_id "
           "RETURNING id, org_id, project_id, name, type, tier, current_version, "
           "(SELECT k.version FROM coffer.org_keys k WHERE k.org_id = c.org_id "
           "AND k.state = 'current'), "
           "(extract(epoch FROM c.updated_at) * 1000000)::int8, c.revoked_at IS NOT NULL, "
           "(SELECT p.phase FROM coffer.projects p WHERE p.id = c.project_id), "
           "(SELECT p.removed_at IS NOT NULL FROM coffer.projects p WHERE p.id = c.project_id)",
    .nparams = 8,
    .types = {STORE_OID_UUID_ARRAY, STORE_OID_UUID_ARRAY, STORE_OID_TEXT_ARRAY,
              STORE_OID_TEXT_ARRAY, STORE_OID_TEXT_ARRAY, STORE_OID_TEXT_ARRAY,
              STORE_OID_TEXT_ARRAY, STORE_OID_TEXT_ARRAY},
    .ncols = 12,
};

static const struct store_stmt tx_now = {
    .name = "coffer_tx_now",
    .sql = "SELECT (extract(epoch FROM now()) * 1000000)::int8",
    .nparams = 0,
    .ncols = 1,
};

/* coffer_cv_insert for many versions; key names travel comma-joined (a name has no comma). */
static const struct store_stmt cv_insert_many = {
    .name = "coffer_cv_insert_many",
    .sql = "INSERT INTO coffer.credential_versions (credential_id, version, org_id, project_id, "
           "org_key_version, aead, wrap_mech, key_names, nonce, ciphertext, tag, wrapped_cek) "
           "SELECT q.credential_id, q.version, q.org_id, q.project_id, q.org_key_version, $6, $7, "
           "string_to_array(q.key_names, ','), q.nonce, q.ciphertext, q.tag, q.wrapped_cek "
           "FROM unnest($1::uuid[], $2::int4[], $3::uuid[], $4::uuid[], $5::int4[], $8::text[], "
           "$9::bytea[], $10::bytea[], $11::bytea[], $12::bytea[]) AS q(credential_id, version, "
           "org_id, project_id, org_key_version, key_names, nonce, ciphertext, tag, wrapped_cek)",
    .nparams = 12,
    .types = {STORE_OID_UUID_ARRAY, STORE_OID_INT4_ARRAY, STORE_OID_UUID_ARRAY,
              STORE_OID_UUID_ARRAY, STORE_OID_INT4_ARRAY, STORE_OID_TEXT, STORE_OID_TEXT,
              STORE_OID_TEXT_ARRAY, STORE_OID_BYTEA_ARRAY, STORE_OID_BYTEA_ARRAY,
              STORE_OID_BYTEA_ARRAY, STORE_OID_BYTEA_ARRAY},
    .ncols = 0,
};

/* The columns of a full version row, in the order cv_from_row reads them. */
#define CV_VERSION_COLS                                                                            \
    "v.credential_id, v.version, v.org_id, v.project_id, v.org_key_version, v.aead, "              \
    "v.wrap_mech, v.key_names, v.nonce, v.ciphertext, v.tag, v.wrapped_cek"
#define CV_COLS                                                                                    \
    CV_VERSION_COLS ", k.state, "                                                                  \
                    "(SELECT ck.version FROM coffer.org_keys ck WHERE ck.org_id = v.org_id "       \
                    "AND ck.state = 'current'), k.mk_version"
#define CV_NCOLS 15

/*
 * A batch of lookups in one round trip: the arrays are unnested with their
 * ordinality, which tags each row with the index of the lookup it answers.
 * Each lookup of a version runs as its own lateral subquery (OFFSET 0 keeps
 * it one), so the plan is two unique-index probes per lookup whatever the
 * table statistics say; the org key's state and the org's current version
 * are joined outside it, where the planner can memoize them for the many
 * rows of one org. The org filter is part of every lookup, never implied;
 * the version row is reached through its credential, whose org it shares by
 * foreign key.
 */
static const struct store_stmt cv_get_many = {
    .name = "coffer_cv_get_many",
    .sql = "SELECT q.i, x.*, k.state, cur.version, k.mk_version "
           "FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::int4[]) "
           "WITH ORDINALITY AS q(org_id, project_id, name, version, i) "
           "CROSS JOIN LATERAL (SELECT " CV_VERSION_COLS " FROM coffer.credentials c "
           "JOIN coffer.credential_versions v ON v.credential_id = c.id "
           "AND v.version = CASE WHEN q.version = 0 THEN c.current_version ELSE q.version END "
           "WHERE c.project_id = q.project_id AND c.name = q.name AND c.org_id = q.org_id "
           "OFFSET 0) x "
           "JOIN coffer.org_keys k ON k.org_id = x.org_id AND k.version = x.org_key_version "
           "LEFT JOIN coffer.org_keys cur ON cur.org_id = x.org_id AND cur.state = 'current'",
    .nparams = 4,
    .types = {STORE_OID_UUID_ARRAY, STORE_OID_UUID_ARRAY, STORE_OID_TEXT_ARRAY,
              STORE_OID_INT4_ARRAY},
    .ncols = CV_NCOLS + 1,
};

/*
 * Versions not under their org's current key. Rows under a destroyed org key
 * are excluded: they can no longer be unwrapped, so there is nothing to move.
 */
#define CV_STALE_FROM                                                                              \
    " FROM coffer.credential_versions v "                                                          \
    "JOIN coffer.org_keys k ON k.org_id = v.org_id AND k.version = v.org_key_version "             \
    "JOIN coffer.org_keys cur ON cur.org_id = v.org_id AND cur.state = 'current' "                 \
    "WHERE v.org_key_version <> cur.version AND k.state <> 'destroyed' "

/*
 * The next stale rows after a position: for each org key version that is
 * not its org's current one (and not destroyed), an ordered range scan of
 * (org, version, credential, version) from the position, merged and cut to
 * the batch. The position starts below every real row (zero id, version 0).
 */
static const struct store_stmt cv_stale = {
    .name = "coffer_cv_stale",
    .sql = "SELECT " CV_VERSION_COLS ", k.state, cur.version, k.mk_version FROM coffer.org_keys k "
           "JOIN coffer.org_keys cur ON cur.org_id = k.org_id AND cur.state = 'current' "
           "CROSS JOIN LATERAL (SELECT * FROM coffer.credential_versions s "
           "WHERE s.org_id = k.org_id AND s.org_key_version = k.version "
           "AND (s.credential_id, s.version) > ($1, $2) "
           "ORDER BY s.credential_id, s.version LIMIT $3) v "
           "WHERE k.version <> cur.version AND k.state <> 'destroyed' "
           "ORDER BY v.credential_id, v.version LIMIT $3",
    .nparams = 3,
    .types = {STORE_OID_UUID, STORE_OID_INT4, STORE_OID_INT8},
    .ncols = CV_NCOLS,
};

static const struct store_stmt count_stale = {
    .name = "coffer_count_stale",
    .sql =
        "SELECT (SELECT count(*)" CV_STALE_FROM "), "
        "(SELECT count(*) FROM coffer.org_keys k JOIN coffer.master_keys m ON m.state = 'current' "
        "WHERE k.mk_version <> m.version AND k.state <> 'destroyed')",
    .nparams = 0,
    .ncols = 2,
};

/*
 * The compare-and-swap of many versions in one statement: each row moves only
 * if it still has the old (org_key_version, wrapped_cek); RETURNING names the
 * rows this statement moved.
 */
static const struct store_stmt cv_rewrap_many = {
    .name = "coffer_cv_rewrap_many",
    .sql = "UPDATE coffer.credential_versions v "
           "SET org_key_version = u.new_okv, wrapped_cek = u.new_wrapped, rewrapped_at = now() "
           "FROM unnest($1::uuid[], $2::int4[], $3::uuid[], $4::int4[], $5::bytea[], $6::int4[], "
           "$7::bytea[]) AS u(credential_id, version, org_id, new_okv, new_wrapped, old_okv, "
           "old_wrapped) "
           "WHERE v.credential_id = u.credential_id AND v.version = u.version "
           "AND v.org_id = u.org_id AND v.org_key_version = u.old_okv "
           "AND v.wrapped_cek = u.old_wrapped "
           "RETURNING v.credential_id, v.version",
    .nparams = 7,
    .types = {STORE_OID_UUID_ARRAY, STORE_OID_INT4_ARRAY, STORE_OID_UUID_ARRAY,
              STORE_OID_INT4_ARRAY, STORE_OID_BYTEA_ARRAY, STORE_OID_INT4_ARRAY,
              STORE_OID_BYTEA_ARRAY},
    .ncols = 2,
};

const struct store_stmt *const store_stmts_creds[] = {
    &cred_next,   &cred_next_many, &tx_now,   &cv_insert,   &cv_insert_many,
    &cv_get_many, &cv_rewrap_many, &cv_stale, &count_stale, NULL,
};

static bool type_ok(const char *s)
{
    size_t len = strnlen(s, 32);
    size_t i;

    if (len == 0 || len > 31) {
        return false;
    }
    for (i = 0; i < len; i++) {
        char c = s[i];

        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) {
            return false;
        }
    }
    return true;
}

static bool tier_ok(const char *s)
{
    static const char *const tiers[] = {"low", "medium", "high", "critical"};
    size_t i;

    for (i = 0; i < sizeof(tiers) / sizeof(tiers[0]); i++) {
        if (strcmp(s, tiers[i]) == 0) {
            return true;
        }
    }
    return false;
}

void coffer_store_cred_version_cleanup(struct coffer_store_cred_version *v)
{
    size_t i;

    if (v == NULL) {
        return;
    }
    for (i = 0; v->key_names != NULL && i < v->n_keys; i++) {
        coffer_free(v->key_names[i]);
    }
    coffer_free(v->key_names);
    coffer_free(v->ciphertext);
    *v = (struct coffer_store_cred_version){0};
}

/* The credential in row of a cred_next answer (columns 0..7). */
static enum coffer_err cred_at(const PGresult *res, int row, struct coffer_store_cred *out)
{
    enum coffer_err r;

    if ((r = store_col_uuid(res, row, 0, "coffer.credentials.id", &out->id)) != COFFER_OK ||
        (r = store_col_uuid(res, row, 1, "coffer.credentials.org_id", &out->org_id)) != COFFER_OK ||
        (r = store_col_uuid(res, row, 2, "coffer.credentials.project_id", &out->project_id)) !=
            COFFER_OK ||
        (r = store_col_name(res, row, 3, "coffer.credentials.name", out->name)) != COFFER_OK ||
        (r = store_col_text(res, row, 4, "coffer.credentials.type", out->type,
                            sizeof(out->type))) != COFFER_OK ||
        (r = store_col_text(res, row, 5, "coffer.credentials.tier", out->tier,
                            sizeof(out->tier))) != COFFER_OK ||
        (r = store_col_u32(res, row, 6, "coffer.credentials.current_version", 1,
                           &out->current_version)) != COFFER_OK ||
        (r = store_col_u32_or_zero(res, row, 7, "coffer.org_keys.version (current)",
                                   &out->org_current_key_version)) != COFFER_OK) {
        return r;
    }
    if (!type_ok(out->type)) {
        return coffer_err_set(COFFER_E_INTEGRITY, "coffer.credentials.type: not a valid type");
    }
    if (!tier_ok(out->tier)) {
        return coffer_err_set(COFFER_E_INTEGRITY, "coffer.credentials.tier: unknown tier");
    }
    return COFFER_OK;
}

static enum coffer_err cred_from_row(const PGresult *res, struct coffer_store_cred *out)
{
    enum coffer_err r = store_one_row(res, "credential");

    return r == COFFER_OK ? cred_at(res, 0, out) : r;
}

/* Checks the arguments of one write, alone or of a batch. */
static enum coffer_err check_next(const struct coffer_store_cred_next *w)
{
    enum coffer_err r;

    if (w->org_id == NULL || w->project_id == NULL || w->name == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "next credential version: missing field");
    }
    if ((r = store_check_name(w->name, "credential name")) != COFFER_OK) {
        return r;
    }
    if (w->type == NULL || !type_ok(w->type)) {
        return coffer_err_set(COFFER_E_INVALID, "credential type must match ^[a-z0-9_]{1,31}$");
    }
    if (w->tier == NULL || !tier_ok(w->tier)) {
        return coffer_err_set(COFFER_E_INVALID,
                              "credential tier must be low, medium, high or critical");
    }
    if (w->expire_on_phase_end != NULL &&
        (r = store_check_name(w->expire_on_phase_end, "expire_on_phase_end")) != COFFER_OK) {
        return r;
    }
    if (w->description != NULL && (r = store_check_description(w->description)) != COFFER_OK) {
        return r;
    }
    return COFFER_OK;
}

enum coffer_err coffer_store_cred_next_version(struct coffer_store *s,
                                               const struct coffer_uuid *org_id,
                                               const struct coffer_uuid *project_id,
                                               const char *name, const char *type, const char *tier,
                                               struct coffer_store_cred *out)
{
    struct store_params p = {0};
    PGresult *res = NULL;
    enum coffer_err r;

    memset(out, 0, sizeof(*out));
    if ((r = store_require_tx(s, "next credential version")) != COFFER_OK ||
        (r = check_next(&(struct coffer_store_cred_next){.org_id = org_id,
                                                         .project_id = project_id,
                                                         .name = name,
                                                         .type = type,
                                                         .tier = tier})) != COFFER_OK) {
        return r;
    }
    store_param_uuid(&p, org_id);
    store_param_uuid(&p, project_id);
    store_param_text(&p, name);
    store_param_text(&p, type);
    store_param_text(&p, tier);
    if ((r = store_exec(s, &cred_next, &p, "creating credential version", &res)) != COFFER_OK) {
        if (store_sqlstate_is(s, "23503")) {
            r = coffer_err_set(COFFER_E_NOT_FOUND, "credential %s: no such project in this org",
                               name);
        }
        return r;
    }
    if (PQntuples(res) == 0) {
        /* The name exists in this project under another org: the project is not this org's. */
        r = coffer_err_set(COFFER_E_NOT_FOUND, "credential %s: no such project in this org", name);
        goto out;
    }
    if ((r = cred_from_row(res, out)) != COFFER_OK) {
        goto out;
    }
    if (!coffer_uuid_equal(&out->org_id, org_id) ||
        !coffer_uuid_equal(&out->project_id, project_id) || strcmp(out->name, name) != 0) {
        r = coffer_err_set(COFFER_E_INTEGRITY, "coffer.credentials: row does not match the query");
    }
out:
    PQclear(res);
    if (r != COFFER_OK) {
        memset(out, 0, sizeof(*out));
    }
    return r;
}

static enum coffer_err check_version_row(const struct coffer_store_cred_version *v)
{
    size_t i;
    enum coffer_err r;

    if ((r = store_check_version(v->version, "credential")) != COFFER_OK ||
        (r = store_check_version(v->org_key_version, "credential's org key")) != COFFER_OK) {
        return r;
    }
    if (strncmp(v->aead, COFFER_MECH_AEAD, sizeof(v->aead)) != 0) {
        return coffer_err_set(COFFER_E_INVALID, "credential version: AEAD must be %s",
                              COFFER_MECH_AEAD);
    }
    if (strncmp(v->wrap_mech, COFFER_MECH_WRAP, sizeof(v->wrap_mech)) != 0) {
        return coffer_err_set(COFFER_E_INVALID, "credential version: wrap mechanism must be %s",
                              COFFER_MECH_WRAP);
    }
    if (v->key_names == NULL || v->n_keys == 0 || v->n_keys > COFFER_KEYS_MAX) {
        return coffer_err_set(COFFER_E_INVALID, "credential version: %zu key names, want 1..%d",
                              v->n_keys, COFFER_KEYS_MAX);
    }
    for (i = 0; i < v->n_keys; i++) {
        if (v->key_names[i] == NULL ||
            !store_key_name_ok(v->key_names[i],
                               strnlen(v->key_names[i], COFFER_KEY_NAME_MAX + 1))) {
            return coffer_err_set(COFFER_E_INVALID, "credential version: key name %zu is invalid",
                                  i);
        }
    }
    if (v->ciphertext == NULL || v->ciphertext_len == 0 ||
        v->ciphertext_len > STORE_CIPHERTEXT_MAX) {
        return coffer_err_set(COFFER_E_INVALID,
                              "credential version: ciphertext of %zu bytes, want 1..%u",
                              v->ciphertext_len, STORE_CIPHERTEXT_MAX);
    }
    if (v->wrapped_cek_len < WRAPPED_MIN || v->wrapped_cek_len > COFFER_WRAPPED_MAX) {
        return coffer_err_set(COFFER_E_INVALID,
                              "credential version: wrapped CEK of %zu bytes, want %d..%d",
                              v->wrapped_cek_len, WRAPPED_MIN, COFFER_WRAPPED_MAX);
    }
    return COFFER_OK;
}

enum coffer_err coffer_store_cred_version_insert(struct coffer_store *s,
                                                 const struct coffer_store_cred_version *v)
{
    struct store_params p = {0};
    struct coffer_buf names = {0};
    PGresult *res = NULL;
    enum coffer_err r;

    if ((r = check_version_row(v)) != COFFER_OK ||
        (r = store_encode_text_array(v->key_names, v->n_keys, &names)) != COFFER_OK) {
        goto out;
    }
    store_param_uuid(&p, &v->credential_id);
    store_param_int4(&p, (int32_t)v->version);
    store_param_uuid(&p, &v->org_id);
    store_param_uuid(&p, &v->project_id);
    store_param_int4(&p, (int32_t)v->org_key_version);
    store_param_text(&p, COFFER_MECH_AEAD);
    store_param_text(&p, COFFER_MECH_WRAP);
    store_param_binary(&p, names.data, names.len);
    store_param_bytea(&p, v->nonce, COFFER_GCM_IV_LEN);
    store_param_bytea(&p, v->ciphertext, v->ciphertext_len);
    store_param_bytea(&p, v->tag, COFFER_GCM_TAG_LEN);
    store_param_bytea(&p, v->wrapped_cek, v->wrapped_cek_len);
    if ((r = store_exec(s, &cv_insert, &p, "inserting credential version", &res)) != COFFER_OK) {
        if (r == COFFER_E_EXISTS) {
            r = coffer_err_set(COFFER_E_EXISTS, "credential version %" PRIu32 " already exists",
                               v->version);
        } else if (store_sqlstate_is(s, "23503")) {
            r = coffer_err_set(COFFER_E_NOT_FOUND,
                               "inserting credential version: no such credential in this org "
                               "and project, or no org key version %" PRIu32,
                               v->org_key_version);
        }
        goto out;
    }
out:
    PQclear(res);
    coffer_buf_cleanup(&names);
    return r;
}

static void put_be32(unsigned char out[4], uint32_t v)
{
    out[0] = (unsigned char)(v >> 24);
    out[1] = (unsigned char)(v >> 16);
    out[2] = (unsigned char)(v >> 8);
    out[3] = (unsigned char)v;
}

/* The write of w (n of them) that row of a cred_next_many answer is, or n. */
static size_t next_of_row(const struct coffer_store_cred_next *w, size_t n,
                          const struct coffer_store_cred *row)
{
    for (size_t i = 0; i < n; i++) {
        if (coffer_uuid_equal(w[i].project_id, &row->project_id) &&
            strcmp(w[i].name, row->name) == 0) {
            return i;
        }
    }
    return n;
}

/* Reads row of a cred_next_many answer into its write; integrity errors for anything unasked. */
static enum coffer_err next_at(const PGresult *res, int row, struct coffer_store_cred_next *w,
                               size_t n, bool *seen)
{
    struct coffer_store_cred c;
    struct coffer_store_cred_next *x;
    int64_t issued = 0;
    size_t i;
    enum coffer_err r;

    if ((r = cred_at(res, row, &c)) != COFFER_OK) {
        return r;
    }
    if ((i = next_of_row(w, n, &c)) == n || seen[i]) {
        return coffer_err_set(COFFER_E_INTEGRITY,
                              "coffer.credentials: the database wrote a row it was not asked to");
    }
    x = &w[i];
    if (!coffer_uuid_equal(&c.org_id, x->org_id)) {
        return coffer_err_set(COFFER_E_INTEGRITY,
                              "coffer.credentials: row does not match the query");
    }
    if ((r = store_col_count(res, row, 8, "coffer.credentials.updated_at", &issued)) != COFFER_OK ||
        (r = store_col_bool(res, row, 9, "coffer.credentials.revoked_at", &x->revoked)) !=
            COFFER_OK ||
        (r = store_col_bool(res, row, 11, "coffer.projects.removed_at", &x->project_removed)) !=
            COFFER_OK) {
        return r;
    }
    x->phase[0] = '\0';
    if (!PQgetisnull(res, row, 10) &&
        (r = store_col_name(res, row, 10, "coffer.projects.phase", x->phase)) != COFFER_OK) {
        return r;
    }
    x->out = c;
    x->issued_us = issued;
    seen[i] = true;
    return COFFER_OK;
}

enum coffer_err coffer_store_cred_next_version_many(struct coffer_store *s,
                                                    struct coffer_store_cred_next *w, size_t n)
{
    const void *orgs[COFFER_STORE_BATCH_MAX], *projects[COFFER_STORE_BATCH_MAX];
    const char *names[COFFER_STORE_BATCH_MAX], *types[COFFER_STORE_BATCH_MAX];
    const char *tiers[COFFER_STORE_BATCH_MAX], *expires[COFFER_STORE_BATCH_MAX];
    const char *ends[COFFER_STORE_BATCH_MAX], *descs[COFFER_STORE_BATCH_MAX];
    char numbers[COFFER_STORE_BATCH_MAX][24];
    size_t uuid_lens[COFFER_STORE_BATCH_MAX];
    bool seen[COFFER_STORE_BATCH_MAX] = {false};
    struct coffer_buf a[8] = {{0}};
    struct store_params p = {0};
    PGresult *res = NULL;
    enum coffer_err r;

    if (w == NULL || n == 0 || n > COFFER_STORE_BATCH_MAX) {
        return coffer_err_set(COFFER_E_INVALID,
                              "a batch of writes holds 1 to %d credentials, not %zu",
                              COFFER_STORE_BATCH_MAX, n);
    }
    if ((r = store_require_tx(s, "next credential versions")) != COFFER_OK) {
        return r;
    }
    for (size_t i = 0; i < n; i++) {
        if ((r = check_next(&w[i])) != COFFER_OK) {
            return coffer_err_wrap(r, "write %zu of %zu", i + 1, n);
        }
        for (size_t k = 0; k < i; k++) {
            if (coffer_uuid_equal(w[k].project_id, w[i].project_id) &&
                strcmp(w[k].name, w[i].name) == 0) {
                return coffer_err_set(COFFER_E_INVALID,
                                      "credential %s is written twice in one batch", w[i].name);
            }
        }
        orgs[i] = w[i].org_id->b;
        projects[i] = w[i].project_id->b;
        uuid_lens[i] = sizeof(w[i].org_id->b);
        names[i] = w[i].name;
        types[i] = w[i].type;
        tiers[i] = w[i].tier;
        expires[i] = NULL;
        if (w[i].expires_us != COFFER_AUTHZ_NO_EXPIRY) {
            (void)snprintf(numbers[i], sizeof(numbers[i]), "%" PRId64, w[i].expires_us);
            expires[i] = numbers[i];
        }
        ends[i] = w[i].expire_on_phase_end;
        descs[i] = w[i].description;
    }
    if ((r = store_encode_array(STORE_OID_UUID, n, orgs, uuid_lens, &a[0])) != COFFER_OK ||
        (r = store_encode_array(STORE_OID_UUID, n, projects, uuid_lens, &a[1])) != COFFER_OK ||
        (r = store_encode_strings(names, n, &a[2])) != COFFER_OK ||
        (r = store_encode_strings(types, n, &a[3])) != COFFER_OK ||
        (r = store_encode_strings(tiers, n, &a[4])) != COFFER_OK ||
        (r = store_encode_strings(expires, n, &a[5])) != COFFER_OK ||
        (r = store_encode_strings(ends, n, &a[6])) != COFFER_OK ||
        (r = store_encode_strings(descs, n, &a[7])) != COFFER_OK) {
        goto out;
    }
    for (size_t c = 0; c < 8; c++) {
        store_param_binary(&p, a[c].data, a[c].len);
    }
    if ((r = store_exec(s, &cred_next_many, &p, "creating credential versions", &res)) !=
        COFFER_OK) {
        if (store_sqlstate_is(s, "23503")) {
            r = coffer_err_set(COFFER_E_NOT_FOUND, "credentials: a project is not in this org");
        }
        goto out;
    }
    for (int row = 0; row < PQntuples(res) && r == COFFER_OK; row++) {
        r = next_at(res, row, w, n, seen);
    }
    for (size_t i = 0; i < n && r == COFFER_OK; i++) {
        if (!seen[i]) {
            /* The name exists in this project under another org: the project is not this org's. */
            r = coffer_err_set(COFFER_E_NOT_FOUND, "credential %s: no such project in this org",
                               w[i].name);
        }
    }
out:
    PQclear(res);
    for (size_t c = 0; c < 8; c++) {
        coffer_buf_cleanup(&a[c]);
    }
    if (r != COFFER_OK) {
        for (size_t i = 0; i < n; i++) {
            memset(&w[i].out, 0, sizeof(w[i].out));
            w[i].issued_us = 0;
            w[i].revoked = false;
            w[i].project_removed = false;
            w[i].phase[0] = '\0';
        }
    }
    return r;
}

enum coffer_err coffer_store_tx_now(struct coffer_store *s, int64_t *now_us)
{
    struct store_params p = {0};
    PGresult *res = NULL;
    enum coffer_err r;

    *now_us = 0;
    if ((r = store_require_tx(s, "the transaction's time")) != COFFER_OK ||
        (r = store_exec(s, &tx_now, &p, "reading the transaction's time", &res)) != COFFER_OK) {
        return r;
    }
    if ((r = store_one_row(res, "the transaction's time")) == COFFER_OK) {
        r = store_col_count(res, 0, 0, "now()", now_us);
    }
    PQclear(res);
    return r;
}

/* The key names of v joined by commas into out (cap bytes). */
static enum coffer_err join_key_names(const struct coffer_store_cred_version *v, char *out,
                                      size_t cap)
{
    size_t used = 0;

    for (size_t k = 0; k < v->n_keys; k++) {
        size_t len = strlen(v->key_names[k]);

        if (used + len + 2 > cap) {
            return coffer_err_set(COFFER_E_INVALID, "credential version: key names too long");
        }
        if (k > 0) {
            out[used++] = ',';
        }
        coffer_memcpy(out + used, v->key_names[k], len);
        used += len;
    }
    out[used] = '\0';
    return COFFER_OK;
}

enum coffer_err coffer_store_cred_version_insert_many(struct coffer_store *s,
                                                      const struct coffer_store_cred_version *v,
                                                      size_t n)
{
    enum { N_ARRAYS = 10 };
    /* At most 64 names of at most 64 bytes, each with its comma. */
    static char joined[COFFER_STORE_BATCH_MAX][COFFER_KEYS_MAX * (COFFER_KEY_NAME_MAX + 1) + 1];
    const void *ids[COFFER_STORE_BATCH_MAX], *orgs[COFFER_STORE_BATCH_MAX];
    const void *projects[COFFER_STORE_BATCH_MAX], *vers[COFFER_STORE_BATCH_MAX];
    const void *okvs[COFFER_STORE_BATCH_MAX], *nonces[COFFER_STORE_BATCH_MAX];
    const void *cts[COFFER_STORE_BATCH_MAX], *tags[COFFER_STORE_BATCH_MAX];
    const void *wraps[COFFER_STORE_BATCH_MAX];
    const char *names[COFFER_STORE_BATCH_MAX];
    size_t uuid_lens[COFFER_STORE_BATCH_MAX], int_lens[COFFER_STORE_BATCH_MAX];
    size_t nonce_lens[COFFER_STORE_BATCH_MAX], ct_lens[COFFER_STORE_BATCH_MAX];
    size_t tag_lens[COFFER_STORE_BATCH_MAX], wrap_lens[COFFER_STORE_BATCH_MAX];
    unsigned char ints[COFFER_STORE_BATCH_MAX][2][4];
    struct coffer_buf a[N_ARRAYS] = {{0}};
    struct store_params p = {0};
    PGresult *res = NULL;
    enum coffer_err r = COFFER_OK;

    if (v == NULL || n == 0 || n > COFFER_STORE_BATCH_MAX) {
        return coffer_err_set(COFFER_E_INVALID, "a batch of versions holds 1 to %d rows, not %zu",
                              COFFER_STORE_BATCH_MAX, n);
    }
    for (size_t i = 0; i < n; i++) {
        if ((r = check_version_row(&v[i])) != COFFER_OK ||
            (r = join_key_names(&v[i], joined[i], sizeof(joined[i]))) != COFFER_OK) {
            return coffer_err_wrap(r, "version %zu of %zu", i + 1, n);
        }
        put_be32(ints[i][0], v[i].version);
        put_be32(ints[i][1], v[i].org_key_version);
        ids[i] = v[i].credential_id.b;
        orgs[i] = v[i].org_id.b;
        projects[i] = v[i].project_id.b;
        vers[i] = ints[i][0];
        okvs[i] = ints[i][1];
        names[i] = joined[i];
        nonces[i] = v[i].nonce;
        cts[i] = v[i].ciphertext;
        tags[i] = v[i].tag;
        wraps[i] = v[i].wrapped_cek;
        uuid_lens[i] = sizeof(v[i].credential_id.b);
        int_lens[i] = 4;
        nonce_lens[i] = COFFER_GCM_IV_LEN;
        ct_lens[i] = v[i].ciphertext_len;
        tag_lens[i] = COFFER_GCM_TAG_LEN;
        wrap_lens[i] = v[i].wrapped_cek_len;
    }
    if ((r = store_encode_array(STORE_OID_UUID, n, ids, uuid_lens, &a[0])) != COFFER_OK ||
        (r = store_encode_array(STORE_OID_INT4, n, vers, int_lens, &a[1])) != COFFER_OK ||
        (r = store_encode_array(STORE_OID_UUID, n, orgs, uuid_lens, &a[2])) != COFFER_OK ||
        (r = store_encode_array(STORE_OID_UUID, n, projects, uuid_lens, &a[3])) != COFFER_OK ||
        (r = store_encode_array(STORE_OID_INT4, n, okvs, int_lens, &a[4])) != COFFER_OK ||
        (r = store_encode_strings(names, n, &a[5])) != COFFER_OK ||
        (r = store_encode_array(STORE_OID_BYTEA, n, nonces, nonce_lens, &a[6])) != COFFER_OK ||
        (r = store_encode_array(STORE_OID_BYTEA, n, cts, ct_lens, &a[7])) != COFFER_OK ||
        (r = store_encode_array(STORE_OID_BYTEA, n, tags, tag_lens, &a[8])) != COFFER_OK ||
        (r = store_encode_array(STORE_OID_BYTEA, n, wraps, wrap_lens, &a[9])) != COFFER_OK) {
        goto out;
    }
    for (size_t c = 0; c < 5; c++) {
        store_param_binary(&p, a[c].data, a[c].len);
    }
    store_param_text(&p, COFFER_MECH_AEAD);
    store_param_text(&p, COFFER_MECH_WRAP);
    for (size_t c = 5; c < N_ARRAYS; c++) {
        store_param_binary(&p, a[c].data, a[c].len);
    }
    if ((r = store_exec(s, &cv_insert_many, &p, "inserting credential versions", &res)) !=
        COFFER_OK) {
        if (r == COFFER_E_EXISTS) {
            r = coffer_err_set(COFFER_E_EXISTS, "a credential version of the batch already exists");
        } else if (store_sqlstate_is(s, "23503")) {
            r = coffer_err_set(COFFER_E_NOT_FOUND,
                               "inserting credential versions: no such credential in this org "
                               "and project, or no such org key version");
        }
        goto out;
    }
    if (store_affected(res) != (long)n) {
        r = coffer_err_set(COFFER_E_INTEGRITY, "inserting credential versions: %ld of %zu inserted",
                           store_affected(res), n);
    }
out:
    PQclear(res);
    for (size_t c = 0; c < N_ARRAYS; c++) {
        coffer_buf_cleanup(&a[c]);
    }
    return r;
}

static enum coffer_err cv_from_row(const PGresult *res, int row, int c0,
                                   struct coffer_store_cred_version *out)
{
    size_t len = 0;
    enum coffer_err r;

    *out = (struct coffer_store_cred_version){0};
    if ((r = store_col_uuid(res, row, c0, "coffer.credential_versions.credential_id",
                            &out->credential_id)) != COFFER_OK ||
        (r = store_col_u32(res, row, c0 + 1, "coffer.credential_versions.version", 1,
                           &out->version)) != COFFER_OK ||
        (r = store_col_uuid(res, row, c0 + 2, "coffer.credential_versions.org_id", &out->org_id)) !=
            COFFER_OK ||
        (r = store_col_uuid(res, row, c0 + 3, "coffer.credential_versions.project_id",
                            &out->project_id)) != COFFER_OK ||
        (r = store_col_u32(res, row, c0 + 4, "coffer.credential_versions.org_key_version", 1,
                           &out->org_key_version)) != COFFER_OK ||
        (r = store_col_mech(res, row, c0 + 5, "coffer.credential_versions.aead", COFFER_MECH_AEAD,
                            out->aead)) != COFFER_OK ||
        (r = store_col_mech(res, row, c0 + 6, "coffer.credential_versions.wrap_mech",
                            COFFER_MECH_WRAP, out->wrap_mech)) != COFFER_OK ||
        (r = store_col_key_names(res, row, c0 + 7, "coffer.credential_versions.key_names",
                                 &out->key_names, &out->n_keys)) != COFFER_OK ||
        (r = store_col_bytea_exact(res, row, c0 + 8, "coffer.credential_versions.nonce", out->nonce,
                                   COFFER_GCM_IV_LEN)) != COFFER_OK ||
        (r = store_col_bytea_alloc(res, row, c0 + 9, "coffer.credential_versions.ciphertext",
                                   STORE_CIPHERTEXT_MAX, &out->ciphertext, &out->ciphertext_len)) !=
            COFFER_OK ||
        (r = store_col_bytea_exact(res, row, c0 + 10, "coffer.credential_versions.tag", out->tag,
                                   COFFER_GCM_TAG_LEN)) != COFFER_OK ||
        (r = store_col_bytea_range(res, row, c0 + 11, "coffer.credential_versions.wrapped_cek",
                                   out->wrapped_cek, WRAPPED_MIN, COFFER_WRAPPED_MAX, &len)) !=
            COFFER_OK ||
        (r = store_col_state(res, row, c0 + 12, "coffer.org_keys.state", &out->org_key_state)) !=
            COFFER_OK ||
        (r = store_col_u32_or_zero(res, row, c0 + 13, "coffer.org_keys.version (current)",
                                   &out->org_current_key_version)) != COFFER_OK ||
        (r = store_col_u32(res, row, c0 + 14, "coffer.org_keys.mk_version", 1,
                           &out->org_key_mk_version)) != COFFER_OK) {
        coffer_store_cred_version_cleanup(out);
        return r;
    }
    out->wrapped_cek_len = len;
    return COFFER_OK;
}

/* Fills the results of a batch that failed as a whole. */
static void fail_all(enum coffer_err r, size_t n, enum coffer_err *results)
{
    size_t i;

    for (i = 0; i < n; i++) {
        results[i] = r;
    }
}

/* Checks one lookup before it is sent; COFFER_OK or the reason it cannot be asked. */
static enum coffer_err check_ref(const struct coffer_store_cred_ref *ref)
{
    enum coffer_err r;

    if (ref->org_id == NULL || ref->project_id == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "credential lookup without org or project");
    }
    if ((r = store_check_name(ref->name, "credential name")) != COFFER_OK) {
        return r;
    }
    if (ref->version > INT32_MAX) {
        return coffer_err_set(COFFER_E_INVALID, "credential version %" PRIu32 " is out of range",
                              ref->version);
    }
    return COFFER_OK;
}

/* Reads row `row` of a batch result into the slot of the lookup it answers. */
static void take_row(const PGresult *res, int row, const struct coffer_store_cred_ref *refs,
                     size_t n, const size_t *slot_of, struct coffer_store_cred_version *out,
                     enum coffer_err *results)
{
    struct coffer_store_cred_version v;
    const struct coffer_store_cred_ref *ref;
    int64_t i = 0;
    size_t slot;
    enum coffer_err r;

    if (store_col_count(res, row, 0, "lookup index", &i) != COFFER_OK || i < 1 || (uint64_t)i > n) {
        return;
    }
    slot = slot_of[i - 1];
    ref = &refs[slot];
    if (results[slot] != COFFER_E_NOT_FOUND) {
        /* A unique key answered twice: refuse the lookup rather than pick a row. */
        coffer_store_cred_version_cleanup(&out[slot]);
        results[slot] =
            coffer_err_set(COFFER_E_INTEGRITY, "credential %s: several rows", ref->name);
        return;
    }
    if ((r = cv_from_row(res, row, 1, &v)) != COFFER_OK) {
        results[slot] = r;
        return;
    }
    if (!coffer_uuid_equal(&v.org_id, ref->org_id) ||
        !coffer_uuid_equal(&v.project_id, ref->project_id) ||
        (ref->version != 0 && v.version != ref->version)) {
        coffer_store_cred_version_cleanup(&v);
        results[slot] = coffer_err_set(COFFER_E_INTEGRITY,
                                       "coffer.credential_versions: row does not match the query");
        return;
    }
    out[slot] = v;
    results[slot] = COFFER_OK;
}

/*
 * Classifies the lookups of a batch: results[i] is COFFER_E_NOT_FOUND for
 * each lookup to send (until a row answers it) or the reason it cannot be
 * sent; slot_of maps the sent lookups, in order, to their index in refs.
 * Deterministic, so that sending and receiving agree on the mapping.
 */
static size_t classify(const struct coffer_store_cred_ref *refs, size_t n, enum coffer_err *results,
                       size_t *slot_of)
{
    size_t asked = 0;
    size_t i;

    for (i = 0; i < n; i++) {
        if ((results[i] = check_ref(&refs[i])) == COFFER_OK) {
            results[i] = COFFER_E_NOT_FOUND;
            slot_of[asked++] = i;
        }
    }
    return asked;
}

enum coffer_err coffer_store_cred_version_send_many(struct coffer_store *s,
                                                    const struct coffer_store_cred_ref *refs,
                                                    size_t n)
{
    const void *orgs[COFFER_STORE_BATCH_MAX];
    const void *projects[COFFER_STORE_BATCH_MAX];
    const void *names[COFFER_STORE_BATCH_MAX];
    const void *versions[COFFER_STORE_BATCH_MAX];
    size_t uuid_lens[COFFER_STORE_BATCH_MAX];
    size_t name_lens[COFFER_STORE_BATCH_MAX];
    size_t int_lens[COFFER_STORE_BATCH_MAX];
    unsigned char vbytes[COFFER_STORE_BATCH_MAX][4];
    size_t slot_of[COFFER_STORE_BATCH_MAX];
    enum coffer_err results[COFFER_STORE_BATCH_MAX];
    struct coffer_buf a_org = {0}, a_proj = {0}, a_name = {0}, a_ver = {0};
    struct store_params p = {0};
    size_t asked;
    size_t j;
    enum coffer_err r;

    if (n == 0 || n > COFFER_STORE_BATCH_MAX) {
        return coffer_err_set(COFFER_E_INVALID, "a batch holds 1 to %d lookups, not %zu",
                              COFFER_STORE_BATCH_MAX, n);
    }
    asked = classify(refs, n, results, slot_of);
    /* Even a batch with nothing valid to ask is sent (empty), so that a receive always follows. */
    for (j = 0; j < asked; j++) {
        const struct coffer_store_cred_ref *ref = &refs[slot_of[j]];

        orgs[j] = ref->org_id->b;
        projects[j] = ref->project_id->b;
        names[j] = ref->name;
        name_lens[j] = strlen(ref->name);
        uuid_lens[j] = sizeof(ref->org_id->b);
        vbytes[j][0] = (unsigned char)(ref->version >> 24);
        vbytes[j][1] = (unsigned char)(ref->version >> 16);
        vbytes[j][2] = (unsigned char)(ref->version >> 8);
        vbytes[j][3] = (unsigned char)ref->version;
        versions[j] = vbytes[j];
        int_lens[j] = 4;
    }
    if ((r = store_encode_array(STORE_OID_UUID, asked, orgs, uuid_lens, &a_org)) != COFFER_OK ||
        (r = store_encode_array(STORE_OID_UUID, asked, projects, uuid_lens, &a_proj)) !=
            COFFER_OK ||
        (r = store_encode_array(STORE_OID_TEXT, asked, names, name_lens, &a_name)) != COFFER_OK ||
        (r = store_encode_array(STORE_OID_INT4, asked, versions, int_lens, &a_ver)) != COFFER_OK) {
        goto out;
    }
    store_param_binary(&p, a_org.data, a_org.len);
    store_param_binary(&p, a_proj.data, a_proj.len);
    store_param_binary(&p, a_name.data, a_name.len);
    store_param_binary(&p, a_ver.data, a_ver.len);
    r = store_send(s, &cv_get_many, &p, "loading credential versions");
out:
    coffer_buf_cleanup(&a_org);
    coffer_buf_cleanup(&a_proj);
    coffer_buf_cleanup(&a_name);
    coffer_buf_cleanup(&a_ver);
    return r;
}

enum coffer_err coffer_store_cred_version_recv_many(struct coffer_store *s,
                                                    const struct coffer_store_cred_ref *refs,
                                                    size_t n, struct coffer_store_cred_version *out,
                                                    enum coffer_err *results)
{
    size_t slot_of[COFFER_STORE_BATCH_MAX];
    PGresult *res = NULL;
    size_t asked;
    size_t i;
    enum coffer_err r;

    if (n == 0 || n > COFFER_STORE_BATCH_MAX) {
        return coffer_err_set(COFFER_E_INVALID, "a batch holds 1 to %d lookups, not %zu",
                              COFFER_STORE_BATCH_MAX, n);
    }
    for (i = 0; i < n; i++) {
        out[i] = (struct coffer_store_cred_version){0};
    }
    asked = classify(refs, n, results, slot_of);
    if ((r = store_recv(s, "loading credential versions", &res)) != COFFER_OK) {
        fail_all(r, n, results);
        return r;
    }
    for (i = 0; i < (size_t)PQntuples(res); i++) {
        take_row(res, (int)i, refs, asked, slot_of, out, results);
    }
    PQclear(res);
    return COFFER_OK;
}

enum coffer_err coffer_store_cred_version_get_many(struct coffer_store *s,
                                                   const struct coffer_store_cred_ref *refs,
                                                   size_t n, struct coffer_store_cred_version *out,
                                                   enum coffer_err *results)
{
    enum coffer_err r;

    if ((r = coffer_store_cred_version_send_many(s, refs, n)) != COFFER_OK) {
        if (n <= COFFER_STORE_BATCH_MAX) {
            fail_all(r, n, results);
        }
        return r;
    }
    return coffer_store_cred_version_recv_many(s, refs, n, out, results);
}

enum coffer_err coffer_store_cred_version_get(struct coffer_store *s,
                                              const struct coffer_uuid *org_id,
                                              const struct coffer_uuid *project_id,
                                              const char *name, uint32_t version,
                                              struct coffer_store_cred_version *out)
{
    struct coffer_store_cred_ref ref = {org_id, project_id, name, version};
    enum coffer_err result = COFFER_OK;
    enum coffer_err r;

    if ((r = coffer_store_cred_version_get_many(s, &ref, 1, out, &result)) != COFFER_OK) {
        return r;
    }
    if (result == COFFER_E_NOT_FOUND) {
        return coffer_err_set(COFFER_E_NOT_FOUND, "credential %s version %" PRIu32 " not found",
                              name, version);
    }
    return result;
}

enum coffer_err coffer_store_cred_rewrap(struct coffer_store *s,
                                         const struct coffer_store_cred_version *old,
                                         uint32_t new_org_key_version, const unsigned char *wrapped,
                                         size_t wrapped_len, bool *won)
{
    struct coffer_store_rewrap item = {old, new_org_key_version, wrapped, wrapped_len};

    /* One row is a batch of one: the same statement, the same checks. */
    return coffer_store_cred_rewrap_many(s, &item, 1, won);
}

enum coffer_err coffer_store_cred_stale(struct coffer_store *s, struct coffer_store_sweep_pos *pos,
                                        size_t limit, struct coffer_store_cred_version **out,
                                        size_t *n)
{
    struct store_params p = {0};
    struct coffer_store_cred_version *rows = NULL;
    PGresult *res = NULL;
    int64_t lim = limit > INT32_MAX ? INT32_MAX : (int64_t)limit;
    int count = 0;
    int i;
    enum coffer_err r;

    *out = NULL;
    *n = 0;
    if (limit == 0) {
        return COFFER_OK;
    }
    if (pos->started) {
        if (pos->version > INT32_MAX) {
            return coffer_err_set(COFFER_E_INVALID, "sweep position version is out of range");
        }
        store_param_uuid(&p, &pos->credential_id);
        store_param_int4(&p, (int32_t)pos->version);
    } else {
        /* Below every row: versions start at 1. */
        static const struct coffer_uuid zero = {{0}};

        store_param_uuid(&p, &zero);
        store_param_int4(&p, 0);
    }
    store_param_int8(&p, lim);
    if ((r = store_exec(s, &cv_stale, &p, "listing credential versions to rewrap", &res)) !=
        COFFER_OK) {
        return r;
    }
    count = PQntuples(res);
    if (count == 0) {
        goto out;
    }
    rows = coffer_calloc((size_t)count, sizeof(*rows));
    if (rows == NULL) {
        r = coffer_err_set(COFFER_E_NOMEM, "listing %d credential versions", count);
        goto out;
    }
    for (i = 0; i < count; i++) {
        if ((r = cv_from_row(res, i, 0, &rows[i])) != COFFER_OK) {
            goto out;
        }
    }
    pos->credential_id = rows[count - 1].credential_id;
    pos->version = rows[count - 1].version;
    pos->started = true;
    *out = rows;
    *n = (size_t)count;
    rows = NULL;
out:
    for (i = 0; rows != NULL && i < count; i++) {
        coffer_store_cred_version_cleanup(&rows[i]);
    }
    coffer_free(rows);
    PQclear(res);
    return r;
}

enum coffer_err coffer_store_count_stale(struct coffer_store *s, int64_t *cred_versions,
                                         int64_t *org_keys)
{
    struct store_params p = {0};
    PGresult *res = NULL;
    enum coffer_err r;

    *cred_versions = 0;
    *org_keys = 0;
    if ((r = store_exec(s, &count_stale, &p, "counting rows to rewrap", &res)) != COFFER_OK) {
        return r;
    }
    if ((r = store_one_row(res, "stale counts")) != COFFER_OK ||
        (r = store_col_count(res, 0, 0, "count(coffer.credential_versions)", cred_versions)) !=
            COFFER_OK ||
        (r = store_col_count(res, 0, 1, "count(coffer.org_keys)", org_keys)) != COFFER_OK) {
        *cred_versions = 0;
        *org_keys = 0;
    }
    PQclear(res);
    return r;
}

static enum coffer_err check_rewrap(const struct coffer_store_rewrap *it)
{
    enum coffer_err r;

    if ((r = store_check_version(it->old->version, "credential")) != COFFER_OK ||
        (r = store_check_version(it->old->org_key_version, "credential's old org key")) !=
            COFFER_OK ||
        (r = store_check_version(it->new_org_key_version, "credential's new org key")) !=
            COFFER_OK) {
        return r;
    }
    if (it->wrapped == NULL || it->wrapped_len < WRAPPED_MIN ||
        it->wrapped_len > COFFER_WRAPPED_MAX || it->old->wrapped_cek_len < WRAPPED_MIN ||
        it->old->wrapped_cek_len > COFFER_WRAPPED_MAX) {
        return coffer_err_set(
            COFFER_E_INVALID, "credential rewrap: wrapped CEK of %zu bytes (old %zu), want %d..%d",
            it->wrapped_len, it->old->wrapped_cek_len, WRAPPED_MIN, COFFER_WRAPPED_MAX);
    }
    return COFFER_OK;
}

enum coffer_err coffer_store_cred_rewrap_many(struct coffer_store *s,
                                              const struct coffer_store_rewrap *items, size_t n,
                                              bool *won)
{
    const void *ids[COFFER_STORE_BATCH_MAX], *vers[COFFER_STORE_BATCH_MAX];
    const void *orgs[COFFER_STORE_BATCH_MAX], *new_okv[COFFER_STORE_BATCH_MAX];
    const void *new_w[COFFER_STORE_BATCH_MAX], *old_okv[COFFER_STORE_BATCH_MAX];
    const void *old_w[COFFER_STORE_BATCH_MAX];
    size_t uuid_lens[COFFER_STORE_BATCH_MAX], int_lens[COFFER_STORE_BATCH_MAX];
    size_t new_lens[COFFER_STORE_BATCH_MAX], old_lens[COFFER_STORE_BATCH_MAX];
    unsigned char ints[COFFER_STORE_BATCH_MAX][3][4];
    struct coffer_buf a[7] = {{0}};
    struct store_params p = {0};
    PGresult *res = NULL;
    enum coffer_err r;
    size_t i;
    int row;

    if (n == 0 || n > COFFER_STORE_BATCH_MAX) {
        return coffer_err_set(COFFER_E_INVALID, "a rewrap batch holds 1 to %d rows, not %zu",
                              COFFER_STORE_BATCH_MAX, n);
    }
    for (i = 0; i < n; i++) {
        const struct coffer_store_cred_version *old = items[i].old;

        won[i] = false;
        if ((r = check_rewrap(&items[i])) != COFFER_OK) {
            return r;
        }
        put_be32(ints[i][0], old->version);
        put_be32(ints[i][1], items[i].new_org_key_version);
        put_be32(ints[i][2], old->org_key_version);
        ids[i] = old->credential_id.b;
        orgs[i] = old->org_id.b;
        vers[i] = ints[i][0];
        new_okv[i] = ints[i][1];
        old_okv[i] = ints[i][2];
        new_w[i] = items[i].wrapped;
        old_w[i] = old->wrapped_cek;
        uuid_lens[i] = sizeof(old->credential_id.b);
        int_lens[i] = 4;
        new_lens[i] = items[i].wrapped_len;
        old_lens[i] = old->wrapped_cek_len;
    }
    if ((r = store_encode_array(STORE_OID_UUID, n, ids, uuid_lens, &a[0])) != COFFER_OK ||
        (r = store_encode_array(STORE_OID_INT4, n, vers, int_lens, &a[1])) != COFFER_OK ||
        (r = store_encode_array(STORE_OID_UUID, n, orgs, uuid_lens, &a[2])) != COFFER_OK ||
        (r = store_encode_array(STORE_OID_INT4, n, new_okv, int_lens, &a[3])) != COFFER_OK ||
        (r = store_encode_array(STORE_OID_BYTEA, n, new_w, new_lens, &a[4])) != COFFER_OK ||
        (r = store_encode_array(STORE_OID_INT4, n, old_okv, int_lens, &a[5])) != COFFER_OK ||
        (r = store_encode_array(STORE_OID_BYTEA, n, old_w, old_lens, &a[6])) != COFFER_OK) {
        goto out;
    }
    for (i = 0; i < 7; i++) {
        store_param_binary(&p, a[i].data, a[i].len);
    }
    if ((r = store_exec(s, &cv_rewrap_many, &p, "rewrapping credential versions", &res)) !=
        COFFER_OK) {
        if (store_sqlstate_is(s, "23503")) {
            r = coffer_err_set(COFFER_E_NOT_FOUND,
                               "rewrapping credential versions: no such org key version");
        }
        goto out;
    }
    for (row = 0; row < PQntuples(res); row++) {
        struct coffer_uuid id;
        uint32_t version = 0;

        if ((r = store_col_uuid(res, row, 0, "coffer.credential_versions.credential_id", &id)) !=
                COFFER_OK ||
            (r = store_col_u32(res, row, 1, "coffer.credential_versions.version", 1, &version)) !=
                COFFER_OK) {
            goto out;
        }
        for (i = 0; i < n; i++) {
            if (!won[i] && items[i].old->version == version &&
                coffer_uuid_equal(&items[i].old->credential_id, &id)) {
                won[i] = true;
                break;
            }
        }
        if (i == n) {
            r = coffer_err_set(COFFER_E_INTEGRITY,
                               "rewrapping credential versions: the database moved a row it was "
                               "not asked to");
            goto out;
        }
    }
    r = COFFER_OK;
out:
    PQclear(res);
    for (i = 0; i < 7; i++) {
        coffer_buf_cleanup(&a[i]);
    }
    return r;
}

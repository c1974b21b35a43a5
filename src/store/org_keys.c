/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Org key rows: each org's versioned data keys, stored only wrapped under a
 * master key version together with the wrapping mechanism and a key check
 * value. One version per org is current (a partial unique index enforces
 * it). Rewrapping under a newer master key is a compare-and-swap on the old
 * (mk_version, wrapped) pair, so concurrent readers and servers never lose a
 * row.
 *
 * This file must never return a row that is not the org asked for, and never
 * write a wrapped blob whose length or mechanism it has not checked.
 */
#include "coffer/store.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "coffer/mem.h"
#include "store/store_int.h"

#define OK_COLS "id, org_id, version, mk_version, wrap_mech, wrapped, kcv, state"
#define WRAPPED_MIN 16

static const struct store_stmt ok_insert = {
    .name = "coffer_ok_insert",
    .sql =
        "INSERT INTO coffer.org_keys (org_id, version, mk_version, wrap_mech, wrapped, kcv, state) "
        "VALUES ($1, $2, $3, $4, $5, $6, 'active') RETURNING id",
    .nparams = 6,
    .types = {STORE_OID_UUID, STORE_OID_INT4, STORE_OID_INT4, STORE_OID_TEXT, STORE_OID_BYTEA,
              STORE_OID_BYTEA},
    .ncols = 1,
};

static const struct store_stmt ok_current = {
    .name = "coffer_ok_current",
    .sql = "SELECT " OK_COLS " FROM coffer.org_keys WHERE org_id = $1 AND state = 'current'",
    .nparams = 1,
    .types = {STORE_OID_UUID},
    .ncols = 8,
};

static const struct store_stmt ok_get = {
    .name = "coffer_ok_get",
    .sql = "SELECT " OK_COLS " FROM coffer.org_keys WHERE org_id = $1 AND version = $2",
    .nparams = 2,
    .types = {STORE_OID_UUID, STORE_OID_INT4},
    .ncols = 8,
};

static const struct store_stmt ok_list = {
    .name = "coffer_ok_list",
    .sql = "SELECT " OK_COLS " FROM coffer.org_keys WHERE $1::uuid IS NULL OR org_id = $1 "
           "ORDER BY org_id, version",
    .nparams = 1,
    .types = {STORE_OID_UUID},
    .ncols = 8,
};

static const struct store_stmt ok_rewrap = {
    .name = "coffer_ok_rewrap",
    .sql = "UPDATE coffer.org_keys SET mk_version = $3, wrapped = $4, rewrapped_at = now() "
           "WHERE org_id = $1 AND version = $2 AND mk_version = $5 AND wrapped = $6 "
           "AND state <> 'destroyed'",
    .nparams = 6,
    .types = {STORE_OID_UUID, STORE_OID_INT4, STORE_OID_INT4, STORE_OID_BYTEA, STORE_OID_INT4,
              STORE_OID_BYTEA},
    .ncols = 0,
};

static const struct store_stmt ok_stale = {
    .name = "coffer_ok_stale",
    .sql = "SELECT " OK_COLS " FROM coffer.org_keys "
           "WHERE state <> 'destroyed' AND mk_version <> $1 AND ($2::uuid IS NULL OR id > $2) "
           "ORDER BY id LIMIT $3",
    .nparams = 3,
    .types = {STORE_OID_INT4, STORE_OID_UUID, STORE_OID_INT8},
    .ncols = 8,
};

static const struct store_stmt ok_lock = {
    .name = "coffer_ok_lock",
    .sql = "SELECT state FROM coffer.org_keys WHERE org_id = $1 AND version = $2 FOR UPDATE",
    .nparams = 2,
    .types = {STORE_OID_UUID, STORE_OID_INT4},
    .ncols = 1,
};

static const struct store_stmt ok_count_refs = {
    .name = "coffer_ok_count_refs",
    .sql = "SELECT count(*) FROM coffer.credential_versions WHERE org_id = $1 AND org_key_version "
           "= $2",
    .nparams = 2,
    .types = {STORE_OID_UUID, STORE_OID_INT4},
    .ncols = 1,
};

static const struct store_stmt ok_demote = {
    .name = "coffer_ok_demote",
    .sql = "UPDATE coffer.org_keys SET state = 'active' "
           "WHERE org_id = $1 AND state = 'current' AND version <> $2",
    .nparams = 2,
    .types = {STORE_OID_UUID, STORE_OID_INT4},
    .ncols = 0,
};

static const struct store_stmt ok_promote = {
    .name = "coffer_ok_promote",
    .sql = "UPDATE coffer.org_keys SET state = 'current' WHERE org_id = $1 AND version = $2",
    .nparams = 2,
    .types = {STORE_OID_UUID, STORE_OID_INT4},
    .ncols = 0,
};

/* A destroyed key is gone from every token: nothing may bring its row back. */
static const struct store_stmt ok_set_state = {
    .name = "coffer_ok_set_state",
    .sql = "UPDATE coffer.org_keys SET state = $3, "
           "retired_at = CASE WHEN $3 = 'retired' THEN coalesce(retired_at, now()) "
           "ELSE retired_at END, "
           "destroyed_at = CASE WHEN $3 = 'destroyed' THEN coalesce(destroyed_at, now()) "
           "ELSE destroyed_at END "
           "WHERE org_id = $1 AND version = $2 AND (state <> 'destroyed' OR $3 = 'destroyed')",
    .nparams = 3,
    .types = {STORE_OID_UUID, STORE_OID_INT4, STORE_OID_TEXT},
    .ncols = 0,
};

const struct store_stmt *const store_stmts_org_keys[] = {
    &ok_insert, &ok_current,    &ok_get,    &ok_list,    &ok_rewrap,    &ok_stale,
    &ok_lock,   &ok_count_refs, &ok_demote, &ok_promote, &ok_set_state, NULL,
};

static enum coffer_err ok_from_row(const PGresult *res, int row, struct coffer_store_org_key *out)
{
    enum coffer_err r;

    memset(out, 0, sizeof(*out));
    if ((r = store_col_uuid(res, row, 0, "coffer.org_keys.id", &out->id)) != COFFER_OK ||
        (r = store_col_uuid(res, row, 1, "coffer.org_keys.org_id", &out->org_id)) != COFFER_OK ||
        (r = store_col_u32(res, row, 2, "coffer.org_keys.version", 1, &out->version)) !=
            COFFER_OK ||
        (r = store_col_u32(res, row, 3, "coffer.org_keys.mk_version", 1, &out->mk_version)) !=
            COFFER_OK ||
        (r = store_col_mech(res, row, 4, "coffer.org_keys.wrap_mech", COFFER_MECH_WRAP,
                            out->wrap_mech)) != COFFER_OK ||
        (r = store_col_bytea_range(res, row, 5, "coffer.org_keys.wrapped", out->wrapped,
                                   WRAPPED_MIN, COFFER_WRAPPED_MAX, &out->wrapped_len)) !=
            COFFER_OK ||
        (r = store_col_bytea_exact(res, row, 6, "coffer.org_keys.kcv", out->kcv, COFFER_KCV_LEN)) !=
            COFFER_OK ||
        (r = store_col_state(res, row, 7, "coffer.org_keys.state", &out->state)) != COFFER_OK) {
        memset(out, 0, sizeof(*out));
        return r;
    }
    return COFFER_OK;
}

/* Runs a statement that returns at most one org key row of org_id. */
static enum coffer_err ok_one(struct coffer_store *s, const struct store_stmt *st,
                              const struct store_params *p, const struct coffer_uuid *org_id,
                              const char *what, struct coffer_store_org_key *out)
{
    PGresult *res = NULL;
    enum coffer_err r;

    memset(out, 0, sizeof(*out));
    if ((r = store_exec(s, st, p, what, &res)) != COFFER_OK) {
        return r;
    }
    if ((r = store_one_row(res, what)) == COFFER_OK &&
        (r = ok_from_row(res, 0, out)) == COFFER_OK && !coffer_uuid_equal(&out->org_id, org_id)) {
        memset(out, 0, sizeof(*out));
        r = coffer_err_set(COFFER_E_INTEGRITY, "coffer.org_keys.org_id: row does not match the "
                                               "query");
    }
    PQclear(res);
    return r;
}

/* Reads every row of res into a new array. */
static enum coffer_err ok_rows(const PGresult *res, struct coffer_store_org_key **out, size_t *n)
{
    struct coffer_store_org_key *rows = NULL;
    int count = PQntuples(res);
    int i;
    enum coffer_err r;

    *out = NULL;
    *n = 0;
    if (count == 0) {
        return COFFER_OK;
    }
    rows = coffer_calloc((size_t)count, sizeof(*rows));
    if (rows == NULL) {
        return coffer_err_set(COFFER_E_NOMEM, "listing %d org keys", count);
    }
    for (i = 0; i < count; i++) {
        if ((r = ok_from_row(res, i, &rows[i])) != COFFER_OK) {
            coffer_free(rows);
            return r;
        }
    }
    *out = rows;
    *n = (size_t)count;
    return COFFER_OK;
}

static enum coffer_err check_wrapped(const char *mech, size_t len)
{
    if (strncmp(mech, COFFER_MECH_WRAP, COFFER_MECH_NAME_MAX + 1) != 0) {
        return coffer_err_set(COFFER_E_INVALID, "org key: wrap mechanism must be %s",
                              COFFER_MECH_WRAP);
    }
    if (len < WRAPPED_MIN || len > COFFER_WRAPPED_MAX) {
        return coffer_err_set(COFFER_E_INVALID, "org key: wrapped key of %zu bytes, want %d..%d",
                              len, WRAPPED_MIN, COFFER_WRAPPED_MAX);
    }
    return COFFER_OK;
}

enum coffer_err coffer_store_org_key_insert(struct coffer_store *s, struct coffer_store_org_key *ok)
{
    struct store_params p = {0};
    struct coffer_uuid id;
    PGresult *res = NULL;
    enum coffer_err r;

    if ((r = store_check_version(ok->version, "org key")) != COFFER_OK ||
        (r = store_check_version(ok->mk_version, "org key's master key")) != COFFER_OK ||
        (r = check_wrapped(ok->wrap_mech, ok->wrapped_len)) != COFFER_OK) {
        return r;
    }
    store_param_uuid(&p, &ok->org_id);
    store_param_int4(&p, (int32_t)ok->version);
    store_param_int4(&p, (int32_t)ok->mk_version);
    store_param_text(&p, COFFER_MECH_WRAP);
    store_param_bytea(&p, ok->wrapped, ok->wrapped_len);
    store_param_bytea(&p, ok->kcv, COFFER_KCV_LEN);
    if ((r = store_exec(s, &ok_insert, &p, "inserting org key", &res)) != COFFER_OK) {
        if (r == COFFER_E_EXISTS) {
            r = coffer_err_set(COFFER_E_EXISTS, "org key version %" PRIu32 " already exists",
                               ok->version);
        } else if (store_sqlstate_is(s, "23503")) {
            r = coffer_err_set(COFFER_E_NOT_FOUND,
                               "inserting org key: no such org or master key version %" PRIu32,
                               ok->mk_version);
        }
        return r;
    }
    if ((r = store_one_row(res, "inserted org key")) == COFFER_OK &&
        (r = store_col_uuid(res, 0, 0, "coffer.org_keys.id", &id)) == COFFER_OK) {
        ok->id = id;
        ok->state = COFFER_KEY_ACTIVE;
    }
    PQclear(res);
    return r;
}

struct make_current_arg {
    const struct coffer_uuid *org_id;
    uint32_t version;
};

/* Demote-then-promote: the unique index on 'current' is checked per statement. */
static enum coffer_err make_current_tx(struct coffer_store *s, void *varg)
{
    const struct make_current_arg *a = varg;
    struct coffer_store_org_key row;
    struct store_params p = {0};
    PGresult *res = NULL;
    enum coffer_err r;

    store_param_uuid(&p, a->org_id);
    store_param_int4(&p, (int32_t)a->version);
    if ((r = store_exec(s, &ok_lock, &p, "locking org key", &res)) != COFFER_OK) {
        return r;
    }
    PQclear(res);
    res = NULL;
    if ((r = ok_one(s, &ok_get, &p, a->org_id, "org key", &row)) != COFFER_OK) {
        if (r == COFFER_E_NOT_FOUND) {
            r = coffer_err_set(COFFER_E_NOT_FOUND, "org key version %" PRIu32 " not found",
                               a->version);
        }
        return r;
    }
    if (row.state == COFFER_KEY_CURRENT) {
        return COFFER_OK;
    }
    if (row.state != COFFER_KEY_ACTIVE) {
        return coffer_err_set(COFFER_E_STATE, "org key version %" PRIu32 " is %s", a->version,
                              coffer_key_state_str(row.state));
    }
    if ((r = store_exec(s, &ok_demote, &p, "demoting the current org key", &res)) != COFFER_OK) {
        return r;
    }
    PQclear(res);
    res = NULL;
    if ((r = store_exec(s, &ok_promote, &p, "making the org key current", &res)) != COFFER_OK) {
        return r;
    }
    if (store_affected(res) != 1) {
        r = coffer_err_set(COFFER_E_CONFLICT,
                           "org key version %" PRIu32 " changed while it was made current",
                           a->version);
    }
    PQclear(res);
    return r;
}

enum coffer_err coffer_store_org_key_make_current(struct coffer_store *s,
                                                  const struct coffer_uuid *org_id,
                                                  uint32_t version)
{
    struct make_current_arg a = {org_id, version};
    enum coffer_err r;

    if ((r = store_check_version(version, "org key")) != COFFER_OK) {
        return r;
    }
    return store_in_tx(s, make_current_tx, &a, "making org key current");
}

enum coffer_err coffer_store_org_key_current(struct coffer_store *s,
                                             const struct coffer_uuid *org_id,
                                             struct coffer_store_org_key *out)
{
    struct store_params p = {0};
    enum coffer_err r;

    store_param_uuid(&p, org_id);
    r = ok_one(s, &ok_current, &p, org_id, "current org key", out);
    if (r == COFFER_E_NOT_FOUND) {
        r = coffer_err_set(COFFER_E_NOT_FOUND, "the org has no current org key");
    }
    return r;
}

enum coffer_err coffer_store_org_key_get(struct coffer_store *s, const struct coffer_uuid *org_id,
                                         uint32_t version, struct coffer_store_org_key *out)
{
    struct store_params p = {0};
    enum coffer_err r;

    memset(out, 0, sizeof(*out));
    if ((r = store_check_version(version, "org key")) != COFFER_OK) {
        return r;
    }
    store_param_uuid(&p, org_id);
    store_param_int4(&p, (int32_t)version);
    r = ok_one(s, &ok_get, &p, org_id, "org key", out);
    if (r == COFFER_E_NOT_FOUND) {
        r = coffer_err_set(COFFER_E_NOT_FOUND, "org key version %" PRIu32 " not found", version);
    }
    return r;
}

enum coffer_err coffer_store_org_key_list(struct coffer_store *s, const struct coffer_uuid *org_id,
                                          struct coffer_store_org_key **out, size_t *n)
{
    struct store_params p = {0};
    PGresult *res = NULL;
    enum coffer_err r;
    size_t i;

    *out = NULL;
    *n = 0;
    if (org_id != NULL) {
        store_param_uuid(&p, org_id);
    } else {
        store_param_null(&p);
    }
    if ((r = store_exec(s, &ok_list, &p, "listing org keys", &res)) != COFFER_OK) {
        return r;
    }
    r = ok_rows(res, out, n);
    PQclear(res);
    for (i = 0; r == COFFER_OK && org_id != NULL && i < *n; i++) {
        if (!coffer_uuid_equal(&(*out)[i].org_id, org_id)) {
            r = coffer_err_set(COFFER_E_INTEGRITY,
                               "coffer.org_keys.org_id: row does not match the query");
        }
    }
    if (r != COFFER_OK) {
        coffer_free(*out);
        *out = NULL;
        *n = 0;
    }
    return r;
}

enum coffer_err coffer_store_org_key_rewrap(struct coffer_store *s,
                                            const struct coffer_store_org_key *old,
                                            uint32_t new_mk_version, const unsigned char *wrapped,
                                            size_t wrapped_len, bool *won)
{
    struct store_params p = {0};
    PGresult *res = NULL;
    enum coffer_err r;
    long affected;

    *won = false;
    if ((r = store_check_version(old->version, "org key")) != COFFER_OK ||
        (r = store_check_version(old->mk_version, "org key's old master key")) != COFFER_OK ||
        (r = store_check_version(new_mk_version, "org key's new master key")) != COFFER_OK ||
        (r = check_wrapped(COFFER_MECH_WRAP, wrapped_len)) != COFFER_OK ||
        (r = check_wrapped(COFFER_MECH_WRAP, old->wrapped_len)) != COFFER_OK) {
        return r;
    }
    if (wrapped == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "org key rewrap: no wrapped key");
    }
    store_param_uuid(&p, &old->org_id);
    store_param_int4(&p, (int32_t)old->version);
    store_param_int4(&p, (int32_t)new_mk_version);
    store_param_bytea(&p, wrapped, wrapped_len);
    store_param_int4(&p, (int32_t)old->mk_version);
    store_param_bytea(&p, old->wrapped, old->wrapped_len);
    if ((r = store_exec(s, &ok_rewrap, &p, "rewrapping org key", &res)) != COFFER_OK) {
        if (store_sqlstate_is(s, "23503")) {
            r = coffer_err_set(COFFER_E_NOT_FOUND,
                               "rewrapping org key: no master key version %" PRIu32,
                               new_mk_version);
        }
        return r;
    }
    affected = store_affected(res);
    PQclear(res);
    if (affected < 0 || affected > 1) {
        return coffer_err_set(COFFER_E_INTEGRITY, "rewrapping org key: %ld rows changed", affected);
    }
    *won = affected == 1;
    return COFFER_OK;
}

enum coffer_err coffer_store_org_key_stale(struct coffer_store *s, uint32_t mk_version,
                                           const struct coffer_uuid *after, size_t limit,
                                           struct coffer_store_org_key **out, size_t *n)
{
    struct store_params p = {0};
    PGresult *res = NULL;
    enum coffer_err r;

    *out = NULL;
    *n = 0;
    if ((r = store_check_version(mk_version, "master key")) != COFFER_OK) {
        return r;
    }
    if (limit == 0) {
        return COFFER_OK;
    }
    store_param_int4(&p, (int32_t)mk_version);
    if (after != NULL) {
        store_param_uuid(&p, after);
    } else {
        store_param_null(&p);
    }
    store_param_int8(&p, limit > INT32_MAX ? INT32_MAX : (int64_t)limit);
    if ((r = store_exec(s, &ok_stale, &p, "listing org keys to rewrap", &res)) != COFFER_OK) {
        return r;
    }
    r = ok_rows(res, out, n);
    PQclear(res);
    return r;
}

enum coffer_err coffer_store_org_key_lock(struct coffer_store *s, const struct coffer_uuid *org_id,
                                          uint32_t version)
{
    struct store_params p = {0};
    PGresult *res = NULL;
    enum coffer_err r;

    if ((r = store_require_tx(s, "locking org key")) != COFFER_OK ||
        (r = store_check_version(version, "org key")) != COFFER_OK) {
        return r;
    }
    store_param_uuid(&p, org_id);
    store_param_int4(&p, (int32_t)version);
    if ((r = store_exec(s, &ok_lock, &p, "locking org key", &res)) != COFFER_OK) {
        return r;
    }
    if (PQntuples(res) == 0) {
        r = coffer_err_set(COFFER_E_NOT_FOUND, "org key version %" PRIu32 " not found", version);
    }
    PQclear(res);
    return r;
}

enum coffer_err coffer_store_org_key_count_refs(struct coffer_store *s,
                                                const struct coffer_uuid *org_id, uint32_t version,
                                                int64_t *out)
{
    struct store_params p = {0};
    PGresult *res = NULL;
    enum coffer_err r;

    *out = 0;
    if ((r = store_check_version(version, "org key")) != COFFER_OK) {
        return r;
    }
    store_param_uuid(&p, org_id);
    store_param_int4(&p, (int32_t)version);
    if ((r = store_exec(s, &ok_count_refs, &p, "counting credential versions under an org key",
                        &res)) != COFFER_OK) {
        return r;
    }
    if ((r = store_one_row(res, "count(credential_versions)")) == COFFER_OK) {
        r = store_col_count(res, 0, 0, "count(coffer.credential_versions)", out);
    }
    PQclear(res);
    return r;
}

enum coffer_err coffer_store_org_key_set_state(struct coffer_store *s,
                                               const struct coffer_uuid *org_id, uint32_t version,
                                               enum coffer_key_state state)
{
    struct store_params p = {0};
    struct coffer_store_org_key row;
    PGresult *res = NULL;
    enum coffer_err r;
    long affected;

    if ((r = store_check_version(version, "org key")) != COFFER_OK) {
        return r;
    }
    switch (state) {
    case COFFER_KEY_CURRENT:
        /* Becoming current also demotes the previous one; only make_current does both. */
        return coffer_store_org_key_make_current(s, org_id, version);
    case COFFER_KEY_ACTIVE:
    case COFFER_KEY_RETIRED:
    case COFFER_KEY_DESTROYED:
        break;
    default:
        return coffer_err_set(COFFER_E_INVALID, "unknown key state %d", (int)state);
    }
    store_param_uuid(&p, org_id);
    store_param_int4(&p, (int32_t)version);
    store_param_text(&p, coffer_key_state_str(state));
    if ((r = store_exec(s, &ok_set_state, &p, "setting org key state", &res)) != COFFER_OK) {
        return r;
    }
    affected = store_affected(res);
    PQclear(res);
    if (affected == 1) {
        return COFFER_OK;
    }
    if ((r = coffer_store_org_key_get(s, org_id, version, &row)) != COFFER_OK) {
        return r;
    }
    return coffer_err_set(COFFER_E_STATE, "org key version %" PRIu32 " is %s and cannot become %s",
                          version, coffer_key_state_str(row.state), coffer_key_state_str(state));
}

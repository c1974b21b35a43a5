/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Master key rows: one row per token object coffer-mk-v<n>, holding its
 * label, key check value and lifecycle state. At most one row is current
 * (a partial unique index enforces it); moving "current" is an update pair
 * inside one transaction.
 *
 * The rows describe keys; they never hold key material, and this file must
 * never accept a label that does not match its version.
 */
#include "coffer/store.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "coffer/mem.h"
#include "store/store_int.h"

#define MK_COLS "version, label, kcv, state"

static const struct store_stmt mk_insert = {
    .name = "coffer_mk_insert",
    .sql =
        "INSERT INTO coffer.master_keys (version, label, kcv, state) VALUES ($1, $2, $3, 'active')",
    .nparams = 3,
    .types = {STORE_OID_INT4, STORE_OID_TEXT, STORE_OID_BYTEA},
    .ncols = 0,
};

static const struct store_stmt mk_current = {
    .name = "coffer_mk_current",
    .sql = "SELECT " MK_COLS " FROM coffer.master_keys WHERE state = 'current'",
    .nparams = 0,
    .ncols = 4,
};

static const struct store_stmt mk_get = {
    .name = "coffer_mk_get",
    .sql = "SELECT " MK_COLS " FROM coffer.master_keys WHERE version = $1",
    .nparams = 1,
    .types = {STORE_OID_INT4},
    .ncols = 4,
};

static const struct store_stmt mk_max = {
    .name = "coffer_mk_max",
    .sql = "SELECT max(version) FROM coffer.master_keys",
    .nparams = 0,
    .ncols = 1,
};

static const struct store_stmt mk_list = {
    .name = "coffer_mk_list",
    .sql = "SELECT " MK_COLS " FROM coffer.master_keys ORDER BY version",
    .nparams = 0,
    .ncols = 4,
};

static const struct store_stmt mk_lock = {
    .name = "coffer_mk_lock",
    .sql = "SELECT state FROM coffer.master_keys WHERE version = $1 FOR UPDATE",
    .nparams = 1,
    .types = {STORE_OID_INT4},
    .ncols = 1,
};

/* A destroyed org key needs no master key to unwrap it, so it is no reference. */
static const struct store_stmt mk_count_refs = {
    .name = "coffer_mk_count_refs",
    .sql = "SELECT count(*) FROM coffer.org_keys WHERE mk_version = $1 AND state <> 'destroyed'",
    .nparams = 1,
    .types = {STORE_OID_INT4},
    .ncols = 1,
};

static const struct store_stmt mk_demote = {
    .name = "coffer_mk_demote",
    .sql =
        "UPDATE coffer.master_keys SET state = 'active' WHERE state = 'current' AND version <> $1",
    .nparams = 1,
    .types = {STORE_OID_INT4},
    .ncols = 0,
};

static const struct store_stmt mk_promote = {
    .name = "coffer_mk_promote",
    .sql = "UPDATE coffer.master_keys SET state = 'current' WHERE version = $1",
    .nparams = 1,
    .types = {STORE_OID_INT4},
    .ncols = 0,
};

/* A destroyed key's token object is gone: nothing may bring its row back. */
static const struct store_stmt mk_set_state = {
    .name = "coffer_mk_set_state",
    .sql = "UPDATE coffer.master_keys SET state = $2, "
           "retired_at = CASE WHEN $2 = 'retired' THEN coalesce(retired_at, now()) "
           "ELSE retired_at END, "
           "destroyed_at = CASE WHEN $2 = 'destroyed' THEN coalesce(destroyed_at, now()) "
           "ELSE destroyed_at END "
           "WHERE version = $1 AND (state <> 'destroyed' OR $2 = 'destroyed')",
    .nparams = 2,
    .types = {STORE_OID_INT4, STORE_OID_TEXT},
    .ncols = 0,
};

const struct store_stmt *const store_stmts_master_keys[] = {
    &mk_insert,     &mk_current, &mk_get,     &mk_max,       &mk_list, &mk_lock,
    &mk_count_refs, &mk_demote,  &mk_promote, &mk_set_state, NULL,
};

static enum coffer_err mk_from_row(const PGresult *res, int row, struct coffer_store_mk *out)
{
    char want[sizeof(out->label)];
    enum coffer_err r;

    memset(out, 0, sizeof(*out));
    if ((r = store_col_u32(res, row, 0, "coffer.master_keys.version", 1, &out->version)) !=
            COFFER_OK ||
        (r = store_col_text(res, row, 1, "coffer.master_keys.label", out->label,
                            sizeof(out->label))) != COFFER_OK ||
        (r = store_col_bytea_exact(res, row, 2, "coffer.master_keys.kcv", out->kcv,
                                   COFFER_KCV_LEN)) != COFFER_OK ||
        (r = store_col_state(res, row, 3, "coffer.master_keys.state", &out->state)) != COFFER_OK) {
        memset(out, 0, sizeof(*out));
        return r;
    }
    snprintf(want, sizeof(want), "coffer-mk-v%" PRIu32, out->version);
    if (strcmp(out->label, want) != 0) {
        memset(out, 0, sizeof(*out));
        return coffer_err_set(COFFER_E_INTEGRITY,
                              "coffer.master_keys.label: does not name its "
                              "version (want %s)",
                              want);
    }
    return COFFER_OK;
}

/* Runs a statement that returns one master key row. */
static enum coffer_err mk_one(struct coffer_store *s, const struct store_stmt *st,
                              const struct store_params *p, const char *what,
                              struct coffer_store_mk *out)
{
    PGresult *res = NULL;
    enum coffer_err r;

    memset(out, 0, sizeof(*out));
    if ((r = store_exec(s, st, p, what, &res)) != COFFER_OK) {
        return r;
    }
    if ((r = store_one_row(res, what)) == COFFER_OK) {
        r = mk_from_row(res, 0, out);
    }
    PQclear(res);
    return r;
}

enum coffer_err coffer_store_mk_insert(struct coffer_store *s, const struct coffer_store_mk *mk)
{
    struct store_params p = {0};
    char label[sizeof(mk->label)];
    PGresult *res = NULL;
    enum coffer_err r;

    if ((r = store_check_version(mk->version, "master key")) != COFFER_OK) {
        return r;
    }
    snprintf(label, sizeof(label), "coffer-mk-v%" PRIu32, mk->version);
    if (mk->label[0] != '\0' && strncmp(mk->label, label, sizeof(mk->label)) != 0) {
        return coffer_err_set(COFFER_E_INVALID, "master key label must be %s", label);
    }
    store_param_int4(&p, (int32_t)mk->version);
    store_param_text(&p, label);
    store_param_bytea(&p, mk->kcv, COFFER_KCV_LEN);
    if ((r = store_exec(s, &mk_insert, &p, "inserting master key", &res)) != COFFER_OK) {
        if (r == COFFER_E_EXISTS) {
            r = coffer_err_set(COFFER_E_EXISTS, "master key version %" PRIu32 " already exists",
                               mk->version);
        }
        return r;
    }
    PQclear(res);
    return COFFER_OK;
}

/* Demote-then-promote: the unique index on 'current' is checked per statement. */
static enum coffer_err make_current_tx(struct coffer_store *s, void *arg)
{
    uint32_t version = *(const uint32_t *)arg;
    struct coffer_store_mk row;
    struct store_params p = {0};
    PGresult *res = NULL;
    enum coffer_err r;

    store_param_int4(&p, (int32_t)version);
    if ((r = store_exec(s, &mk_lock, &p, "locking master key", &res)) != COFFER_OK) {
        return r;
    }
    PQclear(res);
    res = NULL;
    if ((r = mk_one(s, &mk_get, &p, "master key", &row)) != COFFER_OK) {
        if (r == COFFER_E_NOT_FOUND) {
            r = coffer_err_set(COFFER_E_NOT_FOUND, "master key version %" PRIu32 " not found",
                               version);
        }
        return r;
    }
    if (row.state == COFFER_KEY_CURRENT) {
        return COFFER_OK;
    }
    if (row.state != COFFER_KEY_ACTIVE) {
        return coffer_err_set(COFFER_E_STATE, "master key version %" PRIu32 " is %s", version,
                              coffer_key_state_str(row.state));
    }
    if ((r = store_exec(s, &mk_demote, &p, "demoting the current master key", &res)) != COFFER_OK) {
        return r;
    }
    PQclear(res);
    res = NULL;
    if ((r = store_exec(s, &mk_promote, &p, "making the master key current", &res)) != COFFER_OK) {
        return r;
    }
    if (store_affected(res) != 1) {
        r = coffer_err_set(COFFER_E_CONFLICT,
                           "master key version %" PRIu32 " changed while it was made current",
                           version);
    }
    PQclear(res);
    return r;
}

enum coffer_err coffer_store_mk_make_current(struct coffer_store *s, uint32_t version)
{
    enum coffer_err r;

    if ((r = store_check_version(version, "master key")) != COFFER_OK) {
        return r;
    }
    return store_in_tx(s, make_current_tx, &version, "making master key current");
}

enum coffer_err coffer_store_mk_current(struct coffer_store *s, struct coffer_store_mk *out)
{
    struct store_params p = {0};
    enum coffer_err r = mk_one(s, &mk_current, &p, "current master key", out);

    if (r == COFFER_E_NOT_FOUND) {
        r = coffer_err_set(COFFER_E_NOT_FOUND, "there is no current master key");
    }
    return r;
}

enum coffer_err coffer_store_mk_get(struct coffer_store *s, uint32_t version,
                                    struct coffer_store_mk *out)
{
    struct store_params p = {0};
    enum coffer_err r;

    memset(out, 0, sizeof(*out));
    if ((r = store_check_version(version, "master key")) != COFFER_OK) {
        return r;
    }
    store_param_int4(&p, (int32_t)version);
    r = mk_one(s, &mk_get, &p, "master key", out);
    if (r == COFFER_E_NOT_FOUND) {
        r = coffer_err_set(COFFER_E_NOT_FOUND, "master key version %" PRIu32 " not found", version);
    }
    return r;
}

enum coffer_err coffer_store_mk_max_version(struct coffer_store *s, uint32_t *out)
{
    struct store_params p = {0};
    PGresult *res = NULL;
    enum coffer_err r;

    *out = 0;
    if ((r = store_exec(s, &mk_max, &p, "reading the highest master key version", &res)) !=
        COFFER_OK) {
        return r;
    }
    if ((r = store_one_row(res, "max(master_keys.version)")) == COFFER_OK) {
        r = store_col_u32_or_zero(res, 0, 0, "coffer.master_keys.version", out);
    }
    PQclear(res);
    return r;
}

enum coffer_err coffer_store_mk_list(struct coffer_store *s, struct coffer_store_mk **out,
                                     size_t *n)
{
    struct store_params p = {0};
    struct coffer_store_mk *rows = NULL;
    PGresult *res = NULL;
    enum coffer_err r;
    int count;
    int i;

    *out = NULL;
    *n = 0;
    if ((r = store_exec(s, &mk_list, &p, "listing master keys", &res)) != COFFER_OK) {
        return r;
    }
    count = PQntuples(res);
    if (count > 0) {
        rows = coffer_calloc((size_t)count, sizeof(*rows));
        if (rows == NULL) {
            r = coffer_err_set(COFFER_E_NOMEM, "listing %d master keys", count);
            goto out;
        }
    }
    for (i = 0; i < count; i++) {
        if ((r = mk_from_row(res, i, &rows[i])) != COFFER_OK) {
            goto out;
        }
    }
    *out = rows;
    *n = (size_t)count;
    rows = NULL;
out:
    coffer_free(rows);
    PQclear(res);
    return r;
}

enum coffer_err coffer_store_mk_lock(struct coffer_store *s, uint32_t version)
{
    struct store_params p = {0};
    PGresult *res = NULL;
    enum coffer_err r;

    if ((r = store_require_tx(s, "locking master key")) != COFFER_OK ||
        (r = store_check_version(version, "master key")) != COFFER_OK) {
        return r;
    }
    store_param_int4(&p, (int32_t)version);
    if ((r = store_exec(s, &mk_lock, &p, "locking master key", &res)) != COFFER_OK) {
        return r;
    }
    if (PQntuples(res) == 0) {
        r = coffer_err_set(COFFER_E_NOT_FOUND, "master key version %" PRIu32 " not found", version);
    }
    PQclear(res);
    return r;
}

enum coffer_err coffer_store_mk_count_refs(struct coffer_store *s, uint32_t version, int64_t *out)
{
    struct store_params p = {0};
    PGresult *res = NULL;
    enum coffer_err r;

    *out = 0;
    if ((r = store_check_version(version, "master key")) != COFFER_OK) {
        return r;
    }
    store_param_int4(&p, (int32_t)version);
    if ((r = store_exec(s, &mk_count_refs, &p, "counting org keys under a master key", &res)) !=
        COFFER_OK) {
        return r;
    }
    if ((r = store_one_row(res, "count(org_keys)")) == COFFER_OK) {
        r = store_col_count(res, 0, 0, "count(coffer.org_keys)", out);
    }
    PQclear(res);
    return r;
}

enum coffer_err coffer_store_mk_set_state(struct coffer_store *s, uint32_t version,
                                          enum coffer_key_state state)
{
    struct store_params p = {0};
    struct coffer_store_mk row;
    PGresult *res = NULL;
    enum coffer_err r;
    long affected;

    if ((r = store_check_version(version, "master key")) != COFFER_OK) {
        return r;
    }
    switch (state) {
    case COFFER_KEY_CURRENT:
        /* Becoming current also demotes the previous one; only make_current does both. */
        return coffer_store_mk_make_current(s, version);
    case COFFER_KEY_ACTIVE:
    case COFFER_KEY_RETIRED:
    case COFFER_KEY_DESTROYED:
        break;
    default:
        return coffer_err_set(COFFER_E_INVALID, "unknown key state %d", (int)state);
    }
    store_param_int4(&p, (int32_t)version);
    store_param_text(&p, coffer_key_state_str(state));
    if ((r = store_exec(s, &mk_set_state, &p, "setting master key state", &res)) != COFFER_OK) {
        return r;
    }
    affected = store_affected(res);
    PQclear(res);
    if (affected == 1) {
        return COFFER_OK;
    }
    if ((r = coffer_store_mk_get(s, version, &row)) != COFFER_OK) {
        return r;
    }
    return coffer_err_set(COFFER_E_STATE,
                          "master key version %" PRIu32 " is %s and cannot become %s", version,
                          coffer_key_state_str(row.state), coffer_key_state_str(state));
}

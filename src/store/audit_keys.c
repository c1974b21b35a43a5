/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Audit signing key rows (coffer.audit_signing_keys): one row per P-256 key
 * pair "coffer-audit-v<n>" in the token, holding its label, the
 * SubjectPublicKeyInfo DER of its public key and whether it is the current
 * signer. At most one row is current; making a new key current retires the
 * old one in the same transaction, retire first, so the unique index on the
 * current row never sees two.
 *
 * The rows hold public keys only; this file never accepts a label that does
 * not name its version, and checks every row it reads back.
 */
#include "coffer/store.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "coffer/mem.h"
#include "store/store_int.h"

#define AK_COLS "version, label, public_key, state"
#define AK_NCOLS 4

static const struct store_stmt ak_retire = {
    .name = "coffer_audit_key_retire",
    .sql = "UPDATE coffer.audit_signing_keys SET state = 'retired', retired_at = clock_timestamp() "
           "WHERE state = 'current'",
    .nparams = 0,
    .ncols = 0,
};

static const struct store_stmt ak_insert = {
    .name = "coffer_audit_key_insert",
    .sql = "INSERT INTO coffer.audit_signing_keys (version, label, public_key, state) "
           "VALUES ($1, $2, $3, 'current')",
    .nparams = 3,
    .types = {STORE_OID_INT4, STORE_OID_TEXT, STORE_OID_BYTEA},
    .ncols = 0,
};

static const struct store_stmt ak_current = {
    .name = "coffer_audit_key_current",
    .sql = "SELECT " AK_COLS " FROM coffer.audit_signing_keys WHERE state = 'current'",
    .nparams = 0,
    .ncols = AK_NCOLS,
};

static const struct store_stmt ak_list = {
    .name = "coffer_audit_key_list",
    .sql = "SELECT " AK_COLS " FROM coffer.audit_signing_keys ORDER BY version",
    .nparams = 0,
    .ncols = AK_NCOLS,
};

const struct store_stmt *const store_stmts_audit_keys[] = {&ak_retire, &ak_insert, &ak_current,
                                                           &ak_list, NULL};

/* "coffer-audit-v<version>" into out. */
static void label_of(uint32_t version, char out[65])
{
    snprintf(out, 65, COFFER_STORE_AUDIT_KEY_PREFIX "%" PRIu32, version);
}

static enum coffer_err ak_from_row(const PGresult *res, int row, struct coffer_store_audit_key *out)
{
    char want[sizeof(out->label)];
    enum coffer_err r;

    memset(out, 0, sizeof(*out));
    if ((r = store_col_u32(res, row, 0, "coffer.audit_signing_keys.version", 1, &out->version)) !=
            COFFER_OK ||
        (r = store_col_text(res, row, 1, "coffer.audit_signing_keys.label", out->label,
                            sizeof(out->label))) != COFFER_OK ||
        (r = store_col_bytea_range(res, row, 2, "coffer.audit_signing_keys.public_key",
                                   out->public_key, 1, sizeof(out->public_key),
                                   &out->public_key_len)) != COFFER_OK ||
        (r = store_col_state(res, row, 3, "coffer.audit_signing_keys.state", &out->state)) !=
            COFFER_OK) {
        goto out;
    }
    label_of(out->version, want);
    if (strcmp(out->label, want) != 0) {
        r = coffer_err_set(COFFER_E_INTEGRITY,
                           "coffer.audit_signing_keys.label: does not name its version (want %s)",
                           want);
        goto out;
    }
    if (out->state != COFFER_KEY_CURRENT && out->state != COFFER_KEY_RETIRED) {
        r = coffer_err_set(COFFER_E_INTEGRITY,
                           "coffer.audit_signing_keys.state: '%s' is not current or retired",
                           coffer_key_state_str(out->state));
    }
out:
    if (r != COFFER_OK) {
        memset(out, 0, sizeof(*out));
    }
    return r;
}

struct insert_args {
    uint32_t version;
    const char *label;
    const unsigned char *spki;
    size_t spki_len;
};

static enum coffer_err insert_tx(struct coffer_store *s, void *arg)
{
    const struct insert_args *a = arg;
    struct store_params none = {0};
    struct store_params p = {0};
    PGresult *res = NULL;
    enum coffer_err r;

    if ((r = store_exec(s, &ak_retire, &none, "retiring the current audit signing key", &res)) !=
        COFFER_OK) {
        return r;
    }
    PQclear(res);
    res = NULL;
    store_param_int4(&p, (int32_t)a->version);
    store_param_text(&p, a->label);
    store_param_bytea(&p, a->spki, a->spki_len);
    r = store_exec(s, &ak_insert, &p, "recording the audit signing key", &res);
    if (r == COFFER_E_EXISTS) {
        r = coffer_err_set(COFFER_E_EXISTS, "audit signing key %s is recorded already", a->label);
    }
    PQclear(res);
    return r;
}

enum coffer_err coffer_store_audit_key_insert(struct coffer_store *s, uint32_t version,
                                              const char *label, const unsigned char *spki,
                                              size_t spki_len)
{
    struct insert_args a = {version, label, spki, spki_len};
    char want[65];
    enum coffer_err r;

    if (s == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "recording an audit signing key: no store");
    }
    if ((r = store_check_version(version, "audit signing key")) != COFFER_OK) {
        return r;
    }
    label_of(version, want);
    if (label == NULL || strcmp(label, want) != 0) {
        return coffer_err_set(COFFER_E_INVALID, "audit signing key label must be %s", want);
    }
    if (spki == NULL || spki_len == 0 || spki_len > COFFER_STORE_SPKI_MAX) {
        return coffer_err_set(COFFER_E_INVALID,
                              "audit signing key %s: public key of %zu bytes, want 1..%d", want,
                              spki_len, COFFER_STORE_SPKI_MAX);
    }
    return store_in_tx(s, insert_tx, &a, "recording the audit signing key");
}

enum coffer_err coffer_store_audit_key_current(struct coffer_store *s, uint32_t *version)
{
    struct coffer_store_audit_key row;
    struct store_params p = {0};
    PGresult *res = NULL;
    enum coffer_err r;

    if (version == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "current audit signing key: no output");
    }
    *version = 0;
    if (s == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "current audit signing key: no store");
    }
    if ((r = store_exec(s, &ak_current, &p, "reading the current audit signing key", &res)) !=
        COFFER_OK) {
        return r;
    }
    r = store_one_row(res, "current audit signing key");
    if (r == COFFER_E_NOT_FOUND) {
        r = coffer_err_set(COFFER_E_NOT_FOUND, "there is no current audit signing key");
    } else if (r == COFFER_OK && (r = ak_from_row(res, 0, &row)) == COFFER_OK) {
        *version = row.version;
    }
    PQclear(res);
    return r;
}

enum coffer_err coffer_store_audit_key_list(struct coffer_store *s,
                                            struct coffer_store_audit_key **out, size_t *n)
{
    struct coffer_store_audit_key *rows = NULL;
    struct store_params p = {0};
    PGresult *res = NULL;
    size_t current = 0;
    enum coffer_err r;
    int count;

    if (out == NULL || n == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "listing audit signing keys: no output");
    }
    *out = NULL;
    *n = 0;
    if (s == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "listing audit signing keys: no store");
    }
    if ((r = store_exec(s, &ak_list, &p, "listing audit signing keys", &res)) != COFFER_OK) {
        return r;
    }
    count = PQntuples(res);
    if (count > 0 && (rows = coffer_calloc((size_t)count, sizeof(*rows))) == NULL) {
        r = coffer_err_set(COFFER_E_NOMEM, "listing %d audit signing keys", count);
        goto out;
    }
    for (int i = 0; i < count; i++) {
        if ((r = ak_from_row(res, i, &rows[i])) != COFFER_OK) {
            goto out;
        }
        current += rows[i].state == COFFER_KEY_CURRENT ? 1 : 0;
    }
    if (current > 1) {
        r = coffer_err_set(COFFER_E_INTEGRITY,
                           "coffer.audit_signing_keys: %zu rows are current, at most one may be",
                           current);
        goto out;
    }
    *out = rows;
    *n = (size_t)count;
    rows = NULL;
out:
    coffer_free(rows);
    PQclear(res);
    return r;
}

/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What the refresh of an OAuth2 credential asks of the database: the
 * provider recorded with a version (sql/013_oauth2.sql), and the lock that
 * lets one refresh at a time run per credential, across every server that
 * shares the database.
 *
 * The lock is a session-level advisory lock, taken outside any transaction
 * and held across the provider's call and the write of the new version:
 * a transaction lock would end with the commit of the event that must go
 * on record before the refresh token leaves Coffer. A connection that dies
 * releases it. Its key is (class, hash of the credential id): two
 * credentials that share a hash only wait for each other. The provider is
 * metadata, never a value; nothing here reads a ciphertext.
 */
#include "coffer/store.h"

#include <string.h>

#include "store/store_int.h"

/* The advisory lock class of refreshes ("OA"); the audit writers' lock is a single int8 key. */
#define REFRESH_LOCK_CLASS 0x4f41

static const struct store_stmt refresh_lock = {
    .name = "coffer_oauth2_refresh_lock",
    .sql = "SELECT pg_try_advisory_lock($1::int4, hashtext($2::uuid::text))",
    .nparams = 2,
    .types = {STORE_OID_INT4, STORE_OID_UUID},
    .ncols = 1,
};

static const struct store_stmt refresh_unlock = {
    .name = "coffer_oauth2_refresh_unlock",
    .sql = "SELECT pg_advisory_unlock($1::int4, hashtext($2::uuid::text))",
    .nparams = 2,
    .types = {STORE_OID_INT4, STORE_OID_UUID},
    .ncols = 1,
};

/* Only a version without a provider yet is changed: a recorded provider is never moved. */
static const struct store_stmt provider_set = {
    .name = "coffer_oauth2_provider_set",
    .sql = "UPDATE coffer.credential_versions SET oauth2_provider = $4 "
           "WHERE org_id = $1 AND credential_id = $2 AND version = $3 AND oauth2_provider IS NULL",
    .nparams = 4,
    .types = {STORE_OID_UUID, STORE_OID_UUID, STORE_OID_INT4, STORE_OID_TEXT},
};

const struct store_stmt *const store_stmts_oauth2[] = {&refresh_lock, &refresh_unlock,
                                                       &provider_set, NULL};

enum coffer_err coffer_store_refresh_lock_try(struct coffer_store *s,
                                              const struct coffer_uuid *credential_id, bool *got)
{
    struct store_params p = {0};
    PGresult *res = NULL;
    enum coffer_err r;

    if (got != NULL) {
        *got = false;
    }
    if (s == NULL || credential_id == NULL || got == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "refresh lock: missing store or credential");
    }
    if (coffer_store_in_tx(s)) {
        /* Taken inside a transaction it would outlive a rollback unseen; keep it obvious. */
        return coffer_err_set(COFFER_E_STATE, "refresh lock: taken outside a transaction only");
    }
    store_param_int4(&p, REFRESH_LOCK_CLASS);
    store_param_uuid(&p, credential_id);
    if ((r = store_exec(s, &refresh_lock, &p, "taking the refresh lock", &res)) == COFFER_OK &&
        (r = store_one_row(res, "refresh lock")) == COFFER_OK) {
        r = store_col_bool(res, 0, 0, "pg_try_advisory_lock", got);
    }
    PQclear(res);
    return r;
}

enum coffer_err coffer_store_refresh_unlock(struct coffer_store *s,
                                            const struct coffer_uuid *credential_id)
{
    struct store_params p = {0};
    PGresult *res = NULL;
    bool held = false;
    enum coffer_err r;

    if (s == NULL || credential_id == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "refresh unlock: missing store or credential");
    }
    store_param_int4(&p, REFRESH_LOCK_CLASS);
    store_param_uuid(&p, credential_id);
    if ((r = store_exec(s, &refresh_unlock, &p, "releasing the refresh lock", &res)) == COFFER_OK &&
        (r = store_one_row(res, "refresh unlock")) == COFFER_OK &&
        (r = store_col_bool(res, 0, 0, "pg_advisory_unlock", &held)) == COFFER_OK && !held) {
        r = coffer_err_set(COFFER_E_STATE, "refresh unlock: the lock was not held");
    }
    PQclear(res);
    return r;
}

enum coffer_err coffer_store_cred_set_oauth2(struct coffer_store *s,
                                             const struct coffer_uuid *org_id,
                                             const struct coffer_uuid *credential_id,
                                             uint32_t version, const char *provider_json)
{
    struct store_params p = {0};
    PGresult *res = NULL;
    size_t len;
    enum coffer_err r;

    if (s == NULL || org_id == NULL || credential_id == NULL || provider_json == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "oauth2 provider: missing argument");
    }
    len = strnlen(provider_json, COFFER_OAUTH2_PROVIDER_JSON_MAX + 1);
    if (len < 2 || len > COFFER_OAUTH2_PROVIDER_JSON_MAX) {
        return coffer_err_set(COFFER_E_INVALID, "oauth2 provider: %zu bytes; at most %d", len,
                              COFFER_OAUTH2_PROVIDER_JSON_MAX);
    }
    if ((r = store_require_tx(s, "recording an oauth2 provider")) != COFFER_OK ||
        (r = store_check_version(version, "credential version")) != COFFER_OK) {
        return r;
    }
    store_param_uuid(&p, org_id);
    store_param_uuid(&p, credential_id);
    store_param_int4(&p, (int32_t)version);
    store_param_text(&p, provider_json);
    if ((r = store_exec(s, &provider_set, &p, "recording an oauth2 provider", &res)) == COFFER_OK &&
        store_affected(res) != 1) {
        r = coffer_err_set(COFFER_E_NOT_FOUND,
                           "oauth2 provider: no version of this credential without one");
    }
    PQclear(res);
    return r;
}

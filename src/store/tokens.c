/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Bearer tokens in the database: inserting the digest of a new token with
 * the principal it stands for, finding a token by digest, and revoking one.
 *
 * Only digests pass through here (HMAC-SHA256 under a key that never
 * leaves the PKCS#11 token); this file never sees a token, and never puts
 * a digest into an error detail or a log line. Every row read back is
 * checked (principal shape, names, times) before it is handed out, and the
 * expiry and revocation are returned with the database's own clock so that
 * the caller judges them on every request, never from a cache.
 */
#include "coffer/store.h"

#include "coffer/text.h"

#include <stdint.h>
#include <string.h>

#include "store/store_int.h"

#define DESCRIPTION_MAX 1024
#define CREATED_BY_MAX 256
#define REASON_MAX 1024
#define MAC_KEY_MAX 64

/* The columns every statement returns, in the order token_from_row reads them. */
#define TOKEN_COLS                                                                                 \
    "t.id, t.org_id, o.name, t.principal_kind, t.agent_type, t.instance, t.admin, "                \
    "(extract(epoch FROM t.created_at) * 1000000)::int8, "                                         \
    "(extract(epoch FROM t.expires_at) * 1000000)::int8, "                                         \
    "(extract(epoch FROM t.revoked_at) * 1000000)::int8, "                                         \
    "(extract(epoch FROM clock_timestamp()) * 1000000)::int8"
#define TOKEN_NCOLS 11

/* Issue time and expiry come from one reading of the database's clock. */
static const struct store_stmt token_insert = {
    .name = "coffer_token_insert",
    .sql = "WITH n AS (SELECT clock_timestamp() AS at), "
           "t AS (INSERT INTO coffer.tokens (org_id, digest, mac_mech, mac_key, principal_kind, "
           "agent_type, instance, admin, description, created_by, created_at, expires_at) "
           "SELECT $1, $2, 'hmac-sha256', $3, $4, $5, $6, $7, $8, $9, n.at, "
           "n.at + $10::int8 * interval '1 second' FROM n RETURNING *) "
           "SELECT " TOKEN_COLS " FROM t JOIN coffer.orgs o ON o.id = t.org_id",
    .nparams = 10,
    .types = {STORE_OID_UUID, STORE_OID_BYTEA, STORE_OID_TEXT, STORE_OID_TEXT, STORE_OID_TEXT,
              STORE_OID_TEXT, STORE_OID_TEXT, STORE_OID_TEXT, STORE_OID_TEXT, STORE_OID_INT8},
    .ncols = TOKEN_NCOLS,
};

/*
 * One row per digest found, in the order given, ending with the digest's
 * ordinal (from 1). Each digest probes its own token and org (lateral, kept
 * by OFFSET 0): the cached plan guesses ten digests, and for ten a hash join
 * over every token issued would look cheaper than ten index probes.
 */
static const struct store_stmt token_find_many = {
    .name = "coffer_token_find_many",
    .sql = "SELECT " TOKEN_COLS ", q.i FROM unnest($1::bytea[]) WITH ORDINALITY AS q(d, i) "
           "CROSS JOIN LATERAL (SELECT x.* FROM coffer.tokens x WHERE x.digest = q.d "
           "AND x.mac_key = $2 AND x.mac_mech = 'hmac-sha256' OFFSET 0) t "
           "CROSS JOIN LATERAL (SELECT x.name FROM coffer.orgs x WHERE x.id = t.org_id OFFSET 0) o "
           "ORDER BY q.i",
    .nparams = 2,
    .types = {STORE_OID_BYTEA_ARRAY, STORE_OID_TEXT},
    .ncols = TOKEN_NCOLS + 1,
};

static const struct store_stmt token_lock = {
    .name = "coffer_token_lock",
    .sql = "SELECT " TOKEN_COLS " FROM coffer.tokens t JOIN coffer.orgs o ON o.id = t.org_id "
           "WHERE t.id = $2 AND t.org_id = $1 FOR UPDATE OF t",
    .nparams = 2,
    .types = {STORE_OID_UUID, STORE_OID_UUID},
    .ncols = TOKEN_NCOLS,
};

static const struct store_stmt token_revoke = {
    .name = "coffer_token_revoke",
    .sql = "WITH t AS (UPDATE coffer.tokens SET revoked_at = clock_timestamp(), reason = $3 "
           "WHERE id = $2 AND org_id = $1 AND revoked_at IS NULL RETURNING *) "
           "SELECT " TOKEN_COLS " FROM t JOIN coffer.orgs o ON o.id = t.org_id",
    .nparams = 3,
    .types = {STORE_OID_UUID, STORE_OID_UUID, STORE_OID_TEXT},
    .ncols = TOKEN_NCOLS,
};

const struct store_stmt *const store_stmts_tokens[] = {&token_insert, &token_lock, &token_revoke,
                                                       &token_find_many, NULL};

/* ---- Rows ------------------------------------------------------------------------- */

/* A name column that may be NULL (read as ""). */
static enum coffer_err opt_name(const PGresult *res, int row, int col, const char *where,
                                char out[COFFER_NAME_MAX + 1])
{
    const unsigned char *p;
    size_t len;
    enum coffer_err r;

    out[0] = '\0';
    if ((r = store_col_raw(res, row, col, where, STORE_OID_TEXT, &p, &len)) != COFFER_OK) {
        return r;
    }
    if (p == NULL) {
        return COFFER_OK;
    }
    return store_col_name(res, row, col, where, out);
}

static enum coffer_err time_col(const PGresult *res, int row, int col, const char *where,
                                bool nullable, bool *is_null, int64_t *out)
{
    bool null = false;
    enum coffer_err r;

    if ((r = store_col_int8_opt(res, row, col, where, &null, out)) != COFFER_OK) {
        return r;
    }
    if (null && !nullable) {
        return coffer_err_set(COFFER_E_INTEGRITY, "%s: NULL", where);
    }
    if (!null && *out <= 0) {
        return coffer_err_set(COFFER_E_INTEGRITY, "%s: not after 1970", where);
    }
    if (is_null != NULL) {
        *is_null = null;
    }
    return COFFER_OK;
}

/* The principal's columns: kind and the names its kind needs, and no others. */
static enum coffer_err principal_from_row(const PGresult *res, int row,
                                          struct coffer_store_token *out)
{
    char kind[8];
    enum coffer_err r;

    if ((r = store_col_text(res, row, 3, "coffer.tokens.principal_kind", kind, sizeof(kind))) !=
            COFFER_OK ||
        (r = opt_name(res, row, 4, "coffer.tokens.agent_type", out->agent_type)) != COFFER_OK ||
        (r = opt_name(res, row, 5, "coffer.tokens.instance", out->instance)) != COFFER_OK ||
        (r = opt_name(res, row, 6, "coffer.tokens.admin", out->admin_name)) != COFFER_OK) {
        return r;
    }
    if (strcmp(kind, "agent") == 0) {
        if (out->agent_type[0] == '\0' || out->instance[0] == '\0' || out->admin_name[0] != '\0') {
            return coffer_err_set(COFFER_E_INTEGRITY,
                                  "coffer.tokens: an agent token without agent_type and instance, "
                                  "or with an admin");
        }
        out->admin = false;
        return COFFER_OK;
    }
    if (strcmp(kind, "admin") == 0) {
        if (out->admin_name[0] == '\0' || out->agent_type[0] != '\0' || out->instance[0] != '\0') {
            return coffer_err_set(COFFER_E_INTEGRITY,
                                  "coffer.tokens: an admin token without admin, or with an agent "
                                  "type or instance");
        }
        out->admin = true;
        return COFFER_OK;
    }
    return coffer_err_set(COFFER_E_INTEGRITY, "coffer.tokens.principal_kind: unknown kind");
}

/* Row row of a result with the columns TOKEN_COLS. */
static enum coffer_err token_at(const PGresult *res, int row, struct coffer_store_token *out)
{
    bool not_revoked = true;
    enum coffer_err r;

    memset(out, 0, sizeof(*out));
    if ((r = store_col_uuid(res, row, 0, "coffer.tokens.id", &out->id)) != COFFER_OK ||
        (r = store_col_uuid(res, row, 1, "coffer.tokens.org_id", &out->org_id)) != COFFER_OK ||
        (r = store_col_name(res, row, 2, "coffer.orgs.name", out->org)) != COFFER_OK ||
        (r = principal_from_row(res, row, out)) != COFFER_OK ||
        (r = time_col(res, row, 7, "coffer.tokens.created_at", false, NULL, &out->created_us)) !=
            COFFER_OK ||
        (r = time_col(res, row, 8, "coffer.tokens.expires_at", false, NULL, &out->expires_us)) !=
            COFFER_OK ||
        (r = time_col(res, row, 9, "coffer.tokens.revoked_at", true, &not_revoked,
                      &out->revoked_us)) != COFFER_OK ||
        (r = time_col(res, row, 10, "clock_timestamp()", false, NULL, &out->now_us)) != COFFER_OK) {
        goto out;
    }
    out->revoked = !not_revoked;
    /* The table's constraints say so; a row that says otherwise was not written by Coffer. */
    if (out->expires_us <= out->created_us ||
        out->expires_us - out->created_us > (int64_t)COFFER_STORE_TOKEN_TTL_MAX * 1000000) {
        r = coffer_err_set(COFFER_E_INTEGRITY,
                           "coffer.tokens.expires_at: not within 30 days after created_at");
    }
out:
    if (r != COFFER_OK) {
        memset(out, 0, sizeof(*out));
    }
    return r;
}

/* The one row of a result with the columns TOKEN_COLS. */
static enum coffer_err token_from_row(const PGresult *res, struct coffer_store_token *out)
{
    enum coffer_err r;

    memset(out, 0, sizeof(*out));
    if ((r = store_one_row(res, "coffer.tokens")) != COFFER_OK) {
        return r;
    }
    return token_at(res, 0, out);
}

/* ---- Checks ------------------------------------------------------------------------ */

static bool name_ok(const char *s)
{
    return s != NULL && store_name_ok(s, strnlen(s, COFFER_NAME_MAX + 1));
}

static bool mac_key_ok(const char *s)
{
    static const char prefix[] = "coffer-token-mac-v";
    size_t len = s != NULL ? strnlen(s, MAC_KEY_MAX + 1) : 0;
    size_t n = sizeof(prefix) - 1;

    if (len <= n || len > n + 9 || strncmp(s, prefix, n) != 0 || s[n] == '0') {
        return false;
    }
    for (size_t i = n; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return false;
        }
    }
    return true;
}

static enum coffer_err check_new(const struct coffer_store_token_new *t)
{
    if (t->org_id == NULL || t->digest == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "token: no org or no digest");
    }
    if (!mac_key_ok(t->mac_key)) {
        return coffer_err_set(COFFER_E_INVALID, "token: the MAC key label is not "
                                                "coffer-token-mac-v<n>");
    }
    if (t->admin) {
        if (!name_ok(t->admin_name) || t->agent_type != NULL || t->instance != NULL) {
            return coffer_err_set(COFFER_E_INVALID,
                                  "token: an admin principal needs an admin name that is a name, "
                                  "and no agent type or instance");
        }
    } else if (!name_ok(t->agent_type) || !name_ok(t->instance) || t->admin_name != NULL) {
        return coffer_err_set(COFFER_E_INVALID,
                              "token: an agent principal needs an agent type and an instance "
                              "that are names, and no admin name");
    }
    if (t->description != NULL &&
        !coffer_text_ok(t->description, strnlen(t->description, DESCRIPTION_MAX + 1),
                        DESCRIPTION_MAX)) {
        return coffer_err_set(COFFER_E_INVALID,
                              "token: the description is not 1 to %d bytes of UTF-8 without "
                              "control characters",
                              DESCRIPTION_MAX);
    }
    if (t->created_by == NULL ||
        !coffer_text_ok(t->created_by, strnlen(t->created_by, CREATED_BY_MAX + 1),
                        CREATED_BY_MAX)) {
        return coffer_err_set(COFFER_E_INVALID, "token: created_by is not 1 to %d bytes of text",
                              CREATED_BY_MAX);
    }
    if (t->ttl_s < 1 || t->ttl_s > COFFER_STORE_TOKEN_TTL_MAX) {
        return coffer_err_set(COFFER_E_INVALID,
                              "token: a lifetime is 1 second to 30 days, not %lld seconds",
                              (long long)t->ttl_s);
    }
    return COFFER_OK;
}

/* ---- Insert ------------------------------------------------------------------------ */

struct insert {
    const struct coffer_store_token_new *t;
    struct coffer_store_token *out;
};

static enum coffer_err insert_tx(struct coffer_store *s, void *arg)
{
    struct insert *in = arg;
    const struct coffer_store_token_new *t = in->t;
    struct store_params p = {0};
    PGresult *res = NULL;
    enum coffer_err r;

    store_param_uuid(&p, t->org_id);
    store_param_bytea(&p, t->digest, COFFER_STORE_TOKEN_DIGEST_LEN);
    store_param_text(&p, t->mac_key);
    store_param_text(&p, t->admin ? "admin" : "agent");
    store_param_text(&p, t->admin ? NULL : t->agent_type);
    store_param_text(&p, t->admin ? NULL : t->instance);
    store_param_text(&p, t->admin ? t->admin_name : NULL);
    store_param_text(&p, t->description);
    store_param_text(&p, t->created_by);
    store_param_int8(&p, t->ttl_s);
    r = store_exec(s, &token_insert, &p, "inserting token", &res);
    if (r != COFFER_OK) {
        if (r == COFFER_E_EXISTS) {
            /* Two random 256-bit tokens with one digest: the caller draws another. */
            r = coffer_err_set(COFFER_E_EXISTS, "a token with this digest exists already");
        } else if (store_sqlstate_is(s, "23503")) {
            r = coffer_err_set(COFFER_E_NOT_FOUND, "inserting token: no such org");
        }
        return r;
    }
    r = token_from_row(res, in->out);
    PQclear(res);
    if (r == COFFER_OK && !coffer_uuid_equal(&in->out->org_id, t->org_id)) {
        r = coffer_err_set(COFFER_E_INTEGRITY, "coffer.tokens: row does not match the insert");
    }
    return r;
}

enum coffer_err coffer_store_token_insert(struct coffer_store *s,
                                          const struct coffer_store_token_new *t,
                                          struct coffer_store_token *out)
{
    struct insert in = {.t = t, .out = out};
    enum coffer_err r;

    if (out == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "inserting token: no output");
    }
    memset(out, 0, sizeof(*out));
    if (s == NULL || t == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "inserting token: no store or no token");
    }
    if ((r = check_new(t)) != COFFER_OK) {
        return r;
    }
    r = store_in_tx(s, insert_tx, &in, "inserting token");
    if (r != COFFER_OK) {
        memset(out, 0, sizeof(*out));
    }
    return r;
}

/* ---- Find -------------------------------------------------------------------------- */

enum coffer_err coffer_store_token_find_many(
    struct coffer_store *s, const unsigned char (*digests)[COFFER_STORE_TOKEN_DIGEST_LEN], size_t n,
    const char *mac_key, struct coffer_store_token *out, bool *found)
{
    const void *elems[COFFER_STORE_BATCH_MAX];
    size_t lens[COFFER_STORE_BATCH_MAX];
    struct coffer_buf enc = {0};
    struct store_params p = {0};
    PGresult *res = NULL;
    int64_t prev = 0;
    enum coffer_err r;

    if (out == NULL || found == NULL || n == 0 || n > COFFER_STORE_BATCH_MAX) {
        return coffer_err_set(COFFER_E_INVALID, "finding tokens: %zu digests, want 1 to %d", n,
                              COFFER_STORE_BATCH_MAX);
    }
    for (size_t i = 0; i < n; i++) {
        memset(&out[i], 0, sizeof(out[i]));
        found[i] = false;
    }
    if (s == NULL || digests == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "finding tokens: no store or no digests");
    }
    if (!mac_key_ok(mac_key)) {
        return coffer_err_set(COFFER_E_INVALID,
                              "finding tokens: the MAC key label is not coffer-token-mac-v<n>");
    }
    for (size_t i = 0; i < n; i++) {
        elems[i] = digests[i];
        lens[i] = COFFER_STORE_TOKEN_DIGEST_LEN;
    }
    if ((r = store_encode_array(STORE_OID_BYTEA, n, elems, lens, &enc)) != COFFER_OK) {
        goto out;
    }
    store_param_binary(&p, enc.data, enc.len);
    store_param_text(&p, mac_key);
    if ((r = store_exec(s, &token_find_many, &p, "finding tokens", &res)) != COFFER_OK) {
        goto out;
    }
    if (PQntuples(res) > (int)n) {
        r = coffer_err_set(COFFER_E_INTEGRITY, "finding tokens: %d rows for %zu digests",
                           PQntuples(res), n);
        goto out;
    }
    for (int row = 0; row < PQntuples(res); row++) {
        int64_t i = 0;

        if ((r = store_col_count(res, row, TOKEN_NCOLS, "digest ordinal", &i)) != COFFER_OK) {
            goto out;
        }
        /* A digest is unique: one row at most per digest, in the order given. */
        if (i <= prev || i > (int64_t)n) {
            r = coffer_err_set(COFFER_E_INTEGRITY, "finding tokens: row %d answers digest %lld",
                               row, (long long)i);
            goto out;
        }
        prev = i;
        if ((r = token_at(res, row, &out[i - 1])) != COFFER_OK) {
            goto out;
        }
        found[i - 1] = true;
    }
    r = COFFER_OK;
out:
    PQclear(res);
    coffer_buf_cleanup(&enc);
    if (r != COFFER_OK) {
        for (size_t i = 0; i < n; i++) {
            memset(&out[i], 0, sizeof(out[i]));
            found[i] = false;
        }
    }
    return r;
}

/* ---- Revoke ------------------------------------------------------------------------ */

struct revoke {
    const struct coffer_uuid *org_id;
    const struct coffer_uuid *id;
    const char *reason;
    struct coffer_store_token *out;
};

static enum coffer_err revoke_tx(struct coffer_store *s, void *arg)
{
    struct revoke *rv = arg;
    struct coffer_store_token locked;
    struct store_params p = {0};
    PGresult *res = NULL;
    enum coffer_err r;

    store_param_uuid(&p, rv->org_id);
    store_param_uuid(&p, rv->id);
    if ((r = store_exec(s, &token_lock, &p, "locking token", &res)) != COFFER_OK) {
        return r;
    }
    r = token_from_row(res, &locked);
    PQclear(res);
    res = NULL;
    if (r == COFFER_E_NOT_FOUND) {
        return coffer_err_set(COFFER_E_NOT_FOUND, "the org has no such token");
    }
    if (r != COFFER_OK) {
        return r;
    }
    if (locked.revoked) {
        return coffer_err_set(COFFER_E_STATE, "the token is revoked already");
    }
    store_param_text(&p, rv->reason);
    if ((r = store_exec(s, &token_revoke, &p, "revoking token", &res)) != COFFER_OK) {
        return r;
    }
    r = token_from_row(res, rv->out);
    PQclear(res);
    if (r == COFFER_E_NOT_FOUND) {
        /* The row is locked: nothing can have revoked it in between. */
        r = coffer_err_set(COFFER_E_INTEGRITY, "revoking token: the locked row was not updated");
    }
    if (r == COFFER_OK && (!coffer_uuid_equal(&rv->out->id, rv->id) || !rv->out->revoked)) {
        r = coffer_err_set(COFFER_E_INTEGRITY, "coffer.tokens: row does not match the revocation");
    }
    return r;
}

enum coffer_err coffer_store_token_revoke(struct coffer_store *s, const struct coffer_uuid *org_id,
                                          const struct coffer_uuid *id, const char *reason,
                                          struct coffer_store_token *out)
{
    struct revoke rv = {.org_id = org_id, .id = id, .reason = reason, .out = out};
    enum coffer_err r;

    if (out == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "revoking token: no output");
    }
    memset(out, 0, sizeof(*out));
    if (s == NULL || org_id == NULL || id == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "revoking token: no store, org or token id");
    }
    if (reason == NULL || !coffer_text_ok(reason, strnlen(reason, REASON_MAX + 1), REASON_MAX)) {
        return coffer_err_set(COFFER_E_INVALID,
                              "a revocation reason is 1 to %d bytes of UTF-8 without control "
                              "characters",
                              REASON_MAX);
    }
    r = store_in_tx(s, revoke_tx, &rv, "revoking token");
    if (r != COFFER_OK) {
        memset(out, 0, sizeof(*out));
    }
    return r;
}

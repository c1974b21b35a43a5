/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The store's part of the tamper-evident audit log: the sealer's statements
 * (as coffer_app: the horizon, the last checkpoint, the hashes to seal, the
 * description of the audit objects, the new checkpoint), the readers of the
 * audit views that verification and export use (any role that may read them,
 * coffer_auditor included), and the prune (as coffer_owner).
 *
 * Every row read is checked before it is handed on: lengths of hashes and
 * blobs, hex, ranges of numbers. This file never interprets an event beyond
 * its text fields and never decides whether the log is intact; the audit
 * module does.
 */
#include "coffer/store_audit.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coffer/mem.h"
#include "store/store_int.h"

/* Advisory lock keys: shared by every event writer (taken in the insert trigger), and the sealer's.
 */
#define LOCK_EVENTS "7165064482445047155"
#define LOCK_SEALER "7165064482445047156"

/* Events read per round trip by the readers. */
#define READ_PAGE 2000

/* The schema description is bounded: 4 MiB (the column's limit). */
#define SCHEMA_TEXT_MAX (4u * 1024u * 1024u)

/* ---- Sealing -------------------------------------------------------------------------- */

static const struct store_stmt seal_try_lock = {
    .name = "coffer_seal_try_lock",
    .sql = "SELECT pg_catalog.pg_try_advisory_xact_lock(" LOCK_SEALER ")",
    .nparams = 0,
    .ncols = 1,
};

/*
 * Waits for every writer of events (they hold the lock shared until they end)
 * and holds back new ones until this transaction ends.
 */
static const struct store_stmt seal_lock_events = {
    .name = "coffer_seal_lock_events",
    .sql = "SELECT pg_catalog.set_config('lock_timeout', $1, true), "
           "pg_catalog.pg_advisory_xact_lock(" LOCK_EVENTS ")",
    .nparams = 1,
    .types = {STORE_OID_TEXT},
    .ncols = 2,
};

/* A new statement, so a new snapshot: every event committed before the lock was granted. */
static const struct store_stmt seal_max_id = {
    .name = "coffer_seal_max_id",
    .sql = "SELECT COALESCE(max(id), 0) FROM coffer.audit_events",
    .nparams = 0,
    .ncols = 1,
};

static const struct store_stmt seal_head = {
    .name = "coffer_seal_head",
    .sql = "SELECT seq, last_event, chain, hash, schema_digest FROM coffer.audit_checkpoints "
           "ORDER BY seq DESC LIMIT 1",
    .nparams = 0,
    .ncols = 5,
};

static const struct store_stmt seal_events = {
    .name = "coffer_seal_events",
    .sql = "SELECT id, row_hash FROM coffer.audit_events WHERE id > $1 AND id <= $2 "
           "ORDER BY id LIMIT $3",
    .nparams = 3,
    .types = {STORE_OID_INT8, STORE_OID_INT8, STORE_OID_INT8},
    .ncols = 2,
};

static const struct store_stmt seal_insert = {
    .name = "coffer_seal_insert",
    .sql = "INSERT INTO coffer.audit_checkpoints (seq, at, first_event, last_event, events, chain, "
           "previous, schema_digest, schema_text, key_version, message, signature, sealed) "
           "VALUES ($1, $2::timestamptz, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
    .nparams = 13,
    .types = {STORE_OID_INT8, STORE_OID_TEXT, STORE_OID_INT8, STORE_OID_INT8, STORE_OID_INT4,
              STORE_OID_BYTEA, STORE_OID_BYTEA, STORE_OID_BYTEA, STORE_OID_TEXT, STORE_OID_INT4,
              STORE_OID_BYTEA, STORE_OID_BYTEA, STORE_OID_BYTEA},
    .ncols = 0,
};

/*
 * The audit objects, one line each, in a fixed order: relations of schema
 * audit and the audit tables of schema coffer with owner, privileges and
 * row security; their columns, constraints, triggers (with whether they are
 * enabled), rules and policies; view definitions; the functions of schema
 * audit and those the triggers run, with their source. Newlines inside a
 * definition become spaces so that each object stays on its line.
 */
#define AUDIT_RELS                                                                                 \
    "WITH rels AS (SELECT c.oid, n.nspname || '.' || c.relname AS name, c.relkind, "               \
    "pg_catalog.pg_get_userbyid(c.relowner) AS owner, c.relacl::text AS acl, "                     \
    "c.relrowsecurity AS rls FROM pg_catalog.pg_class c "                                          \
    "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "                                    \
    "WHERE (n.nspname = 'audit' AND c.relkind IN ('r', 'v', 'm', 'S', 'p', 'f')) "                 \
    "OR (n.nspname = 'coffer' AND c.relname IN ('audit_events', 'audit_checkpoints', "             \
    "'audit_signing_keys', 'audit_prunes', 'audit_verifications', 'audit_event_ids', "             \
    "'ceremonies'))), "

static const struct store_stmt audit_schema = {
    .name = "coffer_audit_schema",
    .sql = AUDIT_RELS
    "lines AS ("
    "SELECT 1 AS k, r.name AS name, 'relation ' || r.name || ' kind=' || r.relkind::text || "
    "' owner=' || r.owner || ' acl=' || COALESCE(r.acl, '-') || ' rls=' || r.rls::text AS line "
    "FROM rels r "
    "UNION ALL SELECT 2, r.name || '.' || pg_catalog.lpad(a.attnum::text, 4, '0'), "
    "'column ' || r.name || '.' || a.attname || ' ' || "
    "pg_catalog.format_type(a.atttypid, a.atttypmod) || "
    "CASE WHEN a.attnotnull THEN ' not-null' ELSE '' END || "
    "COALESCE(' default=' || pg_catalog.pg_get_expr(d.adbin, d.adrelid), '') || "
    "' generated=' || a.attgenerated::text || ' acl=' || COALESCE(a.attacl::text, '-') "
    "FROM rels r JOIN pg_catalog.pg_attribute a ON a.attrelid = r.oid AND a.attnum > 0 "
    "AND NOT a.attisdropped "
    "LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = r.oid AND d.adnum = a.attnum "
    "UNION ALL SELECT 3, r.name || '.' || co.conname, 'constraint ' || r.name || '.' || "
    "co.conname || ' ' || pg_catalog.pg_get_constraintdef(co.oid) "
    "FROM rels r JOIN pg_catalog.pg_constraint co ON co.conrelid = r.oid "
    "UNION ALL SELECT 4, r.name || '.' || t.tgname, 'trigger ' || r.name || '.' || t.tgname || "
    "' enabled=' || t.tgenabled::text || ' ' || pg_catalog.pg_get_triggerdef(t.oid) "
    "FROM rels r JOIN pg_catalog.pg_trigger t ON t.tgrelid = r.oid AND NOT t.tgisinternal "
    "UNION ALL SELECT 5, r.name || '.' || w.rulename, 'rule ' || r.name || '.' || w.rulename || "
    "' enabled=' || w.ev_enabled::text || ' ' || "
    "pg_catalog.replace(pg_catalog.pg_get_ruledef(w.oid), pg_catalog.chr(10), ' ') "
    "FROM rels r JOIN pg_catalog.pg_rewrite w ON w.ev_class = r.oid "
    "WHERE w.rulename <> '_RETURN' "
    "UNION ALL SELECT 6, r.name || '.' || p.polname, 'policy ' || r.name || '.' || p.polname || "
    "' cmd=' || p.polcmd::text || ' using=' || "
    "COALESCE(pg_catalog.pg_get_expr(p.polqual, p.polrelid), '-') || ' check=' || "
    "COALESCE(pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid), '-') "
    "FROM rels r JOIN pg_catalog.pg_policy p ON p.polrelid = r.oid "
    "UNION ALL SELECT 7, r.name, 'view ' || r.name || ' ' || "
    "pg_catalog.replace(pg_catalog.pg_get_viewdef(r.oid, true), pg_catalog.chr(10), ' ') "
    "FROM rels r WHERE r.relkind IN ('v', 'm') "
    "UNION ALL SELECT 8, n.nspname || '.' || p.proname || '(' || "
    "pg_catalog.pg_get_function_identity_arguments(p.oid) || ')', "
    "'function ' || n.nspname || '.' || p.proname || '(' || "
    "pg_catalog.pg_get_function_identity_arguments(p.oid) || ') owner=' || "
    "pg_catalog.pg_get_userbyid(p.proowner) || ' acl=' || COALESCE(p.proacl::text, '-') || "
    "' ' || pg_catalog.replace(pg_catalog.pg_get_functiondef(p.oid), pg_catalog.chr(10), ' ') "
    "FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace "
    "WHERE p.prokind = 'f' AND (n.nspname = 'audit' OR (n.nspname = 'coffer' "
    "AND p.proname LIKE 'audit%') OR p.oid IN (SELECT t.tgfoid FROM pg_catalog.pg_trigger t "
    "JOIN rels r ON r.oid = t.tgrelid))"
    ") "
    "SELECT COALESCE(pg_catalog.string_agg(line, pg_catalog.chr(10) "
    "ORDER BY k, name COLLATE \"C\", line COLLATE \"C\"), '') || pg_catalog.chr(10), "
    "pg_catalog.to_char(pg_catalog.clock_timestamp() AT TIME ZONE 'UTC', "
    "'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') FROM lines",
    .nparams = 0,
    .ncols = 2,
};

const struct store_stmt *const store_stmts_audit_log[] = {
    &seal_try_lock, &seal_lock_events, &seal_max_id,  &seal_head,
    &seal_events,   &seal_insert,      &audit_schema, NULL,
};

enum coffer_err coffer_store_seal_begin(struct coffer_store *s, bool *got)
{
    struct store_params p = {0};
    PGresult *res = NULL;
    enum coffer_err r;

    *got = false;
    if ((r = coffer_store_begin(s)) != COFFER_OK) {
        return r;
    }
    if ((r = store_exec(s, &seal_try_lock, &p, "taking the sealer's lock", &res)) != COFFER_OK ||
        (r = store_one_row(res, "the sealer's lock")) != COFFER_OK ||
        (r = store_col_bool(res, 0, 0, "pg_try_advisory_xact_lock", got)) != COFFER_OK) {
        *got = false;
    }
    PQclear(res);
    if (r != COFFER_OK || !*got) {
        coffer_store_rollback(s);
    }
    return r;
}

/* Inside the horizon's transaction: the lock, then the highest id under a fresh snapshot. */
static enum coffer_err horizon_tx(struct coffer_store *s, unsigned wait_ms, int64_t *through)
{
    struct store_params p = {0};
    PGresult *res = NULL;
    char timeout[24];
    enum coffer_err r;

    (void)snprintf(timeout, sizeof(timeout), "%ums", wait_ms == 0 ? 1u : wait_ms);
    store_param_text(&p, timeout);
    r = store_exec(s, &seal_lock_events, &p, "waiting for the event writers", &res);
    PQclear(res);
    res = NULL;
    if (r != COFFER_OK) {
        /* 55P03 lock_not_available: the writers did not finish within wait_ms. */
        return store_sqlstate_is(s, "55P03")
                   ? coffer_err_set(COFFER_E_CONFLICT,
                                    "event writers still busy after %u ms; sealing later", wait_ms)
                   : r;
    }
    p = (struct store_params){0};
    if ((r = store_exec(s, &seal_max_id, &p, "reading the last event id", &res)) == COFFER_OK &&
        (r = store_one_row(res, "coffer.audit_events")) == COFFER_OK) {
        r = store_col_count(res, 0, 0, "max(coffer.audit_events.id)", through);
    }
    PQclear(res);
    return r;
}

enum coffer_err coffer_store_seal_horizon(struct coffer_store *s, unsigned wait_ms,
                                          int64_t *through)
{
    enum coffer_err r;

    *through = 0;
    if (coffer_store_in_tx(s)) {
        return coffer_err_set(COFFER_E_STATE, "sealing horizon: inside a transaction");
    }
    /* Its own short transaction: the lock ends with it, on every path. */
    if ((r = coffer_store_begin(s)) != COFFER_OK) {
        return r;
    }
    if ((r = horizon_tx(s, wait_ms, through)) != COFFER_OK) {
        coffer_store_rollback(s);
        *through = 0;
        return r;
    }
    return coffer_store_commit(s);
}

enum coffer_err coffer_store_seal_head(struct coffer_store *s, struct coffer_store_seal_head *out)
{
    struct store_params p = {0};
    PGresult *res = NULL;
    enum coffer_err r;

    memset(out, 0, sizeof(*out));
    if ((r = store_exec(s, &seal_head, &p, "reading the last checkpoint", &res)) != COFFER_OK) {
        return r;
    }
    if (PQntuples(res) == 1) {
        out->exists = true;
        if ((r = store_col_count(res, 0, 0, "coffer.audit_checkpoints.seq", &out->seq)) !=
                COFFER_OK ||
            (r = store_col_count(res, 0, 1, "coffer.audit_checkpoints.last_event",
                                 &out->last_event)) != COFFER_OK ||
            (r = store_col_bytea_exact(res, 0, 2, "coffer.audit_checkpoints.chain", out->chain,
                                       COFFER_AUDIT_HASH_LEN)) != COFFER_OK ||
            (r = store_col_bytea_exact(res, 0, 3, "coffer.audit_checkpoints.hash", out->hash,
                                       COFFER_AUDIT_HASH_LEN)) != COFFER_OK ||
            (r = store_col_bytea_exact(res, 0, 4, "coffer.audit_checkpoints.schema_digest",
                                       out->schema, COFFER_AUDIT_HASH_LEN)) != COFFER_OK) {
            memset(out, 0, sizeof(*out));
        } else if (out->seq < 1) {
            r = coffer_err_set(COFFER_E_INTEGRITY, "coffer.audit_checkpoints.seq: not positive");
        }
    }
    PQclear(res);
    return r;
}

static void put_be64(unsigned char *p, int64_t v)
{
    uint64_t u = (uint64_t)v;

    for (int i = 7; i >= 0; i--) {
        p[i] = (unsigned char)(u & 0xff);
        u >>= 8;
    }
}

enum coffer_err coffer_store_seal_events(struct coffer_store *s, int64_t after, int64_t through,
                                         size_t max, unsigned char *out, size_t *n,
                                         int64_t *last_id)
{
    struct store_params p = {0};
    PGresult *res = NULL;
    int64_t prev = after;
    enum coffer_err r;
    int rows;

    *n = 0;
    *last_id = 0;
    if (max == 0 || max > COFFER_AUDIT_CHECKPOINT_MAX) {
        return coffer_err_set(COFFER_E_INVALID, "sealing: batch of %zu events", max);
    }
    store_param_int8(&p, after);
    store_param_int8(&p, through);
    store_param_int8(&p, (int64_t)max);
    if ((r = store_exec(s, &seal_events, &p, "reading events to seal", &res)) != COFFER_OK) {
        return r;
    }
    rows = PQntuples(res);
    if ((size_t)rows > max) {
        r = coffer_err_set(COFFER_E_INTEGRITY, "coffer.audit_events: more rows than asked for");
        goto out;
    }
    for (int i = 0; i < rows; i++) {
        unsigned char *e = out + (size_t)i * COFFER_AUDIT_SEALED_ENTRY;
        int64_t id = 0;

        if ((r = store_col_count(res, i, 0, "coffer.audit_events.id", &id)) != COFFER_OK ||
            (r = store_col_bytea_exact(res, i, 1, "coffer.audit_events.row_hash", e + 8,
                                       COFFER_AUDIT_HASH_LEN)) != COFFER_OK) {
            goto out;
        }
        if (id <= prev || id > through) {
            r = coffer_err_set(COFFER_E_INTEGRITY,
                               "coffer.audit_events.id: %" PRId64 " out of order", id);
            goto out;
        }
        put_be64(e, id);
        prev = id;
    }
    *n = (size_t)rows;
    *last_id = rows > 0 ? prev : 0;
out:
    PQclear(res);
    return r;
}

static enum coffer_err sha256(const void *data, size_t len,
                              unsigned char out[COFFER_AUDIT_HASH_LEN])
{
    unsigned int mdlen = 0;

    if (EVP_Digest(data, len, out, &mdlen, EVP_sha256(), NULL) != 1 ||
        mdlen != COFFER_AUDIT_HASH_LEN) {
        return coffer_err_set(COFFER_E_CRYPTO, "SHA-256 failed");
    }
    return COFFER_OK;
}

enum coffer_err coffer_store_audit_schema(struct coffer_store *s, char **text,
                                          unsigned char digest[COFFER_AUDIT_HASH_LEN], char now[32])
{
    struct store_params p = {0};
    PGresult *res = NULL;
    const unsigned char *raw = NULL;
    size_t len = 0;
    char *copy = NULL;
    enum coffer_err r;

    *text = NULL;
    if ((r = store_exec(s, &audit_schema, &p, "describing the audit objects", &res)) != COFFER_OK) {
        return r;
    }
    if ((r = store_one_row(res, "the audit objects")) != COFFER_OK ||
        (r = store_col_raw(res, 0, 0, "the audit objects", STORE_OID_TEXT, &raw, &len)) !=
            COFFER_OK ||
        (r = store_col_text(res, 0, 1, "clock_timestamp()", now, 32)) != COFFER_OK) {
        goto out;
    }
    if (raw == NULL || len == 0 || len > SCHEMA_TEXT_MAX || memchr(raw, '\0', len) != NULL) {
        r = coffer_err_set(COFFER_E_INTEGRITY, "the audit object description is %zu bytes", len);
        goto out;
    }
    if ((copy = coffer_calloc(1, len + 1)) == NULL) {
        r = coffer_err_set(COFFER_E_NOMEM, "copying the audit object description");
        goto out;
    }
    coffer_memcpy(copy, raw, len);
    if ((r = sha256(copy, len, digest)) != COFFER_OK) {
        goto out;
    }
    *text = copy;
    copy = NULL;
out:
    coffer_free(copy);
    PQclear(res);
    return r;
}

enum coffer_err coffer_store_seal_insert(struct coffer_store *s,
                                         const struct coffer_audit_cp_fields *f,
                                         const char *schema_text, const char *message,
                                         size_t message_len, const unsigned char *sig,
                                         size_t sig_len, const unsigned char *sealed,
                                         size_t sealed_len)
{
    struct store_params p = {0};
    PGresult *res = NULL;
    enum coffer_err r;

    if ((r = store_require_tx(s, "appending a checkpoint")) != COFFER_OK) {
        return r;
    }
    if (f->events < 0 || f->events > COFFER_AUDIT_CHECKPOINT_MAX ||
        sealed_len != (size_t)f->events * COFFER_AUDIT_SEALED_ENTRY || message_len == 0 ||
        message_len > COFFER_AUDIT_MESSAGE_MAX || sig_len == 0 || sig_len > COFFER_AUDIT_SIG_MAX) {
        return coffer_err_set(COFFER_E_INVALID, "checkpoint %" PRId64 ": inconsistent sizes",
                              f->seq);
    }
    store_param_int8(&p, f->seq);
    store_param_text(&p, f->at);
    store_param_int8(&p, f->first_event);
    store_param_int8(&p, f->last_event);
    store_param_int4(&p, (int32_t)f->events);
    store_param_bytea(&p, f->chain, COFFER_AUDIT_HASH_LEN);
    store_param_bytea(&p, f->previous, COFFER_AUDIT_HASH_LEN);
    store_param_bytea(&p, f->schema, COFFER_AUDIT_HASH_LEN);
    store_param_text(&p, schema_text);
    store_param_int4(&p, f->key_version);
    store_param_bytea(&p, (const unsigned char *)message, message_len);
    store_param_bytea(&p, sig, sig_len);
    /* An empty range still binds a (zero-length) value, never NULL. */
    store_param_bytea(&p, sealed_len > 0 ? sealed : (const unsigned char *)"", sealed_len);
    r = store_exec(s, &seal_insert, &p, "appending a checkpoint", &res);
    PQclear(res);
    return r;
}

/* ---- Reading through the audit views ----------------------------------------------------- */

enum coffer_err coffer_store_open_reader(const char *conninfo, struct coffer_store **out)
{
    struct coffer_store *s = NULL;
    enum coffer_err r;

    *out = NULL;
    if ((s = coffer_calloc(1, sizeof(*s))) == NULL) {
        return coffer_err_set(COFFER_E_NOMEM, "allocating a store");
    }
    s->reader = true;
    if ((r = store_connect(conninfo, &s->conn)) != COFFER_OK) {
        coffer_store_close(&s);
        return r;
    }
    *out = s;
    return COFFER_OK;
}

/* Runs sql with text parameters and text results; *res must be cleared by the caller. */
static enum coffer_err reader_exec(struct coffer_store *s, const char *sql, int n,
                                   const char *const *values, const char *what, PGresult **res)
{
    ExecStatusType st;

    *res = PQexecParams(s->conn, sql, n, NULL, values, NULL, NULL, 0);
    st = *res != NULL ? PQresultStatus(*res) : PGRES_FATAL_ERROR;
    if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
        enum coffer_err r = store_result_error(s, *res, what);

        PQclear(*res);
        *res = NULL;
        return r;
    }
    return COFFER_OK;
}

static enum coffer_err parse_i64(const char *v, const char *where, int64_t min, int64_t *out)
{
    char *end = NULL;
    long long x;

    if (v == NULL || v[0] == '\0') {
        return coffer_err_set(COFFER_E_INTEGRITY, "%s: missing", where);
    }
    errno = 0;
    x = strtoll(v, &end, 10);
    if (errno != 0 || end == v || *end != '\0' || x < min) {
        return coffer_err_set(COFFER_E_INTEGRITY, "%s: not a number from %" PRId64, where, min);
    }
    *out = (int64_t)x;
    return COFFER_OK;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    return -1;
}

/* Lower-case hex of min..max bytes into a new buffer (at least one byte allocated). */
static enum coffer_err parse_hex(const char *v, const char *where, size_t min, size_t max,
                                 unsigned char **out, size_t *len)
{
    size_t n = v == NULL ? 0 : strlen(v);
    unsigned char *b;

    *out = NULL;
    *len = 0;
    if (v == NULL || n % 2 != 0 || n / 2 < min || n / 2 > max) {
        return coffer_err_set(COFFER_E_INTEGRITY, "%s: not %zu to %zu bytes of hex", where, min,
                              max);
    }
    if ((b = coffer_calloc(1, n / 2 + 1)) == NULL) {
        return coffer_err_set(COFFER_E_NOMEM, "%s", where);
    }
    for (size_t i = 0; i < n / 2; i++) {
        int hi = hexval(v[2 * i]);
        int lo = hexval(v[2 * i + 1]);

        if (hi < 0 || lo < 0) {
            coffer_free(b);
            return coffer_err_set(COFFER_E_INTEGRITY, "%s: not lower-case hex", where);
        }
        b[i] = (unsigned char)(hi << 4 | lo);
    }
    *out = b;
    *len = n / 2;
    return COFFER_OK;
}

static enum coffer_err parse_hash(const char *v, const char *where,
                                  unsigned char out[COFFER_AUDIT_HASH_LEN])
{
    unsigned char *b = NULL;
    size_t len = 0;
    enum coffer_err r = parse_hex(v, where, COFFER_AUDIT_HASH_LEN, COFFER_AUDIT_HASH_LEN, &b, &len);

    if (r == COFFER_OK) {
        coffer_memcpy(out, b, COFFER_AUDIT_HASH_LEN);
    }
    coffer_free(b);
    return r;
}

static const char *val(const PGresult *res, int row, int col)
{
    return PQgetisnull(res, row, col) ? NULL : PQgetvalue(res, row, col);
}

enum coffer_err coffer_store_audit_read_keys(struct coffer_store *s, coffer_store_audit_key_fn fn,
                                             void *arg)
{
    static const char sql[] = "SELECT version, label, pg_catalog.encode(public_key, 'hex') "
                              "FROM audit.signing_keys ORDER BY version";
    PGresult *res = NULL;
    enum coffer_err r;

    if ((r = reader_exec(s, sql, 0, NULL, "reading audit.signing_keys", &res)) != COFFER_OK) {
        return r;
    }
    for (int i = 0; i < PQntuples(res) && r == COFFER_OK; i++) {
        unsigned char *spki = NULL;
        size_t len = 0;
        int64_t version = 0;
        const char *label = val(res, i, 1);

        if ((r = parse_i64(val(res, i, 0), "audit.signing_keys.version", 1, &version)) !=
                COFFER_OK ||
            (r = parse_hex(val(res, i, 2), "audit.signing_keys.public_key", 1,
                           COFFER_AUDIT_SPKI_MAX, &spki, &len)) != COFFER_OK) {
            break;
        }
        if (version > INT32_MAX || label == NULL) {
            r = coffer_err_set(COFFER_E_INTEGRITY, "audit.signing_keys: bad row");
        } else {
            r = fn(arg, (int32_t)version, label, spki, len);
        }
        coffer_free(spki);
    }
    PQclear(res);
    return r;
}

/* One checkpoint row: seq, message, signature, sealed, and the columns to compare. */
static enum coffer_err cp_from_row(const PGresult *res, int i, coffer_store_audit_cp_fn fn,
                                   void *arg)
{
    struct coffer_audit_checkpoint cp = {0};
    struct coffer_audit_cp_fields *c = &cp.columns;
    unsigned char *msg = NULL;
    unsigned char *sig = NULL;
    unsigned char *sealed = NULL;
    const char *at = val(res, i, 1);
    int64_t kv = 0;
    enum coffer_err r;

    if ((r = parse_i64(val(res, i, 0), "audit.checkpoints.seq", 1, &cp.seq)) != COFFER_OK ||
        (r = parse_i64(val(res, i, 2), "audit.checkpoints.first_event", 1, &c->first_event)) !=
            COFFER_OK ||
        (r = parse_i64(val(res, i, 3), "audit.checkpoints.last_event", 0, &c->last_event)) !=
            COFFER_OK ||
        (r = parse_i64(val(res, i, 4), "audit.checkpoints.events", 0, &c->events)) != COFFER_OK ||
        (r = parse_hash(val(res, i, 5), "audit.checkpoints.chain", c->chain)) != COFFER_OK ||
        (r = parse_hash(val(res, i, 6), "audit.checkpoints.previous", c->previous)) != COFFER_OK ||
        (r = parse_hash(val(res, i, 7), "audit.checkpoints.hash", cp.hash)) != COFFER_OK ||
        (r = parse_hash(val(res, i, 8), "audit.checkpoints.schema_digest", c->schema)) !=
            COFFER_OK ||
        (r = parse_i64(val(res, i, 9), "audit.checkpoints.key_version", 1, &kv)) != COFFER_OK ||
        (r = parse_hash(val(res, i, 10), "audit.checkpoints.key_fingerprint", c->fingerprint)) !=
            COFFER_OK ||
        (r = parse_hex(val(res, i, 11), "audit.checkpoints.message", 1, COFFER_AUDIT_MESSAGE_MAX,
                       &msg, &cp.message_len)) != COFFER_OK ||
        (r = parse_hex(val(res, i, 12), "audit.checkpoints.signature", 1, COFFER_AUDIT_SIG_MAX,
                       &sig, &cp.signature_len)) != COFFER_OK ||
        (r = parse_hex(val(res, i, 13), "audit.checkpoints.sealed", 0,
                       (size_t)COFFER_AUDIT_CHECKPOINT_MAX * COFFER_AUDIT_SEALED_ENTRY, &sealed,
                       &cp.sealed_len)) != COFFER_OK) {
        goto out;
    }
    if (at == NULL || strlen(at) >= sizeof(c->at) || kv > INT32_MAX) {
        r = coffer_err_set(COFFER_E_INTEGRITY, "audit.checkpoints %" PRId64 ": bad at or key",
                           cp.seq);
        goto out;
    }
    (void)snprintf(c->at, sizeof(c->at), "%s", at);
    c->seq = cp.seq;
    c->key_version = (int32_t)kv;
    cp.message = msg;
    cp.signature = sig;
    cp.sealed = sealed;
    cp.has_columns = true;
    r = fn(arg, &cp);
out:
    coffer_free(msg);
    coffer_free(sig);
    coffer_free(sealed);
    return r;
}

#define TIME_TEXT(col)                                                                             \
    "pg_catalog.to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"

enum coffer_err coffer_store_audit_read_checkpoints(struct coffer_store *s, int64_t from_seq,
                                                    int64_t to_seq, coffer_store_audit_cp_fn fn,
                                                    void *arg)
{
    /* Few at a time: a checkpoint's sealed list can be 400 KB. */
    static const char sql[] = "SELECT seq, " TIME_TEXT(
        "at") ", first_event, last_event, events, "
              "pg_catalog.encode(chain, 'hex'), pg_catalog.encode(previous, 'hex'), "
              "pg_catalog.encode(hash, 'hex'), pg_catalog.encode(schema_digest, 'hex'), "
              "key_version, "
              "pg_catalog.encode(key_fingerprint, 'hex'), pg_catalog.encode(message, 'hex'), "
              "pg_catalog.encode(signature, 'hex'), pg_catalog.encode(sealed, 'hex') "
              "FROM audit.checkpoints WHERE seq >= $1 AND ($2::bigint = 0 OR seq <= $2) "
              "ORDER BY seq LIMIT 16";
    int64_t next = from_seq < 1 ? 1 : from_seq;
    enum coffer_err r = COFFER_OK;

    for (;;) {
        char a[24];
        char b[24];
        const char *values[2] = {a, b};
        PGresult *res = NULL;
        int rows;

        (void)snprintf(a, sizeof(a), "%" PRId64, next);
        (void)snprintf(b, sizeof(b), "%" PRId64, to_seq);
        if ((r = reader_exec(s, sql, 2, values, "reading audit.checkpoints", &res)) != COFFER_OK) {
            return r;
        }
        rows = PQntuples(res);
        for (int i = 0; i < rows && r == COFFER_OK; i++) {
            int64_t seq = 0;

            if ((r = parse_i64(val(res, i, 0), "audit.checkpoints.seq", 1, &seq)) == COFFER_OK &&
                (r = cp_from_row(res, i, fn, arg)) == COFFER_OK) {
                next = seq + 1;
            }
        }
        PQclear(res);
        if (r != COFFER_OK || rows < 16) {
            return r;
        }
    }
}

enum coffer_err coffer_store_audit_read_seq_of(struct coffer_store *s, int64_t id, int64_t *seq)
{
    static const char sql[] = "SELECT seq FROM audit.checkpoints WHERE first_event <= $1 "
                              "AND last_event >= $1";
    char a[24];
    const char *values[1] = {a};
    PGresult *res = NULL;
    enum coffer_err r;

    *seq = 0;
    (void)snprintf(a, sizeof(a), "%" PRId64, id);
    if ((r = reader_exec(s, sql, 1, values, "reading audit.checkpoints", &res)) != COFFER_OK) {
        return r;
    }
    if (PQntuples(res) == 1) {
        r = parse_i64(val(res, 0, 0), "audit.checkpoints.seq", 1, seq);
    }
    PQclear(res);
    return r;
}

/* The filter's parameters, as text: from, to, org, since, until. */
static void filter_values(const struct coffer_store_audit_filter *f, char from[24], char to[24],
                          const char *values[5])
{
    (void)snprintf(from, 24, "%" PRId64, f->from_id);
    (void)snprintf(to, 24, "%" PRId64, f->to_id);
    values[0] = from;
    values[1] = to;
    values[2] = f->org;
    values[3] = f->since;
    values[4] = f->until;
}

#define FILTER_WHERE                                                                               \
    "WHERE id >= $1 AND id <= $2 AND ($3::text IS NULL OR org = $3 OR target_org = $3) "           \
    "AND ($4::timestamptz IS NULL OR at >= $4::timestamptz) "                                      \
    "AND ($5::timestamptz IS NULL OR at < $5::timestamptz) "

enum coffer_err coffer_store_audit_read_span(struct coffer_store *s,
                                             const struct coffer_store_audit_filter *f,
                                             int64_t *min_id, int64_t *max_id)
{
    static const char sql[] = "SELECT COALESCE(min(id), 0), COALESCE(max(id), 0) "
                              "FROM audit.access_log " FILTER_WHERE;
    char from[24];
    char to[24];
    const char *values[5];
    PGresult *res = NULL;
    enum coffer_err r;

    *min_id = 0;
    *max_id = 0;
    filter_values(f, from, to, values);
    if ((r = reader_exec(s, sql, 5, values, "reading audit.access_log", &res)) != COFFER_OK) {
        return r;
    }
    if ((r = store_one_row(res, "audit.access_log")) == COFFER_OK &&
        (r = parse_i64(val(res, 0, 0), "min(id)", 0, min_id)) == COFFER_OK) {
        r = parse_i64(val(res, 0, 1), "max(id)", 0, max_id);
    }
    PQclear(res);
    return r;
}

enum coffer_err coffer_store_audit_read_events(struct coffer_store *s,
                                               const struct coffer_store_audit_filter *f,
                                               coffer_store_audit_row_fn fn, void *arg)
{
    /* The canonical text of every field (docs/auditors.md), then row_hash in hex. */
    static const char sql[] = "SELECT id::text, " TIME_TEXT(
        "at") ", action, "
              "CASE WHEN allowed THEN 'true' ELSE 'false' END, reason, "
              "CASE WHEN purpose_unexpected THEN 'true' ELSE 'false' END, request_id, client_addr, "
              "principal_kind, trust_domain, org, agent_type, instance, admin, target_org, "
              "project, "
              "credential, version::text, phase, purpose, detail, org_key_version::text, "
              "mk_version::text, pg_catalog.encode(row_hash, 'hex') "
              "FROM audit.access_log " FILTER_WHERE "ORDER BY access_log.id LIMIT 2000";
    struct coffer_store_audit_filter page = *f;
    enum coffer_err r = COFFER_OK;

    for (;;) {
        char from[24];
        char to[24];
        const char *values[5];
        PGresult *res = NULL;
        int rows;

        filter_values(&page, from, to, values);
        if ((r = reader_exec(s, sql, 5, values, "reading audit.access_log", &res)) != COFFER_OK) {
            return r;
        }
        rows = PQntuples(res);
        if (PQnfields(res) != COFFER_AUDIT_FIELDS + 1) {
            PQclear(res);
            return coffer_err_set(COFFER_E_INTEGRITY, "audit.access_log: unexpected columns");
        }
        for (int i = 0; i < rows && r == COFFER_OK; i++) {
            struct coffer_audit_row row = {0};

            for (int c = 0; c < COFFER_AUDIT_FIELDS; c++) {
                row.f[c] = val(res, i, c);
            }
            if ((r = parse_i64(row.f[COFFER_AF_ID], "audit.access_log.id", 1, &row.id)) ==
                    COFFER_OK &&
                (r = parse_hash(val(res, i, COFFER_AUDIT_FIELDS), "audit.access_log.row_hash",
                                row.row_hash)) == COFFER_OK) {
                r = fn(arg, &row);
                page.from_id = row.id + 1;
            }
        }
        PQclear(res);
        if (r != COFFER_OK || rows < READ_PAGE) {
            return r;
        }
    }
}

enum coffer_err coffer_store_audit_read_last_seq(struct coffer_store *s, int64_t *seq)
{
    static const char sql[] = "SELECT COALESCE(max(seq), 0) FROM audit.checkpoints";
    PGresult *res = NULL;
    enum coffer_err r;

    *seq = 0;
    if ((r = reader_exec(s, sql, 0, NULL, "reading audit.checkpoints", &res)) != COFFER_OK) {
        return r;
    }
    if ((r = store_one_row(res, "audit.checkpoints")) == COFFER_OK) {
        r = parse_i64(val(res, 0, 0), "max(audit.checkpoints.seq)", 0, seq);
    }
    PQclear(res);
    return r;
}

enum coffer_err coffer_store_audit_read_pruned(struct coffer_store *s, int64_t *through)
{
    static const char sql[] = "SELECT COALESCE(max(through_event), 0) FROM audit.prunes";
    PGresult *res = NULL;
    enum coffer_err r;

    *through = 0;
    if ((r = reader_exec(s, sql, 0, NULL, "reading audit.prunes", &res)) != COFFER_OK) {
        return r;
    }
    if ((r = store_one_row(res, "audit.prunes")) == COFFER_OK) {
        r = parse_i64(val(res, 0, 0), "audit.prunes.through_event", 0, through);
    }
    PQclear(res);
    return r;
}

enum coffer_err coffer_store_audit_record(struct coffer_store *s,
                                          const struct coffer_audit_report *rep)
{
    static const char sql[] = "SELECT audit.record_verification($1::bool, $2::bigint, $3::bigint, "
                              "$4::bigint, $5::text)";
    char seq[24];
    char events[24];
    char problems[24];
    const char *values[5];
    PGresult *res = NULL;
    enum coffer_err r;

    (void)snprintf(seq, sizeof(seq), "%" PRId64, rep->last_seq);
    (void)snprintf(events, sizeof(events), "%" PRId64, rep->events_verified);
    (void)snprintf(problems, sizeof(problems), "%" PRId64, rep->problems);
    values[0] = rep->first == COFFER_AUDIT_OK ? "true" : "false";
    values[1] = rep->last_seq > 0 ? seq : NULL;
    values[2] = events;
    values[3] = problems;
    values[4] = rep->first == COFFER_AUDIT_OK ? NULL : rep->first_message;
    r = reader_exec(s, sql, 5, values, "recording the verification", &res);
    PQclear(res);
    return r;
}

/* ---- Prune ------------------------------------------------------------------------------------
 */

enum coffer_err coffer_store_audit_prune(struct coffer_store *s, int64_t through_seq,
                                         const unsigned char export_sha256[COFFER_AUDIT_HASH_LEN],
                                         int64_t export_events, const char *pruned_by,
                                         int64_t *deleted)
{
    static const char insert_sql[] =
        "INSERT INTO coffer.audit_prunes (through_seq, through_event, export_sha256, "
        "export_events, pruned_by) SELECT seq, last_event, pg_catalog.decode($2, 'hex'), $3, $4 "
        "FROM coffer.audit_checkpoints WHERE seq = $1 RETURNING id, through_event";
    static const char before_sql[] =
        "SELECT COALESCE(max(through_event), 0) FROM coffer.audit_prunes";
    static const char delete_sql[] =
        "WITH d AS (DELETE FROM coffer.audit_events WHERE id > $1 AND id <= $2 RETURNING 1) "
        "SELECT count(*) FROM d";
    static const char count_sql[] = "UPDATE coffer.audit_prunes SET deleted_events = $2 "
                                    "WHERE id = $1";
    char seq[24];
    char events[24];
    char hex[2 * COFFER_AUDIT_HASH_LEN + 1];
    const char *values[4] = {seq, hex, events, pruned_by};
    PGresult *res = NULL;
    int64_t id = 0;
    int64_t through = 0;
    int64_t before = 0;
    enum coffer_err r;

    *deleted = 0;
    for (size_t i = 0; i < COFFER_AUDIT_HASH_LEN; i++) {
        (void)snprintf(hex + 2 * i, 3, "%02x", export_sha256[i]);
    }
    (void)snprintf(seq, sizeof(seq), "%" PRId64, through_seq);
    (void)snprintf(events, sizeof(events), "%" PRId64, export_events);
    if ((r = reader_exec(s, "BEGIN", 0, NULL, "beginning the prune", &res)) != COFFER_OK) {
        return r;
    }
    PQclear(res);
    if ((r = reader_exec(s, before_sql, 0, NULL, "reading audit prunes", &res)) != COFFER_OK ||
        (r = store_one_row(res, "coffer.audit_prunes")) != COFFER_OK ||
        (r = parse_i64(val(res, 0, 0), "previous prune", 0, &before)) != COFFER_OK) {
        goto out;
    }
    PQclear(res);
    if ((r = reader_exec(s, insert_sql, 4, values, "recording the prune", &res)) != COFFER_OK) {
        goto out;
    }
    if (PQntuples(res) != 1) {
        r = coffer_err_set(COFFER_E_NOT_FOUND, "there is no checkpoint %" PRId64, through_seq);
        goto out;
    }
    if ((r = parse_i64(val(res, 0, 0), "coffer.audit_prunes.id", 1, &id)) != COFFER_OK ||
        (r = parse_i64(val(res, 0, 1), "coffer.audit_prunes.through_event", 0, &through)) !=
            COFFER_OK) {
        goto out;
    }
    PQclear(res);
    {
        char a[24];
        char b[24];
        const char *dv[2] = {a, b};

        (void)snprintf(a, sizeof(a), "%" PRId64, before);
        (void)snprintf(b, sizeof(b), "%" PRId64, through);
        if ((r = reader_exec(s, delete_sql, 2, dv, "deleting the pruned events", &res)) !=
                COFFER_OK ||
            (r = parse_i64(val(res, 0, 0), "deleted events", 0, deleted)) != COFFER_OK) {
            goto out;
        }
        PQclear(res);
        (void)snprintf(a, sizeof(a), "%" PRId64, id);
        (void)snprintf(b, sizeof(b), "%" PRId64, *deleted);
        if ((r = reader_exec(s, count_sql, 2, dv, "recording the count", &res)) != COFFER_OK) {
            goto out;
        }
    }
    PQclear(res);
    res = NULL;
    r = reader_exec(s, "COMMIT", 0, NULL, "committing the prune", &res);
out:
    PQclear(res);
    if (r != COFFER_OK) {
        PGresult *rb = PQexec(s->conn, "ROLLBACK");

        PQclear(rb);
        *deleted = 0;
    }
    return r;
}

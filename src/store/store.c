/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The connection: connecting without ever echoing a password, preparing every
 * statement once, transactions, executing with bound parameters (whole, or
 * sent and received in two halves), and mapping failures to Coffer errors.
 * Parameters and column readers are in rows.c, the superuser bootstrap in
 * bootstrap.c.
 *
 * This file must never build SQL text from input.
 */
#include "store/store_int.h"

/*
 * Settings of every connection. Every statement is schema-qualified, so
 * nothing may resolve through search_path. Every statement is written for
 * unique-index probes, so the generic plan is always right: forcing it saves
 * the planner run that PostgreSQL would otherwise repeat on each execution
 * of a statement whose array parameters make custom plans look cheaper.
 */
#define SESSION_SETUP                                                                              \
    "SELECT pg_catalog.set_config('search_path', 'pg_catalog', false), "                           \
    "pg_catalog.set_config('plan_cache_mode', 'force_generic_plan', false)"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coffer/log.h"
#include "coffer/mem.h"
#include "coffer/text.h"
#include "store/migrations.h"

#define CONNECT_TIMEOUT "5"
#define TARGET_MAX 256
#define MESSAGE_MAX 320

static const struct store_stmt *const *const all_stmts[] = {
    store_stmts_orgs,      store_stmts_master_keys, store_stmts_org_keys, store_stmts_creds,
    store_stmts_policy,    store_stmts_phase,       store_stmts_access,   store_stmts_audit,
    store_stmts_meta,      store_stmts_tokens,      store_stmts_requests, store_stmts_key_expiry,
    store_stmts_audit_log, store_stmts_audit_keys,  store_stmts_oauth2,
};

const char *coffer_key_state_str(enum coffer_key_state s)
{
    switch (s) {
    case COFFER_KEY_CURRENT:
        return "current";
    case COFFER_KEY_ACTIVE:
        return "active";
    case COFFER_KEY_RETIRED:
        return "retired";
    case COFFER_KEY_DESTROYED:
        return "destroyed";
    default:
        return "unknown";
    }
}

bool store_state_parse(const char *s, size_t len, enum coffer_key_state *out)
{
    static const enum coffer_key_state all[] = {COFFER_KEY_CURRENT, COFFER_KEY_ACTIVE,
                                                COFFER_KEY_RETIRED, COFFER_KEY_DESTROYED};
    size_t i;

    for (i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
        const char *name = coffer_key_state_str(all[i]);

        if (strlen(name) == len && strncmp(name, s, len) == 0) {
            *out = all[i];
            return true;
        }
    }
    return false;
}

/* ---- Input checks ------------------------------------------------------------ */

bool store_name_ok(const char *s, size_t len)
{
    size_t i;

    if (len == 0 || len > COFFER_NAME_MAX) {
        return false;
    }
    for (i = 0; i < len; i++) {
        char c = s[i];
        bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');

        if (!alnum && (i == 0 || (c != '_' && c != '-'))) {
            return false;
        }
    }
    return true;
}

enum coffer_err store_check_name(const char *name, const char *what)
{
    if (name == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "%s: missing", what);
    }
    if (!store_name_ok(name, strnlen(name, COFFER_NAME_MAX + 1))) {
        return coffer_err_set(COFFER_E_INVALID,
                              "%s: must be 1 to %d characters of a-z, 0-9, '_' and '-', "
                              "starting with a letter or digit",
                              what, COFFER_NAME_MAX);
    }
    return COFFER_OK;
}

enum coffer_err store_check_description(const char *description)
{
    if (!coffer_text_ok(description, strnlen(description, COFFER_POLICY_DESC_MAX + 1),
                        COFFER_POLICY_DESC_MAX)) {
        return coffer_err_set(COFFER_E_INVALID,
                              "a description is 1 to %u bytes of UTF-8 without control characters",
                              COFFER_POLICY_DESC_MAX);
    }
    return COFFER_OK;
}

bool store_key_name_ok(const char *s, size_t len)
{
    size_t i;

    if (len == 0 || len > COFFER_KEY_NAME_MAX) {
        return false;
    }
    for (i = 0; i < len; i++) {
        char c = s[i];
        bool word =
            (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';

        if (!word && (i == 0 || (c != '.' && c != '-'))) {
            return false;
        }
    }
    return true;
}

enum coffer_err store_check_version(uint32_t v, const char *what)
{
    if (v == 0 || v > INT32_MAX) {
        return coffer_err_set(COFFER_E_INVALID, "%s: version %" PRIu32 " is out of range 1..%d",
                              what, v, INT32_MAX);
    }
    return COFFER_OK;
}

/* ---- Messages without secrets ------------------------------------------------ */

/* Copies msg into out, folding newlines into "; " and dropping the trailing one. */
static void fold_message(const char *msg, char *out, size_t cap)
{
    size_t o = 0;
    size_t i;

    if (cap == 0) {
        return;
    }
    for (i = 0; msg != NULL && msg[i] != '\0' && o + 1 < cap; i++) {
        if (msg[i] == '\n' || msg[i] == '\r') {
            if (msg[i + 1] == '\0' || msg[i + 1] == '\n') {
                continue;
            }
            if (o + 3 >= cap) {
                break;
            }
            out[o++] = ';';
            out[o++] = ' ';
            continue;
        }
        out[o++] = msg[i];
    }
    out[o] = '\0';
}

void store_conn_message(PGconn *conn, char *out, size_t cap)
{
    fold_message(conn != NULL ? PQerrorMessage(conn) : "out of memory", out, cap);
}

/*
 * Describes the target of a conninfo by host, port, dbname and user only, so
 * that a password given in it can never reach a detail or a log line.
 * *password_out points into opts (or is NULL) so the caller can check that
 * libpq's own message does not quote it.
 */
static void describe_target(PQconninfoOption *opts, char *out, size_t cap,
                            const char **password_out)
{
    static const char *const shown[] = {"host", "hostaddr", "port", "dbname", "user"};
    size_t o = 0;
    size_t i;
    PQconninfoOption *opt;

    out[0] = '\0';
    *password_out = NULL;
    for (opt = opts; opt != NULL && opt->keyword != NULL; opt++) {
        if (strcmp(opt->keyword, "password") == 0 && opt->val != NULL && opt->val[0] != '\0') {
            *password_out = opt->val;
        }
    }
    for (i = 0; i < sizeof(shown) / sizeof(shown[0]); i++) {
        for (opt = opts; opt != NULL && opt->keyword != NULL; opt++) {
            int n;

            if (strcmp(opt->keyword, shown[i]) != 0 || opt->val == NULL || opt->val[0] == '\0') {
                continue;
            }
            n = snprintf(out + o, cap - o, "%s%s=%s", o == 0 ? "" : " ", shown[i], opt->val);
            if (n < 0 || (size_t)n >= cap - o) {
                return;
            }
            o += (size_t)n;
        }
    }
    if (o == 0) {
        snprintf(out, cap, "(libpq defaults)");
    }
}

static void quiet_notice(void *arg, const char *message)
{
    char line[MESSAGE_MAX];

    (void)arg;
    fold_message(message, line, sizeof(line));
    coffer_debug("store", "server notice: %s", line);
}

void store_quiet_notices(PGconn *conn)
{
    PQsetNoticeProcessor(conn, quiet_notice, NULL);
}

/* Runs one parameterless command on a bare connection. */
enum coffer_err store_run_command(PGconn *conn, const char *sql, const char *what)
{
    PGresult *res = PQexecParams(conn, sql, 0, NULL, NULL, NULL, NULL, 1);
    enum coffer_err r = COFFER_OK;
    ExecStatusType st = res != NULL ? PQresultStatus(res) : PGRES_FATAL_ERROR;

    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        r = store_pg_error(conn, res, what, NULL);
    }
    PQclear(res);
    return r;
}

enum coffer_err store_connect(const char *conninfo, PGconn **out)
{
    const char *keywords[4];
    const char *values[4];
    PQconninfoOption *opts = NULL;
    const char *password = NULL;
    char target[TARGET_MAX];
    char message[MESSAGE_MAX];
    char *parse_err = NULL;
    PGconn *conn = NULL;
    enum coffer_err r = COFFER_OK;
    int k = 0;

    *out = NULL;
    if (conninfo == NULL) {
        return coffer_err_set(COFFER_E_CONFIG, "database conninfo is missing");
    }
    opts = PQconninfoParse(conninfo, &parse_err);
    if (opts == NULL) {
        /* libpq's parse message may quote part of the string, password included. */
        PQfreemem(parse_err);
        return coffer_err_set(COFFER_E_CONFIG, "database conninfo is malformed");
    }
    describe_target(opts, target, sizeof(target), &password);

    /* Earlier entries are overridden by whatever the expanded conninfo sets. */
    for (PQconninfoOption *o = opts; o->keyword != NULL; o++) {
        if (strcmp(o->keyword, "connect_timeout") == 0 && o->val == NULL) {
            keywords[k] = "connect_timeout";
            values[k++] = CONNECT_TIMEOUT;
        }
    }
    keywords[k] = "fallback_application_name";
    values[k++] = "coffer";
    keywords[k] = "dbname";
    values[k++] = conninfo;
    keywords[k] = NULL;
    values[k] = NULL;

    conn = PQconnectdbParams(keywords, values, 1);
    if (conn == NULL) {
        r = coffer_err_set(COFFER_E_NOMEM, "allocating a database connection");
        goto out;
    }
    if (PQstatus(conn) != CONNECTION_OK) {
        store_conn_message(conn, message, sizeof(message));
        if (password != NULL && strstr(message, password) != NULL) {
            snprintf(message, sizeof(message),
                     "(libpq's message withheld: it quoted the password)");
        }
        r = coffer_err_set(COFFER_E_DB_UNAVAILABLE, "cannot connect to PostgreSQL at %s: %s",
                           target, message);
        goto out;
    }
    store_quiet_notices(conn);
    r = store_run_command(conn, SESSION_SETUP, "setting up the session");
out:
    PQconninfoFree(opts);
    if (r != COFFER_OK) {
        PQfinish(conn);
        return r;
    }
    *out = conn;
    return COFFER_OK;
}

/* ---- Error mapping ----------------------------------------------------------- */

enum coffer_err store_pg_error(PGconn *conn, const PGresult *res, const char *what, char *sqlstate)
{
    const char *state = res != NULL ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    const char *primary = res != NULL ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    char message[MESSAGE_MAX];

    if (state == NULL) {
        state = "";
    }
    if (sqlstate != NULL) {
        snprintf(sqlstate, 6, "%s", state);
    }
    if (primary != NULL) {
        fold_message(primary, message, sizeof(message));
    } else {
        store_conn_message(conn, message, sizeof(message));
    }
    /*
     * A failed result without a SQLSTATE is libpq's own report that the
     * server never answered (a write to a closed socket, say): libpq may
     * mark the connection bad only on its next read, so the status alone
     * does not tell.
     */
    if (conn == NULL || PQstatus(conn) == CONNECTION_BAD || strncmp(state, "08", 2) == 0 ||
        strcmp(state, "57P01") == 0 || strcmp(state, "57P02") == 0 || strcmp(state, "57P03") == 0 ||
        (res != NULL && state[0] == '\0' && PQresultStatus(res) == PGRES_FATAL_ERROR)) {
        return coffer_err_set(COFFER_E_DB_UNAVAILABLE, "%s: lost the database connection: %s", what,
                              message);
    }
    if (res == NULL) {
        return coffer_err_set(COFFER_E_NOMEM, "%s: libpq returned no result: %s", what, message);
    }
    /* Class 53, insufficient resources (a full disk, no memory): refused until there is room. */
    if (strncmp(state, "53", 2) == 0) {
        return coffer_err_set(COFFER_E_DB_UNAVAILABLE,
                              "%s: the database is out of resources (SQLSTATE %s): %s", what, state,
                              message);
    }
    if (strcmp(state, "23505") == 0) {
        const char *constraint = PQresultErrorField(res, PG_DIAG_CONSTRAINT_NAME);

        return coffer_err_set(COFFER_E_EXISTS, "%s: already exists (constraint %s)", what,
                              constraint != NULL ? constraint : "unknown");
    }
    if (strcmp(state, "40001") == 0 || strcmp(state, "40P01") == 0) {
        return coffer_err_set(COFFER_E_CONFLICT, "%s: SQLSTATE %s: %s", what, state, message);
    }
    return coffer_err_set(COFFER_E_DB, "%s: SQLSTATE %s: %s", what, state[0] ? state : "none",
                          message);
}

enum coffer_err store_result_error(struct coffer_store *s, const PGresult *res, const char *what)
{
    return store_pg_error(s->conn, res, what, s->sqlstate);
}

bool store_sqlstate_is(const struct coffer_store *s, const char *code)
{
    return strcmp(s->sqlstate, code) == 0;
}

/* ---- Statements -------------------------------------------------------------- */

static enum coffer_err prepare_all(PGconn *conn)
{
    size_t i;

    for (i = 0; i < sizeof(all_stmts) / sizeof(all_stmts[0]); i++) {
        const struct store_stmt *const *list = all_stmts[i];

        for (; *list != NULL; list++) {
            const struct store_stmt *st = *list;
            PGresult *res;
            enum coffer_err r = COFFER_OK;

            res = PQprepare(conn, st->name, st->sql, st->nparams, st->types);
            if (res == NULL || PQresultStatus(res) != PGRES_COMMAND_OK) {
                char what[96];

                snprintf(what, sizeof(what), "preparing statement %s", st->name);
                r = store_pg_error(conn, res, what, NULL);
            }
            PQclear(res);
            if (r != COFFER_OK) {
                return r;
            }
        }
    }
    return COFFER_OK;
}

/* Names the migrations this build has that the database lacks, for the detail. */
static void missing_migrations(int applied, char *out, size_t cap)
{
    size_t o = 0;
    size_t i;

    out[0] = '\0';
    for (i = 0; i < coffer_migrations_count; i++) {
        int n;

        if (coffer_migrations[i].version <= applied) {
            continue;
        }
        n = snprintf(out + o, cap - o, "%s%s", o == 0 ? "" : ", ", coffer_migrations[i].name);
        if (n < 0 || (size_t)n >= cap - o) {
            return;
        }
        o += (size_t)n;
    }
}

static enum coffer_err check_schema(PGconn *conn)
{
    static const char sql[] = "SELECT max(version) FROM coffer.schema_migrations";
    PGresult *res = PQexecParams(conn, sql, 0, NULL, NULL, NULL, NULL, 1);
    int latest = coffer_store_schema_latest();
    uint32_t applied = 0;
    char missing[256];
    char state[6] = "";
    enum coffer_err r = COFFER_OK;

    if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK) {
        r = store_pg_error(conn, res, "reading coffer.schema_migrations", state);
        if (strcmp(state, "42P01") == 0 || strcmp(state, "3F000") == 0 ||
            strcmp(state, "42501") == 0) {
            r = coffer_err_set(COFFER_E_SCHEMA,
                               "the database has no Coffer schema (SQLSTATE %s); run the "
                               "migrations as coffer_owner (coffer_store_migrate) first",
                               state);
        }
        goto out;
    }
    if ((r = store_one_row(res, "coffer.schema_migrations")) != COFFER_OK ||
        (r = store_col_u32_or_zero(res, 0, 0, "coffer.schema_migrations.version", &applied)) !=
            COFFER_OK) {
        if (r == COFFER_E_NOT_FOUND) {
            r = coffer_err_set(COFFER_E_INTEGRITY, "coffer.schema_migrations: max() gave no row");
        }
        goto out;
    }
    if ((int64_t)applied < latest) {
        missing_migrations((int)applied, missing, sizeof(missing));
        r = coffer_err_set(COFFER_E_SCHEMA,
                           "the database schema is at migration %" PRIu32
                           ", this build needs %d (missing %s); run the migrations as "
                           "coffer_owner (coffer_store_migrate)",
                           applied, latest, missing);
        goto out;
    }
    if ((int64_t)applied > latest) {
        coffer_warn("store",
                    "the database schema is at migration %" PRIu32 ", newer than this build's %d",
                    applied, latest);
    }
out:
    PQclear(res);
    return r;
}

enum coffer_err coffer_store_open(const char *conninfo, struct coffer_store **out)
{
    struct coffer_store *s = NULL;
    enum coffer_err r;

    if (out == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "coffer_store_open: out is NULL");
    }
    *out = NULL;
    s = coffer_calloc(1, sizeof(*s));
    if (s == NULL) {
        return coffer_err_set(COFFER_E_NOMEM, "allocating a store");
    }
    if ((r = store_connect(conninfo, &s->conn)) != COFFER_OK) {
        goto out;
    }
    /* The schema check comes first: preparing against a missing table would hide the cause. */
    if ((r = check_schema(s->conn)) != COFFER_OK || (r = prepare_all(s->conn)) != COFFER_OK) {
        goto out;
    }
    *out = s;
    s = NULL;
out:
    coffer_store_close(&s);
    return r;
}

static enum coffer_err refuse_pending(const struct coffer_store *s, const char *what)
{
    if (s->pending != NULL) {
        return coffer_err_set(COFFER_E_STATE, "%s: statement %s is still in flight", what,
                              s->pending->name);
    }
    return COFFER_OK;
}

/* Reads and discards the answer of a statement in flight. */
static void discard_pending(struct coffer_store *s)
{
    PGresult *res;

    if (s->pending == NULL) {
        return;
    }
    while ((res = PQgetResult(s->conn)) != NULL) {
        PQclear(res);
    }
    s->pending = NULL;
}

void coffer_store_close(struct coffer_store **s)
{
    if (s == NULL || *s == NULL) {
        return;
    }
    discard_pending(*s);
    PQfinish((*s)->conn);
    coffer_free(*s);
    *s = NULL;
}

/*
 * Whether the server closed a connection that had nothing in flight. Such
 * a connection has nothing to read unless the server spoke unprompted: a
 * notice, or its last message before closing (a restart or shutdown),
 * followed by the end of the stream, which the second read meets.
 */
static bool closed_while_idle(struct coffer_store *s)
{
    for (int i = 0; i < 4; i++) {
        struct pollfd p = {.fd = PQsocket(s->conn), .events = POLLIN};

        if (poll(&p, 1, 0) <= 0) {
            return false;
        }
        if (PQconsumeInput(s->conn) == 0) {
            return true;
        }
    }
    return PQstatus(s->conn) != CONNECTION_OK;
}

/*
 * A connection lost between transactions is re-established once (the server
 * may have restarted); one lost inside a transaction is not, because the
 * caller's transaction is gone and must be seen to fail. Between
 * transactions, what the server sent while the connection was idle is read
 * first: a server that restarted meanwhile closed it, and a statement sent
 * on it would fail although a new connection would serve it.
 */
static enum coffer_err ensure_connected(struct coffer_store *s, const char *what)
{
    char message[MESSAGE_MAX];
    enum coffer_err r;

    if (PQstatus(s->conn) == CONNECTION_OK && (s->in_tx || !closed_while_idle(s))) {
        return COFFER_OK;
    }
    if (s->in_tx) {
        return coffer_err_set(COFFER_E_DB_UNAVAILABLE,
                              "%s: the database connection was lost inside a transaction", what);
    }
    PQreset(s->conn);
    if (PQstatus(s->conn) != CONNECTION_OK) {
        store_conn_message(s->conn, message, sizeof(message));
        return coffer_err_set(COFFER_E_DB_UNAVAILABLE, "%s: cannot reconnect to PostgreSQL: %s",
                              what, message);
    }
    coffer_info("store", "reconnected to PostgreSQL");
    if ((r = store_run_command(s->conn, SESSION_SETUP, "setting up the session")) != COFFER_OK ||
        (!s->reader && (r = prepare_all(s->conn)) != COFFER_OK)) {
        return coffer_err_wrap(r, "%s: after reconnecting", what);
    }
    return COFFER_OK;
}

bool coffer_store_in_flight(const struct coffer_store *s)
{
    return s->pending != NULL;
}

enum coffer_err store_send(struct coffer_store *s, const struct store_stmt *st,
                           const struct store_params *p, const char *what)
{
    enum coffer_err r;

    s->sqlstate[0] = '\0';
    if ((r = refuse_pending(s, what)) != COFFER_OK) {
        return r;
    }
    if (p->overflow || p->n != st->nparams) {
        return coffer_err_set(COFFER_E_INVALID, "%s: statement %s bound %d parameters, takes %d",
                              what, st->name, p->n, st->nparams);
    }
    if ((r = ensure_connected(s, what)) != COFFER_OK) {
        return r;
    }
    if (PQsendQueryPrepared(s->conn, st->name, p->n, p->values, p->lengths, p->formats, 1) != 1) {
        char message[MESSAGE_MAX];

        store_conn_message(s->conn, message, sizeof(message));
        if (PQstatus(s->conn) == CONNECTION_BAD) {
            return coffer_err_set(COFFER_E_DB_UNAVAILABLE, "%s: lost the database connection: %s",
                                  what, message);
        }
        return coffer_err_set(COFFER_E_DB, "%s: could not send statement %s: %s", what, st->name,
                              message);
    }
    s->pending = st;
    return COFFER_OK;
}

enum coffer_err store_recv(struct coffer_store *s, const char *what, PGresult **res)
{
    const struct store_stmt *st = s->pending;
    PGresult *first;
    PGresult *extra;
    ExecStatusType status;
    enum coffer_err r;

    *res = NULL;
    if (st == NULL) {
        return coffer_err_set(COFFER_E_STATE, "%s: no statement in flight", what);
    }
    first = PQgetResult(s->conn);
    /* One statement gives one result; read to the end so the connection is free again. */
    while ((extra = PQgetResult(s->conn)) != NULL) {
        PQclear(extra);
    }
    s->pending = NULL;
    status = first != NULL ? PQresultStatus(first) : PGRES_FATAL_ERROR;
    if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK) {
        if (status == PGRES_TUPLES_OK && PQnfields(first) != st->ncols) {
            r = coffer_err_set(COFFER_E_INTEGRITY, "%s: statement %s returned %d columns, want %d",
                               what, st->name, PQnfields(first), st->ncols);
            PQclear(first);
            return r;
        }
        *res = first;
        return COFFER_OK;
    }
    r = store_result_error(s, first, what);
    PQclear(first);
    return r;
}

enum coffer_err store_exec(struct coffer_store *s, const struct store_stmt *st,
                           const struct store_params *p, const char *what, PGresult **res)
{
    enum coffer_err r;

    *res = NULL;
    if ((r = store_send(s, st, p, what)) != COFFER_OK) {
        return r;
    }
    return store_recv(s, what, res);
}

long store_affected(const PGresult *res)
{
    const char *t = PQcmdTuples((PGresult *)res);
    char *end = NULL;
    long v;

    if (t == NULL || t[0] == '\0') {
        return -1;
    }
    errno = 0;
    v = strtol(t, &end, 10);
    if (errno != 0 || end == t || *end != '\0' || v < 0) {
        return -1;
    }
    return v;
}

enum coffer_err store_one_row(const PGresult *res, const char *what)
{
    int n = PQntuples(res);

    if (n == 0) {
        return coffer_err_set(COFFER_E_NOT_FOUND, "%s: not found", what);
    }
    if (n != 1) {
        return coffer_err_set(COFFER_E_INTEGRITY, "%s: %d rows where one was expected", what, n);
    }
    return COFFER_OK;
}

/* ---- Readiness ------------------------------------------------------------------ */

enum coffer_err coffer_store_ping(struct coffer_store *s)
{
    enum coffer_err r;

    if (s == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "ping: no store");
    }
    if (s->in_tx) {
        return COFFER_OK; /* a transaction in progress is proof enough */
    }
    if ((r = refuse_pending(s, "ping")) != COFFER_OK) {
        return r;
    }
    if ((r = ensure_connected(s, "ping")) != COFFER_OK) {
        return r;
    }
    return store_run_command(s->conn, "SELECT 1", "ping");
}

/* ---- Transactions ------------------------------------------------------------- */

enum coffer_err coffer_store_begin(struct coffer_store *s)
{
    enum coffer_err r;

    if (s == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "begin: no store");
    }
    if (s->in_tx) {
        return coffer_err_set(COFFER_E_STATE, "begin: a transaction is already open");
    }
    if ((r = refuse_pending(s, "begin")) != COFFER_OK) {
        return r;
    }
    if ((r = ensure_connected(s, "begin")) != COFFER_OK ||
        (r = store_run_command(s->conn, "BEGIN", "begin")) != COFFER_OK) {
        return r;
    }
    s->in_tx = true;
    return COFFER_OK;
}

enum coffer_err coffer_store_commit(struct coffer_store *s)
{
    PGresult *res = NULL;
    enum coffer_err r = COFFER_OK;

    if (s == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "commit: no store");
    }
    if (!s->in_tx) {
        return coffer_err_set(COFFER_E_STATE, "commit: no transaction is open");
    }
    if (PQtransactionStatus(s->conn) == PQTRANS_INERROR) {
        coffer_store_rollback(s);
        return coffer_err_set(COFFER_E_DB,
                              "commit: an earlier statement failed, so the transaction was "
                              "rolled back");
    }
    s->in_tx = false;
    res = PQexecParams(s->conn, "COMMIT", 0, NULL, NULL, NULL, NULL, 1);
    if (res == NULL || PQresultStatus(res) != PGRES_COMMAND_OK) {
        r = store_result_error(s, res, "commit");
        if (r == COFFER_E_DB_UNAVAILABLE) {
            r = coffer_err_wrap(r, "commit outcome unknown");
        }
        goto out;
    }
    /* The server answers COMMIT of a failed transaction with a ROLLBACK tag. */
    if (strcmp(PQcmdStatus(res), "COMMIT") != 0) {
        r = coffer_err_set(COFFER_E_DB, "commit: the server rolled the transaction back (%s)",
                           PQcmdStatus(res));
    }
out:
    PQclear(res);
    return r;
}

void coffer_store_rollback(struct coffer_store *s)
{
    PGresult *res;

    if (s == NULL) {
        return;
    }
    discard_pending(s);
    if (s->in_tx && PQstatus(s->conn) == CONNECTION_OK &&
        PQtransactionStatus(s->conn) != PQTRANS_IDLE) {
        res = PQexecParams(s->conn, "ROLLBACK", 0, NULL, NULL, NULL, NULL, 1);
        if (res == NULL || PQresultStatus(res) != PGRES_COMMAND_OK) {
            coffer_warn("store", "rollback failed; the connection will be reset");
        }
        PQclear(res);
    }
    s->in_tx = false;
}

enum coffer_err store_in_tx(struct coffer_store *s,
                            enum coffer_err (*fn)(struct coffer_store *, void *), void *arg,
                            const char *what)
{
    enum coffer_err r;

    if (s->in_tx) {
        return fn(s, arg);
    }
    if ((r = coffer_store_begin(s)) != COFFER_OK) {
        return coffer_err_wrap(r, "%s", what);
    }
    if ((r = fn(s, arg)) != COFFER_OK) {
        coffer_store_rollback(s);
        return r;
    }
    if ((r = coffer_store_commit(s)) != COFFER_OK) {
        return coffer_err_wrap(r, "%s", what);
    }
    return COFFER_OK;
}

enum coffer_err store_require_tx(const struct coffer_store *s, const char *what)
{
    if (!s->in_tx) {
        return coffer_err_set(COFFER_E_STATE, "%s: must run inside a transaction", what);
    }
    return COFFER_OK;
}

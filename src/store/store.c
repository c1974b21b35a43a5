/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The connection: connecting without ever echoing a password, preparing every
 * statement once, transactions, executing with bound parameters, mapping
 * failures to Coffer errors, and the validated column readers that every
 * query file decodes rows with. Also the superuser bootstrap of roles and
 * database.
 *
 * This file must never build SQL text from input (the one identifier that
 * cannot be a parameter, the database name in bootstrap, is checked against
 * a strict pattern and then quoted by libpq), and must never hand out a
 * column value it has not checked for type, NULL and length.
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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coffer/log.h"
#include "coffer/mem.h"
#include "store/migrations.h"

#define CONNECT_TIMEOUT "5"
#define TARGET_MAX 256
#define MESSAGE_MAX 320

static const struct store_stmt *const *const all_stmts[] = {
    store_stmts_orgs,
    store_stmts_master_keys,
    store_stmts_org_keys,
    store_stmts_creds,
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

static bool name_ok(const char *s, size_t len)
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
    if (!name_ok(name, strnlen(name, COFFER_NAME_MAX + 1))) {
        return coffer_err_set(COFFER_E_INVALID,
                              "%s: must be 1 to %d characters of a-z, 0-9, '_' and '-', "
                              "starting with a letter or digit",
                              what, COFFER_NAME_MAX);
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
static enum coffer_err run_command(PGconn *conn, const char *sql, const char *what)
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
    r = run_command(conn, SESSION_SETUP, "setting up the session");
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
    if (conn == NULL || PQstatus(conn) == CONNECTION_BAD || strncmp(state, "08", 2) == 0 ||
        strcmp(state, "57P01") == 0 || strcmp(state, "57P02") == 0 || strcmp(state, "57P03") == 0) {
        return coffer_err_set(COFFER_E_DB_UNAVAILABLE, "%s: lost the database connection: %s", what,
                              message);
    }
    if (res == NULL) {
        return coffer_err_set(COFFER_E_NOMEM, "%s: libpq returned no result: %s", what, message);
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
 * A connection lost between transactions is re-established once (the server
 * may have restarted); one lost inside a transaction is not, because the
 * caller's transaction is gone and must be seen to fail.
 */
static enum coffer_err ensure_connected(struct coffer_store *s, const char *what)
{
    char message[MESSAGE_MAX];
    enum coffer_err r;

    if (PQstatus(s->conn) == CONNECTION_OK) {
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
    if ((r = run_command(s->conn, SESSION_SETUP, "setting up the session")) != COFFER_OK ||
        (r = prepare_all(s->conn)) != COFFER_OK) {
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
        (r = run_command(s->conn, "BEGIN", "begin")) != COFFER_OK) {
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

/* ---- Parameters ------------------------------------------------------------------ */

static int next_param(struct store_params *p)
{
    if (p->n >= STORE_MAX_PARAMS) {
        p->overflow = true;
        return -1;
    }
    return p->n++;
}

void store_param_uuid(struct store_params *p, const struct coffer_uuid *u)
{
    int i = next_param(p);

    if (i < 0) {
        return;
    }
    p->values[i] = (const char *)u->b;
    p->lengths[i] = (int)sizeof(u->b);
    p->formats[i] = 1;
}

void store_param_null(struct store_params *p)
{
    int i = next_param(p);

    if (i < 0) {
        return;
    }
    p->values[i] = NULL;
    p->lengths[i] = 0;
    p->formats[i] = 1;
}

void store_param_int4(struct store_params *p, int32_t v)
{
    int i = next_param(p);
    uint32_t u = (uint32_t)v;

    if (i < 0) {
        return;
    }
    p->ints[i][0] = (unsigned char)(u >> 24);
    p->ints[i][1] = (unsigned char)(u >> 16);
    p->ints[i][2] = (unsigned char)(u >> 8);
    p->ints[i][3] = (unsigned char)u;
    p->values[i] = (const char *)p->ints[i];
    p->lengths[i] = 4;
    p->formats[i] = 1;
}

void store_param_int8(struct store_params *p, int64_t v)
{
    int i = next_param(p);
    uint64_t u = (uint64_t)v;
    int b;

    if (i < 0) {
        return;
    }
    for (b = 0; b < 8; b++) {
        p->ints[i][b] = (unsigned char)(u >> (56 - 8 * b));
    }
    p->values[i] = (const char *)p->ints[i];
    p->lengths[i] = 8;
    p->formats[i] = 1;
}

void store_param_text(struct store_params *p, const char *s)
{
    int i = next_param(p);

    if (i < 0) {
        return;
    }
    p->values[i] = s;
    p->lengths[i] = 0;
    p->formats[i] = 0;
}

void store_param_bytea(struct store_params *p, const unsigned char *b, size_t len)
{
    store_param_binary(p, b, len);
}

void store_param_binary(struct store_params *p, const unsigned char *b, size_t len)
{
    static const unsigned char empty[1] = {0};
    int i = next_param(p);

    if (i < 0) {
        return;
    }
    if (len > INT_MAX) {
        p->overflow = true;
        return;
    }
    /* libpq reads a NULL value as SQL NULL; an empty blob still needs a pointer. */
    p->values[i] = (const char *)(b != NULL ? b : empty);
    p->lengths[i] = (int)len;
    p->formats[i] = 1;
}

enum coffer_err store_encode_array(uint32_t elem_oid, size_t n, const void *const *elems,
                                   const size_t *lens, struct coffer_buf *out)
{
    enum coffer_err r;
    size_t i;

    /* ndim, has-nulls flag, element type, then length and lower bound of the one dimension. */
    if ((r = coffer_buf_put_u32(out, 1)) != COFFER_OK ||
        (r = coffer_buf_put_u32(out, 0)) != COFFER_OK ||
        (r = coffer_buf_put_u32(out, elem_oid)) != COFFER_OK ||
        (r = coffer_buf_put_u32(out, (uint32_t)n)) != COFFER_OK ||
        (r = coffer_buf_put_u32(out, 1)) != COFFER_OK) {
        return r;
    }
    for (i = 0; i < n; i++) {
        if ((r = coffer_buf_put_lv32(out, elems[i], lens[i])) != COFFER_OK) {
            return r;
        }
    }
    return COFFER_OK;
}

enum coffer_err store_encode_text_array(char *const *names, size_t n, struct coffer_buf *out)
{
    const void *elems[COFFER_KEYS_MAX];
    size_t lens[COFFER_KEYS_MAX];
    size_t i;

    if (n == 0 || n > COFFER_KEYS_MAX) {
        return coffer_err_set(COFFER_E_INVALID, "key names: %zu names, want 1..%d", n,
                              COFFER_KEYS_MAX);
    }
    for (i = 0; i < n; i++) {
        lens[i] = names[i] != NULL ? strnlen(names[i], COFFER_KEY_NAME_MAX + 1) : 0;
        if (names[i] == NULL || !store_key_name_ok(names[i], lens[i])) {
            return coffer_err_set(COFFER_E_INVALID, "key name %zu is not a valid key name", i);
        }
        elems[i] = names[i];
    }
    return store_encode_array(STORE_OID_TEXT, n, elems, lens, out);
}

/* ---- Column readers ------------------------------------------------------------------ */

/* Locates a column value after checking its type; *p NULL for SQL NULL. */
static enum coffer_err col_raw(const PGresult *res, int row, int col, const char *where,
                               unsigned int oid, const unsigned char **p, size_t *len)
{
    int n;

    *p = NULL;
    *len = 0;
    if (row < 0 || row >= PQntuples(res) || col < 0 || col >= PQnfields(res)) {
        return coffer_err_set(COFFER_E_INTEGRITY, "%s: row %d column %d is not in the result",
                              where, row, col);
    }
    if (PQftype(res, col) != oid) {
        return coffer_err_set(COFFER_E_INTEGRITY, "%s: has type oid %u, want %u", where,
                              PQftype(res, col), oid);
    }
    if (PQfformat(res, col) != 1) {
        return coffer_err_set(COFFER_E_INTEGRITY, "%s: not in binary format", where);
    }
    if (PQgetisnull(res, row, col)) {
        return COFFER_OK;
    }
    n = PQgetlength(res, row, col);
    if (n < 0) {
        return coffer_err_set(COFFER_E_INTEGRITY, "%s: negative length", where);
    }
    *p = (const unsigned char *)PQgetvalue(res, row, col);
    *len = (size_t)n;
    return COFFER_OK;
}

static enum coffer_err col_required(const PGresult *res, int row, int col, const char *where,
                                    unsigned int oid, const unsigned char **p, size_t *len)
{
    enum coffer_err r = col_raw(res, row, col, where, oid, p, len);

    if (r == COFFER_OK && *p == NULL) {
        return coffer_err_set(COFFER_E_INTEGRITY, "%s: is NULL", where);
    }
    return r;
}

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

enum coffer_err store_col_uuid(const PGresult *res, int row, int col, const char *where,
                               struct coffer_uuid *out)
{
    const unsigned char *p;
    size_t len;
    enum coffer_err r;

    if ((r = col_required(res, row, col, where, STORE_OID_UUID, &p, &len)) != COFFER_OK) {
        return r;
    }
    if (len != sizeof(out->b)) {
        return coffer_err_set(COFFER_E_INTEGRITY, "%s: uuid of %zu bytes, want 16", where, len);
    }
    coffer_memcpy(out->b, p, sizeof(out->b));
    return COFFER_OK;
}

static enum coffer_err decode_u32(const unsigned char *p, size_t len, const char *where,
                                  uint32_t min, uint32_t *out)
{
    int32_t v;

    if (len != 4) {
        return coffer_err_set(COFFER_E_INTEGRITY, "%s: int4 of %zu bytes", where, len);
    }
    v = (int32_t)be32(p);
    if (v < 0 || (uint32_t)v < min) {
        return coffer_err_set(COFFER_E_INTEGRITY, "%s: %" PRId32 " is out of range %" PRIu32 "..%d",
                              where, v, min, INT32_MAX);
    }
    *out = (uint32_t)v;
    return COFFER_OK;
}

enum coffer_err store_col_u32(const PGresult *res, int row, int col, const char *where,
                              uint32_t min, uint32_t *out)
{
    const unsigned char *p;
    size_t len;
    enum coffer_err r;

    if ((r = col_required(res, row, col, where, STORE_OID_INT4, &p, &len)) != COFFER_OK) {
        return r;
    }
    return decode_u32(p, len, where, min, out);
}

enum coffer_err store_col_u32_or_zero(const PGresult *res, int row, int col, const char *where,
                                      uint32_t *out)
{
    const unsigned char *p;
    size_t len;
    enum coffer_err r;

    *out = 0;
    if ((r = col_raw(res, row, col, where, STORE_OID_INT4, &p, &len)) != COFFER_OK) {
        return r;
    }
    if (p == NULL) {
        return COFFER_OK;
    }
    return decode_u32(p, len, where, 1, out);
}

enum coffer_err store_col_count(const PGresult *res, int row, int col, const char *where,
                                int64_t *out)
{
    const unsigned char *p;
    size_t len;
    uint64_t u;
    enum coffer_err r;

    if ((r = col_required(res, row, col, where, STORE_OID_INT8, &p, &len)) != COFFER_OK) {
        return r;
    }
    if (len != 8) {
        return coffer_err_set(COFFER_E_INTEGRITY, "%s: int8 of %zu bytes", where, len);
    }
    u = (uint64_t)be32(p) << 32 | be32(p + 4);
    if (u > (uint64_t)INT64_MAX) {
        return coffer_err_set(COFFER_E_INTEGRITY, "%s: negative count", where);
    }
    *out = (int64_t)u;
    return COFFER_OK;
}

static enum coffer_err text_raw(const PGresult *res, int row, int col, const char *where,
                                const unsigned char **p, size_t *len)
{
    enum coffer_err r;

    if ((r = col_required(res, row, col, where, STORE_OID_TEXT, p, len)) != COFFER_OK) {
        return r;
    }
    if (memchr(*p, '\0', *len) != NULL) {
        return coffer_err_set(COFFER_E_INTEGRITY, "%s: contains a NUL byte", where);
    }
    return COFFER_OK;
}

enum coffer_err store_col_text(const PGresult *res, int row, int col, const char *where, char *out,
                               size_t cap)
{
    const unsigned char *p;
    size_t len;
    enum coffer_err r;

    if ((r = text_raw(res, row, col, where, &p, &len)) != COFFER_OK) {
        return r;
    }
    if (len >= cap) {
        return coffer_err_set(COFFER_E_INTEGRITY, "%s: %zu bytes, at most %zu allowed", where, len,
                              cap - 1);
    }
    coffer_memcpy(out, p, len);
    out[len] = '\0';
    return COFFER_OK;
}

enum coffer_err store_col_bytea_exact(const PGresult *res, int row, int col, const char *where,
                                      unsigned char *out, size_t len)
{
    size_t got = 0;

    return store_col_bytea_range(res, row, col, where, out, len, len, &got);
}

enum coffer_err store_col_bytea_range(const PGresult *res, int row, int col, const char *where,
                                      unsigned char *out, size_t min, size_t max, size_t *len)
{
    const unsigned char *p;
    size_t n;
    enum coffer_err r;

    *len = 0;
    if ((r = col_required(res, row, col, where, STORE_OID_BYTEA, &p, &n)) != COFFER_OK) {
        return r;
    }
    if (n < min || n > max) {
        if (min == max) {
            return coffer_err_set(COFFER_E_INTEGRITY, "%s: %zu bytes, want %zu", where, n, min);
        }
        return coffer_err_set(COFFER_E_INTEGRITY, "%s: %zu bytes, want %zu..%zu", where, n, min,
                              max);
    }
    coffer_memcpy(out, p, n);
    *len = n;
    return COFFER_OK;
}

enum coffer_err store_col_bytea_alloc(const PGresult *res, int row, int col, const char *where,
                                      size_t max, unsigned char **out, size_t *len)
{
    const unsigned char *p;
    size_t n;
    enum coffer_err r;

    *out = NULL;
    *len = 0;
    if ((r = col_required(res, row, col, where, STORE_OID_BYTEA, &p, &n)) != COFFER_OK) {
        return r;
    }
    if (n == 0 || n > max) {
        return coffer_err_set(COFFER_E_INTEGRITY, "%s: %zu bytes, want 1..%zu", where, n, max);
    }
    *out = coffer_calloc(1, n);
    if (*out == NULL) {
        return coffer_err_set(COFFER_E_NOMEM, "%s: %zu bytes", where, n);
    }
    coffer_memcpy(*out, p, n);
    *len = n;
    return COFFER_OK;
}

enum coffer_err store_col_state(const PGresult *res, int row, int col, const char *where,
                                enum coffer_key_state *out)
{
    const unsigned char *p;
    size_t len;
    enum coffer_err r;

    if ((r = text_raw(res, row, col, where, &p, &len)) != COFFER_OK) {
        return r;
    }
    if (!store_state_parse((const char *)p, len, out)) {
        return coffer_err_set(COFFER_E_INTEGRITY,
                              "%s: unknown key state (want current, active, retired or destroyed)",
                              where);
    }
    return COFFER_OK;
}

enum coffer_err store_col_name(const PGresult *res, int row, int col, const char *where,
                               char out[COFFER_NAME_MAX + 1])
{
    const unsigned char *p;
    size_t len;
    enum coffer_err r;

    if ((r = text_raw(res, row, col, where, &p, &len)) != COFFER_OK) {
        return r;
    }
    if (!name_ok((const char *)p, len)) {
        return coffer_err_set(COFFER_E_INTEGRITY, "%s: not a valid name", where);
    }
    coffer_memcpy(out, p, len);
    out[len] = '\0';
    return COFFER_OK;
}

enum coffer_err store_col_mech(const PGresult *res, int row, int col, const char *where,
                               const char *expect, char out[COFFER_MECH_NAME_MAX + 1])
{
    const unsigned char *p;
    size_t len;
    enum coffer_err r;

    if ((r = text_raw(res, row, col, where, &p, &len)) != COFFER_OK) {
        return r;
    }
    if (len != strlen(expect) || strncmp((const char *)p, expect, len) != 0 ||
        len > COFFER_MECH_NAME_MAX) {
        return coffer_err_set(COFFER_E_INTEGRITY, "%s: unknown mechanism (want %s)", where, expect);
    }
    coffer_memcpy(out, p, len);
    out[len] = '\0';
    return COFFER_OK;
}

static void free_names(char **names, size_t n)
{
    size_t i;

    for (i = 0; names != NULL && i < n; i++) {
        coffer_free(names[i]);
    }
    coffer_free(names);
}

enum coffer_err store_col_key_names(const PGresult *res, int row, int col, const char *where,
                                    char ***out, size_t *n)
{
    const unsigned char *p;
    const unsigned char *elem;
    size_t len;
    struct coffer_cursor c;
    uint32_t ndim = 0;
    uint32_t flags = 0;
    uint32_t elemtype = 0;
    uint32_t count = 0;
    uint32_t lbound = 0;
    char **names = NULL;
    size_t i;
    enum coffer_err r;

    *out = NULL;
    *n = 0;
    if ((r = col_required(res, row, col, where, STORE_OID_TEXT_ARRAY, &p, &len)) != COFFER_OK) {
        return r;
    }
    c = coffer_cursor_init(p, len);
    if (coffer_cursor_u32(&c, &ndim) != COFFER_OK || coffer_cursor_u32(&c, &flags) != COFFER_OK ||
        coffer_cursor_u32(&c, &elemtype) != COFFER_OK) {
        return coffer_err_set(COFFER_E_INTEGRITY, "%s: truncated array header", where);
    }
    if (ndim != 1 || elemtype != STORE_OID_TEXT || flags > 1) {
        return coffer_err_set(COFFER_E_INTEGRITY,
                              "%s: want a one-dimensional text array (ndim %" PRIu32 ")", where,
                              ndim);
    }
    if (coffer_cursor_u32(&c, &count) != COFFER_OK || coffer_cursor_u32(&c, &lbound) != COFFER_OK) {
        return coffer_err_set(COFFER_E_INTEGRITY, "%s: truncated array header", where);
    }
    if (count == 0 || count > COFFER_KEYS_MAX) {
        return coffer_err_set(COFFER_E_INTEGRITY, "%s: %" PRIu32 " names, want 1..%d", where, count,
                              COFFER_KEYS_MAX);
    }
    names = coffer_calloc(count, sizeof(*names));
    if (names == NULL) {
        return coffer_err_set(COFFER_E_NOMEM, "%s: %" PRIu32 " names", where, count);
    }
    for (i = 0; i < count; i++) {
        uint32_t elen = 0;

        if (coffer_cursor_u32(&c, &elen) != COFFER_OK) {
            r = coffer_err_set(COFFER_E_INTEGRITY, "%s: truncated at name %zu", where, i);
            goto out;
        }
        if (elen == UINT32_MAX) {
            r = coffer_err_set(COFFER_E_INTEGRITY, "%s: name %zu is NULL", where, i);
            goto out;
        }
        if (elen == 0 || elen > COFFER_KEY_NAME_MAX) {
            r = coffer_err_set(COFFER_E_INTEGRITY, "%s: name %zu is %" PRIu32 " bytes, want 1..%d",
                               where, i, elen, COFFER_KEY_NAME_MAX);
            goto out;
        }
        if (coffer_cursor_bytes(&c, elen, &elem) != COFFER_OK) {
            r = coffer_err_set(COFFER_E_INTEGRITY, "%s: truncated at name %zu", where, i);
            goto out;
        }
        if (!store_key_name_ok((const char *)elem, elen)) {
            r = coffer_err_set(COFFER_E_INTEGRITY, "%s: name %zu is not a valid key name", where,
                               i);
            goto out;
        }
        names[i] = coffer_strndup((const char *)elem, elen);
        if (names[i] == NULL) {
            r = coffer_err_set(COFFER_E_NOMEM, "%s: name %zu", where, i);
            goto out;
        }
    }
    if (coffer_cursor_end(&c) != COFFER_OK) {
        r = coffer_err_set(COFFER_E_INTEGRITY, "%s: %zu trailing bytes", where, c.left);
        goto out;
    }
    *out = names;
    *n = count;
    names = NULL;
    r = COFFER_OK;
out:
    free_names(names, count);
    return r;
}

/* ---- Bootstrap ------------------------------------------------------------------------ */

/* The role names are fixed; a concurrent bootstrap creating the same role is not an error. */
static const char bootstrap_roles_sql[] =
    "DO $coffer$\n"
    "DECLARE r text;\n"
    "BEGIN\n"
    "  FOREACH r IN ARRAY ARRAY['coffer_owner', 'coffer_app', 'coffer_auditor'] LOOP\n"
    "    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = r) THEN\n"
    "      BEGIN\n"
    "        EXECUTE pg_catalog.format('CREATE ROLE %I LOGIN', r);\n"
    "      EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;\n"
    "      END;\n"
    "    END IF;\n"
    "  END LOOP;\n"
    "END\n"
    "$coffer$";

static bool dbname_ok(const char *s)
{
    size_t len = strnlen(s, 64);
    size_t i;

    if (len == 0 || len > 63) {
        return false;
    }
    for (i = 0; i < len; i++) {
        char c = s[i];
        bool ok = (c >= 'a' && c <= 'z') || c == '_' || (i > 0 && c >= '0' && c <= '9');

        if (!ok) {
            return false;
        }
    }
    return true;
}

/* Runs head + quoted identifier + tail, all fixed text but the checked, quoted name. */
static enum coffer_err run_built(PGconn *conn, const char *head, const char *quoted,
                                 const char *tail, const char *what, char *sqlstate)
{
    char sql[256];
    PGresult *res;
    enum coffer_err r = COFFER_OK;
    int n = snprintf(sql, sizeof(sql), "%s%s%s", head, quoted, tail);

    if (n < 0 || (size_t)n >= sizeof(sql)) {
        return coffer_err_set(COFFER_E_INVALID, "%s: statement too long", what);
    }
    res = PQexec(conn, sql);
    if (res == NULL || PQresultStatus(res) != PGRES_COMMAND_OK) {
        r = store_pg_error(conn, res, what, sqlstate);
    }
    PQclear(res);
    return r;
}

/* *owner receives the owner of dbname, or "" if there is no such database. */
static enum coffer_err database_owner(PGconn *conn, const char *dbname, char *owner, size_t cap)
{
    static const char sql[] = "SELECT pg_catalog.pg_get_userbyid(datdba)::text "
                              "FROM pg_catalog.pg_database WHERE datname = $1";
    const char *values[1] = {dbname};
    PGresult *res = PQexecParams(conn, sql, 1, NULL, values, NULL, NULL, 1);
    enum coffer_err r = COFFER_OK;

    owner[0] = '\0';
    if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK) {
        r = store_pg_error(conn, res, "looking up the database", NULL);
        goto out;
    }
    if (PQntuples(res) == 1) {
        r = store_col_text(res, 0, 0, "pg_database.datdba", owner, cap);
    }
out:
    PQclear(res);
    return r;
}

enum coffer_err coffer_store_bootstrap(const char *superuser_conninfo, const char *dbname)
{
    PGconn *conn = NULL;
    char *quoted = NULL;
    char owner[128];
    char state[6] = "";
    enum coffer_err r;

    if (dbname == NULL || !dbname_ok(dbname)) {
        return coffer_err_set(COFFER_E_INVALID, "database name must match ^[a-z_][a-z0-9_]{0,62}$");
    }
    if ((r = store_connect(superuser_conninfo, &conn)) != COFFER_OK) {
        return r;
    }
    if ((r = run_command(conn, bootstrap_roles_sql, "creating the Coffer roles")) != COFFER_OK) {
        goto out;
    }
    quoted = PQescapeIdentifier(conn, dbname, strlen(dbname));
    if (quoted == NULL) {
        r = coffer_err_set(COFFER_E_NOMEM, "quoting the database name");
        goto out;
    }
    if ((r = database_owner(conn, dbname, owner, sizeof(owner))) != COFFER_OK) {
        goto out;
    }
    if (owner[0] == '\0') {
        /* CREATE DATABASE takes no parameters; the name was checked and is quoted. */
        r = run_built(conn, "CREATE DATABASE ", quoted, " OWNER coffer_owner",
                      "creating the database", state);
        if (r != COFFER_OK && strcmp(state, "42P04") != 0) {
            goto out;
        }
        if ((r = database_owner(conn, dbname, owner, sizeof(owner))) != COFFER_OK) {
            goto out;
        }
    }
    if (strcmp(owner, "coffer_owner") != 0) {
        r = coffer_err_set(COFFER_E_CONFIG,
                           "database %s exists and is owned by %s, not coffer_owner", dbname,
                           owner);
        goto out;
    }
    if ((r = run_built(conn, "REVOKE ALL ON DATABASE ", quoted, " FROM PUBLIC",
                       "revoking database access from PUBLIC", NULL)) != COFFER_OK ||
        (r = run_built(conn, "GRANT CONNECT ON DATABASE ", quoted,
                       " TO coffer_owner, coffer_app, coffer_auditor", "granting CONNECT", NULL)) !=
            COFFER_OK) {
        goto out;
    }
    coffer_info("store", "bootstrapped roles and database %s", dbname);
out:
    PQfreemem(quoted);
    PQfinish(conn);
    return r;
}

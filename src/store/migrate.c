/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Schema migrations: applies the sql/ files compiled into this build, in
 * order, each in its own transaction under an advisory lock, and records
 * version, file name and SHA-256 in coffer.schema_migrations so that a file
 * changed after it was applied, or a database newer than this build, is
 * refused rather than silently mixed.
 *
 * This file executes only the build's own compiled-in SQL; it must never
 * execute text that came from a file read at run time or from any input.
 */
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>

#include "coffer/log.h"
#include "store/migrations.h"
#include "store/store_int.h"

#define SHA256_HEX_LEN 65

/* One key for every Coffer migrator, whichever database it runs against. */
#define MIGRATION_LOCK "SELECT pg_catalog.pg_advisory_xact_lock(7165064482445047154)"

/* Created before the first migration so that migration 001 can be recorded. */
static const char ledger_sql[] = "CREATE SCHEMA IF NOT EXISTS coffer;\n"
                                 "CREATE TABLE IF NOT EXISTS coffer.schema_migrations (\n"
                                 "    version int PRIMARY KEY CHECK (version > 0),\n"
                                 "    name text NOT NULL,\n"
                                 "    sha256 text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),\n"
                                 "    applied_at timestamptz NOT NULL DEFAULT pg_catalog.now()\n"
                                 ");";

int coffer_store_schema_latest(void)
{
    int latest = 0;
    size_t i;

    for (i = 0; i < coffer_migrations_count; i++) {
        if (coffer_migrations[i].version > latest) {
            latest = coffer_migrations[i].version;
        }
    }
    return latest;
}

static enum coffer_err sha256_hex(const struct coffer_migration *m, char out[SHA256_HEX_LEN])
{
    static const char digits[] = "0123456789abcdef";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    unsigned int i;

    if (EVP_Digest(m->sql, m->len, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != 32) {
        return coffer_err_set(COFFER_E_CRYPTO, "SHA-256 of migration %s failed", m->name);
    }
    for (i = 0; i < mdlen; i++) {
        out[2 * i] = digits[md[i] >> 4];
        out[2 * i + 1] = digits[md[i] & 0x0f];
    }
    out[2 * mdlen] = '\0';
    return COFFER_OK;
}

static enum coffer_err exec_plain(PGconn *conn, const char *sql, const char *what)
{
    PGresult *res = PQexec(conn, sql);
    ExecStatusType st = res != NULL ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    enum coffer_err r = COFFER_OK;

    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        r = store_pg_error(conn, res, what, NULL);
    }
    PQclear(res);
    return r;
}

static void rollback_quietly(PGconn *conn)
{
    PGresult *res;

    if (PQstatus(conn) != CONNECTION_OK || PQtransactionStatus(conn) == PQTRANS_IDLE) {
        return;
    }
    res = PQexec(conn, "ROLLBACK");
    PQclear(res);
}

static bool known_version(int version)
{
    size_t i;

    for (i = 0; i < coffer_migrations_count; i++) {
        if (coffer_migrations[i].version == version) {
            return true;
        }
    }
    return false;
}

/* Refuses a database that records a migration this build does not have. */
static enum coffer_err check_unknown(PGconn *conn)
{
    static const char sql[] = "SELECT version FROM coffer.schema_migrations ORDER BY version";
    PGresult *res = PQexecParams(conn, sql, 0, NULL, NULL, NULL, NULL, 1);
    enum coffer_err r = COFFER_OK;
    int i;

    if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK) {
        r = store_pg_error(conn, res, "reading coffer.schema_migrations", NULL);
        goto out;
    }
    for (i = 0; i < PQntuples(res); i++) {
        uint32_t v = 0;

        if ((r = store_col_u32(res, i, 0, "coffer.schema_migrations.version", 1, &v)) !=
            COFFER_OK) {
            goto out;
        }
        if ((int64_t)v > coffer_store_schema_latest()) {
            r = coffer_err_set(COFFER_E_SCHEMA,
                               "database is at migration %u, this build knows up to %d; "
                               "upgrade coffer",
                               (unsigned int)v, coffer_store_schema_latest());
            goto out;
        }
        if (!known_version((int)v)) {
            r = coffer_err_set(COFFER_E_SCHEMA,
                               "database records migration %u, which this build does not have",
                               (unsigned int)v);
            goto out;
        }
    }
out:
    PQclear(res);
    return r;
}

static enum coffer_err prepare_ledger(PGconn *conn)
{
    enum coffer_err r;

    if ((r = exec_plain(conn, "BEGIN", "beginning")) != COFFER_OK) {
        return r;
    }
    if ((r = exec_plain(conn, MIGRATION_LOCK, "taking the migration lock")) != COFFER_OK ||
        (r = exec_plain(conn, ledger_sql, "creating coffer.schema_migrations")) != COFFER_OK ||
        (r = check_unknown(conn)) != COFFER_OK ||
        (r = exec_plain(conn, "COMMIT", "committing")) != COFFER_OK) {
        rollback_quietly(conn);
        return r;
    }
    return COFFER_OK;
}

/* Line of a 1-based character position in sql (the files are ASCII), 0 if unknown. */
static int line_of(const char *sql, const char *position)
{
    long pos;
    long i;
    int line = 1;

    if (position == NULL || sscanf(position, "%ld", &pos) != 1 || pos < 1) {
        return 0;
    }
    for (i = 0; i < pos - 1 && sql[i] != '\0'; i++) {
        if (sql[i] == '\n') {
            line++;
        }
    }
    return line;
}

/* *recorded receives the stored SHA-256, or "" if the version is not recorded. */
static enum coffer_err recorded_sha(PGconn *conn, int version, char recorded[SHA256_HEX_LEN])
{
    static const char sql[] = "SELECT sha256 FROM coffer.schema_migrations WHERE version = $1";
    char vtext[16];
    const char *values[1] = {vtext};
    PGresult *res;
    enum coffer_err r = COFFER_OK;

    recorded[0] = '\0';
    snprintf(vtext, sizeof(vtext), "%d", version);
    res = PQexecParams(conn, sql, 1, NULL, values, NULL, NULL, 1);
    if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK) {
        r = store_pg_error(conn, res, "reading coffer.schema_migrations", NULL);
        goto out;
    }
    if (PQntuples(res) == 1) {
        r = store_col_text(res, 0, 0, "coffer.schema_migrations.sha256", recorded, SHA256_HEX_LEN);
    }
out:
    PQclear(res);
    return r;
}

static enum coffer_err record(PGconn *conn, const struct coffer_migration *m, const char *sha)
{
    static const char sql[] =
        "INSERT INTO coffer.schema_migrations (version, name, sha256) VALUES ($1, $2, $3)";
    char vtext[16];
    const char *values[3] = {vtext, m->name, sha};
    PGresult *res;
    enum coffer_err r = COFFER_OK;

    snprintf(vtext, sizeof(vtext), "%d", m->version);
    res = PQexecParams(conn, sql, 3, NULL, values, NULL, NULL, 1);
    if (res == NULL || PQresultStatus(res) != PGRES_COMMAND_OK) {
        r = store_pg_error(conn, res, "recording the migration", NULL);
    }
    PQclear(res);
    return r;
}

/* Runs the migration's own SQL; on failure names the line the server pointed at. */
static enum coffer_err run_sql(PGconn *conn, const struct coffer_migration *m)
{
    PGresult *res = PQexec(conn, m->sql);
    ExecStatusType st = res != NULL ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    enum coffer_err r = COFFER_OK;
    int line;

    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
        PQclear(res);
        return COFFER_OK;
    }
    r = store_pg_error(conn, res, "executing", NULL);
    line = res != NULL ? line_of(m->sql, PQresultErrorField(res, PG_DIAG_STATEMENT_POSITION)) : 0;
    if (line > 0) {
        r = coffer_err_wrap(r, "line %d", line);
    }
    PQclear(res);
    return r;
}

/* Applies one migration unless recorded; *did says whether it ran. */
static enum coffer_err apply_one(PGconn *conn, const struct coffer_migration *m, bool *did)
{
    char sha[SHA256_HEX_LEN];
    char recorded[SHA256_HEX_LEN];
    enum coffer_err r;

    *did = false;
    if ((r = sha256_hex(m, sha)) != COFFER_OK) {
        return r;
    }
    if ((r = exec_plain(conn, "BEGIN", "beginning")) != COFFER_OK) {
        return r;
    }
    if ((r = exec_plain(conn, MIGRATION_LOCK, "taking the migration lock")) != COFFER_OK ||
        (r = recorded_sha(conn, m->version, recorded)) != COFFER_OK) {
        goto out;
    }
    if (recorded[0] != '\0') {
        if (strcmp(recorded, sha) != 0) {
            r = coffer_err_set(COFFER_E_SCHEMA,
                               "migration %s was altered after it was applied (recorded sha256 "
                               "%s, this build %s)",
                               m->name, recorded, sha);
            goto out;
        }
        r = exec_plain(conn, "COMMIT", "committing");
        goto out;
    }
    if ((r = run_sql(conn, m)) != COFFER_OK || (r = record(conn, m, sha)) != COFFER_OK ||
        (r = exec_plain(conn, "COMMIT", "committing")) != COFFER_OK) {
        goto out;
    }
    *did = true;
    coffer_info("store", "applied migration %s", m->name);
out:
    if (r != COFFER_OK) {
        rollback_quietly(conn);
    }
    return r;
}

enum coffer_err coffer_store_migrate(const char *owner_conninfo, int *applied)
{
    PGconn *conn = NULL;
    enum coffer_err r;
    size_t i;
    int count = 0;

    if (applied != NULL) {
        *applied = 0;
    }
    if ((r = store_connect(owner_conninfo, &conn)) != COFFER_OK) {
        return r;
    }
    if ((r = prepare_ledger(conn)) != COFFER_OK) {
        r = coffer_err_wrap(r, "preparing migrations");
        goto out;
    }
    for (i = 0; i < coffer_migrations_count; i++) {
        const struct coffer_migration *m = &coffer_migrations[i];
        bool did = false;

        if (i > 0 && m->version <= coffer_migrations[i - 1].version) {
            r = coffer_err_set(COFFER_E_SCHEMA, "migration %s is out of order", m->name);
            goto out;
        }
        if ((r = apply_one(conn, m, &did)) != COFFER_OK) {
            if (r != COFFER_E_SCHEMA) {
                r = coffer_err_wrap(r, "migration %s failed", m->name);
            }
            goto out;
        }
        count += did ? 1 : 0;
    }
out:
    if (applied != NULL) {
        *applied = count;
    }
    PQfinish(conn);
    return r;
}

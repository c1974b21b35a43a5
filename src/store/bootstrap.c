/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Bootstrap: the one step that needs a superuser. It creates the three roles
 * and the database owned by coffer_owner, and is safe to re-run. A database
 * name cannot be a statement parameter, so it is checked against a strict
 * pattern and quoted by libpq before it is placed in SQL text; nothing else
 * is ever built into a statement.
 */
#include "store/store_int.h"

#include <stdio.h>
#include <string.h>

#include "coffer/log.h"

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
    if ((r = store_run_command(conn, bootstrap_roles_sql, "creating the Coffer roles")) !=
        COFFER_OK) {
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

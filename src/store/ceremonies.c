/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Ceremony rows: officers, the quorum, plans, approvals, transcripts
 * (coffer.officers, coffer.quorum, coffer.ceremony_plans,
 * coffer.ceremony_approvals, coffer.ceremonies) and the ceremony_id links of
 * the keys a ceremony made.
 *
 * A ceremony runs rarely and from the coffer command only, so these
 * statements are sent parameterised (PQexecParams) rather than prepared on
 * every connection that cofferd opens. They are still fixed text: no SQL is
 * ever built from input. This file stores passphrase hashes and never sees a
 * passphrase; it checks every row it reads back.
 */
#include "coffer/store_ceremony.h"

#include <string.h>

#include "coffer/buf.h"
#include "coffer/mem.h"
#include "coffer/text.h"
#include "store/store_int.h"

#define US(col) "(extract(epoch FROM " col ") * 1000000)::int8"
#define AT(param) "(timestamptz 'epoch' + " param " * interval '1 microsecond')"

static const struct store_stmt q_new_id = {
    .name = "coffer_ceremony_new_id",
    .sql = "SELECT gen_random_uuid(), " US("clock_timestamp()"),
    .nparams = 0,
    .ncols = 2,
};

#define OFFICER_COLS "name, passphrase_hash, " US("added_at") ", " US("removed_at")
static const struct store_stmt q_officer_list = {
    .name = "coffer_officer_list",
    .sql = "SELECT " OFFICER_COLS " FROM coffer.officers ORDER BY name LIMIT 65",
    .nparams = 0,
    .ncols = 4,
};

static const struct store_stmt q_officer_get = {
    .name = "coffer_officer_get",
    .sql = "SELECT " OFFICER_COLS " FROM coffer.officers WHERE name = $1",
    .nparams = 1,
    .types = {STORE_OID_TEXT},
    .ncols = 4,
};

static const struct store_stmt q_officer_add = {
    .name = "coffer_officer_add",
    .sql = "INSERT INTO coffer.officers (name, passphrase_hash, added_in) VALUES ($1, $2, $3)",
    .nparams = 3,
    .types = {STORE_OID_TEXT, STORE_OID_TEXT, STORE_OID_UUID},
    .ncols = 0,
};

static const struct store_stmt q_officer_remove = {
    .name = "coffer_officer_remove",
    .sql = "UPDATE coffer.officers SET removed_at = clock_timestamp(), removed_in = $2 "
           "WHERE name = $1 AND removed_at IS NULL",
    .nparams = 2,
    .types = {STORE_OID_TEXT, STORE_OID_UUID},
    .ncols = 0,
};

static const struct store_stmt q_quorum_get = {
    .name = "coffer_quorum_get",
    .sql = "SELECT m FROM coffer.quorum",
    .nparams = 0,
    .ncols = 1,
};

static const struct store_stmt q_quorum_set = {
    .name = "coffer_quorum_set",
    .sql = "INSERT INTO coffer.quorum (singleton, m, set_in) VALUES (true, $1, $2) "
           "ON CONFLICT (singleton) DO UPDATE SET m = EXCLUDED.m, set_in = EXCLUDED.set_in, "
           "set_at = clock_timestamp()",
    .nparams = 2,
    .types = {STORE_OID_INT4, STORE_OID_UUID},
    .ncols = 0,
};

static const struct store_stmt q_plan_insert = {
    .name = "coffer_plan_insert",
    .sql = "INSERT INTO coffer.ceremony_plans (id, kind, args, description, description_sha256, "
           "created_at, expires_at) VALUES ($1, $2, $3, $4, $5, " AT("$6") ", " AT("$7") ")",
    .nparams = 7,
    .types = {STORE_OID_UUID, STORE_OID_TEXT, STORE_OID_TEXT, STORE_OID_TEXT, STORE_OID_BYTEA,
              STORE_OID_INT8, STORE_OID_INT8},
    .ncols = 0,
};

static const struct store_stmt q_plan_get = {
    .name = "coffer_plan_get",
    .sql = "SELECT id, kind, args, description, description_sha256, " US("created_at") ", " US(
        "expires_at") ", " US("clock_timestamp()") ", state, ceremony_id "
                                                   "FROM coffer.ceremony_plans WHERE id = $1",
    .nparams = 1,
    .types = {STORE_OID_UUID},
    .ncols = 10,
};

/*
 * Held by the process that runs a plan, from before it reads the plan until
 * after it records the ceremony: a second run of the same plan waits for
 * none and is refused, so an operation is never done twice for one plan.
 * Session-level, so it also ends if the process dies.
 */
static const struct store_stmt q_plan_run_lock = {
    .name = "coffer_plan_run_lock",
    .sql = "SELECT pg_catalog.pg_try_advisory_lock(7165064482445047157::bigint # "
           "pg_catalog.hashtextextended($1::text, 0))",
    .nparams = 1,
    .types = {STORE_OID_TEXT},
    .ncols = 1,
};

static const struct store_stmt q_plan_run_unlock = {
    .name = "coffer_plan_run_unlock",
    .sql = "SELECT pg_catalog.pg_advisory_unlock(7165064482445047157::bigint # "
           "pg_catalog.hashtextextended($1::text, 0))",
    .nparams = 1,
    .types = {STORE_OID_TEXT},
    .ncols = 1,
};

static const struct store_stmt q_plan_close = {
    .name = "coffer_plan_close",
    .sql = "UPDATE coffer.ceremony_plans SET state = $2, ceremony_id = $3 "
           "WHERE id = $1 AND state = 'open'",
    .nparams = 3,
    .types = {STORE_OID_UUID, STORE_OID_TEXT, STORE_OID_UUID},
    .ncols = 0,
};

/* The plan row is locked so that a run closing it and an approval cannot interleave. */
static const struct store_stmt q_plan_approve = {
    .name = "coffer_plan_approve",
    .sql = "INSERT INTO coffer.ceremony_approvals (plan_id, officer, description_sha256) "
           "SELECT p.id, $2, $3 FROM coffer.ceremony_plans p "
           "WHERE p.id = $1 AND p.state = 'open' AND clock_timestamp() < p.expires_at "
           "FOR UPDATE",
    .nparams = 3,
    .types = {STORE_OID_UUID, STORE_OID_TEXT, STORE_OID_BYTEA},
    .ncols = 0,
};

static const struct store_stmt q_plan_approvals = {
    .name = "coffer_plan_approvals",
    .sql = "SELECT a.officer, a.description_sha256, " US(
        "a.approved_at") ", o.removed_at IS NULL "
                         "FROM coffer.ceremony_approvals a JOIN coffer.officers o ON o.name = "
                         "a.officer "
                         "WHERE a.plan_id = $1 ORDER BY a.approved_at, a.officer LIMIT 65",
    .nparams = 1,
    .types = {STORE_OID_UUID},
    .ncols = 4,
};

static const struct store_stmt q_ceremony_insert = {
    .name = "coffer_ceremony_insert",
    .sql = "INSERT INTO coffer.ceremonies (id, kind, started_at, finished_at, outcome, officers, "
           "token_serial, token_model, transcript, signature, key_version, plan_id) "
           "VALUES ($1, $2, " AT("$3") ", clock_timestamp(), $4, $5, $6, $7, $8, $9, $10, $11)",
    .nparams = 11,
    .types = {STORE_OID_UUID, STORE_OID_TEXT, STORE_OID_INT8, STORE_OID_TEXT, STORE_OID_TEXT_ARRAY,
              STORE_OID_TEXT, STORE_OID_TEXT, STORE_OID_TEXT, STORE_OID_BYTEA, STORE_OID_INT4,
              STORE_OID_UUID},
    .ncols = 0,
};

static const struct store_stmt q_ceremony_get = {
    .name = "coffer_ceremony_get",
    .sql = "SELECT id, kind, outcome, transcript, signature, key_version "
           "FROM coffer.ceremonies WHERE id = $1",
    .nparams = 1,
    .types = {STORE_OID_UUID},
    .ncols = 6,
};

static const struct store_stmt q_link_mk = {
    .name = "coffer_ceremony_link_mk",
    .sql = "UPDATE coffer.master_keys SET ceremony_id = $2 "
           "WHERE version = $1 AND ceremony_id IS NULL",
    .nparams = 2,
    .types = {STORE_OID_INT4, STORE_OID_UUID},
    .ncols = 0,
};

static const struct store_stmt q_link_org_key = {
    .name = "coffer_ceremony_link_org_key",
    .sql = "UPDATE coffer.org_keys SET ceremony_id = $3 "
           "WHERE org_id = $1 AND version = $2 AND ceremony_id IS NULL",
    .nparams = 3,
    .types = {STORE_OID_UUID, STORE_OID_INT4, STORE_OID_UUID},
    .ncols = 0,
};

static const struct store_stmt q_link_audit_key = {
    .name = "coffer_ceremony_link_audit_key",
    .sql = "UPDATE coffer.audit_signing_keys SET ceremony_id = $2 "
           "WHERE version = $1 AND ceremony_id IS NULL",
    .nparams = 2,
    .types = {STORE_OID_INT4, STORE_OID_UUID},
    .ncols = 0,
};

/* Runs one statement with binary results, as store_exec does for prepared ones. */
static enum coffer_err run(struct coffer_store *s, const struct store_stmt *st,
                           const struct store_params *p, const char *what, PGresult **res)
{
    PGresult *r;
    ExecStatusType status;
    enum coffer_err e;

    *res = NULL;
    s->sqlstate[0] = '\0';
    if (s->pending != NULL || s->reader) {
        return coffer_err_set(COFFER_E_STATE, "%s: the connection cannot run it now", what);
    }
    if (p->overflow || p->n != st->nparams) {
        return coffer_err_set(COFFER_E_INVALID, "%s: statement %s bound %d parameters, takes %d",
                              what, st->name, p->n, st->nparams);
    }
    r = PQexecParams(s->conn, st->sql, p->n, st->types, p->values, p->lengths, p->formats, 1);
    status = r != NULL ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    if (status == PGRES_COMMAND_OK || (status == PGRES_TUPLES_OK && PQnfields(r) == st->ncols)) {
        *res = r;
        return COFFER_OK;
    }
    if (status == PGRES_TUPLES_OK) {
        e = coffer_err_set(COFFER_E_INTEGRITY, "%s: statement %s returned %d columns, want %d",
                           what, st->name, PQnfields(r), st->ncols);
    } else {
        e = store_result_error(s, r, what);
    }
    PQclear(r);
    return e;
}

/* Runs a command that must change exactly one row; COFFER_E_NOT_FOUND if none. */
static enum coffer_err run_one(struct coffer_store *s, const struct store_stmt *st,
                               const struct store_params *p, const char *what)
{
    PGresult *res = NULL;
    enum coffer_err r;
    long n;

    if ((r = run(s, st, p, what, &res)) != COFFER_OK) {
        return r;
    }
    n = store_affected(res);
    PQclear(res);
    if (n == 0) {
        return coffer_err_set(COFFER_E_NOT_FOUND, "%s: no such row", what);
    }
    if (n != 1) {
        return coffer_err_set(COFFER_E_INTEGRITY, "%s: changed %ld rows, want 1", what, n);
    }
    return COFFER_OK;
}

static enum coffer_err col_us(const PGresult *res, int row, int col, const char *where,
                              bool nullable, int64_t *out)
{
    bool null = false;
    enum coffer_err r;

    if ((r = store_col_int8_opt(res, row, col, where, &null, out)) != COFFER_OK) {
        return r;
    }
    if (null && !nullable) {
        return coffer_err_set(COFFER_E_INTEGRITY, "%s: is NULL", where);
    }
    if (!null && *out <= 0) {
        return coffer_err_set(COFFER_E_INTEGRITY, "%s: time before 1970", where);
    }
    return COFFER_OK;
}

/* A text column of 1..max bytes of acceptable text, copied into a new allocation. */
static enum coffer_err col_text_alloc(const PGresult *res, int row, int col, const char *where,
                                      size_t max, bool multiline, char **out, size_t *len)
{
    const unsigned char *p = NULL;
    size_t n = 0;
    enum coffer_err r;

    *out = NULL;
    *len = 0;
    if ((r = store_col_raw(res, row, col, where, STORE_OID_TEXT, &p, &n)) != COFFER_OK) {
        return r;
    }
    if (p == NULL || n == 0 || n > max) {
        return coffer_err_set(COFFER_E_INTEGRITY, "%s: is NULL, empty or longer than %zu bytes",
                              where, max);
    }
    if (!coffer_utf8_ok((const char *)p, n) || memchr(p, '\0', n) != NULL) {
        return coffer_err_set(COFFER_E_INTEGRITY, "%s: is not UTF-8 text", where);
    }
    for (size_t i = 0; i < n && !multiline; i++) {
        if (p[i] < 0x20) {
            return coffer_err_set(COFFER_E_INTEGRITY, "%s: holds a control character", where);
        }
    }
    if ((*out = coffer_calloc(n + 1, 1)) == NULL) {
        return coffer_err_set(COFFER_E_NOMEM, "%s: out of memory", where);
    }
    coffer_memcpy(*out, p, n);
    *len = n;
    return COFFER_OK;
}

enum coffer_err coffer_store_ceremony_new_id(struct coffer_store *s, struct coffer_uuid *id,
                                             int64_t *now_us)
{
    struct store_params p = {0};
    PGresult *res = NULL;
    enum coffer_err r;

    if ((r = run(s, &q_new_id, &p, "making a ceremony identifier", &res)) != COFFER_OK) {
        return r;
    }
    if ((r = store_one_row(res, "making a ceremony identifier")) == COFFER_OK &&
        (r = store_col_uuid(res, 0, 0, "gen_random_uuid()", id)) == COFFER_OK) {
        r = col_us(res, 0, 1, "clock_timestamp()", false, now_us);
    }
    PQclear(res);
    return r;
}

static enum coffer_err officer_from_row(const PGresult *res, int row,
                                        struct coffer_store_officer *o)
{
    bool removed_null = true;
    enum coffer_err r;

    memset(o, 0, sizeof(*o));
    if ((r = store_col_name(res, row, 0, "coffer.officers.name", o->name)) != COFFER_OK ||
        (r = store_col_text(res, row, 1, "coffer.officers.passphrase_hash", o->passphrase_hash,
                            sizeof(o->passphrase_hash))) != COFFER_OK ||
        (r = col_us(res, row, 2, "coffer.officers.added_at", false, &o->added_us)) != COFFER_OK ||
        (r = col_us(res, row, 3, "coffer.officers.removed_at", true, &o->removed_us)) !=
            COFFER_OK) {
        return r;
    }
    removed_null = PQgetisnull(res, row, 3) != 0;
    o->removed = !removed_null;
    if (strncmp(o->passphrase_hash, "scrypt$", 7) != 0) {
        return coffer_err_set(COFFER_E_INTEGRITY,
                              "coffer.officers.passphrase_hash of %s: not an scrypt hash", o->name);
    }
    return COFFER_OK;
}

enum coffer_err coffer_store_officer_list(struct coffer_store *s, struct coffer_store_officer **out,
                                          size_t *n)
{
    struct store_params p = {0};
    struct coffer_store_officer *v = NULL;
    PGresult *res = NULL;
    enum coffer_err r;
    int rows;

    *out = NULL;
    *n = 0;
    if ((r = run(s, &q_officer_list, &p, "listing officers", &res)) != COFFER_OK) {
        return r;
    }
    rows = PQntuples(res);
    if (rows > COFFER_OFFICERS_MAX) {
        r = coffer_err_set(COFFER_E_INTEGRITY, "coffer.officers: more than %d rows",
                           COFFER_OFFICERS_MAX);
        goto out;
    }
    if (rows > 0 && (v = coffer_calloc((size_t)rows, sizeof(*v))) == NULL) {
        r = coffer_err_set(COFFER_E_NOMEM, "listing officers: out of memory");
        goto out;
    }
    for (int i = 0; i < rows; i++) {
        if ((r = officer_from_row(res, i, &v[i])) != COFFER_OK) {
            goto out;
        }
    }
    *out = v;
    *n = (size_t)rows;
    v = NULL;
out:
    coffer_freezero(v, rows > 0 ? (size_t)rows * sizeof(*v) : 0);
    PQclear(res);
    return r;
}

enum coffer_err coffer_store_officer_get(struct coffer_store *s, const char *name,
                                         struct coffer_store_officer *out)
{
    struct store_params p = {0};
    PGresult *res = NULL;
    enum coffer_err r;

    memset(out, 0, sizeof(*out));
    if ((r = store_check_name(name, "officer name")) != COFFER_OK) {
        return r;
    }
    store_param_text(&p, name);
    if ((r = run(s, &q_officer_get, &p, "loading the officer", &res)) != COFFER_OK) {
        return r;
    }
    if ((r = store_one_row(res, "loading the officer")) == COFFER_OK) {
        r = officer_from_row(res, 0, out);
    } else if (r == COFFER_E_NOT_FOUND) {
        r = coffer_err_set(COFFER_E_NOT_FOUND, "no officer is named %s", name);
    }
    PQclear(res);
    return r;
}

enum coffer_err coffer_store_officer_add(struct coffer_store *s, const char *name,
                                         const char *passphrase_hash,
                                         const struct coffer_uuid *ceremony_id)
{
    struct store_params p = {0};
    PGresult *res = NULL;
    enum coffer_err r;

    if ((r = store_check_name(name, "officer name")) != COFFER_OK) {
        return r;
    }
    if (passphrase_hash == NULL || strncmp(passphrase_hash, "scrypt$", 7) != 0 ||
        strlen(passphrase_hash) > COFFER_PASSPHRASE_HASH_MAX) {
        return coffer_err_set(COFFER_E_INVALID, "officer %s: not an scrypt passphrase hash", name);
    }
    store_param_text(&p, name);
    store_param_text(&p, passphrase_hash);
    store_param_uuid(&p, ceremony_id);
    r = run(s, &q_officer_add, &p, "enrolling the officer", &res);
    PQclear(res);
    if (r == COFFER_E_EXISTS) {
        return coffer_err_set(COFFER_E_EXISTS,
                              "an officer named %s exists or existed; names are not reused", name);
    }
    return r;
}

enum coffer_err coffer_store_officer_remove(struct coffer_store *s, const char *name,
                                            const struct coffer_uuid *ceremony_id)
{
    struct store_params p = {0};
    enum coffer_err r;

    if ((r = store_check_name(name, "officer name")) != COFFER_OK) {
        return r;
    }
    store_param_text(&p, name);
    store_param_uuid(&p, ceremony_id);
    r = run_one(s, &q_officer_remove, &p, "removing the officer");
    if (r == COFFER_E_NOT_FOUND) {
        return coffer_err_set(COFFER_E_NOT_FOUND, "no serving officer is named %s", name);
    }
    return r;
}

enum coffer_err coffer_store_quorum_get(struct coffer_store *s, uint32_t *m)
{
    struct store_params p = {0};
    PGresult *res = NULL;
    enum coffer_err r;

    *m = 0;
    if ((r = run(s, &q_quorum_get, &p, "reading the quorum", &res)) != COFFER_OK) {
        return r;
    }
    if ((r = store_one_row(res, "reading the quorum")) == COFFER_OK) {
        r = store_col_u32(res, 0, 0, "coffer.quorum.m", 1, m);
        if (r == COFFER_OK && *m > COFFER_OFFICERS_MAX) {
            r = coffer_err_set(COFFER_E_INTEGRITY, "coffer.quorum.m: %u is out of range", *m);
        }
    } else if (r == COFFER_E_NOT_FOUND) {
        r = coffer_err_set(COFFER_E_NOT_FOUND,
                           "no quorum is set: run `coffer ceremony init` first");
    }
    PQclear(res);
    return r;
}

enum coffer_err coffer_store_quorum_set(struct coffer_store *s, uint32_t m,
                                        const struct coffer_uuid *ceremony_id)
{
    struct store_params p = {0};
    PGresult *res = NULL;
    enum coffer_err r;

    if (m < 1 || m > COFFER_OFFICERS_MAX) {
        return coffer_err_set(COFFER_E_INVALID, "quorum %u is out of range (1 to %d)", m,
                              COFFER_OFFICERS_MAX);
    }
    store_param_int4(&p, (int32_t)m);
    store_param_uuid(&p, ceremony_id);
    r = run(s, &q_quorum_set, &p, "setting the quorum", &res);
    PQclear(res);
    return r;
}

const char *coffer_plan_state_str(enum coffer_plan_state st)
{
    switch (st) {
    case COFFER_PLAN_OPEN:
        return "open";
    case COFFER_PLAN_COMPLETED:
        return "completed";
    case COFFER_PLAN_ABORTED:
        return "aborted";
    default:
        return "unknown";
    }
}

void coffer_store_plan_cleanup(struct coffer_store_plan *p)
{
    coffer_free(p->description);
    memset(p, 0, sizeof(*p));
}

static bool kind_ok(const char *kind)
{
    size_t n = strlen(kind);

    if (n == 0 || n > COFFER_CEREMONY_KIND_MAX || kind[0] < 'a' || kind[0] > 'z') {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        char c = kind[i];

        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) {
            return false;
        }
    }
    return true;
}

enum coffer_err coffer_store_plan_insert(struct coffer_store *s, const struct coffer_store_plan *pl)
{
    struct store_params p = {0};
    PGresult *res = NULL;
    enum coffer_err r;

    if (!kind_ok(pl->kind) ||
        (pl->args[0] != '\0' &&
         !coffer_text_ok(pl->args, strlen(pl->args), COFFER_CEREMONY_ARGS_MAX)) ||
        pl->description == NULL || pl->description_len == 0 ||
        pl->description_len > COFFER_CEREMONY_DESC_MAX ||
        strlen(pl->description) != pl->description_len ||
        !coffer_utf8_ok(pl->description, pl->description_len) || pl->expires_us <= pl->created_us) {
        return coffer_err_set(COFFER_E_INVALID, "ceremony plan: a field is out of range");
    }
    store_param_uuid(&p, &pl->id);
    store_param_text(&p, pl->kind);
    store_param_text(&p, pl->args);
    store_param_text(&p, pl->description);
    store_param_bytea(&p, pl->sha256, sizeof(pl->sha256));
    store_param_int8(&p, pl->created_us);
    store_param_int8(&p, pl->expires_us);
    r = run(s, &q_plan_insert, &p, "recording the plan", &res);
    PQclear(res);
    return r;
}

static enum coffer_err plan_state_col(const PGresult *res, int row, int col,
                                      enum coffer_plan_state *out)
{
    char v[16];
    enum coffer_err r;

    if ((r = store_col_text(res, row, col, "coffer.ceremony_plans.state", v, sizeof(v))) !=
        COFFER_OK) {
        return r;
    }
    if (strcmp(v, "open") == 0) {
        *out = COFFER_PLAN_OPEN;
    } else if (strcmp(v, "completed") == 0) {
        *out = COFFER_PLAN_COMPLETED;
    } else if (strcmp(v, "aborted") == 0) {
        *out = COFFER_PLAN_ABORTED;
    } else {
        return coffer_err_set(COFFER_E_INTEGRITY, "coffer.ceremony_plans.state: unknown value");
    }
    return COFFER_OK;
}

enum coffer_err coffer_store_plan_get(struct coffer_store *s, const struct coffer_uuid *id,
                                      struct coffer_store_plan *out)
{
    struct store_params p = {0};
    PGresult *res = NULL;
    enum coffer_err r;

    memset(out, 0, sizeof(*out));
    store_param_uuid(&p, id);
    if ((r = run(s, &q_plan_get, &p, "loading the plan", &res)) != COFFER_OK) {
        return r;
    }
    if ((r = store_one_row(res, "loading the plan")) != COFFER_OK) {
        if (r == COFFER_E_NOT_FOUND) {
            r = coffer_err_set(COFFER_E_NOT_FOUND, "no ceremony plan has that id");
        }
        goto out;
    }
    if ((r = store_col_uuid(res, 0, 0, "coffer.ceremony_plans.id", &out->id)) != COFFER_OK ||
        (r = store_col_text(res, 0, 1, "coffer.ceremony_plans.kind", out->kind,
                            sizeof(out->kind))) != COFFER_OK ||
        (r = store_col_text(res, 0, 2, "coffer.ceremony_plans.args", out->args,
                            sizeof(out->args))) != COFFER_OK ||
        (r = col_text_alloc(res, 0, 3, "coffer.ceremony_plans.description",
                            COFFER_CEREMONY_DESC_MAX, true, &out->description,
                            &out->description_len)) != COFFER_OK ||
        (r = store_col_bytea_exact(res, 0, 4, "coffer.ceremony_plans.description_sha256",
                                   out->sha256, sizeof(out->sha256))) != COFFER_OK ||
        (r = col_us(res, 0, 5, "coffer.ceremony_plans.created_at", false, &out->created_us)) !=
            COFFER_OK ||
        (r = col_us(res, 0, 6, "coffer.ceremony_plans.expires_at", false, &out->expires_us)) !=
            COFFER_OK ||
        (r = col_us(res, 0, 7, "clock_timestamp()", false, &out->now_us)) != COFFER_OK ||
        (r = plan_state_col(res, 0, 8, &out->state)) != COFFER_OK) {
        goto out;
    }
    if (!kind_ok(out->kind)) {
        r = coffer_err_set(COFFER_E_INTEGRITY, "coffer.ceremony_plans.kind: not a kind");
        goto out;
    }
    out->has_ceremony = PQgetisnull(res, 0, 9) == 0;
    if (out->has_ceremony && (r = store_col_uuid(res, 0, 9, "coffer.ceremony_plans.ceremony_id",
                                                 &out->ceremony_id)) != COFFER_OK) {
        goto out;
    }
out:
    if (r != COFFER_OK) {
        coffer_store_plan_cleanup(out);
    }
    PQclear(res);
    return r;
}

enum coffer_err coffer_store_plan_run_lock(struct coffer_store *s, const struct coffer_uuid *id,
                                           bool lock, bool *got)
{
    struct store_params p = {0};
    char text[COFFER_UUID_STR_LEN];
    PGresult *res = NULL;
    enum coffer_err r;

    *got = false;
    coffer_uuid_format(id, text);
    store_param_text(&p, text);
    if ((r = run(s, lock ? &q_plan_run_lock : &q_plan_run_unlock, &p,
                 lock ? "locking the plan for its run" : "unlocking the plan", &res)) !=
        COFFER_OK) {
        return r;
    }
    if ((r = store_one_row(res, "the plan's lock")) == COFFER_OK) {
        r = store_col_bool(res, 0, 0, "pg_try_advisory_lock", got);
    }
    PQclear(res);
    return r;
}

enum coffer_err coffer_store_plan_close(struct coffer_store *s, const struct coffer_uuid *id,
                                        enum coffer_plan_state state,
                                        const struct coffer_uuid *ceremony_id)
{
    struct store_params p = {0};
    enum coffer_err r;

    if (state != COFFER_PLAN_COMPLETED && state != COFFER_PLAN_ABORTED) {
        return coffer_err_set(COFFER_E_INVALID, "a plan closes as completed or aborted");
    }
    store_param_uuid(&p, id);
    store_param_text(&p, coffer_plan_state_str(state));
    store_param_uuid(&p, ceremony_id);
    r = run_one(s, &q_plan_close, &p, "closing the plan");
    if (r == COFFER_E_NOT_FOUND) {
        return coffer_err_set(COFFER_E_STATE, "the plan is no longer open");
    }
    return r;
}

enum coffer_err coffer_store_plan_approve(struct coffer_store *s, const struct coffer_uuid *id,
                                          const char *officer,
                                          const unsigned char sha256[COFFER_CEREMONY_SHA256_LEN])
{
    struct store_params p = {0};
    enum coffer_err r;

    if ((r = store_check_name(officer, "officer name")) != COFFER_OK) {
        return r;
    }
    store_param_uuid(&p, id);
    store_param_text(&p, officer);
    store_param_bytea(&p, sha256, COFFER_CEREMONY_SHA256_LEN);
    r = run_one(s, &q_plan_approve, &p, "recording the approval");
    if (r == COFFER_E_NOT_FOUND) {
        return coffer_err_set(COFFER_E_STATE, "the plan is closed or has expired");
    }
    if (r == COFFER_E_EXISTS) {
        return coffer_err_set(COFFER_E_EXISTS, "officer %s has approved this plan already",
                              officer);
    }
    return r;
}

enum coffer_err coffer_store_plan_approvals(struct coffer_store *s, const struct coffer_uuid *id,
                                            struct coffer_store_plan_approval **out, size_t *n)
{
    struct store_params p = {0};
    struct coffer_store_plan_approval *v = NULL;
    PGresult *res = NULL;
    enum coffer_err r;
    int rows;

    *out = NULL;
    *n = 0;
    store_param_uuid(&p, id);
    if ((r = run(s, &q_plan_approvals, &p, "loading approvals", &res)) != COFFER_OK) {
        return r;
    }
    rows = PQntuples(res);
    if (rows > COFFER_OFFICERS_MAX) {
        r = coffer_err_set(COFFER_E_INTEGRITY, "coffer.ceremony_approvals: more than %d rows",
                           COFFER_OFFICERS_MAX);
        goto out;
    }
    if (rows > 0 && (v = coffer_calloc((size_t)rows, sizeof(*v))) == NULL) {
        r = coffer_err_set(COFFER_E_NOMEM, "loading approvals: out of memory");
        goto out;
    }
    for (int i = 0; i < rows; i++) {
        if ((r = store_col_name(res, i, 0, "coffer.ceremony_approvals.officer", v[i].officer)) !=
                COFFER_OK ||
            (r = store_col_bytea_exact(res, i, 1, "coffer.ceremony_approvals.description_sha256",
                                       v[i].sha256, sizeof(v[i].sha256))) != COFFER_OK ||
            (r = col_us(res, i, 2, "coffer.ceremony_approvals.approved_at", false,
                        &v[i].approved_us)) != COFFER_OK ||
            (r = store_col_bool(res, i, 3, "coffer.officers.removed_at IS NULL",
                                &v[i].officer_serving)) != COFFER_OK) {
            goto out;
        }
    }
    *out = v;
    *n = (size_t)rows;
    v = NULL;
out:
    coffer_free(v);
    PQclear(res);
    return r;
}

enum coffer_err coffer_store_ceremony_insert(struct coffer_store *s,
                                             const struct coffer_store_ceremony *c)
{
    struct store_params p = {0};
    struct coffer_buf officers = {0};
    PGresult *res = NULL;
    enum coffer_err r;
    size_t tlen = c->transcript != NULL ? strlen(c->transcript) : 0;

    if (!kind_ok(c->kind) || tlen == 0 || tlen > COFFER_CEREMONY_TRANSCRIPT_MAX ||
        !coffer_utf8_ok(c->transcript, tlen) || c->n_officers > COFFER_OFFICERS_MAX ||
        c->signature == NULL || c->signature_len < 8 ||
        c->signature_len > COFFER_CEREMONY_SIG_MAX || c->key_version < 1 ||
        c->key_version > INT32_MAX ||
        (c->token_serial != NULL && (c->token_serial[0] == '\0' || strlen(c->token_serial) > 64)) ||
        (c->token_model != NULL && (c->token_model[0] == '\0' || strlen(c->token_model) > 64))) {
        return coffer_err_set(COFFER_E_INVALID, "ceremony record: a field is out of range");
    }
    for (size_t i = 0; i < c->n_officers; i++) {
        if ((r = store_check_name(c->officers[i], "officer name")) != COFFER_OK) {
            return r;
        }
    }
    if ((r = store_encode_strings(c->officers, c->n_officers, &officers)) != COFFER_OK) {
        goto out;
    }
    store_param_uuid(&p, &c->id);
    store_param_text(&p, c->kind);
    store_param_int8(&p, c->started_us);
    store_param_text(&p, c->completed ? "completed" : "aborted");
    store_param_binary(&p, officers.data, officers.len);
    store_param_text(&p, c->token_serial);
    store_param_text(&p, c->token_model);
    store_param_text(&p, c->transcript);
    store_param_bytea(&p, c->signature, c->signature_len);
    store_param_int4(&p, (int32_t)c->key_version);
    if (c->has_plan) {
        store_param_uuid(&p, &c->plan_id);
    } else {
        store_param_null(&p);
    }
    r = run(s, &q_ceremony_insert, &p, "recording the ceremony", &res);
out:
    PQclear(res);
    coffer_buf_cleanup(&officers);
    return r;
}

void coffer_store_ceremony_row_cleanup(struct coffer_store_ceremony_row *c)
{
    coffer_free(c->transcript);
    memset(c, 0, sizeof(*c));
}

enum coffer_err coffer_store_ceremony_get(struct coffer_store *s, const struct coffer_uuid *id,
                                          struct coffer_store_ceremony_row *out)
{
    struct store_params p = {0};
    PGresult *res = NULL;
    char outcome[16];
    enum coffer_err r;

    memset(out, 0, sizeof(*out));
    store_param_uuid(&p, id);
    if ((r = run(s, &q_ceremony_get, &p, "loading the ceremony", &res)) != COFFER_OK) {
        return r;
    }
    if ((r = store_one_row(res, "loading the ceremony")) != COFFER_OK) {
        if (r == COFFER_E_NOT_FOUND) {
            r = coffer_err_set(COFFER_E_NOT_FOUND, "no ceremony has that id");
        }
        goto out;
    }
    if ((r = store_col_uuid(res, 0, 0, "coffer.ceremonies.id", &out->id)) != COFFER_OK ||
        (r = store_col_text(res, 0, 1, "coffer.ceremonies.kind", out->kind, sizeof(out->kind))) !=
            COFFER_OK ||
        (r = store_col_text(res, 0, 2, "coffer.ceremonies.outcome", outcome, sizeof(outcome))) !=
            COFFER_OK ||
        (r = col_text_alloc(res, 0, 3, "coffer.ceremonies.transcript",
                            COFFER_CEREMONY_TRANSCRIPT_MAX, true, &out->transcript,
                            &out->transcript_len)) != COFFER_OK) {
        goto out;
    }
    out->completed = strcmp(outcome, "completed") == 0;
    if (PQgetisnull(res, 0, 4) == 0 &&
        ((r = store_col_bytea_range(res, 0, 4, "coffer.ceremonies.signature", out->signature, 8,
                                    sizeof(out->signature), &out->signature_len)) != COFFER_OK ||
         (r = store_col_u32(res, 0, 5, "coffer.ceremonies.key_version", 1, &out->key_version)) !=
             COFFER_OK)) {
        goto out;
    }
out:
    if (r != COFFER_OK) {
        coffer_store_ceremony_row_cleanup(out);
    }
    PQclear(res);
    return r;
}

enum coffer_err coffer_store_ceremony_link_mk(struct coffer_store *s, uint32_t version,
                                              const struct coffer_uuid *ceremony_id)
{
    struct store_params p = {0};

    store_param_int4(&p, (int32_t)version);
    store_param_uuid(&p, ceremony_id);
    return run_one(s, &q_link_mk, &p, "linking the master key to its ceremony");
}

enum coffer_err coffer_store_ceremony_link_org_key(struct coffer_store *s,
                                                   const struct coffer_uuid *org_id,
                                                   uint32_t version,
                                                   const struct coffer_uuid *ceremony_id)
{
    struct store_params p = {0};

    store_param_uuid(&p, org_id);
    store_param_int4(&p, (int32_t)version);
    store_param_uuid(&p, ceremony_id);
    return run_one(s, &q_link_org_key, &p, "linking the org key to its ceremony");
}

enum coffer_err coffer_store_ceremony_link_audit_key(struct coffer_store *s, uint32_t version,
                                                     const struct coffer_uuid *ceremony_id)
{
    struct store_params p = {0};

    store_param_int4(&p, (int32_t)version);
    store_param_uuid(&p, ceremony_id);
    return run_one(s, &q_link_audit_key, &p, "linking the audit signing key to its ceremony");
}

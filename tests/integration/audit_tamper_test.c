/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Tampering with the audit log is found, by the real `coffer audit verify`
 * reading the views as coffer_auditor, and named at the right place.
 *
 * A base log of 32 events (two orgs) with one rolled-back event (a gap in a
 * sealed range) is sealed into 4 checkpoints, between batches, with the
 * audit signing key in the token. Each case then works on its own copy of
 * that database (CREATE DATABASE ... TEMPLATE, as the superuser), changes it
 * as the superuser with the append-only triggers disabled, the way a
 * database administrator could, and checks the exit status (0 intact, 1
 * broken, 2 could not check) and the exact first problem line:
 *
 *   - the untouched copy is intact, also with the right --fingerprint; a
 *     wrong one is unknown_key;
 *   - a purpose edited: event_altered at that id; edited with its row_hash
 *     recomputed: event_hash_changed; an event deleted: event_deleted; two
 *     events' contents swapped: event_altered at the first; an event inserted
 *     into the gap with a correct row_hash: event_inserted; a checkpoint's
 *     signature altered: checkpoint_signature; a checkpoint deleted:
 *     checkpoint_missing at the next one;
 *   - a trigger disabled and sealed again: still intact, the schema change
 *     reported;
 *   - exports (JSONL, CSV, filtered by org) verify offline; an edited export
 *     is broken (1); a truncated or malformed one cannot be checked (2);
 *   - prune: refused for an incomplete export, done for a complete one; the
 *     database still verifies, counting the pruned events; audit.prunes
 *     records it; the owner still cannot delete an event that was not pruned.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "world.h"

#include "coffer/audit.h"
#include "coffer/audit_seal.h"
#include "coffer/auditlog.h"
#include "coffer/mem.h"

#include <inttypes.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#define TD "example.org"
#define BATCH 8                /* events per batch; batch 2 has the rolled-back one in its middle */
#define ORG_EVENTS (2 * BATCH) /* each org's share of the 4 batches */

static struct world w;
static char dir[] = "/tmp/coffer-audit-tamper.XXXXXX";
static char fingerprint[2 * COFFER_AUDIT_HASH_LEN + 1];
static PGconn *super; /* the cluster superuser, on database postgres */
static unsigned rid_seq;

/* Ids of the base log. */
static int64_t cp2_a;  /* first event of checkpoint 2 */
static int64_t cp2_b;  /* the one after it */
static int64_t gap;    /* the rolled-back event's number, inside checkpoint 2's range */
static int64_t cp3_a;  /* first event of checkpoint 3 */
static int64_t events; /* committed events */

/* ---- The base log --------------------------------------------------------------------- */

/* Appends one access event of an agent of org; the purpose is unique. Returns its id. */
static int64_t add_event(const char *org)
{
    struct coffer_principal p;
    struct coffer_audit_event e;
    char request_id[32];
    char purpose[64];
    int64_t id = 0;
    unsigned n = ++rid_seq;

    memset(&p, 0, sizeof(p));
    p.kind = COFFER_PRINCIPAL_AGENT;
    snprintf(p.trust_domain, sizeof(p.trust_domain), "%s", TD);
    snprintf(p.org, sizeof(p.org), "%s", org);
    snprintf(p.agent_type, sizeof(p.agent_type), "builder");
    snprintf(p.instance, sizeof(p.instance), "b-%u", n % 3);
    snprintf(request_id, sizeof(request_id), "tamper-%u", n);
    snprintf(purpose, sizeof(purpose), "purpose number %u", n);
    memset(&e, 0, sizeof(e));
    e.action = COFFER_AUDIT_ACCESS;
    e.allowed = n % 4 != 0;
    e.reason = e.allowed ? "granted" : "no_grant";
    e.request_id = request_id;
    e.client_addr = "192.0.2.10:40000";
    e.who = &p;
    e.org = org;
    e.project = "proj";
    e.credential = "registry";
    e.version = 1;
    e.phase = "build";
    e.purpose = purpose;
    e.purpose_len = strlen(purpose);
    e.org_key_version = e.allowed ? 1 : 0;
    e.mk_version = e.allowed ? 1 : 0;
    if (coffer_store_audit_insert(w.st, &e, &id) != COFFER_OK) {
        fail_msg("audit insert: %s", coffer_err_detail());
    }
    assert_true(id > 0);
    return id;
}

/* n events, alternating between the two orgs; returns the first id. */
static int64_t add_events(int n)
{
    int64_t first = 0;

    for (int i = 0; i < n; i++) {
        int64_t id = add_event(rid_seq % 2 == 0 ? "acme" : "other");

        first = i == 0 ? id : first;
        events++;
    }
    return first;
}

/* Seals what there is into checkpoint seq, and then finds nothing left. */
static void seal(struct coffer_store *st, int64_t seq, int64_t n_events, bool schema_changed)
{
    struct coffer_audit_seal_result res;

    if (coffer_audit_seal_once(w.k, st, 2000, &res) != COFFER_OK) {
        fail_msg("seal: %s", coffer_err_detail());
    }
    assert_true(res.sealed);
    assert_false(res.more);
    assert_int_equal(res.seq, seq);
    assert_int_equal(res.events, n_events);
    assert_int_equal(res.schema_changed, schema_changed);
    assert_int_equal(coffer_audit_seal_once(w.k, st, 2000, &res), COFFER_OK);
    assert_false(res.sealed);
}

static void build_base(void)
{
    struct coffer_keys_audit_key key;
    unsigned char fp[COFFER_AUDIT_HASH_LEN];
    int64_t rolled_back = 0;

    if (coffer_keys_audit_key_create(w.k, w.st, &key) != COFFER_OK) {
        fail_msg("audit key: %s", coffer_err_detail());
    }
    coffer_audit_fingerprint(key.spki, key.spki_len, fp);
    for (size_t i = 0; i < sizeof(fp); i++) {
        snprintf(fingerprint + 2 * i, 3, "%02x", fp[i]);
    }

    (void)add_events(BATCH);
    seal(w.st, 1, BATCH, true);

    cp2_a = add_events(BATCH / 2);
    cp2_b = cp2_a + 1;
    /* An event whose transaction rolls back leaves its number unused inside the range. */
    assert_int_equal(coffer_store_begin(w.st), COFFER_OK);
    rolled_back = add_event("acme");
    coffer_store_rollback(w.st);
    rid_seq--;
    gap = rolled_back;
    assert_int_equal(add_events(BATCH / 2), gap + 1);
    seal(w.st, 2, BATCH, false);

    cp3_a = add_events(BATCH);
    seal(w.st, 3, BATCH, false);
    (void)add_events(BATCH);
    seal(w.st, 4, BATCH, false);
    assert_int_equal(events, 4 * BATCH);
    assert_true(world_sql_is(&w,
                             "SELECT count(*) || '|' || max(seq) || '|' || sum(events) "
                             "FROM coffer.audit_checkpoints",
                             "4|4|32"));
}

/* ---- Databases --------------------------------------------------------------------------- */

static void exec_ok(PGconn *c, const char *sql)
{
    PGresult *res = PQexec(c, sql);

    if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK) {
        fail_msg("%s: %s", sql, PQerrorMessage(c));
    }
    PQclear(res);
}

static void db_name(const char *suffix, char out[64])
{
    int n = snprintf(out, 64, "%s_%s", w.h.dbname, suffix);

    assert_true(n > 0 && n < 64);
}

/* A fresh copy of the base database, named <base>_<suffix>. */
static void copy_base(const char *suffix, char name[64])
{
    char sql[256];

    db_name(suffix, name);
    snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s WITH (FORCE)", name);
    exec_ok(super, sql);
    snprintf(sql, sizeof(sql), "CREATE DATABASE %s TEMPLATE %s", name, w.h.dbname);
    exec_ok(super, sql);
}

static void drop_copy(const char *name)
{
    char sql[256];

    snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s WITH (FORCE)", name);
    exec_ok(super, sql);
}

/* A conninfo for user on database db, through the fixture's socket. */
static void conninfo(const char *db, const char *user, char *out, size_t cap)
{
    int n = snprintf(out, cap, "host=%s dbname=%s user=%s", w.h.env.pg_socket_dir, db, user);

    assert_true(n > 0 && (size_t)n < cap);
}

/* The superuser on db (the fixture's superuser conninfo with a second dbname: libpq takes the
 * last). */
static PGconn *connect_super(const char *db)
{
    char ci[PATH_MAX + 256];
    PGconn *c;

    snprintf(ci, sizeof(ci), "%s dbname=%s", w.h.env.db_super, db);
    c = PQconnectdb(ci);
    if (PQstatus(c) != CONNECTION_OK) {
        fail_msg("superuser on %s: %s", db, PQerrorMessage(c));
    }
    return c;
}

/* Runs sql on db as the superuser with every user trigger of the audit tables disabled. */
static void tamper(const char *db, const char *sql)
{
    PGconn *c = connect_super(db);

    exec_ok(c, "BEGIN");
    exec_ok(c, "ALTER TABLE coffer.audit_events DISABLE TRIGGER USER");
    exec_ok(c, "ALTER TABLE coffer.audit_checkpoints DISABLE TRIGGER USER");
    exec_ok(c, sql);
    exec_ok(c, "ALTER TABLE coffer.audit_events ENABLE TRIGGER USER");
    exec_ok(c, "ALTER TABLE coffer.audit_checkpoints ENABLE TRIGGER USER");
    exec_ok(c, "COMMIT");
    PQfinish(c);
}

/* One value of a query on db as the superuser, into out. */
static void query_value(const char *db, const char *sql, char *out, size_t cap)
{
    PGconn *c = connect_super(db);
    PGresult *res = PQexec(c, sql);

    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        fail_msg("%s: %s", sql, PQerrorMessage(c));
    }
    snprintf(out, cap, "%s", PQgetisnull(res, 0, 0) ? "(null)" : PQgetvalue(res, 0, 0));
    PQclear(res);
    PQfinish(c);
}

/* ---- The coffer command ------------------------------------------------------------------ */

/* Runs coffer with args; extra (may be NULL) is one more NAME=value for its environment. */
static void coffer_env(const char *const *args, const char *extra, struct harness_run *res)
{
    const char *argv[20];
    const char *const envp[] = {"PATH=/usr/bin:/bin", "USER=auditor-test", extra, NULL};
    size_t n = 0;

    argv[n++] = COFFER_BIN;
    while (*args != NULL && n < 19) {
        argv[n++] = *args++;
    }
    argv[n] = NULL;
    harness_run(argv, envp, res);
}

static void coffer(const char *const *args, struct harness_run *res)
{
    coffer_env(args, NULL, res);
}

/* Runs coffer with args and asserts it succeeded, showing its output if it did not. */
static void coffer_ok(const char *const *args)
{
    struct harness_run r;

    coffer(args, &r);
    if (r.status != 0) {
        fprintf(stderr, "coffer %s %s: status %d\n%s\n", args[0], args[1], r.status, r.out);
    }
    assert_int_equal(r.status, 0);
}

/* Whether out holds line as a whole line. */
static bool has_line(const char *out, const char *line)
{
    size_t len = strlen(line);

    for (const char *p = strstr(out, line); p != NULL; p = strstr(p + 1, line)) {
        if ((p == out || p[-1] == '\n') && (p[len] == '\n' || p[len] == '\0')) {
            return true;
        }
    }
    return false;
}

/* Runs coffer with args and asserts the exit status and a whole line of its output. */
static void expect(const char *const *args, int status, const char *line)
{
    struct harness_run r;

    coffer(args, &r);
    if (r.status != status || !has_line(r.out, line)) {
        fprintf(stderr, "coffer %s %s: status %d (want %d), want the line\n  %s\noutput:\n%s\n",
                args[0], args[1], r.status, status, line, r.out);
    }
    assert_int_equal(r.status, status);
    assert_true(has_line(r.out, line));
}

/* coffer audit verify --no-record of database db as coffer_auditor: status and a line. */
static void expect_verify(const char *db, int status, const char *line)
{
    char ci[PATH_MAX + 128];
    const char *args[] = {"audit", "verify", "--no-record", "--dsn", ci, NULL};

    conninfo(db, "coffer_auditor", ci, sizeof(ci));
    expect(args, status, line);
}

static void broken_line(char *out, size_t cap, const char *fmt, ...) COFFER_PRINTF(3, 4);

/* "result: BROKEN: " followed by the formatted problem. */
static void broken_line(char *out, size_t cap, const char *fmt, ...)
{
    va_list ap;
    int n = snprintf(out, cap, "result: BROKEN: ");

    va_start(ap, fmt);
    vsnprintf(out + n, cap - (size_t)n, fmt, ap);
    va_end(ap);
}

/* ---- Cases -------------------------------------------------------------------------------- */

static void test_intact(void **state)
{
    char db[64];
    char ci[PATH_MAX + 128];
    char v[256];
    const char *pinned[] = {"audit", "verify", "--dsn", ci, "--fingerprint", fingerprint, NULL};
    const char *wrong[] = {"audit",
                           "verify",
                           "--no-record",
                           "--dsn",
                           ci,
                           "--fingerprint",
                           "00000000000000000000000000000000000000000000000000000000000000ff",
                           NULL};

    (void)state;
    copy_base("intact", db);
    conninfo(db, "coffer_auditor", ci, sizeof(ci));
    expect_verify(db, 0, "result: INTACT");
    expect_verify(db, 0, "events verified against their checkpoint: 32");
    /* Pinned to the right key, and recorded (no --no-record) in audit.verifications. */
    expect(pinned, 0, "result: INTACT");
    query_value(db,
                "SELECT last_verification_intact || '|' || last_verified_through || '|' || "
                "last_verified_by FROM audit.integrity",
                v, sizeof(v));
    assert_string_equal(v, "true|4|coffer_auditor");
    expect(wrong, 1,
           "result: BROKEN: checkpoint 1: signed by key version 1, not by the pinned key "
           "[unknown_key]");
    drop_copy(db);
}

static void test_purpose_edited(void **state)
{
    char db[64];
    char sql[256];
    char line[256];

    (void)state;
    copy_base("edited", db);
    snprintf(sql, sizeof(sql),
             "UPDATE coffer.audit_events SET purpose = 'nothing to see' WHERE id = %" PRId64,
             cp2_a);
    tamper(db, sql);
    broken_line(line, sizeof(line),
                "event %" PRId64 ": content does not match its hash (checkpoint 2) [event_altered]",
                cp2_a);
    expect_verify(db, 1, line);
    drop_copy(db);
}

static void test_hash_recomputed(void **state)
{
    char db[64];
    char sql[512];
    char line[256];

    (void)state;
    copy_base("rehashed", db);
    snprintf(sql, sizeof(sql),
             "UPDATE coffer.audit_events SET purpose = 'nothing to see' WHERE id = %" PRId64 "; "
             "UPDATE coffer.audit_events e SET row_hash = audit.event_hash(e) WHERE id = %" PRId64,
             cp2_a, cp2_a);
    tamper(db, sql);
    broken_line(line, sizeof(line),
                "event %" PRId64 ": its hash differs from the one sealed by checkpoint 2 "
                "[event_hash_changed]",
                cp2_a);
    expect_verify(db, 1, line);
    drop_copy(db);
}

static void test_event_deleted(void **state)
{
    char db[64];
    char sql[256];
    char line[256];

    (void)state;
    copy_base("deleted", db);
    snprintf(sql, sizeof(sql), "DELETE FROM coffer.audit_events WHERE id = %" PRId64, cp2_b);
    tamper(db, sql);
    broken_line(line, sizeof(line),
                "event %" PRId64 ": sealed by checkpoint 2 but missing [event_deleted]", cp2_b);
    expect_verify(db, 1, line);
    drop_copy(db);
}

static void test_events_swapped(void **state)
{
    /* Every field but the number and the hash moves to the other row. */
    static const char cols[] = "at, action, allowed, reason, purpose_unexpected, request_id, "
                               "client_addr, principal_kind, trust_domain, org, agent_type, "
                               "instance, admin, target_org, project, credential, version, "
                               "phase, purpose, detail, org_key_version, mk_version";
    char db[64];
    char sql[1024];
    char line[256];

    (void)state;
    copy_base("swapped", db);
    snprintf(sql, sizeof(sql),
             "UPDATE coffer.audit_events e SET (%s) = (SELECT %s FROM coffer.audit_events o "
             "WHERE o.id = CASE e.id WHEN %" PRId64 " THEN %" PRId64 " ELSE %" PRId64 " END) "
             "WHERE e.id IN (%" PRId64 ", %" PRId64 ")",
             cols, cols, cp2_a, cp2_b, cp2_a, cp2_a, cp2_b);
    tamper(db, sql);
    broken_line(line, sizeof(line),
                "event %" PRId64 ": content does not match its hash (checkpoint 2) [event_altered]",
                cp2_a);
    expect_verify(db, 1, line);
    drop_copy(db);
}

static void test_signature_altered(void **state)
{
    char db[64];
    char line[256];

    (void)state;
    copy_base("signature", db);
    /* The last byte of s flipped: still a well-formed DER signature, of nothing signed. */
    tamper(db, "UPDATE coffer.audit_checkpoints SET signature = set_byte(signature, "
               "octet_length(signature) - 1, get_byte(signature, octet_length(signature) - 1) # 1) "
               "WHERE seq = 2");
    broken_line(line, sizeof(line),
                "checkpoint 2: signature does not verify with key version 1 "
                "[checkpoint_signature]");
    expect_verify(db, 1, line);
    drop_copy(db);
}

static void test_event_inserted(void **state)
{
    char db[64];
    char sql[1024];
    char line[256];

    (void)state;
    copy_base("inserted", db);
    /* Into the rolled-back event's number, timed between its neighbours, with a true hash. */
    snprintf(sql, sizeof(sql),
             "INSERT INTO coffer.audit_events (id, at, action, allowed, reason, request_id, "
             "row_hash) SELECT %" PRId64 ", at + interval '1 microsecond', 'metadata', true, 'ok', "
             "'slipped-in', decode(repeat('00', 32), 'hex') FROM coffer.audit_events "
             "WHERE id = %" PRId64 "; "
             "UPDATE coffer.audit_events e SET row_hash = audit.event_hash(e) WHERE id = %" PRId64,
             gap, gap - 1, gap);
    tamper(db, sql);
    broken_line(line, sizeof(line),
                "event %" PRId64 ": inside the range of checkpoint 2 but not sealed by it "
                "[event_inserted]",
                gap);
    expect_verify(db, 1, line);
    drop_copy(db);
}

static void test_checkpoint_deleted(void **state)
{
    char db[64];
    char line[256];

    (void)state;
    copy_base("cpdeleted", db);
    tamper(db, "DELETE FROM coffer.audit_checkpoints WHERE seq = 3");
    broken_line(line, sizeof(line),
                "checkpoint 4 follows checkpoint 2: 1 missing [checkpoint_missing]");
    expect_verify(db, 1, line);
    drop_copy(db);
}

/* Disabling a trigger changes the audit schema: the next checkpoint records it. */
static void test_schema_change(void **state)
{
    char db[64];
    char ci[PATH_MAX + 128];
    char v[256];
    struct coffer_store *st = NULL;
    PGconn *c;

    (void)state;
    copy_base("schema", db);
    c = connect_super(db);
    exec_ok(c, "ALTER TABLE coffer.audit_events DISABLE TRIGGER audit_events_append_only");
    PQfinish(c);
    conninfo(db, "coffer_app", ci, sizeof(ci));
    assert_int_equal(coffer_store_open(ci, &st), COFFER_OK);
    seal(st, 5, 0, true);
    coffer_store_close(&st);

    query_value(db,
                "SELECT events || '|' || schema_changed || '|' || (strpos(schema_text, "
                "'trigger coffer.audit_events.audit_events_append_only enabled=D ') > 0) "
                "FROM audit.checkpoints WHERE seq = 5",
                v, sizeof(v));
    assert_string_equal(v, "0|true|true");
    expect_verify(db, 0, "result: INTACT");
    expect_verify(db, 0,
                  "audit schema changes recorded: 1 (first in checkpoint 5; see "
                  "audit.checkpoints.schema_text)");
    drop_copy(db);
}

/* ---- Exports ------------------------------------------------------------------------------ */

/*
 * docs/auditors.md, "Checking a signature with openssl alone", followed
 * literally: psql as the auditor and the openssl and coreutils commands, no
 * Coffer code. A changed message must fail.
 */
static void test_openssl_alone(void **state)
{
    static const char script[] =
        "set -euo pipefail\n"
        "cd \"$WORK\"\n"
        "psql \"$COFFER_AUDITOR_DSN\" -Atc \"SELECT public_key_pem FROM audit.signing_keys "
        "WHERE version = 1\" > audit-key.pem\n"
        "openssl pkey -pubin -in audit-key.pem -outform DER | openssl dgst -sha256\n"
        "psql \"$COFFER_AUDITOR_DSN\" -Atc \"SELECT encode(message, 'base64') FROM "
        "audit.checkpoints WHERE seq = 2\" | base64 -d > cp2.txt\n"
        "psql \"$COFFER_AUDITOR_DSN\" -Atc \"SELECT encode(signature, 'base64') FROM "
        "audit.checkpoints WHERE seq = 2\" | base64 -d > cp2.sig\n"
        "openssl dgst -sha256 -verify audit-key.pem -signature cp2.sig cp2.txt\n"
        "echo \"previous $(sha256sum cp2.txt | cut -d' ' -f1)\"\n"
        "psql \"$COFFER_AUDITOR_DSN\" -Atc \"SELECT message_text FROM audit.checkpoints WHERE "
        "seq = 3\" | grep '^previous ' | sed 's/^/next says /'\n"
        "sed -i 's/^events /events 1/' cp2.txt\n"
        "if openssl dgst -sha256 -verify audit-key.pem -signature cp2.sig cp2.txt; then exit 3; "
        "fi\n";
    char db[64];
    char ci[PATH_MAX + 128];
    char dsn[PATH_MAX + 160];
    char work[PATH_MAX + 16];
    char path[PATH_MAX + 64];
    char want[160];
    static const char *const files[] = {"audit-key.pem", "cp2.txt", "cp2.sig"};
    const char *argv[] = {"/bin/bash", "-c", script, NULL};
    const char *envp[] = {"PATH=/usr/bin:/bin", dsn, work, NULL};
    struct harness_run r;
    const char *prev;
    const char *next;

    (void)state;
    copy_base("openssl", db);
    conninfo(db, "coffer_auditor", ci, sizeof(ci));
    snprintf(dsn, sizeof(dsn), "COFFER_AUDITOR_DSN=%s", ci);
    snprintf(work, sizeof(work), "WORK=%s", dir);
    harness_run(argv, envp, &r);
    if (r.status != 0) {
        fail_msg("the documented openssl check: status %d\n%s", r.status, r.out);
    }
    snprintf(want, sizeof(want), "SHA2-256(stdin)= %s", fingerprint);
    assert_true(has_line(r.out, want));
    assert_true(has_line(r.out, "Verified OK"));
    /* The edited message (its events line changed) no longer verifies. */
    assert_true(has_line(r.out, "Verification failure"));
    /* Checkpoint 3 names the SHA-256 of checkpoint 2's message as its previous. */
    prev = strstr(r.out, "\nprevious ");
    next = strstr(r.out, "next says previous ");
    assert_non_null(prev);
    assert_non_null(next);
    assert_int_equal(
        strncmp(prev + strlen("\nprevious "), next + strlen("next says previous "), 64), 0);
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
        (void)unlink(path);
    }
    drop_copy(db);
}

static void path_of(const char *name, char out[PATH_MAX])
{
    snprintf(out, PATH_MAX, "%s/%s", dir, name);
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *text;
    long size;

    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    size = ftell(f);
    assert_true(size > 0);
    rewind(f);
    text = coffer_calloc(1, (size_t)size + 1);
    assert_non_null(text);
    assert_int_equal(fread(text, 1, (size_t)size, f), (size_t)size);
    fclose(f);
    *len = (size_t)size;
    return text;
}

static void spill(const char *path, const char *text, size_t len)
{
    FILE *f = fopen(path, "wb");

    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

static void expect_verify_file(const char *path, int status, const char *line)
{
    const char *args[] = {"audit", "verify", "--file", path, "--fingerprint", fingerprint, NULL};

    expect(args, status, line);
}

static void test_exports(void **state)
{
    char db[64];
    char ci[PATH_MAX + 128];
    char jsonl[PATH_MAX];
    char csv[PATH_MAX];
    char org[PATH_MAX];
    char edited[PATH_MAX];
    char cut[PATH_MAX];
    char junk[PATH_MAX];
    char line[128];
    const char *exp_jsonl[] = {"audit", "export",   "--dsn", ci,  "--format",
                               "jsonl", "--output", jsonl,   NULL};
    const char *exp_csv[] = {"audit", "export",   "--dsn", ci,  "--format",
                             "csv",   "--output", csv,     NULL};
    const char *exp_org[] = {"audit", "export",   "--dsn", ci,  "--org",
                             "other", "--output", org,     NULL};
    char needle[64];
    char *text;
    char *at;
    size_t len = 0;

    (void)state;
    copy_base("export", db);
    conninfo(db, "coffer_auditor", ci, sizeof(ci));
    path_of("all.jsonl", jsonl);
    path_of("all.csv", csv);
    path_of("other.jsonl", org);
    path_of("edited.jsonl", edited);
    path_of("cut.jsonl", cut);
    path_of("junk.jsonl", junk);

    coffer_ok(exp_jsonl);
    expect_verify_file(jsonl, 0, "result: INTACT");
    expect_verify_file(jsonl, 0, "events verified against their checkpoint: 32");
    coffer_ok(exp_csv);
    expect_verify_file(csv, 0, "result: INTACT");
    expect_verify_file(csv, 0, "events verified against their checkpoint: 32");

    /* Org other's events verify against the full sealed lists; acme's are counted absent. */
    coffer_ok(exp_org);
    expect_verify_file(org, 0, "result: INTACT");
    snprintf(line, sizeof(line), "events verified against their checkpoint: %d", ORG_EVENTS);
    expect_verify_file(org, 0, line);
    snprintf(line, sizeof(line), "sealed events not in this export (other orgs or times): %d",
             ORG_EVENTS);
    expect_verify_file(org, 0, line);

    /* The purpose of cp2_b (the 10th event written) edited in the file, keeping its length. */
    snprintf(needle, sizeof(needle), "\"purpose\":\"purpose number %d\"", BATCH + 2);
    text = slurp(jsonl, &len);
    at = strstr(text, needle);
    assert_non_null(at);
    at[strlen(needle) - 3] = '9';
    spill(edited, text, len);
    broken_line(line, sizeof(line),
                "event %" PRId64 ": content does not match its hash (checkpoint 2) [event_altered]",
                cp2_b);
    expect_verify_file(edited, 1, line);
    expect_verify_file(edited, 1, "problems found: 1");

    /* Cut in the middle of a line, and not an export at all: the check cannot run. */
    spill(cut, text, len / 2);
    coffer_free(text);
    {
        struct harness_run e;
        const char *args[] = {"audit", "verify", "--file", cut, NULL};

        coffer(args, &e);
        assert_int_equal(e.status, 2);
        assert_null(strstr(e.out, "result: INTACT"));
    }
    spill(junk, "this is not an export\n", strlen("this is not an export\n"));
    {
        struct harness_run e;
        const char *args[] = {"audit", "verify", "--file", junk, NULL};

        coffer(args, &e);
        assert_int_equal(e.status, 2);
        assert_null(strstr(e.out, "result: INTACT"));
    }
    drop_copy(db);
}

/* ---- Prune ----------------------------------------------------------------------------------- */

static void test_prune(void **state)
{
    char db[64];
    char auditor[PATH_MAX + 128];
    char owner[PATH_MAX + 128];
    char cp12[PATH_MAX];
    char acme[PATH_MAX];
    char line[PATH_MAX + 128];
    char sql[256];
    char v[256];
    const char *exp_cp12[] = {"audit", "export",   "--dsn", auditor, "--checkpoints",
                              "1:2",   "--output", cp12,    NULL};
    const char *exp_acme[] = {"audit", "export",   "--dsn", auditor, "--org",
                              "acme",  "--output", acme,    NULL};
    const char *prune_acme[] = {
        "audit", "prune", "--through-checkpoint", "2", "--export", acme, "--yes", "--dsn",
        owner,   NULL};
    const char *prune_cp12[] = {"audit", "prune", "--through-checkpoint", "2", "--export", cp12,
                                "--yes", NULL};
    char owner_var[PATH_MAX + 160];
    struct harness_run r;
    PGconn *c;
    PGresult *res;

    (void)state;
    copy_base("prune", db);
    conninfo(db, "coffer_auditor", auditor, sizeof(auditor));
    conninfo(db, "coffer_owner", owner, sizeof(owner));
    path_of("cp12.jsonl", cp12);
    path_of("acme.jsonl", acme);

    coffer_ok(exp_cp12);
    expect_verify_file(cp12, 0, "result: INTACT");
    expect_verify_file(cp12, 0, "events verified against their checkpoint: 16");

    /* A selection is not enough to prune: refused, nothing deleted. */
    coffer_ok(exp_acme);
    coffer(prune_acme, &r);
    if (r.status != 1) {
        fprintf(stderr, "%s\n", r.out);
    }
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.out, "refused"));
    query_value(db,
                "SELECT count(*) || '|' || (SELECT count(*) FROM audit.prunes) "
                "FROM coffer.audit_events",
                v, sizeof(v));
    assert_string_equal(v, "32|0");

    snprintf(line, sizeof(line), "pruned %d events through checkpoint 2; keep %s (SHA-256 ",
             2 * BATCH, cp12);
    /* The owner's login from the environment, as operators set it. */
    snprintf(owner_var, sizeof(owner_var), "COFFER_DATABASE_OWNER=%s", owner);
    coffer_env(prune_cp12, owner_var, &r);
    if (r.status != 0 || strstr(r.out, line) == NULL) {
        fprintf(stderr, "prune: status %d\n%s\n", r.status, r.out);
    }
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, line));

    expect_verify(db, 0, "result: INTACT");
    snprintf(line, sizeof(line), "sealed events pruned after export: %d", 2 * BATCH);
    expect_verify(db, 0, line);
    query_value(db,
                "SELECT through_seq || '|' || through_event || '|' || export_events || '|' || "
                "deleted_events || '|' || db_user || '|' || pruned_by FROM audit.prunes",
                v, sizeof(v));
    snprintf(line, sizeof(line), "2|%" PRId64 "|%d|%d|coffer_owner|auditor-test@", cp3_a - 1,
             2 * BATCH, 2 * BATCH);
    assert_memory_equal(v, line, strlen(line));

    /* The owner still cannot delete an event that was not pruned. */
    c = PQconnectdb(owner);
    assert_int_equal(PQstatus(c), CONNECTION_OK);
    snprintf(sql, sizeof(sql), "DELETE FROM coffer.audit_events WHERE id = %" PRId64, cp3_a);
    res = PQexec(c, sql);
    assert_int_equal(PQresultStatus(res), PGRES_FATAL_ERROR);
    assert_string_equal(PQresultErrorField(res, PG_DIAG_SQLSTATE), "42501");
    PQclear(res);
    PQfinish(c);
    drop_copy(db);
}

/* ---- Set-up -------------------------------------------------------------------------------- */

static int setup(void **state)
{
    (void)state;
    build_base();
    /* A template database must have no other connection: close ours to it. */
    coffer_store_close(&w.st);
    PQfinish(w.owner);
    w.owner = NULL;
    super = PQconnectdb(w.h.env.db_super);
    if (PQstatus(super) != CONNECTION_OK) {
        fprintf(stderr, "superuser: %s\n", PQerrorMessage(super));
        return -1;
    }
    /* DROP DATABASE IF EXISTS of a copy not made yet is not worth a notice. */
    exec_ok(super, "SET client_min_messages = warning");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    PQfinish(super);
    super = NULL;
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_intact),          cmocka_unit_test(test_purpose_edited),
        cmocka_unit_test(test_hash_recomputed), cmocka_unit_test(test_event_deleted),
        cmocka_unit_test(test_events_swapped),  cmocka_unit_test(test_signature_altered),
        cmocka_unit_test(test_event_inserted),  cmocka_unit_test(test_checkpoint_deleted),
        cmocka_unit_test(test_schema_change),   cmocka_unit_test(test_exports),
        cmocka_unit_test(test_prune),           cmocka_unit_test(test_openssl_alone),
    };
    int failed;

    if (mkdtemp(dir) == NULL || chmod(dir, 0755) != 0) {
        perror("audit_tamper_test: mkdtemp");
        return 1;
    }
    world_open("audit_tamper", "acme", &w);
    failed = cmocka_run_group_tests(tests, setup, teardown);
    world_close(&w);
    if (coffer_dev_remove_tree(dir) != COFFER_OK) {
        fprintf(stderr, "audit_tamper_test: removing %s failed\n", dir);
    }
    return failed;
}

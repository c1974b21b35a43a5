/* SPDX-License-Identifier: Apache-2.0 */
/*
 * PostgreSQL failing under a real cofferd (`cofferd -c`, two workers). The
 * test provisions its own embedded default (coffer_dev_up in a temporary
 * directory: token, TLS, and a private cluster whose data lies on a small
 * tmpfs this test mounts), because it crashes, stops and fills that
 * cluster; the fixture's shared cluster is never touched.
 *
 *   - PostgreSQL crashed (immediate shutdown) and started again during a
 *     mixed load from client threads (puts of distinct values, accesses,
 *     revocations): every acknowledged put reads back with its exact value,
 *     every acknowledged revocation holds, every unacknowledged write is
 *     either whole (its row and its audit event) or absent, accesses
 *     answered 200 each have their event, and cofferd serves again without
 *     a restart (how long it took is printed);
 *   - PostgreSQL stopped: accesses, puts and listings answer 503
 *     database_unavailable within 2 s, 20 concurrent requests too, health
 *     says the database is unavailable, and after a start the service
 *     returns by itself;
 *   - PostgreSQL restarted while cofferd was idle: the first requests after
 *     it are served, none refused for a connection the restart closed;
 *   - the audit table held by another transaction: no access is answered
 *     (no value leaves) until its event can commit, a client that leaves
 *     first kills no worker and is still audited, and afterwards every
 *     access has its value and event;
 *   - the disk under PostgreSQL full: writes are refused with 503
 *     database_unavailable (never a 500), an access is either answered with
 *     its audit event written or refused, the server keeps answering, and
 *     once space is freed everything works again. Skipped, with the reason,
 *     where a tmpfs cannot be mounted.
 *
 * Only names and status codes are printed, never a credential's value.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "https.h"
#include "harness.h"

#include "coffer/dev.h"
#include "server/proc.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <pwd.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define WRITERS 2
#define MAX_PUTS 1000       /* per writer and phase */
#define ACC_CREDS 6         /* what the accessing thread reads */
#define RV_CREDS 80         /* what the revoking thread revokes, one after another */
#define PAUSE_REFUSED_MS 20 /* a client thread's pause after an answer that was not 2xx */
#define FAST_MS 2000        /* a refusal must come well under a client's timeout */
#define BACK_WITHIN_MS 20000
#define CROWD 20
#define TMPFS_SIZE "160m"

static char dir[] = "/tmp/coffer-faultdb.XXXXXX";
static char pg_dir[64]; /* DIR/pg: the tmpfs mount point */
static bool mounted;
static char no_tmpfs[512]; /* why DIR/pg is not a tmpfs, when it is not */
static struct coffer_dev_env env;
static char config[PATH_MAX];
static char log_path[PATH_MAX];
static struct https_target target;
static pid_t server;

/* ---- Small tools ----------------------------------------------------------------------------- */

/* cofferd's workers (children named cofferd-worker): their PIDs into out (cap), the count. */
static size_t server_workers(pid_t *out, size_t cap)
{
    char path[64];
    char kids[1024] = "";
    size_t n = 0;
    FILE *f;

    snprintf(path, sizeof(path), "/proc/%ld/task/%ld/children", (long)server, (long)server);
    if ((f = fopen(path, "r")) == NULL) {
        return 0;
    }
    if (fgets(kids, sizeof(kids), f) == NULL) {
        kids[0] = '\0';
    }
    fclose(f);
    for (char *t = strtok(kids, " \n"); t != NULL; t = strtok(NULL, " \n")) {
        char comm_path[64];
        char comm[32] = "";
        FILE *c;

        snprintf(comm_path, sizeof(comm_path), "/proc/%s/comm", t);
        if ((c = fopen(comm_path, "r")) == NULL) {
            continue;
        }
        if (fgets(comm, sizeof(comm), c) != NULL && strncmp(comm, "cofferd-worker", 14) == 0) {
            if (n < cap) {
                out[n] = (pid_t)atol(t);
            }
            n++;
        }
        fclose(c);
    }
    return n;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) != 0) {
    }
}

static long now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The value stored under a credential name: distinct for every name. */
static void value_of(const char *name, char *out, size_t cap)
{
    uint32_t h = 2166136261u;

    for (const char *p = name; *p != '\0'; p++) {
        h = (h ^ (uint8_t)*p) * 16777619u;
    }
    snprintf(out, cap, "val-%s-%08x", name, (unsigned)h);
}

/* The "error" code of a JSON error answer ([a-z_] only), or "" when there is none. */
static void code_of(const struct https_reply *r, char *out, size_t cap)
{
    static const char key[] = "\"error\":\"";
    const char *p = strstr(r->body, key);
    size_t n = 0;

    out[0] = '\0';
    if (p == NULL) {
        return;
    }
    p += strlen(key);
    while (n + 1 < cap && ((p[n] >= 'a' && p[n] <= 'z') || p[n] == '_')) {
        out[n] = p[n];
        n++;
    }
    out[n] = '\0';
}

/* How a write or an access was answered. */
enum verdict {
    ACKED,   /* 2xx */
    REFUSED, /* 503 database_unavailable */
    LOST,    /* no answer at all (the connection failed) */
    OTHER,   /* any other answer: always a failure of this test */
};

static enum verdict classify(CURLcode rc, const struct https_reply *r, char *code, size_t cap)
{
    code[0] = '\0';
    if (rc != CURLE_OK) {
        snprintf(code, cap, "curl: %s", curl_easy_strerror(rc));
        return LOST;
    }
    code_of(r, code, cap);
    if (r->status >= 200 && r->status < 300) {
        return ACKED;
    }
    if (r->status == 503 && strcmp(code, "database_unavailable") == 0) {
        return REFUSED;
    }
    return OTHER;
}

/* One request as admin (true) or as the deployer agent; *took_ms its duration. */
static CURLcode call(const char *method, const char *path, const char *body, bool admin,
                     struct https_reply *r, long *took_ms)
{
    long t0 = now_ms();
    CURLcode rc =
        https_request(&target, method, path, body, admin ? env.tls.admin_cert : env.tls.agent_cert,
                      admin ? env.tls.admin_key : env.tls.agent_key, NULL, r);

    if (took_ms != NULL) {
        *took_ms = now_ms() - t0;
    }
    return rc;
}

static CURLcode put_cred(const char *name, struct https_reply *r, long *took_ms)
{
    char path[160];
    char body[256];
    char value[96];

    value_of(name, value, sizeof(value));
    snprintf(path, sizeof(path), "/v1/orgs/dev/projects/demo/credentials/%s", name);
    snprintf(body, sizeof(body),
             "{\"type\":\"api_key\",\"tier\":\"medium\",\"keys\":{\"api_key\":\"%s\"},"
             "\"grants\":[{\"agent_type\":\"deployer\"}]}",
             value);
    return call("PUT", path, body, true, r, took_ms);
}

static CURLcode access_cred(const char *name, struct https_reply *r, long *took_ms)
{
    char path[160];

    snprintf(path, sizeof(path), "/v1/orgs/dev/projects/demo/credentials/%s/access", name);
    return call("POST", path, "{\"purpose\":\"deploy while the database fails\"}", false, r,
                took_ms);
}

static CURLcode revoke_cred(const char *name, struct https_reply *r, long *took_ms)
{
    char path[160];

    snprintf(path, sizeof(path), "/v1/orgs/dev/projects/demo/credentials/%s/revoke", name);
    return call("POST", path, "{\"reason\":\"rotated out during a fault test\"}", true, r, took_ms);
}

/* True if r is a 200 access answer carrying name's exact value as the key api_key. */
static bool holds_value(const struct https_reply *r, const char *name)
{
    char value[96];
    char want[128];

    value_of(name, value, sizeof(value));
    snprintf(want, sizeof(want), "\"api_key\":\"%s\"", value);
    return r->status == 200 && strstr(r->body, want) != NULL;
}

/* In the test's thread: the access answers 200 with the exact value. */
static void expect_readable(const char *name)
{
    static struct https_reply r;
    char code[64];

    if (access_cred(name, &r, NULL) != CURLE_OK || !holds_value(&r, name)) {
        code_of(&r, code, sizeof(code));
        fail_msg("%s: not read back with its value (status %ld, error '%s')", name, r.status, code);
    }
}

/* ---- SQL as coffer_owner --------------------------------------------------------------------- */

static PGconn *db_open(void)
{
    PGconn *c = PQconnectdb(env.db_owner);

    if (PQstatus(c) != CONNECTION_OK) {
        fail_msg("connecting as coffer_owner: %s", PQerrorMessage(c));
    }
    return c;
}

/* One number from sql, with at most one text parameter. */
static long db_long(PGconn *c, const char *sql, const char *param)
{
    const char *values[1] = {param};
    PGresult *res = PQexecParams(c, sql, param != NULL ? 1 : 0, NULL, values, NULL, NULL, 0);
    long v;

    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1 || PQgetisnull(res, 0, 0)) {
        fail_msg("query failed: %s\n%s", sql, PQerrorMessage(c));
    }
    v = atol(PQgetvalue(res, 0, 0));
    PQclear(res);
    return v;
}

/* The highest audit event id so far. */
static long audit_mark(void)
{
    PGconn *c = db_open();
    long id = db_long(c, "SELECT coalesce(max(id), 0) FROM coffer.audit_events", NULL);

    PQfinish(c);
    return id;
}

/* Allowed access events of the acc-* credentials after the event mark. */
static long access_events_since(PGconn *c, long mark)
{
    char text[24];

    snprintf(text, sizeof(text), "%ld", mark);
    return db_long(c,
                   "SELECT count(*) FROM coffer.audit_events WHERE action = 'access' AND allowed "
                   "AND project = 'demo' AND credential LIKE 'acc-%' AND id > $1::bigint",
                   text);
}

/*
 * Nothing half-applied anywhere in the database: every credential has its
 * current version, every stored version its create event and every create
 * event its version, every revoked credential its revoke event and every
 * revoke event a revoked credential.
 */
static void expect_all_or_nothing(PGconn *c)
{
    static const struct {
        const char *what;
        const char *sql;
    } checks[] = {
        {"credentials without their current version",
         "SELECT count(*) FROM coffer.credentials c WHERE NOT EXISTS (SELECT 1 FROM "
         "coffer.credential_versions v WHERE v.credential_id = c.id AND v.version = "
         "c.current_version)"},
        {"credential versions without their create event",
         "SELECT count(*) FROM coffer.credential_versions v JOIN coffer.credentials c ON c.id = "
         "v.credential_id JOIN coffer.projects p ON p.id = c.project_id JOIN coffer.orgs o ON o.id "
         "= c.org_id WHERE NOT EXISTS (SELECT 1 FROM coffer.audit_events e WHERE e.action = "
         "'create' AND e.allowed AND e.target_org = o.name AND e.project = p.name AND "
         "e.credential = c.name AND e.version = v.version)"},
        {"create events without their credential version",
         "SELECT count(*) FROM coffer.audit_events e WHERE e.action = 'create' AND e.allowed AND "
         "NOT EXISTS (SELECT 1 FROM coffer.credential_versions v JOIN coffer.credentials c ON c.id "
         "= v.credential_id JOIN coffer.projects p ON p.id = c.project_id JOIN coffer.orgs o ON "
         "o.id = c.org_id WHERE o.name = e.target_org AND p.name = e.project AND c.name = "
         "e.credential AND v.version = e.version)"},
        {"revoked credentials without their revoke event",
         "SELECT count(*) FROM coffer.credentials c JOIN coffer.projects p ON p.id = c.project_id "
         "JOIN coffer.orgs o ON o.id = c.org_id WHERE c.revoked_at IS NOT NULL AND NOT EXISTS "
         "(SELECT 1 FROM coffer.audit_events e WHERE e.action = 'revoke' AND e.allowed AND "
         "e.target_org = o.name AND e.project = p.name AND e.credential = c.name)"},
        {"revoke events without a revoked credential",
         "SELECT count(*) FROM coffer.audit_events e WHERE e.action = 'revoke' AND e.allowed AND "
         "NOT EXISTS (SELECT 1 FROM coffer.credentials c JOIN coffer.projects p ON p.id = "
         "c.project_id JOIN coffer.orgs o ON o.id = c.org_id WHERE c.revoked_at IS NOT NULL AND "
         "o.name = e.target_org AND p.name = e.project AND c.name = e.credential)"},
    };

    for (size_t i = 0; i < sizeof(checks) / sizeof(checks[0]); i++) {
        long n = db_long(c, checks[i].sql, NULL);

        if (n != 0) {
            fail_msg("%ld %s", n, checks[i].what);
        }
    }
}

/* ---- Client threads -------------------------------------------------------------------------- */

/* One write (a put or a revocation) and how it was answered. */
struct op {
    char name[48];
    enum verdict v;
    long status;
    char code[64];
};

struct counts {
    long acked;
    long refused;
    long lost;
    long other;
};

static void count(struct counts *c, enum verdict v)
{
    switch (v) {
    case ACKED:
        c->acked++;
        break;
    case REFUSED:
        c->refused++;
        break;
    case LOST:
        c->lost++;
        break;
    case OTHER:
    default:
        c->other++;
        break;
    }
}

/* Fails the test if any op was answered otherwise than 2xx or 503 database_unavailable. */
static void expect_no_other(const char *what, const struct op *ops, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (ops[i].v == OTHER || ops[i].v == LOST) {
            fail_msg("%s %s: answered %ld '%s'", what, ops[i].name, ops[i].status, ops[i].code);
        }
    }
}

static atomic_bool load_stop;

struct writer {
    int index;
    char prefix[8]; /* names are <prefix>-<index>-<n> */
    struct op ops[MAX_PUTS];
    size_t n;
    struct counts c;
};

struct reader {
    struct counts c;
    long wrong; /* 200 without the exact value */
    long first_other_status;
    char first_other[64];
};

struct revoker {
    struct op ops[RV_CREDS];
    size_t n;
    struct counts c;
};

static struct writer writers[WRITERS];
static struct reader reader;
static struct revoker revoker;
static struct https_reply replies[WRITERS + 2];

static void *writer_main(void *arg)
{
    struct writer *w = arg;
    struct https_reply *r = &replies[w->index];

    while (!atomic_load(&load_stop) && w->n < MAX_PUTS) {
        struct op *op = &w->ops[w->n];
        CURLcode rc;

        snprintf(op->name, sizeof(op->name), "%s-%d-%04zu", w->prefix, w->index, w->n);
        rc = put_cred(op->name, r, NULL);
        op->v = classify(rc, r, op->code, sizeof(op->code));
        op->status = rc == CURLE_OK ? r->status : 0;
        count(&w->c, op->v);
        w->n++;
        if (op->v != ACKED) {
            sleep_ms(PAUSE_REFUSED_MS);
        }
    }
    return NULL;
}

static void *reader_main(void *arg)
{
    struct https_reply *r = &replies[WRITERS];
    int i = 0;

    (void)arg;
    while (!atomic_load(&load_stop)) {
        char name[32];
        char code[64];
        enum verdict v;
        CURLcode rc;

        snprintf(name, sizeof(name), "acc-%d", i);
        i = (i + 1) % ACC_CREDS;
        rc = access_cred(name, r, NULL);
        v = classify(rc, r, code, sizeof(code));
        count(&reader.c, v);
        if (v == ACKED && !holds_value(r, name)) {
            reader.wrong++;
        }
        if ((v == OTHER || v == LOST) && reader.first_other[0] == '\0') {
            reader.first_other_status = rc == CURLE_OK ? r->status : 0;
            snprintf(reader.first_other, sizeof(reader.first_other), "%s", code);
        }
        if (v != ACKED) {
            sleep_ms(PAUSE_REFUSED_MS);
        }
    }
    return NULL;
}

static void *revoker_main(void *arg)
{
    struct https_reply *r = &replies[WRITERS + 1];

    (void)arg;
    while (!atomic_load(&load_stop) && revoker.n < RV_CREDS) {
        struct op *op = &revoker.ops[revoker.n];
        CURLcode rc;

        snprintf(op->name, sizeof(op->name), "rv-%zu", revoker.n);
        rc = revoke_cred(op->name, r, NULL);
        op->v = classify(rc, r, op->code, sizeof(op->code));
        op->status = rc == CURLE_OK ? r->status : 0;
        count(&revoker.c, op->v);
        revoker.n++;
        sleep_ms(op->v == ACKED ? 25 : PAUSE_REFUSED_MS);
    }
    return NULL;
}

static pthread_t threads[WRITERS + 2];
static int running;

static void load_join(void)
{
    atomic_store(&load_stop, true);
    for (; running > 0; running--) {
        (void)pthread_join(threads[running - 1], NULL);
    }
}

static void load_start(const char *prefix, bool with_others)
{
    load_join(); /* threads a failed test left running */
    atomic_store(&load_stop, false);
    for (int t = 0; t < WRITERS; t++) {
        memset(&writers[t], 0, sizeof(writers[t]));
        writers[t].index = t;
        snprintf(writers[t].prefix, sizeof(writers[t].prefix), "%s", prefix);
        assert_int_equal(pthread_create(&threads[running], NULL, writer_main, &writers[t]), 0);
        running++;
    }
    if (!with_others) {
        return;
    }
    memset(&reader, 0, sizeof(reader));
    memset(&revoker, 0, sizeof(revoker));
    assert_int_equal(pthread_create(&threads[running], NULL, reader_main, NULL), 0);
    running++;
    assert_int_equal(pthread_create(&threads[running], NULL, revoker_main, NULL), 0);
    running++;
}

/*
 * The puts of every writer after the load: an acknowledged one reads back
 * with its exact value; an unacknowledged one is either there whole (its
 * row, its create event, its exact value) or absent (no row, no event).
 */
static void expect_puts_settled(PGconn *c, long *whole_out, long *absent_out)
{
    static const char cred_sql[] =
        "SELECT count(*) FROM coffer.credentials c JOIN coffer.projects p ON p.id = c.project_id "
        "WHERE p.name = 'demo' AND c.name = $1";
    static const char event_sql[] = "SELECT count(*) FROM coffer.audit_events WHERE action = "
                                    "'create' AND allowed AND project = 'demo' AND credential = $1";
    long whole = 0;
    long absent = 0;

    for (int t = 0; t < WRITERS; t++) {
        for (size_t i = 0; i < writers[t].n; i++) {
            const struct op *op = &writers[t].ops[i];
            long rows = db_long(c, cred_sql, op->name);
            long events = db_long(c, event_sql, op->name);

            if (op->v == ACKED) {
                if (rows != 1 || events != 1) {
                    fail_msg("acknowledged put %s: %ld rows, %ld create events", op->name, rows,
                             events);
                }
                expect_readable(op->name);
                continue;
            }
            if (rows == 0 && events == 0) {
                absent++;
                continue;
            }
            if (rows != 1 || events != 1) {
                fail_msg("unacknowledged put %s is half there: %ld rows, %ld create events",
                         op->name, rows, events);
            }
            expect_readable(op->name);
            whole++;
        }
    }
    *whole_out = whole;
    *absent_out = absent;
}

static void sum_writers(struct counts *out)
{
    memset(out, 0, sizeof(*out));
    for (int t = 0; t < WRITERS; t++) {
        out->acked += writers[t].c.acked;
        out->refused += writers[t].c.refused;
        out->lost += writers[t].c.lost;
        out->other += writers[t].c.other;
        expect_no_other("put", writers[t].ops, writers[t].n);
    }
}

/* Polls an access of "probe" until it answers 200 with its value; the time it took, in ms. */
static long wait_served(void)
{
    static struct https_reply r;
    long t0 = now_ms();

    while (now_ms() - t0 < BACK_WITHIN_MS) {
        if (access_cred("probe", &r, NULL) == CURLE_OK && holds_value(&r, "probe")) {
            return now_ms() - t0;
        }
        sleep_ms(20);
    }
    fail_msg("cofferd did not serve an access within %d ms of PostgreSQL accepting connections",
             BACK_WITHIN_MS);
    return -1;
}

static void pg_start(void)
{
    enum coffer_err r = coffer_dev_pg_start(&env);

    if (r != COFFER_OK) {
        fail_msg("starting PostgreSQL: %s: %s", coffer_err_str(r), coffer_err_detail());
    }
}

/* ---- 1. A crash and restart during a mixed load ---------------------------------------------- */

static void test_restart_under_load(void **state)
{
    struct counts puts;
    PGconn *c;
    long mark = audit_mark();
    long t_crash;
    long pg_ms;
    long back_ms;
    long events;
    long whole = 0;
    long absent = 0;
    long revoked = 0;
    int status = 0;

    (void)state;
    load_start("r", true);
    sleep_ms(1200);

    /* SIGQUIT is PostgreSQL's immediate shutdown: every backend dies at once, like a crash. */
    t_crash = now_ms();
    assert_int_equal(coffer_proc_stop(env.pg_pid, SIGQUIT, 30000, &status), COFFER_OK);
    env.pg_pid = 0;
    sleep_ms(300);
    pg_start(); /* crash recovery first, then it accepts connections */
    pg_ms = now_ms() - t_crash;
    back_ms = wait_served();
    sleep_ms(1200);
    load_join();

    sum_writers(&puts);
    expect_no_other("revoke", revoker.ops, revoker.n);
    if (reader.c.other > 0 || reader.c.lost > 0) {
        fail_msg("an access was answered %ld '%s'", reader.first_other_status, reader.first_other);
    }
    assert_int_equal(reader.wrong, 0);
    print_message("puts: %ld acknowledged, %ld refused; accesses: %ld answered, %ld refused; "
                  "revocations: %ld acknowledged, %ld refused\n",
                  puts.acked, puts.refused, reader.c.acked, reader.c.refused, revoker.c.acked,
                  revoker.c.refused);
    print_message("PostgreSQL was down for %ld ms (killed, a 300 ms pause, crash recovery); "
                  "cofferd served an access %ld ms after PostgreSQL accepted connections again, "
                  "without a restart\n",
                  pg_ms, back_ms);
    /* The crash hit the load: something was refused, and work was done on both sides of it. */
    assert_true(puts.refused + reader.c.refused + revoker.c.refused > 0);
    assert_true(puts.acked > 0 && reader.c.acked > 0 && revoker.c.acked > 0);
    assert_true(server > 0 && waitpid(server, &status, WNOHANG) == 0);

    c = db_open();
    expect_all_or_nothing(c);
    expect_puts_settled(c, &whole, &absent);
    print_message("unacknowledged puts: %ld whole, %ld absent, none half-applied\n", whole, absent);
    for (size_t i = 0; i < revoker.n; i++) {
        static const char sql[] =
            "SELECT count(*) FROM coffer.credentials WHERE name = $1 AND revoked_at IS NOT NULL";
        static struct https_reply r;
        long n = db_long(c, sql, revoker.ops[i].name);

        if (revoker.ops[i].v == ACKED && n != 1) {
            fail_msg("acknowledged revocation of %s is not in the database", revoker.ops[i].name);
        }
        revoked += n;
        /* Revoked or not, the access answers what the database says. */
        assert_int_equal(access_cred(revoker.ops[i].name, &r, NULL), CURLE_OK);
        assert_int_equal(r.status, n == 1 ? 403 : 200);
    }
    /* Every access answered 200 has its event; more only where a refusal came after the commit. */
    events = access_events_since(c, mark);
    print_message("accesses of acc-*: %ld answered 200, %ld allowed access events\n",
                  reader.c.acked, events);
    assert_true(events >= reader.c.acked);
    assert_true(events <= reader.c.acked + reader.c.refused);
    print_message("%ld of %zu revocations in force, each with its event\n", revoked, revoker.n);
    PQfinish(c);
}

/* ---- 2. The database stopped ----------------------------------------------------------------- */

/* In the test's thread: one request answered 503 database_unavailable in under FAST_MS. */
static void expect_fast_refusal(const char *what, CURLcode rc, const struct https_reply *r,
                                long took)
{
    char code[64];

    if (classify(rc, r, code, sizeof(code)) != REFUSED) {
        fail_msg("%s with the database stopped: answered %ld '%s'", what, r->status, code);
    }
    if (took >= FAST_MS) {
        fail_msg("%s with the database stopped: answered after %ld ms", what, took);
    }
}

struct crowd_member {
    pthread_barrier_t *go;
    int index;
    CURLcode rc;
    long status;
    char code[64];
    long took;
};

static void *crowd_main(void *arg)
{
    static struct https_reply replies_crowd[CROWD];
    struct crowd_member *m = arg;
    struct https_reply *r = &replies_crowd[m->index];
    char name[32];

    snprintf(name, sizeof(name), "acc-%d", m->index % ACC_CREDS);
    (void)pthread_barrier_wait(m->go);
    m->rc = access_cred(name, r, &m->took);
    m->status = m->rc == CURLE_OK ? r->status : 0;
    (void)classify(m->rc, r, m->code, sizeof(m->code));
    return NULL;
}

static void test_database_unreachable(void **state)
{
    static struct https_reply r;
    static struct crowd_member crowd[CROWD];
    pthread_t t[CROWD];
    pthread_barrier_t go;
    enum coffer_err e;
    long took;
    long slowest = 0;
    long t0;
    long all_ms;
    long back_ms;

    (void)state;
    e = coffer_dev_pg_stop(&env);
    if (e != COFFER_OK) {
        fail_msg("stopping PostgreSQL: %s", coffer_err_detail());
    }

    for (int i = 0; i < 5; i++) {
        char name[32];
        CURLcode rc;

        snprintf(name, sizeof(name), "acc-%d", i % ACC_CREDS);
        rc = access_cred(name, &r, &took);
        expect_fast_refusal("an access", rc, &r, took);
        slowest = took > slowest ? took : slowest;
    }
    expect_fast_refusal("a put", put_cred("down-0", &r, &took), &r, took);
    expect_fast_refusal("a revocation", revoke_cred("acc-0", &r, &took), &r, took);
    expect_fast_refusal(
        "a listing", call("GET", "/v1/orgs/dev/projects/demo/credentials", NULL, true, &r, &took),
        &r, took);
    /* Not ready: health says why, and quickly. */
    t0 = now_ms();
    assert_int_equal(https_request(&target, "GET", "/v1/health", NULL, NULL, NULL, NULL, &r),
                     CURLE_OK);
    assert_true(now_ms() - t0 < FAST_MS);
    assert_int_equal(r.status, 503);
    assert_non_null(strstr(r.body, "\"database\":\"unavailable\""));

    /* Twenty at once: each refused fast, none waiting behind the others. */
    assert_int_equal(pthread_barrier_init(&go, NULL, CROWD + 1), 0);
    for (int i = 0; i < CROWD; i++) {
        crowd[i] = (struct crowd_member){.go = &go, .index = i};
        assert_int_equal(pthread_create(&t[i], NULL, crowd_main, &crowd[i]), 0);
    }
    (void)pthread_barrier_wait(&go);
    t0 = now_ms();
    for (int i = 0; i < CROWD; i++) {
        (void)pthread_join(t[i], NULL);
    }
    all_ms = now_ms() - t0;
    (void)pthread_barrier_destroy(&go);
    for (int i = 0; i < CROWD; i++) {
        if (crowd[i].rc != CURLE_OK || crowd[i].status != 503 ||
            strcmp(crowd[i].code, "database_unavailable") != 0) {
            fail_msg("concurrent access %d: answered %ld '%s'", i, crowd[i].status, crowd[i].code);
        }
        if (crowd[i].took >= FAST_MS) {
            fail_msg("concurrent access %d answered after %ld ms", i, crowd[i].took);
        }
        slowest = crowd[i].took > slowest ? crowd[i].took : slowest;
    }
    assert_true(all_ms < FAST_MS);
    print_message("database stopped: every request refused with 503 database_unavailable, the "
                  "slowest in %ld ms; %d concurrent accesses all answered within %ld ms\n",
                  slowest, CROWD, all_ms);

    /*
     * A worker lost while the database is down: its replacement cannot start
     * either, and the supervisor keeps trying instead of stopping cofferd.
     */
    {
        static char log_text[1 << 24]; /* the whole log: the load before wrote megabytes */
        pid_t kids[8];
        size_t n = server_workers(kids, 8);

        assert_int_equal(n, 2);
        assert_int_equal(kill(kids[0], SIGKILL), 0);
        for (int i = 0; i < 100; i++) {
            https_read_log(log_path, log_text, sizeof(log_text));
            if (strstr(log_text, "could not start: the database or the token is unavailable") !=
                NULL) {
                break;
            }
            sleep_ms(100);
        }
        if (strstr(log_text, "could not start: the database or the token is unavailable") == NULL) {
            size_t len = strlen(log_text);

            fail_msg("no retry of the worker in cofferd's log; it ends:\n%s",
                     log_text + (len > 1500 ? len - 1500 : 0));
        }
        assert_int_equal(kill(server, 0), 0); /* the supervisor is still there */
    }

    /* Started again: the service returns by itself, with both workers. */
    pg_start();
    back_ms = wait_served();
    for (int i = 0; i < 50 && server_workers(NULL, 0) != 2; i++) {
        sleep_ms(100);
    }
    assert_int_equal(server_workers(NULL, 0), 2);
    expect_readable("acc-1");
    assert_int_equal(put_cred("down-1", &r, NULL), CURLE_OK);
    assert_int_equal(r.status, 201);
    expect_readable("down-1");
    assert_int_equal(https_request(&target, "GET", "/v1/health", NULL, NULL, NULL, NULL, &r),
                     CURLE_OK);
    assert_int_equal(r.status, 200);
    print_message("after PostgreSQL started again, cofferd served an access in %ld ms, without "
                  "a restart\n",
                  back_ms);
}

/* ---- 4. A restart while idle ----------------------------------------------------------------- */

/*
 * PostgreSQL stopped and started again while no request came: every
 * connection cofferd holds was closed by the server, and the first requests
 * after the restart must be served on new ones, not refused.
 */
static void test_restart_while_idle(void **state)
{
    enum coffer_err e;

    (void)state;
    e = coffer_dev_pg_stop(&env);
    if (e != COFFER_OK) {
        fail_msg("stopping PostgreSQL: %s", coffer_err_detail());
    }
    pg_start();
    for (int i = 0; i < 12; i++) {
        expect_readable("acc-4");
    }
    print_message("PostgreSQL restarted while cofferd was idle: the 12 accesses after it were "
                  "all served, each on its first attempt\n");
}

/* ---- 5. A commit held back ------------------------------------------------------------------ */

#define HELD 6         /* accesses sent while their events cannot commit */
#define HELD_MS 1500   /* how long the audit table is held */
#define GIVE_UP_MS 300 /* the client that leaves before its answer */

struct held_client {
    int index;
    CURLcode rc;
    long status;
    bool has_value;
};

static atomic_int held_answered; /* answers that arrived while the table was held */
static atomic_bool table_held;

static void *held_main(void *arg)
{
    static struct https_reply replies_held[HELD];
    struct held_client *m = arg;
    struct https_reply *r = &replies_held[m->index];
    char name[32];
    char path[160];

    snprintf(name, sizeof(name), "acc-%d", m->index % ACC_CREDS);
    snprintf(path, sizeof(path), "/v1/orgs/dev/projects/demo/credentials/%s/access", name);
    m->rc =
        https_request_within(&target, "POST", path, "{\"purpose\":\"deploy\"}", env.tls.agent_cert,
                             env.tls.agent_key, NULL, m->index == 0 ? GIVE_UP_MS : 30000L, r);
    if (m->rc == CURLE_OK && atomic_load(&table_held)) {
        atomic_fetch_add(&held_answered, 1);
    }
    m->status = m->rc == CURLE_OK ? r->status : 0;
    m->has_value = m->rc == CURLE_OK && holds_value(r, name);
    return NULL;
}

/*
 * The audit table held by another transaction, so that no event can
 * commit: no access is answered (no value leaves) until it is released, a
 * client that leaves before its answer costs nothing but its answer (its
 * access is still audited; no worker dies), and once released every access
 * is answered with its value and has its event.
 */
static void test_commit_held(void **state)
{
    static struct held_client clients[HELD];
    pthread_t t[HELD];
    pid_t before[2];
    pid_t after[2];
    PGconn *owner = db_open();
    PGconn *c;
    PGresult *res;
    long mark;

    (void)state;
    /*
     * Accesses first, so that every database connection of both workers has
     * been used since the restart above: one re-established under the lock
     * would wait for it to prepare its statements.
     */
    for (int i = 0; i < 24; i++) {
        expect_readable("acc-3");
    }
    mark = audit_mark();
    assert_int_equal(server_workers(before, 2), 2);
    res = PQexec(owner, "BEGIN; LOCK TABLE coffer.audit_events IN EXCLUSIVE MODE");
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        fail_msg("holding the audit table: %s", PQerrorMessage(owner));
    }
    PQclear(res);
    atomic_store(&held_answered, 0);
    atomic_store(&table_held, true);
    for (int i = 0; i < HELD; i++) {
        clients[i] = (struct held_client){.index = i};
        assert_int_equal(pthread_create(&t[i], NULL, held_main, &clients[i]), 0);
    }
    sleep_ms(HELD_MS);
    /* Cleared before the release: an answer counted here came while the table was held. */
    atomic_store(&table_held, false);
    assert_int_equal(atomic_load(&held_answered), 0);
    res = PQexec(owner, "COMMIT");
    assert_int_equal(PQresultStatus(res), PGRES_COMMAND_OK);
    PQclear(res);
    PQfinish(owner);
    for (int i = 0; i < HELD; i++) {
        (void)pthread_join(t[i], NULL);
    }
    if (clients[0].rc != CURLE_OPERATION_TIMEDOUT) {
        fail_msg("the client that gave up after %d ms got curl result %d, status %ld", GIVE_UP_MS,
                 (int)clients[0].rc, clients[0].status);
    }
    for (int i = 1; i < HELD; i++) {
        if (!clients[i].has_value) {
            fail_msg("access %d: answered %ld without its value (curl result %d)", i,
                     clients[i].status, (int)clients[i].rc);
        }
    }
    c = db_open();
    assert_int_equal(access_events_since(c, mark), HELD);
    PQfinish(c);
    assert_int_equal(server_workers(after, 2), 2);
    assert_true((before[0] == after[0] && before[1] == after[1]) ||
                (before[0] == after[1] && before[1] == after[0]));
    expect_readable("acc-2");
    print_message("audit table held %d ms: no access answered meanwhile, %d accesses answered "
                  "with their values after it, the client that left audited too, no worker lost\n",
                  HELD_MS, HELD - 1);
}

/* ---- 3. The disk under PostgreSQL full ------------------------------------------------------- */

static char filler[96];
static char log_text[1 << 22];

/* Writes DIR/pg/filler until the file system has no room left; the bytes written. */
static long long fill_disk(void)
{
    static char chunk[1 << 20];
    long long total = 0;
    size_t size = sizeof(chunk);
    int fd;

    snprintf(filler, sizeof(filler), "%s/filler", pg_dir);
    fd = open(filler, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    memset(chunk, 0x5a, sizeof(chunk));
    /* Big writes first, then ever smaller ones, down to a page, until even that fails. */
    while (size >= 4096) {
        ssize_t n = write(fd, chunk, size);

        if (n > 0) {
            total += n;
            continue;
        }
        assert_true(n < 0 && errno == ENOSPC);
        size /= 2;
    }
    assert_int_equal(close(fd), 0);
    return total;
}

static void free_disk(void)
{
    if (filler[0] != '\0') {
        if (unlink(filler) != 0 && errno != ENOENT) {
            fprintf(stderr, "removing %s: %s\n", filler, strerror(errno));
        }
        filler[0] = '\0';
    }
}

/* Whether the postmaster is still running (a full disk can make PostgreSQL give up). */
static bool pg_survived(void)
{
    int status = 0;

    if (env.pg_pid > 0 && waitpid(env.pg_pid, &status, WNOHANG) == 0) {
        return true;
    }
    env.pg_pid = 0;
    return false;
}

static void test_disk_full(void **state)
{
    static struct https_reply r;
    struct counts puts;
    struct counts reads = {0};
    PGconn *c;
    struct statvfs vfs;
    long long filled;
    long mark;
    long events;
    long whole = 0;
    long absent = 0;
    long t0;
    long back_ms = -1;
    bool survived;
    int status = 0;

    (void)state;
    if (!mounted) {
        print_message("skipped: %s\n", no_tmpfs);
        skip();
    }
    mark = audit_mark();
    filled = fill_disk();
    assert_int_equal(statvfs(pg_dir, &vfs), 0);
    print_message("filled the cluster's tmpfs with %lld MiB; %llu bytes left\n", filled >> 20,
                  (unsigned long long)vfs.f_bavail * vfs.f_frsize);

    /* Writes from two threads for a while: refused, never answered 500. */
    load_start("f", false);
    sleep_ms(1500);
    load_join();
    sum_writers(&puts);
    /* Reads: each answered with its audit event written, or refused. */
    for (int i = 0; i < 20; i++) {
        char name[32];
        char code[64];
        enum verdict v;

        snprintf(name, sizeof(name), "acc-%d", i % ACC_CREDS);
        v = classify(access_cred(name, &r, NULL), &r, code, sizeof(code));
        if (v == OTHER || v == LOST) {
            fail_msg("an access with the disk full: answered %ld '%s'", r.status, code);
        }
        if (v == ACKED && !holds_value(&r, name)) {
            fail_msg("an access with the disk full answered 200 without its value");
        }
        count(&reads, v);
    }
    /* The server keeps answering: health comes back (its verdict is the database's). */
    assert_int_equal(https_request(&target, "GET", "/v1/health", NULL, NULL, NULL, NULL, &r),
                     CURLE_OK);
    assert_true(r.status == 200 || r.status == 503);
    assert_true(waitpid(server, &status, WNOHANG) == 0);
    survived = pg_survived();
    print_message("disk full: puts %ld acknowledged, %ld refused; accesses %ld answered, %ld "
                  "refused; PostgreSQL %s\n",
                  puts.acked, puts.refused, reads.acked, reads.refused,
                  survived ? "kept running" : "exited");
    /* A full disk refuses writes: most of them, once the free room in pages and WAL is gone. */
    assert_true(puts.refused > 0);
    assert_true(puts.refused >= puts.acked);
    /* The client hears database_unavailable; the operator reads why in cofferd's log. */
    https_read_log(log_path, log_text, sizeof(log_text));
    assert_non_null(strstr(log_text, "the database is out of resources (SQLSTATE 53100)"));

    free_disk();
    if (!survived) {
        pg_start();
    }
    t0 = now_ms();
    while (now_ms() - t0 < BACK_WITHIN_MS) {
        char name[32];

        snprintf(name, sizeof(name), "after-full-%ld", now_ms() - t0);
        if (put_cred(name, &r, NULL) == CURLE_OK && r.status == 201) {
            back_ms = now_ms() - t0;
            expect_readable(name);
            break;
        }
        sleep_ms(50);
    }
    if (back_ms < 0) {
        fail_msg("no put succeeded within %d ms of freeing the disk", BACK_WITHIN_MS);
    }
    print_message("after freeing the disk, a put succeeded in %ld ms\n", back_ms);
    expect_readable("acc-2");

    c = db_open();
    expect_all_or_nothing(c);
    expect_puts_settled(c, &whole, &absent);
    events = access_events_since(c, mark);
    PQfinish(c);
    print_message("unacknowledged puts: %ld whole, %ld absent; accesses answered 200 with the "
                  "disk full: %ld, allowed access events: %ld\n",
                  whole, absent, reads.acked, events);
    /* Never served unaudited: every 200 has its event (the one read just above adds one). */
    assert_true(events >= reads.acked + 1);
    assert_true(events <= reads.acked + reads.refused + 1);
}

/* ---- Set-up ---------------------------------------------------------------------------------- */

/*
 * DIR/pg on a tmpfs of its own, owned by the user the cluster runs as (see
 * coffer/dev.h: "coffer", else "nobody", when running as root). The mount
 * is made in a mount namespace of this process where the kernel allows it,
 * so that only this process and its children (the cluster, cofferd) see it
 * and it vanishes with them even if the test dies before its teardown. On
 * failure no_tmpfs says why, and the cluster lies on the ordinary disk.
 */
static void mount_pg_dir(void)
{
    static const char *const users[] = {"coffer", "nobody"};
    const struct passwd *pw = NULL;

    snprintf(pg_dir, sizeof(pg_dir), "%s/pg", dir);
    if (geteuid() != 0) {
        snprintf(no_tmpfs, sizeof(no_tmpfs), "mounting a tmpfs needs root (running as uid %ld)",
                 (long)geteuid());
        return;
    }
    for (size_t i = 0; i < 2 && pw == NULL; i++) {
        pw = getpwnam(users[i]);
    }
    if (pw == NULL) {
        snprintf(no_tmpfs, sizeof(no_tmpfs), "no user coffer or nobody to own the cluster");
        return;
    }
    /* Before any thread exists: a private copy of the mount table, changes kept to itself. */
    if (unshare(CLONE_NEWNS) != 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) {
        print_message("no private mount namespace (%s): the tmpfs is visible to all until the "
                      "teardown unmounts it\n",
                      strerror(errno));
    }
    if (mkdir(pg_dir, 0700) != 0) {
        snprintf(no_tmpfs, sizeof(no_tmpfs), "mkdir %s: %s", pg_dir, strerror(errno));
        return;
    }
    if (mount("tmpfs", pg_dir, "tmpfs", MS_NOSUID | MS_NODEV, "size=" TMPFS_SIZE ",mode=0700") !=
        0) {
        snprintf(no_tmpfs, sizeof(no_tmpfs), "mount -t tmpfs on %s: %s", pg_dir, strerror(errno));
        (void)rmdir(pg_dir);
        return;
    }
    if (chown(pg_dir, pw->pw_uid, pw->pw_gid) != 0) {
        snprintf(no_tmpfs, sizeof(no_tmpfs), "chown %s: %s", pg_dir, strerror(errno));
        (void)umount(pg_dir);
        return;
    }
    mounted = true;
}

static void unmount_pg_dir(void)
{
    if (!mounted) {
        return;
    }
    if (umount(pg_dir) != 0 && umount2(pg_dir, MNT_DETACH) != 0) {
        fprintf(stderr, "unmounting %s: %s\n", pg_dir, strerror(errno));
        return;
    }
    mounted = false;
}

static int teardown(void **state)
{
    static bool done;

    (void)state;
    if (done) {
        return 0;
    }
    done = true;
    load_join();
    free_disk();
    https_process_stop(&server);
    if (coffer_dev_pg_stop(&env) != COFFER_OK) {
        fprintf(stderr, "stopping PostgreSQL: %s\n", coffer_err_detail());
    }
    unmount_pg_dir();
    if (dir[0] == '/') {
        https_remove_dir(dir);
    }
    curl_global_cleanup();
    return 0;
}

static int setup(void **state)
{
    static struct https_reply r;
    struct harness h;
    unsigned short port;
    enum coffer_err e;
    long t0 = now_ms();

    (void)state;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (mkdtemp(dir) == NULL || chmod(dir, 0755) != 0) {
        fprintf(stderr, "mkdtemp/chmod %s: %s\n", dir, strerror(errno));
        return -1;
    }
    mount_pg_dir();
    e = coffer_dev_up(dir, &env);
    if (e != COFFER_OK) {
        fprintf(stderr, "coffer_dev_up: %s: %s\n", coffer_err_str(e), coffer_err_detail());
        teardown(state);
        return -1;
    }
    /* https_write_config takes a harness: this one names the private token and database. */
    memset(&h, 0, sizeof(h));
    h.p11.module = env.module;
    h.p11.token_uri = env.token_uri;
    h.p11.pin_source = env.pin_source;
    snprintf(h.db_app, sizeof(h.db_app), "%s", env.db_app);
    snprintf(config, sizeof(config), "%s/fault.yaml", dir);
    snprintf(log_path, sizeof(log_path), "%s/cofferd.log", dir);
    port = https_free_port();
    https_target_dev(&target, port, &env.tls);
    if (https_write_config(config, port, &env.tls, &h, "workers: 2\nlog: info\n") != 0 ||
        https_server_start(COFFERD_BIN, config, env.softhsm_conf, log_path, &target, &server) !=
            0) {
        teardown(state);
        return -1;
    }
    /* What the threads read and revoke, and the probe that tells when service is back. */
    for (int i = 0; i < ACC_CREDS + RV_CREDS + 1; i++) {
        char name[32];

        if (i < ACC_CREDS) {
            snprintf(name, sizeof(name), "acc-%d", i);
        } else if (i < ACC_CREDS + RV_CREDS) {
            snprintf(name, sizeof(name), "rv-%d", i - ACC_CREDS);
        } else {
            snprintf(name, sizeof(name), "probe");
        }
        if (put_cred(name, &r, NULL) != CURLE_OK || r.status != 201) {
            fprintf(stderr, "storing %s: status %ld\n", name, r.status);
            teardown(state);
            return -1;
        }
    }
    print_message("provisioned a private cluster (%s) and cofferd in %ld ms\n",
                  mounted ? "on a " TMPFS_SIZE " tmpfs" : "on the ordinary disk", now_ms() - t0);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_restart_under_load), cmocka_unit_test(test_database_unreachable),
        cmocka_unit_test(test_restart_while_idle), cmocka_unit_test(test_commit_held),
        cmocka_unit_test(test_disk_full),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}

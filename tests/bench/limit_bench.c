/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The machine's limit for audited accesses, from the CPU cost of each part
 * of one access measured alone, and Coffer's real rate beside it, in one run
 * on this machine. The parts:
 *
 *   a. an HTTPS request that cofferd answers without the database or the
 *      token: a path that no route matches, answered 404 before any
 *      authentication, driven by wrk with keep-alive;
 *   b. the token work of an access: the bearer token's HMAC, then the unwrap
 *      of a stored row's CEK, the GCM decryption of its payload and the
 *      CEK's destruction, in one process per core;
 *   c. the database work of an access with its audit event, as cofferd does
 *      it for a batch of B accesses (db_batch()), at B = 8 and 32, with 2 and
 *      4 client processes.
 *
 * A part's cost is the machine's busy CPU time during its run (/proc/stat:
 * every process, wrk, cofferd, PostgreSQL and the kernel alike) divided by
 * the operations done, so that cores / (a + b + c) is what this machine
 * could do if an access cost nothing else: the limit. Coffer is then driven
 * by wrk on the access route at 16 and 64 connections and set against the
 * limit of the largest batch those connections allow two workers (8 and
 * 32): how many accesses cofferd's workers actually batch is theirs to
 * improve, and is printed beside each run.
 *
 * It provisions its own embedded default in a temporary directory, runs
 * cofferd for parts a and e only, stops everything it started by PID on
 * every path, and removes the directory when every check passed. The bearer
 * token is never printed. Usage:
 *
 *     limit_bench [SECONDS [WORKERS]]   (default 10 s per measurement, one worker per core)
 */
#include "bench_util.h"

#include "keys/keys_int.h"

#include "coffer/arena.h"
#include "coffer/audit.h"
#include "coffer/authz.h"
#include "coffer/err.h"
#include "coffer/keys.h"
#include "coffer/mem.h"
#include "coffer/p11.h"
#include "coffer/secret.h"
#include "coffer/store.h"

#include <curl/curl.h>
#include <openssl/crypto.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef COFFER_BUILD_TYPE
#define COFFER_BUILD_TYPE ""
#endif

#define LISTEN "127.0.0.1:18644" /* not api_bench's: the two may run side by side */
#define BASE "https://" LISTEN
#define ORG "dev"
#define PROJECT "demo"
#define CRED "demo-api-key"
#define PURPOSE "deploy demo benchmark" /* the purpose the wrk script sends */
#define CRED_PATH "/v1/orgs/" ORG "/projects/" PROJECT "/credentials/" CRED
#define NOOP_PATH "/v1/orgs/" ORG "/projects/" PROJECT "/nothing"
#define PROCS_MAX 8
#define BATCH_MAX 32

static int seconds = 10;
static long ncores;
static double clk_tck;
static char token[128]; /* the bench agent's bearer token: a secret, never printed */
static size_t token_len;
static unsigned char token_digest[COFFER_TOKEN_DIGEST_LEN]; /* computed once, for part c */
static char wrk_out[65536];

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- The machine's CPU time -------------------------------------------------- */

struct cpu_stat {
    unsigned long long busy; /* jiffies: user, nice, system, irq, softirq, steal */
    unsigned long long idle; /* jiffies: idle, iowait */
    double at;
};

static void cpu_read(struct cpu_stat *c)
{
    unsigned long long v[8];
    FILE *f = fopen("/proc/stat", "r");
    int n = 0;

    if (f != NULL) {
        n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
                   &v[4], &v[5], &v[6], &v[7]);
        fclose(f);
    }
    if (n != 8) {
        (void)coffer_err_set(COFFER_E_IO, "/proc/stat has no cpu line of 8 fields");
        bench_die("reading the machine's CPU time");
    }
    c->busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
    c->idle = v[3] + v[4];
    c->at = now_s();
}

/* One measured run: the machine's busy CPU time and the operations it bought. */
struct part {
    double busy_s; /* busy CPU seconds of the whole machine during the run */
    double wall_s;
    long ops;
    long errors;
};

static void part_window(const struct cpu_stat *a, const struct cpu_stat *b, struct part *p)
{
    p->busy_s = (double)(b->busy - a->busy) / clk_tck;
    p->wall_s = b->at - a->at;
}

static double cost_us(const struct part *p)
{
    return p->ops > 0 ? 1e6 * p->busy_s / (double)p->ops : 0.0;
}

static double rate_of(const struct part *p)
{
    return p->wall_s > 0 ? (double)p->ops / p->wall_s : 0.0;
}

static double busy_pct(const struct part *p)
{
    return p->wall_s > 0 ? 100.0 * p->busy_s / (p->wall_s * (double)ncores) : 0.0;
}

/*
 * The machine's busy share over one second while this benchmark runs
 * nothing: what other processes add to every cost measured here.
 */
static double background_pct(void)
{
    struct cpu_stat a;
    struct cpu_stat b;
    struct part p;

    memset(&p, 0, sizeof(p));
    cpu_read(&a);
    sleep(1);
    cpu_read(&b);
    part_window(&a, &b, &p);
    return busy_pct(&p);
}

/* ---- wrk ---------------------------------------------------------------------- */

/* What one wrk run reported. */
struct wrk_run {
    long requests;    /* answers received ("N requests in") */
    long non_2xx;     /* "Non-2xx or 3xx responses:" */
    long sock_errors; /* connect + read + write + timeout */
    char rate[32];    /* Requests/sec */
    char p50[32];
    char p99[32];
};

/* The number before " requests in " on its line of wrk's output, or -1. */
static long wrk_requests(const char *out)
{
    const char *p = strstr(out, " requests in ");

    if (p == NULL) {
        return -1;
    }
    while (p > out && p[-1] != '\n') {
        p--;
    }
    return strtol(p, NULL, 10);
}

static long wrk_socket_errors(const char *out)
{
    const char *p = strstr(out, "Socket errors:");
    long c = 0;
    long r = 0;
    long w = 0;
    long t = 0;

    if (p == NULL) {
        return 0;
    }
    if (sscanf(p, "Socket errors: connect %ld, read %ld, write %ld, timeout %ld", &c, &r, &w, &t) !=
        4) {
        return -1;
    }
    return c + r + w + t;
}

/*
 * wrk with 2 threads and conns keep-alive connections for SECONDS against
 * url (with script, or NULL), inside a CPU window; dies if wrk fails.
 */
static void wrk(const char *url, const char *script, int conns, struct wrk_run *w, struct part *p)
{
    char c[16];
    char d[16];
    char non2xx[32];
    const char *argv[12];
    struct cpu_stat a;
    struct cpu_stat b;
    size_t n = 0;

    snprintf(c, sizeof(c), "%d", conns);
    snprintf(d, sizeof(d), "%ds", seconds);
    argv[n++] = "/usr/bin/wrk";
    argv[n++] = "-t";
    argv[n++] = "2";
    argv[n++] = "-c";
    argv[n++] = c;
    argv[n++] = "-d";
    argv[n++] = d;
    argv[n++] = "--latency";
    if (script != NULL) {
        argv[n++] = "-s";
        argv[n++] = script;
    }
    argv[n++] = url;
    argv[n] = NULL;
    memset(w, 0, sizeof(*w));
    memset(p, 0, sizeof(*p));
    fflush(stdout);
    cpu_read(&a);
    if (bench_capture(argv, wrk_out, sizeof(wrk_out)) != 0) {
        fprintf(stderr, "limit_bench: wrk failed:\n%s\n", wrk_out);
        (void)coffer_err_set(COFFER_E_IO, "wrk exited with an error");
        bench_die("running wrk");
    }
    cpu_read(&b);
    part_window(&a, &b, p);
    w->requests = wrk_requests(wrk_out);
    w->non_2xx = atol(bench_field(wrk_out, "Non-2xx or 3xx responses:", non2xx, sizeof(non2xx)));
    w->sock_errors = wrk_socket_errors(wrk_out);
    bench_field(wrk_out, "Requests/sec:", w->rate, sizeof(w->rate));
    bench_field(wrk_out, "50%", w->p50, sizeof(w->p50));
    bench_field(wrk_out, "99%", w->p99, sizeof(w->p99));
    p->ops = w->requests > 0 ? w->requests : 0;
}

/* ---- Forked loops: set up, wait for the start, run SECONDS, report ------------- */

enum loop {
    LOOP_TOKEN,
    LOOP_DB,
};

struct tally {
    long ops;
    long errors;
};

/* In a child: says it is set up, then waits for the start; false if the parent is gone. */
static bool child_ready(int up, int down)
{
    char c = 'r';

    return write(up, &c, 1) == 1 && read(down, &c, 1) == 1;
}

/*
 * In a child: hands its tally to the parent, then waits until the parent has
 * closed the CPU window (its end of down), so that tearing down is outside it.
 */
static void child_report(int up, int down, const struct tally *t)
{
    char c;

    if (write(up, t, sizeof(*t)) != (ssize_t)sizeof(*t)) {
        _exit(1);
    }
    while (read(down, &c, 1) > 0) {
    }
}

static __attribute__((noreturn)) void child_fail(const char *what, enum coffer_err r)
{
    fprintf(stderr, "limit_bench: %s: %s: %s\n", what, coffer_err_str(r), coffer_err_detail());
    _exit(1);
}

/* The stored row of the credential and what opening it needs, in one token worker. */
struct token_ctx {
    struct coffer_p11 *p11;
    struct coffer_keys *k;
    struct coffer_store *st;
    struct coffer_store_cred_version row;
    struct coffer_buf aad;
};

/*
 * The token work of one access: the bearer token's HMAC (as authentication
 * does), then, as opening a stored version does, the CEK unwrapped under the
 * org key (a handle cached per session), the payload decrypted and the CEK
 * destroyed. The additional data is built once: it is not token work.
 */
static enum coffer_err token_op(struct token_ctx *c)
{
    unsigned char d[COFFER_TOKEN_DIGEST_LEN];
    struct coffer_p11_session *s = NULL;
    struct coffer_secret *plain = NULL;
    const struct coffer_store_cred_version *v = &c->row;
    coffer_p11_obj ok = 0;
    coffer_p11_obj cek = 0;
    enum coffer_err r;

    if ((r = coffer_keys_token_digest(c->k, token, token_len, d)) != COFFER_OK) {
        goto out;
    }
    if (!coffer_mem_equal(d, token_digest, sizeof(d))) {
        r = coffer_err_set(COFFER_E_INTEGRITY, "the token's digest differs from the first one");
        goto out;
    }
    if ((r = coffer_p11_session_get(c->p11, &s)) != COFFER_OK ||
        (r = coffer_keys_org_key_handle(c->k, s, c->st, &v->org_id, v->org_key_version, &ok)) !=
            COFFER_OK ||
        (r = coffer_p11_unwrap(s, ok, v->wrapped_cek, v->wrapped_cek_len,
                               &coffer_keys_spec_cek_read, &cek)) != COFFER_OK ||
        (r = coffer_p11_gcm_decrypt(s, cek, v->nonce, c->aad.data, c->aad.len, v->ciphertext,
                                    v->ciphertext_len, v->tag, &plain)) != COFFER_OK) {
        goto out;
    }
out:
    coffer_secret_free(&plain);
    coffer_p11_destroy(s, &cek);
    coffer_p11_session_put(c->p11, &s);
    coffer_wipe(d, sizeof(d));
    return r;
}

static __attribute__((noreturn)) void token_child(int up, int down)
{
    struct coffer_p11_config cfg = {.module = bench_env.module,
                                    .token_uri = bench_env.token_uri,
                                    .pin_source = bench_env.pin_source,
                                    .pool_size = 1};
    struct token_ctx c;
    struct coffer_org org;
    struct coffer_project proj;
    struct tally t = {0, 0};
    enum coffer_err r;
    double end;

    memset(&c, 0, sizeof(c));
    /* Its own token context and login, after the fork, as each cofferd worker has. */
    if ((r = coffer_p11_open(&cfg, &c.p11)) != COFFER_OK ||
        (r = coffer_keys_new(c.p11, &c.k)) != COFFER_OK ||
        (r = coffer_store_open(bench_env.db_app, &c.st)) != COFFER_OK ||
        (r = coffer_store_org_by_name(c.st, ORG, &org)) != COFFER_OK ||
        (r = coffer_store_project_by_name(c.st, &org.id, PROJECT, &proj)) != COFFER_OK ||
        (r = coffer_store_cred_version_get(c.st, &org.id, &proj.id, CRED, 0, &c.row)) !=
            COFFER_OK ||
        (r = coffer_keys_aad(&c.row.org_id, &c.row.project_id, &c.row.credential_id, c.row.version,
                             c.row.key_names, c.row.n_keys, &c.aad)) != COFFER_OK ||
        (r = token_op(&c)) != COFFER_OK) {
        child_fail("token work set-up", r);
    }
    if (!child_ready(up, down)) {
        _exit(1);
    }
    end = now_s() + seconds;
    while (now_s() < end) {
        if ((r = token_op(&c)) != COFFER_OK && t.errors++ == 0) {
            fprintf(stderr, "limit_bench: token work: %s: %s\n", coffer_err_str(r),
                    coffer_err_detail());
        }
        t.ops++;
    }
    child_report(up, down, &t);
    coffer_buf_cleanup(&c.aad);
    coffer_store_cred_version_cleanup(&c.row);
    coffer_store_close(&c.st);
    coffer_keys_free(&c.k);
    coffer_p11_close(&c.p11);
    _exit(0);
}

/*
 * The database work of b accesses with their audit events, as cofferd does
 * it for one batch, outside any transaction, with the statements of:
 *
 *   coffer_store_token_find_many        one statement for the b bearer tokens, with the
 *                                       digest computed once: no token work here
 *   coffer_store_access_load_many       one statement for the b lookups
 *   coffer_store_cred_version_get_many  one statement for the b stored rows
 *   coffer_store_audit_insert_many      one statement for the b events, which commits by
 *                                       itself (synchronous_commit is on): the durability
 *                                       every access pays
 *
 * Each access is decided (pure code, as cofferd does between the load and
 * the fetch) and must be granted. The events are filled as
 * coffer_op_access_batch fills them. Returns COFFER_OK when all b went
 * through.
 */
static enum coffer_err db_batch(struct coffer_store *st, size_t b, unsigned long *seq)
{
    unsigned char digests[BATCH_MAX][COFFER_STORE_TOKEN_DIGEST_LEN];
    struct coffer_store_token tok[BATCH_MAX];
    bool tok_found[BATCH_MAX];
    struct coffer_principal who[BATCH_MAX];
    struct coffer_authz_input in[BATCH_MAX];
    struct coffer_store_access acc[BATCH_MAX];
    struct coffer_store_access_req q[BATCH_MAX];
    struct coffer_authz_decision d[BATCH_MAX];
    struct coffer_store_cred_ref refs[BATCH_MAX];
    struct coffer_store_cred_version rows[BATCH_MAX];
    enum coffer_err found[BATCH_MAX];
    struct coffer_audit_event ev[BATCH_MAX];
    char ids[BATCH_MAX][33];
    struct coffer_arena *a = NULL;
    enum coffer_err r;

    memset(rows, 0, sizeof(rows));
    memset(in, 0, sizeof(in));
    memset(acc, 0, sizeof(acc));
    for (size_t i = 0; i < b; i++) {
        coffer_memcpy(digests[i], token_digest, sizeof(digests[i]));
    }
    if ((r = coffer_store_token_find_many(st, digests, b, COFFER_TOKEN_MAC_LABEL, tok,
                                          tok_found)) != COFFER_OK) {
        goto out;
    }
    for (size_t i = 0; i < b; i++) {
        if (!tok_found[i] || tok[i].admin || tok[i].revoked || tok[i].now_us >= tok[i].expires_us) {
            r = coffer_err_set(COFFER_E_STATE, "the bench token is not a valid agent's");
            goto out;
        }
        memset(&who[i], 0, sizeof(who[i]));
        who[i].kind = COFFER_PRINCIPAL_AGENT;
        snprintf(who[i].org, sizeof(who[i].org), "%s", tok[i].org);
        snprintf(who[i].agent_type, sizeof(who[i].agent_type), "%s", tok[i].agent_type);
        snprintf(who[i].instance, sizeof(who[i].instance), "%s", tok[i].instance);
        in[i].principal.org = who[i].org;
        in[i].principal.agent_type = who[i].agent_type;
        in[i].principal.instance = who[i].instance;
        in[i].purpose = PURPOSE;
        in[i].purpose_len = strlen(PURPOSE);
        q[i].org = who[i].org;
        q[i].project = PROJECT;
        q[i].name = CRED;
        q[i].in = &in[i];
        q[i].out = &acc[i];
    }
    if ((r = coffer_arena_new(0, &a)) != COFFER_OK ||
        (r = coffer_store_access_load_many(st, q, b, a)) != COFFER_OK) {
        goto out;
    }
    for (size_t i = 0; i < b; i++) {
        coffer_authz_decide(&in[i], &d[i]);
        if (!acc[i].found || !d[i].allow) {
            r = coffer_err_set(COFFER_E_STATE, "access %zu of the batch was not granted: %s", i,
                               coffer_authz_reason_str(d[i].reason));
            goto out;
        }
        refs[i].org_id = &acc[i].org_id;
        refs[i].project_id = &acc[i].project_id;
        refs[i].name = CRED;
        refs[i].version = acc[i].current_version;
    }
    if ((r = coffer_store_cred_version_get_many(st, refs, b, rows, found)) != COFFER_OK) {
        goto out;
    }
    for (size_t i = 0; i < b; i++) {
        if (found[i] != COFFER_OK) {
            r = coffer_err_set(found[i], "row %zu of the batch: %s", i, coffer_err_str(found[i]));
            goto out;
        }
        memset(&ev[i], 0, sizeof(ev[i]));
        snprintf(ids[i], sizeof(ids[i]), "%016lx%016lx", (unsigned long)getpid(), ++*seq);
        ev[i].action = COFFER_AUDIT_ACCESS;
        ev[i].allowed = true;
        ev[i].reason = coffer_authz_reason_str(d[i].reason);
        ev[i].purpose_unexpected = d[i].purpose_unexpected;
        ev[i].request_id = ids[i];
        ev[i].client_addr = "127.0.0.1:50000";
        ev[i].who = &who[i];
        ev[i].org = ORG;
        ev[i].project = PROJECT;
        ev[i].credential = CRED;
        ev[i].version = rows[i].version;
        ev[i].phase = in[i].phase;
        ev[i].purpose = PURPOSE;
        ev[i].purpose_len = strlen(PURPOSE);
        ev[i].org_key_version = rows[i].org_key_version;
        ev[i].mk_version = rows[i].org_key_mk_version;
    }
    r = coffer_store_audit_insert_many(st, ev, b);
out:
    for (size_t i = 0; i < b; i++) {
        coffer_store_cred_version_cleanup(&rows[i]);
    }
    coffer_arena_free(&a);
    return r;
}

static __attribute__((noreturn)) void db_child(size_t b, int up, int down)
{
    struct coffer_store *st = NULL;
    struct tally t = {0, 0};
    unsigned long seq = 0;
    enum coffer_err r;
    double end;

    if ((r = coffer_store_open(bench_env.db_app, &st)) != COFFER_OK ||
        (r = db_batch(st, b, &seq)) != COFFER_OK) {
        child_fail("database work set-up", r);
    }
    if (!child_ready(up, down)) {
        _exit(1);
    }
    end = now_s() + seconds;
    while (now_s() < end) {
        if ((r = db_batch(st, b, &seq)) != COFFER_OK && t.errors++ == 0) {
            fprintf(stderr, "limit_bench: database work: %s: %s\n", coffer_err_str(r),
                    coffer_err_detail());
        }
        t.ops += (long)b;
    }
    child_report(up, down, &t);
    coffer_store_close(&st);
    _exit(0);
}

/*
 * Forks procs children running loop (with batch b for LOOP_DB). The CPU
 * window opens once every child is set up and closes once every child has
 * reported, so that neither set-up nor tear-down is counted. Dies if a child
 * fails to set up, report or exit cleanly.
 */
static void run_children(enum loop loop, int procs, size_t b, struct part *p)
{
    pid_t pids[PROCS_MAX];
    int up[PROCS_MAX];
    int down[PROCS_MAX];
    struct cpu_stat start;
    struct cpu_stat end;
    int n = 0;
    bool ok = true;

    memset(p, 0, sizeof(*p));
    fflush(stdout);
    fflush(stderr);
    for (; n < procs; n++) {
        int u[2];
        int d[2];

        if (pipe(u) != 0) {
            ok = false;
            break;
        }
        if (pipe(d) != 0) {
            close(u[0]);
            close(u[1]);
            ok = false;
            break;
        }
        pids[n] = fork();
        if (pids[n] < 0) {
            close(u[0]);
            close(u[1]);
            close(d[0]);
            close(d[1]);
            ok = false;
            break;
        }
        if (pids[n] == 0) {
            /* The parent's ends of the earlier children's pipes stay with the parent only. */
            for (int j = 0; j < n; j++) {
                close(up[j]);
                close(down[j]);
            }
            close(u[0]);
            close(d[1]);
            if (loop == LOOP_TOKEN) {
                token_child(u[1], d[0]);
            }
            db_child(b, u[1], d[0]);
        }
        close(u[1]);
        close(d[0]);
        up[n] = u[0];
        down[n] = d[1];
    }
    for (int i = 0; i < n && ok; i++) {
        char c;

        ok = read(up[i], &c, 1) == 1;
    }
    if (ok) {
        cpu_read(&start);
        for (int i = 0; i < n && ok; i++) {
            ok = write(down[i], "g", 1) == 1;
        }
    }
    for (int i = 0; i < n && ok; i++) {
        struct tally t;

        ok = read(up[i], &t, sizeof(t)) == (ssize_t)sizeof(t);
        p->ops += ok ? t.ops : 0;
        p->errors += ok ? t.errors : 0;
    }
    if (ok) {
        cpu_read(&end);
        part_window(&start, &end, p);
    }
    /* Closing down lets every child tear down and exit (or, after a failure, give up). */
    for (int i = 0; i < n; i++) {
        int status = 0;

        close(down[i]);
        close(up[i]);
        if (waitpid(pids[i], &status, 0) != pids[i] || !WIFEXITED(status) ||
            WEXITSTATUS(status) != 0) {
            ok = false;
        }
    }
    if (!ok) {
        (void)coffer_err_set(COFFER_E_STATE, "a worker process failed (see above)");
        bench_die(loop == LOOP_TOKEN ? "token work" : "database work");
    }
}

/* ---- Set-up ------------------------------------------------------------------- */

/* The bench token's digest under the token MAC key, computed once in this process. */
static void digest_token(void)
{
    struct coffer_p11_config cfg = {.module = bench_env.module,
                                    .token_uri = bench_env.token_uri,
                                    .pin_source = bench_env.pin_source,
                                    .pool_size = 1};
    struct coffer_p11 *p11 = NULL;
    struct coffer_keys *k = NULL;
    enum coffer_err r;

    if ((r = coffer_p11_open(&cfg, &p11)) != COFFER_OK ||
        (r = coffer_keys_new(p11, &k)) != COFFER_OK ||
        (r = coffer_keys_token_digest(k, token, token_len, token_digest)) != COFFER_OK) {
        coffer_keys_free(&k);
        coffer_p11_close(&p11);
        bench_die("digesting the bench token");
    }
    coffer_keys_free(&k);
    coffer_p11_close(&p11);
}

/* "2.6.1" from softhsm2-util, or "?". */
static void softhsm_version(char *out, size_t cap)
{
    const char *argv[] = {"/usr/bin/softhsm2-util", "--version", NULL};

    if (bench_capture(argv, wrk_out, sizeof(wrk_out)) != 0) {
        snprintf(out, cap, "?");
        return;
    }
    snprintf(out, cap, "%.*s", (int)strcspn(wrk_out, "\n"), wrk_out);
}

/* Stops everything and exits 1 after a failed request of the set-up. */
static __attribute__((noreturn)) void setup_failed(const char *what, const struct bench_reply *r)
{
    fprintf(stderr, "limit_bench: %s: HTTP %ld %s\n", what, r->status, r->body);
    bench_stop_all();
    exit(1);
}

/* ---- Report ------------------------------------------------------------------- */

/* One counter of cofferd's /metrics (every worker's sum), or -1. */
static double metric(const char *name)
{
    struct bench_reply r;
    const char *at;

    bench_admin("GET", "/metrics", NULL, &r);
    at = r.status == 200 ? strstr(r.body, name) : NULL;
    return at != NULL ? atof(at + strlen(name)) : -1;
}

/* Accesses and batches so far, for the mean batch of a run. */
static void batch_counts(double *accesses, double *batches)
{
    *accesses = metric("\ncoffer_accesses_total{outcome=\"granted\"} ");
    *batches = metric("\ncoffer_access_batches_total ");
}

static void component_row(const char *what, const struct part *p, const char *how)
{
    printf("  %-38s %10.1f %10.0f %8.0f%%   %s%s\n", what, cost_us(p), rate_of(p), busy_pct(p), how,
           p->errors != 0 ? " (errors!)" : "");
    fflush(stdout);
}

int main(int argc, char **argv)
{
    static const size_t batches[2] = {8, 32};
    static const int db_procs[2] = {2, 4};
    static const int conns[2] = {16, 64};
    int n_workers = argc > 2 ? atoi(argv[2]) : 0;
    struct part noop;
    struct part tokw;
    struct part db[2][2];
    struct part cof[2];
    struct wrk_run w;
    struct wrk_run cw[2];
    long long audited[2];
    struct bench_reply r;
    char log[PATH_MAX];
    char lua[PATH_MAX];
    char hsm[64];
    char pg[64];
    char line[160];
    double limit[2];
    int best[2];
    int failures = 0;

    if (argc > 1) {
        seconds = atoi(argv[1]);
    }
    if (argc > 3 || seconds < 1 || seconds > 600 || n_workers < 0 || n_workers > 64) {
        fprintf(stderr, "usage: limit_bench [SECONDS [WORKERS]]\n");
        return 2;
    }
    ncores = sysconf(_SC_NPROCESSORS_ONLN);
    clk_tck = (double)sysconf(_SC_CLK_TCK);
    if (ncores < 1 || ncores > PROCS_MAX || clk_tck <= 0) {
        fprintf(stderr, "limit_bench: %ld cores: want 1 to %d\n", ncores, PROCS_MAX);
        return 2;
    }
    /* A child that died must not take the benchmark with it while it writes to its pipe. */
    signal(SIGPIPE, SIG_IGN);
    bench_setup("limit_bench", "/tmp/coffer-limit-bench.XXXXXX", LISTEN);
    snprintf(log, sizeof(log), "%s/cofferd.log", bench_dir);
    snprintf(lua, sizeof(lua), "%s/access.lua", bench_dir);
    if (n_workers > 0) {
        FILE *cf = fopen(bench_env.config, "a");

        if (cf == NULL || fprintf(cf, "workers: %d\n", n_workers) < 0 || fclose(cf) != 0) {
            bench_die("setting the worker count");
        }
    }
    softhsm_version(hsm, sizeof(hsm));
    if (!bench_owner_text("SHOW server_version", pg, sizeof(pg))) {
        snprintf(pg, sizeof(pg), "?");
    }
    printf("limit_bench: %ld cores, SoftHSMv2 %s, PostgreSQL %s, %s build; %d s per "
           "measurement; cofferd workers: %s; %s\n",
           ncores, hsm, pg, COFFER_BUILD_TYPE[0] != '\0' ? COFFER_BUILD_TYPE : "unknown", seconds,
           n_workers > 0 ? argv[2] : "one per core", bench_dir);
    printf("machine busy before the runs, nothing of this benchmark running: %.1f%% (1 s)\n\n",
           background_pct());

    bench_start_server(log);
    bench_admin("PUT", CRED_PATH,
                "{\"type\":\"api_key\",\"tier\":\"medium\",\"keys\":{\"api_key\":"
                "\"bench-value-0123456789abcdef\"}}",
                &r);
    if (r.status != 201 && r.status != 200) {
        setup_failed("storing the credential", &r);
    }
    if (!bench_token("agent/deployer/bench-1", token, sizeof(token), &r)) {
        setup_failed("creating a bearer token", &r);
    }
    token_len = strlen(token);
    bench_write_access_lua(lua, token);
    /* The no-op must be answered before authentication, the database and the token. */
    bench_admin("GET", NOOP_PATH, NULL, &r);
    if (r.status != 404 || strstr(r.body, "\"not_found\"") == NULL) {
        setup_failed("the no-op path is not answered 404 not_found", &r);
    }

    printf("components of one audited access        CPU µs/op      ops/s  machine busy\n");
    /* a. HTTPS, TLS and HTTP parsing alone. */
    wrk(BASE NOOP_PATH, NULL, 16, &w, &noop);
    if (w.requests <= 0 || w.non_2xx != w.requests || w.sock_errors != 0) {
        printf("FAIL: the no-op run: %ld answers, %ld of them non-2xx, %ld socket errors\n",
               w.requests, w.non_2xx, w.sock_errors);
        failures++;
    }
    component_row("a. HTTPS request answered 404", &noop, "wrk, 16 connections, keep-alive");
    bench_stop_server();

    /* b. The token work, one process per core. */
    digest_token();
    run_children(LOOP_TOKEN, (int)ncores, 0, &tokw);
    snprintf(line, sizeof(line), "%ld processes: HMAC, unwrap, GCM decrypt, destroy", ncores);
    component_row("b. token work", &tokw, line);
    failures += tokw.errors != 0;

    /* c. The database work, per batch size, with 2 and 4 client processes. */
    for (int bi = 0; bi < 2; bi++) {
        best[bi] = 0;
        for (int pi = 0; pi < 2; pi++) {
            char what[64];

            run_children(LOOP_DB, db_procs[pi], batches[bi], &db[bi][pi]);
            snprintf(what, sizeof(what), "c. database work, B = %zu", batches[bi]);
            snprintf(line, sizeof(line), "%d processes: token find, load, fetch, audit insert",
                     db_procs[pi]);
            component_row(what, &db[bi][pi], line);
            failures += db[bi][pi].errors != 0;
            if (cost_us(&db[bi][pi]) < cost_us(&db[bi][best[bi]])) {
                best[bi] = pi;
            }
        }
    }

    /* d. The limit: cores / (a + b + c_B), c_B the cheaper of its two runs. */
    printf("\nlimit = %ld cores / (a + b + c), c the cheaper of its runs\n", ncores);
    for (int bi = 0; bi < 2; bi++) {
        double sum = cost_us(&noop) + cost_us(&tokw) + cost_us(&db[bi][best[bi]]);

        limit[bi] = sum > 0 ? 1e6 * (double)ncores / sum : 0.0;
        printf("  B = %-3zu a + b + c = %.1f + %.1f + %.1f = %.1f µs (c with %d processes): "
               "%.0f accesses/s\n",
               batches[bi], cost_us(&noop), cost_us(&tokw), cost_us(&db[bi][best[bi]]), sum,
               db_procs[best[bi]], limit[bi]);
    }

    /* e. Coffer: audited accesses over HTTPS. */
    bench_start_server(log);
    printf("\nCoffer: wrk on POST %s/access, 2 threads, keep-alive, %d s per run\n", CRED_PATH,
           seconds);
    printf("%-12s %11s %9s %9s %8s %10s %10s %14s %6s\n", "connections", "accesses/s", "p50", "p99",
           "non-2xx", "answered", "audited", "CPU µs/access", "batch");
    for (int i = 0; i < 2; i++) {
        long long before = bench_granted_events();
        long long after;
        double acc0;
        double acc1;
        double bat0;
        double bat1;

        batch_counts(&acc0, &bat0);
        wrk(BASE CRED_PATH "/access", lua, conns[i], &cw[i], &cof[i]);
        batch_counts(&acc1, &bat1);
        after = bench_granted_events();
        audited[i] = before >= 0 && after >= 0 ? after - before : -1;
        printf("%-12d %11s %9s %9s %8ld %10ld %10lld %14.1f %6.1f\n", conns[i], cw[i].rate,
               cw[i].p50, cw[i].p99, cw[i].non_2xx, cw[i].requests, audited[i], cost_us(&cof[i]),
               bat1 > bat0 && bat0 >= 0 ? (acc1 - acc0) / (bat1 - bat0) : 0.0);
        fflush(stdout);
        /*
         * wrk stops with up to one request in flight per connection, which
         * cofferd may have audited (and answered to a closed connection)
         * already: every answer must have its event, and at most that many
         * events may lack an answer.
         */
        if (cw[i].requests <= 0 || cw[i].non_2xx != 0 || cw[i].sock_errors != 0 ||
            audited[i] < cw[i].requests || audited[i] - cw[i].requests > conns[i]) {
            printf("FAIL: %d connections: %ld answers, %ld non-2xx, %ld socket errors, %lld "
                   "audited\n",
                   conns[i], cw[i].requests, cw[i].non_2xx, cw[i].sock_errors, audited[i]);
            failures++;
        }
    }

    printf("(audited = answered, plus up to one request per connection that wrk stopped waiting "
           "for; batch: the mean number of accesses a worker audited with one commit)\n");
    printf("\nCoffer / limit\n");
    for (int i = 0; i < 2; i++) {
        double rate = atof(cw[i].rate);

        printf("  %2d connections / limit (B = %zu): %.0f / %.0f = %.1f%%\n", conns[i], batches[i],
               rate, limit[i], limit[i] > 0 ? 100.0 * rate / limit[i] : 0.0);
    }
    OPENSSL_cleanse(token, sizeof(token));
    token_len = 0;
    bench_finish(failures == 0);
    printf("\nmachine busy after the runs, nothing of this benchmark running: %.1f%% (1 s)\n",
           background_pct());
    curl_global_cleanup();
    if (failures != 0) {
        printf("limit_bench: FAIL (%d checks; %s kept)\n", failures, bench_dir);
        return 1;
    }
    return 0;
}

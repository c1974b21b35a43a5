/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Benchmark of the core on this machine: credential writes/s, reads/s and
 * rewraps/s through keys (token and database together), at 1 and 2
 * processes, each beside the raw capacity of the same token operations
 * measured in the same run, with the ratio; and access decisions/s (the
 * one query that loads grants, phase and lifetime, then the pure decision)
 * under a policy of one credential rule per stored credential, with the
 * time to apply that policy.
 *
 * It provisions its own embedded default in a temporary directory, forks
 * worker processes after set-up (each opens its own token context and
 * database connection, as cofferd's workers do), runs each measurement for a
 * fixed time, and stops the cluster it started. Usage:
 *
 *     core_bench [SECONDS_PER_MEASUREMENT [writes|reads|rewraps|decisions]]
 *     core_bench SECONDS_PER_MEASUREMENT scale [MAX_ROWS [MAX_ORGS]]
 *
 * (default 3 seconds, every operation). Naming one operation runs only that
 * row, for profiling. The scale mode shows how the cost grows with the rows
 * stored (10,000, 100,000 and 1,000,000 credentials, default MAX_ROWS
 * 1000000) and with the number of orgs (1, 100 and 1,000, default MAX_ORGS
 * 1000); each series stops at its maximum.
 */
#include "keys/keys_int.h"

#include "coffer/arena.h"
#include "coffer/authz.h"
#include "coffer/dev.h"
#include "coffer/mem.h"
#include "coffer/policy.h"

#include <errno.h>
#include <libpq-fe.h>
#include <openssl/rand.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_PROCS 2
#define SAMPLE_ROWS 512

static struct coffer_dev_env env;

/* An org whose credentials reads and decisions pick from, with the project that holds them. */
struct pool_org {
    struct coffer_org org;
    struct coffer_project proj;
};

static struct pool_org bench; /* org "bench" and its project "bench" */
static double seconds = 3.0;
static const char *only; /* NULL: every operation */

/* Wrapped CEKs and envelopes of real rows, read once, for the raw read and rewrap loops. */
static struct coffer_store_cred_version sample[SAMPLE_ROWS];
static size_t n_sample;
static long n_creds; /* credentials of each org of the pool, named bench-r<writer>-<i> */

/* The orgs reads and decisions pick from: org "bench" alone, or the orgs of the scale mode. */
static struct pool_org *pool;
static size_t n_pool;

/* New credentials of the writes row: named per worker index (so a later round adds versions to
   the same credentials), or per process (so every write creates a credential). */
static bool new_names;

struct result {
    long ops;
    double secs;
    long errors;
};

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static pid_t parent; /* the benchmark's own process, which started the cluster */

/* Stops the cluster this process started (never from a worker) and exits 1. */
static void bail(void)
{
    if (getpid() == parent && env.pg_pid > 0 && coffer_dev_pg_stop(&env) != COFFER_OK) {
        fprintf(stderr, "core_bench: stopping PostgreSQL: %s\n", coffer_err_detail());
    }
    exit(1);
}

static void die(const char *what, enum coffer_err r)
{
    fprintf(stderr, "core_bench: %s: %s: %s\n", what, coffer_err_str(r), coffer_err_detail());
    bail();
}

struct worker {
    struct coffer_p11_config cfg;
    struct coffer_p11 *p11;
    struct coffer_store *st;
    struct coffer_keys *k;
    int index;
    int procs;
};

static void worker_open(struct worker *w, int index, int procs)
{
    enum coffer_err r;

    memset(w, 0, sizeof(*w));
    w->cfg.module = env.module;
    w->cfg.token_uri = env.token_uri;
    w->cfg.pin_source = env.pin_source;
    w->cfg.pool_size = 1;
    w->index = index;
    w->procs = procs;
    if ((r = coffer_p11_open(&w->cfg, &w->p11)) != COFFER_OK) {
        die("p11 open", r);
    }
    if ((r = coffer_store_open(env.db_app, &w->st)) != COFFER_OK) {
        die("store open", r);
    }
    if ((r = coffer_keys_new(w->p11, &w->k)) != COFFER_OK) {
        die("keys", r);
    }
}

static void worker_close(struct worker *w)
{
    coffer_keys_free(&w->k);
    coffer_store_close(&w->st);
    coffer_p11_close(&w->p11);
}

static struct coffer_keyset *payload(long i)
{
    struct coffer_keyset *ks = NULL;
    char secret[64];

    snprintf(secret, sizeof(secret), "bench-secret-%08ld-0123456789abcdef", i);
    if (coffer_keyset_new(&ks) != COFFER_OK ||
        coffer_keyset_add(ks, "username", "bench_user", 10) != COFFER_OK ||
        coffer_keyset_add(ks, "password", secret, strlen(secret)) != COFFER_OK ||
        coffer_keyset_add(ks, "host", "db.internal.example:5432", 24) != COFFER_OK) {
        die("payload", COFFER_E_NOMEM);
    }
    coffer_wipe(secret, sizeof(secret));
    return ks;
}

/* ---- The measured loops (one process each) ------------------------------------ */

/* One credential of the pool, as the reads and decisions name it. */
struct pick {
    const struct pool_org *po;
    char name[64];
};

/* Credential i of an org's read corpus: writer i % MAX_PROCS wrote it as its i / MAX_PROCS. */
static void corpus_name(long i, char out[64])
{
    snprintf(out, 64, "bench-r%d-%ld", (int)(i % MAX_PROCS), i / MAX_PROCS);
}

/* A random credential of the pool: a random org (when there are several), then one of its own. */
static void pick(unsigned int *seed, struct pick *out)
{
    size_t o = n_pool > 1 ? (size_t)rand_r(seed) % n_pool : 0;

    out->po = &pool[o];
    corpus_name(rand_r(seed) % n_creds, out->name);
}

enum op {
    OP_RAW_WRITE,
    OP_CORE_WRITE,
    OP_RAW_READ,
    OP_CORE_READ,
    OP_CORE_READ_BATCH,
    OP_CORE_READ_PIPELINED,
    OP_DB_READ,
    OP_RAW_REWRAP,
    OP_CORE_REWRAP,
    OP_SWEEP_TIMED,
    OP_DECIDE,
};

/* Rows per step of the sweeper in the scale mode, as cofferd's keys.sweep_batch default. */
#define SWEEP_STEP 500

static void raw_write(struct worker *w, struct result *res)
{
    struct coffer_p11_session *s = NULL;
    struct coffer_store_org_key cur;
    struct coffer_keyset *ks = payload(0);
    struct coffer_secret *pl = NULL;
    struct coffer_buf aad = {0};
    unsigned char ct[256];
    unsigned char tag[COFFER_GCM_TAG_LEN];
    unsigned char iv[COFFER_GCM_IV_LEN];
    unsigned char wrapped[COFFER_WRAPPED_MAX];
    size_t wl;
    coffer_p11_obj ok = 0;
    enum coffer_err r;
    double t0;
    double end;

    if ((r = coffer_keys_payload_encode(ks, &pl)) != COFFER_OK ||
        (r = coffer_keys_aad(&bench.org.id, &bench.proj.id, &bench.org.id, 1,
                             coffer_keys_keyset_names(ks), coffer_keyset_count(ks), &aad)) !=
            COFFER_OK ||
        (r = coffer_p11_session_get(w->p11, &s)) != COFFER_OK ||
        (r = coffer_store_org_key_current(w->st, &bench.org.id, &cur)) != COFFER_OK ||
        (r = coffer_keys_org_key_handle(w->k, s, w->st, &bench.org.id, cur.version, &ok)) !=
            COFFER_OK) {
        die("raw write set-up", r);
    }
    t0 = now_s();
    end = t0 + seconds;
    while (now_s() < end) {
        coffer_p11_obj cek = 0;

        if (RAND_bytes(iv, sizeof(iv)) != 1) {
            die("RAND_bytes", COFFER_E_CRYPTO);
        }
        if (coffer_p11_generate_aes(s, &coffer_keys_spec_cek_new, &cek) != COFFER_OK ||
            coffer_p11_gcm_encrypt(s, cek, iv, aad.data, aad.len, coffer_secret_view(pl).data,
                                   coffer_secret_len(pl), ct, tag) != COFFER_OK ||
            coffer_p11_wrap(s, ok, cek, wrapped, &wl) != COFFER_OK) {
            res->errors++;
        }
        coffer_p11_destroy(s, &cek);
        res->ops++;
    }
    res->secs = now_s() - t0;
    coffer_p11_session_put(w->p11, &s);
    coffer_secret_free(&pl);
    coffer_buf_cleanup(&aad);
    coffer_keyset_free(&ks);
}

static void core_write(struct worker *w, struct result *res)
{
    char name[64];
    double t0 = now_s();
    double end = t0 + seconds;
    long i = 0;

    while (now_s() < end) {
        struct coffer_keyset *ks = payload(i);
        struct coffer_keys_write wr = {.org_id = &bench.org.id,
                                       .project_id = &bench.proj.id,
                                       .name = name,
                                       .type = "basic_auth",
                                       .tier = "high",
                                       .keys = ks};
        uint32_t version = 0;

        if (new_names) {
            snprintf(name, sizeof(name), "bench-n%d-%ld", (int)getpid(), i++);
        } else {
            snprintf(name, sizeof(name), "bench-w%d-%ld", w->index, i++);
        }
        if (coffer_keys_cred_write(w->k, w->st, &wr, &version) != COFFER_OK) {
            res->errors++;
        }
        coffer_keyset_free(&ks);
        res->ops++;
    }
    res->secs = now_s() - t0;
}

static void raw_read(struct worker *w, struct result *res)
{
    struct coffer_p11_session *s = NULL;
    struct coffer_buf aads[SAMPLE_ROWS];
    coffer_p11_obj ok = 0;
    enum coffer_err r;
    double t0;
    double end;
    size_t i = 0;

    memset(aads, 0, sizeof(aads));
    for (i = 0; i < n_sample; i++) {
        if ((r = coffer_keys_aad(&bench.org.id, &bench.proj.id, &sample[i].credential_id,
                                 sample[i].version, sample[i].key_names, sample[i].n_keys,
                                 &aads[i])) != COFFER_OK) {
            die("aad", r);
        }
    }
    if ((r = coffer_p11_session_get(w->p11, &s)) != COFFER_OK ||
        (r = coffer_keys_org_key_handle(w->k, s, w->st, &bench.org.id, sample[0].org_key_version,
                                        &ok)) != COFFER_OK) {
        die("raw read set-up", r);
    }
    t0 = now_s();
    end = t0 + seconds;
    i = 0;
    while (now_s() < end) {
        const struct coffer_store_cred_version *v = &sample[i % n_sample];
        struct coffer_secret *plain = NULL;
        coffer_p11_obj cek = 0;

        if (coffer_p11_unwrap(s, ok, v->wrapped_cek, v->wrapped_cek_len, &coffer_keys_spec_cek_read,
                              &cek) != COFFER_OK ||
            coffer_p11_gcm_decrypt(s, cek, v->nonce, aads[i % n_sample].data,
                                   aads[i % n_sample].len, v->ciphertext, v->ciphertext_len, v->tag,
                                   &plain) != COFFER_OK) {
            res->errors++;
        }
        coffer_secret_free(&plain);
        coffer_p11_destroy(s, &cek);
        res->ops++;
        i++;
    }
    res->secs = now_s() - t0;
    coffer_p11_session_put(w->p11, &s);
    for (i = 0; i < n_sample; i++) {
        coffer_buf_cleanup(&aads[i]);
    }
}

static void core_read(struct worker *w, struct result *res, bool db_only)
{
    unsigned int seed = (unsigned int)(getpid() * 2654435761u);
    double t0 = now_s();
    double end = t0 + seconds;

    while (now_s() < end) {
        struct pick c;
        struct coffer_keys_read_info info;
        struct coffer_keyset *ks = NULL;
        struct coffer_store_cred_version v;

        pick(&seed, &c);
        if (db_only) {
            if (coffer_store_cred_version_get(w->st, &c.po->org.id, &c.po->proj.id, c.name, 0,
                                              &v) != COFFER_OK) {
                res->errors++;
            }
            coffer_store_cred_version_cleanup(&v);
        } else if (coffer_keys_cred_read(w->k, w->st, &c.po->org.id, &c.po->proj.id, c.name, 0, &ks,
                                         &info) != COFFER_OK) {
            res->errors++;
        }
        coffer_keyset_free(&ks);
        res->ops++;
    }
    res->secs = now_s() - t0;
}

/* Reads in batches of READ_BATCH, as a worker with that many requests in flight would. */
#define READ_BATCH 64

static void fill_batch(unsigned int *seed, struct coffer_keys_read_req *reqs, char (*names)[64])
{
    size_t j;

    for (j = 0; j < READ_BATCH; j++) {
        struct pick c;

        pick(seed, &c);
        coffer_memcpy(names[j], c.name, sizeof(c.name));
        memset(&reqs[j], 0, sizeof(reqs[j]));
        reqs[j].org_id = &c.po->org.id;
        reqs[j].project_id = &c.po->proj.id;
        reqs[j].name = names[j];
    }
}

static void count_batch(struct coffer_keys_read_req *reqs, struct result *res)
{
    size_t j;

    for (j = 0; j < READ_BATCH; j++) {
        if (reqs[j].result != COFFER_OK) {
            res->errors++;
        }
        coffer_keyset_free(&reqs[j].keys);
    }
    res->ops += READ_BATCH;
}

/*
 * Reads in batches of READ_BATCH, as a worker with that many requests in
 * flight would; pipelined, the next batch's lookup overlaps this batch's
 * token work.
 */
static void core_read_batch(struct worker *w, struct result *res, bool pipelined)
{
    unsigned int seed = (unsigned int)(getpid() * 2654435761u);
    struct coffer_keys_read_req reqs[2][READ_BATCH];
    char names[2][READ_BATCH][64];
    double t0 = now_s();
    double end = t0 + seconds;
    int cur = 0;

    fill_batch(&seed, reqs[cur], names[cur]);
    if (pipelined && coffer_keys_read_start(w->k, w->st, reqs[cur], READ_BATCH) != COFFER_OK) {
        res->errors++;
    }
    while (now_s() < end) {
        int nxt = 1 - cur;
        bool more = pipelined && now_s() < end;

        fill_batch(&seed, reqs[nxt], names[nxt]);
        if (coffer_keys_read_finish(w->k, w->st, reqs[cur], READ_BATCH, more ? reqs[nxt] : NULL,
                                    more ? READ_BATCH : 0) != COFFER_OK) {
            res->errors += READ_BATCH;
        }
        count_batch(reqs[cur], res);
        cur = nxt;
    }
    if (pipelined && coffer_store_in_flight(w->st)) {
        if (coffer_keys_read_finish(w->k, w->st, reqs[cur], READ_BATCH, NULL, 0) != COFFER_OK) {
            res->errors += READ_BATCH;
        }
        for (size_t j = 0; j < READ_BATCH; j++) {
            coffer_keyset_free(&reqs[cur][j].keys);
        }
    }
    res->secs = now_s() - t0;
}

static void raw_rewrap(struct worker *w, struct result *res)
{
    struct coffer_p11_session *s = NULL;
    struct coffer_store_org_key cur;
    unsigned char wrapped[COFFER_WRAPPED_MAX];
    size_t wl;
    coffer_p11_obj old_ok = 0;
    coffer_p11_obj new_ok = 0;
    enum coffer_err r;
    double t0;
    double end;
    size_t i = 0;

    if ((r = coffer_p11_session_get(w->p11, &s)) != COFFER_OK ||
        (r = coffer_store_org_key_current(w->st, &bench.org.id, &cur)) != COFFER_OK ||
        (r = coffer_keys_org_key_handle(w->k, s, w->st, &bench.org.id, sample[0].org_key_version,
                                        &old_ok)) != COFFER_OK ||
        (r = coffer_keys_org_key_handle(w->k, s, w->st, &bench.org.id, cur.version, &new_ok)) !=
            COFFER_OK) {
        die("raw rewrap set-up", r);
    }
    t0 = now_s();
    end = t0 + seconds;
    while (now_s() < end) {
        const struct coffer_store_cred_version *v = &sample[i++ % n_sample];
        coffer_p11_obj cek = 0;

        if (coffer_p11_unwrap(s, old_ok, v->wrapped_cek, v->wrapped_cek_len,
                              &coffer_keys_spec_cek_rewrap, &cek) != COFFER_OK ||
            coffer_p11_wrap(s, new_ok, cek, wrapped, &wl) != COFFER_OK) {
            res->errors++;
        }
        coffer_p11_destroy(s, &cek);
        res->ops++;
    }
    res->secs = now_s() - t0;
    coffer_p11_session_put(w->p11, &s);
}

/*
 * Sweeps the slice of credential ids [index/procs, (index+1)/procs) of the id
 * space in steps of batch rows: to the end of the pass, or for the
 * measurement's time if timed. A timed sweep is rated from its second step:
 * the first one counts every stale row, which the caller times on its own.
 */
static void core_rewrap(struct worker *w, struct result *res, size_t batch, bool timed)
{
    struct coffer_keys_sweep sw;
    unsigned hi = 256u * (unsigned)(w->index + 1) / (unsigned)w->procs;
    double t0 = now_s();
    double end = t0 + seconds;
    int64_t before = 0;
    bool first = timed;

    memset(&sw, 0, sizeof(sw));
    sw.org_keys_done = true;
    if (w->index > 0) {
        sw.pos.started = true;
        sw.pos.credential_id.b[0] = (unsigned char)(256u * (unsigned)w->index / (unsigned)w->procs);
    }
    while (!sw.done && (!timed || now_s() < end)) {
        enum coffer_err r = coffer_keys_sweep_step(w->k, w->st, batch, &sw);

        if (r != COFFER_OK) {
            die("sweep", r);
        }
        if (first) {
            first = false;
            before = sw.rewrapped;
            t0 = now_s();
            end = t0 + seconds;
        }
        if (hi < 256 && sw.pos.started && sw.pos.credential_id.b[0] >= hi) {
            break;
        }
    }
    res->ops = sw.rewrapped - before;
    res->errors = sw.failed;
    res->secs = now_s() - t0;
}

/* Access decisions on random stored credentials by a deployer (granted by the policy). */
static void decide(struct worker *w, struct result *res)
{
    unsigned int seed = (unsigned int)(getpid() * 2654435761u);
    double t0 = now_s();
    double end = t0 + seconds;

    while (now_s() < end) {
        struct pick c;
        struct coffer_arena *a = NULL;
        struct coffer_authz_input in = {0};
        struct coffer_store_access acc;
        struct coffer_authz_decision d;

        pick(&seed, &c);
        if (coffer_arena_new(0, &a) != COFFER_OK ||
            coffer_store_access_load(w->st, c.po->org.name, c.po->proj.name, c.name, a, &in,
                                     &acc) != COFFER_OK) {
            res->errors++;
        } else {
            in.principal.org = c.po->org.name;
            in.principal.agent_type = "deployer";
            in.principal.instance = "d-1";
            in.purpose = "bench access";
            in.purpose_len = strlen(in.purpose);
            coffer_authz_decide(&in, &d);
            res->errors += d.allow ? 0 : 1;
        }
        coffer_arena_free(&a);
        res->ops++;
    }
    res->secs = now_s() - t0;
}

static void run_op(struct worker *w, enum op op, struct result *res)
{
    switch (op) {
    case OP_RAW_WRITE:
        raw_write(w, res);
        break;
    case OP_CORE_WRITE:
        core_write(w, res);
        break;
    case OP_RAW_READ:
        raw_read(w, res);
        break;
    case OP_CORE_READ:
        core_read(w, res, false);
        break;
    case OP_CORE_READ_BATCH:
        core_read_batch(w, res, false);
        break;
    case OP_CORE_READ_PIPELINED:
        core_read_batch(w, res, true);
        break;
    case OP_DB_READ:
        core_read(w, res, true);
        break;
    case OP_RAW_REWRAP:
        raw_rewrap(w, res);
        break;
    case OP_CORE_REWRAP:
        core_rewrap(w, res, 64, false);
        break;
    case OP_SWEEP_TIMED:
        core_rewrap(w, res, SWEEP_STEP, true);
        break;
    case OP_DECIDE:
        decide(w, res);
        break;
    default:
        abort();
    }
}

/* Forks procs workers for op; returns the summed rate (ops/s). */
static double measure(enum op op, int procs, long *errors)
{
    struct result total = {0, 0.0, 0};
    int fds[MAX_PROCS][2];
    pid_t pids[MAX_PROCS];
    int i;

    fflush(stdout);
    for (i = 0; i < procs; i++) {
        if (pipe(fds[i]) != 0) {
            perror("pipe");
            exit(1);
        }
        pids[i] = fork();
        if (pids[i] < 0) {
            perror("fork");
            exit(1);
        }
        if (pids[i] == 0) {
            struct worker w;
            struct result res = {0, 0.0, 0};

            close(fds[i][0]);
            worker_open(&w, i, procs);
            run_op(&w, op, &res);
            worker_close(&w);
            if (write(fds[i][1], &res, sizeof(res)) != (ssize_t)sizeof(res)) {
                _exit(1);
            }
            _exit(0);
        }
        close(fds[i][1]);
    }
    for (i = 0; i < procs; i++) {
        struct result res;
        int status = 0;

        if (read(fds[i][0], &res, sizeof(res)) != (ssize_t)sizeof(res)) {
            fprintf(stderr, "core_bench: worker %d reported nothing\n", i);
            bail();
        }
        close(fds[i][0]);
        waitpid(pids[i], &status, 0);
        total.ops += res.ops;
        total.errors += res.errors;
        if (res.secs > total.secs) {
            total.secs = res.secs;
        }
    }
    *errors = total.errors;
    return total.secs > 0 ? (double)total.ops / total.secs : 0.0;
}

#define ROUNDS 3

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a;
    double y = *(const double *)b;

    return (x > y) - (x < y);
}

/*
 * Measures each of n operations ROUNDS times, interleaved (a b c, a b c, ...)
 * so that drift in the machine's speed affects all alike, and reports each
 * operation's median rate and its total errors.
 */
static void measure_rounds(const enum op *ops, size_t n, int procs, double *rate, long *errors)
{
    double samples[4][ROUNDS];
    size_t i;
    int k;

    for (i = 0; i < n; i++) {
        errors[i] = 0;
    }
    for (k = 0; k < ROUNDS; k++) {
        for (i = 0; i < n; i++) {
            long e = 0;

            samples[i][k] = measure(ops[i], procs, &e);
            errors[i] += e;
        }
    }
    for (i = 0; i < n; i++) {
        qsort(samples[i], ROUNDS, sizeof(double), cmp_double);
        rate[i] = samples[i][ROUNDS / 2];
    }
}

/* ---- Set-up ------------------------------------------------------------------- */

/* Writes writer i's share of the read corpus of po: names bench-r<i>-<j>, per_writer of them. */
static void write_corpus(struct worker *w, const struct pool_org *po, int i, long per_writer)
{
    char name[64];

    for (long j = 0; j < per_writer; j++) {
        struct coffer_keyset *ks = payload(j);
        struct coffer_keys_write wr = {&po->org.id, &po->proj.id, name, "basic_auth", "high", ks};
        uint32_t version = 0;
        enum coffer_err r;

        corpus_name(j * MAX_PROCS + i, name);
        if ((r = coffer_keys_cred_write(w->k, w->st, &wr, &version)) != COFFER_OK) {
            die("populate", r);
        }
        coffer_keyset_free(&ks);
    }
}

/*
 * Writes the read corpus of each of the n_orgs orgs: names bench-r<writer>-<i>, per_writer of
 * them per writer process and org.
 */
static void populate(const struct pool_org *orgs, size_t n_orgs, long per_writer)
{
    pid_t pids[MAX_PROCS];
    int i;

    for (i = 0; i < MAX_PROCS; i++) {
        pids[i] = fork();
        if (pids[i] == 0) {
            struct worker w;

            worker_open(&w, i, MAX_PROCS);
            for (size_t o = 0; o < n_orgs; o++) {
                write_corpus(&w, &orgs[o], i, per_writer);
            }
            worker_close(&w);
            _exit(0);
        }
    }
    for (i = 0; i < MAX_PROCS; i++) {
        int status = 0;

        waitpid(pids[i], &status, 0);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            fprintf(stderr, "core_bench: populate worker failed\n");
            bail();
        }
    }
    n_creds = per_writer * MAX_PROCS;
}

static void load_sample(struct coffer_store *st)
{
    char name[64];
    size_t i;

    for (i = 0; i < n_sample; i++) {
        coffer_store_cred_version_cleanup(&sample[i]);
    }
    n_sample = 0;
    for (i = 0; i < SAMPLE_ROWS && (long)i < n_creds; i++) {
        enum coffer_err r;

        corpus_name((long)i, name);
        if ((r = coffer_store_cred_version_get(st, &bench.org.id, &bench.proj.id, name, 0,
                                               &sample[i])) != COFFER_OK) {
            die("sample", r);
        }
        n_sample++;
    }
}

/*
 * The bench policy of the org named org_name: one credential rule per
 * credential of its read corpus (two grants and a purpose pattern each).
 */
static void policy_yaml(const char *org_name, struct coffer_buf *y)
{
    char line[256];
    int n;

    n = snprintf(line, sizeof(line),
                 "version: 1\norg: %s\nagent_types: {deployer: , analyst: }\nprojects:\n"
                 "  bench:\n    phases: [build, production]\n    members: [deployer, analyst]\n"
                 "    credentials:\n",
                 org_name);
    if (coffer_buf_put(y, line, (size_t)n) != COFFER_OK) {
        die("policy", COFFER_E_NOMEM);
    }
    for (long i = 0; i < n_creds; i++) {
        char name[64];

        corpus_name(i, name);
        n = snprintf(line, sizeof(line),
                     "      %s: {grants: [{agent_type: deployer}, {agent_type: "
                     "analyst, instance: a-1, phases: [production]}], purposes: [\"bench *\"]}\n",
                     name);
        if (coffer_buf_put(y, line, (size_t)n) != COFFER_OK) {
            die("policy", COFFER_E_NOMEM);
        }
    }
}

/* Parses and checks a policy file; dies with its first diagnostic. */
static struct coffer_policy *policy_parse(const struct coffer_buf *y)
{
    struct coffer_policy *p = NULL;
    struct coffer_policy_diags d = {0};
    enum coffer_err r;

    if ((r = coffer_policy_new(&p)) != COFFER_OK ||
        (r = coffer_policy_add_buffer(p, "bench.yaml", y->data, y->len, &d)) != COFFER_OK ||
        (r = coffer_policy_finish(p, &d)) != COFFER_OK) {
        fprintf(stderr, "core_bench: %s\n", d.n > 0 ? d.lines[0] : coffer_err_detail());
        die("policy", r);
    }
    coffer_policy_diags_cleanup(&d);
    return p;
}

/* Applies the one org of p; returns the time it took, in ms. */
static double policy_apply(struct coffer_store *st, const struct coffer_policy *p)
{
    struct coffer_arena *a = NULL;
    struct coffer_store_policy_result res;
    double t0;
    double ms;
    enum coffer_err r;

    if ((r = coffer_arena_new(0, &a)) != COFFER_OK) {
        die("policy", r);
    }
    t0 = now_s();
    if ((r = coffer_store_policy_apply(st, &p->orgs[0], "core_bench", a, &res)) != COFFER_OK) {
        die("policy apply", r);
    }
    ms = (now_s() - t0) * 1e3;
    coffer_arena_free(&a);
    return ms;
}

/*
 * The bench policy of org "bench", applied once (everything new), then again
 * (nothing changes), printing the time of each.
 */
static void apply_bench_policy(struct coffer_store *st)
{
    struct coffer_buf y = {0};
    struct coffer_policy *p = NULL;
    double t0;
    double parse_ms;

    policy_yaml("bench", &y);
    t0 = now_s();
    p = policy_parse(&y);
    parse_ms = (now_s() - t0) * 1e3;
    for (int pass = 0; pass < 2; pass++) {
        double ms = policy_apply(st, p);

        printf("  %-28s %10.1f ms   (%ld rules, %ld grants, %zu KiB of YAML; %s)\n",
               pass == 0 ? "policy apply" : "policy re-apply", ms, n_creds, 2 * n_creds,
               y.len / 1024, pass == 0 ? "everything new" : "nothing changed, nothing written");
    }
    printf("  %-28s %10.1f ms   (parse and check the same file)\n", "policy validate", parse_ms);
    coffer_policy_free(&p);
    coffer_buf_cleanup(&y);
}

/* The bench policy of one org, applied without a word. */
static void apply_org_policy(struct coffer_store *st, const char *org_name)
{
    struct coffer_buf y = {0};
    struct coffer_policy *p = NULL;

    policy_yaml(org_name, &y);
    p = policy_parse(&y);
    (void)policy_apply(st, p);
    coffer_policy_free(&p);
    coffer_buf_cleanup(&y);
}

static bool selected(const char *op)
{
    return only == NULL || strcmp(only, op) == 0;
}

static void row(const char *what, double core, long core_err, double raw, long raw_err)
{
    printf("  %-28s %10.0f/s %10.0f/s   %5.1f%%   %s\n", what, core, raw,
           raw > 0 ? 100.0 * core / raw : 0.0, core_err + raw_err == 0 ? "" : "(errors!)");
}

/* The rows of the default mode: for 1 and 2 processes, each operation beside the raw token's. */
static void run_core(struct coffer_keys *k, struct coffer_store *st)
{
    enum coffer_err r;
    int procs;

    load_sample(st);
    if (selected("decisions")) {
        printf("\npolicy (one rule per stored credential)\n");
        apply_bench_policy(st);
    }

    for (procs = 1; procs <= MAX_PROCS; procs++) {
        struct coffer_keys_created rot;
        enum op write_ops[] = {OP_RAW_WRITE, OP_CORE_WRITE};
        enum op read_ops[] = {OP_RAW_READ, OP_CORE_READ, OP_CORE_READ_BATCH,
                              OP_CORE_READ_PIPELINED};
        enum op rewrap_ops[] = {OP_RAW_REWRAP};
        double rate[4];
        long errs[4];
        long e = 0;
        double core;
        double db;

        printf("\n%d process%s                          core (token+db)   raw token   core/raw\n",
               procs, procs == 1 ? "  " : "es");
        if (selected("writes")) {
            measure_rounds(write_ops, 2, procs, rate, errs);
            row("writes", rate[1], errs[1], rate[0], errs[0]);
        }
        if (selected("reads")) {
            measure_rounds(read_ops, 4, procs, rate, errs);
            row("reads, one at a time", rate[1], errs[1], rate[0], errs[0]);
            row("reads, batches of 64", rate[2], errs[2], rate[0], errs[0]);
            row("reads, pipelined batches", rate[3], errs[3], rate[0], errs[0]);
            db = measure(OP_DB_READ, procs, &e);
            printf("  %-28s %10.0f/s   (one row fetch, the database part of a single read)\n",
                   "  row fetch alone", db);
        }
        if (selected("decisions")) {
            double rate_d[1];
            long errs_d[1];
            enum op decide_ops[] = {OP_DECIDE};

            measure_rounds(decide_ops, 1, procs, rate_d, errs_d);
            printf("  %-28s %10.0f/s   (load grants, phase, lifetime in one query; decide)%s\n",
                   "access decisions", rate_d[0], errs_d[0] == 0 ? "" : " (errors!)");
        }
        if (!selected("rewraps")) {
            continue;
        }
        /* A rotation makes every row stale; the sweep then rewraps them all, once. */
        {
            int64_t stale = 0;
            int64_t stale_ok = 0;
            double t0 = now_s();
            double ms;

            if ((r = coffer_keys_org_rotate(k, st, &bench.org.id, &rot)) != COFFER_OK) {
                die("rotate", r);
            }
            ms = (now_s() - t0) * 1e3;
            if ((r = coffer_store_count_stale(st, &stale, &stale_ok)) != COFFER_OK) {
                die("count", r);
            }
            printf("  %-28s %10.1f ms   (whatever the rows: %lld now to rewrap)\n",
                   "org key rotation", ms, (long long)stale);
        }
        measure_rounds(rewrap_ops, 1, procs, rate, errs);
        core = measure(OP_CORE_REWRAP, procs, &e);
        row("rewraps (sweep)", core, e, rate[0], errs[0]);
        load_sample(st);
    }
    for (size_t i = 0; i < n_sample; i++) {
        coffer_store_cred_version_cleanup(&sample[i]);
    }
}

/* ---- Scale: how the cost grows with the rows stored and with the orgs ------------ */

#define REAL_PER_WRITER 2500   /* the read corpus of org "bench": 5,000 credentials */
#define ORG_PER_WRITER 10      /* the read corpus of each org of the second series: 20 */
#define FILL_CHUNK 100000L     /* filler rows per statement */
#define SERIES_MAX 3           /* points of a series */
#define SCALE_ROWS_MAX 1000000 /* largest MAX_ROWS accepted: the last point of its series */
#define SCALE_ORGS_MAX 1000    /* largest MAX_ORGS accepted: the last point of its series */

static bool scale;
static long max_rows = SCALE_ROWS_MAX;
static long max_orgs = SCALE_ORGS_MAX;
static long n_fill; /* filler rows added so far, named fill-<i> */

/* The points of a series below max, then max itself (steps ascending, SERIES_MAX of them). */
static size_t series(const long steps[SERIES_MAX], long max, long out[SERIES_MAX])
{
    size_t n = 0;

    for (size_t i = 0; i < SERIES_MAX - 1 && steps[i] < max; i++) {
        out[n++] = steps[i];
    }
    out[n++] = max < steps[SERIES_MAX - 1] ? max : steps[SERIES_MAX - 1];
    return n;
}

/* ---- Filler rows (SQL as coffer_owner; libpq here only, as the other tests do) ---- */

static PGconn *owner_open(void)
{
    PGconn *c = PQconnectdb(env.db_owner);

    if (PQstatus(c) != CONNECTION_OK) {
        fprintf(stderr, "core_bench: connecting as coffer_owner: %s", PQerrorMessage(c));
        PQfinish(c);
        bail();
    }
    return c;
}

/* Runs one statement with text parameters; dies with the server's message if it fails. */
static PGresult *owner_exec(PGconn *c, const char *what, const char *sql, int n,
                            const char *const *params)
{
    PGresult *res = PQexecParams(c, sql, n, NULL, params, NULL, NULL, 0);
    ExecStatusType status = PQresultStatus(res);

    if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
        fprintf(stderr, "core_bench: %s: %s", what, PQresultErrorMessage(res));
        PQclear(res);
        PQfinish(c);
        bail();
    }
    return res;
}

/* Rows of coffer.credentials, every org's. */
static long count_credentials(PGconn *c)
{
    PGresult *res =
        owner_exec(c, "counting credentials", "SELECT count(*) FROM coffer.credentials", 0, NULL);
    long n = atol(PQgetvalue(res, 0, 0));

    PQclear(res);
    return n;
}

/*
 * Filler credentials fill-<first> .. fill-<first+n-1> in project bench of org
 * bench, each with one version that copies the nonce, ciphertext, tag and
 * wrapped CEK of a real version under the org's current key. The wrapped CEK
 * is a real one, so the sweeper can unwrap and rewrap it; the payload cannot
 * be decrypted, because its additional data names the credential it was
 * written for, not the filler's. Reads never pick a filler row. The new ids
 * are inserted in order, so that each index is filled page after page rather
 * than at random places across an index larger than the buffer cache.
 */
static const char fill_sql[] =
    "WITH src AS (SELECT v.org_id, v.project_id, c.type, c.tier, v.org_key_version, v.aead, "
    "v.wrap_mech, v.key_names, v.nonce, v.ciphertext, v.tag, v.wrapped_cek "
    "FROM coffer.orgs o JOIN coffer.projects p ON p.org_id = o.id AND p.name = $2 "
    "JOIN coffer.org_keys k ON k.org_id = o.id AND k.state = 'current' "
    "JOIN coffer.credentials c ON c.org_id = o.id AND c.project_id = p.id "
    "AND c.name LIKE 'bench-r%' "
    "JOIN coffer.credential_versions v ON v.credential_id = c.id "
    "AND v.version = c.current_version AND v.org_key_version = k.version "
    "WHERE o.name = $1 LIMIT 1), "
    "ids AS MATERIALIZED (SELECT gen_random_uuid() AS id, g "
    "FROM generate_series($3::bigint, $3::bigint + $4::bigint - 1) g ORDER BY 1), "
    "cred AS (INSERT INTO coffer.credentials (id, org_id, project_id, name, type, tier, "
    "current_version) SELECT ids.id, src.org_id, src.project_id, 'fill-' || ids.g, src.type, "
    "src.tier, 1 FROM ids, src ORDER BY ids.id) "
    "INSERT INTO coffer.credential_versions (credential_id, version, org_id, project_id, "
    "org_key_version, aead, wrap_mech, key_names, nonce, ciphertext, tag, wrapped_cek) "
    "SELECT ids.id, 1, src.org_id, src.project_id, src.org_key_version, src.aead, "
    "src.wrap_mech, src.key_names, src.nonce, src.ciphertext, src.tag, src.wrapped_cek "
    "FROM ids, src ORDER BY ids.id";

/* Connections that add filler rows at once: the database's insert work is CPU-bound. */
#define FILL_CONNS 2

/* Sends the insert of filler rows fill-<first> .. fill-<first+n-1>, without waiting. */
static void fill_send(PGconn *c, long first, long n)
{
    char first_s[24];
    char n_s[24];
    const char *params[] = {bench.org.name, bench.proj.name, first_s, n_s};

    snprintf(first_s, sizeof(first_s), "%ld", first);
    snprintf(n_s, sizeof(n_s), "%ld", n);
    if (PQsendQueryParams(c, fill_sql, 4, NULL, params, NULL, NULL, 0) != 1) {
        fprintf(stderr, "core_bench: adding filler rows: %s", PQerrorMessage(c));
        bail();
    }
}

/* Waits for an insert fill_send sent; dies unless it added n versions. */
static void fill_wait(PGconn *c, long n)
{
    PGresult *res;
    long added = -1;

    while ((res = PQgetResult(c)) != NULL) {
        if (PQresultStatus(res) != PGRES_COMMAND_OK) {
            fprintf(stderr, "core_bench: adding filler rows: %s", PQresultErrorMessage(res));
            PQclear(res);
            bail();
        }
        added = atol(PQcmdTuples(res));
        PQclear(res);
    }
    if (added != n) {
        fprintf(stderr,
                "core_bench: adding filler rows: %ld of %ld added (is no current version of a "
                "bench-r credential of org %s under the org's current key?)\n",
                added, n, bench.org.name);
        bail();
    }
}

/*
 * Refreshes the planner's statistics of every table of schema coffer, as
 * autovacuum would have long since done in a server that grew this large.
 */
static void analyze(PGconn *c)
{
    PGresult *res = owner_exec(c, "analyzing",
                               "DO $$DECLARE t text; BEGIN FOR t IN SELECT format('%I.%I', "
                               "schemaname, tablename) FROM pg_tables WHERE schemaname = 'coffer' "
                               "LOOP EXECUTE 'ANALYZE ' || t; END LOOP; END$$",
                               0, NULL);

    PQclear(res);
}

/*
 * Adds filler rows until coffer.credentials holds target rows, in chunks of
 * FILL_CHUNK over FILL_CONNS connections, then analyzes; returns the rows.
 */
static long fill_to(long target)
{
    PGconn *c[FILL_CONNS];
    long have;

    for (int i = 0; i < FILL_CONNS; i++) {
        c[i] = owner_open();
    }
    have = count_credentials(c[0]);
    while (have < target) {
        long sent[FILL_CONNS] = {0};

        for (int i = 0; i < FILL_CONNS && have < target; i++) {
            sent[i] = target - have < FILL_CHUNK ? target - have : FILL_CHUNK;
            fill_send(c[i], n_fill, sent[i]);
            n_fill += sent[i];
            have += sent[i];
        }
        for (int i = 0; i < FILL_CONNS; i++) {
            if (sent[i] > 0) {
                fill_wait(c[i], sent[i]);
            }
        }
    }
    analyze(c[0]);
    have = count_credentials(c[0]);
    for (int i = 0; i < FILL_CONNS; i++) {
        PQfinish(c[i]);
    }
    return have;
}

/* ---- Steps of the series --------------------------------------------------------- */

/*
 * Reads every credential of the pool once, in batches. A read of a row under
 * an older org key rewraps it, so after a rotation this puts the read corpus
 * back under the current key: the next reads then measure reads, not rewraps.
 */
static void read_pool_once(struct coffer_keys *k, struct coffer_store *st)
{
    struct coffer_keys_read_req reqs[READ_BATCH];
    char names[READ_BATCH][64];
    long total = (long)n_pool * n_creds;
    enum coffer_err r;

    for (long base = 0; base < total; base += READ_BATCH) {
        size_t n = 0;

        for (; n < READ_BATCH && base + (long)n < total; n++) {
            long i = base + (long)n;
            const struct pool_org *po = &pool[i / n_creds];

            corpus_name(i % n_creds, names[n]);
            memset(&reqs[n], 0, sizeof(reqs[n]));
            reqs[n].org_id = &po->org.id;
            reqs[n].project_id = &po->proj.id;
            reqs[n].name = names[n];
        }
        if ((r = coffer_keys_cred_read_many(k, st, reqs, n)) != COFFER_OK) {
            die("reading the corpus", r);
        }
        for (size_t j = 0; j < n; j++) {
            coffer_keyset_free(&reqs[j].keys);
            if (reqs[j].result != COFFER_OK) {
                die(reqs[j].name, reqs[j].result);
            }
        }
    }
}

/* Rotates the key of org "bench" ROUNDS times; the median time of the rotation call, in ms. */
static double rotate_median(struct coffer_keys *k, struct coffer_store *st)
{
    double ms[ROUNDS];
    enum coffer_err r;

    for (int i = 0; i < ROUNDS; i++) {
        struct coffer_keys_created rot;
        double t0 = now_s();

        if ((r = coffer_keys_org_rotate(k, st, &bench.org.id, &rot)) != COFFER_OK) {
            die("rotate", r);
        }
        ms[i] = (now_s() - t0) * 1e3;
    }
    qsort(ms, ROUNDS, sizeof(double), cmp_double);
    return ms[ROUNDS / 2];
}

/* Counts the stale credential versions (as the sweeper does at the ends of a pass); in ms. */
static double time_count_stale(struct coffer_store *st, int64_t *stale)
{
    int64_t stale_org_keys = 0;
    double t0 = now_s();
    enum coffer_err r;

    if ((r = coffer_store_count_stale(st, stale, &stale_org_keys)) != COFFER_OK) {
        die("count", r);
    }
    return (now_s() - t0) * 1e3;
}

/* ---- The tables ---------------------------------------------------------------- */

/* One row of a table: its label, its unit and how many decimals its cells have. */
struct row_spec {
    const char *label;
    const char *unit;
    int decimals;
};

enum cred_row {
    CR_ROWS,
    CR_FILL,
    CR_READ,
    CR_BATCH,
    CR_DECIDE,
    CR_WRITE,
    CR_ROTATE,
    CR_STALE,
    CR_COUNT,
    CR_SWEEP,
    CR_ERRORS,
    CR_N,
};

static const struct row_spec cred_rows[CR_N] = {
    [CR_ROWS] = {"rows in coffer.credentials", "", 0},
    [CR_FILL] = {"  set-up: filler rows + ANALYZE", " s", 1},
    [CR_READ] = {"reads, one at a time", "/s", 0},
    [CR_BATCH] = {"reads, batches of 64", "/s", 0},
    [CR_DECIDE] = {"access decisions", "/s", 0},
    [CR_WRITE] = {"writes (new credentials)", "/s", 0},
    [CR_ROTATE] = {"org key rotation (median of 3)", " ms", 1},
    [CR_STALE] = {"  rows then under an old key", "", 0},
    [CR_COUNT] = {"  counting them (a sweep's first step)", " ms", 1},
    [CR_SWEEP] = {"sweep, steps of 500, 1 process", "/s", 0},
    [CR_ERRORS] = {"errors (must be 0)", "", 0},
};

enum org_row {
    OR_ORGS,
    OR_SETUP,
    OR_READ,
    OR_BATCH,
    OR_DECIDE,
    OR_ERRORS,
    OR_N,
};

static const struct row_spec org_rows[OR_N] = {
    [OR_ORGS] = {"orgs (20 credentials each)", "", 0},
    [OR_SETUP] = {"  set-up per org added", " ms", 1},
    [OR_READ] = {"reads, one at a time", "/s", 0},
    [OR_BATCH] = {"reads, batches of 64", "/s", 0},
    [OR_DECIDE] = {"access decisions", "/s", 0},
    [OR_ERRORS] = {"errors (must be 0)", "", 0},
};

/* Prints a table: a header of points, then each row's cells, one column per point. */
static void print_table(const char *title, const long *points, size_t n_points,
                        const struct row_spec *rows, size_t n_rows, double cells[][SERIES_MAX])
{
    printf("\n%-40s", title);
    for (size_t j = 0; j < n_points; j++) {
        printf(" %13ld", points[j]);
    }
    printf("\n");
    for (size_t i = 0; i < n_rows; i++) {
        printf("  %-38s", rows[i].label);
        for (size_t j = 0; j < n_points; j++) {
            char cell[32];

            snprintf(cell, sizeof(cell), "%.*f%s", rows[i].decimals, cells[i][j], rows[i].unit);
            printf(" %13s", cell);
        }
        printf("\n");
    }
}

/* ---- The two series ------------------------------------------------------------ */

/* Brings the rows to target and measures every row of the credentials table at that point. */
static void measure_rows(struct coffer_keys *k, struct coffer_store *st, long target,
                         double cells[][SERIES_MAX], size_t col)
{
    enum op ops[] = {OP_CORE_READ, OP_CORE_READ_BATCH, OP_DECIDE};
    enum op write_ops[] = {OP_CORE_WRITE};
    double rate[3];
    long errs[3];
    long e = 0;
    int64_t stale = 0;
    double t0 = now_s();

    cells[CR_ROWS][col] = (double)fill_to(target);
    cells[CR_FILL][col] = now_s() - t0;
    measure_rounds(ops, 3, MAX_PROCS, rate, errs);
    cells[CR_READ][col] = rate[0];
    cells[CR_BATCH][col] = rate[1];
    cells[CR_DECIDE][col] = rate[2];
    cells[CR_ERRORS][col] = (double)(errs[0] + errs[1] + errs[2]);
    cells[CR_ROTATE][col] = rotate_median(k, st);
    cells[CR_COUNT][col] = time_count_stale(st, &stale);
    cells[CR_STALE][col] = (double)stale;
    cells[CR_SWEEP][col] = measure(OP_SWEEP_TIMED, 1, &e);
    cells[CR_ERRORS][col] += (double)e;
    read_pool_once(k, st);
    /* Last, so that every row above saw exactly the rows of its column. */
    measure_rounds(write_ops, 1, MAX_PROCS, rate, errs);
    cells[CR_WRITE][col] = rate[0];
    cells[CR_ERRORS][col] += (double)errs[0];
}

/* The same calls as org "bench" is made with: the org with its key, and its project. */
static void org_setup(struct coffer_keys *k, struct coffer_store *st, const char *name,
                      struct pool_org *out)
{
    enum coffer_err r;

    if ((r = coffer_keys_org_create(k, st, name, &out->org, NULL)) != COFFER_OK ||
        (r = coffer_store_project_insert(st, &out->org.id, "bench", &out->proj)) != COFFER_OK) {
        die("org set-up", r);
    }
}

/* Adds orgs org-<from> .. org-<to-1> to the pool, each with its corpus and its policy. */
static void add_orgs(struct coffer_keys *k, struct coffer_store *st, size_t from, size_t to)
{
    for (size_t i = from; i < to; i++) {
        char name[32];

        snprintf(name, sizeof(name), "org-%zu", i);
        org_setup(k, st, name, &pool[i]);
    }
    populate(&pool[from], to - from, ORG_PER_WRITER);
    for (size_t i = from; i < to; i++) {
        apply_org_policy(st, pool[i].org.name);
    }
    n_pool = to;
}

/* Grows the orgs to target and measures every row of the orgs table at that point. */
static void measure_orgs(struct coffer_keys *k, struct coffer_store *st, size_t target,
                         double cells[][SERIES_MAX], size_t col)
{
    enum op ops[] = {OP_CORE_READ, OP_CORE_READ_BATCH, OP_DECIDE};
    double rate[3];
    long errs[3];
    size_t before = n_pool;
    double t0 = now_s();
    PGconn *c;

    add_orgs(k, st, n_pool, target);
    cells[OR_ORGS][col] = (double)n_pool;
    cells[OR_SETUP][col] = (now_s() - t0) * 1e3 / (double)(target - before);
    c = owner_open();
    analyze(c);
    PQfinish(c);
    measure_rounds(ops, 3, MAX_PROCS, rate, errs);
    cells[OR_READ][col] = rate[0];
    cells[OR_BATCH][col] = rate[1];
    cells[OR_DECIDE][col] = rate[2];
    cells[OR_ERRORS][col] = (double)(errs[0] + errs[1] + errs[2]);
}

/* The scale mode: the credentials series in org "bench", then the orgs series. */
static void run_scale(struct coffer_keys *k, struct coffer_store *st)
{
    static const long row_steps[SERIES_MAX] = {10000, 100000, 1000000};
    static const long org_steps[SERIES_MAX] = {1, 100, 1000};
    double cells[CR_N][SERIES_MAX];
    long points[SERIES_MAX];
    size_t n;

    printf("  rows: %d real credentials written through keys in org bench; the rest are filler "
           "rows added by SQL,\n  copies of one real version's ciphertext and wrapped CEK under "
           "new credential ids: they cannot be\n  decrypted (their additional data names another "
           "credential), but the sweeper rewraps them.\n  Reads and decisions pick only real "
           "credentials.\n",
           REAL_PER_WRITER * MAX_PROCS);
    apply_org_policy(st, bench.org.name);
    new_names = true;
    n = series(row_steps, max_rows, points);
    memset(cells, 0, sizeof(cells));
    for (size_t j = 0; j < n; j++) {
        measure_rows(k, st, points[j], cells, j);
    }
    print_table("credentials in one org", points, n, cred_rows, CR_N, cells);
    printf("  Rotation: the rotation call alone (a new key version made current), with every row "
           "under an older\n  version. The sweep starts right after the rotations and counts "
           "from its second step. Writes\n  are measured last at each point, so that every row "
           "above saw exactly the rows of its column.\n");

    pool = coffer_calloc((size_t)max_orgs, sizeof(*pool));
    if (pool == NULL) {
        die("orgs", COFFER_E_NOMEM);
    }
    n_pool = 0;
    n = series(org_steps, max_orgs, points);
    memset(cells, 0, sizeof(cells));
    for (size_t j = 0; j < n; j++) {
        measure_orgs(k, st, (size_t)points[j], cells, j);
    }
    print_table("orgs, reads picked across all of them", points, n, org_rows, OR_N, cells);
    printf("  Each org: its own org key, project bench, 20 credentials, a policy of 20 rules "
           "(set-up: all of\n  that, per org). Every worker process starts with an empty org "
           "key cache and loads an org's\n  key at its first read of that org.\n");
    coffer_free(pool);
    pool = &bench;
    n_pool = 1;
}

/* ---- Command line --------------------------------------------------------------- */

/* A whole decimal number in [lo, hi], or -1. */
static long number(const char *s, long lo, long hi)
{
    char *end = NULL;
    long v;

    errno = 0;
    v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi) {
        return -1;
    }
    return v;
}

static bool parse_args(int argc, char **argv)
{
    if (argc > 1) {
        seconds = atof(argv[1]);
    }
    if (argc > 2) {
        only = argv[2];
        scale = strcmp(only, "scale") == 0;
    }
    if (scale && argc > 3 &&
        (max_rows = number(argv[3], REAL_PER_WRITER * MAX_PROCS, SCALE_ROWS_MAX)) < 0) {
        return false;
    }
    if (scale && argc > 4 && (max_orgs = number(argv[4], 1, SCALE_ORGS_MAX)) < 0) {
        return false;
    }
    if (argc > (scale ? 5 : 3) || seconds <= 0.1 || seconds > 600) {
        return false;
    }
    return only == NULL || scale || strcmp(only, "writes") == 0 || strcmp(only, "reads") == 0 ||
           strcmp(only, "rewraps") == 0 || strcmp(only, "decisions") == 0;
}

int main(int argc, char **argv)
{
    char dir[] = "/tmp/coffer-bench.XXXXXX";
    struct coffer_p11_config cfg;
    struct coffer_p11 *p11 = NULL;
    struct coffer_store *st = NULL;
    struct coffer_keys *k = NULL;
    enum coffer_err r;

    if (!parse_args(argc, argv)) {
        fprintf(stderr,
                "usage: core_bench [SECONDS_PER_MEASUREMENT [writes|reads|rewraps|decisions]]\n"
                "       core_bench SECONDS_PER_MEASUREMENT scale [MAX_ROWS [MAX_ORGS]]\n");
        return 2;
    }
    parent = getpid();
    if ((r = coffer_harden_process()) != COFFER_OK) {
        die("harden", r);
    }
    if (mkdtemp(dir) == NULL || chmod(dir, 0755) != 0) {
        perror("mkdtemp");
        return 1;
    }
    if ((r = coffer_dev_up(dir, &env)) != COFFER_OK) {
        die("provisioning", r);
    }
    cfg.module = env.module;
    cfg.token_uri = env.token_uri;
    cfg.pin_source = env.pin_source;
    cfg.pool_size = 1;
    if ((r = coffer_p11_open(&cfg, &p11)) != COFFER_OK ||
        (r = coffer_store_open(env.db_app, &st)) != COFFER_OK ||
        (r = coffer_keys_new(p11, &k)) != COFFER_OK) {
        die("set-up", r);
    }
    org_setup(k, st, "bench", &bench);
    pool = &bench;
    n_pool = 1;
    if (scale) {
        printf("core_bench scale: medians of %d interleaved runs of %.1f s at %d processes (the "
               "sweep: one run at 1 process),\n  payload 3 keys / 58 bytes, SoftHSMv2 in %s\n",
               ROUNDS, seconds, MAX_PROCS, dir);
    } else {
        printf("core_bench: medians of %d interleaved runs of %.1f s, payload 3 keys / 58 bytes, "
               "SoftHSMv2 in %s\n",
               ROUNDS, seconds, dir);
    }
    populate(pool, 1, REAL_PER_WRITER);
    if (scale) {
        run_scale(k, st);
    } else {
        run_core(k, st);
    }

    coffer_keys_free(&k);
    coffer_store_close(&st);
    coffer_p11_close(&p11);
    if ((r = coffer_dev_pg_stop(&env)) != COFFER_OK) {
        die("stopping PostgreSQL", r);
    }
    if ((r = coffer_dev_remove_tree(dir)) != COFFER_OK) {
        die("removing the directory", r);
    }
    return 0;
}

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
 *
 * (default 3 seconds, every operation). Naming one operation runs only that
 * row, for profiling.
 */
#include "keys/keys_int.h"

#include "coffer/arena.h"
#include "coffer/authz.h"
#include "coffer/dev.h"
#include "coffer/mem.h"
#include "coffer/policy.h"

#include <errno.h>
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
static struct coffer_org org;
static struct coffer_project proj;
static double seconds = 3.0;
static const char *only; /* NULL: every operation */

/* Wrapped CEKs and envelopes of real rows, read once, for the raw read and rewrap loops. */
static struct coffer_store_cred_version sample[SAMPLE_ROWS];
static size_t n_sample;
static long n_creds; /* credentials written so far, named bench-<i> */

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
    OP_DECIDE,
};

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
        (r = coffer_keys_aad(&org.id, &proj.id, &org.id, 1, coffer_keys_keyset_names(ks),
                             coffer_keyset_count(ks), &aad)) != COFFER_OK ||
        (r = coffer_p11_session_get(w->p11, &s)) != COFFER_OK ||
        (r = coffer_store_org_key_current(w->st, &org.id, &cur)) != COFFER_OK ||
        (r = coffer_keys_org_key_handle(w->k, s, w->st, &org.id, cur.version, &ok)) != COFFER_OK) {
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
        struct coffer_keys_write wr = {&org.id, &proj.id, name, "basic_auth", "high", ks};
        uint32_t version = 0;

        snprintf(name, sizeof(name), "bench-w%d-%ld", w->index, i++);
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
        if ((r = coffer_keys_aad(&org.id, &proj.id, &sample[i].credential_id, sample[i].version,
                                 sample[i].key_names, sample[i].n_keys, &aads[i])) != COFFER_OK) {
            die("aad", r);
        }
    }
    if ((r = coffer_p11_session_get(w->p11, &s)) != COFFER_OK ||
        (r = coffer_keys_org_key_handle(w->k, s, w->st, &org.id, sample[0].org_key_version, &ok)) !=
            COFFER_OK) {
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
    char name[64];

    while (now_s() < end) {
        long i = rand_r(&seed) % n_creds;
        int writer = (int)(i % MAX_PROCS);
        struct coffer_keys_read_info info;
        struct coffer_keyset *ks = NULL;
        struct coffer_store_cred_version v;

        snprintf(name, sizeof(name), "bench-r%d-%ld", writer, i / MAX_PROCS);
        if (db_only) {
            if (coffer_store_cred_version_get(w->st, &org.id, &proj.id, name, 0, &v) != COFFER_OK) {
                res->errors++;
            }
            coffer_store_cred_version_cleanup(&v);
        } else if (coffer_keys_cred_read(w->k, w->st, &org.id, &proj.id, name, 0, &ks, &info) !=
                   COFFER_OK) {
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
        long i = rand_r(seed) % n_creds;

        snprintf(names[j], 64, "bench-r%d-%ld", (int)(i % MAX_PROCS), i / MAX_PROCS);
        memset(&reqs[j], 0, sizeof(reqs[j]));
        reqs[j].org_id = &org.id;
        reqs[j].project_id = &proj.id;
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
        (r = coffer_store_org_key_current(w->st, &org.id, &cur)) != COFFER_OK ||
        (r = coffer_keys_org_key_handle(w->k, s, w->st, &org.id, sample[0].org_key_version,
                                        &old_ok)) != COFFER_OK ||
        (r = coffer_keys_org_key_handle(w->k, s, w->st, &org.id, cur.version, &new_ok)) !=
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

/* Sweeps the slice of credential ids [index/procs, (index+1)/procs) of the id space. */
static void core_rewrap(struct worker *w, struct result *res)
{
    struct coffer_keys_sweep sw;
    unsigned hi = 256u * (unsigned)(w->index + 1) / (unsigned)w->procs;
    double t0 = now_s();

    memset(&sw, 0, sizeof(sw));
    sw.org_keys_done = true;
    if (w->index > 0) {
        sw.pos.started = true;
        sw.pos.credential_id.b[0] = (unsigned char)(256u * (unsigned)w->index / (unsigned)w->procs);
    }
    while (!sw.done) {
        enum coffer_err r = coffer_keys_sweep_step(w->k, w->st, 64, &sw);

        if (r != COFFER_OK) {
            die("sweep", r);
        }
        if (hi < 256 && sw.pos.started && sw.pos.credential_id.b[0] >= hi) {
            break;
        }
    }
    res->ops = sw.rewrapped;
    res->errors = sw.failed;
    res->secs = now_s() - t0;
}

/* Access decisions on random stored credentials by a deployer (granted by the policy). */
static void decide(struct worker *w, struct result *res)
{
    unsigned int seed = (unsigned int)(getpid() * 2654435761u);
    double t0 = now_s();
    double end = t0 + seconds;
    char name[64];

    while (now_s() < end) {
        long i = rand_r(&seed) % n_creds;
        struct coffer_arena *a = NULL;
        struct coffer_authz_input in = {0};
        struct coffer_store_access acc;
        struct coffer_authz_decision d;

        snprintf(name, sizeof(name), "bench-r%d-%ld", (int)(i % MAX_PROCS), i / MAX_PROCS);
        if (coffer_arena_new(0, &a) != COFFER_OK ||
            coffer_store_access_load(w->st, "bench", "bench", name, a, &in, &acc) != COFFER_OK) {
            res->errors++;
        } else {
            in.principal.org = "bench";
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
        core_rewrap(w, res);
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

/* Writes the read corpus: names bench-r<writer>-<i>, n per writer process. */
static void populate(long per_writer)
{
    pid_t pids[MAX_PROCS];
    int i;

    for (i = 0; i < MAX_PROCS; i++) {
        pids[i] = fork();
        if (pids[i] == 0) {
            struct worker w;
            char name[64];
            long j;

            worker_open(&w, i, MAX_PROCS);
            for (j = 0; j < per_writer; j++) {
                struct coffer_keyset *ks = payload(j);
                struct coffer_keys_write wr = {&org.id, &proj.id, name, "basic_auth", "high", ks};
                uint32_t version = 0;
                enum coffer_err r;

                snprintf(name, sizeof(name), "bench-r%d-%ld", i, j);
                if ((r = coffer_keys_cred_write(w.k, w.st, &wr, &version)) != COFFER_OK) {
                    die("populate", r);
                }
                coffer_keyset_free(&ks);
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
            exit(1);
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

        snprintf(name, sizeof(name), "bench-r%zu-%zu", i % MAX_PROCS, i / MAX_PROCS);
        if ((r = coffer_store_cred_version_get(st, &org.id, &proj.id, name, 0, &sample[i])) !=
            COFFER_OK) {
            die("sample", r);
        }
        n_sample++;
    }
}

/*
 * A policy with one credential rule per stored credential (two grants and a
 * purpose pattern each): applied once (everything new), then again
 * (nothing changes), printing the time of each.
 */
static void apply_bench_policy(struct coffer_store *st)
{
    struct coffer_buf y = {0};
    struct coffer_policy *p = NULL;
    struct coffer_policy_diags d = {0};
    struct coffer_arena *a = NULL;
    struct coffer_store_policy_result res;
    char line[256];
    double t0;
    double parse_ms;
    enum coffer_err r;

    snprintf(line, sizeof(line),
             "version: 1\norg: bench\nagent_types: {deployer: , analyst: }\nprojects:\n"
             "  bench:\n    phases: [build, production]\n    members: [deployer, analyst]\n"
             "    credentials:\n");
    if (coffer_buf_put(&y, line, strlen(line)) != COFFER_OK) {
        die("policy", COFFER_E_NOMEM);
    }
    for (long i = 0; i < n_creds; i++) {
        int n =
            snprintf(line, sizeof(line),
                     "      bench-r%d-%ld: {grants: [{agent_type: deployer}, {agent_type: "
                     "analyst, instance: a-1, phases: [production]}], purposes: [\"bench *\"]}\n",
                     (int)(i % MAX_PROCS), i / MAX_PROCS);

        if (coffer_buf_put(&y, line, (size_t)n) != COFFER_OK) {
            die("policy", COFFER_E_NOMEM);
        }
    }
    t0 = now_s();
    if ((r = coffer_policy_new(&p)) != COFFER_OK ||
        (r = coffer_policy_add_buffer(p, "bench.yaml", y.data, y.len, &d)) != COFFER_OK ||
        (r = coffer_policy_finish(p, &d)) != COFFER_OK) {
        fprintf(stderr, "core_bench: %s\n", d.n > 0 ? d.lines[0] : coffer_err_detail());
        die("policy", r);
    }
    parse_ms = (now_s() - t0) * 1e3;
    if ((r = coffer_arena_new(0, &a)) != COFFER_OK) {
        die("policy", r);
    }
    for (int pass = 0; pass < 2; pass++) {
        t0 = now_s();
        if ((r = coffer_store_policy_apply(st, &p->orgs[0], "core_bench", a, &res)) != COFFER_OK) {
            die("policy apply", r);
        }
        printf("  %-28s %10.1f ms   (%ld rules, %ld grants, %zu KiB of YAML; %s)\n",
               pass == 0 ? "policy apply" : "policy re-apply", (now_s() - t0) * 1e3, n_creds,
               2 * n_creds, y.len / 1024,
               pass == 0 ? "everything new" : "nothing changed, nothing written");
    }
    printf("  %-28s %10.1f ms   (parse and check the same file)\n", "policy validate", parse_ms);
    coffer_arena_free(&a);
    coffer_policy_diags_cleanup(&d);
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

int main(int argc, char **argv)
{
    char dir[] = "/tmp/coffer-bench.XXXXXX";
    struct coffer_p11_config cfg;
    struct coffer_p11 *p11 = NULL;
    struct coffer_store *st = NULL;
    struct coffer_keys *k = NULL;
    enum coffer_err r;
    int procs;

    if (argc > 1) {
        seconds = atof(argv[1]);
    }
    if (argc > 2) {
        only = argv[2];
    }
    if (argc > 3 || seconds <= 0.1 || seconds > 600 ||
        (only != NULL && strcmp(only, "writes") != 0 && strcmp(only, "reads") != 0 &&
         strcmp(only, "rewraps") != 0 && strcmp(only, "decisions") != 0)) {
        fprintf(stderr,
                "usage: core_bench [SECONDS_PER_MEASUREMENT [writes|reads|rewraps|decisions]]\n");
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
        (r = coffer_keys_new(p11, &k)) != COFFER_OK ||
        (r = coffer_keys_org_create(k, st, "bench", &org, NULL)) != COFFER_OK ||
        (r = coffer_store_project_insert(st, &org.id, "bench", &proj)) != COFFER_OK) {
        die("set-up", r);
    }
    printf("core_bench: medians of %d interleaved runs of %.1f s, payload 3 keys / 58 bytes, "
           "SoftHSMv2 in %s\n",
           ROUNDS, seconds, dir);
    populate(2500);
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

            if ((r = coffer_keys_org_rotate(k, st, &org.id, &rot)) != COFFER_OK) {
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

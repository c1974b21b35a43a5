/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Benchmark of audited accesses over HTTPS: wrk (from Debian) drives
 * POST .../credentials/{name}/access with keep-alive at 1, 16 and 64
 * connections against a real cofferd (one worker per core, its own token
 * and database), with a bearer token of an agent that the policy grants.
 * Every access is decided, unsealed in the token, audited in the same
 * transaction and committed before it is answered.
 *
 * It provisions its own embedded default in a temporary directory, checks
 * afterwards that the audit table gained one granted event per answered
 * request, runs the core-only read benchmark of core_bench in the same run
 * for comparison, and stops everything it started. Usage:
 *
 *     api_bench [SECONDS_PER_RUN [WORKERS]]   (default 10 s, one worker per core)
 *     api_bench SECONDS WORKERS seal [CONNECTIONS]
 *     api_bench SECONDS WORKERS sweep [CONNECTIONS [ROWS [SHARE]]]
 *     api_bench SECONDS WORKERS soak [CONNECTIONS]
 *     api_bench SECONDS WORKERS writes
 *
 * The seal mode measures accesses with the audit sealer running against it
 * paused; the sweep mode stores ROWS (default 20000) more credentials once,
 * rotates the org key before every run so that all of them are stale, and
 * measures accesses with the background sweeper running (keys.sweep: true,
 * the default rate) against it off. The soak mode runs a mixed load
 * (writes, revocations, denials, accesses, rotations) for SECONDS and
 * samples the memory of cofferd's processes (see soak()). The writes mode
 * creates new credentials by PUT (an admin's bearer token, every name new)
 * at 1, 16 and 64 connections and checks that each 201 has its create event.
 */
#include "bench_util.h"

#include "coffer/dev.h"
#include "coffer/err.h"
#include "coffer/keys.h"
#include "coffer/p11.h"
#include "coffer/secret.h"
#include "coffer/store.h"
#include "server/proc.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LISTEN "127.0.0.1:18643"
#define BASE "https://" LISTEN

/* Rewrites the configuration: the provisioned text, then the audit section. */
static void set_sealing(const char *base, bool on)
{
    FILE *cf = fopen(bench_env.config, "w");

    if (cf == NULL || fprintf(cf, "%saudit:\n  seal: %s\n", base, on ? "true" : "false") < 0 ||
        fclose(cf) != 0) {
        bench_die("writing the configuration");
    }
}

static bool read_config(char *buf, size_t cap)
{
    FILE *cf = fopen(bench_env.config, "r");
    size_t n;

    if (cf == NULL) {
        return false;
    }
    n = fread(buf, 1, cap - 1, cf);
    buf[n] = '\0';
    fclose(cf);
    return n > 0 && n < cap - 1 && strstr(buf, "audit:") == NULL;
}

/* wrk at conns connections for seconds; returns accesses/s, or -1 on failure. */
static double wrk_rate(int seconds, int conns, const char *lua, char *p99, size_t cap)
{
    static char out[65536];
    char c[8];
    char d[16];
    char rate[32];
    const char *wargv[] = {"/usr/bin/wrk",
                           "-t",
                           conns < 2 ? "1" : "2",
                           "-c",
                           c,
                           "-d",
                           d,
                           "--latency",
                           "-s",
                           lua,
                           BASE "/v1/orgs/dev/projects/demo/credentials/demo-api-key/access",
                           NULL};

    snprintf(c, sizeof(c), "%d", conns);
    snprintf(d, sizeof(d), "%ds", seconds);
    if (bench_capture(wargv, out, sizeof(out)) != 0) {
        fprintf(stderr, "api_bench: wrk failed:\n%s\n", out);
        return -1;
    }
    bench_field(out, "99%", p99, cap);
    return atof(bench_field(out, "Requests/sec:", rate, sizeof(rate)));
}

/*
 * Sealing running against sealing paused (audit.seal: false), alternated
 * three times at 64 connections in one run, each on a freshly started
 * cofferd. For the runs with sealing, the lag of every event sealed in the
 * run (checkpoint time minus event time) is read back from the database.
 */
static int seal_compare(int seconds, int conns, const char *lua, const char *log, const char *base)
{
    double on_sum = 0;
    double off_sum = 0;

    printf("api_bench seal: wrk, %d connection(s), keep-alive, %d s per run; sealing running "
           "(every 200 ms) against paused, alternated; %s\n\n",
           conns, seconds, bench_dir);
    printf("%-6s %-8s %12s %10s %14s %14s\n", "round", "sealing", "accesses/s", "p99",
           "lag p99 (ms)", "lag max (ms)");
    for (int round = 1; round <= 3; round++) {
        for (int on = 1; on >= 0; on--) {
            char p99[32] = "";
            char sql[512];
            double first =
                bench_owner_number("SELECT COALESCE(max(id), 0) FROM coffer.audit_events");
            double rate;

            bench_stop_server();
            set_sealing(base, on != 0);
            bench_start_server(log);
            rate = wrk_rate(seconds, conns, lua, p99, sizeof(p99));
            if (rate < 0) {
                return 1;
            }
            if (on) {
                double lag99;
                double lagmax;

                usleep(1500 * 1000); /* the last events of the run get their checkpoint */
                snprintf(sql, sizeof(sql),
                         "SELECT 1000 * percentile_cont(0.99) WITHIN GROUP (ORDER BY "
                         "extract(epoch FROM c.at - e.at)) FROM coffer.audit_events e JOIN "
                         "coffer.audit_checkpoints c ON e.id BETWEEN c.first_event AND "
                         "c.last_event WHERE e.id > %.0f",
                         first);
                lag99 = bench_owner_number(sql);
                snprintf(sql, sizeof(sql),
                         "SELECT 1000 * max(extract(epoch FROM c.at - e.at)) FROM "
                         "coffer.audit_events e JOIN coffer.audit_checkpoints c ON e.id BETWEEN "
                         "c.first_event AND c.last_event WHERE e.id > %.0f",
                         first);
                lagmax = bench_owner_number(sql);
                printf("%-6d %-8s %12.0f %10s %14.0f %14.0f\n", round, "running", rate, p99, lag99,
                       lagmax);
                on_sum += rate;
            } else {
                printf("%-6d %-8s %12.0f %10s %14s %14s\n", round, "paused", rate, p99, "-", "-");
                off_sum += rate;
            }
            fflush(stdout);
        }
    }
    printf("\nmean: running %.0f/s, paused %.0f/s: sealing costs %.1f%% of throughput\n",
           on_sum / 3, off_sum / 3, 100.0 * (off_sum - on_sum) / off_sum);
    return 0;
}

/* ---- Sweeping running against off ---- */

/* The core, opened in this process on the dev token and database, for set-up and rotations. */
struct core {
    struct coffer_p11 *p11;
    struct coffer_keys *k;
    struct coffer_store *st;
    struct coffer_org org;
    struct coffer_project proj;
};

static void core_open(struct core *c)
{
    struct coffer_p11_config pc = {.module = bench_env.module,
                                   .token_uri = bench_env.token_uri,
                                   .pin_source = bench_env.pin_source,
                                   .pool_size = 1};

    memset(c, 0, sizeof(*c));
    setenv("SOFTHSM2_CONF", bench_env.softhsm_conf, 1);
    if (coffer_p11_open(&pc, &c->p11) != COFFER_OK || coffer_keys_new(c->p11, &c->k) != COFFER_OK ||
        coffer_store_open(bench_env.db_app, &c->st) != COFFER_OK ||
        coffer_store_org_by_name(c->st, "dev", &c->org) != COFFER_OK ||
        coffer_store_project_by_name(c->st, &c->org.id, "demo", &c->proj) != COFFER_OK) {
        bench_die("opening the token and database");
    }
}

static void core_close(struct core *c)
{
    coffer_store_close(&c->st);
    coffer_keys_free(&c->k);
    coffer_p11_close(&c->p11);
}

/* Stores rows credentials that nobody reads, each with one 32-byte value. */
static void store_rows(struct core *c, int rows)
{
    for (int i = 0; i < rows; i++) {
        struct coffer_keyset *ks = NULL;
        struct coffer_keys_write wr;
        char name[64];
        char value[33];
        uint32_t version = 0;

        snprintf(name, sizeof(name), "sweep-bench-%06d", i);
        snprintf(value, sizeof(value), "sweep-bench-value-%014d", i);
        wr.org_id = &c->org.id;
        wr.project_id = &c->proj.id;
        wr.name = name;
        wr.type = "custom";
        wr.tier = "medium";
        if (coffer_keyset_new(&ks) != COFFER_OK ||
            coffer_keyset_add(ks, "value", value, strlen(value)) != COFFER_OK) {
            bench_die("building a credential");
        }
        wr.keys = ks;
        if (coffer_keys_cred_write(c->k, c->st, &wr, &version) != COFFER_OK) {
            bench_die("storing a credential");
        }
        coffer_keyset_free(&ks);
    }
}

/* keys.sweep_share of the sweep mode's runs with the sweeper; 0: the default. */
static int sweep_share;

/* Rewrites the configuration: the provisioned text, then the keys section. */
static void set_sweeping(const char *base, bool on)
{
    FILE *cf = fopen(bench_env.config, "w");
    char share[32] = "";

    if (sweep_share > 0) {
        snprintf(share, sizeof(share), "  sweep_share: %d\n", sweep_share);
    }
    if (cf == NULL ||
        fprintf(cf, "%skeys:\n  sweep: %s\n%s", base, on ? "true" : "false", share) < 0 ||
        fclose(cf) != 0) {
        bench_die("writing the configuration");
    }
}

static int64_t stale_rows(struct core *c)
{
    int64_t cv = 0;
    int64_t ok = 0;

    if (coffer_store_count_stale(c->st, &cv, &ok) != COFFER_OK) {
        bench_die("counting stale rows");
    }
    return cv;
}

/*
 * The sweeper running against off, alternated three times at conns
 * connections, each run on a freshly started cofferd right after a
 * rotation of the org key, so that every stored credential is stale when
 * the run starts. Also shows how many rows each run left stale.
 */
static int sweep_compare(int seconds, int conns, int rows, const char *lua, const char *log,
                         const char *base)
{
    struct core c;
    double on_sum = 0;
    double off_sum = 0;

    core_open(&c);
    printf("api_bench sweep: storing %d credentials...\n", rows);
    fflush(stdout);
    store_rows(&c, rows);
    printf("api_bench sweep: wrk, %d connection(s), keep-alive, %d s per run; after a rotation of "
           "the org key (%d stale credentials), the sweeper running (keys.sweep_share %d) "
           "against off, alternated; %s\n\n",
           conns, seconds, rows, sweep_share > 0 ? sweep_share : 10, bench_dir);
    printf("%-6s %-8s %12s %10s %14s %14s %10s\n", "round", "sweeper", "accesses/s", "p99",
           "stale before", "stale after", "rewraps/s");
    for (int round = 1; round <= 3; round++) {
        for (int on = 1; on >= 0; on--) {
            struct coffer_keys_created created;
            char p99[32] = "";
            int64_t before;
            int64_t after;
            double rate;

            bench_stop_server();
            if (coffer_keys_org_rotate(c.k, c.st, &c.org.id, &created) != COFFER_OK) {
                bench_die("rotating the org key");
            }
            before = stale_rows(&c);
            set_sweeping(base, on != 0);
            bench_start_server(log);
            rate = wrk_rate(seconds, conns, lua, p99, sizeof(p99));
            if (rate < 0) {
                core_close(&c);
                return 1;
            }
            after = stale_rows(&c);
            printf("%-6d %-8s %12.0f %10s %14lld %14lld %10.0f\n", round, on ? "running" : "off",
                   rate, p99, (long long)before, (long long)after,
                   (double)(before - after) / seconds);
            if (on) {
                on_sum += rate;
            } else {
                off_sum += rate;
            }
            fflush(stdout);
        }
    }
    printf("\nmean: running %.0f/s, off %.0f/s: the sweeper costs %.1f%% of throughput\n",
           on_sum / 3, off_sum / 3, 100.0 * (off_sum - on_sum) / off_sum);
    core_close(&c);
    return 0;
}

/* ---- Soak: a long mixed load, errors counted, memory sampled ---- */

/* The mixed load, per connection turn: writes, create-then-revoke, denials, accesses. */
static const char soak_lua[] =
    "local threads = {}\n"
    "function setup(thread)\n"
    "  thread:set('id', #threads + 1)\n"
    "  table.insert(threads, thread)\n"
    "end\n"
    /* Globals of each thread's state: done() reads them with thread:get. */
    "n, revokes, unexpected, granted, denied, writes, revoked = 0, {}, 0, 0, 0, 0, 0\n"
    "local base = '/v1/orgs/dev/projects/demo/credentials/'\n"
    "local agent = {['Content-Type'] = 'application/json', ['Authorization'] = 'Bearer %s'}\n"
    "local admin = {['Content-Type'] = 'application/json', ['Authorization'] = 'Bearer %s'}\n"
    "local value = '{\"type\":\"api_key\",\"tier\":\"medium\",\"keys\":"
    "{\"api_key\":\"soak-value-0123456789abcdef\"}}'\n"
    "local purpose = '{\"purpose\":\"deploy demo soak\"}'\n"
    "request = function()\n"
    "  n = n + 1\n"
    "  if #revokes > 0 then\n"
    "    local name = table.remove(revokes)\n"
    "    return wrk.format('POST', base .. name .. '/revoke', admin, "
    "'{\"reason\":\"soak\"}')\n"
    "  end\n"
    "  local k = n %% 25\n"
    "  if k == 0 then return wrk.format('PUT', base .. 'demo-api-key', admin, value) end\n"
    "  if k == 1 then return wrk.format('PUT', base .. 'soak-r-' .. id .. '-' .. n, admin, "
    "value) end\n"
    "  if k == 2 or k == 3 then return wrk.format('POST', base .. 'soak-missing/access', agent, "
    "purpose) end\n"
    "  return wrk.format('POST', base .. 'demo-api-key/access', agent, purpose)\n"
    "end\n"
    "response = function(status, headers, body)\n"
    "  local name = body:match('\"credential\":\"(soak%%-r%%-[^\"]+)\"')\n"
    "  if (status == 200 or status == 201) and body:find('\"keys\"', 1, true) then\n"
    "    granted = granted + 1\n"
    "  elseif status == 201 and name then\n"
    "    writes = writes + 1\n"
    "    table.insert(revokes, name)\n"
    "  elseif status == 200 and name then\n"
    "    revoked = revoked + 1\n"
    "  elseif (status == 200 or status == 201) and body:find('\"version\"', 1, true) then\n"
    "    writes = writes + 1\n"
    "  elseif status == 403 and body:find('permission_denied', 1, true) then\n"
    "    denied = denied + 1\n"
    "  else\n"
    "    unexpected = unexpected + 1\n"
    "    if unexpected <= 5 then io.stderr:write('unexpected: ' .. status .. ' ' .. "
    "body:sub(1, 200) .. '\\n') end\n"
    "  end\n"
    "end\n"
    "done = function(summary, latency, requests)\n"
    "  local t = {0, 0, 0, 0, 0}\n"
    "  for _, th in ipairs(threads) do\n"
    "    t[1] = t[1] + th:get('unexpected'); t[2] = t[2] + th:get('granted')\n"
    "    t[3] = t[3] + th:get('denied'); t[4] = t[4] + th:get('writes')\n"
    "    t[5] = t[5] + th:get('revoked')\n"
    "  end\n"
    "  io.write(string.format('soak: unexpected %%d granted %%d denied %%d writes %%d "
    "revoked %%d\\n', t[1], t[2], t[3], t[4], t[5]))\n"
    "end\n";

/*
 * One row of a rate table: wrk with lua against url at conns connections
 * for duration, and how much the number counted by count_sql grew meanwhile.
 * Returns false if wrk failed or any answer was not a success.
 */
static bool wrk_row(int conns, const char *duration, const char *lua, const char *url,
                    const char *count_sql)
{
    static char out[65536];
    char c[8];
    char t[8];
    char rate[32];
    char p50[32];
    char p99[32];
    char bad[32];
    double before = bench_owner_number(count_sql);
    double after;
    const char *wargv[] = {"/usr/bin/wrk", "-t",        t,    "-c", c,   "-d",
                           duration,       "--latency", "-s", lua,  url, NULL};

    snprintf(c, sizeof(c), "%d", conns);
    snprintf(t, sizeof(t), "%d", conns < 2 ? 1 : 2);
    if (bench_capture(wargv, out, sizeof(out)) != 0) {
        fprintf(stderr, "api_bench: wrk failed:\n%s\n", out);
        return false;
    }
    after = bench_owner_number(count_sql);
    bench_field(out, "Non-2xx or 3xx responses:", bad, sizeof(bad));
    printf("%-12d %12s %10s %10s %10s %10.0f\n", conns,
           bench_field(out, "Requests/sec:", rate, sizeof(rate)),
           bench_field(out, "50%", p50, sizeof(p50)), bench_field(out, "99%", p99, sizeof(p99)),
           bad[0] != '\0' ? bad : "0", after - before);
    return bad[0] == '\0' && before >= 0 && after >= 0;
}

/* ---- Writes: credentials created by PUT, every name new ---- */

static const char writes_lua[] =
    "local threads = {}\n"
    "function setup(thread)\n"
    "  thread:set('id', #threads + 1)\n"
    "  table.insert(threads, thread)\n"
    "end\n"
    "n = 0\n"
    "local head = {['Content-Type'] = 'application/json', ['Authorization'] = 'Bearer %s'}\n"
    "local value = '{\"type\":\"api_key\",\"tier\":\"medium\",\"keys\":"
    "{\"api_key\":\"write-value-0123456789abcdef\"}}'\n"
    "request = function()\n"
    "  n = n + 1\n"
    "  return wrk.format('PUT', '/v1/orgs/dev/projects/demo/credentials/w-%d-' .. id .. '-' .. n,"
    " head, value)\n"
    "end\n";

/* Creations/s by PUT at 1, 16 and 64 connections; each 201 must have its create event. */
static int writes(int seconds)
{
    static const int conns[] = {1, 16, 64};
    char lua[PATH_MAX];
    char admin_token[128];
    char duration[16];
    struct bench_reply r;
    int rc = 0;
    FILE *f;

    if (!bench_token("admin/writes", admin_token, sizeof(admin_token), &r)) {
        fprintf(stderr, "api_bench writes: admin token: %ld\n", r.status);
        return 1;
    }
    snprintf(duration, sizeof(duration), "%ds", seconds);
    printf("api_bench writes: wrk, %d s per run, 2 threads, keep-alive, PUT of a new credential "
           "(one key, tier medium) per request; %s\n\n",
           seconds, bench_dir);
    printf("%-12s %12s %10s %10s %10s %10s\n", "connections", "created/s", "p50", "p99", "non-2xx",
           "audited");
    for (size_t i = 0; i < sizeof(conns) / sizeof(conns[0]) && rc == 0; i++) {
        snprintf(lua, sizeof(lua), "%s/writes-%zu.lua", bench_dir, i);
        if ((f = fopen(lua, "w")) == NULL || fprintf(f, writes_lua, admin_token, (int)i) < 0 ||
            fclose(f) != 0) {
            bench_die("writing the writes script");
        }
        if (!wrk_row(conns[i], duration, lua, BASE,
                     "SELECT count(*) FROM coffer.audit_events WHERE action = 'create' AND "
                     "allowed")) {
            rc = 1;
        }
    }
    OPENSSL_cleanse(admin_token, sizeof(admin_token));
    return rc;
}

#define SOAK_SAMPLES_MAX 128 /* memory samples, one every 10 s */
#define SOAK_PROCS_MAX 16    /* cofferd's children followed */

/* The median of column col of rss over the samples [from, to). */
static long median_of(long (*rss)[SOAK_PROCS_MAX + 1], int from, int to, size_t col)
{
    long v[SOAK_SAMPLES_MAX];
    int n = 0;

    for (int s = from; s < to && n < SOAK_SAMPLES_MAX; s++) {
        long x = rss[s][col];
        int j = n++;

        while (j > 0 && v[j - 1] > x) {
            v[j] = v[j - 1];
            j--;
        }
        v[j] = x;
    }
    return n > 0 ? v[n / 2] : 0;
}

/* Resident memory of pid in KiB, or -1. */
static long rss_kib(pid_t pid)
{
    char path[64];
    char line[256];
    long kib = -1;
    FILE *f;

    snprintf(path, sizeof(path), "/proc/%ld/status", (long)pid);
    if ((f = fopen(path, "r")) == NULL) {
        return -1;
    }
    while (fgets(line, sizeof(line), f) != NULL) {
        if (sscanf(line, "VmRSS: %ld", &kib) == 1) {
            break;
        }
    }
    fclose(f);
    return kib;
}

/* The PIDs of cofferd's children (workers and background process), at most cap. */
static size_t server_children(pid_t *out, size_t cap)
{
    char path[64];
    char buf[4096];
    size_t n = 0;
    FILE *f;

    snprintf(path, sizeof(path), "/proc/%ld/task/%ld/children", (long)bench_server,
             (long)bench_server);
    if ((f = fopen(path, "r")) == NULL) {
        return 0;
    }
    if (fgets(buf, sizeof(buf), f) != NULL) {
        for (char *t = strtok(buf, " \n"); t != NULL && n < cap; t = strtok(NULL, " \n")) {
            out[n++] = (pid_t)atol(t);
        }
    }
    fclose(f);
    return n;
}

/*
 * The mixed load for seconds at conns connections (wrk with a script that
 * writes versions, creates and revokes credentials, is denied and
 * accesses), with the org key rotated every 30 s by this process; the
 * resident memory of every cofferd process is sampled every 10 s. Fails
 * on any unexpected answer, a replaced process, or memory that keeps
 * growing after the warm-up (the first half of the run, at least 60 s):
 * the median of the last quarter above the median of the third by more
 * than 4 MiB or 5%.
 */
static int soak(int seconds, int conns, const char *agent_token, const char *log)
{
    static long rss[SOAK_SAMPLES_MAX][SOAK_PROCS_MAX + 1];
    static char out[65536];
    pid_t kids[SOAK_PROCS_MAX];
    pid_t now[SOAK_PROCS_MAX];
    size_t n_kids = server_children(kids, SOAK_PROCS_MAX);
    char lua[PATH_MAX];
    char wout[PATH_MAX];
    char admin_token[128];
    char c[8];
    char d[16];
    struct bench_reply r;
    struct core core;
    pid_t wrk_pid = 0;
    int samples = 0;
    int warm;
    int status = 0;
    int fd;
    int rc = 0;
    FILE *f;
    const char *wargv[] = {"/usr/bin/wrk", "-t", "2", "-c", c,   "-d", d,
                           "--latency",    "-s", lua, BASE, NULL};
    const char *wenv[] = {"PATH=/usr/bin:/bin", NULL};

    if (!bench_token("admin/soak", admin_token, sizeof(admin_token), &r) || n_kids == 0) {
        fprintf(stderr, "api_bench soak: admin token or children: %ld\n", r.status);
        return 1;
    }
    snprintf(lua, sizeof(lua), "%s/soak.lua", bench_dir);
    if ((f = fopen(lua, "w")) == NULL || fprintf(f, soak_lua, agent_token, admin_token) < 0 ||
        fclose(f) != 0) {
        bench_die("writing the soak script");
    }
    OPENSSL_cleanse(admin_token, sizeof(admin_token));
    snprintf(c, sizeof(c), "%d", conns);
    snprintf(d, sizeof(d), "%ds", seconds);
    snprintf(wout, sizeof(wout), "%s/wrk-soak.out", bench_dir);
    core_open(&core);
    wrk_pid = bench_spawn(wargv, wenv, wout, O_TRUNC);
    printf("api_bench soak: %d s, %d connections, wrk with a mixed script (4%% writes of new "
           "versions, 4%% credentials created then revoked, 8%% denials, the rest accesses), the "
           "org key rotated every 30 s; %s\n\n",
           seconds, conns, bench_dir);
    printf("%6s", "t (s)");
    for (size_t i = 0; i < n_kids; i++) {
        printf("  %10s", "RSS KiB");
    }
    printf("   (cofferd's children: PIDs");
    for (size_t i = 0; i < n_kids; i++) {
        printf(" %ld", (long)kids[i]);
    }
    printf(")\n");
    for (int t = 10; t <= seconds && samples < SOAK_SAMPLES_MAX; t += 10) {
        (void)sleep(10);
        if (t % 30 == 0) {
            struct coffer_keys_created created;

            if (coffer_keys_org_rotate(core.k, core.st, &core.org.id, &created) != COFFER_OK) {
                fprintf(stderr, "api_bench soak: rotation failed: %s\n", coffer_err_detail());
                rc = 1;
            }
        }
        printf("%6d", t);
        for (size_t i = 0; i < n_kids; i++) {
            rss[samples][i] = rss_kib(kids[i]);
            printf("  %10ld", rss[samples][i]);
        }
        printf("\n");
        fflush(stdout);
        samples++;
    }
    if (coffer_proc_wait(wrk_pid, 120000, &status) != COFFER_OK) {
        bench_die("waiting for wrk");
    }
    core_close(&core);
    fd = open(wout, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t n = read(fd, out, sizeof(out) - 1);

        out[n > 0 ? n : 0] = '\0';
        close(fd);
    }
    {
        char rate[32];
        char p50[32];
        char p99[32];
        const char *line = strstr(out, "soak: ");
        long unexpected = line != NULL ? atol(line + strlen("soak: unexpected ")) : -1;

        printf("\n%s", line != NULL ? line : "soak: wrk printed no totals\n");
        printf("requests/s %s, p50 %s, p99 %s\n",
               bench_field(out, "Requests/sec:", rate, sizeof(rate)),
               bench_field(out, "50%", p50, sizeof(p50)),
               bench_field(out, "99%", p99, sizeof(p99)));
        if (unexpected != 0) {
            printf("FAIL: %ld unexpected answers (see %s)\n", unexpected, wout);
            rc = 1;
        }
    }
    if (server_children(now, SOAK_PROCS_MAX) != n_kids ||
        memcmp(now, kids, n_kids * sizeof(*kids))) {
        printf("FAIL: a cofferd process was replaced during the run (see %s)\n", log);
        rc = 1;
    }
    /*
     * Memory may rise and fall (a token context is renewed every so many
     * objects, and a renewal briefly holds both), but must not rise without
     * end. The first half of the run is the warm-up: at the default
     * renew_objects every process has renewed once by then. Flat means the
     * median of the last quarter stays within 4 MiB or 5% of the median of
     * the third.
     */
    warm = samples / 2 > 6 ? samples / 2 : 6;
    for (size_t i = 0; i < n_kids && samples >= warm + 2; i++) {
        int mid = warm + (samples - warm) / 2;
        long first = median_of(rss, warm, mid, i);
        long last = median_of(rss, mid, samples, i);

        printf("PID %ld: median RSS %ld KiB in the third quarter, %ld KiB in the last "
               "(%+ld KiB)\n",
               (long)kids[i], first, last, last - first);
        if (last - first > (first / 20 > 4096 ? first / 20 : 4096)) {
            printf("FAIL: PID %ld kept growing after the warm-up\n", (long)kids[i]);
            rc = 1;
        }
    }
    printf("%s\n", rc == 0 ? "soak: PASS" : "soak: FAIL");
    return rc;
}

int main(int argc, char **argv)
{
    int seconds = argc > 1 ? atoi(argv[1]) : 10;
    int n_workers = argc > 2 ? atoi(argv[2]) : 0;
    static const int conns[] = {1, 16, 64};
    char lua[PATH_MAX];
    char log[PATH_MAX];
    char out[65536];
    char duration[16];
    char token[128];
    struct bench_reply r;
    static char base_config[65536];
    bool seal_mode = argc > 3 && strcmp(argv[3], "seal") == 0;
    bool sweep_mode = argc > 3 && strcmp(argv[3], "sweep") == 0;
    bool soak_mode = argc > 3 && strcmp(argv[3], "soak") == 0;
    bool writes_mode = argc > 3 && strcmp(argv[3], "writes") == 0;

    if (seconds < 1 || seconds > 600 || n_workers < 0 || n_workers > 64) {
        fprintf(stderr, "usage: api_bench [SECONDS_PER_RUN [WORKERS [seal|sweep|soak|writes "
                        "[CONNECTIONS [ROWS]]]]]\n");
        return 2;
    }
    bench_setup("api_bench", "/tmp/coffer-api-bench.XXXXXX", LISTEN);
    snprintf(log, sizeof(log), "%s/cofferd.log", bench_dir);
    if (n_workers > 0) {
        FILE *cf = fopen(bench_env.config, "a");

        if (cf == NULL || fprintf(cf, "workers: %d\n", n_workers) < 0 || fclose(cf) != 0) {
            bench_die("setting the worker count");
        }
    }
    if (!read_config(base_config, sizeof(base_config))) {
        bench_die("reading the configuration");
    }
    bench_start_server(log);
    bench_admin("PUT", "/v1/orgs/dev/projects/demo/credentials/demo-api-key",
                "{\"type\":\"api_key\",\"tier\":\"medium\",\"keys\":{\"api_key\":"
                "\"bench-value-0123456789abcdef\"}}",
                &r);
    if (r.status != 201 && r.status != 200) {
        fprintf(stderr, "api_bench: storing the credential: %ld %s\n", r.status, r.body);
        return 1;
    }
    if (!bench_token("agent/deployer/bench-1", token, sizeof(token), &r)) {
        fprintf(stderr, "api_bench: creating a bearer token: %ld %s\n", r.status, r.body);
        return 1;
    }
    snprintf(lua, sizeof(lua), "%s/access.lua", bench_dir);
    bench_write_access_lua(lua, token);
    if (soak_mode) {
        int n_conns = argc > 4 ? atoi(argv[4]) : 64;
        int rc = n_conns >= 1 && n_conns <= 1024 ? soak(seconds, n_conns, token, log) : 2;

        OPENSSL_cleanse(token, sizeof(token));
        bench_finish(rc == 0);
        curl_global_cleanup();
        return rc;
    }
    OPENSSL_cleanse(token, sizeof(token));
    if (writes_mode) {
        int rc = writes(seconds);

        bench_finish(rc == 0);
        curl_global_cleanup();
        return rc;
    }
    if (seal_mode || sweep_mode) {
        int n_conns = argc > 4 ? atoi(argv[4]) : 64;
        int rows = argc > 5 ? atoi(argv[5]) : 20000;
        int rc = 2;

        sweep_share = argc > 6 ? atoi(argv[6]) : 0;
        if (n_conns >= 1 && n_conns <= 1024 && rows >= 1 && rows <= 10000000 && sweep_share >= 0 &&
            sweep_share <= 100) {
            rc = seal_mode ? seal_compare(seconds, n_conns, lua, log, base_config)
                           : sweep_compare(seconds, n_conns, rows, lua, log, base_config);
        }

        bench_finish(true);
        curl_global_cleanup();
        return rc;
    }
    printf("api_bench: wrk, %d s per run, 2 threads, keep-alive; cofferd with %s worker%s; %s\n\n",
           seconds, n_workers > 0 ? argv[2] : "one per core", n_workers == 1 ? "" : "s", bench_dir);
    printf("%-12s %12s %10s %10s %10s %10s\n", "connections", "accesses/s", "p50", "p99", "non-2xx",
           "audited");
    snprintf(duration, sizeof(duration), "%ds", seconds);
    for (size_t i = 0; i < sizeof(conns) / sizeof(conns[0]); i++) {
        if (!wrk_row(conns[i], duration, lua,
                     BASE "/v1/orgs/dev/projects/demo/credentials/demo-api-key/access",
                     "SELECT count(*) FROM coffer.audit_events WHERE action = 'access' AND "
                     "reason = 'granted'")) {
            return 1;
        }
    }
    bench_finish(true);
    {
        const char *cargv[] = {BIN_DIR "/core_bench", "3", "reads", NULL};
        const char *line;

        printf("\ncore only (core_bench 3 reads, same machine, same run):\n");
        if (bench_capture(cargv, out, sizeof(out)) != 0) {
            fprintf(stderr, "api_bench: core_bench failed:\n%s\n", out);
            return 1;
        }
        for (line = strstr(out, "\n1 process"); line != NULL && *line != '\0';) {
            const char *end = strchr(line + 1, '\n');

            if (strstr(line, "one at a time") != NULL &&
                (end == NULL || strstr(line, "one at a time") < end)) {
                printf("%.*s\n", (int)(end != NULL ? end - line - 1 : (long)strlen(line)),
                       line + 1);
            }
            line = end;
        }
    }
    curl_global_cleanup();
    return 0;
}

/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Faults of processes, of the token and of clients, against a real cofferd
 * (two workers, keys.sweep on) with this test's token and database:
 *
 *   - the token failing: cofferd loads tests/faults/p11_fault.c, a PKCS#11
 *     module that forwards to SoftHSMv2 and answers CKR_DEVICE_ERROR to
 *     every call while a flag file exists. Meanwhile a write is answered 503
 *     token_unavailable, an access too (only an agent holding a grant gets
 *     that far) and is audited so, and health and metadata are
 *     served; once the flag is gone the same workers serve values again;
 *   - a worker killed with SIGKILL while it holds a brokered call to a slow
 *     upstream: that call's client gets no answer, the supervisor starts
 *     another worker, and requests on other connections all succeed while
 *     the call hangs, while the worker is replaced and after;
 *   - the whole cofferd (supervisor, workers, background process: its own
 *     process group) killed with SIGKILL during credential writes from
 *     several threads, and again while the background process sweeps after
 *     an org key rotation: after a restart every acknowledged write reads
 *     back with its exact value, every credential's current version exists,
 *     decrypts and has its create event, and the sweep finishes;
 *   - slow and stalled clients: TLS connections that trickle a request a
 *     byte at a time or say nothing after the handshake, and plain TCP
 *     connections that never finish a TLS handshake, are all closed once
 *     limits.request_timeout_ms has passed since they connected, while an
 *     agent's accesses on other connections stay fast.
 *
 * No stored value appears in the server's output or in any audit row.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "expect.h"
#include "world.h"

#include "coffer/dev.h"
#include "coffer/mem.h"
#include "server/proc.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define CREDS "/v1/orgs/dev/projects/demo/credentials"
#define PURPOSE "{\"purpose\":\"deploy during a fault\"}"

#define REQUEST_TIMEOUT_MS 2000
#define WORKERS 2
#define LOAD_THREADS 3
#define WRITERS 3
#define BULK_ROWS 400
#define SLOW_TLS 40
#define SLOW_TCP 20
#define SWEPT_WITHIN_MS 30000

static struct world w;
static struct coffer_dev_tls tls;
static struct coffer_dev_tls up_tls;
static char dir[] = "/tmp/coffer-fault-proc.XXXXXX";
static char up_dir[PATH_MAX];
static char config[PATH_MAX];
static char log_path[PATH_MAX];
static char up_log[PATH_MAX];
static char flag[PATH_MAX];
static char env_module[PATH_MAX + 32];
static char env_flag[PATH_MAX + 32];
static struct https_target target;
static unsigned short up_port;
static pid_t server; /* the supervisor, leader of its own process group */
static pid_t upstream;
static char tok_value[96]; /* the values of tok and api, as value_of gives them */
static char api_value[96];

/* ---- Small tools ------------------------------------------------------------------------- */

static long now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) != 0) {
    }
}

/* The value stored under a credential name: distinct per name, never in any output. */
static void value_of(const char *name, char *out, size_t cap)
{
    unsigned h = 2166136261u;

    for (const char *p = name; *p != '\0'; p++) {
        h = (h ^ (unsigned char)*p) * 16777619u;
    }
    snprintf(out, cap, "fault-value-%s-%08x", name, h);
}

static void expect(const char *method, const char *path, const char *body, const char *who,
                   long status, const char *needle)
{
    expect_answer(&target, method, path, body, who, NULL, status, needle, NULL);
}

/* Stores value under name; with grant, the deployer may access it (not for api: the policy's). */
static void put_value(const char *name, const char *value, bool grant)
{
    static char body[512];
    char path[160];
    static struct https_reply r;

    snprintf(path, sizeof(path), CREDS "/%s", name);
    snprintf(body, sizeof(body),
             "{\"type\":\"api_key\",\"tier\":\"medium\",\"keys\":{\"api_key\":\"%s\"}%s}", value,
             grant ? ",\"grants\":[{\"agent_type\":\"deployer\"}]" : "");
    expect_request(&target, "PUT", path, body, "admin", NULL, &r);
    if (r.status != 201 && r.status != 200) {
        fail_msg("PUT %s: %ld", path, r.status);
    }
}

/* An access of name by the agent is granted and carries value. */
static void access_gives(const char *name, const char *value)
{
    static struct https_reply r;
    char path[160];

    snprintf(path, sizeof(path), CREDS "/%s/access", name);
    expect_request(&target, "POST", path, PURPOSE, "agent", NULL, &r);
    if (r.status != 200 || strstr(r.body, value) == NULL) {
        fail_msg("access of %s: %ld (want 200 with its value)", name, r.status);
    }
}

/* ---- Processes ---------------------------------------------------------------------------- */

/* Fields of /proc/PID/stat after the command name: state, parent, process group. */
static bool proc_stat(pid_t pid, char *comm, size_t cap, char *state, pid_t *ppid, pid_t *pgrp)
{
    char path[64];
    char buf[512];
    FILE *f;
    char *open_paren;
    char *close_paren;
    long pp = 0;
    long pg = 0;
    size_t n;

    snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
    f = fopen(path, "r");
    if (f == NULL) {
        return false;
    }
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    open_paren = strchr(buf, '(');
    close_paren = strrchr(buf, ')');
    if (open_paren == NULL || close_paren == NULL || close_paren < open_paren ||
        sscanf(close_paren + 1, " %c %ld %ld", state, &pp, &pg) != 3) {
        return false;
    }
    snprintf(comm, cap, "%.*s", (int)(close_paren - open_paren - 1), open_paren + 1);
    *ppid = (pid_t)pp;
    *pgrp = (pid_t)pg;
    return true;
}

/*
 * The live processes (zombies left out) whose parent is parent (if > 0) or
 * whose process group is pgrp (if > 0), and whose name is comm (if not
 * NULL): up to cap PIDs into out. Returns how many there are.
 */
static size_t find_procs(pid_t parent, pid_t pgrp, const char *comm, pid_t *out, size_t cap)
{
    DIR *d = opendir("/proc");
    struct dirent *e;
    size_t n = 0;

    assert_non_null(d);
    while ((e = readdir(d)) != NULL) {
        char name[64];
        char state;
        pid_t pid;
        pid_t pp;
        pid_t pg;

        if (!isdigit((unsigned char)e->d_name[0])) {
            continue;
        }
        pid = (pid_t)atol(e->d_name);
        if (!proc_stat(pid, name, sizeof(name), &state, &pp, &pg) || state == 'Z' ||
            (parent > 0 && pp != parent) || (pgrp > 0 && pg != pgrp) ||
            (comm != NULL && strcmp(name, comm) != 0)) {
            continue;
        }
        if (n < cap) {
            out[n] = pid;
        }
        n++;
    }
    closedir(d);
    return n;
}

static size_t workers(pid_t *out, size_t cap)
{
    return find_procs(server, 0, "cofferd-worker", out, cap);
}

/* The worker that has a TCP connection open to the upstream's port, or 0. */
static pid_t worker_calling_upstream(void)
{
    pid_t ws[8];
    size_t n = workers(ws, 8);
    char line[512];
    unsigned long inodes[16];
    size_t n_inodes = 0;
    FILE *f = fopen("/proc/net/tcp", "r");

    assert_non_null(f);
    while (fgets(line, sizeof(line), f) != NULL && n_inodes < 16) {
        unsigned rem_port = 0;
        unsigned st = 0;
        unsigned long inode = 0;

        /* sl local rem st tx:rx tr:when retrnsmt uid timeout inode */
        if (sscanf(line, " %*d: %*x:%*x %*x:%x %x %*x:%*x %*x:%*x %*x %*u %*u %lu", &rem_port, &st,
                   &inode) == 3 &&
            rem_port == up_port && st == 0x01 && inode != 0) {
            inodes[n_inodes++] = inode;
        }
    }
    fclose(f);
    for (size_t i = 0; i < n && i < 8; i++) {
        char fd_dir[64];
        DIR *d;
        struct dirent *e;

        snprintf(fd_dir, sizeof(fd_dir), "/proc/%ld/fd", (long)ws[i]);
        d = opendir(fd_dir);
        if (d == NULL) {
            continue;
        }
        while ((e = readdir(d)) != NULL) {
            char link_path[PATH_MAX];
            char target_name[128];
            ssize_t len;

            snprintf(link_path, sizeof(link_path), "%s/%s", fd_dir, e->d_name);
            len = readlink(link_path, target_name, sizeof(target_name) - 1);
            if (len <= 0) {
                continue;
            }
            target_name[len] = '\0';
            for (size_t k = 0; k < n_inodes; k++) {
                char want[64];

                snprintf(want, sizeof(want), "socket:[%lu]", inodes[k]);
                if (strcmp(target_name, want) == 0) {
                    closedir(d);
                    return ws[i];
                }
            }
        }
        closedir(d);
    }
    return 0;
}

static int write_config(unsigned short port)
{
    struct harness h = w.h;

    /* cofferd loads the failing module, which loads this test's real one. */
    h.p11.module = FAULT_MODULE;
    return https_write_config(config, port, &tls, &h,
                              "workers: %d\n"
                              "log: info\n"
                              "limits:\n  request_timeout_ms: %d\n"
                              "broker:\n  ca_file: %s\n  connect_timeout_ms: 2000\n"
                              "  timeout_ms: 10000\n"
                              "keys:\n  sweep: true\n  sweep_batch: 10\n  sweep_interval_ms: 30\n"
                              "  sweep_idle_ms: 200\n",
                              WORKERS, REQUEST_TIMEOUT_MS, up_tls.ca);
}

/* How often needle occurs in the server's log. */
static int log_count(const char *needle)
{
    static char buf[1 << 22];
    int n = 0;

    https_read_log(log_path, buf, sizeof(buf));
    for (const char *p = strstr(buf, needle); p != NULL; p = strstr(p + 1, needle)) {
        n++;
    }
    return n;
}

/* Starts cofferd in a process group of its own and waits for its background process to work. */
static void start_server(void)
{
    const char *extra[] = {env_module, env_flag, NULL};
    int background = log_count(" sweeping keys in steps");
    unsigned short port = https_free_port();

    https_target_dev(&target, port, &tls);
    assert_int_equal(write_config(port), 0);
    assert_int_equal(https_server_start_ex(COFFERD_BIN, config, w.h.env.softhsm_conf, log_path,
                                           &target, extra, true, &server),
                     0);
    /* Every process has logged in to the token before anything here kills one. */
    for (int i = 0; i < 100 && log_count(" sweeping keys in steps") == background; i++) {
        sleep_ms(50);
    }
    assert_true(log_count(" sweeping keys in steps") > background);
}

/* SIGKILL to cofferd's whole process group; returns once none of its processes is left. */
static void kill_group(void)
{
    pid_t left[16];
    int status;
    pid_t group = server;

    assert_true(group > 0);
    assert_int_equal(kill(-group, SIGKILL), 0);
    assert_int_equal(coffer_proc_wait(group, 10000, &status), COFFER_OK);
    server = 0;
    for (int i = 0; i < 200 && find_procs(0, group, NULL, left, 16) > 0; i++) {
        sleep_ms(25);
    }
    assert_int_equal(find_procs(0, group, NULL, left, 16), 0);
}

/* Stops cofferd with SIGTERM (it stops its own children), or kills its group if it will not. */
static void stop_server(void)
{
    if (server > 0 && https_server_stop(&server, SIGTERM, 30000) != 0 && server > 0) {
        (void)kill(-server, SIGKILL);
        https_process_stop(&server);
    }
}

/* ---- The token failing ---------------------------------------------------------------------- */

static void set_flag(bool on)
{
    if (on) {
        int fd = open(flag, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);

        assert_true(fd >= 0);
        close(fd);
    } else {
        assert_true(unlink(flag) == 0 || errno == ENOENT);
    }
}

static void test_token_failing(void **state)
{
    static struct https_reply r;
    pid_t before[8];
    pid_t after[8];
    char value[64];
    long m;

    (void)state;
    put_value("tok", tok_value, true);
    for (int i = 0; i < 4; i++) {
        access_gives("tok", tok_value);
    }
    assert_int_equal(workers(before, 8), WORKERS);

    set_flag(true);
    m = world_audit_mark(&w);
    /* Each request opens a connection of its own, so both workers are reached. */
    for (int i = 0; i < 6; i++) {
        expect_request(&target, "POST", CREDS "/tok/access", PURPOSE, "agent", NULL, &r);
        assert_null(strstr(r.body, tok_value));
        if (r.status != 503 || strstr(r.body, "\"error\":\"token_unavailable\"") == NULL) {
            fail_msg("access with the token failing: %ld (want 503 token_unavailable)", r.status);
        }
    }
    assert_true(world_reasons_are(&w, m,
                                  "access/false/token_unavailable,access/false/token_unavailable,"
                                  "access/false/token_unavailable,access/false/token_unavailable,"
                                  "access/false/token_unavailable,access/false/token_unavailable"));
    value_of("tok2", value, sizeof(value));
    for (int i = 0; i < 4; i++) {
        static char body[512];

        snprintf(body, sizeof(body),
                 "{\"type\":\"api_key\",\"tier\":\"medium\",\"keys\":{\"api_key\":\"%s\"},"
                 "\"grants\":[{\"agent_type\":\"deployer\"}]}",
                 value);
        expect("PUT", CREDS "/tok2", body, "admin", 503, "\"error\":\"token_unavailable\"");
    }
    assert_true(
        world_sql_is(&w, "SELECT count(*) FROM coffer.credentials WHERE name = 'tok2'", "0"));
    /* What needs no token goes on. */
    for (int i = 0; i < 4; i++) {
        expect("GET", "/v1/health", NULL, NULL, 200, "\"status\":\"ok\"");
        expect("GET", CREDS "/tok", NULL, "admin", 200, "\"name\":\"tok\"");
        expect("GET", CREDS, NULL, "admin", 200, "\"name\":\"tok\"");
    }

    set_flag(false);
    for (int i = 0; i < 6; i++) {
        access_gives("tok", tok_value);
    }
    put_value("tok2", value, true);
    for (int i = 0; i < 4; i++) {
        access_gives("tok2", value);
    }
    /* Recovered without a restart: the same workers serve. */
    assert_int_equal(workers(after, 8), WORKERS);
    for (int i = 0; i < WORKERS; i++) {
        assert_true(after[i] == before[0] || after[i] == before[1]);
    }
}

/* ---- A worker killed mid-request --------------------------------------------------------------
 */

struct load {
    int index;
    atomic_bool stop;
    long ok;
    long failed;
    char first_failure[256];
};

static pthread_t load_threads[LOAD_THREADS];
static struct load loads[LOAD_THREADS];
static int load_running;

/* Health and accesses of tok, each on a new connection, until told to stop. */
static void *load_main(void *arg)
{
    static struct https_reply replies[LOAD_THREADS];
    struct load *l = arg;
    struct https_reply *r = &replies[l->index];

    for (long i = 0; !atomic_load(&l->stop); i++) {
        bool is_access = (i + l->index) % 2 == 0;
        CURLcode rc;
        bool ok;

        if (is_access) {
            rc = https_request(&target, "POST", CREDS "/tok/access", PURPOSE, tls.agent_cert,
                               tls.agent_key, NULL, r);
            ok = rc == CURLE_OK && r->status == 200 && strstr(r->body, tok_value) != NULL;
        } else {
            rc = https_request(&target, "GET", "/v1/health", NULL, NULL, NULL, NULL, r);
            ok = rc == CURLE_OK && r->status == 200;
        }
        if (ok) {
            l->ok++;
        } else if (l->failed++ == 0) {
            snprintf(l->first_failure, sizeof(l->first_failure), "%s: %s, status %ld",
                     is_access ? "access" : "health", curl_easy_strerror(rc),
                     rc == CURLE_OK ? r->status : 0L);
        }
    }
    return NULL;
}

static void load_start(void)
{
    for (int t = 0; t < LOAD_THREADS; t++) {
        memset(&loads[t], 0, sizeof(loads[t]));
        loads[t].index = t;
        atomic_store(&loads[t].stop, false);
        assert_int_equal(pthread_create(&load_threads[t], NULL, load_main, &loads[t]), 0);
        load_running++;
    }
}

static void load_join(void)
{
    for (int t = 0; t < LOAD_THREADS; t++) {
        atomic_store(&loads[t].stop, true);
    }
    for (; load_running > 0; load_running--) {
        (void)pthread_join(load_threads[load_running - 1], NULL);
    }
}

/* The brokered call held in flight by the slow upstream. */
struct slow_call {
    CURLcode rc;
    long status;
};

static void *slow_call_main(void *arg)
{
    static struct https_reply r;
    static char body[512];
    struct slow_call *c = arg;

    snprintf(body, sizeof(body),
             "{\"purpose\":\"check the balance\",\"request\":{\"method\":\"GET\",\"url\":"
             "\"https://127.0.0.1:%u/allowed/slow\"}}",
             (unsigned)up_port);
    c->rc = https_request(&target, "POST", CREDS "/api/use", body, tls.agent_cert, tls.agent_key,
                          NULL, &r);
    c->status = c->rc == CURLE_OK ? r.status : 0;
    return NULL;
}

static void test_worker_killed_mid_request(void **state)
{
    static struct slow_call call;
    pthread_t caller;
    pid_t victim = 0;
    pid_t now[8];
    long ok = 0;
    int replaced_seen = 0;
    int killed_before = log_count("killed by signal 9");

    (void)state;
    put_value("api", api_value, false);
    assert_int_equal(pthread_create(&caller, NULL, slow_call_main, &call), 0);
    /* The upstream holds the call for 3 s: find the worker making it. */
    for (int i = 0; i < 100 && victim == 0; i++) {
        sleep_ms(20);
        victim = worker_calling_upstream();
    }
    if (victim == 0) {
        (void)pthread_join(caller, NULL);
        fail_msg("no worker was seen calling the upstream");
    }
    /*
     * Clients start now: the worker that holds the call no longer takes
     * connections, so every request of theirs is served by the other worker
     * or waits in the listening socket for the replacement.
     */
    load_start();
    sleep_ms(400);
    assert_int_equal(kill(victim, SIGKILL), 0);
    for (int i = 0; i < 200; i++) {
        size_t n = workers(now, 8);

        if (n == WORKERS && now[0] != victim && now[1] != victim) {
            replaced_seen = 1;
            break;
        }
        sleep_ms(50);
    }
    assert_true(replaced_seen);
    /* The clients go on for a while against the replacement too. */
    sleep_ms(1500);
    load_join();
    assert_int_equal(pthread_join(caller, NULL), 0);
    if (call.rc == CURLE_OK) {
        fail_msg("the call on the killed worker was answered %ld", call.status);
    }
    for (int t = 0; t < LOAD_THREADS; t++) {
        if (loads[t].failed > 0) {
            fail_msg("client %d: %ld of %ld requests failed; the first: %s", t, loads[t].failed,
                     loads[t].failed + loads[t].ok, loads[t].first_failure);
        }
        ok += loads[t].ok;
    }
    print_message("worker %ld killed mid-call; %ld requests on other connections, none failed\n",
                  (long)victim, ok);
    assert_true(ok >= 30);
    assert_true(log_count("killed by signal 9") > killed_before);
    access_gives("tok", tok_value);
}

/* ---- cofferd killed during writes, rotation and sweeps ----------------------------------------
 */

#define WRITES_MAX 4096

struct writer {
    int index;
    char prefix[16];
    atomic_bool stop;
    int attempted;
    bool acked[WRITES_MAX];
    int n_acked;
};

static pthread_t writer_threads[WRITERS];
static struct writer writers[WRITERS];
static int writers_running;

/* PUTs new credentials <prefix>-<index>-<n> one after another, noting which were acknowledged. */
static void *writer_main(void *arg)
{
    static struct https_reply replies[WRITERS];
    struct writer *wr = arg;
    struct https_reply *r = &replies[wr->index];

    while (!atomic_load(&wr->stop) && wr->attempted < WRITES_MAX) {
        char name[48];
        char value[96];
        char path[160];
        char body[512];
        int n = wr->attempted++;
        CURLcode rc;

        snprintf(name, sizeof(name), "%s-%d-%04d", wr->prefix, wr->index, n);
        value_of(name, value, sizeof(value));
        snprintf(path, sizeof(path), CREDS "/%s", name);
        snprintf(body, sizeof(body),
                 "{\"type\":\"api_key\",\"tier\":\"medium\",\"keys\":{\"api_key\":\"%s\"}}", value);
        rc = https_request(&target, "PUT", path, body, tls.admin_cert, tls.admin_key, NULL, r);
        if (rc == CURLE_OK && r->status == 201) {
            wr->acked[n] = true;
            wr->n_acked++;
        } else if (rc != CURLE_OK) {
            /* The server is gone: nothing more can be acknowledged; a short pause. */
            sleep_ms(20);
        }
    }
    return NULL;
}

static void writers_start(const char *prefix)
{
    for (int t = 0; t < WRITERS; t++) {
        memset(&writers[t], 0, sizeof(writers[t]));
        writers[t].index = t;
        snprintf(writers[t].prefix, sizeof(writers[t].prefix), "%s", prefix);
        atomic_store(&writers[t].stop, false);
        assert_int_equal(pthread_create(&writer_threads[t], NULL, writer_main, &writers[t]), 0);
        writers_running++;
    }
}

static void writers_join(void)
{
    for (int t = 0; t < WRITERS; t++) {
        atomic_store(&writers[t].stop, true);
    }
    for (; writers_running > 0; writers_running--) {
        (void)pthread_join(writer_threads[writers_running - 1], NULL);
    }
}

static int acked_total(void)
{
    int n = 0;

    for (int t = 0; t < WRITERS; t++) {
        n += writers[t].n_acked;
    }
    return n;
}

/* Reads name through the keys module (this process's own token login) and checks its value. */
static void check_read(struct coffer_project *proj, const char *name)
{
    struct coffer_keyset *ks = NULL;
    struct coffer_keys_read_info info;
    const struct coffer_secret *s;
    char value[96];
    enum coffer_err r;

    value_of(name, value, sizeof(value));
    r = coffer_keys_cred_read(w.k, w.st, &w.org.id, &proj->id, name, 0, &ks, &info);
    if (r != COFFER_OK) {
        fail_msg("read %s: %s: %s", name, coffer_err_str(r), coffer_err_detail());
    }
    s = coffer_keyset_get(ks, "api_key");
    assert_non_null(s);
    if (coffer_secret_len(s) != strlen(value) ||
        !coffer_mem_equal(coffer_secret_view(s).data, value, strlen(value))) {
        coffer_keyset_free(&ks);
        fail_msg("%s does not read back as the value written", name);
    }
    coffer_keyset_free(&ks);
}

static struct coffer_project demo;

/*
 * Nothing is half-written among the credentials whose names are LIKE like:
 * every one has its current version row and, unless this process wrote it
 * (bulk-*, through the keys module, which audits nothing), the create event
 * of that version; every one (acknowledged or not) reads back with the value
 * its writer sent. Every acknowledged write is among them. Returns the
 * number of credentials checked.
 */
static long check_all_written(const char *like)
{
    char sql[512];
    char *names;
    long n = 0;

    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM coffer.credentials c WHERE c.name LIKE '%s' AND NOT EXISTS "
             "(SELECT 1 FROM coffer.credential_versions v WHERE v.credential_id = c.id AND "
             "v.version = c.current_version)",
             like);
    assert_true(world_sql_is(&w, sql, "0"));
    snprintf(sql, sizeof(sql),
             "SELECT count(*) FROM coffer.credentials c WHERE c.name LIKE '%s' AND c.name NOT "
             "LIKE 'bulk-%%' AND NOT EXISTS "
             "(SELECT 1 FROM coffer.audit_events e WHERE e.action = 'create' AND e.allowed AND "
             "e.target_org = 'dev' AND e.project = 'demo' AND e.credential = c.name AND "
             "e.version = c.current_version)",
             like);
    assert_true(world_sql_is(&w, sql, "0"));
    for (int t = 0; t < WRITERS; t++) {
        for (int i = 0; i < writers[t].attempted; i++) {
            char name[48];

            if (!writers[t].acked[i]) {
                continue;
            }
            snprintf(name, sizeof(name), "%s-%d-%04d", writers[t].prefix, t, i);
            snprintf(sql, sizeof(sql),
                     "SELECT count(*) FROM coffer.credentials WHERE name = '%s' AND "
                     "current_version = 1",
                     name);
            assert_true(world_sql_is(&w, sql, "1"));
        }
    }
    world_reopen_token(&w);
    snprintf(sql, sizeof(sql),
             "SELECT coalesce(string_agg(name, ',' ORDER BY name), '') FROM coffer.credentials "
             "WHERE name LIKE '%s'",
             like);
    names = world_sql_value(&w, sql);
    assert_non_null(names);
    for (char *save = NULL, *name = strtok_r(names, ",", &save); name != NULL;
         name = strtok_r(NULL, ",", &save)) {
        check_read(&demo, name);
        n++;
    }
    free(names);
    return n;
}

static void stale(int64_t *cv, int64_t *ok)
{
    if (coffer_store_count_stale(w.st, cv, ok) != COFFER_OK) {
        fail_msg("counting stale rows: %s", coffer_err_detail());
    }
}

static void test_killed_during_writes(void **state)
{
    long t0;
    int acked;
    long checked;

    (void)state;
    writers_start("wa");
    t0 = now_ms();
    while (acked_total() < 60 && now_ms() - t0 < 10000) {
        sleep_ms(20);
    }
    assert_true(acked_total() >= 60);
    kill_group();
    writers_join();
    acked = acked_total();
    start_server();
    checked = check_all_written("wa-%");
    print_message("killed during writes: %d acknowledged, %ld stored and whole\n", acked, checked);
    assert_true(checked >= acked);
    /* The server after the restart serves what was written before. */
    access_gives("tok", tok_value);
}

static void test_killed_during_rotation_and_sweep(void **state)
{
    struct coffer_keys_created created;
    int64_t cv = 0;
    int64_t ok = 0;
    int64_t start_cv;
    long t0;
    long checked;
    int acked;

    (void)state;
    /* Rows enough for a sweep that takes seconds at 10 rows a step. */
    for (int i = 0; i < BULK_ROWS; i++) {
        const char *n[] = {"api_key"};
        char name[48];
        char value[96];
        const char *v[] = {value};
        size_t l[1];

        snprintf(name, sizeof(name), "bulk-%04d", i);
        value_of(name, value, sizeof(value));
        l[0] = strlen(value);
        (void)world_put(&w, &w.org, &demo, name, 1, n, v, l);
    }
    writers_start("wb");
    sleep_ms(300);
    if (coffer_keys_org_rotate(w.k, w.st, &w.org.id, &created) != COFFER_OK) {
        fail_msg("rotating the org key: %s", coffer_err_detail());
    }
    stale(&start_cv, &ok);
    assert_true(start_cv >= BULK_ROWS);
    /* Killed once the background process has moved some rows, and writes go on. */
    t0 = now_ms();
    do {
        sleep_ms(20);
        stale(&cv, &ok);
    } while (cv > start_cv - 30 && now_ms() - t0 < 15000);
    assert_true(cv <= start_cv - 30);
    kill_group();
    writers_join();
    stale(&cv, &ok);
    print_message("killed mid-sweep: %lld of %lld rows still stale\n", (long long)cv,
                  (long long)start_cv);
    assert_true(cv > 0);
    acked = acked_total();

    start_server();
    t0 = now_ms();
    do {
        sleep_ms(100);
        stale(&cv, &ok);
    } while ((cv != 0 || ok != 0) && now_ms() - t0 < SWEPT_WITHIN_MS);
    assert_int_equal(cv, 0);
    assert_int_equal(ok, 0);
    checked = check_all_written("%");
    print_message("after the restart: swept, %d acknowledged writes, %ld credentials whole\n",
                  acked, checked);
    assert_true(checked >= BULK_ROWS + acked);
}

/* ---- Slow and stalled clients ------------------------------------------------------------------
 */

struct slow_conn {
    int fd;
    SSL *ssl;     /* NULL: plain TCP, no TLS handshake */
    bool trickle; /* sends one byte per round; otherwise silent */
    long opened;  /* ms */
    long closed;  /* ms, 0 while open */
};

static const char trickled_request[] =
    "POST /v1/orgs/dev/projects/demo/credentials/tok/access HTTP/1.1\r\n"
    "Host: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 36\r\n\r\n" PURPOSE;
/* A TLS record header announcing 512 bytes of handshake that never all come. */
static const unsigned char trickled_record[] = {0x16, 0x03, 0x01, 0x02, 0x00};

static int tcp_connect(unsigned short port)
{
    struct sockaddr_in a;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    assert_true(fd >= 0);
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(port);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    return fd;
}

/* Whether the server closed c: an end of file or a reset; data it sent is read and dropped. */
static bool peer_closed(struct slow_conn *c)
{
    char buf[4096];

    for (;;) {
        ssize_t n = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);

        if (n == 0) {
            return true;
        }
        if (n < 0) {
            return errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR;
        }
    }
}

/* One more byte from a trickling connection; false if the connection is gone. */
static bool trickle_one(struct slow_conn *c, size_t *sent)
{
    if (c->ssl != NULL) {
        if (*sent >= sizeof(trickled_request) - 1) {
            return true;
        }
        return SSL_write(c->ssl, trickled_request + (*sent)++, 1) == 1;
    }
    if (*sent < sizeof(trickled_record)) {
        return send(c->fd, trickled_record + (*sent)++, 1, MSG_NOSIGNAL) == 1;
    }
    return send(c->fd, "", 1, MSG_NOSIGNAL) == 1;
}

/* The agent's accesses meanwhile: latencies in ms. */
struct timed_load {
    atomic_bool stop;
    long lat[4096];
    int n;
    int failed;
};

static void *timed_main(void *arg)
{
    static struct https_reply r;
    struct timed_load *l = arg;

    while (!atomic_load(&l->stop) && l->n < 4096) {
        long t = now_ms();
        CURLcode rc = https_request(&target, "POST", CREDS "/tok/access", PURPOSE, tls.agent_cert,
                                    tls.agent_key, NULL, &r);

        if (rc != CURLE_OK || r.status != 200 || strstr(r.body, tok_value) == NULL) {
            l->failed++;
        }
        l->lat[l->n++] = now_ms() - t;
        sleep_ms(20);
    }
    return NULL;
}

static int cmp_long(const void *x, const void *y)
{
    long a = *(const long *)x;
    long b = *(const long *)y;

    return (a > b) - (a < b);
}

static void test_slow_clients(void **state)
{
    static struct slow_conn conns[SLOW_TLS + SLOW_TCP];
    static struct timed_load timed;
    size_t sent[SLOW_TLS + SLOW_TCP] = {0};
    const size_t n = SLOW_TLS + SLOW_TCP;
    unsigned short port = (unsigned short)atoi(strrchr(target.base_url, ':') + 1);
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    pthread_t timer;
    size_t open_left = n;
    long t0;
    long p99;
    long earliest = -1;
    long latest = -1;

    (void)state;
    assert_non_null(ctx);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    memset(&timed, 0, sizeof(timed));
    assert_int_equal(pthread_create(&timer, NULL, timed_main, &timed), 0);
    for (size_t i = 0; i < n; i++) {
        struct slow_conn *c = &conns[i];

        c->opened = now_ms();
        c->fd = tcp_connect(port);
        c->trickle = i % 2 == 0;
        c->closed = 0;
        c->ssl = NULL;
        if (i < SLOW_TLS) {
            c->ssl = SSL_new(ctx);
            assert_non_null(c->ssl);
            assert_int_equal(SSL_set_fd(c->ssl, c->fd), 1);
            if (SSL_connect(c->ssl) != 1) {
                fail_msg("TLS handshake %zu failed", i);
            }
        }
    }
    /* One byte per trickling connection every 100 ms; watch for the server closing each. */
    t0 = now_ms();
    while (open_left > 0 && now_ms() - t0 < REQUEST_TIMEOUT_MS + 4000) {
        sleep_ms(100);
        for (size_t i = 0; i < n; i++) {
            struct slow_conn *c = &conns[i];
            bool gone;

            if (c->closed != 0) {
                continue;
            }
            gone = peer_closed(c);
            if (!gone && c->trickle) {
                gone = !trickle_one(c, &sent[i]);
            }
            if (gone) {
                c->closed = now_ms();
                open_left--;
            }
        }
    }
    atomic_store(&timed.stop, true);
    assert_int_equal(pthread_join(timer, NULL), 0);
    for (size_t i = 0; i < n; i++) {
        struct slow_conn *c = &conns[i];
        long lived = c->closed - c->opened;

        if (c->closed == 0) {
            fail_msg("slow connection %zu (%s, %s) is still open after %ld ms", i,
                     c->ssl != NULL ? "TLS" : "TCP", c->trickle ? "trickling" : "silent",
                     now_ms() - c->opened);
        }
        /* Closed by the deadline, not before it and not much after. */
        if (lived < REQUEST_TIMEOUT_MS - 100 || lived > REQUEST_TIMEOUT_MS + 1500) {
            fail_msg("slow connection %zu (%s, %s) was closed after %ld ms", i,
                     c->ssl != NULL ? "TLS" : "TCP", c->trickle ? "trickling" : "silent", lived);
        }
        earliest = earliest < 0 || lived < earliest ? lived : earliest;
        latest = lived > latest ? lived : latest;
        SSL_free(c->ssl);
        close(c->fd);
    }
    SSL_CTX_free(ctx);
    assert_int_equal(timed.failed, 0);
    assert_true(timed.n >= 20);
    qsort(timed.lat, (size_t)timed.n, sizeof(timed.lat[0]), cmp_long);
    p99 = timed.lat[(timed.n * 99) / 100];
    print_message("%zu slow connections closed %ld to %ld ms after opening; %d accesses "
                  "meanwhile, p50 %ld ms, p99 %ld ms\n",
                  n, earliest, latest, timed.n, timed.lat[timed.n / 2], p99);
    assert_true(p99 < 1000);
}

/* ---- No value anywhere -------------------------------------------------------------------------
 */

static void test_no_secret_leaked(void **state)
{
    (void)state;
    /* Every stored value starts so; none may be in the log or in any audit row. */
    assert_int_equal(log_count("fault-value-"), 0);
    assert_true(world_sql_is(
        &w, "SELECT count(*) FROM coffer.audit_events e WHERE e::text LIKE '%fault-value-%'", "0"));
}

/* After all of it, the server still stops cleanly (and, in a sanitizer build, without a report). */
static void test_sigterm_stops_cleanly(void **state)
{
    (void)state;
    assert_int_equal(https_server_stop(&server, SIGTERM, 30000), 0);
    assert_int_equal(log_count("AddressSanitizer"), 0);
    assert_int_equal(log_count("runtime error:"), 0);
}

/* ---- Setup ----------------------------------------------------------------------------------- */

static int apply_policy(void)
{
    static char policy[2048];

    snprintf(policy, sizeof(policy),
             "version: 1\n"
             "org: dev\n"
             "agent_types: {deployer: , analyst: }\n"
             "projects:\n"
             "  demo:\n"
             "    phases: [build]\n"
             "    members: [deployer, analyst]\n"
             "    credentials:\n"
             "      api:\n"
             "        grants: [{agent_type: deployer}]\n"
             "        usage:\n"
             "          destinations: [\"https://127.0.0.1:%u/allowed\"]\n"
             "          methods: [GET]\n"
             "          inject: [{header: Authorization, value: \"Bearer {{api_key}}\"}]\n",
             (unsigned)up_port);
    return world_apply_policy(&w, policy);
}

static int setup(void **state)
{
    (void)state;
    if (mkdtemp(dir) == NULL || coffer_dev_tls_provision(dir, &tls) != COFFER_OK) {
        return -1;
    }
    snprintf(up_dir, sizeof(up_dir), "%s/upstream", dir);
    if (mkdir(up_dir, 0700) != 0 || coffer_dev_tls_provision(up_dir, &up_tls) != COFFER_OK) {
        return -1;
    }
    snprintf(config, sizeof(config), "%s/coffer.yaml", dir);
    snprintf(log_path, sizeof(log_path), "%s/cofferd.log", dir);
    snprintf(up_log, sizeof(up_log), "%s/upstream.log", dir);
    snprintf(flag, sizeof(flag), "%s/token-failing", dir);
    value_of("tok", tok_value, sizeof(tok_value));
    value_of("api", api_value, sizeof(api_value));
    snprintf(env_module, sizeof(env_module), "COFFER_FAULT_MODULE=%s", w.h.p11.module);
    snprintf(env_flag, sizeof(env_flag), "COFFER_FAULT_FLAG=%s", flag);
    if (https_upstream_start(UPSTREAM_PY, &up_tls, up_log, log_path, NULL, &up_port, &upstream) !=
            0 ||
        apply_policy() != 0) {
        return -1;
    }
    start_server();
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    load_join();
    writers_join();
    (void)unlink(flag);
    stop_server();
    https_process_stop(&upstream);
    https_remove_dir(dir);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_token_failing),
        cmocka_unit_test(test_worker_killed_mid_request),
        cmocka_unit_test(test_killed_during_writes),
        cmocka_unit_test(test_killed_during_rotation_and_sweep),
        cmocka_unit_test(test_slow_clients),
        cmocka_unit_test(test_no_secret_leaked),
        cmocka_unit_test(test_sigterm_stops_cleanly),
    };
    int rc;

    curl_global_init(CURL_GLOBAL_DEFAULT);
    world_open("fault_proc", "dev", &w);
    world_add_project(&w, "demo", &demo);
    rc = cmocka_run_group_tests(tests, setup, teardown);
    world_close(&w);
    curl_global_cleanup();
    return rc;
}

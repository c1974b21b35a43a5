/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `cofferd --dev DIR` as a person runs it: it provisions DIR, says what it
 * made, serves in the foreground with its PostgreSQL running, and on SIGTERM
 * (or SIGINT) stops that PostgreSQL and exits 0. A second run reuses DIR:
 * same master key, same org. Its output never contains the token PIN.
 *
 * Its background process seals the audit events that accesses write: within
 * 5 seconds audit.integrity shows none unsealed (read as coffer_auditor with
 * COFFER_AUDITOR_DSN from DIR/env.sh) and `coffer audit verify` finds the log
 * intact; killed with SIGKILL, the supervisor starts it again and new
 * events are sealed within 5 seconds once more.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "harness.h"
#include "https.h"

#include "coffer/dev.h"
#include "server/proc.h"

#include <libpq-fe.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char base[] = "/tmp/coffer-cofferd.XXXXXX";
static char dir[PATH_MAX];

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

    nanosleep(&ts, NULL);
}

static void slurp(const char *path, char *out, size_t cap)
{
    FILE *f = fopen(path, "r");
    size_t n = 0;

    out[0] = '\0';
    if (f != NULL) {
        n = fread(out, 1, cap - 1, f);
        fclose(f);
    }
    out[n] = '\0';
}

/* The postmaster PID recorded in DIR/pg/data/postmaster.pid, or 0. */
static pid_t postmaster(void)
{
    char path[PATH_MAX + 32];
    char text[256];

    snprintf(path, sizeof(path), "%s/pg/data/postmaster.pid", dir);
    slurp(path, text, sizeof(text));
    return (pid_t)atol(text);
}

/* 127.0.0.1 and a port that was free when the test started. */
static char listen_addr[32];

/* Starts cofferd --dev DIR, waits until it serves, stops it with sig; returns its output. */
static void serve_once(int sig, char *out, size_t cap)
{
    const char *argv[] = {COFFERD_BIN, "--dev", dir, "--listen", listen_addr, NULL};
    const char *envp[] = {"PATH=/usr/bin:/bin", "COFFER_LOG=warn", NULL};
    char log[PATH_MAX + 16];
    struct coffer_proc_spec spec;
    pid_t pid = 0;
    pid_t pg;
    int status = 0;
    int fd;
    int i;

    snprintf(log, sizeof(log), "%s/cofferd.out", base);
    fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    memset(&spec, 0, sizeof(spec));
    spec.argv = argv;
    spec.envp = envp;
    spec.out_fd = fd;
    spec.err_fd = fd;
    assert_int_equal(coffer_proc_spawn(&spec, &pid), COFFER_OK);
    close(fd);
    for (i = 0; i < 600; i++) {
        slurp(log, out, cap);
        if (strstr(out, "serving in the foreground") != NULL) {
            break;
        }
        sleep_ms(100);
    }
    assert_non_null(strstr(out, "serving in the foreground"));
    pg = postmaster();
    assert_true(pg > 0);
    assert_true(coffer_proc_alive(pg));
    assert_int_equal(kill(pid, sig), 0);
    assert_int_equal(coffer_proc_wait(pid, 60000, &status), COFFER_OK);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    /* The cluster it started is stopped (its PID file removed, the process gone or reaped). */
    for (i = 0; i < 100 && coffer_proc_alive(pg); i++) {
        sleep_ms(100);
    }
    assert_false(coffer_proc_alive(pg));
    slurp(log, out, cap);
}

static void pin_absent(const char *out)
{
    char path[PATH_MAX + 16];
    char pin[128];
    size_t len;

    snprintf(path, sizeof(path), "%s/token.pin", dir);
    slurp(path, pin, sizeof(pin));
    len = strlen(pin);
    while (len > 0 && (pin[len - 1] == '\n' || pin[len - 1] == '\r')) {
        pin[--len] = '\0';
    }
    assert_true(len >= 8);
    assert_null(strstr(out, pin));
}

/* The "master key ... KCV xxxxxx" line of the output. */
static void kcv_line(const char *out, char *line, size_t cap)
{
    const char *p = strstr(out, "master key");
    size_t n = 0;

    assert_non_null(p);
    while (p[n] != '\0' && p[n] != '\n' && n + 1 < cap) {
        n++;
    }
    memcpy(line, p, n);
    line[n] = '\0';
}

static void test_serve_and_reuse(void **state)
{
    static char first[16384];
    static char second[16384];
    char kcv1[256];
    char kcv2[256];

    (void)state;
    serve_once(SIGTERM, first, sizeof(first));
    assert_non_null(strstr(first, "PostgreSQL      started"));
    assert_non_null(strstr(first, "coffer-mk-v1"));
    assert_non_null(strstr(first, "env.sh"));
    pin_absent(first);
    serve_once(SIGINT, second, sizeof(second));
    pin_absent(second);
    kcv_line(first, kcv1, sizeof(kcv1));
    kcv_line(second, kcv2, sizeof(kcv2));
    assert_string_equal(kcv1, kcv2);
}

/* ---- Sealing in the background process ------------------------------------------------ */

#define SEAL_WAIT_MS 5000

/* The value of "export NAME='...'" in env.sh (text), without its quotes. */
static void env_value(const char *envsh, const char *name, char *out, size_t cap)
{
    char key[64];
    const char *p;
    size_t n;

    snprintf(key, sizeof(key), "export %s='", name);
    p = strstr(envsh, key);
    assert_non_null(p);
    p += strlen(key);
    n = strcspn(p, "'\n");
    assert_int_equal(p[n], '\'');
    assert_true(n > 0 && n < cap);
    snprintf(out, cap, "%.*s", (int)n, p);
}

/* What the sealing test needs from DIR/env.sh. */
struct dev_client {
    char auditor_dsn[PATH_MAX + 64];
    char ca[PATH_MAX];
    char admin_cert[PATH_MAX];
    char admin_key[PATH_MAX];
    char agent_cert[PATH_MAX];
    char agent_key[PATH_MAX];
    struct https_target t;
};

static void dev_client_init(struct dev_client *c)
{
    static char envsh[16384];
    char path[PATH_MAX + 16];
    const char *colon = strrchr(listen_addr, ':');

    snprintf(path, sizeof(path), "%s/env.sh", dir);
    slurp(path, envsh, sizeof(envsh));
    env_value(envsh, "COFFER_AUDITOR_DSN", c->auditor_dsn, sizeof(c->auditor_dsn));
    env_value(envsh, "COFFER_CACERT", c->ca, sizeof(c->ca));
    env_value(envsh, "COFFER_ADMIN_CERT", c->admin_cert, sizeof(c->admin_cert));
    env_value(envsh, "COFFER_ADMIN_KEY", c->admin_key, sizeof(c->admin_key));
    env_value(envsh, "COFFER_AGENT_CERT", c->agent_cert, sizeof(c->agent_cert));
    env_value(envsh, "COFFER_AGENT_KEY", c->agent_key, sizeof(c->agent_key));
    assert_non_null(colon);
    https_target_init(&c->t, (unsigned short)atoi(colon + 1), c->ca);
}

/* n accesses to demo-api-key as the deployer agent, each granted. */
static void accesses(struct dev_client *c, int n)
{
    static struct https_reply reply;

    for (int i = 0; i < n; i++) {
        assert_int_equal(https_request(&c->t, "POST",
                                       "/v1/orgs/dev/projects/demo/credentials/demo-api-key/access",
                                       "{\"purpose\":\"deploy demo now\"}", c->agent_cert,
                                       c->agent_key, NULL, &reply),
                         CURLE_OK);
        if (reply.status != 200) {
            fprintf(stderr, "access: %ld %s\n", reply.status, reply.body);
        }
        assert_int_equal(reply.status, 200);
    }
}

/* "unsealed_events|last_checkpoint" of audit.integrity, read as coffer_auditor. */
static void integrity(const struct dev_client *c, long *unsealed, long *last_checkpoint)
{
    PGconn *db = PQconnectdb(c->auditor_dsn);
    PGresult *res;

    if (PQstatus(db) != CONNECTION_OK) {
        fail_msg("auditor connection: %s", PQerrorMessage(db));
    }
    res = PQexec(db, "SELECT unsealed_events, COALESCE(last_checkpoint, 0) FROM audit.integrity");
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        fail_msg("audit.integrity: %s", PQerrorMessage(db));
    }
    *unsealed = atol(PQgetvalue(res, 0, 0));
    *last_checkpoint = atol(PQgetvalue(res, 0, 1));
    PQclear(res);
    PQfinish(db);
}

/* Waits up to SEAL_WAIT_MS until nothing is unsealed and a checkpoint after `after` exists. */
static long wait_sealed(const struct dev_client *c, long after)
{
    long unsealed = -1;
    long last = 0;

    for (int waited = 0; waited <= SEAL_WAIT_MS; waited += 100) {
        integrity(c, &unsealed, &last);
        if (unsealed == 0 && last > after) {
            return last;
        }
        sleep_ms(100);
    }
    fail_msg("after %d ms: %ld events unsealed, last checkpoint %ld (want one after %ld)",
             SEAL_WAIT_MS, unsealed, last, after);
    return 0;
}

/* The PID named by the last "PID n sealing audit events" line of the log, or 0. */
static pid_t sealer_pid(const char *log)
{
    const char *line = NULL;
    const char *p;

    for (p = strstr(log, " sealing audit events"); p != NULL;
         p = strstr(p + 1, " sealing audit events")) {
        line = p;
    }
    if (line == NULL) {
        return 0;
    }
    while (line > log && line[-1] != ' ') {
        line--;
    }
    return (pid_t)atol(line);
}

/* The parent of pid, from /proc/pid/stat ("pid (comm) state ppid ..."), or 0. */
static pid_t parent_of(pid_t pid)
{
    char path[64];
    char stat[512];
    const char *paren;
    char state = 0;
    long ppid = 0;

    snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
    slurp(path, stat, sizeof(stat));
    paren = strrchr(stat, ')');
    if (paren == NULL || sscanf(paren + 1, " %c %ld", &state, &ppid) != 2) {
        return 0;
    }
    return (pid_t)ppid;
}

/* The cofferd test_background_seals started, stopped by its teardown if the test failed. */
static pid_t sealing_cofferd;

static int stop_sealing_cofferd(void **state)
{
    int status = 0;

    (void)state;
    if (sealing_cofferd > 0) {
        (void)kill(sealing_cofferd, SIGTERM);
        if (coffer_proc_wait(sealing_cofferd, 60000, &status) != COFFER_OK) {
            (void)kill(sealing_cofferd, SIGKILL);
            if (coffer_proc_wait(sealing_cofferd, 10000, &status) != COFFER_OK) {
                fprintf(stderr, "cofferd (PID %ld) was not reaped\n", (long)sealing_cofferd);
            }
        }
        sealing_cofferd = 0;
    }
    return 0;
}

static void test_background_seals(void **state)
{
    static char out[65536];
    static struct https_reply reply;
    const char *argv[] = {COFFERD_BIN, "--dev", dir, "--listen", listen_addr, NULL};
    const char *envp[] = {"PATH=/usr/bin:/bin", "COFFER_LOG=info", NULL};
    char log[PATH_MAX + 16];
    char dsn_var[PATH_MAX + 96];
    struct dev_client c;
    struct coffer_proc_spec spec;
    struct harness_run run;
    pid_t pid = 0;
    pid_t sealer;
    pid_t again = 0;
    long last;
    int status = 0;
    int fd;

    (void)state;
    snprintf(log, sizeof(log), "%s/cofferd-seal.out", base);
    fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    memset(&spec, 0, sizeof(spec));
    spec.argv = argv;
    spec.envp = envp;
    spec.out_fd = fd;
    spec.err_fd = fd;
    assert_int_equal(coffer_proc_spawn(&spec, &pid), COFFER_OK);
    sealing_cofferd = pid;
    close(fd);
    for (int i = 0; i < 600 && strstr(out, "serving in the foreground") == NULL; i++) {
        sleep_ms(100);
        slurp(log, out, sizeof(out));
    }
    assert_non_null(strstr(out, "serving in the foreground"));
    dev_client_init(&c);

    /* A credential, accesses to it, and every event sealed soon after. */
    assert_int_equal(https_request(&c.t, "PUT",
                                   "/v1/orgs/dev/projects/demo/credentials/demo-api-key",
                                   "{\"type\":\"api_key\",\"tier\":\"medium\","
                                   "\"keys\":{\"api_key\":\"dev-value\"}}",
                                   c.admin_cert, c.admin_key, NULL, &reply),
                     CURLE_OK);
    assert_true(reply.status == 200 || reply.status == 201);
    accesses(&c, 3);
    last = wait_sealed(&c, 0);
    assert_true(last >= 1);

    snprintf(dsn_var, sizeof(dsn_var), "COFFER_AUDITOR_DSN=%s", c.auditor_dsn);
    {
        const char *vargv[] = {COFFER_BIN, "audit", "verify", NULL};
        const char *venvp[] = {"PATH=/usr/bin:/bin", dsn_var, NULL};

        harness_run(vargv, venvp, &run);
        if (run.status != 0) {
            fprintf(stderr, "coffer audit verify: %d\n%s\n", run.status, run.out);
        }
        assert_int_equal(run.status, 0);
        assert_non_null(strstr(run.out, "result: INTACT"));
    }

    /* The background process killed outright: the supervisor starts another, which seals. */
    slurp(log, out, sizeof(out));
    sealer = sealer_pid(out);
    assert_true(sealer > 0 && sealer != pid);
    assert_true(coffer_proc_alive(sealer));
    assert_int_equal(parent_of(sealer), pid);
    {
        char comm_path[64];
        char comm[32];

        /* The name operators see in ps: one background process seals and sweeps. */
        snprintf(comm_path, sizeof(comm_path), "/proc/%ld/comm", (long)sealer);
        slurp(comm_path, comm, sizeof(comm));
        assert_string_equal(comm, "cofferd-bg\n");
    }
    assert_int_equal(kill(sealer, SIGKILL), 0);
    for (int i = 0; i < 50 && coffer_proc_alive(sealer); i++) {
        sleep_ms(100);
    }
    assert_false(coffer_proc_alive(sealer));
    accesses(&c, 3);
    (void)wait_sealed(&c, last);
    slurp(log, out, sizeof(out));
    again = sealer_pid(out);
    assert_non_null(strstr(out, "killed by signal 9 (SIGKILL), no core; starting another"));
    assert_true(again > 0 && again != sealer);
    assert_true(coffer_proc_alive(again));
    assert_int_equal(parent_of(again), pid);

    sealing_cofferd = 0;
    assert_int_equal(kill(pid, SIGTERM), 0);
    assert_int_equal(coffer_proc_wait(pid, 60000, &status), COFFER_OK);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

static void test_usage(void **state)
{
    const char *argv[] = {COFFERD_BIN, "--frobnicate", NULL};
    const char *envp[] = {"PATH=/usr/bin:/bin", NULL};
    struct coffer_proc_spec spec;
    int status = 0;

    (void)state;
    memset(&spec, 0, sizeof(spec));
    spec.argv = argv;
    spec.envp = envp;
    spec.out_fd = -1;
    spec.err_fd = -1;
    assert_int_equal(coffer_proc_run(&spec, 30000, &status), COFFER_OK);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_serve_and_reuse),
        cmocka_unit_test_teardown(test_background_seals, stop_sealing_cofferd),
        cmocka_unit_test(test_usage),
    };
    int failed;

    if (mkdtemp(base) == NULL || chmod(base, 0755) != 0) {
        perror("cofferd_dev_test: mkdtemp");
        return 1;
    }
    snprintf(dir, sizeof(dir), "%s/dev", base);
    {
        struct sockaddr_in a;
        socklen_t len = sizeof(a);
        int fd = socket(AF_INET, SOCK_STREAM, 0);

        memset(&a, 0, sizeof(a));
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
            getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
            perror("cofferd_dev_test: finding a free port");
            return 1;
        }
        close(fd);
        snprintf(listen_addr, sizeof(listen_addr), "127.0.0.1:%u", (unsigned)ntohs(a.sin_port));
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    failed = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    if (coffer_dev_remove_tree(base) != COFFER_OK) {
        fprintf(stderr, "cofferd_dev_test: removing %s failed\n", base);
    }
    return failed;
}

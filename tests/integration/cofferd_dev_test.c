/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `cofferd --dev DIR` as a person runs it: it provisions DIR, says what it
 * made, serves in the foreground with its PostgreSQL running, and on SIGTERM
 * (or SIGINT) stops that PostgreSQL and exits 0. A second run reuses DIR:
 * same master key, same org. Its output never contains the token PIN.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "coffer/dev.h"
#include "server/proc.h"

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
    failed = cmocka_run_group_tests(tests, NULL, NULL);
    if (coffer_dev_remove_tree(base) != COFFER_OK) {
        fprintf(stderr, "cofferd_dev_test: removing %s failed\n", base);
    }
    return failed;
}

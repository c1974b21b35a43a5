/* SPDX-License-Identifier: Apache-2.0 */
/*
 * testenv: the CTest fixture behind every integration test.
 *
 *   testenv up FILE     makes /tmp/coffer-test.XXXXXX with a SoftHSMv2 token
 *                       directory and a running private PostgreSQL cluster,
 *                       writes the directory's path into FILE and exits,
 *                       leaving the postmaster running (in its own session)
 *   testenv down FILE   stops that postmaster and removes the directory and FILE
 *
 * down signals only a process it can prove is the fixture's postmaster: the
 * PID from DIR/pg/data/postmaster.pid whose command line is postgres with
 * -D DIR/pg/data. It removes only a directory named /tmp/coffer-test.*.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "coffer/dev.h"
#include "coffer/err.h"
#include "coffer/store.h"

#define FIXTURE_PREFIX "/tmp/coffer-test."
#define FIXTURE_TEMPLATE FIXTURE_PREFIX "XXXXXX"
#define FIXTURE_TOKEN_LABEL "coffer-test-fixture"
#define STOP_TIMEOUT_MS 30000
#define KILL_TIMEOUT_MS 10000

static int fail(const char *step, enum coffer_err e)
{
    fprintf(stderr, "testenv: %s: %s: %s\n", step, coffer_err_str(e), coffer_err_detail());
    return 1;
}

static int fail_errno(const char *step, const char *path)
{
    fprintf(stderr, "testenv: %s %s: %s\n", step, path, strerror(errno));
    return 1;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* Reads at most buflen-1 bytes of path; returns the length or -1. */
static ssize_t read_file(const char *path, char *buf, size_t buflen)
{
    size_t got = 0;
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);

    if (fd < 0) {
        return -1;
    }
    while (got < buflen - 1) {
        ssize_t n = read(fd, buf + got, buflen - 1 - got);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            break;
        }
        got += (size_t)n;
    }
    close(fd);
    buf[got] = '\0';
    return (ssize_t)got;
}

/* The fixture directory named in FILE, checked to be one testenv made. */
static bool read_fixture(const char *file, char *dir, size_t dirlen)
{
    ssize_t n = read_file(file, dir, dirlen);
    const char *rest;

    if (n <= 0) {
        return false;
    }
    dir[strcspn(dir, "\n")] = '\0';
    rest = dir + strlen(FIXTURE_PREFIX);
    return strncmp(dir, FIXTURE_PREFIX, strlen(FIXTURE_PREFIX)) == 0 && strlen(rest) == 6 &&
           strchr(rest, '/') == NULL && strcmp(rest, "..") != 0;
}

/* Running, and not a zombie waiting for its new parent to reap it. */
static bool alive(pid_t pid)
{
    char path[64];
    char stat[512];
    const char *paren;

    if (kill(pid, 0) != 0 && errno != EPERM) {
        return false;
    }
    snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
    if (read_file(path, stat, sizeof(stat)) <= 0) {
        return errno != ENOENT;
    }
    paren = strrchr(stat, ')');
    return paren == NULL || paren[1] != ' ' || (paren[2] != 'Z' && paren[2] != 'X');
}

/* The PID of the postgres serving data, proven by its pid file and command line; else 0. */
static pid_t fixture_postmaster(const char *data)
{
    char path[PATH_MAX + 32];
    char buf[4096];
    const char *prev = NULL;
    const char *base;
    char *end;
    long pid;
    ssize_t n;

    snprintf(path, sizeof(path), "%s/postmaster.pid", data);
    if (read_file(path, buf, sizeof(buf)) <= 0) {
        return 0;
    }
    errno = 0;
    pid = strtol(buf, &end, 10);
    if (errno != 0 || end == buf || *end != '\n' || pid <= 0 || !alive((pid_t)pid)) {
        return 0;
    }
    snprintf(path, sizeof(path), "/proc/%ld/cmdline", pid);
    n = read_file(path, buf, sizeof(buf));
    if (n <= 0) {
        return 0;
    }
    base = strrchr(buf, '/');
    base = base != NULL ? base + 1 : buf;
    if (strcmp(base, "postgres") != 0) {
        return 0;
    }
    for (const char *a = buf; a < buf + n; a += strlen(a) + 1) {
        if (prev != NULL && strcmp(prev, "-D") == 0 && strcmp(a, data) == 0) {
            return (pid_t)pid;
        }
        prev = a;
    }
    return 0;
}

static bool wait_gone(pid_t pid, long timeout_ms)
{
    for (long waited = 0; waited < timeout_ms; waited += 50) {
        if (!alive(pid)) {
            return true;
        }
        sleep_ms(50);
    }
    return !alive(pid);
}

static int write_fixture_file(const char *file, const char *dir)
{
    char tmp[PATH_MAX];
    FILE *f;

    if (snprintf(tmp, sizeof(tmp), "%s.tmp", file) >= (int)sizeof(tmp)) {
        fprintf(stderr, "testenv: %s: path too long\n", file);
        return 1;
    }
    f = fopen(tmp, "we");
    if (f == NULL) {
        return fail_errno("creating", tmp);
    }
    fprintf(f, "%s\n", dir);
    if (fclose(f) != 0) {
        return fail_errno("writing", tmp);
    }
    if (rename(tmp, file) != 0) {
        return fail_errno("renaming", tmp);
    }
    return 0;
}

static int up(const char *file)
{
    struct coffer_dev_env env = {0};
    char dir[] = FIXTURE_TEMPLATE;
    char old[PATH_MAX];
    char data[PATH_MAX + 16];
    enum coffer_err r;
    const char *step;

    if (read_fixture(file, old, sizeof(old))) {
        snprintf(data, sizeof(data), "%s/pg/data", old);
        if (fixture_postmaster(data) > 0) {
            printf("testenv: already up in %s\n", old);
            return 0;
        }
    }
    if (mkdtemp(dir) == NULL) {
        return fail_errno("mkdtemp", dir);
    }
    /* The cluster's unprivileged user must be able to pass through. */
    if (chmod(dir, 0755) != 0) {
        return fail_errno("chmod", dir);
    }
    step = "reading the directory";
    r = coffer_dev_env_init(dir, &env);
    if (r == COFFER_OK) {
        step = "preparing the token directory";
        r = coffer_dev_token_prepare(&env, FIXTURE_TOKEN_LABEL);
    }
    if (r == COFFER_OK) {
        step = "starting PostgreSQL";
        r = coffer_dev_pg_start(&env);
    }
    if (r == COFFER_OK) {
        /* The roles are made once here, so test programs never race to create them. */
        step = "creating the roles";
        r = coffer_store_bootstrap(env.db_super, COFFER_DEV_DBNAME);
    }
    if (r == COFFER_OK && write_fixture_file(file, dir) != 0) {
        r = COFFER_E_IO;
        step = "writing the fixture file";
    }
    if (r != COFFER_OK) {
        int rc = fail(step, r);

        if (coffer_dev_pg_stop(&env) != COFFER_OK) {
            fprintf(stderr, "testenv: stopping PostgreSQL: %s\n", coffer_err_detail());
        }
        if (coffer_dev_remove_tree(dir) != COFFER_OK) {
            fprintf(stderr, "testenv: %s\n", coffer_err_detail());
        }
        return rc;
    }
    printf("%s\n", dir);
    return 0;
}

static int down(const char *file)
{
    char dir[PATH_MAX];
    char data[PATH_MAX + 16];
    enum coffer_err r;
    pid_t pid;

    if (access(file, F_OK) != 0) {
        printf("testenv: nothing to stop (%s does not exist)\n", file);
        return 0;
    }
    if (!read_fixture(file, dir, sizeof(dir))) {
        fprintf(stderr, "testenv: %s does not name a %s* directory; leaving everything alone\n",
                file, FIXTURE_PREFIX);
        return 1;
    }
    snprintf(data, sizeof(data), "%s/pg/data", dir);
    pid = fixture_postmaster(data);
    if (pid > 0) {
        /* SIGINT is PostgreSQL's fast shutdown. */
        if (kill(pid, SIGINT) != 0 && errno != ESRCH) {
            return fail_errno("signalling the postmaster of", dir);
        }
        if (!wait_gone(pid, STOP_TIMEOUT_MS)) {
            fprintf(stderr, "testenv: postmaster %ld ignored SIGINT for %d s; killing it\n",
                    (long)pid, STOP_TIMEOUT_MS / 1000);
            (void)kill(pid, SIGKILL);
            if (!wait_gone(pid, KILL_TIMEOUT_MS)) {
                fprintf(stderr, "testenv: postmaster %ld survived SIGKILL\n", (long)pid);
                return 1;
            }
        }
        printf("testenv: stopped PostgreSQL (PID %ld)\n", (long)pid);
    } else {
        printf("testenv: no postmaster running for %s\n", dir);
    }
    if ((r = coffer_dev_remove_tree(dir)) != COFFER_OK) {
        return fail("removing the directory", r);
    }
    if (unlink(file) != 0 && errno != ENOENT) {
        return fail_errno("removing", file);
    }
    printf("testenv: removed %s\n", dir);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "up") == 0) {
        return up(argv[2]);
    }
    if (argc == 3 && strcmp(argv[1], "down") == 0) {
        return down(argv[2]);
    }
    fprintf(stderr, "usage: testenv up FILE | testenv down FILE\n");
    return 2;
}

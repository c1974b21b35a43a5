/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The embedded default's PostgreSQL cluster: finding the binaries, choosing
 * the unprivileged user that runs it (PostgreSQL refuses root), initdb,
 * starting the postmaster on a unix socket only, waiting until it answers,
 * reusing one that already serves the directory, and stopping the one this
 * process started, by its PID.
 *
 * Programs run through server/proc.c (argv arrays, no shell, a clean
 * environment). This file never signals a process it did not start.
 */
#include "coffer/dev.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <locale.h>
#include <pwd.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "coffer/log.h"
#include "server/dev_int.h"
#include "server/proc.h"

/* Who runs the cluster. */
struct pg_user {
    char name[64];
    uid_t uid;
    gid_t gid;
    bool drop; /* true when running as root: the children switch to uid/gid */
};

/* ---- PostgreSQL -------------------------------------------------------------- */

static bool executable(const char *dir, const char *prog)
{
    char path[PATH_MAX];

    if (dev_fmt(path, sizeof(path), "program path", "%s/%s", dir, prog) != COFFER_OK) {
        coffer_err_clear();
        return false;
    }
    return access(path, X_OK) == 0;
}

/* PG_PREFERRED_BIN, else the newest PG_ROOT/<version>/bin with a postgres in it. */
static enum coffer_err find_pg_bin(char *out, size_t outlen)
{
    long best_major = -1, best_minor = -1;
    char best[64] = "";
    struct dirent *de;
    DIR *d;

    if (executable(PG_PREFERRED_BIN, "postgres")) {
        return dev_fmt(out, outlen, "PostgreSQL bin directory", "%s", PG_PREFERRED_BIN);
    }
    d = opendir(PG_ROOT);
    while (d != NULL && (de = readdir(d)) != NULL) {
        char bin[PATH_MAX];
        long major, minor = 0;
        char *end;

        errno = 0;
        major = strtol(de->d_name, &end, 10);
        if (end == de->d_name || errno != 0) {
            continue;
        }
        if (*end == '.') {
            minor = strtol(end + 1, &end, 10);
        }
        if (*end != '\0' || strlen(de->d_name) >= sizeof(best)) {
            continue;
        }
        if (dev_fmt(bin, sizeof(bin), "bin", "%s/%s/bin", PG_ROOT, de->d_name) != COFFER_OK) {
            coffer_err_clear();
            continue;
        }
        if (!executable(bin, "postgres")) {
            continue;
        }
        if (major > best_major || (major == best_major && minor > best_minor)) {
            best_major = major;
            best_minor = minor;
            snprintf(best, sizeof(best), "%.63s", de->d_name);
        }
    }
    if (d != NULL) {
        closedir(d);
    }
    if (best[0] == '\0') {
        return coffer_err_set(COFFER_E_CONFIG,
                              "no PostgreSQL server found: tried %s and %s/*/bin (install "
                              "postgresql-15)",
                              PG_PREFERRED_BIN, PG_ROOT);
    }
    return dev_fmt(out, outlen, "PostgreSQL bin directory", "%s/%s/bin", PG_ROOT, best);
}

static enum coffer_err lookup_user(const char *name, struct pg_user *u, bool *found)
{
    struct passwd pw, *res = NULL;
    char buf[4096];
    int e;

    *found = false;
    e = getpwnam_r(name, &pw, buf, sizeof(buf), &res);
    if (e != 0) {
        return coffer_err_set(COFFER_E_IO, "looking up user %s: %s", name, strerror(e));
    }
    if (res == NULL) {
        return COFFER_OK;
    }
    snprintf(u->name, sizeof(u->name), "%s", name);
    u->uid = pw.pw_uid;
    u->gid = pw.pw_gid;
    *found = true;
    return COFFER_OK;
}

/* Root runs the cluster as "coffer" or "nobody"; anyone else as themselves. */
static enum coffer_err pick_pg_user(struct pg_user *u)
{
    static const char *const candidates[] = {"coffer", "nobody", NULL};
    enum coffer_err r;
    bool found;

    *u = (struct pg_user){0};
    if (geteuid() != 0) {
        u->uid = geteuid();
        u->gid = getegid();
        u->drop = false;
        snprintf(u->name, sizeof(u->name), "uid %ld", (long)u->uid);
        return COFFER_OK;
    }
    for (size_t i = 0; candidates[i] != NULL; i++) {
        if ((r = lookup_user(candidates[i], u, &found)) != COFFER_OK) {
            return r;
        }
        if (found && u->uid != 0) {
            u->drop = true;
            return COFFER_OK;
        }
    }
    return coffer_err_set(COFFER_E_CONFIG,
                          "running as root, and neither user \"coffer\" nor \"nobody\" exists to "
                          "run PostgreSQL (it refuses root); create one with: useradd --system "
                          "--no-create-home --shell /usr/sbin/nologin coffer");
}

/* Search permission as uid with primary group gid only, which is what the children get. */
static bool can_search(const struct stat *st, const struct pg_user *u)
{
    if (u->uid == 0) {
        return true;
    }
    if (st->st_uid == u->uid) {
        return (st->st_mode & S_IXUSR) != 0;
    }
    if (st->st_gid == u->gid) {
        return (st->st_mode & S_IXGRP) != 0;
    }
    return (st->st_mode & S_IXOTH) != 0;
}

/* The cluster's user must reach DIR through every parent of DIR. */
static enum coffer_err check_parents(const struct coffer_dev_env *env, const struct pg_user *u)
{
    char path[PATH_MAX];
    struct stat st;
    size_t len = strlen(env->dir);

    if (!u->drop) {
        return COFFER_OK;
    }
    for (size_t i = 0; i < len; i++) {
        if (env->dir[i] != '/') {
            continue;
        }
        /* The prefix up to this slash: "/" first, then each parent in turn. */
        snprintf(path, sizeof(path), "%.*s", (int)(i > 0 ? i : 1), env->dir);
        if (stat(path, &st) != 0) {
            return coffer_err_set(COFFER_E_IO, "inspecting %s: %s", path, strerror(errno));
        }
        if (!can_search(&st, u)) {
            return coffer_err_set(COFFER_E_CONFIG,
                                  "PostgreSQL runs as user %s (uid %ld), which cannot enter %s "
                                  "(owner uid %ld, mode %04o) on the way to %s; choose a "
                                  "directory under /var/tmp or /tmp, e.g. /var/tmp/coffer-dev",
                                  u->name, (long)u->uid, path, (long)st.st_uid,
                                  (unsigned)(st.st_mode & 07777), env->dir);
        }
    }
    return COFFER_OK;
}

/*
 * The cluster's user must also enter DIR to reach DIR/pg. DIR, which this
 * process owns, is opened to that user's group for search only (0710): its
 * files stay unreadable to anyone else.
 */
static enum coffer_err check_reachable(const struct coffer_dev_env *env, const struct pg_user *u)
{
    enum coffer_err r;
    struct stat st;

    if (!u->drop) {
        return COFFER_OK;
    }
    if ((r = check_parents(env, u)) != COFFER_OK) {
        return r;
    }
    if (stat(env->dir, &st) != 0) {
        return coffer_err_set(COFFER_E_IO, "inspecting %s: %s", env->dir, strerror(errno));
    }
    if (can_search(&st, u)) {
        return COFFER_OK;
    }
    if (st.st_uid != geteuid()) {
        return coffer_err_set(COFFER_E_CONFIG, "user %s cannot enter %s, which uid %ld owns",
                              u->name, env->dir, (long)st.st_uid);
    }
    if (chown(env->dir, (uid_t)-1, u->gid) != 0 || chmod(env->dir, 0710) != 0) {
        return coffer_err_set(COFFER_E_IO, "letting group %ld search %s: %s", (long)u->gid,
                              env->dir, strerror(errno));
    }
    return COFFER_OK;
}

/* A directory of the cluster: owned by the cluster's user, mode 0700. */
static enum coffer_err ensure_pg_dir(const char *path, const struct pg_user *u)
{
    struct stat st;

    if (mkdir(path, 0700) == 0) {
        if (u->drop && chown(path, u->uid, u->gid) != 0) {
            return coffer_err_set(COFFER_E_IO, "chown %s to %s: %s", path, u->name,
                                  strerror(errno));
        }
    } else if (errno != EEXIST) {
        return coffer_err_set(COFFER_E_IO, "creating directory %s: %s", path, strerror(errno));
    }
    if (lstat(path, &st) != 0) {
        return coffer_err_set(COFFER_E_IO, "inspecting %s: %s", path, strerror(errno));
    }
    if (!S_ISDIR(st.st_mode)) {
        return coffer_err_set(COFFER_E_INVALID, "%s exists and is not a directory", path);
    }
    if (st.st_uid != u->uid) {
        return coffer_err_set(COFFER_E_CONFIG,
                              "%s is owned by uid %ld, but the cluster runs as %s (uid %ld); "
                              "remove the directory or run as that user",
                              path, (long)st.st_uid, u->name, (long)u->uid);
    }
    if ((st.st_mode & 077) != 0 && chmod(path, 0700) != 0) {
        return coffer_err_set(COFFER_E_IO, "chmod 0700 %s: %s", path, strerror(errno));
    }
    return COFFER_OK;
}

/* Everything pg_start needs to know. */
struct pg_ctx {
    struct pg_user user;
    char bin[PATH_MAX];
    char pg[PATH_MAX];   /* DIR/pg */
    char data[PATH_MAX]; /* DIR/pg/data */
    char log[PATH_MAX];  /* DIR/pg/log */
    int log_fd;
};

static enum coffer_err prog_path(const struct pg_ctx *c, const char *prog, char *out, size_t n)
{
    return dev_fmt(out, n, "program path", "%s/%s", c->bin, prog);
}

/*
 * Adds the end of the server log to the current error detail (which holds
 * 512 bytes, so only the last lines fit) and logs a longer end as well.
 */
static enum coffer_err fail_with_log(enum coffer_err e, const struct pg_ctx *c)
{
    char what[512];
    char tail[LOG_TAIL_MAX];
    char longer[LOG_TAIL_LONG];

    snprintf(what, sizeof(what), "%s", coffer_err_detail());
    dev_log_tail(c->log, longer, sizeof(longer));
    coffer_error(LOG_MOD, "%s; end of %s:\n%s", what, c->log, longer);
    dev_log_tail(c->log, tail, sizeof(tail));
    return coffer_err_set(e, "%s; end of %s:\n%s", what, c->log, tail);
}

static enum coffer_err run_initdb(const struct pg_ctx *c)
{
    char initdb[PATH_MAX];
    char fresh[PATH_MAX];
    char why[96];
    const char *locale = "C.UTF-8";
    locale_t probe;
    enum coffer_err r;
    int status = 0;

    if ((r = prog_path(c, "initdb", initdb, sizeof(initdb))) != COFFER_OK ||
        (r = dev_fmt(fresh, sizeof(fresh), "data directory", "%s.new", c->data)) != COFFER_OK) {
        return r;
    }
    probe = newlocale(LC_ALL_MASK, locale, (locale_t)0);
    if (probe == (locale_t)0) {
        locale = "C";
    } else {
        freelocale(probe);
    }
    /* initdb works in DIR/pg/data.new, renamed when complete: a crash leaves no half cluster. */
    if ((r = coffer_dev_remove_tree(fresh)) != COFFER_OK) {
        return r;
    }
    char locale_arg[32];
    snprintf(locale_arg, sizeof(locale_arg), "--locale=%s", locale);
    const char *const argv[] = {initdb,     "-D",
                                fresh,      "-U",
                                "postgres", "--auth=trust",
                                "-E",       "UTF8",
                                locale_arg, "--no-instructions",
                                NULL};
    struct coffer_proc_spec spec = {
        .argv = argv,
        .envp = dev_child_env,
        .cwd = c->pg,
        .out_fd = c->log_fd,
        .err_fd = c->log_fd,
        .drop = c->user.drop,
        .uid = c->user.uid,
        .gid = c->user.gid,
    };

    coffer_info(LOG_MOD, "creating the PostgreSQL cluster in %s (as %s)", c->data, c->user.name);
    r = coffer_proc_run(&spec, PG_INITDB_TIMEOUT_MS, &status);
    if (r != COFFER_OK) {
        r = coffer_err_wrap(r, "running initdb");
        return fail_with_log(r, c);
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        coffer_proc_status_str(status, why, sizeof(why));
        r = coffer_err_set(COFFER_E_IO, "initdb %s", why);
        return fail_with_log(r, c);
    }
    if (rename(fresh, c->data) != 0) {
        return coffer_err_set(COFFER_E_IO, "renaming %s to %s: %s", fresh, c->data,
                              strerror(errno));
    }
    return COFFER_OK;
}

/* True if /proc/pid/cmdline is a postgres started with -D data. */
static bool cmdline_is_postmaster(pid_t pid, const char *data)
{
    char path[64];
    char buf[4096];
    size_t len = 0;
    const char *prev = NULL;
    const char *base;

    snprintf(path, sizeof(path), "/proc/%ld/cmdline", (long)pid);
    if (dev_read_small(path, buf, sizeof(buf), &len) != COFFER_OK || len == 0) {
        coffer_err_clear();
        return false;
    }
    base = strrchr(buf, '/');
    base = base != NULL ? base + 1 : buf;
    if (strcmp(base, "postgres") != 0) {
        return false;
    }
    for (const char *a = buf; a < buf + len; a += strlen(a) + 1) {
        if (prev != NULL && strcmp(prev, "-D") == 0 && strcmp(a, data) == 0) {
            return true;
        }
        prev = a;
    }
    return false;
}

/*
 * The PID in DATA/postmaster.pid if that process is alive and is a postgres
 * serving DATA; 0 otherwise (no file, a stale file, or a reused PID).
 */
static pid_t running_postmaster(const char *data)
{
    char path[PATH_MAX];
    char buf[1024];
    char *nl;
    char *end;
    long pid;

    if (dev_fmt(path, sizeof(path), "pid file path", "%s/postmaster.pid", data) != COFFER_OK ||
        dev_read_small(path, buf, sizeof(buf), NULL) != COFFER_OK) {
        coffer_err_clear();
        return 0;
    }
    errno = 0;
    pid = strtol(buf, &end, 10);
    if (errno != 0 || end == buf || *end != '\n' || pid <= 0) {
        return 0;
    }
    nl = strchr(end + 1, '\n');
    if (nl == NULL) {
        return 0;
    }
    *nl = '\0';
    if (strcmp(end + 1, data) != 0) {
        return 0;
    }
    if (!coffer_proc_alive((pid_t)pid) || !cmdline_is_postmaster((pid_t)pid, data)) {
        return 0;
    }
    return (pid_t)pid;
}

/* Exit status 0 of pg_isready: the server accepts connections. */
static enum coffer_err pg_ready(const struct pg_ctx *c, const char *sockdir, bool *ready)
{
    char isready[PATH_MAX];
    enum coffer_err r;
    int status = 0;

    *ready = false;
    if ((r = prog_path(c, "pg_isready", isready, sizeof(isready))) != COFFER_OK) {
        return r;
    }
    const char *const argv[] = {isready,    "-q", "-h",       sockdir, "-p", PG_PORT, "-d",
                                "postgres", "-U", "postgres", "-t",    "2",  NULL};
    struct coffer_proc_spec spec = {
        .argv = argv, .envp = dev_child_env, .cwd = "/", .out_fd = -1, .err_fd = -1};

    if ((r = coffer_proc_run(&spec, PG_ISREADY_TIMEOUT_MS, &status)) != COFFER_OK) {
        return r;
    }
    *ready = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    return COFFER_OK;
}

/*
 * Polls until the server accepts connections. *child, if not 0, is the
 * postmaster this process started: if it exits meanwhile it is reaped and
 * *child set to 0, so nothing later signals a PID that is no longer ours.
 */
static enum coffer_err wait_ready(const struct pg_ctx *c, const char *sockdir, pid_t *child)
{
    struct timespec start, now;
    enum coffer_err r;
    bool ready;

    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        if ((r = pg_ready(c, sockdir, &ready)) != COFFER_OK) {
            return r;
        }
        if (ready) {
            return COFFER_OK;
        }
        if (*child > 0) {
            int status;
            char why[96];

            if (waitpid(*child, &status, WNOHANG) == *child) {
                *child = 0;
                coffer_proc_status_str(status, why, sizeof(why));
                r = coffer_err_set(COFFER_E_DB_UNAVAILABLE, "postgres %s", why);
                return fail_with_log(r, c);
            }
        }
        clock_gettime(CLOCK_MONOTONIC, &now);
        if ((now.tv_sec - start.tv_sec) * 1000L + (now.tv_nsec - start.tv_nsec) / 1000000L >=
            PG_START_TIMEOUT_MS) {
            r = coffer_err_set(COFFER_E_DB_UNAVAILABLE,
                               "PostgreSQL did not accept connections on %s within %d s", sockdir,
                               PG_START_TIMEOUT_MS / 1000);
            return fail_with_log(r, c);
        }
        struct timespec ts = {.tv_sec = 0, .tv_nsec = PG_POLL_MS * 1000000L};
        nanosleep(&ts, NULL);
    }
}

/* Removes lock files a dead postmaster left, which a new one could mistake for live ones. */
static enum coffer_err remove_stale_locks(const struct coffer_dev_env *env, const char *data)
{
    char pidfile[PATH_MAX];
    char socklock[PATH_MAX];
    enum coffer_err r;

    if ((r = dev_fmt(pidfile, sizeof(pidfile), "pid file", "%s/postmaster.pid", data)) !=
            COFFER_OK ||
        (r = dev_fmt(socklock, sizeof(socklock), "socket lock", "%s%s.lock", env->pg_socket_dir,
                     PG_SOCKET_NAME)) != COFFER_OK) {
        return r;
    }
    if (unlink(pidfile) == 0) {
        coffer_warn(LOG_MOD, "removed stale %s (its postmaster is gone)", pidfile);
    } else if (errno != ENOENT) {
        return coffer_err_set(COFFER_E_IO, "removing stale %s: %s", pidfile, strerror(errno));
    }
    if (unlink(socklock) != 0 && errno != ENOENT) {
        return coffer_err_set(COFFER_E_IO, "removing stale %s: %s", socklock, strerror(errno));
    }
    return COFFER_OK;
}

static enum coffer_err spawn_postmaster(struct coffer_dev_env *env, const struct pg_ctx *c)
{
    char postgres[PATH_MAX];
    enum coffer_err r;
    pid_t pid;

    if ((r = prog_path(c, "postgres", postgres, sizeof(postgres))) != COFFER_OK) {
        return r;
    }
    const char *const argv[] = {postgres,
                                "-D",
                                c->data,
                                "-k",
                                env->pg_socket_dir,
                                "-p",
                                PG_PORT,
                                "-c",
                                "listen_addresses=",
                                "-c",
                                "unix_socket_permissions=0700",
                                "-c",
                                "logging_collector=off",
                                NULL};
    /* setsid: a Ctrl-C at the terminal reaches cofferd alone, which then stops it in order. */
    struct coffer_proc_spec spec = {
        .argv = argv,
        .envp = dev_child_env,
        .cwd = c->pg,
        .out_fd = c->log_fd,
        .err_fd = c->log_fd,
        .drop = c->user.drop,
        .uid = c->user.uid,
        .gid = c->user.gid,
        .new_session = true,
    };

    if ((r = coffer_proc_spawn(&spec, &pid)) != COFFER_OK) {
        return r;
    }
    env->pg_pid = pid;
    coffer_info(LOG_MOD, "started PostgreSQL (PID %ld, as %s), socket in %s", (long)pid,
                c->user.name, env->pg_socket_dir);
    r = wait_ready(c, env->pg_socket_dir, &env->pg_pid);
    if (r != COFFER_OK) {
        char saved[512];

        snprintf(saved, sizeof(saved), "%s", coffer_err_detail());
        if (coffer_dev_pg_stop(env) != COFFER_OK) {
            coffer_warn(LOG_MOD, "stopping PostgreSQL PID %ld: %s", (long)env->pg_pid,
                        coffer_err_detail());
        }
        r = coffer_err_set(r, "%s", saved);
    }
    return r;
}

static enum coffer_err pg_ctx_init(const struct coffer_dev_env *env, struct pg_ctx *c)
{
    enum coffer_err r;

    *c = (struct pg_ctx){.log_fd = -1};
    if ((r = find_pg_bin(c->bin, sizeof(c->bin))) != COFFER_OK ||
        (r = pick_pg_user(&c->user)) != COFFER_OK ||
        (r = dev_fmt(c->pg, sizeof(c->pg), "cluster directory", "%s/pg", env->dir)) != COFFER_OK ||
        (r = dev_fmt(c->data, sizeof(c->data), "data directory", "%s/pg/data", env->dir)) !=
            COFFER_OK ||
        (r = dev_fmt(c->log, sizeof(c->log), "log path", "%s/pg/log", env->dir)) != COFFER_OK) {
        return r;
    }
    return COFFER_OK;
}

static enum coffer_err open_log(struct pg_ctx *c)
{
    struct stat st;

    c->log_fd = open(c->log, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (c->log_fd < 0) {
        return coffer_err_set(COFFER_E_IO, "opening %s: %s", c->log, strerror(errno));
    }
    if (fstat(c->log_fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        return coffer_err_set(COFFER_E_INVALID, "%s is not a regular file", c->log);
    }
    if (c->user.drop && fchown(c->log_fd, c->user.uid, c->user.gid) != 0) {
        return coffer_err_set(COFFER_E_IO, "chown %s: %s", c->log, strerror(errno));
    }
    return COFFER_OK;
}

/* DIR/pg/data holds a complete cluster (initdb writes PG_VERSION last of all). */
static enum coffer_err have_cluster(const struct pg_ctx *c, bool *have)
{
    char version[PATH_MAX];
    enum coffer_err r;
    struct stat st;

    *have = false;
    if ((r = dev_fmt(version, sizeof(version), "PG_VERSION path", "%s/PG_VERSION", c->data)) !=
        COFFER_OK) {
        return r;
    }
    if (lstat(c->data, &st) != 0) {
        if (errno == ENOENT) {
            return COFFER_OK;
        }
        return coffer_err_set(COFFER_E_IO, "inspecting %s: %s", c->data, strerror(errno));
    }
    if (!S_ISDIR(st.st_mode) || st.st_uid != c->user.uid) {
        return coffer_err_set(COFFER_E_CONFIG,
                              "%s is not a directory owned by %s (uid %ld); remove it to start "
                              "over",
                              c->data, c->user.name, (long)c->user.uid);
    }
    if (lstat(version, &st) != 0) {
        return coffer_err_set(COFFER_E_CONFIG,
                              "%s exists but holds no cluster (no PG_VERSION); remove it to "
                              "start over",
                              c->data);
    }
    *have = true;
    return COFFER_OK;
}

enum coffer_err coffer_dev_pg_start(struct coffer_dev_env *env)
{
    struct pg_ctx c;
    enum coffer_err r;
    bool have = false;
    pid_t running;
    pid_t none = 0;
    int status;

    if ((r = pg_ctx_init(env, &c)) != COFFER_OK) {
        goto out;
    }
    if (env->pg_pid > 0) {
        /* This process started one earlier: it serves unless it has exited (then reap it). */
        if (waitpid(env->pg_pid, &status, WNOHANG) == 0) {
            goto out;
        }
        env->pg_pid = 0;
    }
    if ((r = check_reachable(env, &c.user)) != COFFER_OK ||
        (r = ensure_pg_dir(c.pg, &c.user)) != COFFER_OK ||
        (r = ensure_pg_dir(env->pg_socket_dir, &c.user)) != COFFER_OK ||
        (r = open_log(&c)) != COFFER_OK || (r = have_cluster(&c, &have)) != COFFER_OK) {
        goto out;
    }
    if (!have && (r = run_initdb(&c)) != COFFER_OK) {
        goto out;
    }
    running = running_postmaster(c.data);
    if (running > 0) {
        coffer_info(LOG_MOD, "PostgreSQL PID %ld already serves %s; reusing it", (long)running,
                    c.data);
        r = wait_ready(&c, env->pg_socket_dir, &none);
        goto out;
    }
    if ((r = remove_stale_locks(env, c.data)) != COFFER_OK) {
        goto out;
    }
    r = spawn_postmaster(env, &c);
out:
    if (c.log_fd >= 0) {
        close(c.log_fd);
    }
    return r;
}

enum coffer_err coffer_dev_pg_stop(struct coffer_dev_env *env)
{
    enum coffer_err r;
    int status = 0;
    char why[96];

    if (env == NULL || env->pg_pid <= 0) {
        return COFFER_OK;
    }
    /* SIGINT is PostgreSQL's fast shutdown: clients are disconnected, nothing is lost. */
    r = coffer_proc_stop(env->pg_pid, SIGINT, PG_STOP_TIMEOUT_MS, &status);
    if (r != COFFER_OK) {
        return coffer_err_wrap(r, "stopping PostgreSQL");
    }
    coffer_proc_status_str(status, why, sizeof(why));
    coffer_info(LOG_MOD, "PostgreSQL PID %ld stopped (%s)", (long)env->pg_pid, why);
    env->pg_pid = 0;
    return COFFER_OK;
}

/* Refuses, before anything is created, a DIR the cluster could never be started in. */
enum coffer_err dev_pg_precheck(const struct coffer_dev_env *env)
{
    char bin[PATH_MAX];
    struct pg_user u;
    enum coffer_err r;

    if ((r = find_pg_bin(bin, sizeof(bin))) != COFFER_OK || (r = pick_pg_user(&u)) != COFFER_OK) {
        return r;
    }
    return check_parents(env, &u);
}

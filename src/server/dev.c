/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The embedded default (see coffer/dev.h): one directory holding a SoftHSMv2
 * token with its own configuration and random PINs, and a private
 * PostgreSQL cluster that listens on a unix socket only.
 *
 * This file provisions and starts things; it never reads a PIN except to
 * hand it to coffer_p11_init_token, never writes a PIN anywhere but its
 * 0600 file, and never signals a process it did not start itself. Programs
 * are run through server/proc.c (argv arrays, no shell). When running as
 * root, PostgreSQL (which refuses root) runs as an unprivileged system user;
 * the token and the PIN files stay root's.
 */
#include "coffer/dev.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <locale.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "coffer/buf.h"
#include "coffer/keys.h"
#include "coffer/log.h"
#include "coffer/p11.h"
#include "coffer/secret.h"
#include "coffer/store.h"
#include "server/proc.h"

#define LOG_MOD "dev"

#define PG_ROOT "/usr/lib/postgresql"
#define PG_PREFERRED_BIN PG_ROOT "/15/bin"
#define PG_PORT "5432"
#define PG_SOCKET_NAME "/.s.PGSQL." PG_PORT
#define PG_START_TIMEOUT_MS 30000
#define PG_STOP_TIMEOUT_MS 30000
#define PG_INITDB_TIMEOUT_MS 180000
#define PG_ISREADY_TIMEOUT_MS 10000
#define PG_POLL_MS 100

/* PINs: 32 characters from an alphabet without look-alikes (0 O 1 I l). */
#define PIN_LEN 32
static const char pin_alphabet[] = "23456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";

/* How much of the server log an error detail quotes (the detail holds 512 bytes). */
#define LOG_TAIL_MAX 200
/* How much of it goes to the log on failure. */
#define LOG_TAIL_LONG 2048

/* Where SoftHSMv2 puts its module, in the order tried. */
static const char *const softhsm_paths[] = {
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib64/pkcs11/libsofthsm2.so",
    "/usr/lib/pkcs11/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
    NULL,
};

/* Characters allowed in DIR: each path ends up in conninfo strings, a
 * postgres list option and a config file, none of which quote alike. */
static const char dir_chars[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                "0123456789/._+@:~-";

/* The children's whole environment: nothing of the caller's leaks in. */
static const char *const child_env[] = {"PATH=/usr/bin:/bin", "LC_ALL=C", NULL};

/* Who runs the cluster. */
struct pg_user {
    char name[64];
    uid_t uid;
    gid_t gid;
    bool drop; /* true when running as root: the children switch to uid/gid */
};

static enum coffer_err fmt(char *out, size_t outlen, const char *what, const char *f, ...)
    COFFER_PRINTF(4, 5);

/* snprintf that reports truncation as COFFER_E_INVALID naming what was too long. */
static enum coffer_err fmt(char *out, size_t outlen, const char *what, const char *f, ...)
{
    va_list ap;
    int n;

    va_start(ap, f);
    n = vsnprintf(out, outlen, f, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= outlen) {
        out[0] = '\0';
        return coffer_err_set(COFFER_E_INVALID, "%s would be longer than %zu bytes", what,
                              outlen - 1);
    }
    return COFFER_OK;
}

/* ---- Files and directories ----------------------------------------------- */

static enum coffer_err write_all(int fd, const void *p, size_t n, const char *path)
{
    const unsigned char *c = p;

    while (n > 0) {
        ssize_t w = write(fd, c, n);

        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w < 0) {
            return coffer_err_set(COFFER_E_IO, "writing %s: %s", path, strerror(errno));
        }
        c += w;
        n -= (size_t)w;
    }
    return COFFER_OK;
}

/*
 * Creates path as a directory with mode if missing. An existing one must be
 * a real directory (not a symlink), owned by owner, and writable by its
 * owner only.
 */
static enum coffer_err ensure_dir(const char *path, mode_t mode, uid_t owner)
{
    struct stat st;

    if (mkdir(path, mode) != 0 && errno != EEXIST) {
        return coffer_err_set(COFFER_E_IO, "creating directory %s: %s", path, strerror(errno));
    }
    if (lstat(path, &st) != 0) {
        return coffer_err_set(COFFER_E_IO, "inspecting %s: %s", path, strerror(errno));
    }
    if (!S_ISDIR(st.st_mode)) {
        return coffer_err_set(COFFER_E_INVALID, "%s exists and is not a directory", path);
    }
    if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
        return coffer_err_set(COFFER_E_INVALID,
                              "%s is writable by group or others (mode %04o); it must not be", path,
                              (unsigned)(st.st_mode & 07777));
    }
    if (st.st_uid != owner) {
        return coffer_err_set(COFFER_E_INVALID, "%s is owned by uid %ld, expected uid %ld", path,
                              (long)st.st_uid, (long)owner);
    }
    return COFFER_OK;
}

/* Writes path through a temporary file and rename, so readers see old or new, never half. */
static enum coffer_err write_file_atomic(const char *path, const void *p, size_t n, mode_t mode)
{
    enum coffer_err r;
    char tmp[PATH_MAX];
    int fd;

    if ((r = fmt(tmp, sizeof(tmp), "temporary file name", "%s.tmp", path)) != COFFER_OK) {
        return r;
    }
    if (unlink(tmp) != 0 && errno != ENOENT) {
        return coffer_err_set(COFFER_E_IO, "removing stale %s: %s", tmp, strerror(errno));
    }
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
    if (fd < 0) {
        return coffer_err_set(COFFER_E_IO, "creating %s: %s", tmp, strerror(errno));
    }
    r = write_all(fd, p, n, tmp);
    if (r == COFFER_OK && fsync(fd) != 0) {
        r = coffer_err_set(COFFER_E_IO, "syncing %s: %s", tmp, strerror(errno));
    }
    if (close(fd) != 0 && r == COFFER_OK) {
        r = coffer_err_set(COFFER_E_IO, "closing %s: %s", tmp, strerror(errno));
    }
    if (r == COFFER_OK && rename(tmp, path) != 0) {
        r = coffer_err_set(COFFER_E_IO, "renaming %s to %s: %s", tmp, path, strerror(errno));
    }
    if (r != COFFER_OK) {
        (void)unlink(tmp);
    }
    return r;
}

/* Reads the whole of a small file into buf (NUL-terminated). */
static enum coffer_err read_small(const char *path, char *buf, size_t buflen, size_t *len)
{
    size_t got = 0;
    int fd;

    fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        return coffer_err_set(errno == ENOENT ? COFFER_E_NOT_FOUND : COFFER_E_IO, "opening %s: %s",
                              path, strerror(errno));
    }
    while (got < buflen - 1) {
        ssize_t n = read(fd, buf + got, buflen - 1 - got);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            int e = errno;

            close(fd);
            return coffer_err_set(COFFER_E_IO, "reading %s: %s", path, strerror(e));
        }
        if (n == 0) {
            break;
        }
        got += (size_t)n;
    }
    close(fd);
    buf[got] = '\0';
    if (len != NULL) {
        *len = got;
    }
    return COFFER_OK;
}

/* The last lines of the server log, for an error detail. Empty if unreadable. */
static void log_tail(const char *path, char *out, size_t outlen)
{
    struct stat st;
    size_t want = outlen - 1;
    size_t got = 0;
    off_t start = 0;
    char *nl;
    int fd;

    out[0] = '\0';
    fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        return;
    }
    if (fstat(fd, &st) == 0 && st.st_size > (off_t)want) {
        start = st.st_size - (off_t)want;
    }
    while (got < want) {
        ssize_t n = pread(fd, out + got, want - got, start + (off_t)got);

        if (n <= 0) {
            break;
        }
        got += (size_t)n;
    }
    close(fd);
    out[got] = '\0';
    /* Start at a line boundary when the tail was cut. */
    if (start > 0 && (nl = strchr(out, '\n')) != NULL) {
        memmove(out, nl + 1, strlen(nl + 1) + 1);
    }
}

static int rm_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    if (type == FTW_DP) {
        return rmdir(path);
    }
    return unlink(path);
}

enum coffer_err coffer_dev_remove_tree(const char *path)
{
    if (nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS) != 0 && errno != ENOENT) {
        return coffer_err_set(COFFER_E_IO, "removing %s: %s", path, strerror(errno));
    }
    return COFFER_OK;
}

/* ---- Paths --------------------------------------------------------------- */

static enum coffer_err find_module(char *out, size_t outlen)
{
    char tried[512] = "";
    size_t used = 0;

    for (size_t i = 0; softhsm_paths[i] != NULL; i++) {
        if (access(softhsm_paths[i], R_OK) == 0) {
            return fmt(out, outlen, "the SoftHSMv2 module path", "%s", softhsm_paths[i]);
        }
        int n = snprintf(tried + used, sizeof(tried) - used, "%s%s", i > 0 ? ", " : "",
                         softhsm_paths[i]);
        if (n > 0 && (size_t)n < sizeof(tried) - used) {
            used += (size_t)n;
        }
    }
    return coffer_err_set(COFFER_E_CONFIG,
                          "the SoftHSMv2 module (libsofthsm2.so) was not found; tried %s "
                          "(install the softhsm2 package)",
                          tried);
}

/* Makes dir absolute, resolving its parent's symlinks and dots when the parent exists. */
static enum coffer_err absolute_dir(const char *dir, char *out, size_t outlen)
{
    enum coffer_err r;
    char joined[PATH_MAX];
    char parent[PATH_MAX];
    char real[PATH_MAX];
    const char *base;
    char *slash;
    size_t len;

    if (dir[0] == '/') {
        r = fmt(joined, sizeof(joined), "the directory path", "%s", dir);
    } else {
        char cwd[PATH_MAX];

        if (getcwd(cwd, sizeof(cwd)) == NULL) {
            return coffer_err_set(COFFER_E_IO, "getcwd: %s", strerror(errno));
        }
        r = fmt(joined, sizeof(joined), "the directory path", "%s/%s", cwd, dir);
    }
    if (r != COFFER_OK) {
        return r;
    }
    len = strlen(joined);
    while (len > 1 && joined[len - 1] == '/') {
        joined[--len] = '\0';
    }
    slash = strrchr(joined, '/');
    base = slash + 1;
    if (base[0] == '\0' || strcmp(base, ".") == 0 || strcmp(base, "..") == 0) {
        return coffer_err_set(COFFER_E_INVALID,
                              "\"%s\" does not name a directory to create; give a path such as "
                              "/var/tmp/coffer-dev",
                              dir);
    }
    if (slash == joined) {
        r = fmt(parent, sizeof(parent), "the parent path", "/");
    } else {
        *slash = '\0';
        r = fmt(parent, sizeof(parent), "the parent path", "%s", joined);
        *slash = '/';
    }
    if (r != COFFER_OK) {
        return r;
    }
    if (realpath(parent, real) == NULL) {
        /* A missing parent is reported when the directory is created. */
        return fmt(out, outlen, "the directory path", "%s", joined);
    }
    return fmt(out, outlen, "the directory path", "%s%s%s", real, strcmp(real, "/") == 0 ? "" : "/",
               base);
}

enum coffer_err coffer_dev_env_init(const char *dir, struct coffer_dev_env *env)
{
    enum coffer_err r;
    char d[PATH_MAX];
    size_t span;

    if (env == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "coffer_dev_env_init: env is NULL");
    }
    *env = (struct coffer_dev_env){0};
    if (dir == NULL || dir[0] == '\0') {
        return coffer_err_set(COFFER_E_INVALID, "no directory given");
    }
    if ((r = absolute_dir(dir, d, sizeof(d))) != COFFER_OK) {
        return r;
    }
    span = strspn(d, dir_chars);
    if (d[span] != '\0') {
        return coffer_err_set(COFFER_E_INVALID,
                              "directory %s contains the character 0x%02x; use only letters, "
                              "digits and / . _ + @ : ~ -",
                              d, (unsigned)(unsigned char)d[span]);
    }
    if (strlen(d) + strlen("/pg/run" PG_SOCKET_NAME ".lock") >= 108) {
        return coffer_err_set(COFFER_E_INVALID,
                              "directory %s is too long: its socket path must fit in 107 bytes "
                              "(a unix socket limit); use a shorter path such as /var/tmp/coffer",
                              d);
    }
    if ((r = fmt(env->dir, sizeof(env->dir), "directory", "%s", d)) != COFFER_OK ||
        (r = fmt(env->softhsm_conf, sizeof(env->softhsm_conf), "softhsm2.conf path",
                 "%s/softhsm2.conf", d)) != COFFER_OK ||
        (r = fmt(env->token_uri, sizeof(env->token_uri), "token URI", "pkcs11:token=%s",
                 COFFER_DEV_TOKEN_LABEL)) != COFFER_OK ||
        (r = fmt(env->pin_source, sizeof(env->pin_source), "PIN source", "file:%s/token.pin", d)) !=
            COFFER_OK ||
        (r = fmt(env->so_pin_file, sizeof(env->so_pin_file), "SO PIN path", "%s/so.pin", d)) !=
            COFFER_OK ||
        (r = fmt(env->pg_socket_dir, sizeof(env->pg_socket_dir), "socket directory", "%s/pg/run",
                 d)) != COFFER_OK ||
        (r = fmt(env->db_super, sizeof(env->db_super), "conninfo",
                 "host=%s/pg/run dbname=postgres user=postgres", d)) != COFFER_OK ||
        (r = fmt(env->db_owner, sizeof(env->db_owner), "conninfo",
                 "host=%s/pg/run dbname=%s user=coffer_owner", d, COFFER_DEV_DBNAME)) !=
            COFFER_OK ||
        (r = fmt(env->db_app, sizeof(env->db_app), "conninfo",
                 "host=%s/pg/run dbname=%s user=coffer_app", d, COFFER_DEV_DBNAME)) != COFFER_OK) {
        return r;
    }
    return find_module(env->module, sizeof(env->module));
}

/* ---- Token ----------------------------------------------------------------- */

static enum coffer_err check_label(const char *label)
{
    size_t len = label != NULL ? strlen(label) : 0;

    if (len == 0 || len > 32) {
        return coffer_err_set(COFFER_E_INVALID, "token label must be 1 to 32 characters, not %zu",
                              len);
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)label[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.')) {
            return coffer_err_set(COFFER_E_INVALID,
                                  "token label \"%s\": character %zu is not one of A-Z a-z 0-9 "
                                  "- _ .",
                                  label, i + 1);
        }
    }
    return COFFER_OK;
}

/* A fresh random PIN from pin_alphabet, unbiased (rejection sampling). */
static enum coffer_err make_pin(struct coffer_secret **out)
{
    const unsigned limit = 256u - (256u % (sizeof(pin_alphabet) - 1));
    struct coffer_secret_view v;
    unsigned char rnd[64];
    enum coffer_err r;
    size_t filled = 0;

    if ((r = coffer_secret_new(PIN_LEN, out)) != COFFER_OK) {
        return r;
    }
    v = coffer_secret_view(*out);
    while (filled < v.len) {
        if (RAND_bytes(rnd, (int)sizeof(rnd)) != 1) {
            coffer_wipe(rnd, sizeof(rnd));
            coffer_secret_free(out);
            return coffer_err_set(COFFER_E_CRYPTO, "RAND_bytes failed while making a PIN");
        }
        for (size_t i = 0; i < sizeof(rnd) && filled < v.len; i++) {
            if (rnd[i] < limit) {
                v.data[filled++] = (unsigned char)pin_alphabet[rnd[i] % (sizeof(pin_alphabet) - 1)];
            }
        }
    }
    coffer_wipe(rnd, sizeof(rnd));
    return COFFER_OK;
}

/* Creates a PIN file if there is none; an existing one is kept (and checked). */
static enum coffer_err ensure_pin_file(const char *path)
{
    struct coffer_secret *pin = NULL;
    struct coffer_secret_view v;
    enum coffer_err r;
    struct stat st;
    int fd;

    if (lstat(path, &st) == 0) {
        if (!S_ISREG(st.st_mode)) {
            return coffer_err_set(COFFER_E_INVALID, "%s exists and is not a regular file", path);
        }
        if ((st.st_mode & 077) != 0 || st.st_uid != geteuid()) {
            return coffer_err_set(COFFER_E_INVALID,
                                  "%s must be owned by uid %ld with mode 0600 (it is uid %ld, "
                                  "mode %04o)",
                                  path, (long)geteuid(), (long)st.st_uid,
                                  (unsigned)(st.st_mode & 07777));
        }
        return COFFER_OK;
    }
    if (errno != ENOENT) {
        return coffer_err_set(COFFER_E_IO, "inspecting %s: %s", path, strerror(errno));
    }
    if ((r = make_pin(&pin)) != COFFER_OK) {
        return r;
    }
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        r = coffer_err_set(COFFER_E_IO, "creating %s: %s", path, strerror(errno));
        goto out;
    }
    v = coffer_secret_view(pin);
    r = write_all(fd, v.data, v.len, path);
    if (r == COFFER_OK) {
        r = write_all(fd, "\n", 1, path);
    }
    if (r == COFFER_OK && fsync(fd) != 0) {
        r = coffer_err_set(COFFER_E_IO, "syncing %s: %s", path, strerror(errno));
    }
    close(fd);
    if (r != COFFER_OK) {
        (void)unlink(path);
    }
out:
    coffer_secret_free(&pin);
    return r;
}

static enum coffer_err write_softhsm_conf(const struct coffer_dev_env *env)
{
    enum coffer_err r;
    char text[PATH_MAX + 256];

    r = fmt(text, sizeof(text), "softhsm2.conf",
            "# SoftHSMv2 configuration of the Coffer development directory.\n"
            "directories.tokendir = %s/token\n"
            "objectstore.backend = file\n"
            "log.level = ERROR\n"
            "slots.removable = false\n"
            "library.reset_on_fork = false\n",
            env->dir);
    if (r != COFFER_OK) {
        return r;
    }
    return write_file_atomic(env->softhsm_conf, text, strlen(text), 0600);
}

enum coffer_err coffer_dev_token_prepare(struct coffer_dev_env *env, const char *label)
{
    struct coffer_secret *so_pin = NULL;
    struct coffer_secret *user_pin = NULL;
    char token_dir[PATH_MAX];
    char so_source[PATH_MAX + 8];
    enum coffer_err r;

    if ((r = check_label(label)) != COFFER_OK) {
        return r;
    }
    if ((r = fmt(env->token_uri, sizeof(env->token_uri), "token URI", "pkcs11:token=%s", label)) !=
            COFFER_OK ||
        (r = fmt(token_dir, sizeof(token_dir), "token directory", "%s/token", env->dir)) !=
            COFFER_OK ||
        (r = fmt(so_source, sizeof(so_source), "SO PIN source", "file:%s", env->so_pin_file)) !=
            COFFER_OK) {
        return r;
    }
    if ((r = ensure_dir(env->dir, 0700, geteuid())) != COFFER_OK ||
        (r = ensure_dir(token_dir, 0700, geteuid())) != COFFER_OK ||
        (r = write_softhsm_conf(env)) != COFFER_OK ||
        (r = ensure_pin_file(env->so_pin_file)) != COFFER_OK ||
        (r = ensure_pin_file(env->pin_source + strlen("file:"))) != COFFER_OK) {
        return r;
    }
    if (setenv("SOFTHSM2_CONF", env->softhsm_conf, 1) != 0) {
        return coffer_err_set(COFFER_E_IO, "setenv SOFTHSM2_CONF: %s", strerror(errno));
    }
    if ((r = coffer_p11_read_pin(so_source, &so_pin)) != COFFER_OK ||
        (r = coffer_p11_read_pin(env->pin_source, &user_pin)) != COFFER_OK) {
        goto out;
    }
    r = coffer_p11_init_token(env->module, label, so_pin, user_pin);
    if (r == COFFER_E_EXISTS) {
        coffer_info(LOG_MOD, "token \"%s\" already initialised in %s; reusing it", label,
                    token_dir);
        coffer_err_clear();
        r = COFFER_OK;
    } else if (r == COFFER_OK) {
        coffer_info(LOG_MOD, "initialised token \"%s\" in %s", label, token_dir);
    } else {
        r = coffer_err_wrap(r, "initialising token \"%s\"", label);
    }
out:
    coffer_secret_free(&so_pin);
    coffer_secret_free(&user_pin);
    return r;
}

/* ---- PostgreSQL -------------------------------------------------------------- */

static bool executable(const char *dir, const char *prog)
{
    char path[PATH_MAX];

    if (fmt(path, sizeof(path), "program path", "%s/%s", dir, prog) != COFFER_OK) {
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
        return fmt(out, outlen, "PostgreSQL bin directory", "%s", PG_PREFERRED_BIN);
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
        if (fmt(bin, sizeof(bin), "bin", "%s/%s/bin", PG_ROOT, de->d_name) != COFFER_OK) {
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
    return fmt(out, outlen, "PostgreSQL bin directory", "%s/%s/bin", PG_ROOT, best);
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
    return fmt(out, n, "program path", "%s/%s", c->bin, prog);
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
    log_tail(c->log, longer, sizeof(longer));
    coffer_error(LOG_MOD, "%s; end of %s:\n%s", what, c->log, longer);
    log_tail(c->log, tail, sizeof(tail));
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
        (r = fmt(fresh, sizeof(fresh), "data directory", "%s.new", c->data)) != COFFER_OK) {
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
        .envp = child_env,
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
    if (read_small(path, buf, sizeof(buf), &len) != COFFER_OK || len == 0) {
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

    if (fmt(path, sizeof(path), "pid file path", "%s/postmaster.pid", data) != COFFER_OK ||
        read_small(path, buf, sizeof(buf), NULL) != COFFER_OK) {
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
        .argv = argv, .envp = child_env, .cwd = "/", .out_fd = -1, .err_fd = -1};

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

    if ((r = fmt(pidfile, sizeof(pidfile), "pid file", "%s/postmaster.pid", data)) != COFFER_OK ||
        (r = fmt(socklock, sizeof(socklock), "socket lock", "%s%s.lock", env->pg_socket_dir,
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
        .envp = child_env,
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
        (r = fmt(c->pg, sizeof(c->pg), "cluster directory", "%s/pg", env->dir)) != COFFER_OK ||
        (r = fmt(c->data, sizeof(c->data), "data directory", "%s/pg/data", env->dir)) !=
            COFFER_OK ||
        (r = fmt(c->log, sizeof(c->log), "log path", "%s/pg/log", env->dir)) != COFFER_OK) {
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
    if ((r = fmt(version, sizeof(version), "PG_VERSION path", "%s/PG_VERSION", c->data)) !=
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

/* ---- Everything together ------------------------------------------------ */

/* Refuses, before anything is created, a DIR the cluster could never be started in. */
static enum coffer_err precheck(const struct coffer_dev_env *env)
{
    char bin[PATH_MAX];
    struct pg_user u;
    enum coffer_err r;

    if ((r = find_pg_bin(bin, sizeof(bin))) != COFFER_OK || (r = pick_pg_user(&u)) != COFFER_OK) {
        return r;
    }
    return check_parents(env, &u);
}

/* Appends a shell single-quoted word: every byte literal, ' written as '\''. */
static enum coffer_err put_quoted(struct coffer_buf *b, const char *s)
{
    enum coffer_err r;

    if ((r = coffer_buf_put_u8(b, '\'')) != COFFER_OK) {
        return r;
    }
    for (; *s != '\0'; s++) {
        if (*s == '\'') {
            r = coffer_buf_put(b, "'\\''", 4);
        } else {
            r = coffer_buf_put_u8(b, (uint8_t)*s);
        }
        if (r != COFFER_OK) {
            return r;
        }
    }
    return coffer_buf_put_u8(b, '\'');
}

static enum coffer_err put_export(struct coffer_buf *b, const char *name, const char *value)
{
    enum coffer_err r;

    if ((r = coffer_buf_put(b, "export ", 7)) != COFFER_OK ||
        (r = coffer_buf_put(b, name, strlen(name))) != COFFER_OK ||
        (r = coffer_buf_put_u8(b, '=')) != COFFER_OK || (r = put_quoted(b, value)) != COFFER_OK) {
        return r;
    }
    return coffer_buf_put_u8(b, '\n');
}

/* DIR/env.sh: what a client needs, with the PIN's source but never the PIN. */
static enum coffer_err write_env_sh(const struct coffer_dev_env *env)
{
    static const char head[] = "# Coffer development environment; written by cofferd --dev.\n"
                               "# Use it with: source env.sh\n";
    struct coffer_buf b = {0};
    char path[PATH_MAX];
    enum coffer_err r;

    if ((r = fmt(path, sizeof(path), "env.sh path", "%s/env.sh", env->dir)) != COFFER_OK) {
        return r;
    }
    if ((r = coffer_buf_put(&b, head, strlen(head))) != COFFER_OK ||
        (r = put_export(&b, "COFFER_DEV_DIR", env->dir)) != COFFER_OK ||
        (r = put_export(&b, "SOFTHSM2_CONF", env->softhsm_conf)) != COFFER_OK ||
        (r = put_export(&b, "COFFER_PKCS11_MODULE", env->module)) != COFFER_OK ||
        (r = put_export(&b, "COFFER_TOKEN_URI", env->token_uri)) != COFFER_OK ||
        (r = put_export(&b, "COFFER_PIN_SOURCE", env->pin_source)) != COFFER_OK ||
        (r = put_export(&b, "COFFER_DATABASE", env->db_app)) != COFFER_OK ||
        (r = put_export(&b, "COFFER_DATABASE_OWNER", env->db_owner)) != COFFER_OK) {
        goto out;
    }
    r = write_file_atomic(path, b.data, b.len, 0600);
out:
    coffer_buf_cleanup(&b);
    return r;
}

/* The master key, org "dev" and project "demo", each made only if missing. */
static enum coffer_err provision_keys(const struct coffer_dev_env *env)
{
    struct coffer_p11_config cfg = {
        .module = env->module, .token_uri = env->token_uri, .pin_source = env->pin_source};
    struct coffer_keys_created created;
    struct coffer_store_mk mk;
    struct coffer_project project;
    struct coffer_org org;
    struct coffer_p11 *p11 = NULL;
    struct coffer_keys *keys = NULL;
    struct coffer_store *st = NULL;
    char id[COFFER_UUID_STR_LEN];
    enum coffer_err r;

    if ((r = coffer_p11_open(&cfg, &p11)) != COFFER_OK ||
        (r = coffer_keys_new(p11, &keys)) != COFFER_OK ||
        (r = coffer_store_open(env->db_app, &st)) != COFFER_OK) {
        goto out;
    }
    r = coffer_store_mk_current(st, &mk);
    if (r == COFFER_E_NOT_FOUND) {
        coffer_err_clear();
        if ((r = coffer_keys_mk_create(keys, st, &created)) != COFFER_OK) {
            r = coffer_err_wrap(r, "creating the master key");
            goto out;
        }
        coffer_info(LOG_MOD, "created master key v%u (%s)", (unsigned)created.version,
                    created.label);
    } else if (r == COFFER_OK) {
        coffer_info(LOG_MOD, "master key v%u is current; reusing it", (unsigned)mk.version);
    } else {
        goto out;
    }
    r = coffer_store_org_by_name(st, COFFER_DEV_ORG, &org);
    if (r == COFFER_E_NOT_FOUND) {
        coffer_err_clear();
        if ((r = coffer_keys_org_create(keys, st, COFFER_DEV_ORG, &org, &created)) != COFFER_OK) {
            r = coffer_err_wrap(r, "creating org \"%s\"", COFFER_DEV_ORG);
            goto out;
        }
        coffer_uuid_format(&org.id, id);
        coffer_info(LOG_MOD, "created org \"%s\" (%s) with org key v%u", COFFER_DEV_ORG, id,
                    (unsigned)created.version);
    } else if (r == COFFER_OK) {
        coffer_info(LOG_MOD, "org \"%s\" exists; reusing it", COFFER_DEV_ORG);
    } else {
        goto out;
    }
    r = coffer_store_project_by_name(st, &org.id, COFFER_DEV_PROJECT, &project);
    if (r == COFFER_E_NOT_FOUND) {
        coffer_err_clear();
        if ((r = coffer_store_project_insert(st, &org.id, COFFER_DEV_PROJECT, &project)) !=
            COFFER_OK) {
            r = coffer_err_wrap(r, "creating project \"%s\"", COFFER_DEV_PROJECT);
            goto out;
        }
        coffer_uuid_format(&project.id, id);
        coffer_info(LOG_MOD, "created project \"%s\" (%s)", COFFER_DEV_PROJECT, id);
    }
out:
    coffer_store_close(&st);
    coffer_keys_free(&keys);
    coffer_p11_close(&p11);
    return r;
}

enum coffer_err coffer_dev_up(const char *dir, struct coffer_dev_env *env)
{
    enum coffer_err r;
    int applied = 0;

    if ((r = coffer_dev_env_init(dir, env)) != COFFER_OK || (r = precheck(env)) != COFFER_OK ||
        (r = coffer_dev_token_prepare(env, COFFER_DEV_TOKEN_LABEL)) != COFFER_OK ||
        (r = coffer_dev_pg_start(env)) != COFFER_OK) {
        return r;
    }
    if ((r = coffer_store_bootstrap(env->db_super, COFFER_DEV_DBNAME)) != COFFER_OK) {
        r = coffer_err_wrap(r, "bootstrapping database %s", COFFER_DEV_DBNAME);
        goto out;
    }
    if ((r = coffer_store_migrate(env->db_owner, &applied)) != COFFER_OK) {
        r = coffer_err_wrap(r, "migrating database %s", COFFER_DEV_DBNAME);
        goto out;
    }
    if (applied > 0) {
        coffer_info(LOG_MOD, "applied %d migration(s) to database %s", applied, COFFER_DEV_DBNAME);
    }
    if ((r = provision_keys(env)) != COFFER_OK || (r = write_env_sh(env)) != COFFER_OK) {
        goto out;
    }
out:
    if (r != COFFER_OK && env->pg_pid > 0) {
        /* Do not leave a cluster this call started running behind a failure. */
        char saved[512];

        snprintf(saved, sizeof(saved), "%s", coffer_err_detail());
        if (coffer_dev_pg_stop(env) != COFFER_OK) {
            coffer_warn(LOG_MOD, "%s", coffer_err_detail());
        }
        r = coffer_err_set(r, "%s", saved);
    }
    return r;
}

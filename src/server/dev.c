/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The embedded default (see coffer/dev.h): one directory holding a SoftHSMv2
 * token with its own configuration and random PINs, and a private
 * PostgreSQL cluster that listens on a unix socket only.
 *
 * This file owns the directory, the token, env.sh and the provisioning as a
 * whole; dev_pg.c owns the cluster and devtls.c the test CA. It never reads
 * a PIN except to hand it to coffer_p11_init_token, never writes a PIN
 * anywhere but its 0600 file, and never signals a process it did not start
 * itself. Programs are run through server/proc.c (argv arrays, no shell).
 * When running as root, PostgreSQL (which refuses root) runs as an
 * unprivileged system user; the token and the PIN files stay root's.
 */
#include "coffer/dev.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "coffer/arena.h"
#include "coffer/buf.h"
#include "coffer/keys.h"
#include "coffer/log.h"
#include "coffer/p11.h"
#include "coffer/policy.h"
#include "coffer/secret.h"
#include "coffer/store.h"
#include "server/dev_int.h"

/* PINs: 32 characters from an alphabet without look-alikes (0 O 1 I l). */
#define PIN_LEN 32
static const char pin_alphabet[] = "23456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";

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
const char *const dev_child_env[] = {"PATH=/usr/bin:/bin", "LC_ALL=C", NULL};

enum coffer_err dev_fmt(char *out, size_t outlen, const char *what, const char *f, ...)
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

    if ((r = dev_fmt(tmp, sizeof(tmp), "temporary file name", "%s.tmp", path)) != COFFER_OK) {
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
enum coffer_err dev_read_small(const char *path, char *buf, size_t buflen, size_t *len)
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
void dev_log_tail(const char *path, char *out, size_t outlen)
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
            return dev_fmt(out, outlen, "the SoftHSMv2 module path", "%s", softhsm_paths[i]);
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
        r = dev_fmt(joined, sizeof(joined), "the directory path", "%s", dir);
    } else {
        char cwd[PATH_MAX];

        if (getcwd(cwd, sizeof(cwd)) == NULL) {
            return coffer_err_set(COFFER_E_IO, "getcwd: %s", strerror(errno));
        }
        r = dev_fmt(joined, sizeof(joined), "the directory path", "%s/%s", cwd, dir);
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
        r = dev_fmt(parent, sizeof(parent), "the parent path", "/");
    } else {
        *slash = '\0';
        r = dev_fmt(parent, sizeof(parent), "the parent path", "%s", joined);
        *slash = '/';
    }
    if (r != COFFER_OK) {
        return r;
    }
    if (realpath(parent, real) == NULL) {
        /* A missing parent is reported when the directory is created. */
        return dev_fmt(out, outlen, "the directory path", "%s", joined);
    }
    return dev_fmt(out, outlen, "the directory path", "%s%s%s", real,
                   strcmp(real, "/") == 0 ? "" : "/", base);
}

enum coffer_err coffer_dev_env_init(const char *dir, struct coffer_dev_env *env)
{
    enum coffer_err r;
    char d[PATH_MAX];
    const char *listen;
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
    if ((r = dev_fmt(env->dir, sizeof(env->dir), "directory", "%s", d)) != COFFER_OK ||
        (r = dev_fmt(env->softhsm_conf, sizeof(env->softhsm_conf), "softhsm2.conf path",
                     "%s/softhsm2.conf", d)) != COFFER_OK ||
        (r = dev_fmt(env->token_uri, sizeof(env->token_uri), "token URI", "pkcs11:token=%s",
                     COFFER_DEV_TOKEN_LABEL)) != COFFER_OK ||
        (r = dev_fmt(env->pin_source, sizeof(env->pin_source), "PIN source", "file:%s/token.pin",
                     d)) != COFFER_OK ||
        (r = dev_fmt(env->so_pin_file, sizeof(env->so_pin_file), "SO PIN path", "%s/so.pin", d)) !=
            COFFER_OK ||
        (r = dev_fmt(env->pg_socket_dir, sizeof(env->pg_socket_dir), "socket directory",
                     "%s/pg/run", d)) != COFFER_OK ||
        (r = dev_fmt(env->db_super, sizeof(env->db_super), "conninfo",
                     "host=%s/pg/run dbname=postgres user=postgres", d)) != COFFER_OK ||
        (r = dev_fmt(env->db_owner, sizeof(env->db_owner), "conninfo",
                     "host=%s/pg/run dbname=%s user=coffer_owner", d, COFFER_DEV_DBNAME)) !=
            COFFER_OK ||
        (r = dev_fmt(env->db_app, sizeof(env->db_app), "conninfo",
                     "host=%s/pg/run dbname=%s user=coffer_app", d, COFFER_DEV_DBNAME)) !=
            COFFER_OK ||
        (r = dev_fmt(env->config, sizeof(env->config), "config path", "%s/coffer.yaml", d)) !=
            COFFER_OK) {
        return r;
    }
    listen = getenv("COFFER_DEV_LISTEN");
    if (listen == NULL || listen[0] == '\0') {
        listen = COFFER_DEV_LISTEN_DEFAULT;
    }
    if (strspn(listen, "0123456789.:[]abcdefABCDEF") != strlen(listen) ||
        (r = dev_fmt(env->listen, sizeof(env->listen), "COFFER_DEV_LISTEN", "%s", listen)) !=
            COFFER_OK) {
        return coffer_err_set(COFFER_E_CONFIG, "COFFER_DEV_LISTEN must be an address:port");
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

    r = dev_fmt(text, sizeof(text), "softhsm2.conf",
                "# SoftHSMv2 configuration of the Coffer development directory.\n"
                "directories.tokendir = %s/token\n"
                "objectstore.backend = file\n"
                "log.level = ERROR\n"
                "slots.removable = false\n"
                "# A forked process starts from a clean library: it never inherits the\n"
                "# parent's sessions or login, and initialises and logs in itself.\n"
                "library.reset_on_fork = true\n",
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
    if ((r = dev_fmt(env->token_uri, sizeof(env->token_uri), "token URI", "pkcs11:token=%s",
                     label)) != COFFER_OK ||
        (r = dev_fmt(token_dir, sizeof(token_dir), "token directory", "%s/token", env->dir)) !=
            COFFER_OK ||
        (r = dev_fmt(so_source, sizeof(so_source), "SO PIN source", "file:%s", env->so_pin_file)) !=
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

/* ---- Everything together ------------------------------------------------ */

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

/*
 * DIR/env.sh: what a client needs, with the PIN's source but never the PIN.
 * COFFER_CLIENT_CERT and COFFER_CLIENT_KEY name the admin's pair, the
 * identity an API client presents by default; the agents' pairs are there
 * for trying the API as each of them.
 */
/* Appends s as a single-quoted YAML scalar. */
static enum coffer_err put_yaml_quoted(struct coffer_buf *b, const char *s)
{
    enum coffer_err r = coffer_buf_put(b, "'", 1);

    for (; r == COFFER_OK && *s != '\0'; s++) {
        r = *s == '\'' ? coffer_buf_put(b, "''", 2) : coffer_buf_put(b, s, 1);
    }
    return r == COFFER_OK ? coffer_buf_put(b, "'", 1) : r;
}

/* One "key: 'value'" line at the given indentation. */
static enum coffer_err put_yaml(struct coffer_buf *b, const char *indent_key, const char *value)
{
    enum coffer_err r;

    if ((r = coffer_buf_put(b, indent_key, strlen(indent_key))) != COFFER_OK ||
        (r = coffer_buf_put(b, ": ", 2)) != COFFER_OK ||
        (r = put_yaml_quoted(b, value)) != COFFER_OK) {
        return r;
    }
    return coffer_buf_put(b, "\n", 1);
}

/*
 * DIR/coffer.yaml: cofferd's configuration for the embedded default, so that
 * `cofferd -c DIR/coffer.yaml` serves the same environment (docs/config.md).
 */
static enum coffer_err write_config(const struct coffer_dev_env *env)
{
    static const char head[] = "# cofferd configuration of the embedded default; written by "
                               "cofferd --dev.\n";
    struct coffer_buf b = {0};
    enum coffer_err r;

    if ((r = coffer_buf_put(&b, head, strlen(head))) != COFFER_OK ||
        (r = put_yaml(&b, "listen", env->listen)) != COFFER_OK ||
        (r = coffer_buf_put(&b, "tls:\n", 5)) != COFFER_OK ||
        (r = put_yaml(&b, "  cert", env->tls.server_cert)) != COFFER_OK ||
        (r = put_yaml(&b, "  key", env->tls.server_key)) != COFFER_OK ||
        (r = put_yaml(&b, "  client_ca", env->tls.ca)) != COFFER_OK ||
        (r = put_yaml(&b, "  trust_domain", COFFER_DEV_TRUST_DOMAIN)) != COFFER_OK ||
        (r = coffer_buf_put(&b, "pkcs11:\n", 8)) != COFFER_OK ||
        (r = put_yaml(&b, "  module", env->module)) != COFFER_OK ||
        (r = put_yaml(&b, "  token_uri", env->token_uri)) != COFFER_OK ||
        (r = put_yaml(&b, "  pin_source", env->pin_source)) != COFFER_OK ||
        (r = put_yaml(&b, "database", env->db_app)) != COFFER_OK) {
        goto out;
    }
    r = write_file_atomic(env->config, b.data, b.len, 0600);
out:
    coffer_buf_cleanup(&b);
    return r;
}

static enum coffer_err write_env_sh(const struct coffer_dev_env *env)
{
    char addr[sizeof(env->listen) + 16];
    char auditor[sizeof(env->db_app)];
    char admin[sizeof(env->db_app)];
    /*
     * The auditor's login reads the audit views only; the superuser's, on the
     * Coffer database, can change anything, the audit log included, which is
     * what tamper demonstrations need and why it is here for development only.
     */
    static const char admin_note[] =
        "# Development only: the cluster superuser on the Coffer database, which can\n"
        "# change anything, the audit log included. Never give this to production clients.\n";
    static const char head[] = "# Coffer development environment; written by cofferd --dev.\n"
                               "# Use it with: source env.sh\n";
    struct coffer_buf b = {0};
    char path[PATH_MAX];
    enum coffer_err r;

    if ((r = dev_fmt(path, sizeof(path), "env.sh path", "%s/env.sh", env->dir)) != COFFER_OK ||
        (r = dev_fmt(addr, sizeof(addr), "API address", "https://%s", env->listen)) != COFFER_OK ||
        (r = dev_fmt(auditor, sizeof(auditor), "auditor conninfo", "host=%s dbname=%s user=%s",
                     env->pg_socket_dir, COFFER_DEV_DBNAME, "coffer_auditor")) != COFFER_OK ||
        (r = dev_fmt(admin, sizeof(admin), "superuser conninfo", "host=%s dbname=%s user=%s",
                     env->pg_socket_dir, COFFER_DEV_DBNAME, "postgres")) != COFFER_OK) {
        return r;
    }
    if ((r = coffer_buf_put(&b, head, strlen(head))) != COFFER_OK ||
        (r = put_export(&b, "COFFER_DEV_DIR", env->dir)) != COFFER_OK ||
        (r = put_export(&b, "SOFTHSM2_CONF", env->softhsm_conf)) != COFFER_OK ||
        (r = put_export(&b, "COFFER_PKCS11_MODULE", env->module)) != COFFER_OK ||
        (r = put_export(&b, "COFFER_TOKEN_URI", env->token_uri)) != COFFER_OK ||
        (r = put_export(&b, "COFFER_PIN_SOURCE", env->pin_source)) != COFFER_OK ||
        (r = put_export(&b, "COFFER_DATABASE", env->db_app)) != COFFER_OK ||
        (r = put_export(&b, "COFFER_DATABASE_OWNER", env->db_owner)) != COFFER_OK ||
        (r = put_export(&b, "COFFER_AUDITOR_DSN", auditor)) != COFFER_OK ||
        (r = coffer_buf_put(&b, admin_note, strlen(admin_note))) != COFFER_OK ||
        (r = put_export(&b, "COFFER_DB_ADMIN_DSN", admin)) != COFFER_OK ||
        (r = put_export(&b, "COFFER_ADDR", addr)) != COFFER_OK ||
        (r = put_export(&b, "COFFER_CONFIG", env->config)) != COFFER_OK ||
        (r = put_export(&b, "COFFER_CACERT", env->tls.ca)) != COFFER_OK ||
        (r = put_export(&b, "COFFER_ADMIN_CERT", env->tls.admin_cert)) != COFFER_OK ||
        (r = put_export(&b, "COFFER_ADMIN_KEY", env->tls.admin_key)) != COFFER_OK ||
        (r = put_export(&b, "COFFER_AGENT_CERT", env->tls.agent_cert)) != COFFER_OK ||
        (r = put_export(&b, "COFFER_AGENT_KEY", env->tls.agent_key)) != COFFER_OK ||
        (r = put_export(&b, "COFFER_AGENT2_CERT", env->tls.agent2_cert)) != COFFER_OK ||
        (r = put_export(&b, "COFFER_AGENT2_KEY", env->tls.agent2_key)) != COFFER_OK ||
        (r = put_export(&b, "COFFER_CLIENT_CERT", env->tls.admin_cert)) != COFFER_OK ||
        (r = put_export(&b, "COFFER_CLIENT_KEY", env->tls.admin_key)) != COFFER_OK) {
        goto out;
    }
    r = write_file_atomic(path, b.data, b.len, 0600);
out:
    coffer_buf_cleanup(&b);
    return r;
}

/*
 * Makes the built-in policy/dev.yaml the policy of org "dev" (agent types,
 * the phases and members of project "demo", a sample credential rule).
 * Applying it again on a later run changes nothing.
 */
static enum coffer_err apply_dev_policy(struct coffer_store *st)
{
    struct coffer_policy_diags d = {0};
    struct coffer_policy *p = NULL;
    struct coffer_arena *a = NULL;
    struct coffer_store_policy_result res;
    enum coffer_err r;

    if ((r = coffer_policy_new(&p)) != COFFER_OK || (r = coffer_arena_new(0, &a)) != COFFER_OK) {
        goto out;
    }
    if ((r = coffer_policy_add_buffer(p, "policy/dev.yaml (built in)", coffer_dev_policy,
                                      coffer_dev_policy_len, &d)) != COFFER_OK ||
        (r = coffer_policy_finish(p, &d)) != COFFER_OK) {
        r = d.n > 0 ? coffer_err_set(r, "the built-in policy is invalid: %s", d.lines[0])
                    : coffer_err_wrap(r, "loading the built-in policy");
        goto out;
    }
    if ((r = coffer_store_policy_apply(st, &p->orgs[0], "cofferd --dev", a, &res)) != COFFER_OK) {
        r = coffer_err_wrap(r, "applying the built-in policy");
        goto out;
    }
    if (res.changed) {
        coffer_info(LOG_MOD, "applied policy/dev.yaml as policy version %u of org \"%s\"",
                    (unsigned)res.version, COFFER_DEV_ORG);
    }
out:
    coffer_policy_diags_cleanup(&d);
    coffer_policy_free(&p);
    coffer_arena_free(&a);
    return r;
}

/*
 * The key that signs audit checkpoints: made and recorded when the database
 * has no current one; otherwise the current one must load from the token and
 * pass its checks, so a token that lost it is reported at start-up.
 */
static enum coffer_err provision_audit_key(struct coffer_keys *keys, struct coffer_store *st)
{
    struct coffer_keys_audit_key key;
    uint32_t version = 0;
    enum coffer_err r;

    r = coffer_store_audit_key_current(st, &version);
    if (r == COFFER_E_NOT_FOUND) {
        coffer_err_clear();
        if ((r = coffer_keys_audit_key_create(keys, st, &key)) != COFFER_OK) {
            return coffer_err_wrap(r, "creating the audit signing key");
        }
        coffer_info(LOG_MOD, "created audit signing key %s", key.label);
        return COFFER_OK;
    }
    if (r != COFFER_OK) {
        return r;
    }
    if ((r = coffer_keys_audit_key_load(keys, version, &key)) != COFFER_OK) {
        return coffer_err_wrap(r, "checking the current audit signing key");
    }
    coffer_info(LOG_MOD, "audit signing key %s is current; reusing it", key.label);
    return COFFER_OK;
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
    /* The key that digests bearer tokens: made once, kept in the token like the MK. */
    r = coffer_keys_token_mac_create(keys, &created);
    if (r == COFFER_E_EXISTS) {
        coffer_err_clear();
        coffer_info(LOG_MOD, "token MAC key %s exists; reusing it", COFFER_TOKEN_MAC_LABEL);
    } else if (r == COFFER_OK) {
        coffer_info(LOG_MOD, "created token MAC key %s", created.label);
    } else {
        r = coffer_err_wrap(r, "creating the token MAC key");
        goto out;
    }
    if ((r = provision_audit_key(keys, st)) != COFFER_OK) {
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
    } else if (r != COFFER_OK) {
        goto out;
    }
    r = apply_dev_policy(st);
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

    if ((r = coffer_dev_env_init(dir, env)) != COFFER_OK ||
        (r = dev_pg_precheck(env)) != COFFER_OK ||
        (r = coffer_dev_token_prepare(env, COFFER_DEV_TOKEN_LABEL)) != COFFER_OK ||
        (r = coffer_dev_tls_provision(env->dir, &env->tls)) != COFFER_OK ||
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
    if ((r = provision_keys(env)) != COFFER_OK || (r = write_config(env)) != COFFER_OK ||
        (r = write_env_sh(env)) != COFFER_OK) {
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

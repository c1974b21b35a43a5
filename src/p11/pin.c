/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Reading the token's user PIN from its configured source: a file only its
 * owner can read ("file:PATH"), an environment variable ("env:NAME"), or the
 * terminal with echo off ("prompt"). Nothing else is a PIN source, so a PIN
 * can never come from the command line or the configuration itself.
 *
 * The PIN only ever lives in a struct coffer_secret. This file never writes
 * the PIN, or the source string (which might be a misplaced PIN), into an
 * error detail or a log line. The terminal itself is handled by
 * src/common/tty.c, which leaves it as it found it on every path.
 */
#include "p11/p11_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "coffer/tty.h"

/* Removes one trailing "\n" or "\r\n" from a length. */
static size_t strip_newline(const unsigned char *p, size_t len)
{
    if (len > 0 && p[len - 1] == '\n') {
        len--;
        if (len > 0 && p[len - 1] == '\r') {
            len--;
        }
    }
    return len;
}

static enum coffer_err check_pin_file(int fd, const char *path)
{
    struct stat st;

    if (fstat(fd, &st) != 0) {
        return coffer_err_set(COFFER_E_PIN, "cannot stat PIN file %s: %s", path, strerror(errno));
    }
    if (!S_ISREG(st.st_mode)) {
        return coffer_err_set(COFFER_E_PIN, "PIN file %s is not a regular file", path);
    }
    if ((st.st_mode & (S_IRGRP | S_IWGRP | S_IROTH | S_IWOTH)) != 0) {
        return coffer_err_set(COFFER_E_PIN,
                              "PIN file %s has mode %04o: it must not be readable or writable "
                              "by group or others (chmod 600)",
                              path, (unsigned)(st.st_mode & 07777));
    }
    if (st.st_size > (off_t)P11_PIN_MAX) {
        return coffer_err_set(COFFER_E_PIN, "PIN file %s is %lld bytes; a PIN is at most %u", path,
                              (long long)st.st_size, P11_PIN_MAX);
    }
    return COFFER_OK;
}

static enum coffer_err read_pin_file(const char *path, struct coffer_secret **out)
{
    struct coffer_secret *pin = NULL;
    struct coffer_secret_view v;
    enum coffer_err rc;
    size_t total = 0;
    int fd = -1;

    if (path[0] == '\0') {
        return coffer_err_set(COFFER_E_PIN, "PIN source file: names no path");
    }
    /* O_NONBLOCK so that a FIFO planted at the path cannot stall the open. */
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        return coffer_err_set(COFFER_E_PIN, "cannot open PIN file %s: %s", path, strerror(errno));
    }
    if ((rc = check_pin_file(fd, path)) != COFFER_OK) {
        goto out;
    }
    /* One byte more than allowed, to notice a file that grew after fstat. */
    if ((rc = coffer_secret_new(P11_PIN_MAX + 1, &pin)) != COFFER_OK) {
        goto out;
    }
    v = coffer_secret_view(pin);
    while (total < v.len) {
        ssize_t r = read(fd, v.data + total, v.len - total);

        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r < 0) {
            rc = coffer_err_set(COFFER_E_PIN, "cannot read PIN file %s: %s", path, strerror(errno));
            goto out;
        }
        if (r == 0) {
            break;
        }
        total += (size_t)r;
    }
    if (total > P11_PIN_MAX) {
        rc = coffer_err_set(COFFER_E_PIN, "PIN file %s is longer than %u bytes", path, P11_PIN_MAX);
        goto out;
    }
    total = strip_newline(v.data, total);
    if (total == 0) {
        rc = coffer_err_set(COFFER_E_PIN, "PIN file %s is empty", path);
        goto out;
    }
    if ((rc = coffer_secret_truncate(pin, total)) != COFFER_OK) {
        goto out;
    }
    *out = pin;
    pin = NULL;
out:
    coffer_secret_free(&pin);
    if (fd >= 0) {
        (void)close(fd);
    }
    return rc;
}

static enum coffer_err read_pin_env(const char *name, struct coffer_secret **out)
{
    const char *value;
    size_t len;

    if (name[0] == '\0') {
        return coffer_err_set(COFFER_E_PIN, "PIN source env: names no variable");
    }
    value = getenv(name);
    if (value == NULL || value[0] == '\0') {
        return coffer_err_set(COFFER_E_PIN, "PIN environment variable %s is unset or empty", name);
    }
    len = strlen(value);
    if (len > P11_PIN_MAX) {
        return coffer_err_set(COFFER_E_PIN, "PIN environment variable %s is longer than %u bytes",
                              name, P11_PIN_MAX);
    }
    return coffer_secret_from(value, len, out);
}

/* ---- prompt ---------------------------------------------------------------- */

/*
 * The terminal, echo off, through the one reader of typed secrets: every
 * failure of it, a refused line included, is a PIN failure here.
 */
static enum coffer_err read_pin_prompt(struct coffer_secret **out)
{
    const struct coffer_tty_request req = {
        .prompt = "Token user PIN: ",
        .what = "PIN",
        .max = P11_PIN_MAX,
        .stdin_unless_tty = false,
        .fail = COFFER_E_PIN,
        .refuse = COFFER_E_PIN,
    };

    return coffer_tty_read_secret(&req, out);
}

enum coffer_err coffer_p11_read_pin(const char *source, struct coffer_secret **out)
{
    if (out == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "coffer_p11_read_pin: no output");
    }
    *out = NULL;
    if (source == NULL || source[0] == '\0') {
        return coffer_err_set(COFFER_E_PIN,
                              "no PIN source configured: use file:PATH, env:NAME or prompt");
    }
    if (strncmp(source, "file:", 5) == 0) {
        return read_pin_file(source + 5, out);
    }
    if (strncmp(source, "env:", 4) == 0) {
        return read_pin_env(source + 4, out);
    }
    if (strcmp(source, "prompt") == 0) {
        return read_pin_prompt(out);
    }
    /* The source is not echoed: it might be a PIN written where a source belongs. */
    return coffer_err_set(COFFER_E_PIN,
                          "PIN source must be file:PATH, env:NAME or prompt (the PIN itself is "
                          "never accepted in the configuration)");
}

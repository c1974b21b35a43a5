/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Reading the token's user PIN from its configured source: a file only its
 * owner can read ("file:PATH"), an environment variable ("env:NAME"), or the
 * terminal with echo off ("prompt"). Nothing else is a PIN source, so a PIN
 * can never come from the command line or the configuration itself.
 *
 * The PIN only ever lives in a struct coffer_secret. This file never writes
 * the PIN, or the source string (which might be a misplaced PIN), into an
 * error detail or a log line, and it leaves the terminal as it found it on
 * every path.
 */
#include "p11/p11_int.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include "coffer/mem.h"

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

static volatile sig_atomic_t prompt_signal;

static void on_prompt_signal(int sig)
{
    prompt_signal = sig;
}

/*
 * Signals that would leave the terminal without echo if they ended or stopped
 * the process. While the prompt waits they are blocked except inside ppoll,
 * so one that arrives at any moment is noticed rather than lost before a read.
 * The prompt runs at start-up, on the thread that will receive them.
 */
static const int prompt_signals[] = {SIGINT, SIGTERM, SIGQUIT, SIGHUP, SIGTSTP};
#define N_PROMPT_SIGNALS (sizeof(prompt_signals) / sizeof(prompt_signals[0]))

static void catch_prompt_signals(struct sigaction saved[N_PROMPT_SIGNALS], sigset_t *old_mask)
{
    struct sigaction sa;
    sigset_t block;

    prompt_signal = 0;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_prompt_signal;
    sigemptyset(&sa.sa_mask);
    /* No SA_RESTART: a signal must interrupt the read so the terminal is restored. */
    sa.sa_flags = 0;
    sigemptyset(&block);
    for (size_t i = 0; i < N_PROMPT_SIGNALS; i++) {
        (void)sigaction(prompt_signals[i], &sa, &saved[i]);
        sigaddset(&block, prompt_signals[i]);
    }
    (void)pthread_sigmask(SIG_BLOCK, &block, old_mask);
}

/*
 * The caller's handlers come back first, then the mask: a signal still
 * pending reaches the caller's handler, with the terminal already restored.
 */
static void restore_prompt_signals(const struct sigaction saved[N_PROMPT_SIGNALS],
                                   const sigset_t *old_mask)
{
    for (size_t i = 0; i < N_PROMPT_SIGNALS; i++) {
        (void)sigaction(prompt_signals[i], &saved[i], NULL);
    }
    (void)pthread_sigmask(SIG_SETMASK, old_mask, NULL);
}

static void tty_write(int fd, const char *text)
{
    size_t len = strlen(text);

    while (len > 0) {
        ssize_t w = write(fd, text, len);

        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            return;
        }
        text += w;
        len -= (size_t)w;
    }
}

/*
 * Reads one line from the terminal into v (without the newline) and sets
 * *out_len. A line longer than v.len is read to its end and refused, so the
 * rest of it is not left for the next reader of the terminal.
 */
static enum coffer_err read_tty_line(int fd, const sigset_t *wait_mask, struct coffer_secret_view v,
                                     size_t *out_len)
{
    size_t n = 0;
    bool too_long = false;

    for (;;) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        unsigned char c = 0;
        ssize_t r;

        if (prompt_signal != 0) {
            return coffer_err_set(COFFER_E_PIN, "PIN prompt interrupted by signal %d",
                                  (int)prompt_signal);
        }
        /* The prompt signals are deliverable only while waiting here. */
        if (ppoll(&pfd, 1, NULL, wait_mask) < 0) {
            if (errno == EINTR) {
                continue;
            }
            return coffer_err_set(COFFER_E_PIN, "waiting for the PIN on /dev/tty: %s",
                                  strerror(errno));
        }
        r = read(fd, &c, 1);
        if (r < 0 && (errno == EINTR || errno == EAGAIN)) {
            continue;
        }
        if (r < 0) {
            return coffer_err_set(COFFER_E_PIN, "cannot read PIN from /dev/tty: %s",
                                  strerror(errno));
        }
        if (r == 0 || c == '\n') {
            break;
        }
        if (n < v.len) {
            v.data[n++] = c;
        } else {
            too_long = true;
        }
        coffer_wipe(&c, sizeof(c));
    }
    if (too_long) {
        return coffer_err_set(COFFER_E_PIN, "PIN typed at the prompt is longer than %u bytes",
                              P11_PIN_MAX);
    }
    *out_len = strip_newline(v.data, n);
    return COFFER_OK;
}

static enum coffer_err read_pin_prompt(struct coffer_secret **out)
{
    struct sigaction saved_signals[N_PROMPT_SIGNALS];
    sigset_t old_mask;
    struct coffer_secret *pin = NULL;
    struct termios saved, quiet;
    bool term_changed = false;
    enum coffer_err rc;
    size_t len = 0;
    int fd;

    fd = open("/dev/tty", O_RDWR | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        return coffer_err_set(COFFER_E_PIN, "PIN prompt: cannot open /dev/tty: %s",
                              strerror(errno));
    }
    if (tcgetattr(fd, &saved) != 0) {
        rc = coffer_err_set(COFFER_E_PIN, "PIN prompt: /dev/tty: %s", strerror(errno));
        (void)close(fd);
        return rc;
    }
    if ((rc = coffer_secret_new(P11_PIN_MAX, &pin)) != COFFER_OK) {
        (void)close(fd);
        return rc;
    }
    catch_prompt_signals(saved_signals, &old_mask);
    quiet = saved;
    quiet.c_lflag &= ~(tcflag_t)(ECHO | ECHOE | ECHOK | ECHONL);
    if (tcsetattr(fd, TCSAFLUSH, &quiet) != 0) {
        rc = coffer_err_set(COFFER_E_PIN, "PIN prompt: cannot turn off echo: %s", strerror(errno));
        goto out;
    }
    term_changed = true;
    tty_write(fd, "Token user PIN: ");
    if ((rc = read_tty_line(fd, &old_mask, coffer_secret_view(pin), &len)) != COFFER_OK) {
        goto out;
    }
    if (len == 0) {
        rc = coffer_err_set(COFFER_E_PIN, "no PIN was typed at the prompt");
        goto out;
    }
    if ((rc = coffer_secret_truncate(pin, len)) != COFFER_OK) {
        goto out;
    }
    *out = pin;
    pin = NULL;
out:
    if (term_changed) {
        (void)tcsetattr(fd, TCSAFLUSH, &saved);
        tty_write(fd, "\n");
    }
    restore_prompt_signals(saved_signals, &old_mask);
    (void)close(fd);
    coffer_secret_free(&pin);
    if (prompt_signal != 0) {
        /* The terminal is restored: now let the signal do what it would have done. */
        (void)raise((int)prompt_signal);
    }
    return rc;
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

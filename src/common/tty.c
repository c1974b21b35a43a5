/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The one reader of secrets typed by the operator: it shows a prompt on
 * /dev/tty, turns echo off, reads one line into a struct coffer_secret and
 * gives the terminal its modes back on every path, a signal included. The
 * token PIN prompt (src/p11/pin.c) and the officers' passphrases
 * (src/common/passphrase.c) both read through it; for scripted use it can
 * read one line of standard input instead when that is not a terminal.
 *
 * It never writes a byte of the line to an error detail, a log line or the
 * terminal, never leaves a byte of it outside the secret it returns, and
 * never leaves the terminal without echo.
 */
#include "coffer/tty.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

static volatile sig_atomic_t caught_signal;

static void on_signal(int sig)
{
    caught_signal = sig;
}

/*
 * Signals that would leave the terminal without echo if they ended or stopped
 * the process. While the terminal is read they are blocked except inside
 * ppoll, so one that arrives at any moment is noticed rather than lost before
 * a read, and the read ends so that the terminal can be restored first.
 */
static const int guarded_signals[] = {SIGINT, SIGTERM, SIGQUIT, SIGHUP, SIGTSTP};
#define N_GUARDED (sizeof(guarded_signals) / sizeof(guarded_signals[0]))

static void catch_signals(struct sigaction saved[N_GUARDED], sigset_t *old_mask)
{
    struct sigaction sa;
    sigset_t block;

    caught_signal = 0;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    /* No SA_RESTART: a signal must interrupt the wait so the terminal is restored. */
    sa.sa_flags = 0;
    sigemptyset(&block);
    for (size_t i = 0; i < N_GUARDED; i++) {
        (void)sigaction(guarded_signals[i], &sa, &saved[i]);
        sigaddset(&block, guarded_signals[i]);
    }
    (void)pthread_sigmask(SIG_BLOCK, &block, old_mask);
}

/*
 * The caller's handlers come back first, then the mask: a signal still
 * pending reaches the caller's handler, with the terminal already restored.
 */
static void restore_signals(const struct sigaction saved[N_GUARDED], const sigset_t *old_mask)
{
    for (size_t i = 0; i < N_GUARDED; i++) {
        (void)sigaction(guarded_signals[i], &saved[i], NULL);
    }
    (void)pthread_sigmask(SIG_SETMASK, old_mask, NULL);
}

static void write_text(int fd, const char *text)
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

/* Where a line comes from, and how the details name it. */
struct line_source {
    int fd;
    const char *name; /* "/dev/tty" */
    const char *how;  /* "typed at the prompt": completes "no PIN was ..." */
    /*
     * The mask to wait with while the guarded signals are caught (they are
     * deliverable only inside ppoll), or NULL when they are not caught.
     */
    const sigset_t *wait_mask;
};

/* Appends one byte of the line, or notes that the line no longer fits. */
static void keep(struct coffer_secret_view v, size_t *n, unsigned char c, bool *too_long)
{
    if (*n < v.len) {
        v.data[(*n)++] = c;
    } else {
        *too_long = true;
    }
}

/*
 * Reads one line from src into v and sets *out_len. Bytes are read one at a
 * time so that nothing after the line is consumed. The line ends at "\n" or
 * at end of input; a "\r" just before either belongs to the line ending, so
 * it is held back until the next byte shows whether it does. A line longer
 * than v.len is read to its end and refused, so its rest is not taken for
 * the next line.
 */
static enum coffer_err read_line(const struct coffer_tty_request *req,
                                 const struct line_source *src, struct coffer_secret_view v,
                                 size_t *out_len)
{
    enum coffer_err rc = COFFER_OK;
    bool too_long = false;
    bool any = false;
    bool cr = false;
    unsigned char c = 0;
    size_t n = 0;

    for (;;) {
        struct pollfd pfd = {.fd = src->fd, .events = POLLIN};
        ssize_t r;

        if (src->wait_mask != NULL && caught_signal != 0) {
            rc = coffer_err_set(req->fail, "%s prompt interrupted by signal %d", req->what,
                                (int)caught_signal);
            goto out;
        }
        if (ppoll(&pfd, 1, NULL, src->wait_mask) < 0) {
            if (errno == EINTR) {
                continue;
            }
            rc = coffer_err_set(req->fail, "waiting for the %s on %s: %s", req->what, src->name,
                                strerror(errno));
            goto out;
        }
        r = read(src->fd, &c, 1);
        if (r < 0 && (errno == EINTR || errno == EAGAIN)) {
            continue;
        }
        if (r < 0) {
            rc = coffer_err_set(req->fail, "cannot read %s from %s: %s", req->what, src->name,
                                strerror(errno));
            goto out;
        }
        if (r == 0 && !any) {
            rc = coffer_err_set(req->fail, "no %s was %s: end of input", req->what, src->how);
            goto out;
        }
        if (r == 0 || c == '\n') {
            break;
        }
        any = true;
        if (cr) {
            cr = false;
            keep(v, &n, '\r', &too_long);
        }
        if (c == '\r') {
            cr = true;
        } else {
            keep(v, &n, c, &too_long);
        }
    }
    if (too_long) {
        rc = coffer_err_set(req->refuse, "%s %s is longer than %zu bytes", req->what, src->how,
                            v.len);
        goto out;
    }
    if (n == 0) {
        rc = coffer_err_set(req->refuse, "no %s was %s", req->what, src->how);
        goto out;
    }
    *out_len = n;
out:
    coffer_wipe(&c, sizeof(c));
    return rc;
}

/*
 * Reads the line from /dev/tty with echo off. *sig receives a guarded signal
 * that ended the read, for the caller to raise once the line is wiped: the
 * terminal, the caller's handlers and its mask are all back by then.
 */
static enum coffer_err read_terminal(const struct coffer_tty_request *req,
                                     struct coffer_secret_view v, size_t *len, int *sig)
{
    struct sigaction saved_signals[N_GUARDED];
    struct termios saved, quiet;
    struct line_source src;
    sigset_t old_mask;
    bool term_changed = false;
    enum coffer_err rc;
    int fd;

    fd = open("/dev/tty", O_RDWR | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        return coffer_err_set(req->fail, "%s prompt: cannot open /dev/tty: %s", req->what,
                              strerror(errno));
    }
    if (tcgetattr(fd, &saved) != 0) {
        rc = coffer_err_set(req->fail, "%s prompt: /dev/tty: %s", req->what, strerror(errno));
        (void)close(fd);
        return rc;
    }
    catch_signals(saved_signals, &old_mask);
    quiet = saved;
    quiet.c_lflag &= ~(tcflag_t)(ECHO | ECHOE | ECHOK | ECHONL);
    if (tcsetattr(fd, TCSAFLUSH, &quiet) != 0) {
        rc = coffer_err_set(req->fail, "%s prompt: cannot turn off echo: %s", req->what,
                            strerror(errno));
        goto out;
    }
    term_changed = true;
    write_text(fd, req->prompt);
    src = (struct line_source){
        .fd = fd, .name = "/dev/tty", .how = "typed at the prompt", .wait_mask = &old_mask};
    rc = read_line(req, &src, v, len);
out:
    if (term_changed) {
        (void)tcsetattr(fd, TCSAFLUSH, &saved);
        write_text(fd, "\n");
    }
    restore_signals(saved_signals, &old_mask);
    (void)close(fd);
    *sig = (int)caught_signal;
    caught_signal = 0;
    return rc;
}

/*
 * Reads the line from standard input. Nothing about the terminal changes, so
 * signals keep the caller's disposition; the prompt goes to standard error
 * so that standard output stays the command's own.
 */
static enum coffer_err read_stdin(const struct coffer_tty_request *req, struct coffer_secret_view v,
                                  size_t *len)
{
    const struct line_source src = {.fd = STDIN_FILENO,
                                    .name = "standard input",
                                    .how = "given on standard input",
                                    .wait_mask = NULL};

    write_text(STDERR_FILENO, req->prompt);
    write_text(STDERR_FILENO, "(read from standard input)\n");
    return read_line(req, &src, v, len);
}

enum coffer_err coffer_tty_read_secret(const struct coffer_tty_request *req,
                                       struct coffer_secret **out)
{
    struct coffer_secret *s = NULL;
    enum coffer_err rc;
    size_t len = 0;
    int sig = 0;

    if (out == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "coffer_tty_read_secret: no output");
    }
    *out = NULL;
    if (req == NULL || req->prompt == NULL || req->what == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "coffer_tty_read_secret: no prompt");
    }
    if (req->max == 0 || req->max > COFFER_SECRET_MAX) {
        return coffer_err_set(COFFER_E_INVALID,
                              "coffer_tty_read_secret: a %s of at most %zu bytes is not 1..%u",
                              req->what, req->max, COFFER_SECRET_MAX);
    }
    if ((rc = coffer_secret_new(req->max, &s)) != COFFER_OK) {
        return rc;
    }
    if (req->stdin_unless_tty && !isatty(STDIN_FILENO)) {
        rc = read_stdin(req, coffer_secret_view(s), &len);
    } else {
        rc = read_terminal(req, coffer_secret_view(s), &len, &sig);
    }
    if (rc == COFFER_OK) {
        rc = coffer_secret_truncate(s, len);
    }
    if (rc == COFFER_OK) {
        *out = s;
        s = NULL;
    }
    coffer_secret_free(&s);
    if (sig != 0) {
        /* The terminal is restored and the line wiped: the signal does what it would have done. */
        (void)raise(sig);
    }
    return rc;
}

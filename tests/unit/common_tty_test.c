/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The reader of typed secrets, coffer_tty_read_secret. From standard input
 * (a pipe): one line per call and nothing after it consumed, line endings
 * "\n", "\r\n" and end of input, a line of exactly the maximum accepted and
 * a longer one refused after being read to its end, empty lines and end of
 * input refused with the caller's codes, a read error, the prompt on
 * standard error. Without a terminal: /dev/tty cannot be opened. On a
 * pseudo-terminal: the prompt is shown there, echo is off while the line is
 * typed and back afterwards, nothing typed is shown, end of input (^D) is
 * refused, and a signal restores the terminal before it takes effect,
 * whether the caller handles it or it ends the process.
 */
#include <fcntl.h>
#include <pty.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <cmocka.h>

#include "coffer/mem.h"
#include "coffer/tty.h"

/* Codes nothing in tty.c returns of its own accord: seeing them proves they are the caller's. */
#define FAIL_CODE COFFER_E_PIN
#define REFUSE_CODE COFFER_E_LIMIT

static struct coffer_tty_request request(size_t max, bool stdin_unless_tty)
{
    return (struct coffer_tty_request){.prompt = "Secret for the test: ",
                                       .what = "passphrase",
                                       .max = max,
                                       .stdin_unless_tty = stdin_unless_tty,
                                       .fail = FAIL_CODE,
                                       .refuse = REFUSE_CODE};
}

static void assert_secret(const struct coffer_secret *s, const char *want)
{
    struct coffer_secret_view v;

    assert_non_null(s);
    v = coffer_secret_view(s);
    assert_int_equal(v.len, strlen(want));
    assert_true(coffer_mem_equal(v.data, want, v.len));
}

static void assert_detail_has(const char *want)
{
    if (strstr(coffer_err_detail(), want) == NULL) {
        fail_msg("detail \"%s\" lacks \"%s\"", coffer_err_detail(), want);
    }
}

/* ---- standard input ---------------------------------------------------------- */

static int saved_stdin = -1;
static int saved_stderr = -1;

static int save_fds(void **state)
{
    (void)state;
    saved_stdin = dup(STDIN_FILENO);
    saved_stderr = dup(STDERR_FILENO);
    return saved_stdin >= 0 && saved_stderr >= 0 ? 0 : -1;
}

/* The prompts of the standard-input tests go nowhere, so that the test's output stays readable. */
static int quiet_stderr(void **state)
{
    int null = open("/dev/null", O_WRONLY | O_CLOEXEC);

    (void)state;
    if (null < 0 || dup2(null, STDERR_FILENO) < 0) {
        return -1;
    }
    return close(null);
}

static int restore_fds(void **state)
{
    (void)state;
    (void)dup2(saved_stdin, STDIN_FILENO);
    (void)dup2(saved_stderr, STDERR_FILENO);
    return 0;
}

/* Makes standard input a pipe holding exactly len bytes of text, then its end. */
static void feed_stdin(const char *text, size_t len)
{
    int p[2];

    assert_int_equal(pipe(p), 0);
    assert_int_equal(write(p[1], text, len), (ssize_t)len);
    assert_int_equal(close(p[1]), 0);
    assert_int_equal(dup2(p[0], STDIN_FILENO), STDIN_FILENO);
    assert_int_equal(close(p[0]), 0);
}

#define FEED(lit) feed_stdin(lit, sizeof(lit) - 1)

/* Reads what is left on standard input into buf (NUL-terminated). */
static void stdin_rest(char *buf, size_t size)
{
    size_t len = 0;
    ssize_t n;

    while (len < size - 1 && (n = read(STDIN_FILENO, buf + len, size - 1 - len)) > 0) {
        len += (size_t)n;
    }
    buf[len] = '\0';
}

static void test_stdin_one_line_per_read(void **state)
{
    struct coffer_tty_request req = request(64, true);
    struct coffer_secret *s = NULL;
    char rest[64];

    (void)state;
    FEED("first line\r\nsecond\nleft alone\n");
    assert_int_equal(coffer_tty_read_secret(&req, &s), COFFER_OK);
    assert_secret(s, "first line");
    coffer_secret_free(&s);
    assert_int_equal(coffer_tty_read_secret(&req, &s), COFFER_OK);
    assert_secret(s, "second");
    coffer_secret_free(&s);
    /* Nothing after the second line was consumed. */
    stdin_rest(rest, sizeof(rest));
    assert_string_equal(rest, "left alone\n");
}

static void test_stdin_line_endings(void **state)
{
    struct coffer_tty_request req = request(64, true);
    struct coffer_secret *s = NULL;

    (void)state;
    /* A carriage return inside the line is kept; only one before the newline is its ending. */
    FEED("a\rb\r\r\nno newline at the end");
    assert_int_equal(coffer_tty_read_secret(&req, &s), COFFER_OK);
    assert_secret(s, "a\rb\r");
    coffer_secret_free(&s);
    assert_int_equal(coffer_tty_read_secret(&req, &s), COFFER_OK);
    assert_secret(s, "no newline at the end");
    coffer_secret_free(&s);

    FEED("ends in a carriage return\r");
    assert_int_equal(coffer_tty_read_secret(&req, &s), COFFER_OK);
    assert_secret(s, "ends in a carriage return");
    coffer_secret_free(&s);
}

static void test_stdin_end_of_input(void **state)
{
    struct coffer_tty_request req = request(64, true);
    struct coffer_secret *s = NULL;

    (void)state;
    FEED("only\n");
    assert_int_equal(coffer_tty_read_secret(&req, &s), COFFER_OK);
    assert_secret(s, "only");
    coffer_secret_free(&s);
    /* Nothing left at all: a failure to read, not a refused line. */
    assert_int_equal(coffer_tty_read_secret(&req, &s), FAIL_CODE);
    assert_null(s);
    assert_detail_has("no passphrase was given on standard input: end of input");
}

static void test_stdin_empty_lines(void **state)
{
    struct coffer_tty_request req = request(64, true);
    struct coffer_secret *s = NULL;
    char rest[16];

    (void)state;
    FEED("\n\r\nnext\n");
    assert_int_equal(coffer_tty_read_secret(&req, &s), REFUSE_CODE);
    assert_null(s);
    assert_detail_has("no passphrase was given on standard input");
    assert_null(strstr(coffer_err_detail(), "end of input"));
    assert_int_equal(coffer_tty_read_secret(&req, &s), REFUSE_CODE);
    assert_null(s);
    stdin_rest(rest, sizeof(rest));
    assert_string_equal(rest, "next\n");
}

static void test_stdin_length_limit(void **state)
{
    struct coffer_tty_request req = request(8, true);
    struct coffer_secret *s = NULL;

    (void)state;
    FEED("12345678\n12345678\r\n123456789\nafter\n1234567890");
    assert_int_equal(coffer_tty_read_secret(&req, &s), COFFER_OK);
    assert_secret(s, "12345678");
    coffer_secret_free(&s);
    /* The line ending does not count against the limit. */
    assert_int_equal(coffer_tty_read_secret(&req, &s), COFFER_OK);
    assert_secret(s, "12345678");
    coffer_secret_free(&s);
    /* One byte too many: refused, and read to its end so the next line is whole. */
    assert_int_equal(coffer_tty_read_secret(&req, &s), REFUSE_CODE);
    assert_null(s);
    assert_detail_has("passphrase given on standard input is longer than 8 bytes");
    assert_null(strstr(coffer_err_detail(), "123456789"));
    assert_int_equal(coffer_tty_read_secret(&req, &s), COFFER_OK);
    assert_secret(s, "after");
    coffer_secret_free(&s);
    /* Too long and ended by end of input. */
    assert_int_equal(coffer_tty_read_secret(&req, &s), REFUSE_CODE);
    assert_null(s);
}

static void test_stdin_read_error(void **state)
{
    struct coffer_tty_request req = request(64, true);
    struct coffer_secret *s = NULL;
    enum coffer_err rc;

    (void)state;
    /* A closed standard input is not a terminal, and reading it fails. */
    assert_int_equal(close(STDIN_FILENO), 0);
    rc = coffer_tty_read_secret(&req, &s);
    assert_int_equal(dup2(saved_stdin, STDIN_FILENO), STDIN_FILENO);
    assert_int_equal(rc, FAIL_CODE);
    assert_null(s);
    assert_detail_has("cannot read passphrase from standard input");
}

static void test_stdin_prompt_on_stderr(void **state)
{
    struct coffer_tty_request req = request(64, true);
    struct coffer_secret *s = NULL;
    char shown[256];
    size_t len = 0;
    ssize_t n;
    int p[2];

    (void)state;
    FEED("prompted secret\n");
    assert_int_equal(pipe(p), 0);
    assert_int_equal(dup2(p[1], STDERR_FILENO), STDERR_FILENO);
    assert_int_equal(close(p[1]), 0);
    assert_int_equal(coffer_tty_read_secret(&req, &s), COFFER_OK);
    assert_int_equal(dup2(saved_stderr, STDERR_FILENO), STDERR_FILENO);
    while (len < sizeof(shown) - 1 && (n = read(p[0], shown + len, sizeof(shown) - 1 - len)) > 0) {
        len += (size_t)n;
    }
    shown[len] = '\0';
    assert_int_equal(close(p[0]), 0);
    assert_string_equal(shown, "Secret for the test: (read from standard input)\n");
    assert_secret(s, "prompted secret");
    coffer_secret_free(&s);
}

static void test_bad_arguments(void **state)
{
    struct coffer_tty_request req = request(64, true);
    struct coffer_secret *s = NULL;

    (void)state;
    FEED("unread\n");
    assert_int_equal(coffer_tty_read_secret(&req, NULL), COFFER_E_INVALID);
    assert_int_equal(coffer_tty_read_secret(NULL, &s), COFFER_E_INVALID);
    assert_null(s);
    req.prompt = NULL;
    assert_int_equal(coffer_tty_read_secret(&req, &s), COFFER_E_INVALID);
    req = request(64, true);
    req.what = NULL;
    assert_int_equal(coffer_tty_read_secret(&req, &s), COFFER_E_INVALID);
    req = request(0, true);
    assert_int_equal(coffer_tty_read_secret(&req, &s), COFFER_E_INVALID);
    req = request((size_t)COFFER_SECRET_MAX + 1, true);
    assert_int_equal(coffer_tty_read_secret(&req, &s), COFFER_E_INVALID);
    assert_null(s);
    /* Refused before reading: the line is still there. */
    req = request(64, true);
    assert_int_equal(coffer_tty_read_secret(&req, &s), COFFER_OK);
    assert_secret(s, "unread");
    coffer_secret_free(&s);
}

/* ---- terminal ---------------------------------------------------------------- */

static void test_no_terminal(void **state)
{
    int status = 0;
    pid_t pid;

    (void)state;
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct coffer_tty_request req = request(64, false);
        struct coffer_secret *s = NULL;
        enum coffer_err rc;

        /* A new session has no controlling terminal: /dev/tty cannot be opened. */
        if (setsid() < 0) {
            _exit(2);
        }
        rc = coffer_tty_read_secret(&req, &s);
        _exit(rc == FAIL_CODE && s == NULL &&
                      strstr(coffer_err_detail(), "passphrase prompt: cannot open /dev/tty") != NULL
                  ? 0
                  : 1);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

enum tty_case {
    TTY_TYPED,          /* a line is typed */
    TTY_EOF,            /* ^D at the start of the line */
    TTY_HANDLED_SIGNAL, /* SIGTERM, which the caller handles */
    TTY_FATAL_SIGNAL,   /* SIGINT, left to its default: the process ends */
};

static volatile sig_atomic_t handled;

static void on_term(int sig)
{
    handled = sig;
}

static bool echo_on(int fd)
{
    struct termios t;

    return tcgetattr(fd, &t) == 0 && (t.c_lflag & ECHO) != 0;
}

/* In the child: the pty becomes its controlling terminal and standard input. */
static void tty_child(int slave, enum tty_case c)
{
    struct coffer_tty_request req = request(64, true);
    struct coffer_secret *s = NULL;
    enum coffer_err rc;

    /* A read that never ends must not hang the test. */
    alarm(30);
    if (setsid() < 0 || ioctl(slave, TIOCSCTTY, 0) != 0 || dup2(slave, STDIN_FILENO) < 0) {
        _exit(2);
    }
    if (c == TTY_HANDLED_SIGNAL) {
        struct sigaction sa = {.sa_handler = on_term};

        sigemptyset(&sa.sa_mask);
        if (sigaction(SIGTERM, &sa, NULL) != 0) {
            _exit(2);
        }
    }
    rc = coffer_tty_read_secret(&req, &s);
    /* Whatever happened, the terminal has its echo back by the time the call returns. */
    if (!echo_on(slave)) {
        _exit(3);
    }
    switch (c) {
    case TTY_TYPED:
        if (rc != COFFER_OK || coffer_secret_len(s) != 9 ||
            !coffer_mem_equal(coffer_secret_view(s).data, "typed-pin", 9)) {
            _exit(4);
        }
        break;
    case TTY_EOF:
        if (rc != FAIL_CODE || s != NULL ||
            strstr(coffer_err_detail(), "no passphrase was typed at the prompt: end of input") ==
                NULL) {
            _exit(4);
        }
        break;
    case TTY_HANDLED_SIGNAL:
        /* The caller's handler ran, after the terminal was restored. */
        if (rc != FAIL_CODE || s != NULL || handled != SIGTERM ||
            strstr(coffer_err_detail(), "passphrase prompt interrupted by signal") == NULL) {
            _exit(4);
        }
        break;
    case TTY_FATAL_SIGNAL:
        /* The signal should have ended the process. */
        _exit(5);
    default:
        _exit(6);
    }
    coffer_secret_free(&s);
    _exit(0);
}

/* Appends what the terminal shows to buf until it holds want, or about 10 s pass. */
static bool wait_for(int master, char *buf, size_t size, const char *want)
{
    size_t len = strlen(buf);

    for (int i = 0; i < 1000 && strstr(buf, want) == NULL && len < size - 1; i++) {
        struct pollfd pfd = {.fd = master, .events = POLLIN};
        ssize_t n;

        if (poll(&pfd, 1, 10) <= 0) {
            continue;
        }
        n = read(master, buf + len, size - 1 - len);
        if (n <= 0) {
            break;
        }
        len += (size_t)n;
        buf[len] = '\0';
    }
    return strstr(buf, want) != NULL;
}

static void run_tty_case(enum tty_case c)
{
    char shown[512] = "";
    int master = -1;
    int slave = -1;
    int status = 0;
    pid_t pid;

    assert_int_equal(openpty(&master, &slave, NULL, NULL, NULL), 0);
    assert_true(echo_on(slave));
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        (void)close(master);
        tty_child(slave, c);
    }
    /* Standard input is the terminal, so the prompt is shown there, and echo is off by then. */
    assert_true(wait_for(master, shown, sizeof(shown), "Secret for the test: "));
    assert_null(strstr(shown, "standard input"));
    assert_false(echo_on(slave));
    switch (c) {
    case TTY_TYPED:
        assert_int_equal(write(master, "typed-pin\n", 10), 10);
        break;
    case TTY_EOF:
        assert_int_equal(write(master, "\x04", 1), 1);
        break;
    case TTY_HANDLED_SIGNAL:
        assert_int_equal(kill(pid, SIGTERM), 0);
        break;
    case TTY_FATAL_SIGNAL:
        assert_int_equal(kill(pid, SIGINT), 0);
        break;
    default:
        fail();
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (c == TTY_FATAL_SIGNAL) {
        assert_true(WIFSIGNALED(status));
        assert_int_equal(WTERMSIG(status), SIGINT);
    } else {
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
    }
    /* The newline written once the terminal is restored; the typed line never shown. */
    assert_true(wait_for(master, shown, sizeof(shown), "\n"));
    assert_null(strstr(shown, "typed-pin"));
    assert_true(echo_on(slave));
    (void)close(master);
    (void)close(slave);
}

static void test_tty_typed(void **state)
{
    (void)state;
    run_tty_case(TTY_TYPED);
}

static void test_tty_end_of_input(void **state)
{
    (void)state;
    run_tty_case(TTY_EOF);
}

static void test_tty_handled_signal(void **state)
{
    (void)state;
    run_tty_case(TTY_HANDLED_SIGNAL);
}

static void test_tty_fatal_signal(void **state)
{
    (void)state;
    run_tty_case(TTY_FATAL_SIGNAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_stdin_one_line_per_read, quiet_stderr, restore_fds),
        cmocka_unit_test_setup_teardown(test_stdin_line_endings, quiet_stderr, restore_fds),
        cmocka_unit_test_setup_teardown(test_stdin_end_of_input, quiet_stderr, restore_fds),
        cmocka_unit_test_setup_teardown(test_stdin_empty_lines, quiet_stderr, restore_fds),
        cmocka_unit_test_setup_teardown(test_stdin_length_limit, quiet_stderr, restore_fds),
        cmocka_unit_test_setup_teardown(test_stdin_read_error, quiet_stderr, restore_fds),
        cmocka_unit_test_setup_teardown(test_stdin_prompt_on_stderr, quiet_stderr, restore_fds),
        cmocka_unit_test_setup_teardown(test_bad_arguments, quiet_stderr, restore_fds),
        cmocka_unit_test(test_no_terminal),
        cmocka_unit_test(test_tty_typed),
        cmocka_unit_test(test_tty_end_of_input),
        cmocka_unit_test(test_tty_handled_signal),
        cmocka_unit_test(test_tty_fatal_signal),
    };

    return cmocka_run_group_tests(tests, save_fds, NULL);
}

/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Starting, waiting for and stopping child processes (see proc.h).
 *
 * Programs are started with fork and execve from an argv array: no shell
 * ever parses an argument, so a path with spaces or quotes is just a path.
 * Between fork and execve the child calls only async-signal-safe functions,
 * because the parent may have other threads (a PKCS#11 module's, a
 * sanitizer's) whose locks the child inherits in an unknown state. A failure
 * there is reported to the parent through a close-on-exec pipe as (step,
 * errno), so the parent can say exactly what went wrong.
 *
 * This file never signals a process it did not start: coffer_proc_stop and
 * coffer_proc_wait work only on children of this process (waitpid refuses
 * anything else), and coffer_proc_alive sends only signal 0.
 */
#include "server/proc.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Where the child failed before execve; reported to the parent. */
enum child_step {
    STEP_SIGNALS = 1,
    STEP_SETSID,
    STEP_FDS,
    STEP_CHDIR,
    STEP_SETGROUPS,
    STEP_SETGID,
    STEP_SETUID,
    STEP_REGAIN,
    STEP_CLOSE,
    STEP_EXEC,
};

struct child_report {
    int step;
    int err;
};

/* Fallback bound for marking descriptors close-on-exec when close_range is missing. */
#define FD_SCAN_MAX 65536

/* First descriptor used to park the child's stdio before moving it to 0..2. */
#define FD_PARK_MIN 10

static const char *step_name(int step)
{
    switch (step) {
    case STEP_SIGNALS:
        return "resetting signals";
    case STEP_SETSID:
        return "setsid";
    case STEP_FDS:
        return "setting up stdin, stdout and stderr";
    case STEP_CHDIR:
        return "chdir";
    case STEP_SETGROUPS:
        return "setgroups";
    case STEP_SETGID:
        return "setgid";
    case STEP_SETUID:
        return "setuid";
    case STEP_REGAIN:
        return "checking that root cannot be regained";
    case STEP_CLOSE:
        return "closing inherited descriptors";
    case STEP_EXEC:
        return "execve";
    default:
        return "an unknown step";
    }
}

static long now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* Async-signal-safe: writes the report and leaves. Never returns. */
static void child_fail(int fd, int step)
{
    struct child_report r = {.step = step, .err = errno};
    ssize_t n;

    do {
        n = write(fd, &r, sizeof(r));
    } while (n < 0 && errno == EINTR);
    _exit(127);
}

/* Async-signal-safe: default action for every signal, empty mask. */
static int child_reset_signals(void)
{
    struct sigaction sa;
    sigset_t none;

    for (int sig = 1; sig < NSIG; sig++) {
        if (sig == SIGKILL || sig == SIGSTOP) {
            continue;
        }
        sa = (struct sigaction){.sa_handler = SIG_DFL};
        sigemptyset(&sa.sa_mask);
        /* Signals reserved by the C library refuse a change; that is fine. */
        (void)sigaction(sig, &sa, NULL);
    }
    sigemptyset(&none);
    return sigprocmask(SIG_SETMASK, &none, NULL);
}

/*
 * Async-signal-safe: moves in, out and err to 0, 1 and 2. They are parked
 * above FD_PARK_MIN first so that one target never overwrites a later source.
 */
static int child_stdio(int in, int out, int err)
{
    int src[3] = {in, out, err};
    int park[3];

    for (int i = 0; i < 3; i++) {
        park[i] = fcntl(src[i], F_DUPFD_CLOEXEC, FD_PARK_MIN);
        if (park[i] < 0) {
            return -1;
        }
    }
    for (int i = 0; i < 3; i++) {
        /* dup2 leaves the new descriptor without FD_CLOEXEC. */
        if (dup2(park[i], i) < 0) {
            return -1;
        }
    }
    return 0;
}

/* Async-signal-safe: every descriptor above 2 is closed when execve succeeds. */
static int child_cloexec_all(int scan_max)
{
    if (close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) == 0) {
        return 0;
    }
    for (int fd = 3; fd < scan_max; fd++) {
        int flags = fcntl(fd, F_GETFD);

        if (flags >= 0 && fcntl(fd, F_SETFD, flags | FD_CLOEXEC) < 0) {
            return -1;
        }
    }
    return 0;
}

static void child_drop(int report, uid_t uid, gid_t gid)
{
    if (setgroups(1, &gid) != 0) {
        child_fail(report, STEP_SETGROUPS);
    }
    if (setgid(gid) != 0) {
        child_fail(report, STEP_SETGID);
    }
    if (setuid(uid) != 0) {
        child_fail(report, STEP_SETUID);
    }
    /* A drop that left a saved root uid behind would be undone by this. */
    if (uid != 0 && setuid(0) == 0) {
        errno = EPERM;
        child_fail(report, STEP_REGAIN);
    }
}

static void child_run(const struct coffer_proc_spec *spec, int report, int devnull, int scan_max)
{
    static const char *const empty_env[] = {NULL};
    const char *const *envp = spec->envp != NULL ? spec->envp : empty_env;
    int moved;

    /* Out of the way of 0..2, in case the parent ran with one of them closed. */
    moved = fcntl(report, F_DUPFD_CLOEXEC, FD_PARK_MIN);
    if (moved < 0) {
        child_fail(report, STEP_FDS);
    }
    report = moved;
    if (child_reset_signals() != 0) {
        child_fail(report, STEP_SIGNALS);
    }
    if (spec->new_session && setsid() < 0) {
        child_fail(report, STEP_SETSID);
    }
    if (child_stdio(devnull, spec->out_fd >= 0 ? spec->out_fd : devnull,
                    spec->err_fd >= 0 ? spec->err_fd : devnull) != 0) {
        child_fail(report, STEP_FDS);
    }
    if (chdir(spec->cwd != NULL ? spec->cwd : "/") != 0) {
        child_fail(report, STEP_CHDIR);
    }
    if (spec->drop) {
        child_drop(report, spec->uid, spec->gid);
    }
    if (child_cloexec_all(scan_max) != 0) {
        child_fail(report, STEP_CLOSE);
    }
    /* execve takes non-const arrays for historical reasons; it does not write them. */
    execve(spec->argv[0], (char *const *)spec->argv, (char *const *)envp);
    child_fail(report, STEP_EXEC);
}

static enum coffer_err check_spec(const struct coffer_proc_spec *spec)
{
    if (spec == NULL || spec->argv == NULL || spec->argv[0] == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "spawning a process: no program given");
    }
    if (spec->argv[0][0] != '/') {
        return coffer_err_set(COFFER_E_INVALID,
                              "spawning a process: program \"%s\" is not an absolute path",
                              spec->argv[0]);
    }
    return COFFER_OK;
}

static enum coffer_err read_report(int fd, pid_t child, const char *prog)
{
    struct child_report r;
    size_t got = 0;
    int status;

    while (got < sizeof(r)) {
        ssize_t n = read(fd, (char *)&r + got, sizeof(r) - got);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            break;
        }
        got += (size_t)n;
    }
    if (got == 0) {
        /* The pipe closed on execve: the program is running. */
        return COFFER_OK;
    }
    while (waitpid(child, &status, 0) < 0 && errno == EINTR) {
    }
    if (got != sizeof(r)) {
        return coffer_err_set(COFFER_E_IO, "starting %s: short report from the child", prog);
    }
    return coffer_err_set(COFFER_E_IO, "starting %s: %s failed: %s", prog, step_name(r.step),
                          strerror(r.err));
}

enum coffer_err coffer_proc_spawn(const struct coffer_proc_spec *spec, pid_t *pid)
{
    enum coffer_err r;
    int pipefd[2] = {-1, -1};
    int devnull = -1;
    long open_max;
    int scan_max;
    pid_t child;

    *pid = 0;
    if ((r = check_spec(spec)) != COFFER_OK) {
        return r;
    }
    /* Everything the child needs is prepared here: it may not allocate. */
    open_max = sysconf(_SC_OPEN_MAX);
    scan_max = (open_max > 0 && open_max < FD_SCAN_MAX) ? (int)open_max : FD_SCAN_MAX;
    devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (devnull < 0) {
        r = coffer_err_set(COFFER_E_IO, "opening /dev/null: %s", strerror(errno));
        goto out;
    }
    if (pipe2(pipefd, O_CLOEXEC) != 0) {
        r = coffer_err_set(COFFER_E_IO, "starting %s: pipe2: %s", spec->argv[0], strerror(errno));
        goto out;
    }
    child = fork();
    if (child < 0) {
        r = coffer_err_set(COFFER_E_IO, "starting %s: fork: %s", spec->argv[0], strerror(errno));
        goto out;
    }
    if (child == 0) {
        close(pipefd[0]);
        child_run(spec, pipefd[1], devnull, scan_max);
    }
    close(pipefd[1]);
    pipefd[1] = -1;
    r = read_report(pipefd[0], child, spec->argv[0]);
    if (r == COFFER_OK) {
        *pid = child;
    }
out:
    if (pipefd[0] >= 0) {
        close(pipefd[0]);
    }
    if (pipefd[1] >= 0) {
        close(pipefd[1]);
    }
    if (devnull >= 0) {
        close(devnull);
    }
    return r;
}

enum coffer_err coffer_proc_wait(pid_t pid, int timeout_ms, int *status)
{
    long deadline = now_ms() + timeout_ms;
    long pause = 5;

    if (pid <= 0) {
        return coffer_err_set(COFFER_E_INVALID, "waiting for process %ld: not a child PID",
                              (long)pid);
    }
    for (;;) {
        pid_t w = waitpid(pid, status, WNOHANG);

        if (w == pid) {
            return COFFER_OK;
        }
        if (w < 0 && errno != EINTR) {
            return coffer_err_set(COFFER_E_IO, "waiting for process %ld: %s", (long)pid,
                                  strerror(errno));
        }
        if (now_ms() >= deadline) {
            return coffer_err_set(COFFER_E_STATE, "process %ld still running after %d ms",
                                  (long)pid, timeout_ms);
        }
        sleep_ms(pause);
        if (pause < 100) {
            pause *= 2;
        }
    }
}

enum coffer_err coffer_proc_stop(pid_t pid, int sig, int timeout_ms, int *status)
{
    enum coffer_err r;
    int st = 0;

    if (pid <= 0) {
        return coffer_err_set(COFFER_E_INVALID, "stopping process %ld: not a child PID", (long)pid);
    }
    /*
     * waitpid on a non-child fails: refuse before sending anything. A child
     * that already exited is reaped here, and its PID is never signalled,
     * since the number may already belong to another process.
     */
    switch (waitpid(pid, &st, WNOHANG)) {
    case -1:
        return coffer_err_set(COFFER_E_IO, "stopping process %ld: not a child of this process: %s",
                              (long)pid, strerror(errno));
    case 0:
        break;
    default:
        if (status != NULL) {
            *status = st;
        }
        return COFFER_OK;
    }
    if (kill(pid, sig) != 0 && errno != ESRCH) {
        return coffer_err_set(COFFER_E_IO, "stopping process %ld: kill: %s", (long)pid,
                              strerror(errno));
    }
    r = coffer_proc_wait(pid, timeout_ms, &st);
    if (r == COFFER_E_STATE) {
        (void)kill(pid, SIGKILL);
        r = coffer_proc_wait(pid, timeout_ms, &st);
    }
    if (r == COFFER_OK && status != NULL) {
        *status = st;
    }
    return r;
}

enum coffer_err coffer_proc_run(const struct coffer_proc_spec *spec, int timeout_ms, int *status)
{
    enum coffer_err r;
    pid_t pid;

    if ((r = coffer_proc_spawn(spec, &pid)) != COFFER_OK) {
        return r;
    }
    r = coffer_proc_wait(pid, timeout_ms, status);
    if (r == COFFER_E_STATE) {
        int st;

        (void)kill(pid, SIGKILL);
        if (coffer_proc_wait(pid, timeout_ms, &st) != COFFER_OK) {
            return coffer_err_set(COFFER_E_IO, "%s (PID %ld) survived SIGKILL", spec->argv[0],
                                  (long)pid);
        }
        return coffer_err_set(COFFER_E_STATE, "%s did not finish within %d ms and was killed",
                              spec->argv[0], timeout_ms);
    }
    return r;
}

void coffer_proc_status_str(int status, char *out, size_t outlen)
{
    if (WIFEXITED(status)) {
        snprintf(out, outlen, "exited with status %d", WEXITSTATUS(status));
    } else if (WIFSIGNALED(status)) {
        const char *name = sigabbrev_np(WTERMSIG(status));

        /* WCOREDUMP is the kernel's word that a core file was written: Coffer forbids them. */
        snprintf(out, outlen, "killed by signal %d (SIG%s)%s", WTERMSIG(status),
                 name != NULL ? name : "?", WCOREDUMP(status) ? ", core dumped" : ", no core");
    } else {
        snprintf(out, outlen, "stopped with wait status 0x%x", (unsigned)status);
    }
}

bool coffer_proc_alive(pid_t pid)
{
    char path[64];
    char buf[512];
    const char *paren;
    ssize_t n;
    int fd;

    if (pid <= 0) {
        return false;
    }
    if (kill(pid, 0) != 0 && errno != EPERM) {
        return false;
    }
    /* A zombie still answers signal 0 until its parent reaps it. */
    snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return errno != ENOENT;
    }
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0) {
        return true;
    }
    buf[n] = '\0';
    paren = strrchr(buf, ')');
    if (paren == NULL || paren[1] != ' ') {
        return true;
    }
    return paren[2] != 'Z' && paren[2] != 'X';
}

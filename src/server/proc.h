/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Child processes: start a program from an argv array (never through a
 * shell), optionally as an unprivileged user, wait for it with a timeout and
 * stop it by PID. Private to server and the test programs.
 *
 * A child starts with a clean slate: every descriptor above stderr closed,
 * the signal mask empty and every signal at its default action, stdin on
 * /dev/null, and only the environment given in the spec.
 */
#ifndef COFFER_SERVER_PROC_H
#define COFFER_SERVER_PROC_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "coffer/err.h"

struct coffer_proc_spec {
    const char *const *argv; /* argv[0] is the absolute path of the program; NULL-terminated */
    const char *const *envp; /* the child's whole environment; NULL-terminated, NULL: empty */
    const char *cwd;         /* working directory of the child, or NULL for "/" */
    int out_fd;              /* becomes the child's stdout; -1: /dev/null */
    int err_fd;              /* becomes the child's stderr; -1: /dev/null */
    bool drop;               /* run as uid/gid with no supplementary groups */
    uid_t uid;
    gid_t gid;
    bool new_session; /* setsid(): not in the caller's process group or terminal */
};

/*
 * Starts the program. On COFFER_OK *pid is the child, which has reached
 * execv. If the child fails before execv (privilege drop, chdir, execv) the
 * child is reaped and the error names the step and errno: COFFER_E_IO.
 * The caller must reap a started child (coffer_proc_wait or coffer_proc_stop).
 */
enum coffer_err coffer_proc_spawn(const struct coffer_proc_spec *spec, pid_t *pid) COFFER_MUST_USE;

/*
 * Waits up to timeout_ms for the child pid to exit and reaps it. *status
 * receives the waitpid status. COFFER_E_STATE on timeout (the child is left
 * running), COFFER_E_IO if pid is not a child of this process.
 */
enum coffer_err coffer_proc_wait(pid_t pid, int timeout_ms, int *status) COFFER_MUST_USE;

/*
 * Sends sig to the child pid, waits up to timeout_ms, then sends SIGKILL and
 * waits again. *status (may be NULL) receives the waitpid status. Only for a
 * child this process started: COFFER_E_IO otherwise.
 */
enum coffer_err coffer_proc_stop(pid_t pid, int sig, int timeout_ms, int *status) COFFER_MUST_USE;

/*
 * coffer_proc_spawn then coffer_proc_wait; a child still running after
 * timeout_ms is killed (SIGKILL) and COFFER_E_STATE returned. *status as for
 * coffer_proc_wait.
 */
enum coffer_err coffer_proc_run(const struct coffer_proc_spec *spec, int timeout_ms,
                                int *status) COFFER_MUST_USE;

/* Writes "exited with status N" or "killed by signal N (NAME), no core" (or ", core dumped") into
 * out. */
void coffer_proc_status_str(int status, char *out, size_t outlen);

/*
 * True if pid names a process that is running (a zombie counts as gone).
 * Works for any process, not only children; never sends a signal except 0.
 */
bool coffer_proc_alive(pid_t pid);

#endif

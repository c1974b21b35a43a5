/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The supervisor and its workers. The supervisor binds the listening socket,
 * applies the policy files, forks the workers and watches them; it never
 * opens the token. Each worker initialises PKCS#11 and logs in after the
 * fork (never inheriting a login), opens its own database connection, and
 * runs its own libevent loop serving the shared socket: SoftHSMv2 serialises
 * the threads of one process, so processes, not threads, use the cores.
 */
#include "server/proc.h"
#include "server/serve.h"

#include "coffer/api.h"
#include "coffer/arena.h"
#include "coffer/keys.h"
#include "coffer/log.h"
#include "coffer/ops.h"
#include "coffer/p11.h"
#include "coffer/policy.h"
#include "coffer/store.h"

#include <errno.h>
#include <event2/event.h>
#include <event2/util.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define LOG_MOD "server"
#define DRAIN_SECONDS 2
#define STOP_WAIT_MS 10000

/* ---- The listening sockets ---------------------------------------------------------- */

/*
 * One listening socket per worker slot, all bound to the same address with
 * SO_REUSEPORT, so that the kernel spreads new connections evenly over the
 * workers. With one shared socket, whichever worker wakes first accepts a
 * burst of connections and keeps them all, and the other cores idle.
 */

static enum coffer_err bind_listen(const struct coffer_config *cfg, int *out)
{
    struct addrinfo hints;
    struct addrinfo *res = NULL;
    char port[8];
    int fd = -1;
    int one = 1;
    int rc;

    *out = -1;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    (void)snprintf(port, sizeof(port), "%u", (unsigned)cfg->listen_port);
    rc = getaddrinfo(cfg->listen_host[0] != '\0' ? cfg->listen_host : NULL, port, &hints, &res);
    if (rc != 0) {
        return coffer_err_set(COFFER_E_CONFIG, "listen %s:%s: %s", cfg->listen_host, port,
                              gai_strerror(rc));
    }
    fd = socket(res->ai_family, res->ai_socktype | SOCK_CLOEXEC, res->ai_protocol);
    /*
     * TCP_NODELAY on the listener is inherited by every accepted connection:
     * an answer goes out as several TLS records, and without it the
     * client's delayed ACK holds each keep-alive answer back for 40 ms.
     */
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0 ||
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) != 0 ||
        bind(fd, res->ai_addr, res->ai_addrlen) != 0 || listen(fd, 511) != 0 ||
        evutil_make_socket_nonblocking(fd) != 0) {
        int err = errno;

        if (fd >= 0) {
            close(fd);
        }
        freeaddrinfo(res);
        return coffer_err_set(COFFER_E_CONFIG, "listen %s:%s: %s", cfg->listen_host, port,
                              strerror(err));
    }
    freeaddrinfo(res);
    *out = fd;
    return COFFER_OK;
}

/* ---- Policy files ---------------------------------------------------------------------- */

/* Applies the configured policy files in one transaction; problems are logged. */
static enum coffer_err apply_policy(const struct coffer_config *cfg)
{
    struct coffer_policy_diags d = {0};
    struct coffer_policy *p = NULL;
    struct coffer_arena *a = NULL;
    struct coffer_store *st = NULL;
    enum coffer_err r;

    if (cfg->n_policy_files == 0) {
        return COFFER_OK;
    }
    if ((r = coffer_policy_new(&p)) != COFFER_OK) {
        goto out;
    }
    for (size_t i = 0; i < cfg->n_policy_files && r == COFFER_OK; i++) {
        r = coffer_policy_add_file(p, cfg->policy_files[i], &d);
    }
    if (r == COFFER_OK) {
        r = coffer_policy_finish(p, &d);
    }
    if (r != COFFER_OK) {
        for (size_t i = 0; i < d.n; i++) {
            coffer_error(LOG_MOD, "policy: %s", d.lines[i]);
        }
        r = coffer_err_set(r, "the policy files have %zu problem(s); the policy in force is kept",
                           d.n + d.dropped);
        goto out;
    }
    if ((r = coffer_arena_new(0, &a)) != COFFER_OK ||
        (r = coffer_store_open(cfg->database, &st)) != COFFER_OK ||
        (r = coffer_store_begin(st)) != COFFER_OK) {
        goto out;
    }
    for (size_t i = 0; i < p->n_orgs; i++) {
        struct coffer_store_policy_result res;

        if ((r = coffer_store_policy_apply(st, &p->orgs[i], "cofferd", a, &res)) != COFFER_OK) {
            coffer_store_rollback(st);
            goto out;
        }
        coffer_info(LOG_MOD, "policy of org %s: %s (version %u)", p->orgs[i].name,
                    res.changed ? "applied" : "unchanged", (unsigned)res.version);
    }
    r = coffer_store_commit(st);
out:
    coffer_store_close(&st);
    coffer_arena_free(&a);
    coffer_policy_diags_cleanup(&d);
    coffer_policy_free(&p);
    return r;
}

/* ---- A worker -------------------------------------------------------------------------- */

/* Counters shared by the supervisor and every worker (one slot each), for /metrics. */
static struct coffer_api_stats *shared_stats;
static unsigned shared_slots;

struct worker_ctx {
    const struct serve_opts *o;
    struct event_base *base;
    struct coffer_api *api;
    int index;
    struct coffer_p11_config pc;
    struct coffer_p11 *p11;
    struct coffer_ops ops; /* ops.k is the worker's keys, renewed with p11 */
    int status;            /* the exit status when the loop ends early */
};

/*
 * Every second: once the token context has made pkcs11.renew_objects
 * session objects, close it (the last close finalizes the module, which is
 * the only way SoftHSMv2 2.6 gives back the memory of destroyed session
 * objects) and open it again, between two requests. If it cannot be opened
 * again, the worker ends and the supervisor starts another.
 */
static void on_renew(evutil_socket_t fd, short what, void *arg)
{
    struct worker_ctx *w = arg;
    uint64_t made = coffer_p11_objects_made(w->p11);
    enum coffer_err r;

    (void)fd;
    (void)what;
    if (made < (w->o->cfg.pkcs11_renew_objects > 0 ? w->o->cfg.pkcs11_renew_objects
                                                   : COFFER_CONFIG_RENEW_OBJECTS)) {
        return;
    }
    coffer_keys_free(&w->ops.k);
    coffer_p11_close(&w->p11);
    if ((r = coffer_p11_open(&w->pc, &w->p11)) != COFFER_OK ||
        (r = coffer_keys_new(w->p11, &w->ops.k)) != COFFER_OK) {
        coffer_error(LOG_MOD, "worker %d: reopening the token failed: %s: %s", w->index,
                     coffer_err_str(r), coffer_err_detail());
        w->status = SERVE_EXIT_UNAVAILABLE;
        coffer_api_stop_accepting(w->api);
        (void)event_base_loopbreak(w->base);
        return;
    }
    coffer_info(LOG_MOD, "worker %d: token context renewed after %llu session objects", w->index,
                (unsigned long long)made);
}

static void on_term(evutil_socket_t sig, short what, void *arg)
{
    struct worker_ctx *w = arg;
    struct timeval grace = {DRAIN_SECONDS, 0};

    (void)sig;
    (void)what;
    coffer_api_stop_accepting(w->api);
    (void)event_base_loopexit(w->base, &grace);
}

static void on_hup(evutil_socket_t sig, short what, void *arg)
{
    struct worker_ctx *w = arg;
    struct coffer_policy_diags d = {0};
    struct coffer_config cfg;
    enum coffer_err r;

    (void)sig;
    (void)what;
    r = coffer_config_load(w->o->config_path, &cfg, &d);
    if (r == COFFER_OK) {
        r = coffer_api_reload_tls(w->api, &cfg);
    }
    if (r != COFFER_OK) {
        coffer_error(LOG_MOD, "worker %d: reload failed, keeping the TLS files in use: %s",
                     w->index, coffer_err_detail());
    } else {
        coffer_info(LOG_MOD, "worker %d: reloaded the TLS files", w->index);
    }
    coffer_policy_diags_cleanup(&d);
}

/* Runs one worker to its end; returns its exit status. */
static int worker_main(const struct serve_opts *o, int fd, int index, const sigset_t *set)
{
    const struct coffer_config *cfg = &o->cfg;
    struct worker_ctx w = {.o = o,
                           .index = index,
                           .pc = {.module = cfg->pkcs11_module,
                                  .token_uri = cfg->token_uri,
                                  .pin_source = cfg->pin_source,
                                  .pool_size = 1}};
    struct coffer_api_stats_view view = {
        .slots = shared_stats, .n = shared_slots, .self = (unsigned)index};
    const struct timeval every_second = {1, 0};
    struct event *ev_term = NULL;
    struct event *ev_int = NULL;
    struct event *ev_hup = NULL;
    struct event *ev_renew = NULL;
    enum coffer_err r;
    int status = SERVE_EXIT_CONFIG;

    (void)signal(SIGPIPE, SIG_IGN);
    coffer_api_json_init();
    if ((r = coffer_p11_open(&w.pc, &w.p11)) != COFFER_OK ||
        (r = coffer_keys_new(w.p11, &w.ops.k)) != COFFER_OK ||
        (r = coffer_store_open(cfg->database, &w.ops.st)) != COFFER_OK) {
        coffer_error(LOG_MOD, "worker %d cannot start: %s: %s", index, coffer_err_str(r),
                     coffer_err_detail());
        /* An outage is not a configuration error: the supervisor tries again. */
        if (r == COFFER_E_DB_UNAVAILABLE || r == COFFER_E_TOKEN_UNAVAILABLE ||
            r == COFFER_E_TOKEN) {
            status = SERVE_EXIT_UNAVAILABLE;
        }
        goto out;
    }
    w.base = event_base_new();

    if (w.base == NULL ||
        (r = coffer_api_new(cfg, w.base, fd, &w.ops, shared_stats != NULL ? &view : NULL,
                            &w.api)) != COFFER_OK) {
        coffer_error(LOG_MOD, "worker %d cannot serve: %s", index, coffer_err_detail());
        goto out;
    }
    ev_term = evsignal_new(w.base, SIGTERM, on_term, &w);
    ev_int = evsignal_new(w.base, SIGINT, on_term, &w);
    ev_hup = evsignal_new(w.base, SIGHUP, on_hup, &w);
    ev_renew = event_new(w.base, -1, EV_PERSIST, on_renew, &w);
    if (ev_term == NULL || ev_int == NULL || ev_hup == NULL || ev_renew == NULL ||
        evsignal_add(ev_term, NULL) != 0 || evsignal_add(ev_int, NULL) != 0 ||
        evsignal_add(ev_hup, NULL) != 0 || event_add(ev_renew, &every_second) != 0 ||
        sigprocmask(SIG_UNBLOCK, set, NULL) != 0) {
        coffer_error(LOG_MOD, "worker %d: cannot take signals", index);
        goto out;
    }
    coffer_info(LOG_MOD, "worker %d (PID %ld) serving", index, (long)getpid());
    (void)event_base_dispatch(w.base);
    coffer_info(LOG_MOD, "worker %d stopped", index);
    status = w.status;
out:
    if (ev_term != NULL) {
        event_free(ev_term);
    }
    if (ev_int != NULL) {
        event_free(ev_int);
    }
    if (ev_hup != NULL) {
        event_free(ev_hup);
    }
    if (ev_renew != NULL) {
        event_free(ev_renew);
    }
    coffer_api_free(&w.api);
    if (w.base != NULL) {
        event_base_free(w.base);
    }
    coffer_store_close(&w.ops.st);
    coffer_keys_free(&w.ops.k);
    coffer_p11_close(&w.p11);
    return status;
}

/* ---- The supervisor ----------------------------------------------------------------------- */

struct slot {
    pid_t pid;
    time_t started;
};

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/*
 * In a child: a SIGTERM when the supervisor dies, even by SIGKILL, so that no
 * worker goes on serving (or holding its token login) without the process that
 * replaces and stops it. A supervisor that died before this took effect is
 * seen as a new parent.
 */
static void follow_supervisor(pid_t supervisor)
{
    if (prctl(PR_SET_PDEATHSIG, SIGTERM, 0, 0, 0) != 0 || getppid() != supervisor) {
        _exit(1);
    }
}

static enum coffer_err start_worker(const struct serve_opts *o, int fd, int index,
                                    const sigset_t *set, struct slot *s)
{
    pid_t supervisor = getpid();
    pid_t pid;

    if (shared_stats != NULL) {
        /* A replaced worker's connections died with it. */
        shared_stats[index].connections_open = 0;
    }
    fflush(NULL);
    pid = fork();
    if (pid < 0) {
        return coffer_err_set(COFFER_E_IO, "starting worker %d: %s", index, strerror(errno));
    }
    if (pid == 0) {
        /* The process name operators see in ps and top. */
        (void)prctl(PR_SET_NAME, "cofferd-worker", 0, 0, 0);
        follow_supervisor(supervisor);
        _exit(worker_main(o, fd, index, set));
    }
    s->pid = pid;
    s->started = time(NULL);
    return COFFER_OK;
}

/* The background process (sealing and sweeping): never holds a listening socket. */
static enum coffer_err start_background(const struct serve_opts *o, const int *fds, unsigned n,
                                        const sigset_t *set, struct slot *s)
{
    pid_t supervisor = getpid();
    pid_t pid;

    fflush(NULL);
    pid = fork();
    if (pid < 0) {
        return coffer_err_set(COFFER_E_IO, "starting the background process: %s", strerror(errno));
    }
    if (pid == 0) {
        for (unsigned i = 0; i < n; i++) {
            if (fds[i] >= 0) {
                close(fds[i]);
            }
        }
        /* At most 15 characters: the kernel cuts a longer name. */
        (void)prctl(PR_SET_NAME, "cofferd-bg", 0, 0, 0);
        follow_supervisor(supervisor);
        _exit(serve_background_main(o, set));
    }
    s->pid = pid;
    s->started = time(NULL);
    return COFFER_OK;
}

/* Sends sig to every worker and waits up to ms for them; SIGKILL for the rest. */
static void stop_workers(struct slot *slots, unsigned n, int sig, int ms)
{
    double until = now_s() + ms / 1000.0;

    for (unsigned i = 0; i < n; i++) {
        if (slots[i].pid > 0) {
            (void)kill(slots[i].pid, sig);
        }
    }
    for (;;) {
        bool left = false;

        for (unsigned i = 0; i < n; i++) {
            int status;

            if (slots[i].pid > 0 && waitpid(slots[i].pid, &status, WNOHANG) == slots[i].pid) {
                slots[i].pid = 0;
            }
            left = left || slots[i].pid > 0;
        }
        if (!left) {
            return;
        }
        if (now_s() > until) {
            for (unsigned i = 0; i < n; i++) {
                if (slots[i].pid > 0) {
                    coffer_warn(LOG_MOD, "worker PID %ld did not stop; killing it",
                                (long)slots[i].pid);
                    (void)kill(slots[i].pid, SIGKILL);
                    (void)waitpid(slots[i].pid, NULL, 0);
                    slots[i].pid = 0;
                }
            }
            return;
        }
        (void)usleep(20 * 1000);
    }
}

static void close_all(const int *fds, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        if (fds[i] >= 0) {
            close(fds[i]);
        }
    }
}

enum coffer_err serve_run(const struct serve_opts *o, const sigset_t *set)
{
    const struct coffer_config *cfg = &o->cfg;
    /* The workers, then the background process in slots[n]. */
    struct slot slots[COFFER_CONFIG_WORKERS_MAX + 1] = {{0}};
    int fds[COFFER_CONFIG_WORKERS_MAX];
    unsigned n = cfg->workers == 0 ? 1 : cfg->workers;
    enum coffer_err r = COFFER_OK;

    if (n > COFFER_CONFIG_WORKERS_MAX) {
        n = COFFER_CONFIG_WORKERS_MAX;
    }
    for (unsigned i = 0; i < n; i++) {
        fds[i] = -1;
    }
    shared_stats = mmap(NULL, sizeof(*shared_stats) * n, PROT_READ | PROT_WRITE,
                        MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (shared_stats == MAP_FAILED) {
        shared_stats = NULL;
        coffer_warn(LOG_MOD, "no shared memory for counters; /metrics shows one worker");
    } else {
        shared_slots = n;
    }
    for (unsigned i = 0; i < n && r == COFFER_OK; i++) {
        r = bind_listen(cfg, &fds[i]);
    }
    if (r == COFFER_OK) {
        r = apply_policy(cfg);
    }
    for (unsigned i = 0; i < n && r == COFFER_OK; i++) {
        r = start_worker(o, fds[i], (int)i, set, &slots[i]);
    }
    if (r == COFFER_OK && !cfg->audit_seal) {
        coffer_warn(LOG_MOD, "audit.seal is false: audit events are not being sealed");
    }
    if (r == COFFER_OK && !cfg->keys_sweep) {
        coffer_info(LOG_MOD, "keys.sweep is false: after a rotation, rows move to the new key "
                             "version only when read or by `coffer keys sweep`");
    }
    /* With nothing to seal and nothing to sweep, there is no background process at all. */
    if (r == COFFER_OK && (cfg->audit_seal || cfg->keys_sweep)) {
        r = start_background(o, fds, n, set, &slots[n]);
    }
    if (r != COFFER_OK) {
        stop_workers(slots, n + 1, SIGTERM, STOP_WAIT_MS);
        close_all(fds, n);
        return r;
    }
    coffer_info(LOG_MOD, "serving https://%s:%u with %u worker(s)", cfg->listen_host,
                (unsigned)cfg->listen_port, n);
    for (;;) {
        struct timespec tick = {1, 0};
        siginfo_t info;
        int sig = sigtimedwait(set, &info, &tick);
        pid_t pid;
        int status;
        char how[96];

        if (sig == SIGINT || sig == SIGTERM) {
            coffer_info(LOG_MOD, "received SIG%s; draining and stopping the workers",
                        sigabbrev_np(sig));
            stop_workers(slots, n + 1, SIGTERM, STOP_WAIT_MS);
            close_all(fds, n);
            return COFFER_OK;
        }
        if (sig == SIGHUP) {
            if ((r = apply_policy(cfg)) != COFFER_OK) {
                coffer_error(LOG_MOD, "SIGHUP: %s", coffer_err_detail());
            }
            for (unsigned i = 0; i < n; i++) {
                if (slots[i].pid > 0) {
                    (void)kill(slots[i].pid, SIGHUP);
                }
            }
        }
        while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
            if (o->watch_pid > 0 && pid == o->watch_pid) {
                stop_workers(slots, n + 1, SIGTERM, STOP_WAIT_MS);
                close_all(fds, n);
                return coffer_err_set(COFFER_E_DB_UNAVAILABLE,
                                      "PostgreSQL (PID %ld) exited on its own", (long)pid);
            }
            if (slots[n].pid > 0 && pid == slots[n].pid) {
                slots[n].pid = 0;
                coffer_proc_status_str(status, how, sizeof(how));
                coffer_warn(LOG_MOD, "the background process (PID %ld) %s; starting another",
                            (long)pid, how);
                if (time(NULL) - slots[n].started < 2) {
                    (void)sleep(1);
                }
                if ((r = start_background(o, fds, n, set, &slots[n])) != COFFER_OK) {
                    coffer_error(LOG_MOD, "%s", coffer_err_detail());
                }
                continue;
            }
            for (unsigned i = 0; i < n; i++) {
                if (slots[i].pid != pid) {
                    continue;
                }
                slots[i].pid = 0;
                if (WIFEXITED(status) && WEXITSTATUS(status) == SERVE_EXIT_CONFIG) {
                    stop_workers(slots, n + 1, SIGTERM, STOP_WAIT_MS);
                    close_all(fds, n);
                    return coffer_err_set(COFFER_E_CONFIG,
                                          "worker %u could not start (see the log above)", i);
                }
                if (WIFEXITED(status) && WEXITSTATUS(status) == SERVE_EXIT_UNAVAILABLE) {
                    (void)snprintf(how, sizeof(how),
                                   "could not start: the database or the token "
                                   "is unavailable");
                } else {
                    coffer_proc_status_str(status, how, sizeof(how));
                }
                coffer_warn(LOG_MOD, "worker %u (PID %ld) %s; starting another", i, (long)pid, how);
                if (time(NULL) - slots[i].started < 2) {
                    (void)sleep(1); /* a worker that dies at once would otherwise spin */
                }
                if ((r = start_worker(o, fds[i], (int)i, set, &slots[i])) != COFFER_OK) {
                    coffer_error(LOG_MOD, "%s", coffer_err_detail());
                }
            }
        }
    }
}

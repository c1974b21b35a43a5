/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The background process of cofferd: the work that must go on without a
 * request to carry it. It seals audit events into signed checkpoints every
 * audit.seal_interval_ms (at once again while a backlog remains), and
 * between sealing rounds it sweeps: one step of keys.sweep_batch rows at a
 * time, keys.sweep_interval_ms apart while rows remain under older key
 * versions, and a look for new work every keys.sweep_idle_ms once none is
 * left (a rotation makes every row of an org, or every org key, stale at
 * once). Sealing always goes first, and a sweep step is one batch, so the
 * sealing cadence holds while a sweep runs.
 *
 * Like a worker it opens its own token login and database connection after
 * fork; it never listens and never answers a client, so its pauses never
 * delay an access. Each rewrap is its own compare-and-swap, so a sweep runs
 * beside the workers' lazy rewraps and other servers' sweeps, and a kill at
 * any moment loses nothing: the next process starts a new pass.
 */
#include "server/serve.h"

#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "coffer/audit_seal.h"
#include "coffer/keys.h"
#include "coffer/log.h"
#include "coffer/p11.h"
#include "coffer/store.h"

#define LOG_MOD "background"

/* The pause before a failed sweep step is tried again, unless sweep_interval_ms is longer. */
#define SWEEP_RETRY_MS 1000

/* Where the sweeper stands between steps. */
struct sweeper {
    struct coffer_keys_sweep pass;
    bool running;    /* a pass is under way */
    int64_t left_cv; /* what the last finished pass left stale (rows that failed) */
    int64_t left_ok;
    enum coffer_err last; /* the last step's result, so that a failure is said once */
};

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The CPU time this process has used, in microseconds. */
static int64_t cpu_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Waits up to ms for a signal of set; true when it is time to stop. */
static bool wait_or_stop(const sigset_t *set, int64_t ms)
{
    struct timespec ts;
    int sig;

    if (ms < 0) {
        ms = 0;
    }
    ts.tv_sec = (time_t)(ms / 1000);
    ts.tv_nsec = (long)(ms % 1000) * 1000000L;
    sig = sigtimedwait(set, NULL, &ts);
    return sig == SIGTERM || sig == SIGINT;
}

/* One sealing round; returns the delay until the next one. */
static int64_t seal_round(const struct coffer_config *cfg, struct coffer_keys *k,
                          struct coffer_store *st, enum coffer_err *last)
{
    struct coffer_audit_seal_result res;
    enum coffer_err r;

    memset(&res, 0, sizeof(res));
    r = coffer_audit_seal_once(k, st, cfg->audit_seal_wait_ms, &res);
    if (r != COFFER_OK) {
        /* Said once per change of cause, not every round, while it persists. */
        if (r != *last) {
            coffer_warn(LOG_MOD, "sealing failed, retrying: %s: %s", coffer_err_str(r),
                        coffer_err_detail());
        }
    } else if (res.sealed) {
        if (*last != COFFER_OK) {
            coffer_info(LOG_MOD, "sealing works again");
        }
        coffer_debug(LOG_MOD, "checkpoint %lld sealed %lld events through %lld%s",
                     (long long)res.seq, (long long)res.events, (long long)res.last_event,
                     res.schema_changed ? " (audit schema changed)" : "");
        if (res.schema_changed && res.seq > 1) {
            coffer_warn(LOG_MOD, "checkpoint %lld records a change of the audit schema",
                        (long long)res.seq);
        }
    }
    *last = r;
    return r == COFFER_OK && res.more ? 0 : (int64_t)cfg->audit_seal_interval_ms;
}

/*
 * Starts a pass if rows are stale; *started is false when there is nothing
 * to do. A pass that finished with rows it could not move (they do not
 * authenticate) leaves them stale; the same count again means nothing new,
 * and those rows are not tried (and warned about) again every sweep_idle_ms.
 */
static enum coffer_err sweep_begin(struct coffer_store *st, struct sweeper *sw, bool *started)
{
    int64_t cv = 0;
    int64_t ok = 0;
    enum coffer_err r;

    *started = false;
    if ((r = coffer_store_count_stale(st, &cv, &ok)) != COFFER_OK) {
        return r;
    }
    if ((cv == 0 && ok == 0) || (cv == sw->left_cv && ok == sw->left_ok)) {
        return COFFER_OK;
    }
    memset(&sw->pass, 0, sizeof(sw->pass));
    /* The count just taken is the pass's first; the step need not scan again. */
    sw->pass.remaining = cv;
    sw->pass.remaining_org_keys = ok;
    sw->pass.counted = true;
    sw->running = true;
    *started = true;
    coffer_info(LOG_MOD, "sweep started: %lld org keys and %lld credential versions to rewrap",
                (long long)ok, (long long)cv);
    return COFFER_OK;
}

static void sweep_finished(struct sweeper *sw)
{
    const struct coffer_keys_sweep *p = &sw->pass;

    sw->running = false;
    /*
     * Only rows that failed may be left for good. More left than failed
     * means rows became stale during the pass (a rotation behind its
     * position): the next look starts a new pass.
     */
    if (p->failed > 0 && p->remaining + p->remaining_org_keys <= p->failed) {
        sw->left_cv = p->remaining;
        sw->left_ok = p->remaining_org_keys;
    } else {
        sw->left_cv = -1;
        sw->left_ok = -1;
    }
    if (p->failed > 0) {
        coffer_warn(LOG_MOD,
                    "sweep finished: %lld org keys, %lld credential versions rewrapped; %lld "
                    "rows do not authenticate and stay under their old key version (see the "
                    "warnings above)",
                    (long long)p->org_keys_rewrapped, (long long)p->rewrapped,
                    (long long)p->failed);
    } else {
        coffer_info(LOG_MOD, "sweep finished: %lld org keys, %lld credential versions rewrapped",
                    (long long)p->org_keys_rewrapped, (long long)p->rewrapped);
    }
    if (p->lost_races > 0) {
        coffer_debug(LOG_MOD, "sweep: %lld rows were rewrapped by readers or another server first",
                     (long long)p->lost_races);
    }
}

/* One sweep step, or a look for work; returns the delay until the next. */
static int64_t sweep_round(const struct coffer_config *cfg, struct coffer_keys *k,
                           struct coffer_store *st, struct sweeper *sw)
{
    int64_t retry =
        cfg->keys_sweep_interval_ms > SWEEP_RETRY_MS ? cfg->keys_sweep_interval_ms : SWEEP_RETRY_MS;
    bool started = true;
    enum coffer_err r = COFFER_OK;
    int64_t t0 = cpu_us();
    int64_t pause;

    if (!sw->running) {
        r = sweep_begin(st, sw, &started);
    }
    if (r == COFFER_OK && started) {
        r = coffer_keys_sweep_step(k, st, cfg->keys_sweep_batch, &sw->pass);
    }
    if (r != COFFER_OK) {
        if (r != sw->last) {
            coffer_warn(LOG_MOD, "sweeping failed, retrying: %s: %s", coffer_err_str(r),
                        coffer_err_detail());
        }
        sw->last = r;
        return retry;
    }
    if (sw->last != COFFER_OK) {
        coffer_info(LOG_MOD, "sweeping works again");
    }
    sw->last = COFFER_OK;
    if (!started) {
        return cfg->keys_sweep_idle_ms;
    }
    if (sw->pass.done) {
        sweep_finished(sw);
        return cfg->keys_sweep_idle_ms;
    }
    coffer_debug(LOG_MOD,
                 "sweep: %lld org keys and %lld credential versions rewrapped, about %lld "
                 "left",
                 (long long)sw->pass.org_keys_rewrapped, (long long)sw->pass.rewrapped,
                 (long long)(sw->pass.remaining + sw->pass.remaining_org_keys));
    /*
     * The pause is long enough that the CPU time of stepping (this
     * process's: the token's work and the rows' handling) is
     * keys.sweep_share percent of the time, whatever sweep_interval_ms
     * says: the sweeper then takes at most that share of one core and of
     * the token's time, on any machine, however busy. Wall time would not
     * do: on a busy machine a step waits for a core, and the pause grew
     * with the load until the sweeper nearly stopped.
     */
    pause = (cpu_us() - t0) * (100 - (int64_t)cfg->keys_sweep_share) /
            ((int64_t)cfg->keys_sweep_share * 1000);
    return pause > (int64_t)cfg->keys_sweep_interval_ms ? pause : cfg->keys_sweep_interval_ms;
}

static void say_started(const struct coffer_config *cfg)
{
    if (cfg->audit_seal && cfg->keys_sweep) {
        coffer_info(LOG_MOD,
                    "PID %ld sealing audit events every %u ms; sweeping keys in steps of %u "
                    "rows, %u ms apart",
                    (long)getpid(), cfg->audit_seal_interval_ms, cfg->keys_sweep_batch,
                    cfg->keys_sweep_interval_ms);
    } else if (cfg->audit_seal) {
        coffer_info(LOG_MOD,
                    "PID %ld sealing audit events every %u ms; not sweeping keys "
                    "(keys.sweep is false)",
                    (long)getpid(), cfg->audit_seal_interval_ms);
    } else {
        coffer_info(LOG_MOD,
                    "PID %ld sweeping keys in steps of %u rows, %u ms apart; not sealing "
                    "(audit.seal is false)",
                    (long)getpid(), cfg->keys_sweep_batch, cfg->keys_sweep_interval_ms);
    }
}

int serve_background_main(const struct serve_opts *o, const sigset_t *set)
{
    const struct coffer_config *cfg = &o->cfg;
    struct coffer_p11_config pc = {.module = cfg->pkcs11_module,
                                   .token_uri = cfg->token_uri,
                                   .pin_source = cfg->pin_source,
                                   .pool_size = 1};
    struct coffer_p11 *p11 = NULL;
    struct coffer_keys *k = NULL;
    struct coffer_store *st = NULL;
    struct sweeper sw;
    enum coffer_err last_seal = COFFER_OK;
    int64_t next_seal;
    int64_t next_sweep;
    enum coffer_err r;
    int status = SERVE_EXIT_CONFIG;

    memset(&sw, 0, sizeof(sw));
    sw.left_cv = -1;
    sw.left_ok = -1;
    if ((r = coffer_p11_open(&pc, &p11)) != COFFER_OK ||
        (r = coffer_keys_new(p11, &k)) != COFFER_OK ||
        (r = coffer_store_open(cfg->database, &st)) != COFFER_OK) {
        coffer_error(LOG_MOD, "cannot start: %s: %s", coffer_err_str(r), coffer_err_detail());
        goto out;
    }
    say_started(cfg);
    status = 0;
    next_seal = cfg->audit_seal ? now_ms() : INT64_MAX;
    next_sweep = cfg->keys_sweep ? now_ms() : INT64_MAX;
    for (;;) {
        int64_t now = now_ms();
        int64_t next;

        /*
         * Sealing first, then a sweep step if one is due: one step between
         * two rounds at most, so that sealing keeps its cadence, and at
         * least one, so that a sealing backlog cannot stop the sweep.
         */
        if (next_seal <= now) {
            next_seal = now_ms() + seal_round(cfg, k, st, &last_seal);
            now = now_ms();
        }
        if (next_sweep <= now) {
            next_sweep = now_ms() + sweep_round(cfg, k, st, &sw);
        }
        /* SoftHSMv2 keeps memory for every session object made until it is finalized. */
        if (coffer_p11_objects_made(p11) >= (cfg->pkcs11_renew_objects > 0
                                                 ? cfg->pkcs11_renew_objects
                                                 : COFFER_CONFIG_RENEW_OBJECTS)) {
            coffer_keys_free(&k);
            coffer_p11_close(&p11);
            if ((r = coffer_p11_open(&pc, &p11)) != COFFER_OK ||
                (r = coffer_keys_new(p11, &k)) != COFFER_OK) {
                coffer_error(LOG_MOD, "reopening the token failed: %s: %s", coffer_err_str(r),
                             coffer_err_detail());
                status = SERVE_EXIT_UNAVAILABLE;
                break;
            }
            coffer_info(LOG_MOD, "token context renewed");
        }
        next = next_seal < next_sweep ? next_seal : next_sweep;
        if (wait_or_stop(set, next - now_ms())) {
            break;
        }
    }
    coffer_info(LOG_MOD, "stopped");
out:
    coffer_store_close(&st);
    coffer_keys_free(&k);
    coffer_p11_close(&p11);
    return status;
}

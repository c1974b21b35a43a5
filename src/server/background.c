/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The background process of cofferd: the work that must go on without a
 * request to carry it. It seals audit events into signed checkpoints every
 * audit.seal_interval_ms (at once again while a backlog remains). Like a
 * worker it opens its own token login and database connection after fork;
 * it never listens and never answers a client, so its pauses never delay an
 * access.
 */
#include "server/serve.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "coffer/audit_seal.h"
#include "coffer/keys.h"
#include "coffer/log.h"
#include "coffer/p11.h"
#include "coffer/store.h"

#define LOG_MOD "background"

/* Waits up to ms for a signal of set; true when it is time to stop. */
static bool wait_or_stop(const sigset_t *set, unsigned ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    int sig = sigtimedwait(set, NULL, &ts);

    return sig == SIGTERM || sig == SIGINT;
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
    enum coffer_err last = COFFER_OK;
    enum coffer_err r;
    int status = SERVE_EXIT_CONFIG;

    if ((r = coffer_p11_open(&pc, &p11)) != COFFER_OK ||
        (r = coffer_keys_new(p11, &k)) != COFFER_OK ||
        (r = coffer_store_open(cfg->database, &st)) != COFFER_OK) {
        coffer_error(LOG_MOD, "cannot start: %s: %s", coffer_err_str(r), coffer_err_detail());
        goto out;
    }
    coffer_info(LOG_MOD, "PID %ld sealing audit events every %u ms", (long)getpid(),
                cfg->audit_seal_interval_ms);
    status = 0;
    for (;;) {
        struct coffer_audit_seal_result res;

        r = coffer_audit_seal_once(k, st, cfg->audit_seal_wait_ms, &res);
        if (r != COFFER_OK) {
            /* Said once per change of cause, not every round, while it persists. */
            if (r != last) {
                coffer_warn(LOG_MOD, "sealing failed, retrying: %s: %s", coffer_err_str(r),
                            coffer_err_detail());
            }
        } else if (res.sealed) {
            if (last != COFFER_OK) {
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
        last = r;
        if (r == COFFER_OK && res.more) {
            if (wait_or_stop(set, 0)) {
                break;
            }
            continue;
        }
        if (wait_or_stop(set, cfg->audit_seal_interval_ms)) {
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

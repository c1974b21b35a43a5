/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The sweeper: moves every row still under an older key version to the
 * current one, in batches, so that old versions can be retired. Each row is
 * its own compare-and-swap, so a sweep runs beside readers, other sweepers
 * and other servers; the swaps of one batch commit together (one WAL flush
 * per batch, not per row), and stopping at any point loses nothing: an
 * uncommitted batch leaves its rows as they were. A row that fails to
 * authenticate is counted and left alone; the pass goes on.
 */
#include "keys_int.h"

#include "coffer/log.h"
#include "coffer/mem.h"

#include <string.h>

static enum coffer_err sweep_org_keys(struct coffer_keys *k, struct coffer_p11_session *s,
                                      struct coffer_store *st, size_t batch,
                                      struct coffer_keys_sweep *state)
{
    struct coffer_store_org_key *rows = NULL;
    struct coffer_store_mk current;
    size_t n = 0;
    size_t i;
    enum coffer_err r;

    if ((r = coffer_store_mk_current(st, &current)) != COFFER_OK) {
        return coffer_err_wrap(r, "current master key");
    }
    if ((r = coffer_store_org_key_stale(st, current.version,
                                        state->org_key_started ? &state->org_key_after : NULL,
                                        batch, &rows, &n)) != COFFER_OK) {
        return r;
    }
    for (i = 0; i < n; i++) {
        bool won = false;

        r = coffer_keys_org_key_rewrap(k, s, st, &rows[i], &current, &won);
        if (r == COFFER_E_INTEGRITY) {
            coffer_warn("keys", "sweep: org key v%u does not authenticate: %s", rows[i].version,
                        coffer_err_detail());
            state->failed++;
        } else if (r != COFFER_OK) {
            goto out;
        } else if (won) {
            state->org_keys_rewrapped++;
        } else {
            state->lost_races++;
        }
        state->org_key_after = rows[i].id;
        state->org_key_started = true;
    }
    if (n < batch) {
        state->org_keys_done = true;
    }
    r = COFFER_OK;
out:
    coffer_free(rows);
    return r;
}

static enum coffer_err rewrap_version(struct coffer_keys *k, struct coffer_p11_session *s,
                                      struct coffer_store *st,
                                      const struct coffer_store_cred_version *v, bool *won)
{
    unsigned char wrapped[COFFER_WRAPPED_MAX];
    size_t wrapped_len = 0;
    coffer_p11_obj old_ok = 0;
    coffer_p11_obj new_ok = 0;
    coffer_p11_obj cek = 0;
    enum coffer_err r;

    *won = false;
    if (v->org_current_key_version == 0) {
        return coffer_err_set(COFFER_E_STATE, "org has no current key");
    }
    if ((r = coffer_keys_org_key_handle(k, s, st, &v->org_id, v->org_key_version, &old_ok)) !=
            COFFER_OK ||
        (r = coffer_keys_org_key_handle(k, s, st, &v->org_id, v->org_current_key_version,
                                        &new_ok)) != COFFER_OK) {
        return r;
    }
    if ((r = coffer_p11_unwrap(s, old_ok, v->wrapped_cek, v->wrapped_cek_len,
                               &coffer_keys_spec_cek_rewrap, &cek)) != COFFER_OK) {
        return r;
    }
    if ((r = coffer_p11_wrap(s, new_ok, cek, wrapped, &wrapped_len)) == COFFER_OK) {
        r = coffer_store_cred_rewrap(st, v, v->org_current_key_version, wrapped, wrapped_len, won);
    }
    coffer_p11_destroy(s, &cek);
    return r;
}

static enum coffer_err sweep_creds(struct coffer_keys *k, struct coffer_p11_session *s,
                                   struct coffer_store *st, size_t batch,
                                   struct coffer_keys_sweep *state)
{
    struct coffer_store_cred_version *rows = NULL;
    size_t n = 0;
    size_t i;
    enum coffer_err r;

    struct coffer_keys_sweep before = *state;

    if ((r = coffer_store_cred_stale(st, &state->pos, batch, &rows, &n)) != COFFER_OK) {
        return r;
    }
    if (n > 0 && (r = coffer_store_begin(st)) != COFFER_OK) {
        goto out;
    }
    for (i = 0; i < n; i++) {
        bool won = false;

        r = rewrap_version(k, s, st, &rows[i], &won);
        if (r == COFFER_E_INTEGRITY || r == COFFER_E_STATE) {
            coffer_warn("keys", "sweep: credential version %u left as it is: %s", rows[i].version,
                        coffer_err_detail());
            state->failed++;
        } else if (r != COFFER_OK) {
            goto out;
        } else if (won) {
            state->rewrapped++;
        } else {
            state->lost_races++;
        }
    }
    if (n > 0 && (r = coffer_store_commit(st)) != COFFER_OK) {
        goto out;
    }
    if (n < batch) {
        state->done = true;
    }
    r = COFFER_OK;
out:
    if (r != COFFER_OK) {
        /* Nothing of this batch was committed: count none of it, and resume from its start. */
        coffer_store_rollback(st);
        *state = before;
    }
    for (i = 0; i < n; i++) {
        coffer_store_cred_version_cleanup(&rows[i]);
    }
    coffer_free(rows);
    return r;
}

enum coffer_err coffer_keys_sweep_step(struct coffer_keys *k, struct coffer_store *st, size_t batch,
                                       struct coffer_keys_sweep *state)
{
    struct coffer_p11_session *s = NULL;
    int64_t before;
    enum coffer_err r;

    if (batch == 0) {
        return coffer_err_set(COFFER_E_INVALID, "sweep batch size must be at least 1");
    }
    if (state->done) {
        return COFFER_OK;
    }
    /* Counting scans every stale row: do it at the ends of a pass, not at every step. */
    if (!state->counted) {
        if ((r = coffer_store_count_stale(st, &state->remaining, &state->remaining_org_keys)) !=
            COFFER_OK) {
            return r;
        }
        state->counted = true;
    }
    before = state->rewrapped + state->lost_races + state->failed;
    if ((r = coffer_p11_session_get(k->p11, &s)) != COFFER_OK) {
        return r;
    }
    if (!state->org_keys_done) {
        r = sweep_org_keys(k, s, st, batch, state);
    } else {
        r = sweep_creds(k, s, st, batch, state);
    }
    coffer_p11_session_put(k->p11, &s);
    if (r != COFFER_OK) {
        return r;
    }
    if (state->done) {
        return coffer_store_count_stale(st, &state->remaining, &state->remaining_org_keys);
    }
    state->remaining -= state->rewrapped + state->lost_races + state->failed - before;
    if (state->remaining < 0) {
        state->remaining = 0;
    }
    return COFFER_OK;
}

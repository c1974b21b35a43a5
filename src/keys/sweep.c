/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The sweeper: moves every row still under an older key version to the
 * current one, in batches, so that old versions can be retired. Each row is
 * its own compare-and-swap, so a sweep runs beside readers, other sweepers
 * and other servers; the swaps of up to COFFER_STORE_BATCH_MAX rows go in one
 * statement (one round trip and one WAL flush, not one per row), and stopping
 * at any point loses nothing: a statement that did not commit leaves its rows
 * as they were. A row that fails to authenticate is counted and left alone;
 * the pass goes on.
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

/* A content key moved to its org's current key, ready for the batched swap. */
struct moved {
    unsigned char wrapped[COFFER_WRAPPED_MAX];
    size_t wrapped_len;
};

/* Unwraps a version's CEK under its old org key and wraps it under the current one. */
static enum coffer_err rewrap_version(struct coffer_keys *k, struct coffer_p11_session *s,
                                      struct coffer_store *st,
                                      const struct coffer_store_cred_version *v, struct moved *out)
{
    coffer_p11_obj old_ok = 0;
    coffer_p11_obj new_ok = 0;
    coffer_p11_obj cek = 0;
    enum coffer_err r;

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
    r = coffer_p11_wrap(s, new_ok, cek, out->wrapped, &out->wrapped_len);
    coffer_p11_destroy(s, &cek);
    return r;
}

/*
 * Rewraps up to COFFER_STORE_BATCH_MAX rows in the token, then swaps all that
 * succeeded in one statement: one round trip and one commit per chunk.
 */
static enum coffer_err sweep_chunk(struct coffer_keys *k, struct coffer_p11_session *s,
                                   struct coffer_store *st,
                                   const struct coffer_store_cred_version *rows, size_t n,
                                   struct coffer_keys_sweep *state)
{
    struct moved moved[COFFER_STORE_BATCH_MAX];
    struct coffer_store_rewrap items[COFFER_STORE_BATCH_MAX];
    bool won[COFFER_STORE_BATCH_MAX];
    size_t m = 0;
    size_t i;
    enum coffer_err r;

    for (i = 0; i < n; i++) {
        r = rewrap_version(k, s, st, &rows[i], &moved[m]);
        if (r == COFFER_E_INTEGRITY || r == COFFER_E_STATE) {
            coffer_warn("keys", "sweep: credential version %u left as it is: %s", rows[i].version,
                        coffer_err_detail());
            state->failed++;
            continue;
        }
        if (r != COFFER_OK) {
            return r;
        }
        items[m].old = &rows[i];
        items[m].new_org_key_version = rows[i].org_current_key_version;
        items[m].wrapped = moved[m].wrapped;
        items[m].wrapped_len = moved[m].wrapped_len;
        m++;
    }
    if (m == 0) {
        return COFFER_OK;
    }
    if ((r = coffer_store_cred_rewrap_many(st, items, m, won)) != COFFER_OK) {
        return r;
    }
    for (i = 0; i < m; i++) {
        if (won[i]) {
            state->rewrapped++;
        } else {
            state->lost_races++;
        }
    }
    return COFFER_OK;
}

static enum coffer_err sweep_creds(struct coffer_keys *k, struct coffer_p11_session *s,
                                   struct coffer_store *st, size_t batch,
                                   struct coffer_keys_sweep *state)
{
    struct coffer_store_sweep_pos start = state->pos;
    struct coffer_store_cred_version *rows = NULL;
    size_t n = 0;
    size_t i;
    enum coffer_err r;

    if ((r = coffer_store_cred_stale(st, &state->pos, batch, &rows, &n)) != COFFER_OK) {
        return r;
    }
    for (i = 0; i < n; i += COFFER_STORE_BATCH_MAX) {
        size_t chunk = n - i < COFFER_STORE_BATCH_MAX ? n - i : COFFER_STORE_BATCH_MAX;

        if ((r = sweep_chunk(k, s, st, rows + i, chunk, state)) != COFFER_OK) {
            goto out;
        }
    }
    if (n < batch) {
        state->done = true;
    }
    r = COFFER_OK;
out:
    if (r != COFFER_OK) {
        /* A retry starts over at this batch; rows already moved are no longer stale. */
        state->pos = start;
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

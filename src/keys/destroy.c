/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The irreversible end of the hierarchy: destroying a retired master key
 * version in the token, destroying a retired org key version (its stored
 * wrapped key overwritten, as a shred does to each of an org's versions),
 * and crypto-shredding an org.
 *
 * A shred destroys every org key version of the org (the rows are marked
 * destroyed and their wrapped blobs overwritten), then makes sure no copy of
 * the database can bring them back: a new master key version is created,
 * every other org's key versions move under it, and every older master key
 * version, which wrapped the org's keys in every backup, is retired and
 * destroyed in the token. Each step starts from what the database and the
 * token say now, so a run interrupted anywhere is finished by running again.
 *
 * This file must never destroy a master key that still wraps a live org
 * key, nor mark a version destroyed while its token object is still there.
 */
#include "keys_int.h"
#include "keys/destroy_int.h"

#include "coffer/log.h"
#include "coffer/mem.h"

#include <openssl/rand.h>
#include <stdio.h>
#include <string.h>

/* Org key rows moved to the new master key per database round trip. */
#define REWRAP_BATCH 64u

/* The cache names hierarchy.c gives an MK session copy and a loaded org key. */
static void mk_cache_name(uint32_t version, char out[96])
{
    snprintf(out, 96, "mk:%u", version);
}

static void org_key_cache_name(const struct coffer_uuid *org, uint32_t version, char out[96])
{
    char id[COFFER_UUID_STR_LEN];

    coffer_uuid_format(org, id);
    snprintf(out, 96, "ok:%s:%u", id, version);
}

static void drop_mk_copies(struct coffer_keys *k, uint32_t version)
{
    char name[96];

    mk_cache_name(version, name);
    coffer_p11_cache_drop(k->p11, name);
}

/* ---- Destroying a master key version ------------------------------------------------ */

/* Inside the caller's transaction: lock, check, destroy in the token, mark destroyed. */
static enum coffer_err mk_destroy_locked(struct coffer_p11_session *s, struct coffer_store *st,
                                         uint32_t version, int64_t *refs,
                                         struct coffer_store_mk *row, size_t *removed)
{
    enum coffer_err r;

    if ((r = coffer_store_mk_lock(st, version)) != COFFER_OK ||
        (r = coffer_store_mk_get(st, version, row)) != COFFER_OK) {
        return r;
    }
    if (row->state == COFFER_KEY_DESTROYED) {
        return coffer_err_set(COFFER_E_STATE, "master key v%u is destroyed already", version);
    }
    if (row->state != COFFER_KEY_RETIRED) {
        return coffer_err_set(COFFER_E_STATE,
                              "master key v%u is %s; only a retired version can be destroyed "
                              "(retire it first)",
                              version, coffer_key_state_str(row->state));
    }
    if ((r = coffer_store_mk_count_refs(st, version, refs)) != COFFER_OK) {
        return r;
    }
    if (*refs > 0) {
        return coffer_err_set(COFFER_E_REFERENCED,
                              "master key v%u still wraps %lld org key versions; it cannot be "
                              "destroyed",
                              version, (long long)*refs);
    }
    /*
     * The token object goes first, the row after: a crash in between leaves a
     * retired row whose object is gone, which the next run marks destroyed.
     * The other order could record as destroyed a key that still exists.
     */
    if ((r = coffer_p11_destroy_labelled(s, row->label, removed)) != COFFER_OK) {
        return coffer_err_wrap(r, "master key %s", row->label);
    }
    return coffer_store_mk_set_state(st, version, COFFER_KEY_DESTROYED);
}

enum coffer_err coffer_keys_mk_destroy(struct coffer_keys *k, struct coffer_store *st,
                                       uint32_t version, int64_t *refs,
                                       struct coffer_keys_created *out)
{
    struct coffer_p11_session *s = NULL;
    struct coffer_store_mk row;
    int64_t local_refs = 0;
    size_t removed = 0;
    char kcv[2 * COFFER_KCV_LEN + 1];
    enum coffer_err r;

    if (refs == NULL) {
        refs = &local_refs;
    }
    *refs = 0;
    if (out != NULL) {
        memset(out, 0, sizeof(*out));
    }
    memset(&row, 0, sizeof(row));
    /* Session copies of this version in the pool are dropped first, so none outlives it. */
    drop_mk_copies(k, version);
    if ((r = coffer_p11_session_get(k->p11, &s)) != COFFER_OK) {
        return r;
    }
    if ((r = coffer_store_begin(st)) != COFFER_OK) {
        goto out;
    }
    if ((r = mk_destroy_locked(s, st, version, refs, &row, &removed)) != COFFER_OK ||
        (r = coffer_store_commit(st)) != COFFER_OK) {
        coffer_store_rollback(st);
        goto out;
    }
    /* A reader of this process may have copied the key again before the row was locked. */
    drop_mk_copies(k, version);
    if (out != NULL) {
        out->version = version;
        snprintf(out->label, sizeof(out->label), "%s", row.label);
        coffer_memcpy(out->kcv, row.kcv, COFFER_KCV_LEN);
    }
    coffer_hex(row.kcv, COFFER_KCV_LEN, kcv);
    coffer_info("keys", "master key %s (KCV %s) destroyed: %zu token object(s) removed", row.label,
                kcv, removed);
out:
    coffer_p11_session_put(k->p11, &s);
    return r;
}

/* ---- Shredding an org: the four steps ------------------------------------------------- */

/*
 * The highest MK version that ever wrapped a key of the org. A rewrap only
 * moves a row to the current (newest) version and a destroyed row is never
 * rewrapped, so every MK that wrapped one of them is at most this version.
 */
static enum coffer_err org_max_mk(struct coffer_store *st, const struct coffer_uuid *org_id,
                                  uint32_t *max, size_t *live)
{
    struct coffer_store_org_key *rows = NULL;
    size_t n = 0;
    size_t i;
    enum coffer_err r;

    *max = 0;
    *live = 0;
    if ((r = coffer_store_org_key_list(st, org_id, &rows, &n)) != COFFER_OK) {
        return r;
    }
    for (i = 0; i < n; i++) {
        if (rows[i].mk_version > *max) {
            *max = rows[i].mk_version;
        }
        if (rows[i].state != COFFER_KEY_DESTROYED) {
            (*live)++;
        }
    }
    coffer_free(rows);
    return COFFER_OK;
}

/* Overwrites one org key version's wrapped blob and marks it destroyed; inside a transaction. */
static enum coffer_err shred_one(struct coffer_store *st, const struct coffer_uuid *org_id,
                                 uint32_t version, unsigned *shredded)
{
    struct coffer_store_org_key row;
    unsigned char noise[COFFER_WRAPPED_MAX];
    bool won = false;
    enum coffer_err r;

    /* Locked before it is read, so no rewrap of another server slips in between. */
    if ((r = coffer_store_org_key_lock(st, org_id, version)) != COFFER_OK ||
        (r = coffer_store_org_key_get(st, org_id, version, &row)) != COFFER_OK) {
        return r;
    }
    if (row.state == COFFER_KEY_DESTROYED) {
        return COFFER_OK;
    }
    if (RAND_bytes(noise, (int)row.wrapped_len) != 1) {
        return coffer_err_set(COFFER_E_CRYPTO, "RAND_bytes failed overwriting org key v%u",
                              version);
    }
    /* The compare-and-swap of a rewrap, under the same MK version: only the blob changes. */
    if ((r = coffer_store_org_key_rewrap(st, &row, row.mk_version, noise, row.wrapped_len, &won)) !=
        COFFER_OK) {
        return r;
    }
    if (!won) {
        return coffer_err_set(COFFER_E_CONFLICT, "org key v%u changed while it was locked",
                              version);
    }
    if ((r = coffer_store_org_key_set_state(st, org_id, version, COFFER_KEY_DESTROYED)) !=
        COFFER_OK) {
        return r;
    }
    (*shredded)++;
    return COFFER_OK;
}

enum coffer_err coffer_keys_shred_org_keys(struct coffer_keys *k, struct coffer_store *st,
                                           const struct coffer_uuid *org_id,
                                           struct coffer_keys_shred_report *rep)
{
    struct coffer_store_org_key *rows = NULL;
    char id[COFFER_UUID_STR_LEN];
    unsigned shredded = 0;
    size_t n = 0;
    size_t i;
    enum coffer_err r;

    coffer_uuid_format(org_id, id);
    rep->org_key_versions = 0;
    rep->credential_versions = 0;
    if ((r = coffer_store_begin(st)) != COFFER_OK) {
        return r;
    }
    /* The org row lock keeps a rotation of the org from adding a version meanwhile. */
    if ((r = coffer_store_org_lock(st, org_id)) != COFFER_OK) {
        if (r == COFFER_E_NOT_FOUND) {
            r = coffer_err_set(COFFER_E_NOT_FOUND, "no org with id %s", id);
        }
        goto out;
    }
    if ((r = coffer_store_org_key_list(st, org_id, &rows, &n)) != COFFER_OK) {
        goto out;
    }
    for (i = 0; i < n; i++) {
        int64_t refs = 0;

        if ((r = coffer_store_org_key_count_refs(st, org_id, rows[i].version, &refs)) !=
                COFFER_OK ||
            (r = shred_one(st, org_id, rows[i].version, &shredded)) != COFFER_OK) {
            r = coffer_err_wrap(r, "shredding org key v%u of org %s", rows[i].version, id);
            goto out;
        }
        rep->org_key_versions++;
        rep->credential_versions += refs;
    }
    if ((r = coffer_store_commit(st)) != COFFER_OK) {
        goto out;
    }
    /* Loaded copies in this process go now; other processes refuse them by the row's state. */
    for (i = 0; i < n; i++) {
        char name[96];

        org_key_cache_name(org_id, rows[i].version, name);
        coffer_p11_cache_drop(k->p11, name);
    }
    if (shredded > 0) {
        coffer_info("keys",
                    "org %s: %u org key version(s) destroyed; %lld credential version(s) "
                    "unreadable",
                    id, shredded, (long long)rep->credential_versions);
    }
out:
    if (r != COFFER_OK) {
        coffer_store_rollback(st);
    }
    coffer_free(rows);
    return r;
}

enum coffer_err coffer_keys_shred_new_mk(struct coffer_keys *k, struct coffer_store *st,
                                         const struct coffer_uuid *org_id,
                                         struct coffer_keys_shred_report *rep)
{
    struct coffer_keys_created created;
    struct coffer_store_mk cur;
    uint32_t max = 0;
    size_t live = 0;
    enum coffer_err r;

    if ((r = org_max_mk(st, org_id, &max, &live)) != COFFER_OK) {
        return r;
    }
    if (live > 0) {
        return coffer_err_set(COFFER_E_STATE,
                              "%zu org key version(s) of the org are not destroyed yet", live);
    }
    if ((r = coffer_store_mk_current(st, &cur)) != COFFER_OK) {
        return r;
    }
    if (cur.version > max) {
        /* Created by an earlier run: it never wrapped a key of the org. */
        rep->new_mk_version = cur.version;
        coffer_memcpy(rep->new_mk_kcv, cur.kcv, COFFER_KCV_LEN);
        return COFFER_OK;
    }
    if ((r = coffer_keys_mk_create(k, st, &created)) != COFFER_OK) {
        return coffer_err_wrap(r, "creating the master key that replaces v%u", cur.version);
    }
    rep->new_mk_version = created.version;
    coffer_memcpy(rep->new_mk_kcv, created.kcv, COFFER_KCV_LEN);
    return COFFER_OK;
}

/* Rewraps one page of rows under cur; *last is the id to continue after. */
static enum coffer_err rewrap_page(struct coffer_keys *k, struct coffer_p11_session *s,
                                   struct coffer_store *st, const struct coffer_store_mk *cur,
                                   const struct coffer_uuid *after, struct coffer_uuid *last,
                                   size_t *n_out, struct coffer_keys_shred_report *rep)
{
    struct coffer_store_org_key *rows = NULL;
    size_t n = 0;
    size_t i;
    enum coffer_err r;

    *n_out = 0;
    if ((r = coffer_store_org_key_stale(st, cur->version, after, REWRAP_BATCH, &rows, &n)) !=
        COFFER_OK) {
        return r;
    }
    for (i = 0; i < n; i++) {
        char id[COFFER_UUID_STR_LEN];
        bool won = false;

        r = coffer_keys_org_key_rewrap(k, s, st, &rows[i], cur, &won);
        if (r != COFFER_OK) {
            coffer_uuid_format(&rows[i].org_id, id);
            r = coffer_err_wrap(r, "moving org key v%u of org %s to master key v%u",
                                rows[i].version, id, cur->version);
            goto out;
        }
        /* A lost swap means another reader moved it to the current version first. */
        if (won) {
            rep->org_keys_rewrapped++;
        }
        *last = rows[i].id;
    }
    *n_out = n;
out:
    coffer_free(rows);
    return r;
}

enum coffer_err coffer_keys_shred_rewrap(struct coffer_keys *k, struct coffer_store *st,
                                         struct coffer_keys_shred_report *rep)
{
    struct coffer_p11_session *s = NULL;
    struct coffer_store_mk cur;
    struct coffer_uuid last;
    bool started = false;
    size_t n = 0;
    enum coffer_err r;

    memset(&last, 0, sizeof(last));
    if ((r = coffer_store_mk_current(st, &cur)) != COFFER_OK) {
        return r;
    }
    if ((r = coffer_p11_session_get(k->p11, &s)) != COFFER_OK) {
        return r;
    }
    do {
        struct coffer_uuid after = last;

        if ((r = rewrap_page(k, s, st, &cur, started ? &after : NULL, &last, &n, rep)) !=
            COFFER_OK) {
            break;
        }
        started = true;
    } while (n == REWRAP_BATCH);
    coffer_p11_session_put(k->p11, &s);
    return r;
}

enum coffer_err coffer_keys_shred_old_mks(struct coffer_keys *k, struct coffer_store *st,
                                          const struct coffer_uuid *org_id,
                                          struct coffer_keys_shred_report *rep)
{
    struct coffer_store_mk *mks = NULL;
    struct coffer_store_mk cur;
    struct coffer_store_mk old;
    uint32_t max = 0;
    size_t live = 0;
    size_t n = 0;
    size_t i;
    enum coffer_err r;

    if ((r = org_max_mk(st, org_id, &max, &live)) != COFFER_OK ||
        (r = coffer_store_mk_current(st, &cur)) != COFFER_OK) {
        return r;
    }
    if (live > 0 || cur.version <= max) {
        return coffer_err_set(COFFER_E_STATE,
                              "master key v%u may still unwrap the org's keys from a copy of the "
                              "database; the shred must create a new master key first",
                              cur.version);
    }
    if ((r = coffer_store_mk_list(st, &mks, &n)) != COFFER_OK) {
        return r;
    }
    for (i = 0; i < n; i++) {
        int64_t refs = 0;

        if (mks[i].version == cur.version || mks[i].state == COFFER_KEY_DESTROYED) {
            continue;
        }
        if (mks[i].state == COFFER_KEY_ACTIVE &&
            (r = coffer_keys_mk_retire(k, st, mks[i].version, &refs)) != COFFER_OK) {
            goto out;
        }
        if ((r = coffer_keys_mk_destroy(k, st, mks[i].version, &refs, NULL)) != COFFER_OK) {
            goto out;
        }
    }
    rep->old_mk_version = 0;
    memset(rep->old_mk_kcv, 0, sizeof(rep->old_mk_kcv));
    if (max > 0) {
        if ((r = coffer_store_mk_get(st, max, &old)) != COFFER_OK) {
            goto out;
        }
        if (old.state == COFFER_KEY_DESTROYED) {
            rep->old_mk_version = max;
            coffer_memcpy(rep->old_mk_kcv, old.kcv, COFFER_KCV_LEN);
        }
    }
out:
    coffer_free(mks);
    return r;
}

enum coffer_err coffer_keys_org_shred(struct coffer_keys *k, struct coffer_store *st,
                                      const struct coffer_uuid *org_id,
                                      struct coffer_keys_shred_report *out)
{
    struct coffer_keys_shred_report rep;
    char id[COFFER_UUID_STR_LEN];
    enum coffer_err r;

    memset(&rep, 0, sizeof(rep));
    if (out != NULL) {
        memset(out, 0, sizeof(*out));
    }
    if (coffer_store_in_tx(st)) {
        return coffer_err_set(COFFER_E_STATE,
                              "a shred commits step by step and cannot join a transaction");
    }
    coffer_uuid_format(org_id, id);
    if ((r = coffer_keys_shred_org_keys(k, st, org_id, &rep)) != COFFER_OK ||
        (r = coffer_keys_shred_new_mk(k, st, org_id, &rep)) != COFFER_OK ||
        (r = coffer_keys_shred_rewrap(k, st, &rep)) != COFFER_OK ||
        (r = coffer_keys_shred_old_mks(k, st, org_id, &rep)) != COFFER_OK) {
        return coffer_err_wrap(r, "shredding org %s (run the shred again to finish it)", id);
    }
    coffer_info("keys",
                "org %s shredded: master key v%u is current, %lld org key version(s) of other "
                "orgs moved to it, every older master key version destroyed",
                id, rep.new_mk_version, (long long)rep.org_keys_rewrapped);
    if (out != NULL) {
        *out = rep;
    }
    return COFFER_OK;
}

/* ---- Destroying one org key version -------------------------------------------------- */

/* Inside the caller's transaction: lock, check, then the shred's own step for this version. */
static enum coffer_err org_key_destroy_locked(struct coffer_store *st,
                                              const struct coffer_uuid *org_id, uint32_t version,
                                              int64_t *refs, struct coffer_store_org_key *row)
{
    unsigned shredded = 0;
    enum coffer_err r;

    if ((r = coffer_store_org_key_lock(st, org_id, version)) != COFFER_OK ||
        (r = coffer_store_org_key_get(st, org_id, version, row)) != COFFER_OK) {
        return r;
    }
    if (row->state == COFFER_KEY_DESTROYED) {
        return coffer_err_set(COFFER_E_STATE, "org key v%u is destroyed already", version);
    }
    if (row->state != COFFER_KEY_RETIRED) {
        return coffer_err_set(COFFER_E_STATE,
                              "org key v%u is %s; only a retired version can be destroyed "
                              "(retire it first)",
                              version, coffer_key_state_str(row->state));
    }
    if ((r = coffer_store_org_key_count_refs(st, org_id, version, refs)) != COFFER_OK) {
        return r;
    }
    if (*refs > 0) {
        return coffer_err_set(COFFER_E_REFERENCED,
                              "org key v%u still wraps %lld credential versions; it cannot be "
                              "destroyed",
                              version, (long long)*refs);
    }
    if ((r = shred_one(st, org_id, version, &shredded)) != COFFER_OK) {
        return r;
    }
    /* The row was locked and retired: the step found it alive and must have destroyed it. */
    if (shredded != 1) {
        return coffer_err_set(COFFER_E_CONFLICT, "org key v%u was not overwritten", version);
    }
    return COFFER_OK;
}

enum coffer_err coffer_keys_org_key_destroy(struct coffer_keys *k, struct coffer_store *st,
                                            const struct coffer_uuid *org_id, uint32_t version,
                                            int64_t *refs, struct coffer_keys_created *out)
{
    struct coffer_store_org_key row;
    int64_t local_refs = 0;
    char id[COFFER_UUID_STR_LEN];
    char name[96];
    char kcv[2 * COFFER_KCV_LEN + 1];
    enum coffer_err r;

    if (refs == NULL) {
        refs = &local_refs;
    }
    *refs = 0;
    if (out != NULL) {
        memset(out, 0, sizeof(*out));
    }
    memset(&row, 0, sizeof(row));
    coffer_uuid_format(org_id, id);
    org_key_cache_name(org_id, version, name);
    if ((r = coffer_store_begin(st)) != COFFER_OK) {
        return r;
    }
    if ((r = org_key_destroy_locked(st, org_id, version, refs, &row)) != COFFER_OK ||
        (r = coffer_store_commit(st)) != COFFER_OK) {
        coffer_store_rollback(st);
        return coffer_err_wrap(r, "destroying org key v%u of org %s", version, id);
    }
    /*
     * Retiring dropped the loaded copy already; a reader of this process may
     * have loaded it again before the row was locked. Other processes refuse
     * it by the row's state.
     */
    coffer_p11_cache_drop(k->p11, name);
    if (out != NULL) {
        out->version = version;
        coffer_memcpy(out->kcv, row.kcv, COFFER_KCV_LEN);
    }
    coffer_hex(row.kcv, COFFER_KCV_LEN, kcv);
    coffer_info("keys", "org %s: org key v%u (KCV %s) destroyed, its wrapped key overwritten", id,
                version, kcv);
    return COFFER_OK;
}

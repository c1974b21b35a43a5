/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The upper levels of the hierarchy: master keys (persistent token objects)
 * and org keys (stored wrapped under a master key), their creation, rotation,
 * retirement, and the loaders that turn a stored version into a token handle
 * cached per session.
 *
 * Key material never leaves the token here: a new org key is generated in the
 * token and only its wrapped form is stored; a loaded org key is an unwrapped
 * session object that is not extractable. A master key that does not read
 * back sensitive and never-extractable is refused, never used.
 */
#include "keys_int.h"

#include "coffer/log.h"
#include "coffer/mem.h"

#include <stdio.h>
#include <string.h>

enum coffer_err coffer_keys_new(struct coffer_p11 *p11, struct coffer_keys **out)
{
    *out = coffer_calloc(1, sizeof(**out));
    if (*out == NULL) {
        return coffer_err_set(COFFER_E_NOMEM, "keys context");
    }
    (*out)->p11 = p11;
    return COFFER_OK;
}

void coffer_keys_free(struct coffer_keys **k)
{
    if (k == NULL || *k == NULL) {
        return;
    }
    coffer_free(*k);
    *k = NULL;
}

void coffer_keys_set_rewrap_hook(struct coffer_keys *k, void (*fn)(void *), void *arg)
{
    k->rewrap_hook = fn;
    k->rewrap_hook_arg = arg;
}

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

/* A master key must read back as a wrap-only, sensitive, never-extractable token key. */
static enum coffer_err check_mk_attrs(const struct coffer_p11_attrs *a, const char *label)
{
    const char *bad = NULL;

    if (!a->token) {
        bad = "CKA_TOKEN is FALSE";
    } else if (!a->private_) {
        bad = "CKA_PRIVATE is FALSE";
    } else if (!a->sensitive || !a->always_sensitive) {
        bad = "CKA_SENSITIVE or CKA_ALWAYS_SENSITIVE is FALSE";
    } else if (a->extractable || !a->never_extractable) {
        bad = "CKA_EXTRACTABLE is TRUE or CKA_NEVER_EXTRACTABLE is FALSE";
    } else if (!a->wrap || !a->unwrap || a->encrypt || a->decrypt) {
        bad = "usage is not exactly CKA_WRAP and CKA_UNWRAP";
    } else if (a->value_readable) {
        bad = "CKA_VALUE is readable";
    } else if (a->value_len != 32) {
        bad = "CKA_VALUE_LEN is not 32";
    }
    if (bad != NULL) {
        return coffer_err_set(COFFER_E_INTEGRITY, "master key %s refused: %s", label, bad);
    }
    return COFFER_OK;
}

enum coffer_err coffer_keys_mk_handle(struct coffer_keys *k, struct coffer_p11_session *s,
                                      struct coffer_store *st, uint32_t version,
                                      coffer_p11_obj *out)
{
    struct coffer_store_mk row;
    struct coffer_p11_attrs attrs;
    unsigned char kcv[COFFER_KCV_LEN];
    coffer_p11_obj obj = 0;
    coffer_p11_obj copy = 0;
    char name[96];
    enum coffer_err r;

    (void)k;
    mk_cache_name(version, name);
    if (coffer_p11_cache_get(s, name, out) == COFFER_OK) {
        return COFFER_OK;
    }
    if ((r = coffer_store_mk_get(st, version, &row)) != COFFER_OK) {
        return coffer_err_wrap(r, "master key v%u", version);
    }
    if (row.state == COFFER_KEY_DESTROYED) {
        return coffer_err_set(COFFER_E_STATE, "master key v%u was destroyed", version);
    }
    if ((r = coffer_p11_find_key(s, row.label, &obj)) != COFFER_OK) {
        return coffer_err_wrap(r, "master key %s in the token", row.label);
    }
    if ((r = coffer_p11_attrs(s, obj, &attrs)) != COFFER_OK ||
        (r = check_mk_attrs(&attrs, row.label)) != COFFER_OK) {
        return r;
    }
    if ((r = coffer_p11_kcv(s, obj, kcv)) != COFFER_OK) {
        return coffer_err_wrap(r, "master key %s", row.label);
    }
    if (!coffer_mem_equal(kcv, row.kcv, sizeof(kcv))) {
        return coffer_err_set(COFFER_E_INTEGRITY,
                              "master key %s: token KCV %02x%02x%02x differs from the recorded "
                              "%02x%02x%02x",
                              row.label, kcv[0], kcv[1], kcv[2], row.kcv[0], row.kcv[1],
                              row.kcv[2]);
    }
    /* A session copy avoids the token's per-use checks on the persistent object. */
    if ((r = coffer_p11_copy_to_session(s, obj, &copy)) != COFFER_OK) {
        return r;
    }
    if ((r = coffer_p11_cache_put(s, name, copy)) != COFFER_OK) {
        coffer_p11_destroy(s, &copy);
        return r;
    }
    *out = copy;
    return COFFER_OK;
}

enum coffer_err coffer_keys_org_key_rewrap(struct coffer_keys *k, struct coffer_p11_session *s,
                                           struct coffer_store *st,
                                           const struct coffer_store_org_key *row,
                                           const struct coffer_store_mk *current_mk, bool *won)
{
    unsigned char wrapped[COFFER_WRAPPED_MAX];
    size_t wrapped_len = 0;
    coffer_p11_obj old_mk = 0;
    coffer_p11_obj new_mk = 0;
    coffer_p11_obj tmp = 0;
    enum coffer_err r;

    *won = false;
    if ((r = coffer_keys_mk_handle(k, s, st, row->mk_version, &old_mk)) != COFFER_OK ||
        (r = coffer_keys_mk_handle(k, s, st, current_mk->version, &new_mk)) != COFFER_OK) {
        goto out;
    }
    if ((r = coffer_p11_unwrap(s, old_mk, row->wrapped, row->wrapped_len,
                               &coffer_keys_spec_org_key_new, &tmp)) != COFFER_OK) {
        r = coffer_err_wrap(r, "org key v%u under master key v%u", row->version, row->mk_version);
        goto out;
    }
    if ((r = coffer_p11_wrap(s, new_mk, tmp, wrapped, &wrapped_len)) != COFFER_OK) {
        goto out;
    }
    r = coffer_store_org_key_rewrap(st, row, current_mk->version, wrapped, wrapped_len, won);
out:
    coffer_p11_destroy(s, &tmp);
    return r;
}

enum coffer_err coffer_keys_org_key_handle(struct coffer_keys *k, struct coffer_p11_session *s,
                                           struct coffer_store *st,
                                           const struct coffer_uuid *org_id, uint32_t version,
                                           coffer_p11_obj *out)
{
    struct coffer_store_org_key row;
    struct coffer_store_mk current;
    coffer_p11_obj mk = 0;
    coffer_p11_obj obj = 0;
    char name[96];
    enum coffer_err r;
    bool won = false;

    org_key_cache_name(org_id, version, name);
    if (coffer_p11_cache_get(s, name, out) == COFFER_OK) {
        return COFFER_OK;
    }
    if ((r = coffer_store_org_key_get(st, org_id, version, &row)) != COFFER_OK) {
        return coffer_err_wrap(r, "org key v%u", version);
    }
    if (row.state == COFFER_KEY_DESTROYED) {
        return coffer_err_set(COFFER_E_STATE, "org key v%u was destroyed", version);
    }
    if (strcmp(row.wrap_mech, COFFER_MECH_WRAP) != 0) {
        return coffer_err_set(COFFER_E_INTEGRITY, "org key v%u: unknown wrap mechanism", version);
    }
    /* Lazy master-key rotation: a row under an older MK moves to the current one. */
    if ((r = coffer_store_mk_current(st, &current)) != COFFER_OK) {
        return coffer_err_wrap(r, "current master key");
    }
    if (row.mk_version != current.version) {
        r = coffer_keys_org_key_rewrap(k, s, st, &row, &current, &won);
        if (r != COFFER_OK) {
            coffer_warn("keys", "org key v%u not rewrapped to master key v%u: %s", version,
                        current.version, coffer_err_detail());
            if (r == COFFER_E_INTEGRITY) {
                return r;
            }
        }
    }
    if ((r = coffer_keys_mk_handle(k, s, st, row.mk_version, &mk)) != COFFER_OK) {
        return r;
    }
    if ((r = coffer_p11_unwrap(s, mk, row.wrapped, row.wrapped_len,
                               &coffer_keys_spec_org_key_loaded, &obj)) != COFFER_OK) {
        return coffer_err_wrap(r, "org key v%u under master key v%u", version, row.mk_version);
    }
    if ((r = coffer_p11_cache_put(s, name, obj)) != COFFER_OK) {
        coffer_p11_destroy(s, &obj);
        return r;
    }
    *out = obj;
    return COFFER_OK;
}

static void fill_created(struct coffer_p11_session *s, coffer_p11_obj obj, uint32_t version,
                         const char *label, const unsigned char kcv[COFFER_KCV_LEN],
                         struct coffer_keys_created *out)
{
    memset(out, 0, sizeof(*out));
    out->version = version;
    snprintf(out->label, sizeof(out->label), "%s", label);
    coffer_memcpy(out->kcv, kcv, COFFER_KCV_LEN);
    if (coffer_p11_attrs(s, obj, &out->attrs) != COFFER_OK) {
        memset(&out->attrs, 0, sizeof(out->attrs));
    }
}

enum coffer_err coffer_keys_mk_create(struct coffer_keys *k, struct coffer_store *st,
                                      struct coffer_keys_created *out)
{
    struct coffer_p11_session *s = NULL;
    struct coffer_p11_keyspec spec = {true, false, COFFER_P11_WRAP | COFFER_P11_UNWRAP, NULL};
    struct coffer_store_mk row;
    struct coffer_p11_attrs attrs;
    coffer_p11_obj obj = 0;
    coffer_p11_obj existing = 0;
    uint32_t max = 0;
    bool committed = false;
    bool commit_sent = false;
    bool adopted = false;
    enum coffer_err r;

    memset(&row, 0, sizeof(row));
    if ((r = coffer_p11_session_get(k->p11, &s)) != COFFER_OK) {
        return r;
    }
    if ((r = coffer_store_begin(st)) != COFFER_OK) {
        goto out;
    }
    if ((r = coffer_store_mk_max_version(st, &max)) != COFFER_OK) {
        goto out;
    }
    if (max >= INT32_MAX) {
        r = coffer_err_set(COFFER_E_LIMIT, "master key versions exhausted");
        goto out;
    }
    row.version = max + 1;
    snprintf(row.label, sizeof(row.label), "coffer-mk-v%u", row.version);
    r = coffer_p11_find_key(s, row.label, &existing);
    if (r == COFFER_OK) {
        /*
         * A rotation that stopped after generating its key and before its
         * commit left the key behind; the database, read in this transaction,
         * says the commit never happened. The key is taken up if the token
         * says it was generated there and never left it (always sensitive,
         * never extractable), so nobody can know its value; anything else
         * under the label is refused.
         */
        if ((r = coffer_p11_attrs(s, existing, &attrs)) != COFFER_OK ||
            (r = check_mk_attrs(&attrs, row.label)) != COFFER_OK) {
            r = coffer_err_set(COFFER_E_EXISTS,
                               "the token already holds %s, which the database does not record "
                               "and which is not a key Coffer would make (%s); resolve it before "
                               "creating a master key",
                               row.label, coffer_err_detail());
            goto out;
        }
        adopted = true;
        obj = existing;
        coffer_warn("keys", "taking up %s, left in the token by a rotation that did not finish",
                    row.label);
    } else if (r != COFFER_E_NOT_FOUND) {
        goto out;
    } else {
        spec.label = row.label;
        if ((r = coffer_p11_generate_aes(s, &spec, &obj)) != COFFER_OK) {
            goto out;
        }
        if ((r = coffer_p11_attrs(s, obj, &attrs)) != COFFER_OK ||
            (r = check_mk_attrs(&attrs, row.label)) != COFFER_OK) {
            goto out;
        }
    }
    if ((r = coffer_p11_kcv(s, obj, row.kcv)) != COFFER_OK) {
        goto out;
    }
    row.state = COFFER_KEY_ACTIVE;
    if ((r = coffer_store_mk_insert(st, &row)) != COFFER_OK ||
        (r = coffer_store_mk_make_current(st, row.version)) != COFFER_OK) {
        goto out;
    }
    commit_sent = true;
    if ((r = coffer_store_commit(st)) != COFFER_OK) {
        goto out;
    }
    committed = true;
    fill_created(s, obj, row.version, row.label, row.kcv, out);
    coffer_info("keys", "master key %s %s and made current", row.label,
                adopted ? "taken up" : "created");
out:
    if (!committed) {
        coffer_store_rollback(st);
        if (!commit_sent) {
            /* Nothing records the new object: remove it so no orphan stays in the token. */
            coffer_p11_destroy(s, &obj);
        } else {
            /*
             * The commit may have reached the database even though its answer
             * did not reach us: keep the key rather than risk destroying one
             * the database records. If the commit did not happen, the next
             * creation takes the key up.
             */
            coffer_warn("keys", "commit of master key %s failed; the token object is kept",
                        row.label);
        }
    }
    coffer_p11_session_put(k->p11, &s);
    return r;
}

/*
 * Generates an org key version in the token, wraps it under the current MK and
 * inserts it as the org's current key. Runs inside the caller's transaction.
 */
static enum coffer_err new_org_key(struct coffer_keys *k, struct coffer_p11_session *s,
                                   struct coffer_store *st, const struct coffer_uuid *org_id,
                                   uint32_t version, struct coffer_keys_created *out)
{
    struct coffer_store_org_key row;
    struct coffer_store_mk mk_row;
    coffer_p11_obj mk = 0;
    coffer_p11_obj obj = 0;
    enum coffer_err r;

    memset(&row, 0, sizeof(row));
    if ((r = coffer_store_mk_current(st, &mk_row)) != COFFER_OK) {
        r = coffer_err_wrap(r, "no current master key");
        goto out;
    }
    if ((r = coffer_keys_mk_handle(k, s, st, mk_row.version, &mk)) != COFFER_OK) {
        goto out;
    }
    if ((r = coffer_p11_generate_aes(s, &coffer_keys_spec_org_key_new, &obj)) != COFFER_OK ||
        (r = coffer_p11_kcv(s, obj, row.kcv)) != COFFER_OK ||
        (r = coffer_p11_wrap(s, mk, obj, row.wrapped, &row.wrapped_len)) != COFFER_OK) {
        goto out;
    }
    row.org_id = *org_id;
    row.version = version;
    row.mk_version = mk_row.version;
    snprintf(row.wrap_mech, sizeof(row.wrap_mech), "%s", COFFER_MECH_WRAP);
    row.state = COFFER_KEY_ACTIVE;
    if ((r = coffer_store_org_key_insert(st, &row)) != COFFER_OK ||
        (r = coffer_store_org_key_make_current(st, org_id, version)) != COFFER_OK) {
        goto out;
    }
    if (out != NULL) {
        char label[65];

        snprintf(label, sizeof(label), "org-key-v%u", version);
        fill_created(s, obj, version, label, row.kcv, out);
    }
out:
    coffer_p11_destroy(s, &obj);
    return r;
}

enum coffer_err coffer_keys_org_create(struct coffer_keys *k, struct coffer_store *st,
                                       const char *name, struct coffer_org *org,
                                       struct coffer_keys_created *key)
{
    struct coffer_p11_session *s = NULL;
    enum coffer_err r;

    if ((r = coffer_p11_session_get(k->p11, &s)) != COFFER_OK) {
        return r;
    }
    if ((r = coffer_store_begin(st)) != COFFER_OK) {
        goto out;
    }
    if ((r = coffer_store_org_insert(st, name, org)) != COFFER_OK ||
        (r = new_org_key(k, s, st, &org->id, 1, key)) != COFFER_OK ||
        (r = coffer_store_commit(st)) != COFFER_OK) {
        coffer_store_rollback(st);
        goto out;
    }
    coffer_info("keys", "org %s created with org key v1", name);
out:
    coffer_p11_session_put(k->p11, &s);
    return r;
}

enum coffer_err coffer_keys_org_rotate(struct coffer_keys *k, struct coffer_store *st,
                                       const struct coffer_uuid *org_id,
                                       struct coffer_keys_created *out)
{
    struct coffer_p11_session *s = NULL;
    struct coffer_store_org_key cur;
    enum coffer_err r;

    if ((r = coffer_p11_session_get(k->p11, &s)) != COFFER_OK) {
        return r;
    }
    if ((r = coffer_store_begin(st)) != COFFER_OK) {
        goto out;
    }
    /* The org row lock serialises rotations of one org across servers. */
    if ((r = coffer_store_org_lock(st, org_id)) != COFFER_OK ||
        (r = coffer_store_org_key_current(st, org_id, &cur)) != COFFER_OK) {
        coffer_store_rollback(st);
        goto out;
    }
    if (cur.version >= INT32_MAX) {
        coffer_store_rollback(st);
        r = coffer_err_set(COFFER_E_LIMIT, "org key versions exhausted");
        goto out;
    }
    if ((r = new_org_key(k, s, st, org_id, cur.version + 1, out)) != COFFER_OK ||
        (r = coffer_store_commit(st)) != COFFER_OK) {
        coffer_store_rollback(st);
        goto out;
    }
    coffer_info("keys", "org key rotated to v%u", cur.version + 1);
out:
    coffer_p11_session_put(k->p11, &s);
    return r;
}

enum coffer_err coffer_keys_mk_retire(struct coffer_keys *k, struct coffer_store *st,
                                      uint32_t version, int64_t *refs)
{
    struct coffer_store_mk row;
    enum coffer_err r;

    (void)k;
    *refs = 0;
    if ((r = coffer_store_begin(st)) != COFFER_OK) {
        return r;
    }
    if ((r = coffer_store_mk_lock(st, version)) != COFFER_OK ||
        (r = coffer_store_mk_get(st, version, &row)) != COFFER_OK) {
        goto out;
    }
    if (row.state != COFFER_KEY_ACTIVE) {
        r = coffer_err_set(COFFER_E_STATE,
                           "master key v%u is %s; only an active, non-current "
                           "version can be retired",
                           version, coffer_key_state_str(row.state));
        goto out;
    }
    if ((r = coffer_store_mk_count_refs(st, version, refs)) != COFFER_OK) {
        goto out;
    }
    if (*refs > 0) {
        r = coffer_err_set(COFFER_E_REFERENCED,
                           "master key v%u still wraps %lld org key versions; sweep first", version,
                           (long long)*refs);
        goto out;
    }
    if ((r = coffer_store_mk_set_state(st, version, COFFER_KEY_RETIRED)) != COFFER_OK ||
        (r = coffer_store_commit(st)) != COFFER_OK) {
        goto out;
    }
    coffer_info("keys", "master key v%u retired", version);
    return COFFER_OK;
out:
    coffer_store_rollback(st);
    return r;
}

enum coffer_err coffer_keys_org_key_retire(struct coffer_keys *k, struct coffer_store *st,
                                           const struct coffer_uuid *org_id, uint32_t version,
                                           int64_t *refs)
{
    struct coffer_store_org_key row;
    char name[96];
    enum coffer_err r;

    *refs = 0;
    if ((r = coffer_store_begin(st)) != COFFER_OK) {
        return r;
    }
    if ((r = coffer_store_org_key_lock(st, org_id, version)) != COFFER_OK ||
        (r = coffer_store_org_key_get(st, org_id, version, &row)) != COFFER_OK) {
        goto out;
    }
    if (row.state != COFFER_KEY_ACTIVE) {
        r = coffer_err_set(COFFER_E_STATE,
                           "org key v%u is %s; only an active, non-current "
                           "version can be retired",
                           version, coffer_key_state_str(row.state));
        goto out;
    }
    if ((r = coffer_store_org_key_count_refs(st, org_id, version, refs)) != COFFER_OK) {
        goto out;
    }
    if (*refs > 0) {
        r = coffer_err_set(COFFER_E_REFERENCED,
                           "org key v%u still wraps %lld credential versions; sweep first", version,
                           (long long)*refs);
        goto out;
    }
    if ((r = coffer_store_org_key_set_state(st, org_id, version, COFFER_KEY_RETIRED)) !=
            COFFER_OK ||
        (r = coffer_store_commit(st)) != COFFER_OK) {
        goto out;
    }
    org_key_cache_name(org_id, version, name);
    coffer_p11_cache_drop(k->p11, name);
    coffer_info("keys", "org key v%u retired", version);
    return COFFER_OK;
out:
    coffer_store_rollback(st);
    return r;
}

/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The envelope of one credential version: write (fresh CEK, AES-256-GCM in
 * the token under the row's additional data, CEK wrapped under the org's
 * current key) and read (unwrap, decrypt, lazily rewrap a stale row with a
 * compare-and-swap).
 *
 * Plaintext exists only in struct coffer_secret and wiped buffers. Any
 * authentication failure is COFFER_E_INTEGRITY and returns nothing: a read
 * either yields every key of the version or none.
 */
#include "keys_int.h"

#include "coffer/log.h"
#include "coffer/mem.h"

#include <openssl/rand.h>
#include <string.h>

static bool token_valid(const char *s, size_t max)
{
    size_t i;
    size_t len = s == NULL ? 0 : strlen(s);

    if (len == 0 || len > max) {
        return false;
    }
    for (i = 0; i < len; i++) {
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_')) {
            return false;
        }
    }
    return true;
}

static enum coffer_err check_write(const struct coffer_keys_write *w)
{
    static const char *const tiers[] = {"low", "medium", "high", "critical"};
    size_t i;

    if (w->org_id == NULL || w->project_id == NULL || w->name == NULL || w->keys == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "credential write: missing field");
    }
    if (!token_valid(w->type, 31)) {
        return coffer_err_set(COFFER_E_INVALID, "credential type must match [a-z0-9_]{1,31}");
    }
    for (i = 0; i < sizeof(tiers) / sizeof(tiers[0]); i++) {
        if (w->tier != NULL && strcmp(w->tier, tiers[i]) == 0) {
            break;
        }
    }
    if (i == sizeof(tiers) / sizeof(tiers[0])) {
        return coffer_err_set(COFFER_E_INVALID,
                              "credential tier must be low, medium, high or critical");
    }
    if (coffer_keyset_count(w->keys) == 0) {
        return coffer_err_set(COFFER_E_INVALID, "a credential needs at least one key");
    }
    return COFFER_OK;
}

/*
 * Seals w's keys as version cred->current_version of cred into *v: a fresh
 * CEK in the token encrypts the payload with AES-256-GCM under the row's
 * additional data and is wrapped under the org's current key, then
 * destroyed. v's key names are borrowed from w's key set; release v with
 * release_version.
 */
static enum coffer_err seal_version(struct coffer_keys *k, struct coffer_p11_session *s,
                                    struct coffer_store *st, const struct coffer_keys_write *w,
                                    const struct coffer_store_cred *cred,
                                    struct coffer_store_cred_version *v)
{
    struct coffer_secret *payload = NULL;
    struct coffer_secret_view pv;
    struct coffer_buf aad = {0};
    coffer_p11_obj ok = 0;
    coffer_p11_obj cek = 0;
    size_t n = coffer_keyset_count(w->keys);
    enum coffer_err r;

    memset(v, 0, sizeof(*v));
    if (cred->org_current_key_version == 0) {
        return coffer_err_set(COFFER_E_STATE, "credential %s: the org has no current key", w->name);
    }
    if ((r = coffer_keys_payload_encode(w->keys, &payload)) != COFFER_OK) {
        return r;
    }
    pv = coffer_secret_view(payload);
    if ((r = coffer_keys_org_key_handle(k, s, st, w->org_id, cred->org_current_key_version, &ok)) !=
            COFFER_OK ||
        (r = coffer_keys_aad(w->org_id, w->project_id, &cred->id, cred->current_version,
                             coffer_keys_keyset_names(w->keys), n, &aad)) != COFFER_OK) {
        goto out;
    }
    v->ciphertext = coffer_calloc(1, pv.len);
    if (v->ciphertext == NULL) {
        r = coffer_err_set(COFFER_E_NOMEM, "ciphertext of %zu bytes", pv.len);
        goto out;
    }
    v->ciphertext_len = pv.len;
    if (RAND_bytes(v->nonce, sizeof(v->nonce)) != 1) {
        r = coffer_err_set(COFFER_E_CRYPTO, "RAND_bytes failed for the GCM nonce");
        goto out;
    }
    if ((r = coffer_p11_generate_aes(s, &coffer_keys_spec_cek_new, &cek)) != COFFER_OK ||
        (r = coffer_p11_gcm_encrypt(s, cek, v->nonce, aad.data, aad.len, pv.data, pv.len,
                                    v->ciphertext, v->tag)) != COFFER_OK ||
        (r = coffer_p11_wrap(s, ok, cek, v->wrapped_cek, &v->wrapped_cek_len)) != COFFER_OK) {
        goto out;
    }
    v->credential_id = cred->id;
    v->version = cred->current_version;
    v->org_id = *w->org_id;
    v->project_id = *w->project_id;
    v->org_key_version = cred->org_current_key_version;
    snprintf(v->aead, sizeof(v->aead), "%s", COFFER_MECH_AEAD);
    snprintf(v->wrap_mech, sizeof(v->wrap_mech), "%s", COFFER_MECH_WRAP);
    /* The row borrows the key set's names; release_version detaches them. */
    v->key_names = (char **)coffer_keys_keyset_names(w->keys);
    v->n_keys = n;
out:
    coffer_p11_destroy(s, &cek);
    coffer_secret_free(&payload);
    coffer_buf_cleanup(&aad);
    return r;
}

/* Frees what seal_version made, leaving the borrowed key names to their key set. */
static void release_version(struct coffer_store_cred_version *v)
{
    v->key_names = NULL;
    v->n_keys = 0;
    coffer_store_cred_version_cleanup(v);
}

enum coffer_err coffer_keys_cred_write(struct coffer_keys *k, struct coffer_store *st,
                                       const struct coffer_keys_write *w, uint32_t *version)
{
    struct coffer_p11_session *s = NULL;
    struct coffer_store_cred cred;
    struct coffer_store_cred_version v;
    bool own_tx = false;
    enum coffer_err r;

    memset(&v, 0, sizeof(v));
    if ((r = check_write(w)) != COFFER_OK) {
        return r;
    }
    if ((r = coffer_p11_session_get(k->p11, &s)) != COFFER_OK) {
        goto out;
    }
    /*
     * A caller that opened a transaction (an operation that also writes the
     * credential's lifetime, grants and audit event) keeps it: this write
     * joins it, and committing or rolling back stays the caller's.
     */
    if (!coffer_store_in_tx(st)) {
        if ((r = coffer_store_begin(st)) != COFFER_OK) {
            goto out;
        }
        own_tx = true;
    }
    if ((r = coffer_store_cred_next_version(st, w->org_id, w->project_id, w->name, w->type, w->tier,
                                            &cred)) != COFFER_OK ||
        (r = seal_version(k, s, st, w, &cred, &v)) != COFFER_OK ||
        (r = coffer_store_cred_version_insert(st, &v)) != COFFER_OK) {
        goto out;
    }
    if (own_tx) {
        own_tx = false;
        if ((r = coffer_store_commit(st)) != COFFER_OK) {
            goto out;
        }
    }
    *version = cred.current_version;
out:
    if (own_tx) {
        coffer_store_rollback(st);
    }
    coffer_p11_session_put(k->p11, &s);
    release_version(&v);
    return r;
}

enum coffer_err coffer_keys_cred_write_many(struct coffer_keys *k, struct coffer_store *st,
                                            const struct coffer_keys_write *w,
                                            struct coffer_store_cred_next *out, size_t n)
{
    struct coffer_p11_session *s = NULL;
    struct coffer_store_cred_version *v = NULL;
    enum coffer_err r;

    if (w == NULL || out == NULL || n == 0 || n > COFFER_KEYS_BATCH_MAX) {
        return coffer_err_set(COFFER_E_INVALID, "a batch of writes holds 1 to %d credentials",
                              COFFER_KEYS_BATCH_MAX);
    }
    if (!coffer_store_in_tx(st)) {
        return coffer_err_set(COFFER_E_STATE, "a batch of writes runs inside a transaction");
    }
    for (size_t i = 0; i < n; i++) {
        if ((r = check_write(&w[i])) != COFFER_OK) {
            return coffer_err_wrap(r, "write %zu of %zu", i + 1, n);
        }
        memset(&out[i].out, 0, sizeof(out[i].out));
        out[i].org_id = w[i].org_id;
        out[i].project_id = w[i].project_id;
        out[i].name = w[i].name;
        out[i].type = w[i].type;
        out[i].tier = w[i].tier;
    }
    if ((r = coffer_store_cred_next_version_many(st, out, n)) != COFFER_OK) {
        return r;
    }
    for (size_t i = 0; i < n; i++) {
        if (out[i].revoked) {
            return coffer_err_set(COFFER_E_STATE, "credential %s is revoked", w[i].name);
        }
        if (out[i].project_removed) {
            return coffer_err_set(COFFER_E_NOT_FOUND, "credential %s: its project is not in use",
                                  w[i].name);
        }
    }
    if ((v = coffer_calloc(n, sizeof(*v))) == NULL) {
        return coffer_err_set(COFFER_E_NOMEM, "a batch of %zu versions", n);
    }
    if ((r = coffer_p11_session_get(k->p11, &s)) != COFFER_OK) {
        goto out;
    }
    for (size_t i = 0; i < n && r == COFFER_OK; i++) {
        r = seal_version(k, s, st, &w[i], &out[i].out, &v[i]);
    }
    if (r == COFFER_OK) {
        r = coffer_store_cred_version_insert_many(st, v, n);
    }
out:
    coffer_p11_session_put(k->p11, &s);
    for (size_t i = 0; i < n; i++) {
        release_version(&v[i]);
    }
    coffer_free(v);
    return r;
}

/*
 * Moves a stale row's CEK to the org's current key. Failures are reported but
 * do not fail the read that triggered them: the sweeper will try again.
 */
static void lazy_rewrap(struct coffer_keys *k, struct coffer_p11_session *s,
                        struct coffer_store *st, const struct coffer_store_cred_version *v,
                        coffer_p11_obj cek, struct coffer_keys_read_info *info)
{
    unsigned char wrapped[COFFER_WRAPPED_MAX];
    size_t wrapped_len = 0;
    coffer_p11_obj cur = 0;
    bool won = false;
    enum coffer_err r;

    if (k->rewrap_hook != NULL) {
        k->rewrap_hook(k->rewrap_hook_arg);
    }
    if ((r = coffer_keys_org_key_handle(k, s, st, &v->org_id, v->org_current_key_version, &cur)) !=
            COFFER_OK ||
        (r = coffer_p11_wrap(s, cur, cek, wrapped, &wrapped_len)) != COFFER_OK ||
        (r = coffer_store_cred_rewrap(st, v, v->org_current_key_version, wrapped, wrapped_len,
                                      &won)) != COFFER_OK) {
        coffer_warn("keys", "lazy rewrap of version %u to org key v%u failed: %s: %s", v->version,
                    v->org_current_key_version, coffer_err_str(r), coffer_err_detail());
        return;
    }
    if (won) {
        info->rewrapped = true;
        info->org_key_version = v->org_current_key_version;
    }
}

/*
 * Opens one loaded version: unwraps its CEK, decrypts and decodes the payload,
 * and lazily rewraps a stale row. s is a leased session.
 */
static enum coffer_err open_version(struct coffer_keys *k, struct coffer_p11_session *s,
                                    struct coffer_store *st,
                                    const struct coffer_store_cred_version *v,
                                    struct coffer_keyset **out, struct coffer_keys_read_info *info)
{
    struct coffer_secret *plain = NULL;
    struct coffer_buf aad = {0};
    coffer_p11_obj ok = 0;
    coffer_p11_obj cek = 0;
    bool stale;
    enum coffer_err r;

    if (strcmp(v->aead, COFFER_MECH_AEAD) != 0 || strcmp(v->wrap_mech, COFFER_MECH_WRAP) != 0) {
        return coffer_err_set(COFFER_E_INTEGRITY, "version %u: unknown mechanisms %s/%s",
                              v->version, v->aead, v->wrap_mech);
    }
    if (v->org_key_state == COFFER_KEY_DESTROYED) {
        return coffer_err_set(COFFER_E_STATE, "version %u: org key v%u was destroyed", v->version,
                              v->org_key_version);
    }
    stale = v->org_current_key_version != 0 && v->org_key_version != v->org_current_key_version;
    if ((r = coffer_keys_aad(&v->org_id, &v->project_id, &v->credential_id, v->version,
                             v->key_names, v->n_keys, &aad)) != COFFER_OK) {
        r = coffer_err_wrap(COFFER_E_INTEGRITY, "version %u: stored key names", v->version);
        goto out;
    }
    if ((r = coffer_keys_org_key_handle(k, s, st, &v->org_id, v->org_key_version, &ok)) !=
        COFFER_OK) {
        goto out;
    }
    if ((r = coffer_p11_unwrap(s, ok, v->wrapped_cek, v->wrapped_cek_len,
                               stale ? &coffer_keys_spec_cek_rewrap : &coffer_keys_spec_cek_read,
                               &cek)) != COFFER_OK) {
        r = coffer_err_wrap(r, "version %u: content key", v->version);
        goto out;
    }
    if ((r = coffer_p11_gcm_decrypt(s, cek, v->nonce, aad.data, aad.len, v->ciphertext,
                                    v->ciphertext_len, v->tag, &plain)) != COFFER_OK) {
        r = coffer_err_wrap(r, "version %u: payload", v->version);
        goto out;
    }
    {
        struct coffer_secret_view pv = coffer_secret_view(plain);

        if ((r = coffer_keys_payload_decode(pv.data, pv.len, v->key_names, v->n_keys, out)) !=
            COFFER_OK) {
            goto out;
        }
    }
    info->version = v->version;
    info->org_key_version = v->org_key_version;
    info->opened_org_key_version = v->org_key_version;
    info->opened_mk_version = v->org_key_mk_version;
    if (stale) {
        lazy_rewrap(k, s, st, v, cek, info);
    }
out:
    coffer_p11_destroy(s, &cek);
    coffer_secret_free(&plain);
    coffer_buf_cleanup(&aad);
    return r;
}

static size_t refs_of(const struct coffer_keys_read_req *reqs, size_t n,
                      struct coffer_store_cred_ref *refs)
{
    size_t i;

    for (i = 0; i < n; i++) {
        refs[i].org_id = reqs[i].org_id;
        refs[i].project_id = reqs[i].project_id;
        refs[i].name = reqs[i].name;
        refs[i].version = reqs[i].version;
    }
    return n;
}

static enum coffer_err check_batch(size_t n)
{
    if (n == 0 || n > COFFER_KEYS_BATCH_MAX) {
        return coffer_err_set(COFFER_E_INVALID, "a batch holds 1 to %d reads, not %zu",
                              COFFER_KEYS_BATCH_MAX, n);
    }
    return COFFER_OK;
}

enum coffer_err coffer_keys_read_start(struct coffer_keys *k, struct coffer_store *st,
                                       struct coffer_keys_read_req *reqs, size_t n)
{
    struct coffer_store_cred_ref refs[COFFER_KEYS_BATCH_MAX];
    enum coffer_err r;

    (void)k;
    if ((r = check_batch(n)) != COFFER_OK) {
        return r;
    }
    return coffer_store_cred_version_send_many(st, refs, refs_of(reqs, n, refs));
}

/* Sends the next batch's lookups; a failure only means its finish looks them up itself. */
static void start_next(struct coffer_keys *k, struct coffer_store *st,
                       struct coffer_keys_read_req *next, size_t next_n)
{
    if (coffer_keys_read_start(k, st, next, next_n) != COFFER_OK) {
        coffer_debug("keys", "prefetch failed; the next batch will be read directly: %s",
                     coffer_err_detail());
    }
}

static void fail_reads(struct coffer_keys_read_req *reqs, size_t n, enum coffer_err r)
{
    size_t i;

    for (i = 0; i < n; i++) {
        reqs[i].result = r;
    }
}

enum coffer_err coffer_keys_read_finish(struct coffer_keys *k, struct coffer_store *st,
                                        struct coffer_keys_read_req *reqs, size_t n,
                                        struct coffer_keys_read_req *next, size_t next_n)
{
    struct coffer_store_cred_ref refs[COFFER_KEYS_BATCH_MAX];
    struct coffer_store_cred_version rows[COFFER_KEYS_BATCH_MAX];
    enum coffer_err found[COFFER_KEYS_BATCH_MAX];
    struct coffer_p11_session *s = NULL;
    bool prefetch = next != NULL && next_n > 0;
    bool prefetch_late = false;
    enum coffer_err r;
    size_t i;

    if ((r = check_batch(n)) != COFFER_OK) {
        return r;
    }
    for (i = 0; i < n; i++) {
        reqs[i].keys = NULL;
        memset(&reqs[i].info, 0, sizeof(reqs[i].info));
    }
    refs_of(reqs, n, refs);
    /* If the start failed (nothing in flight), the lookup runs now instead. */
    r = coffer_store_in_flight(st) ? coffer_store_cred_version_recv_many(st, refs, n, rows, found)
                                   : coffer_store_cred_version_get_many(st, refs, n, rows, found);
    if (r != COFFER_OK) {
        fail_reads(reqs, n, r);
        return r;
    }
    if ((r = coffer_p11_session_get(k->p11, &s)) != COFFER_OK) {
        fail_reads(reqs, n, r);
        goto out;
    }
    /*
     * The next lookup goes out before the token work, so the database answers
     * it meanwhile. The connection is busy until then, so everything that may
     * need it comes first: org key handles are loaded now (a cache miss reads
     * the database), and a batch with a stale row, whose rewrap writes, sends
     * the next lookup only after its own work.
     */
    for (i = 0; i < n && prefetch; i++) {
        coffer_p11_obj ok = 0;

        if (found[i] != COFFER_OK) {
            continue;
        }
        if ((rows[i].org_current_key_version != 0 &&
             rows[i].org_key_version != rows[i].org_current_key_version) ||
            coffer_keys_org_key_handle(k, s, st, &rows[i].org_id, rows[i].org_key_version, &ok) !=
                COFFER_OK) {
            prefetch_late = true;
        }
    }
    if (prefetch && !prefetch_late) {
        start_next(k, st, next, next_n);
    }
    for (i = 0; i < n; i++) {
        reqs[i].result = found[i];
        if (found[i] != COFFER_OK) {
            continue;
        }
        reqs[i].result = open_version(k, s, st, &rows[i], &reqs[i].keys, &reqs[i].info);
        if (reqs[i].result == COFFER_E_INTEGRITY) {
            coffer_warn("keys", "credential %s version %u failed its integrity check: %s",
                        reqs[i].name, rows[i].version, coffer_err_detail());
        }
    }
    r = COFFER_OK;
out:
    coffer_p11_session_put(k->p11, &s);
    if (prefetch && (prefetch_late || r != COFFER_OK)) {
        start_next(k, st, next, next_n);
    }
    for (i = 0; i < n; i++) {
        coffer_store_cred_version_cleanup(&rows[i]);
    }
    return r;
}

enum coffer_err coffer_keys_cred_read_many(struct coffer_keys *k, struct coffer_store *st,
                                           struct coffer_keys_read_req *reqs, size_t n)
{
    return coffer_keys_read_finish(k, st, reqs, n, NULL, 0);
}

enum coffer_err coffer_keys_cred_read(struct coffer_keys *k, struct coffer_store *st,
                                      const struct coffer_uuid *org_id,
                                      const struct coffer_uuid *project_id, const char *name,
                                      uint32_t version, struct coffer_keyset **out,
                                      struct coffer_keys_read_info *info)
{
    struct coffer_keys_read_req req;
    enum coffer_err r;

    memset(&req, 0, sizeof(req));
    req.org_id = org_id;
    req.project_id = project_id;
    req.name = name;
    req.version = version;
    r = coffer_keys_cred_read_many(k, st, &req, 1);
    *out = req.keys;
    *info = req.info;
    if (r != COFFER_OK) {
        return r;
    }
    if (req.result == COFFER_E_NOT_FOUND) {
        return coffer_err_set(COFFER_E_NOT_FOUND, "credential %s version %u not found", name,
                              version);
    }
    return req.result;
}

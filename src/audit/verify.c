/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The verifier: fed checkpoints in seq order, each followed by the events of
 * its range, it checks every link a tamperer would have to break (the
 * message's own columns, the seq numbers, the previous hash and the range,
 * the signing key, the signature, the sealed list against the signed chain,
 * each event against its own hash and against the sealed list) and reports
 * the first broken point precisely while counting all of them.
 *
 * A problem found in the log is data, recorded in the report; a function
 * returns an error only when the call itself is wrong or memory runs out. It
 * must never report a log as intact when a check could not be made: a check
 * that cannot be made because an earlier link is broken is skipped only
 * after that earlier break was counted. It holds public keys only.
 */
#include "audit/audit_int.h"

#include "coffer/buf.h"
#include "coffer/mem.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/obj_mac.h>
#include <openssl/x509.h>

#define KEYS_MAX 1024 /* signing key versions one verifier accepts */

struct vkey {
    int32_t version;
    unsigned char fingerprint[COFFER_AUDIT_HASH_LEN];
    EVP_PKEY *pkey;
};

/* What the next checkpoint must link to: the last checkpoint or anchor whose message parsed. */
struct link {
    int64_t seq;
    unsigned char hash[COFFER_AUDIT_HASH_LEN];
    unsigned char chain[COFFER_AUDIT_HASH_LEN];
    unsigned char schema[COFFER_AUDIT_HASH_LEN];
    int64_t last_event;
};

struct coffer_audit_verifier {
    enum coffer_audit_source source;
    struct vkey *keys;
    size_t n_keys;
    bool pinned;
    unsigned char pin[COFFER_AUDIT_HASH_LEN];
    int64_t pruned;
    bool finished;

    bool started;     /* a checkpoint (not an anchor) was given */
    bool anchored;    /* an anchor was given */
    int64_t prev_seq; /* seq of the last checkpoint or anchor given, 0 if none */
    bool have_prev;   /* prev is that checkpoint, its message parsed */
    struct link prev;

    /* The range of the last checkpoint: the events given now belong to it. */
    bool in_range;
    bool range_known; /* its message parsed: the range is known */
    bool matchable;   /* its sealed list is well formed: events are matched against it */
    int64_t range_seq;
    int64_t range_first;
    int64_t range_last;
    unsigned char *sealed;
    size_t sealed_cap;
    size_t n_sealed;
    size_t next; /* first sealed entry no event has reached yet */

    int64_t last_id;        /* last event id given, 0 if none */
    int64_t unsealed_first; /* first event given past the last range, 0 if none */

    struct coffer_audit_report rep;
};

static const char *const problem_names[] = {
    [COFFER_AUDIT_OK] = "ok",
    [COFFER_AUDIT_EVENT_ALTERED] = "event_altered",
    [COFFER_AUDIT_EVENT_HASH_CHANGED] = "event_hash_changed",
    [COFFER_AUDIT_EVENT_DELETED] = "event_deleted",
    [COFFER_AUDIT_EVENT_INSERTED] = "event_inserted",
    [COFFER_AUDIT_EVENT_OUT_OF_ORDER] = "event_out_of_order",
    [COFFER_AUDIT_CHECKPOINT_MISSING] = "checkpoint_missing",
    [COFFER_AUDIT_CHECKPOINT_BAD] = "checkpoint_bad",
    [COFFER_AUDIT_CHECKPOINT_SIGNATURE] = "checkpoint_signature",
    [COFFER_AUDIT_CHECKPOINT_LINK] = "checkpoint_link",
    [COFFER_AUDIT_CHECKPOINT_CHAIN] = "checkpoint_chain",
    [COFFER_AUDIT_UNKNOWN_KEY] = "unknown_key",
};

const char *coffer_audit_problem_str(enum coffer_audit_problem p)
{
    switch (p) {
    case COFFER_AUDIT_OK:
    case COFFER_AUDIT_EVENT_ALTERED:
    case COFFER_AUDIT_EVENT_HASH_CHANGED:
    case COFFER_AUDIT_EVENT_DELETED:
    case COFFER_AUDIT_EVENT_INSERTED:
    case COFFER_AUDIT_EVENT_OUT_OF_ORDER:
    case COFFER_AUDIT_CHECKPOINT_MISSING:
    case COFFER_AUDIT_CHECKPOINT_BAD:
    case COFFER_AUDIT_CHECKPOINT_SIGNATURE:
    case COFFER_AUDIT_CHECKPOINT_LINK:
    case COFFER_AUDIT_CHECKPOINT_CHAIN:
    case COFFER_AUDIT_UNKNOWN_KEY:
        return problem_names[p];
    default:
        return "unknown_problem";
    }
}

/* Counts a problem; the first one also fills the report's "where" and its message line. */
static void problem(struct coffer_audit_verifier *v, enum coffer_audit_problem p, int64_t event,
                    int64_t seq, const char *fmt, ...) COFFER_PRINTF(5, 6);

static void problem(struct coffer_audit_verifier *v, enum coffer_audit_problem p, int64_t event,
                    int64_t seq, const char *fmt, ...)
{
    va_list ap;

    v->rep.problems++;
    if (v->rep.first != COFFER_AUDIT_OK) {
        return;
    }
    v->rep.first = p;
    v->rep.first_event = event;
    v->rep.first_seq = seq;
    va_start(ap, fmt);
    (void)vsnprintf(v->rep.first_message, sizeof(v->rep.first_message), fmt, ap);
    va_end(ap);
}

enum coffer_err coffer_audit_verifier_new(enum coffer_audit_source source,
                                          struct coffer_audit_verifier **out)
{
    struct coffer_audit_verifier *v;

    if (out == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "audit verifier: no output");
    }
    *out = NULL;
    switch (source) {
    case COFFER_AUDIT_FROM_DATABASE:
    case COFFER_AUDIT_FROM_EXPORT:
    case COFFER_AUDIT_FROM_COMPLETE_EXPORT:
        break;
    default:
        return coffer_err_set(COFFER_E_INVALID, "audit verifier: unknown source %d", (int)source);
    }
    if ((v = coffer_calloc(1, sizeof(*v))) == NULL) {
        return coffer_err_set(COFFER_E_NOMEM, "audit verifier");
    }
    v->source = source;
    *out = v;
    return COFFER_OK;
}

void coffer_audit_verifier_free(struct coffer_audit_verifier **v)
{
    size_t i;

    if (v == NULL || *v == NULL) {
        return;
    }
    for (i = 0; i < (*v)->n_keys; i++) {
        EVP_PKEY_free((*v)->keys[i].pkey);
    }
    coffer_free((*v)->keys);
    coffer_free((*v)->sealed);
    coffer_free(*v);
    *v = NULL;
}

/* Whether pkey is an EC key on P-256 whose point passes OpenSSL's public key check. */
static bool is_p256(EVP_PKEY *pkey)
{
    char group[64];
    size_t glen = 0;
    EVP_PKEY_CTX *ctx = NULL;
    bool ok;

    if (EVP_PKEY_is_a(pkey, "EC") != 1 ||
        EVP_PKEY_get_group_name(pkey, group, sizeof(group), &glen) != 1 ||
        strcmp(group, SN_X9_62_prime256v1) != 0) {
        return false;
    }
    ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
    ok = ctx != NULL && EVP_PKEY_public_check(ctx) == 1;
    EVP_PKEY_CTX_free(ctx);
    return ok;
}

enum coffer_err coffer_audit_verifier_add_key(struct coffer_audit_verifier *v, int32_t version,
                                              const unsigned char *spki, size_t len)
{
    const unsigned char *p = spki;
    EVP_PKEY *pkey = NULL;
    struct vkey *keys;
    enum coffer_err r = COFFER_OK;
    size_t i;

    if (v == NULL || spki == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "signing key: missing argument");
    }
    if (version < 1) {
        return coffer_err_set(COFFER_E_INVALID, "signing key version %d is not positive",
                              (int)version);
    }
    if (len == 0 || len > COFFER_AUDIT_SPKI_MAX) {
        return coffer_err_set(COFFER_E_INVALID, "signing key v%d is %zu bytes, want 1 to %d",
                              (int)version, len, COFFER_AUDIT_SPKI_MAX);
    }
    for (i = 0; i < v->n_keys; i++) {
        if (v->keys[i].version == version) {
            return coffer_err_set(COFFER_E_EXISTS, "signing key v%d given twice", (int)version);
        }
    }
    if (v->n_keys >= KEYS_MAX) {
        return coffer_err_set(COFFER_E_LIMIT, "more than %d signing keys", KEYS_MAX);
    }
    pkey = d2i_PUBKEY(NULL, &p, (long)len);
    if (pkey == NULL || (size_t)(p - spki) != len) {
        r = coffer_err_set(COFFER_E_INVALID, "signing key v%d is not a SubjectPublicKeyInfo DER",
                           (int)version);
        goto out;
    }
    if (!is_p256(pkey)) {
        r = coffer_err_set(COFFER_E_INVALID, "signing key v%d is not a valid EC P-256 key",
                           (int)version);
        goto out;
    }
    keys = coffer_reallocarray(v->keys, v->n_keys + 1, sizeof(*keys));
    if (keys == NULL) {
        r = coffer_err_set(COFFER_E_NOMEM, "signing keys");
        goto out;
    }
    v->keys = keys;
    keys[v->n_keys].version = version;
    if ((r = audit_sha256(spki, len, keys[v->n_keys].fingerprint)) != COFFER_OK) {
        goto out;
    }
    keys[v->n_keys].pkey = pkey;
    pkey = NULL;
    v->n_keys++;
out:
    EVP_PKEY_free(pkey);
    ERR_clear_error();
    return r;
}

void coffer_audit_verifier_pin(struct coffer_audit_verifier *v,
                               const unsigned char fingerprint[COFFER_AUDIT_HASH_LEN])
{
    if (v == NULL) {
        return;
    }
    v->pinned = fingerprint != NULL;
    if (fingerprint != NULL) {
        coffer_memcpy(v->pin, fingerprint, COFFER_AUDIT_HASH_LEN);
    }
}

void coffer_audit_verifier_pruned(struct coffer_audit_verifier *v, int64_t through_event)
{
    if (v != NULL) {
        v->pruned = through_event;
    }
}

static const struct vkey *find_key(const struct coffer_audit_verifier *v, int32_t version)
{
    size_t i;

    for (i = 0; i < v->n_keys; i++) {
        if (v->keys[i].version == version) {
            return &v->keys[i];
        }
    }
    return NULL;
}

static int64_t sealed_id(const struct coffer_audit_verifier *v, size_t i)
{
    return audit_read_be64(v->sealed + i * COFFER_AUDIT_SEALED_ENTRY);
}

static const unsigned char *sealed_hash(const struct coffer_audit_verifier *v, size_t i)
{
    return v->sealed + i * COFFER_AUDIT_SEALED_ENTRY + 8;
}

/* A sealed entry that no event matched: deleted, pruned, or left out of a selection. */
static void sealed_absent(struct coffer_audit_verifier *v, int64_t id)
{
    if (v->source == COFFER_AUDIT_FROM_EXPORT) {
        v->rep.events_absent++;
    } else if (id <= v->pruned) {
        v->rep.events_pruned++;
    } else {
        problem(v, COFFER_AUDIT_EVENT_DELETED, id, v->range_seq,
                "event %" PRId64 ": sealed by checkpoint %" PRId64 " but missing", id,
                v->range_seq);
    }
}

/* Ends the current range: sealed entries past the last event given are absent. */
static void close_range(struct coffer_audit_verifier *v)
{
    if (v->in_range && v->range_known && v->matchable) {
        for (; v->next < v->n_sealed; v->next++) {
            sealed_absent(v, sealed_id(v, v->next));
        }
    }
    v->in_range = false;
    v->matchable = false;
    v->n_sealed = 0;
    v->next = 0;
}

/* The first column of c that differs from the message's fields f, or NULL. */
static const char *column_differs(const struct coffer_audit_cp_fields *c,
                                  const struct coffer_audit_cp_fields *f)
{
    if (c->seq != f->seq) {
        return "seq";
    }
    if (strncmp(c->at, f->at, sizeof(c->at)) != 0) {
        return "at";
    }
    if (c->first_event != f->first_event) {
        return "first_event";
    }
    if (c->last_event != f->last_event) {
        return "last_event";
    }
    if (c->events != f->events) {
        return "events";
    }
    if (!coffer_mem_equal(c->chain, f->chain, COFFER_AUDIT_HASH_LEN)) {
        return "chain";
    }
    if (!coffer_mem_equal(c->previous, f->previous, COFFER_AUDIT_HASH_LEN)) {
        return "previous";
    }
    if (!coffer_mem_equal(c->schema, f->schema, COFFER_AUDIT_HASH_LEN)) {
        return "schema";
    }
    if (c->key_version != f->key_version) {
        return "key";
    }
    if (!coffer_mem_equal(c->fingerprint, f->fingerprint, COFFER_AUDIT_HASH_LEN)) {
        return "fingerprint";
    }
    return NULL;
}

/* The stored columns and hash against the message (only when the caller has columns). */
static enum coffer_err check_columns(struct coffer_audit_verifier *v,
                                     const struct coffer_audit_checkpoint *cp,
                                     const struct coffer_audit_cp_fields *f,
                                     const unsigned char hash[COFFER_AUDIT_HASH_LEN])
{
    const char *col;

    if (cp->seq != f->seq) {
        problem(v, COFFER_AUDIT_CHECKPOINT_BAD, 0, f->seq,
                "checkpoint %" PRId64 ": stored seq %" PRId64 " differs from its signed message",
                f->seq, cp->seq);
        return COFFER_OK;
    }
    if (!cp->has_columns) {
        return COFFER_OK;
    }
    if ((col = column_differs(&cp->columns, f)) != NULL) {
        problem(v, COFFER_AUDIT_CHECKPOINT_BAD, 0, f->seq,
                "checkpoint %" PRId64 ": stored column %s differs from its signed message", f->seq,
                col);
    } else if (!coffer_mem_equal(cp->hash, hash, COFFER_AUDIT_HASH_LEN)) {
        problem(v, COFFER_AUDIT_CHECKPOINT_BAD, 0, f->seq,
                "checkpoint %" PRId64 ": stored hash is not the hash of its message", f->seq);
    }
    return COFFER_OK;
}

/*
 * The seq number and the link to the checkpoint before. *chain_start receives
 * the chain the sealed list continues, and *chain_known whether it is known:
 * it is not when a checkpoint before is missing or unreadable, a break that
 * is counted here or was counted when it was given.
 */
static void check_link(struct coffer_audit_verifier *v, const struct coffer_audit_cp_fields *f,
                       unsigned char chain_start[COFFER_AUDIT_HASH_LEN], bool *chain_known)
{
    static const unsigned char zeros[COFFER_AUDIT_HASH_LEN] = {0};

    *chain_known = false;
    if (v->prev_seq == 0) {
        if (f->seq == 1) {
            if (!coffer_mem_equal(f->previous, zeros, COFFER_AUDIT_HASH_LEN)) {
                problem(v, COFFER_AUDIT_CHECKPOINT_LINK, 0, 1,
                        "checkpoint 1: previous hash is not all zeros");
            }
            if (f->first_event != 1) {
                problem(v, COFFER_AUDIT_CHECKPOINT_LINK, 0, 1,
                        "checkpoint 1: first event is %" PRId64 ", not 1", f->first_event);
            }
            memset(chain_start, 0, COFFER_AUDIT_HASH_LEN);
            *chain_known = true;
        } else if (v->source == COFFER_AUDIT_FROM_DATABASE) {
            problem(v, COFFER_AUDIT_CHECKPOINT_MISSING, 0, f->seq,
                    "checkpoint %" PRId64 " is the first found: checkpoints 1 to %" PRId64
                    " are missing",
                    f->seq, f->seq - 1);
        } else {
            problem(v, COFFER_AUDIT_CHECKPOINT_LINK, 0, f->seq,
                    "checkpoint %" PRId64 " has no anchor: its link to checkpoint %" PRId64
                    " cannot be checked",
                    f->seq, f->seq - 1);
        }
        return;
    }
    if (f->seq > v->prev_seq + 1) {
        problem(v, COFFER_AUDIT_CHECKPOINT_MISSING, 0, f->seq,
                "checkpoint %" PRId64 " follows checkpoint %" PRId64 ": %" PRId64 " missing",
                f->seq, v->prev_seq, f->seq - v->prev_seq - 1);
        return;
    }
    if (f->seq <= v->prev_seq) {
        problem(v, COFFER_AUDIT_CHECKPOINT_LINK, 0, f->seq,
                "checkpoint %" PRId64 " comes after checkpoint %" PRId64, f->seq, v->prev_seq);
        return;
    }
    if (!v->have_prev) {
        return;
    }
    if (!coffer_mem_equal(f->previous, v->prev.hash, COFFER_AUDIT_HASH_LEN)) {
        problem(v, COFFER_AUDIT_CHECKPOINT_LINK, 0, f->seq,
                "checkpoint %" PRId64 ": previous hash is not the hash of checkpoint %" PRId64,
                f->seq, v->prev.seq);
    }
    if (f->first_event != v->prev.last_event + 1) {
        problem(v, COFFER_AUDIT_CHECKPOINT_LINK, 0, f->seq,
                "checkpoint %" PRId64 ": first event %" PRId64
                " does not follow last event %" PRId64 " of checkpoint %" PRId64,
                f->seq, f->first_event, v->prev.last_event, v->prev.seq);
    }
    coffer_memcpy(chain_start, v->prev.chain, COFFER_AUDIT_HASH_LEN);
    *chain_known = true;
}

/* 1 if sig verifies over msg with pkey (ECDSA, SHA-256), 0 if not; an error if OpenSSL fails. */
static enum coffer_err signature_ok(EVP_PKEY *pkey, const unsigned char *msg, size_t mlen,
                                    const unsigned char *sig, size_t slen, bool *ok)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    enum coffer_err r = COFFER_OK;

    *ok = false;
    if (ctx == NULL) {
        return coffer_err_set(COFFER_E_NOMEM, "signature check: digest context");
    }
    if (EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, pkey) != 1) {
        r = coffer_err_set(COFFER_E_CRYPTO, "signature check: OpenSSL refused the key");
        goto out;
    }
    /* A malformed DER signature is an answer (it does not verify), not an error. */
    *ok = EVP_DigestVerify(ctx, sig, slen, msg, mlen) == 1;
out:
    EVP_MD_CTX_free(ctx);
    ERR_clear_error();
    return r;
}

/* The signing key, the pin and the signature. */
static enum coffer_err check_signature(struct coffer_audit_verifier *v,
                                       const struct coffer_audit_checkpoint *cp,
                                       const struct coffer_audit_cp_fields *f)
{
    const struct vkey *k = find_key(v, f->key_version);
    bool ok = false;
    enum coffer_err r;

    if (k == NULL) {
        problem(v, COFFER_AUDIT_UNKNOWN_KEY, 0, f->seq,
                "checkpoint %" PRId64 ": signed by key version %d, which is not a known key",
                f->seq, (int)f->key_version);
        return COFFER_OK;
    }
    if (!coffer_mem_equal(k->fingerprint, f->fingerprint, COFFER_AUDIT_HASH_LEN)) {
        problem(v, COFFER_AUDIT_UNKNOWN_KEY, 0, f->seq,
                "checkpoint %" PRId64 ": its fingerprint is not that of key version %d", f->seq,
                (int)f->key_version);
        return COFFER_OK;
    }
    if (v->pinned && !coffer_mem_equal(k->fingerprint, v->pin, COFFER_AUDIT_HASH_LEN)) {
        problem(v, COFFER_AUDIT_UNKNOWN_KEY, 0, f->seq,
                "checkpoint %" PRId64 ": signed by key version %d, not by the pinned key", f->seq,
                (int)f->key_version);
    }
    if (cp->signature_len > 0 && cp->signature_len <= COFFER_AUDIT_SIG_MAX) {
        if ((r = signature_ok(k->pkey, cp->message, cp->message_len, cp->signature,
                              cp->signature_len, &ok)) != COFFER_OK) {
            return r;
        }
    }
    if (!ok) {
        problem(v, COFFER_AUDIT_CHECKPOINT_SIGNATURE, 0, f->seq,
                "checkpoint %" PRId64 ": signature does not verify with key version %d", f->seq,
                (int)f->key_version);
    }
    return COFFER_OK;
}

/*
 * The sealed list: whole entries, ids increasing inside the range, as many as
 * the message says, hashing to the signed chain. One problem at most per
 * checkpoint: the later checks of a broken list would only repeat the news.
 * *whole is set when the entries can be matched with events.
 */
static enum coffer_err check_sealed(struct coffer_audit_verifier *v,
                                    const struct coffer_audit_checkpoint *cp,
                                    const struct coffer_audit_cp_fields *f,
                                    const unsigned char chain_start[COFFER_AUDIT_HASH_LEN],
                                    bool chain_known, bool *whole)
{
    unsigned char chain[COFFER_AUDIT_HASH_LEN];
    struct coffer_cursor c = coffer_cursor_init(cp->sealed, cp->sealed_len);
    const unsigned char *e = NULL;
    int64_t last = f->first_event - 1;
    size_t n;
    size_t i;
    enum coffer_err r;

    *whole = false;
    if (cp->sealed_len % COFFER_AUDIT_SEALED_ENTRY != 0 ||
        cp->sealed_len > (size_t)COFFER_AUDIT_SEALED_ENTRY * COFFER_AUDIT_CHECKPOINT_MAX) {
        problem(v, COFFER_AUDIT_CHECKPOINT_CHAIN, 0, f->seq,
                "checkpoint %" PRId64 ": sealed list of %zu bytes is not a whole number of "
                "entries (at most %d)",
                f->seq, cp->sealed_len, COFFER_AUDIT_CHECKPOINT_MAX);
        return COFFER_OK;
    }
    n = cp->sealed_len / COFFER_AUDIT_SEALED_ENTRY;
    coffer_memcpy(chain, chain_start, COFFER_AUDIT_HASH_LEN);
    for (i = 0; i < n; i++) {
        int64_t id;

        if (coffer_cursor_bytes(&c, COFFER_AUDIT_SEALED_ENTRY, &e) != COFFER_OK) {
            return coffer_err_set(COFFER_E_STATE, "sealed list shorter than its length");
        }
        id = audit_read_be64(e);
        if (id <= last || id > f->last_event) {
            problem(v, COFFER_AUDIT_CHECKPOINT_CHAIN, 0, f->seq,
                    "checkpoint %" PRId64 ": sealed entry %zu (event %" PRId64
                    ") is out of order or outside events %" PRId64 " to %" PRId64,
                    f->seq, i + 1, id, f->first_event, f->last_event);
            return COFFER_OK;
        }
        last = id;
        if (chain_known && (r = audit_chain_step(chain, id, e + 8)) != COFFER_OK) {
            return r;
        }
    }
    *whole = true;
    if ((int64_t)n != f->events) {
        problem(v, COFFER_AUDIT_CHECKPOINT_CHAIN, 0, f->seq,
                "checkpoint %" PRId64 ": sealed list holds %zu events, its message says %" PRId64,
                f->seq, n, f->events);
    } else if (chain_known && !coffer_mem_equal(chain, f->chain, COFFER_AUDIT_HASH_LEN)) {
        problem(v, COFFER_AUDIT_CHECKPOINT_CHAIN, 0, f->seq,
                "checkpoint %" PRId64 ": sealed list does not hash to the signed chain", f->seq);
    }
    return COFFER_OK;
}

/* Keeps a copy of the sealed list: the caller's buffer is gone after the call. */
static enum coffer_err keep_sealed(struct coffer_audit_verifier *v,
                                   const struct coffer_audit_checkpoint *cp)
{
    if (cp->sealed_len > v->sealed_cap) {
        unsigned char *p = coffer_calloc(1, cp->sealed_len);

        if (p == NULL) {
            return coffer_err_set(COFFER_E_NOMEM, "sealed list of %zu bytes", cp->sealed_len);
        }
        coffer_free(v->sealed);
        v->sealed = p;
        v->sealed_cap = cp->sealed_len;
    }
    coffer_memcpy(v->sealed, cp->sealed, cp->sealed_len);
    v->n_sealed = cp->sealed_len / COFFER_AUDIT_SEALED_ENTRY;
    v->next = 0;
    return COFFER_OK;
}

static void set_prev(struct coffer_audit_verifier *v, const struct coffer_audit_cp_fields *f,
                     const unsigned char hash[COFFER_AUDIT_HASH_LEN])
{
    v->prev.seq = f->seq;
    coffer_memcpy(v->prev.hash, hash, COFFER_AUDIT_HASH_LEN);
    coffer_memcpy(v->prev.chain, f->chain, COFFER_AUDIT_HASH_LEN);
    coffer_memcpy(v->prev.schema, f->schema, COFFER_AUDIT_HASH_LEN);
    v->prev.last_event = f->last_event;
    v->have_prev = true;
    v->prev_seq = f->seq;
}

static enum coffer_err checkpoint_args(const struct coffer_audit_verifier *v,
                                       const struct coffer_audit_checkpoint *cp)
{
    if (v == NULL || cp == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "audit checkpoint: missing argument");
    }
    if (v->finished) {
        return coffer_err_set(COFFER_E_STATE, "audit checkpoint given after the report");
    }
    if ((cp->message == NULL && cp->message_len > 0) ||
        (cp->signature == NULL && cp->signature_len > 0) ||
        (cp->sealed == NULL && cp->sealed_len > 0)) {
        return coffer_err_set(COFFER_E_INVALID,
                              "audit checkpoint %" PRId64 ": length without bytes", cp->seq);
    }
    if (cp->anchor && (v->started || v->anchored)) {
        return coffer_err_set(COFFER_E_STATE,
                              "anchor %" PRId64 " given after a checkpoint or another anchor",
                              cp->seq);
    }
    return COFFER_OK;
}

/* A checkpoint whose message does not parse: its range is unknown, and so is its link. */
static void checkpoint_unreadable(struct coffer_audit_verifier *v,
                                  const struct coffer_audit_checkpoint *cp)
{
    problem(v, COFFER_AUDIT_CHECKPOINT_BAD, 0, cp->seq,
            "checkpoint %" PRId64 ": signed message is malformed (%s)", cp->seq,
            coffer_err_detail());
    coffer_err_clear();
    v->have_prev = false;
    v->prev_seq = cp->seq > v->prev_seq ? cp->seq : v->prev_seq;
    if (cp->anchor) {
        v->anchored = true;
        return;
    }
    v->started = true;
    v->rep.checkpoints++;
    v->rep.last_seq = cp->seq;
    v->in_range = true;
    v->range_known = false;
    v->range_seq = cp->seq;
}

enum coffer_err coffer_audit_verifier_checkpoint(struct coffer_audit_verifier *v,
                                                 const struct coffer_audit_checkpoint *cp)
{
    struct coffer_audit_cp_fields f;
    unsigned char hash[COFFER_AUDIT_HASH_LEN];
    unsigned char chain_start[COFFER_AUDIT_HASH_LEN];
    bool chain_known = false;
    bool whole = false;
    enum coffer_err r;

    if ((r = checkpoint_args(v, cp)) != COFFER_OK) {
        return r;
    }
    close_range(v);
    if (v->unsealed_first != 0) {
        problem(v, COFFER_AUDIT_EVENT_OUT_OF_ORDER, v->unsealed_first, cp->seq,
                "event %" PRId64 ": given before checkpoint %" PRId64, v->unsealed_first, cp->seq);
        v->unsealed_first = 0;
        v->rep.events_unsealed = 0;
    }
    if (coffer_audit_message_parse(cp->message, cp->message_len, &f) != COFFER_OK) {
        checkpoint_unreadable(v, cp);
        return COFFER_OK;
    }
    if ((r = audit_sha256(cp->message, cp->message_len, hash)) != COFFER_OK ||
        (r = check_columns(v, cp, &f, hash)) != COFFER_OK) {
        return r;
    }
    if (!cp->anchor) {
        check_link(v, &f, chain_start, &chain_known);
    }
    if ((r = check_signature(v, cp, &f)) != COFFER_OK) {
        return r;
    }
    if (cp->anchor) {
        /* An anchor only starts the chain: its own range is not verified. */
        v->anchored = true;
        set_prev(v, &f, hash);
        return COFFER_OK;
    }
    if ((r = check_sealed(v, cp, &f, chain_start, chain_known, &whole)) != COFFER_OK) {
        return r;
    }
    if (whole && (r = keep_sealed(v, cp)) != COFFER_OK) {
        return r;
    }
    if (v->have_prev && !coffer_mem_equal(v->prev.schema, f.schema, COFFER_AUDIT_HASH_LEN)) {
        v->rep.schema_changes++;
        if (v->rep.first_schema_change_seq == 0) {
            v->rep.first_schema_change_seq = f.seq;
        }
    }
    v->started = true;
    v->in_range = true;
    v->range_known = true;
    v->matchable = whole;
    v->range_seq = f.seq;
    v->range_first = f.first_event;
    v->range_last = f.last_event;
    set_prev(v, &f, hash);
    v->rep.checkpoints++;
    v->rep.last_seq = f.seq;
    v->rep.last_event = f.last_event;
    coffer_memcpy(v->rep.last_hash, hash, COFFER_AUDIT_HASH_LEN);
    return COFFER_OK;
}

/* Whether the event's content matches its own row_hash, and its id field its id. */
static enum coffer_err content_intact(const struct coffer_audit_row *row, bool *intact)
{
    unsigned char h[COFFER_AUDIT_HASH_LEN];
    int64_t id = 0;
    enum coffer_err r;

    *intact = false;
    if ((r = coffer_audit_row_hash(row, h)) != COFFER_OK) {
        return r;
    }
    *intact = audit_dec_ok(row->f[COFFER_AF_ID], false, &id) && id == row->id &&
              coffer_mem_equal(h, row->row_hash, COFFER_AUDIT_HASH_LEN);
    return COFFER_OK;
}

static void altered(struct coffer_audit_verifier *v, int64_t id, int64_t seq)
{
    if (seq != 0) {
        problem(v, COFFER_AUDIT_EVENT_ALTERED, id, seq,
                "event %" PRId64 ": content does not match its hash (checkpoint %" PRId64 ")", id,
                seq);
    } else {
        problem(v, COFFER_AUDIT_EVENT_ALTERED, id, 0,
                "event %" PRId64 ": content does not match its hash (not yet sealed)", id);
    }
}

/* An event inside the current range, matched against the sealed list in id order. */
static void match_sealed(struct coffer_audit_verifier *v, const struct coffer_audit_row *row,
                         bool intact)
{
    int64_t seq = v->range_seq;

    v->rep.events_verified++;
    for (; v->next < v->n_sealed && sealed_id(v, v->next) < row->id; v->next++) {
        sealed_absent(v, sealed_id(v, v->next));
    }
    if (v->next >= v->n_sealed || sealed_id(v, v->next) != row->id) {
        problem(v, COFFER_AUDIT_EVENT_INSERTED, row->id, seq,
                "event %" PRId64 ": inside the range of checkpoint %" PRId64
                " but not sealed by it",
                row->id, seq);
        return;
    }
    if (!intact) {
        altered(v, row->id, seq);
    } else if (!coffer_mem_equal(sealed_hash(v, v->next), row->row_hash, COFFER_AUDIT_HASH_LEN)) {
        problem(v, COFFER_AUDIT_EVENT_HASH_CHANGED, row->id, seq,
                "event %" PRId64 ": its hash differs from the one sealed by checkpoint %" PRId64,
                row->id, seq);
    }
    v->next++;
}

enum coffer_err coffer_audit_verifier_event(struct coffer_audit_verifier *v,
                                            const struct coffer_audit_row *row)
{
    bool intact = false;
    enum coffer_err r;

    if (v == NULL || row == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "audit event: missing argument");
    }
    if (v->finished) {
        return coffer_err_set(COFFER_E_STATE, "audit event given after the report");
    }
    if ((r = content_intact(row, &intact)) != COFFER_OK) {
        return r;
    }
    if (row->id <= v->last_id) {
        problem(v, COFFER_AUDIT_EVENT_OUT_OF_ORDER, row->id, v->in_range ? v->range_seq : 0,
                "event %" PRId64 ": comes after event %" PRId64, row->id, v->last_id);
        return COFFER_OK;
    }
    v->last_id = row->id;
    if (v->in_range && !v->range_known) {
        /* The checkpoint could not be read (counted): only the event's own hash is checked. */
        if (!intact) {
            altered(v, row->id, v->range_seq);
        }
        return COFFER_OK;
    }
    if (v->in_range && row->id < v->range_first) {
        problem(v, COFFER_AUDIT_EVENT_OUT_OF_ORDER, row->id, v->range_seq,
                "event %" PRId64 ": given after checkpoint %" PRId64 " but before its range",
                row->id, v->range_seq);
        return COFFER_OK;
    }
    if (!v->in_range && v->have_prev && row->id <= v->prev.last_event) {
        problem(v, COFFER_AUDIT_EVENT_OUT_OF_ORDER, row->id, v->prev.seq,
                "event %" PRId64 ": belongs to checkpoint %" PRId64 ", given outside its range",
                row->id, v->prev.seq);
        return COFFER_OK;
    }
    if (v->in_range && row->id <= v->range_last) {
        if (v->matchable) {
            match_sealed(v, row, intact);
        } else if (!intact) {
            altered(v, row->id, v->range_seq);
        }
        return COFFER_OK;
    }
    /* Past the last range: not sealed yet, but its own hash must still hold. */
    v->rep.events_unsealed++;
    if (v->unsealed_first == 0) {
        v->unsealed_first = row->id;
    }
    if (!intact) {
        altered(v, row->id, 0);
    }
    return COFFER_OK;
}

enum coffer_err coffer_audit_verifier_finish(struct coffer_audit_verifier *v,
                                             struct coffer_audit_report *out)
{
    if (v == NULL || out == NULL) {
        return coffer_err_set(COFFER_E_INVALID, "audit report: missing argument");
    }
    if (v->finished) {
        return coffer_err_set(COFFER_E_STATE, "audit report already made");
    }
    close_range(v);
    v->finished = true;
    *out = v->rep;
    return COFFER_OK;
}

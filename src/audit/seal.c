/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The sealer: one round of sealing, in one transaction. It reads the last
 * checkpoint, the (id, row_hash) of every event after it up to the horizon,
 * and the description of the audit objects; continues the hash chain; builds
 * the signed message; has the token sign it; and appends the checkpoint. The
 * database refuses a checkpoint that does not extend the last one, so two
 * sealers can never fork the chain.
 *
 * It reads no event content, only ids and hashes, and holds no key: the
 * signature is made inside the token.
 */
#include "coffer/audit_seal.h"

#include <inttypes.h>
#include <string.h>

#include "coffer/auditlog.h"
#include "coffer/log.h"
#include "coffer/mem.h"
#include "coffer/store_audit.h"

static enum coffer_err seal_tx(struct coffer_keys *k, struct coffer_store *st, int64_t through,
                               unsigned char *sealed, struct coffer_audit_seal_result *out)
{
    struct coffer_store_seal_head h;
    struct coffer_audit_cp_fields f;
    unsigned char spki[COFFER_KEYS_SPKI_LEN];
    unsigned char sig[COFFER_AUDIT_SIG_MAX];
    char msg[COFFER_AUDIT_MESSAGE_MAX];
    char *schema_text = NULL;
    int64_t last_id = 0;
    size_t spki_len = 0;
    size_t sig_len = 0;
    size_t msg_len = 0;
    size_t n = 0;
    uint32_t key_version = 0;
    enum coffer_err r;

    memset(&f, 0, sizeof(f));
    if ((r = coffer_store_seal_head(st, &h)) != COFFER_OK ||
        (r = coffer_store_audit_schema(st, &schema_text, f.schema, f.at)) != COFFER_OK) {
        goto out;
    }
    f.seq = h.exists ? h.seq + 1 : 1;
    f.first_event = h.exists ? h.last_event + 1 : 1;
    f.last_event = f.first_event - 1;
    if (through >= f.first_event) {
        if ((r = coffer_store_seal_events(st, f.first_event - 1, through,
                                          COFFER_AUDIT_CHECKPOINT_MAX, sealed, &n, &last_id)) !=
            COFFER_OK) {
            goto out;
        }
        /* A full checkpoint ends at its last event; the rest waits for the next round. */
        out->more = n == COFFER_AUDIT_CHECKPOINT_MAX;
        f.last_event = out->more ? last_id : through;
    }
    out->schema_changed = !h.exists || !coffer_mem_equal(h.schema, f.schema, sizeof(f.schema));
    if (f.last_event < f.first_event && !out->schema_changed) {
        goto out; /* nothing new */
    }
    f.events = (int64_t)n;
    if (h.exists) {
        coffer_memcpy(f.chain, h.chain, sizeof(f.chain));
        coffer_memcpy(f.previous, h.hash, sizeof(f.previous));
    }
    for (size_t i = 0; i < n; i++) {
        const unsigned char *e = sealed + i * COFFER_AUDIT_SEALED_ENTRY;
        uint64_t id = 0;

        for (int b = 0; b < 8; b++) {
            id = id << 8 | e[b];
        }
        coffer_audit_chain_step(f.chain, (int64_t)id, e + 8);
    }
    if ((r = coffer_store_audit_key_current(st, &key_version)) != COFFER_OK) {
        r = coffer_err_wrap(r, "no audit signing key is recorded (coffer keys create-audit-key)");
        goto out;
    }
    f.key_version = (int32_t)key_version;
    if ((r = coffer_keys_audit_public(k, key_version, spki, &spki_len)) != COFFER_OK) {
        goto out;
    }
    coffer_audit_fingerprint(spki, spki_len, f.fingerprint);
    if ((r = coffer_audit_message_build(&f, msg, sizeof(msg), &msg_len)) != COFFER_OK ||
        (r = coffer_keys_audit_sign(k, key_version, msg, msg_len, sig, &sig_len)) != COFFER_OK ||
        (r = coffer_store_seal_insert(st, &f, out->schema_changed ? schema_text : NULL, msg,
                                      msg_len, sig, sig_len, sealed,
                                      n * COFFER_AUDIT_SEALED_ENTRY)) != COFFER_OK) {
        goto out;
    }
    out->sealed = true;
    out->seq = f.seq;
    out->events = f.events;
    out->last_event = f.last_event;
out:
    coffer_free(schema_text);
    return r;
}

enum coffer_err coffer_audit_seal_once(struct coffer_keys *k, struct coffer_store *st,
                                       unsigned wait_ms, struct coffer_audit_seal_result *out)
{
    unsigned char *sealed = NULL;
    int64_t through = 0;
    bool got = false;
    enum coffer_err r;

    memset(out, 0, sizeof(*out));
    r = coffer_store_seal_horizon(st, wait_ms, &through);
    if (r == COFFER_E_CONFLICT) {
        out->busy = true;
        return COFFER_OK;
    }
    if (r != COFFER_OK || (r = coffer_store_seal_begin(st, &got)) != COFFER_OK) {
        return r;
    }
    if (!got) {
        out->busy = true;
        return COFFER_OK;
    }
    sealed = coffer_calloc(COFFER_AUDIT_CHECKPOINT_MAX, COFFER_AUDIT_SEALED_ENTRY);
    if (sealed == NULL) {
        coffer_store_rollback(st);
        return coffer_err_set(COFFER_E_NOMEM, "sealing: room for the sealed list");
    }
    r = seal_tx(k, st, through, sealed, out);
    if (r == COFFER_OK && out->sealed) {
        r = coffer_store_commit(st);
    } else {
        coffer_store_rollback(st);
    }
    if (r != COFFER_OK) {
        out->sealed = false;
        out->more = false;
    }
    coffer_free(sealed);
    return r;
}

/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The sealer: appends the next signed checkpoint over the events written
 * since the last one. cofferd runs it in its background process; one sealer
 * at a time seals, however many servers share the database.
 */
#ifndef COFFER_AUDIT_SEAL_H
#define COFFER_AUDIT_SEAL_H

#include <stdbool.h>
#include <stdint.h>

#include "coffer/err.h"
#include "coffer/keys.h"
#include "coffer/store.h"

struct coffer_audit_seal_result {
    bool sealed;        /* a checkpoint was appended */
    bool busy;          /* another sealer ran, or the event writers did not pause in time */
    bool more;          /* the checkpoint was full: events are waiting, seal again at once */
    int64_t seq;        /* the checkpoint appended */
    int64_t events;     /* events it sealed */
    int64_t last_event; /* the end of its range */
    bool schema_changed;
};

/*
 * One round: takes the sealer's lock, learns the highest event id that can
 * no longer be joined by a lower one (waiting at most wait_ms for the event
 * writers), and seals up to COFFER_AUDIT_CHECKPOINT_MAX events after the last
 * checkpoint, with the description of the audit objects, signed by the
 * current audit signing key in the token. Nothing to seal and nothing changed
 * is COFFER_OK with sealed false. Token and database errors are returned; the
 * transaction is then rolled back and nothing is appended.
 */
enum coffer_err coffer_audit_seal_once(struct coffer_keys *k, struct coffer_store *st,
                                       unsigned wait_ms,
                                       struct coffer_audit_seal_result *out) COFFER_MUST_USE;

#endif

/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The store's part of the tamper-evident audit log: what the sealer reads and
 * appends (as coffer_app), what a verifier or an export reads (through the
 * audit views, as coffer_auditor or any role that may read them), and the
 * export-then-prune step (as coffer_owner).
 */
#ifndef COFFER_STORE_AUDIT_H
#define COFFER_STORE_AUDIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "coffer/auditlog.h"
#include "coffer/err.h"
#include "coffer/store.h"

/* ---- Sealing (coffer_app) -------------------------------------------------------- */

/* The last checkpoint, as the next one must extend it. */
struct coffer_store_seal_head {
    bool exists; /* false: no checkpoint yet; the next is seq 1 from event 1 */
    int64_t seq;
    int64_t last_event;
    unsigned char chain[COFFER_AUDIT_HASH_LEN];
    unsigned char hash[COFFER_AUDIT_HASH_LEN];
    unsigned char schema[COFFER_AUDIT_HASH_LEN];
};

/*
 * Begins the sealing transaction and takes the sealer's lock, so that one
 * sealer runs at a time however many servers share the database. *got is
 * false (and no transaction is left open) when another sealer holds it.
 */
enum coffer_err coffer_store_seal_begin(struct coffer_store *s, bool *got) COFFER_MUST_USE;

/*
 * In a short transaction of its own (call it outside any): waits at most
 * wait_ms for every transaction that is writing events to end, holding back
 * new ones meanwhile, and returns the highest event id: every event at or
 * below it is committed or rolled back for good, whoever seals it later.
 * COFFER_E_CONFLICT if the wait ran out (nothing is held; try again later).
 */
enum coffer_err coffer_store_seal_horizon(struct coffer_store *s, unsigned wait_ms,
                                          int64_t *through) COFFER_MUST_USE;

/* The last checkpoint, with every column checked. */
enum coffer_err coffer_store_seal_head(struct coffer_store *s,
                                       struct coffer_store_seal_head *out) COFFER_MUST_USE;

/*
 * The sealed-list entries (id and row_hash, 40 bytes each) of the events with
 * after < id <= through, in id order, at most max of them, written to out
 * (room for max entries); *n receives how many, *last_id the last id (0 if
 * none).
 */
enum coffer_err coffer_store_seal_events(struct coffer_store *s, int64_t after, int64_t through,
                                         size_t max, unsigned char *out, size_t *n,
                                         int64_t *last_id) COFFER_MUST_USE;

/*
 * The description of the audit objects (tables, columns, views, triggers
 * and whether they are enabled, functions, owners, privileges), one object per
 * line in a fixed order, and its SHA-256; also the database's clock as
 * YYYY-MM-DDTHH:MM:SS.uuuuuuZ. *text is allocated; free it with coffer_free.
 */
enum coffer_err coffer_store_audit_schema(struct coffer_store *s, char **text,
                                          unsigned char digest[COFFER_AUDIT_HASH_LEN],
                                          char now[32]) COFFER_MUST_USE;

/* Appends a checkpoint (inside the sealing transaction). schema_text may be NULL. */
enum coffer_err coffer_store_seal_insert(struct coffer_store *s,
                                         const struct coffer_audit_cp_fields *f,
                                         const char *schema_text, const char *message,
                                         size_t message_len, const unsigned char *sig,
                                         size_t sig_len, const unsigned char *sealed,
                                         size_t sealed_len) COFFER_MUST_USE;

/* ---- Reading through the audit views ------------------------------------------- */

/*
 * Opens a connection that reads the audit views only: nothing is prepared
 * and coffer.* is never named, so coffer_auditor can use it. Only the
 * coffer_store_audit_read_* calls and coffer_store_close may be used on it.
 */
enum coffer_err coffer_store_open_reader(const char *conninfo,
                                         struct coffer_store **out) COFFER_MUST_USE;

/* What to read: an id range and optional filters (NULL: none). */
struct coffer_store_audit_filter {
    int64_t from_id;   /* inclusive */
    int64_t to_id;     /* inclusive */
    const char *org;   /* events whose principal's org or named org is this */
    const char *since; /* at >= since (ISO 8601, as PostgreSQL reads it) */
    const char *until; /* at < until */
};

typedef enum coffer_err (*coffer_store_audit_key_fn)(void *arg, int32_t version, const char *label,
                                                     const unsigned char *spki, size_t len);
typedef enum coffer_err (*coffer_store_audit_cp_fn)(void *arg,
                                                    const struct coffer_audit_checkpoint *cp);
typedef enum coffer_err (*coffer_store_audit_row_fn)(void *arg, const struct coffer_audit_row *row);

/* Every signing key (audit.signing_keys), by version. */
enum coffer_err coffer_store_audit_read_keys(struct coffer_store *s, coffer_store_audit_key_fn fn,
                                             void *arg) COFFER_MUST_USE;

/*
 * Checkpoints from_seq..to_seq (to_seq 0: to the last), in seq order, each
 * with its columns (has_columns). A callback error stops the walk and is
 * returned.
 */
enum coffer_err coffer_store_audit_read_checkpoints(struct coffer_store *s, int64_t from_seq,
                                                    int64_t to_seq, coffer_store_audit_cp_fn fn,
                                                    void *arg) COFFER_MUST_USE;

/* The checkpoint whose range holds id; *seq is 0 if none does. */
enum coffer_err coffer_store_audit_read_seq_of(struct coffer_store *s, int64_t id,
                                               int64_t *seq) COFFER_MUST_USE;

/* The events matching f (audit.access_log), in id order, in pages. */
enum coffer_err coffer_store_audit_read_events(struct coffer_store *s,
                                               const struct coffer_store_audit_filter *f,
                                               coffer_store_audit_row_fn fn,
                                               void *arg) COFFER_MUST_USE;

/* The lowest and highest id of the events matching f; both 0 if none. */
enum coffer_err coffer_store_audit_read_span(struct coffer_store *s,
                                             const struct coffer_store_audit_filter *f,
                                             int64_t *min_id, int64_t *max_id) COFFER_MUST_USE;

/* The number of the last checkpoint; 0 if there is none. */
enum coffer_err coffer_store_audit_read_last_seq(struct coffer_store *s,
                                                 int64_t *seq) COFFER_MUST_USE;

/* Events at or below *through were pruned (audit.prunes); 0 if none. */
enum coffer_err coffer_store_audit_read_pruned(struct coffer_store *s,
                                               int64_t *through) COFFER_MUST_USE;

/* Records a verification's outcome (audit.record_verification). */
enum coffer_err coffer_store_audit_record(struct coffer_store *s,
                                          const struct coffer_audit_report *rep) COFFER_MUST_USE;

/* ---- Export-then-prune (coffer_owner) ----------------------------------------------- */

/*
 * In one transaction: records the prune of every event of the checkpoints up
 * to through_seq (after the last prune), with the export file's SHA-256 and
 * event count and who ran it, then deletes those events. *deleted receives
 * how many. COFFER_E_INVALID if through_seq is not after the last prune.
 */
enum coffer_err coffer_store_audit_prune(struct coffer_store *s, int64_t through_seq,
                                         const unsigned char export_sha256[COFFER_AUDIT_HASH_LEN],
                                         int64_t export_events, const char *pruned_by,
                                         int64_t *deleted) COFFER_MUST_USE;

#endif

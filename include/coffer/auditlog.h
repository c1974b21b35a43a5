/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The tamper-evident audit log: the canonical form and hash of an event, the
 * hash chain and signed message of a checkpoint, the verifier that checks a
 * log (from the database or from an export file) and reports the first broken
 * point, and the export file format. The formats are specified in
 * docs/auditors.md ("How the log proves itself").
 *
 * Nothing here does I/O but through the caller's FILE streams, and nothing
 * here holds a key: checkpoints are signed in the token (keys module) and
 * verified with the public key alone, so an auditor can verify without one.
 */
#ifndef COFFER_AUDITLOG_H
#define COFFER_AUDITLOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "coffer/err.h"

#define COFFER_AUDIT_HASH_LEN 32
#define COFFER_AUDIT_FIELDS 23       /* fields of the canonical event encoding */
#define COFFER_AUDIT_SEALED_ENTRY 40 /* be64(id) || row_hash */
#define COFFER_AUDIT_SIG_MAX 80      /* DER ECDSA-Sig-Value for P-256 is at most 72 bytes */
#define COFFER_AUDIT_SPKI_MAX 128    /* SubjectPublicKeyInfo DER of a P-256 key is 91 bytes */
#define COFFER_AUDIT_MESSAGE_MAX 1024
#define COFFER_AUDIT_CHECKPOINT_MAX 10000 /* events sealed by one checkpoint at most */

/* Field numbers of the canonical encoding (0-based index into coffer_audit_row.f). */
enum coffer_audit_field {
    COFFER_AF_ID,
    COFFER_AF_AT,
    COFFER_AF_ACTION,
    COFFER_AF_ALLOWED,
    COFFER_AF_REASON,
    COFFER_AF_PURPOSE_UNEXPECTED,
    COFFER_AF_REQUEST_ID,
    COFFER_AF_CLIENT_ADDR,
    COFFER_AF_PRINCIPAL_KIND,
    COFFER_AF_TRUST_DOMAIN,
    COFFER_AF_ORG,
    COFFER_AF_AGENT_TYPE,
    COFFER_AF_INSTANCE,
    COFFER_AF_ADMIN,
    COFFER_AF_TARGET_ORG,
    COFFER_AF_PROJECT,
    COFFER_AF_CREDENTIAL,
    COFFER_AF_VERSION,
    COFFER_AF_PHASE,
    COFFER_AF_PURPOSE,
    COFFER_AF_DETAIL,
    COFFER_AF_ORG_KEY_VERSION,
    COFFER_AF_MK_VERSION,
};

/* The field names, in encoding order (also the JSON and CSV names). */
extern const char *const coffer_audit_field_names[COFFER_AUDIT_FIELDS];

/*
 * One event as text, exactly as the canonical encoding takes it: f[i] is the
 * text form of field i (NUL-terminated UTF-8) or NULL for SQL NULL. The
 * strings belong to the caller.
 */
struct coffer_audit_row {
    int64_t id;
    const char *f[COFFER_AUDIT_FIELDS];
    unsigned char row_hash[COFFER_AUDIT_HASH_LEN]; /* as stored beside the event */
};

/* SHA-256 of the canonical encoding of row->f. COFFER_E_INVALID if a field is too long. */
enum coffer_err coffer_audit_row_hash(const struct coffer_audit_row *row,
                                      unsigned char out[COFFER_AUDIT_HASH_LEN]) COFFER_MUST_USE;

/* chain = SHA-256(chain || be64(id) || row_hash), in place. */
void coffer_audit_chain_step(unsigned char chain[COFFER_AUDIT_HASH_LEN], int64_t id,
                             const unsigned char row_hash[COFFER_AUDIT_HASH_LEN]);

/* A checkpoint's fields, as carried by its signed message. */
struct coffer_audit_cp_fields {
    int64_t seq;
    char at[32]; /* YYYY-MM-DDTHH:MM:SS.uuuuuuZ */
    int64_t first_event;
    int64_t last_event;
    int64_t events;
    unsigned char chain[COFFER_AUDIT_HASH_LEN];
    unsigned char previous[COFFER_AUDIT_HASH_LEN];
    unsigned char schema[COFFER_AUDIT_HASH_LEN];
    int32_t key_version;
    unsigned char fingerprint[COFFER_AUDIT_HASH_LEN];
};

/* Writes the signed message of f into out (cap bytes); *len receives its length. */
enum coffer_err coffer_audit_message_build(const struct coffer_audit_cp_fields *f, char *out,
                                           size_t cap, size_t *len) COFFER_MUST_USE;

/* Parses a signed message strictly (every line, in order, nothing else). COFFER_E_INVALID. */
enum coffer_err coffer_audit_message_parse(const unsigned char *msg, size_t len,
                                           struct coffer_audit_cp_fields *out) COFFER_MUST_USE;

/* A checkpoint as stored or exported. The pointers belong to the caller. */
struct coffer_audit_checkpoint {
    int64_t seq;
    const unsigned char *message;
    size_t message_len;
    const unsigned char *signature; /* DER */
    size_t signature_len;
    const unsigned char *sealed; /* NULL for an anchor */
    size_t sealed_len;
    bool anchor; /* only links the next one: its events are not part of what is verified */
    /* The stored columns, compared with the message when has_columns. */
    bool has_columns;
    struct coffer_audit_cp_fields columns;
    unsigned char hash[COFFER_AUDIT_HASH_LEN]; /* stored hash column, if has_columns */
};

/* SHA-256 fingerprint of a SubjectPublicKeyInfo DER. */
void coffer_audit_fingerprint(const unsigned char *spki, size_t len,
                              unsigned char out[COFFER_AUDIT_HASH_LEN]);

/* PEM text of a SubjectPublicKeyInfo DER, in a NUL-terminated string to coffer_free. */
enum coffer_err coffer_audit_spki_pem(const unsigned char *spki, size_t len,
                                      char **pem) COFFER_MUST_USE;

/* ---- Verification ---------------------------------------------------------------- */

enum coffer_audit_source {
    COFFER_AUDIT_FROM_DATABASE,        /* every event of every range must be present */
    COFFER_AUDIT_FROM_EXPORT,          /* a selection: absent events are counted, not errors */
    COFFER_AUDIT_FROM_COMPLETE_EXPORT, /* an export that claims every event of its ranges */
};

/* What went wrong first, and where. */
enum coffer_audit_problem {
    COFFER_AUDIT_OK = 0,
    COFFER_AUDIT_EVENT_ALTERED,        /* content does not match its row_hash */
    COFFER_AUDIT_EVENT_HASH_CHANGED,   /* row_hash differs from the sealed one */
    COFFER_AUDIT_EVENT_DELETED,        /* sealed but absent */
    COFFER_AUDIT_EVENT_INSERTED,       /* present in a sealed range but not sealed */
    COFFER_AUDIT_EVENT_OUT_OF_ORDER,   /* ids not strictly increasing */
    COFFER_AUDIT_CHECKPOINT_MISSING,   /* a seq number skipped */
    COFFER_AUDIT_CHECKPOINT_BAD,       /* message malformed or columns differ from it */
    COFFER_AUDIT_CHECKPOINT_SIGNATURE, /* signature does not verify */
    COFFER_AUDIT_CHECKPOINT_LINK,      /* previous hash or range does not follow the last one */
    COFFER_AUDIT_CHECKPOINT_CHAIN,     /* sealed list does not hash to the signed chain */
    COFFER_AUDIT_UNKNOWN_KEY,          /* signed by a key not given, or not the pinned one */
};

struct coffer_audit_report {
    enum coffer_audit_problem first; /* COFFER_AUDIT_OK when intact */
    int64_t first_event;             /* the event concerned, 0 if none */
    int64_t first_seq;               /* the checkpoint concerned, 0 if none */
    char first_message[256];         /* one line saying what and where */
    int64_t problems;                /* how many problems in all */
    int64_t checkpoints;             /* checkpoints verified (anchors not counted) */
    int64_t events_verified;         /* events checked against a checkpoint */
    int64_t events_unsealed;         /* events newer than the last checkpoint */
    int64_t events_absent;           /* sealed entries not in an export (selection) */
    int64_t events_pruned;           /* sealed entries at or below the pruned horizon */
    int64_t last_seq;                /* last checkpoint verified, 0 if none */
    int64_t last_event;              /* last event id sealed by it */
    unsigned char last_hash[COFFER_AUDIT_HASH_LEN]; /* SHA-256 of its message */
    int64_t schema_changes; /* checkpoints whose schema digest differs from the one before */
    int64_t first_schema_change_seq; /* 0 if none */
};

struct coffer_audit_verifier;

enum coffer_err coffer_audit_verifier_new(enum coffer_audit_source source,
                                          struct coffer_audit_verifier **out) COFFER_MUST_USE;
void coffer_audit_verifier_free(struct coffer_audit_verifier **v);

/* A signing key (SPKI DER) by version. Checkpoints name the version and fingerprint. */
enum coffer_err coffer_audit_verifier_add_key(struct coffer_audit_verifier *v, int32_t version,
                                              const unsigned char *spki,
                                              size_t len) COFFER_MUST_USE;

/* Accept only checkpoints signed by the key with this fingerprint (auditor's pinned key). */
void coffer_audit_verifier_pin(struct coffer_audit_verifier *v,
                               const unsigned char fingerprint[COFFER_AUDIT_HASH_LEN]);

/* Events with id <= through_event were pruned after export: sealed entries need no row. */
void coffer_audit_verifier_pruned(struct coffer_audit_verifier *v, int64_t through_event);

/*
 * Feed checkpoints in seq order, each followed by the events of its range in
 * id order; then the events after the last checkpoint. A problem is recorded
 * in the report, not returned: the return is COFFER_OK unless the call itself
 * is wrong (COFFER_E_INVALID, COFFER_E_STATE) or memory runs out.
 */
enum coffer_err
coffer_audit_verifier_checkpoint(struct coffer_audit_verifier *v,
                                 const struct coffer_audit_checkpoint *cp) COFFER_MUST_USE;
enum coffer_err coffer_audit_verifier_event(struct coffer_audit_verifier *v,
                                            const struct coffer_audit_row *row) COFFER_MUST_USE;

/* Closes the last range and fills *out. */
enum coffer_err coffer_audit_verifier_finish(struct coffer_audit_verifier *v,
                                             struct coffer_audit_report *out) COFFER_MUST_USE;

/* A stable name for a problem ("event_altered", ...). */
const char *coffer_audit_problem_str(enum coffer_audit_problem p);

/* ---- Export files ---------------------------------------------------------------- */

enum coffer_audit_format { COFFER_AUDIT_JSONL, COFFER_AUDIT_CSV };

struct coffer_audit_export_header {
    const char *exported_at; /* ISO UTC */
    const char *since;       /* NULL if none */
    const char *until;       /* NULL if none */
    const char *org;         /* NULL if none */
    bool complete;
    int64_t first_checkpoint; /* 0 if none */
    int64_t last_checkpoint;  /* 0 if none */
};

struct coffer_audit_writer;

enum coffer_err coffer_audit_writer_new(FILE *out, enum coffer_audit_format format,
                                        struct coffer_audit_writer **w) COFFER_MUST_USE;
/* Each returns COFFER_E_IO if the stream fails. Call in the order of the format. */
enum coffer_err
coffer_audit_write_header(struct coffer_audit_writer *w,
                          const struct coffer_audit_export_header *h) COFFER_MUST_USE;
enum coffer_err coffer_audit_write_key(struct coffer_audit_writer *w, int32_t version,
                                       const char *label, const unsigned char *spki,
                                       size_t len) COFFER_MUST_USE;
enum coffer_err coffer_audit_write_checkpoint(struct coffer_audit_writer *w,
                                              const struct coffer_audit_checkpoint *cp)
    COFFER_MUST_USE; /* an anchor when cp->anchor */
enum coffer_err coffer_audit_write_event(struct coffer_audit_writer *w,
                                         const struct coffer_audit_row *row) COFFER_MUST_USE;
/* Writes the end record and flushes. */
enum coffer_err coffer_audit_write_end(struct coffer_audit_writer *w) COFFER_MUST_USE;
void coffer_audit_writer_free(struct coffer_audit_writer **w);

/*
 * Reads an export (the format is recognised from its first line) and feeds a
 * verifier of the right source (complete or not, from the header) with its
 * keys, checkpoints and events, then finishes it. pin may be NULL. A file that
 * is not a well-formed export is COFFER_E_INVALID with the line number in the
 * detail; a well-formed file that fails verification is COFFER_OK with the
 * problem in *out. *complete, *first_checkpoint and *last_checkpoint
 * receive what the header says the export holds.
 */
enum coffer_err coffer_audit_verify_file(FILE *in, const char *name, const unsigned char *pin,
                                         bool *complete, int64_t *first_checkpoint,
                                         int64_t *last_checkpoint,
                                         struct coffer_audit_report *out) COFFER_MUST_USE;

#endif

/* SPDX-License-Identifier: Apache-2.0 */
/*
 * keys: the key hierarchy and the envelope.
 *
 *   MK v<n>     AES-256 token objects "coffer-mk-v<n>", sensitive, never extractable
 *   OK org,v    AES-256 made in the token, stored only wrapped under an MK (RFC 5649)
 *   CEK         one AES-256 key per credential version, wrapped under an OK,
 *               encrypting its payload with AES-256-GCM inside the token
 *
 * The additional data of every payload binds it to its row: org, project,
 * credential, version and key names. A blob moved to another row, another
 * credential or another org fails to open and is reported as
 * COFFER_E_INTEGRITY; no partial plaintext is ever returned.
 *
 * Rotation makes a new version current in constant time. A read of a row
 * under an older version rewraps it with a compare-and-swap, and the sweeper
 * rewraps the rest in batches. A version is retired only when no row
 * references it.
 *
 * No key bytes pass through this module: it holds token handles and wrapped
 * blobs only. Plaintext credential values live in struct coffer_secret.
 */
#ifndef COFFER_KEYS_H
#define COFFER_KEYS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "coffer/err.h"
#include "coffer/p11.h"
#include "coffer/secret.h"
#include "coffer/store.h"
#include "coffer/uuid.h"

#define COFFER_VALUE_MAX (64u * 1024u)    /* one key's value */
#define COFFER_PAYLOAD_MAX (256u * 1024u) /* all values of one credential version */

/* ---- Key sets: the named values of one credential version ----------------- */

struct coffer_keyset;

enum coffer_err coffer_keyset_new(struct coffer_keyset **out) COFFER_MUST_USE;
/* Wipes every value and frees *ks, setting it to NULL. Safe on NULL. */
void coffer_keyset_free(struct coffer_keyset **ks);

/*
 * Adds a key. name must match [A-Za-z0-9_][A-Za-z0-9_.-]{0,63} and be new in
 * the set; value is any bytes (0 to COFFER_VALUE_MAX). The value is copied
 * into locked memory. COFFER_E_INVALID, COFFER_E_EXISTS or COFFER_E_LIMIT.
 */
enum coffer_err coffer_keyset_add(struct coffer_keyset *ks, const char *name, const void *value,
                                  size_t len) COFFER_MUST_USE;
/* As coffer_keyset_add, taking ownership of *value (set to NULL) on success. */
enum coffer_err coffer_keyset_add_secret(struct coffer_keyset *ks, const char *name,
                                         struct coffer_secret **value) COFFER_MUST_USE;

/* Whether name is a key name: [A-Za-z0-9_][A-Za-z0-9_.-]{0,63}. */
bool coffer_keys_name_valid(const char *name);

size_t coffer_keyset_count(const struct coffer_keyset *ks);
/* Name of entry i (< count), in insertion order. */
const char *coffer_keyset_name(const struct coffer_keyset *ks, size_t i);
/* Value of entry i (< count); borrowed. */
const struct coffer_secret *coffer_keyset_value(const struct coffer_keyset *ks, size_t i);
/* Value by name, or NULL. */
const struct coffer_secret *coffer_keyset_get(const struct coffer_keyset *ks, const char *name);

/*
 * A new set (*out) with every key of ks, in order, but the n named in
 * leave_out (names not in ks are ignored). The values are copied into
 * locked memory; ks is unchanged.
 */
enum coffer_err coffer_keyset_copy_without(const struct coffer_keyset *ks,
                                           const char *const *leave_out, size_t n,
                                           struct coffer_keyset **out) COFFER_MUST_USE;

/* ---- Context ---------------------------------------------------------------- */

struct coffer_keys;

/* Creates a context over an open token context (borrowed, must outlive it). */
enum coffer_err coffer_keys_new(struct coffer_p11 *p11, struct coffer_keys **out) COFFER_MUST_USE;
void coffer_keys_free(struct coffer_keys **k);

/*
 * For concurrency tests only: fn(arg) runs on a read that found a stale row,
 * after decryption and before its compare-and-swap.
 */
void coffer_keys_set_rewrap_hook(struct coffer_keys *k, void (*fn)(void *), void *arg);

/* A key version just made, with what the token read back. */
struct coffer_keys_created {
    uint32_t version;
    char label[65];
    unsigned char kcv[COFFER_KCV_LEN];
    struct coffer_p11_attrs attrs;
};

/* ---- Master keys ------------------------------------------------------------- */

/*
 * Creates MK v(n+1) as a persistent token object labelled "coffer-mk-v<n+1>",
 * reads its attributes back (refusing, and destroying it, unless it reads
 * sensitive, never extractable and wrap/unwrap only), records it with its KCV
 * and makes it current. Constant time. Refuses with COFFER_E_EXISTS if the
 * token already holds an object with that label.
 */
enum coffer_err coffer_keys_mk_create(struct coffer_keys *k, struct coffer_store *st,
                                      struct coffer_keys_created *out) COFFER_MUST_USE;

/*
 * Retires an MK version: refuses the current one (COFFER_E_STATE) and one that
 * still wraps org keys (COFFER_E_REFERENCED, *refs holding the count).
 */
enum coffer_err coffer_keys_mk_retire(struct coffer_keys *k, struct coffer_store *st,
                                      uint32_t version, int64_t *refs) COFFER_MUST_USE;

/* ---- Orgs and org keys ------------------------------------------------------ */

/* Creates the org row and its org key v1 (wrapped under the current MK), in one transaction. */
enum coffer_err coffer_keys_org_create(struct coffer_keys *k, struct coffer_store *st,
                                       const char *name, struct coffer_org *org,
                                       struct coffer_keys_created *key) COFFER_MUST_USE;

/* Makes a new org key version current, in constant time. */
enum coffer_err coffer_keys_org_rotate(struct coffer_keys *k, struct coffer_store *st,
                                       const struct coffer_uuid *org_id,
                                       struct coffer_keys_created *out) COFFER_MUST_USE;

/* As coffer_keys_mk_retire, for an org key version and the credential versions it wraps. */
enum coffer_err coffer_keys_org_key_retire(struct coffer_keys *k, struct coffer_store *st,
                                           const struct coffer_uuid *org_id, uint32_t version,
                                           int64_t *refs) COFFER_MUST_USE;

/* ---- Destruction and crypto-shredding ------------------------------------------ */

/*
 * Destroys a retired MK version: removes the token object "coffer-mk-v<n>"
 * (C_DestroyObject on every object with that label, then checks that none is
 * left) and marks the version destroyed. COFFER_E_STATE unless the version is
 * retired; COFFER_E_REFERENCED (with *refs) if anything still references it.
 * A version whose token object is already gone is marked destroyed. *out (may
 * be NULL) receives the label and the KCV recorded for it, for the transcript.
 */
enum coffer_err coffer_keys_mk_destroy(struct coffer_keys *k, struct coffer_store *st,
                                       uint32_t version, int64_t *refs,
                                       struct coffer_keys_created *out) COFFER_MUST_USE;

/*
 * Destroys one retired org key version: in one transaction under the row's
 * lock, overwrites its stored wrapped key with random bytes of the same
 * length and marks it destroyed (an org key has no token object of its own;
 * copies loaded in this process are dropped, other processes refuse it by
 * the row's state). COFFER_E_NOT_FOUND if there is no such version,
 * COFFER_E_STATE unless it is retired (a version destroyed already is
 * refused too: destruction is final and is not repeated), COFFER_E_REFERENCED
 * (with *refs, may be NULL) if credential versions are still wrapped under
 * it. *out (may be NULL) receives the version and the KCV recorded for it,
 * for the transcript; its label is empty and its attrs zero. A copy of the
 * database taken before still holds the version wrapped under its master
 * key until that master key version is destroyed too.
 */
enum coffer_err coffer_keys_org_key_destroy(struct coffer_keys *k, struct coffer_store *st,
                                            const struct coffer_uuid *org_id, uint32_t version,
                                            int64_t *refs,
                                            struct coffer_keys_created *out) COFFER_MUST_USE;

/* What a shred did, for the transcript. */
struct coffer_keys_shred_report {
    uint32_t org_key_versions;   /* org key versions of the org destroyed */
    int64_t credential_versions; /* its credential versions made unreadable */
    uint32_t old_mk_version;     /* the MK version destroyed with them (0 if none) */
    unsigned char old_mk_kcv[COFFER_KCV_LEN];
    uint32_t new_mk_version; /* the MK version now current */
    unsigned char new_mk_kcv[COFFER_KCV_LEN];
    int64_t org_keys_rewrapped; /* other orgs' key versions moved to the new MK */
};

/*
 * Crypto-shreds an org: marks every version of its org key destroyed and
 * overwrites the stored wrapped keys; then, so that no database backup can
 * unwrap them either, creates a new MK version, rewraps every other org's key
 * versions under it, and retires and destroys every older MK version. After
 * it returns, the org's credentials cannot be decrypted by anyone, from this
 * database or any copy of it; every other org reads as before. Safe to run
 * again after a crash at any step: it finishes what is left. *out (may be
 * NULL) receives what was done.
 */
enum coffer_err coffer_keys_org_shred(struct coffer_keys *k, struct coffer_store *st,
                                      const struct coffer_uuid *org_id,
                                      struct coffer_keys_shred_report *out) COFFER_MUST_USE;

/* ---- Credentials ------------------------------------------------------------- */

struct coffer_keys_write {
    const struct coffer_uuid *org_id;
    const struct coffer_uuid *project_id;
    const char *name;
    const char *type;
    const char *tier;
    const struct coffer_keyset *keys; /* at least one key */
};

/*
 * Stores a new version of a credential (creating it if needed) in one
 * transaction: a fresh CEK in the token encrypts the payload with AES-256-GCM
 * under the row's additional data, and is stored wrapped under the org's
 * current key. *version receives the version written. Inside a transaction
 * the caller opened (coffer_store_in_tx) the write joins it and leaves the
 * commit or rollback to the caller; otherwise it runs in its own.
 */
enum coffer_err coffer_keys_cred_write(struct coffer_keys *k, struct coffer_store *st,
                                       const struct coffer_keys_write *w,
                                       uint32_t *version) COFFER_MUST_USE;

/*
 * coffer_keys_cred_write for n (1..COFFER_KEYS_BATCH_MAX) distinct
 * credentials inside the caller's transaction, with one statement for their
 * version numbers and one for their rows. The caller sets each out[i]'s
 * lifetime and description, written with it; out[i] then receives what the
 * database gave write i (its id and version, when it was issued, the
 * project's phase). COFFER_E_STATE if a credential is revoked,
 * COFFER_E_NOT_FOUND if a project was removed; on any error the caller rolls
 * back.
 */
enum coffer_err coffer_keys_cred_write_many(struct coffer_keys *k, struct coffer_store *st,
                                            const struct coffer_keys_write *w,
                                            struct coffer_store_cred_next *out,
                                            size_t n) COFFER_MUST_USE;

struct coffer_keys_read_info {
    uint32_t version;                /* the version read */
    uint32_t org_key_version;        /* the org key version the row is under after the read */
    bool rewrapped;                  /* this read moved the row to the current org key */
    uint32_t opened_org_key_version; /* the org key version that opened the row */
    uint32_t opened_mk_version;      /* the master key version wrapping that org key */
};

/*
 * Reads version (0: current) of a credential in (org, project) and returns its
 * keys in *out. A row under an older org key version is rewrapped under the
 * current one with a compare-and-swap; losing the swap is not an error.
 * COFFER_E_NOT_FOUND, COFFER_E_INTEGRITY (any tampering; nothing returned),
 * COFFER_E_STATE (the row's key was destroyed) or a token or database error.
 */
enum coffer_err coffer_keys_cred_read(struct coffer_keys *k, struct coffer_store *st,
                                      const struct coffer_uuid *org_id,
                                      const struct coffer_uuid *project_id, const char *name,
                                      uint32_t version, struct coffer_keyset **out,
                                      struct coffer_keys_read_info *info) COFFER_MUST_USE;

/* Largest batch of reads coffer_keys_cred_read_many accepts. */
#define COFFER_KEYS_BATCH_MAX COFFER_STORE_BATCH_MAX

/* One read of a batch: the lookup, then its own result. */
struct coffer_keys_read_req {
    const struct coffer_uuid *org_id;
    const struct coffer_uuid *project_id;
    const char *name;
    uint32_t version;           /* 0: the current one */
    enum coffer_err result;     /* as coffer_keys_cred_read would return */
    struct coffer_keyset *keys; /* on COFFER_OK: owned by the caller */
    struct coffer_keys_read_info info;
};

/*
 * Several reads with one database round trip (a server with several requests
 * in flight batches them), each then opened in the token exactly as
 * coffer_keys_cred_read does. Returns COFFER_OK when every request has its
 * own result; otherwise the error that failed the whole batch (database or
 * token unavailable), also copied into every result. Free each keys.
 */
enum coffer_err coffer_keys_cred_read_many(struct coffer_keys *k, struct coffer_store *st,
                                           struct coffer_keys_read_req *reqs,
                                           size_t n) COFFER_MUST_USE;

/*
 * Pipelined reads: the database looks up the next batch while the token opens
 * this one. coffer_keys_read_start sends the lookups of a batch;
 * coffer_keys_read_finish, called with the same requests, receives their
 * rows, sends the lookups of next (if next_n > 0) and then opens this batch
 * in the token, with the results of coffer_keys_cred_read_many. A batch with
 * a stale row sends next only after its rewraps. If a start fails, nothing is
 * in flight and the finish of that batch looks it up directly. Outside a
 * transaction only; one batch in flight per store connection.
 */
enum coffer_err coffer_keys_read_start(struct coffer_keys *k, struct coffer_store *st,
                                       struct coffer_keys_read_req *reqs, size_t n) COFFER_MUST_USE;
enum coffer_err coffer_keys_read_finish(struct coffer_keys *k, struct coffer_store *st,
                                        struct coffer_keys_read_req *reqs, size_t n,
                                        struct coffer_keys_read_req *next,
                                        size_t next_n) COFFER_MUST_USE;

/* ---- Sweeper ---------------------------------------------------------------- */

struct coffer_keys_sweep {
    struct coffer_store_sweep_pos pos; /* zero the whole struct to start */
    struct coffer_uuid org_key_after;
    bool org_key_started;
    bool org_keys_done;
    int64_t org_keys_rewrapped;
    int64_t rewrapped;  /* credential versions moved to their org's current key */
    int64_t lost_races; /* rows another reader or server rewrapped first */
    int64_t failed;     /* rows that did not authenticate; left as they are */
    int64_t remaining;  /* credential versions still stale: counted at the first and
                           last step, estimated in between */
    int64_t remaining_org_keys;
    bool counted; /* the first count has been taken */
    bool done;    /* a whole pass has been made */
};

/*
 * One step of a sweep: first the org keys not under the current MK, then up to
 * batch credential versions not under their org's current key. Call until
 * state->done. Rows that fail to authenticate are counted and skipped, never
 * retried in the same pass. Each rewrap is its own compare-and-swap, so steps
 * can run beside readers and other sweepers, and a crash loses nothing.
 */
enum coffer_err coffer_keys_sweep_step(struct coffer_keys *k, struct coffer_store *st, size_t batch,
                                       struct coffer_keys_sweep *state) COFFER_MUST_USE;

/* ---- Token MAC key: digests of bearer tokens -------------------------------------- */

/*
 * The HMAC-SHA256 generic secret that digests bearer tokens, so that the
 * database holds digests only and never a usable token. One persistent
 * token object with this label; a session copy is cached per session.
 */
#define COFFER_TOKEN_MAC_LABEL "coffer-token-mac-v1"
#define COFFER_TOKEN_DIGEST_LEN COFFER_HMAC_SHA256_LEN

/*
 * Creates the token MAC key in the token and reads its attributes back,
 * refusing (and destroying it) unless it reads sensitive, never
 * extractable, a 32-byte generic secret that may sign and verify and
 * nothing else. COFFER_E_EXISTS if the token already holds an object with
 * the label. *out (may be NULL) receives version 1, the label and the
 * attributes read back (kcv is zero: HMAC keys have none).
 */
enum coffer_err coffer_keys_token_mac_create(struct coffer_keys *k,
                                             struct coffer_keys_created *out) COFFER_MUST_USE;

/*
 * out = HMAC-SHA256 of the len bytes at token under the token MAC key,
 * computed in the token. COFFER_E_STATE (the detail says how to create it)
 * if the token holds no such key; COFFER_E_INTEGRITY if the key found does
 * not read back as the key coffer_keys_token_mac_create makes; token errors
 * otherwise. out is zeroed on failure.
 */
enum coffer_err
coffer_keys_token_digest(struct coffer_keys *k, const void *token, size_t len,
                         unsigned char out[COFFER_TOKEN_DIGEST_LEN]) COFFER_MUST_USE;

/* ---- Audit signing key: ECDSA P-256 in the token ------------------------------------ */

/*
 * The key pairs that sign audit checkpoints: persistent token objects
 * "coffer-audit-v<n>" (a private key that may sign and nothing else, sensitive
 * and never extractable, and its public key), each recorded with its public
 * key in coffer.audit_signing_keys. The private key never leaves the token;
 * every use finds it by label and checks what the token says about it first.
 */
#define COFFER_AUDIT_KEY_PREFIX COFFER_STORE_AUDIT_KEY_PREFIX
#define COFFER_KEYS_SPKI_LEN 91      /* SubjectPublicKeyInfo DER of a P-256 key */
#define COFFER_KEYS_AUDIT_SIG_MAX 72 /* DER ECDSA-Sig-Value of a P-256 signature, at most */

/* A signing key as found in the token. */
struct coffer_keys_audit_key {
    uint32_t version;
    char label[65];
    unsigned char spki[COFFER_KEYS_SPKI_LEN]; /* built from the token's public point */
    size_t spki_len;                          /* COFFER_KEYS_SPKI_LEN */
    struct coffer_p11_ec_attrs attrs;         /* as read back */
};

/*
 * Creates the next signing key version n (1 + the highest "coffer-audit-v<n>"
 * in the token; 1 on an empty token) and records it in st as the current
 * key, retiring the one before. Refuses with COFFER_E_EXISTS if st records
 * version n already (the token and the database disagree). The pair is read
 * back and refused, and destroyed, unless the private key is sensitive,
 * never extractable and may sign only, and the public key is a valid P-256
 * point. If recording fails the pair stays in the token (a later create
 * moves past its version) and the error says so. *out (may be NULL)
 * receives the key.
 */
enum coffer_err coffer_keys_audit_key_create(struct coffer_keys *k, struct coffer_store *st,
                                             struct coffer_keys_audit_key *out) COFFER_MUST_USE;

/*
 * Finds signing key version in the token and checks it as create does.
 * COFFER_E_NOT_FOUND if the token holds no such pair, COFFER_E_INTEGRITY if
 * what it holds is not such a key (more than one object, wrong attributes,
 * invalid point). *out is zeroed on failure.
 */
enum coffer_err coffer_keys_audit_key_load(struct coffer_keys *k, uint32_t version,
                                           struct coffer_keys_audit_key *out) COFFER_MUST_USE;

/*
 * Signs msg (len bytes, 1 to COFFER_SECRET_MAX): SHA-256 in software, ECDSA
 * with signing key version in the token, and the signature checked against
 * the token's public key before it is returned, DER-encoded as an
 * ECDSA-Sig-Value into der_out (COFFER_KEYS_AUDIT_SIG_MAX bytes of room);
 * *der_len receives its length. Errors as coffer_keys_audit_key_load, or
 * COFFER_E_CRYPTO; *der_len is 0 on failure.
 */
enum coffer_err coffer_keys_audit_sign(struct coffer_keys *k, uint32_t version, const void *msg,
                                       size_t len, unsigned char *der_out,
                                       size_t *der_len) COFFER_MUST_USE;

/*
 * The SubjectPublicKeyInfo DER of signing key version into spki_out
 * (COFFER_KEYS_SPKI_LEN bytes of room); *len receives its length. Errors as
 * coffer_keys_audit_key_load.
 */
enum coffer_err coffer_keys_audit_public(struct coffer_keys *k, uint32_t version,
                                         unsigned char *spki_out, size_t *len) COFFER_MUST_USE;

#endif

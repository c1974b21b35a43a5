/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The store's part of key ceremonies: security officers (names and scrypt
 * hashes of their passphrases, never a passphrase), the quorum, plans with
 * their canonical descriptions, officers' approvals, and the signed
 * transcripts in coffer.ceremonies, with the links from the keys a ceremony
 * made to it. Approvals and transcripts are append-only in the database.
 *
 * Every function runs inside the caller's transaction when one is open.
 * Times are microseconds since the epoch, by the database's clock.
 */
#ifndef COFFER_STORE_CEREMONY_H
#define COFFER_STORE_CEREMONY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "coffer/err.h"
#include "coffer/store.h"
#include "coffer/uuid.h"

#define COFFER_OFFICERS_MAX 64         /* officers, present and past */
#define COFFER_PASSPHRASE_HASH_MAX 192 /* bytes of "scrypt$N$r$p$salt$hash" */
#define COFFER_CEREMONY_KIND_MAX 31    /* bytes of a kind */
#define COFFER_CEREMONY_ARGS_MAX 256   /* bytes of a plan's arguments */
#define COFFER_CEREMONY_DESC_MAX 65536 /* bytes of a plan's description */
#define COFFER_CEREMONY_TRANSCRIPT_MAX (1024u * 1024u)
#define COFFER_CEREMONY_SIG_MAX 80 /* DER ECDSA signature */
#define COFFER_CEREMONY_SHA256_LEN 32

struct coffer_store_officer {
    char name[COFFER_NAME_MAX + 1];
    char passphrase_hash[COFFER_PASSPHRASE_HASH_MAX + 1];
    int64_t added_us;
    bool removed;
    int64_t removed_us; /* 0 while serving */
};

/* A fresh random identifier from the database and its clock now. */
enum coffer_err coffer_store_ceremony_new_id(struct coffer_store *s, struct coffer_uuid *id,
                                             int64_t *now_us) COFFER_MUST_USE;

/*
 * Every officer, present and past, by name (at most COFFER_OFFICERS_MAX).
 * *out is allocated (NULL when *n is 0); free it with coffer_free.
 */
enum coffer_err coffer_store_officer_list(struct coffer_store *s, struct coffer_store_officer **out,
                                          size_t *n) COFFER_MUST_USE;

/* The officer of that name, serving or removed. COFFER_E_NOT_FOUND if none. */
enum coffer_err coffer_store_officer_get(struct coffer_store *s, const char *name,
                                         struct coffer_store_officer *out) COFFER_MUST_USE;

/*
 * Enrols an officer in ceremony ceremony_id (which must be recorded already).
 * COFFER_E_INVALID for a bad name or hash, COFFER_E_EXISTS if the name was
 * ever used (names are not reused, so the record of who approved stays clear).
 */
enum coffer_err coffer_store_officer_add(struct coffer_store *s, const char *name,
                                         const char *passphrase_hash,
                                         const struct coffer_uuid *ceremony_id) COFFER_MUST_USE;

/* Removes a serving officer in ceremony_id. COFFER_E_NOT_FOUND if no such serving officer. */
enum coffer_err coffer_store_officer_remove(struct coffer_store *s, const char *name,
                                            const struct coffer_uuid *ceremony_id) COFFER_MUST_USE;

/* The quorum M. COFFER_E_NOT_FOUND if none was ever set. */
enum coffer_err coffer_store_quorum_get(struct coffer_store *s, uint32_t *m) COFFER_MUST_USE;

/* Sets M (1..COFFER_OFFICERS_MAX) in ceremony_id. */
enum coffer_err coffer_store_quorum_set(struct coffer_store *s, uint32_t m,
                                        const struct coffer_uuid *ceremony_id) COFFER_MUST_USE;

enum coffer_plan_state {
    COFFER_PLAN_OPEN = 0,
    COFFER_PLAN_COMPLETED = 1,
    COFFER_PLAN_ABORTED = 2,
};

/* "open", "completed", "aborted". */
const char *coffer_plan_state_str(enum coffer_plan_state s);

struct coffer_store_plan {
    struct coffer_uuid id;
    char kind[COFFER_CEREMONY_KIND_MAX + 1];
    char args[COFFER_CEREMONY_ARGS_MAX + 1];
    char *description; /* owned; NUL-terminated */
    size_t description_len;
    unsigned char sha256[COFFER_CEREMONY_SHA256_LEN]; /* as recorded */
    int64_t created_us;
    int64_t expires_us;
    int64_t now_us; /* the database's clock when the row was read */
    enum coffer_plan_state state;
    bool has_ceremony;
    struct coffer_uuid ceremony_id;
};

/* Frees the description and zeroes *p. */
void coffer_store_plan_cleanup(struct coffer_store_plan *p);

/*
 * Records an open plan. id, kind, args, description, sha256, created_us and
 * expires_us are taken from *p; COFFER_E_INVALID for a field out of range.
 */
enum coffer_err coffer_store_plan_insert(struct coffer_store *s,
                                         const struct coffer_store_plan *p) COFFER_MUST_USE;

/* Loads a plan, checking every column. COFFER_E_NOT_FOUND if none. */
enum coffer_err coffer_store_plan_get(struct coffer_store *s, const struct coffer_uuid *id,
                                      struct coffer_store_plan *out) COFFER_MUST_USE;

/*
 * Closes an open plan as completed or aborted by ceremony_id. COFFER_E_STATE
 * if the plan is not open (another run closed it first).
 */
/*
 * lock: takes the lock that one run of plan id holds from before it reads the
 * plan until it has recorded the ceremony; *got is false if another process
 * holds it. !lock: releases it (*got: whether it was held). Not transactional:
 * it lasts until released or the connection ends.
 */
enum coffer_err coffer_store_plan_run_lock(struct coffer_store *s, const struct coffer_uuid *id,
                                           bool lock, bool *got) COFFER_MUST_USE;

enum coffer_err coffer_store_plan_close(struct coffer_store *s, const struct coffer_uuid *id,
                                        enum coffer_plan_state state,
                                        const struct coffer_uuid *ceremony_id) COFFER_MUST_USE;

/*
 * Records officer's approval of plan id for the description with SHA-256
 * sha256, now, only while the plan is open and not expired: COFFER_E_STATE
 * otherwise, COFFER_E_EXISTS if the officer approved it already.
 */
enum coffer_err
coffer_store_plan_approve(struct coffer_store *s, const struct coffer_uuid *id, const char *officer,
                          const unsigned char sha256[COFFER_CEREMONY_SHA256_LEN]) COFFER_MUST_USE;

struct coffer_store_plan_approval {
    char officer[COFFER_NAME_MAX + 1];
    unsigned char sha256[COFFER_CEREMONY_SHA256_LEN];
    int64_t approved_us;
    bool officer_serving; /* the officer is not removed now */
};

/* Every approval of a plan, oldest first. *out allocated (coffer_free), NULL when *n is 0. */
enum coffer_err coffer_store_plan_approvals(struct coffer_store *s, const struct coffer_uuid *id,
                                            struct coffer_store_plan_approval **out,
                                            size_t *n) COFFER_MUST_USE;

/* A transcript to record. Officers may be 0..COFFER_OFFICERS_MAX names. */
struct coffer_store_ceremony {
    struct coffer_uuid id;
    char kind[COFFER_CEREMONY_KIND_MAX + 1];
    bool completed;     /* else aborted */
    int64_t started_us; /* finished is the database's clock at insert */
    const char *const *officers;
    size_t n_officers;
    const char *token_serial; /* NULL or 1..64 bytes */
    const char *token_model;  /* NULL or 1..64 bytes */
    const char *transcript;   /* 1..COFFER_CEREMONY_TRANSCRIPT_MAX bytes */
    const unsigned char *signature;
    size_t signature_len; /* 8..COFFER_CEREMONY_SIG_MAX */
    uint32_t key_version; /* the audit signing key that signed it */
    bool has_plan;
    struct coffer_uuid plan_id;
};

/* Appends a ceremony row. COFFER_E_INVALID for a field out of range. */
enum coffer_err coffer_store_ceremony_insert(struct coffer_store *s,
                                             const struct coffer_store_ceremony *c) COFFER_MUST_USE;

/* A ceremony as read back. */
struct coffer_store_ceremony_row {
    struct coffer_uuid id;
    char kind[COFFER_CEREMONY_KIND_MAX + 1];
    bool completed;
    char *transcript; /* owned, NUL-terminated */
    size_t transcript_len;
    unsigned char signature[COFFER_CEREMONY_SIG_MAX];
    size_t signature_len; /* 0 if unsigned */
    uint32_t key_version; /* 0 if unsigned */
};

void coffer_store_ceremony_row_cleanup(struct coffer_store_ceremony_row *c);

/* Loads ceremony id. COFFER_E_NOT_FOUND if none. */
enum coffer_err coffer_store_ceremony_get(struct coffer_store *s, const struct coffer_uuid *id,
                                          struct coffer_store_ceremony_row *out) COFFER_MUST_USE;

/*
 * Names ceremony_id as the creator of a key: master key version, org key
 * (org_id, version) or audit signing key version. Only a key that names no
 * ceremony yet is changed; COFFER_E_NOT_FOUND if there is no such key
 * without one.
 */
enum coffer_err
coffer_store_ceremony_link_mk(struct coffer_store *s, uint32_t version,
                              const struct coffer_uuid *ceremony_id) COFFER_MUST_USE;
enum coffer_err
coffer_store_ceremony_link_org_key(struct coffer_store *s, const struct coffer_uuid *org_id,
                                   uint32_t version,
                                   const struct coffer_uuid *ceremony_id) COFFER_MUST_USE;
enum coffer_err
coffer_store_ceremony_link_audit_key(struct coffer_store *s, uint32_t version,
                                     const struct coffer_uuid *ceremony_id) COFFER_MUST_USE;

#endif

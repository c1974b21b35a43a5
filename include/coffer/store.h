/* SPDX-License-Identifier: Apache-2.0 */
/*
 * store: the only module that calls libpq.
 *
 * A struct coffer_store is one database connection with its prepared
 * statements; it belongs to one thread at a time. Every statement is prepared
 * and parameterised; no SQL text is ever built from input. Every row read is
 * validated (lengths, ranges, enum values) before it is handed out, and a row
 * that fails is COFFER_E_INTEGRITY with a detail naming the table and column.
 *
 * Results that own memory have a _cleanup function; out-structs are zeroed
 * by the callee before filling, so cleanup on an error path is always safe.
 */
#ifndef COFFER_STORE_H
#define COFFER_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "coffer/arena.h"
#include "coffer/authz.h"
#include "coffer/err.h"
#include "coffer/p11.h"
#include "coffer/policy.h"
#include "coffer/uuid.h"

struct coffer_store;

#define COFFER_NAME_MAX 63      /* org, project and credential names */
#define COFFER_KEY_NAME_MAX 64  /* names of the keys inside a credential */
#define COFFER_KEYS_MAX 64      /* keys in one credential */
#define COFFER_MECH_NAME_MAX 15 /* "aes-kwp", "aes-256-gcm" */

/* Names of the mechanisms recorded with every stored blob. */
#define COFFER_MECH_WRAP "aes-kwp"     /* CKM_AES_KEY_WRAP_PAD, RFC 5649 */
#define COFFER_MECH_AEAD "aes-256-gcm" /* CKM_AES_GCM, 96-bit IV, 128-bit tag */

enum coffer_key_state {
    COFFER_KEY_CURRENT = 0,   /* used for new wraps */
    COFFER_KEY_ACTIVE = 1,    /* still unwraps rows, no longer used for new ones */
    COFFER_KEY_RETIRED = 2,   /* referenced by nothing; kept until destroyed */
    COFFER_KEY_DESTROYED = 3, /* the key is gone from the token */
};

/* "current", "active", "retired", "destroyed". */
const char *coffer_key_state_str(enum coffer_key_state s);

/* ---- Connection, transactions, schema ------------------------------------ */

/*
 * Connects with a libpq conninfo string and prepares every statement.
 * COFFER_E_DB_UNAVAILABLE if the server cannot be reached (detail from libpq,
 * with any password removed), COFFER_E_SCHEMA if the schema is older than this
 * build expects.
 */
enum coffer_err coffer_store_open(const char *conninfo, struct coffer_store **out) COFFER_MUST_USE;

/* Closes the connection and frees *s, setting it to NULL. Safe on NULL. */
void coffer_store_close(struct coffer_store **s);

enum coffer_err coffer_store_begin(struct coffer_store *s) COFFER_MUST_USE;
enum coffer_err coffer_store_commit(struct coffer_store *s) COFFER_MUST_USE;
/* Rolls back if a transaction is open; never fails from the caller's view. */
void coffer_store_rollback(struct coffer_store *s);

/*
 * As a superuser (or a role with CREATEROLE and CREATEDB): creates the roles
 * coffer_owner, coffer_app and coffer_auditor if missing, and the database
 * dbname owned by coffer_owner if missing, with CONNECT revoked from PUBLIC.
 * Safe to re-run.
 */
enum coffer_err coffer_store_bootstrap(const char *superuser_conninfo,
                                       const char *dbname) COFFER_MUST_USE;

/*
 * As coffer_owner: applies, in order, every migration of sql/ compiled into
 * this build that the database has not recorded yet, each in one transaction
 * under an advisory lock, recording version, name and SHA-256 in
 * coffer.schema_migrations. Safe to re-run. COFFER_E_SCHEMA if a recorded
 * migration's SHA-256 differs from this build's, or the database records a
 * migration this build does not know. *applied (may be NULL) gets the count.
 */
enum coffer_err coffer_store_migrate(const char *owner_conninfo, int *applied) COFFER_MUST_USE;

/* Highest migration version this build knows. */
int coffer_store_schema_latest(void);

/* ---- Orgs and projects ---------------------------------------------------- */

struct coffer_org {
    struct coffer_uuid id;
    char name[COFFER_NAME_MAX + 1];
};

struct coffer_project {
    struct coffer_uuid id;
    struct coffer_uuid org_id;
    char name[COFFER_NAME_MAX + 1];
};

/* COFFER_E_INVALID for a bad name, COFFER_E_EXISTS if taken. */
enum coffer_err coffer_store_org_insert(struct coffer_store *s, const char *name,
                                        struct coffer_org *out) COFFER_MUST_USE;
enum coffer_err coffer_store_org_by_name(struct coffer_store *s, const char *name,
                                         struct coffer_org *out) COFFER_MUST_USE;
/* SELECT ... FOR UPDATE on the org row; inside a transaction. Serialises key rotation. */
enum coffer_err coffer_store_org_lock(struct coffer_store *s,
                                      const struct coffer_uuid *org_id) COFFER_MUST_USE;

enum coffer_err coffer_store_project_insert(struct coffer_store *s,
                                            const struct coffer_uuid *org_id, const char *name,
                                            struct coffer_project *out) COFFER_MUST_USE;
enum coffer_err coffer_store_project_by_name(struct coffer_store *s,
                                             const struct coffer_uuid *org_id, const char *name,
                                             struct coffer_project *out) COFFER_MUST_USE;

/* ---- Master keys (rows describing token objects coffer-mk-v<n>) ---------- */

struct coffer_store_mk {
    uint32_t version;
    char label[65];
    unsigned char kcv[COFFER_KCV_LEN];
    enum coffer_key_state state;
};

/* Inserts a new version in state ACTIVE. COFFER_E_EXISTS if the version exists. */
enum coffer_err coffer_store_mk_insert(struct coffer_store *s,
                                       const struct coffer_store_mk *mk) COFFER_MUST_USE;
/* Makes version current and the previous current ACTIVE, atomically. */
enum coffer_err coffer_store_mk_make_current(struct coffer_store *s,
                                             uint32_t version) COFFER_MUST_USE;
/* COFFER_E_NOT_FOUND if there is no current master key. */
enum coffer_err coffer_store_mk_current(struct coffer_store *s,
                                        struct coffer_store_mk *out) COFFER_MUST_USE;
enum coffer_err coffer_store_mk_get(struct coffer_store *s, uint32_t version,
                                    struct coffer_store_mk *out) COFFER_MUST_USE;
/* Highest version recorded, 0 if none. */
enum coffer_err coffer_store_mk_max_version(struct coffer_store *s, uint32_t *out) COFFER_MUST_USE;
/* All versions, ascending. *out is allocated; free with coffer_free. */
enum coffer_err coffer_store_mk_list(struct coffer_store *s, struct coffer_store_mk **out,
                                     size_t *n) COFFER_MUST_USE;
/* Locks the row FOR UPDATE (inside a transaction). */
enum coffer_err coffer_store_mk_lock(struct coffer_store *s, uint32_t version) COFFER_MUST_USE;
/* Number of org key rows wrapped under this master key version. */
enum coffer_err coffer_store_mk_count_refs(struct coffer_store *s, uint32_t version,
                                           int64_t *out) COFFER_MUST_USE;
/* Sets the state (and retired_at/destroyed_at). */
enum coffer_err coffer_store_mk_set_state(struct coffer_store *s, uint32_t version,
                                          enum coffer_key_state state) COFFER_MUST_USE;

/* ---- Org keys (stored only wrapped under a master key version) ------------ */

struct coffer_store_org_key {
    struct coffer_uuid id;
    struct coffer_uuid org_id;
    uint32_t version;
    uint32_t mk_version;
    char wrap_mech[COFFER_MECH_NAME_MAX + 1];
    unsigned char wrapped[COFFER_WRAPPED_MAX];
    size_t wrapped_len;
    unsigned char kcv[COFFER_KCV_LEN];
    enum coffer_key_state state;
};

/* Inserts in state ACTIVE (id is assigned and written back). COFFER_E_EXISTS on a version clash. */
enum coffer_err coffer_store_org_key_insert(struct coffer_store *s,
                                            struct coffer_store_org_key *ok) COFFER_MUST_USE;
/* Makes (org, version) current and the previous current ACTIVE, atomically. */
enum coffer_err coffer_store_org_key_make_current(struct coffer_store *s,
                                                  const struct coffer_uuid *org_id,
                                                  uint32_t version) COFFER_MUST_USE;
enum coffer_err coffer_store_org_key_current(struct coffer_store *s,
                                             const struct coffer_uuid *org_id,
                                             struct coffer_store_org_key *out) COFFER_MUST_USE;
enum coffer_err coffer_store_org_key_get(struct coffer_store *s, const struct coffer_uuid *org_id,
                                         uint32_t version,
                                         struct coffer_store_org_key *out) COFFER_MUST_USE;
/* Every version of every org (org_id NULL) or of one org, by org then version. Free with
 * coffer_free. */
enum coffer_err coffer_store_org_key_list(struct coffer_store *s, const struct coffer_uuid *org_id,
                                          struct coffer_store_org_key **out,
                                          size_t *n) COFFER_MUST_USE;
/*
 * Compare-and-swap rewrap: sets (mk_version, wrapped) to the new values only
 * if the row still has old_mk_version and old_wrapped. *won says whether this
 * call changed the row (false: another reader or server did it first).
 */
enum coffer_err coffer_store_org_key_rewrap(struct coffer_store *s,
                                            const struct coffer_store_org_key *old,
                                            uint32_t new_mk_version, const unsigned char *wrapped,
                                            size_t wrapped_len, bool *won) COFFER_MUST_USE;
/* Up to limit org key rows not wrapped under mk_version and not destroyed, id > after (NULL: from
 * the start). */
enum coffer_err coffer_store_org_key_stale(struct coffer_store *s, uint32_t mk_version,
                                           const struct coffer_uuid *after, size_t limit,
                                           struct coffer_store_org_key **out,
                                           size_t *n) COFFER_MUST_USE;
/* Locks the row FOR UPDATE (inside a transaction). */
enum coffer_err coffer_store_org_key_lock(struct coffer_store *s, const struct coffer_uuid *org_id,
                                          uint32_t version) COFFER_MUST_USE;
/* Number of credential versions wrapped under this org key version. */
enum coffer_err coffer_store_org_key_count_refs(struct coffer_store *s,
                                                const struct coffer_uuid *org_id, uint32_t version,
                                                int64_t *out) COFFER_MUST_USE;
enum coffer_err coffer_store_org_key_set_state(struct coffer_store *s,
                                               const struct coffer_uuid *org_id, uint32_t version,
                                               enum coffer_key_state state) COFFER_MUST_USE;

/* ---- Credentials ---------------------------------------------------------- */

struct coffer_store_cred {
    struct coffer_uuid id;
    struct coffer_uuid org_id;
    struct coffer_uuid project_id;
    char name[COFFER_NAME_MAX + 1];
    char type[32];
    char tier[16];
    uint32_t current_version;
    uint32_t org_current_key_version; /* the org's current key version, 0 if none */
};

/*
 * One stored version: metadata, the AEAD output and the wrapped CEK. The
 * variable parts (key_names, ciphertext) are owned by the struct.
 */
struct coffer_store_cred_version {
    struct coffer_uuid credential_id;
    uint32_t version;
    struct coffer_uuid org_id;
    struct coffer_uuid project_id;
    uint32_t org_key_version;
    char aead[COFFER_MECH_NAME_MAX + 1];
    char wrap_mech[COFFER_MECH_NAME_MAX + 1];
    char **key_names; /* n_keys NUL-terminated names, in stored order */
    size_t n_keys;
    unsigned char nonce[COFFER_GCM_IV_LEN];
    unsigned char *ciphertext;
    size_t ciphertext_len;
    unsigned char tag[COFFER_GCM_TAG_LEN];
    unsigned char wrapped_cek[COFFER_WRAPPED_MAX];
    size_t wrapped_cek_len;
    /* Filled by reads (joined in the same query), ignored by insert: */
    enum coffer_key_state org_key_state; /* state of (org_id, org_key_version) */
    uint32_t org_current_key_version;    /* the org's current key version, 0 if none */
};

/* Frees the owned parts and zeroes *v. */
void coffer_store_cred_version_cleanup(struct coffer_store_cred_version *v);

/*
 * Inside a transaction: creates the credential (org, project, name) if absent
 * with current_version 1, or increments current_version of the existing one,
 * locking its row until commit. Fills *out with the id, the new version and
 * the org's current key version (read in the same statement, so a write
 * costs one round trip less).
 * type and tier are stored as given (the API validates them).
 */
enum coffer_err coffer_store_cred_next_version(struct coffer_store *s,
                                               const struct coffer_uuid *org_id,
                                               const struct coffer_uuid *project_id,
                                               const char *name, const char *type, const char *tier,
                                               struct coffer_store_cred *out) COFFER_MUST_USE;

/* Inserts a version row. COFFER_E_EXISTS if (credential, version) exists. */
enum coffer_err
coffer_store_cred_version_insert(struct coffer_store *s,
                                 const struct coffer_store_cred_version *v) COFFER_MUST_USE;

/*
 * Loads version (0: the current one) of the credential named name in
 * (org_id, project_id). The org filter is part of the query, never implied.
 */
enum coffer_err coffer_store_cred_version_get(
    struct coffer_store *s, const struct coffer_uuid *org_id, const struct coffer_uuid *project_id,
    const char *name, uint32_t version, struct coffer_store_cred_version *out) COFFER_MUST_USE;

/* Largest batch of lookups coffer_store_cred_version_get_many accepts. */
#define COFFER_STORE_BATCH_MAX 64

/* One lookup of a batch: version (0: the current one) of name in (org, project). */
struct coffer_store_cred_ref {
    const struct coffer_uuid *org_id;
    const struct coffer_uuid *project_id;
    const char *name;
    uint32_t version;
};

/*
 * Loads n (1..COFFER_STORE_BATCH_MAX) versions in one round trip, so that a
 * server answering several reads at once pays the database once. out[i] and
 * results[i] answer refs[i]: COFFER_OK with the row, COFFER_E_NOT_FOUND,
 * COFFER_E_INVALID (a malformed lookup, not sent) or COFFER_E_INTEGRITY (a row
 * that fails validation). The return value is COFFER_OK when the query ran,
 * else the error that failed the whole batch (also copied into every
 * results[i]). Clean up every out[i] with coffer_store_cred_version_cleanup.
 */
enum coffer_err coffer_store_cred_version_get_many(struct coffer_store *s,
                                                   const struct coffer_store_cred_ref *refs,
                                                   size_t n, struct coffer_store_cred_version *out,
                                                   enum coffer_err *results) COFFER_MUST_USE;

/*
 * The two halves of coffer_store_cred_version_get_many, so that the caller can
 * work (open the previous batch in the token) while the database answers.
 * send_many sends the lookups without waiting; recv_many, called with the
 * same refs, waits for the rows. While a batch is in flight every other call
 * on the connection fails with COFFER_E_STATE (rollback and close discard
 * the answer). Outside a transaction only.
 */
/* True while a batch sent by coffer_store_cred_version_send_many awaits its receive. */
bool coffer_store_in_flight(const struct coffer_store *s);

enum coffer_err coffer_store_cred_version_send_many(struct coffer_store *s,
                                                    const struct coffer_store_cred_ref *refs,
                                                    size_t n) COFFER_MUST_USE;
enum coffer_err coffer_store_cred_version_recv_many(struct coffer_store *s,
                                                    const struct coffer_store_cred_ref *refs,
                                                    size_t n, struct coffer_store_cred_version *out,
                                                    enum coffer_err *results) COFFER_MUST_USE;

/*
 * Compare-and-swap rewrap of a version's CEK: sets (org_key_version,
 * wrapped_cek) only if the row still has old->org_key_version and
 * old->wrapped_cek. *won says whether this call changed the row.
 */
enum coffer_err coffer_store_cred_rewrap(struct coffer_store *s,
                                         const struct coffer_store_cred_version *old,
                                         uint32_t new_org_key_version, const unsigned char *wrapped,
                                         size_t wrapped_len, bool *won) COFFER_MUST_USE;

/* One row of a batched rewrap: the version as read, and its new wrapping. */
struct coffer_store_rewrap {
    const struct coffer_store_cred_version *old;
    uint32_t new_org_key_version;
    const unsigned char *wrapped;
    size_t wrapped_len;
};

/*
 * coffer_store_cred_rewrap for up to COFFER_STORE_BATCH_MAX rows in one
 * statement (atomic: all swaps that win commit together). won[i] says whether
 * items[i] was moved by this call.
 */
enum coffer_err coffer_store_cred_rewrap_many(struct coffer_store *s,
                                              const struct coffer_store_rewrap *items, size_t n,
                                              bool *won) COFFER_MUST_USE;

/* Position in the sweep over credential versions (keyset pagination). */
struct coffer_store_sweep_pos {
    struct coffer_uuid credential_id;
    uint32_t version;
    bool started; /* false: from the beginning */
};

/*
 * Up to limit versions whose org_key_version is not their org's current
 * version, ordered by (credential_id, version) after *pos; *pos is advanced
 * past the last row returned. The rows are full versions (free each with
 * coffer_store_cred_version_cleanup, then the array with coffer_free).
 */
enum coffer_err coffer_store_cred_stale(struct coffer_store *s, struct coffer_store_sweep_pos *pos,
                                        size_t limit, struct coffer_store_cred_version **out,
                                        size_t *n) COFFER_MUST_USE;

/* Counts credential versions not under their org's current key, and org keys not under the current
 * MK. */
enum coffer_err coffer_store_count_stale(struct coffer_store *s, int64_t *cred_versions,
                                         int64_t *org_keys) COFFER_MUST_USE;

/* ---- Policy in force (docs/policy.md) -------------------------------------- */

/*
 * Loads the policy in force of org into *out, allocated in a: its agent
 * types, its four tiers (built-in lifetimes for tiers without rows), and its
 * projects that have phases and are not removed, with their members,
 * credential rules and policy grants, every list in the order
 * coffer_policy_finish gives. Positions are zero and files empty. Every row
 * is validated as the policy parser would; a row that fails is
 * COFFER_E_INTEGRITY naming the table and column.
 */
enum coffer_err coffer_store_policy_load(struct coffer_store *s, const struct coffer_org *org,
                                         struct coffer_arena *a,
                                         struct coffer_policy_org *out) COFFER_MUST_USE;

struct coffer_store_policy_result {
    bool changed;
    uint32_t version; /* the policy version in force afterwards; 0 if none was ever applied */
    struct coffer_policy_changes changes;
};

/*
 * Makes org (a finished model) the policy in force of the org of that name,
 * inside the caller's transaction or in its own: locks the org row, loads the
 * policy in force, compares, and when anything differs writes the new policy
 * and a policy version (the files and their SHA-256, the policy as
 * coffer_policy_emit writes it with its SHA-256, the changes, applied_by).
 * Nothing is written when nothing differs. Policy grants that the new policy
 * drops are deleted, so they stop working at commit.
 *
 * COFFER_E_NOT_FOUND if the org does not exist; COFFER_E_STATE if a project
 * the policy drops still holds credentials, or a project's current phase is
 * no longer among its phases (the detail names the project). The changes
 * are allocated in a.
 */
enum coffer_err coffer_store_policy_apply(struct coffer_store *s,
                                          const struct coffer_policy_org *org,
                                          const char *applied_by, struct coffer_arena *a,
                                          struct coffer_store_policy_result *out) COFFER_MUST_USE;

/* The latest policy version of an org, 0 if none was applied. */
enum coffer_err coffer_store_policy_version(struct coffer_store *s,
                                            const struct coffer_uuid *org_id,
                                            uint32_t *out) COFFER_MUST_USE;

/* ---- Phases ------------------------------------------------------------------- */

struct coffer_store_phase_result {
    bool changed;                   /* false: the project was already in the phase */
    char from[COFFER_NAME_MAX + 1]; /* the phase left, "" if the project had none */
    char to[COFFER_NAME_MAX + 1];   /* the phase entered */
    const char **expired;           /* credentials that expired, sorted (in the arena) */
    size_t n_expired;
    int64_t changed_at_us; /* the instant of the change and of the expiry */
};

/*
 * Moves project org/project to phase in one transaction (the caller's or its
 * own): the project row is locked, its phase changes, every credential of
 * the project marked expire_on_phase_end for the phase left (on the
 * credential or by its credential rule) and not yet expired expires at the
 * same instant, and the change is recorded in coffer.phase_changes with
 * changed_by. COFFER_E_NOT_FOUND for an unknown org or project;
 * COFFER_E_INVALID for a phase the project does not declare (the detail
 * lists its phases). Moving to the current phase changes nothing.
 */
enum coffer_err coffer_store_project_phase(struct coffer_store *s, const char *org,
                                           const char *project, const char *phase,
                                           const char *changed_by, struct coffer_arena *a,
                                           struct coffer_store_phase_result *out) COFFER_MUST_USE;

/* ---- What an access decision reads ------------------------------------------- */

/* The credential an access refers to, when it exists. */
struct coffer_store_access {
    bool found;
    struct coffer_uuid credential_id;
    struct coffer_uuid org_id;
    struct coffer_uuid project_id;
    uint32_t current_version;
};

/*
 * One query loads, for the credential name in project of org (org is the
 * principal's org: the lookup never leaves it), everything the decision needs
 * and fills the credential, project and time fields of *in (principal and
 * purpose are the caller's): the credential's tier, issue time, expiry and
 * revocation, the org's max TTL for the tier, the rule's purpose patterns,
 * the project's phase and members, and every grant. now_us is the
 * database's clock, the same clock that wrote expiry and phase changes.
 * A missing org, project or credential gives found == false and COFFER_OK.
 * Arrays are allocated in a.
 */
enum coffer_err coffer_store_access_load(struct coffer_store *s, const char *org,
                                         const char *project, const char *name,
                                         struct coffer_arena *a, struct coffer_authz_input *in,
                                         struct coffer_store_access *out) COFFER_MUST_USE;

/*
 * Sets a credential's own expiry (COFFER_AUTHZ_NO_EXPIRY for none) and the
 * phase whose end expires it (NULL for none). COFFER_E_NOT_FOUND if no such
 * credential in org_id.
 */
enum coffer_err coffer_store_cred_set_lifetime(struct coffer_store *s,
                                               const struct coffer_uuid *org_id,
                                               const struct coffer_uuid *credential_id,
                                               int64_t expires_us,
                                               const char *expire_on_phase_end) COFFER_MUST_USE;

/*
 * Revokes a credential from now on with reason (1..1024 bytes of text).
 * COFFER_E_NOT_FOUND if no such credential in org_id; COFFER_E_STATE if it is
 * already revoked.
 */
enum coffer_err coffer_store_cred_revoke(struct coffer_store *s, const struct coffer_uuid *org_id,
                                         const struct coffer_uuid *credential_id,
                                         const char *reason) COFFER_MUST_USE;

/* ---- Audit events ------------------------------------------------------------ */

struct coffer_audit_event;

/*
 * Inserts one audit event, inside the caller's transaction or in its own.
 * Every text field is checked (length, UTF-8, no control characters) first.
 * *id receives the event's id. An error means the event was not written and
 * the caller's operation must fail.
 */
enum coffer_err coffer_store_audit_insert(struct coffer_store *s,
                                          const struct coffer_audit_event *e,
                                          int64_t *id) COFFER_MUST_USE;

/* Whether a transaction begun with coffer_store_begin is open. */
bool coffer_store_in_tx(const struct coffer_store *s);

/* ---- What an admin gives a credential when storing it ------------------------ */

/*
 * Sets a credential's description (1..1024 bytes of text; NULL clears it).
 * COFFER_E_INVALID for bad text, COFFER_E_NOT_FOUND if no such credential in
 * org_id.
 */
enum coffer_err coffer_store_cred_set_description(struct coffer_store *s,
                                                  const struct coffer_uuid *org_id,
                                                  const struct coffer_uuid *credential_id,
                                                  const char *description) COFFER_MUST_USE;

/*
 * Inside a transaction: adds n (0..COFFER_POLICY_GRANTS_MAX) grants of
 * source 'api' to the credential name of project_id in org_id. A grant of
 * an agent type and instance that the API already granted replaces it (its
 * phases may change); policy grants are never touched. Names are checked
 * (COFFER_E_INVALID, also for one agent type and instance given twice);
 * whether the types are members and the phases declared is the caller's
 * check against the policy in force. COFFER_E_NOT_FOUND for a project not
 * in org_id or an agent type the org does not declare.
 */
enum coffer_err coffer_store_grants_add(struct coffer_store *s, const struct coffer_uuid *org_id,
                                        const struct coffer_uuid *project_id,
                                        const char *credential,
                                        const struct coffer_policy_grant *grants,
                                        size_t n) COFFER_MUST_USE;

#endif

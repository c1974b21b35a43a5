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

/*
 * Checks that the database answers (reconnecting first if the connection
 * was lost): COFFER_OK or COFFER_E_DB_UNAVAILABLE. For readiness checks.
 */
enum coffer_err coffer_store_ping(struct coffer_store *s) COFFER_MUST_USE;

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
    uint32_t org_key_mk_version;         /* master key version wrapping (org_id, org_key_version) */
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

/* One write of coffer_store_cred_next_version_many: what to write, then what it gave. */
struct coffer_store_cred_next {
    const struct coffer_uuid *org_id;
    const struct coffer_uuid *project_id;
    const char *name;
    const char *type;
    const char *tier;
    int64_t expires_us; /* the credential's own expiry, COFFER_AUTHZ_NO_EXPIRY for none */
    const char *expire_on_phase_end; /* the phase whose end expires it, or NULL */
    const char *description;         /* NULL leaves the stored one as it is */
    struct coffer_store_cred out;    /* as coffer_store_cred_next_version fills it */
    int64_t issued_us;               /* the credential's updated_at: when this version was made */
    bool revoked;                    /* the credential is revoked: the write must not stand */
    bool project_removed;            /* its project left the policy: nor then */
    char phase[COFFER_NAME_MAX + 1]; /* the project's current phase, "" if it has none */
};

/*
 * coffer_store_cred_next_version for n (1..COFFER_STORE_BATCH_MAX) writes in
 * one statement, inside a transaction, setting each credential's lifetime
 * and description as coffer_store_cred_set_lifetime and
 * coffer_store_cred_set_description would. No two writes may name the same
 * (project, name) (COFFER_E_INVALID). COFFER_E_NOT_FOUND, naming the
 * credential, if a project is not its org's; nothing is filled then.
 */
enum coffer_err coffer_store_cred_next_version_many(struct coffer_store *s,
                                                    struct coffer_store_cred_next *w,
                                                    size_t n) COFFER_MUST_USE;

/*
 * The database's time of the open transaction (now()), in microseconds
 * since the epoch: the updated_at of every credential it writes.
 */
enum coffer_err coffer_store_tx_now(struct coffer_store *s, int64_t *now_us) COFFER_MUST_USE;

/* coffer_store_cred_version_insert for n (1..COFFER_STORE_BATCH_MAX) rows in one statement. */
enum coffer_err coffer_store_cred_version_insert_many(struct coffer_store *s,
                                                      const struct coffer_store_cred_version *v,
                                                      size_t n) COFFER_MUST_USE;

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
    size_t n_keys; /* keys of the current version */
    /* Keys of the current version whose own expiry has passed (now >= it), in stored order;
       in the arena. */
    const char *const *expired_keys;
    size_t n_expired_keys;
    /* The credential rule says reveal: false (also copied into the decision's input). */
    bool secretless_only;
    /* The rule's usage spec as canonical JSON (coffer_policy_usage_from_json reads it), NUL
       terminated, in the arena; NULL when the rule has none. */
    const char *usage;
    /* The current version's OAuth2 provider as canonical JSON (the refresh of ops parses it),
       in the arena; NULL when Coffer does not refresh it. */
    const char *oauth2_provider;
    /* The current version's access_token's own expiry (microseconds since the epoch); 0 when
       it has none or the version holds no access_token. */
    int64_t access_token_expires_us;
};

/*
 * One query loads, for the credential name in project of org (org is the
 * principal's org: the lookup never leaves it), everything the decision needs
 * and fills the credential, project and time fields of *in (principal and
 * purpose are the caller's): the credential's tier, issue time, expiry and
 * revocation, the org's max TTL for the tier, the rule's purpose patterns,
 * the project's phase and members, every grant, and the standing approvals
 * that are neither revoked nor ended (at most COFFER_APPROVALS_MAX). now_us
 * is the database's clock, the same clock that wrote expiry and phase changes.
 * The same query reads which keys of the current version have passed their
 * own expiry (out->expired_keys) and sets in->keys_expired when all have,
 * and the rule's usage spec and reveal setting (out->usage,
 * out->secretless_only, in->secretless_only; in->brokered is the caller's),
 * and the version's OAuth2 provider and access_token expiry.
 * A missing org, project or credential gives found == false and COFFER_OK.
 * Arrays are allocated in a.
 */
enum coffer_err coffer_store_access_load(struct coffer_store *s, const char *org,
                                         const char *project, const char *name,
                                         struct coffer_arena *a, struct coffer_authz_input *in,
                                         struct coffer_store_access *out) COFFER_MUST_USE;

/* One lookup of coffer_store_access_load_many: its names, and where its answer goes. */
struct coffer_store_access_req {
    const char *org;
    const char *project;
    const char *name;
    struct coffer_authz_input *in;
    struct coffer_store_access *out;
};

/*
 * n (1..COFFER_STORE_BATCH_MAX) lookups of coffer_store_access_load in one
 * query, each filling its own in and out as that function does, all by the
 * same clock. An error leaves every lookup not found.
 */
enum coffer_err coffer_store_access_load_many(struct coffer_store *s,
                                              struct coffer_store_access_req *reqs, size_t n,
                                              struct coffer_arena *a) COFFER_MUST_USE;

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

/*
 * Inserts n (1..COFFER_STORE_BATCH_MAX) events with one statement, in the
 * order given, each checked as coffer_store_audit_insert checks it (nothing
 * is sent if one fails). Inside the caller's transaction they commit with
 * it; outside one the statement is its own transaction: all n are durable
 * when this returns COFFER_OK, or none is written.
 */
enum coffer_err coffer_store_audit_insert_many(struct coffer_store *s,
                                               const struct coffer_audit_event *e,
                                               size_t n) COFFER_MUST_USE;

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

/* ---- Per-key expiry (key_expiry.c) ----------------------------------------------- */

/*
 * Inside a transaction: gives n (1..COFFER_KEYS_MAX) keys of version
 * version of the credential their own expiry: names[i] expires at
 * expires_us[i] (microseconds since the epoch); the other keys get none.
 * Only a version whose keys have no expiry yet is changed, so a stored
 * expiry is never moved. COFFER_E_INVALID for a name that is not a key
 * name, one given twice, or a time out of range; COFFER_E_NOT_FOUND when no
 * such version in org_id has every name among its keys and no expiry yet.
 * Whether each time falls within the credential's lifetime is the caller's
 * check.
 */
enum coffer_err coffer_store_cred_set_key_expiry(struct coffer_store *s,
                                                 const struct coffer_uuid *org_id,
                                                 const struct coffer_uuid *credential_id,
                                                 uint32_t version, const char *const *names,
                                                 const int64_t *expires_us,
                                                 size_t n) COFFER_MUST_USE;

/* ---- OAuth2 refresh (oauth2.c) --------------------------------------------------- */

/* Bytes of a provider's canonical JSON (sql/013_oauth2.sql). */
#define COFFER_OAUTH2_PROVIDER_JSON_MAX 4096

/*
 * Outside a transaction: tries to take the refresh lock of a credential, a
 * session-level lock shared by every server on the database, held until
 * coffer_store_refresh_unlock or the connection's end. *got says whether it
 * was taken (false: another refresh of it runs). COFFER_E_STATE inside a
 * transaction; database errors.
 */
enum coffer_err coffer_store_refresh_lock_try(struct coffer_store *s,
                                              const struct coffer_uuid *credential_id,
                                              bool *got) COFFER_MUST_USE;

/* Releases the lock taken above. COFFER_E_STATE if this connection did not hold it. */
enum coffer_err
coffer_store_refresh_unlock(struct coffer_store *s,
                            const struct coffer_uuid *credential_id) COFFER_MUST_USE;

/*
 * Inside a transaction: records the OAuth2 provider (canonical JSON, checked
 * by the caller) of version version, which must have none yet.
 * COFFER_E_NOT_FOUND when no such version without a provider is in org_id.
 */
enum coffer_err coffer_store_cred_set_oauth2(struct coffer_store *s,
                                             const struct coffer_uuid *org_id,
                                             const struct coffer_uuid *credential_id,
                                             uint32_t version,
                                             const char *provider_json) COFFER_MUST_USE;

/* ---- Credential metadata (never values) ---------------------------------------- */

/* What the metadata routes show of one credential. Strings live in the caller's arena. */
struct coffer_store_meta {
    const char *name;
    const char *type;
    const char *tier;
    uint32_t version; /* the current version */
    int64_t created_us;
    int64_t updated_us; /* when the current version was stored */
    int64_t expires_us; /* the credential's own expiry, or COFFER_AUTHZ_NO_EXPIRY */
    bool revoked;
    const char *description; /* the credential's, else its credential rule's; NULL if none */
    const char *const *keys; /* names of the current version's keys, in stored order */
    size_t n_keys;
    /* Aligned with keys: each key's own expiry, COFFER_AUTHZ_NO_EXPIRY for none; NULL when no
       key of the version has one. */
    const int64_t *key_expires_us;
    bool granted; /* a grant names the agent asked about (false when none was named) */
};

struct coffer_store_meta_list {
    bool project_found;              /* the org and the project exist (and are in use) */
    bool member;                     /* the agent type asked about is a member of the project */
    const char *phase;               /* the project's current phase, NULL if it has none */
    struct coffer_store_meta *items; /* sorted by name (bytewise) */
    size_t n;
};

/*
 * One query loads the metadata of every credential of project in org
 * (name NULL) or of the one named name. org is the principal's org: the
 * lookup never leaves it. With agent_type given, member says whether the
 * type is a member of the project, and each item's granted whether a grant
 * of the credential names that type and either no instance or instance,
 * whatever its phases. Nothing here reads a value or a blob.
 * A missing org or project gives project_found false and COFFER_OK; a name
 * that cannot exist finds nothing. COFFER_E_INTEGRITY for a row that fails
 * validation (the detail names the column). Allocates in a.
 */
enum coffer_err coffer_store_meta_load(struct coffer_store *s, const char *org, const char *project,
                                       const char *name, const char *agent_type,
                                       const char *instance, struct coffer_arena *a,
                                       struct coffer_store_meta_list *out) COFFER_MUST_USE;

/* ---- Credential requests and standing approvals (requests.c) ------------------ */

#define COFFER_REQUEST_PURPOSE_MAX 512   /* bytes of a request's purpose */
#define COFFER_REQUEST_TEXT_MAX 1024     /* bytes of a description or a denial reason */
#define COFFER_REQUESTS_PENDING_MAX 1000 /* pending requests per project */
#define COFFER_APPROVALS_MAX 256         /* approvals in force per credential */
#define COFFER_DECIDER_MAX 256           /* bytes of decided_by and created_by */

enum coffer_request_state {
    COFFER_REQUEST_PENDING = 0,
    COFFER_REQUEST_FULFILLED = 1,
    COFFER_REQUEST_DENIED = 2,
};

/* "pending", "fulfilled", "denied"; "unknown" for a value out of range. */
const char *coffer_request_state_str(enum coffer_request_state s);

/* Whether s is an urgency: "low", "normal" or "high". */
bool coffer_request_urgency_ok(const char *s);

/* A request as stored. Every pointer lives in the arena the reader was given. */
struct coffer_store_request {
    struct coffer_uuid id;
    struct coffer_uuid org_id;
    struct coffer_uuid project_id;
    const char *name;
    const char *type;
    const char *tier;
    const char *purpose;
    const char *urgency;
    const char *description;                  /* NULL if none */
    const struct coffer_policy_grant *grants; /* the suggested grants */
    size_t n_grants;
    const char *requester_trust_domain; /* NULL: the agent had no SPIFFE ID (a bearer token) */
    const char *requester_agent_type;
    const char *requester_instance;
    enum coffer_request_state state;
    int64_t created_us;
    int64_t decided_us;          /* 0 while pending */
    const char *decided_by;      /* NULL while pending */
    const char *reason;          /* a denial's reason, else NULL */
    uint32_t credential_version; /* a fulfilment's version, else 0 */
};

/* What an agent files (checked again here: names, tier, urgency, text, grants). */
struct coffer_store_request_new {
    const struct coffer_uuid *org_id;
    const struct coffer_uuid *project_id;
    const char *name;
    const char *type;
    const char *tier;
    const char *purpose; /* 1..COFFER_REQUEST_PURPOSE_MAX bytes of text */
    const char *urgency;
    const char *description; /* NULL or 1..COFFER_REQUEST_TEXT_MAX bytes of text */
    const struct coffer_policy_grant *grants;
    size_t n_grants;          /* 0..COFFER_POLICY_GRANTS_MAX */
    const char *trust_domain; /* NULL or "" for an agent without a SPIFFE ID */
    const char *agent_type;
    const char *instance;
};

/*
 * Files a pending request, inside the caller's transaction or in its own,
 * and reads it back into *out (allocated in a). COFFER_E_INVALID for a
 * field that breaks its rule (the detail names it); COFFER_E_LIMIT when the
 * project already holds COFFER_REQUESTS_PENDING_MAX pending requests.
 */
enum coffer_err coffer_store_request_insert(struct coffer_store *s,
                                            const struct coffer_store_request_new *in,
                                            struct coffer_arena *a,
                                            struct coffer_store_request *out) COFFER_MUST_USE;

/*
 * The pending requests of a project, oldest first, at most
 * COFFER_REQUESTS_PENDING_MAX, into *out (an array in a) and *n.
 */
enum coffer_err
coffer_store_request_pending(struct coffer_store *s, const struct coffer_uuid *org_id,
                             const struct coffer_uuid *project_id, struct coffer_arena *a,
                             struct coffer_store_request **out, size_t *n) COFFER_MUST_USE;

/*
 * One request of the project, by id. With lock (inside a transaction only)
 * the row stays locked until the transaction ends, so that one decision
 * waits for another. COFFER_E_NOT_FOUND if there is none in (org, project).
 */
enum coffer_err coffer_store_request_get(struct coffer_store *s, const struct coffer_uuid *org_id,
                                         const struct coffer_uuid *project_id,
                                         const struct coffer_uuid *id, bool lock,
                                         struct coffer_arena *a,
                                         struct coffer_store_request *out) COFFER_MUST_USE;

/*
 * Records the decision of a pending request: state FULFILLED with the
 * version stored under the request's name (credential_version >= 1, reason
 * NULL), or DENIED with reason (1..COFFER_REQUEST_TEXT_MAX bytes of text).
 * decided_by is who decided (1..COFFER_DECIDER_MAX bytes of text). Reads the
 * row back into *out. COFFER_E_NOT_FOUND if no such request, COFFER_E_STATE
 * if it is no longer pending.
 */
enum coffer_err
coffer_store_request_decide(struct coffer_store *s, const struct coffer_uuid *org_id,
                            const struct coffer_uuid *project_id, const struct coffer_uuid *id,
                            enum coffer_request_state state, const char *decided_by,
                            const char *reason, uint32_t credential_version, struct coffer_arena *a,
                            struct coffer_store_request *out) COFFER_MUST_USE;

/* A standing approval as stored. */
struct coffer_store_approval {
    struct coffer_uuid id;
    char agent_type[COFFER_NAME_MAX + 1];
    char instance[COFFER_NAME_MAX + 1];
    int64_t from_us;
    int64_t until_us;
};

/*
 * Inside a transaction: gives agent_type/instance a standing approval of
 * the credential for [from_us, until_us), locking the credential's row so
 * that the count of approvals in force is exact. The window must be
 * non-empty and at most COFFER_TTL_HARD_MAX_CRITICAL long (COFFER_E_INVALID;
 * the caller checks it against its clock first). COFFER_E_NOT_FOUND if the
 * credential is not in (org, project); COFFER_E_LIMIT when it already has
 * COFFER_APPROVALS_MAX approvals in force. *out receives the row.
 */
enum coffer_err coffer_store_approval_insert(
    struct coffer_store *s, const struct coffer_uuid *org_id, const struct coffer_uuid *project_id,
    const struct coffer_uuid *credential_id, const char *agent_type, const char *instance,
    int64_t from_us, int64_t until_us, const char *created_by,
    struct coffer_store_approval *out) COFFER_MUST_USE;

/*
 * Revokes approval id of the credential from now on. COFFER_E_NOT_FOUND if
 * the credential has no such approval; COFFER_E_STATE if it is already
 * revoked. *out receives the row as it was.
 */
enum coffer_err coffer_store_approval_revoke(struct coffer_store *s,
                                             const struct coffer_uuid *org_id,
                                             const struct coffer_uuid *credential_id,
                                             const struct coffer_uuid *id,
                                             struct coffer_store_approval *out) COFFER_MUST_USE;

/* ---- Bearer tokens (digests only, never a token) ---------------------------------- */

#define COFFER_STORE_TOKEN_DIGEST_LEN 32            /* HMAC-SHA256 */
#define COFFER_STORE_TOKEN_TTL_MAX (30 * 24 * 3600) /* seconds: 30 days */

/* A token's row as read back; every field checked. Times in microseconds since the epoch. */
struct coffer_store_token {
    struct coffer_uuid id;
    struct coffer_uuid org_id;
    char org[COFFER_NAME_MAX + 1];        /* the org's name */
    bool admin;                           /* the principal is an admin (else an agent) */
    char agent_type[COFFER_NAME_MAX + 1]; /* agents; "" for admins */
    char instance[COFFER_NAME_MAX + 1];   /* agents; "" for admins */
    char admin_name[COFFER_NAME_MAX + 1]; /* admins; "" for agents */
    int64_t created_us;
    int64_t expires_us;
    bool revoked;
    int64_t revoked_us; /* 0 unless revoked */
    int64_t now_us;     /* the database's clock when the row was read */
};

/* What an admin issues: the digest of a new token and whom it stands for. */
struct coffer_store_token_new {
    const struct coffer_uuid *org_id;
    const unsigned char *digest; /* COFFER_STORE_TOKEN_DIGEST_LEN bytes */
    const char *mac_key;         /* CKA_LABEL of the key that made the digest */
    bool admin;
    const char *agent_type;  /* agents */
    const char *instance;    /* agents */
    const char *admin_name;  /* admins */
    const char *description; /* NULL, or 1..1024 bytes of text */
    const char *created_by;  /* 1..256 bytes of text */
    int64_t ttl_s;           /* 1..COFFER_STORE_TOKEN_TTL_MAX, counted from the database's now */
};

/*
 * Inserts a token row (inside the caller's transaction or in its own) and
 * reads it back into *out. Every field is checked first (COFFER_E_INVALID
 * naming it); COFFER_E_EXISTS if the digest is taken; COFFER_E_NOT_FOUND
 * if org_id names no org.
 */
enum coffer_err coffer_store_token_insert(struct coffer_store *s,
                                          const struct coffer_store_token_new *t,
                                          struct coffer_store_token *out) COFFER_MUST_USE;

/*
 * n (1..COFFER_STORE_BATCH_MAX) token lookups in one query: found[i] tells
 * whether a token's digest under mac_key is digests[i], its row (expired
 * and revoked ones included: the caller decides, with out[i].now_us) read
 * into out[i]. An error leaves nothing found.
 */
enum coffer_err coffer_store_token_find_many(
    struct coffer_store *s, const unsigned char (*digests)[COFFER_STORE_TOKEN_DIGEST_LEN], size_t n,
    const char *mac_key, struct coffer_store_token *out, bool *found) COFFER_MUST_USE;

/*
 * Revokes token id of org_id from now on with reason (1..1024 bytes of
 * text), inside the caller's transaction or in its own, and reads the row
 * back. COFFER_E_NOT_FOUND if org_id has no such token; COFFER_E_STATE if
 * it is revoked already (a revocation is final).
 */
enum coffer_err coffer_store_token_revoke(struct coffer_store *s, const struct coffer_uuid *org_id,
                                          const struct coffer_uuid *id, const char *reason,
                                          struct coffer_store_token *out) COFFER_MUST_USE;

/* ---- Audit signing keys (audit_keys.c) ------------------------------------------- */

#define COFFER_STORE_AUDIT_KEY_PREFIX "coffer-audit-v" /* label = prefix || version */
#define COFFER_STORE_SPKI_MAX 128 /* SubjectPublicKeyInfo DER; a P-256 key's is 91 bytes */

/* A row of coffer.audit_signing_keys: a public key only, never anything secret. */
struct coffer_store_audit_key {
    uint32_t version;
    char label[65]; /* "coffer-audit-v<version>" */
    unsigned char public_key[COFFER_STORE_SPKI_MAX];
    size_t public_key_len;
    enum coffer_key_state state; /* COFFER_KEY_CURRENT or COFFER_KEY_RETIRED */
};

/*
 * Records signing key version with its label (which must be
 * "coffer-audit-v<version>") and the SubjectPublicKeyInfo DER of its public
 * key (1 to COFFER_STORE_SPKI_MAX bytes) as the current key; the key that was
 * current is retired in the same transaction (the caller's if one is open,
 * else its own). COFFER_E_INVALID for a bad argument, COFFER_E_EXISTS if the
 * version or the label is recorded already.
 */
enum coffer_err coffer_store_audit_key_insert(struct coffer_store *s, uint32_t version,
                                              const char *label, const unsigned char *spki,
                                              size_t spki_len) COFFER_MUST_USE;

/* Version of the current signing key. COFFER_E_NOT_FOUND if there is none. */
enum coffer_err coffer_store_audit_key_current(struct coffer_store *s,
                                               uint32_t *version) COFFER_MUST_USE;

/*
 * Every signing key, by version ascending, each row checked (label names its
 * version, key length, state). *out is allocated (NULL when *n is 0); free it
 * with coffer_free.
 */
enum coffer_err coffer_store_audit_key_list(struct coffer_store *s,
                                            struct coffer_store_audit_key **out,
                                            size_t *n) COFFER_MUST_USE;

#endif

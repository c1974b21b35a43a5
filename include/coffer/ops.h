/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Operations: what the API does for a request, independent of HTTP. Each
 * runs in one database transaction that also writes its audit event, and
 * reads nothing it has not just loaded (no cache of grants, phases, expiry
 * or revocation).
 *
 * A denial is not an error: the function returns COFFER_OK with the reason
 * in the result, and the event recorded. Errors (database or token trouble,
 * malformed input) return their code; an operation whose audit event cannot
 * be written fails and has no effect.
 */
#ifndef COFFER_OPS_H
#define COFFER_OPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "coffer/audit.h"
#include "coffer/authz.h"
#include "coffer/err.h"
#include "coffer/keys.h"
#include "coffer/policy.h"
#include "coffer/spiffe.h"
#include "coffer/store.h"

/* What every operation runs with: one worker's connection and token context. */
struct coffer_ops {
    struct coffer_store *st;
    struct coffer_keys *k;
};

/* Who asks, and how the request is named in the audit log. */
struct coffer_op_meta {
    const struct coffer_principal *who;
    const char *request_id;
    const char *client_addr;
};

/* ---- OAuth2 refresh ---- */

/* Longest error code of a failed refresh (the provider's, RFC 6749 section 5.2, or Coffer's). */
#define COFFER_OP_REFRESH_ERROR_MAX 48

/*
 * How a refresh that an access or a brokered call set off ended, when it
 * failed and the access token had expired: the access or use is then
 * refused with refresh_failed. error is the provider's error code
 * (invalid_grant, ...) or one of Coffer's: unreachable, invalid_response,
 * busy, no_refresh_token, client_secret_unavailable, provider_invalid.
 */
struct coffer_op_refresh {
    bool failed;
    char error[COFFER_OP_REFRESH_ERROR_MAX + 1];
    char message[256]; /* what happened, for the agent; never a value */
};

/*
 * Refreshes the access token of an oauth2 credential of the agent's org
 * that carries a provider, if it is still expired or within the refresh
 * margin once the credential's refresh lock is held (another server may
 * have just refreshed it): the refresh-token grant is sent to the
 * provider's token URL (client authentication basic or post, the client
 * secret read from its own credential), and the answer is stored as the
 * next version (the new access token and its expiry, the new refresh token
 * or the old one), with the provider. Outside a transaction. Events
 * (action refresh): one committed before the refresh token leaves Coffer,
 * one with the outcome. A refusal of the provider or a failure to reach it
 * is not an error: COFFER_OK with out->failed set, and the current version
 * stays. Errors: database and token failures.
 */
enum coffer_err coffer_op_oauth2_refresh(struct coffer_ops *o, const struct coffer_op_meta *m,
                                         const char *project, const char *name,
                                         struct coffer_op_refresh *out) COFFER_MUST_USE;

/* ---- access (agents) ---- */

struct coffer_op_access {
    const char *org;
    const char *project;
    const char *name;
    const char *purpose; /* the bytes the agent sent, NULL if none */
    size_t purpose_len;
    /* coffer_op_access_batch only: decide without refreshing (refresh_due is never set) */
    bool no_refresh;
    /* Results: */
    /*
     * Batch: an allowed access of an oauth2 credential whose access token
     * needs a refresh first; nothing was unsealed or written for it: the
     * caller answers it with coffer_op_access, which refreshes and decides.
     */
    bool refresh_due;
    struct coffer_op_refresh refresh; /* coffer_op_access: the refresh that failed, if one did */
    struct coffer_authz_decision decision;
    uint32_t version;           /* the version read, on allow */
    struct coffer_keyset *keys; /* on allow: the values, owned by the caller */
    /*
     * On allow: the keys left out of keys because their own expiry has
     * passed, their names joined by commas in stored order (a key name holds
     * no comma); NULL when none was. Owned by the caller: coffer_free.
     */
    char *expired_keys;
};

/*
 * Decides an agent's access (load, coffer_authz_decide), unseals the values
 * on allow (an integrity or token failure turns the allow into a deny), and
 * writes the event, all in one transaction. A principal that is not an agent
 * is denied (no_grant). COFFER_OK with a->decision set; a->keys only when
 * allowed. Keys past their own expiry are left out of a->keys and named in
 * a->expired_keys and in the event's detail; when every key has expired the
 * access is denied (expired). An oauth2 credential with a provider is
 * refreshed first when its access token is expired or within the margin
 * (coffer_op_oauth2_refresh); its refresh_token is never handed out. If the
 * refresh fails while the access token is still valid, the current one is
 * answered; if it fails after its expiry, the access is refused and
 * audited with the reason refresh_failed (a->refresh.failed).
 */
enum coffer_err coffer_op_access(struct coffer_ops *o, const struct coffer_op_meta *m,
                                 struct coffer_op_access *a) COFFER_MUST_USE;

/* The most accesses coffer_op_access_batch takes at once. */
#define COFFER_OP_BATCH_MAX 64

/*
 * Several accesses in three round trips: one query loads every decision,
 * one fetches the stored rows of every allowed one
 * (coffer_keys_cred_read_many), and one statement inserts every event, so
 * that they share one commit (one flush of the log). Each is decided,
 * unsealed and audited as coffer_op_access does (which is a batch of one).
 * m[i] and a[i] go together; n is at most COFFER_OP_BATCH_MAX.
 *
 * Inside a transaction the caller has begun, the events are inserted but
 * not committed: the caller must commit before it hands any a[i].keys to
 * anyone, and free them unused if the commit fails. Outside one, the
 * statement that inserts the events commits them: on COFFER_OK every event
 * is durable. On an error every a[i].keys is freed (and an open
 * transaction must be rolled back).
 */
enum coffer_err coffer_op_access_batch(struct coffer_ops *o, const struct coffer_op_meta *m,
                                       struct coffer_op_access *a, size_t n) COFFER_MUST_USE;

/* ---- put: create a credential or add a version (admins) ---- */

/* One key given an expiry of its own (an access token inside a longer-lived credential). */
struct coffer_op_key_expiry {
    const char *name;   /* a key of the version stored */
    int64_t expires_us; /* microseconds since the epoch */
};

/* The credential types and the key names each requires (docs/admin.md). */
bool coffer_op_type_known(const char *type);

struct coffer_op_put {
    const char *org;
    const char *project;
    const char *name;
    const char *type; /* api_key, oauth2, basic_auth, bearer_token, certificate,
                         connection_string or custom */
    const char *tier; /* low, medium, high, critical */
    const struct coffer_keyset *keys;
    int64_t ttl_s;                   /* 0: none given */
    int64_t expires_at_us;           /* 0: none given; at most one of ttl_s and expires_at_us */
    const char *description;         /* NULL if none */
    const char *expire_on_phase_end; /* a phase of the project, or NULL */
    const struct coffer_policy_grant *grants; /* API grants to add (type, instance, phases) */
    size_t n_grants;
    /* Keys with an expiry of their own: each a key of keys, at most once, in the future and
       not after the credential's own expiry. */
    const struct coffer_op_key_expiry *key_expiry;
    size_t n_key_expiry; /* 0..COFFER_KEYS_MAX */
    /*
     * For an oauth2 credential that Coffer refreshes: its provider as JSON
     * text, {"token_url", "client_id", "client_secret": {"credential",
     * "key"}, "client_auth": "basic"|"post"}; NULL for none. It needs a
     * refresh_token key and an expiry of access_token's own.
     */
    const char *oauth2_provider;
    size_t oauth2_provider_len;
    /* Results: */
    uint32_t version;
    int64_t expires_us; /* the expiry set, or COFFER_AUTHZ_NO_EXPIRY */
};

/*
 * Stores a new version under the admin's own org (another org is
 * COFFER_E_NOT_FOUND), checking the type's required keys, the lifetime
 * against the org's tier limits (default TTL when none is given; never for
 * high and critical only up to the hard maximum), the grants' agent types
 * (members of the project) and phases, and the keys' own expiry times, and
 * writes the version, its lifetime, the keys' expiry, the grants and the
 * event in one transaction. COFFER_E_INVALID with a detail for any rule
 * broken; nothing is written then.
 */
enum coffer_err coffer_op_put(struct coffer_ops *o, const struct coffer_op_meta *m,
                              struct coffer_op_put *p) COFFER_MUST_USE;

/*
 * Several puts in one transaction with one commit, m[i] and p[i] together,
 * n at most COFFER_OP_BATCH_MAX. The batch takes the puts that need nothing
 * of their own: an admin of the org storing a new version without grants,
 * keys with their own expiry or an oauth2 provider, no credential twice.
 * Each taken put is checked and written as coffer_op_put would, with its
 * own event, and on COFFER_OK taken[i] marks it durable, its version and
 * expiry set. A put not taken (taken[i] false) has had nothing written:
 * the caller runs it with coffer_op_put, which answers it exactly. If
 * anything fails before the commit, nothing is written and no put is taken.
 * An error is the commit's, and the taken puts share it; or, with nothing
 * taken, it names an argument out of range (taken NULL, n too large).
 */
enum coffer_err coffer_op_put_many(struct coffer_ops *o, const struct coffer_op_meta *m,
                                   struct coffer_op_put *p, size_t n, bool *taken) COFFER_MUST_USE;

/* ---- revoke (admins) ---- */

struct coffer_op_revoke {
    const char *org;
    const char *project;
    const char *name;
    const char *reason; /* 1..1024 bytes of text */
};

/* Revokes at once; COFFER_E_NOT_FOUND, COFFER_E_STATE if already revoked. Audited. */
enum coffer_err coffer_op_revoke(struct coffer_ops *o, const struct coffer_op_meta *m,
                                 const struct coffer_op_revoke *r) COFFER_MUST_USE;

/* ---- phase (admins) ---- */

/*
 * Moves org/project to phase (coffer_store_project_phase) and records the
 * event in the same transaction. Results in *out, allocated in a.
 */
enum coffer_err coffer_op_phase(struct coffer_ops *o, const struct coffer_op_meta *m,
                                const char *org, const char *project, const char *phase,
                                struct coffer_arena *a,
                                struct coffer_store_phase_result *out) COFFER_MUST_USE;

/* ---- metadata (admins of the org; agents with a grant) ---- */

struct coffer_op_metadata {
    const char *org;
    const char *project;
    const char *name; /* NULL: every credential of the project */
    /* Results: */
    bool allowed;                       /* false: an agent is refused (permission_denied) */
    struct coffer_store_meta_list list; /* when allowed: what the principal may see */
};

/*
 * Reads credential metadata, never values, and writes one "metadata" event
 * in the same transaction. An admin of org sees every credential of the
 * project; an admin of another org, or asking for a project or credential
 * that does not exist, gets COFFER_E_NOT_FOUND (the refusal audited). An
 * agent sees the credentials it holds a grant for by type and instance,
 * whatever the phase: a list leaves the others out (and is refused when
 * its type is not a member of the project); a credential it holds no grant
 * for, one that does not exist, or another org's gives COFFER_OK with
 * q->allowed false, the true reason in the event. Allocates in a.
 */
enum coffer_err coffer_op_metadata(struct coffer_ops *o, const struct coffer_op_meta *m,
                                   struct coffer_arena *a,
                                   struct coffer_op_metadata *q) COFFER_MUST_USE;

/* ---- bearer tokens (admins issue and revoke; any request may present one) ---- */

/*
 * A token is "cft_" and 43 base64url characters (RFC 4648 section 5, no
 * padding) encoding 32 random bytes. It is shown once, when issued; the
 * database keeps only its HMAC-SHA256 under the token MAC key (keys.h).
 */
#define COFFER_TOKEN_PREFIX "cft_"
#define COFFER_TOKEN_PREFIX_LEN 4
#define COFFER_TOKEN_RANDOM_LEN 32
#define COFFER_TOKEN_BODY_LEN 43
#define COFFER_TOKEN_LEN (COFFER_TOKEN_PREFIX_LEN + COFFER_TOKEN_BODY_LEN)
#define COFFER_TOKEN_TTL_DEFAULT (24 * 3600)            /* seconds */
#define COFFER_TOKEN_TTL_MAX COFFER_STORE_TOKEN_TTL_MAX /* 30 days */
/* "agent/<type>/<instance>" or "admin/<name>": the longest a principal's text can be. */
#define COFFER_TOKEN_PRINCIPAL_MAX (6 + 63 + 1 + 63)

/*
 * Whether the len bytes at s are a well-formed token: the prefix, then
 * exactly 43 characters of [A-Za-z0-9_-] whose last one carries no bits
 * beyond the 256 (the only encoding of 32 bytes). Never reads past len.
 */
bool coffer_token_format_ok(const char *s, size_t len);

/*
 * The token of an Authorization header value of len bytes: exactly
 * "Bearer", one space and a well-formed token, nothing before or after.
 * *token points into value. false for anything else (another scheme or
 * case, more spaces, a token of the wrong format).
 */
bool coffer_token_from_header(const char *value, size_t len, const char **token);

/*
 * Parses "agent/<type>/<instance>" or "admin/<name>" (len bytes; names
 * ^[a-z0-9][a-z0-9_-]{0,62}$) into *out as a principal of org, with an
 * empty trust domain (it will be authenticated by a token, not a SPIFFE
 * ID). COFFER_E_INVALID saying what is wrong, without echoing the input.
 */
enum coffer_err coffer_token_principal_parse(const char *s, size_t len, const char *org,
                                             struct coffer_principal *out) COFFER_MUST_USE;

/* Writes "agent/<type>/<instance>" or "admin/<name>" into out (cap bytes, cut if short). */
void coffer_token_principal_format(const struct coffer_principal *p, char *out, size_t cap);

struct coffer_op_token_create {
    const char *org;
    const char *principal;   /* "agent/<type>/<instance>" or "admin/<name>", of org */
    int64_t ttl_s;           /* 0: COFFER_TOKEN_TTL_DEFAULT; else 1..COFFER_TOKEN_TTL_MAX */
    const char *description; /* NULL, or 1..1024 bytes of text */
    /* Results: */
    struct coffer_uuid id;
    struct coffer_secret *token; /* the token, owned by the caller: its only copy */
    int64_t expires_us;
};

/*
 * Issues a token: an admin of org only (anyone else gets COFFER_E_NOT_FOUND,
 * the refusal audited). Draws 32 random bytes, digests the token in the
 * PKCS#11 token, and stores the digest with the principal, the expiry and
 * a token_create event in one transaction. COFFER_E_INVALID for a bad
 * principal, ttl or description; COFFER_E_STATE if the token MAC key does
 * not exist. On success t->token holds the token; on failure it is NULL.
 */
enum coffer_err coffer_op_token_create(struct coffer_ops *o, const struct coffer_op_meta *m,
                                       struct coffer_op_token_create *t) COFFER_MUST_USE;

struct coffer_op_token_revoke {
    const char *org;
    const char *id;     /* the token's id, a UUID */
    const char *reason; /* 1..1024 bytes of text */
};

/*
 * Revokes a token of org at once: an admin of org only (as above).
 * COFFER_E_NOT_FOUND if org has no such token, COFFER_E_STATE if it is
 * revoked already, COFFER_E_INVALID for a malformed id or reason. The
 * token_revoke event is written in the same transaction.
 */
enum coffer_err coffer_op_token_revoke(struct coffer_ops *o, const struct coffer_op_meta *m,
                                       const struct coffer_op_token_revoke *t) COFFER_MUST_USE;

enum coffer_token_state {
    COFFER_TOKEN_VALID = 0,
    COFFER_TOKEN_UNKNOWN, /* no token has this digest */
    COFFER_TOKEN_EXPIRED,
    COFFER_TOKEN_REVOKED,
};

struct coffer_op_token_auth {
    enum coffer_token_state state;
    struct coffer_uuid id;       /* the token's id, unless unknown */
    struct coffer_principal who; /* when valid: the principal, trust domain "" */
};

/*
 * Authenticating a presented token, in two halves so that the lookups of
 * many requests share one query. coffer_op_token_check fills c from a
 * presented token (its format checked, its digest computed in the token;
 * the token itself is not kept); coffer_op_token_check_many then looks up
 * n checks at once by their digests and judges expiry and revocation by
 * the database's clock, setting each c[i].auth. Neither writes an event:
 * the caller records a failure. Errors are token or database trouble (and
 * then no request is authenticated).
 */
struct coffer_op_token_check {
    bool formed; /* the token had the right format: digest holds its HMAC */
    unsigned char digest[32];
    struct coffer_op_token_auth auth;
};

enum coffer_err coffer_op_token_check(struct coffer_ops *o, const char *token, size_t len,
                                      struct coffer_op_token_check *c) COFFER_MUST_USE;
enum coffer_err coffer_op_token_check_many(struct coffer_ops *o, struct coffer_op_token_check *c,
                                           size_t n) COFFER_MUST_USE;

/* ---- credential requests (agents ask; admins of their org fulfil or deny) ---- */

struct coffer_op_request_file {
    const char *org;
    const char *project;
    const char *name;
    const char *type;    /* one of the types coffer_op_type_known accepts */
    const char *tier;    /* low, medium, high, critical */
    const char *purpose; /* the bytes the agent sent: 1..COFFER_REQUEST_PURPOSE_MAX of text */
    size_t purpose_len;
    const char *urgency;                      /* low, normal or high; NULL: normal */
    const struct coffer_policy_grant *grants; /* suggested grants, as put takes them */
    size_t n_grants;
    const char *description; /* NULL if none */
    /* Results: */
    bool allowed;
    enum coffer_authz_reason reason; /* when refused: the reason the event keeps */
    struct coffer_store_request req; /* when allowed: the request filed */
};

/*
 * Files the credential request of agent m->who in its own org. A field
 * that breaks its rule is COFFER_E_INVALID and nothing is recorded. A
 * request naming another org or a project that does not exist (not_found),
 * or made by an agent whose type is not a member of the project
 * (not_project_member), is refused: COFFER_OK with r->allowed false and the
 * refusal audited. Suggested grants must name member types and declared
 * phases of the policy in force (COFFER_E_INVALID). COFFER_E_LIMIT when the
 * project holds COFFER_REQUESTS_PENDING_MAX pending requests. Writes one
 * "request" event with the purpose. Allocates in a.
 */
enum coffer_err coffer_op_request_file(struct coffer_ops *o, const struct coffer_op_meta *m,
                                       struct coffer_arena *a,
                                       struct coffer_op_request_file *r) COFFER_MUST_USE;

struct coffer_op_request_list {
    const char *org;
    const char *project;
    /* Results: */
    struct coffer_store_request *items; /* the pending requests, oldest first */
    size_t n;
};

/*
 * The pending requests of a project, for an admin of its org (anyone else:
 * COFFER_E_NOT_FOUND, audited; so is a project that does not exist). Writes
 * one "request" event. Allocates in a.
 */
enum coffer_err coffer_op_request_list(struct coffer_ops *o, const struct coffer_op_meta *m,
                                       struct coffer_arena *a,
                                       struct coffer_op_request_list *q) COFFER_MUST_USE;

struct coffer_op_request_get {
    const char *org;
    const char *project;
    const char *id; /* the request's id as text */
    /* Results: */
    bool allowed;
    enum coffer_authz_reason reason; /* when an agent is refused: the reason the event keeps */
    struct coffer_store_request req; /* when allowed */
};

/*
 * One request, for the agent that filed it (same org, agent type and
 * instance) or an admin of its org. An agent is refused for anything else
 * (COFFER_OK, q->allowed false: not_found for another org or a request
 * that does not exist, no_grant for another agent's); an admin of another
 * org, or asking for a request that does not exist, gets
 * COFFER_E_NOT_FOUND. Every answer writes one "request" event. Allocates
 * in a.
 */
enum coffer_err coffer_op_request_get(struct coffer_ops *o, const struct coffer_op_meta *m,
                                      struct coffer_arena *a,
                                      struct coffer_op_request_get *q) COFFER_MUST_USE;

struct coffer_op_request_fulfill {
    const char *org;
    const char *project;
    const char *id;
    const struct coffer_keyset *keys;
    bool grants_given; /* false: the request's suggested grants */
    const struct coffer_policy_grant *grants;
    size_t n_grants;
    int64_t ttl_s;                                 /* as for put */
    int64_t expires_at_us;                         /* as for put */
    const char *description;                       /* NULL if none */
    const struct coffer_op_key_expiry *key_expiry; /* as for put */
    size_t n_key_expiry;
    /* Results: */
    struct coffer_store_request req; /* the request as fulfilled */
    int64_t expires_us;              /* the expiry of the version stored */
};

/*
 * Fulfils a pending request in one transaction: locks it (COFFER_E_STATE if
 * it is no longer pending, COFFER_E_NOT_FOUND if there is none), stores the
 * credential under the request's name, type and tier exactly as
 * coffer_op_put would (with its checks and its "create" event), marks the
 * request fulfilled with the version, and writes the "fulfill" event. For
 * an admin of the org only (anyone else: COFFER_E_NOT_FOUND, audited).
 * Allocates in a.
 */
enum coffer_err coffer_op_request_fulfill(struct coffer_ops *o, const struct coffer_op_meta *m,
                                          struct coffer_arena *a,
                                          struct coffer_op_request_fulfill *f) COFFER_MUST_USE;

struct coffer_op_request_deny {
    const char *org;
    const char *project;
    const char *id;
    const char *reason; /* 1..COFFER_REQUEST_TEXT_MAX bytes of text */
    /* Results: */
    struct coffer_store_request req; /* the request as denied */
};

/*
 * Denies a pending request with reason, and writes the "deny" event, in one
 * transaction; COFFER_E_STATE if it is no longer pending. For an admin of
 * the org only. Allocates in a.
 */
enum coffer_err coffer_op_request_deny(struct coffer_ops *o, const struct coffer_op_meta *m,
                                       struct coffer_arena *a,
                                       struct coffer_op_request_deny *d) COFFER_MUST_USE;

/* ---- standing approvals of critical credentials (admins) ---- */

/*
 * The window of a standing approval judged at now_us: [from_us, until_us)
 * with from_us 0 meaning now, non-empty, ending after now and at most
 * COFFER_TTL_HARD_MAX_CRITICAL seconds long. *start_us receives the start.
 * COFFER_E_INVALID with a detail saying which rule is broken.
 */
enum coffer_err coffer_op_approval_window(int64_t now_us, int64_t from_us, int64_t until_us,
                                          int64_t *start_us) COFFER_MUST_USE;

struct coffer_op_approve {
    const char *org;
    const char *project;
    const char *name; /* a critical credential of the project */
    const char *agent_type;
    const char *instance;
    int64_t from_us; /* 0: now */
    int64_t until_us;
    /* Results: */
    struct coffer_store_approval approval;
};

/*
 * Gives instance of agent_type a standing approval of a critical credential
 * for the window (coffer_op_approval_window, by the database's clock), and
 * writes the "approve" event, in one transaction. COFFER_E_NOT_FOUND for a
 * credential that does not exist (and for an admin of another org,
 * audited); COFFER_E_STATE for a credential that is not critical;
 * COFFER_E_INVALID for a bad window or an agent type that is not a member
 * of the project.
 */
enum coffer_err coffer_op_approve(struct coffer_ops *o, const struct coffer_op_meta *m,
                                  struct coffer_op_approve *ap) COFFER_MUST_USE;

struct coffer_op_approval_revoke {
    const char *org;
    const char *project;
    const char *name;
    const char *id; /* the approval's id as text */
    /* Results: */
    struct coffer_store_approval approval; /* the approval revoked */
};

/*
 * Ends a standing approval at once, and writes the "approval_revoke" event.
 * COFFER_E_NOT_FOUND if the credential has no such approval; COFFER_E_STATE
 * if it is already revoked.
 */
enum coffer_err coffer_op_approval_revoke(struct coffer_ops *o, const struct coffer_op_meta *m,
                                          struct coffer_op_approval_revoke *rv) COFFER_MUST_USE;

#endif

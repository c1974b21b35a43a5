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

/* ---- access (agents) ---- */

struct coffer_op_access {
    const char *org;
    const char *project;
    const char *name;
    const char *purpose; /* the bytes the agent sent, NULL if none */
    size_t purpose_len;
    /* Results: */
    struct coffer_authz_decision decision;
    uint32_t version;           /* the version read, on allow */
    struct coffer_keyset *keys; /* on allow: the values, owned by the caller */
};

/*
 * Decides an agent's access (load, coffer_authz_decide), unseals the values
 * on allow (an integrity or token failure turns the allow into a deny), and
 * writes the event, all in one transaction. A principal that is not an agent
 * is denied (no_grant). COFFER_OK with a->decision set; a->keys only when
 * allowed.
 */
enum coffer_err coffer_op_access(struct coffer_ops *o, const struct coffer_op_meta *m,
                                 struct coffer_op_access *a) COFFER_MUST_USE;

/* ---- put: create a credential or add a version (admins) ---- */

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
    /* Results: */
    uint32_t version;
    int64_t expires_us; /* the expiry set, or COFFER_AUTHZ_NO_EXPIRY */
};

/*
 * Stores a new version under the admin's own org (another org is
 * COFFER_E_NOT_FOUND), checking the type's required keys, the lifetime
 * against the org's tier limits (default TTL when none is given; never for
 * high and critical only up to the hard maximum), the grants' agent types
 * (members of the project) and phases, and writes the version, its
 * lifetime, the grants and the event in one transaction. COFFER_E_INVALID
 * with a detail for any rule broken; nothing is written then.
 */
enum coffer_err coffer_op_put(struct coffer_ops *o, const struct coffer_op_meta *m,
                              struct coffer_op_put *p) COFFER_MUST_USE;

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

#endif

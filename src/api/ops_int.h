/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Private to the operations of src/api/ (ops.c and the operation files
 * beside it): the checks every operation makes of its caller, the audit
 * event every operation writes, and the core of put, which another
 * operation may run inside its own transaction.
 */
#ifndef COFFER_API_OPS_INT_H
#define COFFER_API_OPS_INT_H

#include <stdbool.h>
#include <stddef.h>

#include "coffer/audit.h"
#include "coffer/err.h"
#include "coffer/ops.h"
#include "coffer/policy.h"
#include "coffer/spiffe.h"

/* Room for a principal's description (ops_principal_text), with its terminator. */
#define OPS_PRINCIPAL_TEXT_MAX 256

/* Whether s is a name: ^[a-z0-9][a-z0-9_-]{0,62}$ (NULL is not). */
bool ops_name_ok(const char *s);

/* An agent principal whose org, type and instance are names. */
bool ops_is_agent(const struct coffer_principal *who);

/* An admin whose own org is org: the only one who may change anything in it. */
bool ops_is_admin_of(const struct coffer_principal *who, const char *org);

/*
 * COFFER_E_INVALID (the detail naming what) unless the context, meta and
 * arguments are there and every field of the principal is terminated.
 */
enum coffer_err ops_check_call(const struct coffer_ops *o, const struct coffer_op_meta *m,
                               const void *args, const char *what) COFFER_MUST_USE;

/*
 * An event of action for the request of m, naming org, project and
 * credential when they are names (a name the request gave that is not one
 * is left out). Everything else is zero.
 */
void ops_event_init(struct coffer_audit_event *e, const char *action,
                    const struct coffer_op_meta *m, const char *org, const char *project,
                    const char *credential);

/*
 * Refuses an admin operation to a principal that is not an admin of the
 * org the request names: audits the attempt (in a transaction of its own
 * unless one is open) and returns COFFER_E_NOT_FOUND, the answer for an org
 * that does not exist. An error if the event cannot be written.
 */
enum coffer_err ops_refuse(struct coffer_ops *o, const struct coffer_op_meta *m, const char *action,
                           const char *org, const char *project,
                           const char *credential) COFFER_MUST_USE;

/*
 * Checks n grants (at most COFFER_POLICY_GRANTS_MAX): names, phases named
 * once each, no agent type and instance twice. COFFER_E_INVALID with a
 * detail that starts with what ("grant", "suggested grant") and the index.
 */
enum coffer_err ops_check_grants(const struct coffer_policy_grant *grants, size_t n,
                                 const char *what) COFFER_MUST_USE;

/* The project called name in the policy pol, or NULL. */
const struct coffer_policy_project *ops_find_project(const struct coffer_policy_org *pol,
                                                     const char *name);

/*
 * Checks n grants against project pp of the policy in force (NULL: a
 * project the policy does not declare, which has neither members nor
 * phases): every agent type a member, every phase declared.
 */
enum coffer_err ops_grants_in_policy(const struct coffer_policy_grant *grants, size_t n,
                                     const char *what, const char *project,
                                     const struct coffer_policy_project *pp) COFFER_MUST_USE;

/*
 * Who the principal is, for decided_by, created_by and changed_by columns:
 * its SPIFFE ID when it has one that fits, else "admin <name> of org <org>"
 * or "agent <type>/<instance> of org <org>".
 */
void ops_principal_text(const struct coffer_principal *who, char out[OPS_PRINCIPAL_TEXT_MAX]);

/*
 * The core of coffer_op_put inside a transaction the caller opened (and
 * commits or rolls back): every check of put, the version, its lifetime,
 * description and grants, and the "create" event. The caller has made sure
 * that m->who is an admin of p->org. On COFFER_OK p->version and
 * p->expires_us are set; they count only once the caller commits.
 * COFFER_E_STATE if no transaction is open.
 */
enum coffer_err ops_put_in_tx(struct coffer_ops *o, const struct coffer_op_meta *m,
                              struct coffer_op_put *p) COFFER_MUST_USE;

/* ---- Per-key expiry (ops_key_expiry.c) ---- */

/*
 * The checks of p's key expiry times that need nothing but the request:
 * each names a key of p->keys, once, with a time in range. COFFER_E_INVALID
 * naming the rule broken.
 */
enum coffer_err ops_key_expiry_check(const struct coffer_op_put *p) COFFER_MUST_USE;

/*
 * Inside put's transaction: checks each key's time against the version's
 * issue time issued_us (after it) and the credential's expiry expires_us
 * (not after it, unless COFFER_AUTHZ_NO_EXPIRY), and stores them on the
 * version. Nothing to do when p gives none. COFFER_E_INVALID naming the key.
 */
enum coffer_err ops_key_expiry_write(struct coffer_ops *o, const struct coffer_op_put *p,
                                     const struct coffer_uuid *org_id,
                                     const struct coffer_uuid *credential_id, uint32_t version,
                                     int64_t issued_us, int64_t expires_us) COFFER_MUST_USE;

/*
 * Leaves out of *keys (the values of an allowed access of the version acc
 * describes) every key acc names as expired: *keys is replaced by a set
 * without them (the old one wiped) and *names receives their names joined
 * by commas (the caller frees it with coffer_free), or NULL when none
 * expired. COFFER_E_INTEGRITY if the names do not match the keys; on any
 * error *keys is unchanged and *names NULL.
 */
enum coffer_err ops_key_expiry_withhold(const struct coffer_store_access *acc,
                                        struct coffer_keyset **keys, char **names) COFFER_MUST_USE;

/* "expired keys: a,b" for an event's detail, cut with " and N more" when it does not fit cap. */
void ops_key_expiry_detail(const char *names, char *out, size_t cap);

/* ---- OAuth2 credentials (ops_oauth2.c) ---- */

/*
 * The checks a put makes of p->oauth2_provider (none when NULL): an oauth2
 * credential with a refresh_token key and an expiry of its access_token,
 * and a provider that parses (https token URL, client id, the client
 * secret's credential and key, basic or post). COFFER_E_INVALID saying what.
 */
enum coffer_err ops_oauth2_put_check(const struct coffer_op_put *p) COFFER_MUST_USE;

/* Inside put's transaction: records the provider (canonical JSON) with the version written. */
enum coffer_err ops_oauth2_put_write(struct coffer_ops *o, const struct coffer_op_put *p,
                                     const struct coffer_uuid *org_id,
                                     const struct coffer_uuid *credential_id,
                                     uint32_t version) COFFER_MUST_USE;

/*
 * Whether the loaded credential carries a provider and its access token
 * expires within the refresh margin of now_us (the database's clock).
 */
bool ops_oauth2_due(const struct coffer_store_access *acc, int64_t now_us);

/*
 * Leaves refresh_token out of *keys when Coffer refreshes the credential:
 * that token is Coffer's to use, never an agent's. *keys is replaced.
 */
enum coffer_err ops_oauth2_withhold(const struct coffer_store_access *acc,
                                    struct coffer_keyset **keys) COFFER_MUST_USE;

#endif

/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The access decision: one pure function from everything an access depends
 * on to allow or deny with exactly one reason code. It does no I/O, keeps no
 * state and caches nothing, so expiry, revocation and grants are judged on
 * every call from the inputs the caller has just loaded.
 *
 * Checks run in a fixed order and the first that fails gives the reason:
 *
 *   1. org          the principal's org is the credential's, else not_found
 *   2. existence    the credential exists, else not_found
 *   3. purpose      present, at most 512 bytes, valid UTF-8, no control
 *                   characters, else purpose_missing
 *   4. membership   the principal's agent type is a member of the project,
 *                   else not_project_member
 *   5. grant        a grant names the agent type and either no instance or
 *                   the principal's instance, else no_grant
 *   6. phase        such a grant covers the project's current phase, else
 *                   wrong_phase
 *   7. reveal       a credential whose rule says reveal: false is never
 *                   handed out: an access of its values (brokered false) is
 *                   refused with secretless_only; a brokered use goes on
 *   8. revocation   the credential is not revoked, else revoked
 *   9. expiry       now is before the credential's expiry and before issued
 *                   + the tier's max TTL, and not every key of the version
 *                   has passed its own expiry, else expired
 *  10. approval     a critical credential needs a standing approval of this
 *                   instance covering now, else approval_required
 *  11. granted      and purpose_unexpected is set when the credential lists
 *                   purpose patterns and the purpose matches none of them
 *
 * secretless_only comes after the grant and phase checks, so only an agent
 * that may use the credential now learns that it exists and how to use it
 * (the API answers it with its own error, not permission_denied), and before
 * revocation and expiry, so that an agent asking for the values of such a
 * credential is always told the same thing: values are never revealed,
 * whatever state the credential is in.
 *
 * integrity_error and token_unavailable arise after an allow, when the
 * credential cannot be unsealed; coffer_authz_after_unseal maps them.
 * The caller tells the agent only "permission_denied" (secretless_only
 * apart, which only a grant holder can meet); the audit log keeps the reason.
 */
#ifndef COFFER_AUTHZ_H
#define COFFER_AUTHZ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "coffer/err.h"
#include "coffer/policy.h"

enum coffer_authz_reason {
    COFFER_AUTHZ_GRANTED = 0,
    COFFER_AUTHZ_NO_GRANT,
    COFFER_AUTHZ_WRONG_PHASE,
    COFFER_AUTHZ_EXPIRED,
    COFFER_AUTHZ_REVOKED,
    COFFER_AUTHZ_NOT_FOUND,
    COFFER_AUTHZ_NOT_PROJECT_MEMBER,
    COFFER_AUTHZ_PURPOSE_MISSING,
    COFFER_AUTHZ_APPROVAL_REQUIRED,
    COFFER_AUTHZ_INTEGRITY_ERROR,
    COFFER_AUTHZ_TOKEN_UNAVAILABLE,
    COFFER_AUTHZ_SECRETLESS_ONLY,
};
#define COFFER_AUTHZ_REASON_COUNT 12

/* No expiry recorded (only possible for low and medium, whose max TTL may be never). */
#define COFFER_AUTHZ_NO_EXPIRY INT64_MAX

/* The reason code as DESIGN.md spells it ("granted", "no_grant", "secretless_only", ...);
 * "unknown" if out of range.
 */
const char *coffer_authz_reason_str(enum coffer_authz_reason r);
/* Parses a reason code of len bytes; false if unknown. */
bool coffer_authz_reason_parse(const char *s, size_t len, enum coffer_authz_reason *out);

/* Who asks: from the SPIFFE ID of a client certificate or from a bearer token. */
struct coffer_authz_principal {
    const char *org;
    const char *agent_type;
    const char *instance;
};

/* One grant of the credential (as struct coffer_policy_grant, without position). */
struct coffer_authz_grant {
    const char *agent_type;
    const char *instance;      /* NULL: every instance */
    const char *const *phases; /* n_phases == 0: every phase */
    size_t n_phases;
};

/* A standing approval of one instance for a critical credential, [from, until). */
struct coffer_authz_approval {
    const char *agent_type;
    const char *instance;
    int64_t from_us;
    int64_t until_us;
};

/* Everything one decision depends on. Times are microseconds since the Unix epoch. */
struct coffer_authz_input {
    struct coffer_authz_principal principal;
    const char *purpose; /* NULL or the bytes the agent sent */
    size_t purpose_len;
    int64_t now_us;

    bool found;      /* the credential exists (looked up within the principal's org) */
    const char *org; /* the credential's org */
    enum coffer_tier tier;
    int64_t issued_us;  /* when the current version was stored */
    int64_t expires_us; /* or COFFER_AUTHZ_NO_EXPIRY */
    bool revoked;
    bool keys_expired;           /* every key of the current version has passed its own expiry */
    int64_t tier_max_ttl_s;      /* the org's max TTL for the tier, or COFFER_TTL_NEVER */
    const char *const *purposes; /* allowed purpose patterns; none: every purpose expected */
    size_t n_purposes;

    const char *phase;          /* the project's current phase, NULL if it has none */
    const char *const *members; /* agent types that are members of the project */
    size_t n_members;
    const struct coffer_authz_grant *grants;
    size_t n_grants;
    const struct coffer_authz_approval *approvals;
    size_t n_approvals;

    bool secretless_only; /* the credential's rule says reveal: false */
    /* The caller makes a brokered call with the credential: its values never reach the
       principal. false (the zero value) is an access of the values. */
    bool brokered;
};

struct coffer_authz_decision {
    enum coffer_authz_reason reason;
    bool allow;              /* reason == COFFER_AUTHZ_GRANTED */
    bool purpose_unexpected; /* allowed, but the purpose matches no pattern: flag for audit */
    int grant;               /* index of the grant that allowed, or -1 */
};

/* Decides. Never fails: missing or malformed inputs deny. */
void coffer_authz_decide(const struct coffer_authz_input *in, struct coffer_authz_decision *out);

/*
 * Turns an allow into a deny when unsealing the credential failed:
 * COFFER_E_INTEGRITY gives integrity_error; COFFER_E_TOKEN_UNAVAILABLE,
 * COFFER_E_TOKEN, COFFER_E_PIN, COFFER_E_FORKED, COFFER_E_NOT_FOUND (a key
 * of the hierarchy is missing from the token) and COFFER_E_STATE (the key
 * that wraps the row was destroyed) give token_unavailable.
 * COFFER_OK and other errors leave the decision unchanged (the caller fails
 * the request for those).
 */
void coffer_authz_after_unseal(struct coffer_authz_decision *d, enum coffer_err unseal);

/* Whether a purpose is acceptable: 1..512 bytes of UTF-8 without control characters. */
bool coffer_authz_purpose_ok(const char *purpose, size_t len);

/*
 * Whether purpose matches pattern: '*' matches any run of characters
 * (including none), every other byte matches itself, ASCII letters without
 * regard to case. Linear in practice, never exponential.
 */
bool coffer_authz_purpose_matches(const char *pattern, const char *purpose, size_t len);

#endif

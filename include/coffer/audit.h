/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Audit events: one row per decision and per change, written in the same
 * transaction as its effect (coffer_store_audit_insert), so that an access
 * whose event cannot be written does not happen (fail closed).
 *
 * An event holds identifiers, reason codes, the stated purpose and short
 * non-secret details. It never holds a credential value, a token, a PIN or
 * an Authorization header.
 */
#ifndef COFFER_AUDIT_H
#define COFFER_AUDIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "coffer/spiffe.h"

/* What happened. */
#define COFFER_AUDIT_ACCESS "access"             /* an agent asked for a credential's values */
#define COFFER_AUDIT_CREATE "create"             /* a credential or a new version was stored */
#define COFFER_AUDIT_REVOKE "revoke"             /* a credential was revoked */
#define COFFER_AUDIT_PHASE "phase"               /* a project moved to another phase */
#define COFFER_AUDIT_METADATA "metadata"         /* credential metadata was read or listed */
#define COFFER_AUDIT_AUTH_FAILURE "auth_failure" /* a request could not be authenticated */

struct coffer_audit_event {
    const char *action; /* one of COFFER_AUDIT_* */
    bool allowed;       /* the operation took place */
    const char *reason; /* an authz reason code, "ok", or an error code (coffer_err_str) */
    bool purpose_unexpected;
    const char *request_id;             /* the request's id, as returned to the client */
    const char *client_addr;            /* "address:port" of the peer, or NULL */
    const struct coffer_principal *who; /* NULL when unauthenticated */
    const char *org;                    /* as named by the request; NULL if none */
    const char *project;                /* NULL if none */
    const char *credential;             /* NULL if none */
    uint32_t version;                   /* credential version concerned, 0 if none */
    const char *phase;                  /* the project's phase at the decision, NULL if unknown */
    const char *purpose;                /* the stated purpose (validated text) or NULL */
    size_t purpose_len;
    const char *detail;       /* short non-secret text: a revocation reason, "build -> staging" */
    uint32_t org_key_version; /* an allowed access: the org key version that opened it, else 0 */
    uint32_t mk_version;      /* the master key wrapping that org key then, 0 if none */
};

/* Bearer tokens: events name the token by its id, never by the token or its digest. */
#define COFFER_AUDIT_TOKEN_CREATE "token_create" /* an admin issued a bearer token */
#define COFFER_AUDIT_TOKEN_REVOKE "token_revoke" /* an admin revoked a bearer token */

/* The request flow and standing approvals: events name a request or an approval by its id. */
#define COFFER_AUDIT_REQUEST "request" /* an agent filed a credential request, or one was read */
#define COFFER_AUDIT_FULFILL "fulfill" /* an admin fulfilled a request */
#define COFFER_AUDIT_DENY "deny"       /* an admin denied a request */
#define COFFER_AUDIT_APPROVE "approve" /* an admin gave a standing approval */
#define COFFER_AUDIT_APPROVAL_REVOKE "approval_revoke" /* an admin revoked a standing approval */
/* An agent made a brokered call with a credential it never saw (POST .../use). */
#define COFFER_AUDIT_USE "use"
/* Coffer renewed an oauth2 access token for the agent whose access found it expiring. */
#define COFFER_AUDIT_REFRESH "refresh"

#endif

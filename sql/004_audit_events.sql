-- SPDX-License-Identifier: Apache-2.0
--
-- 004_audit_events: one row per access decision and per change.
--
-- The server writes an event in the same transaction as the effect it
-- records, so an access whose event cannot be written does not happen. The
-- table holds identifiers, reason codes, the stated purpose and short
-- non-secret details; never a credential value, a token, a PIN or an
-- Authorization header. Free text (client address, purpose, detail) is
-- refused if it holds control characters (U+0001 to U+001F, U+007F to
-- U+009F, as the server checks it), so no row can forge a line in a report.
--
-- coffer_app may only append: it cannot read events back (beyond the id it
-- was just given), change or delete them, and the time of an event is
-- always the database's own clock.

CREATE TABLE coffer.audit_events (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT clock_timestamp(),
    action text NOT NULL CHECK (
        action IN ('access', 'create', 'revoke', 'phase', 'metadata', 'auth_failure')),
    allowed bool NOT NULL,
    reason text NOT NULL CHECK (reason ~ '^[a-z_]{1,40}$'),
    purpose_unexpected bool NOT NULL DEFAULT false,
    request_id text NOT NULL CHECK (
        octet_length(request_id) BETWEEN 1 AND 64 AND request_id ~ '^[A-Za-z0-9._-]+$'),
    client_addr text CHECK (
        octet_length(client_addr) BETWEEN 1 AND 128
        AND client_addr !~ '[\u0001-\u001f\u007f-\u009f]'),
    principal_kind text CHECK (principal_kind IN ('agent', 'admin')),
    trust_domain text CHECK (trust_domain ~ '^[a-z0-9._-]{1,255}$'),
    org text CHECK (org ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    agent_type text CHECK (agent_type ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    instance text CHECK (instance ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    admin text CHECK (admin ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    target_org text CHECK (target_org ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    project text CHECK (project ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    credential text CHECK (credential ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    version int CHECK (version > 0),
    phase text CHECK (phase ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    purpose text CHECK (
        octet_length(purpose) BETWEEN 1 AND 512
        AND purpose !~ '[\u0001-\u001f\u007f-\u009f]'),
    detail text CHECK (
        octet_length(detail) BETWEEN 1 AND 1024
        AND detail !~ '[\u0001-\u001f\u007f-\u009f]'),
    -- The principal's fields come together, shaped by its kind.
    CONSTRAINT audit_events_principal CHECK (
        (principal_kind IS NULL AND trust_domain IS NULL AND org IS NULL
            AND agent_type IS NULL AND instance IS NULL AND admin IS NULL)
        OR (principal_kind = 'agent' AND trust_domain IS NOT NULL AND org IS NOT NULL
            AND agent_type IS NOT NULL AND instance IS NOT NULL AND admin IS NULL)
        OR (principal_kind = 'admin' AND trust_domain IS NOT NULL AND org IS NOT NULL
            AND agent_type IS NULL AND instance IS NULL AND admin IS NOT NULL)),
    -- An access is allowed exactly when its reason is granted.
    CONSTRAINT audit_events_access_reason CHECK (
        action <> 'access' OR allowed = (reason = 'granted')),
    CONSTRAINT audit_events_purpose_unexpected CHECK (NOT purpose_unexpected OR allowed)
);

CREATE INDEX audit_events_credential ON coffer.audit_events (target_org, credential, at);
CREATE INDEX audit_events_at ON coffer.audit_events (at);

COMMENT ON TABLE coffer.audit_events IS
    'Every access decision (allowed or denied, with its reason) and every change of a credential or project, written in the same transaction as its effect: an access whose event cannot be written is refused. Append-only; never holds a credential value, token or PIN.';
COMMENT ON COLUMN coffer.audit_events.id IS
    'Event number, increasing in the order events were inserted (gaps come from rolled-back operations).';
COMMENT ON COLUMN coffer.audit_events.at IS
    'When the event was written, by the database''s clock (not the server''s, and not settable by it).';
COMMENT ON COLUMN coffer.audit_events.action IS
    'What was asked: access (an agent asked for a credential''s values), create (a credential or a new version was stored), revoke, phase (a project moved to another phase), metadata (credential metadata read or listed), auth_failure (a request could not be authenticated).';
COMMENT ON COLUMN coffer.audit_events.allowed IS
    'Whether the operation took place; for access, whether the values were handed out.';
COMMENT ON COLUMN coffer.audit_events.reason IS
    'For access the decision''s reason code: granted, no_grant, wrong_phase, expired, revoked, not_found, not_project_member, purpose_missing, approval_required, integrity_error or token_unavailable. For other actions ok, or the error that refused the operation (for example not_found).';
COMMENT ON COLUMN coffer.audit_events.purpose_unexpected IS
    'The access was allowed, but its purpose matches none of the credential''s allowed purpose patterns: review it.';
COMMENT ON COLUMN coffer.audit_events.request_id IS
    'The request''s identifier, as returned to the client in every answer and error; ties the event to the server''s log lines.';
COMMENT ON COLUMN coffer.audit_events.client_addr IS
    'Network address and port of the client, as the server saw it; NULL if unknown.';
COMMENT ON COLUMN coffer.audit_events.principal_kind IS
    'Who asked: agent or admin, from the SPIFFE ID of the client certificate or from a bearer token; NULL when the request was not authenticated.';
COMMENT ON COLUMN coffer.audit_events.trust_domain IS
    'Trust domain of the principal''s SPIFFE ID; NULL when unauthenticated.';
COMMENT ON COLUMN coffer.audit_events.org IS
    'The principal''s own org (from its identity, not from the request); NULL when unauthenticated.';
COMMENT ON COLUMN coffer.audit_events.agent_type IS 'The agent''s type; NULL for admins.';
COMMENT ON COLUMN coffer.audit_events.instance IS 'The agent''s instance; NULL for admins.';
COMMENT ON COLUMN coffer.audit_events.admin IS 'The admin''s name; NULL for agents.';
COMMENT ON COLUMN coffer.audit_events.target_org IS
    'The org the request named. Differs from org when a principal asked for another org''s credential, which is always refused (not_found).';
COMMENT ON COLUMN coffer.audit_events.project IS 'The project the request named; NULL if none.';
COMMENT ON COLUMN coffer.audit_events.credential IS 'The credential the request named; NULL if none.';
COMMENT ON COLUMN coffer.audit_events.version IS
    'The credential version concerned: the version read or stored, or the current version at a denial; NULL if none.';
COMMENT ON COLUMN coffer.audit_events.phase IS
    'The project''s phase when the decision was made; NULL if unknown or the project has none.';
COMMENT ON COLUMN coffer.audit_events.purpose IS
    'The purpose the agent stated, as sent; NULL when none was given or it was not acceptable text (reason purpose_missing).';
COMMENT ON COLUMN coffer.audit_events.detail IS
    'Short non-secret detail: the revocation reason, "build -> staging" and the credentials that expired with a phase change, or what a stored version was given.';

-- ---- Privileges -------------------------------------------------------------------
-- coffer_app appends events. It may name every column but id and at, so it
-- can neither choose an event's number nor its time; the identity needs no
-- privilege on its sequence. SELECT on id alone lets INSERT ... RETURNING
-- give the new event's number back, and reveals nothing else.

REVOKE ALL ON coffer.audit_events FROM PUBLIC;
GRANT INSERT (action, allowed, reason, purpose_unexpected, request_id, client_addr,
              principal_kind, trust_domain, org, agent_type, instance, admin, target_org,
              project, credential, version, phase, purpose, detail)
    ON coffer.audit_events TO coffer_app;
GRANT SELECT (id) ON coffer.audit_events TO coffer_app;

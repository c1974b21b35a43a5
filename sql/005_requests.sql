-- SPDX-License-Identifier: Apache-2.0
--
-- 005_requests: credential requests and standing approvals.
--
-- An agent that lacks a credential files a request through the API; an
-- admin of its org fulfils it (storing the credential through Coffer, never
-- through chat) or denies it. A request is filed once and decided once:
-- coffer_app may insert it and later write only its decision columns, and
-- may never delete it, so the history of who asked for what stays.
--
-- A standing approval lets one agent instance reach one critical
-- credential within a window of at most 24 hours (the hard maximum of the
-- critical tier). The access decision reads the approvals in force with
-- every access; revoking one ends it at once. coffer_app may insert an
-- approval and set its revocation time, nothing else.
--
-- Free text (purpose, description, reason) is refused if it holds control
-- characters (U+0001 to U+001F, U+007F to U+009F), as the server checks it.

-- ---- Credential requests ---------------------------------------------------------

CREATE TABLE coffer.credential_requests (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id uuid NOT NULL,
    project_id uuid NOT NULL,
    name text NOT NULL CHECK (name ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    type text NOT NULL CHECK (type ~ '^[a-z0-9_]{1,31}$'),
    tier text NOT NULL CHECK (tier IN ('low', 'medium', 'high', 'critical')),
    purpose text NOT NULL CHECK (
        octet_length(purpose) BETWEEN 1 AND 512
        AND purpose !~ '[\u0001-\u001f\u007f-\u009f]'),
    urgency text NOT NULL DEFAULT 'normal' CHECK (urgency IN ('low', 'normal', 'high')),
    suggested_agent_types text[] NOT NULL DEFAULT '{}' CHECK (
        cardinality(suggested_agent_types) <= 256
        AND (cardinality(suggested_agent_types) = 0 OR array_ndims(suggested_agent_types) = 1)
        AND array_position(suggested_agent_types, NULL) IS NULL
        AND array_to_string(suggested_agent_types, ',') ~
            '^([a-z0-9][a-z0-9_-]{0,62}(,[a-z0-9][a-z0-9_-]{0,62})*)?$'),
    suggested_instances text[] NOT NULL DEFAULT '{}' CHECK (
        (cardinality(suggested_instances) = 0 OR array_ndims(suggested_instances) = 1)
        AND array_to_string(suggested_instances, ',') ~
            '^([a-z0-9][a-z0-9_-]{0,62}(,[a-z0-9][a-z0-9_-]{0,62})*)?$'),
    suggested_phases text[] NOT NULL DEFAULT '{}' CHECK (
        (cardinality(suggested_phases) = 0 OR array_ndims(suggested_phases) = 1)
        AND array_position(suggested_phases, NULL) IS NULL
        AND array_to_string(suggested_phases, ';') ~
            '^(([a-z0-9][a-z0-9_-]{0,62}(,[a-z0-9][a-z0-9_-]{0,62})*)?(;|$))*$'),
    description text CHECK (
        octet_length(description) BETWEEN 1 AND 1024
        AND description !~ '[\u0001-\u001f\u007f-\u009f]'),
    requester_trust_domain text CHECK (requester_trust_domain ~ '^[a-z0-9._-]{1,255}$'),
    requester_agent_type text NOT NULL CHECK (requester_agent_type ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    requester_instance text NOT NULL CHECK (requester_instance ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    state text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'fulfilled', 'denied')),
    created_at timestamptz NOT NULL DEFAULT now(),
    decided_at timestamptz,
    decided_by text CHECK (
        octet_length(decided_by) BETWEEN 1 AND 256
        AND decided_by !~ '[\u0001-\u001f\u007f-\u009f]'),
    reason text CHECK (
        octet_length(reason) BETWEEN 1 AND 1024
        AND reason !~ '[\u0001-\u001f\u007f-\u009f]'),
    credential_id uuid,
    credential_version int CHECK (credential_version > 0),
    FOREIGN KEY (project_id, org_id) REFERENCES coffer.projects (id, org_id),
    FOREIGN KEY (credential_id, org_id, project_id)
        REFERENCES coffer.credentials (id, org_id, project_id),
    -- One suggested grant is one element of each of the three arrays.
    CONSTRAINT credential_requests_grants_aligned CHECK (
        cardinality(suggested_instances) = cardinality(suggested_agent_types)
        AND cardinality(suggested_phases) = cardinality(suggested_agent_types)),
    -- A decision is complete or absent, and says what its state needs.
    CONSTRAINT credential_requests_decision CHECK (
        (state = 'pending' AND decided_at IS NULL AND decided_by IS NULL AND reason IS NULL
            AND credential_id IS NULL AND credential_version IS NULL)
        OR (state = 'fulfilled' AND decided_at IS NOT NULL AND decided_by IS NOT NULL
            AND reason IS NULL AND credential_id IS NOT NULL AND credential_version IS NOT NULL)
        OR (state = 'denied' AND decided_at IS NOT NULL AND decided_by IS NOT NULL
            AND reason IS NOT NULL AND credential_id IS NULL AND credential_version IS NULL))
);
CREATE INDEX credential_requests_pending ON coffer.credential_requests (project_id, created_at, id)
    WHERE state = 'pending';

COMMENT ON TABLE coffer.credential_requests IS
    'Credentials agents asked for and did not have, and what an admin decided: fulfilled (the credential was stored through Coffer) or denied. Rows are never deleted; only the decision columns change, once. Never holds a credential value.';
COMMENT ON COLUMN coffer.credential_requests.id IS
    'Request identifier, returned to the agent so that it can ask how its request was decided.';
COMMENT ON COLUMN coffer.credential_requests.org_id IS
    'The org of the requesting agent (from its identity); a request never names another org.';
COMMENT ON COLUMN coffer.credential_requests.project_id IS 'The project the credential is wanted in.';
COMMENT ON COLUMN coffer.credential_requests.name IS
    'The credential name asked for; a fulfilment stores the credential under this name.';
COMMENT ON COLUMN coffer.credential_requests.type IS
    'The credential type asked for (api_key, oauth2, basic_auth, bearer_token, certificate, connection_string or custom).';
COMMENT ON COLUMN coffer.credential_requests.tier IS
    'The sensitivity tier asked for: low, medium, high or critical; a fulfilment stores the credential with it.';
COMMENT ON COLUMN coffer.credential_requests.purpose IS 'Why the agent needs the credential, as it said.';
COMMENT ON COLUMN coffer.credential_requests.urgency IS 'How soon the agent needs it: low, normal or high.';
COMMENT ON COLUMN coffer.credential_requests.suggested_agent_types IS
    'Agent type of each grant the agent suggested; element i of the three suggested_* arrays is one grant.';
COMMENT ON COLUMN coffer.credential_requests.suggested_instances IS
    'Instance of each suggested grant; NULL: every instance of the type.';
COMMENT ON COLUMN coffer.credential_requests.suggested_phases IS
    'Phases of each suggested grant, joined by commas; empty: every phase.';
COMMENT ON COLUMN coffer.credential_requests.description IS
    'What the credential is for, as the agent described it; NULL if it gave none.';
COMMENT ON COLUMN coffer.credential_requests.requester_trust_domain IS
    'Trust domain of the requesting agent''s SPIFFE ID; NULL when it was authenticated by a bearer token.';
COMMENT ON COLUMN coffer.credential_requests.requester_agent_type IS
    'Agent type of the requester; with its instance, the only agent that may read the request.';
COMMENT ON COLUMN coffer.credential_requests.requester_instance IS 'Instance of the requesting agent.';
COMMENT ON COLUMN coffer.credential_requests.state IS
    'pending until decided; fulfilled (the credential was stored) or denied, never changed afterwards.';
COMMENT ON COLUMN coffer.credential_requests.created_at IS 'When the request was filed.';
COMMENT ON COLUMN coffer.credential_requests.decided_at IS 'When it was fulfilled or denied; NULL while pending.';
COMMENT ON COLUMN coffer.credential_requests.decided_by IS
    'SPIFFE ID of the admin who decided; NULL while pending.';
COMMENT ON COLUMN coffer.credential_requests.reason IS 'Why the request was denied, as the admin said; NULL otherwise.';
COMMENT ON COLUMN coffer.credential_requests.credential_id IS
    'The credential a fulfilment stored; NULL unless fulfilled.';
COMMENT ON COLUMN coffer.credential_requests.credential_version IS
    'The credential version a fulfilment stored; NULL unless fulfilled.';

-- ---- Standing approvals ------------------------------------------------------------

CREATE TABLE coffer.approvals (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id uuid NOT NULL,
    project_id uuid NOT NULL,
    credential_id uuid NOT NULL,
    agent_type text NOT NULL CHECK (agent_type ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    instance text NOT NULL CHECK (instance ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    from_at timestamptz NOT NULL,
    until_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    created_by text NOT NULL CHECK (
        octet_length(created_by) BETWEEN 1 AND 256
        AND created_by !~ '[\u0001-\u001f\u007f-\u009f]'),
    revoked_at timestamptz,
    FOREIGN KEY (credential_id, org_id, project_id)
        REFERENCES coffer.credentials (id, org_id, project_id),
    -- Non-empty, and never longer than the critical tier's hard maximum.
    CONSTRAINT approvals_window CHECK (
        until_at > from_at AND until_at - from_at <= interval '24 hours')
);
CREATE INDEX approvals_in_force ON coffer.approvals (credential_id, until_at)
    WHERE revoked_at IS NULL;

COMMENT ON TABLE coffer.approvals IS
    'Standing approvals: an admin lets one agent instance reach one critical credential from from_at until until_at (at most 24 hours). A critical credential is refused (approval_required) to an instance without an approval covering the moment of access. Rows are never deleted.';
COMMENT ON COLUMN coffer.approvals.id IS 'Approval identifier, used to revoke it.';
COMMENT ON COLUMN coffer.approvals.org_id IS 'The credential''s org.';
COMMENT ON COLUMN coffer.approvals.project_id IS 'The credential''s project.';
COMMENT ON COLUMN coffer.approvals.credential_id IS 'The critical credential approved.';
COMMENT ON COLUMN coffer.approvals.agent_type IS 'Agent type of the approved instance; a member of the project when approved.';
COMMENT ON COLUMN coffer.approvals.instance IS 'The one approved agent instance.';
COMMENT ON COLUMN coffer.approvals.from_at IS 'Start of the window (included).';
COMMENT ON COLUMN coffer.approvals.until_at IS 'End of the window (excluded); at most 24 hours after from_at.';
COMMENT ON COLUMN coffer.approvals.created_at IS 'When the approval was given.';
COMMENT ON COLUMN coffer.approvals.created_by IS 'SPIFFE ID of the admin who gave it.';
COMMENT ON COLUMN coffer.approvals.revoked_at IS
    'When an admin revoked the approval, ending it at once; NULL while not revoked.';

-- ---- Audit actions of the request flow and of approvals ------------------------------
-- 004 declared the action CHECK inline, so PostgreSQL named it
-- audit_events_action_check.

ALTER TABLE coffer.audit_events DROP CONSTRAINT audit_events_action_check;
ALTER TABLE coffer.audit_events ADD CONSTRAINT audit_events_action_check CHECK (
    action IN ('access', 'create', 'revoke', 'phase', 'metadata', 'auth_failure',
               'request', 'fulfill', 'deny', 'approve', 'approval_revoke'));

COMMENT ON COLUMN coffer.audit_events.action IS
    'What was asked: access (an agent asked for a credential''s values), create (a credential or a new version was stored), revoke (a credential was revoked), phase (a project moved to another phase), metadata (credential metadata read or listed), auth_failure (a request could not be authenticated), request (an agent filed a credential request, or a request was read or listed), fulfill (an admin fulfilled a request), deny (an admin denied a request), approve (an admin gave a standing approval for a critical credential), approval_revoke (an admin revoked one).';

-- ---- Privileges of coffer_app -----------------------------------------------------

REVOKE ALL ON coffer.credential_requests, coffer.approvals FROM PUBLIC;
GRANT SELECT, INSERT ON coffer.credential_requests TO coffer_app;
GRANT UPDATE (state, decided_at, decided_by, reason, credential_id, credential_version)
    ON coffer.credential_requests TO coffer_app;
GRANT SELECT, INSERT ON coffer.approvals TO coffer_app;
GRANT UPDATE (revoked_at) ON coffer.approvals TO coffer_app;

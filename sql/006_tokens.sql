-- SPDX-License-Identifier: Apache-2.0
--
-- 006_tokens: bearer tokens issued by Coffer.
--
-- An admin of an org issues a token for an agent or an admin of the same
-- org; a request that presents it in "Authorization: Bearer <token>" acts
-- as that principal until the token expires or is revoked. The token
-- itself is shown once, in the answer that issued it, and is never stored:
-- this table keeps its HMAC-SHA256 under the token MAC key, a secret that
-- never leaves the PKCS#11 token, so a copy of the database holds nothing
-- that authenticates. coffer_app may insert a token and later write only
-- its revocation; it may never delete one or change whom it names.
--
-- Principals authenticated by a token have no SPIFFE ID: their audit
-- events have a principal kind and org but no trust domain.

-- ---- Tokens --------------------------------------------------------------------------

CREATE TABLE coffer.tokens (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id uuid NOT NULL REFERENCES coffer.orgs (id),
    digest bytea NOT NULL UNIQUE CHECK (octet_length(digest) = 32),
    mac_mech text NOT NULL CHECK (mac_mech = 'hmac-sha256'),
    mac_key text NOT NULL CHECK (mac_key ~ '^coffer-token-mac-v[1-9][0-9]{0,8}$'),
    principal_kind text NOT NULL CHECK (principal_kind IN ('agent', 'admin')),
    agent_type text CHECK (agent_type ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    instance text CHECK (instance ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    admin text CHECK (admin ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    description text CHECK (
        octet_length(description) BETWEEN 1 AND 1024
        AND description !~ '[\u0001-\u001f\u007f-\u009f]'),
    created_by text NOT NULL CHECK (
        octet_length(created_by) BETWEEN 1 AND 256
        AND created_by !~ '[\u0001-\u001f\u007f-\u009f]'),
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    expires_at timestamptz NOT NULL,
    revoked_at timestamptz,
    reason text CHECK (
        octet_length(reason) BETWEEN 1 AND 1024
        AND reason !~ '[\u0001-\u001f\u007f-\u009f]'),
    -- The principal's fields come together, shaped by its kind.
    CONSTRAINT tokens_principal CHECK (
        (principal_kind = 'agent' AND agent_type IS NOT NULL AND instance IS NOT NULL
            AND admin IS NULL)
        OR (principal_kind = 'admin' AND agent_type IS NULL AND instance IS NULL
            AND admin IS NOT NULL)),
    -- Every token expires, at most 30 days after it was issued.
    CONSTRAINT tokens_lifetime CHECK (
        expires_at > created_at AND expires_at <= created_at + interval '30 days'),
    -- A revocation has its time and its reason, or neither.
    CONSTRAINT tokens_revocation CHECK ((revoked_at IS NULL) = (reason IS NULL)),
    CONSTRAINT tokens_revoked_after_issue CHECK (revoked_at IS NULL OR revoked_at >= created_at)
);
CREATE INDEX tokens_org ON coffer.tokens (org_id, created_at);

-- coffer_app may write the revocation columns, but a revoked token must
-- stay revoked: a compromised server could otherwise bring one back.
CREATE FUNCTION coffer.tokens_revoke_once() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
    IF OLD.revoked_at IS NOT NULL THEN
        RAISE EXCEPTION 'token % is revoked; a revocation is final', OLD.id
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END
$$;
REVOKE ALL ON FUNCTION coffer.tokens_revoke_once() FROM PUBLIC;
CREATE TRIGGER tokens_revoke_once BEFORE UPDATE ON coffer.tokens
    FOR EACH ROW EXECUTE FUNCTION coffer.tokens_revoke_once();
COMMENT ON FUNCTION coffer.tokens_revoke_once() IS
    'Refuses every change of a revoked token, so that a revocation cannot be undone.';

COMMENT ON TABLE coffer.tokens IS
    'Bearer tokens an admin issued for a principal of its org. Holds only each token''s HMAC-SHA256 under the token MAC key (a secret of the PKCS#11 token), never the token: nothing here authenticates a request. Rows are never deleted; only the revocation columns change, once.';
COMMENT ON COLUMN coffer.tokens.id IS
    'Token identifier, shown with the token when it is issued and used to revoke it; not secret.';
COMMENT ON COLUMN coffer.tokens.org_id IS 'The org of the principal the token stands for.';
COMMENT ON COLUMN coffer.tokens.digest IS
    'HMAC-SHA256 of the whole token text ("cft_" and 43 base64url characters) under the key named by mac_key; a request''s token is looked up by this digest.';
COMMENT ON COLUMN coffer.tokens.mac_mech IS 'How the digest was made: hmac-sha256 (CKM_SHA256_HMAC).';
COMMENT ON COLUMN coffer.tokens.mac_key IS
    'CKA_LABEL of the token MAC key that made the digest: coffer-token-mac-v<n>.';
COMMENT ON COLUMN coffer.tokens.principal_kind IS 'Whom the token stands for: an agent or an admin.';
COMMENT ON COLUMN coffer.tokens.agent_type IS 'The agent''s type; NULL for an admin.';
COMMENT ON COLUMN coffer.tokens.instance IS 'The agent''s instance; NULL for an admin.';
COMMENT ON COLUMN coffer.tokens.admin IS 'The admin''s name; NULL for an agent.';
COMMENT ON COLUMN coffer.tokens.description IS 'What the token is for, as the issuing admin said; NULL if none.';
COMMENT ON COLUMN coffer.tokens.created_by IS
    'The admin who issued it: its SPIFFE ID, or "admin <name> of org <org>" for an admin authenticated by a bearer token.';
COMMENT ON COLUMN coffer.tokens.created_at IS 'When the token was issued, by the database''s clock.';
COMMENT ON COLUMN coffer.tokens.expires_at IS
    'From this instant the token is refused; at most 30 days after created_at (24 hours unless the admin chose otherwise).';
COMMENT ON COLUMN coffer.tokens.revoked_at IS 'When an admin revoked the token, ending it at once; NULL while not revoked.';
COMMENT ON COLUMN coffer.tokens.reason IS 'Why the token was revoked, as the admin said; NULL while not revoked.';

-- ---- What auditors read -------------------------------------------------------------

CREATE VIEW audit.tokens AS
    SELECT t.id, o.name AS org, t.principal_kind, t.agent_type, t.instance, t.admin,
           t.description, t.created_by, t.created_at, t.expires_at, t.revoked_at, t.reason
    FROM coffer.tokens t JOIN coffer.orgs o ON o.id = t.org_id;

COMMENT ON VIEW audit.tokens IS
    'Every bearer token issued: for whom, by whom, when it expires and whether it was revoked. The digests are left out.';
COMMENT ON COLUMN audit.tokens.id IS 'Token identifier (named in the token_create and token_revoke events).';
COMMENT ON COLUMN audit.tokens.org IS 'The org of the principal the token stands for.';
COMMENT ON COLUMN audit.tokens.principal_kind IS 'agent or admin.';
COMMENT ON COLUMN audit.tokens.agent_type IS 'The agent''s type; NULL for an admin.';
COMMENT ON COLUMN audit.tokens.instance IS 'The agent''s instance; NULL for an admin.';
COMMENT ON COLUMN audit.tokens.admin IS 'The admin''s name; NULL for an agent.';
COMMENT ON COLUMN audit.tokens.description IS 'What the token is for; NULL if none was given.';
COMMENT ON COLUMN audit.tokens.created_by IS 'The admin who issued it.';
COMMENT ON COLUMN audit.tokens.created_at IS 'When it was issued.';
COMMENT ON COLUMN audit.tokens.expires_at IS 'When it stops working.';
COMMENT ON COLUMN audit.tokens.revoked_at IS 'When it was revoked; NULL if it was not.';
COMMENT ON COLUMN audit.tokens.reason IS 'Why it was revoked; NULL if it was not.';

REVOKE ALL ON audit.tokens FROM PUBLIC;
GRANT SELECT ON audit.tokens TO coffer_auditor;

-- ---- Audit events of tokens and of token principals ----------------------------------
-- The action CHECK is replaced whole: it keeps every action of 004 and 005.

ALTER TABLE coffer.audit_events DROP CONSTRAINT audit_events_action_check;
ALTER TABLE coffer.audit_events ADD CONSTRAINT audit_events_action_check CHECK (
    action IN ('access', 'create', 'revoke', 'phase', 'metadata', 'auth_failure',
               'request', 'fulfill', 'deny', 'approve', 'approval_revoke',
               'token_create', 'token_revoke'));

-- A principal authenticated by a bearer token has no trust domain.
ALTER TABLE coffer.audit_events DROP CONSTRAINT audit_events_principal;
ALTER TABLE coffer.audit_events ADD CONSTRAINT audit_events_principal CHECK (
    (principal_kind IS NULL AND trust_domain IS NULL AND org IS NULL
        AND agent_type IS NULL AND instance IS NULL AND admin IS NULL)
    OR (principal_kind = 'agent' AND org IS NOT NULL
        AND agent_type IS NOT NULL AND instance IS NOT NULL AND admin IS NULL)
    OR (principal_kind = 'admin' AND org IS NOT NULL
        AND agent_type IS NULL AND instance IS NULL AND admin IS NOT NULL));

COMMENT ON COLUMN coffer.audit_events.action IS
    'What was asked: access (an agent asked for a credential''s values), create (a credential or a new version was stored), revoke (a credential was revoked), phase (a project moved to another phase), metadata (credential metadata read or listed), auth_failure (a request could not be authenticated), request (an agent filed a credential request, or a request was read or listed), fulfill (an admin fulfilled a request), deny (an admin denied a request), approve (an admin gave a standing approval for a critical credential), approval_revoke (an admin revoked one), token_create (an admin issued a bearer token), token_revoke (an admin revoked one). Token events name the token by its id, never by the token or its digest.';
COMMENT ON COLUMN coffer.audit_events.trust_domain IS
    'Trust domain of the principal''s SPIFFE ID; NULL when unauthenticated, and for a principal authenticated by a bearer token (principal_kind set, trust_domain NULL).';

-- ---- Privileges of coffer_app -----------------------------------------------------

REVOKE ALL ON coffer.tokens FROM PUBLIC;
GRANT SELECT, INSERT ON coffer.tokens TO coffer_app;
GRANT UPDATE (revoked_at, reason) ON coffer.tokens TO coffer_app;

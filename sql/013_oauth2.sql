-- SPDX-License-Identifier: Apache-2.0
--
-- 013_oauth2: OAuth2 credentials that Coffer keeps fresh. A version of an
-- oauth2 credential may name its provider (token URL, client id, and where
-- the client secret is held: another credential of the same project); when
-- an access or a brokered call finds its access_token expired or about to
-- expire, Coffer refreshes it with the refresh-token grant and stores the
-- answer as the next version. Each refresh is on record as action
-- 'refresh': one event before the refresh token leaves Coffer
-- ("POST https://host -> sending"), one with the outcome (the new version,
-- or refresh_failed with the provider's error code).
-- The action CHECK is replaced whole: it keeps every action of 004 to 012.

ALTER TABLE coffer.credential_versions
    ADD COLUMN oauth2_provider text CHECK (
        oauth2_provider IS NULL
        OR (octet_length(oauth2_provider) BETWEEN 2 AND 4096
            AND jsonb_typeof(oauth2_provider::jsonb) = 'object'));

COMMENT ON COLUMN coffer.credential_versions.oauth2_provider IS
    'For an oauth2 credential that Coffer refreshes, the provider as canonical JSON: {"token_url": https URL, "client_id": text, "client_secret": {"credential": name, "key": name} (absent for a public client), "client_auth": "basic" or "post"}. Never a secret: the client secret is another credential. NULL: not refreshed by Coffer.';

ALTER TABLE coffer.audit_events DROP CONSTRAINT audit_events_action_check;
ALTER TABLE coffer.audit_events ADD CONSTRAINT audit_events_action_check CHECK (
    action IN ('access', 'create', 'revoke', 'phase', 'metadata', 'auth_failure',
               'request', 'fulfill', 'deny', 'approve', 'approval_revoke',
               'token_create', 'token_revoke', 'use', 'refresh'));

COMMENT ON COLUMN coffer.audit_events.action IS
    'access, create, revoke, phase, metadata, auth_failure, request, fulfill, deny, approve, approval_revoke, token_create, token_revoke, use (a brokered call made with a credential the agent never saw; detail "METHOD https://host -> STATUS"), or refresh (Coffer renewed an oauth2 credential''s access token for the agent whose access found it expiring; detail "POST https://host -> STATUS", the new version, or the provider''s error code; reason refresh_failed when it failed).';

-- The provider is written once, in the transaction that stores its version.
GRANT UPDATE (oauth2_provider) ON coffer.credential_versions TO coffer_app;

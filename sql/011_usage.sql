-- SPDX-License-Identifier: Apache-2.0
--
-- 011_usage: how a credential is used through Coffer. A credential rule may
-- carry a usage spec (destinations, methods, where the secret is injected)
-- and say reveal: false, which makes an access of its values refused with
-- the reason secretless_only: the credential is then only used through
-- Coffer, never handed to an agent.

ALTER TABLE coffer.credential_rules
    ADD COLUMN usage text CHECK (
        usage IS NULL
        OR (octet_length(usage) BETWEEN 2 AND 262144 AND jsonb_typeof(usage::jsonb) = 'object')),
    ADD COLUMN secretless_only bool NOT NULL DEFAULT false,
    ADD CONSTRAINT credential_rules_secretless_needs_usage
        CHECK (NOT secretless_only OR usage IS NOT NULL);

COMMENT ON COLUMN coffer.credential_rules.usage IS
    'The usage spec as canonical JSON: {"destinations": [https URLs], "methods": [...], "inject": [{"header"|"query": name, "value": template}]}; NULL: the credential is not used through Coffer.';
COMMENT ON COLUMN coffer.credential_rules.secretless_only IS
    'The policy says reveal: false: an access of the values is refused (secretless_only); the credential is only used through Coffer.';

-- The reason codes an access can be refused with, as the audit columns list them.

COMMENT ON COLUMN coffer.audit_events.reason IS
    'For access the decision''s reason code: granted, no_grant, wrong_phase, secretless_only, expired, revoked, not_found, not_project_member, purpose_missing, approval_required, integrity_error or token_unavailable. For other actions ok, or the error that refused the operation (for example not_found).';
COMMENT ON COLUMN audit.access_log.reason IS 'For access, the decision''s reason code (granted, no_grant, wrong_phase, secretless_only, expired, revoked, not_found, not_project_member, purpose_missing, approval_required, integrity_error, token_unavailable); otherwise ok or the error that refused it.';
COMMENT ON COLUMN audit.denials.reason IS 'For access, the decision''s reason code (granted, no_grant, wrong_phase, secretless_only, expired, revoked, not_found, not_project_member, purpose_missing, approval_required, integrity_error, token_unavailable); otherwise ok or the error that refused it.';
COMMENT ON VIEW audit.denials IS 'Every refused operation: audit.access_log where allowed is false. The agent was told permission_denied (or secretless_only, for a credential it holds a grant for but may only use through Coffer); reason holds the true cause.';

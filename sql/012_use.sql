-- SPDX-License-Identifier: Apache-2.0
--
-- 012_use: brokered calls. An agent uses a credential through Coffer
-- (POST .../credentials/{name}/use) without seeing it; each call is one
-- audit event with action 'use', its detail "METHOD https://host -> STATUS"
-- (the host only, never a path or query, which may carry data).
-- The action CHECK is replaced whole: it keeps every action of 004 to 006.

ALTER TABLE coffer.audit_events DROP CONSTRAINT audit_events_action_check;
ALTER TABLE coffer.audit_events ADD CONSTRAINT audit_events_action_check CHECK (
    action IN ('access', 'create', 'revoke', 'phase', 'metadata', 'auth_failure',
               'request', 'fulfill', 'deny', 'approve', 'approval_revoke',
               'token_create', 'token_revoke', 'use'));

COMMENT ON COLUMN coffer.audit_events.action IS
    'access, create, revoke, phase, metadata, auth_failure, request, fulfill, deny, approve, approval_revoke, token_create, token_revoke, or use (a brokered call made with a credential the agent never saw; detail "METHOD https://host -> STATUS").';

-- SPDX-License-Identifier: Apache-2.0
--
-- privileges.sql (pgTAP): who may do what to the audit log.
--
-- * coffer_auditor reads every view of schema audit, and nothing of schema
--   coffer: not the events table, not ciphertext, not credentials.
-- * coffer_app appends events but cannot change, delete or truncate events
--   or checkpoints, cannot choose an event's number, time or hash, and cannot
--   read an event's content back; the database numbers, dates and hashes
--   what it inserts.
-- * coffer_owner, which owns the tables and so has every privilege, is
--   stopped by the append-only triggers.
-- * Every view of schema audit and every column of each has a COMMENT.
--
-- Run by tests/integration/audit_sql_test.c through pg_prove as the cluster
-- superuser, after pgtap was installed in schema tap. Everything happens in
-- one transaction that is rolled back, so the event inserted here is gone
-- afterwards (its number stays used, like any rolled-back event's).
--
-- Switching roles: pgTAP records its plan and results in temporary tables
-- created by the role that connected (the cluster superuser), which
-- coffer_app or coffer_auditor cannot write. So a statement to run as another
-- role goes through pg_temp.run_as, which does SET LOCAL ROLE, runs the
-- statement, and RESET ROLE. Used inside throws_ok or lives_ok, it runs in
-- pgTAP's own subtransaction: when the statement fails, rolling that
-- subtransaction back also undoes the SET LOCAL ROLE, so pgTAP records the
-- result as the superuser again; when it succeeds, the RESET ROLE has already
-- restored it. (A function declared with SET role would restore the role by
-- itself, but needs one function per role; this one takes the role.)

BEGIN;
SET LOCAL search_path = tap, public;

SELECT plan(47);

CREATE FUNCTION pg_temp.run_as(who name, stmt text) RETURNS void
    LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('SET LOCAL ROLE %I', who);
    EXECUTE stmt;
    RESET ROLE;
END
$$;

-- ---- coffer_auditor ---------------------------------------------------------------

SELECT set_eq(
    $$SELECT viewname::text FROM pg_catalog.pg_views WHERE schemaname = 'audit'$$,
    ARRAY['access_log', 'denials', 'unexpected_purposes', 'credential_usage', 'credentials',
          'expiring_credentials', 'key_inventory', 'ceremonies', 'policy_versions',
          'phase_changes', 'tokens', 'checkpoints', 'signing_keys', 'integrity', 'prunes',
          'verifications', 'officers', 'quorum', 'ceremony_plans', 'ceremony_approvals'],
    'schema audit holds exactly the views docs/auditors.md lists');

SELECT lives_ok(format($$SELECT pg_temp.run_as('coffer_auditor', %L)$$,
                       'SELECT * FROM audit.' || v || ' LIMIT 1'),
                'coffer_auditor reads audit.' || v)
FROM unnest(ARRAY['access_log', 'denials', 'unexpected_purposes', 'credential_usage',
                  'credentials', 'expiring_credentials', 'key_inventory', 'ceremonies',
                  'policy_versions', 'phase_changes', 'tokens', 'checkpoints', 'signing_keys',
                  'integrity', 'prunes', 'verifications', 'officers', 'quorum',
                  'ceremony_plans', 'ceremony_approvals']) AS v
ORDER BY v;

SELECT ok(NOT has_schema_privilege('coffer_auditor', 'coffer', 'USAGE'),
          'coffer_auditor has no USAGE on schema coffer');

SELECT throws_ok($$SELECT pg_temp.run_as('coffer_auditor',
                     'SELECT count(*) FROM coffer.audit_events')$$,
                 '42501', 'permission denied for schema coffer',
                 'coffer_auditor cannot read coffer.audit_events');
SELECT throws_ok($$SELECT pg_temp.run_as('coffer_auditor',
                     'SELECT ciphertext FROM coffer.credential_versions')$$,
                 '42501', 'permission denied for schema coffer',
                 'coffer_auditor cannot read ciphertext (coffer.credential_versions)');
SELECT throws_ok($$SELECT pg_temp.run_as('coffer_auditor',
                     'SELECT name FROM coffer.credentials')$$,
                 '42501', 'permission denied for schema coffer',
                 'coffer_auditor cannot read coffer.credentials');

SELECT is_empty(
    $$SELECT table_name || '.' || column_name FROM information_schema.columns
      WHERE table_schema = 'audit'
        AND column_name IN ('ciphertext', 'nonce', 'tag', 'aead', 'wrapped', 'wrapped_cek',
                            'digest', 'token_digest')$$,
    'no view of schema audit carries ciphertext, a wrapped key or a token digest');

-- ---- coffer_app ---------------------------------------------------------------------

SELECT throws_ok($$SELECT pg_temp.run_as('coffer_app',
                     'UPDATE coffer.audit_events SET reason = ''granted''')$$,
                 '42501', 'permission denied for table audit_events',
                 'coffer_app cannot UPDATE coffer.audit_events');
SELECT throws_ok($$SELECT pg_temp.run_as('coffer_app', 'DELETE FROM coffer.audit_events')$$,
                 '42501', 'permission denied for table audit_events',
                 'coffer_app cannot DELETE from coffer.audit_events');
SELECT throws_ok($$SELECT pg_temp.run_as('coffer_app', 'TRUNCATE coffer.audit_events')$$,
                 '42501', 'permission denied for table audit_events',
                 'coffer_app cannot TRUNCATE coffer.audit_events');
SELECT throws_ok($$SELECT pg_temp.run_as('coffer_app',
                     'UPDATE coffer.audit_checkpoints SET events = events')$$,
                 '42501', 'permission denied for table audit_checkpoints',
                 'coffer_app cannot UPDATE coffer.audit_checkpoints');
SELECT throws_ok($$SELECT pg_temp.run_as('coffer_app', 'DELETE FROM coffer.audit_checkpoints')$$,
                 '42501', 'permission denied for table audit_checkpoints',
                 'coffer_app cannot DELETE from coffer.audit_checkpoints');
SELECT throws_ok($$SELECT pg_temp.run_as('coffer_app', 'TRUNCATE coffer.audit_checkpoints')$$,
                 '42501', 'permission denied for table audit_checkpoints',
                 'coffer_app cannot TRUNCATE coffer.audit_checkpoints');

SELECT throws_ok($$SELECT pg_temp.run_as('coffer_app',
                     'INSERT INTO coffer.audit_events (id, action, allowed, reason, request_id)
                      VALUES (1000000, ''metadata'', true, ''ok'', ''forged-id'')')$$,
                 '42501', 'permission denied for table audit_events',
                 'coffer_app cannot choose an event''s id');
SELECT throws_ok($$SELECT pg_temp.run_as('coffer_app',
                     'INSERT INTO coffer.audit_events (at, action, allowed, reason, request_id)
                      VALUES (now() - interval ''1 day'', ''metadata'', true, ''ok'', ''forged-at'')')$$,
                 '42501', 'permission denied for table audit_events',
                 'coffer_app cannot choose an event''s time');
SELECT throws_ok($$SELECT pg_temp.run_as('coffer_app',
                     'INSERT INTO coffer.audit_events (row_hash, action, allowed, reason, request_id)
                      VALUES (sha256(''x''), ''metadata'', true, ''ok'', ''forged-hash'')')$$,
                 '42501', 'permission denied for table audit_events',
                 'coffer_app cannot choose an event''s row_hash');
SELECT throws_ok($$SELECT pg_temp.run_as('coffer_app', 'SELECT purpose FROM coffer.audit_events')$$,
                 '42501', 'permission denied for table audit_events',
                 'coffer_app cannot read an event''s purpose');

SELECT lives_ok($$SELECT pg_temp.run_as('coffer_app',
                    'INSERT INTO coffer.audit_events (action, allowed, reason, request_id, purpose)
                     VALUES (''metadata'', true, ''ok'', ''pgtap-app'', ''pgtap purpose'')
                     RETURNING id, row_hash')$$,
                'coffer_app appends an event and reads back its id and row_hash');

SELECT ok((SELECT id FROM coffer.audit_events WHERE request_id = 'pgtap-app')
          > (SELECT COALESCE(max(id), 0) FROM coffer.audit_events WHERE request_id <> 'pgtap-app'),
          'the database numbered the app''s event after every other');
SELECT ok((SELECT at BETWEEN now() AND clock_timestamp()
           FROM coffer.audit_events WHERE request_id = 'pgtap-app'),
          'the database dated the app''s event within this transaction');
SELECT ok((SELECT octet_length(e.row_hash) = 32 AND e.row_hash = audit.event_hash(e)
           FROM coffer.audit_events e WHERE request_id = 'pgtap-app'),
          'the database set the app''s event''s row_hash to audit.event_hash(row)');

-- ---- coffer_owner: every privilege, stopped by the triggers -----------------------------

SELECT throws_ok($$SELECT pg_temp.run_as('coffer_owner',
                     'UPDATE coffer.audit_events SET purpose = ''edited'' WHERE request_id = ''pgtap-app''')$$,
                 '42501', 'coffer.audit_events is append-only: UPDATE refused',
                 'the owner''s UPDATE of an event is refused by the trigger');
SELECT throws_ok($$SELECT pg_temp.run_as('coffer_owner',
                     'DELETE FROM coffer.audit_events WHERE request_id = ''pgtap-app''')$$,
                 '42501', 'coffer.audit_events is append-only: DELETE refused',
                 'the owner''s DELETE of an event is refused by the trigger');
SELECT throws_ok($$SELECT pg_temp.run_as('coffer_owner', 'TRUNCATE coffer.audit_events')$$,
                 '42501', 'coffer.audit_events is append-only: TRUNCATE refused',
                 'the owner''s TRUNCATE of the events is refused by the trigger');

SELECT isnt_empty('SELECT seq FROM coffer.audit_checkpoints',
                  'there are checkpoints to try to change');
SELECT throws_ok($$SELECT pg_temp.run_as('coffer_owner',
                     'UPDATE coffer.audit_checkpoints SET at = at')$$,
                 '42501', 'coffer.audit_checkpoints is append-only: UPDATE refused',
                 'the owner''s UPDATE of a checkpoint is refused by the trigger');
SELECT throws_ok($$SELECT pg_temp.run_as('coffer_owner', 'DELETE FROM coffer.audit_checkpoints')$$,
                 '42501', 'coffer.audit_checkpoints is append-only: DELETE refused',
                 'the owner''s DELETE of a checkpoint is refused by the trigger');

-- ---- Comments ----------------------------------------------------------------------

SELECT is_empty(
    $$SELECT c.relname || COALESCE('.' || a.attname, '')
      FROM pg_catalog.pg_class c
      JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
      CROSS JOIN LATERAL (
          SELECT 0::int2 AS attnum, NULL::name AS attname
          UNION ALL
          SELECT attnum, attname FROM pg_catalog.pg_attribute
          WHERE attrelid = c.oid AND attnum > 0 AND NOT attisdropped) a
      WHERE n.nspname = 'audit' AND c.relkind = 'v'
        AND NOT EXISTS (
            SELECT 1 FROM pg_catalog.pg_description d
            WHERE d.classoid = 'pg_catalog.pg_class'::regclass AND d.objoid = c.oid
              AND d.objsubid = a.attnum AND d.description <> '')$$,
    'every view of schema audit and every column of each has a COMMENT');

SELECT * FROM finish();
ROLLBACK;

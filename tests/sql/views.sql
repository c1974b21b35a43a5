-- SPDX-License-Identifier: Apache-2.0
--
-- views.sql (pgTAP): the audit views hold exactly what the scripted scenario
-- of tests/integration/audit_sql_test.c did, read as coffer_auditor.
--
-- The scenario, in org acme, project proj (phases build, staging, production):
--   admin alice stores registry, prod-db, rev-key (90 days) and short-token
--   (3 days), all api_key, tier medium: 4 create events;
--   builder b-1 is granted registry twice ("push image app:1", "app:2") and
--   once with a purpose outside its patterns ("mine bitcoin"), short-token
--   ("ci build") and rev-key ("use");
--   refused: deployer d-1 registry (no_grant), deployer d-1 prod-db in build
--   (wrong_phase), outsider o-1 registry (not_project_member), b-1 registry
--   without a purpose (purpose_missing), b-1 no-such (not_found);
--   alice revokes rev-key ("leaked in a CI log"), then b-1 rev-key (revoked);
--   alice moves proj from build to staging; d-1 prod-db again (wrong_phase);
--   b-1 registry "push image app:3" (granted).
--   19 events in all, then sealed completely with audit signing key v1.
--
-- Every query runs as coffer_auditor through pg_temp.auditor, which does SET
-- LOCAL ROLE, runs the query, RESET ROLE and returns its one text value:
-- pgTAP records results in temporary tables of the role that connected (the
-- superuser), which the auditor could not write, so only the query itself
-- runs as the auditor. A query that fails aborts the run, which pg_prove
-- reports as a failure.

BEGIN;
SET LOCAL search_path = tap, public;

SELECT plan(16);

CREATE FUNCTION pg_temp.auditor(query text) RETURNS text
    LANGUAGE plpgsql AS $$
DECLARE
    v text;
BEGIN
    SET LOCAL ROLE coffer_auditor;
    EXECUTE query INTO STRICT v;
    RESET ROLE;
    RETURN v;
END
$$;

-- ---- Denials, usage, purposes ---------------------------------------------------------

SELECT is(pg_temp.auditor($$
    SELECT string_agg(reason || '=' || n, ',' ORDER BY reason)
    FROM (SELECT reason, count(*) AS n FROM audit.denials GROUP BY reason) s$$),
    'no_grant=1,not_found=1,not_project_member=1,purpose_missing=1,revoked=1,wrong_phase=2',
    'audit.denials: the refusals per reason');

SELECT is(pg_temp.auditor($$
    SELECT count(*)::text FROM audit.denials WHERE allowed OR action <> 'access'$$),
    '0',
    'audit.denials: only refused accesses (nothing else was refused)');

SELECT is(pg_temp.auditor($$
    SELECT accesses || '|' || granted || '|' || denied || '|' || unexpected_purposes || '|'
           || array_to_string(purposes, ';')
    FROM audit.credential_usage
    WHERE org = 'acme' AND project = 'proj' AND credential = 'registry'
      AND agent_org = 'acme' AND agent_type = 'builder' AND instance = 'b-1'$$),
    '5|4|1|1|mine bitcoin;push image app:1;push image app:2;push image app:3',
    'audit.credential_usage: builder b-1 on registry (accesses, granted, denied, unexpected, purposes)');

SELECT is(pg_temp.auditor($$
    SELECT string_agg(credential || ':' || granted || '/' || denied, ',' ORDER BY credential)
    FROM audit.credential_usage WHERE agent_type = 'builder' AND instance = 'b-1'$$),
    'no-such:0/1,registry:4/1,rev-key:1/1,short-token:1/0',
    'audit.credential_usage: every credential builder b-1 asked for, granted/denied');

SELECT is(pg_temp.auditor($$
    SELECT string_agg(credential || ':' || granted || '/' || denied, ',' ORDER BY credential)
    FROM audit.credential_usage WHERE agent_type = 'deployer' AND instance = 'd-1'$$),
    'prod-db:0/2,registry:0/1',
    'audit.credential_usage: deployer d-1, refused every time');

SELECT is(pg_temp.auditor($$
    SELECT string_agg(target_org || '/' || project || '/' || credential || '|' || agent_type || '|'
                      || instance || '|' || purpose || '|' || version, ',')
    FROM audit.unexpected_purposes$$),
    'acme/proj/registry|builder|b-1|mine bitcoin|1',
    'audit.unexpected_purposes: exactly the one access with an undeclared purpose');

-- ---- Credentials and keys ------------------------------------------------------------

SELECT is(pg_temp.auditor($$
    SELECT string_agg(credential, ',' ORDER BY credential) FROM audit.expiring_credentials$$),
    'short-token',
    'audit.expiring_credentials: the 3-day credential, not the 90-day ones nor the revoked one');

SELECT is(pg_temp.auditor($$
    SELECT (NOT expired AND expires_in > interval '2 days' AND expires_in <= interval '3 days')::text
    FROM audit.expiring_credentials WHERE credential = 'short-token'$$),
    'true',
    'audit.expiring_credentials: short-token expires in 2 to 3 days and has not expired');

SELECT is(pg_temp.auditor($$
    SELECT (revoked_at IS NOT NULL)::text || '|' || revoked_reason
    FROM audit.credentials WHERE org = 'acme' AND credential = 'rev-key'$$),
    'true|leaked in a CI log',
    'audit.credentials: rev-key revoked, with its reason');

SELECT is(pg_temp.auditor($$
    SELECT string_agg(kind || ':' || COALESCE(org, '-') || ':' || version || ':' || state || ':'
                      || still_wraps || ':' || (kcv ~ '^[0-9a-f]{6}$'), ','
                      ORDER BY kind, org, version)
    FROM audit.key_inventory WHERE kind IN ('master', 'org')$$),
    'master:-:1:current:1:true,org:acme:1:current:4:true',
    'audit.key_inventory: MK v1 wraps the org key, org key acme v1 wraps the 4 credential versions');

SELECT is(pg_temp.auditor($$
    SELECT k.label || ':' || k.state || ':'
           || (k.still_wraps = (SELECT count(*) FROM audit.checkpoints))
    FROM audit.key_inventory k WHERE k.kind = 'audit-signing'$$),
    'coffer-audit-v1:current:true',
    'audit.key_inventory: the audit signing key, counting every checkpoint it signed');

SELECT is(pg_temp.auditor($$
    SELECT from_phase || '->' || to_phase || '|' || changed_by FROM audit.phase_changes
    WHERE org = 'acme' AND project = 'proj'$$),
    'build->staging|spiffe://example.org/org/acme/admin/alice',
    'audit.phase_changes: the one move, and who made it');

-- ---- Integrity ------------------------------------------------------------------------

SELECT is(pg_temp.auditor($$
    SELECT events || '|' || unsealed_events || '|' || (last_checkpoint >= 1) || '|'
           || (oldest_unsealed_age IS NULL) || '|' || signing_key_version || '|'
           || (signing_key_fingerprint = (SELECT fingerprint_hex FROM audit.signing_keys
                                          WHERE version = 1))
    FROM audit.integrity$$),
    '19|0|true|true|1|true',
    'audit.integrity: 19 events, none unsealed, at least one checkpoint, signed by key v1');

SELECT is(pg_temp.auditor($$
    SELECT count(*) || '|' || count(*) FILTER (WHERE signature IS NULL OR octet_length(signature) < 8)
           || '|' || sum(events) || '|' || min(seq) || '|' || (max(seq) = count(*))
    FROM audit.checkpoints$$),
    (SELECT count(*) || '|0|19|1|true' FROM coffer.audit_checkpoints),
    'audit.checkpoints: every checkpoint signed, numbered 1 upwards, sealing the 19 events');

SELECT is(pg_temp.auditor($$
    SELECT count(*) || '|' || bool_and(hash_matches) || '|' || count(*) FILTER (WHERE checkpoint IS NULL)
    FROM audit.access_log$$),
    '19|true|0',
    'audit.access_log: every event still matches its hash and is sealed');

SELECT is(pg_temp.auditor($$
    SELECT count(*) || '|' || string_agg(DISTINCT org_key_version || '/' || mk_version, ',')
    FROM audit.access_log WHERE action = 'access' AND allowed$$),
    '6|1/1',
    'audit.access_log: each of the 6 granted accesses names org key v1 under MK v1');

SELECT * FROM finish();
ROLLBACK;

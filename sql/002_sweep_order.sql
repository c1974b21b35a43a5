-- SPDX-License-Identifier: Apache-2.0
-- 002: the sweeper walks the rows of each stale org key version in
-- (credential_id, version) order, resuming after the last row it moved. With
-- those columns in the index that walk is one ordered range scan per stale
-- version, whatever the table's statistics say, instead of a scan of the
-- whole table sorted at every batch.

DROP INDEX coffer.credential_versions_org_key;

CREATE INDEX credential_versions_org_key
    ON coffer.credential_versions (org_id, org_key_version, credential_id, version);

COMMENT ON INDEX coffer.credential_versions_org_key IS
    'Rows by the org key version that wraps them, in key order: reference counts before '
    'retiring a version, and the sweeper''s walk over each stale version.';

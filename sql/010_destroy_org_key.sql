-- SPDX-License-Identifier: Apache-2.0
--
-- 010_destroy_org_key: officers may destroy one retired org key version in a
-- ceremony (the plan kind destroy-org), as they destroy a master key version.

ALTER TABLE coffer.ceremony_plans DROP CONSTRAINT ceremony_plans_kind_check;
ALTER TABLE coffer.ceremony_plans ADD CONSTRAINT ceremony_plans_kind_check CHECK (
    kind IN ('officer-add', 'officer-remove', 'set-quorum', 'rotate-mk', 'retire-mk', 'retire-org',
             'destroy-mk', 'destroy-org', 'shred-org'));

COMMENT ON COLUMN audit.ceremony_plans.kind IS 'officer-add, officer-remove, set-quorum, rotate-mk, retire-mk, retire-org, destroy-mk, destroy-org or shred-org.';

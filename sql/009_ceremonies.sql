-- SPDX-License-Identifier: Apache-2.0
-- Security officers and quorum ceremonies.
--
-- Officers hold passphrases (stored only as scrypt hashes). An operation on the
-- key hierarchy is first written down as a plan with a canonical description;
-- each officer approves that exact description (by its SHA-256) with their
-- passphrase, and the plan runs once M distinct current officers have approved
-- it before it expired. The run's transcript, signed by the audit signing key,
-- is a row of coffer.ceremonies. Approvals and transcripts are append-only,
-- for the owner too.

-- ---- Officers and the quorum -----------------------------------------------------------

CREATE TABLE coffer.officers (
    name text PRIMARY KEY CHECK (name ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    passphrase_hash text NOT NULL CHECK (
        passphrase_hash ~ '^scrypt\$[0-9]{1,8}\$[0-9]{1,3}\$[0-9]{1,3}\$[A-Za-z0-9+/=]{4,64}\$[A-Za-z0-9+/=]{4,128}$'),
    added_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    added_in uuid REFERENCES coffer.ceremonies (id),
    removed_at timestamptz,
    removed_in uuid REFERENCES coffer.ceremonies (id),
    CHECK ((removed_at IS NULL) = (removed_in IS NULL))
);

COMMENT ON TABLE coffer.officers IS
    'Security officers who approve key ceremonies. A removed officer stays listed, with the ceremony that removed them.';
COMMENT ON COLUMN coffer.officers.name IS 'The officer''s name, as they give it when approving.';
COMMENT ON COLUMN coffer.officers.passphrase_hash IS
    'scrypt$N$r$p$<salt base64>$<hash base64>: the officer''s passphrase, only as a memory-hard hash.';
COMMENT ON COLUMN coffer.officers.added_at IS 'When the officer was enrolled.';
COMMENT ON COLUMN coffer.officers.added_in IS 'The ceremony that enrolled the officer.';
COMMENT ON COLUMN coffer.officers.removed_at IS 'When the officer was removed; NULL while they serve.';
COMMENT ON COLUMN coffer.officers.removed_in IS 'The ceremony that removed the officer.';

CREATE TABLE coffer.quorum (
    singleton bool PRIMARY KEY DEFAULT true CHECK (singleton),
    m int NOT NULL CHECK (m BETWEEN 1 AND 64),
    set_in uuid NOT NULL REFERENCES coffer.ceremonies (id),
    set_at timestamptz NOT NULL DEFAULT clock_timestamp()
);

COMMENT ON TABLE coffer.quorum IS 'The quorum: how many distinct officers must approve a ceremony (one row).';
COMMENT ON COLUMN coffer.quorum.singleton IS 'Always true: there is one quorum.';
COMMENT ON COLUMN coffer.quorum.m IS 'Approvals a ceremony needs.';
COMMENT ON COLUMN coffer.quorum.set_in IS 'The ceremony that set it.';
COMMENT ON COLUMN coffer.quorum.set_at IS 'When it was set.';

-- ---- Plans and approvals ----------------------------------------------------------------

CREATE TABLE coffer.ceremony_plans (
    id uuid PRIMARY KEY,
    kind text NOT NULL CHECK (kind IN ('officer-add', 'officer-remove', 'set-quorum', 'rotate-mk',
                                       'retire-mk', 'retire-org', 'destroy-mk', 'shred-org')),
    args text NOT NULL CHECK (octet_length(args) <= 256 AND args !~ '[\u0001-\u001f\u007f]'),
    description text NOT NULL CHECK (octet_length(description) BETWEEN 1 AND 65536),
    description_sha256 bytea NOT NULL CHECK (octet_length(description_sha256) = 32),
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    state text NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'completed', 'aborted')),
    ceremony_id uuid REFERENCES coffer.ceremonies (id),
    CHECK (expires_at > created_at AND expires_at <= created_at + interval '24 hours'),
    CHECK ((state = 'open') = (ceremony_id IS NULL))
);

COMMENT ON TABLE coffer.ceremony_plans IS
    'Ceremonies prepared for approval: the exact operation, described in plain text, that officers approve by its SHA-256.';
COMMENT ON COLUMN coffer.ceremony_plans.id IS 'Plan identifier, named in the description itself.';
COMMENT ON COLUMN coffer.ceremony_plans.kind IS 'The operation.';
COMMENT ON COLUMN coffer.ceremony_plans.args IS 'Its arguments, separated by spaces.';
COMMENT ON COLUMN coffer.ceremony_plans.description IS 'The canonical description shown to every officer.';
COMMENT ON COLUMN coffer.ceremony_plans.description_sha256 IS 'SHA-256 of the description.';
COMMENT ON COLUMN coffer.ceremony_plans.created_at IS 'When it was prepared.';
COMMENT ON COLUMN coffer.ceremony_plans.expires_at IS 'Approvals after this instant are refused, and the plan no longer runs.';
COMMENT ON COLUMN coffer.ceremony_plans.state IS 'open, completed or aborted.';
COMMENT ON COLUMN coffer.ceremony_plans.ceremony_id IS 'The ceremony that ran it; NULL while open.';

-- One-way: only an open plan may change, only to closed, only naming its ceremony.
CREATE FUNCTION coffer.ceremony_plans_close_once() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.state = 'open' AND NEW.state IN ('completed', 'aborted')
       AND (NEW.id, NEW.kind, NEW.args, NEW.description, NEW.description_sha256, NEW.created_at,
            NEW.expires_at)
           IS NOT DISTINCT FROM (OLD.id, OLD.kind, OLD.args, OLD.description,
                                 OLD.description_sha256, OLD.created_at, OLD.expires_at) THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'coffer.ceremony_plans: % refused (a plan is closed once, and never edited)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER ceremony_plans_close_once BEFORE UPDATE OR DELETE ON coffer.ceremony_plans
    FOR EACH ROW EXECUTE FUNCTION coffer.ceremony_plans_close_once();

CREATE TABLE coffer.ceremony_approvals (
    plan_id uuid NOT NULL REFERENCES coffer.ceremony_plans (id),
    officer text NOT NULL REFERENCES coffer.officers (name),
    description_sha256 bytea NOT NULL CHECK (octet_length(description_sha256) = 32),
    approved_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (plan_id, officer)
);

COMMENT ON TABLE coffer.ceremony_approvals IS
    'Each officer''s approval of a plan, given with their passphrase for the description whose SHA-256 they read.';
COMMENT ON COLUMN coffer.ceremony_approvals.plan_id IS 'The plan approved.';
COMMENT ON COLUMN coffer.ceremony_approvals.officer IS 'The officer who approved it.';
COMMENT ON COLUMN coffer.ceremony_approvals.description_sha256 IS 'The SHA-256 the officer read and approved; counts only if it is the plan''s.';
COMMENT ON COLUMN coffer.ceremony_approvals.approved_at IS 'When, by the database clock.';

ALTER TABLE coffer.ceremonies ADD COLUMN plan_id uuid REFERENCES coffer.ceremony_plans (id);
COMMENT ON COLUMN coffer.ceremonies.plan_id IS 'The plan the ceremony ran; NULL for init and rotate-org-key.';

-- ---- Append-only ---------------------------------------------------------------------------

CREATE FUNCTION coffer.ceremony_refuse_change() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RAISE EXCEPTION 'coffer.% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER ceremony_approvals_append_only BEFORE UPDATE OR DELETE ON coffer.ceremony_approvals
    FOR EACH ROW EXECUTE FUNCTION coffer.ceremony_refuse_change();
CREATE TRIGGER ceremony_approvals_no_truncate BEFORE TRUNCATE ON coffer.ceremony_approvals
    FOR EACH STATEMENT EXECUTE FUNCTION coffer.ceremony_refuse_change();
CREATE TRIGGER ceremonies_append_only BEFORE UPDATE OR DELETE ON coffer.ceremonies
    FOR EACH ROW EXECUTE FUNCTION coffer.ceremony_refuse_change();
CREATE TRIGGER ceremonies_no_truncate BEFORE TRUNCATE ON coffer.ceremonies
    FOR EACH STATEMENT EXECUTE FUNCTION coffer.ceremony_refuse_change();
CREATE TRIGGER ceremony_plans_no_truncate BEFORE TRUNCATE ON coffer.ceremony_plans
    FOR EACH STATEMENT EXECUTE FUNCTION coffer.ceremony_refuse_change();

-- The one change a signing key row may take besides retirement: naming, once, the
-- ceremony that recorded it (a key made by `coffer ceremony init` is recorded before
-- the transcript that names it is signed).
CREATE OR REPLACE FUNCTION coffer.audit_refuse_change() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF TG_LEVEL = 'ROW' AND TG_OP = 'DELETE' AND TG_TABLE_NAME = 'audit_events' THEN
        IF OLD.id <= coffer.audit_pruned_through() THEN
            RETURN OLD;
        END IF;
    END IF;
    IF TG_LEVEL = 'ROW' AND TG_OP = 'UPDATE' AND TG_TABLE_NAME = 'audit_prunes' THEN
        IF OLD.deleted_events = 0 AND (NEW.id, NEW.at, NEW.through_seq, NEW.through_event,
                NEW.export_sha256, NEW.export_events, NEW.db_user, NEW.pruned_by)
              IS NOT DISTINCT FROM (OLD.id, OLD.at, OLD.through_seq, OLD.through_event,
                OLD.export_sha256, OLD.export_events, OLD.db_user, OLD.pruned_by) THEN
            RETURN NEW;
        END IF;
    END IF;
    IF TG_LEVEL = 'ROW' AND TG_OP = 'UPDATE' AND TG_TABLE_NAME = 'audit_signing_keys' THEN
        IF OLD.state = 'current' AND NEW.state = 'retired'
           AND (NEW.version, NEW.label, NEW.public_key, NEW.created_at, NEW.ceremony_id)
               IS NOT DISTINCT FROM (OLD.version, OLD.label, OLD.public_key, OLD.created_at,
                                     OLD.ceremony_id) THEN
            RETURN NEW;
        END IF;
        IF OLD.ceremony_id IS NULL AND NEW.ceremony_id IS NOT NULL
           AND (NEW.version, NEW.label, NEW.public_key, NEW.created_at, NEW.state,
                NEW.retired_at)
               IS NOT DISTINCT FROM (OLD.version, OLD.label, OLD.public_key, OLD.created_at,
                                     OLD.state, OLD.retired_at) THEN
            RETURN NEW;
        END IF;
    END IF;
    RAISE EXCEPTION 'coffer.% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

-- ---- Auditor views ---------------------------------------------------------------------------

CREATE VIEW audit.officers AS
    SELECT name, added_at, added_in, removed_at, removed_in, removed_at IS NULL AS serving
    FROM coffer.officers;

COMMENT ON VIEW audit.officers IS
    'Security officers, present and past, with the ceremonies that enrolled and removed them. Never shows a passphrase or its hash.';
COMMENT ON COLUMN audit.officers.name IS 'The officer''s name.';
COMMENT ON COLUMN audit.officers.added_at IS 'When they were enrolled.';
COMMENT ON COLUMN audit.officers.added_in IS 'The ceremony that enrolled them (audit.ceremonies).';
COMMENT ON COLUMN audit.officers.removed_at IS 'When they were removed; NULL while they serve.';
COMMENT ON COLUMN audit.officers.removed_in IS 'The ceremony that removed them.';
COMMENT ON COLUMN audit.officers.serving IS 'Whether they may approve ceremonies now.';

CREATE VIEW audit.quorum AS
    SELECT q.m, (SELECT count(*) FROM coffer.officers o WHERE o.removed_at IS NULL) AS officers,
           q.set_in, q.set_at
    FROM coffer.quorum q;

COMMENT ON VIEW audit.quorum IS 'The quorum in force: M approvals of N serving officers.';
COMMENT ON COLUMN audit.quorum.m IS 'Distinct officers whose approval a ceremony needs.';
COMMENT ON COLUMN audit.quorum.officers IS 'Officers serving now (N).';
COMMENT ON COLUMN audit.quorum.set_in IS 'The ceremony that set M.';
COMMENT ON COLUMN audit.quorum.set_at IS 'When M was set.';

CREATE VIEW audit.ceremony_plans AS
    SELECT id, kind, args, description, description_sha256,
           encode(description_sha256, 'hex') AS description_sha256_hex,
           sha256(convert_to(description, 'UTF8')) = description_sha256 AS sha256_matches,
           created_at, expires_at, state, ceremony_id
    FROM coffer.ceremony_plans;

COMMENT ON VIEW audit.ceremony_plans IS
    'Ceremonies prepared for approval, with the description officers approved, whether they ran and which ceremony ran them.';
COMMENT ON COLUMN audit.ceremony_plans.id IS 'Plan identifier.';
COMMENT ON COLUMN audit.ceremony_plans.kind IS 'officer-add, officer-remove, set-quorum, rotate-mk, retire-mk, retire-org, destroy-mk or shred-org.';
COMMENT ON COLUMN audit.ceremony_plans.args IS 'Arguments of the operation.';
COMMENT ON COLUMN audit.ceremony_plans.description IS 'The canonical description shown to each officer before they approved.';
COMMENT ON COLUMN audit.ceremony_plans.description_sha256 IS 'Its SHA-256, as recorded when it was prepared.';
COMMENT ON COLUMN audit.ceremony_plans.description_sha256_hex IS 'The same in lower-case hex, as the officers read it.';
COMMENT ON COLUMN audit.ceremony_plans.sha256_matches IS 'The description still hashes to description_sha256 (computed now by the database).';
COMMENT ON COLUMN audit.ceremony_plans.created_at IS 'When it was prepared.';
COMMENT ON COLUMN audit.ceremony_plans.expires_at IS 'End of its approval window.';
COMMENT ON COLUMN audit.ceremony_plans.state IS 'open, completed or aborted.';
COMMENT ON COLUMN audit.ceremony_plans.ceremony_id IS 'The ceremony that ran it (audit.ceremonies).';

CREATE VIEW audit.ceremony_approvals AS
    SELECT a.plan_id, a.officer, a.description_sha256,
           encode(a.description_sha256, 'hex') AS description_sha256_hex,
           a.description_sha256 = p.description_sha256 AS matches_plan, a.approved_at,
           a.approved_at < p.expires_at AS in_time
    FROM coffer.ceremony_approvals a JOIN coffer.ceremony_plans p ON p.id = a.plan_id;

COMMENT ON VIEW audit.ceremony_approvals IS
    'Every officer approval of a ceremony plan. An approval counts only for the description whose SHA-256 it names, and only before the plan expires.';
COMMENT ON COLUMN audit.ceremony_approvals.plan_id IS 'The plan approved (audit.ceremony_plans).';
COMMENT ON COLUMN audit.ceremony_approvals.officer IS 'The officer who approved (audit.officers).';
COMMENT ON COLUMN audit.ceremony_approvals.description_sha256 IS 'The SHA-256 the officer confirmed.';
COMMENT ON COLUMN audit.ceremony_approvals.description_sha256_hex IS 'The same in lower-case hex.';
COMMENT ON COLUMN audit.ceremony_approvals.matches_plan IS 'Whether it is the plan''s description SHA-256.';
COMMENT ON COLUMN audit.ceremony_approvals.approved_at IS 'When, by the database clock.';
COMMENT ON COLUMN audit.ceremony_approvals.in_time IS 'Whether it was given before the plan expired.';

-- ---- Privileges ---------------------------------------------------------------------------

REVOKE ALL ON coffer.officers, coffer.quorum, coffer.ceremony_plans, coffer.ceremony_approvals
    FROM PUBLIC;
REVOKE ALL ON FUNCTION coffer.ceremony_refuse_change(), coffer.ceremony_plans_close_once()
    FROM PUBLIC;

GRANT SELECT, INSERT ON coffer.officers TO coffer_app;
GRANT UPDATE (removed_at, removed_in) ON coffer.officers TO coffer_app;
GRANT SELECT, INSERT ON coffer.quorum TO coffer_app;
GRANT UPDATE (m, set_in, set_at) ON coffer.quorum TO coffer_app;
GRANT SELECT, INSERT ON coffer.ceremony_plans TO coffer_app;
GRANT UPDATE (state, ceremony_id) ON coffer.ceremony_plans TO coffer_app;
GRANT SELECT, INSERT ON coffer.ceremony_approvals TO coffer_app;
-- Linking the keys a ceremony made to it.
GRANT UPDATE (ceremony_id) ON coffer.master_keys, coffer.org_keys, coffer.audit_signing_keys
    TO coffer_app;

REVOKE ALL ON audit.officers, audit.quorum, audit.ceremony_plans, audit.ceremony_approvals
    FROM PUBLIC;
GRANT SELECT ON audit.officers, audit.quorum, audit.ceremony_plans, audit.ceremony_approvals
    TO coffer_auditor;

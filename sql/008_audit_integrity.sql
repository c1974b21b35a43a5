-- SPDX-License-Identifier: Apache-2.0
--
-- 008_audit_integrity: the audit log made tamper-evident and readable by auditors.
--
-- * Every event row carries row_hash, the SHA-256 of its canonical encoding
--   (docs/auditors.md), computed by the database as the row is inserted, with the
--   event's number and time, which the writer cannot choose.
-- * The sealer in cofferd seals events in id order into signed checkpoints
--   (coffer.audit_checkpoints): a hash chain over (id, row_hash) of every event
--   of a range, linked to the previous checkpoint, signed with the ECDSA P-256
--   audit signing key inside the token, whose public key is in
--   coffer.audit_signing_keys.
-- * Events, checkpoints and signing keys are append-only for every role,
--   including their owner: triggers refuse UPDATE, DELETE and TRUNCATE. The one
--   way to remove events is the export-then-prune path (coffer.audit_prunes),
--   which deletes only sealed events of checkpoints already exported, and keeps
--   the checkpoints so that the chain stays verifiable.
-- * Auditors (coffer_auditor) read views in schema audit and nothing else.
--
-- Event numbers are taken inside the insert trigger while the inserting
-- transaction holds a shared advisory lock; the sealer takes the same lock
-- exclusively for an instant to learn the highest number handed out, so no
-- event can commit later with a number below a sealed one.

-- ---- Ceremonies ----------------------------------------------------------------------
-- A ceremony is a recorded key operation approved by security officers. The
-- keys it made point at it.

CREATE TABLE coffer.ceremonies (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    kind text NOT NULL CHECK (kind ~ '^[a-z][a-z0-9-]{0,31}$'),
    started_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at timestamptz,
    outcome text NOT NULL CHECK (outcome IN ('completed', 'aborted')),
    officers text[] NOT NULL DEFAULT '{}' CHECK (
        cardinality(officers) <= 64 AND array_position(officers, NULL) IS NULL),
    token_serial text CHECK (octet_length(token_serial) BETWEEN 1 AND 64),
    token_model text CHECK (octet_length(token_model) BETWEEN 1 AND 64),
    transcript text NOT NULL CHECK (octet_length(transcript) BETWEEN 1 AND 1048576),
    signature bytea CHECK (octet_length(signature) BETWEEN 8 AND 80),
    key_version int CHECK (key_version > 0)
);

COMMENT ON TABLE coffer.ceremonies IS
    'Key ceremonies: operations on the key hierarchy approved by a quorum of security officers, with their signed transcripts.';

ALTER TABLE coffer.master_keys ADD COLUMN ceremony_id uuid REFERENCES coffer.ceremonies (id);
ALTER TABLE coffer.org_keys ADD COLUMN ceremony_id uuid REFERENCES coffer.ceremonies (id);
COMMENT ON COLUMN coffer.master_keys.ceremony_id IS 'The ceremony that created the key; NULL if it was created outside one.';
COMMENT ON COLUMN coffer.org_keys.ceremony_id IS 'The ceremony that created the key version; NULL if it was created outside one.';

-- ---- Signing keys --------------------------------------------------------------------

CREATE TABLE coffer.audit_signing_keys (
    version int PRIMARY KEY CHECK (version > 0),
    label text NOT NULL UNIQUE CHECK (label = 'coffer-audit-v' || version::text),
    public_key bytea NOT NULL CHECK (octet_length(public_key) BETWEEN 64 AND 128),
    fingerprint bytea NOT NULL GENERATED ALWAYS AS (sha256(public_key)) STORED,
    state text NOT NULL CHECK (state IN ('current', 'retired')),
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    retired_at timestamptz,
    ceremony_id uuid REFERENCES coffer.ceremonies (id)
);
CREATE UNIQUE INDEX audit_signing_keys_one_current ON coffer.audit_signing_keys ((true))
    WHERE state = 'current';

COMMENT ON TABLE coffer.audit_signing_keys IS
    'Public halves of the ECDSA P-256 audit signing keys; the private keys never leave the token.';

-- ---- Events: number, time and hash set by the database ----------------------------

ALTER TABLE coffer.audit_events
    ADD COLUMN org_key_version int CHECK (org_key_version > 0),
    ADD COLUMN mk_version int CHECK (mk_version > 0),
    ADD COLUMN row_hash bytea;

COMMENT ON COLUMN coffer.audit_events.org_key_version IS
    'For an allowed access: the org key version whose wrap of the content key was opened; NULL otherwise.';
COMMENT ON COLUMN coffer.audit_events.mk_version IS
    'For an allowed access: the master key version that wrapped that org key at the time; NULL otherwise.';
COMMENT ON COLUMN coffer.audit_events.row_hash IS
    'SHA-256 of the event''s canonical encoding (docs/auditors.md), computed by the database when the row was inserted.';

-- One canonical field: 0x00 for NULL, else 0x01, the length (4 bytes, big-endian) and the UTF-8 bytes.
-- These are STABLE, as what they call (convert_to, to_char) is: a function that claims more
-- than its body cannot be inlined, and inlining makes the hash of an insert about 8 times
-- cheaper.
CREATE FUNCTION audit.event_field(v text) RETURNS bytea
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN CASE WHEN v IS NULL THEN '\x00'::bytea
                ELSE '\x01'::bytea || int4send(octet_length(convert_to(v, 'UTF8')))
                     || convert_to(v, 'UTF8') END;

-- The text form of an event's time in the canonical encoding.
CREATE FUNCTION audit.event_time(t timestamptz) RETURNS text
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"');

CREATE FUNCTION audit.event_hash(e coffer.audit_events) RETURNS bytea
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN sha256('coffer-audit-event-v1'::bytea
        || audit.event_field(e.id::text)
        || audit.event_field(audit.event_time(e.at))
        || audit.event_field(e.action)
        || audit.event_field(CASE WHEN e.allowed THEN 'true' ELSE 'false' END)
        || audit.event_field(e.reason)
        || audit.event_field(CASE WHEN e.purpose_unexpected THEN 'true' ELSE 'false' END)
        || audit.event_field(e.request_id)
        || audit.event_field(e.client_addr)
        || audit.event_field(e.principal_kind)
        || audit.event_field(e.trust_domain)
        || audit.event_field(e.org)
        || audit.event_field(e.agent_type)
        || audit.event_field(e.instance)
        || audit.event_field(e.admin)
        || audit.event_field(e.target_org)
        || audit.event_field(e.project)
        || audit.event_field(e.credential)
        || audit.event_field(e.version::text)
        || audit.event_field(e.phase)
        || audit.event_field(e.purpose)
        || audit.event_field(e.detail)
        || audit.event_field(e.org_key_version::text)
        || audit.event_field(e.mk_version::text));

COMMENT ON FUNCTION audit.event_field(text) IS
    'One field of the canonical event encoding: 0x00 for NULL, else 0x01, the UTF-8 length as 4 bytes big-endian, and the UTF-8 bytes.';
COMMENT ON FUNCTION audit.event_time(timestamptz) IS
    'The text form of an event time in the canonical encoding: UTC, YYYY-MM-DDTHH:MM:SS.uuuuuuZ.';
COMMENT ON FUNCTION audit.event_hash(coffer.audit_events) IS
    'SHA-256 of the canonical encoding of an event: the row_hash it must carry.';

-- Events written before this migration keep their numbers and times and get their hash now.
UPDATE coffer.audit_events e SET row_hash = audit.event_hash(e);
ALTER TABLE coffer.audit_events ALTER COLUMN row_hash SET NOT NULL;
ALTER TABLE coffer.audit_events ADD CONSTRAINT audit_events_row_hash CHECK (octet_length(row_hash) = 32);

-- Numbers come from this sequence, inside the insert trigger, never from the writer.
ALTER TABLE coffer.audit_events ALTER COLUMN id DROP IDENTITY;
CREATE SEQUENCE coffer.audit_event_ids AS bigint MINVALUE 1;
SELECT setval('coffer.audit_event_ids', COALESCE((SELECT max(id) FROM coffer.audit_events), 0) + 1, false);
ALTER TABLE coffer.audit_events ALTER COLUMN at DROP DEFAULT;

-- Runs as the owner, so that no writer needs the sequence. The shared lock is
-- taken before the number, and held to the end of the transaction.
CREATE FUNCTION coffer.audit_events_stamp() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM pg_catalog.pg_advisory_xact_lock_shared(7165064482445047155);
    NEW.id := pg_catalog.nextval('coffer.audit_event_ids');
    NEW.at := pg_catalog.clock_timestamp();
    NEW.row_hash := audit.event_hash(NEW);
    RETURN NEW;
END
$$;

CREATE TRIGGER audit_events_stamp BEFORE INSERT ON coffer.audit_events
    FOR EACH ROW EXECUTE FUNCTION coffer.audit_events_stamp();

-- ---- Checkpoints ----------------------------------------------------------------------

CREATE TABLE coffer.audit_checkpoints (
    seq bigint PRIMARY KEY CHECK (seq > 0),
    at timestamptz NOT NULL,
    first_event bigint NOT NULL CHECK (first_event > 0),
    last_event bigint NOT NULL,
    events int NOT NULL CHECK (events BETWEEN 0 AND 10000),
    chain bytea NOT NULL CHECK (octet_length(chain) = 32),
    previous bytea NOT NULL CHECK (octet_length(previous) = 32),
    schema_digest bytea NOT NULL CHECK (octet_length(schema_digest) = 32),
    schema_text text CHECK (octet_length(schema_text) BETWEEN 1 AND 4194304),
    key_version int NOT NULL REFERENCES coffer.audit_signing_keys (version),
    message bytea NOT NULL CHECK (octet_length(message) BETWEEN 1 AND 1024),
    hash bytea NOT NULL GENERATED ALWAYS AS (sha256(message)) STORED,
    signature bytea NOT NULL CHECK (octet_length(signature) BETWEEN 8 AND 80),
    sealed bytea NOT NULL CHECK (octet_length(sealed) = 40 * events),
    CHECK (last_event >= first_event - 1),
    CHECK (events <= last_event - first_event + 1)
);
-- Ranges tile the ids; an empty range (only the schema changed) shares its bounds with a neighbour.
CREATE INDEX audit_checkpoints_last_event ON coffer.audit_checkpoints (last_event);

COMMENT ON TABLE coffer.audit_checkpoints IS
    'Signed checkpoints sealing the audit events in id order; see audit.checkpoints.';

-- A checkpoint must extend the last one: the next number, the next range, its hash.
CREATE FUNCTION coffer.audit_checkpoints_extend() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    last coffer.audit_checkpoints;
BEGIN
    SELECT * INTO last FROM coffer.audit_checkpoints ORDER BY seq DESC LIMIT 1;
    IF last.seq IS NULL THEN
        IF NEW.seq <> 1 OR NEW.first_event <> 1 OR NEW.previous <> pg_catalog.decode(pg_catalog.repeat('00', 32), 'hex') THEN
            RAISE EXCEPTION 'the first audit checkpoint must be number 1, start at event 1 and follow no checkpoint'
                USING ERRCODE = 'check_violation';
        END IF;
    ELSIF NEW.seq <> last.seq + 1 OR NEW.first_event <> last.last_event + 1
          OR NEW.previous <> last.hash THEN
        RAISE EXCEPTION 'audit checkpoint % does not extend checkpoint %', NEW.seq, last.seq
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER audit_checkpoints_extend BEFORE INSERT ON coffer.audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION coffer.audit_checkpoints_extend();

-- ---- Export-then-prune -------------------------------------------------------------

CREATE TABLE coffer.audit_prunes (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT clock_timestamp(),
    through_seq bigint NOT NULL UNIQUE REFERENCES coffer.audit_checkpoints (seq),
    through_event bigint NOT NULL,
    export_sha256 bytea NOT NULL CHECK (octet_length(export_sha256) = 32),
    export_events bigint NOT NULL CHECK (export_events >= 0),
    deleted_events bigint NOT NULL DEFAULT 0 CHECK (deleted_events >= 0),
    db_user text NOT NULL DEFAULT session_user,
    pruned_by text NOT NULL CHECK (octet_length(pruned_by) BETWEEN 1 AND 256)
);

COMMENT ON TABLE coffer.audit_prunes IS
    'Each removal of old audit events after they were exported and verified; see audit.prunes.';

-- A prune names a checkpoint after the last prune, and covers exactly its sealed ranges.
CREATE FUNCTION coffer.audit_prunes_check() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    cp_last bigint;
    prev bigint;
BEGIN
    SELECT last_event INTO cp_last FROM coffer.audit_checkpoints WHERE seq = NEW.through_seq;
    SELECT max(through_seq) INTO prev FROM coffer.audit_prunes;
    IF cp_last IS NULL OR NEW.through_event <> cp_last OR NEW.through_seq <= COALESCE(prev, 0) THEN
        RAISE EXCEPTION 'a prune must name a checkpoint after the last prune and end at its last event'
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER audit_prunes_check BEFORE INSERT ON coffer.audit_prunes
    FOR EACH ROW EXECUTE FUNCTION coffer.audit_prunes_check();

-- Runs as the owner: the delete trigger and audit.integrity need it whoever asks.
CREATE FUNCTION coffer.audit_pruned_through() RETURNS bigint
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    RETURN (SELECT COALESCE(max(through_event), 0) FROM coffer.audit_prunes);

-- ---- Append-only, for the owner too ----------------------------------------------
-- The only change ever allowed: deleting events at or below the pruned horizon,
-- and a prune's count of the events it deleted, set once. Disabling or
-- replacing these triggers changes the audit schema digest that every
-- checkpoint records.

CREATE FUNCTION coffer.audit_refuse_change() RETURNS trigger
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
    END IF;
    RAISE EXCEPTION 'coffer.% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON coffer.audit_events
    FOR EACH ROW EXECUTE FUNCTION coffer.audit_refuse_change();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON coffer.audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION coffer.audit_refuse_change();
CREATE TRIGGER audit_checkpoints_append_only BEFORE UPDATE OR DELETE ON coffer.audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION coffer.audit_refuse_change();
CREATE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON coffer.audit_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION coffer.audit_refuse_change();
CREATE TRIGGER audit_signing_keys_append_only BEFORE UPDATE OR DELETE ON coffer.audit_signing_keys
    FOR EACH ROW EXECUTE FUNCTION coffer.audit_refuse_change();
CREATE TRIGGER audit_signing_keys_no_truncate BEFORE TRUNCATE ON coffer.audit_signing_keys
    FOR EACH STATEMENT EXECUTE FUNCTION coffer.audit_refuse_change();
CREATE TRIGGER audit_prunes_append_only BEFORE UPDATE OR DELETE ON coffer.audit_prunes
    FOR EACH ROW EXECUTE FUNCTION coffer.audit_refuse_change();
CREATE TRIGGER audit_prunes_no_truncate BEFORE TRUNCATE ON coffer.audit_prunes
    FOR EACH STATEMENT EXECUTE FUNCTION coffer.audit_refuse_change();

-- ---- Verifications ---------------------------------------------------------------------

CREATE TABLE coffer.audit_verifications (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT clock_timestamp(),
    db_user text NOT NULL DEFAULT session_user,
    intact bool NOT NULL,
    through_seq bigint CHECK (through_seq > 0),
    events_verified bigint NOT NULL CHECK (events_verified >= 0),
    problems bigint NOT NULL CHECK (problems >= 0),
    first_problem text CHECK (
        octet_length(first_problem) BETWEEN 1 AND 256
        AND first_problem !~ '[\u0001-\u001f\u007f-\u009f]'),
    CHECK (intact = (problems = 0))
);

COMMENT ON TABLE coffer.audit_verifications IS 'Outcomes of coffer audit verify runs; see audit.verifications.';

CREATE TRIGGER audit_verifications_append_only BEFORE UPDATE OR DELETE ON coffer.audit_verifications
    FOR EACH ROW EXECUTE FUNCTION coffer.audit_refuse_change();

-- The one thing an auditor may write: the outcome of a verification it ran.
CREATE FUNCTION audit.record_verification(intact bool, through_seq bigint, events_verified bigint,
                                          problems bigint, first_problem text) RETURNS bigint
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    new_id bigint;
BEGIN
    INSERT INTO coffer.audit_verifications
        (intact, through_seq, events_verified, problems, first_problem)
    VALUES (intact, through_seq, events_verified, problems, first_problem)
    RETURNING id INTO new_id;
    RETURN new_id;
END
$$;

COMMENT ON FUNCTION audit.record_verification(bool, bigint, bigint, bigint, text) IS
    'Records the outcome of a verification (coffer audit verify does this); the row names the login that ran it.';

-- ---- What auditors read ------------------------------------------------------------------

CREATE VIEW audit.checkpoints AS
    SELECT c.seq, c.at, c.first_event, c.last_event, c.events, c.chain, c.previous, c.hash,
           c.schema_digest, c.schema_text IS NOT NULL AS schema_changed, c.schema_text,
           c.key_version, k.fingerprint AS key_fingerprint,
           convert_from(c.message, 'UTF8') AS message_text, c.message, c.signature, c.sealed
    FROM coffer.audit_checkpoints c JOIN coffer.audit_signing_keys k ON k.version = c.key_version;

COMMENT ON VIEW audit.checkpoints IS
    'Signed checkpoints. Each seals every event of an id range in order: a SHA-256 chain over (id, row_hash) of each event, continued from the previous checkpoint, with the previous checkpoint''s hash, signed with ECDSA P-256 by the audit signing key in the token. coffer audit verify checks them; docs/auditors.md shows how to check a signature with openssl alone.';
COMMENT ON COLUMN audit.checkpoints.seq IS 'Checkpoint number, 1 upwards without gaps.';
COMMENT ON COLUMN audit.checkpoints.at IS 'When the checkpoint was made (database clock).';
COMMENT ON COLUMN audit.checkpoints.first_event IS 'First event id of the sealed range (the previous checkpoint''s last_event + 1).';
COMMENT ON COLUMN audit.checkpoints.last_event IS 'Last event id of the sealed range; events up to here can no longer be added, changed or removed unnoticed.';
COMMENT ON COLUMN audit.checkpoints.events IS 'How many events the range holds (ids of rolled-back operations are absent).';
COMMENT ON COLUMN audit.checkpoints.chain IS 'The hash chain after the last event of the range: c = SHA-256(c || id as 8 bytes big-endian || row_hash), starting from the previous checkpoint''s chain (32 zero bytes for the first).';
COMMENT ON COLUMN audit.checkpoints.previous IS 'hash of the previous checkpoint (32 zero bytes for the first).';
COMMENT ON COLUMN audit.checkpoints.hash IS 'SHA-256 of message: what the next checkpoint names as previous.';
COMMENT ON COLUMN audit.checkpoints.schema_digest IS 'SHA-256 of the description of the audit objects (tables, views, triggers, functions, privileges) when the checkpoint was made.';
COMMENT ON COLUMN audit.checkpoints.schema_changed IS 'The audit objects differ from those recorded by the previous checkpoint: compare schema_text with the previous change, and with coffer.schema_migrations.';
COMMENT ON COLUMN audit.checkpoints.schema_text IS 'The description of the audit objects, recorded when it changed (and in the first checkpoint); NULL when unchanged.';
COMMENT ON COLUMN audit.checkpoints.key_version IS 'Version of the audit signing key that signed (audit.signing_keys).';
COMMENT ON COLUMN audit.checkpoints.key_fingerprint IS 'SHA-256 of that key''s public key (SubjectPublicKeyInfo DER).';
COMMENT ON COLUMN audit.checkpoints.message_text IS 'The signed message as text: every field above, one per line.';
COMMENT ON COLUMN audit.checkpoints.message IS 'The signed message, byte for byte.';
COMMENT ON COLUMN audit.checkpoints.signature IS 'ECDSA P-256 signature over SHA-256(message), DER-encoded (openssl dgst -sha256 -verify takes it as is).';
COMMENT ON COLUMN audit.checkpoints.sealed IS 'For each event of the range in id order: its id (8 bytes big-endian) and its row_hash (32 bytes).';

CREATE VIEW audit.signing_keys AS
    SELECT k.version, k.label, k.state, k.created_at, k.retired_at, k.fingerprint,
           encode(k.fingerprint, 'hex') AS fingerprint_hex, k.public_key,
           '-----BEGIN PUBLIC KEY-----' || chr(10)
           || regexp_replace(replace(encode(k.public_key, 'base64'), chr(10), ''),
                             '(.{64})', '\1' || chr(10), 'g')
           || chr(10) || '-----END PUBLIC KEY-----' || chr(10) AS public_key_pem,
           k.ceremony_id
    FROM coffer.audit_signing_keys k;

COMMENT ON VIEW audit.signing_keys IS
    'Audit signing keys: the public half of each ECDSA P-256 key whose private half, in the token, signs checkpoints. Pin the fingerprint you were given at the key ceremony: coffer audit verify --fingerprint.';
COMMENT ON COLUMN audit.signing_keys.version IS 'Key version, 1 upwards.';
COMMENT ON COLUMN audit.signing_keys.label IS 'CKA_LABEL of the key pair in the token.';
COMMENT ON COLUMN audit.signing_keys.state IS 'current: signs new checkpoints; retired: signed older ones only.';
COMMENT ON COLUMN audit.signing_keys.created_at IS 'When the key was created.';
COMMENT ON COLUMN audit.signing_keys.retired_at IS 'When the key stopped signing; NULL while current.';
COMMENT ON COLUMN audit.signing_keys.fingerprint IS 'SHA-256 of public_key.';
COMMENT ON COLUMN audit.signing_keys.fingerprint_hex IS 'The fingerprint in lower-case hex, as coffer prints it.';
COMMENT ON COLUMN audit.signing_keys.public_key IS 'SubjectPublicKeyInfo DER of the public key.';
COMMENT ON COLUMN audit.signing_keys.public_key_pem IS 'The public key in PEM, ready for openssl.';
COMMENT ON COLUMN audit.signing_keys.ceremony_id IS 'The ceremony that created the key; NULL if none.';

CREATE VIEW audit.access_log AS
    SELECT e.id, e.at, e.action, e.allowed, e.reason, e.purpose_unexpected, e.request_id,
           e.client_addr, e.principal_kind, e.trust_domain, e.org, e.agent_type, e.instance,
           e.admin, e.target_org, e.project, e.credential, e.version, e.phase, e.purpose,
           e.detail, e.org_key_version, e.mk_version, e.row_hash,
           (SELECT c.seq FROM coffer.audit_checkpoints c
            WHERE c.last_event >= e.id AND c.first_event <= e.id
            ORDER BY c.last_event LIMIT 1) AS checkpoint,
           e.row_hash = audit.event_hash(e) AS hash_matches
    FROM coffer.audit_events e;

COMMENT ON VIEW audit.access_log IS
    'Every audit event, one row per decision: accesses allowed and denied with their reason, changes of credentials, projects, tokens, requests and approvals, and failed authentications. Never holds a credential value, token or PIN.';
COMMENT ON COLUMN audit.access_log.id IS 'Event number, increasing in commit-safe order; gaps are rolled-back operations.';
COMMENT ON COLUMN audit.access_log.at IS 'When the event was written, by the database clock.';
COMMENT ON COLUMN audit.access_log.action IS 'access, create, revoke, phase, metadata, auth_failure, token_create, token_revoke, request, fulfill, deny, approve or approval_revoke.';
COMMENT ON COLUMN audit.access_log.allowed IS 'Whether the operation took place (for access: whether the values were handed out).';
COMMENT ON COLUMN audit.access_log.reason IS 'For access, the decision''s reason code (granted, no_grant, wrong_phase, expired, revoked, not_found, not_project_member, purpose_missing, approval_required, integrity_error, token_unavailable); otherwise ok or the error that refused it.';
COMMENT ON COLUMN audit.access_log.purpose_unexpected IS 'Allowed, but the purpose matches none of the credential''s purpose patterns.';
COMMENT ON COLUMN audit.access_log.request_id IS 'The request''s id, as returned to the client and written in the server log.';
COMMENT ON COLUMN audit.access_log.client_addr IS 'Client address and port; NULL if unknown.';
COMMENT ON COLUMN audit.access_log.principal_kind IS 'agent or admin; NULL when the request was not authenticated.';
COMMENT ON COLUMN audit.access_log.trust_domain IS 'Trust domain of the principal''s SPIFFE ID.';
COMMENT ON COLUMN audit.access_log.org IS 'The principal''s own org, from its identity.';
COMMENT ON COLUMN audit.access_log.agent_type IS 'The agent''s type; NULL for admins.';
COMMENT ON COLUMN audit.access_log.instance IS 'The agent''s instance; NULL for admins.';
COMMENT ON COLUMN audit.access_log.admin IS 'The admin''s name; NULL for agents.';
COMMENT ON COLUMN audit.access_log.target_org IS 'The org the request named; differs from org only for refused cross-org attempts.';
COMMENT ON COLUMN audit.access_log.project IS 'The project the request named.';
COMMENT ON COLUMN audit.access_log.credential IS 'The credential the request named.';
COMMENT ON COLUMN audit.access_log.version IS 'The credential version read or stored, or the current one at a denial.';
COMMENT ON COLUMN audit.access_log.phase IS 'The project''s phase at the decision.';
COMMENT ON COLUMN audit.access_log.purpose IS 'The purpose the agent stated; NULL if none or not acceptable text.';
COMMENT ON COLUMN audit.access_log.detail IS 'Short non-secret detail (revocation reason, phase move, ids of tokens, requests, approvals).';
COMMENT ON COLUMN audit.access_log.org_key_version IS 'For an allowed access: the org key version that opened the credential version; NULL otherwise.';
COMMENT ON COLUMN audit.access_log.mk_version IS 'Master key version wrapping that org key at the time; NULL otherwise.';
COMMENT ON COLUMN audit.access_log.row_hash IS 'SHA-256 of the event''s canonical encoding, set by the database at insert.';
COMMENT ON COLUMN audit.access_log.checkpoint IS 'The checkpoint that sealed the event; NULL while not yet sealed (normally under a second).';
COMMENT ON COLUMN audit.access_log.hash_matches IS 'The row''s content still hashes to row_hash (computed by the database; coffer audit verify checks independently).';

CREATE VIEW audit.denials AS
    SELECT * FROM audit.access_log WHERE NOT allowed;

COMMENT ON VIEW audit.denials IS 'Every refused operation: audit.access_log where allowed is false. The agent was told permission_denied; reason holds the true cause.';

-- The columns of audit.denials are those of audit.access_log, and so are their comments.
DO $comments$
DECLARE
    c record;
BEGIN
    FOR c IN SELECT a.attname, d.description
             FROM pg_catalog.pg_attribute a
             JOIN pg_catalog.pg_description d
               ON d.objoid = a.attrelid AND d.classoid = 'pg_catalog.pg_class'::regclass
              AND d.objsubid = a.attnum
             WHERE a.attrelid = 'audit.access_log'::regclass AND a.attnum > 0 LOOP
        EXECUTE pg_catalog.format('COMMENT ON COLUMN audit.denials.%I IS %L', c.attname,
                                  c.description);
    END LOOP;
END
$comments$;

CREATE VIEW audit.unexpected_purposes AS
    SELECT id, at, target_org, project, credential, version, org, agent_type, instance, purpose,
           request_id
    FROM audit.access_log WHERE purpose_unexpected;

COMMENT ON VIEW audit.unexpected_purposes IS
    'Allowed accesses whose stated purpose matched none of the credential''s allowed purpose patterns: each deserves a look.';
COMMENT ON COLUMN audit.unexpected_purposes.id IS 'Event id.';
COMMENT ON COLUMN audit.unexpected_purposes.at IS 'When.';
COMMENT ON COLUMN audit.unexpected_purposes.target_org IS 'The credential''s org.';
COMMENT ON COLUMN audit.unexpected_purposes.project IS 'The credential''s project.';
COMMENT ON COLUMN audit.unexpected_purposes.credential IS 'The credential.';
COMMENT ON COLUMN audit.unexpected_purposes.version IS 'The version handed out.';
COMMENT ON COLUMN audit.unexpected_purposes.org IS 'The agent''s org.';
COMMENT ON COLUMN audit.unexpected_purposes.agent_type IS 'The agent''s type.';
COMMENT ON COLUMN audit.unexpected_purposes.instance IS 'The agent''s instance.';
COMMENT ON COLUMN audit.unexpected_purposes.purpose IS 'The purpose the agent stated.';
COMMENT ON COLUMN audit.unexpected_purposes.request_id IS 'The request id, to find the server log lines.';

CREATE VIEW audit.credential_usage AS
    SELECT target_org AS org, project, credential, org AS agent_org, agent_type, instance,
           count(*) AS accesses,
           count(*) FILTER (WHERE allowed) AS granted,
           count(*) FILTER (WHERE NOT allowed) AS denied,
           count(*) FILTER (WHERE purpose_unexpected) AS unexpected_purposes,
           min(at) AS first_access, max(at) AS last_access,
           max(at) FILTER (WHERE allowed) AS last_granted,
           array_agg(DISTINCT purpose ORDER BY purpose) FILTER (WHERE purpose IS NOT NULL)
               AS purposes
    FROM coffer.audit_events
    WHERE action = 'access' AND principal_kind = 'agent' AND credential IS NOT NULL
    GROUP BY target_org, project, credential, org, agent_type, instance;

COMMENT ON VIEW audit.credential_usage IS
    'Per credential and agent instance: how often it asked, was given or refused, when first and last, and every purpose it stated.';
COMMENT ON COLUMN audit.credential_usage.org IS 'The credential''s org (as the request named it).';
COMMENT ON COLUMN audit.credential_usage.project IS 'The credential''s project.';
COMMENT ON COLUMN audit.credential_usage.credential IS 'The credential.';
COMMENT ON COLUMN audit.credential_usage.agent_org IS 'The agent''s own org; differs from org only for refused cross-org attempts.';
COMMENT ON COLUMN audit.credential_usage.agent_type IS 'The agent''s type.';
COMMENT ON COLUMN audit.credential_usage.instance IS 'The agent''s instance.';
COMMENT ON COLUMN audit.credential_usage.accesses IS 'Access requests, allowed or not.';
COMMENT ON COLUMN audit.credential_usage.granted IS 'Accesses that handed out the values.';
COMMENT ON COLUMN audit.credential_usage.denied IS 'Accesses refused, whatever the reason.';
COMMENT ON COLUMN audit.credential_usage.unexpected_purposes IS 'Allowed accesses with a purpose outside the allowed patterns.';
COMMENT ON COLUMN audit.credential_usage.first_access IS 'First access request.';
COMMENT ON COLUMN audit.credential_usage.last_access IS 'Last access request.';
COMMENT ON COLUMN audit.credential_usage.last_granted IS 'Last access that handed out the values; NULL if none.';
COMMENT ON COLUMN audit.credential_usage.purposes IS 'Every distinct purpose stated, sorted.';

CREATE VIEW audit.credentials AS
    SELECT o.name AS org, p.name AS project, c.name AS credential, c.type, c.tier,
           c.description, c.current_version, c.created_at, c.updated_at AS current_version_at,
           v.org_key_version, c.expires_at,
           LEAST(c.expires_at,
                 v.created_at + make_interval(secs => CASE
                     WHEN tl.org_id IS NOT NULL THEN tl.max_ttl
                     WHEN c.tier = 'medium' THEN 31536000 WHEN c.tier = 'high' THEN 604800
                     WHEN c.tier = 'critical' THEN 86400 END)) AS effective_expires_at,
           c.expire_on_phase_end, c.revoked_at, c.revoked_reason, p.removed_at AS project_removed_at
    FROM coffer.credentials c
    JOIN coffer.projects p ON p.id = c.project_id
    JOIN coffer.orgs o ON o.id = c.org_id
    JOIN coffer.credential_versions v ON v.credential_id = c.id AND v.version = c.current_version
    LEFT JOIN coffer.tier_lifetimes tl ON tl.org_id = c.org_id AND tl.tier = c.tier;

COMMENT ON VIEW audit.credentials IS
    'Every stored credential''s metadata: never a value, ciphertext or wrapped key. Use it for rotation age and lifetimes.';
COMMENT ON COLUMN audit.credentials.org IS 'The org.';
COMMENT ON COLUMN audit.credentials.project IS 'The project.';
COMMENT ON COLUMN audit.credentials.credential IS 'The credential''s name.';
COMMENT ON COLUMN audit.credentials.type IS 'Kind of credential, as the admin gave it.';
COMMENT ON COLUMN audit.credentials.tier IS 'Sensitivity tier: low, medium, high or critical.';
COMMENT ON COLUMN audit.credentials.description IS 'What it is for, as the admin wrote it.';
COMMENT ON COLUMN audit.credentials.current_version IS 'The version accesses read.';
COMMENT ON COLUMN audit.credentials.created_at IS 'When the credential was first stored.';
COMMENT ON COLUMN audit.credentials.current_version_at IS 'When the current version was stored: the last rotation of the value.';
COMMENT ON COLUMN audit.credentials.org_key_version IS 'The org key version protecting the current version.';
COMMENT ON COLUMN audit.credentials.expires_at IS 'Expiry set by the admin; NULL if none.';
COMMENT ON COLUMN audit.credentials.effective_expires_at IS 'When accesses stop: the earlier of expires_at and the tier''s maximum lifetime from current_version_at; NULL if neither applies.';
COMMENT ON COLUMN audit.credentials.expire_on_phase_end IS 'The phase whose end expires the credential; NULL if none.';
COMMENT ON COLUMN audit.credentials.revoked_at IS 'When it was revoked; NULL if it was not.';
COMMENT ON COLUMN audit.credentials.revoked_reason IS 'Why it was revoked.';
COMMENT ON COLUMN audit.credentials.project_removed_at IS 'When the project was removed from the policy; NULL while it exists.';

CREATE VIEW audit.expiring_credentials AS
    SELECT org, project, credential, type, tier, current_version, current_version_at,
           effective_expires_at, effective_expires_at - now() AS expires_in,
           effective_expires_at <= now() AS expired
    FROM audit.credentials
    WHERE revoked_at IS NULL AND effective_expires_at IS NOT NULL
      AND effective_expires_at < now() + interval '30 days';

COMMENT ON VIEW audit.expiring_credentials IS
    'Credentials not revoked that have expired or will within 30 days, soonest first when ordered by effective_expires_at.';
COMMENT ON COLUMN audit.expiring_credentials.org IS 'The org.';
COMMENT ON COLUMN audit.expiring_credentials.project IS 'The project.';
COMMENT ON COLUMN audit.expiring_credentials.credential IS 'The credential.';
COMMENT ON COLUMN audit.expiring_credentials.type IS 'Kind of credential.';
COMMENT ON COLUMN audit.expiring_credentials.tier IS 'Sensitivity tier.';
COMMENT ON COLUMN audit.expiring_credentials.current_version IS 'The version in use.';
COMMENT ON COLUMN audit.expiring_credentials.current_version_at IS 'When it was stored.';
COMMENT ON COLUMN audit.expiring_credentials.effective_expires_at IS 'When accesses stop.';
COMMENT ON COLUMN audit.expiring_credentials.expires_in IS 'Time left (negative: already expired).';
COMMENT ON COLUMN audit.expiring_credentials.expired IS 'Already expired.';

CREATE VIEW audit.key_inventory AS
    SELECT 'master' AS kind, NULL::text AS org, m.version, m.label, m.state,
           encode(m.kcv, 'hex') AS kcv, NULL::int AS wrapped_under_mk, m.created_at,
           m.retired_at, m.destroyed_at, m.ceremony_id, cer.kind AS ceremony_kind,
           (SELECT count(*) FROM coffer.org_keys k
            WHERE k.mk_version = m.version AND k.state <> 'destroyed') AS still_wraps,
           'org key versions' AS wraps_what
    FROM coffer.master_keys m LEFT JOIN coffer.ceremonies cer ON cer.id = m.ceremony_id
    UNION ALL
    SELECT 'org', o.name, k.version, NULL, k.state, encode(k.kcv, 'hex'), k.mk_version,
           k.created_at, k.retired_at, k.destroyed_at, k.ceremony_id, cer.kind,
           (SELECT count(*) FROM coffer.credential_versions v
            WHERE v.org_id = k.org_id AND v.org_key_version = k.version),
           'credential versions'
    FROM coffer.org_keys k JOIN coffer.orgs o ON o.id = k.org_id
    LEFT JOIN coffer.ceremonies cer ON cer.id = k.ceremony_id
    UNION ALL
    SELECT 'audit-signing', NULL, s.version, s.label, s.state, NULL, NULL, s.created_at,
           s.retired_at, NULL, s.ceremony_id, cer.kind,
           (SELECT count(*) FROM coffer.audit_checkpoints c WHERE c.key_version = s.version),
           'checkpoints signed'
    FROM coffer.audit_signing_keys s LEFT JOIN coffer.ceremonies cer ON cer.id = s.ceremony_id;

COMMENT ON VIEW audit.key_inventory IS
    'Every key of the hierarchy that Coffer records: master keys, org key versions and audit signing keys, with state, key check value and what each still protects. After a rotation, still_wraps of the old version falling to 0 is the rotation''s progress.';
COMMENT ON COLUMN audit.key_inventory.kind IS 'master, org or audit-signing.';
COMMENT ON COLUMN audit.key_inventory.org IS 'The org of an org key; NULL for the others.';
COMMENT ON COLUMN audit.key_inventory.version IS 'Key version.';
COMMENT ON COLUMN audit.key_inventory.label IS 'CKA_LABEL of the token object (master and signing keys; org keys live only wrapped).';
COMMENT ON COLUMN audit.key_inventory.state IS 'current, active (still unwraps), retired or destroyed.';
COMMENT ON COLUMN audit.key_inventory.kcv IS 'Key check value in hex (AES keys), matching the ceremony transcript.';
COMMENT ON COLUMN audit.key_inventory.wrapped_under_mk IS 'For an org key: the master key version wrapping it now.';
COMMENT ON COLUMN audit.key_inventory.created_at IS 'When the key was created.';
COMMENT ON COLUMN audit.key_inventory.retired_at IS 'When it was retired.';
COMMENT ON COLUMN audit.key_inventory.destroyed_at IS 'When it was destroyed.';
COMMENT ON COLUMN audit.key_inventory.ceremony_id IS 'The ceremony that created it (audit.ceremonies); NULL if made outside one.';
COMMENT ON COLUMN audit.key_inventory.ceremony_kind IS 'What that ceremony was.';
COMMENT ON COLUMN audit.key_inventory.still_wraps IS 'How many rows it still protects: org key versions for a master key, credential versions for an org key, checkpoints signed for a signing key.';
COMMENT ON COLUMN audit.key_inventory.wraps_what IS 'What still_wraps counts.';

CREATE VIEW audit.ceremonies AS
    SELECT id, kind, started_at, finished_at, outcome, officers, token_serial, token_model,
           transcript, signature, key_version
    FROM coffer.ceremonies;

COMMENT ON VIEW audit.ceremonies IS 'Key ceremonies with their transcripts, signed by the audit signing key.';
COMMENT ON COLUMN audit.ceremonies.id IS 'Ceremony identifier, named by the keys it created.';
COMMENT ON COLUMN audit.ceremonies.kind IS 'What was done (init, rotate-mk, retire, destroy, shred-org, rotate-org-key).';
COMMENT ON COLUMN audit.ceremonies.started_at IS 'When it began.';
COMMENT ON COLUMN audit.ceremonies.finished_at IS 'When it ended.';
COMMENT ON COLUMN audit.ceremonies.outcome IS 'completed or aborted.';
COMMENT ON COLUMN audit.ceremonies.officers IS 'The officers who approved it.';
COMMENT ON COLUMN audit.ceremonies.token_serial IS 'Serial number of the token it ran against.';
COMMENT ON COLUMN audit.ceremonies.token_model IS 'Model of that token.';
COMMENT ON COLUMN audit.ceremonies.transcript IS 'The transcript, as printed for the paper record.';
COMMENT ON COLUMN audit.ceremonies.signature IS 'ECDSA P-256 signature of the transcript by the audit signing key, DER.';
COMMENT ON COLUMN audit.ceremonies.key_version IS 'The signing key version that signed it.';

CREATE VIEW audit.prunes AS
    SELECT id, at, through_seq, through_event, export_sha256, export_events, deleted_events,
           db_user, pruned_by
    FROM coffer.audit_prunes;

COMMENT ON VIEW audit.prunes IS
    'Each removal of old events: they were exported, the export verified and its SHA-256 recorded, then the events of the checkpoints up to through_seq were deleted. The checkpoints stay, so the chain still verifies.';
COMMENT ON COLUMN audit.prunes.id IS 'Prune number.';
COMMENT ON COLUMN audit.prunes.at IS 'When.';
COMMENT ON COLUMN audit.prunes.through_seq IS 'Last checkpoint whose events were removed.';
COMMENT ON COLUMN audit.prunes.through_event IS 'Last event id removed (that checkpoint''s last_event).';
COMMENT ON COLUMN audit.prunes.export_sha256 IS 'SHA-256 of the export file that holds the removed events; keep that file.';
COMMENT ON COLUMN audit.prunes.export_events IS 'Events in the export.';
COMMENT ON COLUMN audit.prunes.deleted_events IS 'Events removed.';
COMMENT ON COLUMN audit.prunes.db_user IS 'Database login that ran the prune.';
COMMENT ON COLUMN audit.prunes.pruned_by IS 'Operating-system user and host that ran coffer audit prune.';

CREATE VIEW audit.verifications AS
    SELECT id, at, db_user, intact, through_seq, events_verified, problems, first_problem
    FROM coffer.audit_verifications;

COMMENT ON VIEW audit.verifications IS 'Outcomes of coffer audit verify runs against this database.';
COMMENT ON COLUMN audit.verifications.id IS 'Run number.';
COMMENT ON COLUMN audit.verifications.at IS 'When it ended.';
COMMENT ON COLUMN audit.verifications.db_user IS 'The login that ran it.';
COMMENT ON COLUMN audit.verifications.intact IS 'Nothing was found altered, removed or inserted.';
COMMENT ON COLUMN audit.verifications.through_seq IS 'Last checkpoint verified.';
COMMENT ON COLUMN audit.verifications.events_verified IS 'Events checked against their checkpoints.';
COMMENT ON COLUMN audit.verifications.problems IS 'Problems found.';
COMMENT ON COLUMN audit.verifications.first_problem IS 'The first problem, where it is.';

CREATE VIEW audit.integrity AS
    SELECT ev.events, ev.last_event, c.seq AS last_checkpoint, c.at AS last_checkpoint_at,
           c.last_event AS sealed_through,
           (SELECT count(*) FROM coffer.audit_events e WHERE e.id > COALESCE(c.last_event, 0))
               AS unsealed_events,
           clock_timestamp() - (SELECT min(e.at) FROM coffer.audit_events e
                                WHERE e.id > COALESCE(c.last_event, 0)) AS oldest_unsealed_age,
           k.version AS signing_key_version, encode(k.fingerprint, 'hex') AS signing_key_fingerprint,
           coffer.audit_pruned_through() AS pruned_through,
           v.at AS last_verified_at, v.db_user AS last_verified_by, v.intact AS last_verification_intact,
           v.through_seq AS last_verified_through, v.first_problem AS last_verification_problem
    FROM (SELECT count(*) AS events, max(id) AS last_event FROM coffer.audit_events) ev
    LEFT JOIN LATERAL (SELECT * FROM coffer.audit_checkpoints ORDER BY seq DESC LIMIT 1) c ON true
    LEFT JOIN coffer.audit_signing_keys k ON k.state = 'current'
    LEFT JOIN LATERAL (SELECT * FROM coffer.audit_verifications ORDER BY id DESC LIMIT 1) v ON true;

COMMENT ON VIEW audit.integrity IS
    'One row: how much of the log is sealed, how far sealing lags, which key signs, what was pruned, and the last verification.';
COMMENT ON COLUMN audit.integrity.events IS 'Events in the log now.';
COMMENT ON COLUMN audit.integrity.last_event IS 'Highest event id.';
COMMENT ON COLUMN audit.integrity.last_checkpoint IS 'Number of the last checkpoint.';
COMMENT ON COLUMN audit.integrity.last_checkpoint_at IS 'When it was made.';
COMMENT ON COLUMN audit.integrity.sealed_through IS 'Events up to this id are sealed.';
COMMENT ON COLUMN audit.integrity.unsealed_events IS 'Events not yet sealed.';
COMMENT ON COLUMN audit.integrity.oldest_unsealed_age IS 'Age of the oldest unsealed event: the sealing lag (normally under a second; NULL when all are sealed).';
COMMENT ON COLUMN audit.integrity.signing_key_version IS 'The current audit signing key.';
COMMENT ON COLUMN audit.integrity.signing_key_fingerprint IS 'Its fingerprint: compare with the one from the key ceremony.';
COMMENT ON COLUMN audit.integrity.pruned_through IS 'Events up to this id were exported and pruned (0: none).';
COMMENT ON COLUMN audit.integrity.last_verified_at IS 'When coffer audit verify last ran against this database.';
COMMENT ON COLUMN audit.integrity.last_verified_by IS 'The login that ran it.';
COMMENT ON COLUMN audit.integrity.last_verification_intact IS 'Whether it found the log intact.';
COMMENT ON COLUMN audit.integrity.last_verified_through IS 'The last checkpoint it verified.';
COMMENT ON COLUMN audit.integrity.last_verification_problem IS 'The first problem it found, if any.';

-- ---- Privileges ------------------------------------------------------------------------

REVOKE ALL ON coffer.ceremonies, coffer.audit_signing_keys, coffer.audit_checkpoints,
    coffer.audit_prunes, coffer.audit_verifications, coffer.audit_event_ids FROM PUBLIC;
REVOKE ALL ON FUNCTION audit.record_verification(bool, bigint, bigint, bigint, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION coffer.audit_events_stamp() FROM PUBLIC;

-- coffer_app writes events (now also naming the keys), reads back only numbers
-- and hashes (the sealer), appends checkpoints and signing keys, retires a key.
GRANT INSERT (org_key_version, mk_version) ON coffer.audit_events TO coffer_app;
GRANT SELECT (id, row_hash) ON coffer.audit_events TO coffer_app;
GRANT SELECT, INSERT ON coffer.audit_checkpoints TO coffer_app;
GRANT SELECT, INSERT (version, label, public_key, state) ON coffer.audit_signing_keys TO coffer_app;
GRANT UPDATE (state, retired_at) ON coffer.audit_signing_keys TO coffer_app;
GRANT SELECT ON coffer.audit_prunes TO coffer_app;
GRANT SELECT, INSERT ON coffer.ceremonies TO coffer_app;
GRANT EXECUTE ON FUNCTION audit.record_verification(bool, bigint, bigint, bigint, text)
    TO coffer_app, coffer_auditor;

REVOKE ALL ON audit.checkpoints, audit.signing_keys, audit.access_log, audit.denials,
    audit.unexpected_purposes, audit.credential_usage, audit.credentials,
    audit.expiring_credentials, audit.key_inventory, audit.ceremonies, audit.prunes,
    audit.verifications, audit.integrity FROM PUBLIC;
GRANT SELECT ON audit.checkpoints, audit.signing_keys, audit.access_log, audit.denials,
    audit.unexpected_purposes, audit.credential_usage, audit.credentials,
    audit.expiring_credentials, audit.key_inventory, audit.ceremonies, audit.prunes,
    audit.verifications, audit.integrity TO coffer_auditor;

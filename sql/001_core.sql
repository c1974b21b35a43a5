-- SPDX-License-Identifier: Apache-2.0
--
-- 001_core: the key hierarchy and the encrypted credential rows.
--
-- Runs as coffer_owner (the database owner) inside the migration runner's
-- transaction. The runner has already created schema coffer and
-- coffer.schema_migrations. coffer_app reads and writes rows but can never
-- delete them, truncate them or change the schema; coffer_auditor sees
-- nothing here and reads only schema audit.
--
-- No key ever appears here in plaintext: master keys are described by label
-- and check value only, org keys and content keys are stored wrapped, and
-- every blob records the mechanism and key version that made it.

-- Nothing lives in public; no role may create objects there.
REVOKE ALL ON SCHEMA public FROM PUBLIC;

REVOKE ALL ON SCHEMA coffer FROM PUBLIC;
GRANT USAGE ON SCHEMA coffer TO coffer_app;
COMMENT ON SCHEMA coffer IS
    'Coffer data: key hierarchy metadata and encrypted credentials. Written only by coffer_app through the server; never readable by coffer_auditor.';

CREATE SCHEMA audit;
REVOKE ALL ON SCHEMA audit FROM PUBLIC;
GRANT USAGE ON SCHEMA audit TO coffer_auditor;
COMMENT ON SCHEMA audit IS
    'Audit views for compliance auditors (role coffer_auditor), who can read nothing else.';

COMMENT ON TABLE coffer.schema_migrations IS
    'Migrations applied to this database, written by the migration runner as coffer_owner. A recorded sha256 that differs from the running build''s file stops the migration.';
COMMENT ON COLUMN coffer.schema_migrations.version IS 'NNN of the migration file NNN_name.sql.';
COMMENT ON COLUMN coffer.schema_migrations.name IS 'File name of the migration in sql/.';
COMMENT ON COLUMN coffer.schema_migrations.sha256 IS 'Lower-case hex SHA-256 of the file as applied.';
COMMENT ON COLUMN coffer.schema_migrations.applied_at IS 'When the migration was committed.';
GRANT SELECT ON coffer.schema_migrations TO coffer_app;

-- ---- Master keys -------------------------------------------------------------

CREATE TABLE coffer.master_keys (
    version int PRIMARY KEY CHECK (version > 0),
    label text NOT NULL UNIQUE CHECK (label = 'coffer-mk-v' || version::text),
    kcv bytea NOT NULL CHECK (octet_length(kcv) = 3),
    state text NOT NULL CHECK (state IN ('current', 'active', 'retired', 'destroyed')),
    created_at timestamptz NOT NULL DEFAULT now(),
    retired_at timestamptz,
    destroyed_at timestamptz
);
CREATE UNIQUE INDEX master_keys_one_current ON coffer.master_keys ((true))
    WHERE state = 'current';

COMMENT ON TABLE coffer.master_keys IS
    'Master wrapping keys: AES-256 objects in the PKCS#11 token, never extractable. This table describes them; the key material never leaves the token.';
COMMENT ON COLUMN coffer.master_keys.version IS 'Master key version n, 1 upwards.';
COMMENT ON COLUMN coffer.master_keys.label IS 'CKA_LABEL of the token object: coffer-mk-v<version>.';
COMMENT ON COLUMN coffer.master_keys.kcv IS 'Key check value (CKA_CHECK_VALUE, 3 bytes) proving the token object is the key recorded here.';
COMMENT ON COLUMN coffer.master_keys.state IS
    'current: wraps new org keys (at most one row); active: still unwraps; retired: wraps nothing, kept until destroyed; destroyed: removed from the token in a ceremony.';
COMMENT ON COLUMN coffer.master_keys.created_at IS 'When the key was created in the token and recorded.';
COMMENT ON COLUMN coffer.master_keys.retired_at IS 'When the key was retired, if it was.';
COMMENT ON COLUMN coffer.master_keys.destroyed_at IS 'When the key was destroyed, if it was.';

-- ---- Orgs and projects ---------------------------------------------------------

CREATE TABLE coffer.orgs (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name text NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    created_at timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE coffer.orgs IS
    'Organisations: the absolute boundary of access. Every credential and key belongs to exactly one org.';
COMMENT ON COLUMN coffer.orgs.id IS 'Org identifier.';
COMMENT ON COLUMN coffer.orgs.name IS 'Org name as used in API paths and SPIFFE IDs.';
COMMENT ON COLUMN coffer.orgs.created_at IS 'When the org was created.';

CREATE TABLE coffer.projects (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id uuid NOT NULL REFERENCES coffer.orgs (id),
    name text NOT NULL CHECK (name ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (org_id, name),
    UNIQUE (id, org_id)
);

COMMENT ON TABLE coffer.projects IS 'Projects of an org; credentials are stored per project.';
COMMENT ON COLUMN coffer.projects.id IS 'Project identifier.';
COMMENT ON COLUMN coffer.projects.org_id IS 'The org the project belongs to.';
COMMENT ON COLUMN coffer.projects.name IS 'Project name, unique within its org.';
COMMENT ON COLUMN coffer.projects.created_at IS 'When the project was created.';

-- ---- Org keys -------------------------------------------------------------------

CREATE TABLE coffer.org_keys (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id uuid NOT NULL REFERENCES coffer.orgs (id),
    version int NOT NULL CHECK (version > 0),
    mk_version int NOT NULL REFERENCES coffer.master_keys (version),
    wrap_mech text NOT NULL CHECK (wrap_mech IN ('aes-kwp')),
    wrapped bytea NOT NULL CHECK (octet_length(wrapped) BETWEEN 16 AND 64),
    kcv bytea NOT NULL CHECK (octet_length(kcv) = 3),
    state text NOT NULL CHECK (state IN ('current', 'active', 'retired', 'destroyed')),
    created_at timestamptz NOT NULL DEFAULT now(),
    rewrapped_at timestamptz,
    retired_at timestamptz,
    destroyed_at timestamptz,
    UNIQUE (org_id, version)
);
CREATE UNIQUE INDEX org_keys_one_current ON coffer.org_keys (org_id) WHERE state = 'current';
CREATE INDEX org_keys_mk_version ON coffer.org_keys (mk_version);

COMMENT ON TABLE coffer.org_keys IS
    'Versioned AES-256 data keys of each org, generated in the token and stored here only wrapped under a master key version. Destroying every version crypto-shreds the org.';
COMMENT ON COLUMN coffer.org_keys.id IS 'Identifier of this org key version.';
COMMENT ON COLUMN coffer.org_keys.org_id IS 'The org the key belongs to.';
COMMENT ON COLUMN coffer.org_keys.version IS 'Org key version, 1 upwards within the org.';
COMMENT ON COLUMN coffer.org_keys.mk_version IS 'Master key version that wrapped this key; changes when the key is rewrapped after a master key rotation.';
COMMENT ON COLUMN coffer.org_keys.wrap_mech IS 'Wrapping mechanism: aes-kwp is AES key wrap with padding (RFC 5649, CKM_AES_KEY_WRAP_PAD).';
COMMENT ON COLUMN coffer.org_keys.wrapped IS 'The org key wrapped under master key mk_version (40 bytes for AES-256 with RFC 5649).';
COMMENT ON COLUMN coffer.org_keys.kcv IS 'Key check value (3 bytes) of the unwrapped key, checked after every unwrap.';
COMMENT ON COLUMN coffer.org_keys.state IS
    'current: wraps new content keys (at most one per org); active: still unwraps; retired: wraps nothing; destroyed: unrecoverable.';
COMMENT ON COLUMN coffer.org_keys.created_at IS 'When the key version was created.';
COMMENT ON COLUMN coffer.org_keys.rewrapped_at IS 'When the key was last rewrapped under a newer master key.';
COMMENT ON COLUMN coffer.org_keys.retired_at IS 'When the key version was retired, if it was.';
COMMENT ON COLUMN coffer.org_keys.destroyed_at IS 'When the key version was destroyed, if it was.';

-- ---- Credentials ------------------------------------------------------------------

CREATE TABLE coffer.credentials (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id uuid NOT NULL,
    project_id uuid NOT NULL,
    name text NOT NULL CHECK (name ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    type text NOT NULL CHECK (type ~ '^[a-z0-9_]{1,31}$'),
    tier text NOT NULL CHECK (tier IN ('low', 'medium', 'high', 'critical')),
    current_version int NOT NULL CHECK (current_version >= 1),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (project_id, org_id) REFERENCES coffer.projects (id, org_id),
    UNIQUE (project_id, name),
    UNIQUE (id, org_id),
    UNIQUE (id, org_id, project_id)
);

COMMENT ON TABLE coffer.credentials IS
    'Named credentials of a project. The values live encrypted in credential_versions; this row holds no secret.';
COMMENT ON COLUMN coffer.credentials.id IS 'Credential identifier.';
COMMENT ON COLUMN coffer.credentials.org_id IS 'The org of the credential; always equal to its project''s org.';
COMMENT ON COLUMN coffer.credentials.project_id IS 'The project the credential is stored in.';
COMMENT ON COLUMN coffer.credentials.name IS 'Credential name, unique within its project.';
COMMENT ON COLUMN coffer.credentials.type IS 'Kind of credential (for example api_key, database_password), as given by the admin.';
COMMENT ON COLUMN coffer.credentials.tier IS 'Sensitivity tier: low, medium, high or critical; sets default and maximum lifetimes.';
COMMENT ON COLUMN coffer.credentials.current_version IS 'The version an access reads unless it names another.';
COMMENT ON COLUMN coffer.credentials.created_at IS 'When the credential was first stored.';
COMMENT ON COLUMN coffer.credentials.updated_at IS 'When the last version was added.';

CREATE TABLE coffer.credential_versions (
    credential_id uuid NOT NULL,
    version int NOT NULL CHECK (version > 0),
    org_id uuid NOT NULL,
    project_id uuid NOT NULL,
    org_key_version int NOT NULL,
    aead text NOT NULL CHECK (aead IN ('aes-256-gcm')),
    wrap_mech text NOT NULL CHECK (wrap_mech IN ('aes-kwp')),
    key_names text[] NOT NULL CHECK (
        array_ndims(key_names) = 1
        AND cardinality(key_names) BETWEEN 1 AND 64
        AND array_position(key_names, NULL) IS NULL
        AND array_to_string(key_names, ',') ~
            '^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}(,[A-Za-z0-9_][A-Za-z0-9_.-]{0,63})*$'),
    nonce bytea NOT NULL CHECK (octet_length(nonce) = 12),
    ciphertext bytea NOT NULL CHECK (octet_length(ciphertext) BETWEEN 1 AND 278528),
    tag bytea NOT NULL CHECK (octet_length(tag) = 16),
    wrapped_cek bytea NOT NULL CHECK (octet_length(wrapped_cek) BETWEEN 16 AND 64),
    created_at timestamptz NOT NULL DEFAULT now(),
    rewrapped_at timestamptz,
    PRIMARY KEY (credential_id, version),
    FOREIGN KEY (credential_id, org_id) REFERENCES coffer.credentials (id, org_id),
    FOREIGN KEY (credential_id, org_id, project_id)
        REFERENCES coffer.credentials (id, org_id, project_id),
    FOREIGN KEY (org_id, org_key_version) REFERENCES coffer.org_keys (org_id, version)
);
CREATE INDEX credential_versions_org_key ON coffer.credential_versions (org_id, org_key_version);

COMMENT ON TABLE coffer.credential_versions IS
    'One encrypted version of a credential: AES-256-GCM output under a one-time content key (CEK), the CEK wrapped under an org key version. The additional data binds each row to its org, project, credential, version and key names, so a blob copied to another row fails to decrypt.';
COMMENT ON COLUMN coffer.credential_versions.credential_id IS 'The credential this is a version of.';
COMMENT ON COLUMN coffer.credential_versions.version IS 'Version number, 1 upwards within the credential.';
COMMENT ON COLUMN coffer.credential_versions.org_id IS 'The credential''s org (part of the additional data).';
COMMENT ON COLUMN coffer.credential_versions.project_id IS 'The credential''s project (part of the additional data).';
COMMENT ON COLUMN coffer.credential_versions.org_key_version IS 'Org key version that wrapped the CEK; changes when the CEK is rewrapped after an org key rotation.';
COMMENT ON COLUMN coffer.credential_versions.aead IS 'Payload encryption: aes-256-gcm with a 96-bit nonce and a 128-bit tag, inside the token.';
COMMENT ON COLUMN coffer.credential_versions.wrap_mech IS 'CEK wrapping mechanism: aes-kwp (RFC 5649).';
COMMENT ON COLUMN coffer.credential_versions.key_names IS 'Names of the values in the payload, in order (1 to 64; part of the additional data). Never the values.';
COMMENT ON COLUMN coffer.credential_versions.nonce IS 'AES-GCM nonce (12 bytes), unique per CEK.';
COMMENT ON COLUMN coffer.credential_versions.ciphertext IS 'The encrypted payload (at most 256 KiB of values plus framing).';
COMMENT ON COLUMN coffer.credential_versions.tag IS 'AES-GCM authentication tag (16 bytes).';
COMMENT ON COLUMN coffer.credential_versions.wrapped_cek IS 'The content key wrapped under org key version org_key_version.';
COMMENT ON COLUMN coffer.credential_versions.created_at IS 'When the version was stored.';
COMMENT ON COLUMN coffer.credential_versions.rewrapped_at IS 'When the CEK was last rewrapped under a newer org key.';

-- ---- Privileges of coffer_app -------------------------------------------------------
-- Rows are never deleted by the application; row locks (SELECT ... FOR UPDATE)
-- need UPDATE on at least one column, which is why orgs and projects grant it
-- on name.

REVOKE ALL ON ALL TABLES IN SCHEMA coffer FROM PUBLIC;

GRANT SELECT, INSERT ON coffer.master_keys TO coffer_app;
GRANT UPDATE (state, retired_at, destroyed_at) ON coffer.master_keys TO coffer_app;

GRANT SELECT, INSERT ON coffer.orgs TO coffer_app;
GRANT UPDATE (name) ON coffer.orgs TO coffer_app;

GRANT SELECT, INSERT ON coffer.projects TO coffer_app;
GRANT UPDATE (name) ON coffer.projects TO coffer_app;

GRANT SELECT, INSERT ON coffer.org_keys TO coffer_app;
GRANT UPDATE (mk_version, wrapped, rewrapped_at, state, retired_at, destroyed_at)
    ON coffer.org_keys TO coffer_app;

GRANT SELECT, INSERT ON coffer.credentials TO coffer_app;
GRANT UPDATE (type, tier, current_version, updated_at) ON coffer.credentials TO coffer_app;

GRANT SELECT, INSERT ON coffer.credential_versions TO coffer_app;
GRANT UPDATE (org_key_version, wrapped_cek, rewrapped_at)
    ON coffer.credential_versions TO coffer_app;

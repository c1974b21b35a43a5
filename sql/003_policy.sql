-- SPDX-License-Identifier: Apache-2.0
--
-- 003_policy: the policy in force and the lifetimes of credentials.
--
-- `coffer policy apply` writes the YAML policy of docs/policy.md into these
-- tables in one transaction; every access reads them afresh. Policy rows are
-- configuration, so coffer_app may delete them when a policy removes a
-- grant; the history is kept in policy_versions and phase_changes, which
-- coffer_app can only append to.

-- ---- Agent types and tiers -----------------------------------------------------

CREATE TABLE coffer.agent_types (
    org_id uuid NOT NULL REFERENCES coffer.orgs (id),
    name text NOT NULL CHECK (name ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    description text CHECK (octet_length(description) BETWEEN 1 AND 1024),
    PRIMARY KEY (org_id, name)
);

COMMENT ON TABLE coffer.agent_types IS
    'Agent types an org''s policy declares; the <type> of spiffe://<domain>/org/<org>/agent/<type>/<instance>.';
COMMENT ON COLUMN coffer.agent_types.org_id IS 'The org whose policy declares the type.';
COMMENT ON COLUMN coffer.agent_types.name IS 'Agent type name.';
COMMENT ON COLUMN coffer.agent_types.description IS 'What agents of this type do, as the policy says.';

CREATE TABLE coffer.tier_lifetimes (
    org_id uuid NOT NULL REFERENCES coffer.orgs (id),
    tier text NOT NULL CHECK (tier IN ('low', 'medium', 'high', 'critical')),
    default_ttl bigint CHECK (default_ttl BETWEEN 1 AND 3153600000),
    max_ttl bigint CHECK (max_ttl BETWEEN 1 AND 3153600000),
    PRIMARY KEY (org_id, tier),
    CHECK (tier IN ('low', 'medium') OR (default_ttl IS NOT NULL AND max_ttl IS NOT NULL)),
    CHECK (tier <> 'high' OR max_ttl <= 604800),
    CHECK (tier <> 'critical' OR max_ttl <= 86400),
    CHECK (max_ttl IS NULL OR (default_ttl IS NOT NULL AND default_ttl <= max_ttl))
);

COMMENT ON TABLE coffer.tier_lifetimes IS
    'Lifetimes per sensitivity tier of an org. An org without rows uses the built-in lifetimes of docs/policy.md.';
COMMENT ON COLUMN coffer.tier_lifetimes.org_id IS 'The org.';
COMMENT ON COLUMN coffer.tier_lifetimes.tier IS 'low, medium, high or critical.';
COMMENT ON COLUMN coffer.tier_lifetimes.default_ttl IS
    'Seconds a credential stored without a lifetime lives; NULL: never expires (low and medium only).';
COMMENT ON COLUMN coffer.tier_lifetimes.max_ttl IS
    'Longest lifetime in seconds, enforced at every access from the time the current version was stored; NULL: none (low and medium only). At most 7 days for high and 24 hours for critical.';

-- ---- Projects: phases and members ---------------------------------------------

ALTER TABLE coffer.projects
    ADD COLUMN description text CHECK (octet_length(description) BETWEEN 1 AND 1024),
    ADD COLUMN phases text[] NOT NULL DEFAULT '{}' CHECK (
        cardinality(phases) <= 32
        AND (cardinality(phases) = 0 OR array_ndims(phases) = 1)
        AND array_position(phases, NULL) IS NULL
        AND array_to_string(phases, ',') ~
            '^([a-z0-9][a-z0-9_-]{0,62}(,[a-z0-9][a-z0-9_-]{0,62})*)?$'),
    ADD COLUMN initial_phase text,
    ADD COLUMN phase text,
    ADD COLUMN phase_changed_at timestamptz,
    ADD COLUMN removed_at timestamptz,
    ADD CONSTRAINT projects_initial_phase_declared
        CHECK (initial_phase IS NULL OR initial_phase = ANY (phases)),
    ADD CONSTRAINT projects_phase_declared CHECK (phase IS NULL OR phase = ANY (phases));

COMMENT ON COLUMN coffer.projects.description IS 'What the project is, as the policy says.';
COMMENT ON COLUMN coffer.projects.phases IS 'The project''s phases in order, from the policy.';
COMMENT ON COLUMN coffer.projects.initial_phase IS 'The phase a new project starts in.';
COMMENT ON COLUMN coffer.projects.phase IS
    'The current phase; grants naming phases apply only while the project is in one of them. NULL until a policy declares phases.';
COMMENT ON COLUMN coffer.projects.phase_changed_at IS 'When the project entered its current phase.';
COMMENT ON COLUMN coffer.projects.removed_at IS
    'When a policy stopped declaring the project (which then has no members, rules or grants); NULL while declared. Projects are never deleted, so their history stays.';

CREATE TABLE coffer.project_members (
    project_id uuid NOT NULL,
    org_id uuid NOT NULL,
    agent_type text NOT NULL,
    PRIMARY KEY (project_id, agent_type),
    FOREIGN KEY (project_id, org_id) REFERENCES coffer.projects (id, org_id) ON DELETE CASCADE,
    FOREIGN KEY (org_id, agent_type) REFERENCES coffer.agent_types (org_id, name)
        ON DELETE CASCADE
);

COMMENT ON TABLE coffer.project_members IS
    'Agent types that are members of a project; only members can reach its credentials.';
COMMENT ON COLUMN coffer.project_members.project_id IS 'The project.';
COMMENT ON COLUMN coffer.project_members.org_id IS 'The project''s org.';
COMMENT ON COLUMN coffer.project_members.agent_type IS 'A member agent type of the org.';

-- ---- Credential rules and grants ------------------------------------------------

CREATE TABLE coffer.credential_rules (
    project_id uuid NOT NULL,
    org_id uuid NOT NULL,
    name text NOT NULL CHECK (name ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    description text CHECK (octet_length(description) BETWEEN 1 AND 1024),
    expire_on_phase_end text CHECK (expire_on_phase_end ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    purposes text[] NOT NULL DEFAULT '{}' CHECK (
        cardinality(purposes) <= 64
        AND (cardinality(purposes) = 0 OR array_ndims(purposes) = 1)
        AND array_position(purposes, NULL) IS NULL),
    PRIMARY KEY (project_id, name),
    FOREIGN KEY (project_id, org_id) REFERENCES coffer.projects (id, org_id) ON DELETE CASCADE
);

COMMENT ON TABLE coffer.credential_rules IS
    'Per credential name of a project: description, phase-end expiry and allowed purpose patterns. The credential need not exist yet.';
COMMENT ON COLUMN coffer.credential_rules.project_id IS 'The project.';
COMMENT ON COLUMN coffer.credential_rules.org_id IS 'The project''s org.';
COMMENT ON COLUMN coffer.credential_rules.name IS 'The credential name the rule applies to.';
COMMENT ON COLUMN coffer.credential_rules.description IS 'What the credential is for, as the policy says.';
COMMENT ON COLUMN coffer.credential_rules.expire_on_phase_end IS
    'The credential expires when the project leaves this phase.';
COMMENT ON COLUMN coffer.credential_rules.purposes IS
    'Allowed purpose patterns (* matches any text); an access whose purpose matches none is allowed but flagged purpose_unexpected. Empty: every purpose is expected.';

CREATE TABLE coffer.grants (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    project_id uuid NOT NULL,
    org_id uuid NOT NULL,
    credential_name text NOT NULL CHECK (credential_name ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    agent_type text NOT NULL,
    instance text CHECK (instance ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    phases text[] NOT NULL DEFAULT '{}' CHECK (
        cardinality(phases) <= 32
        AND (cardinality(phases) = 0 OR array_ndims(phases) = 1)
        AND array_position(phases, NULL) IS NULL
        AND array_to_string(phases, ',') ~
            '^([a-z0-9][a-z0-9_-]{0,62}(,[a-z0-9][a-z0-9_-]{0,62})*)?$'),
    source text NOT NULL CHECK (source IN ('policy', 'api')),
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE NULLS NOT DISTINCT (project_id, credential_name, agent_type, instance, source),
    FOREIGN KEY (project_id, org_id) REFERENCES coffer.projects (id, org_id) ON DELETE CASCADE,
    FOREIGN KEY (org_id, agent_type) REFERENCES coffer.agent_types (org_id, name)
        ON DELETE CASCADE
);
CREATE INDEX grants_credential ON coffer.grants (project_id, credential_name);

COMMENT ON TABLE coffer.grants IS
    'Who may access a credential: an agent type, optionally one instance, optionally some phases. Access is denied without a matching grant.';
COMMENT ON COLUMN coffer.grants.id IS 'Grant identifier.';
COMMENT ON COLUMN coffer.grants.project_id IS 'The credential''s project.';
COMMENT ON COLUMN coffer.grants.org_id IS 'The credential''s org.';
COMMENT ON COLUMN coffer.grants.credential_name IS 'The credential the grant applies to.';
COMMENT ON COLUMN coffer.grants.agent_type IS 'The agent type granted.';
COMMENT ON COLUMN coffer.grants.instance IS 'The single instance granted; NULL: every instance of the type.';
COMMENT ON COLUMN coffer.grants.phases IS 'Phases in which the grant applies; empty: every phase.';
COMMENT ON COLUMN coffer.grants.source IS
    'policy: written by coffer policy apply (and removed by it); api: given when the credential was stored.';
COMMENT ON COLUMN coffer.grants.created_at IS 'When the grant was written.';

-- ---- Credential lifetimes -------------------------------------------------------

ALTER TABLE coffer.credentials
    ADD COLUMN description text CHECK (octet_length(description) BETWEEN 1 AND 1024),
    ADD COLUMN expires_at timestamptz,
    ADD COLUMN expire_on_phase_end text
        CHECK (expire_on_phase_end ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    ADD COLUMN revoked_at timestamptz,
    ADD COLUMN revoked_reason text
        CHECK (octet_length(revoked_reason) BETWEEN 1 AND 1024),
    ADD CONSTRAINT credentials_revoked_reason CHECK ((revoked_at IS NULL) = (revoked_reason IS NULL));

COMMENT ON COLUMN coffer.credentials.description IS 'What the credential is for, as given when stored.';
COMMENT ON COLUMN coffer.credentials.expires_at IS
    'From this instant the credential is refused (expired); NULL: no expiry of its own (the tier''s max_ttl still applies).';
COMMENT ON COLUMN coffer.credentials.expire_on_phase_end IS
    'The credential expires when its project leaves this phase (as given when stored; a credential rule can say the same).';
COMMENT ON COLUMN coffer.credentials.revoked_at IS 'When the credential was revoked; refused from then on.';
COMMENT ON COLUMN coffer.credentials.revoked_reason IS 'Why it was revoked, as the admin said.';

-- ---- History: policy versions and phase changes ------------------------------------

CREATE TABLE coffer.policy_versions (
    org_id uuid NOT NULL REFERENCES coffer.orgs (id),
    version int NOT NULL CHECK (version > 0),
    file_paths text[] NOT NULL CHECK (cardinality(file_paths) BETWEEN 1 AND 256),
    file_sha256 text[] NOT NULL CHECK (
        cardinality(file_sha256) = cardinality(file_paths)
        AND array_to_string(file_sha256, ',') ~ '^[0-9a-f]{64}(,[0-9a-f]{64})*$'),
    policy_sha256 text NOT NULL CHECK (policy_sha256 ~ '^[0-9a-f]{64}$'),
    policy text NOT NULL,
    changes text[] NOT NULL,
    applied_by text NOT NULL CHECK (octet_length(applied_by) BETWEEN 1 AND 256),
    db_user text NOT NULL DEFAULT session_user,
    applied_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, version)
);

COMMENT ON TABLE coffer.policy_versions IS
    'Every change of an org''s policy: what was applied, from which files, by whom, and what changed. Append-only.';
COMMENT ON COLUMN coffer.policy_versions.org_id IS 'The org.';
COMMENT ON COLUMN coffer.policy_versions.version IS 'Policy version, 1 upwards per org; one per apply that changed something.';
COMMENT ON COLUMN coffer.policy_versions.file_paths IS 'Paths of the policy files as given to coffer policy apply.';
COMMENT ON COLUMN coffer.policy_versions.file_sha256 IS 'Lower-case hex SHA-256 of each file, in the order of file_paths.';
COMMENT ON COLUMN coffer.policy_versions.policy_sha256 IS 'SHA-256 of the policy text below.';
COMMENT ON COLUMN coffer.policy_versions.policy IS 'The policy in force from this version, as coffer policy show prints it.';
COMMENT ON COLUMN coffer.policy_versions.changes IS 'What changed from the previous version, one line per change (+ added, - removed, ~ modified).';
COMMENT ON COLUMN coffer.policy_versions.applied_by IS 'The operating-system user and host that ran the apply.';
COMMENT ON COLUMN coffer.policy_versions.db_user IS 'The database role that wrote the version.';
COMMENT ON COLUMN coffer.policy_versions.applied_at IS 'When the version was committed.';

CREATE TABLE coffer.phase_changes (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    project_id uuid NOT NULL,
    org_id uuid NOT NULL,
    from_phase text,
    to_phase text NOT NULL,
    expired_credentials text[] NOT NULL,
    changed_by text NOT NULL CHECK (octet_length(changed_by) BETWEEN 1 AND 256),
    changed_at timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (project_id, org_id) REFERENCES coffer.projects (id, org_id)
);
CREATE INDEX phase_changes_project ON coffer.phase_changes (project_id, changed_at);

COMMENT ON TABLE coffer.phase_changes IS
    'Every move of a project to another phase, with the credentials that expired because the project left a phase. Append-only.';
COMMENT ON COLUMN coffer.phase_changes.id IS 'Change identifier.';
COMMENT ON COLUMN coffer.phase_changes.project_id IS 'The project.';
COMMENT ON COLUMN coffer.phase_changes.org_id IS 'The project''s org.';
COMMENT ON COLUMN coffer.phase_changes.from_phase IS 'The phase left; NULL if the project had none.';
COMMENT ON COLUMN coffer.phase_changes.to_phase IS 'The phase entered.';
COMMENT ON COLUMN coffer.phase_changes.expired_credentials IS 'Names of the credentials that expired in the same transaction.';
COMMENT ON COLUMN coffer.phase_changes.changed_by IS 'Who moved the project (operating-system user and host, or the API principal).';
COMMENT ON COLUMN coffer.phase_changes.changed_at IS 'When the change was committed; the expired credentials expire at this instant.';

-- ---- What auditors read -------------------------------------------------------------

CREATE VIEW audit.policy_versions AS
    SELECT o.name AS org, v.version, v.applied_at, v.applied_by, v.db_user, v.file_paths,
           v.file_sha256, v.policy_sha256, v.changes, v.policy
    FROM coffer.policy_versions v JOIN coffer.orgs o ON o.id = v.org_id;

COMMENT ON VIEW audit.policy_versions IS
    'Every change of an org''s access policy: when, by whom, from which files (with their SHA-256), what changed, and the whole policy in force from then on.';
COMMENT ON COLUMN audit.policy_versions.org IS 'The org whose policy changed.';
COMMENT ON COLUMN audit.policy_versions.version IS 'Policy version, 1 upwards per org.';
COMMENT ON COLUMN audit.policy_versions.applied_at IS 'When the new policy took effect (commit time of the apply).';
COMMENT ON COLUMN audit.policy_versions.applied_by IS 'Operating-system user and host that ran coffer policy apply.';
COMMENT ON COLUMN audit.policy_versions.db_user IS 'Database role that wrote the change.';
COMMENT ON COLUMN audit.policy_versions.file_paths IS 'Policy files applied, as named on the command line.';
COMMENT ON COLUMN audit.policy_versions.file_sha256 IS 'SHA-256 of each file, in the order of file_paths; compare with the files in version control.';
COMMENT ON COLUMN audit.policy_versions.policy_sha256 IS 'SHA-256 of the policy column.';
COMMENT ON COLUMN audit.policy_versions.changes IS 'One line per change from the previous version: + added, - removed, ~ modified.';
COMMENT ON COLUMN audit.policy_versions.policy IS 'The policy in force from this version, as YAML (coffer policy show).';

CREATE VIEW audit.phase_changes AS
    SELECT o.name AS org, p.name AS project, c.from_phase, c.to_phase, c.changed_at,
           c.changed_by, c.expired_credentials
    FROM coffer.phase_changes c
    JOIN coffer.projects p ON p.id = c.project_id
    JOIN coffer.orgs o ON o.id = c.org_id;

COMMENT ON VIEW audit.phase_changes IS
    'Every move of a project to another phase, with the credentials that expired because the project left a phase.';
COMMENT ON COLUMN audit.phase_changes.org IS 'The project''s org.';
COMMENT ON COLUMN audit.phase_changes.project IS 'The project.';
COMMENT ON COLUMN audit.phase_changes.from_phase IS 'The phase left (NULL if the project had none).';
COMMENT ON COLUMN audit.phase_changes.to_phase IS 'The phase entered.';
COMMENT ON COLUMN audit.phase_changes.changed_at IS 'When the move committed; the listed credentials expired at this instant.';
COMMENT ON COLUMN audit.phase_changes.changed_by IS 'Who moved the project.';
COMMENT ON COLUMN audit.phase_changes.expired_credentials IS 'Credentials of the project that expired with the move.';

REVOKE ALL ON audit.policy_versions, audit.phase_changes FROM PUBLIC;
GRANT SELECT ON audit.policy_versions, audit.phase_changes TO coffer_auditor;

-- ---- Privileges of coffer_app -------------------------------------------------------

REVOKE ALL ON coffer.agent_types, coffer.tier_lifetimes, coffer.project_members,
    coffer.credential_rules, coffer.grants, coffer.policy_versions, coffer.phase_changes
    FROM PUBLIC;

GRANT SELECT, INSERT, DELETE ON coffer.agent_types TO coffer_app;
GRANT UPDATE (description) ON coffer.agent_types TO coffer_app;
GRANT SELECT, INSERT, DELETE ON coffer.tier_lifetimes TO coffer_app;
GRANT SELECT, INSERT, DELETE ON coffer.project_members TO coffer_app;
GRANT SELECT, INSERT, DELETE ON coffer.credential_rules TO coffer_app;
GRANT SELECT, INSERT, DELETE ON coffer.grants TO coffer_app;
GRANT SELECT, INSERT ON coffer.policy_versions TO coffer_app;
GRANT SELECT, INSERT ON coffer.phase_changes TO coffer_app;

GRANT UPDATE (description, phases, initial_phase, phase, phase_changed_at, removed_at)
    ON coffer.projects TO coffer_app;
GRANT UPDATE (description, expires_at, expire_on_phase_end, revoked_at, revoked_reason)
    ON coffer.credentials TO coffer_app;

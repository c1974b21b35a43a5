-- SPDX-License-Identifier: Apache-2.0
--
-- 007_key_expiry: per-key expiry inside a credential version: an OAuth access token that lives an
-- hour beside a refresh token that lives a month. Metadata only, never a value.

ALTER TABLE coffer.credential_versions ADD COLUMN key_expires_at timestamptz[];

-- Aligned with key_names: same length, same lower bound, one dimension. A NULL
-- element is a key without an expiry of its own; a NULL column is a version
-- none of whose keys has one.
ALTER TABLE coffer.credential_versions ADD CONSTRAINT credential_versions_key_expires_at CHECK (
    key_expires_at IS NULL
    OR (array_ndims(key_expires_at) = 1
        AND array_lower(key_expires_at, 1) = 1
        AND cardinality(key_expires_at) = cardinality(key_names)
        AND NOT ('infinity'::timestamptz = ANY (key_expires_at))
        AND NOT ('-infinity'::timestamptz = ANY (key_expires_at))));

COMMENT ON COLUMN coffer.credential_versions.key_expires_at IS
    'Per-key expiry, aligned with key_names: element i is the instant from which key i is left out of every access (NULL: that key has no expiry of its own). NULL when no key of the version has one. Set once, when the version is stored, never later than the credential''s own expiry. Never a value.';

-- Set by the same transaction that inserts the version; the setter only fills a
-- NULL column, so a stored expiry is never moved.
GRANT UPDATE (key_expires_at) ON coffer.credential_versions TO coffer_app;

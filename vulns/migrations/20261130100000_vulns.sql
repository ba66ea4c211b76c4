-- Vulnerability data and fleet matches. Feed rows are written under a fresh generation inside one
-- transaction that also moves the feed's pointer, so readers see the old generation or the new one.

-- One row per synced feed (OSV directory: `Debian`, `PyPI`, ...): current generation and sync facts.
CREATE TABLE IF NOT EXISTS fathom_vuln_feeds (
    feed            text        PRIMARY KEY,
    generation      bigint,
    etag            text,
    last_modified   text,
    records         bigint      NOT NULL DEFAULT 0,
    malformed       bigint      NOT NULL DEFAULT 0,
    last_checked_at timestamptz,
    last_success_at timestamptz,
    last_error      text
);
CREATE SEQUENCE IF NOT EXISTS fathom_vuln_generation_seq;

-- Records by generation (the full record kept for the API's detail view).
CREATE TABLE IF NOT EXISTS fathom_vuln_records (
    generation bigint  NOT NULL,
    id         text    NOT NULL,
    modified   text    NOT NULL,
    withdrawn  boolean NOT NULL,
    aliases    text[]  NOT NULL,
    summary    text,
    record     jsonb   NOT NULL,
    PRIMARY KEY (generation, id)
);
CREATE INDEX IF NOT EXISTS fathom_vuln_records_aliases ON fathom_vuln_records USING gin (aliases);

-- Affected entries of live (not withdrawn) records, keyed for matching, with their severity precomputed.
CREATE TABLE IF NOT EXISTS fathom_vuln_affected (
    generation bigint NOT NULL,
    ecosystem  text   NOT NULL,   -- normalized (`Red Hat:9`)
    name       text   NOT NULL,   -- normalized (PyPI by PEP 503)
    vuln_id    text   NOT NULL,
    aliases    text[] NOT NULL,
    severity   text   NOT NULL,
    cvss_score float8,
    urls       text[] NOT NULL,
    entry      jsonb  NOT NULL    -- the OSV `affected` object
);
CREATE INDEX IF NOT EXISTS fathom_vuln_affected_key ON fathom_vuln_affected (ecosystem, name, generation);
CREATE INDEX IF NOT EXISTS fathom_vuln_affected_generation ON fathom_vuln_affected (generation);

-- When each fix was first seen in any feed: policy gates count days from here.
CREATE TABLE IF NOT EXISTS fathom_vuln_fix_seen (
    vuln_id       text        NOT NULL,
    ecosystem     text        NOT NULL,
    name          text        NOT NULL,
    fixed_version text        NOT NULL,
    first_seen_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (vuln_id, ecosystem, name, fixed_version)
);

-- Images indexed for matching (the analysis they were indexed from) and their visible packages' keys.
CREATE TABLE IF NOT EXISTS fathom_vuln_images (
    manifest_digest text        PRIMARY KEY,
    analyzed_at     timestamptz NOT NULL
);
CREATE TABLE IF NOT EXISTS fathom_vuln_image_packages (
    manifest_digest text    NOT NULL REFERENCES fathom_vuln_images ON DELETE CASCADE,
    ecosystem       text    NOT NULL,
    name            text    NOT NULL,
    version         text    NOT NULL,
    package_type    text    NOT NULL,
    package_name    text    NOT NULL,
    package_version text    NOT NULL,
    purl            text    NOT NULL,
    layer_digest    text    NOT NULL,
    os              boolean NOT NULL
);
CREATE INDEX IF NOT EXISTS fathom_vuln_image_packages_digest ON fathom_vuln_image_packages (manifest_digest);
CREATE INDEX IF NOT EXISTS fathom_vuln_image_packages_key ON fathom_vuln_image_packages (ecosystem, name, version);

-- Distinct keys of the fleet and the feed state (highest current generation) they were last matched at.
CREATE TABLE IF NOT EXISTS fathom_vuln_keys (
    ecosystem     text   NOT NULL,
    name          text   NOT NULL,
    version       text   NOT NULL,
    matched_stamp bigint NOT NULL DEFAULT -1,
    PRIMARY KEY (ecosystem, name, version)
);

-- Matches per distinct key: one row per (key, vulnerability).
CREATE TABLE IF NOT EXISTS fathom_vuln_matches (
    ecosystem  text   NOT NULL,
    name       text   NOT NULL,
    version    text   NOT NULL,
    vuln_id    text   NOT NULL,
    aliases    text[] NOT NULL,
    severity   text   NOT NULL,
    cvss_score float8,
    fix_state  text   NOT NULL,
    fixed      text[] NOT NULL,
    urls       text[] NOT NULL,
    PRIMARY KEY (ecosystem, name, version, vuln_id)
);
CREATE INDEX IF NOT EXISTS fathom_vuln_matches_id ON fathom_vuln_matches (vuln_id);
CREATE INDEX IF NOT EXISTS fathom_vuln_matches_aliases ON fathom_vuln_matches USING gin (aliases);

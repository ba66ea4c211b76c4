-- The vulnerability index by package group, so it grows with unique layers rather than with images.
-- An image's visible packages fall in groups by the layer that introduced them; a group is stored once
-- per distinct content (its `hash`: sha256 over its rows, canonical as in `vulns/src/store/groups.rs`),
-- and an image is its list of groups. Images sharing base layers (and not hiding any of their packages)
-- share those layers' groups; an image whose upper layer hides a lower package gets a group of its own
-- for that layer, so every image's rows are exactly what they were.
--
-- `fathom_vuln_image_packages` becomes a view with the old table's columns: every reader (per-image
-- vulnerabilities, by-vulnerability lookups, matched state, notification diffs, policy facts) keeps
-- its SQL and its answers.

CREATE TABLE IF NOT EXISTS fathom_vuln_groups (
    id   bigserial PRIMARY KEY,
    hash bytea     NOT NULL UNIQUE
);

-- Written by COPY for new groups only; no foreign key (a check per row), groups are pruned with theirs.
CREATE TABLE IF NOT EXISTS fathom_vuln_group_packages (
    group_id        bigint  NOT NULL,
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
CREATE INDEX IF NOT EXISTS fathom_vuln_group_packages_group ON fathom_vuln_group_packages (group_id);
-- By-vulnerability reads walk key -> groups -> images; the names in the index skip the heap.
CREATE INDEX IF NOT EXISTS fathom_vuln_group_packages_key ON fathom_vuln_group_packages
    (ecosystem, name, version, group_id) INCLUDE (package_name, package_version);

CREATE TABLE IF NOT EXISTS fathom_vuln_image_groups (
    manifest_digest text   NOT NULL,
    group_id        bigint NOT NULL REFERENCES fathom_vuln_groups,
    PRIMARY KEY (manifest_digest, group_id)
);
CREATE INDEX IF NOT EXISTS fathom_vuln_image_groups_group ON fathom_vuln_image_groups (group_id, manifest_digest);

-- Carry the stored index over: each (image, layer) group of rows is hashed exactly as the indexer hashes
-- it (fields joined by U+001F, each row ended by U+001E, rows in byte order, `os` as t/f), so images
-- indexed before and after the upgrade share groups.
CREATE TEMPORARY TABLE fathom_migrating_groups ON COMMIT DROP AS
SELECT manifest_digest, layer_digest,
       sha256(convert_to(string_agg(line, '' ORDER BY line COLLATE "C"), 'UTF8')) AS hash
FROM (SELECT manifest_digest, layer_digest,
             ecosystem || chr(31) || name || chr(31) || version || chr(31) || package_type || chr(31)
             || package_name || chr(31) || package_version || chr(31) || purl || chr(31) || layer_digest
             || chr(31) || CASE WHEN os THEN 't' ELSE 'f' END || chr(30) AS line
      FROM fathom_vuln_image_packages) r
GROUP BY manifest_digest, layer_digest;

INSERT INTO fathom_vuln_groups (hash)
SELECT DISTINCT hash FROM fathom_migrating_groups ON CONFLICT DO NOTHING;

-- One image's rows stand for every image with the same group.
INSERT INTO fathom_vuln_group_packages (group_id, ecosystem, name, version, package_type, package_name,
    package_version, purl, layer_digest, os)
SELECT g.id, p.ecosystem, p.name, p.version, p.package_type, p.package_name, p.package_version, p.purl,
       p.layer_digest, p.os
FROM (SELECT DISTINCT ON (hash) hash, manifest_digest, layer_digest FROM fathom_migrating_groups ORDER BY hash) r
JOIN fathom_vuln_groups g ON g.hash = r.hash
JOIN fathom_vuln_image_packages p ON p.manifest_digest = r.manifest_digest AND p.layer_digest = r.layer_digest;

INSERT INTO fathom_vuln_image_groups (manifest_digest, group_id)
SELECT DISTINCT m.manifest_digest, g.id
FROM fathom_migrating_groups m JOIN fathom_vuln_groups g ON g.hash = m.hash
ON CONFLICT DO NOTHING;

DROP TABLE fathom_vuln_image_packages;

CREATE VIEW fathom_vuln_image_packages AS
SELECT g.manifest_digest, p.ecosystem, p.name, p.version, p.package_type, p.package_name, p.package_version,
       p.purl, p.layer_digest, p.os
FROM fathom_vuln_image_groups g JOIN fathom_vuln_group_packages p ON p.group_id = g.group_id;

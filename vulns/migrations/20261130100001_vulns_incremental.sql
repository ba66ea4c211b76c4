-- Incremental re-matching. A sync records, in the transaction that moves its feed's pointer, the
-- (ecosystem, name) pairs named by records it added, changed, removed or withdrew; a re-match evaluates
-- only the fleet's keys under those names (and keys never matched) and carries every other match over.

CREATE TABLE IF NOT EXISTS fathom_vuln_dirty (
    seq       bigserial PRIMARY KEY,
    ecosystem text      NOT NULL,
    name      text      NOT NULL
);
CREATE INDEX IF NOT EXISTS fathom_vuln_dirty_key ON fathom_vuln_dirty (ecosystem, name);

-- `matched_stamp` now means: -1 never matched (a new key), otherwise matched (the sequence of the last
-- dirty entry it saw). Keys the old scheme considered stale (matched before the newest generation) are
-- matched afresh.
UPDATE fathom_vuln_keys SET matched_stamp = -1
WHERE matched_stamp < (SELECT coalesce(max(generation), 0) FROM fathom_vuln_feeds);
CREATE INDEX IF NOT EXISTS fathom_vuln_keys_unmatched ON fathom_vuln_keys (ecosystem, name, version)
    WHERE matched_stamp < 0;

-- When a match's first fix was first seen, computed when the match is written (a fix seen for the
-- first time always comes with a feed change, which re-matches the key), so the per-image read joins
-- nothing but packages and matches.
ALTER TABLE fathom_vuln_matches ADD COLUMN IF NOT EXISTS fix_observed_at timestamptz;
UPDATE fathom_vuln_matches m SET fix_observed_at = (
    SELECT min(f.first_seen_at) FROM fathom_vuln_fix_seen f
    WHERE f.vuln_id = m.vuln_id AND f.ecosystem = m.ecosystem AND f.name = m.name
      AND f.fixed_version = ANY(m.fixed));
CREATE INDEX IF NOT EXISTS fathom_vuln_fix_seen_name ON fathom_vuln_fix_seen (ecosystem, name);

-- By-vulnerability reads walk key -> images; carrying the digest and the names in the index lets them
-- skip the heap.
CREATE INDEX IF NOT EXISTS fathom_vuln_image_packages_key_digest ON fathom_vuln_image_packages
    (ecosystem, name, version, manifest_digest) INCLUDE (package_name, package_version);
DROP INDEX IF EXISTS fathom_vuln_image_packages_key;

-- Packages are written by COPY, hundreds of thousands per batch: a foreign key would fire a check per
-- row. Indexing deletes an image's packages itself, in the transaction that rewrites them.
ALTER TABLE fathom_vuln_image_packages DROP CONSTRAINT IF EXISTS fathom_vuln_image_packages_manifest_digest_fkey;

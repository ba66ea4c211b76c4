-- Whether the feed source's `ecosystems.txt` lists the feed. A partial mirror (air-gapped sites mirror
-- only what they use) does not offer every default ecosystem: such a feed is `not_offered`, which is
-- neither a failure nor stale.
ALTER TABLE fathom_vuln_feeds ADD COLUMN IF NOT EXISTS offered boolean NOT NULL DEFAULT true;

-- Deleting an image looks up the watches whose tag points at it (never deleted without force) and drops
-- its rows from the tags' history: both by digest.
CREATE INDEX IF NOT EXISTS fathom_catalog_watches_digest ON fathom_catalog_watches (digest) WHERE digest IS NOT NULL;
CREATE INDEX IF NOT EXISTS fathom_catalog_history_digest ON fathom_catalog_history (digest);

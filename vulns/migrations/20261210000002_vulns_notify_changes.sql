-- Cache notifications only for what changed (replacing the fleet-wide `*` of 20261130150500 on every
-- write to the feeds, keys and matches tables, which emptied every cache at each feed poll and each
-- re-match round):
-- * a feed row notifies `*` only when what evaluations read of it moves: a current generation, its last
--   successful sync, or whether the source offers it. A poll that found nothing new (last_checked_at), a
--   failure (last_error) or a first row without data notify nothing.
-- * keys and matches notify nothing themselves: the re-match compares each key's matches before and
--   after, and notifies the digests of the images carrying the keys whose matches changed
--   (`fathom_vulns::store::notify`), in its transaction.

DROP TRIGGER IF EXISTS fathom_vuln_keys_notify_insert ON fathom_vuln_keys;
DROP TRIGGER IF EXISTS fathom_vuln_keys_notify_update ON fathom_vuln_keys;
DROP TRIGGER IF EXISTS fathom_vuln_keys_notify_delete ON fathom_vuln_keys;
DROP TRIGGER IF EXISTS fathom_vuln_matches_notify_insert ON fathom_vuln_matches;
DROP TRIGGER IF EXISTS fathom_vuln_matches_notify_update ON fathom_vuln_matches;
DROP TRIGGER IF EXISTS fathom_vuln_matches_notify_delete ON fathom_vuln_matches;

-- Rows inserted or deleted: only those carrying data matter.
CREATE OR REPLACE FUNCTION fathom_vulns_notify_feed_rows() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM changed WHERE generation IS NOT NULL) THEN
        PERFORM pg_notify('fathom_vulns', '*');
    END IF;
    RETURN NULL;
END $$;

-- Rows updated: only when what evaluations read moved.
CREATE OR REPLACE FUNCTION fathom_vulns_notify_feed_updates() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM new_rows n JOIN old_rows o ON o.feed = n.feed
               WHERE (n.generation, n.last_success_at, n.offered)
                     IS DISTINCT FROM (o.generation, o.last_success_at, o.offered)) THEN
        PERFORM pg_notify('fathom_vulns', '*');
    END IF;
    RETURN NULL;
END $$;

DROP TRIGGER IF EXISTS fathom_vuln_feeds_notify_insert ON fathom_vuln_feeds;
DROP TRIGGER IF EXISTS fathom_vuln_feeds_notify_update ON fathom_vuln_feeds;
DROP TRIGGER IF EXISTS fathom_vuln_feeds_notify_delete ON fathom_vuln_feeds;
CREATE TRIGGER fathom_vuln_feeds_notify_insert AFTER INSERT ON fathom_vuln_feeds
    REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION fathom_vulns_notify_feed_rows();
CREATE TRIGGER fathom_vuln_feeds_notify_update AFTER UPDATE ON fathom_vuln_feeds
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION fathom_vulns_notify_feed_updates();
CREATE TRIGGER fathom_vuln_feeds_notify_delete AFTER DELETE ON fathom_vuln_feeds
    REFERENCING OLD TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION fathom_vulns_notify_feed_rows();

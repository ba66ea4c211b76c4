-- Changes that alter an image's matches or the feeds' freshness are announced on `fathom_vulns` after
-- commit, so caches of policy evaluations can drop what they depend on: `*` for the whole fleet (a sync
-- moved a feed, a re-match rewrote keys or matches), else the space-separated digests of re-indexed
-- images. Statement-level with transition tables: one notification per statement, never one per row
-- of a bulk write, and none for a statement that changed nothing.

CREATE OR REPLACE FUNCTION fathom_vulns_notify_fleet() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM changed) THEN
        PERFORM pg_notify('fathom_vulns', '*');
    END IF;
    RETURN NULL;
END $$;

-- More digests than this in one statement: `*` (a payload must stay under 8000 bytes).
CREATE OR REPLACE FUNCTION fathom_vulns_notify_images() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    digests text;
BEGIN
    SELECT CASE WHEN count(DISTINCT manifest_digest) > 64 THEN '*'
                ELSE string_agg(DISTINCT manifest_digest, ' ') END
      INTO digests FROM changed;
    IF digests IS NOT NULL THEN
        PERFORM pg_notify('fathom_vulns', digests);
    END IF;
    RETURN NULL;
END $$;

-- A trigger with a transition table fires on one event only, hence three per table.
DO $$
DECLARE
    t record;
BEGIN
    FOR t IN SELECT * FROM (VALUES
        ('fathom_vuln_feeds', 'fathom_vulns_notify_fleet'),
        ('fathom_vuln_keys', 'fathom_vulns_notify_fleet'),
        ('fathom_vuln_matches', 'fathom_vulns_notify_fleet'),
        ('fathom_vuln_images', 'fathom_vulns_notify_images')) AS x(tab, fn)
    LOOP
        EXECUTE format('DROP TRIGGER IF EXISTS %I ON %I', t.tab || '_notify_insert', t.tab);
        EXECUTE format('DROP TRIGGER IF EXISTS %I ON %I', t.tab || '_notify_update', t.tab);
        EXECUTE format('DROP TRIGGER IF EXISTS %I ON %I', t.tab || '_notify_delete', t.tab);
        EXECUTE format('CREATE TRIGGER %I AFTER INSERT ON %I REFERENCING NEW TABLE AS changed '
                       'FOR EACH STATEMENT EXECUTE FUNCTION %I()', t.tab || '_notify_insert', t.tab, t.fn);
        EXECUTE format('CREATE TRIGGER %I AFTER UPDATE ON %I REFERENCING NEW TABLE AS changed '
                       'FOR EACH STATEMENT EXECUTE FUNCTION %I()', t.tab || '_notify_update', t.tab, t.fn);
        EXECUTE format('CREATE TRIGGER %I AFTER DELETE ON %I REFERENCING OLD TABLE AS changed '
                       'FOR EACH STATEMENT EXECUTE FUNCTION %I()', t.tab || '_notify_delete', t.tab, t.fn);
    END LOOP;
END $$;

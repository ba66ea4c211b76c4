-- Changes to stored images (an analysis saved or replaced, a reference seen, an image deleted) are
-- announced on `fathom_images` after commit with the space-separated digests (`*`: too many to list),
-- so caches of what was computed from an image (policy evaluations) drop exactly those. Statement-level
-- with transition tables: one notification per statement, none for a statement that changed nothing.
CREATE OR REPLACE FUNCTION fathom_images_notify() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    digests text;
BEGIN
    -- A payload must stay under 8000 bytes.
    SELECT CASE WHEN count(DISTINCT manifest_digest) > 64 THEN '*'
                ELSE string_agg(DISTINCT manifest_digest, ' ') END
      INTO digests FROM changed;
    IF digests IS NOT NULL THEN
        PERFORM pg_notify('fathom_images', digests);
    END IF;
    RETURN NULL;
END $$;

-- A trigger with a transition table fires on one event only, hence three per table.
DO $$
DECLARE
    tab text;
BEGIN
    FOREACH tab IN ARRAY ARRAY['fathom_images', 'fathom_image_references'] LOOP
        EXECUTE format('DROP TRIGGER IF EXISTS %I ON %I', tab || '_notify_insert', tab);
        EXECUTE format('DROP TRIGGER IF EXISTS %I ON %I', tab || '_notify_update', tab);
        EXECUTE format('DROP TRIGGER IF EXISTS %I ON %I', tab || '_notify_delete', tab);
        EXECUTE format('CREATE TRIGGER %I AFTER INSERT ON %I REFERENCING NEW TABLE AS changed '
                       'FOR EACH STATEMENT EXECUTE FUNCTION fathom_images_notify()', tab || '_notify_insert', tab);
        EXECUTE format('CREATE TRIGGER %I AFTER UPDATE ON %I REFERENCING NEW TABLE AS changed '
                       'FOR EACH STATEMENT EXECUTE FUNCTION fathom_images_notify()', tab || '_notify_update', tab);
        EXECUTE format('CREATE TRIGGER %I AFTER DELETE ON %I REFERENCING OLD TABLE AS changed '
                       'FOR EACH STATEMENT EXECUTE FUNCTION fathom_images_notify()', tab || '_notify_delete', tab);
    END LOOP;
END $$;

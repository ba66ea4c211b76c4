-- Images whose stored analysis changed since the vulnerability index last looked at them: a trigger on
-- fathom_images notes every insert, re-analysis (analyzed_at), status or document change and deletion,
-- in the transaction that makes it. The match round settles what it finds here (indexes the image,
-- drops a removed one's index, or finds it current) instead of comparing every stored image with the
-- index, so an idle round costs a read of this (empty) table, not two scans of the fleet.
CREATE TABLE IF NOT EXISTS fathom_vuln_changed_images (
    manifest_digest text PRIMARY KEY
);

CREATE OR REPLACE FUNCTION fathom_vuln_note_image_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- An update of the marker (even to the same value) is a new row version: a round that read the
    -- old one cannot settle it (its delete meets a concurrent update and leaves it for the next round).
    INSERT INTO fathom_vuln_changed_images (manifest_digest)
    VALUES (CASE WHEN TG_OP = 'DELETE' THEN OLD.manifest_digest ELSE NEW.manifest_digest END)
    ON CONFLICT (manifest_digest) DO UPDATE SET manifest_digest = EXCLUDED.manifest_digest;
    RETURN NULL;
END $$;

DROP TRIGGER IF EXISTS fathom_vuln_image_changed ON fathom_images;
CREATE TRIGGER fathom_vuln_image_changed
    AFTER INSERT OR DELETE OR UPDATE OF status, analyzed_at, document ON fathom_images
    FOR EACH ROW EXECUTE FUNCTION fathom_vuln_note_image_change();

-- The first round after the upgrade looks at everything once, as every round did before.
INSERT INTO fathom_vuln_changed_images (manifest_digest)
SELECT manifest_digest FROM fathom_images
UNION
SELECT manifest_digest FROM fathom_vuln_images
ON CONFLICT DO NOTHING;

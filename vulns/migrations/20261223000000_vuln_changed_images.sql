-- Images whose stored analysis changed since the vulnerability index last looked at them: a trigger on
-- fathom_images notes every insert, re-analysis (analyzed_at), status or document change and deletion,
-- in the transaction that makes it. The match round settles what it finds here (indexes the image,
-- drops a removed one's index, or finds it current) instead of comparing every stored image with the
-- index, so an idle round costs a read of this (empty) table, not two scans of the fleet.
CREATE SEQUENCE IF NOT EXISTS fathom_vuln_changed_seq;
-- `seq`: when the image last changed; a round takes the newest changes first (a backlog, such as the one
-- this migration writes below, never holds back an image analyzed now).
CREATE TABLE IF NOT EXISTS fathom_vuln_changed_images (
    manifest_digest text PRIMARY KEY,
    seq bigint NOT NULL DEFAULT nextval('fathom_vuln_changed_seq')
);
CREATE INDEX IF NOT EXISTS fathom_vuln_changed_images_seq ON fathom_vuln_changed_images (seq);

CREATE OR REPLACE FUNCTION fathom_vuln_note_image_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- An update of the marker is a new row version: a round that read the old one does not settle it
    -- (it settles only the version it read, skipping one a transaction still holds).
    INSERT INTO fathom_vuln_changed_images (manifest_digest)
    VALUES (CASE WHEN TG_OP = 'DELETE' THEN OLD.manifest_digest ELSE NEW.manifest_digest END)
    ON CONFLICT (manifest_digest) DO UPDATE SET seq = nextval('fathom_vuln_changed_seq');
    RETURN NULL;
END $$;

DROP TRIGGER IF EXISTS fathom_vuln_image_changed ON fathom_images;
CREATE TRIGGER fathom_vuln_image_changed
    AFTER INSERT OR DELETE OR UPDATE OF status, analyzed_at, document ON fathom_images
    FOR EACH ROW EXECUTE FUNCTION fathom_vuln_note_image_change();

-- The rounds after the upgrade look at everything once, as every round did before (20,000 a round).
INSERT INTO fathom_vuln_changed_images (manifest_digest)
SELECT manifest_digest FROM fathom_images
UNION
SELECT manifest_digest FROM fathom_vuln_images
ON CONFLICT DO NOTHING;

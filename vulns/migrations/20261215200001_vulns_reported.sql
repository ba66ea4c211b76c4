-- Whether the first match of an image's indexed analysis was reported (`dev.fathom.image.vulnerabilities.changed`
-- with `first_match`): a new or re-analyzed image is indexed with `false` and reported, whole, in the match
-- round that first covers all its keys. Images indexed before notifications existed count as reported, so
-- an upgrade announces nothing. The partial index keeps an idle round's check an index probe.
ALTER TABLE fathom_vuln_images ADD COLUMN IF NOT EXISTS reported boolean NOT NULL DEFAULT true;
ALTER TABLE fathom_vuln_images ALTER COLUMN reported SET DEFAULT false;
CREATE INDEX IF NOT EXISTS fathom_vuln_images_unreported ON fathom_vuln_images (manifest_digest) WHERE NOT reported;

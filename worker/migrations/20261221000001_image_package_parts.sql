-- Package parts of image documents (see `worker/src/store/parts.rs`): an image document's package list
-- stored in parts, one per layer that introduced packages, content-addressed (`hash`: sha256 of the
-- part's JSON) per catalogers key, so images sharing base layers store those layers' packages once. A
-- part belongs to its layer's cache row (it goes when the sweeper deletes the layer); the sweeper also
-- deletes parts no image names any more. `fathom_images.package_parts` lists the parts an image's
-- document names (NULL for documents stored whole, as every document before this migration: they stay
-- readable as they are).

CREATE TABLE IF NOT EXISTS fathom_image_package_parts (
    hash         bytea       NOT NULL,
    cache_key    text        NOT NULL,
    layer_digest text        NOT NULL,
    body         bytea       NOT NULL,  -- zstd(JSON array of the layer's image packages)
    stored_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (hash, cache_key),
    FOREIGN KEY (layer_digest, cache_key) REFERENCES fathom_layers (digest, cache_key) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS fathom_image_package_parts_layer
    ON fathom_image_package_parts (layer_digest, cache_key);

ALTER TABLE fathom_images ADD COLUMN IF NOT EXISTS package_parts bytea[];
CREATE INDEX IF NOT EXISTS fathom_images_package_parts ON fathom_images USING gin (package_parts);

-- Layers the sweeper deleted (no image referenced them), kept a day: a job that read such a layer from the
-- cache before it was swept finds its tombstone when it saves the image and retries, instead of storing
-- an image whose layer rows (packages, files, secrets) are gone.
CREATE TABLE IF NOT EXISTS fathom_layer_tombstones (
    digest    text        NOT NULL,
    cache_key text        NOT NULL,
    swept_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (digest, cache_key)
);
CREATE INDEX IF NOT EXISTS fathom_layer_tombstones_swept ON fathom_layer_tombstones (swept_at);

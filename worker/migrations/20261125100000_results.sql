-- The results store. Packages are stored per layer (content-addressed by layer digest and catalogers key),
-- so package rows grow with unique layers, not with images; an image is its ordered layer list plus the
-- full analysis document (zstd-compressed JSON). Every statement is idempotent so concurrent start-ups are
-- harmless (sqlx's advisory lock serializes them anyway).

-- One row per analyzed layer and catalogers key: the layer cache. Bumping a cataloger's version changes
-- the key, so exactly the layers it affects are analyzed again.
CREATE TABLE IF NOT EXISTS fathom_layers (
    digest           text        NOT NULL,
    cache_key        text        NOT NULL,
    compressed_bytes bigint      NOT NULL,
    inflated_bytes   bigint      NOT NULL,
    entries          bigint      NOT NULL,
    package_count    integer     NOT NULL,
    result           bytea       NOT NULL,  -- zstd(JSON LayerResult)
    analyzed_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (digest, cache_key)
);

-- Packages each layer's files record (visible in the final image or not: the image document says which).
CREATE TABLE IF NOT EXISTS fathom_layer_packages (
    layer_digest text NOT NULL,
    cache_key    text NOT NULL,
    package_type text NOT NULL,
    name         text NOT NULL,
    version      text NOT NULL,
    purl         text NOT NULL,
    path         text NOT NULL,
    FOREIGN KEY (layer_digest, cache_key) REFERENCES fathom_layers (digest, cache_key) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS fathom_layer_packages_name
    ON fathom_layer_packages (name, package_type, version);
CREATE INDEX IF NOT EXISTS fathom_layer_packages_layer
    ON fathom_layer_packages (layer_digest, cache_key);

-- Images by manifest digest. `layers` is ordered base first; the GIN index answers "images using layer X".
CREATE TABLE IF NOT EXISTS fathom_images (
    manifest_digest  text        PRIMARY KEY,
    index_digest     text,
    config_digest    text        NOT NULL,
    platform         text        NOT NULL,
    distro           text,
    layers           text[]      NOT NULL,
    status           text        NOT NULL CHECK (status IN ('analyzed', 'failed')),
    error            text,
    analyzer_version text        NOT NULL,
    cache_key        text        NOT NULL,
    package_count    integer     NOT NULL DEFAULT 0,
    analysis_ms      bigint,
    queue_wait_ms    bigint,
    first_seen_at    timestamptz NOT NULL DEFAULT now(),
    analyzed_at      timestamptz NOT NULL DEFAULT now(),
    document         bytea                 -- zstd(JSON ImageAnalysis); NULL when failed
);
CREATE INDEX IF NOT EXISTS fathom_images_layers ON fathom_images USING gin (layers);

-- Every reference (tag or digest reference) an image was seen under.
CREATE TABLE IF NOT EXISTS fathom_image_references (
    reference       text        NOT NULL,
    manifest_digest text        NOT NULL REFERENCES fathom_images ON DELETE CASCADE,
    first_seen_at   timestamptz NOT NULL DEFAULT now(),
    last_seen_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (reference, manifest_digest)
);
CREATE INDEX IF NOT EXISTS fathom_image_references_digest ON fathom_image_references (manifest_digest);

-- What was asked for, and the job that answers it: `fathom status REF` starts here.
CREATE TABLE IF NOT EXISTS fathom_submissions (
    reference    text        NOT NULL,
    job_id       bigint      NOT NULL,
    submitted_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (reference, job_id)
);
CREATE INDEX IF NOT EXISTS fathom_submissions_latest ON fathom_submissions (reference, submitted_at DESC);

-- The content pass (file inventory, secrets, licenses). The file inventory stays inside each layer's
-- zstd-compressed result (`fathom_layers.result`, ~41 bytes per file with its sha256, measured on the
-- sample images): a row per file would cost several times that across a fleet. Secrets get rows, so
-- "which images carry an AWS key" is one query; they hold the file, line and rule of a finding, never the
-- matched text.
CREATE TABLE IF NOT EXISTS fathom_layer_secrets (
    layer_digest text   NOT NULL,
    cache_key    text   NOT NULL,
    path         text   NOT NULL,
    line         bigint NOT NULL,
    rule         text   NOT NULL,
    FOREIGN KEY (layer_digest, cache_key) REFERENCES fathom_layers (digest, cache_key) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS fathom_layer_secrets_layer ON fathom_layer_secrets (layer_digest, cache_key);
CREATE INDEX IF NOT EXISTS fathom_layer_secrets_rule ON fathom_layer_secrets (rule);

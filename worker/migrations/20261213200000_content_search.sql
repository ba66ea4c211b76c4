-- Content search matches (`services.analyzer.content_search`), one row per (file, line, rule) of a layer,
-- like secrets, so "which layers match rule X" is one query. `match_text` holds the matched text (capped)
-- only for rules configured with `store_match: true`; NULL otherwise.
CREATE TABLE IF NOT EXISTS fathom_layer_content_matches (
    layer_digest text   NOT NULL,
    cache_key    text   NOT NULL,
    path         text   NOT NULL,
    line         bigint NOT NULL,
    rule         text   NOT NULL,
    match_text   text,
    FOREIGN KEY (layer_digest, cache_key) REFERENCES fathom_layers (digest, cache_key) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS fathom_layer_content_matches_layer
    ON fathom_layer_content_matches (layer_digest, cache_key);
CREATE INDEX IF NOT EXISTS fathom_layer_content_matches_rule ON fathom_layer_content_matches (rule);

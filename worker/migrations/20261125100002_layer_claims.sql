-- Single-flight for layer analyses across the fleet: the first worker to miss a layer in the cache
-- claims it here; others that miss it meanwhile wait for its result instead of downloading and analyzing
-- the same blob again (a burst of images on one base would otherwise fetch the base once per worker).
-- A claim expires, so a worker that dies mid-layer delays the others by at most the TTL. UNLOGGED: claims
-- are worth nothing after a crash.
CREATE UNLOGGED TABLE IF NOT EXISTS fathom_layer_claims (
    digest     text        NOT NULL,
    cache_key  text        NOT NULL,
    owner      text        NOT NULL,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (digest, cache_key)
);

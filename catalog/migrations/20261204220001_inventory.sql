-- What runs: one row per (namespace, workload, container, digest) an admission (or the Pod lister) saw,
-- with when it was first and last seen. Rows not seen for services.webhook.inventory_ttl are deleted.
CREATE TABLE IF NOT EXISTS fathom_inventory (
    namespace  text        NOT NULL,
    owner_kind text        NOT NULL,
    owner_name text        NOT NULL,
    container  text        NOT NULL,
    digest     text        NOT NULL,
    image      text        NOT NULL,
    first_seen timestamptz NOT NULL DEFAULT now(),
    last_seen  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (namespace, owner_kind, owner_name, container, digest)
);
CREATE INDEX IF NOT EXISTS fathom_inventory_digest ON fathom_inventory (digest);
CREATE INDEX IF NOT EXISTS fathom_inventory_last_seen ON fathom_inventory (last_seen);

-- Policy bundles as uploaded (validated, canonical JSON), at most one of them active.
CREATE TABLE IF NOT EXISTS fathom_policy_bundles (
    id         text        PRIMARY KEY,
    name       text,
    digest     text        NOT NULL,   -- ValidatedBundle::digest: the evaluation cache's bundle key
    active     boolean     NOT NULL DEFAULT false,
    document   jsonb       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
-- "One active bundle" enforced by the database, so two concurrent activations cannot both win.
CREATE UNIQUE INDEX IF NOT EXISTS fathom_policy_bundles_one_active ON fathom_policy_bundles (active) WHERE active;

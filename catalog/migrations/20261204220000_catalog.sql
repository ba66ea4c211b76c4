-- The catalog: watched tags and repositories, each tag's digest history, and the passes over them.
-- A tag watch made by a repository watch names it in `parent_id` and goes with it.
CREATE TABLE IF NOT EXISTS fathom_catalog_watches (
    id          bigserial   PRIMARY KEY,
    kind        text        NOT NULL CHECK (kind IN ('tag', 'repository')),
    -- tag: registry/repository:tag; repository: registry/repository (canonical forms).
    reference   text        NOT NULL,
    host        text        NOT NULL,
    include_re  text,
    exclude_re  text,
    parent_id   bigint      REFERENCES fathom_catalog_watches (id) ON DELETE CASCADE,
    -- active: the registry answers; missing: it said the tag (or repository) is not there;
    -- failing: it could not be asked (unreachable, refused, rate-limited). `error` keeps its answer.
    status      text        NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'missing', 'failing')),
    error       text,
    digest      text,
    checked_at  timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now(),
    -- repository: what its last listing found, and how many passing tags the cap left unwatched.
    tags_listed integer,
    tags_capped integer
);
CREATE UNIQUE INDEX IF NOT EXISTS fathom_catalog_watches_reference ON fathom_catalog_watches (kind, reference);
CREATE INDEX IF NOT EXISTS fathom_catalog_watches_parent ON fathom_catalog_watches (parent_id) WHERE parent_id IS NOT NULL;

-- One row per stint of a digest under a tag: a tag moving A → B → A has three rows, newest last.
CREATE TABLE IF NOT EXISTS fathom_catalog_history (
    id         bigserial   PRIMARY KEY,
    watch_id   bigint      NOT NULL REFERENCES fathom_catalog_watches (id) ON DELETE CASCADE,
    digest     text        NOT NULL,
    first_seen timestamptz NOT NULL DEFAULT now(),
    last_seen  timestamptz NOT NULL DEFAULT now(),
    -- The analysis queued for it (none when it was analyzed already).
    job_id     bigint
);
CREATE INDEX IF NOT EXISTS fathom_catalog_history_watch ON fathom_catalog_history (watch_id, id DESC);

-- The last pass of each kind (tags, repositories), whichever core ran it: a core starts a pass only when
-- the last one started at least an interval ago, so replicas taking turns never repeat one.
CREATE TABLE IF NOT EXISTS fathom_catalog_passes (
    kind         text        PRIMARY KEY CHECK (kind IN ('tags', 'repositories')),
    started_at   timestamptz,
    completed_at timestamptz,
    duration_s   float8,
    watches      integer,
    changed      integer,
    requests     integer,
    passes       bigint      NOT NULL DEFAULT 0
);

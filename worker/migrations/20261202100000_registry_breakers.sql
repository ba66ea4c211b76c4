-- One circuit breaker per registry host, shared by the whole fleet. `closed`: jobs run, `failures` counts
-- consecutive transient failures; `open`: jobs are deferred (no attempt charged) until `retry_at`, when one
-- job may probe; `half_open`: `probe_owner` probes, its turn lasting until `retry_at`. Tiny (one row per
-- registry ever in trouble): admissions read it by primary key and lock a row only while it is not closed.
CREATE TABLE IF NOT EXISTS fathom_registry_breakers (
    host        text        PRIMARY KEY,
    state       text        NOT NULL DEFAULT 'closed' CHECK (state IN ('closed', 'open', 'half_open')),
    failures    integer     NOT NULL DEFAULT 0,
    opened_at   timestamptz,
    retry_at    timestamptz,
    probe_owner text,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

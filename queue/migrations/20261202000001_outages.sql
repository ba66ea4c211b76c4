-- Registry outages lose no work. `last_error_kind` is the failure's stable reason label, so dead jobs can be
-- counted by kind; `deferred_for` names the resource (a registry host) a job was parked for without being
-- charged an attempt, so the whole group can be released at once when the resource is back; `requeues` and
-- `requeued_at` record every trip back from `dead`/`failed`, the time budget counting from the last one.
ALTER TABLE fathom_jobs ADD COLUMN IF NOT EXISTS last_error_kind text;
ALTER TABLE fathom_jobs ADD COLUMN IF NOT EXISTS deferred_for text;
ALTER TABLE fathom_jobs ADD COLUMN IF NOT EXISTS requeues integer NOT NULL DEFAULT 0;
ALTER TABLE fathom_jobs ADD COLUMN IF NOT EXISTS requeued_at timestamptz;

CREATE INDEX IF NOT EXISTS fathom_jobs_deferred_idx
    ON fathom_jobs (deferred_for) WHERE state = 'queued' AND deferred_for IS NOT NULL;

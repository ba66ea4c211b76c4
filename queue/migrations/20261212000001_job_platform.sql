-- A job may ask for one platform of a multi-platform image index (`linux/arm64`): the admission webhook
-- checks every platform a cluster runs, and queues each one it finds unanalyzed as a job of its own. NULL:
-- the worker's configured platform, as before.
ALTER TABLE fathom_jobs ADD COLUMN IF NOT EXISTS platform text;

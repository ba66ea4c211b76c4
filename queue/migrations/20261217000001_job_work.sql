-- Work per job (the autoscaler's `scale_on: work`): `work_bytes` is the submitter's estimate of the
-- compressed bytes of the image's layers not yet in the layer cache (NULL: no estimate, the job counts as
-- the recent median); `fetched_bytes` is what the worker actually downloaded, written with the completion,
-- so the estimate's error can be measured and the fleet's throughput learned from finished jobs.
ALTER TABLE fathom_jobs ADD COLUMN IF NOT EXISTS work_bytes bigint CHECK (work_bytes >= 0);
ALTER TABLE fathom_jobs ADD COLUMN IF NOT EXISTS fetched_bytes bigint CHECK (fetched_bytes >= 0);

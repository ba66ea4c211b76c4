-- The latest submission of each reference, kept beside the full history so that listing submissions
-- newest-first is an index walk of one page instead of a DISTINCT ON over every submission ever made.
CREATE TABLE IF NOT EXISTS fathom_submission_heads (
    reference    text        PRIMARY KEY,
    job_id       bigint      NOT NULL,
    submitted_at timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS fathom_submission_heads_recent
    ON fathom_submission_heads (submitted_at DESC, job_id DESC);

INSERT INTO fathom_submission_heads (reference, job_id, submitted_at)
SELECT DISTINCT ON (reference) reference, job_id, submitted_at
FROM fathom_submissions
ORDER BY reference, submitted_at DESC, job_id DESC
ON CONFLICT (reference) DO NOTHING;

-- `GET /v1/images/by-job/{id}` finds a submission by its job, including superseded ones.
CREATE INDEX IF NOT EXISTS fathom_submissions_job ON fathom_submissions (job_id);

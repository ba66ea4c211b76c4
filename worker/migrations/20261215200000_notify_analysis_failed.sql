-- `dev.fathom.image.analysis_failed`: written by a trigger on the job row, so it commits with the very
-- statement that makes an analysis job fail for good — a worker's permanent failure, its last retry, or
-- the queue's rescue of an expired lease with no attempt left (no worker alive to write it) — and never
-- for a retry. The digest is known when the manifest was read: a digest reference names it, otherwise the
-- failed image row this attempt recorded under the reference (see worker `record_failure`). The data's
-- shape is `fathom_notify::data::AnalysisFailed`.
CREATE OR REPLACE FUNCTION fathom_notify_analysis_failed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    ref  text := NEW.payload->>'reference';
    dig  text;
    refs text[] := '{}';
BEGIN
    IF ref IS NULL THEN
        RETURN NULL;
    END IF;
    IF ref ~ '@sha256:[0-9a-f]{64}$' THEN
        dig := substring(ref from '(sha256:[0-9a-f]{64})$');
    ELSE
        SELECT r.manifest_digest INTO dig
        FROM fathom_image_references r
        JOIN fathom_images i ON i.manifest_digest = r.manifest_digest AND i.status = 'failed'
        WHERE r.reference = ref AND r.last_seen_at >= coalesce(NEW.claimed_at, NEW.enqueued_at)
        ORDER BY r.last_seen_at DESC
        LIMIT 1;
    END IF;
    IF dig IS NOT NULL THEN
        SELECT coalesce(array_agg(reference ORDER BY reference), '{}') INTO refs
        FROM fathom_image_references WHERE manifest_digest = dig;
    END IF;
    INSERT INTO notify_events (type, subject, data)
    VALUES ('dev.fathom.image.analysis_failed', coalesce(dig, ref), jsonb_build_object(
        'digest', dig, 'reference', ref, 'references', to_jsonb(refs),
        'error_kind', coalesce(NEW.last_error_kind, 'unknown'), 'state', NEW.state,
        'attempts', NEW.attempt, 'job_id', NEW.id));
    RETURN NULL;
END $$;

DO $$
BEGIN
    IF to_regclass('fathom_jobs') IS NOT NULL THEN
        DROP TRIGGER IF EXISTS fathom_jobs_analysis_failed ON fathom_jobs;
        CREATE TRIGGER fathom_jobs_analysis_failed AFTER UPDATE OF state ON fathom_jobs FOR EACH ROW
            WHEN (NEW.kind = 'analyze' AND NEW.state IN ('failed', 'dead') AND OLD.state IS DISTINCT FROM NEW.state)
            EXECUTE FUNCTION fathom_notify_analysis_failed();
    END IF;
END $$;

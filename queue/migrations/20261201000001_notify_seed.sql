-- Job notifications carry a random seed after the count of ready jobs ("READY SEED"): every listening
-- worker computes from it, without a round trip, which READY workers win the wake-up draw, so one
-- worker wakes per job instead of a herd. Readers of the bare count take the first number.
CREATE OR REPLACE FUNCTION fathom_jobs_notify_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    ready bigint;
BEGIN
    SELECT count(*) INTO ready FROM new_jobs WHERE state = 'queued' AND run_at <= now();
    IF ready > 0 THEN
        PERFORM pg_notify('fathom_jobs', ready::text || ' ' || floor(random() * 2147483647)::bigint::text);
    END IF;
    RETURN NULL;
END
$$;

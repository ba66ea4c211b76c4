-- Deliveries: one row per (event, endpoint), fanned out from the outbox by the one dispatching core.
-- `fanned_out` marks outbox rows already fanned out. A flag rather than a "last seq" cursor: a
-- transaction that took a lower seq may commit after a higher one was seen, and a cursor would skip it.
ALTER TABLE notify_events ADD COLUMN fanned_out boolean NOT NULL DEFAULT false;
CREATE INDEX notify_events_unfanned ON notify_events (seq) WHERE NOT fanned_out;

CREATE TABLE notify_deliveries (
    id              bigserial   PRIMARY KEY,
    event_seq       bigint      NOT NULL REFERENCES notify_events (seq) ON DELETE CASCADE,
    endpoint        text        NOT NULL,
    -- The event's subject, copied: deliveries of one subject to one endpoint go out in seq order.
    subject         text        NOT NULL,
    state           text        NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'dead')),
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    -- Start of the retry window: the fan-out, or the last retry by hand.
    owed_since      timestamptz NOT NULL DEFAULT now(),
    last_status     integer,
    -- What went wrong last (status, timeout, connection error); never a secret or a header value.
    last_error      text,
    finished_at     timestamptz,
    UNIQUE (event_seq, endpoint)
);

-- The head of each (endpoint, subject): the next delivery that may go out.
CREATE INDEX notify_deliveries_pending ON notify_deliveries (endpoint, subject, event_seq) WHERE state = 'pending';
CREATE INDEX notify_deliveries_finished ON notify_deliveries (finished_at) WHERE state <> 'pending';
CREATE INDEX notify_deliveries_dead ON notify_deliveries (endpoint, id) WHERE state = 'dead';

-- The dispatcher LISTENs here: one notification per writing statement, delivered at commit (none for a
-- rolled-back change), so it wakes as the change commits whichever process wrote it.
CREATE FUNCTION notify_events_wake() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('fathom_notify_events', '');
    RETURN NULL;
END $$;
CREATE TRIGGER notify_events_wake AFTER INSERT ON notify_events
    FOR EACH STATEMENT EXECUTE FUNCTION notify_events_wake();

-- Small batches of deletes keep up with the table; vacuum early.
ALTER TABLE notify_deliveries SET (autovacuum_vacuum_scale_factor = 0.05);
ALTER TABLE notify_events SET (autovacuum_vacuum_scale_factor = 0.05);

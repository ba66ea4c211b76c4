-- The outbox: one row per event, written in the same transaction as the change it reports, so an
-- event exists if and only if its change committed, whichever process made it.
CREATE TABLE notify_events (
    seq         bigserial   PRIMARY KEY,
    id          uuid        NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    type        text        NOT NULL,
    subject     text        NOT NULL,
    time        timestamptz NOT NULL DEFAULT now(),
    data        jsonb       NOT NULL
);

CREATE INDEX notify_events_type_seq ON notify_events (type, seq);
CREATE INDEX notify_events_subject_seq ON notify_events (subject, seq);
CREATE INDEX notify_events_time ON notify_events (time);

-- One summary per policy evaluation, newest kept per image (the engine trims to its configured count).
CREATE TABLE IF NOT EXISTS fathom_policy_evaluations (
    id            bigserial   PRIMARY KEY,
    image_digest  text        NOT NULL,
    tag           text,
    bundle_id     text        NOT NULL,
    bundle_digest text        NOT NULL,
    final_action  text        NOT NULL,   -- STOP | WARN | GO
    reason        text        NOT NULL,   -- policy_evaluation | whitelisted | blacklisted
    feed_state    text        NOT NULL,   -- the feed generations and syncs the evaluation saw
    evaluated_at  timestamptz NOT NULL
);
-- Pages of one image's history, newest first, and the trim of its oldest rows.
CREATE INDEX IF NOT EXISTS fathom_policy_evaluations_image ON fathom_policy_evaluations (image_digest, id DESC);

-- The last final action of each in-scope image (a watched tag's current digest, or an image the
-- inventory says runs) under the reference it is in scope as, and the bundle that gave it, as the core's
-- scope re-evaluation last stored it (activating another bundle that agrees is no news):
-- `dev.fathom.image.policy.changed` is written, in the transaction that moves this row, only when the
-- final action differs from it.
CREATE TABLE IF NOT EXISTS fathom_policy_last_actions (
    digest        text        NOT NULL,
    tag           text        NOT NULL,
    bundle_id     text        NOT NULL,
    bundle_digest text        NOT NULL,
    final_action  text        NOT NULL,
    changed_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (digest, tag)
);

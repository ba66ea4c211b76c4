-- Periodic maintenance that any of several processes may run (the core's lease rescue and job pruning, one
-- per core replica) takes turns through one row per task: a process runs the task only when it moved the
-- task's `last_run` forward, so the replicas together run it about once per period, not once each.
CREATE TABLE IF NOT EXISTS fathom_maintenance_turns (
    task text PRIMARY KEY,
    last_run timestamptz NOT NULL
);

//! Enqueue: one round trip for any number of jobs (`unnest`), idempotent by dedup key.

use tokio_postgres::types::Type;

use crate::error::{Error, Result};
use crate::model::{Enqueued, NewJob};
use crate::queue::{secs, Queue};

/// Inserts a batch; for each input row (in order) returns the new id, or the id of the live job with the
/// same (kind, dedup key) — including a twin earlier in the same batch. Ids are drawn before the insert so
/// RETURNING rows can be matched back to inputs. `id` is NULL only when the conflicting job was inserted
/// by a concurrent transaction this statement's snapshot cannot see; the caller retries those rows.
pub const ENQUEUE_SQL: &str = r#"
WITH input AS MATERIALIZED (
    SELECT nextval(pg_get_serial_sequence('fathom_jobs', 'id')) AS id, t.*
    FROM unnest($1::text[], $2::jsonb[], $3::text[], $4::int2[], $5::float8[], $6::int4[], $7::text[],
                $8::int8[])
         WITH ORDINALITY AS t(kind, payload, dedup_key, priority, delay_s, max_attempts, platform,
                              work_bytes, ord)
),
ins AS (
    INSERT INTO fathom_jobs (id, kind, payload, dedup_key, priority, run_at, max_attempts, platform,
                             work_bytes)
    SELECT id, kind, payload, dedup_key, priority, now() + make_interval(secs => delay_s), max_attempts,
           platform, work_bytes
    -- One lock order for every batch: two overlapping batches in different orders cannot deadlock on
    -- the dedup index. RETURNING rows are matched back by id, so the input order is not needed here.
    FROM input ORDER BY kind, dedup_key, ord
    ON CONFLICT (kind, dedup_key) WHERE dedup_key IS NOT NULL AND state IN ('queued', 'running')
    DO NOTHING
    RETURNING id
)
SELECT input.ord, coalesce(ins.id, twin.id, live.id) AS id, ins.id IS NOT NULL AS created
FROM input
LEFT JOIN ins ON ins.id = input.id
LEFT JOIN LATERAL (
    SELECT i2.id FROM input i2 JOIN ins ins2 ON ins2.id = i2.id
    WHERE ins.id IS NULL AND i2.kind = input.kind AND i2.dedup_key = input.dedup_key
    LIMIT 1
) twin ON true
LEFT JOIN LATERAL (
    SELECT j.id FROM fathom_jobs j
    WHERE ins.id IS NULL AND j.kind = input.kind AND j.dedup_key = input.dedup_key
      AND j.state IN ('queued', 'running')
    LIMIT 1
) live ON true
ORDER BY input.ord
"#;

/// Column arrays of a batch, in the order [`ENQUEUE_SQL`] binds them.
pub(crate) struct Columns {
    pub kinds: Vec<String>,
    pub payloads: Vec<serde_json::Value>,
    pub dedup_keys: Vec<Option<String>>,
    pub priorities: Vec<i16>,
    pub delays: Vec<f64>,
    pub max_attempts: Vec<i32>,
    pub platforms: Vec<Option<String>>,
    pub work_bytes: Vec<Option<i64>>,
}

impl Columns {
    pub(crate) fn of(jobs: &[NewJob]) -> Columns {
        Columns {
            kinds: jobs.iter().map(|j| j.kind.clone()).collect(),
            payloads: jobs.iter().map(|j| j.payload.clone()).collect(),
            dedup_keys: jobs.iter().map(|j| j.dedup_key.clone()).collect(),
            priorities: jobs.iter().map(|j| j.priority).collect(),
            delays: jobs.iter().map(|j| secs(j.delay)).collect(),
            max_attempts: jobs.iter().map(|j| j.max_attempts.max(1)).collect(),
            platforms: jobs.iter().map(|j| j.platform.clone()).collect(),
            work_bytes: jobs
                .iter()
                .map(|j| j.work_bytes.map(|b| b.max(0)))
                .collect(),
        }
    }
}

/// Rounds a statement may be retried for rows whose conflicting twin was invisible to its snapshot.
const MAX_ENQUEUE_ROUNDS: usize = 5;

/// The enqueue protocol, shared by the hot-path driver and the caller's-transaction variant ([`crate::tx`]):
/// run [`ENQUEUE_SQL`] on [`Rounds::next_batch`]'s columns, hand the `(id, created)` rows to
/// [`Rounds::record`], and repeat until no rows are left or the rounds are spent.
pub(crate) struct Rounds<'a> {
    jobs: &'a [NewJob],
    results: Vec<Option<Enqueued>>,
    pending: Vec<usize>,
    round: usize,
}

impl<'a> Rounds<'a> {
    pub(crate) fn new(jobs: &'a [NewJob]) -> Self {
        Rounds {
            jobs,
            results: vec![None; jobs.len()],
            pending: (0..jobs.len()).collect(),
            round: 0,
        }
    }

    /// The columns of the rows still without an id, or `None` when done.
    pub(crate) fn next_batch(&mut self) -> Option<Columns> {
        if self.pending.is_empty() || self.round == MAX_ENQUEUE_ROUNDS {
            return None;
        }
        self.round += 1;
        let batch: Vec<NewJob> = self.pending.iter().map(|&i| self.jobs[i].clone()).collect();
        Some(Columns::of(&batch))
    }

    /// Records one statement's rows (in batch order): an id settles its row, `None` retries it.
    pub(crate) fn record(&mut self, rows: impl IntoIterator<Item = (Option<i64>, bool)>) {
        let mut still = Vec::new();
        for ((id, created), &input) in rows.into_iter().zip(&self.pending) {
            match id {
                Some(id) => self.results[input] = Some(Enqueued { id, created }),
                None => still.push(input),
            }
        }
        self.pending = still;
    }

    /// One [`Enqueued`] per input, in order.
    pub(crate) fn finish(self) -> Result<Vec<Enqueued>> {
        self.results
            .into_iter()
            .map(|r| {
                r.ok_or_else(|| {
                    Error::Config("enqueue kept racing a concurrent duplicate; try again".into())
                })
            })
            .collect()
    }
}

impl Queue {
    /// Enqueues one job (see [`Queue::enqueue_many`]).
    pub async fn enqueue(&self, job: NewJob) -> Result<Enqueued> {
        let mut out = self.enqueue_many(std::slice::from_ref(&job)).await?;
        out.pop()
            .ok_or_else(|| Error::Config("enqueue returned no row".into()))
    }

    /// Enqueues a batch in one statement; one NOTIFY wakes workers for the whole batch. Returns one
    /// [`Enqueued`] per input, in order; a job whose dedup key matches a queued or running job is not
    /// inserted and reports that job's id.
    pub async fn enqueue_many(&self, jobs: &[NewJob]) -> Result<Vec<Enqueued>> {
        let mut rounds = Rounds::new(jobs);
        while let Some(c) = rounds.next_batch() {
            let rows = self
                .query(
                    ENQUEUE_SQL,
                    &[
                        (&c.kinds, Type::TEXT_ARRAY),
                        (&c.payloads, Type::JSONB_ARRAY),
                        (&c.dedup_keys, Type::TEXT_ARRAY),
                        (&c.priorities, Type::INT2_ARRAY),
                        (&c.delays, Type::FLOAT8_ARRAY),
                        (&c.max_attempts, Type::INT4_ARRAY),
                        (&c.platforms, Type::TEXT_ARRAY),
                        (&c.work_bytes, Type::INT8_ARRAY),
                    ],
                )
                .await?;
            let mut out = Vec::with_capacity(rows.len());
            for row in &rows {
                out.push((row.try_get("id")?, row.try_get("created")?));
            }
            rounds.record(out);
        }
        rounds.finish()
    }
}

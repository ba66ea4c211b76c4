//! The inventory of what runs: which workload's container runs which digest, first and last seen. Uses
//! arrive from admissions (and the optional Pod lister) through a [`Recorder`], which batches them off
//! the request path: a full queue drops uses (counted) rather than slowing an admission.

use std::collections::BTreeMap;
use std::time::Duration;

use prometheus::IntCounter;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use tokio::sync::mpsc;

use crate::error::Result;
use crate::model::rfc3339;

/// One container of a workload running one image.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WorkloadUse {
    /// Namespace.
    pub namespace: String,
    /// Workload kind (`ReplicaSet`, `Deployment`, `Pod`, ...).
    pub kind: String,
    /// Workload name.
    pub name: String,
    /// Container name.
    pub container: String,
    /// The image as written.
    pub image: String,
    /// The digest it runs.
    pub digest: String,
}

/// An inventory row as the routes show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct Workload {
    /// Namespace.
    pub namespace: String,
    /// Workload kind.
    pub kind: String,
    /// Workload name.
    pub name: String,
    /// Container name.
    pub container: String,
    /// The image as written.
    pub image: String,
    /// The digest it runs.
    pub digest: String,
    /// First seen (RFC 3339).
    pub first_seen: String,
    /// Last seen (RFC 3339).
    pub last_seen: String,
}

const RECORD_SQL: &str = r#"
INSERT INTO fathom_inventory AS i (namespace, owner_kind, owner_name, container, digest, image)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[])
ON CONFLICT (namespace, owner_kind, owner_name, container, digest)
DO UPDATE SET last_seen = now(), image = excluded.image
"#;

/// Records uses in one statement (twins folded first: one row may be touched once per statement).
pub async fn record(pool: &PgPool, uses: &[WorkloadUse]) -> Result<()> {
    let mut unique: BTreeMap<(&str, &str, &str, &str, &str), &str> = BTreeMap::new();
    for u in uses {
        let key = (
            u.namespace.as_str(),
            u.kind.as_str(),
            u.name.as_str(),
            u.container.as_str(),
            u.digest.as_str(),
        );
        unique.insert(key, u.image.as_str());
    }
    if unique.is_empty() {
        return Ok(());
    }
    let mut columns: [Vec<&str>; 6] = Default::default();
    for ((ns, kind, name, container, digest), image) in unique {
        for (column, value) in columns
            .iter_mut()
            .zip([ns, kind, name, container, digest, image])
        {
            column.push(value);
        }
    }
    let [ns, kind, name, container, digest, image] = columns;
    sqlx::query(RECORD_SQL)
        .bind(ns)
        .bind(kind)
        .bind(name)
        .bind(container)
        .bind(digest)
        .bind(image)
        .execute(pool)
        .await?;
    Ok(())
}

/// Deletes entries not seen for `ttl`; how many.
pub async fn expire(pool: &PgPool, ttl: Duration) -> Result<u64> {
    let done = sqlx::query(
        "DELETE FROM fathom_inventory WHERE last_seen < now() - make_interval(secs => $1)",
    )
    .bind(ttl.as_secs_f64())
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

const COLUMNS: &str = r#"
SELECT namespace, owner_kind AS kind, owner_name AS name, container, image, digest,
       (extract(epoch FROM first_seen) * 1e6)::int8 AS first_us,
       (extract(epoch FROM last_seen) * 1e6)::int8 AS last_us
FROM fathom_inventory
"#;

type Row = (String, String, String, String, String, String, i64, i64);

fn workload(r: Row) -> Workload {
    Workload {
        namespace: r.0,
        kind: r.1,
        name: r.2,
        container: r.3,
        image: r.4,
        digest: r.5,
        first_seen: rfc3339(r.6),
        last_seen: rfc3339(r.7),
    }
}

/// Workloads running any of `digests` — each a manifest digest or an index digest; an analyzed
/// image's index digest counts as the image (admissions record what the tag resolved to).
pub async fn by_digests(pool: &PgPool, digests: &[String], limit: i64) -> Result<Vec<Workload>> {
    let sql = format!(
        "{COLUMNS} WHERE digest = ANY($1) OR digest IN (SELECT index_digest FROM fathom_images \
         WHERE manifest_digest = ANY($1) AND index_digest IS NOT NULL) \
         ORDER BY namespace, owner_kind, owner_name, container, digest LIMIT $2"
    );
    let rows: Vec<Row> = sqlx::query_as(&sql)
        .bind(digests)
        .bind(limit)
        .fetch_all(pool)
        .await?;
    Ok(rows.into_iter().map(workload).collect())
}

/// Where a workloads page starts: after this row's key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct After {
    /// Namespace.
    pub namespace: String,
    /// Workload kind.
    pub kind: String,
    /// Workload name.
    pub name: String,
    /// Container.
    pub container: String,
    /// Digest.
    pub digest: String,
}

impl After {
    /// The key of `w`.
    pub fn of(w: &Workload) -> After {
        After {
            namespace: w.namespace.clone(),
            kind: w.kind.clone(),
            name: w.name.clone(),
            container: w.container.clone(),
            digest: w.digest.clone(),
        }
    }
}

/// Workloads (optionally of one namespace) in key order after `after`, at most `limit`.
pub async fn list(
    pool: &PgPool,
    namespace: Option<&str>,
    after: Option<&After>,
    limit: i64,
) -> Result<Vec<Workload>> {
    let sql = format!(
        "{COLUMNS} WHERE ($1::text IS NULL OR namespace = $1) AND ($2::text IS NULL OR \
         (namespace, owner_kind, owner_name, container, digest) > ($2, $3, $4, $5, $6)) \
         ORDER BY namespace, owner_kind, owner_name, container, digest LIMIT $7"
    );
    let a = after.cloned();
    let rows: Vec<Row> = sqlx::query_as(&sql)
        .bind(namespace)
        .bind(a.as_ref().map(|a| a.namespace.clone()))
        .bind(a.as_ref().map(|a| a.kind.clone()))
        .bind(a.as_ref().map(|a| a.name.clone()))
        .bind(a.as_ref().map(|a| a.container.clone()))
        .bind(a.as_ref().map(|a| a.digest.clone()))
        .bind(limit)
        .fetch_all(pool)
        .await?;
    Ok(rows.into_iter().map(workload).collect())
}

/// Uses waiting at most in a [`Recorder`]'s queue; beyond it, uses are dropped and counted.
pub const QUEUED_AT_MOST: usize = 10_000;

/// Uses written per statement at most.
const BATCH: usize = 1_000;

/// How long the writer gathers uses before writing what it has.
const GATHER: Duration = Duration::from_millis(500);

/// Hands uses to a background writer; cheap to clone, never blocks.
#[derive(Clone)]
pub struct Recorder {
    tx: mpsc::Sender<WorkloadUse>,
    dropped: IntCounter,
}

impl Recorder {
    /// Starts the writer on `pool`; it also deletes entries not seen for `ttl` (every hundredth of it,
    /// between once a minute and once an hour). Uses dropped on a full queue count in `dropped`.
    pub fn spawn(pool: PgPool, ttl: Duration, dropped: IntCounter) -> Recorder {
        let (tx, rx) = mpsc::channel(QUEUED_AT_MOST);
        tokio::spawn(write(pool, rx, ttl));
        Recorder { tx, dropped }
    }

    /// Queues `uses` for writing; drops (and counts) what does not fit.
    pub fn record(&self, uses: Vec<WorkloadUse>) {
        for u in uses {
            if self.tx.try_send(u).is_err() {
                self.dropped.inc();
            }
        }
    }
}

async fn write(pool: PgPool, mut rx: mpsc::Receiver<WorkloadUse>, ttl: Duration) {
    let expire_every = (ttl / 100).clamp(Duration::from_secs(60), Duration::from_secs(3600));
    let mut last_expiry = tokio::time::Instant::now();
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let first = match tokio::time::timeout(expire_every, rx.recv()).await {
            Ok(Some(u)) => Some(u),
            Ok(None) => return,
            Err(_) => None,
        };
        if let Some(first) = first {
            batch.push(first);
            let until = tokio::time::Instant::now() + GATHER;
            while batch.len() < BATCH {
                match tokio::time::timeout_at(until, rx.recv()).await {
                    Ok(Some(u)) => batch.push(u),
                    Ok(None) | Err(_) => break,
                }
            }
            if let Err(e) = record(&pool, &batch).await {
                tracing::warn!(uses = batch.len(), "inventory: writing uses: {e}");
            }
            batch.clear();
        }
        if last_expiry.elapsed() >= expire_every {
            last_expiry = tokio::time::Instant::now();
            match expire(&pool, ttl).await {
                Ok(n) if n > 0 => tracing::info!(expired = n, "inventory: entries past their TTL"),
                Ok(_) => {}
                Err(e) => tracing::warn!("inventory: expiring: {e}"),
            }
        }
    }
}

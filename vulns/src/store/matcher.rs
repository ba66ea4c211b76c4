//! Fleet matching. Images are indexed once per analysis ([`super::index`]); each distinct (ecosystem, name,
//! version) of the fleet is evaluated once, and after a feed change again only when its (ecosystem, name)
//! is among the names the sync marked dirty (records added, changed, removed or withdrawn). Every other
//! match carries over untouched. One transaction writes a round's matches, so readers see the matches of
//! the previous round or of this one, never a mix.

use std::collections::HashMap;
use std::time::Instant;

use sqlx::{PgConnection, PgPool};

use super::copy::{copy_in, next_buffer, CopyRows};
use super::index::index_images;
use super::{events, notify};
use crate::core::affected::{evaluate, Verdict};
use crate::core::osv::Affected;
use crate::core::version::Scheme;
use crate::error::{Error, Result};

/// Distinct keys evaluated per round trip.
pub(super) const KEY_BATCH: usize = 2000;

/// What a rematch did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RematchReport {
    /// Images (re)indexed from their documents.
    pub images_indexed: u64,
    /// Images dropped because they are no longer stored.
    pub images_removed: u64,
    /// Images whose stored document did not decode: not indexed (their vulnerability data reads as
    /// unavailable), each logged with its digest, so the rest of the fleet is still matched.
    pub images_undecodable: u64,
    /// Distinct keys evaluated (new keys and keys under dirty names; the rest carried over).
    pub keys_matched: u64,
    /// Of those, keys whose matches changed: the images carrying them were notified.
    pub keys_changed: u64,
    /// Matches now stored for those keys.
    pub matches: u64,
    /// (key, record) pairs whose versions did not parse in the ecosystem's ordering.
    pub undecidable: u64,
    /// Notification events written (`dev.fathom.image.vulnerabilities.changed`,
    /// `dev.fathom.vulnerability.new`).
    pub events: u64,
    /// Wall time in milliseconds.
    pub wall_ms: u64,
}

/// Fleet matching.
pub struct Matcher;

pub(super) const MAX_DIRTY_SQL: &str = "SELECT coalesce(max(seq), 0) FROM fathom_vuln_dirty";
/// Keys never matched, and keys under a name a sync marked dirty (up to the sequence `$1`).
const KEYS_TO_MATCH_SQL: &str = r#"
SELECT ecosystem, name, version FROM fathom_vuln_keys WHERE matched_stamp < 0
UNION
SELECT k.ecosystem, k.name, k.version
FROM (SELECT DISTINCT ecosystem, name FROM fathom_vuln_dirty WHERE seq <= $1) d
JOIN fathom_vuln_keys k ON k.ecosystem = d.ecosystem AND k.name = d.name
ORDER BY 1, 2, 3
"#;
const CANDIDATES_SQL: &str = r#"
SELECT a.ecosystem, a.name, a.vuln_id, a.aliases, a.severity, a.cvss_score, a.urls, a.entry::text
FROM fathom_vuln_affected a
JOIN (SELECT DISTINCT e, n FROM unnest($1::text[], $2::text[]) AS k(e, n)) k ON a.ecosystem = k.e AND a.name = k.n
WHERE a.generation IN (SELECT generation FROM fathom_vuln_feeds WHERE generation IS NOT NULL)
"#;
/// When each fix of the batch's names was first seen, in a form that sorts as it reads.
const FIX_SEEN_SQL: &str = r#"
SELECT f.vuln_id, f.ecosystem, f.name, f.fixed_version,
       to_char(f.first_seen_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
FROM fathom_vuln_fix_seen f
JOIN (SELECT DISTINCT e, n FROM unnest($1::text[], $2::text[]) AS k(e, n)) k ON f.ecosystem = k.e AND f.name = k.n
"#;
const COPY_MATCHES_SQL: &str =
    "COPY fathom_vuln_matches (ecosystem, name, version, vuln_id, aliases, \
    severity, cvss_score, fix_state, fixed, urls, fix_observed_at) FROM STDIN";
const MARK_KEYS_SQL: &str = r#"
UPDATE fathom_vuln_keys k SET matched_stamp = $4
FROM unnest($1::text[], $2::text[], $3::text[]) AS s(e, n, v)
WHERE k.ecosystem = s.e AND k.name = s.n AND k.version = s.v
"#;
const CONSUME_DIRTY_SQL: &str = "DELETE FROM fathom_vuln_dirty WHERE seq <= $1";

pub(super) type Key = (String, String, String);

/// (ecosystem, name, vuln_id, aliases, severity, cvss_score, urls, entry as JSON text)
type Candidate = (
    String,
    String,
    String,
    Vec<String>,
    String,
    Option<f64>,
    Vec<String>,
    String,
);

/// A candidate with its entry parsed (`None`: the stored entry no longer parses; skipped).
type Parsed<'a> = (&'a Candidate, Option<Affected>);

/// One stored match.
struct Found<'a> {
    key: &'a Key,
    candidate: &'a Candidate,
    state: &'static str,
    fixed: Vec<String>,
    observed: Option<&'a str>,
}

impl Matcher {
    /// Indexes new or re-analyzed images, drops removed ones, and evaluates the keys that need it: keys
    /// never matched and keys under a name a feed change marked dirty. Safe to run repeatedly; cheap when
    /// nothing changed.
    pub async fn rematch(pool: &PgPool) -> Result<RematchReport> {
        let started = Instant::now();
        let index = index_images(pool).await?;
        let mut report = RematchReport {
            images_indexed: index.indexed,
            images_removed: index.removed,
            images_undecodable: index.undecodable,
            ..RematchReport::default()
        };

        // Dirty entries up to `upto` are consumed by this round; a sync committing meanwhile adds
        // entries above it, which the next round picks up.
        let upto: i64 = sqlx::query_scalar(MAX_DIRTY_SQL).fetch_one(pool).await?;
        let keys: Vec<Key> = sqlx::query_as(KEYS_TO_MATCH_SQL)
            .bind(upto)
            .fetch_all(pool)
            .await?;
        let mut tx = pool.begin().await?;
        if !keys.is_empty() {
            notify::begin(&mut tx).await?;
            for batch in keys.chunks(KEY_BATCH) {
                let (matches, undecidable) = match_batch(&mut tx, batch, upto).await?;
                report.keys_matched += batch.len() as u64;
                report.matches += matches;
                report.undecidable += undecidable;
            }
            report.keys_changed = notify::finish(&mut tx).await?;
        }
        // In the same transaction: the events exist exactly when these matches do.
        report.events = events::emit(&mut tx, !keys.is_empty()).await?;
        if upto > 0 {
            sqlx::query(CONSUME_DIRTY_SQL)
                .bind(upto)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        report.wall_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        Ok(report)
    }
}

fn columns(keys: &[Key]) -> (Vec<&str>, Vec<&str>, Vec<&str>) {
    let mut cols = (
        Vec::with_capacity(keys.len()),
        Vec::with_capacity(keys.len()),
        Vec::with_capacity(keys.len()),
    );
    for (e, n, v) in keys {
        cols.0.push(e.as_str());
        cols.1.push(n.as_str());
        cols.2.push(v.as_str());
    }
    cols
}

/// Evaluates one batch of keys and replaces their matches; returns (matches, undecidable).
pub(super) async fn match_batch(
    conn: &mut PgConnection,
    keys: &[Key],
    stamp: i64,
) -> Result<(u64, u64)> {
    let (e, n, v) = columns(keys);
    let candidates: Vec<Candidate> = sqlx::query_as(CANDIDATES_SQL)
        .bind(&e)
        .bind(&n)
        .fetch_all(&mut *conn)
        .await?;
    let seen: Vec<(String, String, String, String, String)> = sqlx::query_as(FIX_SEEN_SQL)
        .bind(&e)
        .bind(&n)
        .fetch_all(&mut *conn)
        .await?;
    sqlx::query(notify::DELETE_KEEPING_SQL)
        .bind(&e)
        .bind(&n)
        .bind(&v)
        .execute(&mut *conn)
        .await?;
    let keys_owned = keys.to_vec();
    let (count, undecidable, buffers) = tokio::task::spawn_blocking(move || {
        let (found, undecidable) = evaluate_batch(&keys_owned, &candidates, &seen);
        let count = found.len() as u64;
        (count, undecidable, encode(&found))
    })
    .await
    .map_err(|e| Error::Document {
        digest: "-".into(),
        message: format!("matching task: {e}"),
    })?;
    if count > 0 {
        copy_in(conn, COPY_MATCHES_SQL, buffers).await?;
    }
    notify::compare_batch(conn, &e, &n, &v).await?;
    sqlx::query(MARK_KEYS_SQL)
        .bind(&e)
        .bind(&n)
        .bind(&v)
        .bind(stamp)
        .execute(&mut *conn)
        .await?;
    Ok((count, undecidable))
}

/// COPY buffers of the matches, each about one chunk.
fn encode(found: &[Found<'_>]) -> Vec<CopyRows> {
    let mut out = vec![];
    for f in found {
        let buf = next_buffer(&mut out);
        let c = f.candidate;
        buf.text(&f.key.0)
            .text(&f.key.1)
            .text(&f.key.2)
            .text(&c.2)
            .array(&c.3)
            .text(&c.4)
            .opt(c.5)
            .text(f.state)
            .array(&f.fixed)
            .array(&c.6)
            .opt(f.observed);
        buf.end_row();
    }
    out
}

/// Evaluates keys against the candidate affected entries of their (ecosystem, name).
fn evaluate_batch<'a>(
    keys: &'a [Key],
    candidates: &'a [Candidate],
    seen: &'a [(String, String, String, String, String)],
) -> (Vec<Found<'a>>, u64) {
    let mut by_name: HashMap<(&str, &str), Vec<Parsed<'_>>> = HashMap::new();
    for c in candidates {
        // An entry that no longer parses (stored by an older release) is skipped, not fatal.
        let entry = serde_json::from_str::<Affected>(&c.7).ok();
        by_name
            .entry((c.0.as_str(), c.1.as_str()))
            .or_default()
            .push((c, entry));
    }
    let mut first_seen: HashMap<(&str, &str, &str, &str), &str> = HashMap::new();
    for s in seen {
        first_seen.insert((&s.0, &s.1, &s.2, &s.3), &s.4);
    }
    let mut out = vec![];
    let mut undecidable = 0;
    for key in keys {
        let (eco, name, version) = key;
        let Some(list) = by_name.get(&(eco.as_str(), name.as_str())) else {
            continue;
        };
        let scheme = Scheme::for_ecosystem(eco);
        // A record may list the same package in several entries: keep one match per record.
        let mut records: Vec<&str> = vec![];
        for (c, entry) in list {
            let Some(entry) = entry else { continue };
            match evaluate(entry, scheme, version) {
                Verdict::Affected { state, fixed } => {
                    if records.contains(&c.2.as_str()) {
                        continue;
                    }
                    records.push(&c.2);
                    let observed = fixed
                        .iter()
                        .filter_map(|f| first_seen.get(&(c.2.as_str(), eco, name, f.as_str())))
                        .min()
                        .copied();
                    out.push(Found {
                        key,
                        candidate: c,
                        state: state.as_str(),
                        fixed,
                        observed,
                    });
                }
                Verdict::Undecidable => undecidable += 1,
                Verdict::Clear => {}
            }
        }
    }
    (out, undecidable)
}

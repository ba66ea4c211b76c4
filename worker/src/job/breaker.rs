//! The per-registry circuit breaker, shared through Postgres so every worker agrees: repeated transient
//! failures open it, jobs for an open host are deferred without charge, one probe at a time checks whether
//! the registry is back, and its answer closes the breaker and releases every deferred job at once.

use std::time::Duration;

use sqlx::PgPool;

use crate::store::Result;

/// Breaker states, as stored and as the metric's `state` label.
pub const STATES: [&str; 3] = ["closed", "open", "half_open"];

/// How the breaker behaves (from `registry.breaker_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive transient failures that open the breaker; 0 disables it.
    pub failures: u32,
    /// Time between probes while the registry stays down.
    pub probe_interval: Duration,
    /// How long one probe may take before another job may probe instead.
    pub probe_timeout: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failures: 5,
            probe_interval: Duration::from_secs(5),
            probe_timeout: Duration::from_secs(30),
        }
    }
}

/// What a job may do with its registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Closed: go ahead.
    Go,
    /// This job is the one probe of an open breaker.
    Probe,
    /// Open (or another job probes): come back after this long.
    Defer(Duration),
}

/// Locks the row only when it is not closed, so the common case is a plain primary-key read. A probe
/// turn is taken when the open period (or a stuck probe's turn) is over.
const ADMIT_SQL: &str = r#"
WITH b AS (
    SELECT host, state, retry_at FROM fathom_registry_breakers
    WHERE host = $1 AND state <> 'closed'
    FOR UPDATE
),
probe AS (
    UPDATE fathom_registry_breakers r SET
        state = 'half_open', probe_owner = $2,
        retry_at = now() + make_interval(secs => $3), updated_at = now()
    FROM b
    WHERE r.host = b.host AND b.retry_at <= now()
    RETURNING r.host
)
SELECT (SELECT state FROM b) AS state,
       EXISTS (SELECT 1 FROM probe) AS probe,
       (SELECT greatest(extract(epoch FROM retry_at - now()), 0)::float8 FROM b) AS wait_s
"#;

/// Counts a transient failure; opens at `$2` consecutive ones, and re-opens at once after a failed probe
/// (any failure while not closed). Returns the new state and when the next probe may go.
const FAILED_SQL: &str = r#"
INSERT INTO fathom_registry_breakers AS r (host, state, failures, opened_at, retry_at)
VALUES ($1, CASE WHEN $2 <= 1 THEN 'open' ELSE 'closed' END, 1,
        CASE WHEN $2 <= 1 THEN now() END,
        CASE WHEN $2 <= 1 THEN now() + make_interval(secs => $3) END)
ON CONFLICT (host) DO UPDATE SET
    failures = r.failures + 1,
    state = CASE WHEN r.state <> 'closed' OR r.failures + 1 >= $2 THEN 'open' ELSE 'closed' END,
    opened_at = CASE WHEN r.state = 'closed' AND r.failures + 1 >= $2 THEN now() ELSE r.opened_at END,
    retry_at = CASE WHEN r.state <> 'closed' OR r.failures + 1 >= $2
                    THEN now() + make_interval(secs => $3) ELSE r.retry_at END,
    probe_owner = NULL, updated_at = now()
RETURNING state, greatest(extract(epoch FROM retry_at - now()), 0)::float8 AS wait_s
"#;

/// The registry answered: closed again, failure count reset. Returns the previous state when the row
/// changed (nothing to write in the common case of a healthy registry).
const ANSWERED_SQL: &str = r#"
WITH old AS (
    SELECT host, state FROM fathom_registry_breakers
    WHERE host = $1 AND (state <> 'closed' OR failures > 0)
    FOR UPDATE
)
UPDATE fathom_registry_breakers r SET
    state = 'closed', failures = 0, opened_at = NULL, retry_at = NULL, probe_owner = NULL,
    updated_at = now()
FROM old WHERE r.host = old.host
RETURNING old.state
"#;

/// The registry asked us to wait (429/503 with `Retry-After`): open for that long at least, whatever the
/// failure count, so no job of the fleet sends it a request before then.
const PAUSE_SQL: &str = r#"
INSERT INTO fathom_registry_breakers AS r (host, state, failures, opened_at, retry_at)
VALUES ($1, 'open', 1, now(), now() + make_interval(secs => $2))
ON CONFLICT (host) DO UPDATE SET
    state = 'open', failures = r.failures + 1,
    opened_at = coalesce(r.opened_at, now()),
    retry_at = greatest(coalesce(r.retry_at, now()), now() + make_interval(secs => $2)),
    probe_owner = NULL, updated_at = now()
RETURNING greatest(extract(epoch FROM retry_at - now()), 0)::float8 AS wait_s
"#;

const ALL_SQL: &str = "SELECT host, state FROM fathom_registry_breakers ORDER BY host";

/// The fleet's breakers, over the results store's pool.
#[derive(Debug, Clone)]
pub struct Breaker {
    pool: PgPool,
    config: BreakerConfig,
}

impl Breaker {
    /// Breakers in the database behind `pool` (the `fathom_registry_breakers` table).
    pub fn new(pool: PgPool, config: BreakerConfig) -> Breaker {
        Breaker { pool, config }
    }

    /// The configuration.
    pub fn config(&self) -> BreakerConfig {
        self.config
    }

    /// Whether a job for `host` may run now, taking the probe turn for `owner` when one is due.
    pub async fn admit(&self, host: &str, owner: &str) -> Result<Admission> {
        if self.config.failures == 0 {
            return Ok(Admission::Go);
        }
        let row: (Option<String>, bool, Option<f64>) = sqlx::query_as(ADMIT_SQL)
            .bind(host)
            .bind(owner)
            .bind(self.config.probe_timeout.as_secs_f64())
            .fetch_one(&self.pool)
            .await?;
        Ok(match row {
            (None, _, _) => Admission::Go,
            (Some(_), true, _) => Admission::Probe,
            (Some(_), false, wait) => {
                Admission::Defer(seconds(wait).unwrap_or(self.config.probe_interval))
            }
        })
    }

    /// Records a transient failure at `host`; the new state and, when not closed, how long until the next
    /// probe may go.
    pub async fn failed(&self, host: &str) -> Result<(String, Option<Duration>)> {
        if self.config.failures == 0 {
            return Ok(("closed".into(), None));
        }
        let threshold = i32::try_from(self.config.failures).unwrap_or(i32::MAX);
        let (state, wait): (String, Option<f64>) = sqlx::query_as(FAILED_SQL)
            .bind(host)
            .bind(threshold)
            .bind(self.config.probe_interval.as_secs_f64())
            .fetch_one(&self.pool)
            .await?;
        Ok((state, seconds(wait)))
    }

    /// Keeps every job off `host` for at least `wait` (its `Retry-After`); how long until the next probe.
    pub async fn pause(&self, host: &str, wait: Duration) -> Result<Duration> {
        let (left,): (Option<f64>,) = sqlx::query_as(PAUSE_SQL)
            .bind(host)
            .bind(wait.as_secs_f64())
            .fetch_one(&self.pool)
            .await?;
        Ok(seconds(left).unwrap_or(wait))
    }

    /// Records that `host` answered; its previous state when that changed anything.
    pub async fn answered(&self, host: &str) -> Result<Option<String>> {
        if self.config.failures == 0 {
            return Ok(None);
        }
        let old: Option<(String,)> = sqlx::query_as(ANSWERED_SQL)
            .bind(host)
            .fetch_optional(&self.pool)
            .await?;
        Ok(old.map(|(s,)| s))
    }

    /// Every breaker the fleet knows: (host, state).
    pub async fn all(&self) -> Result<Vec<(String, String)>> {
        Ok(sqlx::query_as(ALL_SQL).fetch_all(&self.pool).await?)
    }
}

fn seconds(s: Option<f64>) -> Option<Duration> {
    s.filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
}

/// The registry host of a job's image reference (`docker.io` for Docker Hub short names), `None` for
/// local sources (`oci-dir:`, `docker-archive:`).
pub fn host_of(reference: &str) -> Option<String> {
    let reference = reference.strip_prefix("registry:").unwrap_or(reference);
    if reference.starts_with("oci-dir:") || reference.starts_with("docker-archive:") {
        return None;
    }
    match reference.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            Some(first.to_ascii_lowercase())
        }
        _ => Some("docker.io".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_of_references() {
        assert_eq!(
            host_of("127.0.0.1:5000/app:1").as_deref(),
            Some("127.0.0.1:5000")
        );
        assert_eq!(
            host_of("registry:Quay.io/a/b@sha256:00").as_deref(),
            Some("quay.io")
        );
        assert_eq!(host_of("localhost/x").as_deref(), Some("localhost"));
        assert_eq!(host_of("debian:12").as_deref(), Some("docker.io"));
        assert_eq!(host_of("library/debian").as_deref(), Some("docker.io"));
        assert_eq!(host_of("oci-dir:/tmp/x"), None);
        assert_eq!(host_of("docker-archive:/tmp/x.tar"), None);
    }
}

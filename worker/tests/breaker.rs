//! The registry breaker's state machine against a real PostgreSQL: shared by every handle on the table.

use std::time::Duration;

use fathom_testkit::pg::TestDb;
use fathom_worker::job::breaker::{Admission, Breaker, BreakerConfig};

async fn setup() -> (TestDb, sqlx::PgPool) {
    let db = TestDb::create(&[&fathom_queue::migrator(), &fathom_worker::store::migrator()])
        .await
        .expect("test database");
    let pool = sqlx::PgPool::connect(db.url()).await.expect("pool");
    (db, pool)
}

fn config(probe_interval: Duration) -> BreakerConfig {
    BreakerConfig {
        failures: 3,
        probe_interval,
        probe_timeout: Duration::from_secs(3600),
    }
}

#[tokio::test]
async fn repeated_failures_open_it_one_probe_goes_and_an_answer_closes_it() {
    let (_db, pool) = setup().await;
    // Probes due at once, so no test waits for time to pass.
    let a = Breaker::new(pool.clone(), config(Duration::ZERO));
    let b = Breaker::new(pool.clone(), config(Duration::ZERO));
    let host = "reg.example:5000";
    assert_eq!(a.admit(host, "w1").await.unwrap(), Admission::Go);
    assert_eq!(a.failed(host).await.unwrap().0, "closed");
    assert_eq!(b.failed(host).await.unwrap().0, "closed");
    assert_eq!(
        a.failed(host).await.unwrap().0,
        "open",
        "third consecutive failure"
    );
    // One probe at a time, whichever worker asks first.
    assert_eq!(b.admit(host, "w2").await.unwrap(), Admission::Probe);
    assert!(matches!(
        a.admit(host, "w1").await.unwrap(),
        Admission::Defer(wait) if wait > Duration::from_secs(3000)
    ));
    // The probe failed: open again, and the next probe is due (interval zero here).
    assert_eq!(b.failed(host).await.unwrap().0, "open");
    assert_eq!(a.admit(host, "w1").await.unwrap(), Admission::Probe);
    assert_eq!(
        a.answered(host).await.unwrap().as_deref(),
        Some("half_open")
    );
    assert_eq!(b.admit(host, "w2").await.unwrap(), Admission::Go);
    assert_eq!(
        a.answered(host).await.unwrap(),
        None,
        "nothing to write when healthy"
    );
    // Other hosts are unaffected throughout.
    assert_eq!(a.admit("other.example", "w1").await.unwrap(), Admission::Go);
    assert_eq!(
        a.all().await.unwrap(),
        vec![(host.to_string(), "closed".to_string())]
    );
}

#[tokio::test]
async fn an_answer_resets_the_count_and_retry_after_holds_the_host() {
    let (_db, pool) = setup().await;
    let breaker = Breaker::new(pool, config(Duration::from_secs(3600)));
    let host = "reg.example";
    breaker.failed(host).await.unwrap();
    breaker.failed(host).await.unwrap();
    assert_eq!(
        breaker.answered(host).await.unwrap().as_deref(),
        Some("closed")
    );
    assert_eq!(
        breaker.failed(host).await.unwrap().0,
        "closed",
        "count restarted"
    );
    // A Retry-After opens it at once for at least that long.
    let wait = breaker.pause(host, Duration::from_secs(30)).await.unwrap();
    assert!(wait > Duration::from_secs(25), "{wait:?}");
    assert!(matches!(
        breaker.admit(host, "w").await.unwrap(),
        Admission::Defer(w) if w > Duration::from_secs(25)
    ));
}

#[tokio::test]
async fn zero_failures_means_no_breaker() {
    let (_db, pool) = setup().await;
    let breaker = Breaker::new(
        pool,
        BreakerConfig {
            failures: 0,
            ..BreakerConfig::default()
        },
    );
    for _ in 0..5 {
        assert_eq!(breaker.failed("h").await.unwrap().0, "closed");
    }
    assert_eq!(breaker.admit("h", "w").await.unwrap(), Admission::Go);
}

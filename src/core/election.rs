//! One runner at a time across core replicas: a Postgres session advisory lock, held on a connection of
//! its own (were it a pooled one, a cancelled task could hand a connection still holding the lock back
//! to the pool). The feed cycle takes its lock per round; the catalog holds its own while it leads.

use sqlx::{PgConnection, Row};

/// Takes the advisory lock `key` on `conn` without waiting; true when this session now holds it.
pub async fn try_lock(conn: &mut PgConnection, key: i64) -> sqlx::Result<bool> {
    sqlx::query("SELECT pg_try_advisory_lock($1)")
        .bind(key)
        .fetch_one(conn)
        .await?
        .try_get(0)
}

/// Takes the advisory lock `key` on `conn`, waiting for its holder to let go.
pub async fn lock(conn: &mut PgConnection, key: i64) -> sqlx::Result<()> {
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(key)
        .execute(conn)
        .await
        .map(drop)
}

/// Releases the advisory lock `key` held by `conn`'s session.
pub async fn unlock(conn: &mut PgConnection, key: i64) -> sqlx::Result<()> {
    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(key)
        .execute(conn)
        .await
        .map(drop)
}

/// Whether `conn`'s session still holds the advisory lock `key` (false when the connection broke: a
/// leader that lost its session must stop leading, another core may hold the lock by now).
pub async fn holds(conn: &mut PgConnection, key: i64) -> bool {
    let held = sqlx::query(
        "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid() \
         AND granted AND ((classid::int8 << 32) | objid::int8) = $1)",
    )
    .bind(key)
    .fetch_one(conn)
    .await;
    matches!(held.and_then(|r| r.try_get::<bool, _>(0)), Ok(true))
}

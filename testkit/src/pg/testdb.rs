//! A fresh, migrated database per test, copied from a template so tests run in parallel at full speed.

use std::sync::atomic::{AtomicU32, Ordering};

use sha2::{Digest, Sha256};
use sqlx::migrate::Migrator;
use sqlx::{Connection, PgConnection};

use crate::pg::shared::SharedCluster;
use crate::{Error, Result};

/// A database of its own for one test. With `DATABASE_URL` set it lives on that server and is dropped when
/// this value is dropped; otherwise it lives in the run's shared throwaway cluster.
#[derive(Debug)]
pub struct TestDb {
    url: String,
    name: String,
    admin_url: String,
    external: bool,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

impl TestDb {
    /// Creates a database with every migration of `migrators` applied (in order).
    pub async fn create(migrators: &[&Migrator]) -> Result<TestDb> {
        let (admin_url, external) = match std::env::var("DATABASE_URL") {
            Ok(url) if !url.is_empty() => (url, true),
            _ => {
                let cluster = tokio::task::spawn_blocking(SharedCluster::get)
                    .await
                    .map_err(|e| Error::Harness(format!("cluster start panicked: {e}")))??;
                (cluster.info().url("postgres"), false)
            }
        };
        let template = template_name(migrators);
        let mut admin = PgConnection::connect(&admin_url).await?;
        ensure_template(&mut admin, &admin_url, &template, migrators).await?;

        let name = format!(
            "fathom_test_{}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            rand::random::<u16>()
        );
        sqlx::query(&format!(
            r#"CREATE DATABASE "{name}" TEMPLATE "{template}""#
        ))
        .execute(&mut admin)
        .await?;
        admin.close().await?;
        Ok(TestDb {
            url: replace_database(&admin_url, &name),
            name,
            admin_url,
            external,
        })
    }

    /// Connection URL of this test's database.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Name of this test's database.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // The shared cluster is removed wholesale at the end of the run; only a user's server needs tidying.
        if !self.external {
            return;
        }
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok(mut admin) = PgConnection::connect(&admin_url).await {
                    let _ =
                        sqlx::query(&format!(r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#))
                            .execute(&mut admin)
                            .await;
                }
            });
        })
        .join();
    }
}

/// Template name derived from every migration's version and checksum: a changed migration gets a new one.
fn template_name(migrators: &[&Migrator]) -> String {
    let mut hash = Sha256::new();
    for migrator in migrators {
        for migration in migrator.iter() {
            hash.update(migration.version.to_le_bytes());
            hash.update(&migration.checksum);
        }
    }
    let digest = hash.finalize();
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("fathom_tpl_{hex}")
}

async fn ensure_template(
    admin: &mut PgConnection,
    admin_url: &str,
    template: &str,
    migrators: &[&Migrator],
) -> Result<()> {
    // A transaction-level advisory lock serializes template creation across every test process.
    let mut tx = admin.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
        .bind(template)
        .execute(&mut *tx)
        .await?;
    let exists: Option<i32> = sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
        .bind(template)
        .fetch_optional(&mut *tx)
        .await?;
    if exists.is_none() {
        let building = format!("{template}_building_{}", std::process::id());
        // CREATE DATABASE cannot run inside a transaction: use a second connection, then rename into place
        // so no half-built template is ever visible.
        let mut other = PgConnection::connect(admin_url).await?;
        // A build that failed half-way (same pid: another thread of this process) leaves its database.
        sqlx::query(&format!(
            r#"DROP DATABASE IF EXISTS "{building}" WITH (FORCE)"#
        ))
        .execute(&mut other)
        .await?;
        sqlx::query(&format!(r#"CREATE DATABASE "{building}""#))
            .execute(&mut other)
            .await?;
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect(&replace_database(admin_url, &building))
            .await?;
        for migrator in migrators {
            migrator.run(&pool).await?;
        }
        pool.close().await;
        // The migration pool's sessions can outlive `close()` (seen: one left idle after the migrator's
        // advisory unlock), and RENAME waits 5 s per attempt for other sessions before failing with 55006.
        // Nothing else may use a database that is still being built, so end those sessions first.
        let mut tries = 0;
        loop {
            sqlx::query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = $1 AND pid <> pg_backend_pid()",
            )
            .bind(&building)
            .execute(&mut other)
            .await?;
            let renamed = sqlx::query(&format!(
                r#"ALTER DATABASE "{building}" RENAME TO "{template}""#
            ))
            .execute(&mut other)
            .await;
            match renamed {
                Err(sqlx::Error::Database(e))
                    if e.code().as_deref() == Some("55006") && tries < 100 =>
                {
                    tries += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                other => {
                    other?;
                    break;
                }
            }
        }
        other.close().await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Swaps the database name in a `postgres://...` URL, keeping user, host and query parameters.
pub(crate) fn replace_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let after_scheme = base.find("://").map(|i| i + 3).unwrap_or(0);
    let path_start = base[after_scheme..]
        .find('/')
        .map(|i| after_scheme + i)
        .unwrap_or(base.len());
    let mut out = format!("{}/{}", &base[..path_start], database);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::replace_database;

    #[test]
    fn replaces_database_and_keeps_socket_host() {
        assert_eq!(
            replace_database("postgres://postgres@localhost:5/postgres?host=/tmp/x", "t1"),
            "postgres://postgres@localhost:5/t1?host=/tmp/x"
        );
        assert_eq!(
            replace_database("postgres://u:p@db:5432", "t2"),
            "postgres://u:p@db:5432/t2"
        );
    }
}

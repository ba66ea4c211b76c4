//! The set-up every delivery test shares (tests/notify_delivery.rs): a database, a receiver checking
//! signatures, a webhook certificate from a CA nobody trusts (the `badtls` endpoint), and a core
//! configured with notifications.

use std::path::{Path, PathBuf};

use fathom_testkit::pg::TestDb;
use sqlx::PgPool;
use tempfile::TempDir;

use super::api::Api;
use super::receiver::Receiver;

/// The endpoints' HMAC secret.
pub const SECRET: &str = "whsec-notify-test-5e1f0a9c";
/// The variable the configuration names for it (`secret_env`).
pub const SECRET_ENV: &str = "FATHOM_TEST_NOTIFY_SECRET";

/// `services.*` YAML for a core with the catalog off, its webhook serving `tls` (a certificate from a
/// CA nobody trusts: the `badtls` endpoint), and `notifications`.
pub fn core_extra(tls: &Path, webhook: &str, notifications: &str) -> String {
    format!(
        "  catalog:\n    enabled: false\n  webhook:\n    enabled: true\n    address: '{webhook}'\n    \
         cert_file: '{}'\n    key_file: '{}'\n  notifications:\n    source: https://fathom.test\n{notifications}",
        tls.join("tls.crt").display(),
        tls.join("tls.key").display()
    )
}

/// One `services.notifications.endpoints` entry signing with [`SECRET_ENV`]; `more`: more flow-map
/// keys, each starting with `, `.
pub fn endpoint(name: &str, url: &str, more: &str) -> String {
    format!("      - {{name: {name}, url: '{url}', secret_env: {SECRET_ENV}{more}}}\n")
}

/// A delivery test's world.
pub struct Scene {
    /// The test database.
    pub db: TestDb,
    /// A pool on it, for writing events and reading deliveries.
    pub pool: PgPool,
    /// Configs and logs.
    pub dir: TempDir,
    /// The receiver, verifying signatures with [`SECRET`].
    pub rx: Receiver,
    /// The webhook's certificate, key and CA.
    pub tls: PathBuf,
}

impl Scene {
    /// A fresh database, receiver and certificate; [`SECRET`] in this process's environment (the
    /// cores it starts inherit it).
    pub async fn new() -> Scene {
        std::env::set_var(SECRET_ENV, SECRET);
        let db = super::test_db().await;
        let pool = PgPool::connect(db.url()).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let rx = Receiver::start(SECRET).await;
        let tls = dir.path().join("tls");
        super::webhook_certs(&tls);
        Scene {
            db,
            pool,
            dir,
            rx,
            tls,
        }
    }

    /// A core in `dir` (its config and logs) with its webhook on `webhook` and these `notifications`
    /// lines.
    pub fn core_in(&self, dir: &Path, webhook: &str, notifications: &str) -> Api {
        Api::start(
            dir,
            self.db.url(),
            &core_extra(&self.tls, webhook, notifications),
        )
    }

    /// [`Scene::core_in`] the scene's directory, its webhook on a free port.
    pub fn core(&self, notifications: &str) -> Api {
        self.core_in(self.dir.path(), &super::free_addr(), notifications)
    }
}

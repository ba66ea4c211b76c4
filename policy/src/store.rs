//! Bundle storage in Postgres (feature `store`): uploaded bundles in canonical form, at most one active.
//!
//! The table is the policy engine's own, so it lives with the engine: the core uses it today, and a
//! policy engine running on its own (the split deployment) reads the same rows.

use serde::Serialize;
use serde_json::Value;
use sqlx::migrate::Migrator;
use sqlx::PgPool;

use crate::model::Bundle;
use crate::validated::ValidatedBundle;

static MIGRATIONS: Migrator = sqlx::migrate!("./migrations");

/// The crate's migrator. It shares `_sqlx_migrations` with the queue's, the store's and the feeds', so it
/// ignores versions it does not know (ours start at `20261130200000`).
pub fn migrator() -> Migrator {
    let mut m = Migrator {
        migrations: MIGRATIONS.migrations.clone(),
        ..Migrator::DEFAULT
    };
    m.set_ignore_missing(true);
    m
}

/// Channel on which every committed change to the bundles is announced (payload `*`).
pub const CHANNEL: &str = "fathom_policy_bundles";

/// A stored bundle's record.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct StoredBundle {
    /// Bundle id (the document's `id`).
    pub id: String,
    /// Bundle name.
    pub name: Option<String>,
    /// Digest of the canonical bundle.
    pub digest: String,
    /// Whether checks without a `policy_id` use it.
    pub active: bool,
    /// First upload (RFC 3339).
    pub created_at: String,
    /// Last replacement (RFC 3339).
    pub updated_at: String,
    /// The canonical bundle document.
    pub document: Value,
}

impl StoredBundle {
    /// Validates (and compiles) the stored document again: the engine works on compiled bundles only.
    pub fn compile(&self) -> std::result::Result<ValidatedBundle, Vec<crate::ValidationError>> {
        ValidatedBundle::from_value(&self.document)
    }
}

const COLUMNS: &str = r#"id, name, digest, active, document,
    to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS created_at,
    to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS updated_at"#;

const UPSERT_SQL: &str = r#"
INSERT INTO fathom_policy_bundles (id, name, digest, document) VALUES ($1, $2, $3, $4)
ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, digest = EXCLUDED.digest,
    document = EXCLUDED.document, updated_at = now()
RETURNING (xmax = 0) AS created
"#;
const DEACTIVATE_OTHERS_SQL: &str =
    "UPDATE fathom_policy_bundles SET active = false WHERE active AND id <> $1";
const ACTIVATE_SQL: &str = "UPDATE fathom_policy_bundles SET active = true WHERE id = $1";
const DELETE_SQL: &str = "DELETE FROM fathom_policy_bundles WHERE id = $1 RETURNING active";

/// What [`delete`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deleted {
    /// The bundle is gone.
    Deleted,
    /// No bundle has that id.
    Missing,
    /// It is the active bundle: activate another first (anchore refuses this too).
    Active,
}

/// Every stored bundle, by id.
pub async fn list(pool: &PgPool) -> sqlx::Result<Vec<StoredBundle>> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM fathom_policy_bundles ORDER BY id"
    ))
    .fetch_all(pool)
    .await
}

/// One stored bundle.
pub async fn get(pool: &PgPool, id: &str) -> sqlx::Result<Option<StoredBundle>> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM fathom_policy_bundles WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await
}

/// The active bundle, if one is stored.
pub async fn active(pool: &PgPool) -> sqlx::Result<Option<StoredBundle>> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM fathom_policy_bundles WHERE active"
    ))
    .fetch_optional(pool)
    .await
}

/// Stores `bundle` under its id (replacing a bundle of that id), activating it when asked; returns the
/// record and whether the id was new.
pub async fn put(
    pool: &PgPool,
    bundle: &ValidatedBundle,
    activate: bool,
) -> sqlx::Result<(StoredBundle, bool)> {
    let raw: &Bundle = bundle.bundle();
    let document = serde_json::to_value(raw).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    let mut tx = pool.begin().await?;
    let created: bool = sqlx::query_scalar(UPSERT_SQL)
        .bind(&raw.id)
        .bind(&raw.name)
        .bind(bundle.digest())
        .bind(&document)
        .fetch_one(&mut *tx)
        .await?;
    if activate {
        activate_in(&mut tx, &raw.id).await?;
    }
    tx.commit().await?;
    let stored = get(pool, &raw.id).await?.ok_or(sqlx::Error::RowNotFound)?;
    Ok((stored, created))
}

async fn activate_in(tx: &mut sqlx::PgConnection, id: &str) -> sqlx::Result<bool> {
    sqlx::query(DEACTIVATE_OTHERS_SQL)
        .bind(id)
        .execute(&mut *tx)
        .await?;
    let done = sqlx::query(ACTIVATE_SQL).bind(id).execute(&mut *tx).await?;
    Ok(done.rows_affected() == 1)
}

/// Makes `id` the active bundle; false when no bundle has that id (nothing changes then).
pub async fn activate(pool: &PgPool, id: &str) -> sqlx::Result<bool> {
    let mut tx = pool.begin().await?;
    let found = activate_in(&mut tx, id).await?;
    if found {
        tx.commit().await?;
    } else {
        tx.rollback().await?;
    }
    Ok(found)
}

/// Deletes a bundle unless it is the active one.
pub async fn delete(pool: &PgPool, id: &str) -> sqlx::Result<Deleted> {
    let mut tx = pool.begin().await?;
    let was_active: Option<bool> = sqlx::query_scalar(DELETE_SQL)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
    match was_active {
        None => {
            tx.rollback().await?;
            Ok(Deleted::Missing)
        }
        Some(true) => {
            tx.rollback().await?;
            Ok(Deleted::Active)
        }
        Some(false) => {
            tx.commit().await?;
            Ok(Deleted::Deleted)
        }
    }
}

//! The listening connection as a place to run statements: a worker already holds it, so a woken worker
//! claims on it at once instead of first opening a pooled connection (TCP, authentication and a fresh
//! backend cost more than the claim itself), and an idle worker needs no other connection at all.
//!
//! Only statements that never wait on a lock run here (claim and rescue, both `SKIP LOCKED`): the same
//! connection carries the fleet's wake-ups (forwarded shares, chains, re-counts), which must not queue
//! behind a statement blocked on a row another transaction holds.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, Row, Statement};

use crate::error::Result;
use crate::queue::StatementMode;

/// The current listening connection of one [`crate::Waker`], while it is up.
#[derive(Debug, Default)]
pub(crate) struct HomeSlot(Mutex<Option<Arc<HomeConn>>>);

impl HomeSlot {
    /// The listener connected (and LISTENs): statements may run on `client` from now on.
    pub fn set(&self, client: Arc<Client>) {
        let conn = Arc::new(HomeConn {
            client,
            prepared: tokio::sync::Mutex::new(HashMap::new()),
        });
        if let Ok(mut slot) = self.0.lock() {
            *slot = Some(conn);
        }
    }

    /// The listener's connection ended (or it left the fleet): statements go to the pool again.
    pub fn clear(&self) {
        if let Ok(mut slot) = self.0.lock() {
            *slot = None;
        }
    }

    /// The connection, when it is up.
    pub fn current(&self) -> Option<Arc<HomeConn>> {
        let conn = self.0.lock().ok()?.clone()?;
        (!conn.client.is_closed()).then_some(conn)
    }
}

/// One listening connection and the statements prepared on it.
pub(crate) struct HomeConn {
    client: Arc<Client>,
    /// Prepared once per connection: a claim after a wake-up is one round trip with a cached plan.
    prepared: tokio::sync::Mutex<HashMap<&'static str, Statement>>,
}

impl std::fmt::Debug for HomeConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HomeConn")
            .field("closed", &self.client.is_closed())
            .finish()
    }
}

impl HomeConn {
    /// Whether the connection is gone (the listener reconnects on a new one).
    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    /// Runs one statement and returns its rows, as [`crate::Queue`] does on a pooled connection.
    pub async fn query(
        &self,
        mode: StatementMode,
        sql: &'static str,
        params: &[(&(dyn ToSql + Sync), Type)],
    ) -> Result<Vec<Row>> {
        let rows = match mode {
            StatementMode::Prepared => {
                let statement = self.prepare(sql, params).await?;
                let values: Vec<&(dyn ToSql + Sync)> = params.iter().map(|(v, _)| *v).collect();
                self.client.query(&statement, &values).await?
            }
            StatementMode::Unnamed => self.client.query_typed(sql, params).await?,
        };
        Ok(rows)
    }

    async fn prepare(
        &self,
        sql: &'static str,
        params: &[(&(dyn ToSql + Sync), Type)],
    ) -> Result<Statement> {
        // Held across the prepare: two first claims at once must not prepare (and leak) it twice.
        let mut prepared = self.prepared.lock().await;
        if let Some(statement) = prepared.get(sql) {
            return Ok(statement.clone());
        }
        let types: Vec<Type> = params.iter().map(|(_, t)| t.clone()).collect();
        let statement = self.client.prepare_typed(sql, &types).await?;
        prepared.insert(sql, statement.clone());
        Ok(statement)
    }
}

//! [`Queue`]: the hot-path handle on the job table, over a small deadpool of tokio-postgres connections.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{NoTls, Row};

use crate::error::{Error, Result};
use crate::home::HomeSlot;
use crate::notify::Waker;

/// How statements reach the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StatementMode {
    /// Named prepared statements cached per connection: fastest on a direct connection.
    #[default]
    Prepared,
    /// The unnamed statement, parse+bind+execute in one round trip, no session state: works behind
    /// PgBouncer in transaction mode.
    Unnamed,
}

/// Tuning of a [`Queue`].
#[derive(Debug, Clone)]
pub struct QueueConfig {
    /// Connections in the pool. Keep it tiny on workers: a thousand pods × a big pool is more than
    /// Postgres accepts.
    pub pool_size: usize,
    /// Prepared statements or PgBouncer-safe unnamed statements.
    pub statement_mode: StatementMode,
    /// First retry delay of a retryable failure; doubles per attempt.
    pub backoff_base: Duration,
    /// Longest retry delay.
    pub backoff_cap: Duration,
    /// Time budget of a job: a retryable failure this long after its first attempt (or its last requeue)
    /// makes it `dead`, whatever attempts remain.
    pub deadline: Duration,
    /// Give up connecting (or waiting for a pooled connection) after this long.
    pub connect_timeout: Duration,
    /// A pooled connection unused this long is closed (checked every half of it, so none stays idle
    /// past 1.5×); the next query opens one again. An idle fleet then holds only its listeners.
    pub idle_timeout: Duration,
}

/// Default [`QueueConfig::idle_timeout`], also the store pools' (`fathom-worker`): with the checks' lag,
/// no idle connection outlives a minute.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            pool_size: 4,
            statement_mode: StatementMode::Prepared,
            backoff_base: Duration::from_secs(2),
            backoff_cap: Duration::from_secs(600),
            deadline: Duration::from_secs(24 * 3600),
            connect_timeout: Duration::from_secs(5),
            idle_timeout: IDLE_TIMEOUT,
        }
    }
}

/// The job queue. Cheap to clone; every clone shares the pool.
#[derive(Clone)]
pub struct Queue {
    pub(crate) pool: Pool,
    pub(crate) config: QueueConfig,
    /// A waker's listening connection, where claims and rescues run while it is up
    /// ([`Queue::with_listener`]).
    home: Option<Arc<HomeSlot>>,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("config", &self.config)
            .field("pool", &self.pool.status())
            .field("listener", &self.home.as_ref().and_then(|h| h.current()))
            .finish()
    }
}

impl Queue {
    /// Opens a pool to `database_url` (`postgres://user@host:port/db`, `?host=/socket/dir` for a unix
    /// socket). Connections are made lazily: this does not fail when the server is down.
    pub fn connect(database_url: &str, config: QueueConfig) -> Result<Queue> {
        let mut pg = tokio_postgres::Config::from_str(database_url)
            .map_err(|e| Error::Config(format!("database URL: {e}")))?;
        pg.connect_timeout(config.connect_timeout);
        if pg.get_application_name().is_none() {
            pg.application_name("fathom-queue");
        }
        let manager = Manager::from_config(
            pg,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(config.pool_size.max(1))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(config.connect_timeout))
            .create_timeout(Some(config.connect_timeout))
            .build()
            .map_err(|e| Error::Config(format!("connection pool: {e}")))?;
        close_idle(&pool, config.idle_timeout);
        Ok(Queue {
            pool,
            config,
            home: None,
        })
    }

    /// This queue, claiming (and rescuing expired leases) on `waker`'s listening connection while it is
    /// up, through the pool otherwise. A worker holds that connection anyway: a woken worker claims at
    /// once, on a warm backend with the claim already prepared, instead of first opening a pooled
    /// connection that its pool closed while it idled, and an idle worker's polls and rescues need no
    /// other connection. Other statements keep to the pool: they may wait on row locks (a heartbeat
    /// behind a completing transaction), and the listener must not wait behind them. A poll-only waker
    /// has no listener: the queue is returned unchanged.
    pub fn with_listener(&self, waker: &Waker) -> Queue {
        Queue {
            home: waker.home(),
            ..self.clone()
        }
    }

    /// After a claim that found nothing: closes the pool's unused connections now when the next query is
    /// not due for at least [`QueueConfig::idle_timeout`] (`next_use_in`: the caller's next poll), instead
    /// of holding them until the idle check. In a large fleet each member polls rarely, so its pool is
    /// empty between polls and the fleet holds only its listeners; a wake-up claims on the listener
    /// ([`Queue::with_listener`]) and the pool reconnects for the job's own statements.
    pub fn release_until(&self, next_use_in: Duration) {
        if next_use_in >= self.config.idle_timeout {
            let _closed = self.pool.retain(|_, _| false);
        }
    }

    /// The configuration this queue was opened with.
    pub fn config(&self) -> &QueueConfig {
        &self.config
    }

    /// [`Queue::query`] on the listening connection when this queue has one and it is up. Only for
    /// statements that never wait on a lock (see [`Queue::with_listener`]).
    pub(crate) async fn query_on_listener(
        &self,
        sql: &'static str,
        params: &[(&(dyn ToSql + Sync), Type)],
    ) -> Result<Vec<Row>> {
        let Some(conn) = self.home.as_ref().and_then(|h| h.current()) else {
            return self.query(sql, params).await;
        };
        match conn.query(self.config.statement_mode, sql, params).await {
            // The listener's connection died under the statement (it reconnects on its own; the error
            // may arrive before the client notices it closed): the pool answers now instead of the
            // caller backing off. A claim that ran before the connection died only strands its jobs
            // until their lease expires and they are rescued, as on any connection.
            Err(err) if err.is_connection() || conn.is_closed() => {
                tracing::debug!(%err, "listening connection closed; claiming through the pool");
                self.query(sql, params).await
            }
            answered => answered,
        }
    }

    /// Runs one statement and returns its rows, honouring the statement mode.
    pub(crate) async fn query(
        &self,
        sql: &'static str,
        params: &[(&(dyn ToSql + Sync), Type)],
    ) -> Result<Vec<Row>> {
        let client = self.pool.get().await?;
        let rows = match self.config.statement_mode {
            StatementMode::Prepared => {
                let types: Vec<Type> = params.iter().map(|(_, t)| t.clone()).collect();
                let statement = client.prepare_typed_cached(sql, &types).await?;
                let values: Vec<&(dyn ToSql + Sync)> = params.iter().map(|(v, _)| *v).collect();
                client.query(&statement, &values).await?
            }
            StatementMode::Unnamed => client.query_typed(sql, params).await?,
        };
        Ok(rows)
    }
}

/// Closes `pool`'s connections unused for `idle` (deadpool keeps them forever otherwise), until the pool
/// is dropped. Needs a tokio runtime; outside one (a sync caller) connections stay open as before.
/// "Unused" counts from a connection's last checkout, so one returned after a long transaction may be
/// closed at the next check and reopened when needed: a reconnect, never an error.
fn close_idle(pool: &Pool, idle: Duration) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let weak = pool.weak();
    let every = (idle / 2).max(Duration::from_millis(100));
    runtime.spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(pool) = weak.upgrade() else { return };
            let _closed = pool.retain(|_, m| m.last_used() < idle);
        }
    });
}

/// Seconds as the float8 the SQL takes for intervals (`make_interval(secs => $n)`).
pub(crate) fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

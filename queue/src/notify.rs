//! Waking idle workers: LISTEN/NOTIFY with a polling fallback, or polling alone behind PgBouncer.
//!
//! Every enqueue statement sends one notification whose payload is the number of jobs it made ready (the
//! insert trigger), and release/rescue do the same. Each process keeps one listening connection and turns
//! notifications into a generation counter its claim loop waits on.
//!
//! Stampedes: with a thousand idle worker processes listening, a single job must not make a thousand
//! claims at the same instant. A process wakes at once when the batch is big enough for everyone or when
//! it wins a draw weighted by batch size / listeners (about twice as many winners as jobs); the others
//! wake after a random delay of up to [`SPREAD`], by which time the jobs are usually taken and their
//! claims are cheap empty index probes spread over time instead of a spike.

use std::time::Duration;

use futures_util::{stream, StreamExt};
use rand::Rng;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_postgres::{AsyncMessage, NoTls};

use crate::error::{Error, Result};

/// Channel every notification goes to.
pub const CHANNEL: &str = "fathom_jobs";
/// `application_name` of listening connections, so listeners can count each other.
const LISTENER_APP: &str = "fathom-listener";
/// Longest delay for a process that lost the wake-up draw.
pub const SPREAD: Duration = Duration::from_millis(250);
/// How often the number of listeners is re-counted.
const RECOUNT: Duration = Duration::from_secs(30);

/// Why [`Waker::wait`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// Jobs were enqueued, released or rescued (or the listener reconnected and may have missed some).
    Notified,
    /// The polling interval passed.
    Timeout,
}

/// Waits for work. One per process; cheap to clone (clones share the listener).
#[derive(Debug, Clone)]
pub struct Waker {
    generation: watch::Receiver<u64>,
    _listener: Option<std::sync::Arc<ListenerTask>>,
}

#[derive(Debug)]
struct ListenerTask(JoinHandle<()>);

impl Drop for ListenerTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Waker {
    /// Listens on its own connection to `database_url` (not pooled: LISTEN is session state). Reconnects
    /// with backoff when the connection drops, waking waiters on reconnect since notifications may have
    /// been missed meanwhile.
    pub fn listen(database_url: &str) -> Result<Waker> {
        let mut config: tokio_postgres::Config = database_url
            .parse()
            .map_err(|e| Error::Config(format!("database URL: {e}")))?;
        config.application_name(LISTENER_APP);
        config.connect_timeout(Duration::from_secs(5));
        let (tx, rx) = watch::channel(0u64);
        let task = tokio::spawn(listen_forever(config, tx));
        Ok(Waker {
            generation: rx,
            _listener: Some(std::sync::Arc::new(ListenerTask(task))),
        })
    }

    /// No LISTEN at all: [`Waker::wait`] always sleeps its timeout (PgBouncer transaction mode).
    pub fn poll_only() -> Waker {
        let (_tx, rx) = watch::channel(0u64);
        Waker {
            generation: rx,
            _listener: None,
        }
    }

    /// Waits for a notification newer than the last one seen by this handle, or `timeout`.
    pub async fn wait(&mut self, timeout: Duration) -> Wake {
        if self._listener.is_none() {
            tokio::time::sleep(timeout).await;
            return Wake::Timeout;
        }
        match tokio::time::timeout(timeout, self.generation.changed()).await {
            Ok(Ok(())) => {
                self.generation.borrow_and_update();
                Wake::Notified
            }
            Ok(Err(_)) => {
                // The listener is gone for good: fall back to polling.
                tokio::time::sleep(timeout).await;
                Wake::Timeout
            }
            Err(_) => Wake::Timeout,
        }
    }
}

fn bump(tx: &watch::Sender<u64>) {
    tx.send_modify(|g| *g = g.wrapping_add(1));
}

async fn listen_forever(config: tokio_postgres::Config, tx: watch::Sender<u64>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match listen_once(&config, &tx).await {
            Ok(()) => backoff = Duration::from_millis(100),
            Err(err) => {
                tracing::warn!(%err, "job notification listener disconnected; polling meanwhile");
            }
        }
        let jitter = rand::rng().random_range(0..=backoff.as_millis() as u64 / 2);
        tokio::time::sleep(backoff + Duration::from_millis(jitter)).await;
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

async fn listen_once(config: &tokio_postgres::Config, tx: &watch::Sender<u64>) -> Result<()> {
    let (client, mut connection) = config.connect(NoTls).await?;
    let (note_tx, mut note_rx) = mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        let mut messages = stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(n)) => {
                    if note_tx.send(n.payload().to_owned()).is_err() {
                        break;
                    }
                }
                Ok(_) => {}
                Err(err) => {
                    tracing::debug!(%err, "listener connection ended");
                    break;
                }
            }
        }
    });
    client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
    // Anything enqueued while we were not listening would otherwise wait for the poll.
    bump(tx);

    let mut listeners = count_listeners(&client).await.unwrap_or(1);
    let mut recount = tokio::time::interval(RECOUNT);
    recount.tick().await;
    loop {
        tokio::select! {
            note = note_rx.recv() => {
                let Some(payload) = note else { break };
                let ready: u64 = payload.parse().unwrap_or(1);
                schedule_wake(tx, ready, listeners);
            }
            _ = recount.tick() => {
                if let Ok(n) = count_listeners(&client).await {
                    listeners = n;
                }
            }
        }
    }
    driver.abort();
    Err(Error::Disconnected("listener connection".into()))
}

async fn count_listeners(client: &tokio_postgres::Client) -> Result<u64> {
    let row = client
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
            &[&LISTENER_APP],
        )
        .await?;
    let n: i64 = row.try_get(0)?;
    Ok(n.max(1) as u64)
}

/// Wakes now if this process should claim at once, otherwise after a random delay within [`SPREAD`].
fn schedule_wake(tx: &watch::Sender<u64>, ready: u64, listeners: u64) {
    if wake_now(ready, listeners, rand::rng().random::<f64>()) {
        bump(tx);
        return;
    }
    let delay = rand::rng().random_range(SPREAD / 10..=SPREAD);
    let tx = tx.clone();
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        bump(&tx);
    });
}

/// The draw: everyone wakes when there is a job each; otherwise a process wins with probability
/// 2·ready/listeners, so about twice as many processes as jobs claim at once.
pub(crate) fn wake_now(ready: u64, listeners: u64, draw: f64) -> bool {
    if ready >= listeners {
        return true;
    }
    draw < 2.0 * ready as f64 / listeners as f64
}

#[cfg(test)]
mod tests {
    use super::wake_now;

    #[test]
    fn single_listener_always_wakes_at_once() {
        assert!(wake_now(1, 1, 0.999));
    }

    #[test]
    fn one_job_among_a_thousand_listeners_wakes_about_two() {
        let winners = (0..1000)
            .filter(|i| wake_now(1, 1000, *i as f64 / 1000.0))
            .count();
        assert_eq!(winners, 2);
    }

    #[test]
    fn a_burst_as_big_as_the_fleet_wakes_everyone() {
        assert!((0..100).all(|i| wake_now(500, 500, i as f64 / 100.0)));
    }
}

//! LISTEN on other crates' channels (cache invalidation): notifications and the connection's state as
//! events, on the same listening connection code as the job wakers, reconnecting with backoff.
//!
//! A subscriber must treat [`Event::Lost`] as "anything may change unseen from now on" and
//! [`Event::Listening`] as "anything may have changed unseen until now": notifications sent while no
//! connection listened are gone for good.

use std::time::Duration;

use tokio::task::JoinHandle;

use crate::error::{Error, Result};
use crate::listener::{next_backoff, open};

/// What a [`Subscription`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// LISTEN is in effect on every channel (at start and after each reconnect).
    Listening,
    /// A notification on one of the channels.
    Notification {
        /// The channel.
        channel: String,
        /// Its payload.
        payload: String,
    },
    /// The connection is gone; a reconnect follows.
    Lost,
}

/// A listening connection reporting to a callback until dropped.
#[derive(Debug)]
pub struct Subscription {
    task: JoinHandle<()>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Subscription {
    /// LISTENs on `channels` over its own connection to `database_url` (not pooled: LISTEN is session
    /// state), named `application_name` in `pg_stat_activity`. `on_event` runs on the listening task:
    /// keep it short and non-blocking.
    pub fn start(
        database_url: &str,
        application_name: &str,
        channels: &[&str],
        on_event: impl Fn(Event) + Send + Sync + 'static,
    ) -> Result<Subscription> {
        let mut config: tokio_postgres::Config = database_url
            .parse()
            .map_err(|e| Error::Config(format!("database URL: {e}")))?;
        config.application_name(application_name);
        config.connect_timeout(Duration::from_secs(5));
        // Channels are identifiers: quoted, so any name works and none can inject SQL.
        let listen: String = channels
            .iter()
            .map(|c| format!("LISTEN \"{}\";", c.replace('"', "\"\"")))
            .collect();
        let task = tokio::spawn(async move {
            let mut backoff = Duration::from_millis(100);
            loop {
                match subscribe_once(&config, &listen, &on_event).await {
                    Ok(()) => backoff = Duration::from_millis(100),
                    Err(err) => tracing::warn!(%err, "notification listener could not connect"),
                }
                let (pause, next) = next_backoff(backoff);
                tokio::time::sleep(pause).await;
                backoff = next;
            }
        });
        Ok(Subscription { task })
    }
}

/// One connection's life: `Ok` once an established connection ended (after [`Event::Lost`]).
async fn subscribe_once(
    config: &tokio_postgres::Config,
    listen: &str,
    on_event: &(impl Fn(Event) + Send + Sync),
) -> Result<()> {
    let mut listening = open(config).await?;
    listening.client.batch_execute(listen).await?;
    on_event(Event::Listening);
    let mut ping = tokio::time::interval(PING);
    ping.tick().await;
    loop {
        tokio::select! {
            note = listening.notes.recv() => match note {
                Some(m) => on_event(Event::Notification { channel: m.channel, payload: m.payload }),
                None => break,
            },
            _ = ping.tick() => {
                let alive = tokio::time::timeout(PING, listening.client.simple_query("")).await;
                if !matches!(alive, Ok(Ok(_))) {
                    break;
                }
            }
        }
    }
    tracing::warn!("notification listener disconnected; reconnecting");
    on_event(Event::Lost);
    Ok(())
}

/// How often the connection proves it is alive, and how long it may take: a connection cut without a
/// reset (a partition) is noticed within two of these, which bounds how long a subscriber can miss
/// notifications without knowing.
pub const PING: Duration = Duration::from_secs(5);

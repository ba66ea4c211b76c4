//! The listening connection behind a [`crate::Waker`]: turns notifications into wake-ups, keeps the fleet's
//! membership, runs the draw, forwards a busy winner's share and sends chain notifications.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{stream, StreamExt};
use rand::Rng;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_postgres::{AsyncMessage, Client, NoTls};

use crate::error::{Error, Result};
use crate::fleet::{Fleet, Note, Origin, MEMBERS_CHANNEL};
use crate::home::HomeSlot;
use crate::notify::{bump, Share, Signal, Wake, CHANNEL, MAX_HOPS};

/// `application_name` of members' listening connections, so members can count each other.
pub(crate) const MEMBER_APP: &str = "fathom-listener";
/// `application_name` of observers' listening connections (not counted as members).
pub(crate) const OBSERVER_APP: &str = "fathom-observer";
/// Shortest interval between re-counts of the members by one member.
const RECOUNT_MIN: Duration = Duration::from_secs(30);
/// Fleet-wide gap between re-counts: each member re-counts every `max(RECOUNT_MIN, members × this)`, so
/// the fleet makes about one `pg_stat_activity` query per gap. Join and leave notices keep the count
/// current in between; the re-count only clears members that died without leaving.
const RECOUNT_GAP: Duration = Duration::from_secs(2);

/// State the listener shares with its wakers.
#[derive(Debug)]
pub(crate) struct Common {
    pub fleet: Fleet,
    /// Wakers waiting right now.
    pub idle: AtomicUsize,
    /// Takes part in draws (a worker) rather than observing every notification.
    pub member: bool,
    /// The listening connection while it is up, for a [`crate::Queue`] to claim on
    /// ([`crate::Queue::with_listener`]).
    pub home: Arc<HomeSlot>,
}

/// Requests from wakers to the listening connection.
#[derive(Debug)]
pub(crate) enum Command {
    /// Send this payload on the jobs channel.
    Notify(String),
    /// Leave the fleet and close.
    Leave(oneshot::Sender<()>),
}

/// Why one connection's life ended.
enum Closed {
    /// Left the fleet on request: stop for good.
    Left,
}

pub(crate) async fn listen_forever(
    config: tokio_postgres::Config,
    tx: watch::Sender<Signal>,
    mut commands: mpsc::UnboundedReceiver<Command>,
    common: Arc<Common>,
) {
    let mut backoff = Duration::from_millis(100);
    let mut last_pid = None;
    loop {
        match listen_once(&config, &tx, &mut commands, &common, &mut last_pid).await {
            Ok(Closed::Left) => return,
            Err(err) => {
                tracing::warn!(%err, "job notification listener disconnected; polling meanwhile");
            }
        }
        let (pause, next) = next_backoff(backoff);
        tokio::time::sleep(pause).await;
        backoff = next;
    }
}

/// One notification as the driver hands it over.
pub(crate) struct Message {
    pub channel: String,
    pub payload: String,
    pub sender: i32,
}

/// A connection whose notifications arrive on `notes`; dropping it stops the driver (and closes it).
pub(crate) struct Listening {
    /// Shared: a worker's claims run on it too (see [`HomeSlot`]).
    pub client: Arc<Client>,
    pub notes: mpsc::UnboundedReceiver<Message>,
    driver: tokio::task::JoinHandle<()>,
}

impl Drop for Listening {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// Connects and drives the connection, handing its notifications over; `notes` closes when it ends.
/// Shared by the job wakers and [`crate::Subscription`].
pub(crate) async fn open(config: &tokio_postgres::Config) -> Result<Listening> {
    let (client, mut connection) = config.connect(NoTls).await?;
    let (note_tx, notes) = mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        let mut messages = stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(n)) => {
                    let message = Message {
                        channel: n.channel().to_owned(),
                        payload: n.payload().to_owned(),
                        sender: n.process_id(),
                    };
                    if note_tx.send(message).is_err() {
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
    Ok(Listening {
        client: Arc::new(client),
        notes,
        driver,
    })
}

/// The pause before reconnect attempt after `backoff`, jittered, and the next backoff (doubling to 10 s).
pub(crate) fn next_backoff(backoff: Duration) -> (Duration, Duration) {
    let jitter = rand::rng().random_range(0..=backoff.as_millis() as u64 / 2);
    (
        backoff + Duration::from_millis(jitter),
        (backoff * 2).min(Duration::from_secs(10)),
    )
}

async fn listen_once(
    config: &tokio_postgres::Config,
    tx: &watch::Sender<Signal>,
    commands: &mut mpsc::UnboundedReceiver<Command>,
    common: &Common,
    last_pid: &mut Option<i32>,
) -> Result<Closed> {
    let mut listening = open(config).await?;
    let served = serve(
        &listening.client,
        tx,
        commands,
        common,
        last_pid,
        &mut listening.notes,
    )
    .await;
    common.home.clear();
    served
}

async fn serve(
    client: &Arc<Client>,
    tx: &watch::Sender<Signal>,
    commands: &mut mpsc::UnboundedReceiver<Command>,
    common: &Common,
    last_pid: &mut Option<i32>,
    note_rx: &mut mpsc::UnboundedReceiver<Message>,
) -> Result<Closed> {
    client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
    let mut own = None;
    if common.member {
        // LISTEN before the snapshot: a member joining after it is seen through its notice.
        client
            .batch_execute(&format!("LISTEN {MEMBERS_CHANNEL}"))
            .await?;
        let pid: i32 = client
            .query_one("SELECT pg_backend_pid()", &[])
            .await?
            .try_get(0)?;
        common.fleet.reset(pid, member_pids(client).await?);
        notify(client, MEMBERS_CHANNEL, &format!("join {pid}")).await?;
        if let Some(old) = last_pid.replace(pid) {
            // Our previous connection died: nobody else will tell the fleet.
            notify(client, MEMBERS_CHANNEL, &format!("leave {old}")).await?;
        }
        own = Some(pid);
    }
    // Claims may run here from now on; published before the wake-up below, whose claim uses it.
    common.home.set(Arc::clone(client));
    // Anything enqueued while we were not listening would otherwise wait for a poll.
    let reason = if common.member {
        Wake::Reconnected
    } else {
        Wake::Notified
    };
    bump(tx, reason, Share::Unknown);

    let recount = tokio::time::sleep(recount_interval(common.fleet.size()));
    tokio::pin!(recount);
    loop {
        tokio::select! {
            message = note_rx.recv() => {
                let Some(m) = message else { break };
                if m.channel == MEMBERS_CHANNEL {
                    common.fleet.apply(&m.payload);
                } else if let Some(note) = Note::parse(&m.payload, m.sender) {
                    on_note(client, tx, common, note).await?;
                }
            }
            command = commands.recv() => match command {
                Some(Command::Notify(payload)) => notify(client, CHANNEL, &payload).await?,
                Some(Command::Leave(ack)) => {
                    if let Some(pid) = own {
                        // Best effort: a member that cannot say goodbye is cleared by the next re-count.
                        let _ = notify(client, MEMBERS_CHANNEL, &format!("leave {pid}")).await;
                    }
                    common.fleet.clear();
                    common.home.clear();
                    let _ = ack.send(());
                    return Ok(Closed::Left);
                }
                None => return Ok(Closed::Left),
            },
            _ = &mut recount, if common.member => {
                if let (Some(pid), Ok(pids)) = (own, member_pids(client).await) {
                    common.fleet.reset(pid, pids);
                }
                recount.as_mut().reset(tokio::time::Instant::now() + recount_interval(common.fleet.size()));
            }
        }
    }
    Err(Error::Disconnected("listener connection".into()))
}

/// One member's re-count interval, jittered so members do not re-count together.
fn recount_interval(members: usize) -> Duration {
    let base = RECOUNT_MIN.max(RECOUNT_GAP * u32::try_from(members).unwrap_or(u32::MAX));
    base.mul_f64(rand::rng().random_range(0.5..1.5))
}

async fn member_pids(client: &Client) -> Result<Vec<i32>> {
    let rows = client
        .query(
            "SELECT pid FROM pg_stat_activity \
             WHERE application_name = $1 AND datname = current_database()",
            &[&MEMBER_APP],
        )
        .await?;
    rows.iter()
        .map(|r| r.try_get::<_, i32>(0).map_err(Error::from))
        .collect()
}

async fn notify(client: &Client, channel: &str, payload: &str) -> Result<()> {
    client
        .execute("SELECT pg_notify($1, $2)", &[&channel, &payload])
        .await?;
    Ok(())
}

/// The draw for one job notification.
async fn on_note(
    client: &Client,
    tx: &watch::Sender<Signal>,
    common: &Common,
    note: Note,
) -> Result<()> {
    if !common.member {
        bump(tx, Wake::Notified, Share::Everyone);
        return Ok(());
    }
    let (won, everyone) = common.fleet.draw(&note);
    if !won {
        return Ok(());
    }
    let reason = match (note.origin, note.hops) {
        (_, 1..) => Wake::Forwarded,
        (Origin::Queue, _) => Wake::Notified,
        (Origin::Chained, _) => Wake::Chained,
    };
    if everyone {
        // Every member woke: nobody left to hand work on to.
        bump(tx, reason, Share::Everyone);
        return Ok(());
    }
    if common.idle.load(Ordering::SeqCst) > 0 || note.hops >= MAX_HOPS {
        // The last hop keeps the share even when busy: it claims as soon as a slot frees.
        let share = match note.origin {
            // A chain announces what *may* remain: claim, and chain on if the batch comes back full.
            Origin::Chained => Share::Unknown,
            Origin::Queue => Share::Known(1),
        };
        bump(tx, reason, share);
        return Ok(());
    }
    let forward = Note {
        ready: 1,
        seed: rand::rng().random(),
        origin: note.origin,
        hops: note.hops + 1,
    };
    notify(client, CHANNEL, &forward.payload()).await
}

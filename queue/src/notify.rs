//! Waking idle workers: LISTEN/NOTIFY with a polling fallback, or polling alone behind PgBouncer.
//!
//! Every enqueue statement sends one notification carrying the number of jobs it made ready and a random
//! seed (the insert trigger); release and rescue do the same. Each process keeps one listening connection;
//! a worker claims on it too ([`crate::Queue::with_listener`]), so a wake-up needs no other connection.
//!
//! Herds: a worker process joins the fleet ([`Waker::join`]) and every member computes, from the same
//! membership and the seed, which `ready` members win the draw ([`crate::Fleet`]): one process wakes per
//! job, the others stay asleep and make no query at all. A winner that is busy (no waiter) forwards its
//! share to another draw, up to [`MAX_HOPS`] times. A winner that fills its whole batch while it was one
//! of a subset, or that found work by polling, re-notifies with what may remain, so wake-ups chain only
//! while there is work ([`Waker::claimed`]).
//!
//! Polling: an idle member polls on its turn ([`Waker::wait_idle`]): each member once per
//! `max(poll_interval, members × POLL_GAP)`, turns spread evenly, so the whole fleet polls about once per
//! [`POLL_GAP`] whatever its size and a job whose notification was lost is found within about
//! `max(poll_interval / members, POLL_GAP)` (at most one member's period when members disagree on who
//! listens, e.g. while one joins).
//!
//! Observers ([`Waker::listen`], e.g. the autoscaler) wake on every notification and take no part in
//! draws or turns.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::error::{Error, Result};
use crate::fleet::{Fleet, Note, Origin};
use crate::home::HomeSlot;
use crate::listener::{listen_forever, Command, Common};

/// Channel every job notification goes to.
pub const CHANNEL: &str = "fathom_jobs";
/// Fleet-wide gap between idle polls: the fleet as a whole makes about one idle claim per gap.
pub const POLL_GAP: Duration = Duration::from_secs(1);
/// How often an idle member looks whether the fleet changed while it waits for its turn (no query).
const RECHECK: Duration = Duration::from_secs(1);
/// How many times a busy winner's share is passed on before the last one keeps it for its next free slot.
pub const MAX_HOPS: u8 = 3;

/// Why [`Waker::wait`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// Won the draw for jobs enqueued, released or rescued (an observer: any notification at all).
    Notified,
    /// Won the draw for work a claimer that filled its batch left behind.
    Chained,
    /// Won the draw for a share a busy winner passed on.
    Forwarded,
    /// The listener (re)connected and may have missed notifications meanwhile.
    Reconnected,
    /// The timeout (a member's polling turn) passed.
    Timeout,
}

impl Wake {
    /// Every label, for metrics that start each series at zero.
    pub const LABELS: [&'static str; 5] =
        ["notified", "chained", "forwarded", "reconnected", "poll"];

    /// Low-cardinality label for metrics.
    pub fn label(self) -> &'static str {
        match self {
            Wake::Notified => "notified",
            Wake::Chained => "chained",
            Wake::Forwarded => "forwarded",
            Wake::Reconnected => "reconnected",
            Wake::Timeout => "poll",
        }
    }
}

/// What the listener has delivered so far; waiters compare it with what they saw last.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Signal {
    generation: u64,
    reason: Option<Wake>,
    /// Jobs this process was picked for (its shares of draws that woke a subset), summed.
    share: u64,
    /// Wake-ups with no known number of jobs (reconnects, chains), counted.
    unknown: u64,
    /// Wake-ups that woke every member, counted.
    everyone: u64,
}

/// How much of a wake-up's work is this process's.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Share {
    /// This many jobs, picked for this process alone.
    Known(u64),
    /// Nobody knows how many (a reconnect, a chain's "may remain").
    Unknown,
    /// Every member woke for it.
    Everyone,
}

/// Sends a wake-up with this process's share of its work.
pub(crate) fn bump(tx: &watch::Sender<Signal>, reason: Wake, share: Share) {
    tx.send_modify(|s| {
        s.generation = s.generation.wrapping_add(1);
        s.reason = Some(reason);
        match share {
            Share::Known(n) => s.share = s.share.wrapping_add(n),
            Share::Unknown => s.unknown = s.unknown.wrapping_add(1),
            Share::Everyone => s.everyone = s.everyone.wrapping_add(1),
        }
    });
}

/// What the wake-ups since the last claim asked of the next claim.
#[derive(Debug, Clone, Copy, Default)]
struct Pending {
    share: u64,
    unknown: bool,
    everyone: bool,
}

/// Waits for work. One per process; cheap to clone (clones share the listener).
#[derive(Debug, Clone)]
pub struct Waker {
    signal: watch::Receiver<Signal>,
    shared: Option<Arc<Shared>>,
    seen: Signal,
    pending: Option<Pending>,
}

#[derive(Debug)]
struct Shared {
    task: JoinHandle<()>,
    commands: mpsc::UnboundedSender<Command>,
    common: Arc<Common>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Counts a waiter for as long as it waits: a winner with nobody waiting is busy and forwards.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn enter(idle: &'a AtomicUsize) -> Self {
        idle.fetch_add(1, Ordering::SeqCst);
        Waiting(idle)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Waker {
    /// A worker process: joins the fleet's draws and polling turns. Listens on its own connection to
    /// `database_url` (not pooled: LISTEN is session state), reconnecting with backoff; a reconnect wakes
    /// the waiter since notifications may have been missed meanwhile. Call [`Waker::leave`] at shutdown.
    pub fn join(database_url: &str) -> Result<Waker> {
        Waker::spawn(database_url, true)
    }

    /// An observer: wakes on every notification ([`Wake::Notified`]), takes no part in draws or turns.
    pub fn listen(database_url: &str) -> Result<Waker> {
        Waker::spawn(database_url, false)
    }

    fn spawn(database_url: &str, member: bool) -> Result<Waker> {
        let mut config: tokio_postgres::Config = database_url
            .parse()
            .map_err(|e| Error::Config(format!("database URL: {e}")))?;
        config.application_name(if member {
            crate::listener::MEMBER_APP
        } else {
            crate::listener::OBSERVER_APP
        });
        config.connect_timeout(Duration::from_secs(5));
        let (tx, rx) = watch::channel(Signal::default());
        let (commands, command_rx) = mpsc::unbounded_channel();
        let common = Arc::new(Common {
            fleet: Fleet::default(),
            idle: AtomicUsize::new(0),
            member,
            home: Arc::default(),
        });
        let task = tokio::spawn(listen_forever(config, tx, command_rx, Arc::clone(&common)));
        Ok(Waker {
            signal: rx,
            shared: Some(Arc::new(Shared {
                task,
                commands,
                common,
            })),
            seen: Signal::default(),
            pending: None,
        })
    }

    /// No LISTEN at all: [`Waker::wait`] always sleeps its timeout (PgBouncer transaction mode).
    pub fn poll_only() -> Waker {
        let (_tx, rx) = watch::channel(Signal::default());
        Waker {
            signal: rx,
            shared: None,
            seen: Signal::default(),
            pending: None,
        }
    }

    /// The fleet as this process sees it (a fleet of one without a listener).
    pub fn fleet(&self) -> Fleet {
        self.shared
            .as_ref()
            .map(|s| s.common.fleet.clone())
            .unwrap_or_default()
    }

    /// Where this process's listening connection is published while it is up (`None` for poll-only).
    pub(crate) fn home(&self) -> Option<Arc<HomeSlot>> {
        self.shared.as_ref().map(|s| Arc::clone(&s.common.home))
    }

    /// Waits for a wake-up newer than the last one seen by this handle, or `timeout`.
    pub async fn wait(&mut self, timeout: Duration) -> Wake {
        match self.wait_for(timeout).await {
            Some(wake) => wake,
            None => self.woke(Wake::Timeout),
        }
    }

    /// A wake-up, or `None` once `timeout` passed.
    async fn wait_for(&mut self, timeout: Duration) -> Option<Wake> {
        let Some(shared) = self.shared.clone() else {
            tokio::time::sleep(timeout).await;
            return None;
        };
        let _waiting = Waiting::enter(&shared.common.idle);
        match tokio::time::timeout(timeout, self.signal.changed()).await {
            Ok(Ok(())) => {
                let now = *self.signal.borrow_and_update();
                let pending = Pending {
                    share: now.share.wrapping_sub(self.seen.share),
                    unknown: now.unknown != self.seen.unknown,
                    everyone: now.everyone != self.seen.everyone,
                };
                self.seen = now;
                self.pending = Some(pending);
                Some(now.reason.unwrap_or(Wake::Notified))
            }
            Ok(Err(_)) => {
                // The listener is gone for good (left the fleet): fall back to polling.
                tokio::time::sleep(timeout).await;
                None
            }
            Err(_) => None,
        }
    }

    /// How long this process waits between its own polls when nothing wakes it: `max(poll_interval,
    /// members × POLL_GAP)` for a member, `poll_interval` otherwise (see [`Waker::wait_idle`]).
    pub fn poll_period(&self, poll_interval: Duration) -> Duration {
        match &self.shared {
            Some(s) if s.common.member => {
                let members = u32::try_from(s.common.fleet.size()).unwrap_or(u32::MAX);
                poll_interval.max(POLL_GAP.saturating_mul(members))
            }
            _ => poll_interval,
        }
    }

    /// Waits for a wake-up or this member's next polling turn: each member polls once per
    /// `max(poll_interval, members × POLL_GAP)`, at its own offset (observers and poll-only: every
    /// `poll_interval`). The turn is re-computed when the fleet changes meanwhile.
    pub async fn wait_idle(&mut self, poll_interval: Duration) -> Wake {
        let fleet = match &self.shared {
            Some(s) if s.common.member => s.common.fleet.clone(),
            _ => return self.wait(poll_interval).await,
        };
        let turn = |fleet: &Fleet| {
            let view = (fleet.size(), fleet.rank());
            let due = tokio::time::Instant::now() + fleet.until_turn(POLL_GAP, poll_interval);
            (view, due)
        };
        let (mut view, mut due) = turn(&fleet);
        loop {
            let left = due.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return self.woke(Wake::Timeout);
            }
            // Looks at the fleet again now and then: a turn computed for another fleet size would
            // poll off the fleet's rhythm.
            if let Some(wake) = self.wait_for(left.min(RECHECK)).await {
                return wake;
            }
            if (fleet.size(), fleet.rank()) != view {
                (view, due) = turn(&fleet);
            }
        }
    }

    fn woke(&mut self, wake: Wake) -> Wake {
        self.pending = Some(Pending {
            unknown: true,
            ..Pending::default()
        });
        wake
    }

    /// Reports a claim: `got` of the `asked` jobs. Returns whether to claim again as soon as a slot
    /// frees (more work may be waiting for this process).
    ///
    /// After a wake-up, a full batch may mean work is left. When this process was one of a subset and
    /// took less than its share, or woke without knowing how much (a poll, reconnect or chain), it
    /// notifies with what may remain so another idle process takes it: wake-ups chain only while there
    /// is work. A claim that took exactly its share needs no further claim. Claims made because a job
    /// finished never notify; they only keep claiming while their batches come back full.
    pub fn claimed(&mut self, asked: usize, got: usize) -> bool {
        let full = asked > 0 && got >= asked;
        let Some(pending) = self.pending.take() else {
            return full;
        };
        if !full {
            return false;
        }
        let got = got as u64;
        let (chain, more) = if pending.unknown {
            (got, true)
        } else if pending.everyone {
            (0, true)
        } else {
            (pending.share.saturating_sub(got), false)
        };
        if chain > 0 {
            self.send(Note {
                ready: chain,
                seed: rand::rng().random(),
                origin: Origin::Chained,
                hops: 0,
            });
        }
        more
    }

    fn send(&self, note: Note) {
        if let Some(shared) = &self.shared {
            // A listener that is down drops it; the polling turns find the work instead.
            let _ = shared.commands.send(Command::Notify(note.payload()));
        }
    }

    /// Leaves the fleet (shutdown): the others stop picking this process at once, and the listener
    /// closes. Later waits only poll.
    pub async fn leave(&self) {
        let Some(shared) = &self.shared else { return };
        let (ack, done) = oneshot::channel();
        if shared.commands.send(Command::Leave(ack)).is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(2), done).await;
        }
    }
}

//! The listening fleet as each process sees it: who listens, this process's rank, who wins a wake-up and
//! when it is this process's turn to poll or run maintenance.
//!
//! Every member keeps the same sorted set of listener backend pids (a snapshot of `pg_stat_activity` plus
//! join/leave notices on [`MEMBERS_CHANNEL`]), so every member computes the same answer to "which ranks does
//! this notification wake?" without a round trip. A notification for `ready` jobs carries a random seed and
//! wakes the `ready` ranks following it: one process per job, not a herd. The same ranks spread periodic
//! work: with `n` members, member `r` takes turn `r` of `n` evenly spaced turns per period, so the fleet
//! as a whole polls (or rescues) once per turn gap whatever its size.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::Rng;

/// Channel of membership notices (`join PID`, `leave PID`); only members listen to it.
pub const MEMBERS_CHANNEL: &str = "fathom_listeners";

/// What a notification on the jobs channel says: `READY [SEED [TAG]]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Note {
    /// Jobs it announces.
    pub ready: u64,
    /// Picks the first woken rank; the notifying backend's pid when the payload has none.
    pub seed: u64,
    /// Who sent it first.
    pub origin: Origin,
    /// How many busy winners passed it on so far.
    pub hops: u8,
}

/// Who sent a notification first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// An enqueue, release or rescue statement: `READY` jobs are new.
    Queue,
    /// A claimer that filled its batch: up to `READY` jobs may remain (tag `c`).
    Chained,
}

impl Note {
    /// Reads a payload; `None` for one that is not a number of jobs (ignored).
    pub fn parse(payload: &str, sender_pid: i32) -> Option<Note> {
        let mut parts = payload.split_whitespace();
        let ready = parts.next()?.parse().ok()?;
        let seed = parts
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or(u64::from(sender_pid.unsigned_abs()));
        let tag = parts.next().unwrap_or("");
        let (origin, hops) = match tag.split_at(tag.len().min(1)) {
            ("c", hops) => (Origin::Chained, hops),
            ("f", hops) => (Origin::Queue, hops),
            _ => (Origin::Queue, ""),
        };
        Some(Note {
            ready,
            seed,
            origin,
            hops: hops.parse().unwrap_or(0),
        })
    }

    /// The payload for this note.
    pub fn payload(&self) -> String {
        let hops = if self.hops > 0 {
            self.hops.to_string()
        } else {
            String::new()
        };
        match (self.origin, self.hops) {
            (Origin::Queue, 0) => format!("{} {}", self.ready, self.seed),
            (Origin::Queue, _) => format!("{} {} f{hops}", self.ready, self.seed),
            (Origin::Chained, _) => format!("{} {} c{hops}", self.ready, self.seed),
        }
    }
}

/// Whether the member of rank `rank` among `size` wins the draw for `ready` jobs seeded with `seed`:
/// exactly `min(ready, size)` ranks do, the `ready` ones following `seed % size`.
pub(crate) fn chosen(rank: usize, size: usize, seed: u64, ready: u64) -> bool {
    if size == 0 || ready >= size as u64 {
        return true;
    }
    let size = size as u64;
    let first = seed % size;
    let distance = (rank as u64 + size - first) % size;
    distance < ready
}

/// How long until rank `rank` of `size` takes its next turn, when each member takes one turn per period
/// `max(own_min, size × fleet_gap)` and the members' turns are evenly spaced across it (so the fleet as a
/// whole takes a turn every `max(own_min / size, fleet_gap)`). Turns are aligned to the wall clock so
/// every member agrees on them without talking. `now` is seconds since the Unix epoch.
pub(crate) fn turn_delay(
    rank: usize,
    size: usize,
    fleet_gap: Duration,
    own_min: Duration,
    now: f64,
) -> Duration {
    let size = size.max(1);
    let period = own_min
        .as_secs_f64()
        .max(size as f64 * fleet_gap.as_secs_f64());
    if period <= 0.0 {
        return Duration::ZERO;
    }
    let offset = period * (rank % size) as f64 / size as f64;
    let mut delay = (offset - now).rem_euclid(period);
    // A turn due within half a fleet gap was most likely just taken: the caller came back from it, and
    // the wall clock turns are measured on may run a little behind the timer that woke it.
    if delay < period / size as f64 / 2.0 {
        delay += period;
    }
    Duration::from_secs_f64(delay)
}

/// The members this process knows of, and itself. Cheap to clone (shared).
#[derive(Debug, Clone, Default)]
pub struct Fleet {
    inner: Arc<Mutex<Members>>,
}

#[derive(Debug, Default)]
struct Members {
    pids: BTreeSet<i32>,
    own: Option<i32>,
}

impl Fleet {
    fn lock(&self) -> MutexGuard<'_, Members> {
        // Every update is a single set operation: a panic elsewhere cannot leave it half-done.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many listening members this process counts (1 when it is not a member itself).
    pub fn size(&self) -> usize {
        self.lock().pids.len().max(1)
    }

    /// This process's rank among the members, 0 when it is not one.
    pub fn rank(&self) -> usize {
        let m = self.lock();
        m.own
            .and_then(|own| m.pids.iter().position(|p| *p == own))
            .unwrap_or(0)
    }

    /// How long until this process's next turn in a rotation where the fleet together takes one turn per
    /// `fleet_gap` and no member more than one per `own_min` (see [`turn_delay`]).
    pub fn until_turn(&self, fleet_gap: Duration, own_min: Duration) -> Duration {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        if self.lock().own.is_none() {
            // Not a member (poll-only, or the listener is down): nobody to take turns with, and a
            // wall-clock turn would put every such process in lockstep. A jittered interval instead.
            let period = own_min.max(fleet_gap);
            return period.mul_f64(rand::rng().random_range(0.5..1.5));
        }
        let (rank, size) = (self.rank(), self.size());
        turn_delay(rank, size, fleet_gap, own_min, now)
    }

    /// Whether this process wins the draw for `note` (and whether the note wakes everyone).
    pub(crate) fn draw(&self, note: &Note) -> (bool, bool) {
        let (rank, size) = (self.rank(), self.size());
        let everyone = note.ready >= size as u64;
        (chosen(rank, size, note.seed, note.ready), everyone)
    }

    /// Starts over from a snapshot of the listeners, this process's own pid among them.
    pub(crate) fn reset(&self, own: i32, pids: impl IntoIterator<Item = i32>) {
        let mut m = self.lock();
        m.pids = pids.into_iter().collect();
        m.pids.insert(own);
        m.own = Some(own);
    }

    /// Applies a `join PID` / `leave PID` notice.
    pub(crate) fn apply(&self, notice: &str) {
        let mut parts = notice.split_whitespace();
        let (Some(verb), Some(Ok(pid))) = (parts.next(), parts.next().map(str::parse::<i32>))
        else {
            return;
        };
        let mut m = self.lock();
        match verb {
            "join" => {
                m.pids.insert(pid);
            }
            // Our own leave is applied too: after leaving we no longer take turns or win draws.
            "leave" => {
                m.pids.remove(&pid);
                if m.own == Some(pid) {
                    m.own = None;
                }
            }
            _ => {}
        }
    }

    /// Forgets every member (the listener is gone): turns fall back to one member's schedule.
    pub(crate) fn clear(&self) {
        let mut m = self.lock();
        m.pids.clear();
        m.own = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_draw_wakes_exactly_ready_ranks_for_any_seed() {
        for size in [1usize, 2, 7, 60, 1000] {
            for seed in [0u64, 1, 59, 12345, u64::MAX] {
                for ready in [1u64, 2, 5] {
                    let winners = (0..size).filter(|r| chosen(*r, size, seed, ready)).count();
                    assert_eq!(
                        winners as u64,
                        ready.min(size as u64),
                        "{size} {seed} {ready}"
                    );
                }
            }
        }
    }

    #[test]
    fn different_seeds_pick_different_ranks() {
        let winner = |seed| (0..100).find(|r| chosen(*r, 100, seed, 1));
        assert_eq!(winner(3), Some(3));
        assert_eq!(winner(103), Some(3));
        assert_eq!(winner(42), Some(42));
    }

    #[test]
    fn turns_of_a_fleet_are_evenly_spaced_one_gap_apart() {
        let gap = Duration::from_secs(1);
        let own = Duration::from_secs(5);
        let now = 1_000_000.25;
        // 60 members: each polls every 60 s, the fleet once a second.
        let mut due: Vec<f64> = (0..60)
            .map(|r| turn_delay(r, 60, gap, own, now).as_secs_f64())
            .collect();
        due.sort_by(f64::total_cmp);
        assert!(due.iter().all(|d| *d > 0.0 && *d <= 60.0));
        for pair in due.windows(2) {
            assert!((pair[1] - pair[0] - 1.0).abs() < 1e-6, "{pair:?}");
        }
    }

    #[test]
    fn a_small_fleet_keeps_each_members_own_interval() {
        // Two members, own interval 5 s: each every 5 s, the fleet every 2.5 s.
        let d0 = turn_delay(0, 2, Duration::from_secs(1), Duration::from_secs(5), 100.0);
        let d1 = turn_delay(1, 2, Duration::from_secs(1), Duration::from_secs(5), 100.0);
        assert!((d0.as_secs_f64() - 5.0).abs() < 1e-9, "{d0:?}");
        assert!((d1.as_secs_f64() - 2.5).abs() < 1e-9, "{d1:?}");
    }

    #[test]
    fn notes_round_trip_and_old_payloads_still_parse() {
        for origin in [Origin::Queue, Origin::Chained] {
            for hops in [0, 2] {
                let note = Note {
                    ready: 3,
                    seed: 77,
                    origin,
                    hops,
                };
                assert_eq!(Note::parse(&note.payload(), 9), Some(note));
            }
        }
        let old = Note::parse("4", 321).expect("bare count");
        assert_eq!(
            (old.ready, old.seed, old.origin, old.hops),
            (4, 321, Origin::Queue, 0)
        );
        assert_eq!(Note::parse("join 5", 1), None);
    }

    #[test]
    fn membership_follows_join_and_leave_notices() {
        let fleet = Fleet::default();
        fleet.reset(20, [10, 30]);
        assert_eq!((fleet.size(), fleet.rank()), (3, 1));
        fleet.apply("join 5");
        assert_eq!((fleet.size(), fleet.rank()), (4, 2));
        fleet.apply("leave 10");
        fleet.apply("leave nonsense");
        assert_eq!((fleet.size(), fleet.rank()), (3, 1));
        fleet.apply("leave 20");
        assert_eq!(fleet.rank(), 0);
    }
}

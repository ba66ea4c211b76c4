//! Table tests for `scale_on: work`: the load figure, and every existing rule applied to it unchanged.

use std::time::{Duration, Instant};

use crate::decision::{
    decide, DecisionState, Override, Policy, QueueSnapshot, Reason, ScaleOn, WorkPolicy,
    WorkSnapshot,
};

const MB: u64 = 1_000_000;
const GB: u64 = 1_000_000_000;

fn policy() -> Policy {
    Policy {
        jobs_per_replica: 4,
        max_replicas: 20,
        max_scale_up_step: 100,
        scale_down_stabilization: Duration::from_secs(60),
        scale_to_zero_cooldown: Duration::from_secs(120),
        work: WorkPolicy {
            scale_on: ScaleOn::Work,
            target_drain: Duration::from_secs(30),
            throughput_floor: 20 * MB,
            ..WorkPolicy::default()
        },
        ..Policy::default()
    }
}

/// 50 finished cached jobs of 0.5 s and 10 cold ones fetching 100 MB in 10.5 s each (0.5 s per job plus
/// 10 MB/s per slot, 40 MB/s per replica of 4).
fn learned() -> WorkSnapshot {
    WorkSnapshot {
        recent_cached_jobs: 50,
        recent_cached_ms: 25_000,
        recent_cold_jobs: 10,
        recent_cold_bytes: 1_000 * MB,
        recent_cold_ms: 105_000,
        ..WorkSnapshot::default()
    }
}

/// One observation: jobs (queued, running), their work, the replicas running; and what must be decided.
struct Step {
    at_s: u64,
    queued: u64,
    running: u64,
    work: WorkSnapshot,
    current: u32,
    ov: Override,
    want: u32,
    reason: Reason,
}

fn step(at_s: u64, queued: u64, running: u64, work: WorkSnapshot, current: u32) -> Step {
    Step {
        at_s,
        queued,
        running,
        work,
        current,
        ov: Override::None,
        want: 0,
        reason: Reason::Steady,
    }
}

impl Step {
    fn want(mut self, want: u32, reason: Reason) -> Step {
        self.want = want;
        self.reason = reason;
        self
    }

    fn ov(mut self, ov: Override) -> Step {
        self.ov = ov;
        self
    }
}

fn run(name: &str, policy: &Policy, steps: Vec<Step>) {
    let t0 = Instant::now();
    let mut state = DecisionState::default();
    for (i, s) in steps.iter().enumerate() {
        let snap = QueueSnapshot {
            queued: s.queued,
            running: s.running,
            oldest_queued_age: (s.queued > 0).then_some(Duration::ZERO),
            work: s.work,
        };
        let now = t0 + Duration::from_secs(s.at_s);
        let d = decide(policy, &snap, s.current, s.ov, &mut state, now);
        assert_eq!(
            (d.desired, d.reason),
            (s.want, s.reason),
            "case {name}, step {i} (t={}s): {}",
            s.at_s,
            d.message
        );
    }
}

fn cached(queued: u64, running: u64) -> WorkSnapshot {
    WorkSnapshot {
        queued_cached: queued,
        running_cached: running,
        ..learned()
    }
}

fn cold(queued_bytes: u64, running_bytes: u64) -> WorkSnapshot {
    WorkSnapshot {
        queued_bytes,
        running_bytes,
        ..learned()
    }
}

#[test]
fn the_load_figure_follows_bytes_time_and_what_is_unknown() {
    // The figure over the whole drain time (what the start-up adds is tested below).
    let p = instant_start();
    // (what, jobs queued, jobs running, work, replicas by work, by jobs)
    let cases = [
        // 200 cached re-analyses: 200 × 0.5 s = 100 slot-s / (4 × 30 s) → 1, where jobs ask for 50.
        ("cached rescan", 200, 0, cached(200, 0), 1, 50),
        // 1,000 of them: 500 slot-s → 5.
        ("big cached rescan", 1000, 0, cached(1000, 0), 5, 250),
        // Three cold 2 GB images: 3 × 0.5 s + 6 GB at 10 MB/s per slot = 601.5 slot-s → 6, where jobs
        // ask for 1.
        ("cold large", 3, 0, cold(6 * GB, 0), 6, 1),
        // A claimed job stays on its slot, so within the drain time it takes that slot at most however
        // many bytes it has left: three running cold images → 3 slot-drains → 1.
        ("cold running", 0, 3, cold(0, 6 * GB), 1, 1),
        // The same three, waiting: any slot may take them → 6.
        ("cold waiting", 3, 0, cold(6 * GB, 0), 6, 1),
        // Jobs nothing is known about cost a slot for the whole drain: exactly what jobs asks for.
        (
            "unknown",
            40,
            0,
            WorkSnapshot {
                queued_unknown: 40,
                ..learned()
            },
            10,
            10,
        ),
        // Never fewer slots than jobs in flight: 8 running cached jobs keep 2 replicas.
        ("in flight", 0, 8, cached(0, 8), 2, 2),
        // One tiny job still needs a replica.
        ("tiny", 1, 0, cold(1, 0), 1, 1),
        ("empty", 0, 0, learned(), 0, 0),
    ];
    for (what, queued, running, work, by_work, by_jobs) in cases {
        let snap = QueueSnapshot {
            queued,
            running,
            oldest_queued_age: None,
            work,
        };
        let f = crate::decision::WorkFigures::of(&p, &snap, 0);
        assert_eq!(
            (f.replicas_by_work, f.replicas_by_jobs),
            (by_work, by_jobs),
            "{what}: {f:?}"
        );
    }
}

#[test]
fn the_floor_stands_in_until_enough_cold_jobs_finished() {
    let p = instant_start();
    let mut work = WorkSnapshot {
        queued_bytes: 6 * GB,
        recent_cold_jobs: 4,
        recent_cold_bytes: 400 * MB,
        recent_cold_ms: 48_000,
        ..WorkSnapshot::default()
    };
    let snap = |work: WorkSnapshot| QueueSnapshot {
        queued: if work.queued_cached > 0 {
            work.queued_cached
        } else {
            3
        },
        work,
        ..QueueSnapshot::default()
    };
    // Floor: 20 MB/s per replica = 5 MB/s per slot; 3 × 2 s (the default per-job time) + 1,200 slot-s
    // → 11 replicas.
    let f = crate::decision::WorkFigures::of(&p, &snap(work), 0);
    assert!(!f.throughput_learned);
    assert_eq!((f.throughput_bytes_per_s, f.replicas_by_work), (20e6, 11));
    // The fifth finished job: 60 s for 5 jobs, 10 s of it per-job time, 500 MB in the other 50 s:
    // learned, 10 MB/s per slot = 40 MB/s per replica → 606 slot-s → 6.
    work.recent_cold_jobs = 5;
    work.recent_cold_bytes = 500 * MB;
    work.recent_cold_ms = 60_000;
    let f = crate::decision::WorkFigures::of(&p, &snap(work), 0);
    assert!(f.throughput_learned);
    assert_eq!((f.throughput_bytes_per_s, f.replicas_by_work), (40e6, 6));
    // Cached jobs: 2 s each until five were measured.
    let few = WorkSnapshot {
        queued_cached: 120,
        recent_cached_jobs: 4,
        recent_cached_ms: 400,
        ..WorkSnapshot::default()
    };
    let f = crate::decision::WorkFigures::of(&p, &snap(few), 0);
    assert_eq!((f.cached_job_s, f.replicas_by_work), (2.0, 2));
}

#[test]
fn a_cached_rescan_stays_small_and_drains_through_the_window() {
    run(
        "cached rescan",
        &policy(),
        vec![
            // 100 slot-s: from zero each replica works 20 of the 30 s drain → 2.
            step(0, 200, 0, cached(200, 0), 0).want(2, Reason::Burst),
            // One would do now, but jobs still wait: the window holds the 2.
            step(10, 180, 4, cached(180, 4), 2).want(2, Reason::Stabilized),
            // Nothing waits: the replicas asked for this short work have done it and go at once...
            step(20, 0, 4, cached(0, 4), 2).want(1, Reason::Drain),
            // ...the one that ran the last jobs is held through the window (60 s), as under jobs...
            step(30, 0, 0, cached(0, 0), 1).want(1, Reason::Stabilized),
            // ...then the cooldown (120 s since the queue emptied) keeps it...
            step(100, 0, 0, cached(0, 0), 1).want(1, Reason::Cooldown),
            step(150, 0, 0, cached(0, 0), 1).want(0, Reason::Idle),
        ],
    );
}

#[test]
fn cold_images_scale_out_stabilize_and_obey_every_rule() {
    let p = Policy {
        max_scale_up_step: 4,
        activation_queued: 2,
        activation_age: Duration::from_secs(30),
        ..policy()
    };
    run(
        "cold",
        &p,
        vec![
            // From zero two cold images do not activate (≤ 2 queued)...
            step(0, 2, 0, cold(4 * GB, 0), 0).want(0, Reason::BelowActivation),
            // ...a third does; the step limit holds the 11 asked for (1,201.5 slot-s) at 4.
            step(1, 3, 0, cold(12 * GB, 0), 0).want(4, Reason::Burst),
            step(11, 3, 0, cold(12 * GB, 0), 4).want(8, Reason::Burst),
            step(21, 3, 0, cold(12 * GB, 0), 8).want(11, Reason::Burst),
            // Claimed, they take one slot each (1 replica), but this is not short work: the window
            // holds the count as under jobs...
            step(30, 0, 3, cold(0, 12 * GB), 11).want(11, Reason::Stabilized),
            // ...until the last recommendation of 11 leaves it (t=81); the 1 asked for while they ran
            // is still in the window then.
            step(40, 0, 0, cold(0, 0), 11).want(11, Reason::Stabilized),
            step(82, 0, 0, cold(0, 0), 11).want(1, Reason::Drain),
            // A pin wins over work, whatever the queue says.
            step(90, 3, 0, cold(12 * GB, 0), 1)
                .ov(Override::Pinned(2))
                .want(2, Reason::Pinned),
            step(91, 3, 0, cold(12 * GB, 0), 2)
                .ov(Override::Paused)
                .want(2, Reason::Paused),
        ],
    );
}

#[test]
fn min_and_max_bound_the_work_count() {
    let p = Policy {
        min_replicas: 2,
        max_replicas: 6,
        ..policy()
    };
    run(
        "bounds",
        &p,
        vec![
            step(0, 3, 0, cold(12 * GB, 0), 2).want(6, Reason::Burst),
            step(100, 1, 0, cached(1, 0), 6).want(2, Reason::Drain),
        ],
    );
}

#[test]
fn the_message_names_the_work_and_the_rate() {
    let p = policy();
    let snap = QueueSnapshot {
        queued: 203,
        running: 0,
        oldest_queued_age: Some(Duration::ZERO),
        work: WorkSnapshot {
            queued_bytes: 6 * GB,
            queued_cached: 200,
            ..learned()
        },
    };
    let d = decide(
        &p,
        &snap,
        0,
        Override::None,
        &mut DecisionState::default(),
        Instant::now(),
    );
    assert_eq!(
        d.message,
        "burst: work: 203 jobs × 0.5s + 6.0 GB queued + 0 B running at 40 MB/s per replica (learned) \
         → 702 slot-seconds / (4 per replica × 30s drain, 10s start-up) → 9 (by jobs: 51)"
    );
    // 702 / 120 → 6 over the whole drain; from zero each replica works 20 s of it → 9.
    assert_eq!(d.desired, 9);
}

#[test]
fn a_line_through_jobs_of_different_sizes_gives_per_job_time_and_rate() {
    // Ten 10 MB jobs of 0.6 s and ten 750 MB jobs of 30.2 s: 0.2 s per job + 25 MB/s per slot.
    let mut w = WorkSnapshot::default();
    for (kb, ms) in [(10_000u64, 600u64), (750_000, 30_200)] {
        w.recent_cold_jobs += 10;
        w.recent_cold_bytes += 10 * kb * 1000;
        w.recent_cold_ms += 10 * ms;
        w.recent_sum_kb += 10 * kb;
        w.recent_sum_kb2 += 10 * kb * kb;
        w.recent_sum_kb_ms += 10 * kb * ms;
    }
    w.queued_bytes = 1000 * 10 * MB;
    let snap = QueueSnapshot {
        queued: 1000,
        work: w,
        ..QueueSnapshot::default()
    };
    let f = crate::decision::WorkFigures::of(&policy(), &snap, 0);
    assert!(f.throughput_learned);
    assert!((f.cached_job_s - 0.2).abs() < 1e-6, "{f:?}");
    assert!((f.throughput_bytes_per_s - 100e6).abs() < 1.0, "{f:?}");
    // 1,000 × (0.2 s + 0.4 s) = 600 slot-s: 5 replicas over the 30 s drain, but from zero each works
    // only the 20 s after its start-up → 8.
    assert_eq!(f.replicas_by_work, 8);
}

/// The policy without a start-up delay: replicas work the whole drain time.
fn instant_start() -> Policy {
    let mut p = policy();
    p.work.replica_startup = Duration::ZERO;
    p
}

#[test]
fn replicas_started_now_work_only_the_rest_of_the_drain_time() {
    // (what, jobs queued, work, replicas running, by work with the 10 s start-up, without one)
    let cases = [
        // 600 cached jobs: 300 slot-s. The running replica covers 120 of them within the 30 s; the
        // other 180 need replicas that work 20 s each: 180 / 80 → 3 more. Without a start-up, 3 in all.
        ("short work, one running", 600, cached(600, 0), 1, 4, 3),
        // From zero every replica starts late: 300 / 80 → 4.
        ("short work, from zero", 600, cached(600, 0), 0, 4, 3),
        // Enough running already: there is no start-up to make up for.
        ("short work, enough running", 600, cached(600, 0), 3, 3, 3),
        // Three cold jobs of 30.5 s: more slots than jobs never finish them sooner.
        ("long jobs", 3, cold(900 * MB, 0), 0, 1, 1),
        // Three cold 2 GB images keep their count by work (601.5 slot-s → 6).
        ("cold large", 3, cold(6 * GB, 0), 0, 6, 6),
    ];
    for (what, queued, work, current, want, without) in cases {
        let snap = QueueSnapshot {
            queued,
            work,
            ..QueueSnapshot::default()
        };
        let f = crate::decision::WorkFigures::of(&policy(), &snap, current);
        assert_eq!(f.replicas_by_work, want, "{what}: {f:?}");
        let g = crate::decision::WorkFigures::of(&instant_start(), &snap, current);
        assert_eq!(
            g.replicas_by_work, without,
            "{what} without start-up: {g:?}"
        );
    }
}

#[test]
fn replicas_for_short_work_go_once_nothing_waits() {
    run(
        "short work done",
        &policy(),
        vec![
            step(0, 600, 0, cached(600, 0), 1).want(4, Reason::Burst),
            // 152 slot-s left: 2 would do, but jobs still wait, so the window holds the 4...
            step(10, 300, 4, cached(300, 4), 4).want(4, Reason::Stabilized),
            // ...until nothing waits: the last jobs run on one replica, the idle ones go at once.
            step(20, 0, 4, cached(0, 4), 4).want(1, Reason::Drain),
        ],
    );
    // Work that asks for more replicas than jobs (cold images) is held through the window as under
    // `scale_on: jobs`: see `cold_images_scale_out_stabilize_and_obey_every_rule`.
}

//! Simulator tests: the mechanics (removal order, kills, accounting) and the headline comparisons.

use super::*;

fn worker(ready_at: u64, jobs: &[(usize, u64)]) -> Worker {
    Worker {
        ready_at,
        jobs: jobs.to_vec(),
        draining_since: None,
        freed_at: Vec::new(),
    }
}

#[test]
fn fathom_removes_starting_and_idle_workers_before_busy_ones() {
    let mut ws = vec![
        worker(0, &[(1, 50), (2, 60)]),
        worker(0, &[]),
        worker(100, &[]),
        worker(0, &[(3, 40)]),
    ];
    // Three to go: the starting one, the idle one, then the least busy drains.
    assert_eq!(remove_idle_first(&mut ws, 3, 10), 0);
    assert_eq!(ws.len(), 2);
    assert_eq!(ws[0].jobs.len(), 2);
    assert!(ws[0].draining_since.is_none());
    assert_eq!(ws[1].draining_since, Some(10));
    assert_eq!(ws[1].jobs, vec![(3, 40)]);
}

#[test]
fn baseline_removal_kills_busy_pods_and_requeues_their_jobs() {
    let mut ws = vec![
        worker(0, &[(1, 50_000), (2, 60_000)]),
        worker(0, &[(3, 40_000)]),
    ];
    let mut queue = VecDeque::from([9]);
    let mut rng = fastrand::Rng::with_seed(1);
    let killed = remove_random(&mut ws, 2, 10, &mut rng, &mut queue);
    assert_eq!(killed, 3);
    assert!(ws.is_empty());
    assert_eq!(queue.len(), 4);
    assert_eq!(queue.back(), Some(&9), "killed jobs go back to the front");
}

#[test]
fn fathom_never_kills_busy_workers_and_finishes_every_trace() {
    let cfg = SimConfig::default();
    for trace in Trace::all() {
        for policy in [SimPolicy::fathom(&cfg), SimPolicy::fathom_work(&cfg)] {
            let r = simulate(&trace, &cfg, &policy);
            assert_eq!(r.killed_busy, 0, "{r}");
            assert_eq!(r.jobs_done, trace.arrivals.len(), "{r}");
            // The rescan's jobs of milliseconds are done before a twentieth replica could start, so
            // its peak is never needed (never reached); every other trace reaches its peak.
            if policy == SimPolicy::fathom(&cfg) && !trace.name.starts_with("rescan") {
                assert!(r.time_to_scale_s.is_some(), "{r}");
            }
        }
    }
}

#[test]
fn fathom_scales_a_burst_faster_and_cheaper_than_the_baseline() {
    let cfg = SimConfig::default();
    let trace = Trace::burst();
    let ours = simulate(&trace, &cfg, &SimPolicy::fathom(&cfg));
    let keda = simulate(&trace, &cfg, &SimPolicy::keda(&cfg));
    assert_eq!(keda.jobs_done, trace.arrivals.len(), "{keda}");
    let (a, b) = (
        ours.time_to_scale_s.unwrap_or(u64::MAX),
        keda.time_to_scale_s.unwrap_or(u64::MAX),
    );
    assert!(a < b, "{ours}\n{keda}");
    assert!(ours.wait_p95_s < keda.wait_p95_s, "{ours}\n{keda}");
}

#[test]
fn replica_minutes_count_every_provisioned_second() {
    // One job: fathom activates one worker at once, keeps it through the cooldown, then drops to zero.
    let cfg = SimConfig::default();
    let trace = Trace {
        name: "one",
        arrivals: vec![0],
        duration_s: 1000,
        work: Vec::new(),
    };
    let r = simulate(&trace, &cfg, &SimPolicy::fathom(&cfg));
    assert_eq!(r.jobs_done, 1);
    assert_eq!(r.wait_p95_s, cfg.startup_s);
    assert_eq!(r.scale_events, 2, "{r}");
    // Up at 0, job done at 40, idle from 40; stabilization (120 s) then cooldown (300 s idle) → 0 at 340.
    assert!((r.replica_minutes - 340.0 / 60.0).abs() < 0.02, "{r}");
}

#[test]
fn runs_are_reproducible_and_print_the_contract_line() {
    let cfg = SimConfig::default();
    let trace = Trace::sine();
    let a = simulate(&trace, &cfg, &SimPolicy::keda(&cfg));
    let b = simulate(&trace, &cfg, &SimPolicy::keda(&cfg));
    assert_eq!(a, b);
    let line = a.to_string();
    let keys: Vec<&str> = line
        .split(' ')
        .map(|kv| kv.split('=').next().unwrap_or(""))
        .collect();
    assert_eq!(
        keys,
        [
            "autoscale",
            "trace",
            "policy",
            "time_to_scale_s",
            "wait_p95_s",
            "replica_minutes",
            "scale_events",
            "killed_busy"
        ]
    );
    assert!(
        line.starts_with("autoscale trace=sine policy=keda "),
        "{line}"
    );
}
#[test]
fn sine_load_is_followed_without_flapping() {
    // Seven 10-minute load cycles: one rise and one fall each, so at most 2 reversals per cycle.
    let cfg = SimConfig::default();
    let r = simulate(&Trace::sine(), &cfg, &SimPolicy::fathom(&cfg));
    assert!(r.reversals <= 14, "{r}: {} reversals", r.reversals);
    assert!(
        r.reversals >= 10,
        "{r}: does not follow the load ({} reversals)",
        r.reversals
    );
}

#[test]
fn every_policy_finishes_every_trace_and_prints_its_name() {
    let cfg = SimConfig::default();
    let names: Vec<&str> = SimPolicy::all(&cfg).iter().map(SimPolicy::name).collect();
    assert_eq!(names, ["fathom", "fathom-work", "keda", "keda-cached"]);
    for trace in Trace::all() {
        for policy in SimPolicy::all(&cfg) {
            let r = simulate(&trace, &cfg, &policy);
            assert_eq!(r.jobs_done, trace.arrivals.len(), "{r}");
            assert!(
                r.to_string()
                    .contains(&format!(" policy={} ", policy.name())),
                "{r}"
            );
        }
    }
}

#[test]
fn cached_metrics_never_scale_a_warm_burst_sooner() {
    // With one replica up there is no activation: the fresh HPA reacts at its next sync, the cached one
    // only after the next poll has refreshed the value it reads.
    let cfg = SimConfig::default();
    let trace = Trace::burst_warm();
    let fresh = simulate(&trace, &cfg, &SimPolicy::keda(&cfg));
    let cached = simulate(&trace, &cfg, &SimPolicy::keda_cached(&cfg));
    let (f, c) = (
        fresh.time_to_scale_s.unwrap_or(u64::MAX),
        cached.time_to_scale_s.unwrap_or(u64::MAX),
    );
    assert!(f < c, "{fresh}\n{cached}");
    assert!(fresh.wait_p95_s <= cached.wait_p95_s, "{fresh}\n{cached}");
}

/// `cargo test -p fathom-autoscaler --lib print_every_line -- --ignored --nocapture`: the bench's lines
/// from a debug build, for iterating without the release build of the whole workspace.
#[test]
#[ignore]
fn print_every_line() {
    let cfg = SimConfig::default();
    for trace in Trace::all() {
        for policy in SimPolicy::all(&cfg) {
            let r = simulate(&trace, &cfg, &policy);
            println!("{r} est={} fetched={}", r.estimated_bytes, r.fetched_bytes);
        }
    }
}

#[test]
fn a_slot_freed_mid_second_claims_the_next_job_at_once() {
    // One slot, ten 600 ms jobs at t=0: back to back they take 6 s (the worker is ready at t=1). A slot
    // that idled until the next whole second after each job crossing one would take 10 s.
    let cfg = SimConfig {
        jobs_per_replica: 1,
        startup_s: 0,
        max_replicas: 1,
        overhead_ms: 600,
        ..SimConfig::default()
    };
    let trace = Trace {
        name: "short",
        arrivals: vec![0; 10],
        duration_s: 60,
        work: vec![
            Some(JobWork {
                own_bytes: 0,
                shared: None,
            });
            10
        ],
    };
    let r = simulate(&trace, &cfg, &SimPolicy::fathom(&cfg));
    assert_eq!(r.jobs_done, 10, "{r}");
    // The last job starts at 1 s + 9 × 0.6 s = 6.4 s.
    assert_eq!(r.wait_p95_s, 7, "{r}");
}

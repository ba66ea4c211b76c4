//! Table tests of the KEDA baseline: each row is one second the simulator would ask about.

use super::*;

/// Feeds `(t, depth)` steps to a fresh model starting at `current` replicas, applying each answer as the
/// next step's replica count (as the simulator does), and returns the answers.
fn run(cfg: KedaConfig, mut current: u32, steps: &[(u64, u64)]) -> Vec<u32> {
    let mut k = Keda::new(cfg);
    steps
        .iter()
        .map(|&(t, depth)| {
            current = k.desired(t, depth, current);
            current
        })
        .collect()
}

/// The defaults with syncs on the poll ticks (phase 0), so the tables read on round numbers.
fn fresh() -> KedaConfig {
    KedaConfig {
        sync_phase_s: 0,
        ..KedaConfig::defaults(4, 20)
    }
}

/// [`fresh`] with `useCachedMetrics`.
fn cached() -> KedaConfig {
    KedaConfig {
        sync_phase_s: 0,
        ..KedaConfig::cached(4, 20)
    }
}

#[test]
fn defaults_are_the_documented_ones() {
    let c = KedaConfig::defaults(4, 20);
    assert_eq!((c.poll_s, c.cooldown_s, c.activation), (30, 300, 0));
    assert_eq!(c.sync_phase_s, 7);
    assert_eq!((c.sync_s, c.stabilization_s), (15, 300));
    assert_eq!(
        (c.scale_up_percent, c.scale_up_pods, c.scale_up_period_s),
        (100, 4, 15)
    );
    assert!((c.tolerance - 0.1).abs() < f64::EPSILON);
    assert!(!c.use_cached_metrics);
    assert!(cached().use_cached_metrics);
}

#[test]
fn activation_happens_only_at_a_poll_and_above_the_activation_value() {
    // Jobs arrive at t=1; seconds 1..29 (sync ticks included) stay at zero, the poll at 30 activates.
    let steps = [(0, 0), (1, 240), (15, 240), (29, 240), (30, 240)];
    for cfg in [fresh(), cached()] {
        assert_eq!(run(cfg, 0, &steps), [0, 0, 0, 0, 1]);
    }
    // "Greater than", not "greater than or equal to": depth 5 with activation 5 stays at zero.
    let cfg = KedaConfig {
        activation: 5,
        ..fresh()
    };
    assert_eq!(run(cfg, 0, &[(0, 5), (30, 5), (60, 6)]), [0, 0, 1]);
}

#[test]
fn one_to_n_follows_the_fresh_metric_and_the_cached_variant_lags_to_the_poll() {
    // Cold: 4 jobs activate at 30, 40 are there from 31 on.
    let steps = [(0, 0), (15, 4), (30, 4), (45, 40), (60, 40), (75, 40)];
    assert_eq!(run(fresh(), 0, &steps), [0, 0, 1, 5, 10, 10]);
    assert_eq!(run(cached(), 0, &steps), [0, 0, 1, 1, 5, 10]);
    // Warm: one replica runs 2 jobs; 240 more land at 7 s, between polls and between syncs.
    let steps = [(0, 2), (7, 242), (15, 242), (30, 242), (45, 242), (60, 242)];
    assert_eq!(run(fresh(), 1, &steps), [1, 1, 5, 10, 20, 20]);
    assert_eq!(run(cached(), 1, &steps), [1, 1, 1, 5, 10, 20]);
}

#[test]
fn with_the_default_phase_each_sync_falls_7_s_after_a_poll_tick() {
    // Cold: activation at the poll (30), first HPA sync at 37, then every 15 s.
    let steps = [(30, 240), (37, 240), (45, 240), (52, 240), (67, 240)];
    assert_eq!(
        run(KedaConfig::defaults(4, 20), 0, &steps),
        [1, 5, 5, 10, 20]
    );
    // Warm: the burst is there at 15; the fresh HPA acts at 22, the cached one at 37 (after the 30 poll).
    let steps = [(0, 2), (7, 2), (15, 242), (22, 242), (30, 242), (37, 242)];
    assert_eq!(
        run(KedaConfig::defaults(4, 20), 1, &steps),
        [1, 1, 1, 5, 5, 10]
    );
    assert_eq!(
        run(KedaConfig::cached(4, 20), 1, &steps),
        [1, 1, 1, 1, 1, 5]
    );
}

#[test]
fn scale_up_is_capped_by_the_larger_policy() {
    // (current, depth, max replicas, one sync's answer): max(2 × current, current + 4), then max.
    let rows = [
        (1, 240, 20, 5),
        (2, 240, 20, 6),
        (4, 240, 20, 8),
        (5, 240, 20, 10),
        (8, 240, 20, 16),
        (12, 240, 20, 20),
        (12, 1000, 100, 24),
        (3, 20, 20, 5), // the metric asks for less than the policy allows
    ];
    for (current, depth, max, want) in rows {
        let got = run(fresh_with_max(max), current, &[(15, depth)]);
        assert_eq!(got, [want], "current {current}, depth {depth}");
    }
}

fn fresh_with_max(max: u32) -> KedaConfig {
    KedaConfig {
        max_replicas: max,
        ..fresh()
    }
}

#[test]
fn the_policy_counts_from_the_replicas_at_the_start_of_its_period() {
    // Syncs every 5 s against a 15 s period: after 1 → 5 at 5, nothing more until 5 leaves the period.
    let cfg = KedaConfig {
        sync_s: 5,
        ..fresh()
    };
    let steps = [(5, 240), (10, 240), (15, 240), (20, 240), (25, 240)];
    assert_eq!(run(cfg, 1, &steps), [5, 5, 5, 10, 10]);
}

#[test]
fn tolerance_keeps_the_count_near_the_target() {
    // 10 replicas × 4 = 40: within ±10 % nothing moves (the exact edges are left to float rounding).
    let rows = [(43, 10), (45, 12), (37, 10), (40, 10)];
    for (depth, want) in rows {
        assert_eq!(run(fresh(), 10, &[(15, depth)]), [want], "depth {depth}");
    }
}

#[test]
fn scale_down_is_held_by_the_stabilization_window() {
    // 20 recommended at 0; from 30 on only 1 is: the window keeps 20 until the 0 s sample leaves it.
    let steps = [(0, 80), (30, 4), (285, 4), (300, 4)];
    for cfg in [fresh(), cached()] {
        assert_eq!(run(cfg, 20, &steps), [20, 20, 20, 1]);
    }
    // A new HPA seeds its window with the current count: no drop at its first sync either.
    assert_eq!(run(fresh(), 10, &[(15, 4), (30, 4)]), [10, 10]);
}

#[test]
fn zero_comes_at_a_poll_strictly_after_the_cooldown() {
    // Last active at 0; the HPA holds at its minimum of 1; KEDA goes to zero at the first poll after 300.
    let steps = [(0, 4), (15, 0), (285, 0), (300, 0), (315, 0), (330, 0)];
    assert_eq!(run(fresh(), 1, &steps), [1, 1, 1, 1, 1, 0]);
    // Activity in between restarts the cooldown.
    let steps = [(0, 4), (270, 4), (300, 0), (570, 0), (600, 0)];
    assert_eq!(run(fresh(), 1, &steps), [1, 1, 1, 1, 0]);
}

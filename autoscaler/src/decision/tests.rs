//! Table tests for the decision core: each case is a timed sequence of observations and expected outcomes.

use super::*;

/// One observation and what the decision must be.
struct Step {
    at_s: u64,
    queued: u64,
    running: u64,
    age_s: Option<u64>,
    current: u32,
    ov: Override,
    want: u32,
    reason: Reason,
}

fn step(at_s: u64, queued: u64, running: u64, current: u32, want: u32, reason: Reason) -> Step {
    Step {
        at_s,
        queued,
        running,
        age_s: None,
        current,
        ov: Override::None,
        want,
        reason,
    }
}

fn policy() -> Policy {
    Policy {
        jobs_per_replica: 4,
        min_replicas: 0,
        max_replicas: 20,
        activation_queued: 2,
        activation_age: Duration::from_secs(30),
        max_scale_up_step: 100,
        scale_up_period: Duration::from_secs(10),
        scale_down_stabilization: Duration::from_secs(60),
        scale_to_zero_cooldown: Duration::from_secs(120),
        ..Default::default()
    }
}

fn run(name: &str, policy: &Policy, steps: &[Step]) {
    let t0 = Instant::now();
    let mut state = DecisionState::default();
    for (i, s) in steps.iter().enumerate() {
        let snap = QueueSnapshot {
            queued: s.queued,
            running: s.running,
            oldest_queued_age: s.age_s.map(Duration::from_secs),
            ..Default::default()
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
        assert_eq!(d.current, s.current);
    }
}

#[test]
fn burst_is_capped_at_max_and_says_so() {
    let p = policy();
    let mut state = DecisionState::default();
    let snap = QueueSnapshot {
        queued: 240,
        running: 0,
        oldest_queued_age: Some(Duration::ZERO),
        ..Default::default()
    };
    let d = decide(&p, &snap, 4, Override::None, &mut state, Instant::now());
    assert_eq!(d.desired, 20);
    assert_eq!(d.reason, Reason::Burst);
    assert_eq!(
        d.message,
        "burst: 240 queued + 0 running / 4 per replica → 60, capped at max 20"
    );
    assert!(d.changes());
    assert_eq!(d.direction(), "up");
}

#[test]
fn burst_is_limited_by_the_step_per_period() {
    let p = Policy {
        max_scale_up_step: 8,
        ..policy()
    };
    run(
        "step",
        &p,
        &[
            step(0, 240, 0, 0, 8, Reason::Burst),
            // Within the period the base is still 0, so no more than 8.
            step(5, 240, 0, 8, 8, Reason::Burst),
            step(10, 232, 8, 8, 16, Reason::Burst),
            step(20, 200, 40, 16, 20, Reason::Burst),
            step(30, 150, 80, 20, 20, Reason::Steady),
        ],
    );
}

#[test]
fn drain_waits_for_the_stabilization_window_then_cooldown_then_zero() {
    run(
        "drain",
        &policy(),
        &[
            step(0, 60, 20, 20, 20, Reason::Steady),
            step(10, 0, 20, 20, 20, Reason::Stabilized),
            step(30, 0, 8, 20, 20, Reason::Stabilized),
            step(59, 0, 8, 20, 20, Reason::Stabilized),
            // t=60: the 20 recommended at t=0 left the window; the highest left is 5 (t=10).
            step(60, 0, 8, 20, 5, Reason::Drain),
            step(71, 0, 8, 5, 2, Reason::Drain),
            // Queue empty from t=100, but 2 is still within the window.
            step(100, 0, 0, 2, 2, Reason::Stabilized),
            // t=135: the window holds only zeros → target 0, but idle only 35 s of the 120 s cooldown.
            step(135, 0, 0, 2, 1, Reason::Cooldown),
            step(219, 0, 0, 1, 1, Reason::Cooldown),
            step(220, 0, 0, 1, 0, Reason::Idle),
            step(230, 0, 0, 0, 0, Reason::Steady),
        ],
    );
}

#[test]
fn spike_then_idle_scales_up_at_once_and_down_slowly() {
    run(
        "spike",
        &policy(),
        &[
            step(0, 0, 0, 0, 0, Reason::Steady),
            step(5, 40, 0, 0, 10, Reason::Burst),
            step(10, 0, 40, 10, 10, Reason::Steady),
            step(40, 0, 0, 10, 10, Reason::Stabilized),
            step(70, 0, 0, 10, 1, Reason::Cooldown),
            step(160, 0, 0, 1, 0, Reason::Idle),
        ],
    );
}

impl Step {
    fn with_age(mut self, age_s: u64) -> Self {
        self.age_s = Some(age_s);
        self
    }
    fn with_override(mut self, ov: Override) -> Self {
        self.ov = ov;
        self
    }
}

#[test]
fn sine_load_does_not_flap() {
    // Demand oscillates between 2 and 18 replicas' worth with a 40 s period; polls every 5 s.
    let p = policy();
    let t0 = Instant::now();
    let mut state = DecisionState::default();
    let mut current = 0u32;
    let mut changes = Vec::new();
    for tick in 0..120u64 {
        let t = tick * 5;
        let phase = (t as f64) * std::f64::consts::TAU / 40.0;
        let demand = (40.0 + 32.0 * phase.sin()).round() as u64;
        let snap = QueueSnapshot {
            queued: demand / 2,
            running: demand - demand / 2,
            oldest_queued_age: None,
            ..Default::default()
        };
        let d = decide(
            &p,
            &snap,
            current,
            Override::None,
            &mut state,
            t0 + Duration::from_secs(t),
        );
        if d.desired != current {
            changes.push((t, current, d.desired, d.message.clone()));
            current = d.desired;
        }
    }
    // Up to the peak once, then held there: the 60 s window always contains a peak.
    assert_eq!(current, 18, "{changes:#?}");
    assert!(changes.len() <= 3, "flapping: {changes:#?}");
    assert!(
        changes.windows(2).all(|w| w[1].2 > w[0].2),
        "went down under oscillating load: {changes:#?}"
    );
}

#[test]
fn min_and_max_bound_the_load_recommendation() {
    let p = Policy {
        min_replicas: 2,
        max_replicas: 5,
        ..policy()
    };
    run(
        "minmax",
        &p,
        &[
            step(0, 0, 0, 0, 2, Reason::Burst),
            step(1, 100, 0, 2, 5, Reason::Burst),
            step(2, 100, 0, 5, 5, Reason::Steady),
            step(100, 0, 0, 5, 2, Reason::Drain),
            step(400, 0, 0, 2, 2, Reason::Steady),
        ],
    );
    // Above max (max was lowered): down to max at once, as the window holds nothing higher.
    let mut state = DecisionState::default();
    let snap = QueueSnapshot {
        queued: 100,
        running: 0,
        oldest_queued_age: None,
        ..Default::default()
    };
    let d = decide(&p, &snap, 9, Override::None, &mut state, Instant::now());
    assert_eq!((d.desired, d.reason), (5, Reason::Drain), "{}", d.message);
    assert!(d.message.contains("capped at max 5"), "{}", d.message);
}

#[test]
fn activation_needs_enough_jobs_or_an_old_one() {
    run(
        "activation",
        &policy(),
        &[
            step(0, 1, 0, 0, 0, Reason::BelowActivation),
            step(5, 2, 0, 0, 0, Reason::BelowActivation).with_age(29),
            // Old enough: one waiting job is not stranded.
            step(10, 2, 0, 0, 1, Reason::Burst).with_age(30),
            // Once running, the activation threshold no longer applies.
            step(15, 1, 1, 1, 1, Reason::Steady),
        ],
    );
    run(
        "activation-count",
        &policy(),
        &[step(0, 3, 0, 0, 1, Reason::Burst)],
    );
}

#[test]
fn zero_replicas_and_empty_queue_stay_at_zero() {
    run(
        "zero",
        &policy(),
        &[
            step(0, 0, 0, 0, 0, Reason::Steady),
            step(500, 0, 0, 0, 0, Reason::Steady),
        ],
    );
    // With min_replicas > 0 the activation threshold does not apply: min is always honoured.
    let p = Policy {
        min_replicas: 1,
        ..policy()
    };
    run("zero-min1", &p, &[step(0, 1, 0, 0, 1, Reason::Burst)]);
}

#[test]
fn override_pins_exactly_and_wins_over_min_max_and_load() {
    run(
        "override",
        &policy(),
        &[
            step(0, 400, 0, 3, 25, Reason::Pinned).with_override(Override::Pinned(25)),
            step(5, 0, 0, 25, 0, Reason::Pinned).with_override(Override::Pinned(0)),
            // Cleared at 0 replicas with an empty queue: nothing to do.
            step(10, 0, 0, 0, 0, Reason::Steady),
            step(11, 0, 0, 7, 7, Reason::Pinned).with_override(Override::Pinned(7)),
            // Cleared with current 7: stabilized from the pins, not dropped at once.
            step(12, 0, 0, 7, 7, Reason::Stabilized),
        ],
    );
}

#[test]
fn pause_keeps_current_and_never_writes() {
    let p = policy();
    let mut state = DecisionState::default();
    let snap = QueueSnapshot {
        queued: 1000,
        running: 0,
        oldest_queued_age: None,
        ..Default::default()
    };
    let d = decide(&p, &snap, 3, Override::Paused, &mut state, Instant::now());
    assert_eq!((d.desired, d.reason), (3, Reason::Paused));
    assert!(!d.changes());
    run(
        "pause",
        &p,
        &[
            step(0, 0, 0, 9, 9, Reason::Paused).with_override(Override::Paused),
            // Resumed with an empty queue: the paused count is in the window, so it drains slowly.
            step(30, 0, 0, 9, 9, Reason::Stabilized),
            step(61, 0, 0, 9, 1, Reason::Cooldown),
        ],
    );
}

#[test]
fn policy_validation_names_the_field() {
    let err = Policy {
        jobs_per_replica: 0,
        ..policy()
    }
    .validate()
    .unwrap_err();
    assert!(err.to_string().contains("jobs_per_replica"), "{err}");
    let err = Policy {
        min_replicas: 9,
        max_replicas: 3,
        ..policy()
    }
    .validate()
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("min_replicas 9 is above max_replicas 3"),
        "{err}"
    );
    assert!(Policy::default().validate().is_ok());
}

#[test]
fn huge_queue_does_not_overflow() {
    let p = policy();
    let mut state = DecisionState::default();
    let snap = QueueSnapshot {
        queued: u64::MAX,
        running: u64::MAX,
        oldest_queued_age: None,
        ..Default::default()
    };
    let d = decide(&p, &snap, 1, Override::None, &mut state, Instant::now());
    assert_eq!(d.desired, 20);
}

#[test]
fn snapshot_json_gives_the_age_in_seconds() {
    let snap = QueueSnapshot {
        queued: 3,
        running: 1,
        oldest_queued_age: Some(Duration::from_millis(2500)),
        ..Default::default()
    };
    let json = serde_json::to_string(&snap).unwrap();
    assert!(
        json.starts_with(
            r#"{"queued":3,"running":1,"oldest_queued_age":2.5,"work":{"queued_bytes":0,"#
        ),
        "{json}"
    );
    assert_eq!(serde_json::from_str::<QueueSnapshot>(&json).unwrap(), snap);
    // A status file written before work was counted still reads.
    let old = r#"{"queued":3,"running":1,"oldest_queued_age":2.5}"#;
    assert_eq!(serde_json::from_str::<QueueSnapshot>(old).unwrap(), snap);
    let bad =
        serde_json::from_str::<QueueSnapshot>(r#"{"queued":0,"running":0,"oldest_queued_age":-1}"#);
    assert!(bad.is_err());
}

#[test]
fn reason_all_lists_every_variant_once_in_order() {
    for (i, reason) in Reason::ALL.iter().enumerate() {
        // Exhaustive on purpose: a new variant fails to compile here until it is added to ALL.
        let position = match reason {
            Reason::Pinned => 0,
            Reason::Paused => 1,
            Reason::Burst => 2,
            Reason::Steady => 3,
            Reason::Drain => 4,
            Reason::Stabilized => 5,
            Reason::Cooldown => 6,
            Reason::Idle => 7,
            Reason::BelowActivation => 8,
        };
        assert_eq!(i, position, "{reason:?}");
    }
}

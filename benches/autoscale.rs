//! `cargo bench --bench autoscale`: replays load traces against fathom's decision core (`scale_on: jobs`
//! and `scale_on: work`) and the KEDA + HPA baseline (fresh metrics, and `useCachedMetrics`) on the same
//! simulated fleet, one contract line per trace and policy, then one line per trace with the work
//! estimate's error, and for `rescan-on-load` (the rescan landing on a background of standard jobs) one line
//! per policy splitting its replica-minutes into what the background alone costs it and what the burst
//! added. The simulator itself (and its tests) live in
//! `fathom_autoscaler::sim`.

use fathom_autoscaler::sim::{simulate, SimConfig, SimPolicy, Trace};

fn main() {
    let cfg = SimConfig::default();
    for trace in Trace::all() {
        let mut estimate = None;
        for policy in SimPolicy::all(&cfg) {
            let report = simulate(&trace, &cfg, &policy);
            println!("{report}");
            if report.policy == "fathom-work" {
                estimate = Some((report.estimated_bytes, report.fetched_bytes));
            }
        }
        if trace.name == "rescan-on-load" {
            let background = trace.background();
            for policy in SimPolicy::all(&cfg) {
                let all = simulate(&trace, &cfg, &policy).replica_minutes;
                let floor = simulate(&background, &cfg, &policy).replica_minutes;
                println!(
                    "autoscale-floor trace={} policy={} background_replica_minutes={floor:.1} \
                     burst_replica_minutes={:.1}",
                    trace.name,
                    policy.name(),
                    all - floor
                );
            }
        }
        if let Some((estimated, fetched)) = estimate {
            let error = if fetched == 0 {
                0.0
            } else {
                (estimated as f64 / fetched as f64 - 1.0) * 100.0
            };
            println!(
                "autoscale-estimate trace={} estimated_gb={:.1} fetched_gb={:.1} error_pct={error:+.1}",
                trace.name,
                estimated as f64 / 1e9,
                fetched as f64 / 1e9
            );
        }
    }
}

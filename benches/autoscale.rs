//! `cargo bench --bench autoscale`: replays load traces against fathom's decision core and the KEDA + HPA
//! baseline (fresh metrics, and `useCachedMetrics`) on the same simulated fleet, one contract line per trace
//! and policy. The simulator itself (and its tests) live in `fathom_autoscaler::sim`.

use fathom_autoscaler::sim::{simulate, SimConfig, SimPolicy, Trace};

fn main() {
    let cfg = SimConfig::default();
    for trace in Trace::all() {
        for policy in SimPolicy::all(&cfg) {
            println!("{}", simulate(&trace, &cfg, &policy));
        }
    }
}

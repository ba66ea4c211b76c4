//! The series every role's `/metrics` carries about the process itself: when it started (so a restart is
//! visible even in a process that crashes before it does any work) and who it is (role, version, pod).
//!
//! `process_start_time_seconds` is the standard name Prometheus' client libraries use, so generic
//! dashboards read it too; `fathom_build_info{role, version, pod}` tells fathom's processes from the others
//! that export it, and carries a `pod` label the process sets itself (`POD_NAME`, else the host name and
//! pid) for scrapes that do not add one (anything but Kubernetes service discovery). Rules join on it:
//! `... * on (job, instance) group_left (pod, role) fathom_build_info`.

use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus::{Gauge, IntGaugeVec, Opts, Registry};

static STARTED: OnceLock<f64> = OnceLock::new();

/// Records the process start time; `main` calls it first, so the time is the process's, not the first
/// registration's.
pub fn mark_started() {
    STARTED.get_or_init(now);
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Registers `process_start_time_seconds` and `fathom_build_info` for `role` (`core`, `worker`,
/// `autoscaler`, `policy-engine`) in `registry`.
pub fn register(registry: &Registry, role: &str) -> prometheus::Result<()> {
    let started = Gauge::new(
        "process_start_time_seconds",
        "Start time of the process since the Unix epoch, in seconds",
    )?;
    started.set(*STARTED.get_or_init(now));
    let info = IntGaugeVec::new(
        Opts::new(
            "fathom_build_info",
            "Always 1: the process's role, version and pod (POD_NAME, else host-pid)",
        ),
        &["role", "version", "pod"],
    )?;
    info.with_label_values(&[
        role,
        env!("CARGO_PKG_VERSION"),
        &fathom_worker::job::worker_id(),
    ])
    .set(1);
    registry.register(Box::new(started))?;
    registry.register(Box::new(info))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{mark_started, register};

    #[test]
    fn exports_the_start_time_and_who_the_process_is() {
        mark_started();
        let registry = prometheus::Registry::new();
        register(&registry, "worker").unwrap();
        let mut text = String::new();
        prometheus::TextEncoder::new()
            .encode_utf8(&registry.gather(), &mut text)
            .unwrap();
        let started: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix("process_start_time_seconds "))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no start time in:\n{text}"));
        assert!(started > 1.7e9, "{text}");
        assert!(
            text.contains("fathom_build_info{pod=") && text.contains("role=\"worker\""),
            "{text}"
        );
        // Registered twice in one registry is a programming error the caller hears about.
        assert!(register(&registry, "worker").is_err());
    }
}

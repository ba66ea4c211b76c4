//! `services.autoscaler`: what the autoscaler scales, its policy and its loop. The policy keys are
//! [`Policy`]'s fields: their defaults and range checks live once, in [`crate::decision`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use fathom_config::ConfigError;

use crate::decision::{Policy, ScaleOn, WorkPolicy};

/// What the autoscaler scales.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AutoscalerTarget {
    /// The analyzer Deployment, through its scale subresource.
    #[default]
    Kubernetes,
    /// `fathom worker` processes spawned on this machine.
    Local,
}

impl std::str::FromStr for AutoscalerTarget {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "kubernetes" => Ok(AutoscalerTarget::Kubernetes),
            "local" => Ok(AutoscalerTarget::Local),
            other => Err(format!("{other:?} is not kubernetes or local")),
        }
    }
}

/// `services.autoscaler`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AutoscalerServiceConfig {
    /// Whether `fathom run` starts it.
    pub enabled: bool,
    /// `kubernetes` or `local`.
    pub target: AutoscalerTarget,
    /// Rounds run at least this often; enqueue notifications trigger one at once.
    #[serde(with = "fathom_config::duration")]
    pub poll_interval: Duration,
    /// Log decisions without writing replicas or pod annotations (Kubernetes target).
    pub dry_run: bool,
    /// Listen address of the autoscaler's `/metrics`, `/healthz`, `/readyz` and `/status`.
    pub metrics_address: String,
    /// Lowest replica count (0 allows scale-to-zero).
    pub min_replicas: u32,
    /// Highest replica count.
    pub max_replicas: u32,
    /// Jobs one replica works on at once; defaults to `services.analyzer.concurrency`.
    pub jobs_per_replica: Option<u32>,
    /// From zero replicas, scale up only when more than this many jobs are queued...
    pub activation_queued: u64,
    /// ...or once the oldest queued job has waited this long.
    #[serde(with = "fathom_config::duration")]
    pub activation_age: Duration,
    /// At most this many replicas added per `scale_up_period`.
    pub max_scale_up_step: u32,
    /// The period of `max_scale_up_step`.
    #[serde(with = "fathom_config::duration")]
    pub scale_up_period: Duration,
    /// Scale down only to the highest recommendation seen within this window.
    #[serde(with = "fathom_config::duration")]
    pub scale_down_stabilization: Duration,
    /// The queue must have been empty this long before scaling to zero.
    #[serde(with = "fathom_config::duration")]
    pub scale_to_zero_cooldown: Duration,
    /// Namespace of the Deployment (default: `POD_NAMESPACE`, else `default`).
    pub namespace: Option<String>,
    /// Name of the analyzer Deployment.
    pub deployment: String,
    /// Elect a leader through a Lease so several autoscaler replicas are safe.
    pub leader_election: bool,
    /// Name of that Lease (default: the Deployment's name + `-autoscaler`).
    pub lease_name: Option<String>,
    /// Local target: directory of the override file (`override.json`) and the last round's status
    /// (`status.json`, read by `fathom scale status`). Default: `$TMPDIR/fathom-autoscaler`.
    pub state_dir: Option<PathBuf>,
    /// Local target: how long a stopped worker may take to drain before it is killed (keep it above the
    /// worker's own `services.analyzer.drain_timeout`).
    #[serde(with = "fathom_config::duration")]
    pub drain_timeout: Duration,
    /// Local target: configuration file handed to each worker as `--config`.
    pub worker_config: Option<PathBuf>,
    /// What counts as load: `jobs` (queued + running jobs) or `work` (their uncached bytes).
    pub scale_on: ScaleOn,
    /// `scale_on: work`: enough replicas to finish the waiting work within this long.
    #[serde(with = "fathom_config::duration")]
    pub target_drain_time: Duration,
    /// `scale_on: work`: bytes per second one busy replica is assumed to analyze until finished jobs
    /// have taught the autoscaler the real figure.
    pub throughput_floor: u64,
    /// `scale_on: work`: how long a replica asked for takes to claim jobs (scheduling, image pull,
    /// start-up); replicas added now work only the rest of the drain time.
    #[serde(with = "fathom_config::duration")]
    pub replica_startup: Duration,
}

impl Default for AutoscalerServiceConfig {
    fn default() -> Self {
        let p = Policy::default();
        AutoscalerServiceConfig {
            enabled: false,
            target: AutoscalerTarget::Kubernetes,
            poll_interval: Duration::from_secs(5),
            dry_run: false,
            metrics_address: "0.0.0.0:9465".into(),
            min_replicas: p.min_replicas,
            max_replicas: p.max_replicas,
            jobs_per_replica: None,
            activation_queued: p.activation_queued,
            activation_age: p.activation_age,
            max_scale_up_step: p.max_scale_up_step,
            scale_up_period: p.scale_up_period,
            scale_down_stabilization: p.scale_down_stabilization,
            scale_to_zero_cooldown: p.scale_to_zero_cooldown,
            namespace: None,
            deployment: "fathom-analyzer".into(),
            leader_election: true,
            lease_name: None,
            state_dir: None,
            drain_timeout: Duration::from_secs(60),
            worker_config: None,
            scale_on: p.work.scale_on,
            target_drain_time: p.work.target_drain,
            throughput_floor: p.work.throughput_floor,
            replica_startup: p.work.replica_startup,
        }
    }
}

const KEY: &str = "services.autoscaler";

impl AutoscalerServiceConfig {
    /// Checks ranges serde cannot, naming the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |k: &str, m: String| Err(ConfigError::new(format!("{KEY}.{k}"), m));
        if self.poll_interval < Duration::from_millis(100) {
            return err("poll_interval", "must be at least 100ms".into());
        }
        if self.scale_up_period.is_zero() {
            return err("scale_up_period", "must be greater than 0".into());
        }
        // The analyzer's concurrency stands in for an unset jobs_per_replica: it is checked there.
        self.policy(1).validate().map_err(|e| match e {
            crate::Error::InvalidPolicy { field, why } => {
                ConfigError::new(format!("{KEY}.{field}"), why)
            }
            other => ConfigError::new(KEY, other.to_string()),
        })?;
        if self.drain_timeout.is_zero() {
            return err("drain_timeout", "must be greater than 0".into());
        }
        self.metrics_address.parse::<SocketAddr>().map_err(|e| {
            ConfigError::new(
                format!("{KEY}.metrics_address"),
                format!("not HOST:PORT ({e})"),
            )
        })?;
        for (k, v) in [
            ("deployment", Some(&self.deployment)),
            ("namespace", self.namespace.as_ref()),
            ("lease_name", self.lease_name.as_ref()),
        ] {
            if let Some(v) = v {
                if !is_dns_label(v) {
                    return err(
                        k,
                        format!("{v:?} is not a Kubernetes name (lowercase letters, digits, '-')"),
                    );
                }
            }
        }
        Ok(())
    }

    /// The decision policy; `analyzer_concurrency` is the jobs per replica when `jobs_per_replica` is unset.
    pub fn policy(&self, analyzer_concurrency: usize) -> Policy {
        Policy {
            jobs_per_replica: self
                .jobs_per_replica
                .unwrap_or_else(|| u32::try_from(analyzer_concurrency).unwrap_or(u32::MAX)),
            min_replicas: self.min_replicas,
            max_replicas: self.max_replicas,
            activation_queued: self.activation_queued,
            activation_age: self.activation_age,
            max_scale_up_step: self.max_scale_up_step,
            scale_up_period: self.scale_up_period,
            scale_down_stabilization: self.scale_down_stabilization,
            scale_to_zero_cooldown: self.scale_to_zero_cooldown,
            work: WorkPolicy {
                scale_on: self.scale_on,
                target_drain: self.target_drain_time,
                throughput_floor: self.throughput_floor,
                replica_startup: self.replica_startup,
            },
        }
    }

    /// The namespace: configured, else `POD_NAMESPACE`, else `default`.
    pub fn namespace_or_default(&self) -> String {
        self.namespace
            .clone()
            .filter(|n| !n.is_empty())
            .or_else(|| {
                std::env::var("POD_NAMESPACE")
                    .ok()
                    .filter(|n| !n.trim().is_empty())
            })
            .unwrap_or_else(|| "default".into())
    }

    /// The Lease name: configured, else `<deployment>-autoscaler`.
    pub fn lease_name_or_default(&self) -> String {
        self.lease_name
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| format!("{}-autoscaler", self.deployment))
    }

    /// The local state directory: configured, else `$TMPDIR/fathom-autoscaler`.
    pub fn state_dir_or_default(&self) -> PathBuf {
        self.state_dir
            .clone()
            .unwrap_or_else(|| std::env::temp_dir().join("fathom-autoscaler"))
    }
}

/// RFC 1123 label, the shape of namespace, Deployment and Lease names (at most 63 characters).
fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The section as `services.autoscaler` of a file, with `env` as the only environment.
    fn load(text: &str, env: &[(&str, &str)]) -> Result<Wrapper, ConfigError> {
        let mut root = fathom_config::parse_yaml(Some(text), "test.yaml")?;
        let keys = fathom_config::env::keys(&Wrapper::default(), &[])?;
        let set = fathom_config::env::overlay(&mut root, &keys, &[], |k| {
            env.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        })?;
        let w: Wrapper = fathom_config::deserialize(root, "test.yaml", &set)?;
        w.services.autoscaler.validate()?;
        Ok(w)
    }

    #[derive(Debug, Default, Serialize, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct Wrapper {
        services: Services,
    }

    #[derive(Debug, Default, Serialize, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct Services {
        autoscaler: AutoscalerServiceConfig,
    }

    #[test]
    fn reads_every_key_and_env_overrides_them() {
        let c = load(
            "services:\n  autoscaler:\n    enabled: true\n    target: local\n    poll_interval: 2s\n    \
             dry_run: true\n    metrics_address: '127.0.0.1:1'\n    min_replicas: 1\n    max_replicas: 9\n    \
             jobs_per_replica: 3\n    activation_queued: 5\n    activation_age: 1m\n    max_scale_up_step: 2\n    \
             scale_up_period: 20s\n    scale_down_stabilization: 30s\n    scale_to_zero_cooldown: 90s\n    \
             namespace: ns\n    deployment: dep\n    leader_election: false\n    lease_name: lease\n    \
             state_dir: /s\n    drain_timeout: 45s\n    worker_config: /w.yaml\n    scale_on: work\n    \
             target_drain_time: 45s\n    throughput_floor: 1000\n    replica_startup: 20s\n",
            &[("FATHOM_SERVICES_AUTOSCALER_MAX_REPLICAS", "12"), ("FATHOM_SERVICES_AUTOSCALER_TARGET", "kubernetes"),
              ("FATHOM_SERVICES_AUTOSCALER_THROUGHPUT_FLOOR", "5000000")],
        )
        .unwrap();
        let a = &c.services.autoscaler;
        assert!(a.enabled && a.dry_run && !a.leader_election);
        assert_eq!(a.target, AutoscalerTarget::Kubernetes);
        assert_eq!(a.max_replicas, 12);
        assert_eq!(
            (a.min_replicas, a.jobs_per_replica, a.activation_queued),
            (1, Some(3), 5)
        );
        assert_eq!(a.activation_age, Duration::from_secs(60));
        assert_eq!(a.scale_to_zero_cooldown, Duration::from_secs(90));
        assert_eq!(a.namespace_or_default(), "ns");
        assert_eq!(a.lease_name_or_default(), "lease");
        assert_eq!(a.state_dir_or_default(), PathBuf::from("/s"));
        assert_eq!(
            a.worker_config.as_deref(),
            Some(std::path::Path::new("/w.yaml"))
        );
        let work = a.policy(4).work;
        assert_eq!(work.scale_on, ScaleOn::Work);
        assert_eq!(work.target_drain, Duration::from_secs(45));
        assert_eq!(work.throughput_floor, 5_000_000);
        assert_eq!(work.replica_startup, Duration::from_secs(20));
    }

    #[test]
    fn defaults_derive_from_the_deployment() {
        let a = AutoscalerServiceConfig::default();
        assert_eq!(a.lease_name_or_default(), "fathom-analyzer-autoscaler");
        assert_eq!(a.target, AutoscalerTarget::Kubernetes);
        a.validate().unwrap();
    }

    #[test]
    fn invalid_values_name_the_key() {
        for (text, key) in [
            ("{max_replicas: 0}", "max_replicas"),
            ("{min_replicas: 5, max_replicas: 2}", "min_replicas"),
            ("{jobs_per_replica: 0}", "jobs_per_replica"),
            ("{max_scale_up_step: 0}", "max_scale_up_step"),
            ("{poll_interval: 1ms}", "poll_interval"),
            ("{metrics_address: here}", "metrics_address"),
            ("{deployment: Not_A_Name}", "deployment"),
            ("{target: cloud}", "target"),
            ("{cooldown: 1s}", "cooldown"),
            ("{scale_on: bytes}", "scale_on"),
            ("{target_drain_time: 0s}", "target_drain_time"),
            ("{throughput_floor: 0}", "throughput_floor"),
        ] {
            let e = load(&format!("services: {{autoscaler: {text}}}"), &[]).unwrap_err();
            let want = if key.is_empty() {
                KEY.to_string()
            } else {
                format!("{KEY}.{key}")
            };
            assert_eq!(e.key, want, "{text}: {e}");
        }
        let e = load("", &[("FATHOM_SERVICES_AUTOSCALER_MIN_REPLICAS", "few")]).unwrap_err();
        assert_eq!(e.key, "services.autoscaler.min_replicas");
        assert!(
            e.message
                .contains("FATHOM_SERVICES_AUTOSCALER_MIN_REPLICAS"),
            "{e}"
        );
    }
}

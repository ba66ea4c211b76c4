//! Leader election on a `coordination.k8s.io/v1` Lease, so two autoscaler replicas never both write.
//!
//! Like client-go's leader election, expiry is judged on this process's own clock: a Lease held by
//! someone else is taken over only after its record has not changed for a whole lease duration as
//! observed here, so clock skew between nodes cannot cause a premature takeover. Every write carries
//! the resourceVersion read, so of two candidates racing for an expired Lease only one wins.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::PostParams;
use kube::{Api, Client};
use tracing::info;

use crate::error::{Error, Result};

/// Which Lease to hold, and as whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseConfig {
    /// Lease name, e.g. `fathom-autoscaler`.
    pub name: String,
    /// This replica's identity (its pod name).
    pub identity: String,
    /// How long a Lease stays valid without renewal.
    pub lease_duration: Duration,
}

impl LeaseConfig {
    /// The Lease `fathom-autoscaler`, held for 15 s per renewal (rounds renew every poll interval,
    /// which must stay well below this).
    pub fn new(identity: impl Into<String>) -> LeaseConfig {
        LeaseConfig {
            name: "fathom-autoscaler".into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
        }
    }
}

/// Acquires, renews and takes over an expired Lease.
pub struct LeaderElector {
    api: Api<Lease>,
    cfg: LeaseConfig,
    /// The last Lease resourceVersion seen and when this process first saw it.
    observed: Option<(String, Instant)>,
}

impl LeaderElector {
    /// An elector for the Lease `cfg.name` in `namespace`.
    pub fn new(client: Client, namespace: &str, cfg: LeaseConfig) -> LeaderElector {
        LeaderElector {
            api: Api::namespaced(client, namespace),
            cfg,
            observed: None,
        }
    }

    fn err(&self, action: &str) -> impl FnOnce(kube::Error) -> Error {
        let action = format!("{action} lease {}", self.cfg.name);
        move |source| Error::Kube { action, source }
    }

    /// One election round at `now`: true when this process holds the Lease afterwards.
    pub async fn try_acquire_or_renew(&mut self, now: Instant) -> Result<bool> {
        let Some(lease) = self
            .api
            .get_opt(&self.cfg.name)
            .await
            .map_err(self.err("get"))?
        else {
            return self.create().await;
        };
        let rv = lease.metadata.resource_version.clone().unwrap_or_default();
        let seen_at = match &self.observed {
            Some((seen_rv, at)) if *seen_rv == rv => *at,
            _ => now,
        };
        self.observed = Some((rv, seen_at));
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        if holder.as_deref() == Some(self.cfg.identity.as_str()) {
            return self.write(lease, false, now).await;
        }
        let duration = spec
            .lease_duration_seconds
            .and_then(|s| u64::try_from(s).ok())
            .map_or(self.cfg.lease_duration, Duration::from_secs);
        let expired = now.saturating_duration_since(seen_at) >= duration;
        match holder {
            None => self.write(lease, true, now).await,
            Some(other) if expired => {
                info!(lease = %self.cfg.name, previous = %other, "lease expired; taking over");
                self.write(lease, true, now).await
            }
            Some(_) => Ok(false),
        }
    }

    /// Clears the holder if this process holds the Lease, so a standby takes over without waiting.
    pub async fn release(&mut self) -> Result<()> {
        let Some(mut lease) = self
            .api
            .get_opt(&self.cfg.name)
            .await
            .map_err(self.err("get"))?
        else {
            return Ok(());
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if spec.holder_identity.as_deref() != Some(self.cfg.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        match self
            .api
            .replace(&self.cfg.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(()),
            // Someone else wrote it meanwhile: it is not ours to clear any more.
            Err(kube::Error::Api(s)) if s.is_conflict() => Ok(()),
            Err(e) => Err(self.err("release")(e)),
        }
    }

    fn seconds(&self) -> i32 {
        i32::try_from(self.cfg.lease_duration.as_secs()).unwrap_or(i32::MAX)
    }

    async fn create(&mut self) -> Result<bool> {
        let now = MicroTime(jiff::Timestamp::now());
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(self.cfg.name.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(self.cfg.identity.clone()),
                lease_duration_seconds: Some(self.seconds()),
                acquire_time: Some(now.clone()),
                renew_time: Some(now),
                lease_transitions: Some(0),
                ..LeaseSpec::default()
            }),
        };
        match self.api.create(&PostParams::default(), &lease).await {
            Ok(_) => {
                info!(lease = %self.cfg.name, identity = %self.cfg.identity, "acquired new lease");
                Ok(true)
            }
            Err(kube::Error::Api(s)) if s.is_already_exists() || s.is_conflict() => Ok(false),
            Err(e) => Err(self.err("create")(e)),
        }
    }

    /// Renews (same holder) or takes over (`takeover`), with the resourceVersion read.
    async fn write(&mut self, mut lease: Lease, takeover: bool, at: Instant) -> Result<bool> {
        let now = MicroTime(jiff::Timestamp::now());
        let seconds = self.seconds();
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if takeover {
            spec.holder_identity = Some(self.cfg.identity.clone());
            spec.acquire_time = Some(now.clone());
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0).saturating_add(1));
        }
        spec.lease_duration_seconds = Some(seconds);
        spec.renew_time = Some(now);
        match self
            .api
            .replace(&self.cfg.name, &PostParams::default(), &lease)
            .await
        {
            Ok(written) => {
                self.observed = written.metadata.resource_version.map(|rv| (rv, at));
                Ok(true)
            }
            Err(kube::Error::Api(s)) if s.is_conflict() => Ok(false),
            Err(e) => Err(self.err(if takeover { "take over" } else { "renew" })(e)),
        }
    }
}

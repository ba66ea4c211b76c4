//! The admission core: an AdmissionReview body in, an answer out, within the deadline, by failure policy
//! when it cannot decide. No sockets here; the server and the tests call [`Admission::review`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{stream, StreamExt};
use tokio::time::Instant;

use crate::answer::{clip, describe, mark_unchecked};
use crate::cache::TtlCache;
use crate::check::{CheckContext, ImageVerdict, Reason};
use crate::cluster::{NamespaceSource, OracleNamespaces};
use crate::config::{FailurePolicy, Mode, Settings};
use crate::images::{self, ImageUse};
use crate::limit::EnqueueLimit;
use crate::metrics::Metrics;
use crate::namespaces::NamespaceCache;
use crate::oracle::{ImageOracle, Resolved};
use crate::review::{self, Invalid, Request, Response, Status};
use crate::selector::Subject;
use crate::stale::StaleKey;

/// An answer: the HTTP status to send and the AdmissionReview response in it.
#[derive(Debug, Clone)]
pub struct Answer {
    /// 200, or 400/413 when the request was unusable as an AdmissionReview.
    pub http_status: u16,
    /// The response document.
    pub response: Response,
    /// The mode label (`policy`, `analysis`, `breakglass`, or `none` before one was chosen).
    pub mode: &'static str,
    /// The decisive reason.
    pub reason: Reason,
    /// Tag references admitted after their check, as written → `as-written@digest` (the digest
    /// checked): what `POST /mutate` pins.
    pub pins: BTreeMap<String, String>,
}

/// The webhook's decision logic with its caches; cheap to share (`Arc`).
pub struct Admission {
    pub(crate) settings: Settings,
    pub(crate) oracle: Arc<dyn ImageOracle>,
    pub(crate) metrics: Metrics,
    /// Reference → what it names ([`crate::oracle::Resolved`]), for `services.webhook.cache_ttl`.
    pub(crate) tags: TtlCache<String, Resolved>,
    pub(crate) enqueues: EnqueueLimit,
    /// Decided verdicts kept for `services.webhook.stale_if_error` ([`crate::stale`]).
    pub(crate) kept: TtlCache<StaleKey, ImageVerdict>,
    namespaces: NamespaceCache,
}

impl Admission {
    /// A core over `oracle`, counting into `metrics`; namespace labels come from the oracle.
    pub fn new(settings: Settings, oracle: Arc<dyn ImageOracle>, metrics: Metrics) -> Self {
        let source = Arc::new(OracleNamespaces(Arc::clone(&oracle)));
        Self::with_namespaces(settings, oracle, source, metrics)
    }

    /// A core over `oracle` with namespace labels from `namespaces` (the Kubernetes API in a cluster).
    pub fn with_namespaces(
        settings: Settings,
        oracle: Arc<dyn ImageOracle>,
        namespaces: Arc<dyn NamespaceSource>,
        metrics: Metrics,
    ) -> Self {
        let config = &settings.config;
        let namespaces =
            NamespaceCache::new(namespaces, config.namespace_cache_ttl, config.timeout);
        Admission {
            tags: TtlCache::new(config.cache_ttl),
            enqueues: EnqueueLimit::new(config.max_enqueues_per_minute),
            kept: TtlCache::new(config.stale_if_error),
            namespaces,
            settings,
            oracle,
            metrics,
        }
    }

    /// Answers an AdmissionReview body by `deadline` and counts the decision.
    pub async fn review(&self, body: &[u8], deadline: Instant) -> Answer {
        let (_, answer) = self.answer(body, deadline).await;
        self.count(&answer);
        answer
    }

    /// The decision and, when the body was readable, the request it is about. Not counted.
    pub(crate) async fn answer(&self, body: &[u8], deadline: Instant) -> (Option<Request>, Answer) {
        let request = match review::parse(body) {
            Err(invalid) => return (None, self.invalid(invalid)),
            Ok(request) => request,
        };
        let mut mode = None;
        let decision = self.decide(&request, deadline, &mut mode);
        let answer = match tokio::time::timeout_at(deadline, decision).await {
            Ok(answer) => answer,
            Err(_) => {
                self.metrics.timeouts.inc();
                let timeout = humantime::format_duration(self.settings.config.timeout);
                let message = format!(
                    "fathom could not check the images within services.webhook.timeout ({timeout})"
                );
                let mode = mode.map_or("none", Mode::as_str);
                let mut a = self.by_failure_policy(
                    request.uid.clone(),
                    mode,
                    Reason::Timeout,
                    504,
                    message,
                );
                // None of them got a verdict in time: name every one, not just the request.
                let unchecked: Vec<(String, String)> = uses(&request)
                    .into_iter()
                    .map(|u| {
                        (
                            u.image,
                            format!("not checked within services.webhook.timeout ({timeout})"),
                        )
                    })
                    .collect();
                mark_unchecked(&mut a, &unchecked, "by services.webhook.failure_policy");
                a
            }
        };
        (Some(request), answer)
    }

    /// The answer to a body larger than `services.webhook.max_request_bytes` (counted).
    pub fn too_large(&self) -> Answer {
        let message = format!(
            "the AdmissionReview exceeds services.webhook.max_request_bytes ({} bytes)",
            self.settings.config.max_request_bytes
        );
        let mut answer =
            self.by_failure_policy(String::new(), "none", Reason::TooLarge, 413, message);
        answer.http_status = 413;
        self.count(&answer);
        answer
    }

    /// The answer when the body could not even be read by the deadline (counted as a timeout).
    pub fn body_timeout(&self) -> Answer {
        self.metrics.timeouts.inc();
        let message =
            "the AdmissionReview body did not arrive within services.webhook.timeout".to_owned();
        let mut answer =
            self.by_failure_policy(String::new(), "none", Reason::Timeout, 408, message);
        answer.http_status = 408;
        self.count(&answer);
        answer
    }

    /// The answer when the body could not be read (the client went away or sent a broken stream).
    pub fn unreadable_body(&self, error: &str) -> Answer {
        let answer = self.invalid(Invalid {
            uid: None,
            message: format!("reading the body failed: {error}"),
        });
        self.count(&answer);
        answer
    }

    pub(crate) fn count(&self, a: &Answer) {
        let result = if a.response.allowed {
            "allowed"
        } else {
            "denied"
        };
        self.metrics
            .decisions
            .with_label_values(&[result, a.mode, a.reason.as_str()])
            .inc();
    }

    /// Unreadable requests: without a uid the API server cannot match any answer, so HTTP 400 (it then
    /// applies its own failurePolicy); with one, a normal answer by failure policy. Not counted here.
    fn invalid(&self, invalid: Invalid) -> Answer {
        tracing::warn!(uid = ?invalid.uid, "unusable AdmissionReview: {}", invalid.message);
        let http_status = if invalid.uid.is_some() { 200 } else { 400 };
        let message = format!(
            "fathom could not read the AdmissionReview: {}",
            invalid.message
        );
        let uid = invalid.uid.unwrap_or_default();
        let mut answer = self.by_failure_policy(uid, "none", Reason::Invalid, 400, message);
        answer.http_status = http_status;
        answer
    }

    pub(crate) fn by_failure_policy(
        &self,
        uid: String,
        mode: &'static str,
        reason: Reason,
        code: u16,
        why: String,
    ) -> Answer {
        let allowed = self.settings.config.failure_policy == FailurePolicy::Allow;
        let verb = if allowed { "admitted" } else { "denied" };
        // The verdict first: the API server truncates long warnings, and the cause is the detail.
        let message = format!("{verb} by services.webhook.failure_policy: {why}");
        let warnings = if allowed {
            vec![clip(&message)]
        } else {
            Vec::new()
        };
        let audit = [("reason".to_owned(), reason.as_str().to_owned())].into();
        Answer {
            http_status: 200,
            response: Response {
                uid,
                allowed,
                status: Status {
                    code: if allowed { 200 } else { code },
                    message,
                },
                warnings,
                audit_annotations: audit,
                patch_type: None,
                patch: None,
            },
            mode,
            reason,
            pins: BTreeMap::new(),
        }
    }

    pub(crate) fn admit(
        uid: &str,
        mode: &'static str,
        reason: Reason,
        warnings: Vec<String>,
    ) -> Answer {
        Answer {
            http_status: 200,
            response: Response {
                uid: uid.to_owned(),
                allowed: true,
                status: Status {
                    code: 200,
                    message: String::new(),
                },
                warnings,
                audit_annotations: [("reason".to_owned(), reason.as_str().to_owned())].into(),
                patch_type: None,
                patch: None,
            },
            mode,
            reason,
            pins: BTreeMap::new(),
        }
    }

    /// The decision for a readable request; sets `mode_out` as soon as the mode is known so that a
    /// timeout answer can still name it.
    async fn decide(
        &self,
        req: &Request,
        deadline: Instant,
        mode_out: &mut Option<Mode>,
    ) -> Answer {
        let op_checked = matches!(req.operation.as_str(), "CREATE" | "UPDATE");
        let sub_checked = req
            .sub_resource
            .as_deref()
            .is_none_or(|s| s == "ephemeralcontainers");
        if !op_checked || !sub_checked {
            return Self::admit(&req.uid, "none", Reason::Skipped, Vec::new());
        }
        let kind = req.kind.kind.as_str();
        if images::pod_spec_pointer(kind).is_none() {
            // No pod spec, no image to check: nothing to decide, whatever the failure policy (denying
            // ConfigMaps because the rules are too wide would be a fathom-made outage).
            tracing::info!(uid = %req.uid, kind, "admitting an object of a kind without pod spec \
                (the webhook's rules send more than it checks)");
            return Self::admit(&req.uid, "none", Reason::Skipped, Vec::new());
        }
        if !req.object.is_object() {
            let why = format!("the {kind} in the request has no object");
            return self.by_failure_policy(req.uid.clone(), "none", Reason::Invalid, 400, why);
        }
        let namespace = req.namespace.as_deref().unwrap_or("");
        let object_labels = images::labels(&req.object);
        let namespace_labels = self.namespace_labels(namespace, deadline).await;
        let selected = self.settings.selectors.first_match(Subject {
            namespace,
            namespace_labels: namespace_labels.as_ref(),
            object_labels: &object_labels,
        });
        let mode = selected.map_or(self.settings.config.default_mode, |s| s.mode);
        *mode_out = Some(mode);
        let bundle =
            selected
                .and_then(|s| s.bundle.as_deref())
                .or(self.settings.config.bundle.as_deref());
        let uses = uses(req);
        let selector = selected.map_or("default", |s| s.name.as_str());
        let what = describe(req);
        if uses.is_empty() {
            let reason = if req.operation == "UPDATE" {
                Reason::Unchanged
            } else {
                Reason::Skipped
            };
            return Self::admit(&req.uid, mode.as_str(), reason, Vec::new());
        }
        if mode == Mode::Breakglass {
            let list: Vec<&str> = uses.iter().map(|u| u.image.as_str()).collect();
            tracing::warn!(uid = %req.uid, selector, "breakglass: admitting {what} unchecked: {}", list.join(", "));
            let unchecked: Vec<(String, String)> = uses
                .into_iter()
                .map(|u| (u.image, format!("breakglass for {what}")))
                .collect();
            let mut a = Self::admit(&req.uid, "breakglass", Reason::Breakglass, Vec::new());
            mark_unchecked(
                &mut a,
                &unchecked,
                &format!("under breakglass, selector {selector}"),
            );
            a.response
                .audit_annotations
                .insert("selector".into(), selector.into());
            return a;
        }
        let ctx = CheckContext {
            mode,
            bundle,
            dry_run: req.dry_run,
            namespace,
            resolved: Default::default(),
        };
        let used = uses.clone();
        let verdicts: Vec<(ImageUse, ImageVerdict)> = stream::iter(uses)
            .map(|u| async {
                let v = self.check_or_stale(&u.image, &ctx, deadline).await;
                (u, v)
            })
            .buffered(self.settings.config.image_concurrency)
            .collect()
            .await;
        let passed: Vec<String> = verdicts
            .iter()
            .filter(|(_, v)| matches!(v, ImageVerdict::Pass { .. }))
            .map(|(u, _)| u.image.clone())
            .collect();
        let mut answer = self.aggregate(req, mode, selector, &what, verdicts);
        answer.pins = ctx.pins(&passed);
        if answer.response.allowed && !req.dry_run {
            let resolved = ctx
                .resolved
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            let seen = crate::inventory::sightings(req, &used, &resolved);
            if !seen.is_empty() {
                self.oracle.record_use(seen);
            }
        }
        answer
            .response
            .audit_annotations
            .insert("mode".into(), mode.as_str().into());
        answer
            .response
            .audit_annotations
            .insert("selector".into(), selector.into());
        answer
    }

    /// The namespace's labels when a selector needs them; half the remaining budget at most, so that
    /// the images can still be checked when the lookup is slow (then: no labels).
    async fn namespace_labels(
        &self,
        namespace: &str,
        deadline: Instant,
    ) -> Option<BTreeMap<String, String>> {
        if !self.settings.looks_up_namespaces() || namespace.is_empty() {
            return None;
        }
        let budget = deadline.saturating_duration_since(Instant::now()) / 2;
        self.namespaces
            .labels(namespace, budget.max(Duration::from_millis(1)))
            .await
    }
}

/// The images a request asks to run that were not admitted before: all of them on CREATE, the changed
/// ones on UPDATE.
fn uses(req: &Request) -> Vec<ImageUse> {
    let kind = req.kind.kind.as_str();
    if req.operation == "UPDATE" {
        images::changed(kind, &req.object, &req.old_object)
    } else {
        images::extract(kind, &req.object)
    }
}

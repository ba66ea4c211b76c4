//! A scripted API server for the Kubernetes target's tests, in kube-rs's documented style: the client
//! talks to a `tower_test` mock, and a task takes each request in turn, asserts method, path, query and
//! body, and answers. A request that never arrives fails the test after one second.

use std::time::Duration;

use http::{Method, Request, Response};
use kube::client::Body;
use serde_json::{json, Value};
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tower_test::mock::{self, Handle};

pub(super) const NS: &str = "fathom";
pub(super) const DEPLOY: &str = "/apis/apps/v1/namespaces/fathom/deployments/analyzer";
pub(super) const SCALE: &str = "/apis/apps/v1/namespaces/fathom/deployments/analyzer/scale";
pub(super) const HPAS: &str = "/apis/autoscaling/v2/namespaces/fathom/horizontalpodautoscalers";
pub(super) const SCALED_OBJECTS: &str = "/apis/keda.sh/v1alpha1/namespaces/fathom/scaledobjects";
pub(super) const PODS: &str = "/api/v1/namespaces/fathom/pods";
pub(super) const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/fathom/leases";
pub(super) const LEASE: &str =
    "/apis/coordination.k8s.io/v1/namespaces/fathom/leases/fathom-autoscaler";

/// One expected request and the answer to it.
pub(super) struct Step {
    method: Method,
    path: String,
    query: Option<String>,
    /// Every field here must appear in the request body with the same value (other fields may too).
    body: Option<Value>,
    status: u16,
    reply: Value,
}

impl Step {
    pub(super) fn new(method: Method, path: &str) -> Step {
        Step {
            method,
            path: path.to_string(),
            query: None,
            body: None,
            status: 200,
            reply: json!({}),
        }
    }
    pub(super) fn get(path: &str) -> Step {
        Step::new(Method::GET, path)
    }
    pub(super) fn query(mut self, q: &str) -> Step {
        self.query = Some(q.to_string());
        self
    }
    pub(super) fn body(mut self, body: Value) -> Step {
        self.body = Some(body);
        self
    }
    pub(super) fn reply(mut self, status: u16, reply: Value) -> Step {
        self.status = status;
        self.reply = reply;
        self
    }
}

/// The server side of a mocked client.
pub(super) struct ApiServer(Handle<Request<Body>, Response<Body>>);

/// A client wired to a fresh scripted server.
pub(super) fn mock_client() -> (kube::Client, ApiServer) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    (kube::Client::new(service, "default"), ApiServer(handle))
}

impl ApiServer {
    /// Serves `steps` in order, then checks that no further request comes.
    pub(super) fn run(mut self, steps: Vec<Step>) -> JoinHandle<()> {
        tokio::spawn(async move {
            for (i, step) in steps.into_iter().enumerate() {
                let what = format!("step {i}: {} {}", step.method, step.path);
                let next = timeout(Duration::from_secs(1), self.0.next_request()).await;
                let Ok(Some((req, send))) = next else {
                    panic!("{what}: expected request never arrived (1 s)");
                };
                assert_eq!(
                    req.method(),
                    step.method,
                    "{what}: got {} {}",
                    req.method(),
                    req.uri()
                );
                assert_eq!(req.uri().path(), step.path, "{what}");
                if let Some(q) = &step.query {
                    assert_eq!(req.uri().query(), Some(q.as_str()), "{what}: query");
                }
                let bytes = req.into_body().collect_bytes().await.expect("request body");
                if let Some(want) = &step.body {
                    let got: Value = serde_json::from_slice(&bytes).expect("request body is JSON");
                    assert_contains(&got, want, &what);
                }
                let body = Body::from(serde_json::to_vec(&step.reply).expect("reply JSON"));
                send.send_response(
                    Response::builder()
                        .status(step.status)
                        .body(body)
                        .expect("response"),
                );
            }
            if let Ok(Some((req, _))) =
                timeout(Duration::from_millis(200), self.0.next_request()).await
            {
                panic!("unexpected extra request {} {}", req.method(), req.uri());
            }
        })
    }
}

fn assert_contains(got: &Value, want: &Value, what: &str) {
    match (got, want) {
        (Value::Object(g), Value::Object(w)) => {
            for (k, wv) in w {
                let gv = g.get(k).unwrap_or(&Value::Null);
                assert_contains(gv, wv, &format!("{what}.{k}"));
            }
        }
        _ => assert_eq!(got, want, "{what}: body mismatch"),
    }
}

pub(super) fn deployment(replicas: i32, rv: &str, annotations: Value) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": { "name": "analyzer", "namespace": NS, "resourceVersion": rv, "annotations": annotations },
        "spec": {
            "replicas": replicas,
            "selector": { "matchLabels": { "app": "fathom-analyzer" } },
            "template": { "metadata": { "labels": { "app": "fathom-analyzer" } }, "spec": { "containers": [] } }
        }
    })
}

pub(super) fn scale(replicas: i32, rv: &str) -> Value {
    json!({
        "apiVersion": "autoscaling/v1", "kind": "Scale",
        "metadata": { "name": "analyzer", "namespace": NS, "resourceVersion": rv },
        "spec": { "replicas": replicas }, "status": { "replicas": replicas }
    })
}

pub(super) fn list(kind: &str, api_version: &str, items: Vec<Value>) -> Value {
    json!({ "apiVersion": api_version, "kind": kind, "metadata": { "resourceVersion": "1" }, "items": items })
}

pub(super) fn hpa(name: &str, target: &str) -> Value {
    json!({
        "metadata": { "name": name, "namespace": NS },
        "spec": {
            "scaleTargetRef": { "apiVersion": "apps/v1", "kind": "Deployment", "name": target },
            "maxReplicas": 10
        }
    })
}

pub(super) fn pod(name: &str, cost: Option<&str>) -> Value {
    let annotations = match cost {
        Some(c) => json!({ "controller.kubernetes.io/pod-deletion-cost": c }),
        None => json!({}),
    };
    json!({ "metadata": { "name": name, "namespace": NS, "annotations": annotations } })
}

pub(super) fn lease(holder: Option<&str>, rv: &str) -> Value {
    json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": { "name": "fathom-autoscaler", "namespace": NS, "resourceVersion": rv },
        "spec": {
            "holderIdentity": holder, "leaseDurationSeconds": 15,
            "renewTime": "2026-11-25T12:00:00.000000Z", "leaseTransitions": 2
        }
    })
}

pub(super) fn status(code: u16, reason: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Status", "status": "Failure",
        "message": format!("{reason} (scripted)"), "reason": reason, "code": code
    })
}

/// The requests of one `observe()`: deployment, HPAs, then (unless an HPA already conflicts)
/// ScaledObjects — `None` answers 404 as a cluster without KEDA does.
pub(super) fn observe_steps(
    replicas: i32,
    annotations: Value,
    hpas: Vec<Value>,
    sos: Option<Vec<Value>>,
) -> Vec<Step> {
    let hpa_conflict = hpas
        .iter()
        .any(|h| h["spec"]["scaleTargetRef"]["name"] == "analyzer");
    let mut steps = vec![
        Step::get(DEPLOY).reply(200, deployment(replicas, "40", annotations)),
        Step::get(HPAS).reply(
            200,
            list("HorizontalPodAutoscalerList", "autoscaling/v2", hpas),
        ),
    ];
    if !hpa_conflict {
        steps.push(match sos {
            Some(items) => Step::get(SCALED_OBJECTS)
                .reply(200, list("ScaledObjectList", "keda.sh/v1alpha1", items)),
            None => Step::get(SCALED_OBJECTS).reply(404, status(404, "NotFound")),
        });
    }
    steps
}

pub(super) fn scaled_object(name: &str, target: &str) -> Value {
    json!({
        "apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
        "metadata": { "name": name, "namespace": NS },
        "spec": { "scaleTargetRef": { "name": target } }
    })
}

/// The named request sequences the Kubernetes target is tested against.
pub(super) enum Scenario {
    /// `set_replicas(from, to)`: GET scale → PUT scale carrying the resourceVersion read.
    ScaleTo { from: i32, to: i32 },
    /// The first PUT gets a 409; the scale is re-read (new resourceVersion) and written again.
    ConflictThenRetry { from: i32, to: i32 },
    /// The PUT gets a 409 and the re-read shows someone else changed replicas: no second write.
    ConflictThenRaced { from: i32, found: i32 },
    /// Before a scale-in: the Deployment's selector, its pods, and deletion-cost patches where they differ
    /// (pod-a idle, unannotated: untouched; pod-b holds 3 jobs; pod-c had cost 2 and is now idle).
    DeletionCosts,
    /// `observe()` with the given annotations, HPAs and KEDA ScaledObjects (`None`: KEDA not installed).
    Observe {
        replicas: i32,
        annotations: Value,
        hpas: Vec<Value>,
        sos: Option<Vec<Value>>,
    },
    /// No Lease yet: create it holding it.
    LeaseAcquire,
    /// Our Lease: renew it with the resourceVersion read.
    LeaseRenew,
    /// Someone else's Lease, `rounds` times unchanged; the last round takes it over if `takeover`.
    LeaseHeldByOther { rounds: usize, takeover: bool },
}

impl Scenario {
    pub(super) fn steps(self) -> Vec<Step> {
        let put_scale = |rv: &str, to: i32| {
            Step::new(Method::PUT, SCALE).body(json!({
                "metadata": { "name": "analyzer", "resourceVersion": rv }, "spec": { "replicas": to }
            }))
        };
        let cost = |c: &str| json!({ "metadata": { "annotations": { "controller.kubernetes.io/pod-deletion-cost": c } } });
        match self {
            Scenario::ScaleTo { from, to } => vec![
                Step::get(SCALE).reply(200, scale(from, "41")),
                put_scale("41", to).reply(200, scale(to, "42")),
            ],
            Scenario::ConflictThenRetry { from, to } => vec![
                Step::get(SCALE).reply(200, scale(from, "41")),
                put_scale("41", to).reply(409, status(409, "Conflict")),
                Step::get(SCALE).reply(200, scale(from, "43")),
                put_scale("43", to).reply(200, scale(to, "44")),
            ],
            Scenario::ConflictThenRaced { from, found } => vec![
                Step::get(SCALE).reply(200, scale(from, "41")),
                put_scale("41", from - 1).reply(409, status(409, "Conflict")),
                Step::get(SCALE).reply(200, scale(found, "45")),
            ],
            Scenario::DeletionCosts => vec![
                Step::get(DEPLOY).reply(200, deployment(3, "40", json!({}))),
                Step::get(PODS).query("&labelSelector=app%3Dfathom-analyzer").reply(
                    200,
                    list("PodList", "v1", vec![pod("pod-a", None), pod("pod-b", Some("0")), pod("pod-c", Some("2"))]),
                ),
                Step::new(Method::PATCH, &format!("{PODS}/pod-b")).body(cost("3")).reply(200, pod("pod-b", Some("3"))),
                Step::new(Method::PATCH, &format!("{PODS}/pod-c")).body(cost("0")).reply(200, pod("pod-c", Some("0"))),
            ],
            Scenario::Observe { replicas, annotations, hpas, sos } => observe_steps(replicas, annotations, hpas, sos),
            Scenario::LeaseAcquire => vec![
                Step::get(LEASE).reply(404, status(404, "NotFound")),
                Step::new(Method::POST, LEASES)
                    .body(json!({ "metadata": { "name": "fathom-autoscaler" },
                                  "spec": { "holderIdentity": "me", "leaseDurationSeconds": 15, "leaseTransitions": 0 } }))
                    .reply(201, lease(Some("me"), "1")),
            ],
            Scenario::LeaseRenew => vec![
                Step::get(LEASE).reply(200, lease(Some("me"), "5")),
                Step::new(Method::PUT, LEASE)
                    .body(json!({ "metadata": { "resourceVersion": "5" },
                                  "spec": { "holderIdentity": "me", "leaseTransitions": 2 } }))
                    .reply(200, lease(Some("me"), "6")),
            ],
            Scenario::LeaseHeldByOther { rounds, takeover } => {
                let mut steps: Vec<Step> =
                    (0..rounds).map(|_| Step::get(LEASE).reply(200, lease(Some("other"), "5"))).collect();
                if takeover {
                    steps.push(
                        Step::new(Method::PUT, LEASE)
                            .body(json!({ "metadata": { "resourceVersion": "5" },
                                          "spec": { "holderIdentity": "me", "leaseTransitions": 3 } }))
                            .reply(200, lease(Some("me"), "6")),
                    );
                }
                steps
            }
        }
    }
}

//! `services.webhook.inventory_sync` through two real `fathom run` cores on one real Postgres: a
//! stand-in for the Kubernetes API server (reached through a kubeconfig, as a real cluster would be)
//! serves `GET /api/v1/pods` a few Pods per page; the workloads show in `/v1/workloads` as admissions
//! would record them, a Pod that went away expires after `inventory_ttl` while the running ones stay,
//! the two cores never list within less than most of an interval of each other (one core lists per
//! interval), and a refused list is counted and logged with the RBAC overlay to apply.

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};
use support::api::{Api, Client};
use support::{http_get, metric};

/// Pods the stand-in serves per page, whatever `limit` asks (an API server may return fewer).
const PER_PAGE: usize = 2;

/// One list request the stand-in answered.
#[derive(Debug, Clone)]
struct Listed {
    at: Instant,
    query: String,
    auth: String,
}

#[derive(Default)]
struct Cluster {
    pods: Vec<Value>,
    forbidden: bool,
    lists: Vec<Listed>,
}

type Shared = Arc<Mutex<Cluster>>;

fn digest(c: char) -> String {
    format!("sha256:{}", c.to_string().repeat(64))
}

/// A Pod in `ns` named `name`, owned by a ReplicaSet when `owner`, in `phase`, running `containers`
/// `(name, image, imageID)` (an empty imageID: not started yet).
fn pod(
    ns: &str,
    name: &str,
    owner: Option<&str>,
    phase: &str,
    containers: &[(&str, &str, &str)],
) -> Value {
    let mut metadata = json!({"name": name, "namespace": ns});
    if let Some(o) = owner {
        metadata["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "name": o, "uid": "u", "controller": true}]);
    }
    let spec: Vec<_> = containers
        .iter()
        .map(|(n, i, _)| json!({"name": n, "image": i}))
        .collect();
    let statuses: Vec<_> = containers
        .iter()
        .map(|(n, i, id)| json!({"name": n, "image": i, "imageID": id, "ready": true, "restartCount": 0}))
        .collect();
    json!({"metadata": metadata, "spec": {"containers": spec},
           "status": {"phase": phase, "containerStatuses": statuses}})
}

/// The stand-in API server: `GET /api/v1/pods` pages through the cluster's Pods (the `continue` token
/// is the next index), or answers 403 as an API server does without the RBAC.
async fn api_server(cluster: Shared) -> String {
    use axum::extract::{Query, State};
    use axum::http::HeaderMap;
    async fn list(
        State(cluster): State<Shared>,
        headers: HeaderMap,
        uri: axum::http::Uri,
        Query(q): Query<std::collections::HashMap<String, String>>,
    ) -> (StatusCode, axum::Json<Value>) {
        let mut c = cluster.lock().unwrap();
        c.lists.push(Listed {
            at: Instant::now(),
            query: uri.query().unwrap_or_default().to_string(),
            auth: headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string(),
        });
        if c.forbidden {
            let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                "reason": "Forbidden", "code": 403, "message": "pods is forbidden: User \
                \"system:serviceaccount:fathom:fathom-core\" cannot list resource \"pods\""});
            return (StatusCode::FORBIDDEN, axum::Json(status));
        }
        let start: usize = q.get("continue").and_then(|c| c.parse().ok()).unwrap_or(0);
        let end = (start + PER_PAGE).min(c.pods.len());
        let next = if end < c.pods.len() {
            end.to_string()
        } else {
            String::new()
        };
        let items = c.pods.get(start..end).unwrap_or_default().to_vec();
        let body = json!({"apiVersion": "v1", "kind": "PodList",
            "metadata": {"resourceVersion": "42", "continue": next}, "items": items});
        (StatusCode::OK, axum::Json(body))
    }
    let app = axum::Router::new()
        .route("/api/v1/pods", axum::routing::get(list))
        .with_state(cluster);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

/// Every inventory row as (namespace, kind, name, container, image, digest).
async fn rows(client: &Client) -> Vec<(String, String, String, String, String, String)> {
    let (status, answer) = client.get("/v1/workloads?limit=100").await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let text = |w: &Value, k: &str| w[k].as_str().unwrap_or_default().to_string();
    answer["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            let t = |k| text(w, k);
            (
                t("namespace"),
                t("kind"),
                t("name"),
                t("container"),
                t("image"),
                t("digest"),
            )
        })
        .collect()
}

async fn wait_until<F: std::future::Future<Output = bool>>(
    what: &str,
    within: Duration,
    mut done: impl FnMut() -> F,
) {
    let deadline = Instant::now() + within;
    while !done().await {
        assert!(Instant::now() < deadline, "{what} within {within:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listed_pods_fill_the_inventory_once_per_interval_across_cores_and_gone_ones_expire() {
    let db = support::test_db().await;
    let cluster: Shared = Default::default();
    let app = |d| format!("docker-pullable://r.test/shop/app@{}", digest(d));
    cluster.lock().unwrap().pods = vec![
        pod(
            "shop",
            "web-7d9f-x1",
            Some("web-7d9f"),
            "Running",
            &[("app", "r.test/shop/app:1", &app('a'))],
        ),
        pod(
            "ops",
            "tool",
            None,
            "Running",
            &[(
                "tool",
                "r.test/ops/tool:2",
                &format!("r.test/ops/tool@{}", digest('b')),
            )],
        ),
        // Not started yet (no digest), and a finished Job's Pod: neither runs anything.
        pod(
            "shop",
            "web-7d9f-x2",
            Some("web-7d9f"),
            "Pending",
            &[("app", "r.test/shop/app:1", "")],
        ),
        pod(
            "batch",
            "once-abc",
            None,
            "Succeeded",
            &[("job", "r.test/batch/job:1", &app('c'))],
        ),
        // Another replica of the same workload and digest: the same row.
        pod(
            "shop",
            "web-7d9f-x3",
            Some("web-7d9f"),
            "Running",
            &[("app", "r.test/shop/app:1", &app('a'))],
        ),
    ];
    let server = api_server(cluster.clone()).await;
    let interval = Duration::from_secs(2);
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let cores: Vec<Api> = dirs
        .iter()
        .map(|dir| {
            let kubeconfig = dir.path().join("kubeconfig");
            std::fs::write(
                &kubeconfig,
                format!(
                    "apiVersion: v1\nkind: Config\ncurrent-context: test\n\
                     clusters: [{{name: test, cluster: {{server: '{server}'}}}}]\n\
                     users: [{{name: test, user: {{token: s3cret}}}}]\n\
                     contexts: [{{name: test, context: {{cluster: test, user: test}}}}]\n"
                ),
            )
            .unwrap();
            // The webhook itself stays off: the inventory is filled by listing alone.
            let extra = format!(
                "  webhook:\n    inventory_sync: true\n    inventory_sync_interval: 2s\n    \
                 inventory_ttl: 6s\n    kubeconfig: '{}'\n  catalog:\n    enabled: false\n",
                kubeconfig.display()
            );
            Api::start(dir.path(), db.url(), &extra)
        })
        .collect();
    let client = cores[0].client();

    let row = |ns: &str, kind: &str, name: &str, container: &str, image: &str, d: char| {
        (
            ns.into(),
            kind.into(),
            name.into(),
            container.into(),
            image.into(),
            digest(d),
        )
    };
    let expected = vec![
        row("ops", "Pod", "tool", "tool", "r.test/ops/tool:2", 'b'),
        row(
            "shop",
            "ReplicaSet",
            "web-7d9f",
            "app",
            "r.test/shop/app:1",
            'a',
        ),
    ];
    wait_until(
        "the listed pods in the inventory",
        Duration::from_secs(30),
        || async { rows(&client).await.len() >= 2 },
    )
    .await;
    assert_eq!(rows(&client).await, expected);
    let (_, running) = client
        .get(&format!("/v1/images/{}/workloads", digest('a')))
        .await;
    let first_seen = running["items"][0]["first_seen"].clone();
    assert_eq!(running["items"][0]["name"], "web-7d9f", "{running}");

    // The ops Pod goes away: its row expires after inventory_ttl; the running workload is re-seen by
    // every listing (last_seen moves, first_seen stays), so it never expires.
    cluster.lock().unwrap().pods.remove(1);
    wait_until("the gone pod expired", Duration::from_secs(30), || async {
        rows(&client).await.len() == 1
    })
    .await;
    assert_eq!(rows(&client).await, expected[1..]);
    let (_, running) = client
        .get(&format!("/v1/images/{}/workloads", digest('a')))
        .await;
    assert_eq!(running["items"][0]["first_seen"], first_seen, "{running}");
    assert_ne!(
        running["items"][0]["last_seen"], running["items"][0]["first_seen"],
        "{running}"
    );

    // Every listing pages with limit=500 (kube-rs writes the query with a leading `&`), follows the
    // continue token, and authenticates with the kubeconfig's credentials. Listings start at least
    // most of an interval apart although two cores run the lister: one core lists per interval.
    let lists = cluster.lock().unwrap().lists.clone();
    assert!(lists.iter().all(|l| l.auth == "Bearer s3cret"), "{lists:?}");
    let firsts: Vec<Instant> = lists
        .iter()
        .filter(|l| l.query == "&limit=500")
        .map(|l| l.at)
        .collect();
    assert!(
        firsts.len() >= 3,
        "the listing repeats every interval: {lists:?}"
    );
    assert!(
        lists.iter().any(|l| l.query == "&limit=500&continue=2"),
        "{lists:?}"
    );
    assert!(
        lists.iter().all(|l| l.query.starts_with("&limit=500")),
        "only pod lists, all paged: {lists:?}"
    );
    let gaps: Vec<Duration> = firsts.windows(2).map(|w| w[1] - w[0]).collect();
    let closest = gaps.iter().min().unwrap();
    assert!(
        *closest >= interval.mul_f64(0.6),
        "two listings {closest:?} apart (interval {interval:?}): every core is listing; gaps {gaps:?}"
    );

    // Without `list pods` the listing fails, is counted, and the log names the overlay; the core serves on.
    cluster.lock().unwrap().forbidden = true;
    let failed = || {
        cores
            .iter()
            .map(|c| {
                let (_, text) = http_get(&c.addr, "/metrics").unwrap();
                metric(&text, "fathom_inventory_syncs_total{outcome=\"failed\"}")
            })
            .sum::<f64>()
    };
    wait_until(
        "a refused listing counted",
        Duration::from_secs(20),
        || async { failed() >= 1.0 },
    )
    .await;
    let logs: String = dirs
        .iter()
        .map(|d| std::fs::read_to_string(d.path().join("core.err")).unwrap_or_default())
        .collect();
    assert!(
        logs.contains("deploy/overlays/inventory-sync") && logs.contains("forbidden"),
        "{logs}"
    );
    let (_, text) = http_get(&cores[0].addr, "/metrics").unwrap();
    assert!(
        text.contains("fathom_inventory_syncs_total{outcome=\"ok\"}"),
        "{text}"
    );
    assert_eq!(
        rows(&client).await,
        expected[1..],
        "a failed listing deletes nothing"
    );
}

//! The inventory of what runs, through a real `fathom run`: real AdmissionReviews over HTTPS to its
//! webhook, a real worker analyzing a sample image from the real registry, the core's feed cycle matching
//! it against the sample OSV feed, and the workloads read back through `/v1`.

mod support;

use std::time::{Duration, Instant};

use fathom_testkit::osv;
use reqwest::StatusCode;
use serde_json::{json, Value};
use support::api::{Api, Client};
use support::webhook::{review, workload, Hook};
use support::{free_addr, webhook_certs, WorkerProc, WorkerSpec};

async fn poll(client: &Client, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, answer) = client.get(path).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        if done(&answer) {
            return answer;
        }
        assert!(
            Instant::now() < deadline,
            "GET {path} never got there: {answer}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A Pod of a ReplicaSet (as a Deployment's controller creates it) in `ns` running `image` as `app`.
fn replica_pod(ns: &str, image: &str) -> Value {
    let mut pod = workload("Pod", ns, &[("app", image)], &[]);
    pod["metadata"] = json!({"generateName": "web-7d9f-", "namespace": ns,
        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7d9f",
                             "uid": "1", "controller": true}]});
    pod
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admitted_pod_shows_in_the_inventory_and_a_dry_run_or_a_denial_does_not() {
    let db = support::test_db().await;
    let dir = tempfile::tempdir().unwrap();
    let feed = tempfile::tempdir().unwrap();
    osv::write_sample_feed(feed.path(), false).unwrap();
    let tls = dir.path().join("tls");
    webhook_certs(&tls);
    let hook_addr = free_addr();
    let port: u16 = hook_addr.rsplit_once(':').unwrap().1.parse().unwrap();
    let registry = support::registry();
    let extra = format!(
        "  webhook:\n    enabled: true\n    address: '{hook_addr}'\n    default_mode: analysis\n    \
         cert_file: '{}'\n    key_file: '{}'\n    namespace_labels: false\n\
         \x20 feeds:\n    enabled: true\n    base_url: '{}'\n    ecosystems: [{}]\n    rematch_interval: 1s\n\
         registry:\n  insecure: ['{registry}']\n",
        tls.join("tls.crt").display(),
        tls.join("tls.key").display(),
        feed.path().display(),
        osv::SAMPLE_FEEDS.join(", "),
    );
    let api = Api::start(dir.path(), db.url(), &extra);
    let _worker = WorkerProc::start(dir.path(), "w1", db.url(), &WorkerSpec::default());
    let client = api.client();
    let pushed = support::push_samples(&["debian-java-go"]).await;
    let tag = format!("{registry}/{}", pushed[0].0);
    let digest = client.submit_and_wait(&tag).await["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let hook = Hook::new(&tls, port);

    // Admitted: a ReplicaSet's Pod running the tag (resolved to the analyzed digest).
    let r = hook
        .admit(&review("p1", &replica_pod("shop", &tag), false))
        .await;
    assert_eq!(r["allowed"], true, "{r}");
    // A dry run of another workload, and a denied one (a digest fathom never analyzed), leave no trace.
    let other = workload("Deployment", "shop", &[("side", &tag)], &[]);
    let r = hook.admit(&review("d1", &other, true)).await;
    assert_eq!(r["allowed"], true, "{r}");
    let unknown = format!("{registry}/nothing/here@sha256:{}", "cd".repeat(32));
    let denied = workload("Pod", "shop", &[("x", &unknown)], &[]);
    let r = hook.admit(&review("x1", &denied, true)).await;
    assert_eq!(r["allowed"], false, "{r}");
    let denied_for_real = workload("Pod", "other", &[("x", &unknown)], &[]);
    let r = hook.admit(&review("x2", &denied_for_real, false)).await;
    assert_eq!(r["allowed"], false, "{r}");

    let path = format!("/v1/images/{digest}/workloads");
    let rows = poll(&client, &path, |a| {
        a["items"].as_array().is_some_and(|i| !i.is_empty())
    })
    .await;
    let items = rows["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{rows}");
    let row = &items[0];
    assert_eq!(
        (
            &row["namespace"],
            &row["kind"],
            &row["name"],
            &row["container"]
        ),
        (
            &json!("shop"),
            &json!("ReplicaSet"),
            &json!("web-7d9f"),
            &json!("app")
        ),
        "{row}"
    );
    assert_eq!(
        (&row["digest"], &row["image"]),
        (&json!(digest), &json!(tag))
    );
    let first_seen = row["first_seen"].clone();

    // Seen again: one row, last_seen moves, first_seen stays.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = hook
        .admit(&review("p2", &replica_pod("shop", &tag), false))
        .await;
    assert_eq!(r["allowed"], true, "{r}");
    let again = poll(&client, &path, |a| {
        a["items"][0]["last_seen"] != row["last_seen"]
    })
    .await;
    assert_eq!(again["items"].as_array().unwrap().len(), 1, "{again}");
    assert_eq!(again["items"][0]["first_seen"], first_seen);

    // Every workload, by namespace and page: only the admitted one (the dry run and denials left none).
    let (status, all) = client.get("/v1/workloads?limit=1").await;
    assert_eq!(status, StatusCode::OK, "{all}");
    assert_eq!(all["items"].as_array().unwrap().len(), 1, "{all}");
    assert!(all["next"].is_null(), "{all}");
    let (_, none) = client.get("/v1/workloads?namespace=other").await;
    assert_eq!(none["items"], json!([]), "{none}");
    let (status, bad) = client.get("/v1/workloads?cursor=zz").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");

    // The running workload carries the sample feed's glibc record (by its id and by its CVE alias).
    for id in [osv::GLIBC.to_string(), osv::alias(osv::GLIBC)] {
        let carried = poll(
            &client,
            &format!("/v1/vulnerabilities/{id}/workloads"),
            |a| a["items"].as_array().is_some_and(|i| !i.is_empty()),
        )
        .await;
        assert_eq!(carried["items"][0]["name"], "web-7d9f", "{carried}");
    }
    let (_, clean) = client
        .get(&format!("/v1/vulnerabilities/{}/workloads", osv::PYGMENTS))
        .await;
    assert_eq!(
        clean["items"],
        json!([]),
        "debian-java-go has no pygments: {clean}"
    );
}

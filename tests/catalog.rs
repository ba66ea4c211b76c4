//! The catalog through a real `fathom run`: tags and repositories watched on the real test registry (or
//! through a counting proxy in front of it), real workers analyzing what the watches queue, and the
//! database read directly for what only it shows (pass counts).

mod support;

use std::time::{Duration, Instant};

use fathom_testkit::pg::TestDb;
use fathom_testkit::{BuiltImage, Compress, Pusher};
use reqwest::StatusCode;
use serde_json::{json, Value};
use support::api::{Api, Client};
use support::{Proxy, WorkerProc, WorkerSpec};

/// `services.catalog` lines and the registry section for a core watching `hosts` (plain HTTP).
fn catalog_config(lines: &str, hosts: &[&str]) -> String {
    let hosts: Vec<String> = hosts.iter().map(|h| format!("'{h}'")).collect();
    format!(
        "  catalog:\n{lines}registry:\n  insecure: [{}]\n  timeout: 5s\n",
        hosts.join(", ")
    )
}

async fn start(lines: &str, hosts: &[&str]) -> (TestDb, tempfile::TempDir, Api) {
    let db = support::test_db().await;
    let dir = tempfile::tempdir().unwrap();
    let api = Api::start(dir.path(), db.url(), &catalog_config(lines, hosts));
    (db, dir, api)
}

fn sample(name: &str) -> BuiltImage {
    let samples = fathom_testkit::samples::sample_images();
    let s = samples.iter().find(|s| s.name == name).unwrap();
    BuiltImage::from_sample(s, Compress::Gzip).unwrap()
}

/// Points `repo:tag` at `image`'s manifest (its blobs already pushed) with one manifest PUT.
async fn tag(registry: &str, repo: &str, tag: &str, image: &BuiltImage) {
    let answer = reqwest::Client::new()
        .put(format!("http://{registry}/v2/{repo}/manifests/{tag}"))
        .header("content-type", image.manifest_media_type())
        .body(image.manifest.clone())
        .send()
        .await
        .unwrap();
    assert!(answer.status().is_success(), "{answer:?}");
}

/// Polls `GET /v1/watches/{id}` until `done` holds; panics after `timeout` with the last answer.
async fn wait_watch(
    client: &Client,
    id: i64,
    timeout: Duration,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let (status, watch) = client.get(&format!("/v1/watches/{id}")).await;
        assert_eq!(status, StatusCode::OK, "{watch}");
        if done(&watch) {
            return watch;
        }
        assert!(
            Instant::now() < deadline,
            "watch {id} never got there: {watch}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn digests(watch: &Value) -> Vec<String> {
    watch["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["digest"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moved_tag_is_analyzed_within_one_interval_and_its_history_keeps_both_digests() {
    let registry = support::registry();
    let (db, dir, api) = start("    watch_interval: 2s\n", &[&registry]).await;
    let _worker = WorkerProc::start(dir.path(), "w1", db.url(), &WorkerSpec::default());
    let client = api.client();
    let repo = support::unique_repo("moving");
    let pusher = Pusher::new(&registry, None);
    let (first, second) = (sample("alpine-apk"), sample("rocky-rpm"));
    pusher.push(&repo, "prod", &first).await.unwrap();
    let reference = format!("{registry}/{repo}:prod");

    // Watching submits at once: the first digest is in the history and gets analyzed.
    let (status, watch) = client
        .post("/v1/watches", json!({"reference": reference}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{watch}");
    assert_eq!(watch["kind"], "tag");
    assert_eq!(digests(&watch), [first.manifest_digest()]);
    let job = watch["history"][0]["job_id"]
        .as_i64()
        .expect("first look queued");
    assert_eq!(client.wait_done(job).await["status"], "analyzed");
    // Watching it again answers the same watch.
    let (status, again) = client
        .post("/v1/watches", json!({"reference": reference}))
        .await;
    assert_eq!((status, &again["id"]), (StatusCode::OK, &watch["id"]));

    // The tag moves; nobody submits anything.
    pusher.push(&repo, "prod", &second).await.unwrap();
    let moved_at = Instant::now();
    let id = watch["id"].as_i64().unwrap();
    let moved = wait_watch(&client, id, Duration::from_secs(10), |w| {
        digests(w).len() == 2
    })
    .await;
    assert!(
        moved_at.elapsed() < Duration::from_secs(4),
        "took {:?}",
        moved_at.elapsed()
    );
    // Newest first.
    assert_eq!(
        digests(&moved),
        [second.manifest_digest(), first.manifest_digest()]
    );
    assert_eq!(moved["digest"], second.manifest_digest().as_str());
    let job = moved["history"][0]["job_id"]
        .as_i64()
        .expect("the new digest was queued");
    assert_eq!(client.wait_done(job).await["status"], "analyzed");
    // The watcher had the new manifest at hand: the job carries its work (every layer is new to the
    // cache), and the worker recorded what it fetched next to it.
    let pool = sqlx::PgPool::connect(db.url()).await.unwrap();
    let (estimate, fetched): (Option<i64>, Option<i64>) =
        sqlx::query_as("SELECT work_bytes, fetched_bytes FROM fathom_jobs WHERE id = $1")
            .bind(job)
            .fetch_one(&pool)
            .await
            .unwrap();
    let layer_bytes: usize = second.layers.iter().map(|l| l.blob.len()).sum();
    assert_eq!(estimate, Some(layer_bytes as i64));
    assert_eq!(
        fetched, estimate,
        "the estimate of an all-new image is exact"
    );
    let (status, image) = client
        .get(&format!("/v1/images/{}", second.manifest_digest()))
        .await;
    assert_eq!(status, StatusCode::OK, "{image}");
    assert!(
        image["references"]
            .as_array()
            .unwrap()
            .contains(&json!(reference)),
        "{image}"
    );

    // The tag disappears: marked missing with the registry's answer, history kept.
    let deleted = reqwest::Client::new()
        .delete(format!(
            "http://{registry}/v2/{repo}/manifests/{}",
            second.manifest_digest()
        ))
        .send()
        .await
        .unwrap();
    assert!(deleted.status().is_success(), "{deleted:?}");
    let missing = wait_watch(&client, id, Duration::from_secs(10), |w| {
        w["status"] == "missing"
    })
    .await;
    assert!(
        missing["error"].as_str().unwrap().contains("HTTP 404"),
        "{missing}"
    );
    assert_eq!(digests(&missing).len(), 2);

    // The CLI reads the same history from the database and through the API.
    let out = support::ok(&support::cli(db.url(), &["watch", "history", &reference]));
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].contains("missing"), "{out}");
    assert!(lines[1].starts_with(&second.manifest_digest()), "{out}");
    assert!(lines[2].starts_with(&first.manifest_digest()), "{out}");
    let via_api = support::fathom()
        .args(["watch", "history", &reference, "--json", "--api", &api.base])
        .args(["--token", support::api::TOKEN])
        .output()
        .unwrap();
    let answer: Value = serde_json::from_str(&support::ok(&via_api)).unwrap();
    assert_eq!(digests(&answer), digests(&missing));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_watches_are_refused_at_creation_with_the_reason() {
    let registry = support::registry();
    let (_db, _dir, api) = start("", &[&registry]).await;
    let client = api.client();
    let error = |answer: &(StatusCode, Value), status: StatusCode, code: &str, mention: &str| {
        assert_eq!(answer.0, status, "{answer:?}");
        assert_eq!(answer.1["error"]["code"], code, "{answer:?}");
        let message = answer.1["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(mention),
            "{message:?} should mention {mention:?}"
        );
    };
    let post = |body: Value| client.post("/v1/watches", body);
    error(
        &post(json!({"reference": "Not A/Ref"})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_reference",
        "not an image reference",
    );
    let pinned = format!("{registry}/x/app@sha256:{}", "a".repeat(64));
    error(
        &post(json!({"reference": pinned})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_reference",
        "never moves",
    );
    let nowhere = format!("{registry}/{}:1", support::unique_repo("nothing"));
    error(
        &post(json!({"reference": nowhere})).await,
        StatusCode::NOT_FOUND,
        "not_found",
        "does not have it",
    );
    let repo = format!("{registry}/{}", support::unique_repo("norepo"));
    error(
        &post(json!({"repository": repo})).await,
        StatusCode::NOT_FOUND,
        "not_found",
        "does not have it",
    );
    error(
        &post(json!({"repository": format!("{repo}:v1")})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_reference",
        "without a tag",
    );
    error(
        &post(json!({"repository": repo, "include": "(unclosed"})).await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        "include:",
    );
    error(
        &post(json!({"repository": repo, "exclude": "[z-a]"})).await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        "exclude:",
    );
    error(
        &post(json!({"reference": nowhere, "repository": repo})).await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        "not both",
    );
    error(
        &client.get("/v1/watches/999999").await,
        StatusCode::NOT_FOUND,
        "not_found",
        "no watch 999999",
    );
    error(
        &client.delete("/v1/watches/999999").await,
        StatusCode::NOT_FOUND,
        "not_found",
        "no watch 999999",
    );
    error(
        &client.get("/v1/watches?kind=image").await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        "kind",
    );
    // Nothing was stored by any of it.
    let (_, list) = client.get("/v1/watches").await;
    assert_eq!(list["items"], json!([]), "{list}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repository_watch_picks_up_a_new_tag_skips_an_excluded_one_and_reports_its_cap() {
    let registry = support::registry();
    let (_db, _dir, api) = start(
        "    repository_interval: 2s\n    max_tags_per_repository: 3\n",
        &[&registry],
    )
    .await;
    let client = api.client();
    let repo = support::unique_repo("repo");
    let image = sample("alpine-apk");
    Pusher::new(&registry, None)
        .push(&repo, "v1", &image)
        .await
        .unwrap();
    for t in ["v2", "v1-rc1", "latest"] {
        tag(&registry, &repo, t, &image).await;
    }
    let repository = format!("{registry}/{repo}");
    let body = json!({"repository": repository, "include": "^v", "exclude": "-rc"});

    // A dry run lists and stores nothing.
    let (status, dry) = client.post("/v1/watches?dry_run=true", body.clone()).await;
    assert_eq!(status, StatusCode::OK, "{dry}");
    assert_eq!(dry["tags"], json!(["v1", "v2"]), "{dry}");
    assert_eq!(
        (dry["listed"].as_u64(), dry["filtered"].as_u64()),
        (Some(4), Some(2))
    );
    let (_, list) = client.get("/v1/watches").await;
    assert_eq!(list["items"], json!([]));

    let (status, watch) = client.post("/v1/watches", body).await;
    assert_eq!(status, StatusCode::CREATED, "{watch}");
    assert_eq!(watch["added"], json!(["v1", "v2"]));
    let id = watch["id"].as_i64().unwrap();

    // New tags: one passes, one is excluded, and two more overflow the cap of three.
    for t in ["v3", "v3-rc1", "v4", "v5"] {
        tag(&registry, &repo, t, &image).await;
    }
    let seen = wait_watch(&client, id, Duration::from_secs(10), |w| {
        w["tags_watched"] == 3
    })
    .await;
    assert_eq!(seen["tags_capped"], 2, "{seen}");
    assert_eq!(seen["tags_listed"], 8, "{seen}");
    let (_, tags) = client
        .get(&format!("/v1/watches?repository_watch={id}"))
        .await;
    let mut references: Vec<&str> = tags["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["reference"].as_str().unwrap())
        .collect();
    references.sort();
    let want: Vec<String> = ["v1", "v2", "v3"]
        .iter()
        .map(|t| format!("{repository}:{t}"))
        .collect();
    assert_eq!(references, want);
    // Each was submitted for analysis (queued: no worker runs here).
    let (_, queued) = client
        .get(&format!("/v1/images?reference={repository}:v3"))
        .await;
    assert_eq!(queued["items"][0]["status"], "queued", "{queued}");

    // Removing the repository watch removes the tag watches it made.
    let (status, _) = client.delete(&format!("/v1/watches/{id}")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, list) = client.get("/v1/watches").await;
    assert_eq!(list["items"], json!([]), "{list}");
}

/// Pushes `image` once as `repo:t0` and tags it `t1..n-1`; returns the tags' references on `host`.
async fn many_tags(host: &str, repo: &str, image: &BuiltImage, n: usize) -> Vec<String> {
    let registry = support::registry();
    Pusher::new(&registry, None)
        .push(repo, "t0", image)
        .await
        .unwrap();
    for i in 1..n {
        tag(&registry, repo, &format!("t{i}"), image).await;
    }
    (0..n).map(|i| format!("{host}/{repo}:t{i}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_pass_sends_only_heads_and_500_tags_keep_the_per_host_rate() {
    let proxy = Proxy::start(&support::registry()).await;
    let rate = 50.0;
    let (_db, _dir, api) = start(
        &format!("    watch_interval: 2s\n    requests_per_second_per_host: {rate}\n"),
        &[&proxy.addr],
    )
    .await;
    let client = api.client();
    let references = many_tags(
        &proxy.addr,
        &support::unique_repo("many"),
        &sample("alpine-apk"),
        500,
    )
    .await;
    for r in &references {
        let (status, w) = client.post("/v1/watches", json!({"reference": r})).await;
        assert_eq!(status, StatusCode::CREATED, "{w}");
    }
    let created = proxy.rules.seen().len();
    // 500 tags at 50/s cannot fit a 2 s interval: a pass takes 10 s. Watch two of them.
    tokio::time::sleep(Duration::from_secs(21)).await;
    let seen = proxy.rules.seen();
    let pass: Vec<_> = seen[created..].to_vec();
    assert!(pass.len() >= 800, "{} requests in 21 s", pass.len());
    // Nothing changed: every request was a HEAD of a manifest, no GET, no tag list.
    for s in &pass {
        assert!(
            s.method == "HEAD" && s.path.contains("/manifests/t"),
            "{s:?}"
        );
    }
    // Never more than the rate in any one-second window (one of slack for timer rounding).
    let mut most = 0;
    for (i, s) in pass.iter().enumerate() {
        let within = pass[i..]
            .iter()
            .take_while(|t| t.at - s.at < Duration::from_secs(1))
            .count();
        most = most.max(within);
    }
    assert!(
        most <= rate as usize + 1,
        "{most} requests within one second"
    );
    // The metrics count them by host and kind, with zeros for kinds never sent.
    let metrics = reqwest::get(format!("{}/metrics", api.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let series = |kind: &str| {
        support::metric(
            &metrics,
            &format!(
                "fathom_catalog_requests_total{{host=\"{}\",kind=\"{kind}\"}}",
                proxy.addr
            ),
        )
    };
    // Creating a watch asks once, with a GET (its manifest's layers give the first job its work
    // estimate); the passes only HEAD.
    assert!(series("head") >= pass.len() as f64, "{metrics}");
    assert_eq!(series("manifest"), 500.0, "{metrics}");
    assert!(
        metrics.contains(&format!(
            "fathom_catalog_requests_total{{host=\"{}\",kind=\"tags\"}} 0",
            proxy.addr
        )),
        "{metrics}"
    );
    assert_eq!(
        support::metric(&metrics, "fathom_catalog_watches{kind=\"tag\"}"),
        500.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_cores_never_run_the_same_pass_twice() {
    let proxy = Proxy::start(&support::registry()).await;
    let db = support::test_db().await;
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let config = catalog_config("    watch_interval: 1s\n", &[&proxy.addr]);
    let a = Api::start(dir_a.path(), db.url(), &config);
    let b = Api::start(dir_b.path(), db.url(), &config);
    let references = many_tags(
        &proxy.addr,
        &support::unique_repo("twice"),
        &sample("alpine-apk"),
        4,
    )
    .await;
    for (i, r) in references.iter().enumerate() {
        // Created through either core.
        let client = if i % 2 == 0 { a.client() } else { b.client() };
        let (status, w) = client.post("/v1/watches", json!({"reference": r})).await;
        assert_eq!(status, StatusCode::CREATED, "{w}");
    }
    let pool = sqlx::PgPool::connect(db.url()).await.unwrap();
    let passes = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT coalesce(max(passes), 0) FROM fathom_catalog_passes WHERE kind = 'tags'",
        )
        .fetch_one(&pool)
        .await
        .unwrap()
    };
    let (before, heads_before) = (passes().await, proxy.rules.seen().len());
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(6)).await;
    // Let a running pass finish: its HEADs are counted with it.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (after, heads) = (passes().await, proxy.rules.seen().len() - heads_before);
    let ran = after - before;
    let elapsed = started.elapsed().as_secs_f64();
    // About one pass per interval between both cores, never one per core...
    assert!(
        ran >= 4 && (ran as f64) <= elapsed + 1.0,
        "{ran} passes in {elapsed:.1} s"
    );
    // ...and each pass asked about each tag exactly once (a pass running at either end of the window
    // adds or lacks at most one round).
    let per_pass = references.len() as i64;
    let heads = heads as i64;
    assert!(
        heads > (ran - 1) * per_pass && heads <= (ran + 1) * per_pass,
        "{heads} HEADs for {ran} passes"
    );
    // Both cores export the same pass state from the database.
    for api in [&a, &b] {
        let m = reqwest::get(format!("{}/metrics", api.base))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            support::metric(
                &m,
                "fathom_catalog_last_pass_timestamp_seconds{kind=\"tags\"}"
            ) > 0.0,
            "{m}"
        );
    }
}

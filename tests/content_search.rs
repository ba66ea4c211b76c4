//! Content search end to end on a generated image: a matching file, a matching file a later layer deletes,
//! a binary and an oversized file that also match. Through a real worker, Postgres and the API (stored
//! rows, `/content-search`, the `files.content_regex_match` gate through the core, "unavailable" for an
//! image analyzed without rules) and standalone (`fathom scan` and `fathom check --policy`).

mod support;

use std::path::{Path, PathBuf};

use fathom_testkit::image::{layer_tar, BuiltImage, BuiltLayer, Compress};
use fathom_testkit::samples::SampleEntry;
use reqwest::StatusCode;
use serde_json::{json, Value};
use support::api::{Api, Client};
use support::osv_server::oci_dir;
use support::{fathom, WorkerProc, WorkerSpec};

/// The stored text of the visible match (its rule has `store_match: true`).
const VISIBLE_SECRET: &str = "hunter2-visible";
/// Text of matches that must not be reported: deleted by a whiteout, in a binary, in an oversized file.
const HIDDEN: [&str; 3] = [
    "deleted-by-whiteout",
    "inside-a-binary",
    "over-the-size-cap",
];
/// `secrets.max_file_bytes`, which content search shares.
const CAP: usize = 4096;
const PASSWORD: &str = r"password\s*=\s*\S+";
const HOST: &str = r"[a-z0-9.-]+\.internal\.example\.com";

/// Base layer: the matching config, a matching file the top layer deletes, a matching binary and a
/// matching file over the size cap. Top layer: the whiteout and an unrelated file.
fn image() -> BuiltImage {
    let mut big = format!("password = {}\n", HIDDEN[2]).into_bytes();
    big.resize(CAP + 100, b'x');
    let base = vec![
        SampleEntry::dir("/etc"),
        SampleEntry::file(
            "/etc/app.conf",
            format!("[db]\nhost = db.internal.example.com\npassword = {VISIBLE_SECRET}\n")
                .as_bytes(),
        ),
        SampleEntry::dir("/opt"),
        SampleEntry::file(
            "/opt/old.conf",
            format!("password = {}\n", HIDDEN[0]).as_bytes(),
        ),
        SampleEntry::dir("/usr"),
        SampleEntry::dir("/usr/bin"),
        SampleEntry::file(
            "/usr/bin/tool",
            format!("\x7fELF\0\0\0password = {}\n", HIDDEN[1]).as_bytes(),
        )
        .with_mode(0o755),
        SampleEntry::dir("/srv"),
        SampleEntry::file("/srv/big.conf", &big),
    ];
    let top = vec![
        SampleEntry::file("/opt/.wh.old.conf", b""),
        SampleEntry::file("/etc/motd", b"hello\n"),
    ];
    let layers = [base, top]
        .iter()
        .map(|entries| BuiltLayer::from_tar(&layer_tar(entries).unwrap(), Compress::Gzip).unwrap())
        .collect();
    BuiltImage::from_layers("content-search", Default::default(), layers)
}

/// `services.analyzer` lines with the two rules (PASSWORD keeps its text) and the shared size cap.
fn analyzer_yaml() -> String {
    format!(
        "    secrets:\n      max_file_bytes: {CAP}\n    content_search:\n      \
         - {{name: PASSWORD, pattern: '{PASSWORD}', store_match: true}}\n      \
         - {{name: INTERNAL_HOST, pattern: '{HOST}'}}\n"
    )
}

fn assert_hidden_absent(what: &str, text: &str) {
    for hidden in HIDDEN {
        assert!(!text.contains(hidden), "{what} reports {hidden}: {text}");
    }
}

/// A check of the stored image against one `files.content_regex_match` rule with these params.
async fn check(client: &Client, digest: &str, id: &str, params: Value) -> Value {
    let bundle = json!({
        "id": id, "version": "1_0", "name": id,
        "policies": [{"id": "p", "version": "1_0", "rules": [
            {"gate": "files", "trigger": "content_regex_match", "action": "STOP", "params": params}]}],
        "whitelists": [],
        "mappings": [{"id": "all", "registry": "*", "repository": "*",
                      "image": {"type": "tag", "value": "*"}, "policy_ids": ["p"], "whitelist_ids": []}],
        "whitelisted_images": [], "blacklisted_images": []
    });
    let (status, stored) = client.post("/v1/policies", bundle).await;
    assert_eq!(status, StatusCode::CREATED, "{stored}");
    let (status, evaluation) = client
        .get(&format!("/v1/images/{digest}/check?policy_id={id}"))
        .await;
    assert_eq!(status, StatusCode::OK, "{evaluation}");
    evaluation
}

/// Check_Output of the `files.content_regex_match` rows, sorted.
fn fired(evaluation: &Value) -> Vec<String> {
    let mut out: Vec<String> = evaluation["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["trigger"] == "content_regex_match")
        .map(|r| r["check_output"].as_str().unwrap().to_string())
        .collect();
    out.sort();
    out
}

fn fire_text(path: &str, name: &str, pattern: &str) -> String {
    format!("File content analyzer found regexp match in container: file={path} regexp={name}={pattern}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matches_are_stored_merged_served_and_gated_and_unsearched_images_say_unavailable() {
    let db = support::test_db().await;
    let dir = tempfile::tempdir().unwrap();
    let image = image();
    let reference = format!(
        "{}/{}",
        support::registry(),
        support::push_image("content-search", &image).await
    );
    let digest = image.manifest_digest();
    let api = Api::start_with_analyzer(dir.path(), db.url(), &analyzer_yaml(), "");
    let client = api.client();

    // First analyzed by a worker without rules: as for an image analyzed before content search existed,
    // the route says the results are unavailable, never "no match"; the gate, as anchore's, has nothing
    // to walk and does not fire (issue 31).
    let plain = WorkerProc::start(dir.path(), "w0", db.url(), &WorkerSpec::default());
    client.submit_and_wait(&reference).await;
    drop(plain);
    let (status, answer) = client
        .get(&format!("/v1/images/{digest}/content-search"))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("services.analyzer.content_search"),
        "{answer}"
    );
    let unsearched = check(&client, &digest, "before", json!([])).await;
    assert_eq!(unsearched["final_action"], "GO", "{unsearched}");
    assert_eq!(unsearched["rows"], json!([]), "{unsearched}");

    // With rules, a resubmission (no force) analyzes it again: the rules are part of the cache key.
    let spec = WorkerSpec {
        analyzer_yaml: analyzer_yaml(),
        ..Default::default()
    };
    let worker = WorkerProc::start(dir.path(), "w1", db.url(), &spec);
    let (status, again) = client
        .post("/v1/images", json!({"reference": reference}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{again}");
    assert_eq!(again["created"], true, "{again}");
    let done = client.wait_done(again["job_id"].as_i64().unwrap()).await;
    assert_eq!(done["status"], "analyzed", "{done}");

    // The route: only the visible text file's matches; the text only for the store_match rule.
    let (status, found) = client
        .get(&format!("/v1/images/{digest}/content-search"))
        .await;
    assert_eq!(status, StatusCode::OK, "{found}");
    assert_eq!(found["rules"][0]["name"], "PASSWORD", "{found}");
    assert_eq!(found["rules"][0]["store_match"], true);
    assert_eq!(found["rules"][1]["store_match"], false);
    let got: Vec<(String, u64, String, Value)> = found["matches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["path"].as_str().unwrap().to_string(),
                m["line"].as_u64().unwrap(),
                m["rule"].as_str().unwrap().to_string(),
                m["text"].clone(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (
                "/etc/app.conf".into(),
                2,
                "INTERNAL_HOST".into(),
                Value::Null
            ),
            (
                "/etc/app.conf".into(),
                3,
                "PASSWORD".into(),
                json!(format!("password = {VISIBLE_SECRET}"))
            ),
        ]
    );
    assert_eq!(found["matches"][0]["layer"]["index"], 0);
    assert_hidden_absent("the content-search route", &found.to_string());

    // The store: rows per layer, so the deleted file's match is there with its layer (a layer is the
    // same whatever sits on top); text only where the rule keeps it; never the binary or oversized file.
    let store = fathom_worker::store::Store::connect_lazy(db.url(), 1).unwrap();
    let rows: Vec<(String, i64, String, Option<String>)> = sqlx::query_as(
        "SELECT path, line, rule, match_text FROM fathom_layer_content_matches ORDER BY path, line",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    assert_eq!(
        rows,
        [
            ("/etc/app.conf".into(), 2, "INTERNAL_HOST".into(), None),
            (
                "/etc/app.conf".into(),
                3,
                "PASSWORD".into(),
                Some(format!("password = {VISIBLE_SECRET}"))
            ),
            (
                "/opt/old.conf".into(),
                1,
                "PASSWORD".into(),
                Some(format!("password = {}", HIDDEN[0]))
            ),
        ]
    );

    // The gate through the core: once per (file, rule); regex_name selects by name or by pattern.
    let all = check(&client, &digest, "all", json!([])).await;
    assert_eq!(all["final_action"], "STOP", "{all}");
    assert_eq!(
        fired(&all),
        [
            fire_text("/etc/app.conf", "INTERNAL_HOST", HOST),
            fire_text("/etc/app.conf", "PASSWORD", PASSWORD),
        ]
    );
    assert_hidden_absent("the evaluation", &all.to_string());
    let by_name = check(
        &client,
        &digest,
        "by-name",
        json!([{"name": "regex_name", "value": "PASSWORD"}]),
    )
    .await;
    assert_eq!(
        fired(&by_name),
        [fire_text("/etc/app.conf", "PASSWORD", PASSWORD)]
    );
    let by_pattern = check(
        &client,
        &digest,
        "by-pattern",
        json!([{"name": "regex_name", "value": HOST}]),
    )
    .await;
    assert_eq!(
        fired(&by_pattern),
        [fire_text("/etc/app.conf", "INTERNAL_HOST", HOST)]
    );
    let other = check(
        &client,
        &digest,
        "other",
        json!([{"name": "regex_name", "value": "NO_SUCH_RULE"}]),
    )
    .await;
    assert_eq!(other["final_action"], "GO", "{other}");
    assert!(fired(&other).is_empty(), "{other}");
    let unknown = format!("sha256:{}", "0".repeat(64));
    let (status, _) = client
        .get(&format!("/v1/images/{unknown}/content-search"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    drop(worker);
}

#[test]
fn a_bad_rule_stops_start_up_naming_its_entry() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.yaml");
    std::fs::write(
        &config,
        "database:\n  url: 'postgres://nobody@127.0.0.1:1/none'\nservices:\n  analyzer:\n    \
         content_search:\n      - {name: OK, pattern: 'fine'}\n      - {name: BROKEN, pattern: 'password=('}\n",
    )
    .unwrap();
    let out = fathom()
        .args(["worker", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("services.analyzer.content_search[1]") && stderr.contains("BROKEN"),
        "{stderr}"
    );
}

fn bundle(dir: &Path) -> PathBuf {
    let doc = json!({
        "id": "cs", "version": "1_0", "name": "cs",
        "policies": [{"id": "p", "name": "p", "version": "1_0", "rules": [
            {"id": "pw", "gate": "files", "trigger": "content_regex_match", "action": "STOP",
             "params": [{"name": "regex_name", "value": "PASSWORD"}]}]}],
        "whitelists": [],
        "mappings": [{"id": "m", "name": "all", "registry": "*", "repository": "*",
                      "image": {"type": "tag", "value": "*"}, "policy_ids": ["p"], "whitelist_ids": []}],
    });
    let path = dir.join("cs.json");
    std::fs::write(&path, doc.to_string()).unwrap();
    path
}

#[test]
fn standalone_scan_and_check_search_with_flags() {
    let tmp = tempfile::tempdir().unwrap();
    let source = oci_dir(&tmp.path().join("image"), &image());
    let rule = format!("PASSWORD={PASSWORD}");

    // scan: the document carries the rules and the visible matches, with the text when asked for.
    let out = fathom()
        .args([
            "scan",
            &source,
            "--content-search",
            &rule,
            "--content-search-store-match",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let report = &doc["content_search"];
    assert_eq!(report["rules"][0]["name"], "PASSWORD", "{report}");
    let got: Vec<(&str, u64, &str)> = report["matches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["path"].as_str().unwrap(),
                m["line"].as_u64().unwrap(),
                m["text"].as_str().unwrap(),
            )
        })
        .collect();
    let visible = format!("password = {VISIBLE_SECRET}");
    let big = format!("password = {}", HIDDEN[2]);
    // Under scan's default size cap (1 MiB) the file the stored test's 4 KiB cap skips is searched; the
    // deleted file and the binary never are.
    assert_eq!(
        got,
        [
            ("/etc/app.conf", 3, visible.as_str()),
            ("/srv/big.conf", 1, big.as_str())
        ]
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !text.contains(HIDDEN[0]) && !text.contains(HIDDEN[1]),
        "{text}"
    );
    // Without the store flag: no text. Without rules: no report at all.
    let out = fathom()
        .args(["scan", &source, "--content-search", &rule])
        .output()
        .unwrap();
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        doc["content_search"]["matches"][0].get("text").is_none(),
        "{doc}"
    );
    let out = fathom().args(["scan", &source]).output().unwrap();
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(doc.get("content_search").is_none());

    // check --policy: the gate answers from the analysis just made.
    let policy = bundle(tmp.path());
    let check = |extra: &[&str]| {
        fathom()
            .args(["check", &source, "--policy"])
            .arg(&policy)
            .args(["-o", "json"])
            .args(extra)
            .output()
            .unwrap()
    };
    let out = check(&["--content-search", &rule]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let eval: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        fired(&eval),
        [
            fire_text("/etc/app.conf", "PASSWORD", PASSWORD),
            fire_text("/srv/big.conf", "PASSWORD", PASSWORD),
        ]
    );
    // Without rules nothing was searched, and the gate, as anchore's, does not fire: GO (exit 0).
    let out = check(&[]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let eval: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(eval["final_action"], "GO", "{eval}");
    assert_eq!(fired(&eval), Vec::<String>::new(), "{eval}");

    // A bad pattern or a malformed flag is refused before anything is read.
    let out = check(&["--content-search", "BROKEN=("]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("BROKEN"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = fathom()
        .args(["scan", &source, "--content-search", "no-equals-sign"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("NAME=REGEX"));
}

//! Retrieved files end to end: two generated images sharing a base layer, pushed to the real test
//! registry, analyzed by a real worker with the default `retrieve_files` (anchore's list); the stored rows
//! (per layer, the shared base stored once, never /etc/shadow) and the `passwd_file` and
//! `retrieved_files` gates through the core's check.

mod support;

use fathom_testkit::image::{layer_tar, BuiltImage, BuiltLayer, Compress};
use fathom_testkit::samples::SampleEntry;
use reqwest::StatusCode;
use serde_json::{json, Value};
use support::api::{Api, Client};
use support::{WorkerProc, WorkerSpec};

const SHADOW_HASH: &str = "$6$fathomsalt$notarealhash";

fn base() -> Vec<SampleEntry> {
    vec![
        SampleEntry::dir("/etc"),
        SampleEntry::file(
            "/etc/passwd",
            b"root:x:0:0:root:/root:/bin/sh\nbin:x:1:1:bin:/bin:/usr/sbin/nologin\n",
        ),
        SampleEntry::file("/etc/services", b"ssh 22/tcp\n"),
        SampleEntry::file("/etc/sudoers", b"root ALL=(ALL) ALL\n"),
        SampleEntry::file(
            "/etc/shadow",
            format!("root:{SHADOW_HASH}:19000:0:99999:7:::\n").as_bytes(),
        ),
    ]
}

/// `app`: the base plus a layer that adds a user with bash and deletes /etc/sudoers.
/// `plain`: the base plus an unrelated layer.
fn images() -> (BuiltImage, BuiltImage) {
    let layer = |entries: &[SampleEntry]| {
        BuiltLayer::from_tar(&layer_tar(entries).unwrap(), Compress::Gzip).unwrap()
    };
    let app = BuiltImage::from_layers(
        "retrieved-app",
        Default::default(),
        vec![
            layer(&base()),
            layer(&[
                SampleEntry::file(
                    "/etc/passwd",
                    b"root:x:0:0:root:/root:/bin/sh\nbin:x:1:1:bin:/bin:/usr/sbin/nologin\napp:x:1000:1000::/app:/bin/bash\n",
                ),
                SampleEntry::file("/etc/.wh.sudoers", b""),
            ]),
        ],
    );
    let plain = BuiltImage::from_layers(
        "retrieved-plain",
        Default::default(),
        vec![
            layer(&base()),
            layer(&[
                SampleEntry::dir("/srv"),
                SampleEntry::file("/srv/x", b"x\n"),
            ]),
        ],
    );
    (app, plain)
}

async fn check(client: &Client, digest: &str, id: &str, rules: Value) -> Value {
    let bundle = json!({
        "id": id, "version": "1_0", "name": id,
        "policies": [{"id": "p", "version": "1_0", "rules": rules}],
        "whitelists": [],
        "mappings": [{"id": "all", "registry": "*", "repository": "*",
                      "image": {"type": "tag", "value": "*"}, "policy_ids": ["p"], "whitelist_ids": []}],
    });
    let (status, stored) = client.post("/v1/policies", bundle).await;
    assert_eq!(status, StatusCode::CREATED, "{stored}");
    let (status, evaluation) = client
        .get(&format!("/v1/images/{digest}/check?policy_id={id}"))
        .await;
    assert_eq!(status, StatusCode::OK, "{evaluation}");
    evaluation
}

fn outputs(evaluation: &Value) -> Vec<String> {
    let mut out: Vec<String> = evaluation["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["check_output"].as_str().unwrap().to_string())
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwd_and_retrieved_files_are_stored_per_layer_merged_and_gated() {
    let db = support::test_db().await;
    let dir = tempfile::tempdir().unwrap();
    let (app, plain) = images();
    let app_ref = format!(
        "{}/{}",
        support::registry(),
        support::push_image("retrieved-app", &app).await
    );
    let plain_ref = format!(
        "{}/{}",
        support::registry(),
        support::push_image("retrieved-plain", &plain).await
    );
    let api = Api::start_with_analyzer(dir.path(), db.url(), "", "");
    let client = api.client();
    let _worker = WorkerProc::start(dir.path(), "w0", db.url(), &WorkerSpec::default());
    client.submit_and_wait(&app_ref).await;
    client.submit_and_wait(&plain_ref).await;

    // Rows per layer: the shared base layer's three files once (two images use it), the app layer's
    // /etc/passwd; never /etc/shadow.
    let store = fathom_worker::store::Store::connect_lazy(db.url(), 1).unwrap();
    let rows: Vec<(String, String, Vec<u8>)> = sqlx::query_as(
        "SELECT layer_digest, path, content FROM fathom_layer_retrieved_files ORDER BY layer_digest, path",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    let base_digest = app.layers[0].digest();
    let base_rows: Vec<&str> = rows
        .iter()
        .filter(|r| r.0 == base_digest)
        .map(|r| r.1.as_str())
        .collect();
    assert_eq!(base_rows, ["/etc/passwd", "/etc/services", "/etc/sudoers"]);
    assert_eq!(
        rows.len(),
        4,
        "{:?}",
        rows.iter().map(|r| (&r.0, &r.1)).collect::<Vec<_>>()
    );
    let everything: String = rows
        .iter()
        .map(|r| String::from_utf8_lossy(&r.2).into_owned())
        .collect();
    assert!(!everything.contains(SHADOW_HASH));
    assert!(rows.iter().all(|r| r.1 != "/etc/shadow"));

    // passwd_file reads the upper layer's /etc/passwd.
    let shells = json!([{"gate": "passwd_file", "trigger": "blacklist_shells", "action": "STOP",
                         "params": [{"name": "shells", "value": "/bin/bash"}]}]);
    let app_check = check(&client, &app.manifest_digest(), "shells", shells.clone()).await;
    assert_eq!(app_check["final_action"], "STOP", "{app_check}");
    assert_eq!(
        outputs(&app_check),
        ["Blacklisted shell '/bin/bash' found in image's /etc/passwd: pentry=app:x:1000:1000::/app:/bin/bash"]
    );
    let plain_check = check(&client, &plain.manifest_digest(), "shells2", shells).await;
    assert_eq!(plain_check["final_action"], "GO", "{plain_check}");

    // retrieved_files: the deleted /etc/sudoers is not available in app, but is in plain; a regex over
    // /etc/services.
    let rules = json!([
        {"gate": "retrieved_files", "trigger": "content_not_available", "action": "WARN",
         "params": [{"name": "path", "value": "/etc/sudoers"}]},
        {"gate": "retrieved_files", "trigger": "content_regex", "action": "STOP",
         "params": [{"name": "path", "value": "/etc/services"}, {"name": "check", "value": "match"},
                    {"name": "regex", "value": "22/.*"}]},
        {"gate": "passwd_file", "trigger": "content_not_available", "action": "STOP", "params": []}
    ]);
    let app_check = check(&client, &app.manifest_digest(), "files", rules.clone()).await;
    assert_eq!(
        outputs(&app_check),
        [
            "Cannot locate file in the image analysis",
            "Content regex '22/.*' check 'match' found in retrieved file '/etc/services'",
        ],
        "{app_check}"
    );
    let plain_check = check(&client, &plain.manifest_digest(), "files2", rules).await;
    assert_eq!(
        outputs(&plain_check),
        ["Content regex '22/.*' check 'match' found in retrieved file '/etc/services'"]
    );
}

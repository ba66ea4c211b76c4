//! `fathom notifications test NAME`: a signed test event to a configured endpoint (a real HTTP receiver on
//! loopback), its answer printed; a refusal and an unknown name exit non-zero; the secret is never printed.
//! `fathom events list` and `notifications deliveries|retry` print the same through `--api` as on the
//! database.

mod support;

use support::receiver::{Mode, Receiver};

const SECRET: &str = "whsec-notify-cli-test-77a1";
const SECRET_ENV: &str = "FATHOM_TEST_NOTIFY_CLI_SECRET";

fn endpoint(name: &str, url: &str) -> String {
    format!("      - {{name: {name}, url: '{url}', secret_env: {SECRET_ENV}}}\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_test_sends_a_signed_event_and_prints_the_answer() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start(SECRET).await;
    rx.set("refuses", Mode::Status(500));
    let config = dir.path().join("core.yaml");
    std::fs::write(
        &config,
        format!(
            "services:\n  notifications:\n    endpoints:\n{}{}",
            endpoint("ops", &rx.url("ops")),
            endpoint("refuses", &rx.url("refuses"))
        ),
    )
    .unwrap();
    let run = move |name: &str| {
        support::fathom()
            .args(["notifications", "test", "--config"])
            .arg(&config)
            .arg(name)
            .env(SECRET_ENV, SECRET)
            .output()
            .unwrap()
    };
    let out = tokio::task::spawn_blocking(move || (run("ops"), run("refuses"), run("nobody")))
        .await
        .unwrap();
    let text = |o: &std::process::Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };
    assert!(out.0.status.success(), "{}", text(&out.0));
    assert!(text(&out.0).contains("ops: HTTP 204"), "{}", text(&out.0));
    let got = rx.got("ops");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].verified, Ok(()));
    assert_eq!(got[0].event["type"], "dev.fathom.notifications.test");
    assert!(!out.1.status.success());
    assert!(text(&out.1).contains("HTTP 500"), "{}", text(&out.1));
    assert!(!out.2.status.success());
    assert!(
        text(&out.2).contains("no endpoint \"nobody\""),
        "{}",
        text(&out.2)
    );
    for o in [&out.0, &out.1, &out.2] {
        assert!(!text(o).contains(SECRET), "the secret was printed");
    }
}

/// `fathom ARGS` with `DATABASE_URL` unset; (success, stdout + stderr).
fn run_cli(args: &[&str]) -> (bool, String) {
    let out = support::fathom().args(args).output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_and_deliveries_read_and_retry_the_same_through_the_api_as_on_the_database() {
    std::env::set_var(SECRET_ENV, SECRET);
    let db = support::test_db().await;
    let pool = sqlx::PgPool::connect(db.url()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start(SECRET).await;
    rx.set("down", Mode::Status(500));
    // Deliveries to `down` die after a second of failing.
    let notifications = format!(
        "  catalog:\n    enabled: false\n  notifications:\n    source: https://fathom.test\n    \
         poll_interval: 200ms\n    backoff_base: 100ms\n    backoff_cap: 300ms\n    probe_interval: 300ms\n    \
         retry_window: 1s\n    endpoints:\n{}",
        endpoint("down", &rx.url("down"))
    );
    let api = support::api::Api::start(dir.path(), db.url(), &notifications);
    let events: Vec<fathom_notify::NewEvent> = ["sha256:aaaa", "sha256:bbbb"]
        .iter()
        .map(|s| {
            fathom_notify::NewEvent::new(
                fathom_notify::types::IMAGE_ANALYZED,
                *s,
                serde_json::json!({"n": 1}),
            )
        })
        .collect();
    let mut tx = pool.begin().await.unwrap();
    fathom_notify::write_many(&mut tx, &events).await.unwrap();
    tx.commit().await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let dead: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM notify_deliveries WHERE endpoint = 'down' AND state = 'dead'",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        if dead == 2 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never dead: {dead}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }

    let url = db.url().to_string();
    let base = api.base.clone();
    let on_db = move |args: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        a.extend(["--database-url".to_string(), url.clone()]);
        a
    };
    let on_api = move |args: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        a.extend([
            "--api".to_string(),
            base.clone(),
            "--token".to_string(),
            support::api::TOKEN.to_string(),
        ]);
        a
    };
    let outputs = tokio::task::spawn_blocking(move || {
        let both = |args: &[&str]| {
            let run = |a: Vec<String>| {
                let a: Vec<&str> = a.iter().map(String::as_str).collect();
                run_cli(&a)
            };
            (run(on_db(args)), run(on_api(args)))
        };
        vec![
            both(&["events", "list", "--type", "dev.fathom.image."]),
            both(&["events", "list", "--subject", "sha256:bbbb", "--json"]),
            both(&["notifications", "deliveries", "--state", "dead"]),
            both(&[
                "notifications",
                "deliveries",
                "--endpoint",
                "down",
                "--json",
            ]),
        ]
    })
    .await
    .unwrap();
    for ((db_ok, db_out), (api_ok, api_out)) in &outputs {
        assert!(*db_ok && *api_ok, "{db_out}\n{api_out}");
        assert_eq!(db_out, api_out, "the API prints what the database does");
    }
    let listed = &outputs[0].0 .1;
    assert!(
        listed.contains("sha256:aaaa") && listed.contains("sha256:bbbb"),
        "{listed}"
    );
    let one: serde_json::Value = serde_json::from_str(outputs[1].1 .1.trim()).unwrap();
    assert_eq!(one["subject"], "sha256:bbbb");
    assert_eq!(
        outputs[2].1 .1.matches(" dead ").count(),
        2,
        "{}",
        outputs[2].1 .1
    );

    // Retried through the API: both back to pending.
    let base = api.base.clone();
    let (ok, out) = tokio::task::spawn_blocking(move || {
        run_cli(&[
            "notifications",
            "retry",
            "--endpoint",
            "down",
            "--api",
            &base,
            "--token",
            support::api::TOKEN,
        ])
    })
    .await
    .unwrap();
    assert!(ok, "{out}");
    assert!(out.contains("2 dead deliveries back to pending"), "{out}");
}

//! `fathom notifications test NAME`: a signed test event to a configured endpoint (a real HTTP receiver on
//! loopback), its answer printed; a refusal and an unknown name exit non-zero; the secret is never printed.

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

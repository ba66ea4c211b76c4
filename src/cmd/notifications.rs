//! `fathom events list` (the event log) and `fathom notifications deliveries|retry|test` (what is owed to
//! whom, dead deliveries back to pending, a signed test event to one endpoint). Tables for people,
//! `--json` for machines. `events`, `deliveries` and `retry` read the database or, with `--api`, the
//! core's API (`/v1/events`, `/v1/notifications/deliveries`), and print the same either way; `test`
//! sends from this process, with the endpoint of the configuration.

use std::io::Write;
use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::Context;
use fathom_notify::envelope::{CloudEvent, TEST_EVENT};
use fathom_notify::log::EventFilter;
use fathom_notify::send::{Outcome, Target};
use reqwest::Method;
use serde_json::{json, Value};

use super::client::ClientArgs;

/// Arguments of `fathom events`.
#[derive(clap::Args, Debug)]
pub struct EventsArgs {
    /// Where to read: the database, or the core's API.
    #[command(flatten)]
    client: ClientArgs,
    #[command(subcommand)]
    command: EventsCommand,
}

#[derive(clap::Subcommand, Debug)]
enum EventsCommand {
    /// The event log in write order.
    List(EventsList),
}

#[derive(clap::Args, Debug)]
struct EventsList {
    /// An exact type, or a prefix ending in a dot (`dev.fathom.image.`).
    #[arg(long = "type", value_name = "TYPE")]
    kind: Option<String>,
    /// An exact subject.
    #[arg(long)]
    subject: Option<String>,
    /// Events since T: an RFC 3339 time or a duration ago (`2h`).
    #[arg(long, value_name = "T")]
    since: Option<String>,
    /// Most events to print.
    #[arg(long, default_value_t = 100)]
    limit: u32,
    /// Events after this seq (the last one printed before).
    #[arg(long)]
    after: Option<i64>,
}

/// Arguments of `fathom notifications`.
#[derive(clap::Args, Debug)]
pub struct NotificationsArgs {
    /// Where to work: the database, or the core's API (`test` reads `--config` and sends itself).
    #[command(flatten)]
    client: ClientArgs,
    #[command(subcommand)]
    command: NotificationsCommand,
}

#[derive(clap::Subcommand, Debug)]
enum NotificationsCommand {
    /// Deliveries per (event, endpoint): what is owed to whom.
    Deliveries(DeliveriesList),
    /// Put dead deliveries back to pending with a fresh retry window.
    Retry(RetryArgs),
    /// Send a signed test event to the endpoint NAME of the configuration and print its answer.
    Test(TestArgs),
}

#[derive(clap::Args, Debug)]
struct DeliveriesList {
    /// pending, delivered or dead.
    #[arg(long, value_parser = ["pending", "delivered", "dead"])]
    state: Option<String>,
    /// Only this endpoint.
    #[arg(long)]
    endpoint: Option<String>,
    /// Most deliveries to print.
    #[arg(long, default_value_t = 100)]
    limit: u32,
}

#[derive(clap::Args, Debug)]
struct RetryArgs {
    /// Only deliveries to this endpoint.
    #[arg(long)]
    endpoint: Option<String>,
    /// Only deliveries of events since T: an RFC 3339 time or a duration ago (`2h`).
    #[arg(long, value_name = "T")]
    since: Option<String>,
}

#[derive(clap::Args, Debug)]
struct TestArgs {
    /// The endpoint's name.
    name: String,
}

/// `--since` as RFC 3339 text for the database.
fn since(text: Option<&str>) -> anyhow::Result<Option<String>> {
    text.map(|t| {
        let at = super::queue_retry::parse_since(t, SystemTime::now())?;
        Ok(humantime::format_rfc3339_micros(at).to_string())
    })
    .transpose()
}

/// Prints items (events or deliveries, as the API and the database both give them): one JSON object
/// a line, or a table of `columns` (header, width, field; width 0: the last, unpadded).
fn print_rows(items: &[Value], json: bool, columns: &[(&str, usize, &str)]) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        for item in items {
            serde_json::to_writer(&mut out, item)?;
            writeln!(out)?;
        }
        return Ok(());
    }
    let line = |cells: Vec<String>| -> String {
        cells
            .iter()
            .zip(columns)
            .map(|(cell, (_, width, field))| match *width {
                0 => cell.clone(),
                w if matches!(*field, "seq" | "id" | "attempts") => format!("{cell:>w$}"),
                w => format!("{cell:<w$}"),
            })
            .collect::<Vec<_>>()
            .join("  ")
    };
    writeln!(
        out,
        "{}",
        line(columns.iter().map(|(h, _, _)| h.to_string()).collect())
    )?;
    for item in items {
        let cells = columns
            .iter()
            .map(|(_, _, field)| match &item[*field] {
                Value::String(s) => s.clone(),
                Value::Null => "-".to_string(),
                other => other.to_string(),
            })
            .collect();
        writeln!(out, "{}", line(cells))?;
    }
    Ok(())
}

/// A page's items from the API's `{"items": [...], "next"?}`.
fn items(page: Value) -> Vec<Value> {
    match page {
        Value::Object(mut o) => match o.remove("items") {
            Some(Value::Array(items)) => items,
            _ => Vec::new(),
        },
        _ => Vec::new(),
    }
}

/// Runs `fathom events`.
pub fn run_events(args: EventsArgs) -> anyhow::Result<ExitCode> {
    let EventsCommand::List(list) = &args.command;
    let since = since(list.since.as_deref())?;
    let limit = list.limit.max(1);
    let events: Vec<Value> = super::runtime()?.block_on(async {
        if let Some(api) = args.client.api()? {
            let mut query = vec![("limit", limit.to_string())];
            let optional = [
                ("type", list.kind.clone()),
                ("subject", list.subject.clone()),
                ("since", since.clone()),
                ("cursor", list.after.map(|a| a.to_string())),
            ];
            query.extend(optional.into_iter().filter_map(|(k, v)| v.map(|v| (k, v))));
            let page = api
                .call(Method::GET, "/v1/events", &query, None, "events list")
                .await?;
            return anyhow::Ok(items(page));
        }
        let (_, pool) = args.client.database().await?;
        let filter = EventFilter {
            kind: list.kind.clone(),
            subject: list.subject.clone(),
            since,
            cursor: list.after,
            limit: i64::from(limit),
        };
        let (events, _) = fathom_notify::log::events(&pool, &filter)
            .await
            .context("reading the event log (has `fathom migrate` run?)")?;
        Ok(events
            .iter()
            .map(serde_json::to_value)
            .collect::<Result<_, _>>()?)
    })?;
    print_rows(
        &events,
        args.client.json,
        &[
            ("SEQ", 8, "seq"),
            ("TIME", 27, "time"),
            ("TYPE", 44, "type"),
            ("SUBJECT", 0, "subject"),
        ],
    )?;
    Ok(ExitCode::SUCCESS)
}

/// Runs `fathom notifications`.
pub fn run_notifications(args: NotificationsArgs) -> anyhow::Result<ExitCode> {
    match &args.command {
        NotificationsCommand::Deliveries(a) => deliveries(&args.client, a),
        NotificationsCommand::Retry(a) => retry(&args.client, a),
        NotificationsCommand::Test(a) => test(&args.client, a),
    }
}

fn deliveries(client: &ClientArgs, args: &DeliveriesList) -> anyhow::Result<ExitCode> {
    let limit = args.limit.max(1);
    let rows: Vec<Value> = super::runtime()?.block_on(async {
        if let Some(api) = client.api()? {
            let mut query = vec![("limit", limit.to_string())];
            let optional = [
                ("state", args.state.clone()),
                ("endpoint", args.endpoint.clone()),
            ];
            query.extend(optional.into_iter().filter_map(|(k, v)| v.map(|v| (k, v))));
            let page = api
                .call(
                    Method::GET,
                    "/v1/notifications/deliveries",
                    &query,
                    None,
                    "notifications deliveries",
                )
                .await?;
            return anyhow::Ok(items(page));
        }
        let (_, pool) = client.database().await?;
        let (rows, _) = fathom_notify::log::deliveries(
            &pool,
            args.state.as_deref(),
            args.endpoint.as_deref(),
            None,
            i64::from(limit),
        )
        .await
        .context("reading deliveries (has `fathom migrate` run?)")?;
        Ok(rows
            .iter()
            .map(serde_json::to_value)
            .collect::<Result<_, _>>()?)
    })?;
    print_rows(
        &rows,
        client.json,
        &[
            ("ID", 8, "id"),
            ("ENDPOINT", 16, "endpoint"),
            ("STATE", 9, "state"),
            ("ATTEMPTS", 8, "attempts"),
            ("TYPE", 40, "event_type"),
            ("SUBJECT", 30, "subject"),
            ("LAST ERROR", 0, "last_error"),
        ],
    )?;
    Ok(ExitCode::SUCCESS)
}

fn retry(client: &ClientArgs, args: &RetryArgs) -> anyhow::Result<ExitCode> {
    let since = since(args.since.as_deref())?;
    let n: u64 = super::runtime()?.block_on(async {
        if let Some(api) = client.api()? {
            let body = json!({"endpoint": args.endpoint, "since": since});
            let answer = api
                .call(
                    Method::POST,
                    "/v1/notifications/deliveries/retry",
                    &[],
                    Some(&body),
                    "notifications retry",
                )
                .await?;
            return answer["retried"]
                .as_u64()
                .with_context(|| format!("notifications retry: unexpected answer {answer}"));
        }
        let (_, pool) = client.database().await?;
        fathom_notify::deliveries::retry(&pool, args.endpoint.as_deref(), since.as_deref())
            .await
            .context("retrying dead deliveries (has `fathom migrate` run?)")
    })?;
    if client.json {
        println!("{}", json!({ "retried": n }));
    } else {
        println!("{n} dead deliveries back to pending");
    }
    Ok(ExitCode::SUCCESS)
}

fn test(client: &ClientArgs, args: &TestArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        client.config.is_some(),
        "notifications test sends from here with the endpoint of the core's configuration: give --config FILE"
    );
    let config = client.load()?;
    let section = &config.services.notifications;
    let Some(i) = section.endpoints.iter().position(|e| e.name == args.name) else {
        let names: Vec<&str> = section.endpoints.iter().map(|e| e.name.as_str()).collect();
        anyhow::bail!(
            "no endpoint {:?} in services.notifications.endpoints (configured: {})",
            args.name,
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        );
    };
    let target = Target::new(
        &section.endpoints[i],
        &format!("services.notifications.endpoints[{i}]"),
        |k| std::env::var(k).ok(),
    )?;
    let now = SystemTime::now();
    let event = CloudEvent::new(
        format!(
            "test-{}",
            now.duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        ),
        section.source.clone(),
        TEST_EVENT,
        args.name.clone(),
        humantime::format_rfc3339_micros(now).to_string(),
        serde_json::json!({ "test": true, "endpoint": args.name }),
    );
    let answer = super::runtime()?.block_on(target.send(&event));
    let (ok, status, error) = match &answer.outcome {
        Outcome::Delivered { status } => (true, Some(*status), None),
        Outcome::Failed { status, error, .. } => (false, *status, Some(error.clone())),
    };
    if client.json {
        println!(
            "{}",
            serde_json::json!({
                "endpoint": args.name, "delivered": ok, "status": status, "error": error,
                "body": answer.body, "elapsed_ms": answer.elapsed.as_millis() as u64, "event_id": event.id,
            })
        );
    } else {
        match (ok, status, &error) {
            (true, Some(s), _) => println!(
                "{}: HTTP {s} in {:?} — delivered",
                args.name, answer.elapsed
            ),
            (_, _, Some(e)) => println!(
                "{}: not delivered after {:?}: {e}",
                args.name, answer.elapsed
            ),
            _ => println!("{}: no answer", args.name),
        }
        if !answer.body.is_empty() {
            println!("{}", answer.body);
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

//! `fathom events list` (the event log) and `fathom notifications deliveries|retry|test` (what is owed to
//! whom, dead deliveries back to pending, a signed test event to one endpoint). Tables for people,
//! `--json` for machines.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::Context;
use fathom_notify::envelope::{CloudEvent, TEST_EVENT};
use fathom_notify::log::EventFilter;
use fathom_notify::send::{Outcome, Target};
use sqlx::PgPool;

use crate::config::FathomConfig;

/// Arguments of `fathom events`.
#[derive(clap::Args, Debug)]
pub struct EventsArgs {
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
    /// PostgreSQL connection URL.
    #[arg(long, env = "DATABASE_URL")]
    database_url: String,
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
    /// One JSON object per line, with `data`.
    #[arg(long)]
    json: bool,
}

/// Arguments of `fathom notifications`.
#[derive(clap::Args, Debug)]
pub struct NotificationsArgs {
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
    /// PostgreSQL connection URL.
    #[arg(long, env = "DATABASE_URL")]
    database_url: String,
    /// pending, delivered or dead.
    #[arg(long, value_parser = ["pending", "delivered", "dead"])]
    state: Option<String>,
    /// Only this endpoint.
    #[arg(long)]
    endpoint: Option<String>,
    /// Most deliveries to print.
    #[arg(long, default_value_t = 100)]
    limit: u32,
    /// One JSON object per line.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args, Debug)]
struct RetryArgs {
    /// PostgreSQL connection URL.
    #[arg(long, env = "DATABASE_URL")]
    database_url: String,
    /// Only deliveries to this endpoint.
    #[arg(long)]
    endpoint: Option<String>,
    /// Only deliveries of events since T: an RFC 3339 time or a duration ago (`2h`).
    #[arg(long, value_name = "T")]
    since: Option<String>,
    /// `{"retried": N}`.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args, Debug)]
struct TestArgs {
    /// The core's configuration file (the endpoint, its secret's variable, headers, timeout).
    #[arg(long)]
    config: PathBuf,
    /// The endpoint's name.
    name: String,
    /// The answer as one JSON object.
    #[arg(long)]
    json: bool,
}

/// `--since` as RFC 3339 text for the database.
fn since(text: Option<&str>) -> anyhow::Result<Option<String>> {
    text.map(|t| {
        let at = super::queue_retry::parse_since(t, SystemTime::now())?;
        Ok(humantime::format_rfc3339_micros(at).to_string())
    })
    .transpose()
}

async fn pool(url: &str) -> anyhow::Result<PgPool> {
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await
        .context("connecting to the database")
}

/// Runs `fathom events`.
pub fn run_events(args: EventsArgs) -> anyhow::Result<ExitCode> {
    let EventsCommand::List(list) = args.command;
    let filter = EventFilter {
        kind: list.kind.clone(),
        subject: list.subject.clone(),
        since: since(list.since.as_deref())?,
        cursor: list.after,
        limit: i64::from(list.limit.max(1)),
    };
    let (events, _) = super::runtime()?.block_on(async {
        let pool = pool(&list.database_url).await?;
        fathom_notify::log::events(&pool, &filter)
            .await
            .context("reading the event log (has `fathom migrate` run?)")
    })?;
    let mut out = std::io::stdout().lock();
    if list.json {
        for e in &events {
            serde_json::to_writer(&mut out, e)?;
            writeln!(out)?;
        }
    } else {
        writeln!(out, "{:>8}  {:<27}  {:<44}  SUBJECT", "SEQ", "TIME", "TYPE")?;
        for e in &events {
            writeln!(
                out,
                "{:>8}  {:<27}  {:<44}  {}",
                e.seq, e.time, e.kind, e.subject
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `fathom notifications`.
pub fn run_notifications(args: NotificationsArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        NotificationsCommand::Deliveries(a) => deliveries(a),
        NotificationsCommand::Retry(a) => retry(a),
        NotificationsCommand::Test(a) => test(a),
    }
}

fn deliveries(args: DeliveriesList) -> anyhow::Result<ExitCode> {
    let (rows, _) = super::runtime()?.block_on(async {
        let pool = pool(&args.database_url).await?;
        fathom_notify::log::deliveries(
            &pool,
            args.state.as_deref(),
            args.endpoint.as_deref(),
            None,
            i64::from(args.limit.max(1)),
        )
        .await
        .context("reading deliveries (has `fathom migrate` run?)")
    })?;
    let mut out = std::io::stdout().lock();
    if args.json {
        for r in &rows {
            serde_json::to_writer(&mut out, r)?;
            writeln!(out)?;
        }
    } else {
        writeln!(
            out,
            "{:>8}  {:<16}  {:<9}  {:>8}  {:<40}  {:<30}  LAST ERROR",
            "ID", "ENDPOINT", "STATE", "ATTEMPTS", "TYPE", "SUBJECT"
        )?;
        for r in &rows {
            writeln!(
                out,
                "{:>8}  {:<16}  {:<9}  {:>8}  {:<40}  {:<30}  {}",
                r.id,
                r.endpoint,
                r.state,
                r.attempts,
                r.event_type,
                r.subject,
                r.last_error.as_deref().unwrap_or("-")
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn retry(args: RetryArgs) -> anyhow::Result<ExitCode> {
    let since = since(args.since.as_deref())?;
    let n = super::runtime()?.block_on(async {
        let pool = pool(&args.database_url).await?;
        fathom_notify::deliveries::retry(&pool, args.endpoint.as_deref(), since.as_deref())
            .await
            .context("retrying dead deliveries (has `fathom migrate` run?)")
    })?;
    if args.json {
        println!("{}", serde_json::json!({ "retried": n }));
    } else {
        println!("{n} dead deliveries back to pending");
    }
    Ok(ExitCode::SUCCESS)
}

fn test(args: TestArgs) -> anyhow::Result<ExitCode> {
    let config = FathomConfig::load(Some(&args.config))?;
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
    if args.json {
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

//! The `fathom` binary: one CLI for every role (scan, worker, autoscaler, core, migrate, demo).

mod cmd;
mod config;
mod core;
mod process_metrics;
mod queue_source;
mod server;
mod services;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// fathom — container-image analysis fleet.
#[derive(Parser, Debug)]
#[command(name = "fathom", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Analyze one image and print its SBOM.
    Scan(cmd::scan::ScanArgs),
    /// Run the whole fleet on this machine: throwaway PostgreSQL, sample images, autoscaled workers.
    #[cfg(feature = "demo")]
    Demo(cmd::demo::DemoArgs),
    /// Print the effective configuration (file + FATHOM_* environment, validated, secrets redacted).
    Config(cmd::config::ConfigArgs),
    /// Apply the database migrations (safe to run concurrently from many pods).
    Migrate(cmd::migrate::MigrateArgs),
    /// Size the analyzer fleet from queue depth (Kubernetes Deployment or local worker processes).
    Autoscaler(Box<cmd::autoscaler::AutoscalerArgs>),
    /// Override, pause or inspect the autoscaler: override N | clear | pause | resume | status.
    Scale(cmd::scale::ScaleArgs),
    /// Run the analyzer worker: claim jobs, analyze, store results (drains on SIGTERM).
    Worker(cmd::worker::WorkerArgs),
    /// Run every service the configuration file enables.
    Run(cmd::run::RunArgs),
    /// Submit images for analysis (prints job ids; --wait follows them to the end).
    Submit(cmd::submit::SubmitArgs),
    /// Show the status of submitted images.
    Status(cmd::status::StatusArgs),
    /// Print the stored analysis of an image in any scan output format.
    Results(cmd::results::ResultsArgs),
    /// Vulnerabilities: sync OSV feeds, list feeds, query an image or a vulnerability across the fleet.
    Vulns(cmd::vulns::VulnsArgs),
    /// Inspect the job queue.
    Queue(cmd::queue::QueueArgs),
    /// The admission webhook: `certs` makes its TLS material without cert-manager.
    Webhook(cmd::webhook::WebhookArgs),
    /// Evaluate an image against a policy bundle: a stored one, or with --policy any scan source analyzed
    /// now without a database. Exit 0 pass (GO/WARN), 1 fail (STOP), 2 error.
    Check(cmd::check::CheckArgs),
    /// Policy bundles: validate a file (every problem with its JSON path).
    Policy(cmd::policy::PolicyArgs),
    /// Watch tags and repositories: add REF | --repository REPO, list, rm ID, history REF.
    Watch(cmd::watch::WatchArgs),
    /// The event log: list (type, subject, since).
    Events(cmd::notifications::EventsArgs),
    /// Notifications: deliveries (what is owed to whom), retry dead ones, test NAME (a signed test event).
    Notifications(cmd::notifications::NotificationsArgs),
    /// Forget stored images: rm DIGEST [--force], prune [--dry-run] (services.catalog.retention).
    Images(cmd::images::ImagesArgs),
}

fn main() -> ExitCode {
    process_metrics::mark_started();
    let cli = Cli::parse();
    init_tracing();
    let result = match cli.command {
        Command::Scan(args) => cmd::scan::run(args),
        #[cfg(feature = "demo")]
        Command::Demo(args) => cmd::demo::run(args),
        Command::Config(args) => cmd::config::run(args),
        Command::Migrate(args) => cmd::migrate::run(args),
        Command::Autoscaler(args) => cmd::autoscaler::run(*args),
        Command::Scale(args) => cmd::scale::run(args),
        Command::Worker(args) => cmd::worker::run(args),
        Command::Run(args) => cmd::run::run(args),
        Command::Submit(args) => cmd::submit::run(args),
        Command::Status(args) => cmd::status::run(args),
        Command::Results(args) => cmd::results::run(args),
        Command::Queue(args) => cmd::queue::run(args),
        Command::Vulns(args) => cmd::vulns::run(args),
        Command::Webhook(args) => cmd::webhook::run(args),
        Command::Check(args) => cmd::check::run(args),
        Command::Policy(args) => cmd::policy::run(args),
        Command::Watch(args) => cmd::watch::run(args),
        Command::Events(args) => cmd::notifications::run_events(args),
        Command::Notifications(args) => cmd::notifications::run_notifications(args),
        Command::Images(args) => cmd::images::run(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            if is_broken_pipe(&err) {
                return ExitCode::SUCCESS;
            }
            eprintln!("fathom: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("FATHOM_LOG").unwrap_or_else(|_| EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// A downstream `head` closing the pipe is not an error worth printing.
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

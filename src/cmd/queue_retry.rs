//! `fathom queue retry`: requeue finished (`dead`, `failed`) jobs, keeping their history, e.g. after a
//! registry outage outlasted their budget.

use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use fathom_queue::{JobState, Queue, QueueConfig, Requeue};

/// Arguments of `fathom queue retry`.
#[derive(clap::Args, Debug)]
pub struct RetryArgs {
    /// PostgreSQL connection URL.
    #[arg(long, env = "DATABASE_URL")]
    database_url: String,
    /// Requeue dead jobs (out of attempts or time budget). With neither flag, both dead and failed.
    #[arg(long)]
    dead: bool,
    /// Requeue failed jobs (permanent errors).
    #[arg(long)]
    failed: bool,
    /// Only jobs of this image reference.
    #[arg(long, value_name = "R")]
    reference: Option<String>,
    /// Only jobs finished since T: an RFC 3339 time or a duration ago (`2h`).
    #[arg(long, value_name = "T")]
    since: Option<String>,
    /// One JSON object: `{"requeued": [ids]}`.
    #[arg(long)]
    json: bool,
}

/// `T` of `--since`: an RFC 3339 time, or a duration meaning that long ago.
pub fn parse_since(text: &str, now: SystemTime) -> anyhow::Result<SystemTime> {
    if let Ok(t) = humantime::parse_rfc3339_weak(text) {
        return Ok(t);
    }
    let ago: Duration = humantime::parse_duration(text)
        .with_context(|| format!("--since {text:?}: neither an RFC 3339 time nor a duration"))?;
    now.checked_sub(ago)
        .with_context(|| format!("--since {text:?}: too long ago"))
}

impl RetryArgs {
    fn filter(&self) -> anyhow::Result<Requeue> {
        let mut states = Vec::new();
        if self.dead {
            states.push(JobState::Dead);
        }
        if self.failed {
            states.push(JobState::Failed);
        }
        Ok(Requeue {
            states,
            id: None,
            reference: self.reference.clone(),
            since: self
                .since
                .as_deref()
                .map(|t| parse_since(t, SystemTime::now()))
                .transpose()?,
        })
    }
}

/// Runs `fathom queue retry`.
pub fn run(args: RetryArgs) -> anyhow::Result<ExitCode> {
    let filter = args.filter()?;
    let ids = super::runtime()?.block_on(async {
        let queue = Queue::connect(
            &args.database_url,
            QueueConfig {
                pool_size: 1,
                ..Default::default()
            },
        )?;
        anyhow::Ok(queue.requeue(&filter).await?)
    })?;
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &serde_json::json!({ "requeued": ids }))?;
        writeln!(out)?;
    } else {
        let list: Vec<String> = ids.iter().map(i64::to_string).collect();
        writeln!(out, "requeued {} jobs {}", ids.len(), list.join(" "))?;
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_a_time_or_a_duration_ago() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(10_000);
        assert_eq!(
            parse_since("2h", now).unwrap(),
            now - Duration::from_secs(7200)
        );
        assert_eq!(
            parse_since("1970-01-01T00:01:40Z", now).unwrap(),
            SystemTime::UNIX_EPOCH + Duration::from_secs(100)
        );
        assert!(parse_since("yesterday-ish", now).is_err());
    }
}

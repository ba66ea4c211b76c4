//! Passes: every watched tag resolved, or every watched repository listed, each host's share spread over
//! the interval ([`crate::schedule`]) and paced ([`crate::watcher`]). A tag's new digest and its analysis
//! commit in one transaction; unchanged tags are written in batches.

use std::collections::HashSet;
use std::time::Duration;

use fathom_analyzer::source::reference::ImageRef;
use fathom_analyzer::AnalyzeError;
use fathom_notify::data::TagMoved;
use fathom_notify::Event;
use futures_util::StreamExt;
use tokio::time::Instant;

use crate::catalog::Catalog;
use crate::decide::{decide, plan_repository, Change, Filters};
use crate::error::Result;
use crate::model::PassReport;
use crate::schedule::{self, HostPlan};
use crate::store::{self, RepositoryTarget, TagTarget};
use crate::PassKind;

/// Unchanged watches written per statement.
const UNCHANGED_BATCH: usize = 500;

/// Looks at one host in flight at most (each still starts at its own slot, within the host's rate).
const IN_FLIGHT_PER_HOST: usize = 8;

/// What one host's share of a pass found.
#[derive(Default)]
struct Tally {
    changed: usize,
    problems: usize,
}

impl Catalog {
    /// Runs a pass of `kind` now (the caller decided it is due).
    pub async fn pass(&self, kind: PassKind) -> Result<PassReport> {
        match kind {
            PassKind::Tags => self.tag_pass().await,
            PassKind::Repositories => self.repository_pass().await,
        }
    }

    /// Resolves every watched tag once, spread over `services.catalog.watch_interval`.
    pub async fn tag_pass(&self) -> Result<PassReport> {
        let targets = store::tag_targets(&self.pool).await?;
        let interval = self.config.watch_interval;
        self.spread(
            PassKind::Tags,
            interval,
            &targets,
            |t| &t.host,
            |plan| self.tag_host(plan, &targets),
        )
        .await
    }

    /// Lists every watched repository once, spread over `services.catalog.repository_interval`.
    pub async fn repository_pass(&self) -> Result<PassReport> {
        let targets = store::repository_targets(&self.pool).await?;
        let interval = self.config.repository_interval;
        self.spread(
            PassKind::Repositories,
            interval,
            &targets,
            |t| &t.host,
            |plan| self.repository_host(plan, &targets),
        )
        .await
    }

    /// Plans `targets` by host and runs every host's share at once; sums the report.
    async fn spread<'a, T, F, Fut>(
        &'a self,
        kind: PassKind,
        interval: Duration,
        targets: &'a [T],
        host: impl Fn(&T) -> &String,
        run: F,
    ) -> Result<PassReport>
    where
        F: Fn(HostPlan) -> Fut,
        Fut: std::future::Future<Output = Result<Tally>> + 'a,
    {
        let started = Instant::now();
        let before = self.watcher.counts().get();
        let plans = schedule::plan(
            targets.iter().map(|t| host(t).as_str()),
            interval,
            self.config.requests_per_second_per_host,
        );
        let hosts = plans.len();
        let mut report = PassReport {
            watches: targets.len(),
            hosts,
            ..PassReport::default()
        };
        for plan in &plans {
            self.watcher.metrics().host(&plan.host);
        }
        let open = self.open_breakers().await;
        let runs = plans.into_iter().filter_map(|plan| {
            if open.contains(&plan.host) {
                tracing::info!(host = %plan.host, "catalog: registry breaker open, host skipped this pass");
                None
            } else {
                Some(run(plan))
            }
        });
        let runs: Vec<_> = runs.collect();
        report.skipped_hosts = hosts - runs.len();
        for tally in futures_util::future::join_all(runs).await {
            let tally = tally?;
            report.changed += tally.changed;
            report.problems += tally.problems;
        }
        let after = self.watcher.counts().get();
        report.heads = after.0 - before.0;
        report.manifests = after.1 - before.1;
        report.tags_pages = after.2 - before.2;
        report.wall_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        tracing::debug!(kind = kind.as_str(), ?report, "catalog pass");
        Ok(report)
    }

    /// Hosts whose registry breaker (shared with the analyzers) is open: not asked this pass.
    async fn open_breakers(&self) -> HashSet<String> {
        let rows: std::result::Result<Vec<(String,)>, sqlx::Error> = sqlx::query_as(
            "SELECT host FROM fathom_registry_breakers WHERE state = 'open' AND retry_at > now()",
        )
        .fetch_all(&self.pool)
        .await;
        match rows {
            Ok(rows) => rows.into_iter().map(|(h,)| h).collect(),
            Err(e) => {
                tracing::debug!("catalog: reading registry breakers: {e}");
                HashSet::new()
            }
        }
    }

    async fn tag_host(&self, plan: HostPlan, targets: &[TagTarget]) -> Result<Tally> {
        let start = Instant::now();
        let gap = plan.gap;
        // Each look starts at its slot whether or not the one before has answered (a slow registry
        // must not stretch the pass), at most IN_FLIGHT_PER_HOST at once.
        let looks = plan.items.into_iter().enumerate().map(|(n, i)| async move {
            tokio::time::sleep_until(start + gap.mul_f64(n as f64)).await;
            let target = &targets[i];
            let seen = match ImageRef::parse(&target.reference) {
                Ok(image) => Some(self.watcher.resolve(&image).await),
                Err(_) => None,
            };
            (target, seen)
        });
        let mut looks = futures_util::stream::iter(looks).buffered(IN_FLIGHT_PER_HOST);
        let mut tally = Tally::default();
        let mut unchanged = Vec::new();
        while let Some((target, seen)) = looks.next().await {
            let Some(seen) = seen else { continue };
            match decide(target.digest.as_deref(), &seen) {
                Change::Unchanged => {
                    unchanged.push(target.id);
                    if unchanged.len() >= UNCHANGED_BATCH {
                        store::record_unchanged(&self.pool, &unchanged).await?;
                        unchanged.clear();
                    }
                }
                change => {
                    tally.changed += usize::from(matches!(change, Change::Moved { .. }));
                    tally.problems +=
                        usize::from(matches!(change, Change::Missing(_) | Change::Failing(_)));
                    self.apply(target, change).await?;
                }
            }
        }
        store::record_unchanged(&self.pool, &unchanged).await?;
        Ok(tally)
    }

    /// Records a change; a new digest, its history row and its analysis in one transaction.
    async fn apply(&self, target: &TagTarget, change: Change) -> Result<()> {
        // A new digest gets its work estimate from its manifest, read before the transaction opens.
        let layers = match (&change, ImageRef::parse(&target.reference)) {
            (Change::First(_) | Change::Moved { .. }, Ok(image)) => {
                self.watcher.layers(&image).await
            }
            _ => None,
        };
        let mut tx = self.pool.begin().await?;
        let outcome = match &change {
            Change::First(digest) => {
                let job = self
                    .submit_estimated(&mut tx, &target.reference, true, layers)
                    .await?;
                store::record_digest(&mut tx, target.id, digest, job).await?;
                "first"
            }
            Change::Moved { from, to } => {
                // The tag's own reference, not skipped as analyzed: the stored one is the old digest's.
                let job = self
                    .submit_estimated(&mut tx, &target.reference, false, layers)
                    .await?;
                store::record_digest(&mut tx, target.id, to, job).await?;
                // In the transaction that records the move: the event exists exactly when the move does.
                let moved = TagMoved {
                    reference: target.reference.clone(),
                    previous: from.clone(),
                    digest: to.clone(),
                    job_id: job,
                };
                fathom_notify::write(&mut tx, &moved.event()).await?;
                tracing::info!(reference = %target.reference, %from, %to, ?job, "watched tag moved; analysis queued");
                "moved"
            }
            Change::Missing(answer) => {
                store::record_problem(&mut tx, target.id, "missing", answer).await?;
                tracing::info!(reference = %target.reference, %answer, "watched tag missing");
                "missing"
            }
            Change::Failing(reason) => {
                store::record_problem(&mut tx, target.id, "failing", reason).await?;
                "failing"
            }
            Change::Unchanged => return Ok(()),
        };
        tx.commit().await?;
        self.watcher.metrics().change(outcome, 1);
        Ok(())
    }

    async fn repository_host(&self, plan: HostPlan, targets: &[RepositoryTarget]) -> Result<Tally> {
        let start = Instant::now();
        let mut tally = Tally::default();
        for (n, &i) in plan.items.iter().enumerate() {
            tokio::time::sleep_until(start + plan.offset(n)).await;
            let target = &targets[i];
            match self.look_again(target).await? {
                Some(added) if added > 0 => tally.changed += 1,
                Some(_) => {}
                None => tally.problems += 1,
            }
        }
        Ok(tally)
    }

    /// Lists one watched repository and adds its new tags; `None` when the registry did not answer.
    async fn look_again(&self, target: &RepositoryTarget) -> Result<Option<usize>> {
        let Ok(image) = ImageRef::parse(&target.reference) else {
            return Ok(Some(0));
        };
        let listed = match self.list_tags(&image).await {
            Ok(tags) => tags,
            Err(e) => {
                let status = match e {
                    AnalyzeError::ManifestUnknown { .. } => "missing",
                    _ => "failing",
                };
                let mut conn = self.pool.acquire().await?;
                store::record_problem(&mut conn, target.id, status, &e.to_string()).await?;
                self.watcher.metrics().change(status, 1);
                return Ok(None);
            }
        };
        // Patterns were checked when the watch was made; one that no longer compiles filters nothing
        // in rather than everything.
        let filters = Filters::new(target.include_re.as_deref(), target.exclude_re.as_deref())
            .unwrap_or_else(|_| Filters::new(Some("$^"), None).unwrap_or_default());
        let mut tx = self.pool.begin().await?;
        let (watched, children) =
            store::watched_tags(&mut tx, &target.reference, target.id).await?;
        let watched: HashSet<String> = watched.into_iter().collect();
        let plan = plan_repository(
            &listed,
            &watched,
            &filters,
            usize::try_from(children).unwrap_or(usize::MAX),
            self.config.max_tags_per_repository as usize,
        );
        let added = self
            .add_children(
                &mut tx,
                target.id,
                &target.reference,
                &target.host,
                &plan.add,
            )
            .await?;
        store::record_listing(&mut tx, target.id, listed.len(), plan.capped).await?;
        tx.commit().await?;
        if added > 0 {
            tracing::info!(repository = %target.reference, added, capped = plan.capped, "watched repository: new tags");
            self.watcher.metrics().change("added", added as u64);
        }
        Ok(Some(added))
    }
}

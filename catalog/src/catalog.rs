//! [`Catalog`]: what the watch routes and `fathom watch` do — add a tag or repository watch (checked
//! against the registry first), list, show with history, remove — over the store and the paced watcher.

use std::collections::HashSet;
use std::sync::Arc;

use fathom_analyzer::source::reference::ImageRef;
use fathom_analyzer::source::registry::canonical_reference;
use fathom_analyzer::AnalyzeError;
use fathom_worker::store::{submit_estimated_in, submit_in, SubmitOptions, Submitted};
use sqlx::{PgConnection, PgPool};

use crate::decide::{plan_repository, Filters, RepositoryPlan, Seen};
use crate::error::{Error, Result};
use crate::model::{RepositoryLook, Watch, WatchDetail};
use crate::store::{self, NewWatch};
use crate::watcher::Watcher;
use crate::CatalogConfig;

/// History rows shown with a watch.
pub const HISTORY_SHOWN: i64 = 100;

/// Pages of one repository's tag list read at most (a registry whose `Link`s never end stops here).
pub const MAX_TAG_PAGES: usize = 1000;

/// How the analyses a watch queues are submitted.
#[derive(Debug, Clone)]
pub struct Submission {
    /// The current catalogers key: a first look at a tag analyzed under it queues nothing.
    pub cache_key: String,
    /// Attempts of each queued analysis (`services.api.max_attempts`).
    pub max_attempts: i32,
}

/// A repository watch request.
#[derive(Debug, Clone, Default)]
pub struct RepositoryRequest {
    /// `registry/repository`.
    pub repository: String,
    /// Only tags matching this pattern.
    pub include: Option<String>,
    /// No tags matching this pattern.
    pub exclude: Option<String>,
}

/// The catalog of one process: its database, its paced registry client, its settings.
#[derive(Clone)]
pub struct Catalog {
    pub(crate) pool: PgPool,
    pub(crate) watcher: Arc<Watcher>,
    pub(crate) config: CatalogConfig,
    pub(crate) submission: Submission,
}

impl Catalog {
    /// A catalog on `pool`, asking registries through `watcher`.
    pub fn new(
        pool: PgPool,
        watcher: Arc<Watcher>,
        config: CatalogConfig,
        submission: Submission,
    ) -> Catalog {
        Catalog {
            pool,
            watcher,
            config,
            submission,
        }
    }

    /// The catalog's database pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The paced registry client (its request counts).
    pub fn watcher(&self) -> &Watcher {
        &self.watcher
    }

    pub(crate) fn options(&self, skip_analyzed: bool) -> SubmitOptions {
        SubmitOptions {
            priority: 0,
            max_attempts: self.submission.max_attempts,
            force: false,
            cache_key: skip_analyzed.then(|| self.submission.cache_key.clone()),
        }
    }

    /// Watches a tag: the registry must know it (one manifest `GET`, whose layers give the first job its
    /// work estimate), then the watch, its first history row and the tag's analysis (skipped when
    /// analyzed already) commit together. An existing watch of the same tag is returned with `false`.
    pub async fn add_tag(&self, raw: &str) -> Result<(WatchDetail, bool)> {
        let (reference, image) = tag_reference(raw)?;
        if let Some(existing) = store::find(&self.pool, "tag", &reference).await? {
            return Ok((self.detail(existing).await?, false));
        }
        self.watcher.metrics().host(&image.registry);
        // One GET: the digest, and the layers that give the first job its work estimate.
        let (seen, layers) = self.watcher.look(&image).await;
        let digest = match seen {
            Seen::Digest(d) => d,
            Seen::Missing(answer) => {
                return Err(Error::NotFound(format!(
                    "{reference}: the registry does not have it ({answer})"
                )))
            }
            Seen::Failed(reason) => {
                return Err(Error::Registry(format!(
                    "{reference}: cannot ask the registry: {reason}"
                )))
            }
        };
        let mut tx = self.pool.begin().await?;
        let new = NewWatch {
            kind: "tag",
            reference: &reference,
            host: &image.registry,
            ..NewWatch::default()
        };
        let Some(id) = store::insert(&mut tx, &new).await? else {
            // Added by a concurrent request meanwhile: answer with that one.
            drop(tx);
            let existing = store::find(&self.pool, "tag", &reference)
                .await?
                .ok_or_else(|| Error::NotFound(format!("{reference}: watch vanished")))?;
            return Ok((self.detail(existing).await?, false));
        };
        let job = self
            .submit_estimated(&mut tx, &reference, true, layers)
            .await?;
        store::record_digest(&mut tx, id, &digest, job).await?;
        tx.commit().await?;
        let created = store::get(&self.pool, id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("watch {id} vanished")))?;
        Ok((self.detail(created).await?, true))
    }

    /// Submits `reference` inside the caller's transaction; the job id when one was queued.
    pub(crate) async fn submit(
        &self,
        conn: &mut PgConnection,
        reference: &str,
        skip_analyzed: bool,
    ) -> Result<Option<i64>> {
        let out = submit_in(conn, &[reference.to_string()], &self.options(skip_analyzed)).await?;
        Ok(match out.first() {
            Some(Submitted::Job(e)) => Some(e.id),
            _ => None,
        })
    }

    /// [`Catalog::submit`] with the manifest's layers at hand: the job carries its estimated work (the
    /// bytes of those layers not in the layer cache).
    pub(crate) async fn submit_estimated(
        &self,
        conn: &mut PgConnection,
        reference: &str,
        skip_analyzed: bool,
        layers: Option<Vec<(String, u64)>>,
    ) -> Result<Option<i64>> {
        let out = submit_estimated_in(
            conn,
            &[reference.to_string()],
            &[layers],
            &self.submission.cache_key,
            &self.options(skip_analyzed),
        )
        .await?;
        Ok(match out.first() {
            Some(Submitted::Job(e)) => Some(e.id),
            _ => None,
        })
    }

    /// What a repository watch would add now (`dry_run`): its tags listed, filtered and capped.
    pub async fn look(&self, request: &RepositoryRequest) -> Result<RepositoryLook> {
        let (repository, image, filters) = repository_request(request)?;
        let listed = self.list_tags(&image).await.map_err(|e| match e {
            AnalyzeError::ManifestUnknown { message, .. } => Error::NotFound(format!(
                "{repository}: the registry does not have it ({message})"
            )),
            other => Error::Registry(format!("{repository}: cannot list its tags: {other}")),
        })?;
        let mut conn = self.pool.acquire().await?;
        let (watched, _) = store::watched_tags(&mut conn, &repository, 0).await?;
        let watched: HashSet<String> = watched.into_iter().collect();
        let cap = self.config.max_tags_per_repository as usize;
        let plan = plan_repository(&listed, &watched, &filters, 0, cap);
        Ok(look_of(repository, listed.len(), plan))
    }

    /// Watches a repository: the registry must list it; the watch, a tag watch per new tag passing the
    /// filters (up to the cap) and their analyses commit together. An existing watch of the same
    /// repository is returned with `false`.
    pub async fn add_repository(
        &self,
        request: &RepositoryRequest,
    ) -> Result<(Watch, RepositoryLook, bool)> {
        let (repository, image, _) = repository_request(request)?;
        if let Some(existing) = store::find(&self.pool, "repository", &repository).await? {
            let look = look_of(repository, 0, RepositoryPlan::default());
            return Ok((existing, look, false));
        }
        self.watcher.metrics().host(&image.registry);
        let look = self.look(request).await?;
        let mut tx = self.pool.begin().await?;
        let new = NewWatch {
            kind: "repository",
            reference: &repository,
            host: &image.registry,
            include: request.include.as_deref(),
            exclude: request.exclude.as_deref(),
            parent: None,
        };
        let Some(id) = store::insert(&mut tx, &new).await? else {
            drop(tx);
            let existing = store::find(&self.pool, "repository", &repository)
                .await?
                .ok_or_else(|| Error::NotFound(format!("{repository}: watch vanished")))?;
            return Ok((
                existing,
                look_of(repository, 0, RepositoryPlan::default()),
                false,
            ));
        };
        self.add_children(&mut tx, id, &repository, &image.registry, &look.tags)
            .await?;
        store::record_listing(&mut tx, id, look.listed, look.capped).await?;
        tx.commit().await?;
        let watch = store::get(&self.pool, id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("watch {id} vanished")))?;
        Ok((watch, look, true))
    }

    /// Inserts a tag watch per tag under repository watch `parent` and submits each.
    pub(crate) async fn add_children(
        &self,
        conn: &mut PgConnection,
        parent: i64,
        repository: &str,
        host: &str,
        tags: &[String],
    ) -> Result<usize> {
        let mut added = 0;
        for tag in tags {
            let reference = format!("{repository}:{tag}");
            let new = NewWatch {
                kind: "tag",
                reference: &reference,
                host,
                parent: Some(parent),
                ..NewWatch::default()
            };
            if store::insert(conn, &new).await?.is_some() {
                self.submit(conn, &reference, true).await?;
                added += 1;
            }
        }
        Ok(added)
    }

    /// Every tag of `image`'s repository, page after page (each request paced).
    pub(crate) async fn list_tags(
        &self,
        image: &ImageRef,
    ) -> std::result::Result<Vec<String>, AnalyzeError> {
        let mut tags = Vec::new();
        let mut next: Option<String> = None;
        for _ in 0..MAX_TAG_PAGES {
            let page = self.watcher.tags_page(image, next.as_deref()).await?;
            tags.extend(page.tags);
            match page.next {
                // A registry repeating a page would loop forever.
                Some(n) if Some(&n) != next.as_ref() => next = Some(n),
                _ => return Ok(tags),
            }
        }
        tracing::warn!(repository = %image, pages = MAX_TAG_PAGES, "tag list cut at the page limit");
        Ok(tags)
    }

    /// A watch and its history.
    pub async fn detail(&self, watch: Watch) -> Result<WatchDetail> {
        let history = store::history(&self.pool, watch.id, HISTORY_SHOWN).await?;
        Ok(WatchDetail { watch, history })
    }

    /// A watch by id, with its history.
    pub async fn get(&self, id: i64) -> Result<WatchDetail> {
        let watch = store::get(&self.pool, id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no watch {id}")))?;
        self.detail(watch).await
    }

    /// The watch of a tag (any spelling), with its history.
    pub async fn history_of(&self, raw: &str) -> Result<WatchDetail> {
        let (reference, _) = tag_reference(raw)?;
        let watch = store::find(&self.pool, "tag", &reference)
            .await?
            .ok_or_else(|| Error::NotFound(format!("{reference} is not watched")))?;
        self.detail(watch).await
    }

    /// Watches in id order.
    pub async fn list(&self, filter: &store::ListFilter) -> Result<Vec<Watch>> {
        store::list(&self.pool, filter).await
    }

    /// Removes a watch (a repository's tag watches with it).
    pub async fn remove(&self, id: i64) -> Result<()> {
        if store::delete(&self.pool, id).await? {
            Ok(())
        } else {
            Err(Error::NotFound(format!("no watch {id}")))
        }
    }
}

fn look_of(repository: String, listed: usize, plan: RepositoryPlan) -> RepositoryLook {
    RepositoryLook {
        repository,
        listed,
        tags: plan.add,
        filtered: plan.filtered,
        capped: plan.capped,
    }
}

/// A tag reference in canonical form, parsed: a digest is refused (it never moves).
pub fn tag_reference(raw: &str) -> Result<(String, ImageRef)> {
    let text = raw.trim();
    let text = text.strip_prefix("registry:").unwrap_or(text);
    let canonical = canonical_reference(text)
        .map_err(|e| Error::InvalidReference(format!("{raw:?} is not an image reference: {e}")))?;
    let image = ImageRef::parse(&canonical).map_err(Error::InvalidReference)?;
    if image.digest.is_some() {
        return Err(Error::InvalidReference(format!(
            "{raw:?} names a digest, which never moves: watch a tag (registry/repository:tag)"
        )));
    }
    Ok((canonical, image))
}

/// A repository in canonical form (`registry/repository`), parsed, with its compiled filters.
fn repository_request(request: &RepositoryRequest) -> Result<(String, ImageRef, Filters)> {
    let raw = request.repository.trim();
    let bad = |why: String| Error::InvalidReference(format!("{raw:?} is not a repository: {why}"));
    if raw.contains('@')
        || raw
            .rsplit('/')
            .next()
            .is_some_and(|last| last.contains(':'))
    {
        return Err(bad(
            "give registry/repository without a tag or digest".into()
        ));
    }
    let (canonical, image) = tag_reference(raw).map_err(|e| bad(e.to_string()))?;
    let repository = canonical
        .strip_suffix(":latest")
        .unwrap_or(&canonical)
        .to_string();
    let filters = Filters::new(request.include.as_deref(), request.exclude.as_deref())?;
    Ok((repository, image, filters))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_canonical_and_digests_refused() {
        let (r, image) = tag_reference(" registry:alpine ").unwrap();
        assert_eq!(r, "docker.io/library/alpine:latest");
        assert_eq!(image.registry, "docker.io");
        let digest = format!("r.test/app@sha256:{}", "a".repeat(64));
        for bad in ["", "UPPER/x", "a b", digest.as_str()] {
            assert!(
                matches!(tag_reference(bad), Err(Error::InvalidReference(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn repositories_take_no_tag_and_keep_their_port() {
        let ok = |r: &str| {
            repository_request(&RepositoryRequest {
                repository: r.into(),
                ..RepositoryRequest::default()
            })
            .map(|(c, i, _)| (c, i.registry))
        };
        assert_eq!(
            ok("127.0.0.1:5000/team/app").unwrap(),
            ("127.0.0.1:5000/team/app".into(), "127.0.0.1:5000".into())
        );
        assert_eq!(ok("alpine").unwrap().0, "docker.io/library/alpine");
        for bad in ["r.test/app:1", "r.test/app@sha256:ab", "Bad/Name"] {
            assert!(
                matches!(ok(bad), Err(Error::InvalidReference(_))),
                "{bad:?}"
            );
        }
        let e = repository_request(&RepositoryRequest {
            repository: "r.test/app".into(),
            include: Some("(".into()),
            exclude: None,
        })
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(e.starts_with("include: "), "{e}");
    }
}

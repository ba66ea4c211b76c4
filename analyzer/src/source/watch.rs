//! What a watcher asks a registry, through the analyzer's HTTP layer (auth, insecure registries,
//! credentials, the error classification with `Retry-After`): a tag's digest by `HEAD` (a `GET` of the
//! manifest only when the registry sends no usable `Docker-Content-Digest`), and a repository's tags
//! (`tags/list`), one page per call so the caller can pace every request.

use reqwest::header::{HeaderMap, LINK};
use reqwest::Method;
use serde::Deserialize;

use super::http::{Http, HttpError};
use super::manifest::{self, sha256_digest};
use super::reference::ImageRef;
use super::registry::RegistryOptions;
use super::registry_error::{classify, transport, Target};
use super::requests::RequestKind;
use crate::error::{AnalyzeError, Result};

/// Largest tag list page or manifest read (a page of 1,000 long tags is ~130 KiB).
const MAX_BODY: usize = 4 << 20;

/// Tags asked for per `tags/list` page; registries may send fewer and a `Link` to the next page.
pub const TAGS_PER_PAGE: usize = 1000;

/// The header carrying a manifest's digest.
const DIGEST_HEADER: &str = "docker-content-digest";

/// One page of a repository's tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagsPage {
    /// The tags on this page, as the registry listed them.
    pub tags: Vec<String>,
    /// The next page to ask for (pass to [`TagWatcher::tags_page`]), from the `Link` header.
    pub next: Option<String>,
}

#[derive(Deserialize)]
struct TagList {
    #[serde(default)]
    tags: Option<Vec<String>>,
}

/// A watcher's registry client. Cheap to share: one connection pool and one token cache for every
/// watched tag of the process.
pub struct TagWatcher {
    http: Http,
}

impl std::fmt::Debug for TagWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TagWatcher").finish_non_exhaustive()
    }
}

impl TagWatcher {
    /// A client with these registry options (the analyzer's: insecure hosts, credentials, timeout).
    pub fn new(options: RegistryOptions) -> Self {
        TagWatcher {
            http: Http::new(options.insecure, options.credentials, options.timeout),
        }
    }

    /// `HEAD /v2/NAME/manifests/TAG`: the digest the tag points at (for a multi-arch image, the index's),
    /// or `None` when the registry answered without a well-formed `Docker-Content-Digest` (then
    /// [`TagWatcher::get_digest`] reads it from the manifest). A missing tag or repository is
    /// [`AnalyzeError::ManifestUnknown`].
    pub async fn head_digest(&self, image: &ImageRef) -> Result<Option<String>> {
        let accept = manifest::ACCEPTED.join(", ");
        let path = format!("manifests/{}", image.manifest_key());
        let response = self
            .http
            .send(Method::HEAD, image, &path, Some(&accept), RequestKind::Head)
            .await
            .map_err(|e| self.classify(e, image))?;
        Ok(digest_header(response.headers()))
    }

    /// `GET /v2/NAME/manifests/TAG`: the digest of the manifest bytes (the registry's own digest of
    /// them, so it agrees with a `HEAD` that did send one).
    pub async fn get_digest(&self, image: &ImageRef) -> Result<String> {
        let accept = manifest::ACCEPTED.join(", ");
        let path = format!("manifests/{}", image.manifest_key());
        let response = self
            .http
            .get(image, &path, Some(&accept), RequestKind::Manifest)
            .await
            .map_err(|e| self.classify(e, image))?;
        let body = self.read(response, image).await?;
        Ok(sha256_digest(&body))
    }

    /// `GET /v2/NAME/manifests/TAG` for what a job would fetch: the digest and compressed size of each
    /// layer when the tag names an image manifest, `None` when it names an index (the job picks a
    /// platform later, so its layers are not known yet).
    pub async fn manifest_layers(&self, image: &ImageRef) -> Result<Option<Vec<(String, u64)>>> {
        Ok(self.manifest(image).await?.1)
    }

    /// `GET /v2/NAME/manifests/TAG` once for both what the tag points at (the digest of the manifest
    /// bytes, as [`TagWatcher::get_digest`]) and what a job would fetch (as
    /// [`TagWatcher::manifest_layers`]): a new watch's first look, whose job is queued at once.
    pub async fn manifest(&self, image: &ImageRef) -> Result<(String, Option<Vec<(String, u64)>>)> {
        let accept = manifest::ACCEPTED.join(", ");
        let path = format!("manifests/{}", image.manifest_key());
        let response = self
            .http
            .get(image, &path, Some(&accept), RequestKind::Manifest)
            .await
            .map_err(|e| self.classify(e, image))?;
        let body = self.read(response, image).await?;
        let what = format!("manifest of {image}");
        let layers = match manifest::parse_manifest(&body, &what)? {
            manifest::ManifestDoc::Image(m) => {
                Some(m.layers.into_iter().map(|l| (l.digest, l.size)).collect())
            }
            manifest::ManifestDoc::Index(_) => None,
        };
        Ok((sha256_digest(&body), layers))
    }

    /// One page of the repository's tags: the first (`page` = `None`) or the one a previous page's
    /// `next` named. A `Link` that leaves the repository's tag list is refused (a registry must not send
    /// the client elsewhere with its credentials).
    pub async fn tags_page(&self, repository: &ImageRef, page: Option<&str>) -> Result<TagsPage> {
        let first = format!("tags/list?n={TAGS_PER_PAGE}");
        let path = page.unwrap_or(&first);
        let response = self
            .http
            .get(repository, path, None, RequestKind::Tags)
            .await
            .map_err(|e| self.classify(e, repository))?;
        let link = response
            .headers()
            .get(LINK)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = self.read(response, repository).await?;
        let what = format!(
            "tag list of {}/{}",
            repository.registry, repository.repository
        );
        let list: TagList = serde_json::from_slice(&body)
            .map_err(|e| AnalyzeError::invalid_image(&what, format!("not a tag list: {e}")))?;
        let next = match link {
            Some(link) => next_page(&link, &self.http.base(&repository.registry), repository)
                .map_err(|message| AnalyzeError::invalid_image(&what, message))?,
            None => None,
        };
        Ok(TagsPage {
            tags: list.tags.unwrap_or_default(),
            next,
        })
    }

    fn classify(&self, e: HttpError, image: &ImageRef) -> AnalyzeError {
        let whole = image.to_string();
        classify(
            e,
            self.http.is_insecure(&image.registry),
            Target::Manifest(&whole),
        )
    }

    /// Reads a body of at most [`MAX_BODY`] bytes: a hostile registry must not make it unbounded.
    async fn read(&self, mut response: reqwest::Response, image: &ImageRef) -> Result<Vec<u8>> {
        let too_big = || {
            AnalyzeError::invalid_image(
                format!("answer of {}", image.registry),
                format!("larger than {MAX_BODY} bytes"),
            )
        };
        if response
            .content_length()
            .is_some_and(|n| n > MAX_BODY as u64)
        {
            return Err(too_big());
        }
        let insecure = self.http.is_insecure(&image.registry);
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| transport(&e, &image.registry, insecure))?
        {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(too_big());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

/// A well-formed `Docker-Content-Digest` (`sha256:` and 64 lowercase hex digits), else `None`.
fn digest_header(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(DIGEST_HEADER)?.to_str().ok()?.trim();
    manifest::check_digest(value, "manifest").ok()?;
    Some(value.to_string())
}

/// The `rel="next"` target of a `Link` header as a path under `/v2/NAME/` (`tags/list?last=x&n=100`).
/// Relative (`</v2/NAME/tags/list?...>`) and same-origin absolute targets are accepted; anything else
/// is an error naming the link.
fn next_page(link: &str, base: &str, repository: &ImageRef) -> Result<Option<String>, String> {
    for part in link.split(',') {
        let Some((target, params)) = part.trim().split_once('>') else {
            continue;
        };
        let is_next = params.split(';').any(|p| {
            let p = p.trim().replace(' ', "");
            p == "rel=\"next\"" || p == "rel=next"
        });
        if !is_next {
            continue;
        }
        let target = target.trim().trim_start_matches('<');
        let relative = target.strip_prefix(base).unwrap_or(target);
        let prefix = format!("/v2/{}/", repository.repository);
        return match relative.strip_prefix(&prefix) {
            Some(rest) if rest.starts_with("tags/list") => Ok(Some(rest.to_string())),
            _ => Err(format!(
                "the registry's next-page Link {target:?} leaves {prefix}tags/list"
            )),
        };
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo() -> ImageRef {
        ImageRef::parse("r.test:5000/team/app").unwrap()
    }

    #[test]
    fn next_page_follows_relative_and_same_origin_links_only() {
        let base = "http://r.test:5000";
        assert_eq!(
            next_page(
                r#"</v2/team/app/tags/list?last=b&n=2>; rel="next""#,
                base,
                &repo()
            ),
            Ok(Some("tags/list?last=b&n=2".into()))
        );
        assert_eq!(
            next_page(
                r#"<http://r.test:5000/v2/team/app/tags/list?last=c>; rel=next"#,
                base,
                &repo()
            ),
            Ok(Some("tags/list?last=c".into()))
        );
        assert_eq!(
            next_page(r#"</v2/team/app/tags/list?x>; rel="prev""#, base, &repo()),
            Ok(None)
        );
        for hostile in [
            r#"<http://evil.test/v2/team/app/tags/list?last=b>; rel="next""#,
            r#"</v2/other/app/tags/list?last=b>; rel="next""#,
            r#"</v2/team/app/manifests/latest>; rel="next""#,
        ] {
            let e = next_page(hostile, base, &repo()).unwrap_err();
            assert!(e.contains("leaves /v2/team/app/tags/list"), "{e}");
        }
    }

    #[test]
    fn only_well_formed_digest_headers_count() {
        let mut h = HeaderMap::new();
        assert_eq!(digest_header(&h), None);
        h.insert(DIGEST_HEADER, "sha256:abc".parse().unwrap());
        assert_eq!(digest_header(&h), None);
        let good = format!("sha256:{}", "a".repeat(64));
        h.insert(DIGEST_HEADER, good.parse().unwrap());
        assert_eq!(digest_header(&h), Some(good));
    }
}

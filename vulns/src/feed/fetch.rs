//! Fetching `ecosystems.txt` and `<ECOSYSTEM>/all.zip` from a base URL (conditional requests: an
//! unchanged feed costs one request answered 304) or from a directory laid out like OSV's bucket. Bodies
//! stream to a temporary file, never into memory.

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;

use crate::error::{Error, Result};

/// Cache validators of the last successful download (`ETag`, `Last-Modified`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Validators {
    /// `ETag` (for a directory: size and modification time).
    pub etag: Option<String>,
    /// `Last-Modified`.
    pub last_modified: Option<String>,
}

/// A fetch's outcome.
#[derive(Debug)]
pub enum Fetched {
    /// The validators still hold: nothing changed.
    NotModified,
    /// A new body, in a temporary file removed on drop.
    Fresh {
        /// The downloaded zip.
        file: tempfile::TempPath,
        /// Its size in bytes.
        bytes: u64,
        /// Validators to send next time.
        validators: Validators,
    },
}

/// Where feeds come from.
#[derive(Debug, Clone)]
pub enum Source {
    /// `http(s)://` base URL.
    Http {
        /// Client (rustls, timeouts, bounded redirects).
        client: reqwest::Client,
        /// Base URL without a trailing slash.
        base: String,
    },
    /// A directory (plain path or `file://`).
    Dir(PathBuf),
}

/// Percent-encodes one path segment (`Rocky Linux` → `Rocky%20Linux`).
fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Source {
    /// The source for a configured base URL or directory.
    pub fn new(base_url: &str, timeout: Duration) -> Result<Source> {
        let b = base_url.trim();
        if let Some(path) = b.strip_prefix("file://") {
            return Ok(Source::Dir(PathBuf::from(path)));
        }
        if b.starts_with("http://") || b.starts_with("https://") {
            let client = reqwest::Client::builder()
                .timeout(timeout)
                .connect_timeout(Duration::from_secs(30))
                .redirect(reqwest::redirect::Policy::limited(5))
                .user_agent(concat!("fathom-vulns/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| Error::feed("client", e))?;
            return Ok(Source::Http {
                client,
                base: b.trim_end_matches('/').to_string(),
            });
        }
        Ok(Source::Dir(PathBuf::from(b)))
    }

    /// The ecosystems the source lists in `ecosystems.txt` (bounded to 1 MiB).
    pub async fn ecosystems(&self) -> Result<Vec<String>> {
        let what = "ecosystems.txt";
        let text = match self {
            Source::Dir(dir) => tokio::fs::read_to_string(dir.join(what))
                .await
                .map_err(|e| Error::feed(what, e))?,
            Source::Http { client, base } => {
                let resp = client
                    .get(format!("{base}/{what}"))
                    .send()
                    .await
                    .and_then(|r| r.error_for_status())
                    .map_err(|e| Error::feed(what, e))?;
                if resp.content_length().is_some_and(|n| n > 1 << 20) {
                    return Err(Error::feed(what, "larger than 1 MiB"));
                }
                resp.text().await.map_err(|e| Error::feed(what, e))?
            }
        };
        Ok(text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect())
    }

    /// Fetches `<ecosystem>/all.zip` unless `previous` still holds; at most `max_bytes`.
    pub async fn fetch(
        &self,
        ecosystem: &str,
        previous: &Validators,
        max_bytes: u64,
    ) -> Result<Fetched> {
        self.fetch_with_progress(ecosystem, previous, max_bytes, &|_, _| {})
            .await
    }

    /// [`Source::fetch`], calling `progress(bytes so far, announced length)` as an HTTP body arrives.
    pub async fn fetch_with_progress(
        &self,
        ecosystem: &str,
        previous: &Validators,
        max_bytes: u64,
        progress: &(dyn Fn(u64, Option<u64>) + Sync),
    ) -> Result<Fetched> {
        match self {
            Source::Dir(dir) => {
                fetch_file(
                    &dir.join(ecosystem).join("all.zip"),
                    ecosystem,
                    previous,
                    max_bytes,
                )
                .await
            }
            Source::Http { client, base } => {
                let url = format!("{base}/{}/all.zip", encode_segment(ecosystem));
                let mut req = client.get(&url);
                if let Some(etag) = &previous.etag {
                    req = req.header(reqwest::header::IF_NONE_MATCH, etag);
                }
                if let Some(lm) = &previous.last_modified {
                    req = req.header(reqwest::header::IF_MODIFIED_SINCE, lm);
                }
                let resp = req.send().await.map_err(|e| Error::feed(ecosystem, e))?;
                if resp.status() == reqwest::StatusCode::NOT_MODIFIED {
                    return Ok(Fetched::NotModified);
                }
                let resp = resp
                    .error_for_status()
                    .map_err(|e| Error::feed(ecosystem, e))?;
                if resp.content_length().is_some_and(|n| n > max_bytes) {
                    return Err(Error::feed(
                        ecosystem,
                        format!("all.zip is larger than {max_bytes} bytes"),
                    ));
                }
                let header = |name| {
                    resp.headers()
                        .get(name)
                        .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
                        .map(str::to_string)
                };
                let validators = Validators {
                    etag: header(reqwest::header::ETAG),
                    last_modified: header(reqwest::header::LAST_MODIFIED),
                };
                let (file, path) = temp(ecosystem)?;
                let mut out = tokio::fs::File::from_std(file);
                let total = resp.content_length();
                let mut body = resp.bytes_stream();
                let mut bytes = 0u64;
                while let Some(chunk) = body.next().await {
                    let chunk =
                        chunk.map_err(|e| Error::feed(ecosystem, format!("download: {e}")))?;
                    bytes += chunk.len() as u64;
                    if bytes > max_bytes {
                        return Err(Error::feed(
                            ecosystem,
                            format!("all.zip is larger than {max_bytes} bytes"),
                        ));
                    }
                    out.write_all(&chunk)
                        .await
                        .map_err(|e| Error::feed(ecosystem, e))?;
                    progress(bytes, total);
                }
                out.flush().await.map_err(|e| Error::feed(ecosystem, e))?;
                Ok(Fetched::Fresh {
                    file: path,
                    bytes,
                    validators,
                })
            }
        }
    }
}

fn temp(ecosystem: &str) -> Result<(std::fs::File, tempfile::TempPath)> {
    let f = tempfile::NamedTempFile::with_prefix("fathom-osv-")
        .map_err(|e| Error::feed(ecosystem, e))?;
    let (file, path) = f.into_parts();
    Ok((file, path))
}

/// A directory feed: the file's size and modification time stand in for an ETag, and it is copied so a
/// concurrent replacement cannot change it mid-read.
async fn fetch_file(
    path: &Path,
    ecosystem: &str,
    previous: &Validators,
    max_bytes: u64,
) -> Result<Fetched> {
    let meta = tokio::fs::metadata(path)
        .await
        .map_err(|e| Error::feed(ecosystem, format!("{}: {e}", path.display())))?;
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    let etag = Some(format!("\"{}-{mtime}\"", meta.len()));
    if previous.etag == etag {
        return Ok(Fetched::NotModified);
    }
    if meta.len() > max_bytes {
        return Err(Error::feed(
            ecosystem,
            format!("all.zip is larger than {max_bytes} bytes"),
        ));
    }
    let (_, tmp) = temp(ecosystem)?;
    let bytes = tokio::fs::copy(path, &tmp)
        .await
        .map_err(|e| Error::feed(ecosystem, e))?;
    Ok(Fetched::Fresh {
        file: tmp,
        bytes,
        validators: Validators {
            etag,
            last_modified: None,
        },
    })
}

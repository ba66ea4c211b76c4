//! Loading a feed source for one image: list the source's ecosystems, fetch only the feeds the image's
//! packages need, and keep only the candidates naming one of its (ecosystem, name) keys.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::SystemTime;

use crate::config::VulnsConfig;
use crate::core::matching::{candidates_where, feed_of, Candidate};
use crate::error::{Error, Result};
use crate::feed::{read_zip, Fetched, Source, Validators};

/// The (ecosystem, name) keys an image needs, normalized as [`crate::core::ecosystem::match_key`] makes them.
pub type Wanted = HashSet<(String, String)>;

/// What was loaded from one feed.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct LoadedFeed {
    /// Feed (OSV directory name).
    pub feed: String,
    /// Bytes downloaded.
    pub bytes: u64,
    /// Records read.
    pub records: u64,
    /// Records kept (naming a package of the image).
    pub kept: u64,
    /// Entries skipped as malformed or oversized.
    pub malformed: u64,
}

/// Progress events for a CLI.
#[derive(Debug, Clone, PartialEq)]
pub enum LoadProgress<'a> {
    /// Reading the source's `ecosystems.txt`.
    Listing,
    /// Downloading a feed.
    Downloading(&'a str),
    /// Bytes of a feed's download so far, and the announced length (HTTP sources only).
    Downloaded(&'a str, u64, Option<u64>),
    /// Downloaded; reading this many bytes of zip.
    Reading(&'a str, u64),
    /// A feed is loaded.
    Done(&'a LoadedFeed),
    /// The image needs this feed but the source does not list it.
    Missing(&'a str),
}

/// The records of a feed source that matter for one image, in memory.
#[derive(Debug, Clone)]
pub struct LocalFeed {
    pub(super) by_key: HashMap<(String, String), Vec<Candidate>>,
    /// Feeds loaded, in name order.
    pub feeds: Vec<LoadedFeed>,
    /// Feeds the image needed that the source does not list.
    pub missing: Vec<String>,
    /// When the load finished: the "last sync" of this data.
    pub loaded_at: SystemTime,
}

impl LocalFeed {
    /// Loads from `config.base_url` (URL, `file://` or directory) the feeds `wanted` needs, keeping only
    /// the candidates of `wanted` keys. A feed that fails to download or is not a zip is an error naming it.
    pub async fn load(
        config: &VulnsConfig,
        wanted: &Wanted,
        progress: &(dyn Fn(LoadProgress<'_>) + Sync),
    ) -> Result<LocalFeed> {
        let needed: BTreeSet<&str> = wanted.iter().map(|(e, _)| feed_of(e)).collect();
        let mut feed = LocalFeed {
            by_key: HashMap::new(),
            feeds: Vec::new(),
            missing: Vec::new(),
            loaded_at: SystemTime::now(),
        };
        if needed.is_empty() {
            return Ok(feed);
        }
        let source = Source::new(&config.base_url, config.timeout)?;
        progress(LoadProgress::Listing);
        let listed: HashSet<String> = source.ecosystems().await?.into_iter().collect();
        for name in needed {
            if !listed.contains(name) {
                tracing::warn!(feed = name, "the feed source does not list this ecosystem");
                progress(LoadProgress::Missing(name));
                feed.missing.push(name.to_string());
                continue;
            }
            progress(LoadProgress::Downloading(name));
            let on_bytes = |n, total| progress(LoadProgress::Downloaded(name, n, total));
            let Fetched::Fresh { file, bytes, .. } = source
                .fetch_with_progress(
                    name,
                    &Validators::default(),
                    config.max_download_bytes,
                    &on_bytes,
                )
                .await?
            else {
                return Err(Error::feed(
                    name,
                    "answered 304 to an unconditional request",
                ));
            };
            progress(LoadProgress::Reading(name, bytes));
            let wanted = wanted.clone();
            let max_entry = config.max_entry_bytes;
            let owned = name.to_string();
            let (kept, records, stats) = tokio::task::spawn_blocking(move || {
                let mut kept: Vec<Candidate> = Vec::new();
                let mut records = 0u64;
                let stats = read_zip(&file, &owned, max_entry, |record| {
                    let before = kept.len();
                    kept.extend(candidates_where(&record, |e, n| {
                        wanted.contains(&(e.to_string(), n.to_string()))
                    }));
                    records += u64::from(kept.len() > before);
                    true
                });
                stats.map(|s| (kept, records, s))
            })
            .await
            .map_err(|e| Error::feed(name, format!("reader: {e}")))??;
            for c in kept {
                feed.by_key
                    .entry((c.ecosystem.clone(), c.name.clone()))
                    .or_default()
                    .push(c);
            }
            let loaded = LoadedFeed {
                feed: name.to_string(),
                bytes,
                records: stats.records,
                kept: records,
                malformed: stats.malformed,
            };
            progress(LoadProgress::Done(&loaded));
            feed.feeds.push(loaded);
        }
        feed.loaded_at = SystemTime::now();
        Ok(feed)
    }

    /// Whether a feed was loaded (`Debian`, `PyPI`).
    pub fn has_feed(&self, feed: &str) -> bool {
        self.feeds.iter().any(|f| f.feed == feed)
    }

    /// Candidates kept.
    pub fn candidates(&self) -> usize {
        self.by_key.values().map(Vec::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn zip(records: &[serde_json::Value]) -> Vec<u8> {
        let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        for (i, r) in records.iter().enumerate() {
            z.start_file(
                format!("{i}.json"),
                zip::write::SimpleFileOptions::default(),
            )
            .unwrap();
            z.write_all(r.to_string().as_bytes()).unwrap();
        }
        z.finish().unwrap().into_inner()
    }

    fn record(id: &str, name: &str, withdrawn: bool) -> serde_json::Value {
        let mut r = serde_json::json!({"id": id, "affected": [{"package": {"ecosystem": "PyPI", "name": name},
            "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}]}]}]});
        if withdrawn {
            r["withdrawn"] = "2024-01-01T00:00:00Z".into();
        }
        r
    }

    #[tokio::test]
    async fn keeps_only_wanted_records_of_needed_listed_feeds() {
        let dir = tempfile::tempdir().unwrap();
        // npm is listed but has no zip: fetching it would fail, so the test fails if it is fetched.
        std::fs::write(dir.path().join("ecosystems.txt"), "PyPI\nnpm\n").unwrap();
        std::fs::create_dir(dir.path().join("PyPI")).unwrap();
        let records = [
            record("A", "Pygments", false),
            record("B", "django", false),
            record("C", "pygments", true),
            serde_json::json!({"id": "D", "affected": "not a list"}),
        ];
        std::fs::write(dir.path().join("PyPI/all.zip"), zip(&records)).unwrap();
        let config = VulnsConfig {
            base_url: dir.path().display().to_string(),
            ..VulnsConfig::default()
        };
        let wanted: Wanted = [("PyPI", "pygments"), ("Go", "golang.org/x/net")]
            .iter()
            .map(|(e, n)| (e.to_string(), n.to_string()))
            .collect();
        let seen = std::sync::Mutex::new(Vec::new());
        let feed = LocalFeed::load(&config, &wanted, &|p| {
            seen.lock().unwrap().push(format!("{p:?}"));
        })
        .await
        .unwrap();
        assert_eq!(feed.missing, ["Go"]);
        assert_eq!(
            feed.feeds,
            [LoadedFeed {
                feed: "PyPI".into(),
                bytes: std::fs::metadata(dir.path().join("PyPI/all.zip"))
                    .unwrap()
                    .len(),
                records: 3,
                kept: 1,
                malformed: 1,
            }]
        );
        assert_eq!(feed.candidates(), 1);
        assert!(feed.has_feed("PyPI") && !feed.has_feed("npm"));
        let seen = seen.into_inner().unwrap();
        assert!(
            seen.iter().any(|s| s.starts_with("Missing(\"Go\")")),
            "{seen:?}"
        );

        // A feed that is not a zip fails, naming it.
        std::fs::write(dir.path().join("PyPI/all.zip"), b"nope").unwrap();
        let err = LocalFeed::load(&config, &wanted, &|_| {})
            .await
            .unwrap_err();
        assert!(err.to_string().starts_with("feed PyPI:"), "{err}");
    }
}

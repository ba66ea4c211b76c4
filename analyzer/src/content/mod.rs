//! The content pass: facts for the `files`, `secret_scans` and `licenses` policy gates, collected from the
//! same tar walk that feeds the catalogers (file digests, secret findings, content search matches, Debian
//! copyright licenses).
//!
//! Everything here is per layer and independent of the other layers, like packages: the merge decides what
//! is visible. Its knobs are part of the layer cache key ([`ContentOptions::key`]), so changing a rule or a
//! cap re-analyzes exactly the layers analyzed under the old settings.

pub mod clamd;
mod copyright;
pub mod license;
pub mod retrieve;
mod search;
mod secrets;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use copyright::{is_copyright_path, parse_copyright};
pub use retrieve::{RetrieveOptions, RetrievedFile};
pub use search::{
    ContentMatch, ContentRule, ContentSearcher, RuleError, MAX_MATCHES_PER_FILE, MAX_MATCH_TEXT,
};
pub use secrets::{default_rules, SecretRule, SecretScanner};

/// Bytes of a file the binary check looks at: a NUL among them means "binary, skip it" (git's rule).
const BINARY_SNIFF: usize = 8000;

/// Largest `/usr/share/doc/*/copyright` read (real ones are a few KiB; a few are ~1 MiB).
pub const MAX_COPYRIGHT_BYTES: u64 = 4 << 20;

/// What the content pass collects and how much it may read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentOptions {
    /// Whether the pass runs at all (off: the packages-only pipeline of before).
    pub enabled: bool,
    /// Regular files up to this size get a sha256 in the inventory (0: none).
    pub file_digest_max_bytes: u64,
    /// Secret search.
    pub secrets: SecretOptions,
    /// Content search rules (none: content search does not run). Files are read under the secret
    /// search's size cap (`secrets.max_file_bytes`) and binary files are skipped, as for secrets.
    pub content_search: Vec<ContentRule>,
    /// Files whose contents are kept (anchore's `retrieve_files`); no paths: none.
    pub retrieve: RetrieveOptions,
    /// Malware scanning through ClamAV's clamd; `None`: off.
    pub malware: Option<clamd::MalwareOptions>,
    /// Read Debian `copyright` files for deb package licenses.
    pub licenses: bool,
    /// Put the merged file inventory into the analysis document (`files.entries`): on for `fathom scan`,
    /// off for workers, whose store keeps the inventory per layer instead.
    pub entries_in_document: bool,
}

/// Secret search settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretOptions {
    /// Whether to search.
    pub enabled: bool,
    /// Named regexes (Rust `regex` syntax, matched against bytes, per line).
    pub rules: Vec<SecretRule>,
    /// Only files up to this size are searched.
    pub max_file_bytes: u64,
    /// Path regexes: when non-empty, only matching paths are searched.
    pub include: Vec<String>,
    /// Path regexes: matching paths are never searched.
    pub exclude: Vec<String>,
}

impl Default for SecretOptions {
    fn default() -> Self {
        SecretOptions {
            enabled: true,
            rules: default_rules(),
            max_file_bytes: 1 << 20,
            include: Vec::new(),
            exclude: default_exclude(),
        }
    }
}

/// Paths never worth searching by default: kernel pseudo-filesystems and the documentation trees whose
/// examples are full of placeholder keys.
pub fn default_exclude() -> Vec<String> {
    // One prefix per entry (no alternations): the list is documented in a Markdown table.
    [
        "^/proc/",
        "^/sys/",
        "^/dev/",
        "^/usr/share/doc/",
        "^/usr/share/man/",
    ]
    .map(String::from)
    .to_vec()
}

impl Default for ContentOptions {
    fn default() -> Self {
        ContentOptions {
            enabled: true,
            file_digest_max_bytes: 1 << 20,
            secrets: SecretOptions::default(),
            content_search: Vec::new(),
            retrieve: RetrieveOptions::default(),
            malware: None,
            licenses: true,
            entries_in_document: false,
        }
    }
}

impl ContentOptions {
    /// The packages-only pipeline.
    pub fn off() -> Self {
        ContentOptions {
            enabled: false,
            ..Default::default()
        }
    }

    /// The part of the layer cache key these options decide: a short digest of every knob that changes a
    /// layer result (`entries_in_document` does not: it only shapes the image document).
    pub fn key(&self) -> String {
        if !self.enabled {
            return "content=off".into();
        }
        let mut h = Sha256::new();
        h.update(format!(
            "v{};digest={};licenses={};secrets={};max={}\n",
            CONTENT_VERSION,
            self.file_digest_max_bytes,
            self.licenses,
            self.secrets.enabled,
            self.secrets.max_file_bytes
        ));
        if self.secrets.enabled {
            for r in &self.secrets.rules {
                h.update(format!("rule {}={}\n", r.name, r.pattern));
            }
            for p in &self.secrets.include {
                h.update(format!("include {p}\n"));
            }
            for p in &self.secrets.exclude {
                h.update(format!("exclude {p}\n"));
            }
        }
        // Only hashed when there are rules, so the key (and every cached layer) of a configuration
        // without content search stays what it was before content search existed.
        for r in &self.content_search {
            h.update(format!(
                "search {}={} store={}\n",
                r.name, r.pattern, r.store_match
            ));
        }
        // Retrieved files change what a layer keeps; like content search, hashed only when configured.
        if !self.retrieve.paths.is_empty() {
            h.update(format!("retrieve max={}\n", self.retrieve.max_file_bytes));
            for p in &self.retrieve.paths {
                h.update(format!("retrieve {p}\n"));
            }
        }
        // The scanner and its size cap decide what a layer's scan covers (not the address or timeout).
        if let Some(m) = &self.malware {
            h.update(format!("malware clamav max={}\n", m.max_file_size));
        }
        format!("content={}", &hex::encode(h.finalize())[..16])
    }
}

/// Bumped whenever the content pass's output for the same bytes and options changes (2: imprecise license
/// names are no longer mapped to SPDX ids).
pub const CONTENT_VERSION: u32 = 2;

/// One secret found in a file: where, and which rule matched. Never the matched text.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SecretFinding {
    /// File path.
    pub path: String,
    /// 1-based line of the match start.
    pub line: u64,
    /// Name of the rule that matched.
    pub rule: String,
}

/// Licenses a Debian `copyright` file names, for the package its directory is named after.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopyrightRecord {
    /// The copyright file (`/usr/share/doc/<pkg>/copyright`).
    pub path: String,
    /// Package name (the directory).
    pub package: String,
    /// License identifiers, sorted and unique.
    pub licenses: Vec<String>,
}

/// The content pass of one layer, compiled once per analyzer and shared by the layer threads.
#[derive(Debug)]
pub struct ContentPass {
    /// The options it was built from.
    pub options: ContentOptions,
    secrets: Option<SecretScanner>,
    search: Option<ContentSearcher>,
    clamd: Option<clamd::Clamd>,
}

/// What the content pass wants of one regular file, decided from its path and size only.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ContentWant {
    /// Hash it.
    pub digest: bool,
    /// Search it for secrets.
    pub secrets: bool,
    /// Run the content search rules over it.
    pub search: bool,
    /// Parse it as a Debian copyright file.
    pub copyright: bool,
    /// Keep its contents (a retrieved file).
    pub retrieve: bool,
    /// Stream it to the malware scanner (from the buffer when it was read anyway, else from the tar).
    pub malware: bool,
}

impl ContentWant {
    /// Whether any of them needs the file's bytes in memory (the malware scan streams instead).
    pub fn any(self) -> bool {
        self.digest || self.secrets || self.search || self.copyright || self.retrieve
    }
}

/// What the content pass found in one file.
#[derive(Debug, Default)]
pub struct ContentFound {
    /// Hex sha256 of the file.
    pub sha256: Option<String>,
    /// Secret findings.
    pub secrets: Vec<SecretFinding>,
    /// Content search matches.
    pub matches: Vec<ContentMatch>,
    /// Copyright licenses.
    pub copyright: Option<CopyrightRecord>,
    /// The file's contents, when it is a retrieved file.
    pub retrieved: Option<RetrievedFile>,
    /// Why a retrieved file was not kept, when it was not.
    pub withheld: Option<String>,
}

impl ContentPass {
    /// Compiles the rules. Fails on a rule or path pattern that is not a valid regex, naming it.
    pub fn new(options: ContentOptions) -> Result<Self, String> {
        let secrets = if options.enabled && options.secrets.enabled {
            Some(SecretScanner::new(&options.secrets)?)
        } else {
            None
        };
        let search = if options.enabled && !options.content_search.is_empty() {
            Some(ContentSearcher::new(&options.content_search).map_err(|e| e.to_string())?)
        } else {
            None
        };
        options
            .retrieve
            .check()
            .map_err(|(i, e)| format!("retrieve_files.paths[{i}]: {e}"))?;
        let clamd = options
            .malware
            .clone()
            .filter(|_| options.enabled)
            .map(clamd::Clamd::new);
        Ok(ContentPass {
            options,
            secrets,
            search,
            clamd,
        })
    }

    /// The malware scanner, when scanning is on.
    pub fn clamd(&self) -> Option<&clamd::Clamd> {
        self.clamd.as_ref()
    }

    /// What the pass wants of a regular file (no IO).
    pub fn wants(&self, path: &str, size: u64) -> ContentWant {
        if !self.options.enabled {
            return ContentWant::default();
        }
        ContentWant {
            digest: size <= self.options.file_digest_max_bytes,
            secrets: self.secrets.as_ref().is_some_and(|s| s.wants(path, size)),
            search: self.search.is_some()
                && size > 0
                && size <= self.options.secrets.max_file_bytes,
            copyright: self.options.licenses
                && size <= MAX_COPYRIGHT_BYTES
                && is_copyright_path(path),
            retrieve: self.options.retrieve.wants(path, size),
            malware: self
                .clamd
                .as_ref()
                .is_some_and(|c| size > 0 && size <= c.options().max_file_size),
        }
    }

    /// Examines a file's whole contents.
    pub fn examine(&self, path: &str, want: ContentWant, bytes: &[u8]) -> ContentFound {
        let mut found = ContentFound::default();
        if want.digest {
            found.sha256 = Some(hex::encode(Sha256::digest(bytes)));
        }
        if (want.secrets || want.search) && !is_binary(bytes) {
            if let (true, Some(scanner)) = (want.secrets, &self.secrets) {
                found.secrets = scanner.scan(path, bytes);
            }
            if let (true, Some(searcher)) = (want.search, &self.search) {
                found.matches = searcher.search(path, bytes);
            }
        }
        if want.copyright {
            found.copyright = parse_copyright(path, bytes);
        }
        if want.retrieve {
            // A file the operator listed may still hold a secret (a password in a config): secret search
            // is the judge, and what it flags is never stored.
            let secret = match &self.secrets {
                Some(scanner) if !want.secrets => scanner.scan(path, bytes),
                _ => found.secrets.clone(),
            };
            if secret.is_empty() {
                found.retrieved = Some(RetrievedFile {
                    path: path.to_string(),
                    content: bytes.to_vec(),
                });
            } else {
                let rules: Vec<&str> = secret.iter().map(|s| s.rule.as_str()).collect();
                found.withheld = Some(format!(
                    "{path}: not retrieved: secret search found {} in it",
                    rules.join(", ")
                ));
            }
        }
        found
    }
}

/// A rule's matches in a file with the 1-based line each starts on; the newlines are counted once, as
/// the matches advance (secret and content search place their findings with it).
pub(crate) fn matches_with_lines<'a>(
    re: &'a regex::bytes::Regex,
    bytes: &'a [u8],
) -> impl Iterator<Item = (u64, regex::bytes::Match<'a>)> + 'a {
    let mut line = 1u64;
    let mut at = 0usize;
    re.find_iter(bytes).map(move |m| {
        line += bytes[at..m.start()].iter().filter(|&&b| b == b'\n').count() as u64;
        at = m.start();
        (line, m)
    })
}

/// A NUL byte near the start means binary (executables, images, archives): not searched.
pub fn is_binary(bytes: &[u8]) -> bool {
    bytes[..bytes.len().min(BINARY_SNIFF)].contains(&0)
}

#[cfg(test)]
mod tests;

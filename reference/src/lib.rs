//! fathom's one image-reference parser: `repo`, `repo:tag`, `repo@digest` and `repo:tag@digest`, parsed
//! by hand (no regex) and normalized as Docker does. The analyzer's registry client, the admission
//! webhook, the policy engine's mappings and image rules, and the core's API all read references through
//! [`ImageRef::parse`], so an image is never judged under a reference split differently elsewhere (a tag
//! left in the repository of `repo:tag@digest` once let a blacklisted repository through).
//!
//! The grammar is distribution's (`reference/regexp.go`), normalized as Docker does (`docker.io`, the
//! `library/` namespace, the `latest` tag). oci-client's parser accepts the same language but compiles a
//! Unicode-aware regular expression on first use (~45 ms, more than a small image's whole scan); a test
//! checks the two agree on thousands of references. One deliberate difference: tags are ASCII only, as the
//! distribution spec says (the regex's `\w` also admits non-ASCII letters, which registries refuse).

#![deny(missing_docs)]

use std::fmt;

const NAME_TOTAL_LENGTH_MAX: usize = 255;
const TAG_LENGTH_MAX: usize = 128;

/// A parsed, normalized image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageRef {
    /// Registry host[:port] (`docker.io` for Docker Hub).
    pub registry: String,
    /// Repository path (`library/debian`).
    pub repository: String,
    /// Tag, if any (`latest` when neither tag nor digest was given).
    pub tag: Option<String>,
    /// Digest (`sha256:…`), if any.
    pub digest: Option<String>,
}

impl ImageRef {
    /// Parses and normalizes a reference. Errors say what is wrong.
    pub fn parse(text: &str) -> Result<ImageRef, String> {
        if text.is_empty() {
            return Err("repository name must have at least one component".into());
        }
        let (name_tag, digest) = match text.split_once('@') {
            Some((n, d)) => (n, Some(d)),
            None => (text, None),
        };
        // A ':' after the last '/' starts the tag; one before it belongs to a host:port.
        let (name, tag) = match name_tag.rsplit_once(':') {
            Some((n, t)) if !t.contains('/') => (n, Some(t)),
            _ => (name_tag, None),
        };
        let invalid = || "invalid reference format".to_string();
        if let Some(tag) = tag {
            if !valid_tag(tag) {
                return Err(invalid());
            }
        }
        if let Some(digest) = digest {
            if !valid_digest_syntax(digest) {
                return Err(invalid());
            }
        }
        if !valid_name(name) {
            if name.bytes().any(|b| b.is_ascii_uppercase()) && valid_name(&name.to_lowercase()) {
                return Err("repository name must be lowercase".into());
            }
            return Err(invalid());
        }
        let (registry, repository) = split_domain(name);
        if repository.len() > NAME_TOTAL_LENGTH_MAX {
            return Err(format!(
                "repository name must not be more than {NAME_TOTAL_LENGTH_MAX} characters"
            ));
        }
        if let Some(digest) = digest {
            check_digest_length(digest)?;
        }
        let tag = match (tag, digest) {
            (None, None) => Some("latest".to_string()),
            (t, _) => t.map(str::to_string),
        };
        Ok(ImageRef {
            registry,
            repository,
            tag,
            digest: digest.map(str::to_string),
        })
    }

    /// The same repository, pinned to `digest` (an index entry).
    pub fn with_digest(&self, digest: &str) -> ImageRef {
        ImageRef {
            tag: None,
            digest: Some(digest.to_string()),
            ..self.clone()
        }
    }

    /// What to ask the registry's manifest endpoint for: the digest when pinned, else the tag.
    pub fn manifest_key(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or("latest")
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// `[\w][\w.-]{0,127}` with ASCII `\w`.
fn valid_tag(tag: &str) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let bytes = tag.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= TAG_LENGTH_MAX
        && word(bytes[0])
        && bytes.iter().all(|&b| word(b) || b == b'.' || b == b'-')
}

/// `ALGORITHM:HEX` with `[A-Za-z][A-Za-z0-9]*([-_+.][A-Za-z][A-Za-z0-9]*)*` and at least 32 hex digits.
fn valid_digest_syntax(digest: &str) -> bool {
    let Some((algorithm, hex)) = digest.split_once(':') else {
        return false;
    };
    let algorithm_ok = algorithm.split(['-', '_', '+', '.']).all(|part| {
        let b = part.as_bytes();
        !b.is_empty() && b[0].is_ascii_alphabetic() && b.iter().all(u8::is_ascii_alphanumeric)
    });
    algorithm_ok && hex.len() >= 32 && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

fn check_digest_length(digest: &str) -> Result<(), String> {
    let (algorithm, hex) = digest.split_once(':').unwrap_or((digest, ""));
    let want = match algorithm {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => return Err("unsupported digest algorithm".into()),
    };
    if hex.len() == want {
        Ok(())
    } else {
        Err("invalid checksum digest length".into())
    }
}

/// A name is either `DOMAIN/PATH` or `PATH`.
fn valid_name(name: &str) -> bool {
    if valid_path(name) {
        return true;
    }
    match name.split_once('/') {
        Some((domain, path)) => valid_domain(domain) && valid_path(path),
        None => false,
    }
}

/// `/`-separated components, each `[a-z0-9]+` runs joined by `.`, `_`, `__` or any number of `-`.
fn valid_path(path: &str) -> bool {
    path.split('/').all(|component| {
        let b = component.as_bytes();
        let alnum = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
        if b.is_empty() || !alnum(&b[0]) || !alnum(&b[b.len() - 1]) {
            return false;
        }
        let mut i = 0;
        while i < b.len() {
            if alnum(&b[i]) {
                i += 1;
                continue;
            }
            let start = i;
            while i < b.len() && !alnum(&b[i]) {
                i += 1;
            }
            let sep = &component[start..i];
            let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|c| c == b'-');
            if !ok {
                return false;
            }
        }
        true
    })
}

/// Host labels (`[a-zA-Z0-9]` or `[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]`) joined by `.`, then `:PORT`.
fn valid_domain(domain: &str) -> bool {
    let (host, port) = match domain.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (domain, None),
    };
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    port_ok
        && host.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        })
}

/// Docker's normalization: a first component without `.` or `:` (and not `localhost`) is a Docker Hub
/// namespace, and official images live under `library/`.
fn split_domain(name: &str) -> (String, String) {
    let (mut domain, mut rest) = match name.split_once('/') {
        Some((left, right)) if left.contains(['.', ':']) || left == "localhost" => {
            (left.to_string(), right.to_string())
        }
        _ => ("docker.io".to_string(), name.to_string()),
    };
    if domain == "index.docker.io" {
        domain = "docker.io".into();
    }
    if domain == "docker.io" && !rest.contains('/') {
        rest = format!("library/{rest}");
    }
    (domain, rest)
}

#[cfg(test)]
mod tests;

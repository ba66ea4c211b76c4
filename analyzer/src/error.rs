//! The analyzer's one error type, classified where it is born: retryable (the same job may succeed later)
//! or permanent (the image itself is wrong, missing or refused), with a stable metric label per kind.

use std::time::Duration;

/// Result alias of the analyzer engine.
pub type Result<T, E = AnalyzeError> = std::result::Result<T, E>;

/// Why an image could not be analyzed. Messages name the image, layer and file involved.
#[derive(Debug, thiserror::Error)]
pub enum AnalyzeError {
    /// The registry could not be reached (DNS, refused connection, TLS, reset).
    #[error("cannot reach registry {registry}: {message}")]
    Connect {
        /// Registry host[:port].
        registry: String,
        /// What failed, with a hint when plain HTTP might be the cause.
        message: String,
    },
    /// A request to the registry timed out.
    #[error("registry {registry} timed out: {message}")]
    Timeout {
        /// Registry host[:port].
        registry: String,
        /// What was being fetched.
        message: String,
    },
    /// The registry answered with an HTTP status that is not otherwise classified.
    #[error("registry answered {status} for {url}: {message}")]
    RegistryStatus {
        /// HTTP status code.
        status: u16,
        /// Request URL.
        url: String,
        /// Body or error envelope of the answer.
        message: String,
        /// The registry's `Retry-After`, when the client library exposed it.
        retry_after: Option<Duration>,
    },
    /// The reference names no manifest (unknown tag, digest or repository).
    #[error("manifest unknown: {reference}: {message}")]
    ManifestUnknown {
        /// The reference asked for.
        reference: String,
        /// What the source said.
        message: String,
    },
    /// The registry refused our credentials (or we had none).
    #[error("unauthorized at registry {registry}: {message}")]
    Unauthorized {
        /// Registry host[:port].
        registry: String,
        /// What the registry said.
        message: String,
    },
    /// A manifest, index, config or layer has a media type we cannot read.
    #[error("unsupported media type {media_type} for {what}")]
    UnsupportedMediaType {
        /// What carried it (`layer sha256:...`, `manifest ...`).
        what: String,
        /// The media type.
        media_type: String,
    },
    /// A blob's bytes do not hash to the digest that names it.
    #[error("digest mismatch for {what}: expected {expected}, got {actual}")]
    DigestMismatch {
        /// What was fetched (`layer sha256:...`).
        what: String,
        /// Digest from the manifest.
        expected: String,
        /// Digest of the bytes received.
        actual: String,
    },
    /// A manifest refers to a blob the source does not have.
    #[error("blob missing: {what} {digest}")]
    BlobMissing {
        /// What the blob was (`layer`, `config`, `manifest`).
        what: String,
        /// The blob's digest.
        digest: String,
    },
    /// A layer cannot be decoded: truncated or corrupt compression or tar.
    #[error("corrupt layer {layer}{}: {message}", file_suffix(.file))]
    CorruptLayer {
        /// Layer digest.
        layer: String,
        /// The tar entry being read, when known.
        file: Option<String>,
        /// What was wrong.
        message: String,
    },
    /// A layer looks built to hurt the analyzer: decompression bomb, absurd sizes, path breakout.
    #[error("hostile layer {layer}{}: {message}", file_suffix(.file))]
    HostileInput {
        /// Layer digest.
        layer: String,
        /// The tar entry involved, when known.
        file: Option<String>,
        /// Which limit it crossed.
        message: String,
    },
    /// The image's manifest, index or config is malformed or names nothing usable.
    #[error("invalid image {what}: {message}")]
    InvalidImage {
        /// The document concerned.
        what: String,
        /// What was wrong.
        message: String,
    },
    /// The image source string or reference cannot be parsed.
    #[error("invalid image source {source_text:?}: {message}")]
    InvalidSource {
        /// What the user gave.
        source_text: String,
        /// Why it is not usable.
        message: String,
    },
    /// A local file (oci-dir, docker-archive) could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The malware scanner (clamd) could not scan a file: unreachable, too slow, or an answer that is no
    /// verdict. Never caused by the image, so retryable: the image is never recorded as scanned (or
    /// clean) when its scan did not run.
    #[error("malware scan of layer {layer}, file {file}: {message}")]
    MalwareScanner {
        /// Layer digest.
        layer: String,
        /// The file being scanned.
        file: String,
        /// What went wrong, naming clamd's address.
        message: String,
    },
    /// A bug or a lost worker thread; never caused by the image.
    #[error("internal error: {0}")]
    Internal(String),
}

fn file_suffix(file: &Option<String>) -> String {
    file.as_ref()
        .map(|f| format!(", file {f}"))
        .unwrap_or_default()
}

impl AnalyzeError {
    /// Whether the same job may succeed if tried again later (network trouble, registry overload).
    pub fn is_retryable(&self) -> bool {
        match self {
            AnalyzeError::Connect { .. } | AnalyzeError::Timeout { .. } => true,
            AnalyzeError::RegistryStatus { status, .. } => *status == 429 || *status >= 500,
            AnalyzeError::Internal(_) | AnalyzeError::MalwareScanner { .. } => true,
            _ => false,
        }
    }

    /// How long the registry asked us to wait before retrying, when it said so.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            AnalyzeError::RegistryStatus { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Every value [`reason`](Self::reason) returns: metrics start a series for each at zero, so a
    /// dashboard sees `0` rather than no data before the first failure of a kind.
    pub const REASONS: &'static [&'static str] = &[
        "connect",
        "timeout",
        "rate_limited",
        "registry_unavailable",
        "registry_status",
        "manifest_unknown",
        "unauthorized",
        "unsupported_media_type",
        "digest_mismatch",
        "blob_missing",
        "corrupt_layer",
        "hostile_input",
        "invalid_image",
        "invalid_source",
        "io",
        "malware_scanner",
        "internal",
    ];

    /// A stable, low-cardinality label for metrics (`reason="digest_mismatch"`).
    pub fn reason(&self) -> &'static str {
        match self {
            AnalyzeError::Connect { .. } => "connect",
            AnalyzeError::Timeout { .. } => "timeout",
            AnalyzeError::RegistryStatus { status: 429, .. } => "rate_limited",
            AnalyzeError::RegistryStatus { status, .. } if *status >= 500 => "registry_unavailable",
            AnalyzeError::RegistryStatus { .. } => "registry_status",
            AnalyzeError::ManifestUnknown { .. } => "manifest_unknown",
            AnalyzeError::Unauthorized { .. } => "unauthorized",
            AnalyzeError::UnsupportedMediaType { .. } => "unsupported_media_type",
            AnalyzeError::DigestMismatch { .. } => "digest_mismatch",
            AnalyzeError::BlobMissing { .. } => "blob_missing",
            AnalyzeError::CorruptLayer { .. } => "corrupt_layer",
            AnalyzeError::HostileInput { .. } => "hostile_input",
            AnalyzeError::InvalidImage { .. } => "invalid_image",
            AnalyzeError::InvalidSource { .. } => "invalid_source",
            AnalyzeError::Io { .. } => "io",
            AnalyzeError::MalwareScanner { .. } => "malware_scanner",
            AnalyzeError::Internal(_) => "internal",
        }
    }

    pub(crate) fn io(path: impl Into<String>, source: std::io::Error) -> Self {
        AnalyzeError::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn invalid_image(what: impl Into<String>, message: impl std::fmt::Display) -> Self {
        AnalyzeError::InvalidImage {
            what: what.into(),
            message: message.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_lists_every_reason_exactly_once() {
        let s = String::new;
        let status = |status| AnalyzeError::RegistryStatus {
            status,
            url: s(),
            message: s(),
            retry_after: None,
        };
        // One of each variant (three statuses for RegistryStatus): a variant added to `reason()` without
        // a line here leaves REASONS longer than what is produced, or a new label missing from it.
        let all = [
            AnalyzeError::Connect {
                registry: s(),
                message: s(),
            },
            AnalyzeError::Timeout {
                registry: s(),
                message: s(),
            },
            status(429),
            status(503),
            status(404),
            AnalyzeError::ManifestUnknown {
                reference: s(),
                message: s(),
            },
            AnalyzeError::Unauthorized {
                registry: s(),
                message: s(),
            },
            AnalyzeError::UnsupportedMediaType {
                what: s(),
                media_type: s(),
            },
            AnalyzeError::DigestMismatch {
                what: s(),
                expected: s(),
                actual: s(),
            },
            AnalyzeError::BlobMissing {
                what: s(),
                digest: s(),
            },
            AnalyzeError::CorruptLayer {
                layer: s(),
                file: None,
                message: s(),
            },
            AnalyzeError::HostileInput {
                layer: s(),
                file: None,
                message: s(),
            },
            AnalyzeError::invalid_image("x", "y"),
            AnalyzeError::InvalidSource {
                source_text: s(),
                message: s(),
            },
            AnalyzeError::io("p", std::io::Error::other("e")),
            AnalyzeError::MalwareScanner {
                layer: s(),
                file: s(),
                message: s(),
            },
            AnalyzeError::Internal(s()),
        ];
        let produced: Vec<&str> = all.iter().map(AnalyzeError::reason).collect();
        assert_eq!(produced, AnalyzeError::REASONS);
    }

    #[test]
    fn classification() {
        let rate = AnalyzeError::RegistryStatus {
            status: 429,
            url: "u".into(),
            message: String::new(),
            retry_after: Some(Duration::from_secs(3)),
        };
        assert!(rate.is_retryable());
        assert_eq!(rate.reason(), "rate_limited");
        assert_eq!(rate.retry_after(), Some(Duration::from_secs(3)));
        let not_found = AnalyzeError::RegistryStatus {
            status: 400,
            url: "u".into(),
            message: String::new(),
            retry_after: None,
        };
        assert!(!not_found.is_retryable());
        let corrupt = AnalyzeError::CorruptLayer {
            layer: "sha256:ab".into(),
            file: Some("/etc/passwd".into()),
            message: "truncated".into(),
        };
        assert!(!corrupt.is_retryable());
        assert_eq!(
            corrupt.to_string(),
            "corrupt layer sha256:ab, file /etc/passwd: truncated"
        );
    }
}

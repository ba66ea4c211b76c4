//! Retrieved files (anchore's `retrieve_files` analyzer): the contents of a few configured files —
//! `/etc/passwd`, `/etc/services`, `/etc/sudoers` by default — kept per layer for the `retrieved_files`
//! and `passwd_file` policy gates.
//!
//! Contents are kept, so files that hold secrets must never be configured: `/etc/shadow` and its kin,
//! private keys and credential files are refused when the options are built ([`RetrieveOptions::check`]),
//! and a file in which secret search finds a secret is not kept either (the layer records a warning).

use base64::Engine;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// anchore's default `file_list`.
pub const DEFAULT_PATHS: [&str; 3] = ["/etc/passwd", "/etc/services", "/etc/sudoers"];

/// anchore's default `max_file_size_kb: 1000`, in bytes.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 1000 * 1024;

/// Which files to keep, and the largest kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrieveOptions {
    /// Absolute paths of the files to keep.
    pub paths: Vec<String>,
    /// Files larger than this are not kept (the gates then say the content is not available).
    pub max_file_bytes: u64,
}

impl Default for RetrieveOptions {
    fn default() -> Self {
        RetrieveOptions {
            paths: DEFAULT_PATHS.map(String::from).to_vec(),
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
        }
    }
}

/// Why a path may not be retrieved: it names a file whose job is to hold secrets. `None` for any other.
pub fn secret_path(path: &str) -> Option<&'static str> {
    let name = path.rsplit('/').next().unwrap_or(path);
    let shadow = ["shadow", "gshadow", "shadow-", "gshadow-"];
    if shadow.contains(&name) || name.ends_with("shadow") {
        return Some("it holds password hashes");
    }
    if name.ends_with(".pem")
        || name.ends_with(".key")
        || name.ends_with(".p12")
        || name.ends_with(".pfx")
        || name.ends_with(".jks")
        || name.ends_with(".keystore")
    {
        return Some("it holds private keys or certificates' keys");
    }
    if (name.starts_with("id_") && !name.ends_with(".pub"))
        || (name.starts_with("ssh_host_") && name.ends_with("_key"))
    {
        return Some("it holds an SSH private key");
    }
    let credentials = [
        ".netrc",
        ".pgpass",
        ".git-credentials",
        ".htpasswd",
        "credentials",
        ".npmrc",
        ".pypirc",
        "master.key",
    ];
    if credentials.contains(&name)
        || path.ends_with("/.docker/config.json")
        || path.ends_with("/.kube/config")
    {
        return Some("it holds credentials");
    }
    None
}

impl RetrieveOptions {
    /// Checks the paths: absolute, normalized, unique, and never a file that holds secrets. The error
    /// names the entry (its index) and says what to do.
    pub fn check(&self) -> Result<(), (usize, String)> {
        for (i, p) in self.paths.iter().enumerate() {
            if !p.starts_with('/') || p.ends_with('/') || p.contains("//") {
                return Err((
                    i,
                    format!("{p:?}: give an absolute path to a file, like /etc/passwd"),
                ));
            }
            if p.split('/').any(|c| c == "." || c == "..") {
                return Err((i, format!("{p:?}: `.` and `..` are not allowed")));
            }
            if let Some(why) = secret_path(p) {
                return Err((
                    i,
                    format!(
                        "{p}: refusing to retrieve it: {why}, and retrieved contents are stored and served; remove the entry"
                    ),
                ));
            }
            if self.paths[..i].contains(p) {
                return Err((i, format!("{p}: listed twice")));
            }
        }
        Ok(())
    }

    /// Whether a regular file of this path and size is kept.
    pub fn wants(&self, path: &str, size: u64) -> bool {
        size <= self.max_file_bytes && self.paths.iter().any(|p| p == path)
    }
}

/// A retrieved file of one layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetrievedFile {
    /// File path.
    pub path: String,
    /// The file's bytes (base64 in JSON).
    #[serde(serialize_with = "to_base64", deserialize_with = "from_base64")]
    pub content: Vec<u8>,
}

pub(crate) fn to_base64<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
}

pub(crate) fn from_base64<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    let text = String::deserialize(d)?;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(serde::de::Error::custom)
}

/// Serde for `Option<Vec<u8>>` as an optional base64 string.
pub(crate) mod optional_base64 {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(bytes) => super::to_base64(bytes, s),
            None => s.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Vec<u8>>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|text| {
                base64::engine::general_purpose::STANDARD
                    .decode(text)
                    .map_err(serde::de::Error::custom)
            })
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_anchores_and_pass_the_check() {
        let o = RetrieveOptions::default();
        assert_eq!(o.paths, ["/etc/passwd", "/etc/services", "/etc/sudoers"]);
        assert_eq!(o.max_file_bytes, 1_024_000);
        assert!(o.check().is_ok());
        assert!(o.wants("/etc/passwd", 1_024_000));
        assert!(!o.wants("/etc/passwd", 1_024_001));
        assert!(!o.wants("/etc/group", 10));
    }

    #[test]
    fn secret_files_are_refused_with_the_entry_named() {
        for bad in [
            "/etc/shadow",
            "/etc/gshadow",
            "/etc/shadow-",
            "/root/.ssh/id_rsa",
            "/etc/ssh/ssh_host_ed25519_key",
            "/etc/ssl/private/server.key",
            "/app/tls.pem",
            "/root/.docker/config.json",
            "/root/.aws/credentials",
            "/home/u/.netrc",
        ] {
            let o = RetrieveOptions {
                paths: vec!["/etc/passwd".into(), bad.into()],
                ..Default::default()
            };
            let (i, msg) = o.check().unwrap_err();
            assert_eq!(i, 1, "{bad}");
            assert!(msg.contains("refusing"), "{bad}: {msg}");
        }
        for bad in ["etc/passwd", "/etc/", "/etc/../etc/shadow", "/etc//passwd"] {
            let o = RetrieveOptions {
                paths: vec![bad.into()],
                ..Default::default()
            };
            assert!(o.check().is_err(), "{bad}");
        }
        let o = RetrieveOptions {
            paths: vec!["/etc/passwd".into(), "/etc/passwd".into()],
            ..Default::default()
        };
        assert_eq!(o.check().unwrap_err().0, 1);
        // Public keys and ordinary configs are fine.
        assert_eq!(secret_path("/root/.ssh/id_rsa.pub"), None);
        assert_eq!(secret_path("/etc/nginx/nginx.conf"), None);
    }

    #[test]
    fn content_round_trips_as_base64() {
        let f = RetrievedFile {
            path: "/etc/passwd".into(),
            content: b"root:x:0:0::/root:/bin/sh\n\xff".to_vec(),
        };
        let json = serde_json::to_string(&f).unwrap();
        assert!(json.contains("cm9vd"), "{json}");
        assert_eq!(serde_json::from_str::<RetrievedFile>(&json).unwrap(), f);
    }
}

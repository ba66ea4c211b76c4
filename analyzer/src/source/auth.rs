//! Registry credentials: a Docker `config.json` (`auths`) and environment variables.

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine;
use serde::Deserialize;

/// A user name and password (or token) for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    /// User name.
    pub username: String,
    /// Password or token.
    pub password: String,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret({}, ***)", self.username)
    }
}

/// Credentials by registry host; anonymous access where none is known.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    by_host: BTreeMap<String, Secret>,
    fallback: Option<Secret>,
}

#[derive(Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: BTreeMap<String, DockerAuth>,
}

#[derive(Deserialize)]
struct DockerAuth {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

/// `https://index.docker.io/v1/` and `docker.io` both mean Docker Hub; keys are bare hosts.
fn normalize_host(key: &str) -> String {
    let host = key
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    match host.as_str() {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" => "docker.io".into(),
        _ => host,
    }
}

impl Credentials {
    /// No credentials: anonymous access everywhere.
    pub fn none() -> Self {
        Self::default()
    }

    /// Loads `$DOCKER_CONFIG/config.json` (else `~/.docker/config.json`) when present, then
    /// `FATHOM_REGISTRY_USERNAME`/`FATHOM_REGISTRY_PASSWORD` as credentials for registries the file does
    /// not name. A malformed config file is reported, not ignored.
    pub fn from_env() -> Result<Self, String> {
        let mut creds = Credentials::default();
        let dir = std::env::var_os("DOCKER_CONFIG")
            .map(std::path::PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".docker")));
        if let Some(dir) = dir {
            let path = dir.join("config.json");
            if path.is_file() {
                creds.load_docker_config(&path)?;
            }
        }
        if let (Ok(username), Ok(password)) = (
            std::env::var("FATHOM_REGISTRY_USERNAME"),
            std::env::var("FATHOM_REGISTRY_PASSWORD"),
        ) {
            creds.fallback = Some(Secret { username, password });
        }
        Ok(creds)
    }

    /// Adds the `auths` of a Docker `config.json`.
    pub fn load_docker_config(&mut self, path: &Path) -> Result<(), String> {
        let text = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let config: DockerConfig =
            serde_json::from_slice(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        for (key, entry) in config.auths {
            let secret = match (entry.username, entry.password, entry.auth) {
                (Some(username), Some(password), _) => Secret { username, password },
                (_, _, Some(auth)) => {
                    let decoded = base64::engine::general_purpose::STANDARD
                        .decode(auth.trim())
                        .map_err(|e| format!("{}: auths.{key}.auth: {e}", path.display()))?;
                    let decoded = String::from_utf8(decoded).map_err(|_| {
                        format!("{}: auths.{key}.auth is not UTF-8", path.display())
                    })?;
                    let (user, pass) = decoded.split_once(':').ok_or_else(|| {
                        format!("{}: auths.{key}.auth is not user:password", path.display())
                    })?;
                    Secret {
                        username: user.to_string(),
                        password: pass.to_string(),
                    }
                }
                // Credential helpers and identity tokens are not supported; anonymous access remains.
                _ => continue,
            };
            self.by_host.insert(normalize_host(&key), secret);
        }
        Ok(())
    }

    /// Sets the credentials for one registry host (`127.0.0.1:5000`).
    pub fn insert(&mut self, host: &str, username: &str, password: &str) {
        self.by_host.insert(
            normalize_host(host),
            Secret {
                username: username.into(),
                password: password.into(),
            },
        );
    }

    /// The credentials to use for `host`, if any.
    pub fn for_host(&self, host: &str) -> Option<&Secret> {
        self.by_host
            .get(&normalize_host(host))
            .or(self.fallback.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_docker_config() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        let auth = base64::engine::general_purpose::STANDARD.encode("alice:s3cr:et");
        std::fs::write(
            &path,
            format!(
                r#"{{"auths":{{"https://index.docker.io/v1/":{{"auth":"{auth}"}},
                "127.0.0.1:5000":{{"username":"bob","password":"pw"}},
                "helper.example":{{}}}}}}"#
            ),
        )
        .unwrap();
        let mut creds = Credentials::none();
        creds.load_docker_config(&path).unwrap();
        assert_eq!(creds.for_host("docker.io").unwrap().password, "s3cr:et");
        assert_eq!(creds.for_host("127.0.0.1:5000").unwrap().username, "bob");
        assert!(creds.for_host("helper.example").is_none());
        std::fs::write(&path, "{not json").unwrap();
        assert!(creds
            .load_docker_config(&path)
            .unwrap_err()
            .contains("config.json"));
    }
}

//! Image config facts for the `dockerfile` and `metadata` policy gates: user, ports, healthcheck,
//! entrypoint/cmd, environment variable names (never values), labels and history, from the config blob.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What the image config says about how the image runs and how it was built.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigFacts {
    /// Effective user (`USER`), empty when the image runs as root by default.
    #[serde(default)]
    pub user: String,
    /// Exposed ports (`80/tcp`), sorted.
    #[serde(default)]
    pub exposed_ports: Vec<String>,
    /// Healthcheck test (`["CMD", "curl", ...]`), absent when none is declared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<Vec<String>>,
    /// Entrypoint.
    #[serde(default)]
    pub entrypoint: Vec<String>,
    /// Cmd.
    #[serde(default)]
    pub cmd: Vec<String>,
    /// Working directory.
    #[serde(default)]
    pub working_dir: String,
    /// Names of the environment variables (values can be secrets: they are never kept).
    #[serde(default)]
    pub env_names: Vec<String>,
    /// Labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Volumes, sorted.
    #[serde(default)]
    pub volumes: Vec<String>,
    /// Build history, base first: the Dockerfile-ish `created_by` lines.
    #[serde(default)]
    pub history: Vec<HistoryEntry>,
    /// Architecture.
    #[serde(default)]
    pub architecture: String,
    /// Operating system.
    #[serde(default)]
    pub os: String,
}

/// One build step.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// The instruction (`/bin/sh -c #(nop)  EXPOSE 80/tcp`, `RUN /bin/sh -c apt-get ...`).
    #[serde(default)]
    pub created_by: String,
    /// Whether the step made no layer.
    #[serde(default)]
    pub empty_layer: bool,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawConfig {
    config: Option<RawRunConfig>,
    history: Vec<RawHistory>,
    architecture: String,
    os: String,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "PascalCase")]
struct RawRunConfig {
    user: Option<String>,
    exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
    healthcheck: Option<RawHealthcheck>,
    entrypoint: Option<Vec<String>>,
    cmd: Option<Vec<String>>,
    working_dir: Option<String>,
    env: Option<Vec<String>>,
    labels: Option<BTreeMap<String, String>>,
    volumes: Option<BTreeMap<String, serde_json::Value>>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "PascalCase")]
struct RawHealthcheck {
    test: Option<Vec<String>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawHistory {
    created_by: Option<String>,
    empty_layer: Option<bool>,
}

impl ConfigFacts {
    /// Reads the facts from a config blob; fields of the wrong shape are left empty (a config the
    /// manifest parser accepted is never failed over its optional parts).
    pub fn from_config(bytes: &[u8]) -> ConfigFacts {
        let raw: RawConfig = serde_json::from_slice(bytes).unwrap_or_default();
        let run = raw.config.unwrap_or_default();
        ConfigFacts {
            user: run.user.unwrap_or_default(),
            exposed_ports: run.exposed_ports.unwrap_or_default().into_keys().collect(),
            healthcheck: run
                .healthcheck
                .and_then(|h| h.test)
                .filter(|t| !t.is_empty() && t[0] != "NONE"),
            entrypoint: run.entrypoint.unwrap_or_default(),
            cmd: run.cmd.unwrap_or_default(),
            working_dir: run.working_dir.unwrap_or_default(),
            env_names: run
                .env
                .unwrap_or_default()
                .iter()
                .map(|e| e.split('=').next().unwrap_or_default().to_string())
                .collect(),
            labels: run.labels.unwrap_or_default(),
            volumes: run.volumes.unwrap_or_default().into_keys().collect(),
            history: raw
                .history
                .into_iter()
                .map(|h| HistoryEntry {
                    created_by: h.created_by.unwrap_or_default(),
                    empty_layer: h.empty_layer.unwrap_or(false),
                })
                .collect(),
            architecture: raw.architecture,
            os: raw.os,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_docker_config_without_env_values() {
        let config = br#"{"architecture":"amd64","os":"linux",
          "config":{"User":"app","ExposedPorts":{"8080/tcp":{},"53/udp":{}},
            "Env":["PATH=/usr/bin","API_TOKEN=hunter2hunter2"],
            "Healthcheck":{"Test":["CMD","curl","-f","http://localhost/"]},
            "Entrypoint":["/app"],"Cmd":null,"Labels":{"maintainer":"x"}},
          "history":[{"created_by":"/bin/sh -c #(nop) ADD file:abc in / "},
                     {"created_by":"/bin/sh -c #(nop)  USER app","empty_layer":true}]}"#;
        let f = ConfigFacts::from_config(config);
        assert_eq!(f.user, "app");
        assert_eq!(f.exposed_ports, ["53/udp", "8080/tcp"]);
        assert_eq!(f.env_names, ["PATH", "API_TOKEN"]);
        assert_eq!(f.healthcheck.as_deref().map(|t| t[0].as_str()), Some("CMD"));
        assert_eq!(f.history.len(), 2);
        assert!(f.history[1].empty_layer);
        assert_eq!(f.architecture, "amd64");
        let json = serde_json::to_string(&f).unwrap();
        assert!(!json.contains("hunter2"));
    }

    #[test]
    fn healthcheck_none_is_no_healthcheck() {
        let f = ConfigFacts::from_config(br#"{"config":{"Healthcheck":{"Test":["NONE"]}}}"#);
        assert_eq!(f.healthcheck, None);
        assert_eq!(
            ConfigFacts::from_config(b"not json"),
            ConfigFacts::default()
        );
    }
}

//! The content side of a stored image's policy facts: the image config as Dockerfile lines, and the
//! visible files the bundle's `files` rules can fire on, merged from the stored layers one at a time.

use std::collections::BTreeSet;

use fathom_analyzer::layer::{FileEntry, FileKind};
use fathom_analyzer::source::facts::ConfigFacts;
use fathom_policy::{Bundle, FileType, ImageConfig, ImageFacts};
use fathom_worker::store::{Store, StoreError};
use regex::Regex;

/// What a bundle's `files` rules read of the inventory. Each trigger fires only on files a cheap test
/// selects (setuid/setgid bits, an exact path, a path regex), so keeping just those files gives the same
/// verdicts as the whole inventory at a fraction of its memory.
#[derive(Debug, Default)]
pub struct FileNeeds {
    suid: bool,
    paths: BTreeSet<String>,
    patterns: Vec<Regex>,
    all: bool,
}

impl FileNeeds {
    /// The needs of every `files` rule in the bundle (every policy, mapped or not); `None` when no rule
    /// reads the inventory, so nothing is loaded.
    pub fn of(bundle: &Bundle) -> Option<FileNeeds> {
        let mut needs = FileNeeds::default();
        let mut any = false;
        for rule in bundle
            .policies
            .iter()
            .flat_map(|p| &p.rules)
            .filter(|r| r.gate == "files")
        {
            let param = |name: &str| {
                rule.params
                    .iter()
                    .find(|p| p.name == name)
                    .map(|p| p.value.as_str())
            };
            match rule.trigger.as_str() {
                "suid_or_guid_set" => needs.suid = true,
                "attribute_match" => {
                    needs
                        .paths
                        .insert(param("filename").unwrap_or_default().into());
                }
                "name_match" => {
                    // The gate's own anchoring (Python's re.match); a pattern that does not compile is
                    // a rule the validator refuses, so keeping everything for it costs nothing in practice.
                    let pattern = param("regex").unwrap_or_default();
                    match Regex::new(&format!("^(?:{pattern})")) {
                        Ok(re) => needs.patterns.push(re),
                        Err(_) => needs.all = true,
                    }
                }
                // content_regex_match reads content matches, not the inventory.
                _ => continue,
            }
            any = true;
        }
        any.then_some(needs)
    }

    /// Whether a file can make one of the rules fire.
    pub fn keeps(&self, f: &FileEntry) -> bool {
        self.all
            || (self.suid && f.kind == FileKind::File && f.mode & 0o6000 != 0)
            || self.paths.contains(&f.path)
            || self.patterns.iter().any(|re| re.is_match(&f.path))
    }
}

/// Fills `facts.files` with the visible files the bundle's `files` rules can fire on; leaves it `None`
/// when no rule reads it or the image's layer results are not stored (so those rules say unavailable).
pub async fn add_files(
    store: &Store,
    bundle: &Bundle,
    facts: &mut ImageFacts,
) -> Result<(), StoreError> {
    let Some(needs) = FileNeeds::of(bundle) else {
        return Ok(());
    };
    let Some((files, _truncated)) = store
        .image_files_where(&facts.image.digest, |f| needs.keeps(f))
        .await?
    else {
        return Ok(());
    };
    facts.files = Some(files.into_iter().map(|f| policy_file(f.entry)).collect());
    Ok(())
}

fn policy_file(e: FileEntry) -> fathom_policy::FileEntry {
    let file_type = match e.kind {
        FileKind::File => FileType::File,
        FileKind::Dir => FileType::Dir,
        FileKind::Symlink => FileType::Symlink,
        FileKind::HardLink | FileKind::Other => FileType::Other,
    };
    let regular = e.kind == FileKind::File;
    fathom_policy::FileEntry {
        suid: regular && e.mode & 0o4000 != 0,
        sgid: regular && e.mode & 0o2000 != 0,
        path: e.path,
        file_type,
        mode: e.mode,
        // Ids past u32 do not exist on Linux; a tar header claiming one is shown as the largest.
        uid: u32::try_from(e.uid).unwrap_or(u32::MAX),
        gid: u32::try_from(e.gid).unwrap_or(u32::MAX),
        size: e.size,
        sha256: e.sha256,
    }
}

/// The config as the `dockerfile` gate reads it: history `created_by` lines as Dockerfile instructions
/// (anchore's "Guessed" Dockerfile), user, ports, healthcheck, env names (values are never stored) and
/// labels.
pub fn image_config(c: &ConfigFacts) -> ImageConfig {
    ImageConfig {
        dockerfile_mode: Default::default(),
        instructions: c
            .history
            .iter()
            .filter_map(|h| instruction(&h.created_by))
            .collect(),
        exposed_ports: c.exposed_ports.clone(),
        user: Some(c.user.clone()).filter(|u| !u.is_empty()),
        healthcheck: c.healthcheck.as_ref().map(|test| healthcheck(test)),
        env: c.env_names.clone(),
        labels: c.labels.clone(),
    }
}

/// `["CMD", "curl", "-f", "x"]` → `CMD curl -f x`; `["CMD-SHELL", "curl -f x"]` → `CMD curl -f x`.
fn healthcheck(test: &[String]) -> String {
    match test.split_first() {
        Some((kind, rest)) if kind == "CMD-SHELL" || kind == "CMD" => {
            format!("CMD {}", rest.join(" "))
        }
        _ => test.join(" "),
    }
}

/// One history line as a Dockerfile instruction: the classic builder writes `/bin/sh -c #(nop)  EXPOSE
/// 80/tcp` for metadata steps and `/bin/sh -c apt-get ...` for RUN; BuildKit writes `RUN /bin/sh -c ...
/// # buildkit` and `EXPOSE map[80/tcp:{}]`.
fn instruction(created_by: &str) -> Option<String> {
    let line = created_by.trim();
    if line.is_empty() {
        return None;
    }
    let line = line.strip_suffix("# buildkit").unwrap_or(line).trim_end();
    let line = if let Some(rest) = line.strip_prefix("/bin/sh -c #(nop)") {
        rest.trim().to_string()
    } else if let Some(rest) = line.strip_prefix("/bin/sh -c ") {
        format!("RUN {}", rest.trim())
    } else if let Some(rest) = line.strip_prefix("RUN /bin/sh -c ") {
        format!("RUN {}", rest.trim())
    } else {
        line.to_string()
    };
    // BuildKit's Go map syntax: `EXPOSE map[80/tcp:{} 443/tcp:{}]`.
    if let Some(ports) = line
        .strip_prefix("EXPOSE map[")
        .and_then(|r| r.strip_suffix(']'))
    {
        let ports: Vec<&str> = ports
            .split_whitespace()
            .map(|p| p.trim_end_matches(":{}"))
            .collect();
        return Some(format!("EXPOSE {}", ports.join(" ")));
    }
    Some(line)
}

#[cfg(test)]
mod tests {
    use super::instruction;

    #[test]
    fn history_lines_become_dockerfile_instructions() {
        for (given, want) in [
            ("/bin/sh -c #(nop)  EXPOSE 80/tcp", "EXPOSE 80/tcp"),
            ("/bin/sh -c #(nop)  USER app", "USER app"),
            ("/bin/sh -c apt-get update", "RUN apt-get update"),
            ("RUN /bin/sh -c make # buildkit", "RUN make"),
            ("EXPOSE map[443/tcp:{} 80/tcp:{}]", "EXPOSE 443/tcp 80/tcp"),
            ("/bin/sh -c #(nop) ADD file:abc in / ", "ADD file:abc in /"),
            ("COPY . /app # buildkit", "COPY . /app"),
            ("WORKDIR /app", "WORKDIR /app"),
            ("USER 1000:1000", "USER 1000:1000"),
            ("USER nobody", "USER nobody"),
        ] {
            assert_eq!(instruction(given).as_deref(), Some(want), "{given}");
        }
        assert_eq!(instruction("  "), None);
    }
}

//! The text formats inside a Java archive: `MANIFEST.MF`, `pom.properties`, and the name/version a jar's
//! file name suggests (`commons-text-1.10.0.jar`). Rules follow Syft's so the two agree on the same jars.

use std::collections::BTreeMap;

/// A parsed manifest: the main section and the named sections' fields.
#[derive(Debug, Default)]
pub(crate) struct Manifest {
    /// Main attributes.
    pub main: BTreeMap<String, String>,
    /// Per-entry sections, in file order.
    pub sections: Vec<BTreeMap<String, String>>,
}

impl Manifest {
    /// `Key: value` lines, continuation lines starting with a space, blank lines between sections.
    pub(crate) fn parse(text: &str) -> Result<Manifest, String> {
        let mut sections: Vec<BTreeMap<String, String>> = vec![BTreeMap::new()];
        let mut new_section = false;
        let mut last_key: Option<String> = None;
        for line in text.lines() {
            if line.trim().is_empty() {
                new_section = true;
                last_key = None;
                continue;
            }
            if new_section {
                sections.push(BTreeMap::new());
                new_section = false;
            }
            let cur = sections.last_mut().ok_or("no section")?;
            if let Some(cont) = line.strip_prefix(' ') {
                let key = last_key
                    .as_ref()
                    .ok_or_else(|| format!("continuation with no previous key: {line:?}"))?;
                if let Some(v) = cur.get_mut(key) {
                    v.push_str(cont.trim());
                }
                continue;
            }
            let (k, v) = line
                .split_once(':')
                .ok_or_else(|| format!("not a `Key: value` line: {line:?}"))?;
            let key = k.trim().to_owned();
            cur.insert(key.clone(), v.trim().to_owned());
            last_key = Some(key);
        }
        let main = sections.remove(0);
        Ok(Manifest { main, sections })
    }

    fn main_field(&self, key: &str) -> Option<&str> {
        self.main
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// A field from the main section, else from any named section.
    fn any_field(&self, key: &str) -> Option<&str> {
        self.main_field(key).or_else(|| {
            self.sections
                .iter()
                .find_map(|s| s.get(key).map(String::as_str).filter(|v| !v.is_empty()))
        })
    }

    /// Syft's name choice: the file name's, then the manifest's naming fields.
    pub(crate) fn select_name(&self, file: &FileName) -> String {
        if !file.name.is_empty() {
            return file.name.clone();
        }
        [
            "Name",
            "Bundle-Name",
            "Short-Name",
            "Extension-Name",
            "Implementation-Title",
        ]
        .iter()
        .find_map(|k| self.main_field(k))
        .unwrap_or_default()
        .to_owned()
    }

    /// Syft's version choice: the file name's, then the manifest's version fields.
    pub(crate) fn select_version(&self, file: &FileName) -> String {
        if !file.version.is_empty() {
            return file.version.clone();
        }
        [
            "Implementation-Version",
            "Specification-Version",
            "Plugin-Version",
        ]
        .iter()
        .find_map(|k| self.any_field(k))
        .unwrap_or_default()
        .to_owned()
    }

    /// Declared licenses (`Bundle-License`, comma-separated).
    pub(crate) fn licenses(&self) -> Vec<String> {
        self.main_field("Bundle-License")
            .map(|l| {
                l.split(',')
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A Maven group id guessed from the manifest, for the purl of a jar without pom.properties.
    pub(crate) fn group_id(&self) -> Option<String> {
        if let Some(g) = self.main_field("Implementation-Vendor-Id") {
            return Some(g.to_owned());
        }
        let symbolic = self
            .main_field("Bundle-SymbolicName")
            .or_else(|| self.main_field("Automatic-Module-Name"))?;
        let symbolic = symbolic.split(';').next().unwrap_or_default().trim();
        let (group, _) = symbolic.rsplit_once('.')?;
        Some(group.to_owned())
    }
}

/// `pom.properties`: what Maven wrote about the artifact.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct PomProperties {
    /// `groupId`.
    pub group_id: String,
    /// `artifactId`.
    pub artifact_id: String,
    /// `version`.
    pub version: String,
}

impl PomProperties {
    /// Java properties syntax, reduced to what Maven writes: `key=value` or `key: value`, `#`/`!` comments.
    pub(crate) fn parse(text: &str) -> PomProperties {
        let mut p = PomProperties::default();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
                continue;
            }
            let Some(i) = line.find(['=', ':']) else {
                continue;
            };
            let (k, v) = (line[..i].trim(), line[i + 1..].trim().to_owned());
            match k {
                "groupId" => p.group_id = v,
                "artifactId" => p.artifact_id = v,
                "version" => p.version = v,
                _ => {}
            }
        }
        p
    }
}

/// Name and version suggested by a jar's file name.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct FileName {
    /// Name part (`commons-text`), empty when the name does not have the expected shape.
    pub name: String,
    /// Version part (`1.10.0`), empty when there is none.
    pub version: String,
}

/// A word of a name: starts with a letter, then letters, digits, `_` or `.`.
fn is_name_word(w: &str) -> bool {
    let mut c = w.chars();
    c.next().is_some_and(|f| f.is_alphabetic())
        && c.all(|ch| ch.is_alphanumeric() || ch == '_' || ch == '.')
}

/// Whether a dash-separated group starts a version: a digit, `build<digit>`, or `r<digits>`/`rc<digits>` alone.
fn starts_version(group: &str, is_last: bool) -> bool {
    let lower = group.to_ascii_lowercase();
    if lower.starts_with(|c: char| c.is_ascii_digit()) {
        return true;
    }
    if let Some(rest) = lower.strip_prefix("build") {
        return rest.starts_with(|c: char| c.is_ascii_digit());
    }
    let digits = lower.strip_prefix("rc").or_else(|| lower.strip_prefix('r'));
    is_last && digits.is_some_and(|d| !d.is_empty() && d.chars().all(|c| c.is_ascii_digit()))
}

impl FileName {
    /// Splits `name-1.2.3.jar` the way Syft's file-name pattern does: the name runs until the first
    /// dash-group that looks like a version; `name_1.2`/`name.1.2` are tried when no dash-version exists.
    pub(crate) fn parse(file: &str) -> FileName {
        let stem = match file.rfind('.') {
            Some(i) if i > 0 => &file[..i],
            _ => file,
        };
        let groups: Vec<&str> = stem.split('-').collect();
        for i in 1..groups.len() {
            if starts_version(groups[i], i + 1 == groups.len()) {
                if groups[..i].iter().all(|g| is_name_word(g)) {
                    return FileName {
                        name: groups[..i].join("-"),
                        version: groups[i..].join("-"),
                    };
                }
                return FileName::default();
            }
        }
        if !groups.iter().all(|g| is_name_word(g)) {
            return FileName::default();
        }
        // `name_1.2` or `name.1.2`: a version after the last `_`/`.` that starts with a digit.
        let name = stem;
        let mut idx = None;
        for (i, c) in name.char_indices() {
            if (c == '_' || c == '.' || c == '-')
                && name[i + 1..].starts_with(|c: char| c.is_ascii_digit())
            {
                idx = Some(i);
                break;
            }
        }
        match idx {
            Some(i) => FileName {
                name: name[..i].to_owned(),
                version: name[i + 1..].to_owned(),
            },
            None => FileName {
                name: name.to_owned(),
                version: String::new(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(f: &str) -> (String, String) {
        let n = FileName::parse(f);
        (n.name, n.version)
    }

    #[test]
    fn file_names() {
        let s = |a: &str, b: &str| (a.to_owned(), b.to_owned());
        assert_eq!(
            split("commons-text-1.10.0.jar"),
            s("commons-text", "1.10.0")
        );
        assert_eq!(split("commons-text.jar"), s("commons-text", ""));
        assert_eq!(split("my-http2-server-5.jar"), s("my-http2-server", "5"));
        assert_eq!(
            split("jetpack-build235-rc5.jar"),
            s("jetpack", "build235-rc5")
        );
        assert_eq!(
            split("spring-core-5.3.9.RELEASE.jar"),
            s("spring-core", "5.3.9.RELEASE")
        );
        assert_eq!(split("guava_31.1.jar"), s("guava", "31.1"));
        assert_eq!(split("prefix.thing-4.jar"), s("prefix.thing", "4"));
    }

    #[test]
    fn manifest_sections_and_continuations() {
        let m = Manifest::parse(
            "Manifest-Version: 1.0\nImport-Package: org.slf4j;version=1.7.32,or\n g.slf4j.helpers\n\nName: x/\nImplementation-Version: 2.0\n",
        )
        .unwrap();
        assert_eq!(
            m.main["Import-Package"],
            "org.slf4j;version=1.7.32,org.slf4j.helpers"
        );
        assert_eq!(m.select_version(&FileName::default()), "2.0");
        assert!(Manifest::parse(" leading continuation\n").is_err());
        assert!(Manifest::parse("no colon here\n").is_err());
    }

    #[test]
    fn pom_properties() {
        let p = PomProperties::parse(
            "#Created by Apache Maven\ngroupId=org.slf4j\nartifactId=slf4j-nop\nversion=1.7.32\n",
        );
        assert_eq!(
            (
                p.group_id.as_str(),
                p.artifact_id.as_str(),
                p.version.as_str()
            ),
            ("org.slf4j", "slf4j-nop", "1.7.32")
        );
    }
}

//! Debian `copyright` files: the licenses a package declares, read the way Syft reads them (every
//! `License:` field's first word and every `/usr/share/common-licenses/NAME` reference), normalized to SPDX
//! where the name is known.

use std::collections::BTreeSet;

use super::license::normalize;
use super::CopyrightRecord;

/// `/usr/share/doc/<package>/copyright`, directly (not in a subdirectory).
pub fn is_copyright_path(path: &str) -> bool {
    path.strip_prefix("/usr/share/doc/")
        .and_then(|rest| rest.strip_suffix("/copyright"))
        .is_some_and(|pkg| !pkg.is_empty() && !pkg.contains('/'))
}

/// The licenses one copyright file names (none: `None`, so the package keeps what it had).
pub fn parse_copyright(path: &str, bytes: &[u8]) -> Option<CopyrightRecord> {
    let package = path
        .strip_prefix("/usr/share/doc/")?
        .strip_suffix("/copyright")?;
    let text = String::from_utf8_lossy(bytes);
    let mut found = BTreeSet::new();
    for line in text.lines() {
        if let Some(value) = line.strip_prefix("License:") {
            if let Some(first) = value.split_whitespace().next() {
                found.insert(clean(first));
            }
        }
        let mut rest = line;
        while let Some(at) = rest.find("/usr/share/common-licenses/") {
            rest = &rest[at + "/usr/share/common-licenses/".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
                .collect();
            let name = name.trim_end_matches('.');
            if !name.is_empty() {
                found.insert(clean(name));
            }
        }
    }
    // Syft drops `none` (`License: none` on a stanza of generated files) as no license.
    found.retain(|l| !l.is_empty() && !l.eq_ignore_ascii_case("none"));
    if found.is_empty() {
        return None;
    }
    let mut licenses: Vec<String> = found.iter().map(|l| normalize(l)).collect();
    licenses.sort();
    licenses.dedup();
    Some(CopyrightRecord {
        path: path.to_string(),
        package: package.to_string(),
        licenses,
    })
}

/// Drops trailing punctuation (`GPL-2+,`, a sentence's `.`) that is never part of a license name.
fn clean(word: &str) -> String {
    word.trim_end_matches([',', ';', ')', '(', '.']).to_string()
}

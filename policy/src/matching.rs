//! Matching images to mappings and image rules, and trigger ids to whitelist items: `*` wildcards.

use crate::facts::ImageInfo;
use crate::model::ImageSelector;

/// Whole-string match of `pattern` against `text`, where `*` stands for any run of characters.
pub fn glob(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    // Where the last `*` was and which text position it is currently standing in for.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// anchore's mapping rule test: registry and repository first, then the image by tag, digest or id
/// (a tag rule also selects the image whose id or digest equals its value).
pub(crate) fn selects(
    registry: &str,
    repository: &str,
    image: &ImageSelector,
    info: &ImageInfo,
) -> bool {
    if !glob(registry, &info.registry) || !glob(repository, &info.repository) {
        return false;
    }
    match image.kind.as_str() {
        "digest" => image.value == info.digest,
        "id" => image.value == info.id,
        _ => {
            glob(&image.value, info.tag.as_deref().unwrap_or_default())
                || image.value == info.id
                || image.value == info.digest
        }
    }
}

//! Tar entry paths normalized the way the container runtime would apply them, without touching a disk.

/// Normalizes a tar entry name to an absolute path with no `.`/`..` components and no trailing `/`.
///
/// Leading `/` and `./` are accepted (tars are applied relative to the root). A `..` that would climb above
/// the root is refused, as moby's unpacker refuses it: such an entry is a breakout attempt, not a
/// packaging accident.
pub fn normalize(raw: &[u8]) -> Result<String, String> {
    let text = String::from_utf8_lossy(raw);
    let mut parts: Vec<&str> = Vec::new();
    for part in text.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(format!("entry {text:?} escapes the image root"));
                }
            }
            p => parts.push(p),
        }
    }
    if parts.is_empty() {
        return Ok("/".into());
    }
    let mut out = String::with_capacity(text.len() + 1);
    for p in parts {
        out.push('/');
        out.push_str(p);
    }
    Ok(out)
}

/// Splits `/a/b/c` into (`/a/b`, `c`); the parent of a top-level entry is `/`.
pub fn split(path: &str) -> (&str, &str) {
    match path.rfind('/') {
        Some(0) => ("/", &path[1..]),
        Some(i) => (&path[..i], &path[i + 1..]),
        None => ("/", path),
    }
}

/// Joins a normalized directory and a name.
pub fn join(dir: &str, name: &str) -> String {
    if dir == "/" {
        format!("/{name}")
    } else {
        format!("{dir}/{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes() {
        assert_eq!(normalize(b"./etc/os-release").unwrap(), "/etc/os-release");
        assert_eq!(normalize(b"/usr//lib/./x/").unwrap(), "/usr/lib/x");
        assert_eq!(normalize(b"usr/lib/../bin/sh").unwrap(), "/usr/bin/sh");
        assert_eq!(normalize(b"./").unwrap(), "/");
        assert!(normalize(b"../../etc/passwd")
            .unwrap_err()
            .contains("escapes"));
        assert!(normalize(b"a/../../b").is_err());
    }

    #[test]
    fn splits_and_joins() {
        assert_eq!(split("/a/b/c"), ("/a/b", "c"));
        assert_eq!(split("/a"), ("/", "a"));
        assert_eq!(join("/", "a"), "/a");
        assert_eq!(join("/a", "b"), "/a/b");
    }
}

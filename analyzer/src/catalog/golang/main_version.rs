//! A better version than `(devel)` for a Go binary's main module, found the ways Syft (1.18, the version
//! fathom's output is compared with) finds one, in its order: a version-setting `-X` flag in the recorded
//! `-ldflags`, else a semver-like string standing alone in the binary's data (where a `-X` value ends up;
//! a GOPATH build such as Debian's records no `-ldflags` at all), else a pseudo-version from the VCS build
//! settings.

use std::sync::OnceLock;

use regex::bytes::Regex as BytesRegex;
use regex::Regex;

use super::buildinfo::BuildInfo;

/// What may follow the symbol's package in a version-setting `-X` flag: Syft's two patterns, tried in
/// this order (any `…Version=` / `…Ver=` first, then `….tag=`). Go's `\d`, `\w` and `\S` are ASCII, so
/// they are spelled out; the unescaped `.` between the numbers is Syft's too.
const SYMBOL_PATTERNS: [&str; 2] = [
    r"\.[a-zA-Z0-9]*([rR]elease)?([gG]it)?([bB]uild)?[vV]er(sion)?=([^\t\n\f\r ]+/)*(?P<version>v?[0-9]+.[0-9]+.[0-9]+[-0-9A-Za-z_]*)",
    r"\.[a-zA-Z0-9]*([tT]ag)=([^\t\n\f\r ]+/)*(?P<version>v?[0-9]+.[0-9]+.[0-9]+[-0-9A-Za-z_]*)",
];

/// A semver-like string between a NUL (or a byte that is not UTF-8, which Go's regexp reads as U+FFFD)
/// and a NUL, optionally after one character and an `L` (seen before such strings in some binaries).
const CONTENTS_PATTERN: &str = r"(?-u)(?:\x00|[\x80-\xFF])(?:[^\n]L)?(?P<version>v?[0-9]+\.[0-9]+\.[0-9]+[-0-9A-Za-z_]*[+0-9A-Za-z_]*)\x00";

/// The main module's version when build info says `(devel)` (or nothing): from the ldflags, the binary's
/// contents, then the VCS settings; `None` when none of them has one.
pub(crate) fn guess(info: &BuildInfo, main_module: &str, binary: &[u8]) -> Option<String> {
    info.setting("-ldflags")
        .and_then(|flags| from_ldflags(flags, main_module))
        .or_else(|| from_contents(binary))
        .or_else(|| pseudo_version(info))
}

/// The version a `-X main.…=` or `-X <main module>/….…=` flag sets, `v`-prefixed. Flags naming another
/// module's symbols are ignored: they version a dependency, not this binary.
pub(crate) fn from_ldflags(ldflags: &str, main_module: &str) -> Option<String> {
    SYMBOL_PATTERNS.iter().find_map(|pattern| {
        let owner = format!(r"(main|{}/[^\t\n\f\r ]*)", regex::escape(main_module));
        // Escaped, the module path cannot make the pattern invalid; a failure would be a bug here, and
        // costs only this heuristic.
        let re = Regex::new(&format!("{owner}{pattern}")).ok()?;
        let version = re.captures(ldflags)?.name("version")?.as_str();
        Some(with_v(version))
    })
}

/// The first semver-like string standing alone in the binary, `v`-prefixed.
pub(crate) fn from_contents(binary: &[u8]) -> Option<String> {
    static RE: OnceLock<Option<BytesRegex>> = OnceLock::new();
    let re = RE
        .get_or_init(|| BytesRegex::new(CONTENTS_PATTERN).ok())
        .as_ref()?;
    let mut at = 0;
    while let Some(caps) = re.captures_at(binary, at) {
        let whole = caps.get(0)?;
        if reads_as_separator(binary, whole.start()) {
            let version = caps.name("version")?.as_bytes();
            return std::str::from_utf8(version).ok().map(with_v);
        }
        at = whole.start() + 1;
    }
    None
}

/// Whether the byte at `i` is what Go's regexp sees as NUL or U+FFFD: NUL, a byte no valid UTF-8
/// sequence ends with there (Go decodes it as U+FFFD), or the end of an encoded U+FFFD itself.
fn reads_as_separator(bytes: &[u8], i: usize) -> bool {
    let b = bytes[i];
    if b == 0 {
        return true;
    }
    // UTF-8 synchronises itself: the character ending at `i`, if any, starts at most 3 bytes earlier.
    let ending_here =
        (i.saturating_sub(3)..=i).find_map(|start| match std::str::from_utf8(&bytes[start..=i]) {
            Ok(s) if s.chars().count() == 1 => s.chars().next(),
            _ => None,
        });
    ending_here.is_none_or(|c| c == char::REPLACEMENT_CHARACTER)
}

/// `v0.0.0-20230102150405-abcdef123456` from `vcs.revision` and `vcs.time`, as `go build` would name it.
pub(crate) fn pseudo_version(info: &BuildInfo) -> Option<String> {
    let rev = info.setting("vcs.revision")?;
    let time = info.setting("vcs.time")?;
    let digits: String = time.chars().filter(char::is_ascii_digit).take(14).collect();
    let stamp = if digits.len() == 14 {
        digits
    } else {
        "00010101000000".to_owned()
    };
    let short: String = rev.chars().take(12).collect();
    Some(format!("v0.0.0-{stamp}-{short}"))
}

fn with_v(version: &str) -> String {
    if version.starts_with('v') {
        version.to_owned()
    } else {
        format!("v{version}")
    }
}

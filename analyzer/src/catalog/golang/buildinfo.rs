//! Go build info: the `\xff Go buildinf:` header the linker places in `.go.buildinfo` (or at the start of
//! the first writable segment), then the Go version and the module info text (`path`, `mod`, `dep`, `=>`,
//! `build` lines) — inline since Go 1.18, behind pointers before.

use crate::catalog::binary::Elf;

const MAGIC: &[u8] = b"\xff Go buildinf:";
const HEADER_LEN: usize = 32;
const ALIGN: usize = 16;
/// Go's reader only searches this much of the data segment.
const SEARCH_LEN: usize = 64 * 1024;
/// Flag bit: version and module info are stored inline after the header.
const FLAG_INLINE: u8 = 0x2;
/// Flag bit: pointers are big-endian.
const FLAG_BIG_ENDIAN: u8 = 0x1;

/// One module line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Module {
    /// Module path.
    pub path: String,
    /// Module version (`v1.2.3`, `(devel)`).
    pub version: String,
}

/// Parsed build info.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct BuildInfo {
    /// `go1.21.5`.
    pub go_version: String,
    /// The `path` line: the main package's import path.
    pub path: String,
    /// The `mod` line, when the binary was built in module mode.
    pub main: Option<Module>,
    /// `dep` lines with any `=>` replacement applied.
    pub deps: Vec<Module>,
    /// `build` settings (`-ldflags`, `GOARCH`, `vcs.revision`, ...).
    pub settings: Vec<(String, String)>,
}

impl BuildInfo {
    /// A build setting by key.
    pub(crate) fn setting(&self, key: &str) -> Option<&str> {
        self.settings
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Finds and decodes build info. `Ok(None)`: not a Go binary. `Err`: a Go header whose contents are broken.
pub(crate) fn read(elf: &Elf<'_>) -> Result<Option<BuildInfo>, String> {
    let area = match elf.section(".go.buildinfo")? {
        Some(d) => d,
        None => match elf.first_data_segment() {
            Some(d) => &d[..d.len().min(SEARCH_LEN)],
            None => return Ok(None),
        },
    };
    let Some(header) = find_header(area) else {
        return Ok(None);
    };
    let ptr_size = header[14] as usize;
    let flags = header[15];
    let (version, modinfo) = if flags & FLAG_INLINE != 0 {
        let (v, rest) =
            varint_string(&header[HEADER_LEN..]).ok_or("truncated inline Go version")?;
        let (m, _) = varint_string(rest).ok_or("truncated inline module info")?;
        (v.to_vec(), m.to_vec())
    } else {
        if ptr_size != 4 && ptr_size != 8 {
            return Err(format!("build info pointer size {ptr_size}"));
        }
        let big = flags & FLAG_BIG_ENDIAN != 0 || elf.is_big_endian();
        let ptr = |b: &[u8]| read_ptr(b, ptr_size, big);
        let vers_addr = ptr(&header[16..]).ok_or("truncated build info header")?;
        let mod_addr = ptr(&header[16 + ptr_size..]).ok_or("truncated build info header")?;
        let string_at = |addr: u64| -> Option<Vec<u8>> {
            let hdr = elf.read_at(addr, 2 * ptr_size as u64)?;
            let (data, len) = (ptr(hdr)?, ptr(&hdr[ptr_size..])?);
            if len > u32::MAX as u64 {
                return None;
            }
            elf.read_at(data, len).map(<[u8]>::to_vec)
        };
        (
            string_at(vers_addr).unwrap_or_default(),
            string_at(mod_addr).unwrap_or_default(),
        )
    };
    if version.is_empty() {
        return Ok(None);
    }
    let go_version = String::from_utf8(version).map_err(|_| "Go version is not UTF-8")?;
    // The module text is framed by 16-byte sentinels; without them there is no module info (GOPATH builds).
    let modinfo = if modinfo.len() >= 33 && modinfo[modinfo.len() - 17] == b'\n' {
        &modinfo[16..modinfo.len() - 16]
    } else {
        &[][..]
    };
    let text = std::str::from_utf8(modinfo).map_err(|_| "module info is not UTF-8")?;
    let mut info = parse_modinfo(text)?;
    info.go_version = go_version;
    Ok(Some(info))
}

/// The first 16-byte-aligned magic followed by a full header.
fn find_header(area: &[u8]) -> Option<&[u8]> {
    let mut at = 0;
    while at + HEADER_LEN <= area.len() {
        let i = at + find(&area[at..], MAGIC)?;
        if i % ALIGN == 0 && area.len() - i >= HEADER_LEN {
            return Some(&area[i..]);
        }
        at = (i + ALIGN) & !(ALIGN - 1);
    }
    None
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn read_ptr(b: &[u8], size: usize, big: bool) -> Option<u64> {
    let b = b.get(..size)?;
    Some(match (size, big) {
        (4, false) => u32::from_le_bytes(b.try_into().ok()?) as u64,
        (4, true) => u32::from_be_bytes(b.try_into().ok()?) as u64,
        (_, false) => u64::from_le_bytes(b.try_into().ok()?),
        (_, true) => u64::from_be_bytes(b.try_into().ok()?),
    })
}

/// A uvarint length followed by that many bytes.
fn varint_string(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let (mut len, mut shift, mut i) = (0u64, 0u32, 0usize);
    loop {
        let byte = *b.get(i)?;
        i += 1;
        len |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 63 {
            return None;
        }
    }
    let end = i.checked_add(usize::try_from(len).ok()?)?;
    Some((b.get(i..end)?, &b[end..]))
}

/// Parses the tab-separated module info lines.
pub(crate) fn parse_modinfo(text: &str) -> Result<BuildInfo, String> {
    let mut info = BuildInfo::default();
    // Which module a `=>` line replaces: the main module or the last dep.
    let mut last_is_main = false;
    for (n, line) in text.lines().enumerate() {
        let fields: Vec<&str> = line.split('\t').collect();
        let bad = || format!("module info line {}: {line:?}", n + 1);
        match fields[0] {
            "" => {}
            "go" => {}
            "path" => info.path = fields.get(1).ok_or_else(bad)?.to_string(),
            "mod" | "dep" => {
                let m = Module {
                    path: fields.get(1).ok_or_else(bad)?.to_string(),
                    version: fields.get(2).unwrap_or(&"").to_string(),
                };
                last_is_main = fields[0] == "mod";
                if last_is_main {
                    info.main = Some(m);
                } else {
                    info.deps.push(m);
                }
            }
            "=>" => {
                let m = Module {
                    path: fields.get(1).ok_or_else(bad)?.to_string(),
                    version: fields.get(2).unwrap_or(&"").to_string(),
                };
                let target = if last_is_main {
                    info.main.as_mut()
                } else {
                    info.deps.last_mut()
                };
                *target.ok_or_else(bad)? = m;
            }
            "build" => {
                let kv = fields[1..].join("\t");
                let (k, v) = kv.split_once('=').ok_or_else(bad)?;
                info.settings.push((unquote(k), unquote(v)));
            }
            _ => return Err(bad()),
        }
    }
    Ok(info)
}

/// Go writes setting values with `strconv.Quote` when they contain spaces or quotes.
fn unquote(s: &str) -> String {
    match s.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
        Some(inner) => inner.replace("\\\"", "\"").replace("\\\\", "\\"),
        None => s.to_owned(),
    }
}

/// Encodes build info the way the Go 1.18+ linker does (inline strings): for sample binaries and tests.
#[cfg(any(test, feature = "fixtures"))]
pub fn encode_inline(go_version: &str, modinfo: &str) -> Vec<u8> {
    const START: [u8; 16] = [
        0x30, 0x77, 0xaf, 0x0c, 0x92, 0x74, 0x08, 0x02, 0x41, 0xe1, 0xc1, 0x07, 0xe6, 0xd6, 0x18,
        0xe6,
    ];
    const END: [u8; 16] = [
        0xf9, 0x32, 0x43, 0x31, 0x86, 0x18, 0x20, 0x72, 0x00, 0x82, 0x42, 0x10, 0x41, 0x16, 0xd8,
        0xf2,
    ];
    let mut out = MAGIC.to_vec();
    out.push(8);
    out.push(FLAG_INLINE);
    out.resize(HEADER_LEN, 0);
    let mut framed = START.to_vec();
    framed.extend_from_slice(modinfo.as_bytes());
    framed.extend_from_slice(&END);
    for s in [go_version.as_bytes(), framed.as_slice()] {
        let mut len = s.len() as u64;
        loop {
            let b = (len & 0x7f) as u8;
            len >>= 7;
            out.push(if len == 0 { b } else { b | 0x80 });
            if len == 0 {
                break;
            }
        }
        out.extend_from_slice(s);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modinfo_with_replacements_and_settings() {
        let text = "path\texample.com/app/cmd/app\nmod\texample.com/app\t(devel)\t\n\
                    dep\tgithub.com/a/b\tv1.0.0\th1:x=\n=>\tgithub.com/fork/b\tv1.0.1\th1:y=\n\
                    build\t-ldflags=\"-X main.version=1.2.3\"\nbuild\tGOARCH=amd64\n";
        let info = parse_modinfo(text).unwrap();
        assert_eq!(info.path, "example.com/app/cmd/app");
        assert_eq!(
            info.deps,
            [Module {
                path: "github.com/fork/b".into(),
                version: "v1.0.1".into()
            }]
        );
        assert_eq!(info.setting("-ldflags"), Some("-X main.version=1.2.3"));
        assert!(parse_modinfo("bogus\tline\n").is_err());
        assert!(parse_modinfo("=>\tx\tv1\n").is_err());
    }

    #[test]
    fn header_search_is_aligned() {
        let mut area = vec![0u8; 48];
        area[3..3 + MAGIC.len()].copy_from_slice(MAGIC); // unaligned copy: ignored
        area.extend_from_slice(&encode_inline("go1.22.1", "path\tx\n"));
        let h = find_header(&area).unwrap();
        assert_eq!(&h[..MAGIC.len()], MAGIC);
        assert_eq!(varint_string(&h[HEADER_LEN..]).unwrap().0, b"go1.22.1");
    }
}

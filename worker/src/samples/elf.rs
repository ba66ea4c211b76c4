//! ELF files written with the `object` crate: a Go binary with build info in `.go.buildinfo` and a Rust
//! binary with cargo-auditable data in `.dep-v0`, padded with code-like bytes to a realistic size.

use std::io::Write;

use object::write::Object;
use object::{Architecture, BinaryFormat, Endianness, SectionKind};

use crate::catalog::encode_go_buildinfo;

/// An x86-64 ELF with a `.text` of `text_len` code-like bytes and the given extra sections.
fn elf_with_sections(text_len: usize, sections: &[(&str, SectionKind, Vec<u8>)]) -> Vec<u8> {
    let mut obj = Object::new(BinaryFormat::Elf, Architecture::X86_64, Endianness::Little);
    let text = obj.add_section(vec![], b".text".to_vec(), SectionKind::Text);
    obj.append_section_data(text, &super::large::code_like_bytes(text_len, 0x5eed), 16);
    for (name, kind, data) in sections {
        let id = obj.add_section(vec![], name.as_bytes().to_vec(), *kind);
        obj.append_section_data(id, data, 16);
    }
    // Writing to memory only fails on internal inconsistencies of the object description, not on input.
    obj.write().unwrap_or_default()
}

/// A Go binary's ELF with Go 1.18+ inline build info (`modinfo` is the tab-separated module text).
pub fn go_binary(go_version: &str, modinfo: &str, text_len: usize) -> Vec<u8> {
    let info = encode_go_buildinfo(go_version, modinfo);
    elf_with_sections(text_len, &[(".go.buildinfo", SectionKind::Data, info)])
}

/// A Rust binary's ELF with a cargo-auditable `.dep-v0` section (zlib-compressed JSON).
pub fn rust_binary(dep_json: &str, text_len: usize) -> Vec<u8> {
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    let _ = z.write_all(dep_json.as_bytes());
    let compressed = z.finish().unwrap_or_default();
    elf_with_sections(
        text_len,
        &[(".dep-v0", SectionKind::ReadOnlyData, compressed)],
    )
}

/// The modinfo text of a module-mode Go build (`go version -m` shows the same lines).
pub fn go_modinfo(
    main: &str,
    main_version: &str,
    deps: &[(&str, &str)],
    settings: &[(&str, &str)],
) -> String {
    let mut s = format!("path\t{main}\nmod\t{main}\t{main_version}\t\n");
    for (p, v) in deps {
        s.push_str(&format!("dep\t{p}\t{v}\th1:{}=\n", fake_sum(p, v)));
    }
    for (k, v) in settings {
        s.push_str(&format!("build\t{k}={v}\n"));
    }
    s
}

/// A base64-looking stand-in for a go.sum hash.
fn fake_sum(p: &str, v: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    (0..43)
        .map(|i| {
            for b in p.bytes().chain(v.bytes()).chain([i as u8]) {
                h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
            }
            ALPHABET[(h >> 58) as usize] as char
        })
        .collect()
}

//! What the binary catalogers (Go build info, cargo-auditable) share: which files they look at and how an
//! ELF file is opened.

use object::read::elf::{ElfFile32, ElfFile64};
use object::{Object, ObjectSegment, SegmentFlags};

use super::{EntryMeta, Want};

/// Binaries are buffered whole. Most Go and Rust binaries are 5–60 MiB; the cap keeps one binary from
/// dominating the scan's memory (larger ones are skipped with a warning by the pipeline).
pub(crate) const MAX_BINARY: u64 = 64 * 1024 * 1024;

/// Smaller than any real Go or Rust executable (an empty `main` is >1 MiB), so scripts are skipped cheaply.
const MIN_BINARY: u64 = 4 * 1024;

/// Executable regular files of a plausible size: the same answer for both binary catalogers, so the pipeline
/// buffers each binary once.
pub(crate) fn wants_binary(entry: &EntryMeta<'_>) -> Want {
    if entry.mode & 0o111 != 0 && entry.size >= MIN_BINARY {
        Want::UpTo {
            max_bytes: MAX_BINARY,
        }
    } else {
        Want::No
    }
}

/// An opened ELF file of either class.
pub(crate) enum Elf<'a> {
    /// 32-bit.
    E32(ElfFile32<'a>),
    /// 64-bit.
    E64(ElfFile64<'a>),
}

/// Opens `bytes` as ELF: `None` when it is not ELF at all (scripts, data), `Some(Err)` when it claims to be
/// ELF but its headers do not hold together (truncated or corrupt).
pub(crate) fn open_elf(bytes: &[u8]) -> Option<Result<Elf<'_>, String>> {
    if !bytes.starts_with(b"\x7fELF") {
        return None;
    }
    let class = bytes.get(4).copied();
    let parsed = match class {
        Some(1) => ElfFile32::parse(bytes).map(Elf::E32),
        Some(2) => ElfFile64::parse(bytes).map(Elf::E64),
        _ => return Some(Err("ELF file with an unknown class byte".into())),
    };
    Some(parsed.map_err(|e| format!("corrupt ELF file: {e}")))
}

impl<'a> Elf<'a> {
    /// The contents of a named section, if present and inside the file.
    pub(crate) fn section(&self, name: &str) -> Result<Option<&'a [u8]>, String> {
        use object::ObjectSection;
        let data = match self {
            Elf::E32(f) => f.section_by_name(name).map(|s| s.data()),
            Elf::E64(f) => f.section_by_name(name).map(|s| s.data()),
        };
        data.transpose().map_err(|e| format!("section {name}: {e}"))
    }

    /// `len` bytes at virtual address `addr`, from whichever segment maps them.
    pub(crate) fn read_at(&self, addr: u64, len: u64) -> Option<&'a [u8]> {
        fn find<'d, S: ObjectSegment<'d>>(
            mut segs: impl Iterator<Item = S>,
            addr: u64,
            len: u64,
        ) -> Option<&'d [u8]> {
            segs.find_map(|s| s.data_range(addr, len).ok().flatten())
        }
        match self {
            Elf::E32(f) => find(f.segments(), addr, len),
            Elf::E64(f) => find(f.segments(), addr, len),
        }
    }

    /// Address and file data of the first writable, non-executable loadable segment: where Go's linker puts
    /// build info when the section headers are stripped.
    pub(crate) fn first_data_segment(&self) -> Option<&'a [u8]> {
        fn find<'d, S: ObjectSegment<'d>>(mut segs: impl Iterator<Item = S>) -> Option<&'d [u8]> {
            segs.find_map(|s| match s.flags() {
                SegmentFlags::Elf { p_type, p_flags } if p_type == object::elf::PT_LOAD => {
                    let (w, x) = (object::elf::PF_W.0, object::elf::PF_X.0);
                    (p_flags.0 & (w | x) == w).then(|| s.data().ok()).flatten()
                }
                _ => None,
            })
        }
        match self {
            Elf::E32(f) => find(f.segments()),
            Elf::E64(f) => find(f.segments()),
        }
    }

    /// Whether the file is big-endian.
    pub(crate) fn is_big_endian(&self) -> bool {
        match self {
            Elf::E32(f) => !f.is_little_endian(),
            Elf::E64(f) => !f.is_little_endian(),
        }
    }
}

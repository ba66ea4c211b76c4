//! The rpm header blob as stored in rpmdb (one per `Packages` row): big-endian index count and data
//! length, `il` 16-byte index entries (tag, type, offset, count), then the data store.

#[cfg(any(test, feature = "fixtures"))]
/// `RPMTAG_HEADERIMMUTABLE`: the region tag rpm writes first; its data is a 16-byte trailer entry.
pub const TAG_HEADER_IMMUTABLE: u32 = 63;
/// Package name.
pub const TAG_NAME: u32 = 1000;
/// Upstream version.
pub const TAG_VERSION: u32 = 1001;
/// Package release.
pub const TAG_RELEASE: u32 = 1002;
/// Epoch (INT32), absent for most packages.
pub const TAG_EPOCH: u32 = 1003;
#[cfg(any(test, feature = "fixtures"))]
/// One-line summary.
pub const TAG_SUMMARY: u32 = 1004;
#[cfg(any(test, feature = "fixtures"))]
/// Installed size (INT32).
pub const TAG_SIZE: u32 = 1009;
#[cfg(any(test, feature = "fixtures"))]
/// Vendor.
pub const TAG_VENDOR: u32 = 1011;
/// License expression.
pub const TAG_LICENSE: u32 = 1014;
/// Architecture.
pub const TAG_ARCH: u32 = 1022;
/// Source rpm file name.
pub const TAG_SOURCERPM: u32 = 1044;

/// Entry data types.
pub(crate) const TYPE_INT32: u32 = 4;
/// NUL-terminated string.
pub(crate) const TYPE_STRING: u32 = 6;
/// Opaque bytes.
pub(crate) const TYPE_BIN: u32 = 7;
/// `count` NUL-terminated strings.
pub(crate) const TYPE_STRING_ARRAY: u32 = 8;
/// Translated strings (the first is the C locale).
pub(crate) const TYPE_I18NSTRING: u32 = 9;

/// rpm itself refuses headers larger than this (`HEADER_DATA_MAX`).
const MAX_DATA: usize = 256 * 1024 * 1024;
/// ... and with more index entries than this (`HEADER_TAGS_MAX`).
const MAX_ENTRIES: usize = 0xffff;

/// One index entry.
#[derive(Debug, Clone, Copy)]
struct Entry {
    tag: u32,
    ty: u32,
    offset: usize,
    count: usize,
}

/// A validated header: every entry's data lies inside the data store.
#[derive(Debug)]
pub(crate) struct Header<'a> {
    entries: Vec<Entry>,
    data: &'a [u8],
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

/// Size of one element of a fixed-size type; `None` for strings and unknown types.
fn fixed_size(ty: u32) -> Option<usize> {
    match ty {
        0 => Some(0),
        1 | 2 | TYPE_BIN => Some(1),
        3 => Some(2),
        TYPE_INT32 => Some(4),
        5 => Some(8),
        _ => None,
    }
}

impl<'a> Header<'a> {
    /// Parses and bounds-checks a blob.
    pub(crate) fn parse(blob: &'a [u8]) -> Result<Self, String> {
        let il = be32(blob, 0).ok_or("header shorter than 8 bytes")? as usize;
        let dl = be32(blob, 4).ok_or("header shorter than 8 bytes")? as usize;
        if il == 0 || il > MAX_ENTRIES {
            return Err(format!("index count {il} out of range"));
        }
        if dl > MAX_DATA {
            return Err(format!("data length {dl} out of range"));
        }
        let data_start = 8 + il * 16;
        let end = data_start + dl;
        if blob.len() < end {
            return Err(format!("header needs {end} bytes, blob has {}", blob.len()));
        }
        let data = &blob[data_start..end];
        let mut entries = Vec::with_capacity(il);
        for i in 0..il {
            let at = 8 + i * 16;
            let (Some(tag), Some(ty), Some(offset), Some(count)) = (
                be32(blob, at),
                be32(blob, at + 4),
                be32(blob, at + 8),
                be32(blob, at + 12),
            ) else {
                return Err(format!("index entry {i} truncated"));
            };
            let (offset, count) = (offset as usize, count as usize);
            if ty > TYPE_I18NSTRING {
                return Err(format!("tag {tag}: unknown type {ty}"));
            }
            let ok = match fixed_size(ty) {
                Some(size) => count
                    .checked_mul(size)
                    .and_then(|n| n.checked_add(offset))
                    .is_some_and(|e| e <= dl),
                None => offset < dl && count >= 1,
            };
            if !ok {
                return Err(format!(
                    "tag {tag}: data (offset {offset}, count {count}) outside the {dl}-byte store"
                ));
            }
            entries.push(Entry {
                tag,
                ty,
                offset,
                count,
            });
        }
        Ok(Header { entries, data })
    }

    fn entry(&self, tag: u32) -> Option<&Entry> {
        self.entries.iter().find(|e| e.tag == tag)
    }

    /// A string tag (the first element of arrays and translated strings). A present tag whose string is not
    /// NUL-terminated or not UTF-8 is an error.
    pub(crate) fn string(&self, tag: u32) -> Result<Option<&'a str>, String> {
        let Some(e) = self.entry(tag) else {
            return Ok(None);
        };
        if !matches!(e.ty, TYPE_STRING | TYPE_STRING_ARRAY | TYPE_I18NSTRING) {
            return Err(format!("tag {tag}: type {} is not a string", e.ty));
        }
        let rest = &self.data[e.offset..];
        let len = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or_else(|| format!("tag {tag}: string not terminated"))?;
        std::str::from_utf8(&rest[..len])
            .map(Some)
            .map_err(|_| format!("tag {tag}: string not UTF-8"))
    }

    /// The first element of an INT32 tag.
    pub(crate) fn int32(&self, tag: u32) -> Result<Option<u32>, String> {
        let Some(e) = self.entry(tag) else {
            return Ok(None);
        };
        if e.ty != TYPE_INT32 || e.count == 0 {
            return Err(format!("tag {tag}: type {} is not INT32", e.ty));
        }
        Ok(be32(self.data, e.offset))
    }
}

/// Builds header blobs in the format [`Header::parse`] reads (and rpm writes): an immutable region tag first,
/// entries sorted by tag, data aligned per type. Used by the sample images and tests.
#[cfg(any(test, feature = "fixtures"))]
#[derive(Debug, Default)]
pub struct HeaderBuilder {
    entries: Vec<(u32, u32, Vec<u8>, u32, usize)>,
}

#[cfg(any(test, feature = "fixtures"))]
impl HeaderBuilder {
    /// Adds a NUL-terminated string tag.
    pub fn string(mut self, tag: u32, value: &str) -> Self {
        let mut v = value.as_bytes().to_vec();
        v.push(0);
        self.entries.push((tag, TYPE_STRING, v, 1, 1));
        self
    }

    /// Adds a string-array tag.
    pub fn strings(mut self, tag: u32, values: &[&str]) -> Self {
        let mut v = Vec::new();
        for s in values {
            v.extend_from_slice(s.as_bytes());
            v.push(0);
        }
        self.entries
            .push((tag, TYPE_STRING_ARRAY, v, values.len() as u32, 1));
        self
    }

    /// Adds an INT32 tag.
    pub fn int32(mut self, tag: u32, value: u32) -> Self {
        self.entries
            .push((tag, TYPE_INT32, value.to_be_bytes().to_vec(), 1, 4));
        self
    }

    /// Serializes the header blob.
    pub fn build(mut self) -> Vec<u8> {
        self.entries.sort_by_key(|e| e.0);
        let il = self.entries.len() + 1;
        let mut data = Vec::new();
        let mut index = Vec::with_capacity(il * 16);
        for (tag, ty, bytes, count, align) in &self.entries {
            while data.len() % align != 0 {
                data.push(0);
            }
            for w in [*tag, *ty, data.len() as u32, *count] {
                index.extend_from_slice(&w.to_be_bytes());
            }
            data.extend_from_slice(bytes);
        }
        // The region trailer: an entry for the region tag whose offset is minus the region's index size.
        let trailer_at = data.len() as u32;
        let neg = (-((il * 16) as i64)) as i32 as u32;
        for w in [TAG_HEADER_IMMUTABLE, TYPE_BIN, neg, 16] {
            data.extend_from_slice(&w.to_be_bytes());
        }
        let mut blob = Vec::with_capacity(8 + il * 16 + data.len());
        blob.extend_from_slice(&(il as u32).to_be_bytes());
        blob.extend_from_slice(&(data.len() as u32).to_be_bytes());
        for w in [TAG_HEADER_IMMUTABLE, TYPE_BIN, trailer_at, 16] {
            blob.extend_from_slice(&w.to_be_bytes());
        }
        blob.extend_from_slice(&index);
        blob.extend_from_slice(&data);
        blob
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let blob = HeaderBuilder::default()
            .string(TAG_NAME, "bash")
            .int32(TAG_EPOCH, 2)
            .strings(TAG_VERSION, &["5.1.8"])
            .build();
        let h = Header::parse(&blob).unwrap();
        assert_eq!(h.string(TAG_NAME).unwrap(), Some("bash"));
        assert_eq!(h.string(TAG_VERSION).unwrap(), Some("5.1.8"));
        assert_eq!(h.int32(TAG_EPOCH).unwrap(), Some(2));
        assert_eq!(h.string(TAG_LICENSE).unwrap(), None);
        assert!(h.int32(TAG_NAME).is_err());
    }

    #[test]
    fn bogus_headers_are_rejected() {
        let blob = HeaderBuilder::default().string(TAG_NAME, "bash").build();
        assert!(Header::parse(&blob[..blob.len() - 1]).is_err());
        assert!(Header::parse(&[0, 0, 0, 1]).is_err());
        assert!(Header::parse(&[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]).is_err());
        let mut bad_offset = blob.clone();
        bad_offset[8 + 16 + 8..8 + 16 + 12].copy_from_slice(&0x7fff_0000u32.to_be_bytes());
        assert!(Header::parse(&bad_offset).is_err());
        // One entry, a 4-byte store holding "bash" with no NUL.
        let mut unterminated = vec![0, 0, 0, 1, 0, 0, 0, 4];
        for w in [TAG_NAME, TYPE_STRING, 0, 1] {
            unterminated.extend_from_slice(&w.to_be_bytes());
        }
        unterminated.extend_from_slice(b"bash");
        assert!(Header::parse(&unterminated)
            .unwrap()
            .string(TAG_NAME)
            .is_err());
    }
}

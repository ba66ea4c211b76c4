//! Reads an OSV `all.zip` entry by entry: each entry is bounded in inflated size, parsed on its own, and
//! a malformed one is counted and named (record id or file) instead of aborting the read.

use std::io::Read;
use std::path::Path;

use crate::core::osv::{self, Record};
use crate::error::{Error, Result};

/// How many malformed entries are named individually (the rest are only counted).
const NAMED_MALFORMED: usize = 50;

/// What a read saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadStats {
    /// Records parsed and handed on.
    pub records: u64,
    /// Entries skipped: malformed, or larger than the entry bound.
    pub malformed: u64,
    /// The first skipped entries: `file: record id: path: message`.
    pub malformed_examples: Vec<String>,
}

/// Calls `each` for every record of the zip at `path`. A file that is not a zip (or is truncated) is an
/// error naming `ecosystem`; `each` returning `false` stops the read early (the receiver went away).
pub fn read_zip(
    path: &Path,
    ecosystem: &str,
    max_entry_bytes: u64,
    mut each: impl FnMut(Record) -> bool,
) -> Result<ReadStats> {
    let file = std::fs::File::open(path).map_err(|e| Error::feed(ecosystem, e))?;
    let mut zip = zip::ZipArchive::new(std::io::BufReader::new(file))
        .map_err(|e| Error::feed(ecosystem, format!("all.zip is not a readable zip: {e}")))?;
    let mut stats = ReadStats::default();
    let mut buf = Vec::new();
    let skip = |stats: &mut ReadStats, message: String| {
        stats.malformed += 1;
        if stats.malformed_examples.len() < NAMED_MALFORMED {
            tracing::warn!(ecosystem, "skipping OSV entry: {message}");
            stats.malformed_examples.push(message);
        }
    };
    for i in 0..zip.len() {
        let entry = zip
            .by_index(i)
            .map_err(|e| Error::feed(ecosystem, format!("all.zip entry {i}: {e}")))?;
        if entry.is_dir() {
            continue;
        }
        let name = entry
            .name()
            .map_or_else(|_| format!("entry {i}"), |n| n.to_string());
        if entry.size() > max_entry_bytes {
            skip(
                &mut stats,
                format!("{name}: larger than {max_entry_bytes} bytes"),
            );
            continue;
        }
        buf.clear();
        // The declared size can lie (a zip bomb): the read itself is bounded too.
        let read = entry.take(max_entry_bytes + 1).read_to_end(&mut buf);
        match read {
            Err(e) => return Err(Error::feed(ecosystem, format!("all.zip {name}: {e}"))),
            Ok(n) if n as u64 > max_entry_bytes => {
                skip(
                    &mut stats,
                    format!("{name}: larger than {max_entry_bytes} bytes"),
                );
                continue;
            }
            Ok(_) => {}
        }
        match osv::parse(&buf) {
            Ok(record) => {
                stats.records += 1;
                if !each(record) {
                    break;
                }
            }
            Err(e) => skip(&mut stats, format!("{name}: {e}")),
        }
    }
    Ok(stats)
}

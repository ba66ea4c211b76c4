//! The speed floor of a scan: inflate each layer and walk its tar, reading every byte, nothing else.

use std::io::{self, Read};

use fathom_analyzer::layer::Compression;

/// Inflates `blob` (gzip, zstd or plain, by magic bytes) and walks its tar entries, reading all data;
/// returns the number of entries.
pub fn inflate_and_walk(blob: &[u8]) -> io::Result<u64> {
    let reader: Box<dyn Read + '_> = match Compression::sniff(blob) {
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(
            io::BufReader::with_capacity(256 * 1024, blob),
        )),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(blob)?),
        Compression::None => Box::new(blob),
    };
    let mut archive = tar::Archive::new(reader);
    let mut entries = 0;
    for entry in archive.entries()? {
        let mut entry = entry?;
        io::copy(&mut entry, &mut io::sink())?;
        entries += 1;
    }
    Ok(entries)
}

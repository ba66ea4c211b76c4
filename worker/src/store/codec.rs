//! How stored documents are encoded: JSON compressed with zstd, decoded with bounded memory.

use super::{document_error, Result};

/// zstd level for stored documents: level 3 compresses JSON ~8–10× at hundreds of MB/s.
pub(crate) const ZSTD_LEVEL: i32 = 3;

/// `value` as JSON compressed with zstd (the frame states its size, so it decodes in one call).
pub(crate) fn compress<T: serde::Serialize>(what: &str, value: &T) -> Result<Vec<u8>> {
    let json = serde_json::to_vec(value).map_err(|e| document_error(what, e))?;
    zstd::bulk::compress(&json, ZSTD_LEVEL).map_err(|e| document_error(what, e))
}

/// Largest decompressed document accepted: a corrupt or hostile row must not exhaust memory.
const MAX_DOCUMENT_BYTES: u64 = 1 << 30;

/// Bodies whose frame states a size up to this are decompressed in one call into a buffer of that size
/// and parsed from the slice; larger ones (a layer with a huge file inventory) stream, so memory holds
/// the parsed value and not its JSON too.
const ONE_SHOT_BYTES: u64 = 8 << 20;

thread_local! {
    /// One decompression context per thread: creating one per body (the streaming decoder does) costs
    /// more than decompressing a small document's part.
    static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

/// The decompressed size a body's (first) frame states, if it states one.
pub(crate) fn stated_size(bytes: &[u8]) -> Option<u64> {
    zstd::zstd_safe::get_frame_content_size(bytes).ok()?
}

/// The body decompressed in one call when its frame states a size of at most [`ONE_SHOT_BYTES`];
/// `None` when it does not (no size, a larger one, several frames): the caller streams it instead.
fn decompress_one_shot(bytes: &[u8]) -> Option<Vec<u8>> {
    let size = stated_size(bytes)?;
    if size > ONE_SHOT_BYTES {
        return None;
    }
    let capacity = usize::try_from(size).ok()?;
    DECOMPRESSOR.with(|cell| {
        let mut slot = cell.try_borrow_mut().ok()?;
        if slot.is_none() {
            *slot = zstd::bulk::Decompressor::new().ok();
        }
        let out = slot.as_mut()?.decompress(bytes, capacity).ok()?;
        // A frame whose stated size is not what it holds is not trusted; streaming reports it.
        (out.len() == capacity).then_some(out)
    })
}

/// A zstd body decompressed whole (at most [`MAX_DOCUMENT_BYTES`]).
pub(crate) fn decompress_bytes(what: &str, bytes: &[u8]) -> Result<Vec<u8>> {
    if let Some(out) = decompress_one_shot(bytes) {
        return Ok(out);
    }
    let decoder = zstd::stream::read::Decoder::new(bytes).map_err(|e| document_error(what, e))?;
    let mut out = vec![];
    std::io::Read::read_to_end(
        &mut std::io::Read::take(decoder, MAX_DOCUMENT_BYTES),
        &mut out,
    )
    .map_err(|e| document_error(what, e))?;
    Ok(out)
}

/// A zstd JSON body parsed: small bodies from the slice (several times faster than from a reader),
/// large ones streamed.
pub(crate) fn decompress<T: serde::de::DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T> {
    if let Some(json) = decompress_one_shot(bytes) {
        return serde_json::from_slice(&json).map_err(|e| document_error(what, e));
    }
    let decoder = zstd::stream::read::Decoder::new(bytes).map_err(|e| document_error(what, e))?;
    let limited = std::io::Read::take(decoder, MAX_DOCUMENT_BYTES);
    serde_json::from_reader(std::io::BufReader::new(limited)).map_err(|e| document_error(what, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn streamed(json: &[u8]) -> Vec<u8> {
        // The streaming encoder writes no content size: the one-shot path must step aside.
        let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
        enc.write_all(json).unwrap();
        enc.finish().unwrap()
    }

    #[test]
    fn one_shot_and_streamed_bodies_decode_alike() {
        let value = serde_json::json!({"packages": (0..500).map(|i| format!("pkg-{i}")).collect::<Vec<_>>()});
        let json = serde_json::to_vec(&value).unwrap();
        let sized = compress("doc", &value).unwrap();
        assert_eq!(decompress_one_shot(&sized).as_deref(), Some(&json[..]));
        let unsized_body = streamed(&json);
        assert_eq!(decompress_one_shot(&unsized_body), None);
        for body in [&sized, &unsized_body] {
            assert_eq!(decompress_bytes("doc", body).unwrap(), json);
            let back: serde_json::Value = decompress("doc", body).unwrap();
            assert_eq!(back, value);
        }
    }

    #[test]
    fn a_body_stating_more_than_the_one_shot_limit_streams() {
        let big = vec![b' '; (ONE_SHOT_BYTES + 1) as usize];
        let body = zstd::bulk::compress(&big, 3).unwrap();
        assert_eq!(stated_size(&body), Some(ONE_SHOT_BYTES + 1));
        assert_eq!(decompress_one_shot(&body), None);
        assert_eq!(decompress_bytes("doc", &body).unwrap().len(), big.len());
    }

    #[test]
    fn a_body_of_two_frames_decodes_whole() {
        let mut body = zstd::bulk::compress(b"[1,2,", 3).unwrap();
        body.extend(zstd::bulk::compress(b"3]", 3).unwrap());
        // The first frame states 5 bytes; the second would not fit: streamed instead.
        assert_eq!(decompress_one_shot(&body), None);
        let back: Vec<u32> = decompress("doc", &body).unwrap();
        assert_eq!(back, vec![1, 2, 3]);
    }

    #[test]
    fn a_corrupt_body_is_an_error_naming_it() {
        let mut body = compress("doc", &vec!["x"; 100]).unwrap();
        let n = body.len();
        body[n / 2] ^= 0xff;
        body.truncate(n - 3);
        let err = decompress::<Vec<String>>("image sha256:abc", &body).unwrap_err();
        assert!(err.to_string().contains("image sha256:abc"), "{err}");
        assert!(decompress_bytes("image sha256:abc", b"not zstd").is_err());
    }
}

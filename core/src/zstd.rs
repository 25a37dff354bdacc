//! zstd frames (zstd:chunked payloads and TOC) through ruzstd.

use alloc::vec::Vec;
use ruzstd::decoding::StreamingDecoder;
use ruzstd::io::Read;

use crate::error::{Error, Result};

/// Largest window a frame may ask for. zstd:chunked writers use levels whose windows are a few MiB.
const MAX_WINDOW: u64 = 64 << 20;

/// Decodes the first `len` bytes of the frame at the start of `frame` into `out`, replacing its
/// contents. Never produces more than that; a frame that holds fewer bytes is an error. `out`
/// grows only as decoded bytes arrive, so a `len` the frame cannot back is never allocated.
pub fn decode_prefix(frame: &[u8], len: usize, out: &mut Vec<u8>) -> Result<()> {
    let mut src = frame;
    let mut decoder = StreamingDecoder::new_with_max_window_size(&mut src, MAX_WINDOW)
        .map_err(|_| Error::Corrupt("invalid zstd frame header"))?;
    out.clear();
    read_growing(&mut decoder, len, out)
}

/// Reads exactly `len` bytes from `decoder` into `out`, growing it step by step.
fn read_growing<R: Read>(decoder: &mut R, len: usize, out: &mut Vec<u8>) -> Result<()> {
    let mut step = 64usize << 10;
    while out.len() < len {
        let start = out.len();
        out.resize(start + (len - start).min(step), 0);
        let fresh = out.get_mut(start..).unwrap_or_default();
        decoder.read_exact(fresh).map_err(|_| Error::Corrupt("zstd frame is corrupt or ends early"))?;
        step = step.saturating_mul(2);
    }
    Ok(())
}

/// Decodes one whole frame that must hold exactly `len` bytes.
pub fn decode_exact(frame: &[u8], len: usize) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut src = frame;
    let mut decoder = StreamingDecoder::new_with_max_window_size(&mut src, MAX_WINDOW)
        .map_err(|_| Error::Corrupt("invalid zstd frame header"))?;
    read_growing(&mut decoder, len, &mut out)?;
    let mut extra = [0u8; 1];
    match decoder.read(&mut extra) {
        Ok(0) => Ok(out),
        Ok(_) => Err(Error::Corrupt("zstd frame holds more than its declared length")),
        Err(_) => Err(Error::Corrupt("zstd frame is corrupt")),
    }
}

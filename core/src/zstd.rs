//! zstd frames (zstd:chunked payloads and TOC) through ruzstd.

use ruzstd::decoding::StreamingDecoder;
use ruzstd::io::Read;

use crate::error::{Error, Result};

/// Largest window a frame may ask for. zstd:chunked writers use levels whose windows are a few MiB.
const MAX_WINDOW: u64 = 64 << 20;

/// Decodes the first `out.len()` bytes of the frame at the start of `frame` into `out`.
/// Never produces more than that; a frame that holds fewer bytes is an error.
pub fn decode_prefix(frame: &[u8], out: &mut [u8]) -> Result<()> {
    let mut src = frame;
    let mut decoder = StreamingDecoder::new_with_max_window_size(&mut src, MAX_WINDOW)
        .map_err(|_| Error::Corrupt("invalid zstd frame header"))?;
    decoder.read_exact(out).map_err(|_| Error::Corrupt("zstd frame is corrupt or ends early"))
}

/// Decodes one whole frame that must hold exactly `len` bytes.
pub fn decode_exact(frame: &[u8], len: usize) -> Result<alloc::vec::Vec<u8>> {
    let mut out = alloc::vec![0u8; len];
    let mut src = frame;
    let mut decoder = StreamingDecoder::new_with_max_window_size(&mut src, MAX_WINDOW)
        .map_err(|_| Error::Corrupt("invalid zstd frame header"))?;
    decoder.read_exact(&mut out).map_err(|_| Error::Corrupt("zstd frame is corrupt or ends early"))?;
    let mut extra = [0u8; 1];
    match decoder.read(&mut extra) {
        Ok(0) => Ok(out),
        Ok(_) => Err(Error::Corrupt("zstd frame holds more than its declared length")),
        Err(_) => Err(Error::Corrupt("zstd frame is corrupt")),
    }
}

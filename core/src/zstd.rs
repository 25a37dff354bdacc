//! zstd frames (zstd:chunked payloads and TOC) through ruzstd.

use alloc::vec::Vec;
use ruzstd::decoding::{FrameDecoder, StreamingDecoder};
use ruzstd::io::Read;

use crate::error::{Error, Result};

/// Largest window a frame may ask for. zstd:chunked writers use levels whose windows are a few MiB.
const MAX_WINDOW: u64 = 64 << 20;

/// zstd's largest expansion: a 3-byte block header and one byte of an RLE block make a whole
/// 128 KiB block, 32768 to 1.
const MAX_ZSTD_RATIO: usize = 32 << 10;

/// Expansion of a frame's output allocated up front: more than real data reaches.
const TYPICAL_ZSTD_RATIO: usize = 16;

/// A decoder for [`decode_prefix_with`], limited to windows of 64 MiB; keep it to decode frame
/// after frame without allocating its tables and window each time.
pub fn new_decoder() -> FrameDecoder {
    let mut decoder = FrameDecoder::new();
    decoder.set_max_window_size(MAX_WINDOW);
    decoder
}

/// Decodes the first `len` bytes of the frame at the start of `frame` into `out`, replacing its
/// contents. Never produces more than that; a frame that holds fewer bytes is an error. `out`
/// is allocated once for up to 16 times the frame's bytes (or 1 MiB) and grows beyond that
/// only as decoded bytes arrive, so a `len` the frame cannot back is never allocated.
/// (The fuzz entry's; the reader keeps its decoder and calls [`decode_prefix_with`].)
#[cfg(feature = "fuzzing")]
pub fn decode_prefix(frame: &[u8], len: usize, out: &mut Vec<u8>) -> Result<()> {
    decode_prefix_with(frame, len, out, &mut new_decoder())
}

/// `decode_prefix` with a caller's decoder (from [`new_decoder`]), reset here for the frame:
/// its buffers, sized by earlier frames, are reused.
pub fn decode_prefix_with(frame: &[u8], len: usize, out: &mut Vec<u8>, decoder: &mut FrameDecoder) -> Result<()> {
    let mut decoder = start(frame, len, decoder)?;
    out.clear();
    if len == 0 {
        return Ok(());
    }
    // One allocation for what real data compresses to (16:1, or 1 MiB); a frame that claims
    // more (zstd's ceiling is far above what honest data reaches) grows `out` as it proves it.
    let mut size = len.min(frame.len().saturating_mul(TYPICAL_ZSTD_RATIO).max(1 << 20));
    crate::gzip::output_buffer(out, size);
    let mut have = 0;
    loop {
        let fresh = out.get_mut(have..).unwrap_or_default();
        decoder.read_exact(fresh).map_err(|_| Error::Corrupt("zstd frame is corrupt or ends early"))?;
        if size == len {
            return Ok(());
        }
        have = size;
        size = size.saturating_mul(2).min(len);
        out.resize(size, 0);
    }
}

/// Decodes the first `out.len()` bytes of the frame at the start of `frame` into `out`, which
/// the caller sized and allocated (see [`Layer::read_chunk_into`]), with a caller's decoder.
///
/// [`Layer::read_chunk_into`]: crate::Layer::read_chunk_into
pub fn decode_into(frame: &[u8], out: &mut [u8], decoder: &mut FrameDecoder) -> Result<()> {
    let mut decoder = start(frame, out.len(), decoder)?;
    if out.is_empty() {
        return Ok(());
    }
    decoder.read_exact(out).map_err(|_| Error::Corrupt("zstd frame is corrupt or ends early"))
}

/// Whether the zstd frame `frame` could hold `len` decoded bytes.
pub(crate) fn may_expand_to(frame: &[u8], len: usize) -> bool {
    frame.len().saturating_mul(MAX_ZSTD_RATIO) >= len
}

/// A streaming decoder over `frame`'s header, refusing a `len` no frame of this size can hold.
fn start<'a>(
    frame: &'a [u8],
    len: usize,
    decoder: &'a mut FrameDecoder,
) -> Result<StreamingDecoder<&'a [u8], &'a mut FrameDecoder>> {
    let decoder =
        StreamingDecoder::new_with_decoder(frame, decoder).map_err(|_| Error::Corrupt("invalid zstd frame header"))?;
    if !may_expand_to(frame, len) {
        return Err(Error::Corrupt("zstd frame holds fewer bytes than the TOC says"));
    }
    Ok(decoder)
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

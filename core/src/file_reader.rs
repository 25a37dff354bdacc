//! Reading one file in pieces, each chunk inflated once.
//!
//! [`Layer::read_at`](crate::Layer::read_at) is stateless: a read that starts inside a chunk
//! inflates the chunk from its start. A [`FileReader`] keeps the last chunk it decoded, so a
//! file read front to back in small pieces (128 KiB, or a page at a time) inflates every chunk
//! exactly once. Memory: one chunk.

use alloc::vec::Vec;

use crate::error::{Error, Result};
use crate::index::{Kind, NodeId};
use crate::layer::Layer;
use crate::read_at::ReadAt;

/// A cursor-free reader of one regular file that remembers the last chunk it decoded.
#[derive(Debug)]
pub struct FileReader<'a, R> {
    layer: &'a Layer<R>,
    file: NodeId,
    size: u64,
    verify: bool,
    /// Index of the chunk held in `data`, if any.
    held: Option<usize>,
    data: Vec<u8>,
}

impl<'a, R: ReadAt> FileReader<'a, R> {
    /// A reader of regular file `file` (hardlinks resolved); with `verify`, every chunk is
    /// checked against its digest when decoded.
    pub fn new(layer: &'a Layer<R>, file: NodeId, verify: bool) -> Result<Self> {
        let file = layer.index().resolve(file);
        let size = match layer.index().node(file) {
            Some(n) if n.kind() == Kind::Reg => n.size(),
            _ => return Err(Error::WrongType),
        };
        Ok(FileReader { layer, file, size, verify, held: None, data: Vec::new() })
    }

    /// The file's size.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Reads bytes at `offset` into `buf`; short only at the end of the file.
    pub fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<usize> {
        if offset >= self.size || buf.is_empty() {
            return Ok(0);
        }
        let end = self.size.min(offset.saturating_add(buf.len() as u64));
        let len = (end - offset) as usize;
        let mut done = 0;
        for piece in self.layer.index().read_pieces(self.file, offset, end) {
            if self.held != Some(piece.chunk) {
                self.held = None;
                self.layer.read_chunk(self.file, piece.chunk, self.verify, &mut self.data)?;
                self.held = Some(piece.chunk);
            }
            let n = piece.within.len();
            let src = self.data.get(piece.within).ok_or(Error::Corrupt("chunk shorter than its size"))?;
            // In range: the pieces lie within the read, whose length is at most buf.len().
            let dst = buf.get_mut(piece.at..piece.at + n).ok_or(Error::Corrupt("chunk longer than the read"))?;
            dst.copy_from_slice(src);
            done = piece.at + n;
        }
        if done != len {
            return Err(Error::Corrupt("no chunk covers the offset"));
        }
        Ok(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::read_at::ReadAt;
    use core::sync::atomic::{AtomicUsize, Ordering};

    struct Counting<'a>(&'a [u8], AtomicUsize);

    impl ReadAt for Counting<'_> {
        fn size(&self) -> u64 {
            self.0.len() as u64
        }
        fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize> {
            self.1.fetch_add(1, Ordering::SeqCst);
            self.0.read_at(offset, buf)
        }
    }

    #[test]
    fn small_pieces_inflate_each_chunk_once() {
        // The demo sample: a 200 KiB file in 64 KiB chunks.
        let bytes = include_bytes!("../../testdata/sample.esgz");
        let layer = Layer::open(Counting(bytes, AtomicUsize::new(0))).unwrap();
        let index = layer.index();
        let file = (0..index.len() as NodeId).max_by_key(|&id| index.chunks(id).len()).unwrap();
        let chunks = index.chunks(file).len();
        assert!(chunks >= 3);
        let before = layer.blob().1.load(Ordering::SeqCst);
        let mut reader = FileReader::new(&layer, file, true).unwrap();
        let mut whole = Vec::new();
        let mut piece = [0u8; 4096];
        let mut offset = 0;
        loop {
            let n = reader.read_at(offset, &mut piece).unwrap();
            if n == 0 {
                break;
            }
            whole.extend_from_slice(&piece[..n]);
            offset += n as u64;
        }
        assert_eq!(layer.blob().1.load(Ordering::SeqCst) - before, chunks);
        let mut expected = Vec::new();
        layer.read_file_verified(file, &mut expected).unwrap();
        assert_eq!(whole, expected);
    }

    #[test]
    fn read_pieces_cover_a_read_in_chunk_order() {
        let layer = Layer::open(&include_bytes!("../../testdata/sample.esgz")[..]).unwrap();
        let index = layer.index();
        let file = (0..index.len() as NodeId).max_by_key(|&id| index.chunks(id).len()).unwrap();
        let chunks = index.chunks(file);
        let size = index.node(file).unwrap().size();
        // From inside the first chunk to inside the third, and the whole file.
        let (offset, end) = (chunks.get(0).unwrap().size - 100, chunks.get(2).unwrap().file_offset + 10);
        for (offset, end) in [(offset, end), (0, size), (size - 1, size), (5, 5)] {
            let pieces: Vec<_> = index.read_pieces(file, offset, end).collect();
            let mut pos = offset;
            for (k, p) in pieces.iter().enumerate() {
                assert_eq!(p.info, chunks.get(p.chunk).unwrap());
                assert_eq!(p.at as u64, pos - offset);
                assert_eq!(p.info.file_offset + p.within.start as u64, pos);
                assert!(p.within.end as u64 <= p.info.size);
                assert!(k == 0 || p.chunk == pieces[k - 1].chunk + 1);
                pos += p.within.len() as u64;
            }
            assert_eq!(pos, end, "{offset}..{end}");
        }
        assert_eq!(index.read_pieces(file, size, size + 10).count(), 0);
    }
}

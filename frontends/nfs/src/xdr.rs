//! XDR (RFC 4506) for the small RPC programs served beside NFS: the portmapper, the lock
//! manager and the status monitor. A reader that borrows from the call's bytes and bounds every
//! variable-length item by the protocol's own limit, and a writer into a `Vec`.
//!
//! nfs3_types' codec (used for NFS and MOUNT) copies every opaque into an owned buffer and
//! takes no bounds; these programs' arguments are a few strings and handles, read in place.

/// The arguments did not decode: too short, an item over its bound, or bytes left over.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Garbage;

/// Reads XDR items from the front of a byte slice.
pub struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader over one call's arguments.
    pub fn new(bytes: &'a [u8]) -> Self {
        Reader { rest: bytes }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Garbage> {
        let (head, rest) = self.rest.split_at_checked(n).ok_or(Garbage)?;
        self.rest = rest;
        Ok(head)
    }

    /// An unsigned 32-bit integer.
    pub fn u32(&mut self) -> Result<u32, Garbage> {
        let bytes = self.take(4)?;
        let array: [u8; 4] = bytes.try_into().map_err(|_| Garbage)?;
        Ok(u32::from_be_bytes(array))
    }

    /// A signed 32-bit integer.
    pub fn i32(&mut self) -> Result<i32, Garbage> {
        Ok(self.u32()?.cast_signed())
    }

    /// An unsigned 64-bit integer.
    pub fn u64(&mut self) -> Result<u64, Garbage> {
        Ok((u64::from(self.u32()?) << 32) | u64::from(self.u32()?))
    }

    /// A boolean: 0 or 1, nothing else.
    pub fn bool(&mut self) -> Result<bool, Garbage> {
        match self.u32()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(Garbage),
        }
    }

    /// Variable-length opaque data (or a string) of at most `max` bytes, padding skipped.
    pub fn opaque(&mut self, max: usize) -> Result<&'a [u8], Garbage> {
        let len = usize::try_from(self.u32()?).map_err(|_| Garbage)?;
        if len > max {
            return Err(Garbage);
        }
        let bytes = self.take(len)?;
        self.take(pad(len))?;
        Ok(bytes)
    }

    /// The bytes not read yet.
    pub fn rest(&self) -> &'a [u8] {
        self.rest
    }

    /// Succeeds only if every byte was read.
    pub fn end(&self) -> Result<(), Garbage> {
        if self.rest.is_empty() { Ok(()) } else { Err(Garbage) }
    }
}

/// Bytes of padding after `len` bytes of opaque data.
fn pad(len: usize) -> usize {
    (4 - len % 4) % 4
}

/// Writes XDR items.
#[derive(Default)]
pub struct Writer {
    bytes: Vec<u8>,
}

impl Writer {
    /// An empty result.
    pub fn new() -> Self {
        Writer::default()
    }

    /// An unsigned 32-bit integer.
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.bytes.extend_from_slice(&v.to_be_bytes());
        self
    }

    /// A signed 32-bit integer.
    pub fn i32(&mut self, v: i32) -> &mut Self {
        self.u32(v.cast_unsigned())
    }

    /// An unsigned 64-bit integer.
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.bytes.extend_from_slice(&v.to_be_bytes());
        self
    }

    /// A boolean.
    pub fn bool(&mut self, v: bool) -> &mut Self {
        self.u32(u32::from(v))
    }

    /// Variable-length opaque data or a string, padded. Longer than 4 GiB cannot be written
    /// and never is: everything written here is bounded far below that.
    pub fn opaque(&mut self, v: &[u8]) -> &mut Self {
        self.u32(u32::try_from(v.len()).unwrap_or(u32::MAX));
        self.bytes.extend_from_slice(v);
        self.bytes.extend_from_slice(&[0; 3][..pad(v.len())]);
        self
    }

    /// The encoded bytes.
    pub fn finish(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_padding() {
        let bytes = Writer::new().u32(7).i32(-2).u64(1 << 40).bool(true).opaque(b"abcde").finish();
        assert_eq!(bytes.len(), 4 + 4 + 8 + 4 + 4 + 8);
        let mut r = Reader::new(&bytes);
        assert_eq!(r.u32(), Ok(7));
        assert_eq!(r.i32(), Ok(-2));
        assert_eq!(r.u64(), Ok(1 << 40));
        assert_eq!(r.bool(), Ok(true));
        assert_eq!(r.opaque(5), Ok(&b"abcde"[..]));
        assert_eq!(r.end(), Ok(()));
    }

    #[test]
    fn bounds_and_truncation_are_garbage() {
        let bytes = Writer::new().opaque(b"abcde").finish();
        assert_eq!(Reader::new(&bytes).opaque(4), Err(Garbage), "over its bound");
        assert_eq!(Reader::new(&bytes[..8]).opaque(8), Err(Garbage), "padding cut off");
        assert_eq!(Reader::new(&[0, 0, 0, 2]).bool(), Err(Garbage));
        let huge = [0xff, 0xff, 0xff, 0xff];
        assert_eq!(Reader::new(&huge).opaque(usize::MAX), Err(Garbage), "claims more than is there");
        let mut r = Reader::new(&[0, 0, 0, 1, 9]);
        assert_eq!(r.u32(), Ok(1));
        assert_eq!(r.end(), Err(Garbage), "a byte left over");
    }
}

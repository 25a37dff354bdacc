//! Entry points of the cargo-fuzz targets (`fuzz/`) and the corpus regression test
//! (`tests/fuzz_corpus.rs`), behind the `fuzzing` feature.
//!
//! The image-reference parser reads names a client hands over: the /crfs namespace builds a
//! reference from the names a FUSE or NFS client looks up (`image/HOST/REPO:TAG`). An entry
//! returns a [`Finding`] when the parser breaks a promise of its own; a panic or a hang is
//! caught by the fuzzer or the test around the entry.

use crate::reference::{check_against_oci_client, fields, parse};

/// An input on which the parser broke a promise, and which one.
#[derive(Debug)]
pub struct Finding(pub String);

/// The input as text through the image-reference parser. It must agree with oci-client's
/// parser (where it is not stricter on purpose), and a reference it accepts must read back
/// as itself from its written form (`Reference::whole`).
pub fn reference(data: &[u8]) -> Result<(), Finding> {
    let Ok(s) = std::str::from_utf8(data) else { return Ok(()) };
    check_against_oci_client(s).map_err(Finding)?;
    if let Ok(r) = parse(s) {
        let written = r.whole();
        match parse(&written) {
            Ok(again) if fields(&again) == fields(&r) => {}
            Ok(again) => {
                return Err(Finding(format!(
                    "{s:?} reads as {:?}, its form {written:?} as {:?}",
                    fields(&r),
                    fields(&again)
                )));
            }
            Err(e) => {
                return Err(Finding(format!("{s:?} reads as {:?}, its form {written:?} not at all: {e}", fields(&r))));
            }
        }
    }
    Ok(())
}

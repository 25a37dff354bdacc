//! Fuzz target: crfs_vfs::fuzz_entry::layer_store (requests to the Additional Layer Store a
//! FUSE client could send; see that function).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Err(finding) = crfs_vfs::fuzz_entry::layer_store(data) {
        panic!("{finding:?}");
    }
});

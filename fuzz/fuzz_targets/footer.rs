//! Fuzz target: crfs_core::fuzz_entry::footer (see that function for what it drives and checks).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Err(finding) = crfs_core::fuzz_entry::footer(data) {
        panic!("{finding:?}");
    }
});

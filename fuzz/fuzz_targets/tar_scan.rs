//! Fuzz target: crfs_core::fuzz_entry::tar_scan (see that function for what it drives and checks).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Err(finding) = crfs_core::fuzz_entry::tar_scan(data) {
        panic!("{finding:?}");
    }
});

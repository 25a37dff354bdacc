//! Fuzz target: crfs_remote::fuzz_entry::reference (see that function for what it drives and checks).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Err(finding) = crfs_remote::fuzz_entry::reference(data) {
        panic!("{finding:?}");
    }
});

//! Fuzz target: crfs_nfs::fuzz_entry::rpc_programs (calls to the portmapper, the lock manager
//! and the status monitor, straight from the input; see that function).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Err(finding) = crfs_nfs::fuzz_entry::rpc_programs(data) {
        panic!("{finding:?}");
    }
});

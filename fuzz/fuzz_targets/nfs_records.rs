//! Fuzz target: crfs_nfs::fuzz_entry::nfs_records (arbitrary bytes as one client connection's
//! RPC records to the NFS server, over an in-memory stream; see that module).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Err(finding) = crfs_nfs::fuzz_entry::nfs_records(data) {
        panic!("{finding:?}");
    }
});

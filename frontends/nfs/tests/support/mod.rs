//! Helpers shared by the NFS test suites.

pub mod bigdir;
pub mod client;

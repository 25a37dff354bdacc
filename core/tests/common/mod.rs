//! Shared by the core's integration tests; the helpers live in crfs-testkit.

#![allow(unused_imports)]

pub use crfs_testkit::{assert_same_listing, escape, in_ci, interop, interop_bin, layer_listing as listing, testdata};

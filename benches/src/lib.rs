//! crfs-benches: the side-by-side benchmark harness (see benches/README.md).
//!
//! Owns corpus building and timing only; it must never be a dependency of a shipped crate.

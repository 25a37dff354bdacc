#!/usr/bin/env bash
# Proves that crfs-core is no_std + alloc. Builds core/nostd-check, a `#![no_std]`, `#![no_main]`
# executable with its own panic handler and a libc-malloc allocator that links no std at all,
# against crfs-core with default features off, then with the `zstd` feature, and runs each: it
# opens the committed fixtures (embedded with include_bytes!) through Layer::open and exits 0
# only if the TOC digests and a verified file read are right. If std leaked into the core's
# dependency graph, the build fails with "duplicate lang item `panic_impl`".
#
# Usage (from anywhere): bash core/nostd-check/check.sh
set -euo pipefail
cd "$(dirname "$0")"
# Keep the artifacts under the workspace's (ignored) target directory.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-../../target/nostd-check}"
cargo run --quiet
cargo run --quiet --features zstd

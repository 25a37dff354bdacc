#!/usr/bin/env bash
# Mount soak (issue #9) on a real image layer: runs the soak test (frontends/cli/tests/soak.rs,
# release build) for DURATION seconds on the python-3.11.7 corpus blob with a small chunk cache,
# 8 reader threads on random ranges of random files, every byte checked against the tree
# extracted from the tar, the crfs process's RSS sampled every SAMPLE seconds.
#
# Usage: benches/soak.sh [DURATION_SECONDS]      (default 600)
# Environment:
#   BLOB     the blob (default /var/tmp/crfs-bench/python-3.11.7.esgz; made from TAR by
#            `crfs convert` if absent)
#   TAR      its tar (default /var/tmp/crfs-bench/python-3.11.7.tar)
#   TREE     the tar extracted (default /var/tmp/crfs-bench/python-3.11.7.tree; extracted from
#            TAR into a temporary directory if absent)
#   CACHE    --cache-size in bytes (default 8 MiB, `crfs mount`'s default)
#   SAMPLE   RSS sampling period, seconds (default 5)
#   REPORT   Markdown report appended here (default benches/results/soak.md)
set -euo pipefail

DURATION=${1:-600}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH=/var/tmp/crfs-bench
TAR=${TAR:-$BENCH/python-3.11.7.tar}
BLOB=${BLOB:-$BENCH/python-3.11.7.esgz}
TREE=${TREE:-$BENCH/python-3.11.7.tree}
REPORT=${REPORT:-$ROOT/benches/results/soak.md}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}

WORK=$(mktemp -d /tmp/crfs-soak.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

cd "$ROOT"
# Builds target/release/crfs as the test uses it (the test build's features).
cargo test --release --locked -p crfs --test soak --no-run
if [ ! -f "$BLOB" ]; then
    [ -f "$TAR" ] || { echo "soak: neither $BLOB nor $TAR exists" >&2; exit 2; }
    BLOB=$WORK/blob.esgz
    "$CARGO_TARGET_DIR/release/crfs" convert "$TAR" "$BLOB"
fi
if [ ! -d "$TREE" ]; then
    [ -f "$TAR" ] || { echo "soak: neither $TREE nor $TAR exists" >&2; exit 2; }
    TREE=$WORK/tree
    mkdir -p "$TREE"
    tar -xf "$TAR" -C "$TREE"
fi

{
    echo
    echo "<!-- $(date -u +%Y-%m-%dT%H:%M:%SZ), $(git rev-parse --short HEAD), $(nproc) cores -->"
} >> "$REPORT"
CRFS_SOAK_SECS=$DURATION CRFS_SOAK_BLOB=$BLOB CRFS_SOAK_TREE=$TREE \
    CRFS_SOAK_CACHE=${CACHE:-$((8 << 20))} CRFS_SOAK_SAMPLE=${SAMPLE:-5} CRFS_SOAK_REPORT=$REPORT \
    cargo test --release --locked -p crfs --test soak -- --nocapture

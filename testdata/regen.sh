#!/usr/bin/env bash
# Regenerates the committed interop fixtures with the reference Go estargz
# library (Debian golang-github-containerd-stargz-snapshotter-dev, v0.12).
#
#   testdata/regen.sh                      # builds testdata/interop first
#   INTEROP_BIN=/path/to/interop testdata/regen.sh
#
# Output is deterministic (fixed mtimes, seeded content, Build forced to one
# part via GOMAXPROCS=1 inside `interop build`). It depends on the Go version
# (compress/flate) and the klauspost/compress version (zstd) used to build.
#
# Not committed because of their size (tests can make them at run time with
# `interop mktar -kind chunks|many -out FILE`): chunks.tar (~9.8 MB) and
# many.tar (~8.3 MB).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
fx="$here/fixtures"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

if [[ -n "${INTEROP_BIN:-}" ]]; then
    bin="$INTEROP_BIN"
else
    mkdir -p "$tmp/gopath"
    (cd "$here/interop" &&
        GO111MODULE=off GOFLAGS='' GOPATH="$tmp/gopath:/usr/share/gocode" \
            go build -trimpath -o "$tmp/interop" .)
    bin="$tmp/interop"
fi

mkdir -p "$fx"

# build TAR BLOB [interop build flags...]: writes BLOB, BLOB.toc-digest, BLOB.list
build() {
    local tar="$1" blob="$2"
    shift 2
    "$bin" build -in "$tar" -out "$blob" "$@" >"$tmp/out"
    sed -n 's/^toc-digest //p' "$tmp/out" >"$blob.toc-digest"
    "$bin" list "$blob" >"$blob.list"
}

"$bin" mktar -kind all-types -out "$fx/all-types.tar"
"$bin" list-tar "$fx/all-types.tar" >"$fx/all-types.tar.list"
"$bin" mktar -kind many -out "$tmp/many.tar"
"$bin" mktar -kind demo -out "$tmp/demo.tar"

build "$fx/all-types.tar" "$fx/all-types.esgz"
build "$fx/all-types.tar" "$fx/all-types-c4096.esgz" -chunk-size 4096 -prioritize files/medium.bin,links/hard2
build "$fx/all-types.tar" "$fx/all-types.zstdchunked" -format zstdchunked
build "$tmp/many.tar" "$fx/many.esgz"

# Legacy stargz, written by interop's own CRFS-style writer.
"$bin" legacy -in "$fx/all-types.tar" -out "$fx/all-types.stargz" >"$tmp/out"
sed -n 's/^toc-digest //p' "$tmp/out" >"$fx/all-types.stargz.toc-digest"
"$bin" list "$fx/all-types.stargz" >"$fx/all-types.stargz.list"
# It must still be a plain tar.gz listing the same entries plus the TOC.
if ! diff <(tar -tf "$fx/all-types.tar"; echo stargz.index.json) <(tar -tzf "$fx/all-types.stargz") >/dev/null; then
    echo "regen.sh: tar -tzf of all-types.stargz does not list the input entries" >&2
    exit 1
fi

# Demo blob embedded by the CLI (64 KiB chunks; the 200 KiB file has 4).
build "$tmp/demo.tar" "$here/sample.esgz" -chunk-size 65536
mv "$here/sample.esgz.toc-digest" "$here/sample.esgz.list" "$fx/"

du -ab "$fx" "$here/sample.esgz" | sort -k2

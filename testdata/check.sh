#!/usr/bin/env bash
# Cross-checks the fixtures against the reference reader:
#  - `interop list BLOB` must equal `interop list-tar` of the source tar;
#  - `interop verify BLOB $(cat BLOB.toc-digest)` must print ok (legacy stargz
#    has no chunk digests: it passes only when no file is chunked);
#  - legacy blobs must be plain tar.gz (gzip -t, tar -tzvf).
# Also builds chunks.tar / many.tar variants (not committed) in a temp dir.
#
#   testdata/check.sh            (or INTEROP_BIN=/path/to/interop testdata/check.sh)
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

fail=0
# check TARLIST BLOB DIGEST
check() {
    local tarlist="$1" blob="$2" dgst="$3"
    if "$bin" list "$blob" >"$tmp/l" && diff "$tarlist" "$tmp/l" >"$tmp/d"; then
        echo "list==list-tar  $(basename "$blob")"
    else
        echo "LIST DIFFERS    $(basename "$blob")"; cat "$tmp/d"; fail=1
    fi
    if [[ -f "$blob.list" ]] && ! cmp -s "$blob.list" "$tmp/l"; then
        echo "STALE .list     $(basename "$blob")"; fail=1
    fi
    if out=$("$bin" verify "$blob" "$dgst" 2>&1); then
        echo "verify ok       $(basename "$blob"): $(echo "$out" | head -1)"
    else
        echo "verify FAILED   $(basename "$blob"): $out"
        [[ "$blob" == *.stargz ]] || fail=1 # legacy: expected when chunked
    fi
}
# buildcheck TAR NAME [build or legacy args...]
buildcheck() {
    local tar="$1" name="$2" cmd="$3"
    shift 3
    "$bin" "$cmd" -in "$tar" -out "$tmp/$name" "$@" >"$tmp/out"
    check "$tar.list" "$tmp/$name" "$(sed -n 's/^toc-digest //p' "$tmp/out")"
}

echo "== committed fixtures"
"$bin" list-tar "$fx/all-types.tar" | cmp - "$fx/all-types.tar.list"
for b in all-types.esgz all-types-c4096.esgz all-types.zstdchunked all-types.stargz; do
    check "$fx/all-types.tar.list" "$fx/$b" "$(cat "$fx/$b.toc-digest")"
done
"$bin" mktar -kind many -out "$tmp/many.tar"
"$bin" list-tar "$tmp/many.tar" >"$tmp/many.tar.list"
check "$tmp/many.tar.list" "$fx/many.esgz" "$(cat "$fx/many.esgz.toc-digest")"
"$bin" mktar -kind demo -out "$tmp/demo.tar"
"$bin" list-tar "$tmp/demo.tar" >"$tmp/demo.tar.list"
check "$tmp/demo.tar.list" "$here/sample.esgz" "$(cat "$fx/sample.esgz.toc-digest")"

echo "== legacy stargz as plain tar.gz"
gzip -t "$fx/all-types.stargz"
tar -tzvf "$fx/all-types.stargz" >"$tmp/tzvf"
echo "tar -tzvf: $(wc -l <"$tmp/tzvf") entries, last: $(tail -1 "$tmp/tzvf")"

echo "== run-time variants"
"$bin" mktar -kind chunks -out "$tmp/chunks.tar"
"$bin" list-tar "$tmp/chunks.tar" >"$tmp/chunks.tar.list"
buildcheck "$tmp/chunks.tar" chunks.esgz build
buildcheck "$tmp/chunks.tar" chunks-c4096.esgz build -chunk-size 4096
buildcheck "$tmp/chunks.tar" chunks-c65536.esgz build -chunk-size 65536
buildcheck "$tmp/chunks.tar" chunks.zstdchunked build -format zstdchunked
buildcheck "$tmp/chunks.tar" chunks-c65536.zstdchunked build -format zstdchunked -chunk-size 65536
buildcheck "$tmp/chunks.tar" chunks.stargz legacy
buildcheck "$tmp/chunks.tar" chunks-c4096.stargz legacy -chunk-size 4096
buildcheck "$tmp/many.tar" many.zstdchunked build -format zstdchunked
buildcheck "$tmp/many.tar" many.stargz legacy
buildcheck "$fx/all-types.tar" all-types-c4096.stargz legacy -chunk-size 4096
buildcheck "$fx/all-types.tar" all-types-l1.esgz build -level 1 -prioritize dup/file,unicode/link
gzip -t "$tmp/chunks.stargz"
[[ "$(tar -tzf "$tmp/chunks.stargz" | tail -1)" == stargz.index.json ]]

if [[ $fail != 0 ]]; then
    echo "FAILED"
    exit 1
fi
echo "all checks passed"

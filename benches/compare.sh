#!/usr/bin/env bash
# benches/compare.sh: crfs-core against the Go reference (estargz v0.12) and gzip, side by side.
#
# usage: benches/compare.sh [--quick] [-n N] [--work DIR] [--tree DIR] [--out FILE] [--no-build]
#
#   --quick     synthetic corpus (5,000 files, 50 MB; `interop mkcorpus`), for CI smoke; writes
#               benches/results/core-quick.md unless --out is given
#   -n N        runs per measurement (default 5); the table shows median [min-max]
#   --work DIR  cache for the corpus, the Go helper and raw samples (default /var/tmp/crfs-bench)
#   --tree DIR  the tree the full corpus is made of (default /root/.pyenv/versions/3.11.7)
#   --out FILE  where the markdown goes (default benches/results/core.md); a .tsv of the
#               first table is written beside it (read by crfs-bench-chart)
#   --no-build  use the crfs binaries already in the release target dir (the Go helper is rebuilt)
#
# Builds crfs and crfs-benches in release (the workspace's own target dir), builds the Go helper
# testdata/interop in GOPATH mode, builds the corpus once (tar, then `interop build` with default
# options: gzip eStargz, 4 MiB chunks, level 9), then runs every pair N times, alternating which
# side goes first. Every process is timed from outside: wall time from bash's EPOCHREALTIME,
# user/sys CPU and peak RSS from GNU time. See benches/README.md for what each row measures.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
QUICK=0
NO_BUILD=0
N=5
WORK=/var/tmp/crfs-bench
TREE=/root/.pyenv/versions/3.11.7
OUT=

die() { echo "compare.sh: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --no-build) NO_BUILD=1 ;;
    -n) N=${2:?-n needs a number}; shift ;;
    --work) WORK=${2:?--work needs a directory}; shift ;;
    --tree) TREE=${2:?--tree needs a directory}; shift ;;
    --out) OUT=${2:?--out needs a file}; shift ;;
    -h|--help) sed -n '2,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
  shift
done
case "$N" in ''|*[!0-9]*|0) die "-n wants a positive number" ;; esac
[ -x /usr/bin/time ] || die "needs GNU time at /usr/bin/time (apt-get install time)"
if [ -z "$OUT" ]; then
  if [ $QUICK = 1 ]; then OUT=$ROOT/benches/results/core-quick.md; else OUT=$ROOT/benches/results/core.md; fi
fi
mkdir -p "$WORK/bin" "$(dirname "$OUT")"
WORK=$(cd "$WORK" && pwd)

log() { echo "[$(date +%H:%M:%S)] $*" >&2; }

# --- build -------------------------------------------------------------------------------------
if [ $NO_BUILD = 0 ]; then
  log "cargo build --release -p crfs-benches -p crfs"
  (cd "$ROOT" && cargo build --release -p crfs-benches -p crfs)
fi
TARGET=$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
[ -n "$TARGET" ] || die "cannot find cargo's target directory"
REL=$TARGET/release
for b in crfs crfs-bench-open crfs-bench-readall; do [ -x "$REL/$b" ] || die "$REL/$b missing after build"; done

log "go build testdata/interop"
(cd "$ROOT/testdata/interop" &&
  GO111MODULE=off GOFLAGS='' GOPATH="$WORK/gopath:/usr/share/gocode" go build -o "$WORK/bin/interop" .)
INTEROP=$WORK/bin/interop

# --- corpus ------------------------------------------------------------------------------------
if [ $QUICK = 1 ]; then
  NAME=synthetic-5000
  CORPUS_DESC="synthetic: \`interop mkcorpus -files 5000 -bytes 50000000\` (deterministic)"
else
  [ -d "$TREE" ] || die "$TREE: no such directory (use --tree or --quick)"
  TREE=$(cd "$TREE" && pwd)
  if [ "$TREE" = /root/.pyenv/versions/3.11.7 ]; then NAME=python-3.11.7; else NAME=tree-$(basename "$TREE"); fi
  CORPUS_DESC="\`tar --sort=name -C $(dirname "$TREE") -cf - $(basename "$TREE")\`"
fi
TAR=$WORK/$NAME.tar
BLOB=$WORK/$NAME.esgz
if [ ! -s "$BLOB" ]; then
  if [ ! -s "$TAR" ]; then
    log "making $TAR"
    if [ $QUICK = 1 ]; then
      "$INTEROP" mkcorpus -files 5000 -bytes 50000000 -out "$TAR.tmp"
    else
      tar --sort=name -C "$(dirname "$TREE")" -cf "$TAR.tmp" "$(basename "$TREE")"
    fi
    mv "$TAR.tmp" "$TAR"
  fi
  log "interop build -in $TAR (reference writer, default options; about a minute for 680 MB)"
  "$INTEROP" build -in "$TAR" -out "$BLOB.tmp" > "$BLOB.build.txt"
  mv "$BLOB.tmp" "$BLOB"
else
  log "corpus cached: $BLOB"
fi

# --- measuring ---------------------------------------------------------------------------------
RUN=$WORK/runs/$NAME
rm -rf "$RUN"
mkdir -p "$RUN"

# measure NAME STDOUT CMD...: runs CMD once; appends "wall_s user_s sys_s maxrss_kib" to RUN/NAME.
measure() {
  local name=$1 out=$2
  shift 2
  local t0=$EPOCHREALTIME
  if ! /usr/bin/time -f '%U %S %M' -o "$RUN/$name.time" "$@" > "$out" 2> "$RUN/$name.err"; then
    cat "$RUN/$name.err" >&2
    die "$name failed: $*"
  fi
  local t1=$EPOCHREALTIME
  local wall
  wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.4f", b - a }')
  echo "$wall $(tail -n 1 "$RUN/$name.time")" >> "$RUN/$name"
}

# The pairs: NAME|COMMAND (crfs side first, then the reference side).
PAIR_OPEN_C=(open.crfs "$RUN/open.crfs.out" "$REL/crfs-bench-open" "$BLOB")
PAIR_OPEN_R=(open.ref "$RUN/open.ref.out" "$INTEROP" open "$BLOB")
PAIR_VERIFY_C=(verify.crfs "$RUN/verify.crfs.out" "$REL/crfs" verify "$BLOB")
PAIR_VERIFY_R=(verify.gzip /dev/null gzip -dc "$BLOB")
READ_C=(
  "readall.crfs.readat1|--mode read-at --piece 131072 --threads 1"
  "readall.crfs.readat2|--mode read-at --piece 131072 --threads 2"
  "readall.crfs.reader1|--mode reader --piece 131072 --threads 1"
  "readall.crfs.reader2|--mode reader --piece 131072 --threads 2"
  "readall.crfs.chunk1|--mode chunk --threads 1"
  "readall.crfs.chunk2|--mode chunk --threads 2"
  "readall.crfs.reader1k32|--mode reader --piece 32768 --threads 1"
)
READ_R=(
  "readall.ref.readat|-piece 131072"
  "readall.ref.chunk|-piece 0"
  "readall.ref.readat32k|-piece 32768"
)

run_crfs_reads() {
  local spec name opts
  for spec in "${READ_C[@]}"; do
    name=${spec%%|*}; opts=${spec#*|}
    # shellcheck disable=SC2086
    measure "$name" "$RUN/$name.out" "$REL/crfs-bench-readall" $opts "$BLOB"
  done
}
run_ref_reads() {
  local spec name opts
  for spec in "${READ_R[@]}"; do
    name=${spec%%|*}; opts=${spec#*|}
    # shellcheck disable=SC2086
    measure "$name" "$RUN/$name.out" "$INTEROP" readall $opts "$BLOB"
  done
}

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
log "warming up (page cache, binaries)"
cat "$BLOB" > /dev/null
"$REL/crfs-bench-open" "$BLOB" > /dev/null
"$INTEROP" open "$BLOB" > /dev/null

for i in $(seq 1 "$N"); do
  log "round $i/$N ($( [ $((i % 2)) = 1 ] && echo "crfs first" || echo "reference first"))"
  if [ $((i % 2)) = 1 ]; then
    measure "${PAIR_OPEN_C[@]}"; measure "${PAIR_OPEN_R[@]}"
    measure "${PAIR_VERIFY_C[@]}"; measure "${PAIR_VERIFY_R[@]}"
    run_crfs_reads; run_ref_reads
  else
    measure "${PAIR_OPEN_R[@]}"; measure "${PAIR_OPEN_C[@]}"
    measure "${PAIR_VERIFY_R[@]}"; measure "${PAIR_VERIFY_C[@]}"
    run_ref_reads; run_crfs_reads
  fi
done

# Both sides must have read the same files and bytes.
want=$(cat "$RUN/readall.ref.readat.out")
for f in "$RUN"/readall.*.out; do
  [ "$(cat "$f")" = "$want" ] || die "$(basename "$f"): '$(cat "$f")' but the reference read '$want'"
done

# --- report ------------------------------------------------------------------------------------
# stats NAME FIELD: "median min max" of column FIELD (1 wall, 2 user, 3 sys, 4 rss, 5 user+sys).
stats() {
  awk -v f="$2" '{ v = (f == 5) ? $2 + $3 : $f; print v }' "$RUN/$1" | sort -g |
    awk '{ v[NR] = $1 } END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; print m, v[1], v[NR] }'
}
fmt_s() { awk -v x="$1" 'BEGIN { if (x < 1) printf "%.3f", x; else if (x < 100) printf "%.2f", x; else printf "%.1f", x }'; }
fmt_mib() { awk -v x="$1" 'BEGIN { printf "%.1f", x / 1024 }'; }
cell() { # NAME FIELD: "median [min–max] unit"
  local m lo hi
  read -r m lo hi < <(stats "$1" "$2")
  if [ "$2" = 4 ]; then echo "$(fmt_mib "$m") MiB [$(fmt_mib "$lo")–$(fmt_mib "$hi")]"
  else echo "$(fmt_s "$m") s [$(fmt_s "$lo")–$(fmt_s "$hi")]"; fi
}
median() { stats "$1" "$2" | awk '{ print $1 }'; }
# row LABEL CRFS REF FIELD LIMIT TARGET: LIMIT is the largest crfs/ref ratio that meets the target
# ("-" for information only).
row() {
  local label=$1 c=$2 r=$3 field=$4 limit=$5 target=$6
  local cm rm ratio met
  cm=$(median "$c" "$field"); rm=$(median "$r" "$field")
  ratio=$(awk -v a="$cm" -v b="$rm" 'BEGIN { if (b <= 0) print "n/a"; else if (a / b < 0.1) printf "%.3f×", a / b; else printf "%.2f×", a / b }')
  if [ "$field" != 4 ]; then
    ratio="$ratio ($(awk -v a="$cm" -v b="$rm" 'BEGIN { if (a <= 0) print "n/a"; else if (b / a >= 10) printf "%.1f× faster", b / a; else if (b / a >= 1) printf "%.2f× faster", b / a; else printf "%.2f× slower", a / b }'))"
  fi
  if [ "$limit" = - ]; then met="—"
  else met=$(awk -v a="$cm" -v b="$rm" -v l="$limit" 'BEGIN { print (b > 0 && a / b <= l) ? "**yes**" : "**NO**" }'); fi
  local cpu="—"
  if [ "$field" != 4 ]; then
    # GNU time counts CPU in 10 ms steps: below 50 ms the ratio means little.
    cpu=$(awk -v a="$(median "$c" 5)" -v b="$(median "$r" 5)" \
      'BEGIN { if (a < 0.05 || b < 0.05) print "(too short)"; else if (a / b < 0.1) printf "%.3f×", a / b; else printf "%.2f×", a / b }')
  fi
  echo "| $label | $(cell "$c" "$field") | $(cell "$r" "$field") | $ratio | $target | $met | $cpu |"
  # The same row for machines (crfs-bench-chart, the README): raw medians and ranges.
  local a b
  a=$(stats "$c" "$field" | tr ' ' '\t'); b=$(stats "$r" "$field" | tr ' ' '\t')
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$c" "$r" "$( [ "$field" = 4 ] && echo rss || echo wall)" "$a" "$b" "$limit" "$label" >>"$TSV.tmp"
}
# The machine-readable twin of the first table (sizes in KiB, times in seconds).
TSV=${OUT%.md}.tsv
printf 'crfs\tpeer\tmetric\tcrfs_median\tcrfs_min\tcrfs_max\tpeer_median\tpeer_min\tpeer_max\ttarget_ratio\tlabel\n' >"$TSV.tmp"

ENTRIES=$(awk '{ print $2 }' "$RUN/open.crfs.out")
FILES_BYTES=$(cat "$RUN/readall.ref.readat.out")
TOC_DIGEST=$(sed -n 's/^toc-digest //p' "$BLOB.build.txt" 2>/dev/null || true)
CPU=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
COMMIT=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
DIRTY=$(git -C "$ROOT" status --porcelain -- core frontends benches Cargo.toml Cargo.lock 2>/dev/null | wc -l)
size_of() { local n; n=$(wc -c < "$1"); awk -v x="$n" 'BEGIN { printf "%.1f MB (%d bytes)", x / 1e6, x }'; }

{
  echo "# crfs-core vs the reference: side by side"
  echo
  echo "Written by \`benches/compare.sh$( [ $QUICK = 1 ] && echo " --quick")$( [ "$N" != 5 ] && echo " -n $N")\` on $(date -u '+%Y-%m-%d %H:%M UTC')."
  echo "Each cell: median [min–max] of $N runs; the two sides alternate which runs first. Ratio = crfs ÷ reference (medians)."
  echo "Targets are judged on wall time, as asked. The last column is crfs ÷ reference of the median user+sys CPU time, which a"
  echo "busy machine disturbs less (but which hides parallel speed-up: read it with care on the 2-thread and verify rows)."
  echo
  echo "| measurement | crfs | reference | ratio | target | met? | CPU-time ratio |"
  echo "|---|---|---|---|---|---|---|"
  row "open + index the TOC: wall time (\`crfs-bench-open\` vs \`interop open\` = \`estargz.Open\`)" open.crfs open.ref 1 0.3334 "≤ 0.33×"
  row "open + index the TOC: peak RSS (same runs)" open.crfs open.ref 4 0.5 "≤ 0.50×"
  row "inflate + check every chunk: \`crfs verify\` (2 threads) vs \`gzip -dc BLOB >/dev/null\`" verify.crfs verify.gzip 1 1.0 "≤ 1.00×"
  row "read every file, 128 KiB \`read_at\`, 1 thread vs reference \`OpenFile\`+\`ReadAt\` 128 KiB" readall.crfs.readat1 readall.ref.readat 1 0.05 "≤ 0.05× (≥ 20× faster)"
  row "read every file, \`FileReader\` 128 KiB \`read_at\`, 1 thread vs reference ReadAt 128 KiB" readall.crfs.reader1 readall.ref.readat 1 0.05 "≤ 0.05× (≥ 20× faster)"
  row "read every file, \`read_chunk\` per chunk, 1 thread vs reference ReadAt 128 KiB" readall.crfs.chunk1 readall.ref.readat 1 0.05 "≤ 0.05× (≥ 20× faster)"
  row "read every file, \`FileReader\` 32 KiB (\`io.Copy\`'s buffer), 1 thread vs reference ReadAt 32 KiB" readall.crfs.reader1k32 readall.ref.readat32k 1 0.05 "≤ 0.05× (≥ 20× faster)"
  row "read every file, 128 KiB \`read_at\`, 2 threads vs reference ReadAt 128 KiB" readall.crfs.readat2 readall.ref.readat 1 - "(information)"
  row "read every file, \`FileReader\` 128 KiB, 2 threads vs reference ReadAt 128 KiB" readall.crfs.reader2 readall.ref.readat 1 - "(information)"
  row "read every file, \`read_chunk\`, 2 threads vs reference ReadAt 128 KiB" readall.crfs.chunk2 readall.ref.readat 1 - "(information)"
  row "read every file, \`read_chunk\`, 1 thread vs reference one ReadAt per whole chunk" readall.crfs.chunk1 readall.ref.chunk 1 - "(information)"
  echo
  echo "## CPU time and memory of every measured process"
  echo
  echo "| process | wall | user+sys CPU | peak RSS |"
  echo "|---|---|---|---|"
  for name in open.crfs open.ref verify.crfs verify.gzip readall.crfs.readat1 readall.crfs.readat2 readall.crfs.reader1 readall.crfs.reader2 readall.crfs.chunk1 readall.crfs.chunk2 readall.crfs.reader1k32 readall.ref.readat readall.ref.chunk readall.ref.readat32k; do
    echo "| $name | $(cell "$name" 1) | $(cell "$name" 5) | $(cell "$name" 4) |"
  done
  echo
  echo "Commands (BLOB = the corpus blob; crfs binaries from \`cargo build --release\`):"
  echo
  echo "- open.crfs: \`crfs-bench-open BLOB\` — open.ref: \`interop open BLOB\`"
  echo "- verify.crfs: \`crfs verify BLOB\` (all cores) — verify.gzip: \`gzip -dc BLOB > /dev/null\`"
  for spec in "${READ_C[@]}"; do echo "- ${spec%%|*}: \`crfs-bench-readall ${spec#*|} BLOB\` (no digest checks, like the reference's ReadAt)"; done
  for spec in "${READ_R[@]}"; do echo "- ${spec%%|*}: \`interop readall ${spec#*|} BLOB\`"; done
  echo
  echo "## Setup"
  echo
  echo "- corpus: $CORPUS_DESC → \`interop build\` (reference writer, default options: gzip eStargz, 4 MiB chunks, level 9)"
  echo "- tar: $(size_of "$TAR"); blob: $(size_of "$BLOB"); $ENTRIES index nodes; regular files read: $FILES_BYTES"
  echo "- toc-digest: $TOC_DIGEST"
  echo "- machine: $(nproc) CPUs ($CPU), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo) RAM, Linux $(uname -r); shared and noisy (load average before the runs: $LOAD_BEFORE; after: $(cut -d' ' -f1-3 /proc/loadavg))"
  echo "- crfs: commit $COMMIT$( [ "$DIRTY" != 0 ] && echo " plus $DIRTY uncommitted changes in core/, frontends/, benches/ or Cargo files"), $(rustc --version), release profile"
  echo "- reference: github.com/containerd/stargz-snapshotter/estargz v0.12 (Debian), $(go version | awk '{ print $3 }'), GOMAXPROCS default ($(nproc))"
  echo
  echo "## Raw samples (wall s, user s, sys s, peak RSS KiB)"
  echo
  echo '```'
  for name in open.crfs open.ref verify.crfs verify.gzip readall.crfs.readat1 readall.crfs.readat2 readall.crfs.reader1 readall.crfs.reader2 readall.crfs.chunk1 readall.crfs.chunk2 readall.crfs.reader1k32 readall.ref.readat readall.ref.chunk readall.ref.readat32k; do
    echo "$name"
    sed 's/^/  /' "$RUN/$name"
  done
  echo '```'
} > "$OUT.tmp"
mv "$OUT.tmp" "$OUT"
mv "$TSV.tmp" "$TSV"
mkdir -p "$WORK/reports"
cp "$OUT" "$WORK/reports/$(basename "$OUT" .md)-$(date -u +%Y%m%dT%H%M%SZ).md"
log "wrote $OUT (a copy is kept in $WORK/reports/)"
sed -n "/^| measurement/,/^$/p" "$OUT"

#!/usr/bin/env bash
# benches/convert-compare.sh: `crfs convert` against the reference Go estargz Build, same tar.
#
# usage: benches/convert-compare.sh [-n N] [--levels "9 6"] [--work DIR] [--out FILE]
#
#   -n N          runs per tool and level (default 3), alternating tools; the table shows medians
#   --levels L    gzip levels to compare (default "9 6")
#   --work DIR    corpus directory (default /var/tmp/crfs-bench, holding python-3.11.7.tar)
#   --out FILE    where the markdown goes (default benches/results/convert.md)
#   --tar FILE    another input tar (default DIR/python-3.11.7.tar), e.g. for a smoke run
#
# Peers, all gzip eStargz with 4 MiB chunks:
#   crfs         target/release/crfs convert --level L TAR OUT (every core)
#   go-1         testdata/interop build -level L -procs 1 (one goroutine: deterministic output)
#   go-default   testdata/interop build -level L -procs 0 (GOMAXPROCS = every core: the
#                reference Build splits the tar into that many parts and compresses them in
#                parallel; this is the library's own default)
# Each run is timed with GNU time (wall, user, sys, max RSS); outputs go to DIR/convert-bench and
# are removed after their size is taken. The machine's load average is recorded with the results.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
N=3
LEVELS="9 6"
WORK=/var/tmp/crfs-bench
OUT=$ROOT/benches/results/convert.md
TAR=
die() { echo "convert-compare.sh: $*" >&2; exit 1; }
while [ $# -gt 0 ]; do
  case "$1" in
    -n) N=${2:?}; shift ;;
    --levels) LEVELS=${2:?}; shift ;;
    --work) WORK=${2:?}; shift ;;
    --out) OUT=${2:?}; shift ;;
    --tar) TAR=${2:?}; shift ;;
    -h|--help) sed -n '2,19p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument $1" ;;
  esac
  shift
done
log() { echo "[$(date +%H:%M:%S)] $*" >&2; }
TAR=${TAR:-$WORK/python-3.11.7.tar}
[ -f "$TAR" ] || die "no corpus at $TAR (benches/compare.sh builds it)"
[ -x /usr/bin/time ] || die "needs GNU time (/usr/bin/time, Debian package time)"

log "cargo build --release -p crfs"
(cd "$ROOT" && cargo build --release -q -p crfs)
TARGET=$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
CRFS=$TARGET/release/crfs
# The Go helper from this tree (it has -level and -procs), built in GOPATH mode against
# Debian's estargz package, as the tests build it.
INTEROP=$TARGET/interop-bench/interop
log "go build testdata/interop"
mkdir -p "$(dirname "$INTEROP")"
(cd "$ROOT/testdata/interop" && GO111MODULE=off GOFLAGS= GOPATH="$TARGET/interop-bench/gopath:/usr/share/gocode" \
  go build -trimpath -o "$INTEROP" .)

RUNS=$WORK/convert-bench
mkdir -p "$RUNS"
RAW=$RUNS/raw.tsv
: > "$RAW"
measure() { # tool level run command...
  local tool=$1 level=$2 run=$3; shift 3
  local out=$RUNS/$tool-$level-$run.esgz t=$RUNS/time.txt
  rm -f "$out"
  sync
  /usr/bin/time -f '%e %U %S %M' -o "$t" "$@" "$out" >/dev/null
  read -r wall user sys rss < "$t"
  local size; size=$(stat -c %s "$out")
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$tool" "$level" "$run" "$wall" "$user" "$sys" "$rss" "$size" >> "$RAW"
  log "$tool level $level run $run: wall ${wall}s user ${user}s sys ${sys}s size $size"
  rm -f "$out"
}
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
for level in $LEVELS; do
  for run in $(seq 1 "$N"); do
    measure crfs "$level" "$run" "$CRFS" convert --level "$level" "$TAR"
    measure go-1 "$level" "$run" "$INTEROP" build -level "$level" -procs 1 -in "$TAR" -out
    measure go-default "$level" "$run" "$INTEROP" build -level "$level" -procs 0 -in "$TAR" -out
  done
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

python3 - "$RAW" "$OUT" "$N" "$LOAD_BEFORE" "$LOAD_AFTER" "$(nproc)" "$(stat -c %s "$TAR")" "$(basename "$TAR")" <<'EOF'
import statistics, sys
raw, out, n, load_before, load_after, cores, tar_size, name = sys.argv[1:]
rows = [l.rstrip("\n").split("\t") for l in open(raw) if l.strip()]
by = {}
for tool, level, run, wall, user, sys_, rss, size in rows:
    by.setdefault((level, tool), []).append((float(wall), float(user) + float(sys_), int(rss), int(size)))
med = lambda xs: statistics.median(xs)
lines = [
    "# `crfs convert` against the reference Go estargz Build",
    "",
    f"Input: {name} ({int(tar_size):,} bytes, {int(tar_size) / 1e6:.0f} MB); gzip eStargz, 4 MiB chunks.",
    f"{cores} cores; load average {load_before} before, {load_after} after (other work was running on the machine).",
    f"Medians of {n} runs per row, tools alternating; CPU is user + sys. Produced by `benches/convert-compare.sh`.",
    "",
    "Commands (OUT is a fresh file each run):",
    "",
    "```",
    f"target/release/crfs convert --level L {name} OUT",
    f"interop build -level L -procs 1 -in {name} -out OUT   # go-1: GOMAXPROCS=1",
    f"interop build -level L -procs 0 -in {name} -out OUT   # go-default: GOMAXPROCS=cores",
    "```",
    "",
]
levels = sorted({k[0] for k in by}, key=lambda l: -int(l))
for level in levels:
    lines += [f"## Level {level}", "",
              "| tool | wall s | CPU s | max RSS MB | output bytes | wall vs crfs | CPU vs crfs | size vs crfs |",
              "|---|---|---|---|---|---|---|---|"]
    base = by.get((level, "crfs"))
    bw, bc, bs = (med([r[0] for r in base]), med([r[1] for r in base]), med([r[3] for r in base])) if base else (0, 0, 0)
    for tool in ["crfs", "go-1", "go-default"]:
        rs = by.get((level, tool))
        if not rs:
            continue
        w, c, m, s = med([r[0] for r in rs]), med([r[1] for r in rs]), med([r[2] for r in rs]) / 1024, med([r[3] for r in rs])
        lines.append(f"| {tool} | {w:.1f} | {c:.1f} | {m:.0f} | {s:,} | {w / bw:.2f}x | {c / bc:.2f}x | {100 * (s - bs) / bs:+.2f}% |")
    lines.append("")
    lines.append("Every run: " + "; ".join(
        f"{t} " + ", ".join(f"{r[0]:.1f}s/{r[1]:.1f}s" for r in by[(level, t)])
        for t in ["crfs", "go-1", "go-default"] if (level, t) in by) + " (wall/CPU).")
    lines.append("")
open(out, "w").write("\n".join(lines))
print("\n".join(lines))
EOF
log "wrote $OUT"

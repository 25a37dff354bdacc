#!/usr/bin/env bash
# benches/convert-compare.sh: `crfs convert` against the reference Go estargz Build, same tar.
#
# usage: benches/convert-compare.sh [-n N] [--levels "9 6"] [--work DIR] [--quick] [--out FILE]
#                                   [--tar FILE] [--from-samples FILE]
#
#   -n N          runs per tool and level (default 3), alternating tools; the table shows medians
#   --levels L    gzip levels to compare (default "9 6")
#   --work DIR    corpus directory (default /var/tmp/crfs-bench, shared with compare.sh)
#   --quick       the synthetic corpus compare.sh --quick builds (5,000 files), for a smoke run
#   --out FILE    where the markdown goes (default benches/results/convert.md, convert-quick.md
#                 with --quick); the TSV crfs-bench-chart reads goes beside it
#   --tar FILE    another input tar (default the corpus: WORK/python-3.11.7.tar)
#   --from-samples FILE  measure nothing: write the report from the samples file of an earlier
#                 run (the NAME-samples.txt beside its report)
#
# Peers, all gzip eStargz with 4 MiB chunks:
#   crfs         target/release/crfs convert --level L TAR OUT (every core)
#   go-1         testdata/interop build -level L -procs 1 (one goroutine: deterministic output)
#   go-default   testdata/interop build -level L -procs 0 (GOMAXPROCS = every core: the
#                reference Build splits the tar into that many parts and compresses them in
#                parallel; this is the library's own default)
# Each run is timed with GNU time (wall, user, sys, max RSS); outputs go to WORK/convert-bench and
# are removed after their size is taken. The machine's load average is recorded with the results.
set -euo pipefail

# shellcheck source=benches/harness.sh
source "$(dirname "${BASH_SOURCE[0]}")/harness.sh"
LEVELS="9 6"
INPUT=
FROM_SAMPLES=
script_option() {
  case "$1" in
    --levels) LEVELS=${2:?--levels needs a list}; return 2 ;;
    --tar) INPUT=${2:?--tar needs a file}; return 2 ;;
    --from-samples) FROM_SAMPLES=${2:?--from-samples needs a file}; return 2 ;;
    *) return 1 ;;
  esac
}
HARNESS_NEEDS_ROOT=0
harness_init convert "$@"
[ -x /usr/bin/time ] || die "needs GNU time (/usr/bin/time, Debian package time)"

TOOLS="crfs go-1 go-default"
RUNS=$WORK/convert-bench
mkdir -p "$RUNS"
# One line per run: "TOOL:LEVEL wall-s cpu-s max-rss-KiB output-bytes"; "# load-before/after ...".
SAMPLES=$RUNS/samples.txt
if [ -n "$FROM_SAMPLES" ]; then
  [ -f "$FROM_SAMPLES" ] || die "no samples file $FROM_SAMPLES"
  [ -n "$INPUT" ] || die "--from-samples needs --tar FILE: the input the samples were measured on"
  TAR=$INPUT
  cp "$FROM_SAMPLES" "$SAMPLES.tmp" && mv "$SAMPLES.tmp" "$SAMPLES"
  LEVELS=$(awk '$1 !~ /^#/ {split($1, k, ":"); print k[2]}' "$SAMPLES" | sort -rnu | tr '\n' ' ')
else
  if [ -n "$INPUT" ]; then TAR=$INPUT; else harness_corpus; fi
  [ -f "$TAR" ] || die "no input tar $TAR"
  harness_build_crfs
  # The Go helper from this tree (it has -level and -procs), built in GOPATH mode against
  # Debian's estargz package, as the tests build it.
  INTEROP=$TARGET/interop-bench/interop
  log "go build testdata/interop"
  mkdir -p "$(dirname "$INTEROP")"
  (cd "$ROOT/testdata/interop" && GO111MODULE=off GOFLAGS='' GOPATH="$TARGET/interop-bench/gopath:/usr/share/gocode" \
    go build -trimpath -o "$INTEROP" .)

  measure() { # tool level run command...
    local tool=$1 level=$2 run=$3; shift 3
    local out=$RUNS/$tool-$level-$run.esgz t=$RUNS/time.txt wall user sys rss size
    rm -f "$out"
    sync
    /usr/bin/time -f '%e %U %S %M' -o "$t" "$@" "$out" >/dev/null
    read -r wall user sys rss <"$t"
    size=$(stat -c %s "$out")
    echo "$tool:$level $wall $(echo "$user + $sys" | bc -l) $rss $size" >>"$SAMPLES"
    log "$tool level $level run $run: wall ${wall}s user ${user}s sys ${sys}s size $size"
    rm -f "$out"
  }
  echo "# load-before $(cut -d' ' -f1-3 /proc/loadavg)" >"$SAMPLES"
  for level in $LEVELS; do
    for run in $(seq 1 "$N"); do
      measure crfs "$level" "$run" "$CRFS" convert --level "$level" "$TAR"
      measure go-1 "$level" "$run" "$INTEROP" build -level "$level" -procs 1 -in "$TAR" -out
      measure go-default "$level" "$run" "$INTEROP" build -level "$level" -procs 0 -in "$TAR" -out
    done
  done
  echo "# load-after $(cut -d' ' -f1-3 /proc/loadavg)" >>"$SAMPLES"
fi

# --- report --------------------------------------------------------------------------------------
st() { harness_stats "$SAMPLES" "$1" "$2"; } # TOOL:LEVEL FIELD: 2 wall, 3 CPU, 4 RSS, 5 bytes
median() { st "$1" "$2" | cut -d' ' -f1; }
load() { awk -v k="$1" '$1 == "#" && $2 == k {print $3, $4, $5}' "$SAMPLES"; }
runs_of() { awk -v k="$1" '$1 == k' "$SAMPLES" | wc -l; }
commas() { printf '%.0f' "$1" | sed ':a;s/\B[0-9]\{3\}\>/,&/;ta'; }
NAME_TAR=$(basename "$TAR")
TAR_SIZE=$(stat -c %s "$TAR")
N_RUNS=$(runs_of "crfs:$(echo "$LEVELS" | awk '{print $1}')")

harness_pairs_header "$TSV.tmp"
for level in $LEVELS; do
  for peer in go-1 go-default; do
    c=crfs:$level p=$peer:$level
    harness_pair "$TSV.tmp" wall "$c" "$(st "$c" 2)" "$p" "$(st "$p" 2)" - "L$level wall vs $peer" \
      "convert the tar, gzip level $level: wall time, crfs vs $peer"
    harness_pair "$TSV.tmp" cpu "$c" "$(st "$c" 3)" "$p" "$(st "$p" 3)" - "L$level CPU vs $peer" \
      "convert the tar, gzip level $level: CPU time (user + sys), crfs vs $peer"
  done
  c=crfs:$level p=go-1:$level
  harness_pair "$TSV.tmp" rss "$c" "$(st "$c" 4)" "$p" "$(st "$p" 4)" - "L$level RSS vs go-1" \
    "convert the tar, gzip level $level: peak RSS, crfs vs go-1"
  harness_pair "$TSV.tmp" bytes "$c" "$(st "$c" 5)" "$p" "$(st "$p" 5)" - "L$level size vs go-1" \
    "convert the tar, gzip level $level: output size, crfs vs go-1"
done
mv "$TSV.tmp" "$TSV"

{
  echo "# \`crfs convert\` against the reference Go estargz Build"
  echo
  echo "Input: $NAME_TAR ($(commas "$TAR_SIZE") bytes, $(awk -v s="$TAR_SIZE" 'BEGIN {printf "%.0f", s / 1e6}') MB); gzip eStargz, 4 MiB chunks."
  echo "$(nproc) cores; load average $(load load-before) before, $(load load-after) after (other work was running on the machine)."
  echo "Medians of $N_RUNS runs per row, tools alternating; CPU is user + sys. Produced by \`benches/convert-compare.sh\`."
  echo
  echo "Commands (OUT is a fresh file each run):"
  echo
  echo '```'
  echo "target/release/crfs convert --level L $NAME_TAR OUT"
  echo "interop build -level L -procs 1 -in $NAME_TAR -out OUT   # go-1: GOMAXPROCS=1"
  echo "interop build -level L -procs 0 -in $NAME_TAR -out OUT   # go-default: GOMAXPROCS=cores"
  echo '```'
  echo
  for level in $LEVELS; do
    bw=$(median "crfs:$level" 2) bc=$(median "crfs:$level" 3) bs=$(median "crfs:$level" 5)
    echo "## Level $level"
    echo
    echo "| tool | wall s | CPU s | max RSS MB | output bytes | wall vs crfs | CPU vs crfs | size vs crfs |"
    echo "|---|---|---|---|---|---|---|---|"
    for tool in $TOOLS; do
      k=$tool:$level
      [ "$(runs_of "$k")" -gt 0 ] || continue
      awk -v t="$tool" -v w="$(median "$k" 2)" -v c="$(median "$k" 3)" -v m="$(median "$k" 4)" -v s="$(median "$k" 5)" \
        -v sc="$(commas "$(median "$k" 5)")" -v bw="$bw" -v bc="$bc" -v bs="$bs" 'BEGIN {
          printf "| %s | %.1f | %.1f | %.0f | %s | %.2fx | %.2fx | %+.2f%% |\n", t, w, c, m / 1024, sc, w / bw, c / bc, 100 * (s - bs) / bs}'
    done
    echo
    printf 'Every run:'
    sep=" "
    for tool in $TOOLS; do
      printf '%s%s %s' "$sep" "$tool" "$(awk -v k="$tool:$level" '$1 == k {printf "%s%.1fs/%.1fs", (n++ ? ", " : ""), $2, $3}' "$SAMPLES")"
      sep="; "
    done
    echo " (wall/CPU)."
    echo
  done
  echo "\`$(basename "$TSV")\` beside this file has the medians; \`$(basename "${OUT%.md}")-samples.txt\` every run"
  echo "(tool:level, wall s, CPU s, max RSS KiB, output bytes)."
} >"$OUT.tmp"
mv "$OUT.tmp" "$OUT"
[ "$(realpath "$SAMPLES")" = "$(realpath -m "${OUT%.md}-samples.txt")" ] || cp "$SAMPLES" "${OUT%.md}-samples.txt"
log "wrote $OUT and $TSV"
cat "$OUT"

#!/bin/bash
# campaign.sh TARGET MAX_SECONDS [WORK_DIR]
#
# One fuzzing campaign as fuzz/RESULTS.md reports them: run TARGET (built with
# `RUSTC_BOOTSTRAP=1 cargo fuzz build -O TARGET`) from its full minimised corpus (unpacked from
# corpus-full.tar.xz into WORK_DIR/full on first use) under `nice -n 19`, until 600 s pass
# without a new edge (a plateau, sampled every 10 s; PLATEAU=S changes the 600) or
# MAX_SECONDS; then minimise the full corpus together with what the run found (`-merge=1`),
# and the committed corpus together with the new files under the target's size cap (8 KiB
# nfs_records, 12 KiB layer_open, 20 KiB the others). Prints one summary line, and the
# coverage of the old and new corpora (stable-cov.sh: all edges, and those in the repository's
# own code, which hardly move between loads). Nothing in the repository is changed: copy
# WORK_DIR/TARGET/committed over corpus/TARGET and WORK_DIR/TARGET/merged over
# WORK_DIR/full/corpus_full/TARGET to keep them, then rebuild corpus-full.tar.xz from
# WORK_DIR/full (see RESULTS.md).
#
# LeakSanitizer reads lsan-suppressions.txt (upstream leaks, explained there).
#
# JOBS=N (default 1) runs libFuzzer's fork mode (-fork=N): N fuzzing processes whose finds the
# parent merges; the coverage and execution counts are then the parent's, summed over the jobs.
# On nfs_records it ran fewer inputs a second than two separate campaigns side by side (round
# eight in RESULTS.md).
#
# Two campaigns can run side by side on a 2-core machine; time the process spends stopped
# (SIGSTOP) counts as time without a new edge, so do not stop it for benchmarks.
set -euo pipefail

target=${1:?usage: campaign.sh TARGET MAX_SECONDS [WORK_DIR]}
max=${2:?usage: campaign.sh TARGET MAX_SECONDS [WORK_DIR]}
work=${3:-/tmp/crfs-fuzz}
here=$(cd "$(dirname "$0")" && pwd)
bin=$here/target/x86_64-unknown-linux-gnu/release/$target
[ -x "$bin" ] || { echo "no $bin: run RUSTC_BOOTSTRAP=1 cargo fuzz build -O $target in $here" >&2; exit 1; }
opts=(-rss_limit_mb=2048 -malloc_limit_mb=512)
jobs=${JOBS:-1}
fork=()
[ "$jobs" -gt 1 ] && fork=(-fork="$jobs")
case $target in
  nfs_records) cap=8k ;;
  layer_open) cap=12k ;;
  *) cap=20k ;;
esac
plateau=${PLATEAU:-600}
# Upstream leaks we cannot fix here, each explained in the file; LeakSanitizer lists at exit
# how often each was suppressed.
export LSAN_OPTIONS="suppressions=$here/lsan-suppressions.txt:print_suppressions=1${LSAN_OPTIONS:+:$LSAN_OPTIONS}"

if [ ! -d "$work/full/corpus_full" ]; then
  mkdir -p "$work/full"
  tar -xJf "$here/corpus-full.tar.xz" -C "$work/full"
fi
run=$work/$target
rm -rf "$run"
mkdir -p "$run/corpus" "$run/artifacts"
cp "$work/full/corpus_full/$target/"* "$run/corpus/"

# The run, its log lines prefixed with the seconds since it started.
# Every writer appends (O_APPEND), so the PLATEAU line written below is not overwritten by
# the fuzzer's last lines.
start=$(date +%s)
: >"$run/log"
nice -n 19 "$bin" "$run/corpus" "${opts[@]}" "${fork[@]}" -timeout=600 -max_total_time="$max" -print_final_stats=1 \
  -artifact_prefix="$run/artifacts/" 2>&1 |
  while IFS= read -r line; do echo "$(($(date +%s) - start)) $line"; done >>"$run/log" &
sleep 5
pid=$(pgrep -o -f "^$bin $run/corpus" || true)
last_cov=0
last_new=0
while [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; do
  sleep 10
  now=$(($(date +%s) - start))
  # Until the fuzzer has loaded its corpus (INITED), the log has no cov line and grep fails:
  # that must not end the script (set -e), or the run would go on unwatched and unmerged.
  cov=$(grep -o "cov: [0-9]*" "$run/log" | tail -1 | awk '{print $2}' || true)
  if [ -n "$cov" ] && [ "$cov" != "$last_cov" ]; then
    last_cov=$cov
    last_new=$now
  fi
  if [ $((now - last_new)) -ge "$plateau" ]; then
    echo "$now PLATEAU: no new cov since ${last_new}s (cov $last_cov)" >>"$run/log"
    # Every process of the run carries its artifact prefix: the fuzzer, and in fork mode its
    # jobs, grandchildren via system() that would otherwise run on to the end of their job.
    pkill -INT -f -- "-artifact_prefix=$run/artifacts/" || true
    break
  fi
done
wait
echo "$(($(date +%s) - start)) END" >>"$run/log"

# What the run did.
awk '{for (i = 1; i <= NF; i++) if ($i == "cov:") print $1, $(i + 1)}' "$run/log" >"$run/cov"
first=$(head -1 "$run/cov" | cut -d' ' -f2)
final=$(tail -1 "$run/cov" | cut -d' ' -f2)
changed=$(awk 'BEGIN {p = ""} {if ($2 != p) {t = $1; p = $2}} END {print t}' "$run/cov")
if [ "$jobs" -gt 1 ]; then
  # The parent's own final stats count only its own executions (none); its '#N: cov:' lines
  # count the jobs'.
  execs=$(grep -o '#[0-9]*: cov:' "$run/log" | tail -1 | tr -dc 0-9 || true)
else
  execs=$(grep -o "stat::number_of_executed_units: [0-9]*" "$run/log" | awk '{print $2}' || true)
fi
wall=$(tail -1 "$run/log" | cut -d' ' -f1)
ended=$(grep -q PLATEAU "$run/log" && echo plateau || echo "time cap")
echo "$target: ${wall} s, ${execs:-?} executions, cov $first -> $final, last new edge at ${changed} s, ended by $ended"
find "$run/artifacts" -type f -printf 'finding: %f\n'

# Minimised corpora.
mkdir -p "$run/merged" "$run/small" "$run/committed"
"$bin" -merge=1 "${opts[@]}" -timeout=60 "$run/merged" "$work/full/corpus_full/$target" "$run/corpus" >"$run/merge-full.log" 2>&1
find "$run/merged" -type f -size "-$cap" -exec cp {} "$run/small/" \;
"$bin" -merge=1 "${opts[@]}" -timeout=60 "$run/committed" "$here/corpus/$target" "$run/small" >"$run/merge-committed.log" 2>&1
# stable-cov.sh prints `all FILES OWN HARNESS ALL_EDGES` for a corpus.
cov_of() {
  "$here/stable-cov.sh" "$target" "$1" |
    awk '{printf "cov %d, own code %d outside the harness (harness %d)", $5, $3 - $4, $4}'
}
for pair in "old full:$work/full/corpus_full/$target" "new full:$run/merged" \
  "old committed:$here/corpus/$target" "new committed:$run/committed"; do
  name=${pair%%:*}
  dir=${pair#*:}
  echo "$name: $(find "$dir" -type f | wc -l) files, $(du -sb "$dir" | cut -f1) bytes, $(cov_of "$dir")"
done

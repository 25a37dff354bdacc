#!/bin/bash
# stable-cov.sh TARGET CORPUS_DIR [MINUTES...]
#
# The part of a corpus's coverage that (nearly) does not change from one load to the next: edges
# in the functions of this repository's own sources (crfs and the vendored NFS crates), as one
# load of CORPUS_DIR reports them (`-runs=0 -print_coverage=1`). libFuzzer's running `cov:`
# counter also counts edges in std, tokio, moka, hashbrown and crossbeam-epoch that depend on
# thread scheduling: loads of one nfs_records corpus give counters up to about 90 apart, while
# the repository's part differed by at most 4, all in the connection task that the harness
# spawns (`crfs_nfs::fuzz_entry::connect`, into which the server's socket loop is inlined; see
# fuzz/RESULTS.md, rounds eight and nine). So a rise in the counter can be noise, and a plateau
# in it says little; the count outside the harness files is the one to watch.
#
# With MINUTES, CORPUS_DIR is a campaign's working corpus (WORK_DIR/TARGET/corpus): each MINUTES
# value loads the files written up to that many minutes after the run started, counted from the
# oldest file (campaign.sh copies the starting corpus in first, in well under 5 s, and the run's
# first finds come later), plus 5 s; so 0 is the starting corpus, and the output is the run's
# stable coverage over time. libFuzzer deletes an input it has replaced by a smaller one that
# covers the same, so an edge can show up at the time of its last reduction rather than its
# first find: late, never early.
#
# Output: one line per load, `minutes files repo_edges harness_edges all_edges` (minutes `all`
# without MINUTES); harness_edges are those of repo_edges in a `fuzz_entry.rs` file. Uses the
# fuzz binary campaign.sh uses; loads run under `nice -n 19`. KEEP=DIR keeps each load's
# libFuzzer output as DIR/LABEL.txt, to see which functions two loads differ in.
set -euo pipefail

target=${1:?usage: stable-cov.sh TARGET CORPUS_DIR [MINUTES...]}
corpus=${2:?usage: stable-cov.sh TARGET CORPUS_DIR [MINUTES...]}
shift 2
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
bin=$here/target/x86_64-unknown-linux-gnu/release/$target
[ -x "$bin" ] || { echo "no $bin: run RUSTC_BOOTSTRAP=1 cargo fuzz build -O $target in $here" >&2; exit 1; }
export LSAN_OPTIONS="suppressions=$here/lsan-suppressions.txt${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

# load DIR LABEL: one line of output for the files in DIR.
load() {
  local dir=$1 label=$2 files
  files=$(find "$dir" -maxdepth 1 -type f | wc -l)
  nice -n 19 "$bin" -runs=0 -print_coverage=1 -rss_limit_mb=4096 -malloc_limit_mb=512 "$dir" >"$scratch/out" 2>&1 || {
    echo "the load of $dir failed; its last lines:" >&2
    tail -5 "$scratch/out" >&2
    exit 1
  }
  # COVERED_FUNC: hits: H edges: C/T NAME FILE:LINE (UNCOVERED_FUNC lines add nothing).
  awk -v label="$label" -v files="$files" -v repo="$repo/" '
    /^COVERED_FUNC:/ {
      split($5, edges, "/"); all += edges[1]
      if (index($NF, repo) == 1) {
        own += edges[1]
        if ($NF ~ /\/fuzz_entry\.rs:[0-9]+$/) harness += edges[1]
      }
    }
    END { printf "%s %d %d %d %d\n", label, files, own, harness, all }' "$scratch/out"
  if [ -n "${KEEP:-}" ]; then
    mkdir -p "$KEEP"
    cp "$scratch/out" "$KEEP/$label.txt"
  fi
}

if [ $# -eq 0 ]; then
  load "$corpus" all
  exit 0
fi
start=$(find "$corpus" -maxdepth 1 -type f -printf '%T@\n' | awk 'NR == 1 || $1 < min {min = $1} END {print min}')
[ -n "$start" ] || { echo "$corpus holds no files" >&2; exit 1; }
for minutes in "$@"; do
  rm -rf "$scratch/cut"
  mkdir "$scratch/cut"
  find "$corpus" -maxdepth 1 -type f -printf '%T@ %p\n' |
    awk -v cutoff="$start" -v minutes="$minutes" \
      '$1 <= cutoff + minutes * 60 + 5 {print substr($0, index($0, " ") + 1)}' |
    while IFS= read -r file; do ln "$file" "$scratch/cut/" 2>/dev/null || cp "$file" "$scratch/cut/"; done
  load "$scratch/cut" "$minutes"
done

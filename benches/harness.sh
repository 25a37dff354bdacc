# shellcheck shell=bash
# benches/harness.sh: what the side-by-side scripts share (sourced, not run): the options
# -n N, --work DIR, --quick, --out FILE and --mnt DIR; log and die; the corpus from
# compare.sh's cache; a release build of crfs; medians of samples; the results TSV.
#
# A script sources it (HARNESS_NEEDS_ROOT=0 before harness_init when it does not), then calls:
#   harness_init RESULT "$@"   parses the options; sets ROOT, N, WORK, QUICK, OUT (default
#                              benches/results/RESULT.md, RESULT-quick.md with --quick),
#                              TSV (OUT with .tsv for .md) and MNT (--mnt, default
#                              WORK/mnt-RESULT); the script's header comment (from line 2 to
#                              the first line that is not a comment) is its --help. An option
#                              the harness does not know goes to the script's function
#                              `script_option OPTION VALUE`, which returns 0 after taking the
#                              option alone, 2 after taking its value too, 1 if unknown; the
#                              script's `script_defaults`, if any, runs after parsing and may
#                              set N, WORK, OUT or MNT where they are still empty.
#   harness_corpus             sets NAME, TAR, BLOB (the corpus compare.sh caches in WORK,
#                              building it when absent)
#   harness_corpus_gzip        sets TGZ: the corpus tar as an ordinary tar.gz layer (gzip -6),
#                              cached beside it
#   harness_build_crfs [PKG..] sets CRFS (target/release/crfs, built now; HARNESS_PROFILE=debug
#                              builds and uses the dev profile); TARGET is cargo's target dir
# and may use
#   harness_registry DIR       starts docker-registry on 127.0.0.1 (plain HTTP, storage and
#                              its access log `registry.log` in DIR); sets PORT and REGISTRY_PID
#   harness_cpu_now [PID..]    sets CPU_NOW: user + sys seconds of this shell's reaped children,
#                              the registry's and each PID's (call it directly, not in $(...))
#   harness_table TSV          prints the markdown table of a results TSV
#   harness_stats FILE KEY [FIELD]   "median min max n" of field FIELD of FILE's lines that
#                              start with the words of KEY (default FIELD: the one after them)
#   harness_pairs_header FILE  starts a results TSV (what crfs-bench-chart reads)
#   harness_pair FILE METRIC CRFS_KEY CRFS_STATS PEER_KEY PEER_STATS MAX_RATIO GROUP LABEL [TARGET]
#                              appends one crfs-vs-peer row: METRIC is wall or cpu (seconds),
#                              rss (KiB) or bytes; STATS are "median min max n"; MAX_RATIO
#                              (crfs ÷ peer) is the target, or - for none; TARGET says it in
#                              words (default "≤ MAX_RATIO×")

HARNESS_SCRIPT=$(basename "$0")
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

die() { echo "$HARNESS_SCRIPT: $*" >&2; exit 1; }
log() { echo "[$(date +%H:%M:%S)] $*" >&2; }

harness_init() {
  local result=$1; shift
  N=
  WORK=
  QUICK=0
  OUT=
  MNT=
  local taken
  while [ $# -gt 0 ]; do
    case "$1" in
      -n) N=${2:?-n needs a number}; shift ;;
      --work) WORK=${2:?--work needs a directory}; shift ;;
      --quick) QUICK=1 ;;
      --out) OUT=${2:?--out needs a file}; shift ;;
      --mnt) MNT=${2:?--mnt needs a directory}; shift ;;
      -h|--help) awk 'NR > 1 && /^#/ {print; next} NR > 1 {exit}' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
      *)
        taken=1
        if declare -F script_option >/dev/null; then script_option "$1" "${2-}" && taken=0 || taken=$?; fi
        case $taken in
          0) ;;
          2) shift ;;
          *) die "unknown argument $1 (see --help)" ;;
        esac
        ;;
    esac
    shift
  done
  [ "${HARNESS_NEEDS_ROOT:-1}" = 0 ] || [ "$(id -u)" = 0 ] || die "needs root (drop_caches and mounts)"
  if declare -F script_defaults >/dev/null; then script_defaults; fi
  N=${N:-3}
  case "$N" in *[!0-9]*|0) die "-n wants a positive number" ;; esac
  WORK=${WORK:-/var/tmp/crfs-bench}
  if [ -z "$OUT" ]; then
    if [ "$QUICK" = 1 ]; then OUT=$ROOT/benches/results/$result-quick.md; else OUT=$ROOT/benches/results/$result.md; fi
  fi
  # shellcheck disable=SC2034  # read by the scripts that source this file
  TSV=${OUT%.md}.tsv
  MNT=${MNT:-$WORK/mnt-$result}
}

harness_corpus() {
  NAME=python-3.11.7
  [ "$QUICK" = 1 ] && NAME=synthetic-5000
  TAR=$WORK/$NAME.tar
  BLOB=$WORK/$NAME.esgz
  if [ ! -f "$BLOB" ] || [ ! -f "$TAR" ]; then
    log "no corpus in $WORK: building it with compare.sh"
    if [ "$QUICK" = 1 ]; then "$ROOT/benches/compare.sh" --quick -n 1 --work "$WORK" --out "$WORK/core-corpus-build.md" >/dev/null
    else "$ROOT/benches/compare.sh" -n 1 --work "$WORK" --out "$WORK/core-corpus-build.md" >/dev/null; fi
  fi
  [ -f "$BLOB" ] && [ -f "$TAR" ] || die "corpus missing: $TAR / $BLOB"
}

harness_corpus_gzip() {
  TGZ=$WORK/$NAME.tar.gz
  if [ ! -f "$TGZ" ]; then
    log "gzip -6 $TAR"
    gzip -6 -c "$TAR" >"$TGZ.tmp" && mv "$TGZ.tmp" "$TGZ"
  fi
}

harness_build_crfs() {
  local profile=${HARNESS_PROFILE:-release} packages=(-p crfs) p
  for p in "$@"; do packages+=(-p "$p"); done
  TARGET=$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
  [ -n "$TARGET" ] || die "cannot find cargo's target directory"
  if [ "$profile" = debug ]; then
    log "cargo build ${packages[*]} (dev profile)"
    (cd "$ROOT" && cargo build -q "${packages[@]}")
  else
    log "cargo build --release ${packages[*]}"
    (cd "$ROOT" && cargo build --release -q "${packages[@]}")
  fi
  CRFS=$TARGET/$profile/crfs
  [ -x "$CRFS" ] || die "$CRFS missing after build"
}

harness_stats() {
  local words
  words=$(wc -w <<<"$2")
  awk -v k="$2 " -v f="${3:-$((words + 1))}" 'index($0, k) == 1 {print $f}' "$1" | sort -g \
    | awk '{a[NR]=$1} END {if (NR) {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%.12g %.12g %.12g %d", m, a[1], a[NR], NR}}'
}

harness_pairs_header() {
  printf 'crfs\tpeer\tmetric\tcrfs_median\tcrfs_min\tcrfs_max\tpeer_median\tpeer_min\tpeer_max\tn\ttarget\tmet\tgroup\tlabel\n' >"$1"
}

harness_pair() {
  local file=$1 metric=$2 ck=$3 cs=$4 pk=$5 ps=$6 max=$7 group=$8 label=$9 target=${10-}
  local cm cl ch cn pm pl ph pn met=-
  read -r cm cl ch cn <<<"$cs"
  read -r pm pl ph pn <<<"$ps"
  [ -n "${cm:-}" ] && [ -n "${pm:-}" ] || die "no samples for $ck or $pk"
  if [ "$max" != - ]; then
    [ -n "$target" ] || target="≤ ${max}×"
    met=$(awk -v a="$cm" -v b="$pm" -v m="$max" 'BEGIN {print (b > 0 && a / b <= m) ? "yes" : "no"}')
  else
    target=-
  fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$ck" "$pk" "$metric" "$cm" "$cl" "$ch" \
    "$pm" "$pl" "$ph" "$((cn < pn ? cn : pn))" "$target" "$met" "$group" "$label" >>"$file"
}

harness_registry() {
  local dir=$1
  PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  cat >"$dir/registry.yml" <<EOF
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $dir/storage
http:
  addr: 127.0.0.1:$PORT
  secret: crfs-bench
EOF
  docker-registry serve "$dir/registry.yml" >"$dir/registry.log" 2>&1 &
  REGISTRY_PID=$!
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && return 0; sleep 0.1; done
  die "docker-registry did not start (see $dir/registry.log)"
}

harness_cpu_now() {
  local clk others=0 pid t
  clk=$(getconf CLK_TCK)
  for pid in "$REGISTRY_PID" "$@"; do
    t=$(awk -v t="$clk" '{print ($14 + $15) / t}' "/proc/$pid/stat")
    others=$(echo "$others + $t" | bc -l)
  done
  # `times` in this shell: in a $(...) subshell it would count that subshell's children.
  local file
  file=$(mktemp)
  times >"$file"
  # shellcheck disable=SC2034  # read by the scripts that source this file
  CPU_NOW=$(awk -v r="$others" 'function s(x) {split(x, p, /[ms]/); return p[1] * 60 + p[2]}
    NR == 2 {print s($1) + s($2) + r}' "$file")
  rm -f "$file"
}

harness_table() {
  echo "| measurement | crfs | peer | crfs ÷ peer | target | met |"
  echo "|---|---|---|---|---|---|"
  tail -n +2 "$1" | awk -F'\t' '
    function sh(x) {return x < 0.1 ? sprintf("%.3f", x) : x < 100 ? sprintf("%.2f", x) : sprintf("%.0f", x)}
    function cell(m, lo, hi, unit) {
      if (unit == "bytes") return m >= 10485760 ? sprintf("%.1f MiB", m / 1048576) : sprintf("%d bytes", m)
      return sprintf("%s s [%s–%s]", sh(m), sh(lo), sh(hi))}
    {r = $7 > 0 ? $4 / $7 : 0
     printf "| %s | %s | %s | %s | %s | %s |\n", $14, cell($4, $5, $6, $3), cell($7, $8, $9, $3),
       (r < 0.1 ? sprintf("%.3f×", r) : sprintf("%.2f×", r)), ($11 == "-" ? "—" : $11), ($12 == "-" ? "—" : $12)}'
}

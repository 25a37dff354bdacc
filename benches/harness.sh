# benches/harness.sh: what the side-by-side scripts share (sourced, not run): the options
# -n N, --work DIR, --quick and --out FILE; log and die; the corpus from compare.sh's cache;
# a release build of crfs; medians of samples.
#
# A script sources it, then calls, in order:
#   harness_init RESULT "$@"   parses the options; sets ROOT, N, WORK, QUICK, OUT (default
#                              benches/results/RESULT.md, RESULT-quick.md with --quick);
#                              the script's header comment (from line 2 to the first line
#                              that is not a comment) is its --help
#   harness_corpus             sets NAME, TAR, BLOB (the corpus compare.sh caches in WORK,
#                              building it when absent)
#   harness_build_crfs         sets CRFS (target/release/crfs, built now)
# and may use harness_stats FILE KEY: "median min max" of the second field of FILE's lines
# whose first field is KEY.

HARNESS_SCRIPT=$(basename "$0")
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

die() { echo "$HARNESS_SCRIPT: $*" >&2; exit 1; }
log() { echo "[$(date +%H:%M:%S)] $*" >&2; }

harness_init() {
  local result=$1; shift
  N=3
  WORK=/var/tmp/crfs-bench
  QUICK=0
  OUT=
  while [ $# -gt 0 ]; do
    case "$1" in
      -n) N=${2:?}; shift ;;
      --work) WORK=${2:?}; shift ;;
      --quick) QUICK=1 ;;
      --out) OUT=${2:?}; shift ;;
      -h|--help) awk 'NR > 1 && /^#/ {print; next} NR > 1 {exit}' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
      *) die "unknown argument $1" ;;
    esac
    shift
  done
  [ "$(id -u)" = 0 ] || die "needs root (drop_caches and mounts)"
  if [ -z "$OUT" ]; then
    if [ $QUICK = 1 ]; then OUT=$ROOT/benches/results/$result-quick.md; else OUT=$ROOT/benches/results/$result.md; fi
  fi
}

harness_corpus() {
  NAME=python-3.11.7
  [ $QUICK = 1 ] && NAME=synthetic-5000
  TAR=$WORK/$NAME.tar
  BLOB=$WORK/$NAME.esgz
  if [ ! -f "$BLOB" ] || [ ! -f "$TAR" ]; then
    log "no corpus in $WORK: building it with compare.sh"
    if [ $QUICK = 1 ]; then "$ROOT/benches/compare.sh" --quick -n 1 --work "$WORK" >/dev/null; else "$ROOT/benches/compare.sh" -n 1 --work "$WORK" >/dev/null; fi
  fi
  [ -f "$BLOB" ] && [ -f "$TAR" ] || die "corpus missing: $TAR / $BLOB"
}

harness_build_crfs() {
  log "cargo build --release -p crfs"
  (cd "$ROOT" && cargo build --release -q -p crfs)
  CRFS=$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')/release/crfs
}

harness_stats() {
  grep "^$2 " "$1" | awk '{print $2}' | sort -g \
    | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%.2f %.2f %.2f", m, a[1], a[NR]}'
}

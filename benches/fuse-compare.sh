#!/usr/bin/env bash
# benches/fuse-compare.sh: `crfs mount` against squashfuse_ll and the extracted tree on local disk.
#
# usage: benches/fuse-compare.sh [-n N] [--work DIR] [--quick] [--out FILE]
#
#   -n N        runs per measurement (default 3); the table shows median [min-max]
#   --work DIR  corpus cache (default /var/tmp/crfs-bench, shared with compare.sh)
#   --quick     the synthetic corpus compare.sh --quick builds (5,000 files), for a smoke run
#   --out FILE  where the markdown goes (default benches/results/fuse.md, fuse-quick.md with --quick)
#
# Needs root: every measurement starts from a cold page cache (drop_caches) and a fresh mount.
# The same files are served three ways: crfs mounting the eStargz blob (gzip, 4 MiB chunks,
# level 9, written by the reference), squashfuse_ll mounting a gzip squashfs of the extracted
# tree (mksquashfs -comp gzip, default 128 KiB blocks), and the extracted tree itself. Each is
# timed on: `find MNT`, `ls -lR MNT`, and reading every regular file (`tar -cf - MNT | cat`).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
N=3
WORK=/var/tmp/crfs-bench
QUICK=0
OUT=
die() { echo "fuse-compare.sh: $*" >&2; exit 1; }
while [ $# -gt 0 ]; do
  case "$1" in
    -n) N=${2:?}; shift ;;
    --work) WORK=${2:?}; shift ;;
    --quick) QUICK=1 ;;
    --out) OUT=${2:?}; shift ;;
    -h|--help) sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument $1" ;;
  esac
  shift
done
[ "$(id -u)" = 0 ] || die "needs root (drop_caches and mounts)"
log() { echo "[$(date +%H:%M:%S)] $*" >&2; }
if [ -z "$OUT" ]; then
  if [ $QUICK = 1 ]; then OUT=$ROOT/benches/results/fuse-quick.md; else OUT=$ROOT/benches/results/fuse.md; fi
fi

for tool in squashfuse_ll mksquashfs; do
  command -v $tool >/dev/null || { log "installing squashfuse squashfs-tools"; apt-get install -y -q squashfuse squashfs-tools >/dev/null; break; }
done

NAME=python-3.11.7
[ $QUICK = 1 ] && NAME=synthetic-5000
TAR=$WORK/$NAME.tar
BLOB=$WORK/$NAME.esgz
if [ ! -f "$BLOB" ]; then
  log "no corpus in $WORK: building it with compare.sh"
  if [ $QUICK = 1 ]; then "$ROOT/benches/compare.sh" --quick -n 1 --work "$WORK" >/dev/null; else "$ROOT/benches/compare.sh" -n 1 --work "$WORK" >/dev/null; fi
fi
[ -f "$BLOB" ] && [ -f "$TAR" ] || die "corpus missing: $TAR / $BLOB"

log "cargo build --release -p crfs"
(cd "$ROOT" && cargo build --release -q -p crfs)
CRFS=$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')/release/crfs

TREE=$WORK/$NAME.tree
if [ ! -d "$TREE" ]; then
  log "extracting $TAR"
  mkdir -p "$TREE.tmp" && tar --xattrs --xattrs-include='*' -xpf "$TAR" -C "$TREE.tmp" && mv "$TREE.tmp" "$TREE"
fi
SQFS=$WORK/$NAME.sqfs
if [ ! -f "$SQFS" ]; then
  log "mksquashfs -comp gzip"
  mksquashfs "$TREE" "$SQFS.tmp" -comp gzip -noappend -no-progress -quiet && mv "$SQFS.tmp" "$SQFS"
fi

MNT=$WORK/mnt
mkdir -p "$MNT"
CRFS_PID=
cleanup() {
  [ -n "$CRFS_PID" ] && kill "$CRFS_PID" 2>/dev/null || true
  mountpoint -q "$MNT" && umount -l "$MNT" || true
}
trap cleanup EXIT

# mount SYSTEM: makes the corpus available and sets DIR to the directory to measure.
# (Not run in a command substitution: the mount process must not hold its pipe.)
mount_system() {
  case "$1" in
    crfs)
      "$CRFS" mount --threads 4 "$BLOB" "$MNT" >/dev/null 2>>"$WORK/crfs-mount.log" &
      CRFS_PID=$!
      for _ in $(seq 200); do mountpoint -q "$MNT" && break; sleep 0.05; done
      mountpoint -q "$MNT" || die "crfs mount did not come up (see $WORK/crfs-mount.log)"
      DIR=$MNT ;;
    squashfuse_ll)
      squashfuse_ll "$SQFS" "$MNT"
      for _ in $(seq 200); do mountpoint -q "$MNT" && break; sleep 0.05; done
      DIR=$MNT ;;
    local) DIR=$TREE ;;
  esac
}
unmount_system() {
  case "$1" in
    crfs) kill -TERM "$CRFS_PID"; wait "$CRFS_PID" || true; CRFS_PID= ;;
    squashfuse_ll) umount "$MNT" ;;
    local) ;;
  esac
}

op() {
  case "$1" in
    find) find "$2" >/dev/null ;;
    ls-lR) ls -lR "$2" >/dev/null ;;
    # One process reading every file in tree order (GNU tar skips reading when writing to
    # /dev/null itself, hence the pipe); no per-file process start-up in the measurement.
    read-all) tar -C "$2" -cf - . | cat >/dev/null ;;
  esac
}

SAMPLES=$WORK/fuse-samples.txt
: >"$SAMPLES"
SYSTEMS="crfs squashfuse_ll local"
OPS="find ls-lR read-all"
for run in $(seq "$N"); do
  for o in $OPS; do
    for s in $SYSTEMS; do
      mount_system "$s"
      sync; echo 3 >/proc/sys/vm/drop_caches
      start=$EPOCHREALTIME
      op "$o" "$DIR"
      end=$EPOCHREALTIME
      unmount_system "$s"
      secs=$(echo "$end - $start" | bc -l)
      echo "$o $s $secs" >>"$SAMPLES"
      log "run $run/$N $o $s: ${secs}s"
    done
  done
done

# median [min-max] per (op, system), and ratios.
stats() { grep "^$1 $2 " "$SAMPLES" | awk '{print $3}' | sort -g | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%.2f %.2f %.2f", m, a[1], a[NR]}'; }
{
  echo "# crfs mount vs squashfuse_ll vs local disk"
  echo
  echo "Written by \`benches/fuse-compare.sh -n $N\` on $(date -u '+%Y-%m-%d %H:%M') UTC, corpus \`$NAME\`"
  echo "($(find "$TREE" | wc -l) entries, $(du -sm "$TREE" | cut -f1) MB extracted; blob $(du -m "$BLOB" | cut -f1) MB, squashfs $(du -m "$SQFS" | cut -f1) MB)."
  echo "Cold page cache and a fresh mount for every measurement; median [min–max] of $N runs, seconds."
  echo
  echo "| operation | crfs | squashfuse_ll | local disk | crfs ÷ squashfuse_ll | crfs ÷ local | target (≤ 0.8× squashfuse_ll) |"
  echo "|---|---|---|---|---|---|---|"
  for o in $OPS; do
    read -r cm cl ch <<<"$(stats "$o" crfs)"
    read -r sm sl sh <<<"$(stats "$o" squashfuse_ll)"
    read -r lm ll lh <<<"$(stats "$o" local)"
    r1=$(echo "$cm / $sm" | bc -l); r2=$(echo "$cm / $lm" | bc -l)
    met=$(echo "$r1 <= 0.8" | bc -l | sed 's/1/yes/;s/0/**NO**/')
    printf '| %s | %s [%s–%s] | %s [%s–%s] | %s [%s–%s] | %.2f× | %.2f× | %s |\n' "$o" "$cm" "$cl" "$ch" "$sm" "$sl" "$sh" "$lm" "$ll" "$lh" "$r1" "$r2" "$met"
  done
} >"$OUT"
cat "$OUT"

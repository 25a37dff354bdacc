#!/usr/bin/env bash
# benches/cache-rss.sh: peak RSS (VmHWM) of `crfs mount` after reading every file, and the time
# that read took, for several --cache-size values; what the default cache size is chosen from.
#
# usage: benches/cache-rss.sh [-n N] [--crfs BIN] [--blob BLOB] [SIZE...]
#
#   -n N         runs per size (default 3); each row shows median [min-max]
#   --crfs BIN   the crfs binary (default target/release/crfs, built if missing)
#   --blob BLOB  the layer (default /var/tmp/crfs-bench/python-3.11.7.esgz: the 55k-entry corpus
#                that benches/fuse-compare.sh and compare.sh build)
#   SIZE...      --cache-size values (default: 4M 16M 32M 64M 256M)
#
# Each run: drop the page cache, `crfs mount --threads 4 --cache-size SIZE BLOB MNT` (as
# fuse-compare.sh mounts it), `tar -cf - . | cat` in the mount (one process reading every file
# in tree order), then VmHWM of the crfs process, then unmount. VmHWM is also taken once the
# mount is up, before any read: the peak of opening the layer (TOC text, index); and VmRSS
# once the read is done: what the process keeps. Needs root (drop_caches, mount).
# Prints a markdown table on stdout.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
N=3
CRFS=$ROOT/target/release/crfs
BLOB=/var/tmp/crfs-bench/python-3.11.7.esgz
SIZES=()
while [ $# -gt 0 ]; do
  case "$1" in
    -n) N=${2:?-n needs a number}; shift ;;
    --crfs) CRFS=${2:?--crfs needs a path}; shift ;;
    --blob) BLOB=${2:?--blob needs a path}; shift ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) SIZES+=("$1") ;;
  esac
  shift
done
[ ${#SIZES[@]} -gt 0 ] || SIZES=(4M 16M 32M 64M 256M)
[ -f "$BLOB" ] || { echo "cache-rss: $BLOB missing (benches/fuse-compare.sh builds it)" >&2; exit 2; }
[ -x "$CRFS" ] || (cd "$ROOT" && cargo build --release -q -p crfs)

MNT=$(mktemp -d /tmp/crfs-cache-rss.XXXXXX)
FS_PID=
cleanup() {
  mountpoint -q "$MNT" && { fusermount3 -u "$MNT" 2>/dev/null || umount -l "$MNT"; }
  [ -n "$FS_PID" ] && kill "$FS_PID" 2>/dev/null || true
  rmdir "$MNT" 2>/dev/null || true
}
trap cleanup EXIT

# median [min-max] of the numbers on stdin
stats() { sort -g | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%.1f [%.1f-%.1f]", m, a[1], a[NR]}'; }

echo "| --cache-size | peak RSS MiB after mounting | peak RSS MiB after reading every file (VmHWM) | RSS MiB once read (VmRSS) | read every file, s |"
echo "|---|---|---|---|---|"
for size in "${SIZES[@]}"; do
  open=() rss=() held=() secs=()
  for _ in $(seq "$N"); do
    sync
    echo 3 >/proc/sys/vm/drop_caches
    "$CRFS" mount --threads 4 --cache-size "$size" "$BLOB" "$MNT" >/dev/null 2>>"$MNT.log" &
    FS_PID=$!
    for _ in $(seq 6000); do
      mountpoint -q "$MNT" && break
      kill -0 "$FS_PID" 2>/dev/null || { echo "crfs exited before mounting (see $MNT.log)" >&2; exit 1; }
      sleep 0.01
    done
    open+=("$(awk '/^VmHWM/ { printf "%.1f", $2 / 1024 }' "/proc/$FS_PID/status")")
    start=$EPOCHREALTIME
    tar -C "$MNT" -cf - . | cat >/dev/null
    secs+=("$(echo "$EPOCHREALTIME - $start" | bc -l)")
    rss+=("$(awk '/^VmHWM/ { printf "%.1f", $2 / 1024 }' "/proc/$FS_PID/status")")
    held+=("$(awk '/^VmRSS/ { printf "%.1f", $2 / 1024 }' "/proc/$FS_PID/status")")
    kill -TERM "$FS_PID"
    wait "$FS_PID"
    FS_PID=
  done
  echo "| $size | $(printf '%s\n' "${open[@]}" | stats) | $(printf '%s\n' "${rss[@]}" | stats) | $(printf '%s\n' "${held[@]}" | stats) | $(printf '%s\n' "${secs[@]}" | stats) |"
done
rm -f "$MNT.log"

#!/usr/bin/env bash
# benches/fuse-compare.sh: `crfs mount` against squashfuse_ll, ratarmount and the extracted tree
# on local disk, on the same files.
#
# usage: benches/fuse-compare.sh [-n N] [--work DIR] [--quick] [--out FILE] [--mnt DIR]
#                                [--debug] [--ratarmount PATH] [--no-ratarmount]
#
#   -n N          runs per measurement (default 3; 1 with --quick); tables show median [min-max]
#   --work DIR    corpus cache (default /var/tmp/crfs-bench, shared with compare.sh)
#   --quick       smoke run: builds a small synthetic corpus (`interop mkcorpus`, 2,000 files,
#                 30 MB) in a fresh temporary directory (or --work), checks every tool's output,
#                 and writes its report there, never into benches/results
#   --out FILE    the markdown report (default benches/results/fuse.md); a .tsv of the same
#                 numbers is written beside it (what crfs-bench-chart and the README read)
#   --mnt DIR     the mount point (default WORK/mnt-fuse)
#   --debug       use the dev-profile binaries (what the tests already built) instead of
#                 building release ones: for --quick in CI, where timings do not matter
#   --ratarmount PATH   the ratarmount to run (default: on PATH, else WORK/ratarmount-venv,
#                 created with `python3 -m venv` + `pip install -r benches/ratarmount-requirements.txt`,
#                 ratarmount 1.3.0 and its dependencies pinned, when missing)
#   --no-ratarmount     leave ratarmount out
#
# Needs root: measurements start from a cold page cache (drop_caches) and a fresh mount. The same
# files are served by: crfs mounting the eStargz blob (the reference's writer: gzip level 9,
# 4 MiB chunks), squashfuse_ll mounting a gzip squashfs of the extracted tree (mksquashfs
# -comp gzip, 128 KiB blocks), ratarmount mounting the tar compressed with `gzip -6` (its
# index is built once, before the runs, and reused by every later mount, as ratarmount does by
# default), and the extracted tree itself. For each system and operation (`find`, `ls -lR`,
# reading every file with `tar -cf - . | cat`, and random 4 KiB reads in the files of 1 MiB
# or more) the script drops the page cache, mounts, times the operation cold, then again warm
# on the same mount, records the mount time and the filesystem process's peak RSS (VmHWM), and
# unmounts. Before measuring it checks that every system serves the same tree (names, types,
# sizes, modes, link targets and a sha256 of every file) and every random-read run returns the
# same bytes as the local tree; any difference or tool failure stops the script with an error.
set -euo pipefail

# shellcheck source=benches/harness.sh
source "$(dirname "${BASH_SOURCE[0]}")/harness.sh"
RATARMOUNT=
WITH_RATARMOUNT=1
script_option() {
  case "$1" in
    --debug) HARNESS_PROFILE=debug; return 0 ;;
    --ratarmount) RATARMOUNT=${2:?--ratarmount needs a path}; return 2 ;;
    --no-ratarmount) WITH_RATARMOUNT=0; return 0 ;;
    *) return 1 ;;
  esac
}
script_defaults() {
  [ $QUICK = 1 ] || return 0
  N=${N:-1}
  [ -n "$WORK" ] || WORK=$(mktemp -d /tmp/crfs-fuse-quick.XXXXXX)
  [ -n "$OUT" ] || OUT=$WORK/fuse-quick.md
}
harness_init fuse "$@"
mkdir -p "$WORK/bin" "$(dirname "$OUT")"
WORK=$(cd "$WORK" && pwd)

for tool in squashfuse_ll mksquashfs; do
  command -v $tool >/dev/null || { log "installing squashfuse squashfs-tools"; apt-get install -y -q squashfuse squashfs-tools >/dev/null; break; }
done
[ -x /usr/bin/time ] || die "needs GNU time at /usr/bin/time (apt-get install time)"
SYSTEMS="crfs squashfuse_ll local"
if [ $WITH_RATARMOUNT = 1 ]; then
  if [ -z "$RATARMOUNT" ]; then
    RATARMOUNT=$(command -v ratarmount || true)
    [ -n "$RATARMOUNT" ] || RATARMOUNT=$WORK/ratarmount-venv/bin/ratarmount
  fi
  if [ ! -x "$RATARMOUNT" ]; then
    log "installing ratarmount from PyPI into $WORK/ratarmount-venv"
    python3 -m venv "$WORK/ratarmount-venv" &&
      "$WORK/ratarmount-venv/bin/pip" install -q -r "$ROOT/benches/ratarmount-requirements.txt" >&2 ||
      die "could not install ratarmount (use --ratarmount PATH or --no-ratarmount)"
    RATARMOUNT=$WORK/ratarmount-venv/bin/ratarmount
  fi
  SYSTEMS="crfs squashfuse_ll ratarmount local"
fi

# --- binaries ------------------------------------------------------------------------------------
harness_build_crfs crfs-benches
PROFILE=${HARNESS_PROFILE:-release}
RANDREAD=$TARGET/$PROFILE/crfs-bench-randread
[ -x "$RANDREAD" ] || die "$RANDREAD missing after build"

# --- corpus --------------------------------------------------------------------------------------
if [ $QUICK = 1 ]; then
  NAME=synthetic-2000
  TAR=$WORK/$NAME.tar
  BLOB=$WORK/$NAME.esgz
  if [ ! -s "$BLOB" ]; then
    log "go build testdata/interop"
    (cd "$ROOT/testdata/interop" &&
      GO111MODULE=off GOFLAGS='' GOPATH="$WORK/gopath:/usr/share/gocode" go build -o "$WORK/bin/interop" .)
    log "interop mkcorpus + interop build (reference writer)"
    "$WORK/bin/interop" mkcorpus -files 2000 -bytes 30000000 -out "$TAR"
    "$WORK/bin/interop" build -in "$TAR" -out "$BLOB" >/dev/null
  fi
else
  harness_corpus
fi
[ -f "$BLOB" ] && [ -f "$TAR" ] || die "corpus missing: $TAR / $BLOB"
TREE=$WORK/$NAME.tree
if [ ! -d "$TREE" ]; then
  log "extracting $TAR"
  rm -rf "$TREE.tmp"
  mkdir -p "$TREE.tmp" && tar --xattrs --xattrs-include='*' -xpf "$TAR" -C "$TREE.tmp" && mv "$TREE.tmp" "$TREE"
fi
SQFS=$WORK/$NAME.sqfs
if [ ! -f "$SQFS" ]; then
  log "mksquashfs -comp gzip"
  mksquashfs "$TREE" "$SQFS.tmp" -comp gzip -noappend -no-progress -quiet && mv "$SQFS.tmp" "$SQFS"
fi
TGZ=$WORK/$NAME.tar.gz
if [ $WITH_RATARMOUNT = 1 ] && [ ! -f "$TGZ" ]; then
  log "gzip -6 $TAR"
  gzip -6 -c "$TAR" >"$TGZ.tmp" && mv "$TGZ.tmp" "$TGZ"
fi
# The random-read list: every file of 1 MiB or more, by path, from the local tree.
BIGLIST=$WORK/$NAME.big-files.txt
(cd "$TREE" && find . -type f -size +1M -printf '%s\t%P\n' | LC_ALL=C sort -t "$(printf '\t')" -k2) >"$BIGLIST"
[ -s "$BIGLIST" ] || die "no file of 1 MiB or more in $TREE"
RAND_READS=2000
[ $QUICK = 1 ] && RAND_READS=500

# --- mounting ------------------------------------------------------------------------------------
mkdir -p "$MNT"
mountpoint -q "$MNT" && die "$MNT is a mount point already (another run?): pass --mnt DIR"
RUNLOG=$WORK/fuse-runs
mkdir -p "$RUNLOG"
FS_PID=
cleanup() {
  mountpoint -q "$MNT" && { fusermount3 -u "$MNT" 2>/dev/null || umount -l "$MNT"; }
  [ -n "$FS_PID" ] && kill "$FS_PID" 2>/dev/null || true
}
trap cleanup EXIT

# mount_system SYSTEM: makes the corpus available, sets DIR to the directory to measure,
# FS_PID to the filesystem process and MOUNT_SECS to how long the mount took to appear.
# (Not run in a command substitution: the mount process must not hold its pipe.)
mount_system() {
  local start=$EPOCHREALTIME
  FS_PID=
  case "$1" in
    crfs) "$CRFS" mount --threads 4 "$BLOB" "$MNT" >/dev/null 2>>"$RUNLOG/crfs.log" & FS_PID=$! ;;
    squashfuse_ll) squashfuse_ll -f "$SQFS" "$MNT" >/dev/null 2>>"$RUNLOG/squashfuse_ll.log" & FS_PID=$! ;;
    ratarmount) "$RATARMOUNT" -f "$TGZ" "$MNT" >/dev/null 2>>"$RUNLOG/ratarmount.log" & FS_PID=$! ;;
    local) DIR=$TREE; MOUNT_SECS=0; return ;;
  esac
  for _ in $(seq 6000); do
    mountpoint -q "$MNT" && break
    kill -0 "$FS_PID" 2>/dev/null || die "$1 exited before mounting (see $RUNLOG/$1.log)"
    sleep 0.01
  done
  mountpoint -q "$MNT" || die "$1 did not mount within a minute (see $RUNLOG/$1.log)"
  MOUNT_SECS=$(echo "$EPOCHREALTIME - $start" | bc -l)
  DIR=$MNT
}
# Peak RSS of the filesystem process so far, KiB (0 for the local tree).
peak_rss() { if [ -n "$FS_PID" ]; then awk '/^VmHWM/ { print $2 }' "/proc/$FS_PID/status"; else echo 0; fi; }
unmount_system() {
  case "$1" in
    crfs) kill -TERM "$FS_PID" ;;
    squashfuse_ll|ratarmount)
      # A process that just closed its last file can keep the mount busy for a moment
      # (ratarmount's own threads too): retry for up to 10 s before giving up.
      for _ in $(seq 50); do fusermount3 -u "$MNT" 2>/dev/null && break; sleep 0.2; done
      mountpoint -q "$MNT" && { fuser -vm "$MNT" >&2 || true; die "$1: $MNT stays busy, cannot unmount"; }
      ;;
    local) return ;;
  esac
  wait "$FS_PID" || die "$1 exited with an error on unmount (see $RUNLOG/$1.log)"
  FS_PID=
  mountpoint -q "$MNT" && die "$MNT still mounted after stopping $1"
  return 0
}

# The tree as a system serves it: one line per name (type, mode, size of files, link target)
# and the sha256 of every regular file. Hardlinked names are listed, and hashed, each. The root
# itself is left out: a tar without a "./" entry says nothing about it (ratarmount shows 0777).
tree_digest() {
  (cd "$1" &&
    find . -mindepth 1 \( -type f -printf 'f %m %s %p\n' \) -o \( -type l -printf 'l %p -> %l\n' \) -o -printf '%y %m %p\n' | LC_ALL=C sort &&
    find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum)
}

op() {
  case "$1" in
    find) find "$2" >/dev/null ;;
    ls-lR) ls -lR "$2" >/dev/null ;;
    # One process reading every file in tree order (GNU tar skips reading when writing to
    # /dev/null itself, hence the pipe); no per-file process start-up in the measurement.
    read-all) tar -C "$2" -cf - . | cat >/dev/null ;;
    rand4k)
      local got
      got=$("$RANDREAD" --reads "$RAND_READS" --size 4096 "$BIGLIST" "$2") || die "crfs-bench-randread failed on $2"
      [ "$got" = "$RAND_WANT" ] || die "random reads on $2 returned '$got', the local tree '$RAND_WANT'"
      ;;
  esac
}

# --- checks: every system serves the same bytes ---------------------------------------------------
log "checking that every system serves the same tree"
WANT_DIGEST=$RUNLOG/local.digest
tree_digest "$TREE" >"$WANT_DIGEST"
RAND_WANT=$("$RANDREAD" --reads "$RAND_READS" --size 4096 "$BIGLIST" "$TREE")
SAMPLES=$RUNLOG/samples.txt
: >"$SAMPLES"
for s in $SYSTEMS; do
  [ "$s" = local ] && continue
  if [ "$s" = ratarmount ]; then
    # First mount of this archive: ratarmount builds its index (kept beside the archive).
    rm -f "$TGZ.index.sqlite"
    sync; echo 3 >/proc/sys/vm/drop_caches
  fi
  mount_system "$s"
  [ "$s" = ratarmount ] && echo "mount-first cold ratarmount $MOUNT_SECS" >>"$SAMPLES"
  tree_digest "$DIR" >"$RUNLOG/$s.digest"
  if ! cmp -s "$WANT_DIGEST" "$RUNLOG/$s.digest"; then
    diff "$WANT_DIGEST" "$RUNLOG/$s.digest" | head -20 >&2
    die "$s serves a different tree than the extracted tar (diff above; full listings in $RUNLOG)"
  fi
  op rand4k "$DIR"
  unmount_system "$s"
  log "$s: same tree ($(wc -l <"$WANT_DIGEST") lines of listing and digests), same random reads"
done

# --- measuring -----------------------------------------------------------------------------------
OPS="find ls-lR read-all rand4k"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
timed() { # OP CACHE SYSTEM: runs OP on DIR, appends the sample
  local start=$EPOCHREALTIME
  op "$1" "$DIR"
  local secs
  secs=$(echo "$EPOCHREALTIME - $start" | bc -l)
  echo "$1 $2 $3 $secs" >>"$SAMPLES"
  log "run $run/$N $1 $2 $3: ${secs}s"
}
for run in $(seq "$N"); do
  # Rotate which system goes first, so none always follows the same neighbour.
  read -r -a order <<<"$SYSTEMS"
  shift_by=$(( (run - 1) % ${#order[@]} ))
  order=("${order[@]:shift_by}" "${order[@]:0:shift_by}")
  for o in $OPS; do
    for s in "${order[@]}"; do
      sync; echo 3 >/proc/sys/vm/drop_caches
      mount_system "$s"
      [ "$s" != local ] && echo "mount cold $s $MOUNT_SECS" >>"$SAMPLES"
      timed "$o" cold "$s"
      timed "$o" warm "$s"
      echo "rss:$o - $s $(peak_rss)" >>"$SAMPLES"
      unmount_system "$s"
    done
  done
done

# --- report --------------------------------------------------------------------------------------
# stats OP CACHE SYSTEM: "median min max n" of the samples, or nothing.
stats() { harness_stats "$SAMPLES" "$1 $2 $3"; }
fmt() { awk -v x="$1" 'BEGIN { if (x < 0.1) printf "%.3f", x; else if (x < 100) printf "%.2f", x; else printf "%.0f", x }'; }
cell() { # OP CACHE SYSTEM [scale]: "median [min–max]"
  local m lo hi n
  read -r m lo hi n <<<"$(stats "$1" "$2" "$3")"
  [ -n "${m:-}" ] || { echo "—"; return; }
  local k=${4:-1}
  echo "$(fmt "$(echo "$m / $k" | bc -l)") [$(fmt "$(echo "$lo / $k" | bc -l)")–$(fmt "$(echo "$hi / $k" | bc -l)")]"
}
median() { stats "$@" | awk '{ print $1 }'; }
ratio() { # A B: A ÷ B
  awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b <= 0) print "—"; else if (a / b < 0.1) printf "%.3f×", a / b; else printf "%.2f×", a / b }'
}
PEERS=${SYSTEMS/crfs /}
declare -A OP_LABEL=([find]="find" [ls-lR]="ls -lR" [read-all]="read every file"
  [rand4k]="$RAND_READS random 4 KiB reads")
op_label() { echo "${OP_LABEL[$1]}"; }

# The machine-readable twin of the tables: what crfs-bench-chart and the README generator read.
{
  printf 'op\tcache\tsystem\tmedian\tmin\tmax\tn\tunit\n'
  awk '{ print $1, $2, $3 }' "$SAMPLES" | sort -u | while read -r o c s; do
    read -r m lo hi n <<<"$(stats "$o" "$c" "$s")"
    unit=s; case "$o" in rss:*) unit=KiB ;; esac
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$o" "$c" "$s" "$m" "$lo" "$hi" "$n" "$unit"
  done
} >"$TSV.tmp"

{
  echo "# crfs mount vs $(echo "$PEERS" | sed 's/ local$//; s/ /, /g') and local disk"
  echo
  echo "Written by \`benches/fuse-compare.sh -n $N$( [ $QUICK = 1 ] && echo " --quick")\` on $(date -u '+%Y-%m-%d %H:%M') UTC, corpus \`$NAME\`"
  echo "($(find "$TREE" | wc -l) entries, $(du -sm "$TREE" | cut -f1) MB extracted; eStargz blob $(du -m "$BLOB" | cut -f1) MB,"
  echo "squashfs $(du -m "$SQFS" | cut -f1) MB$( [ $WITH_RATARMOUNT = 1 ] && echo ", tar.gz $(du -m "$TGZ" | cut -f1) MB + ratarmount index $(du -m "$TGZ.index.sqlite" | cut -f1) MB"))."
  echo "Median [min–max] of $N runs, seconds. *cold*: page cache dropped, fresh mount; *warm*: the same operation again"
  echo "on the same mount right after. Random reads: $RAND_READS reads of 4 KiB at aligned offsets in the $(wc -l <"$BIGLIST") files of 1 MiB or more,"
  echo "the same sequence on every system (checked: same bytes)."
  echo
  printf '| operation | cache |'
  for s in $SYSTEMS; do printf ' %s |' "$s"; done
  for s in $PEERS; do printf ' crfs ÷ %s |' "$s"; done
  echo
  printf '|---|---|'
  for _ in $SYSTEMS $PEERS; do printf -- '---|'; done
  echo
  for o in $OPS; do
    for c in cold warm; do
      printf '| %s | %s |' "$(op_label "$o")" "$c"
      for s in $SYSTEMS; do printf ' %s |' "$(cell "$o" "$c" "$s")"; done
      cm=$(median "$o" "$c" crfs)
      for s in $PEERS; do printf ' %s |' "$(ratio "$cm" "$(median "$o" "$c" "$s")")"; done
      echo
    done
  done
  echo
  echo "Mount time (until the mount point appears; cold page cache), seconds, over all $(( N * 4 )) mounts of each system:"
  echo
  echo "| | $(echo "$SYSTEMS" | sed 's/ local$//; s/ / | /g') |"
  echo "|---|$(for s in $SYSTEMS; do [ "$s" = local ] || printf -- '---|'; done)"
  printf '| mount |'
  for s in $SYSTEMS; do [ "$s" = local ] || printf ' %s |' "$(cell mount cold "$s")"; done
  echo
  if [ $WITH_RATARMOUNT = 1 ]; then
    echo "| first mount (ratarmount builds its index) | — | — | $(cell mount-first cold ratarmount) |"
  fi
  echo
  echo "Peak RSS of the filesystem process (VmHWM at unmount, after the cold and the warm run), MiB:"
  echo
  echo "| after | $(echo "$SYSTEMS" | sed 's/ local$//; s/ / | /g') |"
  echo "|---|$(for s in $SYSTEMS; do [ "$s" = local ] || printf -- '---|'; done)"
  for o in $OPS; do
    printf '| %s |' "$(op_label "$o")"
    for s in $SYSTEMS; do [ "$s" = local ] || printf ' %s |' "$(cell "rss:$o" - "$s" 1024)"; done
    echo
  done
  echo
  echo "## Setup"
  echo
  echo "- crfs: \`crfs mount --threads 4 BLOB MNT\` ($PROFILE build, commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)); squashfuse_ll $(dpkg-query -W -f '${Version}' squashfuse 2>/dev/null || echo '?') \`-f\`$( [ $WITH_RATARMOUNT = 1 ] && echo "; ratarmount $("$RATARMOUNT" --version 2>/dev/null | awk 'NR == 1 { print $2 }') \`-f\` (Python $("$(dirname "$RATARMOUNT")/python3" -c 'import sys; print(sys.version.split()[0])' 2>/dev/null || echo '?'))")"
  echo "- machine: $(nproc) CPUs, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo) RAM, Linux $(uname -r); shared and noisy (load average before: $LOAD_BEFORE; after: $(cut -d' ' -f1-3 /proc/loadavg))"
  echo "- \`$(basename "$TSV")\` beside this file has the medians; \`$(basename "${OUT%.md}")-samples.txt\` every sample (op, cache, system, seconds or KiB)"
} >"$OUT.tmp"
mv "$TSV.tmp" "$TSV"
mv "$OUT.tmp" "$OUT"
cp "$SAMPLES" "${OUT%.md}-samples.txt"
log "wrote $OUT and $TSV"
cat "$OUT"

#!/usr/bin/env bash
# benches/nfs-compare.sh: `crfs nfs` read through the Linux kernel's NFS client (in a VM) and
# through libnfs, against `crfs mount` read through FUSE.
#
# usage: benches/nfs-compare.sh [-n N] [--work DIR] [--quick] [--out FILE] [--mnt DIR]
#                               [--no-kernel]
#
#   -n N        runs per measurement (default 3); the table shows median [min-max]
#   --work DIR  corpus cache (default /var/tmp/crfs-bench, shared with compare.sh)
#   --quick     the synthetic corpus compare.sh --quick builds (5,000 files), for a smoke run
#   --out FILE  where the markdown goes (default benches/results/nfs.md, nfs-quick.md with
#               --quick); the TSV crfs-bench-chart reads goes beside it
#   --mnt DIR   the FUSE mount point (default WORK/mnt-nfs)
#   --no-kernel leave out the kernel client
#
# Needs root (drop_caches, FUSE) and libnfs-dev (the clients are compiled here). Every
# measurement reads every regular file of the corpus with a fresh crfs process and a cold page
# cache.
#
# The kernel client: Debian's kernel under qemu (testdata/kernel-nfs/build-guest.sh builds it;
# qemu-system-x86 and ports 111 and 2049 free on this host), driven by
# crfs-bench-kernel-nfs (see its header). The guest may run under TCG, so what is compared is
# crfs's own CPU time (user + system) for one cold pass, `read-all` (`find . -type f -exec cat
# {} +`) and `ls -lR`, served to the kernel client with the plain mount options
# (`-o nolock`), with `nolock,nocto,actimeo=86400`, and through FUSE on this host.
#
# This machine's kernel has no NFS client, so libnfs stands in for a client on this host too,
# in two ways:
#   nfs-pipelined  benches/nfs/nfs-readall-pipelined.c: handles from READDIRPLUS, ACCESS and
#                  1 MiB READs, 16 requests in flight (what the Linux client sends; see its header)
#   nfs-sync       benches/nfs/nfs-readall.c: libnfs's synchronous API, one request in flight,
#                  every path looked up from the root (a worst case, for information)
# and FUSE two ways:
#   fuse-tar       one reader: `tar -cf - . | cat` over the mount
#   fuse-parallel  16 readers: `find -type f | xargs -P 16 cat` over the mount
# Bytes read are checked to be the same for every client but fuse-tar (whose output is a tar).
set -euo pipefail

# shellcheck source=benches/harness.sh
source "$(dirname "${BASH_SOURCE[0]}")/harness.sh"
WITH_KERNEL=1
script_option() {
  case "$1" in
    --no-kernel) WITH_KERNEL=0; return 0 ;;
    *) return 1 ;;
  esac
}
harness_init nfs "$@"
[ -f /usr/include/nfsc/libnfs.h ] || { log "installing libnfs-dev"; apt-get install -y -q libnfs-dev >/dev/null; }
if [ $WITH_KERNEL = 1 ] && ! command -v qemu-system-x86_64 >/dev/null; then
  log "installing qemu-system-x86"; apt-get install -y -q qemu-system-x86 >/dev/null
fi
harness_corpus
harness_build_crfs crfs-benches
BIN=$WORK/bin
mkdir -p "$BIN"
for c in nfs-readall nfs-readall-pipelined; do
  cc -O2 -Wall -o "$BIN/$c" "$ROOT/benches/nfs/$c.c" -lnfs
done

mkdir -p "$MNT"
mountpoint -q "$MNT" && die "$MNT is a mount point already (another run?): pass --mnt DIR"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
URL="nfs://127.0.0.1/?nfsport=$PORT&mountport=$PORT&version=3"
RUN=$(mktemp -d "$WORK/nfs-run.XXXXXX")
SERVER_PID=
cleanup() {
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null || true
  mountpoint -q "$MNT" && umount -l "$MNT" || true
  rm -rf "$RUN"
}
trap cleanup EXIT

start_server() {
  case "$1" in
    fuse-*)
      "$CRFS" mount "$BLOB" "$MNT" >/dev/null 2>>"$RUN/crfs.log" &
      SERVER_PID=$!
      for _ in $(seq 200); do mountpoint -q "$MNT" && break; sleep 0.05; done
      mountpoint -q "$MNT" || die "crfs mount did not come up (see $RUN/crfs.log)" ;;
    nfs-*)
      "$CRFS" nfs --listen "127.0.0.1:$PORT" "$BLOB" >/dev/null 2>>"$RUN/crfs.log" &
      SERVER_PID=$!
      for _ in $(seq 200); do nfs-ls "$URL" >/dev/null 2>&1 && break; sleep 0.05; done
      nfs-ls "$URL" >/dev/null 2>&1 || die "crfs nfs did not come up (see $RUN/crfs.log)" ;;
  esac
}
stop_server() {
  kill -TERM "$SERVER_PID"
  wait "$SERVER_PID" || true
  SERVER_PID=
}

# read CLIENT: reads every file; prints the bytes of file data read (or "-" for fuse-tar).
read_all() {
  case "$1" in
    fuse-tar) tar -C "$MNT" -cf - . | cat >/dev/null; echo - ;;
    fuse-parallel) (cd "$MNT" && find . -type f -print0 | xargs -0 -P 16 -n 64 cat | wc -c) ;;
    nfs-pipelined) "$BIN/nfs-readall-pipelined" -j 16 "$URL" | sed -n 's/^files [0-9]* bytes \([0-9]*\).*/\1/p' ;;
    nfs-sync) "$BIN/nfs-readall" "$URL" | sed -n 's/^files [0-9]* bytes \([0-9]*\).*/\1/p' ;;
  esac
}

SAMPLES=$RUN/samples
: >"$SAMPLES"
CLIENTS="fuse-tar fuse-parallel nfs-pipelined nfs-sync"
EXPECTED=
for run in $(seq "$N"); do
  # Rotate which client goes first, so drift in the machine's load spreads over all of them.
  read -ra all <<<"$CLIENTS"
  k=$(( (run - 1) % ${#all[@]} ))
  order="${all[*]:k} ${all[*]:0:k}"
  for c in $order; do
    start_server "$c"
    sync; echo 3 >/proc/sys/vm/drop_caches
    start=$EPOCHREALTIME
    got=$(read_all "$c")
    end=$EPOCHREALTIME
    stop_server
    [ -n "$got" ] || die "$c read nothing"
    if [ "$got" != - ]; then
      [ -z "$EXPECTED" ] && EXPECTED=$got
      [ "$got" = "$EXPECTED" ] || die "$c read $got bytes, others $EXPECTED"
    fi
    secs=$(echo "$end - $start" | bc -l)
    echo "$c $secs" >>"$SAMPLES"
    log "run $run/$N $c: ${secs}s"
  done
done

# --- the kernel's own client, in a VM: crfs's CPU time against FUSE ------------------------------
KSAMPLES=$RUN/kernel-samples
: >"$KSAMPLES"
if [ $WITH_KERNEL = 1 ]; then
  GUEST=$TARGET/kernel-nfs-guest
  log "building the kernel client's guest in $GUEST"
  bash "$ROOT/testdata/kernel-nfs/build-guest.sh" "$GUEST" || die "build-guest.sh failed"
  log "kernel client: $N runs of fuse, nfs and nfs-cached, read-all and ls-lR (the VM may be slow)"
  "$TARGET/${HARNESS_PROFILE:-release}/crfs-bench-kernel-nfs" --crfs "$CRFS" --guest "$GUEST" \
    --scratch "$RUN/kernel" --runs "$N" "$BLOB" | tee "$KSAMPLES" >&2 || die "crfs-bench-kernel-nfs failed (logs in $RUN/kernel)"
fi

cat "$SAMPLES" "$KSAMPLES" >"${OUT%.md}-samples.txt"
stats() { harness_stats "$SAMPLES" "$1"; }
kstats() { harness_stats "$KSAMPLES" "$1"; }
harness_pairs_header "$TSV.tmp"
harness_pair "$TSV.tmp" wall nfs-pipelined "$(stats nfs-pipelined)" fuse-tar "$(stats fuse-tar)" 2 "pipelined vs 1 reader" \
  "read every file: NFS (libnfs, 16 requests in flight) vs FUSE, one reader (tar)"
harness_pair "$TSV.tmp" wall nfs-pipelined "$(stats nfs-pipelined)" fuse-parallel "$(stats fuse-parallel)" 2 \
  "pipelined vs 16 readers" "read every file: NFS (libnfs, 16 requests in flight) vs FUSE, 16 readers (xargs -P 16 cat)"
harness_pair "$TSV.tmp" wall nfs-sync "$(stats nfs-sync)" fuse-tar "$(stats fuse-tar)" - "sync vs 1 reader" \
  "read every file: NFS (libnfs, one request in flight, every path looked up) vs FUSE, one reader"
if [ -s "$KSAMPLES" ]; then
  for op in read-all ls-lR; do
    if [ $op = read-all ]; then max=1.3; what="read every file"; else max=2; what="ls -lR"; fi
    harness_pair "$TSV.tmp" cpu "kernel-nfs $op" "$(kstats "nfs $op")" "fuse $op" "$(kstats "fuse $op")" $max \
      "kernel, $op" "$what: crfs CPU serving the kernel NFS client (-o nolock) vs FUSE"
    harness_pair "$TSV.tmp" cpu "kernel-nfs-cached $op" "$(kstats "nfs-cached $op")" "fuse $op" "$(kstats "fuse $op")" - \
      "kernel nocto, $op" "$what: crfs CPU serving the kernel NFS client (nocto,actimeo=86400) vs FUSE"
  done
fi
mv "$TSV.tmp" "$TSV"
{
  echo "# crfs over NFS (the kernel client in a VM; libnfs) vs crfs over FUSE"
  echo
  echo "Written by \`benches/nfs-compare.sh -n $N\` on $(date -u '+%Y-%m-%d %H:%M') UTC, corpus \`$NAME\`"
  echo "(blob $(du -m "$BLOB" | cut -f1) MB; $EXPECTED bytes of file data). A fresh crfs process and a cold page cache"
  echo "for every measurement; median [min–max] of $N runs, seconds. Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)."
  echo
  read -r tm _ _ _ <<<"$(stats fuse-tar)"
  read -r pm _ _ _ <<<"$(stats fuse-parallel)"
  echo "| client | time | ÷ fuse-tar | ÷ fuse-parallel | target (NFS ≤ 2× FUSE) |"
  echo "|---|---|---|---|---|"
  for c in $CLIENTS; do
    read -r m l h _ <<<"$(stats "$c")"
    r1=$(echo "$m / $tm" | bc -l); r2=$(echo "$m / $pm" | bc -l)
    case "$c" in
      nfs-pipelined) met=$(echo "$r1 <= 2 && $r2 <= 2" | bc -l | sed 's/1/yes/;s/0/**NO**/') ;;
      nfs-sync) met="(information: one request in flight)" ;;
      *) met="—" ;;
    esac
    printf '| %s | %.2f [%.2f–%.2f] | %.2f× | %.2f× | %s |\n' "$c" "$m" "$l" "$h" "$r1" "$r2" "$met"
  done
  echo
  echo "Clients: fuse-tar = \`tar -C MNT -cf - . | cat\`; fuse-parallel = \`find . -type f -print0 | xargs -0 -P 16 -n 64 cat\`;"
  echo "nfs-pipelined = \`benches/nfs/nfs-readall-pipelined -j 16 URL\`; nfs-sync = \`benches/nfs/nfs-readall URL\`."
  if [ -s "$KSAMPLES" ]; then
    echo
    echo "## The Linux kernel's NFS client (in a VM) vs FUSE: crfs's CPU time"
    echo
    echo "Debian's kernel ($(basename "$(ls "$GUEST"/debs/linux-image-*.deb 2>/dev/null | tail -n 1)" .deb)) under qemu,"
    echo "one vCPU, reaching \`crfs nfs\` on this host as 10.0.2.2 (standard ports); FUSE on this host. A fresh"
    echo "crfs process and cold caches per measurement (host page cache dropped; in the guest its caches"
    echo "dropped and a new mount). CPU = crfs's user + system seconds from its start to the end of the"
    echo "operation; wall seconds of the guest measure the emulator as much as crfs. Median [min–max] of $N runs."
    echo
    echo "| operation | client | crfs CPU | ÷ FUSE | target | wall |"
    echo "|---|---|---|---|---|---|"
    for op in read-all ls-lR; do
      read -r fm _ _ _ <<<"$(kstats "fuse $op")"
      for c in fuse nfs nfs-cached; do
        read -r m l h _ <<<"$(kstats "$c $op")"
        read -r wm wl wh _ <<<"$(harness_stats "$KSAMPLES" "$c $op" 4)"
        r=$(echo "$m / $fm" | bc -l)
        case "$c/$op" in
          nfs/read-all) target="≤ 1.3×: $(echo "$r <= 1.3" | bc -l | sed 's/1/yes/;s/0/**NO**/')" ;;
          nfs/ls-lR) target="≤ 2×: $(echo "$r <= 2" | bc -l | sed 's/1/yes/;s/0/**NO**/')" ;;
          *) target="—" ;;
        esac
        printf '| %s | %s | %.2f [%.2f–%.2f] | %.2f× | %s | %.1f [%.1f–%.1f] |\n' "$op" "$c" "$m" "$l" "$h" "$r" "$target" "$wm" "$wl" "$wh"
      done
    done
    echo
    echo "Clients: fuse = \`crfs mount\` on this host; nfs = \`mount -t nfs -o nolock 10.0.2.2:/ MNT\` in the guest;"
    echo "nfs-cached = the same with \`-o nolock,nocto,actimeo=86400\`. read-all = \`find . -type f -exec cat {} +\`;"
    echo "ls-lR = \`ls -lR\` (GNU tools on both sides; bytes and lines checked equal)."
  fi
  echo
  echo "\`$(basename "$TSV")\` beside this file has the medians; \`$(basename "${OUT%.md}")-samples.txt\` every sample (client, seconds; kernel-client lines: client, operation, CPU seconds, wall seconds, check)."
} >"$OUT"
cat "$OUT"

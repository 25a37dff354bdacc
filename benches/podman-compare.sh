#!/usr/bin/env bash
# benches/podman-compare.sh: `podman run` of an image through `crfs store` (podman's additional
# layer store: layers pulled lazily) against `podman run` of the same image as plain gzip
# (podman pulls every layer whole first), from nothing to the output of
# `python3 -c 'print(1)'`.
#
# usage: benches/podman-compare.sh [-n N] [--work DIR] [--quick] [--out FILE]
#
#   -n N        runs per measurement (default 3); the table shows median [min-max]
#   --work DIR  corpus cache (default /var/tmp/crfs-bench, shared with compare.sh)
#   --quick     the synthetic corpus compare.sh --quick builds (5,000 files), for a smoke run
#   --out FILE  where the markdown goes (default benches/results/podman.md, podman-quick.md
#               with --quick); the TSV crfs-bench-chart reads goes beside it
#
# Needs root, podman and runc, docker-registry and skopeo (Debian packages). The image has two
# layers: a Python runtime taken from this host (python3.11, the libraries it links and its
# standard library) and the corpus (for Python, an installed CPython tree: about 200 MB as
# gzip). It is pushed to a docker-registry on 127.0.0.1 as plain gzip (`plain`), then converted
# by `crfs image convert` (`lazy`). Each run starts from an empty podman storage and a cold page
# cache; the lazy side also from a fresh `crfs store` with an empty disk cache. Measured: wall
# time, CPU time (user + sys of the processes the script waits for, the registry and the
# store) and the bytes the registry sent (its access log).
set -euo pipefail

# shellcheck source=benches/harness.sh
source "$(dirname "${BASH_SOURCE[0]}")/harness.sh"
harness_init podman "$@"
for tool in podman runc docker-registry skopeo python3; do
  command -v "$tool" >/dev/null || die "needs $tool (apt-get install podman runc docker-registry skopeo)"
done
harness_corpus
harness_corpus_gzip
harness_build_crfs
# Debian's own interpreter (a python3 earlier on PATH may be a pyenv shim or a venv).
PYTHON=$(readlink -f /usr/bin/python3)
[ -x "$PYTHON" ] || die "needs /usr/bin/python3 (apt-get install python3)"

RUN=$(mktemp -d "$WORK/podman-run.XXXXXX")
# conmon's sockets live under podman's run root, and a unix socket path has at most 107 bytes.
PODMAN_RUN=$(mktemp -d /tmp/crfs-podman.XXXXXX)
STORE=$RUN/store
mkdir -p "$STORE"
REGISTRY_PID=
STORE_PID=
podman_plain() { CONTAINERS_STORAGE_CONF=$RUN/plain.conf CONTAINERS_REGISTRIES_CONF=$RUN/registries.conf \
  podman --runtime runc --cgroup-manager cgroupfs --events-backend file "$@"; }
podman_lazy() { CONTAINERS_STORAGE_CONF=$RUN/lazy.conf CONTAINERS_REGISTRIES_CONF=$RUN/registries.conf \
  podman --runtime runc --cgroup-manager cgroupfs --events-backend file "$@"; }
cleanup() {
  podman_plain rmi -a -f >/dev/null 2>&1 || true
  podman_lazy rmi -a -f >/dev/null 2>&1 || true
  [ -n "$STORE_PID" ] && kill "$STORE_PID" 2>/dev/null || true
  mountpoint -q "$STORE" && umount -l "$STORE" || true
  [ -n "$REGISTRY_PID" ] && kill "$REGISTRY_PID" 2>/dev/null || true
  rm -rf "$RUN" "$PODMAN_RUN"
}
trap cleanup EXIT

# The runtime layer: python3, the libraries it links (and theirs) and its standard library,
# with Debian's merged-/usr symlinks.
log "building the Python runtime layer from $PYTHON"
mkdir -p "$RUN/base/usr/bin" "$RUN/base/tmp"
ln -s usr/bin "$RUN/base/bin"; ln -s usr/lib "$RUN/base/lib"; ln -s usr/lib64 "$RUN/base/lib64"
copy_in() { # PATH: the file into the layer at its real path, and the name asked for as the
  # symlink it is (libz.so.1 -> libz.so.1.2.13, /lib64/ld-linux-x86-64.so.2 -> ../lib/...)
  local dir real
  dir=$(readlink -f "$(dirname "$1")")
  real=$(readlink -f "$1")
  mkdir -p "$RUN/base$(dirname "$real")" "$RUN/base$dir"
  cp -a "$real" "$RUN/base$real"
  [ "$dir/$(basename "$1")" = "$real" ] || cp -a "$dir/$(basename "$1")" "$RUN/base$dir/"
}
copy_in "$PYTHON"
for lib in $(ldd "$PYTHON" | awk '$2 == "=>" {print $3} $1 ~ /^\// {print $1}'); do copy_in "$lib"; done
[ -e "$RUN/base/lib64/ld-linux-x86-64.so.2" ] || die "no loader in the base layer"
ln -sf "$(basename "$PYTHON")" "$RUN/base/usr/bin/python3"
STDLIB=$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_paths()["stdlib"])')
tar -C / --exclude='__pycache__' --exclude="${STDLIB#/}/test" -cf - "${STDLIB#/}" | tar -C "$RUN/base" -xf -
tar -C "$RUN/base" --numeric-owner -cf "$RUN/base.tar" .
gzip -6 -c "$RUN/base.tar" >"$RUN/base.tar.gz"
log "runtime layer: $(du -m "$RUN/base.tar" | cut -f1) MB tar, $(du -m "$RUN/base.tar.gz" | cut -f1) MB gzip"

log "building the OCI layout"
python3 - "$ROOT/benches" "$RUN/layout" "$RUN/base.tar" "$RUN/base.tar.gz" "$TAR" "$TGZ" <<'EOF'
import sys
sys.path.insert(0, sys.argv[1])
from oci_layout import GZIP_LAYER, Layout, sha_file
layout_dir, base_tar, base_tgz, tar, tgz = sys.argv[2:]
layout = Layout(layout_dir)
config = layout.config(["sha256:" + sha_file(base_tar), "sha256:" + sha_file(tar)], {"Env": ["PATH=/usr/bin"]})
layers = []
for path in [base_tgz, tgz]:
    digest, size = layout.add_file(path)
    layers.append({"mediaType": GZIP_LAYER, "digest": digest, "size": size})
layout.image("plain", config, layers)
layout.write()
EOF

harness_registry "$RUN"
REF=127.0.0.1:$PORT/bench/$NAME
log "skopeo copy plain"
skopeo copy -q --dest-tls-verify=false "oci:$RUN/layout:plain" "docker://$REF:plain"
log "crfs image convert $REF:plain $REF:lazy"
"$CRFS" image convert "$REF:plain" "$REF:lazy" >"$RUN/convert.log" 2>&1 || die "conversion failed: $(cat "$RUN/convert.log")"
IMAGE_BYTES=$(skopeo inspect --tls-verify=false --raw "docker://$REF:plain" | python3 -c 'import json,sys; print(sum(l["size"] for l in json.load(sys.stdin)["layers"]))')

printf '[[registry]]\nlocation = "127.0.0.1:%s"\ninsecure = true\n' "$PORT" >"$RUN/registries.conf"
for side in plain lazy; do
  {
    printf '[storage]\ndriver = "overlay"\nrunroot = "%s/%s"\ngraphroot = "%s/graph-%s"\n' "$PODMAN_RUN" "$side" "$RUN" "$side"
    [ "$side" = lazy ] && printf '[storage.options]\nadditionallayerstores = ["%s:ref"]\n' "$STORE"
  } >"$RUN/$side.conf"
done

cpu_now() { # CPU_NOW: what the step waited for, the registry and (while it runs) the store
  if [ -n "$STORE_PID" ]; then harness_cpu_now "$STORE_PID"; else harness_cpu_now; fi
}
sent_after() { # MARK: "bytes requests" the registry sent after line MARK of its access log
  tail -n +"$(($1 + 1))" "$RUN/registry.log" | awk '$6 == "\"GET" && $7 ~ /^\/v2\// {n++; all += $10} END {printf "%d %d", all, n}'
}
start_store() {
  rm -rf "$RUN/cache"
  "$CRFS" store --cache-dir "$RUN/cache" "$STORE" >/dev/null 2>>"$RUN/store.log" &
  STORE_PID=$!
  for _ in $(seq 2000); do mountpoint -q "$STORE" && break; sleep 0.005; done
  mountpoint -q "$STORE" || die "crfs store did not come up (see $RUN/store.log)"
}
stop_store() { kill -TERM "$STORE_PID"; wait "$STORE_PID" || true; STORE_PID=; }
run_plain() { OUTPUT=$(podman_plain run --rm --network=none --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 "$REF:plain" python3 -c 'print(1)'); }
run_lazy() { OUTPUT=$(podman_lazy run --rm --network=none --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 "$REF:lazy" python3 -c 'print(1)'); }

measure() { # NAME FUNCTION: appends "NAME wall-s cpu-s bytes requests" to RUN/samples
  local name=$1 fn=$2
  podman_plain rmi -a -f >/dev/null 2>&1 || true
  podman_lazy rmi -a -f >/dev/null 2>&1 || true
  [ "$name" = lazy ] && start_store
  sync; echo 3 >/proc/sys/vm/drop_caches
  local mark cpu0 start wall
  mark=$(wc -l <"$RUN/registry.log")
  cpu_now; cpu0=$CPU_NOW
  start=$EPOCHREALTIME
  "$fn"
  wall=$(echo "$EPOCHREALTIME - $start" | bc -l)
  cpu_now
  [ "$OUTPUT" = 1 ] || die "$name: the container printed '$OUTPUT', not 1"
  echo "$name $wall $(echo "$CPU_NOW - $cpu0" | bc -l) $(sent_after "$mark")" >>"$RUN/samples"
  log "$name: $(tail -1 "$RUN/samples" | cut -d' ' -f2-)"
  if [ "$name" = lazy ]; then
    grep -q "lazy: TOC checked" "$RUN/store.log" || die "the store served no layer lazily (see $RUN/store.log)"
    podman_lazy rmi -a -f >/dev/null 2>&1 || true
    stop_store
  fi
}

: >"$RUN/samples"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
for run in $(seq "$N"); do
  log "run $run/$N"
  if [ $((run % 2)) = 1 ]; then measure plain run_plain; measure lazy run_lazy
  else measure lazy run_lazy; measure plain run_plain; fi
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
cp "$RUN/samples" "${OUT%.md}-samples.txt"

st() { harness_stats "$RUN/samples" "$1" "$2"; } # KEY FIELD: 2 wall, 3 CPU, 4 bytes, 5 requests
harness_pairs_header "$TSV.tmp"
pair() { harness_pair "$TSV.tmp" "$@"; }
pair wall lazy "$(st lazy 2)" plain "$(st plain 2)" 0.25 "podman run" \
  "from nothing to python3's output in a container: crfs store vs plain pull"
pair cpu lazy "$(st lazy 3)" plain "$(st plain 3)" - "podman run CPU" "the same: CPU time"
pair bytes lazy "$(st lazy 4)" plain "$(st plain 4)" 0.25 "podman run bytes" "bytes the registry sent"
mv "$TSV.tmp" "$TSV"

{
  echo "# podman run through crfs store vs a plain pull"
  echo
  echo "Written by \`benches/podman-compare.sh -n $N\` on $(date -u '+%Y-%m-%d %H:%M') UTC: an image of two layers,"
  echo "a Python runtime from this host ($(du -m "$RUN/base.tar" | cut -f1) MB tar) and the corpus \`$NAME\` ($(du -m "$TAR" | cut -f1) MB tar),"
  echo "$((IMAGE_BYTES / 1000000)) MB as plain gzip, on docker-registry at 127.0.0.1 over plain HTTP; $(podman --version), runc, overlay."
  echo "Each run from an empty podman storage and a cold page cache; the lazy side from a fresh \`crfs store\`"
  echo "with an empty disk cache. Median [min–max] of $N runs. CPU is user + sys of the processes the step"
  echo "waits for, the registry and the store (conmon, which podman detaches, is not counted). Load average before: $LOAD_BEFORE; after: $LOAD_AFTER."
  echo
  harness_table "$TSV"
  echo
  echo "Requests to the registry (median): lazy $(st lazy 5 | cut -d' ' -f1), plain $(st plain 5 | cut -d' ' -f1)."
  echo
  echo "- lazy: \`crfs store --cache-dir EMPTY STORE\`, storage.conf \`additionallayerstores = [\"STORE:ref\"]\`,"
  echo "  then \`podman run --rm --network=none $REF:lazy python3 -c 'print(1)'\`."
  echo "- plain: the same \`podman run\` of \`$REF:plain\` with no layer store (podman pulls both layers whole)."
  echo "- \`$(basename "$TSV")\` beside this file has the medians; \`$(basename "${OUT%.md}")-samples.txt\` every sample"
  echo "  (side, wall s, CPU s, bytes sent, requests)."
} >"$OUT"
cat "$OUT"

#!/usr/bin/env bash
# benches/registry-compare.sh: a lazy `crfs mount` of an image on a loopback registry against
# pulling it (skopeo copy, then tar -x, as a runtime does before it can start anything), and
# against `crfs mount` of the same eStargz blob on local disk.
#
# usage: benches/registry-compare.sh [-n N] [--work DIR] [--quick] [--out FILE] [--mnt DIR]
#
#   -n N        runs per measurement (default 3); the table shows median [min-max]
#   --work DIR  corpus cache (default /var/tmp/crfs-bench, shared with compare.sh)
#   --quick     the synthetic corpus compare.sh --quick builds (5,000 files), for a smoke run
#   --out FILE  where the markdown goes (default benches/results/registry.md, registry-quick.md
#               with --quick); the TSV crfs-bench-chart reads goes beside it
#   --mnt DIR   the mount point (default WORK/mnt-registry)
#   --disk-cache  crfs mounts with a fresh, empty disk cache each time (what a user's first
#               mount has) instead of none; the report says which
#
# Needs root (drop_caches, FUSE), docker-registry and skopeo (Debian packages). The corpus is
# pushed twice to a docker-registry on 127.0.0.1 (plain HTTP): as its eStargz blob (`lazy`,
# with the toc.digest annotation crfs verifies) and as an ordinary tar.gz layer (`plain`).
# Measured, each from a cold page cache, with a fresh crfs and no disk cache:
#   small file  from `crfs mount` of `lazy` to a small file's bytes (the first .py file of 2 to
#               8 KiB in the layer, else any such file); the pull copies `plain` to a local OCI
#               layout, extracts the layer, and reads the same file
#   first file  the same for the largest file
#   every file  from nothing to every file read (`tar -cf - . | cat`): the lazy mount, the pull
#               (then the extracted tree), and `crfs mount` of the blob file on local disk
# with wall time, CPU time (this script's children plus the registry's, user + sys) and the
# bytes the registry sent (its access log; the blob's own bytes counted apart from manifests).
# The small file's bytes are set against the least a lazy reader can fetch: the footer, the
# compressed TOC and the file's one compressed chunk (sizes read from the blob itself).
set -euo pipefail

# shellcheck source=benches/harness.sh
source "$(dirname "${BASH_SOURCE[0]}")/harness.sh"
DISK_CACHE=0
script_option() { # harness_init's hook: 0 = taken alone, 1 = not ours
  case "$1" in
    --disk-cache) DISK_CACHE=1; return 0 ;;
    *) return 1 ;;
  esac
}
harness_init registry "$@"
command -v docker-registry >/dev/null && command -v skopeo >/dev/null || die "needs docker-registry and skopeo (apt-get install docker-registry skopeo)"
harness_corpus
harness_corpus_gzip
harness_build_crfs

# The files read: the largest regular file (for Python, its static library) and a small one.
FIRST=$(tar -tvf "$TAR" | awk '$1 ~ /^-/ {print $3, $6}' | sort -n | tail -1 | cut -d' ' -f2)
[ -n "$FIRST" ] || die "no regular file in $TAR"

RUN=$(mktemp -d "$WORK/registry-run.XXXXXX")
mkdir -p "$MNT"
mountpoint -q "$MNT" && die "$MNT is a mount point already (another run?): pass --mnt DIR"
REGISTRY_PID=
CRFS_PID=
cleanup() {
  [ -n "$CRFS_PID" ] && kill "$CRFS_PID" 2>/dev/null || true
  mountpoint -q "$MNT" && umount -l "$MNT" || true
  [ -n "$REGISTRY_PID" ] && kill "$REGISTRY_PID" 2>/dev/null || true
  rm -rf "$RUN"
}
trap cleanup EXIT

# The small file and the least a lazy reader fetches to read it, from the blob's own TOC:
# footer + compressed TOC + the file's one compressed chunk (up to the next stored offset).
read -r TOC_OFFSET TOC_LEN TOC_DIGEST <<<"$("$CRFS" info "$BLOB" | awk '
  $1 == "toc-offset" {o = $2} $1 == "toc-size" {l = $2} $1 == "toc-digest" {d = $2} END {print o, l, d}')"
BLOB_SIZE=$(stat -c %s "$BLOB")
FOOTER_LEN=$((BLOB_SIZE - TOC_OFFSET - TOC_LEN))
read -r SMALL SMALL_SIZE CHUNK_LEN <<<"$(python3 - "$BLOB" "$TOC_OFFSET" "$TOC_LEN" <<'EOF'
import gzip, io, json, sys, tarfile
blob, toc_offset, toc_len = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
with open(blob, "rb") as f:
    f.seek(toc_offset)
    toc = gzip.decompress(f.read(toc_len))
with tarfile.open(fileobj=io.BytesIO(toc)) as t:
    entries = json.load(t.extractfile("stargz.index.json"))["entries"]
offsets = sorted({e["offset"] for e in entries if e.get("offset", 0) > 0})
def one_chunk(i, e):
    later = entries[i + 1] if i + 1 < len(entries) else {}
    return e["type"] == "reg" and e.get("offset", 0) > 0 and 2048 <= e["size"] <= 8192 and later.get("type") != "chunk"
small = [e for i, e in enumerate(entries) if one_chunk(i, e)]
pick = next((e for e in small if e["name"].endswith(".py")), small[0] if small else None)
if pick is None:
    sys.exit("no regular file of 2 to 8 KiB in one chunk")
after = [o for o in offsets if o > pick["offset"]]
end = after[0] if after else toc_offset
name = pick["name"][2:] if pick["name"].startswith("./") else pick["name"]
print(name, pick["size"], end - pick["offset"])
EOF
)"
[ -n "$CHUNK_LEN" ] || die "no small file found in the TOC of $BLOB"
LEAST=$((FOOTER_LEN + TOC_LEN + CHUNK_LEN))
log "small file $SMALL ($SMALL_SIZE bytes): footer $FOOTER_LEN + TOC $TOC_LEN + chunk $CHUNK_LEN = $LEAST bytes"

# An OCI layout holding both images, made here (the manifests are small JSON).
log "building the OCI layout"
LAZY_LAYER=$(python3 - "$ROOT/benches" "$RUN/layout" "$TAR" "$BLOB" "$TGZ" "$TOC_DIGEST" <<'EOF'
import os, sys
sys.path.insert(0, sys.argv[1])
from oci_layout import GZIP_LAYER, Layout, sha_file
layout_dir, tar, esgz, tgz, toc_digest = sys.argv[2:]
layout = Layout(layout_dir)
config = layout.config(["sha256:" + sha_file(tar)])
for tag, path, annotations in [
    ("lazy", esgz, {"containerd.io/snapshot/stargz/toc.digest": toc_digest,
                    "io.containers.estargz.uncompressed-size": str(os.path.getsize(tar))}),
    ("plain", tgz, {}),
]:
    layer, size = layout.add_file(path)
    if tag == "lazy":
        lazy_layer = layer
    desc = {"mediaType": GZIP_LAYER, "digest": layer, "size": size}
    if annotations:
        desc["annotations"] = annotations
    layout.image(tag, config, [desc])
layout.write()
print(lazy_layer)
EOF
)

harness_registry "$RUN"
REF=127.0.0.1:$PORT/bench/$NAME
for tag in lazy plain; do
  log "skopeo copy $tag"
  skopeo copy -q --dest-tls-verify=false "oci:$RUN/layout:$tag" "docker://$REF:$tag"
done

# What the registry sent after line MARK of its access log (combined format: the path is
# field 7, the body's size field 10): "bytes blob-bytes requests", blob-bytes being those of
# the lazy layer's blob.
sent_after() {
  tail -n +"$(($1 + 1))" "$RUN/registry.log" | awk -v blob="/blobs/$LAZY_LAYER" '
    $6 == "\"GET" && $7 ~ /^\/v2\// {n++; all += $10; if (index($7, blob)) b += $10}
    END {printf "%d %d %d", all, b, n}'
}

if [ "$DISK_CACHE" = 1 ]; then
  CACHE_WORDS="an empty disk cache"; CACHE_FLAG="--cache-dir NEW_EMPTY_DIR"
else
  CACHE_WORDS="no disk cache"; CACHE_FLAG="--no-disk-cache"
fi
MOUNTS=0
start_mount() { # SOURCE: crfs mounts it on MNT (no disk cache, or a new empty one); returns once MNT is a mount point
  local cache=(--no-disk-cache)
  MOUNTS=$((MOUNTS + 1))
  [ "$DISK_CACHE" = 1 ] && cache=(--cache-dir "$RUN/cache-$MOUNTS")
  "$CRFS" mount "${cache[@]}" "$1" "$MNT" >/dev/null 2>>"$RUN/crfs.log" &
  CRFS_PID=$!
  for _ in $(seq 2000); do mountpoint -q "$MNT" && break; sleep 0.005; done
  mountpoint -q "$MNT" || die "crfs mount did not come up (see $RUN/crfs.log)"
}
stop_mount() {
  kill -TERM "$CRFS_PID"; wait "$CRFS_PID" || true; CRFS_PID=
}
pull() {
  rm -rf "$RUN/pulled" "$RUN/tree"
  skopeo copy -q --src-tls-verify=false "docker://$REF:plain" "oci:$RUN/pulled:plain"
  mkdir "$RUN/tree"
  local layer
  layer=$(python3 -c 'import json,sys; m=json.load(open(sys.argv[1]+"/index.json"))["manifests"][0]["digest"].split(":")[1]; print(json.load(open(sys.argv[1]+"/blobs/sha256/"+m))["layers"][0]["digest"].split(":")[1])' "$RUN/pulled")
  tar -xzf "$RUN/pulled/blobs/sha256/$layer" -C "$RUN/tree"
}

# Each measured step sets T_END when its reads are done: unmounting is not timed (its CPU is).
measure() { # NAME FUNCTION: appends "NAME wall-s cpu-s bytes blob-bytes requests" to RUN/samples
  local name=$1; shift
  sync; echo 3 >/proc/sys/vm/drop_caches
  local mark cpu0 start
  mark=$(wc -l <"$RUN/registry.log")
  harness_cpu_now; cpu0=$CPU_NOW
  T_END=
  start=$EPOCHREALTIME
  "$@"
  local wall
  wall=$(echo "${T_END:-$EPOCHREALTIME} - $start" | bc -l)
  harness_cpu_now
  echo "$name $wall $(echo "$CPU_NOW - $cpu0" | bc -l) $(sent_after "$mark")" >>"$RUN/samples"
  log "$name: $(tail -1 "$RUN/samples" | cut -d' ' -f2-)"
}
LAZY=$REF:lazy
crfs_small() { start_mount "$LAZY"; cat "$MNT/$SMALL" >/dev/null; T_END=$EPOCHREALTIME; stop_mount; }
crfs_first() { start_mount "$LAZY"; cat "$MNT/$FIRST" >/dev/null; T_END=$EPOCHREALTIME; stop_mount; }
crfs_all() { start_mount "$LAZY"; tar -C "$MNT" -cf - . | cat >/dev/null; T_END=$EPOCHREALTIME; stop_mount; }
local_all() { start_mount "$BLOB"; tar -C "$MNT" -cf - . | cat >/dev/null; T_END=$EPOCHREALTIME; stop_mount; }
pull_small() { pull; cat "$RUN/tree/$SMALL" >/dev/null; }
pull_first() { pull; cat "$RUN/tree/$FIRST" >/dev/null; }
pull_all() { pull; tar -C "$RUN/tree" -cf - . | cat >/dev/null; }

# Check once that every way gives the same bytes for the two files.
for f in "$FIRST" "$SMALL"; do
  start_mount "$LAZY"; want=$(sha256sum <"$MNT/$f"); stop_mount
  start_mount "$BLOB"; local_got=$(sha256sum <"$MNT/$f"); stop_mount
  pull; got=$(sha256sum <"$RUN/tree/$f")
  [ "$want" = "$got" ] && [ "$want" = "$local_got" ] || die "$f differs between the lazy mount, the local mount and the pulled tree"
done

: >"$RUN/samples"
STEPS="small.crfs:crfs_small small.pull:pull_small first.crfs:crfs_first first.pull:pull_first all.crfs:crfs_all all.pull:pull_all all.local:local_all"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
for run in $(seq "$N"); do
  log "run $run/$N"
  # Odd runs in the listed order, even runs reversed, so drift in the load hits both sides.
  steps=$STEPS
  [ $((run % 2)) = 0 ] && steps=$(echo "$STEPS" | tr ' ' '\n' | tac | tr '\n' ' ')
  for step in $steps; do measure "${step%%:*}" "${step#*:}"; done
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
cp "$RUN/samples" "${OUT%.md}-samples.txt"

# The results TSV (what crfs-bench-chart reads), then the report made from it.
st() { harness_stats "$RUN/samples" "$1" "$2"; } # KEY FIELD: 2 wall, 3 CPU, 4 bytes, 5 blob bytes, 6 requests
least() { echo "$LEAST $LEAST $LEAST $N"; }
excess=$(( $(st small.crfs 5 | cut -d' ' -f1 | xargs printf '%.0f') - LEAST ))
harness_pairs_header "$TSV.tmp"
pair() { harness_pair "$TSV.tmp" "$@"; }
pair wall small.crfs "$(st small.crfs 2)" small.pull "$(st small.pull 2)" 0.05 "small file" \
  "from nothing to a small file ($SMALL_SIZE bytes) read: lazy mount vs pull + extract"
pair cpu small.crfs "$(st small.crfs 3)" small.pull "$(st small.pull 3)" - "small file CPU" "the same: CPU time"
pair bytes small.crfs "$(st small.crfs 5)" least "$(least)" "$(echo "($LEAST + 65536) / $LEAST" | bc -l)" \
  "small file bytes" "blob bytes fetched for the small file vs footer + compressed TOC + its chunk ($excess more)" \
  "≤ least + 64 KiB"
pair wall first.crfs "$(st first.crfs 2)" first.pull "$(st first.pull 2)" - "largest file" \
  "from nothing to the largest file ($(tar -tvf "$TAR" "$FIRST" | awk '{print $3}') bytes) read: lazy mount vs pull + extract"
pair wall all.crfs "$(st all.crfs 2)" all.pull "$(st all.pull 2)" - "every file" \
  "from nothing to every file read: lazy mount vs pull + extract"
pair wall all.crfs "$(st all.crfs 2)" all.local "$(st all.local 2)" 1.5 "every file vs local" \
  "from nothing to every file read: lazy mount vs crfs mount of the blob on local disk"
pair cpu all.crfs "$(st all.crfs 3)" all.local "$(st all.local 3)" - "every file vs local CPU" "the same: CPU time"
pair bytes all.crfs "$(st all.crfs 4)" all.pull "$(st all.pull 4)" - "every file bytes" \
  "bytes the registry sent for every file: lazy mount vs pull"
mv "$TSV.tmp" "$TSV"

{
  echo "# Lazy mount from a loopback registry vs pulling the image, and vs the blob on local disk"
  echo
  echo "Written by \`benches/registry-compare.sh -n $N\` on $(date -u '+%Y-%m-%d %H:%M') UTC, corpus \`$NAME\`"
  echo "(tar $(du -m "$TAR" | cut -f1) MB; eStargz layer $(du -m "$BLOB" | cut -f1) MB; tar.gz layer $(du -m "$TGZ" | cut -f1) MB), docker-registry on 127.0.0.1 over plain HTTP."
  echo "Cold page cache, a fresh crfs with $CACHE_WORDS, median [min–max] of $N runs. CPU is user + sys of"
  echo "every process of the step and of the registry. Load average before: $LOAD_BEFORE; after: $LOAD_AFTER."
  echo
  echo "Small file: \`$SMALL\` ($SMALL_SIZE bytes). Largest file: \`$FIRST\`."
  echo "The least a lazy reader fetches for the small file: footer $FOOTER_LEN + compressed TOC $TOC_LEN + its"
  echo "compressed chunk $CHUNK_LEN = $LEAST bytes; crfs's blob requests fetched $excess bytes more (target: ≤ 65536)."
  echo
  harness_table "$TSV"
  echo
  echo "Requests to the registry (median): small file $(st small.crfs 6 | cut -d' ' -f1), largest file $(st first.crfs 6 | cut -d' ' -f1), every file $(st all.crfs 6 | cut -d' ' -f1) (crfs);"
  echo "bytes sent with manifests: small file $(st small.crfs 4 | cut -d' ' -f1), largest file $(st first.crfs 4 | cut -d' ' -f1) (crfs), pull $(st all.pull 4 | cut -d' ' -f1)."
  echo
  echo "- lazy: \`crfs mount $CACHE_FLAG $REF:lazy MNT\`, then \`cat MNT/FILE\` or \`tar -C MNT -cf - . | cat\`."
  echo "- local: \`crfs mount $CACHE_FLAG BLOB MNT\` of the same blob file, the same reads."
  echo "- pull: \`skopeo copy docker://$REF:plain oci:DIR:plain\`, \`tar -xzf\` of the layer, then the same reads."
  echo "- \`$(basename "$TSV")\` beside this file has the medians; \`$(basename "${OUT%.md}")-samples.txt\` every sample"
  echo "  (step, wall s, CPU s, bytes sent, blob bytes sent, requests)."
} >"$OUT"
cat "$OUT"

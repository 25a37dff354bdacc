#!/usr/bin/env bash
# benches/registry-compare.sh: a lazy `crfs mount` of an image on a loopback registry against
# pulling it (skopeo copy, then tar -x, as a runtime does before it can start anything).
#
# usage: benches/registry-compare.sh [-n N] [--work DIR] [--quick] [--out FILE]
#
#   -n N        runs per measurement (default 3); the table shows median [min-max]
#   --work DIR  corpus cache (default /var/tmp/crfs-bench, shared with compare.sh)
#   --quick     the synthetic corpus compare.sh --quick builds (5,000 files), for a smoke run
#   --out FILE  where the markdown goes (default benches/results/registry.md, registry-quick.md with --quick)
#
# Needs root (drop_caches, FUSE), docker-registry and skopeo (Debian packages). The corpus is
# pushed twice to a docker-registry on 127.0.0.1 (plain HTTP): as its eStargz blob (`lazy`,
# with the toc.digest annotation crfs verifies) and as an ordinary tar.gz layer (`plain`).
# Measured, each with a cold page cache, a fresh crfs and no disk cache:
#   first file  from nothing to one file's bytes: crfs mounts `lazy` and reads it; the pull
#               copies `plain` to a local OCI layout, extracts the layer, and reads it
#   every file  from nothing to every file read: crfs reads the whole mount (`tar | cat`); the
#               pull does the same and then reads the extracted tree
# and the bytes the registry sent for each (from its access log).
set -euo pipefail

# shellcheck source=benches/harness.sh
source "$(dirname "${BASH_SOURCE[0]}")/harness.sh"
harness_init registry "$@"
command -v docker-registry >/dev/null && command -v skopeo >/dev/null || die "needs docker-registry and skopeo (apt-get install docker-registry skopeo)"
harness_corpus
TGZ=$WORK/$NAME.tar.gz
if [ ! -f "$TGZ" ]; then
  log "gzip -6 $TAR"
  gzip -6 -c "$TAR" >"$TGZ.tmp" && mv "$TGZ.tmp" "$TGZ"
fi
harness_build_crfs

# The file read first: the largest regular file (for Python, its shared library), found in the tar.
FIRST=$(tar -tvf "$TAR" | awk '$1 ~ /^-/ {print $3, $6}' | sort -n | tail -1 | cut -d' ' -f2)
[ -n "$FIRST" ] || die "no regular file in $TAR"

RUN=$(mktemp -d "$WORK/registry-run.XXXXXX")
MNT=$WORK/mnt-registry-compare
mkdir -p "$MNT"
REGISTRY_PID=
CRFS_PID=
cleanup() {
  [ -n "$CRFS_PID" ] && kill "$CRFS_PID" 2>/dev/null || true
  mountpoint -q "$MNT" && umount -l "$MNT" || true
  [ -n "$REGISTRY_PID" ] && kill "$REGISTRY_PID" 2>/dev/null || true
  rm -rf "$RUN"
}
trap cleanup EXIT

# An OCI layout holding both images, made here (the manifests are small JSON).
log "building the OCI layout"
TOC_DIGEST=$("$CRFS" info "$BLOB" | awk '$1 == "toc-digest" {print $2}')
python3 - "$RUN/layout" "$TAR" "$BLOB" "$TGZ" "$TOC_DIGEST" <<'EOF'
import hashlib, json, os, shutil, sys
layout, tar, esgz, tgz, toc_digest = sys.argv[1:]
blobs = os.path.join(layout, "blobs", "sha256")
os.makedirs(blobs)
def sha_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for piece in iter(lambda: f.read(1 << 20), b""):
            h.update(piece)
    return h.hexdigest()
def add_file(path):
    d = sha_file(path)
    os.link(path, os.path.join(blobs, d)) if os.stat(path).st_dev == os.stat(blobs).st_dev else shutil.copy(path, os.path.join(blobs, d))
    return "sha256:" + d, os.path.getsize(path)
def add_json(obj):
    data = json.dumps(obj, separators=(",", ":")).encode()
    d = hashlib.sha256(data).hexdigest()
    with open(os.path.join(blobs, d), "wb") as f:
        f.write(data)
    return "sha256:" + d, len(data)
diff_id = "sha256:" + sha_file(tar)
config = add_json({"architecture": "amd64", "os": "linux", "config": {},
                   "rootfs": {"type": "layers", "diff_ids": [diff_id]}})
manifests = []
for tag, path, annotations in [
    ("lazy", esgz, {"containerd.io/snapshot/stargz/toc.digest": toc_digest,
                    "io.containers.estargz.uncompressed-size": str(os.path.getsize(tar))}),
    ("plain", tgz, {}),
]:
    layer, size = add_file(path)
    desc = {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer, "size": size}
    if annotations:
        desc["annotations"] = annotations
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config[0], "size": config[1]},
                "layers": [desc]}
    digest, size = add_json(manifest)
    manifests.append({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest, "size": size,
                      "annotations": {"org.opencontainers.image.ref.name": tag}})
with open(os.path.join(layout, "index.json"), "w") as f:
    json.dump({"schemaVersion": 2, "manifests": manifests}, f)
with open(os.path.join(layout, "oci-layout"), "w") as f:
    json.dump({"imageLayoutVersion": "1.0.0"}, f)
EOF

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"$RUN/registry.yml" <<EOF
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $RUN/storage
http:
  addr: 127.0.0.1:$PORT
  secret: crfs-bench
EOF
docker-registry serve "$RUN/registry.yml" >"$RUN/registry.log" 2>&1 &
REGISTRY_PID=$!
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done
REF=127.0.0.1:$PORT/bench/$NAME
for tag in lazy plain; do
  log "skopeo copy $tag"
  skopeo copy -q --dest-tls-verify=false "oci:$RUN/layout:$tag" "docker://$REF:$tag"
done

# Bytes the registry sent since the last call (its access log: combined format, size field 10).
SENT_MARK=0
sent_since_mark() {
  local total
  total=$(grep -a '"GET /v2/' "$RUN/registry.log" | awk '{s += $10} END {print s + 0}')
  echo $((total - SENT_MARK))
  SENT_MARK=$total
}

start_mount() {
  "$CRFS" mount --no-disk-cache "$REF:lazy" "$MNT" >/dev/null 2>>"$RUN/crfs.log" &
  CRFS_PID=$!
  for _ in $(seq 400); do mountpoint -q "$MNT" && break; sleep 0.025; done
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

measure() { # NAME COMMAND...: appends "NAME seconds bytes-sent"
  local name=$1; shift
  sync; echo 3 >/proc/sys/vm/drop_caches
  sent_since_mark >/dev/null
  local start=$EPOCHREALTIME
  "$@"
  local end=$EPOCHREALTIME
  echo "$name $(echo "$end - $start" | bc -l) $(sent_since_mark)" >>"$RUN/samples"
  log "$name: $(tail -1 "$RUN/samples" | cut -d' ' -f2-)"
}
crfs_first() { start_mount; cat "$MNT/$FIRST" >/dev/null; stop_mount; }
crfs_all() { start_mount; tar -C "$MNT" -cf - . | cat >/dev/null; stop_mount; }
pull_first() { pull; cat "$RUN/tree/$FIRST" >/dev/null; }
pull_all() { pull; tar -C "$RUN/tree" -cf - . | cat >/dev/null; }

# Check once that both ways give the same bytes for the first file.
start_mount; want=$(sha256sum <"$MNT/$FIRST"); stop_mount
pull; got=$(sha256sum <"$RUN/tree/$FIRST")
[ "$want" = "$got" ] || die "$FIRST differs between the mount and the pulled tree"

: >"$RUN/samples"
for run in $(seq "$N"); do
  log "run $run/$N"
  if [ $((run % 2)) = 1 ]; then
    measure first.crfs crfs_first; measure first.pull pull_first; measure all.crfs crfs_all; measure all.pull pull_all
  else
    measure first.pull pull_first; measure first.crfs crfs_first; measure all.pull pull_all; measure all.crfs crfs_all
  fi
done

stats() { harness_stats "$RUN/samples" "$1"; }
bytes() { grep "^$1 " "$RUN/samples" | awk '{print $3}' | sort -n | awk '{a[NR]=$1} END {printf "%.1f", a[int((NR+1)/2)] / 1e6}'; }
{
  echo "# Lazy mount from a loopback registry vs pulling the image"
  echo
  echo "Written by \`benches/registry-compare.sh -n $N\` on $(date -u '+%Y-%m-%d %H:%M') UTC, corpus \`$NAME\`"
  echo "(tar $(du -m "$TAR" | cut -f1) MB; eStargz layer $(du -m "$BLOB" | cut -f1) MB; tar.gz layer $(du -m "$TGZ" | cut -f1) MB), docker-registry on 127.0.0.1 over plain HTTP."
  echo "Cold page cache, a fresh crfs with no disk cache, median [min–max] of $N runs, seconds; MB sent by the registry (median)."
  echo "First file: \`$FIRST\` ($(tar -tvf "$TAR" "$FIRST" | awk '{print $3}') bytes). Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)."
  echo
  echo "| from nothing to | crfs mount (lazy) | pull + extract | crfs ÷ pull | MB sent: crfs | MB sent: pull |"
  echo "|---|---|---|---|---|---|"
  for what in first all; do
    read -r cm cl ch <<<"$(stats "$what.crfs")"
    read -r pm pl ph <<<"$(stats "$what.pull")"
    label=$([ $what = first ] && echo "one file read" || echo "every file read")
    printf '| %s | %s [%s–%s] | %s [%s–%s] | %.2f× | %s | %s |\n' "$label" "$cm" "$cl" "$ch" "$pm" "$pl" "$ph" \
      "$(echo "$cm / $pm" | bc -l)" "$(bytes "$what.crfs")" "$(bytes "$what.pull")"
  done
  echo
  echo "crfs: \`crfs mount --no-disk-cache $REF:lazy MNT\`, then \`cat MNT/FILE\` or \`tar -C MNT -cf - . | cat\`."
  echo "pull: \`skopeo copy docker://$REF:plain oci:DIR:plain\`, \`tar -xzf\` of the layer, then the same reads."
} >"$OUT"
cat "$OUT"

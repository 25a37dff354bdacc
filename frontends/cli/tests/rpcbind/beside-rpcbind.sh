#!/usr/bin/env bash
# Runs inside `unshare -n -m` (a network and mount namespace of its own), for
# tests/nfs_rpcbind.rs: Debian's rpcbind on port 111, then `crfs nfs BLOB` on the standard
# ports, which finds 111 taken and registers with it; prints rpcinfo -p while crfs runs and
# after it stopped, between markers.
#
#   beside-rpcbind.sh CRFS BLOB PKGROOT     PKGROOT: the rpcbind .deb extracted (dpkg-deb -x)
set -euo pipefail
crfs=$1 blob=$2 pkg=$3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Private mounts: rpcbind's socket and lock in /run, and a passwd with the user it drops to.
mount --make-rprivate /
mount -t tmpfs run /run
mkdir -p /run/rpcbind
cp /etc/passwd "$tmp/passwd"
grep -q '^_rpc:' "$tmp/passwd" || echo '_rpc:x:64000:65534::/run/rpcbind:/usr/sbin/nologin' >>"$tmp/passwd"
mount --bind "$tmp/passwd" /etc/passwd
ip link set lo up

"$pkg/sbin/rpcbind" -f >"$tmp/rpcbind.log" 2>&1 &
rpcbind=$!
up=no
for _ in $(seq 50); do
    if "$pkg/usr/sbin/rpcinfo" -p 127.0.0.1 >/dev/null 2>&1; then up=yes; break; fi
    sleep 0.1
done
if [ "$up" != yes ]; then
    echo "rpcbind did not come up:" >&2
    cat "$tmp/rpcbind.log" >&2
    exit 1
fi

"$crfs" nfs "$blob" >"$tmp/crfs.log" 2>&1 &
crfs_pid=$!
# Until crfs says where its programs are, or exits (its error is then in the log). Any line
# before that (the layer's "lazy" line) is not enough: registering comes after opening.
for _ in $(seq 100); do
    grep -q 'registered with\|portmapper on' "$tmp/crfs.log" && break
    kill -0 "$crfs_pid" 2>/dev/null || break
    sleep 0.1
done
echo "@@CRFS"
cat "$tmp/crfs.log"
echo "@@WHILE"
"$pkg/usr/sbin/rpcinfo" -p 127.0.0.1
kill -TERM "$crfs_pid"
wait "$crfs_pid" && echo "@@EXIT 0" || echo "@@EXIT $?"
echo "@@AFTER"
"$pkg/usr/sbin/rpcinfo" -p 127.0.0.1
kill "$rpcbind"

#!/usr/bin/env bash
# Builds the guest of the kernel NFS client test (frontends/cli/tests/nfs_kernel.rs) and of
# benches/nfs-compare.sh: Debian's own kernel and a small initramfs with busybox, the kernel's
# NFS client modules, util-linux mount, nfs-common's mount.nfs and rpc.statd, rpcbind, and the
# GNU tools the test lists trees with (the host's: the same binaries list the FUSE mount on the
# host, so outputs compare).
#
#   build-guest.sh OUT_DIR      writes OUT_DIR/vmlinuz and OUT_DIR/initrd.cpio.gz
#
# The .debs come from apt-get download (no install: an installed rpcbind would take port 111,
# which crfs needs) into $CRFS_VM_DEBS (default OUT_DIR/debs) and are reused when present, so
# a second run needs no network. Needs: apt-get, dpkg-deb, objcopy (binutils), gzip, ldd.
set -euo pipefail

out=${1:?usage: build-guest.sh OUT_DIR}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
out=$(cd "$out" && pwd)
debs=${CRFS_VM_DEBS:-$out/debs}
mkdir -p "$debs"

# Packages whose files go into the guest (the libraries mount.nfs, rpc.statd and rpcbind link,
# where the host may not have them) and the kernel, versioned through linux-image-amd64.
packages=(busybox-static nfs-common rpcbind libtirpc3 libtirpc-common libnfsidmap1 libevent-core-2.1-7
    libgssapi-krb5-2 libkrb5-3 libk5crypto3 libkrb5support0 libkeyutils1 libcom-err2 libwrap0 netbase)

have_deb() { compgen -G "$debs/${1}_*.deb" >/dev/null; }

kernel_deb=$(compgen -G "$debs/linux-image-[0-9]*-amd64_*.deb" | sort -V | tail -n 1 || true)
missing=()
for p in "${packages[@]}"; do have_deb "$p" || missing+=("$p"); done
if [ -z "$kernel_deb" ]; then
    kpkg=$(apt-cache depends linux-image-amd64 | sed -n 's/^ *Depends: \(linux-image-[0-9].*-amd64\)$/\1/p' | head -n 1)
    [ -n "$kpkg" ] || { echo "build-guest: apt knows no linux-image-amd64 (apt-get update?)" >&2; exit 1; }
    missing+=("$kpkg")
fi
if [ "${#missing[@]}" -gt 0 ]; then
    echo "build-guest: downloading ${missing[*]}" >&2
    # apt's sandbox user may not write here; root downloads unsandboxed (a warning, no error).
    (cd "$debs" && apt-get download -q "${missing[@]}" 2>&1 | grep -v '^W: Download is performed unsandboxed' >&2 || true)
    for p in "${packages[@]}"; do have_deb "$p" || { echo "build-guest: no .deb for $p" >&2; exit 1; }; done
    kernel_deb=$(compgen -G "$debs/linux-image-[0-9]*-amd64_*.deb" | sort -V | tail -n 1 || true)
    [ -n "$kernel_deb" ] || { echo "build-guest: the kernel package did not download" >&2; exit 1; }
fi

work=$(mktemp -d "$out/build.XXXXXX")
trap 'rm -rf "$work"' EXIT
pkgroot=$work/pkg
root=$work/root
mkdir -p "$pkgroot" "$root"
for p in "${packages[@]}"; do
    for f in "$debs/${p}"_*.deb; do dpkg-deb -x "$f" "$pkgroot"; done
done

# The kernel: vmlinuz and only the modules the test loads.
kroot=$work/kernel
mkdir -p "$kroot"
dpkg-deb --fsys-tarfile "$kernel_deb" |
    tar -x -C "$kroot" --wildcards './boot/vmlinuz-*' './lib/modules/*/kernel/fs/nfs/*' \
        './lib/modules/*/kernel/fs/lockd/*' './lib/modules/*/kernel/fs/nfs_common/*' \
        './lib/modules/*/kernel/fs/netfs/*' './lib/modules/*/kernel/fs/fscache/*' \
        './lib/modules/*/kernel/net/sunrpc/*' './lib/modules/*/kernel/net/dns_resolver/*' \
        './lib/modules/*/kernel/drivers/virtio/*' './lib/modules/*/kernel/drivers/net/virtio_net.ko*' \
        './lib/modules/*/kernel/drivers/net/net_failover.ko*' './lib/modules/*/kernel/net/core/failover.ko*'
cp "$kroot"/boot/vmlinuz-* "$out/vmlinuz.new"

# Modules in load order: each after what its .modinfo `depends=` names (modules.dep is made by
# depmod at install time, so the package has none).
declare -A module_file=() loaded=()
while IFS= read -r f; do
    name=$(basename "$f")
    name=${name%%.ko*}
    module_file[${name//-/_}]=$f
done < <(find "$kroot/lib/modules" -name '*.ko*')
order=()
add_module() {
    local name=${1//-/_} dep deps f
    [ -n "${loaded[$name]:-}" ] && return
    f=${module_file[$name]:-}
    [ -n "$f" ] || { echo "build-guest: module $name not in the kernel package subset" >&2; exit 1; }
    case $f in
    *.xz) xz -dc "$f" >"$work/$name.ko" ;;
    *.zst) zstd -qdc "$f" >"$work/$name.ko" ;;
    *) cp "$f" "$work/$name.ko" ;;
    esac
    deps=$(objcopy -O binary --only-section=.modinfo "$work/$name.ko" /dev/stdout | tr '\0' '\n' | sed -n 's/^depends=//p')
    loaded[$name]=1
    for dep in ${deps//,/ }; do add_module "$dep"; done
    order+=("$name")
}
for m in virtio_pci virtio_net sunrpc grace lockd nfs_acl fscache nfs nfsv3 nfsv4; do add_module "$m"; done
mkdir -p "$root/lib/modules"
for m in "${order[@]}"; do mv "$work/$m.ko" "$root/lib/modules/"; done
printf '%s\n' "${order[@]}" >"$root/lib/modules/order"

# Programs. Debian's paths; the GNU tools under /gnu so that busybox applets never stand in
# for them (busybox's sh, timeout and xargs prefer their own applets to PATH).
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,gnu,etc,dev,proc,sys,run,tmp,mnt,var/lib/nfs/sm,var/lib/nfs/sm.bak,lib64}
cp "$pkgroot/bin/busybox" "$root/bin/busybox"
ln -s busybox "$root/bin/sh"
install -m 0755 "$pkgroot/sbin/mount.nfs" "$pkgroot/sbin/rpc.statd" "$pkgroot/sbin/sm-notify" "$pkgroot/sbin/rpcbind" "$root/sbin/"
ln -s mount.nfs "$root/sbin/umount.nfs"
ln -s mount.nfs "$root/sbin/mount.nfs4"
install -m 0755 "$pkgroot/usr/sbin/rpcinfo" "$root/usr/sbin/"
# util-linux mount and umount from the host (Debian's own; the guest runs the same release).
install -m 0755 "$(command -v mount)" "$(command -v umount)" "$root/bin/"
for tool in ls find stat sha256sum flock dd date cat timeout; do
    install -m 0755 "$(command -v "$tool")" "$root/gnu/"
done

# Shared libraries as ldd resolves them, the packages' copies first.
libpath=$pkgroot/lib/x86_64-linux-gnu:$pkgroot/usr/lib/x86_64-linux-gnu
for bin in "$root"/sbin/* "$root"/usr/sbin/* "$root"/bin/mount "$root"/bin/umount "$root"/gnu/*; do
    [ -L "$bin" ] && continue
    LD_LIBRARY_PATH=$libpath ldd "$bin" | awk '/=> \//{print $3} /^\t\/lib64\//{print $1}'
done | sort -u | while IFS= read -r lib; do
    dest=$root/lib/x86_64-linux-gnu
    case $lib in /lib64/*) dest=$root/lib64 ;; esac
    mkdir -p "$dest"
    cp -L "$lib" "$dest/"
done

# Configuration: libtirpc's netconfig, services and protocols, users for rpcbind and statd.
cp "$pkgroot/etc/netconfig" "$pkgroot/etc/services" "$pkgroot/etc/protocols" "$root/etc/"
printf 'root:x:0:0:root:/:/bin/sh\n_rpc:x:100:65534::/run/rpcbind:/bin/false\nstatd:x:101:65534::/var/lib/nfs:/bin/false\n' >"$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
printf '127.0.0.1 localhost\n10.0.2.15 guest\n' >"$root/etc/hosts"
printf 'passwd: files\ngroup: files\nhosts: files\n' >"$root/etc/nsswitch.conf"
: >"$root/var/lib/nfs/state"
install -m 0755 "$here/init.sh" "$root/init"
# wait-for FILE SECONDS: the host's scripts wait on their background processes with it.
cat >"$root/bin/wait-for" <<'EOF'
#!/bin/sh
n=0
while [ ! -e "$1" ]; do
    [ "$n" -ge $(($2 * 10)) ] && { echo "wait-for: no $1 after $2 s" >&2; exit 1; }
    sleep 0.1
    n=$((n + 1))
done
EOF
chmod 0755 "$root/bin/wait-for"

# run-watched SECONDS CMD...: runs CMD; one still running after SECONDS is reported on stderr
# with what it waits on (its state, wait channel and kernel stack, every blocked task's stack
# through SysRq-w, the NFS client's RPC counts, the lock table), killed, and exits 125. So a
# hang shows where it hangs. (A zombie passes `kill -0`; busybox sh reaps between commands.)
cat >"$root/bin/run-watched" <<'EOF'
#!/bin/sh
secs=$1
shift
"$@" &
pid=$!
n=0
while kill -0 "$pid" 2>/dev/null; do
    if [ "$n" -ge $((secs * 10)) ]; then
        {
            echo "run-watched: '$*' still running after $secs s"
            grep State "/proc/$pid/status"
            echo "wchan: $(cat "/proc/$pid/wchan")"
            cat "/proc/$pid/stack"
            echo w >/proc/sysrq-trigger
            dmesg | tail -n 200
            cat /proc/net/rpc/nfs /proc/locks
        } >&2
        kill -9 "$pid"
        exit 125
    fi
    sleep 0.1
    n=$((n + 1))
done
wait "$pid"
EOF
chmod 0755 "$root/bin/run-watched"

(cd "$root" && find . | LC_ALL=C sort | "$root/bin/busybox" cpio -o -H newc 2>/dev/null) | gzip -1 >"$out/initrd.cpio.gz.new"
mv "$out/vmlinuz.new" "$out/vmlinuz"
mv "$out/initrd.cpio.gz.new" "$out/initrd.cpio.gz"
echo "build-guest: $(basename "$kernel_deb"), modules: ${order[*]}; initrd $(du -k "$out/initrd.cpio.gz" | cut -f1) KiB" >&2

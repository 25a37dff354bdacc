#!/bin/sh
# /init of the kernel NFS client test's guest (see build-guest.sh and nfs_kernel.rs): loads the
# NFS client modules, brings up user-mode networking (the host's 127.0.0.1 is 10.0.2.2), starts
# rpcbind and rpc.statd as a normal host has them, then serves the host's commands on the
# second serial port:
#   host -> guest: "ID BASE64-OF-A-SH-SCRIPT\n"
#   guest -> host: "@@OUT ID", base64 of its gzipped stdout, "@@ERR ID", the same of its
#                  stderr, "@@END ID EXIT-STATUS"
# (gzip: the serial port moves about 70 KB/s under TCG, and listings compress well.)
# "@@READY" on that port says the guest is up. Console output (kernel, this script) is ttyS0.
/bin/busybox --install -s /bin
export PATH=/sbin:/usr/sbin:/bin:/usr/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs dev /dev
mount -t tmpfs tmp /tmp
mount -t tmpfs run /run
mkdir -p /run/rpcbind /var/lib/nfs/sm /var/lib/nfs/sm.bak

while read -r m; do
    insmod "/lib/modules/$m.ko" || echo "init: insmod $m failed"
done </lib/modules/order
echo "init: modules loaded at $(cut -d' ' -f1 /proc/uptime) s"

ip link set lo up
ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0
ip route add default via 10.0.2.2
hostname guest

rpcbind -w || echo "init: rpcbind failed"
rpc.statd --no-notify || echo "init: rpc.statd failed"

stty -F /dev/ttyS1 raw -echo
exec 3<>/dev/ttyS1
echo "init: ready at $(cut -d' ' -f1 /proc/uptime) s"
echo "@@READY" >&3
# The commands are served by a child of this shell, never by PID 1 itself. Every orphaned
# process (a daemon, a script's background job, busybox timeout's watcher) is handed to PID 1,
# and its exit sends PID 1 a SIGCHLD; busybox sh's `read`, interrupted by a signal part-way
# through a line, starts again and drops what it had read. The command loop would then get
# the tail of a line as a command and never answer it.
serve() {
    while IFS= read -r line <&3; do
        id=${line%% *}
        printf '%s' "${line#* }" | base64 -d >/tmp/cmd.sh
        sh /tmp/cmd.sh >/tmp/cmd.out 2>/tmp/cmd.err </dev/null 3>&-
        rc=$?
        {
            echo "@@OUT $id"
            gzip -1 -c /tmp/cmd.out | base64
            echo "@@ERR $id"
            gzip -1 -c /tmp/cmd.err | base64
            echo "@@END $id $rc"
        } >&3
    done
    echo "init: the control port closed"
    poweroff -f
}
serve &
exec 3>&-
# PID 1 only reaps the orphans: each foreground sleep's wait collects any exited child.
while :; do
    sleep 1
done

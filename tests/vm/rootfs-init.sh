#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# /sbin/init of the VM's root filesystems (tests/vm/build-image.sh): mounts the kernel's
# filesystems, the boot partition (GRUB's environment, or U-Boot's uboot.env on arm64) and the
# data partition (the agent's config, certificates and journal; /etc/fota-vm.conf names both), brings up the network QEMU's user mode offers, and runs
# fota-device as a service would: restarted when it exits.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
grep -q " /dev " /proc/mounts || mount -t devtmpfs devtmpfs /dev
echo "fota-vm: rootfs $(cat /etc/fota-release) up; cmdline: $(cat /proc/cmdline)"
. /etc/fota-vm.conf
mount_rw() {
  mount -t "$3" -o rw "$1" "$2" || { echo "fota-vm: cannot mount $1 on $2"; return 1; }
}
if [ "$boot_fs" = ext2 ]; then
  # The boot partition is ext2 (tests/vm/build-image.sh says why): repair what a power cut left.
  # -y, not -p: -p leaves some repairs for a person, and nobody is at a device's console.
  e2fsck -y "$boot_dev" >/dev/null 2>&1
  fsck_status=$?
  if [ $fsck_status -ge 4 ]; then
    echo "fota-vm: e2fsck -y $boot_dev could not repair the boot partition (status $fsck_status)"
  elif [ $fsck_status -ne 0 ]; then
    echo "fota-vm: e2fsck repaired the boot partition (status $fsck_status)"
  fi
fi
mount_rw "$boot_dev" /boot "$boot_fs" || exit 1
mount_rw "$data_dev" /data ext4 || exit 1
ip link set lo up
ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0
ip route add default via 10.0.2.2
# The agent's footprint, on the console every 2 s while it runs: VmRSS and utime+stime in clock
# ticks (/proc/<pid>/stat fields 14 and 15), read by tests/vm/run-vm-test.sh for BENCHMARKS.md.
(
  while sleep 2; do
    pid=$(pidof fota-device) || continue
    rss=$(sed -n 's/^VmRSS:[[:space:]]*//p' /proc/$pid/status)
    ticks=$(awk '{print $14 + $15}' /proc/$pid/stat)
    echo "fota-vm: stats pid=$pid rss=$rss cpu_ticks=$ticks uptime=$(cut -d' ' -f1 /proc/uptime)"
  done
) &
# The agent reboots the machine itself (reboot_command in device.yaml); an exit is a failure.
while true; do
  fota-device --config /data/fota/device.yaml
  echo "fota-vm: fota-device exited with status $?; restarting it"
  sleep 1
done

#!/bin/busybox sh
# SPDX-License-Identifier: Apache-2.0
# /init of the VM's initramfs: the cloud kernel has its disk and network drivers as modules, so
# this loads them, mounts the slot GRUB chose read-only and hands over to its /sbin/init.
# GRUB passes root=<device> with fota.slot=<slot>; without root= the slot names the device
# (a = /dev/vda3, b = /dev/vda4), the layout tests/vm/build-image.sh makes.
/bin/busybox mkdir -p /proc /sys /dev /newroot
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev
for m in $(/bin/busybox cat /modules/order); do
  /bin/busybox insmod "/modules/$m.ko" || echo "initramfs: cannot load module $m"
done
root= slot=
for arg in $(/bin/busybox cat /proc/cmdline); do
  case "$arg" in
    root=*) root=${arg#root=} ;;
    fota.slot=*) slot=${arg#fota.slot=} ;;
  esac
done
if [ -z "$root" ]; then
  case "$slot" in
    a) root=/dev/vda3 ;;
    b) root=/dev/vda4 ;;
  esac
fi
tries=0
while [ ! -b "$root" ] && [ $tries -lt 50 ]; do
  /bin/busybox sleep 0.1
  tries=$((tries + 1))
done
if ! /bin/busybox mount -t ext4 -o ro "$root" /newroot; then
  echo "initramfs: cannot mount the root filesystem '$root' (fota.slot=$slot); halting"
  exit 1  # init exits: the kernel panics and, with panic=N, resets into GRUB's fallback
fi
/bin/busybox umount /proc /sys
/bin/busybox mount --move /dev /newroot/dev
exec /bin/busybox switch_root /newroot /sbin/init

# SPDX-License-Identifier: Apache-2.0
# boot.scr of the arm64 VM proof (tests/vm/build-image.sh disk-uboot puts it on the FAT boot
# partition, where U-Boot's distro boot finds it): this disk's layout, then the fota boot scheme
# itself (client/boot/u-boot/boot.cmd, compiled to fota.scr next to this file) picks the slot and
# boots it. U-Boot's own environment is in QEMU's flash, which the Debian arm64 kernel has no
# driver for, so the fota variables live in uboot.env on this partition (fota_envfile).
setenv fota_iface virtio
setenv fota_devnum 0
setenv fota_a_part 2
setenv fota_b_part 3
setenv fota_a_root /dev/vda2
setenv fota_b_root /dev/vda3
setenv fota_kernel /boot/Image.gz
setenv fota_initrd /boot/initrd.img
# The kernel is gzip-compressed (a third of the slot image to download): booti unpacks it here.
setenv kernel_comp_addr_r 0x50000000
# panic=1: a slot whose init fails resets the machine at once, back into U-Boot.
setenv fota_cmdline "ro console=ttyAMA0 panic=1 loglevel=3"
# The same number as boot_tries in the agent's device.yaml (tests/vm/run-vm-test.sh).
setenv fota_default_tries 2
setenv fota_envfile uboot.env
setenv fota_env_part 1
# fota.scr goes above this script, which U-Boot is still running from scriptaddr.
setexpr fota_scr_addr ${scriptaddr} + 0x100000
load ${fota_iface} ${fota_devnum}:1 ${fota_scr_addr} fota.scr && source ${fota_scr_addr}

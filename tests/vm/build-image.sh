#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Builds the VM proof's disk and root filesystem images from Debian packages only, as plain
# files: no loop devices, no mounting, no network (docs/CLIENT.md, "The proof on a booting VM").
#
#   build-image.sh rootfs --out FILE --version V --device-bin PATH [--broken] [--size MiB]
#                         [--arch amd64|arm64]
#       An ext4 root filesystem: busybox-static, fota-device and the shared libraries it links,
#       the kernel and an initramfs in /boot, an init that starts the agent. --broken makes an
#       init that exits at once: the kernel panics and (panic=1) resets the machine.
#       --arch arm64: the cross-built agent, its libraries and busybox from the arm64 sysroot
#       (scripts/cross-sysroot.sh), the cloud-arm64 kernel gzip-compressed as /boot/Image.gz.
#   build-image.sh disk --out FILE --rootfs-a IMG --data DIR --grub-cfg FILE [--grub-fragment FILE]
#       The whole disk (GPT), booted by UEFI firmware (OVMF):
#         1 ESP       FAT   8 MiB   /EFI/BOOT/BOOTX64.EFI: GRUB (grub-mkstandalone)
#         2 boot      ext2  8 MiB   /grub/grub.cfg (+ the fota fragment it sources), /grub/grubenv
#         3 rootfs A  ext4  80 MiB  the given root filesystem (/dev/vda3)
#         4 rootfs B        80 MiB  empty: the first update goes here (/dev/vda4)
#         5 data      ext4  32 MiB  the contents of DIR: the agent's config, certificates, journal
#   build-image.sh disk-uboot --out FILE --rootfs-a IMG --data DIR --boot-cmd FILE --fota-cmd FILE
#                             [--slot-size MiB]
#       The arm64 disk (GPT), booted by U-Boot (u-boot-qemu's qemu_arm64) through distro boot:
#         1 boot      FAT   16 MiB  boot.scr (--boot-cmd compiled), fota.scr (--fota-cmd
#                                   compiled), uboot.env (the fota variables, mkenvimage)
#         2 rootfs A  ext4          the given root filesystem (/dev/vda2)
#         3 rootfs B                empty: the first update goes here (/dev/vda3)
#         4 data      ext4  32 MiB  the contents of DIR
#
# Why UEFI and not BIOS GRUB: under QEMU's TCG, BIOS GRUB took 45 s to read the 14 MiB kernel
# (every BIOS disk call switches the CPU to real mode and back, which TCG emulates slowly) and its
# native IDE driver uses PIO, slower still; OVMF costs about 12 s to start but GRUB then reads the
# kernel through the firmware's virtio driver in about a second, and Linux uses the same disk.
#
# The kernel comes from the linux-image-*-cloud-amd64 (or -arm64) .deb that
# scripts/install-deps.sh puts in FOTA_VM_CACHE (default /var/cache/fota-vm): its serial console
# is built in and it boots in a few seconds under TCG; its disk and network drivers (virtio) are
# modules, loaded by the initramfs.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${FOTA_VM_CACHE:-/var/cache/fota-vm}
arch=amd64

die() {
  echo "build-image: $*" >&2
  exit 1
}

# Prints the directory holding the extracted kernel package (extracted once per .deb).
kernel_tree() {
  local deb
  deb=$(find "$cache" -maxdepth 1 -name "linux-image-[0-9]*-cloud-${arch}_*_${arch}.deb" 2>/dev/null | sort -V | tail -n 1)
  [[ -n "$deb" ]] || die "no linux-image-*-cloud-$arch .deb in $cache; run scripts/install-deps.sh (as root) to fetch it"
  local tree="$work_root/kernel-$(basename "$deb" .deb)"
  if [[ ! -d "$tree/boot" ]]; then
    rm -rf "$tree.tmp"
    mkdir -p "$tree.tmp"
    dpkg-deb -x "$deb" "$tree.tmp"
    mv "$tree.tmp" "$tree"
  fi
  echo "$tree"
}

# The drivers the initramfs loads, dependencies first: the virtio disk and network card (and on
# arm64 FAT, the file system of the boot partition U-Boot reads and writes).
modules=(virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci virtio_blk failover
  net_failover virtio_net)
arm64_modules=(fat vfat nls_cp437 nls_ascii nls_utf8)

# The target's root for its programs and libraries: / on amd64, the arm64 sysroot otherwise.
target_root() {
  if [[ "$arch" == amd64 ]]; then echo ""; else "$here/../../scripts/cross-sysroot.sh" --print-dir; fi
}

# make_initramfs KERNEL_TREE OUT: busybox, the modules and initramfs-init.sh as /init.
make_initramfs() {
  local tree=$1 out=$2 dir
  dir=$(mktemp -d "$work_root/initramfs.XXXXXX")
  mkdir -p "$dir/bin" "$dir/modules"
  cp "$(target_root)/bin/busybox" "$dir/bin/busybox"
  ln -s busybox "$dir/bin/sh"
  install -m 0755 "$here/initramfs-init.sh" "$dir/init"
  local all=("${modules[@]}")
  [[ "$arch" == amd64 ]] || all+=("${arm64_modules[@]}")
  for m in "${all[@]}"; do
    local ko
    ko=$(find "$tree/lib/modules" -name "$m.ko" | head -n 1)
    [[ -n "$ko" ]] || die "kernel module $m.ko is not in $tree"
    cp "$ko" "$dir/modules/"
    echo "$m" >>"$dir/modules/order"
  done
  (cd "$dir" && find . | LC_ALL=C sort | cpio -o -H newc --quiet --reproducible) | gzip -1 >"$out"
  rm -rf "$dir"
}

# needed_libraries BINARY: every shared library the binary loads (and its dynamic loader), as
# paths on the target. amd64: what ldd resolves. arm64: ldd cannot run the binary, so the
# DT_NEEDED entries are followed through the sysroot's library directories.
needed_libraries() {
  if [[ "$arch" == amd64 ]]; then
    ldd "$1" | sed -n 's/.*=> \(\/[^ ]*\) .*/\1/p; s/^\s*\(\/[^ ]*\) (.*/\1/p'
    return
  fi
  local sysroot queue=("$1") seen=" " file lib dir found
  sysroot=$(target_root)
  readelf -l "$1" | sed -n 's/.*\[Requesting program interpreter: \(.*\)\]/\1/p'
  while ((${#queue[@]})); do
    file=${queue[0]}
    queue=("${queue[@]:1}")
    for lib in $(readelf -d "$file" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do
      [[ "$seen" == *" $lib "* ]] && continue
      seen+="$lib "
      found=
      for dir in /lib/aarch64-linux-gnu /usr/lib/aarch64-linux-gnu; do
        if [[ -e "$sysroot$dir/$lib" ]]; then found=$dir/$lib; break; fi
      done
      [[ -n "$found" ]] || die "$lib (needed by $(basename "$file")) is not in the sysroot $sysroot"
      echo "$found"
      queue+=("$sysroot$found")
    done
  done
}

# copy_with_libraries BINARY ROOT DIR: the binary (stripped) in ROOT/DIR and every shared library
# it needs, at the same path in ROOT.
copy_with_libraries() {
  local bin=$1 root=$2 lib strip=strip from
  [[ "$arch" == amd64 ]] || strip=aarch64-linux-gnu-strip
  from=$(target_root)
  mkdir -p "$root/$3"
  $strip --strip-all -o "$root/$3/$(basename "$bin")" "$bin"
  while read -r lib; do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$from$lib" "$root$lib"
    $strip --strip-unneeded "$root$lib" 2>/dev/null || true
  done < <(needed_libraries "$bin")
}

cmd_rootfs() {
  local out="" version="" device_bin="" broken=0 size=64
  while (($#)); do
    case "$1" in
      --out) out=$2; shift 2 ;;
      --version) version=$2; shift 2 ;;
      --device-bin) device_bin=$2; shift 2 ;;
      --broken) broken=1; shift ;;
      --size) size=$2; shift 2 ;;
      --arch) arch=$2; shift 2 ;;
      *) die "rootfs: unknown argument '$1'" ;;
    esac
  done
  [[ -n "$out" && -n "$version" && -x "$device_bin" ]] || die "rootfs needs --out, --version and an executable --device-bin"
  work_root=$(dirname "$out")
  local tree dir
  tree=$(kernel_tree)
  dir=$(mktemp -d "$work_root/rootfs.XXXXXX")
  mkdir -p "$dir"/{bin,sbin,etc,proc,sys,dev,tmp,run,boot,data,root}
  cp "$(target_root)/bin/busybox" "$dir/bin/busybox"
  local applet
  for applet in $(/bin/busybox --list); do
    [[ "$applet" == busybox ]] || ln -sf busybox "$dir/bin/$applet"
  done
  echo "$version" >"$dir/etc/fota-release"
  if ((broken)); then
    printf '#!/bin/sh\necho "fota-vm: rootfs %s is broken: its init exits"\nexit 1\n' "$version" >"$dir/sbin/init"
    chmod 0755 "$dir/sbin/init"
  else
    install -m 0755 "$here/rootfs-init.sh" "$dir/sbin/init"
    install -m 0755 "$here/health-check.sh" "$dir/sbin/fota-health-check"
    copy_with_libraries "$device_bin" "$dir" usr/bin
    ln -s /proc/self/mounts "$dir/etc/mtab"
    # Where init finds the boot loader's partition and the data partition (cmd_disk, cmd_disk_uboot).
    if [[ "$arch" == amd64 ]]; then
      printf 'boot_dev=/dev/vda2\nboot_fs=ext2\ndata_dev=/dev/vda5\n' >"$dir/etc/fota-vm.conf"
      # init checks the boot partition (ext2, see cmd_disk) before mounting it, as systemd-fsck would.
      copy_with_libraries "$(command -v e2fsck || echo /sbin/e2fsck)" "$dir" usr/sbin
      # The guest's clock is the host's, but a check must never stall on a clock it doubts.
      printf '[options]\nbroken_system_clock = 1\n' >"$dir/etc/e2fsck.conf"
    else
      printf 'boot_dev=/dev/vda1\nboot_fs=vfat\ndata_dev=/dev/vda4\n' >"$dir/etc/fota-vm.conf"
    fi
  fi
  mkdir -p "$dir/boot"
  if [[ "$arch" == amd64 ]]; then
    cp "$tree"/boot/vmlinuz-* "$dir/boot/vmlinuz"
  else
    # Debian's arm64 vmlinuz is the uncompressed Image (27 MiB); U-Boot's booti unpacks gzip.
    gzip -9 -c "$tree"/boot/vmlinuz-* >"$dir/boot/Image.gz"
  fi
  make_initramfs "$tree" "$dir/boot/initrd.img"
  rm -f "$out"
  mkfs.ext4 -q -F -L "rootfs-$version" -E root_owner=0:0 -d "$dir" "$out" "${size}M" >/dev/null ||
    die "mkfs.ext4 could not build a ${size} MiB root filesystem (too small for its contents?)"
  rm -rf "$dir"
}

cmd_disk() {
  local out="" rootfs_a="" data="" grub_cfg="" fragment=""
  while (($#)); do
    case "$1" in
      --out) out=$2; shift 2 ;;
      --rootfs-a) rootfs_a=$2; shift 2 ;;
      --data) data=$2; shift 2 ;;
      --grub-cfg) grub_cfg=$2; shift 2 ;;
      --grub-fragment) fragment=$2; shift 2 ;;
      *) die "disk: unknown argument '$1'" ;;
    esac
  done
  [[ -n "$out" && -f "$rootfs_a" && -d "$data" && -f "$grub_cfg" ]] ||
    die "disk needs --out, --rootfs-a IMG, --data DIR and --grub-cfg FILE"
  work_root=$(dirname "$out")
  local esp_mib=8 boot_mib=8 slot_mib=80 data_mib=32
  local esp_start=1
  local boot_start=$((esp_start + esp_mib))
  local a_start=$((boot_start + boot_mib))
  local b_start=$((a_start + slot_mib))
  local data_start=$((b_start + slot_mib))
  local total=$((data_start + data_mib + 1))

  # ESP: GRUB as one EFI executable at the removable-media path firmware boots without NVRAM
  # entries. Its built-in config only points at the boot partition, so grub.cfg stays a file
  # the test (and a firmware engineer) can read.
  local early="$work_root/grub-early.cfg"
  printf 'set root=(hd0,gpt2)\nset prefix=($root)/grub\nconfigfile $prefix/grub.cfg\n' >"$early"
  grub-mkstandalone -O x86_64-efi -o "$work_root/BOOTX64.EFI" --locales= --themes= --fonts= \
    --modules="part_gpt ext2 normal configfile loadenv test echo linux boot serial terminal sleep halt reboot cat ls" \
    "boot/grub/grub.cfg=$early"
  rm -f "$work_root/esp.img" "$early"
  mkfs.vfat -C "$work_root/esp.img" $((esp_mib * 1024)) >/dev/null
  mmd -i "$work_root/esp.img" ::/EFI ::/EFI/BOOT
  mcopy -i "$work_root/esp.img" "$work_root/BOOTX64.EFI" ::/EFI/BOOT/BOOTX64.EFI
  rm -f "$work_root/BOOTX64.EFI"

  # Boot partition: grub.cfg, the fota fragment and a fresh environment block.
  local boot
  boot=$(mktemp -d "$work_root/boot.XXXXXX")
  mkdir -p "$boot/grub"
  cp "$grub_cfg" "$boot/grub/grub.cfg"
  [[ -z "$fragment" ]] || cp "$fragment" "$boot/grub/fota.cfg"
  grub-editenv "$boot/grub/grubenv" create
  rm -f "$work_root/boot.img" "$work_root/data.img"
  # ext2, checked by the guest's init before it mounts it: GRUB reads file systems without
  # replaying a journal (so ext4's journal buys nothing for GRUB), and the agent writes grubenv
  # over its own blocks; a power cut can still leave ext2's bitmaps stale, which e2fsck -y
  # repairs (docs/CLIENT.md, "The proof on a booting VM").
  mkfs.ext2 -q -F -L boot -E root_owner=0:0 -d "$boot" "$work_root/boot.img" "${boot_mib}M" >/dev/null
  mkfs.ext4 -q -F -L data -E root_owner=0:0 -d "$data" "$work_root/data.img" "${data_mib}M" >/dev/null
  rm -rf "$boot"

  local linux=0FC63DAF-8483-4772-8E79-3D69C72E4709
  rm -f "$out"
  truncate -s "${total}M" "$out"
  sfdisk --quiet "$out" <<PARTS
label: gpt
start=$((esp_start * 2048)), size=$((esp_mib * 2048)), type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name=esp
start=$((boot_start * 2048)), size=$((boot_mib * 2048)), type=$linux, name=boot
start=$((a_start * 2048)), size=$((slot_mib * 2048)), type=$linux, name=rootfs-a
start=$((b_start * 2048)), size=$((slot_mib * 2048)), type=$linux, name=rootfs-b
start=$((data_start * 2048)), size=$((data_mib * 2048)), type=$linux, name=data
PARTS
  local image start
  for image in "esp.img:$esp_start" "boot.img:$boot_start" "data.img:$data_start"; do
    dd if="$work_root/${image%%:*}" of="$out" bs=1M seek="${image##*:}" conv=notrunc,sparse status=none
    rm -f "$work_root/${image%%:*}"
  done
  dd if="$rootfs_a" of="$out" bs=1M seek="$a_start" conv=notrunc,sparse status=none
}

cmd_disk_uboot() {
  local out="" rootfs_a="" data="" boot_cmd="" fota_cmd="" slot_mib=48
  while (($#)); do
    case "$1" in
      --out) out=$2; shift 2 ;;
      --rootfs-a) rootfs_a=$2; shift 2 ;;
      --data) data=$2; shift 2 ;;
      --boot-cmd) boot_cmd=$2; shift 2 ;;
      --fota-cmd) fota_cmd=$2; shift 2 ;;
      --slot-size) slot_mib=$2; shift 2 ;;
      *) die "disk-uboot: unknown argument '$1'" ;;
    esac
  done
  [[ -n "$out" && -f "$rootfs_a" && -d "$data" && -f "$boot_cmd" && -f "$fota_cmd" ]] ||
    die "disk-uboot needs --out, --rootfs-a IMG, --data DIR, --boot-cmd FILE and --fota-cmd FILE"
  work_root=$(dirname "$out")
  local boot_mib=16 data_mib=32
  local boot_start=1
  local a_start=$((boot_start + boot_mib))
  local b_start=$((a_start + slot_mib))
  local data_start=$((b_start + slot_mib))
  local total=$((data_start + data_mib + 1))

  # Boot partition: the two scripts and the fota variables' environment file, empty (a fresh
  # environment means order a b, every slot its default tries), 16 KiB as fota_env_size says.
  rm -f "$work_root/boot.img" "$work_root/data.img"
  mkfs.vfat -C "$work_root/boot.img" $((boot_mib * 1024)) >/dev/null
  mkimage -A arm64 -O linux -T script -C none -n "fota vm boot" -d "$boot_cmd" "$work_root/boot.scr" >/dev/null
  mkimage -A arm64 -O linux -T script -C none -n "fota boot" -d "$fota_cmd" "$work_root/fota.scr" >/dev/null
  mkenvimage -s 0x4000 -o "$work_root/uboot.env" /dev/null
  mcopy -i "$work_root/boot.img" "$work_root/boot.scr" "$work_root/fota.scr" "$work_root/uboot.env" ::/
  rm -f "$work_root/boot.scr" "$work_root/fota.scr" "$work_root/uboot.env"
  mkfs.ext4 -q -F -L data -E root_owner=0:0 -d "$data" "$work_root/data.img" "${data_mib}M" >/dev/null

  local linux=0FC63DAF-8483-4772-8E79-3D69C72E4709
  rm -f "$out"
  truncate -s "${total}M" "$out"
  sfdisk --quiet "$out" <<PARTS
label: gpt
start=$((boot_start * 2048)), size=$((boot_mib * 2048)), type=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7, name=boot, attrs=LegacyBIOSBootable
start=$((a_start * 2048)), size=$((slot_mib * 2048)), type=$linux, name=rootfs-a
start=$((b_start * 2048)), size=$((slot_mib * 2048)), type=$linux, name=rootfs-b
start=$((data_start * 2048)), size=$((data_mib * 2048)), type=$linux, name=data
PARTS
  dd if="$work_root/boot.img" of="$out" bs=1M seek="$boot_start" conv=notrunc,sparse status=none
  dd if="$work_root/data.img" of="$out" bs=1M seek="$data_start" conv=notrunc,sparse status=none
  dd if="$rootfs_a" of="$out" bs=1M seek="$a_start" conv=notrunc,sparse status=none
  rm -f "$work_root/boot.img" "$work_root/data.img"
}

case "${1:-}" in
  rootfs) shift; cmd_rootfs "$@" ;;
  disk) shift; cmd_disk "$@" ;;
  disk-uboot) shift; cmd_disk_uboot "$@" ;;
  *) die "usage: build-image.sh rootfs|disk|disk-uboot ... (see the comment at the top)" ;;
esac

# SPDX-License-Identifier: Apache-2.0
# fota boot scheme for U-Boot (docs/CLIENT.md, "U-Boot"): picks slot a or b from FOTA_ORDER and
# the per-slot tries-left counters in the U-Boot environment, counts one try down (saveenv)
# before booting, falls back to the next slot when a slot's tries are used up, and passes the
# booted slot to the agent as `fota.slot=<slot>` in bootargs. fota-device (bootloader: uboot)
# writes the same variables through libubootenv; BootChooser::choose() is this script's C++ twin.
#
# Compile: mkimage -A arm64 -O linux -T script -C none -n "fota boot" -d boot.cmd boot.scr

# ---- Parameters for the image builder: set them in the default environment, or edit here. ----
test -n "${fota_iface}" || setenv fota_iface mmc
test -n "${fota_devnum}" || setenv fota_devnum 0
test -n "${fota_a_part}" || setenv fota_a_part 2
test -n "${fota_b_part}" || setenv fota_b_part 3
test -n "${fota_a_root}" || setenv fota_a_root /dev/mmcblk0p2
test -n "${fota_b_root}" || setenv fota_b_root /dev/mmcblk0p3
test -n "${fota_kernel}" || setenv fota_kernel /boot/Image
# fota_initrd: an initramfs inside each slot (e.g. /boot/initrd.img); unset = none.
# fota_fdt: the device tree inside each slot (e.g. /boot/board.dtb); unset = the one U-Boot runs
# with. fota_bootcmd: booti (arm64) or bootz (arm32). A gzip-compressed arm64 kernel (Image.gz)
# needs the board's kernel_comp_addr_r and kernel_comp_size set (U-Boot's booti decompresses it).
test -n "${fota_bootcmd}" || setenv fota_bootcmd booti
test -n "${fota_cmdline}" || setenv fota_cmdline "ro console=ttyAMA0 panic=5"
# Tries a slot gets on a fresh environment and when every slot has run out. Keep it equal to
# fota-device's boot_tries (default 3); 1..9.
test -n "${fota_default_tries}" || setenv fota_default_tries 3
# Where the fota variables live. Unset fota_envfile (the default): in U-Boot's own environment,
# written with saveenv, which is where fw_env.config must point. Set: in an environment file
# on a FAT partition (fota_env_part of fota_iface/fota_devnum), as boards keep uboot.env on their
# boot partition (CONFIG_ENV_IS_IN_FAT), for a U-Boot whose own environment Linux cannot reach;
# make it with `mkenvimage -s <fota_env_size> -o uboot.env /dev/null` and point fw_env.config at
# it (`/boot/uboot.env 0x0 <fota_env_size>`). Only the FOTA_* variables are read from and
# written to it.
test -n "${fota_env_part}" || setenv fota_env_part 1
test -n "${fota_env_size}" || setenv fota_env_size 0x4000
test -n "${fota_env_addr}" || setenv fota_env_addr ${kernel_addr_r}
if test -n "${fota_envfile}"; then
  if load ${fota_iface} ${fota_devnum}:${fota_env_part} ${fota_env_addr} ${fota_envfile}; then
    env import -c ${fota_env_addr} ${filesize} || echo "fota: ${fota_envfile} is damaged; using defaults"
  else
    echo "fota: no ${fota_envfile} on ${fota_iface} ${fota_devnum}:${fota_env_part}; using defaults"
  fi
fi

# ---- The scheme ----
test -n "${FOTA_ORDER}" || setenv FOTA_ORDER "a b"
test -n "${FOTA_A_LEFT}" || setenv FOTA_A_LEFT ${fota_default_tries}
test -n "${FOTA_B_LEFT}" || setenv FOTA_B_LEFT ${fota_default_tries}

# The first slot in FOTA_ORDER with a try left (1..9; anything else, such as 0 or garbage, is
# none); names that are not slots are skipped. When no slot has a try left, every slot gets its
# tries again and the order is kept: a device in the field has nobody at its console, so a
# transient failure heals and a device whose slots are both broken keeps alternating rather than
# stopping here. setexpr prints hex, which is the same digit for 0..8.
setenv fota_slot
for fota_pass in 1 2; do
  if test -z "${fota_slot}"; then
    for fota_s in ${FOTA_ORDER}; do
      if test -z "${fota_slot}" && test "${fota_s}" = a; then
        for fota_n in 1 2 3 4 5 6 7 8 9; do
          if test "${FOTA_A_LEFT}" = "${fota_n}"; then setenv fota_slot a; fi
        done
        if test "${fota_slot}" = a; then setexpr FOTA_A_LEFT ${FOTA_A_LEFT} - 1; fi
      fi
      if test -z "${fota_slot}" && test "${fota_s}" = b; then
        for fota_n in 1 2 3 4 5 6 7 8 9; do
          if test "${FOTA_B_LEFT}" = "${fota_n}"; then setenv fota_slot b; fi
        done
        if test "${fota_slot}" = b; then setexpr FOTA_B_LEFT ${FOTA_B_LEFT} - 1; fi
      fi
    done
    if test -z "${fota_slot}" && test "${fota_pass}" = 1; then
      echo "fota: no slot has tries left; every slot gets ${fota_default_tries} again"
      setenv FOTA_A_LEFT ${fota_default_tries}
      setenv FOTA_B_LEFT ${fota_default_tries}
    fi
  fi
done
# FOTA_ORDER names no slot at all: boot slot a.
test -n "${fota_slot}" || setenv fota_slot a

if test "${fota_slot}" = a; then
  setenv fota_part ${fota_a_part}
  setenv fota_root ${fota_a_root}
else
  setenv fota_part ${fota_b_part}
  setenv fota_root ${fota_b_root}
fi
# The count must be on the medium before the kernel runs: a boot that never reaches the agent
# has used its try. The loop's scratch variables are not worth saving.
setenv fota_pass
setenv fota_s
setenv fota_n
if test -n "${fota_envfile}"; then
  # env export skips a variable that is not set (FOTA_TRIAL when no trial is pending).
  env export -c -s ${fota_env_size} ${fota_env_addr} FOTA_ORDER FOTA_A_LEFT FOTA_B_LEFT FOTA_TRIAL
  fatwrite ${fota_iface} ${fota_devnum}:${fota_env_part} ${fota_env_addr} ${fota_envfile} ${fota_env_size}
else
  saveenv
fi

echo "fota: booting slot ${fota_slot} (tries left: a=${FOTA_A_LEFT} b=${FOTA_B_LEFT}, order: ${FOTA_ORDER})"
setenv bootargs "root=${fota_root} ${fota_cmdline} fota.slot=${fota_slot}"
if load ${fota_iface} ${fota_devnum}:${fota_part} ${kernel_addr_r} ${fota_kernel}; then
  # booti reads the compressed size of an Image.gz from kernel_comp_size: at least the file.
  if test -n "${kernel_comp_addr_r}"; then setenv kernel_comp_size ${filesize}; fi
  setenv fota_initrd_arg -
  if test -n "${fota_initrd}" && load ${fota_iface} ${fota_devnum}:${fota_part} ${ramdisk_addr_r} ${fota_initrd}; then
    setenv fota_initrd_arg ${ramdisk_addr_r}:${filesize}
  fi
  if test -n "${fota_fdt}" && load ${fota_iface} ${fota_devnum}:${fota_part} ${fdt_addr_r} ${fota_fdt}; then
    setenv fota_fdt_addr ${fdt_addr_r}
  else
    setenv fota_fdt_addr ${fdtcontroladdr}
  fi
  if test "${fota_bootcmd}" = bootz; then
    bootz ${kernel_addr_r} ${fota_initrd_arg} ${fota_fdt_addr}
  else
    booti ${kernel_addr_r} ${fota_initrd_arg} ${fota_fdt_addr}
  fi
fi
# Only reached when the slot could not be loaded or booted: its try is spent, so a reset moves on
# to the next slot once its tries are gone.
echo "fota: slot ${fota_slot} did not boot; resetting"
reset

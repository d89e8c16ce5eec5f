#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Realistic update images for the delta benchmark (issue 22): two ext4 root filesystems and two
# application bundles built from Debian packages, the second "v2" as a real update makes it.
#
#   bench/delta/make-images.sh OUT_DIR
#
# v1 and v2 hold the same 60 packages; v2 upgrades a few of them (OpenSSL, zstd, the MQTT client,
# time zones, CA certificates: `upgrades` below) from the oldest version the Debian archive still
# carries (bookworm, bookworm-updates and bookworm-security differ) to the newest, and changes a
# few configuration files. The
# .debs come from the Debian archive through apt (`apt-get download`, cached in OUT_DIR/debs), the
# only network this project uses; which versions differ is printed and written to
# OUT_DIR/versions.txt, since the archive moves on. The images are reproducible for a given set of
# .debs: fixed UUIDs, hash seed and time stamps, files added in name order.
#
# Writes OUT_DIR/rootfs-v1.ext4, rootfs-v2.ext4 (ext4 made with mke2fs -d) and app-v1.tar,
# app-v2.tar (the OpenSSL command line tool and its library, as an application bundle).
set -euo pipefail

out=${1:?usage: bench/delta/make-images.sh OUT_DIR}
mkdir -p "$out/debs"
out=$(cd "$out" && pwd)

for tool in apt-get apt-cache dpkg-deb mke2fs tar; do
  command -v "$tool" >/dev/null || { echo "make-images.sh: $tool is missing (Debian: apt, dpkg, e2fsprogs, tar)" >&2; exit 1; }
done

# A small device root file system: a shell userland, systemd, TLS, time zones, an MQTT client.
packages=(base-files base-passwd bash coreutils dash diffutils findutils grep gzip hostname sed tar
  libc6 libc-bin libgcc-s1 libstdc++6 libssl3 openssl ca-certificates libzstd1 zstd liblzma5 libbz2-1.0
  zlib1g libacl1 libattr1 libselinux1 libpcre2-8-0 libcap2 libcrypt1 libtinfo6 libmd0 libaudit1
  libsystemd0 libudev1 systemd udev libkmod2 kmod libmount1 libblkid1 libuuid1 util-linux
  libsqlite3-0 libmosquitto1 mosquitto-clients libcjson1 tzdata e2fsprogs libext2fs2 libcom-err2 libss2
  procps libproc2-0 iproute2 libmnl0 libelf1 libbpf1 libcap2-bin)
# The application bundle: a command line tool and its library, updated together.
app_packages=(openssl libssl3)
# What v2 upgrades: a security update of OpenSSL, zstd and the MQTT client, new time zones and CA
# certificates. Every other package is the archive's newest in both.
upgrades=(openssl libssl3 zstd libzstd1 libmosquitto1 mosquitto-clients tzdata ca-certificates)

# Every version the archive offers of every package, from one apt-cache call: "package version".
all_versions=$(apt-cache madison "${packages[@]}" "${app_packages[@]}" |
  awk -F'|' '$3 ~ /Packages/ {gsub(/ /, "", $1); gsub(/ /, "", $2); print $1, $2}' | sort -u)

fetch() {  # fetch PACKAGE VERSION -> path of the .deb
  local pkg=$1 ver=$2 file
  file=$(ls "$out/debs/${pkg}_${ver//:/%3a}_"*.deb 2>/dev/null | head -1 || true)
  if [[ -z "$file" ]]; then
    (cd "$out/debs" && apt-get download -q -o APT::Sandbox::User=root "$pkg=$ver" >/dev/null) || {
      echo "make-images.sh: apt-get download $pkg=$ver failed; run 'apt-get update' (network to the Debian archive)" >&2
      exit 1
    }
    file=$(ls "$out/debs/${pkg}_${ver//:/%3a}_"*.deb | head -1)
  fi
  echo "$file"
}

: >"$out/versions.txt"
declare -A old new
for pkg in "${packages[@]}" "${app_packages[@]}"; do
  [[ -n "${new[$pkg]:-}" ]] && continue
  mapfile -t vs < <(awk -v p="$pkg" '$1 == p {print $2}' <<<"$all_versions" | sort -r -V)
  if [[ ${#vs[@]} -eq 0 ]]; then
    echo "make-images.sh: the archive has no package $pkg; run 'apt-get update'" >&2
    exit 1
  fi
  new[$pkg]=${vs[0]}
  old[$pkg]=${vs[0]}
  if [[ " ${upgrades[*]} " == *" $pkg "* ]]; then
    old[$pkg]=${vs[-1]}
    if [[ "${old[$pkg]}" != "${new[$pkg]}" ]]; then
      echo "$pkg ${old[$pkg]} -> ${new[$pkg]}" | tee -a "$out/versions.txt"
    fi
  fi
done

# SOURCE_DATE_EPOCH-like fixed time for everything that is not a packaged file.
export E2FSPROGS_FAKE_TIME=1767225600  # 2026-01-01
stamp=@1767225600

unpack() {  # unpack DIR VERSION_VAR PACKAGES...
  local dir=$1 which=$2 pkg ver
  shift 2
  rm -rf "$dir"
  mkdir -p "$dir"
  for pkg in "$@"; do
    if [[ "$which" == old ]]; then ver=${old[$pkg]}; else ver=${new[$pkg]}; fi
    dpkg-deb -x "$(fetch "$pkg" "$ver")" "$dir"
  done
}

configure() {  # configure ROOT VERSION: the files a product build writes itself
  local root=$1 v=$2
  mkdir -p "$root/etc/fota" "$root/var/lib/fota" "$root/data"
  echo "device-$v" >"$root/etc/hostname"
  cat >"$root/etc/fota/device.yaml" <<EOF
# fota-device configuration, product image $v
mqtt:
  broker_uri: ssl://fota.example.net:8883
  keepalive_seconds: $([[ $v == v1 ]] && echo 60 || echo 30)
bootloader: grub
log_level: $([[ $v == v1 ]] && echo info || echo warn)
EOF
  printf 'NAME="fota demo device"\nVERSION_ID="%s"\nBUILD_ID="%s"\n' "$v" "$v-20260101" >"$root/etc/os-release.fota"
  find "$root" -newermt "$stamp" -exec touch -h -d "$stamp" {} + 2>/dev/null || true
}

make_rootfs() {  # make_rootfs VERSION_VAR NAME
  local which=$1 name=$2 root="$out/work/root-$2" kib
  unpack "$root" "$which" "${packages[@]}"
  configure "$root" "$name"
  # Room for the content plus a quarter, in whole MiB; unused blocks stay zero.
  kib=$(du -s --apparent-size -k "$root" | cut -f1)
  kib=$(((kib * 5 / 4 / 1024 + 16) * 1024))
  rm -f "$out/rootfs-$name.ext4"
  mke2fs -q -F -t ext4 -b 4096 -d "$root" -L rootfs \
    -U 6f7461d1-0000-4000-8000-000000000001 \
    -E root_owner=0:0,hash_seed=6f7461d1-0000-4000-8000-000000000002,lazy_itable_init=0,lazy_journal_init=0 \
    "$out/rootfs-$name.ext4" "${kib}k"
}

make_app() {  # make_app VERSION_VAR NAME
  local which=$1 name=$2 root="$out/work/app-$2"
  unpack "$root" "$which" "${app_packages[@]}"
  tar --sort=name --mtime="$stamp" --owner=0 --group=0 --numeric-owner -C "$root" -cf "$out/app-$name.tar" usr
}

make_rootfs old v1
make_rootfs new v2
make_app old v1
make_app new v2
rm -rf "$out/work"
ls -l "$out"/rootfs-v?.ext4 "$out"/app-v?.tar
echo "$(wc -l <"$out/versions.txt") package(s) differ between v1 and v2 ($out/versions.txt)"

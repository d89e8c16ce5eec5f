#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Makes the arm64 sysroot the cross build links against and its tests run in (docs/CLIENT.md,
# "Cross-compiling"): every library in scripts/deps-arm64.txt with its run-time dependencies,
# downloaded from Debian's archive and unpacked, never installed.
#
#   cross-sysroot.sh [--print-dir]     (root: makes it; anyone: checks it, --print-dir prints it)
# The sysroot is FOTA_CROSS_CACHE/arm64/sysroot (default /var/cache/fota-cross). Quick and
# silent when the sysroot was made from the current list.
#
# Why not `apt-get install libssl-dev:arm64 ...` (multiarch): an arm64 library package must have
# the very version of its amd64 twin, so apt upgrades the host's libssl-dev, zlib1g-dev,
# linux-libc-dev and two dozen more on the way (every header they ship changes, and with it the
# compiler cache of every build on the machine), and it removes the host's libyaml-cpp-dev, which
# is not Multi-Arch: same. A sysroot of unpacked packages changes nothing on the host.
# The C library's -dev packages are left out: the cross toolchain (crossbuild-essential-arm64)
# brings its own in /usr/aarch64-linux-gnu, and a second copy of <stdlib.h> on an -isystem path
# breaks libstdc++'s #include_next.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
arch=arm64
root=${FOTA_CROSS_CACHE:-/var/cache/fota-cross}/$arch
sysroot=$root/sysroot
list=$here/deps-$arch.txt
excluded=(libc6-dev linux-libc-dev libcrypt-dev libnsl-dev libtirpc-dev libc-dev-bin)

if [[ "${1:-}" == --print-dir ]]; then
  echo "$sysroot"
  exit 0
fi

mapfile -t wanted < <(grep -v '^\s*#' "$list" | sed '/^\s*$/d')
# The stamp names the list and the archive's versions of it: a changed list or a point release
# in the archive remakes the sysroot.
stamp_of() { { cat "$list"; apt-cache policy "${wanted[@]/%/:$arch}" 2>/dev/null | grep Candidate; } | sha256sum | cut -d' ' -f1; }
if [[ -f "$sysroot/.fota-sysroot" ]] && [[ "$(cat "$sysroot/.fota-sysroot")" == "$(stamp_of)" ]]; then
  exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
  echo "fota: the $arch sysroot in $sysroot is missing or out of date; run scripts/cross-sysroot.sh" \
    "(or scripts/install-deps.sh) as root to make it" >&2
  exit 1
fi

# apt must know the architecture's package lists to download from them (nothing is installed).
if ! dpkg --print-foreign-architectures | grep -qx "$arch"; then
  echo "fota: adding the $arch architecture to dpkg/apt (for downloading its packages only)"
  dpkg --add-architecture "$arch"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
elif ! apt-cache show "libc6:$arch" >/dev/null 2>&1; then
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
fi

# The closure: what apt would install on an empty system, read from a simulation against an
# empty dpkg status, so what the host has installed does not matter. Packages of the target
# architecture and architecture-independent ones; host tools they pull in are not wanted.
empty_status=$(mktemp)
trap 'rm -f "$empty_status"' EXIT
closure=$(apt-get install -s -q --no-install-recommends -o Dir::State::status="$empty_status" \
  "${wanted[@]/%/:$arch}" | sed -n "s/^Inst \([^ ]*\) .*\[\($arch\|all\)\].*/\1/p" | sort -u)
[[ -n "$closure" ]] || { echo "fota: apt resolved no $arch packages for $list" >&2; exit 1; }

echo "fota: making the $arch sysroot in $sysroot ($(wc -w <<<"$closure") packages)"
rm -rf "$root/debs.tmp" "$sysroot.tmp"
mkdir -p "$root/debs.tmp" "$sysroot.tmp"
pkgs=()
# Names as apt printed them: libssl3:arm64 for the target's packages, googletest for "all" ones.
for p in $closure; do
  skip=0
  for x in "${excluded[@]}"; do [[ "${p%:"$arch"}" == "$x" ]] && skip=1; done
  ((skip)) || pkgs+=("$p")
done
# apt's download sandbox user cannot write a root-owned directory; apt checks every file against
# the signed archive index either way.
(cd "$root/debs.tmp" && apt-get download -q -o APT::Sandbox::User=root "${pkgs[@]}" >/dev/null)
for deb in "$root"/debs.tmp/*.deb; do dpkg-deb -x "$deb" "$sysroot.tmp"; done
# Absolute symbolic links (libfoo.so -> /lib/aarch64-linux-gnu/libfoo.so.1) would point into the
# host; make them relative to the sysroot.
while IFS= read -r -d '' link; do
  target=$(readlink "$link")
  ln -sfn "$(realpath -m --relative-to="$(dirname "$link")" "$sysroot.tmp$target")" "$link"
done < <(find "$sysroot.tmp" -type l -lname '/*' -print0)
stamp_of >"$sysroot.tmp/.fota-sysroot"
rm -rf "$sysroot" "$root/debs"
mv "$sysroot.tmp" "$sysroot"
mv "$root/debs.tmp" "$root/debs"
echo "fota: $arch sysroot ready: $sysroot"

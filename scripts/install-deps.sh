#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Installs the Debian 12 packages in scripts/deps.txt that are missing. Skips apt entirely
# when everything is present; fails with a clear message when not root and something is missing.
# Then fetches the kernel the amd64 VM proof boots (tests/vm) into FOTA_VM_CACHE (default
# /var/cache/fota-vm) unless it is there already; without root it only says how.
# --arm64 also makes the arm64 sysroot of the cross build (scripts/cross-sysroot.sh) and fetches the
# arm64 VM proof's kernel: only scripts/cross-build.sh and tests/vm/run-vm-test.sh --arch arm64 use
# them (neither is part of the test suite), so a plain set-up does not spend minutes on them.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
arm64=0
case "${1:-}" in
  "") ;;
  --arm64) arm64=1 ;;
  *)
    echo "usage: scripts/install-deps.sh [--arm64]" >&2
    echo "  --arm64  also the arm64 sysroot and the arm64 VM kernel (for cross-build.sh, run-vm-test.sh --arch arm64)" >&2
    exit 2
    ;;
esac

# fetch_vm_kernel ARCH: the .deb of the kernel linux-image-cloud-ARCH points at, downloaded (not
# installed) once. arm64 needs apt to know the arm64 architecture (cross-sysroot.sh adds it).
fetch_vm_kernel() {
  local arch=$1 cache=${FOTA_VM_CACHE:-/var/cache/fota-vm}
  if compgen -G "$cache/linux-image-[0-9]*-cloud-${arch}_*_${arch}.deb" >/dev/null; then return 0; fi
  if [[ $(id -u) -ne 0 ]]; then
    echo "fota: the $arch VM test's kernel is not in $cache; run scripts/install-deps.sh as root to fetch it" >&2
    return 0
  fi
  local pkg
  pkg_of_meta() {
    apt-cache depends "linux-image-cloud-$arch:$arch" 2>/dev/null |
      sed -n "s/^ *Depends: \\(linux-image-[0-9][^ :]*-cloud-$arch\\)\\(:$arch\\)*\$/\\1/p" | head -n 1
  }
  pkg=$(pkg_of_meta)
  if [[ -z "$pkg" ]]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    pkg=$(pkg_of_meta)
  fi
  [[ -n "$pkg" ]] || { echo "fota: apt knows no linux-image-cloud-$arch (check /etc/apt/sources.list)" >&2; return 1; }
  pkg=$pkg:$arch
  echo "fota: downloading $pkg for the VM test into $cache"
  mkdir -p "$cache"
  # apt's download sandbox user cannot write a root-owned directory; the file is checked by apt
  # against the signed archive index either way.
  (cd "$cache" && apt-get download -q -o APT::Sandbox::User=root "$pkg")
}
mapfile -t wanted < <(grep -v '^\s*#' "$here/deps.txt" | sed '/^\s*$/d')
missing=()
for pkg in "${wanted[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$pkg")
done
# The console's browser tests and benchmark (tests/browser) drive Debian's chromium with
# playwright-core from npm, at the version tests/browser/package-lock.json pins (npm ci: exactly
# the lockfile); never at build or test time.
fetch_node_modules() {
  local dir="$here/../tests/browser"
  if [[ -f "$dir/node_modules/.package-lock.json" && "$dir/node_modules/.package-lock.json" -nt "$dir/package-lock.json" ]]; then
    return 0
  fi
  if ! command -v npm >/dev/null 2>&1; then
    [[ $(id -u) -eq 0 ]] || { echo "fota: npm is missing; run scripts/install-deps.sh as root (Debian package npm)" >&2; return 1; }
    echo "fota: installing Debian's npm"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q npm
  fi
  echo "fota: installing the browser tests' npm packages (tests/browser/package-lock.json)"
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
}
# After the packages: the sysroot needs apt, the arm64 kernel the architecture the sysroot adds.
fetch_downloads() {
  fetch_node_modules
  fetch_vm_kernel amd64
  ((arm64)) || return 0
  if [[ $(id -u) -eq 0 ]]; then "$here/cross-sysroot.sh"; else "$here/cross-sysroot.sh" || true; fi
  fetch_vm_kernel arm64
}
if ((${#missing[@]} == 0)); then
  fetch_downloads
  exit 0
fi
echo "fota: installing missing Debian packages: ${missing[*]}"
if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO=sudo
  else
    echo "fota: these Debian packages are missing and installing them needs root:" >&2
    echo "  ${missing[*]}" >&2
    echo "Run this command as root (or with sudo), or install them with:" >&2
    echo "  sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
else
  SUDO=
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fetch_downloads

#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Installs the Debian 12 packages in scripts/deps.txt that are missing. Skips apt entirely
# when everything is present; fails with a clear message when not root and something is missing.
# Then fetches the kernel the VM proof boots (tests/vm) into FOTA_VM_CACHE (default
# /var/cache/fota-vm) unless it is there already; without root it only says how, and the VM test
# reports itself skipped with the same advice.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

# The .deb of the kernel linux-image-cloud-amd64 points at, downloaded (not installed) once.
fetch_vm_kernel() {
  local cache=${FOTA_VM_CACHE:-/var/cache/fota-vm}
  if compgen -G "$cache/linux-image-[0-9]*-cloud-amd64_*_amd64.deb" >/dev/null; then return 0; fi
  if [[ $(id -u) -ne 0 ]]; then
    echo "fota: the VM test's kernel is not in $cache; run scripts/install-deps.sh as root to fetch it" >&2
    return 0
  fi
  local pkg
  pkg_of_meta() {
    apt-cache depends linux-image-cloud-amd64 2>/dev/null |
      sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*-cloud-amd64\)$/\1/p' | head -n 1
  }
  pkg=$(pkg_of_meta)
  if [[ -z "$pkg" ]]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    pkg=$(pkg_of_meta)
  fi
  [[ -n "$pkg" ]] || { echo "fota: apt knows no linux-image-cloud-amd64 (check /etc/apt/sources.list)" >&2; return 1; }
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
if ((${#missing[@]} == 0)); then
  fetch_vm_kernel
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
fetch_vm_kernel

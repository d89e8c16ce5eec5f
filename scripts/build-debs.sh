#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# scripts/build-debs.sh [OUT_DIR]: the Debian packages (README "Install"; cmake/FotaPackaging.cmake)
#   fota-device, fota-orchestrator, fota-broker-plugin, libfota-client-dev
# built from build/ (RelWithDebInfo, prefix /usr) into OUT_DIR (default build/debs).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
export FOTA_ROOT="$root"
. "$root/scripts/lib.sh"
out=$(realpath -m "${1:-$root/build/debs}")
# Everything the four packages install, and nothing else (no tests, no benchmarks).
fota_build_targets fota-device fota-orchestrator fotactl fota_broker_plugin fota_client_uboot \
  fota_client_mqtt fota_client_mosquitto
cpack --config "$root/build/CPackConfig.cmake" -B "$out"
rm -rf "$out/_CPack_Packages"
ls -l "$out"/*.deb

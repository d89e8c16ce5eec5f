#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Regenerates the seed corpus fuzz/corpus/<target>/ (committed; small on purpose):
#  - binary seeds from real encoded messages (fota-fuzz-seeds: what an UpdateEngine publishes and
#    journals while installing a signed artifact, commands, manifests, bundles, broker sessions);
#  - text seeds from the documented examples: client/device/device.yaml (and its GRUB and
#    simulated variants) and the rollout spec of docs/ORCHESTRATOR.md, plus its canonical JSON.
# Usage: fuzz/make-seeds.sh [BUILD_DIR]   (a FOTA_FUZZ build; default build-fuzz, as
# scripts/test.sh --fuzz makes it)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build-fuzz}
corpus=$root/fuzz/corpus
cmake --build "$build" --target fota-fuzz-seeds
rm -rf "$corpus"
mkdir -p "$corpus/rollout_spec" "$corpus/device_config"

# Text seeds first: fota-fuzz-seeds adds the canonical JSON of each rollout spec.
awk '/^## Rollout spec/{f=1} f&&/^```yaml/{p=1;next} p&&/^```/{exit} p' "$root/docs/ORCHESTRATOR.md" \
  >"$corpus/rollout_spec/documented.yaml"
cat >"$corpus/rollout_spec/minimal.yaml" <<'YAML'
name: all-at-once
artifact: 0123456789abcdef0123456789abcdef
target: {all: true}
waves: [{size: 100%}]
YAML
cp "$root/client/device/device.yaml" "$corpus/device_config/uboot.yaml"
sed -e 's/^bootloader: uboot/bootloader: grub/' -e 's|^fw_env_config: .*|grubenv: /boot/grub/grubenv|' \
  "$root/client/device/device.yaml" >"$corpus/device_config/grub.yaml"
sed -e 's/^bootloader: uboot/bootloader: simulated/' -e '/^fw_env_config:/d' -e '/^slots:/,/^  b:/d' \
  "$root/client/device/device.yaml" >"$corpus/device_config/simulated.yaml"
cat >>"$corpus/device_config/simulated.yaml" <<'YAML'
files: {app.conf: /etc/myapp/app.conf}
modules_dir: modules/
attributes: {tags: "canary,lab", group: plant-3}
transport: mosquitto
boot_tries: 3
YAML

"$build/fuzz/fota-fuzz-seeds" "$corpus"
du -sh "$corpus"/*

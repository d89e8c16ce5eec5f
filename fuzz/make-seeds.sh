#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Regenerates the seed corpus fuzz/corpus/<target>/ (committed; small on purpose):
#  - binary seeds from real encoded messages (fota-fuzz-seeds: what an UpdateEngine publishes and
#    journals while installing a signed artifact, commands, manifests, bundles, broker sessions);
#  - text seeds from the documented examples: client/device/device.yaml (and its GRUB and
#    simulated variants), the rollout spec of docs/ORCHESTRATOR.md plus its canonical JSON, and
#    orchestrator/service/orchestrator.yaml (and variants with every section).
# Usage: fuzz/make-seeds.sh [BUILD_DIR]   (a FOTA_FUZZ build; default build-fuzz, as
# scripts/test.sh --fuzz makes it)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build-fuzz}
corpus=$root/fuzz/corpus
cmake --build "$build" --target fota-fuzz-seeds
rm -rf "$corpus"
mkdir -p "$corpus/rollout_spec" "$corpus/device_config" "$corpus/orchestrator_config"

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
decryption_key: device-x25519.key
certificate: {renew: true, renew_before: 30d, response_timeout: 10m, retry_initial: 1m, retry_max: 6h}
YAML

# The orchestrator's installed config, and the same with every optional section switched on.
cp "$root/orchestrator/service/orchestrator.yaml" "$corpus/orchestrator_config/installed.yaml"
sed -e 's/^  # \(tls:\|  cert:\|  key:\|  client_ca:\)/  \1/' -e 's/^# \(audit:\|  checkpoint_\)/\1/' \
  "$root/orchestrator/service/orchestrator.yaml" >"$corpus/orchestrator_config/everything.yaml"
cat >>"$corpus/orchestrator_config/everything.yaml" <<'YAML'
revocation: {deny_list: revoked.txt}
pki: {issuing_ca: pki/issuing/fleet, device_cert_validity: 90d}
artifacts_dir: artifacts
default_link_rate: 250000
default_device_time: 45s
YAML
cat >"$corpus/orchestrator_config/relative.yaml" <<'YAML'
broker: {uri: "ssl://[::1]:8883", ca: ca.crt, cert: o.crt, key: o.key, client_id: orch-1}
data_dir: .
trusted_keys: keys
command_key: command.key
http: {listen: 0.0.0.0, port: 0, max_body_bytes: 1048576, require_client_certificate: false}
api_tokens:
  - {name: viewer, token: "0123456789abcdef-viewer", role: viewer}
  - {name: ops, token_file: ops.token, role: operator}
tick_interval: 50ms
log_level: debug
YAML

"$build/fuzz/fota-fuzz-seeds" "$corpus"
du -sh "$corpus"/*

#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The web console in real headless chromium (docs/ORCHESTRATOR.md, "Console"), as an operator
# uses it: a real mosquitto with the fota plugin over mutual TLS, the real fota-orchestrator on
# SQLite, six real fota-device agents (one whose health check fails), and console.test.mjs driving
# Debian's chromium through playwright-core: sign in, create a rollout, start it, pause and resume
# it, watch it finish live, read the failing device's reason and open its logs; a viewer sees no
# actions. Screenshots of every page go to OUT_DIR. Fails (never skips) without chromium.
#   run-console-test.sh BUILD_DIR OUT_DIR
set -euo pipefail
build=$(cd "$1" && pwd)
out=$2
here=$(cd "$(dirname "$0")" && pwd)
export FOTA_ROOT=$(cd "$here/../.." && pwd)
. "$FOTA_ROOT/scripts/lib.sh"
chromium=${FOTA_CHROMIUM:-/usr/bin/chromium}
if [[ ! -x "$chromium" ]]; then
  echo "FAIL: no chromium at $chromium: install the Debian package chromium (scripts/install-deps.sh)" >&2
  exit 1
fi
if [[ ! -d "$here/node_modules/playwright-core" ]]; then
  echo "FAIL: playwright-core is not installed in tests/browser: run scripts/install-deps.sh" >&2
  exit 1
fi
fotactl="$build/orchestrator/fotactl"
orchestrator="$build/orchestrator/fota-orchestrator"
device_bin="$build/client/fota-device"
plugin=$(find "$build/broker-plugin" -maxdepth 1 -name '*fota_broker_plugin*.so' | head -n 1)
rm -rf "$out"
mkdir -p "$out"
work=$(mktemp -d "${TMPDIR:-/tmp}/fota-console.XXXXXX")
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  # The logs stay with the screenshots for a failed run.
  cp "$work"/*.log "$out/" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
cd "$work"

fota_fleet_keys "$fotactl" >/dev/null
mkdir -p secrets data/artifacts
head -c $((3 * 1024 * 1024)) /dev/urandom >firmware.img
"$fotactl" artifact create --image firmware.img --version 2.0.0 --hardware console-gw \
  --security-counter 2 --key keys/signing.key -o firmware-2.0.0.fota >/dev/null

mqtt_port=$(fota_free_port)
{
  fota_broker_config "$work" "$mqtt_port" "$plugin"
  echo "plugin_opt_artifact_dir $work/data/artifacts"
} >mosquitto.conf
mosquitto -c mosquitto.conf >mosquitto.stderr 2>&1 &
pids+=($!)
fota_wait_for 10 "mosquitto on port $mqtt_port" bash -c "exec 3<>/dev/tcp/127.0.0.1/$mqtt_port"

http_port=$(fota_free_port)
head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >secrets/admin.token
head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >secrets/viewer.token
{
  # A viewer's token beside the admin's (under api_tokens).
  fota_orchestrator_config "$mqtt_port" "$http_port" data admin secrets/admin.token |
    sed '/{name: admin,/a\  - {name: watcher, token_file: secrets/viewer.token, role: viewer}'
  echo "default_device_time: 3s"
} >orchestrator.yaml
"$orchestrator" --config orchestrator.yaml >orchestrator.log 2>&1 &
pids+=($!)
export FOTA_SERVER="http://127.0.0.1:$http_port"
FOTA_TOKEN=$(cat secrets/admin.token)
export FOTA_TOKEN
fota_wait_for 15 "the orchestrator API" "$fotactl" device list

devices=6
for i in $(seq 1 "$devices"); do
  id=$(printf 'gw-%02d' "$i")
  "$fotactl" pki issue-device "$id" --dir pki >/dev/null
  mkdir -p "devices/$id"
  # gw-06 fails its health check after installing: its reason shows in the console.
  health=/bin/true
  [[ $i -eq $devices ]] && health=/bin/false
  {
    fota_device_config "$id" console-gw "$mqtt_port"
    echo "progress_interval_ms: 300"
    echo "health_check: $health"
  } >"devices/$id/device.yaml"
  "$device_bin" --config "devices/$id/device.yaml" >"devices/$id.log" 2>&1 &
  pids+=($!)
done
registered() { [[ $("$fotactl" device list --json | grep -c '"online": true') -ge $devices ]]; }
fota_wait_for 60 "$devices devices to register" registered

cd "$here"
FOTA_CONSOLE_URL="$FOTA_SERVER/console/" FOTA_ADMIN_TOKEN="$FOTA_TOKEN" \
  FOTA_VIEWER_TOKEN=$(cat "$work/secrets/viewer.token") FOTA_BUNDLE="$work/firmware-2.0.0.fota" \
  FOTA_FAILING_DEVICE=gw-06 FOTA_DEVICES=$devices FOTA_SHOTS="$out" FOTA_CHROMIUM="$chromium" \
  node --test --test-reporter=spec console.test.mjs

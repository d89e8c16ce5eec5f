#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The README's demo command. Installs what is missing, builds, then runs the whole stack locally:
#   1. a fleet PKI, the orchestrator's command key and an Ed25519 signing key (fotactl), a signed
#      1 MiB firmware bundle;
#   2. mosquitto with the fota plugin over mutual TLS (identity, ACLs, chunk serving);
#   3. fota-orchestrator on its embedded SQLite store, with the bundle uploaded through its API;
#   4. a fleet of real fota-device agents (file-backed A/B slots) taken through a three-wave staged
#      rollout, watched live with `fotactl rollout watch`, then the hash-chained audit log verified;
#   5. fota-sim with 1,000 virtual devices on flaky links, connected to the same broker and driven by
#      the same orchestrator (the simulator uploads its signed image, the orchestrator runs the
#      three-wave rollout), with live progress and a JSON + HTML report.
# The orchestrator's web console (docs/ORCHESTRATOR.md, "Console") shows both rollouts live: the demo
# prints its address and the token to sign in with.
# Everything it starts is stopped on exit; each run works in a fresh .demo/<time>/ directory.
#   FOTA_DEMO_DEVICES=N       real device agents (default 12)
#   FOTA_DEMO_SIM=0           skip part 5
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
export FOTA_ROOT="$root"
. "$root/scripts/lib.sh"
devices=${FOTA_DEMO_DEVICES:-12}
# The broker holds a socket per device (1,000 simulated ones in part 5) and inherits this limit.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

fota_build_targets fotactl fota-orchestrator fota-device fota-sim fota_broker_plugin
build="$root/build"

fotactl="$build/orchestrator/fotactl"
orchestrator="$build/orchestrator/fota-orchestrator"
device_bin="$build/client/fota-device"
sim="$build/simulators/fota-sim"
plugin=$(find "$build/broker-plugin" -maxdepth 1 -name '*fota_broker_plugin*.so' | head -n 1)

run="$root/.demo/$(date +%Y%m%d-%H%M%S)"
mkdir -p "$run"
cd "$run"
echo "== fota demo: working in $run"

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "== 1. PKI, command key, signing key and a signed firmware bundle"
fota_fleet_keys "$fotactl"
mkdir -p secrets data/artifacts
head -c $((1024 * 1024)) /dev/urandom >firmware-2.0.0.img
"$fotactl" artifact create --image firmware-2.0.0.img --version 2.0.0 --hardware demo-gw \
  --security-counter 2 --key keys/signing.key -o firmware-2.0.0.fota >/dev/null
artifact_id=$("$fotactl" artifact inspect firmware-2.0.0.fota --json | sed -n 's/.*"artifact_id": "\([0-9a-f]*\)".*/\1/p')
echo "   artifact $artifact_id (version 2.0.0, 1 MiB, signed with key $(basename keys/signing.pub))"

echo "== 2. mosquitto with the fota plugin over mutual TLS"
mqtt_port=$(fota_free_port)
{
  fota_broker_config "$run" "$mqtt_port" "$plugin"
  echo "max_queued_messages 100000"
  echo "plugin_opt_artifact_dir $run/data/artifacts"
  echo "plugin_opt_stats_interval_seconds 5"
} >mosquitto.conf
mosquitto -c mosquitto.conf >mosquitto.stderr 2>&1 &
pids+=($!)
fota_wait_for 10 "mosquitto on port $mqtt_port" bash -c "exec 3<>/dev/tcp/127.0.0.1/$mqtt_port"
echo "   broker on ssl://127.0.0.1:$mqtt_port (log: $run/mosquitto.log)"

echo "== 3. fota-orchestrator on SQLite"
http_port=$(fota_free_port)
head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >secrets/demo.token
{
  fota_orchestrator_config "$mqtt_port" "$http_port" data demo secrets/demo.token
  echo "default_device_time: 3s"
} >orchestrator.yaml
"$orchestrator" --config orchestrator.yaml >orchestrator.log 2>&1 &
pids+=($!)
export FOTA_SERVER="http://127.0.0.1:$http_port"
FOTA_TOKEN=$(cat secrets/demo.token)
export FOTA_TOKEN
fota_wait_for 15 "the orchestrator API" "$fotactl" device list
echo "   web console: $FOTA_SERVER/console/ (open it in a browser on this machine to watch the rollouts live)"
echo "   sign in with the API token $FOTA_TOKEN (admin; also in $run/secrets/demo.token)"
"$fotactl" artifact upload firmware-2.0.0.fota

echo "== 4. $devices fota-device agents, three-wave rollout"
zones=(Europe/Berlin America/New_York Asia/Tokyo UTC)
for i in $(seq 1 "$devices"); do
  id=$(printf 'demo-%04d' "$i")
  "$fotactl" pki issue-device "$id" --dir pki >/dev/null
  mkdir -p "devices/$id"
  {
    fota_device_config "$id" demo-gw "$mqtt_port"
    echo "time_zone: ${zones[$((i % ${#zones[@]}))]}"
    echo "progress_interval_ms: 500"
  } >"devices/$id/device.yaml"
  "$device_bin" --config "devices/$id/device.yaml" >"devices/$id/device.log" 2>&1 &
  pids+=($!)
done
registered() { [[ $("$fotactl" device list --json | grep -c '"online": true') -ge $devices ]]; }
fota_wait_for 60 "$devices devices to register" registered
echo "   $devices devices online"

cat >rollout.yaml <<CONF
name: demo-2.0.0
artifact: $artifact_id
target: {hardware: [demo-gw]}
waves:
  - {size: 1, success_ratio: 100%, failure_threshold: 0, soak: 2s}
  - {size: 25%, success_ratio: 90%, failure_threshold: 10%, soak: 2s}
  - {size: 100%, success_ratio: 90%, failure_threshold: 10%}
max_concurrent: 8
on_breach: pause
CONF
rollout_id=$("$fotactl" rollout create -f rollout.yaml --json | sed -n 's/^  "id": "\([^"]*\)".*/\1/p' | head -n 1)
"$fotactl" rollout plan "$rollout_id"
echo "   live in the console: $FOTA_SERVER/console/#/rollouts/$rollout_id"
"$fotactl" rollout start "$rollout_id" >/dev/null
"$fotactl" rollout watch "$rollout_id" --interval 1
"$fotactl" rollout status "$rollout_id"
"$fotactl" audit verify

if [[ "${FOTA_DEMO_SIM:-1}" != "0" ]]; then
  echo "== 5. fota-sim: 1,000 virtual devices on flaky links, three waves run by the same orchestrator"
  "$sim" "$root/scripts/demo/fleet-1000-flaky.yaml" --out "$run/sim-report" \
    --broker-port "$mqtt_port" --ca-dir pki --orchestrator "$FOTA_SERVER" \
    --token-file secrets/demo.token --signing-key keys/signing.key \
    --command-keys pki/command/command.pub || sim_status=$?
  sim_rollout=$(sed -n 's/.*"rollout_id": "\([^"]*\)".*/\1/p' "$run/sim-report/report.json" 2>/dev/null | head -n 1)
  if [[ -n "$sim_rollout" ]]; then "$fotactl" rollout status "$sim_rollout"; fi
  "$fotactl" audit verify
  if [[ -f "$run/sim-report/report.html" ]]; then
    echo "   report: $run/sim-report/report.html (JSON: $run/sim-report/report.json)"
  fi
fi
echo "== demo finished; everything it started is being stopped. Files: $run"
exit "${sim_status:-0}"

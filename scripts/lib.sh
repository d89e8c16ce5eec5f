# SPDX-License-Identifier: Apache-2.0
# Shared by scripts/test.sh, scripts/demo.sh and tests/vm/run-vm-test.sh.
# fota_configure BUILD_DIR [extra cmake args...]
fota_configure() {
  local build_dir=$1
  shift
  # The Debian layout (/usr, /etc, multiarch libdir): what the .deb packages and firmware root
  # file systems get (cmake/FotaPackaging.cmake); `cmake --install --prefix DIR` still goes elsewhere.
  local args=(-G Ninja -DFOTA_WERROR="${FOTA_WERROR:-ON}" -DCMAKE_INSTALL_PREFIX=/usr "$@")
  # ccache (when installed) keys on paths relative to the checkout, so a fresh clone reuses the cache.
  if command -v ccache >/dev/null 2>&1; then
    # The settings ride in the launcher, so a later `cmake --build` from any shell hits as well.
    local launcher="env;CCACHE_BASEDIR=$FOTA_ROOT;CCACHE_NOHASHDIR=1;ccache"
    args+=(-DCMAKE_CXX_COMPILER_LAUNCHER="$launcher" -DCMAKE_C_COMPILER_LAUNCHER="$launcher")
    export CCACHE_BASEDIR="$FOTA_ROOT" CCACHE_NOHASHDIR=1
  fi
  cmake -S "$FOTA_ROOT" -B "$build_dir" "${args[@]}"
}

# fota_build_targets TARGET...: install missing packages, then configure and build the given
# targets in $FOTA_ROOT/build (RelWithDebInfo), the tree the demo and the scenario runner use.
fota_build_targets() {
  "$FOTA_ROOT/scripts/install-deps.sh"
  fota_configure "$FOTA_ROOT/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build "$FOTA_ROOT/build" -j"$(nproc)" --target "$@"
}

# ---- Running the stack by hand (scripts/demo.sh, tests/vm/run-vm-test.sh) ----------------------
# fota_free_port: a random TCP port nothing listens on at 127.0.0.1 (bind it soon after).
fota_free_port() {
  local port
  for _ in $(seq 1 200); do
    port=$((20000 + RANDOM % 40000))
    if ! ss -Hltn "sport = :$port" 2>/dev/null | grep -q .; then
      echo "$port"
      return 0
    fi
  done
  echo "fota: no free loopback port found" >&2
  return 1
}

# fota_wait_for SECONDS DESCRIPTION COMMAND...: polls COMMAND (output discarded) until it
# succeeds; after SECONDS says what it waited for and returns 1.
fota_wait_for() {
  local seconds=$1 what=$2
  shift 2
  local deadline=$((SECONDS + seconds))
  while ((SECONDS < deadline)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  echo "fota: timed out after ${seconds}s waiting for $what" >&2
  return 1
}

# fota_broker_config WORK_DIR PORT PLUGIN: the mosquitto.conf of a local broker with the fota
# plugin over mutual TLS on 127.0.0.1:PORT (PKI from `fotactl pki` in WORK_DIR/pki, log in
# WORK_DIR/mosquitto.log). Callers append their own lines (plugin_opt_* after this).
fota_broker_config() {
  local work=$1 port=$2 plugin=$3
  cat <<CONF
per_listener_settings false
allow_anonymous true
persistence false
user $(id -un)
log_dest file $work/mosquitto.log
connection_messages true
listener $port 127.0.0.1
cafile $work/pki/ca.crt
certfile $work/pki/broker/broker.crt
keyfile $work/pki/broker/broker.key
require_certificate true
use_identity_as_username false
plugin $plugin
CONF
}

# fota_fleet_keys FOTACTL [BROKER_IP...]: every key and certificate a local stack needs, made with
# fotactl in the working directory: pki/ (the fleet CA; a broker certificate for localhost,
# 127.0.0.1 and each BROKER_IP; the fota-orchestrator certificate; the orchestrator's command key
# pki/command/command.key, whose command.pub every device trusts as its command_keys) and the
# artifact signing key keys/signing.key (keys/signing.pub). Device certificates are the caller's.
fota_fleet_keys() {
  local fotactl=$1
  shift
  local ips=(--ip 127.0.0.1) ip
  for ip in "$@"; do ips+=(--ip "$ip"); done
  "$fotactl" pki init --dir pki >/dev/null
  "$fotactl" pki issue-broker broker --dir pki --dns localhost "${ips[@]}" >/dev/null
  "$fotactl" pki issue-orchestrator fota-orchestrator --dir pki >/dev/null
  "$fotactl" pki command-key --dir pki
  mkdir -p keys
  "$fotactl" keys generate -o keys/signing
}

# fota_device_config ID HARDWARE MQTT_PORT: the device.yaml of a local fota-device in
# devices/ID/ (paths relative to it, to the pki/ and keys/ fota_fleet_keys makes, the device's
# certificate issued by `fotactl pki issue-device ID --dir pki`). Callers append their own keys.
fota_device_config() {
  local id=$1 hardware=$2 mqtt_port=$3
  cat <<CONF
device_id: $id
hardware_type: $hardware
broker: ssl://127.0.0.1:$mqtt_port
ca: ../../pki/ca.crt
cert: ../../pki/device/$id.crt
key: ../../pki/device/$id.key
trust: ../../keys/signing.pub
command_keys: ../../pki/command/command.pub
state_dir: state/
factory_version: 1.0.0
CONF
}

# fota_orchestrator_config MQTT_PORT HTTP_PORT DATA_DIR TOKEN_NAME TOKEN_FILE: the
# orchestrator.yaml of a local fota-orchestrator (paths relative to the working directory, as
# fota_fleet_keys makes them: pki/, keys/signing.pub). Callers append their own keys.
fota_orchestrator_config() {
  local mqtt_port=$1 http_port=$2 data=$3 token_name=$4 token_file=$5
  cat <<CONF
broker:
  uri: ssl://127.0.0.1:$mqtt_port
  ca: pki/ca.crt
  cert: pki/orchestrator/fota-orchestrator.crt
  key: pki/orchestrator/fota-orchestrator.key
  client_id: fota-orchestrator
data_dir: $data
artifacts_dir: $data/artifacts
trusted_keys: keys/signing.pub
command_key: pki/command/command.key
http: {listen: 127.0.0.1, port: $http_port}
api_tokens:
  - {name: $token_name, token_file: $token_file, role: admin}
tick_interval: 200ms
log_level: info
CONF
}

#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# run-deb-test.sh BUILD_DIR WORK_DIR: the Debian packages of BUILD_DIR (cmake/FotaPackaging.cmake),
# built with cpack and installed into a throwaway root under WORK_DIR, checked as an operator and
# a distribution would (docs/ARCHITECTURE.md "Packaging", README "Install"):
#   1. control data: names, version, Depends from dpkg-shlibdeps, conffiles, maintainer scripts;
#      file lists: root-owned, Debian layout, no build paths, stripped binaries;
#   2. dpkg installs them (dependencies checked against this machine's installed packages);
#      the maintainer scripts create the system users and state directories inside the root only;
#   3. systemd-analyze verify accepts the units; `systemd-analyze security` scores them;
#   4. the binaries run from their installed paths; a wrong config is refused, not crashed on;
#   5. mosquitto starts with the snippet as shipped (inert), and once it is uncommented loads
#      the installed plugin, which then refuses a client id that is not the certificate's CN;
#   6. a changed conffile survives reinstalling; removing keeps it, removes the binary.
# Needs root (dpkg); exits 77 (skipped) without it or when BUILD_DIR's install prefix is not /usr.
set -euo pipefail
build=$(cd "$1" && pwd)
work=$2
here=$(cd "$(dirname "$0")" && pwd)
export FOTA_ROOT
FOTA_ROOT=$(cd "$here/../.." && pwd)
. "$FOTA_ROOT/scripts/lib.sh"
started=$SECONDS

if [[ $(id -u) -ne 0 ]]; then
  echo "deb test: skipped: dpkg needs root to install into a throwaway root (run the suite as root, as CI does)"
  exit 77
fi
prefix=$(sed -n 's/^CMAKE_INSTALL_PREFIX:PATH=//p' "$build/CMakeCache.txt")
if [[ "$prefix" != /usr ]]; then
  echo "deb test: skipped: $build is configured with CMAKE_INSTALL_PREFIX=$prefix; packages need /usr" \
    "(scripts/lib.sh's fota_configure sets it; or configure with -DCMAKE_INSTALL_PREFIX=/usr)"
  exit 77
fi
fail() {
  echo "deb test: FAILED: $*" >&2
  exit 1
}

pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT
rm -rf "$work"
mkdir -p "$work"
cd "$work"
root="$work/root"
mkdir -p "$root"

# Users that exist on this machine before: the maintainer scripts must not add any here.
host_users_before=$(getent passwd fota-orchestrator fota-module | cut -d: -f1 | sort | tr '\n' ' ' || true)

# ---- 1. build, control data and file lists ------------------------------------------------------
t0=$SECONDS
cpack --config "$build/CPackConfig.cmake" -B "$work/debs" >"$work/cpack.log" 2>&1 ||
  { cat "$work/cpack.log"; fail "cpack -G DEB failed"; }
echo "cpack: $((SECONDS - t0)) s"
arch=$(dpkg --print-architecture)
version=$(sed -n 's/^CMAKE_PROJECT_VERSION:STATIC=//p' "$build/CMakeCache.txt")
declare -A deb
for package in fota-device fota-orchestrator fota-broker-plugin libfota-client-dev; do
  deb[$package]="$work/debs/${package}_${version}-1_${arch}.deb"
  [[ -f "${deb[$package]}" ]] || fail "cpack made no ${deb[$package]##*/} (it made: $(ls "$work/debs"))"
  printf '%s %d bytes\n' "${deb[$package]##*/}" "$(stat -c %s "${deb[$package]}")"
  [[ "$(dpkg-deb -f "${deb[$package]}" Package)" == "$package" ]] || fail "$package: wrong Package field"
  for field in Version Architecture Maintainer Description Section Priority; do
    [[ -n "$(dpkg-deb -f "${deb[$package]}" "$field")" ]] || fail "$package: no $field field"
  done
  # Root-owned files only, the Debian layout only, the licence as copyright.
  dpkg-deb -c "${deb[$package]}" >"$work/$package.files"
  awk '$2 != "root/root" {print; bad=1} END {exit bad}' "$work/$package.files" ||
    fail "$package: files not owned by root"
  if grep -E ' \./(usr/local|home|tmp|work)/' "$work/$package.files"; then fail "$package: files outside /usr and /etc"; fi
  grep -q " ./usr/share/doc/$package/copyright$" "$work/$package.files" || fail "$package: no copyright file"
done
depends() { dpkg-deb -f "${deb[$1]}" Depends; }
# dpkg-shlibdeps' Depends: every shared library the binaries link comes from a package.
needs=("fota-device:libc6" "fota-device:libsystemd0" "fota-device:libubootenv" "fota-device:libpaho-mqttpp3"
  "fota-device:libmosquitto1" "fota-device:libssl3" "fota-device:systemd"
  "fota-orchestrator:libc6" "fota-orchestrator:libsqlite3" "fota-orchestrator:libssl3" "fota-orchestrator:systemd"
  "fota-broker-plugin:libc6" "fota-broker-plugin:libssl3" "fota-broker-plugin:mosquitto (>= 2.0)"
  "libfota-client-dev:libprotobuf-dev" "libfota-client-dev:libpaho-mqttpp-dev" "libfota-client-dev:libmosquitto-dev")
for need in "${needs[@]}"; do
  package=${need%%:*}
  grep -qF "${need#*:}" <<<"$(depends "$package")" || fail "$package: Depends lacks ${need#*:}: $(depends "$package")"
done
for package in fota-device fota-orchestrator fota-broker-plugin libfota-client-dev; do
  echo "$package Depends: $(depends "$package")"
done
# conffiles: every file under /etc, and nothing else.
for package in fota-device fota-orchestrator fota-broker-plugin; do
  dpkg-deb --ctrl-tarfile "${deb[$package]}" | tar -xO ./conffiles >"$work/$package.conffiles" ||
    fail "$package: no conffiles"
  diff <(sort "$work/$package.conffiles") <(awk '$6 !~ /\/$/ && $6 ~ /^\.\/etc\// {print substr($6, 2)}' \
    "$work/$package.files" | sort) || fail "$package: conffiles differ from its files under /etc"
done
# (Pipes into grep -q would fail under pipefail when grep stops reading early: here-strings instead.)
for package in fota-device fota-orchestrator; do
  grep -qx './postinst' <<<"$(dpkg-deb --ctrl-tarfile "${deb[$package]}" | tar -t)" || fail "$package: no postinst"
done
# Stripped binaries, no build-tree RUNPATH.
mkdir -p "$work/x"
for package in fota-device fota-orchestrator fota-broker-plugin; do dpkg-deb -x "${deb[$package]}" "$work/x"; done
for elf in usr/bin/fota-device usr/bin/fota-orchestrator usr/bin/fotactl "usr/lib/$(gcc -print-multiarch)/fota/fota_broker_plugin.so"; do
  [[ -f "$work/x/$elf" ]] || fail "$elf is not in the packages"
  if grep -q '\.debug_info' <<<"$(readelf -S "$work/x/$elf")"; then fail "$elf is not stripped"; fi
  if grep -qE 'RPATH|RUNPATH' <<<"$(readelf -d "$work/x/$elf")"; then fail "$elf has an RPATH: $(readelf -d "$work/x/$elf" | grep PATH)"; fi
  printf '%s %d bytes\n' "$elf" "$(stat -c %s "$work/x/$elf")"
done
if dpkg-deb -c "${deb[libfota-client-dev]}" | grep -E '\./usr/(bin|sbin)/|\./etc/'; then
  fail "libfota-client-dev ships programs or /etc files"
fi

# ---- 2. install into the throwaway root ---------------------------------------------------------
# dpkg's database: a copy of this machine's status (so Depends are checked against what is
# installed here) with the package file lists linked, and no trigger interests (no host package's
# trigger runs). Maintainer scripts run outside a chroot with DPKG_ROOT set to the root.
admin="$work/admin"
mkdir -p "$admin/updates" "$admin/triggers"
cp /var/lib/dpkg/status "$admin/status"
cp -as /var/lib/dpkg/info "$admin/info"
touch "$admin/available"
dpkg_root() {
  dpkg --root="$root" --admindir="$admin" --log="$work/dpkg.log" --force-script-chrootless --no-triggers "$@"
}
t0=$SECONDS
dpkg_root --install "${deb[fota-device]}" "${deb[fota-orchestrator]}" "${deb[fota-broker-plugin]}" \
  "${deb[libfota-client-dev]}" >"$work/dpkg-install.log" 2>&1 || { cat "$work/dpkg-install.log"; fail "dpkg --install"; }
echo "dpkg --install: $((SECONDS - t0)) s"
for package in fota-device fota-orchestrator fota-broker-plugin libfota-client-dev; do
  status=$(dpkg-query --admindir="$admin" -W -f '${Status}' "$package")
  [[ "$status" == "install ok installed" ]] || fail "$package is '$status' after dpkg --install"
done
grep -q '^fota-orchestrator:' "$root/etc/passwd" || fail "postinst made no user fota-orchestrator in the root"
grep -q '^fota-module:' "$root/etc/passwd" || fail "postinst made no user fota-module in the root"
grep -E '^fota-(orchestrator|module):' "$root/etc/passwd"
orchestrator_uid=$(awk -F: '$1 == "fota-orchestrator" {print $3}' "$root/etc/passwd")
[[ "$(stat -c '%u %a' "$root/var/lib/fota-orchestrator")" == "$orchestrator_uid 750" ]] ||
  fail "/var/lib/fota-orchestrator is $(stat -c '%u %a' "$root/var/lib/fota-orchestrator"), not $orchestrator_uid 750"
[[ "$(stat -c '%u %a' "$root/var/lib/fota")" == "0 711" ]] || fail "/var/lib/fota is $(stat -c '%u %a' "$root/var/lib/fota")"
host_users_after=$(getent passwd fota-orchestrator fota-module | cut -d: -f1 | sort | tr '\n' ' ' || true)
[[ "$host_users_after" == "$host_users_before" ]] || fail "the maintainer scripts changed this machine's users"

# ---- 3. the units -------------------------------------------------------------------------------
# verify --root loads the units' dependencies (sysinit.target, ...) from the root: this machine's
# systemd units are copied in beside the packages' (never over them). It also checks that
# ExecStart= names an executable inside the root.
cp -rn /usr/lib/systemd/system/. "$root/usr/lib/systemd/system/"
for unit in fota-device.service fota-orchestrator.service; do
  [[ -f "$root/usr/lib/systemd/system/$unit" ]] || fail "$unit is not installed"
  systemd-analyze verify --root="$root" "$unit" >"$work/verify-$unit.log" 2>&1 ||
    { cat "$work/verify-$unit.log"; fail "systemd-analyze verify refuses $unit"; }
  if [[ -s "$work/verify-$unit.log" ]]; then cat "$work/verify-$unit.log"; fail "systemd-analyze verify warns about $unit"; fi
  systemd-analyze security --offline=yes --root="$root" "$unit" >"$work/security-$unit.log" 2>&1 || true
  echo "$unit: $(tail -n 1 "$work/security-$unit.log" | sed 's/^→ //')"
done
# The orchestrator runs unprivileged; the agent keeps only its four capabilities.
grep -qx 'User=fota-orchestrator' "$root/usr/lib/systemd/system/fota-orchestrator.service" || fail "orchestrator unit user"
grep -qx 'CapabilityBoundingSet=' "$root/usr/lib/systemd/system/fota-orchestrator.service" || fail "orchestrator capabilities"
grep -qx 'CapabilityBoundingSet=CAP_SETUID CAP_SETGID CAP_CHOWN CAP_KILL' "$root/usr/lib/systemd/system/fota-device.service" ||
  fail "fota-device capabilities"

# ---- 4. the binaries from their installed paths -------------------------------------------------
[[ "$("$root/usr/bin/fota-device" --version)" == "fota-device $version" ]] || fail "fota-device --version"
[[ "$("$root/usr/bin/fota-orchestrator" --version)" == "fota-orchestrator $version" ]] || fail "fota-orchestrator --version"
[[ "$("$root/usr/bin/fotactl" --version)" == "fotactl $version" ]] || fail "fotactl --version"
grep -q -- '--config' <<<"$("$root/usr/bin/fota-device" --help)" || fail "fota-device --help"
grep -q -- '--config' <<<"$("$root/usr/bin/fota-orchestrator" --help)" || fail "fota-orchestrator --help"
grep -q 'pki' <<<"$("$root/usr/bin/fotactl" --help)" || fail "fotactl --help"
# The shipped configurations, unedited, name files in /etc/fota that do not exist yet: a clear
# refusal, before anything is written. (They name absolute paths: on a machine with an /etc/fota
# of its own this part is left out, saying so.)
if [[ -e /etc/fota ]]; then
  echo "unconfigured runs: left out, this machine has an /etc/fota"
else
  state_before=$(ls -d /var/lib/fota /var/lib/fota-orchestrator 2>/dev/null || true)
  set +e
  "$root/usr/bin/fota-device" --config "$root/etc/fota/device.yaml" >"$work/device-unconfigured.log" 2>&1
  rc_device=$?
  "$root/usr/bin/fota-orchestrator" --config "$root/etc/fota/orchestrator.yaml" >"$work/orchestrator-unconfigured.log" 2>&1
  rc_orchestrator=$?
  set -e
  for what in "device:$rc_device" "orchestrator:$rc_orchestrator"; do
    rc=${what#*:}
    log="$work/${what%%:*}-unconfigured.log"
    if ((rc == 0 || rc >= 128)); then cat "$log"; fail "unconfigured ${what%%:*}: exit status $rc"; fi
    grep -q '/etc/fota/' "$log" || { cat "$log"; fail "unconfigured ${what%%:*}: the error names no file"; }
    echo "unconfigured ${what%%:*} (exit $rc): $(head -n 1 "$log")"
  done
  [[ "$(ls -d /var/lib/fota /var/lib/fota-orchestrator 2>/dev/null || true)" == "$state_before" ]] ||
    fail "an unconfigured start created a state directory on this machine"
fi

# ---- 5. mosquitto with the shipped snippet ------------------------------------------------------
start_broker() {  # CONFIG LOG PORT
  /usr/sbin/mosquitto -c "$1" >>"$2" 2>&1 &
  pids+=($!)
  fota_wait_for 10 "mosquitto on port $3" bash -c "ss -Hltn 'sport = :$3' | grep -q ." ||
    { cat "$2"; fail "mosquitto did not start with $1"; }
}
# Inert as shipped: a broker like Debian's (include_dir conf.d) starts and serves a plain client.
port=$(fota_free_port)
cat >"$work/inert.conf" <<CONF
user root
persistence false
log_dest file $work/inert.log
listener $port 127.0.0.1
allow_anonymous true
include_dir $root/etc/mosquitto/conf.d
CONF
start_broker "$work/inert.conf" "$work/inert.log" "$port"
timeout 10 mosquitto_pub -h 127.0.0.1 -p "$port" -t test -m inert || fail "the broker with the inert snippet refuses a plain client"
kill "${pids[-1]}"
echo "inert snippet: mosquitto starts and serves plain MQTT"
# Configured: the snippet's directives uncommented, with a fleet PKI from the installed fotactl.
fotactl=$root/usr/bin/fotactl
"$fotactl" pki init --dir pki >/dev/null
"$fotactl" pki issue-broker broker --dir pki --dns localhost --ip 127.0.0.1 >/dev/null
"$fotactl" pki issue-device dev-1 --dir pki >/dev/null
port=$(fota_free_port)
mkdir -p "$work/conf.d"
sed -E -e 's/^#([a-z])/\1/' -e "s|/etc/fota/pki|$work/pki|" -e "s|^listener 8883|listener $port 127.0.0.1|" \
  -e "s|^plugin /|plugin $root/|" "$root/etc/mosquitto/conf.d/fota.conf" >"$work/conf.d/fota.conf"
cat >"$work/configured.conf" <<CONF
user root
persistence false
log_dest file $work/configured.log
include_dir $work/conf.d
CONF
start_broker "$work/configured.conf" "$work/configured.log" "$port"
grep -q 'fota-plugin: loaded' "$work/configured.log" || { cat "$work/configured.log"; fail "the plugin did not load"; }
grep 'fota-plugin: loaded' "$work/configured.log"
tls=(-h 127.0.0.1 -p "$port" -V mqttv5 --cafile pki/ca.crt --cert pki/device/dev-1.crt --key pki/device/dev-1.key)
timeout 10 mosquitto_pub "${tls[@]}" -i dev-1 -t fota/v1/dev/dev-1/presence -n -q 0 ||
  fail "the device's own certificate and id were refused"
if timeout 10 mosquitto_pub "${tls[@]}" -i dev-2 -t fota/v1/dev/dev-2/presence -n -q 0 2>"$work/spoof.log"; then
  fail "a client id that is not the certificate's CN was accepted"
fi
grep -q 'the client id must equal the certificate CN' "$work/configured.log" ||
  { cat "$work/configured.log"; fail "the plugin did not say why it refused dev-2"; }
kill "${pids[-1]}"
echo "configured snippet: plugin loaded; dev-1 accepted; dev-1's certificate as dev-2 refused"

# ---- 6. conffiles on reinstall, remove ----------------------------------------------------------
echo "# changed by the operator" >>"$root/etc/fota/device.yaml"
dpkg_root --install "${deb[fota-device]}" >"$work/dpkg-reinstall.log" 2>&1 ||
  { cat "$work/dpkg-reinstall.log"; fail "reinstalling fota-device"; }
[[ "$(tail -n 1 "$root/etc/fota/device.yaml")" == '# changed by the operator' ]] ||
  fail "reinstalling fota-device overwrote the changed /etc/fota/device.yaml"
[[ $(grep -c '^fota-module:' "$root/etc/passwd") == 1 ]] || fail "reinstalling made the fota-module user twice"
dpkg_root --remove fota-device >"$work/dpkg-remove.log" 2>&1 || { cat "$work/dpkg-remove.log"; fail "dpkg --remove"; }
[[ ! -e "$root/usr/bin/fota-device" ]] || fail "dpkg --remove left /usr/bin/fota-device"
grep -qx '# changed by the operator' "$root/etc/fota/device.yaml" || fail "dpkg --remove dropped the changed conffile"
echo "conffiles: a changed /etc/fota/device.yaml survives reinstall and remove"

echo "deb test: passed in $((SECONDS - started)) s"

#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# run-consumer.sh BUILD_DIR WORK_DIR cmake|pkg-config
# Installs the client package (component dev) of BUILD_DIR into a fresh prefix under WORK_DIR,
# then builds and runs tests/packaging/consumer against it the way a firmware build would:
#   cmake       find_package(fota CONFIG REQUIRED) (consumer/CMakeLists.txt), also compiling
#               every installed header on its own as C++17
#   pkg-config  c++ $(pkg-config --cflags --libs fota-client fota-client-mosquitto)
# The source tree is never on an include path: what was not installed cannot be found.
set -euo pipefail
build=$(cd "$1" && pwd)
work=$2
mode=$3
here=$(cd "$(dirname "$0")" && pwd)
rm -rf "$work"
mkdir -p "$work"
prefix="$work/prefix"
cmake --install "$build" --prefix "$prefix" --component dev >"$work/install.log"

# Only the dev component: no binaries, units or /etc files may come with it.
unexpected=$(cd "$prefix" && find . -type f ! -path './include/fota/*' ! -path './lib*/libfota_*.a' \
  ! -path './lib*/cmake/fota/*' ! -path './lib*/pkgconfig/fota-*.pc' ! -path './share/doc/libfota-client-dev/*')
if [[ -n "$unexpected" ]]; then
  echo "run-consumer: the dev component installs files outside its layout:" >&2
  echo "$unexpected" >&2
  exit 1
fi

case "$mode" in
cmake)
  # A consumer must not see the build tree: no package registry, only this prefix.
  cmake -S "$here/consumer" -B "$work/consumer" -G Ninja -DCMAKE_BUILD_TYPE=Debug \
    -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF \
    -DCMAKE_FIND_PACKAGE_NO_SYSTEM_PACKAGE_REGISTRY=ON >"$work/configure.log"
  grep -E "fota .* from |installed headers" "$work/configure.log"
  if ! grep -q "fota 0\..* from $prefix/" "$work/configure.log"; then
    echo "run-consumer: find_package(fota) did not take the package installed in $prefix" >&2
    exit 1
  fi
  cmake --build "$work/consumer" -j2
  "$work/consumer/consumer"
  # Components: only those named are loaded (a firmware build without Paho asks for these two);
  # an unknown one is refused, naming the four.
  cmake -S "$here/consumer" -B "$work/components" -DCMAKE_PREFIX_PATH="$prefix" \
    -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF "-DFOTA_CONSUMER_COMPONENTS=client;client_mosquitto" \
    >"$work/components.log" 2>&1 || { cat "$work/components.log"; exit 1; }
  defined=$(sed -n 's/^-- \(fota::[a-z_]*\): defined$/\1/p' "$work/components.log" | tr '\n' ' ')
  if [[ "$defined" != "fota::client fota::client_mosquitto " ]]; then
    echo "run-consumer: COMPONENTS client client_mosquitto defined: $defined" >&2
    exit 1
  fi
  echo "COMPONENTS client client_mosquitto: $defined"
  if cmake -S "$here/consumer" -B "$work/unknown" -DCMAKE_PREFIX_PATH="$prefix" \
    -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF "-DFOTA_CONSUMER_COMPONENTS=client;teleport" >"$work/unknown.log" 2>&1; then
    echo "run-consumer: find_package(fota COMPONENTS teleport) succeeded" >&2
    exit 1
  fi
  grep -q "fota has no component 'teleport'" "$work/unknown.log" || { cat "$work/unknown.log"; exit 1; }
  echo "COMPONENTS teleport: refused ($(grep -o "fota has no component 'teleport'[^\"]*" "$work/unknown.log" | head -n 1))"
  ;;
pkg-config)
  export PKG_CONFIG_PATH
  PKG_CONFIG_PATH=$(dirname "$(find "$prefix" -name fota-client.pc)")
  pkg-config --modversion fota-client
  flags=$(pkg-config --cflags --libs fota-client-mosquitto fota-client)
  echo "pkg-config: $flags"
  # shellcheck disable=SC2086 # the flags are words
  c++ -std=c++17 -Wall -Wextra -Werror -o "$work/consumer-pc" "$here/consumer/main.cpp" $flags
  "$work/consumer-pc"
  ;;
*)
  echo "usage: run-consumer.sh BUILD_DIR WORK_DIR cmake|pkg-config" >&2
  exit 2
  ;;
esac

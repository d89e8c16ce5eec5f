#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The README's test command: installs missing Debian packages, builds, runs the whole suite.
#   scripts/test.sh              RelWithDebInfo build in build/
#   scripts/test.sh --sanitize   ASan+UBSan build in build-asan/
#   scripts/test.sh --fuzz [CTEST_ARGS...]
#                                clang libFuzzer build in build-fuzz/: a run of every fuzz target
#                                from its seed corpus, FOTA_FUZZ_SECONDS (default 5) each (fuzz/,
#                                docs/SECURITY.md "Fuzzing")
# Warnings are errors here (FOTA_WERROR=OFF in the environment relaxes that).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
export FOTA_ROOT="$root"
. "$root/scripts/lib.sh"
"$root/scripts/install-deps.sh"

build_dir="$root/build"
cmake_args=(-DCMAKE_BUILD_TYPE=RelWithDebInfo)
if [[ "${1:-}" == "--sanitize" ]]; then
  build_dir="$root/build-asan"
  cmake_args=(-DCMAKE_BUILD_TYPE=Debug -DFOTA_SANITIZE=ON)
elif [[ "${1:-}" == "--fuzz" ]]; then
  # Never skipped quietly: without clang and its libFuzzer runtime this pass fails, saying so.
  if ! command -v clang >/dev/null 2>&1 || ! command -v clang++ >/dev/null 2>&1; then
    echo "fota: the fuzz pass needs clang and libFuzzer: install the Debian packages clang and" \
      "libclang-rt-dev (scripts/install-deps.sh as root does)" >&2
    exit 1
  fi
  fota_configure "$root/build-fuzz" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFOTA_FUZZ=ON \
    -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ -DFOTA_FUZZ_SECONDS="${FOTA_FUZZ_SECONDS:-5}"
  cmake --build "$root/build-fuzz" -j"$(nproc)" --target fota_fuzzers
  cd "$root/build-fuzz"
  # A crash fails the run; ctest prints where libFuzzer left the input.
  exec ctest -L fuzz --no-tests=error --output-on-failure -j"$(nproc)" "${@:2}"
elif [[ -n "${1:-}" ]]; then
  echo "usage: scripts/test.sh [--sanitize | --fuzz]" >&2
  exit 2
fi

fota_configure "$build_dir" "${cmake_args[@]}"
cmake --build "$build_dir" -j"$(nproc)"

# Integration tests open many sockets; the simulator tests open thousands.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
cd "$build_dir"
# A failed test is run once more (the end-to-end tests run real brokers, orchestrators and
# thousands of TLS sessions on 2 cores, under ASan too); a test that fails twice still fails the
# run, and ctest's output shows every first failure. The known kill -9 flake of issue 4 was an
# orchestrator bug and is fixed.
ctest --output-on-failure -j"$(nproc)" --timeout 300 --repeat until-pass:2

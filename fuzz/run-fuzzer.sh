#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# run-fuzzer.sh FUZZER SEED_DIR SECONDS ARTIFACT_DIR [libFuzzer flags...]
# A time-boxed libFuzzer run from the committed seeds (ctest -L fuzz, and the long run in
# docs/SECURITY.md with more seconds). The seed directory is never written: new inputs go to a
# scratch corpus. A crash, leak or timeout fails the run and leaves the input in ARTIFACT_DIR.
set -euo pipefail
if (($# < 4)); then
  echo "usage: run-fuzzer.sh FUZZER SEED_DIR SECONDS ARTIFACT_DIR [libFuzzer flags...]" >&2
  exit 2
fi
fuzzer=$1 seeds=$2 seconds=$3 artifacts=$4
shift 4
if ! compgen -G "$seeds/*" >/dev/null; then
  echo "fota fuzz: no seed corpus in $seeds; run fuzz/make-seeds.sh and commit its output" >&2
  exit 1
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/fota-fuzz-corpus.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$artifacts"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
"$fuzzer" -max_total_time="$seconds" -timeout=30 -rss_limit_mb=2048 -print_final_stats=1 \
  -artifact_prefix="$artifacts/" "$@" "$work" "$seeds"

#!/usr/bin/env bash
# Runs every scenario in simulators/scenarios/ with fota-sim (each starts its own mosquitto with the
# fota plugin and its own fota-orchestrator) and checks each one's expected outcome and invariants.
#   scripts/scenarios.sh                 all of them (fleet-10k takes about 6 minutes)
#   scripts/scenarios.sh happy-path ...  only these
# Reports land in .scenarios/<time>/<name>/ (report.json, report.html). Exit status 0 only when
# every scenario passed. The test suite runs all but fleet-10k (tests/simulators/scenario_run_test.cpp).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
export FOTA_ROOT="$root"
. "$root/scripts/lib.sh"

"$root/scripts/install-deps.sh"
build="$root/build"
fota_configure "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j"$(nproc)" --target fota-sim fota-orchestrator fota_broker_plugin

names=("$@")
if [[ ${#names[@]} -eq 0 ]]; then
  for f in "$root"/simulators/scenarios/*.yaml; do names+=("$(basename "$f" .yaml)"); done
fi
out="$root/.scenarios/$(date +%Y%m%d-%H%M%S)"
mkdir -p "$out"
results=()
failed=0
for name in "${names[@]}"; do
  file="$root/simulators/scenarios/$name.yaml"
  if [[ ! -f "$file" ]]; then
    echo "scenarios: no scenario '$name' in simulators/scenarios/" >&2
    exit 2
  fi
  echo "== $name"
  start=$(date +%s)
  status=0
  "$build/simulators/fota-sim" "$file" --out "$out/$name" --quiet >"$out/$name.summary" 2>&1 || status=$?
  cat "$out/$name.summary"
  case $status in
    0) verdict=passed ;;
    1) verdict="FAILED (an invariant did not hold)"; failed=$((failed + 1)) ;;
    *) verdict="FAILED (could not run, exit $status)"; failed=$((failed + 1)) ;;
  esac
  results+=("$(printf '%-22s %-40s %4ss' "$name" "$verdict" "$(($(date +%s) - start))")")
done
echo
echo "== scenario results (reports in $out)"
printf '%s\n' "${results[@]}"
[[ $failed -eq 0 ]]

#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Runs every scenario in simulators/scenarios/ with fota-sim (each starts its own mosquitto with the
# fota plugin and its own fota-orchestrator) and checks each one's expected outcome and invariants.
# Each scenario runs twice: on a fresh orchestrator store, then with another seed on the store the
# first run left, whose history the orchestrator's plan draws on.
#   scripts/scenarios.sh                 all of them (fleet-10k takes about 6 minutes)
#   scripts/scenarios.sh happy-path ...  only these
# Reports land in .scenarios/<time>/<name>/ and <name>.history/ (report.json, report.html). Exit status 0 only when
# every scenario passed. The test suite runs all but fleet-10k (tests/simulators/scenario_run_test.cpp).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
export FOTA_ROOT="$root"
. "$root/scripts/lib.sh"

fota_build_targets fota-sim fota-orchestrator fota_broker_plugin
build="$root/build"

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
  # Twice: first on a fresh orchestrator store, then with a different seed (other devices get the
  # faults, the flaky links, the skewed clocks) on the store the first run left, so the plan can
  # draw on the first run's history.
  seed=$(sed -n 's/^seed: *\([0-9][0-9]*\).*/\1/p' "$file" | head -n 1)
  rm -rf "$out/$name.store"
  for run in fresh history; do
    label="$name ($run)"
    dir="$out/$name"
    args=(--orchestrator-data "$out/$name.store")
    if [[ $run == history ]]; then
      dir="$out/$name.history"
      args+=(--seed $((${seed:-1} + 1000)))
    fi
    echo "== $label"
    start=$(date +%s)
    status=0
    "$build/simulators/fota-sim" "$file" --out "$dir" --quiet "${args[@]}" >"$dir.summary" 2>&1 || status=$?
    cat "$dir.summary"
    case $status in
      0) verdict=passed ;;
      1) verdict="FAILED (an invariant did not hold)"; failed=$((failed + 1)) ;;
      *) verdict="FAILED (could not run, exit $status)"; failed=$((failed + 1)) ;;
    esac
    # The orchestrator's prediction before the start against the rollout's actual duration (the
    # orchestrator's own start to end; fota-sim's wall time where it has none).
    json="$dir/report.json"
    figure() { { sed -n "s/.*\"$1\": \(-\{0,1\}[0-9.]*\).*/\1/p" "$json" 2>/dev/null || true; } | head -n 1; }
    outcome=$({ sed -n 's/.*"outcome": "\([a-z]*\)".*/\1/p' "$json" 2>/dev/null || true; } | head -n 1)
    actual=$(figure rollout_duration_ms)
    [[ -z $actual || $actual -lt 0 ]] && actual=$(figure duration_ms)
    predicted=$(figure predicted_duration_ms)
    bound=$(figure predicted_bound_ms)
    at_wave1=$(figure predicted_at_first_wave_ms)
    at_half=$(figure predicted_at_half_ms)
    error=$(awk -v a="${actual:-0}" -v p="${predicted:-0}" 'BEGIN { if (a > 0) printf "%+.0f%%", (p - a) * 100 / a; else print "-" }')
    # Live ETAs as predicted totals, with their error against the actual duration.
    live() { awk -v w="${1:--1}" -v a="${actual:-0}" 'BEGIN { if (w < 0 || a <= 0) print "-"; else printf "%.1fs (%+.0f%%)", w / 1000, (w - a) * 100 / a }'; }
    held=$(awk -v a="${actual:-0}" -v b="${bound:--1}" 'BEGIN { if (b < 0 || a <= 0) print "-"; else if (a <= b) print "held"; else print "missed" }')
    results+=("$(printf '%-32s %-36s %5ss  %-10s actual %7.1fs  plan %8.1fs (%s)  90%% bound %8.1fs (%s)  at wave-1 end %s  at half time %s' \
      "$label" "$verdict" "$(($(date +%s) - start))" "${outcome:-?}" \
      "$(awk -v a="${actual:-0}" 'BEGIN { print a / 1000 }')" "$(awk -v p="${predicted:-0}" 'BEGIN { print p / 1000 }')" \
      "$error" "$(awk -v b="${bound:--1}" 'BEGIN { print b / 1000 }')" "$held" "$(live "$at_wave1")" "$(live "$at_half")")")
  done
done
echo
echo "== scenario results (reports in $out)"
printf '%s\n' "${results[@]}"
[[ $failed -eq 0 ]]

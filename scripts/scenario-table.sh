#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Prints a Markdown table comparing two runs of scripts/scenarios.sh, for docs/BENCHMARKS.md:
#   scripts/scenario-table.sh BEFORE_DIR AFTER_DIR    (each a .scenarios/<time>/ directory)
# Columns: rollout_duration_ms, wire_ratio, messages, memory_per_device_bytes and setup_ms of each
# report.json's totals (fresh run and the history run), before / after.
set -euo pipefail
if [[ $# -ne 2 || ! -d "$1" || ! -d "$2" ]]; then
  echo "usage: scripts/scenario-table.sh BEFORE_DIR AFTER_DIR (directories under .scenarios/)" >&2
  exit 2
fi
command -v jq >/dev/null || { echo "scenario-table: needs jq (apt-get install jq)" >&2; exit 2; }
figure() {  # figure REPORT FIELD
  [[ -f "$1" ]] && jq -r ".totals.$2 // \"—\"" "$1" || echo "—"
}
echo "| scenario (run) | actual ms before / after | wire before / after | messages before / after | RSS/device before / after | set-up ms before / after |"
echo "|---|---|---|---|---|---|"
for report in "$2"/*/report.json; do
  run=$(basename "$(dirname "$report")")
  name=${run%.history}
  label=$name
  [[ $run == *.history ]] && label="$name (history)"
  row="| $label"
  for field in rollout_duration_ms wire_ratio messages memory_per_device_bytes setup_ms; do
    before=$(figure "$1/$run/report.json" "$field")
    after=$(figure "$report" "$field")
    [[ $field == wire_ratio ]] && before=$(printf '%.3f' "$before" 2>/dev/null || echo "$before") &&
      after=$(printf '%.3f' "$after" 2>/dev/null || echo "$after")
    row+=" | $before / $after"
  done
  echo "$row |"
done

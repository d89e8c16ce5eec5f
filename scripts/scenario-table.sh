#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Prints a Markdown table comparing two runs of scripts/scenarios.sh, for docs/BENCHMARKS.md:
#   scripts/scenario-table.sh BEFORE_DIR AFTER_DIR    (each a .scenarios/<time>/ directory)
# Columns: rollout_duration_ms, wire_ratio, messages, memory_per_device_bytes and setup_ms of each
# report.json's totals (fresh run and the history run), before / after.
#   scripts/scenario-table.sh --prediction BEFORE_DIR AFTER_DIR
# instead prints each run's plan (error against the actual), 90 % bound (held or missed) and
# actual, before / after, and the median plan error and how often the bound held.
set -euo pipefail
prediction=0
if [[ ${1:-} == --prediction ]]; then
  prediction=1
  shift
fi
if [[ $# -ne 2 || ! -d "$1" || ! -d "$2" ]]; then
  echo "usage: scripts/scenario-table.sh BEFORE_DIR AFTER_DIR (directories under .scenarios/)" >&2
  exit 2
fi
command -v jq >/dev/null || { echo "scenario-table: needs jq (apt-get install jq)" >&2; exit 2; }
figure() {  # figure REPORT FIELD
  [[ -f "$1" ]] && jq -r ".totals.$2 // \"—\"" "$1" || echo "—"
}
if [[ $prediction -eq 1 ]]; then
  # plan_cell REPORT: "plan s (error %) / bound s (held|missed)" and the actual, tab-separated.
  # Only rollouts that completed count: a halted one ends early by design and one waiting for its
  # maintenance windows never ends within the run.
  plan_cell() {
    [[ -f "$1" ]] || { printf '—\t—\t—\t-1\tnone\n'; return; }
    jq -r '.totals | (if .rollout_duration_ms >= 0 then .rollout_duration_ms else .duration_ms end) as $a
      | (.outcome == "completed" and $a > 0) as $ok
      | def s(x): (x / 100 | round / 10 | tostring) + " s";
        def pct(x): (if x >= 0 then "+" else "" end) + (x | round | tostring) + " %";
      [ s(.predicted_duration_ms) + (if $ok then " (" + pct((.predicted_duration_ms - $a) * 100 / $a) + ")" else "" end),
        (if (.predicted_bound_ms // -1) < 0 then "—"
         else s(.predicted_bound_ms) + (if $ok then (if $a <= .predicted_bound_ms then " (held)" else " (missed)" end) else "" end) end),
        s($a) + (if $ok then "" else " (" + .outcome + ")" end),
        (if $ok then ((.predicted_duration_ms - $a) * 100 / $a | fabs) else -1 end | tostring),
        (if $ok | not then "none" elif (.predicted_bound_ms // -1) < 0 then "none"
         elif $a <= .predicted_bound_ms then "held" else "missed" end) ]
      | @tsv' "$1"
  }
  echo "| scenario (run) | plan before / after (error) | 90 % bound after | actual before / after |"
  echo "|---|---|---|---|"
  declare -A errors_before=([fresh]="" [history]="") errors_after=([fresh]="" [history]="")
  held=0 bounded=0
  for report in "$2"/*/report.json; do
    run=$(basename "$(dirname "$report")")
    label=${run%.history}
    [[ $run == *.history ]] && label="$label (history)"
    IFS=$'\t' read -r plan_b bound_b actual_b err_b held_b < <(plan_cell "$1/$run/report.json")
    IFS=$'\t' read -r plan_a bound_a actual_a err_a held_a < <(plan_cell "$report")
    echo "| $label | $plan_b / $plan_a | $bound_a | $actual_b / $actual_a |"
    kind=fresh
    [[ $run == *.history ]] && kind=history
    [[ $err_b != -1 ]] && errors_before[$kind]+=" $err_b"
    [[ $err_a != -1 ]] && errors_after[$kind]+=" $err_a"
    [[ $held_a == held ]] && held=$((held + 1))
    [[ $held_a == held || $held_a == missed ]] && bounded=$((bounded + 1))
  done
  median() { [[ $# -eq 0 ]] && { echo —; return; }; printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "—"; else if (NR % 2) printf "%.0f %%", v[(NR + 1) / 2]; else printf "%.0f %%", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
  echo
  # shellcheck disable=SC2086 # the lists are space-separated numbers
  echo "Median absolute plan error on a fresh store: before $(median ${errors_before[fresh]}), after" \
    "$(median ${errors_after[fresh]}); with history: before $(median ${errors_before[history]}), after" \
    "$(median ${errors_after[history]}). The 90 % bound held in $held of $bounded runs."
  exit 0
fi
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

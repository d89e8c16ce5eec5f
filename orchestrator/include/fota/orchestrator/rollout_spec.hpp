// SPDX-License-Identifier: Apache-2.0
// What an operator asks for: a rollout spec, parsed from YAML or JSON (docs/ORCHESTRATOR.md has
// the format). Pure data plus the one parser and the one serializer.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fota/common/breach_action.hpp"
#include "fota/common/result.hpp"

namespace fota::orchestrator {

using Millis = std::int64_t;  // Unix milliseconds, or a duration in milliseconds

using common::breach_action_name;
using common::BreachAction;

enum class WaveSizeKind { kCount, kPercent };

struct WaveSpec {
  WaveSizeKind size_kind = WaveSizeKind::kPercent;
  double size = 100;  // devices, or percent of the target
  // Committed members / wave members needed before the next wave may start.
  double success_ratio = 1.0;
  // Failed members / wave members above which the breach action fires.
  double failure_threshold = 0.0;
  Millis soak_ms = 0;  // wait after the gate passed, watching for late failures
};

// A device is targeted when it matches every non-empty list (any entry of a list matches).
struct TargetSelector {
  bool all = false;  // explicit "whole fleet"; an empty selector is refused
  std::vector<std::string> device_ids;
  std::vector<std::string> tags;
  std::vector<std::string> groups;
  std::vector<std::string> hardware_types;
  // Operator groups named in `groups`, resolved to their members when the rollout was created
  // (sorted ids): the rollout keeps the membership of that moment. A name not here is matched
  // against the group each device reports.
  std::map<std::string, std::vector<std::string>> resolved_groups;
  // Only devices that reported one of these decryption key ids (Inventory.decryption_key_id);
  // empty = any. Set from an encrypted artifact's recipients by `non_recipients: exclude`.
  std::vector<std::string> decryption_keys;
};

// What creating a rollout of an encrypted artifact does with targeted devices whose reported
// decryption key is not among its recipients (they would refuse it: ERROR_NOT_A_RECIPIENT).
enum class NonRecipients { kRefuse, kExclude, kInclude };

// Weekly window on the device's local wall clock. A window may cross midnight; at most 24 h.
struct WeeklyWindow {
  std::uint8_t days_mask = 0x7f;  // bit 0 = Sunday ... bit 6 = Saturday (local weekday of the start)
  int start_minute = 0;           // minutes after local midnight
  int duration_minutes = 60;
};

struct RetryPolicy {
  std::uint32_t max_retries = 2;  // attempts after the first
  Millis backoff_ms = 30'000;     // doubled per attempt
  Millis max_backoff_ms = 600'000;
};

// How long a device may stay in one phase before it counts as a failed attempt.
struct PhaseTimeouts {
  Millis dispatch_ms = 600'000;  // command sent, no progress yet
  Millis downloading_ms = 3'600'000;
  Millis verifying_ms = 300'000;
  Millis installing_ms = 1'800'000;
  Millis rebooting_ms = 600'000;
  Millis confirming_ms = 600'000;
  Millis rolling_back_ms = 1'800'000;
};

struct RolloutSpec {
  std::string name;
  std::string artifact_id;
  TargetSelector target;
  std::vector<WaveSpec> waves;
  std::uint32_t max_concurrent = 0;        // 0 = no limit
  std::uint64_t max_bytes_per_second = 0;  // whole rollout; 0 = no limit
  // Download window sent in the install command (0 = the device's default). On a slow link a big
  // window only queues chunks that a dropped connection then throws away.
  std::uint32_t max_inflight_chunks = 0;
  RetryPolicy retry;
  PhaseTimeouts timeouts;
  std::optional<Millis> start_at_ms;
  std::vector<WeeklyWindow> windows;  // empty = any time
  BreachAction on_breach = BreachAction::kPause;
  Millis command_ttl_ms = 3'600'000;
  NonRecipients non_recipients = NonRecipients::kRefuse;
};

// How many of `total` targeted devices each wave takes: counts as given, percentages rounded up,
// the last wave takes the rest; never more than remain. The engine and the prediction both use it.
std::vector<std::size_t> wave_sizes(const RolloutSpec& spec, std::size_t total);

// Parses YAML or JSON. Errors name the field and say what is accepted, e.g.
// "waves[1].size: '150%' is over 100%; give a count like 10 or a percentage like 25%".
common::Result<RolloutSpec> parse_rollout_spec(std::string_view text);
// Canonical JSON (parse_rollout_spec reads it back to an equal spec).
std::string rollout_spec_to_json(const RolloutSpec& spec);

// "90s", "10m", "1h", "2d", "500ms", or a bare number of seconds.
common::Result<Millis> parse_duration(std::string_view text);
std::string format_duration(Millis ms);
// RFC 3339 ("2026-11-25T20:00:00Z", "...+01:00") to Unix milliseconds and back (UTC).
common::Result<Millis> parse_timestamp(std::string_view text);
std::string format_timestamp(Millis ms);

}  // namespace fota::orchestrator

// SPDX-License-Identifier: Apache-2.0
// A fota-sim scenario: the fleet, its links, the rollout, the faults, the expected outcome.
// Parsed from YAML; docs/SIMULATOR.md documents every field. All times are milliseconds relative to
// the start of the run, all sizes bytes, all rates bytes per second.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fota/common/result.hpp"
#include "fota/orchestrator/rollout_spec.hpp"

namespace fota::sim {

// Random connection drops of one link profile.
struct DropSpec {
  // Either a fixed number of drops per device spread uniformly over [window_start, window_end) ...
  std::uint32_t count = 0;
  // ... or a Poisson process with this many drops per device per minute (count must be 0).
  double per_minute = 0.0;
  std::int64_t window_start_ms = 0;
  std::int64_t window_end_ms = 0;  // 0 = the scenario's duration
  // Fraction of drops that are silent stalls (bytes stop flowing, socket stays open) rather
  // than connection resets.
  double stall_fraction = 0.0;
  std::int64_t stall_ms = 5'000;
  // How long the link stays unusable after a reset before a reconnect can succeed.
  std::int64_t down_ms = 1'000;
};

struct LinkProfile {
  std::string name;
  std::int64_t latency_ms = 0;                   // one way
  std::int64_t jitter_ms = 0;                    // uniform +- around latency, never reorders
  std::uint64_t bandwidth_bytes_per_second = 0;  // per direction; 0 = unlimited
  DropSpec drops;
};

// Share of a group's devices that get a value, e.g. links {lan: 80%, flaky: 20%}.
struct WeightedChoice {
  std::string value;
  double weight = 1.0;
};

struct FleetGroup {
  std::string name;  // for reports; defaults to "group<N>"
  std::uint32_t count = 0;
  std::string hardware_type;
  std::string installed_version;
  std::uint64_t security_counter = 1;
  std::vector<WeightedChoice> time_zones;  // IANA names; default UTC
  std::vector<WeightedChoice> links;       // link profile names; default the built-in "ideal"
};

struct Fleet {
  std::string id_prefix = "sim";
  std::vector<FleetGroup> groups;
  std::uint32_t total() const noexcept;
};

struct ArtifactPlan {
  std::string name = "firmware";
  std::string version;
  std::uint64_t security_counter = 2;
  std::uint64_t image_size = 256 * 1024;
  std::uint32_t chunk_size = 16 * 1024;
  std::vector<std::string> compatible_hardware;  // default: every hardware type of the fleet
  // The image boots but its health check fails on every device that installs it.
  bool fails_health_check = false;
  // The chunks are encrypted (docs/SECURITY.md, "Encrypted artifacts") for one X25519 key of the
  // run that every virtual device holds, as a hardware group's key would be.
  bool encrypted = false;
};

enum class RolloutDriver {
  kOrchestrator,  // fota-orchestrator runs the rollout created from the scenario's spec
  kAttach,        // attach to a rollout that already exists in the orchestrator
};

// The scenario's `rollout:` section: an orchestrator rollout spec (docs/ORCHESTRATOR.md, parsed by
// the orchestrator's own parser) plus what only a scenario can say.
struct ScenarioRollout {
  RolloutDriver driver = RolloutDriver::kOrchestrator;
  std::string attach_id;  // kAttach only
  // Without artifact and target: fota-sim uploads the scenario's image and targets the fleet's
  // devices it fits. The name defaults to "sim-rollout".
  orchestrator::RolloutSpec spec;
  // The spec's start_at, relative to the rollout's start (a scenario cannot know the date).
  std::int64_t start_after_ms = 0;
  // `maintenance_window: {open_now_in: <zone>, length: 2h}`: a daily window that opened a minute
  // before the run in that zone, so which zones are inside does not depend on the hour of the run.
  // Added to spec.windows when the run starts (window_open_now_in()).
  std::string window_open_now_in;  // IANA zone; empty = none
  int window_length_minutes = 0;

  // Whether any maintenance window limits the rollout.
  bool has_windows() const noexcept { return !spec.windows.empty() || !window_open_now_in.empty(); }
};

// The daily window of `maintenance_window: {open_now_in: zone, length}` for a run starting at
// unix_ms: it opened a minute earlier on the local clock of `zone`. kInvalidArgument for a zone
// that is not an IANA name.
common::Result<orchestrator::WeeklyWindow> window_open_now_in(const std::string& zone, int length_minutes,
                                                              std::int64_t unix_ms);

// Which devices a fault hits: a seeded random fraction, optionally limited to some groups.
struct FaultTarget {
  double fraction = 0.0;
  std::vector<std::string> groups;  // empty = all groups
};

enum class DevicePhase { kDownloading, kVerifying, kInstalling, kRebooting, kConfirming };
std::string_view device_phase_name(DevicePhase phase) noexcept;

struct PowerLossFault {
  FaultTarget target;
  std::uint32_t times = 1;          // power cuts per device
  std::vector<DevicePhase> during;  // empty = any update phase
};

struct SlowFlashFault {
  FaultTarget target;
  std::uint64_t write_bytes_per_second = 256 * 1024;
};

struct FullStorageFault {
  FaultTarget target;
};

struct ClockSkewFault {
  FaultTarget target;
  std::int64_t max_skew_ms = 0;  // each hit device is off by a uniform value in [-max, +max]
};

struct BadImageFault {
  FaultTarget target;  // devices whose health check fails on the new image
};

// A scheduled outage: the links of a fraction of the fleet are cut (resets) at once.
// fraction 1.0 is a full outage, less is a partition.
struct OutageFault {
  std::int64_t at_ms = 0;
  std::int64_t duration_ms = 0;
  double fraction = 1.0;
};

struct ProcessRestartFault {
  std::int64_t at_ms = 0;
  std::int64_t down_ms = 1'000;
  bool hard_kill = true;  // SIGKILL rather than SIGTERM
};

struct Faults {
  std::vector<PowerLossFault> power_loss;
  std::vector<SlowFlashFault> slow_flash;
  std::vector<FullStorageFault> full_storage;
  std::vector<ClockSkewFault> clock_skew;
  std::vector<BadImageFault> bad_image;
  std::vector<OutageFault> outages;
  std::optional<ProcessRestartFault> broker_restart;
  std::optional<ProcessRestartFault> orchestrator_kill;
};

enum class ExpectedOutcome {
  kCompleted,  // every targeted device committed the new version (except injected failures)
  kHalted,     // the failure threshold stopped the rollout; nobody is left on a broken image
  kRunning,    // the rollout still waits for closed maintenance windows; every device whose window
               // was open committed, no other device was touched
  kAny,
};
std::string_view expected_outcome_name(ExpectedOutcome outcome) noexcept;

struct Expectations {
  ExpectedOutcome outcome = ExpectedOutcome::kCompleted;
  std::optional<double> max_wire_ratio;  // bytes on the wire / image bytes delivered
  std::optional<std::int64_t> max_duration_ms;
};

struct Scenario {
  std::string name;
  std::string description;
  std::uint64_t seed = 1;
  std::int64_t duration_ms = 60'000;                 // hard limit of the run
  std::map<std::string, LinkProfile> link_profiles;  // always contains "ideal"
  Fleet fleet;
  ArtifactPlan artifact;
  ScenarioRollout rollout;
  Faults faults;
  Expectations expect;
};

// Parses a scenario. `source_name` prefixes error messages ("happy.yaml:12:7: fleet.groups[0].count:
// expected a whole number > 0, got 'ten'"). Unknown fields are errors, so typos do not pass silently.
common::Result<Scenario> parse_scenario(std::string_view yaml_text,
                                        std::string_view source_name = "scenario");
common::Result<Scenario> load_scenario(const std::filesystem::path& path);

// Value parsers shared with the CLI (e.g. --duration 90s). Each returns kInvalidArgument with an
// example of the accepted form.
common::Result<std::int64_t> parse_duration_ms(std::string_view text);  // "250ms", "5s", "2m", "1h"
common::Result<std::uint64_t> parse_size_bytes(std::string_view text);  // "512", "16KiB", "1MB"
common::Result<std::uint64_t> parse_rate_bytes_per_second(std::string_view text);  // "1MB/s", "8Mbit/s"
common::Result<double> parse_fraction(std::string_view text);                      // "20%", "0.2"
common::Result<int> parse_time_of_day_minutes(std::string_view text);              // "02:30"

}  // namespace fota::sim

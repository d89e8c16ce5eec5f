// SPDX-License-Identifier: Apache-2.0
// How long a rollout will take: before start (plan) and while it runs (ETA). Pure: it replays the
// engine's rules (wave order, membership, concurrency, bandwidth share, windows, soak) over a
// model of each device's update time. With history (finished updates of this and earlier
// rollouts), a device takes its baseline time (declared link, default device time) times a ratio
// drawn from what comparable updates took; without it, its measured or declared link rate plus
// the measured or default fixed time.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "fota/orchestrator/rollout_engine.hpp"

namespace fota::orchestrator {

// One finished device update, kept (in the store too) as history for later predictions.
struct UpdateSample {
  std::string rollout_id;
  std::string device_id;
  std::uint32_t attempt = 0;
  Millis finished_ms = 0;
  std::size_t concurrency = 0;  // devices its wave could update at once
  Millis baseline_ms = 0;       // what baseline_ms() expected for it
  Millis duration_ms = 0;       // first dispatch to its terminal state
};

// What a device measured about itself and reports in its inventory (v1::DeviceMeasurements), as
// the prediction uses it: 0 = not measured.
struct DeviceMeasured {
  std::uint64_t download_bytes_per_second = 0;  // its downloads' bytes over their connected time
  std::uint64_t verify_bytes_per_second = 0;    // reading its slot back and hashing it
  Millis reboot_ms = 0;                         // reboot asked to connected again
  Millis health_check_ms = 0;
  // Verify + reboot + health check of an image of `bytes`, or 0 when it measured no reboot.
  Millis fixed_ms(std::uint64_t bytes) const;
};

struct LinkModel {
  // Used when a device has no measured rate.
  std::uint64_t default_rate_bytes_per_second = 1'000'000;
  // Verify + install + reboot + confirm, when nothing was measured.
  Millis default_fixed_ms = 30'000;
  std::unordered_map<std::string, std::uint64_t> measured_rate;  // device id -> bytes/s
  // A device's own word for its link before anything was measured: the inventory attribute
  // `link_rate` (bytes/s, e.g. from its modem class). measured > nominal > default.
  std::unordered_map<std::string, std::uint64_t> nominal_rate;
  // What devices measured themselves (their inventory's measurements): before any progress, a
  // device's own rate and fixed time replace the nominal and default ones.
  std::unordered_map<std::string, DeviceMeasured> device_measured;
  Millis measured_fixed_ms = 0;  // 0 = use the default
  // Finished updates, oldest first (the service keeps the latest kHistoryKept).
  std::vector<UpdateSample> history;
};

inline constexpr std::size_t kHistoryKept = 20'000;

struct WavePrediction {
  std::size_t devices = 0;
  Millis start_ms = 0;
  Millis end_ms = 0;  // including soak
};

struct RolloutPrediction {
  std::vector<WavePrediction> waves;
  Millis start_ms = 0;
  Millis end_ms = 0;       // the median: as the model expects it
  Millis duration_ms = 0;  // end - max(now, start)
  // The 90 % bound: the same replay with every device as slow as the model's uncertainty allows
  // (history: the upper half of its draws and a fifth more for the run-to-run spread of the host;
  // without history: its rate and fixed time by a factor per source, kBoundFactor*).
  Millis bound_end_ms = 0;
  Millis bound_duration_ms = 0;
  std::size_t devices = 0;
  // What each open device's time came from (one of these each; finished devices in none).
  std::size_t devices_from_history = 0;
  std::size_t devices_with_measured_rate = 0;     // its downloads' reported rate (progress)
  std::size_t devices_with_own_measurements = 0;  // its inventory's measurements
  std::size_t devices_with_nominal_rate = 0;      // its `link_rate` attribute
  std::size_t devices_with_default_rate = 0;
  std::size_t history_samples = 0;  // finished updates the waves drew their times from
};

// The wave each target device would be in if the rollout resolved its targets now
// (RolloutEngine uses the same order).
std::vector<std::vector<std::string>> plan_wave_membership(const Rollout& rollout, const Fleet& fleet);

// A device's update time from its declared link rate (or the default), capped by the rollout's
// bandwidth share, plus the default device time: the yardstick history is measured against.
Millis baseline_ms(const LinkModel& model, const std::string& device_id, std::uint64_t bytes,
                   std::uint64_t rate_cap);

// A member dispatched that then succeeded or failed: its update is history. Not one still
// running, cancelled, rolled back or never dispatched.
bool becomes_history(const Member& member) noexcept;

// The history sample of a member for which becomes_history() holds, else nothing.
std::optional<UpdateSample> update_sample(const Rollout& rollout, const Member& member,
                                          std::uint64_t image_size, const LinkModel& model);

RolloutPrediction predict_rollout(const Rollout& rollout, const Fleet& fleet, std::uint64_t image_size,
                                  const LinkModel& model, Millis now);

}  // namespace fota::orchestrator

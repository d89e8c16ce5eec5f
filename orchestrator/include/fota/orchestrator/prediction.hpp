// How long a rollout will take: before start (plan) and while it runs (ETA). Pure: it replays the
// engine's rules (wave order, membership, concurrency, bandwidth share, windows, soak) over a
// model of each device's link rate and fixed phase time, measured from history or defaulted.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "fota/orchestrator/rollout_engine.hpp"

namespace fota::orchestrator {

struct LinkModel {
  // Used when a device has no measured rate.
  std::uint64_t default_rate_bytes_per_second = 1'000'000;
  // Verify + install + reboot + confirm, when nothing was measured.
  Millis default_fixed_ms = 30'000;
  std::unordered_map<std::string, std::uint64_t> measured_rate;  // device id -> bytes/s
  // A device's own word for its link before anything was measured: the inventory attribute
  // `link_rate` (bytes/s, e.g. from its modem class). measured > nominal > default.
  std::unordered_map<std::string, std::uint64_t> nominal_rate;
  Millis measured_fixed_ms = 0;  // 0 = use the default
};

struct WavePrediction {
  std::size_t devices = 0;
  Millis start_ms = 0;
  Millis end_ms = 0;  // including soak
};

struct RolloutPrediction {
  std::vector<WavePrediction> waves;
  Millis start_ms = 0;
  Millis end_ms = 0;
  Millis duration_ms = 0;  // end - max(now, start)
  std::size_t devices_with_history = 0;
  std::size_t devices = 0;
};

// The wave each target device would be in if the rollout resolved its targets now
// (RolloutEngine uses the same order).
std::vector<std::vector<std::string>> plan_wave_membership(const Rollout& rollout, const Fleet& fleet);

RolloutPrediction predict_rollout(const Rollout& rollout, const Fleet& fleet, std::uint64_t image_size,
                                  const LinkModel& model, Millis now);

}  // namespace fota::orchestrator

// SPDX-License-Identifier: Apache-2.0
// Expands a scenario into one plan per virtual device: identity, what it runs, its time zone and
// link profile, and exactly which faults it will suffer. Shares are exact (20% of 50 devices is
// 10 devices, not "about 10"), so a run can check that failures happened only where injected.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "fota/common/result.hpp"
#include "fota/sim/scenario.hpp"

namespace fota::sim {

struct PowerCut {
  DevicePhase phase = DevicePhase::kDownloading;
  // Where in the phase the power goes: a fraction of the bytes while downloading, of the phase's
  // expected duration otherwise.
  double at_progress = 0.5;
};

struct DeviceFaultPlan {
  bool fails_health_check = false;  // the new image boots but is unhealthy: must roll back
  bool storage_full = false;        // the inactive slot cannot take the image: must fail cleanly
  std::uint64_t flash_write_bytes_per_second = 0;  // 0 = unthrottled
  std::int64_t clock_skew_ms = 0;
  std::vector<PowerCut> power_cuts;

  // True when this device is expected not to end on the target version.
  bool expected_to_fail() const noexcept { return fails_health_check || storage_full; }
};

struct VirtualDevicePlan {
  std::uint32_t index = 0;
  std::string device_id;
  std::string group;
  std::string hardware_type;
  std::string installed_version;
  std::uint64_t security_counter = 0;
  std::string time_zone;
  std::string link_profile;
  bool targeted = false;  // the artifact is compatible with its hardware
  DeviceFaultPlan faults;
};

// Deterministic for a scenario (including its seed). kInvalidArgument when the scenario cannot be
// expanded (e.g. the id prefix makes an invalid device id).
common::Result<std::vector<VirtualDevicePlan>> plan_fleet(const Scenario& scenario);

// Splits `count` items into shares proportional to the weights (largest remainder): the result sums
// to `count` exactly. Exposed for tests.
std::vector<std::uint32_t> apportion(std::uint32_t count, const std::vector<double>& weights);

}  // namespace fota::sim

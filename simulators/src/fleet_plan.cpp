// SPDX-License-Identifier: Apache-2.0
#include "fota/sim/fleet_plan.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <set>

#include "fota/common/topics.hpp"
#include "fota/sim/random.hpp"

namespace fota::sim {

using common::Errc;
using common::Error;

std::vector<std::uint32_t> apportion(std::uint32_t count, const std::vector<double>& weights) {
  std::vector<std::uint32_t> shares(weights.size(), 0);
  if (weights.empty()) return shares;
  const double total = std::accumulate(weights.begin(), weights.end(), 0.0);
  if (total <= 0) {
    shares[0] = count;
    return shares;
  }
  std::vector<std::pair<double, std::size_t>> remainders;
  std::uint32_t given = 0;
  for (std::size_t i = 0; i < weights.size(); ++i) {
    const double exact = double(count) * weights[i] / total;
    shares[i] = static_cast<std::uint32_t>(std::floor(exact));
    given += shares[i];
    remainders.emplace_back(exact - std::floor(exact), i);
  }
  // Largest remainder first; ties go to the earlier entry so the result is stable.
  std::stable_sort(remainders.begin(), remainders.end(),
                   [](const auto& a, const auto& b) { return a.first > b.first; });
  for (std::size_t k = 0; given < count; ++k, ++given) ++shares[remainders[k % remainders.size()].second];
  return shares;
}

namespace {

// Fisher-Yates with our own RNG (std::shuffle is not portable across standard libraries).
template <typename T>
void shuffle(std::vector<T>& items, Rng& rng) {
  for (std::size_t i = items.size(); i > 1; --i) std::swap(items[i - 1], items[rng.below(i)]);
}

// Exactly round(fraction * eligible) devices, chosen by seed.
std::vector<std::uint32_t> pick(const FaultTarget& target, const std::vector<VirtualDevicePlan>& devices,
                                Rng& rng) {
  std::vector<std::uint32_t> eligible;
  for (const auto& d : devices) {
    if (target.groups.empty() ||
        std::find(target.groups.begin(), target.groups.end(), d.group) != target.groups.end()) {
      eligible.push_back(d.index);
    }
  }
  shuffle(eligible, rng);
  eligible.resize(static_cast<std::size_t>(std::llround(target.fraction * double(eligible.size()))));
  std::sort(eligible.begin(), eligible.end());
  return eligible;
}

}  // namespace

common::Result<std::vector<VirtualDevicePlan>> plan_fleet(const Scenario& scenario) {
  std::vector<VirtualDevicePlan> devices;
  devices.reserve(scenario.fleet.total());
  const std::set<std::string> compatible(scenario.artifact.compatible_hardware.begin(),
                                         scenario.artifact.compatible_hardware.end());
  std::uint32_t index = 0;
  for (const auto& group : scenario.fleet.groups) {
    Rng rng(derive_seed(scenario.seed, "group-" + group.name));
    auto expand = [&](const std::vector<WeightedChoice>& choices) {
      std::vector<double> weights;
      for (const auto& c : choices) weights.push_back(c.weight);
      const auto shares = apportion(group.count, weights);
      std::vector<std::string> values;
      for (std::size_t i = 0; i < choices.size(); ++i)
        values.insert(values.end(), shares[i], choices[i].value);
      shuffle(values, rng);
      return values;
    };
    const auto zones = expand(group.time_zones);
    const auto links = expand(group.links);
    for (std::uint32_t i = 0; i < group.count; ++i, ++index) {
      VirtualDevicePlan d;
      d.index = index;
      char number[16];
      std::snprintf(number, sizeof number, "%05u", index);
      d.device_id = scenario.fleet.id_prefix + "-" + number;
      auto id = common::DeviceId::parse(d.device_id);
      if (!id) return id.error().with_context("fleet.id_prefix '" + scenario.fleet.id_prefix + "'");
      d.group = group.name;
      d.hardware_type = group.hardware_type;
      d.installed_version = group.installed_version;
      d.security_counter = group.security_counter;
      d.time_zone = zones[i];
      d.link_profile = links[i];
      d.targeted = compatible.count(group.hardware_type) > 0;
      devices.push_back(std::move(d));
    }
  }

  const Faults& f = scenario.faults;
  for (std::size_t k = 0; k < f.bad_image.size(); ++k) {
    Rng rng(derive_seed(scenario.seed, "bad-image", k));
    for (auto i : pick(f.bad_image[k].target, devices, rng)) devices[i].faults.fails_health_check = true;
  }
  if (scenario.artifact.fails_health_check) {
    for (auto& d : devices) d.faults.fails_health_check = true;
  }
  for (std::size_t k = 0; k < f.full_storage.size(); ++k) {
    Rng rng(derive_seed(scenario.seed, "full-storage", k));
    for (auto i : pick(f.full_storage[k].target, devices, rng)) devices[i].faults.storage_full = true;
  }
  for (std::size_t k = 0; k < f.slow_flash.size(); ++k) {
    Rng rng(derive_seed(scenario.seed, "slow-flash", k));
    for (auto i : pick(f.slow_flash[k].target, devices, rng)) {
      devices[i].faults.flash_write_bytes_per_second = f.slow_flash[k].write_bytes_per_second;
    }
  }
  for (std::size_t k = 0; k < f.clock_skew.size(); ++k) {
    Rng rng(derive_seed(scenario.seed, "clock-skew", k));
    const double max = double(f.clock_skew[k].max_skew_ms);
    for (auto i : pick(f.clock_skew[k].target, devices, rng)) {
      devices[i].faults.clock_skew_ms = static_cast<std::int64_t>(std::llround(rng.uniform(-max, max)));
    }
  }
  static constexpr DevicePhase kAnyPhase[] = {DevicePhase::kDownloading, DevicePhase::kVerifying,
                                              DevicePhase::kInstalling, DevicePhase::kRebooting,
                                              DevicePhase::kConfirming};
  for (std::size_t k = 0; k < f.power_loss.size(); ++k) {
    const PowerLossFault& fault = f.power_loss[k];
    Rng rng(derive_seed(scenario.seed, "power-loss", k));
    for (auto i : pick(fault.target, devices, rng)) {
      for (std::uint32_t n = 0; n < fault.times; ++n) {
        PowerCut cut;
        cut.phase = fault.during.empty() ? kAnyPhase[rng.below(std::size(kAnyPhase))]
                                         : fault.during[rng.below(fault.during.size())];
        cut.at_progress = rng.uniform(0.05, 0.95);
        devices[i].faults.power_cuts.push_back(cut);
      }
    }
  }
  return devices;
}

}  // namespace fota::sim

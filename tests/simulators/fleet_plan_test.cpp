// SPDX-License-Identifier: Apache-2.0
#include "fota/sim/fleet_plan.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>

namespace fota::sim {
namespace {

Scenario two_group_scenario() {
  auto s = parse_scenario(R"(name: plan
seed: 21
link_profiles: {lan: {}, flaky: {drops: {count: 2}}}
fleet:
  id_prefix: dev
  groups:
    - {name: a, count: 50, hardware: gw-a, version: 1.0.0, links: {lan: 80%, flaky: 20%},
       time_zones: [Europe/Berlin, Asia/Tokyo]}
    - {name: b, count: 30, hardware: gw-b, version: 0.9.0}
artifact: {version: 2.0.0, hardware: [gw-a]}
faults:
  bad_image: {fraction: 10%, groups: [a]}
  full_storage: {fraction: 5%}
  slow_flash: {fraction: 50%, write_rate: 64KiB/s}
  clock_skew: {fraction: 25%, max: 10m}
  power_loss: {fraction: 20%, times: 2, during: [installing]}
)");
  EXPECT_TRUE(s.ok()) << s.error().message;
  return *s;
}

TEST(Apportion, SumsExactlyAndFollowsWeights) {
  EXPECT_EQ(apportion(10, {0.5, 0.5}), (std::vector<std::uint32_t>{5, 5}));
  EXPECT_EQ(apportion(10, {1, 1, 1}), (std::vector<std::uint32_t>{4, 3, 3}));
  EXPECT_EQ(apportion(7, {0.8, 0.2}), (std::vector<std::uint32_t>{6, 1}));
  const auto big = apportion(10'000, {0.95, 0.05});
  EXPECT_EQ(big[0], 9'500u);
  EXPECT_EQ(big[1], 500u);
}

TEST(FleetPlan, ExactSharesAndValidIds) {
  auto devices = plan_fleet(two_group_scenario());
  ASSERT_TRUE(devices.ok()) << devices.error().message;
  ASSERT_EQ(devices->size(), 80u);
  EXPECT_EQ((*devices)[0].device_id, "dev-00000");
  EXPECT_EQ((*devices)[79].device_id, "dev-00079");
  std::map<std::string, int> links;
  std::map<std::string, int> zones;
  int targeted = 0;
  for (const auto& d : *devices) {
    if (d.group == "a") {
      ++links[d.link_profile];
      ++zones[d.time_zone];
      EXPECT_EQ(d.hardware_type, "gw-a");
    } else {
      EXPECT_EQ(d.link_profile, "ideal");
      EXPECT_EQ(d.time_zone, "UTC");
      EXPECT_EQ(d.installed_version, "0.9.0");
    }
    targeted += d.targeted;
  }
  EXPECT_EQ(links["lan"], 40);
  EXPECT_EQ(links["flaky"], 10);
  EXPECT_EQ(zones["Europe/Berlin"], 25);
  EXPECT_EQ(targeted, 50);  // the artifact is only for gw-a
}

TEST(FleetPlan, FaultsHitExactlyTheirShare) {
  auto devices = plan_fleet(two_group_scenario());
  ASSERT_TRUE(devices.ok());
  int bad = 0, full = 0, slow = 0, skewed = 0, cut = 0;
  for (const auto& d : *devices) {
    if (d.faults.fails_health_check) {
      ++bad;
      EXPECT_EQ(d.group, "a");
    }
    full += d.faults.storage_full;
    slow += d.faults.flash_write_bytes_per_second == 64 * 1024;
    if (d.faults.clock_skew_ms != 0) {
      ++skewed;
      EXPECT_LE(std::abs(d.faults.clock_skew_ms), 600'000);
    }
    if (!d.faults.power_cuts.empty()) {
      ++cut;
      ASSERT_EQ(d.faults.power_cuts.size(), 2u);
      for (const auto& c : d.faults.power_cuts) {
        EXPECT_EQ(c.phase, DevicePhase::kInstalling);
        EXPECT_GT(c.at_progress, 0.0);
        EXPECT_LT(c.at_progress, 1.0);
      }
    }
  }
  EXPECT_EQ(bad, 5);      // 10% of group a's 50
  EXPECT_EQ(full, 4);     // 5% of 80
  EXPECT_EQ(slow, 40);    // 50% of 80
  EXPECT_EQ(skewed, 20);  // 25% of 80
  EXPECT_EQ(cut, 16);     // 20% of 80
}

TEST(FleetPlan, DeterministicPerSeed) {
  auto scenario = two_group_scenario();
  auto first = plan_fleet(scenario);
  auto again = plan_fleet(scenario);
  scenario.seed = 22;
  auto other = plan_fleet(scenario);
  ASSERT_TRUE(first.ok() && again.ok() && other.ok());
  bool differs = false;
  for (std::size_t i = 0; i < first->size(); ++i) {
    EXPECT_EQ((*first)[i].link_profile, (*again)[i].link_profile);
    EXPECT_EQ((*first)[i].faults.fails_health_check, (*again)[i].faults.fails_health_check);
    EXPECT_EQ((*first)[i].faults.clock_skew_ms, (*again)[i].faults.clock_skew_ms);
    differs = differs || (*first)[i].link_profile != (*other)[i].link_profile ||
              (*first)[i].faults.storage_full != (*other)[i].faults.storage_full;
  }
  EXPECT_TRUE(differs);
}

TEST(FleetPlan, BadArtifactMarksEveryDevice) {
  auto s = parse_scenario(
      "name: x\nfleet: {groups: [{count: 4, hardware: h, version: 1}]}\nartifact: {version: 2, "
      "fails_health_check: "
      "true}\n");
  ASSERT_TRUE(s.ok());
  auto devices = plan_fleet(*s);
  ASSERT_TRUE(devices.ok());
  for (const auto& d : *devices) EXPECT_TRUE(d.faults.expected_to_fail());
}

}  // namespace
}  // namespace fota::sim

// SPDX-License-Identifier: Apache-2.0
// The artifact retention rule's decisions (docs/ORCHESTRATOR.md, "Artifact retention").
#include <gtest/gtest.h>

#include <map>

#include "fota/orchestrator/retention.hpp"

namespace fota::orchestrator {
namespace {

constexpr Millis kDay = 86'400'000;

RetentionCandidate artifact(const std::string& id, const std::string& name, const std::string& version,
                            const std::string& hardware, Millis created, const std::string& in_use = "") {
  return RetentionCandidate{id, name, version, {hardware}, created, in_use};
}

std::map<std::string, RetentionDecision> by_id(const std::vector<RetentionDecision>& decisions) {
  std::map<std::string, RetentionDecision> out;
  for (const auto& d : decisions) out.emplace(d.artifact.artifact_id, d);
  return out;
}

TEST(RetentionTest, KeepsTheNewestOfEachNameAndHardwareTheYoungAndTheUsedAndDeletesTheRest) {
  const Millis now = 100 * kDay;
  const RetentionRule rule{2, 30 * kDay, 3'600'000};
  const auto d = by_id(plan_artifact_retention(
      {
          artifact("fw-1", "fw", "1.0", "gw", 10 * kDay),
          artifact("fw-2", "fw", "1.1", "gw", 20 * kDay, "rollout r-1 (completed) rolls back to it"),
          artifact("fw-3", "fw", "1.2", "gw", 30 * kDay, "3 device(s) run it"),
          artifact("fw-4", "fw", "1.3", "gw", 40 * kDay),
          artifact("fw-5", "fw", "1.4", "gw", 80 * kDay),  // younger than 30 days, not among the newest 2
          artifact("fw-6", "fw", "1.5", "gw", 90 * kDay),
          artifact("fw-7", "fw", "1.6", "gw", 95 * kDay),
          // Another hardware: its own group, its newest two kept even though old.
          artifact("rpi-1", "fw", "1.0", "rpi4", 1 * kDay),
          artifact("rpi-2", "fw", "1.1", "rpi4", 2 * kDay),
          artifact("rpi-0", "fw", "0.9", "rpi4", 0),
      },
      rule, now));
  ASSERT_EQ(d.size(), 10u);
  EXPECT_TRUE(d.at("fw-1").remove) << d.at("fw-1").reason;
  EXPECT_FALSE(d.at("fw-2").remove);
  EXPECT_NE(d.at("fw-2").reason.find("in use: rollout r-1"), std::string::npos);
  EXPECT_FALSE(d.at("fw-3").remove);
  EXPECT_NE(d.at("fw-3").reason.find("3 device(s) run it"), std::string::npos);
  EXPECT_TRUE(d.at("fw-4").remove);
  EXPECT_FALSE(d.at("fw-5").remove);
  EXPECT_NE(d.at("fw-5").reason.find("younger than 30 day(s)"), std::string::npos);
  EXPECT_FALSE(d.at("fw-6").remove);
  EXPECT_NE(d.at("fw-6").reason.find("newest 2 of fw on gw"), std::string::npos);
  EXPECT_FALSE(d.at("fw-7").remove);
  EXPECT_FALSE(d.at("rpi-1").remove);
  EXPECT_FALSE(d.at("rpi-2").remove);
  EXPECT_TRUE(d.at("rpi-0").remove);
}

TEST(RetentionTest, ArtifactsOfTheSameTimeAreOrderedByVersion) {
  const auto d = by_id(
      plan_artifact_retention({artifact("a", "fw", "1.9", "gw", 0), artifact("b", "fw", "1.10", "gw", 0),
                               artifact("c", "fw", "1.2", "gw", 0)},
                              RetentionRule{1, 0, 1000}, kDay));
  EXPECT_FALSE(d.at("b").remove);  // 1.10 is the newest
  EXPECT_TRUE(d.at("a").remove);
  EXPECT_TRUE(d.at("c").remove);
}

}  // namespace
}  // namespace fota::orchestrator

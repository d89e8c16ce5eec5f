// Small shipped scenarios run end to end against a real mosquitto over mTLS, with the real client
// engine in every virtual device; each test asserts the scenario's invariants.
#include <gtest/gtest.h>

#include <csignal>
#include <iostream>

#include "fota/sim/runner.hpp"
#include "fota/testing/broker.hpp"

namespace fota::sim {
namespace {

class ScenarioRun : public ::testing::Test {
 protected:
  ScenarioRun() : pki_(dir_.path() / "pki"), broker_(pki_, dir_.path() / "broker") {}

  RunReport run(const std::string& file, const std::function<void(Scenario&)>& adjust = {}) {
    auto scenario = load_scenario(std::filesystem::path(FOTA_SCENARIO_DIR) / file);
    EXPECT_TRUE(scenario.ok()) << scenario.error().message;
    if (!scenario.ok()) return {};
    if (adjust) adjust(*scenario);
    RunEnvironment env;
    env.broker_port = broker_.port();
    env.ca = &pki_.ca();
    env.work_dir = dir_.path() / "run";
    env.stop_broker = [this](bool hard) {
      if (hard)
        broker_.kill_hard();
      else
        broker_.stop();
    };
    env.start_broker = [this] { broker_.start(); };
    RunOptions options;
    options.progress = &std::cerr;
    auto report = run_scenario(*scenario, env, options);
    EXPECT_TRUE(report.ok()) << report.error().message;
    if (!report.ok()) return {};
    for (const auto& invariant : report->invariants) {
      EXPECT_TRUE(invariant.held) << invariant.name << ": " << invariant.detail;
    }
    std::cerr << file << ": " << report->outcome << " in " << report->duration_ms << " ms, wire ratio "
              << report->wire_ratio << ", reconnects " << report->reconnects << ", power cuts "
              << report->power_cuts << ", " << report->memory_per_device_bytes << " B/device, chunks served "
              << report->driver.chunks_served << " (" << report->driver.chunk_requests
              << " requests), commands " << report->driver.commands_sent << "+"
              << report->driver.commands_resent << " resent, wire " << report->wire_bytes
              << " for image bytes " << report->image_bytes_delivered << "\n";
    return std::move(*report);
  }

  testing::TempDir dir_;
  testing::TestPki pki_;
  testing::MosquittoBroker broker_;
};

TEST_F(ScenarioRun, HappyPathEveryDeviceCommits) {
  const RunReport report = run("happy-path.yaml");
  EXPECT_TRUE(report.passed);
  EXPECT_EQ(report.outcome, "completed");
  EXPECT_EQ(report.device_count, 100u);
  for (const auto& d : report.devices) EXPECT_EQ(d.final_version, "1.1.0") << d.device_id;
  ASSERT_EQ(report.waves.size(), 2u);
  EXPECT_GE(report.waves[1].started_ms, report.waves[0].finished_ms);
}

TEST_F(ScenarioRun, FlakyLinksStillCommitEverywhere) {
  const RunReport report = run("flaky-links.yaml");
  EXPECT_TRUE(report.passed);
  std::uint32_t flaky = 0;
  std::uint32_t dropped = 0;
  for (const auto& d : report.devices) {
    if (d.link_profile != "flaky") continue;
    ++flaky;
    dropped += d.counters.link_resets + d.counters.link_stalls > 0;
    EXPECT_EQ(d.counters.link_resets + d.counters.link_stalls, 3u) << d.device_id;
  }
  EXPECT_EQ(flaky, 20u);
  EXPECT_EQ(dropped, 20u);
  EXPECT_GT(report.link_resets, 0u);
}

TEST_F(ScenarioRun, PowerLossLeavesEveryDeviceBootableAndUpdated) {
  const RunReport report = run("power-loss.yaml");
  EXPECT_TRUE(report.passed);
  std::uint32_t cut = 0;
  for (const auto& d : report.devices) {
    EXPECT_FALSE(d.bricked) << d.device_id;
    cut += d.counters.power_cuts > 0;
    if (!d.planned_power_cuts.empty() && d.counters.power_cuts == 0) {
      std::string timeline;
      for (const auto& t : d.timeline) timeline += " " + std::to_string(t.at_ms) + ":" + t.event;
      ADD_FAILURE() << d.device_id << " planned " << d.planned_power_cuts[0] << " but no cut:" << timeline;
    }
  }
  EXPECT_EQ(cut, 20u);  // 33% of 60
  EXPECT_EQ(report.power_cuts, 20u);
}

TEST_F(ScenarioRun, BadImageRollsBackAndHaltsTheRollout) {
  const RunReport report = run("bad-image.yaml");
  EXPECT_TRUE(report.passed);
  EXPECT_EQ(report.outcome, "halted");
  ASSERT_EQ(report.waves.size(), 2u);
  EXPECT_EQ(report.waves[1].started_ms, -1) << "the second wave must never start";
  std::uint32_t rolled_back = 0;
  for (const auto& d : report.devices) {
    EXPECT_EQ(d.final_version, "1.0.0") << d.device_id;
    rolled_back += d.final_phase == "rolled-back";
  }
  EXPECT_EQ(rolled_back, 10u);  // the whole canary wave, nobody else
}

}  // namespace
}  // namespace fota::sim

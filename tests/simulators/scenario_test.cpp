// SPDX-License-Identifier: Apache-2.0
#include "fota/sim/scenario.hpp"

#include <gtest/gtest.h>

#include <filesystem>

#include "fota/orchestrator/rollout_engine.hpp"

namespace fota::sim {
namespace {

using common::Errc;

TEST(ScenarioValues, DurationsNeedAUnit) {
  EXPECT_EQ(*parse_duration_ms("250ms"), 250);
  EXPECT_EQ(*parse_duration_ms("5s"), 5000);
  EXPECT_EQ(*parse_duration_ms("1.5s"), 1500);
  EXPECT_EQ(*parse_duration_ms("2m"), 120000);
  EXPECT_EQ(*parse_duration_ms("1h"), 3600000);
  for (const char* bad : {"5", "-5s", "s", "5 days", "", "1e3s", "1.2.3s"}) {
    auto r = parse_duration_ms(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.error().code, Errc::kInvalidArgument);
    EXPECT_NE(r.error().message.find("250ms"), std::string::npos) << "message shows an example";
  }
}

TEST(ScenarioValues, SizesAndRates) {
  EXPECT_EQ(*parse_size_bytes("512"), 512u);
  EXPECT_EQ(*parse_size_bytes("16KiB"), 16384u);
  EXPECT_EQ(*parse_size_bytes("1MiB"), 1048576u);
  EXPECT_EQ(*parse_size_bytes("10MB"), 10000000u);
  EXPECT_FALSE(parse_size_bytes("1.5B").ok());
  EXPECT_FALSE(parse_size_bytes("12 parsecs").ok());
  EXPECT_EQ(*parse_rate_bytes_per_second("256KiB/s"), 262144u);
  EXPECT_EQ(*parse_rate_bytes_per_second("8Mbit/s"), 1000000u);
  EXPECT_EQ(*parse_rate_bytes_per_second("1MB/s"), 1000000u);
  EXPECT_FALSE(parse_rate_bytes_per_second("1MB").ok());
  EXPECT_FALSE(parse_rate_bytes_per_second("fast/s").ok());
}

TEST(ScenarioValues, FractionsAndTimesOfDay) {
  EXPECT_DOUBLE_EQ(*parse_fraction("20%"), 0.2);
  EXPECT_DOUBLE_EQ(*parse_fraction("0.25"), 0.25);
  EXPECT_FALSE(parse_fraction("120%").ok());
  EXPECT_FALSE(parse_fraction("2").ok());
  EXPECT_EQ(*parse_time_of_day_minutes("02:30"), 150);
  EXPECT_EQ(*parse_time_of_day_minutes("24:00"), 1440);
  EXPECT_FALSE(parse_time_of_day_minutes("25:00").ok());
  EXPECT_FALSE(parse_time_of_day_minutes("2:5").ok());
  EXPECT_FALSE(parse_time_of_day_minutes("noon").ok());
}

constexpr const char* kMinimal = R"(name: tiny
fleet:
  groups:
    - {count: 3, hardware: hw, version: 1.0.0}
artifact:
  version: 2.0.0
)";

TEST(ScenarioParser, MinimalScenarioGetsDefaults) {
  auto s = parse_scenario(kMinimal, "tiny.yaml");
  ASSERT_TRUE(s.ok()) << s.error().message;
  EXPECT_EQ(s->name, "tiny");
  EXPECT_EQ(s->fleet.total(), 3u);
  EXPECT_EQ(s->fleet.groups[0].name, "group1");
  ASSERT_EQ(s->fleet.groups[0].links.size(), 1u);
  EXPECT_EQ(s->fleet.groups[0].links[0].value, "ideal");
  EXPECT_EQ(s->fleet.groups[0].time_zones[0].value, "UTC");
  // No rollout section: the orchestrator's spec defaults, one wave of everyone.
  ASSERT_EQ(s->rollout.spec.waves.size(), 1u);
  EXPECT_EQ(s->rollout.spec.waves[0].size_kind, orchestrator::WaveSizeKind::kPercent);
  EXPECT_DOUBLE_EQ(s->rollout.spec.waves[0].size, 100.0);
  EXPECT_EQ(s->rollout.spec.name, "sim-rollout");
  EXPECT_EQ(s->artifact.compatible_hardware, std::vector<std::string>{"hw"});
  EXPECT_EQ(s->rollout.driver, RolloutDriver::kOrchestrator);
  EXPECT_EQ(s->expect.outcome, ExpectedOutcome::kCompleted);
  EXPECT_TRUE(s->link_profiles.count("ideal"));
  EXPECT_FALSE(s->artifact.encrypted);
  auto encrypted = parse_scenario(std::string(kMinimal) + "  encrypted: true\n", "tiny.yaml");
  ASSERT_TRUE(encrypted.ok()) << encrypted.error().message;
  EXPECT_TRUE(encrypted->artifact.encrypted);
}

// Each bad scenario must be refused with the file, line, field path and what was wrong.
struct BadCase {
  const char* name;
  const char* yaml;
  const char* expected_fragment;
};

class ScenarioParserRefuses : public ::testing::TestWithParam<BadCase> {};

TEST_P(ScenarioParserRefuses, WithLineAndField) {
  auto s = parse_scenario(GetParam().yaml, "bad.yaml");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().message.find(GetParam().expected_fragment), std::string::npos)
      << "message was: " << s.error().message;
  EXPECT_EQ(s.error().message.rfind("bad.yaml", 0), 0u) << s.error().message;
}

INSTANTIATE_TEST_SUITE_P(
    Cases, ScenarioParserRefuses,
    ::testing::Values(
        BadCase{"empty", "", "the scenario is empty"},
        BadCase{"not_yaml", "name: [unclosed\n", "not valid YAML"},
        BadCase{"typo", "name: x\nfleet:\n  groups:\n    - {coutn: 3, hardware: hw, version: 1}\n",
                "bad.yaml:4:8: fleet.groups[0].coutn: unknown field"},
        BadCase{"count_not_number",
                "name: x\nfleet:\n  groups:\n    - {count: ten, hardware: hw, version: 1}\nartifact: "
                "{version: 2}\n",
                "fleet.groups[0].count: expected a whole number from 1 to 100000, got 'ten'"},
        BadCase{"missing_hardware", "name: x\nfleet:\n  groups:\n    - {count: 3, version: 1}\n",
                "fleet.groups[0]: missing field 'hardware'"},
        BadCase{"bad_duration",
                "name: x\nduration: 90\nfleet: {groups: [{count: 1, hardware: h, version: 1}]}\n",
                "bad.yaml:2:11: duration: expected a duration"},
        BadCase{"unknown_link",
                "name: x\nfleet:\n  groups:\n    - {count: 3, hardware: hw, version: 1, link: "
                "wifi}\nartifact: {version: 2}\n",
                "unknown link profile 'wifi'"},
        BadCase{"shares",
                "name: x\nlink_profiles: {a: {}, b: {}}\nfleet:\n  groups:\n    - {count: 3, hardware: hw, "
                "version: 1, "
                "links: {a: 50%, b: 40%}}\nartifact: {version: 2}\n",
                "shares must add up to 100%, they add up to 90%"},
        BadCase{"wave_size",
                "name: x\n"
                "fleet: {groups: [{count: 1, hardware: h, version: 1}]}\nartifact: {version: 2}\n"
                "rollout:\n  waves:\n    - {size: 10%}\n    - {size: 150%}\n",
                "bad.yaml:7:14: rollout.waves[1].size: 150 is out of range"},
        BadCase{"spec_typo",
                "name: x\n"
                "fleet: {groups: [{count: 1, hardware: h, version: 1}]}\nartifact: {version: 2}\n"
                "rollout:\n  driver: orchestrator\n  failure_treshold: 5%\n",
                "bad.yaml:6:21: rollout.failure_treshold: unknown field; known fields: name, waves"},
        BadCase{"old_wave_form",
                "name: x\n"
                "fleet: {groups: [{count: 1, hardware: h, version: 1}]}\nartifact: {version: 2}\n"
                "rollout: {waves: [{name: canary, share: 10%}]}\n",
                "rollout.waves[0].name: unknown field; known fields: size, success_ratio"},
        BadCase{"target_is_the_fleet",
                "name: x\n"
                "fleet: {groups: [{count: 1, hardware: h, version: 1}]}\nartifact: {version: 2}\n"
                "rollout: {target: {all: true}}\n",
                "rollout.target: unknown field"},
        BadCase{"builtin_driver_is_gone",
                "name: x\n"
                "fleet: {groups: [{count: 1, hardware: h, version: 1}]}\nartifact: {version: 2}\n"
                "rollout: {driver: builtin}\n",
                "bad.yaml:4:19: rollout.driver: the builtin driver is gone"},
        BadCase{"unknown_driver",
                "name: x\n"
                "fleet: {groups: [{count: 1, hardware: h, version: 1}]}\nartifact: {version: 2}\n"
                "rollout: {driver: magic}\n",
                "rollout.driver: unknown driver 'magic'; use orchestrator or attach"},
        BadCase{"jitter", "name: x\nlink_profiles: {a: {latency: 5ms, jitter: 10ms}}\n",
                "link_profiles.a.jitter"},
        BadCase{"drops_both", "name: x\nlink_profiles: {a: {drops: {count: 2, per_minute: 1}}}\n",
                "give either count or per_minute"},
        BadCase{"fault_group",
                "name: x\nfleet: {groups: [{count: 1, hardware: h, version: 1}]}\nartifact: {version: 2}\n"
                "faults: {bad_image: {fraction: 10%, groups: [nope]}}\n",
                "faults.bad_image: unknown group 'nope'"},
        BadCase{"phase",
                "name: x\nfleet: {groups: [{count: 1, hardware: h, version: 1}]}\nartifact: {version: 2}\n"
                "faults: {power_loss: {fraction: 10%, during: [dancing]}}\n",
                "faults.power_loss.during[0]: unknown phase 'dancing'"},
        BadCase{"bad_prefix",
                "name: x\nfleet: {id_prefix: 'a/b', groups: [{count: 1, hardware: h, version: 1}]}\n",
                "fleet.id_prefix: must be"},
        BadCase{"attach_without_id",
                "name: x\nfleet: {groups: [{count: 1, hardware: h, version: 1}]}\nartifact: {version: 2}\n"
                "rollout: {driver: attach}\n",
                "driver attach needs"}),
    [](const ::testing::TestParamInfo<BadCase>& param) { return std::string(param.param.name); });

TEST(ScenarioParser, ShippedScenariosAllParse) {
  std::size_t count = 0;
  for (const auto& entry : std::filesystem::directory_iterator(FOTA_SCENARIO_DIR)) {
    if (entry.path().extension() != ".yaml") continue;
    auto s = load_scenario(entry.path());
    EXPECT_TRUE(s.ok()) << entry.path() << ": " << (s.ok() ? "" : s.error().message);
    ++count;
  }
  EXPECT_GE(count, 7u);
}

TEST(ScenarioParser, ShippedScenariosSayWhatTheIssueAsksFor) {
  const std::filesystem::path dir = FOTA_SCENARIO_DIR;
  auto flaky = load_scenario(dir / "flaky-links.yaml");
  ASSERT_TRUE(flaky.ok()) << flaky.error().message;
  ASSERT_EQ(flaky->fleet.groups[0].links.size(), 2u);
  EXPECT_DOUBLE_EQ(flaky->fleet.groups[0].links[1].weight, 0.2);
  EXPECT_EQ(flaky->link_profiles.at("flaky").drops.count, 3u);
  EXPECT_DOUBLE_EQ(*flaky->expect.max_wire_ratio, 1.10);

  auto bad = load_scenario(dir / "bad-image.yaml");
  ASSERT_TRUE(bad.ok());
  EXPECT_TRUE(bad->artifact.fails_health_check);
  EXPECT_EQ(bad->expect.outcome, ExpectedOutcome::kHalted);
  ASSERT_EQ(bad->rollout.spec.waves.size(), 2u);
  EXPECT_DOUBLE_EQ(bad->rollout.spec.waves[0].failure_threshold, 0.2);
  EXPECT_EQ(bad->rollout.spec.retry.max_retries, 0u);

  auto windows = load_scenario(dir / "maintenance-windows.yaml");
  ASSERT_TRUE(windows.ok());
  EXPECT_EQ(windows->rollout.window_open_now_in, "Asia/Tokyo");
  EXPECT_EQ(windows->rollout.window_length_minutes, 120);
  EXPECT_TRUE(windows->rollout.has_windows());
  EXPECT_EQ(windows->rollout.driver, RolloutDriver::kOrchestrator);
  EXPECT_EQ(windows->expect.outcome, ExpectedOutcome::kRunning);
  EXPECT_EQ(windows->fleet.groups[0].time_zones.size(), 8u);

  auto broker = load_scenario(dir / "broker-restart.yaml");
  ASSERT_TRUE(broker.ok());
  ASSERT_TRUE(broker->faults.broker_restart.has_value());
  EXPECT_EQ(broker->faults.broker_restart->at_ms, 8000);
  EXPECT_FALSE(broker->faults.broker_restart->hard_kill);

  auto kill = load_scenario(dir / "orchestrator-kill.yaml");
  ASSERT_TRUE(kill.ok());
  ASSERT_TRUE(kill->faults.orchestrator_kill.has_value());
  EXPECT_TRUE(kill->faults.orchestrator_kill->hard_kill);

  auto big = load_scenario(dir / "fleet-10k.yaml");
  ASSERT_TRUE(big.ok());
  EXPECT_EQ(big->fleet.total(), 10000u);
}

TEST(ScenarioParser, MissingFileSaysSo) {
  auto s = load_scenario("/nonexistent/dir/x.yaml");
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code, Errc::kNotFound);
  EXPECT_NE(s.error().message.find("/nonexistent/dir/x.yaml"), std::string::npos);
}

// 2026-11-25T12:00:00Z and friends, as Unix milliseconds.
constexpr std::int64_t kNoonUtc = 1'795'608'000'000;
constexpr std::int64_t kHour = 3'600'000;

// open_now_in becomes a daily window of the orchestrator's, opened a minute ago in that zone; the
// orchestrator's own rule (in_maintenance_window) says who is inside.
TEST(MaintenanceWindow, OpenNowInResolvesToAWindowThatOpenedAMinuteAgoThere) {
  auto fixed = window_open_now_in("Asia/Tokyo", 120, kNoonUtc);  // 21:00 in Tokyo
  ASSERT_TRUE(fixed.ok()) << fixed.error().message;
  EXPECT_EQ(fixed->start_minute, 20 * 60 + 59);
  EXPECT_EQ(fixed->duration_minutes, 120);
  EXPECT_EQ(fixed->days_mask, 0x7f);
  const std::vector<orchestrator::WeeklyWindow> windows{*fixed};
  using orchestrator::in_maintenance_window;
  EXPECT_TRUE(in_maintenance_window(windows, "Asia/Tokyo", kNoonUtc));
  EXPECT_TRUE(in_maintenance_window(windows, "Asia/Seoul", kNoonUtc));          // same offset
  EXPECT_TRUE(in_maintenance_window(windows, "Australia/Brisbane", kNoonUtc));  // 22:00
  EXPECT_FALSE(in_maintenance_window(windows, "Pacific/Auckland", kNoonUtc));   // 01:00 next day
  EXPECT_FALSE(in_maintenance_window(windows, "Europe/Berlin", kNoonUtc));      // 13:00
  EXPECT_FALSE(in_maintenance_window(windows, "America/New_York", kNoonUtc));   // 07:00
}

TEST(MaintenanceWindow, AWindowAcrossMidnightIsOpenOnBothSides) {
  const std::int64_t now = kNoonUtc + 2 * kHour + kHour / 2;  // 23:30 in Tokyo
  auto fixed = window_open_now_in("Asia/Tokyo", 120, now);
  ASSERT_TRUE(fixed.ok());
  EXPECT_EQ(fixed->start_minute, 23 * 60 + 29);
  const std::vector<orchestrator::WeeklyWindow> windows{*fixed};
  using orchestrator::in_maintenance_window;
  EXPECT_TRUE(in_maintenance_window(windows, "Asia/Tokyo", now));
  EXPECT_TRUE(in_maintenance_window(windows, "Australia/Brisbane", now));            // 00:30
  EXPECT_FALSE(in_maintenance_window(windows, "Asia/Tokyo", kNoonUtc + 5 * kHour));  // 02:00
}

TEST(MaintenanceWindow, BadWindowsSayWhatToFix) {
  const std::string head =
      "name: w\nfleet: {groups: [{count: 1, hardware: h, version: 1}]}\nartifact: {version: 2}\nrollout:\n  "
      "driver: orchestrator\n";
  auto unknown_zone =
      parse_scenario(head + "  maintenance_window: {open_now_in: Mars/Olympus, length: 1h}\n");
  ASSERT_FALSE(unknown_zone.ok());
  EXPECT_NE(unknown_zone.error().message.find("not an IANA time zone"), std::string::npos)
      << unknown_zone.error().message;
  auto both = parse_scenario(
      head + "  maintenance_window: {open_now_in: Asia/Tokyo, length: 1h, start: \"02:00\"}\n");
  ASSERT_FALSE(both.ok());
  EXPECT_NE(both.error().message.find("a fixed window is the spec's windows field"), std::string::npos);
  auto no_length = parse_scenario(head + "  maintenance_window: {open_now_in: Asia/Tokyo}\n");
  ASSERT_FALSE(no_length.ok());
  EXPECT_NE(no_length.error().message.find("needs open_now_in and length"), std::string::npos);
  auto fixed = parse_scenario(head + "  maintenance_window: {start: \"02:00\", end: \"04:00\"}\n");
  ASSERT_FALSE(fixed.ok());
  EXPECT_NE(fixed.error().message.find("a fixed window is the spec's windows field"), std::string::npos)
      << fixed.error().message;
  auto two = parse_scenario(head +
                            "  maintenance_window: {open_now_in: Asia/Tokyo, length: 1h}\n"
                            "  windows: [{start: \"02:00\", duration: 1h}]\n");
  ASSERT_FALSE(two.ok());
  EXPECT_NE(two.error().message.find("either windows or maintenance_window"), std::string::npos);
  auto weekly = parse_scenario(head + "  windows: [{days: weekdays, start: \"02:00\", duration: 2h}]\n");
  ASSERT_TRUE(weekly.ok()) << weekly.error().message;
  EXPECT_TRUE(weekly->rollout.has_windows());
  EXPECT_EQ(weekly->rollout.spec.windows[0].days_mask, 0x3e);
  auto running = parse_scenario(
      "name: w\nfleet: {groups: [{count: 1, hardware: h, version: 1}]}\nartifact: {version: 2}\nexpect: "
      "{outcome: running}\n");
  ASSERT_FALSE(running.ok());
  EXPECT_NE(running.error().message.find("needs rollout.windows or rollout.maintenance_window"),
            std::string::npos);
}

}  // namespace
}  // namespace fota::sim

// SPDX-License-Identifier: Apache-2.0
// The rollout engine with virtual time: every rule of docs/ORCHESTRATOR.md "Rollout engine".
#include "fota/orchestrator/rollout_engine.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>

namespace fota::orchestrator {
namespace {

constexpr const char* kArtifact = "0123456789abcdef0123456789abcdef";
constexpr const char* kOldArtifact = "ffffffffffffffffffffffffffffffff";
constexpr Millis kSecond = 1000;
constexpr Millis kMinute = 60 * kSecond;
constexpr Millis kHour = 60 * kMinute;

Millis at(const char* rfc3339) { return *parse_timestamp(rfc3339); }

class RolloutEngineTest : public ::testing::Test {
 protected:
  void add_device(const std::string& id, const std::string& tz = "UTC",
                  std::vector<std::string> tags = {"fleet"}) {
    DeviceFacts d;
    d.id = id;
    d.hardware_type = "gw-v2";
    d.time_zone = tz;
    d.artifact_id = kOldArtifact;
    d.tags = std::move(tags);
    d.online = true;
    fleet_.devices[id] = d;
  }
  void add_devices(int n) {
    for (int i = 0; i < n; ++i) add_device("dev-" + std::to_string(i));
  }

  Rollout make(const std::string& id, const std::string& extra) {
    const std::string text =
        std::string("name: t\nartifact: ") + kArtifact + "\ntarget: {tags: [fleet]}\n" + extra;
    auto spec = parse_rollout_spec(text);
    EXPECT_TRUE(spec.ok()) << spec.error().message;
    auto r = RolloutEngine::create(id, *spec, now_);
    EXPECT_TRUE(r.ok());
    return std::move(r).value();
  }

  Rollout started(const std::string& id, const std::string& extra) {
    Rollout r = make(id, extra);
    auto d = engine_.start(r, fleet_, now_);
    EXPECT_TRUE(d.ok()) << d.error().message;
    return r;
  }

  Decisions tick(Rollout& r) {
    Decisions d = engine_.tick(r, fleet_, now_);
    for (const Decision& x : d) {
      if (x.kind == Decision::Kind::kAudit) audit_.push_back(x.message);
    }
    return d;
  }

  // Device reports a phase for the command it last received.
  // A report of `device` in rollout `r` under `command_id` (the id it works on, as it says).
  static v1::Progress progress_under(const Rollout& r, const std::string& device,
                                     const std::string& command_id, v1::Phase phase,
                                     const std::string& artifact_id = "") {
    v1::Progress p;
    p.set_device_id(device);
    p.set_deployment_id(r.id);
    p.set_command_id(command_id);
    p.set_artifact_id(artifact_id);
    p.set_phase(phase);
    return p;
  }

  // The inventory a device publishes: working on `pending_deployment` (empty = nothing).
  static v1::Inventory inventory(const std::string& pending_deployment,
                                 const v1::Progress* last_outcome = nullptr) {
    v1::Inventory inv;
    inv.set_pending_deployment_id(pending_deployment);
    if (last_outcome != nullptr) *inv.mutable_last_outcome() = *last_outcome;
    return inv;
  }

  Decisions report(Rollout& r, const std::string& device, v1::Phase phase,
                   v1::ErrorCode error = v1::ERROR_NONE) {
    const Member* m = r.find_member(device);
    EXPECT_NE(m, nullptr) << device;
    v1::Progress p = progress_under(r, device, m ? m->command_id : "", phase);
    p.set_error(error);
    p.set_sequence(++sequence_);
    Decisions d = engine_.on_progress(r, p, now_);
    for (const Decision& x : d) {
      if (x.kind == Decision::Kind::kAudit) audit_.push_back(x.message);
    }
    if (phase == v1::PHASE_COMMITTED) fleet_.devices[device].artifact_id = kArtifact;
    return d;
  }

  static std::vector<std::string> targets(const Decisions& d, Decision::Kind kind) {
    std::vector<std::string> out;
    for (const Decision& x : d) {
      if (x.kind == kind) out.push_back(x.device_id);
    }
    std::sort(out.begin(), out.end());
    return out;
  }
  static std::vector<std::string> installs(const Decisions& d) {
    return targets(d, Decision::Kind::kInstall);
  }

  std::vector<std::string> wave_members(const Rollout& r, int wave) {
    std::vector<std::string> out;
    for (const Member& m : r.members) {
      if (m.wave == wave) out.push_back(m.device_id);
    }
    std::sort(out.begin(), out.end());
    return out;
  }

  void commit_all(Rollout& r, const std::vector<std::string>& devices) {
    for (const auto& id : devices) {
      report(r, id, v1::PHASE_DOWNLOADING);
      report(r, id, v1::PHASE_REBOOTING);
      report(r, id, v1::PHASE_COMMITTED);
    }
  }

  bool audit_contains(const std::string& fragment) const {
    return std::any_of(audit_.begin(), audit_.end(),
                       [&](const std::string& s) { return s.find(fragment) != std::string::npos; });
  }

  Fleet fleet_;
  RolloutEngine engine_;
  Millis now_ = at("2026-11-25T12:00:00Z");
  std::uint64_t sequence_ = 0;
  std::vector<std::string> audit_;
};

TEST_F(RolloutEngineTest, WaveMembershipIsDeterministicAndSized) {
  add_devices(20);
  Rollout a = started("r-1", "waves: [{size: 2}, {size: 25%}, {size: 100%}]\n");
  tick(a);
  EXPECT_EQ(a.waves[0].planned_size, 2u);
  EXPECT_EQ(a.waves[1].planned_size, 5u);
  EXPECT_EQ(a.waves[2].planned_size, 13u);  // the last wave takes the rest

  // A second evaluation with the same rollout id over the same fleet gives the same waves.
  Fleet copy;
  copy.devices = fleet_.devices;
  auto spec = a.spec;
  auto b = RolloutEngine::create("r-1", spec, now_);
  ASSERT_TRUE(engine_.start(*b, copy, now_).ok());
  engine_.tick(*b, copy, now_);
  for (int w = 0; w < 3; ++w) EXPECT_EQ(wave_members(a, w), wave_members(*b, w));
  // Another rollout id shuffles differently (membership is not just alphabetical).
  Fleet other;
  other.devices = fleet_.devices;
  auto c = RolloutEngine::create("r-2", spec, now_);
  ASSERT_TRUE(engine_.start(*c, other, now_).ok());
  engine_.tick(*c, other, now_);
  EXPECT_NE(wave_members(a, 1), wave_members(*c, 1));
}

TEST_F(RolloutEngineTest, NextWaveWaitsForGateAndSoak) {
  add_devices(6);
  Rollout r = started("r-gate", "waves: [{size: 2, soak: 30m}, {size: 100%}]\n");
  auto d = tick(r);
  EXPECT_EQ(installs(d), wave_members(r, 0));
  ASSERT_EQ(installs(d).size(), 2u);

  // Progress short of COMMITTED does not count as success: wave 2 stays closed.
  for (const auto& id : wave_members(r, 0)) report(r, id, v1::PHASE_CONFIRMING);
  now_ += kMinute;
  EXPECT_TRUE(installs(tick(r)).empty());
  EXPECT_EQ(r.waves[0].status, WaveStatus::kActive);

  commit_all(r, wave_members(r, 0));
  now_ += kMinute;
  EXPECT_TRUE(installs(tick(r)).empty());
  EXPECT_EQ(r.waves[0].status, WaveStatus::kSoaking);
  EXPECT_TRUE(audit_contains("wave 1 gate passed: 2 of 2 succeeded"));

  now_ += 29 * kMinute;
  EXPECT_TRUE(installs(tick(r)).empty());  // still soaking
  now_ += kMinute;
  d = tick(r);
  EXPECT_EQ(r.waves[0].status, WaveStatus::kPassed);
  EXPECT_EQ(installs(d), wave_members(r, 1));
  EXPECT_EQ(installs(d).size(), 4u);

  commit_all(r, wave_members(r, 1));
  now_ += kSecond;
  tick(r);
  EXPECT_EQ(r.state, RolloutState::kCompleted);
  EXPECT_TRUE(fleet_.claims.empty());  // devices are free for the next rollout
}

TEST_F(RolloutEngineTest, FailureDuringSoakBreaches) {
  add_devices(4);
  Rollout r =
      started("r-soak", "waves: [{size: 2, soak: 1h}, {size: 100%}]\non_breach: pause\nretries: {max: 0}\n");
  tick(r);
  commit_all(r, wave_members(r, 0));
  tick(r);
  ASSERT_EQ(r.waves[0].status, WaveStatus::kSoaking);
  // One device reverts after its health check fails later on.
  report(r, wave_members(r, 0)[0], v1::PHASE_ROLLED_BACK);
  now_ += kMinute;
  tick(r);
  EXPECT_EQ(r.state, RolloutState::kPaused);
  EXPECT_EQ(r.waves[0].status, WaveStatus::kBreached);
  now_ += 2 * kHour;
  EXPECT_TRUE(installs(tick(r)).empty());
}

TEST_F(RolloutEngineTest, FailureThresholdPauses) {
  add_devices(10);
  Rollout r = started("r-pause",
                      "waves: [{size: 10, failure_threshold: 10%}]\nretries: {max: 0}\non_breach: pause\n");
  tick(r);
  const auto members = wave_members(r, 0);
  report(r, members[0], v1::PHASE_FAILED, v1::ERROR_INSTALL_FAILED);
  tick(r);
  EXPECT_EQ(r.state, RolloutState::kRunning);  // 1 of 10 = 10% is not over 10%
  report(r, members[1], v1::PHASE_FAILED, v1::ERROR_INSTALL_FAILED);
  tick(r);
  EXPECT_EQ(r.state, RolloutState::kPaused);
  EXPECT_NE(r.reason.find("2 of 10 device(s) failed (20%), over the failure threshold of 10%"),
            std::string::npos)
      << r.reason;
  EXPECT_TRUE(audit_contains("action: pause"));
}

TEST_F(RolloutEngineTest, FailureThresholdAborts) {
  add_devices(4);
  Rollout r = started("r-abort", "waves: [{size: 2}, {size: 100%}]\nretries: {max: 0}\non_breach: abort\n");
  tick(r);
  const auto w0 = wave_members(r, 0);
  report(r, w0[0], v1::PHASE_FAILED, v1::ERROR_INSTALL_FAILED);
  const auto d = tick(r);
  EXPECT_EQ(r.state, RolloutState::kAborted);
  EXPECT_EQ(targets(d, Decision::Kind::kCancel), std::vector<std::string>{w0[1]});  // the one still in flight
  for (const auto& id : wave_members(r, 1)) EXPECT_EQ(r.find_member(id)->state, MemberState::kCancelled);
  EXPECT_TRUE(fleet_.claims.empty());
  now_ += kHour;
  EXPECT_TRUE(tick(r).empty());
}

TEST_F(RolloutEngineTest, FailureThresholdRollsBackUpdatedDevices) {
  add_devices(6);
  Rollout r = started("r-rb",
                      "waves: [{size: 3, failure_threshold: 0.4}, {size: 100%}]\nretries: {max: 0}\n"
                      "on_breach: rollback\n");
  tick(r);
  const auto w0 = wave_members(r, 0);
  commit_all(r, {w0[0]});
  report(r, w0[1], v1::PHASE_FAILED, v1::ERROR_HEALTH_CHECK_FAILED);
  tick(r);
  ASSERT_EQ(r.state, RolloutState::kRunning);  // 1 of 3 = 33%
  report(r, w0[2], v1::PHASE_FAILED, v1::ERROR_HEALTH_CHECK_FAILED);
  const auto d = tick(r);
  EXPECT_EQ(r.state, RolloutState::kRollingBack);
  // Only the device that was updated goes back, to the artifact it ran before.
  ASSERT_EQ(targets(d, Decision::Kind::kRollback), std::vector<std::string>{w0[0]});
  for (const Decision& x : d) {
    if (x.kind == Decision::Kind::kRollback) {
      EXPECT_EQ(x.artifact_id, kOldArtifact);
    }
  }
  report(r, w0[0], v1::PHASE_ROLLING_BACK);
  tick(r);
  EXPECT_EQ(r.state, RolloutState::kRollingBack);
  report(r, w0[0], v1::PHASE_ROLLED_BACK);
  tick(r);
  EXPECT_EQ(r.state, RolloutState::kRolledBack);
  EXPECT_EQ(r.find_member(w0[0])->state, MemberState::kRolledBack);
  EXPECT_TRUE(audit_contains("rolled back: 1 device(s) restored, 0 failed"));
}

TEST_F(RolloutEngineTest, SuccessRatioGateBreachesWhenWaveEndsShort) {
  add_devices(4);
  Rollout r = started("r-ratio",
                      "waves: [{size: 2, success_ratio: 1.0, failure_threshold: 0.5}, {size: 100%}]\n"
                      "retries: {max: 0}\n");
  tick(r);
  const auto w0 = wave_members(r, 0);
  commit_all(r, {w0[0]});
  report(r, w0[1], v1::PHASE_FAILED, v1::ERROR_DOWNLOAD_TIMEOUT);  // 50%: not over the threshold
  tick(r);
  EXPECT_EQ(r.state, RolloutState::kPaused);
  EXPECT_NE(r.reason.find("only 1 of 2 device(s) succeeded (50%), the gate needs 100%"), std::string::npos)
      << r.reason;

  // The operator resumes: the gate of this wave is waived and wave 2 starts.
  ASSERT_TRUE(engine_.resume(r, now_).ok());
  const auto d = tick(r);
  EXPECT_EQ(installs(d), wave_members(r, 1));
}

TEST_F(RolloutEngineTest, RetriesWithExponentialBackoff) {
  add_devices(1);
  Rollout r = started("r-retry", "retries: {max: 2, backoff: 10s, max_backoff: 15s}\n");
  ASSERT_EQ(installs(tick(r)).size(), 1u);
  report(r, "dev-0", v1::PHASE_FAILED, v1::ERROR_DOWNLOAD_TIMEOUT);
  EXPECT_EQ(r.find_member("dev-0")->state, MemberState::kRetryWait);
  now_ += 9 * kSecond;
  EXPECT_TRUE(installs(tick(r)).empty());
  now_ += kSecond;
  auto d = tick(r);
  ASSERT_EQ(installs(d).size(), 1u);
  EXPECT_EQ(r.find_member("dev-0")->attempt, 2u);
  report(r, "dev-0", v1::PHASE_FAILED, v1::ERROR_DOWNLOAD_TIMEOUT);
  now_ += 14 * kSecond;  // 20 s doubled, capped at 15 s
  EXPECT_TRUE(installs(tick(r)).empty());
  now_ += kSecond;
  ASSERT_EQ(installs(tick(r)).size(), 1u);
  report(r, "dev-0", v1::PHASE_FAILED, v1::ERROR_DOWNLOAD_TIMEOUT);
  EXPECT_EQ(r.find_member("dev-0")->state, MemberState::kFailed);
  EXPECT_NE(r.find_member("dev-0")->last_error.find("ERROR_DOWNLOAD_TIMEOUT"), std::string::npos);
  tick(r);
  EXPECT_EQ(r.state, RolloutState::kPaused);  // default threshold 0, default action pause
}

TEST_F(RolloutEngineTest, StuckDevicesTimeOutIntoFailures) {
  add_devices(2);
  Rollout r = started("r-timeout",
                      "retries: {max: 1, backoff: 1s}\ntimeouts: {dispatch: 5m, downloading: 20m}\n"
                      "waves: [{size: 2, failure_threshold: 1.0, success_ratio: 0}]\n");
  tick(r);
  // dev-0 never answers; dev-1 starts downloading and then hangs.
  report(r, "dev-1", v1::PHASE_DOWNLOADING);
  now_ += 5 * kMinute;
  auto d = tick(r);
  EXPECT_EQ(targets(d, Decision::Kind::kCancel), std::vector<std::string>{"dev-0"});
  EXPECT_EQ(r.find_member("dev-0")->state, MemberState::kRetryWait);
  EXPECT_NE(r.find_member("dev-0")->last_error.find("timed out after 5m in waiting for the device to start"),
            std::string::npos);
  now_ += kSecond;
  EXPECT_EQ(installs(tick(r)), std::vector<std::string>{"dev-0"});  // retry
  now_ += 15 * kMinute;
  d = tick(r);
  // dev-0 ignored its retry too; dev-1 hung in downloading for 20 minutes.
  EXPECT_EQ(targets(d, Decision::Kind::kCancel), (std::vector<std::string>{"dev-0", "dev-1"}));
  EXPECT_NE(r.find_member("dev-1")->last_error.find("in phase downloading"), std::string::npos);
  // Both run out of attempts: never "in progress" forever.
  now_ += kMinute;
  tick(r);
  now_ += 30 * kMinute;
  tick(r);
  EXPECT_EQ(r.find_member("dev-0")->state, MemberState::kFailed);
  EXPECT_EQ(r.find_member("dev-1")->state, MemberState::kFailed);
  EXPECT_EQ(r.state, RolloutState::kCompleted);  // the gate accepts 0% success here
}

TEST_F(RolloutEngineTest, ReportsOfAnOldCommandAreIgnored) {
  add_devices(1);
  Rollout r = started("r-stale", "timeouts: {dispatch: 1m}\nretries: {max: 1, backoff: 1s}\n");
  tick(r);
  const std::string first_command = r.find_member("dev-0")->command_id;
  now_ += kMinute;
  tick(r);
  now_ += kSecond;
  tick(r);  // retry sends a new command
  ASSERT_NE(r.find_member("dev-0")->command_id, first_command);
  engine_.on_progress(r, progress_under(r, "dev-0", first_command, v1::PHASE_COMMITTED), now_);
  EXPECT_EQ(r.find_member("dev-0")->state, MemberState::kDispatched);
}

TEST_F(RolloutEngineTest, ForwardProgressOnOurArtifactUnderAnEarlierCommandCounts) {
  // The device reconnected, the orchestrator re-sent the install with a new id, and the device
  // carries on under the id it started with (found by fota-sim's flaky-links scenario).
  add_devices(1);
  Rollout r = started("r-crossed", "retries: {max: 1, backoff: 1s}\n");
  tick(r);
  const std::string first_command = r.find_member("dev-0")->command_id;
  r.find_member("dev-0")->command_id = first_command + "-resent";  // what the re-dispatch does
  v1::Progress failed = progress_under(r, "dev-0", first_command, v1::PHASE_FAILED, r.spec.artifact_id);
  failed.set_error(v1::ERROR_BUSY);
  engine_.on_progress(r, failed, now_);
  EXPECT_EQ(r.find_member("dev-0")->state, MemberState::kDispatched)
      << "failures of old commands stay ignored";
  v1::Progress other = failed;
  other.set_phase(v1::PHASE_COMMITTED);
  other.set_error(v1::ERROR_NONE);
  other.set_artifact_id("00000000000000000000000000000000");
  engine_.on_progress(r, other, now_);
  EXPECT_EQ(r.find_member("dev-0")->state, MemberState::kDispatched) << "another artifact is not ours";
  v1::Progress committed = other;
  committed.set_artifact_id(r.spec.artifact_id);
  engine_.on_progress(r, committed, now_);
  EXPECT_EQ(r.find_member("dev-0")->state, MemberState::kSucceeded);
}

TEST_F(RolloutEngineTest, ConcurrencyCapAndBandwidthShare) {
  add_devices(5);
  Rollout r = started("r-cap", "max_concurrent: 2\nmax_bytes_per_second: 1000000\n");
  auto d = tick(r);
  ASSERT_EQ(installs(d).size(), 2u);
  for (const Decision& x : d) {
    if (x.kind == Decision::Kind::kInstall) {
      EXPECT_EQ(x.max_bytes_per_second, 500'000u);
    }
  }
  EXPECT_TRUE(installs(tick(r)).empty());
  commit_all(r, installs(d));
  EXPECT_EQ(installs(tick(r)).size(), 2u);
}

TEST_F(RolloutEngineTest, StartTimeIsHonoured) {
  add_devices(2);
  Rollout r = started("r-later", "start_at: 2026-11-25T14:00:00Z\n");
  EXPECT_TRUE(tick(r).empty());
  EXPECT_FALSE(r.targets_resolved);
  now_ = at("2026-11-25T13:59:59Z");
  EXPECT_TRUE(installs(tick(r)).empty());
  now_ = at("2026-11-25T14:00:00Z");
  EXPECT_EQ(installs(tick(r)).size(), 2u);
}

TEST_F(RolloutEngineTest, MaintenanceWindowsUseEachDevicesTimeZone) {
  // 2026-11-25 is a Wednesday. Window: every day 02:00-04:00 local.
  add_device("tokyo", "Asia/Tokyo");
  add_device("berlin", "Europe/Berlin");
  add_device("newyork", "America/New_York");
  add_device("utc", "UTC");
  Rollout r = started("r-win", "windows: [{days: [daily], start: '02:00', duration: 2h}]\n");
  now_ = at("2026-11-25T16:30:00Z");  // Tokyo 01:30, Berlin 17:30, New York 11:30
  EXPECT_TRUE(installs(tick(r)).empty());
  now_ = at("2026-11-25T17:00:00Z");  // Tokyo 02:00
  EXPECT_EQ(installs(tick(r)), std::vector<std::string>{"tokyo"});
  now_ = at("2026-11-26T01:30:00Z");  // Berlin 02:30 (CET), UTC 01:30
  EXPECT_EQ(installs(tick(r)), std::vector<std::string>{"berlin"});
  now_ = at("2026-11-26T02:00:00Z");
  EXPECT_EQ(installs(tick(r)), std::vector<std::string>{"utc"});
  now_ = at("2026-11-26T06:59:00Z");  // New York 01:59 EST
  EXPECT_TRUE(installs(tick(r)).empty());
  now_ = at("2026-11-26T07:00:00Z");  // New York 02:00 EST
  EXPECT_EQ(installs(tick(r)), std::vector<std::string>{"newyork"});
}

TEST_F(RolloutEngineTest, WindowsFollowDaylightSavingChanges) {
  const std::vector<WeeklyWindow> sunday_night = {{0x01, 60, 180}};  // Sunday 01:00-04:00 local
  // Europe/Berlin springs forward on 2026-03-29 at 02:00 CET -> 03:00 CEST.
  EXPECT_TRUE(in_maintenance_window(sunday_night, "Europe/Berlin", at("2026-03-29T00:00:00Z")));  // 01:00 CET
  EXPECT_TRUE(
      in_maintenance_window(sunday_night, "Europe/Berlin", at("2026-03-29T01:59:00Z")));  // 03:59 CEST
  EXPECT_FALSE(
      in_maintenance_window(sunday_night, "Europe/Berlin", at("2026-03-29T02:00:00Z")));  // 04:00 CEST
  // The week before, the same UTC instant is 03:00 CET: still inside.
  EXPECT_TRUE(in_maintenance_window(sunday_night, "Europe/Berlin", at("2026-03-22T02:00:00Z")));
  // America/New_York falls back on 2026-11-01 at 02:00 EDT -> 01:00 EST: the local hour 01:xx
  // happens twice and both are inside; the window ends at 04:00 EST = 09:00Z.
  EXPECT_TRUE(
      in_maintenance_window(sunday_night, "America/New_York", at("2026-11-01T05:00:00Z")));  // 01:00 EDT
  EXPECT_TRUE(
      in_maintenance_window(sunday_night, "America/New_York", at("2026-11-01T06:30:00Z")));  // 01:30 EST
  EXPECT_TRUE(
      in_maintenance_window(sunday_night, "America/New_York", at("2026-11-01T08:59:00Z")));  // 03:59 EST
  EXPECT_FALSE(
      in_maintenance_window(sunday_night, "America/New_York", at("2026-11-01T09:00:00Z")));  // 04:00 EST
  // next_window_open lands on the local start in the zone's offset of that day.
  EXPECT_EQ(next_window_open(sunday_night, "Europe/Berlin", at("2026-03-28T12:00:00Z")),
            at("2026-03-29T00:00:00Z"));
  EXPECT_EQ(next_window_open(sunday_night, "Europe/Berlin", at("2026-04-01T12:00:00Z")),
            at("2026-04-04T23:00:00Z"));
  // A window crossing midnight: Saturday 23:00 for 2h includes Sunday 00:30.
  const std::vector<WeeklyWindow> late = {{0x40, 23 * 60, 120}};
  EXPECT_TRUE(in_maintenance_window(late, "Asia/Tokyo", at("2026-11-28T15:30:00Z")));   // Sun 00:30 JST
  EXPECT_FALSE(in_maintenance_window(late, "Asia/Tokyo", at("2026-11-28T17:00:00Z")));  // Sun 02:00 JST
  // Unknown zones fall back to UTC instead of failing.
  EXPECT_TRUE(in_maintenance_window(late, "Mars/Olympus", at("2026-11-28T23:30:00Z")));
}

TEST_F(RolloutEngineTest, LateJoinersArePickedUp) {
  add_devices(2);
  Rollout r = started("r-late", "waves: [{size: 1}, {size: 100%}]\n");
  tick(r);
  add_device("newcomer");
  auto d = tick(r);
  EXPECT_EQ(installs(d), std::vector<std::string>{"newcomer"});  // joins the open wave 1
  EXPECT_TRUE(r.find_member("newcomer")->late_joiner);
  EXPECT_EQ(fleet_.claims["newcomer"], "r-late");
  EXPECT_TRUE(audit_contains("device newcomer joined the target"));
  // A device that does not match the selector is not picked up.
  add_device("stranger", "UTC", {"other"});
  tick(r);
  EXPECT_EQ(r.find_member("stranger"), nullptr);
}

TEST_F(RolloutEngineTest, LateJoinerScanFollowsTheFleetGeneration) {
  add_devices(2);
  fleet_.generation = 7;
  Rollout r = started("r-gen", "");
  tick(r);
  add_device("quiet");  // added without telling the engine: not seen until the generation moves
  tick(r);
  EXPECT_EQ(r.find_member("quiet"), nullptr);
  ++fleet_.generation;
  tick(r);
  EXPECT_NE(r.find_member("quiet"), nullptr);
}

TEST_F(RolloutEngineTest, OverlappingRolloutIsRefused) {
  add_devices(3);
  Rollout a = started("r-a", "");
  tick(a);
  Rollout b = make("r-b", "");
  auto st = engine_.start(b, fleet_, now_);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code, common::Errc::kConflict);
  EXPECT_NE(st.error().message.find("dev-0 (in r-a)"), std::string::npos) << st.error().message;
  EXPECT_EQ(b.state, RolloutState::kCreated);
  // Once r-a finishes, the devices are free.
  ASSERT_TRUE(engine_.abort(a, fleet_, "operator", now_).ok());
  EXPECT_TRUE(engine_.start(b, fleet_, now_).ok());
  // A late joiner belongs to the first active rollout that picks it up; a second one is refused.
  tick(b);
  add_device("extra");
  tick(b);
  ASSERT_NE(b.find_member("extra"), nullptr);
  Rollout c = make("r-c", "");
  c.spec.target.tags.clear();
  c.spec.target.device_ids = {"extra"};
  st = engine_.start(c, fleet_, now_);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message.find("extra (in r-b)"), std::string::npos) << st.error().message;
}

TEST_F(RolloutEngineTest, RolloutsNotStartedYetAlsoOwnTheirTarget) {
  add_devices(2);
  Rollout scheduled = started("r-later", "start_at: 2030-01-01T00:00:00Z\n");
  tick(scheduled);
  ASSERT_FALSE(scheduled.targets_resolved);
  Rollout created = make("r-created", "");
  Rollout b = make("r-b", "");
  b.spec.target.tags.clear();
  b.spec.target.device_ids = {"dev-1"};
  auto st = RolloutEngine::check_target(b, fleet_, {&scheduled, &created});
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message.find("dev-1 (in r-later)"), std::string::npos) << st.error().message;
  EXPECT_FALSE(engine_.start(b, fleet_, now_, {&scheduled}).ok());
  EXPECT_TRUE(engine_.abort(scheduled, fleet_, "operator", now_).ok());
  EXPECT_TRUE(engine_.start(b, fleet_, now_, {&scheduled}).ok());
}

TEST_F(RolloutEngineTest, TargetMustSelectKnownDevices) {
  add_devices(1);
  Rollout r = make("r-none", "");
  r.spec.target.tags = {"nobody"};
  auto st = engine_.start(r, fleet_, now_);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message.find("selects no registered device"), std::string::npos);
  r.spec.target.tags.clear();
  r.spec.target.device_ids = {"typo-device"};
  st = engine_.start(r, fleet_, now_);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message.find("'typo-device' is not registered"), std::string::npos);
}

TEST_F(RolloutEngineTest, PauseResumeAbort) {
  add_devices(4);
  Rollout r = started("r-ops", "max_concurrent: 1\n");
  auto d = tick(r);
  ASSERT_EQ(installs(d).size(), 1u);
  ASSERT_TRUE(engine_.pause(r, "operator", now_).ok());
  EXPECT_FALSE(engine_.pause(r, "again", now_).ok());  // only a running rollout pauses
  commit_all(r, installs(d));                          // in-flight work finishes while paused
  EXPECT_EQ(r.find_member(installs(d)[0])->state, MemberState::kSucceeded);
  EXPECT_TRUE(installs(tick(r)).empty());  // but nothing new starts
  ASSERT_TRUE(engine_.resume(r, now_).ok());
  d = tick(r);
  ASSERT_EQ(installs(d).size(), 1u);
  auto aborted = engine_.abort(r, fleet_, "operator", now_);
  ASSERT_TRUE(aborted.ok());
  EXPECT_EQ(targets(*aborted, Decision::Kind::kCancel), installs(d));
  EXPECT_EQ(r.state, RolloutState::kAborted);
  EXPECT_FALSE(engine_.resume(r, now_).ok());
  std::size_t cancelled = 0;
  for (const Member& m : r.members) cancelled += m.state == MemberState::kCancelled ? 1 : 0;
  EXPECT_EQ(cancelled, 3u);
}

TEST_F(RolloutEngineTest, ManualFleetRollbackReturnsTouchedDevicesToTheirPreviousArtifact) {
  add_devices(3);
  fleet_.devices["dev-2"].artifact_id = "22222222222222222222222222222222";
  Rollout r = started("r-fleet", "");
  tick(r);
  commit_all(r, {"dev-0", "dev-1", "dev-2"});
  tick(r);
  ASSERT_EQ(r.state, RolloutState::kCompleted);
  auto d = engine_.rollback(r, "operator: bad release", now_);
  ASSERT_TRUE(d.ok()) << d.error().message;
  std::set<std::pair<std::string, std::string>> sent;
  for (const Decision& x : *d) {
    if (x.kind == Decision::Kind::kRollback) sent.insert({x.device_id, x.artifact_id});
  }
  EXPECT_EQ(
      sent,
      (std::set<std::pair<std::string, std::string>>{
          {"dev-0", kOldArtifact}, {"dev-1", kOldArtifact}, {"dev-2", "22222222222222222222222222222222"}}));
  EXPECT_FALSE(engine_.rollback(r, "twice", now_).ok());
  report(r, "dev-0", v1::PHASE_ROLLED_BACK);
  report(r, "dev-1", v1::PHASE_ROLLED_BACK);
  tick(r);
  EXPECT_EQ(r.state, RolloutState::kRollingBack);
  // dev-2 never answers: its rollback times out instead of hanging the rollout.
  now_ += r.spec.timeouts.rolling_back_ms;
  tick(r);
  EXPECT_EQ(r.find_member("dev-2")->state, MemberState::kRollbackFailed);
  EXPECT_EQ(r.state, RolloutState::kRolledBack);
}

TEST_F(RolloutEngineTest, RollbackWaitsForDevicesTooFarIntoTheUpdateToCancel) {
  // Found by fota-sim's bad-image-rollback scenario: a device installing when the rollback starts
  // refuses the cancel, finishes and commits; it must still end on its previous artifact.
  add_devices(3);
  Rollout r = started("r-late", "");
  tick(r);
  report(r, "dev-0", v1::PHASE_COMMITTED);
  report(r, "dev-1", v1::PHASE_INSTALLING);
  report(r, "dev-2", v1::PHASE_DOWNLOADING);
  auto d = engine_.rollback(r, "operator: bad release", now_);
  ASSERT_TRUE(d.ok()) << d.error().message;
  EXPECT_EQ(targets(*d, Decision::Kind::kRollback), std::vector<std::string>{"dev-0"});
  EXPECT_EQ(targets(*d, Decision::Kind::kCancel), std::vector<std::string>{"dev-2"});
  EXPECT_EQ(r.find_member("dev-1")->state, MemberState::kRollingBack);
  // dev-1's own update reports do not count as its rollback.
  engine_.on_progress(r, progress_under(r, "dev-1", r.id + ".dev-1.1", v1::PHASE_COMMITTED, kArtifact), now_);
  EXPECT_EQ(r.find_member("dev-1")->state, MemberState::kRollingBack);
  // Its inventory shows the new artifact: now it gets the rollback.
  fleet_.devices["dev-1"].artifact_id = kArtifact;
  const auto sent = engine_.on_inventory(r, fleet_.devices["dev-1"], inventory(""), now_);
  EXPECT_EQ(targets(sent, Decision::Kind::kRollback), std::vector<std::string>{"dev-1"});
  report(r, "dev-0", v1::PHASE_ROLLED_BACK);
  report(r, "dev-1", v1::PHASE_ROLLED_BACK);
  tick(r);
  EXPECT_EQ(r.find_member("dev-1")->state, MemberState::kRolledBack);
  // dev-2 has not yet said how its cancelled update ended: the rollback is not over.
  EXPECT_EQ(r.find_member("dev-2")->state, MemberState::kRollingBack);
  EXPECT_EQ(r.state, RolloutState::kRollingBack);
  report(r, "dev-2", v1::PHASE_CANCELLED);
  tick(r);
  EXPECT_EQ(r.find_member("dev-2")->state, MemberState::kCancelled);
  EXPECT_EQ(r.state, RolloutState::kRolledBack);
}

TEST_F(RolloutEngineTest, ACancelThatCrossesTheUpdatesEndStillEndsInARollback) {
  // Found by OrchestratorServiceTest.FailureThresholdPausesThenOperatorRollsBackTheFleet (one run
  // in three): a device downloading when the rollback started was sent a cancel and counted as
  // cancelled at once; it finished its update anyway, and the rollout ended "rolled_back" with that
  // device on the new artifact.
  add_devices(3);
  Rollout r = started("r-cross", "");
  tick(r);
  for (const char* id : {"dev-0", "dev-1", "dev-2"}) report(r, id, v1::PHASE_DOWNLOADING);
  auto d = engine_.rollback(r, "operator: bad release", now_);
  ASSERT_TRUE(d.ok()) << d.error().message;
  EXPECT_EQ(targets(*d, Decision::Kind::kCancel), (std::vector<std::string>{"dev-0", "dev-1", "dev-2"}));
  for (const char* id : {"dev-0", "dev-1", "dev-2"})
    EXPECT_EQ(r.find_member(id)->state, MemberState::kRollingBack) << id;
  tick(r);
  EXPECT_EQ(r.state, RolloutState::kRollingBack);
  // dev-0's last chunk crossed the cancel: it commits under its update's command...
  engine_.on_progress(r, progress_under(r, "dev-0", r.id + ".dev-0.1", v1::PHASE_COMMITTED, kArtifact), now_);
  EXPECT_EQ(r.find_member("dev-0")->state, MemberState::kRollingBack);
  // ...and its inventory, on the new artifact, gets it the rollback.
  fleet_.devices["dev-0"].artifact_id = kArtifact;
  auto sent = engine_.on_inventory(r, fleet_.devices["dev-0"], inventory(""), now_);
  EXPECT_EQ(targets(sent, Decision::Kind::kRollback), std::vector<std::string>{"dev-0"});
  // dev-1 refuses the cancel as too late, then its update fails and it reverts by itself.
  v1::Progress refusal = progress_under(r, "dev-1", r.find_member("dev-1")->command_id, v1::PHASE_FAILED);
  refusal.set_error(v1::ERROR_BUSY);
  engine_.on_progress(r, refusal, now_);
  EXPECT_EQ(r.find_member("dev-1")->state, MemberState::kRollingBack);
  engine_.on_progress(r, progress_under(r, "dev-1", r.id + ".dev-1.1", v1::PHASE_ROLLED_BACK, kArtifact),
                      now_);
  EXPECT_EQ(r.find_member("dev-1")->state, MemberState::kRolledBack);
  // dev-2 honours the cancel.
  engine_.on_progress(r, progress_under(r, "dev-2", r.id + ".dev-2.1", v1::PHASE_CANCELLED, kArtifact), now_);
  EXPECT_EQ(r.find_member("dev-2")->state, MemberState::kCancelled);
  tick(r);
  EXPECT_EQ(r.state, RolloutState::kRollingBack);  // dev-0's rollback is under way
  report(r, "dev-0", v1::PHASE_ROLLED_BACK);
  tick(r);
  EXPECT_EQ(r.find_member("dev-0")->state, MemberState::kRolledBack);
  EXPECT_EQ(r.state, RolloutState::kRolledBack);
}

TEST_F(RolloutEngineTest, ADeviceTooLateToCancelThatRevertsOnItsOwnIsRolledBack) {
  // Found by fota-sim's bad-image-rollback scenario under load: a device confirming the bad image
  // when the rollback starts fails its health check and reverts by itself. Factory devices report
  // no artifact id, so "back on the previous artifact" must match an empty one too.
  add_devices(2);
  fleet_.devices["dev-1"].artifact_id.clear();  // factory image
  Rollout r = started("r-self", "");
  tick(r);
  report(r, "dev-0", v1::PHASE_CONFIRMING);
  report(r, "dev-1", v1::PHASE_CONFIRMING);
  ASSERT_TRUE(engine_.rollback(r, "wave 1 breached", now_).ok());
  ASSERT_EQ(r.find_member("dev-0")->state, MemberState::kRollingBack);
  ASSERT_EQ(r.find_member("dev-1")->state, MemberState::kRollingBack);
  // dev-0 says so under its update's command: it is back.
  engine_.on_progress(r, progress_under(r, "dev-0", r.id + ".dev-0.1", v1::PHASE_ROLLED_BACK, kArtifact),
                      now_);
  EXPECT_EQ(r.find_member("dev-0")->state, MemberState::kRolledBack);
  // dev-1's report was lost; its inventory shows the factory image and no pending deployment.
  const auto d = engine_.on_inventory(r, fleet_.devices["dev-1"], inventory(""), now_);
  EXPECT_TRUE(targets(d, Decision::Kind::kRollback).empty());
  EXPECT_EQ(r.find_member("dev-1")->state, MemberState::kRolledBack);
  tick(r);
  EXPECT_EQ(r.state, RolloutState::kRolledBack);
}

TEST_F(RolloutEngineTest, InventoryWithoutTheCommandGetsItAgain) {
  add_devices(1);
  Rollout r = started("r-level", "");
  tick(r);
  const std::string first = r.find_member("dev-0")->command_id;
  // The device reconnects and reports it works on nothing: it lost the command.
  auto d = engine_.on_inventory(r, fleet_.devices["dev-0"], inventory(""), now_);
  EXPECT_EQ(installs(d), std::vector<std::string>{"dev-0"});
  EXPECT_NE(r.find_member("dev-0")->command_id, first);
  // When it reports working on this rollout, nothing is resent.
  EXPECT_TRUE(engine_.on_inventory(r, fleet_.devices["dev-0"], inventory(r.id), now_).empty());
}

TEST_F(RolloutEngineTest, InventoryRunningTheArtifactCountsAsCommittedWhenTheReportWasLost) {
  add_devices(2);
  Rollout r = started("r-lost", "");
  tick(r);
  report(r, "dev-0", v1::PHASE_DOWNLOADING);
  report(r, "dev-1", v1::PHASE_DOWNLOADING);
  // dev-0 committed while the orchestrator was down; only its inventory tells.
  fleet_.devices["dev-0"].artifact_id = kArtifact;
  auto d = engine_.on_inventory(r, fleet_.devices["dev-0"], inventory(""), now_);
  EXPECT_TRUE(installs(d).empty());
  EXPECT_EQ(r.find_member("dev-0")->state, MemberState::kSucceeded);
  // Still confirming (names the deployment): not yet a success.
  fleet_.devices["dev-1"].artifact_id = kArtifact;
  EXPECT_TRUE(engine_.on_inventory(r, fleet_.devices["dev-1"], inventory(r.id), now_).empty());
  EXPECT_EQ(r.find_member("dev-1")->state, MemberState::kUpdating);
}

TEST_F(RolloutEngineTest, DevicesAlreadyOnTheArtifactSucceedWithoutACommand) {
  add_devices(2);
  fleet_.devices["dev-1"].artifact_id = kArtifact;
  Rollout r = started("r-noop", "");
  const auto d = tick(r);
  EXPECT_EQ(installs(d), std::vector<std::string>{"dev-0"});
  EXPECT_EQ(r.find_member("dev-1")->state, MemberState::kSucceeded);
}

TEST_F(RolloutEngineTest, AnInventoryThatRepeatsTheOutcomeNeverResendsAFailedUpdate) {
  // Issue 14: after the revert reboot a real agent publishes its inventory (not running our
  // artifact, working on nothing) before it repeats the ROLLED_BACK report. That inventory used to
  // read as a lost command: the install went out again under a new id, the outcome that followed
  // carried the old id and was ignored, and the device downloaded the bad image forever.
  add_devices(1);
  Rollout r = started("r-bad", "retries: {max: 0}\nwaves:\n  - {size: 100%, failure_threshold: 0}\n");
  tick(r);
  const std::string command = r.find_member("dev-0")->command_id;
  report(r, "dev-0", v1::PHASE_REBOOTING);
  const v1::Progress outcome = progress_under(r, "dev-0", command, v1::PHASE_ROLLED_BACK, kArtifact);
  // The inventory arrives first: no install, whatever the order.
  EXPECT_TRUE(
      installs(engine_.on_inventory(r, fleet_.devices["dev-0"], inventory("", &outcome), now_)).empty());
  EXPECT_EQ(r.find_member("dev-0")->command_id, command);
  // Judged as the report it repeats (the service does this before on_inventory): failed once.
  engine_.on_progress(r, outcome, now_);
  EXPECT_EQ(r.find_member("dev-0")->state, MemberState::kFailed);
  EXPECT_EQ(r.find_member("dev-0")->attempt, 1u);
  // The separate report that follows changes nothing, and the breach fires.
  engine_.on_progress(r, outcome, now_);
  EXPECT_TRUE(installs(tick(r)).empty());
  EXPECT_EQ(r.state, RolloutState::kPaused);
  EXPECT_TRUE(
      installs(engine_.on_inventory(r, fleet_.devices["dev-0"], inventory("", &outcome), now_)).empty());
}

TEST_F(RolloutEngineTest, AnOutcomeOfAnEarlierCommandDoesNotStopTheRepairOfALostRetry) {
  // The first attempt failed; the retry's command never arrived. The device's last outcome names
  // the first command, so the retry is sent again (the same attempt, not a new one).
  add_devices(1);
  Rollout r = started("r-retry", "retries: {max: 1, backoff: 1s}\n");
  tick(r);
  const std::string first = r.find_member("dev-0")->command_id;
  report(r, "dev-0", v1::PHASE_FAILED, v1::ERROR_INSTALL_FAILED);
  ASSERT_EQ(r.find_member("dev-0")->state, MemberState::kRetryWait);
  now_ += 2 * kSecond;
  EXPECT_EQ(installs(tick(r)), std::vector<std::string>{"dev-0"});
  const std::string second = r.find_member("dev-0")->command_id;
  ASSERT_NE(second, first);
  const v1::Progress outcome = progress_under(r, "dev-0", first, v1::PHASE_FAILED, kArtifact);
  EXPECT_EQ(installs(engine_.on_inventory(r, fleet_.devices["dev-0"], inventory("", &outcome), now_)),
            std::vector<std::string>{"dev-0"});
  EXPECT_EQ(r.find_member("dev-0")->attempt, 2u);
}

// ---- The member machine's transition table ------------------------------------------------
// Each walk drives one small rollout through real engine calls and lists the rows its members
// take, in order; together the walks take every row of member_transitions().

std::string row_text(const MemberTransition& row) {
  return std::string(member_state_name(row.from)) + " -" + row.event + "[" + row.guard + "]-> " +
         std::string(member_state_name(row.to));
}

class MemberTableTest;

struct MemberWalk {
  const char* name;
  void (MemberTableTest::*run)();
  std::vector<std::string> path;
};

class MemberTableTest : public RolloutEngineTest, public ::testing::WithParamInterface<MemberWalk> {
 public:  // the walks are named in kMemberWalks
  MemberTableTest() {
    engine_ =
        RolloutEngine([this](std::size_t row) { taken_.push_back(row_text(member_transitions().at(row))); });
  }

  // One device (dev-0) in a started rollout, its install sent.
  void sent(const std::string& extra = "retries: {max: 1, backoff: 1s}\n") {
    add_devices(1);
    r_ = started("r-walk", extra);
    ASSERT_EQ(installs(tick(r_)), std::vector<std::string>{"dev-0"});
  }
  // A report under the first install command (the update's own id once the member waits).
  void update_reports(v1::Phase phase, v1::ErrorCode error = v1::ERROR_NONE) {
    v1::Progress p = progress_under(r_, "dev-0", r_.id + ".dev-0.1", phase, kArtifact);
    p.set_error(error);
    (void)engine_.on_progress(r_, p, now_);
  }
  void rollback() { ASSERT_TRUE(engine_.rollback(r_, "operator", now_).ok()); }
  void abort() { ASSERT_TRUE(engine_.abort(r_, fleet_, "operator", now_).ok()); }
  void inventory_says(const std::string& artifact_id) {
    fleet_.devices["dev-0"].artifact_id = artifact_id;
    (void)engine_.on_inventory(r_, fleet_.devices["dev-0"], inventory(""), now_);
  }
  void retry_after_backoff() {
    now_ += kSecond;
    ASSERT_EQ(installs(tick(r_)), std::vector<std::string>{"dev-0"});
  }
  void fails_twice(v1::Phase phase, bool working_first) {
    sent();
    if (working_first) report(r_, "dev-0", v1::PHASE_DOWNLOADING);
    report(r_, "dev-0", phase);
    retry_after_backoff();
    if (working_first) report(r_, "dev-0", v1::PHASE_DOWNLOADING);
    report(r_, "dev-0", phase);
  }

  void already_runs_the_artifact() {
    add_devices(1);
    fleet_.devices["dev-0"].artifact_id = kArtifact;
    r_ = started("r-walk", "");
    EXPECT_TRUE(installs(tick(r_)).empty());
  }
  void update_commits() {
    sent();
    report(r_, "dev-0", v1::PHASE_DOWNLOADING);
    report(r_, "dev-0", v1::PHASE_INSTALLING);
    report(r_, "dev-0", v1::PHASE_COMMITTED);
  }
  void commits_at_once() {
    sent();
    report(r_, "dev-0", v1::PHASE_COMMITTED);
  }
  void dispatched_fails() { fails_twice(v1::PHASE_FAILED, false); }
  void dispatched_cancelled() { fails_twice(v1::PHASE_CANCELLED, false); }
  void dispatched_rolled_back() { fails_twice(v1::PHASE_ROLLED_BACK, false); }
  void updating_fails() { fails_twice(v1::PHASE_FAILED, true); }
  void updating_cancelled() { fails_twice(v1::PHASE_CANCELLED, true); }
  void updating_rolled_back() { fails_twice(v1::PHASE_ROLLED_BACK, true); }
  void silent_after_dispatch() {
    sent("retries: {max: 1, backoff: 1s}\ntimeouts: {dispatch: 5m}\n");
    now_ += 5 * kMinute;
    tick(r_);
    retry_after_backoff();
    now_ += 5 * kMinute;
    tick(r_);
  }
  void silent_while_downloading() {
    sent("retries: {max: 1, backoff: 1s}\ntimeouts: {downloading: 20m}\n");
    report(r_, "dev-0", v1::PHASE_DOWNLOADING);
    now_ += 20 * kMinute;
    tick(r_);
    retry_after_backoff();
    report(r_, "dev-0", v1::PHASE_DOWNLOADING);
    now_ += 20 * kMinute;
    tick(r_);
  }
  void command_lost() {
    sent();
    inventory_says(kOldArtifact);
    report(r_, "dev-0", v1::PHASE_DOWNLOADING);
    inventory_says(kOldArtifact);
  }
  void commit_report_lost_before_any_report() {
    sent();
    inventory_says(kArtifact);
  }
  void commit_report_lost_while_updating() {
    sent();
    report(r_, "dev-0", v1::PHASE_DOWNLOADING);
    inventory_says(kArtifact);
  }
  void reverted_after_committing() {
    sent();
    report(r_, "dev-0", v1::PHASE_COMMITTED);
    report(r_, "dev-0", v1::PHASE_ROLLED_BACK);
  }
  void aborted_in_flight_and_pending() {
    add_devices(2);
    r_ = started("r-walk", "waves: [{size: 1}, {size: 100%}]\n");
    ASSERT_EQ(installs(tick(r_)).size(), 1U);
    abort();
  }
  void aborted_while_updating() {
    sent();
    report(r_, "dev-0", v1::PHASE_DOWNLOADING);
    abort();
  }
  void aborted_while_waiting_to_retry() {
    sent();
    report(r_, "dev-0", v1::PHASE_FAILED);
    abort();
  }
  void rolled_back_in_flight_and_pending() {
    add_devices(2);
    r_ = started("r-walk", "waves: [{size: 1}, {size: 100%}]\n");
    const auto sent_to = installs(tick(r_));
    ASSERT_EQ(sent_to.size(), 1U);
    rollback();
    // It honours the cancel.
    const Member* m = r_.find_member(sent_to[0]);
    ASSERT_NE(m, nullptr);
    (void)engine_.on_progress(r_, progress_under(r_, sent_to[0], m->command_id, v1::PHASE_CANCELLED), now_);
  }
  void rolled_back_while_waiting_to_retry() {
    sent();
    report(r_, "dev-0", v1::PHASE_FAILED);
    rollback();
  }
  // dev-0 committed; the fleet rollback sends it a rollback, and it reports `phases`.
  void rollback_reports(std::initializer_list<v1::Phase> phases) {
    sent();
    report(r_, "dev-0", v1::PHASE_COMMITTED);
    rollback();
    for (v1::Phase phase : phases) report(r_, "dev-0", phase);
  }
  void rollback_restores() { rollback_reports({v1::PHASE_INSTALLING, v1::PHASE_ROLLED_BACK}); }
  void rollback_commits_the_previous_artifact() { rollback_reports({v1::PHASE_COMMITTED}); }
  void rollback_fails() { rollback_reports({v1::PHASE_FAILED}); }
  void rollback_cancelled() { rollback_reports({v1::PHASE_CANCELLED}); }
  void rollback_reported_by_inventory() {
    rollback_reports({});
    inventory_says(kArtifact);  // still on the new artifact: the rollback is sent again
    inventory_says(kOldArtifact);
  }
  void rollback_silent() {
    rollback_reports({});
    now_ += r_.spec.timeouts.rolling_back_ms;
    tick(r_);
  }
  void cancel_crosses_the_updates_end() {
    sent();
    report(r_, "dev-0", v1::PHASE_DOWNLOADING);
    rollback();
    update_reports(v1::PHASE_COMMITTED);
    update_reports(v1::PHASE_ROLLED_BACK);  // its health check fails after all
  }
  void cancel_refused_then_update_fails() {
    sent();
    report(r_, "dev-0", v1::PHASE_DOWNLOADING);
    rollback();
    v1::Progress refusal = progress_under(r_, "dev-0", r_.find_member("dev-0")->command_id, v1::PHASE_FAILED);
    refusal.set_error(v1::ERROR_BUSY);
    (void)engine_.on_progress(r_, refusal, now_);
    update_reports(v1::PHASE_FAILED);
  }
  void update_fails_after_cancel() {
    sent();
    report(r_, "dev-0", v1::PHASE_DOWNLOADING);
    rollback();
    update_reports(v1::PHASE_FAILED);
  }
  void update_reverts_after_cancel() {
    sent();
    report(r_, "dev-0", v1::PHASE_DOWNLOADING);
    rollback();
    update_reports(v1::PHASE_ROLLED_BACK);
  }
  void cancelled_device_back_by_inventory() {
    sent();
    report(r_, "dev-0", v1::PHASE_DOWNLOADING);
    rollback();
    inventory_says(kOldArtifact);
  }
  void too_late_to_cancel(v1::Phase outcome) {
    sent();
    report(r_, "dev-0", v1::PHASE_INSTALLING);
    rollback();
    update_reports(outcome);
  }
  void too_late_update_commits() {
    too_late_to_cancel(v1::PHASE_COMMITTED);
    inventory_says(kArtifact);
  }
  void too_late_update_cancelled() { too_late_to_cancel(v1::PHASE_CANCELLED); }
  void too_late_update_fails() { too_late_to_cancel(v1::PHASE_FAILED); }

  Rollout r_;
  std::vector<std::string> taken_;
};

TEST_P(MemberTableTest, TakesItsRowsInOrder) {
  const MemberWalk& walk = GetParam();
  (this->*walk.run)();
  EXPECT_EQ(taken_, walk.path);
  EXPECT_EQ(r_.unexpected_events, 0U);
  EXPECT_FALSE(audit_contains("bug"));
}

// Rows, as row_text() writes them.
const char kSend[] = "pending -Dispatch[its turn: install sent]-> dispatched";
const char kRetry[] = "retry_wait -Dispatch[backoff over: install sent again]-> dispatched";
const char kStarts[] = "dispatched -Working[report of the current attempt]-> updating";
const char kCommits[] = "updating -Committed[report of the current attempt]-> succeeded";
const char kCommitsAtOnce[] = "dispatched -Committed[report of the current attempt]-> succeeded";
const char kRollbackSent[] = "succeeded -Rollback[updated by this rollout: rollback sent]-> rolling_back";
const char kCancelSent[] = "updating -Rollback[in flight: cancel sent]-> rolling_back";
const char kTooLate[] = "updating -Rollback[installing or later: waits for its update]-> rolling_back";
const char kStillOnArtifact[] = "rolling_back -Inventory[runs the artifact: rollback sent]-> rolling_back";

const std::vector<MemberWalk> kMemberWalks = {
    {"AlreadyRunsTheArtifact",
     &MemberTableTest::already_runs_the_artifact,
     {"pending -Dispatch[device already runs the artifact]-> succeeded"}},
    {"UpdateCommits",
     &MemberTableTest::update_commits,
     {kSend, kStarts, "updating -Working[report of the current attempt]-> updating", kCommits}},
    {"CommitsAtOnce", &MemberTableTest::commits_at_once, {kSend, kCommitsAtOnce}},
    {"DispatchedFails",
     &MemberTableTest::dispatched_fails,
     {kSend, "dispatched -Failed[attempts left]-> retry_wait", kRetry,
      "dispatched -Failed[out of attempts]-> failed"}},
    {"DispatchedCancelled",
     &MemberTableTest::dispatched_cancelled,
     {kSend, "dispatched -Cancelled[attempts left]-> retry_wait", kRetry,
      "dispatched -Cancelled[out of attempts]-> failed"}},
    {"DispatchedRolledBack",
     &MemberTableTest::dispatched_rolled_back,
     {kSend, "dispatched -RolledBack[attempts left]-> retry_wait", kRetry,
      "dispatched -RolledBack[out of attempts]-> failed"}},
    {"UpdatingFails",
     &MemberTableTest::updating_fails,
     {kSend, kStarts, "updating -Failed[attempts left]-> retry_wait", kRetry, kStarts,
      "updating -Failed[out of attempts]-> failed"}},
    {"UpdatingCancelled",
     &MemberTableTest::updating_cancelled,
     {kSend, kStarts, "updating -Cancelled[attempts left]-> retry_wait", kRetry, kStarts,
      "updating -Cancelled[out of attempts]-> failed"}},
    {"UpdatingRolledBack",
     &MemberTableTest::updating_rolled_back,
     {kSend, kStarts, "updating -RolledBack[attempts left]-> retry_wait", kRetry, kStarts,
      "updating -RolledBack[out of attempts]-> failed"}},
    {"SilentAfterDispatch",
     &MemberTableTest::silent_after_dispatch,
     {kSend, "dispatched -Timeout[attempts left]-> retry_wait", kRetry,
      "dispatched -Timeout[out of attempts]-> failed"}},
    {"SilentWhileDownloading",
     &MemberTableTest::silent_while_downloading,
     {kSend, kStarts, "updating -Timeout[attempts left]-> retry_wait", kRetry, kStarts,
      "updating -Timeout[out of attempts]-> failed"}},
    {"CommandLost",
     &MemberTableTest::command_lost,
     {kSend, "dispatched -Inventory[command lost: install sent again]-> dispatched", kStarts,
      "updating -Inventory[command lost: install sent again]-> dispatched"}},
    {"CommitReportLostBeforeAnyReport",
     &MemberTableTest::commit_report_lost_before_any_report,
     {kSend, "dispatched -Inventory[runs the artifact: COMMITTED report lost]-> succeeded"}},
    {"CommitReportLostWhileUpdating",
     &MemberTableTest::commit_report_lost_while_updating,
     {kSend, kStarts, "updating -Inventory[runs the artifact: COMMITTED report lost]-> succeeded"}},
    {"RevertedAfterCommitting",
     &MemberTableTest::reverted_after_committing,
     {kSend, kCommitsAtOnce, "succeeded -RolledBack[device reverted after committing]-> failed"}},
    {"AbortedInFlightAndPending",
     &MemberTableTest::aborted_in_flight_and_pending,
     {kSend, "dispatched -Abort[in flight: cancel sent]-> cancelled",
      "pending -Abort[no update in flight]-> cancelled"}},
    {"AbortedWhileUpdating",
     &MemberTableTest::aborted_while_updating,
     {kSend, kStarts, "updating -Abort[in flight: cancel sent]-> cancelled"}},
    {"AbortedWhileWaitingToRetry",
     &MemberTableTest::aborted_while_waiting_to_retry,
     {kSend, "dispatched -Failed[attempts left]-> retry_wait",
      "retry_wait -Abort[no update in flight]-> cancelled"}},
    {"RolledBackInFlightAndPending",
     &MemberTableTest::rolled_back_in_flight_and_pending,
     {kSend, "dispatched -Rollback[in flight: cancel sent]-> rolling_back",
      "pending -Rollback[no update in flight]-> cancelled",
      "rolling_back -Cancelled[cancel sent, waits for its update]-> cancelled"}},
    {"RolledBackWhileWaitingToRetry",
     &MemberTableTest::rolled_back_while_waiting_to_retry,
     {kSend, "dispatched -Failed[attempts left]-> retry_wait",
      "retry_wait -Rollback[no update in flight]-> cancelled"}},
    {"RollbackRestores",
     &MemberTableTest::rollback_restores,
     {kSend, kCommitsAtOnce, kRollbackSent,
      "rolling_back -Working[report of the rollback command]-> rolling_back",
      "rolling_back -RolledBack[report of the rollback command]-> rolled_back"}},
    {"RollbackCommitsThePreviousArtifact",
     &MemberTableTest::rollback_commits_the_previous_artifact,
     {kSend, kCommitsAtOnce, kRollbackSent,
      "rolling_back -Committed[report of the rollback command]-> rolled_back"}},
    {"RollbackFails",
     &MemberTableTest::rollback_fails,
     {kSend, kCommitsAtOnce, kRollbackSent,
      "rolling_back -Failed[report of the rollback command]-> rollback_failed"}},
    {"RollbackCancelled",
     &MemberTableTest::rollback_cancelled,
     {kSend, kCommitsAtOnce, kRollbackSent,
      "rolling_back -Cancelled[report of the rollback command]-> rollback_failed"}},
    {"RollbackReportedByInventory",
     &MemberTableTest::rollback_reported_by_inventory,
     {kSend, kCommitsAtOnce, kRollbackSent, kStillOnArtifact,
      "rolling_back -Inventory[back on the previous artifact]-> rolled_back"}},
    {"RollbackSilent",
     &MemberTableTest::rollback_silent,
     {kSend, kCommitsAtOnce, kRollbackSent,
      "rolling_back -Timeout[rolling-back timeout passed]-> rollback_failed"}},
    {"CancelCrossesTheUpdatesEnd",
     &MemberTableTest::cancel_crosses_the_updates_end,
     {kSend, kStarts, kCancelSent,
      "rolling_back -Committed[cancel sent, waits for its update]-> rolling_back",
      "rolling_back -RolledBack[waits for its update]-> rolled_back"}},
    {"CancelRefusedThenUpdateFails",
     &MemberTableTest::cancel_refused_then_update_fails,
     {kSend, kStarts, kCancelSent, "rolling_back -Failed[cancel refused as too late]-> rolling_back",
      "rolling_back -Failed[waits for its update]-> rolled_back"}},
    {"UpdateFailsAfterCancel",
     &MemberTableTest::update_fails_after_cancel,
     {kSend, kStarts, kCancelSent, "rolling_back -Failed[cancel sent, waits for its update]-> cancelled"}},
    {"UpdateRevertsAfterCancel",
     &MemberTableTest::update_reverts_after_cancel,
     {kSend, kStarts, kCancelSent,
      "rolling_back -RolledBack[cancel sent, waits for its update]-> rolled_back"}},
    {"CancelledDeviceBackByInventory",
     &MemberTableTest::cancelled_device_back_by_inventory,
     {kSend, kStarts, kCancelSent,
      "rolling_back -Inventory[back on the previous artifact, cancel sent]-> cancelled"}},
    {"TooLateUpdateCommits",
     &MemberTableTest::too_late_update_commits,
     {kSend, kStarts, kTooLate, "rolling_back -Committed[waits for its update]-> rolling_back",
      kStillOnArtifact}},
    {"TooLateUpdateCancelled",
     &MemberTableTest::too_late_update_cancelled,
     {kSend, kStarts, kTooLate, "rolling_back -Cancelled[waits for its update]-> rolled_back"}},
    {"TooLateUpdateFails",
     &MemberTableTest::too_late_update_fails,
     {kSend, kStarts, kTooLate, "rolling_back -Failed[waits for its update]-> rolled_back"}},
};

INSTANTIATE_TEST_SUITE_P(Walks, MemberTableTest, ::testing::ValuesIn(kMemberWalks),
                         [](const ::testing::TestParamInfo<MemberWalk>& walk) {
                           return std::string(walk.param.name);
                         });

// docs/ORCHESTRATOR.md shows the table to readers; it must be the one the engine runs.
TEST(MemberTableRowsTest, TheDocumentedTableIsTheEnginesTable) {
  std::ifstream in(FOTA_ORCHESTRATOR_DOC);
  ASSERT_TRUE(in) << "cannot read " << FOTA_ORCHESTRATOR_DOC;
  std::vector<std::string> documented;
  bool in_section = false;
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("## ", 0) == 0) in_section = line.find("The member machine") != std::string::npos;
    if (!in_section || line.rfind("| ", 0) != 0 || line.rfind("| from ", 0) == 0) continue;
    documented.push_back(line);
  }
  std::vector<std::string> engine;
  for (const MemberTransition& row : member_transitions()) {
    std::ostringstream text;
    text << "| " << member_state_name(row.from) << " | " << row.event << " | " << row.guard << " | "
         << member_state_name(row.to) << " |";
    engine.push_back(text.str());
  }
  EXPECT_EQ(documented, engine) << "docs/ORCHESTRATOR.md, \"The member machine\", differs from "
                                   "kMemberTransitions: copy the rows from the engine";
}

// Top to bottom: every row is walked, and appears once.
TEST(MemberTableRowsTest, EveryRowIsWalkedAndUnique) {
  std::set<std::string> walked;
  for (const auto& walk : kMemberWalks) walked.insert(walk.path.begin(), walk.path.end());
  std::set<std::string> rows;
  for (const MemberTransition& row : member_transitions()) {
    EXPECT_TRUE(rows.insert(row_text(row)).second) << "twice: " << row_text(row);
    EXPECT_EQ(walked.count(row_text(row)), 1U) << "no walk takes " << row_text(row);
  }
  for (const auto& text : walked) EXPECT_EQ(rows.count(text), 1U) << "not a row: " << text;
}

// A settled member moves only when its success is undone: a revert, or the fleet rollback.
TEST(MemberTableRowsTest, SettledMembersMoveOnlyWhenTheirSuccessIsUndone) {
  for (const MemberTransition& row : member_transitions()) {
    if (!is_terminal(row.from)) continue;
    EXPECT_EQ(row.from, MemberState::kSucceeded) << row_text(row);
  }
}

// A move without a row is a bug: reported (counted and audited), and the state is kept. Here a
// member rolling back in a paused rollout, as a store written by a buggy version could hold it,
// meets an abort, which has no row out of rolling_back.
TEST_F(RolloutEngineTest, AMoveWithoutARowIsReportedAndTheStateKept) {
  add_devices(1);
  Rollout r = started("r-bug", "");
  tick(r);
  report(r, "dev-0", v1::PHASE_INSTALLING);
  ASSERT_TRUE(engine_.pause(r, "operator", now_).ok());
  r.find_member("dev-0")->state = MemberState::kRollingBack;
  auto d = engine_.abort(r, fleet_, "operator", now_);
  ASSERT_TRUE(d.ok()) << d.error().message;
  EXPECT_EQ(r.unexpected_events, 1U);
  EXPECT_EQ(r.find_member("dev-0")->state, MemberState::kRollingBack);
  ASSERT_EQ(d->size(), 1U);
  EXPECT_EQ(d->at(0).kind, Decision::Kind::kAudit);
  EXPECT_EQ(d->at(0).message,
            "rollout engine bug: device dev-0 has no transition from rolling_back on Abort when no update in "
            "flight; its state was kept");
}

}  // namespace
}  // namespace fota::orchestrator

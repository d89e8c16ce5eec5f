// SPDX-License-Identifier: Apache-2.0
// Transition tests of the update engine over virtual time, and one test per refusal.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "fota/client/engine.hpp"
#include "fota/client/runtime.hpp"
#include "fota/testing/broker.hpp"
#include "fota/testing/clock.hpp"
#include "sim_device.hpp"

namespace fota::client {
namespace {

using testing::ArtifactOptions;
using testing::ChunkServer;
using testing::make_artifact;
using testing::SimDevice;
using testing::TestArtifact;

std::vector<std::string> names(const Actions& actions, bool skip_logs = true) {
  std::vector<std::string> out;
  for (const auto& a : actions) {
    if (skip_logs && std::holds_alternative<action::Log>(a)) continue;
    out.emplace_back(action_name(a));
  }
  return out;
}

template <typename T>
std::vector<const T*> all_of(const Actions& actions) {
  std::vector<const T*> out;
  for (const auto& a : actions) {
    if (const auto* t = std::get_if<T>(&a)) out.push_back(t);
  }
  return out;
}

class EngineTest : public ::testing::Test {
 protected:
  EngineTest()
      : key_(std::move(common::Ed25519PrivateKey::generate()).value()),
        crypto_(trust_with(key_), testing::command_keys()),
        artifact_(make_artifact(key_)),
        server_(&artifact_) {}

  static common::TrustStore trust_with(const common::Ed25519PrivateKey& key) {
    common::TrustStore trust;
    trust.add(key.public_key());
    return trust;
  }

  SimDevice& device() {
    if (!device_) {
      device_ = std::make_unique<SimDevice>(dir_.path() / "dev", crypto_, factory_image_, config_);
    }
    return *device_;
  }

  // Boots the device and hands it a command; returns the last Progress.
  v1::Progress send(const v1::Command& command) {
    while (!device().running()) device().power_on(clock_.now_ms());
    device().run(device().engine().on_command(testing::signed_command(command), clock_.now_ms()),
                 clock_.now_ms());
    return device().transport().progress.back();
  }

  // Runs the update to its end, rebooting when asked.
  void run_to_completion() {
    for (int round = 0; round < 20; ++round) {
      if (!device().running() && !device().power_on(clock_.now_ms())) continue;
      if (!testing::serve_chunks(device(), server_, clock_.now_ms())) continue;
      if (device().engine().state() == EngineState::kIdle) return;
      clock_.advance(std::chrono::milliseconds(500));
      device().run(device().engine().on_tick(clock_.now_ms()), clock_.now_ms());
    }
    FAIL() << "update did not finish";
  }

  fota::testing::TempDir dir_;
  fota::testing::ManualClock clock_;
  common::Ed25519PrivateKey key_;
  OpenSslEngineCrypto crypto_;
  TestArtifact artifact_;
  ChunkServer server_;
  EngineConfig config_ = SimDevice::default_config();
  std::string factory_image_ = testing::make_image(9000, 1);
  std::unique_ptr<SimDevice> device_;
};

// ---- Boot transitions: journal state x boot status -> engine state and actions -----------
struct BootRow {
  const char* name;
  bool have_journal;
  journal::EngineState journal_state;
  BootStatus boot;
  EngineState expected_state;
  std::vector<std::string> expected_actions;
};

class BootTransitionTest : public EngineTest, public ::testing::WithParamInterface<BootRow> {};

TEST_P(BootTransitionTest, FollowsTheTable) {
  const BootRow& row = GetParam();
  journal::JournalRecord record;
  for (const char* name : {"a", "b"}) {
    auto* s = record.add_slots();
    s->set_name(name);
    s->set_valid(true);
    s->set_version(std::string(name) == "a" ? "1.0.0" : "2.0.0");
  }
  record.set_active_slot("a");
  record.set_state(row.journal_state);
  if (row.journal_state != journal::ENGINE_STATE_IDLE) {
    auto* u = record.mutable_update();
    u->set_command_id("c1");
    u->set_artifact_id(artifact_.manifest.artifact_id());
    u->set_image_size(artifact_.manifest.image_size());
    u->set_chunk_size(artifact_.manifest.chunk_size());
    u->set_chunk_count(static_cast<std::uint32_t>(artifact_.manifest.chunk_sha256_size()));
    u->set_verified_bitmap(std::string((u->chunk_count() + 7) / 8, '\0'));
    u->set_target_slot("b");
    u->set_previous_slot("a");
  }
  UpdateEngine engine(config_, crypto_, row.have_journal ? &record : nullptr,
                      artifact_.signed_manifest.SerializeAsString());
  const Actions actions = engine.on_started(row.boot, clock_.now_ms());
  EXPECT_EQ(engine.state(), row.expected_state) << engine_state_name(engine.state());
  EXPECT_EQ(names(actions), row.expected_actions);
  EXPECT_EQ(engine.stats().unexpected_events, 0U);
}

const std::vector<std::string> kActivate = {"PersistJournal", "PublishProgress", "ActivateSlot",
                                            "PersistJournal", "PublishProgress", "Reboot"};
const std::vector<std::string> kConfirm = {"PersistJournal", "PublishProgress", "RunHealthCheck"};
const std::vector<std::string> kFinish = {"PublishProgress", "PersistJournal", "PublishInventory"};

std::vector<std::string> concat(std::vector<std::string> a, const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

INSTANTIATE_TEST_SUITE_P(
    Table, BootTransitionTest,
    ::testing::Values(
        BootRow{"FirstStartRecordsFactoryState",
                false,
                journal::ENGINE_STATE_IDLE,
                {"a", false},
                EngineState::kIdle,
                {"PersistJournal"}},
        BootRow{"IdleStaysIdle", true, journal::ENGINE_STATE_IDLE, {"a", false}, EngineState::kIdle, {}},
        BootRow{"IdleOnUnexpectedTrialReverts",
                true,
                journal::ENGINE_STATE_IDLE,
                {"b", true},
                EngineState::kIdle,
                {"RevertSlot", "Reboot"}},
        BootRow{"DownloadingResumes",
                true,
                journal::ENGINE_STATE_DOWNLOADING,
                {"a", false},
                EngineState::kDownloading,
                // The reuse phase is not done in this journal: it goes on from its cursor.
                {"PrepareSlot", "PublishProgress", "ReadActiveChunk"}},
        BootRow{"VerifyingHashesAgain",
                true,
                journal::ENGINE_STATE_VERIFYING,
                {"a", false},
                EngineState::kVerifying,
                {"HashSlot"}},
        BootRow{"InstallingBeforeSwitchSwitchesAgain",
                true,
                journal::ENGINE_STATE_INSTALLING,
                {"a", false},
                EngineState::kRebooting,
                kActivate},
        BootRow{"InstallingAfterSwitchConfirms",
                true,
                journal::ENGINE_STATE_INSTALLING,
                {"b", true},
                EngineState::kConfirming,
                kConfirm},
        BootRow{"RebootingIntoTrialConfirms",
                true,
                journal::ENGINE_STATE_REBOOTING,
                {"b", true},
                EngineState::kConfirming,
                kConfirm},
        BootRow{"RebootingBackToOldSlotIsBootFailure",
                true,
                journal::ENGINE_STATE_REBOOTING,
                {"a", false},
                EngineState::kIdle,
                concat({"RevertSlot"}, kFinish)},
        BootRow{"ConfirmingAgainAfterCrash",
                true,
                journal::ENGINE_STATE_CONFIRMING,
                {"b", true},
                EngineState::kConfirming,
                kConfirm},
        BootRow{"ConfirmingAlreadyCommittedFinishes",
                true,
                journal::ENGINE_STATE_CONFIRMING,
                {"b", false},
                EngineState::kIdle,
                kFinish},
        BootRow{"RollingBackDone",
                true,
                journal::ENGINE_STATE_ROLLING_BACK,
                {"a", false},
                EngineState::kIdle,
                kFinish},
        BootRow{"RollingBackNotYetRevertsAgain",
                true,
                journal::ENGINE_STATE_ROLLING_BACK,
                {"b", true},
                EngineState::kRollingBack,
                {"RevertSlot", "Reboot"}}),
    [](const ::testing::TestParamInfo<BootRow>& row_info) { return std::string(row_info.param.name); });

// ---- Events without a transition are reported loudly ---------------------------------------
TEST_F(EngineTest, EventWithoutTransitionIsReportedLoudly) {
  UpdateEngine engine(config_, crypto_);
  (void)engine.on_started({"a", false}, clock_.now_ms());
  const Actions actions = engine.on_health_result(true, "", clock_.now_ms());
  EXPECT_EQ(engine.stats().unexpected_events, 1U);
  ASSERT_EQ(actions.size(), 1U);
  const auto* log = std::get_if<action::Log>(&actions[0]);
  ASSERT_NE(log, nullptr);
  EXPECT_EQ(log->level, v1::LOG_LEVEL_ERROR);
  EXPECT_NE(log->message.find("no transition for event HealthResult in state Idle"), std::string::npos);
  // Before on_started nothing but Started is accepted.
  UpdateEngine fresh(config_, crypto_);
  (void)fresh.on_connected(clock_.now_ms());
  EXPECT_EQ(fresh.stats().unexpected_events, 1U);
}

// ---- A complete update ------------------------------------------------------------------
TEST_F(EngineTest, CompleteUpdateCommitsAndRaisesSecurityCounter) {
  const v1::Progress first = send(testing::install_command("c1", artifact_, clock_.now_ms()));
  EXPECT_EQ(first.phase(), v1::PHASE_DOWNLOADING);
  run_to_completion();
  const auto& progress = device().transport().progress;
  EXPECT_EQ(progress.back().phase(), v1::PHASE_COMMITTED) << progress.back().error_detail();
  EXPECT_EQ(device().booted_slot(), "b");
  EXPECT_TRUE(device().slot_content("b") == artifact_.image);
  EXPECT_EQ(device().boot_env()["FOTA_ORDER"], "b a");
  EXPECT_EQ(device().boot_env()["FOTA_TRIAL"], "");
  EXPECT_EQ(device().engine().record().accepted_security_counter(), 2U);
  const v1::Inventory& inv = device().transport().inventory.back();
  EXPECT_EQ(inv.version(), "2.0.0");
  EXPECT_EQ(inv.active_slot(), "b");
  // Phases in order, sequence numbers increasing.
  std::vector<v1::Phase> phases;
  for (const auto& p : progress) {
    if (phases.empty() || phases.back() != p.phase()) phases.push_back(p.phase());
  }
  EXPECT_EQ(phases, (std::vector<v1::Phase>{v1::PHASE_DOWNLOADING, v1::PHASE_VERIFYING, v1::PHASE_INSTALLING,
                                            v1::PHASE_REBOOTING, v1::PHASE_CONFIRMING, v1::PHASE_COMMITTED}));
  for (std::size_t i = 1; i < progress.size(); ++i)
    EXPECT_GT(progress[i].sequence(), progress[i - 1].sequence());
  for (const auto& [index, count] : server_.requested) EXPECT_EQ(count, 1) << "chunk " << index;
}

TEST_F(EngineTest, WindowLimitsOutstandingRequestsAndTimeoutsReRequest) {
  config_.initial_window = 3;
  config_.adaptive_window = true;
  send(testing::install_command("c1", artifact_, clock_.now_ms()));
  auto& requests = device().transport().chunk_requests;
  ASSERT_EQ(requests.size(), 1U);
  ASSERT_EQ(requests.front().ranges_size(), 1);
  EXPECT_EQ(requests.front().ranges(0).first(), 0U);
  EXPECT_EQ(requests.front().ranges(0).count(), 3U);
  requests.clear();
  // Nothing answers: before the timeout, no re-request; after it, the same chunks again.
  clock_.advance(std::chrono::milliseconds(999));
  device().run(device().engine().on_tick(clock_.now_ms()), clock_.now_ms());
  EXPECT_TRUE(requests.empty());
  EXPECT_EQ(device().engine().next_deadline_ms(), clock_.now_ms() + 1);
  clock_.advance(std::chrono::milliseconds(1));
  device().run(device().engine().on_tick(clock_.now_ms()), clock_.now_ms());
  ASSERT_EQ(requests.size(), 1U);
  // The window halved (3 -> 1.5): one chunk at a time until answers come back.
  EXPECT_EQ(requests.front().ranges(0).first(), 0U);
  EXPECT_EQ(requests.front().ranges(0).count(), 1U);
  EXPECT_EQ(device().engine().stats().chunk_retries, 3U);
  run_to_completion();
  EXPECT_EQ(device().transport().progress.back().phase(), v1::PHASE_COMMITTED);
}

TEST_F(EngineTest, OutOfOrderChunksAreWrittenByOffset) {
  config_.initial_window = 11;
  send(testing::install_command("c1", artifact_, clock_.now_ms()));
  auto& requests = device().transport().chunk_requests;
  ASSERT_EQ(requests.size(), 1U);
  auto chunks = server_.answer(requests.front());
  requests.clear();
  std::reverse(chunks.begin(), chunks.end());
  for (auto& c : chunks)
    device().run(device().engine().on_chunk(std::move(c), clock_.now_ms()), clock_.now_ms());
  run_to_completion();
  EXPECT_EQ(device().transport().progress.back().phase(), v1::PHASE_COMMITTED);
  EXPECT_TRUE(device().slot_content("b") == artifact_.image);
}

TEST_F(EngineTest, LinkLossResumesWithoutRefetchingVerifiedChunks) {
  config_.initial_window = 2;
  config_.adaptive_window = false;
  send(testing::install_command("c1", artifact_, clock_.now_ms()));
  auto& requests = device().transport().chunk_requests;
  // Answer the first request only, then the link drops.
  auto chunks = server_.answer(requests.front());
  requests.clear();
  for (auto& c : chunks)
    device().run(device().engine().on_chunk(std::move(c), clock_.now_ms()), clock_.now_ms());
  device().run(device().engine().on_disconnected(clock_.now_ms()), clock_.now_ms());
  requests.clear();                          // lost with the link
  clock_.advance(std::chrono::minutes(30));  // long outage: no stall failure while disconnected
  device().run(device().engine().on_tick(clock_.now_ms()), clock_.now_ms());
  EXPECT_EQ(device().engine().state(), EngineState::kDownloading);
  device().run(device().engine().on_connected(clock_.now_ms()), clock_.now_ms());
  EXPECT_EQ(device().transport().progress.back().link().reconnects(), 1U);
  run_to_completion();
  EXPECT_EQ(device().transport().progress.back().phase(), v1::PHASE_COMMITTED);
  for (const auto& [index, count] : server_.requested) EXPECT_EQ(count, 1) << "chunk " << index;
}

TEST_F(EngineTest, StalledDownloadFailsWithTimeout) {
  config_.download_stall_timeout_ms = 10'000;
  send(testing::install_command("c1", artifact_, clock_.now_ms()));
  for (int i = 0; i < 20 && device().engine().state() == EngineState::kDownloading; ++i) {
    clock_.set(device().engine().next_deadline_ms());
    device().run(device().engine().on_tick(clock_.now_ms()), clock_.now_ms());
  }
  EXPECT_EQ(device().engine().state(), EngineState::kIdle);
  EXPECT_EQ(device().transport().progress.back().phase(), v1::PHASE_FAILED);
  EXPECT_EQ(device().transport().progress.back().error(), v1::ERROR_DOWNLOAD_TIMEOUT);
}

TEST_F(EngineTest, RateLimitPacesRequests) {
  auto command = testing::install_command("c1", artifact_, clock_.now_ms());
  command.mutable_install()->set_max_bytes_per_second(1024);  // one chunk per second
  send(command);
  auto& requests = device().transport().chunk_requests;
  EXPECT_TRUE(requests.empty());
  EXPECT_LE(device().engine().next_deadline_ms(), clock_.now_ms() + 1001);
  clock_.advance(std::chrono::milliseconds(1001));
  device().run(device().engine().on_tick(clock_.now_ms()), clock_.now_ms());
  ASSERT_EQ(requests.size(), 1U);
  EXPECT_EQ(requests.front().ranges(0).count(), 1U);
}

// Issue 20: what a device measures of itself (docs/CLIENT.md, "What a device measures") goes into
// its inventory and its journal, so it survives reboots and reaches a fresh orchestrator.
TEST_F(EngineTest, MeasuresItsDownloadRebootAndHealthCheckAndKeepsThemAcrossReboots) {
  testing::ArtifactOptions options;
  options.size = 48 * 1024;
  options.chunk_size = 4096;
  artifact_ = testing::make_artifact(key_, options);
  EXPECT_EQ(send(testing::install_command("c1", artifact_, clock_.now_ms())).error(), v1::ERROR_NONE);
  EXPECT_FALSE(device().transport().inventory.back().has_measurements());  // nothing measured yet
  // The chunks take 2 s to arrive; the reboot into the new image takes 3 s to reconnect.
  clock_.advance(std::chrono::milliseconds(2000));
  ASSERT_FALSE(testing::serve_chunks(device(), server_, clock_.now_ms()));  // rebooting
  clock_.advance(std::chrono::milliseconds(3000));
  device().power_on(clock_.now_ms());
  ASSERT_EQ(device().engine().state(), EngineState::kIdle);
  ASSERT_EQ(device().transport().progress.back().phase(), v1::PHASE_COMMITTED);
  const v1::DeviceMeasurements& m = device().transport().inventory.back().measurements();
  EXPECT_EQ(m.download_bytes_per_second(), 48u * 1024 * 1000 / 2000);
  EXPECT_EQ(m.download_samples(), 1u);
  EXPECT_EQ(m.reboot_ms(), 3000);
  EXPECT_EQ(m.reboot_samples(), 1u);
  EXPECT_EQ(m.health_check_ms(), 0);  // answered in the same instant here
  EXPECT_EQ(m.health_check_samples(), 1u);
  EXPECT_EQ(m.verify_samples(), 0u);  // the slot read back in no time: no rate to tell
  EXPECT_EQ(m.measured_at_ms(), clock_.now_ms());
  EXPECT_EQ(device().engine().record().reboot_requested_ms(), 0);
  // A reboot without an update is not a sample, and the figures survive it (journal).
  device().power_off();
  clock_.advance(std::chrono::milliseconds(60'000));
  device().power_on(clock_.now_ms());
  const v1::DeviceMeasurements& after = device().transport().inventory.back().measurements();
  EXPECT_EQ(after.SerializeAsString(), m.SerializeAsString());
  // A download the rollout's cap held back measured the cap, not the link: no sample.
  testing::ArtifactOptions next = options;
  next.version = "3.0.0";
  next.security_counter = 3;
  next.seed = 8;
  artifact_ = testing::make_artifact(key_, next);
  v1::Command capped = testing::install_command("c2", artifact_, clock_.now_ms());
  capped.mutable_install()->set_max_bytes_per_second(64 * 1024);
  send(capped);
  for (int i = 0; i < 200 && device().running() && device().engine().state() == EngineState::kDownloading;
       ++i) {
    clock_.advance(std::chrono::milliseconds(50));
    device().run(device().engine().on_tick(clock_.now_ms()), clock_.now_ms());
    testing::serve_chunks(device(), server_, clock_.now_ms());
  }
  clock_.advance(std::chrono::milliseconds(1000));
  device().power_on(clock_.now_ms());
  ASSERT_EQ(device().transport().progress.back().phase(), v1::PHASE_COMMITTED)
      << device().transport().progress.back().error_detail();
  const v1::DeviceMeasurements& second = device().transport().inventory.back().measurements();
  EXPECT_EQ(second.download_samples(), 1u);
  EXPECT_EQ(second.download_bytes_per_second(), m.download_bytes_per_second());
  EXPECT_EQ(second.reboot_samples(), 2u);
  EXPECT_EQ(second.reboot_ms(), (3 * 3000 + 1000) / 4);  // a new sample weighs a quarter
}

TEST_F(EngineTest, FailedHealthCheckRevertsToPreviousSlot) {
  send(testing::install_command("c1", artifact_, clock_.now_ms()));
  device().healthy = false;
  run_to_completion();
  const auto& last = device().transport().progress.back();
  EXPECT_EQ(last.phase(), v1::PHASE_ROLLED_BACK);
  EXPECT_EQ(last.error(), v1::ERROR_HEALTH_CHECK_FAILED);
  EXPECT_EQ(device().booted_slot(), "a");
  EXPECT_TRUE(device().slot_content("a") == factory_image_);
  EXPECT_EQ(device().boot_env()["FOTA_ORDER"], "a b");
  EXPECT_EQ(device().engine().record().accepted_security_counter(), 1U);
}

TEST_F(EngineTest, AHangingHealthCheckCountsAsUnhealthyAtItsDeadline) {
  config_.health_check_timeout_ms = 300;  // the check never answers; the engine's deadline decides
  send(testing::install_command("c1", artifact_, clock_.now_ms()));
  device().health_check_hangs = true;
  run_to_completion();
  const auto& last = device().transport().progress.back();
  EXPECT_EQ(last.phase(), v1::PHASE_ROLLED_BACK);
  EXPECT_EQ(last.error(), v1::ERROR_HEALTH_CHECK_FAILED);
  EXPECT_NE(last.error_detail().find("no answer within"), std::string::npos) << last.error_detail();
  EXPECT_EQ(device().booted_slot(), "a");
}

TEST_F(EngineTest, HealthCheckWithoutAnswerTimesOut) {
  UpdateEngine engine(config_, crypto_);
  (void)engine.on_started({"a", false}, clock_.now_ms());
  journal::JournalRecord record = engine.record();
  record.set_state(journal::ENGINE_STATE_REBOOTING);
  auto* u = record.mutable_update();
  u->set_target_slot("b");
  u->set_previous_slot("a");
  UpdateEngine rebooted(config_, crypto_, &record);
  const Actions confirm = rebooted.on_started({"b", true}, clock_.now_ms());
  ASSERT_EQ(all_of<action::RunHealthCheck>(confirm).size(), 1U);
  EXPECT_EQ(rebooted.next_deadline_ms(), clock_.now_ms() + config_.health_check_timeout_ms);
  clock_.advance(std::chrono::milliseconds(config_.health_check_timeout_ms));
  const Actions revert = rebooted.on_tick(clock_.now_ms());
  EXPECT_EQ(rebooted.state(), EngineState::kRollingBack);
  EXPECT_EQ(names(revert),
            (std::vector<std::string>{"PersistJournal", "PublishProgress", "RevertSlot", "Reboot"}));
}

TEST_F(EngineTest, BootLimitExhaustedReportsBootFailure) {
  send(testing::install_command("c1", artifact_, clock_.now_ms()));
  EXPECT_FALSE(testing::serve_chunks(device(), server_, clock_.now_ms()));
  ASSERT_FALSE(device().running()) << "the device should have rebooted into the new slot";
  // The new image never gets far enough to answer: every boot dies during the health check.
  for (int boot = 0; boot < 3; ++boot) {
    device().side_effects_executed = 0;
    device().cut_after_side_effects = 1;  // dies right after storing CONFIRMING
    device().power_on(clock_.now_ms());
    EXPECT_EQ(device().booted_slot(), "b");
    EXPECT_FALSE(device().running());
  }
  device().power_on(clock_.now_ms());
  EXPECT_EQ(device().booted_slot(), "a");
  EXPECT_EQ(device().transport().progress.back().phase(), v1::PHASE_ROLLED_BACK);
  EXPECT_EQ(device().transport().progress.back().error(), v1::ERROR_BOOT_FAILED);
}

TEST_F(EngineTest, RollbackCommandReturnsToPreviousSlot) {
  send(testing::install_command("c1", artifact_, clock_.now_ms()));
  run_to_completion();
  ASSERT_EQ(device().booted_slot(), "b");
  // The factory image has counter 1, the device accepted 2: going back would be a downgrade.
  v1::Progress refused = send(testing::rollback_command("r1", clock_.now_ms()));
  EXPECT_EQ(refused.error(), v1::ERROR_DOWNGRADE);
  // Install a second release with the same counter, then roll back to the first.
  ArtifactOptions o;
  o.version = "2.1.0";
  o.seed = 9;
  const TestArtifact second = make_artifact(key_, o);
  server_.artifact = &second;
  send(testing::install_command("c2", second, clock_.now_ms()));
  run_to_completion();
  ASSERT_EQ(device().transport().progress.back().phase(), v1::PHASE_COMMITTED);
  ASSERT_EQ(device().booted_slot(), "a");
  send(testing::rollback_command("r2", clock_.now_ms()));
  run_to_completion();
  EXPECT_EQ(device().transport().progress.back().phase(), v1::PHASE_ROLLED_BACK);
  EXPECT_EQ(device().booted_slot(), "b");
  EXPECT_EQ(device().transport().inventory.back().version(), "2.0.0");
}

TEST_F(EngineTest, RollbackCommandInstallsCarriedArtifactWhenPreviousSlotIsGone) {
  // Fresh device: slot b is empty, so the rollback installs the artifact it carries.
  v1::Progress p = send(testing::rollback_command("r1", clock_.now_ms(), &artifact_));
  EXPECT_EQ(p.phase(), v1::PHASE_DOWNLOADING);
  run_to_completion();
  EXPECT_EQ(device().transport().progress.back().phase(), v1::PHASE_ROLLED_BACK);
  EXPECT_TRUE(device().slot_content("b") == artifact_.image);
  v1::Progress nothing = send(testing::rollback_command("r2", clock_.now_ms()));
  // Slot a still holds the factory image (counter 1 < accepted 2): going back is a downgrade.
  EXPECT_EQ(nothing.error(), v1::ERROR_DOWNGRADE);
}

TEST_F(EngineTest, CancelDuringDownload) {
  send(testing::install_command("c1", artifact_, clock_.now_ms()));
  v1::Command cancel;
  cancel.set_command_id("x1");
  cancel.set_device_id(testing::kDeviceId);
  cancel.set_expires_at_ms(clock_.now_ms() + 1000);
  cancel.mutable_cancel();
  const v1::Progress p = send(cancel);
  EXPECT_EQ(p.phase(), v1::PHASE_CANCELLED);
  EXPECT_EQ(device().engine().state(), EngineState::kIdle);
}

TEST_F(EngineTest, RedeliveryOfTheCurrentCommandIsNotAFailure) {
  send(testing::install_command("c1", artifact_, clock_.now_ms()));
  const v1::Progress again = send(testing::install_command("c1", artifact_, clock_.now_ms()));
  EXPECT_EQ(again.phase(), v1::PHASE_DOWNLOADING);
  EXPECT_EQ(again.error(), v1::ERROR_NONE);
  EXPECT_EQ(again.command_id(), "c1");
  EXPECT_EQ(device().engine().state(), EngineState::kDownloading);
}

TEST_F(EngineTest, InstallWhileBusyIsRefusedButResendIsAnswered) {
  send(testing::install_command("c1", artifact_, clock_.now_ms()));
  EXPECT_EQ(send(testing::install_command("c2", artifact_, clock_.now_ms())).phase(), v1::PHASE_DOWNLOADING);
  ArtifactOptions o;
  o.seed = 3;
  o.version = "3.0.0";
  const v1::Progress busy = send(testing::install_command("c3", make_artifact(key_, o), clock_.now_ms()));
  EXPECT_EQ(busy.error(), v1::ERROR_BUSY);
  EXPECT_EQ(busy.command_id(), "c3");
  EXPECT_EQ(device().engine().state(), EngineState::kDownloading);
}

// ---- Refusals before download: one test each -------------------------------------------
class RefusalTest : public EngineTest {
 protected:
  void expect_refused(const v1::Command& command, v1::ErrorCode code) {
    const v1::Progress p = send(command);
    EXPECT_EQ(p.phase(), v1::PHASE_FAILED);
    EXPECT_EQ(p.error(), code) << v1::ErrorCode_Name(p.error()) << ": " << p.error_detail();
    EXPECT_FALSE(p.error_detail().empty());
    EXPECT_EQ(p.command_id(), command.command_id());
    EXPECT_EQ(device().engine().state(), EngineState::kIdle);
    EXPECT_TRUE(device().transport().chunk_requests.empty()) << "refused update must not download";
    EXPECT_TRUE(device().slot_content("a") == factory_image_);
  }
};

TEST_F(RefusalTest, ExpiredCommand) {
  // Expired longer ago than any clock skew explains.
  const std::int64_t allowance = EngineConfig{}.clock_skew_allowance_ms;
  auto command = testing::install_command("c1", artifact_, clock_.now_ms() - allowance - 120'000);
  expect_refused(command, v1::ERROR_COMMAND_EXPIRED);
}

TEST_F(EngineTest, AClockRunningFastStillTakesAFreshCommand) {
  // Found by fota-sim's device-faults scenario: devices whose clocks ran 10 to 25 minutes fast
  // refused every 10-minute command as expired, and never updated.
  const std::int64_t orchestrator_now = clock_.now_ms() - 25 * 60 * 1000;
  const v1::Progress first =
      send(testing::install_command("c1", artifact_, orchestrator_now, 10 * 60 * 1000));
  EXPECT_EQ(first.phase(), v1::PHASE_DOWNLOADING) << first.error_detail();
  run_to_completion();
  EXPECT_EQ(device().transport().progress.back().phase(), v1::PHASE_COMMITTED);
}

TEST_F(EngineTest, ExpiryNearTheLargestTimestampDoesNotOverflow) {
  // expires_at_ms comes from the network: adding the skew allowance to it overflowed (undefined
  // behaviour; the command was judged expired). Found by the client footprint benchmark.
  constexpr std::int64_t kMax = std::numeric_limits<std::int64_t>::max();
  const std::int64_t allowance = config_.clock_skew_allowance_ms;
  struct Row {
    std::int64_t now;
    std::int64_t expires_at;
    bool expired;
  };
  const Row rows[] = {
      {clock_.now_ms(), kMax, false},
      {clock_.now_ms(), kMax - 1, false},
      {clock_.now_ms(), kMax - allowance + 1, false},
      // A clock at the end of time (refused before any deadline is computed from it).
      {kMax, kMax - allowance - 1, true},
      {kMax, 1, true},
  };
  for (const Row& row : rows) {
    SCOPED_TRACE("now " + std::to_string(row.now) + ", expires_at_ms " + std::to_string(row.expires_at));
    UpdateEngine engine(config_, crypto_);
    (void)engine.on_started({"a", false}, row.now);
    auto command = testing::install_command("c1", artifact_, 1);
    command.set_expires_at_ms(row.expires_at);
    const Actions actions = engine.on_command(testing::signed_command(command), row.now);
    const auto progress = all_of<action::PublishProgress>(actions);
    ASSERT_FALSE(progress.empty());
    if (row.expired) {
      EXPECT_EQ(progress.back()->progress.error(), v1::ERROR_COMMAND_EXPIRED);
      EXPECT_EQ(engine.state(), EngineState::kIdle);
    } else {
      EXPECT_EQ(progress.back()->progress.phase(), v1::PHASE_DOWNLOADING)
          << progress.back()->progress.error_detail();
      EXPECT_EQ(engine.state(), EngineState::kDownloading);
    }
  }
}

TEST_F(RefusalTest, ReplayedCommandIdEvenAfterReboot) {
  send(testing::install_command("c1", artifact_, clock_.now_ms()));
  run_to_completion();
  device().power_off();
  device().power_on(clock_.now_ms());
  expect_refused(testing::install_command("c1", artifact_, clock_.now_ms()), v1::ERROR_COMMAND_REPLAYED);
}

// ---- Signed commands: the signature is checked before anything else ---------------------------
// The orchestrator signs every command with its command key; a device holds a set of command
// public keys (more than one while a key is rotated). A payload that does not verify is logged and
// dropped: no report (its ids are not trusted), no journal write, no entry in the replay memory.
class CommandSignatureTest : public ::testing::Test {
 protected:
  CommandSignatureTest()
      : artifact_key_(generate()),
        old_key_(generate()),
        new_key_(generate()),
        artifact_(make_artifact(artifact_key_)) {}

  static common::Ed25519PrivateKey generate() {
    return std::move(common::Ed25519PrivateKey::generate()).value();
  }

  // A started, idle engine whose command_keys hold `command_keys`.
  std::unique_ptr<UpdateEngine> engine_trusting(std::vector<const common::Ed25519PrivateKey*> command_keys) {
    common::TrustStore artifact_keys;
    artifact_keys.add(artifact_key_.public_key());
    common::TrustStore commands;
    for (const auto* key : command_keys) commands.add(key->public_key());
    crypto_ = std::make_unique<OpenSslEngineCrypto>(std::move(artifact_keys), std::move(commands));
    auto engine = std::make_unique<UpdateEngine>(SimDevice::default_config(), *crypto_);
    (void)engine->on_started({"a", false}, now_);
    (void)engine->on_connected(now_);
    return engine;
  }

  v1::Command install(const std::string& id) { return testing::install_command(id, artifact_, now_); }

  // The engine took the command: it reports DOWNLOADING for it and remembers its id.
  void expect_accepted(UpdateEngine& engine, const std::string& payload, const std::string& id) {
    const Actions actions = engine.on_command(payload, now_);
    const auto progress = all_of<action::PublishProgress>(actions);
    ASSERT_FALSE(progress.empty()) << ::testing::PrintToString(names(actions, false));
    EXPECT_EQ(progress.back()->progress.command_id(), id);
    EXPECT_EQ(progress.back()->progress.phase(), v1::PHASE_DOWNLOADING);
    EXPECT_EQ(engine.state(), EngineState::kDownloading);
  }

  // The engine dropped the payload before reading it: one Log saying why, nothing else.
  void expect_refused(UpdateEngine& engine, const std::string& payload, const std::string& says) {
    const std::uint64_t before = engine.stats().commands_unverified;
    const int remembered = engine.record().recent_command_ids_size();
    const Actions actions = engine.on_command(payload, now_);
    ASSERT_EQ(actions.size(), 1u) << ::testing::PrintToString(names(actions, false));
    const auto* log = std::get_if<action::Log>(&actions.front());
    ASSERT_NE(log, nullptr);
    EXPECT_EQ(log->level, v1::LOG_LEVEL_WARN);
    EXPECT_NE(log->message.find(says), std::string::npos) << log->message;
    EXPECT_EQ(engine.stats().commands_unverified, before + 1);
    EXPECT_EQ(engine.record().recent_command_ids_size(), remembered);
    EXPECT_EQ(engine.state(), EngineState::kIdle);
  }

  std::int64_t now_ = 1'700'000'000'000;
  common::Ed25519PrivateKey artifact_key_;
  common::Ed25519PrivateKey old_key_;
  common::Ed25519PrivateKey new_key_;
  TestArtifact artifact_;
  std::unique_ptr<OpenSslEngineCrypto> crypto_;
};

TEST_F(CommandSignatureTest, UnsignedCommandIsRefusedBeforeTheJournalAndTheReplayMemory) {
  auto engine = engine_trusting({&old_key_});
  expect_refused(*engine, common::encode(install("c1")), "command is not signed");
  // Not remembered as seen: the same id, signed, is a first delivery, not a replay.
  expect_accepted(*engine, testing::signed_command(install("c1"), old_key_), "c1");
}

TEST_F(CommandSignatureTest, CommandSignedWithAKeyTheDeviceDoesNotHoldIsRefused) {
  auto engine = engine_trusting({&old_key_});
  expect_refused(*engine, testing::signed_command(install("c1"), new_key_),
                 "not among this device's command keys");
}

// The artifact release key is trusted for manifests, never for commands.
TEST_F(CommandSignatureTest, CommandSignedWithTheArtifactKeyIsRefused) {
  auto engine = engine_trusting({&old_key_});
  expect_refused(*engine, testing::signed_command(install("c1"), artifact_key_),
                 "not among this device's command keys");
}

TEST_F(CommandSignatureTest, EveryFlippedBitIsRefused) {
  auto engine = engine_trusting({&old_key_});
  v1::Command cancel;
  cancel.set_command_id("x1");
  cancel.set_deployment_id("dep-1");
  cancel.set_device_id(testing::kDeviceId);
  cancel.set_issued_at_ms(now_);
  cancel.set_expires_at_ms(now_ + 60'000);
  cancel.mutable_cancel();
  const std::string payload = testing::signed_command(cancel, old_key_);
  for (std::size_t bit = 0; bit < payload.size() * 8; ++bit) {
    std::string flipped = payload;
    flipped[bit / 8] = static_cast<char>(flipped[bit / 8] ^ (1 << (bit % 8)));
    const Actions actions = engine->on_command(flipped, now_);
    ASSERT_EQ(actions.size(), 1u) << "bit " << bit << ": " << ::testing::PrintToString(names(actions, false));
    ASSERT_TRUE(std::holds_alternative<action::Log>(actions.front())) << "bit " << bit;
  }
  EXPECT_EQ(engine->stats().commands_unverified, payload.size() * 8);
  EXPECT_EQ(engine->record().recent_command_ids_size(), 0);
}

// An attacker who can publish (a broker, an ACL bypass) edits a genuine command and signs it
// again with a key of its own: under its own key id it is untrusted, under the orchestrator's key
// id the signature does not verify.
TEST_F(CommandSignatureTest, CommandReSignedWithAnotherKeyIsRefused) {
  auto engine = engine_trusting({&old_key_});
  const std::string genuine = testing::signed_command(install("c1"), old_key_);
  auto edited = common::decode<v1::Command>(genuine, common::kMaxCommandBytes);
  ASSERT_TRUE(edited.ok());
  const std::string trusted_key_id = edited->signature().key_id();
  edited->clear_install();
  edited->mutable_rollback();
  expect_refused(*engine, testing::signed_command(*edited, new_key_), "not among this device's command keys");

  auto forged =
      common::decode<v1::Command>(testing::signed_command(*edited, new_key_), common::kMaxCommandBytes);
  ASSERT_TRUE(forged.ok());
  forged->mutable_signature()->set_key_id(trusted_key_id);
  expect_refused(*engine, common::encode(*forged), "does not verify");
  // The genuine command still goes through.
  expect_accepted(*engine, genuine, "c1");
}

// Rotation, step 1 and 2: a device holding both keys takes commands signed with either, so the
// orchestrator can switch keys while devices still get commands signed with the old one.
TEST_F(CommandSignatureTest, CommandsSignedWithEitherKeyAreValidDuringRotation) {
  auto engine = engine_trusting({&old_key_, &new_key_});
  expect_accepted(*engine, testing::signed_command(install("c1"), new_key_), "c1");
  v1::Command cancel;
  cancel.set_command_id("x1");
  cancel.set_device_id(testing::kDeviceId);
  cancel.set_expires_at_ms(now_ + 60'000);
  cancel.mutable_cancel();
  const Actions cancelled = engine->on_command(testing::signed_command(cancel, old_key_), now_);
  const auto progress = all_of<action::PublishProgress>(cancelled);
  ASSERT_FALSE(progress.empty());
  EXPECT_EQ(progress.back()->progress.phase(), v1::PHASE_CANCELLED);
}

// Rotation, step 3: once the old key is removed from the device, what it signs is refused.
TEST_F(CommandSignatureTest, OldKeyIsRefusedAfterItsRemoval) {
  auto engine = engine_trusting({&new_key_});
  expect_refused(*engine, testing::signed_command(install("c1"), old_key_),
                 "not among this device's command keys");
  expect_accepted(*engine, testing::signed_command(install("c1"), new_key_), "c1");
}

// An expired or replayed command is still refused when it is correctly signed: the signature
// adds to those checks, it does not replace them.
TEST_F(CommandSignatureTest, SignedCommandsStillFaceExpiryAndReplayChecks) {
  auto engine = engine_trusting({&old_key_});
  const std::int64_t allowance = EngineConfig{}.clock_skew_allowance_ms;
  auto expired = testing::install_command("c0", artifact_, now_ - allowance - 120'000);
  Actions actions = engine->on_command(testing::signed_command(expired, old_key_), now_);
  auto progress = all_of<action::PublishProgress>(actions);
  ASSERT_FALSE(progress.empty());
  EXPECT_EQ(progress.back()->progress.error(), v1::ERROR_COMMAND_EXPIRED);
  v1::Command report;
  report.set_command_id("i1");
  report.set_device_id(testing::kDeviceId);
  report.set_expires_at_ms(now_ + 60'000);
  report.mutable_report_inventory();
  const std::string payload = testing::signed_command(report, old_key_);
  (void)engine->on_command(payload, now_);
  actions = engine->on_command(payload, now_);
  progress = all_of<action::PublishProgress>(actions);
  ASSERT_FALSE(progress.empty());
  EXPECT_EQ(progress.back()->progress.error(), v1::ERROR_COMMAND_REPLAYED);
}

TEST_F(RefusalTest, BadSignature) {
  auto command = testing::install_command("c1", artifact_, clock_.now_ms());
  std::string& manifest = *command.mutable_install()->mutable_manifest()->mutable_manifest();
  // Change the version string inside the signed bytes.
  const auto at = manifest.find("2.0.0");
  ASSERT_NE(at, std::string::npos);
  manifest[at] = '9';
  expect_refused(command, v1::ERROR_BAD_SIGNATURE);
}

TEST_F(RefusalTest, UntrustedKey) {
  auto other = std::move(common::Ed25519PrivateKey::generate()).value();
  expect_refused(testing::install_command("c1", make_artifact(other), clock_.now_ms()),
                 v1::ERROR_UNTRUSTED_KEY);
}

TEST_F(RefusalTest, WrongHardware) {
  ArtifactOptions o;
  o.hardware = {"board-rev1"};
  expect_refused(testing::install_command("c1", make_artifact(key_, o), clock_.now_ms()),
                 v1::ERROR_HARDWARE_MISMATCH);
}

TEST_F(RefusalTest, LowerSecurityCounterIsADowngrade) {
  config_.factory_security_counter = 5;
  expect_refused(testing::install_command("c1", artifact_, clock_.now_ms()), v1::ERROR_DOWNGRADE);
}

TEST_F(RefusalTest, ImageLargerThanSlot) {
  config_.slot_capacity_bytes = 4096;
  expect_refused(testing::install_command("c1", artifact_, clock_.now_ms()), v1::ERROR_IMAGE_TOO_LARGE);
}

TEST_F(RefusalTest, UnsupportedPayload) {
  ArtifactOptions o;
  o.payload = v1::PAYLOAD_TYPE_MODULE;
  expect_refused(testing::install_command("c1", make_artifact(key_, o), clock_.now_ms()),
                 v1::ERROR_UNSUPPORTED_PAYLOAD);
}

TEST_F(RefusalTest, CommandForAnotherDevice) {
  auto command = testing::install_command("c1", artifact_, clock_.now_ms());
  command.set_device_id("dev-0002");
  expect_refused(command, v1::ERROR_COMMAND_MALFORMED);
}

// docs/PROTOCOL.md, "Delta artifacts": a delta is checked against the running slot before anything
// is downloaded; this client does not apply patches yet, so it never installs one.
class DeltaRefusalTest : public RefusalTest {
 protected:
  // artifact_'s patch bytes standing in for a delta from `base` to `target`, signed by the release key.
  TestArtifact delta_of(const TestArtifact& base, const TestArtifact& target,
                        v1::DeltaCodec codec = v1::DELTA_CODEC_ZSTD_PATCH_FROM) {
    TestArtifact d = artifact_;
    v1::DeltaEncoding& e = *d.manifest.mutable_delta();
    e.set_codec(codec);
    e.set_base_artifact_id(base.manifest.artifact_id());
    e.set_base_version(base.manifest.version());
    e.set_base_image_size(base.manifest.image_size());
    e.set_base_image_sha256(base.manifest.image_sha256());
    e.set_target_artifact_id(target.manifest.artifact_id());
    e.set_target_image_size(target.manifest.image_size());
    e.set_target_image_sha256(target.manifest.image_sha256());
    e.set_window_log(20);
    d.signed_manifest = common::sign_manifest(d.manifest, key_).value();
    return d;
  }
};

TEST_F(DeltaRefusalTest, ADeltaForAnotherBaseIsABaseMismatchBeforeDownload) {
  ArtifactOptions o;
  o.seed = 21;
  const TestArtifact other_base = make_artifact(key_, o);
  o.version = "3.0.0";
  o.security_counter = 3;
  const TestArtifact target = make_artifact(key_, o);
  expect_refused(testing::install_command("c1", delta_of(other_base, target), clock_.now_ms()),
                 v1::ERROR_DELTA_BASE_MISMATCH);
  const std::string detail = device().transport().progress.back().error_detail();
  EXPECT_NE(detail.find(other_base.manifest.artifact_id()), std::string::npos) << detail;
  EXPECT_NE(detail.find("send the full artifact " + target.manifest.artifact_id()), std::string::npos)
      << detail;
}

TEST_F(DeltaRefusalTest, AnUnknownCodecIsUnsupported) {
  expect_refused(testing::install_command(
                     "c1", delta_of(artifact_, artifact_, static_cast<v1::DeltaCodec>(9)), clock_.now_ms()),
                 v1::ERROR_UNSUPPORTED_DELTA);
}

TEST_F(DeltaRefusalTest, ADeltaOverTheRunningArtifactIsRefusedAndNothingIsDownloaded) {
  send(testing::install_command("c1", artifact_, clock_.now_ms()));
  run_to_completion();
  ASSERT_EQ(device().transport().progress.back().phase(), v1::PHASE_COMMITTED);
  const auto requests_before = device().transport().chunk_requests.size();
  ArtifactOptions o;
  o.seed = 22;
  o.version = "3.0.0";
  o.security_counter = 3;
  const TestArtifact target = make_artifact(key_, o);
  const v1::Progress p = send(testing::install_command("c2", delta_of(artifact_, target), clock_.now_ms()));
  EXPECT_EQ(p.phase(), v1::PHASE_FAILED);
  EXPECT_EQ(p.error(), v1::ERROR_UNSUPPORTED_DELTA)
      << v1::ErrorCode_Name(p.error()) << ": " << p.error_detail();
  EXPECT_EQ(device().engine().state(), EngineState::kIdle);
  EXPECT_EQ(device().transport().chunk_requests.size(), requests_before) << "nothing downloaded";
  EXPECT_TRUE(device().slot_content("b") == artifact_.image) << "the running slot is untouched";
}

// ---- Refusals during download -----------------------------------------------------------
TEST_F(EngineTest, TamperedChunkIsReRequestedOnce) {
  server_.corrupt[3] = 1;
  send(testing::install_command("c1", artifact_, clock_.now_ms()));
  run_to_completion();
  EXPECT_EQ(device().transport().progress.back().phase(), v1::PHASE_COMMITTED);
  EXPECT_EQ(server_.requested[3], 2);
  EXPECT_TRUE(device().slot_content("b") == artifact_.image);
}

TEST_F(EngineTest, RepeatedlyTamperedChunkFailsTheUpdate) {
  server_.corrupt[3] = 100;
  send(testing::install_command("c1", artifact_, clock_.now_ms()));
  run_to_completion();
  const auto& last = device().transport().progress.back();
  EXPECT_EQ(last.phase(), v1::PHASE_FAILED);
  EXPECT_EQ(last.error(), v1::ERROR_CHUNK_HASH_MISMATCH);
  EXPECT_EQ(server_.requested[3], static_cast<int>(config_.max_chunk_failures));
  EXPECT_EQ(device().boot_env()["FOTA_TRIAL"], "");
  EXPECT_TRUE(device().slot_content("a") == factory_image_);
}

TEST_F(EngineTest, OversizedChunkFailsTheUpdate) {
  server_.oversize[2] = 1;
  send(testing::install_command("c1", artifact_, clock_.now_ms()));
  run_to_completion();
  EXPECT_EQ(device().transport().progress.back().phase(), v1::PHASE_FAILED);
  EXPECT_EQ(device().transport().progress.back().error(), v1::ERROR_CHUNK_TOO_LARGE);
  EXPECT_EQ(device().boot_env()["FOTA_TRIAL"], "");
}

TEST_F(EngineTest, UnknownArtifactFailsTheUpdate) {
  server_.status = v1::CHUNK_STATUS_UNKNOWN_ARTIFACT;
  send(testing::install_command("c1", artifact_, clock_.now_ms()));
  run_to_completion();
  EXPECT_EQ(device().transport().progress.back().phase(), v1::PHASE_FAILED);
  EXPECT_EQ(device().transport().progress.back().error(), v1::ERROR_UNKNOWN_ARTIFACT);
}

TEST_F(EngineTest, ImageThatChangedOnStorageFailsVerification) {
  send(testing::install_command("c1", artifact_, clock_.now_ms()));
  // Every chunk verified, but flash corrupted one byte before the read-back.
  UpdateEngine& engine = device().engine();
  auto& requests = device().transport().chunk_requests;
  while (!requests.empty()) {
    auto request = requests.front();
    requests.pop_front();
    for (auto& chunk : server_.answer(request)) {
      Actions actions = engine.on_chunk(std::move(chunk), clock_.now_ms());
      for (auto& a : actions) {
        if (auto* h = std::get_if<action::HashSlot>(&a)) {
          (void)h;
          std::string wrong(32, '\0');
          actions = engine.on_slot_hash(wrong, clock_.now_ms());
          break;
        }
      }
      device().run(std::move(actions), clock_.now_ms());
    }
  }
  EXPECT_EQ(device().transport().progress.back().error(), v1::ERROR_IMAGE_HASH_MISMATCH);
  EXPECT_EQ(engine.state(), EngineState::kIdle);
}

}  // namespace
}  // namespace fota::client

namespace fota::client {
namespace {

// ---- File and update-module payloads (installed in place, no reboot) ----------------------
class InPlaceInstallTest : public EngineTest {
 protected:
  InPlaceInstallTest() {
    config_.capabilities = {v1::PAYLOAD_TYPE_AB_IMAGE, v1::PAYLOAD_TYPE_FILE, v1::PAYLOAD_TYPE_MODULE};
  }
  TestArtifact payload(v1::PayloadType type, const std::string& target) {
    ArtifactOptions o;
    o.payload = type;
    o.payload_target = target;
    o.size = 3000;
    o.seed = 11;
    return make_artifact(key_, o);
  }
  std::string read(const std::filesystem::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
  }
  void write_module(const std::string& name, const std::string& script) {
    const auto path = device().modules_dir() / name;
    std::ofstream(path) << script;
    std::filesystem::permissions(path, std::filesystem::perms::owner_all);
  }
};

TEST_F(InPlaceInstallTest, FileIsReplacedAtomicallyWithoutReboot) {
  const TestArtifact file = payload(v1::PAYLOAD_TYPE_FILE, "app.conf");
  server_.artifact = &file;
  std::ofstream(device().file_target("app.conf")) << "old config";
  send(testing::install_command("c1", file, clock_.now_ms()));
  ASSERT_TRUE(testing::serve_chunks(device(), server_, clock_.now_ms())) << "a file install must not reboot";
  EXPECT_EQ(device().transport().progress.back().phase(), v1::PHASE_COMMITTED);
  EXPECT_TRUE(read(device().file_target("app.conf")) == file.image);
  EXPECT_FALSE(std::filesystem::exists(device().file_target("app.conf").string() + ".fota-prev"));
  EXPECT_EQ(device().booted_slot(), "a");
}

TEST_F(InPlaceInstallTest, UnhealthyFileIsRestored) {
  const TestArtifact file = payload(v1::PAYLOAD_TYPE_FILE, "app.conf");
  server_.artifact = &file;
  std::ofstream(device().file_target("app.conf")) << "old config";
  device().healthy = false;
  send(testing::install_command("c1", file, clock_.now_ms()));
  testing::serve_chunks(device(), server_, clock_.now_ms());
  EXPECT_EQ(device().transport().progress.back().phase(), v1::PHASE_ROLLED_BACK);
  EXPECT_EQ(device().transport().progress.back().error(), v1::ERROR_HEALTH_CHECK_FAILED);
  EXPECT_EQ(read(device().file_target("app.conf")), "old config");
}

TEST_F(InPlaceInstallTest, UnknownFileTargetFails) {
  const TestArtifact file = payload(v1::PAYLOAD_TYPE_FILE, "etc-passwd");
  server_.artifact = &file;
  const v1::Progress p = send(testing::install_command("c1", file, clock_.now_ms()));
  EXPECT_EQ(p.phase(), v1::PHASE_FAILED);
  EXPECT_EQ(p.error(), v1::ERROR_WRITE_FAILED);
  EXPECT_NE(p.error_detail().find("no file target named 'etc-passwd'"), std::string::npos)
      << p.error_detail();
}

TEST_F(InPlaceInstallTest, UpdateModuleRunsInItsOwnProcess) {
  const TestArtifact module_payload = payload(v1::PAYLOAD_TYPE_MODULE, "blob");
  server_.artifact = &module_payload;
  const auto log = dir_.path() / "module.log";
  write_module("blob",
               "#!/bin/sh\nread line\necho \"$1 $line\" >> " + log.string() + "\necho working\necho ok\n");
  send(testing::install_command("c1", module_payload, clock_.now_ms()));
  testing::serve_chunks(device(), server_, clock_.now_ms());
  EXPECT_EQ(device().transport().progress.back().phase(), v1::PHASE_COMMITTED)
      << device().transport().progress.back().error_detail();
  const std::string calls = read(log);
  EXPECT_NE(calls.find("install image="), std::string::npos) << calls;
  EXPECT_NE(calls.find("commit image="), std::string::npos) << calls;
}

TEST_F(InPlaceInstallTest, FailingUpdateModuleFailsTheInstall) {
  const TestArtifact module_payload = payload(v1::PAYLOAD_TYPE_MODULE, "blob");
  server_.artifact = &module_payload;
  write_module(
      "blob",
      "#!/bin/sh\nif [ \"$1\" = install ]; then echo 'error disk is read-only'; exit 3; fi\necho ok\n");
  send(testing::install_command("c1", module_payload, clock_.now_ms()));
  testing::serve_chunks(device(), server_, clock_.now_ms());
  // In-place installs activate and confirm in one step: the module is asked to roll back.
  const v1::Progress& p = device().transport().progress.back();
  EXPECT_EQ(p.phase(), v1::PHASE_ROLLED_BACK);
  EXPECT_EQ(p.error(), v1::ERROR_INSTALL_FAILED);
  EXPECT_NE(p.error_detail().find("disk is read-only"), std::string::npos) << p.error_detail();
}

}  // namespace
}  // namespace fota::client

namespace fota::client {
namespace {

// ---- Manifests with a hash table (docs/PROTOCOL.md, "Chunk hashes") -----------------------
// 101 image chunks of 1 KiB: the manifest carries 4 hash-table hashes instead of 101 chunk
// hashes; hash chunks 0-3 (32, 32, 32 and 5 hashes) are chunk indices 101-104.
class HashTableEngineTest : public EngineTest {
 protected:
  static constexpr std::uint32_t kImageChunks = 101;
  static constexpr std::uint32_t kHashChunk0 = kImageChunks;

  HashTableEngineTest() {
    ArtifactOptions o;
    o.size = kImageChunks * 1024 - 700;
    artifact_ = make_artifact(key_, o);
    config_.slot_capacity_bytes = 256 * 1024;
    config_.initial_window = 8;
  }

  // Answers every pending request (each answer's chunks in reverse order) until none is left.
  void serve_reversed() {
    auto& requests = device().transport().chunk_requests;
    while (!requests.empty() && device().running()) {
      auto chunks = server_.answer(requests.front());
      requests.pop_front();
      std::reverse(chunks.begin(), chunks.end());
      for (auto& c : chunks) {
        if (!device().running()) break;
        device().run(device().engine().on_chunk(std::move(c), clock_.now_ms()), clock_.now_ms());
      }
    }
  }

  // Hash chunk that covers image chunk `index`.
  static std::uint32_t hash_chunk_of(std::uint32_t index) { return kHashChunk0 + index / 32; }
};

TEST_F(HashTableEngineTest, ManifestCarriesHashTableHashesInsteadOfChunkHashes) {
  EXPECT_EQ(artifact_.manifest.chunk_sha256_size(), 0);
  EXPECT_EQ(artifact_.manifest.hash_table_sha256_size(), 4);
  EXPECT_EQ(common::ChunkSpace::of(artifact_.manifest).total(), kImageChunks + 4);
}

TEST_F(HashTableEngineTest, CompleteUpdateFetchesEachHashChunkBeforeTheChunksItCovers) {
  send(testing::install_command("c1", artifact_, clock_.now_ms()));
  run_to_completion();
  EXPECT_EQ(device().transport().progress.back().phase(), v1::PHASE_COMMITTED)
      << device().transport().progress.back().error_detail();
  EXPECT_TRUE(device().slot_content("b") == artifact_.image);
  EXPECT_EQ(server_.requested.size(), kImageChunks + 4);
  for (const auto& [index, count] : server_.requested) EXPECT_EQ(count, 1) << "chunk " << index;
  // The first request is the first hash chunk alone; no image chunk is asked for before its hash
  // chunk.
  ASSERT_FALSE(server_.request_order.empty());
  EXPECT_EQ(server_.request_order.front(), kHashChunk0);
  std::map<std::uint32_t, std::size_t> first_asked;
  for (std::size_t n = 0; n < server_.request_order.size(); ++n)
    first_asked.emplace(server_.request_order[n], n);
  for (std::uint32_t i = 0; i < kImageChunks; ++i) {
    EXPECT_LT(first_asked.at(hash_chunk_of(i)), first_asked.at(i)) << "chunk " << i;
  }
  EXPECT_EQ(device().engine().stats().unexpected_events, 0U);
}

TEST_F(HashTableEngineTest, OutOfOrderChunksAcrossHashChunksAreVerified) {
  config_.initial_window = 40;
  config_.max_window = 40;
  config_.adaptive_window = false;
  send(testing::install_command("c1", artifact_, clock_.now_ms()));
  serve_reversed();
  run_to_completion();
  EXPECT_EQ(device().transport().progress.back().phase(), v1::PHASE_COMMITTED)
      << device().transport().progress.back().error_detail();
  EXPECT_TRUE(device().slot_content("b") == artifact_.image);
}

TEST_F(HashTableEngineTest, TamperedImageChunkIsCheckedAgainstTheHashTable) {
  server_.corrupt[40] = 1;
  send(testing::install_command("c1", artifact_, clock_.now_ms()));
  run_to_completion();
  EXPECT_EQ(device().transport().progress.back().phase(), v1::PHASE_COMMITTED);
  EXPECT_EQ(server_.requested[40], 2);
  EXPECT_TRUE(device().slot_content("b") == artifact_.image);
}

TEST_F(HashTableEngineTest, TamperedHashChunkIsReRequestedOnce) {
  server_.corrupt[kHashChunk0 + 1] = 1;
  send(testing::install_command("c1", artifact_, clock_.now_ms()));
  run_to_completion();
  EXPECT_EQ(device().transport().progress.back().phase(), v1::PHASE_COMMITTED);
  EXPECT_EQ(server_.requested[kHashChunk0 + 1], 2);
  EXPECT_TRUE(device().slot_content("b") == artifact_.image);
}

TEST_F(HashTableEngineTest, RepeatedlyTamperedHashChunkFailsTheUpdate) {
  server_.corrupt[kHashChunk0 + 2] = 100;
  send(testing::install_command("c1", artifact_, clock_.now_ms()));
  run_to_completion();
  const auto& last = device().transport().progress.back();
  EXPECT_EQ(last.phase(), v1::PHASE_FAILED);
  EXPECT_EQ(last.error(), v1::ERROR_CHUNK_HASH_MISMATCH);
  EXPECT_NE(last.error_detail().find("hash-table chunk 2"), std::string::npos) << last.error_detail();
  EXPECT_EQ(server_.requested[kHashChunk0 + 2], static_cast<int>(config_.max_chunk_failures));
  // The image chunks it covers (64-95) were never asked for: nothing unverifiable was fetched.
  for (std::uint32_t i = 64; i < 96; ++i) EXPECT_EQ(server_.requested.count(i), 0U) << "chunk " << i;
  EXPECT_EQ(device().boot_env()["FOTA_TRIAL"], "");
  EXPECT_TRUE(device().slot_content("a") == factory_image_);
}

TEST_F(HashTableEngineTest, OversizedHashChunkFailsTheUpdate) {
  server_.oversize[kHashChunk0 + 3] = 1;
  send(testing::install_command("c1", artifact_, clock_.now_ms()));
  run_to_completion();
  EXPECT_EQ(device().transport().progress.back().phase(), v1::PHASE_FAILED);
  EXPECT_EQ(device().transport().progress.back().error(), v1::ERROR_CHUNK_TOO_LARGE);
  EXPECT_EQ(device().boot_env()["FOTA_TRIAL"], "");
}

TEST_F(HashTableEngineTest, LostHashChunkRequestIsAskedAgainAfterTheTimeout) {
  send(testing::install_command("c1", artifact_, clock_.now_ms()));
  auto& requests = device().transport().chunk_requests;
  ASSERT_EQ(requests.size(), 1U);
  ASSERT_EQ(requests.front().ranges_size(), 1);
  EXPECT_EQ(requests.front().ranges(0).first(), kHashChunk0);
  EXPECT_EQ(requests.front().ranges(0).count(), 1U);
  requests.clear();  // lost
  clock_.advance(std::chrono::milliseconds(config_.chunk_timeout_ms));
  device().run(device().engine().on_tick(clock_.now_ms()), clock_.now_ms());
  ASSERT_EQ(requests.size(), 1U);
  EXPECT_EQ(requests.front().ranges(0).first(), kHashChunk0);
  run_to_completion();
  EXPECT_EQ(device().transport().progress.back().phase(), v1::PHASE_COMMITTED);
}

TEST_F(HashTableEngineTest, LinkLossKeepsTheHashChunksAndRefetchesNothing) {
  config_.initial_window = 4;
  config_.adaptive_window = false;
  send(testing::install_command("c1", artifact_, clock_.now_ms()));
  auto& requests = device().transport().chunk_requests;
  while (device().engine().stats().chunks_verified < 40 && !requests.empty()) {
    auto request = requests.front();
    requests.pop_front();
    for (auto& c : server_.answer(request))
      device().run(device().engine().on_chunk(std::move(c), clock_.now_ms()), clock_.now_ms());
  }
  device().run(device().engine().on_disconnected(clock_.now_ms()), clock_.now_ms());
  requests.clear();  // lost with the link
  device().run(device().engine().on_connected(clock_.now_ms()), clock_.now_ms());
  run_to_completion();
  EXPECT_EQ(device().transport().progress.back().phase(), v1::PHASE_COMMITTED);
  for (const auto& [index, count] : server_.requested) EXPECT_EQ(count, 1) << "chunk " << index;
}

TEST_F(HashTableEngineTest, PowerCutRefetchesTheHashChunkButNoVerifiedChunk) {
  config_.initial_window = 4;
  config_.adaptive_window = false;
  send(testing::install_command("c1", artifact_, clock_.now_ms()));
  auto& requests = device().transport().chunk_requests;
  while (device().engine().stats().chunks_verified < 50 && !requests.empty()) {
    auto request = requests.front();
    requests.pop_front();
    for (auto& c : server_.answer(request))
      device().run(device().engine().on_chunk(std::move(c), clock_.now_ms()), clock_.now_ms());
  }
  ASSERT_GE(device().engine().stats().chunks_verified, 50U);
  device().power_off();  // the hash chunks in memory and the requests in flight are gone
  run_to_completion();
  EXPECT_EQ(device().transport().progress.back().phase(), v1::PHASE_COMMITTED);
  EXPECT_TRUE(device().slot_content("b") == artifact_.image);
  int refetched = 0;
  for (std::uint32_t i = 0; i < kImageChunks; ++i) refetched += server_.requested[i] - 1;
  EXPECT_LE(refetched, 4) << "only chunks in flight at the cut may be fetched again";
  EXPECT_EQ(server_.requested[kHashChunk0], 1);      // chunks 0-31 were all verified before the cut
  EXPECT_EQ(server_.requested[kHashChunk0 + 1], 2);  // needed again for chunks 50-63
}

}  // namespace
}  // namespace fota::client

namespace fota::client {
namespace {

// ---- The transition table, walked row by row -----------------------------------------------
// Each walk drives engines through one story and lists, in order, the rows of
// engine_transitions() it must take; together the walks take every row.
std::string row_text(const EngineTransition& row) {
  return std::string(engine_state_name(row.from)) + " -" + row.event + "[" + row.guard + "]-> " +
         engine_state_name(row.to);
}

class TransitionTableTest;

struct TransitionWalk {
  const char* name;
  void (TransitionTableTest::*run)();
  std::vector<std::string> path;
};

class TransitionTableTest : public EngineTest, public ::testing::WithParamInterface<TransitionWalk> {
 protected:
  TransitionTableTest() {
    config_.on_transition = [this](std::size_t row) {
      taken_.push_back(row_text(engine_transitions().at(row)));
    };
    // The walks answer chunk requests; the reuse phase has a walk of its own.
    config_.reuse_active_slot = false;
  }

  std::int64_t now() { return clock_.now_ms(); }

  // A journal of slots a (active) and b, both valid with security counter 0; unless `state` is
  // idle, an update of artifact_ into b (A/B) or into "file:app.conf" (in place) in progress.
  journal::JournalRecord journal_in(journal::EngineState state, bool in_place = false,
                                    bool all_verified = false) const {
    journal::JournalRecord record;
    for (const char* name : {"a", "b"}) {
      auto* s = record.add_slots();
      s->set_name(name);
      s->set_valid(true);
      s->set_version(std::string(name) == "a" ? "1.0.0" : "0.9.0");
    }
    record.set_active_slot("a");
    record.set_state(state);
    if (state == journal::ENGINE_STATE_IDLE) return record;
    auto* u = record.mutable_update();
    u->set_command_id("c1");
    u->set_artifact_id(artifact_.manifest.artifact_id());
    u->set_image_size(artifact_.manifest.image_size());
    u->set_chunk_size(artifact_.manifest.chunk_size());
    u->set_chunk_count(static_cast<std::uint32_t>(artifact_.manifest.chunk_sha256_size()));
    u->set_verified_bitmap(std::string((u->chunk_count() + 7) / 8, all_verified ? '\xff' : '\0'));
    u->set_target_slot(in_place ? "file:app.conf" : "b");
    u->set_previous_slot("a");
    if (in_place) u->set_payload_type(v1::PAYLOAD_TYPE_FILE);
    return record;
  }

  // Power on with `record` (none: first start) and the bootloader's `boot`.
  Actions boot(const journal::JournalRecord* record, BootStatus status) {
    engine_ = std::make_unique<UpdateEngine>(config_, crypto_, record,
                                             artifact_.signed_manifest.SerializeAsString());
    return engine_->on_started(status, now());
  }
  // Reboot: a new engine from what the last one recorded.
  Actions reboot(BootStatus status) {
    const journal::JournalRecord record = engine_->record();
    return boot(&record, std::move(status));
  }
  // Answers every chunk request in `actions`, and in what the answers bring, from server_.
  void serve(const Actions& actions) {
    for (const auto& a : actions) {
      if (const auto* r = std::get_if<action::RequestChunks>(&a)) {
        for (auto& chunk : server_.answer(r->request)) serve(engine_->on_chunk(std::move(chunk), now()));
      }
    }
  }
  void fail(const Action& action) {
    (void)engine_->on_action_failed(action, common::Error(common::Errc::kIo, "injected"), now());
  }
  v1::Command cancel() {
    v1::Command c;
    c.set_command_id("x1");
    c.set_device_id(testing::kDeviceId);
    c.set_expires_at_ms(now() + 1000);
    c.mutable_cancel();
    return c;
  }
  void install_on_fresh_device(const TestArtifact& artifact) {
    boot(nullptr, {"a", false});
    (void)engine_->on_connected(now());
    (void)engine_->on_command(testing::signed_command(testing::install_command("c1", artifact, now())),
                              now());
  }

  // ---- The walks ----
 public:
  void reuse_copies_every_chunk() {
    // The running slot already holds the image: every chunk is copied, none requested.
    config_.reuse_active_slot = true;
    boot(nullptr, {"a", false});
    (void)engine_->on_connected(now());
    Actions actions =
        engine_->on_command(testing::signed_command(testing::install_command("c1", artifact_, now())), now());
    for (bool more = true; more;) {
      more = false;
      for (const auto& a : actions) {
        const auto* read = std::get_if<action::ReadActiveChunk>(&a);
        if (read == nullptr) continue;
        actions =
            engine_->on_active_chunk(read->index, artifact_.image.substr(read->offset, read->size), now());
        more = true;
        break;
      }
    }
    EXPECT_EQ(engine_->state(), EngineState::kVerifying);
    EXPECT_EQ(engine_->stats().chunks_requested, 0U);
  }
  void ab_update_commits() {
    boot(nullptr, {"a", false});
    (void)engine_->on_connected(now());
    serve(engine_->on_command(testing::signed_command(testing::install_command("c1", artifact_, now())),
                              now()));
    (void)engine_->on_slot_hash(artifact_.manifest.image_sha256(), now());
    reboot({"b", true});
    (void)engine_->on_health_result(true, "", now());
  }
  void unhealthy_update_rolls_back() {
    const auto record = journal_in(journal::ENGINE_STATE_REBOOTING);
    boot(&record, {"b", true});
    (void)engine_->on_health_result(false, "app down", now());
    reboot({"a", false});
  }
  void silent_health_check_rolls_back() {
    const auto record = journal_in(journal::ENGINE_STATE_REBOOTING);
    boot(&record, {"b", true});
    clock_.advance(std::chrono::milliseconds(config_.health_check_timeout_ms));
    (void)engine_->on_tick(now());
    reboot({"b", true});  // the revert did not happen before the reboot
  }
  void commit_failure_rolls_back() {
    const auto record = journal_in(journal::ENGINE_STATE_REBOOTING);
    boot(&record, {"b", true});
    fail(action::CommitSlot{"b"});
  }
  void rollback_to_previous_slot_fails_to_switch() {
    const auto record = journal_in(journal::ENGINE_STATE_IDLE);
    boot(&record, {"a", false});
    (void)engine_->on_command(testing::signed_command(testing::rollback_command("r1", now())), now());
    fail(action::ActivateSlot{"b"});
  }
  void installed_artifact_is_not_installed_again() {
    auto record = journal_in(journal::ENGINE_STATE_IDLE);
    record.mutable_slots(0)->set_artifact_id(artifact_.manifest.artifact_id());
    boot(&record, {"a", false});
    (void)engine_->on_command(testing::signed_command(testing::install_command("c1", artifact_, now())),
                              now());
  }
  void download_cancelled() {
    install_on_fresh_device(artifact_);
    (void)engine_->on_command(testing::signed_command(cancel()), now());
  }
  void download_stalls() {
    install_on_fresh_device(artifact_);
    clock_.advance(std::chrono::milliseconds(config_.download_stall_timeout_ms));
    (void)engine_->on_tick(now());
  }
  void artifact_unknown_to_the_server() {
    install_on_fresh_device(artifact_);
    v1::ChunkData chunk;
    chunk.set_artifact_id(artifact_.manifest.artifact_id());
    chunk.set_status(v1::CHUNK_STATUS_UNKNOWN_ARTIFACT);
    (void)engine_->on_chunk(std::move(chunk), now());
  }
  void slot_write_fails() {
    install_on_fresh_device(artifact_);
    fail(action::WriteChunk{"b", 0, "x"});
  }
  void empty_image_needs_no_chunk() {
    ArtifactOptions o;
    o.size = 0;
    o.seed = 3;
    install_on_fresh_device(make_artifact(key_, o));
  }
  void download_resumes() {
    const auto record = journal_in(journal::ENGINE_STATE_DOWNLOADING);
    boot(&record, {"a", false});
  }
  void complete_download_resumes_into_verifying() {
    const auto record = journal_in(journal::ENGINE_STATE_DOWNLOADING, false, /*all_verified=*/true);
    boot(&record, {"a", false});
  }
  void verifying_cancelled() {
    const auto record = journal_in(journal::ENGINE_STATE_VERIFYING);
    boot(&record, {"a", false});
    (void)engine_->on_command(testing::signed_command(cancel()), now());
  }
  void image_changed_on_storage() {
    const auto record = journal_in(journal::ENGINE_STATE_VERIFYING);
    boot(&record, {"a", false});
    (void)engine_->on_slot_hash(std::string(32, '\0'), now());
  }
  void slot_read_back_fails() {
    const auto record = journal_in(journal::ENGINE_STATE_VERIFYING);
    boot(&record, {"a", false});
    fail(action::HashSlot{"b", 1});
  }
  void switch_interrupted() {
    const auto record = journal_in(journal::ENGINE_STATE_INSTALLING);
    boot(&record, {"a", false});
  }
  void in_place_activation_interrupted_then_unhealthy() {
    const auto record = journal_in(journal::ENGINE_STATE_INSTALLING, /*in_place=*/true);
    boot(&record, {"a", false});
    (void)engine_->on_health_result(false, "app down", now());
  }
  void in_place_confirmation_interrupted_then_silent() {
    const auto record = journal_in(journal::ENGINE_STATE_CONFIRMING, /*in_place=*/true);
    boot(&record, {"a", false});
    clock_.advance(std::chrono::milliseconds(config_.health_check_timeout_ms));
    (void)engine_->on_tick(now());
  }
  void in_place_activation_fails() {
    const auto record = journal_in(journal::ENGINE_STATE_CONFIRMING, /*in_place=*/true);
    boot(&record, {"a", false});
    fail(action::ActivateSlot{"file:app.conf"});
  }
  void in_place_payload_verified() {
    const auto record = journal_in(journal::ENGINE_STATE_VERIFYING, /*in_place=*/true);
    boot(&record, {"a", false});
    (void)engine_->on_slot_hash(artifact_.manifest.image_sha256(), now());
  }

  std::unique_ptr<UpdateEngine> engine_;
  std::vector<std::string> taken_;
};

TEST_P(TransitionTableTest, TakesItsRowsInOrder) {
  const TransitionWalk& walk = GetParam();
  (this->*walk.run)();
  EXPECT_EQ(taken_, walk.path);
  EXPECT_EQ(engine_->stats().unexpected_events, 0U);
}

// Rows, as row_text() writes them.
const char kFirstStart[] = "AwaitingStart -Started[no journal: first start]-> Idle";
const char kJournalIdle[] = "AwaitingStart -Started[journal idle]-> Idle";
const char kInstall[] = "Idle -Command[install command accepted]-> Downloading";
const char kTrialBoot[] = "AwaitingStart -Started[target slot booted on trial]-> Confirming";
const char kJournalVerifying[] = "AwaitingStart -Started[journal verifying]-> Verifying";
const char kJournalInstalling[] =
    "AwaitingStart -Started[journal installing, target not booted on trial]-> Installing";
const char kInPlaceConfirming[] =
    "AwaitingStart -Started[in-place payload, journal rebooting or confirming]-> Confirming";

const std::vector<TransitionWalk> kWalks = {
    {"AbUpdateCommits",
     &TransitionTableTest::ab_update_commits,
     {kFirstStart, kInstall, "Downloading -Chunk[every chunk verified]-> Verifying",
      "Verifying -SlotHash[slot hash = manifest image hash]-> Installing",
      "Installing -SlotHash[A/B image: slot switched, reboot]-> Rebooting", kTrialBoot,
      "Confirming -HealthResult[update ended: outcome reported]-> Idle"}},
    {"UnhealthyUpdateRollsBack",
     &TransitionTableTest::unhealthy_update_rolls_back,
     {kTrialBoot, "Confirming -HealthResult[health check failed]-> RollingBack",
      "AwaitingStart -Started[update ended: outcome reported]-> Idle"}},
    {"SilentHealthCheckRollsBack",
     &TransitionTableTest::silent_health_check_rolls_back,
     {kTrialBoot, "Confirming -Tick[health check deadline passed]-> RollingBack",
      "AwaitingStart -Started[journal rolling back, previous slot not booted]-> RollingBack"}},
    {"CommitFailureRollsBack",
     &TransitionTableTest::commit_failure_rolls_back,
     {kTrialBoot, "Confirming -ActionFailed[an action failed while confirming]-> RollingBack"}},
    {"RollbackToPreviousSlotFailsToSwitch",
     &TransitionTableTest::rollback_to_previous_slot_fails_to_switch,
     {kJournalIdle, "Idle -Command[rollback command, previous slot valid]-> Installing",
      "Installing -Command[A/B image: slot switched, reboot]-> Rebooting",
      "Rebooting -ActionFailed[update ended: outcome reported]-> Idle"}},
    {"InstalledArtifactIsNotInstalledAgain",
     &TransitionTableTest::installed_artifact_is_not_installed_again,
     {kJournalIdle, "Idle -Command[update ended: outcome reported]-> Idle"}},
    {"ReuseCopiesEveryChunk",
     &TransitionTableTest::reuse_copies_every_chunk,
     {kFirstStart, kInstall, "Downloading -ActiveChunk[every chunk verified]-> Verifying"}},
    {"DownloadCancelled",
     &TransitionTableTest::download_cancelled,
     {kFirstStart, kInstall, "Downloading -Command[update ended: outcome reported]-> Idle"}},
    {"DownloadStalls",
     &TransitionTableTest::download_stalls,
     {kFirstStart, kInstall, "Downloading -Tick[update ended: outcome reported]-> Idle"}},
    {"ArtifactUnknownToTheServer",
     &TransitionTableTest::artifact_unknown_to_the_server,
     {kFirstStart, kInstall, "Downloading -Chunk[update ended: outcome reported]-> Idle"}},
    {"SlotWriteFails",
     &TransitionTableTest::slot_write_fails,
     {kFirstStart, kInstall, "Downloading -ActionFailed[update ended: outcome reported]-> Idle"}},
    {"EmptyImageNeedsNoChunk",
     &TransitionTableTest::empty_image_needs_no_chunk,
     {kFirstStart, kInstall, "Downloading -Command[every chunk verified]-> Verifying"}},
    {"DownloadResumes",
     &TransitionTableTest::download_resumes,
     {"AwaitingStart -Started[journal downloading]-> Downloading"}},
    {"CompleteDownloadResumesIntoVerifying",
     &TransitionTableTest::complete_download_resumes_into_verifying,
     {"AwaitingStart -Started[journal downloading]-> Downloading",
      "Downloading -Started[every chunk verified]-> Verifying"}},
    {"VerifyingCancelled",
     &TransitionTableTest::verifying_cancelled,
     {kJournalVerifying, "Verifying -Command[update ended: outcome reported]-> Idle"}},
    {"ImageChangedOnStorage",
     &TransitionTableTest::image_changed_on_storage,
     {kJournalVerifying, "Verifying -SlotHash[update ended: outcome reported]-> Idle"}},
    {"SlotReadBackFails",
     &TransitionTableTest::slot_read_back_fails,
     {kJournalVerifying, "Verifying -ActionFailed[update ended: outcome reported]-> Idle"}},
    {"SwitchInterrupted",
     &TransitionTableTest::switch_interrupted,
     {kJournalInstalling, "Installing -Started[A/B image: slot switched, reboot]-> Rebooting"}},
    {"InPlaceActivationInterruptedThenUnhealthy",
     &TransitionTableTest::in_place_activation_interrupted_then_unhealthy,
     {kJournalInstalling, "Installing -Started[file or module payload activated in place]-> Confirming",
      "Confirming -HealthResult[health check failed]-> RollingBack",
      "RollingBack -HealthResult[update ended: outcome reported]-> Idle"}},
    {"InPlaceConfirmationInterruptedThenSilent",
     &TransitionTableTest::in_place_confirmation_interrupted_then_silent,
     {kInPlaceConfirming, "Confirming -Tick[health check deadline passed]-> RollingBack",
      "RollingBack -Tick[update ended: outcome reported]-> Idle"}},
    {"InPlaceActivationFails",
     &TransitionTableTest::in_place_activation_fails,
     {kInPlaceConfirming, "Confirming -ActionFailed[an action failed while confirming]-> RollingBack",
      "RollingBack -ActionFailed[update ended: outcome reported]-> Idle"}},
    {"InPlacePayloadVerified",
     &TransitionTableTest::in_place_payload_verified,
     {kJournalVerifying, "Verifying -SlotHash[slot hash = manifest image hash]-> Installing",
      "Installing -SlotHash[file or module payload activated in place]-> Confirming"}},
};

INSTANTIATE_TEST_SUITE_P(Walks, TransitionTableTest, ::testing::ValuesIn(kWalks),
                         [](const ::testing::TestParamInfo<TransitionWalk>& walk) {
                           return std::string(walk.param.name);
                         });

// Top to bottom: every row is walked, and appears once.
TEST(TransitionTableRowsTest, EveryRowIsWalkedAndUnique) {
  std::set<std::string> walked;
  for (const auto& walk : kWalks) walked.insert(walk.path.begin(), walk.path.end());
  std::set<std::string> rows;
  for (const EngineTransition& row : engine_transitions()) {
    EXPECT_TRUE(rows.insert(row_text(row)).second) << "twice: " << row_text(row);
    EXPECT_EQ(walked.count(row_text(row)), 1U) << "no walk takes " << row_text(row);
  }
  for (const auto& text : walked) EXPECT_EQ(rows.count(text), 1U) << "not a row: " << text;
}

// ---- Encrypted artifacts (docs/SECURITY.md, "Encrypted artifacts") ------------------------
// The device holds an X25519 decryption key; artifacts are encrypted for it (and a group key),
// for other keys only, or tampered with. Hash first, then the GCM tag, then the write.
class EncryptedEngineTest : public RefusalTest {
 protected:
  EncryptedEngineTest() {
    crypto_ = OpenSslEngineCrypto(trust_with(key_), testing::command_keys(), device_key_);
    ArtifactOptions o;
    o.encrypt_for = {group_key_.public_key(), device_key_->public_key()};
    artifact_ = make_artifact(key_, o);
  }

  TestArtifact encrypted_for(std::vector<common::X25519PublicKey> keys) {
    ArtifactOptions o;
    o.encrypt_for = std::move(keys);
    o.seed = 11;
    return make_artifact(key_, o);
  }

  // `artifact` with its manifest changed by `change` and signed again with the release key (what
  // a broken or malicious release tool could produce; anyone else breaks the signature).
  TestArtifact resigned(TestArtifact artifact, const std::function<void(v1::Manifest&)>& change) {
    change(artifact.manifest);
    artifact.signed_manifest = common::sign_manifest(artifact.manifest, key_).value();
    return artifact;
  }

  bool any_chunk_served() const {
    for (const auto& [index, count] : server_.requested) {
      if (count > 0) return true;
    }
    return false;
  }

  std::shared_ptr<const common::X25519PrivateKey> device_key_ =
      std::make_shared<const common::X25519PrivateKey>(common::X25519PrivateKey::generate().value());
  common::X25519PrivateKey group_key_ = common::X25519PrivateKey::generate().value();
};

TEST_F(EncryptedEngineTest, EncryptedArtifactIsDecryptedChunkByChunkAndCommits) {
  ASSERT_TRUE(artifact_.manifest.has_encryption());
  ASSERT_NE(artifact_.stored, artifact_.image) << "the server must hold ciphertext";
  ASSERT_EQ(artifact_.stored.size(),
            artifact_.image.size() + common::ChunkSpace::of(artifact_.manifest).image_chunks() * 16U);
  send(testing::install_command("c1", artifact_, clock_.now_ms()));
  run_to_completion();
  const auto& last = device().transport().progress.back();
  EXPECT_EQ(last.phase(), v1::PHASE_COMMITTED) << last.error_detail();
  // Progress counts the plaintext bytes written, not the ciphertext received.
  bool saw_verifying = false;
  for (const auto& p : device().transport().progress) {
    if (p.phase() != v1::PHASE_VERIFYING) continue;
    saw_verifying = true;
    EXPECT_EQ(p.bytes_done(), artifact_.image.size());
    EXPECT_EQ(p.bytes_total(), artifact_.image.size());
  }
  EXPECT_TRUE(saw_verifying);
  EXPECT_EQ(device().booted_slot(), "b");
  EXPECT_TRUE(device().slot_content("b") == artifact_.image) << "the slot holds the plaintext";
  EXPECT_EQ(device().transport().inventory.back().decryption_key_id(), device_key_->public_key().key_id());
  for (const auto& [index, count] : server_.requested) EXPECT_EQ(count, 1) << "chunk " << index;
}

TEST_F(EncryptedEngineTest, ADeviceWithoutAKeyRefusesEncryptedButInstallsPlainArtifacts) {
  crypto_ = testing::engine_crypto(key_);  // no decryption key
  expect_refused(testing::install_command("c1", artifact_, clock_.now_ms()), v1::ERROR_NOT_A_RECIPIENT);
  EXPECT_NE(device().transport().progress.back().error_detail().find("no decryption key"), std::string::npos)
      << device().transport().progress.back().error_detail();
  EXPECT_EQ(device().transport().inventory.back().decryption_key_id(), "");
  const TestArtifact plain = make_artifact(key_, ArtifactOptions{});
  server_.artifact = &plain;
  send(testing::install_command("c2", plain, clock_.now_ms()));
  run_to_completion();
  EXPECT_EQ(device().transport().progress.back().phase(), v1::PHASE_COMMITTED);
  EXPECT_TRUE(device().slot_content("b") == plain.image);
}

TEST_F(EncryptedEngineTest, AnArtifactEncryptedForOtherKeysIsRefusedBeforeDownload) {
  const auto other = common::X25519PrivateKey::generate().value();
  const TestArtifact theirs = encrypted_for({other.public_key()});
  server_.artifact = &theirs;
  expect_refused(testing::install_command("c1", theirs, clock_.now_ms()), v1::ERROR_NOT_A_RECIPIENT);
  const std::string detail = device().transport().progress.back().error_detail();
  EXPECT_NE(detail.find(other.public_key().key_id()), std::string::npos) << detail;
  EXPECT_NE(detail.find(device_key_->public_key().key_id()), std::string::npos) << detail;
  EXPECT_FALSE(any_chunk_served());
}

TEST_F(EncryptedEngineTest, AWrappedKeyTamperedInTransitBreaksTheSignature) {
  auto command = testing::install_command("c1", artifact_, clock_.now_ms());
  std::string& manifest = *command.mutable_install()->mutable_manifest()->mutable_manifest();
  const std::string wrapped = artifact_.manifest.encryption().recipients(1).wrapped_key();
  const auto at = manifest.find(wrapped);
  ASSERT_NE(at, std::string::npos);
  manifest[at + 5] ^= 0x01;
  expect_refused(command, v1::ERROR_BAD_SIGNATURE);
}

TEST_F(EncryptedEngineTest, ASignedButTamperedWrappedKeyDoesNotOpen) {
  const TestArtifact bad = resigned(artifact_, [](v1::Manifest& m) {
    (*m.mutable_encryption()->mutable_recipients(1)->mutable_wrapped_key())[7] ^= 0x01;
  });
  expect_refused(testing::install_command("c1", bad, clock_.now_ms()), v1::ERROR_KEY_UNWRAP_FAILED);
  const TestArtifact relabelled = resigned(artifact_, [this](v1::Manifest& m) {
    // The group's entry relabelled as this device's: the wrap is bound to its recipient.
    m.mutable_encryption()->mutable_recipients(0)->set_recipient_key_id(device_key_->public_key().key_id());
    m.mutable_encryption()->mutable_recipients()->DeleteSubrange(1, 1);
  });
  expect_refused(testing::install_command("c2", relabelled, clock_.now_ms()), v1::ERROR_KEY_UNWRAP_FAILED);
}

TEST_F(EncryptedEngineTest, AnUnknownEncryptionSchemeIsRefusedByName) {
  const TestArtifact future = resigned(artifact_, [](v1::Manifest& m) {
    m.mutable_encryption()->set_scheme(static_cast<v1::EncryptionScheme>(7));
  });
  expect_refused(testing::install_command("c1", future, clock_.now_ms()), v1::ERROR_UNSUPPORTED_ENCRYPTION);
}

TEST_F(EncryptedEngineTest, AChunkWhoseTagFailsIsNeverWrittenAndNothingIsActivated) {
  ArtifactOptions o;
  o.encrypt_for = {device_key_->public_key()};
  o.broken_tag_chunk = 4;
  o.seed = 13;
  const TestArtifact broken = make_artifact(key_, o);
  server_.artifact = &broken;
  send(testing::install_command("c1", broken, clock_.now_ms()));
  run_to_completion();
  const auto& last = device().transport().progress.back();
  EXPECT_EQ(last.phase(), v1::PHASE_FAILED);
  EXPECT_EQ(last.error(), v1::ERROR_CHUNK_DECRYPT_FAILED) << v1::ErrorCode_Name(last.error());
  EXPECT_NE(last.error_detail().find("chunk 4"), std::string::npos) << last.error_detail();
  EXPECT_EQ(server_.requested[4], 1) << "a chunk matching its signed hash is not asked for again";
  EXPECT_EQ(device().boot_env()["FOTA_TRIAL"], "");
  EXPECT_EQ(device().booted_slot(), "a");
  // Chunk 4's bytes never reached the slot: the slot holds neither its plaintext nor its ciphertext.
  const std::string slot = device().slot_content("b");
  EXPECT_EQ(slot.find(broken.image.substr(4 * 1024, 1024)), std::string::npos);
  EXPECT_EQ(slot.find(broken.stored.substr(4 * (1024 + 16), 512)), std::string::npos);
}

TEST_F(EncryptedEngineTest, ACiphertextByteFlippedInTransitFailsTheHashAndIsFetchedAgain) {
  server_.corrupt[3] = 1;
  send(testing::install_command("c1", artifact_, clock_.now_ms()));
  run_to_completion();
  EXPECT_EQ(device().transport().progress.back().phase(), v1::PHASE_COMMITTED);
  EXPECT_EQ(server_.requested[3], 2);
  EXPECT_TRUE(device().slot_content("b") == artifact_.image);
}

TEST_F(EncryptedEngineTest, APowerCutResumesTheEncryptedDownloadWithoutRefetching) {
  config_.initial_window = 2;
  config_.adaptive_window = false;
  send(testing::install_command("c1", artifact_, clock_.now_ms()));
  auto& requests = device().transport().chunk_requests;
  while (device().engine().stats().chunks_verified < 5 && !requests.empty()) {
    auto request = requests.front();
    requests.pop_front();
    for (auto& c : server_.answer(request))
      device().run(device().engine().on_chunk(std::move(c), clock_.now_ms()), clock_.now_ms());
  }
  ASSERT_GE(device().engine().stats().chunks_verified, 5U);
  device().power_off();  // the content key in memory is gone; the restart unwraps it again
  run_to_completion();
  EXPECT_EQ(device().transport().progress.back().phase(), v1::PHASE_COMMITTED)
      << device().transport().progress.back().error_detail();
  EXPECT_TRUE(device().slot_content("b") == artifact_.image);
  int refetched = 0;
  for (const auto& [index, count] : server_.requested) refetched += count - 1;
  EXPECT_LE(refetched, 2) << "only chunks in flight at the cut may be fetched again";
}

TEST_F(EncryptedEngineTest, TheContentKeyIsNeverStoredInTheJournal) {
  send(testing::install_command("c1", artifact_, clock_.now_ms()));
  const std::string key = device_key_->unwrap_content_key(artifact_.manifest.encryption()).value();
  const std::string journal = device().engine().record().SerializeAsString();
  EXPECT_EQ(journal.find(key), std::string::npos);
  run_to_completion();
  for (const auto& entry : std::filesystem::recursive_directory_iterator(dir_.path())) {
    if (!entry.is_regular_file()) continue;
    std::ifstream in(entry.path(), std::ios::binary);
    const std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    EXPECT_EQ(content.find(key), std::string::npos) << entry.path();
  }
}

}  // namespace
}  // namespace fota::client

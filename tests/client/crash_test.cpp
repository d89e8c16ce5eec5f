// SPDX-License-Identifier: Apache-2.0
// Power cut at every side effect of a complete update, a failing update and a rollback:
// the device must always boot a valid image and end committed or reverted.
#include <gtest/gtest.h>

#include <string>
#include <tuple>

#include "fota/client/runtime.hpp"
#include "fota/testing/broker.hpp"
#include "fota/testing/clock.hpp"
#include "sim_device.hpp"

namespace fota::client {
namespace {

using testing::ChunkServer;
using testing::SimDevice;
using testing::TestArtifact;

// Parameters: the health check passes; the manifest has a hash table (41 chunks of 1 KiB: two
// hash chunks) rather than inline chunk hashes (7 chunks); the artifact is encrypted for the
// device's key (docs/SECURITY.md, "Encrypted artifacts": the content key is unwrapped again after
// every power cut, the journal is the same).
class CrashPointTest : public ::testing::TestWithParam<std::tuple<bool, bool, bool>> {
 protected:
  CrashPointTest()
      : key_(std::move(common::Ed25519PrivateKey::generate()).value()),
        device_key_(
            std::make_shared<const common::X25519PrivateKey>(common::X25519PrivateKey::generate().value())),
        crypto_(trust(), testing::command_keys(), device_key_) {
    testing::ArtifactOptions o;
    if (encrypted()) o.encrypt_for = {device_key_->public_key()};
    o.security_counter = 1;  // equal to the factory counter, so rollback is allowed
    o.size = (hash_table() ? 40 : 6) * 1024 + 10;
    artifact_ = testing::make_artifact(key_, o);
    EXPECT_EQ(artifact_.manifest.hash_table_sha256_size() > 0, hash_table());
  }
  // At most 4 chunks in flight, so at most 4 chunks answered but not yet journaled at a cut.
  static EngineConfig config() {
    EngineConfig c = SimDevice::default_config();
    c.max_window = 4;
    return c;
  }
  static bool healthy_param() { return std::get<0>(GetParam()); }
  static bool hash_table() { return std::get<1>(GetParam()); }
  static bool encrypted() { return std::get<2>(GetParam()); }
  common::TrustStore trust() {
    common::TrustStore t;
    t.add(key_.public_key());
    return t;
  }

  struct Outcome {
    int side_effects = 0;
    bool cut = false;
    std::string final_slot;
    v1::Phase final_phase = v1::PHASE_UNSPECIFIED;
    std::map<std::uint32_t, int> requested;
  };

  // Runs `command` to its end; cuts power after `cut_at` side effects (< 0: never). Checks the
  // booted image at every power-on.
  Outcome run(SimDevice& device, const v1::Command& command, int cut_at, bool healthy) {
    ChunkServer server(&artifact_);
    Outcome outcome;
    device.healthy = healthy;
    while (!device.running()) device.power_on(clock_.now_ms());
    device.side_effects_executed = 0;
    device.cut_after_side_effects = cut_at;
    device.cut_happened = false;
    device.run(device.engine().on_command(testing::signed_command(command), clock_.now_ms()),
               clock_.now_ms());
    for (int round = 0; round < 50; ++round) {
      if (device.running()) testing::serve_chunks(device, server, clock_.now_ms());
      if (device.running()) {
        if (device.engine().state() == EngineState::kIdle) break;
        clock_.advance(std::chrono::milliseconds(1500));
        device.run(device.engine().on_tick(clock_.now_ms()), clock_.now_ms());
      }
      if (!device.running() && device.power_on(clock_.now_ms())) {
        check_booted_image(device);
        // The orchestrator is level-triggered: a command lost to the power cut (never
        // journaled) is sent again, with a fresh id.
        if (device.engine().state() == EngineState::kIdle &&
            device.engine().record().last_command_id().rfind(command.command_id(), 0) != 0) {
          v1::Command again = command;
          again.set_command_id(command.command_id() + "-resent-" + std::to_string(round));
          device.run(device.engine().on_command(testing::signed_command(again), clock_.now_ms()),
                     clock_.now_ms());
        }
      }
    }
    EXPECT_TRUE(device.running() && device.engine().state() == EngineState::kIdle);
    EXPECT_FALSE(device.transport().progress.empty());
    if (!device.running() || device.transport().progress.empty()) return outcome;
    outcome.side_effects = device.side_effects_executed;
    outcome.cut = device.cut_happened;
    outcome.final_slot = device.booted_slot();
    outcome.final_phase = device.transport().progress.back().phase();
    outcome.requested = server.requested;
    return outcome;
  }

  void check_booted_image(SimDevice& device) {
    const std::string content = device.slot_content(device.booted_slot());
    EXPECT_TRUE(content == factory_ || content == artifact_.image)
        << "booted slot '" << device.booted_slot() << "' holds an unverified image (" << content.size()
        << " bytes)";
  }

  fota::testing::TempDir dir_;
  fota::testing::ManualClock clock_;
  common::Ed25519PrivateKey key_;
  std::shared_ptr<const common::X25519PrivateKey> device_key_;
  OpenSslEngineCrypto crypto_;
  TestArtifact artifact_;
  std::string factory_ = testing::make_image(7000, 1);
};

TEST_P(CrashPointTest, UpdateSurvivesPowerCutAtEveryStep) {
  const bool healthy = healthy_param();
  // A clean run counts the side effects.
  int total = 0;
  {
    SimDevice device(dir_.path() / "clean", crypto_, factory_, config());
    const Outcome clean =
        run(device, testing::install_command("c1", artifact_, clock_.now_ms()), -1, healthy);
    EXPECT_EQ(clean.final_phase, healthy ? v1::PHASE_COMMITTED : v1::PHASE_ROLLED_BACK);
    total = clean.side_effects;
  }
  ASSERT_GT(total, 20);
  for (int cut = 1; cut <= total; ++cut) {
    SCOPED_TRACE("power cut after side effect " + std::to_string(cut) + " of " + std::to_string(total));
    SimDevice device(dir_.path() / ("cut-" + std::to_string(cut)), crypto_, factory_, config());
    const Outcome o = run(device, testing::install_command("c1", artifact_, clock_.now_ms()), cut, healthy);
    EXPECT_TRUE(o.cut);
    if (healthy) {
      EXPECT_EQ(o.final_phase, v1::PHASE_COMMITTED);
      EXPECT_EQ(o.final_slot, "b");
      EXPECT_TRUE(device.slot_content("b") == artifact_.image);
    } else {
      EXPECT_EQ(o.final_phase, v1::PHASE_ROLLED_BACK);
      EXPECT_EQ(o.final_slot, "a");
      EXPECT_TRUE(device.slot_content("a") == factory_);
    }
    // Only a chunk whose write was not yet journaled may be fetched twice. Hash chunks are not
    // journaled: one may be fetched again after the cut.
    const common::ChunkSpace space = common::ChunkSpace::of(artifact_.manifest);
    int refetched = 0;
    for (const auto& [index, count] : o.requested) {
      if (space.is_hash_chunk(index)) {
        EXPECT_LE(count, 2) << "hash chunk " << index;
      } else {
        refetched += count - 1;
      }
    }
    EXPECT_LE(refetched, 4) << "verified chunks were fetched again";
  }
}

TEST_P(CrashPointTest, RollbackSurvivesPowerCutAtEveryStep) {
  const bool healthy = healthy_param();
  auto prepare = [&](const std::string& name) {
    auto device = std::make_unique<SimDevice>(dir_.path() / name, crypto_, factory_, config());
    const Outcome o = run(*device, testing::install_command("c1", artifact_, clock_.now_ms()), -1, true);
    EXPECT_EQ(o.final_phase, v1::PHASE_COMMITTED);
    return device;
  };
  int total = 0;
  {
    auto device = prepare("rb-clean");
    const Outcome o = run(*device, testing::rollback_command("r1", clock_.now_ms()), -1, healthy);
    EXPECT_EQ(o.final_phase, healthy ? v1::PHASE_ROLLED_BACK : v1::PHASE_FAILED);
    total = o.side_effects;
  }
  ASSERT_GT(total, 3);
  for (int cut = 1; cut <= total; ++cut) {
    SCOPED_TRACE("power cut after side effect " + std::to_string(cut) + " of " + std::to_string(total));
    auto device = prepare("rb-cut-" + std::to_string(cut));
    const Outcome o = run(*device, testing::rollback_command("r1", clock_.now_ms()), cut, healthy);
    EXPECT_TRUE(o.cut);
    EXPECT_EQ(o.final_phase, healthy ? v1::PHASE_ROLLED_BACK : v1::PHASE_FAILED);
    EXPECT_EQ(o.final_slot, healthy ? "a" : "b");
  }
}

std::string crash_point_name(const ::testing::TestParamInfo<std::tuple<bool, bool, bool>>& param_info) {
  return std::string(std::get<0>(param_info.param) ? "Healthy" : "HealthCheckFails") +
         (std::get<1>(param_info.param) ? "HashTable" : "InlineHashes") +
         (std::get<2>(param_info.param) ? "Encrypted" : "");
}
INSTANTIATE_TEST_SUITE_P(HealthAndHashForm, CrashPointTest,
                         ::testing::Combine(::testing::Values(true, false), ::testing::Values(false, true),
                                            ::testing::Values(false)),
                         crash_point_name);
// Encrypted artifacts, healthy: the cuts during the download are the ones encryption touches.
INSTANTIATE_TEST_SUITE_P(Encrypted, CrashPointTest,
                         ::testing::Combine(::testing::Values(true), ::testing::Values(false, true),
                                            ::testing::Values(true)),
                         crash_point_name);

}  // namespace
}  // namespace fota::client

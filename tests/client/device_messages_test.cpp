// SPDX-License-Identifier: Apache-2.0
// What both MQTT adapters share (device_messages.hpp), without a broker: inbound dispatch and its
// refusals, presence payloads, retained channels.
#include <gtest/gtest.h>

#include <cstdint>
#include <string>

#include "fota/client/device_messages.hpp"
#include "fota/common/codec.hpp"
#include "fota/testing/broker.hpp"
#include "fota/testing/clock.hpp"
#include "sim_device.hpp"

namespace fota::client {
namespace {

using common::Channel;
using common::Errc;

class DispatchTest : public ::testing::Test {
 protected:
  DispatchTest()
      : key_(std::move(common::Ed25519PrivateKey::generate()).value()),
        crypto_(trust_with(key_), testing::command_keys()),
        artifact_(testing::make_artifact(key_)),
        device_(dir_.path() / "dev", crypto_, testing::make_image(5000, 1)),
        id_(std::move(common::DeviceId::parse(testing::kDeviceId)).value()) {
    device_.power_on(clock_.now_ms());
  }

  static common::TrustStore trust_with(const common::Ed25519PrivateKey& key) {
    common::TrustStore trust;
    trust.add(key.public_key());
    return trust;
  }

  common::Result<Actions> dispatch(const std::string& topic, const std::string& payload) {
    return dispatch_device_message(device_.engine(), topics_, id_, topic, payload, clock_.now_ms());
  }

  fota::testing::TempDir dir_;
  fota::testing::ManualClock clock_;
  common::Ed25519PrivateKey key_;
  OpenSslEngineCrypto crypto_;
  testing::TestArtifact artifact_;
  testing::SimDevice device_;
  common::DeviceId id_;
  common::TopicScheme topics_;
};

TEST_F(DispatchTest, ACommandOnTheDevicesCommandTopicReachesTheEngine) {
  const auto command = testing::install_command("c1", artifact_, clock_.now_ms());
  auto actions = dispatch(topics_.device_topic(id_, Channel::kCommand), testing::signed_command(command));
  ASSERT_TRUE(actions.ok()) << actions.error().to_string();
  device_.run(std::move(actions).value(), clock_.now_ms());
  EXPECT_EQ(device_.engine().state(), EngineState::kDownloading);
}

TEST_F(DispatchTest, RefusalsLeaveTheEngineAlone) {
  const std::string command =
      testing::signed_command(testing::install_command("c1", artifact_, clock_.now_ms()));
  const auto other = std::move(common::DeviceId::parse("dev-0002")).value();
  struct Case {
    const char* name;
    std::string topic;
    std::string payload;
    Errc code;
  };
  const Case cases[] = {
      {"another device's command topic", topics_.device_topic(other, Channel::kCommand), command,
       Errc::kInvalidArgument},
      {"not a fota topic", "elsewhere/command", command, Errc::kInvalidArgument},
      {"a channel devices only publish to", topics_.device_topic(id_, Channel::kProgress), command,
       Errc::kInvalidArgument},
      {"a chunk that does not parse", topics_.device_topic(id_, Channel::kChunk), "\xff\xff\xff garbage",
       Errc::kMalformed},
  };
  for (const Case& c : cases) {
    auto actions = dispatch(c.topic, c.payload);
    ASSERT_FALSE(actions.ok()) << c.name;
    EXPECT_EQ(actions.error().code, c.code) << c.name << ": " << actions.error().to_string();
    EXPECT_EQ(device_.engine().state(), EngineState::kIdle) << c.name;
  }
}

// Command payloads go to the engine whole: it checks the signature before it reads anything, so
// garbage, an oversized payload and an unsigned command are each logged there and change nothing.
TEST_F(DispatchTest, CommandPayloadsThatDoNotVerifyAreLoggedByTheEngineAndChangeNothing) {
  const struct {
    const char* name;
    std::string payload;
    const char* says;
  } cases[] = {
      {"a command that does not parse", "\xff\xff\xff garbage", "is not a valid fota.v1.Command"},
      {"a command over the size cap", std::string(common::kMaxCommandBytes + 1, 'x'), "exceeds the limit"},
      {"an unsigned command", common::encode(testing::install_command("c1", artifact_, clock_.now_ms())),
       "command is not signed"},
  };
  std::uint64_t refused = 0;
  for (const auto& c : cases) {
    auto actions = dispatch(topics_.device_topic(id_, Channel::kCommand), c.payload);
    ASSERT_TRUE(actions.ok()) << c.name << ": " << actions.error().to_string();
    ASSERT_EQ(actions->size(), 1u) << c.name;
    const auto* log = std::get_if<action::Log>(&actions->front());
    ASSERT_NE(log, nullptr) << c.name;
    EXPECT_NE(log->message.find(c.says), std::string::npos) << c.name << ": " << log->message;
    EXPECT_EQ(device_.engine().state(), EngineState::kIdle) << c.name;
    EXPECT_EQ(device_.engine().stats().commands_unverified, ++refused) << c.name;
  }
}

TEST(PresenceTest, EncodesOnlineAndTheOfflineWillWithoutATimestamp) {
  const auto id = std::move(common::DeviceId::parse(testing::kDeviceId)).value();
  auto online =
      common::decode<v1::Presence>(encode_presence(id, true, 1234, "1.2.3"), common::kMaxPresenceBytes);
  ASSERT_TRUE(online.ok());
  EXPECT_EQ(online->device_id(), testing::kDeviceId);
  EXPECT_TRUE(online->online());
  EXPECT_EQ(online->timestamp_ms(), 1234);
  EXPECT_EQ(online->client_version(), "1.2.3");
  auto will = common::decode<v1::Presence>(encode_presence(id, false, 0, "1.2.3"), common::kMaxPresenceBytes);
  ASSERT_TRUE(will.ok());
  EXPECT_FALSE(will->online());
  EXPECT_EQ(will->timestamp_ms(), 0);
}

TEST(PresenceTest, InventoryAndPresenceAreTheRetainedChannels) {
  for (Channel c : {Channel::kInventory, Channel::kPresence}) EXPECT_TRUE(is_retained_channel(c));
  for (Channel c : {Channel::kProgress, Channel::kChunkRequest, Channel::kLog})
    EXPECT_FALSE(is_retained_channel(c));
}

TEST(PresenceTest, EveryChannelIsAtLeastOnce) {
  // A device's own channels and its subscriptions: a QoS 0 hop would lose chunk requests and
  // chunks to a timeout each (issue 16: fota-sim used QoS 0 for both, the agent 1).
  for (Channel c : common::kAllChannels) EXPECT_EQ(channel_qos(c), 1) << common::channel_suffix(c);
}

}  // namespace
}  // namespace fota::client

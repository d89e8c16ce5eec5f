// SPDX-License-Identifier: Apache-2.0
// DeviceAgent over a recording DeviceLink, in virtual time: what every transport gets for free
// (subscriptions and presence on connect, LogBatch, SetLogLevel, nothing sent while offline).
#include "fota/client/device_agent.hpp"

#include <gtest/gtest.h>

#include <deque>
#include <string>
#include <utility>
#include <vector>

#include "fota/client/device_messages.hpp"
#include "fota/common/codec.hpp"
#include "sim_device.hpp"

namespace fota::client {
namespace {

using common::Channel;
using testing::MemoryInstaller;
using testing::MemoryJournal;
using testing::Trace;

class RecordingLink : public DeviceLink {
 public:
  common::Status publish(const OutboundMessage& message) override {
    published.push_back(message);
    return common::ok_status();
  }
  common::Status subscribe(const std::string& topic, int qos) override {
    subscribed.emplace_back(topic, qos);
    return common::ok_status();
  }
  std::vector<OutboundMessage> published;
  std::vector<std::pair<std::string, int>> subscribed;
};

class DeviceAgentTest : public ::testing::Test {
 protected:
  DeviceAgentTest()
      : crypto_(common::TrustStore{}, testing::command_keys()),
        installer_(trace_, crypto_),
        journal_(trace_) {
    DeviceAgentConfig config;
    config.engine = testing::SimDevice::default_config();
    config.log_batch_entries = 3;
    config.log_flush_interval_ms = 1000;
    auto agent = DeviceAgent::create(config, installer_, journal_, crypto_, link_, {});
    EXPECT_TRUE(agent.ok()) << agent.error().to_string();
    agent_ = std::move(agent).value();
    EXPECT_TRUE(agent_->start(now_).ok());
    topics_ = agent_->topics();
  }

  std::string topic(Channel channel) const { return topics_.device_topic(agent_->device(), channel); }

  std::vector<v1::LogEntry> log_entries() const {
    std::vector<v1::LogEntry> entries;
    for (const auto& m : link_.published) {
      if (m.topic != topic(Channel::kLog)) continue;
      auto batch = common::decode<v1::LogBatch>(m.payload, 1 << 20);
      EXPECT_TRUE(batch.ok());
      entries.insert(entries.end(), batch->entries().begin(), batch->entries().end());
    }
    return entries;
  }

  void send_command(v1::Command command) {
    command.set_device_id(testing::kDeviceId);
    command.set_issued_at_ms(now_);
    if (command.expires_at_ms() == 0) command.set_expires_at_ms(now_ + 60'000);
    agent_->on_message(topic(Channel::kCommand), testing::signed_command(command), now_);
  }

  std::int64_t now_ = 1'700'000'000'000;
  Trace trace_;
  OpenSslEngineCrypto crypto_;
  MemoryInstaller installer_;
  MemoryJournal journal_;
  RecordingLink link_;
  std::unique_ptr<DeviceAgent> agent_;
  common::TopicScheme topics_;
};

TEST_F(DeviceAgentTest, ConnectSubscribesThenAnnouncesPresenceAndInventory) {
  EXPECT_TRUE(link_.published.empty()) << "nothing leaves before the first connect";
  agent_->on_connected(now_);
  ASSERT_EQ(link_.subscribed.size(), 2U);
  EXPECT_EQ(link_.subscribed[0], std::make_pair(topic(Channel::kCommand), 1));
  EXPECT_EQ(link_.subscribed[1], std::make_pair(topic(Channel::kChunk), 1));
  ASSERT_GE(link_.published.size(), 2U);
  EXPECT_EQ(link_.published[0].topic, topic(Channel::kPresence));
  EXPECT_TRUE(link_.published[0].retain);
  v1::Presence presence;
  ASSERT_TRUE(presence.ParseFromString(link_.published[0].payload));
  EXPECT_TRUE(presence.online());
  EXPECT_EQ(link_.published[1].topic, topic(Channel::kInventory));
  EXPECT_TRUE(link_.published[1].retain);

  // Every message at its channel's QoS (1: chunk requests too), the will as well.
  for (const auto& m : link_.published) EXPECT_EQ(m.qos, 1) << m.topic;

  const OutboundMessage will = agent_->last_will();
  EXPECT_EQ(will.topic, topic(Channel::kPresence));
  EXPECT_EQ(will.qos, channel_qos(Channel::kPresence));
  EXPECT_TRUE(will.retain);
  ASSERT_TRUE(presence.ParseFromString(will.payload));
  EXPECT_FALSE(presence.online());
}

TEST_F(DeviceAgentTest, ActionHooksSeeEachActionAndCanStopTheRuntimeLikeAPowerCut) {
  std::vector<std::string> seen;
  DeviceAgent::Hooks hooks;
  hooks.before_action = [&](const Action& action, const std::deque<Action>&) {
    seen.push_back("before " + std::string(action_name(action)));
    // Power goes just before the inventory would leave.
    return !std::holds_alternative<action::PublishInventory>(action);
  };
  hooks.after_action = [&](const Action& action) {
    seen.push_back("after " + std::string(action_name(action)));
    return true;
  };
  RecordingLink link;
  MemoryInstaller installer(trace_, crypto_);  // a device of its own, with no journal yet
  MemoryJournal journal(trace_);
  DeviceAgentConfig config;
  config.engine = testing::SimDevice::default_config();
  auto agent = DeviceAgent::create(config, installer, journal, crypto_, link, std::move(hooks));
  ASSERT_TRUE(agent.ok()) << agent.error().to_string();
  ASSERT_TRUE((*agent)->start(now_).ok());
  EXPECT_FALSE((*agent)->finished());
  ASSERT_FALSE(seen.empty()) << "starting the engine runs actions (the journal's first record)";
  EXPECT_EQ(seen.front().rfind("before ", 0), 0U);
  (*agent)->on_connected(now_);
  EXPECT_EQ(seen.back(), "before PublishInventory");
  EXPECT_TRUE((*agent)->finished()) << "a hook that says stop stops the runtime";
  for (const auto& m : link.published) EXPECT_NE(m.topic, topic(Channel::kInventory));
  EXPECT_EQ((*agent)->next_deadline_ms(), UpdateEngine::kNoDeadline);
  EXPECT_EQ((*agent)->inventory(now_).device_id(), testing::kDeviceId);
}

TEST_F(DeviceAgentTest, LogsAreBatchedAndSetLogLevelMovesTheThreshold) {
  agent_->on_connected(now_);
  agent_->log(v1::LOG_LEVEL_DEBUG, "below the default level", "app", now_);
  agent_->log(v1::LOG_LEVEL_INFO, "first", "app", now_);
  EXPECT_EQ(agent_->next_deadline_ms(), now_ + 1000) << "the oldest entry waits log_flush_interval_ms";
  agent_->on_tick(now_ + 999);
  EXPECT_TRUE(log_entries().empty());
  agent_->on_tick(now_ + 1000);
  ASSERT_EQ(log_entries().size(), 1U);
  EXPECT_EQ(log_entries()[0].message(), "first");

  v1::Command command;
  command.set_command_id("log-1");
  command.mutable_set_log_level()->set_level(v1::LOG_LEVEL_DEBUG);
  send_command(command);
  EXPECT_EQ(agent_->log_level(), v1::LOG_LEVEL_DEBUG);
  // A full batch (log_batch_entries) is due at once.
  for (int i = 0; i < 3; ++i) agent_->log(v1::LOG_LEVEL_DEBUG, "debug " + std::to_string(i), "app", now_);
  EXPECT_LE(agent_->next_deadline_ms(), now_);
  agent_->on_tick(now_);
  ASSERT_EQ(log_entries().size(), 4U);
  EXPECT_EQ(log_entries()[3].message(), "debug 2");
}

TEST_F(DeviceAgentTest, TheEngineWarningsReachTheFleetLog) {
  agent_->on_connected(now_);
  v1::Command expired;
  expired.set_command_id("old");
  expired.set_expires_at_ms(now_ - 24 * 3600 * 1000);
  expired.mutable_cancel();
  send_command(expired);
  agent_->on_tick(now_ + 1000);
  const auto entries = log_entries();
  ASSERT_FALSE(entries.empty());
  EXPECT_EQ(entries[0].source(), "fota-client");
  EXPECT_EQ(entries[0].level(), v1::LOG_LEVEL_WARN);
  EXPECT_NE(entries[0].message().find("old"), std::string::npos) << entries[0].message();
}

TEST_F(DeviceAgentTest, NothingIsSentWhileDisconnectedAndTheQueueIsBounded) {
  agent_->on_connected(now_);
  agent_->on_disconnected(now_);
  link_.published.clear();
  for (int i = 0; i < 1005; ++i) agent_->log(v1::LOG_LEVEL_WARN, "offline " + std::to_string(i), "app", now_);
  EXPECT_EQ(agent_->next_deadline_ms(), UpdateEngine::kNoDeadline) << "no log flush while offline";
  agent_->on_tick(now_ + 10'000);
  EXPECT_TRUE(link_.published.empty());
  agent_->on_connected(now_ + 10'000);
  agent_->on_tick(now_ + 10'000);
  std::uint64_t dropped = 0;
  for (const auto& m : link_.published) {
    if (m.topic != topic(Channel::kLog)) continue;
    auto batch = common::decode<v1::LogBatch>(m.payload, 1 << 20);
    ASSERT_TRUE(batch.ok());
    dropped += batch->dropped();
  }
  EXPECT_EQ(dropped, 5U) << "log_queue_limit is 1000: the 5 oldest were dropped and counted";
  EXPECT_EQ(log_entries().front().message(), "offline 5");
}

}  // namespace
}  // namespace fota::client

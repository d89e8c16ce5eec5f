// SPDX-License-Identifier: Apache-2.0
#include <gtest/gtest.h>

#include "fota/common/breach_action.hpp"
#include "fota/common/topics.hpp"

namespace fota::common {
namespace {

TEST(DeviceId, AcceptsAllowedCharacters) {
  const std::string longest(64, 'x');
  for (const std::string& id : {std::string("dev-1"), std::string("A"), std::string("gw_01.eu"), longest}) {
    EXPECT_TRUE(DeviceId::parse(id).ok()) << id;
  }
}

TEST(DeviceId, RefusesBadIds) {
  const std::string too_long(65, 'x');
  for (std::string_view id :
       {std::string_view(""), std::string_view("+"), std::string_view("#"), std::string_view("a/b"),
        std::string_view("dev+1"), std::string_view("dev#"), std::string_view(too_long),
        std::string_view("d\xc3\xa9v"), std::string_view("a b"), std::string_view("-lead"),
        std::string_view(".."), std::string_view("$SYS"), std::string_view("a\0b", 3)}) {
    auto parsed = DeviceId::parse(id);
    EXPECT_FALSE(parsed.ok()) << "accepted: " << id;
    if (!parsed.ok()) {
      EXPECT_EQ(parsed.error().code, Errc::kInvalidArgument);
      EXPECT_FALSE(parsed.error().message.empty());
    }
  }
}

TEST(TopicScheme, BuildsAndParsesEveryChannel) {
  TopicScheme scheme;
  auto id = DeviceId::parse("dev-7").value();
  for (Channel channel : kAllChannels) {
    std::string topic = scheme.device_topic(id, channel);
    EXPECT_EQ(topic.rfind("fota/v1/dev/dev-7/", 0), 0u) << topic;
    auto parsed = scheme.parse(topic);
    ASSERT_TRUE(parsed.ok()) << parsed.error().message;
    EXPECT_EQ(parsed->device, id);
    EXPECT_EQ(parsed->channel, channel);
  }
  EXPECT_EQ(scheme.device_topic(id, Channel::kChunkRequest), "fota/v1/dev/dev-7/chunk/req");
  EXPECT_EQ(scheme.shared_filter(Channel::kProgress), "$share/fota-orchestrator/fota/v1/dev/+/progress");
  EXPECT_EQ(scheme.all_devices_filter(Channel::kInventory), "fota/v1/dev/+/inventory");
  EXPECT_EQ(scheme.broker_stats_topic(), "fota/v1/broker/stats");
}

TEST(TopicScheme, ParseRefusesForeignAndMalformedTopics) {
  TopicScheme scheme;
  for (const char* topic :
       {"other/v1/dev/a/cmd", "fota/v1/dev/a", "fota/v1/dev/+/cmd", "fota/v1/dev/#",
        "fota/v1/dev/a/cmd/extra", "fota/v1/dev//cmd", "fota/v1/dev/a/unknown", "fota/v1/dev/"}) {
    EXPECT_FALSE(scheme.parse(topic).ok()) << topic;
  }
}

TEST(TopicScheme, CustomPrefix) {
  auto scheme = TopicScheme::create("acme/fleet");
  ASSERT_TRUE(scheme.ok());
  auto id = DeviceId::parse("x1").value();
  EXPECT_EQ(scheme->device_topic(id, Channel::kCommand), "acme/fleet/dev/x1/cmd");
  EXPECT_TRUE(scheme->in_namespace("acme/fleet/dev/x1/cmd"));
  EXPECT_FALSE(scheme->in_namespace("acme/fleetx/dev/x1/cmd"));
  for (const char* bad : {"", "/a", "a/", "a/+/b", "#", "$SYS", "a//b"}) {
    EXPECT_FALSE(TopicScheme::create(bad).ok()) << bad;
  }
}

}  // namespace
}  // namespace fota::common

namespace fota::common {
namespace {

TEST(BreachActionTest, NamesRoundTripAndNothingElseParses) {
  for (const BreachAction action : {BreachAction::kPause, BreachAction::kAbort, BreachAction::kRollback})
    EXPECT_EQ(parse_breach_action(breach_action_name(action)), action);
  EXPECT_EQ(breach_action_name(BreachAction::kRollback), "rollback");
  EXPECT_FALSE(parse_breach_action("Pause"));  // exact names; callers lower-case if they accept any case
  EXPECT_FALSE(parse_breach_action("halt"));
  EXPECT_FALSE(parse_breach_action(""));
}

}  // namespace
}  // namespace fota::common

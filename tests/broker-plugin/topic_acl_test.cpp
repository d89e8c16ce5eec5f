// SPDX-License-Identifier: Apache-2.0
#include "fota/plugin/topic_acl.hpp"

#include <gtest/gtest.h>

namespace fota::plugin {
namespace {

using common::Role;

struct AclCase {
  Role role;
  const char* cn;
  const char* topic;
  bool expected;
};

std::ostream& operator<<(std::ostream& out, const AclCase& c) {
  return out << common::role_name(c.role) << " " << c.cn << " " << c.topic << " -> " << c.expected;
}

class SubscribeAcl : public ::testing::TestWithParam<AclCase> {};
TEST_P(SubscribeAcl, Decides) {
  TopicAcl acl{common::TopicScheme()};
  const auto& c = GetParam();
  EXPECT_EQ(acl.may_subscribe(c.role, c.cn, c.topic), c.expected);
}

INSTANTIATE_TEST_SUITE_P(
    Table, SubscribeAcl,
    ::testing::Values(
        // device: exactly its own cmd and chunk topics
        AclCase{Role::kDevice, "dev-1", "fota/v1/dev/dev-1/cmd", true},
        AclCase{Role::kDevice, "dev-1", "fota/v1/dev/dev-1/chunk", true},
        AclCase{Role::kDevice, "dev-1", "fota/v1/dev/dev-2/cmd", false},
        AclCase{Role::kDevice, "dev-1", "fota/v1/dev/+/cmd", false},
        AclCase{Role::kDevice, "dev-1", "fota/v1/dev/dev-1/#", false},
        AclCase{Role::kDevice, "dev-1", "fota/v1/dev/dev-1/+", false},
        AclCase{Role::kDevice, "dev-1", "#", false}, AclCase{Role::kDevice, "dev-1", "fota/#", false},
        AclCase{Role::kDevice, "dev-1", "fota/v1/dev/dev-1/progress", false},
        AclCase{Role::kDevice, "dev-1", "fota/v1/dev/dev-1/chunk/req", false},
        AclCase{Role::kDevice, "dev-1", "$share/g/fota/v1/dev/dev-1/cmd", false},
        AclCase{Role::kDevice, "dev-1", "fota/v1/broker/stats", false},
        AclCase{Role::kDevice, "dev-1", "$SYS/#", false},
        // orchestrator: reports of any device, shared or not, and the stats topic
        AclCase{Role::kOrchestrator, "orch", "fota/v1/dev/+/progress", true},
        AclCase{Role::kOrchestrator, "orch", "$share/fota-orchestrator/fota/v1/dev/+/inventory", true},
        AclCase{Role::kOrchestrator, "orch", "$share/fota-orchestrator/fota/v1/dev/+/chunk/req", true},
        AclCase{Role::kOrchestrator, "orch", "fota/v1/dev/dev-9/log", true},
        AclCase{Role::kOrchestrator, "orch", "fota/v1/dev/+/presence", true},
        AclCase{Role::kOrchestrator, "orch", "fota/v1/broker/stats", true},
        AclCase{Role::kOrchestrator, "orch", "fota/v1/dev/+/cmd", false},
        AclCase{Role::kOrchestrator, "orch", "fota/v1/dev/+/#", false},
        AclCase{Role::kOrchestrator, "orch", "fota/v1/dev/+/+", false},
        AclCase{Role::kOrchestrator, "orch", "#", false},
        AclCase{Role::kOrchestrator, "orch", "$share//fota/v1/dev/+/progress", false},
        AclCase{Role::kOrchestrator, "orch", "$share/g", false},
        AclCase{Role::kOrchestrator, "orch", "other/v1/dev/+/progress", false},
        // observer: reads the same as the orchestrator
        AclCase{Role::kObserver, "obs", "fota/v1/dev/+/progress", true},
        AclCase{Role::kObserver, "obs", "fota/v1/broker/stats", true},
        AclCase{Role::kObserver, "obs", "fota/v1/dev/+/cmd", false},
        // other roles: nothing
        AclCase{Role::kOperator, "op", "fota/v1/dev/+/progress", false},
        AclCase{Role::kBroker, "broker", "fota/v1/broker/stats", false}));

class PublishAcl : public ::testing::TestWithParam<AclCase> {};
TEST_P(PublishAcl, Decides) {
  TopicAcl acl{common::TopicScheme()};
  const auto& c = GetParam();
  EXPECT_EQ(acl.publishable(c.role, c.cn, c.topic).has_value(), c.expected);
}

INSTANTIATE_TEST_SUITE_P(
    Table, PublishAcl,
    ::testing::Values(AclCase{Role::kDevice, "dev-1", "fota/v1/dev/dev-1/inventory", true},
                      AclCase{Role::kDevice, "dev-1", "fota/v1/dev/dev-1/progress", true},
                      AclCase{Role::kDevice, "dev-1", "fota/v1/dev/dev-1/log", true},
                      AclCase{Role::kDevice, "dev-1", "fota/v1/dev/dev-1/presence", true},
                      AclCase{Role::kDevice, "dev-1", "fota/v1/dev/dev-1/chunk/req", true},
                      AclCase{Role::kDevice, "dev-1", "fota/v1/dev/dev-1/cmd", false},
                      AclCase{Role::kDevice, "dev-1", "fota/v1/dev/dev-1/chunk", false},
                      AclCase{Role::kDevice, "dev-1", "fota/v1/dev/dev-2/progress", false},
                      AclCase{Role::kDevice, "dev-1", "fota/v1/dev/dev-1/other", false},
                      AclCase{Role::kDevice, "dev-1", "fota/v1/broker/stats", false},
                      AclCase{Role::kDevice, "dev-1", "elsewhere", false},
                      AclCase{Role::kOrchestrator, "orch", "fota/v1/dev/dev-1/cmd", true},
                      AclCase{Role::kOrchestrator, "orch", "fota/v1/dev/dev-2/chunk", true},
                      AclCase{Role::kOrchestrator, "orch", "fota/v1/dev/dev-1/progress", false},
                      AclCase{Role::kOrchestrator, "orch", "fota/v1/broker/stats", false},
                      AclCase{Role::kObserver, "obs", "fota/v1/dev/dev-1/cmd", false},
                      AclCase{Role::kObserver, "obs", "fota/v1/dev/dev-1/progress", false}));

class ReceiveAcl : public ::testing::TestWithParam<AclCase> {};
TEST_P(ReceiveAcl, Decides) {
  TopicAcl acl{common::TopicScheme()};
  const auto& c = GetParam();
  EXPECT_EQ(acl.may_receive(c.role, c.cn, c.topic), c.expected);
}

INSTANTIATE_TEST_SUITE_P(
    Table, ReceiveAcl,
    ::testing::Values(AclCase{Role::kDevice, "dev-1", "fota/v1/dev/dev-1/cmd", true},
                      AclCase{Role::kDevice, "dev-1", "fota/v1/dev/dev-1/chunk", true},
                      AclCase{Role::kDevice, "dev-1", "fota/v1/dev/dev-2/cmd", false},
                      AclCase{Role::kDevice, "dev-1", "fota/v1/dev/dev-1/progress", false},
                      AclCase{Role::kDevice, "dev-1", "fota/v1/broker/stats", false},
                      AclCase{Role::kOrchestrator, "orch", "fota/v1/dev/dev-1/progress", true},
                      AclCase{Role::kOrchestrator, "orch", "fota/v1/broker/stats", true},
                      AclCase{Role::kOrchestrator, "orch", "fota/v1/dev/dev-1/cmd", false},
                      AclCase{Role::kObserver, "obs", "fota/v1/dev/dev-1/presence", true},
                      AclCase{Role::kObserver, "obs", "fota/v1/dev/dev-1/chunk", false}));

TEST(TopicAcl, SplitAgreesWithTheTopicScheme) {
  const common::TopicScheme scheme;
  TopicAcl acl{scheme};
  for (const char* topic : {"fota/v1/dev/d-1/cmd", "fota/v1/dev/d-1/chunk/req", "fota/v1/dev/d-1/chunk",
                            "fota/v1/dev/d/inventory", "fota/v1/dev/-d/cmd", "fota/v1/dev//cmd",
                            "fota/v1/dev/d", "fota/v1/dev/d/", "fota/v1/dev/d/cmd/x", "fota/v1/dev/d+/cmd",
                            "fota/v2/dev/d/cmd", "fota/v1/devx/d/cmd", "fota/v1/broker/stats", ""}) {
    const auto parsed = scheme.parse(topic);
    const auto split = acl.split(topic);
    ASSERT_EQ(parsed.ok(), split.has_value()) << topic;
    if (split) {
      EXPECT_EQ(split->device, parsed->device.str()) << topic;
      EXPECT_EQ(split->channel, parsed->channel) << topic;
    }
  }
  const std::string long_id(65, 'a');
  EXPECT_FALSE(acl.split("fota/v1/dev/" + long_id + "/cmd"));
  EXPECT_TRUE(acl.split("fota/v1/dev/" + long_id.substr(1) + "/cmd"));
}

TEST(TopicAcl, FollowsAConfiguredPrefix) {
  TopicAcl acl{common::TopicScheme::create("acme/fleet").value()};
  EXPECT_TRUE(acl.may_subscribe(Role::kDevice, "d", "acme/fleet/dev/d/cmd"));
  EXPECT_FALSE(acl.may_subscribe(Role::kDevice, "d", "fota/v1/dev/d/cmd"));
  EXPECT_TRUE(acl.may_subscribe(Role::kOrchestrator, "o", "acme/fleet/broker/stats"));
}

}  // namespace
}  // namespace fota::plugin

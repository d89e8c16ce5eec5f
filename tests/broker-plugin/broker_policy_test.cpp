// SPDX-License-Identifier: Apache-2.0
#include "fota/plugin/broker_policy.hpp"

#include <gtest/gtest.h>
#include <spdlog/sinks/null_sink.h>

#include <map>

#include "fota/common/codec.hpp"
#include "fota/testing/clock.hpp"

namespace fota::plugin {
namespace {

using namespace std::chrono_literals;
using common::Role;

constexpr ConnectionId kConn1 = 1;
constexpr ConnectionId kConn2 = 2;
const std::string kArtifact = "0123456789abcdef0123456789abcdef";

common::PeerIdentity identity(const std::string& cn, Role role, const std::string& serial = "0A1B") {
  return common::PeerIdentity{cn, role, serial};
}

// Chunk i of the fake artifact is `chunk_size` copies of the letter 'a' + i % 26; the last
// chunk is shorter.
class FakeChunkSource final : public common::ChunkSource {
 public:
  std::uint32_t chunks = 10;
  std::size_t chunk_size = 1024;
  mutable int reads = 0;
  bool fail_reads = false;

  common::Result<std::uint32_t> chunk_count(const std::string& artifact_id) const override {
    if (artifact_id != kArtifact) return common::Error(common::Errc::kNotFound, "no such artifact");
    return chunks;
  }
  common::Status read_chunk(const std::string& artifact_id, std::uint32_t index,
                            std::string& out) const override {
    ++reads;
    if (artifact_id != kArtifact) return common::Error(common::Errc::kNotFound, "no such artifact");
    if (index >= chunks) return common::Error(common::Errc::kInvalidArgument, "past the end");
    if (fail_reads) return common::Error(common::Errc::kIo, "disk on fire");
    out.assign(index + 1 == chunks ? chunk_size / 2 : chunk_size, static_cast<char>('a' + index % 26));
    return common::ok_status();
  }
};

class BrokerPolicyTest : public ::testing::Test {
 protected:
  void make(PluginOptions options = {}, DenyList deny = {}) {
    policy_ = std::make_unique<BrokerPolicy>(
        std::move(options), std::move(deny), &chunks_,
        std::make_shared<spdlog::logger>("test", std::make_shared<spdlog::sinks::null_sink_st>()),
        clock_.now_ms());
  }
  Decision connect(ConnectionId conn, const std::string& client_id, const common::PeerIdentity& id,
                   const std::string& address = "127.0.0.1") {
    return policy_->on_connect(conn, client_id, id, address, clock_.now_ms());
  }
  void disconnect(ConnectionId conn, const std::string& client_id) {
    policy_->on_disconnect(conn, client_id, clock_.now_ms());
  }
  Decision publish(ConnectionId conn, const std::string& client_id, const std::string& topic,
                   const std::string& payload, bool retain = false) {
    return policy_->on_publish(conn, client_id, topic, payload, retain, clock_.now_ms());
  }
  static std::string progress(const std::string& device, std::size_t detail_bytes = 0) {
    v1::Progress p;
    p.set_device_id(device);
    p.set_phase(v1::PHASE_DOWNLOADING);
    p.set_error_detail(std::string(detail_bytes, 'x'));
    return common::encode(p);
  }
  static std::string chunk_request(const std::string& device, const std::string& artifact,
                                   std::vector<std::pair<std::uint32_t, std::uint32_t>> ranges,
                                   std::string bitmap = {}, std::uint32_t bitmap_base = 0) {
    v1::ChunkRequest r;
    r.set_device_id(device);
    r.set_artifact_id(artifact);
    r.set_request_id(77);
    for (auto [first, count] : ranges) {
      auto* range = r.add_ranges();
      range->set_first(first);
      range->set_count(count);
    }
    r.set_bitmap(bitmap);
    r.set_bitmap_base(bitmap_base);
    return common::encode(r);
  }
  static std::string install_command(const std::string& device, const std::string& artifact,
                                     const std::string& command_id = "c-1") {
    v1::Manifest manifest;
    manifest.set_artifact_id(artifact);
    v1::Command command;
    command.set_command_id(command_id);
    command.set_device_id(device);
    command.mutable_install()->mutable_manifest()->set_manifest(manifest.SerializeAsString());
    return common::encode(command);
  }
  // What the orchestrator does before a device downloads: send it a command naming the artifact.
  void send_command(const std::string& device, const std::string& payload) {
    if (!orchestrator_connected_) {
      ASSERT_TRUE(connect(kOrchestratorConn, "orch-1", identity("orch-1", Role::kOrchestrator)).allowed());
      orchestrator_connected_ = true;
    }
    const std::string topic = "fota/v1/dev/" + device + "/cmd";
    ASSERT_TRUE(publish(kOrchestratorConn, "orch-1", topic, payload).allowed());
    policy_->on_message(kOrchestratorConn, "orch-1", topic, payload, clock_.now_ms());
  }
  void grant(const std::string& device, const std::string& artifact) {
    send_command(device, install_command(device, artifact));
  }
  MessageOutcome request_chunks(const std::string& device, const std::string& payload) {
    const std::string topic = "fota/v1/dev/" + device + "/chunk/req";
    EXPECT_TRUE(publish(kConn1, device, topic, payload).allowed());
    return policy_->on_message(kConn1, device, topic, payload, clock_.now_ms());
  }
  static std::vector<v1::ChunkData> decode_replies(const MessageOutcome& outcome) {
    std::vector<v1::ChunkData> out;
    for (const auto& reply : outcome.replies) {
      auto chunk = common::decode<v1::ChunkData>(reply.payload, common::kMaxChunkDataBytes);
      EXPECT_TRUE(chunk);
      out.push_back(*chunk);
    }
    return out;
  }

  static constexpr ConnectionId kOrchestratorConn = 99;
  bool orchestrator_connected_ = false;
  testing::ManualClock clock_;
  FakeChunkSource chunks_;
  std::unique_ptr<BrokerPolicy> policy_;
};

TEST_F(BrokerPolicyTest, AdmitsDeviceOrchestratorAndObserverWhoseCnIsTheClientId) {
  make();
  EXPECT_TRUE(connect(kConn1, "dev-1", identity("dev-1", Role::kDevice)).allowed());
  EXPECT_TRUE(connect(kConn2, "orch-1", identity("orch-1", Role::kOrchestrator)).allowed());
  EXPECT_TRUE(connect(3, "obs-1", identity("obs-1", Role::kObserver)).allowed());
  EXPECT_EQ(policy_->stats().connections_refused(), 0u);
}

TEST_F(BrokerPolicyTest, RefusesConnectWithoutCertificate) {
  make();
  const auto d = policy_->on_connect(kConn1, "dev-1", common::Error(common::Errc::kPermissionDenied, "none"),
                                     "127.0.0.1", clock_.now_ms());
  EXPECT_EQ(d.refusal, Refusal::kNoCertificate);
  EXPECT_EQ(policy_->stats().connections_refused(), 1u);
}

TEST_F(BrokerPolicyTest, RefusesClientIdThatIsNotTheCn) {
  make();
  const auto d = connect(kConn1, "dev-2", identity("dev-1", Role::kDevice));
  EXPECT_EQ(d.refusal, Refusal::kClientIdMismatch);
  EXPECT_NE(d.reason.find("dev-1"), std::string::npos);
  // The spoofer got no session: its publishes are refused as unknown.
  EXPECT_EQ(publish(kConn1, "dev-2", "fota/v1/dev/dev-2/progress", progress("dev-2")).refusal,
            Refusal::kUnknownClient);
}

TEST_F(BrokerPolicyTest, RefusesRolesWithNoBusinessOnMqtt) {
  make();
  EXPECT_EQ(connect(kConn1, "op", identity("op", Role::kOperator)).refusal, Refusal::kRoleNotAllowed);
  // A broker certificate only as a listed edge broker (plugin_opt_edge_brokers).
  EXPECT_EQ(connect(kConn2, "broker", identity("broker", Role::kBroker)).refusal, Refusal::kRoleNotAllowed);
}

TEST_F(BrokerPolicyTest, RefusesRevokedIdsAndSerials) {
  DenyList deny;
  deny.add_identity("dev-bad");
  ASSERT_TRUE(deny.add_serial("DEAD01"));
  make({}, deny);
  EXPECT_EQ(connect(kConn1, "dev-bad", identity("dev-bad", Role::kDevice)).refusal, Refusal::kRevoked);
  EXPECT_EQ(connect(kConn2, "dev-2", identity("dev-2", Role::kDevice, "dead01")).refusal, Refusal::kRevoked);
  EXPECT_TRUE(connect(3, "dev-3", identity("dev-3", Role::kDevice, "DEAD02")).allowed());
  EXPECT_EQ(policy_->stats().revoked_refused(), 2u);
  EXPECT_EQ(policy_->stats().connections_refused(), 2u);
}

TEST_F(BrokerPolicyTest, NewDenyListNamesConnectedClientsToDisconnect) {
  make();
  ASSERT_TRUE(connect(kConn1, "dev-1", identity("dev-1", Role::kDevice, "01")).allowed());
  ASSERT_TRUE(connect(kConn2, "dev-2", identity("dev-2", Role::kDevice, "02")).allowed());
  ASSERT_TRUE(connect(3, "dev-3", identity("dev-3", Role::kDevice, "03")).allowed());
  disconnect(3, "dev-3");
  auto list = DenyList::parse("dev-1\nserial:02\ndev-3\n");
  ASSERT_TRUE(list);
  auto revoked = policy_->replace_deny_list(std::move(list).value());
  std::sort(revoked.begin(), revoked.end());
  EXPECT_EQ(revoked, (std::vector<std::string>{"dev-1", "dev-2"}));  // dev-3 is offline already
  EXPECT_EQ(connect(4, "dev-1", identity("dev-1", Role::kDevice, "01")).refusal, Refusal::kRevoked);
}

TEST_F(BrokerPolicyTest, DeviceSubscribesOnlyToItsOwnCommandsAndChunks) {
  make();
  ASSERT_TRUE(connect(kConn1, "dev-1", identity("dev-1", Role::kDevice)).allowed());
  const auto now = clock_.now_ms();
  EXPECT_TRUE(policy_->on_subscribe(kConn1, "dev-1", "fota/v1/dev/dev-1/cmd", now).allowed());
  EXPECT_TRUE(policy_->on_subscribe(kConn1, "dev-1", "fota/v1/dev/dev-1/chunk", now).allowed());
  EXPECT_EQ(policy_->on_subscribe(kConn1, "dev-1", "fota/v1/dev/dev-2/cmd", now).refusal,
            Refusal::kAclDenied);
  EXPECT_EQ(policy_->on_subscribe(kConn1, "dev-1", "fota/v1/dev/+/cmd", now).refusal, Refusal::kAclDenied);
  EXPECT_EQ(policy_->on_subscribe(kConn1, "dev-1", "#", now).refusal, Refusal::kAclDenied);
  EXPECT_EQ(policy_->stats().acl_denials(), 3u);
}

TEST_F(BrokerPolicyTest, DevicePublishesOnlyItsOwnReports) {
  make();
  ASSERT_TRUE(connect(kConn1, "dev-1", identity("dev-1", Role::kDevice)).allowed());
  EXPECT_TRUE(publish(kConn1, "dev-1", "fota/v1/dev/dev-1/progress", progress("dev-1")).allowed());
  // Another device's progress, even with a matching payload.
  EXPECT_EQ(publish(kConn1, "dev-1", "fota/v1/dev/dev-2/progress", progress("dev-2")).refusal,
            Refusal::kAclDenied);
  // A command: only the orchestrator sends those.
  v1::Command command;
  command.set_device_id("dev-1");
  command.mutable_cancel();
  EXPECT_EQ(publish(kConn1, "dev-1", "fota/v1/dev/dev-1/cmd", common::encode(command)).refusal,
            Refusal::kAclDenied);
  // Retained progress would be replayed to every new subscriber.
  EXPECT_EQ(publish(kConn1, "dev-1", "fota/v1/dev/dev-1/progress", progress("dev-1"), true).refusal,
            Refusal::kAclDenied);
  v1::Presence presence;
  presence.set_device_id("dev-1");
  presence.set_online(true);
  EXPECT_TRUE(
      publish(kConn1, "dev-1", "fota/v1/dev/dev-1/presence", common::encode(presence), true).allowed());
}

TEST_F(BrokerPolicyTest, RefusesMalformedOversizedAndMisaddressedPayloads) {
  make();
  ASSERT_TRUE(connect(kConn1, "dev-1", identity("dev-1", Role::kDevice)).allowed());
  const std::string topic = "fota/v1/dev/dev-1/progress";
  auto malformed = publish(kConn1, "dev-1", topic, std::string("\xff\xff\xff\xff\x0f", 5));
  EXPECT_EQ(malformed.refusal, Refusal::kInvalidPayload);
  auto oversized = publish(kConn1, "dev-1", topic, progress("dev-1", common::kMaxProgressBytes));
  EXPECT_EQ(oversized.refusal, Refusal::kInvalidPayload);
  EXPECT_NE(oversized.reason.find("exceeds"), std::string::npos) << oversized.reason;
  auto misaddressed = publish(kConn1, "dev-1", topic, progress("dev-2"));
  EXPECT_EQ(misaddressed.refusal, Refusal::kInvalidPayload);
  EXPECT_NE(misaddressed.reason.find("dev-2"), std::string::npos) << misaddressed.reason;
  EXPECT_EQ(policy_->stats().invalid_payloads(), 3u);
}

TEST_F(BrokerPolicyTest, OrchestratorSendsCommandsAndChunksAndReadsReports) {
  make();
  ASSERT_TRUE(connect(kConn1, "orch", identity("orch", Role::kOrchestrator)).allowed());
  v1::Command command;
  command.set_device_id("dev-9");
  command.mutable_report_inventory();
  EXPECT_TRUE(publish(kConn1, "orch", "fota/v1/dev/dev-9/cmd", common::encode(command)).allowed());
  command.set_device_id("dev-8");
  EXPECT_EQ(publish(kConn1, "orch", "fota/v1/dev/dev-9/cmd", common::encode(command)).refusal,
            Refusal::kInvalidPayload);
  v1::ChunkData chunk;
  chunk.set_artifact_id(kArtifact);
  chunk.set_data(std::string(4096, 'z'));
  EXPECT_TRUE(publish(kConn1, "orch", "fota/v1/dev/dev-9/chunk", common::encode(chunk)).allowed());
  EXPECT_EQ(publish(kConn1, "orch", "fota/v1/dev/dev-9/progress", progress("dev-9")).refusal,
            Refusal::kAclDenied);
  EXPECT_TRUE(
      policy_->on_subscribe(kConn1, "orch", "$share/fota-orchestrator/fota/v1/dev/+/progress", 0).allowed());
  EXPECT_TRUE(policy_->on_deliver("orch", "fota/v1/dev/dev-9/progress").allowed());
  EXPECT_FALSE(policy_->on_deliver("orch", "fota/v1/dev/dev-9/cmd").allowed());
}

TEST_F(BrokerPolicyTest, ObserverCannotPublish) {
  make();
  ASSERT_TRUE(connect(kConn1, "obs", identity("obs", Role::kObserver)).allowed());
  v1::Command command;
  command.set_device_id("dev-9");
  EXPECT_EQ(publish(kConn1, "obs", "fota/v1/dev/dev-9/cmd", common::encode(command)).refusal,
            Refusal::kAclDenied);
  EXPECT_TRUE(policy_->on_subscribe(kConn1, "obs", "fota/v1/broker/stats", 0).allowed());
}

TEST_F(BrokerPolicyTest, RateLimitsMessagesAndRefillsOverTime) {
  PluginOptions options;
  options.device_messages = RateLimit{2, 5};
  options.abuse_refusals = 1000;
  make(options);
  ASSERT_TRUE(connect(kConn1, "dev-1", identity("dev-1", Role::kDevice)).allowed());
  const std::string topic = "fota/v1/dev/dev-1/progress";
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(publish(kConn1, "dev-1", topic, progress("dev-1")).allowed()) << i;
  EXPECT_EQ(publish(kConn1, "dev-1", topic, progress("dev-1")).refusal, Refusal::kRateLimited);
  clock_.advance(500ms);  // one token back at 2/s
  EXPECT_TRUE(publish(kConn1, "dev-1", topic, progress("dev-1")).allowed());
  EXPECT_EQ(publish(kConn1, "dev-1", topic, progress("dev-1")).refusal, Refusal::kRateLimited);
  EXPECT_EQ(policy_->stats().rate_limited(), 2u);
}

TEST_F(BrokerPolicyTest, RateLimitsBytes) {
  PluginOptions options;
  options.device_bytes = RateLimit{100, 300};
  make(options);
  ASSERT_TRUE(connect(kConn1, "dev-1", identity("dev-1", Role::kDevice)).allowed());
  const std::string topic = "fota/v1/dev/dev-1/progress";
  const auto payload = progress("dev-1", 200);
  ASSERT_GT(payload.size(), 200u);
  EXPECT_TRUE(publish(kConn1, "dev-1", topic, payload).allowed());
  EXPECT_EQ(publish(kConn1, "dev-1", topic, payload).refusal, Refusal::kRateLimited);
  clock_.advance(3s);
  EXPECT_TRUE(publish(kConn1, "dev-1", topic, payload).allowed());
}

TEST_F(BrokerPolicyTest, PersistentAbuserIsDisconnectedAndBannedForAWhile) {
  PluginOptions options;
  options.device_messages = RateLimit{1, 1};
  options.abuse_refusals = 3;
  options.abuse_window_ms = 10'000;
  options.abuser_ban_ms = 5'000;
  make(options);
  ASSERT_TRUE(connect(kConn1, "dev-1", identity("dev-1", Role::kDevice)).allowed());
  const std::string topic = "fota/v1/dev/dev-1/progress";
  EXPECT_TRUE(publish(kConn1, "dev-1", topic, progress("dev-1")).allowed());
  for (int i = 0; i < 3; ++i) {
    auto d = publish(kConn1, "dev-1", topic, progress("dev-1"));
    EXPECT_EQ(d.refusal, Refusal::kRateLimited);
    EXPECT_FALSE(d.disconnect) << i;
  }
  auto last = publish(kConn1, "dev-1", topic, progress("dev-1"));
  EXPECT_TRUE(last.disconnect);
  EXPECT_EQ(policy_->stats().disconnected_abusers(), 1u);
  // Until the broker has closed it, anything else from the connection is refused too.
  clock_.advance(2s);
  EXPECT_TRUE(publish(kConn1, "dev-1", topic, progress("dev-1")).disconnect);
  disconnect(kConn1, "dev-1");
  EXPECT_EQ(connect(kConn2, "dev-1", identity("dev-1", Role::kDevice)).refusal, Refusal::kBanned);
  clock_.advance(3s);
  ASSERT_TRUE(connect(kConn2, "dev-1", identity("dev-1", Role::kDevice)).allowed());
  EXPECT_TRUE(publish(kConn2, "dev-1", topic, progress("dev-1")).allowed());
}

TEST_F(BrokerPolicyTest, OccasionalRefusalsDoNotMakeAnAbuser) {
  PluginOptions options;
  options.abuse_refusals = 2;
  options.abuse_window_ms = 1'000;
  make(options);
  ASSERT_TRUE(connect(kConn1, "dev-1", identity("dev-1", Role::kDevice)).allowed());
  for (int i = 0; i < 20; ++i) {
    auto d = policy_->on_subscribe(kConn1, "dev-1", "#", clock_.now_ms());
    EXPECT_EQ(d.refusal, Refusal::kAclDenied);
    EXPECT_FALSE(d.disconnect) << i;
    clock_.advance(600ms);
  }
}

TEST_F(BrokerPolicyTest, WillOfADisconnectedDeviceIsStillChecked) {
  PluginOptions options;
  options.device_messages = RateLimit{1, 1};
  make(options);
  ASSERT_TRUE(connect(kConn1, "dev-1", identity("dev-1", Role::kDevice)).allowed());
  ASSERT_TRUE(publish(kConn1, "dev-1", "fota/v1/dev/dev-1/progress", progress("dev-1")).allowed());
  disconnect(kConn1, "dev-1");
  v1::Presence offline;
  offline.set_device_id("dev-1");
  // The broker checks the will after the disconnect: allowed (and not rate limited) ...
  EXPECT_TRUE(
      publish(kConn1, "dev-1", "fota/v1/dev/dev-1/presence", common::encode(offline), true).allowed());
  // ... but a will aimed at another device is not.
  offline.set_device_id("dev-2");
  EXPECT_FALSE(
      publish(kConn1, "dev-1", "fota/v1/dev/dev-2/presence", common::encode(offline), true).allowed());
}

TEST_F(BrokerPolicyTest, QueuesForOfflineSessions) {
  make();
  ASSERT_TRUE(connect(kConn1, "dev-1", identity("dev-1", Role::kDevice)).allowed());
  disconnect(kConn1, "dev-1");
  // A command for a device that is away is queued in its persistent session.
  EXPECT_TRUE(policy_->on_deliver("dev-1", "fota/v1/dev/dev-1/cmd").allowed());
  EXPECT_FALSE(policy_->on_deliver("dev-1", "fota/v1/dev/dev-2/cmd").allowed());
  // A session restored from the broker's persistence before its client reconnected: only the
  // client id's own device topics.
  EXPECT_TRUE(policy_->on_deliver("dev-7", "fota/v1/dev/dev-7/cmd").allowed());
  EXPECT_TRUE(policy_->on_deliver("dev-7", "fota/v1/dev/dev-7/chunk").allowed());
  EXPECT_FALSE(policy_->on_deliver("dev-7", "fota/v1/dev/dev-8/cmd").allowed());
  EXPECT_FALSE(policy_->on_deliver("dev-7", "fota/v1/dev/dev-8/progress").allowed());
  EXPECT_FALSE(policy_->on_deliver("dev-7", "fota/v1/broker/stats").allowed());
}

TEST_F(BrokerPolicyTest, ReconnectKeepsTheNewConnectionWhenTheOldOneDropsLater) {
  make();
  ASSERT_TRUE(connect(kConn1, "dev-1", identity("dev-1", Role::kDevice)).allowed());
  ASSERT_TRUE(connect(kConn2, "dev-1", identity("dev-1", Role::kDevice)).allowed());
  disconnect(kConn1, "dev-1");  // the broker drops the taken-over connection now
  EXPECT_TRUE(policy_->on_subscribe(kConn2, "dev-1", "fota/v1/dev/dev-1/cmd", clock_.now_ms()).allowed());
  EXPECT_EQ(policy_->on_subscribe(kConn1, "dev-1", "fota/v1/dev/dev-1/cmd", clock_.now_ms()).refusal,
            Refusal::kUnknownClient);
}

TEST_F(BrokerPolicyTest, ServesRequestedChunksStraightToTheDevice) {
  make();
  ASSERT_TRUE(connect(kConn1, "dev-1", identity("dev-1", Role::kDevice)).allowed());
  grant("dev-1", kArtifact);
  auto outcome = request_chunks("dev-1", chunk_request("dev-1", kArtifact, {{2, 3}}));
  EXPECT_TRUE(outcome.served);
  auto replies = decode_replies(outcome);
  ASSERT_EQ(replies.size(), 3u);
  for (std::uint32_t i = 0; i < 3; ++i) {
    EXPECT_EQ(outcome.replies[i].topic, "fota/v1/dev/dev-1/chunk");
    EXPECT_EQ(outcome.replies[i].qos, 1);
    EXPECT_FALSE(outcome.replies[i].retain);
    EXPECT_EQ(replies[i].index(), 2 + i);
    EXPECT_EQ(replies[i].status(), v1::CHUNK_STATUS_OK);
    EXPECT_EQ(replies[i].artifact_id(), kArtifact);
    EXPECT_EQ(replies[i].request_id(), 77u);
    EXPECT_EQ(replies[i].data(), std::string(1024, static_cast<char>('a' + 2 + i)));
  }
  EXPECT_EQ(policy_->stats().chunks_served(), 3u);
  EXPECT_EQ(policy_->stats().chunk_bytes_served(), 3u * 1024);
}

TEST_F(BrokerPolicyTest, ServesBitmapRequestsAndMarksIndicesPastTheEnd) {
  make();
  ASSERT_TRUE(connect(kConn1, "dev-1", identity("dev-1", Role::kDevice)).allowed());
  grant("dev-1", kArtifact);
  // Bits 0 and 3 of base 8 -> chunks 8 and 11 (the fake artifact has 10 chunks).
  auto outcome = request_chunks("dev-1", chunk_request("dev-1", kArtifact, {}, std::string(1, '\x09'), 8));
  auto replies = decode_replies(outcome);
  ASSERT_EQ(replies.size(), 2u);
  EXPECT_EQ(replies[0].index(), 8u);
  EXPECT_EQ(replies[0].status(), v1::CHUNK_STATUS_OK);
  EXPECT_EQ(replies[1].index(), 11u);
  EXPECT_EQ(replies[1].status(), v1::CHUNK_STATUS_OUT_OF_RANGE);
  EXPECT_TRUE(replies[1].data().empty());
}

TEST_F(BrokerPolicyTest, BoundsTheWorkOfOneRequest) {
  PluginOptions options;
  options.max_chunks_per_request = 4;
  make(options);
  chunks_.chunks = 1'000'000;
  ASSERT_TRUE(connect(kConn1, "dev-1", identity("dev-1", Role::kDevice)).allowed());
  grant("dev-1", kArtifact);
  auto outcome = request_chunks(
      "dev-1", chunk_request("dev-1", kArtifact, {{0, 4'000'000'000u}, {5, 9}}, std::string(1000, '\xff')));
  EXPECT_EQ(outcome.replies.size(), 4u);
  EXPECT_EQ(chunks_.reads, 4);
}

TEST_F(BrokerPolicyTest, AnswersEachChunkOnceAndNeverWrapsPastTheLastIndex) {
  make();
  ASSERT_TRUE(connect(kConn1, "dev-1", identity("dev-1", Role::kDevice)).allowed());
  grant("dev-1", kArtifact);
  // Chunk 1 twice (ranges, then bitmap bit 1); a range that would wrap past 2^32 - 1 to 0, 1, ...
  auto replies = decode_replies(request_chunks(
      "dev-1", chunk_request("dev-1", kArtifact, {{0, 2}, {4'294'967'295u, 3}}, std::string(1, '\x02'))));
  ASSERT_EQ(replies.size(), 3u);
  EXPECT_EQ(replies[0].index(), 0u);
  EXPECT_EQ(replies[1].index(), 1u);
  EXPECT_EQ(replies[2].index(), 4'294'967'295u);
  EXPECT_EQ(replies[2].status(), v1::CHUNK_STATUS_OUT_OF_RANGE);
  EXPECT_EQ(policy_->stats().chunks_served(), 2u);
  EXPECT_EQ(chunks_.reads, 2);
}

TEST_F(BrokerPolicyTest, UnknownArtifactGoesOnToTheOrchestrator) {
  make();
  ASSERT_TRUE(connect(kConn1, "dev-1", identity("dev-1", Role::kDevice)).allowed());
  grant("dev-1", "ffffffffffffffffffffffffffffffff");
  auto outcome =
      request_chunks("dev-1", chunk_request("dev-1", "ffffffffffffffffffffffffffffffff", {{0, 2}}));
  EXPECT_FALSE(outcome.served);
  EXPECT_TRUE(outcome.replies.empty());
  EXPECT_EQ(policy_->stats().chunk_requests_forwarded(), 1u);
}

TEST_F(BrokerPolicyTest, OtherMessagesAreNotTouched) {
  make();
  ASSERT_TRUE(connect(kConn1, "dev-1", identity("dev-1", Role::kDevice)).allowed());
  auto outcome =
      policy_->on_message(kConn1, "dev-1", "fota/v1/dev/dev-1/progress", progress("dev-1"), clock_.now_ms());
  EXPECT_FALSE(outcome.served);
  EXPECT_EQ(chunks_.reads, 0);
}

TEST_F(BrokerPolicyTest, ChunkByteBudgetAnswersUnavailable) {
  PluginOptions options;
  options.device_chunk_bytes = RateLimit{1024, 2048};
  make(options);
  ASSERT_TRUE(connect(kConn1, "dev-1", identity("dev-1", Role::kDevice)).allowed());
  grant("dev-1", kArtifact);
  auto replies = decode_replies(request_chunks("dev-1", chunk_request("dev-1", kArtifact, {{0, 4}})));
  ASSERT_EQ(replies.size(), 4u);
  EXPECT_EQ(replies[0].status(), v1::CHUNK_STATUS_OK);
  EXPECT_EQ(replies[1].status(), v1::CHUNK_STATUS_OK);
  EXPECT_EQ(replies[2].status(), v1::CHUNK_STATUS_UNAVAILABLE);
  EXPECT_EQ(replies[3].status(), v1::CHUNK_STATUS_UNAVAILABLE);
  clock_.advance(1s);
  replies = decode_replies(request_chunks("dev-1", chunk_request("dev-1", kArtifact, {{2, 1}})));
  ASSERT_EQ(replies.size(), 1u);
  EXPECT_EQ(replies[0].status(), v1::CHUNK_STATUS_OK);
}

TEST_F(BrokerPolicyTest, ReadFailureAnswersUnavailable) {
  make();
  chunks_.fail_reads = true;
  ASSERT_TRUE(connect(kConn1, "dev-1", identity("dev-1", Role::kDevice)).allowed());
  grant("dev-1", kArtifact);
  auto replies = decode_replies(request_chunks("dev-1", chunk_request("dev-1", kArtifact, {{0, 1}})));
  ASSERT_EQ(replies.size(), 1u);
  EXPECT_EQ(replies[0].status(), v1::CHUNK_STATUS_UNAVAILABLE);
}

TEST_F(BrokerPolicyTest, PublishesRetainedStatsEveryInterval) {
  PluginOptions options;
  options.stats_interval_ms = 1000;
  make(options);
  EXPECT_FALSE(policy_->on_tick(clock_.now_ms()).stats);
  EXPECT_EQ(connect(kConn1, "x", identity("y", Role::kDevice)).refusal, Refusal::kClientIdMismatch);
  clock_.advance(1s);
  auto tick = policy_->on_tick(clock_.now_ms());
  ASSERT_TRUE(tick.stats);
  EXPECT_EQ(tick.stats->topic, "fota/v1/broker/stats");
  EXPECT_TRUE(tick.stats->retain);
  auto stats = common::decode<v1::BrokerStats>(tick.stats->payload, 4096);
  ASSERT_TRUE(stats);
  EXPECT_EQ(stats->connections_refused(), 1u);
  EXPECT_EQ(stats->timestamp_ms(), clock_.now_ms());
  EXPECT_FALSE(policy_->on_tick(clock_.now_ms() + 10).stats);
}

// ---------------------------------------------------------------------------------------
// Limits that survive a reconnect (budgets, abuse counts and CONNECT attempts per client id
// and per address), bounded memory.
// ---------------------------------------------------------------------------------------

TEST_F(BrokerPolicyTest, MessageAndByteBudgetsSurviveAReconnect) {
  PluginOptions options;
  options.device_messages = RateLimit{2, 5};
  options.device_bytes = RateLimit{100, 300};
  options.abuse_refusals = 1000;
  make(options);
  const std::string topic = "fota/v1/dev/dev-1/progress";
  ASSERT_TRUE(connect(kConn1, "dev-1", identity("dev-1", Role::kDevice)).allowed());
  const auto big = progress("dev-1", 200);
  EXPECT_TRUE(publish(kConn1, "dev-1", topic, big).allowed());
  for (int i = 0; i < 4; ++i) EXPECT_TRUE(publish(kConn1, "dev-1", topic, progress("dev-1")).allowed()) << i;
  disconnect(kConn1, "dev-1");
  ASSERT_TRUE(connect(kConn2, "dev-1", identity("dev-1", Role::kDevice)).allowed());
  // A fresh connection, the same empty buckets.
  EXPECT_EQ(publish(kConn2, "dev-1", topic, progress("dev-1")).refusal, Refusal::kRateLimited);
  clock_.advance(500ms);  // one message token, 50 bytes back
  EXPECT_EQ(publish(kConn2, "dev-1", topic, big).refusal, Refusal::kRateLimited);
  EXPECT_TRUE(publish(kConn2, "dev-1", topic, progress("dev-1")).allowed());
}

TEST_F(BrokerPolicyTest, ReconnectingEveryFewMessagesCannotBeatTheRateAndEndsInABan) {
  // The attack of issue 17: reconnect every 190 messages, against the default 100/s.
  PluginOptions options;
  options.client_connects = RateLimit{0, 1};  // only the budgets are under test here
  make(options);
  const std::string topic = "fota/v1/dev/dev-1/progress";
  const auto payload = progress("dev-1");
  int allowed = 0;
  bool banned = false;
  ConnectionId conn = 100;
  const std::int64_t start = clock_.now_ms();
  while (clock_.now_ms() - start < 20'000 && !banned) {
    ++conn;
    const auto admitted = connect(conn, "dev-1", identity("dev-1", Role::kDevice));
    if (admitted.refusal == Refusal::kBanned) {
      banned = true;
      break;
    }
    ASSERT_TRUE(admitted.allowed()) << admitted.reason;
    for (int i = 0; i < 190; ++i) {
      clock_.advance(1ms);  // 1,000 messages/s offered
      const auto d = publish(conn, "dev-1", topic, payload);
      if (d.allowed()) ++allowed;
      if (d.disconnect) break;
    }
    disconnect(conn, "dev-1");
  }
  const double seconds = static_cast<double>(clock_.now_ms() - start) / 1000.0;
  // Burst 200, then 100/s: whatever the reconnects.
  EXPECT_LE(allowed, 200 + static_cast<int>(100 * seconds) + 1) << seconds << " s";
  EXPECT_TRUE(banned);
  EXPECT_GE(policy_->stats().disconnected_abusers(), 1u);
}

TEST_F(BrokerPolicyTest, AbuseCountSurvivesAReconnect) {
  PluginOptions options;
  options.abuse_refusals = 3;
  options.abuse_window_ms = 60'000;
  make(options);
  ASSERT_TRUE(connect(kConn1, "dev-1", identity("dev-1", Role::kDevice)).allowed());
  for (int i = 0; i < 3; ++i)
    EXPECT_FALSE(policy_->on_subscribe(kConn1, "dev-1", "#", clock_.now_ms()).disconnect);
  disconnect(kConn1, "dev-1");
  ASSERT_TRUE(connect(kConn2, "dev-1", identity("dev-1", Role::kDevice)).allowed());
  // ACL probing spread over connections is still one client's probing.
  EXPECT_TRUE(policy_->on_subscribe(kConn2, "dev-1", "#", clock_.now_ms()).disconnect);
  disconnect(kConn2, "dev-1");
  EXPECT_EQ(connect(3, "dev-1", identity("dev-1", Role::kDevice)).refusal, Refusal::kBanned);
}

TEST_F(BrokerPolicyTest, ConnectAttemptsAreLimitedPerClientId) {
  PluginOptions options;
  options.client_connects = RateLimit{0.1, 3};
  make(options);
  for (ConnectionId c = 1; c <= 3; ++c) {
    ASSERT_TRUE(connect(c, "dev-1", identity("dev-1", Role::kDevice)).allowed()) << c;
    disconnect(c, "dev-1");
  }
  const auto refused = connect(4, "dev-1", identity("dev-1", Role::kDevice));
  EXPECT_EQ(refused.refusal, Refusal::kConnectRateLimited);
  EXPECT_NE(refused.reason.find("connection attempts for this client id"), std::string::npos)
      << refused.reason;
  EXPECT_NE(refused.reason.find("client_connect_burst"), std::string::npos) << refused.reason;
  EXPECT_EQ(policy_->stats().connects_rate_limited(), 1u);
  // Other ids are not affected; the id gets a new attempt after 1 / 0.1 s.
  EXPECT_TRUE(connect(5, "dev-2", identity("dev-2", Role::kDevice)).allowed());
  clock_.advance(10s);
  EXPECT_TRUE(connect(6, "dev-1", identity("dev-1", Role::kDevice)).allowed());
}

TEST_F(BrokerPolicyTest, SpoofedConnectsDoNotUseUpTheVictimsBudget) {
  PluginOptions options;
  options.client_connects = RateLimit{0.1, 2};
  make(options);
  for (ConnectionId c = 1; c <= 10; ++c) {
    EXPECT_EQ(connect(c, "dev-victim", identity("dev-attacker", Role::kDevice)).refusal,
              Refusal::kClientIdMismatch);
  }
  EXPECT_TRUE(connect(11, "dev-victim", identity("dev-victim", Role::kDevice)).allowed());
}

TEST_F(BrokerPolicyTest, ConnectAttemptsAreLimitedPerSourceAddress) {
  PluginOptions options;
  options.address_connects = RateLimit{1, 3};
  make(options);
  for (int i = 1; i <= 3; ++i) {
    const std::string id = "dev-" + std::to_string(i);
    EXPECT_TRUE(connect(static_cast<ConnectionId>(i), id, identity(id, Role::kDevice), "10.0.0.1").allowed());
  }
  // Every attempt from the address counts, whatever it claims to be.
  const auto refused = connect(4, "dev-4", identity("dev-4", Role::kDevice), "10.0.0.1");
  EXPECT_EQ(refused.refusal, Refusal::kConnectRateLimited);
  EXPECT_NE(refused.reason.find("from 10.0.0.1"), std::string::npos) << refused.reason;
  EXPECT_NE(refused.reason.find("address_connect_burst"), std::string::npos) << refused.reason;
  EXPECT_TRUE(connect(5, "dev-4", identity("dev-4", Role::kDevice), "10.0.0.2").allowed());
  clock_.advance(1s);
  EXPECT_TRUE(connect(6, "dev-5", identity("dev-5", Role::kDevice), "10.0.0.1").allowed());
}

TEST_F(BrokerPolicyTest, StateOfIdleClientsAddressesAndGrantsIsForgotten) {
  PluginOptions options;
  options.client_state_idle_ms = 120'000;
  options.client_connects = RateLimit{1, 10};
  make(options);
  for (int i = 0; i < 1000; ++i) {
    const std::string id = "dev-" + std::to_string(i);
    const auto conn = static_cast<ConnectionId>(1000 + i);
    ASSERT_TRUE(connect(conn, id, identity(id, Role::kDevice),
                        "10.0." + std::to_string(i / 250) + "." + std::to_string(i % 250))
                    .allowed());
    grant(id, kArtifact);
    if (i > 0) disconnect(conn, id);  // dev-0 stays online
  }
  EXPECT_EQ(policy_->tracked_clients(), 1001u);    // and the orchestrator
  EXPECT_EQ(policy_->tracked_addresses(), 1001u);  // and the orchestrator's 127.0.0.1
  EXPECT_EQ(policy_->chunk_grants(), 1000u);
  clock_.advance(60s);
  (void)policy_->on_tick(clock_.now_ms());
  // Addresses refill in 200 s / 20 = 10 s: gone. Clients and grants are kept for two minutes.
  EXPECT_EQ(policy_->tracked_addresses(), 0u);
  EXPECT_EQ(policy_->tracked_clients(), 1001u);
  clock_.advance(61s);
  (void)policy_->on_tick(clock_.now_ms());
  EXPECT_EQ(policy_->tracked_clients(), 2u);  // the two still online
  EXPECT_EQ(policy_->chunk_grants(), 0u);
  // dev-0 is still known and may still do its work.
  EXPECT_TRUE(publish(1000, "dev-0", "fota/v1/dev/dev-0/progress", progress("dev-0")).allowed());
}

// ---------------------------------------------------------------------------------------
// No retained commands or chunks, for any role.
// ---------------------------------------------------------------------------------------

TEST_F(BrokerPolicyTest, NoRoleMayRetainCommandsOrChunks) {
  make();
  ASSERT_TRUE(connect(kConn1, "orch-1", identity("orch-1", Role::kOrchestrator)).allowed());
  ASSERT_TRUE(connect(kConn2, "dev-1", identity("dev-1", Role::kDevice)).allowed());
  const std::string command = install_command("dev-1", kArtifact);
  v1::ChunkData chunk;
  chunk.set_artifact_id(kArtifact);
  const auto retained_command = publish(kConn1, "orch-1", "fota/v1/dev/dev-1/cmd", command, true);
  EXPECT_EQ(retained_command.refusal, Refusal::kAclDenied);
  EXPECT_NE(retained_command.reason.find("may not retain"), std::string::npos) << retained_command.reason;
  EXPECT_EQ(publish(kConn1, "orch-1", "fota/v1/dev/dev-1/chunk", common::encode(chunk), true).refusal,
            Refusal::kAclDenied);
  EXPECT_EQ(publish(kConn2, "dev-1", "fota/v1/dev/dev-1/chunk/req",
                    chunk_request("dev-1", kArtifact, {{0, 1}}), true)
                .refusal,
            Refusal::kAclDenied);
  // Not retained, the same messages pass.
  EXPECT_TRUE(publish(kConn1, "orch-1", "fota/v1/dev/dev-1/cmd", command).allowed());
  EXPECT_TRUE(publish(kConn1, "orch-1", "fota/v1/dev/dev-1/chunk", common::encode(chunk)).allowed());
}

// ---------------------------------------------------------------------------------------
// Chunks only for what a command told the device to fetch.
// ---------------------------------------------------------------------------------------

TEST_F(BrokerPolicyTest, ServesOnlyTheArtifactACommandToldTheDeviceToFetch) {
  make();
  ASSERT_TRUE(connect(kConn1, "dev-1", identity("dev-1", Role::kDevice)).allowed());
  // Never told to fetch anything: nothing served, the request goes on to the orchestrator.
  auto outcome = request_chunks("dev-1", chunk_request("dev-1", kArtifact, {{0, 1}}));
  EXPECT_FALSE(outcome.served);
  EXPECT_TRUE(outcome.replies.empty());
  EXPECT_EQ(policy_->stats().chunk_requests_not_assigned(), 1u);
  EXPECT_EQ(chunks_.reads, 0);

  // Another device's assignment is not this one's.
  grant("dev-2", kArtifact);
  EXPECT_FALSE(request_chunks("dev-1", chunk_request("dev-1", kArtifact, {{0, 1}})).served);

  grant("dev-1", kArtifact);
  EXPECT_TRUE(request_chunks("dev-1", chunk_request("dev-1", kArtifact, {{0, 1}})).served);
  // An inventory request leaves the assignment in place.
  v1::Command inventory;
  inventory.set_command_id("c-2");
  inventory.set_device_id("dev-1");
  inventory.mutable_report_inventory();
  send_command("dev-1", common::encode(inventory));
  EXPECT_TRUE(request_chunks("dev-1", chunk_request("dev-1", kArtifact, {{0, 1}})).served);

  // A cancel ends it.
  v1::Command cancel;
  cancel.set_command_id("c-3");
  cancel.set_device_id("dev-1");
  cancel.mutable_cancel();
  send_command("dev-1", common::encode(cancel));
  EXPECT_FALSE(request_chunks("dev-1", chunk_request("dev-1", kArtifact, {{0, 1}})).served);

  // A rollback to a signed artifact grants that one; a rollback to the previous slot, nothing.
  const std::string older = "00000000000000000000000000000001";
  v1::Manifest manifest;
  manifest.set_artifact_id(older);
  v1::Command rollback;
  rollback.set_command_id("c-4");
  rollback.set_device_id("dev-1");
  rollback.mutable_rollback()->mutable_manifest()->set_manifest(manifest.SerializeAsString());
  send_command("dev-1", common::encode(rollback));
  EXPECT_FALSE(request_chunks("dev-1", chunk_request("dev-1", kArtifact, {{0, 1}})).served);
  EXPECT_EQ(policy_->chunk_grants(), 2u);
  rollback.set_command_id("c-5");
  rollback.mutable_rollback()->clear_manifest();
  send_command("dev-1", common::encode(rollback));
  EXPECT_EQ(policy_->chunk_grants(), 1u);  // dev-2's
  EXPECT_EQ(policy_->stats().chunk_requests_not_assigned(), 4u);
}

TEST_F(BrokerPolicyTest, AfterABrokerRestartRequestsGoToTheOrchestratorUntilTheNextCommand) {
  make();
  ASSERT_TRUE(connect(kConn1, "dev-1", identity("dev-1", Role::kDevice)).allowed());
  grant("dev-1", kArtifact);
  EXPECT_TRUE(request_chunks("dev-1", chunk_request("dev-1", kArtifact, {{0, 1}})).served);
  make();  // the broker restarted: the plugin's memory is gone
  orchestrator_connected_ = false;
  ASSERT_TRUE(connect(kConn1, "dev-1", identity("dev-1", Role::kDevice)).allowed());
  const auto outcome = request_chunks("dev-1", chunk_request("dev-1", kArtifact, {{0, 1}}));
  EXPECT_FALSE(outcome.served);  // forwarded: the orchestrator checks its fleet state
  grant("dev-1", kArtifact);     // a re-sent install command is learned again
  EXPECT_TRUE(request_chunks("dev-1", chunk_request("dev-1", kArtifact, {{0, 1}})).served);
}

// Edge brokers (docs/BROKER_PLUGIN.md, "Edge brokers"), at the core: a broker certificate connects
// only when listed, and then relays reports of any device and receives commands and chunks.
TEST_F(BrokerPolicyTest, AListedEdgeBrokersBridgeRelaysReportsAndReceivesCommandsAndChunksOnly) {
  PluginOptions options;
  options.edge_brokers = {"edge-1"};
  make(options);
  EXPECT_EQ(connect(kConn2, "edge-2", identity("edge-2", Role::kBroker)).refusal, Refusal::kRoleNotAllowed);
  ASSERT_TRUE(connect(kConn1, "edge-1", identity("edge-1", Role::kBroker)).allowed());
  EXPECT_TRUE(publish(kConn1, "edge-1", "fota/v1/dev/dev-7/progress", progress("dev-7")).allowed());
  EXPECT_TRUE(
      publish(kConn1, "edge-1", "fota/v1/dev/dev-8/chunk/req", chunk_request("dev-8", kArtifact, {{0, 1}}))
          .allowed());
  // Still checked: a report must be well formed and name the device of its topic.
  EXPECT_EQ(publish(kConn1, "edge-1", "fota/v1/dev/dev-7/progress", progress("dev-8")).refusal,
            Refusal::kInvalidPayload);
  // Never the orchestrator's side.
  EXPECT_EQ(publish(kConn1, "edge-1", "fota/v1/dev/dev-7/cmd", install_command("dev-7", kArtifact)).refusal,
            Refusal::kAclDenied);
  const auto sub = [&](const std::string& filter) {
    return policy_->on_subscribe(kConn1, "edge-1", filter, clock_.now_ms()).allowed();
  };
  EXPECT_TRUE(sub("fota/v1/dev/+/cmd"));
  EXPECT_TRUE(sub("fota/v1/dev/+/chunk"));
  EXPECT_TRUE(sub("fota/v1/dev/dev-7/cmd"));
  EXPECT_FALSE(sub("fota/v1/dev/+/progress"));
  EXPECT_FALSE(sub("fota/v1/dev/#"));
  EXPECT_FALSE(sub("$share/g/fota/v1/dev/+/cmd"));
  EXPECT_FALSE(sub("fota/v1/broker/stats"));
  EXPECT_TRUE(policy_->on_deliver("edge-1", "fota/v1/dev/dev-7/cmd").allowed());
  EXPECT_FALSE(policy_->on_deliver("edge-1", "fota/v1/dev/dev-7/inventory").allowed());
}

// At the edge: commands that came through the bridge grant chunks, and an artifact the cache lacks
// is asked for once per command; what the cache holds is served here.
TEST_F(BrokerPolicyTest, AtTheEdgeBridgedCommandsGrantChunksAndAskForMissingArtifacts) {
  PluginOptions options;
  options.bridge_client_id = "bridge.edge-1";
  make(options);
  // Nobody may connect with the bridge's id.
  EXPECT_EQ(connect(kConn2, "bridge.edge-1", identity("bridge.edge-1", Role::kDevice)).refusal,
            Refusal::kClientIdMismatch);
  ASSERT_TRUE(connect(kConn1, "dev-1", identity("dev-1", Role::kDevice)).allowed());
  const std::string missing = "fedcba9876543210fedcba9876543210";
  constexpr ConnectionId kBridge = 50;  // Mosquitto's own bridge context: never authenticated here
  auto bridged = [&](const std::string& device, const std::string& artifact) {
    return policy_->on_message(kBridge, "bridge.edge-1", "fota/v1/dev/" + device + "/cmd",
                               install_command(device, artifact), clock_.now_ms());
  };
  auto outcome = bridged("dev-1", missing);
  ASSERT_TRUE(outcome.fetch_artifact.has_value());
  EXPECT_EQ(*outcome.fetch_artifact, missing);
  // Not cached yet: the request goes on through the bridge.
  EXPECT_FALSE(request_chunks("dev-1", chunk_request("dev-1", missing, {{0, 1}})).served);
  // An artifact the cache holds is served at the edge, nothing fetched.
  outcome = bridged("dev-1", kArtifact);
  EXPECT_FALSE(outcome.fetch_artifact.has_value());
  EXPECT_TRUE(request_chunks("dev-1", chunk_request("dev-1", kArtifact, {{0, 2}})).served);
  // Another client id without a session teaches nothing.
  outcome = policy_->on_message(kBridge, "bridge.edge-2", "fota/v1/dev/dev-1/cmd",
                                install_command("dev-1", missing), clock_.now_ms());
  EXPECT_FALSE(outcome.fetch_artifact.has_value());
  EXPECT_TRUE(request_chunks("dev-1", chunk_request("dev-1", kArtifact, {{2, 1}})).served);
}

}  // namespace
}  // namespace fota::plugin

// SPDX-License-Identifier: Apache-2.0
// The broker plugin's policy fed a sequence of broker events (policy_script.hpp): connects,
// subscriptions, publishes (chunk requests above all, which the policy answers from an artifact
// in memory), deliveries, disconnects and ticks, with virtual time.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fota/common/topics.hpp"
#include "fota/plugin/broker_policy.hpp"
#include "fuzz_support.hpp"
#include "policy_script.hpp"

namespace {

using namespace fota;

// One artifact of five 1 KiB chunks, as the store would serve it.
class MemoryChunkSource final : public common::ChunkSource {
 public:
  static constexpr std::string_view kArtifactId = "0123456789abcdef0123456789abcdef";
  common::Result<std::uint32_t> chunk_count(const std::string& artifact_id) const override {
    if (artifact_id != kArtifactId) return common::Error(common::Errc::kNotFound, "unknown artifact");
    return std::uint32_t{5};
  }
  common::Status read_chunk(const std::string& artifact_id, std::uint32_t index,
                            std::string& out) const override {
    if (artifact_id != kArtifactId || index >= 5)
      return common::Error(common::Errc::kInvalidArgument, "no chunk");
    out.assign(1024, static_cast<char>('a' + index));
    return common::ok_status();
  }
};

common::Result<common::PeerIdentity> identity_of(std::string_view client) {
  common::PeerIdentity identity;
  identity.common_name = std::string(client);
  identity.role = client == "orchestrator" ? common::Role::kOrchestrator : common::Role::kDevice;
  identity.serial_hex = client == "orchestrator" ? "0A" : "0B";
  return identity;
}

std::string topic_of(const common::TopicScheme& scheme, std::string_view client, std::uint8_t flags,
                     std::string_view& payload) {
  const auto own = common::DeviceId::parse(client == "orchestrator" ? fuzz::kDeviceId : client).value();
  const auto other =
      common::DeviceId::parse(client == fuzz::kOtherDeviceId ? fuzz::kDeviceId : fuzz::kOtherDeviceId)
          .value();
  switch (
      static_cast<fuzz::PolicyTopic>((flags & 0x7f) % static_cast<std::uint8_t>(fuzz::PolicyTopic::kCount))) {
    case fuzz::PolicyTopic::kOwnChunkRequest:
      return scheme.device_topic(own, common::Channel::kChunkRequest);
    case fuzz::PolicyTopic::kOwnProgress:
      return scheme.device_topic(own, common::Channel::kProgress);
    case fuzz::PolicyTopic::kOwnInventory:
      return scheme.device_topic(own, common::Channel::kInventory);
    case fuzz::PolicyTopic::kOtherChunkRequest:
      return scheme.device_topic(other, common::Channel::kChunkRequest);
    case fuzz::PolicyTopic::kOwnCommand:
      return scheme.device_topic(own, common::Channel::kCommand);
    case fuzz::PolicyTopic::kOwnChunk:
      return scheme.device_topic(own, common::Channel::kChunk);
    case fuzz::PolicyTopic::kTopicInPayload:
    case fuzz::PolicyTopic::kCount:
      break;
  }
  const auto end = payload.find('\0');
  std::string topic(payload.substr(0, end));
  payload = end == std::string_view::npos ? std::string_view() : payload.substr(end + 1);
  return topic;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const MemoryChunkSource chunks;
  plugin::PluginOptions options;
  options.stats_interval_ms = 5'000;
  plugin::BrokerPolicy policy(options, plugin::DenyList(), &chunks, fuzz::null_logger(), fuzz::kNowMs);
  const common::TopicScheme& scheme = policy.options().scheme;
  std::int64_t now = fuzz::kNowMs;
  // Each CONNECT gets a fresh handle, as each Mosquitto context has its own address; the broker
  // may report the previous connection's disconnect after the new one (flags bit 0 picks it).
  plugin::ConnectionId next_connection = 1;
  plugin::ConnectionId current[std::size(fuzz::kPolicyClients)] = {};
  plugin::ConnectionId previous[std::size(fuzz::kPolicyClients)] = {};
  std::size_t at = 0;
  while (size - at >= 6) {
    const std::uint8_t* step = data + at;
    const auto op = static_cast<fuzz::PolicyOp>(step[0] % static_cast<std::uint8_t>(fuzz::PolicyOp::kCount));
    const std::size_t index = step[1] % std::size(fuzz::kPolicyClients);
    const std::string_view client = fuzz::kPolicyClients[index];
    const std::uint8_t flags = step[2];
    if (op == fuzz::PolicyOp::kConnect) {
      previous[index] = current[index];
      current[index] = next_connection++;
    }
    const plugin::ConnectionId connection =
        op == fuzz::PolicyOp::kDisconnect && (flags & 1) != 0 ? previous[index] : current[index];
    now += std::int64_t{step[3]} * 100;
    const std::size_t length = std::min<std::size_t>(step[4] | (step[5] << 8), size - at - 6);
    std::string_view payload(reinterpret_cast<const char*>(step + 6), length);
    at += 6 + length;
    switch (op) {
      case fuzz::PolicyOp::kConnect:
        // Two source addresses, so the per-address CONNECT limit is tried too.
        (void)policy.on_connect(connection, client, identity_of(client),
                                (flags & 2) != 0 ? "127.0.0.2" : "127.0.0.1", now);
        break;
      case fuzz::PolicyOp::kSubscribe:
        (void)policy.on_subscribe(connection, client, payload, now);
        break;
      case fuzz::PolicyOp::kPublish: {
        const std::string topic = topic_of(scheme, client, flags, payload);
        if (policy.on_publish(connection, client, topic, payload, (flags & fuzz::kRetainFlag) != 0, now)
                .allowed()) {
          (void)policy.on_message(connection, client, topic, payload, now);
        }
        break;
      }
      case fuzz::PolicyOp::kDeliver: {
        const std::string topic = topic_of(scheme, client, flags, payload);
        (void)policy.on_deliver(client, topic);
        break;
      }
      case fuzz::PolicyOp::kDisconnect:
        policy.on_disconnect(connection, client, now);
        break;
      case fuzz::PolicyOp::kTick:
      case fuzz::PolicyOp::kCount:
        (void)policy.on_tick(now);
        break;
    }
  }
  return 0;
}

// SPDX-License-Identifier: Apache-2.0
// The topic scheme: the only place that builds or parses a fota topic. C++17.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "fota/common/result.hpp"

namespace fota::common {

// A device id that passed validation: 1..64 characters from [A-Za-z0-9._-], starting with a
// letter or digit. The id is the certificate CN and the MQTT client id.
class DeviceId {
 public:
  static constexpr std::size_t kMaxLength = 64;

  static Result<DeviceId> parse(std::string_view text);
  const std::string& str() const noexcept { return id_; }
  bool operator==(const DeviceId& other) const { return id_ == other.id_; }
  bool operator!=(const DeviceId& other) const { return id_ != other.id_; }
  bool operator<(const DeviceId& other) const { return id_ < other.id_; }

 private:
  explicit DeviceId(std::string id) : id_(std::move(id)) {}
  std::string id_;
};

// The per-device channels of docs/PROTOCOL.md.
enum class Channel {
  kCommand,             // .../cmd         orchestrator -> device   Command
  kInventory,           // .../inventory   device -> orchestrator   Inventory (retained)
  kProgress,            // .../progress    device -> orchestrator   Progress
  kLog,                 // .../log         device -> orchestrator   LogBatch
  kPresence,            // .../presence    device -> all            Presence (retained, last will)
  kChunkRequest,        // .../chunk/req   device -> chunk server   ChunkRequest
  kChunk,               // .../chunk       chunk server -> device   ChunkData
  kCertificateRequest,  // .../csr     device -> orchestrator   CertificateRequest
};

inline constexpr Channel kAllChannels[] = {
    Channel::kCommand,  Channel::kInventory,    Channel::kProgress, Channel::kLog,
    Channel::kPresence, Channel::kChunkRequest, Channel::kChunk,    Channel::kCertificateRequest};

// Topic suffix of a channel, e.g. "chunk/req".
std::string_view channel_suffix(Channel channel) noexcept;
// True for the channels a device publishes on (inventory, progress, log, presence, chunk/req, csr).
bool device_publishes(Channel channel) noexcept;

struct ParsedTopic {
  DeviceId device;
  Channel channel;
};

class TopicScheme {
 public:
  static constexpr std::string_view kDefaultPrefix = "fota/v1";
  static constexpr std::string_view kSharedGroup = "fota-orchestrator";

  TopicScheme();  // kDefaultPrefix
  // A prefix is one or more non-empty levels without wildcards, '$' at the start, or
  // leading/trailing '/'.
  static Result<TopicScheme> create(std::string_view prefix);

  const std::string& prefix() const noexcept { return prefix_; }

  // "{prefix}/dev/{id}/{suffix}"
  std::string device_topic(const DeviceId& device, Channel channel) const;
  // "{prefix}/dev/{id}/" - everything of one device starts with this.
  std::string device_root(const DeviceId& device) const;
  // "{prefix}/dev/+/{suffix}" - all devices, one channel.
  std::string all_devices_filter(Channel channel) const;
  // "$share/{group}/{prefix}/dev/+/{suffix}" - MQTT 5 shared subscription.
  std::string shared_filter(Channel channel, std::string_view group = kSharedGroup) const;
  // "{prefix}/broker/stats" - retained BrokerStats from the broker plugin.
  std::string broker_stats_topic() const;

  // Parses a concrete device topic (no wildcards). Errors say which part was wrong.
  Result<ParsedTopic> parse(std::string_view topic) const;
  // True when the topic lies under {prefix}/ at all.
  bool in_namespace(std::string_view topic) const;

 private:
  explicit TopicScheme(std::string prefix) : prefix_(std::move(prefix)) {}
  std::string prefix_;
};

}  // namespace fota::common

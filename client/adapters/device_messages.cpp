// SPDX-License-Identifier: Apache-2.0
#include "fota/client/device_messages.hpp"

#include "fota/common/codec.hpp"

namespace fota::client {

using common::Channel;
using common::Errc;
using common::Error;

std::string encode_presence(const common::DeviceId& device, bool online, std::int64_t now_ms,
                            const std::string& client_version) {
  v1::Presence presence;
  presence.set_device_id(device.str());
  presence.set_online(online);
  if (now_ms != 0) presence.set_timestamp_ms(now_ms);
  presence.set_client_version(client_version);
  return common::encode(presence);
}

bool is_retained_channel(Channel channel) noexcept {
  return channel == Channel::kInventory || channel == Channel::kPresence;
}

int channel_qos(Channel /*channel*/) noexcept { return 1; }

common::Result<Actions> dispatch_device_message(UpdateEngine& engine, const common::TopicScheme& topics,
                                                const common::DeviceId& device, std::string_view topic,
                                                std::string_view payload, std::int64_t now_ms) {
  auto parsed = topics.parse(topic);
  if (!parsed.ok() || parsed->device != device) {
    return Error(Errc::kInvalidArgument, "a message on unexpected topic '" + std::string(topic) + "'");
  }
  if (parsed->channel == Channel::kCommand) {
    // The engine verifies the signature before it decodes anything else of the payload.
    return engine.on_command(payload, now_ms);
  }
  if (parsed->channel == Channel::kChunk) {
    auto chunk = common::decode<v1::ChunkData>(payload, common::kMaxChunkDataBytes);
    if (!chunk.ok()) return chunk.error().with_context("a chunk that does not decode");
    return engine.on_chunk(std::move(chunk).value(), now_ms);
  }
  return Error(Errc::kInvalidArgument, "a message on the device's own '" + std::string(topic) +
                                           "' topic, which devices only publish to");
}

}  // namespace fota::client

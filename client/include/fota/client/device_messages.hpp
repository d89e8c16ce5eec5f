// SPDX-License-Identifier: Apache-2.0
// What every MQTT adapter of the device client does the same way, whatever carries the bytes
// (Paho's MqttDeviceClient, the event loop's MosquittoDeviceClient): presence payloads, which
// channels are retained and turning an inbound message into an engine input. One place, so the two
// adapters cannot drift apart (when to connect is ConnectionSupervisor's, connection_supervisor.hpp).
// C++17.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "fota/client/engine.hpp"
#include "fota/common/result.hpp"
#include "fota/common/topics.hpp"

namespace fota::client {

// The Presence a device publishes retained on connect (online) and leaves as its last will
// (offline; a will has no meaningful timestamp, so pass 0).
std::string encode_presence(const common::DeviceId& device, bool online, std::int64_t now_ms,
                            const std::string& client_version);

// Inventory and presence are published retained, so a server subscribing later sees the latest.
bool is_retained_channel(common::Channel channel) noexcept;

// The QoS a device publishes on, and subscribes to, each of its channels (the last will too): 1,
// at least once, for every one. Every message is idempotent for its receiver (a chunk, report or
// command seen twice changes nothing), while one lost to QoS 0 costs a timeout: a chunk request
// or a chunk the engine waits chunk_timeout_ms for, a report the orchestrator learns only from
// the next inventory. The agent uses it for everything it sends and subscribes to.
int channel_qos(common::Channel channel) noexcept;

// Hands a message delivered on one of the device's own topics to the engine: a command payload
// to on_command (which verifies its signature, then decodes it), a ChunkData decoded within the
// protocol's size limit (common/codec.hpp) to on_chunk. Errors (the engine is not called):
// kInvalidArgument for a topic that is not this device's command or chunk topic, kMalformed /
// kTooLarge for a chunk that does not decode.
// Adapters log these and carry on: bytes from the network never end the client.
common::Result<Actions> dispatch_device_message(UpdateEngine& engine, const common::TopicScheme& topics,
                                                const common::DeviceId& device, std::string_view topic,
                                                std::string_view payload, std::int64_t now_ms);

}  // namespace fota::client

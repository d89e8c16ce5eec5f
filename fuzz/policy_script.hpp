// SPDX-License-Identifier: Apache-2.0
// The input of broker_policy_fuzzer: a script of broker events, so the seed generator can write
// real sessions (connect, subscribe, chunk requests) and the fuzzer can reorder and mutate them.
// A script is a sequence of steps, each a 6-byte header and `length` payload bytes:
//   op, client, flags, advance (x100 ms of virtual time before the step), length (u16 LE).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace fota::fuzz {

enum class PolicyOp : std::uint8_t {
  kConnect,     // client connects with its certificate
  kSubscribe,   // payload = topic filter
  kPublish,     // on_publish, then on_message when allowed (the broker's order)
  kDeliver,     // on_deliver of the chosen topic
  kDisconnect,  // flags bit 0: of the client's previous connection (reported late)
  kTick,
  kCount,
};

// Clients: two devices and the orchestrator (index = client % 3).
inline constexpr std::string_view kPolicyClients[] = {"dev-1", "dev-2", "orchestrator"};

// Topic of a publish or delivery: flags % kTopicCount. kTopicInPayload = the payload is
// "topic\0payload".
enum class PolicyTopic : std::uint8_t {
  kOwnChunkRequest,
  kOwnProgress,
  kOwnInventory,
  kOtherChunkRequest,
  kOwnCommand,
  kOwnChunk,
  kTopicInPayload,
  kCount,
};

// Bit 7 of flags: the publish is retained.
inline constexpr std::uint8_t kRetainFlag = 0x80;

inline std::string policy_step(PolicyOp op, std::uint8_t client, std::uint8_t flags, std::uint8_t advance,
                               std::string_view payload) {
  std::string step;
  step.push_back(static_cast<char>(op));
  step.push_back(static_cast<char>(client));
  step.push_back(static_cast<char>(flags));
  step.push_back(static_cast<char>(advance));
  step.push_back(static_cast<char>(payload.size() & 0xff));
  step.push_back(static_cast<char>((payload.size() >> 8) & 0xff));
  return step.append(payload);
}

}  // namespace fota::fuzz

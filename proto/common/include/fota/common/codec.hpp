// Decoding and encoding of wire messages with size caps and typed errors. C++17.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fota/common/result.hpp"
#include "fota/common/topics.hpp"
#include "fota/v1/fota.pb.h"

namespace fota::common {

// Size caps (bytes of the serialized message) per channel. docs/PROTOCOL.md lists them.
inline constexpr std::size_t kMinChunkSize = 1024;
inline constexpr std::size_t kMaxChunkSize = 1024 * 1024;
inline constexpr std::size_t kDefaultChunkSize = 16 * 1024;
inline constexpr std::size_t kMaxCommandBytes = 4 * 1024 * 1024;  // carries a manifest with chunk hashes
inline constexpr std::size_t kMaxInventoryBytes = 64 * 1024;
inline constexpr std::size_t kMaxProgressBytes = 4 * 1024;
inline constexpr std::size_t kMaxLogBatchBytes = 64 * 1024;
inline constexpr std::size_t kMaxPresenceBytes = 1024;
inline constexpr std::size_t kMaxChunkRequestBytes = 16 * 1024;
inline constexpr std::size_t kMaxChunkDataBytes = kMaxChunkSize + 4096;
inline constexpr std::size_t kSha256Bytes = 32;
inline constexpr std::size_t kEd25519SignatureBytes = 64;
inline constexpr std::size_t kArtifactIdLength = 32;

std::size_t max_message_bytes(Channel channel) noexcept;

// Parses `bytes` as M. kTooLarge when over max_bytes, kMalformed when it does not parse.
template <typename M>
Result<M> decode(std::string_view bytes, std::size_t max_bytes) {
  if (bytes.size() > max_bytes) {
    return Error(Errc::kTooLarge, M().GetTypeName() + " of " + std::to_string(bytes.size()) +
                                      " bytes exceeds the limit of " + std::to_string(max_bytes) + " bytes");
  }
  M message;
  if (!message.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    return Error(Errc::kMalformed,
                 "payload of " + std::to_string(bytes.size()) + " bytes is not a valid " + M().GetTypeName());
  }
  return message;
}

template <typename M>
std::string encode(const M& message) {
  return message.SerializeAsString();
}

// Decodes a message a device published as M: it parses, fits `max_bytes`, and names `device` as
// its device_id (kPermissionDenied otherwise). For callers that use the message afterwards.
template <typename M>
Result<M> decode_device_message(const DeviceId& device, std::string_view bytes, std::size_t max_bytes) {
  auto decoded = decode<M>(bytes, max_bytes);
  if (!decoded) return decoded.error();
  if (decoded->device_id() != device.str()) {
    return Error(Errc::kPermissionDenied, decoded->GetTypeName() + " names device \"" +
                                              decoded->device_id().substr(0, 64) +
                                              "\" but was published for \"" + device.str() + "\"");
  }
  return decoded;
}

// Checks a message a device published: it parses as the channel's type, fits the channel's
// cap, and names `device` as its device_id. The plugin and the orchestrator both call this.
Status validate_device_message(Channel channel, const DeviceId& device, std::string_view bytes);

// True for 32 lowercase hex characters.
bool is_valid_artifact_id(std::string_view id) noexcept;

// Structural checks of a manifest that need no key: id format, sizes, chunk size in
// [kMinChunkSize, kMaxChunkSize], chunk count = ceil(image_size / chunk_size), every hash 32
// bytes, at least one compatible hardware type, a known payload type.
Status check_manifest_structure(const v1::Manifest& manifest);

// Number of chunks and the size of chunk `index` of a manifest.
std::uint32_t chunk_count(std::uint64_t image_size, std::uint32_t chunk_size) noexcept;
std::uint32_t chunk_length(const v1::Manifest& manifest, std::uint32_t index) noexcept;

}  // namespace fota::common

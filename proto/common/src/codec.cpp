#include "fota/common/codec.hpp"

namespace fota::common {
namespace {

template <typename M>
Status check_device_message(const DeviceId& device, std::string_view bytes, std::size_t cap) {
  auto decoded = decode_device_message<M>(device, bytes, cap);
  return decoded ? ok_status() : Status(decoded.error());
}

}  // namespace

std::size_t max_message_bytes(Channel channel) noexcept {
  switch (channel) {
    case Channel::kCommand:
      return kMaxCommandBytes;
    case Channel::kInventory:
      return kMaxInventoryBytes;
    case Channel::kProgress:
      return kMaxProgressBytes;
    case Channel::kLog:
      return kMaxLogBatchBytes;
    case Channel::kPresence:
      return kMaxPresenceBytes;
    case Channel::kChunkRequest:
      return kMaxChunkRequestBytes;
    case Channel::kChunk:
      return kMaxChunkDataBytes;
  }
  return 0;
}

Status validate_device_message(Channel channel, const DeviceId& device, std::string_view bytes) {
  const std::size_t cap = max_message_bytes(channel);
  switch (channel) {
    case Channel::kInventory:
      return check_device_message<v1::Inventory>(device, bytes, cap);
    case Channel::kProgress:
      return check_device_message<v1::Progress>(device, bytes, cap);
    case Channel::kLog:
      return check_device_message<v1::LogBatch>(device, bytes, cap);
    case Channel::kPresence:
      return check_device_message<v1::Presence>(device, bytes, cap);
    case Channel::kChunkRequest:
      return check_device_message<v1::ChunkRequest>(device, bytes, cap);
    case Channel::kCommand:
      return check_device_message<v1::Command>(device, bytes, cap);
    case Channel::kChunk: {
      auto decoded = decode<v1::ChunkData>(bytes, cap);
      return decoded ? ok_status() : Status(decoded.error());
    }
  }
  return Error(Errc::kInternal, "unknown channel");
}

bool is_valid_artifact_id(std::string_view id) noexcept {
  if (id.size() != kArtifactIdLength) return false;
  for (char c : id) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

std::uint32_t chunk_count(std::uint64_t image_size, std::uint32_t chunk_size) noexcept {
  if (chunk_size == 0) return 0;
  return static_cast<std::uint32_t>((image_size + chunk_size - 1) / chunk_size);
}

std::uint32_t chunk_length(const v1::Manifest& manifest, std::uint32_t index) noexcept {
  const std::uint64_t offset = std::uint64_t{index} * manifest.chunk_size();
  if (offset >= manifest.image_size()) return 0;
  const std::uint64_t left = manifest.image_size() - offset;
  return static_cast<std::uint32_t>(left < manifest.chunk_size() ? left : manifest.chunk_size());
}

Status check_manifest_structure(const v1::Manifest& m) {
  auto bad = [](const std::string& what) { return Error(Errc::kMalformed, "manifest: " + what); };
  if (!is_valid_artifact_id(m.artifact_id())) return bad("artifact_id is not 32 lowercase hex characters");
  if (m.version().empty()) return bad("version is empty");
  if (m.compatible_hardware_size() == 0) return bad("lists no compatible hardware type");
  if (m.payload_type() == v1::PAYLOAD_TYPE_UNSPECIFIED || !v1::PayloadType_IsValid(m.payload_type())) {
    return bad("payload type is unspecified or unknown");
  }
  if (m.chunk_size() < kMinChunkSize || m.chunk_size() > kMaxChunkSize) {
    return bad("chunk size " + std::to_string(m.chunk_size()) + " is outside [" +
               std::to_string(kMinChunkSize) + ", " + std::to_string(kMaxChunkSize) + "]");
  }
  if (m.image_sha256().size() != kSha256Bytes) return bad("image_sha256 is not 32 bytes");
  const std::uint64_t expected = chunk_count(m.image_size(), m.chunk_size());
  if (expected != static_cast<std::uint64_t>(m.chunk_sha256_size())) {
    return bad("has " + std::to_string(m.chunk_sha256_size()) + " chunk hashes but an image of " +
               std::to_string(m.image_size()) + " bytes in chunks of " + std::to_string(m.chunk_size()) +
               " needs " + std::to_string(expected));
  }
  for (int i = 0; i < m.chunk_sha256_size(); ++i) {
    if (m.chunk_sha256(i).size() != kSha256Bytes)
      return bad("chunk hash " + std::to_string(i) + " is not 32 bytes");
  }
  return ok_status();
}

}  // namespace fota::common

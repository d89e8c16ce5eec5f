// SPDX-License-Identifier: Apache-2.0
#include "fota/common/codec.hpp"

#include <algorithm>
#include <limits>

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
    case Channel::kCertificateRequest:
      return kMaxCertificateRequestBytes;
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
    case Channel::kCertificateRequest:
      return check_device_message<v1::CertificateRequest>(device, bytes, cap);
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

ChunkSpace::ChunkSpace(std::uint64_t image_size, std::uint32_t chunk_size, bool hash_table,
                       std::uint32_t chunk_overhead) noexcept
    : image_size_(image_size),
      chunk_size_(chunk_size),
      chunk_overhead_(chunk_overhead),
      image_chunks_(chunk_count(image_size, chunk_size)) {
  const std::uint32_t per = hashes_per_hash_chunk();
  if (hash_table && per > 0) hash_chunks_ = image_chunks_ / per + (image_chunks_ % per != 0 ? 1 : 0);
}

ChunkSpace ChunkSpace::of(const v1::Manifest& manifest) noexcept {
  return ChunkSpace(manifest.image_size(), manifest.chunk_size(), manifest.hash_table_sha256_size() > 0,
                    manifest.has_encryption() ? kEncryptedChunkOverhead : 0);
}

bool ChunkSpace::wants_hash_table(std::uint64_t image_size, std::uint32_t chunk_size) noexcept {
  const std::uint32_t chunks = chunk_count(image_size, chunk_size);
  return chunks > std::min<std::uint32_t>(kMaxInlineChunkHashes, chunk_size / kSha256Bytes);
}

std::uint32_t ChunkSpace::total() const noexcept {
  const std::uint64_t sum = std::uint64_t{image_chunks_} + hash_chunks_;
  return sum > std::numeric_limits<std::uint32_t>::max() ? std::numeric_limits<std::uint32_t>::max()
                                                         : static_cast<std::uint32_t>(sum);
}

std::uint32_t ChunkSpace::hash_chunk_index(std::uint32_t image_index) const noexcept {
  const std::uint32_t per = hashes_per_hash_chunk();
  return per == 0 ? 0 : image_index / per;
}

std::size_t ChunkSpace::hash_offset(std::uint32_t image_index) const noexcept {
  const std::uint32_t per = hashes_per_hash_chunk();
  return per == 0 ? 0 : std::size_t{image_index % per} * kSha256Bytes;
}

std::uint64_t ChunkSpace::offset(std::uint32_t index) const noexcept {
  if (index < image_chunks_) return std::uint64_t{index} * (std::uint64_t{chunk_size_} + chunk_overhead_);
  if (!is_hash_chunk(index)) return 0;
  return std::uint64_t{index - image_chunks_} * hashes_per_hash_chunk() * kSha256Bytes;
}

std::uint32_t ChunkSpace::plain_length(std::uint32_t index) const noexcept {
  if (index >= image_chunks_) return 0;
  const std::uint64_t left = image_size_ - std::uint64_t{index} * chunk_size_;
  return static_cast<std::uint32_t>(left < chunk_size_ ? left : chunk_size_);
}

std::uint32_t ChunkSpace::length(std::uint32_t index) const noexcept {
  if (index < image_chunks_) return plain_length(index) + chunk_overhead_;
  if (!is_hash_chunk(index)) return 0;
  const std::uint32_t per = hashes_per_hash_chunk();
  const std::uint32_t first = (index - image_chunks_) * per;
  const std::uint32_t hashes = std::min(per, image_chunks_ - first);
  return static_cast<std::uint32_t>(hashes * kSha256Bytes);
}

std::uint32_t chunk_length(const v1::Manifest& manifest, std::uint32_t index) noexcept {
  return ChunkSpace::of(manifest).length(index);
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
  const std::uint64_t image_chunks = (m.image_size() + m.chunk_size() - 1) / m.chunk_size();
  if (image_chunks > std::numeric_limits<std::uint32_t>::max() / 2) {
    return bad("an image of " + std::to_string(m.image_size()) + " bytes has too many chunks of " +
               std::to_string(m.chunk_size()) + " bytes");
  }
  if (m.chunk_sha256_size() > 0 && m.hash_table_sha256_size() > 0) {
    return bad("has both inline chunk hashes and a hash table");
  }
  const bool table = m.hash_table_sha256_size() > 0;
  const ChunkSpace space = ChunkSpace::of(m);
  const std::uint64_t expected = table ? space.hash_chunks() : space.image_chunks();
  const auto& hashes = table ? m.hash_table_sha256() : m.chunk_sha256();
  if (expected != static_cast<std::uint64_t>(hashes.size())) {
    return bad("has " + std::to_string(hashes.size()) + (table ? " hash-table hashes" : " chunk hashes") +
               " but an image of " + std::to_string(m.image_size()) + " bytes in chunks of " +
               std::to_string(m.chunk_size()) + " needs " + std::to_string(expected));
  }
  for (int i = 0; i < hashes.size(); ++i) {
    if (hashes.Get(i).size() != kSha256Bytes) {
      return bad((table ? "hash-table hash " : "chunk hash ") + std::to_string(i) + " is not 32 bytes");
    }
  }
  if (m.has_encryption()) {
    const v1::ArtifactEncryption& e = m.encryption();
    if (e.scheme() == v1::ENCRYPTION_SCHEME_UNSPECIFIED) return bad("encryption names no scheme");
    if (e.recipients_size() == 0) return bad("is encrypted but wraps its content key for no recipient");
    // An unknown scheme is the reader's to refuse by name (a device: ERROR_UNSUPPORTED_ENCRYPTION);
    // the sizes below are the known scheme's.
    if (e.scheme() == v1::ENCRYPTION_SCHEME_X25519_AES256GCM_V1) {
      for (int i = 0; i < e.recipients_size(); ++i) {
        const auto& r = e.recipients(i);
        if (r.recipient_key_id().size() != 16 || r.ephemeral_public_key().size() != 32 ||
            r.wrapped_key().size() != 48) {
          return bad("wrapped content key " + std::to_string(i) +
                     " is malformed (expected a 16-character key id, a 32-byte ephemeral key and 48 "
                     "wrapped bytes)");
        }
      }
    }
  }
  if (m.has_delta()) {
    const v1::DeltaEncoding& d = m.delta();
    // An unknown codec is the reader's to refuse by name (a device: ERROR_UNSUPPORTED_DELTA).
    if (d.codec() == v1::DELTA_CODEC_UNSPECIFIED) return bad("delta names no codec");
    if (m.payload_type() != v1::PAYLOAD_TYPE_AB_IMAGE) {
      return bad("is a delta but not an A/B image (a delta applies to the running slot)");
    }
    if (m.has_encryption()) return bad("is a delta and encrypted; delta artifacts are not encrypted");
    if (d.base_image_size() == 0 || d.target_image_size() == 0) return bad("delta base or target size is 0");
    if (d.base_image_sha256().size() != kSha256Bytes || d.target_image_sha256().size() != kSha256Bytes) {
      return bad("delta base or target sha256 is not 32 bytes");
    }
    if (!is_valid_artifact_id(d.base_artifact_id()) || !is_valid_artifact_id(d.target_artifact_id())) {
      return bad("delta base or target artifact id is not 32 lowercase hex characters");
    }
    if (d.window_log() < 10 || d.window_log() > 31) {
      return bad("delta window_log " + std::to_string(d.window_log()) + " is outside [10, 31]");
    }
  }
  return ok_status();
}

}  // namespace fota::common

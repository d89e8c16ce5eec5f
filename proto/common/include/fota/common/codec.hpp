// SPDX-License-Identifier: Apache-2.0
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
// Carries a manifest. Manifests of large images carry a hash table's hashes instead of one hash
// per chunk (ChunkSpace), so 4 MiB is far more than any manifest this build creates needs.
inline constexpr std::size_t kMaxCommandBytes = 4 * 1024 * 1024;
inline constexpr std::size_t kMaxInventoryBytes = 64 * 1024;
inline constexpr std::size_t kMaxProgressBytes = 4 * 1024;
inline constexpr std::size_t kMaxLogBatchBytes = 64 * 1024;
inline constexpr std::size_t kMaxPresenceBytes = 1024;
inline constexpr std::size_t kMaxChunkRequestBytes = 16 * 1024;
inline constexpr std::size_t kMaxChunkDataBytes = kMaxChunkSize + 4096;
// A P-256 request in PEM is about 500 bytes.
inline constexpr std::size_t kMaxCertificateRequestBytes = 4 * 1024;
inline constexpr std::size_t kSha256Bytes = 32;
inline constexpr std::size_t kEd25519SignatureBytes = 64;
inline constexpr std::size_t kArtifactIdLength = 32;
// An encrypted artifact's image chunk travels as ciphertext || GCM tag (docs/SECURITY.md).
inline constexpr std::uint32_t kEncryptedChunkOverhead = 16;

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
// [kMinChunkSize, kMaxChunkSize], exactly one form of chunk hashes with the count ChunkSpace
// says, every hash 32 bytes, at least one compatible hardware type, a known payload type.
Status check_manifest_structure(const v1::Manifest& manifest);

// Number of image chunks: ceil(image_size / chunk_size).
std::uint32_t chunk_count(std::uint64_t image_size, std::uint32_t chunk_size) noexcept;

// Manifests list chunk hashes inline only for images of at most this many chunks (and only when
// the list fits in one hash chunk); larger images get a hash table, so a manifest, and the
// memory a device needs for it, does not grow with the image (docs/PROTOCOL.md, "Chunk hashes").
inline constexpr std::uint32_t kMaxInlineChunkHashes = 512;

// The chunk index space of an artifact, the one place that says what chunk i is. Indices
// [0, image_chunks) are the image's chunks; with a hash table, indices image_chunks + j for j in
// [0, hash_chunks) are the hash table's chunks: hash chunk j is the SHA-256s of image chunks
// [j * H, j * H + H), concatenated, H = hashes_per_hash_chunk(). Every chunk server reads chunk i
// of an artifact through ArtifactStore::read_chunk, which uses this.
// An encrypted artifact's image chunks carry `chunk_overhead` more bytes each (the GCM tag) on the
// wire and in the store than the plaintext chunk the device writes: offsets and lengths here are
// of the stored bytes, plain_length() is what is written.
class ChunkSpace {
 public:
  ChunkSpace() = default;
  ChunkSpace(std::uint64_t image_size, std::uint32_t chunk_size, bool hash_table,
             std::uint32_t chunk_overhead = 0) noexcept;
  // The space a manifest addresses: with a hash table when hash_table_sha256 is not empty, with
  // kEncryptedChunkOverhead per image chunk when it has `encryption`.
  static ChunkSpace of(const v1::Manifest& manifest) noexcept;
  // Whether an image of this size is given a hash table when its manifest is built.
  static bool wants_hash_table(std::uint64_t image_size, std::uint32_t chunk_size) noexcept;

  std::uint64_t image_size() const noexcept { return image_size_; }
  std::uint32_t chunk_size() const noexcept { return chunk_size_; }
  std::uint32_t chunk_overhead() const noexcept { return chunk_overhead_; }
  // Bytes of the image as stored and served: image_size() plus the overhead of every image chunk.
  std::uint64_t stored_image_size() const noexcept {
    return image_size_ + std::uint64_t{image_chunks_} * chunk_overhead_;
  }
  bool has_hash_table() const noexcept { return hash_chunks_ > 0; }
  std::uint32_t image_chunks() const noexcept { return image_chunks_; }
  std::uint32_t hash_chunks() const noexcept { return hash_chunks_; }
  // Image and hash chunks: valid indices are [0, total()). Saturates at UINT32_MAX.
  std::uint32_t total() const noexcept;
  std::uint32_t hashes_per_hash_chunk() const noexcept { return chunk_size_ / kSha256Bytes; }
  bool is_hash_chunk(std::uint32_t index) const noexcept {
    return index >= image_chunks_ && index - image_chunks_ < hash_chunks_;
  }
  // Index of the hash chunk that holds image chunk `image_index`'s hash, and where in it.
  std::uint32_t hash_chunk_index(std::uint32_t image_index) const noexcept;
  std::size_t hash_offset(std::uint32_t image_index) const noexcept;
  // Where chunk `index` starts in its file (the image, or the hash table), and its length; 0
  // for an index outside the space.
  std::uint64_t offset(std::uint32_t index) const noexcept;
  std::uint32_t length(std::uint32_t index) const noexcept;
  // Plaintext bytes of image chunk `index` (length() minus the overhead); 0 outside the image.
  std::uint32_t plain_length(std::uint32_t index) const noexcept;

 private:
  std::uint64_t image_size_ = 0;
  std::uint32_t chunk_size_ = 0;
  std::uint32_t chunk_overhead_ = 0;
  std::uint32_t image_chunks_ = 0;
  std::uint32_t hash_chunks_ = 0;
};

// Length of chunk `index` (image or hash chunk) of a manifest: ChunkSpace::of(manifest).length(index).
std::uint32_t chunk_length(const v1::Manifest& manifest, std::uint32_t index) noexcept;

}  // namespace fota::common

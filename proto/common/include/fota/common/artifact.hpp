// SPDX-License-Identifier: Apache-2.0
// Artifact bundles (one file: signed manifest + image) and the content-addressed artifact
// store shared by the orchestrator (writes) and the broker plugin (reads). fota_crypto library.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "fota/common/chunk_responder.hpp"
#include "fota/common/codec.hpp"
#include "fota/common/crypto.hpp"
#include "fota/common/encryption.hpp"
#include "fota/common/result.hpp"
#include "fota/v1/fota.pb.h"

namespace fota::common {

struct ArtifactSpec {
  std::string name;
  std::string version;
  std::uint64_t security_counter = 0;
  std::vector<std::string> compatible_hardware;
  v1::PayloadType payload_type = v1::PAYLOAD_TYPE_AB_IMAGE;
  std::string payload_target;
  std::uint32_t chunk_size = 16 * 1024;
};

// Puts an image's chunk hashes into `manifest` (image_size and chunk_size already set).
// `hash_table` is every image chunk's SHA-256, concatenated. Inline (chunk_sha256) unless
// `use_hash_table`; then hash_table_sha256 gets the SHA-256 of each hash chunk (ChunkSpace).
void set_chunk_hashes(v1::Manifest& manifest, std::string_view hash_table, bool use_hash_table);

// Builds and signs the manifest of an image file (streams the file once). Uses a hash table when
// ChunkSpace::wants_hash_table says so.
Result<v1::SignedManifest> build_signed_manifest(const std::filesystem::path& image, const ArtifactSpec& spec,
                                                 const Ed25519PrivateKey& key, std::int64_t now_ms);

// The same for an encrypted artifact (docs/SECURITY.md, "Encrypted artifacts"): a fresh random
// content key encrypts each chunk (AES-256-GCM) into `ciphertext` (created; refused when it exists),
// the key is wrapped for every recipient inside the signed manifest and then wiped: nobody but the
// recipients can recover it. The chunk hashes cover the ciphertext chunks, image_sha256 the
// plaintext. The bundle holds `ciphertext` as its image (write_bundle(out, manifest, ciphertext)).
// Errors as build_signed_manifest, and kInvalidArgument for no or a repeated recipient.
Result<v1::SignedManifest> build_encrypted_manifest(const std::filesystem::path& image,
                                                    const ArtifactSpec& spec,
                                                    const std::vector<X25519PublicKey>& recipients,
                                                    const Ed25519PrivateKey& key, std::int64_t now_ms,
                                                    const std::filesystem::path& ciphertext);

// The manifest of a delta artifact (fota/common/delta.hpp): `patch` is its image, `delta` names
// base and target. Errors as build_signed_manifest.
Result<v1::SignedManifest> build_delta_manifest(const std::filesystem::path& patch, const ArtifactSpec& spec,
                                                const v1::DeltaEncoding& delta, const Ed25519PrivateKey& key,
                                                std::int64_t now_ms);

// Bundle file layout (docs/PROTOCOL.md): magic "FOTABNDL", u32 format version (1), u32 length of
// the SignedManifest, the SignedManifest bytes, then the image bytes. Integers little endian.
inline constexpr char kBundleMagic[8] = {'F', 'O', 'T', 'A', 'B', 'N', 'D', 'L'};
inline constexpr std::uint32_t kBundleFormatVersion = 1;

// The bytes of a bundle before its image: magic, format version, manifest length and the
// manifest. write_bundle and the orchestrator's bundle download (an edge broker's cache fill) both
// start a bundle with it.
std::string bundle_header(const v1::SignedManifest& manifest);

// Writes a bundle; refuses to overwrite `out`.
Status write_bundle(const std::filesystem::path& out, const v1::SignedManifest& manifest,
                    const std::filesystem::path& image);

struct BundleInfo {
  v1::SignedManifest signed_manifest;
  std::uint64_t image_offset = 0;  // where the image starts in the bundle file
  std::uint64_t image_size = 0;
};

// Reads the header of a bundle without verifying anything.
Result<BundleInfo> read_bundle_header(const std::filesystem::path& bundle);

struct VerifiedBundle {
  BundleInfo info;
  v1::Manifest manifest;
  // Every image chunk's SHA-256, concatenated, checked against the manifest: what a store serves
  // as hash chunks when the manifest has a hash table.
  std::string hash_table;
};

// Verifies signature, structure, every chunk hash (directly, or through the hash table) and the
// image hash. Errors name the first chunk (or hash chunk) that does not match. For an encrypted
// artifact the chunk hashes are checked over the ciphertext and the image hash, of the plaintext,
// is left to the devices that can decrypt it; an unknown encryption scheme is kMalformed.
Result<VerifiedBundle> verify_bundle(const std::filesystem::path& bundle, const TrustStore& trust);

// Content-addressed store: <root>/<artifact_id>/manifest.pb (SignedManifest),
// <root>/<artifact_id>/image and, for a manifest with a hash table, <root>/<artifact_id>/hash_table
// (verified at import like the image). Entries appear atomically (built in a temp dir, then renamed).
// Thread-safe. Readers keep a small cache of open images.
class ArtifactStore {
 public:
  explicit ArtifactStore(std::filesystem::path root, std::size_t max_open_files = 64);
  ~ArtifactStore();
  ArtifactStore(const ArtifactStore&) = delete;
  ArtifactStore& operator=(const ArtifactStore&) = delete;

  const std::filesystem::path& root() const noexcept { return root_; }

  // Verifies the bundle against `trust`, then copies it in. Importing an artifact that is
  // already present succeeds and returns the same manifest.
  Result<v1::Manifest> import_bundle(const std::filesystem::path& bundle, const TrustStore& trust);

  bool contains(const std::string& artifact_id) const;
  // An artifact never changes once stored (its id is its content's): its manifest is read from
  // disk once and then served from memory, so callers may ask while holding their own locks.
  Result<v1::SignedManifest> signed_manifest(const std::string& artifact_id) const;
  // Parsed, unverified manifest as stored (it was verified on import).
  Result<v1::Manifest> manifest(const std::string& artifact_id) const;
  // The manifest's image_size without copying the manifest (its chunk hashes can be large).
  Result<std::uint64_t> image_size(const std::string& artifact_id) const;
  std::vector<std::string> list() const;
  // The stored image file of an artifact (kNotFound when absent): what a bundle download streams
  // after bundle_header().
  Result<std::filesystem::path> image_path(const std::string& artifact_id) const;
  // Deletes the artifact (its files, its cached manifest, its open image). kNotFound when absent.
  // Whether anything still needs it is the caller's question (the orchestrator refuses while a
  // rollout uses it).
  Status remove(const std::string& artifact_id);

  // Chunks in the artifact's ChunkSpace (image chunks, then hash-table chunks). kNotFound for an
  // artifact the store does not have, kUnavailable when it has it but cannot open it now.
  Result<std::uint32_t> chunk_count(const std::string& artifact_id) const;

  // Reads chunk `index` of the artifact's ChunkSpace (image chunks, then hash-table chunks) into
  // `out` (resized). kNotFound for an unknown artifact, kInvalidArgument for an index past the end.
  Status read_chunk(const std::string& artifact_id, std::uint32_t index, std::string& out) const;

 private:
  struct OpenImage {
    int fd = -1;
    int hash_table_fd = -1;  // only for a manifest with a hash table
    ChunkSpace space;
  };
  Result<OpenImage> open_image(const std::string& artifact_id) const;
  struct Manifests {
    v1::SignedManifest signed_manifest;
    v1::Manifest manifest;
  };
  Result<std::shared_ptr<const Manifests>> manifests(const std::string& artifact_id) const;

  std::filesystem::path root_;
  std::size_t max_open_files_;
  mutable std::mutex mutex_;
  mutable std::map<std::string, OpenImage> open_;
  mutable std::mutex manifest_mutex_;  // not mutex_: open_image() reads manifests under that one
  mutable std::map<std::string, std::shared_ptr<const Manifests>> manifests_;
};

// The store as the chunk responder's source: what the broker plugin, the orchestrator and fota-sim
// serve from.
class ArtifactStoreChunkSource final : public ChunkSource {
 public:
  explicit ArtifactStoreChunkSource(const ArtifactStore& store) : store_(store) {}
  Result<std::uint32_t> chunk_count(const std::string& artifact_id) const override {
    return store_.chunk_count(artifact_id);
  }
  Status read_chunk(const std::string& artifact_id, std::uint32_t index, std::string& out) const override {
    return store_.read_chunk(artifact_id, index, out);
  }

 private:
  const ArtifactStore& store_;
};

}  // namespace fota::common

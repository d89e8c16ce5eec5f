// SPDX-License-Identifier: Apache-2.0
// SHA-256 and Ed25519 with OpenSSL 3 EVP. Part of the fota_crypto library.
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "fota/common/result.hpp"
#include "fota/v1/fota.pb.h"

namespace fota::common {

using Sha256Digest = std::array<std::uint8_t, 32>;

// Streaming SHA-256.
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  Sha256(Sha256&&) noexcept;
  Sha256& operator=(Sha256&&) noexcept;

  void update(const void* data, std::size_t size);
  void update(std::string_view data) { update(data.data(), data.size()); }
  // Returns the digest and resets for a new computation.
  Sha256Digest finish();

  static Sha256Digest digest(std::string_view data);
  // Hashes a whole file in 64 KiB reads.
  static Result<Sha256Digest> file(const std::filesystem::path& path);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

std::string digest_bytes(const Sha256Digest& digest);  // the 32 raw bytes as a string
std::string to_hex(std::string_view bytes);
Result<std::string> from_hex(std::string_view hex);

// Writes `content` to `path` with the given mode, refusing to overwrite an existing file
// (kAlreadyExists). The file appears atomically (temp file, fsync, rename).
Status write_new_file(const std::filesystem::path& path, std::string_view content, unsigned mode);
Result<std::string> read_file(const std::filesystem::path& path, std::size_t max_bytes = 64 * 1024 * 1024);

class Ed25519PublicKey {
 public:
  static constexpr std::size_t kRawSize = 32;
  static Result<Ed25519PublicKey> from_raw(std::string_view raw);
  static Result<Ed25519PublicKey> from_pem(std::string_view pem);
  static Result<Ed25519PublicKey> load(const std::filesystem::path& path);

  const std::string& raw() const noexcept { return raw_; }
  // 16 hex chars: the first 8 bytes of SHA-256(raw).
  std::string key_id() const;
  std::string to_pem() const;
  // kBadSignature when the signature does not verify.
  Status verify(std::string_view message, std::string_view signature) const;

 private:
  explicit Ed25519PublicKey(std::string raw) : raw_(std::move(raw)) {}
  std::string raw_;
};

class Ed25519PrivateKey {
 public:
  static Result<Ed25519PrivateKey> generate();
  static Result<Ed25519PrivateKey> from_pem(std::string_view pem);
  static Result<Ed25519PrivateKey> load(const std::filesystem::path& path);

  ~Ed25519PrivateKey();
  Ed25519PrivateKey(Ed25519PrivateKey&&) noexcept;
  Ed25519PrivateKey& operator=(Ed25519PrivateKey&&) noexcept;

  // PKCS#8 PEM.
  std::string to_pem() const;
  Ed25519PublicKey public_key() const;
  Result<std::string> sign(std::string_view message) const;

 private:
  struct Impl;
  explicit Ed25519PrivateKey(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Writes key.pem (0600) and key.pub (0644); refuses to overwrite either.
Status save_key_pair(const Ed25519PrivateKey& key, const std::filesystem::path& private_path,
                     const std::filesystem::path& public_path);

// The set of keys a verifier trusts, found by key id.
class TrustStore {
 public:
  void add(Ed25519PublicKey key);
  // Loads one public key PEM file, or every *.pub / *.pem file of a directory.
  Status load(const std::filesystem::path& path);
  bool empty() const noexcept { return keys_.empty(); }
  const Ed25519PublicKey* find(std::string_view key_id) const;

  // Verifies the signature with the key the SignedManifest names (kUntrustedKey when no
  // trusted key has that id, kBadSignature when it does not verify), then parses the manifest
  // and checks its structure (kMalformed). Returns the verified manifest.
  Result<v1::Manifest> verify(const v1::SignedManifest& signed_manifest) const;

 private:
  std::vector<Ed25519PublicKey> keys_;
};

// Signs a serialized manifest.
Result<v1::SignedManifest> sign_manifest(const v1::Manifest& manifest, const Ed25519PrivateKey& key);

}  // namespace fota::common

// SPDX-License-Identifier: Apache-2.0
// Encrypted artifacts (docs/SECURITY.md, "Encrypted artifacts"): X25519 recipient keys, the
// per-artifact content key wrapped for each recipient, and AES-256-GCM per chunk. OpenSSL 3.0
// has no HPKE, so the wrap is built from EVP_PKEY_derive, HKDF and AES-256-GCM
// (v1::ENCRYPTION_SCHEME_X25519_AES256GCM_V1 says exactly how). Part of the fota_crypto library.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "fota/common/result.hpp"
#include "fota/v1/fota.pb.h"

namespace fota::common {

inline constexpr std::size_t kContentKeyBytes = 32;
inline constexpr std::size_t kX25519KeyBytes = 32;
inline constexpr std::size_t kWrappedContentKeyBytes = kContentKeyBytes + 16;

// A recipient of encrypted artifacts: a device's key, or one shared by a hardware group.
class X25519PublicKey {
 public:
  static Result<X25519PublicKey> from_raw(std::string_view raw);
  static Result<X25519PublicKey> from_pem(std::string_view pem);
  static Result<X25519PublicKey> load(const std::filesystem::path& path);

  const std::string& raw() const noexcept { return raw_; }
  // 16 hex chars: the first 8 bytes of SHA-256(raw), as WrappedContentKey.recipient_key_id.
  std::string key_id() const;
  std::string to_pem() const;

 private:
  explicit X25519PublicKey(std::string raw) : raw_(std::move(raw)) {}
  std::string raw_;
};

// A device's decryption key (PKCS#8 PEM, kept 0600 on the device).
class X25519PrivateKey {
 public:
  static Result<X25519PrivateKey> generate();
  static Result<X25519PrivateKey> from_pem(std::string_view pem);
  static Result<X25519PrivateKey> load(const std::filesystem::path& path);

  ~X25519PrivateKey();
  X25519PrivateKey(X25519PrivateKey&&) noexcept;
  X25519PrivateKey& operator=(X25519PrivateKey&&) noexcept;

  std::string to_pem() const;
  X25519PublicKey public_key() const;

  // The content key wrapped for this key in `encryption`, unwrapped (kContentKeyBytes raw bytes).
  // Errors: kInvalidArgument for a scheme this build does not know; kNotFound when nothing is
  // wrapped for this key's id; kIntegrity when the entry for it does not open (tampered, or made
  // for another key with the same id); kCrypto when OpenSSL fails otherwise.
  Result<std::string> unwrap_content_key(const v1::ArtifactEncryption& encryption) const;

 private:
  struct Impl;
  explicit X25519PrivateKey(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Writes key (0600) and pub (0644); refuses to overwrite either.
Status save_key_pair(const X25519PrivateKey& key, const std::filesystem::path& private_path,
                     const std::filesystem::path& public_path);

// A fresh random content key (kContentKeyBytes). kCrypto when the RNG fails.
Result<std::string> generate_content_key();
// Overwrites a key in memory before it is dropped.
void cleanse(std::string& secret) noexcept;

// `content_key` wrapped for `recipient` with a fresh ephemeral key. kCrypto on OpenSSL failure.
Result<v1::WrappedContentKey> wrap_content_key(std::string_view content_key,
                                               const X25519PublicKey& recipient);

// The encryption block of a manifest: the scheme and the content key wrapped for each recipient.
Result<v1::ArtifactEncryption> make_encryption(std::string_view content_key,
                                               const std::vector<X25519PublicKey>& recipients);

// Chunk `index` of an image encrypted under `content_key`: ciphertext || 16-byte tag.
Result<std::string> encrypt_chunk(std::string_view content_key, std::uint32_t index, std::string_view plain);
// In place: `data` is ciphertext || tag on entry, the plaintext on success. kIntegrity when the
// tag does not verify (wrong key, wrong index, altered bytes); `data` is then cleared.
Status decrypt_chunk(std::string_view content_key, std::uint32_t index, std::string& data);

}  // namespace fota::common

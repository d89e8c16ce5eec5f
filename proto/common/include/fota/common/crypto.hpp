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
// Replaces (or creates) `path` with `content` atomically and durably: <path>.tmp written with the
// given mode, fsynced, renamed over `path`, the directory fsynced. A crash at any point leaves the
// old file or the new one, never a mix. kIo naming the step and the file.
Status replace_file(const std::filesystem::path& path, std::string_view content, unsigned mode);
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

// The orchestrator's command key pair, as `fotactl pki command-key` makes it.
struct CommandKeyFiles {
  std::filesystem::path private_key;  // <pki_dir>/command/<name>.key, mode 0600: the orchestrator's
  std::filesystem::path public_key;   // <pki_dir>/command/<name>.pub: every device's command_keys
  std::string key_id;
};
// Generates a command key pair beside the fleet CA. `name` follows the device id rules (1-64 of
// [A-Za-z0-9._-]); a new name per rotation keeps the old key until devices drop it. Errors:
// kInvalidArgument for a bad name, kAlreadyExists rather than overwrite a key, kIo.
Result<CommandKeyFiles> create_command_key(const std::filesystem::path& pki_dir, std::string_view name);

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

// Commands are signed by the orchestrator's command key, never by an artifact release key
// (docs/PROTOCOL.md, "Commands"; docs/SECURITY.md, "Signed commands"). The signature covers
// kCommandSignatureContext followed by the payload's bytes before its `signature` field, which is
// serialized last: a receiver checks the bytes it got, never a re-serialization, so fields a newer
// orchestrator adds are covered too.
inline constexpr std::string_view kCommandSignatureContext{"fota-command-v1\0", 16};

// The payload to publish: `command` serialized (any `signature` it has dropped), then its
// CommandSignature by `key`. kCrypto when OpenSSL cannot sign.
Result<std::string> sign_command(const v1::Command& command, const Ed25519PrivateKey& key);

// Checks a command payload before anything in it is used, and decodes it. Errors: kTooLarge over
// kMaxCommandBytes; kMalformed when it does not parse; kBadSignature when it carries no signature,
// when the signature is not its last field, or does not verify; kUntrustedKey when no key of
// `command_keys` has the signature's key id.
Result<v1::Command> verify_command(std::string_view payload, const TrustStore& command_keys);

}  // namespace fota::common

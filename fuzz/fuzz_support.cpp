// SPDX-License-Identifier: Apache-2.0
#include "fuzz_support.hpp"

#include <cstdio>
#include <fstream>

#include <google/protobuf/stubs/logging.h>

#include "fota/common/codec.hpp"
#include "fota/common/crypto.hpp"
#include "fota/common/encryption.hpp"

namespace fota::fuzz {
namespace {
// protobuf logs every string field with invalid UTF-8 it parses: millions of lines in a run.
const bool kProtobufQuiet = [] {
  google::protobuf::SetLogHandler(nullptr);
  return true;
}();
}  // namespace

void fixture_failed(std::string_view what, const common::Error& error) {
  std::fprintf(stderr, "fota fuzz fixture: %.*s: %s\n", static_cast<int>(what.size()), what.data(),
               error.to_string().c_str());
  std::abort();
}

common::Ed25519PrivateKey signing_key() {
  auto key = common::Ed25519PrivateKey::from_pem(kFuzzSigningKeyPem);
  if (!key) fixture_failed("the fuzz signing key does not load", key.error());
  return std::move(key).value();
}

common::TrustStore trust_store() {
  common::TrustStore trust;
  trust.add(signing_key().public_key());
  return trust;
}

std::shared_ptr<spdlog::logger> null_logger() {
  return std::make_shared<spdlog::logger>("fuzz", std::make_shared<spdlog::sinks::null_sink_st>());
}

std::shared_ptr<const common::X25519PrivateKey> decryption_key() {
  auto key = common::X25519PrivateKey::from_pem(kFuzzDecryptionKeyPem);
  if (!key) fixture_failed("the fuzz decryption key does not load", key.error());
  return std::make_shared<const common::X25519PrivateKey>(std::move(key).value());
}

namespace {
void write_text(const std::filesystem::path& path, std::string_view text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(text.data(), static_cast<std::streamsize>(text.size()));
}
}  // namespace

const common::CertificateAuthority& fixed_issuing_ca() {
  static const common::CertificateAuthority ca = [] {
    const auto dir = scratch_dir() / "pki";
    std::filesystem::create_directories(dir);
    write_text(dir / "ca.crt", kFuzzIssuingCaCertPem);
    write_text(dir / "ca.key", kFuzzIssuingCaKeyPem);
    write_text(dir / "root.crt", kFuzzRootCaPem);
    auto opened = common::CertificateAuthority::open(dir);
    if (!opened) fixture_failed("opening the fuzz issuing CA", opened.error());
    return std::move(opened).value();
  }();
  return ca;
}

namespace {
std::filesystem::path scratch_path() {
  return std::filesystem::temp_directory_path() / ("fota-fuzz-" + std::to_string(::getpid()));
}
}  // namespace

const std::filesystem::path& scratch_dir() {
  static const std::filesystem::path dir = [] {
    auto path = scratch_path();
    std::filesystem::create_directories(path);
    std::atexit([] {
      std::error_code ec;
      std::filesystem::remove_all(scratch_path(), ec);
    });
    return path;
  }();
  return dir;
}

std::string image_bytes(std::size_t size, char salt) {
  std::string image(size, '\0');
  for (std::size_t i = 0; i < size; ++i) image[i] = static_cast<char>((i * 131 + salt) & 0xff);
  return image;
}

v1::SignedManifest signed_manifest(const std::string& image, std::uint32_t chunk_size) {
  const auto path = scratch_dir() / "fixture-image";
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(image.data(), static_cast<std::streamsize>(image.size()));
  }
  common::ArtifactSpec spec;
  spec.name = "fw";
  spec.version = "2.0";
  spec.security_counter = 2;
  spec.compatible_hardware = {std::string(kHardware)};
  spec.chunk_size = chunk_size;
  auto manifest = common::build_signed_manifest(path, spec, signing_key(), kNowMs);
  if (!manifest) fixture_failed("build_signed_manifest", manifest.error());
  return std::move(manifest).value();
}

EncryptedArtifact encrypted_artifact(const std::string& image, std::uint32_t chunk_size,
                                     const std::vector<common::X25519PublicKey>& recipients) {
  const auto path = scratch_dir() / "fixture-image";
  const auto ciphertext = scratch_dir() / "fixture-ciphertext";
  write_text(path, image);
  std::filesystem::remove(ciphertext);
  common::ArtifactSpec spec;
  spec.name = "fw";
  spec.version = "2.0";
  spec.security_counter = 2;
  spec.compatible_hardware = {std::string(kHardware)};
  spec.chunk_size = chunk_size;
  auto manifest = common::build_encrypted_manifest(path, spec, recipients, signing_key(), kNowMs, ciphertext);
  if (!manifest) fixture_failed("build_encrypted_manifest", manifest.error());
  auto stored = common::read_file(ciphertext);
  if (!stored) fixture_failed("reading the ciphertext back", stored.error());
  auto parsed = common::decode<v1::Manifest>(manifest->manifest(), common::kMaxCommandBytes);
  if (!parsed) fixture_failed("decoding the encrypted manifest", parsed.error());
  // The hash table (as the artifact store keeps it): the SHA-256 of every stored image chunk.
  const auto space = common::ChunkSpace::of(*parsed);
  std::string table;
  if (space.has_hash_table()) {
    for (std::uint32_t i = 0; i < space.image_chunks(); ++i) {
      table += common::digest_bytes(
          common::Sha256::digest(std::string_view(*stored).substr(space.offset(i), space.length(i))));
    }
  }
  return EncryptedArtifact{std::move(manifest).value(), std::move(stored).value() + table};
}

std::string bundle_bytes(const std::string& image, std::uint32_t chunk_size) {
  const auto manifest = signed_manifest(image, chunk_size);  // writes fixture-image
  const auto path = scratch_dir() / "fixture.bundle";
  std::filesystem::remove(path);
  auto written = common::write_bundle(path, manifest, scratch_dir() / "fixture-image");
  if (!written) fixture_failed("write_bundle", written.error());
  auto bytes = common::read_file(path);
  if (!bytes) fixture_failed("reading the bundle back", bytes.error());
  return std::move(bytes).value();
}

std::string signed_command(const v1::Command& command) {
  auto payload = common::sign_command(command, signing_key());
  if (!payload) fixture_failed("sign_command", payload.error());
  return std::move(payload).value();
}

v1::Command install_command(const v1::SignedManifest& manifest, std::string command_id) {
  v1::Command command;
  command.set_command_id(std::move(command_id));
  command.set_deployment_id("r-0000000001");
  command.set_device_id(std::string(kDeviceId));
  command.set_issued_at_ms(kNowMs);
  command.set_expires_at_ms(kNowMs + 3'600'000);
  *command.mutable_install()->mutable_manifest() = manifest;
  return command;
}

client::EngineConfig engine_config() {
  client::EngineConfig config;
  config.device_id = std::string(kDeviceId);
  config.hardware_type = std::string(kHardware);
  config.slot_capacity_bytes = std::uint64_t{1} << 30;
  // The harnesses have no running slot to read: chunks come from the input, as from the wire
  // (the reuse phase would wait for slot reads no harness answers, and the seeds' download states
  // would be out of reach).
  config.reuse_active_slot = false;
  return config;
}

}  // namespace fota::fuzz

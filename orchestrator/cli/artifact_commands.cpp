// SPDX-License-Identifier: Apache-2.0
// fotactl artifact create | delta | inspect | verify: signed bundles (manifest + image in one file).
#include <chrono>
#include <iostream>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "fota/common/artifact.hpp"
#include "fota/common/codec.hpp"
#include "fota/common/delta.hpp"

namespace fota::cli {
namespace {

struct CreateArgs {
  std::string image;
  std::string version;
  std::vector<std::string> hardware;
  std::uint64_t security_counter = 0;
  std::uint32_t chunk_size = common::kDefaultChunkSize;
  std::string name;
  std::string payload = "ab";
  std::string target;
  std::string key;
  std::string out;
  std::vector<std::string> encrypt_for;
};

v1::PayloadType parse_payload(const std::string& text) {
  if (text == "ab") return v1::PAYLOAD_TYPE_AB_IMAGE;
  if (text == "file") return v1::PAYLOAD_TYPE_FILE;
  if (text == "module") return v1::PAYLOAD_TYPE_MODULE;
  throw std::runtime_error("--payload must be ab, file or module, not \"" + text + "\"");
}

const char* payload_name(v1::PayloadType type) {
  switch (type) {
    case v1::PAYLOAD_TYPE_AB_IMAGE:
      return "ab";
    case v1::PAYLOAD_TYPE_FILE:
      return "file";
    case v1::PAYLOAD_TYPE_MODULE:
      return "module";
    default:
      return "unspecified";
  }
}

// "none", or the scheme and the recipient key ids the content key is wrapped for.
nlohmann::json encryption_json(const v1::Manifest& m) {
  if (!m.has_encryption()) return "none";
  std::vector<std::string> recipients;
  for (const auto& r : m.encryption().recipients()) recipients.push_back(r.recipient_key_id());
  const auto scheme = m.encryption().scheme();
  return {{"scheme", v1::EncryptionScheme_IsValid(scheme) ? v1::EncryptionScheme_Name(scheme)
                                                          : "unknown (" + std::to_string(scheme) + ")"},
          {"recipients", recipients}};
}

// "none", or what a delta's base and target are.
nlohmann::json delta_json(const v1::Manifest& m) {
  if (!m.has_delta()) return "none";
  const auto& d = m.delta();
  const auto codec = d.codec();
  return {{"codec", v1::DeltaCodec_IsValid(codec) ? v1::DeltaCodec_Name(codec)
                                                  : "unknown (" + std::to_string(codec) + ")"},
          {"base_artifact_id", d.base_artifact_id()},
          {"base_version", d.base_version()},
          {"base_image_size", d.base_image_size()},
          {"base_image_sha256", common::to_hex(d.base_image_sha256())},
          {"target_artifact_id", d.target_artifact_id()},
          {"target_image_size", d.target_image_size()},
          {"target_image_sha256", common::to_hex(d.target_image_sha256())},
          {"window_log", d.window_log()}};
}

nlohmann::json describe(const v1::SignedManifest& sm, const v1::Manifest& m) {
  return {{"artifact_id", m.artifact_id()},
          {"name", m.name()},
          {"version", m.version()},
          {"security_counter", m.security_counter()},
          {"compatible_hardware",
           std::vector<std::string>(m.compatible_hardware().begin(), m.compatible_hardware().end())},
          {"payload", payload_name(m.payload_type())},
          {"payload_target", m.payload_target()},
          {"image_size", m.image_size()},
          {"image_sha256", common::to_hex(m.image_sha256())},
          {"chunk_size", m.chunk_size()},
          {"chunks", common::ChunkSpace::of(m).image_chunks()},
          {"created_at_ms", m.created_at_ms()},
          {"key_id", sm.key_id()},
          {"encryption", encryption_json(m)},
          {"delta", delta_json(m)}};
}

void print_human(const nlohmann::json& j) {
  for (const auto& [k, v] : j.items()) {
    std::cout << "  " << k << ": " << (v.is_string() ? v.get<std::string>() : v.dump()) << "\n";
  }
}

void print_created(const std::string& out, const v1::SignedManifest& sm) {
  auto m = common::decode<v1::Manifest>(sm.manifest(), common::kMaxCommandBytes);
  std::cout << "wrote " << out << "\n";
  print_human(describe(sm, *m));
}

}  // namespace

void register_artifact_commands(CLI::App& app) {
  auto* artifact = app.add_subcommand("artifact", "Signed update artifacts");
  artifact->require_subcommand(1);

  auto c = std::make_shared<CreateArgs>();
  auto* create = artifact->add_subcommand("create", "Sign an image into a bundle (signed manifest + image)");
  create->add_option("--image", c->image, "Image file")->required()->check(CLI::ExistingFile);
  create->add_option("--version", c->version, "Version string, e.g. 1.4.2")->required();
  create->add_option("--hardware", c->hardware, "Compatible hardware types, comma separated")
      ->required()
      ->delimiter(',');
  create
      ->add_option("--security-counter", c->security_counter,
                   "Anti-rollback counter; devices refuse anything lower than what they run")
      ->required();
  create->add_option("--chunk-size", c->chunk_size, "Chunk size in bytes (1024..1048576)")
      ->capture_default_str();
  create->add_option("--name", c->name, "Artifact name (default: image file name)");
  create->add_option("--payload", c->payload, "ab (A/B slot image), file, or module")->capture_default_str();
  create->add_option("--target", c->target, "File target or update-module name");
  create->add_option("--key", c->key, "Ed25519 private key (fotactl keys generate)")->required();
  create->add_option("-o,--out", c->out, "Bundle file to write")->required();
  create
      ->add_option("--encrypt-for", c->encrypt_for,
                   "Encrypt the image for these X25519 public keys (fotactl keys generate --x25519), "
                   "comma separated: only devices holding one of the private keys can install it")
      ->delimiter(',')
      ->check(CLI::ExistingFile);
  create->callback([c] {
    auto key = common::Ed25519PrivateKey::load(c->key);
    if (!key) throw std::runtime_error(key.error().message);
    common::ArtifactSpec spec;
    spec.name = c->name;
    spec.version = c->version;
    spec.security_counter = c->security_counter;
    spec.compatible_hardware = c->hardware;
    spec.payload_type = parse_payload(c->payload);
    spec.payload_target = c->target;
    spec.chunk_size = c->chunk_size;
    const auto now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                            std::chrono::system_clock::now().time_since_epoch())
                            .count();
    if (std::filesystem::exists(c->out)) {
      throw std::runtime_error(c->out + " already exists; refusing to overwrite it (choose another -o)");
    }
    if (c->encrypt_for.empty()) {
      auto sm = common::build_signed_manifest(c->image, spec, *key, now_ms);
      if (!sm) throw std::runtime_error(sm.error().message);
      if (auto st = common::write_bundle(c->out, *sm, c->image); !st)
        throw std::runtime_error(st.error().message);
      print_created(c->out, *sm);
      return;
    }
    std::vector<common::X25519PublicKey> recipients;
    for (const auto& path : c->encrypt_for) {
      auto r = common::X25519PublicKey::load(path);
      if (!r) throw std::runtime_error(r.error().message);
      recipients.push_back(std::move(r).value());
    }
    // The ciphertext is staged beside the bundle and removed once the bundle holds it.
    const std::filesystem::path staged = c->out + ".ciphertext";
    auto sm = common::build_encrypted_manifest(c->image, spec, recipients, *key, now_ms, staged);
    if (!sm) throw std::runtime_error(sm.error().message);
    auto st = common::write_bundle(c->out, *sm, staged);
    std::error_code ec;
    std::filesystem::remove(staged, ec);
    if (!st) throw std::runtime_error(st.error().message);
    print_created(c->out, *sm);
  });

  struct DeltaArgs {
    std::string from;
    std::string to;
    std::string key;
    std::string out;
    int level = common::DeltaOptions{}.level;
  };
  auto d = std::make_shared<DeltaArgs>();
  auto* delta = artifact->add_subcommand(
      "delta",
      "Make a signed delta artifact: a zstd patch from one A/B image to the next (docs/PROTOCOL.md)");
  delta->add_option("--from", d->from, "Bundle of the version devices run (the base)")
      ->required()
      ->check(CLI::ExistingFile);
  delta->add_option("--to", d->to, "Bundle of the version to install (the target)")
      ->required()
      ->check(CLI::ExistingFile);
  delta->add_option("--key", d->key, "Ed25519 private key (fotactl keys generate)")->required();
  delta->add_option("-o,--out", d->out, "Delta bundle file to write")->required();
  delta->add_option("--level", d->level, "zstd compression level (1..19; higher: smaller, slower to make)")
      ->check(CLI::Range(1, 19))
      ->capture_default_str();
  delta->callback([d] {
    auto key = common::Ed25519PrivateKey::load(d->key);
    if (!key) throw std::runtime_error(key.error().message);
    const auto now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                            std::chrono::system_clock::now().time_since_epoch())
                            .count();
    common::DeltaOptions options;
    options.level = d->level;
    auto sm = common::build_delta_bundle(d->from, d->to, *key, now_ms, d->out, options);
    if (!sm) throw std::runtime_error(sm.error().message);
    print_created(d->out, *sm);
  });

  auto bundle = std::make_shared<std::string>();
  auto json = std::make_shared<bool>(false);
  auto* inspect = artifact->add_subcommand("inspect", "Show a bundle's manifest (does not verify it)");
  inspect->add_option("bundle", *bundle, "Bundle file")->required();
  inspect->add_flag("--json", *json, "Print JSON");
  inspect->callback([bundle, json] {
    auto info = common::read_bundle_header(*bundle);
    if (!info) throw std::runtime_error(info.error().message);
    auto m = common::decode<v1::Manifest>(info->signed_manifest.manifest(), common::kMaxCommandBytes);
    if (!m) throw std::runtime_error(*bundle + ": " + m.error().message);
    auto j = describe(info->signed_manifest, *m);
    j["bundle_image_bytes"] = info->image_size;
    if (*json) {
      std::cout << j.dump(2) << "\n";
    } else {
      std::cout << *bundle << " (not verified; use `fotactl artifact verify`)\n";
      print_human(j);
    }
  });

  auto vbundle = std::make_shared<std::string>();
  auto trust = std::make_shared<std::vector<std::string>>();
  auto* verify = artifact->add_subcommand("verify", "Verify signature, every chunk hash and the image hash");
  verify->add_option("bundle", *vbundle, "Bundle file")->required();
  verify->add_option("--trust", *trust, "Trusted public key file or directory (repeatable)")->required();
  verify->callback([vbundle, trust] {
    common::TrustStore store;
    for (const auto& path : *trust) {
      if (auto st = store.load(path); !st) throw std::runtime_error(st.error().message);
    }
    auto verified = common::verify_bundle(*vbundle, store);
    if (!verified) throw std::runtime_error("verification FAILED: " + verified.error().message);
    std::cout << "OK: " << *vbundle << " is signed by trusted key " << verified->info.signed_manifest.key_id()
              << " and all " << common::ChunkSpace::of(verified->manifest).image_chunks()
              << " chunks match\n";
    if (verified->manifest.has_encryption()) {
      std::cout << "  encrypted: the chunks hold ciphertext; only the recipients below can decrypt them, "
                   "and their devices check the image hash after decrypting\n";
    }
    print_human(describe(verified->info.signed_manifest, verified->manifest));
  });
}

}  // namespace fota::cli

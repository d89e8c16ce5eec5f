// SPDX-License-Identifier: Apache-2.0
// fota-fuzz-seeds OUT_DIR: writes the binary part of the seed corpus (fuzz/make-seeds.sh writes
// the text part) from real encoded messages: what an UpdateEngine publishes and journals while it
// installs the fixture artifact, the commands that drive it, signed manifests and bundles made
// as `fotactl artifact create` makes them, and broker sessions of devices and the orchestrator.
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <variant>
#include <vector>

#include "audit_chain.hpp"
#include "fota/client/device_messages.hpp"
#include "fota/client/runtime.hpp"
#include "fota/common/codec.hpp"
#include "fota/common/encryption.hpp"
#include "fota/common/pki.hpp"
#include "fota/common/topics.hpp"
#include "fota/orchestrator/rollout_spec.hpp"
#include "fuzz_support.hpp"
#include "policy_script.hpp"

namespace {

using namespace fota;
namespace fs = std::filesystem;

fs::path out_dir;

void write_seed(const std::string& target, const std::string& name, const std::string& bytes) {
  const fs::path dir = out_dir / target;
  fs::create_directories(dir);
  std::ofstream(dir / name, std::ios::binary | std::ios::trunc)
      .write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::uint8_t channel_byte(common::Channel channel) {
  for (std::size_t i = 0; i < std::size(common::kAllChannels); ++i) {
    if (common::kAllChannels[i] == channel) return static_cast<std::uint8_t>(i);
  }
  return 0;
}

void device_message(const std::string& name, common::Channel channel, const std::string& payload) {
  write_seed("device_messages", name, std::string(1, static_cast<char>(channel_byte(channel))) + payload);
}

std::string journal_input(const client::journal::JournalRecord& record, const std::string& signed_manifest,
                          std::uint8_t boot) {
  const std::string journal = record.SerializeAsString();
  std::string input;
  input.push_back(static_cast<char>(journal.size() & 0xff));
  input.push_back(static_cast<char>((journal.size() >> 8) & 0xff));
  return input + journal + signed_manifest + static_cast<char>(boot);
}

// The fixture image as a chunk server sees it.
class ImageChunks final : public common::ChunkSource {
 public:
  ImageChunks(std::string image, std::uint32_t chunk_size)
      : image_(std::move(image)), chunk_size_(chunk_size) {}
  common::Result<std::uint32_t> chunk_count(const std::string& /*artifact_id*/) const override {
    return common::chunk_count(image_.size(), chunk_size_);
  }
  common::Status read_chunk(const std::string& /*artifact_id*/, std::uint32_t index,
                            std::string& out) const override {
    out = image_.substr(std::size_t{index} * chunk_size_, chunk_size_);
    return common::ok_status();
  }

 private:
  std::string image_;
  std::uint32_t chunk_size_;
};

// Answers an engine's actions as a device would until it asks to reboot (or has nothing left to
// do), writing what it publishes and journals as seeds named `stage`-n.
class SeedingDevice {
 public:
  SeedingDevice(const std::string& image, const v1::SignedManifest& manifest)
      : image_(image), chunks_(image, 1024), signed_manifest_(manifest.SerializeAsString()) {}

  void drive(client::UpdateEngine& engine, client::Actions actions, const std::string& stage,
             std::uint8_t boot) {
    std::vector<client::Action> pending(std::make_move_iterator(actions.begin()),
                                        std::make_move_iterator(actions.end()));
    auto take = [&](client::Actions more) {
      for (auto& a : more) pending.push_back(std::move(a));
    };
    for (std::size_t i = 0; i < pending.size() && i < 10'000; ++i) {
      now_ += 10;
      client::Action action = std::move(pending[i]);
      if (auto* persist = std::get_if<client::action::PersistJournal>(&action)) {
        last_journal_ = persist->record;
        write_seed("journal", stage + "-" + std::to_string(journals_++),
                   journal_input(persist->record, signed_manifest_, boot));
      } else if (auto* progress = std::get_if<client::action::PublishProgress>(&action)) {
        device_message(stage + "-progress-" + std::to_string(progress_++), common::Channel::kProgress,
                       progress->progress.SerializeAsString());
      } else if (auto* inventory = std::get_if<client::action::PublishInventory>(&action)) {
        device_message(stage + "-inventory-" + std::to_string(inventories_++), common::Channel::kInventory,
                       inventory->inventory.SerializeAsString());
      } else if (auto* request = std::get_if<client::action::RequestChunks>(&action)) {
        device_message(stage + "-chunk-request-" + std::to_string(requests_++),
                       common::Channel::kChunkRequest, request->request.SerializeAsString());
        auto response = common::respond_to_chunk_request(request->request, chunks_, common::ChunkBudget{});
        for (auto& chunk : response.replies) {
          if (chunks_written_++ < 2)
            device_message(stage + "-chunk-" + std::to_string(chunk.index()), common::Channel::kChunk,
                           chunk.SerializeAsString());
          take(engine.on_chunk(std::move(chunk), now_));
        }
      } else if (auto* hash = std::get_if<client::action::HashSlot>(&action)) {
        take(engine.on_slot_hash(common::digest_bytes(common::Sha256::digest(image_.substr(0, hash->size))),
                                 now_));
      } else if (std::holds_alternative<client::action::RunHealthCheck>(action)) {
        take(engine.on_health_result(true, "", now_));
      } else if (std::holds_alternative<client::action::Reboot>(action)) {
        return;
      }
    }
  }

  const client::journal::JournalRecord& last_journal() const { return last_journal_; }
  const std::string& signed_manifest() const { return signed_manifest_; }
  std::int64_t now() const { return now_; }

 private:
  std::string image_;
  ImageChunks chunks_;
  std::string signed_manifest_;
  client::journal::JournalRecord last_journal_;
  std::int64_t now_ = fuzz::kNowMs;
  int journals_ = 0, progress_ = 0, inventories_ = 0, requests_ = 0, chunks_written_ = 0;
};

void device_seeds() {
  const std::string image = fuzz::image_bytes(5000);
  const v1::SignedManifest manifest = fuzz::signed_manifest(image, 1024);
  const client::OpenSslEngineCrypto crypto(fuzz::trust_store(), fuzz::trust_store());
  SeedingDevice device(image, manifest);
  {
    client::UpdateEngine engine(fuzz::engine_config(), crypto);
    client::Actions actions = engine.on_started(client::BootStatus{"a", false}, fuzz::kNowMs);
    for (auto& a : engine.on_connected(fuzz::kNowMs)) actions.push_back(std::move(a));
    for (auto& a : engine.on_command(fuzz::signed_command(fuzz::install_command(manifest, "c-install")),
                                     fuzz::kNowMs)) {
      actions.push_back(std::move(a));
    }
    device.drive(engine, std::move(actions), "install", 0);
  }
  {
    // After the reboot: the new slot on trial (boot byte: slot b, trial), health check, commit.
    const auto record = device.last_journal();
    client::UpdateEngine engine(fuzz::engine_config(), crypto, &record, device.signed_manifest());
    client::Actions actions = engine.on_started(client::BootStatus{"b", true}, device.now());
    for (auto& a : engine.on_connected(device.now())) actions.push_back(std::move(a));
    device.drive(engine, std::move(actions), "confirm", 3);
  }

  // The commands a device receives.
  device_message("command-install", common::Channel::kCommand,
                 fuzz::signed_command(fuzz::install_command(manifest, "c-1")));
  v1::Command command = fuzz::install_command(manifest, "c-2");
  command.mutable_cancel();
  device_message("command-cancel", common::Channel::kCommand, fuzz::signed_command(command));
  command.set_command_id("c-3");
  command.mutable_rollback();
  device_message("command-rollback", common::Channel::kCommand, fuzz::signed_command(command));
  command.set_command_id("c-4");
  command.mutable_report_inventory();
  device_message("command-report-inventory", common::Channel::kCommand, fuzz::signed_command(command));
  command.set_command_id("c-5");
  command.mutable_set_log_level()->set_level(v1::LOG_LEVEL_DEBUG);
  device_message("command-set-log-level", common::Channel::kCommand, fuzz::signed_command(command));

  // What else a device publishes.
  const auto id = common::DeviceId::parse(fuzz::kDeviceId).value();
  device_message("presence-online", common::Channel::kPresence,
                 client::encode_presence(id, true, fuzz::kNowMs, "0.1.0"));
  device_message("presence-will", common::Channel::kPresence, client::encode_presence(id, false, 0, "0.1.0"));
  v1::LogBatch logs;
  logs.set_device_id(std::string(fuzz::kDeviceId));
  auto* entry = logs.add_entries();
  entry->set_timestamp_ms(fuzz::kNowMs);
  entry->set_level(v1::LOG_LEVEL_WARN);
  entry->set_message("chunk 3 failed its hash; asking again");
  entry->set_source("engine");
  logs.set_dropped(2);
  device_message("log", common::Channel::kLog, logs.SerializeAsString());
}

void manifest_and_bundle_seeds() {
  write_seed("manifest", "inline-hashes",
             fuzz::signed_manifest(fuzz::image_bytes(5000), 1024).SerializeAsString());
  write_seed("manifest", "one-chunk",
             fuzz::signed_manifest(fuzz::image_bytes(1, 'z'), 1024).SerializeAsString());
  // More than kMaxInlineChunkHashes chunks: a manifest with a hash table.
  write_seed("manifest", "hash-table",
             fuzz::signed_manifest(fuzz::image_bytes((common::kMaxInlineChunkHashes + 1) * 1024 + 7), 1024)
                 .SerializeAsString());
  write_seed("bundle", "three-chunks", fuzz::bundle_bytes(fuzz::image_bytes(3000), 1024));
  write_seed("bundle", "one-byte", fuzz::bundle_bytes(fuzz::image_bytes(1, 'q'), 1024));
}

std::string chunk_request(std::string_view device, std::string_view artifact, bool bitmap) {
  v1::ChunkRequest request;
  request.set_device_id(std::string(device));
  request.set_artifact_id(std::string(artifact));
  request.set_request_id(7);
  if (bitmap) {
    request.set_bitmap_base(1);
    request.set_bitmap(std::string(1, '\x0b'));
  } else {
    auto* range = request.add_ranges();
    range->set_first(0);
    range->set_count(3);
  }
  return request.SerializeAsString();
}

void broker_policy_seeds() {
  using fuzz::PolicyOp;
  using fuzz::PolicyTopic;
  const common::TopicScheme scheme;
  const auto dev1 = common::DeviceId::parse(fuzz::kDeviceId).value();
  constexpr std::string_view kServed = "0123456789abcdef0123456789abcdef";  // broker_policy_fuzzer's artifact
  constexpr std::string_view kUnknown = "ffffffffffffffffffffffffffffffff";
  auto topic = [](PolicyTopic t) { return static_cast<std::uint8_t>(t); };

  std::string device_session =
      fuzz::policy_step(PolicyOp::kConnect, 0, 0, 0, "") +
      fuzz::policy_step(PolicyOp::kSubscribe, 0, 0, 1, scheme.device_topic(dev1, common::Channel::kCommand)) +
      fuzz::policy_step(PolicyOp::kSubscribe, 0, 0, 0, scheme.device_topic(dev1, common::Channel::kChunk)) +
      fuzz::policy_step(PolicyOp::kPublish, 0, topic(PolicyTopic::kOwnChunkRequest), 1,
                        chunk_request(fuzz::kDeviceId, kServed, false)) +
      fuzz::policy_step(PolicyOp::kPublish, 0, topic(PolicyTopic::kOwnChunkRequest), 1,
                        chunk_request(fuzz::kDeviceId, kServed, true)) +
      fuzz::policy_step(PolicyOp::kPublish, 0, topic(PolicyTopic::kOwnChunkRequest), 1,
                        chunk_request(fuzz::kDeviceId, kUnknown, false)) +
      fuzz::policy_step(PolicyOp::kTick, 0, 0, 60, "") +
      fuzz::policy_step(PolicyOp::kDisconnect, 0, 0, 1, "");
  write_seed("broker_policy", "device-chunks", device_session);

  std::string hostile =
      fuzz::policy_step(PolicyOp::kConnect, 1, 0, 0, "") +
      fuzz::policy_step(PolicyOp::kSubscribe, 1, 0, 0, "fota/v1/dev/+/cmd") +
      fuzz::policy_step(PolicyOp::kPublish, 1, topic(PolicyTopic::kOtherChunkRequest), 0,
                        chunk_request(fuzz::kDeviceId, kServed, false)) +
      fuzz::policy_step(PolicyOp::kPublish, 1, topic(PolicyTopic::kOwnCommand) | fuzz::kRetainFlag, 0,
                        "not a command") +
      fuzz::policy_step(PolicyOp::kPublish, 1, topic(PolicyTopic::kTopicInPayload), 0,
                        std::string("fota/v1/dev/dev-1/progress") + '\0' + "x");
  for (int i = 0; i < 8; ++i) {
    hostile += fuzz::policy_step(PolicyOp::kPublish, 1, topic(PolicyTopic::kOwnChunkRequest), 0,
                                 chunk_request(fuzz::kOtherDeviceId, kServed, false));
  }
  hostile += fuzz::policy_step(PolicyOp::kDisconnect, 1, 0, 0, "") +
             fuzz::policy_step(PolicyOp::kConnect, 1, 0, 1, "");
  write_seed("broker_policy", "device-hostile", hostile);

  v1::Command command = fuzz::install_command(fuzz::signed_manifest(fuzz::image_bytes(2000), 1024), "c-1");
  std::string orchestrator =
      fuzz::policy_step(PolicyOp::kConnect, 2, 0, 0, "") +
      fuzz::policy_step(PolicyOp::kConnect, 0, 0, 0, "") +
      fuzz::policy_step(PolicyOp::kSubscribe, 2, 0, 0, scheme.shared_filter(common::Channel::kChunkRequest)) +
      fuzz::policy_step(PolicyOp::kSubscribe, 2, 0, 0,
                        scheme.all_devices_filter(common::Channel::kInventory)) +
      fuzz::policy_step(PolicyOp::kPublish, 2, topic(PolicyTopic::kOwnCommand), 1,
                        fuzz::signed_command(command)) +
      fuzz::policy_step(PolicyOp::kDeliver, 0, topic(PolicyTopic::kOwnCommand), 0, "") +
      fuzz::policy_step(PolicyOp::kPublish, 0, topic(PolicyTopic::kOwnChunkRequest), 1,
                        chunk_request(fuzz::kDeviceId, kUnknown, true)) +
      fuzz::policy_step(PolicyOp::kDeliver, 2, topic(PolicyTopic::kOwnChunkRequest), 0, "") +
      fuzz::policy_step(PolicyOp::kTick, 2, 0, 100, "");
  write_seed("broker_policy", "orchestrator-command", orchestrator);
}

// ---- Certificates, encrypted artifacts, audit checkpoints ---------------------------------

// A certificate request for the fixed fuzz TLS key (what fota-device makes with a fresh key:
// common::make_certificate_request), subject O = fota, OU = `role`, CN = `common_name`.
std::string fixed_key_request(const std::string& common_name, const std::string& role) {
  BIO* bio =
      BIO_new_mem_buf(fuzz::kFuzzDeviceTlsKeyPem.data(), static_cast<int>(fuzz::kFuzzDeviceTlsKeyPem.size()));
  EVP_PKEY* key = PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  X509_REQ* req = X509_REQ_new();
  X509_REQ_set_version(req, 0);
  X509_NAME* name = X509_REQ_get_subject_name(req);
  auto add = [&](const char* field, const std::string& value) {
    X509_NAME_add_entry_by_txt(name, field, MBSTRING_UTF8,
                               reinterpret_cast<const unsigned char*>(value.c_str()), -1, -1, 0);
  };
  add("O", "fota");
  add("OU", role);
  add("CN", common_name);
  X509_REQ_set_pubkey(req, key);
  if (key == nullptr || X509_REQ_sign(req, key, EVP_sha256()) <= 0) {
    std::fprintf(stderr, "fota-fuzz-seeds: signing a certificate request failed\n");
    std::exit(1);
  }
  BIO* out = BIO_new(BIO_s_mem());
  PEM_write_bio_X509_REQ(out, req);
  char* text = nullptr;
  const long size = BIO_get_mem_data(out, &text);
  std::string pem(text, static_cast<std::size_t>(size));
  BIO_free(out);
  X509_REQ_free(req);
  EVP_PKEY_free(key);
  return pem;
}

std::string der_of_request(const std::string& pem) {
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  X509_REQ* req = PEM_read_bio_X509_REQ(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  unsigned char* der = nullptr;
  const int size = i2d_X509_REQ(req, &der);
  std::string out(reinterpret_cast<const char*>(der), static_cast<std::size_t>(size > 0 ? size : 0));
  OPENSSL_free(der);
  X509_REQ_free(req);
  return out;
}

template <typename T>
T must(common::Result<T> result, const char* what) {
  if (!result) fuzz::fixture_failed(what, result.error());
  return std::move(result).value();
}

void cert_request_seeds() {
  auto request = [](const common::CertificateRequest& made, const std::string& device) {
    v1::CertificateRequest r;
    r.set_device_id(device);
    r.set_request_id(std::string(fuzz::kRenewalRequestId));
    r.set_csr_pem(made.csr_pem);
    return r.SerializeAsString();
  };
  const auto own = must(common::make_certificate_request(fuzz::kDeviceId, common::Role::kDevice), "request");
  write_seed("cert_request", "request", std::string(1, '\0') + request(own, std::string(fuzz::kDeviceId)));
  write_seed("cert_request", "request-der", std::string(1, '\1') + der_of_request(own.csr_pem));
  // The same through a real OrchestratorService (form byte bit 1).
  write_seed("cert_request", "service-request",
             std::string(1, '\2') + request(own, std::string(fuzz::kDeviceId)));
  write_seed("cert_request", "service-request-der", std::string(1, '\3') + der_of_request(own.csr_pem));
  // Refused: another device's name, another role.
  const auto other =
      must(common::make_certificate_request(fuzz::kOtherDeviceId, common::Role::kDevice), "request");
  write_seed("cert_request", "other-device",
             std::string(1, '\0') + request(other, std::string(fuzz::kDeviceId)));
  write_seed(
      "cert_request", "operator-role-der",
      std::string(1, '\1') + der_of_request(fixed_key_request(std::string(fuzz::kDeviceId), "operator")));
}

// The chain the fixed issuing CA signs for the fixed TLS key, CN = `common_name`.
std::string renewal_chain(const std::string& common_name) {
  const auto& ca = fuzz::fixed_issuing_ca();
  auto issued = ca.sign_request(fixed_key_request(common_name, "device"), common_name, common::Role::kDevice,
                                std::chrono::hours(24 * 3000));
  if (!issued) fuzz::fixture_failed("signing the renewal request", issued.error());
  return issued->cert_pem;
}

v1::CertificateIssued certificate_issued(const std::string& request_id, const std::string& chain) {
  v1::CertificateIssued issued;
  issued.set_request_id(request_id);
  issued.set_chain_pem(chain);
  if (auto not_after = common::certificate_not_after(chain)) issued.set_not_after(*not_after);
  return issued;
}

void cert_renewal_seeds() {
  const std::string chain = renewal_chain(std::string(fuzz::kDeviceId));
  write_seed("cert_renewal", "issued",
             certificate_issued(std::string(fuzz::kRenewalRequestId), chain).SerializeAsString());
  // Refused: another request's answer, another device's certificate, the leaf without its
  // issuing CA, a certificate for a fresh key.
  write_seed("cert_renewal", "other-request", certificate_issued("renew-0002", chain).SerializeAsString());
  write_seed("cert_renewal", "other-device",
             certificate_issued(std::string(fuzz::kRenewalRequestId),
                                renewal_chain(std::string(fuzz::kOtherDeviceId)))
                 .SerializeAsString());
  const std::string leaf = chain.substr(0, chain.find("-----END CERTIFICATE-----") + 26);
  write_seed("cert_renewal", "leaf-only",
             certificate_issued(std::string(fuzz::kRenewalRequestId), leaf).SerializeAsString());
  const auto fresh =
      must(common::make_certificate_request(fuzz::kDeviceId, common::Role::kDevice), "request");
  auto fresh_cert = fuzz::fixed_issuing_ca().sign_request(fresh.csr_pem, fuzz::kDeviceId,
                                                          common::Role::kDevice, std::chrono::hours(24 * 90));
  if (!fresh_cert) fuzz::fixture_failed("signing a fresh request", fresh_cert.error());
  write_seed(
      "cert_renewal", "other-key",
      certificate_issued(std::string(fuzz::kRenewalRequestId), fresh_cert->cert_pem).SerializeAsString());

  // The same answer as the orchestrator sends it, for the device_messages target.
  v1::Command command;
  command.set_command_id("cert-0001");
  command.set_device_id(std::string(fuzz::kDeviceId));
  command.set_issued_at_ms(fuzz::kNowMs);
  command.set_expires_at_ms(fuzz::kNowMs + 600'000);
  *command.mutable_certificate_issued() = certificate_issued(std::string(fuzz::kRenewalRequestId), chain);
  device_message("command-certificate-issued", common::Channel::kCommand, fuzz::signed_command(command));
}

std::string encrypted_input(const fuzz::EncryptedArtifact& artifact) {
  const std::string& manifest = artifact.manifest.manifest();
  std::string input;
  input.push_back(static_cast<char>(manifest.size() & 0xff));
  input.push_back(static_cast<char>((manifest.size() >> 8) & 0xff));
  return input + manifest + artifact.stored;
}

void encrypted_artifact_seeds() {
  const auto mine = fuzz::decryption_key()->public_key();
  const auto group = must(common::X25519PrivateKey::generate(), "an X25519 key").public_key();
  const auto artifact = fuzz::encrypted_artifact(fuzz::image_bytes(5000), 1024, {group, mine});
  write_seed("encrypted_artifact", "for-this-device", encrypted_input(artifact));
  write_seed("encrypted_artifact", "one-chunk",
             encrypted_input(fuzz::encrypted_artifact(fuzz::image_bytes(100, 'e'), 1024, {mine})));
  write_seed("encrypted_artifact", "other-recipient",
             encrypted_input(fuzz::encrypted_artifact(fuzz::image_bytes(3000, 'o'), 1024, {group})));
  // A wrapped key altered under a valid structure: it does not open (ERROR_KEY_UNWRAP_FAILED).
  auto manifest =
      must(common::decode<v1::Manifest>(artifact.manifest.manifest(), common::kMaxCommandBytes), "decode");
  for (auto& wrapped : *manifest.mutable_encryption()->mutable_recipients()) {
    std::string bytes = wrapped.wrapped_key();
    if (!bytes.empty()) bytes[0] = static_cast<char>(bytes[0] ^ 1);
    wrapped.set_wrapped_key(bytes);
  }
  fuzz::EncryptedArtifact tampered = artifact;
  tampered.manifest.set_manifest(manifest.SerializeAsString());
  write_seed("encrypted_artifact", "tampered-wrapped-key", encrypted_input(tampered));

  // For the existing targets: the encrypted manifest, and the command that installs it.
  write_seed("manifest", "encrypted", artifact.manifest.SerializeAsString());
  device_message("command-install-encrypted", common::Channel::kCommand,
                 fuzz::signed_command(fuzz::install_command(artifact.manifest, "c-enc")));
}

void audit_checkpoint_seeds() {
  const auto chain = fuzz::audit_chain();
  const auto key = fuzz::signing_key();
  auto line = [&](std::size_t seq, std::int64_t time_ms, const common::Ed25519PrivateKey& by) {
    return orchestrator::audit_checkpoint_line(
        must(orchestrator::sign_audit_checkpoint(chain[seq - 1], time_ms, by), "sign_audit_checkpoint"));
  };
  write_seed("audit_checkpoints", "two", line(3, 2'000'000, key) + line(6, 2'060'000, key));
  write_seed("audit_checkpoints", "one", line(6, 2'000'000, key));
  const auto other = must(common::Ed25519PrivateKey::generate(), "an Ed25519 key");
  write_seed("audit_checkpoints", "other-key", line(3, 2'000'000, key) + line(6, 2'060'000, other));
  // A line cut short by a crash while writing.
  const std::string cut = line(6, 2'060'000, key);
  write_seed("audit_checkpoints", "cut-short", line(3, 2'000'000, key) + cut.substr(0, cut.size() / 2));
}

// The canonical JSON of every YAML rollout spec make-seeds.sh wrote.
void rollout_spec_json_seeds() {
  for (const auto& entry : fs::directory_iterator(out_dir / "rollout_spec")) {
    if (entry.path().extension() != ".yaml") continue;
    auto text = common::read_file(entry.path());
    if (!text) fuzz::fixture_failed(entry.path().string(), text.error());
    auto spec = orchestrator::parse_rollout_spec(*text);
    if (!spec) fuzz::fixture_failed(entry.path().string(), spec.error());
    write_seed("rollout_spec", entry.path().stem().string() + ".json",
               orchestrator::rollout_spec_to_json(*spec));
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: fota-fuzz-seeds OUT_DIR (fuzz/make-seeds.sh runs it)\n");
    return 2;
  }
  out_dir = argv[1];
  device_seeds();
  manifest_and_bundle_seeds();
  broker_policy_seeds();
  rollout_spec_json_seeds();
  cert_request_seeds();
  cert_renewal_seeds();
  encrypted_artifact_seeds();
  audit_checkpoint_seeds();
  return 0;
}

// SPDX-License-Identifier: Apache-2.0
#include "sim_device.hpp"

#include <unistd.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>
#include <utility>

namespace fota::client::testing {

std::string make_image(std::size_t size, std::uint32_t seed) {
  std::string image(size, '\0');
  std::uint32_t x = seed * 2654435761U + 1;
  for (auto& c : image) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    c = static_cast<char>(x & 0xFF);
  }
  return image;
}

TestArtifact make_artifact(const common::Ed25519PrivateKey& key, const ArtifactOptions& options) {
  TestArtifact a;
  a.image = options.image.empty() ? make_image(options.size, options.seed) : options.image;
  v1::Manifest& m = a.manifest;
  const std::string id_source = options.version + "/" + std::to_string(options.seed);
  m.set_artifact_id(common::to_hex(common::digest_bytes(common::Sha256::digest(id_source))).substr(0, 32));
  m.set_name("firmware");
  m.set_version(options.version);
  m.set_security_counter(options.security_counter);
  for (const auto& h : options.hardware) m.add_compatible_hardware(h);
  m.set_payload_type(options.payload);
  m.set_payload_target(options.payload_target);
  m.set_image_size(a.image.size());
  m.set_image_sha256(common::digest_bytes(common::Sha256::digest(a.image)));
  m.set_chunk_size(options.chunk_size);
  std::string content_key;
  if (!options.encrypt_for.empty()) {
    content_key = common::generate_content_key().value();
    auto encryption = common::make_encryption(content_key, options.encrypt_for);
    if (!encryption.ok()) throw std::runtime_error(encryption.error().to_string());
    *m.mutable_encryption() = std::move(encryption).value();
  }
  std::uint32_t index = 0;
  for (std::size_t off = 0; off < a.image.size(); off += options.chunk_size, ++index) {
    std::string chunk = a.image.substr(off, options.chunk_size);
    if (!content_key.empty()) {
      auto sealed = common::encrypt_chunk(content_key, index, chunk);
      if (!sealed.ok()) throw std::runtime_error(sealed.error().to_string());
      chunk = std::move(sealed).value();
      if (options.broken_tag_chunk == index) chunk[chunk.size() / 2] ^= 0x20;
    }
    a.hash_table += common::digest_bytes(common::Sha256::digest(chunk));
    a.stored += chunk;
  }
  common::set_chunk_hashes(m, a.hash_table,
                           common::ChunkSpace::wants_hash_table(m.image_size(), m.chunk_size()));
  m.set_created_at_ms(1'700'000'000'000);
  auto signed_manifest = common::sign_manifest(m, key);
  if (!signed_manifest.ok()) throw std::runtime_error(signed_manifest.error().to_string());
  a.signed_manifest = *signed_manifest;
  return a;
}

v1::Command install_command(const std::string& id, const TestArtifact& artifact, std::int64_t now_ms,
                            std::int64_t valid_for_ms) {
  v1::Command c;
  c.set_command_id(id);
  c.set_deployment_id("dep-1");
  c.set_device_id(kDeviceId);
  c.set_issued_at_ms(now_ms);
  c.set_expires_at_ms(now_ms + valid_for_ms);
  *c.mutable_install()->mutable_manifest() = artifact.signed_manifest;
  return c;
}

const common::Ed25519PrivateKey& command_key() {
  static const common::Ed25519PrivateKey key = [] {
    auto generated = common::Ed25519PrivateKey::generate();
    if (!generated.ok()) throw std::runtime_error(generated.error().to_string());
    return std::move(generated).value();
  }();
  return key;
}

common::TrustStore command_keys() {
  common::TrustStore keys;
  keys.add(command_key().public_key());
  return keys;
}

std::string signed_command(const v1::Command& command) { return signed_command(command, command_key()); }

std::string signed_command(const v1::Command& command, const common::Ed25519PrivateKey& key) {
  auto payload = common::sign_command(command, key);
  if (!payload.ok()) throw std::runtime_error(payload.error().to_string());
  return std::move(payload).value();
}

OpenSslEngineCrypto engine_crypto(const common::Ed25519PrivateKey& artifact_key) {
  common::TrustStore artifact_keys;
  artifact_keys.add(artifact_key.public_key());
  return OpenSslEngineCrypto(std::move(artifact_keys), command_keys());
}

v1::Command rollback_command(const std::string& id, std::int64_t now_ms, const TestArtifact* artifact) {
  v1::Command c;
  c.set_command_id(id);
  c.set_deployment_id("dep-rb");
  c.set_device_id(kDeviceId);
  c.set_issued_at_ms(now_ms);
  c.set_expires_at_ms(now_ms + 60'000);
  c.mutable_rollback();
  if (artifact != nullptr) *c.mutable_rollback()->mutable_manifest() = artifact->signed_manifest;
  return c;
}

namespace {

// The served artifact in memory, with the faults the test asked for.
class FaultyMemorySource final : public common::ChunkSource {
 public:
  explicit FaultyMemorySource(ChunkServer& server)
      : server_(server), space_(common::ChunkSpace::of(server.artifact->manifest)) {}

  common::Result<std::uint32_t> chunk_count(const std::string& artifact_id) const override {
    if (server_.status == v1::CHUNK_STATUS_UNKNOWN_ARTIFACT ||
        artifact_id != server_.artifact->manifest.artifact_id())
      return common::Error(common::Errc::kNotFound, "not served here");
    return space_.total();
  }
  common::Status read_chunk(const std::string&, std::uint32_t i, std::string& out) const override {
    if (server_.status != v1::CHUNK_STATUS_OK)
      return common::Error(common::Errc::kUnavailable, "told to fail");
    const std::string& file =
        space_.is_hash_chunk(i) ? server_.artifact->hash_table : server_.artifact->stored;
    out = file.substr(static_cast<std::size_t>(space_.offset(i)), space_.length(i));
    if (server_.corrupt[i] > 0) {
      --server_.corrupt[i];
      out[0] = static_cast<char>(out[0] ^ 0x5A);
    }
    if (server_.oversize[i] > 0) {
      --server_.oversize[i];
      out += "extra bytes";
    }
    return common::ok_status();
  }

 private:
  ChunkServer& server_;
  common::ChunkSpace space_;
};

}  // namespace

std::vector<v1::ChunkData> ChunkServer::answer(const v1::ChunkRequest& request) {
  auto response = common::respond_to_chunk_request(request, FaultyMemorySource(*this), common::ChunkBudget{});
  if (response.summary.refusal == common::ChunkRefusal::kNone) {
    for (const auto& chunk : response.replies) {
      ++requested[chunk.index()];
      request_order.push_back(chunk.index());
    }
  }
  return std::move(response.replies);
}

common::Status RecordingTransport::publish(common::Channel channel, std::string payload) {
  switch (channel) {
    case common::Channel::kProgress:
      progress.emplace_back().ParseFromString(payload);
      break;
    case common::Channel::kInventory:
      inventory.emplace_back().ParseFromString(payload);
      break;
    case common::Channel::kChunkRequest:
      chunk_requests.emplace_back().ParseFromString(payload);
      break;
    default:
      break;
  }
  return common::ok_status();
}

SimDevice::SimDevice(std::filesystem::path dir, const EngineCrypto& crypto, std::string factory_image,
                     EngineConfig config)
    : dir_(std::move(dir)),
      crypto_(crypto),
      config_(std::move(config)),
      env_(dir_ / "bootenv.txt"),
      boot_(env_, *BootChooser::create({}), cmdline_file(dir_ / "cmdline")),
      journal_(dir_ / "journal") {
  std::filesystem::create_directories(dir_ / "files");
  std::filesystem::create_directories(dir_ / "modules");
  std::ofstream(dir_ / "slot-a", std::ios::binary) << factory_image;
  std::ofstream(dir_ / "slot-b", std::ios::binary) << "";
}

EngineConfig SimDevice::default_config() {
  EngineConfig c;
  c.device_id = kDeviceId;
  c.hardware_type = kHardware;
  c.slot_capacity_bytes = 64 * 1024;
  c.factory_version = "1.0.0";
  c.factory_security_counter = 1;
  c.initial_window = 4;
  c.chunk_timeout_ms = 1000;
  c.progress_interval_ms = 0;
  return c;
}

bool SimDevice::power_on(std::int64_t now_ms) {
  auto booted = simulate_bootloader(env_, boot_.chooser(), dir_ / "cmdline");
  if (!booted.ok()) throw std::runtime_error(booted.error().to_string());
  booted_slot_ = *booted;
  slots_ = std::make_unique<AbSlotInstaller>(
      std::map<std::string, std::filesystem::path>{{"a", dir_ / "slot-a"}, {"b", dir_ / "slot-b"}}, boot_);
  files_ = std::make_unique<FileInstaller>(
      std::map<std::string, std::filesystem::path>{{"app.conf", file_target("app.conf")}});
  // The simulated device's modules run as the test's own user, root included (said explicitly).
  ModuleSandbox sandbox;
  sandbox.user = ::geteuid() == 0 ? "root" : "";
  sandbox.timeout = std::chrono::seconds(10);
  auto modules = ModuleInstaller::create(modules_dir(), dir_ / "module-work", sandbox);
  if (!modules.ok()) throw std::runtime_error(modules.error().to_string());
  modules_ = std::move(modules).value();
  installer_ = std::make_unique<PayloadRouter>(*slots_, files_.get(), modules_.get());
  auto loaded = journal_.load();
  if (!loaded.ok()) throw std::runtime_error(loaded.error().to_string());
  if (loaded->has_value()) {
    engine_ =
        std::make_unique<UpdateEngine>(config_, crypto_, &(*loaded)->record, (*loaded)->signed_manifest);
  } else {
    engine_ = std::make_unique<UpdateEngine>(config_, crypto_);
  }
  DeviceRuntime::Hooks hooks;
  // Answered when the batch that started it is done (run()), unless it hangs.
  hooks.start_health_check = [this](HealthCheckTicket ticket, const HealthCheckSubject&, std::int64_t) {
    pending_health_check_ = ticket;
  };
  hooks.after_action = [this](const Action& a) {
    if (!is_side_effect(a) || std::holds_alternative<action::Reboot>(a)) return true;
    ++side_effects_executed;
    if (cut_after_side_effects >= 0 && side_effects_executed >= cut_after_side_effects) {
      cut_after_side_effects = -1;
      cut_happened = true;
      return false;
    }
    return true;
  };
  runtime_ = std::make_unique<DeviceRuntime>(*engine_, *installer_, journal_, transport_, hooks);
  auto status = installer_->boot_status();
  if (!status.ok()) throw std::runtime_error(status.error().to_string());
  if (!run(engine_->on_started(*status, now_ms), now_ms)) return false;
  return run(engine_->on_connected(now_ms), now_ms);
}

void SimDevice::power_off() {
  pending_health_check_ = 0;
  runtime_.reset();
  engine_.reset();
  installer_.reset();
  modules_.reset();
  files_.reset();
  slots_.reset();
  transport_.chunk_requests.clear();
}

bool SimDevice::run(Actions actions, std::int64_t now_ms) {
  if (!runtime_ || runtime_->stopped()) return false;
  bool running = runtime_->execute(std::move(actions), now_ms);
  while (running && pending_health_check_ != 0 && !health_check_hangs) {
    const HealthCheckTicket ticket = std::exchange(pending_health_check_, 0);
    running = runtime_->on_health_result(ticket, healthy, healthy ? "" : "application did not start", now_ms);
  }
  if (running) return true;
  power_off();  // rebooted or power cut: only the files remain
  return false;
}

std::string SimDevice::slot_content(const std::string& slot) const {
  std::ifstream in(dir_ / ("slot-" + slot), std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::map<std::string, std::string> SimDevice::boot_env() {
  auto vars = env_.load();
  return vars.ok() ? *vars : std::map<std::string, std::string>{};
}

bool serve_chunks(SimDevice& device, ChunkServer& server, std::int64_t now_ms) {
  auto& requests = device.transport().chunk_requests;
  while (device.running() && !requests.empty()) {
    v1::ChunkRequest request = std::move(requests.front());
    requests.pop_front();
    for (auto& chunk : server.answer(request)) {
      if (!device.running() || !device.run(device.engine().on_chunk(std::move(chunk), now_ms), now_ms))
        return false;
    }
  }
  return device.running();
}

}  // namespace fota::client::testing

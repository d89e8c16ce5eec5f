// SPDX-License-Identifier: Apache-2.0
// Test fixtures for the client: signed test artifacts, a simulated device (slot files, a
// file-backed bootloader environment, the file journal) driven through the real adapters, and
// an in-memory chunk server.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "fota/client/engine.hpp"
#include "fota/client/installer.hpp"
#include "fota/client/runtime.hpp"
#include "fota/common/artifact.hpp"
#include "fota/common/codec.hpp"
#include "fota/common/crypto.hpp"
#include "fota/common/encryption.hpp"
#include "fota/common/topics.hpp"

namespace fota::client::testing {

inline constexpr char kHardware[] = "board-rev2";
inline constexpr char kDeviceId[] = "dev-0001";

struct TestArtifact {
  std::string image;       // the plaintext the device writes
  std::string stored;      // what a chunk server holds: `image`, or its encrypted chunks
  std::string hash_table;  // every stored chunk's SHA-256, concatenated (served as hash chunks)
  v1::Manifest manifest;
  v1::SignedManifest signed_manifest;
};

// Deterministic pseudo-random image bytes.
std::string make_image(std::size_t size, std::uint32_t seed);

struct ArtifactOptions {
  std::string version = "2.0.0";
  std::uint64_t security_counter = 2;
  std::size_t size = 10 * 1024 + 300;
  std::uint32_t chunk_size = 1024;
  std::vector<std::string> hardware = {kHardware};
  v1::PayloadType payload = v1::PAYLOAD_TYPE_AB_IMAGE;
  std::string payload_target;
  std::uint32_t seed = 7;
  // Non-empty: the image itself (instead of make_image(size, seed)).
  std::string image = {};
  // Non-empty: the chunks are encrypted for these keys (docs/SECURITY.md, "Encrypted artifacts").
  std::vector<common::X25519PublicKey> encrypt_for;
  // An encrypted chunk altered before it is hashed and signed: its hash matches, its tag fails.
  std::optional<std::uint32_t> broken_tag_chunk;
};
// Chunk hashes as `fotactl artifact create` puts them: a hash table for an image of more than
// min(kMaxInlineChunkHashes, chunk_size / 32) chunks (33 at 1 KiB chunks), inline otherwise.
TestArtifact make_artifact(const common::Ed25519PrivateKey& key, const ArtifactOptions& options = {});

v1::Command install_command(const std::string& id, const TestArtifact& artifact, std::int64_t now_ms,
                            std::int64_t valid_for_ms = 60'000);
v1::Command rollback_command(const std::string& id, std::int64_t now_ms,
                             const TestArtifact* artifact = nullptr);

// The orchestrator command key client tests sign commands with (made once per test process),
// and a TrustStore holding its public key: what a device's command_keys hold.
const common::Ed25519PrivateKey& command_key();
common::TrustStore command_keys();
// `command` as the orchestrator publishes it: signed with `key` (command_key() by default).
// Throws when signing fails.
std::string signed_command(const v1::Command& command);
std::string signed_command(const v1::Command& command, const common::Ed25519PrivateKey& key);
// Engine crypto trusting `artifact_key` for manifests and command_key() for commands.
OpenSslEngineCrypto engine_crypto(const common::Ed25519PrivateKey& artifact_key);

// Answers chunk requests from one artifact: image chunks and hash-table chunks (ChunkSpace).
struct ChunkServer {
  explicit ChunkServer(const TestArtifact* served) : artifact(served) {}
  const TestArtifact* artifact = nullptr;
  // UNKNOWN_ARTIFACT: the server does not have the artifact; UNAVAILABLE: every read fails.
  v1::ChunkStatus status = v1::CHUNK_STATUS_OK;
  // Chunks to corrupt, by index, how many times.
  std::map<std::uint32_t, int> corrupt;
  std::map<std::uint32_t, int> oversize;
  std::map<std::uint32_t, int> requested;    // how often each index was asked for
  std::vector<std::uint32_t> request_order;  // every index asked for, in order
  // The replies of common::respond_to_chunk_request, with the faults above.
  std::vector<v1::ChunkData> answer(const v1::ChunkRequest& request);
};

// Captures what the runtime publishes.
class RecordingTransport : public Transport {
 public:
  common::Status publish(common::Channel channel, std::string payload) override;
  std::vector<v1::Progress> progress;
  std::vector<v1::Inventory> inventory;
  std::deque<v1::ChunkRequest> chunk_requests;
};

// In-memory Journal and Installer for DeviceRuntime and DeviceAgent tests. What they saw goes to a
// shared trace, in order: "write", "sync", "store", "manifest".
using Trace = std::vector<std::string>;

class MemoryJournal : public Journal {
 public:
  explicit MemoryJournal(Trace& trace) : trace_(trace) {}
  common::Result<std::optional<Loaded>> load() const override { return stored_; }
  common::Status store(const journal::JournalRecord& record) override {
    trace_.push_back("store");
    if (!stored_) stored_.emplace();
    stored_->record = record;
    return common::ok_status();
  }
  common::Status store_manifest(std::string_view signed_manifest) override {
    trace_.push_back("manifest");
    if (!stored_) stored_.emplace();
    stored_->signed_manifest = std::string(signed_manifest);
    return common::ok_status();
  }

 private:
  Trace& trace_;
  std::optional<Loaded> stored_;
};

class MemoryInstaller : public Installer {
 public:
  MemoryInstaller(Trace& trace, const EngineCrypto& crypto) : trace_(trace), crypto_(crypto) {}
  common::Result<BootStatus> boot_status() override { return BootStatus{"a", false}; }
  common::Status prepare(const action::PrepareSlot& prepare) override {
    if (!prepare.resume) slots_[prepare.slot].clear();
    return common::ok_status();
  }
  common::Status write(const std::string& slot, std::uint64_t offset, std::string_view data) override {
    trace_.push_back("write");
    auto& bytes = slots_[slot];
    if (bytes.size() < offset + data.size()) bytes.resize(offset + data.size());
    bytes.replace(offset, data.size(), data);
    return common::ok_status();
  }
  common::Status sync() override {
    trace_.push_back("sync");
    return common::ok_status();
  }
  common::Result<std::string> hash(const std::string& slot, std::uint64_t size) override {
    return crypto_.sha256(std::string_view(slots_[slot]).substr(0, size));
  }
  common::Result<std::string> read(const std::string& slot, std::uint64_t offset,
                                   std::uint32_t size) override {
    const std::string& bytes = slots_[slot];
    if (offset >= bytes.size()) return std::string();
    return bytes.substr(offset, size);
  }
  // What a slot holds (tests fill the running slot with an old image).
  std::string& slot(const std::string& name) { return slots_[name]; }
  common::Status activate(const std::string&) override { return common::ok_status(); }
  common::Status commit(const std::string&) override { return common::ok_status(); }
  common::Status revert(const std::string&) override { return common::ok_status(); }

 private:
  Trace& trace_;
  const EngineCrypto& crypto_;
  std::map<std::string, std::string> slots_;
};

// A device made of files: slots a and b, a boot environment, a journal directory.
class SimDevice {
 public:
  SimDevice(std::filesystem::path dir, const EngineCrypto& crypto, std::string factory_image,
            EngineConfig config = default_config());
  static EngineConfig default_config();

  // Power-on: the simulated bootloader picks a slot, the engine loads the journal and starts.
  // Returns false when the batch stopped (reboot or cut).
  bool power_on(std::int64_t now_ms);
  // Power cut / reboot: the engine and runtime vanish; only files remain.
  void power_off();
  bool running() const { return engine_ != nullptr; }
  // Feeds an input's actions through the runtime. Returns false when execution stopped.
  bool run(Actions actions, std::int64_t now_ms);

  UpdateEngine& engine() { return *engine_; }
  RecordingTransport& transport() { return transport_; }
  std::string slot_content(const std::string& slot) const;
  // Files a "file:" payload may replace: <dir>/files/<name>. Update modules: <dir>/modules/<name>.
  std::filesystem::path file_target(const std::string& name) const { return dir_ / "files" / name; }
  std::filesystem::path modules_dir() const { return dir_ / "modules"; }
  std::map<std::string, std::string> boot_env();
  const std::string& booted_slot() const { return booted_slot_; }

  bool healthy = true;
  // While set, the health check does not answer.
  bool health_check_hangs = false;
  // Cut power after this many executed side effects (counted from now); < 0 = never.
  int cut_after_side_effects = -1;
  int side_effects_executed = 0;
  bool cut_happened = false;

 private:
  std::filesystem::path dir_;
  const EngineCrypto& crypto_;
  EngineConfig config_;
  FileBootEnvironment env_;
  BootControl boot_;
  FileJournal journal_;
  RecordingTransport transport_;
  std::unique_ptr<AbSlotInstaller> slots_;
  std::unique_ptr<FileInstaller> files_;
  std::unique_ptr<ModuleInstaller> modules_;
  std::unique_ptr<PayloadRouter> installer_;
  std::unique_ptr<UpdateEngine> engine_;
  std::unique_ptr<DeviceRuntime> runtime_;
  std::string booted_slot_;
  HealthCheckTicket pending_health_check_ = 0;  // a check started and not answered yet
};

// Serves chunk requests until nothing is requested any more or the device stops (reboot or
// power cut). Returns false when the device stopped.
bool serve_chunks(SimDevice& device, ChunkServer& server, std::int64_t now_ms);

}  // namespace fota::client::testing

// SPDX-License-Identifier: Apache-2.0
// The device update engine: a sans-IO state machine. C++17 (firmware toolchains lag).
//
// Inputs (decoded messages, chunk data, timer expiry, "started after boot", health-check
// result, results of slow actions) and `now_ms` go in; a list of actions comes out, which the
// caller executes in order. No threads, sockets, clock, MQTT or OpenSSL inside: crypto is
// injected through EngineCrypto. The same engine runs on a device (DeviceRuntime + MQTT
// adapter), in tests with virtual time, and thousands of times in one simulator process.
//
// Contract for the caller (docs/CLIENT.md, "Driving the engine"):
//  1. Construct with the journal loaded from storage (or none on first start).
//  2. Call on_started() once, with which slot the bootloader booted.
//  3. Execute every returned action in order. When a side effect fails, stop executing the
//     rest of that batch and call on_action_failed() (its actions are executed likewise).
//     PersistJournal must be durable (and slot writes synced) before the next action runs.
//  4. Call on_tick() when now_ms >= next_deadline_ms().
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "fota/client/journal.pb.h"
#include "fota/common/result.hpp"
#include "fota/v1/fota.pb.h"

namespace fota::client {

// Slot names of payloads that are installed in place rather than into an A/B slot:
// "file:<payload_target>" and "module:<payload_target>" (see PayloadRouter).
inline constexpr char kFileSlotPrefix[] = "file:";
inline constexpr char kModuleSlotPrefix[] = "module:";

// Crypto the engine needs. The real implementation (OpenSslEngineCrypto, target fota_client)
// uses fota_crypto's Sha256 and TrustStore.
class EngineCrypto {
 public:
  virtual ~EngineCrypto() = default;
  // SHA-256 of `data` as 32 raw bytes.
  virtual std::string sha256(std::string_view data) const = 0;
  // Verifies the signature with a trusted key, parses the manifest and checks its structure.
  // Errors: Errc::kUntrustedKey (no trusted key with that id), Errc::kBadSignature,
  // Errc::kMalformed (does not parse or fails the structural checks).
  virtual common::Result<v1::Manifest> verify_manifest(const v1::SignedManifest& signed_manifest) const = 0;
  // Verifies a command payload's signature with a trusted command key (not an artifact key) and
  // decodes it (common::verify_command). Errors: Errc::kTooLarge, Errc::kMalformed,
  // Errc::kUntrustedKey, Errc::kBadSignature (also for a command that is not signed).
  virtual common::Result<v1::Command> verify_command(std::string_view payload) const = 0;

  // Encrypted artifacts (docs/SECURITY.md, "Encrypted artifacts"). A crypto without a decryption
  // key keeps these defaults: it has no key id and is the recipient of nothing.
  // The id of the X25519 key this device decrypts with (16 hex chars); empty when it has none.
  virtual std::string decryption_key_id() const { return {}; }
  // The content key (32 raw bytes) wrapped for this device in `encryption`. Errors:
  // Errc::kNotFound (nothing wrapped for this device's key, or it has no key),
  // Errc::kIntegrity (the entry for it does not open), Errc::kInvalidArgument (unknown scheme).
  virtual common::Result<std::string> unwrap_content_key(const v1::ArtifactEncryption& encryption) const {
    (void)encryption;
    return common::Error(common::Errc::kNotFound,
                         "this device has no decryption key (fota-device: decryption_key)");
  }
  // Decrypts image chunk `index` in place (ciphertext || tag in, plaintext out). Errors:
  // Errc::kIntegrity when the GCM tag fails.
  virtual common::Status decrypt_chunk(std::string_view content_key, std::uint32_t index,
                                       std::string& data) const {
    (void)content_key;
    (void)index;
    (void)data;
    return common::Error(common::Errc::kInternal, "this crypto cannot decrypt");
  }
};

struct EngineConfig {
  std::string device_id;
  std::string hardware_type;
  std::string client_version = "0.1.0";
  std::string time_zone;
  std::map<std::string, std::string> attributes;
  // A/B slot names; the slot not running is the install target.
  std::string slot_a = "a";
  std::string slot_b = "b";
  std::uint64_t slot_capacity_bytes = 0;
  // What the device runs before any journal exists.
  std::string factory_version = "factory";
  std::uint64_t factory_security_counter = 0;
  std::vector<v1::PayloadType> capabilities = {v1::PAYLOAD_TYPE_AB_IMAGE};

  // Download window: outstanding chunk requests. Adaptive (AIMD) between min and max when
  // adaptive_window is set; an InstallCommand's max_inflight_chunks caps it.
  std::uint32_t initial_window = 8;
  std::uint32_t min_window = 1;
  std::uint32_t max_window = 64;
  bool adaptive_window = true;
  std::int64_t chunk_timeout_ms = 5000;
  // Hash mismatches of one chunk before the update fails with ERROR_CHUNK_HASH_MISMATCH.
  std::uint32_t max_chunk_failures = 3;
  // No verified chunk for this long while connected: the update fails (ERROR_DOWNLOAD_TIMEOUT).
  std::int64_t download_stall_timeout_ms = 5 * 60 * 1000;
  // Pause after CHUNK_STATUS_UNAVAILABLE before asking again.
  std::int64_t unavailable_backoff_ms = 2000;
  std::int64_t health_check_timeout_ms = 60 * 1000;
  // Download progress is reported at most this often; phase changes immediately.
  std::int64_t progress_interval_ms = 1000;
  // Journal store after this many verified chunks (1 = a power cut never re-fetches one).
  std::uint32_t persist_every_chunks = 1;
  // Before downloading an A/B image, copy the chunks the running slot already holds (their hash
  // matches the signed manifest's) instead of downloading them (docs/CLIENT.md, "Reuse").
  bool reuse_active_slot = true;
  // How many recent command ids are remembered to refuse replays.
  std::size_t replay_memory = 128;
  // Device clocks run fast or slow (no RTC, no NTP yet): a command counts as expired only this
  // long after its expires_at_ms by this device's clock. Freshness does not rest on the device's
  // clock alone: the orchestrator sets the MQTT message expiry to the same TTL, so the broker
  // drops a command that sat queued too long. Replays are refused by id either way.
  std::int64_t clock_skew_allowance_ms = 60 * 60 * 1000;
  // Called with the index in engine_transitions() of every transition the engine takes, for
  // tests and tracing. Runs inside the engine's call; must not call the engine.
  std::function<void(std::size_t row)> on_transition;
};

// Which slot the bootloader started, reported once after every (re)start.
struct BootStatus {
  std::string booted_slot;
  // True when this is a boot-once trial of a slot that is not committed yet.
  bool trial = false;
};

// What the engine asks its caller to do.
namespace action {
struct PublishProgress {
  v1::Progress progress;
};
struct PublishInventory {
  v1::Inventory inventory;
};
struct RequestChunks {
  v1::ChunkRequest request;
};
// Store the journal durably (write temp, fsync, rename) after syncing pending slot writes.
struct PersistJournal {
  journal::JournalRecord record;
};
// Store the verified SignedManifest of the update (needed to resume after a restart).
struct StoreManifest {
  std::string artifact_id;
  std::string signed_manifest;  // serialized v1::SignedManifest
};
// Open the target slot for writing `image_size` bytes; `resume` keeps what is there.
struct PrepareSlot {
  std::string slot;
  std::uint64_t image_size = 0;
  bool resume = false;
  v1::PayloadType payload_type = v1::PAYLOAD_TYPE_AB_IMAGE;
  std::string payload_target;
};
struct WriteChunk {
  std::string slot;
  std::uint64_t offset = 0;
  std::string data;
};
// Read the first `size` bytes of the slot back and answer with on_slot_hash().
struct HashSlot {
  std::string slot;
  std::uint64_t size = 0;
};
// Reuse phase (docs/CLIENT.md, "Reuse what the device already has"): read chunk `index` of the
// running slot (`size` bytes at `offset`, fewer at its end) and answer with on_active_chunk().
// One chunk at a time, so memory does not grow with the image.
struct ReadActiveChunk {
  std::string slot;
  std::uint32_t index = 0;
  std::uint64_t offset = 0;
  std::uint32_t size = 0;
};
// Make the bootloader start `slot` once, on trial (A/B: boot-once switch, boot counter reset).
struct ActivateSlot {
  std::string slot;
};
struct Reboot {};
// Run the application's health check; answer with on_health_result() before deadline_ms.
struct RunHealthCheck {
  std::int64_t deadline_ms = 0;
};
// Make the trial slot permanent.
struct CommitSlot {
  std::string slot;
};
// Drop a pending trial so the next boot starts `boot_slot` (the committed one).
struct RevertSlot {
  std::string boot_slot;
};
struct SetLogLevel {
  v1::LogLevel level = v1::LOG_LEVEL_INFO;
};
// A verified, accepted command carried a certificate for this device's renewal request: the
// agent's CertificateRenewal checks it against its pending request before anything is installed.
struct InstallCertificate {
  v1::CertificateIssued issued;
  std::string command_id;  // the command that carried it, for the refusal report
};
// A verified, accepted command asked the device to renew its certificate now (the operator's
// `fotactl device renew-cert`): the agent's CertificateRenewal starts a request whatever its
// renew_before says.
struct RenewCertificate {
  std::string command_id;
  std::string reason;
};
// A line for the device log (the engine has no logger of its own).
struct Log {
  v1::LogLevel level = v1::LOG_LEVEL_INFO;
  std::string message;
};
}  // namespace action

using Action =
    std::variant<action::PublishProgress, action::PublishInventory, action::RequestChunks,
                 action::PersistJournal, action::StoreManifest, action::PrepareSlot, action::WriteChunk,
                 action::HashSlot, action::ActivateSlot, action::Reboot, action::RunHealthCheck,
                 action::CommitSlot, action::RevertSlot, action::SetLogLevel, action::Log,
                 action::InstallCertificate, action::RenewCertificate, action::ReadActiveChunk>;
using Actions = std::vector<Action>;

// Short name of an action for logs ("PersistJournal").
const char* action_name(const Action& action) noexcept;
// True for actions that change storage or the boot state (the crash-point test cuts there).
bool is_side_effect(const Action& action) noexcept;

enum class EngineState {
  kAwaitingStart,  // constructed; on_started() not called yet
  kIdle,
  kDownloading,
  kVerifying,
  kInstalling,
  kRebooting,
  kConfirming,
  kRollingBack,
};
const char* engine_state_name(EngineState state) noexcept;

// One row of the engine's transition table (docs/CLIENT.md, "States and the transition table"):
// on `event` in state `from`, when `guard` holds, the engine moves to `to`. Every state change
// an engine makes is one row; one without a row is logged as a bug and counted in
// EngineStats::unexpected_events, and the state is kept.
struct EngineTransition {
  EngineState from;
  const char* event;  // the input: "Started", "Command", "Chunk", "Tick", "SlotHash", ...
  const char* guard;  // the condition the handler found, e.g. "every chunk verified"
  EngineState to;
};
// The rows, top to bottom.
const std::vector<EngineTransition>& engine_transitions();

// Counters for tests, the simulator and link statistics.
struct EngineStats {
  std::uint64_t chunks_requested = 0;  // chunk indices asked for (re-requests included)
  std::uint64_t chunks_verified = 0;   // this session
  std::uint64_t chunk_retries = 0;     // timeouts and hash mismatches
  std::uint64_t bytes_received = 0;
  std::uint64_t chunks_reused = 0;        // copied from the running slot (this session)
  std::uint64_t unexpected_events = 0;    // events or moves without a transition (a bug, also logged)
  std::uint64_t commands_unverified = 0;  // command payloads refused before use: unsigned, forged, malformed
  std::uint32_t reconnects = 0;           // on_connected() calls after the first, this session
  std::uint32_t window = 0;
  std::uint32_t rtt_ms = 0;
};

class UpdateEngine {
 public:
  // `journal` is the last stored record (none on first start) and `signed_manifest` the
  // manifest stored with StoreManifest for the journal's update (may be empty when idle).
  // `crypto` must outlive the engine.
  UpdateEngine(EngineConfig config, const EngineCrypto& crypto,
               const journal::JournalRecord* journal = nullptr, std::string_view signed_manifest = {});
  ~UpdateEngine();
  UpdateEngine(const UpdateEngine&) = delete;
  UpdateEngine& operator=(const UpdateEngine&) = delete;

  // The bootloader started `boot.booted_slot`. Resumes, confirms or reverts what the journal
  // says was in progress.
  Actions on_started(const BootStatus& boot, std::int64_t now_ms);
  // The payload of a message on the device's command topic. Its signature is verified before
  // anything else (EngineCrypto::verify_command); a command that fails is only logged (a Log
  // action, EngineStats::commands_unverified): nothing in it is trusted, not even its ids, so it
  // is not answered and touches neither the journal nor the replay memory.
  Actions on_command(std::string_view payload, std::int64_t now_ms);
  // A decoded ChunkData; `chunk.data` is moved into the WriteChunk action.
  Actions on_chunk(v1::ChunkData chunk, std::int64_t now_ms);
  // Call when now_ms >= next_deadline_ms() (calling earlier is harmless).
  Actions on_tick(std::int64_t now_ms);
  // The MQTT session is up (again): publish inventory, resume the download.
  Actions on_connected(std::int64_t now_ms);
  Actions on_disconnected(std::int64_t now_ms);
  // Answer to HashSlot: the 32-byte SHA-256 of the slot, or the read error.
  Actions on_slot_hash(const common::Result<std::string>& digest, std::int64_t now_ms);
  // Answer to ReadActiveChunk: the bytes of chunk `index` of the running slot, or the read error
  // (an installer that cannot read its running slot ends the reuse phase: everything is downloaded).
  Actions on_active_chunk(std::uint32_t index, const common::Result<std::string>& data, std::int64_t now_ms);
  // Answer to RunHealthCheck.
  Actions on_health_result(bool healthy, const std::string& detail, std::int64_t now_ms);
  // A side-effect action of the last batch failed; the rest of that batch was not executed.
  Actions on_action_failed(const Action& failed, const common::Error& error, std::int64_t now_ms);

  // When on_tick() should be called next; INT64_MAX when nothing is pending.
  std::int64_t next_deadline_ms() const noexcept;

  EngineState state() const noexcept;
  const journal::JournalRecord& record() const noexcept;
  const EngineStats& stats() const noexcept;
  // Inventory as it would be published now.
  v1::Inventory inventory(std::int64_t now_ms) const;

  static constexpr std::int64_t kNoDeadline = std::numeric_limits<std::int64_t>::max();
  static constexpr std::uint32_t kJournalFormatVersion = 1;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace fota::client

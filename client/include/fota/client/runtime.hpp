// SPDX-License-Identifier: Apache-2.0
// Adapters around the engine: OpenSSL crypto, the Journal port and its file implementation, and
// DeviceRuntime which executes the engine's actions against an Installer, a Journal and a
// transport. C++17.
#pragma once

#include <cstdint>
#include <deque>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fota/client/engine.hpp"
#include "fota/client/installer.hpp"
#include "fota/common/crypto.hpp"
#include "fota/common/encryption.hpp"
#include "fota/common/result.hpp"
#include "fota/common/topics.hpp"

namespace fota::client {

// EngineCrypto over fota_crypto (OpenSSL 3).
class OpenSslEngineCrypto : public EngineCrypto {
 public:
  // `artifact_keys` verify manifests (release keys); `command_keys` verify commands (orchestrator
  // command keys). Two stores, so neither kind of key is ever accepted for the other.
  // `decryption_key`, when given, opens encrypted artifacts wrapped for it.
  OpenSslEngineCrypto(common::TrustStore artifact_keys, common::TrustStore command_keys,
                      std::shared_ptr<const common::X25519PrivateKey> decryption_key = nullptr);
  std::string sha256(std::string_view data) const override;
  common::Result<v1::Manifest> verify_manifest(const v1::SignedManifest& signed_manifest) const override;
  common::Result<v1::Command> verify_command(std::string_view payload) const override;
  std::string decryption_key_id() const override { return decryption_key_id_; }
  common::Result<std::string> unwrap_content_key(const v1::ArtifactEncryption& encryption) const override;
  common::Status decrypt_chunk(std::string_view content_key, std::uint32_t index,
                               std::string& data) const override;

 private:
  common::TrustStore artifact_keys_;
  common::TrustStore command_keys_;
  std::shared_ptr<const common::X25519PrivateKey> decryption_key_;
  std::string decryption_key_id_;
};

// Where the engine's journal lives: the record (PersistJournal) and the signed manifest of the
// update in progress (StoreManifest). A store must be durable when it returns: the engine runs
// the next side effect on the strength of it. FileJournal on a device; fota-sim's simulated
// storage keeps it in memory and loses what a power cut would.
class Journal {
 public:
  virtual ~Journal() = default;

  struct Loaded {
    journal::JournalRecord record;
    std::string signed_manifest;  // empty when none is stored
  };
  // nullopt when no journal exists yet (first start). Errors: kMalformed (unreadable journal,
  // or a format version newer than this client), kIo.
  virtual common::Result<std::optional<Loaded>> load() const = 0;
  // Errors: kIo (the store did not happen; the previous record stays).
  virtual common::Status store(const journal::JournalRecord& record) = 0;
  virtual common::Status store_manifest(std::string_view signed_manifest) = 0;
};

// The crash-safe journal: <dir>/journal.pb (JournalRecord) and <dir>/manifest.pb (the
// SignedManifest of the current update). Each store writes a temp file, fsyncs it, renames it
// over the old one and fsyncs the directory, so a power cut leaves the old or the new version.
class FileJournal : public Journal {
 public:
  explicit FileJournal(std::filesystem::path dir);

  common::Result<std::optional<Loaded>> load() const override;
  common::Status store(const journal::JournalRecord& record) override;
  common::Status store_manifest(std::string_view signed_manifest) override;
  const std::filesystem::path& dir() const noexcept { return dir_; }

 private:
  std::filesystem::path dir_;
};

// Writes `content` to `path` atomically and durably (temp, fsync, rename, fsync dir).
common::Status write_file_atomically(const std::filesystem::path& path, std::string_view content);

// Where published messages go (the MQTT adapter, or a test).
class Transport {
 public:
  virtual ~Transport() = default;
  // Errors are reported but not fatal: the engine repairs lost messages by re-requesting.
  virtual common::Status publish(common::Channel channel, std::string payload) = 0;
};

// What a health check is asked to confirm: the update on trial, as the engine's journal record
// holds it when the engine asks for the check (RunHealthCheck).
struct HealthCheckSubject {
  std::string slot;  // the slot booted on trial; file:<target> or module:<name> for in-place payloads
  std::string version;
  std::string artifact_id;
};

// The application's health check: true = healthy; when unhealthy, `detail` says why. It may block
// (run a command, wait for a service); ThreadedHealthCheck keeps it off the caller's loop.
using HealthCheck = std::function<bool(const HealthCheckSubject& subject, std::string& detail)>;

// Names one health check the runtime started, so its answer cannot be taken for another's.
using HealthCheckTicket = std::uint64_t;

// Runs a blocking HealthCheck on a thread of its own per check, so the loop that drives the
// runtime never waits for it; the answer waits in a mailbox the owner empties on its own thread
// (take()) and hands to DeviceRuntime::on_health_result(). A check that hangs leaves its thread
// behind (the engine counts it unhealthy at its deadline); its late answer is dropped.
class ThreadedHealthCheck {
 public:
  struct Answer {
    HealthCheckTicket ticket = 0;
    bool healthy = false;
    std::string detail;
  };
  // `notify` runs on the check's thread right after an answer landed (wake the owner's loop); it
  // is never called once this object is destroyed. An exception thrown by `check` is an
  // unhealthy answer that names it.
  explicit ThreadedHealthCheck(HealthCheck check, std::function<void()> notify = {});
  ~ThreadedHealthCheck();
  ThreadedHealthCheck(const ThreadedHealthCheck&) = delete;
  ThreadedHealthCheck& operator=(const ThreadedHealthCheck&) = delete;

  // Starts checking `subject` and returns at once.
  void start(HealthCheckTicket ticket, HealthCheckSubject subject);
  // The answers that arrived since the last call, oldest first.
  std::vector<Answer> take();

 private:
  struct Mailbox;
  HealthCheck check_;
  std::shared_ptr<Mailbox> mailbox_;
};

// Executes engine actions in order, feeding results back into the engine.
class DeviceRuntime {
 public:
  struct Hooks {
    // Starts the application's health check of `subject` (the update on trial) and returns at
    // once: the owner delivers the answer later with on_health_result(ticket, ...), on the thread
    // that drives the runtime. No answer by `deadline_ms` (the engine's, health_check_timeout_ms
    // after the check began) counts as unhealthy when the owner ticks the engine; a later answer
    // is dropped. Unset: healthy at once.
    std::function<void(HealthCheckTicket ticket, const HealthCheckSubject& subject, std::int64_t deadline_ms)>
        start_health_check;
    // Called for Reboot. The runtime stops executing further actions after it.
    std::function<void()> reboot;
    // Called for SetLogLevel and Log actions.
    std::function<void(v1::LogLevel level)> set_log_level;
    std::function<void(v1::LogLevel level, const std::string& message)> log;
    // Called for InstallCertificate and RenewCertificate (the device agent's certificate
    // renewal). Unset: ignored.
    std::function<void(const action::InstallCertificate& issued)> certificate_issued;
    std::function<void(const action::RenewCertificate& renew)> renew_certificate;
    // Sees each action before it runs, with the actions queued after it (simulators: a power cut
    // somewhere inside a phase). Returning false stops the runtime before that action, as if
    // power were cut.
    std::function<bool(const Action& action, const std::deque<Action>& upcoming)> before_action;
    // Observes every executed action (tests: crash points). Returning false stops the
    // runtime right after that action, as if power were cut.
    std::function<bool(const Action& action)> after_action;
  };

  DeviceRuntime(UpdateEngine& engine, Installer& installer, Journal& journal, Transport& transport,
                Hooks hooks);

  // Executes `actions` and everything they lead to. Returns false once stopped (reboot or an
  // after_action hook said stop); further calls then do nothing.
  bool execute(Actions actions, std::int64_t now_ms);
  // The answer to the health check `ticket` (see Hooks::start_health_check): fed to the engine and
  // the resulting actions executed, as execute() does. An answer to a check that is no longer
  // awaited (another ticket, past its deadline, engine no longer confirming) is dropped. Returns
  // what execute() returns.
  bool on_health_result(HealthCheckTicket ticket, bool healthy, const std::string& detail,
                        std::int64_t now_ms);
  // A health check was started and its answer has not arrived.
  bool health_check_pending() const noexcept { return pending_check_ != 0; }
  bool stopped() const noexcept { return stopped_; }
  bool reboot_requested() const noexcept { return reboot_requested_; }

 private:
  common::Status run_side_effect(const Action& action);
  UpdateEngine& engine_;
  Installer& installer_;
  Journal& journal_;
  Transport& transport_;
  Hooks hooks_;
  bool stopped_ = false;
  bool reboot_requested_ = false;
  HealthCheckTicket last_ticket_ = 0;
  HealthCheckTicket pending_check_ = 0;  // 0 = none
  std::int64_t pending_deadline_ms_ = 0;
};

}  // namespace fota::client

// SPDX-License-Identifier: Apache-2.0
// Installers and the bootloader environment they drive. C++17.
//
// An Installer executes the storage and boot actions of the UpdateEngine. The A/B slot
// installer writes the inactive slot (a file or a block device) and switches the boot loader
// through a BootControl (boot_environment.hpp): the fota boot scheme over GRUB's or U-Boot's
// environment, or a file for tests and the simulator.
#pragma once

#include <sys/types.h>
#include <chrono>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include "fota/client/boot_environment.hpp"
#include "fota/client/engine.hpp"
#include "fota/common/result.hpp"

namespace fota::client {

// Where an installer sends the output of what it runs (an update module's progress and stderr
// lines): the device's log stream (LogBatch). `source` names the origin, "module:<name>".
using InstallerLogSink = std::function<void(v1::LogLevel level, std::string message, std::string source)>;

class Installer {
 public:
  virtual ~Installer() = default;
  // Which slot runs now and whether it runs on trial. Called when the agent is up, once per
  // start: an installer may take it as the sign that this boot is good (BootControl does).
  virtual common::Result<BootStatus> boot_status() = 0;
  // Opens `slot` for an image of `image_size` bytes; `resume` keeps its content.
  virtual common::Status prepare(const action::PrepareSlot& prepare) = 0;
  virtual common::Status write(const std::string& slot, std::uint64_t offset, std::string_view data) = 0;
  // Makes the writes so far durable (called before every journal store).
  virtual common::Status sync() = 0;
  // SHA-256 (32 raw bytes) of the first `size` bytes of `slot`.
  virtual common::Result<std::string> hash(const std::string& slot, std::uint64_t size) = 0;
  // Up to `size` bytes of `slot` at `offset` (fewer at its end), for the reuse phase: the engine
  // reads the running slot one chunk at a time (action::ReadActiveChunk). An installer that cannot
  // read its slots keeps this default, and the engine downloads every chunk.
  virtual common::Result<std::string> read(const std::string& slot, std::uint64_t offset,
                                           std::uint32_t size) {
    (void)offset;
    (void)size;
    return common::Error(common::Errc::kNotFound, "this installer cannot read slot '" + slot + "'");
  }
  // Boot `slot` on trial from the next boot on (the boot loader gives it a few tries).
  virtual common::Status activate(const std::string& slot) = 0;
  // Make the running trial slot permanent.
  virtual common::Status commit(const std::string& slot) = 0;
  // Make `boot_slot` the committed slot and drop any trial.
  virtual common::Status revert(const std::string& boot_slot) = 0;
  // Where the output of what the installer runs goes, called on the thread that calls the
  // installer; an empty function drops it. The DeviceAgent sets it for its lifetime and clears it
  // when it goes, so an installer serves one agent at a time (end the old one before creating the
  // next). Installers that run nothing ignore it.
  virtual void set_log_sink(InstallerLogSink sink) { (void)sink; }
};

// A/B slots over files or block devices.
class AbSlotInstaller : public Installer {
 public:
  // `slots` maps slot names to their files (created when missing) or block devices; `boot`
  // switches between them (its chooser's slots are the same names).
  AbSlotInstaller(std::map<std::string, std::filesystem::path> slots, BootControl& boot);
  ~AbSlotInstaller() override;

  common::Result<BootStatus> boot_status() override;
  common::Status prepare(const action::PrepareSlot& prepare) override;
  common::Status write(const std::string& slot, std::uint64_t offset, std::string_view data) override;
  common::Status sync() override;
  common::Result<std::string> hash(const std::string& slot, std::uint64_t size) override;
  common::Result<std::string> read(const std::string& slot, std::uint64_t offset,
                                   std::uint32_t size) override;
  common::Status activate(const std::string& slot) override;
  common::Status commit(const std::string& slot) override;
  common::Status revert(const std::string& boot_slot) override;

 private:
  common::Status open_slot(const std::string& slot);
  std::map<std::string, std::filesystem::path> slots_;
  BootControl& boot_;
  std::string open_name_;
  int fd_ = -1;
  bool dirty_ = false;
  // The running slot, opened read-only for the reuse phase.
  std::string read_name_;
  int read_fd_ = -1;
};

// Replaces files atomically (slot "file:<target>"): the image is staged next to the target
// as <path>.fota-new, activation keeps the old file as <path>.fota-prev and renames the new one
// over it; commit deletes the backup, revert renames it back.
class FileInstaller {
 public:
  // `targets` maps payload_target names to the files they replace.
  explicit FileInstaller(std::map<std::string, std::filesystem::path> targets);
  common::Status prepare(const std::string& target, std::uint64_t image_size, bool resume);
  common::Status write(const std::string& target, std::uint64_t offset, std::string_view data);
  common::Result<std::string> hash(const std::string& target, std::uint64_t size);
  common::Status activate(const std::string& target);
  common::Status commit(const std::string& target);
  common::Status revert(const std::string& target);

 private:
  common::Result<std::filesystem::path> path_of(const std::string& target) const;
  std::map<std::string, std::filesystem::path> targets_;
};

// How update modules are confined (docs/CLIENT.md, "Update modules"; fota-device's module_* keys).
struct ModuleSandbox {
  // The user and group a module runs as. An empty user means the agent's own, which is refused
  // when that is root: running modules as root takes `user = "root"`, said explicitly. A user
  // other than the agent's needs an agent running as root. An empty group: the user's primary
  // group. The supplementary groups are dropped.
  std::string user;
  std::string group;
  // A run still going after `timeout` gets SIGTERM, and SIGKILL `kill_grace` later, together with
  // everything in its process group; whatever it leaves running when it exits is killed too.
  std::chrono::milliseconds timeout = std::chrono::minutes(10);
  std::chrono::milliseconds kill_grace = std::chrono::seconds(5);
  // Resource limits of each run (soft and hard): RLIMIT_CPU, RLIMIT_DATA, RLIMIT_FSIZE,
  // RLIMIT_NOFILE, RLIMIT_NPROC (which counts every process of the module's user).
  static constexpr std::uint64_t kUnlimited = ~std::uint64_t{0};
  std::uint64_t cpu_seconds = 600;
  std::uint64_t memory_bytes = std::uint64_t{1} << 30;
  std::uint64_t file_size_bytes = std::uint64_t{4} << 30;
  std::uint64_t open_files = 256;
  std::uint64_t processes = 128;
  // Output lines of one run sent to the log stream; beyond either cap lines are counted and a
  // "dropped N output lines" entry says so. Longer lines are cut to line_bytes.
  std::size_t output_lines = 200;
  std::size_t output_bytes = 64 * 1024;
  std::size_t line_bytes = 1024;
};

// Hands payloads to external update-module executables (slot "module:<name>"), each run in
// its own confined process (ModuleSandbox): <modules_dir>/<name> <verb>, verb = install | commit |
// rollback, in <work_dir>, with only PATH, HOME and LC_ALL in its environment.
// stdin: "key=value" lines (image, image_size, work_dir), then EOF.
// stdout: free-form progress lines, the last line "ok" or "error <message>"; exit status 0.
// stdout lines go to the log sink at info, stderr lines at warn.
// docs/CLIENT.md ("Update modules") has the details.
class ModuleInstaller {
 public:
  // Resolves the sandbox's user and group and creates `work_dir`, writable by the module's group.
  // Errors: kInvalidArgument (an unknown user or group, a zero limit or timeout),
  // kPermissionDenied (modules would run as root without `user = "root"`, or as another user
  // while the agent is not root), kIo (work_dir cannot be created).
  static common::Result<std::unique_ptr<ModuleInstaller>> create(std::filesystem::path modules_dir,
                                                                 std::filesystem::path work_dir,
                                                                 ModuleSandbox sandbox = {});
  common::Status prepare(const std::string& module, std::uint64_t image_size, bool resume);
  common::Status write(const std::string& module, std::uint64_t offset, std::string_view data);
  common::Result<std::string> hash(const std::string& module, std::uint64_t size);
  common::Status activate(const std::string& module);
  common::Status commit(const std::string& module);
  common::Status revert(const std::string& module);
  void set_log_sink(InstallerLogSink sink) { sink_ = std::move(sink); }

 private:
  ModuleInstaller(std::filesystem::path modules_dir, std::filesystem::path work_dir, ModuleSandbox sandbox);
  common::Status run(const std::string& module, const std::string& verb);
  std::filesystem::path image_path(const std::string& module) const;
  std::filesystem::path modules_dir_;
  std::filesystem::path work_dir_;
  ModuleSandbox sandbox_;
  bool switch_user_ = false;  // false: modules run as the agent's own (non-root) user
  uid_t uid_ = 0;
  gid_t gid_ = 0;
  InstallerLogSink sink_;
};

// One Installer for the engine: routes "file:" and "module:" slots to their installers and
// everything else to the A/B slot installer.
class PayloadRouter : public Installer {
 public:
  PayloadRouter(AbSlotInstaller& slots, FileInstaller* files, ModuleInstaller* modules);
  common::Result<BootStatus> boot_status() override;
  common::Status prepare(const action::PrepareSlot& prepare) override;
  common::Status write(const std::string& slot, std::uint64_t offset, std::string_view data) override;
  common::Status sync() override;
  common::Result<std::string> hash(const std::string& slot, std::uint64_t size) override;
  // A/B slots only: file and module payloads are not read back for reuse.
  common::Result<std::string> read(const std::string& slot, std::uint64_t offset,
                                   std::uint32_t size) override;
  common::Status activate(const std::string& slot) override;
  common::Status commit(const std::string& slot) override;
  common::Status revert(const std::string& boot_slot) override;
  // To the update modules.
  void set_log_sink(InstallerLogSink sink) override;

 private:
  AbSlotInstaller& slots_;
  FileInstaller* files_;
  ModuleInstaller* modules_;
};

}  // namespace fota::client

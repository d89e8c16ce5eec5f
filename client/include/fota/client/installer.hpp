// Installers and the bootloader environment they drive. C++17.
//
// An Installer executes the storage and boot actions of the UpdateEngine. The A/B slot
// installer writes the inactive slot (a file or a block device) and switches the boot loader
// through a BootControl (boot_environment.hpp): the fota boot scheme over GRUB's or U-Boot's
// environment, or a file for tests and the simulator.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "fota/client/boot_environment.hpp"
#include "fota/client/engine.hpp"
#include "fota/common/result.hpp"

namespace fota::client {

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
  // Boot `slot` on trial from the next boot on (the boot loader gives it a few tries).
  virtual common::Status activate(const std::string& slot) = 0;
  // Make the running trial slot permanent.
  virtual common::Status commit(const std::string& slot) = 0;
  // Make `boot_slot` the committed slot and drop any trial.
  virtual common::Status revert(const std::string& boot_slot) = 0;
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

// Hands payloads to external update-module executables (slot "module:<name>"), each run in
// its own process: <modules_dir>/<name> <verb>, verb = install | commit | rollback.
// stdin: "key=value" lines (image, image_size, work_dir), then EOF.
// stdout: free-form progress lines, the last line "ok" or "error <message>"; exit status 0.
// docs/CLIENT.md ("Update modules") has the details.
class ModuleInstaller {
 public:
  ModuleInstaller(std::filesystem::path modules_dir, std::filesystem::path work_dir,
                  std::chrono::milliseconds timeout = std::chrono::minutes(10));
  common::Status prepare(const std::string& module, std::uint64_t image_size, bool resume);
  common::Status write(const std::string& module, std::uint64_t offset, std::string_view data);
  common::Result<std::string> hash(const std::string& module, std::uint64_t size);
  common::Status activate(const std::string& module);
  common::Status commit(const std::string& module);
  common::Status revert(const std::string& module);

 private:
  common::Status run(const std::string& module, const std::string& verb);
  std::filesystem::path image_path(const std::string& module) const;
  std::filesystem::path modules_dir_;
  std::filesystem::path work_dir_;
  std::chrono::milliseconds timeout_;
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
  common::Status activate(const std::string& slot) override;
  common::Status commit(const std::string& slot) override;
  common::Status revert(const std::string& boot_slot) override;

 private:
  AbSlotInstaller& slots_;
  FileInstaller* files_;
  ModuleInstaller* modules_;
};

}  // namespace fota::client

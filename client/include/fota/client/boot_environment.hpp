// SPDX-License-Identifier: Apache-2.0
// The boot loader's variables (the BootEnvironment port and its backends) and BootControl, the
// agent's side of the fota boot scheme (boot_chooser.hpp) over them. C++17.
//
// Backends: FileBootEnvironment (a key=value file, for the simulator and tests), GrubEnvironment
// (GRUB's 1 KiB environment block), UBootEnvironment (uboot_environment.hpp, libubootenv).
#pragma once

#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "fota/client/boot_chooser.hpp"
#include "fota/client/engine.hpp"
#include "fota/common/result.hpp"

namespace fota::client {

// Key/value variables of a boot-loader environment.
class BootEnvironment {
 public:
  virtual ~BootEnvironment() = default;
  // Errors: kNotFound (the environment does not exist), kMalformed, kIo.
  virtual common::Result<std::map<std::string, std::string>> load() = 0;
  // Sets the given variables (others unchanged) atomically. Errors: kTooLarge, kIo, ...
  virtual common::Status set(const std::map<std::string, std::string>& variables) = 0;
};

// A boot environment in a text file of "key=value" lines, replaced atomically. A missing file
// is an empty environment.
class FileBootEnvironment : public BootEnvironment {
 public:
  explicit FileBootEnvironment(std::filesystem::path path);
  common::Result<std::map<std::string, std::string>> load() override;
  common::Status set(const std::map<std::string, std::string>& variables) override;
  const std::filesystem::path& path() const noexcept { return path_; }

 private:
  std::filesystem::path path_;
};

// GRUB's environment block (the file `load_env`/`save_env` and grub-editenv use): exactly 1024
// bytes, "# GRUB Environment Block\n", then "name=value\n" lines (a backslash escapes '\\' and a
// newline in a value), padded with '#'. GRUB reads and writes (save_env) the file's existing disk
// blocks without replaying a journal, so a write here does the same: the 1024 bytes over the
// file's own blocks, then fdatasync (a replaced file would be invisible to GRUB after a power
// cut until the journal reached the disk). Variables not set keep their place and value. The
// file must live on a file system GRUB can write (ext2/3/4 or FAT; not btrfs, LVM, RAID or a
// compressed file system), created once with `grub-editenv <file> create`.
class GrubEnvironment : public BootEnvironment {
 public:
  static constexpr std::size_t kBlockSize = 1024;
  explicit GrubEnvironment(std::filesystem::path path);
  // Errors: kNotFound (no such file: create it with `grub-editenv <path> create`), kMalformed
  // (not a GRUB environment block), kIo.
  common::Result<std::map<std::string, std::string>> load() override;
  // Errors: those of load(), kInvalidArgument (a name with '=' or a newline), kTooLarge (the
  // variables do not fit in 1024 bytes).
  common::Status set(const std::map<std::string, std::string>& variables) override;
  const std::filesystem::path& path() const noexcept { return path_; }

  // The block's text codec, exposed for tests. parse: errors kMalformed.
  using Entries = std::vector<std::pair<std::string, std::string>>;
  static common::Result<Entries> parse(std::string_view block);
  static common::Result<std::string> format(const Entries& entries);

 private:
  common::Status write_in_place(std::string_view block);
  std::filesystem::path path_;
};

// The agent's side of the boot scheme over a BootEnvironment: what an A/B installer (and the
// simulator's storage) does for boot_status, activate, commit and revert. The booted slot comes
// from the kernel command line, read through `read_cmdline` (cmdline_file() on a device).
class BootControl {
 public:
  using CmdlineReader = std::function<common::Result<std::string>()>;
  BootControl(BootEnvironment& env, BootChooser chooser, CmdlineReader read_cmdline);

  // Reading the boot status is the agent's sign of life: when the booted slot is not on trial,
  // its tries are reset and it is put first (idempotent). Errors: the command line's or the
  // environment's.
  common::Result<BootStatus> boot_status();
  // The same without writing anything (for observers such as the simulator's reports).
  common::Result<BootedSlot> peek();
  common::Status activate(const std::string& slot);
  common::Status commit(const std::string& slot);
  common::Status revert(const std::string& slot);
  // Before an image is written into `slot` (BootChooser::overwrite). Errors: the command line's,
  // the environment's, kInvalidArgument (the running slot).
  common::Status overwrite(const std::string& slot);
  const BootChooser& chooser() const noexcept { return chooser_; }

 private:
  common::Status apply(const common::Result<BootVariables>& updates);
  BootEnvironment& env_;
  BootChooser chooser_;
  CmdlineReader read_cmdline_;
};

// Reads the kernel command line from `path` (/proc/cmdline on a device; a file in tests and in
// fota-device's simulated mode). Errors: kNotFound, kIo.
BootControl::CmdlineReader cmdline_file(std::filesystem::path path);

// What the boot scripts do at power-on (BootChooser::choose), over `env`: saves the decremented
// tries and returns the slot to boot. The C++ twin of client/boot/grub/grub.cfg and
// client/boot/u-boot/boot.cmd, for fota-sim, tests and fota-device's simulated mode.
common::Result<std::string> simulate_bootloader(BootEnvironment& env, const BootChooser& chooser);
// The same, then writes the simulated kernel command line ("fota.slot=<slot>\n") to `cmdline`
// (atomically) where the agent reads it.
common::Result<std::string> simulate_bootloader(BootEnvironment& env, const BootChooser& chooser,
                                                const std::filesystem::path& cmdline);

}  // namespace fota::client

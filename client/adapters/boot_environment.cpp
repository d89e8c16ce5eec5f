// SPDX-License-Identifier: Apache-2.0
// FileBootEnvironment, BootControl (the boot scheme over a BootEnvironment) and the simulated
// boot loader.
#include "fota/client/boot_environment.hpp"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "fota/client/runtime.hpp"

namespace fota::client {
namespace {

using common::Errc;
using common::Error;

}  // namespace

// ---- FileBootEnvironment ---------------------------------------------------------------
FileBootEnvironment::FileBootEnvironment(std::filesystem::path path) : path_(std::move(path)) {}

common::Result<std::map<std::string, std::string>> FileBootEnvironment::load() {
  std::map<std::string, std::string> vars;
  std::error_code ec;
  if (!std::filesystem::exists(path_, ec)) return vars;
  std::ifstream in(path_);
  if (!in) {
    return Error(Errc::kIo, "cannot read boot environment " + path_.string() + ": " + std::strerror(errno));
  }
  std::string line;
  while (std::getline(in, line)) {
    const auto eq = line.find('=');
    if (line.empty() || line[0] == '#') continue;
    if (eq == std::string::npos) {
      return Error(Errc::kMalformed,
                   "boot environment " + path_.string() + ": line '" + line + "' has no '='");
    }
    vars[line.substr(0, eq)] = line.substr(eq + 1);
  }
  return vars;
}

common::Status FileBootEnvironment::set(const std::map<std::string, std::string>& variables) {
  auto vars = load();
  if (!vars.ok()) return vars.error();
  for (const auto& [k, v] : variables) (*vars)[k] = v;
  std::string text;
  for (const auto& [k, v] : *vars) text += k + "=" + v + "\n";
  return write_file_atomically(path_, text);
}

// ---- BootControl -----------------------------------------------------------------------
BootControl::BootControl(BootEnvironment& env, BootChooser chooser, CmdlineReader read_cmdline)
    : env_(env), chooser_(std::move(chooser)), read_cmdline_(std::move(read_cmdline)) {}

common::Result<BootedSlot> BootControl::peek() {
  auto cmdline = read_cmdline_();
  if (!cmdline.ok()) return cmdline.error();
  auto slot = slot_from_kernel_cmdline(*cmdline);
  if (!slot.ok()) return slot.error();
  auto vars = env_.load();
  if (!vars.ok()) return vars.error().with_context("boot environment");
  return chooser_.booted(*vars, *slot);
}

common::Result<BootStatus> BootControl::boot_status() {
  auto booted = peek();
  if (!booted.ok()) return booted.error();
  if (!booted->updates.empty()) {
    if (auto s = env_.set(booted->updates); !s.ok()) return s.error().with_context("boot environment");
  }
  return booted->status;
}

common::Status BootControl::apply(const common::Result<BootVariables>& updates) {
  if (!updates.ok()) return updates.error();
  if (auto s = env_.set(*updates); !s.ok()) return s.error().with_context("boot environment");
  return common::ok_status();
}

common::Status BootControl::activate(const std::string& slot) {
  auto vars = env_.load();
  if (!vars.ok()) return vars.error().with_context("boot environment");
  return apply(chooser_.activate(*vars, slot));
}

common::Status BootControl::commit(const std::string& slot) {
  auto vars = env_.load();
  if (!vars.ok()) return vars.error().with_context("boot environment");
  return apply(chooser_.commit(*vars, slot));
}

common::Status BootControl::overwrite(const std::string& slot) {
  auto booted = peek();
  if (!booted.ok()) return booted.error();
  return apply(chooser_.overwrite(slot, booted->status.booted_slot));
}

common::Status BootControl::revert(const std::string& slot) {
  auto vars = env_.load();
  if (!vars.ok()) return vars.error().with_context("boot environment");
  return apply(chooser_.revert(*vars, slot));
}

BootControl::CmdlineReader cmdline_file(std::filesystem::path path) {
  return [path = std::move(path)]() -> common::Result<std::string> {
    std::error_code ec;
    if (!std::filesystem::exists(path, ec)) {
      return Error(Errc::kNotFound, "kernel command line " + path.string() +
                                        " does not exist (set kernel_cmdline: to the file that holds it)");
    }
    std::ifstream in(path);
    if (!in) {
      return Error(Errc::kIo,
                   "cannot read the kernel command line " + path.string() + ": " + std::strerror(errno));
    }
    std::ostringstream text;
    text << in.rdbuf();
    return text.str();
  };
}

// ---- The simulated boot loader ---------------------------------------------------------
common::Result<std::string> simulate_bootloader(BootEnvironment& env, const BootChooser& chooser) {
  auto vars = env.load();
  if (!vars.ok()) return vars.error().with_context("boot environment");
  BootChoice choice = chooser.choose(*vars);
  if (!choice.updates.empty()) {
    if (auto s = env.set(choice.updates); !s.ok()) return s.error().with_context("boot environment");
  }
  return choice.slot;
}

common::Result<std::string> simulate_bootloader(BootEnvironment& env, const BootChooser& chooser,
                                                const std::filesystem::path& cmdline) {
  auto slot = simulate_bootloader(env, chooser);
  if (!slot.ok()) return slot;
  if (auto s = write_file_atomically(cmdline, "fota-simulated-boot " + kernel_cmdline_for_slot(*slot) + "\n");
      !s.ok()) {
    return s.error();
  }
  return slot;
}

}  // namespace fota::client

// A/B slots over files or block devices, switched through a bootloader environment.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <vector>

#include "fota/client/installer.hpp"
#include "fota/client/runtime.hpp"
#include "fota/common/crypto.hpp"

namespace fota::client {
namespace {

using common::Errc;
using common::Error;

Error io_error(const std::string& what, const std::string& target) {
  return Error(Errc::kIo, what + " " + target + ": " + std::strerror(errno));
}

}  // namespace

// ---- FileBootEnvironment ---------------------------------------------------------------
FileBootEnvironment::FileBootEnvironment(std::filesystem::path path) : path_(std::move(path)) {}

common::Result<std::map<std::string, std::string>> FileBootEnvironment::load() {
  std::map<std::string, std::string> vars;
  std::error_code ec;
  if (!std::filesystem::exists(path_, ec)) return vars;
  std::ifstream in(path_);
  if (!in) return io_error("cannot read boot environment", path_.string());
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

common::Result<std::string> simulate_bootloader(BootEnvironment& env, const std::string& default_slot,
                                                int default_boot_limit) {
  auto vars = env.load();
  if (!vars.ok()) return vars.error();
  auto get = [&](std::string_view key) {
    auto it = vars->find(std::string(key));
    return it == vars->end() ? std::string() : it->second;
  };
  std::string active = get(kEnvActive);
  if (active.empty()) active = default_slot;
  const std::string trial = get(kEnvTrial);
  int limit = default_boot_limit;
  if (!get(kEnvBootLimit).empty()) limit = std::atoi(get(kEnvBootLimit).c_str());
  int count = std::atoi(get(kEnvBootCount).c_str());
  std::map<std::string, std::string> update{{std::string(kEnvActive), active}};
  std::string booted = active;
  if (!trial.empty()) {
    if (count < limit) {
      ++count;
      booted = trial;
      update[std::string(kEnvBootCount)] = std::to_string(count);
    } else {
      // Attempts exhausted: the trial slot never confirmed; go back to the committed one.
      update[std::string(kEnvTrial)] = "";
      update[std::string(kEnvBootCount)] = "0";
    }
  }
  update[std::string(kEnvBooted)] = booted;
  if (auto s = env.set(update); !s.ok()) return s.error();
  return booted;
}

// ---- AbSlotInstaller -------------------------------------------------------------------
AbSlotInstaller::AbSlotInstaller(std::map<std::string, std::filesystem::path> slots, BootEnvironment& env)
    : slots_(std::move(slots)), env_(env) {}

AbSlotInstaller::~AbSlotInstaller() {
  if (fd_ >= 0) ::close(fd_);
}

common::Result<BootStatus> AbSlotInstaller::boot_status() {
  auto vars = env_.load();
  if (!vars.ok()) return vars.error();
  BootStatus status;
  auto it = vars->find(std::string(kEnvBooted));
  if (it == vars->end() || it->second.empty()) {
    return Error(Errc::kNotFound,
                 "boot environment has no " + std::string(kEnvBooted) +
                     "; the bootloader (or kernel command line) must record the booted slot");
  }
  status.booted_slot = it->second;
  auto trial = vars->find(std::string(kEnvTrial));
  status.trial = trial != vars->end() && trial->second == status.booted_slot;
  return status;
}

common::Status AbSlotInstaller::open_slot(const std::string& slot) {
  if (fd_ >= 0 && open_name_ == slot) return common::ok_status();
  auto it = slots_.find(slot);
  if (it == slots_.end()) return Error(Errc::kInvalidArgument, "no slot named '" + slot + "'");
  if (fd_ >= 0) {
    if (auto s = sync(); !s.ok()) return s;
    ::close(fd_);
  }
  fd_ = ::open(it->second.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd_ < 0) return io_error("cannot open slot", it->second.string());
  open_name_ = slot;
  return common::ok_status();
}

common::Status AbSlotInstaller::prepare(const action::PrepareSlot& prepare) {
  if (auto s = open_slot(prepare.slot); !s.ok()) return s;
  struct stat st {};
  if (::fstat(fd_, &st) != 0) return io_error("cannot stat slot", prepare.slot);
  if (S_ISREG(st.st_mode)) {
    // A slot file is as long as the image; truncating on a fresh start discards an old image
    // so no stale bytes past a shorter image remain.
    if (!prepare.resume && ::ftruncate(fd_, 0) != 0) return io_error("cannot truncate slot", prepare.slot);
    if (::ftruncate(fd_, static_cast<off_t>(prepare.image_size)) != 0) {
      return io_error("cannot size slot", prepare.slot);
    }
  }
  return common::ok_status();
}

common::Status AbSlotInstaller::write(const std::string& slot, std::uint64_t offset, std::string_view data) {
  if (auto s = open_slot(slot); !s.ok()) return s;
  std::size_t done = 0;
  while (done < data.size()) {
    const ssize_t n =
        ::pwrite(fd_, data.data() + done, data.size() - done, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return io_error("cannot write slot", slot);
    }
    done += static_cast<std::size_t>(n);
  }
  dirty_ = true;
  return common::ok_status();
}

common::Status AbSlotInstaller::sync() {
  if (fd_ >= 0 && dirty_) {
    if (::fdatasync(fd_) != 0) return io_error("cannot sync slot", open_name_);
    dirty_ = false;
  }
  return common::ok_status();
}

common::Result<std::string> AbSlotInstaller::hash(const std::string& slot, std::uint64_t size) {
  if (auto s = open_slot(slot); !s.ok()) return s.error();
  if (auto s = sync(); !s.ok()) return s.error();
  common::Sha256 sha;
  std::vector<char> buffer(64 * 1024);
  std::uint64_t done = 0;
  while (done < size) {
    const std::size_t want = static_cast<std::size_t>(std::min<std::uint64_t>(buffer.size(), size - done));
    const ssize_t n = ::pread(fd_, buffer.data(), want, static_cast<off_t>(done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return io_error("cannot read slot", slot);
    }
    if (n == 0) return Error(Errc::kIo, "slot '" + slot + "' is shorter than the image");
    sha.update(buffer.data(), static_cast<std::size_t>(n));
    done += static_cast<std::uint64_t>(n);
  }
  return common::digest_bytes(sha.finish());
}

common::Status AbSlotInstaller::activate(const std::string& slot) {
  if (slots_.count(slot) == 0) return Error(Errc::kInvalidArgument, "no slot named '" + slot + "'");
  if (auto s = sync(); !s.ok()) return s;
  return env_.set({{std::string(kEnvTrial), slot}, {std::string(kEnvBootCount), "0"}});
}

common::Status AbSlotInstaller::commit(const std::string& slot) {
  if (slots_.count(slot) == 0) return Error(Errc::kInvalidArgument, "no slot named '" + slot + "'");
  return env_.set(
      {{std::string(kEnvActive), slot}, {std::string(kEnvTrial), ""}, {std::string(kEnvBootCount), "0"}});
}

common::Status AbSlotInstaller::revert(const std::string& boot_slot) {
  if (slots_.count(boot_slot) == 0) return Error(Errc::kInvalidArgument, "no slot named '" + boot_slot + "'");
  return env_.set({{std::string(kEnvActive), boot_slot},
                   {std::string(kEnvTrial), ""},
                   {std::string(kEnvBootCount), "0"}});
}

}  // namespace fota::client

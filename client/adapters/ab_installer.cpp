// SPDX-License-Identifier: Apache-2.0
// A/B slots over files or block devices, switched through the boot scheme (BootControl).
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

// ---- AbSlotInstaller -------------------------------------------------------------------
AbSlotInstaller::AbSlotInstaller(std::map<std::string, std::filesystem::path> slots, BootControl& boot)
    : slots_(std::move(slots)), boot_(boot) {}

AbSlotInstaller::~AbSlotInstaller() {
  if (fd_ >= 0) ::close(fd_);
  if (read_fd_ >= 0) ::close(read_fd_);
}

common::Result<BootStatus> AbSlotInstaller::boot_status() { return boot_.boot_status(); }

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
  // Before the first byte: the boot loader must never choose a half-written slot.
  if (auto s = boot_.overwrite(prepare.slot); !s.ok()) return s;
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

common::Result<std::string> AbSlotInstaller::read(const std::string& slot, std::uint64_t offset,
                                                  std::uint32_t size) {
  if (slot == open_name_)
    return Error(Errc::kInvalidArgument, "slot '" + slot + "' is the one being written");
  if (read_fd_ < 0 || read_name_ != slot) {
    auto it = slots_.find(slot);
    if (it == slots_.end()) return Error(Errc::kInvalidArgument, "no slot named '" + slot + "'");
    if (read_fd_ >= 0) ::close(read_fd_);
    read_name_.clear();
    // Read-only: the running slot is never written, and may be mounted.
    read_fd_ = ::open(it->second.c_str(), O_RDONLY | O_CLOEXEC);
    if (read_fd_ < 0) return io_error("cannot open slot", it->second.string());
    read_name_ = slot;
  }
  std::string data(size, '\0');
  std::size_t done = 0;
  while (done < data.size()) {
    const ssize_t n =
        ::pread(read_fd_, data.data() + done, data.size() - done, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return io_error("cannot read slot", slot);
    }
    if (n == 0) break;  // its end
    done += static_cast<std::size_t>(n);
  }
  data.resize(done);
  return data;
}

common::Status AbSlotInstaller::activate(const std::string& slot) {
  if (slots_.count(slot) == 0) return Error(Errc::kInvalidArgument, "no slot named '" + slot + "'");
  // The image must be on the medium before the boot loader may pick it.
  if (auto s = sync(); !s.ok()) return s;
  return boot_.activate(slot);
}

common::Status AbSlotInstaller::commit(const std::string& slot) {
  if (slots_.count(slot) == 0) return Error(Errc::kInvalidArgument, "no slot named '" + slot + "'");
  return boot_.commit(slot);
}

common::Status AbSlotInstaller::revert(const std::string& boot_slot) {
  if (slots_.count(boot_slot) == 0) return Error(Errc::kInvalidArgument, "no slot named '" + boot_slot + "'");
  return boot_.revert(boot_slot);
}

}  // namespace fota::client

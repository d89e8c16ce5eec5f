// SPDX-License-Identifier: Apache-2.0
// GrubEnvironment: GRUB's 1 KiB environment block, read and written as GRUB documents it
// (grub-editenv(1); the format is the one GRUB's load_env and save_env use).
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "fota/client/boot_environment.hpp"

namespace fota::client {
namespace {

using common::Errc;
using common::Error;

constexpr std::string_view kSignature = "# GRUB Environment Block\n";

}  // namespace

GrubEnvironment::GrubEnvironment(std::filesystem::path path) : path_(std::move(path)) {}

common::Result<GrubEnvironment::Entries> GrubEnvironment::parse(std::string_view block) {
  if (block.substr(0, kSignature.size()) != kSignature) {
    return Error(Errc::kMalformed,
                 "not a GRUB environment block (it does not start with \"# GRUB Environment Block\")");
  }
  Entries entries;
  std::size_t i = kSignature.size();
  while (i < block.size()) {
    if (block[i] == '#') {
      // A comment, or the '#' padding up to the end of the block.
      const std::size_t nl = block.find('\n', i);
      if (nl == std::string_view::npos) break;
      i = nl + 1;
      continue;
    }
    if (block[i] == '\n') {
      ++i;
      continue;
    }
    const std::size_t eq = block.find('=', i);
    const std::size_t nl = block.find('\n', i);
    if (eq == std::string_view::npos || (nl != std::string_view::npos && nl < eq)) {
      return Error(Errc::kMalformed,
                   "GRUB environment block: a line at byte " + std::to_string(i) + " has no '='");
    }
    std::string name(block.substr(i, eq - i));
    std::string value;
    std::size_t j = eq + 1;
    bool ended = false;
    while (j < block.size()) {
      const char c = block[j];
      if (c == '\\' && j + 1 < block.size()) {
        value += block[j + 1];  // "\\" and "\<newline>" stand for the character itself
        j += 2;
        continue;
      }
      if (c == '\n') {
        ended = true;
        ++j;
        break;
      }
      value += c;
      ++j;
    }
    if (!ended) {
      return Error(Errc::kMalformed,
                   "GRUB environment block: variable '" + name + "' is not ended by a newline");
    }
    entries.emplace_back(std::move(name), std::move(value));
    i = j;
  }
  return entries;
}

common::Result<std::string> GrubEnvironment::format(const Entries& entries) {
  std::string block(kSignature);
  for (const auto& [name, value] : entries) {
    if (name.empty() || name[0] == '#' || name.find_first_of("=\n\\") != std::string::npos) {
      return Error(
          Errc::kInvalidArgument,
          "'" + name +
              "' cannot be a GRUB environment variable name (empty, or has '#', '=', '\\' or a newline)");
    }
    block += name + "=";
    for (char c : value) {
      if (c == '\\' || c == '\n') block += '\\';
      block += c;
    }
    block += '\n';
  }
  if (block.size() > kBlockSize) {
    return Error(Errc::kTooLarge,
                 "the GRUB environment needs " + std::to_string(block.size()) + " bytes, more than its " +
                     std::to_string(kBlockSize) +
                     "-byte block; remove unused variables (grub-editenv <file> unset NAME)");
  }
  block.append(kBlockSize - block.size(), '#');
  return block;
}

namespace {

common::Result<GrubEnvironment::Entries> read_entries(const std::filesystem::path& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) {
    return Error(Errc::kNotFound,
                 "GRUB environment " + path.string() +
                     " does not exist; point 'grubenv:' at the file grub.cfg's load_env reads, "
                     "created with `grub-editenv " +
                     path.string() + " create`");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return Error(Errc::kIo, "cannot read GRUB environment " + path.string() + ": " + std::strerror(errno));
  std::ostringstream bytes;
  bytes << in.rdbuf();
  auto entries = GrubEnvironment::parse(bytes.str());
  if (!entries.ok()) return entries.error().with_context(path.string());
  if (bytes.str().size() != GrubEnvironment::kBlockSize) {
    // Writes go over the file's own blocks, so it must already be the block GRUB expects.
    return Error(Errc::kMalformed, "GRUB environment " + path.string() + " is " +
                                       std::to_string(bytes.str().size()) + " bytes, not " +
                                       std::to_string(GrubEnvironment::kBlockSize) +
                                       "; make it again with `grub-editenv " + path.string() + " create`");
  }
  return entries;
}

}  // namespace

common::Result<std::map<std::string, std::string>> GrubEnvironment::load() {
  auto entries = read_entries(path_);
  if (!entries.ok()) return entries.error();
  std::map<std::string, std::string> vars;
  for (auto& [name, value] : *entries) vars[name] = value;  // a repeated name: the last wins, as in GRUB
  return vars;
}

common::Status GrubEnvironment::set(const std::map<std::string, std::string>& variables) {
  auto entries = read_entries(path_);
  if (!entries.ok()) return entries.error();
  // Existing variables keep their place; new ones are appended, as grub-editenv does.
  std::map<std::string, bool> placed;
  for (auto& [name, value] : *entries) {
    auto it = variables.find(name);
    if (it == variables.end()) continue;
    value = it->second;
    placed[name] = true;
  }
  for (const auto& [name, value] : variables) {
    if (!placed[name]) entries->emplace_back(name, value);
  }
  auto block = format(*entries);
  if (!block.ok()) return block.error().with_context(path_.string());
  return write_in_place(*block);
}

// GRUB reads its file system without replaying a journal and without looking at anything but
// the file's existing blocks (save_env writes there too). A replaced file (temp + rename) is a
// new inode whose blocks GRUB only finds once the journal reaches the disk; after a power cut
// GRUB would read the old counters. So the 1024 bytes go over the file's own blocks, and
// fdatasync puts them on the disk before the agent moves on (a reboot, a commit).
common::Status GrubEnvironment::write_in_place(std::string_view block) {
  const int fd = ::open(path_.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) {
    return Error(Errc::kIo, "cannot open GRUB environment " + path_.string() + ": " + std::strerror(errno));
  }
  std::size_t done = 0;
  while (done < block.size()) {
    const ssize_t n = ::pwrite(fd, block.data() + done, block.size() - done, static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int err = errno;
      ::close(fd);
      return Error(Errc::kIo, "cannot write GRUB environment " + path_.string() + ": " + std::strerror(err));
    }
    done += static_cast<std::size_t>(n);
  }
  const bool synced = ::fdatasync(fd) == 0;
  const int err = errno;
  ::close(fd);
  if (!synced) {
    return Error(Errc::kIo, "cannot sync GRUB environment " + path_.string() + ": " + std::strerror(err));
  }
  return common::ok_status();
}

}  // namespace fota::client

// SPDX-License-Identifier: Apache-2.0
// The crash-safe journal: temp file, fsync, rename, fsync of the directory.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "fota/client/runtime.hpp"

namespace fota::client {
namespace {

using common::Errc;
using common::Error;

Error io_error(const std::string& what, const std::filesystem::path& path) {
  return Error(Errc::kIo, what + " " + path.string() + ": " + std::strerror(errno));
}

common::Result<std::optional<std::string>> read_optional(const std::filesystem::path& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return std::optional<std::string>();
  std::ifstream in(path, std::ios::binary);
  if (!in) return io_error("cannot open", path);
  std::ostringstream content;
  content << in.rdbuf();
  return std::optional<std::string>(content.str());
}

}  // namespace

common::Status write_file_atomically(const std::filesystem::path& path, std::string_view content) {
  const std::filesystem::path temp = path.string() + ".tmp";
  const int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return io_error("cannot create", temp);
  std::size_t done = 0;
  while (done < content.size()) {
    const ssize_t n = ::write(fd, content.data() + done, content.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      Error e = io_error("cannot write", temp);
      ::close(fd);
      return e;
    }
    done += static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0) {
    Error e = io_error("cannot fsync", temp);
    ::close(fd);
    return e;
  }
  ::close(fd);
  if (::rename(temp.c_str(), path.c_str()) != 0) return io_error("cannot rename over", path);
  const std::filesystem::path dir = path.has_parent_path() ? path.parent_path() : std::filesystem::path(".");
  const int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd >= 0) {
    ::fsync(dir_fd);  // makes the rename durable; failure here is not fatal on odd filesystems
    ::close(dir_fd);
  }
  return common::ok_status();
}

FileJournal::FileJournal(std::filesystem::path dir) : dir_(std::move(dir)) {}

common::Result<std::optional<FileJournal::Loaded>> FileJournal::load() const {
  auto bytes = read_optional(dir_ / "journal.pb");
  if (!bytes.ok()) return bytes.error();
  if (!bytes->has_value()) return std::optional<Loaded>();
  Loaded loaded;
  if (!loaded.record.ParseFromString(**bytes)) {
    return Error(Errc::kMalformed,
                 "journal " + (dir_ / "journal.pb").string() +
                     " does not parse; restore it from backup or delete it to start from the "
                     "factory state");
  }
  if (loaded.record.format_version() > UpdateEngine::kJournalFormatVersion) {
    return Error(Errc::kMalformed, "journal format version " +
                                       std::to_string(loaded.record.format_version()) +
                                       " is newer than this client understands (" +
                                       std::to_string(UpdateEngine::kJournalFormatVersion) + ")");
  }
  auto manifest = read_optional(dir_ / "manifest.pb");
  if (!manifest.ok()) return manifest.error();
  if (manifest->has_value()) loaded.signed_manifest = std::move(**manifest);
  return std::optional<Loaded>(std::move(loaded));
}

common::Status FileJournal::store(const journal::JournalRecord& record) {
  std::error_code ec;
  std::filesystem::create_directories(dir_, ec);
  return write_file_atomically(dir_ / "journal.pb", record.SerializeAsString());
}

common::Status FileJournal::store_manifest(std::string_view signed_manifest) {
  std::error_code ec;
  std::filesystem::create_directories(dir_, ec);
  return write_file_atomically(dir_ / "manifest.pb", signed_manifest);
}

}  // namespace fota::client

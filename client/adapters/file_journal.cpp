// SPDX-License-Identifier: Apache-2.0
// The crash-safe journal: temp file, fsync, rename, fsync of the directory.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "fota/client/runtime.hpp"
#include "fota/common/crypto.hpp"

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
  return common::replace_file(path, content, 0600);
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

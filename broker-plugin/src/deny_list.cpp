// SPDX-License-Identifier: Apache-2.0
#include "fota/plugin/deny_list.hpp"

#include <sys/stat.h>

#include <cctype>
#include <optional>

#include "fota/common/crypto.hpp"

namespace fota::plugin {
namespace {

using common::Errc;
using common::Error;

std::string_view trim(std::string_view text) {
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.front()))) text.remove_prefix(1);
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.remove_suffix(1);
  return text;
}

bool valid_common_name(std::string_view name) {
  if (name.empty() || name.size() > 64) return false;
  for (char c : name) {
    const bool ok = std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

// Uppercase hex without ':' separators or leading zeros (OpenSSL prints serials without them).
std::optional<std::string> normalise_serial(std::string_view serial) {
  std::string out;
  for (char c : serial) {
    if (c == ':') continue;
    if (!std::isxdigit(static_cast<unsigned char>(c))) return std::nullopt;
    if (out.empty() && c == '0') continue;
    out.push_back(static_cast<char>(std::toupper(static_cast<unsigned char>(c))));
  }
  if (out.empty()) {
    if (serial.find('0') == std::string_view::npos) return std::nullopt;
    out.assign(1, '0');
  }
  return out;
}

}  // namespace

bool DenyList::add_serial(std::string_view serial) {
  auto normalised = normalise_serial(serial);
  if (!normalised) return false;
  serials_.insert(std::move(*normalised));
  return true;
}

bool DenyList::denies(std::string_view common_name, std::string_view serial_hex) const {
  if (names_.find(common_name) != names_.end()) return true;
  if (serials_.empty()) return false;
  auto normalised = normalise_serial(serial_hex);
  return normalised && serials_.find(*normalised) != serials_.end();
}

common::Result<DenyList> DenyList::parse(std::string_view text) {
  DenyList list;
  std::size_t line_number = 0;
  while (!text.empty()) {
    ++line_number;
    const auto newline = text.find('\n');
    std::string_view line = text.substr(0, newline);
    text = newline == std::string_view::npos ? std::string_view() : text.substr(newline + 1);
    if (const auto hash = line.find('#'); hash != std::string_view::npos) line = line.substr(0, hash);
    line = trim(line);
    if (line.empty()) continue;
    constexpr std::string_view kSerialPrefix = "serial:";
    if (line.substr(0, kSerialPrefix.size()) == kSerialPrefix) {
      const auto serial = trim(line.substr(kSerialPrefix.size()));
      if (serial.empty() || !list.add_serial(serial)) {
        return Error(Errc::kMalformed, "deny list line " + std::to_string(line_number) + ": \"" +
                                           std::string(serial.substr(0, 100)) +
                                           "\" is not a hex certificate serial (e.g. serial:4F2A09)");
      }
      continue;
    }
    if (!valid_common_name(line)) {
      return Error(Errc::kMalformed,
                   "deny list line " + std::to_string(line_number) + ": \"" +
                       std::string(line.substr(0, 100)) +
                       "\" is neither a device id (1-64 of A-Z a-z 0-9 . _ -) nor serial:<hex>");
    }
    list.add_identity(std::string(line));
  }
  return list;
}

common::Result<DenyList> DenyList::load(const std::filesystem::path& path) {
  auto text = common::read_file(path, kMaxFileBytes);
  if (!text) return text.error().with_context("reading the deny list " + path.string());
  auto list = parse(*text);
  if (!list) return list.error().with_context(path.string());
  return list;
}

DenyListWatcher::DenyListWatcher(std::filesystem::path path, std::int64_t interval_ms)
    : path_(std::move(path)), interval_ms_(interval_ms) {}

DenyListWatcher::Stamp DenyListWatcher::stamp() const {
  struct stat st {};
  if (::stat(path_.c_str(), &st) != 0) return Stamp{};
  return Stamp{static_cast<std::uint64_t>(st.st_dev), static_cast<std::uint64_t>(st.st_ino),
               static_cast<std::uint64_t>(st.st_size),
               static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec, true};
}

void DenyListWatcher::remember(std::int64_t now_ms) {
  last_ = stamp();
  last_look_ms_ = now_ms;
}

std::optional<common::Result<DenyList>> DenyListWatcher::poll(std::int64_t now_ms) {
  if (interval_ms_ <= 0) return std::nullopt;
  if (now_ms - last_look_ms_ < interval_ms_ && now_ms >= last_look_ms_) return std::nullopt;
  last_look_ms_ = now_ms;
  const Stamp now = stamp();
  if (now == last_) return std::nullopt;
  last_ = now;
  if (!now.exists) {
    return common::Result<DenyList>(
        Error(Errc::kNotFound, "the deny list " + path_.string() +
                                   " disappeared; put it back (an empty file lifts every revocation)"));
  }
  return DenyList::load(path_);
}

}  // namespace fota::plugin

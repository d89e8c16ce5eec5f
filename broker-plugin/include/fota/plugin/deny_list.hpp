// SPDX-License-Identifier: Apache-2.0
// Revocation deny list: device ids (certificate CNs) and certificate serials.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <set>
#include <string>
#include <string_view>

#include "fota/common/result.hpp"

namespace fota::plugin {

// File format, one entry per line; blank lines and text after '#' are ignored:
//   device-0042              a device id / certificate CN
//   serial:4F:2A:9C...       a certificate serial in hex (':' separators and case do not matter)
class DenyList {
 public:
  static constexpr std::size_t kMaxFileBytes = 16 * 1024 * 1024;

  // Errors name the line that is wrong.
  static common::Result<DenyList> parse(std::string_view text);
  static common::Result<DenyList> load(const std::filesystem::path& path);

  void add_identity(std::string common_name) { names_.insert(std::move(common_name)); }
  // Normalises to uppercase hex without separators; false when it is not hex.
  bool add_serial(std::string_view serial);

  // True when the CN or the serial (PeerIdentity::serial_hex form) is listed.
  bool denies(std::string_view common_name, std::string_view serial_hex) const;
  std::size_t size() const noexcept { return names_.size() + serials_.size(); }

 private:
  std::set<std::string, std::less<>> names_;
  std::set<std::string, std::less<>> serials_;
};

// Notices that the deny list file was replaced or rewritten (the orchestrator writes it with a
// rename, an operator may edit it in place), so that the plugin reloads it without a SIGHUP.
// poll() is called from the broker's TICK event; it looks at the file (one stat) at most once per
// `interval_ms` and answers with the file's new contents when its identity, size or modification
// time changed since the last look. Filesystem access is its only effect.
class DenyListWatcher {
 public:
  DenyListWatcher(std::filesystem::path path, std::int64_t interval_ms);

  // Records what the file looks like now (after the load at start-up or on SIGHUP).
  void remember(std::int64_t now_ms);
  // nullopt: not time to look yet, or the file did not change. Otherwise the result of loading the
  // changed file (an error when it does not parse or cannot be read; a file that disappeared is an
  // error too, since an empty list would silently lift every revocation). A file that failed is
  // not reported again until it changes again.
  std::optional<common::Result<DenyList>> poll(std::int64_t now_ms);

 private:
  struct Stamp {
    std::uint64_t device = 0, inode = 0, size = 0;
    std::int64_t mtime_ns = 0;
    bool exists = false;
    bool operator==(const Stamp& o) const {
      return device == o.device && inode == o.inode && size == o.size && mtime_ns == o.mtime_ns &&
             exists == o.exists;
    }
  };
  Stamp stamp() const;

  std::filesystem::path path_;
  std::int64_t interval_ms_;
  std::int64_t last_look_ms_ = 0;
  Stamp last_;
};

}  // namespace fota::plugin

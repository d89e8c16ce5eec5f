// SPDX-License-Identifier: Apache-2.0
// Revocation deny list: device ids (certificate CNs) and certificate serials.
#pragma once

#include <cstddef>
#include <filesystem>
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

}  // namespace fota::plugin

// SPDX-License-Identifier: Apache-2.0
#include "fota/client/identity_store.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>
#include <system_error>

#include "fota/common/crypto.hpp"

namespace fota::client {

namespace fs = std::filesystem;
using common::Errc;
using common::Error;

namespace {

constexpr const char* kCurrent = "current";
constexpr const char* kCert = "device.crt";
constexpr const char* kKey = "device.key";

void sync_directory(const fs::path& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

// The generation number of "gen-<n>", or -1.
long generation_of(const std::string& name) {
  if (name.rfind("gen-", 0) != 0 || name.size() == 4) return -1;
  long n = 0;
  for (char c : name.substr(4)) {
    if (c < '0' || c > '9' || n > 100'000'000) return -1;
    n = n * 10 + (c - '0');
  }
  return n;
}

}  // namespace

IdentityStore::IdentityStore(fs::path dir, IdentityFiles provisioned)
    : dir_(std::move(dir)), provisioned_(std::move(provisioned)) {}

IdentityFiles IdentityStore::current() const {
  std::error_code ec;
  const fs::path current = dir_ / kCurrent;
  if (fs::is_symlink(current, ec) && fs::exists(current / kCert, ec) && fs::exists(current / kKey, ec)) {
    return {current / kCert, current / kKey};
  }
  return provisioned_;
}

common::Status IdentityStore::install(const RenewedCertificate& renewed) {
  std::error_code ec;
  fs::create_directories(dir_, ec);
  if (ec) return Error(Errc::kIo, "cannot create " + dir_.string() + ": " + ec.message());
  long newest = 0;
  for (const auto& entry : fs::directory_iterator(dir_, ec)) {
    newest = std::max(newest, generation_of(entry.path().filename().string()));
  }
  const std::string name = "gen-" + std::to_string(newest + 1);
  const fs::path gen = dir_ / name;
  fs::remove_all(gen, ec);  // a half-written one a crash left, never `current`'s target
  if (!fs::create_directory(gen, ec) || ec) {
    return Error(Errc::kIo, "cannot create " + gen.string() + ": " + ec.message());
  }
  if (auto st = common::replace_file(gen / kKey, renewed.key_pem, 0600); !st.ok()) return st;
  if (auto st = common::replace_file(gen / kCert, renewed.chain_pem, 0644); !st.ok()) return st;
  sync_directory(gen);
  // The switch: one rename of a link over `current`.
  const fs::path link = dir_ / "current.new";
  ::unlink(link.c_str());
  if (::symlink(name.c_str(), link.c_str()) != 0) {
    return Error(Errc::kIo, "cannot create the link " + link.string() + ": " + std::strerror(errno));
  }
  if (::rename(link.c_str(), (dir_ / kCurrent).c_str()) != 0) {
    return Error(Errc::kIo, "cannot rename " + link.string() + " over " + (dir_ / kCurrent).string() + ": " +
                                std::strerror(errno));
  }
  sync_directory(dir_);
  // Older generations are no longer used (best effort: leftovers are harmless).
  for (const auto& entry : fs::directory_iterator(dir_, ec)) {
    const long g = generation_of(entry.path().filename().string());
    if (g >= 0 && g != newest + 1) fs::remove_all(entry.path(), ec);
  }
  return common::ok_status();
}

}  // namespace fota::client

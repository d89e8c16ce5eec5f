// SPDX-License-Identifier: Apache-2.0
// Where a device keeps the certificate and key it connects with once it has renewed them
// (docs/CLIENT.md, "Certificate renewal"). Filesystem adapter. C++17.
//
// <dir>/current is a symbolic link to <dir>/gen-<n>/ holding device.crt (the chain) and
// device.key (0600). A renewal writes a new gen-<n> completely (each file fsynced, the directory
// too), then replaces `current` by renaming a new link over it: a power cut at any point leaves
// `current` naming a complete pair (or, before the first renewal, no link: the provisioned pair).
#pragma once

#include <filesystem>

#include "fota/client/certificate_renewal.hpp"
#include "fota/common/result.hpp"

namespace fota::client {

struct IdentityFiles {
  std::filesystem::path cert;
  std::filesystem::path key;
};

class IdentityStore {
 public:
  // `provisioned`: the pair from the configuration, used until a renewal is installed.
  IdentityStore(std::filesystem::path dir, IdentityFiles provisioned);

  // The pair to connect with: the installed renewal, else the provisioned pair.
  IdentityFiles current() const;
  // Installs a renewed pair as described above and removes older generations. kIo naming the
  // step; the pair in use stays whenever it fails.
  common::Status install(const RenewedCertificate& renewed);

 private:
  std::filesystem::path dir_;
  IdentityFiles provisioned_;
};

}  // namespace fota::client

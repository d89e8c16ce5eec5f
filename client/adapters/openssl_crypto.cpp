// SPDX-License-Identifier: Apache-2.0
// EngineCrypto over fota_crypto: the engine stays free of OpenSSL.
#include "fota/client/runtime.hpp"

namespace fota::client {

std::string OpenSslEngineCrypto::sha256(std::string_view data) const {
  return common::digest_bytes(common::Sha256::digest(data));
}

common::Result<v1::Manifest> OpenSslEngineCrypto::verify_manifest(
    const v1::SignedManifest& signed_manifest) const {
  return artifact_keys_.verify(signed_manifest);
}

common::Result<v1::Command> OpenSslEngineCrypto::verify_command(std::string_view payload) const {
  return common::verify_command(payload, command_keys_);
}

}  // namespace fota::client

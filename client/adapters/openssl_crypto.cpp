// SPDX-License-Identifier: Apache-2.0
// EngineCrypto over fota_crypto: the engine stays free of OpenSSL.
#include "fota/client/runtime.hpp"

namespace fota::client {

OpenSslEngineCrypto::OpenSslEngineCrypto(common::TrustStore artifact_keys, common::TrustStore command_keys,
                                         std::shared_ptr<const common::X25519PrivateKey> decryption_key)
    : artifact_keys_(std::move(artifact_keys)),
      command_keys_(std::move(command_keys)),
      decryption_key_(std::move(decryption_key)),
      decryption_key_id_(decryption_key_ ? decryption_key_->public_key().key_id() : std::string()) {}

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

common::Result<std::string> OpenSslEngineCrypto::unwrap_content_key(
    const v1::ArtifactEncryption& encryption) const {
  if (!decryption_key_) return EngineCrypto::unwrap_content_key(encryption);
  return decryption_key_->unwrap_content_key(encryption);
}

common::Status OpenSslEngineCrypto::decrypt_chunk(std::string_view content_key, std::uint32_t index,
                                                  std::string& data) const {
  return common::decrypt_chunk(content_key, index, data);
}

}  // namespace fota::client

// SPDX-License-Identifier: Apache-2.0
#include "fota/testing/orchestrator_setup.hpp"

#include <fstream>
#include <stdexcept>

#include "fota/common/crypto.hpp"

namespace fota::testing {

OrchestratorSetup write_orchestrator_setup(const std::filesystem::path& dir, TestPki& pki,
                                           const MosquittoBroker& broker, const std::string& token_name,
                                           const std::string& token) {
  OrchestratorSetup setup;
  setup.config = dir / "orchestrator.yaml";
  setup.release_key = dir / "release.key";
  setup.trusted_keys = dir / "keys";
  setup.http_port = free_loopback_port();
  std::filesystem::create_directories(setup.trusted_keys);
  auto key = common::Ed25519PrivateKey::generate();
  if (!key.ok()) throw std::runtime_error("release key: " + key.error().message);
  if (auto st = common::save_key_pair(*key, setup.release_key, setup.trusted_keys / "release.pub"); !st.ok())
    throw std::runtime_error("release key: " + st.error().message);
  const auto orchestrator = pki.issue(common::Role::kOrchestrator, "fota-orchestrator");
  const common::CommandKeyFiles& command_key = pki.command_key();
  setup.command_keys = command_key.public_key;
  std::ofstream(setup.config) << "broker:\n  uri: " << broker.uri() << "\n  ca: " << pki.ca_cert().string()
                              << "\n  cert: " << orchestrator.cert.string()
                              << "\n  key: " << orchestrator.key.string()
                              << "\ndata_dir: " << (dir / "data").string()
                              << "\ntrusted_keys: " << setup.trusted_keys.string()
                              << "\ncommand_key: " << command_key.private_key.string()
                              << "\nhttp:\n  listen: 127.0.0.1\n  port: " << setup.http_port
                              << "\napi_tokens:\n  - name: " << token_name << "\n    token: " << token
                              << "\n    role: admin"
                              << "\ntick_interval: 50ms\n";
  return setup;
}

}  // namespace fota::testing

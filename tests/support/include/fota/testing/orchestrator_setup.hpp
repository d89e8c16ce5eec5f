// SPDX-License-Identifier: Apache-2.0
// What a test needs to run the real fota-orchestrator against a test broker: a release signing
// key pair the orchestrator trusts, the PKI's command key it signs commands with, and its config.
#pragma once

#include <filesystem>
#include <string>

#include "fota/testing/broker.hpp"

namespace fota::testing {

struct OrchestratorSetup {
  std::filesystem::path config;        // <dir>/orchestrator.yaml
  std::filesystem::path release_key;   // <dir>/release.key (private)
  std::filesystem::path trusted_keys;  // <dir>/keys, holding release.pub
  std::filesystem::path command_keys;  // the command public key devices trust (TestPki::command_key)
  int http_port = 0;                   // a free loopback port
};

// Writes the key pair and a config (data in <dir>/data, an API token named `token_name`, a 50 ms
// tick) for an orchestrator that connects to `broker` with an orchestrator-role certificate.
// Throws std::runtime_error naming what failed.
OrchestratorSetup write_orchestrator_setup(const std::filesystem::path& dir, TestPki& pki,
                                           const MosquittoBroker& broker, const std::string& token_name,
                                           const std::string& token);

}  // namespace fota::testing

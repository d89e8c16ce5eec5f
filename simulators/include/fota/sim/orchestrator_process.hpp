// SPDX-License-Identifier: Apache-2.0
// A fota-orchestrator that fota-sim starts for a run (rollout.driver: orchestrator): its own
// orchestrator-role certificate from the fleet CA, a config file, an API token, a fixed HTTP port
// (so a restart after kill -9 is found at the same address), and control for the
// orchestrator-kill fault. The state (SQLite) survives a kill; a restart continues from it.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>

#include "fota/common/pki.hpp"
#include "fota/common/result.hpp"

namespace fota::sim {

struct OrchestratorSettings {
  std::filesystem::path binary;         // fota-orchestrator
  std::filesystem::path dir;            // config, certificate, logs
  std::filesystem::path data_dir;       // state.db (its history); empty = <dir>/data
  std::filesystem::path artifacts_dir;  // shared with the broker plugin
  std::filesystem::path trusted_key;    // Ed25519 public key (PEM) that signs the scenario's image
  std::filesystem::path command_key;    // Ed25519 private key (PEM) it signs commands with; required
  std::string broker_host = "127.0.0.1";
  int broker_port = 0;
  // Prediction defaults an operator would set for this fleet (see docs/ORCHESTRATOR.md).
  std::uint64_t default_link_rate = 1'000'000;
  std::int64_t default_device_time_ms = 30'000;
};

class OrchestratorProcess {
 public:
  // Writes the config and credentials, starts the process and waits until its API answers.
  static common::Result<std::unique_ptr<OrchestratorProcess>> launch(const OrchestratorSettings& settings,
                                                                     const common::CertificateAuthority& ca);
  ~OrchestratorProcess();
  OrchestratorProcess(const OrchestratorProcess&) = delete;
  OrchestratorProcess& operator=(const OrchestratorProcess&) = delete;

  // http://127.0.0.1:<port>
  std::string api_url() const;
  const std::string& token() const noexcept { return token_; }
  common::Status start();
  // hard = SIGKILL (the orchestrator-kill fault), else SIGTERM and wait.
  void stop(bool hard);
  bool running() const noexcept { return pid_ > 0; }
  std::string log_tail(std::size_t bytes = 4000) const;

 private:
  OrchestratorProcess(OrchestratorSettings settings, int http_port, std::string token);
  OrchestratorSettings settings_;
  int http_port_;
  std::string token_;
  int pid_ = -1;
};

}  // namespace fota::sim

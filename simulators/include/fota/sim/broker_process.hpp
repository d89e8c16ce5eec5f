// SPDX-License-Identifier: Apache-2.0
// A mosquitto that fota-sim starts for a run: a fresh fleet CA and broker certificate, an mTLS
// listener on 127.0.0.1, optionally the fota broker plugin, and control for the broker-restart
// fault.
#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "fota/common/pki.hpp"
#include "fota/common/result.hpp"

namespace fota::sim {

// A free TCP port on 127.0.0.1 (-1 if none), and whether something accepts connections on it.
int free_loopback_port();
bool loopback_accepts(int port);
// Stops a child started by common::spawn_process: SIGKILL when hard, else SIGTERM and up to 5 s'
// wait.
void stop_process(int& pid, bool hard);

// The fota broker plugin (certificate binding, ACLs, chunk serving from the orchestrator's store).
struct BrokerPlugin {
  std::filesystem::path library;       // fota_broker_plugin.so
  std::filesystem::path artifact_dir;  // the orchestrator's artifacts_dir (read only)
};

class BrokerProcess {
 public:
  // Creates <dir>/pki (a new CA) and <dir>/broker, picks a free port, starts mosquitto and waits
  // until it accepts connections. Errors name the broker's log.
  static common::Result<std::unique_ptr<BrokerProcess>> launch(
      const std::filesystem::path& dir, const std::optional<BrokerPlugin>& plugin = {});
  ~BrokerProcess();
  BrokerProcess(const BrokerProcess&) = delete;
  BrokerProcess& operator=(const BrokerProcess&) = delete;

  int port() const noexcept { return port_; }
  const common::CertificateAuthority& ca() const noexcept { return ca_; }
  common::Status start();
  void stop(bool hard);
  std::string log_tail(std::size_t bytes = 4000) const;

 private:
  BrokerProcess(std::filesystem::path dir, common::CertificateAuthority ca, int port);
  std::filesystem::path dir_;
  common::CertificateAuthority ca_;
  int port_;
  int pid_ = -1;
};

}  // namespace fota::sim

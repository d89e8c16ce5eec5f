// A mosquitto that fota-sim starts for a run (--spawn-broker): a fresh fleet CA and broker
// certificate, an mTLS listener on 127.0.0.1, and control for the broker-restart fault.
#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include "fota/common/pki.hpp"
#include "fota/common/result.hpp"

namespace fota::sim {

class BrokerProcess {
 public:
  // Creates <dir>/pki (a new CA) and <dir>/broker, picks a free port, starts mosquitto and waits
  // until it accepts connections. Errors name the broker's log.
  static common::Result<std::unique_ptr<BrokerProcess>> launch(const std::filesystem::path& dir);
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

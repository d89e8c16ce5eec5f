// fota-orchestrator configuration: a YAML file, overridden by command-line flags.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "fota/common/result.hpp"

namespace fota::orchestrator {

struct ApiToken {
  std::string name;  // shows up as the actor in the audit log
  std::string token;
};

struct ServiceConfig {
  // Broker: mutual TLS with the orchestrator-role certificate.
  std::string broker_uri = "ssl://127.0.0.1:8883";
  std::filesystem::path ca_cert;
  std::filesystem::path cert;
  std::filesystem::path key;
  std::string client_id = "fota-orchestrator";
  std::string topic_prefix = "fota/v1";

  std::filesystem::path data_dir = "/var/lib/fota-orchestrator";  // state.db lives here
  std::filesystem::path artifacts_dir;  // default <data_dir>/artifacts; the broker plugin reads it
  std::filesystem::path trusted_keys;   // Ed25519 public key file or directory of *.pub
  // Ed25519 private key (PEM) every command is signed with; devices hold its public key in their
  // command_keys. Not an artifact release key (docs/SECURITY.md, "Signed commands").
  std::filesystem::path command_key;

  std::string http_listen = "127.0.0.1";
  int http_port = 8080;
  // Largest request body the API reads (into memory): an artifact bundle is the largest
  // legitimate one. The default takes a 1 GiB image with its signed manifest and chunk hashes.
  std::uint64_t http_max_body_bytes = (std::uint64_t{1024} + 16) * 1024 * 1024;
  std::vector<ApiToken> api_tokens;

  std::int64_t tick_interval_ms = 200;
  std::int64_t default_link_rate = 1'000'000;  // bytes/s for predictions without history
  // Time per device besides the transfer (verify, install, reboot, health check, commit) assumed by
  // predictions until finished updates have been measured.
  std::int64_t default_device_time_ms = 30'000;
  std::string log_level = "info";
};

// Reads the YAML file. Errors name the key and say what is expected.
common::Result<ServiceConfig> load_service_config(const std::filesystem::path& path);
// Checks the combination (files exist, tokens present, ...). Errors say what to fix.
common::Status validate_service_config(const ServiceConfig& config);

}  // namespace fota::orchestrator

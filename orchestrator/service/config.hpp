// SPDX-License-Identifier: Apache-2.0
// fota-orchestrator configuration: a YAML file, overridden by command-line flags.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "fota/common/result.hpp"
#include "fota/orchestrator/api_role.hpp"
#include "fota/orchestrator/retention.hpp"
#include "fota/orchestrator/webhook.hpp"

namespace fota::orchestrator {

struct ApiToken {
  std::string name;  // shows up as the actor in the audit log ("token:<name>")
  std::string token;
  ApiRole role = ApiRole::kViewer;  // required in the config: no token gets a role by default
};

// HTTPS for the API with a certificate of the fleet PKI. With client_ca, clients may also
// authenticate with an operator certificate issued by that CA (mutual TLS).
struct HttpTlsConfig {
  std::filesystem::path cert;       // server certificate (PEM); its SANs name the API's host
  std::filesystem::path key;        // its private key
  std::filesystem::path client_ca;  // CA that client certificates must chain to; empty = no mTLS
  // Refuse the handshake without a client certificate (then tokens need one too).
  bool require_client_certificate = false;
  bool enabled() const { return !cert.empty(); }
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
  // Where the state lives (store:): "sqlite:PATH" or "postgresql://user@host:port/database"
  // (open_store). Empty = sqlite:<data_dir>/state.db, the embedded default.
  std::string store;
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
  HttpTlsConfig http_tls;  // http.tls; off = plain HTTP (keep it on loopback)
  std::vector<ApiToken> api_tokens;

  // Signed checkpoints of the audit chain (audit.*): the Ed25519 key (a file the database does not
  // hold; empty = no checkpoints), the append-only file they go to (default
  // <data_dir>/audit-checkpoints.jsonl) and how often the head is signed when it moved.
  std::filesystem::path audit_checkpoint_key;
  std::filesystem::path audit_checkpoint_file;
  std::int64_t audit_checkpoint_interval_ms = 60'000;

  // Revocation (revocation.*): the deny list file the orchestrator writes (atomically, by rename)
  // whenever a device is revoked or decommissioned and at start-up, for the broker plugin's
  // plugin_opt_deny_list; empty = revocations are recorded but the broker is not told.
  std::filesystem::path revocation_deny_list;

  // Certificate renewal (pki.*): the issuing CA's directory (`fotactl pki issue-ca NAME`: ca.crt,
  // ca.key; never the root, which stays offline) that signs the devices' certificate requests, and
  // how long the certificates it issues are valid. Empty = renewal requests are refused.
  std::filesystem::path pki_issuing_ca;
  std::int64_t pki_device_cert_validity_ms = 90LL * 86'400'000;
  // Certificate requests queued for signing, and handled (signed or refused) per minute, at most
  // (pki.max_pending_requests; docs/ORCHESTRATOR.md): a device flooding its csr topic cannot make
  // the orchestrator sign in a loop or grow its memory.
  std::size_t pki_max_pending_requests = 64;

  // Webhook deliveries (webhooks.*; docs/ORCHESTRATOR.md, "Webhooks"): sender threads, attempts
  // before a delivery is marked failed, the first and the longest wait between attempts, and the
  // time a receiver has to connect and to answer.
  WebhookOptions webhooks;
  // artifacts.retention (docs/ORCHESTRATOR.md, "Artifact retention"); keep_last 0 = no rule.
  RetentionRule artifact_retention;

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

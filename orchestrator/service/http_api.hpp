// SPDX-License-Identifier: Apache-2.0
// The HTTP JSON API (docs/openapi.yaml) over cpp-httplib, plain or HTTPS (optionally with client
// certificates). Every /api/ route needs a caller (a bearer token from the config or an operator
// certificate) whose role allows it (api_role.hpp); /healthz and /metrics are open.
// It owns the API's shape: the JSON of every answer, the status each error maps to, and the
// Prometheus text of /metrics; the service answers with typed views.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <spdlog/spdlog.h>

#include "api_auth.hpp"
#include "config.hpp"
#include "orchestrator_service.hpp"

namespace httplib {
class Server;
class DataSink;
}  // namespace httplib

namespace fota::orchestrator {

struct EventStreamState;  // one client's position in GET /api/v1/events/stream
struct LiveSnapshot;      // what the streams compare against, taken at most every 500 ms

class HttpApi {
 public:
  // Request bodies over max_body_bytes are answered 413 without being kept in memory. With
  // tls.enabled() it serves HTTPS only.
  HttpApi(OrchestratorService& service, std::vector<ApiToken> tokens, HttpTlsConfig tls,
          std::filesystem::path upload_dir, std::uint64_t max_body_bytes,
          std::shared_ptr<spdlog::logger> logger);
  ~HttpApi();
  // Binds and serves on its own thread. Returns the bound port (port 0 = any free port). Errors:
  // kCrypto when the TLS certificate, key or client CA cannot be loaded; kUnavailable when the
  // port cannot be bound.
  common::Result<int> start(const std::string& host, int port);
  void stop();
  // Answers GET /api/v1/audit/checkpoints from this file (before start()); without it that route
  // says checkpoints are not configured.
  void serve_audit_checkpoints(std::filesystem::path file) { checkpoint_file_ = std::move(file); }

 private:
  void routes();
  void console_routes();  // the web console's files under /console/
  // Writes what changed since the client's last step (or a keep-alive) after its interval; false
  // ends the stream (the client left, or a write did not finish in the write timeout).
  bool stream_step(EventStreamState& state, httplib::DataSink& sink);
  std::shared_ptr<const LiveSnapshot> live_snapshot(std::int64_t now_ms);
  OrchestratorService& service_;
  ApiAuthenticator auth_;
  std::string tls_error_;  // why the TLS context could not be set up; empty when it could
  std::filesystem::path upload_dir_;
  std::filesystem::path checkpoint_file_;
  std::uint64_t max_body_bytes_;
  std::shared_ptr<spdlog::logger> log_;
  StreamTickets stream_tickets_;
  std::atomic<bool> stopping_{false};  // ends the event streams
  std::atomic<int> streams_{0};        // open event streams
  std::mutex snapshot_mutex_;
  std::shared_ptr<const LiveSnapshot> snapshot_;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
};

}  // namespace fota::orchestrator

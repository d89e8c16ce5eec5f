// SPDX-License-Identifier: Apache-2.0
// The HTTP JSON API (docs/openapi.yaml) over cpp-httplib. Every /api/ route needs
// "Authorization: Bearer <token>" with a token from the config; /healthz and /metrics are open.
// It owns the API's shape: the JSON of every answer, the status each error maps to, and the
// Prometheus text of /metrics; the service answers with typed views.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <spdlog/spdlog.h>

#include "config.hpp"
#include "orchestrator_service.hpp"

namespace httplib {
class Server;
}

namespace fota::orchestrator {

class HttpApi {
 public:
  // Request bodies over max_body_bytes are answered 413 without being kept in memory.
  HttpApi(OrchestratorService& service, std::vector<ApiToken> tokens, std::filesystem::path upload_dir,
          std::uint64_t max_body_bytes, std::shared_ptr<spdlog::logger> logger);
  ~HttpApi();
  // Binds and serves on its own thread. Returns the bound port (port 0 = any free port).
  common::Result<int> start(const std::string& host, int port);
  void stop();

 private:
  void routes();
  OrchestratorService& service_;
  std::vector<ApiToken> tokens_;
  std::filesystem::path upload_dir_;
  std::uint64_t max_body_bytes_;
  std::shared_ptr<spdlog::logger> log_;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
};

}  // namespace fota::orchestrator

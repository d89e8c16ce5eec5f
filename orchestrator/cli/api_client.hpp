// SPDX-License-Identifier: Apache-2.0
// fotactl's connection to the orchestrator HTTP API: where (--server / FOTA_SERVER, http:// or
// https:// with the CA that signed the orchestrator's certificate, --ca / FOTA_CA) and who
// (--token / FOTA_TOKEN, or an operator certificate --client-cert/--client-key,
// FOTA_CLIENT_CERT/FOTA_CLIENT_KEY). Errors come back as text that says what to fix.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "fota/common/result.hpp"

namespace fota::cli {

struct ApiConnection {
  std::string server;  // http://host:port or https://host:port
  std::string token;
  bool json = false;      // --json on read commands
  std::string ca_file;    // https: the CA the server's certificate must chain to (the fleet ca.crt)
  std::string cert_file;  // https: an operator certificate and its key (mutual TLS)
  std::string key_file;

  // A connection to `server` with a bearer token and nothing else (fota-sim's).
  static ApiConnection with_token(std::string server, std::string token);
  // Adds --server, --token, --ca, --client-cert and --client-key (with their environment fallbacks) to a
  // command.
  void add_options(CLI::App* command, bool with_json);
};

class ApiClient {
 public:
  explicit ApiClient(ApiConnection connection);
  common::Result<nlohmann::json> get(const std::string& path) const;
  // One page of a list endpoint: its items and the cursor of the next page (the X-Next-Cursor
  // header; empty on the last page).
  struct Page {
    nlohmann::json items;
    std::string next;
  };
  common::Result<Page> get_page(const std::string& path) const;
  // Every page of a list endpoint, `page_size` at a time (`path` has no limit or cursor).
  common::Result<nlohmann::json> get_all(const std::string& path, std::size_t page_size = 1000) const;
  common::Result<nlohmann::json> put(const std::string& path) const;  // no body
  common::Result<nlohmann::json> del(const std::string& path) const;  // 204: an empty object
  // A body that is not JSON (GET /metrics).
  common::Result<std::string> get_text(const std::string& path) const;
  common::Result<nlohmann::json> post(const std::string& path, const std::string& body,
                                      const std::string& content_type = "application/yaml") const;
  // Streams a file as the body, calling progress(sent, total).
  common::Result<nlohmann::json> post_file(
      const std::string& path, const std::filesystem::path& file,
      const std::function<void(std::uint64_t, std::uint64_t)>& progress) const;

 private:
  ApiConnection c_;
};

// Checks a device id given on the command line the way the orchestrator and the broker do
// (common::DeviceId), so that an id no device can have is refused with what an id may contain
// instead of asking the API for a path that does not exist.
common::Status check_device_id(const std::string& id);
// "?a=1&b=x%20y" from the pairs whose value is not empty ("" when none is).
std::string query_string(const std::vector<std::pair<std::string, std::string>>& params);
// A path segment (a tag, a group name) percent-encoded.
std::string path_segment(const std::string& text);
// Prints "fotactl: error: <message>" and returns the exit code 1.
int report_error(const common::Error& error);
// A text progress bar like "[########------------]  42%".
std::string progress_bar(double fraction, int width = 30);

}  // namespace fota::cli

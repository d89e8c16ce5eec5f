// SPDX-License-Identifier: Apache-2.0
#include "api_client.hpp"

#include <httplib.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>

#include "fota/common/topics.hpp"

namespace fota::cli {

using common::Errc;
using common::Error;
using nlohmann::json;

ApiConnection ApiConnection::with_token(std::string server, std::string token) {
  ApiConnection c;
  c.server = std::move(server);
  c.token = std::move(token);
  return c;
}

void ApiConnection::add_options(CLI::App* command, bool with_json) {
  const char* server_env = std::getenv("FOTA_SERVER");
  server = server_env ? server_env : "http://127.0.0.1:8080";
  command->add_option("--server", server, "orchestrator API URL (env FOTA_SERVER)")->capture_default_str();
  command->add_option("--token", token, "API token (env FOTA_TOKEN)")->envname("FOTA_TOKEN");
  command
      ->add_option("--ca", ca_file,
                   "https: CA certificate the orchestrator's certificate chains to (env FOTA_CA)")
      ->envname("FOTA_CA");
  command
      ->add_option("--client-cert", cert_file,
                   "https: operator certificate for mutual TLS (env FOTA_CLIENT_CERT)")
      ->envname("FOTA_CLIENT_CERT");
  command->add_option("--client-key", key_file, "https: the operator certificate's key (env FOTA_CLIENT_KEY)")
      ->envname("FOTA_CLIENT_KEY");
  if (with_json) command->add_flag("--json", json, "print JSON instead of a table");
}

ApiClient::ApiClient(ApiConnection connection) : c_(std::move(connection)) {}

namespace {

common::Result<json> interpret(const httplib::Result& res, const std::string& server,
                               const std::string& what) {
  if (!res) {
    if (res.error() == httplib::Error::SSLServerVerification) {
      return Error(Errc::kPermissionDenied,
                   "the orchestrator at " + server +
                       " presented a certificate that does not verify: give the fleet CA with --ca (FOTA_CA) "
                       "and a server URL its certificate names (e.g. https://127.0.0.1:PORT)");
    }
    if (res.error() == httplib::Error::SSLConnection) {
      return Error(Errc::kUnavailable,
                   "TLS handshake with " + server +
                       " failed: is it an https:// API? a client certificate (--client-cert) must "
                       "come from the orchestrator's client CA");
    }
    return Error(Errc::kUnavailable, "cannot reach the orchestrator at " + server + " (" +
                                         httplib::to_string(res.error()) +
                                         "); is fota-orchestrator running? set --server or FOTA_SERVER");
  }
  json body;
  try {
    body = res->body.empty() ? json::object() : json::parse(res->body);
  } catch (const json::exception&) {
    return Error(Errc::kMalformed,
                 what + ": HTTP " + std::to_string(res->status) + " with a body that is not JSON");
  }
  if (res->status >= 200 && res->status < 300) return body;
  std::string message = body.contains("error") ? body["error"].value("message", "") : res->body;
  if (message.empty()) {
    // An answer without a message (a proxy in between, an older orchestrator) still says what failed.
    message = what + ": HTTP " + std::to_string(res->status) + " from " + server +
              " with no message; check the id and the --server URL";
  }
  Errc code = Errc::kInternal;
  switch (res->status) {
    case 400:
      code = Errc::kInvalidArgument;
      break;
    case 401:
    case 403:
      code = Errc::kPermissionDenied;
      break;
    case 404:
      code = Errc::kNotFound;
      break;
    case 409:
      code = Errc::kConflict;
      break;
    case 413:
      code = Errc::kTooLarge;
      break;
    case 422:
      code = Errc::kIntegrity;
      break;
    default:
      break;
  }
  return Error(code, message);
}

common::Result<std::unique_ptr<httplib::Client>> make_client(const ApiConnection& c) {
  const bool https = c.server.rfind("https://", 0) == 0;
  if (!https && (!c.ca_file.empty() || !c.cert_file.empty())) {
    return Error(Errc::kInvalidArgument,
                 "--ca and --client-cert need an https:// server URL; --server is " + c.server);
  }
  if (c.cert_file.empty() != c.key_file.empty()) {
    return Error(Errc::kInvalidArgument,
                 "give --client-cert and --client-key together (an operator certificate and its key)");
  }
  auto client = c.cert_file.empty() ? std::make_unique<httplib::Client>(c.server)
                                    : std::make_unique<httplib::Client>(c.server, c.cert_file, c.key_file);
  if (https && !c.ca_file.empty()) client->set_ca_cert_path(c.ca_file.c_str());
  client->set_connection_timeout(std::chrono::seconds(5));
  client->set_read_timeout(std::chrono::seconds(120));
  client->set_write_timeout(std::chrono::seconds(120));
  if (!c.token.empty()) client->set_bearer_token_auth(c.token);
  return client;
}

}  // namespace

common::Result<json> ApiClient::get(const std::string& path) const {
  auto client = make_client(c_);
  if (!client) return client.error();
  return interpret((*client)->Get(path.c_str()), c_.server, "GET " + path);
}

common::Result<ApiClient::Page> ApiClient::get_page(const std::string& path) const {
  auto client = make_client(c_);
  if (!client) return client.error();
  auto res = (*client)->Get(path.c_str());
  auto body = interpret(res, c_.server, "GET " + path);
  if (!body) return body.error();
  return Page{std::move(body).value(), res->get_header_value("X-Next-Cursor")};
}

common::Result<json> ApiClient::get_all(const std::string& path, std::size_t page_size) const {
  json all = json::array();
  const char joiner = path.find('?') == std::string::npos ? '?' : '&';
  std::string cursor;
  do {
    auto page = get_page(path + joiner + "limit=" + std::to_string(page_size) +
                         (cursor.empty() ? "" : "&cursor=" + cursor));
    if (!page) return page.error();
    for (auto& item : page->items) all.push_back(std::move(item));
    cursor = page->next;
  } while (!cursor.empty());
  return all;
}

common::Result<json> ApiClient::put(const std::string& path) const {
  auto client = make_client(c_);
  if (!client) return client.error();
  return interpret((*client)->Put(path.c_str(), "", "application/json"), c_.server, "PUT " + path);
}

common::Result<json> ApiClient::del(const std::string& path) const {
  auto client = make_client(c_);
  if (!client) return client.error();
  return interpret((*client)->Delete(path.c_str()), c_.server, "DELETE " + path);
}

std::string query_string(const std::vector<std::pair<std::string, std::string>>& params) {
  std::string out;
  for (const auto& [name, value] : params) {
    if (value.empty()) continue;
    out += (out.empty() ? "?" : "&") + name + "=" + httplib::detail::encode_query_param(value);
  }
  return out;
}

std::string path_segment(const std::string& text) { return httplib::detail::encode_query_param(text); }

common::Result<std::string> ApiClient::get_text(const std::string& path) const {
  auto client = make_client(c_);
  if (!client) return client.error();
  auto res = (*client)->Get(path.c_str());
  if (!res || res->status != 200) {
    auto failed = interpret(res, c_.server, "GET " + path);
    return failed.ok() ? Error(Errc::kInternal, "GET " + path + ": HTTP " + std::to_string(res->status))
                       : failed.error();
  }
  return res->body;
}

common::Result<json> ApiClient::post(const std::string& path, const std::string& body,
                                     const std::string& content_type) const {
  auto client = make_client(c_);
  if (!client) return client.error();
  return interpret((*client)->Post(path.c_str(), body, content_type.c_str()), c_.server, "POST " + path);
}

common::Result<json> ApiClient::post_file(
    const std::string& path, const std::filesystem::path& file,
    const std::function<void(std::uint64_t, std::uint64_t)>& progress) const {
  std::error_code ec;
  const auto size = std::filesystem::file_size(file, ec);
  if (ec) return Error(Errc::kNotFound, "cannot read " + file.string() + ": " + ec.message());
  auto in = std::make_shared<std::ifstream>(file, std::ios::binary);
  if (!*in) return Error(Errc::kIo, "cannot open " + file.string());
  auto client = make_client(c_);
  if (!client) return client.error();
  auto res = (*client)->Post(
      path.c_str(), static_cast<std::size_t>(size),
      [in, size, &progress](std::size_t offset, std::size_t length, httplib::DataSink& sink) {
        std::vector<char> buf(std::min<std::size_t>(length, 256 * 1024));
        in->seekg(static_cast<std::streamoff>(offset));
        in->read(buf.data(), static_cast<std::streamsize>(buf.size()));
        const auto got = static_cast<std::size_t>(in->gcount());
        if (got == 0) return false;
        sink.write(buf.data(), got);
        if (progress) progress(offset + got, size);
        return true;
      },
      "application/octet-stream");
  return interpret(res, c_.server, "POST " + path);
}

common::Status check_device_id(const std::string& id) {
  auto parsed = common::DeviceId::parse(id);
  if (parsed) return common::ok_status();
  return Error(parsed.error().code,
               parsed.error().message +
                   "; a device id is 1 to 64 characters of [A-Za-z0-9._-] starting with a "
                   "letter or digit (`fotactl device list` shows them)");
}

int report_error(const Error& error) {
  std::fprintf(stderr, "fotactl: error: %s\n", error.message.c_str());
  return 1;
}

std::string progress_bar(double fraction, int width) {
  fraction = std::clamp(fraction, 0.0, 1.0);
  const int filled = static_cast<int>(fraction * width + 0.5);
  char pct[8];
  std::snprintf(pct, sizeof pct, "%3d%%", static_cast<int>(fraction * 100 + 0.5));
  return "[" + std::string(static_cast<std::size_t>(filled), '#') +
         std::string(static_cast<std::size_t>(width - filled), '-') + "] " + pct;
}

}  // namespace fota::cli

#include "http_api.hpp"

#include <httplib.h>
#include <openssl/crypto.h>

#include <chrono>
#include <fstream>
#include <random>
#include <regex>
#include <set>

#include "fota/common/crypto.hpp"

namespace fota::orchestrator {

using nlohmann::json;

namespace {

Millis now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

void send_json(httplib::Response& res, int status, const json& body) {
  res.status = status;
  res.set_content(body.dump(2) + "\n", "application/json");
}

void send_error(httplib::Response& res, int status, const std::string& message) {
  send_json(res, status, json{{"error", {{"status", status}, {"message", message}}}});
}

void send(httplib::Response& res, const ApiResult& result, int ok_status = 200) {
  if (const auto* body = std::get_if<json>(&result)) {
    send_json(res, ok_status, *body);
  } else {
    const auto& e = std::get<ApiError>(result);
    send_error(res, e.status, e.message);
  }
}

std::int64_t int_param(const httplib::Request& req, const char* name, std::int64_t fallback) {
  if (!req.has_param(name)) return fallback;
  try {
    return std::stoll(req.get_param_value(name));
  } catch (const std::exception&) {
    return fallback;
  }
}

}  // namespace

HttpApi::HttpApi(OrchestratorService& service, std::vector<ApiToken> tokens, std::filesystem::path upload_dir,
                 std::uint64_t max_body_bytes, std::shared_ptr<spdlog::logger> logger)
    : service_(service),
      tokens_(std::move(tokens)),
      upload_dir_(std::move(upload_dir)),
      max_body_bytes_(max_body_bytes),
      log_(std::move(logger)),
      server_(std::make_unique<httplib::Server>()) {
  routes();
}

HttpApi::~HttpApi() { stop(); }

void HttpApi::routes() {
  httplib::Server& s = *server_;
  // Bodies are read into memory before a handler sees them (an artifact bundle too): a body over
  // the limit is drained without being kept and answered 413.
  s.set_payload_max_length(static_cast<std::size_t>(max_body_bytes_));
  // Every route with its methods, so that a method a route does not take is answered 405.
  auto known = std::make_shared<std::vector<std::pair<std::string, std::regex>>>();
  auto get = [&s, known](const std::string& pattern, httplib::Server::Handler handler) {
    known->emplace_back("GET", std::regex(pattern));
    s.Get(pattern, std::move(handler));
  };
  auto post = [&s, known](const std::string& pattern, httplib::Server::Handler handler) {
    known->emplace_back("POST", std::regex(pattern));
    s.Post(pattern, std::move(handler));
  };
  // Who is calling: the token's name, or empty when the request carries no valid token.
  auto actor = [this](const httplib::Request& req) -> std::string {
    const std::string header = req.get_header_value("Authorization");
    const std::string prefix = "Bearer ";
    if (header.rfind(prefix, 0) != 0) return {};
    const std::string presented = header.substr(prefix.size());
    for (const ApiToken& t : tokens_) {
      // Constant-time compare: the response time must not reveal how much of a token matched.
      if (t.token.size() == presented.size() &&
          CRYPTO_memcmp(t.token.data(), presented.data(), presented.size()) == 0) {
        return "operator:" + t.name;
      }
    }
    return {};
  };
  s.set_pre_routing_handler([this, actor](const httplib::Request& req, httplib::Response& res) {
    // cpp-httplib bounds only bodies with a Content-Length: a chunked body, or one that lasts until
    // the connection closes, would be read into memory whatever its size.
    const bool has_body = req.method == "POST" || req.method == "PUT" || req.method == "PATCH";
    if (has_body && (req.has_header("Transfer-Encoding") || !req.has_header("Content-Length"))) {
      send_error(res, 411,
                 "length required: send the body of " + req.method + " " + req.path +
                     " with a Content-Length header (at most " + std::to_string(max_body_bytes_) +
                     " bytes, http.max_body_bytes), not chunked");
      return httplib::Server::HandlerResponse::Handled;
    }
    if (req.path.rfind("/api/", 0) != 0) return httplib::Server::HandlerResponse::Unhandled;
    if (!req.has_header("Authorization")) {
      send_error(res, 401,
                 "missing credentials: send 'Authorization: Bearer <token>' (fotactl reads FOTA_TOKEN or "
                 "--token)");
      return httplib::Server::HandlerResponse::Handled;
    }
    if (actor(req).empty()) {
      send_error(res, 401,
                 "invalid API token: use a token listed under api_tokens in the orchestrator config");
      return httplib::Server::HandlerResponse::Handled;
    }
    return httplib::Server::HandlerResponse::Unhandled;
  });
  s.set_exception_handler([this](const httplib::Request& req, httplib::Response& res, std::exception_ptr ep) {
    std::string what = "unknown error";
    try {
      if (ep) std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    log_->error("{} {} failed: {}", req.method, req.path, what);
    send_error(res, 500, "internal error: " + what);
  });

  // What cpp-httplib answers itself (no route, a body over the limit, a malformed request) comes
  // with an empty body: give it the JSON error every other answer has.
  s.set_error_handler(httplib::Server::HandlerWithResponse([this, known](const httplib::Request& req,
                                                                         httplib::Response& res) {
    if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
    const std::string request = req.method + " " + req.path;
    std::string message;
    switch (res.status) {
      case 404: {
        std::set<std::string> methods;
        for (const auto& [method, pattern] : *known) {
          if (std::regex_match(req.path, pattern)) methods.insert(method);
        }
        if (!methods.empty()) {
          std::string allowed, alternatives;
          for (const std::string& method : methods) {
            const bool last = method == *methods.rbegin();
            allowed += (allowed.empty() ? "" : ", ") + method;
            alternatives += (alternatives.empty() ? "" : last ? " or " : ", ") + method;
          }
          res.status = 405;
          res.set_header("Allow", allowed);
          message = req.method + " is not allowed on " + req.path + "; use " + alternatives;
        } else {
          message = "no such route: " + request +
                    "; the routes are listed in docs/openapi.yaml (an id is one path segment: no '/')";
        }
        break;
      }
      case 413:
        message = "request body of " + req.get_header_value("Content-Length") + " bytes to " + request +
                  " is larger than this orchestrator takes (" + std::to_string(max_body_bytes_) +
                  " bytes); send less, or raise http.max_body_bytes in the orchestrator's config";
        break;
      case 414:
        message = "request URI too long: shorten the path and query of " + req.method + " " +
                  req.path.substr(0, 64) + "...";
        break;
      case 400:
        message = "malformed request " + request +
                  ": the request line, a header or the body could not be read; send a well-formed HTTP/1.1 "
                  "request";
        break;
      default:
        message = "HTTP " + std::to_string(res.status) + " for " + request + "; see the orchestrator's log";
    }
    send_error(res, res.status, message);
    return httplib::Server::HandlerResponse::Handled;
  }));

  get("/healthz",
      [](const httplib::Request&, httplib::Response& res) { res.set_content("ok\n", "text/plain"); });
  get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(service_.metrics(now_ms()), "text/plain; version=0.0.4");
  });

  post("/api/v1/artifacts", [this, actor](const httplib::Request& req, httplib::Response& res) {
    if (req.body.empty()) {
      send_error(res, 400,
                 "empty body: send the bundle file made by `fotactl artifact create` as the request body");
      return;
    }
    std::error_code ec;
    std::filesystem::create_directories(upload_dir_, ec);
    const auto path = upload_dir_ / ("upload-" + std::to_string(std::random_device{}()) + ".bundle");
    {
      std::ofstream out(path, std::ios::binary);
      out.write(req.body.data(), static_cast<std::streamsize>(req.body.size()));
      if (!out) {
        send_error(res, 500, "cannot store the upload in " + upload_dir_.string());
        return;
      }
    }
    auto result = service_.import_artifact(path, actor(req), now_ms());
    std::filesystem::remove(path, ec);
    send(res, result, 201);
  });
  get("/api/v1/artifacts",
      [this](const httplib::Request&, httplib::Response& res) { send(res, service_.list_artifacts()); });
  get(R"(/api/v1/artifacts/([^/]+))", [this](const httplib::Request& req, httplib::Response& res) {
    send(res, service_.get_artifact(req.matches[1]));
  });

  get("/api/v1/devices",
      [this](const httplib::Request&, httplib::Response& res) { send(res, service_.list_devices()); });
  get(R"(/api/v1/devices/([^/]+))", [this](const httplib::Request& req, httplib::Response& res) {
    send(res, service_.get_device(req.matches[1]));
  });
  get(R"(/api/v1/devices/([^/]+)/logs)", [this](const httplib::Request& req, httplib::Response& res) {
    send(res, service_.device_logs(req.matches[1], int_param(req, "after", 0),
                                   static_cast<std::size_t>(int_param(req, "limit", 200))));
  });

  post("/api/v1/rollouts", [this, actor](const httplib::Request& req, httplib::Response& res) {
    if (req.body.empty()) {
      send_error(res, 400, "empty body: send the rollout spec (YAML or JSON) as the request body");
      return;
    }
    send(res, service_.create_rollout(req.body, actor(req), now_ms()), 201);
  });
  get("/api/v1/rollouts", [this](const httplib::Request&, httplib::Response& res) {
    send(res, service_.list_rollouts(now_ms()));
  });
  get(R"(/api/v1/rollouts/([^/]+))", [this](const httplib::Request& req, httplib::Response& res) {
    send(res, service_.get_rollout(req.matches[1], now_ms()));
  });
  get(R"(/api/v1/rollouts/([^/]+)/plan)", [this](const httplib::Request& req, httplib::Response& res) {
    send(res, service_.plan_rollout(req.matches[1], now_ms()));
  });
  post(R"(/api/v1/rollouts/([^/]+)/(start|pause|resume|abort|rollback))",
       [this, actor](const httplib::Request& req, httplib::Response& res) {
         send(res, service_.rollout_action(req.matches[1], req.matches[2], actor(req), now_ms()));
       });

  get("/api/v1/events", [this](const httplib::Request& req, httplib::Response& res) {
    send(res, service_.events(req.get_param_value("device"), req.get_param_value("rollout"),
                              static_cast<std::size_t>(int_param(req, "limit", 100))));
  });
  get("/api/v1/audit", [this](const httplib::Request& req, httplib::Response& res) {
    send(res, service_.audit(int_param(req, "after", 0),
                             static_cast<std::size_t>(int_param(req, "limit", 100'000))));
  });
}

common::Result<int> HttpApi::start(const std::string& host, int port) {
  int bound = port;
  if (port == 0) {
    bound = server_->bind_to_any_port(host);
  } else if (!server_->bind_to_port(host, port)) {
    bound = -1;
  }
  if (bound <= 0) {
    return common::Error(common::Errc::kUnavailable,
                         "cannot listen on " + host + ":" + std::to_string(port) +
                             "; is another process using the port? change http.port");
  }
  thread_ = std::thread([this] { server_->listen_after_bind(); });
  return bound;
}

void HttpApi::stop() {
  if (server_) server_->stop();
  if (thread_.joinable()) thread_.join();
}

}  // namespace fota::orchestrator

#include "config.hpp"

#include <yaml-cpp/yaml.h>

#include "fota/common/crypto.hpp"
#include "fota/orchestrator/rollout_spec.hpp"

namespace fota::orchestrator {

using common::Errc;
using common::Error;

common::Result<ServiceConfig> load_service_config(const std::filesystem::path& path) {
  ServiceConfig c;
  YAML::Node root;
  try {
    root = YAML::LoadFile(path.string());
  } catch (const YAML::BadFile&) {
    return Error(Errc::kNotFound, "cannot read config file " + path.string());
  } catch (const YAML::Exception& e) {
    return Error(Errc::kInvalidArgument,
                 "config " + path.string() + ": line " + std::to_string(e.mark.line + 1) + ": " + e.msg);
  }
  if (!root.IsMap()) return Error(Errc::kInvalidArgument, "config " + path.string() + ": expected a mapping");
  const std::filesystem::path base = path.parent_path();
  auto file = [&](const YAML::Node& n) {
    std::filesystem::path p = n.as<std::string>();
    return p.is_relative() ? base / p : p;
  };
  try {
    for (const auto& kv : root) {
      const std::string key = kv.first.as<std::string>();
      const YAML::Node& v = kv.second;
      if (key == "broker") {
        for (const auto& b : v) {
          const std::string k = b.first.as<std::string>();
          if (k == "uri")
            c.broker_uri = b.second.as<std::string>();
          else if (k == "ca")
            c.ca_cert = file(b.second);
          else if (k == "cert")
            c.cert = file(b.second);
          else if (k == "key")
            c.key = file(b.second);
          else if (k == "client_id")
            c.client_id = b.second.as<std::string>();
          else
            return Error(Errc::kInvalidArgument,
                         "config: broker." + k + ": unknown key; known: uri, ca, cert, key, client_id");
        }
      } else if (key == "topic_prefix") {
        c.topic_prefix = v.as<std::string>();
      } else if (key == "data_dir") {
        c.data_dir = file(v);
      } else if (key == "artifacts_dir") {
        c.artifacts_dir = file(v);
      } else if (key == "trusted_keys") {
        c.trusted_keys = file(v);
      } else if (key == "command_key") {
        c.command_key = file(v);
      } else if (key == "http") {
        for (const auto& h : v) {
          const std::string k = h.first.as<std::string>();
          if (k == "listen")
            c.http_listen = h.second.as<std::string>();
          else if (k == "port")
            c.http_port = h.second.as<int>();
          else if (k == "max_body_bytes")
            c.http_max_body_bytes = h.second.as<std::uint64_t>();
          else
            return Error(Errc::kInvalidArgument,
                         "config: http." + k + ": unknown key; known: listen, port, max_body_bytes");
        }
      } else if (key == "api_tokens") {
        for (const auto& t : v) {
          ApiToken token{t["name"].as<std::string>(""), t["token"].as<std::string>("")};
          if (t["token_file"]) {
            auto content = common::read_file(file(t["token_file"]), 4096);
            if (!content) return content.error().with_context("config: api_tokens token_file");
            token.token = *content;
            while (!token.token.empty() && (token.token.back() == '\n' || token.token.back() == '\r'))
              token.token.pop_back();
          }
          c.api_tokens.push_back(token);
        }
      } else if (key == "tick_interval") {
        auto d = parse_duration(v.as<std::string>());
        if (!d) return d.error().with_context("config: tick_interval");
        c.tick_interval_ms = *d;
      } else if (key == "default_link_rate") {
        c.default_link_rate = v.as<std::int64_t>();
      } else if (key == "default_device_time") {
        auto d = parse_duration(v.as<std::string>());
        if (!d) return d.error().with_context("config: default_device_time");
        c.default_device_time_ms = *d;
      } else if (key == "log_level") {
        c.log_level = v.as<std::string>();
      } else {
        return Error(Errc::kInvalidArgument,
                     "config: " + key +
                         ": unknown key; known: broker, topic_prefix, data_dir, "
                         "artifacts_dir, trusted_keys, command_key, http, api_tokens, tick_interval, "
                         "default_link_rate, default_device_time, log_level");
      }
    }
  } catch (const YAML::Exception& e) {
    return Error(Errc::kInvalidArgument,
                 "config " + path.string() + ": line " + std::to_string(e.mark.line + 1) + ": " + e.msg);
  }
  return c;
}

common::Status validate_service_config(const ServiceConfig& c) {
  for (const auto& [what, p] : {std::pair{"broker.ca", c.ca_cert},
                                {"broker.cert", c.cert},
                                {"broker.key", c.key},
                                {"trusted_keys", c.trusted_keys},
                                {"command_key", c.command_key}}) {
    if (p.empty()) return Error(Errc::kInvalidArgument, std::string("config: ") + what + " is required");
    if (!std::filesystem::exists(p)) {
      return Error(Errc::kNotFound, std::string("config: ") + what + " " + p.string() + " does not exist");
    }
  }
  if (c.api_tokens.empty()) {
    return Error(Errc::kInvalidArgument,
                 "config: api_tokens is empty; add at least one {name, token} so operators "
                 "can use the API");
  }
  for (const ApiToken& t : c.api_tokens) {
    if (t.name.empty() || t.token.size() < 16) {
      return Error(Errc::kInvalidArgument,
                   "config: every api_tokens entry needs a name and a token of at least 16 "
                   "characters (e.g. from `openssl rand -hex 24`)");
    }
  }
  if (c.http_port < 0 || c.http_port > 65535)
    return Error(Errc::kInvalidArgument, "config: http.port out of range");
  if (c.http_max_body_bytes < 1024)
    return Error(Errc::kInvalidArgument,
                 "config: http.max_body_bytes must be at least 1024; set it to the largest artifact bundle "
                 "you upload");
  if (c.tick_interval_ms < 10)
    return Error(Errc::kInvalidArgument, "config: tick_interval must be at least 10ms");
  return common::ok_status();
}

}  // namespace fota::orchestrator

// SPDX-License-Identifier: Apache-2.0
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
      } else if (key == "store") {
        c.store = v.as<std::string>();
        // A relative SQLite path is relative to this file, like every other path here.
        if (c.store.rfind("sqlite:", 0) == 0 && c.store.size() > 7 &&
            std::filesystem::path(c.store.substr(7)).is_relative())
          c.store = "sqlite:" + (base / c.store.substr(7)).string();
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
          else if (k == "tls") {
            for (const auto& t : h.second) {
              const std::string tk = t.first.as<std::string>();
              if (tk == "cert")
                c.http_tls.cert = file(t.second);
              else if (tk == "key")
                c.http_tls.key = file(t.second);
              else if (tk == "client_ca")
                c.http_tls.client_ca = file(t.second);
              else if (tk == "require_client_certificate")
                c.http_tls.require_client_certificate = t.second.as<bool>();
              else
                return Error(Errc::kInvalidArgument,
                             "config: http.tls." + tk +
                                 ": unknown key; known: cert, key, client_ca, require_client_certificate");
            }
          } else
            return Error(Errc::kInvalidArgument,
                         "config: http." + k + ": unknown key; known: listen, port, max_body_bytes, tls");
        }
      } else if (key == "api_tokens") {
        for (const auto& t : v) {
          ApiToken token{t["name"].as<std::string>(""), t["token"].as<std::string>(""), ApiRole::kViewer};
          const std::string where = "config: api_tokens \"" + token.name + "\": ";
          if (!t["role"]) {
            return Error(Errc::kInvalidArgument,
                         where +
                             "role is required: viewer (read), operator (also rollouts) or admin (also "
                             "artifacts, keys, tokens, revocation)");
          }
          auto role = parse_api_role(t["role"].as<std::string>());
          if (!role) return role.error().with_context(where + "role");
          token.role = *role;
          if (t["token_file"]) {
            auto content = common::read_file(file(t["token_file"]), 4096);
            if (!content) return content.error().with_context("config: api_tokens token_file");
            token.token = *content;
            while (!token.token.empty() && (token.token.back() == '\n' || token.token.back() == '\r'))
              token.token.pop_back();
          }
          c.api_tokens.push_back(token);
        }
      } else if (key == "audit") {
        for (const auto& a : v) {
          const std::string k = a.first.as<std::string>();
          if (k == "checkpoint_key") {
            c.audit_checkpoint_key = file(a.second);
          } else if (k == "checkpoint_file") {
            c.audit_checkpoint_file = file(a.second);
          } else if (k == "checkpoint_interval") {
            auto d = parse_duration(a.second.as<std::string>());
            if (!d) return d.error().with_context("config: audit.checkpoint_interval");
            c.audit_checkpoint_interval_ms = *d;
          } else {
            return Error(Errc::kInvalidArgument, "config: audit." + k +
                                                     ": unknown key; known: checkpoint_key, checkpoint_file, "
                                                     "checkpoint_interval");
          }
        }
      } else if (key == "revocation") {
        for (const auto& a : v) {
          const std::string k = a.first.as<std::string>();
          if (k == "deny_list") {
            c.revocation_deny_list = file(a.second);
          } else {
            return Error(Errc::kInvalidArgument,
                         "config: revocation." + k + ": unknown key; known: deny_list");
          }
        }
      } else if (key == "pki") {
        for (const auto& a : v) {
          const std::string k = a.first.as<std::string>();
          if (k == "issuing_ca") {
            c.pki_issuing_ca = file(a.second);
          } else if (k == "device_cert_validity") {
            auto d = parse_duration(a.second.as<std::string>());
            if (!d) return d.error().with_context("config: pki.device_cert_validity");
            if (*d < 60'000) {
              return Error(Errc::kInvalidArgument,
                           "config: pki.device_cert_validity must be at least 1m (e.g. 90d)");
            }
            c.pki_device_cert_validity_ms = *d;
          } else if (k == "max_pending_requests") {
            const auto n = a.second.as<std::int64_t>();
            if (n < 1 || n > 100'000) {
              return Error(Errc::kInvalidArgument,
                           "config: pki.max_pending_requests must be between 1 and 100000 (default 64): the "
                           "certificate requests queued for signing, and handled per minute");
            }
            c.pki_max_pending_requests = static_cast<std::size_t>(n);
          } else {
            return Error(Errc::kInvalidArgument,
                         "config: pki." + k +
                             ": unknown key; known: issuing_ca, device_cert_validity, "
                             "max_pending_requests");
          }
        }
      } else if (key == "artifacts") {
        for (const auto& a : v) {
          const std::string k = a.first.as<std::string>();
          if (k != "retention") {
            return Error(Errc::kInvalidArgument,
                         "config: artifacts." + k + ": unknown key; known: retention");
          }
          for (const auto& r : a.second) {
            const std::string rk = r.first.as<std::string>();
            if (rk == "keep_last") {
              const auto n = r.second.as<std::int64_t>();
              if (n < 1 || n > 100'000) {
                return Error(Errc::kInvalidArgument,
                             "config: artifacts.retention.keep_last must be between 1 and 100000: the newest "
                             "artifacts of each name and hardware that are always kept");
              }
              c.artifact_retention.keep_last = static_cast<std::size_t>(n);
            } else if (rk == "min_age_days") {
              const auto n = r.second.as<std::int64_t>();
              if (n < 0 || n > 36'500) {
                return Error(Errc::kInvalidArgument,
                             "config: artifacts.retention.min_age_days must be between 0 and 36500");
              }
              c.artifact_retention.min_age_ms = n * 86'400'000;
            } else if (rk == "min_age" || rk == "interval") {
              auto d = parse_duration(r.second.as<std::string>());
              if (!d) return d.error().with_context("config: artifacts.retention." + rk);
              if (rk == "interval" && *d < 1000) {
                return Error(Errc::kInvalidArgument,
                             "config: artifacts.retention.interval must be at least 1s");
              }
              (rk == "min_age" ? c.artifact_retention.min_age_ms : c.artifact_retention.interval_ms) = *d;
            } else {
              return Error(Errc::kInvalidArgument,
                           "config: artifacts.retention." + rk +
                               ": unknown key; known: keep_last, min_age_days (or min_age: 30d), interval");
            }
          }
          if (c.artifact_retention.keep_last == 0) {
            return Error(Errc::kInvalidArgument,
                         "config: artifacts.retention needs keep_last (at least 1): how many of the newest "
                         "artifacts of each name and hardware are always kept");
          }
        }
      } else if (key == "webhooks") {
        for (const auto& a : v) {
          const std::string k = a.first.as<std::string>();
          if (k == "workers" || k == "max_attempts") {
            const auto n = a.second.as<std::int64_t>();
            const std::int64_t most = k == "workers" ? 64 : 1000;
            if (n < 1 || n > most) {
              return Error(Errc::kInvalidArgument,
                           "config: webhooks." + k + " must be between 1 and " + std::to_string(most));
            }
            (k == "workers" ? c.webhooks.workers : c.webhooks.max_attempts) = static_cast<int>(n);
          } else if (k == "retry_initial" || k == "retry_max" || k == "timeout") {
            auto d = parse_duration(a.second.as<std::string>());
            if (!d) return d.error().with_context("config: webhooks." + k);
            if (*d < 10) {
              return Error(Errc::kInvalidArgument, "config: webhooks." + k + " must be at least 10ms");
            }
            (k == "retry_initial" ? c.webhooks.retry_initial_ms
             : k == "retry_max"   ? c.webhooks.retry_max_ms
                                  : c.webhooks.timeout_ms) = *d;
          } else {
            return Error(
                Errc::kInvalidArgument,
                "config: webhooks." + k +
                    ": unknown key; known: workers, max_attempts, retry_initial, retry_max, timeout");
          }
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
                         ": unknown key; known: broker, topic_prefix, data_dir, store, "
                         "artifacts_dir, trusted_keys, command_key, http, "
                         "api_tokens, audit, revocation, pki, artifacts, webhooks, tick_interval, "
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
  if (c.http_tls.enabled() || !c.http_tls.key.empty() || !c.http_tls.client_ca.empty()) {
    for (const auto& [what, p] :
         {std::pair{"http.tls.cert", c.http_tls.cert}, {"http.tls.key", c.http_tls.key}}) {
      if (p.empty())
        return Error(
            Errc::kInvalidArgument,
            std::string("config: ") + what +
                " is required with http.tls (a certificate from `fotactl pki issue-orchestrator NAME "
                "--ip ADDRESS` and its key)");
    }
    for (const auto& [what, p] : {std::pair{"http.tls.cert", c.http_tls.cert},
                                  {"http.tls.key", c.http_tls.key},
                                  {"http.tls.client_ca", c.http_tls.client_ca}}) {
      if (!p.empty() && !std::filesystem::exists(p))
        return Error(Errc::kNotFound, std::string("config: ") + what + " " + p.string() + " does not exist");
    }
  }
  if (c.http_tls.require_client_certificate && c.http_tls.client_ca.empty())
    return Error(
        Errc::kInvalidArgument,
        "config: http.tls.require_client_certificate needs http.tls.client_ca (the fleet CA's ca.crt)");
  if (c.http_port < 0 || c.http_port > 65535)
    return Error(Errc::kInvalidArgument, "config: http.port out of range");
  if (c.http_max_body_bytes < 1024)
    return Error(Errc::kInvalidArgument,
                 "config: http.max_body_bytes must be at least 1024; set it to the largest artifact bundle "
                 "you upload");
  if (!c.audit_checkpoint_key.empty() && !std::filesystem::exists(c.audit_checkpoint_key))
    return Error(Errc::kNotFound, "config: audit.checkpoint_key " + c.audit_checkpoint_key.string() +
                                      " does not exist; make one with `fotactl keys generate -o audit`");
  if (c.audit_checkpoint_interval_ms < 10)
    return Error(Errc::kInvalidArgument, "config: audit.checkpoint_interval must be at least 10ms");
  if (!c.revocation_deny_list.empty()) {
    const auto dir = c.revocation_deny_list.parent_path();
    if (!dir.empty() && !std::filesystem::is_directory(dir))
      return Error(Errc::kNotFound,
                   "config: revocation.deny_list: the directory " + dir.string() +
                       " does not exist; create it (the broker plugin reads the file from there)");
  }
  if (c.tick_interval_ms < 10)
    return Error(Errc::kInvalidArgument, "config: tick_interval must be at least 10ms");
  return common::ok_status();
}

}  // namespace fota::orchestrator

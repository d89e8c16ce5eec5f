// SPDX-License-Identifier: Apache-2.0
#include "fota/plugin/options.hpp"

#include <charconv>
#include <cmath>
#include <functional>
#include <map>

#include "fota/common/codec.hpp"

namespace fota::plugin {
namespace {

using common::Errc;
using common::Error;
using common::Status;

Error bad_value(const std::string& key, const std::string& value, const std::string& expected) {
  return Error(Errc::kInvalidArgument,
               "plugin_opt_" + key + " \"" + value.substr(0, 200) + "\" is not valid: expected " + expected);
}

Status parse_number(const std::string& key, const std::string& value, double min, double max, double& out) {
  double parsed = 0;
  const char* end = value.data() + value.size();
  auto [ptr, ec] = std::from_chars(value.data(), end, parsed);
  if (ec != std::errc() || ptr != end || !std::isfinite(parsed) || parsed < min || parsed > max) {
    return bad_value(key, value,
                     "a number from " + std::to_string(static_cast<long long>(min)) + " to " +
                         std::to_string(static_cast<long long>(max)));
  }
  out = parsed;
  return common::ok_status();
}

template <typename Int>
Status parse_integer(const std::string& key, const std::string& value, Int min, Int max, Int& out) {
  Int parsed = 0;
  const char* end = value.data() + value.size();
  auto [ptr, ec] = std::from_chars(value.data(), end, parsed);
  if (ec != std::errc() || ptr != end || parsed < min || parsed > max) {
    return bad_value(key, value, "a whole number from " + std::to_string(min) + " to " + std::to_string(max));
  }
  out = parsed;
  return common::ok_status();
}

// Seconds given as a decimal number, stored as milliseconds.
Status parse_seconds(const std::string& key, const std::string& value, double max_s, std::int64_t& out_ms) {
  double seconds = 0;
  if (auto st = parse_number(key, value, 0, max_s, seconds); !st) return st;
  out_ms = static_cast<std::int64_t>(std::llround(seconds * 1000.0));
  return common::ok_status();
}

}  // namespace

common::Result<PluginOptions> parse_plugin_options(
    const std::vector<std::pair<std::string, std::string>>& pairs) {
  PluginOptions o;
  constexpr double kMaxRate = 1e12;
  const auto upstream = [&o]() -> PluginOptions::Upstream& {
    if (!o.upstream) o.upstream.emplace();
    return *o.upstream;
  };
  const auto set_path = [](const std::string& key, const std::string& value,
                           std::filesystem::path& out) -> Status {
    if (value.empty()) return bad_value(key, value, "a file or directory path");
    out = value;
    return common::ok_status();
  };
  using Setter = std::function<Status(const std::string& key, const std::string& value)>;
  const std::map<std::string, Setter> setters = {
      {"topic_prefix",
       [&](const std::string& key, const std::string& value) -> Status {
         auto scheme = common::TopicScheme::create(value);
         if (!scheme)
           return bad_value(key, value, "a topic prefix such as fota/v1 (" + scheme.error().message + ")");
         o.scheme = std::move(scheme).value();
         return common::ok_status();
       }},
      {"artifact_dir",
       [&](const std::string& key, const std::string& value) -> Status {
         if (value.empty()) return bad_value(key, value, "the orchestrator's artifact store directory");
         o.artifact_dir = value;
         return common::ok_status();
       }},
      {"deny_list",
       [&](const std::string& key, const std::string& value) -> Status {
         if (value.empty()) return bad_value(key, value, "the path of a deny list file");
         o.deny_list = value;
         return common::ok_status();
       }},
      {"deny_list_check_seconds",
       [&](const auto& k, const auto& v) { return parse_seconds(k, v, 3600, o.deny_list_check_ms); }},
      {"device_msgs_per_second",
       [&](const auto& k, const auto& v) {
         return parse_number(k, v, 0, kMaxRate, o.device_messages.per_second);
       }},
      {"device_msg_burst",
       [&](const auto& k, const auto& v) {
         return parse_number(k, v, 1, kMaxRate, o.device_messages.burst);
       }},
      {"device_bytes_per_second",
       [&](const auto& k, const auto& v) {
         return parse_number(k, v, 0, kMaxRate, o.device_bytes.per_second);
       }},
      {"device_byte_burst",
       [&](const auto& k, const auto& v) { return parse_number(k, v, 1, kMaxRate, o.device_bytes.burst); }},
      {"device_chunk_bytes_per_second",
       [&](const auto& k, const auto& v) {
         return parse_number(k, v, 0, kMaxRate, o.device_chunk_bytes.per_second);
       }},
      {"device_chunk_byte_burst",
       [&](const auto& k, const auto& v) {
         return parse_number(k, v, static_cast<double>(common::kMaxChunkDataBytes), kMaxRate,
                             o.device_chunk_bytes.burst);
       }},
      {"abuse_refusals",
       [&](const auto& k, const auto& v) {
         return parse_integer<std::uint32_t>(k, v, 1, 1'000'000'000, o.abuse_refusals);
       }},
      {"abuse_window_seconds",
       [&](const auto& k, const auto& v) {
         auto st = parse_seconds(k, v, 86400, o.abuse_window_ms);
         if (st && o.abuse_window_ms <= 0) return Status(bad_value(k, v, "a positive number of seconds"));
         return st;
       }},
      {"abuser_ban_seconds",
       [&](const auto& k, const auto& v) { return parse_seconds(k, v, 86400 * 365, o.abuser_ban_ms); }},
      {"client_connects_per_second",
       [&](const auto& k, const auto& v) {
         return parse_number(k, v, 0, kMaxRate, o.client_connects.per_second);
       }},
      {"client_connect_burst",
       [&](const auto& k, const auto& v) {
         return parse_number(k, v, 1, kMaxRate, o.client_connects.burst);
       }},
      {"address_connects_per_second",
       [&](const auto& k, const auto& v) {
         return parse_number(k, v, 0, kMaxRate, o.address_connects.per_second);
       }},
      {"address_connect_burst",
       [&](const auto& k, const auto& v) {
         return parse_number(k, v, 1, kMaxRate, o.address_connects.burst);
       }},
      {"client_state_idle_seconds",
       [&](const auto& k, const auto& v) { return parse_seconds(k, v, 86400 * 30, o.client_state_idle_ms); }},
      {"max_chunks_per_request",
       [&](const auto& k, const auto& v) {
         return parse_integer<std::uint32_t>(k, v, 1, 4096, o.max_chunks_per_request);
       }},
      {"chunk_qos",
       [&](const auto& k, const auto& v) { return parse_integer<int>(k, v, 0, 1, o.chunk_qos); }},
      {"stats_interval_seconds",
       [&](const auto& k, const auto& v) { return parse_seconds(k, v, 86400, o.stats_interval_ms); }},
      {"edge_brokers",
       [&](const std::string& key, const std::string& value) -> Status {
         o.edge_brokers.clear();
         std::size_t start = 0;
         while (start <= value.size()) {
           const auto comma = std::min(value.find(',', start), value.size());
           const std::string name = value.substr(start, comma - start);
           if (name.empty() || name.size() > 64 || name.find_first_of(" \t/+#") != std::string::npos) {
             return bad_value(key, value, "common names of edge broker certificates, separated by commas");
           }
           o.edge_brokers.push_back(name);
           start = comma + 1;
         }
         return common::ok_status();
       }},
      {"bridge_client_id",
       [&](const std::string& key, const std::string& value) -> Status {
         if (value.empty() || value.size() > 128 || value.find_first_of("/+#") != std::string::npos) {
           return bad_value(key, value, "the local_clientid of this broker's bridge connection to the core");
         }
         o.bridge_client_id = value;
         return common::ok_status();
       }},
      {"upstream_url",
       [&](const std::string& key, const std::string& value) -> Status {
         if (value.rfind("https://", 0) != 0 || value.size() <= 8 || value.back() == '/') {
           return bad_value(key, value, "the orchestrator API's address as https://host:port");
         }
         upstream().url = value;
         return common::ok_status();
       }},
      {"upstream_ca", [&](const auto& k, const auto& v) { return set_path(k, v, upstream().ca); }},
      {"upstream_cert", [&](const auto& k, const auto& v) { return set_path(k, v, upstream().cert); }},
      {"upstream_key", [&](const auto& k, const auto& v) { return set_path(k, v, upstream().key); }},
      {"trusted_keys", [&](const auto& k, const auto& v) { return set_path(k, v, upstream().trusted_keys); }},
      {"upstream_retry_seconds",
       [&](const auto& k, const auto& v) { return parse_seconds(k, v, 86400, upstream().retry_ms); }},
      {"log_level",
       [&](const std::string& key, const std::string& value) -> Status {
         static const char* const kLevels[] = {"trace", "debug", "info", "warn", "error", "off"};
         for (const char* level : kLevels) {
           if (value == level) {
             o.log_level = value;
             return common::ok_status();
           }
         }
         return bad_value(key, value, "one of trace, debug, info, warn, error, off");
       }},
  };

  for (const auto& [key, value] : pairs) {
    auto it = setters.find(key);
    if (it == setters.end()) {
      std::string known;
      for (const auto& entry : setters) known += (known.empty() ? "" : ", ") + entry.first;
      return Error(Errc::kInvalidArgument,
                   "unknown option plugin_opt_" + key.substr(0, 100) + "; known options: " + known);
    }
    if (auto st = it->second(key, value); !st) return st.error();
  }
  if (o.upstream) {
    const auto& u = *o.upstream;
    std::string missing;
    for (const auto& [name, set] : {std::pair<const char*, bool>{"upstream_url", !u.url.empty()},
                                    {"upstream_ca", !u.ca.empty()},
                                    {"upstream_cert", !u.cert.empty()},
                                    {"upstream_key", !u.key.empty()},
                                    {"trusted_keys", !u.trusted_keys.empty()},
                                    {"artifact_dir", o.artifact_dir.has_value()},
                                    {"bridge_client_id", !o.bridge_client_id.empty()}}) {
      if (!set) missing += std::string(missing.empty() ? "" : ", ") + "plugin_opt_" + name;
    }
    if (!missing.empty()) {
      return Error(Errc::kInvalidArgument, "an edge broker's cache fill (plugin_opt_upstream_*) also needs " +
                                               missing + " (docs/BROKER_PLUGIN.md, \"Edge brokers\")");
    }
  }
  return o;
}

}  // namespace fota::plugin

// SPDX-License-Identifier: Apache-2.0
// The plugin's settings, from the `plugin_opt_<key> <value>` lines of mosquitto.conf.
// docs/BROKER_PLUGIN.md lists every key with its default.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "fota/common/result.hpp"
#include "fota/common/topics.hpp"
#include "fota/plugin/token_bucket.hpp"

namespace fota::plugin {

// Edge broker: where to fill the artifact cache (artifact_dir) from, once per artifact: the
// orchestrator's API (https://host:port), verified with the fleet CA, authenticated with this
// broker's certificate, each bundle checked against the release keys in `trusted_keys` before it
// is served. Unset = no cache fill (requests go through the bridge).
struct UpstreamOptions {
  std::string url;
  std::filesystem::path ca;
  std::filesystem::path cert;
  std::filesystem::path key;
  std::filesystem::path trusted_keys;
  std::int64_t retry_ms = 30'000;  // after a failed fill, the next try for that artifact
};

struct PluginOptions {
  common::TopicScheme scheme;
  // Read-only content-addressed artifact store (the orchestrator's); none = no chunk serving.
  std::optional<std::filesystem::path> artifact_dir;
  // Deny list file (device ids and certificate serials), re-read on SIGHUP and when it changes
  // (checked every deny_list_check_ms; 0 = only on SIGHUP); none = empty list.
  std::optional<std::filesystem::path> deny_list;
  std::int64_t deny_list_check_ms = 1'000;

  // Per device connection. Orchestrator and observer connections are not rate limited: the
  // orchestrator talks to the whole fleet, an observer cannot publish at all.
  RateLimit device_messages{100, 200};
  RateLimit device_bytes{1024 * 1024, 4 * 1024 * 1024};
  // Chunk bytes the plugin serves to one device; past it, requests get CHUNK_STATUS_UNAVAILABLE.
  RateLimit device_chunk_bytes{16 * 1024 * 1024, 16 * 1024 * 1024};
  // Refusals (ACL, invalid payload, rate limit) a connection may collect: `abuse_refusals` per
  // `abuse_window_ms`. One more and it is disconnected and refused for `abuser_ban_ms`.
  std::uint32_t abuse_refusals = 50;
  std::int64_t abuse_window_ms = 10'000;
  std::int64_t abuser_ban_ms = 30'000;

  // CONNECT attempts: per client id (counted once the certificate proves the id, so nobody can
  // use up another device's budget) and per source address (counted for every attempt the plugin
  // sees; generous, since a NAT gateway may front many devices). Past either, CONNECT is refused.
  RateLimit client_connects{0.2, 20};
  RateLimit address_connects{100, 2000};
  // State kept per client id and per address (budgets, abuse counts, chunk grants) outlives a
  // connection; an id or address idle for longer than this, and than any of its buckets needs to
  // refill, is forgotten (it would be back to a fresh state anyway).
  std::int64_t client_state_idle_ms = 600'000;

  // Work bound per chunk request: at most this many chunks are read and answered.
  std::uint32_t max_chunks_per_request = 64;
  int chunk_qos = 1;

  // BrokerStats period on the retained stats topic; 0 = never.
  std::int64_t stats_interval_ms = 10'000;
  // spdlog level name: trace, debug, info, warn, error, off.
  std::string log_level = "info";

  // Core broker: common names of the broker certificates that may connect as the bridge of an edge
  // broker (docs/BROKER_PLUGIN.md, "Edge brokers"); empty = no broker certificate may connect.
  std::vector<std::string> edge_brokers;
  // Edge broker: the local client id of this broker's bridge to the core (mosquitto.conf
  // `local_clientid`). Commands arriving through it grant chunks like the orchestrator's own; no
  // device may connect with this id.
  std::string bridge_client_id;
  // Edge broker: where to fill the artifact cache from (UpstreamOptions); unset = no cache fill
  // (requests go through the bridge).
  using Upstream = UpstreamOptions;
  std::optional<Upstream> upstream;
};

// Parses key/value pairs (keys without the "plugin_opt_" prefix). Unknown keys and bad values
// are errors that name the key, the value and what is expected.
common::Result<PluginOptions> parse_plugin_options(
    const std::vector<std::pair<std::string, std::string>>& pairs);

}  // namespace fota::plugin

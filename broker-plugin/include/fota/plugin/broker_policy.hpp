// SPDX-License-Identifier: Apache-2.0
// The broker plugin's policy: a sans-IO core with no Mosquitto dependency. The Mosquitto shim
// feeds it broker events with `now` and carries out what it returns; tests drive it directly.
//
// Connections are identified by the client id plus an opaque `ConnectionId` the adapter picks
// (the Mosquitto shim uses the address of the client context): when a device reconnects, the
// broker reports the old connection's disconnect after the new one authenticated, and the
// handle keeps the two apart.
//
// Budgets (token buckets), abuse counts and chunk grants belong to the client id, not to the
// connection: reconnecting refills nothing. What is kept for an id that has gone quiet is
// forgotten once it would be back to a fresh state anyway (docs/BROKER_PLUGIN.md, "Memory").
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <spdlog/logger.h>

#include "fota/common/chunk_responder.hpp"
#include "fota/common/pki.hpp"
#include "fota/common/result.hpp"
#include "fota/plugin/deny_list.hpp"
#include "fota/plugin/options.hpp"
#include "fota/plugin/token_bucket.hpp"
#include "fota/plugin/topic_acl.hpp"
#include "fota/v1/fota.pb.h"

namespace fota::plugin {

using ConnectionId = std::uint64_t;

enum class Refusal {
  kNone,
  kNoCertificate,       // no verified client certificate, or one without a usable CN / role
  kClientIdMismatch,    // MQTT client id differs from the certificate CN
  kRoleNotAllowed,      // a role that has no business on MQTT (operator; a broker not in edge_brokers)
  kRevoked,             // CN or serial on the deny list
  kBanned,              // recently disconnected as an abuser
  kConnectRateLimited,  // too many CONNECT attempts from this client id or source address
  kUnknownClient,       // an event for a client this policy never admitted
  kAclDenied,
  kInvalidPayload,
  kRateLimited,
};

std::string_view refusal_name(Refusal refusal) noexcept;

struct Decision {
  Refusal refusal = Refusal::kNone;
  // Set when this refusal made the connection an abuser: the adapter closes it now.
  bool disconnect = false;
  std::string reason;  // for the log: what was refused and why

  bool allowed() const noexcept { return refusal == Refusal::kNone; }
  static Decision allow() { return {}; }
};

struct Publication {
  std::string topic;
  std::string payload;
  int qos = 0;
  bool retain = false;
};

// What to do with a PUBLISH that passed the ACL (MESSAGE event).
struct MessageOutcome {
  // True when the plugin answered the chunk request itself; the adapter then drops the
  // request instead of forwarding it to the orchestrator.
  bool served = false;
  // Replies for the publishing client only (its chunk topic).
  std::vector<Publication> replies;
  // An edge broker learned (from a command that came through its bridge) that a device may fetch
  // an artifact its cache does not hold: the adapter fills the cache from upstream (once).
  std::optional<std::string> fetch_artifact;
};

struct TickOutcome {
  std::optional<Publication> stats;  // retained BrokerStats for everyone allowed to read it
};

class BrokerPolicy {
 public:
  // `chunks` may be null (no chunk serving); it must outlive the policy. The plugin serves from
  // the orchestrator's read-only ArtifactStore (common::ArtifactStoreChunkSource).
  BrokerPolicy(PluginOptions options, DenyList deny_list, const common::ChunkSource* chunks,
               std::shared_ptr<spdlog::logger> logger, std::int64_t now_ms);

  // CONNECT. `certificate` is the identity read from the verified client certificate, or the
  // error of reading it (no certificate, no CN, no role). `address` is the peer's IP address as
  // text (empty when unknown: then only the per-id attempt limit applies).
  Decision on_connect(ConnectionId connection, std::string_view client_id,
                      const common::Result<common::PeerIdentity>& certificate, std::string_view address,
                      std::int64_t now_ms);
  // SUBSCRIBE of one filter.
  Decision on_subscribe(ConnectionId connection, std::string_view client_id, std::string_view filter,
                        std::int64_t now_ms);
  // An incoming PUBLISH (also a will, checked when it is sent): ACL, payload, rate limits.
  Decision on_publish(ConnectionId connection, std::string_view client_id, std::string_view topic,
                      std::string_view payload, bool retain, std::int64_t now_ms);
  // Delivery of a message on `topic` to the client (also queued and retained messages).
  Decision on_deliver(std::string_view client_id, std::string_view topic) const;
  // A PUBLISH that passed on_publish, before it is routed: commands to a device grant (or end)
  // its right to fetch an artifact; chunk requests for the granted artifact that the store can
  // answer are answered here.
  MessageOutcome on_message(ConnectionId connection, std::string_view client_id, std::string_view topic,
                            std::string_view payload, std::int64_t now_ms);
  void on_disconnect(ConnectionId connection, std::string_view client_id, std::int64_t now_ms);
  TickOutcome on_tick(std::int64_t now_ms);

  // Replaces the deny list (SIGHUP). Returns the client ids of connected clients that are
  // now revoked; the adapter disconnects them.
  std::vector<std::string> replace_deny_list(DenyList deny_list);
  // Cache fills of an edge broker so far (the adapter fills on its own thread), for BrokerStats.
  void set_cache_fills(std::uint64_t fills, std::uint64_t failures, std::uint64_t bytes_fetched);

  const v1::BrokerStats& stats() const noexcept { return stats_; }
  // What is kept now: client ids (online or not), source addresses, chunk grants. For tests of
  // the memory bound.
  std::size_t tracked_clients() const noexcept { return sessions_.size(); }
  std::size_t tracked_addresses() const noexcept { return address_connects_.size(); }
  std::size_t chunk_grants() const noexcept { return grants_.size(); }
  const PluginOptions& options() const noexcept { return options_; }

 private:
  // One per client id whose certificate was verified; kept across connections.
  struct Session {
    ConnectionId connection = 0;
    bool online = false;
    bool admitted = false;  // was admitted at least once: `identity` may be used for wills
    common::PeerIdentity identity;
    std::string chunk_request_topic;  // devices only: the one topic the plugin may answer
    std::string chunk_topic;
    TokenBucket messages;
    TokenBucket bytes;
    TokenBucket chunk_bytes;
    TokenBucket refusals;
    TokenBucket connects;
    bool abuser = false;
    std::int64_t last_active_ms = 0;  // last CONNECT or disconnect
  };
  struct AddressState {
    TokenBucket connects;
    std::int64_t last_active_ms = 0;
  };
  // The artifact a command last told a device to fetch.
  struct ChunkGrant {
    std::string artifact_id;
    std::int64_t last_active_ms = 0;  // granted or last used
  };

  Session* live_session(ConnectionId connection, std::string_view client_id);
  const Session* known_session(std::string_view client_id) const;
  Decision refuse_connect(Refusal refusal, std::string reason);
  Decision refuse_connect_rate_limited(const std::string& who, const RateLimit& limit, std::string_view scope,
                                       std::string_view options, std::string_view advice);
  // Fresh budgets for the role (devices are limited, the others are not).
  void reset_budgets(Session& session, common::Role role, std::int64_t now_ms) const;
  // Learns from a command the orchestrator sends a device what that device may fetch.
  void learn_grant(std::string_view device_id, std::string_view payload, std::int64_t now_ms);
  // Forgets idle client ids, addresses, grants and expired bans; at most once per sweep period.
  void sweep(std::int64_t now_ms);
  // Counts a refusal of a live session; may make it an abuser.
  Decision refuse(Session* session, Refusal refusal, std::string reason, std::int64_t now_ms);
  void serve_chunks(Session& session, const v1::ChunkRequest& request, std::int64_t now_ms,
                    MessageOutcome& out);

  PluginOptions options_;
  TopicAcl acl_;
  DenyList deny_list_;
  const common::ChunkSource* chunks_;
  std::shared_ptr<spdlog::logger> log_;
  // One entry per client id admitted since start: Mosquitto checks wills and messages queued
  // for offline sessions after the connection is gone, and those checks need the identity.
  struct StringHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view text) const noexcept {
      return std::hash<std::string_view>{}(text);
    }
  };
  std::unordered_map<std::string, Session, StringHash, std::equal_to<>> sessions_;
  std::unordered_map<std::string, std::int64_t, StringHash, std::equal_to<>> banned_until_ms_;
  std::unordered_map<std::string, AddressState, StringHash, std::equal_to<>> address_connects_;
  std::unordered_map<std::string, ChunkGrant, StringHash, std::equal_to<>> grants_;  // by device id
  std::int64_t client_idle_ms_ = 0;   // options_.client_state_idle_ms or the longest refill
  std::int64_t address_idle_ms_ = 0;  // the address bucket's refill time
  std::int64_t next_sweep_ms_ = 0;
  v1::BrokerStats stats_;
  std::int64_t next_stats_ms_ = 0;
  std::string stats_topic_;
};

}  // namespace fota::plugin

// SPDX-License-Identifier: Apache-2.0
#include "fota/plugin/broker_policy.hpp"

#include <algorithm>
#include <cmath>

#include <spdlog/fmt/fmt.h>

#include "fota/common/codec.hpp"

namespace fota::plugin {

using common::Channel;
using common::Role;

std::string_view refusal_name(Refusal refusal) noexcept {
  switch (refusal) {
    case Refusal::kNone:
      return "none";
    case Refusal::kNoCertificate:
      return "no usable client certificate";
    case Refusal::kClientIdMismatch:
      return "client id differs from certificate CN";
    case Refusal::kRoleNotAllowed:
      return "role not allowed on MQTT";
    case Refusal::kRevoked:
      return "revoked";
    case Refusal::kBanned:
      return "banned as an abuser";
    case Refusal::kConnectRateLimited:
      return "too many connection attempts";
    case Refusal::kUnknownClient:
      return "unknown client";
    case Refusal::kAclDenied:
      return "ACL denied";
    case Refusal::kInvalidPayload:
      return "invalid payload";
    case Refusal::kRateLimited:
      return "rate limited";
  }
  return "unknown";
}

namespace {

// Client ids and topics come from the network: keep log lines short and printable.
std::string printable(std::string_view text) {
  std::string out;
  for (char c : text.substr(0, 120)) {
    auto u = static_cast<unsigned char>(c);
    out += (u < 0x20 || u >= 0x7f) ? '?' : c;
  }
  if (text.size() > 120) out += "...";
  return out;
}

// How long a bucket takes from empty to full; 0 when unlimited.
std::int64_t refill_ms(const RateLimit& limit) {
  if (limit.unlimited()) return 0;
  return static_cast<std::int64_t>(std::ceil(limit.burst / limit.per_second * 1000.0));
}

// A configured limit as written in mosquitto.conf: 20, 0.2, 1e+06.
std::string limit_text(double value) { return fmt::format("{}", value); }

// Sweeps for idle state run at most this often (and on CONNECT or TICK, whichever comes).
constexpr std::int64_t kSweepPeriodMs = 60'000;

// Built by appending only: GCC 12 warns falsely (-Wrestrict) about `"literal" + std::string`.
std::string quoted(std::string_view text) {
  std::string out(1, '"');
  out += printable(text);
  out += '"';
  return out;
}

}  // namespace

BrokerPolicy::BrokerPolicy(PluginOptions options, DenyList deny_list, const common::ChunkSource* chunks,
                           std::shared_ptr<spdlog::logger> logger, std::int64_t now_ms)
    : options_(std::move(options)),
      acl_(options_.scheme),
      deny_list_(std::move(deny_list)),
      chunks_(chunks),
      log_(std::move(logger)),
      stats_topic_(options_.scheme.broker_stats_topic()) {
  next_stats_ms_ = now_ms + options_.stats_interval_ms;
  client_idle_ms_ = std::max({options_.client_state_idle_ms, options_.abuse_window_ms,
                              refill_ms(options_.device_messages), refill_ms(options_.device_bytes),
                              refill_ms(options_.device_chunk_bytes), refill_ms(options_.client_connects)});
  address_idle_ms_ = refill_ms(options_.address_connects);
  next_sweep_ms_ = now_ms + kSweepPeriodMs;
}

BrokerPolicy::Session* BrokerPolicy::live_session(ConnectionId connection, std::string_view client_id) {
  auto it = sessions_.find(client_id);
  if (it == sessions_.end() || !it->second.online || it->second.connection != connection) return nullptr;
  return &it->second;
}

const BrokerPolicy::Session* BrokerPolicy::known_session(std::string_view client_id) const {
  auto it = sessions_.find(client_id);
  return it == sessions_.end() || !it->second.admitted ? nullptr : &it->second;
}

void BrokerPolicy::reset_budgets(Session& session, Role role, std::int64_t now_ms) const {
  session.messages = TokenBucket();
  session.bytes = TokenBucket();
  session.chunk_bytes = TokenBucket();
  if (role == Role::kDevice) {
    session.messages = TokenBucket(options_.device_messages, now_ms);
    session.bytes = TokenBucket(options_.device_bytes, now_ms);
    session.chunk_bytes = TokenBucket(options_.device_chunk_bytes, now_ms);
  }
  const double refusals = static_cast<double>(options_.abuse_refusals);
  session.refusals = TokenBucket(
      RateLimit{refusals * 1000.0 / static_cast<double>(options_.abuse_window_ms), refusals}, now_ms);
  session.connects = TokenBucket(options_.client_connects, now_ms);
}

// Both CONNECT limits (per source address, per proved client id) refuse alike.
Decision BrokerPolicy::refuse_connect_rate_limited(const std::string& who, const RateLimit& limit,
                                                   std::string_view scope, std::string_view options,
                                                   std::string_view advice) {
  stats_.set_connects_rate_limited(stats_.connects_rate_limited() + 1);
  return refuse_connect(
      Refusal::kConnectRateLimited,
      fmt::format("{}: more than {} connection attempts {} at {}/s ({}); {}", who, limit_text(limit.burst),
                  scope, limit_text(limit.per_second), options, advice));
}

Decision BrokerPolicy::refuse_connect(Refusal refusal, std::string reason) {
  stats_.set_connections_refused(stats_.connections_refused() + 1);
  if (refusal == Refusal::kRevoked) stats_.set_revoked_refused(stats_.revoked_refused() + 1);
  log_->info("refused connection: {}", reason);
  return Decision{refusal, false, std::move(reason)};
}

Decision BrokerPolicy::on_connect(ConnectionId connection, std::string_view client_id,
                                  const common::Result<common::PeerIdentity>& certificate,
                                  std::string_view address, std::int64_t now_ms) {
  sweep(now_ms);
  std::string who = std::string("client ") + quoted(client_id);
  if (!address.empty()) {
    who += " from ";
    who += printable(address);
    // Every attempt counts here, whoever it claims to be.
    auto [it, fresh] = address_connects_.try_emplace(std::string(address));
    if (fresh) it->second.connects = TokenBucket(options_.address_connects, now_ms);
    it->second.last_active_ms = now_ms;
    if (!it->second.connects.try_take(1, now_ms)) {
      return refuse_connect_rate_limited(who, options_.address_connects, "from this address",
                                         "plugin_opt_address_connect_burst, address_connects_per_second",
                                         "the address must wait before connecting again");
    }
  }
  if (!certificate) {
    return refuse_connect(Refusal::kNoCertificate,
                          who + " has no usable client certificate (" + certificate.error().message + ")");
  }
  const common::PeerIdentity& identity = *certificate;
  if (identity.common_name != client_id) {
    return refuse_connect(Refusal::kClientIdMismatch, who + " presented a certificate for \"" +
                                                          printable(identity.common_name) +
                                                          "\"; the client id must equal the certificate CN");
  }
  const bool edge_broker =
      identity.role == Role::kBroker && std::find(options_.edge_brokers.begin(), options_.edge_brokers.end(),
                                                  identity.common_name) != options_.edge_brokers.end();
  if (identity.role != Role::kDevice && identity.role != Role::kOrchestrator &&
      identity.role != Role::kObserver && !edge_broker) {
    return refuse_connect(Refusal::kRoleNotAllowed,
                          who + " has role " + std::string(common::role_name(identity.role)) +
                              "; only device, orchestrator and observer certificates may connect, and broker "
                              "certificates listed in plugin_opt_edge_brokers (an edge broker's bridge)");
  }
  if (!options_.bridge_client_id.empty() && client_id == options_.bridge_client_id) {
    return refuse_connect(Refusal::kClientIdMismatch,
                          who +
                              " uses the id of this broker's bridge (plugin_opt_bridge_client_id); "
                              "no client may connect with it");
  }

  // From here on the certificate proves the client id: its state is the id's own, kept across
  // connections, and only the id's holder can use up its connect budget.
  auto [entry, fresh] = sessions_.try_emplace(std::string(client_id));
  Session& session = entry->second;
  if (fresh || session.identity.role != identity.role) reset_budgets(session, identity.role, now_ms);
  if (fresh) session.identity = identity;  // identity is replaced only on admission
  session.last_active_ms = now_ms;
  if (!session.connects.try_take(1, now_ms)) {
    return refuse_connect_rate_limited(who, options_.client_connects, "for this client id",
                                       "plugin_opt_client_connect_burst, client_connects_per_second",
                                       "a device must back off between reconnects");
  }
  if (deny_list_.denies(identity.common_name, identity.serial_hex)) {
    return refuse_connect(Refusal::kRevoked,
                          who + " (certificate serial " + identity.serial_hex + ") is on the deny list");
  }
  if (auto ban = banned_until_ms_.find(client_id); ban != banned_until_ms_.end()) {
    if (now_ms < ban->second) {
      return refuse_connect(Refusal::kBanned, who + " was disconnected as an abuser; refused for another " +
                                                  std::to_string((ban->second - now_ms + 999) / 1000) + " s");
    }
    banned_until_ms_.erase(ban);
  }

  session.connection = connection;
  session.online = true;
  session.admitted = true;
  session.abuser = false;  // its refusal bucket is kept: a repeat offender is cut off sooner
  session.identity = identity;
  session.chunk_request_topic.clear();
  session.chunk_topic.clear();
  if (identity.role == Role::kDevice) {
    // peer_identity validated the CN as a device id.
    auto device = common::DeviceId::parse(identity.common_name);
    if (device) {
      session.chunk_request_topic = options_.scheme.device_topic(*device, Channel::kChunkRequest);
      session.chunk_topic = options_.scheme.device_topic(*device, Channel::kChunk);
    }
  }
  log_->debug("admitted {} as {}", who, common::role_name(identity.role));
  return Decision::allow();
}

Decision BrokerPolicy::refuse(Session* session, Refusal refusal, std::string reason, std::int64_t now_ms) {
  switch (refusal) {
    case Refusal::kAclDenied:
    case Refusal::kUnknownClient:
      stats_.set_acl_denials(stats_.acl_denials() + 1);
      break;
    case Refusal::kInvalidPayload:
      stats_.set_invalid_payloads(stats_.invalid_payloads() + 1);
      break;
    case Refusal::kRateLimited:
      stats_.set_rate_limited(stats_.rate_limited() + 1);
      break;
    default:
      break;
  }
  Decision decision{refusal, false, std::move(reason)};
  if (session == nullptr) return decision;
  if (session->abuser) {
    decision.disconnect = true;
    return decision;
  }
  if (!session->refusals.try_take(1, now_ms)) {
    session->abuser = true;
    decision.disconnect = true;
    banned_until_ms_[session->identity.common_name] = now_ms + options_.abuser_ban_ms;
    stats_.set_disconnected_abusers(stats_.disconnected_abusers() + 1);
    log_->warn("disconnecting \"{}\": more than {} refusals within {} ms (last: {}); refused for {} ms",
               printable(session->identity.common_name), options_.abuse_refusals, options_.abuse_window_ms,
               decision.reason, options_.abuser_ban_ms);
  } else {
    log_->debug("refused: {}", decision.reason);
  }
  return decision;
}

Decision BrokerPolicy::on_subscribe(ConnectionId connection, std::string_view client_id,
                                    std::string_view filter, std::int64_t now_ms) {
  Session* session = live_session(connection, client_id);
  if (session == nullptr) {
    return refuse(nullptr, Refusal::kUnknownClient,
                  std::string("subscribe from ") + quoted(client_id) + ", which the plugin did not admit",
                  now_ms);
  }
  if (session->abuser) return refuse(session, Refusal::kAclDenied, "abuser", now_ms);
  if (!acl_.may_subscribe(session->identity.role, session->identity.common_name, filter)) {
    return refuse(session, Refusal::kAclDenied,
                  std::string(common::role_name(session->identity.role)) + " \"" + printable(client_id) +
                      "\" may not subscribe to \"" + printable(filter) + "\"",
                  now_ms);
  }
  return Decision::allow();
}

Decision BrokerPolicy::on_publish(ConnectionId connection, std::string_view client_id, std::string_view topic,
                                  std::string_view payload, bool retain, std::int64_t now_ms) {
  // A will or a source check of a retained message arrives after (or outside) the connection:
  // it gets the ACL and payload checks of its client, without rate limits or abuse counting.
  Session* live = live_session(connection, client_id);
  const Session* session = live != nullptr ? live : known_session(client_id);
  if (session == nullptr) {
    return refuse(nullptr, Refusal::kUnknownClient,
                  std::string("publish from ") + quoted(client_id) + ", which the plugin did not admit",
                  now_ms);
  }
  if (live != nullptr && live->abuser) return refuse(live, Refusal::kAclDenied, "abuser", now_ms);
  const common::PeerIdentity& identity = session->identity;
  auto target = acl_.publishable(identity.role, identity.common_name, topic);
  const auto who = [&] {
    return std::string(common::role_name(identity.role)) + " \"" + printable(client_id) + "\"";
  };
  if (!target) {
    return refuse(live, Refusal::kAclDenied, who() + " may not publish to \"" + printable(topic) + "\"",
                  now_ms);
  }
  // For every role: a retained command or chunk would reach the device again on every
  // subscribe, long after it was meant, and the ACL lets nobody clear it.
  if (retain && target->channel != Channel::kInventory && target->channel != Channel::kPresence) {
    return refuse(live, Refusal::kAclDenied,
                  who() + " may not retain on \"" + printable(topic) + "\" (only inventory and presence)",
                  now_ms);
  }
  if (live != nullptr && identity.role == Role::kDevice) {
    // Bytes first: a message refused for size must not also use up a message token.
    if (!live->bytes.try_take(static_cast<double>(payload.size()), now_ms) ||
        !live->messages.try_take(1, now_ms)) {
      return refuse(live, Refusal::kRateLimited,
                    who() + " is over its rate limit (" + std::to_string(payload.size()) + " bytes to \"" +
                        printable(topic) + "\")",
                    now_ms);
    }
  }
  if (auto valid = common::validate_device_message(target->channel, target->device, payload); !valid) {
    return refuse(
        live, Refusal::kInvalidPayload,
        who() + " published an invalid payload to \"" + printable(topic) + "\": " + valid.error().message,
        now_ms);
  }
  return Decision::allow();
}

Decision BrokerPolicy::on_deliver(std::string_view client_id, std::string_view topic) const {
  const Session* session = known_session(client_id);
  if (session == nullptr) {
    // A persistent session restored by the broker (persistence) before its client came back:
    // only a certificate with this CN could have created it, so the client's own device topics
    // are safe to queue for it; anything else waits for it to authenticate again.
    if (acl_.may_receive(Role::kDevice, client_id, topic)) return Decision::allow();
    return Decision{Refusal::kUnknownClient, false, "unknown client"};
  }
  if (!acl_.may_receive(session->identity.role, session->identity.common_name, topic)) {
    return Decision{Refusal::kAclDenied, false, quoted(client_id) + " may not receive " + quoted(topic)};
  }
  return Decision::allow();
}

MessageOutcome BrokerPolicy::on_message(ConnectionId connection, std::string_view client_id,
                                        std::string_view topic, std::string_view payload,
                                        std::int64_t now_ms) {
  MessageOutcome out;
  if (chunks_ == nullptr) return out;
  Session* session = live_session(connection, client_id);
  if (session == nullptr) {
    // An edge broker's bridge never authenticates here (Mosquitto admits its own bridge); what it
    // brings from the core is the orchestrator's, and its commands grant chunks like those.
    if (options_.bridge_client_id.empty() || client_id != options_.bridge_client_id) return out;
    if (auto target = acl_.split(topic); target && target->channel == Channel::kCommand) {
      learn_grant(target->device, payload, now_ms);
      auto grant = grants_.find(target->device);
      if (grant != grants_.end() && !chunks_->chunk_count(grant->second.artifact_id)) {
        out.fetch_artifact = grant->second.artifact_id;
      }
    }
    return out;
  }
  if (session->identity.role == Role::kOrchestrator) {
    // on_publish admitted it: the ACL allows the orchestrator only command and chunk topics.
    if (auto target = acl_.split(topic); target && target->channel == Channel::kCommand) {
      learn_grant(target->device, payload, now_ms);
    }
    return out;
  }
  // Cheap test first: this runs for every PUBLISH the broker receives.
  if (session->chunk_request_topic.empty() || topic != session->chunk_request_topic) return out;
  auto request = common::decode<v1::ChunkRequest>(payload, common::kMaxChunkRequestBytes);
  if (!request) return out;  // on_publish already refused it; nothing to serve
  auto grant = grants_.find(session->identity.common_name);
  if (grant == grants_.end() || grant->second.artifact_id != request->artifact_id()) {
    // Not what a command told this device to fetch (or told before the broker restarted): the
    // plugin serves nothing, and the request goes on to the orchestrator, which answers only
    // for the artifact the fleet state assigns the device.
    stats_.set_chunk_requests_not_assigned(stats_.chunk_requests_not_assigned() + 1);
    log_->debug("not serving {} to \"{}\": no command told it to fetch that artifact; forwarded",
                printable(request->artifact_id()), printable(session->identity.common_name));
    return out;
  }
  grant->second.last_active_ms = now_ms;
  serve_chunks(*session, *request, now_ms, out);
  return out;
}

void BrokerPolicy::learn_grant(std::string_view device_id, std::string_view payload, std::int64_t now_ms) {
  // The common decoder, as every reader of commands: fields added to the envelope later are
  // carried along unread.
  auto command = common::decode<v1::Command>(payload, common::kMaxCommandBytes);
  if (!command) return;  // on_publish validated it; nothing to learn from what does not parse
  const v1::SignedManifest* manifest = nullptr;
  switch (command->body_case()) {
    case v1::Command::kInstall:
      manifest = &command->install().manifest();
      break;
    case v1::Command::kRollback:
      // Without a manifest the device only switches back to its previous slot: nothing to fetch.
      if (command->rollback().has_manifest()) manifest = &command->rollback().manifest();
      break;
    case v1::Command::kCancel:
      break;
    default:
      return;  // inventory, log level: the assignment stands
  }
  v1::Manifest decoded;
  if (manifest == nullptr || !decoded.ParseFromString(manifest->manifest()) ||
      !common::is_valid_artifact_id(decoded.artifact_id())) {
    if (auto it = grants_.find(device_id); it != grants_.end()) {
      grants_.erase(it);
      log_->debug("\"{}\" may no longer fetch chunks (command {})", printable(device_id),
                  printable(command->command_id()));
    }
    return;
  }
  auto [it, inserted] = grants_.try_emplace(std::string(device_id));
  (void)inserted;
  it->second.artifact_id = decoded.artifact_id();
  it->second.last_active_ms = now_ms;
  log_->debug("\"{}\" may fetch {} (command {})", printable(device_id), decoded.artifact_id(),
              printable(command->command_id()));
}

void BrokerPolicy::serve_chunks(Session& session, const v1::ChunkRequest& request, std::int64_t now_ms,
                                MessageOutcome& out) {
  // Work per request is bounded by max_chunks_per_request; the device's chunk byte bucket is the
  // byte budget, taken from once for what was served.
  const common::ChunkBudget budget{options_.max_chunks_per_request, session.chunk_bytes.available(now_ms)};
  const auto summary = common::respond_to_chunk_request(
      request, *chunks_, budget,
      [&](v1::ChunkData&& chunk) {
        out.replies.push_back(
            Publication{session.chunk_topic, chunk.SerializeAsString(), options_.chunk_qos, false});
      },
      common::UnknownArtifact::kLeave);
  if (summary.refusal == common::ChunkRefusal::kUnknownArtifact) {  // the orchestrator may have it
    stats_.set_chunk_requests_forwarded(stats_.chunk_requests_forwarded() + 1);
    return;
  }
  out.served = true;
  (void)session.chunk_bytes.try_take(static_cast<double>(summary.served_bytes), now_ms);
  stats_.set_chunks_served(stats_.chunks_served() + summary.served);
  stats_.set_chunk_bytes_served(stats_.chunk_bytes_served() + summary.served_bytes);
  if (summary.read_error) {
    log_->warn("reading chunks of {}: {} ({} chunk(s) answered unavailable)",
               printable(request.artifact_id()), summary.read_error->message, summary.unavailable);
  }
}

void BrokerPolicy::on_disconnect(ConnectionId connection, std::string_view client_id, std::int64_t now_ms) {
  auto it = sessions_.find(client_id);
  // A reconnect authenticates before the broker drops the old connection: only the current
  // connection's disconnect counts.
  if (it == sessions_.end() || it->second.connection != connection) return;
  it->second.online = false;
  it->second.last_active_ms = now_ms;
}

void BrokerPolicy::sweep(std::int64_t now_ms) {
  if (now_ms < next_sweep_ms_) return;
  next_sweep_ms_ = now_ms + kSweepPeriodMs;
  // An id idle this long has full buckets again: forgetting it changes no decision. A ban is
  // kept on its own until it ends.
  std::erase_if(sessions_, [&](const auto& entry) {
    return !entry.second.online && now_ms - entry.second.last_active_ms >= client_idle_ms_;
  });
  std::erase_if(address_connects_,
                [&](const auto& entry) { return now_ms - entry.second.last_active_ms >= address_idle_ms_; });
  // A grant nobody used for that long is forgotten; the orchestrator still serves the device
  // what the fleet state assigns it.
  std::erase_if(grants_,
                [&](const auto& entry) { return now_ms - entry.second.last_active_ms >= client_idle_ms_; });
  std::erase_if(banned_until_ms_, [&](const auto& entry) { return entry.second <= now_ms; });
}

TickOutcome BrokerPolicy::on_tick(std::int64_t now_ms) {
  TickOutcome out;
  sweep(now_ms);
  if (options_.stats_interval_ms <= 0 || now_ms < next_stats_ms_) return out;
  next_stats_ms_ = now_ms + options_.stats_interval_ms;
  stats_.set_timestamp_ms(now_ms);
  out.stats = Publication{stats_topic_, stats_.SerializeAsString(), 0, true};
  return out;
}

void BrokerPolicy::set_cache_fills(std::uint64_t fills, std::uint64_t failures, std::uint64_t bytes_fetched) {
  stats_.set_edge_cache_fills(fills);
  stats_.set_edge_cache_fill_failures(failures);
  stats_.set_edge_cache_bytes_fetched(bytes_fetched);
}

std::vector<std::string> BrokerPolicy::replace_deny_list(DenyList deny_list) {
  deny_list_ = std::move(deny_list);
  std::vector<std::string> revoked;
  for (const auto& [client_id, session] : sessions_) {
    if (session.online && deny_list_.denies(session.identity.common_name, session.identity.serial_hex)) {
      revoked.push_back(client_id);
    }
  }
  if (!revoked.empty())
    log_->info("{} connected client(s) are now revoked and will be disconnected", revoked.size());
  return revoked;
}

}  // namespace fota::plugin

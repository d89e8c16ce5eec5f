// SPDX-License-Identifier: Apache-2.0
// The Mosquitto 2.0 plugin entry points (plugin API version 5). This file only registers
// callbacks, translates broker events into BrokerPolicy calls and carries out what the policy
// returns. Nothing may throw into the broker: every callback catches everything and fails closed.
#include <chrono>
#include <cstdio>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

// mosquitto_broker.h must come before mosquitto_plugin.h (2.0.11).
#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>
#include <openssl/x509.h>
#include <spdlog/details/null_mutex.h>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/spdlog.h>

#include "edge_cache.hpp"
#include "fota/common/artifact.hpp"
#include "fota/common/pki.hpp"
#include "fota/plugin/broker_policy.hpp"

#define FOTA_PLUGIN_EXPORT extern "C" __attribute__((visibility("default")))

namespace fota::plugin {
namespace {

// Served chunk requests are re-routed to this topic, which no client may subscribe to, so
// they are acknowledged to the device as usual and go nowhere.
constexpr const char* kServedRequestSink = "$fota-plugin/served-chunk-request";

// spdlog sink that writes into the broker's own log.
class MosquittoLogSink final : public spdlog::sinks::base_sink<spdlog::details::null_mutex> {
 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    int level = MOSQ_LOG_INFO;
    switch (msg.level) {
      case spdlog::level::trace:
      case spdlog::level::debug:
        level = MOSQ_LOG_DEBUG;
        break;
      case spdlog::level::info:
        level = MOSQ_LOG_INFO;
        break;
      case spdlog::level::warn:
        level = MOSQ_LOG_WARNING;
        break;
      default:
        level = MOSQ_LOG_ERR;
        break;
    }
    const std::string text(msg.payload.data(), msg.payload.size());
    mosquitto_log_printf(level, "fota-plugin: %s", text.c_str());
  }
  void flush_() override {}
};

struct PluginState {
  mosquitto_plugin_id_t* identifier = nullptr;
  std::shared_ptr<spdlog::logger> log;
  std::unique_ptr<common::ArtifactStore> store;
  std::unique_ptr<common::ArtifactStoreChunkSource> chunks;
  std::unique_ptr<BrokerPolicy> policy;
  std::unique_ptr<DenyListWatcher> deny_list_watcher;  // with a deny list file only
  std::unique_ptr<EdgeCacheFiller> cache_filler;       // an edge broker with plugin_opt_upstream_url only
};

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

ConnectionId connection_of(const mosquitto* client) { return reinterpret_cast<std::uintptr_t>(client); }

std::string_view client_id_of(const mosquitto* client) {
  const char* id = mosquitto_client_id(client);
  return id != nullptr ? std::string_view(id) : std::string_view();
}

void log_exception(PluginState& state, const char* where) {
  try {
    throw;
  } catch (const std::exception& e) {
    state.log->error("{}: {}", where, e.what());
  } catch (...) {
    state.log->error("{}: unknown exception", where);
  }
}

common::Result<common::PeerIdentity> certificate_identity(const mosquitto* client) {
  auto* certificate = static_cast<X509*>(mosquitto_client_certificate(client));
  if (certificate == nullptr) {
    return common::Error(common::Errc::kPermissionDenied,
                         "no verified client certificate; the listener needs require_certificate true");
  }
  auto identity = common::peer_identity(certificate);
  X509_free(certificate);
  return identity;
}

int on_basic_auth(int /*event*/, void* event_data, void* userdata) {
  auto& state = *static_cast<PluginState*>(userdata);
  try {
    auto* ev = static_cast<mosquitto_evt_basic_auth*>(event_data);
    const char* address = mosquitto_client_address(ev->client);
    const auto decision = state.policy->on_connect(connection_of(ev->client), client_id_of(ev->client),
                                                   certificate_identity(ev->client),
                                                   address != nullptr ? address : "", now_ms());
    return decision.allowed() ? MOSQ_ERR_SUCCESS : MOSQ_ERR_AUTH;
  } catch (...) {
    log_exception(state, "authentication");
    return MOSQ_ERR_AUTH;
  }
}

int on_acl_check(int /*event*/, void* event_data, void* userdata) {
  auto& state = *static_cast<PluginState*>(userdata);
  try {
    auto* ev = static_cast<mosquitto_evt_acl_check*>(event_data);
    const std::string_view client_id = client_id_of(ev->client);
    const std::string_view topic = ev->topic != nullptr ? std::string_view(ev->topic) : std::string_view();
    Decision decision;
    switch (ev->access) {
      case MOSQ_ACL_SUBSCRIBE:
        decision = state.policy->on_subscribe(connection_of(ev->client), client_id, topic, now_ms());
        break;
      case MOSQ_ACL_UNSUBSCRIBE:
        return MOSQ_ERR_SUCCESS;  // giving something up is always fine
      case MOSQ_ACL_WRITE: {
        const std::string_view payload(static_cast<const char*>(ev->payload),
                                       ev->payload != nullptr ? ev->payloadlen : 0);
        decision = state.policy->on_publish(connection_of(ev->client), client_id, topic, payload, ev->retain,
                                            now_ms());
        break;
      }
      case MOSQ_ACL_READ:
        decision = state.policy->on_deliver(client_id, topic);
        break;
      default:
        return MOSQ_ERR_ACL_DENIED;
    }
    if (decision.allowed()) return MOSQ_ERR_SUCCESS;
    // Any error other than "denied" makes the broker close the connection it is reading from,
    // right now and without relying on the TICK event.
    return decision.disconnect ? MOSQ_ERR_AUTH : MOSQ_ERR_ACL_DENIED;
  } catch (...) {
    log_exception(state, "ACL check");
    return MOSQ_ERR_ACL_DENIED;
  }
}

int on_message(int /*event*/, void* event_data, void* userdata) {
  auto& state = *static_cast<PluginState*>(userdata);
  try {
    auto* ev = static_cast<mosquitto_evt_message*>(event_data);
    const std::string_view client_id = client_id_of(ev->client);
    const std::string_view payload(static_cast<const char*>(ev->payload),
                                   ev->payload != nullptr ? ev->payloadlen : 0);
    const std::int64_t now = now_ms();
    auto outcome = state.policy->on_message(connection_of(ev->client), client_id, ev->topic, payload, now);
    if (outcome.fetch_artifact && state.cache_filler)
      state.cache_filler->request(*outcome.fetch_artifact, now);
    if (!outcome.served) return MOSQ_ERR_SUCCESS;
    const std::string id(client_id);
    for (auto& reply : outcome.replies) {
      // The broker queues these and sends them on its next loop iteration.
      const int rc = mosquitto_broker_publish_copy(id.c_str(), reply.topic.c_str(),
                                                   static_cast<int>(reply.payload.size()),
                                                   reply.payload.data(), reply.qos, false, nullptr);
      if (rc != MOSQ_ERR_SUCCESS) state.log->warn("queueing a chunk for \"{}\" failed ({})", id, rc);
    }
    char* sink = mosquitto_strdup(kServedRequestSink);
    if (sink == nullptr) return MOSQ_ERR_SUCCESS;  // out of memory: forwarding is still correct
    mosquitto_free(ev->topic);
    ev->topic = sink;
    ev->retain = false;
    return MOSQ_ERR_SUCCESS;
  } catch (...) {
    log_exception(state, "chunk serving");
    return MOSQ_ERR_SUCCESS;  // the request goes on to the orchestrator
  }
}

int on_disconnect(int /*event*/, void* event_data, void* userdata) {
  auto& state = *static_cast<PluginState*>(userdata);
  try {
    auto* ev = static_cast<mosquitto_evt_disconnect*>(event_data);
    state.policy->on_disconnect(connection_of(ev->client), client_id_of(ev->client), now_ms());
  } catch (...) {
    log_exception(state, "disconnect");
  }
  return MOSQ_ERR_SUCCESS;
}

// Puts a freshly loaded deny list in force (disconnecting the clients it now revokes), or keeps
// the previous one when it did not load: keeping it is safer than dropping every revocation.
void install_deny_list(PluginState& state, common::Result<DenyList> list, const char* why) {
  if (!list) {
    state.log->error("deny list not reloaded ({}), the previous one stays in force: {}", why,
                     list.error().message);
    return;
  }
  state.log->info("deny list reloaded ({}): {} entries", why, list->size());
  for (const auto& client_id : state.policy->replace_deny_list(std::move(list).value())) {
    state.log->warn("disconnecting \"{}\": revoked by the deny list", client_id);
    mosquitto_kick_client_by_clientid(client_id.c_str(), false);
  }
}

int on_tick(int /*event*/, void* /*event_data*/, void* userdata) {
  auto& state = *static_cast<PluginState*>(userdata);
  try {
    const std::int64_t now = now_ms();
    if (state.deny_list_watcher) {
      if (auto changed = state.deny_list_watcher->poll(now)) {
        install_deny_list(state, std::move(*changed), "the file changed");
      }
    }
    if (state.cache_filler) {
      for (auto& [level, line] : state.cache_filler->drain_log()) state.log->log(level, line);
      state.policy->set_cache_fills(state.cache_filler->fills(), state.cache_filler->failures(),
                                    state.cache_filler->bytes_fetched());
    }
    auto outcome = state.policy->on_tick(now);
    if (outcome.stats) {
      auto& stats = *outcome.stats;
      mosquitto_broker_publish_copy(nullptr, stats.topic.c_str(), static_cast<int>(stats.payload.size()),
                                    stats.payload.data(), stats.qos, stats.retain, nullptr);
    }
  } catch (...) {
    log_exception(state, "tick");
  }
  return MOSQ_ERR_SUCCESS;
}

int on_reload(int /*event*/, void* /*event_data*/, void* userdata) {
  auto& state = *static_cast<PluginState*>(userdata);
  try {
    const auto& path = state.policy->options().deny_list;
    if (path) {
      if (state.deny_list_watcher) state.deny_list_watcher->remember(now_ms());
      install_deny_list(state, DenyList::load(*path), "SIGHUP");
    }
  } catch (...) {
    log_exception(state, "reload");
  }
  // Let the broker go on reloading its other security settings.
  return MOSQ_ERR_PLUGIN_DEFER;
}

struct Registration {
  int event;
  MOSQ_FUNC_generic_callback callback;
};

constexpr Registration kCallbacks[] = {
    {MOSQ_EVT_BASIC_AUTH, on_basic_auth}, {MOSQ_EVT_ACL_CHECK, on_acl_check}, {MOSQ_EVT_MESSAGE, on_message},
    {MOSQ_EVT_DISCONNECT, on_disconnect}, {MOSQ_EVT_TICK, on_tick},           {MOSQ_EVT_RELOAD, on_reload},
};

int init(mosquitto_plugin_id_t* identifier, void** userdata, mosquitto_opt* options, int option_count) {
  auto state = std::make_unique<PluginState>();
  state->identifier = identifier;
  state->log = std::make_shared<spdlog::logger>("fota.broker-plugin", std::make_shared<MosquittoLogSink>());

  std::vector<std::pair<std::string, std::string>> pairs;
  for (int i = 0; i < option_count; ++i) {
    pairs.emplace_back(options[i].key != nullptr ? options[i].key : "",
                       options[i].value != nullptr ? options[i].value : "");
  }
  auto parsed = parse_plugin_options(pairs);
  if (!parsed) {
    state->log->error("not starting: {}", parsed.error().message);
    return MOSQ_ERR_INVAL;
  }
  PluginOptions opts = std::move(parsed).value();
  state->log->set_level(spdlog::level::from_str(opts.log_level));

  DenyList deny_list;
  if (opts.deny_list) {
    // Stamped before it is read: a change in between is noticed at the next check.
    state->deny_list_watcher = std::make_unique<DenyListWatcher>(*opts.deny_list, opts.deny_list_check_ms);
    state->deny_list_watcher->remember(now_ms());
    auto loaded = DenyList::load(*opts.deny_list);
    if (!loaded) {
      state->log->error("not starting: {}", loaded.error().message);
      return MOSQ_ERR_INVAL;
    }
    deny_list = std::move(loaded).value();
  }
  if (opts.artifact_dir) {
    std::error_code ec;
    if (!std::filesystem::is_directory(*opts.artifact_dir, ec)) {
      state->log->error(
          "not starting: plugin_opt_artifact_dir {} is not a directory; point it at the "
          "orchestrator's artifact store or leave it out to disable chunk serving",
          opts.artifact_dir->string());
      return MOSQ_ERR_INVAL;
    }
    state->store = std::make_unique<common::ArtifactStore>(*opts.artifact_dir);
    state->chunks = std::make_unique<common::ArtifactStoreChunkSource>(*state->store);
  }
  if (opts.upstream) {
    common::TrustStore trust;
    if (auto st = trust.load(opts.upstream->trusted_keys); !st || trust.empty()) {
      state->log->error("not starting: plugin_opt_trusted_keys {}: {}", opts.upstream->trusted_keys.string(),
                        st ? std::string("no release key (*.pub) in it") : st.error().message);
      return MOSQ_ERR_INVAL;
    }
    for (const auto& file : {opts.upstream->ca, opts.upstream->cert, opts.upstream->key}) {
      std::error_code ec;
      if (!std::filesystem::is_regular_file(file, ec)) {
        state->log->error("not starting: {} (plugin_opt_upstream_ca/cert/key) is not a readable file",
                          file.string());
        return MOSQ_ERR_INVAL;
      }
    }
    state->cache_filler = std::make_unique<EdgeCacheFiller>(*opts.upstream, *state->store, std::move(trust));
    state->log->info("edge broker: artifacts not in {} are fetched from {} (bridge {})",
                     opts.artifact_dir->string(), opts.upstream->url, opts.bridge_client_id);
  }
  state->log->info("loaded: topic prefix {}, chunk serving {}, deny list {} entries", opts.scheme.prefix(),
                   opts.artifact_dir ? "from " + opts.artifact_dir->string() : std::string("off"),
                   deny_list.size());
  state->policy = std::make_unique<BrokerPolicy>(std::move(opts), std::move(deny_list), state->chunks.get(),
                                                 state->log, now_ms());

  for (const auto& registration : kCallbacks) {
    const int rc = mosquitto_callback_register(identifier, registration.event, registration.callback, nullptr,
                                               state.get());
    if (rc != MOSQ_ERR_SUCCESS) {
      state->log->error("not starting: registering callback for event {} failed ({})", registration.event,
                        rc);
      for (const auto& done : kCallbacks) {
        if (&done == &registration) break;
        mosquitto_callback_unregister(identifier, done.event, done.callback, nullptr);
      }
      return rc;
    }
  }
  *userdata = state.release();
  return MOSQ_ERR_SUCCESS;
}

}  // namespace
}  // namespace fota::plugin

FOTA_PLUGIN_EXPORT int mosquitto_plugin_version(int supported_version_count, const int* supported_versions) {
  for (int i = 0; i < supported_version_count; ++i) {
    if (supported_versions[i] == 5) return 5;
  }
  return -1;
}

FOTA_PLUGIN_EXPORT int mosquitto_plugin_init(mosquitto_plugin_id_t* identifier, void** userdata,
                                             struct mosquitto_opt* options, int option_count) {
  try {
    return fota::plugin::init(identifier, userdata, options, option_count);
  } catch (const std::exception& e) {
    mosquitto_log_printf(MOSQ_LOG_ERR, "fota-plugin: not starting: %s", e.what());
  } catch (...) {
    mosquitto_log_printf(MOSQ_LOG_ERR, "fota-plugin: not starting: unknown exception");
  }
  return MOSQ_ERR_UNKNOWN;
}

FOTA_PLUGIN_EXPORT int mosquitto_plugin_cleanup(void* userdata, struct mosquitto_opt* /*options*/,
                                                int /*option_count*/) {
  std::unique_ptr<fota::plugin::PluginState> state(static_cast<fota::plugin::PluginState*>(userdata));
  if (!state) return MOSQ_ERR_SUCCESS;
  try {
    for (const auto& registration : fota::plugin::kCallbacks) {
      mosquitto_callback_unregister(state->identifier, registration.event, registration.callback, nullptr);
    }
  } catch (...) {
    // Shutting down; nothing left to protect.
  }
  return MOSQ_ERR_SUCCESS;
}

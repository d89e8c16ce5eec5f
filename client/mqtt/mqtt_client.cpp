// SPDX-License-Identifier: Apache-2.0
// MqttDeviceClient: Paho callbacks enqueue, one loop thread runs the engine.
#include "fota/client/mqtt_client.hpp"

#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <mqtt/async_client.h>
#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#include "../adapters/spdlog_level.hpp"
#include "fota/client/connection_supervisor.hpp"
#include "fota/client/device_agent.hpp"
#include "fota/client/device_messages.hpp"
#include "fota/common/topics.hpp"

namespace fota::client {
namespace {

using common::Channel;
using common::Errc;
using common::Error;

std::int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

struct MqttDeviceClient::Impl : public virtual mqtt::callback,
                                public virtual mqtt::iaction_listener,
                                public DeviceLink {
  struct Event {
    enum class Kind { kConnected, kLost, kConnectFailed, kMessage, kLog, kHealthAnswer } kind;
    std::string topic;  // kMessage
    std::string payload;
    v1::LogEntry entry;  // kLog
  };

  Impl(MqttClientConfig m, Hooks h, std::shared_ptr<spdlog::logger> l, std::string client_id)
      : config(std::move(m)),
        hooks(std::move(h)),
        logger(std::move(l)),
        client(config.broker_uri, client_id, mqtt::create_options(MQTTVERSION_5)),
        supervisor(supervisor_config(config)) {}

  // Paho times its connect attempts out itself (connect_timeout) and reports a failure.
  static ConnectionSupervisorConfig supervisor_config(const MqttClientConfig& c) {
    ConnectionSupervisorConfig s;
    s.reconnect_base_ms = c.reconnect_base.count();
    s.reconnect_max_ms = c.reconnect_max.count();
    s.connect_timeout_ms = 0;
    s.seed = c.random_seed;
    return s;
  }

  // ---- Paho callbacks: network thread, never block --------------------------------------
  void connected(const std::string&) override { push({Event::Kind::kConnected, {}, {}, {}}); }
  void connection_lost(const std::string&) override { push({Event::Kind::kLost, {}, {}, {}}); }
  void message_arrived(mqtt::const_message_ptr msg) override {
    push({Event::Kind::kMessage, msg->get_topic(), msg->get_payload_str(), {}});
  }
  void delivery_complete(mqtt::delivery_token_ptr) override {}
  void on_failure(const mqtt::token& tok) override {
    if (tok.get_type() == mqtt::token::Type::CONNECT) push({Event::Kind::kConnectFailed, {}, {}, {}});
  }
  void on_success(const mqtt::token&) override {}

  void push(Event e) {
    {
      std::lock_guard<std::mutex> lock(mutex);
      events.push_back(std::move(e));
    }
    cv.notify_all();
  }

  // The application's log API, from any thread: handed to the loop, bounded.
  void push_log(v1::LogEntry entry) {
    {
      std::lock_guard<std::mutex> lock(mutex);
      if (pending_logs >= config.log_queue_limit) {
        ++pending_logs_dropped;
        return;
      }
      ++pending_logs;
      events.push_back({Event::Kind::kLog, {}, {}, std::move(entry)});
    }
    cv.notify_all();
  }

  // ---- DeviceLink (loop thread) ------------------------------------------------------------
  common::Status publish(const OutboundMessage& message) override {
    if (!is_connected.load()) return Error(Errc::kUnavailable, "not connected");
    try {
      client.publish(message.topic, message.payload.data(), message.payload.size(), message.qos,
                     message.retain);
      return common::ok_status();
    } catch (const mqtt::exception& e) {
      return Error(Errc::kUnavailable, std::string("publish failed: ") + e.what());
    }
  }

  common::Status subscribe(const std::string& topic, int qos) override {
    try {
      client.subscribe(topic, qos);
      return common::ok_status();
    } catch (const mqtt::exception& e) {
      return Error(Errc::kUnavailable, e.what());
    }
  }

  // ---- Loop thread ---------------------------------------------------------------------------
  // The agent has started (MqttDeviceClient::start).
  void run_loop() {
    std::int64_t now = wall_ms();
    supervisor.start(now);
    while (!agent->finished()) {
      std::deque<Event> batch;
      std::uint64_t logs_dropped = 0;
      {
        std::unique_lock<std::mutex> lock(mutex);
        if (stop_requested) break;
        const std::int64_t wake =
            std::min(agent->next_deadline_ms(),
                     may_connect() ? supervisor.next_deadline_ms() : UpdateEngine::kNoDeadline);
        const std::int64_t wait_ms = std::clamp<std::int64_t>(wake - wall_ms(), 0, 1000);
        cv.wait_for(lock, std::chrono::milliseconds(wait_ms),
                    [&] { return !events.empty() || stop_requested; });
        if (stop_requested) break;
        batch.swap(events);
        pending_logs = 0;
        std::swap(logs_dropped, pending_logs_dropped);
      }
      if (logs_dropped > 0) agent->count_dropped_logs(logs_dropped);
      for (auto& e : batch) {
        if (agent->finished()) break;
        handle(std::move(e));
      }
      if (agent->finished()) break;
      now = wall_ms();
      if (may_connect() && supervisor.on_deadline(now) == ConnectionAction::kConnect) start_connect();
      if (now >= agent->next_deadline_ms()) agent->on_tick(now);
      snapshot();
    }
    snapshot();
    finish_loop();
  }

  // Not while a health check runs: after a trial boot the device connects once it knows the outcome.
  bool may_connect() const { return !agent->health_check_pending(); }

  // Other threads read these copies, never the agent itself.
  void snapshot() {
    std::lock_guard<std::mutex> lock(mutex);
    state_snapshot = agent->state();
    stats_snapshot = agent->stats();
    reboot_snapshot = agent->reboot_requested();
  }

  void finish_loop() {
    std::lock_guard<std::mutex> lock(mutex);
    loop_done = true;
    cv.notify_all();
  }

  void handle(Event e) {
    const std::int64_t now = wall_ms();
    switch (e.kind) {
      case Event::Kind::kConnected:
        on_connected(now);
        return;
      case Event::Kind::kLost: {
        const bool was_up = supervisor.connected();
        supervisor.on_connection_lost(now);
        is_connected = false;
        if (was_up) {
          logger->warn("connection to {} lost; reconnecting in {} ms", config.broker_uri,
                       supervisor.retry_delay_ms());
          agent->on_disconnected(now);
        }
        return;
      }
      case Event::Kind::kConnectFailed:
        connect_failed(now, "failed");
        return;
      case Event::Kind::kMessage:
        agent->on_message(e.topic, e.payload, now);
        return;
      case Event::Kind::kHealthAnswer:
        for (auto& answer : health->take())
          agent->on_health_result(answer.ticket, answer.healthy, answer.detail, now);
        return;
      case Event::Kind::kLog: {
        const std::int64_t at = e.entry.timestamp_ms();
        agent->log(e.entry.level(), std::move(*e.entry.mutable_message()),
                   std::move(*e.entry.mutable_source()), at);
        return;
      }
    }
  }

  void start_connect() {
    auto ssl = mqtt::ssl_options_builder()
                   .trust_store(config.ca_cert.string())
                   .key_store(config.cert.string())
                   .private_key(config.key.string())
                   .enable_server_cert_auth(true)
                   .verify(true)
                   .finalize();
    const OutboundMessage last_will = agent->last_will();
    mqtt::will_options will(last_will.topic, last_will.payload.data(), last_will.payload.size(),
                            last_will.qos, last_will.retain);
    mqtt::properties props;
    props.add(mqtt::property(mqtt::property::SESSION_EXPIRY_INTERVAL,
                             static_cast<int>(config.session_expiry.count())));
    auto options = mqtt::connect_options_builder()
                       .mqtt_version(MQTTVERSION_5)
                       .clean_start(false)
                       .properties(props)
                       .keep_alive_interval(config.keep_alive)
                       .connect_timeout(config.connect_timeout)
                       .ssl(std::move(ssl))
                       .will(std::move(will))
                       .finalize();
    try {
      client.connect(options, nullptr, *this);
    } catch (const mqtt::exception& e) {
      connect_failed(wall_ms(), std::string("failed: ") + e.what());
    }
  }

  void connect_failed(std::int64_t now, const std::string& why) {
    if (supervisor.state() != ConnectionState::kConnecting) return;  // reported once already
    supervisor.on_connect_failed(now);
    logger->warn("connecting to {} {} (attempt {}); retrying in {} ms", config.broker_uri, why,
                 supervisor.failed_attempts(), supervisor.retry_delay_ms());
  }

  // After the loop ended: offline presence and DISCONNECT, or the end of a connect attempt still
  // in progress. Paho throws when the broker went away meanwhile (or froze: the disconnect never
  // completes); that is logged here, never thrown out of stop() and the destructor.
  void close_connection() {
    try {
      if (client.is_connected()) {
        // Wait for the offline presence's PUBACK before the DISCONNECT: the broker acknowledges in
        // order, so every report before it (REBOOTING right before a reboot) has been processed.
        // Closing with acknowledgements still unread makes the kernel reset the connection, and
        // the broker drops what it had not read yet (found by AgentParity).
        const OutboundMessage presence = agent->offline_presence(wall_ms());
        auto delivered = client.publish(presence.topic, presence.payload.data(), presence.payload.size(),
                                        presence.qos, presence.retain);
        if (!delivered->wait_for(std::chrono::seconds(2))) {
          logger->warn("{} did not acknowledge the offline presence within 2 s", config.broker_uri);
        }
        if (!client.disconnect()->wait_for(std::chrono::seconds(2))) {
          logger->warn("{} did not complete the disconnect within 2 s", config.broker_uri);
        }
      } else if (supervisor.state() == ConnectionState::kConnecting) {
        // Paho refuses to disable callbacks while a connect is in progress; this ends it.
        (void)client.disconnect()->wait_for(std::chrono::seconds(2));
      }
    } catch (const mqtt::exception& e) {
      logger->info("disconnecting from {}: {}", config.broker_uri, e.what());
    }
    supervisor.stop();
    is_connected = false;
  }

  // Paho calls back into this object until its callbacks are disabled; it refuses (throws) while
  // a connect or disconnect is still in progress.
  void disable_callbacks() {
    try {
      client.disable_callbacks();
    } catch (const mqtt::exception& e) {
      logger->warn("cannot disable the MQTT callbacks: {}", e.what());
    }
  }

  void on_connected(std::int64_t now) {
    supervisor.on_connected(now);
    reconnect_count = supervisor.reconnects();
    is_connected = true;
    logger->info("connected to {} as {}", config.broker_uri, agent->device().str());
    // The persistent session keeps subscriptions, but a new or expired session does not: the
    // agent subscribes again.
    agent->on_connected(now);
  }

  MqttClientConfig config;
  Hooks hooks;
  std::shared_ptr<spdlog::logger> logger;
  mqtt::async_client client;
  ConnectionSupervisor supervisor;  // loop thread only (and stop() after the loop ended)

  std::unique_ptr<DeviceAgent> agent;  // loop thread only (and create/stop around it)
  std::thread thread;

  mutable std::mutex mutex;
  std::condition_variable cv;
  std::deque<Event> events;
  std::size_t pending_logs = 0;  // kLog events in `events`
  std::uint64_t pending_logs_dropped = 0;
  bool stop_requested = false;
  bool loop_done = false;
  EngineState state_snapshot = EngineState::kAwaitingStart;
  EngineStats stats_snapshot;
  bool reboot_snapshot = false;

  std::atomic<bool> is_connected{false};
  std::atomic<std::uint32_t> reconnect_count{0};  // the supervisor's, for other threads
  // Last: destroyed first, so a check's thread finishing late no longer notifies this object.
  std::unique_ptr<ThreadedHealthCheck> health;
};

common::Result<std::unique_ptr<MqttDeviceClient>> MqttDeviceClient::create(
    MqttClientConfig mqtt_config, EngineConfig engine_config, Installer& installer, Journal& journal,
    const EngineCrypto& crypto, Hooks hooks, std::shared_ptr<spdlog::logger> logger) {
  // The device id is the MQTT client id: named as such before Paho sees it.
  if (auto device = common::DeviceId::parse(engine_config.device_id); !device.ok())
    return device.error().with_context("device id");
  if (!logger) {
    logger =
        std::make_shared<spdlog::logger>("fota.client", std::make_shared<spdlog::sinks::stderr_sink_mt>());
  }
  DeviceAgentConfig agent_config;
  agent_config.engine = engine_config;
  agent_config.topic_prefix = mqtt_config.topic_prefix;
  agent_config.log_batch_entries = mqtt_config.log_batch_entries;
  agent_config.log_flush_interval_ms = mqtt_config.log_flush_interval.count();
  agent_config.log_queue_limit = mqtt_config.log_queue_limit;
  // Paho refuses a malformed URI at construction; the agent refuses a bad id or journal.
  std::unique_ptr<Impl> impl;
  try {
    impl = std::make_unique<Impl>(std::move(mqtt_config), std::move(hooks), std::move(logger),
                                  engine_config.device_id);
  } catch (const mqtt::exception& e) {
    return Error(Errc::kInvalidArgument, std::string("cannot create the MQTT client: ") + e.what());
  }
  Impl* self = impl.get();
  DeviceAgent::Hooks agent_hooks;
  self->health = std::make_unique<ThreadedHealthCheck>(self->hooks.health_check, [self] {
    self->push({Impl::Event::Kind::kHealthAnswer, {}, {}, {}});
  });
  agent_hooks.start_health_check = [self](HealthCheckTicket ticket, const HealthCheckSubject& subject,
                                          std::int64_t) { self->health->start(ticket, subject); };
  agent_hooks.reboot = self->hooks.reboot;
  agent_hooks.certificate = self->hooks.certificate;
  agent_hooks.log = [self](v1::LogLevel level, const std::string& message) {
    self->logger->log(to_spdlog(level), "{}", message);
  };
  auto agent = DeviceAgent::create(std::move(agent_config), installer, journal, crypto, *impl, agent_hooks);
  if (!agent.ok()) return agent.error();
  impl->agent = std::move(agent).value();
  impl->client.set_callback(*impl);
  return std::unique_ptr<MqttDeviceClient>(new MqttDeviceClient(std::move(impl)));
}

MqttDeviceClient::MqttDeviceClient(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

MqttDeviceClient::~MqttDeviceClient() {
  stop();
  impl_->disable_callbacks();
}

common::Status MqttDeviceClient::start() {
  if (impl_->thread.joinable()) return common::ok_status();
  // On the caller's thread, so a device that cannot start says so to its caller (fota-device
  // exits non-zero, systemd restarts it) instead of ending a loop nobody watches.
  if (auto started = impl_->agent->start(wall_ms()); !started.ok()) return started;
  impl_->snapshot();
  impl_->thread = std::thread([this] { impl_->run_loop(); });
  return common::ok_status();
}

void MqttDeviceClient::stop() {
  {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    impl_->stop_requested = true;
  }
  impl_->cv.notify_all();
  if (impl_->thread.joinable()) impl_->thread.join();
  impl_->close_connection();
}

bool MqttDeviceClient::wait(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(impl_->mutex);
  return impl_->cv.wait_for(lock, timeout, [&] { return impl_->loop_done; });
}

void MqttDeviceClient::log(v1::LogLevel level, std::string message, std::string source) {
  v1::LogEntry entry;
  entry.set_timestamp_ms(wall_ms());
  entry.set_level(level);
  entry.set_message(std::move(message));
  entry.set_source(std::move(source));
  impl_->push_log(std::move(entry));
}

bool MqttDeviceClient::connected() const { return impl_->is_connected.load(); }
bool MqttDeviceClient::reboot_requested() const {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  return impl_->reboot_snapshot;
}
EngineState MqttDeviceClient::state() const {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  return impl_->state_snapshot;
}
EngineStats MqttDeviceClient::stats() const {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  return impl_->stats_snapshot;
}
std::uint32_t MqttDeviceClient::reconnects() const { return impl_->reconnect_count.load(); }

}  // namespace fota::client

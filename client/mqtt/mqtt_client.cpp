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

constexpr std::size_t kMaxLogMessageBytes = 1024;

}  // namespace

struct MqttDeviceClient::Impl : public virtual mqtt::callback,
                                public virtual mqtt::iaction_listener,
                                public Transport {
  struct Event {
    enum class Kind { kConnected, kLost, kConnectFailed, kMessage } kind;
    std::string topic;
    std::string payload;
  };

  Impl(MqttClientConfig m, EngineConfig e, Installer& inst, FileJournal& j, const EngineCrypto& c, Hooks h,
       std::shared_ptr<spdlog::logger> l, common::DeviceId id, common::TopicScheme t)
      : config(std::move(m)),
        engine_config(std::move(e)),
        installer(inst),
        journal(j),
        crypto(c),
        hooks(std::move(h)),
        logger(std::move(l)),
        device(std::move(id)),
        topics(std::move(t)),
        client(config.broker_uri, device.str(), mqtt::create_options(MQTTVERSION_5)),
        backoff(config.reconnect_base.count(), config.reconnect_max.count(), config.random_seed) {}

  // ---- Paho callbacks: network thread, never block --------------------------------------
  void connected(const std::string&) override { push({Event::Kind::kConnected, {}, {}}); }
  void connection_lost(const std::string&) override { push({Event::Kind::kLost, {}, {}}); }
  void message_arrived(mqtt::const_message_ptr msg) override {
    push({Event::Kind::kMessage, msg->get_topic(), msg->get_payload_str()});
  }
  void delivery_complete(mqtt::delivery_token_ptr) override {}
  void on_failure(const mqtt::token& tok) override {
    if (tok.get_type() == mqtt::token::Type::CONNECT) push({Event::Kind::kConnectFailed, {}, {}});
  }
  void on_success(const mqtt::token&) override {}

  void push(Event e) {
    {
      std::lock_guard<std::mutex> lock(mutex);
      events.push_back(std::move(e));
    }
    cv.notify_all();
  }

  // ---- Transport (loop thread) -------------------------------------------------------------
  common::Status publish(Channel channel, std::string payload) override {
    if (!is_connected.load()) return Error(Errc::kUnavailable, "not connected");
    const bool retained = is_retained_channel(channel);
    try {
      client.publish(topics.device_topic(device, channel), payload.data(), payload.size(), 1, retained);
      return common::ok_status();
    } catch (const mqtt::exception& e) {
      return Error(Errc::kUnavailable, std::string("publish failed: ") + e.what());
    }
  }

  // ---- Loop thread ---------------------------------------------------------------------------
  void run_loop() {
    std::int64_t now = wall_ms();
    auto boot = installer.boot_status();
    if (!boot.ok()) {
      logger->error("cannot read the boot status: {}", boot.error().to_string());
      finish_loop();
      return;
    }
    execute(engine->on_started(*boot, now));
    snapshot();
    next_connect_at = now;
    while (!runtime->stopped()) {
      std::deque<Event> batch;
      {
        std::unique_lock<std::mutex> lock(mutex);
        if (stop_requested) break;
        const std::int64_t wake =
            std::min({engine->next_deadline_ms(), connecting ? UpdateEngine::kNoDeadline : next_connect_at,
                      next_log_flush_at()});
        const std::int64_t wait_ms = std::clamp<std::int64_t>(wake - wall_ms(), 0, 1000);
        cv.wait_for(lock, std::chrono::milliseconds(wait_ms),
                    [&] { return !events.empty() || stop_requested; });
        if (stop_requested) break;
        batch.swap(events);
      }
      for (auto& e : batch) {
        if (runtime->stopped()) break;
        handle(std::move(e));
      }
      if (runtime->stopped()) break;
      now = wall_ms();
      if (!is_connected.load() && !connecting && now >= next_connect_at) start_connect();
      if (now >= engine->next_deadline_ms()) execute(engine->on_tick(now));
      if (now >= next_log_flush_at()) flush_logs();
      snapshot();
    }
    snapshot();
    finish_loop();
  }

  // Other threads read these copies, never the engine itself.
  void snapshot() {
    std::lock_guard<std::mutex> lock(mutex);
    state_snapshot = engine->state();
    stats_snapshot = engine->stats();
    reboot_snapshot = runtime->reboot_requested();
  }

  void finish_loop() {
    std::lock_guard<std::mutex> lock(mutex);
    loop_done = true;
    cv.notify_all();
  }

  std::int64_t next_log_flush_at() {
    std::lock_guard<std::mutex> lock(log_mutex);
    if (log_queue.empty() || !is_connected.load()) return UpdateEngine::kNoDeadline;
    if (log_queue.size() >= config.log_batch_entries) return 0;
    return log_queue.front().timestamp_ms() + config.log_flush_interval.count();
  }

  void execute(Actions actions) { runtime->execute(std::move(actions), wall_ms()); }

  void handle(Event e) {
    const std::int64_t now = wall_ms();
    switch (e.kind) {
      case Event::Kind::kConnected:
        on_connected(now);
        return;
      case Event::Kind::kLost:
        if (is_connected.exchange(false)) {
          ++reconnect_count;
          logger->warn("connection to {} lost; reconnecting", config.broker_uri);
          execute(engine->on_disconnected(now));
        }
        connecting = false;
        schedule_reconnect(now);
        return;
      case Event::Kind::kConnectFailed:
        logger->warn("connecting to {} failed (attempt {})", config.broker_uri, backoff.attempts());
        connecting = false;
        schedule_reconnect(now);
        return;
      case Event::Kind::kMessage:
        on_message(e.topic, e.payload, now);
        return;
    }
  }

  void start_connect() {
    connecting = true;
    auto ssl = mqtt::ssl_options_builder()
                   .trust_store(config.ca_cert.string())
                   .key_store(config.cert.string())
                   .private_key(config.key.string())
                   .enable_server_cert_auth(true)
                   .verify(true)
                   .finalize();
    const std::string will_payload = encode_presence(device, false, 0, engine_config.client_version);
    mqtt::will_options will(topics.device_topic(device, Channel::kPresence), will_payload.data(),
                            will_payload.size(), 1, true);
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
      logger->warn("connect to {} failed: {}", config.broker_uri, e.what());
      connecting = false;
      schedule_reconnect(wall_ms());
    }
  }

  void schedule_reconnect(std::int64_t now) { next_connect_at = now + backoff.next_delay_ms(); }

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
        const std::string presence = encode_presence(device, false, wall_ms(), engine_config.client_version);
        auto delivered = client.publish(topics.device_topic(device, Channel::kPresence), presence.data(),
                                        presence.size(), 1, is_retained_channel(Channel::kPresence));
        if (!delivered->wait_for(std::chrono::seconds(2))) {
          logger->warn("{} did not acknowledge the offline presence within 2 s", config.broker_uri);
        }
        if (!client.disconnect()->wait_for(std::chrono::seconds(2))) {
          logger->warn("{} did not complete the disconnect within 2 s", config.broker_uri);
        }
      } else if (connecting) {
        // Paho refuses to disable callbacks while a connect is in progress; this ends it.
        (void)client.disconnect()->wait_for(std::chrono::seconds(2));
      }
    } catch (const mqtt::exception& e) {
      logger->info("disconnecting from {}: {}", config.broker_uri, e.what());
    }
    connecting = false;
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
    connecting = false;
    backoff.reset();
    is_connected = true;
    logger->info("connected to {} as {}", config.broker_uri, device.str());
    try {
      // The persistent session keeps subscriptions, but a new or expired session does not.
      client.subscribe(topics.device_topic(device, Channel::kCommand), 1);
      client.subscribe(topics.device_topic(device, Channel::kChunk), 1);
    } catch (const mqtt::exception& e) {
      logger->error("subscribing failed: {}", e.what());
    }
    (void)publish(Channel::kPresence, encode_presence(device, true, now, engine_config.client_version));
    execute(engine->on_connected(now));
  }

  void on_message(const std::string& topic, const std::string& payload, std::int64_t now) {
    auto actions = dispatch_device_message(*engine, topics, device, topic, payload, now);
    if (!actions.ok()) {
      logger->warn("ignored {}", actions.error().message);
      return;
    }
    execute(std::move(actions).value());
  }

  void enqueue_log(v1::LogLevel level, std::string message, std::string source) {
    if (level < min_level.load()) return;
    if (message.size() > kMaxLogMessageBytes) message.resize(kMaxLogMessageBytes);
    {
      std::lock_guard<std::mutex> lock(log_mutex);
      v1::LogEntry entry;
      entry.set_timestamp_ms(wall_ms());
      entry.set_level(level);
      entry.set_message(std::move(message));
      entry.set_source(std::move(source));
      log_queue.push_back(std::move(entry));
      while (log_queue.size() > config.log_queue_limit) {
        log_queue.pop_front();
        ++log_dropped;
      }
    }
    cv.notify_all();
  }

  void flush_logs() {
    if (!is_connected.load()) return;
    v1::LogBatch batch;
    batch.set_device_id(device.str());
    {
      std::lock_guard<std::mutex> lock(log_mutex);
      const std::size_t n = std::min(log_queue.size(), std::max<std::size_t>(config.log_batch_entries, 1));
      for (std::size_t i = 0; i < n; ++i) {
        *batch.add_entries() = std::move(log_queue.front());
        log_queue.pop_front();
      }
      batch.set_dropped(log_dropped);
      log_dropped = 0;
    }
    if (batch.entries_size() > 0) (void)publish(Channel::kLog, batch.SerializeAsString());
  }

  MqttClientConfig config;
  EngineConfig engine_config;
  Installer& installer;
  FileJournal& journal;
  const EngineCrypto& crypto;
  Hooks hooks;
  std::shared_ptr<spdlog::logger> logger;
  common::DeviceId device;
  common::TopicScheme topics;
  mqtt::async_client client;
  ReconnectBackoff backoff;

  std::unique_ptr<UpdateEngine> engine;
  std::unique_ptr<DeviceRuntime> runtime;
  std::thread thread;

  mutable std::mutex mutex;
  std::condition_variable cv;
  std::deque<Event> events;
  bool stop_requested = false;
  bool loop_done = false;
  EngineState state_snapshot = EngineState::kAwaitingStart;
  EngineStats stats_snapshot;
  bool reboot_snapshot = false;

  std::atomic<bool> is_connected{false};
  std::atomic<std::uint32_t> reconnect_count{0};
  std::atomic<v1::LogLevel> min_level{v1::LOG_LEVEL_INFO};
  bool connecting = false;
  std::int64_t next_connect_at = 0;

  std::mutex log_mutex;
  std::deque<v1::LogEntry> log_queue;
  std::uint64_t log_dropped = 0;
};

common::Result<std::unique_ptr<MqttDeviceClient>> MqttDeviceClient::create(
    MqttClientConfig mqtt_config, EngineConfig engine_config, Installer& installer, FileJournal& journal,
    const EngineCrypto& crypto, Hooks hooks, std::shared_ptr<spdlog::logger> logger) {
  auto device = common::DeviceId::parse(engine_config.device_id);
  if (!device.ok()) return device.error().with_context("device id");
  auto topics = common::TopicScheme::create(mqtt_config.topic_prefix);
  if (!topics.ok()) return topics.error().with_context("topic prefix");
  auto loaded = journal.load();
  if (!loaded.ok()) return loaded.error().with_context("loading the journal");
  if (!logger) {
    logger =
        std::make_shared<spdlog::logger>("fota.client", std::make_shared<spdlog::sinks::stderr_sink_mt>());
  }
  std::unique_ptr<Impl> impl;
  try {
    impl = std::make_unique<Impl>(std::move(mqtt_config), engine_config, installer, journal, crypto,
                                  std::move(hooks), std::move(logger), std::move(device).value(),
                                  std::move(topics).value());
  } catch (const mqtt::exception& e) {
    return Error(Errc::kInvalidArgument, std::string("cannot create the MQTT client: ") + e.what());
  }
  if (loaded->has_value()) {
    impl->engine =
        std::make_unique<UpdateEngine>(engine_config, crypto, &(*loaded)->record, (*loaded)->signed_manifest);
  } else {
    impl->engine = std::make_unique<UpdateEngine>(engine_config, crypto);
  }
  Impl* self = impl.get();
  DeviceRuntime::Hooks runtime_hooks;
  runtime_hooks.health_check = self->hooks.health_check;
  runtime_hooks.reboot = [self] {
    self->logger->info("rebooting to continue the update");
    if (self->hooks.reboot) self->hooks.reboot();
  };
  runtime_hooks.set_log_level = [self](v1::LogLevel level) { self->min_level = level; };
  runtime_hooks.log = [self](v1::LogLevel level, const std::string& message) {
    self->logger->log(to_spdlog(level), "{}", message);
    // The engine's warnings and errors also go to the fleet's log view.
    if (level >= v1::LOG_LEVEL_WARN) self->enqueue_log(level, message, "fota-client");
  };
  impl->runtime =
      std::make_unique<DeviceRuntime>(*impl->engine, installer, journal, *impl, std::move(runtime_hooks));
  impl->client.set_callback(*impl);
  return std::unique_ptr<MqttDeviceClient>(new MqttDeviceClient(std::move(impl)));
}

MqttDeviceClient::MqttDeviceClient(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

MqttDeviceClient::~MqttDeviceClient() {
  stop();
  impl_->disable_callbacks();
}

void MqttDeviceClient::start() {
  if (impl_->thread.joinable()) return;
  impl_->thread = std::thread([this] { impl_->run_loop(); });
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
  impl_->enqueue_log(level, std::move(message), std::move(source));
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

// MosquittoDeviceClient: session callbacks and loop timers feed the engine, all on the loop's thread.
#include "fota/client/mosquitto/device_client.hpp"

#include <mosquitto.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <charconv>

#include "../adapters/spdlog_level.hpp"

namespace fota::client::mosquitto {

using common::Channel;
using common::Errc;
using common::Error;

namespace {

struct BrokerAddress {
  std::string host;
  int port = 0;
};

// "ssl://host:port" or "mqtts://host:port": the broker requires TLS, so nothing else is accepted.
common::Result<BrokerAddress> parse_broker_uri(std::string_view uri) {
  const auto bad = [&](const char* why) {
    return Error(Errc::kInvalidArgument, "broker URI '" + std::string(uri) + "': " + why +
                                             " (expected ssl://host:port or mqtts://host:port)");
  };
  std::string_view rest;
  for (std::string_view scheme : {"ssl://", "mqtts://"}) {
    if (uri.substr(0, scheme.size()) == scheme) rest = uri.substr(scheme.size());
  }
  if (rest.empty()) return bad("not a TLS URI");
  const auto colon = rest.rfind(':');
  if (colon == std::string_view::npos || colon == 0) return bad("no host:port");
  BrokerAddress address;
  address.host = std::string(rest.substr(0, colon));
  const std::string_view port = rest.substr(colon + 1);
  const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), address.port);
  if (ec != std::errc() || end != port.data() + port.size() || address.port <= 0 || address.port > 65535) {
    return bad("the port is not a number in 1..65535");
  }
  return address;
}

}  // namespace

// The engine's Transport (via DeviceRuntime): publishes through the client's session.
class MosquittoDeviceClient::Uplink : public Transport {
 public:
  explicit Uplink(MosquittoDeviceClient& client) : client_(client) {}
  common::Status publish(Channel channel, std::string payload) override {
    return client_.publish(channel, std::move(payload));
  }

 private:
  MosquittoDeviceClient& client_;
};

MosquittoDeviceClient::MosquittoDeviceClient(EventLoop& loop, MosquittoClientConfig mqtt, EngineConfig engine,
                                             Installer& installer, FileJournal& journal, Hooks hooks,
                                             std::shared_ptr<spdlog::logger> logger, common::DeviceId device,
                                             common::TopicScheme topics)
    : loop_(loop),
      config_(std::move(mqtt)),
      engine_config_(std::move(engine)),
      installer_(installer),
      journal_(journal),
      hooks_(std::move(hooks)),
      logger_(std::move(logger)),
      device_(std::move(device)),
      topics_(std::move(topics)),
      backoff_(config_.reconnect_base.count(), config_.reconnect_max.count(), config_.random_seed) {}

common::Result<std::unique_ptr<MosquittoDeviceClient>> MosquittoDeviceClient::create(
    EventLoop& loop, MosquittoClientConfig mqtt, EngineConfig engine_config, Installer& installer,
    FileJournal& journal, const EngineCrypto& crypto, Hooks hooks, std::shared_ptr<spdlog::logger> logger) {
  auto device = common::DeviceId::parse(engine_config.device_id);
  if (!device.ok()) return device.error().with_context("device id");
  auto topics = common::TopicScheme::create(mqtt.topic_prefix);
  if (!topics.ok()) return topics.error().with_context("topic prefix");
  auto address = parse_broker_uri(mqtt.broker_uri);
  if (!address.ok()) return address.error();
  if (!mqtt.tls) {
    auto tls = TlsContext::create_from_files(mqtt.ca_cert, mqtt.cert, mqtt.key, address->host);
    if (!tls.ok()) return tls.error().with_context("TLS identity");
    mqtt.tls = std::move(tls).value();
  }
  auto loaded = journal.load();
  if (!loaded.ok()) return loaded.error().with_context("loading the journal");
  if (!logger) {
    logger =
        std::make_shared<spdlog::logger>("fota.client", std::make_shared<spdlog::sinks::stderr_sink_mt>());
  }

  std::unique_ptr<MosquittoDeviceClient> client(
      new MosquittoDeviceClient(loop, std::move(mqtt), engine_config, installer, journal, std::move(hooks),
                                std::move(logger), std::move(device).value(), std::move(topics).value()));
  MosquittoDeviceClient* self = client.get();
  self->broker_host_ = address->host;
  self->broker_port_ = address->port;

  SessionConfig session;
  session.host = self->broker_host_;
  session.port = self->broker_port_;
  session.client_id = self->device_.str();
  session.tls = self->config_.tls;
  session.keepalive_seconds = static_cast<int>(self->config_.keep_alive.count());
  session.will = LastWill{self->topics_.device_topic(self->device_, Channel::kPresence),
                          encode_presence(self->device_, false, 0, engine_config.client_version), 1, true};
  SessionCallbacks callbacks;
  callbacks.on_connected = [self](int reason_code) { self->on_connected(reason_code); };
  callbacks.on_disconnected = [self](int reason_code) { self->on_disconnected(reason_code); };
  callbacks.on_message = [self](std::string_view topic, std::string_view payload) {
    self->on_message(topic, payload);
  };
  callbacks.on_error_log = [self](std::string_view line) {
    if (self->last_library_error_.size() < 512) {
      if (!self->last_library_error_.empty()) self->last_library_error_ += "; ";
      self->last_library_error_ += line;
    }
  };
  auto created = MosquittoSession::create(std::move(session), std::move(callbacks));
  if (!created.ok()) return created.error().with_context("MQTT session");
  self->session_ = std::move(created).value();

  if (loaded->has_value()) {
    self->engine_ =
        std::make_unique<UpdateEngine>(engine_config, crypto, &(*loaded)->record, (*loaded)->signed_manifest);
  } else {
    self->engine_ = std::make_unique<UpdateEngine>(engine_config, crypto);
  }
  DeviceRuntime::Hooks runtime_hooks;
  runtime_hooks.health_check = self->hooks_.health_check;
  runtime_hooks.reboot = [self] {
    self->logger_->info("rebooting to continue the update");
    if (self->hooks_.reboot) self->hooks_.reboot();
  };
  runtime_hooks.log = [self](v1::LogLevel level, const std::string& message) {
    self->logger_->log(to_spdlog(level), "{}", message);
  };
  self->uplink_ = std::make_unique<Uplink>(*self);
  self->runtime_ = std::make_unique<DeviceRuntime>(*self->engine_, self->installer_, self->journal_,
                                                   *self->uplink_, std::move(runtime_hooks));
  loop.watch(self->session_.get());
  return client;
}

MosquittoDeviceClient::~MosquittoDeviceClient() {
  cancel_timers();
  if (session_) loop_.unwatch(session_.get());
}

common::Status MosquittoDeviceClient::start() {
  if (started_) return common::ok_status();
  auto boot = installer_.boot_status();
  if (!boot.ok()) {
    logger_->error("cannot read the boot status: {}", boot.error().to_string());
    return boot.error().with_context("boot status");
  }
  started_ = true;
  execute(engine_->on_started(*boot, EventLoop::wall_clock_ms()));
  connect_now();
  return common::ok_status();
}

void MosquittoDeviceClient::stop() {
  if (stopping_) return;
  stopping_ = true;
  cancel_timers();
  if (session_->connected()) {
    (void)publish(Channel::kPresence,
                  encode_presence(device_, false, EventLoop::wall_clock_ms(), engine_config_.client_version));
    // Once the broker has acknowledged the presence (and so every report before it).
    session_->disconnect_when_acknowledged();
  } else if (session_->active()) {
    session_->abandon();
  }
}

bool MosquittoDeviceClient::finished() const noexcept { return stopping_ || runtime_->stopped(); }
bool MosquittoDeviceClient::closed() const noexcept { return stopping_ && !session_->active(); }
bool MosquittoDeviceClient::connected() const noexcept { return session_->connected(); }
bool MosquittoDeviceClient::reboot_requested() const noexcept { return runtime_->reboot_requested(); }
EngineState MosquittoDeviceClient::state() const noexcept { return engine_->state(); }
EngineStats MosquittoDeviceClient::stats() const noexcept { return engine_->stats(); }

// ---- connection ----------------------------------------------------------------------------

void MosquittoDeviceClient::connect_now() {
  if (finished()) return;
  // A previous attempt that never ended (no answer, no error) is dropped before the next.
  if (session_->active()) session_->abandon();
  last_library_error_.clear();
  if (auto status = session_->connect(); !status.ok()) {
    std::string why = "connecting to " + config_.broker_uri + " failed: " + status.error().message;
    if (!last_library_error_.empty()) why += ": " + last_library_error_;
    schedule_reconnect(why);
    return;
  }
  const std::uint32_t attempt = session_->connects();
  connect_timer_ = loop_.after(config_.connect_timeout.count(), [this, attempt] {
    connect_timer_.reset();
    if (session_->connected() || !session_->active() || session_->connects() != attempt) return;
    session_->abandon();
    schedule_reconnect("connecting to " + config_.broker_uri + " timed out after " +
                       std::to_string(config_.connect_timeout.count()) + " ms");
  });
}

void MosquittoDeviceClient::schedule_reconnect(const std::string& why) {
  last_error_ = why;
  if (finished()) return;
  // A refused CONNACK is followed by the end of the connection: one failure, one retry.
  if (reconnect_timer_) return;
  const std::int64_t delay = backoff_.next_delay_ms();
  logger_->warn("{} (attempt {}); retrying in {} ms", why, backoff_.attempts(), delay);
  reconnect_timer_ = loop_.after(delay, [this] {
    reconnect_timer_.reset();
    connect_now();
  });
}

std::string MosquittoDeviceClient::describe(const std::string& what, int code) const {
  std::string text = what + " (" + std::to_string(code) + ")";
  if (!last_library_error_.empty()) text += ": " + last_library_error_;
  return text;
}

void MosquittoDeviceClient::on_connected(int reason_code) {
  if (connect_timer_) loop_.cancel(*connect_timer_);
  connect_timer_.reset();
  if (reason_code != 0) {
    schedule_reconnect(describe("the broker " + config_.broker_uri +
                                    " refused the connection: " + mosquitto_reason_string(reason_code),
                                reason_code));
    return;
  }
  backoff_.reset();
  link_up_ = true;
  if (finished()) return;
  logger_->info("connected to {} as {}", config_.broker_uri, device_.str());
  // A clean start: the broker kept nothing from an earlier connection.
  for (Channel channel : {Channel::kCommand, Channel::kChunk}) {
    if (auto s = session_->subscribe(topics_.device_topic(device_, channel), 1); !s.ok()) {
      logger_->error("subscribing failed: {}", s.error().to_string());
    }
  }
  const std::int64_t now = EventLoop::wall_clock_ms();
  (void)publish(Channel::kPresence, encode_presence(device_, true, now, engine_config_.client_version));
  execute(engine_->on_connected(now));
}

void MosquittoDeviceClient::on_disconnected(int reason_code) {
  if (connect_timer_) loop_.cancel(*connect_timer_);
  connect_timer_.reset();
  if (stopping_) return;
  const bool was_up = link_up_;
  link_up_ = false;
  // The end of a connection whose CONNACK refused us: already reported and retried.
  if (!was_up && reconnect_timer_) return;
  if (was_up) {
    ++reconnects_;
    if (!finished()) execute(engine_->on_disconnected(EventLoop::wall_clock_ms()));
  }
  schedule_reconnect(describe((was_up ? "connection to " : "connecting to ") + config_.broker_uri +
                                  (was_up ? " lost: " : " failed: ") + mosquitto_strerror(reason_code),
                              reason_code));
}

void MosquittoDeviceClient::on_message(std::string_view topic, std::string_view payload) {
  if (finished()) return;
  auto actions =
      dispatch_device_message(*engine_, topics_, device_, topic, payload, EventLoop::wall_clock_ms());
  if (!actions.ok()) {
    logger_->warn("ignored {}", actions.error().message);
    return;
  }
  execute(std::move(actions).value());
}

common::Status MosquittoDeviceClient::publish(Channel channel, std::string payload) {
  if (!session_->connected()) return Error(Errc::kUnavailable, "not connected");
  return session_->publish(topics_.device_topic(device_, channel), payload, 1, is_retained_channel(channel));
}

// ---- engine --------------------------------------------------------------------------------

void MosquittoDeviceClient::execute(Actions actions) {
  if (finished()) return;
  runtime_->execute(std::move(actions), EventLoop::wall_clock_ms());
  if (runtime_->stopped()) {
    cancel_timers();  // a reboot: nothing more runs until the caller stops the client
    return;
  }
  schedule_tick();
}

void MosquittoDeviceClient::schedule_tick() {
  const std::int64_t deadline = engine_->next_deadline_ms();
  if (deadline == tick_at_ && tick_timer_) return;
  if (tick_timer_) loop_.cancel(*tick_timer_);
  tick_timer_.reset();
  tick_at_ = deadline;
  if (deadline == UpdateEngine::kNoDeadline) return;
  tick_timer_ = loop_.at(deadline, [this] {
    tick_timer_.reset();
    tick_at_ = UpdateEngine::kNoDeadline;
    execute(engine_->on_tick(EventLoop::wall_clock_ms()));
  });
}

void MosquittoDeviceClient::cancel_timers() {
  for (auto* timer : {&tick_timer_, &reconnect_timer_, &connect_timer_}) {
    if (*timer) loop_.cancel(**timer);
    timer->reset();
  }
  tick_at_ = UpdateEngine::kNoDeadline;
}

}  // namespace fota::client::mosquitto

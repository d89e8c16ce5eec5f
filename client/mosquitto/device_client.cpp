// SPDX-License-Identifier: Apache-2.0
// MosquittoDeviceClient: session callbacks and loop timers feed the engine, all on the loop's thread.
#include "fota/client/mosquitto/device_client.hpp"

#include <mosquitto.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <charconv>

#include "../adapters/spdlog_level.hpp"
#include "fota/client/device_agent.hpp"

namespace fota::client::mosquitto {

using common::Channel;
using common::Errc;
using common::Error;

namespace {

constexpr std::int64_t kHealthPollMs = 10;

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

// The agent's DeviceLink: publishes and subscribes through the client's session.
class MosquittoDeviceClient::Link : public DeviceLink {
 public:
  explicit Link(MosquittoDeviceClient& client) : client_(client) {}
  common::Status publish(const OutboundMessage& message) override {
    if (!client_.session_->connected()) return Error(Errc::kUnavailable, "not connected");
    return client_.session_->publish(message.topic, message.payload, message.qos, message.retain);
  }
  common::Status subscribe(const std::string& topic, int qos) override {
    return client_.session_->subscribe(topic, qos);
  }

 private:
  MosquittoDeviceClient& client_;
};

MosquittoDeviceClient::MosquittoDeviceClient(EventLoop& loop, MosquittoClientConfig mqtt, Hooks hooks,
                                             std::shared_ptr<spdlog::logger> logger)
    : loop_(loop),
      config_(std::move(mqtt)),
      hooks_(std::move(hooks)),
      logger_(std::move(logger)),
      supervisor_(ConnectionSupervisorConfig{.reconnect_base_ms = config_.reconnect_base.count(),
                                             .reconnect_max_ms = config_.reconnect_max.count(),
                                             .connect_timeout_ms = config_.connect_timeout.count(),
                                             .seed = config_.random_seed}) {}

common::Result<std::unique_ptr<MosquittoDeviceClient>> MosquittoDeviceClient::create(
    EventLoop& loop, MosquittoClientConfig mqtt, EngineConfig engine_config, Installer& installer,
    Journal& journal, const EngineCrypto& crypto, Hooks hooks, std::shared_ptr<spdlog::logger> logger) {
  // The device id and topic prefix first: the agent checks them, but a bad id should be named
  // before the TLS files are read.
  if (auto device = common::DeviceId::parse(engine_config.device_id); !device.ok())
    return device.error().with_context("device id");
  auto address = parse_broker_uri(mqtt.broker_uri);
  if (!address.ok()) return address.error();
  if (!mqtt.tls) {
    auto tls = TlsContext::create_from_files(mqtt.ca_cert, mqtt.cert, mqtt.key, address->host);
    if (!tls.ok()) return tls.error().with_context("TLS identity");
    mqtt.tls = std::move(tls).value();
  }
  if (!logger) {
    logger =
        std::make_shared<spdlog::logger>("fota.client", std::make_shared<spdlog::sinks::stderr_sink_mt>());
  }
  DeviceAgentConfig agent_config;
  agent_config.engine = std::move(engine_config);
  agent_config.topic_prefix = mqtt.topic_prefix;
  agent_config.log_batch_entries = mqtt.log_batch_entries;
  agent_config.log_flush_interval_ms = mqtt.log_flush_interval.count();
  agent_config.log_queue_limit = mqtt.log_queue_limit;

  std::unique_ptr<MosquittoDeviceClient> client(
      new MosquittoDeviceClient(loop, std::move(mqtt), std::move(hooks), std::move(logger)));
  MosquittoDeviceClient* self = client.get();
  self->broker_host_ = address->host;
  self->broker_port_ = address->port;
  self->link_ = std::make_unique<Link>(*self);

  DeviceAgent::Hooks agent_hooks;
  self->health_ = std::make_unique<ThreadedHealthCheck>(self->hooks_.health_check);
  agent_hooks.start_health_check = [self](HealthCheckTicket ticket, const HealthCheckSubject& subject,
                                          std::int64_t) {
    self->health_->start(ticket, subject);
    self->poll_health_check();
  };
  agent_hooks.reboot = self->hooks_.reboot;
  agent_hooks.certificate = self->hooks_.certificate;
  agent_hooks.log = [self](v1::LogLevel level, const std::string& message) {
    self->logger_->log(to_spdlog(level), "{}", message);
  };
  auto agent = DeviceAgent::create(std::move(agent_config), installer, journal, crypto, *self->link_,
                                   std::move(agent_hooks));
  if (!agent.ok()) return agent.error();
  self->agent_ = std::move(agent).value();

  SessionConfig session;
  session.host = self->broker_host_;
  session.port = self->broker_port_;
  session.client_id = self->agent_->device().str();
  session.tls = self->config_.tls;
  session.keepalive_seconds = static_cast<int>(self->config_.keep_alive.count());
  const OutboundMessage will = self->agent_->last_will();
  session.will = LastWill{will.topic, will.payload, will.qos, will.retain};
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
  loop.watch(self->session_.get());
  return client;
}

MosquittoDeviceClient::~MosquittoDeviceClient() {
  cancel_timers();
  if (session_) loop_.unwatch(session_.get());
}

common::Status MosquittoDeviceClient::start() {
  if (started_) return common::ok_status();
  if (auto s = agent_->start(EventLoop::wall_clock_ms()); !s.ok()) return s;
  started_ = true;
  after_input();
  supervisor_.start(EventLoop::wall_clock_ms());
  on_connection_deadline();  // the first attempt is due at once
  return common::ok_status();
}

void MosquittoDeviceClient::stop() {
  if (stopping_) return;
  stopping_ = true;
  cancel_timers();
  supervisor_.stop();
  if (session_->connected()) {
    const OutboundMessage presence = agent_->offline_presence(EventLoop::wall_clock_ms());
    (void)session_->publish(presence.topic, presence.payload, presence.qos, presence.retain);
    // Once the broker has acknowledged the presence (and so every report before it).
    session_->disconnect_when_acknowledged();
  } else if (session_->active()) {
    session_->abandon();
  }
}

void MosquittoDeviceClient::log(v1::LogLevel level, std::string message, std::string source) {
  agent_->log(level, std::move(message), std::move(source), EventLoop::wall_clock_ms());
  if (started_ && !finished()) schedule_tick();
}

bool MosquittoDeviceClient::finished() const noexcept { return stopping_ || agent_->finished(); }
bool MosquittoDeviceClient::closed() const noexcept { return stopping_ && !session_->active(); }
bool MosquittoDeviceClient::connected() const noexcept { return session_->connected(); }
bool MosquittoDeviceClient::reboot_requested() const noexcept { return agent_->reboot_requested(); }
EngineState MosquittoDeviceClient::state() const noexcept { return agent_->state(); }
EngineStats MosquittoDeviceClient::stats() const noexcept { return agent_->stats(); }

// ---- connection ----------------------------------------------------------------------------

void MosquittoDeviceClient::on_connection_deadline() {
  if (finished()) return;
  // Not while a health check runs: after a trial boot the device connects once it knows the outcome.
  if (supervisor_.state() == ConnectionState::kWaiting && agent_->health_check_pending()) {
    connect_deferred_ = true;
    return;
  }
  switch (supervisor_.on_deadline(EventLoop::wall_clock_ms())) {
    case ConnectionAction::kNone:
      break;
    case ConnectionAction::kConnect:
      // The end of a refused connection may not have arrived yet: dropped before the next attempt.
      if (session_->active()) session_->abandon();
      last_library_error_.clear();
      if (auto status = session_->connect(); !status.ok()) {
        std::string why = "connecting to " + config_.broker_uri + " failed: " + status.error().message;
        if (!last_library_error_.empty()) why += ": " + last_library_error_;
        connect_failed(why);
        return;
      }
      break;
    case ConnectionAction::kAbandonAttempt:
      session_->abandon();
      last_error_ = "connecting to " + config_.broker_uri + " timed out after " +
                    std::to_string(config_.connect_timeout.count()) + " ms";
      logger_->warn("{} (attempt {}); retrying in {} ms", last_error_, supervisor_.failed_attempts(),
                    supervisor_.retry_delay_ms());
      break;
  }
  arm_connection_timer();
}

void MosquittoDeviceClient::connect_failed(const std::string& why) {
  last_error_ = why;
  supervisor_.on_connect_failed(EventLoop::wall_clock_ms());
  if (finished()) return;
  logger_->warn("{} (attempt {}); retrying in {} ms", why, supervisor_.failed_attempts(),
                supervisor_.retry_delay_ms());
  arm_connection_timer();
}

// One timer at the supervisor's deadline: the next attempt, or the running one's timeout.
void MosquittoDeviceClient::arm_connection_timer() {
  const std::int64_t deadline =
      finished() ? ConnectionSupervisor::kNoDeadline : supervisor_.next_deadline_ms();
  if (deadline == connection_timer_at_ && connection_timer_) return;
  if (connection_timer_) loop_.cancel(*connection_timer_);
  connection_timer_.reset();
  connection_timer_at_ = deadline;
  if (deadline == ConnectionSupervisor::kNoDeadline) return;
  connection_timer_ = loop_.at(deadline, [this] {
    connection_timer_.reset();
    connection_timer_at_ = ConnectionSupervisor::kNoDeadline;
    on_connection_deadline();
  });
}

std::string MosquittoDeviceClient::describe(const std::string& what, int code) const {
  std::string text = what + " (" + std::to_string(code) + ")";
  if (!last_library_error_.empty()) text += ": " + last_library_error_;
  return text;
}

void MosquittoDeviceClient::on_connected(int reason_code) {
  if (stopping_) return;
  if (reason_code != 0) {
    connect_failed(describe("the broker " + config_.broker_uri +
                                " refused the connection: " + mosquitto_reason_string(reason_code),
                            reason_code));
    return;
  }
  supervisor_.on_connected(EventLoop::wall_clock_ms());
  arm_connection_timer();  // no timeout any more
  if (finished()) return;
  logger_->info("connected to {} as {}", config_.broker_uri, agent_->device().str());
  // A clean start: the broker kept nothing from an earlier connection; the agent subscribes.
  agent_->on_connected(EventLoop::wall_clock_ms());
  after_input();
}

void MosquittoDeviceClient::on_disconnected(int reason_code) {
  if (stopping_) return;
  switch (supervisor_.state()) {
    case ConnectionState::kConnected: {
      const std::int64_t now = EventLoop::wall_clock_ms();
      supervisor_.on_connection_lost(now);
      last_error_ = describe(
          "connection to " + config_.broker_uri + " lost: " + mosquitto_strerror(reason_code), reason_code);
      if (finished()) return;
      logger_->warn("{}; reconnecting in {} ms", last_error_, supervisor_.retry_delay_ms());
      agent_->on_disconnected(now);
      after_input();
      arm_connection_timer();
      return;
    }
    case ConnectionState::kConnecting:
      connect_failed(
          describe("connecting to " + config_.broker_uri + " failed: " + mosquitto_strerror(reason_code),
                   reason_code));
      return;
    case ConnectionState::kWaiting:  // the end of a connection whose CONNACK refused us: reported
    case ConnectionState::kStopped:
      return;
  }
}

void MosquittoDeviceClient::on_message(std::string_view topic, std::string_view payload) {
  if (finished()) return;
  agent_->on_message(topic, payload, EventLoop::wall_clock_ms());
  after_input();
}

// ---- agent timers --------------------------------------------------------------------------

void MosquittoDeviceClient::after_input() {
  if (agent_->finished()) {
    cancel_timers();  // a reboot: nothing more runs until the caller stops the client
    return;
  }
  schedule_tick();
  if (connect_deferred_ && !agent_->health_check_pending() && !stopping_) {
    connect_deferred_ = false;
    on_connection_deadline();
  }
}

// The loop has no way to be woken from another thread: while a check runs, look for its answer
// every few milliseconds.
void MosquittoDeviceClient::poll_health_check() {
  if (health_timer_) return;
  health_timer_ = loop_.after(kHealthPollMs, [this] {
    health_timer_.reset();
    if (finished()) return;
    for (auto& answer : health_->take()) {
      agent_->on_health_result(answer.ticket, answer.healthy, answer.detail, EventLoop::wall_clock_ms());
    }
    after_input();
    if (!finished() && agent_->health_check_pending()) poll_health_check();
  });
}

void MosquittoDeviceClient::schedule_tick() {
  const std::int64_t deadline = agent_->next_deadline_ms();
  if (deadline == tick_at_ && tick_timer_) return;
  if (tick_timer_) loop_.cancel(*tick_timer_);
  tick_timer_.reset();
  tick_at_ = deadline;
  if (deadline == UpdateEngine::kNoDeadline) return;
  tick_timer_ = loop_.at(deadline, [this] {
    tick_timer_.reset();
    tick_at_ = UpdateEngine::kNoDeadline;
    if (finished()) return;
    agent_->on_tick(EventLoop::wall_clock_ms());
    after_input();
  });
}

void MosquittoDeviceClient::cancel_timers() {
  for (auto* timer : {&tick_timer_, &connection_timer_, &health_timer_}) {
    if (*timer) loop_.cancel(**timer);
    timer->reset();
  }
  tick_at_ = UpdateEngine::kNoDeadline;
  connection_timer_at_ = ConnectionSupervisor::kNoDeadline;
}

}  // namespace fota::client::mosquitto

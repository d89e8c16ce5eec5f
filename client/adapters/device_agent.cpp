// SPDX-License-Identifier: Apache-2.0
// DeviceAgent: the engine, its runtime, presence, subscriptions and log forwarding, over a
// DeviceLink. What both MQTT transports used to wire up each on its own.
#include "fota/client/device_agent.hpp"

#include <algorithm>

#include "fota/client/device_messages.hpp"
#include "fota/common/codec.hpp"

namespace fota::client {

using common::Channel;
using common::Errc;
using common::Error;

// The runtime's Transport: the engine's reports, on the device's topics.
class DeviceAgent::Uplink : public Transport {
 public:
  explicit Uplink(DeviceAgent& agent) : agent_(agent) {}
  common::Status publish(Channel channel, std::string payload) override {
    if (channel == Channel::kInventory && agent_.renews_certificate()) {
      // Serialized protobuf messages merge when concatenated: this adds the certificate's end
      // (Inventory.certificate_not_after) without decoding what the engine built.
      v1::Inventory certificate;
      certificate.set_certificate_not_after(agent_.renewal_.not_after_s());
      payload += common::encode(certificate);
    }
    return agent_.publish(channel, std::move(payload));
  }

 private:
  DeviceAgent& agent_;
};

DeviceAgent::DeviceAgent(DeviceAgentConfig config, Installer& installer, Journal& journal, DeviceLink& link,
                         Hooks hooks, common::DeviceId device, common::TopicScheme topics)
    : config_(std::move(config)),
      installer_(installer),
      journal_(journal),
      link_(link),
      hooks_(std::move(hooks)),
      device_(std::move(device)),
      topics_(std::move(topics)),
      renewal_(hooks_.certificate.config, device_.str(), hooks_.certificate.not_after_s) {}

DeviceAgent::~DeviceAgent() { installer_.set_log_sink({}); }

common::Result<std::unique_ptr<DeviceAgent>> DeviceAgent::create(DeviceAgentConfig config,
                                                                 Installer& installer, Journal& journal,
                                                                 const EngineCrypto& crypto, DeviceLink& link,
                                                                 Hooks hooks) {
  auto device = common::DeviceId::parse(config.engine.device_id);
  if (!device.ok()) return device.error().with_context("device id");
  auto topics = common::TopicScheme::create(config.topic_prefix);
  if (!topics.ok()) return topics.error().with_context("topic prefix");
  auto loaded = journal.load();
  if (!loaded.ok()) return loaded.error().with_context("loading the journal");

  const EngineConfig engine_config = config.engine;
  std::unique_ptr<DeviceAgent> agent(new DeviceAgent(std::move(config), installer, journal, link,
                                                     std::move(hooks), std::move(device).value(),
                                                     std::move(topics).value()));
  DeviceAgent* self = agent.get();
  if (loaded->has_value()) {
    self->engine_ =
        std::make_unique<UpdateEngine>(engine_config, crypto, &(*loaded)->record, (*loaded)->signed_manifest);
  } else {
    self->engine_ = std::make_unique<UpdateEngine>(engine_config, crypto);
  }
  DeviceRuntime::Hooks runtime_hooks;
  runtime_hooks.start_health_check = self->hooks_.start_health_check;
  runtime_hooks.reboot = [self] {
    self->diagnose(v1::LOG_LEVEL_INFO, "rebooting to continue the update");
    if (self->hooks_.reboot) self->hooks_.reboot();
  };
  runtime_hooks.before_action = self->hooks_.before_action;
  runtime_hooks.after_action = self->hooks_.after_action;
  runtime_hooks.set_log_level = [self](v1::LogLevel level) { self->min_level_ = level; };
  runtime_hooks.certificate_issued = [self](const action::InstallCertificate& issued) {
    self->on_certificate_issued(issued);
  };
  runtime_hooks.renew_certificate = [self](const action::RenewCertificate& renew) {
    self->on_renew_certificate(renew);
  };
  runtime_hooks.log = [self](v1::LogLevel level, const std::string& message) {
    self->diagnose(level, message);
    // The engine's warnings and errors also go to the fleet's log view. Its clock is the last
    // input's; the entry's timestamp only orders entries.
    if (level >= v1::LOG_LEVEL_WARN) self->log(level, message, "fota-client", self->now_ms_);
  };
  // What the installer runs (update modules) logs to the fleet like the application does, with
  // the clock of the input that started it.
  self->installer_.set_log_sink([self](v1::LogLevel level, std::string message, std::string source) {
    self->log(level, std::move(message), std::move(source), self->now_ms_);
  });
  self->uplink_ = std::make_unique<Uplink>(*self);
  self->runtime_ = std::make_unique<DeviceRuntime>(*self->engine_, self->installer_, self->journal_,
                                                   *self->uplink_, std::move(runtime_hooks));
  return agent;
}

common::Status DeviceAgent::start(std::int64_t now_ms) {
  if (started_) return common::ok_status();
  auto boot = installer_.boot_status();
  if (!boot.ok()) {
    diagnose(v1::LOG_LEVEL_ERROR, "cannot read the boot status: " + boot.error().to_string());
    return boot.error().with_context("boot status");
  }
  started_ = true;
  execute(engine_->on_started(*boot, now_ms), now_ms);
  return common::ok_status();
}

void DeviceAgent::on_connected(std::int64_t now_ms) {
  connected_ = true;
  if (finished() || !started_) return;
  // A clean start (or an expired session) keeps no subscriptions: renew them every time.
  for (Channel channel : {Channel::kCommand, Channel::kChunk}) {
    if (auto s = link_.subscribe(topics_.device_topic(device_, channel), channel_qos(channel)); !s.ok()) {
      diagnose(v1::LOG_LEVEL_ERROR, "subscribing failed: " + s.error().to_string());
    }
  }
  (void)publish(Channel::kPresence, encode_presence(device_, true, now_ms, config_.engine.client_version));
  execute(engine_->on_connected(now_ms), now_ms);
  if (!finished() && renews_certificate() && renewal_.due(now_ms)) request_certificate(now_ms);
}

void DeviceAgent::on_disconnected(std::int64_t now_ms) {
  if (!connected_) return;
  connected_ = false;
  if (finished() || !started_) return;
  execute(engine_->on_disconnected(now_ms), now_ms);
}

void DeviceAgent::on_message(std::string_view topic, std::string_view payload, std::int64_t now_ms) {
  if (finished() || !started_) return;
  auto actions = dispatch_device_message(*engine_, topics_, device_, topic, payload, now_ms);
  if (!actions.ok()) {
    diagnose(v1::LOG_LEVEL_WARN, "ignored " + actions.error().message);
    return;
  }
  execute(std::move(actions).value(), now_ms);
}

void DeviceAgent::on_tick(std::int64_t now_ms) {
  if (finished() || !started_) return;
  if (now_ms >= engine_->next_deadline_ms()) execute(engine_->on_tick(now_ms), now_ms);
  if (!finished() && renews_certificate()) {
    renewal_.on_tick(now_ms);
    if (connected_ && renewal_.due(now_ms)) request_certificate(now_ms);
  }
  if (!finished() && now_ms >= next_log_flush_ms()) flush_logs();
}

std::int64_t DeviceAgent::next_deadline_ms() const {
  if (finished() || !started_) return UpdateEngine::kNoDeadline;
  std::int64_t next = std::min(engine_->next_deadline_ms(), next_log_flush_ms());
  // Offline a due renewal waits for the connection (on_connected ticks it).
  if (renews_certificate() && (connected_ || renewal_.pending()))
    next = std::min(next, renewal_.next_deadline_ms());
  return next;
}

// ---- certificate renewal -------------------------------------------------------------------

bool DeviceAgent::renews_certificate() const { return hooks_.certificate.enabled(); }

void DeviceAgent::request_certificate(std::int64_t now_ms) {
  auto made = hooks_.certificate.make_request();
  if (!made.ok()) {
    diagnose(v1::LOG_LEVEL_ERROR,
             "certificate renewal: making a key and request failed: " + made.error().to_string());
    renewal_.on_request_failed(now_ms);
    return;
  }
  v1::CertificateRequest request;
  request.set_device_id(device_.str());
  request.set_request_id("r" + std::to_string(now_ms) + "-" + std::to_string(++certificate_requests_));
  request.set_csr_pem(made->csr_pem);
  if (auto st = publish(Channel::kCertificateRequest, common::encode(request)); !st.ok()) {
    diagnose(v1::LOG_LEVEL_WARN,
             "certificate renewal: publishing the request failed: " + st.error().to_string());
    renewal_.on_request_failed(now_ms);
    return;
  }
  renewal_.on_request_sent(request.request_id(), std::move(made->key_pem), now_ms);
  diagnose(v1::LOG_LEVEL_INFO,
           "certificate renewal: requested a certificate (request " + request.request_id() + ")");
}

void DeviceAgent::report_certificate_refused(const std::string& command_id, const std::string& detail) {
  v1::Progress report;
  report.set_device_id(device_.str());
  report.set_command_id(command_id);
  report.set_phase(v1::PHASE_UNSPECIFIED);
  report.set_error(v1::ERROR_CERTIFICATE_REFUSED);
  report.set_error_detail(detail.substr(0, 1024));
  report.set_timestamp_ms(now_ms_);
  if (auto st = publish(Channel::kProgress, common::encode(report)); !st.ok()) {
    diagnose(v1::LOG_LEVEL_WARN,
             "certificate renewal: reporting the refusal failed: " + st.error().to_string());
  }
}

void DeviceAgent::on_renew_certificate(const action::RenewCertificate& renew) {
  if (!renews_certificate()) {
    const std::string message =
        "certificate renewal is not configured on this device (fota-device renews only with cert, key "
        "and ca set); the renewal asked by command " +
        renew.command_id + " is not done";
    diagnose(v1::LOG_LEVEL_WARN, message);
    report_certificate_refused(renew.command_id, message);
    return;
  }
  diagnose(v1::LOG_LEVEL_INFO, "certificate renewal: asked by command " + renew.command_id +
                                   (renew.reason.empty() ? std::string() : " (" + renew.reason + ")") +
                                   "; renewing now");
  renewal_.renew_now();
  if (connected_) request_certificate(now_ms_);
}

void DeviceAgent::on_certificate_issued(const action::InstallCertificate& command) {
  const v1::CertificateIssued& issued = command.issued;
  if (!renews_certificate()) {
    diagnose(v1::LOG_LEVEL_WARN, "certificate renewal is not configured; ignored a certificate");
    report_certificate_refused(command.command_id,
                               "certificate renewal is not configured on this device; the certificate "
                               "was not installed");
    return;
  }
  auto renewed = renewal_.on_issued(issued, hooks_.certificate.check, now_ms_);
  if (!renewed.ok()) {
    // A warning goes to the fleet's log view as well: an answer was refused, the old pair stays.
    // The orchestrator is told with a typed error: an issuing path that signs wrong answers (or
    // is compromised) must be visible to the operator, not only in the device's log.
    const std::string message =
        "certificate renewal: " + renewed.error().message + "; the current certificate stays";
    diagnose(v1::LOG_LEVEL_WARN, message);
    log(v1::LOG_LEVEL_WARN, message, "fota-client", now_ms_);
    report_certificate_refused(
        command.command_id,
        renewed.error().message +
            "; the device keeps its current certificate. Check the orchestrator's pki.issuing_ca (it must "
            "be issued by the root the device trusts) and who can publish on this device's command topic");
    return;
  }
  if (auto st = hooks_.certificate.install(*renewed); !st.ok()) {
    diagnose(v1::LOG_LEVEL_ERROR,
             "certificate renewal: installing the certificate failed: " + st.error().to_string());
    renewal_.on_install_failed(now_ms_);
    return;
  }
  renewal_.on_installed(renewed->not_after);
  diagnose(v1::LOG_LEVEL_INFO, "certificate renewal: installed a certificate valid until " +
                                   std::to_string(renewed->not_after) + " (seconds since the epoch)");
}

void DeviceAgent::on_health_result(HealthCheckTicket ticket, bool healthy, const std::string& detail,
                                   std::int64_t now_ms) {
  if (finished() || !started_) return;
  now_ms_ = now_ms;
  runtime_->on_health_result(ticket, healthy, detail, now_ms);
}

bool DeviceAgent::health_check_pending() const noexcept {
  return runtime_->health_check_pending() && engine_->state() == EngineState::kConfirming;
}

void DeviceAgent::execute(Actions actions, std::int64_t now_ms) {
  now_ms_ = now_ms;
  runtime_->execute(std::move(actions), now_ms);
}

common::Status DeviceAgent::publish(Channel channel, std::string payload) {
  if (!connected_) return Error(Errc::kUnavailable, "not connected");
  return link_.publish({topics_.device_topic(device_, channel), std::move(payload), channel_qos(channel),
                        is_retained_channel(channel)});
}

// ---- application logs ----------------------------------------------------------------------

void DeviceAgent::log(v1::LogLevel level, std::string message, std::string source, std::int64_t now_ms) {
  if (level < min_level_) return;
  if (message.size() > config_.max_log_message_bytes) message.resize(config_.max_log_message_bytes);
  v1::LogEntry entry;
  entry.set_timestamp_ms(now_ms);
  entry.set_level(level);
  entry.set_message(std::move(message));
  entry.set_source(std::move(source));
  log_queue_.push_back(std::move(entry));
  while (log_queue_.size() > config_.log_queue_limit) {
    log_queue_.pop_front();
    ++log_dropped_;
  }
}

std::int64_t DeviceAgent::next_log_flush_ms() const {
  if (log_queue_.empty() || !connected_) return UpdateEngine::kNoDeadline;
  if (log_queue_.size() >= config_.log_batch_entries) return 0;
  return log_queue_.front().timestamp_ms() + config_.log_flush_interval_ms;
}

void DeviceAgent::flush_logs() {
  if (!connected_ || log_queue_.empty()) return;
  v1::LogBatch batch;
  batch.set_device_id(device_.str());
  const std::size_t n = std::min(log_queue_.size(), std::max<std::size_t>(config_.log_batch_entries, 1));
  for (std::size_t i = 0; i < n; ++i) {
    *batch.add_entries() = std::move(log_queue_.front());
    log_queue_.pop_front();
  }
  batch.set_dropped(log_dropped_);
  log_dropped_ = 0;
  (void)publish(Channel::kLog, common::encode(batch));
}

void DeviceAgent::diagnose(v1::LogLevel level, const std::string& message) const {
  if (hooks_.log) hooks_.log(level, message);
}

// ---- presence and state --------------------------------------------------------------------

OutboundMessage DeviceAgent::last_will() const {
  return {topics_.device_topic(device_, Channel::kPresence),
          encode_presence(device_, false, 0, config_.engine.client_version), channel_qos(Channel::kPresence),
          is_retained_channel(Channel::kPresence)};
}

OutboundMessage DeviceAgent::offline_presence(std::int64_t now_ms) const {
  return {topics_.device_topic(device_, Channel::kPresence),
          encode_presence(device_, false, now_ms, config_.engine.client_version),
          channel_qos(Channel::kPresence), is_retained_channel(Channel::kPresence)};
}

bool DeviceAgent::finished() const noexcept { return runtime_->stopped(); }
bool DeviceAgent::reboot_requested() const noexcept { return runtime_->reboot_requested(); }
EngineState DeviceAgent::state() const noexcept { return engine_->state(); }
v1::Inventory DeviceAgent::inventory(std::int64_t now_ms) const { return engine_->inventory(now_ms); }
const EngineStats& DeviceAgent::stats() const noexcept { return engine_->stats(); }

}  // namespace fota::client

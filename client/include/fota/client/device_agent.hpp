// SPDX-License-Identifier: Apache-2.0
// The device agent: everything a device does between its MQTT transport and its storage, once.
// It loads the journal, runs the UpdateEngine through a DeviceRuntime (installer, journal, health
// check, reboot), subscribes and announces presence on every connect, dispatches inbound
// messages, forwards application logs (and the output of update modules, through the installer's
// log sink) as LogBatch and honours SetLogLevel. The transports
// (Paho's MqttDeviceClient, libmosquitto's MosquittoDeviceClient) only move bytes through a
// DeviceLink and feed the agent's inputs; they cannot drift apart on what a device does. C++17.
//
// Sans-IO in the engine's sense: no threads, sockets or clock. Every input takes `now_ms` (Unix
// milliseconds); next_deadline_ms() says when on_tick() is due. Not thread-safe: one thread (the
// transport's loop) calls everything.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "fota/client/certificate_renewal.hpp"
#include "fota/client/engine.hpp"
#include "fota/client/installer.hpp"
#include "fota/client/runtime.hpp"
#include "fota/common/result.hpp"
#include "fota/common/topics.hpp"

namespace fota::client {

// One message for the broker, on one of the device's own topics.
struct OutboundMessage {
  std::string topic;
  std::string payload;
  int qos = 1;
  bool retain = false;
};

// The transport port: what the agent needs from an MQTT session. Called only while the agent
// believes the session is up (between on_connected and on_disconnected).
class DeviceLink {
 public:
  virtual ~DeviceLink() = default;
  // Errors (not connected, the library refused) are logged by the agent, never fatal: the engine
  // repairs lost messages by asking again.
  virtual common::Status publish(const OutboundMessage& message) = 0;
  virtual common::Status subscribe(const std::string& topic, int qos) = 0;
};

struct DeviceAgentConfig {
  EngineConfig engine;
  std::string topic_prefix = "fota/v1";
  // Application logs: sent as one LogBatch when this many are queued or the oldest has waited
  // log_flush_interval_ms; beyond log_queue_limit the oldest are dropped (LogBatch.dropped).
  std::size_t log_batch_entries = 50;
  std::int64_t log_flush_interval_ms = 2000;
  std::size_t log_queue_limit = 1000;
  // Longer messages are cut to this size.
  std::size_t max_log_message_bytes = 1024;
};

// A fresh key and a certificate request for it (made and kept by the adapter).
struct CertificateRequestMade {
  std::string key_pem;
  std::string csr_pem;
};

// Certificate renewal (docs/CLIENT.md, certificate.*): the policy's settings, the end of the
// certificate the device connects with, and the adapter's three effects. On when all three are
// set. make_request makes a P-256 key and a CSR (and may keep the key, 0600); check verifies an
// answer's chain against the trust anchor and the key; install replaces the pair so that a power
// cut at any point leaves a working one, and arranges the reconnect with it. Called on the
// transport's thread.
struct CertificateRenewalSetup {
  CertificateRenewalConfig config;
  std::int64_t not_after_s = 0;  // seconds since the epoch
  std::function<common::Result<CertificateRequestMade>()> make_request;
  CertificateChainCheck check;
  std::function<common::Status(const RenewedCertificate& renewed)> install;
  bool enabled() const { return make_request && check && install; }
};

class DeviceAgent {
 public:
  struct Hooks {
    // Starts the application's health check after an update and returns at once; the transport
    // delivers the answer with on_health_result() on its thread (DeviceRuntime::Hooks, runtime.hpp;
    // ThreadedHealthCheck runs a blocking check). Unset: healthy at once.
    std::function<void(HealthCheckTicket ticket, const HealthCheckSubject& subject, std::int64_t deadline_ms)>
        start_health_check;
    // Reboot the device. After it the agent is finished() and ignores further inputs.
    std::function<void()> reboot;
    // The agent's and the engine's diagnostics, for the transport's logger. The engine's
    // warnings and errors also go to the fleet as LogBatch entries (source "fota-client").
    std::function<void(v1::LogLevel level, const std::string& message)> log;
    // Optional: see each engine action before and after the runtime executes it
    // (DeviceRuntime::Hooks). Returning false stops the runtime there, as if power were cut; the
    // agent is finished() from then on. fota-sim injects its power cuts and follows phases,
    // written bytes and slow flash with them; tests place crash points.
    std::function<bool(const Action& action, const std::deque<Action>& upcoming)> before_action;
    std::function<bool(const Action& action)> after_action;
    // Certificate renewal; off unless enabled().
    CertificateRenewalSetup certificate;
  };

  // Loads the journal and builds the engine. `installer`, `journal`, `crypto` and `link` must
  // outlive the agent. Errors: an invalid device id (kInvalidArgument, "device id: ..."), an
  // invalid topic prefix, an unreadable journal (kMalformed, kIo: "loading the journal: ...").
  static common::Result<std::unique_ptr<DeviceAgent>> create(DeviceAgentConfig config, Installer& installer,
                                                             Journal& journal, const EngineCrypto& crypto,
                                                             DeviceLink& link, Hooks hooks);
  ~DeviceAgent();
  DeviceAgent(const DeviceAgent&) = delete;
  DeviceAgent& operator=(const DeviceAgent&) = delete;

  // Asks the installer which slot booted and starts the engine. Errors: a boot status the
  // installer cannot read (the agent stays inert). Call once, before the first connect.
  common::Status start(std::int64_t now_ms);

  // The session is up: subscriptions (command, chunk; channel_qos()), presence online, then the engine's
  // inventory and whatever it resumes. The transport calls it on every successful connect.
  void on_connected(std::int64_t now_ms);
  // The session is gone (lost, or closed): the engine stops expecting answers.
  void on_disconnected(std::int64_t now_ms);
  // A message on one of the device's topics. Malformed or foreign ones are logged and dropped.
  void on_message(std::string_view topic, std::string_view payload, std::int64_t now_ms);
  // Engine timers and the log batch. Call when now_ms >= next_deadline_ms() (earlier is harmless).
  void on_tick(std::int64_t now_ms);
  // When on_tick() is due next; UpdateEngine::kNoDeadline when nothing is pending.
  std::int64_t next_deadline_ms() const;
  // The answer to a health check started through Hooks::start_health_check. A late or unknown
  // answer is dropped (no answer by the deadline is unhealthy; on_tick() says so).
  void on_health_result(HealthCheckTicket ticket, bool healthy, const std::string& detail,
                        std::int64_t now_ms);
  // The certificate renewal policy (tests, diagnostics).
  const CertificateRenewal& certificate_renewal() const noexcept { return renewal_; }
  // A health check runs. A device does not start connecting meanwhile (as when the check blocked
  // the agent): after a trial boot it reports the outcome of the check on its first connect.
  bool health_check_pending() const noexcept;

  // The application's log API: queued below the SetLogLevel threshold (default info) is dropped;
  // sent batched while connected.
  void log(v1::LogLevel level, std::string message, std::string source, std::int64_t now_ms);
  // Entries a transport had to drop before they reached log() (its own bounded hand-over queue):
  // reported in the next LogBatch's `dropped`.
  void count_dropped_logs(std::uint64_t count) noexcept { log_dropped_ += count; }
  v1::LogLevel log_level() const noexcept { return min_level_; }

  // The last will the transport registers at connect: retained Presence{online=false}.
  OutboundMessage last_will() const;
  // The presence a device publishes before an orderly DISCONNECT (retained, offline, timestamped).
  OutboundMessage offline_presence(std::int64_t now_ms) const;

  // True once the engine asked for a reboot (or an action hook stopped the runtime): the
  // transport should close the session.
  bool finished() const noexcept;
  bool reboot_requested() const noexcept;
  bool connected() const noexcept { return connected_; }
  EngineState state() const noexcept;
  // What the device would report as its inventory at `now_ms`: the version it runs, the update
  // it works on.
  v1::Inventory inventory(std::int64_t now_ms) const;
  const EngineStats& stats() const noexcept;
  const common::DeviceId& device() const noexcept { return device_; }
  const common::TopicScheme& topics() const noexcept { return topics_; }

 private:
  class Uplink;
  DeviceAgent(DeviceAgentConfig config, Installer& installer, Journal& journal, DeviceLink& link, Hooks hooks,
              common::DeviceId device, common::TopicScheme topics);
  void execute(Actions actions, std::int64_t now_ms);
  common::Status publish(common::Channel channel, std::string payload);
  std::int64_t next_log_flush_ms() const;
  void flush_logs();
  void diagnose(v1::LogLevel level, const std::string& message) const;
  bool renews_certificate() const;
  void request_certificate(std::int64_t now_ms);
  void on_certificate_issued(const action::InstallCertificate& issued);
  void on_renew_certificate(const action::RenewCertificate& renew);
  // Tells the orchestrator a certificate command was refused: a Progress outside any update
  // (no deployment, phase unspecified) with ERROR_CERTIFICATE_REFUSED and what to do.
  void report_certificate_refused(const std::string& command_id, const std::string& detail);

  DeviceAgentConfig config_;
  Installer& installer_;
  Journal& journal_;
  DeviceLink& link_;
  Hooks hooks_;
  common::DeviceId device_;
  common::TopicScheme topics_;
  std::unique_ptr<Uplink> uplink_;
  std::unique_ptr<UpdateEngine> engine_;
  std::unique_ptr<DeviceRuntime> runtime_;
  bool started_ = false;
  bool connected_ = false;
  std::int64_t now_ms_ = 0;  // the latest input's clock, for the engine's log entries
  v1::LogLevel min_level_ = v1::LOG_LEVEL_INFO;
  std::deque<v1::LogEntry> log_queue_;
  std::uint64_t log_dropped_ = 0;
  CertificateRenewal renewal_;
  std::uint64_t certificate_requests_ = 0;  // makes request ids unique within a process
};

}  // namespace fota::client

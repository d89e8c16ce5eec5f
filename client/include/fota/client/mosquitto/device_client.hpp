// SPDX-License-Identifier: Apache-2.0
// The device client over MQTT 5 on libmosquitto and a caller-owned EventLoop: the event-loop twin
// of MqttDeviceClient (mqtt_client.hpp). Both are transport adapters over one DeviceAgent
// (device_agent.hpp), which owns what a device does: engine, runtime, presence, subscriptions,
// LogBatch forwarding and SetLogLevel. This adapter adds mutual TLS, the last will, the connection
// (when to connect, retry and give up on an attempt is the ConnectionSupervisor's,
// connection_supervisor.hpp) and the agent's timers on the loop. C++17.
//
// Threads: none of its own. Everything (socket I/O, engine, flash writes, journal stores) runs
// on the thread that calls EventLoop::run_once(), which must be the thread that created the
// client and calls every method below. So firmware with its own loop, or one process with
// thousands of devices on one loop, can embed it. The application's health check runs on a thread
// of its own (ThreadedHealthCheck); the loop looks for its answer every few milliseconds and the
// engine counts no answer within health_check_timeout_ms as unhealthy.
//
// Unlike MqttDeviceClient it connects with a clean start (libmosquitto has no non-blocking
// connect that carries MQTT 5 properties such as the session expiry), so it resubscribes on every
// connect and a command published while the device was offline is not queued by the broker; the
// engine re-requests chunks it did not get either way.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "fota/client/connection_supervisor.hpp"
#include "fota/client/device_agent.hpp"
#include "fota/client/engine.hpp"
#include "fota/client/installer.hpp"
#include "fota/client/mosquitto/event_loop.hpp"
#include "fota/client/mosquitto/mosquitto_session.hpp"
#include "fota/client/runtime.hpp"
#include "fota/common/result.hpp"
#include "fota/common/topics.hpp"

namespace spdlog {
class logger;
}

namespace fota::client::mosquitto {

struct MosquittoClientConfig {
  std::string broker_uri;  // "ssl://127.0.0.1:8883" (also "mqtts://host:port")
  // PEM files, read once by create(): the fleet CA, the device certificate (CN = device id), its key.
  std::filesystem::path ca_cert;
  std::filesystem::path cert;
  std::filesystem::path key;
  // When set, used instead of the three files (certificates held in memory, or one context
  // shared by many devices of a process).
  std::shared_ptr<TlsContext> tls;
  std::string topic_prefix = "fota/v1";
  std::chrono::seconds keep_alive{30};
  // A TCP connect, TLS handshake and CONNACK that take longer than this are abandoned and retried.
  std::chrono::milliseconds connect_timeout{std::chrono::seconds(10)};
  // Reconnect delay: uniform in [0, min(max, base * 2^attempt)] (full jitter).
  std::chrono::milliseconds reconnect_base{500};
  std::chrono::milliseconds reconnect_max{std::chrono::seconds(60)};
  std::uint64_t random_seed = 0;  // 0 = from std::random_device
  // Application logs: sent as one LogBatch when this many are queued or the interval passed.
  std::size_t log_batch_entries = 50;
  std::chrono::milliseconds log_flush_interval{std::chrono::seconds(2)};
  std::size_t log_queue_limit = 1000;  // older entries are dropped (and counted) beyond this
};

class MosquittoDeviceClient {
 public:
  struct Hooks {
    // The application's health check after an update: as for MqttDeviceClient (a thread of its
    // own per check, no answer within health_check_timeout_ms = unhealthy, no connect meanwhile).
    HealthCheck health_check;
    // Reboot the device. Called on the loop's thread; the client stops feeding the engine
    // afterwards (finished() turns true) and the caller ends it with stop().
    std::function<void()> reboot;
    // Certificate renewal through the agent (CertificateRenewalSetup, device_agent.hpp).
    CertificateRenewalSetup certificate;
  };

  // Loads the journal, reads the TLS files and prepares the session; start() does the rest.
  // `loop` must outlive the client. A MosquittoLibrary must exist for the client's lifetime.
  // Errors: an invalid device id or topic prefix, a broker URI that is not ssl://host:port or
  // mqtts://host:port (kInvalidArgument), an unreadable journal, unreadable or mismatched TLS
  // files (kIo, kCrypto), libmosquitto refusing the session (kInternal).
  static common::Result<std::unique_ptr<MosquittoDeviceClient>> create(
      EventLoop& loop, MosquittoClientConfig mqtt, EngineConfig engine, Installer& installer,
      Journal& journal, const EngineCrypto& crypto, Hooks hooks, std::shared_ptr<spdlog::logger> logger);
  // Leaves the loop (its socket and timers). Without a stop() first the broker sees the
  // connection drop and publishes the last will.
  ~MosquittoDeviceClient();
  MosquittoDeviceClient(const MosquittoDeviceClient&) = delete;
  MosquittoDeviceClient& operator=(const MosquittoDeviceClient&) = delete;

  // Asks the installer which slot booted, starts the engine and begins connecting. Errors: a
  // boot status the installer cannot read (the client stays inert). Call once.
  common::Status start();
  // Stops feeding the engine, publishes presence offline and disconnects gracefully (the loop
  // must run until closed() for the DISCONNECT to leave). Safe to call twice.
  void stop();
  // True once the engine asked for a reboot or stop() was called: the caller should stop().
  bool finished() const noexcept;
  // True after stop() once the connection is gone.
  bool closed() const noexcept;

  // The application's log API: batched to .../log (LogBatch) while connected; entries below the
  // level the last SetLogLevel command set (default info) are dropped. Loop thread only.
  void log(v1::LogLevel level, std::string message, std::string source = {});

  bool connected() const noexcept;
  bool reboot_requested() const noexcept;
  EngineState state() const noexcept;
  EngineStats stats() const noexcept;
  // Connections established after the first one.
  std::uint32_t reconnects() const noexcept { return supervisor_.reconnects(); }
  // Failed connection attempts since the last successful one.
  int failed_attempts() const noexcept { return supervisor_.failed_attempts(); }
  // Why the last connection attempt failed or the connection ended, with libmosquitto's and
  // OpenSSL's reason ("" until something failed).
  const std::string& last_error() const noexcept { return last_error_; }

 private:
  MosquittoDeviceClient(EventLoop& loop, MosquittoClientConfig mqtt, Hooks hooks,
                        std::shared_ptr<spdlog::logger> logger);
  class Link;  // the agent's DeviceLink: publishes and subscribes through the session

  // The supervisor's deadline passed (or a health check that held a connect back ended).
  void on_connection_deadline();
  void connect_failed(const std::string& why);
  void arm_connection_timer();
  void on_connected(int reason_code);
  void on_disconnected(int reason_code);
  void on_message(std::string_view topic, std::string_view payload);
  void after_input();  // the agent's timers, or none after a reboot; a deferred connect
  void poll_health_check();
  void schedule_tick();
  void cancel_timers();
  std::string describe(const std::string& what, int code) const;

  EventLoop& loop_;
  MosquittoClientConfig config_;
  Hooks hooks_;
  std::shared_ptr<spdlog::logger> logger_;
  std::string broker_host_;
  int broker_port_ = 0;
  ConnectionSupervisor supervisor_;

  std::unique_ptr<Link> link_;
  std::unique_ptr<DeviceAgent> agent_;
  std::unique_ptr<MosquittoSession> session_;
  std::unique_ptr<ThreadedHealthCheck> health_;

  bool started_ = false;
  bool stopping_ = false;
  std::string last_error_;
  std::string last_library_error_;  // libmosquitto's latest error line, for the next report
  std::optional<EventLoop::TimerId> tick_timer_;
  std::int64_t tick_at_ = UpdateEngine::kNoDeadline;
  std::optional<EventLoop::TimerId> connection_timer_;  // at the supervisor's deadline
  std::int64_t connection_timer_at_ = ConnectionSupervisor::kNoDeadline;
  std::optional<EventLoop::TimerId> health_timer_;
  bool connect_deferred_ = false;  // a connect waits for the health check's answer
};

}  // namespace fota::client::mosquitto

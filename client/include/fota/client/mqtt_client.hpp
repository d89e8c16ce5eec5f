// SPDX-License-Identifier: Apache-2.0
// The device client over MQTT 5 (Paho MQTT C++): a transport adapter over DeviceAgent
// (device_agent.hpp), which does what a device does (engine, runtime, presence, subscriptions,
// batched application logs, SetLogLevel). This adapter adds mutual TLS, a persistent session, the
// last will and the connection itself; when to connect (exponential backoff, full jitter) is the
// ConnectionSupervisor's (connection_supervisor.hpp). C++17.
//
// Threads: Paho calls back on its own network thread; those callbacks only enqueue. All agent
// work (decoding, verification, flash writes, journal stores) runs on the client's own loop
// thread, started by start(); the health check runs on a thread of its own per check.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>

#include "fota/client/device_agent.hpp"
#include "fota/client/engine.hpp"
#include "fota/client/installer.hpp"
#include "fota/client/runtime.hpp"
#include "fota/common/result.hpp"

namespace spdlog {
class logger;
}

namespace fota::client {

struct MqttClientConfig {
  std::string broker_uri;  // "ssl://127.0.0.1:8883"
  std::filesystem::path ca_cert;
  std::filesystem::path cert;  // device certificate: CN = device id
  std::filesystem::path key;
  std::string topic_prefix = "fota/v1";
  std::chrono::seconds keep_alive{30};
  // MQTT 5 session expiry: the broker keeps subscriptions and QoS 1 messages this long.
  std::chrono::seconds session_expiry{std::chrono::hours(24)};
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

class MqttDeviceClient {
 public:
  struct Hooks {
    // The application's health check after an update. It runs on a thread of its own per check
    // (ThreadedHealthCheck) and may block; no answer within the engine's health_check_timeout_ms
    // counts as unhealthy. The client does not start connecting while it runs.
    HealthCheck health_check;
    // Reboot the device. Called on the client thread; the client's loop ends afterwards.
    std::function<void()> reboot;
    // Certificate renewal through the agent (CertificateRenewalSetup, device_agent.hpp).
    CertificateRenewalSetup certificate;
  };

  // Loads the journal and prepares the session; start() does the rest. Errors: a device id
  // that is not valid, an unreadable journal, a broker URI Paho refuses.
  static common::Result<std::unique_ptr<MqttDeviceClient>> create(MqttClientConfig mqtt, EngineConfig engine,
                                                                  Installer& installer, Journal& journal,
                                                                  const EngineCrypto& crypto, Hooks hooks,
                                                                  std::shared_ptr<spdlog::logger> logger);
  ~MqttDeviceClient();  // stops the loop and disconnects
  MqttDeviceClient(const MqttDeviceClient&) = delete;
  MqttDeviceClient& operator=(const MqttDeviceClient&) = delete;

  // Starts the agent (reads the boot status, resumes what the journal holds) and then the loop
  // thread (connects, reconnects, runs the engine). Errors: those of DeviceAgent::start (a boot
  // status the installer cannot read); the loop is not started then.
  common::Status start();
  // Stops the loop and disconnects cleanly (presence offline). Safe to call twice.
  void stop();
  // Blocks until the loop ends (stop() or a reboot) or the timeout passes; true when it ended.
  bool wait(std::chrono::milliseconds timeout);

  // The application's log API. Thread-safe, never blocks on the network.
  void log(v1::LogLevel level, std::string message, std::string source = {});

  bool connected() const;
  bool reboot_requested() const;
  EngineState state() const;
  EngineStats stats() const;
  // Connections established after the first one (ConnectionSupervisor::reconnects()).
  std::uint32_t reconnects() const;

 private:
  struct Impl;
  explicit MqttDeviceClient(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace fota::client

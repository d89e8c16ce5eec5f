// SPDX-License-Identifier: Apache-2.0
// Test harness: a fresh PKI in a temp dir and a real mosquitto on a free loopback port with an
// mTLS listener (optionally with the fota plugin). Everything started is stopped on destruction.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <csignal>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "fota/common/crypto.hpp"
#include "fota/common/pki.hpp"
#include "fota/common/result.hpp"

namespace fota::testing {

// A temporary directory removed with everything in it on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const noexcept { return path_; }

 private:
  std::filesystem::path path_;
};

// A free TCP port on 127.0.0.1 (bound and released; the caller binds it next).
int free_loopback_port();

// common::spawn_process, throwing when fork fails.
pid_t spawn(const std::vector<std::string>& argv, const std::filesystem::path& output,
            const std::vector<std::string>& extra_env = {});

// Starts `argv` like spawn() and polls `ready` every 50 ms for up to 10 s. Returns the pid, or -1
// with `failure` set to what went wrong and the program's output (it exited, or never got ready;
// then it is killed and reaped).
pid_t spawn_until_ready(const std::vector<std::string>& argv, const std::filesystem::path& output,
                        const std::function<bool()>& ready, std::string& failure);

// Sends `signal` to `pid` (when > 0), waits for it and sets it to -1.
void stop_process(pid_t& pid, int signal = SIGTERM);

// A fleet CA plus a broker certificate for 127.0.0.1 / localhost, in a directory of its own.
class TestPki {
 public:
  explicit TestPki(const std::filesystem::path& dir);

  const common::CertificateAuthority& ca() const { return ca_; }
  std::filesystem::path ca_cert() const { return ca_.ca_cert_path(); }
  const common::IssuedFiles& broker() const { return broker_; }
  // Issues (or returns the already issued) certificate files for a role and name.
  common::IssuedFiles issue(common::Role role, const std::string& name);
  // Issues a certificate with custom options under a distinct file name (e.g. expired).
  common::IssuedFiles issue_custom(const common::IssueOptions& options, const std::string& file_stem);
  // The orchestrator's command key (pki/command/command.key and .pub, as `fotactl pki command-key`
  // makes it), created on first use: the orchestrator signs with it, devices trust its .pub.
  const common::CommandKeyFiles& command_key();

 private:
  std::filesystem::path dir_;
  common::CertificateAuthority ca_;
  common::IssuedFiles broker_;
  std::optional<common::CommandKeyFiles> command_key_;
};

struct BrokerOptions {
  // Load the fota broker plugin (FOTA_PLUGIN_PATH) with these plugin_opt_ settings.
  bool with_plugin = false;
  std::vector<std::pair<std::string, std::string>> plugin_options;
  // Extra lines appended to mosquitto.conf.
  std::string extra_config;
  // Port to use; 0 picks a free one (a restart keeps the port).
  int port = 0;
};

class MosquittoBroker {
 public:
  // Starts mosquitto and waits until it accepts TCP connections; throws std::runtime_error with
  // the broker's log when it does not start within 10 s.
  MosquittoBroker(const TestPki& pki, const std::filesystem::path& work_dir, BrokerOptions options = {});
  ~MosquittoBroker();
  MosquittoBroker(const MosquittoBroker&) = delete;
  MosquittoBroker& operator=(const MosquittoBroker&) = delete;

  int port() const noexcept { return port_; }
  std::string uri() const;  // "ssl://127.0.0.1:<port>"
  bool running() const noexcept { return pid_ > 0; }
  void stop();       // SIGTERM, wait (SIGKILL after 5 s)
  void kill_hard();  // SIGKILL
  void start();      // start again on the same port
  void send_signal(int signal);
  std::string log() const;  // the broker's log file
  const std::filesystem::path& config_path() const noexcept { return config_path_; }

 private:
  void write_config();
  const TestPki& pki_;
  std::filesystem::path work_dir_;
  std::filesystem::path config_path_;
  std::filesystem::path log_path_;
  BrokerOptions options_;
  int port_ = 0;
  int pid_ = -1;
};

// A Paho MQTT 5 client for tests: connects with a certificate, publishes, subscribes and
// collects messages.
struct TestMessage {
  std::string topic;
  std::string payload;
  bool retained = false;
  std::uint32_t expiry_seconds = 0;  // MQTT 5 message expiry interval as delivered; 0 = none
  int qos = 0;                       // as delivered: the lower of the publisher's and the subscription's
};

class TestMqttClient {
 public:
  struct Identity {
    std::filesystem::path ca;
    std::optional<common::IssuedFiles> cert;  // none = connect without a client certificate
  };

  TestMqttClient(std::string uri, std::string client_id, Identity identity);
  ~TestMqttClient();
  TestMqttClient(const TestMqttClient&) = delete;
  TestMqttClient& operator=(const TestMqttClient&) = delete;

  // Error message on failure (TLS refused, connect refused with reason code, timeout).
  common::Status connect(std::chrono::milliseconds timeout = std::chrono::seconds(5));
  void disconnect();
  bool connected() const;
  // Returns the MQTT 5 reason code of the SUBACK (0, 1, 2 granted; >= 0x80 refused) or an error.
  common::Result<int> subscribe(const std::string& filter, int qos = 1);
  // For QoS 1, waits for the PUBACK and returns its reason code (0 = accepted, >= 0x80 refused).
  common::Result<int> publish(const std::string& topic, const std::string& payload, int qos = 1,
                              bool retain = false);
  // Waits for the next message (any topic) or nullopt on timeout.
  std::optional<TestMessage> wait_message(std::chrono::milliseconds timeout = std::chrono::seconds(5));
  // Waits until the broker closes the connection; true when it did within the timeout.
  bool wait_disconnected(std::chrono::milliseconds timeout = std::chrono::seconds(5));

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace fota::testing

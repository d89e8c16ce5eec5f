// SPDX-License-Identifier: Apache-2.0
// The Paho device client over a real Mosquitto with mutual TLS; UpdateServerFixture plays the
// orchestrator and chunk server (one test lets the broker plugin serve the chunks instead).
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "fota/client/mqtt_client.hpp"
#include "fota/client/runtime.hpp"
#include "fota/common/topics.hpp"
#include "fota/testing/broker.hpp"
#include "sim_device.hpp"
#include "update_server_fixture.hpp"

namespace fota::client {
namespace {

class MqttClientTest : public UpdateServerFixture {
 protected:
  ~MqttClientTest() override { client_.reset(); }

  void boot_device() override {
    client_.reset();
    auto booted = simulate_bootloader(*env_, boot_->chooser(), dev_dir() / "cmdline");
    ASSERT_TRUE(booted.ok());
    installer_ = std::make_unique<AbSlotInstaller>(
        std::map<std::string, std::filesystem::path>{{"a", dev_dir() / "slot-a"},
                                                     {"b", dev_dir() / "slot-b"}},
        *boot_);
    MqttClientConfig mqtt;
    mqtt.broker_uri = uri();
    mqtt.ca_cert = pki_.ca_cert();
    mqtt.cert = device_files_.cert;
    mqtt.key = device_files_.key;
    mqtt.reconnect_base = 100ms;
    mqtt.reconnect_max = 1000ms;
    mqtt.log_flush_interval = 100ms;
    MqttDeviceClient::Hooks hooks;
    hooks.health_check = test_health_check();
    auto client = MqttDeviceClient::create(mqtt, device_engine_config(), *installer_, *journal_, *crypto_,
                                           hooks, test_logger());
    ASSERT_TRUE(client.ok()) << client.error().to_string();
    client_ = std::move(client).value();
    const auto started = client_->start();
    ASSERT_TRUE(started.ok()) << started.error().to_string();
  }

  bool device_reboot_requested() override { return client_ && client_->reboot_requested(); }
  void device_log(v1::LogLevel level, std::string message) override {
    client_->log(level, std::move(message), "app");
  }
  std::uint32_t device_reconnects() override { return client_ ? client_->reconnects() : 0; }

  std::unique_ptr<MqttDeviceClient> client_;
};

TEST_F(MqttClientTest, CompleteUpdateOverMutualTls) { expect_complete_update(); }

TEST_F(MqttClientTest, DownloadSurvivesTwoBrokerKillsWithoutRefetchingVerifiedChunks) {
  expect_download_to_survive_two_broker_kills();
}

TEST_F(MqttClientTest, PluginServesAHashTableArtifactEndToEnd) {
  expect_plugin_to_serve_a_hash_table_artifact();
}

TEST_F(MqttClientTest, FailedHealthCheckRevertsOverMqtt) { expect_failed_health_check_to_revert(); }

TEST_F(MqttClientTest, HangingHealthCheckRevertsAtItsDeadline) { expect_hanging_health_check_to_revert(); }

TEST_F(MqttClientTest, ApplicationLogsArriveBatched) {
  connect_server();
  boot_device();
  wait_device_online();
  client_->log(v1::LOG_LEVEL_INFO, "sensor started", "app");
  client_->log(v1::LOG_LEVEL_WARN, "temperature high", "app");
  client_->log(v1::LOG_LEVEL_DEBUG, "below the level: dropped", "app");
  const auto until = std::chrono::steady_clock::now() + 5s;
  int entries = 0;
  while (entries < 2 && std::chrono::steady_clock::now() < until) {
    (void)serve(100ms);
    entries = 0;
    for (const auto& b : logs_) entries += b.entries_size();
  }
  ASSERT_EQ(entries, 2);
  EXPECT_EQ(logs_.front().entries(0).message(), "sensor started");
  EXPECT_EQ(logs_.front().device_id(), testing::kDeviceId);
}

TEST_F(MqttClientTest, SetLogLevelCommandIsHonoured) { expect_set_log_level_to_be_honoured(); }

TEST_F(MqttClientTest, FotaDeviceAgentInstallsAnUpdate) {
  expect_agent_to_install_an_update(FOTA_DEVICE_BIN, {});
}

TEST_F(MqttClientTest, FotaDeviceHealthCheckSeesTheUpdateItChecks) {
  expect_agent_health_check_to_see_the_update(FOTA_DEVICE_BIN, {});
}

// The child's wait status once it exits, or nullopt when it is still running after `timeout`
// (it is then killed).
std::optional<int> wait_exit(pid_t pid, std::chrono::milliseconds timeout) {
  const auto until = std::chrono::steady_clock::now() + timeout;
  int status = 0;
  while (std::chrono::steady_clock::now() < until) {
    if (::waitpid(pid, &status, WNOHANG) == pid) return status;
    std::this_thread::sleep_for(20ms);
  }
  ::kill(pid, SIGKILL);
  ::waitpid(pid, &status, 0);
  return std::nullopt;
}

// Listens on a broker's port and never answers: connections complete in the kernel's backlog and
// the TLS handshake hangs, as with a broker that froze while accepting.
class SilentListener {
 public:
  explicit SilentListener(int port) : fd_(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
    const int on = 1;
    ::setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(static_cast<std::uint16_t>(port));
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    listening_ =
        ::bind(fd_, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0 && ::listen(fd_, 16) == 0;
  }
  ~SilentListener() { ::close(fd_); }
  SilentListener(const SilentListener&) = delete;
  SilentListener& operator=(const SilentListener&) = delete;
  bool listening() const { return listening_; }
  // True once a client's connection waits to be accepted.
  bool wait_for_connection(std::chrono::milliseconds timeout) {
    pollfd p{fd_, POLLIN, 0};
    return ::poll(&p, 1, static_cast<int>(timeout.count())) == 1;
  }

 private:
  int fd_;
  bool listening_ = false;
};

TEST_F(MqttClientTest, FotaDeviceExitsCleanlyOnSigtermWhenTheBrokerGoesAway) {
  // Issue 14: SIGTERM while the broker went away could end fota-device (Paho) in an uncaught
  // mqtt::exception: abort instead of exit status 0.
  enum class Loss { kFrozen, kKilled, kReconnectHangs };
  for (const Loss loss : {Loss::kFrozen, Loss::kKilled, Loss::kReconnectHangs, Loss::kReconnectHangs}) {
    SCOPED_TRACE("loss " + std::to_string(static_cast<int>(loss)));
    connect_server();
    inventories_ = 0;
    const pid_t pid = start_agent(FOTA_DEVICE_BIN, {}, "");
    wait_device_online();
    server_.reset();
    std::optional<SilentListener> listener;
    switch (loss) {
      case Loss::kFrozen:  // the DISCONNECT is never answered
        broker_.send_signal(SIGSTOP);
        break;
      case Loss::kKilled:
        broker_.kill_hard();
        break;
      case Loss::kReconnectHangs:  // SIGTERM while the agent's reconnect waits for a TLS answer
        broker_.kill_hard();
        listener.emplace(broker_.port());
        ASSERT_TRUE(listener->listening());
        EXPECT_TRUE(listener->wait_for_connection(10s)) << "the agent did not reconnect";
        break;
    }
    ::kill(pid, SIGTERM);
    const auto status = wait_exit(pid, 30s);
    listener.reset();
    if (loss == Loss::kFrozen) broker_.send_signal(SIGCONT);
    // A fresh broker for the next round: no retained inventory of this round's agent.
    broker_.kill_hard();
    broker_.start();
    ASSERT_TRUE(status.has_value()) << "fota-device did not exit within 30 s\n"
                                    << read_all(agent_dir() / "agent.log");
    EXPECT_FALSE(WIFSIGNALED(*status)) << "fota-device was killed by signal " << WTERMSIG(*status) << "\n"
                                       << read_all(agent_dir() / "agent.log");
    EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << "status " << *status << "\n"
                                                                 << read_all(agent_dir() / "agent.log");
  }
}

}  // namespace
}  // namespace fota::client

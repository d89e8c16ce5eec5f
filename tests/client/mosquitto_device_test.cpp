// SPDX-License-Identifier: Apache-2.0
// MosquittoDeviceClient (libmosquitto on a caller-owned EventLoop) over a real Mosquitto with
// mutual TLS. UpdateServerFixture plays the orchestrator and chunk server as for the Paho
// adapter; this fixture runs the event loop on the test's thread while the server waits.
#include <gtest/gtest.h>

#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <map>
#include <memory>
#include <string>

#include "fota/client/mosquitto/device_client.hpp"
#include "fota/client/runtime.hpp"
#include "fota/common/topics.hpp"
#include "fota/testing/broker.hpp"
#include "sim_device.hpp"
#include "update_server_fixture.hpp"

namespace fota::client {
namespace {

using mosquitto::EventLoop;
using mosquitto::MosquittoClientConfig;
using mosquitto::MosquittoDeviceClient;

class MosquittoDeviceTest : public UpdateServerFixture {
 protected:
  ~MosquittoDeviceTest() override { shut_down_client(); }

  MosquittoClientConfig client_config() const {
    MosquittoClientConfig mqtt;
    mqtt.broker_uri = uri();
    mqtt.ca_cert = pki_.ca_cert();
    mqtt.cert = device_files_.cert;
    mqtt.key = device_files_.key;
    mqtt.reconnect_base = 100ms;
    mqtt.reconnect_max = 1000ms;
    mqtt.connect_timeout = 3000ms;
    mqtt.log_flush_interval = 100ms;
    return mqtt;
  }

  void boot_device() override {
    shut_down_client();
    auto booted = simulate_bootloader(*env_, boot_->chooser(), dev_dir() / "cmdline");
    ASSERT_TRUE(booted.ok());
    installer_ = std::make_unique<AbSlotInstaller>(
        std::map<std::string, std::filesystem::path>{{"a", dev_dir() / "slot-a"},
                                                     {"b", dev_dir() / "slot-b"}},
        *boot_);
    MosquittoDeviceClient::Hooks hooks;
    hooks.health_check = test_health_check();
    auto client = MosquittoDeviceClient::create(loop_, config_override_ ? *config_override_ : client_config(),
                                                device_engine_config(), *installer_, *journal_, *crypto_,
                                                hooks, test_logger());
    ASSERT_TRUE(client.ok()) << client.error().to_string();
    client_ = std::move(client).value();
    ASSERT_TRUE(client_->start().ok());
  }

  // Graceful: offline presence and DISCONNECT leave before the client goes.
  void shut_down_client() {
    if (!client_) return;
    client_->stop();
    run_loop_for(2000ms, [&] { return client_->closed(); });
    client_.reset();
  }

  bool device_reboot_requested() override { return client_ && client_->reboot_requested(); }
  void device_log(v1::LogLevel level, std::string message) override {
    client_->log(level, std::move(message), "app");
  }
  std::uint32_t device_reconnects() override { return client_ ? client_->reconnects() : 0; }

  std::optional<fota::testing::TestMessage> next_server_message(std::chrono::milliseconds wait) override {
    const auto deadline = std::chrono::steady_clock::now() + wait;
    do {
      if (auto msg = server_->wait_message(0ms)) return msg;
      loop_.run_once(10);
    } while (std::chrono::steady_clock::now() < deadline);
    return server_->wait_message(0ms);
  }

  template <typename Done>
  bool run_loop_for(std::chrono::milliseconds limit, Done done) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (!done()) {
      if (std::chrono::steady_clock::now() >= deadline) return false;
      loop_.run_once(20);
    }
    return true;
  }

  mosquitto::MosquittoLibrary library_;
  EventLoop loop_;
  std::optional<MosquittoClientConfig> config_override_;
  std::unique_ptr<MosquittoDeviceClient> client_;
};

TEST_F(MosquittoDeviceTest, CompleteUpdateOverMutualTls) { expect_complete_update(); }

TEST_F(MosquittoDeviceTest, PluginServesAHashTableArtifactEndToEnd) {
  expect_plugin_to_serve_a_hash_table_artifact();
}

TEST_F(MosquittoDeviceTest, DownloadSurvivesBrokerRestartsWithoutRefetchingVerifiedChunks) {
  expect_download_to_survive_two_broker_kills();
}

TEST_F(MosquittoDeviceTest, FailedHealthCheckRevertsOverMqtt) { expect_failed_health_check_to_revert(); }

TEST_F(MosquittoDeviceTest, HangingHealthCheckRevertsAtItsDeadline) {
  expect_hanging_health_check_to_revert();
}

// Issue 16: the event-loop adapter had no log API and ignored SetLogLevel.
TEST_F(MosquittoDeviceTest, LogsArriveBatchedAndSetLogLevelIsHonoured) {
  expect_set_log_level_to_be_honoured();
}

// Garbage on the command and chunk topics is logged and dropped; the client stays connected and
// the next valid command still runs to the end.
TEST_F(MosquittoDeviceTest, MalformedMessagesAreIgnored) {
  connect_server();
  boot_device();
  wait_device_online();
  const std::string garbage = "\xff\xff\xff\xff not a protobuf";
  ASSERT_EQ(*server_->publish(topics_.device_topic(device_id_, Channel::kCommand), garbage), 0);
  ASSERT_EQ(*server_->publish(topics_.device_topic(device_id_, Channel::kChunk), garbage), 0);
  ASSERT_EQ(*server_->publish(topics_.device_topic(device_id_, Channel::kCommand), std::string()), 0);
  (void)serve(500ms);
  EXPECT_TRUE(client_->connected());
  EXPECT_EQ(client_->state(), EngineState::kIdle);
  send_command(install_command("c1"));
  const v1::Progress last = serve_until_terminal();
  EXPECT_EQ(last.phase(), v1::PHASE_COMMITTED) << last.error_detail();
}

// A device whose certificate another CA signed: the broker refuses the TLS handshake. The client
// says why, keeps retrying with backoff and never reaches the server.
TEST_F(MosquittoDeviceTest, CertificateFromAnotherCaIsRefusedWithAClearError) {
  fota::testing::TestPki rogue(dir_.path() / "rogue-pki");
  const auto rogue_files = rogue.issue(common::Role::kDevice, testing::kDeviceId);
  connect_server();
  MosquittoClientConfig mqtt = client_config();
  mqtt.cert = rogue_files.cert;
  mqtt.key = rogue_files.key;
  mqtt.reconnect_max = 300ms;
  config_override_ = mqtt;
  boot_device();
  // Some attempts end before the handshake's alert arrives (libmosquitto then reports only
  // "Protocol error"); within a few attempts one names the reason.
  const auto names_the_reason = [](const std::string& error) {
    return error.find("connecting to ") == 0 && error.find(" failed") != std::string::npos &&
           error.find("alert unknown ca") != std::string::npos;
  };
  bool ever_connected = false;
  const bool explained = run_loop_for(10s, [&] {
    ever_connected = ever_connected || client_->connected();
    return client_->failed_attempts() >= 2 && names_the_reason(client_->last_error());
  });
  EXPECT_TRUE(explained) << client_->last_error();
  EXPECT_NE(client_->last_error().find(uri()), std::string::npos) << client_->last_error();
  EXPECT_FALSE(ever_connected);
  EXPECT_FALSE(client_->connected());
  EXPECT_FALSE(server_->wait_message(0ms)) << "a refused device published something";
  EXPECT_EQ(inventories_, 0);
}

// A broker that accepts TCP but never answers the TLS handshake (a listening socket nobody
// accepts from): the connect timeout abandons the attempt and the client tries again.
TEST_F(MosquittoDeviceTest, AHandshakeThatNeverFinishesTimesOutAndIsRetried) {
  const int listener = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(listener, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(listener, reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
  ASSERT_EQ(::listen(listener, 8), 0);
  socklen_t length = sizeof address;
  ASSERT_EQ(::getsockname(listener, reinterpret_cast<sockaddr*>(&address), &length), 0);
  MosquittoClientConfig mqtt = client_config();
  mqtt.broker_uri = "ssl://127.0.0.1:" + std::to_string(ntohs(address.sin_port));
  mqtt.connect_timeout = 300ms;
  mqtt.reconnect_max = 200ms;
  config_override_ = mqtt;
  boot_device();
  EXPECT_TRUE(run_loop_for(5s, [&] { return client_->failed_attempts() >= 2; })) << client_->last_error();
  EXPECT_NE(client_->last_error().find("timed out after 300 ms"), std::string::npos) << client_->last_error();
  EXPECT_FALSE(client_->connected());
  shut_down_client();
  ::close(listener);
}

TEST_F(MosquittoDeviceTest, CreateRefusesABadConfigurationWithTheReason) {
  MosquittoDeviceClient::Hooks hooks;
  AbSlotInstaller installer(
      std::map<std::string, std::filesystem::path>{{"a", dev_dir() / "slot-a"}, {"b", dev_dir() / "slot-b"}},
      *boot_);
  auto create = [&](MosquittoClientConfig mqtt) {
    return MosquittoDeviceClient::create(loop_, std::move(mqtt), test_engine_config(), installer, *journal_,
                                         *crypto_, hooks, test_logger());
  };
  MosquittoClientConfig plain = client_config();
  plain.broker_uri = "tcp://127.0.0.1:1883";
  auto refused = create(plain);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, common::Errc::kInvalidArgument);
  EXPECT_NE(refused.error().message.find("tcp://127.0.0.1:1883"), std::string::npos);

  MosquittoClientConfig no_port = client_config();
  no_port.broker_uri = "ssl://127.0.0.1:http";
  EXPECT_FALSE(create(no_port).ok());

  MosquittoClientConfig missing = client_config();
  missing.cert = dir_.path() / "nowhere.crt";
  auto unreadable = create(missing);
  ASSERT_FALSE(unreadable.ok());
  EXPECT_EQ(unreadable.error().code, common::Errc::kIo);
  EXPECT_NE(unreadable.error().message.find("nowhere.crt"), std::string::npos);

  MosquittoClientConfig mismatched = client_config();
  mismatched.key = server_files_.key;  // another identity's key
  auto wrong_key = create(mismatched);
  ASSERT_FALSE(wrong_key.ok());
  EXPECT_EQ(wrong_key.error().code, common::Errc::kCrypto) << wrong_key.error().to_string();
}

// The last will: a device that vanishes without a DISCONNECT is reported offline (retained).
TEST_F(MosquittoDeviceTest, LastWillReportsTheDeviceOffline) {
  connect_server();
  boot_device();
  wait_device_online();
  ASSERT_TRUE(last_presence_.online());
  client_.reset();  // no stop(): the socket just closes
  const auto until = std::chrono::steady_clock::now() + 5s;
  while (last_presence_.online() && std::chrono::steady_clock::now() < until) (void)serve(100ms);
  EXPECT_FALSE(last_presence_.online());
  EXPECT_EQ(last_presence_.device_id(), testing::kDeviceId);
}

TEST_F(MosquittoDeviceTest, FotaDeviceAgentInstallsAnUpdateOverTheEventLoopTransport) {
  expect_agent_to_install_an_update(FOTA_DEVICE_BIN, {"--transport", "mosquitto"});
}

TEST_F(MosquittoDeviceTest, FotaDeviceAgentRejectsAnUnknownTransport) {
  const auto agent_dir = dir_.path() / "agent";
  std::filesystem::create_directories(agent_dir);
  std::ofstream(agent_dir / "device.yaml") << "device_id: " << testing::kDeviceId << "\n";
  const std::string command = std::string(FOTA_DEVICE_BIN) + " --config " +
                              (agent_dir / "device.yaml").string() + " --transport carrier-pigeon 2>" +
                              (agent_dir / "stderr.txt").string();
  const int status = std::system(command.c_str());
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) != 0) << "status " << status;
  EXPECT_NE(read_all(agent_dir / "stderr.txt").find("carrier-pigeon"), std::string::npos)
      << read_all(agent_dir / "stderr.txt");
}

}  // namespace
}  // namespace fota::client

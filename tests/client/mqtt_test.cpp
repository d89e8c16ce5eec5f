// The Paho device client over a real Mosquitto with mutual TLS; UpdateServerFixture plays the
// orchestrator and chunk server (one test lets the broker plugin serve the chunks instead).
#include <gtest/gtest.h>

#include <chrono>
#include <map>
#include <memory>
#include <string>

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
    auto booted = simulate_bootloader(*env_, "a");
    ASSERT_TRUE(booted.ok());
    installer_ = std::make_unique<AbSlotInstaller>(
        std::map<std::string, std::filesystem::path>{{"a", dev_dir() / "slot-a"},
                                                     {"b", dev_dir() / "slot-b"}},
        *env_);
    MqttClientConfig mqtt;
    mqtt.broker_uri = uri();
    mqtt.ca_cert = pki_.ca_cert();
    mqtt.cert = device_files_.cert;
    mqtt.key = device_files_.key;
    mqtt.reconnect_base = 100ms;
    mqtt.reconnect_max = 1000ms;
    mqtt.log_flush_interval = 100ms;
    MqttDeviceClient::Hooks hooks;
    hooks.health_check = [this](const HealthCheckSubject&, std::string& detail) {
      if (!healthy_) detail = "service did not come up";
      return healthy_;
    };
    auto client = MqttDeviceClient::create(mqtt, test_engine_config(), *installer_, *journal_, *crypto_,
                                           hooks, test_logger());
    ASSERT_TRUE(client.ok()) << client.error().to_string();
    client_ = std::move(client).value();
    client_->start();
  }

  bool device_reboot_requested() override { return client_ && client_->reboot_requested(); }
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

TEST_F(MqttClientTest, FotaDeviceAgentInstallsAnUpdate) {
  expect_agent_to_install_an_update(FOTA_DEVICE_BIN, {});
}

TEST_F(MqttClientTest, FotaDeviceHealthCheckSeesTheUpdateItChecks) {
  expect_agent_health_check_to_see_the_update(FOTA_DEVICE_BIN, {});
}

}  // namespace
}  // namespace fota::client

// The Paho device client over a real Mosquitto with mutual TLS; UpdateServerFixture plays the
// orchestrator and chunk server (one test lets the broker plugin serve the chunks instead).
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
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
    hooks.health_check = [this](std::string& detail) {
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

  std::unique_ptr<MqttDeviceClient> client_;
};

TEST_F(MqttClientTest, CompleteUpdateOverMutualTls) {
  connect_server();
  boot_device();
  wait_device_online();  // inventory and presence arrive on connect
  send_command(install_command("c1"));
  const v1::Progress last = serve_until_terminal();
  EXPECT_EQ(last.phase(), v1::PHASE_COMMITTED) << last.error_detail();
  EXPECT_EQ(reboots_, 1);
  EXPECT_TRUE(read_all(dev_dir() / "slot-b") == image_);
  EXPECT_EQ(env_->load()->at("fota_active"), "b");
  for (const auto& [index, count] : requested_) EXPECT_EQ(count, 1) << "chunk " << index;
  // Every image chunk and every hash chunk, each once.
  EXPECT_EQ(requested_.size(), common::ChunkSpace::of(manifest_).total());
  // Inventory after the commit reports the new version; presence says online.
  const auto until = std::chrono::steady_clock::now() + 5s;
  while (last_inventory_.version() != "2.0.0" && std::chrono::steady_clock::now() < until) {
    if (auto msg = next_server_message(200ms)) {
      if (msg->topic == topics_.device_topic(device_id_, Channel::kInventory))
        last_inventory_.ParseFromString(msg->payload);
    }
  }
  EXPECT_EQ(last_inventory_.version(), "2.0.0");
  EXPECT_EQ(last_inventory_.active_slot(), "b");
  EXPECT_TRUE(last_presence_.online());
}

TEST_F(MqttClientTest, DownloadSurvivesTwoBrokerKillsWithoutRefetchingVerifiedChunks) {
  connect_server();
  boot_device();
  int kills = 0;
  bool kill_pending = false;
  // Kill after 20 and after 45 served chunks; serve() stops at once so the download cannot
  // finish before the kill happens, however fast the machine is.
  on_served = [&] {
    const int kill_at = kills == 0 ? 20 : 45;
    if (kills < 2 && !kill_pending && served_ >= kill_at) {
      kill_pending = true;
      interrupt_serving_ = true;
    }
  };
  wait_device_online();
  send_command(install_command("c1"));
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  v1::Progress last;
  while (std::chrono::steady_clock::now() < deadline) {
    if (auto p = serve(200ms)) {
      last = *p;
      break;
    }
    if (kill_pending) {
      kill_pending = false;
      ++kills;
      broker_.kill_hard();
      broker_.start();
      connect_server();
    }
  }
  EXPECT_EQ(kills, 2);
  EXPECT_EQ(last.phase(), v1::PHASE_COMMITTED) << last.error_detail();
  EXPECT_TRUE(read_all(dev_dir() / "slot-b") == image_);
  // Each kill may lose at most one window (4) of requested-but-unanswered chunks; a verified
  // chunk is never asked for again.
  const int chunks = static_cast<int>(common::ChunkSpace::of(manifest_).total());
  EXPECT_LE(served_, chunks + 2 * 4 * 2) << "served " << served_ << " chunks for an image of " << chunks;
}

// What fleets run: the broker plugin answers chunk requests (image chunks and hash-table chunks)
// from the orchestrator's artifact store; nothing reaches the test's server.
TEST_F(MqttClientTest, PluginServesAHashTableArtifactEndToEnd) {
  fota::testing::BrokerOptions options;
  options.with_plugin = true;
  options.plugin_options = {{"artifact_dir", store_->root().string()}};
  plugin_broker_ =
      std::make_unique<fota::testing::MosquittoBroker>(pki_, dir_.path() / "plugin-broker", options);
  connect_server();
  boot_device();
  wait_device_online();
  send_command(install_command("c1"));
  const v1::Progress last = serve_until_terminal();
  EXPECT_EQ(last.phase(), v1::PHASE_COMMITTED) << last.error_detail() << "\n" << plugin_broker_->log();
  EXPECT_EQ(reboots_, 1);
  EXPECT_TRUE(read_all(dev_dir() / "slot-b") == image_);
  EXPECT_TRUE(requested_.empty()) << requested_.size() << " chunk requests were forwarded to the server";
}

TEST_F(MqttClientTest, FailedHealthCheckRevertsOverMqtt) {
  connect_server();
  healthy_ = false;
  boot_device();
  wait_device_online();
  send_command(install_command("c1"));
  const v1::Progress last = serve_until_terminal();
  EXPECT_EQ(last.phase(), v1::PHASE_ROLLED_BACK);
  EXPECT_EQ(last.error(), v1::ERROR_HEALTH_CHECK_FAILED);
  EXPECT_EQ(reboots_, 2);  // into the new slot, and back
  EXPECT_EQ(env_->load()->at("fota_active"), "a");
  EXPECT_EQ(env_->load()->at("fota_booted"), "a");
  EXPECT_TRUE(read_all(dev_dir() / "slot-a") == factory_);
}

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

// fota-device, the agent the demo uses: a YAML config, file-backed slots, a simulated reboot.
TEST_F(MqttClientTest, FotaDeviceAgentInstallsAnUpdate) {
  connect_server();
  const auto agent_dir = dir_.path() / "agent";
  std::filesystem::create_directories(agent_dir / "keys");
  std::ofstream(agent_dir / "keys" / "signing.pub") << key_.public_key().to_pem();
  std::ofstream(agent_dir / "device.yaml")
      << "device_id: " << testing::kDeviceId << "\nhardware_type: " << testing::kHardware
      << "\nbroker: " << broker_.uri() << "\nca: " << pki_.ca_cert().string()
      << "\ncert: " << device_files_.cert.string() << "\nkey: " << device_files_.key.string()
      << "\ntrust: keys\nstate_dir: state\nprogress_interval_ms: 200\nhealth_check: \"test -s "
      << (agent_dir / "state" / "slot-b").string() << "\"\nlog_level: warn\n";
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::execl(FOTA_DEVICE_BIN, FOTA_DEVICE_BIN, "--config", (agent_dir / "device.yaml").c_str(),
            static_cast<char*>(nullptr));
    ::_exit(127);
  }
  wait_device_online();
  send_command(install_command("c1"));
  const v1::Progress last = serve_until_terminal();
  ::kill(pid, SIGTERM);
  int status = 0;
  ::waitpid(pid, &status, 0);
  EXPECT_EQ(last.phase(), v1::PHASE_COMMITTED) << last.error_detail();
  EXPECT_TRUE(read_all(agent_dir / "state" / "slot-b") == image_);
  EXPECT_NE(read_all(agent_dir / "state" / "bootenv.txt").find("fota_active=b"), std::string::npos);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status;
}

}  // namespace
}  // namespace fota::client

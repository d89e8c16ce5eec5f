// SPDX-License-Identifier: Apache-2.0
// The server side of a device client test over a real Mosquitto with mutual TLS, shared by the
// Paho adapter's tests (mqtt_test.cpp) and the event-loop adapter's (mosquitto_device_test.cpp).
// The test plays the orchestrator and chunk server with TestMqttClient and answers chunk requests
// from an ArtifactStore holding a signed bundle, as the orchestrator does; a test may let the
// broker plugin serve the chunks instead (plugin_broker_).
#pragma once

#include <gtest/gtest.h>
#include <signal.h>
#include <spdlog/sinks/null_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "fota/client/runtime.hpp"
#include "fota/common/artifact.hpp"
#include "fota/common/codec.hpp"
#include "fota/common/topics.hpp"
#include "fota/testing/broker.hpp"
#include "sim_device.hpp"

namespace fota::client {

using namespace std::chrono_literals;
using common::Channel;
using fota::testing::TestMqttClient;

inline std::int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

inline std::string read_all(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

class UpdateServerFixture : public ::testing::Test {
 protected:
  UpdateServerFixture()
      : pki_(dir_.path() / "pki"),
        broker_(pki_, dir_.path() / "broker"),
        key_(std::move(common::Ed25519PrivateKey::generate()).value()),
        device_id_(std::move(common::DeviceId::parse(testing::kDeviceId)).value()) {
    device_files_ = pki_.issue(common::Role::kDevice, testing::kDeviceId);
    server_files_ = pki_.issue(common::Role::kOrchestrator, "orchestrator");
    common::TrustStore trust;
    trust.add(key_.public_key());
    crypto_ = std::make_unique<OpenSslEngineCrypto>(std::move(trust), testing::command_keys());
    make_bundle();
    std::filesystem::create_directories(dev_dir());
    factory_ = testing::make_image(5000, 1);
    std::ofstream(dev_dir() / "slot-a", std::ios::binary) << factory_;
    // A factory-fresh boot environment is empty: the boot scheme's defaults apply (a first).
    env_ = std::make_unique<FileBootEnvironment>(dev_dir() / "bootenv.txt");
    boot_ =
        std::make_unique<BootControl>(*env_, *BootChooser::create({}), cmdline_file(dev_dir() / "cmdline"));
    journal_ = std::make_unique<FileJournal>(dev_dir() / "journal");
  }

  std::filesystem::path dev_dir() const { return dir_.path() / "device"; }

  // A signed bundle on disk, read back through the common artifact code like a server would.
  void make_bundle() {
    const std::filesystem::path image = dir_.path() / "image.bin";
    std::ofstream(image, std::ios::binary) << testing::make_image(64 * 1024 + 100, 5);
    common::ArtifactSpec spec;
    spec.name = "firmware";
    spec.version = "2.0.0";
    spec.security_counter = 2;
    spec.compatible_hardware = {testing::kHardware};
    spec.chunk_size = 1024;
    auto manifest = common::build_signed_manifest(image, spec, key_, wall_ms());
    ASSERT_TRUE(manifest.ok()) << manifest.error().to_string();
    const std::filesystem::path bundle = dir_.path() / "firmware.fota";
    ASSERT_TRUE(common::write_bundle(bundle, *manifest, image).ok());
    common::TrustStore trust;
    trust.add(key_.public_key());
    auto verified = common::verify_bundle(bundle, trust);
    ASSERT_TRUE(verified.ok()) << verified.error().to_string();
    signed_manifest_ = verified->info.signed_manifest;
    manifest_ = verified->manifest;
    image_ = read_all(bundle).substr(verified->info.image_offset);
    // 65 chunks of 1 KiB: more than one 1 KiB hash chunk holds, so the manifest has a hash table.
    ASSERT_EQ(manifest_.hash_table_sha256_size(), 3);
    store_ = std::make_unique<common::ArtifactStore>(dir_.path() / "artifacts");
    ASSERT_TRUE(store_->import_bundle(bundle, trust).ok());
  }

  // The URI devices and the test's server connect to.
  std::string uri() const { return plugin_broker_ ? plugin_broker_->uri() : broker_.uri(); }

  void connect_server() {
    server_ = std::make_unique<TestMqttClient>(uri(), "orchestrator",
                                               TestMqttClient::Identity{pki_.ca_cert(), server_files_});
    ASSERT_TRUE(server_->connect().ok());
    for (Channel c : {Channel::kChunkRequest, Channel::kProgress, Channel::kInventory, Channel::kPresence,
                      Channel::kLog}) {
      ASSERT_EQ(*server_->subscribe(topics_.device_topic(device_id_, c)), 1);
    }
  }

  // The adapter under test: (re)boot the device (simulated bootloader) and start a client on
  // it; whether that client asked for a reboot; the next message for the server (the event-loop
  // adapter runs its loop while it waits).
  virtual void boot_device() = 0;
  virtual bool device_reboot_requested() = 0;
  virtual std::optional<fota::testing::TestMessage> next_server_message(std::chrono::milliseconds wait) {
    return server_->wait_message(wait);
  }

  // The engine configuration both adapters' tests use: small windows, quick timeouts.
  static EngineConfig test_engine_config() {
    EngineConfig engine = testing::SimDevice::default_config();
    engine.slot_capacity_bytes = 1024 * 1024;
    engine.initial_window = 4;
    engine.max_window = 4;
    engine.chunk_timeout_ms = 1500;
    engine.progress_interval_ms = 200;
    return engine;
  }

  // The configuration a booting device gets: test_engine_config() and the test's overrides.
  EngineConfig device_engine_config() const {
    EngineConfig engine = test_engine_config();
    if (health_check_timeout_ms_) engine.health_check_timeout_ms = *health_check_timeout_ms_;
    return engine;
  }

  // The health check hook both adapters' tests install: healthy_ decides, and while
  // health_check_hangs_ is set it does not answer. It may outlive the test (a hanging check's
  // thread), so it holds only shared state.
  HealthCheck test_health_check() const {
    return [healthy = healthy_, hangs = health_check_hangs_](const HealthCheckSubject&, std::string& detail) {
      while (*hangs) std::this_thread::sleep_for(std::chrono::milliseconds(5));
      if (!healthy) detail = "service did not come up";
      return healthy;
    };
  }

  // FOTA_TEST_VERBOSE=1 shows the client's log on stderr.
  static std::shared_ptr<spdlog::logger> test_logger() {
    spdlog::sink_ptr sink = std::make_shared<spdlog::sinks::null_sink_mt>();
    if (std::getenv("FOTA_TEST_VERBOSE") != nullptr) sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
    auto logger = std::make_shared<spdlog::logger>("fota.client.test", sink);
    logger->set_level(spdlog::level::debug);
    return logger;
  }

  // The device has connected and subscribed once its inventory arrives.
  void wait_device_online() {
    for (int i = 0; i < 100 && inventories_ == 0; ++i) (void)serve(100ms);
    ASSERT_GT(inventories_, 0) << "the device did not connect";
  }

  v1::Command install_command(const std::string& id) {
    v1::Command c;
    c.set_command_id(id);
    c.set_deployment_id("dep-1");
    c.set_device_id(testing::kDeviceId);
    c.set_issued_at_ms(wall_ms());
    c.set_expires_at_ms(wall_ms() + 60'000);
    *c.mutable_install()->mutable_manifest() = signed_manifest_;
    return c;
  }

  // Publishes `c` as the orchestrator does: signed with testing::command_key().
  void send_command(const v1::Command& c) {
    ASSERT_EQ(
        *server_->publish(topics_.device_topic(device_id_, Channel::kCommand), testing::signed_command(c)),
        0);
  }

  void answer(const v1::ChunkRequest& request) {
    const std::string topic = topics_.device_topic(device_id_, Channel::kChunk);
    (void)common::respond_to_chunk_request(request, common::ArtifactStoreChunkSource(*store_),
                                           common::ChunkBudget{}, [&](v1::ChunkData&& chunk) {
                                             ++requested_[chunk.index()];
                                             ++served_;
                                             (void)server_->publish(topic, chunk.SerializeAsString(), 0);
                                             if (on_served) on_served();
                                           });
  }

  v1::Progress serve_until_terminal(std::chrono::milliseconds limit = 40s) {
    if (auto p = serve(limit)) return *p;
    ADD_FAILURE() << "no terminal progress within " << limit.count() << " ms";
    return {};
  }

  // Plays the server for `limit` or until a terminal phase arrives; reboots the device when
  // it asks.
  std::optional<v1::Progress> serve(std::chrono::milliseconds limit) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    do {
      if (interrupt_serving_) {  // the test wants to act (e.g. kill the broker) right now
        interrupt_serving_ = false;
        return std::nullopt;
      }
      if (device_reboot_requested()) {
        ++reboots_;
        boot_device();
      }
      auto msg = next_server_message(100ms);
      if (!msg) continue;
      auto parsed = topics_.parse(msg->topic);
      if (!parsed.ok()) continue;
      switch (parsed->channel) {
        case Channel::kChunkRequest: {
          auto request = common::decode<v1::ChunkRequest>(msg->payload, common::kMaxChunkRequestBytes);
          if (request.ok()) answer(*request);
          break;
        }
        case Channel::kProgress: {
          v1::Progress p;
          p.ParseFromString(msg->payload);
          phases_.push_back(p.phase());
          if (p.phase() == v1::PHASE_COMMITTED || p.phase() == v1::PHASE_ROLLED_BACK ||
              p.phase() == v1::PHASE_FAILED) {
            return p;
          }
          break;
        }
        case Channel::kInventory:
          ++inventories_;
          last_inventory_.ParseFromString(msg->payload);
          break;
        case Channel::kPresence:
          last_presence_.ParseFromString(msg->payload);
          break;
        case Channel::kLog:
          logs_.emplace_back().ParseFromString(msg->payload);
          break;
        default:
          break;
      }
    } while (std::chrono::steady_clock::now() < deadline);
    return std::nullopt;
  }

  // ---- What every adapter must do, run by each adapter's tests -----------------------------
  virtual std::uint32_t device_reconnects() = 0;

  void expect_complete_update() {
    connect_server();
    boot_device();
    wait_device_online();  // inventory and presence arrive on connect
    EXPECT_TRUE(last_presence_.online());
    send_command(install_command("c1"));
    const v1::Progress last = serve_until_terminal();
    EXPECT_EQ(last.phase(), v1::PHASE_COMMITTED) << last.error_detail();
    EXPECT_EQ(reboots_, 1);
    EXPECT_TRUE(read_all(dev_dir() / "slot-b") == image_);
    EXPECT_EQ(env_->load()->at("FOTA_ORDER"), "b a");
    EXPECT_EQ(env_->load()->at("FOTA_TRIAL"), "");
    for (const auto& [index, count] : requested_) EXPECT_EQ(count, 1) << "chunk " << index;
    // Every image chunk and every hash chunk, each once.
    EXPECT_EQ(requested_.size(), common::ChunkSpace::of(manifest_).total());
    // Inventory after the commit reports the new version; presence says online again.
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

  // Kills the broker after 20 and after 45 served chunks; serve() stops at once so the download
  // cannot finish before the kill happens, however fast the machine is.
  void expect_download_to_survive_two_broker_kills() {
    connect_server();
    boot_device();
    int kills = 0;
    bool kill_pending = false;
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
    EXPECT_GE(device_reconnects() + static_cast<std::uint32_t>(reboots_), 1u);
    // Each kill may lose at most one window (4) of requested-but-unanswered chunks; a verified
    // chunk is never asked for again.
    const int chunks = static_cast<int>(common::ChunkSpace::of(manifest_).total());
    EXPECT_LE(served_, chunks + 2 * 4 * 2) << "served " << served_ << " chunks for an image of " << chunks;
  }

  // What fleets run: the broker plugin answers chunk requests (image chunks and hash-table chunks)
  // from the orchestrator's artifact store; nothing reaches the test's server.
  void expect_plugin_to_serve_a_hash_table_artifact() {
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

  // A health check that never answers counts as unhealthy at the engine's deadline
  // (health_check_timeout_ms); the client's loop keeps running meanwhile.
  void expect_hanging_health_check_to_revert() {
    connect_server();
    health_check_timeout_ms_ = 1500;
    *health_check_hangs_ = true;
    boot_device();
    wait_device_online();
    send_command(install_command("c1"));
    const v1::Progress last = serve_until_terminal();
    *health_check_hangs_ = false;  // let the hook's threads finish
    EXPECT_EQ(last.phase(), v1::PHASE_ROLLED_BACK);
    EXPECT_EQ(last.error(), v1::ERROR_HEALTH_CHECK_FAILED);
    EXPECT_NE(last.error_detail().find("no answer within 1500 ms"), std::string::npos) << last.error_detail();
    EXPECT_EQ(reboots_, 2);  // into the new slot, and back
    EXPECT_EQ(env_->load()->at("FOTA_ORDER"), "a b");
  }

  void expect_failed_health_check_to_revert() {
    connect_server();
    healthy_ = false;
    boot_device();
    wait_device_online();
    send_command(install_command("c1"));
    const v1::Progress last = serve_until_terminal();
    EXPECT_EQ(last.phase(), v1::PHASE_ROLLED_BACK);
    EXPECT_EQ(last.error(), v1::ERROR_HEALTH_CHECK_FAILED);
    EXPECT_EQ(reboots_, 2);  // into the new slot, and back
    EXPECT_EQ(env_->load()->at("FOTA_ORDER"), "a b");
    EXPECT_EQ(env_->load()->at("FOTA_B_LEFT"), "0") << "the rejected slot is never fallen back to";
    EXPECT_NE(read_all(dev_dir() / "cmdline").find("fota.slot=a"), std::string::npos);
    EXPECT_TRUE(read_all(dev_dir() / "slot-a") == factory_);
  }

  // The application's log API of the adapter under test.
  virtual void device_log(v1::LogLevel level, std::string message) = 0;

  // Every log entry of every LogBatch received so far.
  std::vector<v1::LogEntry> log_entries() const {
    std::vector<v1::LogEntry> entries;
    for (const auto& batch : logs_)
      entries.insert(entries.end(), batch.entries().begin(), batch.entries().end());
    return entries;
  }

  // Application logs reach the broker as LogBatch, and a SetLogLevel command moves the threshold:
  // a debug entry is dropped at the default level (info) and sent after the command lowered it.
  void expect_set_log_level_to_be_honoured() {
    connect_server();
    boot_device();
    wait_device_online();
    device_log(v1::LOG_LEVEL_DEBUG, "debug before the command: dropped");
    device_log(v1::LOG_LEVEL_INFO, "info before the command");
    v1::Command command;
    command.set_command_id("log-level-1");
    command.set_device_id(testing::kDeviceId);
    command.set_issued_at_ms(wall_ms());
    command.set_expires_at_ms(wall_ms() + 60'000);
    command.mutable_set_log_level()->set_level(v1::LOG_LEVEL_DEBUG);
    send_command(command);
    // The command reaches the device some time after it left: log debug probes until one arrives.
    const auto until = std::chrono::steady_clock::now() + 10s;
    const auto has_debug = [&] {
      for (const auto& entry : log_entries())
        if (entry.level() == v1::LOG_LEVEL_DEBUG) return true;
      return false;
    };
    for (int probe = 0; !has_debug() && std::chrono::steady_clock::now() < until; ++probe) {
      device_log(v1::LOG_LEVEL_DEBUG, "debug probe " + std::to_string(probe));
      (void)serve(200ms);
    }
    ASSERT_TRUE(has_debug()) << "no debug entry arrived after SetLogLevel(debug); " << log_entries().size()
                             << " entries arrived";
    const auto entries = log_entries();
    EXPECT_EQ(entries.front().message(), "info before the command");
    EXPECT_EQ(entries.front().source(), "app");
    for (const auto& entry : entries) EXPECT_NE(entry.message(), "debug before the command: dropped");
    EXPECT_EQ(logs_.front().device_id(), testing::kDeviceId);
  }

  // The `command_keys` line of a fota-device config in `dir`: the public key of
  // testing::command_key(), the orchestrator command key of these tests, written there.
  static std::string command_keys_config(const std::filesystem::path& dir) {
    std::ofstream(dir / "command.pub") << testing::command_key().public_key().to_pem();
    return "command_keys: command.pub\n";
  }

  // fota-device, the agent the demo uses: a YAML config, file-backed slots, a simulated reboot.
  // Starts it in agent_dir() with `health_check` as its health-check command; `extra_args` pick
  // its transport. Its output goes to agent_dir()/agent.log.
  std::filesystem::path agent_dir() const { return dir_.path() / "agent"; }
  pid_t start_agent(const std::string& agent_bin, const std::vector<std::string>& extra_args,
                    const std::string& health_check) {
    std::filesystem::create_directories(agent_dir() / "keys");
    std::ofstream(agent_dir() / "keys" / "signing.pub") << key_.public_key().to_pem();
    std::ofstream(agent_dir() / "device.yaml")
        << "device_id: " << testing::kDeviceId << "\nhardware_type: " << testing::kHardware
        << "\nbroker: " << broker_.uri() << "\nca: " << pki_.ca_cert().string()
        << "\ncert: " << device_files_.cert.string() << "\nkey: " << device_files_.key.string()
        << "\ntrust: keys\nstate_dir: state\nprogress_interval_ms: 200\nhealth_check: '" << health_check
        << "'\nlog_level: warn\n"
        << command_keys_config(agent_dir());
    std::vector<std::string> args = {agent_bin, "--config", (agent_dir() / "device.yaml").string()};
    args.insert(args.end(), extra_args.begin(), extra_args.end());
    return fota::testing::spawn(args, agent_dir() / "agent.log");
  }

  void expect_agent_to_install_an_update(const std::string& agent_bin,
                                         const std::vector<std::string>& extra_args) {
    connect_server();
    const pid_t pid =
        start_agent(agent_bin, extra_args, "test -s " + (agent_dir() / "state" / "slot-b").string());
    wait_device_online();
    send_command(install_command("c1"));
    const v1::Progress last = serve_until_terminal();
    ::kill(pid, SIGTERM);
    int status = 0;
    ::waitpid(pid, &status, 0);
    EXPECT_EQ(last.phase(), v1::PHASE_COMMITTED) << last.error_detail();
    EXPECT_TRUE(read_all(agent_dir() / "state" / "slot-b") == image_);
    EXPECT_NE(read_all(agent_dir() / "state" / "bootenv.txt").find("FOTA_ORDER=b a"), std::string::npos);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status;
  }

  // The agent's health-check command learns what it checks from its environment (docs/CLIENT.md,
  // "fota-device"): here it writes that environment to a file.
  void expect_agent_health_check_to_see_the_update(const std::string& agent_bin,
                                                   const std::vector<std::string>& extra_args) {
    connect_server();
    const auto seen = agent_dir() / "health-check.env";
    const pid_t pid = start_agent(agent_bin, extra_args, "env > " + seen.string());
    wait_device_online();
    send_command(install_command("c1"));
    const v1::Progress last = serve_until_terminal();
    ::kill(pid, SIGTERM);
    int status = 0;
    ::waitpid(pid, &status, 0);
    EXPECT_EQ(last.phase(), v1::PHASE_COMMITTED) << last.error_detail();
    std::map<std::string, std::string> env;
    std::istringstream lines(read_all(seen));
    for (std::string line; std::getline(lines, line);) {
      const auto eq = line.find('=');
      if (line.rfind("FOTA_", 0) == 0 && eq != std::string::npos)
        env[line.substr(0, eq)] = line.substr(eq + 1);
    }
    EXPECT_EQ(env["FOTA_SLOT"], "b");
    EXPECT_EQ(env["FOTA_VERSION"], "2.0.0");
    EXPECT_EQ(env["FOTA_ARTIFACT_ID"], manifest_.artifact_id());
    EXPECT_EQ(env["FOTA_DEVICE_ID"], testing::kDeviceId);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status;
  }

  fota::testing::TempDir dir_;
  fota::testing::TestPki pki_;
  fota::testing::MosquittoBroker broker_;
  std::unique_ptr<fota::testing::MosquittoBroker> plugin_broker_;  // when set, used instead of broker_
  std::unique_ptr<common::ArtifactStore> store_;
  common::Ed25519PrivateKey key_;
  common::DeviceId device_id_;
  common::TopicScheme topics_;
  common::IssuedFiles device_files_;
  common::IssuedFiles server_files_;
  std::unique_ptr<OpenSslEngineCrypto> crypto_;
  v1::SignedManifest signed_manifest_;
  v1::Manifest manifest_;
  std::string image_;
  std::string factory_;
  std::unique_ptr<FileBootEnvironment> env_;
  std::unique_ptr<BootControl> boot_;
  std::unique_ptr<FileJournal> journal_;
  std::unique_ptr<AbSlotInstaller> installer_;
  std::unique_ptr<TestMqttClient> server_;
  bool healthy_ = true;
  std::shared_ptr<std::atomic<bool>> health_check_hangs_ = std::make_shared<std::atomic<bool>>(false);
  std::optional<std::int64_t> health_check_timeout_ms_;
  std::map<std::uint32_t, int> requested_;
  int served_ = 0;
  bool interrupt_serving_ = false;
  int reboots_ = 0;
  int inventories_ = 0;
  std::function<void()> on_served;  // after each chunk the server answered
  std::vector<v1::Phase> phases_;
  v1::Inventory last_inventory_;
  v1::Presence last_presence_;
  std::vector<v1::LogBatch> logs_;
};

}  // namespace fota::client

// SPDX-License-Identifier: Apache-2.0
// Real `fota-device` agents (both transports, file-backed A/B slots, a simulated reboot) against a
// real mosquitto over mTLS and the real fota-orchestrator, driven only through fotactl, as an
// operator would. An observer subscribed to every device's command topic counts what each agent
// was sent. Issue 14: a failed update must end, whatever order an agent's reports arrive in.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <chrono>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>
#include <httplib.h>
#include <nlohmann/json.hpp>

#include "fota/common/artifact.hpp"
#include "fota/common/codec.hpp"
#include "fota/common/crypto.hpp"
#include "fota/common/encryption.hpp"
#include "fota/common/topics.hpp"
#include "fota/orchestrator/webhook.hpp"
#include "fota/testing/broker.hpp"
#include "fota/testing/command.hpp"
#include "fota/testing/orchestrator_setup.hpp"
#include "fota/testing/postgres.hpp"
#include "fota/testing/signed_bundle.hpp"
#include "fota/testing/tcp_relay.hpp"

namespace fota::testing {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using namespace std::chrono_literals;

constexpr const char* kToken = "agents-token-0123456789abcdef";

std::string read_file(const fs::path& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Every command the broker routes to a device, as a third party sees it.
class CommandObserver {
 public:
  CommandObserver(TestPki& pki, const std::string& uri)
      : client_(uri, "observer",
                TestMqttClient::Identity{pki.ca_cert(), pki.issue(common::Role::kObserver, "observer")}) {
    if (!subscribe()) throw std::runtime_error("observer: cannot connect and subscribe");
    thread_ = std::thread([this] {
      while (!stop_) {
        // The broker may restart under the test: follow it.
        if (!client_.connected() && !subscribe()) {
          std::this_thread::sleep_for(100ms);
          continue;
        }
        auto msg = client_.wait_message(100ms);
        if (!msg) continue;
        auto command = common::decode<v1::Command>(msg->payload, common::kMaxCommandBytes);
        if (!command.ok()) continue;
        std::lock_guard lock(mutex_);
        commands_[command->device_id()].push_back(*command);
      }
    });
  }
  ~CommandObserver() {
    stop_ = true;
    thread_.join();
  }

  bool subscribe() {
    if (!client_.connect(1s).ok()) return false;
    auto sub = client_.subscribe("fota/v1/dev/+/cmd", 1);
    return sub.ok() && *sub <= 2;
  }

  int installs(const std::string& device) const {
    return count(device, [](const v1::Command& c) { return c.has_install(); });
  }
  int cancels(const std::string& device) const {
    return count(device, [](const v1::Command& c) { return c.has_cancel(); });
  }

  int count(const std::string& device, const std::function<bool(const v1::Command&)>& which) const {
    std::lock_guard lock(mutex_);
    auto it = commands_.find(device);
    if (it == commands_.end()) return 0;
    return static_cast<int>(std::count_if(it->second.begin(), it->second.end(), which));
  }

 private:
  TestMqttClient client_;
  std::atomic<bool> stop_{false};
  mutable std::mutex mutex_;
  std::map<std::string, std::vector<v1::Command>> commands_;
  std::thread thread_;
};

struct AgentOptions {
  std::string transport = "paho";
  bool healthy = true;
};

class RealAgentsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    pki_ = std::make_unique<TestPki>(dir_.path() / "pki");
    const BrokerOptions options = broker_options();
    broker_ = std::make_unique<MosquittoBroker>(*pki_, dir_.path() / "broker", options);
    // The broker plugin's ACL lets observers read reports only, not commands.
    if (!options.with_plugin) observer_ = std::make_unique<CommandObserver>(*pki_, broker_->uri());
    http_port_ = write_orchestrator_setup(dir_.path(), *pki_, *broker_, "operator", kToken).http_port;
    server_ = " --server http://127.0.0.1:" + std::to_string(http_port_) + " --token " + kToken;
  }

  virtual BrokerOptions broker_options() { return {}; }

  void TearDown() override {
    for (auto& [id, pid] : agents_) {
      if (pid > 0) kill(pid, SIGTERM);
    }
    for (auto& [id, pid] : agents_) {
      if (pid > 0) waitpid(pid, nullptr, 0);
    }
    stop_orchestrator(SIGTERM);
    if (HasFailure()) {
      std::fprintf(stderr, "---- orchestrator log\n%s\n",
                   read_file(dir_.path() / "orchestrator.log").c_str());
      for (auto& [id, pid] : agents_) {
        std::fprintf(stderr, "---- %s log\n%s\n", id.c_str(),
                     read_file(dir_.path() / id / "device.log").c_str());
      }
    }
  }

  void start_orchestrator() {
    std::string failure;
    orchestrator_ = spawn_until_ready(
        {FOTA_ORCHESTRATOR_PATH, "--config", (dir_.path() / "orchestrator.yaml").string()},
        dir_.path() / "orchestrator.log", [&] { return fotactl("rollout status").exit_code == 0; }, failure);
    ASSERT_GT(orchestrator_, 0) << failure;
  }

  void stop_orchestrator(int signal) { stop_process(orchestrator_, signal); }

  // Writes the agent's config (once) and starts it; a restart keeps its state directory.
  void start_agent(const std::string& id, const AgentOptions& options = {}) {
    const auto home = dir_.path() / id;
    if (!fs::exists(home / "device.yaml")) {
      const auto files = pki_->issue(common::Role::kDevice, id);
      agent_files_[id] = files;
      fs::create_directories(home);
      std::ofstream(home / "device.yaml")
          << "device_id: " << id << "\nhardware_type: gw-v2\nbroker: "
          << (agent_broker_uri_.empty() ? broker_->uri() : agent_broker_uri_)
          << "\nca: " << pki_->ca_cert().string() << "\ncert: " << files.cert.string()
          << "\nkey: " << files.key.string() << "\ntrust: " << (dir_.path() / "keys").string()
          << "\ncommand_keys: " << pki_->command_key().public_key.string()
          << "\nstate_dir: " << (home / "state").string() << "\nfactory_version: 1.0.0\ntime_zone: UTC"
          << "\nprogress_interval_ms: 200\nlog_level: info\ntransport: " << options.transport
          << "\nhealth_check: " << (options.healthy ? "/bin/true" : "/bin/false")
          << "\nattributes:\n  tags: fleet\n"
          << (decryption_keys_.count(id) ? "decryption_key: " + decryption_keys_[id] + "\n" : "");
    }
    agents_[id] = spawn({FOTA_DEVICE_PATH, "--config", (home / "device.yaml").string()}, home / "device.log");
  }

  void kill_agent(const std::string& id, int signal) {
    pid_t& pid = agents_.at(id);
    kill(pid, signal);
    waitpid(pid, nullptr, 0);
    pid = -1;
  }

  CommandRun fotactl(const std::string& args) { return run_command("'" FOTACTL_PATH "' " + args + server_); }
  CommandRun fotactl_ok(const std::string& args) {
    CommandRun r = fotactl(args);
    EXPECT_EQ(r.exit_code, 0) << "fotactl " << args << "\n" << r.output;
    return r;
  }
  json fotactl_json(const std::string& args) {
    const CommandRun r = fotactl_ok(args + " --json");
    const auto brace = r.output.find_first_of("[{");
    if (brace == std::string::npos) return json();
    return json::parse(r.output.substr(brace), nullptr, false);
  }

  void wait_registered(std::size_t n) {
    for (int i = 0; i < 600; ++i) {
      const json devices = fotactl_json("device list");
      std::size_t online = 0;
      if (devices.is_array()) {
        for (const auto& d : devices) online += d.value("online", false) ? 1 : 0;
      }
      if (online >= n) return;
      std::this_thread::sleep_for(50ms);
    }
    FAIL() << "fewer than " << n << " agents registered";
  }

  // A signed image bundle of `size` bytes, uploaded; returns the artifact id.
  std::string upload(const std::string& version, std::size_t size) {
    const auto bundle =
        make_signed_bundle(dir_.path(), dir_.path() / "release.key", BundleSpec{"fw", version, size});
    const CommandRun r = fotactl_ok("artifact upload " + bundle.string());
    const auto pos = r.output.find("uploaded artifact ");
    return pos == std::string::npos ? "" : r.output.substr(pos + 18, 32);
  }

  std::string create_rollout(const std::string& spec_yaml) {
    std::ofstream(dir_.path() / "spec.yaml") << spec_yaml;
    return fotactl_json("rollout create -f " + (dir_.path() / "spec.yaml").string()).value("id", "");
  }

  json status(const std::string& rollout) { return fotactl_json("rollout status " + rollout); }

  json wait_rollout(const std::string& rollout, const std::function<bool(const json&)>& done,
                    std::chrono::seconds timeout = 120s) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    json r;
    while (std::chrono::steady_clock::now() < deadline) {
      r = status(rollout);
      if (done(r)) return r;
      std::this_thread::sleep_for(100ms);
    }
    ADD_FAILURE() << "timed out; rollout: " << r.dump(2);
    return r;
  }

  static const json* member(const json& rollout, const std::string& device) {
    for (const auto& m : rollout["members"]) {
      if (m.value("device", "") == device) return &m;
    }
    return nullptr;
  }

  std::string audit_text() { return fotactl_ok("audit list").output; }

  TempDir dir_;
  std::unique_ptr<TestPki> pki_;
  std::unique_ptr<MosquittoBroker> broker_;
  std::unique_ptr<CommandObserver> observer_;
  int http_port_ = 0;
  pid_t orchestrator_ = -1;
  std::map<std::string, pid_t> agents_;
  std::map<std::string, common::IssuedFiles> agent_files_;
  std::map<std::string, std::string> decryption_keys_;  // X25519 private key file per agent, if any
  std::string server_;
  std::string agent_broker_uri_;  // where new agents connect; empty: the test's (core) broker
};

const char* transport_of(int i) { return i % 2 == 0 ? "paho" : "mosquitto"; }

// The field report: a release whose health check fails on some devices never failed; each of
// them was sent the install again and again. Now each failing agent gets exactly one install per
// allowed attempt, is counted failed once, and the breach action fires.
TEST_F(RealAgentsTest, ABadReleaseFailsOnceAPerAttemptAndTheBreachFires) {
  start_orchestrator();
  constexpr int kAgents = 6;
  std::vector<std::string> ids;
  for (int i = 0; i < kAgents; ++i) {
    ids.push_back("agent-" + std::to_string(i));
    // agent-4 and agent-5 (one per transport) fail their health check.
    start_agent(ids.back(), AgentOptions{transport_of(i), i < 4});
  }
  wait_registered(kAgents);
  const std::string artifact = upload("2.0", 96 * 1024);
  ASSERT_EQ(artifact.size(), 32u);
  const std::string id =
      create_rollout("name: bad-release\nartifact: " + artifact +
                     "\ntarget: {tags: [fleet]}\nretries: {max: 1, backoff: 1s}\n"
                     "waves:\n  - {size: 100%, failure_threshold: 0.25}\non_breach: pause\n");
  ASSERT_FALSE(id.empty());
  fotactl_ok("rollout start " + id);
  const json r = wait_rollout(id, [&](const json& j) {
    if (j.value("state", "") != "paused") return false;
    for (const auto& m : j["members"]) {
      const std::string s = m.value("state", "");
      if (s != "succeeded" && s != "failed") return false;
    }
    return true;
  });
  EXPECT_EQ(r.value("state", ""), "paused") << r.dump(2);
  EXPECT_EQ(r["counts"].value("failed", 0), 2) << r.dump(2);
  EXPECT_EQ(r["counts"].value("succeeded", 0), 4) << r.dump(2);
  // Nothing more is sent once the outcomes are known, however long we wait.
  std::this_thread::sleep_for(3s);
  for (int i = 0; i < kAgents; ++i) {
    const bool healthy = i < 4;
    EXPECT_EQ(observer_->installs(ids[i]), healthy ? 1 : 2) << ids[i] << " (" << transport_of(i) << ")";
    const json* m = member(r, ids[i]);
    ASSERT_NE(m, nullptr) << ids[i];
    EXPECT_EQ(m->value("state", ""), healthy ? "succeeded" : "failed") << m->dump();
    EXPECT_EQ(m->value("attempt", 0), healthy ? 1 : 2) << m->dump();
  }
  const std::string audit = audit_text();
  EXPECT_NE(audit.find("breached"), std::string::npos) << audit;
  // Ordinary commits arrive as what they are, not through the lost-report repair.
  EXPECT_EQ(audit.find("report was lost"), std::string::npos) << audit;
  fotactl_ok("audit verify");
}

// kill -9 of the orchestrator while the first wave downloads: after a restart the rollout
// finishes, and no agent is sent its install twice.
TEST_F(RealAgentsTest, OrchestratorKilledMidWaveFinishesWithoutSendingAnythingTwice) {
  start_orchestrator();
  constexpr int kAgents = 4;
  for (int i = 0; i < kAgents; ++i) start_agent("agent-" + std::to_string(i), AgentOptions{transport_of(i)});
  wait_registered(kAgents);
  const std::string artifact = upload("2.0", 512 * 1024);
  // 128 KiB/s per device: the first wave's download takes about 4 s.
  const std::string id = create_rollout("name: crash\nartifact: " + artifact +
                                        "\ntarget: {tags: [fleet]}\nmax_bytes_per_second: 262144\n"
                                        "waves:\n  - size: 2\n  - size: 100%\n");
  fotactl_ok("rollout start " + id);
  wait_rollout(id, [](const json& j) {
    for (const auto& m : j["members"]) {
      if (m.value("bytes_done", 0) > 0) return true;
    }
    return false;
  });
  stop_orchestrator(SIGKILL);
  std::this_thread::sleep_for(1s);
  start_orchestrator();
  const json r = wait_rollout(id, [](const json& j) { return j.value("state", "") == "completed"; });
  EXPECT_EQ(r["counts"].value("succeeded", 0), kAgents) << r.dump(2);
  for (int i = 0; i < kAgents; ++i) EXPECT_EQ(observer_->installs("agent-" + std::to_string(i)), 1);
  fotactl_ok("audit verify");
}

// The broker restarts while the agents download: they reconnect and finish what they started.
TEST_F(RealAgentsTest, BrokerRestartMidDownloadFinishesWithOneInstallEach) {
  start_orchestrator();
  constexpr int kAgents = 4;
  for (int i = 0; i < kAgents; ++i) start_agent("agent-" + std::to_string(i), AgentOptions{transport_of(i)});
  wait_registered(kAgents);
  const std::string artifact = upload("2.0", 512 * 1024);
  const std::string id = create_rollout("name: broker-restart\nartifact: " + artifact +
                                        "\ntarget: {tags: [fleet]}\nmax_bytes_per_second: 524288\n");
  fotactl_ok("rollout start " + id);
  wait_rollout(id, [](const json& j) {
    for (const auto& m : j["members"]) {
      if (m.value("bytes_done", 0) > 0) return true;
    }
    return false;
  });
  broker_->stop();
  std::this_thread::sleep_for(1s);
  broker_->start();
  const json r = wait_rollout(id, [](const json& j) { return j.value("state", "") == "completed"; });
  EXPECT_EQ(r["counts"].value("succeeded", 0), kAgents) << r.dump(2);
  // The observer reconnects too; it may miss a command sent while it was away, never see one twice.
  for (int i = 0; i < kAgents; ++i) EXPECT_LE(observer_->installs("agent-" + std::to_string(i)), 1);
}

// An agent killed (power cut) in the middle of its download resumes after it starts again and
// fetches only what it did not have: the orchestrator serves less than two images in all.
TEST_F(RealAgentsTest, AgentKilledMidDownloadResumesWithoutRefetchingItsChunks) {
  start_orchestrator();
  for (int i = 0; i < 2; ++i) start_agent("agent-" + std::to_string(i), AgentOptions{transport_of(i)});
  wait_registered(2);
  constexpr std::size_t kImage = 1024 * 1024;
  const std::string artifact = upload("2.0", kImage);
  const std::string id = create_rollout("name: power-cut\nartifact: " + artifact +
                                        "\ntarget: {tags: [fleet]}\nmax_bytes_per_second: 524288\n");
  fotactl_ok("rollout start " + id);
  wait_rollout(id, [](const json& j) {
    for (const auto& m : j["members"]) {
      if (m.value("bytes_done", 0) < 256 * 1024) return false;
    }
    return true;
  });
  kill_agent("agent-0", SIGKILL);
  kill_agent("agent-1", SIGKILL);
  std::this_thread::sleep_for(500ms);
  start_agent("agent-0");
  start_agent("agent-1");
  const json r = wait_rollout(id, [](const json& j) { return j.value("state", "") == "completed"; });
  EXPECT_EQ(r["counts"].value("succeeded", 0), 2) << r.dump(2);
  for (int i = 0; i < 2; ++i) EXPECT_EQ(observer_->installs("agent-" + std::to_string(i)), 1);
  // Two images, and the few chunks each that were in flight at the kill (the rate cap keeps the
  // window small); starting over would refetch the 256 KiB each had verified.
  httplib::Client http("127.0.0.1", http_port_);
  const auto metrics = http.Get("/metrics");
  ASSERT_TRUE(metrics);
  const std::string sample = "\nfota_chunk_bytes_served_total ";
  const auto pos = metrics->body.find(sample);
  ASSERT_NE(pos, std::string::npos) << metrics->body;
  const auto served = std::stoull(metrics->body.substr(pos + sample.size()));
  std::printf("[ figure ] served %llu bytes for two 1 MiB downloads cut by kill -9\n",
              static_cast<unsigned long long>(served));
  EXPECT_GE(served, 2 * kImage);
  EXPECT_LT(served, 2 * kImage + 256 * 1024) << "verified chunks were fetched again";
}

// Issue 22, item 1 (docs/CLIENT.md, "Reuse what the device already has"): the second release
// shares 90 % of its chunks with the first, which the agent runs from its file-backed A/B slot.
// It copies those from the running slot, and the orchestrator serves only the changed chunks.
TEST_F(RealAgentsTest, AnUpdateThatSharesChunksWithTheRunningSlotFetchesOnlyTheChangedChunks) {
  start_orchestrator();
  start_agent("agent-0", AgentOptions{"paho"});
  wait_registered(1);
  constexpr std::uint32_t kChunk = 16 * 1024;
  constexpr std::size_t kChunks = 128;  // 2 MiB: 128 chunk hashes, inline in the manifest
  std::string v2(kChunks * kChunk, '\0');
  std::uint32_t x = 12345;
  for (auto& c : v2) {
    x = x * 1103515245U + 12345U;
    c = static_cast<char>(x >> 24);
  }
  std::string v3 = v2;
  std::size_t changed = 0;
  for (std::size_t i = 0; i < kChunks; i += 10, ++changed) v3[i * kChunk + 7] ^= 0x5a;  // 13 chunks
  const auto served = [&]() -> std::uint64_t {
    httplib::Client http("127.0.0.1", http_port_);
    const auto metrics = http.Get("/metrics");
    if (!metrics) return 0;
    const std::string sample = "\nfota_chunk_bytes_served_total ";
    const auto pos = metrics->body.find(sample);
    return pos == std::string::npos ? 0 : std::stoull(metrics->body.substr(pos + sample.size()));
  };
  const auto roll_out = [&](const std::string& version, const std::string& image) {
    BundleSpec spec;
    spec.version = version;
    spec.chunk_size = kChunk;
    spec.image = image;
    const auto bundle = make_signed_bundle(dir_.path(), dir_.path() / "release.key", spec);
    const CommandRun up = fotactl_ok("artifact upload " + bundle.string());
    const auto pos = up.output.find("uploaded artifact ");
    const std::string artifact = pos == std::string::npos ? "" : up.output.substr(pos + 18, 32);
    const std::string id =
        create_rollout("name: r" + version + "\nartifact: " + artifact + "\ntarget: {devices: [agent-0]}\n");
    fotactl_ok("rollout start " + id);
    const json r = wait_rollout(id, [](const json& j) { return j.value("state", "") == "completed"; });
    EXPECT_EQ(r["counts"].value("succeeded", 0), 1) << r.dump(2);
    return id;
  };
  roll_out("2.0", v2);  // from the factory slot, which shares nothing with it
  const std::uint64_t full = served();
  const std::string second = roll_out("3.0", v3);
  const std::uint64_t reused_update = served() - full;
  std::printf(
      "[ figure ] %zu of %zu chunks changed (16 KiB chunks, 2 MiB image): full update %llu bytes "
      "served, update reusing the running slot %llu bytes served (%.1f %%)\n",
      changed, kChunks, static_cast<unsigned long long>(full), static_cast<unsigned long long>(reused_update),
      100.0 * double(reused_update) / double(full));
  EXPECT_GE(full, v2.size());
  // Only the changed chunks travelled (a re-request after a timeout on a loaded machine may add one).
  EXPECT_GE(reused_update, changed * kChunk);
  EXPECT_LE(reused_update, (changed + 2) * kChunk);
  const json r = status(second);
  const json* m = member(r, "agent-0");
  ASSERT_NE(m, nullptr);
  EXPECT_EQ(m->value("bytes_reused", std::uint64_t{0}), v3.size() - changed * kChunk) << m->dump(2);
  EXPECT_EQ(r["waves"][0].value("bytes_reused", std::uint64_t{0}), v3.size() - changed * kChunk);
  // The REUSED column of fotactl's device table.
  const std::string text = fotactl_ok("rollout status " + second + " --devices").output;
  EXPECT_NE(text.find(std::to_string(v3.size() - changed * kChunk)), std::string::npos) << text;
  // The agent's slot holds v3 exactly (it verified the image hash before activating).
  EXPECT_TRUE(read_file(dir_.path() / "agent-0" / "state" / "slot-a") == v3);
}

// The operator rolls the fleet back while both agents (one per transport) are still downloading:
// each is sent a cancel, stops, keeps running its old release, and only then is counted; the
// rollout ends rolled back with no device on the new artifact. The rollout engine's test of the
// same path (RolloutEngineTest.ACancelThatCrossesTheUpdatesEndStillEndsInARollback) feeds the
// reports by hand; here real agents send them.
TEST_F(RealAgentsTest, ARollbackDuringTheDownloadCancelsItAndTheAgentsKeepTheirRelease) {
  start_orchestrator();
  for (int i = 0; i < 2; ++i) start_agent("agent-" + std::to_string(i), AgentOptions{transport_of(i)});
  wait_registered(2);
  // 1 MiB at 128 KiB/s: about 8 s of download, time enough to roll back in the middle.
  const std::string artifact = upload("2.0", 1024 * 1024);
  const std::string id = create_rollout("name: cancelled\nartifact: " + artifact +
                                        "\ntarget: {tags: [fleet]}\nmax_bytes_per_second: 131072\n");
  fotactl_ok("rollout start " + id);
  wait_rollout(id, [](const json& j) {
    for (const auto& m : j["members"]) {
      if (m.value("bytes_done", 0) == 0) return false;
    }
    return true;
  });
  fotactl_ok("rollout rollback " + id);
  const json r = wait_rollout(id, [](const json& j) { return j.value("state", "") == "rolled_back"; });
  EXPECT_EQ(r.value("state", ""), "rolled_back") << r.dump(2);
  for (int i = 0; i < 2; ++i) {
    const std::string device = "agent-" + std::to_string(i);
    const json* m = member(r, device);
    ASSERT_NE(m, nullptr) << device;
    EXPECT_EQ(m->value("state", ""), "cancelled") << device << " (" << transport_of(i) << "): " << m->dump();
    EXPECT_EQ(observer_->installs(device), 1) << device;
    EXPECT_EQ(observer_->cancels(device), 1) << device;
  }
  // The agents still run (and report) the factory release.
  for (const auto& d : fotactl_json("device list")) {
    EXPECT_EQ(d.value("version", ""), "1.0.0") << d.dump();
    EXPECT_NE(d.value("artifact_id", ""), artifact) << d.dump();
  }
  fotactl_ok("audit verify");
}

// The inventory an agent publishes when its next update starts still carries the previous
// update's outcome. That is old news: it must not be judged again, add a "committed" event to
// the finished rollout's log or show the device as committed while it downloads.
TEST_F(RealAgentsTest, TheNextUpdateDoesNotReplayThePreviousOutcome) {
  start_orchestrator();
  start_agent("agent-0", AgentOptions{"paho"});
  wait_registered(1);
  const auto events_of = [&](const std::string& rollout) {
    httplib::Client http("127.0.0.1", http_port_);
    http.set_bearer_token_auth(kToken);
    const auto res = http.Get(("/api/v1/events?device=agent-0&rollout=" + rollout).c_str());
    return res && res->status == 200 ? json::parse(res->body) : json::array();
  };
  const auto spec = [](const std::string& name, const std::string& artifact) {
    return "name: " + name + "\nartifact: " + artifact + "\ntarget: {devices: [agent-0]}\n";
  };
  const std::string first = create_rollout(spec("first", upload("2.0", 64 * 1024)));
  fotactl_ok("rollout start " + first);
  wait_rollout(first, [](const json& j) { return j.value("state", "") == "completed"; });
  std::this_thread::sleep_for(500ms);  // the rollout loop stores its events
  const json before = events_of(first);
  ASSERT_FALSE(before.empty());
  const std::string second = create_rollout(spec("second", upload("3.0", 64 * 1024)));
  fotactl_ok("rollout start " + second);
  const json r = wait_rollout(second, [](const json& j) { return j.value("state", "") == "completed"; });
  EXPECT_EQ(r["counts"].value("succeeded", 0), 1) << r.dump(2);
  std::this_thread::sleep_for(500ms);
  const json after = events_of(first);
  EXPECT_EQ(after.size(), before.size()) << "the first rollout's log grew during the second:\n"
                                         << after.dump(2);
  EXPECT_EQ(observer_->installs("agent-0"), 2);
}

// Issue 20: a fresh orchestrator planned the first rollout from declared defaults (1 MB/s, 30 s a
// device). Real agents measure their downloads, verify, reboot and health check, report it in their
// inventory, and an orchestrator on an empty store plans from it.
TEST_F(RealAgentsTest, AgentsReportWhatTheyMeasuredAndAFreshOrchestratorPlansFromIt) {
  start_orchestrator();
  start_agent("agent-0", AgentOptions{"paho"});
  start_agent("agent-1", AgentOptions{"mosquitto"});
  wait_registered(2);
  const auto spec = [](const std::string& name, const std::string& artifact) {
    return "name: " + name + "\nartifact: " + artifact + "\ntarget: {tags: [fleet]}\n";
  };
  const auto measurements_of = [&](const std::string& id) {
    const json d = fotactl_json("device show " + id);
    return d.contains("measurements") ? d["measurements"] : json();
  };
  const auto wait_measured = [&](const std::string& id) {
    json m;
    for (int i = 0; i < 200 && (m.is_null() || m.value("reboot_ms", 0) <= 0); ++i) {
      std::this_thread::sleep_for(100ms);
      m = measurements_of(id);
    }
    // The inventory after the reboot has the reboot; the one after the commit the health check too.
    std::this_thread::sleep_for(1s);
    return measurements_of(id);
  };
  // Before any update nothing was measured: the plan rests on the defaults.
  const std::string first = create_rollout(spec("first", upload("2.0", 256 * 1024)));
  json plan = fotactl_json("rollout plan " + first);
  EXPECT_EQ(plan.value("devices_with_default_rate", -1), 2) << plan.dump(2);
  EXPECT_EQ(plan.value("devices_with_own_measurements", -1), 0) << plan.dump(2);
  EXPECT_GE(plan.value("bound_duration_ms", std::int64_t{0}), plan.value("duration_ms", std::int64_t{0}));
  fotactl_ok("rollout start " + first);
  wait_rollout(first, [](const json& j) { return j.value("state", "") == "completed"; });
  std::map<std::string, json> measured;
  for (const std::string id : {"agent-0", "agent-1"}) {
    measured[id] = wait_measured(id);
    const json& m = measured[id];
    ASSERT_FALSE(m.is_null()) << id << " reported no measurements";
    EXPECT_GT(m.value("download_bytes_per_second", std::uint64_t{0}), 0u) << m.dump();
    EXPECT_GT(m.value("reboot_ms", std::int64_t{0}), 0) << m.dump();
    EXPECT_GE(m.value("health_check_ms", std::int64_t{-1}), 0) << m.dump();
  }

  // A fresh orchestrator: its store and artifacts are gone; the agents' retained inventories
  // carry what they measured.
  stop_orchestrator(SIGTERM);
  fs::remove_all(dir_.path() / "data");
  start_orchestrator();
  wait_registered(2);
  for (const std::string id : {"agent-0", "agent-1"}) {
    json m;
    for (int i = 0; i < 100 && m.is_null(); ++i) {
      m = measurements_of(id);
      if (m.is_null()) std::this_thread::sleep_for(100ms);
    }
    EXPECT_EQ(m, measured[id]) << id;
  }
  const std::uint64_t image = 256 * 1024;
  const std::string second = create_rollout(spec("second", upload("3.0", image)) + "max_concurrent: 1\n");
  plan = fotactl_json("rollout plan " + second);
  EXPECT_EQ(plan.value("devices_with_own_measurements", -1), 2) << plan.dump(2);
  EXPECT_EQ(plan.value("devices_with_default_rate", -1), 0) << plan.dump(2);
  EXPECT_EQ(plan.value("history_samples", -1), 0) << plan.dump(2);
  // One at a time: the sum of each device's own transfer, verify, reboot and health check.
  std::int64_t expected = 0;
  for (const auto& [id, m] : measured) {
    const auto rate = static_cast<double>(m.value("download_bytes_per_second", std::uint64_t{1}));
    const auto verify = static_cast<double>(m.value("verify_bytes_per_second", std::uint64_t{0}));
    expected += static_cast<std::int64_t>(static_cast<double>(image) * 1000.0 / rate) +
                (verify > 0 ? static_cast<std::int64_t>(static_cast<double>(image) * 1000.0 / verify) : 0) +
                m.value("reboot_ms", std::int64_t{0}) + m.value("health_check_ms", std::int64_t{0});
  }
  EXPECT_NEAR(static_cast<double>(plan.value("duration_ms", std::int64_t{0})), static_cast<double>(expected),
              4.0)
      << plan.dump(2);
  const CommandRun text = fotactl_ok("rollout plan " + second);
  EXPECT_NE(text.output.find("2 at what they measured themselves"), std::string::npos) << text.output;
  EXPECT_NE(text.output.find("90 % bound"), std::string::npos) << text.output;
}

// docs/SECURITY.md, "Encrypted artifacts": the release engineer encrypts a release for one
// device's X25519 key with fotactl; the orchestrator stores and the broker plugin serves only
// ciphertext. The agent holding the key installs it; the agent without one refuses it before
// downloading. An attacker with the refusing device's certificate, which the rollout's command
// entitles to the chunks, fetches them all and gets ciphertext.
class EncryptedReleaseTest : public RealAgentsTest {
 protected:
  // fotactl commands that work offline (keys, artifact create/inspect/verify): no server options.
  CommandRun local_ok(const std::string& args) {
    CommandRun r = run_command("'" FOTACTL_PATH "' " + args);
    EXPECT_EQ(r.exit_code, 0) << "fotactl " << args << "\n" << r.output;
    return r;
  }

  BrokerOptions broker_options() override {
    fs::create_directories(dir_.path() / "data" / "artifacts");
    BrokerOptions options;
    options.with_plugin = true;
    options.plugin_options = {{"artifact_dir", (dir_.path() / "data" / "artifacts").string()}};
    return options;
  }
};

TEST_F(EncryptedReleaseTest, OnlyTheKeyHolderInstallsAndTheWireCarriesCiphertext) {
  start_orchestrator();
  // The image: a marker in every 64 bytes, so any plaintext that leaks is found.
  std::string image;
  for (int i = 0; image.size() < 96 * 1024; ++i) {
    std::string line = "PLAINTEXT-" + std::to_string(i) + "-";
    image += line + std::string(64 - line.size(), '.');
  }
  const fs::path image_file = dir_.path() / "secret.img";
  std::ofstream(image_file, std::ios::binary) << image;
  const fs::path key = dir_.path() / "agent-0-x25519";
  local_ok("keys generate --x25519 -o " + key.string());
  const fs::path bundle = dir_.path() / "secret.fota";
  local_ok("artifact create --image " + image_file.string() +
           " --version 3.0 --hardware gw-v2 --security-counter 3 "
           "--key " +
           (dir_.path() / "release.key").string() + " --encrypt-for " + key.string() + ".pub -o " +
           bundle.string());
  const CommandRun inspect = local_ok("artifact inspect --json " + bundle.string());
  const json inspected = json::parse(
      inspect.output.substr(std::min(inspect.output.find('{'), inspect.output.size())), nullptr, false);
  const std::string key_id = common::X25519PublicKey::load(key.string() + ".pub")->key_id();
  ASSERT_TRUE(inspected["encryption"].is_object()) << inspected.dump(2);
  EXPECT_EQ(inspected["encryption"]["recipients"], json::array({key_id})) << inspected.dump(2);
  EXPECT_EQ(inspected["encryption"]["scheme"], "ENCRYPTION_SCHEME_X25519_AES256GCM_V1");
  const CommandRun verified =
      local_ok("artifact verify " + bundle.string() + " --trust " + (dir_.path() / "keys").string());
  EXPECT_NE(verified.output.find("encrypted"), std::string::npos) << verified.output;
  EXPECT_EQ(read_file(bundle).find("PLAINTEXT-"), std::string::npos) << "plaintext in the bundle";

  decryption_keys_["agent-0"] = key.string() + ".key";
  start_agent("agent-0", AgentOptions{"paho", true});
  start_agent("agent-1", AgentOptions{"mosquitto", true});
  wait_registered(2);
  const CommandRun uploaded = fotactl_ok("artifact upload " + bundle.string());
  const auto pos = uploaded.output.find("uploaded artifact ");
  ASSERT_NE(pos, std::string::npos) << uploaded.output;
  const std::string artifact = uploaded.output.substr(pos + 18, 32);
  const std::string id = create_rollout("name: secret\nartifact: " + artifact +
                                        "\ntarget: {tags: [fleet]}\nretries: {max: 0}\n"
                                        "non_recipients: include\n"
                                        "waves:\n  - {size: 100%, failure_threshold: 1.0}\n");
  ASSERT_FALSE(id.empty());
  fotactl_ok("rollout start " + id);
  const json r = wait_rollout(id, [&](const json& j) {
    for (const auto& m : j["members"]) {
      const std::string s = m.value("state", "");
      if (s != "succeeded" && s != "failed") return false;
    }
    return j["members"].size() == 2;
  });
  const json* holder = member(r, "agent-0");
  const json* other = member(r, "agent-1");
  ASSERT_NE(holder, nullptr);
  ASSERT_NE(other, nullptr);
  EXPECT_EQ(holder->value("state", ""), "succeeded") << holder->dump();
  EXPECT_EQ(other->value("state", ""), "failed") << other->dump();
  EXPECT_NE(other->value("error", "").find("not for this device's (it has no decryption key)"),
            std::string::npos)
      << other->dump();
  EXPECT_EQ(other->value("bytes_done", 0), 0) << "the refusing agent downloaded nothing";
  const json devices = fotactl_json("device list");
  for (const auto& d : devices) {
    if (d.value("id", "") != "agent-1") continue;
    EXPECT_NE(d.value("last_error", "").find("ERROR_NOT_A_RECIPIENT"), std::string::npos) << d.dump();
  }
  // The key holder booted the plaintext image.
  const std::string slot = read_file(dir_.path() / "agent-0" / "state" / "slot-b");
  EXPECT_TRUE(slot.compare(0, image.size(), image) == 0) << "agent-0's slot b does not hold the image";
  // The store the broker plugin serves from holds ciphertext only.
  EXPECT_EQ(read_file(dir_.path() / "data" / "artifacts" / artifact / "image").find("PLAINTEXT-"),
            std::string::npos);

  // The attacker: agent-1's certificate (agent-1 stopped), in an MQTT client of its own. It asks
  // for every chunk of the artifact the rollout's command entitled agent-1 to. (mosquitto_rr 2.0.11
  // sends an empty payload whatever -f says, and mosquitto_sub and mosquitto_pub cannot share the
  // one client id the plugin allows this certificate, so this is the test support's Paho client.)
  kill_agent("agent-1", SIGKILL);
  const auto store_manifest = common::ArtifactStore(dir_.path() / "data" / "artifacts").manifest(artifact);
  ASSERT_TRUE(store_manifest.ok()) << store_manifest.error().message;
  const std::string content_key = common::X25519PrivateKey::load(key.string() + ".key")
                                      ->unwrap_content_key(store_manifest->encryption())
                                      .value();
  TestMqttClient attacker(broker_->uri(), "agent-1",
                          TestMqttClient::Identity{pki_->ca_cert(), agent_files_.at("agent-1")});
  ASSERT_TRUE(attacker.connect().ok());
  ASSERT_EQ(attacker.subscribe("fota/v1/dev/agent-1/chunk", 1).value(), 1);
  v1::ChunkRequest request;
  request.set_device_id("agent-1");
  request.set_artifact_id(artifact);
  request.set_request_id(1);
  auto* range = request.add_ranges();
  range->set_first(0);
  range->set_count(6);
  ASSERT_EQ(attacker.publish("fota/v1/dev/agent-1/chunk/req", request.SerializeAsString(), 1).value(), 0);
  int chunks = 0;
  while (chunks < 6) {
    const auto message = attacker.wait_message(10s);
    ASSERT_TRUE(message.has_value()) << chunks << " chunks arrived\n" << broker_->log();
    v1::ChunkData chunk;
    ASSERT_TRUE(chunk.ParseFromString(message->payload));
    ASSERT_EQ(chunk.status(), v1::CHUNK_STATUS_OK);
    const std::uint32_t index = chunk.index();
    // 16 KiB of ciphertext and its 16-byte tag, no marker; only agent-0's key opens it.
    EXPECT_EQ(chunk.data().size(), 16u * 1024 + 16) << "chunk " << index;
    EXPECT_EQ(chunk.data().find("PLAINTEXT-"), std::string::npos) << "chunk " << index;
    std::string opened = chunk.data();
    ASSERT_TRUE(common::decrypt_chunk(content_key, index, opened).ok());
    EXPECT_EQ(opened, image.substr(std::size_t{index} * 16 * 1024, 16 * 1024));
    ++chunks;
  }
  EXPECT_EQ(chunks, 6);
}

// The same orchestrator with its state on PostgreSQL (store: postgresql://..., a throwaway cluster
// on loopback): a rollout to real agents over the mTLS broker survives a kill -9 in the middle of
// its first wave, completes, and a restarted orchestrator finds all of it again.
// Issue 19, edge brokers (docs/BROKER_PLUGIN.md, "Edge brokers"): devices behind an edge mosquitto
// bridged to the core over mTLS. With a cache fill the edge fetches the artifact once from the
// orchestrator (HTTPS, its broker certificate) and serves every device behind it; without, each
// device's chunks cross the core link. Byte-counting relays sit on both links the edge has to the
// core side (the bridge, the HTTPS fetch), so what crosses is measured, not estimated.
class EdgeBrokerTest : public RealAgentsTest {
 protected:
  static constexpr int kDevices = 4;
  static constexpr std::size_t kImageBytes = 1024 * 1024;

  BrokerOptions broker_options() override {
    BrokerOptions options;
    options.with_plugin = true;
    options.plugin_options = {{"edge_brokers", "edge-1"}};
    return options;
  }

  void SetUp() override {
    RealAgentsTest::SetUp();
    // The API over HTTPS, with client certificates from the fleet CA (the edge's broker one).
    common::IssueOptions server;
    server.role = common::Role::kOrchestrator;
    server.common_name = "fota-orchestrator-api";
    server.ip_addresses = {"127.0.0.1"};
    const auto api = pki_->issue_custom(server, "orchestrator-api");
    std::string config = read_file(dir_.path() / "orchestrator.yaml");
    const auto at = config.find("\napi_tokens:");
    ASSERT_NE(at, std::string::npos);
    config.insert(at, "\n  tls:\n    cert: " + api.cert.string() + "\n    key: " + api.key.string() +
                          "\n    client_ca: " + pki_->ca_cert().string());
    std::ofstream(dir_.path() / "orchestrator.yaml") << config;
    server_ = " --server https://127.0.0.1:" + std::to_string(http_port_) + " --ca " +
              pki_->ca_cert().string() + " --token " + kToken;
  }

  // The edge broker, its bridge through a relay to the core; with `cache`, a cache fill through a
  // relay to the orchestrator's API (or from `upstream_port`, an impostor's).
  void start_edge(bool cache, int upstream_port = 0) {
    bridge_link_ = std::make_unique<TcpRelay>(broker_->port());
    api_link_ = std::make_unique<TcpRelay>(http_port_);
    const auto bridge = pki_->issue(common::Role::kBroker, "edge-1");
    BrokerOptions options;
    options.with_plugin = true;
    if (cache) {
      const auto cache_dir = dir_.path() / "edge-cache";
      fs::create_directories(cache_dir);
      options.plugin_options = {
          {"artifact_dir", cache_dir.string()},
          {"bridge_client_id", "bridge.edge-1"},
          {"upstream_url",
           "https://127.0.0.1:" + std::to_string(upstream_port ? upstream_port : api_link_->port())},
          {"upstream_ca", pki_->ca_cert().string()},
          {"upstream_cert", bridge.cert.string()},
          {"upstream_key", bridge.key.string()},
          {"trusted_keys", (dir_.path() / "keys").string()}};
    }
    std::string config =
        "connection core\naddress 127.0.0.1:" + std::to_string(bridge_link_->port()) +
        "\nbridge_protocol_version mqttv50\nremote_clientid edge-1\nlocal_clientid bridge.edge-1"
        "\nbridge_cafile " +
        pki_->ca_cert().string() + "\nbridge_certfile " + bridge.cert.string() + "\nbridge_keyfile " +
        bridge.key.string() + "\ncleansession true\nrestart_timeout 1 5\n";
    for (const char* out : {"inventory", "progress", "log", "presence", "chunk/req", "csr"}) {
      config += std::string("topic fota/v1/dev/+/") + out + " out 1\n";
    }
    config += "topic fota/v1/dev/+/cmd in 1\ntopic fota/v1/dev/+/chunk in 1\n";
    options.extra_config = config;
    edge_ = std::make_unique<MosquittoBroker>(*pki_, dir_.path() / "edge", options);
  }

  // A rollout of one image to kDevices agents behind the edge; returns the bytes that crossed
  // the core side's links.
  std::uint64_t roll_out_behind_the_edge() {
    start_orchestrator();
    agent_broker_uri_ = edge_->uri();
    for (int i = 0; i < kDevices; ++i)
      start_agent("edge-agent-" + std::to_string(i), AgentOptions{transport_of(i)});
    wait_registered(kDevices);
    const std::string artifact = upload("2.0", kImageBytes);
    EXPECT_EQ(artifact.size(), 32u);
    const std::uint64_t before = bridge_link_->bytes() + api_link_->bytes();
    const std::string id = create_rollout("name: edge\nartifact: " + artifact +
                                          "\ntarget: {tags: [fleet]}\nwaves:\n  - size: 100%\n");
    fotactl_ok("rollout start " + id);
    const json r = wait_rollout(id, [](const json& j) { return j.value("state", "") == "completed"; });
    EXPECT_EQ(r["counts"].value("succeeded", 0), kDevices) << r.dump(2);
    artifact_ = artifact;
    return bridge_link_->bytes() + api_link_->bytes() - before;
  }

  void TearDown() override {
    if (HasFailure() && edge_) std::fprintf(stderr, "---- edge broker log\n%s\n", edge_->log().c_str());
    RealAgentsTest::TearDown();
  }

  // An HTTPS server with a certificate of the fleet CA (as a compromised host on the path could
  // have) that answers bundle downloads with the stored artifact, one image byte flipped.
  std::unique_ptr<httplib::SSLServer> tampering_upstream() {
    common::IssueOptions server;
    server.role = common::Role::kOrchestrator;
    server.common_name = "impostor";
    server.ip_addresses = {"127.0.0.1"};
    const auto cert = pki_->issue_custom(server, "impostor");
    auto https = std::make_unique<httplib::SSLServer>(cert.cert.c_str(), cert.key.c_str());
    https->Get(R"(/api/v1/artifacts/([0-9a-f]+)/bundle)",
               [this](const httplib::Request& req, httplib::Response& res) {
                 const fs::path stored = dir_.path() / "data" / "artifacts" / std::string(req.matches[1]);
                 v1::SignedManifest manifest;
                 manifest.ParseFromString(read_file(stored / "manifest.pb"));
                 std::string image = read_file(stored / "image");
                 if (!image.empty()) image[image.size() / 2] ^= 0x01;
                 res.set_content(common::bundle_header(manifest) + image, "application/octet-stream");
                 ++tampered_answers_;
               });
    return https;
  }

  std::atomic<int> tampered_answers_{0};
  std::unique_ptr<TcpRelay> bridge_link_;
  std::unique_ptr<TcpRelay> api_link_;
  std::unique_ptr<MosquittoBroker> edge_;
  std::string artifact_;
};

TEST_F(EdgeBrokerTest, AnEdgeFetchesTheImageOnceAndServesEveryDeviceBehindIt) {
  start_edge(true);
  const std::uint64_t core = roll_out_behind_the_edge();
  // The edge holds the artifact, verified, as the orchestrator's store does.
  EXPECT_TRUE(fs::exists(dir_.path() / "edge-cache" / artifact_ / "image"));
  EXPECT_NE(edge_->log().find("cached artifact " + artifact_), std::string::npos) << edge_->log();
  std::printf(
      "[ figure ] core-link bytes with edge caching, %d devices x %zu-byte image: %llu (%.2f images; "
      "bridge %llu, HTTPS fetch %llu)\n",
      kDevices, kImageBytes, static_cast<unsigned long long>(core), static_cast<double>(core) / kImageBytes,
      static_cast<unsigned long long>(bridge_link_->bytes()),
      static_cast<unsigned long long>(api_link_->bytes()));
  // About one image: the fetch, plus whatever the first requests drew through the bridge while it
  // ran, plus reports and commands.
  EXPECT_LT(core, kImageBytes * 2) << "the edge did not serve the devices from its cache";
  EXPECT_GT(api_link_->bytes(), kImageBytes);

  // Identity and ACLs hold at the edge as at the core: a device cannot read another device's
  // commands nor publish its reports there.
  TestMqttClient intruder(edge_->uri(), "edge-agent-0",
                          TestMqttClient::Identity{pki_->ca_cert(), agent_files_.at("edge-agent-0")});
  kill_agent("edge-agent-0", SIGTERM);
  ASSERT_TRUE(intruder.connect().ok());
  auto sub = intruder.subscribe("fota/v1/dev/+/cmd", 1);
  ASSERT_TRUE(sub.ok());
  EXPECT_GE(*sub, 0x80);
  auto pub = intruder.publish("fota/v1/dev/edge-agent-1/progress", "x", 1);
  EXPECT_TRUE(!pub.ok() || *pub >= 0x80);
  // A device certificate cannot pose as the edge's bridge at the core.
  TestMqttClient fake_bridge(broker_->uri(), "edge-1",
                             TestMqttClient::Identity{pki_->ca_cert(), agent_files_.at("edge-agent-1")});
  EXPECT_FALSE(fake_bridge.connect().ok());
}

TEST_F(EdgeBrokerTest, WithoutACacheEveryDevicesImageCrossesTheCoreLink) {
  start_edge(false);
  const std::uint64_t core = roll_out_behind_the_edge();
  std::printf(
      "[ figure ] core-link bytes without edge caching, %d devices x %zu-byte image: %llu (%.2f images)\n",
      kDevices, kImageBytes, static_cast<unsigned long long>(core), static_cast<double>(core) / kImageBytes);
  EXPECT_GT(core, kImageBytes * (kDevices - 1));
  EXPECT_EQ(api_link_->bytes(), 0u);
}

// An attacker who can answer the edge's fetch (a compromised host on the path, with a certificate the
// fleet CA signed) hands it a bundle with one image byte changed: the edge refuses to cache it, and
// the devices get their image through the bridge, verified, as if there were no cache.
TEST_F(EdgeBrokerTest, ATamperedBundleIsNeverCachedAndTheDevicesStillUpdate) {
  auto impostor = tampering_upstream();
  const int port = impostor->bind_to_any_port("127.0.0.1");
  ASSERT_GT(port, 0);
  std::thread serving([&] { impostor->listen_after_bind(); });
  start_edge(true, port);
  const std::uint64_t core = roll_out_behind_the_edge();
  impostor->stop();
  serving.join();
  EXPECT_GE(tampered_answers_.load(), 1);
  EXPECT_FALSE(fs::exists(dir_.path() / "edge-cache" / artifact_)) << "a tampered artifact entered the cache";
  EXPECT_NE(edge_->log().find("caching artifact " + artifact_ + " failed"), std::string::npos)
      << edge_->log();
  EXPECT_NE(edge_->log().find("the bundle fetched does not verify"), std::string::npos) << edge_->log();
  EXPECT_GT(core, kImageBytes * (kDevices - 1));
}

class PostgresAgentsTest : public RealAgentsTest {
 protected:
  void SetUp() override {
    RealAgentsTest::SetUp();
    store_ = PostgresCluster::shared().create_database();
    std::ofstream(dir_.path() / "orchestrator.yaml", std::ios::app) << "store: " << store_ << "\n";
  }
  std::string store_;
};

TEST_F(PostgresAgentsTest, ARolloutOnPostgresqlSurvivesKillNineAndARestartFindsItsState) {
  start_orchestrator();
  constexpr int kAgents = 4;
  for (int i = 0; i < kAgents; ++i) start_agent("agent-" + std::to_string(i), AgentOptions{transport_of(i)});
  wait_registered(kAgents);
  const std::string artifact = upload("2.0", 512 * 1024);
  const std::string id = create_rollout("name: on-postgres\nartifact: " + artifact +
                                        "\ntarget: {tags: [fleet]}\nmax_bytes_per_second: 262144\n"
                                        "waves:\n  - size: 2\n  - size: 100%\n");
  ASSERT_FALSE(id.empty());
  fotactl_ok("rollout start " + id);
  wait_rollout(id, [](const json& j) {
    for (const auto& m : j["members"]) {
      if (m.value("bytes_done", 0) > 0) return true;
    }
    return false;
  });
  stop_orchestrator(SIGKILL);
  std::this_thread::sleep_for(1s);
  start_orchestrator();
  const json done = wait_rollout(id, [](const json& j) { return j.value("state", "") == "completed"; });
  EXPECT_EQ(done["counts"].value("succeeded", 0), kAgents) << done.dump(2);
  for (int i = 0; i < kAgents; ++i) EXPECT_EQ(observer_->installs("agent-" + std::to_string(i)), 1);
  const std::string audit_before = audit_text();

  // A clean restart: the rollout, its members, the fleet and the audit chain come from the database.
  stop_orchestrator(SIGTERM);
  start_orchestrator();
  const json again = status(id);
  EXPECT_EQ(again.value("state", ""), "completed") << again.dump(2);
  EXPECT_EQ(again["counts"].value("succeeded", 0), kAgents) << again.dump(2);
  for (int i = 0; i < kAgents; ++i) {
    const json* m = member(again, "agent-" + std::to_string(i));
    ASSERT_NE(m, nullptr);
    EXPECT_EQ(m->value("state", ""), "succeeded") << m->dump();
  }
  const json devices = fotactl_json("device list");
  ASSERT_TRUE(devices.is_array());
  EXPECT_EQ(devices.size(), static_cast<std::size_t>(kAgents));
  for (const auto& d : devices) EXPECT_EQ(d.value("version", ""), "2.0") << d.dump();
  // Every audit entry written before the restart is still there.
  const std::string audit_after = audit_text();
  std::istringstream before(audit_before);
  for (std::string line; std::getline(before, line);) {
    EXPECT_NE(audit_after.find(line), std::string::npos) << "lost audit line: " << line;
  }
  fotactl_ok("audit verify");
  // The state was never in a SQLite file.
  EXPECT_FALSE(fs::exists(dir_.path() / "data" / "state.db"));
}

// A store the orchestrator cannot use stops its start with what was wrong and what to do; the
// SQLite file a `store: sqlite:PATH` names is the one used.
TEST_F(PostgresAgentsTest, AStoreThatCannotBeUsedStopsTheStartSayingWhy) {
  const std::string start =
      "'" FOTA_ORCHESTRATOR_PATH "' --config '" + (dir_.path() / "orchestrator.yaml").string() + "' --store ";
  const CommandRun unknown = run_command(start + "'mysql://root:pw@127.0.0.1/fota' 2>&1");
  EXPECT_NE(unknown.exit_code, 0);
  EXPECT_NE(unknown.output.find("unknown kind of store; write sqlite:"), std::string::npos) << unknown.output;
  const CommandRun unreachable = run_command(
      start + "'postgresql://fota@127.0.0.1:" + std::to_string(free_loopback_port()) + "/fota' 2>&1");
  EXPECT_NE(unreachable.exit_code, 0);
  EXPECT_NE(unreachable.output.find("cannot connect to PostgreSQL fota@127.0.0.1:"), std::string::npos)
      << unreachable.output;
  // sqlite:PATH: the orchestrator runs on that file.
  const fs::path file = dir_.path() / "elsewhere" / "fleet.db";
  fs::create_directories(file.parent_path());
  std::string failure;
  orchestrator_ = spawn_until_ready(
      {FOTA_ORCHESTRATOR_PATH, "--config", (dir_.path() / "orchestrator.yaml").string(), "--store",
       "sqlite:" + file.string()},
      dir_.path() / "orchestrator.log", [&] { return fotactl("rollout status").exit_code == 0; }, failure);
  ASSERT_GT(orchestrator_, 0) << failure;
  EXPECT_TRUE(fs::exists(file));
  EXPECT_FALSE(fs::exists(dir_.path() / "data" / "state.db"));
}

// A webhook receiver as its user would write one (docs/ORCHESTRATOR.md, "Webhooks"): a
// cpp-httplib server on a loopback port that checks every delivery's signature with the shared
// secret (verify_webhook_signature) and answers 500 to the first `fail_first` deliveries.
class WebhookReceiver {
 public:
  struct Received {
    std::string id, event, timestamp, signature, body;
    bool verified = false;
    int answered = 0;
  };

  // With `tls` (a certificate and key for 127.0.0.1): HTTPS.
  explicit WebhookReceiver(std::string secret, std::optional<common::IssuedFiles> tls = std::nullopt)
      : secret_(std::move(secret)), tls_(std::move(tls)) {}
  ~WebhookReceiver() { stop(); }

  void start(int port = 0) {
    if (tls_) {
      server_ = std::make_unique<httplib::SSLServer>(tls_->cert.c_str(), tls_->key.c_str());
    } else {
      server_ = std::make_unique<httplib::Server>();
    }
    server_->Post("/hook", [this](const httplib::Request& req, httplib::Response& res) {
      Received r{req.get_header_value("X-Fota-Delivery"), req.get_header_value("X-Fota-Event"),
                 req.get_header_value("X-Fota-Timestamp"), req.get_header_value("X-Fota-Signature"),
                 req.body};
      r.verified = orchestrator::verify_webhook_signature(secret_, r.timestamp, r.body, r.signature);
      std::lock_guard lock(mutex_);
      r.answered = !r.verified ? 401 : fail_first_ > 0 ? 500 : 200;
      if (r.answered == 500) --fail_first_;
      res.status = r.answered;
      received_.push_back(std::move(r));
    });
    port_ = port == 0 ? server_->bind_to_any_port("127.0.0.1")
                      : (server_->bind_to_port("127.0.0.1", port) ? port : -1);
    ASSERT_GT(port_, 0) << "cannot listen on 127.0.0.1:" << port;
    thread_ = std::thread([this] { server_->listen_after_bind(); });
    for (int i = 0; i < 200 && !server_->is_running(); ++i) std::this_thread::sleep_for(10ms);
  }
  void stop() {
    if (!server_) return;
    server_->stop();
    if (thread_.joinable()) thread_.join();
    server_.reset();
  }
  int port() const { return port_; }
  std::string url() const {
    return std::string(tls_ ? "https" : "http") + "://127.0.0.1:" + std::to_string(port_) + "/hook";
  }
  void fail_first(int n) {
    std::lock_guard lock(mutex_);
    fail_first_ = n;
  }
  std::vector<Received> received() const {
    std::lock_guard lock(mutex_);
    return received_;
  }
  // What the receiver accepted, once per delivery id (the dedupe at-least-once asks of it).
  std::map<std::string, json> accepted() const {
    std::map<std::string, json> out;
    for (const Received& r : received()) {
      if (r.answered == 200) out.emplace(r.id, json::parse(r.body, nullptr, false));
    }
    return out;
  }
  // The accepted events as "event rollout [device]", sorted.
  std::vector<std::string> accepted_events(const std::string& rollout) const {
    std::vector<std::string> out;
    for (const auto& [id, body] : accepted()) {
      if (body["rollout"].value("id", "") != rollout) continue;
      out.push_back(body.value("event", "") +
                    (body.contains("device") ? " " + body["device"].value("id", "") : std::string()));
    }
    std::sort(out.begin(), out.end());
    return out;
  }

 private:
  std::string secret_;
  std::optional<common::IssuedFiles> tls_;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  int port_ = -1;
  mutable std::mutex mutex_;
  int fail_first_ = 0;
  std::vector<Received> received_;
};

constexpr const char* kWebhookSecret = "receiver-shares-this-secret-0123";

class WebhookAgentsTest : public RealAgentsTest {
 protected:
  void SetUp() override {
    RealAgentsTest::SetUp();
    // Quick retries so that the test does not wait minutes; the defaults are seconds to minutes.
    std::ofstream(dir_.path() / "orchestrator.yaml", std::ios::app)
        << "webhooks: {retry_initial: 200ms, retry_max: 1s, max_attempts: " << max_attempts()
        << ", timeout: 2s}\n";
    std::ofstream(dir_.path() / "hook.secret") << kWebhookSecret << "\n";
  }
  virtual int max_attempts() const { return 1000; }

  std::string add_webhook(const std::string& url) {
    const json w =
        fotactl_json("webhook add " + url +
                     " -e rollout.started -e rollout.breached -e rollout.completed -e rollout.aborted "
                     "-e rollout.rolled_back -e device.failed --secret-file " +
                     (dir_.path() / "hook.secret").string());
    EXPECT_EQ(w.value("url", ""), url) << w.dump();
    EXPECT_FALSE(w.contains("secret")) << w.dump();
    return w.value("id", "");
  }

  void wait_accepted(const WebhookReceiver& receiver, const std::string& rollout,
                     const std::vector<std::string>& expected, std::chrono::seconds timeout = 60s) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      if (receiver.accepted_events(rollout) == expected) return;
      std::this_thread::sleep_for(100ms);
    }
    std::string got;
    for (const auto& e : receiver.accepted_events(rollout)) got += e + "; ";
    ADD_FAILURE() << "rollout " << rollout << ": the receiver accepted " << got;
  }

  // Two agents update, the third (its health check fails) fails: the receiver is told that the
  // rollout started, that agent-2 failed and why, and that the rollout completed, each delivery
  // signed. Then, with the receiver down, a second rollout runs to its end, the orchestrator is
  // killed (kill -9) and started again, the receiver comes back on its port, and it is told
  // everything of the second rollout all the same.
  void rollout_events_survive_a_restart_with_the_receiver_down() {
    WebhookReceiver receiver(kWebhookSecret);
    receiver.start();
    receiver.fail_first(1);  // the first delivery is answered 500: it comes again with its id
    start_orchestrator();
    const std::string hook = add_webhook(receiver.url());
    ASSERT_FALSE(hook.empty());
    for (int i = 0; i < 3; ++i)
      start_agent("agent-" + std::to_string(i), AgentOptions{transport_of(i), i < 2});
    wait_registered(3);
    const std::string spec_tail =
        "\ntarget: {tags: [fleet]}\nretries: {max: 0}\nwaves:\n  - {size: 100%, failure_threshold: 0.5, "
        "success_ratio: 0.5}\n";
    const std::string first =
        create_rollout("name: hooked\nartifact: " + upload("2.0", 64 * 1024) + spec_tail);
    ASSERT_FALSE(first.empty());
    fotactl_ok("rollout start " + first);
    wait_rollout(first, [](const json& j) { return j.value("state", "") == "completed"; });
    wait_accepted(receiver, first, {"device.failed agent-2", "rollout.completed", "rollout.started"});

    const auto got = receiver.received();
    ASSERT_GE(got.size(), 4u);
    for (const auto& r : got) {
      EXPECT_TRUE(r.verified) << r.id << " " << r.signature;
      EXPECT_EQ(json::parse(r.body).value("delivery_id", ""), r.id);
    }
    // The delivery answered 500 came again, with the same id, and was accepted then.
    EXPECT_EQ(got[0].answered, 500);
    const auto again =
        std::find_if(got.begin() + 1, got.end(), [&](const auto& r) { return r.id == got[0].id; });
    ASSERT_NE(again, got.end());
    EXPECT_EQ(again->answered, 200);
    EXPECT_EQ(again->body, got[0].body);
    // A tampered body no longer matches its signature: the receiver's check refuses it.
    std::string tampered = again->body;
    tampered[tampered.find("rollout")] = 'R';
    EXPECT_FALSE(
        orchestrator::verify_webhook_signature(kWebhookSecret, again->timestamp, tampered, again->signature));
    EXPECT_FALSE(orchestrator::verify_webhook_signature("another-secret-0123456789", again->timestamp,
                                                        again->body, again->signature));
    for (const auto& [id, body] : receiver.accepted()) {
      if (body.value("event", "") != "device.failed") continue;
      EXPECT_NE(body["device"].value("error", ""), "") << body.dump();
      EXPECT_EQ(body["rollout"].value("id", ""), first);
    }
    const json deliveries = fotactl_json("webhook deliveries " + hook + " --state delivered");
    ASSERT_TRUE(deliveries.is_array());
    EXPECT_EQ(deliveries.size(), 3u) << deliveries.dump(2);
    int retried = 0;
    for (const auto& d : deliveries) retried += d.value("attempts", 0) == 2 ? 1 : 0;
    EXPECT_EQ(retried, 1) << deliveries.dump(2);

    // The receiver goes away; a second rollout runs to its end meanwhile.
    const int port = receiver.port();
    receiver.stop();
    const std::string second =
        create_rollout("name: hooked-again\nartifact: " + upload("3.0", 64 * 1024) + spec_tail);
    ASSERT_FALSE(second.empty());
    fotactl_ok("rollout start " + second);
    wait_rollout(second, [](const json& j) { return j.value("state", "") == "completed"; });
    stop_orchestrator(SIGKILL);
    receiver.start(port);
    start_orchestrator();
    wait_accepted(receiver, second, {"device.failed agent-2", "rollout.completed", "rollout.started"});
    EXPECT_EQ(receiver.accepted_events(first),
              (std::vector<std::string>{"device.failed agent-2", "rollout.completed", "rollout.started"}));
    for (const auto& r : receiver.received()) EXPECT_TRUE(r.verified) << r.id;
    const std::string audit = audit_text();
    EXPECT_NE(audit.find("webhook.create"), std::string::npos) << audit;
  }
};

TEST_F(WebhookAgentsTest, RolloutEventsReachASignedReceiverAndSurviveARestartWithTheReceiverDown) {
  rollout_events_survive_a_restart_with_the_receiver_down();
}

class PostgresWebhookAgentsTest : public WebhookAgentsTest {
 protected:
  void SetUp() override {
    WebhookAgentsTest::SetUp();
    std::ofstream(dir_.path() / "orchestrator.yaml", std::ios::app)
        << "store: " << PostgresCluster::shared().create_database() << "\n";
  }
};

TEST_F(PostgresWebhookAgentsTest, RolloutEventsReachASignedReceiverAndSurviveARestartWithTheReceiverDown) {
  rollout_events_survive_a_restart_with_the_receiver_down();
}

// A receiver that never answers: the delivery is tried max_attempts times and marked failed,
// visible through the API, fotactl and /metrics, while the rollout goes on regardless. Bad
// subscriptions are refused with what was wrong; the secret is never shown; creation and
// deletion are audited.
class FailingWebhookAgentsTest : public WebhookAgentsTest {
 protected:
  int max_attempts() const override { return 3; }
};

TEST_F(FailingWebhookAgentsTest, ADeadReceiverIsTriedUpToTheLimitThenMarkedFailedAndBadInputIsRefused) {
  start_orchestrator();
  // Bad input, through fotactl and the API.
  const std::string secret_file = (dir_.path() / "hook.secret").string();
  CommandRun r = fotactl("webhook add ftp://127.0.0.1/x -e rollout.started --secret-file " + secret_file);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("http:// or https:// only"), std::string::npos) << r.output;
  r = fotactl("webhook add http://127.0.0.1:9/x -e rollout.exploded --secret-file " + secret_file);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("'rollout.exploded' is not an event"), std::string::npos) << r.output;
  r = fotactl("webhook add http://127.0.0.1:9/x -e rollout.started");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("needs a secret"), std::string::npos) << r.output;
  r = fotactl("webhook add http://127.0.0.1:9/x -e rollout.started --secret short");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("16 to 512 bytes"), std::string::npos) << r.output;
  r = fotactl("webhook add http://127.0.0.1:9/x -e rollout.started --ca-file /etc/hostname --secret-file " +
              secret_file);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("ca_file is for https://"), std::string::npos) << r.output;
  httplib::Client http("127.0.0.1", http_port_);
  http.set_bearer_token_auth(kToken);
  auto res =
      http.Post("/api/v1/webhooks", R"({"url": "http://127.0.0.1:9/x", "events": ["rollout.started"]})",
                "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 400);
  EXPECT_NE(res->body.find("secret: missing"), std::string::npos) << res->body;
  res = http.Post("/api/v1/webhooks", R"({"url": 7})", "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 400);
  EXPECT_NE(res->body.find("url: wrong type"), std::string::npos) << res->body;
  res = http.Delete("/api/v1/webhooks/wh-0000000000");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 404);
  EXPECT_TRUE(fotactl_json("webhook list").empty());

  // A port nothing listens on: connection refused, every time.
  WebhookReceiver probe(kWebhookSecret);
  probe.start();
  const int dead_port = probe.port();
  probe.stop();
  const std::string dead = add_webhook("http://127.0.0.1:" + std::to_string(dead_port) + "/hook");
  // HTTPS receivers with the broker's certificate (127.0.0.1, of the test CA): verified against
  // the CA file given, and refused against the system's CAs, which do not know the test CA.
  WebhookReceiver trusted(kWebhookSecret, pki_->broker()), untrusted(kWebhookSecret, pki_->broker());
  trusted.start();
  untrusted.start();
  const json https_hook =
      fotactl_json("webhook add " + trusted.url() + " -e rollout.started -e rollout.completed " +
                   "--secret-file " + secret_file + " --ca-file " + pki_->ca_cert().string());
  EXPECT_EQ(https_hook.value("ca_file", ""), pki_->ca_cert().string()) << https_hook.dump();
  const std::string unverified = add_webhook(untrusted.url());
  const json list = fotactl_json("webhook list");
  ASSERT_EQ(list.size(), 3u);
  EXPECT_FALSE(list[0].contains("secret")) << list.dump();
  EXPECT_EQ(fotactl_ok("webhook list").output.find(kWebhookSecret), std::string::npos);

  start_agent("agent-0");
  wait_registered(1);
  const std::string id =
      create_rollout("name: unheard\nartifact: " + upload("2.0", 32 * 1024) + "\ntarget: {tags: [fleet]}\n");
  fotactl_ok("rollout start " + id);
  wait_rollout(id, [](const json& j) { return j.value("state", "") == "completed"; });
  json failed;
  for (int i = 0; i < 300; ++i) {
    failed = fotactl_json("webhook deliveries " + dead + " --state failed");
    if (failed.is_array() && failed.size() == 2) break;
    std::this_thread::sleep_for(100ms);
  }
  ASSERT_EQ(failed.size(), 2u) << failed.dump(2);  // rollout.started and rollout.completed
  for (const auto& d : failed) {
    EXPECT_EQ(d.value("attempts", 0), 3) << d.dump();
    EXPECT_EQ(d.value("last_status", -1), 0) << d.dump();
    EXPECT_NE(d.value("last_error", "").find("POST http://127.0.0.1:"), std::string::npos) << d.dump();
  }
  json refused;
  for (int i = 0; i < 300; ++i) {
    refused = fotactl_json("webhook deliveries " + unverified + " --state failed");
    if (refused.is_array() && refused.size() == 2) break;
    std::this_thread::sleep_for(100ms);
  }
  ASSERT_EQ(refused.size(), 2u) << refused.dump(2);
  EXPECT_NE(refused[0].value("last_error", "").find("certificate"), std::string::npos) << refused.dump(2);
  EXPECT_TRUE(untrusted.received().empty());
  for (int i = 0; i < 300 && trusted.accepted_events(id).size() < 2; ++i) std::this_thread::sleep_for(100ms);
  EXPECT_EQ(trusted.accepted_events(id), (std::vector<std::string>{"rollout.completed", "rollout.started"}));
  for (const auto& got : trusted.received()) EXPECT_TRUE(got.verified);
  const auto metrics = http.Get("/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_NE(metrics->body.find("fota_webhook_deliveries{state=\"failed\"} 4"), std::string::npos)
      << metrics->body;
  EXPECT_NE(metrics->body.find("fota_webhook_deliveries{state=\"delivered\"} 2"), std::string::npos)
      << metrics->body;
  EXPECT_NE(metrics->body.find("fota_webhook_attempts_failed_total 12"), std::string::npos) << metrics->body;

  fotactl_ok("webhook rm " + dead);
  EXPECT_EQ(fotactl_json("webhook list").size(), 2u);
  r = fotactl("webhook deliveries " + dead);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("does not exist"), std::string::npos) << r.output;
  const std::string audit = audit_text();
  EXPECT_NE(audit.find("webhook.create"), std::string::npos) << audit;
  EXPECT_NE(audit.find("webhook.delete"), std::string::npos) << audit;
  fotactl_ok("audit verify");
}

}  // namespace
}  // namespace fota::testing

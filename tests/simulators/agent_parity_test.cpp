// SPDX-License-Identifier: Apache-2.0
// The simulator must behave like the real agent: one fota-sim virtual device and one real
// `fota-device` (each transport) go through the same update with the same failure (the new image
// fails its health check) against the same broker and orchestrator, and a third-party observer
// subscribed to their topics sees the same messages in the same order. Issue 14: fota-sim sent
// an update's outcome before its inventory after the revert, the real agent after it, and only
// the real agent exposed the orchestrator bug. Issue 16: fota-sim published chunk requests at
// QoS 0, the agent at 1; the observer also compares the QoS each device publishes with.
#include <signal.h>
#include <sys/wait.h>

#include <chrono>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>

#include "api_client.hpp"
#include "fota/common/artifact.hpp"
#include "fota/common/codec.hpp"
#include "fota/common/crypto.hpp"
#include "fota/common/topics.hpp"
#include "fota/sim/orchestrator_process.hpp"
#include "fota/sim/runner.hpp"
#include "fota/sim/scenario.hpp"
#include "fota/testing/broker.hpp"
#include "fota/testing/signed_bundle.hpp"

namespace fota::sim {
namespace {

namespace fs = std::filesystem;
using common::Channel;
using nlohmann::json;
using namespace std::chrono_literals;

std::string phase_token(v1::Phase phase) {
  std::string name = v1::Phase_Name(phase);
  return name.substr(std::string("PHASE_").size());
}

// What a third party sees of each device, as a sequence of tokens that leave out what differs
// by design between two devices (ids, times, byte counts, how many chunks one request names):
// presence, inventory (working on something or not, last outcome), progress phases (a phase
// reported again is one step, also around an inventory: how often a download reports depends on
// its speed) and the commands it gets. Chunk traffic and log batches are left out (their count
// depends on timing).
class TopicObserver {
 public:
  TopicObserver(testing::TestPki& pki, const std::string& uri)
      : client_(uri, "parity-observer",
                testing::TestMqttClient::Identity{pki.ca_cert(),
                                                  pki.issue(common::Role::kObserver, "parity-observer")}) {
    auto st = client_.connect();
    if (!st.ok()) throw std::runtime_error("observer: " + st.error().message);
    auto sub = client_.subscribe("fota/v1/dev/#", 1);
    if (!sub.ok() || *sub > 2) throw std::runtime_error("observer: subscribe refused");
    thread_ = std::thread([this] {
      while (!stop_) {
        if (auto msg = client_.wait_message(100ms)) record(*msg);
      }
    });
  }
  ~TopicObserver() {
    stop_ = true;
    thread_.join();
  }

  std::vector<std::string> sequence(const std::string& device) const {
    std::lock_guard lock(mutex_);
    auto it = sequences_.find(device);
    return it == sequences_.end() ? std::vector<std::string>{} : it->second;
  }

  // The QoS of every message the device published (its last will included), per channel:
  // "chunk/req qos 1", ... The observer subscribes at QoS 1, which is what any device uses.
  std::set<std::string> publish_qos(const std::string& device) const {
    std::lock_guard lock(mutex_);
    auto it = qos_.find(device);
    return it == qos_.end() ? std::set<std::string>{} : it->second;
  }

 private:
  void record(const testing::TestMessage& msg) {
    auto parsed = topics_.parse(msg.topic);
    if (!parsed.ok()) return;
    if (common::device_publishes(parsed->channel)) {
      std::lock_guard lock(mutex_);
      qos_[parsed->device.str()].insert(std::string(common::channel_suffix(parsed->channel)) + " qos " +
                                        std::to_string(msg.qos));
    }
    std::string token;
    switch (parsed->channel) {
      case Channel::kPresence: {
        auto p = common::decode<v1::Presence>(msg.payload, common::kMaxPresenceBytes);
        if (!p.ok()) return;
        token = p->online() ? "presence online" : "presence offline";
        break;
      }
      case Channel::kInventory: {
        auto inv = common::decode<v1::Inventory>(msg.payload, common::kMaxInventoryBytes);
        if (!inv.ok()) return;
        token = std::string("inventory ") + (inv->pending_deployment_id().empty() ? "idle" : "working") +
                (inv->has_last_outcome() ? " last=" + phase_token(inv->last_outcome().phase()) : "");
        break;
      }
      case Channel::kProgress: {
        auto p = common::decode<v1::Progress>(msg.payload, common::kMaxProgressBytes);
        if (!p.ok()) return;
        token = "progress " + phase_token(p->phase());
        if (p->error() != v1::ERROR_NONE) token += " " + v1::ErrorCode_Name(p->error());
        break;
      }
      case Channel::kCommand: {
        auto c = common::decode<v1::Command>(msg.payload, common::kMaxCommandBytes);
        if (!c.ok()) return;
        token = c->has_install() ? "command install" : "command other";
        break;
      }
      default:
        return;
    }
    std::lock_guard lock(mutex_);
    auto& seq = sequences_[parsed->device.str()];
    if (parsed->channel == Channel::kProgress) {
      // A phase reported again (download progress, possibly around the inventory) is one step.
      std::string& last = last_progress_[parsed->device.str()];
      if (last == token) return;
      last = token;
    }
    if (seq.empty() || seq.back() != token) seq.push_back(token);
  }

  testing::TestMqttClient client_;
  common::TopicScheme topics_;
  std::atomic<bool> stop_{false};
  mutable std::mutex mutex_;
  std::map<std::string, std::vector<std::string>> sequences_;
  std::map<std::string, std::string> last_progress_;
  std::map<std::string, std::set<std::string>> qos_;
  std::thread thread_;
};

std::string joined(const std::vector<std::string>& seq) {
  std::ostringstream out;
  for (const auto& s : seq) out << "  " << s << "\n";
  return out.str();
}

class AgentParity : public ::testing::Test {
 protected:
  AgentParity() : pki_(dir_.path() / "pki"), broker_(pki_, dir_.path() / "broker") {}

  void SetUp() override {
    fs::create_directories(dir_.path() / "keys");
    auto key = common::Ed25519PrivateKey::generate();
    ASSERT_TRUE(key.ok());
    ASSERT_TRUE(
        common::save_key_pair(*key, dir_.path() / "release.key", dir_.path() / "keys/release.pub").ok());
    OrchestratorSettings settings;
    settings.binary = FOTA_ORCHESTRATOR_BIN;
    settings.dir = dir_.path() / "orchestrator";
    settings.artifacts_dir = dir_.path() / "artifacts";
    settings.trusted_key = dir_.path() / "keys/release.pub";
    settings.command_key = pki_.command_key().private_key;
    settings.broker_port = broker_.port();
    auto orchestrator = OrchestratorProcess::launch(settings, pki_.ca());
    ASSERT_TRUE(orchestrator.ok()) << orchestrator.error().message;
    orchestrator_ = std::move(*orchestrator);
    observer_ = std::make_unique<TopicObserver>(pki_, broker_.uri());
  }

  cli::ApiClient api() const {
    return cli::ApiClient(cli::ApiConnection::with_token(orchestrator_->api_url(), orchestrator_->token()));
  }

  // One virtual device; the new image fails its health check.
  std::vector<std::string> virtual_device_sequence() {
    const fs::path file = dir_.path() / "parity.yaml";
    std::ofstream(file) << "name: parity\nseed: 1\nduration: 60s\n"
                           "link_profiles:\n  lan: {latency: 1ms, bandwidth: 8MiB/s}\n"
                           "fleet:\n  id_prefix: sim\n  groups:\n"
                           "    - {count: 1, hardware: gw-v2, version: 1.0.0, link: lan}\n"
                           "artifact:\n  version: 2.0-broken\n  size: 96KiB\n  chunk_size: 16KiB\n"
                           "  fails_health_check: true\n"
                           "rollout:\n  driver: orchestrator\n  retries: {max: 0}\n"
                           "  waves: [{size: 100%, success_ratio: 0, failure_threshold: 0}]\n"
                           "expect:\n  outcome: halted\n";
    auto scenario = load_scenario(file);
    EXPECT_TRUE(scenario.ok()) << scenario.error().message;
    if (!scenario.ok()) return {};
    RunEnvironment env;
    env.broker_port = broker_.port();
    env.ca = &pki_.ca();
    env.work_dir = dir_.path() / "sim";
    env.orchestrator_url = orchestrator_->api_url();
    env.orchestrator_token = orchestrator_->token();
    env.signing_key = dir_.path() / "release.key";
    env.command_keys = pki_.command_key().public_key;
    env.artifacts_dir = dir_.path() / "artifacts";
    auto report = run_scenario(*scenario, env);
    EXPECT_TRUE(report.ok()) << report.error().message;
    if (report.ok()) {
      EXPECT_EQ(report->outcome, "halted");
    }
    std::this_thread::sleep_for(500ms);  // the offline presence of its exit
    return observer_->sequence("sim-00000");
  }

  // One fota-device agent on `transport` whose health check fails, updated through the API.
  std::vector<std::string> agent_sequence(const std::string& id, const std::string& transport) {
    const auto home = dir_.path() / id;
    fs::create_directories(home);
    const auto files = pki_.issue(common::Role::kDevice, id);
    std::ofstream(home / "device.yaml")
        << "device_id: " << id << "\nhardware_type: gw-v2\nbroker: " << broker_.uri()
        << "\nca: " << pki_.ca_cert().string() << "\ncert: " << files.cert.string()
        << "\nkey: " << files.key.string() << "\ntrust: " << (dir_.path() / "keys").string()
        << "\ncommand_keys: " << pki_.command_key().public_key.string()
        << "\nstate_dir: " << (home / "state").string()
        << "\nfactory_version: 1.0.0\ntransport: " << transport << "\nhealth_check: /bin/false\n";
    const pid_t agent =
        testing::spawn({FOTA_DEVICE_BIN, "--config", (home / "device.yaml").string()}, home / "device.log");
    std::string artifact;
    for (int i = 0; i < 200 && artifact.empty(); ++i) {
      auto devices = api().get("/api/v1/devices");
      if (devices.ok()) {
        for (const auto& d : *devices) {
          if (d.value("id", "") == id && d.value("online", false)) artifact = "ready";
        }
      }
      if (artifact.empty()) std::this_thread::sleep_for(50ms);
    }
    EXPECT_EQ(artifact, "ready") << id << " did not register";
    artifact = upload(id);
    auto created = api().post("/api/v1/rollouts", "name: " + id + "\nartifact: " + artifact +
                                                      "\ntarget: {devices: [" + id +
                                                      "]}\nretries: {max: 0}\n"
                                                      "waves:\n  - {size: 100%, failure_threshold: 0}\n");
    EXPECT_TRUE(created.ok()) << created.error().message;
    const std::string rollout = created.ok() ? created->value("id", "") : "";
    EXPECT_TRUE(api().post("/api/v1/rollouts/" + rollout + "/start", "").ok());
    std::string state;
    for (int i = 0; i < 600 && state != "paused"; ++i) {
      std::this_thread::sleep_for(100ms);
      auto r = api().get("/api/v1/rollouts/" + rollout);
      if (r.ok()) state = r->value("state", "");
    }
    EXPECT_EQ(state, "paused") << "the breach did not fire";
    std::this_thread::sleep_for(1s);  // anything the agent or the orchestrator still sends
    kill(agent, SIGTERM);
    waitpid(agent, nullptr, 0);
    std::this_thread::sleep_for(500ms);
    return observer_->sequence(id);
  }

  std::string upload(const std::string& name) {
    testing::BundleSpec spec{name, "2.0-broken", 96 * 1024};
    spec.security_counter = 1;
    const auto bundle = testing::make_signed_bundle(dir_.path(), dir_.path() / "release.key", spec);
    auto uploaded = api().post_file("/api/v1/artifacts", bundle, {});
    EXPECT_TRUE(uploaded.ok()) << uploaded.error().message;
    return uploaded.ok() ? uploaded->value("id", uploaded->value("artifact_id", "")) : "";
  }

  testing::TempDir dir_;
  testing::TestPki pki_;
  testing::MosquittoBroker broker_;
  std::unique_ptr<OrchestratorProcess> orchestrator_;
  std::unique_ptr<TopicObserver> observer_;
};

TEST_F(AgentParity, AVirtualDeviceSendsWhatTheRealAgentSendsForAFailedHealthCheck) {
  const auto simulated = virtual_device_sequence();
  const auto paho = agent_sequence("agent-paho", "paho");
  const auto mosquitto = agent_sequence("agent-mosquitto", "mosquitto");
  // The story both tell: the install arrives, the download runs to the reboot, the trial boot
  // fails its health check and reverts before connecting, and the reconnected device reports the
  // outcome in its inventory and again as a report; it goes offline at the end.
  const std::vector<std::string> expected = {"presence online",
                                             "inventory idle",
                                             "command install",
                                             "progress DOWNLOADING",
                                             "inventory working",
                                             "progress VERIFYING",
                                             "progress INSTALLING",
                                             "progress REBOOTING",
                                             "presence offline",
                                             "presence online",
                                             "inventory idle last=ROLLED_BACK",
                                             "progress ROLLED_BACK ERROR_HEALTH_CHECK_FAILED",
                                             "presence offline"};
  EXPECT_EQ(paho, expected) << "paho agent:\n" << joined(paho);
  EXPECT_EQ(mosquitto, expected) << "mosquitto agent:\n" << joined(mosquitto);
  EXPECT_EQ(simulated, paho) << "virtual device:\n" << joined(simulated) << "real agent:\n" << joined(paho);

  // The same QoS on every channel. Log batches depend on timing (a batch waits up to 2 s, a
  // reboot or the end of the run may come first), so they are compared only when both sent one.
  auto without_log = [](std::set<std::string> qos) {
    for (auto it = qos.begin(); it != qos.end();)
      it = it->rfind("log ", 0) == 0 ? qos.erase(it) : std::next(it);
    return qos;
  };
  const std::set<std::string> expected_qos = {"chunk/req qos 1", "inventory qos 1", "presence qos 1",
                                              "progress qos 1"};
  const std::string sim_device = "sim-00000";
  EXPECT_EQ(without_log(observer_->publish_qos("agent-paho")), expected_qos);
  EXPECT_EQ(without_log(observer_->publish_qos("agent-mosquitto")), expected_qos);
  EXPECT_EQ(without_log(observer_->publish_qos(sim_device)), expected_qos);
  for (const std::string& device : {sim_device, std::string("agent-paho"), std::string("agent-mosquitto")}) {
    for (const std::string& qos : observer_->publish_qos(device)) {
      if (qos.rfind("log ", 0) == 0) {
        EXPECT_EQ(qos, "log qos 1") << device;
      }
    }
  }
}

}  // namespace
}  // namespace fota::sim

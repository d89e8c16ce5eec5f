// SPDX-License-Identifier: Apache-2.0
// The real fota-orchestrator process over a real mosquitto with mTLS, driven through fotactl and
// the HTTP API. Devices are played by TestMqttClient speaking the wire protocol (they verify every
// chunk against the signed manifest).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <httplib.h>
#include <sqlite3.h>

#include <array>
#include <atomic>
#include <chrono>
#include <fstream>
#include <map>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "fota/common/artifact.hpp"
#include "fota/common/codec.hpp"
#include "fota/common/crypto.hpp"
#include "fota/common/topics.hpp"
#include "fota/testing/broker.hpp"
#include "fota/testing/command.hpp"
#include "fota/testing/orchestrator_setup.hpp"
#include "fota/testing/signed_bundle.hpp"

namespace fota::testing {
namespace {

namespace fs = std::filesystem;
using common::Channel;
using nlohmann::json;
using namespace std::chrono_literals;

constexpr const char* kToken = "test-token-0123456789abcdef";
constexpr const char* kOldArtifact = "ffffffffffffffffffffffffffffffff";

CommandRun run_fotactl(const std::string& args) { return run_command("'" FOTACTL_PATH "' " + args); }

// A device played over MQTT: answers install commands by fetching and verifying every chunk, then
// reports the phases up to COMMITTED and a new inventory.
class PlayedDevice {
 public:
  PlayedDevice(TestPki& pki, const std::string& uri, std::string id, std::string tz)
      : id_(std::move(id)),
        tz_(std::move(tz)),
        device_(*common::DeviceId::parse(id_)),
        client_(uri, id_, TestMqttClient::Identity{pki.ca_cert(), pki.issue(common::Role::kDevice, id_)}) {}

  void connect() {
    auto st = client_.connect();
    ASSERT_TRUE(st.ok()) << st.error().message;
    ASSERT_TRUE(client_.subscribe(topics_.device_topic(device_, Channel::kCommand)).ok());
    ASSERT_TRUE(client_.subscribe(topics_.device_topic(device_, Channel::kChunk)).ok());
    publish_inventory();
  }

  void publish_inventory() {
    v1::Inventory inv;
    inv.set_device_id(id_);
    inv.set_hardware_type("gw-v2");
    inv.set_version(version_);
    inv.set_artifact_id(artifact_);
    inv.set_time_zone(tz_);
    inv.set_security_counter(1);
    (*inv.mutable_attributes())["tags"] = "fleet";
    inv.set_pending_deployment_id(working_ ? deployment_ : "");
    inv.set_reported_at_ms(wall_clock_ms());
    send(Channel::kInventory, common::encode(inv), true);
  }

  // Handles whatever arrived; returns after `budget` without messages. Like the real client
  // (chunk_timeout_ms), asks again for the chunks it still misses when none arrived for a while:
  // a request published while the orchestrator was down (killed) is lost for good.
  void pump(std::chrono::milliseconds budget) {
    while (auto msg = client_.wait_message(budget)) handle(*msg);
    if (working_ && std::chrono::steady_clock::now() - last_chunk_ > kChunkTimeout) request_missing_chunks();
  }

  const std::string& id() const { return id_; }
  const std::string& artifact() const { return artifact_; }
  int installs = 0;
  bool fail_next = false;

 private:
  void send(Channel channel, const std::string& payload, bool retain = false) {
    auto rc = client_.publish(topics_.device_topic(device_, channel), payload, 1, retain);
    EXPECT_TRUE(rc.ok() && *rc == 0) << id_ << ": publish refused";
  }

  void report(v1::Phase phase, v1::ErrorCode error = v1::ERROR_NONE) {
    v1::Progress p;
    p.set_device_id(id_);
    p.set_deployment_id(deployment_);
    p.set_command_id(command_);
    p.set_artifact_id(manifest_.artifact_id());
    p.set_phase(phase);
    p.set_error(error);
    p.set_bytes_total(manifest_.image_size());
    p.set_bytes_done(received_bytes_);
    p.set_sequence(++sequence_);
    p.set_timestamp_ms(wall_clock_ms());
    p.mutable_link()->set_rate_bytes_per_second(50'000'000);
    send(Channel::kProgress, common::encode(p));
  }

  void handle(const TestMessage& msg) {
    auto parsed = topics_.parse(msg.topic);
    if (!parsed) return;
    if (parsed->channel == Channel::kCommand) {
      auto cmd = common::decode<v1::Command>(msg.payload, common::kMaxCommandBytes);
      ASSERT_TRUE(cmd.ok());
      ASSERT_EQ(cmd->device_id(), id_);
      ASSERT_GT(cmd->expires_at_ms(), wall_clock_ms());
      // The broker drops a command queued past its TTL (devices' clocks are not trusted for it).
      EXPECT_GT(msg.expiry_seconds, 0u);
      EXPECT_LE(static_cast<std::int64_t>(msg.expiry_seconds) * 1000,
                cmd->expires_at_ms() - cmd->issued_at_ms() + 1000);
      if (cmd->has_install()) {
        ++installs;
        auto m = common::decode<v1::Manifest>(cmd->install().manifest().manifest(), common::kMaxCommandBytes);
        ASSERT_TRUE(m.ok());
        manifest_ = *m;
        deployment_ = cmd->deployment_id();
        command_ = cmd->command_id();
        working_ = true;
        received_.assign(common::chunk_count(manifest_.image_size(), manifest_.chunk_size()), false);
        received_bytes_ = 0;
        report(v1::PHASE_DOWNLOADING);
        request_missing_chunks();
      } else if (cmd->has_rollback()) {
        deployment_ = cmd->deployment_id();
        command_ = cmd->command_id();
        artifact_ = kOldArtifact;
        version_ = "1.0";
        report(v1::PHASE_ROLLED_BACK);
        publish_inventory();
      }
    } else if (parsed->channel == Channel::kChunk) {
      auto chunk = common::decode<v1::ChunkData>(msg.payload, common::kMaxChunkDataBytes);
      ASSERT_TRUE(chunk.ok());
      ASSERT_EQ(chunk->status(), v1::CHUNK_STATUS_OK);
      ASSERT_LT(chunk->index(), received_.size());
      // A real device writes only chunks whose hash is in the signed manifest.
      ASSERT_EQ(common::digest_bytes(common::Sha256::digest(chunk->data())),
                manifest_.chunk_sha256(static_cast<int>(chunk->index())));
      if (!received_[chunk->index()]) received_bytes_ += chunk->data().size();
      received_[chunk->index()] = true;
      last_chunk_ = std::chrono::steady_clock::now();
      if (std::all_of(received_.begin(), received_.end(), [](bool b) { return b; })) {
        working_ = false;
        if (fail_next) {
          fail_next = false;
          report(v1::PHASE_FAILED, v1::ERROR_INSTALL_FAILED);
          return;
        }
        report(v1::PHASE_VERIFYING);
        report(v1::PHASE_INSTALLING);
        report(v1::PHASE_REBOOTING);
        artifact_ = manifest_.artifact_id();
        version_ = manifest_.version();
        report(v1::PHASE_CONFIRMING);
        v1::LogBatch logs;
        logs.set_device_id(id_);
        auto* entry = logs.add_entries();
        entry->set_timestamp_ms(wall_clock_ms());
        entry->set_level(v1::LOG_LEVEL_INFO);
        entry->set_message("booted " + version_ + ", health check passed");
        entry->set_source("app");
        send(Channel::kLog, common::encode(logs));
        report(v1::PHASE_COMMITTED);
        publish_inventory();
      }
    }
  }

  void request_missing_chunks() {
    v1::ChunkRequest req;
    req.set_device_id(id_);
    req.set_artifact_id(manifest_.artifact_id());
    req.set_request_id(++request_id_);
    for (std::uint32_t i = 0; i < received_.size(); ++i) {
      if (received_[i]) continue;
      auto* range = req.add_ranges();
      range->set_first(i);
      range->set_count(1);
    }
    send(Channel::kChunkRequest, common::encode(req));
    last_chunk_ = std::chrono::steady_clock::now();
  }

  static constexpr auto kChunkTimeout = std::chrono::seconds(2);
  std::chrono::steady_clock::time_point last_chunk_{};
  std::string id_;
  std::string tz_;
  common::DeviceId device_;
  common::TopicScheme topics_;
  TestMqttClient client_;
  std::string artifact_ = kOldArtifact;
  std::string version_ = "1.0";
  v1::Manifest manifest_;
  std::string deployment_;
  std::string command_;
  bool working_ = false;
  std::vector<bool> received_;
  std::uint64_t received_bytes_ = 0;
  std::uint64_t sequence_ = 0;
  std::uint64_t request_id_ = 0;
};

class OrchestratorServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    pki_ = std::make_unique<TestPki>(dir_.path() / "pki");
    broker_ = std::make_unique<MosquittoBroker>(*pki_, dir_.path() / "broker");
    // Release signing key, trusted by the orchestrator; a second key that is not.
    http_port_ = write_orchestrator_setup(dir_.path(), *pki_, *broker_, "alice", kToken).http_port;
    auto rogue = common::Ed25519PrivateKey::generate();
    ASSERT_TRUE(common::save_key_pair(*rogue, dir_.path() / "rogue.key", dir_.path() / "rogue.pub").ok());
    server_ = "--server http://127.0.0.1:" + std::to_string(http_port_) + " --token " + kToken;
  }

  void TearDown() override { stop_orchestrator(SIGTERM); }

  void start_orchestrator() {
    httplib::Client http("127.0.0.1", http_port_);
    std::string failure;
    pid_ = spawn_until_ready(
        {FOTA_ORCHESTRATOR_PATH, "--config", (dir_.path() / "orchestrator.yaml").string()},
        dir_.path() / "orchestrator.log",
        [&] {
          auto res = http.Get("/healthz");
          return res && res->status == 200;
        },
        failure);
    ASSERT_GT(pid_, 0) << failure;
  }

  void stop_orchestrator(int signal) { stop_process(pid_, signal); }

  std::string read_log() {
    std::ifstream in(dir_.path() / "orchestrator.log");
    return std::string(std::istreambuf_iterator<char>(in), {});
  }

  fs::path make_bundle(const std::string& name, const std::string& version, std::size_t size,
                       const char* key_file = "release.key") {
    return make_signed_bundle(dir_.path(), dir_.path() / key_file, BundleSpec{name, version, size});
  }

  json api_get(const std::string& path) {
    httplib::Client http("127.0.0.1", http_port_);
    http.set_bearer_token_auth(kToken);
    auto res = http.Get(path.c_str());
    EXPECT_TRUE(res);
    if (!res) return json();
    EXPECT_EQ(res->status, 200) << res->body;
    return json::parse(res->body);
  }

  // Sends `request` as is over a new connection and returns everything the server answers.
  std::string raw_request(const std::string& request) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<std::uint16_t>(http_port_));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    std::string answer;
    if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0 &&
        ::send(fd, request.data(), request.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(request.size())) {
      timeval timeout{5, 0};
      ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
      std::array<char, 4096> buf{};
      for (ssize_t n; (n = ::recv(fd, buf.data(), buf.size(), 0)) > 0;) answer.append(buf.data(), n);
    }
    ::close(fd);
    return answer;
  }

  CommandRun fotactl(const std::string& args) { return run_fotactl(args + " " + server_); }
  CommandRun fotactl_ok(const std::string& args) {
    CommandRun r = fotactl(args);
    EXPECT_EQ(r.exit_code, 0) << args << "\n" << r.output << "\n" << read_log();
    return r;
  }

  std::vector<std::unique_ptr<PlayedDevice>> make_devices(int n) {
    static const char* zones[] = {"Europe/Berlin", "America/New_York", "Asia/Tokyo", "UTC"};
    std::vector<std::unique_ptr<PlayedDevice>> devices;
    for (int i = 0; i < n; ++i) {
      devices.push_back(
          std::make_unique<PlayedDevice>(*pki_, broker_->uri(), "dev-" + std::to_string(i), zones[i % 4]));
    }
    // Connect in parallel: each Paho connect + subscribe takes over a second of mostly waiting.
    std::vector<std::thread> connecting;
    for (auto& d : devices) connecting.emplace_back([&d] { d->connect(); });
    for (auto& t : connecting) t.join();
    return devices;
  }

  // Pumps the devices until the predicate over the rollout JSON holds.
  json pump_until(std::vector<std::unique_ptr<PlayedDevice>>& devices, const std::string& rollout,
                  const std::function<bool(const json&)>& done, std::chrono::seconds timeout = 30s) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    json r;
    while (std::chrono::steady_clock::now() < deadline) {
      for (auto& d : devices) d->pump(5ms);
      r = api_get("/api/v1/rollouts/" + rollout);
      if (done(r)) return r;
    }
    ADD_FAILURE() << "timed out; rollout: " << r.dump(2) << "\nlog:\n" << read_log();
    return r;
  }

  void wait_registered(std::size_t n) {
    for (int i = 0; i < 200; ++i) {
      if (api_get("/api/v1/devices").size() >= n) return;
      std::this_thread::sleep_for(25ms);
    }
    FAIL() << "devices did not register";
  }

  std::string create_rollout(const std::string& spec_yaml) {
    std::ofstream(dir_.path() / "spec.yaml") << spec_yaml;
    CommandRun r = fotactl_ok("rollout create --json -f " + (dir_.path() / "spec.yaml").string());
    return json::parse(r.output.substr(r.output.find('{'))).value("id", "");
  }

  TempDir dir_;
  std::unique_ptr<TestPki> pki_;
  std::unique_ptr<MosquittoBroker> broker_;
  int http_port_ = 0;
  pid_t pid_ = -1;
  std::string server_;
};

std::string uploaded_id(const CommandRun& r) {
  const auto pos = r.output.find("uploaded artifact ");
  return pos == std::string::npos ? "" : r.output.substr(pos + 18, 32);
}

// A device is served chunks only of the artifact the fleet state assigns it: not before its
// rollout sends the install command, not another artifact, not another device's, not after the
// rollout was aborted; and after a restart the assignment is read back from the store.
TEST_F(OrchestratorServiceTest, ChunksOnlyForTheArtifactTheFleetStateAssigns) {
  start_orchestrator();
  const common::TopicScheme topics;
  // Devices that register but act on nothing: the test crafts their chunk requests.
  const auto device = [&](const std::string& id) {
    auto c = std::make_unique<TestMqttClient>(
        broker_->uri(), id,
        TestMqttClient::Identity{pki_->ca_cert(), pki_->issue(common::Role::kDevice, id)});
    EXPECT_TRUE(c->connect().ok());
    const auto dev = *common::DeviceId::parse(id);
    EXPECT_TRUE(c->subscribe(topics.device_topic(dev, Channel::kChunk)).ok());
    EXPECT_TRUE(c->subscribe(topics.device_topic(dev, Channel::kCommand)).ok());
    v1::Inventory inv;
    inv.set_device_id(id);
    inv.set_hardware_type("gw-v2");
    inv.set_version("1.0");
    inv.set_artifact_id(kOldArtifact);
    inv.set_security_counter(1);
    EXPECT_EQ(c->publish(topics.device_topic(dev, Channel::kInventory), common::encode(inv), 1, true).value(),
              0);
    return c;
  };
  auto assigned = device("dev-assigned");
  auto other = device("dev-other");
  wait_registered(2);
  const std::string a =
      uploaded_id(fotactl_ok("artifact upload " + make_bundle("fw", "2.0", 64 * 1024).string()));
  const std::string b =
      uploaded_id(fotactl_ok("artifact upload " + make_bundle("fw", "3.0", 64 * 1024).string()));
  ASSERT_EQ(a.size(), 32u);
  ASSERT_EQ(b.size(), 32u);

  // Asks for chunk 0 of `artifact`; returns the status of the answer (-1 = no answer).
  const auto ask = [&](TestMqttClient& c, const std::string& id, const std::string& artifact) {
    v1::ChunkRequest req;
    req.set_device_id(id);
    req.set_artifact_id(artifact);
    req.set_request_id(7);
    auto* range = req.add_ranges();
    range->set_first(0);
    range->set_count(1);
    EXPECT_EQ(c.publish(topics.device_topic(*common::DeviceId::parse(id), Channel::kChunkRequest),
                        common::encode(req))
                  .value(),
              0);
    while (auto m = c.wait_message(5s)) {
      if (m->topic.find("/chunk") == std::string::npos) continue;  // a command
      auto chunk = common::decode<v1::ChunkData>(m->payload, common::kMaxChunkDataBytes);
      EXPECT_TRUE(chunk.ok());
      EXPECT_EQ(chunk->artifact_id(), artifact);
      return static_cast<int>(chunk->status());
    }
    return -1;
  };
  EXPECT_EQ(ask(*assigned, "dev-assigned", a), v1::CHUNK_STATUS_UNKNOWN_ARTIFACT);

  const std::string id = create_rollout("name: one\nartifact: " + a +
                                        "\ntarget: {devices: [dev-assigned]}\nwaves:\n  - size: 1\n");
  fotactl_ok("rollout start " + id);
  // The install command arrives; the device is now assigned `a`, and only `a`.
  auto command = assigned->wait_message(10s);
  ASSERT_TRUE(command) << read_log();
  EXPECT_NE(command->topic.find("/cmd"), std::string::npos);
  EXPECT_EQ(ask(*assigned, "dev-assigned", a), v1::CHUNK_STATUS_OK);
  EXPECT_EQ(ask(*assigned, "dev-assigned", b), v1::CHUNK_STATUS_UNKNOWN_ARTIFACT);
  EXPECT_EQ(ask(*other, "dev-other", a), v1::CHUNK_STATUS_UNKNOWN_ARTIFACT);

  // A restart keeps the assignment: it is read back from the fleet state.
  stop_orchestrator(SIGTERM);
  start_orchestrator();
  EXPECT_EQ(ask(*assigned, "dev-assigned", a), v1::CHUNK_STATUS_OK) << read_log();
  EXPECT_EQ(ask(*other, "dev-other", a), v1::CHUNK_STATUS_UNKNOWN_ARTIFACT);

  // Aborting the rollout cancels the update, and with it the assignment.
  fotactl_ok("rollout abort " + id);
  for (int i = 0; i < 100 && api_get("/api/v1/rollouts/" + id).value("state", "") != "aborted"; ++i) {
    std::this_thread::sleep_for(50ms);
  }
  (void)assigned->wait_message(2s);  // the cancel
  EXPECT_EQ(ask(*assigned, "dev-assigned", a), v1::CHUNK_STATUS_UNKNOWN_ARTIFACT);
  httplib::Client http("127.0.0.1", http_port_);
  auto metrics = http.Get("/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_NE(metrics->body.find("fota_chunk_requests_refused_total 2"), std::string::npos) << metrics->body;
  EXPECT_NE(read_log().find("does not assign it that artifact"), std::string::npos);
}

TEST_F(OrchestratorServiceTest, TwoWaveRolloutCompletesOverRealBroker) {
  start_orchestrator();
  auto devices = make_devices(4);
  wait_registered(4);
  const auto bundle = make_bundle("fw", "2.0", 100 * 1024);
  const CommandRun up = fotactl_ok("artifact upload " + bundle.string());
  const std::string artifact = uploaded_id(up);
  ASSERT_EQ(artifact.size(), 32u) << up.output;

  const std::string id = create_rollout("name: two-waves\nartifact: " + artifact +
                                        "\ntarget: {tags: [fleet]}\nwaves:\n  - size: 1\n  - size: 100%\n");
  ASSERT_FALSE(id.empty());
  const CommandRun plan = fotactl_ok("rollout plan " + id);
  EXPECT_NE(plan.output.find("4 device(s)"), std::string::npos) << plan.output;
  httplib::Client http("127.0.0.1", http_port_);
  ASSERT_TRUE(http.Get("/metrics"));  // a scrape before the rollout's reports
  fotactl_ok("rollout start " + id);

  // Wave 1 finishes before any wave-2 device gets a command.
  json r = pump_until(devices, id, [](const json& j) { return j["waves"][0]["status"] != "active"; });
  json members = api_get("/api/v1/rollouts/" + id)["members"];
  r = pump_until(devices, id, [](const json& j) { return j["state"] == "completed"; });
  EXPECT_EQ(r["counts"].value("succeeded", 0), 4);
  for (auto& d : devices) {
    EXPECT_EQ(d->artifact(), artifact) << d->id();
    EXPECT_EQ(d->installs, 1) << d->id();
  }
  // The devices' new state is registered; audit log verifies.
  for (const auto& d : api_get("/api/v1/devices")) EXPECT_EQ(d.value("artifact_id", ""), artifact);
  const CommandRun verify = fotactl_ok("audit verify");
  EXPECT_NE(verify.output.find("chain intact"), std::string::npos);
  const CommandRun audit = fotactl_ok("audit list");
  EXPECT_NE(audit.output.find("wave 1 gate passed"), std::string::npos) << audit.output;
  EXPECT_NE(audit.output.find("rollout.start"), std::string::npos);
  // Metrics show the chunks the orchestrator served itself (no broker plugin here).
  auto metrics = http.Get("/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_NE(metrics->body.find("fota_rollouts{state=\"completed\"} 1"), std::string::npos) << metrics->body;
  EXPECT_NE(metrics->body.find("fota_chunk_bytes_served_total 409600"), std::string::npos) << metrics->body;
  // A scrape reads and changes nothing (issue 16: a rate since the previous scrape made two
  // scrapers skew each other): with the fleet quiet, a later scrape is the same.
  std::this_thread::sleep_for(100ms);
  auto again = http.Get("/metrics");
  ASSERT_TRUE(again);
  EXPECT_EQ(again->body, metrics->body);
}

// mosquitto takes max_inflight_messages unacknowledged publishes per client (its Receive Maximum).
// The orchestrator keeps its window within that: Paho C 1.3.12 holds a publish beyond it until its
// send thread's 1 s timeout. With a window of 2, every command and served chunk still goes out.
// Waiting for acknowledgements holds up neither the API nor the rollout loop: with the broker
// stopped, starting a rollout of 6 devices (3 windows) answers at once and its status is readable.
TEST_F(OrchestratorServiceTest, PublishesStayWithinTheBrokersReceiveMaximumWithoutHoldingUpTheApi) {
  BrokerOptions narrow;
  narrow.port = broker_->port();  // the orchestrator's config names this port
  narrow.extra_config = "max_inflight_messages 2";
  broker_.reset();
  broker_ = std::make_unique<MosquittoBroker>(*pki_, dir_.path() / "narrow-broker", narrow);
  start_orchestrator();
  EXPECT_NE(read_log().find("broker receive maximum 2: at most 2 publishes in flight"), std::string::npos)
      << read_log();
  auto devices = make_devices(6);
  wait_registered(6);
  const std::string artifact =
      uploaded_id(fotactl_ok("artifact upload " + make_bundle("fw", "2.0", 64 * 1024).string()));
  ASSERT_EQ(artifact.size(), 32u);
  const std::string id = create_rollout("name: narrow\nartifact: " + artifact +
                                        "\ntarget: {tags: [fleet]}\nwaves:\n  - size: 100%\n");
  broker_->send_signal(SIGSTOP);
  const auto before = std::chrono::steady_clock::now();
  fotactl_ok("rollout start " + id);
  const json dispatched = api_get("/api/v1/rollouts/" + id);
  // Sending the commands to the stopped broker would take 2 x 30 s (kInFlightWait).
  EXPECT_LT(std::chrono::steady_clock::now() - before, 10s);
  EXPECT_EQ(dispatched.value("state", ""), "running") << dispatched.dump(2);
  broker_->send_signal(SIGCONT);
  const json r = pump_until(devices, id, [](const json& j) { return j["state"] == "completed"; });
  EXPECT_EQ(r["counts"].value("succeeded", 0), 6);
  for (auto& d : devices) {
    EXPECT_EQ(d->artifact(), artifact) << d->id();
    EXPECT_EQ(d->installs, 1) << d->id();
  }
}

// Real devices: the client library's `fota-device` agent (file-backed A/B slots), one process
// each (within one process every Paho connect after the first takes about 2 s), over the real
// broker with mTLS; the orchestrator serves the chunks (no broker plugin).
class DeviceAgents {
 public:
  ~DeviceAgents() {
    for (pid_t pid : pids_) kill(pid, SIGTERM);
    for (pid_t pid : pids_) waitpid(pid, nullptr, 0);
  }
  void start(const fs::path& config, const fs::path& log) {
    pids_.push_back(spawn({FOTA_DEVICE_PATH, "--config", config.string()}, log));
  }

 private:
  std::vector<pid_t> pids_;
};

TEST_F(OrchestratorServiceTest, TwoWaveRolloutToRealDeviceAgentsCompletes) {
  start_orchestrator();
  constexpr int kAgents = 3;
  DeviceAgents agents;
  for (int i = 0; i < kAgents; ++i) {
    const std::string id = "agent-" + std::to_string(i);
    const auto files = pki_->issue(common::Role::kDevice, id);
    const auto home = dir_.path() / id;
    fs::create_directories(home);
    std::ofstream(home / "device.yaml")
        << "device_id: " << id << "\nhardware_type: gw-v2\nbroker: " << broker_->uri()
        << "\nca: " << pki_->ca_cert().string() << "\ncert: " << files.cert.string()
        << "\nkey: " << files.key.string() << "\ntrust: " << (dir_.path() / "keys").string()
        << "\ncommand_keys: " << pki_->command_key().public_key.string()
        << "\nstate_dir: " << (home / "state").string()
        << "\nfactory_version: 1.0.0\ntime_zone: UTC\nprogress_interval_ms: 200\nlog_level: info\n";
    agents.start(home / "device.yaml", home / "device.log");
  }
  wait_registered(kAgents);
  const std::string artifact =
      uploaded_id(fotactl_ok("artifact upload " + make_bundle("fw", "2.0", 256 * 1024).string()));
  ASSERT_EQ(artifact.size(), 32u);
  const std::string id =
      create_rollout("name: real-devices\nartifact: " + artifact +
                     "\ntarget: {hardware: [gw-v2]}\nwaves:\n  - size: 1\n  - size: 100%\n");
  const json plan = api_get("/api/v1/rollouts/" + id + "/plan");
  const auto started = std::chrono::steady_clock::now();
  fotactl_ok("rollout start " + id);
  json r;
  for (int i = 0; i < 1200; ++i) {
    r = api_get("/api/v1/rollouts/" + id);
    if (r.value("state", "") != "running") break;
    std::this_thread::sleep_for(50ms);
  }
  const double actual_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  ASSERT_EQ(r.value("state", ""), "completed") << r.dump(2) << "\n" << read_log();
  EXPECT_EQ(r["counts"].value("succeeded", 0), kAgents);
  ASSERT_EQ(r["waves"].size(), 2u);
  EXPECT_EQ(r["waves"][0].value("devices", 0), 1);
  EXPECT_EQ(r["waves"][1].value("devices", 0), kAgents - 1);
  for (const auto& m : r["members"]) EXPECT_EQ(m.value("state", ""), "succeeded") << m.dump();
  // Every device runs and reports the new version.
  for (int i = 0; i < 100; ++i) {
    std::size_t updated = 0;
    for (const auto& d : api_get("/api/v1/devices")) {
      updated += d.value("artifact_id", "") == artifact && d.value("version", "") == "2.0" ? 1 : 0;
    }
    if (updated == kAgents) break;
    std::this_thread::sleep_for(50ms);
  }
  for (const auto& d : api_get("/api/v1/devices")) {
    EXPECT_EQ(d.value("artifact_id", ""), artifact) << d.dump();
    EXPECT_EQ(d.value("version", ""), "2.0") << d.dump();
  }
  std::printf("[ figure ] %d fota-device agents, two waves, 256 KiB image: predicted %lld s, took %.1f s\n",
              kAgents, static_cast<long long>(plan.value("duration_seconds", 0)), actual_s);
  fotactl_ok("audit verify");
}

TEST_F(OrchestratorServiceTest, KillNineMidRolloutThenRestartFinishesConsistently) {
  start_orchestrator();
  auto devices = make_devices(4);
  wait_registered(4);
  const std::string artifact =
      uploaded_id(fotactl_ok("artifact upload " + make_bundle("fw", "2.0", 64 * 1024).string()));
  const std::string id = create_rollout("name: crash\nartifact: " + artifact +
                                        "\ntarget: {tags: [fleet]}\nwaves:\n  - size: 2\n  - size: 100%\n"
                                        "timeouts: {dispatch: 20s}\n");
  fotactl_ok("rollout start " + id);
  pump_until(devices, id, [](const json& j) { return j["waves"][0]["status"] != "active"; });
  // Crash without any chance to flush.
  stop_orchestrator(SIGKILL);
  for (auto& d : devices) d->pump(20ms);
  start_orchestrator();
  const json after_restart = api_get("/api/v1/rollouts/" + id);
  EXPECT_NE(after_restart.value("state", ""), "created");
  // Devices re-announce themselves (retained inventory arrives on the new subscription).
  json r = pump_until(devices, id, [](const json& j) { return j["state"] == "completed"; });
  EXPECT_EQ(r["counts"].value("succeeded", 0), 4);
  for (auto& d : devices) EXPECT_EQ(d->artifact(), artifact);
  fotactl_ok("audit verify");
}

TEST_F(OrchestratorServiceTest, FinishedUpdatesAreHistoryTheNextPlanDrawsOnAfterARestart) {
  start_orchestrator();
  auto devices = make_devices(8);
  wait_registered(8);
  const std::string first =
      uploaded_id(fotactl_ok("artifact upload " + make_bundle("fw", "2.0", 32 * 1024).string()));
  const std::string id = create_rollout("name: first\nartifact: " + first + "\ntarget: {tags: [fleet]}\n");
  EXPECT_EQ(api_get("/api/v1/rollouts/" + id + "/plan").value("history_samples", -1), 0);
  fotactl_ok("rollout start " + id);
  const json r = pump_until(devices, id, [](const json& j) { return j["state"] == "completed"; });
  // The rollout's own start-to-end time, which its plan predicted.
  EXPECT_GE(r.value("duration_ms", std::int64_t{-1}), 0) << r.dump(2);
  stop_orchestrator(SIGTERM);
  start_orchestrator();
  const std::string second =
      uploaded_id(fotactl_ok("artifact upload " + make_bundle("fw-next", "3.0", 32 * 1024).string()));
  const std::string next =
      create_rollout("name: second\nartifact: " + second + "\ntarget: {tags: [fleet]}\n");
  const json plan = api_get("/api/v1/rollouts/" + next + "/plan");
  EXPECT_EQ(plan.value("history_samples", 0), 8) << plan.dump(2);
}

TEST_F(OrchestratorServiceTest, BadInputIsRefusedClearlyWithoutStateChange) {
  start_orchestrator();
  auto devices = make_devices(2);
  wait_registered(2);
  const auto bundle = make_bundle("fw", "2.0", 32 * 1024);

  // Wrong or missing credentials.
  CommandRun r = run_fotactl("artifact list --server http://127.0.0.1:" + std::to_string(http_port_) +
                             " --token wrong-token-wrong-token");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("invalid API token"), std::string::npos) << r.output;
  r = run_fotactl("artifact upload " + bundle.string() +
                  " --server http://127.0.0.1:" + std::to_string(http_port_));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("missing credentials"), std::string::npos) << r.output;
  EXPECT_TRUE(api_get("/api/v1/artifacts").empty());

  // Tampered bundle: one byte of the image flipped.
  const auto tampered = dir_.path() / "tampered.bundle";
  fs::copy_file(bundle, tampered);
  {
    std::fstream f(tampered, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(-100, std::ios::end);
    f.put('\x5a');
  }
  r = fotactl("artifact upload " + tampered.string());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("bundle refused"), std::string::npos) << r.output;
  // Signed by a key the orchestrator does not trust.
  r = fotactl("artifact upload " + make_bundle("rogue", "6.6", 8 * 1024, "rogue.key").string());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("trusted_keys"), std::string::npos) << r.output;
  EXPECT_TRUE(api_get("/api/v1/artifacts").empty());

  // Malformed spec and unknown artifact.
  std::ofstream(dir_.path() / "bad.yaml") << "name: x\nartifact: 0123\ntarget: {all: true}\n";
  r = fotactl("rollout create -f " + (dir_.path() / "bad.yaml").string());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("artifact: '0123' is not an artifact id"), std::string::npos) << r.output;
  std::ofstream(dir_.path() / "unknown.yaml")
      << "name: x\nartifact: 0123456789abcdef0123456789abcdef\ntarget: {all: true}\n";
  r = fotactl("rollout create -f " + (dir_.path() / "unknown.yaml").string());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("is not uploaded"), std::string::npos) << r.output;
  EXPECT_TRUE(api_get("/api/v1/rollouts").empty());

  // Overlapping rollout.
  const std::string artifact = uploaded_id(fotactl_ok("artifact upload " + bundle.string()));
  const std::string first =
      create_rollout("name: a\nartifact: " + artifact + "\ntarget: {devices: [dev-0, dev-1]}\n");
  std::ofstream(dir_.path() / "overlap.yaml")
      << "name: b\nartifact: " << artifact << "\ntarget: {devices: [dev-1]}\n";
  r = fotactl("rollout create -f " + (dir_.path() / "overlap.yaml").string());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("dev-1 (in " + first + ")"), std::string::npos) << r.output;
  EXPECT_EQ(api_get("/api/v1/rollouts").size(), 1u);
  // Invalid state transitions say what is allowed.
  r = fotactl("rollout resume " + first);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("only a paused rollout can be resumed"), std::string::npos) << r.output;
  r = fotactl("rollout start r-doesnotexist");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("does not exist"), std::string::npos) << r.output;
  // Unknown device for logs.
  r = fotactl("device logs nobody");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("not registered"), std::string::npos) << r.output;
  // Every refused upload is in the audit log, and the chain is intact.
  const json audit = api_get("/api/v1/audit");
  std::size_t refused = 0;
  for (const auto& e : audit) refused += e.value("action", "") == "artifact.refused" ? 1 : 0;
  EXPECT_EQ(refused, 2u);
  fotactl_ok("audit verify");
}

// Issue 16: an operator action whose save failed restored the rollout but left its audit line and
// its command events queued, so the next save recorded an action the API had reported as failed.
TEST_F(OrchestratorServiceTest, AnActionThatCouldNotBeSavedLeavesNoTrace) {
  start_orchestrator();
  auto devices = make_devices(3);
  wait_registered(3);
  const std::string artifact =
      uploaded_id(fotactl_ok("artifact upload " + make_bundle("fw", "2.0", 16 * 1024).string()));
  const std::string id =
      create_rollout("name: a\nartifact: " + artifact + "\ntarget: {devices: [dev-0, dev-1]}\n");
  ASSERT_FALSE(id.empty());
  const auto count_audit = [&](const std::string& action) {
    std::size_t n = 0;
    for (const auto& e : api_get("/api/v1/audit")) n += e.value("action", "") == action ? 1 : 0;
    return n;
  };
  {
    // Another process holds the database's write lock: the orchestrator's saves wait out their
    // busy timeout and fail, as on a full or failing disk.
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open((dir_.path() / "data" / "state.db").c_str(), &db), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(db, "BEGIN EXCLUSIVE", nullptr, nullptr, nullptr), SQLITE_OK)
        << sqlite3_errmsg(db);
    CommandRun r = fotactl("rollout start " + id);
    EXPECT_EQ(r.exit_code, 1) << r.output;
    std::ofstream(dir_.path() / "second.yaml")
        << "name: b\nartifact: " << artifact << "\ntarget: {devices: [dev-2]}\n";
    r = fotactl("rollout create -f " + (dir_.path() / "second.yaml").string());
    EXPECT_EQ(r.exit_code, 1) << r.output;
    sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
    sqlite3_close(db);
  }
  // The loop saves again (the devices keep reporting): nothing of the refused actions appears.
  const auto settle = std::chrono::steady_clock::now() + 1500ms;
  while (std::chrono::steady_clock::now() < settle) {
    for (auto& d : devices) d->pump(5ms);
  }
  EXPECT_EQ(count_audit("rollout.start"), 0u);
  EXPECT_EQ(count_audit("rollout.create"), 1u);
  for (const auto& e : api_get("/api/v1/events?rollout=" + id)) {
    EXPECT_NE(e.value("kind", ""), "command") << e.dump();
  }
  EXPECT_EQ(api_get("/api/v1/rollouts/" + id).value("state", ""), "created");
  EXPECT_EQ(api_get("/api/v1/rollouts").size(), 1u);
  fotactl_ok("audit verify");

  // Once the database is writable again the same action succeeds, recorded once.
  fotactl_ok("rollout start " + id);
  pump_until(devices, id, [](const json& r) { return r.value("state", "") == "completed"; });
  EXPECT_EQ(count_audit("rollout.start"), 1u);
}

// Issue 14: routes that do not match, wrong methods and refused requests answered with an empty
// body, and fotactl printed "fotactl: error: " and nothing else.
TEST_F(OrchestratorServiceTest, EveryApiErrorSaysWhatWasWrong) {
  start_orchestrator();
  httplib::Client http("127.0.0.1", http_port_);
  http.set_bearer_token_auth(kToken);
  auto error_of = [](const httplib::Result& res, int status) {
    EXPECT_TRUE(res);
    if (!res) return std::string();
    EXPECT_EQ(res->status, status) << res->body;
    EXPECT_EQ(res->get_header_value("Content-Type"), "application/json") << res->body;
    const json body = json::parse(res->body, nullptr, false);
    EXPECT_FALSE(body.is_discarded()) << res->body;
    if (body.is_discarded() || !body.contains("error")) return std::string();
    EXPECT_EQ(body["error"].value("status", 0), status);
    return body["error"].value("message", std::string());
  };
  std::string m = error_of(http.Get("/api/v1/devices/a/b"), 404);
  EXPECT_NE(m.find("GET /api/v1/devices/a/b"), std::string::npos) << m;
  EXPECT_NE(m.find("docs/openapi.yaml"), std::string::npos) << m;
  m = error_of(http.Get("/api/v1/devices/../x/logs"), 404);
  EXPECT_NE(m.find("no such route"), std::string::npos) << m;
  m = error_of(http.Get("/nothing-here"), 404);
  EXPECT_NE(m.find("no such route"), std::string::npos) << m;
  m = error_of(http.Post("/api/v1/rollouts/r-1/explode", "", "text/plain"), 404);
  EXPECT_NE(m.find("POST /api/v1/rollouts/r-1/explode"), std::string::npos) << m;
  // A route that exists with another method.
  auto res = http.Delete("/api/v1/rollouts");
  m = error_of(res, 405);
  EXPECT_NE(m.find("use GET or POST"), std::string::npos) << m;
  if (res) {
    EXPECT_EQ(res->get_header_value("Allow"), "GET, POST");
  }
  m = error_of(http.Put("/api/v1/devices/dev-0", "x", "text/plain"), 405);
  EXPECT_NE(m.find("use DELETE or GET"), std::string::npos) << m;  // DELETE decommissions (admin)

  // fotactl checks device ids itself and says what an id may contain.
  for (const std::string& args :
       {std::string("device show a/b"), std::string("device logs ../x"),
        "deploy --device ../dev-01 " + (dir_.path() / "orchestrator.yaml").string()}) {
    CommandRun r = fotactl(args);
    EXPECT_EQ(r.exit_code, 1) << args;
    EXPECT_NE(r.output.find("fotactl: error: device id"), std::string::npos) << args << "\n" << r.output;
    EXPECT_NE(r.output.find("[A-Za-z0-9._-]"), std::string::npos) << args << "\n" << r.output;
  }
  // Ids fotactl does not check still get the server's message.
  CommandRun r = fotactl("rollout start a/b");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("no such route: POST /api/v1/rollouts/a/b/start"), std::string::npos) << r.output;
}

// Issue 14: request bodies of up to 4 GiB were accepted and held in memory.
TEST_F(OrchestratorServiceTest, OversizedRequestBodyGets413AndTheOrchestratorStaysUp) {
  {
    std::ifstream in(dir_.path() / "orchestrator.yaml");
    std::string config(std::istreambuf_iterator<char>(in), {});
    in.close();
    config.replace(config.find("\napi_tokens:"), 0, "\n  max_body_bytes: 1048576");
    std::ofstream(dir_.path() / "orchestrator.yaml") << config;
  }
  start_orchestrator();
  httplib::Client http("127.0.0.1", http_port_);
  http.set_bearer_token_auth(kToken);
  const std::string big(2 * 1024 * 1024, 'x');
  auto res = http.Post("/api/v1/artifacts", big, "application/octet-stream");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 413) << res->body;
  const json body = json::parse(res->body, nullptr, false);
  ASSERT_FALSE(body.is_discarded()) << res->body;
  const std::string message = body["error"].value("message", "");
  EXPECT_NE(message.find("2097152 bytes"), std::string::npos) << message;
  EXPECT_NE(message.find("http.max_body_bytes"), std::string::npos) << message;
  // A body without a length (chunked) would not be bounded: refused from its headers, before any
  // of it is read. (Headers only: a client still sending a body the server refused can find the
  // connection gone.)
  const std::string answer = raw_request(
      "POST /api/v1/artifacts HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n"
      "Connection: close\r\n\r\n");
  EXPECT_EQ(answer.rfind("HTTP/1.1 411", 0), 0u) << answer;
  EXPECT_NE(answer.find("with a Content-Length header"), std::string::npos) << answer;
  // fotactl shows the message; the orchestrator is up and takes a bundle within the limit.
  const auto large = make_bundle("large", "3.0", 1536 * 1024);
  CommandRun r = fotactl("artifact upload " + large.string());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("http.max_body_bytes"), std::string::npos) << r.output;
  auto health = httplib::Client("127.0.0.1", http_port_).Get("/healthz");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
  EXPECT_EQ(uploaded_id(fotactl_ok("artifact upload " + make_bundle("fw", "2.0", 64 * 1024).string())).size(),
            32u);
}

// Issue 14: trusted keys were read only at start, so the key `fotactl deploy` creates on first use
// needed a restart nobody mentioned.
TEST_F(OrchestratorServiceTest, KeyAddedAfterStartIsTrustedWithoutARestart) {
  start_orchestrator();
  auto key = common::Ed25519PrivateKey::generate();
  ASSERT_TRUE(key.ok());
  ASSERT_TRUE(common::save_key_pair(*key, dir_.path() / "dev.key", dir_.path() / "dev.pub").ok());
  const auto bundle = make_bundle("dev", "2.1", 32 * 1024, "dev.key");
  // Not trusted yet: the error says where the public key goes.
  CommandRun r = fotactl("artifact upload " + bundle.string());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(
      r.output.find("copy its public key into the trusted_keys directory " + (dir_.path() / "keys").string()),
      std::string::npos)
      << r.output;
  // Added after start: the next upload reads it.
  fs::copy_file(dir_.path() / "dev.pub", dir_.path() / "keys/dev.pub");
  EXPECT_EQ(uploaded_id(fotactl_ok("artifact upload " + bundle.string())).size(), 32u);
  // SIGHUP re-reads the directory: a key removed from it is no longer trusted.
  auto reloads = [this] {
    const std::string log = read_log();
    std::size_t n = 0;
    for (auto at = log.find("trusted keys reloaded from"); at != std::string::npos;
         at = log.find("trusted keys reloaded from", at + 1))
      ++n;
    return n;
  };
  const std::size_t before = reloads();
  fs::remove(dir_.path() / "keys/dev.pub");
  kill(pid_, SIGHUP);
  for (int i = 0; i < 100 && reloads() == before; ++i) std::this_thread::sleep_for(50ms);
  EXPECT_EQ(reloads(), before + 1) << read_log();
  r = fotactl("artifact upload " + make_bundle("dev2", "2.2", 32 * 1024, "dev.key").string());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("not among the trusted keys"), std::string::npos) << r.output;
  // The release key still is.
  fotactl_ok("artifact upload " + make_bundle("fw", "2.0", 32 * 1024).string());
}

TEST_F(OrchestratorServiceTest, FailureThresholdPausesThenOperatorRollsBackTheFleet) {
  start_orchestrator();
  auto devices = make_devices(3);
  wait_registered(3);
  const std::string artifact =
      uploaded_id(fotactl_ok("artifact upload " + make_bundle("fw", "2.0", 20 * 1024).string()));
  const std::string id = create_rollout("name: rb\nartifact: " + artifact +
                                        "\ntarget: {tags: [fleet]}\nretries: {max: 0}\nwaves:\n  - size: 2\n"
                                        "    failure_threshold: 0.4\n  - size: 100%\non_breach: pause\n");
  fotactl_ok("rollout start " + id);
  json r = api_get("/api/v1/rollouts/" + id);
  // Make the first wave's second device fail its install.
  std::vector<std::string> wave1;
  for (const auto& m : r["members"]) {
    if (m.value("wave", 0) == 1) wave1.push_back(m.value("device", ""));
  }
  ASSERT_EQ(wave1.size(), 2u);
  for (auto& d : devices) {
    if (d->id() == wave1[1]) d->fail_next = true;
  }
  r = pump_until(devices, id, [](const json& j) { return j["state"] == "paused"; });
  EXPECT_NE(r.value("reason", "").find("over the failure threshold"), std::string::npos) << r.dump();
  fotactl_ok("rollout rollback " + id);
  r = pump_until(devices, id, [](const json& j) { return j["state"] == "rolled_back"; });
  EXPECT_EQ(r["counts"].value("rolled_back", 0), 1);
  for (auto& d : devices) EXPECT_EQ(d->artifact(), kOldArtifact) << d->id();
  // The status is a summary (issue 16: it printed a line per device, 1,000 in the demo): the
  // counts by state and the failure with its error; the table only on request, filtered by state.
  CommandRun status = fotactl_ok("rollout status " + id);
  EXPECT_NE(status.output.find("devices: 3, 1 cancelled, 1 failed, 1 rolled_back"), std::string::npos)
      << status.output;
  EXPECT_NE(status.output.find("failed: " + wave1[1] + " (wave 1, attempt "), std::string::npos)
      << status.output;
  EXPECT_EQ(status.output.find("DEVICE"), std::string::npos) << status.output;
  status = fotactl_ok("rollout status " + id + " --state failed");
  EXPECT_NE(status.output.find("DEVICE"), std::string::npos) << status.output;
  EXPECT_NE(status.output.find(wave1[1]), std::string::npos) << status.output;
  EXPECT_EQ(status.output.find(wave1[0]), std::string::npos) << status.output;
  status = fotactl_ok("rollout status " + id + " --devices");
  for (auto& d : devices) EXPECT_NE(status.output.find(d->id()), std::string::npos) << status.output;
  status = fotactl("rollout status " + id + " --state broken");
  EXPECT_NE(status.exit_code, 0);
  EXPECT_NE(status.output.find("unknown member state 'broken'; use one of pending"), std::string::npos)
      << status.output;
}

TEST_F(OrchestratorServiceTest, DeployFastPathUpdatesOneDeviceAndShowsItsLogs) {
  start_orchestrator();
  auto devices = make_devices(1);
  wait_registered(1);
  const auto image = dir_.path() / "app.img";
  {
    std::ofstream out(image, std::ios::binary);
    for (int i = 0; i < 1024 * 1024; ++i) out.put(static_cast<char>(i * 7));
  }
  CommandRun result;
  const auto t0 = std::chrono::steady_clock::now();
  std::thread deploy([&] {
    result = fotactl("deploy --device dev-0 --key " + (dir_.path() / "release.key").string() + " " +
                     image.string());
  });
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  bool finished = false;
  while (!finished && std::chrono::steady_clock::now() < deadline) {
    devices[0]->pump(5ms);
    finished = devices[0]->installs > 0 && devices[0]->artifact() != kOldArtifact;
  }
  // Keep answering until fotactl returns.
  std::atomic<bool> stop{false};
  std::thread pumping([&] {
    while (!stop) devices[0]->pump(5ms);
  });
  deploy.join();
  stop = true;
  pumping.join();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(result.exit_code, 0) << result.output << read_log();
  EXPECT_NE(result.output.find("deployed to dev-0 in"), std::string::npos) << result.output;
  EXPECT_NE(result.output.find("dev-0: booted dev-"), std::string::npos)
      << result.output;  // the device's log
  EXPECT_NE(devices[0]->artifact(), kOldArtifact);
  std::printf("[ figure ] fotactl deploy, 1 MiB image, one device, loopback mTLS: %.2f s end to end\n",
              seconds);
  // The one-device rollout has ended, so the next deploy is not refused as overlapping.
  const json rollouts = api_get("/api/v1/rollouts");
  ASSERT_EQ(rollouts.size(), 1u);
  EXPECT_EQ(rollouts[0].value("state", ""), "completed");
}

}  // namespace
}  // namespace fota::testing

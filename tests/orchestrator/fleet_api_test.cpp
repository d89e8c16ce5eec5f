// SPDX-License-Identifier: Apache-2.0
// Fleet management through the real API: operator tags, static and dynamic groups, rollouts that
// target a group, filtering and keyset paging on every list, artifact deletion refused while a
// rollout uses it. The real fota-orchestrator process over a real mosquitto, driven with HTTP and
// the real fotactl, one token per role; its devices are seeded into the real SQLite file it opens.
#include <algorithm>
#include <chrono>
#include <fstream>
#include <set>
#include <thread>

#include <httplib.h>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "fota/common/codec.hpp"
#include "fota/common/topics.hpp"
#include "fota/orchestrator/store.hpp"
#include "fota/testing/broker.hpp"
#include "fota/testing/command.hpp"
#include "fota/testing/orchestrator_setup.hpp"
#include "fota/testing/postgres.hpp"
#include "fota/testing/signed_bundle.hpp"

namespace fota::testing {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using namespace std::chrono_literals;

constexpr const char* kAdminToken = "admin-token-0123456789abcdef";
constexpr const char* kOperatorToken = "operator-token-0123456789abcdef";
constexpr const char* kViewerToken = "viewer-token-0123456789abcdef";

std::string quoted(const fs::path& p) { return "'" + p.string() + "'"; }

struct Answer {
  int status = 0;
  json body;
  std::string next;  // X-Next-Cursor
  std::string link;
};

// The orchestrator on the back end backend() names: its SQLite file, or a fresh database in the
// test binary's PostgreSQL cluster (store: postgresql://...).
class FleetApi : public ::testing::Test {
 protected:
  virtual std::string backend() const { return "sqlite"; }
  void SetUp() override {
    pki_ = std::make_unique<TestPki>(dir_.path() / "pki");
    broker_ = std::make_unique<MosquittoBroker>(*pki_, dir_.path() / "broker");
    setup_ = write_orchestrator_setup(dir_.path(), *pki_, *broker_, "admin", kAdminToken);
    std::ifstream in(setup_.config);
    std::string config(std::istreambuf_iterator<char>(in), {});
    const auto at = config.find("\ntick_interval:");
    ASSERT_NE(at, std::string::npos) << config;
    config.insert(at, std::string("\n  - {name: olivia, token: ") + kOperatorToken +
                          ", role: operator}\n  - {name: victor, token: " + kViewerToken + ", role: viewer}");
    if (backend() == "postgresql") {
      store_url_ = PostgresCluster::shared().create_database();
      config += "store: " + store_url_ + "\n";
    } else {
      store_url_ = "sqlite:" + (dir_.path() / "data" / "state.db").string();
    }
    std::ofstream(setup_.config) << config;
  }
  void TearDown() override { stop_process(pid_); }

  // Devices as the orchestrator stores them, written into its database before it starts.
  void seed(const std::vector<orchestrator::DeviceRecord>& devices) {
    fs::create_directories(dir_.path() / "data");
    auto store = orchestrator::open_store(store_url_);
    ASSERT_TRUE(store.ok()) << store.error().message;
    auto st = (*store)->transaction([&]() -> common::Status {
      for (const auto& d : devices) {
        if (auto saved = (*store)->upsert_device(d); !saved) return saved;
      }
      return common::ok_status();
    });
    ASSERT_TRUE(st.ok()) << st.error().message;
  }
  static orchestrator::DeviceRecord device(const std::string& id, const std::string& hardware,
                                           const std::string& version, std::vector<std::string> tags = {}) {
    orchestrator::DeviceRecord d;
    d.facts.id = id;
    d.facts.hardware_type = hardware;
    d.facts.version = version;
    d.facts.artifact_id = "ffffffffffffffffffffffffffffffff";
    d.facts.time_zone = "UTC";
    d.facts.tags = std::move(tags);
    d.registered_ms = 1;
    return d;
  }

  void start() {
    log_ = dir_.path() / ("orchestrator-" + std::to_string(++starts_) + ".log");
    std::string failure;
    pid_ = spawn_until_ready(
        {FOTA_ORCHESTRATOR_PATH, "--config", setup_.config.string()}, log_,
        [&] {
          std::ifstream in(log_);
          return std::string(std::istreambuf_iterator<char>(in), {}).find("api on 127.0.0.1") !=
                 std::string::npos;
        },
        failure);
    ASSERT_GT(pid_, 0) << failure;
  }
  void restart() {
    stop_process(pid_);
    start();
  }

  // A device that registers the way devices do: its retained inventory over mTLS MQTT.
  void register_over_mqtt(const std::string& id) {
    auto client = std::make_unique<TestMqttClient>(
        broker_->uri(), id,
        TestMqttClient::Identity{pki_->ca_cert(), pki_->issue(common::Role::kDevice, id)});
    ASSERT_TRUE(client->connect().ok());
    v1::Inventory inv;
    inv.set_device_id(id);
    inv.set_hardware_type("pi-zero");  // in neither rollout of the paging test
    inv.set_version("1.0");
    inv.set_artifact_id("ffffffffffffffffffffffffffffffff");
    inv.set_time_zone("UTC");
    inv.set_reported_at_ms(wall_clock_ms());
    const common::TopicScheme topics;
    auto rc = client->publish(topics.device_topic(*common::DeviceId::parse(id), common::Channel::kInventory),
                              common::encode(inv), 1, true);
    ASSERT_TRUE(rc.ok() && *rc == 0);
    devices_.push_back(std::move(client));
    for (int i = 0; i < 200; ++i) {
      if (call("GET", "/api/v1/devices/" + id, kViewerToken).status == 200) return;
      std::this_thread::sleep_for(50ms);
    }
    FAIL() << "device " << id << " did not register";
  }

  std::string url() const { return "http://127.0.0.1:" + std::to_string(setup_.http_port); }

  Answer call(const std::string& method, const std::string& path, const char* token,
              const std::string& body = "") {
    httplib::Client client(url());
    client.set_bearer_token_auth(token);
    httplib::Result res = method == "GET"    ? client.Get(path.c_str())
                          : method == "PUT"  ? client.Put(path.c_str(), body, "application/json")
                          : method == "POST" ? client.Post(path.c_str(), body, "application/json")
                                             : client.Delete(path.c_str());
    Answer a;
    if (!res) return a;
    a.status = res->status;
    a.body = res->body.empty() ? json() : json::parse(res->body, nullptr, false);
    a.next = res->get_header_value("X-Next-Cursor");
    a.link = res->get_header_value("Link");
    return a;
  }
  static std::vector<std::string> ids(const json& list, const char* key = "id") {
    std::vector<std::string> out;
    for (const auto& item : list) out.push_back(item.value(key, ""));
    return out;
  }

  CommandRun fotactl(const std::string& args, const char* token) {
    return run_command("'" FOTACTL_PATH "' " + args + " --server " + url() + " --token " + token);
  }

  std::string upload(const std::string& version) {
    const fs::path bundle =
        make_signed_bundle(dir_.path(), setup_.release_key, BundleSpec{"fw-" + version, version, 16 * 1024});
    const CommandRun r = fotactl("artifact upload " + quoted(bundle), kAdminToken);
    EXPECT_EQ(r.exit_code, 0) << r.output;
    const auto pos = r.output.find("uploaded artifact ");
    return pos == std::string::npos ? "" : r.output.substr(pos + 18, 32);
  }

  TempDir dir_;
  std::unique_ptr<TestPki> pki_;
  std::unique_ptr<MosquittoBroker> broker_;
  OrchestratorSetup setup_;
  std::vector<std::unique_ptr<TestMqttClient>> devices_;
  pid_t pid_ = -1;
  int starts_ = 0;
  fs::path log_;
  std::string store_url_;
};

// Every fleet API test on both back ends, except the 100,000-device timing (SQLite, as measured).
class FleetApiTest : public FleetApi, public ::testing::WithParamInterface<std::string> {
 protected:
  std::string backend() const override { return GetParam(); }
};
using FleetApiSqliteTest = FleetApi;

// Tags and groups by role: a viewer reads, an operator sets them (audited under their name), and
// they survive a restart; a dynamic group is its selector, answered the same by the group and by
// the device list's filter.
TEST_P(FleetApiTest, OperatorsSetTagsAndGroupsViewersOnlyReadThem) {
  seed({device("rpi-a", "rpi4", "1.9", {"lab"}), device("rpi-b", "rpi4", "1.10"),
        device("rpi-c", "rpi4", "2.0"), device("gw-a", "gw-v2", "1.0", {"lab"}),
        device("gw-b", "gw-v2", "2.1")});
  start();

  // Tags: viewer refused, operator sets, bad names and unknown devices refused clearly.
  Answer a = call("PUT", "/api/v1/devices/rpi-c/tags/lab", kViewerToken);
  EXPECT_EQ(a.status, 403) << a.body;
  EXPECT_NE(a.body.dump().find("needs operator"), std::string::npos) << a.body;
  a = call("PUT", "/api/v1/devices/rpi-c/tags/lab", kOperatorToken);
  ASSERT_EQ(a.status, 200) << a.body;
  EXPECT_EQ(a.body["operator_tags"], json::array({"lab"}));
  a = call("PUT", "/api/v1/devices/rpi-c/tags/bad%20tag", kOperatorToken);
  EXPECT_EQ(a.status, 400) << a.body;
  EXPECT_NE(a.body.dump().find("tag 'bad tag' is not a valid name"), std::string::npos) << a.body;
  a = call("PUT", "/api/v1/devices/nobody/tags/lab", kOperatorToken);
  EXPECT_EQ(a.status, 404) << a.body;
  // A reported tag and an operator tag answer the same filter.
  EXPECT_EQ(ids(call("GET", "/api/v1/devices?tag=lab", kViewerToken).body),
            (std::vector<std::string>{"gw-a", "rpi-a", "rpi-c"}));
  // fotactl: tag and untag.
  CommandRun r = fotactl("device tag gw-b lab field", kOperatorToken);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("operator tags: field,lab"), std::string::npos) << r.output;
  r = fotactl("device tag gw-b lab --remove", kOperatorToken);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("operator tags: field"), std::string::npos) << r.output;
  r = fotactl("device tag gw-b lab", kViewerToken);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("needs operator"), std::string::npos) << r.output;

  // Static group through fotactl; a viewer cannot make one.
  r = fotactl("group create canary", kViewerToken);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  r = fotactl("group create canary", kOperatorToken);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = fotactl("group add canary rpi-a gw-b", kOperatorToken);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("group canary (static), 2 device(s): gw-b, rpi-a"), std::string::npos) << r.output;
  a = call("PUT", "/api/v1/groups/canary/members/nobody", kOperatorToken);
  EXPECT_EQ(a.status, 404) << a.body;
  a = call("POST", "/api/v1/groups", kOperatorToken, R"({"name": "canary"})");
  EXPECT_EQ(a.status, 409) << a.body;

  // Dynamic group: versions compare as versions (1.10 < 2.0), the selector is checked.
  a = call("POST", "/api/v1/groups", kOperatorToken,
           R"({"name": "old-rpi", "selector": "hardware=rpi4,version<2.0"})");
  ASSERT_EQ(a.status, 201) << a.body;
  EXPECT_EQ(a.body["kind"], "dynamic");
  EXPECT_EQ(a.body["members"], json::array({"rpi-a", "rpi-b"}));
  a = call("POST", "/api/v1/groups", kOperatorToken, R"({"name": "bad", "selector": "colour=red"})");
  EXPECT_EQ(a.status, 400) << a.body;
  EXPECT_NE(a.body.dump().find("unknown key 'colour'"), std::string::npos) << a.body;
  EXPECT_EQ(ids(call("GET", "/api/v1/devices?group=old-rpi", kViewerToken).body),
            (std::vector<std::string>{"rpi-a", "rpi-b"}));
  EXPECT_EQ(ids(call("GET", "/api/v1/devices?group=canary", kViewerToken).body),
            (std::vector<std::string>{"gw-b", "rpi-a"}));
  a = call("GET", "/api/v1/devices/rpi-a", kViewerToken);
  EXPECT_EQ(a.body["groups"], json::array({"canary", "old-rpi"})) << a.body;
  EXPECT_EQ(call("DELETE", "/api/v1/groups/old-rpi", kViewerToken).status, 403);

  // Audited under the caller's name; kept across a restart.
  const json audit = call("GET", "/api/v1/audit", kViewerToken).body;
  std::set<std::string> actions;
  for (const auto& e : audit) {
    if (e["actor"] == "token:olivia")
      actions.insert(e["action"].get<std::string>() + " " + e["detail"].get<std::string>());
  }
  EXPECT_TRUE(actions.count("device.tag rpi-c lab")) << audit;
  EXPECT_TRUE(actions.count("device.untag gw-b lab")) << audit;
  EXPECT_TRUE(actions.count("group.create canary static")) << audit;
  EXPECT_TRUE(actions.count("group.add canary rpi-a")) << audit;
  EXPECT_TRUE(actions.count("group.create old-rpi selector hardware=rpi4,version<2.0")) << audit;
  restart();
  EXPECT_EQ(call("GET", "/api/v1/groups/canary", kViewerToken).body["members"],
            json::array({"gw-b", "rpi-a"}));
  EXPECT_EQ(call("GET", "/api/v1/devices/gw-b", kViewerToken).body["operator_tags"], json::array({"field"}));
  EXPECT_EQ(ids(call("GET", "/api/v1/groups", kViewerToken).body, "name"),
            (std::vector<std::string>{"canary", "old-rpi"}));
  ASSERT_EQ(call("DELETE", "/api/v1/groups/canary", kOperatorToken).status, 204);
  EXPECT_EQ(call("GET", "/api/v1/groups/canary", kViewerToken).status, 404);
  EXPECT_EQ(call("GET", "/api/v1/devices/rpi-a", kViewerToken).body["groups"], json::array({"old-rpi"}));

  // Deleting a device (admin) decommissions it; its tags and memberships go with it, for good.
  ASSERT_EQ(call("POST", "/api/v1/groups", kOperatorToken, R"({"name": "keep"})").status, 201);
  ASSERT_EQ(call("PUT", "/api/v1/groups/keep/members/rpi-a", kOperatorToken).status, 200);
  ASSERT_EQ(call("PUT", "/api/v1/devices/rpi-a/tags/doomed", kOperatorToken).status, 200);
  EXPECT_EQ(call("DELETE", "/api/v1/devices/rpi-a", kOperatorToken).status, 403);
  a = call("DELETE", "/api/v1/devices/rpi-a", kAdminToken, R"({"reason": "scrapped"})");
  ASSERT_EQ(a.status, 200) << a.body;
  EXPECT_FALSE(a.body.value("decommissioned_at", "").empty()) << a.body;
  EXPECT_EQ(call("GET", "/api/v1/devices/rpi-a", kViewerToken).status, 404);
  EXPECT_EQ(call("GET", "/api/v1/groups/keep", kViewerToken).body["members"], json::array());
  EXPECT_EQ(call("GET", "/api/v1/groups/old-rpi", kViewerToken).body["members"], json::array({"rpi-b"}));
  EXPECT_TRUE(call("GET", "/api/v1/devices?tag=doomed", kViewerToken).body.empty());
  restart();
  EXPECT_EQ(call("GET", "/api/v1/groups/keep", kViewerToken).body["members"], json::array());
}

// A rollout that targets a group takes the group's members when it is created, and keeps them:
// a device added later is not in it. Its artifact cannot be deleted while it may still send it.
TEST_P(FleetApiTest, RolloutTargetingAGroupKeepsTheMembersOfItsCreation) {
  seed({device("d-1", "gw-v2", "1.0"), device("d-2", "gw-v2", "1.0"), device("d-3", "gw-v2", "1.0")});
  start();
  const std::string artifact = upload("2.0");
  ASSERT_EQ(call("POST", "/api/v1/groups", kOperatorToken, R"({"name": "canary"})").status, 201);
  ASSERT_EQ(call("PUT", "/api/v1/groups/canary/members/d-1", kOperatorToken).status, 200);
  ASSERT_EQ(call("PUT", "/api/v1/groups/canary/members/d-2", kOperatorToken).status, 200);
  std::ofstream(dir_.path() / "spec.yaml")
      << "name: canary-first\nartifact: " << artifact << "\ntarget: {group: canary}\n";
  CommandRun r = fotactl("rollout create --json -f " + quoted(dir_.path() / "spec.yaml"), kOperatorToken);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const json created = json::parse(r.output.substr(r.output.find('{')));
  const std::string id = created.value("id", "");
  EXPECT_EQ(created["spec"]["target"]["resolved_groups"]["canary"], json::array({"d-1", "d-2"})) << created;
  ASSERT_EQ(call("PUT", "/api/v1/groups/canary/members/d-3", kOperatorToken).status, 200);
  ASSERT_EQ(call("POST", "/api/v1/rollouts/" + id + "/start", kOperatorToken).status, 200);
  EXPECT_EQ(ids(call("GET", "/api/v1/rollouts/" + id + "/members", kViewerToken).body, "device"),
            (std::vector<std::string>{"d-1", "d-2"}));

  // In use: 409 naming the rollout; admin only; deletable once the rollout is aborted.
  EXPECT_EQ(call("DELETE", "/api/v1/artifacts/" + artifact, kOperatorToken).status, 403);
  Answer a = call("DELETE", "/api/v1/artifacts/" + artifact, kAdminToken);
  EXPECT_EQ(a.status, 409) << a.body;
  EXPECT_NE(a.body.dump().find("rollout " + id + " (running) installs it"), std::string::npos) << a.body;
  ASSERT_EQ(call("POST", "/api/v1/rollouts/" + id + "/abort", kOperatorToken).status, 200);
  r = fotactl("artifact delete " + artifact, kAdminToken);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(call("GET", "/api/v1/artifacts", kViewerToken).body.empty());
  EXPECT_EQ(call("GET", "/api/v1/artifacts/" + artifact, kViewerToken).status, 404);
}

// The artifact retention rule (docs/ORCHESTRATOR.md, "Artifact retention"), on demand and
// periodically: of one name and hardware, only what is older than min_age, not among the newest
// keep_last, not used by a rollout that may still send it and not running on a device goes; a dry
// run deletes nothing; every deletion is audited; admins only.
TEST_P(FleetApiTest, RetentionDeletesOnlyOldUnusedArtifactsAndAuditsEachDeletion) {
  {
    std::ofstream(setup_.config, std::ios::app)
        << "artifacts: {retention: {keep_last: 1, min_age: 8s, interval: 1h}}\n";
  }
  seed({device("gw-run", "gw-v2", "1.0")});
  start();
  auto upload_fw = [&](const std::string& version) {
    const fs::path bundle =
        make_signed_bundle(dir_.path(), setup_.release_key, BundleSpec{"fw", version, 16 * 1024});
    const CommandRun r = fotactl("artifact upload " + quoted(bundle), kAdminToken);
    EXPECT_EQ(r.exit_code, 0) << r.output;
    const auto pos = r.output.find("uploaded artifact ");
    return pos == std::string::npos ? std::string() : r.output.substr(pos + 18, 32);
  };
  const std::string a1 = upload_fw("2.0"), a2 = upload_fw("2.1"), a3 = upload_fw("2.2");
  std::this_thread::sleep_for(5ms);
  const std::string a4 = upload_fw("2.3");
  ASSERT_EQ(a4.size(), 32u);
  const auto uploaded = std::chrono::steady_clock::now();
  // gw-run runs a1 (as its inventory said), a rollout (created, not started) installs a3.
  stop_process(pid_);
  auto running = device("gw-run", "gw-v2", "2.0");
  running.facts.artifact_id = a1;
  seed({running});
  start();
  std::ofstream(dir_.path() / "spec.yaml")
      << "name: holds\nartifact: " << a3 << "\ntarget: {devices: [gw-run]}\n";
  CommandRun r = fotactl("rollout create --json -f " + quoted(dir_.path() / "spec.yaml"), kOperatorToken);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string rollout = json::parse(r.output.substr(r.output.find('{'))).value("id", "");

  // Too young yet: nothing would go.
  Answer a = call("POST", "/api/v1/artifacts/retention/run?dry_run=true", kAdminToken);
  ASSERT_EQ(a.status, 200) << a.body;
  EXPECT_TRUE(a.body["would_delete"].empty()) << a.body;
  EXPECT_EQ(a.body["kept"].size(), 4u) << a.body;
  EXPECT_NE(a.body.dump().find("younger than 8 s"), std::string::npos) << a.body;
  std::this_thread::sleep_until(uploaded + 9s);

  // Dry run: only a2 would go; a1 runs on gw-run, a3 is the rollout's, a4 is the newest.
  a = call("POST", "/api/v1/artifacts/retention/run?dry_run=true", kAdminToken);
  ASSERT_EQ(a.status, 200) << a.body;
  EXPECT_EQ(ids(a.body["would_delete"], "artifact_id"), std::vector<std::string>{a2}) << a.body;
  const std::string kept = a.body["kept"].dump();
  EXPECT_NE(kept.find("1 device(s) run it"), std::string::npos) << kept;
  EXPECT_NE(kept.find("rollout " + rollout + " (created) installs it"), std::string::npos) << kept;
  EXPECT_NE(kept.find("one of the newest 1 of fw on gw-v2"), std::string::npos) << kept;
  EXPECT_EQ(call("GET", "/api/v1/artifacts", kViewerToken).body.size(), 4u);
  r = fotactl("artifact prune --dry-run", kAdminToken);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("would delete 1 artifact(s) (dry run: nothing was deleted)"), std::string::npos)
      << r.output;
  EXPECT_EQ(call("GET", "/api/v1/artifacts", kViewerToken).body.size(), 4u);

  // Admins only; a bad parameter is named.
  EXPECT_EQ(call("POST", "/api/v1/artifacts/retention/run", kOperatorToken).status, 403);
  EXPECT_EQ(call("POST", "/api/v1/artifacts/retention/run?dry_run=maybe", kAdminToken).status, 400);
  EXPECT_EQ(call("GET", "/api/v1/artifacts", kViewerToken).body.size(), 4u);

  r = fotactl("artifact prune", kAdminToken);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("deleted 1 artifact(s)"), std::string::npos) << r.output;
  std::set<std::string> left;
  for (const auto& m : call("GET", "/api/v1/artifacts", kViewerToken).body)
    left.insert(m.value("artifact_id", ""));
  EXPECT_EQ(left, (std::set<std::string>{a1, a3, a4}));
  std::string audit = call("GET", "/api/v1/audit", kViewerToken).body.dump();
  EXPECT_NE(audit.find("artifact.delete"), std::string::npos) << audit;
  EXPECT_NE(audit.find(a2 + " (fw 2.1, retention: "), std::string::npos) << audit;

  // Periodically: the rollout aborted no longer holds a3; with a 1 s interval the orchestrator
  // deletes it by itself, audited as "retention".
  ASSERT_EQ(call("POST", "/api/v1/rollouts/" + rollout + "/abort", kOperatorToken).status, 200);
  stop_process(pid_);
  {
    std::ifstream in(setup_.config);
    std::string config(std::istreambuf_iterator<char>(in), {});
    config.replace(config.find("interval: 1h"), 12, "interval: 1s");
    std::ofstream(setup_.config) << config;
  }
  start();
  for (int i = 0; i < 100 && call("GET", "/api/v1/artifacts", kViewerToken).body.size() != 2; ++i)
    std::this_thread::sleep_for(100ms);
  left.clear();
  for (const auto& m : call("GET", "/api/v1/artifacts", kViewerToken).body)
    left.insert(m.value("artifact_id", ""));
  EXPECT_EQ(left, (std::set<std::string>{a1, a4}));
  bool by_retention = false;
  for (const auto& e : call("GET", "/api/v1/audit", kViewerToken).body) {
    by_retention |= e.value("actor", "") == "retention" && e.value("action", "") == "artifact.delete" &&
                    e.value("detail", "").find(a3) != std::string::npos;
  }
  EXPECT_TRUE(by_retention) << call("GET", "/api/v1/audit", kViewerToken).body.dump(2);
}

// Every list pages with an opaque cursor and filters in the orchestrator; a bad parameter is a
// 400 that names it.
TEST_P(FleetApiTest, EveryListPagesAndFiltersAndNamesABadParameter) {
  std::vector<orchestrator::DeviceRecord> fleet;
  for (int i = 0; i < 250; ++i) {
    char id[16];
    std::snprintf(id, sizeof id, "dev-%04d", i);
    fleet.push_back(device(id, i % 2 ? "rpi4" : "gw-v2", i % 5 ? "1." + std::to_string(i % 12) : "2.0"));
  }
  seed(fleet);
  start();

  // Three pages of 100, 100 and 50: every device once, in order, then no cursor.
  std::vector<std::string> seen;
  std::string cursor;
  int pages = 0;
  do {
    Answer a =
        call("GET", "/api/v1/devices?limit=100" + (cursor.empty() ? "" : "&cursor=" + cursor), kViewerToken);
    ASSERT_EQ(a.status, 200) << a.body;
    for (const auto& id : ids(a.body)) seen.push_back(id);
    if (pages == 0) {
      // Devices registering while an operator pages: one before the cursor (not on a later page),
      // one after it (on its page, once). Nothing is skipped or seen twice.
      register_over_mqtt("dev-0000a");
      register_over_mqtt("dev-0150a");
    }
    if (!a.next.empty()) {
      EXPECT_NE(a.link.find("rel=\"next\""), std::string::npos) << a.link;
    }
    cursor = a.next;
    ++pages;
  } while (!cursor.empty() && pages < 10);
  EXPECT_EQ(pages, 3);
  ASSERT_EQ(seen.size(), 251u);
  EXPECT_TRUE(std::is_sorted(seen.begin(), seen.end()));
  EXPECT_EQ(std::set<std::string>(seen.begin(), seen.end()).size(), 251u);
  EXPECT_EQ(std::count(seen.begin(), seen.end(), "dev-0150a"), 1);
  EXPECT_EQ(std::count(seen.begin(), seen.end(), "dev-0000a"), 0);

  // Filters, combined, answered by the store.
  std::size_t expected = 0;
  for (const auto& d : fleet) expected += d.facts.hardware_type == "rpi4" && d.facts.version != "2.0";
  const json old_rpi =
      call("GET", "/api/v1/devices?hardware=rpi4&version=%3C2.0&limit=1000", kViewerToken).body;
  EXPECT_EQ(old_rpi.size(), expected);
  for (const auto& d : old_rpi) EXPECT_EQ(d["hardware"], "rpi4");
  EXPECT_EQ(ids(call("GET", "/api/v1/devices?q=-012", kViewerToken).body),
            (std::vector<std::string>{"dev-0120", "dev-0121", "dev-0122", "dev-0123", "dev-0124", "dev-0125",
                                      "dev-0126", "dev-0127", "dev-0128", "dev-0129"}));
  EXPECT_EQ(ids(call("GET", "/api/v1/devices?online=true", kViewerToken).body),
            (std::vector<std::string>{"dev-0000a", "dev-0150a"}));  // the two connected
  EXPECT_EQ(call("GET", "/api/v1/devices?online=false&limit=1000", kViewerToken).body.size(), 250u);
  // fotactl pages through everything, or one page with the next cursor.
  CommandRun r = fotactl("device list --json --version 2.0", kViewerToken);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(json::parse(r.output.substr(r.output.find('[')), nullptr, false).size(), 50u);
  r = fotactl("device list --limit 10 --hardware rpi4", kViewerToken);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("next page: --cursor "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("dev-0019"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("dev-0021"), std::string::npos) << r.output;

  // Bad parameters name themselves.
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"/api/v1/devices?limit=0", "limit: '0' is not a whole number from 1 to 1000"},
      {"/api/v1/devices?limit=ten", "limit: 'ten'"},
      {"/api/v1/devices?cursor=zz", "cursor: 'zz' is not a cursor of the devices list"},
      {"/api/v1/devices?online=maybe", "online: "},
      {"/api/v1/devices?version=%3C%3C2", "version: "},
      {"/api/v1/devices?colour=red", "colour: GET /api/v1/devices takes no parameter 'colour'"},
      {"/api/v1/rollouts?state=sleeping", "state: 'sleeping' is not a rollout state"},
      {"/api/v1/events?limit=-1", "limit: "},
      {"/api/v1/audit?after=x", "after: "},
      {"/api/v1/artifacts?cursor=zz", "cursor: 'zz' is not a cursor of the artifacts list"},
  };
  for (const auto& [path, says] : bad) {
    Answer a = call("GET", path, kViewerToken);
    EXPECT_EQ(a.status, 400) << path << " " << a.body.dump().substr(0, 300);
    EXPECT_NE(a.body.dump().find(says), std::string::npos) << path << " " << a.body.dump().substr(0, 300);
  }
  // A cursor of one list is refused by another.
  Answer first = call("GET", "/api/v1/devices?limit=1", kViewerToken);
  Answer cross = call("GET", "/api/v1/events?cursor=" + first.next, kViewerToken);
  EXPECT_EQ(cross.status, 400) << cross.body;

  // Rollouts, their members, artifacts, events and audit page the same way.
  const std::string a1 = upload("2.0"), a2 = upload("2.1");
  std::vector<std::string> rollouts;
  for (const auto& [artifact, hw] : {std::pair{a1, "rpi4"}, std::pair{a2, "gw-v2"}}) {
    Answer created =
        call("POST", "/api/v1/rollouts", kOperatorToken,
             json{{"name", "r"}, {"artifact", artifact}, {"target", {{"hardware", {hw}}}}}.dump());
    ASSERT_EQ(created.status, 201) << created.body;
    rollouts.push_back(created.body["id"]);
    ASSERT_EQ(call("POST", "/api/v1/rollouts/" + rollouts.back() + "/start", kOperatorToken).status, 200);
  }
  std::sort(rollouts.begin(), rollouts.end());
  Answer page = call("GET", "/api/v1/rollouts?limit=1", kViewerToken);
  EXPECT_EQ(ids(page.body), std::vector<std::string>{rollouts[0]});
  page = call("GET", "/api/v1/rollouts?limit=1&cursor=" + page.next, kViewerToken);
  EXPECT_EQ(ids(page.body), std::vector<std::string>{rollouts[1]});
  EXPECT_TRUE(page.next.empty());
  EXPECT_EQ(call("GET", "/api/v1/rollouts?state=completed", kViewerToken).body.size(), 0u);
  std::vector<std::string> members;
  cursor.clear();
  do {
    Answer m = call(
        "GET",
        "/api/v1/rollouts/" + rollouts[0] + "/members?limit=40" + (cursor.empty() ? "" : "&cursor=" + cursor),
        kViewerToken);
    ASSERT_EQ(m.status, 200) << m.body;
    for (const auto& id : ids(m.body, "device")) members.push_back(id);
    cursor = m.next;
  } while (!cursor.empty());
  EXPECT_EQ(members.size(), 125u);
  EXPECT_TRUE(std::is_sorted(members.begin(), members.end()));
  page = call("GET", "/api/v1/artifacts?limit=1", kViewerToken);
  ASSERT_EQ(page.body.size(), 1u);
  EXPECT_EQ(call("GET", "/api/v1/artifacts?limit=1&cursor=" + page.next, kViewerToken).body.size(), 1u);
  // Events newest first; the next page goes on to older ones, none twice.
  Answer events = call("GET", "/api/v1/events?limit=5", kViewerToken);
  ASSERT_EQ(events.body.size(), 5u);
  Answer older = call("GET", "/api/v1/events?limit=5&cursor=" + events.next, kViewerToken);
  ASSERT_FALSE(older.body.empty());
  EXPECT_LT(older.body[0]["id"].get<std::int64_t>(), events.body[4]["id"].get<std::int64_t>());
  Answer audit = call("GET", "/api/v1/audit?limit=2", kViewerToken);
  ASSERT_EQ(audit.body.size(), 2u);
  Answer more = call("GET", "/api/v1/audit?limit=2&cursor=" + audit.next, kViewerToken);
  ASSERT_FALSE(more.body.empty());
  EXPECT_EQ(more.body[0]["seq"].get<std::int64_t>(), audit.body[1]["seq"].get<std::int64_t>() + 1);
}

// docs/BENCHMARKS.md: one page of the device list with 100,000 registered devices.
TEST_F(FleetApiSqliteTest, AHundredThousandDevicesPageInMilliseconds) {
  std::vector<orchestrator::DeviceRecord> fleet;
  fleet.reserve(100'000);
  for (int i = 0; i < 100'000; ++i) {
    char id[16];
    std::snprintf(id, sizeof id, "dev-%06d", i);
    fleet.push_back(device(id, i % 3 ? "rpi4" : "gw-v2", "1." + std::to_string(i % 20)));
  }
  seed(fleet);
  start();
  auto timed = [&](const std::string& path) {
    std::vector<double> ms;
    Answer a;
    for (int i = 0; i < 21; ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      a = call("GET", path, kViewerToken);
      ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
      EXPECT_EQ(a.status, 200) << a.body;
    }
    std::sort(ms.begin(), ms.end());
    std::printf("GET %s: median %.1f ms, max %.1f ms over 21 calls, %zu devices answered\n", path.c_str(),
                ms[10], ms.back(), a.body.size());
    return std::pair{ms[10], a};
  };
  auto [first_ms, first] = timed("/api/v1/devices?limit=50");
  EXPECT_EQ(first.body.size(), 50u);
  EXPECT_LT(first_ms, 250.0);
  // A page deep in the list costs the same (keyset, not offset).
  std::string deep = first.next;
  for (int i = 0; i < 3; ++i)
    deep = call("GET", "/api/v1/devices?limit=1000&cursor=" + deep, kViewerToken).next;
  auto [deep_ms, deep_page] = timed("/api/v1/devices?limit=50&cursor=" + deep);
  EXPECT_EQ(deep_page.body[0]["id"], "dev-003050");
  EXPECT_LT(deep_ms, 250.0);
  auto [filtered_ms, filtered] = timed("/api/v1/devices?limit=50&hardware=gw-v2&version=%3C1.5");
  EXPECT_EQ(filtered.body.size(), 50u);
  EXPECT_LT(filtered_ms, 250.0);
}

std::string backend_name(const ::testing::TestParamInfo<std::string>& param) { return param.param; }
INSTANTIATE_TEST_SUITE_P(Backends, FleetApiTest, ::testing::Values("sqlite", "postgresql"), backend_name);

}  // namespace
}  // namespace fota::testing

// SPDX-License-Identifier: Apache-2.0
// Certificate lifecycle end to end, as an operator and an attacker would meet it: the real
// fota-orchestrator, a real mosquitto with the fota plugin reading the deny list the orchestrator
// writes, real fota-device agents, fotactl with tokens of two roles, and mosquitto_sub holding a
// revoked device's certificate and key.
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <httplib.h>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <functional>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "fota/common/codec.hpp"
#include "fota/common/crypto.hpp"
#include "fota/common/pki.hpp"
#include "fota/testing/broker.hpp"
#include "fota/testing/command.hpp"
#include "fota/testing/orchestrator_setup.hpp"
#include "fota/testing/signed_bundle.hpp"

namespace fota::testing {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using namespace std::chrono_literals;

constexpr const char* kAdminToken = "admin-token-0123456789abcdef";
constexpr const char* kOperatorToken = "operator-token-0123456789abcdef";
constexpr const char* kViewerToken = "viewer-token-0123456789abcdef";

class CertificateLifecycleTest : public ::testing::Test {
 protected:
  void SetUp() override {
    pki_ = std::make_unique<TestPki>(dir_.path() / "pki");
    fs::create_directories(dir_.path() / "shared");
    deny_list_ = dir_.path() / "shared" / "deny.txt";
    std::ofstream(deny_list_) << "# written by the orchestrator once it runs\n";
    BrokerOptions options;
    options.with_plugin = true;
    options.plugin_options = {{"deny_list", deny_list_.string()}};
    broker_ = std::make_unique<MosquittoBroker>(*pki_, dir_.path() / "broker", options);
    setup_ = write_orchestrator_setup(dir_.path(), *pki_, *broker_, "admin-ann", kAdminToken);
    // A second caller with the operator role, and the deny list the broker reads.
    std::ifstream in(setup_.config);
    std::string config((std::istreambuf_iterator<char>(in)), {});
    const std::string tokens_end = "\n    role: admin";
    config.replace(config.find(tokens_end), tokens_end.size(),
                   tokens_end + "\n  - name: op-olga\n    token: " + kOperatorToken + "\n    role: operator" +
                       "\n  - name: view-vic\n    token: " + kViewerToken + "\n    role: viewer");
    config += "revocation:\n  deny_list: " + deny_list_.string() + "\n";
    std::ofstream(setup_.config) << config;
  }

  void TearDown() override {
    stop_orchestrator();
    for (pid_t pid : agents_) kill(pid, SIGTERM);
    for (pid_t pid : agents_) waitpid(pid, nullptr, 0);
  }

  void start_orchestrator() {
    httplib::Client http("127.0.0.1", setup_.http_port);
    std::string failure;
    pid_ = spawn_until_ready(
        {FOTA_ORCHESTRATOR_PATH, "--config", setup_.config.string()}, dir_.path() / "orchestrator.log",
        [&] {
          auto res = http.Get("/healthz");
          return res && res->status == 200;
        },
        failure);
    ASSERT_GT(pid_, 0) << failure;
  }

  void stop_orchestrator() { stop_process(pid_); }

  // The orchestrator renews device certificates with an issuing CA under the test root.
  void enable_renewal() {
    auto issuing = pki_->ca().create_issuing_ca("orchestrator", std::chrono::hours(24 * 365));
    ASSERT_TRUE(issuing.ok()) << issuing.error().message;
    issuing_dir_ = *issuing;
    std::ofstream(setup_.config, std::ios::app)
        << "pki:\n  issuing_ca: " << issuing_dir_.string() << "\n  device_cert_validity: 90d\n";
  }

  void start_agent(const std::string& id) { start_agent(id, pki_->issue(common::Role::kDevice, id)); }
  void start_agent(const std::string& id, const common::IssuedFiles& files, const std::string& extra = "") {
    const auto home = dir_.path() / id;
    fs::create_directories(home);
    std::ofstream(home / "device.yaml")
        << "device_id: " << id << "\nhardware_type: gw-v2\nbroker: " << broker_->uri()
        << "\nca: " << pki_->ca_cert().string() << "\ncert: " << files.cert.string()
        << "\nkey: " << files.key.string() << "\ntrust: " << setup_.trusted_keys.string()
        << "\ncommand_keys: " << setup_.command_keys.string() << "\nstate_dir: " << (home / "state").string()
        << "\nfactory_version: 1.0.0\ntime_zone: UTC\nlog_level: info\n"
        << extra;
    agents_.push_back(
        spawn({FOTA_DEVICE_PATH, "--config", (home / "device.yaml").string()}, home / "device.log"));
  }

  static std::string read(const fs::path& path) {
    std::ifstream in(path);
    return std::string((std::istreambuf_iterator<char>(in)), {});
  }

  std::string server(const char* token) const {
    return " --server http://127.0.0.1:" + std::to_string(setup_.http_port) + " --token " + token;
  }
  CommandRun fotactl(const std::string& args, const char* token = kAdminToken) {
    return run_command("'" FOTACTL_PATH "' " + args + server(token) + " 2>&1");
  }

  json api_get(const std::string& path) {
    httplib::Client http("127.0.0.1", setup_.http_port);
    http.set_bearer_token_auth(kAdminToken);
    auto res = http.Get(path.c_str());
    if (!res || res->status != 200) {
      ADD_FAILURE() << path << ": " << (res ? res->body : "no answer");
      return json();
    }
    return json::parse(res->body);
  }

  bool online(const std::string& id) {
    for (const auto& d : api_get("/api/v1/devices")) {
      if (d.value("id", "") == id) return d.value("online", false);
    }
    return false;
  }

  void wait_online(const std::vector<std::string>& ids) {
    for (int i = 0; i < 600; ++i) {
      bool all = true;
      for (const auto& id : ids) all = all && online(id);
      if (all) return;
      std::this_thread::sleep_for(50ms);
    }
    FAIL() << "devices did not come online:\n" << read(dir_.path() / "orchestrator.log");
  }

  // mosquitto_sub with a device's own certificate and key, as someone who copied them would use it.
  CommandRun mosquitto_sub_as(const std::string& id) {
    const auto files = pki_->issue(common::Role::kDevice, id);
    return run_command("timeout 15 mosquitto_sub -h 127.0.0.1 -p " + std::to_string(broker_->port()) +
                       " -V mqttv5 --cafile '" + pki_->ca_cert().string() + "' --cert '" +
                       files.cert.string() + "' --key '" + files.key.string() + "' -i " + id +
                       " -t fota/v1/dev/" + id + "/cmd -C 1 -W 3 2>&1");
  }

  // The orchestrator's counter `name` from /metrics (-1 when missing).
  long metric(const std::string& name) {
    httplib::Client http("127.0.0.1", setup_.http_port);
    http.set_bearer_token_auth(kAdminToken);
    auto res = http.Get("/metrics");
    if (!res || res->status != 200) return -1;
    const auto at = res->body.find("\n" + name + " ");
    if (at == std::string::npos) return -1;
    return std::stol(res->body.substr(at + name.size() + 2));
  }

  long wait_metric(const std::string& name, long at_least) {
    long value = -1;
    for (int i = 0; i < 400 && (value = metric(name)) < at_least; ++i) std::this_thread::sleep_for(50ms);
    return value;
  }

  std::vector<json> audit_of(const std::string& action) {
    std::vector<json> out;
    for (const auto& e : api_get("/api/v1/audit"))
      if (e.value("action", "") == action) out.push_back(e);
    return out;
  }

  // mosquitto_pub (a third-party client) with a device's certificate, publishing a file.
  CommandRun mosquitto_pub_as(const common::IssuedFiles& files, const std::string& id,
                              const std::string& topic, const fs::path& payload) {
    return run_command("timeout 15 mosquitto_pub -h 127.0.0.1 -p " + std::to_string(broker_->port()) +
                       " -V mqttv5 --cafile '" + pki_->ca_cert().string() + "' --cert '" +
                       files.cert.string() + "' --key '" + files.key.string() + "' -i " + id + " -t '" +
                       topic + "' -q 1 -f '" + payload.string() + "' 2>&1");
  }

  // The device's entry in GET /api/v1/devices/{id} (null when the call fails).
  json device(const std::string& id) { return api_get("/api/v1/devices/" + id); }

  // POST as the holder of `token`: the status and the parsed JSON body.
  std::pair<int, json> api_post(const std::string& path, const char* token, const std::string& body = "{}") {
    httplib::Client http("127.0.0.1", setup_.http_port);
    http.set_bearer_token_auth(token);
    auto res = http.Post(path.c_str(), body, "application/json");
    if (!res) return {0, json()};
    return {res->status, json::parse(res->body, nullptr, false)};
  }

  // The ISO-8601 time the API shows for seconds since the epoch.
  static std::string iso(std::int64_t seconds) {
    const std::time_t t = static_cast<std::time_t>(seconds);
    std::tm tm{};
    gmtime_r(&t, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
    return buf;
  }

  void wait_for(const std::function<bool()>& done, std::chrono::milliseconds limit, const std::string& what) {
    const auto start = std::chrono::steady_clock::now();
    while (!done()) {
      if (std::chrono::steady_clock::now() - start > limit) {
        ADD_FAILURE() << "timed out waiting for " << what << "\norchestrator:\n"
                      << read(dir_.path() / "orchestrator.log");
        return;
      }
      std::this_thread::sleep_for(50ms);
    }
  }

  TempDir dir_;
  fs::path issuing_dir_;
  std::unique_ptr<TestPki> pki_;
  std::unique_ptr<MosquittoBroker> broker_;
  OrchestratorSetup setup_;
  fs::path deny_list_;
  pid_t pid_ = -1;
  std::vector<pid_t> agents_;
};

TEST_F(CertificateLifecycleTest, RevokedDeviceIsDisconnectedWithinSecondsRefusedAfterAndDecommissioned) {
  start_orchestrator();
  start_agent("dev-stolen");
  start_agent("dev-fine");
  wait_online({"dev-stolen", "dev-fine"});

  // Revocation is the admin's: an operator is refused and nothing changes.
  CommandRun r = fotactl("device revoke dev-stolen --reason 'stolen from site 4'", kOperatorToken);
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("needs admin"), std::string::npos) << r.output;
  EXPECT_EQ(read(deny_list_).find("dev-stolen"), std::string::npos);

  const auto revoked_at = std::chrono::steady_clock::now();
  r = fotactl("device revoke dev-stolen --reason 'stolen from site 4'");
  ASSERT_EQ(r.exit_code, 0) << r.output << read(dir_.path() / "orchestrator.log");
  EXPECT_NE(r.output.find("device dev-stolen revoked"), std::string::npos) << r.output;
  EXPECT_NE(read(deny_list_).find("\ndev-stolen\n"), std::string::npos) << read(deny_list_);

  // The plugin notices the new file by itself and disconnects the device.
  const std::string kicked = "disconnecting \"dev-stolen\": revoked by the deny list";
  while (broker_->log().find(kicked) == std::string::npos &&
         std::chrono::steady_clock::now() - revoked_at < 10s) {
    std::this_thread::sleep_for(20ms);
  }
  const auto took = std::chrono::steady_clock::now() - revoked_at;
  ASSERT_NE(broker_->log().find(kicked), std::string::npos) << broker_->log();
  EXPECT_LT(took, 5s);
  std::printf("[ figure ] fotactl device revoke -> broker disconnected the device after %lld ms\n",
              static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(took).count()));
  EXPECT_EQ(broker_->log().find("disconnecting \"dev-fine\""), std::string::npos);

  // Its own certificate and key in a third-party client: CONNECT refused (and fota-device's
  // reconnects are refused the same way).
  r = mosquitto_sub_as("dev-stolen");
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_NE(broker_->log().find("is on the deny list"), std::string::npos) << broker_->log();
  // The other device is untouched.
  EXPECT_TRUE(online("dev-fine"));

  json devices = api_get("/api/v1/devices");
  for (const auto& d : devices)
    EXPECT_EQ(d.value("revoked", true), d.value("id", "") == "dev-stolen") << d.dump();
  // No rollout takes a revoked device on.
  const fs::path bundle = make_signed_bundle(dir_.path(), setup_.release_key, BundleSpec{"fw", "2.0", 4096});
  r = fotactl("artifact upload " + bundle.string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string artifact = r.output.substr(r.output.find("uploaded artifact ") + 18, 32);
  std::ofstream(dir_.path() / "named.yaml")
      << "name: named\nartifact: " << artifact << "\ntarget: {devices: [dev-stolen]}\n";
  r = fotactl("rollout create -f " + (dir_.path() / "named.yaml").string(), kOperatorToken);
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("is revoked"), std::string::npos) << r.output;

  // Decommissioned: out of the inventory, still refused, its history kept.
  r = fotactl("device decommission dev-stolen --reason 'written off'", kOperatorToken);
  EXPECT_NE(r.exit_code, 0) << r.output;
  r = fotactl("device decommission dev-stolen --reason 'written off'");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("device dev-stolen decommissioned"), std::string::npos) << r.output;
  devices = api_get("/api/v1/devices");
  ASSERT_EQ(devices.size(), 1u) << devices.dump();
  EXPECT_EQ(devices[0].value("id", ""), "dev-fine");
  const json revocations = api_get("/api/v1/revocations");
  ASSERT_EQ(revocations.size(), 1u);
  EXPECT_EQ(revocations[0].value("reason", ""), "stolen from site 4");
  EXPECT_NE(revocations[0].value("decommissioned_at", ""), "");
  EXPECT_FALSE(api_get("/api/v1/events?device=dev-stolen").empty());
  std::size_t revoke_entries = 0, decommission_entries = 0;
  for (const auto& e : api_get("/api/v1/audit")) {
    if (e.value("action", "") == "device.revoke") {
      ++revoke_entries;
      EXPECT_EQ(e.value("actor", ""), "token:admin-ann");
      EXPECT_NE(e.value("detail", "").find("stolen from site 4"), std::string::npos);
    }
    decommission_entries += e.value("action", "") == "device.decommission" ? 1 : 0;
  }
  EXPECT_EQ(revoke_entries, 1u);
  EXPECT_EQ(decommission_entries, 1u);
  r = fotactl("audit verify");
  EXPECT_EQ(r.exit_code, 0) << r.output;

  // The store is the authority: a deny list lost meanwhile is rewritten at start-up (and the
  // plugin keeps the list in force while the file is missing).
  stop_orchestrator();
  fs::remove(deny_list_);
  start_orchestrator();
  EXPECT_NE(read(deny_list_).find("\ndev-stolen\n"), std::string::npos) << read(deny_list_);
  r = mosquitto_sub_as("dev-stolen");
  EXPECT_NE(r.exit_code, 0) << r.output;
}

// A device whose certificate ends soon renews it by itself over MQTT: a new key and CSR, signed by
// the orchestrator's issuing CA, checked, installed, and the device reconnects with it; the old
// certificate's serial can then be revoked without touching the device.
// With either MQTT adapter of fota-device (both read the certificate files at connect).
class CertificateRenewalTest : public CertificateLifecycleTest,
                               public ::testing::WithParamInterface<std::string> {};

TEST_P(CertificateRenewalTest, DeviceRenewsItsExpiringCertificateByItselfAndStaysConnected) {
  enable_renewal();
  start_orchestrator();
  common::IssueOptions short_lived;
  short_lived.role = common::Role::kDevice;
  short_lived.common_name = "dev-renew";
  short_lived.not_after = std::chrono::hours(2);
  const auto old_files = pki_->issue_custom(short_lived, "dev-renew-short");
  const auto old_identity = common::peer_identity_from_pem(read(old_files.cert));
  ASSERT_TRUE(old_identity.ok());
  // Renewal is due: the certificate ends within renew_before.
  start_agent("dev-renew", old_files,
              "transport: " + GetParam() + "\ncertificate:\n  renew_before: 1d\n  retry_initial: 1s\n");
  const auto started = std::chrono::steady_clock::now();

  const fs::path renewed = dir_.path() / "dev-renew" / "state" / "identity" / "current" / "device.crt";
  const std::string device_log = (dir_.path() / "dev-renew" / "device.log").string();
  while (!fs::exists(renewed) && std::chrono::steady_clock::now() - started < 30s)
    std::this_thread::sleep_for(50ms);
  ASSERT_TRUE(fs::exists(renewed)) << read(device_log) << read(dir_.path() / "orchestrator.log");
  const auto took = std::chrono::steady_clock::now() - started;
  std::printf("[ figure ] fota-device start -> renewed certificate installed after %lld ms\n",
              static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(took).count()));
  // The new pair: its own key, the issuing CA's chain up to the root, 90 days.
  const std::string chain = read(renewed);
  const std::string key = read(renewed.parent_path() / "device.key");
  struct stat st {};
  ASSERT_EQ(::stat((renewed.parent_path() / "device.key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto verified = common::verify_certificate_chain(chain, read(pki_->ca_cert()), key, std::time(nullptr));
  ASSERT_TRUE(verified.ok()) << verified.error().message;
  EXPECT_EQ(verified->identity.common_name, "dev-renew");
  EXPECT_NE(verified->identity.serial_hex, old_identity->serial_hex);
  EXPECT_GT(verified->not_after, std::time(nullptr) + 89 * 86'400);
  CommandRun r = run_command("openssl verify -CAfile '" + pki_->ca_cert().string() + "' -untrusted '" +
                             (issuing_dir_ / "ca.crt").string() + "' '" + renewed.string() + "' 2>&1");
  EXPECT_EQ(r.exit_code, 0) << r.output;

  // Audited and counted; the device is back online with the new certificate.
  EXPECT_EQ(wait_metric("fota_certificates_issued_total", 1), 1);
  const auto issued = audit_of("certificate.issued");
  ASSERT_EQ(issued.size(), 1u);
  EXPECT_NE(issued[0].value("detail", "").find(verified->identity.serial_hex), std::string::npos)
      << issued[0].dump();
  // Back online with the new pair: "reconnecting with it" is logged when the pair is installed,
  // before the old connection closes, so wait for the connection made with the renewed file (the
  // deny list below must not meet the old connection still open).
  const auto reconnected = [&] {
    const std::string log = read(device_log);
    const auto with_new = log.find("connecting with " + renewed.string());
    return with_new != std::string::npos && log.find("connected to ", with_new) != std::string::npos;
  };
  for (int i = 0; i < 400 && !reconnected(); ++i) std::this_thread::sleep_for(50ms);
  ASSERT_TRUE(reconnected()) << read(device_log);
  // Reconnected with the new pair: the inventory of the new session carries its end (the old
  // session may still look online for a moment after the swap).
  wait_for(
      [&] {
        return device("dev-renew").value("certificate_not_after", "").rfind(iso(verified->not_after), 0) == 0;
      },
      20s, "the renewed certificate's end in the inventory");
  wait_online({"dev-renew"});
  ASSERT_TRUE(online("dev-renew")) << read(device_log) << broker_->log();
  EXPECT_NE(read(device_log).find("reconnecting with it"), std::string::npos) << read(device_log);

  // The old serial revoked at the broker: the device is not disconnected (it no longer uses it),
  // a client presenting the old pair is refused.
  const auto reloads = [&] {
    const std::string log = broker_->log();
    std::size_t n = 0;
    for (auto at = log.find("deny list reloaded"); at != std::string::npos;
         at = log.find("deny list reloaded", at + 1))
      ++n;
    return n;
  };
  const std::size_t reloaded_before = reloads();
  std::ofstream(deny_list_, std::ios::app) << "serial:" << old_identity->serial_hex << "\n";
  // The plugin notices the file by itself (deny_list_check_seconds); wait for it before trying.
  for (int i = 0; i < 200 && reloads() == reloaded_before; ++i) std::this_thread::sleep_for(50ms);
  ASSERT_GT(reloads(), reloaded_before) << broker_->log();
  r = run_command("timeout 15 mosquitto_sub -h 127.0.0.1 -p " + std::to_string(broker_->port()) +
                  " -V mqttv5 --cafile '" + pki_->ca_cert().string() + "' --cert '" +
                  old_files.cert.string() + "' --key '" + old_files.key.string() +
                  "' -i dev-renew -t fota/v1/dev/dev-renew/cmd -C 1 -W 3 2>&1");
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_NE(broker_->log().find("is on the deny list"), std::string::npos) << broker_->log();
  EXPECT_EQ(broker_->log().find("disconnecting \"dev-renew\""), std::string::npos) << broker_->log();
  std::this_thread::sleep_for(1s);
  EXPECT_TRUE(online("dev-renew"));
  // Not renewed again: the new certificate is far from its end.
  EXPECT_EQ(metric("fota_certificates_issued_total"), 1);
}

INSTANTIATE_TEST_SUITE_P(Transports, CertificateRenewalTest, ::testing::Values("paho", "mosquitto"),
                         [](const ::testing::TestParamInfo<std::string>& param) { return param.param; });

// Renewal requests as an attacker would send them, with a device's own certificate and key.
TEST_F(CertificateLifecycleTest, RenewalRequestsForAnotherIdentityAreRefused) {
  enable_renewal();
  start_orchestrator();
  const auto dev1 = pki_->issue(common::Role::kDevice, "dev-1");
  // A CSR for dev-2 made with openssl, the way an attacker holding dev-1's pair would.
  const fs::path csr = dir_.path() / "dev-2.csr";
  CommandRun r =
      run_command("openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout '" +
                  (dir_.path() / "dev-2.key").string() + "' -subj '/O=fota/OU=device/CN=dev-2' -out '" +
                  csr.string() + "' 2>&1");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto request = [&](const std::string& device_id, const std::string& file) {
    v1::CertificateRequest req;
    req.set_device_id(device_id);
    req.set_request_id("attack-" + device_id);
    req.set_csr_pem(read(csr));
    const fs::path path = dir_.path() / file;
    std::ofstream(path, std::ios::binary) << common::encode(req);
    return path;
  };
  // 1. On dev-2's topic: the broker's ACL refuses it (a device publishes only under its own id).
  r = mosquitto_pub_as(dev1, "dev-1", "fota/v1/dev/dev-2/csr", request("dev-2", "to-dev-2.bin"));
  // 2. On its own topic, asking for dev-2: the orchestrator refuses it, audited and counted.
  CommandRun own = mosquitto_pub_as(dev1, "dev-1", "fota/v1/dev/dev-1/csr", request("dev-1", "own.bin"));
  EXPECT_EQ(own.exit_code, 0) << own.output;
  EXPECT_EQ(wait_metric("fota_certificate_requests_refused_total", 1), 1)
      << read(dir_.path() / "orchestrator.log");
  std::this_thread::sleep_for(500ms);
  EXPECT_EQ(metric("fota_certificate_requests_refused_total"), 1);  // the first never arrived
  EXPECT_EQ(metric("fota_certificates_issued_total"), 0);
  const auto refused = audit_of("certificate.refused");
  ASSERT_EQ(refused.size(), 1u);
  EXPECT_EQ(refused[0].value("actor", ""), "device:dev-1");
  EXPECT_NE(refused[0].value("detail", "").find("dev-2"), std::string::npos) << refused[0].dump();
  EXPECT_NE(
      read(dir_.path() / "orchestrator.log").find("refused certificate request attack-dev-1 of device dev-1"),
      std::string::npos);
  // 3. Garbage as a CSR on its own topic: refused by the orchestrator, which keeps running.
  const fs::path junk = dir_.path() / "junk.bin";
  {
    v1::CertificateRequest req;
    req.set_device_id("dev-1");
    req.set_request_id("junk");
    req.set_csr_pem("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n");
    std::ofstream(junk, std::ios::binary) << common::encode(req);
  }
  EXPECT_EQ(mosquitto_pub_as(dev1, "dev-1", "fota/v1/dev/dev-1/csr", junk).exit_code, 0);
  EXPECT_EQ(wait_metric("fota_certificate_requests_refused_total", 2), 2);
  EXPECT_EQ(metric("fota_certificates_issued_total"), 0);
}

// Without pki.issuing_ca the orchestrator refuses renewal requests with a line that says what to set.
TEST_F(CertificateLifecycleTest, RenewalWithoutAnIssuingCaIsRefusedWithAClearLogLine) {
  start_orchestrator();
  const auto dev1 = pki_->issue(common::Role::kDevice, "dev-1");
  auto made = common::make_certificate_request("dev-1", common::Role::kDevice);
  ASSERT_TRUE(made.ok());
  v1::CertificateRequest req;
  req.set_device_id("dev-1");
  req.set_request_id("r1");
  req.set_csr_pem(made->csr_pem);
  const fs::path path = dir_.path() / "req.bin";
  std::ofstream(path, std::ios::binary) << common::encode(req);
  EXPECT_EQ(mosquitto_pub_as(dev1, "dev-1", "fota/v1/dev/dev-1/csr", path).exit_code, 0);
  EXPECT_EQ(wait_metric("fota_certificate_requests_refused_total", 1), 1);
  EXPECT_NE(read(dir_.path() / "orchestrator.log").find("set pki.issuing_ca"), std::string::npos)
      << read(dir_.path() / "orchestrator.log");
}

// Bad input to the lifecycle routes gets a clear error and changes nothing.
TEST_F(CertificateLifecycleTest, BadLifecycleRequestsAreRefusedClearly) {
  start_orchestrator();
  CommandRun r = fotactl("device revoke 'dev/../x'");
  EXPECT_NE(r.exit_code, 0) << r.output;
  httplib::Client http("127.0.0.1", setup_.http_port);
  http.set_bearer_token_auth(kAdminToken);
  auto res = http.Post("/api/v1/devices/dev-1/revoke", "[1,2]", "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 400) << res->body;
  EXPECT_NE(res->body.find("reason"), std::string::npos) << res->body;
  res = http.Post("/api/v1/devices/dev-1/revoke", json{{"reason", std::string(4096, 'x')}}.dump(),
                  "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 400) << res->body;
  EXPECT_TRUE(api_get("/api/v1/revocations").empty());
  // Without a token: 401; as a viewer of the list: fine.
  httplib::Client anonymous("127.0.0.1", setup_.http_port);
  res = anonymous.Post("/api/v1/devices/dev-1/revoke", "{}", "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 401) << res->body;
  // An id never seen is revoked ahead of it, with a note.
  r = fotactl("device revoke dev-not-yet-built");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("was not in the inventory"), std::string::npos) << r.output;
}

// The operator forces a renewal (`fotactl device renew-cert`, operator role) of a device whose
// certificate is far from its end: the signed RenewCertificateCommand reaches the real fota-device,
// which makes a new key and request; the issuing CA signs it; the device installs the new pair,
// reconnects, and the API shows the new certificate's end. A viewer is refused; an unknown device
// is 404, a revoked one 409, a bad body 400.
TEST_F(CertificateLifecycleTest, OperatorForcesARenewalWithFotactlAndTheDeviceComesBackWithTheNewSerial) {
  enable_renewal();
  start_orchestrator();
  const auto files = pki_->issue(common::Role::kDevice, "dev-force");
  const auto old_identity = common::peer_identity_from_pem(read(files.cert));
  ASSERT_TRUE(old_identity.ok());
  const auto old_end = common::certificate_not_after(read(files.cert));
  ASSERT_TRUE(old_end.ok());
  start_agent("dev-force", files, "certificate:\n  retry_initial: 1s\n");
  wait_online({"dev-force"});

  // The certificate's end as the device reports it, in the device and the list, and in fotactl.
  wait_for([&] { return device("dev-force").contains("certificate_not_after"); }, 10s,
           "the device's certificate_not_after");
  EXPECT_EQ(device("dev-force").value("certificate_not_after", "").rfind(iso(*old_end), 0), 0u)
      << device("dev-force").dump();
  for (const auto& d : api_get("/api/v1/devices"))
    EXPECT_EQ(d.value("certificate_not_after", "").rfind(iso(*old_end), 0), 0u) << d.dump();
  CommandRun r = fotactl("device show dev-force", kViewerToken);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("certificate_not_after: " + iso(*old_end)), std::string::npos) << r.output;
  // Far from its end: not renewed by itself.
  std::this_thread::sleep_for(300ms);
  EXPECT_EQ(metric("fota_certificates_issued_total"), 0);

  // A viewer may not; nor can anyone for an unknown or revoked device, or with a bad body.
  r = fotactl("device renew-cert dev-force", kViewerToken);
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("needs operator"), std::string::npos) << r.output;
  auto [status, body] = api_post("/api/v1/devices/dev-force/renew-certificate", kViewerToken);
  EXPECT_EQ(status, 403) << body.dump();
  std::tie(status, body) = api_post("/api/v1/devices/dev-nobody/renew-certificate", kOperatorToken);
  EXPECT_EQ(status, 404) << body.dump();
  EXPECT_NE(body.dump().find("not registered"), std::string::npos) << body.dump();
  ASSERT_EQ(fotactl("device revoke dev-gone --reason lost").exit_code, 0);
  std::tie(status, body) = api_post("/api/v1/devices/dev-gone/renew-certificate", kOperatorToken);
  EXPECT_EQ(status, 409) << body.dump();
  EXPECT_NE(body.dump().find("is revoked"), std::string::npos) << body.dump();
  std::tie(status, body) = api_post("/api/v1/devices/dev-force/renew-certificate", kOperatorToken, "[1]");
  EXPECT_EQ(status, 400) << body.dump();
  EXPECT_TRUE(audit_of("certificate.renew").empty());

  const auto asked = std::chrono::steady_clock::now();
  r = fotactl("device renew-cert dev-force --reason 'key rotation drill'", kOperatorToken);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("asked device dev-force to renew its certificate"), std::string::npos) << r.output;
  const fs::path renewed = dir_.path() / "dev-force" / "state" / "identity" / "current" / "device.crt";
  const std::string device_log = (dir_.path() / "dev-force" / "device.log").string();
  wait_for([&] { return fs::exists(renewed); }, 30s, "the renewed certificate");
  ASSERT_TRUE(fs::exists(renewed)) << read(device_log);
  const auto took = std::chrono::steady_clock::now() - asked;
  std::printf("[ figure ] fotactl device renew-cert -> renewed certificate installed after %lld ms\n",
              static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(took).count()));
  EXPECT_NE(read(device_log).find("renewing now"), std::string::npos) << read(device_log);
  auto verified = common::verify_certificate_chain(
      read(renewed), read(pki_->ca_cert()), read(renewed.parent_path() / "device.key"), std::time(nullptr));
  ASSERT_TRUE(verified.ok()) << verified.error().message;
  EXPECT_EQ(verified->identity.common_name, "dev-force");
  EXPECT_NE(verified->identity.serial_hex, old_identity->serial_hex);

  // Back online with it: the inventory of the new connection carries the new end.
  wait_for(
      [&] {
        return device("dev-force").value("certificate_not_after", "").rfind(iso(verified->not_after), 0) == 0;
      },
      20s, "the new certificate_not_after");
  wait_online({"dev-force"});
  EXPECT_EQ(metric("fota_certificates_issued_total"), 1);
  const auto renew = audit_of("certificate.renew");
  ASSERT_EQ(renew.size(), 1u);
  EXPECT_EQ(renew[0].value("actor", ""), "token:op-olga");
  EXPECT_NE(renew[0].value("detail", "").find("key rotation drill"), std::string::npos) << renew[0].dump();
  const auto issued = audit_of("certificate.issued");
  ASSERT_EQ(issued.size(), 1u);
  EXPECT_NE(issued[0].value("detail", "").find(verified->identity.serial_hex), std::string::npos);
  EXPECT_EQ(fotactl("audit verify").exit_code, 0);
}

// A CertificateIssued that a compromised issuing path would send: signed with the orchestrator's
// command key (so it passes the command signature) and answering the device's pending request,
// but for a key the device did not make. The device refuses it, keeps its certificate, and reports
// ERROR_CERTIFICATE_REFUSED, which the orchestrator shows in the device's events and last error
// and counts.
TEST_F(CertificateLifecycleTest, ACertificateForAnotherKeyIsRefusedReportedAndTheOldOneKept) {
  // No issuing CA: the orchestrator refuses the device's request, which stays pending on the device.
  start_orchestrator();
  common::IssueOptions short_lived;
  short_lived.role = common::Role::kDevice;
  short_lived.common_name = "dev-victim";
  short_lived.not_after = std::chrono::hours(2);
  const auto files = pki_->issue_custom(short_lived, "dev-victim-short");
  start_agent("dev-victim", files, "certificate:\n  renew_before: 1d\n  response_timeout: 10m\n");
  const std::string device_log = (dir_.path() / "dev-victim" / "device.log").string();
  const std::string marker = "requested a certificate (request ";
  wait_for([&] { return read(device_log).find(marker) != std::string::npos; }, 20s, "the device's request");
  const std::string log = read(device_log);
  const auto at = log.find(marker);
  ASSERT_NE(at, std::string::npos) << log;
  const std::string request_id = log.substr(at + marker.size(), log.find(')', at) - at - marker.size());
  wait_online({"dev-victim"});

  // A certificate from a CA under the fleet root, with the right CN and role, for someone else's key.
  auto rogue_dir = pki_->ca().create_issuing_ca("rogue", std::chrono::hours(24 * 30));
  ASSERT_TRUE(rogue_dir.ok()) << rogue_dir.error().message;
  auto rogue = common::CertificateAuthority::open(*rogue_dir);
  ASSERT_TRUE(rogue.ok()) << rogue.error().message;
  auto theirs = common::make_certificate_request("dev-victim", common::Role::kDevice);
  ASSERT_TRUE(theirs.ok());
  auto cert =
      rogue->sign_request(theirs->csr_pem, "dev-victim", common::Role::kDevice, std::chrono::hours(24 * 90));
  ASSERT_TRUE(cert.ok()) << cert.error().message;
  const auto now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  v1::Command cmd;
  cmd.set_command_id("forged-cert-1");
  cmd.set_device_id("dev-victim");
  cmd.set_issued_at_ms(now_ms);
  cmd.set_expires_at_ms(now_ms + 60'000);
  cmd.mutable_certificate_issued()->set_request_id(request_id);
  cmd.mutable_certificate_issued()->set_chain_pem(cert->cert_pem);
  auto command_key = common::Ed25519PrivateKey::load(pki_->command_key().private_key);
  ASSERT_TRUE(command_key.ok()) << command_key.error().message;
  auto payload = common::sign_command(cmd, *command_key);
  ASSERT_TRUE(payload.ok()) << payload.error().message;
  const fs::path file = dir_.path() / "forged.pb";
  std::ofstream(file, std::ios::binary) << *payload;
  const auto mallory = pki_->issue(common::Role::kOrchestrator, "mallory");
  CommandRun r = mosquitto_pub_as(mallory, "mallory", "fota/v1/dev/dev-victim/cmd", file);
  ASSERT_EQ(r.exit_code, 0) << r.output;

  EXPECT_EQ(wait_metric("fota_certificates_refused_by_devices_total", 1), 1) << read(device_log);
  bool seen = false;
  for (const auto& e : api_get("/api/v1/events?device=dev-victim")) {
    if (e.value("kind", "") != "certificate") continue;
    seen = true;
    EXPECT_NE(e.value("detail", "").find("ERROR_CERTIFICATE_REFUSED"), std::string::npos) << e.dump();
    EXPECT_NE(e.value("detail", "").find("forged-cert-1"), std::string::npos) << e.dump();
    EXPECT_NE(e.value("detail", "").find("keeps its current certificate"), std::string::npos) << e.dump();
  }
  EXPECT_TRUE(seen) << api_get("/api/v1/events?device=dev-victim").dump();
  EXPECT_NE(device("dev-victim").value("last_error", "").find("ERROR_CERTIFICATE_REFUSED"), std::string::npos)
      << device("dev-victim").dump();
  // The old pair stays in use: nothing installed, still online with it.
  EXPECT_FALSE(fs::exists(dir_.path() / "dev-victim" / "state" / "identity" / "current")) << read(device_log);
  EXPECT_NE(read(device_log).find("the current certificate stays"), std::string::npos) << read(device_log);
  EXPECT_TRUE(online("dev-victim"));
  EXPECT_EQ(device("dev-victim").value("last_phase", "").find("FAILED"), std::string::npos)
      << device("dev-victim").dump();
}

// A device floods its csr topic with mosquitto_pub, and others flood theirs with garbage: the
// orchestrator signs the flooder once, handles at most pki.max_pending_requests requests per
// minute (each audited), and drops and counts the rest.
TEST_F(CertificateLifecycleTest, AFloodOfCertificateRequestsIsSignedOnceAndBoundedByMaxPendingRequests) {
  enable_renewal();
  std::ofstream(setup_.config, std::ios::app) << "  max_pending_requests: 4\n";
  start_orchestrator();
  auto made = common::make_certificate_request("dev-1", common::Role::kDevice);
  ASSERT_TRUE(made.ok());
  auto write_request = [&](const std::string& id, const std::string& csr) {
    v1::CertificateRequest req;
    req.set_device_id(id);
    req.set_request_id("flood-" + id);
    req.set_csr_pem(csr);
    const fs::path path = dir_.path() / (id + ".csr.pb");
    std::ofstream(path, std::ios::binary) << common::encode(req);
    return path;
  };
  auto flood = [&](const std::string& id, const fs::path& payload, int times) {
    const auto files = pki_->issue(common::Role::kDevice, id);
    return run_command("timeout 30 mosquitto_pub -h 127.0.0.1 -p " + std::to_string(broker_->port()) +
                       " -V mqttv5 --cafile '" + pki_->ca_cert().string() + "' --cert '" +
                       files.cert.string() + "' --key '" + files.key.string() + "' -i " + id +
                       " -t 'fota/v1/dev/" + id + "/csr' -q 1 --repeat " + std::to_string(times) + " -f '" +
                       payload.string() + "' 2>&1");
  };
  flood("dev-1", write_request("dev-1", made->csr_pem), 300);
  for (int i = 2; i <= 7; ++i) {
    const std::string id = "dev-" + std::to_string(i);
    flood(id,
          write_request(id, "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"),
          50);
  }
  EXPECT_GT(wait_metric("fota_certificate_requests_dropped_total", 1), 0)
      << read(dir_.path() / "orchestrator.log");
  std::this_thread::sleep_for(1s);  // whatever was still queued is handled or dropped by now
  const long issued = metric("fota_certificates_issued_total");
  const long refused = metric("fota_certificate_requests_refused_total");
  const long dropped = metric("fota_certificate_requests_dropped_total");
  std::printf("[ figure ] certificate request flood: %ld signed, %ld refused, %ld dropped\n", issued, refused,
              dropped);
  EXPECT_EQ(issued, 1);
  EXPECT_LE(issued + refused, 4);
  EXPECT_GE(dropped, 50);
  EXPECT_LE(audit_of("certificate.issued").size() + audit_of("certificate.refused").size(), 4u);
  EXPECT_NE(read(dir_.path() / "orchestrator.log").find("dropped a certificate request"), std::string::npos);
  httplib::Client http("127.0.0.1", setup_.http_port);
  auto health = http.Get("/healthz");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
}

}  // namespace
}  // namespace fota::testing

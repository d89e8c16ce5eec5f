// SPDX-License-Identifier: Apache-2.0
// Operator identity on the API and the signed audit checkpoints, tried as operators and attackers
// would: the real fota-orchestrator serving HTTPS with the fleet PKI, driven by the real fotactl,
// attacked with curl and openssl s_client; the audit chain rewritten in the SQLite file with the
// sqlite3 tool.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "fota/common/codec.hpp"
#include "fota/common/crypto.hpp"
#include "fota/common/topics.hpp"
#include "fota/orchestrator/audit.hpp"
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

std::string shell_quoted(const fs::path& p) { return "'" + p.string() + "'"; }

class ApiSecurityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    pki_ = std::make_unique<TestPki>(dir_.path() / "pki");
    broker_ = std::make_unique<MosquittoBroker>(*pki_, dir_.path() / "broker");
    setup_ = write_orchestrator_setup(dir_.path(), *pki_, *broker_, "admin", kAdminToken);
    // The API's server certificate: the orchestrator's, naming the address clients use.
    common::IssueOptions server;
    server.role = common::Role::kOrchestrator;
    server.common_name = "fota-orchestrator";
    server.ip_addresses = {"127.0.0.1"};
    api_cert_ = pki_->issue_custom(server, "orchestrator-api");
    // A second CA, as an attacker who made their own "operator" certificate has.
    rogue_pki_ = std::make_unique<TestPki>(dir_.path() / "rogue-pki");
    rogue_ = rogue_pki_->issue(common::Role::kOperator, "mallory");

    std::ifstream in(setup_.config);
    config_.assign(std::istreambuf_iterator<char>(in), {});
    // More tokens, one per role (the admin one is the setup's).
    insert_before("\ntick_interval:", std::string("\n  - {name: olivia, token: ") + kOperatorToken +
                                          ", role: operator}\n  - {name: victor, token: " + kViewerToken +
                                          ", role: viewer}");
    audit_key_ = dir_.path() / "audit";
    ASSERT_EQ(run_fotactl("keys generate -o " + shell_quoted(audit_key_)).exit_code, 0);
  }

  void TearDown() override { stop_orchestrator(); }

  void insert_before(const std::string& marker, const std::string& text) {
    const auto at = config_.find(marker);
    ASSERT_NE(at, std::string::npos) << config_;
    config_.insert(at, text);
  }

  // HTTPS with client certificates from the fleet CA; audit checkpoints every 50 ms.
  void use_tls_and_checkpoints() {
    insert_before("\napi_tokens:", "\n  tls:\n    cert: " + api_cert_.cert.string() +
                                       "\n    key: " + api_cert_.key.string() +
                                       "\n    client_ca: " + pki_->ca_cert().string());
    config_ += "audit:\n  checkpoint_key: " + (audit_key_.string() + ".key") +
               "\n  checkpoint_file: " + checkpoint_file().string() + "\n  checkpoint_interval: 50ms\n";
  }

  fs::path checkpoint_file() const { return dir_.path() / "audit-checkpoints.jsonl"; }
  std::string url() const { return "https://127.0.0.1:" + std::to_string(setup_.http_port); }

  void start_orchestrator() {
    std::ofstream(setup_.config) << config_;
    // A log per start: the wait below looks for this start's line.
    log_path_ = dir_.path() / ("orchestrator-" + std::to_string(++starts_) + ".log");
    std::string failure;
    pid_ = spawn_until_ready(
        {FOTA_ORCHESTRATOR_PATH, "--config", setup_.config.string()}, log_path_,
        [&] { return read_log().find("api on 127.0.0.1") != std::string::npos; }, failure);
    ASSERT_GT(pid_, 0) << failure;
  }

  void stop_orchestrator() { stop_process(pid_); }

  std::string read_log() const {
    std::ifstream in(log_path_);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }

  static CommandRun run_fotactl(const std::string& args) { return run_command("'" FOTACTL_PATH "' " + args); }

  // fotactl over HTTPS, verifying the orchestrator against the fleet CA.
  CommandRun fotactl(const std::string& args, const std::string& credentials) {
    return run_fotactl(args + " --server " + url() + " --ca " + shell_quoted(pki_->ca_cert()) + " " +
                       credentials);
  }
  static std::string token(const char* t) { return std::string("--token ") + t; }
  std::string certificate(const common::IssuedFiles& files) const {
    return "--client-cert " + shell_quoted(files.cert) + " --client-key " + shell_quoted(files.key);
  }

  // An operator certificate as an admin makes it, with fotactl.
  common::IssuedFiles issue_operator(const std::string& name, const std::string& api_role) {
    const CommandRun r = run_fotactl("pki issue-operator " + name + " --api-role " + api_role + " --dir " +
                                     shell_quoted(pki_->ca().dir()));
    EXPECT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("(API role " + api_role + ")"), std::string::npos) << r.output;
    return pki_->ca().paths_for(common::Role::kOperator, name);
  }

  // A registered device, so that rollouts have a target.
  void register_device(const std::string& id) {
    device_ = std::make_unique<TestMqttClient>(
        broker_->uri(), id,
        TestMqttClient::Identity{pki_->ca_cert(), pki_->issue(common::Role::kDevice, id)});
    ASSERT_TRUE(device_->connect().ok());
    v1::Inventory inv;
    inv.set_device_id(id);
    inv.set_hardware_type("gw-v2");
    inv.set_version("1.0");
    inv.set_artifact_id("ffffffffffffffffffffffffffffffff");
    inv.set_time_zone("UTC");
    inv.set_security_counter(1);
    inv.set_reported_at_ms(wall_clock_ms());
    const common::TopicScheme topics;
    auto rc = device_->publish(topics.device_topic(*common::DeviceId::parse(id), common::Channel::kInventory),
                               common::encode(inv), 1, true);
    ASSERT_TRUE(rc.ok() && *rc == 0);
    for (int i = 0; i < 200; ++i) {
      const CommandRun r = fotactl("device list --json", token(kViewerToken));
      if (r.output.find("\"" + id + "\"") != std::string::npos) return;
      std::this_thread::sleep_for(50ms);
    }
    FAIL() << "device " << id << " did not register";
  }

  std::string upload(const std::string& credentials, const std::string& version) {
    const fs::path bundle =
        make_signed_bundle(dir_.path(), setup_.release_key, BundleSpec{"fw", version, 32 * 1024});
    const CommandRun r = fotactl("artifact upload " + shell_quoted(bundle), credentials);
    EXPECT_EQ(r.exit_code, 0) << r.output << read_log();
    const auto pos = r.output.find("uploaded artifact ");
    return pos == std::string::npos ? "" : r.output.substr(pos + 18, 32);
  }

  CommandRun create_rollout(const std::string& credentials, const std::string& artifact) {
    std::ofstream(dir_.path() / "spec.yaml")
        << "name: r\nartifact: " << artifact << "\ntarget: {all: true}\n";
    return fotactl("rollout create --json -f " + shell_quoted(dir_.path() / "spec.yaml"), credentials);
  }
  static std::string rollout_id(const CommandRun& created) {
    const auto brace = created.output.find('{');
    if (brace == std::string::npos) return "";
    return json::parse(created.output.substr(brace), nullptr, false).value("id", "");
  }

  json audit_entries() {
    const CommandRun r = fotactl("audit list --json", token(kViewerToken));
    EXPECT_EQ(r.exit_code, 0) << r.output;
    return json::parse(r.output, nullptr, false);
  }

  TempDir dir_;
  std::unique_ptr<TestPki> pki_;
  std::unique_ptr<TestPki> rogue_pki_;
  std::unique_ptr<MosquittoBroker> broker_;
  std::unique_ptr<TestMqttClient> device_;
  OrchestratorSetup setup_;
  common::IssuedFiles api_cert_;
  common::IssuedFiles rogue_;
  fs::path audit_key_;
  std::string config_;
  pid_t pid_ = -1;
  int starts_ = 0;
  fs::path log_path_;
};

void expect_refused(const CommandRun& r, const std::string& says) {
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find(says), std::string::npos) << r.output;
}

// Tokens bound to roles, over HTTPS: a viewer reads but starts nothing, an operator runs rollouts
// but neither uploads artifacts, an admin does both; the audit log names each token.
TEST_F(ApiSecurityTest, EachTokenRoleCanDoWhatItsRoleAllowsAndNoMore) {
  use_tls_and_checkpoints();
  start_orchestrator();
  register_device("dev-1");

  // Operator and viewer may not upload: the refusal names the role it takes.
  const fs::path bundle =
      make_signed_bundle(dir_.path(), setup_.release_key, BundleSpec{"fw", "3.0", 32 * 1024});
  expect_refused(fotactl("artifact upload " + shell_quoted(bundle), token(kOperatorToken)),
                 "token:olivia has the operator role; POST /api/v1/artifacts needs admin");
  expect_refused(fotactl("artifact upload " + shell_quoted(bundle), token(kViewerToken)), "needs admin");
  const std::string artifact = upload(token(kAdminToken), "2.0");
  ASSERT_EQ(artifact.size(), 32u);

  // A viewer reads everything but creates and starts nothing.
  EXPECT_EQ(fotactl("artifact list", token(kViewerToken)).exit_code, 0);
  EXPECT_EQ(fotactl("rollout status", token(kViewerToken)).exit_code, 0);
  expect_refused(create_rollout(token(kViewerToken), artifact),
                 "token:victor has the viewer role; POST /api/v1/rollouts needs operator");
  const CommandRun created = create_rollout(token(kOperatorToken), artifact);
  ASSERT_EQ(created.exit_code, 0) << created.output;
  const std::string id = rollout_id(created);
  ASSERT_FALSE(id.empty()) << created.output;
  expect_refused(fotactl("rollout start " + id, token(kViewerToken)), "needs operator");
  EXPECT_EQ(fotactl("rollout start " + id, token(kOperatorToken)).exit_code, 0);
  EXPECT_EQ(fotactl("rollout abort " + id, token(kAdminToken)).exit_code, 0);

  // Who did what: the token's name, and nothing for the refused attempts.
  std::map<std::string, std::string> actor_of;
  for (const auto& e : audit_entries()) actor_of[e.value("action", "")] = e.value("actor", "");
  EXPECT_EQ(actor_of["artifact.upload"], "token:admin");
  EXPECT_EQ(actor_of["rollout.create"], "token:olivia");
  EXPECT_EQ(actor_of["rollout.start"], "token:olivia");
  EXPECT_EQ(actor_of["rollout.abort"], "token:admin");
  EXPECT_EQ(fotactl("audit verify", token(kViewerToken)).exit_code, 0);
}

// Mutual TLS: operator certificates from `fotactl pki issue-operator --api-role` carry their role;
// the audit log names the certificate's common name.
TEST_F(ApiSecurityTest, OperatorCertificatesCarryTheirRoleAndTheAuditNamesTheCommonName) {
  use_tls_and_checkpoints();
  start_orchestrator();
  register_device("dev-1");
  const auto admin = issue_operator("ada", "admin");
  const auto op = issue_operator("otto", "operator");
  const auto viewer = issue_operator("vera", "viewer");

  expect_refused(
      fotactl("artifact upload " + shell_quoted(make_signed_bundle(dir_.path(), setup_.release_key,
                                                                   BundleSpec{"fw", "3.0", 32 * 1024})),
              certificate(op)),
      "cert:otto has the operator role; POST /api/v1/artifacts needs admin");
  const std::string artifact = upload(certificate(admin), "2.0");
  ASSERT_EQ(artifact.size(), 32u);
  expect_refused(create_rollout(certificate(viewer), artifact), "cert:vera has the viewer role");
  const CommandRun created = create_rollout(certificate(op), artifact);
  ASSERT_EQ(created.exit_code, 0) << created.output;
  const std::string id = rollout_id(created);
  expect_refused(fotactl("rollout start " + id, certificate(viewer)), "needs operator");
  EXPECT_EQ(fotactl("rollout start " + id, certificate(op)).exit_code, 0);
  EXPECT_EQ(fotactl("device list", certificate(viewer)).exit_code, 0);

  std::map<std::string, std::string> actor_of;
  for (const auto& e : audit_entries()) actor_of[e.value("action", "")] = e.value("actor", "");
  EXPECT_EQ(actor_of["artifact.upload"], "cert:ada");
  EXPECT_EQ(actor_of["rollout.create"], "cert:otto");
  EXPECT_EQ(actor_of["rollout.start"], "cert:otto");
}

// What an attacker tries with curl and openssl s_client: plain HTTP, a certificate from another
// CA, a device's certificate from the fleet CA, no credentials, a viewer's certificate for a write.
TEST_F(ApiSecurityTest, AttackersToolsAreRefused) {
  use_tls_and_checkpoints();
  start_orchestrator();
  const std::string api = "127.0.0.1:" + std::to_string(setup_.http_port);
  const std::string curl = "curl -sS --max-time 10 -o /dev/null -w 'status=%{http_code}' ";
  const std::string ca = " --cacert " + shell_quoted(pki_->ca_cert());

  // Plain HTTP to the HTTPS port, even with a valid token: no HTTP answer at all.
  CommandRun r = run_command(curl + "-H 'Authorization: Bearer " + kAdminToken + "' http://" + api +
                             "/api/v1/devices 2>&1");
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("status=000"), std::string::npos) << r.output;

  // A certificate from another CA (CN and OU of an operator): the handshake fails.
  r = run_command(curl + ca + " --cert " + shell_quoted(rogue_.cert) + " --key " + shell_quoted(rogue_.key) +
                  " https://" + api + "/api/v1/devices 2>&1");
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("status=000"), std::string::npos) << r.output;
  r = run_command(
      "printf 'GET /api/v1/devices HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n' | "
      "timeout 10 openssl s_client -quiet -connect " +
      api + " -CAfile " + shell_quoted(pki_->ca_cert()) + " -cert " + shell_quoted(rogue_.cert) + " -key " +
      shell_quoted(rogue_.key) + " 2>&1");
  EXPECT_EQ(r.output.find("HTTP/1.1"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("alert unknown ca"), std::string::npos) << r.output;

  // A device's certificate from the fleet CA verifies, but a device is no operator.
  const auto device = pki_->issue(common::Role::kDevice, "dev-9");
  const std::string device_cert =
      " --cert " + shell_quoted(device.cert) + " --key " + shell_quoted(device.key);
  r = run_command("curl -sS --max-time 10" + ca + device_cert + " https://" + api + "/api/v1/devices");
  EXPECT_NE(r.output.find("a device certificate (\\\"dev-9\\\") cannot use the API"), std::string::npos)
      << r.output;
  r = run_command(curl + ca + device_cert + " https://" + api + "/api/v1/devices");
  EXPECT_NE(r.output.find("status=403"), std::string::npos) << r.output;

  // No credentials at all over HTTPS: 401.
  r = run_command(curl + ca + " https://" + api + "/api/v1/devices");
  EXPECT_NE(r.output.find("status=401"), std::string::npos) << r.output;

  // A viewer's certificate for a write: 403, and the rollout does not exist either way.
  const auto viewer = issue_operator("vera", "viewer");
  r = run_command(curl + ca + " --cert " + shell_quoted(viewer.cert) + " --key " + shell_quoted(viewer.key) +
                  " -X POST --data-binary 'name: x' https://" + api + "/api/v1/rollouts");
  EXPECT_NE(r.output.find("status=403"), std::string::npos) << r.output;
  r = run_command(curl + ca + " --cert " + shell_quoted(viewer.cert) + " --key " + shell_quoted(viewer.key) +
                  " https://" + api + "/api/v1/rollouts");
  EXPECT_NE(r.output.find("status=200"), std::string::npos) << r.output;

  // fotactl says what to fix when the server's certificate does not verify (no --ca).
  expect_refused(run_fotactl("device list --server " + url() + " " + token(kAdminToken)),
                 "presented a certificate that does not verify");
  // The orchestrator kept serving throughout.
  EXPECT_EQ(fotactl("device list", token(kViewerToken)).exit_code, 0);
}

// A token without a role is refused at start, saying which roles there are.
TEST_F(ApiSecurityTest, TokenWithoutARoleIsRefusedAtStart) {
  insert_before("\ntick_interval:", "\n  - {name: nobody, token: nobody-token-0123456789abcdef}");
  std::ofstream(setup_.config) << config_;
  const CommandRun r =
      run_command("'" FOTA_ORCHESTRATOR_PATH "' --config " + shell_quoted(setup_.config) + " 2>&1");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("api_tokens \"nobody\": role is required: viewer (read), operator"),
            std::string::npos)
      << r.output;
}

// An attacker with write access to the database rewrites the whole audit chain with the sqlite3
// tool and recomputes every hash: the chain alone verifies, the signed checkpoints do not.
TEST_F(ApiSecurityTest, AuditChainRewrittenInTheDatabaseFailsVerificationNamingTheCheckpoint) {
  use_tls_and_checkpoints();
  start_orchestrator();
  register_device("dev-1");
  const std::string artifact = upload(token(kAdminToken), "2.0");
  const std::string id = rollout_id(create_rollout(token(kOperatorToken), artifact));
  ASSERT_FALSE(id.empty());
  ASSERT_EQ(fotactl("rollout abort " + id, token(kOperatorToken)).exit_code, 0);
  const std::string pub = shell_quoted(audit_key_.string() + ".pub");

  // Wait for a checkpoint covering the head, then stop (the shutdown signs the last one).
  const json before = audit_entries();
  ASSERT_GE(before.size(), 3u);
  const std::int64_t head = before.back().value("seq", std::int64_t{0});
  for (int i = 0; i < 200; ++i) {
    const CommandRun r = fotactl("audit verify --json --checkpoint-key " + pub, token(kViewerToken));
    if (r.exit_code == 0 && json::parse(r.output).value("last_checkpoint_seq", std::int64_t{0}) >= head)
      break;
    std::this_thread::sleep_for(50ms);
  }
  CommandRun verified = fotactl("audit verify --checkpoint-key " + pub, token(kViewerToken));
  ASSERT_EQ(verified.exit_code, 0) << verified.output << read_log();
  EXPECT_NE(verified.output.find("signed checkpoint(s) match it"), std::string::npos) << verified.output;
  stop_orchestrator();

  // The attacker: the rollout was created by someone else, every hash recomputed, via sqlite3.
  std::ostringstream sql;
  sql << "BEGIN;\n";
  std::string prev = orchestrator::genesis_hash();
  for (const auto& j : before) {
    orchestrator::AuditEntry e{j.value("seq", std::int64_t{0}),
                               j.value("time_ms", std::int64_t{0}),
                               j.value("actor", ""),
                               j.value("action", ""),
                               j.value("detail", ""),
                               prev,
                               ""};
    if (e.action == "rollout.create") e.actor = "token:admin";
    e.hash = orchestrator::audit_entry_hash(e);
    sql << "UPDATE audit SET actor = '" << e.actor << "', prev_hash = '" << e.prev_hash << "', hash = '"
        << e.hash << "' WHERE seq = " << e.seq << ";\n";
    prev = e.hash;
  }
  sql << "COMMIT;\n";
  std::ofstream(dir_.path() / "rewrite.sql") << sql.str();
  const CommandRun rewrite = run_command("sqlite3 " + shell_quoted(dir_.path() / "data" / "state.db") +
                                         " < " + shell_quoted(dir_.path() / "rewrite.sql") + " 2>&1");
  ASSERT_EQ(rewrite.exit_code, 0) << rewrite.output;

  // The orchestrator notices at start; the chain alone is consistent; the checkpoints are not.
  start_orchestrator();
  EXPECT_NE(read_log().find("audit log does not match its last signed checkpoint"), std::string::npos)
      << read_log();
  const CommandRun chain_only = fotactl("audit verify", token(kViewerToken));
  EXPECT_EQ(chain_only.exit_code, 0) << chain_only.output;
  // The first checkpoint signed at or after the rewritten entry is the one named.
  std::int64_t created_seq = 0;
  for (const auto& j : before)
    if (j.value("action", "") == "rollout.create") created_seq = j.value("seq", std::int64_t{0});
  ASSERT_GE(created_seq, 1);
  std::ifstream file(checkpoint_file());
  auto checkpoints =
      orchestrator::parse_audit_checkpoints(std::string(std::istreambuf_iterator<char>(file), {}));
  ASSERT_TRUE(checkpoints.ok()) << checkpoints.error().message;
  std::string named;
  for (std::size_t i = 0; i < checkpoints->size() && named.empty(); ++i) {
    if ((*checkpoints)[i].seq >= created_seq)
      named = "checkpoint " + std::to_string(i + 1) + " (entry " + std::to_string((*checkpoints)[i].seq) +
              ", signed ";
  }
  ASSERT_FALSE(named.empty());
  const CommandRun from_api = fotactl("audit verify --checkpoint-key " + pub, token(kViewerToken));
  expect_refused(from_api, "audit log verification FAILED: " + named);
  EXPECT_NE(from_api.output.find("does not match the chain"), std::string::npos) << from_api.output;
  EXPECT_NE(from_api.output.find("the audit log was rewritten after this checkpoint was signed"),
            std::string::npos);
  // The same from an offline copy of the append-only checkpoint file.
  expect_refused(
      fotactl("audit verify --checkpoint-key " + pub + " --checkpoints " + shell_quoted(checkpoint_file()),
              token(kViewerToken)),
      "does not match the chain");
  // A checkpoint key of someone else does not vouch for the original either.
  ASSERT_EQ(run_fotactl("keys generate -o " + shell_quoted(dir_.path() / "other")).exit_code, 0);
  expect_refused(fotactl("audit verify --checkpoint-key " + shell_quoted(dir_.path() / "other.pub"),
                         token(kViewerToken)),
                 "does not verify with the audit key");
}

}  // namespace
}  // namespace fota::testing

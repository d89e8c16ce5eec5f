// SPDX-License-Identifier: Apache-2.0
// The Grafana dashboard in docs/grafana against the real thing: a real Prometheus (Debian's
// `prometheus`) scrapes a real fota-orchestrator whose broker carries real fota-device agents, and
// every query of every panel must be accepted by Prometheus, name only series the orchestrator
// exports, and together cover every series it exports; the fleet panel shows the agents online.
#include <httplib.h>
#include <signal.h>
#include <sys/wait.h>

#include <chrono>
#include <fstream>
#include <regex>
#include <set>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "fota/common/pki.hpp"
#include "fota/testing/broker.hpp"
#include "fota/testing/orchestrator_setup.hpp"

namespace fota::testing {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using namespace std::chrono_literals;

constexpr const char* kToken = "viewer-and-admin-token-0123456789";

std::string read(const fs::path& path) {
  std::ifstream in(path);
  return std::string((std::istreambuf_iterator<char>(in)), {});
}

// Every query of every panel (rows hold none), with its panel's title.
std::vector<std::pair<std::string, std::string>> panel_queries(const json& dashboard) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& panel : dashboard.at("panels")) {
    if (!panel.contains("targets")) continue;
    for (const auto& target : panel.at("targets"))
      out.emplace_back(panel.value("title", ""), target.at("expr"));
  }
  return out;
}

// Grafana fills in its variables before a query reaches Prometheus; so does this test, with the
// values Grafana would send for "All" over a short range.
std::string as_grafana_sends(std::string expr) {
  for (const auto& [variable, value] : std::vector<std::pair<std::string, std::string>>{
           {"$__rate_interval", "1m"}, {"$__interval", "15s"}, {"$__range", "1h"}, {"$instance", ".*"}}) {
    for (auto at = expr.find(variable); at != std::string::npos; at = expr.find(variable)) {
      expr.replace(at, variable.size(), value);
    }
  }
  return expr;
}

std::set<std::string> metric_names(const std::string& text, const std::regex& pattern) {
  std::set<std::string> out;
  for (std::sregex_iterator it(text.begin(), text.end(), pattern), end; it != end; ++it) out.insert((*it)[1]);
  return out;
}

class DashboardTest : public ::testing::Test {
 protected:
  void SetUp() override {
    pki_ = std::make_unique<TestPki>(dir_.path() / "pki");
    BrokerOptions options;
    options.with_plugin = true;
    broker_ = std::make_unique<MosquittoBroker>(*pki_, dir_.path() / "broker", options);
    setup_ = write_orchestrator_setup(dir_.path(), *pki_, *broker_, "admin-ann", kToken);
  }

  void TearDown() override {
    stop_process(prometheus_);
    stop_process(orchestrator_);
    for (pid_t& pid : agents_) stop_process(pid);
  }

  void start_orchestrator() {
    httplib::Client http("127.0.0.1", setup_.http_port);
    std::string failure;
    orchestrator_ = spawn_until_ready(
        {FOTA_ORCHESTRATOR_PATH, "--config", setup_.config.string()}, dir_.path() / "orchestrator.log",
        [&] {
          auto res = http.Get("/healthz");
          return res && res->status == 200;
        },
        failure);
    ASSERT_GT(orchestrator_, 0) << failure;
  }

  void start_agent(const std::string& id) {
    const auto files = pki_->issue(common::Role::kDevice, id);
    const auto home = dir_.path() / id;
    fs::create_directories(home);
    std::ofstream(home / "device.yaml")
        << "device_id: " << id << "\nhardware_type: gw-v2\nbroker: " << broker_->uri()
        << "\nca: " << pki_->ca_cert().string() << "\ncert: " << files.cert.string()
        << "\nkey: " << files.key.string() << "\ntrust: " << setup_.trusted_keys.string()
        << "\ncommand_keys: " << setup_.command_keys.string() << "\nstate_dir: " << (home / "state").string()
        << "\nfactory_version: 1.0.0\ntime_zone: UTC\nlog_level: info\n";
    agents_.push_back(
        spawn({FOTA_DEVICE_PATH, "--config", (home / "device.yaml").string()}, home / "device.log"));
  }

  // Debian's prometheus on a free loopback port, scraping the orchestrator every second.
  void start_prometheus() {
    ASSERT_TRUE(fs::exists(kPrometheus))
        << kPrometheus << " is missing: run scripts/install-deps.sh (Debian package prometheus)";
    prometheus_port_ = free_loopback_port();
    const auto config = dir_.path() / "prometheus.yml";
    std::ofstream(config) << "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                          << "scrape_configs:\n  - job_name: fota-orchestrator\n    static_configs:\n"
                          << "      - targets: ['127.0.0.1:" << setup_.http_port << "']\n";
    httplib::Client http("127.0.0.1", prometheus_port_);
    std::string failure;
    prometheus_ = spawn_until_ready(
        {kPrometheus, "--config.file=" + config.string(),
         "--storage.tsdb.path=" + (dir_.path() / "tsdb").string(),
         "--web.listen-address=127.0.0.1:" + std::to_string(prometheus_port_)},
        dir_.path() / "prometheus.log",
        [&] {
          auto res = http.Get("/-/ready");
          return res && res->status == 200;
        },
        failure);
    ASSERT_GT(prometheus_, 0) << failure;
  }

  // Prometheus's answer to an instant query (its JSON: status, data or errorType and error).
  json query(const std::string& expr) {
    httplib::Client http("127.0.0.1", prometheus_port_);
    auto res = http.Get("/api/v1/query", httplib::Params{{"query", expr}}, httplib::Headers{});
    if (!res) return json{{"status", "error"}, {"error", "no answer from prometheus"}};
    return json::parse(res->body, nullptr, false);
  }

  // The first sample's value of `expr`, or -1 while Prometheus has none.
  double value_of(const std::string& expr) {
    const json answer = query(expr);
    if (answer.value("status", "") != "success") return -1;
    const auto& result = answer["data"]["result"];
    if (result.empty()) return -1;
    return std::stod(result[0]["value"][1].get<std::string>());
  }

  static constexpr const char* kPrometheus = "/usr/bin/prometheus";
  TempDir dir_;
  std::unique_ptr<TestPki> pki_;
  std::unique_ptr<MosquittoBroker> broker_;
  OrchestratorSetup setup_;
  pid_t orchestrator_ = -1;
  pid_t prometheus_ = -1;
  int prometheus_port_ = 0;
  std::vector<pid_t> agents_;
};

TEST_F(DashboardTest, EveryPanelQueryRunsOnARealPrometheusScrapingTheOrchestratorAndCoversItsSeries) {
  const json dashboard = json::parse(read(FOTA_DASHBOARD), nullptr, false);
  ASSERT_FALSE(dashboard.is_discarded()) << FOTA_DASHBOARD << " is not JSON";
  const auto queries = panel_queries(dashboard);
  ASSERT_GE(queries.size(), 10u);

  start_orchestrator();
  start_agent("dash-1");
  start_agent("dash-2");
  start_prometheus();

  // Prometheus scrapes the orchestrator and sees both agents online through the fleet panel's query.
  const std::string online = as_grafana_sends(queries.front().second);
  ASSERT_NE(online.find("fota_devices{presence=\"online\""), std::string::npos) << online;
  double seen = -1;
  for (int i = 0; i < 300 && (seen = value_of(online)) != 2; ++i) std::this_thread::sleep_for(100ms);
  EXPECT_EQ(seen, 2) << online << "\n" << read(dir_.path() / "prometheus.log");
  EXPECT_EQ(value_of("up{job=\"fota-orchestrator\"}"), 1);

  // Each query parses and evaluates (a misspelt function, label or bracket is Prometheus's 400).
  for (const auto& [title, expr] : queries) {
    const json answer = query(as_grafana_sends(expr));
    EXPECT_EQ(answer.value("status", ""), "success") << "panel \"" << title << "\": " << expr << "\n"
                                                     << answer.dump();
  }

  // The dashboard names exactly the series /metrics exports: none misspelt, none left out.
  httplib::Client http("127.0.0.1", setup_.http_port);
  const auto metrics = http.Get("/metrics");
  ASSERT_TRUE(metrics && metrics->status == 200);
  const auto exported = metric_names(metrics->body, std::regex(R"(# TYPE (fota_[a-z_]+) )"));
  std::string all_queries;
  for (const auto& [title, expr] : queries) all_queries += expr + "\n";
  const auto used = metric_names(all_queries, std::regex(R"((fota_[a-z_]+))"));
  for (const auto& name : used) EXPECT_TRUE(exported.count(name)) << name << " is not exported by /metrics";
  for (const auto& name : exported)
    EXPECT_TRUE(used.count(name)) << name << " has no panel in " << FOTA_DASHBOARD;
}

}  // namespace
}  // namespace fota::testing

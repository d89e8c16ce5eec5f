// SPDX-License-Identifier: Apache-2.0
// fota-sim: rehearse a rollout with virtual devices. docs/SIMULATOR.md.
//   fota-sim simulators/scenarios/happy-path.yaml --out sim-report
// Exit status: 0 = every invariant held, 1 = an invariant failed, 2 = the run could not start,
// 130 = interrupted (SIGINT or SIGTERM; the broker and orchestrator it started are stopped).
#include <sys/resource.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <csignal>
#include <iostream>

#include "fota/common/crypto.hpp"
#include "fota/sim/broker_process.hpp"
#include "fota/sim/report.hpp"
#include "fota/sim/runner.hpp"

namespace {

std::atomic<bool> stop_requested{false};
static_assert(std::atomic<bool>::is_always_lock_free);

extern "C" void request_stop(int) { stop_requested.store(true); }

// The first SIGINT or SIGTERM ends the run and stops what fota-sim started; a second one (the
// handler resets itself) ends the process at once.
void install_stop_handlers() {
  struct sigaction action {};
  action.sa_handler = request_stop;
  action.sa_flags = SA_RESETHAND;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "fota-sim: thousands of virtual devices with flaky links and device faults, from a scenario file"};
  std::string scenario_path;
  std::string out_dir = "fota-sim-report";
  int broker_port = 0;
  std::string ca_dir;
  std::string seed_text;
  std::string duration_text;
  bool quiet = false;
  std::uint32_t connect_rate = 50;
  std::string orchestrator_bin = FOTA_ORCHESTRATOR_BIN;
  std::string plugin_path = FOTA_PLUGIN_PATH;
  bool no_plugin = false;
  std::string orchestrator_url;
  std::string token_file;
  std::string signing_key;
  std::string trust_key;
  std::string command_keys;
  std::string artifacts_dir;
  std::string orchestrator_data;
  app.add_option("scenario", scenario_path, "scenario YAML file (see simulators/scenarios/)")->required();
  app.add_option("--out", out_dir, "directory for report.json and report.html (and the run's work files)");
  app.add_option("--broker-port", broker_port,
                 "use a running mosquitto on 127.0.0.1:<port> (needs --ca-dir); default: start one");
  app.add_option("--ca-dir", ca_dir, "fleet CA directory (ca.crt, ca.key) the running broker trusts");
  app.add_option("--seed", seed_text, "override the scenario's seed");
  app.add_option("--duration", duration_text, "override the scenario's duration, e.g. 5m");
  app.add_option("--connect-rate", connect_rate, "devices powered on per 100 ms");
  app.add_flag("--quiet", quiet, "no live progress");
  auto* orchestration =
      app.add_option_group("orchestrator", "rollout.driver orchestrator (docs/SIMULATOR.md)");
  orchestration->add_option("--orchestrator-bin", orchestrator_bin, "the fota-orchestrator fota-sim starts")
      ->capture_default_str();
  orchestration->add_option("--plugin", plugin_path, "fota_broker_plugin.so for the broker fota-sim starts")
      ->capture_default_str();
  orchestration->add_flag("--no-plugin", no_plugin,
                          "start the broker without the plugin (the orchestrator serves chunks)");
  orchestration->add_option(
      "--orchestrator", orchestrator_url,
      "use a running orchestrator at this API URL instead of starting one (needs --token-file, "
      "--signing-key, --command-keys, --broker-port and --ca-dir)");
  orchestration->add_option("--token-file", token_file, "file holding the API token for --orchestrator");
  orchestration->add_option(
      "--signing-key", signing_key,
      "Ed25519 private key (PEM) the running orchestrator trusts; signs the scenario's image");
  orchestration->add_option(
      "--trust-key", trust_key,
      "rollout.driver attach: the Ed25519 public key (PEM) that signed the rollout's artifact");
  orchestration->add_option(
      "--command-keys", command_keys,
      "with --orchestrator: its command public key (PEM, `fotactl pki command-key`) or a directory of "
      "*.pub; the virtual devices verify every command with it");
  orchestration->add_option(
      "--artifacts-dir", artifacts_dir,
      "the orchestrator's artifact store the broker plugin reads (default: under --out)");
  orchestration->add_option(
      "--orchestrator-data", orchestrator_data,
      "keep the started orchestrator's store (state.db) in this directory: a later run given the "
      "same directory plans from this run's history (default: a fresh store per run)");
  CLI11_PARSE(app, argc, argv);

  auto scenario = fota::sim::load_scenario(scenario_path);
  if (!scenario.ok()) {
    std::cerr << "fota-sim: " << scenario.error().message << "\n";
    return 2;
  }
  if (!seed_text.empty()) {
    try {
      scenario->seed = std::stoull(seed_text);
    } catch (const std::exception&) {
      std::cerr << "fota-sim: --seed expects a whole number, got '" << seed_text << "'\n";
      return 2;
    }
  }
  if (!duration_text.empty()) {
    auto duration = fota::sim::parse_duration_ms(duration_text);
    if (!duration.ok()) {
      std::cerr << "fota-sim: --duration: " << duration.error().message << "\n";
      return 2;
    }
    scenario->duration_ms = *duration;
  }
  // Every virtual device holds one socket (the transport suppresses libmosquitto's wake-up socket
  // pair), and the broker as many. Raise the limit (the hard one too, when allowed); the spawned
  // broker inherits it.
  const rlim_t needed = rlim_t{scenario->fleet.total()} + 1024;
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < needed) {
    rlimit wanted = limit;
    wanted.rlim_cur = needed;
    wanted.rlim_max = std::max(limit.rlim_max, needed);
    if (::setrlimit(RLIMIT_NOFILE, &wanted) != 0) {
      limit.rlim_cur = limit.rlim_max;
      ::setrlimit(RLIMIT_NOFILE, &limit);
    }
  }
  if (::getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < needed) {
    std::cerr << "fota-sim: " << scenario->fleet.total() << " devices need about " << needed
              << " open files (one per device) but the limit is " << limit.rlim_cur
              << "; raise it (ulimit -n, or run with CAP_SYS_RESOURCE)\n";
    return 2;
  }

  const std::filesystem::path out = out_dir;
  fota::sim::RunEnvironment env;
  env.work_dir = out / "work";
  env.orchestrator_binary = orchestrator_bin;
  env.orchestrator_url = orchestrator_url;
  env.signing_key = signing_key;
  env.trust_key = trust_key;
  env.command_keys = command_keys;
  env.orchestrator_data = orchestrator_data;
  env.artifacts_dir = artifacts_dir.empty() ? env.work_dir / "orchestrator" / "artifacts"
                                            : std::filesystem::path(artifacts_dir);
  if (!orchestrator_url.empty() && !orchestrator_data.empty()) {
    std::cerr << "fota-sim: --orchestrator-data is the store of the orchestrator fota-sim starts; "
                 "a running one (--orchestrator) keeps its own\n";
    return 2;
  }
  if (!orchestrator_url.empty()) {
    const bool attaching = scenario->rollout.driver == fota::sim::RolloutDriver::kAttach;
    if (token_file.empty() || (attaching ? trust_key.empty() : signing_key.empty()) || broker_port <= 0 ||
        command_keys.empty()) {
      std::cerr << "fota-sim: --orchestrator needs --token-file, --broker-port, --ca-dir, --command-keys and "
                << (attaching ? "--trust-key (rollout.driver attach)" : "--signing-key") << "\n";
      return 2;
    }
    auto token = fota::common::read_file(token_file, 4096);
    if (!token.ok()) {
      std::cerr << "fota-sim: --token-file: " << token.error().message << "\n";
      return 2;
    }
    while (!token->empty() && (token->back() == '\n' || token->back() == '\r')) token->pop_back();
    env.orchestrator_token = *token;
  }
  std::unique_ptr<fota::sim::BrokerProcess> broker;
  std::optional<fota::common::CertificateAuthority> external_ca;
  if (broker_port > 0) {
    if (ca_dir.empty()) {
      std::cerr << "fota-sim: --broker-port needs --ca-dir (the CA the broker trusts, with its key)\n";
      return 2;
    }
    auto ca = fota::common::CertificateAuthority::open(ca_dir);
    if (!ca.ok()) {
      std::cerr << "fota-sim: --ca-dir: " << ca.error().message << "\n";
      return 2;
    }
    external_ca.emplace(std::move(*ca));
    env.ca = &*external_ca;
    env.broker_port = broker_port;
  } else {
    std::optional<fota::sim::BrokerPlugin> plugin;
    if (!no_plugin) plugin = fota::sim::BrokerPlugin{plugin_path, env.artifacts_dir};
    auto launched = fota::sim::BrokerProcess::launch(out / "work", plugin);
    if (!launched.ok()) {
      std::cerr << "fota-sim: starting mosquitto: " << launched.error().message << "\n";
      return 2;
    }
    broker = std::move(*launched);
    env.ca = &broker->ca();
    env.broker_port = broker->port();
    env.stop_broker = [&broker](bool hard) { broker->stop(hard); };
    env.start_broker = [&broker] {
      if (auto s = broker->start(); !s.ok())
        std::cerr << "fota-sim: restarting mosquitto: " << s.error().message << "\n";
    };
  }

  fota::sim::RunOptions options;
  options.progress = quiet ? nullptr : &std::cerr;
  options.tty = !quiet && ::isatty(STDERR_FILENO);
  options.connect_rate = connect_rate;
  options.stop = &stop_requested;
  install_stop_handlers();
  if (!quiet) std::cerr << "fota-sim: " << scenario->name << ", " << scenario->fleet.total() << " devices\n";
  auto report = fota::sim::run_scenario(*scenario, env, options);
  if (!report.ok()) {
    std::cerr << "fota-sim: " << report.error().message << "\n";
    return stop_requested.load() ? 130 : 2;
  }
  if (auto s = fota::sim::write_reports(*report, out); !s.ok()) {
    std::cerr << "fota-sim: " << s.error().message << "\n";
    return 2;
  }
  std::cout << fota::sim::summary_text(*report) << "reports: " << (out / "report.json").string() << ", "
            << (out / "report.html").string() << "\n";
  return report->passed ? 0 : 1;
}

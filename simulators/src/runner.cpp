// SPDX-License-Identifier: Apache-2.0
#include "fota/sim/runner.hpp"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <fstream>
#include <iomanip>
#include <limits>
#include <sstream>
#include <thread>

#include "fota/client/runtime.hpp"
#include "fota/common/artifact.hpp"
#include "fota/common/codec.hpp"
#include "fota/common/phase.hpp"
#include "fota/orchestrator/rollout_engine.hpp"
#include "fota/sim/fleet_plan.hpp"
#include "fota/sim/orchestrator_driver.hpp"
#include "fota/sim/orchestrator_process.hpp"
#include "fota/sim/report.hpp"

namespace fota::sim {

using common::Errc;
using common::Error;

namespace {

// Resident set size of this process, from /proc/self/statm.
std::uint64_t resident_bytes() {
  std::ifstream statm("/proc/self/statm");
  std::uint64_t pages_total = 0;
  std::uint64_t pages_resident = 0;
  statm >> pages_total >> pages_resident;
  return pages_resident * static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
}

// A device that has not reported a phase this build knows counts as idle.
std::string state_of(const VirtualDevice& device) {
  const v1::Phase phase = device.phase();
  const bool known = phase != v1::PHASE_UNSPECIFIED && v1::Phase_IsValid(phase);
  return std::string(common::phase_name(known ? phase : v1::PHASE_IDLE));
}

// Deterministic image content for the scenario's seed.
common::Status write_image(const std::filesystem::path& path, std::uint64_t size, std::uint64_t seed) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return Error(Errc::kIo, "cannot create " + path.string());
  Rng rng(derive_seed(seed, "image"));
  std::string block;
  block.reserve(64 * 1024);
  std::uint64_t left = size;
  while (left > 0) {
    block.clear();
    const std::uint64_t n = std::min<std::uint64_t>(left, 64 * 1024);
    while (block.size() < n) {
      const std::uint64_t word = rng.next();
      for (int b = 0; b < 8 && block.size() < n; ++b)
        block.push_back(static_cast<char>((word >> (8 * b)) & 0xFF));
    }
    out.write(block.data(), static_cast<std::streamsize>(block.size()));
    left -= n;
  }
  out.close();
  if (!out) return Error(Errc::kIo, "cannot write " + path.string());
  return common::ok_status();
}

// What an operator would configure as the orchestrator's prediction defaults for this fleet: the
// link rate that gives the fleet's total transfer time (harmonic mean of the devices' bandwidths),
// and a simulated device's time besides the transfer (reboot, health check, reconnect, reports).
std::uint64_t nominal_link_rate(const Scenario& scenario, const std::vector<VirtualDevicePlan>& plans) {
  double seconds_per_byte = 0;
  for (const auto& p : plans) {
    const auto bandwidth = scenario.link_profiles.at(p.link_profile).bandwidth_bytes_per_second;
    seconds_per_byte += 1.0 / double(bandwidth > 0 ? bandwidth : 50'000'000);
  }
  return plans.empty() ? 1'000'000 : static_cast<std::uint64_t>(double(plans.size()) / seconds_per_byte);
}

std::string human_bytes(double bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB"};
  int u = 0;
  while (bytes >= 1024 && u < 3) {
    bytes /= 1024;
    ++u;
  }
  std::ostringstream out;
  out << std::fixed << std::setprecision(u == 0 ? 0 : 1) << bytes << " " << units[u];
  return out.str();
}

class ProgressPrinter {
 public:
  ProgressPrinter(std::ostream* out, bool tty, std::uint32_t devices)
      : out_(out), tty_(tty), devices_(devices) {}

  void print(const Sample& sample, std::size_t connected, const std::string& wave, std::int64_t eta_ms) {
    if (out_ == nullptr) return;
    std::ostringstream block;
    block << std::fixed << std::setprecision(1) << "[" << double(sample.at_ms) / 1000.0 << " s] " << wave
          << "  connected " << connected << "/" << devices_ << "  wire "
          << human_bytes(double(sample.wire_bytes)) << "  ETA "
          << (eta_ms < 0 ? std::string("?") : std::to_string((eta_ms + 999) / 1000) + " s") << "\n";
    if (tty_) {
      for (const v1::Phase phase : kReportPhaseOrder) {
        const std::string state(common::phase_name(phase));
        const std::uint32_t n = sample.by_state.count(state) ? sample.by_state.at(state) : 0;
        const int width = 30;
        const int filled = devices_ == 0 ? 0 : static_cast<int>(double(n) * width / double(devices_) + 0.5);
        block << "  " << std::left << std::setw(13) << state << " [" << std::string(std::size_t(filled), '#')
              << std::string(std::size_t(width - filled), '.') << "] " << n << "\n";
      }
      if (lines_ > 0) *out_ << "\x1b[" << lines_ << "A";
      const std::string text = block.str();
      lines_ = static_cast<int>(std::count(text.begin(), text.end(), '\n'));
      *out_ << text << std::flush;
    } else {
      block.seekp(-1, std::ios_base::end);
      block << " |";
      for (const v1::Phase phase : kReportPhaseOrder) {
        const std::string state(common::phase_name(phase));
        if (sample.by_state.count(state)) block << " " << state << " " << sample.by_state.at(state);
      }
      block << "\n";
      *out_ << block.str() << std::flush;
    }
  }

 private:
  std::ostream* out_;
  bool tty_;
  std::uint32_t devices_;
  int lines_ = 0;
};

}  // namespace

common::Result<RunReport> run_scenario(const Scenario& scenario, const RunEnvironment& environment,
                                       const RunOptions& options) {
  const bool attach = scenario.rollout.driver == RolloutDriver::kAttach;
  if (attach && (environment.orchestrator_url.empty() || environment.trust_key.empty())) {
    return Error(
        Errc::kInvalidArgument,
        "rollout.driver attach follows a rollout of a running orchestrator: it needs --orchestrator, "
        "--token-file and --trust-key (the public key that signed the rollout's artifact)");
  }
  const bool spawn_orchestrator = environment.orchestrator_url.empty();
  if (scenario.faults.orchestrator_kill && !spawn_orchestrator) {
    return Error(
        Errc::kInvalidArgument,
        "faults.orchestrator_kill needs an orchestrator fota-sim starts itself (leave out --orchestrator)");
  }
  if (!spawn_orchestrator && environment.command_keys.empty()) {
    return Error(Errc::kInvalidArgument,
                 "with --orchestrator, fota-sim needs --command-keys: the orchestrator's command public key, "
                 "which its virtual devices verify every command with");
  }
  if (!attach && !spawn_orchestrator && environment.signing_key.empty()) {
    return Error(Errc::kInvalidArgument,
                 "with --orchestrator, fota-sim needs --signing-key: a private key the orchestrator trusts");
  }
  if (environment.ca == nullptr)
    return Error(Errc::kInvalidArgument, "the run needs the fleet CA to issue certificates");
  if (scenario.faults.broker_restart && (!environment.stop_broker || !environment.start_broker)) {
    return Error(Errc::kInvalidArgument,
                 "faults.broker_restart needs a broker fota-sim controls (use --spawn-broker)");
  }
  const auto setup_started = client::mosquitto::EventLoop::wall_clock_ms();
  auto plans = plan_fleet(scenario);
  if (!plans.ok()) return plans.error();

  // The artifact: a seeded image, signed with a fresh key the devices trust, in an ArtifactStore.
  std::error_code ec;
  std::filesystem::create_directories(environment.work_dir, ec);
  const auto image_path = environment.work_dir / "image.bin";
  const auto bundle_path = environment.work_dir / "artifact.fota";
  std::filesystem::remove(bundle_path, ec);
  if (auto s = write_image(image_path, scenario.artifact.image_size, scenario.seed); !s.ok())
    return s.error();
  auto key = environment.signing_key.empty() ? common::Ed25519PrivateKey::generate()
                                             : common::Ed25519PrivateKey::load(environment.signing_key);
  if (!key.ok()) return key.error().with_context("the signing key");
  common::TrustStore trust;
  trust.add(key->public_key());
  common::ArtifactSpec spec;
  spec.name = scenario.artifact.name;
  spec.version = scenario.artifact.version;
  spec.security_counter = scenario.artifact.security_counter;
  spec.compatible_hardware = scenario.artifact.compatible_hardware;
  spec.chunk_size = scenario.artifact.chunk_size;
  // An encrypted artifact: one fresh X25519 key for the whole simulated fleet (a hardware group's).
  std::shared_ptr<const common::X25519PrivateKey> fleet_key;
  const auto ciphertext_path = environment.work_dir / "image.ciphertext";
  std::filesystem::remove(ciphertext_path, ec);
  common::Result<v1::SignedManifest> signed_manifest = Error(Errc::kInternal, "not built");
  if (scenario.artifact.encrypted) {
    auto generated = common::X25519PrivateKey::generate();
    if (!generated.ok()) return generated.error().with_context("the fleet's decryption key");
    fleet_key = std::make_shared<const common::X25519PrivateKey>(std::move(generated).value());
    signed_manifest =
        common::build_encrypted_manifest(image_path, spec, {fleet_key->public_key()}, *key,
                                         client::mosquitto::EventLoop::wall_clock_ms(), ciphertext_path);
  } else {
    signed_manifest =
        common::build_signed_manifest(image_path, spec, *key, client::mosquitto::EventLoop::wall_clock_ms());
  }
  if (!signed_manifest.ok()) return signed_manifest.error().with_context("signing the scenario's image");
  if (auto s = common::write_bundle(bundle_path, *signed_manifest,
                                    scenario.artifact.encrypted ? ciphertext_path : image_path);
      !s.ok())
    return s.error();
  std::filesystem::remove(ciphertext_path, ec);
  common::ArtifactStore store(environment.work_dir / "store");
  auto manifest = store.import_bundle(bundle_path, trust);
  if (!manifest.ok()) return manifest.error().with_context("importing the scenario's artifact");
  // What the devices boot as the target: the scenario's image, or the attached rollout's artifact.
  std::string target_sha256 = manifest->image_sha256();
  std::string target_version = manifest->version();
  std::uint64_t image_size = scenario.artifact.image_size;
  if (attach) {
    if (auto s = trust.load(environment.trust_key); !s.ok()) return s.error().with_context("--trust-key");
    auto target = rollout_artifact({environment.orchestrator_url, environment.orchestrator_token},
                                   scenario.rollout.attach_id);
    if (!target.ok()) return target.error();
    target_sha256 = target->image_sha256;
    target_version = target->version;
    image_size = target->image_size;
  }
  // The orchestrator's command key: a fresh one for an orchestrator fota-sim starts, else the
  // public key(s) of the running one. Virtual devices verify commands as fota-device does.
  common::TrustStore command_keys;
  std::filesystem::path command_key;
  if (spawn_orchestrator) {
    std::filesystem::remove_all(environment.work_dir / "command", ec);
    auto made = common::create_command_key(environment.work_dir, "command");
    if (!made.ok()) return made.error().with_context("the run's command key");
    command_key = made->private_key;
    if (auto s = command_keys.load(made->public_key); !s.ok()) return s.error();
  } else if (auto s = command_keys.load(environment.command_keys); !s.ok()) {
    return s.error().with_context("--command-keys");
  }
  client::OpenSslEngineCrypto crypto(trust, std::move(command_keys), fleet_key);

  std::vector<std::string> targeted;
  for (const auto& p : *plans) {
    if (p.targeted) targeted.push_back(p.device_id);
  }

  // rollout.driver orchestrator: a real fota-orchestrator runs the rollout; chunks come from the
  // broker plugin when it is loaded on the same artifact store, else from the orchestrator.
  std::unique_ptr<OrchestratorProcess> orchestrator;
  OrchestratorEndpoint endpoint{environment.orchestrator_url, environment.orchestrator_token};
  if (spawn_orchestrator) {
    const auto public_key = environment.work_dir / "signing.pub";
    std::filesystem::remove(public_key, ec);
    if (auto s = common::write_new_file(public_key, key->public_key().to_pem(), 0644); !s.ok())
      return s.error();
    OrchestratorSettings settings;
    settings.binary = environment.orchestrator_binary;
    settings.dir = environment.work_dir / "orchestrator";
    settings.artifacts_dir =
        environment.artifacts_dir.empty() ? settings.dir / "artifacts" : environment.artifacts_dir;
    settings.trusted_key = public_key;
    settings.command_key = command_key;
    settings.broker_host = environment.broker_host;
    settings.broker_port = environment.broker_port;
    settings.default_link_rate = nominal_link_rate(scenario, *plans);
    settings.default_device_time_ms = kNominalDeviceTimeMs;
    // A fresh store per run unless told to keep one: the previous run's devices and rollouts
    // are not this run's, but its history is worth predicting from.
    settings.data_dir = environment.orchestrator_data;
    if (settings.data_dir.empty()) std::filesystem::remove_all(settings.dir / "data", ec);
    auto launched = OrchestratorProcess::launch(settings, *environment.ca);
    if (!launched.ok()) return launched.error();
    orchestrator = std::move(*launched);
    endpoint = {orchestrator->api_url(), orchestrator->token()};
    if (options.progress != nullptr)
      *options.progress << "orchestrator: fota-orchestrator running, API " << endpoint.api_url << "\n";
  }

  client::mosquitto::MosquittoLibrary mosquitto_library;
  client::mosquitto::EventLoop loop;
  ChunkPool pool;
  FleetContext fleet;
  fleet.loop = &loop;
  fleet.scenario = &scenario;
  fleet.crypto = &crypto;
  fleet.pool = &pool;
  fleet.broker_host = environment.broker_host;
  fleet.broker_port = environment.broker_port;
  fleet.run_start_ms = loop.now_ms();
  fleet.image_sha256 = target_sha256;
  fleet.target_version = target_version;

  const std::uint64_t rss_before = resident_bytes();
  std::vector<std::unique_ptr<VirtualDevice>> devices;
  devices.reserve(plans->size());
  for (const auto& plan : *plans) {
    common::IssueOptions issue;
    issue.role = common::Role::kDevice;
    issue.common_name = plan.device_id;
    auto issued = environment.ca->issue(issue);
    if (!issued.ok()) return issued.error().with_context("issuing the certificate of " + plan.device_id);
    auto tls = client::mosquitto::TlsContext::create(environment.ca->ca_cert_pem(), issued->cert_pem,
                                                     issued->key_pem, environment.broker_host);
    if (!tls.ok()) return tls.error().with_context(plan.device_id);
    devices.push_back(std::make_unique<VirtualDevice>(fleet, plan, *tls));
  }

  // The orchestrator runs the rollout; fota-sim follows it. Its waves are named by number, as
  // the spec names none.
  std::vector<std::string> wave_names;
  for (std::size_t w = 0; w < scenario.rollout.spec.waves.size(); ++w)
    wave_names.push_back("wave" + std::to_string(w + 1));
  auto driver = std::make_unique<OrchestratorDriver>(
      endpoint, [&loop] { return loop.now_ms(); }, std::move(wave_names));
  const auto stopped = [&] { return options.stop != nullptr && options.stop->load(); };
  const Error interrupted(Errc::kUnavailable, "interrupted by a signal; the run was not finished");
  const auto wait_until = [&](auto pred, std::int64_t timeout_ms) {
    const std::int64_t deadline = client::mosquitto::EventLoop::wall_clock_ms() + timeout_ms;
    while (!pred()) {
      if (stopped() || client::mosquitto::EventLoop::wall_clock_ms() > deadline) return false;
      loop.run_once(20);
    }
    return true;
  };
  if (options.progress != nullptr) {
    *options.progress << "setup: " << devices.size() << " certificates issued in "
                      << double(client::mosquitto::EventLoop::wall_clock_ms() - setup_started) / 1000.0
                      << " s; powering on\n";
  }
  // Power the fleet on in batches: the broker's listen backlog is 100.
  std::size_t powered = 0;
  const std::size_t batch = std::max<std::uint32_t>(1, options.connect_rate);
  while (powered < devices.size()) {
    const std::size_t end = std::min(devices.size(), powered + batch);
    for (; powered < end; ++powered) {
      if (auto s = devices[powered]->start(); !s.ok()) return s.error();
    }
    const std::int64_t until = client::mosquitto::EventLoop::wall_clock_ms() + 100;
    while (client::mosquitto::EventLoop::wall_clock_ms() < until) loop.run_once(10);
  }
  const auto all_connected = [&] {
    return std::all_of(devices.begin(), devices.end(), [](const auto& d) { return d->connected(); });
  };
  const std::int64_t connect_timeout_ms = 30'000 + static_cast<std::int64_t>(devices.size()) * 10;
  std::int64_t next_note = client::mosquitto::EventLoop::wall_clock_ms() + 2000;
  const bool everyone_connected = wait_until(
      [&] {
        if (options.progress != nullptr && client::mosquitto::EventLoop::wall_clock_ms() >= next_note) {
          next_note += 2000;
          *options.progress << "connecting: "
                            << std::count_if(devices.begin(), devices.end(),
                                             [](const auto& d) { return d->connected(); })
                            << "/" << devices.size() << " devices online\n";
        }
        return all_connected();
      },
      connect_timeout_ms);
  // Give the subscriptions and the retained inventories a moment to land.
  wait_until([] { return false; }, 300);

  // The scenario's spec with what only the run knows: the artifact, the targeted devices, the start
  // and a window given as open_now_in, fixed now. Devices whose window is closed must stay untouched
  // (the orchestrator's own window rule decides which).
  orchestrator::RolloutSpec rollout_spec = scenario.rollout.spec;
  rollout_spec.artifact_id = manifest->artifact_id();
  rollout_spec.target.device_ids = targeted;
  const auto rollout_created_at = client::mosquitto::EventLoop::wall_clock_ms();
  if (!scenario.rollout.window_open_now_in.empty()) {
    auto window = window_open_now_in(scenario.rollout.window_open_now_in,
                                     scenario.rollout.window_length_minutes, rollout_created_at);
    if (!window.ok()) return window.error().with_context("rollout.maintenance_window");
    rollout_spec.windows.push_back(*window);
  }
  std::set<std::string> outside_window;
  for (const auto& p : *plans) {
    if (p.targeted &&
        !orchestrator::in_maintenance_window(rollout_spec.windows, p.time_zone, rollout_created_at))
      outside_window.insert(p.device_id);
  }

  std::int64_t predicted_ms = -1;
  std::int64_t predicted_bound_ms = -1;
  std::string prediction_source;
  {
    // The orchestrator registers devices from their retained inventories; the rollout is created
    // once every targeted device is known. The devices keep running on the loop meanwhile, so the
    // blocking API calls run on a helper thread.
    std::map<std::string, std::string> targeted_versions;  // device -> the version it runs
    for (const auto& p : *plans) {
      if (p.targeted) targeted_versions.emplace(p.device_id, p.installed_version);
    }
    common::Status prepared = common::ok_status();
    OrchestratorDriver::Plan orchestrator_plan;
    std::atomic<bool> done{false};
    std::thread setup([&] {
      prepared = [&]() -> common::Status {
        if (attach) {
          // The rollout exists; its selector decides which of our devices it takes. Registered
          // first, so a rollout that is not started yet resolves its targets with them.
          if (auto s = driver->wait_for_devices(
                  targeted_versions, 60'000 + std::int64_t(targeted_versions.size()) * 10, nullptr);
              !s.ok())
            return s;
          if (auto s = driver->attach(scenario.rollout.attach_id); !s.ok()) return s;
          auto predicted = driver->plan();
          if (!predicted.ok()) return predicted.error();
          orchestrator_plan = *predicted;
          return common::ok_status();
        }
        auto artifact = driver->upload_artifact(bundle_path);
        if (!artifact.ok()) return artifact.error();
        if (*artifact != manifest->artifact_id())
          return Error(Errc::kIntegrity, "the orchestrator stored the bundle as " + *artifact +
                                             ", expected " + manifest->artifact_id());
        if (auto s = driver->wait_for_devices(targeted_versions,
                                              60'000 + std::int64_t(targeted_versions.size()) * 10, nullptr);
            !s.ok())
          return s;
        if (scenario.rollout.start_after_ms > 0) {
          rollout_spec.start_at_ms =
              client::mosquitto::EventLoop::wall_clock_ms() + scenario.rollout.start_after_ms;
        }
        if (auto s = driver->create_rollout(rollout_spec); !s.ok()) return s;
        auto predicted = driver->plan();
        if (!predicted.ok()) return predicted.error();
        orchestrator_plan = *predicted;
        return common::ok_status();
      }();
      done = true;
    });
    // Even when stopping: the set-up thread's calls need the devices running, and end on their own.
    while (!done.load()) loop.run_once(20);
    setup.join();
    if (stopped()) return interrupted;
    if (!prepared.ok()) {
      return prepared.error().with_context(orchestrator ? "orchestrator log: " + orchestrator->log_tail(1500)
                                                        : std::string("orchestrator"));
    }
    predicted_ms = orchestrator_plan.duration_ms;
    predicted_bound_ms = orchestrator_plan.bound_duration_ms;
    prediction_source =
        "fota-orchestrator's plan " + std::string(attach ? "when attached" : "before the start") +
        " (rollout " + driver->rollout_id() + "; " +
        (orchestrator_plan.history_samples > 0
             ? "device times drawn from " + std::to_string(orchestrator_plan.history_samples) +
                   " finished updates in its history"
             : std::string("no history: link rate and device time defaults as configured for the fleet")) +
        ")";
    if (options.progress != nullptr) {
      *options.progress << "orchestrator: rollout " << driver->rollout_id()
                        << (attach ? " attached" : " created") << "; predicted "
                        << double(predicted_ms) / 1000.0 << " s\n";
    }
  }

  if (stopped()) return interrupted;
  RunReport report;
  report.scenario = scenario.name;
  report.seed = scenario.seed;
  report.device_count = static_cast<std::uint32_t>(devices.size());
  report.expected_outcome = std::string(expected_outcome_name(scenario.expect.outcome));
  report.predicted_duration_ms = predicted_ms;
  report.predicted_bound_ms = predicted_bound_ms;
  report.prediction_source = prediction_source;
  report.image_size = image_size;
  report.setup_ms = client::mosquitto::EventLoop::wall_clock_ms() - setup_started;
  const std::uint64_t rss_after = resident_bytes();
  report.memory_per_device_bytes =
      devices.empty() ? 0 : (rss_after > rss_before ? rss_after - rss_before : 0) / devices.size();
  if (!everyone_connected && options.progress != nullptr) {
    *options.progress << "warning: not every device connected within " << connect_timeout_ms / 1000
                      << " s; starting the rollout anyway\n";
  }

  // The rollout starts now; every scenario time counts from here. Bytes too: connecting a fleet
  // that is already online is not the rollout's cost (it is reported as setup_wire_bytes).
  loop.run_once(0);
  std::vector<std::uint64_t> wire_at_start;
  wire_at_start.reserve(devices.size());
  std::uint64_t messages_at_start = 0;
  for (const auto& d : devices) {
    const auto wire = d->wire();
    wire_at_start.push_back(wire.bytes_sent + wire.bytes_received);
    report.setup_wire_bytes += wire_at_start.back();
    messages_at_start += d->counters().messages_sent + d->counters().messages_received;
  }
  fleet.run_start_ms = loop.now_ms();
  for (auto& d : devices) d->arm_link_faults();
  driver->begin(fleet.run_start_ms);
  if (const auto& restart = scenario.faults.broker_restart) {
    loop.at(fleet.run_start_ms + restart->at_ms, [&environment, &loop, restart] {
      environment.stop_broker(restart->hard_kill);
      loop.after(restart->down_ms, [&environment] { environment.start_broker(); });
    });
  }
  if (const auto& kill = scenario.faults.orchestrator_kill; kill && orchestrator) {
    loop.at(fleet.run_start_ms + kill->at_ms, [&orchestrator, &loop, &report, &options, kill] {
      orchestrator->stop(kill->hard_kill);
      if (options.progress != nullptr)
        *options.progress << "fault: fota-orchestrator " << (kill->hard_kill ? "killed (SIGKILL)" : "stopped")
                          << "\n";
      loop.after(kill->down_ms, [&orchestrator, &report, &options] {
        if (auto s = orchestrator->start(); !s.ok()) {
          if (options.progress != nullptr)
            *options.progress << "fota-sim: restarting fota-orchestrator: " << s.error().message << "\n";
          return;
        }
        ++report.orchestrator_restarts;
        if (options.progress != nullptr) *options.progress << "fault: fota-orchestrator restarted\n";
      });
    });
  }

  ProgressPrinter printer(options.progress, options.tty, report.device_count);
  const auto take_sample = [&] {
    Sample sample;
    sample.at_ms = loop.now_ms() - fleet.run_start_ms;
    std::size_t connected = 0;
    std::uint32_t terminal = 0;
    for (std::size_t i = 0; i < devices.size(); ++i) {
      const auto& d = devices[i];
      ++sample.by_state[state_of(*d)];
      const auto wire = d->wire();
      sample.wire_bytes += wire.bytes_sent + wire.bytes_received - wire_at_start[i];
      sample.image_bytes += std::min<std::uint64_t>(d->image_bytes_written(), image_size);
      connected += d->connected();
      const auto phase = d->phase();
      terminal += phase == v1::PHASE_COMMITTED || phase == v1::PHASE_FAILED ||
                  phase == v1::PHASE_ROLLED_BACK || phase == v1::PHASE_CANCELLED;
    }
    const std::string wave = driver->current_wave();
    std::int64_t eta = driver->eta_ms();
    sample.eta_ms = eta;
    if (report.predicted_at_first_wave_ms < 0 && eta >= 0 && driver->state() == "running") {
      const auto waves_now = driver->waves();
      if (!waves_now.empty() && waves_now.front().finished_ms >= 0)
        report.predicted_at_first_wave_ms = sample.at_ms + eta;
    }
    if (eta < 0 && terminal > 0 && sample.at_ms > 0) {
      const double rate = double(terminal) / double(sample.at_ms);
      eta = static_cast<std::int64_t>(
          double(targeted.size() - std::min<std::size_t>(terminal, targeted.size())) / rate);
    }
    printer.print(sample, connected, wave, eta);
    report.samples.push_back(std::move(sample));
  };
  take_sample();
  std::int64_t next_sample = loop.now_ms() + options.sample_interval_ms;

  const auto settled = [&] {
    if (std::any_of(devices.begin(), devices.end(), [](const auto& d) { return d->busy(); })) return false;
    if (driver->outcome() != RolloutOutcome::kRunning) return true;
    // Waiting for closed windows: done once every device whose window is open has finished.
    if (scenario.expect.outcome != ExpectedOutcome::kRunning) return false;
    return std::all_of(devices.begin(), devices.end(), [&](const auto& d) {
      const auto phase = d->phase();
      return !d->plan().targeted || outside_window.count(d->plan().device_id) ||
             phase == v1::PHASE_COMMITTED || phase == v1::PHASE_FAILED || phase == v1::PHASE_ROLLED_BACK ||
             phase == v1::PHASE_CANCELLED;
    });
  };
  while (true) {
    loop.run_once(20);
    if (stopped()) return interrupted;
    if (loop.now_ms() >= next_sample) {
      take_sample();
      next_sample += options.sample_interval_ms;
    }
    if (settled()) break;
    if (loop.now_ms() - fleet.run_start_ms > scenario.duration_ms) {
      report.timed_out = true;
      break;
    }
  }
  report.duration_ms = loop.now_ms() - fleet.run_start_ms;
  for (const Sample& s : report.samples) {
    if (s.at_ms >= report.duration_ms / 2 && s.eta_ms >= 0) {
      report.predicted_at_half_ms = s.at_ms + s.eta_ms;
      break;
    }
  }
  // Last progress reports and PUBACKs in flight.
  wait_until([] { return false; }, 300);
  take_sample();

  driver->finish();
  report.rollout_id = driver->rollout_id();
  report.rollout_duration_ms = driver->rollout_duration_ms();
  if (!environment.orchestrator_data.empty()) {
    if (auto s = driver->abort_if_active(); !s.ok() && options.progress != nullptr)
      *options.progress << "fota-sim: " << s.error().message << "\n";
  }
  report.outcome = std::string(rollout_outcome_name(driver->outcome()));
  report.halt_reason = driver->halt_reason();
  report.driver = driver->stats();
  report.waves = driver->waves();

  std::set<std::string> started_wave_devices;
  for (const auto& w : report.waves) {
    if (w.started_ms >= 0) started_wave_devices.insert(w.devices.begin(), w.devices.end());
  }
  std::uint32_t bricked = 0;
  std::vector<std::string> wrong_version;
  std::vector<std::string> unexpected_failures;
  std::vector<std::string> unhealthy_committed;
  std::vector<std::string> touched_outside_window;
  for (std::size_t index = 0; index < devices.size(); ++index) {
    const auto& d = devices[index];
    DeviceResult r;
    const auto& plan = d->plan();
    r.device_id = plan.device_id;
    r.group = plan.group;
    r.hardware_type = plan.hardware_type;
    r.link_profile = plan.link_profile;
    r.time_zone = plan.time_zone;
    r.initial_version = plan.installed_version;
    r.final_version = d->running_version();
    r.final_phase = state_of(*d);
    r.last_error = d->last_error() == v1::ERROR_NONE ? "" : v1::ErrorCode_Name(d->last_error());
    r.targeted = plan.targeted;
    r.expected_failure = plan.faults.expected_to_fail();
    r.on_trial = d->running_on_trial();
    r.bricked = d->bricked();
    for (const auto& cut : plan.faults.power_cuts) {
      std::ostringstream text;
      text << device_phase_name(cut.phase) << "@" << std::fixed << std::setprecision(2) << cut.at_progress;
      r.planned_power_cuts.push_back(text.str());
    }
    r.faults = plan.faults;
    r.counters = d->counters();
    const auto wire = d->wire();
    r.wire_bytes = wire.bytes_sent + wire.bytes_received - wire_at_start[index];
    r.image_bytes = std::min<std::uint64_t>(d->image_bytes_written(), image_size);
    r.bytes_reused = d->bytes_reused();
    report.bytes_reused += r.bytes_reused;
    r.timeline = d->timeline();
    report.wire_bytes += r.wire_bytes;
    report.image_bytes_delivered += r.image_bytes;
    report.reconnects += r.counters.reconnects;
    report.messages += r.counters.messages_sent + r.counters.messages_received;
    report.power_cuts += r.counters.power_cuts;
    report.link_resets += r.counters.link_resets;
    bricked += r.bricked;
    const bool on_target = r.final_version == fleet.target_version && !r.on_trial;
    const bool on_previous = r.final_version == r.initial_version && !r.on_trial;
    if (!on_target && !on_previous) wrong_version.push_back(r.device_id + " runs '" + r.final_version + "'");
    const bool window_closed = outside_window.count(r.device_id) > 0;
    if (window_closed && (r.image_bytes > 0 || r.final_version != r.initial_version))
      touched_outside_window.push_back(r.device_id + " (" + r.time_zone + ")");
    // A breach with on_breach rollback sends the devices that did update back on purpose.
    const bool rolled_back_on_breach = report.outcome == "halted" &&
                                       scenario.rollout.spec.on_breach == common::BreachAction::kRollback &&
                                       on_previous;
    if (started_wave_devices.count(r.device_id) && !window_closed && !r.expected_failure && !on_target &&
        !rolled_back_on_breach) {
      unexpected_failures.push_back(r.device_id + " (" + r.final_phase +
                                    (r.last_error.empty() ? "" : ", " + r.last_error) + ")");
    }
    if (r.expected_failure && on_target && plan.faults.fails_health_check)
      unhealthy_committed.push_back(r.device_id);
    report.devices.push_back(std::move(r));
  }
  report.messages -= std::min(report.messages, messages_at_start);
  const std::int64_t measured_ms =
      report.rollout_duration_ms > 0 ? report.rollout_duration_ms : report.duration_ms;
  report.messages_per_second = measured_ms > 0 ? double(report.messages) * 1000.0 / double(measured_ms) : 0.0;
  report.wire_ratio = report.image_bytes_delivered == 0
                          ? 0.0
                          : double(report.wire_bytes) / double(report.image_bytes_delivered);

  auto list = [](const std::vector<std::string>& items) {
    std::string out;
    for (std::size_t i = 0; i < items.size() && i < 10; ++i) out += (i ? ", " : "") + items[i];
    if (items.size() > 10) out += ", ... (" + std::to_string(items.size()) + " in all)";
    return out;
  };
  report.invariants.push_back({"no bricked device", bricked == 0,
                               bricked == 0
                                   ? "every device booted a complete image"
                                   : std::to_string(bricked) + " devices booted an incomplete slot"});
  report.invariants.push_back({"every device on the target version or its previous one",
                               wrong_version.empty(), wrong_version.empty() ? "" : list(wrong_version)});
  report.invariants.push_back(
      {"failures only where injected", unexpected_failures.empty() && unhealthy_committed.empty(),
       unexpected_failures.empty() && unhealthy_committed.empty()
           ? ""
           : "not updated without an injected fault: " + list(unexpected_failures) +
                 (unhealthy_committed.empty()
                      ? std::string()
                      : "; committed an unhealthy image: " + list(unhealthy_committed))});
  if (report.outcome == "halted" && scenario.rollout.spec.on_breach == common::BreachAction::kRollback) {
    std::vector<std::string> not_back;
    for (const auto& r : report.devices) {
      if (r.final_version != r.initial_version || r.on_trial)
        not_back.push_back(r.device_id + " runs " + r.final_version);
    }
    report.invariants.push_back({"breach action rollback: every device back on its previous version",
                                 not_back.empty(), not_back.empty() ? "" : list(not_back)});
  }
  if (scenario.rollout.has_windows()) {
    report.invariants.push_back(
        {"no device updated outside its maintenance window", touched_outside_window.empty(),
         touched_outside_window.empty()
             ? std::to_string(outside_window.size()) + " devices had a closed window and were left alone"
             : list(touched_outside_window)});
  }
  const bool outcome_ok = !report.timed_out && (scenario.expect.outcome == ExpectedOutcome::kAny ||
                                                report.outcome == report.expected_outcome);
  report.invariants.push_back(
      {"expected rollout outcome", outcome_ok,
       "expected " + report.expected_outcome + ", got " + report.outcome +
           (report.timed_out ? " (timed out after " + std::to_string(scenario.duration_ms / 1000) + " s)"
                             : "") +
           (report.halt_reason.empty() ? "" : ": " + report.halt_reason)});
  if (scenario.expect.max_wire_ratio) {
    std::ostringstream detail;
    detail << std::fixed << std::setprecision(4) << report.wire_ratio << " (limit "
           << *scenario.expect.max_wire_ratio << ")";
    report.invariants.push_back({"bytes on the wire / image bytes delivered",
                                 report.wire_ratio <= *scenario.expect.max_wire_ratio, detail.str()});
  }
  if (scenario.expect.max_duration_ms) {
    report.invariants.push_back({"duration", report.duration_ms <= *scenario.expect.max_duration_ms,
                                 std::to_string(report.duration_ms) + " ms (limit " +
                                     std::to_string(*scenario.expect.max_duration_ms) + " ms)"});
  }
  report.passed = std::all_of(report.invariants.begin(), report.invariants.end(),
                              [](const InvariantResult& i) { return i.held; });

  for (auto& d : devices) d->stop();
  wait_until([] { return false; }, 200);
  return report;
}

}  // namespace fota::sim

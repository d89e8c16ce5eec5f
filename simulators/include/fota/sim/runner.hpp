// SPDX-License-Identifier: Apache-2.0
// Runs a scenario: plans the fleet, signs an image, issues every device a certificate, starts the
// virtual devices and the rollout driver on one event loop, injects the faults, samples progress,
// and checks the scenario's invariants at the end.
#pragma once

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <ostream>
#include <string>
#include <vector>

#include "fota/common/pki.hpp"
#include "fota/common/result.hpp"
#include "fota/sim/orchestrator_driver.hpp"
#include "fota/sim/scenario.hpp"
#include "fota/sim/virtual_device.hpp"

namespace fota::sim {

// Where the run happens. The broker is real and already running; the CA is the one it trusts.
struct RunEnvironment {
  std::string broker_host = "127.0.0.1";
  int broker_port = 0;
  const common::CertificateAuthority* ca = nullptr;
  std::filesystem::path work_dir;  // artifact store, image, keys
  // For faults.broker_restart: stop the broker (hard = SIGKILL) and start it again on the same port.
  std::function<void(bool hard)> stop_broker;
  std::function<void()> start_broker;

  // rollout.driver orchestrator / attach.
  // Either fota-sim starts fota-orchestrator itself (this binary; the orchestrator-kill fault
  // needs that) ...
  std::filesystem::path orchestrator_binary;
  // ... or it uses one that runs already: its API, a token, and for driver orchestrator the
  // Ed25519 private key (PEM) whose public key the orchestrator trusts (the image is signed with
  // it). For attach, trust_key is the public key the attached rollout's artifact is signed with.
  std::string orchestrator_url;
  std::string orchestrator_token;
  std::filesystem::path signing_key;
  std::filesystem::path trust_key;
  // The running orchestrator's command public key(s) (a *.pub file or a directory of them): the
  // virtual devices verify every command with them, as fota-device does. Required with
  // orchestrator_url; a started orchestrator gets a fresh command key of the run's own.
  std::filesystem::path command_keys;
  // The orchestrator's artifact store, which the broker plugin (when loaded) reads; empty =
  // <work_dir>/orchestrator/artifacts.
  std::filesystem::path artifacts_dir;
  // The started orchestrator's store (state.db). Empty = a fresh one for this run; a directory
  // kept from an earlier run gives the orchestrator that run's history to predict from.
  std::filesystem::path orchestrator_data;
};

struct RunOptions {
  // Live progress; nullptr = quiet. `tty` redraws a block of bars in place.
  std::ostream* progress = nullptr;
  bool tty = false;
  std::int64_t sample_interval_ms = 500;
  // Devices started per 100 ms (the broker's listen backlog is 100).
  std::uint32_t connect_rate = 50;
  // Set from outside (fota-sim: SIGINT, SIGTERM) to end the run early: run_scenario then returns
  // an error, and what it started is stopped on the way out.
  const std::atomic<bool>* stop = nullptr;
};

struct Sample {
  std::int64_t at_ms = 0;
  std::map<std::string, std::uint32_t> by_state;  // "offline", "idle", "downloading", ..., "committed"
  std::uint64_t wire_bytes = 0;
  std::uint64_t image_bytes = 0;
  std::int64_t eta_ms = -1;  // the orchestrator's live ETA (remaining), -1 when it gave none
};

struct DeviceResult {
  std::string device_id;
  std::string group;
  std::string hardware_type;
  std::string link_profile;
  std::string time_zone;
  std::string initial_version;
  std::string final_version;
  std::string final_phase;
  std::string last_error;
  bool targeted = false;
  bool expected_failure = false;
  bool on_trial = false;
  bool bricked = false;
  std::vector<std::string> planned_power_cuts;  // "installing@0.42"
  DeviceFaultPlan faults;                       // everything injected into this device
  DeviceCounters counters;
  std::uint64_t wire_bytes = 0;
  std::uint64_t image_bytes = 0;
  std::uint64_t bytes_reused = 0;  // copied from the running slot instead of downloaded
  std::vector<TimelineEntry> timeline;
};

struct InvariantResult {
  std::string name;
  bool held = false;
  std::string detail;
};

struct RunReport {
  std::string scenario;
  std::uint64_t seed = 0;
  std::uint32_t device_count = 0;
  std::string outcome;  // running (timed out), completed, halted
  std::string halt_reason;
  std::string expected_outcome;
  bool timed_out = false;
  std::int64_t duration_ms = 0;  // wall time from the first command to the end
  // The orchestrator's own start-to-end time of the rollout (what its plan predicts); -1 = none.
  std::int64_t rollout_duration_ms = -1;
  std::int64_t predicted_duration_ms = 0;  // before the start (see prediction_source)
  std::int64_t predicted_bound_ms = -1;    // the plan's 90 % bound; -1 = none
  std::string prediction_source;
  std::string rollout_id;  // the orchestrator's, with driver orchestrator/attach
  // The orchestrator's live ETA when the first wave finished, as a predicted total duration
  // (its model has measured link rates and phase times by then); -1 when not available.
  std::int64_t predicted_at_first_wave_ms = -1;
  // The same at half the actual duration: what an operator watching the rollout was told then.
  std::int64_t predicted_at_half_ms = -1;
  std::uint64_t orchestrator_restarts = 0;
  std::uint64_t image_size = 0;
  // Every device connection, both directions, TLS included, from the rollout's start.
  std::uint64_t wire_bytes = 0;
  std::uint64_t setup_wire_bytes = 0;       // connecting the fleet before the rollout
  std::uint64_t image_bytes_delivered = 0;  // image bytes written to slots
  std::uint64_t bytes_reused = 0;           // of those, copied from the devices' running slots
  double wire_ratio = 0.0;
  // MQTT PUBLISH packets the devices sent and received from the rollout's start (commands,
  // chunks, requests, reports), and their rate over the rollout's duration.
  std::uint64_t messages = 0;
  double messages_per_second = 0.0;
  std::uint64_t reconnects = 0;
  std::uint64_t power_cuts = 0;
  std::uint64_t link_resets = 0;
  std::uint64_t memory_per_device_bytes = 0;
  std::int64_t setup_ms = 0;
  DriverStats driver;
  std::vector<WaveRecord> waves;
  std::vector<Sample> samples;
  std::vector<DeviceResult> devices;
  std::vector<InvariantResult> invariants;
  bool passed = false;
};

// Errors: scenario cannot be set up (bad plan, driver orchestrator not available, CA missing,
// broker unreachable). A scenario whose invariants fail is a successful run with passed = false.
common::Result<RunReport> run_scenario(const Scenario& scenario, const RunEnvironment& environment,
                                       const RunOptions& options = {});

}  // namespace fota::sim

// SPDX-License-Identifier: Apache-2.0
// Drives a real fota-orchestrator through its HTTP API (rollout.driver: orchestrator): uploads the
// scenario's signed bundle, waits until the orchestrator has registered the fleet from its
// inventories, creates the rollout from the scenario, asks for the orchestrator's prediction,
// starts it, and follows it. The rollout itself (waves, gates, thresholds, windows, retries,
// dispatch, repair after restarts) is entirely the orchestrator's; this class only watches.
//
// The HTTP calls block, so following runs on a thread of its own that polls the rollout every
// poll_interval and publishes a snapshot; the event loop only reads the snapshot.
#pragma once

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <mutex>
#include <nlohmann/json.hpp>
#include <ostream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "fota/common/result.hpp"
#include "fota/orchestrator/rollout_spec.hpp"

namespace fota::sim {

enum class RolloutOutcome { kRunning, kCompleted, kHalted };
std::string_view rollout_outcome_name(RolloutOutcome outcome) noexcept;

// One wave as the orchestrator ran it.
struct WaveRecord {
  std::string name;
  std::vector<std::string> devices;
  std::int64_t started_ms = -1;   // since run start; -1 = never started
  std::int64_t finished_ms = -1;  // every device terminal (or the rollout halted)
  std::uint32_t committed = 0;
  std::uint32_t failed = 0;
};

// The orchestrator's counters for the run (from its metrics).
struct DriverStats {
  std::uint64_t commands_sent = 0;
  std::uint64_t commands_resent = 0;
  std::uint64_t chunk_requests = 0;
  std::uint64_t chunks_served = 0;
  std::uint64_t chunk_bytes_served = 0;
  std::uint64_t progress_reports = 0;
};

struct OrchestratorEndpoint {
  std::string api_url;  // http://127.0.0.1:<port>
  std::string token;
};

// What an existing rollout installs (rollout.driver attach): read from the orchestrator's API.
struct RolloutArtifact {
  std::string artifact_id;
  std::string version;
  std::string image_sha256;  // 32 raw bytes
  std::uint64_t image_size = 0;
  std::string state;  // the rollout's state when asked
};
common::Result<RolloutArtifact> rollout_artifact(const OrchestratorEndpoint& endpoint,
                                                 const std::string& rollout_id);

class OrchestratorDriver {
 public:
  // `clock` is the run's clock (ms); records count from the run_start_ms given to begin().
  OrchestratorDriver(OrchestratorEndpoint endpoint, std::function<std::int64_t()> clock,
                     std::vector<std::string> wave_names, std::int64_t poll_interval_ms = 500);
  ~OrchestratorDriver();
  OrchestratorDriver(const OrchestratorDriver&) = delete;
  OrchestratorDriver& operator=(const OrchestratorDriver&) = delete;

  // Blocking set-up calls, before begin(). Errors carry the orchestrator's message.
  common::Result<std::string> upload_artifact(const std::filesystem::path& bundle);
  // Waits until every device (id -> version) is registered online, running that version (from
  // its inventory: a kept store may still list it as it was at the end of an earlier run).
  common::Status wait_for_devices(const std::map<std::string, std::string>& devices, std::int64_t timeout_ms,
                                  std::ostream* progress);
  common::Status create_rollout(const orchestrator::RolloutSpec& spec);
  // Follows a rollout that already exists (rollout.driver: attach) instead of creating one.
  common::Status attach(const std::string& rollout_id);
  // The orchestrator's plan for the whole rollout from now (GET .../plan).
  struct Plan {
    std::int64_t duration_ms = -1;
    std::int64_t bound_duration_ms = -1;  // its 90 % bound
    std::size_t history_samples = 0;      // finished updates it drew device times from
  };
  common::Result<Plan> plan() const;
  const std::string& rollout_id() const noexcept { return rollout_id_; }
  // The orchestrator's start-to-end time of the finished rollout (after finish()); -1 = not finished.
  std::int64_t rollout_duration_ms() const;

  // Starts the rollout (unless attached to one that runs already) and the follower thread; times in
  // the records count from run_start_ms.
  void begin(std::int64_t run_start_ms);
  // Stops following and reads the final membership (which device was in which wave).
  void finish();
  // Aborts the rollout if it is still active (paused by a breach, waiting for windows), so a kept
  // store does not hold the devices for the next run.
  common::Status abort_if_active();

  RolloutOutcome outcome() const;
  std::string halt_reason() const;
  // "wave wave1 (dispatching)", "waiting", ...: for the live progress line.
  std::string current_wave() const;
  // The orchestrator's live ETA in ms from now; -1 when it has none.
  std::int64_t eta_ms() const;
  std::vector<WaveRecord> waves() const;
  DriverStats stats() const;
  // Failed polls (the orchestrator was down or slow), for the report.
  std::uint64_t failed_polls() const noexcept { return failed_polls_; }
  std::string state() const;

 private:
  void follow();
  void apply(const nlohmann::json& rollout);
  common::Result<nlohmann::json> get(const std::string& path) const;
  common::Result<nlohmann::json> post(const std::string& path, const std::string& body) const;

  OrchestratorEndpoint endpoint_;
  std::function<std::int64_t()> clock_;
  std::int64_t poll_interval_ms_;
  std::string rollout_id_;
  bool attached_ = false;
  std::int64_t run_start_ms_ = 0;

  mutable std::mutex mutex_;  // guards everything below
  std::string state_ = "created";
  std::string reason_;
  std::int64_t eta_ms_ = -1;  // as of eta_polled_at_ (clock_)
  std::int64_t eta_polled_at_ = 0;
  std::int64_t rollout_duration_ms_ = -1;
  std::vector<WaveRecord> waves_;
  std::vector<std::string> wave_status_;
  DriverStats stats_;

  std::atomic<bool> stop_{false};
  std::atomic<std::uint64_t> failed_polls_{0};
  std::thread follower_;
};

}  // namespace fota::sim

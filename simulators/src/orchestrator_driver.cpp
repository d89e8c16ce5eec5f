// SPDX-License-Identifier: Apache-2.0
#include "fota/sim/orchestrator_driver.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <iomanip>
#include <sstream>

#include "api_client.hpp"
#include "fota/common/crypto.hpp"
#include "fota/orchestrator/rollout_spec.hpp"

namespace fota::sim {

using common::Errc;
using common::Error;
using nlohmann::json;

namespace {

bool wave_started(const std::string& status) { return status != "waiting"; }
bool wave_finished(const std::string& status) { return status == "passed" || status == "breached"; }

// Milliseconds since the epoch of one of the API's timestamps; -1 when empty or not one.
std::int64_t unix_ms(const std::string& text) {
  auto time = orchestrator::parse_timestamp(text);
  return time.ok() ? *time : -1;
}

// One counter from Prometheus text, 0 when absent.
std::uint64_t metric(const std::string& text, const std::string& name) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(name + " ", 0) == 0) return std::stoull(line.substr(name.size() + 1));
  }
  return 0;
}

}  // namespace

std::string_view rollout_outcome_name(RolloutOutcome outcome) noexcept {
  switch (outcome) {
    case RolloutOutcome::kRunning:
      return "running";
    case RolloutOutcome::kCompleted:
      return "completed";
    case RolloutOutcome::kHalted:
      return "halted";
  }
  return "unknown";
}

common::Result<RolloutArtifact> rollout_artifact(const OrchestratorEndpoint& endpoint,
                                                 const std::string& rollout_id) {
  const cli::ApiClient api(cli::ApiConnection::with_token(endpoint.api_url, endpoint.token));
  auto rollout = api.get("/api/v1/rollouts/" + rollout_id);
  if (!rollout.ok()) return rollout.error().with_context("rollout.attach: rollout " + rollout_id);
  RolloutArtifact out;
  out.artifact_id = rollout->value("artifact", "");
  out.state = rollout->value("state", "");
  auto artifact = api.get("/api/v1/artifacts/" + out.artifact_id);
  if (!artifact.ok()) return artifact.error().with_context("rollout.attach: artifact " + out.artifact_id);
  out.version = artifact->value("version", "");
  out.image_size = artifact->value("image_size", std::uint64_t{0});
  auto digest = common::from_hex(artifact->value("image_sha256", ""));
  if (!digest.ok() || digest->size() != 32)
    return Error(Errc::kMalformed, "rollout.attach: the orchestrator's artifact " + out.artifact_id +
                                       " has no valid image_sha256");
  out.image_sha256 = *digest;
  return out;
}

OrchestratorDriver::OrchestratorDriver(OrchestratorEndpoint endpoint, std::function<std::int64_t()> clock,
                                       std::vector<std::string> wave_names, std::int64_t poll_interval_ms)
    : endpoint_(std::move(endpoint)), clock_(std::move(clock)), poll_interval_ms_(poll_interval_ms) {
  for (auto& name : wave_names) {
    WaveRecord record;
    record.name = std::move(name);
    waves_.push_back(std::move(record));
    wave_status_.emplace_back("waiting");
  }
}

OrchestratorDriver::~OrchestratorDriver() {
  stop_ = true;
  if (follower_.joinable()) follower_.join();
}

common::Result<json> OrchestratorDriver::get(const std::string& path) const {
  return cli::ApiClient(cli::ApiConnection::with_token(endpoint_.api_url, endpoint_.token)).get(path);
}

common::Result<json> OrchestratorDriver::post(const std::string& path, const std::string& body) const {
  return cli::ApiClient(cli::ApiConnection::with_token(endpoint_.api_url, endpoint_.token))
      .post(path, body, "application/json");
}

common::Result<std::string> OrchestratorDriver::upload_artifact(const std::filesystem::path& bundle) {
  auto uploaded = cli::ApiClient(cli::ApiConnection::with_token(endpoint_.api_url, endpoint_.token))
                      .post_file("/api/v1/artifacts", bundle, {});
  if (!uploaded.ok())
    return uploaded.error().with_context("uploading the scenario's bundle to the orchestrator");
  const std::string id = uploaded->value("id", uploaded->value("artifact_id", ""));
  if (id.empty()) return Error(Errc::kMalformed, "the orchestrator's upload answer names no artifact id");
  return id;
}

common::Status OrchestratorDriver::wait_for_devices(const std::map<std::string, std::string>& wanted,
                                                    std::int64_t timeout_ms, std::ostream* progress) {
  const auto started = std::chrono::steady_clock::now();
  std::size_t known = 0;
  while (true) {
    auto devices = get("/api/v1/devices");
    if (devices.ok()) {
      known = 0;
      for (const auto& d : *devices) {
        auto it = wanted.find(d.value("id", ""));
        known += it != wanted.end() && d.value("online", false) && d.value("version", "") == it->second;
      }
      if (known == wanted.size()) return common::ok_status();
    }
    const auto waited =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started)
            .count();
    if (waited > timeout_ms) {
      return Error(Errc::kUnavailable, "the orchestrator registered " + std::to_string(known) + " of " +
                                           std::to_string(wanted.size()) + " devices within " +
                                           std::to_string(timeout_ms / 1000) + " s (from their inventories)");
    }
    if (progress != nullptr)
      *progress << "orchestrator: " << known << "/" << wanted.size() << " devices registered\n";
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
}

common::Status OrchestratorDriver::create_rollout(const orchestrator::RolloutSpec& spec) {
  auto created = post("/api/v1/rollouts", orchestrator::rollout_spec_to_json(spec));
  if (!created.ok())
    return created.error().with_context("creating the scenario's rollout on the orchestrator");
  rollout_id_ = created->value("id", "");
  if (rollout_id_.empty()) return Error(Errc::kMalformed, "the orchestrator's answer names no rollout id");
  return common::ok_status();
}

common::Status OrchestratorDriver::attach(const std::string& rollout_id) {
  auto rollout = get("/api/v1/rollouts/" + rollout_id);
  if (!rollout.ok()) return rollout.error().with_context("attaching to rollout " + rollout_id);
  rollout_id_ = rollout_id;
  attached_ = true;
  const std::size_t waves = (*rollout)["spec"]["waves"].size();
  std::lock_guard lock(mutex_);
  waves_.resize(waves);
  wave_status_.resize(waves, "waiting");
  for (std::size_t w = 0; w < waves; ++w) {
    if (waves_[w].name.empty()) waves_[w].name = "wave" + std::to_string(w + 1);
  }
  return common::ok_status();
}

common::Result<OrchestratorDriver::Plan> OrchestratorDriver::plan() const {
  auto plan = get("/api/v1/rollouts/" + rollout_id_ + "/plan");
  if (!plan.ok()) return plan.error().with_context("asking the orchestrator for its prediction");
  return Plan{plan->value("duration_ms", std::int64_t{-1}),
              plan->value("bound_duration_ms", std::int64_t{-1}),
              plan->value("history_samples", std::size_t{0})};
}

void OrchestratorDriver::begin(std::int64_t run_start_ms) {
  run_start_ms_ = run_start_ms;
  bool start = !attached_;
  if (attached_) {
    auto rollout = get("/api/v1/rollouts/" + rollout_id_);
    start = rollout.ok() && rollout->value("state", "") == "created";
  }
  if (start) {
    auto started = post("/api/v1/rollouts/" + rollout_id_ + "/start", "");
    std::lock_guard lock(mutex_);
    if (!started.ok()) {
      state_ = "aborted";
      reason_ = "starting the rollout failed: " + started.error().message;
      return;
    }
  }
  follower_ = std::thread([this] { follow(); });
}

void OrchestratorDriver::follow() {
  while (!stop_) {
    // The list omits the member table: a cheap call even for a 10,000-device rollout.
    auto rollouts = get("/api/v1/rollouts");
    bool seen = false;
    if (rollouts.ok()) {
      for (const auto& r : *rollouts) {
        if (r.value("id", "") != rollout_id_) continue;
        apply(r);
        seen = true;
      }
    }
    if (!seen) ++failed_polls_;  // down (kill -9 fault) or restarting: keep the last snapshot
    for (std::int64_t slept = 0; slept < poll_interval_ms_ && !stop_; slept += 20)
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

void OrchestratorDriver::apply(const json& rollout) {
  const std::int64_t now = clock_() - run_start_ms_;
  std::lock_guard lock(mutex_);
  state_ = rollout.value("state", state_);
  reason_ = rollout.value("reason", "");
  eta_ms_ = rollout.contains("eta") ? rollout["eta"].value("remaining_ms", std::int64_t{-1}) : -1;
  eta_polled_at_ = clock_();
  rollout_duration_ms_ = rollout.value("duration_ms", std::int64_t{-1});
  const auto& waves = rollout["waves"];
  for (std::size_t w = 0; w < waves.size() && w < waves_.size(); ++w) {
    const std::string status = waves[w].value("status", "waiting");
    auto& record = waves_[w];
    if (wave_started(status) && record.started_ms < 0) record.started_ms = now;
    if (wave_finished(status) && record.finished_ms < 0) record.finished_ms = now;
    const auto& counts = waves[w]["counts"];
    record.committed = counts.value("succeeded", 0u);
    record.failed = counts.value("failed", 0u);
    wave_status_[w] = status;
  }
  if (state_ == "completed" || state_ == "aborted" || state_ == "rolled_back" || state_ == "paused") {
    for (auto& record : waves_) {
      if (record.started_ms >= 0 && record.finished_ms < 0) record.finished_ms = now;
    }
  }
}

void OrchestratorDriver::finish() {
  stop_ = true;
  if (follower_.joinable()) follower_.join();
  if (auto rollout = get("/api/v1/rollouts/" + rollout_id_); rollout.ok()) {
    apply(*rollout);
    std::lock_guard lock(mutex_);
    // The orchestrator's own wave times, counted from its start of the rollout (which begin()
    // asked for at run start), replace what the polls saw: a busy orchestrator answers late.
    if (const std::int64_t start = unix_ms(rollout->value("started_at", "")); start >= 0) {
      const auto& waves = (*rollout)["waves"];
      for (std::size_t w = 0; w < waves.size() && w < waves_.size(); ++w) {
        const std::int64_t started = unix_ms(waves[w].value("started_at", ""));
        const std::int64_t finished = unix_ms(waves[w].value("finished_at", ""));
        if (started >= 0) waves_[w].started_ms = started - start;
        if (finished >= 0) waves_[w].finished_ms = finished - start;
      }
    }
    for (auto& record : waves_) record.devices.clear();
    for (const auto& m : (*rollout)["members"]) {
      const auto wave = m.value("wave", 0);
      if (wave >= 1 && static_cast<std::size_t>(wave) <= waves_.size())
        waves_[static_cast<std::size_t>(wave - 1)].devices.push_back(m.value("device", ""));
    }
  }
  // Counters since the orchestrator's last start (a kill -9 restarts them).
  auto metrics =
      cli::ApiClient(cli::ApiConnection::with_token(endpoint_.api_url, endpoint_.token)).get_text("/metrics");
  if (metrics.ok()) {
    std::lock_guard lock(mutex_);
    stats_.commands_sent = metric(*metrics, "fota_commands_sent_total");
    stats_.chunks_served = metric(*metrics, "fota_chunks_served_total");
    stats_.chunk_bytes_served = metric(*metrics, "fota_chunk_bytes_served_total");
    stats_.progress_reports = metric(*metrics, "fota_progress_reports_total");
  }
}

common::Status OrchestratorDriver::abort_if_active() {
  const std::string now = state();
  if (now != "created" && now != "running" && now != "paused") return common::ok_status();
  auto aborted = post("/api/v1/rollouts/" + rollout_id_ + "/abort", "");
  if (!aborted.ok())
    return aborted.error().with_context("aborting rollout " + rollout_id_ + " for the next run");
  return common::ok_status();
}

std::int64_t OrchestratorDriver::rollout_duration_ms() const {
  std::lock_guard lock(mutex_);
  return rollout_duration_ms_;
}

RolloutOutcome OrchestratorDriver::outcome() const {
  std::lock_guard lock(mutex_);
  if (state_ == "completed") return RolloutOutcome::kCompleted;
  if (state_ == "paused" || state_ == "aborted" || state_ == "rolled_back") return RolloutOutcome::kHalted;
  return RolloutOutcome::kRunning;
}

std::string OrchestratorDriver::halt_reason() const {
  std::lock_guard lock(mutex_);
  return reason_;
}

std::string OrchestratorDriver::state() const {
  std::lock_guard lock(mutex_);
  return state_;
}

std::string OrchestratorDriver::current_wave() const {
  std::lock_guard lock(mutex_);
  std::string wave = state_ == "created" ? "waiting" : state_;
  for (std::size_t w = 0; w < waves_.size(); ++w) {
    if (state_ == "running" && wave_started(wave_status_[w]) && !wave_finished(wave_status_[w]))
      wave = "wave " + waves_[w].name + " (" + wave_status_[w] + ")";
  }
  return wave;
}

std::int64_t OrchestratorDriver::eta_ms() const {
  std::lock_guard lock(mutex_);
  if (eta_ms_ < 0) return -1;
  // The orchestrator said this when last polled; the time since has passed.
  return std::max<std::int64_t>(0, eta_ms_ - (clock_() - eta_polled_at_));
}

std::vector<WaveRecord> OrchestratorDriver::waves() const {
  std::lock_guard lock(mutex_);
  return waves_;
}

DriverStats OrchestratorDriver::stats() const {
  std::lock_guard lock(mutex_);
  return stats_;
}

}  // namespace fota::sim

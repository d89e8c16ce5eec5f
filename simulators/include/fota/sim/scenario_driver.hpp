// The minimal SCENARIO DRIVER: a stand-in for fota-orchestrator so scenarios run end to end
// without it. It is NOT the orchestrator: it knows only waves, a failure threshold, a success gate
// and soak time, and it serves chunks from an ArtifactStore over a real MQTT session (role
// orchestrator), as the broker plugin or orchestrator would. Scenarios with rollout.driver
// "orchestrator" use the real service instead.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "fota/client/mosquitto/event_loop.hpp"
#include "fota/client/mosquitto/mosquitto_session.hpp"
#include "fota/common/artifact.hpp"
#include "fota/common/topics.hpp"
#include "fota/sim/scenario.hpp"

namespace fota::sim {

enum class RolloutOutcome { kRunning, kCompleted, kHalted };
std::string_view rollout_outcome_name(RolloutOutcome outcome) noexcept;

struct WaveRecord {
  std::string name;
  std::vector<std::string> devices;
  std::int64_t started_ms = -1;   // since run start; -1 = never started
  std::int64_t finished_ms = -1;  // every device terminal (or the rollout halted)
  std::uint32_t committed = 0;
  std::uint32_t failed = 0;
};

struct DriverStats {
  std::uint64_t commands_sent = 0;
  std::uint64_t commands_resent = 0;
  std::uint64_t chunk_requests = 0;
  std::uint64_t chunks_served = 0;
  std::uint64_t chunk_bytes_served = 0;
  std::uint64_t progress_reports = 0;
};

// What the runner needs from whoever runs the rollout: the builtin ScenarioDriver below, or
// OrchestratorDriver (orchestrator_driver.hpp), which drives a real fota-orchestrator.
class RolloutDriverApi {
 public:
  virtual ~RolloutDriverApi() = default;
  // Starts the rollout; times in the records count from run_start_ms.
  virtual void begin(std::int64_t run_start_ms) = 0;
  virtual RolloutOutcome outcome() const = 0;
  virtual std::string halt_reason() const = 0;
  // "wave canary", "waiting", ...: for the live progress line.
  virtual std::string current_wave() const = 0;
  // The driver's own ETA in ms from now; -1 when it has none.
  virtual std::int64_t eta_ms() const { return -1; }
  virtual std::vector<WaveRecord> waves() const = 0;
  virtual DriverStats stats() const = 0;
};

class ScenarioDriver final : public RolloutDriverApi {
 public:
  ScenarioDriver(client::mosquitto::EventLoop& loop, common::TopicScheme topics,
                 const common::ArtifactStore& store, v1::SignedManifest signed_manifest,
                 v1::Manifest manifest, RolloutPlan plan, std::vector<WaveRecord> waves);

  // Connects with the given session settings (role orchestrator) and subscribes.
  common::Status start(client::mosquitto::SessionConfig session);
  bool ready() const noexcept { return subscribed_; }
  // Starts the first wave (after the plan's start_after).
  void begin(std::int64_t run_start_ms) override;

  RolloutOutcome outcome() const override { return outcome_; }
  std::string halt_reason() const override { return halt_reason_; }
  std::string current_wave() const override;
  std::vector<WaveRecord> waves() const override { return waves_; }
  DriverStats stats() const override { return stats_; }
  client::mosquitto::WireCounters wire() const noexcept;
  std::uint32_t reconnects() const noexcept;

 private:
  struct DeviceState {
    std::size_t wave = 0;
    std::set<std::string> command_ids;
    v1::Phase phase = v1::PHASE_UNSPECIFIED;
    bool terminal = false;
    bool commanded = false;
    std::int64_t last_sent_ms = 0;
    bool heard = false;  // any progress for our commands
    std::uint32_t resends = 0;
  };

  void on_connected(int reason_code);
  void on_disconnected(int reason_code);
  void reconnect(std::int64_t delay_ms);
  void on_message(std::string_view topic, std::string_view payload);
  void on_chunk_request(const common::DeviceId& device, std::string_view payload);
  void on_progress(const common::DeviceId& device, std::string_view payload);
  void on_inventory(const common::DeviceId& device, std::string_view payload);
  void start_wave(std::size_t index);
  void send_install(const std::string& device_id, bool resend);
  void evaluate_wave(std::size_t index);
  void mark_terminal(DeviceState& state, v1::Phase phase);
  void repair();
  std::int64_t since_start() const { return loop_.now_ms() - run_start_ms_; }

  client::mosquitto::EventLoop& loop_;
  common::TopicScheme topics_;
  const common::ArtifactStore& store_;
  v1::SignedManifest signed_manifest_;
  v1::Manifest manifest_;
  RolloutPlan plan_;
  std::vector<WaveRecord> waves_;
  std::int64_t run_start_ms_ = 0;
  std::string deployment_id_;
  std::unique_ptr<client::mosquitto::MosquittoSession> session_;
  bool subscribed_ = false;
  bool begun_ = false;
  std::size_t current_wave_ = 0;
  RolloutOutcome outcome_ = RolloutOutcome::kRunning;
  std::string halt_reason_;
  std::map<std::string, DeviceState> devices_;
  std::uint64_t next_command_ = 1;
  std::uint32_t connects_ = 0;
  DriverStats stats_;
};

}  // namespace fota::sim

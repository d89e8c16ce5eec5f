// SPDX-License-Identifier: Apache-2.0
// One virtual device: the client's DeviceAgent (the same agent fota-device runs: engine,
// DeviceRuntime, presence, subscriptions, message handling, logs, SetLogLevel) over simulated
// flash, journal and bootloader, with a transport adapter of its own: a DeviceLink over its mTLS
// MQTT session with a link emulator between the two, and the faults its plan gives it. Everything
// runs on the runner's event loop thread.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fota/client/connection_supervisor.hpp"
#include "fota/client/device_agent.hpp"
#include "fota/client/engine.hpp"
#include "fota/client/mosquitto/event_loop.hpp"
#include "fota/client/mosquitto/mosquitto_session.hpp"
#include "fota/client/runtime.hpp"
#include "fota/common/topics.hpp"
#include "fota/sim/fleet_plan.hpp"
#include "fota/sim/link_emulator.hpp"
#include "fota/sim/simulated_storage.hpp"

namespace fota::sim {

// A simulated device's reboot and health check take kRebootMs + kHealthCheckMs (virtual_device.cpp);
// with the reconnect after the reboot, the final read-back and the progress reports, an update
// costs about this much besides the transfer. fota-sim gives it to the orchestrator as its
// prediction default (default_device_time), as an operator would for a real fleet.
inline constexpr std::int64_t kNominalDeviceTimeMs = 1000;

// What every device of a run shares.
struct FleetContext {
  client::mosquitto::EventLoop* loop = nullptr;
  const Scenario* scenario = nullptr;
  common::TopicScheme topics;
  const client::EngineCrypto* crypto = nullptr;
  ChunkPool* pool = nullptr;
  std::string broker_host = "127.0.0.1";
  int broker_port = 0;
  std::int64_t run_start_ms = 0;  // link schedules are relative to this
  // The image the rollout installs: a slot holding it boots as target_version.
  std::string image_sha256;
  std::string target_version;
};

struct TimelineEntry {
  std::int64_t at_ms = 0;  // since run start
  std::string event;       // a phase name ("downloading"), or "connected", "power-cut", ...
  std::string detail;
};

struct DeviceCounters {
  std::uint32_t connects = 0;    // ConnectionSupervisor::connects()
  std::uint32_t reconnects = 0;  // connects after the first
  std::uint32_t link_resets = 0;
  std::uint32_t link_stalls = 0;
  std::uint32_t power_cuts = 0;
  std::uint32_t reboots = 0;
  std::uint64_t chunks_received = 0;
  std::uint64_t messages_dropped_by_link = 0;
  std::uint64_t messages_sent = 0;      // PUBLISH packets handed to the broker
  std::uint64_t messages_received = 0;  // PUBLISH packets the broker delivered
};

class VirtualDevice {
 public:
  VirtualDevice(FleetContext& fleet, VirtualDevicePlan plan,
                std::shared_ptr<client::mosquitto::TlsContext> tls);
  ~VirtualDevice();
  VirtualDevice(const VirtualDevice&) = delete;
  VirtualDevice& operator=(const VirtualDevice&) = delete;

  // First power-on: boot, start the engine, connect.
  common::Status start();
  // The rollout starts now (fleet.run_start_ms was just set): schedule the link faults of the
  // plan, which are relative to it.
  void arm_link_faults();
  // Ends the run for this device: disconnects gracefully, stops reacting.
  void stop();

  const VirtualDevicePlan& plan() const noexcept { return plan_; }
  // Last phase the device reported (PHASE_IDLE before any).
  v1::Phase phase() const noexcept { return phase_; }
  v1::ErrorCode last_error() const noexcept { return last_error_; }
  bool connected() const noexcept { return session_ && session_->connected(); }
  bool powered() const noexcept { return powered_; }
  // True once the device booted a slot without a complete image.
  bool bricked() const noexcept { return bricked_; }
  // Powered and the engine is in the middle of an update (or has not started yet).
  bool busy() const noexcept;
  // The version running now ("" while powered off), and whether it runs on trial.
  std::string running_version() const;
  bool running_on_trial() const;
  std::uint64_t image_bytes_written() const noexcept { return storage_.bytes_written(); }
  // Of the update's bytes, those the engine copied from the running slot (its last report's
  // Progress.bytes_reused): the same reuse phase as a real agent's.
  std::uint64_t bytes_reused() const noexcept { return bytes_reused_; }
  client::mosquitto::WireCounters wire() const noexcept;
  const DeviceCounters& counters() const noexcept { return counters_; }
  const std::vector<TimelineEntry>& timeline() const noexcept { return timeline_; }
  std::int64_t engine_unexpected_events() const noexcept;

 private:
  std::int64_t now() const noexcept;         // the loop's wall clock
  std::int64_t device_now() const noexcept;  // with this device's clock skew
  std::int64_t since_start() const noexcept { return now() - fleet_.run_start_ms; }
  void note(std::string event, std::string detail = {});

  void power_on();
  void power_off(bool orderly);
  // The connection supervisor's deadline passed (or a health check that held a connect back ended).
  void on_connection_deadline();
  void arm_connection_timer();
  void apply_link_fault(const LinkFault& fault);

  void on_connected(int reason_code);
  void on_disconnected(int reason_code);
  void on_message(std::string_view topic, std::string_view payload);
  void deliver(std::string topic, std::string payload, std::uint64_t epoch);

  class Link;  // the agent's DeviceLink: publishes through the link emulator, then the session
  common::Status send(const client::OutboundMessage& message);
  client::DeviceAgent::Hooks agent_hooks();
  // Feeds the agent one input, then injects a planned power cut or schedules its next tick.
  template <typename Input>
  void drive(Input&& input);
  void after_input(std::uint64_t epoch);
  bool before_action(const client::Action& action, const std::deque<client::Action>& upcoming);
  bool after_action(const client::Action& action);
  void start_health_check(client::HealthCheckTicket ticket);
  void schedule_tick();
  void reboot();
  void leave();

  FleetContext& fleet_;
  VirtualDevicePlan plan_;
  std::shared_ptr<client::mosquitto::TlsContext> tls_;
  common::DeviceId id_;
  SimulatedStorage storage_;
  LinkEmulator link_;
  std::unique_ptr<client::mosquitto::MosquittoSession> session_;
  SimulatedJournal journal_;
  std::unique_ptr<Link> device_link_;
  // One per power cycle, built from the persisted journal, as fota-device is started afresh.
  std::unique_ptr<client::DeviceAgent> agent_;

  bool started_ = false;
  bool stopped_ = false;
  bool powered_ = false;
  bool bricked_ = false;
  std::uint64_t power_epoch_ = 0;       // timers of an earlier power cycle are stale
  std::uint64_t connection_epoch_ = 0;  // in-flight messages die with their connection
  std::optional<client::mosquitto::EventLoop::TimerId> tick_timer_;
  std::int64_t tick_at_ = client::UpdateEngine::kNoDeadline;
  // When to connect, as fota-device's transports decide it (fota-device's defaults: backoff
  // 500 ms .. 60 s with full jitter, a 10 s connect timeout), its jitter seeded per device. One for
  // the device's life: start() on every power-on begins afresh, and it counts the reconnects.
  client::ConnectionSupervisor supervisor_;
  std::optional<client::mosquitto::EventLoop::TimerId> connection_timer_;  // at its deadline
  std::int64_t connection_timer_at_ = client::ConnectionSupervisor::kNoDeadline;
  std::int64_t flash_busy_until_ = 0;  // slow flash: the device works through writes first
  std::size_t next_power_cut_ = 0;
  // A cut planned inside a phase: how many more actions run before it (DeviceRuntime's queue).
  std::optional<std::size_t> cut_countdown_;
  bool cut_now_ = false;  // the runtime stopped for the planned cut; power goes once it returned
  std::uint64_t update_bytes_total_ = 0;
  std::uint64_t update_bytes_written_ = 0;
  std::uint64_t bytes_reused_ = 0;
  v1::Phase phase_ = v1::PHASE_IDLE;
  v1::ErrorCode last_error_ = v1::ERROR_NONE;
  Rng rng_;
  DeviceCounters counters_;
  std::vector<TimelineEntry> timeline_;
  // Like fota-device, a virtual device lets the reports it already sent leave before an orderly
  // reboot, and does not start connecting while a health check runs (DeviceAgent::
  // health_check_pending(): after a trial boot it connects once it knows the outcome).
  std::int64_t uplink_busy_until_ = 0;  // loop time the last report handed to the link arrives
  bool connect_deferred_ = false;       // a connect waits for the health check's answer
  bool rebooting_ = false;              // the engine asked for a reboot; the device is shutting down
};

}  // namespace fota::sim

// SPDX-License-Identifier: Apache-2.0
#include "fota/sim/virtual_device.hpp"

#include <algorithm>

#include "fota/common/phase.hpp"

namespace fota::sim {

using common::Channel;
using common::Errc;
using common::Error;

namespace {

common::DeviceId checked_id(const std::string& text) {
  auto id = common::DeviceId::parse(text);
  // plan_fleet validated every id; a bad one here is a programming error, so fail loudly.
  if (!id.ok()) throw std::logic_error("invalid device id in a fleet plan: " + id.error().message);
  return *id;
}

v1::Phase reported_phase(DevicePhase phase) {
  switch (phase) {
    case DevicePhase::kDownloading:
      return v1::PHASE_DOWNLOADING;
    case DevicePhase::kVerifying:
      return v1::PHASE_VERIFYING;
    case DevicePhase::kInstalling:
      return v1::PHASE_INSTALLING;
    case DevicePhase::kRebooting:
      return v1::PHASE_REBOOTING;
    case DevicePhase::kConfirming:
      return v1::PHASE_CONFIRMING;
  }
  return v1::PHASE_UNSPECIFIED;
}

// How long a power cycle keeps the device dark, and how long a reboot takes.
constexpr std::int64_t kPowerOffMs = 400;
constexpr std::int64_t kRebootMs = 200;
constexpr std::int64_t kHealthCheckMs = 100;
// A boot takes up to this long before the agent connects: a batch powered on together does not
// hit the broker in one instant.
constexpr std::int64_t kBootJitterMs = 50;

// fota-device's reconnect rule and timeout, its jitter seeded per device so a run repeats.
client::ConnectionSupervisorConfig supervisor_config(std::uint64_t scenario_seed, std::uint64_t index) {
  client::ConnectionSupervisorConfig config;
  config.seed = derive_seed(scenario_seed, "reconnect", index) | 1;  // never 0: std::random_device
  return config;
}

}  // namespace

// The agent's DeviceLink, as MosquittoDeviceClient's is, but what the agent publishes crosses the
// link emulator first. Subscriptions go to the session directly (they cost no emulated time).
class VirtualDevice::Link : public client::DeviceLink {
 public:
  explicit Link(VirtualDevice& device) : device_(device) {}
  common::Status publish(const client::OutboundMessage& message) override { return device_.send(message); }
  common::Status subscribe(const std::string& topic, int qos) override {
    if (!device_.session_) return Error(Errc::kUnavailable, "not connected");
    return device_.session_->subscribe(topic, qos);
  }

 private:
  VirtualDevice& device_;
};

VirtualDevice::VirtualDevice(FleetContext& fleet, VirtualDevicePlan plan,
                             std::shared_ptr<client::mosquitto::TlsContext> tls)
    : fleet_(fleet),
      plan_(std::move(plan)),
      tls_(std::move(tls)),
      id_(checked_id(plan_.device_id)),
      storage_(*fleet.pool, plan_.installed_version,
               StorageFaults{plan_.faults.storage_full ? fleet.scenario->artifact.image_size / 2 + 1 : 0}),
      link_(fleet.scenario->link_profiles.at(plan_.link_profile), fleet.scenario->faults.outages,
            fleet.scenario->seed, plan_.index, fleet.scenario->duration_ms),
      device_link_(std::make_unique<Link>(*this)),
      supervisor_(supervisor_config(fleet.scenario->seed, plan_.index)),
      rng_(derive_seed(fleet.scenario->seed, "device", plan_.index)) {
  link_.set_faults_armed(false);  // until the rollout starts (arm_link_faults)
}

VirtualDevice::~VirtualDevice() {
  if (session_) fleet_.loop->unwatch(session_.get());
}

std::int64_t VirtualDevice::now() const noexcept { return fleet_.loop->now_ms(); }
std::int64_t VirtualDevice::device_now() const noexcept { return now() + plan_.faults.clock_skew_ms; }

void VirtualDevice::note(std::string event, std::string detail) {
  timeline_.push_back({since_start(), std::move(event), std::move(detail)});
}

common::Status VirtualDevice::start() {
  started_ = true;
  // Boots and builds the agent; its first connect waits on a loop timer for the session below.
  power_on();
  client::mosquitto::SessionConfig config;
  config.host = fleet_.broker_host;
  config.port = fleet_.broker_port;
  config.client_id = plan_.device_id;
  config.tls = tls_;
  // The agent's last will (retained presence offline); the same for every power cycle.
  if (agent_) {
    const client::OutboundMessage will = agent_->last_will();
    config.will = client::mosquitto::LastWill{will.topic, will.payload, will.qos, will.retain};
  }
  client::mosquitto::SessionCallbacks callbacks;
  callbacks.on_connected = [this](int rc) { on_connected(rc); };
  callbacks.on_disconnected = [this](int rc) { on_disconnected(rc); };
  callbacks.on_message = [this](std::string_view topic, std::string_view payload) {
    on_message(topic, payload);
  };
  auto session = client::mosquitto::MosquittoSession::create(std::move(config), std::move(callbacks));
  if (!session.ok()) return session.error().with_context("device " + plan_.device_id);
  session_ = std::move(*session);
  fleet_.loop->watch(session_.get());
  return common::ok_status();
}

bool VirtualDevice::busy() const noexcept {
  return !powered_ || !agent_ || agent_->state() != client::EngineState::kIdle;
}

void VirtualDevice::arm_link_faults() {
  link_.set_faults_armed(true);
  link_.on_reset(since_start());
  for (const LinkFault& fault : link_.schedule().faults()) {
    fleet_.loop->at(fleet_.run_start_ms + fault.start_ms, [this, fault] { apply_link_fault(fault); });
    if (fault.state == LinkState::kStalled) {
      fleet_.loop->at(fleet_.run_start_ms + fault.end_ms, [this] {
        if (session_ && link_.state_at(since_start()) != LinkState::kStalled) {
          fleet_.loop->set_paused(session_.get(), false);
        }
      });
    }
  }
}

void VirtualDevice::stop() {
  stopped_ = true;
  if (tick_timer_) fleet_.loop->cancel(*tick_timer_);
  supervisor_.stop();
  arm_connection_timer();
  if (session_) {
    fleet_.loop->set_paused(session_.get(), false);
    // Like fota-device on SIGTERM.
    leave();
  }
}

void VirtualDevice::leave() {
  // The retained presence says offline before the DISCONNECT (which suppresses the last will),
  // and the DISCONNECT waits for its acknowledgement, as fota-device's stop() does.
  if (session_->connected() && agent_) {
    const client::OutboundMessage presence = agent_->offline_presence(device_now());
    (void)session_->publish(presence.topic, presence.payload, presence.qos, presence.retain);
  }
  session_->disconnect_when_acknowledged();
}

void VirtualDevice::reboot() {
  // Like fota-device: the reports already handed to the link leave first (its DISCONNECT waits for
  // them), then the offline presence and a DISCONNECT, then the device restarts.
  rebooting_ = true;
  if (tick_timer_) fleet_.loop->cancel(*tick_timer_);
  tick_timer_.reset();
  tick_at_ = client::UpdateEngine::kNoDeadline;
  const std::uint64_t epoch = power_epoch_;
  fleet_.loop->at(std::max(now(), uplink_busy_until_), [this, epoch] {
    if (epoch != power_epoch_ || !rebooting_) return;  // a power cut came first
    if (!session_ || !session_->connected()) {
      power_off(/*orderly=*/true);
      return;
    }
    leave();  // on_disconnected powers off
    // A broker that never answers must not keep the device from rebooting (fota-device waits 2 s).
    fleet_.loop->after(2000, [this, epoch] {
      if (epoch == power_epoch_ && rebooting_) power_off(/*orderly=*/true);
    });
  });
}

std::string VirtualDevice::running_version() const {
  if (!powered_ || !agent_) return {};
  return agent_->inventory(device_now()).version();
}

bool VirtualDevice::running_on_trial() const { return const_cast<SimulatedStorage&>(storage_).on_trial(); }

client::mosquitto::WireCounters VirtualDevice::wire() const noexcept {
  return session_ ? session_->wire() : client::mosquitto::WireCounters{};
}

std::int64_t VirtualDevice::engine_unexpected_events() const noexcept {
  return agent_ ? static_cast<std::int64_t>(agent_->stats().unexpected_events) : 0;
}

// ---- power ---------------------------------------------------------------------------------

void VirtualDevice::power_on() {
  if (stopped_) return;
  powered_ = true;
  ++power_epoch_;
  auto booted = storage_.boot();
  if (!booted.ok()) {
    note("boot-failed", booted.error().message);
    bricked_ = true;
    return;
  }
  const std::string version = storage_.bootable_version(*booted, fleet_.image_sha256, fleet_.target_version);
  if (version.empty()) {
    // A real device would hang here; the bootloader's boot counting is what must prevent it.
    bricked_ = true;
    note("bricked", "booted slot '" + *booted + "' without a complete image");
  }
  note("boot", "slot " + *booted + (version.empty() ? "" : " (" + version + ")"));

  client::DeviceAgentConfig config;
  config.topic_prefix = fleet_.topics.prefix();
  config.engine.device_id = plan_.device_id;
  config.engine.hardware_type = plan_.hardware_type;
  config.engine.client_version = "fota-sim";
  config.engine.time_zone = plan_.time_zone;
  config.engine.factory_version = plan_.installed_version;
  config.engine.factory_security_counter = plan_.security_counter;
  config.engine.attributes["group"] = plan_.group;
  config.engine.attributes["link"] = plan_.link_profile;
  // The link's nominal speed, as a device knows it from its modem class: the orchestrator's
  // prediction uses it until it has measured the device.
  if (const auto bandwidth = fleet_.scenario->link_profiles.at(plan_.link_profile).bandwidth_bytes_per_second;
      bandwidth > 0)
    config.engine.attributes["link_rate"] = std::to_string(bandwidth);
  auto agent = client::DeviceAgent::create(std::move(config), storage_, journal_, *fleet_.crypto,
                                           *device_link_, agent_hooks());
  if (!agent.ok()) {
    note("boot-failed", agent.error().message);
    bricked_ = true;
    return;
  }
  agent_ = std::move(agent).value();
  const std::uint64_t epoch = power_epoch_;
  cut_countdown_.reset();
  if (auto started = agent_->start(device_now()); !started.ok()) {
    note("boot-failed", started.error().message);
    bricked_ = true;
    return;
  }
  after_input(epoch);
  // Like fota-device, it connects once the boot's work is done (a trial boot's health check first:
  // on_connection_deadline waits for it). The session does not exist yet during start()'s first
  // power-on: the timer finds it.
  if (epoch != power_epoch_) return;
  fleet_.loop->after(static_cast<std::int64_t>(rng_.uniform(0, kBootJitterMs)), [this, epoch] {
    if (epoch != power_epoch_ || stopped_) return;
    supervisor_.start(now());
    on_connection_deadline();
  });
}

client::DeviceAgent::Hooks VirtualDevice::agent_hooks() {
  client::DeviceAgent::Hooks hooks;
  hooks.reboot = [this] { reboot(); };
  hooks.start_health_check = [this](client::HealthCheckTicket ticket, const client::HealthCheckSubject&,
                                    std::int64_t) { start_health_check(ticket); };
  hooks.before_action = [this](const client::Action& action, const std::deque<client::Action>& upcoming) {
    return before_action(action, upcoming);
  };
  hooks.after_action = [this](const client::Action& action) { return after_action(action); };
  // What fota-device would write to its log at warning level and above (a malformed message
  // dropped, a failed action): in the device's timeline. They reach the fleet as LogBatch too.
  hooks.log = [this](v1::LogLevel level, const std::string& message) {
    if (level >= v1::LOG_LEVEL_WARN) note("warning", message);
  };
  return hooks;
}

void VirtualDevice::power_off(bool orderly) {
  powered_ = false;
  rebooting_ = false;
  connect_deferred_ = false;
  ++power_epoch_;
  ++connection_epoch_;
  if (tick_timer_) fleet_.loop->cancel(*tick_timer_);
  tick_timer_.reset();
  tick_at_ = client::UpdateEngine::kNoDeadline;
  supervisor_.stop();
  arm_connection_timer();
  if (orderly)
    ++counters_.reboots;
  else
    ++counters_.power_cuts;
  note(orderly ? "reboot" : "power-cut");
  // Lost power loses the slot writes not yet synced; a reboot lets the system flush them.
  if (!orderly) storage_.power_cut();
  agent_.reset();
  flash_busy_until_ = 0;
  if (session_ && session_->active()) {
    fleet_.loop->set_paused(session_.get(), false);
    session_->reset();  // the device vanishes without a DISCONNECT either way
  }
  link_.on_reset(since_start());
  fleet_.loop->after(orderly ? kRebootMs : kPowerOffMs, [this] { power_on(); });
}

// ---- connection ----------------------------------------------------------------------------

void VirtualDevice::on_connection_deadline() {
  if (stopped_ || !powered_ || !agent_ || !session_ || rebooting_) return;
  // Not while a health check runs (as fota-device): its answer connects.
  if (supervisor_.state() == client::ConnectionState::kWaiting && agent_->health_check_pending()) {
    connect_deferred_ = true;
    return;
  }
  switch (supervisor_.on_deadline(now())) {
    case client::ConnectionAction::kNone:
      break;
    case client::ConnectionAction::kConnect:
      // The end of a refused connection may not have arrived yet: dropped before the next attempt.
      if (session_->active()) session_->abandon();
      // The emulated link is not the socket's: while it is cut the attempt fails, as a real
      // device's does without a carrier, and the supervisor backs off.
      if (link_.state_at(since_start()) == LinkState::kDown) {
        note("connect-failed", "link down");
        supervisor_.on_connect_failed(now());
      } else if (auto s = session_->connect(); !s.ok()) {
        note("connect-failed", s.error().message);
        supervisor_.on_connect_failed(now());
      }
      break;
    case client::ConnectionAction::kAbandonAttempt:
      // A handshake that never finished (SYN lost to a full listen backlog, a stalled link).
      note("connect-timeout");
      session_->abandon();
      break;
  }
  arm_connection_timer();
}

// One loop timer at the supervisor's deadline: the next attempt, or the running one's timeout.
void VirtualDevice::arm_connection_timer() {
  const std::int64_t deadline =
      stopped_ || !powered_ ? client::ConnectionSupervisor::kNoDeadline : supervisor_.next_deadline_ms();
  if (deadline == connection_timer_at_ && connection_timer_) return;
  if (connection_timer_) fleet_.loop->cancel(*connection_timer_);
  connection_timer_.reset();
  connection_timer_at_ = deadline;
  if (deadline == client::ConnectionSupervisor::kNoDeadline) return;
  connection_timer_ = fleet_.loop->at(deadline, [this] {
    connection_timer_.reset();
    connection_timer_at_ = client::ConnectionSupervisor::kNoDeadline;
    on_connection_deadline();
  });
}

void VirtualDevice::apply_link_fault(const LinkFault& fault) {
  if (stopped_ || !session_) return;
  if (fault.state == LinkState::kStalled) {
    ++counters_.link_stalls;
    note("link-stall", std::string(link_fault_cause_name(fault.cause)));
    fleet_.loop->set_paused(session_.get(), true);
    return;
  }
  ++counters_.link_resets;
  note("link-down", std::string(link_fault_cause_name(fault.cause)));
  ++connection_epoch_;
  link_.on_reset(since_start());
  if (session_->active()) {
    fleet_.loop->set_paused(session_.get(), false);
    session_->reset();
  }
}

void VirtualDevice::on_connected(int reason_code) {
  if (reason_code != 0) {
    note("connect-refused", "reason code " + std::to_string(reason_code));
    supervisor_.on_connect_failed(now());
    arm_connection_timer();
    return;
  }
  supervisor_.on_connected(now());
  arm_connection_timer();  // no timeout any more
  counters_.connects = supervisor_.connects();
  counters_.reconnects = supervisor_.reconnects();
  note("connected");
  if (stopped_ || !powered_ || !agent_ || rebooting_) return;
  // Subscriptions, presence online, the engine's inventory and resume: the agent's.
  drive([this](client::DeviceAgent& agent) { agent.on_connected(device_now()); });
}

void VirtualDevice::on_disconnected(int reason_code) {
  ++connection_epoch_;
  if (stopped_) return;
  note("disconnected", "reason " + std::to_string(reason_code));
  if (!powered_ || !agent_) return;
  if (rebooting_) {
    power_off(/*orderly=*/true);
    return;
  }
  // A connection that was up is lost; one that was still being set up is a failed attempt. The
  // supervisor's jitter spreads a fleet's reconnects (the broker's listen backlog is 100).
  const bool was_up = supervisor_.connected();
  supervisor_.on_connection_lost(now());
  if (was_up) drive([this](client::DeviceAgent& agent) { agent.on_disconnected(device_now()); });
  arm_connection_timer();
}

void VirtualDevice::on_message(std::string_view topic, std::string_view payload) {
  if (stopped_ || !powered_) return;
  ++counters_.messages_received;
  const auto arrival = link_.downlink(since_start(), payload.size() + topic.size() + 8);
  if (!arrival) {
    ++counters_.messages_dropped_by_link;
    return;
  }
  const std::uint64_t epoch = connection_epoch_;
  fleet_.loop->at(fleet_.run_start_ms + *arrival,
                  [this, name = std::string(topic), data = std::string(payload), epoch]() mutable {
                    deliver(std::move(name), std::move(data), epoch);
                  });
}

void VirtualDevice::deliver(std::string topic, std::string payload, std::uint64_t epoch) {
  if (epoch != connection_epoch_ || stopped_ || !powered_ || !agent_ || rebooting_) return;
  if (flash_busy_until_ > now()) {
    // Still writing earlier chunks to slow flash: this message waits its turn.
    fleet_.loop->at(flash_busy_until_,
                    [this, name = std::move(topic), data = std::move(payload), epoch]() mutable {
                      deliver(std::move(name), std::move(data), epoch);
                    });
    return;
  }
  // Decoding, size limits and dispatch are the agent's; the simulator only counts and notes.
  if (auto parsed = fleet_.topics.parse(topic); parsed.ok() && parsed->device == id_) {
    if (parsed->channel == Channel::kChunk) ++counters_.chunks_received;
    if (parsed->channel == Channel::kCommand) note("command");
  }
  drive([&](client::DeviceAgent& agent) { agent.on_message(topic, payload, device_now()); });
}

// What the agent publishes crosses the link emulator: delayed by its latency and bandwidth, or
// lost to a drop. Not connected: refused, as both fota-device transports refuse.
common::Status VirtualDevice::send(const client::OutboundMessage& message) {
  if (!session_ || !session_->connected()) return Error(Errc::kUnavailable, "not connected");
  const auto arrival = link_.uplink(since_start(), message.payload.size() + message.topic.size() + 8);
  if (!arrival) {
    ++counters_.messages_dropped_by_link;
    return common::ok_status();  // lost on the way, as the network loses it: the sender never knows
  }
  const std::uint64_t epoch = connection_epoch_;
  auto publish = [this, message, epoch] {
    if (epoch != connection_epoch_ || !session_->connected()) {
      ++counters_.messages_dropped_by_link;
      return;
    }
    if (session_->publish(message.topic, message.payload, message.qos, message.retain))
      ++counters_.messages_sent;
  };
  if (*arrival <= since_start()) {
    publish();
  } else {
    uplink_busy_until_ = std::max(uplink_busy_until_, fleet_.run_start_ms + *arrival);
    fleet_.loop->at(fleet_.run_start_ms + *arrival, std::move(publish));
  }
  return common::ok_status();
}

// ---- engine actions ------------------------------------------------------------------------

void VirtualDevice::schedule_tick() {
  if (!agent_ || !powered_) return;
  const std::int64_t deadline = agent_->next_deadline_ms();
  if (deadline == tick_at_ && tick_timer_) return;
  if (tick_timer_) fleet_.loop->cancel(*tick_timer_);
  tick_timer_.reset();
  tick_at_ = deadline;
  if (deadline == client::UpdateEngine::kNoDeadline) return;
  const std::uint64_t epoch = power_epoch_;
  // Deadlines are in device time (skewed); the loop runs on the real clock.
  tick_timer_ = fleet_.loop->at(deadline - plan_.faults.clock_skew_ms, [this, epoch] {
    tick_timer_.reset();
    tick_at_ = client::UpdateEngine::kNoDeadline;
    if (epoch != power_epoch_ || !agent_ || stopped_ || rebooting_) return;
    drive([this](client::DeviceAgent& agent) { agent.on_tick(device_now()); });
  });
}

// ---- the runtime's hooks -------------------------------------------------------------------

// Plans and injects the scenario's power cuts. A download cut comes just before the write that
// would pass the planned share of the image; a cut in another phase comes somewhere between that
// phase's report and the next report of another phase (transient phases such as installing never
// outlast the runtime's queue), at the planned share of the actions in between.
bool VirtualDevice::before_action(const client::Action& action, const std::deque<client::Action>& upcoming) {
  namespace a = client::action;
  if (next_power_cut_ < plan_.faults.power_cuts.size()) {
    const PowerCut& cut = plan_.faults.power_cuts[next_power_cut_];
    if (cut.phase == DevicePhase::kDownloading) {
      const auto* write = std::get_if<a::WriteChunk>(&action);
      if (write != nullptr && update_bytes_total_ > 0 &&
          double(update_bytes_written_ + write->data.size()) >=
              cut.at_progress * double(update_bytes_total_)) {
        cut_now_ = true;
        return false;
      }
    } else if (cut_countdown_) {
      if (*cut_countdown_ == 0) {
        cut_now_ = true;
        return false;
      }
      --*cut_countdown_;
    } else if (const auto* report = std::get_if<a::PublishProgress>(&action);
               report != nullptr && report->progress.phase() == reported_phase(cut.phase)) {
      std::size_t span = 0;
      while (span < upcoming.size()) {
        const auto* next = std::get_if<a::PublishProgress>(&upcoming[span]);
        if (next != nullptr && next->progress.phase() != report->progress.phase()) break;
        ++span;
      }
      cut_countdown_ = static_cast<std::size_t>(cut.at_progress * double(span));
    }
  }
  if (const auto* prep = std::get_if<a::PrepareSlot>(&action)) {
    update_bytes_total_ = prep->image_size;
    if (!prep->resume) update_bytes_written_ = 0;
  }
  return true;
}

// What the simulator observes of what the runtime did: phases for the report, written bytes, and
// slow flash.
bool VirtualDevice::after_action(const client::Action& action) {
  namespace a = client::action;
  if (const auto* p = std::get_if<a::PublishProgress>(&action)) {
    const bool refusal_only =
        p->progress.error() == v1::ERROR_BUSY || p->progress.error() == v1::ERROR_COMMAND_REPLAYED;
    if (refusal_only) {
      // "Not now" / "seen it": the update in progress goes on; the device's phase is unchanged.
      note("refused", p->progress.error_detail());
      return true;
    }
    if (p->progress.phase() != phase_) {
      note(std::string(common::phase_name(p->progress.phase())),
           p->progress.error() != v1::ERROR_NONE ? p->progress.error_detail() : std::string());
    }
    phase_ = p->progress.phase();
    if (p->progress.error() != v1::ERROR_NONE) last_error_ = p->progress.error();
    if (phase_ == v1::PHASE_DOWNLOADING) update_bytes_total_ = p->progress.bytes_total();
    // A report rebuilt after the update ended (on every connect) carries no byte counts.
    if (p->progress.bytes_total() > 0) bytes_reused_ = p->progress.bytes_reused();
  } else if (const auto* w = std::get_if<a::WriteChunk>(&action)) {
    update_bytes_written_ += w->data.size();
    if (plan_.faults.flash_write_bytes_per_second > 0) {
      const auto ms = static_cast<std::int64_t>(double(w->data.size()) * 1000.0 /
                                                double(plan_.faults.flash_write_bytes_per_second));
      flash_busy_until_ = std::max(flash_busy_until_, now()) + ms;
    }
  }
  return true;
}

// The health check takes kHealthCheckMs of loop time; its answer goes back through the agent.
void VirtualDevice::start_health_check(client::HealthCheckTicket ticket) {
  const std::uint64_t epoch = power_epoch_;
  fleet_.loop->after(kHealthCheckMs, [this, epoch, ticket] {
    if (epoch != power_epoch_ || !agent_ || stopped_) return;
    const bool healthy = !plan_.faults.fails_health_check;
    drive([&](client::DeviceAgent& agent) {
      agent.on_health_result(ticket, healthy, healthy ? "" : "injected fault: the new image is unhealthy",
                             device_now());
    });
    if (epoch != power_epoch_ || !connect_deferred_ || agent_->health_check_pending()) return;
    connect_deferred_ = false;
    on_connection_deadline();
  });
}

template <typename Input>
void VirtualDevice::drive(Input&& input) {
  if (!agent_ || agent_->finished()) return;
  const std::uint64_t epoch = power_epoch_;
  cut_countdown_.reset();
  std::forward<Input>(input)(*agent_);
  after_input(epoch);
}

// After the agent returned: inject the planned power cut (the runtime stopped for it, or the
// phase it was planned in lasted to the end of the queue), or wait for the agent's next deadline.
void VirtualDevice::after_input(std::uint64_t epoch) {
  if (epoch != power_epoch_ || !agent_) return;
  if (cut_now_ || (cut_countdown_ && !rebooting_ && !agent_->finished())) {
    cut_now_ = false;
    cut_countdown_.reset();
    const PowerCut& cut = plan_.faults.power_cuts[next_power_cut_];
    ++next_power_cut_;
    note("power-cut-injected", std::string(device_phase_name(cut.phase)));
    power_off(/*orderly=*/false);
    return;
  }
  cut_countdown_.reset();
  if (rebooting_ || agent_->finished()) return;
  schedule_tick();
}

}  // namespace fota::sim

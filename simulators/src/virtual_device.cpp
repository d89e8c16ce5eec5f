#include "fota/sim/virtual_device.hpp"

#include <algorithm>

#include "fota/client/device_messages.hpp"
#include "fota/common/codec.hpp"
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
constexpr std::int64_t kMaxReconnectBackoffMs = 4000;
constexpr std::int64_t kConnectTimeoutMs = 30000;

}  // namespace

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
  client::mosquitto::SessionConfig config;
  config.host = fleet_.broker_host;
  config.port = fleet_.broker_port;
  config.client_id = plan_.device_id;
  config.tls = tls_;
  config.will = client::mosquitto::LastWill{fleet_.topics.device_topic(id_, Channel::kPresence),
                                            presence(false), 1, true};
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
  started_ = true;
  power_on();
  return common::ok_status();
}

bool VirtualDevice::busy() const noexcept {
  return !powered_ || !engine_ || engine_->state() != client::EngineState::kIdle;
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
  if (reconnect_timer_) fleet_.loop->cancel(*reconnect_timer_);
  if (session_) {
    fleet_.loop->set_paused(session_.get(), false);
    // Like fota-device on SIGTERM.
    leave();
  }
}

void VirtualDevice::leave() {
  // The retained presence says offline before the DISCONNECT (which suppresses the last will),
  // and the DISCONNECT waits for its acknowledgement, as fota-device's stop() does.
  if (session_->connected()) {
    (void)session_->publish(fleet_.topics.device_topic(id_, Channel::kPresence), presence(false), 1, true);
  }
  session_->disconnect_when_acknowledged();
}

void VirtualDevice::reboot() {
  // Like fota-device: the reports already handed to the link leave first (its DISCONNECT waits for
  // them), then the offline presence and a DISCONNECT, then the device restarts.
  rebooting_ = true;
  halt_batch_ = true;
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
  if (!powered_ || !engine_) return {};
  return engine_->inventory(device_now()).version();
}

bool VirtualDevice::running_on_trial() const {
  auto vars = const_cast<SimulatedStorage&>(storage_).boot_status();
  return vars.ok() && vars->trial;
}

client::mosquitto::WireCounters VirtualDevice::wire() const noexcept {
  return session_ ? session_->wire() : client::mosquitto::WireCounters{};
}

std::int64_t VirtualDevice::engine_unexpected_events() const noexcept {
  return engine_ ? static_cast<std::int64_t>(engine_->stats().unexpected_events) : 0;
}

std::string VirtualDevice::presence(bool online) const {
  return client::encode_presence(id_, online, device_now(), "fota-sim");
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

  client::EngineConfig config;
  config.device_id = plan_.device_id;
  config.hardware_type = plan_.hardware_type;
  config.client_version = "fota-sim";
  config.time_zone = plan_.time_zone;
  config.factory_version = plan_.installed_version;
  config.factory_security_counter = plan_.security_counter;
  config.attributes["group"] = plan_.group;
  config.attributes["link"] = plan_.link_profile;
  // The link's nominal speed, as a device knows it from its modem class: the orchestrator's
  // prediction uses it until it has measured the device.
  if (const auto bandwidth = fleet_.scenario->link_profiles.at(plan_.link_profile).bandwidth_bytes_per_second;
      bandwidth > 0)
    config.attributes["link_rate"] = std::to_string(bandwidth);
  engine_ = std::make_unique<client::UpdateEngine>(config, *fleet_.crypto, journal_ ? &*journal_ : nullptr,
                                                   stored_manifest_);
  auto status = storage_.boot_status();
  if (!status.ok()) {
    note("boot-failed", status.error().message);
    bricked_ = true;
    return;
  }
  execute(engine_->on_started(*status, device_now()));
  // fota-device finishes what the boot started (a trial boot's health check) before it connects.
  if (!connect_after_health_check_) connect_when_possible(static_cast<std::int64_t>(rng_.uniform(0, 50)));
}

void VirtualDevice::power_off(bool orderly) {
  powered_ = false;
  rebooting_ = false;
  connect_after_health_check_ = false;
  halt_batch_ = true;
  ++power_epoch_;
  ++connection_epoch_;
  if (tick_timer_) fleet_.loop->cancel(*tick_timer_);
  tick_timer_.reset();
  tick_at_ = client::UpdateEngine::kNoDeadline;
  if (reconnect_timer_) fleet_.loop->cancel(*reconnect_timer_);
  reconnect_timer_.reset();
  if (orderly)
    ++counters_.reboots;
  else
    ++counters_.power_cuts;
  note(orderly ? "reboot" : "power-cut");
  engine_.reset();
  flash_busy_until_ = 0;
  if (session_ && session_->active()) {
    fleet_.loop->set_paused(session_.get(), false);
    session_->reset();  // the device vanishes without a DISCONNECT either way
  }
  link_.on_reset(since_start());
  fleet_.loop->after(orderly ? kRebootMs : kPowerOffMs, [this] { power_on(); });
}

// ---- connection ----------------------------------------------------------------------------

void VirtualDevice::connect_when_possible(std::int64_t delay_ms) {
  if (stopped_ || !powered_ || !session_ || session_->active() || connect_after_health_check_ || rebooting_)
    return;
  if (reconnect_timer_) fleet_.loop->cancel(*reconnect_timer_);
  const std::uint64_t epoch = power_epoch_;
  reconnect_timer_ = fleet_.loop->after(delay_ms, [this, epoch] {
    reconnect_timer_.reset();
    if (epoch != power_epoch_ || stopped_ || !powered_ || session_->active()) return;
    // While the link is cut a connect cannot succeed: try again when it may be back.
    if (link_.state_at(since_start()) == LinkState::kDown) {
      const auto next = link_.schedule().next_change_after(since_start());
      connect_when_possible(next ? *next - since_start() + static_cast<std::int64_t>(rng_.uniform(0, 500))
                                 : 1000);
      return;
    }
    if (auto s = session_->connect(); !s.ok()) {
      note("connect-failed", s.error().message);
      reconnect_backoff_ms_ = std::min(reconnect_backoff_ms_ * 2, kMaxReconnectBackoffMs);
      connect_when_possible(reconnect_backoff_ms_ / 2 +
                            static_cast<std::int64_t>(rng_.uniform(0, double(reconnect_backoff_ms_))));
      return;
    }
    // A handshake that never finishes (SYN lost to a full listen backlog, broker gone mid-TLS)
    // must not leave the device waiting forever.
    const std::uint32_t attempt = session_->connects();
    fleet_.loop->after(kConnectTimeoutMs, [this, epoch, attempt] {
      if (epoch != power_epoch_ || stopped_ || !powered_ || session_->connected() || !session_->active() ||
          session_->connects() != attempt) {
        return;
      }
      note("connect-timeout");
      session_->abandon();
      connect_when_possible(static_cast<std::int64_t>(rng_.uniform(0, 1000)));
    });
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
    return;
  }
  ++counters_.connects;
  if (counters_.connects > 1) ++counters_.reconnects;
  reconnect_backoff_ms_ = 250;
  note("connected");
  if (stopped_ || !powered_ || !engine_ || rebooting_) return;
  (void)session_->subscribe(fleet_.topics.device_topic(id_, Channel::kCommand), 1);
  (void)session_->subscribe(fleet_.topics.device_topic(id_, Channel::kChunk), 0);
  send(Channel::kPresence, presence(true), 1, true);
  execute(engine_->on_connected(device_now()));
}

void VirtualDevice::on_disconnected(int reason_code) {
  ++connection_epoch_;
  if (stopped_) return;
  note("disconnected", "reason " + std::to_string(reason_code));
  if (!powered_ || !engine_) return;
  if (rebooting_) {
    power_off(/*orderly=*/true);
    return;
  }
  execute(engine_->on_disconnected(device_now()));
  reconnect_backoff_ms_ = std::min(reconnect_backoff_ms_ * 2, kMaxReconnectBackoffMs);
  // Jitter spreads a fleet's reconnects (the broker's listen backlog is 100).
  connect_when_possible(reconnect_backoff_ms_ / 2 +
                        static_cast<std::int64_t>(rng_.uniform(0, double(reconnect_backoff_ms_))));
}

void VirtualDevice::on_message(std::string_view topic, std::string_view payload) {
  if (stopped_ || !powered_) return;
  auto parsed = fleet_.topics.parse(topic);
  if (!parsed.ok() || parsed->device != id_) return;
  ++counters_.messages_received;
  const auto arrival = link_.downlink(since_start(), payload.size() + topic.size() + 8);
  if (!arrival) {
    ++counters_.messages_dropped_by_link;
    return;
  }
  const std::uint64_t epoch = connection_epoch_;
  fleet_.loop->at(fleet_.run_start_ms + *arrival,
                  [this, channel = parsed->channel, data = std::string(payload), epoch]() mutable {
                    deliver(channel, std::move(data), epoch);
                  });
}

void VirtualDevice::deliver(Channel channel, std::string payload, std::uint64_t epoch) {
  if (epoch != connection_epoch_ || stopped_ || !powered_ || !engine_ || rebooting_) return;
  if (flash_busy_until_ > now()) {
    // Still writing earlier chunks to slow flash: this message waits its turn.
    fleet_.loop->at(flash_busy_until_, [this, channel, data = std::move(payload), epoch]() mutable {
      deliver(channel, std::move(data), epoch);
    });
    return;
  }
  if (channel == Channel::kCommand) {
    auto command = common::decode<v1::Command>(payload, common::kMaxCommandBytes);
    if (!command.ok()) {
      note("bad-command", command.error().message);
      return;
    }
    note("command", command->has_install() ? "install " + command->command_id() : command->command_id());
    execute(engine_->on_command(*command, device_now()));
  } else if (channel == Channel::kChunk) {
    auto chunk = common::decode<v1::ChunkData>(payload, common::kMaxChunkDataBytes);
    if (!chunk.ok()) return;
    ++counters_.chunks_received;
    execute(engine_->on_chunk(std::move(*chunk), device_now()));
  }
}

void VirtualDevice::send(Channel channel, std::string payload, int qos, bool retain) {
  // Offline: gone, as with fota-device (both transports refuse to publish while disconnected).
  if (!session_ || !session_->connected()) return;
  const std::string topic = fleet_.topics.device_topic(id_, channel);
  const auto arrival = link_.uplink(since_start(), payload.size() + topic.size() + 8);
  if (!arrival) {
    ++counters_.messages_dropped_by_link;
    return;
  }
  const std::uint64_t epoch = connection_epoch_;
  auto publish = [this, topic, data = std::move(payload), qos, retain, epoch] {
    if (epoch != connection_epoch_ || !session_->connected()) {
      ++counters_.messages_dropped_by_link;
      return;
    }
    if (session_->publish(topic, data, qos, retain)) ++counters_.messages_sent;
  };
  if (*arrival <= since_start()) {
    publish();
  } else {
    uplink_busy_until_ = std::max(uplink_busy_until_, fleet_.run_start_ms + *arrival);
    fleet_.loop->at(fleet_.run_start_ms + *arrival, std::move(publish));
  }
}

// ---- engine actions ------------------------------------------------------------------------

void VirtualDevice::schedule_tick() {
  if (!engine_ || !powered_) return;
  const std::int64_t deadline = engine_->next_deadline_ms();
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
    if (epoch != power_epoch_ || !engine_ || stopped_ || rebooting_) return;
    execute(engine_->on_tick(device_now()));
  });
}

void VirtualDevice::check_power_cut(const client::Action* action, std::size_t action_index) {
  if (next_power_cut_ >= plan_.faults.power_cuts.size() || !engine_) return;
  const PowerCut& cut = plan_.faults.power_cuts[next_power_cut_];
  bool due = false;
  if (cut.phase == DevicePhase::kDownloading) {
    // Cut just before the write that would pass the planned share of the image.
    const auto* write = action ? std::get_if<client::action::WriteChunk>(action) : nullptr;
    due = write != nullptr && update_bytes_total_ > 0 &&
          double(update_bytes_written_ + write->data.size()) >= cut.at_progress * double(update_bytes_total_);
  } else {
    due = cut_at_index_ && action_index >= *cut_at_index_;
  }
  if (!due) return;
  ++next_power_cut_;
  note("power-cut-injected", std::string(device_phase_name(cut.phase)));
  power_off(/*orderly=*/false);
}

void VirtualDevice::plan_cut_in_batch(const client::Actions& actions, std::size_t report_index) {
  if (next_power_cut_ >= plan_.faults.power_cuts.size()) return;
  const PowerCut& cut = plan_.faults.power_cuts[next_power_cut_];
  const auto* report = std::get_if<client::action::PublishProgress>(&actions[report_index]);
  if (cut.phase == DevicePhase::kDownloading || report == nullptr ||
      report->progress.phase() != reported_phase(cut.phase)) {
    return;
  }
  // The phase lasts from this report to the next report of another phase (or the batch's end);
  // transient phases such as installing never outlast one batch. Cut somewhere inside it.
  std::size_t end = report_index + 1;
  while (end < actions.size()) {
    const auto* next = std::get_if<client::action::PublishProgress>(&actions[end]);
    if (next != nullptr && next->progress.phase() != report->progress.phase()) break;
    ++end;
  }
  const std::size_t span = end - report_index - 1;
  cut_at_index_ = report_index + 1 + static_cast<std::size_t>(cut.at_progress * double(span));
}

void VirtualDevice::execute(client::Actions actions) {
  halt_batch_ = false;
  cut_at_index_.reset();
  const std::uint64_t epoch = power_epoch_;
  for (std::size_t i = 0; i < actions.size(); ++i) {
    check_power_cut(&actions[i], i);
    if (halt_batch_ || epoch != power_epoch_ || !engine_) return;
    plan_cut_in_batch(actions, i);
    if (halt_batch_ || epoch != power_epoch_ || !engine_) return;
    client::Actions follow_up;
    const bool ok = run_action(actions[i], follow_up);
    if (halt_batch_ || epoch != power_epoch_ || !engine_) return;
    if (!follow_up.empty() || !ok) {
      // A failed side effect ends the batch; the engine's answer replaces the rest of it.
      const auto saved_cut = cut_at_index_;
      execute(std::move(follow_up));
      cut_at_index_ = saved_cut;
      if (!ok) return;
      if (halt_batch_ || epoch != power_epoch_ || !engine_) return;
    }
  }
  if (!actions.empty()) {
    check_power_cut(nullptr, actions.size());
    if (halt_batch_ || epoch != power_epoch_ || !engine_) return;
  }
  schedule_tick();
}

bool VirtualDevice::run_action(client::Action& action, client::Actions& follow_up) {
  namespace a = client::action;
  auto fail = [&](const common::Error& error) {
    follow_up = engine_->on_action_failed(action, error, device_now());
    return false;
  };
  if (auto* p = std::get_if<a::PublishProgress>(&action)) {
    const bool refusal_only =
        p->progress.error() == v1::ERROR_BUSY || p->progress.error() == v1::ERROR_COMMAND_REPLAYED;
    if (refusal_only) {
      // "Not now" / "seen it": the update in progress goes on; the device's phase is unchanged.
      note("refused", p->progress.error_detail());
      send(common::Channel::kProgress, common::encode(p->progress), 1, false);
      return true;
    }
    if (p->progress.phase() != phase_) {
      note(std::string(common::phase_name(p->progress.phase())),
           p->progress.error() != v1::ERROR_NONE ? p->progress.error_detail() : std::string());
    }
    phase_ = p->progress.phase();
    if (p->progress.error() != v1::ERROR_NONE) last_error_ = p->progress.error();
    if (phase_ == v1::PHASE_DOWNLOADING) update_bytes_total_ = p->progress.bytes_total();
    send(common::Channel::kProgress, common::encode(p->progress), 1, false);
  } else if (auto* inv = std::get_if<a::PublishInventory>(&action)) {
    send(common::Channel::kInventory, common::encode(inv->inventory), 1, true);
  } else if (auto* req = std::get_if<a::RequestChunks>(&action)) {
    send(common::Channel::kChunkRequest, common::encode(req->request), 0, false);
  } else if (auto* j = std::get_if<a::PersistJournal>(&action)) {
    journal_ = j->record;
  } else if (auto* m = std::get_if<a::StoreManifest>(&action)) {
    stored_manifest_ = m->signed_manifest;
  } else if (auto* prep = std::get_if<a::PrepareSlot>(&action)) {
    update_bytes_total_ = prep->image_size;
    if (!prep->resume) update_bytes_written_ = 0;
    if (auto s = storage_.prepare(*prep); !s.ok()) return fail(s.error());
  } else if (auto* w = std::get_if<a::WriteChunk>(&action)) {
    if (auto s = storage_.write(w->slot, w->offset, w->data); !s.ok()) return fail(s.error());
    update_bytes_written_ += w->data.size();
    if (plan_.faults.flash_write_bytes_per_second > 0) {
      const auto ms = static_cast<std::int64_t>(double(w->data.size()) * 1000.0 /
                                                double(plan_.faults.flash_write_bytes_per_second));
      flash_busy_until_ = std::max(flash_busy_until_, now()) + ms;
    }
  } else if (auto* h = std::get_if<a::HashSlot>(&action)) {
    follow_up = engine_->on_slot_hash(storage_.hash(h->slot, h->size), device_now());
  } else if (auto* act = std::get_if<a::ActivateSlot>(&action)) {
    if (auto s = storage_.activate(act->slot); !s.ok()) return fail(s.error());
  } else if (std::get_if<a::Reboot>(&action)) {
    reboot();
  } else if (std::get_if<a::RunHealthCheck>(&action)) {
    const std::uint64_t epoch = power_epoch_;
    if (!session_ || !session_->connected()) connect_after_health_check_ = true;
    fleet_.loop->after(kHealthCheckMs, [this, epoch] {
      if (epoch != power_epoch_ || !engine_ || stopped_) return;
      const bool healthy = !plan_.faults.fails_health_check;
      execute(engine_->on_health_result(healthy, healthy ? "" : "injected fault: the new image is unhealthy",
                                        device_now()));
      if (epoch != power_epoch_ || !connect_after_health_check_) return;
      connect_after_health_check_ = false;
      connect_when_possible(static_cast<std::int64_t>(rng_.uniform(0, 50)));
    });
  } else if (auto* c = std::get_if<a::CommitSlot>(&action)) {
    if (auto s = storage_.commit(c->slot); !s.ok()) return fail(s.error());
  } else if (auto* r = std::get_if<a::RevertSlot>(&action)) {
    if (auto s = storage_.revert(r->boot_slot); !s.ok()) return fail(s.error());
  }
  // SetLogLevel and Log: the simulator keeps no device logs beyond the timeline.
  return true;
}

}  // namespace fota::sim

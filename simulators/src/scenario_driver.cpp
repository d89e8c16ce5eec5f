#include "fota/sim/scenario_driver.hpp"

#include <algorithm>

#include "fota/common/codec.hpp"

namespace fota::sim {

using common::Channel;

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

namespace {
bool is_terminal(v1::Phase phase) {
  return phase == v1::PHASE_COMMITTED || phase == v1::PHASE_FAILED || phase == v1::PHASE_ROLLED_BACK ||
         phase == v1::PHASE_CANCELLED;
}
// Refusals that say "not now" rather than "this update failed".
bool is_transient_refusal(v1::ErrorCode error) {
  return error == v1::ERROR_BUSY || error == v1::ERROR_COMMAND_REPLAYED;
}
constexpr std::int64_t kRepairIntervalMs = 3000;
constexpr std::int64_t kResendAfterMs = 8000;
}  // namespace

ScenarioDriver::ScenarioDriver(client::mosquitto::EventLoop& loop, common::TopicScheme topics,
                               const common::ArtifactStore& store, v1::SignedManifest signed_manifest,
                               v1::Manifest manifest, RolloutPlan plan, std::vector<WaveRecord> waves)
    : loop_(loop),
      topics_(std::move(topics)),
      store_(store),
      signed_manifest_(std::move(signed_manifest)),
      manifest_(std::move(manifest)),
      plan_(std::move(plan)),
      waves_(std::move(waves)),
      deployment_id_(plan_.name + "-" + manifest_.artifact_id().substr(0, 8)) {
  for (std::size_t w = 0; w < waves_.size(); ++w) {
    for (const auto& id : waves_[w].devices) devices_[id].wave = w;
  }
}

common::Status ScenarioDriver::start(client::mosquitto::SessionConfig session) {
  client::mosquitto::SessionCallbacks callbacks;
  callbacks.on_connected = [this](int rc) { on_connected(rc); };
  callbacks.on_disconnected = [this](int rc) { on_disconnected(rc); };
  callbacks.on_message = [this](std::string_view topic, std::string_view payload) {
    on_message(topic, payload);
  };
  auto created = client::mosquitto::MosquittoSession::create(std::move(session), std::move(callbacks));
  if (!created.ok()) return created.error().with_context("scenario driver");
  session_ = std::move(*created);
  loop_.watch(session_.get());
  return session_->connect();
}

client::mosquitto::WireCounters ScenarioDriver::wire() const noexcept {
  return session_ ? session_->wire() : client::mosquitto::WireCounters{};
}

std::uint32_t ScenarioDriver::reconnects() const noexcept { return connects_ > 0 ? connects_ - 1 : 0; }

void ScenarioDriver::on_connected(int reason_code) {
  if (reason_code != 0) return;
  ++connects_;
  (void)session_->subscribe(topics_.all_devices_filter(Channel::kChunkRequest), 0);
  (void)session_->subscribe(topics_.all_devices_filter(Channel::kProgress), 1);
  (void)session_->subscribe(topics_.all_devices_filter(Channel::kInventory), 1);
  subscribed_ = true;
}

void ScenarioDriver::on_disconnected(int) {
  subscribed_ = false;
  // The broker went away (restart fault): keep trying until it is back.
  reconnect(500);
}

void ScenarioDriver::reconnect(std::int64_t delay_ms) {
  loop_.after(delay_ms, [this, delay_ms] {
    if (session_->connected()) return;
    if (session_->active()) session_->abandon();  // a connect that did not finish
    if (!session_->connect().ok()) {
      reconnect(std::min<std::int64_t>(delay_ms * 2, 2000));
      return;
    }
    // on_disconnected follows a refused attempt; this covers one that hangs.
    const std::uint32_t attempt = session_->connects();
    loop_.after(5000, [this, attempt] {
      if (!session_->connected() && session_->connects() == attempt) reconnect(0);
    });
  });
}

std::string ScenarioDriver::current_wave() const {
  if (outcome_ != RolloutOutcome::kRunning) return std::string(rollout_outcome_name(outcome_));
  std::string wave = "waiting";
  for (const auto& w : waves_) {
    if (w.started_ms >= 0) wave = "wave " + w.name;
  }
  return wave;
}

void ScenarioDriver::begin(std::int64_t run_start_ms) {
  if (begun_) return;
  begun_ = true;
  run_start_ms_ = run_start_ms;
  loop_.after(plan_.start_after_ms, [this] { start_wave(0); });
  loop_.after(kRepairIntervalMs, [this] { repair(); });
}

void ScenarioDriver::start_wave(std::size_t index) {
  if (outcome_ != RolloutOutcome::kRunning) return;
  if (index >= waves_.size()) {
    outcome_ = RolloutOutcome::kCompleted;
    return;
  }
  current_wave_ = index;
  waves_[index].started_ms = since_start();
  for (const auto& id : waves_[index].devices) send_install(id, false);
  evaluate_wave(index);  // an empty wave completes at once
}

void ScenarioDriver::send_install(const std::string& device_id, bool resend) {
  auto id = common::DeviceId::parse(device_id);
  if (!id.ok() || !session_->connected()) return;
  DeviceState& state = devices_[device_id];
  v1::Command command;
  command.set_command_id(deployment_id_ + "-" + std::to_string(next_command_++));
  command.set_deployment_id(deployment_id_);
  command.set_device_id(device_id);
  command.set_issued_at_ms(loop_.now_ms());
  command.set_expires_at_ms(loop_.now_ms() + plan_.command_ttl_ms);
  *command.mutable_install()->mutable_manifest() = signed_manifest_;
  command.mutable_install()->set_max_inflight_chunks(plan_.max_inflight_chunks);
  if (session_->publish(topics_.device_topic(*id, Channel::kCommand), common::encode(command), 1).ok()) {
    state.command_ids.insert(command.command_id());
    state.commanded = true;
    state.last_sent_ms = loop_.now_ms();
    ++(resend ? stats_.commands_resent : stats_.commands_sent);
  }
}

void ScenarioDriver::on_message(std::string_view topic, std::string_view payload) {
  auto parsed = topics_.parse(topic);
  if (!parsed.ok()) return;
  switch (parsed->channel) {
    case Channel::kChunkRequest:
      on_chunk_request(parsed->device, payload);
      break;
    case Channel::kProgress:
      on_progress(parsed->device, payload);
      break;
    case Channel::kInventory:
      on_inventory(parsed->device, payload);
      break;
    default:
      break;
  }
}

void ScenarioDriver::on_chunk_request(const common::DeviceId& device, std::string_view payload) {
  if (!common::validate_device_message(Channel::kChunkRequest, device, payload).ok()) return;
  auto request = common::decode<v1::ChunkRequest>(payload, common::kMaxChunkRequestBytes);
  if (!request.ok()) return;
  ++stats_.chunk_requests;
  const std::string topic = topics_.device_topic(device, Channel::kChunk);
  (void)common::respond_to_chunk_request(
      *request, common::ArtifactStoreChunkSource(store_), common::ChunkBudget{}, [&](v1::ChunkData&& chunk) {
        const bool ok = chunk.status() == v1::CHUNK_STATUS_OK;
        const std::size_t bytes = chunk.data().size();
        if (session_->publish(topic, common::encode(chunk), 0).ok() && ok) {
          ++stats_.chunks_served;
          stats_.chunk_bytes_served += bytes;
        }
      });
}

void ScenarioDriver::on_progress(const common::DeviceId& device, std::string_view payload) {
  auto progress = common::decode<v1::Progress>(payload, common::kMaxProgressBytes);
  if (!progress.ok()) return;
  ++stats_.progress_reports;
  auto it = devices_.find(device.str());
  if (it == devices_.end()) return;
  DeviceState& state = it->second;
  if (!state.command_ids.count(progress->command_id())) return;  // not about our rollout
  if (progress->phase() == v1::PHASE_FAILED && is_transient_refusal(progress->error())) return;
  state.heard = true;
  state.phase = progress->phase();
  if (is_terminal(progress->phase())) mark_terminal(state, progress->phase());
}

void ScenarioDriver::mark_terminal(DeviceState& state, v1::Phase phase) {
  if (state.terminal) return;
  state.terminal = true;
  state.phase = phase;
  WaveRecord& wave = waves_[state.wave];
  if (phase == v1::PHASE_COMMITTED)
    ++wave.committed;
  else
    ++wave.failed;
  evaluate_wave(state.wave);
}

void ScenarioDriver::on_inventory(const common::DeviceId& device, std::string_view payload) {
  auto inventory = common::decode<v1::Inventory>(payload, common::kMaxInventoryBytes);
  if (!inventory.ok()) return;
  auto it = devices_.find(device.str());
  if (it == devices_.end()) return;
  DeviceState& state = it->second;
  // Level-triggered repair: a device in a started wave that is neither done nor working on our
  // artifact gets the command again (e.g. it was lost with a broker restart).
  if (!state.commanded || state.terminal) return;
  if (inventory->version() == manifest_.version() && inventory->pending_artifact_id().empty()) {
    // The device runs the new version and has nothing pending: it committed, even if its
    // COMMITTED report was lost (the inventory is the level-triggered truth).
    mark_terminal(state, v1::PHASE_COMMITTED);
    return;
  }
  if (outcome_ != RolloutOutcome::kRunning) return;
  if (inventory->pending_artifact_id() == manifest_.artifact_id()) return;
  if (loop_.now_ms() - state.last_sent_ms < 1000) return;
  send_install(device.str(), true);
}

void ScenarioDriver::repair() {
  if (outcome_ != RolloutOutcome::kRunning) return;
  // Commands nobody answered (lost before the device subscribed): send again.
  for (auto& [id, state] : devices_) {
    // Backing off per device: in a big wave a device may simply be waiting its turn.
    const std::int64_t wait = kResendAfterMs << std::min<std::uint32_t>(state.resends, 3);
    if (state.commanded && !state.heard && !state.terminal && loop_.now_ms() - state.last_sent_ms > wait) {
      ++state.resends;
      send_install(id, true);
    }
  }
  loop_.after(kRepairIntervalMs, [this] { repair(); });
}

void ScenarioDriver::evaluate_wave(std::size_t index) {
  if (outcome_ != RolloutOutcome::kRunning || index != current_wave_) return;
  WaveRecord& wave = waves_[index];
  const double size = double(wave.devices.size());
  if (size > 0 && double(wave.failed) > plan_.failure_threshold * size) {
    outcome_ = RolloutOutcome::kHalted;
    wave.finished_ms = since_start();
    halt_reason_ = "wave '" + wave.name + "': " + std::to_string(wave.failed) + " of " +
                   std::to_string(wave.devices.size()) + " devices failed, over the failure threshold of " +
                   std::to_string(static_cast<int>(plan_.failure_threshold * 100.0 + 0.5)) + "%";
    return;
  }
  if (wave.committed + wave.failed < wave.devices.size()) return;
  wave.finished_ms = since_start();
  if (size > 0 && double(wave.committed) < plan_.success_gate * size - 1e-9) {
    outcome_ = RolloutOutcome::kHalted;
    halt_reason_ = "wave '" + wave.name + "': only " + std::to_string(wave.committed) + " of " +
                   std::to_string(wave.devices.size()) + " devices committed, under the success gate";
    return;
  }
  loop_.after(plan_.soak_ms, [this, index] { start_wave(index + 1); });
}

}  // namespace fota::sim

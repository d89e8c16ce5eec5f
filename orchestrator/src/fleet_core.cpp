// SPDX-License-Identifier: Apache-2.0
#include "fota/orchestrator/fleet_core.hpp"

#include <algorithm>
#include <cstdlib>
#include <sstream>

#include "fota/common/codec.hpp"
#include "fota/common/phase.hpp"

namespace fota::orchestrator {

using common::Channel;
using common::Errc;
using common::Error;
using common::Status;

namespace {

constexpr std::size_t kMaxLogsPerBatch = 200;

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  std::string item;
  while (std::getline(in, item, ',')) {
    item.erase(0, item.find_first_not_of(' '));
    while (!item.empty() && item.back() == ' ') item.pop_back();
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

bool tickable(const Rollout& r) {
  return r.state == RolloutState::kRunning || r.state == RolloutState::kPaused ||
         r.state == RolloutState::kRollingBack;
}

}  // namespace

FleetCore::FleetCore(FleetCoreOptions options, const ArtifactCatalog& artifacts,
                     std::shared_ptr<spdlog::logger> log)
    : options_(std::move(options)), artifacts_(artifacts), log_(std::move(log)) {
  link_model_.default_rate_bytes_per_second = options_.default_link_rate;
  link_model_.default_fixed_ms = options_.default_device_time_ms;
}

void FleetCore::restore(std::vector<DeviceRecord> devices, std::vector<Rollout> rollouts,
                        std::vector<UpdateSample> history, std::vector<RevocationRecord> revocations) {
  for (DeviceRecord& d : devices) {
    d.facts.online = false;  // presence is re-learned from the broker's retained messages
    const std::string id = d.facts.id;
    fleet_.devices[id] = std::move(d.facts);
    details_[id] = static_cast<DeviceDetails&&>(d);
    fleet_.generation = 1;
  }
  for (Rollout& r : rollouts) {
    if (is_active(r.state)) {
      for (const Member& m : r.members) fleet_.claims[m.device_id] = r.id;
    }
    for (Member& m : r.members) m.sampled = becomes_history(m);  // sampled when it finished
    const std::string id = r.id;
    rollouts_.emplace(id, std::move(r));
  }
  link_model_.history = std::move(history);
  for (RevocationRecord& r : revocations) {
    if (auto it = fleet_.devices.find(r.device_id); it != fleet_.devices.end()) {
      if (r.decommissioned_ms != 0) {
        fleet_.devices.erase(it);  // its row went with the decommission; this only guards against a stray one
        details_.erase(r.device_id);
      } else {
        it->second.revoked = true;
      }
    }
    const std::string id = r.device_id;
    revocations_.emplace(id, std::move(r));
  }
}

DeviceDetails& FleetCore::touch_device(const std::string& id, Millis now) {
  auto it = details_.find(id);
  if (it == details_.end()) {
    DeviceDetails d;
    d.registered_ms = now;
    it = details_.emplace(id, std::move(d)).first;
    fleet_.devices[id].id = id;
    ++fleet_.generation;
    log_->info("registered device {}", id);
  }
  dirty_devices_.insert(id);
  return it->second;
}

// A progress report, or the last outcome a device's inventory repeats: both are judged alike.
void FleetCore::ingest_progress(const std::string& id, const v1::Progress& p, Millis now) {
  DeviceDetails& d = touch_device(id, now);
  DeviceFacts& facts = fleet_.devices[id];
  facts.last_seen_ms = now;
  facts.online = true;
  const std::string phase(common::phase_name(p.phase()));
  if (phase != d.last_phase) {
    pending_events_.push_back(
        EventRecord{0, now, id, p.deployment_id(), "progress",
                    phase + (p.error() != v1::ERROR_NONE ? " " + v1::ErrorCode_Name(p.error()) : "") +
                        (p.error_detail().empty() ? "" : ": " + p.error_detail())});
  }
  d.last_phase = phase;
  d.last_error = p.error() == v1::ERROR_NONE ? "" : v1::ErrorCode_Name(p.error()) + " " + p.error_detail();
  if (p.link().rate_bytes_per_second() > 0) link_model_.measured_rate[id] = p.link().rate_bytes_per_second();
  if (Rollout* r = find_rollout(p.deployment_id())) {
    const Member* before = r->find_member(id);
    const bool was_in_flight = before != nullptr && is_in_flight(before->state);
    const bool was_open = before != nullptr && !is_terminal(before->state);
    apply(*r, engine_.on_progress(*r, p, now), now);
    const Member* after = r->find_member(id);
    if (was_open && after != nullptr && is_terminal(after->state)) settled_rollouts_.insert(r->id);
    if (was_in_flight && after != nullptr && after->state == MemberState::kSucceeded &&
        after->started_ms > 0) {
      // Phase-time history for predictions: whole update minus the transfer.
      const Millis total = now - after->started_ms;
      const auto measured = link_model_.measured_rate.find(id);
      const auto rate =
          measured != link_model_.measured_rate.end() ? measured->second : options_.default_link_rate;
      const Millis transfer = static_cast<Millis>(static_cast<double>(after->bytes_total) * 1000.0 /
                                                  static_cast<double>(std::max<std::uint64_t>(rate, 1)));
      const Millis fixed = std::max<Millis>(0, total - transfer);
      link_model_.measured_fixed_ms =
          link_model_.measured_fixed_ms == 0 ? fixed : (link_model_.measured_fixed_ms * 7 + fixed) / 8;
    }
  }
}

void FleetCore::on_inventory(const std::string& id, const v1::Inventory& inv, Millis now) {
  DeviceDetails& d = touch_device(id, now);
  DeviceFacts& facts = fleet_.devices[id];
  facts.hardware_type = inv.hardware_type();
  facts.time_zone = inv.time_zone();
  facts.artifact_id = inv.artifact_id();
  facts.version = inv.version();
  auto tags = inv.attributes().find("tags");
  facts.tags = tags == inv.attributes().end() ? std::vector<std::string>{} : split_list(tags->second);
  auto group = inv.attributes().find("group");
  facts.group = group == inv.attributes().end() ? std::string() : group->second;
  if (auto rate = inv.attributes().find("link_rate"); rate != inv.attributes().end())
    link_model_.nominal_rate[id] = std::strtoull(rate->second.c_str(), nullptr, 10);
  facts.online = true;
  facts.last_seen_ms = now;
  d.client_version = inv.client_version();
  d.security_counter = inv.security_counter();
  d.free_bytes = inv.free_bytes();
  d.pending_deployment_id = inv.pending_deployment_id();
  ++fleet_.generation;
  pending_events_.push_back(EventRecord{0, now, id, inv.pending_deployment_id(), "inventory",
                                        "running " + inv.version() + " (" + inv.artifact_id() + ")"});
  // The outcome the inventory repeats is judged first, so that a report that arrives after the
  // inventory (or never) cannot turn a finished update into a lost command. Only while it can
  // matter: the device works on nothing and its member of that rollout is still open. Otherwise
  // it is old news (the inventory of the next update's start repeats the previous outcome) and
  // must not touch the device's phase or its event log.
  if (inv.has_last_outcome() && inv.pending_deployment_id().empty()) {
    const Rollout* r = find_rollout(inv.last_outcome().deployment_id());
    const Member* m = r != nullptr ? r->find_member(id) : nullptr;
    if (m != nullptr && !is_terminal(m->state)) {
      v1::Progress outcome = inv.last_outcome();
      outcome.set_device_id(id);
      ingest_progress(id, outcome, now);
    }
  }
  auto claim = fleet_.claims.find(id);
  if (claim != fleet_.claims.end()) {
    if (Rollout* r = find_rollout(claim->second)) {
      apply(*r, engine_.on_inventory(*r, fleet_.devices[id], inv, now), now);
    }
  }
}

void FleetCore::on_message(const common::DeviceId& device, const DeviceMessage& message, Millis now) {
  const std::string& id = device.str();
  if (revocations_.count(id)) {
    // The broker refuses a revoked device; this is for a message that was on its way, or a
    // broker without the deny list. Nothing it says may register it again or move a rollout.
    ++ignored_from_revoked_;
    log_->debug("ignoring a message from revoked device {}", id);
    return;
  }
  if (const auto* inv = std::get_if<v1::Inventory>(&message)) {
    on_inventory(id, *inv, now);
  } else if (const auto* p = std::get_if<v1::Progress>(&message)) {
    ++progress_reports_;
    ingest_progress(id, *p, now);
  } else if (const auto* presence = std::get_if<v1::Presence>(&message)) {
    DeviceDetails& d = touch_device(id, now);
    DeviceFacts& facts = fleet_.devices[id];
    facts.online = presence->online();
    facts.last_seen_ms = now;
    if (!presence->client_version().empty()) d.client_version = presence->client_version();
    pending_events_.push_back(
        EventRecord{0, now, id, "", "presence", presence->online() ? "online" : "offline"});
  } else if (const auto* batch = std::get_if<v1::LogBatch>(&message)) {
    std::size_t n = 0;
    for (const auto& e : batch->entries()) {
      if (++n > kMaxLogsPerBatch) break;
      pending_logs_.push_back(
          LogRecord{0, id, e.timestamp_ms(), static_cast<int>(e.level()), e.message(), e.source()});
    }
    if (batch->dropped() > 0) {
      pending_logs_.push_back(LogRecord{
          0, id, now, static_cast<int>(v1::LOG_LEVEL_WARN),
          std::to_string(batch->dropped()) + " log entries dropped on the device", "fota-orchestrator"});
    }
  }
}

void FleetCore::tick(Millis now) {
  if (now - last_tick_ms_ >= options_.tick_interval_ms || now < last_tick_ms_) {
    last_tick_ms_ = now;
    for (auto& [id, r] : rollouts_) {
      if (tickable(r)) apply(r, engine_.tick(r, fleet_, now), now);
    }
  } else {
    for (const std::string& id : settled_rollouts_) {
      if (Rollout* r = find_rollout(id); r != nullptr && tickable(*r))
        apply(*r, engine_.tick(*r, fleet_, now), now);
    }
  }
  settled_rollouts_.clear();
}

std::vector<const Rollout*> FleetCore::unresolved_rollouts() const {
  std::vector<const Rollout*> out;
  for (const auto& [id, r] : rollouts_) {
    if (is_active(r.state) && !r.targets_resolved) out.push_back(&r);
  }
  return out;
}

Rollout* FleetCore::find_rollout(const std::string& id) {
  auto it = rollouts_.find(id);
  return it == rollouts_.end() ? nullptr : &it->second;
}

const Rollout* FleetCore::rollout(const std::string& id) const {
  auto it = rollouts_.find(id);
  return it == rollouts_.end() ? nullptr : &it->second;
}

void FleetCore::apply(Rollout& r, const Decisions& decisions, Millis now) {
  touched_rollouts_.insert(r.id);
  // A wave start sends the same manifest to every member: look each artifact's up once per call.
  std::map<std::string, common::Result<v1::SignedManifest>> manifests;
  auto signed_manifest = [&](const std::string& artifact_id) -> const common::Result<v1::SignedManifest>& {
    auto it = manifests.find(artifact_id);
    if (it == manifests.end())
      it = manifests.emplace(artifact_id, artifacts_.signed_manifest(artifact_id)).first;
    return it->second;
  };
  for (const Decision& d : decisions) {
    if (d.kind == Decision::Kind::kAudit) {
      pending_audit_.push_back(AuditRecord{"engine", "engine.decision", d.message});
      log_->info("{}", d.message);
      continue;
    }
    auto device = common::DeviceId::parse(d.device_id);
    if (!device) continue;
    v1::Command cmd;
    cmd.set_command_id(d.command_id);
    cmd.set_deployment_id(r.id);
    cmd.set_device_id(d.device_id);
    cmd.set_issued_at_ms(now);
    cmd.set_expires_at_ms(now + r.spec.command_ttl_ms);
    std::string what;
    switch (d.kind) {
      case Decision::Kind::kInstall: {
        const auto& manifest = signed_manifest(d.artifact_id);
        if (!manifest) {
          log_->error("cannot send install to {}: {}", d.device_id, manifest.error().message);
          continue;
        }
        auto* install = cmd.mutable_install();
        *install->mutable_manifest() = *manifest;
        install->set_max_bytes_per_second(d.max_bytes_per_second);
        install->set_max_inflight_chunks(r.spec.max_inflight_chunks);
        what = "install " + d.artifact_id;
        break;
      }
      case Decision::Kind::kCancel:
        cmd.mutable_cancel();
        what = "cancel";
        break;
      case Decision::Kind::kRollback: {
        auto* rollback = cmd.mutable_rollback();
        if (!d.artifact_id.empty()) {
          const auto& manifest = signed_manifest(d.artifact_id);
          // Without the previous artifact in the store the device reverts to its previous slot.
          if (manifest) *rollback->mutable_manifest() = *manifest;
        }
        what = "rollback to " + (d.artifact_id.empty() ? std::string("previous slot") : d.artifact_id);
        break;
      }
      default:
        continue;
    }
    if (!options_.command_key) {
      log_->error("cannot send {} to {}: no command key to sign it with", what, d.device_id);
      continue;
    }
    auto payload = common::sign_command(cmd, *options_.command_key);
    if (!payload) {
      log_->error("cannot sign {} for {}: {}", what, d.device_id, payload.error().message);
      continue;
    }
    pending_events_.push_back(
        EventRecord{0, now, d.device_id, r.id, "command", what + " (" + d.command_id + ")"});
    outbox_.push_back(DeviceCommand{options_.topics.device_topic(*device, Channel::kCommand),
                                    std::move(payload).value(),
                                    static_cast<std::uint32_t>((r.spec.command_ttl_ms + 999) / 1000)});
  }
}

void FleetCore::record_history(Rollout& r) {
  std::uint64_t image_size = 0;
  bool size_known = false;
  auto& history = link_model_.history;
  for (Member& m : r.members) {
    if (!m.dirty || m.sampled || !becomes_history(m)) continue;
    if (!size_known) {  // looked up once per call, and only when an update has finished
      image_size = artifacts_.image_size(r.spec.artifact_id);
      size_known = true;
    }
    auto sample = update_sample(r, m, image_size, link_model_);
    if (!sample) continue;
    m.sampled = true;
    history.push_back(*sample);
    pending_samples_.push_back(std::move(*sample));
  }
  if (history.size() > 2 * kHistoryKept)
    history.erase(history.begin(),
                  history.begin() + static_cast<std::ptrdiff_t>(history.size() - kHistoryKept));
}

DeviceRecord FleetCore::record_of(const std::string& id) const {
  DeviceRecord d;
  if (auto it = details_.find(id); it != details_.end()) static_cast<DeviceDetails&>(d) = it->second;
  if (auto it = fleet_.devices.find(id); it != fleet_.devices.end()) d.facts = it->second;
  return d;
}

Status FleetCore::commit(const SaveBatch& save) {
  StoreBatch batch;
  batch.devices.reserve(dirty_devices_.size());
  for (const std::string& id : dirty_devices_) batch.devices.push_back(record_of(id));
  for (const std::string& id : touched_rollouts_) {
    Rollout* r = find_rollout(id);
    if (r == nullptr) continue;
    record_history(*r);
    batch.rollouts.push_back(r);
  }
  batch.samples = pending_samples_;
  batch.prune_samples =
      !pending_samples_.empty() && samples_since_prune_ + pending_samples_.size() >= kHistoryKept;
  batch.events = pending_events_;
  batch.logs = pending_logs_;
  batch.audit = pending_audit_;
  batch.revocations = pending_revocations_;
  batch.removed_devices = pending_removed_devices_;
  if (auto st = save(batch); !st) {
    log_->error("persisting state failed (will retry): {}", st.error().message);
    return st;
  }
  dirty_devices_.clear();
  touched_rollouts_.clear();
  samples_since_prune_ = batch.prune_samples ? 0 : samples_since_prune_ + pending_samples_.size();
  pending_samples_.clear();
  pending_events_.clear();
  pending_logs_.clear();
  pending_audit_.clear();
  pending_revocations_.clear();
  pending_removed_devices_.clear();
  // Commands go out only after the state that produced them is durable.
  for (DeviceCommand& c : outbox_) ready_.push_back(std::move(c));
  outbox_.clear();
  return common::ok_status();
}

std::vector<DeviceCommand> FleetCore::take_commands() {
  std::vector<DeviceCommand> out;
  out.swap(ready_);
  return out;
}

FleetCore::UnsavedMark FleetCore::mark_unsaved() const {
  return UnsavedMark{pending_events_.size(),         pending_audit_.size(), pending_samples_.size(),
                     link_model_.history.size(),     outbox_.size(),        pending_revocations_.size(),
                     pending_removed_devices_.size()};
}

void FleetCore::drop_unsaved_since(const UnsavedMark& mark) {
  const auto drop = [](auto& queued, std::size_t keep) {
    if (queued.size() > keep) queued.erase(queued.begin() + static_cast<std::ptrdiff_t>(keep), queued.end());
  };
  drop(pending_events_, mark.events);
  drop(pending_audit_, mark.audit);
  drop(pending_samples_, mark.samples);
  drop(link_model_.history, mark.history);
  drop(outbox_, mark.outbox);
  drop(pending_revocations_, mark.revocations);
  drop(pending_removed_devices_, mark.removed_devices);
}

common::Result<const Rollout*> FleetCore::create_rollout(const RolloutSpec& spec, const std::string& actor,
                                                         Millis now, const SaveBatch& save) {
  std::string id = options_.new_rollout_id();
  while (rollouts_.count(id)) id = options_.new_rollout_id();
  auto rollout = RolloutEngine::create(id, spec, now);
  if (!rollout) return rollout.error();
  if (auto st = RolloutEngine::check_target(*rollout, fleet_, unresolved_rollouts()); !st) return st.error();
  const UnsavedMark mark = mark_unsaved();
  Rollout& r = rollouts_.emplace(id, std::move(rollout).value()).first->second;
  touched_rollouts_.insert(id);
  pending_audit_.push_back(
      AuditRecord{actor, "rollout.create", id + " " + r.spec.name + " artifact " + r.spec.artifact_id});
  if (auto st = commit(save); !st) {
    // Not durable: the request failed and nothing changed, not even the audit line.
    rollouts_.erase(id);
    touched_rollouts_.erase(id);
    drop_unsaved_since(mark);
    return st.error();
  }
  return &r;
}

common::Result<const Rollout*> FleetCore::rollout_action(const std::string& id, const std::string& action,
                                                         const std::string& actor, Millis now,
                                                         const SaveBatch& save) {
  Rollout* r = find_rollout(id);
  if (r == nullptr)
    return Error(Errc::kNotFound, "rollout '" + id + "' does not exist; `fotactl rollout status` lists them");
  const Rollout before = *r;
  const auto claims_before = fleet_.claims;
  const UnsavedMark mark = mark_unsaved();
  common::Result<Decisions> result = Decisions{};
  const std::string reason = "operator " + actor;
  if (action == "start") {
    result = engine_.start(*r, fleet_, now, unresolved_rollouts());
  } else if (action == "pause") {
    result = engine_.pause(*r, reason, now);
  } else if (action == "resume") {
    result = engine_.resume(*r, now);
  } else if (action == "abort") {
    result = engine_.abort(*r, fleet_, reason, now);
  } else if (action == "rollback") {
    result = engine_.rollback(*r, reason, now);
  } else {
    return Error(Errc::kInvalidArgument,
                 "unknown action '" + action + "'; use start, pause, resume, abort or rollback");
  }
  if (!result) return result.error();
  apply(*r, *result, now);
  if (action == "start") apply(*r, engine_.tick(*r, fleet_, now), now);
  pending_audit_.push_back(AuditRecord{actor, "rollout." + action, id});
  if (auto st = commit(save); !st) {
    // Not durable: the request failed and nothing changed — the rollout, its claims on devices,
    // and what the action queued (its audit line, the engine's decisions, command events and the
    // commands themselves) are all taken back. What was queued before the action stays queued.
    *r = before;
    fleet_.claims = claims_before;
    drop_unsaved_since(mark);
    return st.error();
  }
  return r;
}

common::Result<RevocationRecord> FleetCore::revoke_device(const std::string& id, const std::string& reason,
                                                          const std::string& actor, Millis now,
                                                          const SaveBatch& save) {
  return retire_device(id, reason, actor, now, save, false);
}

common::Result<RevocationRecord> FleetCore::decommission_device(const std::string& id,
                                                                const std::string& reason,
                                                                const std::string& actor, Millis now,
                                                                const SaveBatch& save) {
  return retire_device(id, reason, actor, now, save, true);
}

common::Result<RevocationRecord> FleetCore::retire_device(const std::string& id, const std::string& reason,
                                                          const std::string& actor, Millis now,
                                                          const SaveBatch& save, bool decommission) {
  if (auto parsed = common::DeviceId::parse(id); !parsed) return parsed.error().with_context("device id");
  constexpr std::size_t kMaxReasonBytes = 512;
  if (reason.size() > kMaxReasonBytes) {
    return Error(Errc::kInvalidArgument, "the reason is " + std::to_string(reason.size()) +
                                             " bytes; keep it under " + std::to_string(kMaxReasonBytes));
  }
  if (decommission) {
    if (const std::string rollout = owner(id); !rollout.empty()) {
      return Error(Errc::kConflict, "device '" + id + "' belongs to active rollout " + rollout +
                                        "; abort that rollout (or let it finish) before decommissioning; "
                                        "`fotactl device revoke` locks the device out meanwhile");
    }
  }
  const auto existing = revocations_.find(id);
  if (existing != revocations_.end() && (!decommission || existing->second.decommissioned_ms != 0)) {
    return existing->second;  // already done: nothing changes
  }
  RevocationRecord record =
      existing != revocations_.end() ? existing->second : RevocationRecord{id, reason, actor, now, 0};
  if (decommission) record.decommissioned_ms = now;

  // Taken back whole when the save fails.
  const UnsavedMark mark = mark_unsaved();
  const std::optional<RevocationRecord> revocation_before =
      existing != revocations_.end() ? std::optional(existing->second) : std::nullopt;
  const auto facts_it = fleet_.devices.find(id);
  const std::optional<DeviceFacts> facts_before =
      facts_it != fleet_.devices.end() ? std::optional(facts_it->second) : std::nullopt;
  const auto details_it = details_.find(id);
  const std::optional<DeviceDetails> details_before =
      details_it != details_.end() ? std::optional(details_it->second) : std::nullopt;
  const bool was_dirty = dirty_devices_.count(id) > 0;

  revocations_[id] = record;
  pending_revocations_.push_back(record);
  if (facts_before) {
    if (decommission) {
      fleet_.devices.erase(id);
      details_.erase(id);
      dirty_devices_.erase(id);
      pending_removed_devices_.push_back(id);
    } else {
      DeviceFacts& facts = fleet_.devices[id];
      facts.revoked = true;
      facts.online = false;  // the broker drops it; its offline presence would be ignored
    }
    ++fleet_.generation;
  }
  const std::string verb = decommission ? "decommissioned" : "revoked";
  pending_events_.push_back(EventRecord{0, now, id, "", "lifecycle",
                                        verb + " by " + actor + (reason.empty() ? "" : ": " + reason)});
  pending_audit_.push_back(AuditRecord{actor, decommission ? "device.decommission" : "device.revoke",
                                       id + (reason.empty() ? "" : " reason: " + reason)});
  if (auto st = commit(save); !st) {
    if (revocation_before) {
      revocations_[id] = *revocation_before;
    } else {
      revocations_.erase(id);
    }
    if (facts_before) fleet_.devices[id] = *facts_before;
    if (details_before) details_[id] = *details_before;
    if (was_dirty) dirty_devices_.insert(id);
    drop_unsaved_since(mark);
    return st.error();
  }
  log_->warn("device {} {} by {}{}", id, verb, actor, reason.empty() ? "" : ": " + reason);
  return record;
}

Status FleetCore::record(AuditRecord entry, const SaveBatch& save) {
  pending_audit_.push_back(std::move(entry));
  return commit(save);
}

std::optional<DeviceRecord> FleetCore::device(const std::string& id) const {
  if (!fleet_.devices.count(id)) return std::nullopt;
  return record_of(id);
}

std::vector<DeviceRecord> FleetCore::devices() const {
  std::vector<DeviceRecord> out;
  out.reserve(fleet_.devices.size());
  for (const auto& [id, facts] : fleet_.devices) out.push_back(record_of(id));
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.facts.id < b.facts.id; });
  return out;
}

std::string FleetCore::owner(const std::string& device_id) const {
  auto claim = fleet_.claims.find(device_id);
  return claim == fleet_.claims.end() ? std::string() : claim->second;
}

std::string FleetCore::fetchable_artifact(const std::string& device_id) const {
  const std::string rollout_id = owner(device_id);
  if (rollout_id.empty()) return {};
  auto rollout = rollouts_.find(rollout_id);
  if (rollout == rollouts_.end()) return {};
  const Member* m = rollout->second.find_member(device_id);
  if (m == nullptr) return {};
  switch (m->state) {
    case MemberState::kDispatched:
    case MemberState::kUpdating:
    case MemberState::kRetryWait:
      return rollout->second.spec.artifact_id;
    case MemberState::kRollingBack:
      // The rollback command carries the previous artifact only when the store still has it.
      return artifacts_.image_size(m->previous_artifact_id) > 0 ? m->previous_artifact_id : std::string();
    default:
      return {};
  }
}

RolloutPrediction FleetCore::predict(const Rollout& r, Millis now) const {
  return predict_rollout(r, fleet_, artifacts_.image_size(r.spec.artifact_id), link_model_, now);
}

RolloutView FleetCore::view(const Rollout& r, Millis now, bool with_members) const {
  RolloutView v;
  v.id = r.id;
  v.spec = r.spec;
  v.state = r.state;
  v.reason = r.reason;
  v.created_ms = r.created_ms;
  v.started_ms = r.started_ms;
  v.finished_ms = r.finished_ms;
  v.waves.resize(r.waves.size());
  for (std::size_t w = 0; w < r.waves.size(); ++w) v.waves[w].state = r.waves[w];
  for (const Member& m : r.members) {
    if (m.wave < 0 || static_cast<std::size_t>(m.wave) >= v.waves.size()) continue;
    WaveView& wave = v.waves[static_cast<std::size_t>(m.wave)];
    const std::string state(member_state_name(m.state));
    ++wave.devices;
    ++wave.counts[state];
    ++v.counts[state];
    wave.bytes_done += m.bytes_done;
    wave.bytes_total += m.bytes_total;
    wave.bytes_reused += m.bytes_reused;
  }
  v.devices = r.members.size();
  if (r.state == RolloutState::kRunning || r.state == RolloutState::kCreated ||
      r.state == RolloutState::kPaused)
    v.eta_end_ms = predict(r, now).end_ms;
  if (with_members) v.members = r.members;
  return v;
}

common::Result<RolloutPlan> FleetCore::plan(const std::string& id, Millis now) const {
  const Rollout* r = rollout(id);
  if (r == nullptr) return Error(Errc::kNotFound, "rollout '" + id + "' does not exist");
  RolloutPlan plan;
  plan.rollout = id;
  plan.prediction = predict(*r, now);
  plan.image_size = artifacts_.image_size(r->spec.artifact_id);
  plan.assumed_rate_bytes_per_second = link_model_.default_rate_bytes_per_second;
  plan.fixed_ms_per_device =
      link_model_.measured_fixed_ms > 0 ? link_model_.measured_fixed_ms : link_model_.default_fixed_ms;
  return plan;
}

FleetSummary FleetCore::summary(Millis now) const {
  FleetSummary s;
  s.devices = fleet_.devices.size();
  for (const auto& [id, facts] : fleet_.devices) s.online += facts.online ? 1 : 0;
  for (const auto& [id, facts] : fleet_.devices) {
    auto it = details_.find(id);
    const std::string& phase = it == details_.end() ? std::string() : it->second.last_phase;
    ++s.devices_by_phase[phase.empty() ? "unknown" : phase];
  }
  for (RolloutState state :
       {RolloutState::kCreated, RolloutState::kRunning, RolloutState::kPaused, RolloutState::kCompleted,
        RolloutState::kAborted, RolloutState::kRollingBack, RolloutState::kRolledBack})
    s.rollouts_by_state[std::string(rollout_state_name(state))] = 0;
  for (const auto& [id, r] : rollouts_) {
    ++s.rollouts_by_state[std::string(rollout_state_name(r.state))];
    if (r.state == RolloutState::kRunning) s.running_rollout_remaining_ms[id] = predict(r, now).end_ms - now;
  }
  s.progress_reports = progress_reports_;
  s.messages_from_revoked = ignored_from_revoked_;
  return s;
}

}  // namespace fota::orchestrator

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

// Inserts or erases `value` in a sorted vector; false when it was already so.
bool set_sorted(std::vector<std::string>& v, const std::string& value, bool present) {
  auto it = std::lower_bound(v.begin(), v.end(), value);
  const bool there = it != v.end() && *it == value;
  if (there == present) return false;
  if (present) {
    v.insert(it, value);
  } else {
    v.erase(it);
  }
  return true;
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
                        std::vector<UpdateSample> history, std::vector<RevocationRecord> revocations,
                        std::vector<DeviceTagChange> tags, std::vector<GroupRecord> groups) {
  for (DeviceRecord& d : devices) {
    const std::string id = d.facts.id;
    // Presence is re-learned from the broker's retained messages; the stored row follows, so that
    // the list's online filter (answered by the store) agrees.
    if (d.facts.online) dirty_devices_.insert(id);
    d.facts.online = false;
    if (d.measured.download_bytes_per_second > 0 || d.measured.reboot_ms > 0)
      link_model_.device_measured[id] = d.measured;
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
  for (const DeviceTagChange& t : tags) {
    if (auto it = fleet_.devices.find(t.device_id); it != fleet_.devices.end())
      it->second.operator_tags.push_back(t.tag);  // loaded by device, tag: stays sorted
  }
  for (GroupRecord& g : groups) {
    for (const std::string& member : g.members) {
      if (auto it = fleet_.devices.find(member); it != fleet_.devices.end())
        it->second.static_groups.push_back(g.name);  // loaded by name: stays sorted
    }
    const std::string name = g.name;
    groups_.emplace(name, std::move(g));
  }
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

void FleetCore::on_certificate_refused(const std::string& id, const v1::Progress& p, Millis now) {
  // Not an update's phase: the device's phase, its rollout and the history stay as they are. The
  // event and the device's last error make it visible in `fotactl device show`.
  DeviceDetails& d = touch_device(id, now);
  DeviceFacts& facts = fleet_.devices[id];
  facts.last_seen_ms = now;
  facts.online = true;
  ++certificates_refused_by_devices_;
  const std::string detail =
      v1::ErrorCode_Name(p.error()) +
      (p.command_id().empty() ? "" : " (command " + p.command_id().substr(0, 64) + ")") + ": " +
      p.error_detail().substr(0, 1024);
  d.last_error = detail;
  pending_events_.push_back(EventRecord{0, now, id, "", "certificate", detail});
  log_->warn("device {} refused a certificate command: {}", id, detail);
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
  if (inv.has_measurements()) {
    // What the device measured itself: a fresh orchestrator plans from it (issue 20). Negative
    // times from a broken clock count as not measured.
    const v1::DeviceMeasurements& m = inv.measurements();
    DeviceMeasured own;
    own.download_bytes_per_second = m.download_bytes_per_second();
    own.verify_bytes_per_second = m.verify_bytes_per_second();
    own.reboot_ms = std::max<Millis>(0, m.reboot_ms());
    own.health_check_ms = std::max<Millis>(0, m.health_check_ms());
    link_model_.device_measured[id] = own;
  }
  facts.online = true;
  facts.last_seen_ms = now;
  d.client_version = inv.client_version();
  d.security_counter = inv.security_counter();
  d.free_bytes = inv.free_bytes();
  d.certificate_not_after = inv.certificate_not_after();
  facts.decryption_key_id = inv.decryption_key_id();
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
    if (p->deployment_id().empty() && p->error() >= v1::ERROR_CERTIFICATE_REFUSED && p->error() < 40) {
      on_certificate_refused(id, *p, now);
    } else {
      ingest_progress(id, *p, now);
    }
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
  if (auto it = link_model_.device_measured.find(id); it != link_model_.device_measured.end())
    d.measured = it->second;
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
  batch.created_groups = pending_created_groups_;
  batch.member_changes = pending_member_changes_;
  batch.tag_changes = pending_tag_changes_;
  batch.deleted_groups = pending_deleted_groups_;
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
  pending_created_groups_.clear();
  pending_member_changes_.clear();
  pending_tag_changes_.clear();
  pending_deleted_groups_.clear();
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
  return UnsavedMark{pending_events_.size(),
                     pending_audit_.size(),
                     pending_samples_.size(),
                     link_model_.history.size(),
                     outbox_.size(),
                     pending_revocations_.size(),
                     pending_removed_devices_.size(),
                     pending_created_groups_.size(),
                     pending_member_changes_.size(),
                     pending_tag_changes_.size(),
                     pending_deleted_groups_.size()};
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
  drop(pending_created_groups_, mark.created_groups);
  drop(pending_member_changes_, mark.member_changes);
  drop(pending_tag_changes_, mark.tag_changes);
  drop(pending_deleted_groups_, mark.deleted_groups);
}

common::Result<const Rollout*> FleetCore::create_rollout(const RolloutSpec& spec, const std::string& actor,
                                                         Millis now, const SaveBatch& save) {
  RolloutSpec resolved = spec;
  // Operator groups are resolved now and recorded in the rollout: who was in the group when the
  // rollout was created is what it targets, whatever happens to the group later. The recipient
  // check then sees the devices the rollout will really target.
  resolved.target.resolved_groups.clear();
  for (const std::string& name : resolved.target.groups) {
    if (auto members = group_members(name))
      resolved.target.resolved_groups[name] = std::move(members).value();
  }
  auto checked = check_recipients(resolved);
  if (!checked) return checked.error();
  std::string id = options_.new_rollout_id();
  while (rollouts_.count(id)) id = options_.new_rollout_id();
  auto rollout = RolloutEngine::create(id, *checked, now);
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

common::Result<RolloutSpec> FleetCore::check_recipients(const RolloutSpec& spec) const {
  auto signed_manifest = artifacts_.signed_manifest(spec.artifact_id);
  v1::Manifest manifest;
  // Without a readable manifest there is nothing to compare; the install reports the rest.
  if (!signed_manifest || !manifest.ParseFromString(signed_manifest->manifest()) ||
      manifest.encryption().recipients().empty() || spec.non_recipients == NonRecipients::kInclude) {
    return spec;
  }
  std::vector<std::string> recipients;
  for (const auto& r : manifest.encryption().recipients()) recipients.push_back(r.recipient_key_id());
  RolloutSpec out = spec;
  if (spec.non_recipients == NonRecipients::kExclude) {
    // Kept in the selector, so late joiners without a recipient key are left out as well.
    if (out.target.decryption_keys.empty()) out.target.decryption_keys = recipients;
    return out;
  }
  std::vector<std::string> cannot;
  for (const auto& [id, facts] : fleet_.devices) {
    if (!selector_matches(spec.target, facts)) continue;
    if (std::find(recipients.begin(), recipients.end(), facts.decryption_key_id) != recipients.end())
      continue;
    cannot.push_back(id + (facts.decryption_key_id.empty() ? " (no decryption key)"
                                                           : " (key " + facts.decryption_key_id + ")"));
  }
  if (cannot.empty()) return out;
  std::sort(cannot.begin(), cannot.end());
  std::string list, keys;
  for (std::size_t i = 0; i < cannot.size() && i < 10; ++i) list += (i ? ", " : "") + cannot[i];
  if (cannot.size() > 10) list += " and " + std::to_string(cannot.size() - 10) + " more";
  for (const std::string& k : recipients) keys += (keys.empty() ? "" : ", ") + k;
  return Error(Errc::kInvalidArgument,
               std::to_string(cannot.size()) + " targeted device(s) cannot decrypt artifact " +
                   spec.artifact_id + " (encrypted for key(s) " + keys + "): " + list +
                   "; encrypt it for their keys too (`fotactl artifact create --encrypt-for`), narrow the "
                   "target, or set non_recipients: exclude (leave them out) or include (send anyway)");
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
  const auto groups_before = groups_;

  revocations_[id] = record;
  pending_revocations_.push_back(record);
  if (facts_before) {
    if (decommission) {
      // Its tags and memberships go with its row (the store deletes them with it).
      for (const std::string& group : facts_it->second.static_groups) {
        if (auto g = groups_.find(group); g != groups_.end()) set_sorted(g->second.members, id, false);
      }
      fleet_.devices.erase(id);
      details_.erase(id);
      link_model_.device_measured.erase(id);
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
    groups_ = groups_before;
    drop_unsaved_since(mark);
    return st.error();
  }
  log_->warn("device {} {} by {}{}", id, verb, actor, reason.empty() ? "" : ": " + reason);
  return record;
}

Status FleetCore::commit_label_action(const UnsavedMark& mark,
                                      std::map<std::string, GroupRecord> groups_before,
                                      std::unordered_map<std::string, DeviceFacts> facts_before,
                                      const SaveBatch& save) {
  ++fleet_.generation;  // selectable facts changed
  if (auto st = commit(save); !st) {
    groups_ = std::move(groups_before);
    for (auto& [id, facts] : facts_before) fleet_.devices[id] = std::move(facts);
    drop_unsaved_since(mark);
    return st;
  }
  return common::ok_status();
}

common::Result<DeviceRecord> FleetCore::set_device_tag(const std::string& device_id, const std::string& tag,
                                                       bool present, const std::string& actor, Millis now,
                                                       const SaveBatch& save) {
  (void)now;
  if (auto st = check_label("tag", tag); !st) return st.error();
  auto it = fleet_.devices.find(device_id);
  if (it == fleet_.devices.end()) {
    return Error(Errc::kNotFound, "device '" + device_id +
                                      "' is not registered; `fotactl device list` shows the known devices");
  }
  const UnsavedMark mark = mark_unsaved();
  std::unordered_map<std::string, DeviceFacts> before{{device_id, it->second}};
  if (!set_sorted(it->second.operator_tags, tag, present)) return record_of(device_id);
  pending_tag_changes_.push_back(DeviceTagChange{device_id, tag, present});
  pending_audit_.push_back(
      AuditRecord{actor, present ? "device.tag" : "device.untag", device_id + " " + tag});
  if (auto st = commit_label_action(mark, groups_, std::move(before), save); !st) return st.error();
  return record_of(device_id);
}

common::Result<GroupRecord> FleetCore::create_group(const std::string& name, const std::string& selector,
                                                    const std::string& actor, Millis now,
                                                    const SaveBatch& save) {
  if (auto st = check_label("group", name); !st) return st.error();
  GroupRecord g{name, "", now, actor, {}};
  if (!selector.empty()) {
    auto parsed = parse_device_selector(selector);
    if (!parsed) return parsed.error().with_context("group " + name);
    g.selector = device_selector_text(*parsed);  // canonical
  }
  if (groups_.count(name)) {
    return Error(
        Errc::kAlreadyExists,
        "group '" + name + "' exists; delete it first or choose another name (`fotactl group list`)");
  }
  const UnsavedMark mark = mark_unsaved();
  auto groups_before = groups_;
  groups_[name] = g;
  pending_created_groups_.push_back(g);
  pending_audit_.push_back(
      AuditRecord{actor, "group.create", name + (g.dynamic() ? " selector " + g.selector : " static")});
  if (auto st = commit_label_action(mark, std::move(groups_before), {}, save); !st) return st.error();
  return g;
}

common::Result<GroupRecord> FleetCore::set_group_member(const std::string& group,
                                                        const std::string& device_id, bool present,
                                                        const std::string& actor, Millis now,
                                                        const SaveBatch& save) {
  (void)now;
  auto g = groups_.find(group);
  if (g == groups_.end())
    return Error(Errc::kNotFound, "group '" + group + "' does not exist; `fotactl group list` shows them");
  if (g->second.dynamic()) {
    return Error(Errc::kConflict, "group '" + group + "' is dynamic (" + g->second.selector +
                                      "): its members are the devices its selector matches; tag the device "
                                      "or use a static group");
  }
  auto device = fleet_.devices.find(device_id);
  if (device == fleet_.devices.end()) {
    return Error(Errc::kNotFound, "device '" + device_id +
                                      "' is not registered; `fotactl device list` shows the known devices");
  }
  const UnsavedMark mark = mark_unsaved();
  auto groups_before = groups_;
  std::unordered_map<std::string, DeviceFacts> facts_before{{device_id, device->second}};
  if (!set_sorted(g->second.members, device_id, present)) return g->second;
  set_sorted(device->second.static_groups, group, present);
  pending_member_changes_.push_back(GroupMemberChange{group, device_id, present});
  pending_audit_.push_back(
      AuditRecord{actor, present ? "group.add" : "group.remove", group + " " + device_id});
  if (auto st = commit_label_action(mark, std::move(groups_before), std::move(facts_before), save); !st)
    return st.error();
  return groups_.at(group);
}

Status FleetCore::delete_group(const std::string& name, const std::string& actor, Millis now,
                               const SaveBatch& save) {
  (void)now;
  auto g = groups_.find(name);
  if (g == groups_.end())
    return Error(Errc::kNotFound, "group '" + name + "' does not exist; `fotactl group list` shows them");
  const UnsavedMark mark = mark_unsaved();
  auto groups_before = groups_;
  std::unordered_map<std::string, DeviceFacts> facts_before;
  for (const std::string& member : g->second.members) {
    auto device = fleet_.devices.find(member);
    if (device == fleet_.devices.end()) continue;
    facts_before.emplace(member, device->second);
    set_sorted(device->second.static_groups, name, false);
  }
  groups_.erase(g);
  pending_deleted_groups_.push_back(name);
  pending_audit_.push_back(AuditRecord{actor, "group.delete", name});
  return commit_label_action(mark, std::move(groups_before), std::move(facts_before), save);
}

common::Result<std::vector<std::string>> FleetCore::group_members(const std::string& name) const {
  auto g = groups_.find(name);
  if (g == groups_.end())
    return Error(Errc::kNotFound, "group '" + name + "' does not exist; `fotactl group list` shows them");
  std::vector<std::string> out;
  if (!g->second.dynamic()) {
    for (const std::string& id : g->second.members) {
      if (fleet_.devices.count(id)) out.push_back(id);
    }
    return out;
  }
  auto selector = parse_device_selector(g->second.selector);
  if (!selector) return selector.error().with_context("group " + name);
  for (const auto& [id, facts] : fleet_.devices) {
    if (device_selector_matches(*selector, facts)) out.push_back(id);
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<std::string> FleetCore::groups_of(const DeviceFacts& device) const {
  std::vector<std::string> out;
  for (const auto& [name, g] : groups_) {
    if (!g.dynamic()) {
      if (std::binary_search(device.static_groups.begin(), device.static_groups.end(), name))
        out.push_back(name);
    } else if (auto selector = parse_device_selector(g.selector);
               selector && device_selector_matches(*selector, device)) {
      out.push_back(name);
    }
  }
  return out;
}

common::Result<CertificateRenewalOrder> FleetCore::renew_certificate(const std::string& id,
                                                                     const std::string& reason,
                                                                     const std::string& command_id,
                                                                     const std::string& actor, Millis now,
                                                                     Millis ttl_ms, const SaveBatch& save) {
  auto device = common::DeviceId::parse(id);
  if (!device) return device.error().with_context("device id");
  constexpr std::size_t kMaxReasonBytes = 512;
  if (reason.size() > kMaxReasonBytes) {
    return Error(Errc::kInvalidArgument, "the reason is " + std::to_string(reason.size()) +
                                             " bytes; keep it under " + std::to_string(kMaxReasonBytes));
  }
  if (revocations_.count(id)) {
    return Error(Errc::kConflict, "device '" + id +
                                      "' is revoked and gets no certificate; a revoked id stays refused "
                                      "(issue the hardware a new id)");
  }
  const auto facts = fleet_.devices.find(id);
  if (facts == fleet_.devices.end()) {
    return Error(Errc::kNotFound,
                 "device '" + id + "' is not registered; `fotactl device list` shows the known devices");
  }
  if (!options_.command_key) return Error(Errc::kInternal, "no command key to sign the renewal with");
  v1::Command cmd;
  cmd.set_command_id(command_id);
  cmd.set_device_id(id);
  cmd.set_issued_at_ms(now);
  cmd.set_expires_at_ms(now + ttl_ms);
  cmd.mutable_renew_certificate()->set_reason(reason);
  auto payload = common::sign_command(cmd, *options_.command_key);
  if (!payload) return payload.error().with_context("signing the renewal command");

  const UnsavedMark mark = mark_unsaved();
  pending_events_.push_back(EventRecord{
      0, now, id, "", "command",
      "renew certificate (" + command_id + ") by " + actor + (reason.empty() ? "" : ": " + reason)});
  pending_audit_.push_back(
      AuditRecord{actor, "certificate.renew",
                  id + " command " + command_id + (reason.empty() ? "" : " reason: " + reason)});
  outbox_.push_back(DeviceCommand{options_.topics.device_topic(*device, Channel::kCommand),
                                  std::move(payload).value(),
                                  static_cast<std::uint32_t>((ttl_ms + 999) / 1000)});
  if (auto st = commit(save); !st) {
    drop_unsaved_since(mark);
    return st.error();
  }
  log_->info("certificate renewal of {} asked by {} (command {})", id, actor, command_id);
  return CertificateRenewalOrder{id, command_id, now + ttl_ms, facts->second.online};
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
      r.state == RolloutState::kPaused) {
    const RolloutPrediction p = predict(r, now);
    v.eta_end_ms = p.end_ms;
    v.eta_bound_end_ms = p.bound_end_ms;
  }
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
  for (const auto& [id, facts] : fleet_.devices) {
    s.online += facts.online ? 1 : 0;
    ++s.devices_by_version[facts.version];
    ++s.devices_by_hardware[facts.hardware_type];
  }
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
  s.certificates_refused_by_devices = certificates_refused_by_devices_;
  return s;
}

}  // namespace fota::orchestrator

#include "orchestrator_service.hpp"

#include <algorithm>
#include <cstdlib>
#include <random>
#include <sstream>

#include "fota/common/codec.hpp"
#include "fota/common/crypto.hpp"
#include "fota/common/phase.hpp"

namespace fota::orchestrator {

using common::Channel;
using common::Errc;
using common::Error;
using common::Status;
using nlohmann::json;

namespace {

constexpr std::uint32_t kMaxChunksPerRequest = common::kDefaultMaxChunksPerRequest;
// Chunk requests waiting for serve_chunk_requests(); beyond this they are dropped (and counted):
// the transport's thread never waits, and the device asks again for what it did not get.
constexpr std::size_t kMaxQueuedChunkRequests = 8192;
constexpr std::size_t kMaxLogsPerBatch = 200;

ApiError api_error(const Error& e) {
  int status = 500;
  switch (e.code) {
    case Errc::kInvalidArgument:
    case Errc::kMalformed:
      status = 400;
      break;
    case Errc::kNotFound:
      status = 404;
      break;
    case Errc::kConflict:
    case Errc::kAlreadyExists:
      status = 409;
      break;
    case Errc::kTooLarge:
      status = 413;
      break;
    case Errc::kBadSignature:
    case Errc::kUntrustedKey:
    case Errc::kIntegrity:
      status = 422;
      break;
    case Errc::kPermissionDenied:
      status = 403;
      break;
    default:
      status = 500;
  }
  return ApiError{status, e.message};
}

// The typed message of a device channel, checked like common::validate_device_message (type,
// size cap, device id = topic id).
template <typename M>
common::Result<DeviceMessage> decode_as(common::Channel channel, const common::DeviceId& device,
                                        std::string_view payload) {
  auto m = common::decode_device_message<M>(device, payload, common::max_message_bytes(channel));
  if (!m) return m.error();
  return DeviceMessage(std::move(m).value());
}

common::Result<DeviceMessage> decode_message(common::Channel channel, const common::DeviceId& device,
                                             std::string_view payload) {
  switch (channel) {
    case Channel::kInventory:
      return decode_as<v1::Inventory>(channel, device, payload);
    case Channel::kProgress:
      return decode_as<v1::Progress>(channel, device, payload);
    case Channel::kPresence:
      return decode_as<v1::Presence>(channel, device, payload);
    case Channel::kLog:
      return decode_as<v1::LogBatch>(channel, device, payload);
    case Channel::kChunkRequest:
      return decode_as<v1::ChunkRequest>(channel, device, payload);
    default:
      return Error(Errc::kInvalidArgument, "not a device channel");
  }
}

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

json device_json(const DeviceRecord& d) {
  return json{{"id", d.facts.id},
              {"hardware", d.facts.hardware_type},
              {"time_zone", d.facts.time_zone},
              {"artifact_id", d.facts.artifact_id},
              {"version", d.facts.version},
              {"tags", d.facts.tags},
              {"group", d.facts.group},
              {"online", d.facts.online},
              {"last_seen", d.facts.last_seen_ms ? format_timestamp(d.facts.last_seen_ms) : ""},
              {"client_version", d.client_version},
              {"security_counter", d.security_counter},
              {"free_bytes", d.free_bytes},
              {"pending_deployment_id", d.pending_deployment_id},
              {"last_phase", d.last_phase},
              {"last_error", d.last_error},
              {"registered_at", d.registered_ms ? format_timestamp(d.registered_ms) : ""}};
}

json manifest_json(const v1::Manifest& m) {
  return json{{"artifact_id", m.artifact_id()},
              {"name", m.name()},
              {"version", m.version()},
              {"security_counter", m.security_counter()},
              {"compatible_hardware",
               std::vector<std::string>(m.compatible_hardware().begin(), m.compatible_hardware().end())},
              {"image_size", m.image_size()},
              {"chunk_size", m.chunk_size()},
              {"chunks", common::ChunkSpace::of(m).image_chunks()},
              {"image_sha256", common::to_hex(m.image_sha256())},
              {"created_at", format_timestamp(m.created_at_ms())}};
}

}  // namespace

std::function<std::string()> random_rollout_ids() {
  return [rng = std::mt19937_64{std::random_device{}()}]() mutable {
    char buf[17];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(rng()));
    return "r-" + std::string(buf, 10);
  };
}

OrchestratorService::OrchestratorService(ServiceOptions options, std::shared_ptr<spdlog::logger> logger,
                                         std::unique_ptr<Store> store)
    : options_(std::move(options)),
      log_(std::move(logger)),
      store_(std::move(store)),
      artifacts_(options_.artifacts_dir),
      trust_(std::make_shared<const common::TrustStore>(options_.trust)) {
  link_model_.default_rate_bytes_per_second = options_.default_link_rate;
  link_model_.default_fixed_ms = options_.default_device_time_ms;
}

OrchestratorService::~OrchestratorService() = default;

common::Result<std::unique_ptr<OrchestratorService>> OrchestratorService::open(
    ServiceOptions options, std::shared_ptr<spdlog::logger> logger) {
  std::error_code ec;
  std::filesystem::create_directories(options.data_dir, ec);
  if (ec)
    return Error(Errc::kIo,
                 "cannot create data directory " + options.data_dir.string() + ": " + ec.message());
  if (options.artifacts_dir.empty()) options.artifacts_dir = options.data_dir / "artifacts";
  std::filesystem::create_directories(options.artifacts_dir, ec);
  if (ec) {
    return Error(Errc::kIo,
                 "cannot create artifacts directory " + options.artifacts_dir.string() + ": " + ec.message());
  }
  if (!options.new_rollout_id) options.new_rollout_id = random_rollout_ids();
  auto store = SqliteStore::open(options.data_dir / "state.db");
  if (!store) return store.error();
  std::unique_ptr<OrchestratorService> service(
      new OrchestratorService(std::move(options), std::move(logger), std::move(store).value()));
  if (auto st = service->load(); !st) return st.error();
  return service;
}

Status OrchestratorService::load() {
  auto devices = store_->load_devices();
  if (!devices) return devices.error();
  for (DeviceRecord& d : *devices) {
    d.facts.online = false;  // presence is re-learned from the broker's retained messages
    fleet_.devices[d.facts.id] = d.facts;
    fleet_.generation = 1;
    devices_[d.facts.id] = std::move(d);
  }
  auto rollouts = store_->load_rollouts();
  if (!rollouts) return rollouts.error();
  for (Rollout& r : *rollouts) {
    if (is_active(r.state)) {
      for (const Member& m : r.members) fleet_.claims[m.device_id] = r.id;
    }
    for (Member& m : r.members)
      m.sampled = becomes_history(m);  // sampled when it finished (update_samples holds it)
    // Read each rollout's manifest now, not first under the state lock (the store keeps it).
    (void)artifacts_.manifest(r.spec.artifact_id);
    const std::string id = r.id;
    rollouts_.emplace(id, std::move(r));
  }
  // Only the latest kHistoryKept are ever read: the table keeps no more (here and in persist()).
  if (auto st = store_->prune_update_samples(kHistoryKept); !st) return st;
  auto history = store_->update_samples(kHistoryKept);
  if (!history) return history.error();
  link_model_.history = std::move(history).value();
  log_->info("loaded {} device(s), {} rollout(s) and {} finished update(s) as prediction history",
             devices_.size(), rollouts_.size(), link_model_.history.size());
  return common::ok_status();
}

void OrchestratorService::set_publisher(Publisher* publisher) {
  std::lock_guard lock(state_mutex_);
  publisher_ = publisher;
}

void OrchestratorService::on_message(const std::string& topic, const std::string& payload) {
  auto parsed = options_.topics.parse(topic);
  if (!parsed) {
    ++messages_rejected_;
    log_->debug("ignoring message on {}: {}", topic, parsed.error().message);
    return;
  }
  if (!common::device_publishes(parsed->channel)) return;
  // Decoded once, here on the transport's thread; the worker uses the decoded message.
  auto message = decode_message(parsed->channel, parsed->device, payload);
  if (!message) {
    ++messages_rejected_;
    log_->warn("rejected message from {} on {}: {}", parsed->device.str(), topic, message.error().message);
    return;
  }
  if (auto* request = std::get_if<v1::ChunkRequest>(&*message)) {
    bool queued = false;
    {
      std::lock_guard lock(chunk_mutex_);
      if (chunk_requests_.size() < kMaxQueuedChunkRequests) {
        chunk_requests_.push_back(ChunkWork{parsed->device, std::move(*request)});
        queued = true;
      }
    }
    if (queued) {
      chunk_cv_.notify_one();
    } else {
      ++chunk_requests_dropped_;
    }
    return;
  }
  {
    std::lock_guard lock(inbox_mutex_);
    inbox_.push_back(Inbound{parsed->device, parsed->channel, std::move(message).value()});
  }
  inbox_cv_.notify_one();
}

void OrchestratorService::wait_for_input(std::chrono::milliseconds timeout) {
  std::unique_lock lock(inbox_mutex_);
  inbox_cv_.wait_for(lock, timeout, [&] { return !inbox_.empty(); });
}

std::size_t OrchestratorService::serve_chunk_requests(std::chrono::milliseconds wait) {
  std::deque<ChunkWork> batch;
  {
    std::unique_lock lock(chunk_mutex_);
    chunk_cv_.wait_for(lock, wait, [&] { return !chunk_requests_.empty(); });
    batch.swap(chunk_requests_);
  }
  for (const ChunkWork& work : batch) handle_chunk_request(work.device, work.request);
  return batch.size();
}

void OrchestratorService::handle_chunk_request(const common::DeviceId& device,
                                               const v1::ChunkRequest& request) {
  // Not under state_mutex_: chunk serving must not wait for run_once's commit.
  Publisher* publisher = publisher_.load();
  if (publisher == nullptr) return;
  const std::string topic = options_.topics.device_topic(device, Channel::kChunk);
  // Streamed: 256 chunks of up to 1 MiB are never held at once.
  const auto summary = common::respond_to_chunk_request(
      request, common::ArtifactStoreChunkSource(artifacts_),
      common::ChunkBudget{kMaxChunksPerRequest, common::kUnlimitedChunkBytes},
      [&](v1::ChunkData&& chunk) { publisher->publish(topic, common::encode(chunk), 1, 0); });
  chunks_served_ += summary.served;
  chunk_bytes_served_ += summary.served_bytes;
  if (summary.read_error) {
    log_->warn("reading chunks of {} for {}: {}", request.artifact_id().substr(0, 64), device.str(),
               summary.read_error->message);
  }
}

DeviceRecord& OrchestratorService::device_record(const std::string& id, Millis now) {
  auto it = devices_.find(id);
  if (it == devices_.end()) {
    DeviceRecord d;
    d.facts.id = id;
    d.registered_ms = now;
    it = devices_.emplace(id, std::move(d)).first;
    log_->info("registered device {}", id);
  }
  dirty_devices_.insert(id);
  return it->second;
}

// A progress report, or the last outcome a device's inventory repeats: both are judged alike.
void OrchestratorService::ingest_progress(const std::string& id, const v1::Progress& p, Millis now) {
  DeviceRecord& d = device_record(id, now);
  d.facts.last_seen_ms = now;
  d.facts.online = true;
  DeviceFacts& facts = fleet_.devices[id];
  facts.last_seen_ms = now;
  facts.online = true;
  if (facts.id.empty()) {
    facts.id = id;
    ++fleet_.generation;
  }
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
      const auto rate =
          link_model_.measured_rate.count(id) ? link_model_.measured_rate[id] : options_.default_link_rate;
      const Millis transfer = static_cast<Millis>(static_cast<double>(after->bytes_total) * 1000.0 /
                                                  static_cast<double>(std::max<std::uint64_t>(rate, 1)));
      const Millis fixed = std::max<Millis>(0, total - transfer);
      link_model_.measured_fixed_ms =
          link_model_.measured_fixed_ms == 0 ? fixed : (link_model_.measured_fixed_ms * 7 + fixed) / 8;
    }
  }
}

void OrchestratorService::handle(const Inbound& in, Millis now) {
  const std::string& id = in.device.str();
  switch (in.channel) {
    case Channel::kInventory: {
      const auto* inv = std::get_if<v1::Inventory>(&in.message);
      if (inv == nullptr) return;
      DeviceRecord& d = device_record(id, now);
      d.facts.hardware_type = inv->hardware_type();
      d.facts.time_zone = inv->time_zone();
      d.facts.artifact_id = inv->artifact_id();
      d.facts.version = inv->version();
      auto tags = inv->attributes().find("tags");
      d.facts.tags = tags == inv->attributes().end() ? std::vector<std::string>{} : split_list(tags->second);
      auto group = inv->attributes().find("group");
      d.facts.group = group == inv->attributes().end() ? std::string() : group->second;
      if (auto rate = inv->attributes().find("link_rate"); rate != inv->attributes().end())
        link_model_.nominal_rate[id] = std::strtoull(rate->second.c_str(), nullptr, 10);
      d.facts.online = true;
      d.facts.last_seen_ms = now;
      d.client_version = inv->client_version();
      d.security_counter = inv->security_counter();
      d.free_bytes = inv->free_bytes();
      d.pending_deployment_id = inv->pending_deployment_id();
      fleet_.devices[id] = d.facts;
      ++fleet_.generation;
      pending_events_.push_back(EventRecord{0, now, id, inv->pending_deployment_id(), "inventory",
                                            "running " + inv->version() + " (" + inv->artifact_id() + ")"});
      // The outcome the inventory repeats is judged first, so that a report that arrives after
      // the inventory (or never) cannot turn a finished update into a lost command. Only while it
      // can matter: the device works on nothing and its member of that rollout is still open.
      // Otherwise it is old news (the inventory of the next update's start repeats the previous
      // outcome) and must not touch the device's phase or its event log.
      if (inv->has_last_outcome() && inv->pending_deployment_id().empty()) {
        const Rollout* r = find_rollout(inv->last_outcome().deployment_id());
        const Member* m = r != nullptr ? r->find_member(id) : nullptr;
        if (m != nullptr && !is_terminal(m->state)) {
          v1::Progress outcome = inv->last_outcome();
          outcome.set_device_id(id);
          ingest_progress(id, outcome, now);
        }
      }
      auto claim = fleet_.claims.find(id);
      if (claim != fleet_.claims.end()) {
        if (Rollout* r = find_rollout(claim->second)) {
          apply(*r, engine_.on_inventory(*r, fleet_.devices[id], *inv, now), now);
        }
      }
      break;
    }
    case Channel::kProgress: {
      const auto* p = std::get_if<v1::Progress>(&in.message);
      if (p == nullptr) return;
      ++reports_ingested_;
      ingest_progress(id, *p, now);
      break;
    }
    case Channel::kPresence: {
      const auto* p = std::get_if<v1::Presence>(&in.message);
      if (p == nullptr) return;
      DeviceRecord& d = device_record(id, now);
      d.facts.online = p->online();
      d.facts.last_seen_ms = now;
      if (!p->client_version().empty()) d.client_version = p->client_version();
      if (!fleet_.devices.count(id)) ++fleet_.generation;
      fleet_.devices[id] = d.facts;
      pending_events_.push_back(EventRecord{0, now, id, "", "presence", p->online() ? "online" : "offline"});
      break;
    }
    case Channel::kLog: {
      const auto* batch = std::get_if<v1::LogBatch>(&in.message);
      if (batch == nullptr) return;
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
      break;
    }
    default:
      break;
  }
}

std::vector<const Rollout*> OrchestratorService::unresolved_rollouts() const {
  std::vector<const Rollout*> out;
  for (const auto& [id, r] : rollouts_) {
    if (is_active(r.state) && !r.targets_resolved) out.push_back(&r);
  }
  return out;
}

Rollout* OrchestratorService::find_rollout(const std::string& id) {
  auto it = rollouts_.find(id);
  return it == rollouts_.end() ? nullptr : &it->second;
}

void OrchestratorService::apply(Rollout& r, const Decisions& decisions, Millis now) {
  touched_rollouts_.insert(r.id);
  // A wave start sends the same manifest to every member: read each artifact's once per call.
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
    pending_events_.push_back(
        EventRecord{0, now, d.device_id, r.id, "command", what + " (" + d.command_id + ")"});
    outbox_.push_back(Outbound{options_.topics.device_topic(*device, Channel::kCommand), common::encode(cmd),
                               static_cast<std::uint32_t>((r.spec.command_ttl_ms + 999) / 1000)});
  }
}

StoreBatch OrchestratorService::unsaved_batch() {
  StoreBatch batch;
  batch.devices.reserve(dirty_devices_.size());
  for (const std::string& id : dirty_devices_) batch.devices.push_back(devices_[id]);
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
  return batch;
}

Status OrchestratorService::persist(Millis now) {
  const StoreBatch batch = unsaved_batch();
  auto st = store_->write(batch, now);
  if (!st) {
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
  return st;
}

void OrchestratorService::flush_outbox() {
  if (outbox_.empty()) return;
  {
    std::lock_guard lock(command_mutex_);
    for (Outbound& o : outbox_) commands_.push_back(std::move(o));
  }
  outbox_.clear();
  command_cv_.notify_one();
}

std::size_t OrchestratorService::send_commands(std::chrono::milliseconds wait) {
  std::deque<Outbound> batch;
  {
    std::unique_lock lock(command_mutex_);
    command_cv_.wait_for(lock, wait, [&] { return !commands_.empty(); });
    batch.swap(commands_);
  }
  // Not under state_mutex_. Without a publisher (disconnected, shutting down) a command is
  // dropped: level-triggered dispatch repairs it when the device next reports.
  Publisher* publisher = publisher_.load();
  for (const Outbound& o : batch) {
    if (publisher == nullptr) break;
    publisher->publish(o.topic, o.payload, 1, o.expiry_seconds);
    ++commands_sent_;
  }
  return batch.size();
}

std::size_t OrchestratorService::run_once(Millis now) {
  std::deque<Inbound> batch;
  {
    std::lock_guard lock(inbox_mutex_);
    batch.swap(inbox_);
  }
  std::lock_guard lock(state_mutex_);
  for (const Inbound& in : batch) handle(in, now);
  const auto tickable = [](const Rollout& r) {
    return r.state == RolloutState::kRunning || r.state == RolloutState::kPaused ||
           r.state == RolloutState::kRollingBack;
  };
  if (now - last_tick_ms_ >= options_.tick_interval_ms || now < last_tick_ms_) {
    last_tick_ms_ = now;
    for (auto& [id, r] : rollouts_) {
      if (tickable(r)) apply(r, engine_.tick(r, fleet_, now), now);
    }
  } else {
    // A device that just finished may close its wave: its gate, the next wave's commands and the
    // rollout's end follow at once, not up to a tick_interval later.
    for (const std::string& id : settled_rollouts_) {
      if (Rollout* r = find_rollout(id); r != nullptr && tickable(*r))
        apply(*r, engine_.tick(*r, fleet_, now), now);
    }
  }
  settled_rollouts_.clear();
  // Commands go out only after the state that produced them is durable.
  if (persist(now)) flush_outbox();
  return batch.size();
}

Status OrchestratorService::audit_now(const std::string& actor, const std::string& action,
                                      const std::string& detail, Millis now) {
  pending_audit_.push_back(AuditRecord{actor, action, detail});
  return persist(now);
}

OrchestratorService::UnsavedMark OrchestratorService::mark_unsaved() const {
  return UnsavedMark{pending_events_.size(), pending_audit_.size(), outbox_.size()};
}

void OrchestratorService::drop_unsaved_since(const UnsavedMark& mark) {
  const auto drop = [](auto& queued, std::size_t keep) {
    if (queued.size() > keep) queued.erase(queued.begin() + static_cast<std::ptrdiff_t>(keep), queued.end());
  };
  drop(pending_events_, mark.events);
  drop(pending_audit_, mark.audit);
  drop(outbox_, mark.outbox);
}

std::shared_ptr<const common::TrustStore> OrchestratorService::trusted_keys() const {
  std::lock_guard lock(trust_mutex_);
  return trust_;
}

Status OrchestratorService::reload_trusted_keys() {
  const std::filesystem::path& path = options_.trusted_keys_path;
  if (path.empty()) return Error(Errc::kInvalidArgument, "no trusted_keys path to read");
  auto fresh = std::make_shared<common::TrustStore>();
  if (auto st = fresh->load(path); !st) {
    log_->warn("trusted keys not reloaded, the ones read before stay: {}: {}", path.string(),
               st.error().message);
    return st.error().with_context("trusted_keys " + path.string());
  }
  {
    std::lock_guard lock(trust_mutex_);
    trust_ = std::move(fresh);
  }
  log_->info("trusted keys reloaded from {}", path.string());
  return common::ok_status();
}

ApiResult OrchestratorService::import_artifact(const std::filesystem::path& bundle, const std::string& actor,
                                               Millis now) {
  auto manifest = artifacts_.import_bundle(bundle, *trusted_keys());
  if (!manifest && manifest.error().code == Errc::kUntrustedKey && !options_.trusted_keys_path.empty()) {
    // A key added since the keys were read (the development key `fotactl deploy` creates on first
    // use) is trusted without a restart: read them again and try once more.
    if (reload_trusted_keys()) manifest = artifacts_.import_bundle(bundle, *trusted_keys());
  }
  if (!manifest) {
    std::lock_guard lock(state_mutex_);
    pending_audit_.push_back(AuditRecord{actor, "artifact.refused", manifest.error().message});
    (void)persist(now);
    Error e = manifest.error();
    e.message = "bundle refused: " + e.message;
    if (e.code == Errc::kUntrustedKey) {
      const std::filesystem::path& keys = options_.trusted_keys_path;
      std::error_code ec;
      if (keys.empty()) {
        e.message += "; sign it with a key listed in the orchestrator's trusted_keys";
      } else if (std::filesystem::is_directory(keys, ec)) {
        e.message += "; copy its public key into the trusted_keys directory " + keys.string() +
                     " (the .pub file beside the signing key; read at the next upload, no restart) or "
                     "sign it with a key that is there";
      } else {
        e.message += "; trusted_keys is the single key file " + keys.string() +
                     ": sign it with that key, or point trusted_keys at a directory holding both public "
                     "keys (a config change: restart once; a directory is re-read without one)";
      }
    }
    return api_error(e);
  }
  (void)artifacts_.manifest(manifest->artifact_id());  // kept in memory before any use under the lock
  std::lock_guard lock(state_mutex_);
  if (auto st = audit_now(actor, "artifact.upload",
                          manifest->artifact_id() + " " + manifest->name() + " " + manifest->version(), now);
      !st) {
    return api_error(st.error());
  }
  return manifest_json(*manifest);
}

ApiResult OrchestratorService::list_artifacts() {
  json out = json::array();
  for (const std::string& id : artifacts_.list()) {
    auto m = artifacts_.manifest(id);
    if (m) out.push_back(manifest_json(*m));
  }
  return out;
}

ApiResult OrchestratorService::get_artifact(const std::string& id) {
  auto m = artifacts_.manifest(id);
  if (!m)
    return ApiError{404,
                    "artifact '" + id + "' is not uploaded; `fotactl artifact list` shows the uploaded ones"};
  return manifest_json(*m);
}

ApiResult OrchestratorService::list_devices() {
  std::lock_guard lock(state_mutex_);
  std::vector<const DeviceRecord*> sorted;
  sorted.reserve(devices_.size());
  for (const auto& [id, d] : devices_) sorted.push_back(&d);
  std::sort(sorted.begin(), sorted.end(), [](auto* a, auto* b) { return a->facts.id < b->facts.id; });
  json out = json::array();
  for (const DeviceRecord* d : sorted) {
    json j = device_json(*d);
    auto claim = fleet_.claims.find(d->facts.id);
    j["rollout"] = claim == fleet_.claims.end() ? "" : claim->second;
    out.push_back(std::move(j));
  }
  return out;
}

ApiResult OrchestratorService::get_device(const std::string& id) {
  std::lock_guard lock(state_mutex_);
  auto it = devices_.find(id);
  if (it == devices_.end())
    return ApiError{404,
                    "device '" + id + "' is not registered; `fotactl device list` shows the known devices"};
  json j = device_json(it->second);
  auto claim = fleet_.claims.find(id);
  j["rollout"] = claim == fleet_.claims.end() ? "" : claim->second;
  auto events = store_->events(id, "", 20);
  json ev = json::array();
  if (events) {
    for (const EventRecord& e : *events) {
      ev.push_back({{"time", format_timestamp(e.time_ms)},
                    {"kind", e.kind},
                    {"rollout", e.rollout_id},
                    {"detail", e.detail}});
    }
  }
  j["recent_events"] = ev;
  return j;
}

ApiResult OrchestratorService::device_logs(const std::string& id, std::int64_t after, std::size_t limit) {
  {
    std::lock_guard lock(state_mutex_);
    if (!devices_.count(id)) return ApiError{404, "device '" + id + "' is not registered"};
  }
  auto logs = store_->logs(id, after, std::min<std::size_t>(limit, 1000));
  if (!logs) return api_error(logs.error());
  json out = json::array();
  for (const LogRecord& l : *logs) {
    out.push_back({{"id", l.id},
                   {"time", format_timestamp(l.time_ms)},
                   {"level", l.level},
                   {"message", l.message},
                   {"source", l.source}});
  }
  return out;
}

ApiResult OrchestratorService::create_rollout(const std::string& spec_text, const std::string& actor,
                                              Millis now) {
  auto spec = parse_rollout_spec(spec_text);
  if (!spec) return api_error(spec.error());
  if (!artifacts_.contains(spec->artifact_id)) {
    return ApiError{404,
                    "artifact " + spec->artifact_id +
                        " is not uploaded; upload its bundle first with `fotactl artifact upload BUNDLE`"};
  }
  std::lock_guard lock(state_mutex_);
  std::string id = options_.new_rollout_id();
  while (rollouts_.count(id)) id = options_.new_rollout_id();
  auto rollout = RolloutEngine::create(id, *spec, now);
  if (!rollout) return api_error(rollout.error());
  if (auto st = RolloutEngine::check_target(*rollout, fleet_, unresolved_rollouts()); !st)
    return api_error(st.error());
  const UnsavedMark mark = mark_unsaved();
  Rollout& r = rollouts_.emplace(id, std::move(rollout).value()).first->second;
  touched_rollouts_.insert(id);
  if (auto st =
          audit_now(actor, "rollout.create", id + " " + r.spec.name + " artifact " + r.spec.artifact_id, now);
      !st) {
    // Not durable: the request failed and nothing changed, not even the audit line.
    rollouts_.erase(id);
    touched_rollouts_.erase(id);
    drop_unsaved_since(mark);
    return api_error(st.error());
  }
  return rollout_json(r, now, false);
}

ApiResult OrchestratorService::rollout_action(const std::string& id, const std::string& action,
                                              const std::string& actor, Millis now) {
  std::lock_guard lock(state_mutex_);
  Rollout* r = find_rollout(id);
  if (r == nullptr)
    return ApiError{404, "rollout '" + id + "' does not exist; `fotactl rollout status` lists them"};
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
    return ApiError{400, "unknown action '" + action + "'; use start, pause, resume, abort or rollback"};
  }
  if (!result) return api_error(result.error());
  apply(*r, *result, now);
  if (action == "start") apply(*r, engine_.tick(*r, fleet_, now), now);
  if (auto st = audit_now(actor, "rollout." + action, id, now); !st) {
    // Not durable: the request failed and nothing changed — the rollout, its claims on devices,
    // and what the action queued (its audit line, the engine's decisions, command events and the
    // commands themselves) are all taken back. What was queued before the action stays queued.
    *r = before;
    fleet_.claims = claims_before;
    drop_unsaved_since(mark);
    return api_error(st.error());
  }
  flush_outbox();
  return rollout_json(*r, now, false);
}

void OrchestratorService::record_history(Rollout& r) {
  std::uint64_t image_size = 0;
  bool size_known = false;
  auto& history = link_model_.history;
  for (Member& m : r.members) {
    if (!m.dirty || m.sampled || !becomes_history(m)) continue;
    if (!size_known) {  // read once per call, and only when an update has finished
      if (auto manifest = artifacts_.manifest(r.spec.artifact_id)) image_size = manifest->image_size();
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

RolloutPrediction OrchestratorService::predict(const Rollout& r, Millis now) {
  std::uint64_t size = 0;
  if (auto m = artifacts_.manifest(r.spec.artifact_id)) size = m->image_size();
  return predict_rollout(r, fleet_, size, link_model_, now);
}

json OrchestratorService::rollout_json(const Rollout& r, Millis now, bool with_members) {
  json j;
  j["id"] = r.id;
  j["name"] = r.spec.name;
  j["artifact"] = r.spec.artifact_id;
  j["state"] = std::string(rollout_state_name(r.state));
  j["reason"] = r.reason;
  j["created_at"] = format_timestamp(r.created_ms);
  j["started_at"] = r.started_ms ? format_timestamp(r.started_ms) : "";
  j["finished_at"] = r.finished_ms ? format_timestamp(r.finished_ms) : "";
  // From the operator's start (or the spec's later start_at) to the end, as the plan counts it.
  if (r.finished_ms > 0 && r.started_ms > 0)
    j["duration_ms"] = r.finished_ms - std::max(r.started_ms, r.spec.start_at_ms.value_or(r.started_ms));
  j["spec"] = json::parse(rollout_spec_to_json(r.spec));
  json waves = json::array();
  std::map<std::string, std::size_t> totals;
  for (std::size_t w = 0; w < r.waves.size(); ++w) {
    std::map<std::string, std::size_t> counts;
    std::size_t size = 0;
    std::uint64_t bytes_done = 0, bytes_total = 0;
    for (const Member& m : r.members) {
      if (m.wave != static_cast<int>(w)) continue;
      ++size;
      ++counts[std::string(member_state_name(m.state))];
      ++totals[std::string(member_state_name(m.state))];
      bytes_done += m.bytes_done;
      bytes_total += m.bytes_total;
    }
    const WaveState& state = r.waves[w];
    waves.push_back({{"index", w + 1},
                     {"status", std::string(wave_status_name(state.status))},
                     {"started_at", state.started_ms ? format_timestamp(state.started_ms) : ""},
                     {"finished_at", state.finished_ms ? format_timestamp(state.finished_ms) : ""},
                     {"devices", size},
                     {"counts", counts},
                     {"bytes_done", bytes_done},
                     {"bytes_total", bytes_total}});
  }
  j["waves"] = waves;
  j["counts"] = totals;
  j["devices"] = r.members.size();
  if (r.state == RolloutState::kRunning || r.state == RolloutState::kCreated ||
      r.state == RolloutState::kPaused) {
    const RolloutPrediction p = predict(r, now);
    j["eta"] = {{"end_at", format_timestamp(p.end_ms)},
                {"remaining_seconds", (p.end_ms - now) / 1000},
                {"remaining_ms", p.end_ms - now}};
  }
  if (with_members) {
    json members = json::array();
    for (const Member& m : r.members) {
      members.push_back({{"device", m.device_id},
                         {"wave", m.wave + 1},
                         {"state", std::string(member_state_name(m.state))},
                         {"phase", std::string(common::phase_name(m.phase))},
                         {"attempt", m.attempt},
                         {"bytes_done", m.bytes_done},
                         {"bytes_total", m.bytes_total},
                         {"previous_artifact", m.previous_artifact_id},
                         {"error", m.last_error},
                         {"late_joiner", m.late_joiner}});
    }
    j["members"] = members;
  }
  return j;
}

ApiResult OrchestratorService::list_rollouts(Millis now) {
  std::lock_guard lock(state_mutex_);
  json out = json::array();
  for (const auto& [id, r] : rollouts_) out.push_back(rollout_json(r, now, false));
  return out;
}

ApiResult OrchestratorService::get_rollout(const std::string& id, Millis now) {
  std::lock_guard lock(state_mutex_);
  Rollout* r = find_rollout(id);
  if (r == nullptr)
    return ApiError{404, "rollout '" + id + "' does not exist; `fotactl rollout status` lists them"};
  return rollout_json(*r, now, true);
}

ApiResult OrchestratorService::plan_rollout(const std::string& id, Millis now) {
  std::lock_guard lock(state_mutex_);
  Rollout* r = find_rollout(id);
  if (r == nullptr) return ApiError{404, "rollout '" + id + "' does not exist"};
  const RolloutPrediction p = predict(*r, now);
  json waves = json::array();
  for (std::size_t w = 0; w < p.waves.size(); ++w) {
    waves.push_back({{"index", w + 1},
                     {"devices", p.waves[w].devices},
                     {"start_at", format_timestamp(p.waves[w].start_ms)},
                     {"end_at", format_timestamp(p.waves[w].end_ms)},
                     {"duration_seconds", (p.waves[w].end_ms - p.waves[w].start_ms) / 1000}});
  }
  std::uint64_t size = 0;
  if (auto m = artifacts_.manifest(r->spec.artifact_id)) size = m->image_size();
  return json{
      {"rollout", id},
      {"start_at", format_timestamp(p.start_ms)},
      {"end_at", format_timestamp(p.end_ms)},
      {"duration_seconds", p.duration_ms / 1000},
      {"duration_ms", p.duration_ms},
      {"devices", p.devices},
      {"devices_with_measured_rate", p.devices_with_history},
      {"history_samples", p.history_samples},
      {"image_size", size},
      {"assumed_rate_bytes_per_second", link_model_.default_rate_bytes_per_second},
      {"fixed_seconds_per_device",
       (link_model_.measured_fixed_ms > 0 ? link_model_.measured_fixed_ms : link_model_.default_fixed_ms) /
           1000},
      {"waves", waves}};
}

ApiResult OrchestratorService::events(const std::string& device, const std::string& rollout,
                                      std::size_t limit) {
  auto events = store_->events(device, rollout, std::min<std::size_t>(limit, 10'000));
  if (!events) return api_error(events.error());
  json out = json::array();
  for (const EventRecord& e : *events) {
    out.push_back({{"id", e.id},
                   {"time", format_timestamp(e.time_ms)},
                   {"device", e.device_id},
                   {"rollout", e.rollout_id},
                   {"kind", e.kind},
                   {"detail", e.detail}});
  }
  return out;
}

ApiResult OrchestratorService::audit(std::int64_t after, std::size_t limit) {
  auto entries = store_->audit_entries(after, std::min<std::size_t>(limit, 100'000));
  if (!entries) return api_error(entries.error());
  json out = json::array();
  for (const AuditEntry& e : *entries) {
    out.push_back({{"seq", e.seq},
                   {"time_ms", e.time_ms},
                   {"time", format_timestamp(e.time_ms)},
                   {"actor", e.actor},
                   {"action", e.action},
                   {"detail", e.detail},
                   {"prev_hash", e.prev_hash},
                   {"hash", e.hash}});
  }
  return out;
}

std::string OrchestratorService::metrics(Millis now) {
  std::lock_guard lock(state_mutex_);
  std::ostringstream out;
  std::size_t online = 0;
  std::map<std::string, std::size_t> phases;
  for (const auto& [id, d] : devices_) {
    online += d.facts.online ? 1 : 0;
    ++phases[d.last_phase.empty() ? "unknown" : d.last_phase];
  }
  out << "# HELP fota_devices Registered devices by presence.\n# TYPE fota_devices gauge\n";
  out << "fota_devices{presence=\"online\"} " << online << "\n";
  out << "fota_devices{presence=\"offline\"} " << devices_.size() - online << "\n";
  out << "# HELP fota_devices_by_phase Devices by the phase of their last progress report.\n"
         "# TYPE fota_devices_by_phase gauge\n";
  for (const auto& [phase, n] : phases)
    out << "fota_devices_by_phase{phase=\"" << phase << "\"} " << n << "\n";
  std::map<std::string, std::size_t> states;
  for (const char* s :
       {"created", "running", "paused", "completed", "aborted", "rolling_back", "rolled_back"})
    states[s] = 0;
  for (const auto& [id, r] : rollouts_) ++states[std::string(rollout_state_name(r.state))];
  out << "# HELP fota_rollouts Rollouts by state.\n# TYPE fota_rollouts gauge\n";
  for (const auto& [state, n] : states) out << "fota_rollouts{state=\"" << state << "\"} " << n << "\n";
  out << "# HELP fota_rollout_eta_seconds Predicted seconds until an active rollout finishes.\n"
         "# TYPE fota_rollout_eta_seconds gauge\n";
  for (const auto& [id, r] : rollouts_) {
    if (r.state != RolloutState::kRunning) continue;
    out << "fota_rollout_eta_seconds{rollout=\"" << id << "\"} " << (predict(r, now).end_ms - now) / 1000
        << "\n";
  }
  // A scrape reads and changes nothing: rates are the scraper's business (rate() over the counters).
  const std::uint64_t reports = reports_ingested_.load();
  out << "# TYPE fota_chunks_served_total counter\nfota_chunks_served_total " << chunks_served_.load()
      << "\n";
  out << "# TYPE fota_chunk_bytes_served_total counter\nfota_chunk_bytes_served_total "
      << chunk_bytes_served_.load() << "\n";
  out << "# TYPE fota_progress_reports_total counter\nfota_progress_reports_total " << reports << "\n";
  out << "# TYPE fota_commands_sent_total counter\nfota_commands_sent_total " << commands_sent_.load()
      << "\n";
  out << "# TYPE fota_messages_rejected_total counter\nfota_messages_rejected_total "
      << messages_rejected_.load() << "\n";
  out << "# HELP fota_chunk_requests_dropped_total Chunk requests dropped because the queue was full.\n"
         "# TYPE fota_chunk_requests_dropped_total counter\nfota_chunk_requests_dropped_total "
      << chunk_requests_dropped_.load() << "\n";
  return out.str();
}

}  // namespace fota::orchestrator

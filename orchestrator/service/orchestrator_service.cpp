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
      catalog_(artifacts_),
      trust_(std::make_shared<const common::TrustStore>(options_.trust)),
      core_(FleetCoreOptions{options_.topics, options_.default_link_rate, options_.default_device_time_ms,
                             options_.tick_interval_ms, options_.new_rollout_id},
            catalog_, log_) {}

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
  auto rollouts = store_->load_rollouts();
  if (!rollouts) return rollouts.error();
  // Read each rollout's manifest now, not first under the state lock (the store keeps it).
  for (const Rollout& r : *rollouts) (void)artifacts_.manifest(r.spec.artifact_id);
  // Only the latest kHistoryKept are ever read: the table keeps no more (here and in commits).
  if (auto st = store_->prune_update_samples(kHistoryKept); !st) return st;
  auto history = store_->update_samples(kHistoryKept);
  if (!history) return history.error();
  const std::size_t device_count = devices->size(), rollout_count = rollouts->size();
  const std::size_t history_count = history->size();
  core_.restore(std::move(devices).value(), std::move(rollouts).value(), std::move(history).value());
  log_->info("loaded {} device(s), {} rollout(s) and {} finished update(s) as prediction history",
             device_count, rollout_count, history_count);
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
    inbox_.push_back(Inbound{parsed->device, std::move(message).value()});
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

SaveBatch OrchestratorService::save_at(Millis now) {
  return [this, now](const StoreBatch& batch) { return store_->write(batch, now); };
}

void OrchestratorService::queue_commands() {
  std::vector<DeviceCommand> ready = core_.take_commands();
  if (ready.empty()) return;
  {
    std::lock_guard lock(command_mutex_);
    for (DeviceCommand& c : ready) commands_.push_back(std::move(c));
  }
  command_cv_.notify_one();
}

std::size_t OrchestratorService::send_commands(std::chrono::milliseconds wait) {
  std::deque<DeviceCommand> batch;
  {
    std::unique_lock lock(command_mutex_);
    command_cv_.wait_for(lock, wait, [&] { return !commands_.empty(); });
    batch.swap(commands_);
  }
  // Not under state_mutex_. Without a publisher (disconnected, shutting down) a command is
  // dropped: level-triggered dispatch repairs it when the device next reports.
  Publisher* publisher = publisher_.load();
  for (const DeviceCommand& o : batch) {
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
  for (const Inbound& in : batch) core_.on_message(in.device, in.message, now);
  core_.tick(now);
  // Commands go out only after the state that produced them is durable.
  if (core_.commit(save_at(now))) queue_commands();
  return batch.size();
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
    {
      std::lock_guard lock(state_mutex_);
      if (core_.record(AuditRecord{actor, "artifact.refused", manifest.error().message}, save_at(now)))
        queue_commands();
    }
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
  if (auto st = core_.record(
          AuditRecord{actor, "artifact.upload",
                      manifest->artifact_id() + " " + manifest->name() + " " + manifest->version()},
          save_at(now));
      !st) {
    return api_error(st.error());
  }
  queue_commands();
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
  json out = json::array();
  for (const DeviceRecord& d : core_.devices()) {
    json j = device_json(d);
    j["rollout"] = core_.owner(d.facts.id);
    out.push_back(std::move(j));
  }
  return out;
}

ApiResult OrchestratorService::get_device(const std::string& id) {
  std::lock_guard lock(state_mutex_);
  auto d = core_.device(id);
  if (!d)
    return ApiError{404,
                    "device '" + id + "' is not registered; `fotactl device list` shows the known devices"};
  json j = device_json(*d);
  j["rollout"] = core_.owner(id);
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
    if (!core_.has_device(id)) return ApiError{404, "device '" + id + "' is not registered"};
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
  auto r = core_.create_rollout(*spec, actor, now, save_at(now));
  if (!r) return api_error(r.error());
  queue_commands();
  return rollout_json(**r, now, false);
}

ApiResult OrchestratorService::rollout_action(const std::string& id, const std::string& action,
                                              const std::string& actor, Millis now) {
  std::lock_guard lock(state_mutex_);
  auto r = core_.rollout_action(id, action, actor, now, save_at(now));
  if (!r) return api_error(r.error());
  queue_commands();
  return rollout_json(**r, now, false);
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
    const RolloutPrediction p = core_.predict(r, now);
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
  for (const auto& [id, r] : core_.rollouts()) out.push_back(rollout_json(r, now, false));
  return out;
}

ApiResult OrchestratorService::get_rollout(const std::string& id, Millis now) {
  std::lock_guard lock(state_mutex_);
  const Rollout* r = core_.rollout(id);
  if (r == nullptr)
    return ApiError{404, "rollout '" + id + "' does not exist; `fotactl rollout status` lists them"};
  return rollout_json(*r, now, true);
}

ApiResult OrchestratorService::plan_rollout(const std::string& id, Millis now) {
  std::lock_guard lock(state_mutex_);
  const Rollout* r = core_.rollout(id);
  if (r == nullptr) return ApiError{404, "rollout '" + id + "' does not exist"};
  const RolloutPrediction p = core_.predict(*r, now);
  json waves = json::array();
  for (std::size_t w = 0; w < p.waves.size(); ++w) {
    waves.push_back({{"index", w + 1},
                     {"devices", p.waves[w].devices},
                     {"start_at", format_timestamp(p.waves[w].start_ms)},
                     {"end_at", format_timestamp(p.waves[w].end_ms)},
                     {"duration_seconds", (p.waves[w].end_ms - p.waves[w].start_ms) / 1000}});
  }
  const std::uint64_t size = catalog_.image_size(r->spec.artifact_id);
  const LinkModel& link_model = core_.link_model();
  return json{{"rollout", id},
              {"start_at", format_timestamp(p.start_ms)},
              {"end_at", format_timestamp(p.end_ms)},
              {"duration_seconds", p.duration_ms / 1000},
              {"duration_ms", p.duration_ms},
              {"devices", p.devices},
              {"devices_with_measured_rate", p.devices_with_history},
              {"history_samples", p.history_samples},
              {"image_size", size},
              {"assumed_rate_bytes_per_second", link_model.default_rate_bytes_per_second},
              {"fixed_seconds_per_device", (link_model.measured_fixed_ms > 0 ? link_model.measured_fixed_ms
                                                                             : link_model.default_fixed_ms) /
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
  FleetSummary s;
  {
    std::lock_guard lock(state_mutex_);
    s = core_.summary(now);
  }
  std::ostringstream out;
  out << "# HELP fota_devices Registered devices by presence.\n# TYPE fota_devices gauge\n";
  out << "fota_devices{presence=\"online\"} " << s.online << "\n";
  out << "fota_devices{presence=\"offline\"} " << s.devices - s.online << "\n";
  out << "# HELP fota_devices_by_phase Devices by the phase of their last progress report.\n"
         "# TYPE fota_devices_by_phase gauge\n";
  for (const auto& [phase, n] : s.devices_by_phase)
    out << "fota_devices_by_phase{phase=\"" << phase << "\"} " << n << "\n";
  out << "# HELP fota_rollouts Rollouts by state.\n# TYPE fota_rollouts gauge\n";
  for (const auto& [state, n] : s.rollouts_by_state)
    out << "fota_rollouts{state=\"" << state << "\"} " << n << "\n";
  out << "# HELP fota_rollout_eta_seconds Predicted seconds until an active rollout finishes.\n"
         "# TYPE fota_rollout_eta_seconds gauge\n";
  for (const auto& [id, remaining_ms] : s.running_rollout_remaining_ms)
    out << "fota_rollout_eta_seconds{rollout=\"" << id << "\"} " << remaining_ms / 1000 << "\n";
  // A scrape reads and changes nothing: rates are the scraper's business (rate() over the counters).
  out << "# TYPE fota_chunks_served_total counter\nfota_chunks_served_total " << chunks_served_.load()
      << "\n";
  out << "# TYPE fota_chunk_bytes_served_total counter\nfota_chunk_bytes_served_total "
      << chunk_bytes_served_.load() << "\n";
  out << "# TYPE fota_progress_reports_total counter\nfota_progress_reports_total " << s.progress_reports
      << "\n";
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

// SPDX-License-Identifier: Apache-2.0
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

namespace {

constexpr std::uint32_t kMaxChunksPerRequest = common::kDefaultMaxChunksPerRequest;
// Chunk requests waiting for serve_chunk_requests(); beyond this they are dropped (and counted):
// the transport's thread never waits, and the device asks again for what it did not get.
constexpr std::size_t kMaxQueuedChunkRequests = 8192;

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
                             options_.tick_interval_ms, options_.new_rollout_id, options_.command_key},
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
  if (!options.command_key) {
    return Error(Errc::kInvalidArgument,
                 "no command key: devices refuse unsigned commands (configure command_key)");
  }
  auto store = open_store(options.store.empty() ? "sqlite:" + (options.data_dir / "state.db").string()
                                                : options.store);
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
  auto revocations = store_->load_revocations();
  if (!revocations) return revocations.error();
  const std::size_t history_count = history->size();
  const std::size_t revoked_count = revocations->size();
  auto tags = store_->load_device_tags();
  if (!tags) return tags.error();
  auto groups = store_->load_groups();
  if (!groups) return groups.error();
  auto webhooks = store_->load_webhooks();
  if (!webhooks) return webhooks.error();
  core_.restore(std::move(devices).value(), std::move(rollouts).value(), std::move(history).value(),
                std::move(revocations).value(), std::move(tags).value(), std::move(groups).value());
  webhooks_ = std::move(webhooks).value();
  {
    std::vector<const Rollout*> loaded;
    for (const auto& [id, rollout] : core_.rollouts()) loaded.push_back(&rollout);
    webhook_watch_.restore(loaded);
  }
  // The broker's deny list follows the store, whatever happened to the file meanwhile.
  if (auto st = write_deny_list(); !st) return st;
  // After a restart the fleet state says what each device may fetch, nothing else.
  for (const auto& [id, rollout] : core_.rollouts()) {
    if (!is_active(rollout.state)) continue;
    for (const Member& m : rollout.members) refresh_fetchable(m.device_id);
  }
  log_->info(
      "loaded {} device(s), {} rollout(s), {} finished update(s) as prediction history and {} revoked "
      "device(s)",
      device_count, rollout_count, history_count, revoked_count);
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
  if (parsed->channel == Channel::kCertificateRequest) {
    auto request = common::decode_device_message<v1::CertificateRequest>(
        parsed->device, payload, common::max_message_bytes(parsed->channel));
    if (!request) {
      ++messages_rejected_;
      log_->warn("rejected certificate request from {}: {}", parsed->device.str(), request.error().message);
      return;
    }
    // Bounded (pki.max_pending_requests) and one per device: a device flooding its csr topic
    // neither grows the queue nor gets more than one request into a batch.
    bool queued = false;
    {
      std::lock_guard lock(inbox_mutex_);
      if (certificate_requests_.size() < options_.max_pending_certificate_requests &&
          certificate_requesters_.insert(parsed->device.str()).second) {
        certificate_requests_.push_back(CertificateWork{parsed->device, std::move(request).value()});
        queued = true;
      }
    }
    if (queued) {
      inbox_cv_.notify_one();
    } else {
      drop_certificate_request(parsed->device.str(),
                               "one of its requests is already waiting, or " +
                                   std::to_string(options_.max_pending_certificate_requests) +
                                   " are (pki.max_pending_requests)");
    }
    return;
  }
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
  inbox_cv_.wait_for(lock, timeout, [&] { return !inbox_.empty() || !certificate_requests_.empty(); });
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

void OrchestratorService::refresh_fetchable(const std::string& device_id) {
  std::string artifact = core_.fetchable_artifact(device_id);
  std::lock_guard lock(fetchable_mutex_);
  if (artifact.empty()) {
    fetchable_.erase(device_id);
  } else {
    fetchable_[device_id] = std::move(artifact);
  }
}

bool OrchestratorService::may_fetch(const std::string& device_id, const std::string& artifact_id) const {
  std::lock_guard lock(fetchable_mutex_);
  auto it = fetchable_.find(device_id);
  return it != fetchable_.end() && it->second == artifact_id;
}

void OrchestratorService::handle_chunk_request(const common::DeviceId& device,
                                               const v1::ChunkRequest& request) {
  // Not under state_mutex_: chunk serving must not wait for run_once's commit.
  Publisher* publisher = publisher_.load();
  if (publisher == nullptr) return;
  const std::string topic = options_.topics.device_topic(device, Channel::kChunk);
  if (!may_fetch(device.str(), request.artifact_id())) {
    // The answer for an artifact the store lacks: the device learns nothing about what exists.
    ++chunk_requests_refused_;
    log_->info("refused chunks of {} to {}: the fleet state does not assign it that artifact",
               request.artifact_id().substr(0, 64), device.str());
    v1::ChunkData reply;
    reply.set_artifact_id(request.artifact_id());
    reply.set_request_id(request.request_id());
    reply.set_status(v1::CHUNK_STATUS_UNKNOWN_ARTIFACT);
    publisher->publish(topic, common::encode(reply), 1, 0);
    return;
  }
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
  // The webhook deliveries of the batch's rollout changes go into the outbox in the same
  // transaction: a change is never saved without them, nor they without it.
  return [this, now](const StoreBatch& batch) {
    if (batch.rollouts.empty()) return store_->write(batch, now);
    std::vector<WebhookNotice> told = webhook_watch_.changes(batch.rollouts);
    std::vector<WebhookDelivery> deliveries;
    for (const WebhookNotice& notice : told) {
      const Rollout* r = core_.rollout(notice.rollout_id);
      if (r == nullptr) continue;
      for (const WebhookRecord& w : webhooks_) {
        if (std::find(w.events.begin(), w.events.end(), notice.event) == w.events.end()) continue;
        WebhookDelivery d;
        char id[20];
        std::snprintf(id, sizeof id, "%016llx", static_cast<unsigned long long>(command_ids_()));
        d.id = "wd-" + std::string(id);
        d.webhook_id = w.id;
        d.event = notice.event;
        d.body = webhook_body(notice, *r, d.id, now);
        d.created_ms = now;
        d.next_attempt_ms = now;
        deliveries.push_back(std::move(d));
      }
    }
    Status st = store_->write(batch, now, deliveries);
    if (st) {
      webhook_watch_.apply(batch.rollouts, told);
      // Not under webhook_mutex_: a sender holds it while it reads the store, which this
      // transaction may still hold. A wake-up lost here is made up by the senders' polling.
      if (!deliveries.empty()) {
        webhook_work_ = true;
        webhook_cv_.notify_all();
      }
    }
    return st;
  };
}

void OrchestratorService::queue_commands() {
  std::vector<DeviceCommand> ready = core_.take_commands();
  if (ready.empty()) return;
  for (const DeviceCommand& c : ready) {
    if (auto parsed = options_.topics.parse(c.topic)) refresh_fetchable(parsed->device.str());
  }
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
  std::deque<CertificateWork> certificate_requests;
  {
    std::lock_guard lock(inbox_mutex_);
    batch.swap(inbox_);
    certificate_requests.swap(certificate_requests_);
    certificate_requesters_.clear();
  }
  std::lock_guard lock(state_mutex_);
  for (const CertificateWork& work : certificate_requests) handle_certificate_request(work, now);
  for (const Inbound& in : batch) core_.on_message(in.device, in.message, now);
  core_.tick(now);
  // Commands go out only after the state that produced them is durable.
  if (core_.commit(save_at(now))) {
    queue_commands();
    // A report may have ended an update (committed, failed) without any command.
    for (const Inbound& in : batch) refresh_fetchable(in.device.str());
  }
  return batch.size() + certificate_requests.size();
}

std::string OrchestratorService::new_command_id() {
  char buf[33];
  std::snprintf(buf, sizeof buf, "%016llx%016llx", static_cast<unsigned long long>(command_ids_()),
                static_cast<unsigned long long>(command_ids_()));
  return "cert-" + std::string(buf);
}

void OrchestratorService::drop_certificate_request(const std::string& device_id, const std::string& why) {
  ++certificate_requests_dropped_;
  // Logged at most every 10 s: the log must not grow at the flooder's rate either.
  const Millis now = std::chrono::duration_cast<std::chrono::milliseconds>(
                         std::chrono::steady_clock::now().time_since_epoch())
                         .count();
  Millis last = certificate_drop_log_ms_.load();
  if (now - last >= 10'000 && certificate_drop_log_ms_.compare_exchange_strong(last, now)) {
    log_->warn(
        "dropped a certificate request of device {}: {}; {} dropped so far "
        "(fota_certificate_requests_dropped_total)",
        device_id, why, certificate_requests_dropped_.load());
  }
}

void OrchestratorService::handle_certificate_request(const CertificateWork& work, Millis now) {
  const std::string& id = work.device.str();
  const std::string request_id = work.request.request_id().substr(0, 64);
  // The signing budget, before anything costs a signature check or an audit entry.
  constexpr Millis kWindowMs = 60'000;
  while (!certificate_work_times_.empty() &&
         (certificate_work_times_.front() <= now - kWindowMs || certificate_work_times_.front() > now)) {
    certificate_work_times_.pop_front();
  }
  if (certificate_work_times_.size() >= options_.max_pending_certificate_requests) {
    drop_certificate_request(id,
                             std::to_string(certificate_work_times_.size()) +
                                 " requests were handled within the last minute (pki.max_pending_requests)");
    return;
  }
  if (auto last = last_signed_ms_.find(id); last != last_signed_ms_.end()) {
    if (now >= last->second && now - last->second < options_.certificate_device_interval_ms) {
      drop_certificate_request(id, "it was signed a certificate " +
                                       std::to_string((now - last->second) / 1000) +
                                       " s ago; a device gets at most one per " +
                                       std::to_string(options_.certificate_device_interval_ms / 1000) + " s");
      return;
    }
  }
  certificate_work_times_.push_back(now);
  auto refuse = [&](const std::string& why) {
    ++certificate_requests_refused_;
    log_->warn("refused certificate request {} of device {}: {}", request_id, id, why);
    if (auto st = core_.record(AuditRecord{"device:" + id, "certificate.refused", request_id + ": " + why},
                               save_at(now));
        st) {
      queue_commands();
    }
  };
  if (!options_.issuing_ca) {
    refuse(
        "no issuing CA configured; set pki.issuing_ca to a directory made by `fotactl pki issue-ca NAME` "
        "to renew device certificates");
    return;
  }
  if (request_id.empty()) {
    refuse("the request has no request_id");
    return;
  }
  if (core_.revocations().count(id) != 0) {
    refuse("the device is revoked");
    return;
  }
  // Proof of possession, P-256 and subject CN = the topic's (authenticated) id, OU = device.
  auto issued = options_.issuing_ca->sign_request(work.request.csr_pem(), id, common::Role::kDevice,
                                                  options_.device_cert_validity);
  if (!issued) {
    refuse(issued.error().message);
    return;
  }
  auto not_after = common::certificate_not_after(issued->cert_pem);
  v1::Command cmd;
  cmd.set_command_id(new_command_id());
  cmd.set_device_id(id);
  cmd.set_issued_at_ms(now);
  cmd.set_expires_at_ms(now + options_.certificate_command_ttl_ms);
  auto* body = cmd.mutable_certificate_issued();
  body->set_request_id(request_id);
  body->set_chain_pem(issued->cert_pem);
  if (not_after) body->set_not_after(*not_after);
  auto payload = common::sign_command(cmd, *options_.command_key);
  if (!payload) {
    refuse("signing the answer: " + payload.error().message);
    return;
  }
  // Audited before it goes out: the record is durable when the device receives its certificate.
  if (auto st = core_.record(AuditRecord{"device:" + id, "certificate.issued",
                                         "serial " + issued->serial_hex + " for request " + request_id},
                             save_at(now));
      !st) {
    ++certificate_requests_refused_;
    log_->error("certificate for {} not sent: the audit record failed: {}", id, st.error().message);
    return;
  }
  queue_commands();
  {
    std::lock_guard lock(command_mutex_);
    commands_.push_back(DeviceCommand{
        options_.topics.device_topic(work.device, Channel::kCommand), std::move(payload).value(),
        static_cast<std::uint32_t>((options_.certificate_command_ttl_ms + 999) / 1000)});
  }
  command_cv_.notify_one();
  ++certificates_issued_;
  if (last_signed_ms_.size() > 4096) {
    // Only entries within the interval matter; the map stays as large as one interval's signings.
    for (auto it = last_signed_ms_.begin(); it != last_signed_ms_.end();) {
      it = now - it->second >= options_.certificate_device_interval_ms ? last_signed_ms_.erase(it)
                                                                       : std::next(it);
    }
  }
  last_signed_ms_[id] = now;
  log_->info("issued certificate serial {} to {} (request {})", issued->serial_hex, id, request_id);
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

common::Result<v1::Manifest> OrchestratorService::import_artifact(const std::filesystem::path& bundle,
                                                                  const std::string& actor, Millis now) {
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
    return e;
  }
  (void)artifacts_.manifest(manifest->artifact_id());  // kept in memory before any use under the lock
  std::lock_guard lock(state_mutex_);
  if (auto st = core_.record(
          AuditRecord{actor, "artifact.upload",
                      manifest->artifact_id() + " " + manifest->name() + " " + manifest->version()},
          save_at(now));
      !st) {
    return st.error();
  }
  queue_commands();
  return manifest;
}

std::vector<v1::Manifest> OrchestratorService::list_artifacts() {
  std::vector<v1::Manifest> out;
  for (const std::string& id : artifacts_.list()) {
    auto m = artifacts_.manifest(id);
    if (m) out.push_back(std::move(m).value());
  }
  return out;
}

Status OrchestratorService::delete_artifact(const std::string& id, const std::string& actor, Millis now) {
  if (!artifacts_.contains(id))
    return Error(Errc::kNotFound, "artifact '" + id.substr(0, 64) +
                                      "' is not uploaded; `fotactl artifact list` shows the uploaded ones");
  std::lock_guard lock(state_mutex_);
  if (const std::string use = artifact_use(id); !use.empty()) {
    return Error(Errc::kConflict, "artifact " + id + " is in use: " + use +
                                      "; abort it (or roll it back) before deleting the artifact");
  }
  if (auto st = core_.record(AuditRecord{actor, "artifact.delete", id}, save_at(now)); !st) return st;
  queue_commands();
  return artifacts_.remove(id);
}

std::string OrchestratorService::artifact_use(const std::string& id) const {
  for (const auto& [rollout_id, r] : core_.rollouts()) {
    if (!is_active(r.state) && r.state != RolloutState::kCompleted) continue;
    std::string use;
    if (r.spec.artifact_id == id) {
      use = "installs it";
    } else if (std::any_of(r.members.begin(), r.members.end(),
                           [&](const Member& m) { return m.previous_artifact_id == id; })) {
      use = "rolls back to it";
    } else {
      continue;
    }
    return "rollout " + rollout_id + " (" + std::string(rollout_state_name(r.state)) + ") " + use;
  }
  return {};
}

common::Result<RetentionReport> OrchestratorService::run_artifact_retention(bool dry_run,
                                                                            const std::string& actor,
                                                                            Millis now) {
  const RetentionRule& rule = options_.artifact_retention;
  if (!rule.enabled()) {
    return Error(
        Errc::kConflict,
        "no retention rule is configured: add artifacts: {retention: {keep_last: N, min_age_days: D}} "
        "to orchestrator.yaml and restart, or delete artifacts one by one with `fotactl artifact "
        "delete ID`");
  }
  // Manifests come from memory (read at upload or start), before the state lock.
  std::vector<RetentionCandidate> candidates;
  for (const v1::Manifest& m : list_artifacts()) {
    candidates.push_back(RetentionCandidate{m.artifact_id(),
                                            m.name(),
                                            m.version(),
                                            {m.compatible_hardware().begin(), m.compatible_hardware().end()},
                                            m.created_at_ms(),
                                            ""});
  }
  std::lock_guard lock(state_mutex_);
  std::map<std::string, std::size_t> running;  // artifact id -> devices that report running it
  for (const DeviceRecord& d : core_.devices()) {
    if (!d.facts.artifact_id.empty()) ++running[d.facts.artifact_id];
  }
  for (RetentionCandidate& c : candidates) {
    c.in_use = artifact_use(c.artifact_id);
    if (c.in_use.empty() && running.count(c.artifact_id))
      c.in_use = std::to_string(running[c.artifact_id]) + " device(s) run it";
  }
  RetentionReport report{dry_run, rule, plan_artifact_retention(std::move(candidates), rule, now)};
  if (dry_run) return report;
  for (RetentionDecision& d : report.decisions) {
    if (!d.remove) continue;
    const std::string& id = d.artifact.artifact_id;
    if (auto st = core_.record(AuditRecord{actor, "artifact.delete",
                                           id + " (" + d.artifact.name + " " + d.artifact.version +
                                               ", retention: " + d.reason + ")"},
                               save_at(now));
        !st) {
      return st.error().with_context("retention: deleting artifact " + id);
    }
    if (auto st = artifacts_.remove(id); !st)
      return st.error().with_context("retention: removing artifact " + id);
  }
  queue_commands();
  return report;
}

void OrchestratorService::run_artifact_retention_if_due(Millis now) {
  if (!options_.artifact_retention.enabled()) return;
  if (next_retention_ms_ == 0)
    next_retention_ms_ = now + options_.artifact_retention.interval_ms;  // the first
  if (now < next_retention_ms_) return;
  next_retention_ms_ = now + options_.artifact_retention.interval_ms;
  auto report = run_artifact_retention(false, "retention", now);
  if (!report) {
    log_->error("artifact retention: {}", report.error().message);
    return;
  }
  std::size_t removed = 0;
  for (const auto& d : report->decisions) removed += d.remove ? 1 : 0;
  if (removed > 0) log_->info("artifact retention deleted {} artifact(s)", removed);
}

common::Result<v1::Manifest> OrchestratorService::get_artifact(const std::string& id) {
  auto m = artifacts_.manifest(id);
  if (!m)
    return Error(Errc::kNotFound,
                 "artifact '" + id + "' is not uploaded; `fotactl artifact list` shows the uploaded ones");
  return m;
}

common::Result<OrchestratorService::ArtifactBundle> OrchestratorService::artifact_bundle(
    const std::string& id) const {
  auto signed_manifest = artifacts_.signed_manifest(id);
  auto image = artifacts_.image_path(id);
  auto size = artifacts_.image_size(id);
  if (!signed_manifest || !image || !size) {
    return Error(Errc::kNotFound,
                 "artifact '" + id + "' is not uploaded; `fotactl artifact list` shows the uploaded ones");
  }
  return ArtifactBundle{common::bundle_header(*signed_manifest), std::move(image).value(), *size};
}

DeviceView OrchestratorService::view_of(DeviceRecord device) const {
  std::string owner = core_.owner(device.facts.id);
  std::vector<std::string> groups = core_.groups_of(device.facts);
  return DeviceView{std::move(device), std::move(owner), std::move(groups)};
}

std::vector<DeviceView> OrchestratorService::list_devices() {
  std::lock_guard lock(state_mutex_);
  std::vector<DeviceView> out;
  for (DeviceRecord& d : core_.devices()) out.push_back(view_of(std::move(d)));
  return out;
}

common::Result<DeviceListPage> OrchestratorService::list_devices(const DeviceListRequest& request) {
  DeviceQuery query;
  query.phase = request.phase;
  query.id_contains = request.id_contains;
  query.after_id = request.after_id;
  query.limit = request.limit;
  if (!request.filter.empty()) query.selectors.push_back(request.filter);
  if (!request.group.empty()) {
    std::lock_guard lock(state_mutex_);
    auto group = core_.groups().find(request.group);
    if (group != core_.groups().end() && group->second.dynamic()) {
      // A dynamic group is its selector: the store answers it like the list's own filters.
      auto selector = parse_device_selector(group->second.selector);
      if (!selector) return selector.error().with_context("group " + request.group);
      query.selectors.push_back(std::move(selector).value());
    } else {
      DeviceSelector in_group;  // a static group's members, or the group devices report
      in_group.groups.push_back(request.group);
      query.selectors.push_back(std::move(in_group));
    }
  }
  // The page is chosen by the store (its rows are at most one loop iteration behind); what it
  // shows of each device is the core's, current.
  auto page = store_->query_devices(query);
  if (!page) return page.error();
  DeviceListPage out;
  out.next_after = page->next_after;
  std::lock_guard lock(state_mutex_);
  for (const std::string& id : page->ids) {
    if (auto d = core_.device(id)) out.devices.push_back(view_of(std::move(*d)));
  }
  return out;
}

GroupView OrchestratorService::group_view(GroupRecord group) const {
  auto members = core_.group_members(group.name);
  group.members.clear();  // the members now are `members` (a dynamic group's too)
  return GroupView{std::move(group), members ? std::optional(std::move(members).value()) : std::nullopt};
}

common::Result<DeviceView> OrchestratorService::set_device_tag(const std::string& id, const std::string& tag,
                                                               bool present, const std::string& actor,
                                                               Millis now) {
  std::lock_guard lock(state_mutex_);
  auto d = core_.set_device_tag(id, tag, present, actor, now, save_at(now));
  if (!d) return d.error();
  queue_commands();
  return view_of(std::move(d).value());
}

common::Result<GroupView> OrchestratorService::create_group(const std::string& name,
                                                            const std::string& selector,
                                                            const std::string& actor, Millis now) {
  std::lock_guard lock(state_mutex_);
  auto g = core_.create_group(name, selector, actor, now, save_at(now));
  if (!g) return g.error();
  queue_commands();
  return group_view(std::move(g).value());
}

common::Result<GroupView> OrchestratorService::set_group_member(const std::string& group,
                                                                const std::string& device, bool present,
                                                                const std::string& actor, Millis now) {
  std::lock_guard lock(state_mutex_);
  auto g = core_.set_group_member(group, device, present, actor, now, save_at(now));
  if (!g) return g.error();
  queue_commands();
  return group_view(std::move(g).value());
}

Status OrchestratorService::delete_group(const std::string& name, const std::string& actor, Millis now) {
  std::lock_guard lock(state_mutex_);
  auto st = core_.delete_group(name, actor, now, save_at(now));
  if (st) queue_commands();
  return st;
}

std::vector<GroupView> OrchestratorService::list_groups() {
  std::lock_guard lock(state_mutex_);
  std::vector<GroupView> out;
  for (const auto& [name, g] : core_.groups()) {
    GroupRecord summary = g;
    summary.members.clear();
    out.push_back(GroupView{std::move(summary), std::nullopt});
  }
  return out;
}

common::Result<GroupView> OrchestratorService::get_group(const std::string& name) {
  std::lock_guard lock(state_mutex_);
  auto g = core_.groups().find(name);
  if (g == core_.groups().end())
    return Error(Errc::kNotFound, "group '" + name + "' does not exist; `fotactl group list` shows them");
  return group_view(g->second);
}

common::Result<DeviceReport> OrchestratorService::get_device(const std::string& id) {
  DeviceReport report;
  {
    std::lock_guard lock(state_mutex_);
    auto d = core_.device(id);
    if (!d)
      return Error(Errc::kNotFound,
                   "device '" + id + "' is not registered; `fotactl device list` shows the known devices");
    report.device = view_of(std::move(*d));
  }
  if (auto events = store_->events(id, "", 20, 0)) report.recent_events = std::move(events).value();
  return report;
}

common::Result<std::vector<LogRecord>> OrchestratorService::device_logs(const std::string& id,
                                                                        std::int64_t after,
                                                                        std::size_t limit) {
  {
    std::lock_guard lock(state_mutex_);
    if (!core_.has_device(id)) return Error(Errc::kNotFound, "device '" + id + "' is not registered");
  }
  return store_->logs(id, after, std::min<std::size_t>(limit, 1000));
}

common::Result<RolloutView> OrchestratorService::create_rollout(const std::string& spec_text,
                                                                const std::string& actor, Millis now) {
  auto spec = parse_rollout_spec(spec_text);
  if (!spec) return spec.error();
  if (!artifacts_.contains(spec->artifact_id)) {
    return Error(Errc::kNotFound,
                 "artifact " + spec->artifact_id +
                     " is not uploaded; upload its bundle first with `fotactl artifact upload BUNDLE`");
  }
  std::lock_guard lock(state_mutex_);
  auto r = core_.create_rollout(*spec, actor, now, save_at(now));
  if (!r) return r.error();
  queue_commands();
  return core_.view(**r, now, false);
}

common::Result<RolloutView> OrchestratorService::rollout_action(const std::string& id,
                                                                const std::string& action,
                                                                const std::string& actor, Millis now) {
  std::lock_guard lock(state_mutex_);
  auto r = core_.rollout_action(id, action, actor, now, save_at(now));
  if (!r) return r.error();
  queue_commands();
  // An abort or a pause may end assignments without a command to every member.
  for (const Member& m : (*r)->members) refresh_fetchable(m.device_id);
  return core_.view(**r, now, false);
}

std::vector<RolloutView> OrchestratorService::list_rollouts(Millis now) {
  std::lock_guard lock(state_mutex_);
  std::vector<RolloutView> out;
  for (const auto& [id, r] : core_.rollouts()) out.push_back(core_.view(r, now, false));
  return out;
}

common::Result<RolloutView> OrchestratorService::get_rollout(const std::string& id, Millis now) {
  std::lock_guard lock(state_mutex_);
  const Rollout* r = core_.rollout(id);
  if (r == nullptr)
    return Error(Errc::kNotFound, "rollout '" + id + "' does not exist; `fotactl rollout status` lists them");
  return core_.view(*r, now, true);
}

common::Result<RolloutPlan> OrchestratorService::plan_rollout(const std::string& id, Millis now) {
  std::lock_guard lock(state_mutex_);
  return core_.plan(id, now);
}

common::Result<std::vector<EventRecord>> OrchestratorService::events(const std::string& device,
                                                                     const std::string& rollout,
                                                                     std::size_t limit,
                                                                     std::int64_t before_id) {
  return store_->events(device, rollout, std::min<std::size_t>(limit, 10'000), before_id);
}

common::Result<std::vector<AuditEntry>> OrchestratorService::audit(std::int64_t after, std::size_t limit) {
  return store_->audit_entries(after, std::min<std::size_t>(limit, 100'000));
}

Status OrchestratorService::write_deny_list() {
  if (options_.deny_list.empty()) return common::ok_status();
  std::string text =
      "# Revoked devices, written by fota-orchestrator (`fotactl device revoke` / `decommission`);\n"
      "# the broker plugin's plugin_opt_deny_list. Do not edit: the orchestrator rewrites it.\n";
  for (const auto& [id, revocation] : core_.revocations()) text += id + "\n";
  if (auto st = common::replace_file(options_.deny_list, text, 0644); !st) {
    return st.error().with_context("writing the deny list " + options_.deny_list.string() +
                                   " (revocation.deny_list); check that its directory is writable");
  }
  return common::ok_status();
}

common::Result<RevocationView> OrchestratorService::revoke_device(const std::string& id,
                                                                  const std::string& reason,
                                                                  const std::string& actor, Millis now) {
  std::lock_guard lock(state_mutex_);
  const bool registered = core_.has_device(id);
  auto revocation = core_.revoke_device(id, reason, actor, now, save_at(now));
  if (!revocation) return revocation.error();
  queue_commands();
  if (auto st = write_deny_list(); !st) {
    return st.error().with_context("device " + id +
                                   " is revoked in the orchestrator but the broker was not told");
  }
  return RevocationView{std::move(revocation).value(), registered || core_.has_device(id),
                        options_.deny_list};
}

common::Result<RevocationView> OrchestratorService::decommission_device(const std::string& id,
                                                                        const std::string& reason,
                                                                        const std::string& actor,
                                                                        Millis now) {
  std::lock_guard lock(state_mutex_);
  const bool registered = core_.has_device(id);
  auto revocation = core_.decommission_device(id, reason, actor, now, save_at(now));
  if (!revocation) return revocation.error();
  queue_commands();
  refresh_fetchable(id);
  if (auto st = write_deny_list(); !st) {
    return st.error().with_context("device " + id +
                                   " is decommissioned in the orchestrator but the broker was not told");
  }
  return RevocationView{std::move(revocation).value(), registered, options_.deny_list};
}

common::Result<CertificateRenewalOrder> OrchestratorService::renew_certificate(const std::string& id,
                                                                               const std::string& reason,
                                                                               const std::string& actor,
                                                                               Millis now) {
  if (!options_.issuing_ca) {
    return Error(
        Errc::kConflict,
        "this orchestrator has no issuing CA, so it would refuse the device's certificate request: set "
        "pki.issuing_ca to a directory made by `fotactl pki issue-ca NAME` and restart it");
  }
  std::lock_guard lock(state_mutex_);
  auto order = core_.renew_certificate(id, reason, new_command_id(), actor, now,
                                       options_.certificate_command_ttl_ms, save_at(now));
  if (!order) return order.error();
  // The operator asked: the request that follows is not held to the per-device interval.
  last_signed_ms_.erase(id);
  queue_commands();
  return order;
}

std::vector<RevocationRecord> OrchestratorService::revocations() {
  std::lock_guard lock(state_mutex_);
  std::vector<RevocationRecord> out;
  for (const auto& [id, revocation] : core_.revocations()) out.push_back(revocation);
  return out;
}

ServiceMetrics OrchestratorService::metrics(Millis now) {
  ServiceMetrics m;
  {
    std::lock_guard lock(state_mutex_);
    m.fleet = core_.summary(now);
  }
  // A scrape reads and changes nothing: rates are the scraper's business (rate() over the counters).
  m.chunks_served = chunks_served_.load();
  m.chunk_bytes_served = chunk_bytes_served_.load();
  m.commands_sent = commands_sent_.load();
  m.messages_rejected = messages_rejected_.load();
  m.chunk_requests_dropped = chunk_requests_dropped_.load();
  m.chunk_requests_refused = chunk_requests_refused_.load();
  m.certificates_issued = certificates_issued_.load();
  m.certificate_requests_refused = certificate_requests_refused_.load();
  m.certificate_requests_dropped = certificate_requests_dropped_.load();
  m.certificates_refused_by_devices = m.fleet.certificates_refused_by_devices;
  if (auto counts = store_->webhook_delivery_counts()) {
    m.webhook_deliveries = std::move(counts).value();
  } else {
    log_->warn("metrics: {}", counts.error().message);
  }
  for (const char* state : {"pending", "delivered", "failed"}) m.webhook_deliveries.try_emplace(state, 0);
  m.webhook_attempts_failed = webhook_attempts_failed_.load();
  return m;
}

common::Result<WebhookRecord> OrchestratorService::create_webhook(WebhookRecord w, const std::string& actor,
                                                                  Millis now) {
  if (auto st = validate_webhook(w); !st) return st.error();
  if (!w.ca_file.empty()) {
    std::error_code ec;
    if (!std::filesystem::is_regular_file(w.ca_file, ec)) {
      return Error(Errc::kInvalidArgument,
                   "ca_file: " + w.ca_file.substr(0, 256) +
                       " is not a file on the orchestrator's host; give the path of a "
                       "PEM CA bundle there that the receiver's certificate chains to");
    }
  }
  std::lock_guard lock(state_mutex_);
  char id[16];
  std::snprintf(id, sizeof id, "%010llx", static_cast<unsigned long long>(command_ids_() & 0xffffffffffULL));
  w.id = "wh-" + std::string(id);
  w.created_ms = now;
  w.actor = actor;
  std::string events;
  for (const auto& e : w.events) events += (events.empty() ? "" : ",") + e;
  const SaveBatch save = save_at(now);
  auto st = core_.record(AuditRecord{actor, "webhook.create", w.id + " " + w.url + " events=" + events},
                         [&](const StoreBatch& batch) {
                           return store_->transaction([&]() -> Status {
                             if (auto created = store_->create_webhook(w); !created) return created;
                             return save(batch);
                           });
                         });
  if (!st) return st.error();
  queue_commands();
  {
    std::lock_guard webhook_lock(webhook_mutex_);
    webhooks_.push_back(w);
  }
  w.secret.clear();
  return w;
}

Status OrchestratorService::delete_webhook(const std::string& id, const std::string& actor, Millis now) {
  std::lock_guard lock(state_mutex_);
  auto it =
      std::find_if(webhooks_.begin(), webhooks_.end(), [&](const WebhookRecord& w) { return w.id == id; });
  if (it == webhooks_.end()) {
    return Error(Errc::kNotFound, "webhook '" + id.substr(0, 64) +
                                      "' does not exist; `fotactl webhook list` shows the webhooks");
  }
  const SaveBatch save = save_at(now);
  auto st =
      core_.record(AuditRecord{actor, "webhook.delete", id + " " + it->url}, [&](const StoreBatch& batch) {
        return store_->transaction([&]() -> Status {
          if (auto deleted = store_->delete_webhook(id); !deleted) return deleted;
          return save(batch);
        });
      });
  if (!st) return st;
  queue_commands();
  std::lock_guard webhook_lock(webhook_mutex_);
  webhooks_.erase(
      std::remove_if(webhooks_.begin(), webhooks_.end(), [&](const WebhookRecord& w) { return w.id == id; }),
      webhooks_.end());
  return common::ok_status();
}

std::vector<WebhookRecord> OrchestratorService::list_webhooks() {
  std::vector<WebhookRecord> out;
  {
    std::lock_guard lock(webhook_mutex_);
    out = webhooks_;
  }
  for (WebhookRecord& w : out) w.secret.clear();
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.id < b.id; });
  return out;
}

common::Result<std::vector<WebhookDelivery>> OrchestratorService::webhook_deliveries(const std::string& id,
                                                                                     const std::string& state,
                                                                                     std::size_t limit) {
  {
    std::lock_guard lock(webhook_mutex_);
    if (std::none_of(webhooks_.begin(), webhooks_.end(),
                     [&](const WebhookRecord& w) { return w.id == id; })) {
      return Error(Errc::kNotFound, "webhook '" + id.substr(0, 64) +
                                        "' does not exist; `fotactl webhook list` shows the webhooks");
    }
  }
  if (!state.empty() && state != "pending" && state != "delivered" && state != "failed") {
    return Error(Errc::kInvalidArgument, "state: '" + state.substr(0, 32) +
                                             "' is not a delivery state; use pending, delivered or failed");
  }
  return store_->webhook_deliveries(id, state, limit);
}

std::vector<WebhookJob> OrchestratorService::take_webhook_jobs(Millis now, std::size_t max) {
  std::lock_guard lock(webhook_mutex_);
  std::vector<WebhookJob> out;
  if (webhooks_stopping_ || webhooks_.empty()) return out;
  auto due = store_->due_webhook_deliveries(now, max + webhook_taken_.size());
  if (!due) {
    log_->warn("webhooks: {}", due.error().message);
    return out;
  }
  for (WebhookDelivery& d : *due) {
    if (out.size() >= max) break;
    if (webhook_taken_.count(d.id)) continue;
    auto w = std::find_if(webhooks_.begin(), webhooks_.end(),
                          [&](const WebhookRecord& x) { return x.id == d.webhook_id; });
    if (w == webhooks_.end()) continue;  // deleted meanwhile: its deliveries went with it
    webhook_taken_.insert(d.id);
    out.push_back(WebhookJob{std::move(d), w->url, w->secret, w->ca_file});
  }
  return out;
}

void OrchestratorService::wait_for_webhook_work(std::chrono::milliseconds wait) {
  std::unique_lock lock(webhook_mutex_);
  webhook_cv_.wait_for(lock, wait, [&] { return webhook_work_.load() || webhooks_stopping_; });
  webhook_work_ = false;
}

void OrchestratorService::finish_webhook_job(const WebhookJob& job, int status, const std::string& error,
                                             Millis now) {
  std::lock_guard lock(webhook_mutex_);
  webhook_taken_.erase(job.delivery.id);
  if (std::none_of(webhooks_.begin(), webhooks_.end(),
                   [&](const WebhookRecord& w) { return w.id == job.delivery.webhook_id; })) {
    return;  // deleted while it was being sent
  }
  WebhookDelivery d = job.delivery;
  ++d.attempts;
  d.last_status = status;
  if (status >= 200 && status < 300) {
    d.state = "delivered";
    d.last_error.clear();
    d.finished_ms = now;
  } else {
    ++webhook_attempts_failed_;
    d.last_error = error.substr(0, 512);
    if (d.attempts >= options_.webhooks.max_attempts) {
      d.state = "failed";
      d.finished_ms = now;
      log_->warn("webhook delivery {} ({} to {}) failed after {} attempt(s): {}", d.id, d.event, job.url,
                 d.attempts, d.last_error);
    } else {
      d.next_attempt_ms = now + webhook_retry_delay(d.attempts, options_.webhooks.retry_initial_ms,
                                                    options_.webhooks.retry_max_ms, webhook_random_());
    }
  }
  // A failed write leaves the row as it was: the delivery is sent again (at least once).
  if (auto st = store_->upsert_webhook_delivery(d); !st)
    log_->error("webhook delivery {}: {}", d.id, st.error().message);
}

void OrchestratorService::stop_webhooks() {
  {
    std::lock_guard lock(webhook_mutex_);
    webhooks_stopping_ = true;
  }
  webhook_cv_.notify_all();
}

}  // namespace fota::orchestrator

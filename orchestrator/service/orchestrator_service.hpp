// SPDX-License-Identifier: Apache-2.0
// The orchestrator's loop around the fleet core: it owns the threads, the locks, the store, the
// MQTT publisher and chunk serving, and calls the FleetCore (fota/orchestrator/fleet_core.hpp),
// which holds the state and makes every decision. MQTT arrives through on_message() and leaves
// through a Publisher; the HTTP API calls the operator methods and renders what they return. One worker
// (run_once) drains the inbox in batches, has the core tick and commit everything in one transaction and only
// then publishes commands, so a command never goes out that a restart would forget.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include <spdlog/spdlog.h>

#include "fota/common/artifact.hpp"
#include "fota/common/pki.hpp"
#include "fota/common/topics.hpp"
#include "fota/orchestrator/fleet_core.hpp"
#include "fota/orchestrator/retention.hpp"
#include "fota/orchestrator/store.hpp"
#include "fota/orchestrator/webhook.hpp"

namespace fota::orchestrator {

class Publisher {
 public:
  virtual ~Publisher() = default;
  // expiry_seconds > 0: the MQTT 5 message expiry interval; the broker drops the message when it
  // could not deliver it within that time (a command queued for a device that stayed offline).
  virtual void publish(const std::string& topic, const std::string& payload, int qos,
                       std::uint32_t expiry_seconds) = 0;
};

struct ServiceOptions {
  common::TopicScheme topics;
  std::filesystem::path data_dir;
  // The store's URL (open_store): "sqlite:PATH" or "postgresql://..."; empty = sqlite:<data_dir>/state.db.
  std::string store;
  std::filesystem::path artifacts_dir;
  common::TrustStore trust;
  // Where `trust` was read from (a *.pub file or a directory of them): re-read by
  // reload_trusted_keys() and when an upload is signed with a key not in `trust`. Empty: never.
  std::filesystem::path trusted_keys_path;
  // Signs every command (required; open() refuses to start without it).
  std::shared_ptr<const common::Ed25519PrivateKey> command_key;
  std::uint64_t default_link_rate = 1'000'000;
  Millis default_device_time_ms = 30'000;  // verify + install + reboot + confirm, until measured
  // Rollouts are ticked at most this often; reports in between are applied at once.
  Millis tick_interval_ms = 200;
  // A fresh rollout id ("r-" and ten hex digits) each call; called under the state lock, never
  // concurrently. Empty: random_rollout_ids(). Tests pass a deterministic one.
  std::function<std::string()> new_rollout_id;
  // The broker plugin's deny list (plugin_opt_deny_list): rewritten atomically from the revoked
  // devices at start-up and after every revocation. Empty: the broker is not told.
  std::filesystem::path deny_list;
  // Signs the devices' certificate requests (docs/PROTOCOL.md, "Certificate renewal"): an issuing
  // CA, never the root. Null: every request is refused (logged and counted).
  std::shared_ptr<const common::CertificateAuthority> issuing_ca;
  std::chrono::seconds device_cert_validity{std::chrono::hours(24 * 90)};
  // How long a CertificateIssued or RenewCertificate command stays valid for the device.
  Millis certificate_command_ttl_ms = 10 * 60'000;
  // pki.max_pending_requests: certificate requests queued for signing at most (one per device),
  // and handled (signed or refused) per minute at most; the rest are dropped and counted.
  std::size_t max_pending_certificate_requests = 64;
  // A device is signed at most one certificate per this interval; its requests in between are
  // dropped (a device renewing legitimately waits far longer: its retry_initial is a minute).
  Millis certificate_device_interval_ms = 60'000;
  // Webhook deliveries (docs/ORCHESTRATOR.md, "Webhooks"): attempts and the waits between them;
  // the sender (an adapter) uses the rest.
  WebhookOptions webhooks;
  // artifacts.retention (docs/ORCHESTRATOR.md, "Artifact retention"); keep_last 0 = no rule.
  RetentionRule artifact_retention;
};

// Rollout ids from a random generator of its own, seeded from std::random_device.
std::function<std::string()> random_rollout_ids();

// The artifact store as the fleet core's catalog: manifests are read from disk once, then served
// from memory (so the core may ask under the state lock).
class ArtifactStoreCatalog final : public ArtifactCatalog {
 public:
  explicit ArtifactStoreCatalog(const common::ArtifactStore& store) : store_(store) {}
  common::Result<v1::SignedManifest> signed_manifest(const std::string& artifact_id) const override {
    return store_.signed_manifest(artifact_id);
  }
  std::uint64_t image_size(const std::string& artifact_id) const override {
    auto size = store_.image_size(artifact_id);
    return size ? *size : 0;
  }

 private:
  const common::ArtifactStore& store_;
};

// What `GET /api/v1/devices` asks for (docs/ORCHESTRATOR.md, "Paging and filters").
struct DeviceListRequest {
  DeviceSelector filter;  // ?version= ?hardware= ?tag= ?online=
  std::string group;      // ?group=: an operator group (static or dynamic) or a reported group
  std::string phase;      // ?state=
  std::string id_contains;
  std::string after_id;  // from the cursor
  std::size_t limit = 100;
};
struct DeviceListPage {
  std::vector<DeviceView> devices;
  std::string next_after;  // empty on the last page
};

// A group as the API shows it; members (the devices in it now) only when asked.
struct GroupView {
  GroupRecord group;
  std::optional<std::vector<std::string>> members;
};

// What a run of the retention rule decided (and, unless a dry run, did).
struct RetentionReport {
  bool dry_run = false;
  RetentionRule rule;
  std::vector<RetentionDecision> decisions;
};

// A delivery to make now: the outbox row and where it goes.
struct WebhookJob {
  WebhookDelivery delivery;
  std::string url;
  std::string secret;
  std::string ca_file;
};

// A device with its latest events, as `GET /devices/{id}` shows it.
struct DeviceReport {
  DeviceView device;
  std::vector<EventRecord> recent_events;  // newest first
};

// A revocation as the API answers it.
struct RevocationView {
  RevocationRecord revocation;
  bool registered = false;          // the device was in the inventory when it was revoked
  std::filesystem::path deny_list;  // the file the broker reads it from; empty = not configured
};

// What /metrics shows: the fleet's counts and the adapters' counters. Reading it changes nothing.
struct ServiceMetrics {
  FleetSummary fleet;
  std::uint64_t chunks_served = 0;
  std::uint64_t chunk_bytes_served = 0;
  std::uint64_t commands_sent = 0;
  std::uint64_t messages_rejected = 0;
  std::uint64_t chunk_requests_dropped = 0;
  std::uint64_t chunk_requests_refused = 0;  // for an artifact the device is not assigned
  std::uint64_t certificates_issued = 0;     // renewal requests signed
  std::uint64_t certificate_requests_refused = 0;
  // Not handled: the queue was full, the device had one queued or was signed one within the
  // interval, or the per-minute budget was spent (pki.max_pending_requests).
  std::uint64_t certificate_requests_dropped = 0;
  std::uint64_t certificates_refused_by_devices = 0;       // ERROR_CERTIFICATE_REFUSED reports
  std::map<std::string, std::int64_t> webhook_deliveries;  // in the outbox, by state
  std::uint64_t webhook_attempts_failed = 0;               // attempts the receiver did not accept
};

class OrchestratorService {
 public:
  static common::Result<std::unique_ptr<OrchestratorService>> open(ServiceOptions options,
                                                                   std::shared_ptr<spdlog::logger> logger);
  ~OrchestratorService();

  void set_publisher(Publisher* publisher);

  // MQTT input; any thread, never waits. Chunk requests are queued for serve_chunk_requests(),
  // the rest for run_once().
  void on_message(const std::string& topic, const std::string& payload);
  // Answers the queued chunk requests (waiting up to `wait` for one); returns how many. Run it on
  // a thread of its own: publishing waits for the broker's acknowledgements, so it must not run
  // on the transport's callback thread, and it should not hold up run_once().
  std::size_t serve_chunk_requests(std::chrono::milliseconds wait);
  // Sends the commands that run_once() and the operator actions committed (waiting up to `wait`
  // for one); returns how many. Run it on a thread of its own, like serve_chunk_requests():
  // sending waits for the broker's acknowledgements, and the commands of a wave of thousands must
  // hold up neither the rollout loop nor the HTTP API (fota-sim's fleet-10k: 8,000 took 32 s,
  // timed once with a timer since removed).
  std::size_t send_commands(std::chrono::milliseconds wait);
  // Drains the inbox, ticks every rollout, commits, queues the commands. Returns the messages
  // processed.
  std::size_t run_once(Millis now);
  // Blocks until a message arrives or the timeout passes.
  void wait_for_input(std::chrono::milliseconds timeout);

  // Re-reads options.trusted_keys_path (on SIGHUP): keys added there are trusted from now on, keys
  // removed no longer are. On error (unreadable file, no key left) the keys in use stay and the
  // error says what to fix. Any thread.
  common::Status reload_trusted_keys();

  // Operator calls, answered with typed views (the HTTP layer renders them); `actor` goes to the
  // audit log. Errors carry the code the HTTP layer maps to a status: kNotFound for an unknown
  // id, kInvalidArgument / kMalformed for a bad spec or action, kConflict for an overlapping
  // rollout or a wrong state, kBadSignature / kUntrustedKey / kIntegrity for a refused bundle,
  // anything else (the store failing) as an internal error.
  common::Result<v1::Manifest> import_artifact(const std::filesystem::path& bundle, const std::string& actor,
                                               Millis now);
  std::vector<v1::Manifest> list_artifacts();
  // kConflict naming the rollout while one may still send it or roll devices back to it (an
  // active or completed rollout names it as its artifact or a member's previous one).
  common::Status delete_artifact(const std::string& id, const std::string& actor, Millis now);
  common::Result<v1::Manifest> get_artifact(const std::string& id);
  // What `GET /api/v1/artifacts/{id}/bundle` streams: the bundle header, then the stored image.
  struct ArtifactBundle {
    std::string header;
    std::filesystem::path image;
    std::uint64_t image_size = 0;
  };
  common::Result<ArtifactBundle> artifact_bundle(const std::string& id) const;
  std::vector<DeviceView> list_devices();  // by id
  // One page, filtered and paged by the store; the devices as the core has them now.
  common::Result<DeviceListPage> list_devices(const DeviceListRequest& request);
  // Operator tags and groups (FleetCore::set_device_tag and the group actions).
  common::Result<DeviceView> set_device_tag(const std::string& id, const std::string& tag, bool present,
                                            const std::string& actor, Millis now);
  common::Result<GroupView> create_group(const std::string& name, const std::string& selector,
                                         const std::string& actor, Millis now);
  common::Result<GroupView> set_group_member(const std::string& group, const std::string& device,
                                             bool present, const std::string& actor, Millis now);
  common::Status delete_group(const std::string& name, const std::string& actor, Millis now);
  std::vector<GroupView> list_groups();                          // by name, without members
  common::Result<GroupView> get_group(const std::string& name);  // with its members now
  common::Result<DeviceReport> get_device(const std::string& id);
  common::Result<std::vector<LogRecord>> device_logs(const std::string& id, std::int64_t after,
                                                     std::size_t limit);
  common::Result<RolloutView> create_rollout(const std::string& spec_text, const std::string& actor,
                                             Millis now);
  common::Result<RolloutView> rollout_action(const std::string& id, const std::string& action,
                                             const std::string& actor, Millis now);
  std::vector<RolloutView> list_rollouts(Millis now);
  common::Result<RolloutView> get_rollout(const std::string& id, Millis now);  // with its members
  common::Result<RolloutPlan> plan_rollout(const std::string& id, Millis now);
  common::Result<std::vector<EventRecord>> events(const std::string& device, const std::string& rollout,
                                                  std::size_t limit, std::int64_t before_id = 0);
  common::Result<std::vector<AuditEntry>> audit(std::int64_t after, std::size_t limit);
  // Certificate lifecycle (FleetCore::revoke_device / decommission_device), then the deny list is
  // rewritten. kIo when the revocation is recorded but the deny list could not be written: the
  // broker does not know yet; the message says what to fix, and the same call again rewrites it.
  common::Result<RevocationView> revoke_device(const std::string& id, const std::string& reason,
                                               const std::string& actor, Millis now);
  common::Result<RevocationView> decommission_device(const std::string& id, const std::string& reason,
                                                     const std::string& actor, Millis now);
  std::vector<RevocationRecord> revocations();  // by device id
  // The operator asks the device to renew its certificate now (FleetCore::renew_certificate);
  // kConflict as well when this orchestrator has no issuing CA (it would refuse the request).
  common::Result<CertificateRenewalOrder> renew_certificate(const std::string& id, const std::string& reason,
                                                            const std::string& actor, Millis now);
  ServiceMetrics metrics(Millis now);

  // Applies the artifact retention rule now (admin; docs/ORCHESTRATOR.md, "Artifact retention"):
  // every deletion audited as artifact.delete by `actor`. kConflict when no rule is configured.
  common::Result<RetentionReport> run_artifact_retention(bool dry_run, const std::string& actor, Millis now);
  // The periodic run (the main loop calls it): applies the rule every rule.interval_ms.
  void run_artifact_retention_if_due(Millis now);

  // Webhooks (docs/ORCHESTRATOR.md, "Webhooks"), admin actions, audited. The answers never carry
  // the secret. kInvalidArgument for a bad URL, event, secret or CA file; kNotFound for an unknown id.
  common::Result<WebhookRecord> create_webhook(WebhookRecord webhook, const std::string& actor, Millis now);
  common::Status delete_webhook(const std::string& id, const std::string& actor, Millis now);
  std::vector<WebhookRecord> list_webhooks();  // by id
  // Newest first; `state` empty = any, else pending, delivered or failed.
  common::Result<std::vector<WebhookDelivery>> webhook_deliveries(const std::string& id,
                                                                  const std::string& state,
                                                                  std::size_t limit);
  // The sender's side (any thread; never the state lock): deliveries due at `now` that no sender
  // has taken yet, at most `max`; each taken one must be finished.
  std::vector<WebhookJob> take_webhook_jobs(Millis now, std::size_t max);
  // Blocks until a commit queued deliveries, stop_webhooks() was called, or `wait` passed.
  void wait_for_webhook_work(std::chrono::milliseconds wait);
  // The attempt's result: a 2xx `status` delivered it; anything else (0 = no answer, `error` says
  // why) schedules the next attempt with backoff and jitter, or marks it failed after
  // webhooks.max_attempts.
  void finish_webhook_job(const WebhookJob& job, int status, const std::string& error, Millis now);
  void stop_webhooks();
  const WebhookOptions& webhook_options() const { return options_.webhooks; }

 private:
  OrchestratorService(ServiceOptions options, std::shared_ptr<spdlog::logger> logger,
                      std::unique_ptr<Store> store);
  struct Inbound {
    common::DeviceId device;
    DeviceMessage message;
  };
  struct CertificateWork {
    common::DeviceId device;
    v1::CertificateRequest request;
  };
  struct ChunkWork {
    common::DeviceId device;
    v1::ChunkRequest request;
  };
  common::Status load();
  DeviceView view_of(DeviceRecord device) const;  // state_mutex_ held
  GroupView group_view(GroupRecord group) const;  // state_mutex_ held
  // Why the artifact must stay (a rollout may still send it or roll back to it), or empty.
  // state_mutex_ held.
  std::string artifact_use(const std::string& id) const;
  // Writes options_.deny_list from the core's revocations (state_mutex_ held).
  common::Status write_deny_list();
  void handle_chunk_request(const common::DeviceId& device, const v1::ChunkRequest& request);
  // Signs a device's certificate request with the issuing CA, audits it and queues the signed
  // CertificateIssued command; refuses (logged, audited, counted) what it must not sign.
  // state_mutex_ held.
  void handle_certificate_request(const CertificateWork& work, Millis now);
  // Counts (and, at most every 10 s, logs) a certificate request not handled. Any thread.
  void drop_certificate_request(const std::string& device_id, const std::string& why);
  // The answer's Command id: random, so a device's replay protection never meets it twice.
  std::string new_command_id();
  // Writes a batch of the core's in one transaction, its audit entries at `now`.
  SaveBatch save_at(Millis now);
  // Hands the core's committed commands to send_commands(), and refreshes what the devices
  // they go to may fetch. Called with state_mutex_ held.
  void queue_commands();
  // Copies the fleet state's fetchable artifact of the device into fetchable_ (state_mutex_
  // held), so chunk serving can check it without waiting for the state lock.
  void refresh_fetchable(const std::string& device_id);
  bool may_fetch(const std::string& device_id, const std::string& artifact_id) const;

  std::shared_ptr<const common::TrustStore> trusted_keys() const;

  ServiceOptions options_;
  std::shared_ptr<spdlog::logger> log_;
  std::unique_ptr<Store> store_;
  common::ArtifactStore artifacts_;
  ArtifactStoreCatalog catalog_;
  mutable std::mutex trust_mutex_;
  std::shared_ptr<const common::TrustStore> trust_;  // replaced whole by reload_trusted_keys()
  std::atomic<Publisher*> publisher_{nullptr};

  std::mutex inbox_mutex_;
  std::condition_variable inbox_cv_;
  std::deque<Inbound> inbox_;
  std::deque<CertificateWork> certificate_requests_;        // under inbox_mutex_, for run_once()
  std::unordered_set<std::string> certificate_requesters_;  // devices in certificate_requests_
  // Under state_mutex_: when each device was last signed a certificate, and the start times of
  // the requests handled within the last minute (the per-minute budget).
  std::unordered_map<std::string, Millis> last_signed_ms_;
  std::deque<Millis> certificate_work_times_;

  std::mutex chunk_mutex_;
  std::condition_variable chunk_cv_;
  std::deque<ChunkWork> chunk_requests_;

  std::mutex command_mutex_;
  std::condition_variable command_cv_;
  std::deque<DeviceCommand> commands_;  // committed, waiting for send_commands()

  std::mutex state_mutex_;
  FleetCore core_;  // guarded by state_mutex_

  // Device id -> the artifact it may fetch (FleetCore::fetchable_artifact), refreshed whenever a
  // command goes to the device or a report from it was applied; one entry per device being
  // updated. Chunk serving reads it under its own lock.
  mutable std::mutex fetchable_mutex_;
  std::unordered_map<std::string, std::string> fetchable_;

  // Metrics of the adapters (the core counts progress reports).
  std::atomic<std::uint64_t> chunks_served_{0};
  std::atomic<std::uint64_t> chunk_bytes_served_{0};
  std::atomic<std::uint64_t> commands_sent_{0};
  std::atomic<std::uint64_t> messages_rejected_{0};
  std::atomic<std::uint64_t> chunk_requests_dropped_{0};
  std::atomic<std::uint64_t> chunk_requests_refused_{0};
  std::atomic<std::uint64_t> certificates_issued_{0};
  std::atomic<std::uint64_t> certificate_requests_refused_{0};
  std::atomic<std::uint64_t> certificate_requests_dropped_{0};
  std::atomic<Millis> certificate_drop_log_ms_{0};       // drops are logged at most every 10 s
  std::mt19937_64 command_ids_{std::random_device{}()};  // state_mutex_ held

  Millis next_retention_ms_ = 0;  // main loop only

  // Webhooks. The subscriptions are changed with both locks held, read with either.
  WebhookWatch webhook_watch_;  // state_mutex_
  std::mutex webhook_mutex_;
  std::condition_variable webhook_cv_;
  std::vector<WebhookRecord> webhooks_;
  std::unordered_set<std::string> webhook_taken_;           // delivery ids a sender holds (webhook_mutex_)
  std::atomic<bool> webhook_work_{false};                   // a commit queued deliveries
  bool webhooks_stopping_ = false;                          // webhook_mutex_
  std::mt19937_64 webhook_random_{std::random_device{}()};  // webhook_mutex_
  std::atomic<std::uint64_t> webhook_attempts_failed_{0};
};

}  // namespace fota::orchestrator

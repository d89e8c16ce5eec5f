// SPDX-License-Identifier: Apache-2.0
// The fleet core: the orchestrator's state and decisions, sans-IO. Decoded device messages,
// operator actions and `now` go in; commands for devices and one StoreBatch per save come out.
// It owns the device registry (one copy of each device's facts), the rollouts, the calls of the
// RolloutEngine and the prediction history. Single-threaded: no locks, no threads, no clock, no
// store, no transport. OrchestratorService is the loop around it (threads, the lock, SQLite,
// MQTT, chunk serving); tests drive it in-process with a manual clock.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <variant>
#include <vector>

#include <spdlog/spdlog.h>

#include "fota/common/crypto.hpp"
#include "fota/common/result.hpp"
#include "fota/common/topics.hpp"
#include "fota/orchestrator/prediction.hpp"
#include "fota/orchestrator/records.hpp"
#include "fota/orchestrator/rollout_engine.hpp"
#include "fota/v1/fota.pb.h"

namespace fota::orchestrator {

// A decoded message from a device channel.
using DeviceMessage = std::variant<v1::Inventory, v1::Progress, v1::Presence, v1::LogBatch, v1::ChunkRequest>;

// What the core asks of the artifact store. Answered from memory: the core calls it while its
// owner holds the state lock (ArtifactStore reads a manifest from disk once, then serves it).
class ArtifactCatalog {
 public:
  virtual ~ArtifactCatalog() = default;
  virtual common::Result<v1::SignedManifest> signed_manifest(const std::string& artifact_id) const = 0;
  // 0 when the artifact is unknown.
  virtual std::uint64_t image_size(const std::string& artifact_id) const = 0;
};

// A command for one device, encoded, to publish once the state that produced it is durable.
struct DeviceCommand {
  std::string topic;
  std::string payload;
  std::uint32_t expiry_seconds = 0;  // the command's TTL (MQTT 5 message expiry)
};

struct FleetCoreOptions {
  common::TopicScheme topics;
  std::uint64_t default_link_rate = 1'000'000;
  Millis default_device_time_ms = 30'000;  // verify + install + reboot + confirm, until measured
  // Rollouts are ticked at most this often; reports in between are applied at once.
  Millis tick_interval_ms = 200;
  // A fresh rollout id each call ("r-" and ten hex digits in production); required.
  std::function<std::string()> new_rollout_id;
  // Every command is signed with it before it is queued (common::sign_command); required.
  std::shared_ptr<const common::Ed25519PrivateKey> command_key;
};

// Writes one batch durably (in one transaction); the core's only way to its store.
using SaveBatch = std::function<common::Status(const StoreBatch&)>;

// What the fleet looks like now, counted for the metrics.
struct FleetSummary {
  std::size_t devices = 0;
  std::size_t online = 0;
  std::map<std::string, std::size_t> devices_by_phase;     // "unknown" before any report
  std::map<std::string, std::size_t> devices_by_version;   // the running version ("" unreported)
  std::map<std::string, std::size_t> devices_by_hardware;  // hardware type
  std::map<std::string, std::size_t> rollouts_by_state;    // every state, 0 included
  std::map<std::string, Millis> running_rollout_remaining_ms;
  std::uint64_t progress_reports = 0;
  std::uint64_t messages_from_revoked = 0;  // ignored: the device is revoked
  // ERROR_CERTIFICATE_REFUSED reports: a device would not install a certificate it was sent.
  std::uint64_t certificates_refused_by_devices = 0;
};

// A renewal the operator asked for (`fotactl device renew-cert`), as the API answers it.
struct CertificateRenewalOrder {
  std::string device_id;
  std::string command_id;
  Millis expires_at_ms = 0;  // the device must receive it by then
  bool online = false;       // the device's presence when it was sent
};

// Typed answers for the operator API; the HTTP layer renders them (JSON, Prometheus text).
struct DeviceView {
  DeviceRecord device;
  std::string rollout;              // the active rollout that owns it, or empty
  std::vector<std::string> groups;  // the operator groups it is in now (static and dynamic)
};

struct WaveView {
  WaveState state;
  std::size_t devices = 0;
  std::map<std::string, std::size_t> counts;  // members by state name
  std::uint64_t bytes_done = 0;
  std::uint64_t bytes_total = 0;
  std::uint64_t bytes_reused = 0;  // of bytes_done, copied on the devices instead of downloaded
};

struct RolloutView {
  std::string id;
  RolloutSpec spec;
  RolloutState state = RolloutState::kCreated;
  std::string reason;
  Millis created_ms = 0;
  Millis started_ms = 0;
  Millis finished_ms = 0;
  std::vector<WaveView> waves;
  std::map<std::string, std::size_t> counts;  // members of every wave by state name
  std::size_t devices = 0;
  std::optional<Millis> eta_end_ms;        // created, running or paused: the predicted end
  std::optional<Millis> eta_bound_end_ms;  // its 90 % bound
  std::optional<std::vector<Member>> members;
};

struct RolloutPlan {
  std::string rollout;
  RolloutPrediction prediction;
  std::uint64_t image_size = 0;
  std::uint64_t assumed_rate_bytes_per_second = 0;
  Millis fixed_ms_per_device = 0;  // measured, else the default
};

class FleetCore {
 public:
  FleetCore(FleetCoreOptions options, const ArtifactCatalog& artifacts, std::shared_ptr<spdlog::logger> log);

  // Start-up: what the store holds. Presence is re-learned (every device starts offline).
  void restore(std::vector<DeviceRecord> devices, std::vector<Rollout> rollouts,
               std::vector<UpdateSample> history, std::vector<RevocationRecord> revocations = {},
               std::vector<DeviceTagChange> tags = {}, std::vector<GroupRecord> groups = {});

  // A device's message; chunk requests are not the core's (the chunk serving adapter's) and are
  // ignored. Its effects are unsaved until commit().
  void on_message(const common::DeviceId& device, const DeviceMessage& message, Millis now);
  // Ticks every rollout once per tick_interval, and at once a rollout a member of which just
  // finished (its gate, the next wave's commands and its end do not wait for the next tick).
  void tick(Millis now);
  // Saves everything unsaved as one batch through `save`. On success the commands that state
  // produced are ready (take_commands); on failure everything stays queued for the next commit.
  common::Status commit(const SaveBatch& save);
  // The committed commands not yet taken, oldest first.
  std::vector<DeviceCommand> take_commands();

  // Operator actions: each commits (with its audit entry, and whatever was already unsaved)
  // before it returns. When that save fails the action is taken back whole: the rollout, its
  // claims on devices, its audit entry, events and commands; what was queued before it stays.
  // kInvalidArgument / kConflict from the engine; kNotFound for an unknown rollout.
  common::Result<const Rollout*> create_rollout(const RolloutSpec& spec, const std::string& actor, Millis now,
                                                const SaveBatch& save);
  // action: start, pause, resume, abort or rollback (else kInvalidArgument).
  common::Result<const Rollout*> rollout_action(const std::string& id, const std::string& action,
                                                const std::string& actor, Millis now, const SaveBatch& save);
  // Certificate lifecycle (admin actions), committed like the rollout actions. The id must be a
  // valid device id (kInvalidArgument), need not be registered: a stolen device that never
  // connected can be revoked ahead of it (`registered` in the answer says which). Doing it again is
  // not an error and changes nothing (no second audit entry).
  // revoke: the device stays in the inventory marked revoked; no rollout selects it; what it
  // sends is ignored.
  common::Result<RevocationRecord> revoke_device(const std::string& id, const std::string& reason,
                                                 const std::string& actor, Millis now, const SaveBatch& save);
  // decommission: revoked too, and removed from the inventory (its events, logs, audit entries and
  // rollout history stay). kConflict while an active rollout owns it: abort that rollout first.
  common::Result<RevocationRecord> decommission_device(const std::string& id, const std::string& reason,
                                                       const std::string& actor, Millis now,
                                                       const SaveBatch& save);
  // By device id.
  const std::map<std::string, RevocationRecord>& revocations() const { return revocations_; }
  bool is_revoked(const std::string& id) const { return revocations_.count(id) > 0; }
  // Messages from revoked devices ignored so far (the broker should have refused them).
  std::uint64_t ignored_from_revoked() const { return ignored_from_revoked_; }

  // Operator tags and groups (operator actions, committed and taken back like the rest).
  // Tags: check_label names (kInvalidArgument); the device must be registered (kNotFound).
  // Tagging twice or removing a tag it lacks changes nothing and records nothing.
  common::Result<DeviceRecord> set_device_tag(const std::string& device_id, const std::string& tag,
                                              bool present, const std::string& actor, Millis now,
                                              const SaveBatch& save);
  // A static group (selector empty; members added one by one) or a dynamic one (a
  // parse_device_selector text). kAlreadyExists for a name taken.
  common::Result<GroupRecord> create_group(const std::string& name, const std::string& selector,
                                           const std::string& actor, Millis now, const SaveBatch& save);
  // Static groups only (kConflict for a dynamic one: change its selector instead); kNotFound for an
  // unknown group or an unregistered device.
  common::Result<GroupRecord> set_group_member(const std::string& group, const std::string& device_id,
                                               bool present, const std::string& actor, Millis now,
                                               const SaveBatch& save);
  // Rollouts that targeted it keep the members they resolved at creation.
  common::Status delete_group(const std::string& name, const std::string& actor, Millis now,
                              const SaveBatch& save);
  const std::map<std::string, GroupRecord>& groups() const { return groups_; }
  // The registered devices in a group now (dynamic: its selector evaluated), sorted; kNotFound.
  common::Result<std::vector<std::string>> group_members(const std::string& name) const;
  // The operator groups the device is in, static and dynamic, by name.
  std::vector<std::string> groups_of(const DeviceFacts& device) const;
  // The operator asks the device to renew its certificate now: a signed RenewCertificateCommand
  // (command id `command_id`, valid `ttl_ms`), audited `certificate.renew` with the actor and
  // committed like the lifecycle actions. kInvalidArgument for a bad id or reason, kNotFound for a
  // device not in the inventory, kConflict for a revoked one (it gets no certificate).
  common::Result<CertificateRenewalOrder> renew_certificate(const std::string& id, const std::string& reason,
                                                            const std::string& command_id,
                                                            const std::string& actor, Millis now,
                                                            Millis ttl_ms, const SaveBatch& save);

  // An audit entry of something done outside the core (an artifact uploaded or refused). Stays
  // queued when the save fails: what it records has happened.
  common::Status record(AuditRecord entry, const SaveBatch& save);

  // Reading. Pointers are valid until the next call that changes the core.
  const Rollout* rollout(const std::string& id) const;
  const std::map<std::string, Rollout>& rollouts() const { return rollouts_; }
  std::optional<DeviceRecord> device(const std::string& id) const;
  std::vector<DeviceRecord> devices() const;  // by id
  bool has_device(const std::string& id) const { return fleet_.devices.count(id) > 0; }
  // The active rollout that owns the device, or empty.
  std::string owner(const std::string& device_id) const;
  // The artifact the fleet state lets the device fetch chunks of now: the one the rollout that
  // owns it is installing (install sent, updating, waiting to retry) or rolling it back to. Empty
  // when it may fetch nothing (not owned, pending, finished, cancelled, reverting to its previous
  // slot).
  std::string fetchable_artifact(const std::string& device_id) const;
  RolloutPrediction predict(const Rollout& rollout, Millis now) const;
  // The rollout as the API shows it: per-wave counts, the ETA while it can still run, and its
  // members when asked.
  RolloutView view(const Rollout& rollout, Millis now, bool with_members) const;
  // kNotFound for an unknown rollout.
  common::Result<RolloutPlan> plan(const std::string& id, Millis now) const;
  const LinkModel& link_model() const { return link_model_; }
  FleetSummary summary(Millis now) const;

 private:
  // What is queued but not yet saved, counted before an operator action, so that an action whose
  // save fails takes back exactly what it queued (and nothing queued before it).
  struct UnsavedMark {
    std::size_t events;
    std::size_t audit;
    std::size_t samples;
    std::size_t history;
    std::size_t outbox;
    std::size_t revocations;
    std::size_t removed_devices;
    std::size_t created_groups;
    std::size_t member_changes;
    std::size_t tag_changes;
    std::size_t deleted_groups;
  };
  // Commits a label action (tag or group); on failure puts the device facts and groups back as
  // they were and drops what the action queued.
  common::Status commit_label_action(const UnsavedMark& mark,
                                     std::map<std::string, GroupRecord> groups_before,
                                     std::unordered_map<std::string, DeviceFacts> facts_before,
                                     const SaveBatch& save);
  UnsavedMark mark_unsaved() const;
  void drop_unsaved_since(const UnsavedMark& mark);

  common::Result<RevocationRecord> retire_device(const std::string& id, const std::string& reason,
                                                 const std::string& actor, Millis now, const SaveBatch& save,
                                                 bool decommission);
  DeviceDetails& touch_device(const std::string& id, Millis now);
  // The spec to create for an encrypted artifact: refused when a targeted device reported no
  // recipient key (non_recipients: refuse), with those devices excluded by the selector
  // (exclude), or as it is (include, or not encrypted).
  common::Result<RolloutSpec> check_recipients(const RolloutSpec& spec) const;
  void ingest_progress(const std::string& device_id, const v1::Progress& progress, Millis now);
  // A report outside any update that a certificate command was refused (ERROR_CERTIFICATE_*).
  void on_certificate_refused(const std::string& device_id, const v1::Progress& report, Millis now);
  void on_inventory(const std::string& id, const v1::Inventory& inventory, Millis now);
  void apply(Rollout& rollout, const Decisions& decisions, Millis now);
  // Moves the rollout's newly finished updates into the prediction history (and the batch's).
  void record_history(Rollout& rollout);
  Rollout* find_rollout(const std::string& id);
  std::vector<const Rollout*> unresolved_rollouts() const;
  DeviceRecord record_of(const std::string& id) const;

  FleetCoreOptions options_;
  const ArtifactCatalog& artifacts_;
  std::shared_ptr<spdlog::logger> log_;
  RolloutEngine engine_;

  // The registry: fleet_.devices holds each device's facts (what rollouts select on), details_
  // the rest of what it said; each fact lives in one of them.
  Fleet fleet_;
  std::unordered_map<std::string, DeviceDetails> details_;
  std::map<std::string, Rollout> rollouts_;
  LinkModel link_model_;
  std::uint64_t progress_reports_ = 0;
  Millis last_tick_ms_ = 0;
  std::unordered_set<std::string> settled_rollouts_;     // a member finished since the last tick
  std::map<std::string, RevocationRecord> revocations_;  // by device id
  std::uint64_t ignored_from_revoked_ = 0;
  std::uint64_t certificates_refused_by_devices_ = 0;

  // Unsaved: written by the next commit().
  std::unordered_set<std::string> dirty_devices_;
  std::unordered_set<std::string> touched_rollouts_;
  std::vector<UpdateSample> pending_samples_;
  std::size_t samples_since_prune_ = 0;  // stored since update_samples was last pruned
  std::vector<EventRecord> pending_events_;
  std::vector<LogRecord> pending_logs_;
  std::vector<AuditRecord> pending_audit_;
  std::vector<RevocationRecord> pending_revocations_;
  std::vector<std::string> pending_removed_devices_;
  std::vector<GroupRecord> pending_created_groups_;
  std::vector<GroupMemberChange> pending_member_changes_;
  std::vector<DeviceTagChange> pending_tag_changes_;
  std::vector<std::string> pending_deleted_groups_;
  std::map<std::string, GroupRecord> groups_;  // operator groups by name
  std::vector<DeviceCommand> outbox_;          // produced by unsaved state
  std::vector<DeviceCommand> ready_;           // committed, for take_commands()
};

}  // namespace fota::orchestrator

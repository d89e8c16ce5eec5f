// SPDX-License-Identifier: Apache-2.0
// The orchestrator's durable facts as plain values, and the batch of them one loop iteration or
// one operator action writes. Pure: the fleet core fills a StoreBatch, a Store writes it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "fota/orchestrator/device_query.hpp"
#include "fota/orchestrator/prediction.hpp"
#include "fota/orchestrator/rollout_engine.hpp"

namespace fota::orchestrator {

// What a device said about itself beyond the facts rollouts select on (DeviceFacts).
struct DeviceDetails {
  std::string client_version;
  std::uint64_t security_counter = 0;
  std::uint64_t free_bytes = 0;
  std::string pending_deployment_id;
  Millis registered_ms = 0;
  std::string last_phase;  // from the last progress report
  std::string last_error;
  // The end of the certificate the device connects with (Inventory.certificate_not_after), in
  // seconds since the epoch; 0 = never reported.
  std::int64_t certificate_not_after = 0;
};

// A device as the store and the API see it: its facts and its details, kept apart in the fleet
// core (each fact has one home) and put together here.
struct DeviceRecord : DeviceDetails {
  DeviceFacts facts;
  // What the device measured itself (Inventory.measurements); its home in the core is the
  // prediction's LinkModel::device_measured.
  DeviceMeasured measured;
};

struct EventRecord {
  std::int64_t id = 0;
  Millis time_ms = 0;
  std::string device_id;
  std::string rollout_id;
  std::string kind;  // "progress", "presence", "inventory", "command", "rollout"
  std::string detail;
};

struct LogRecord {
  std::int64_t id = 0;
  std::string device_id;
  Millis time_ms = 0;
  int level = 0;
  std::string message;
  std::string source;
};

// One audit log entry to append (the store adds seq, time and the hash chain).
struct AuditRecord {
  std::string actor;   // "token:<name>", "cert:<common name>" (API callers) or "engine"
  std::string action;  // "rollout.create", "engine.decision", ...
  std::string detail;
};

// A device whose certificate an admin revoked (`fotactl device revoke`): the broker refuses it
// (the orchestrator writes the deny list), no rollout selects it, its messages are ignored.
// Decommissioned too: it left the inventory (its events, logs and audit entries stay).
struct RevocationRecord {
  std::string device_id;
  std::string reason;
  std::string actor;
  Millis revoked_ms = 0;
  Millis decommissioned_ms = 0;  // 0 = still in the inventory
};

// An operator tag put on (present) or taken off a device.
struct DeviceTagChange {
  std::string device_id;
  std::string tag;
  bool present = true;
};

// A webhook subscription (docs/ORCHESTRATOR.md, "Webhooks"); an admin creates and deletes it.
struct WebhookRecord {
  std::string id;                   // "wh-" and ten hex digits
  std::string url;                  // http:// or https://
  std::vector<std::string> events;  // the event types it receives (webhook_event_types())
  std::string secret;               // HMAC-SHA256 key of the signature; never shown by the API
  std::string ca_file;              // https: the CA bundle the receiver's certificate must chain to
  Millis created_ms = 0;
  std::string actor;
};

// One event to deliver to one webhook: a row of the outbox, written in the same transaction as the
// state change it reports, so a restart loses none. Its id is stable across retries (receivers
// dedupe on it).
struct WebhookDelivery {
  std::string id;
  std::string webhook_id;
  std::string event;
  std::string body;  // the JSON sent, signed as it is
  Millis created_ms = 0;
  std::string state = "pending";  // pending | delivered | failed
  int attempts = 0;
  Millis next_attempt_ms = 0;
  int last_status = 0;  // the receiver's last HTTP status, 0 = no answer
  std::string last_error;
  Millis finished_ms = 0;  // delivered or given up
};

// A device put into (present) or taken out of a static group.
struct GroupMemberChange {
  std::string group;
  std::string device_id;
  bool present = true;
};

// Everything one loop iteration or one operator action writes, saved by Store::write in one
// transaction. Rollouts are pointed to, not copied (a rollout over 100,000 devices saves only its
// dirty members): the batch is written while its owner holds them unchanged.
struct StoreBatch {
  std::vector<DeviceRecord> devices;
  std::vector<Rollout*> rollouts;  // a committed write() clears their dirty flags
  std::vector<UpdateSample> samples;
  bool prune_samples = false;  // then keep only the latest kHistoryKept samples
  std::vector<EventRecord> events;
  std::vector<LogRecord> logs;
  std::vector<AuditRecord> audit;
  std::vector<RevocationRecord> revocations;  // inserted or updated
  std::vector<std::string> removed_devices;   // decommissioned: their devices rows are deleted
  // Operator tags and groups, written in this order: groups created, members, tags, groups deleted.
  std::vector<GroupRecord> created_groups;  // without members (member_changes add them)
  std::vector<GroupMemberChange> member_changes;
  std::vector<DeviceTagChange> tag_changes;
  std::vector<std::string> deleted_groups;  // with their members
};

}  // namespace fota::orchestrator

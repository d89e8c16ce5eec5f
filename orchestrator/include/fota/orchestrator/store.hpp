// SPDX-License-Identifier: Apache-2.0
// Durable state of the orchestrator behind a repository interface. SqliteStore is the embedded
// default (WAL mode, schema migrations, batched transactions); PostgresStore (postgres_store.hpp)
// implements the same interface on a server database, for state past one machine.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "fota/common/result.hpp"
#include "fota/orchestrator/audit.hpp"
#include "fota/orchestrator/prediction.hpp"
#include "fota/orchestrator/records.hpp"
#include "fota/orchestrator/rollout_engine.hpp"

struct sqlite3;
struct sqlite3_stmt;

namespace fota::orchestrator {

class Store {
 public:
  virtual ~Store() = default;

  // Runs `body` in one transaction: all its writes land together or not at all.
  virtual common::Status transaction(const std::function<common::Status()>& body) = 0;

  // Writes the batch in one transaction (devices, rollouts and their dirty members, update
  // samples, events, logs, audit entries at `now`): all of it lands or none of it does.
  // `deliveries`: webhook deliveries of the batch's changes, written in the same transaction.
  common::Status write(const StoreBatch& batch, Millis now,
                       const std::vector<WebhookDelivery>& deliveries = {});

  virtual common::Status upsert_device(const DeviceRecord& device) = 0;
  // Several distinct devices at once (write() saves a batch's devices with it); by default one
  // upsert_device each, a server store sends them as one statement.
  virtual common::Status upsert_devices(const std::vector<DeviceRecord>& devices);
  virtual common::Result<std::vector<DeviceRecord>> load_devices() = 0;
  virtual common::Result<DeviceRecord> device(const std::string& id) = 0;
  // Deletes the device's row (decommissioned); its events, logs and audit entries stay.
  virtual common::Status delete_device(const std::string& id) = 0;

  // Operator tags and groups (docs/ORCHESTRATOR.md, "Tags and groups"). A device's tags and
  // memberships go with its row (delete_device).
  virtual common::Status set_device_tag(const DeviceTagChange& change) = 0;
  virtual common::Result<std::vector<DeviceTagChange>> load_device_tags() = 0;  // by device, tag
  virtual common::Status create_group(const GroupRecord& group) = 0;  // kAlreadyExists if the name is taken
  virtual common::Status set_group_member(const GroupMemberChange& change) = 0;
  virtual common::Status delete_group(const std::string& name) = 0;    // and its members
  virtual common::Result<std::vector<GroupRecord>> load_groups() = 0;  // by name, members sorted
  // One page of the device list, filtered and ordered by id in the database (docs/ORCHESTRATOR.md,
  // "Paging and filters"): the page costs the same with 100 devices or 100,000.
  virtual common::Result<DevicePage> query_devices(const DeviceQuery& query) = 0;

  virtual common::Status upsert_revocation(const RevocationRecord& revocation) = 0;
  virtual common::Result<std::vector<RevocationRecord>> load_revocations() = 0;  // by device id

  // Inserts or updates the rollout and its dirty members. The flags stay: write() clears them once
  // its transaction committed.
  virtual common::Status save_rollout(const Rollout& rollout) = 0;
  virtual common::Result<std::vector<Rollout>> load_rollouts() = 0;

  // Finished device updates, the history predictions draw on; a sample already stored is ignored.
  virtual common::Status append_update_samples(const std::vector<UpdateSample>& samples) = 0;
  // The latest `limit` samples, oldest first.
  virtual common::Result<std::vector<UpdateSample>> update_samples(std::size_t limit) = 0;
  // Deletes all but the latest `keep` samples (by finish time; ties at the boundary stay).
  virtual common::Status prune_update_samples(std::size_t keep) = 0;

  virtual common::Status append_event(const EventRecord& event) = 0;
  // Newest first; `device` / `rollout` empty = any; before_id > 0: only ids below it (the next page).
  virtual common::Result<std::vector<EventRecord>> events(const std::string& device,
                                                          const std::string& rollout, std::size_t limit,
                                                          std::int64_t before_id) = 0;

  virtual common::Status append_logs(const std::vector<LogRecord>& logs) = 0;
  // Oldest first, with id > after_id.
  virtual common::Result<std::vector<LogRecord>> logs(const std::string& device, std::int64_t after_id,
                                                      std::size_t limit) = 0;

  // Webhooks (docs/ORCHESTRATOR.md, "Webhooks"): subscriptions and their outbox.
  virtual common::Status create_webhook(const WebhookRecord& webhook) = 0;
  virtual common::Status delete_webhook(const std::string& id) = 0;        // and its deliveries
  virtual common::Result<std::vector<WebhookRecord>> load_webhooks() = 0;  // by id
  virtual common::Status upsert_webhook_delivery(const WebhookDelivery& delivery) = 0;
  // Pending deliveries due at `now` (next_attempt_ms <= now), the earliest first.
  virtual common::Result<std::vector<WebhookDelivery>> due_webhook_deliveries(Millis now,
                                                                              std::size_t limit) = 0;
  // One webhook's deliveries, newest first; `state` empty = any.
  virtual common::Result<std::vector<WebhookDelivery>> webhook_deliveries(const std::string& webhook_id,
                                                                          const std::string& state,
                                                                          std::size_t limit) = 0;
  // How many deliveries are in each state (for /metrics).
  virtual common::Result<std::map<std::string, std::int64_t>> webhook_delivery_counts() = 0;

  // Appends to the hash chain (prev_hash, hash and seq are filled in).
  virtual common::Result<AuditEntry> append_audit(const std::string& actor, const std::string& action,
                                                  const std::string& detail, Millis now) = 0;
  virtual common::Result<std::vector<AuditEntry>> audit_entries(std::int64_t after_seq,
                                                                std::size_t limit) = 0;
};

class SqliteStore final : public Store {
 public:
  static constexpr int kSchemaVersion = 8;

  // Opens (creating if missing) and migrates the database. Errors name the file and the cause.
  static common::Result<std::unique_ptr<SqliteStore>> open(const std::filesystem::path& path);
  ~SqliteStore() override;

  int schema_version();
  std::string journal_mode();

  common::Status transaction(const std::function<common::Status()>& body) override;
  common::Status upsert_device(const DeviceRecord& device) override;
  common::Result<std::vector<DeviceRecord>> load_devices() override;
  common::Result<DeviceRecord> device(const std::string& id) override;
  common::Status delete_device(const std::string& id) override;
  common::Status set_device_tag(const DeviceTagChange& change) override;
  common::Result<std::vector<DeviceTagChange>> load_device_tags() override;
  common::Status create_group(const GroupRecord& group) override;
  common::Status set_group_member(const GroupMemberChange& change) override;
  common::Status delete_group(const std::string& name) override;
  common::Result<std::vector<GroupRecord>> load_groups() override;
  common::Result<DevicePage> query_devices(const DeviceQuery& query) override;
  common::Status upsert_revocation(const RevocationRecord& revocation) override;
  common::Result<std::vector<RevocationRecord>> load_revocations() override;
  common::Status save_rollout(const Rollout& rollout) override;
  common::Result<std::vector<Rollout>> load_rollouts() override;
  common::Status append_update_samples(const std::vector<UpdateSample>& samples) override;
  common::Result<std::vector<UpdateSample>> update_samples(std::size_t limit) override;
  common::Status prune_update_samples(std::size_t keep) override;
  common::Status append_event(const EventRecord& event) override;
  common::Result<std::vector<EventRecord>> events(const std::string& device, const std::string& rollout,
                                                  std::size_t limit, std::int64_t before_id) override;
  common::Status append_logs(const std::vector<LogRecord>& logs) override;
  common::Result<std::vector<LogRecord>> logs(const std::string& device, std::int64_t after_id,
                                              std::size_t limit) override;
  common::Status create_webhook(const WebhookRecord& webhook) override;
  common::Status delete_webhook(const std::string& id) override;
  common::Result<std::vector<WebhookRecord>> load_webhooks() override;
  common::Status upsert_webhook_delivery(const WebhookDelivery& delivery) override;
  common::Result<std::vector<WebhookDelivery>> due_webhook_deliveries(Millis now, std::size_t limit) override;
  common::Result<std::vector<WebhookDelivery>> webhook_deliveries(const std::string& webhook_id,
                                                                  const std::string& state,
                                                                  std::size_t limit) override;
  common::Result<std::map<std::string, std::int64_t>> webhook_delivery_counts() override;
  common::Result<AuditEntry> append_audit(const std::string& actor, const std::string& action,
                                          const std::string& detail, Millis now) override;
  common::Result<std::vector<AuditEntry>> audit_entries(std::int64_t after_seq, std::size_t limit) override;

 private:
  explicit SqliteStore(sqlite3* db, std::filesystem::path path);
  common::Status exec(const char* sql);
  common::Status migrate();
  // Fills version_key for rows written before schema 6 (the key is computed in C++).
  common::Status backfill_version_keys();
  // The statement for `sql` (a string constant), prepared once per connection; nullptr when it
  // does not prepare (the caller reports sqlite3_errmsg). Callers hold mutex_.
  sqlite3_stmt* prepared(const char* sql);

  sqlite3* db_;
  std::filesystem::path path_;
  std::recursive_mutex mutex_;
  int transaction_depth_ = 0;
  std::unordered_map<const char*, sqlite3_stmt*> statements_;  // keyed by the constant's address
};

// The store named by a URL (the orchestrator's `store:`): "sqlite:PATH", the embedded default, or
// "postgresql://user[:password]@host[:port]/database[?options]" (also "postgres://"; a libpq URL,
// PostgresStore). Errors say which kinds exist, or why the database cannot be opened.
common::Result<std::unique_ptr<Store>> open_store(const std::string& url);

}  // namespace fota::orchestrator

// SPDX-License-Identifier: Apache-2.0
// The orchestrator's state on a PostgreSQL server (libpq): the same Store interface and semantics
// as SqliteStore, for fleets whose state outgrows one machine's file and for several replicas on
// one database. Every statement is prepared once per connection and bound with parameters; the
// writes of a transaction are pipelined (one round trip per batch, not per row).
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "fota/orchestrator/store.hpp"

struct pg_conn;
struct pg_result;

namespace fota::orchestrator {

class PostgresStore final : public Store {
 public:
  static constexpr int kSchemaVersion = 8;  // the same numbering as SqliteStore's migrations

  // Connects (a libpq URL, postgresql://user[:password]@host[:port]/database?options) and migrates.
  // Errors name the server (never the password) and say what to check.
  static common::Result<std::unique_ptr<PostgresStore>> open(const std::string& url);
  ~PostgresStore() override;
  PostgresStore(const PostgresStore&) = delete;
  PostgresStore& operator=(const PostgresStore&) = delete;

  // The version recorded in fota_schema_version; -1 when it cannot be read.
  int schema_version();

  common::Status transaction(const std::function<common::Status()>& body) override;
  common::Status upsert_device(const DeviceRecord& device) override;
  common::Status upsert_devices(const std::vector<DeviceRecord>& devices) override;
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

  // Implementation detail, public for the helpers in postgres_store.cpp.
  struct Rows;

 private:
  PostgresStore(pg_conn* conn, std::string server);
  common::Status migrate();
  // Fills version_key for rows written before schema 6 (the key is computed in C++).
  common::Status backfill_version_keys();
  common::Status prepare_all();
  // A connection the server closed (a restart, a failover, an administrator) is opened again
  // before the next statement, its statements prepared anew: the call that met the closed
  // connection failed (its batch stays to be written again), the next one works.
  common::Status ensure_connected();
  // A statement with no parameters and no rows (BEGIN, COMMIT, DDL), outside the pipeline.
  common::Status exec(const std::string& sql);
  // Runs prepared statement `index` with text parameters. Inside a transaction the write is queued
  // in the pipeline and its error, if any, fails the transaction at the next sync or commit.
  common::Status write(std::size_t index, const std::vector<std::string>& params, const std::string& what);
  // Runs statement `index`, whose parameters are one array per column (unnest), for `rows` (each
  // the column values of one row) in chunks: one statement per chunk instead of one per row.
  common::Status write_rows(std::size_t index, const std::vector<std::vector<std::string>>& rows,
                            const std::string& what);
  // Runs a prepared read (syncing the pipeline first: a read sees the transaction's writes).
  common::Result<Rows> read(std::size_t index, const std::vector<std::string>& params,
                            const std::string& what);
  // Runs `sql`, built per call (the device list's filters vary), with text parameters, as read() does.
  common::Result<Rows> read_sql(const std::string& sql, const std::vector<std::string>& params,
                                const std::string& what);
  // What read() and read_sql() share: `run` executes the statement on the connection.
  common::Result<Rows> read_with(const std::function<pg_result*()>& run, const std::string& what);
  // Sends Sync and consumes every queued result; the first error is kept in pipeline_error_.
  void sync_pipeline();

  pg_conn* conn_;
  std::string server_;  // user@host:port/database, for error messages
  std::recursive_mutex mutex_;
  int transaction_depth_ = 0;
  bool pipelined_ = false;
  std::size_t queued_ = 0;
  std::string pipeline_error_;
};

}  // namespace fota::orchestrator

// SPDX-License-Identifier: Apache-2.0
#include "fota/orchestrator/postgres_store.hpp"

#include <libpq-fe.h>

#include <algorithm>
#include <cstdlib>
#include <type_traits>
#include <variant>

#include "store_rows.hpp"

namespace fota::orchestrator {

using common::Errc;
using common::Error;
using common::Result;
using common::Status;

namespace {

// Each entry moves the schema one version up, mirroring SqliteStore's migrations (the same
// tables, columns and indexes; BIGINT for SQLite's INTEGER, identity columns for AUTOINCREMENT,
// byte-order collation for the keys so lists sort as they do on SQLite; room in each page of the
// rows every report rewrites, devices and members, so an update stays in its page and leaves the
// index alone — a HOT update). Never edit a released
// entry, append a new one.
const char* const kMigrations[] = {
    // 1: initial schema
    R"sql(
CREATE TABLE devices (
  id TEXT COLLATE "C" PRIMARY KEY,
  hardware TEXT NOT NULL DEFAULT '',
  time_zone TEXT NOT NULL DEFAULT '',
  artifact_id TEXT NOT NULL DEFAULT '',
  version TEXT NOT NULL DEFAULT '',
  tags TEXT NOT NULL DEFAULT '',
  grp TEXT NOT NULL DEFAULT '',
  online BIGINT NOT NULL DEFAULT 0,
  last_seen_ms BIGINT NOT NULL DEFAULT 0,
  client_version TEXT NOT NULL DEFAULT '',
  security_counter BIGINT NOT NULL DEFAULT 0,
  free_bytes BIGINT NOT NULL DEFAULT 0,
  pending_deployment_id TEXT NOT NULL DEFAULT '',
  registered_ms BIGINT NOT NULL DEFAULT 0,
  last_phase TEXT NOT NULL DEFAULT '',
  last_error TEXT NOT NULL DEFAULT '') WITH (fillfactor = 70);
CREATE TABLE rollouts (
  id TEXT COLLATE "C" PRIMARY KEY,
  spec TEXT NOT NULL,
  state TEXT NOT NULL,
  created_ms BIGINT NOT NULL,
  started_ms BIGINT NOT NULL,
  finished_ms BIGINT NOT NULL,
  targets_resolved BIGINT NOT NULL,
  reason TEXT NOT NULL,
  waves TEXT NOT NULL);
CREATE TABLE members (
  rollout_id TEXT COLLATE "C" NOT NULL,
  device_id TEXT COLLATE "C" NOT NULL,
  wave BIGINT NOT NULL,
  state TEXT NOT NULL,
  phase BIGINT NOT NULL,
  since_ms BIGINT NOT NULL,
  attempt BIGINT NOT NULL,
  command_seq BIGINT NOT NULL,
  command_id TEXT NOT NULL,
  retry_at_ms BIGINT NOT NULL,
  previous_artifact_id TEXT NOT NULL,
  last_error TEXT NOT NULL,
  bytes_done BIGINT NOT NULL,
  bytes_total BIGINT NOT NULL,
  last_sequence BIGINT NOT NULL,
  started_ms BIGINT NOT NULL,
  finished_ms BIGINT NOT NULL,
  late_joiner BIGINT NOT NULL,
  PRIMARY KEY (rollout_id, device_id)) WITH (fillfactor = 70);
CREATE TABLE events (
  id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  time_ms BIGINT NOT NULL,
  device_id TEXT COLLATE "C" NOT NULL,
  rollout_id TEXT COLLATE "C" NOT NULL,
  kind TEXT NOT NULL,
  detail TEXT NOT NULL);
CREATE TABLE device_logs (
  id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  device_id TEXT COLLATE "C" NOT NULL,
  time_ms BIGINT NOT NULL,
  level BIGINT NOT NULL,
  message TEXT NOT NULL,
  source TEXT NOT NULL);
CREATE TABLE audit (
  seq BIGINT PRIMARY KEY,
  time_ms BIGINT NOT NULL,
  actor TEXT NOT NULL,
  action TEXT NOT NULL,
  detail TEXT NOT NULL,
  prev_hash TEXT NOT NULL,
  hash TEXT NOT NULL);
)sql",
    // 2: indexes for the API's per-device and per-rollout reads
    R"sql(
CREATE INDEX events_by_device ON events(device_id, id);
CREATE INDEX events_by_rollout ON events(rollout_id, id);
CREATE INDEX logs_by_device ON device_logs(device_id, id);
)sql",
    // 3: finished device updates, the history rollout predictions draw on
    R"sql(
CREATE TABLE update_samples (
  rollout_id TEXT COLLATE "C" NOT NULL,
  device_id TEXT COLLATE "C" NOT NULL,
  attempt BIGINT NOT NULL,
  finished_ms BIGINT NOT NULL,
  concurrency BIGINT NOT NULL,
  baseline_ms BIGINT NOT NULL,
  duration_ms BIGINT NOT NULL,
  PRIMARY KEY (rollout_id, device_id, attempt));
CREATE INDEX update_samples_by_time ON update_samples(finished_ms);
)sql",
    // 4: revoked and decommissioned devices
    R"sql(
CREATE TABLE revocations (
  device_id TEXT COLLATE "C" PRIMARY KEY,
  reason TEXT NOT NULL DEFAULT '',
  actor TEXT NOT NULL DEFAULT '',
  revoked_ms BIGINT NOT NULL,
  decommissioned_ms BIGINT NOT NULL DEFAULT 0);
)sql",
    // 5: what devices report of their certificate and decryption key (issue 17); bytes a member
    // copied from its running slot instead of downloading (issue 22)
    R"sql(
ALTER TABLE devices ADD COLUMN certificate_not_after BIGINT NOT NULL DEFAULT 0;
ALTER TABLE devices ADD COLUMN decryption_key_id TEXT NOT NULL DEFAULT '';
ALTER TABLE members ADD COLUMN bytes_reused BIGINT NOT NULL DEFAULT 0;
)sql",
    // 6: operator tags and groups; a sortable version for version<2.0 filters (filled by
    // backfill_version_keys for the rows already there)
    R"sql(
ALTER TABLE devices ADD COLUMN version_key TEXT COLLATE "C" NOT NULL DEFAULT '';
CREATE TABLE device_tags (
  device_id TEXT COLLATE "C" NOT NULL,
  tag TEXT COLLATE "C" NOT NULL,
  PRIMARY KEY (device_id, tag));
CREATE INDEX device_tags_by_tag ON device_tags(tag, device_id);
CREATE TABLE device_groups (
  name TEXT COLLATE "C" PRIMARY KEY,
  selector TEXT NOT NULL DEFAULT '',
  created_ms BIGINT NOT NULL,
  actor TEXT NOT NULL DEFAULT '');
CREATE TABLE group_members (
  group_name TEXT COLLATE "C" NOT NULL,
  device_id TEXT COLLATE "C" NOT NULL,
  PRIMARY KEY (group_name, device_id));
CREATE INDEX group_members_by_device ON group_members(device_id, group_name);
)sql",
    // 7: webhook subscriptions and their outbox of deliveries (docs/ORCHESTRATOR.md, "Webhooks")
    R"sql(
CREATE TABLE webhooks (
  id TEXT COLLATE "C" PRIMARY KEY,
  url TEXT NOT NULL,
  events TEXT NOT NULL,
  secret TEXT NOT NULL,
  ca_file TEXT NOT NULL DEFAULT '',
  created_ms BIGINT NOT NULL,
  actor TEXT NOT NULL DEFAULT '');
CREATE TABLE webhook_deliveries (
  id TEXT COLLATE "C" PRIMARY KEY,
  webhook_id TEXT COLLATE "C" NOT NULL,
  event TEXT NOT NULL,
  body TEXT NOT NULL,
  created_ms BIGINT NOT NULL,
  state TEXT NOT NULL,
  attempts BIGINT NOT NULL DEFAULT 0,
  next_attempt_ms BIGINT NOT NULL DEFAULT 0,
  last_status BIGINT NOT NULL DEFAULT 0,
  last_error TEXT NOT NULL DEFAULT '',
  finished_ms BIGINT NOT NULL DEFAULT 0);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries(state, next_attempt_ms);
CREATE INDEX webhook_deliveries_by_webhook ON webhook_deliveries(webhook_id, created_ms);
  )sql",
    // 8: what devices measured themselves (Inventory.measurements, issue 20)
    R"sql(
ALTER TABLE devices ADD COLUMN measured_download_rate BIGINT NOT NULL DEFAULT 0;
ALTER TABLE devices ADD COLUMN measured_verify_rate BIGINT NOT NULL DEFAULT 0;
ALTER TABLE devices ADD COLUMN measured_reboot_ms BIGINT NOT NULL DEFAULT 0;
ALTER TABLE devices ADD COLUMN measured_health_check_ms BIGINT NOT NULL DEFAULT 0;
)sql",
};
static_assert(sizeof(kMigrations) / sizeof(kMigrations[0]) == PostgresStore::kSchemaVersion);

// Advisory lock keys (one namespace per database): migrations and audit appends of several
// orchestrator processes on one database take turns, so the schema moves once and the audit stays
// one chain.
constexpr const char* kMigrationLock = "SELECT pg_advisory_xact_lock(7236001)";
constexpr std::int64_t kAuditLockKey = 7236002;

// Every statement the store runs, prepared once per connection at open() under its index.
enum Q : std::size_t {
  kUpsertDevice,
  kLoadDevices,
  kReadDevice,
  kDeleteDevice,
  kDeleteDeviceTags,
  kDeleteDeviceMemberships,
  kUnindexedVersions,
  kSetVersionKey,
  kInsertTag,
  kDeleteTag,
  kLoadTags,
  kReadGroup,
  kInsertGroup,
  kInsertGroupMember,
  kDeleteGroupMember,
  kDeleteGroupMembers,
  kDeleteGroup,
  kLoadGroups,
  kLoadGroupMembers,
  kUpsertRevocation,
  kLoadRevocations,
  kUpsertRollout,
  kUpsertMember,
  kUpsertDevices,
  kUpsertMembers,
  kLoadRollouts,
  kLoadMembers,
  kInsertSample,
  kReadSamples,
  kPruneSamples,
  kInsertEvent,
  kReadEvents,
  kInsertLog,
  kReadLogs,
  kLockAudit,
  kAuditHead,
  kInsertAudit,
  kReadAudit,
  kInsertWebhook,
  kDeleteWebhookDeliveries,
  kDeleteWebhook,
  kLoadWebhooks,
  kUpsertWebhookDelivery,
  kDueWebhookDeliveries,
  kReadWebhookDeliveries,
  kCountWebhookDeliveries,
  kStatementCount
};

const std::vector<std::string>& statements() {
  static const std::vector<std::string> sql = [] {
    std::vector<std::string> s(kStatementCount);
    const std::string device_columns = store_rows::kDeviceColumns;
    s[kUpsertDevice] =
        "INSERT INTO devices (" + device_columns +
        ", version_key) VALUES "
        "($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19,$20,$21,$22,"
        "$23) ON "
        "CONFLICT (id) "
        "DO "
        "UPDATE SET version_key=EXCLUDED.version_key, "
        "hardware=EXCLUDED.hardware, time_zone=EXCLUDED.time_zone, artifact_id=EXCLUDED.artifact_id, "
        "version=EXCLUDED.version, tags=EXCLUDED.tags, grp=EXCLUDED.grp, online=EXCLUDED.online, "
        "last_seen_ms=EXCLUDED.last_seen_ms, client_version=EXCLUDED.client_version, "
        "security_counter=EXCLUDED.security_counter, free_bytes=EXCLUDED.free_bytes, "
        "pending_deployment_id=EXCLUDED.pending_deployment_id, last_phase=EXCLUDED.last_phase, "
        "last_error=EXCLUDED.last_error, certificate_not_after=EXCLUDED.certificate_not_after, "
        "decryption_key_id=EXCLUDED.decryption_key_id, "
        "measured_download_rate=EXCLUDED.measured_download_rate, "
        "measured_verify_rate=EXCLUDED.measured_verify_rate, measured_reboot_ms=EXCLUDED.measured_reboot_ms, "
        "measured_health_check_ms=EXCLUDED.measured_health_check_ms";
    s[kLoadDevices] = "SELECT " + device_columns + " FROM devices ORDER BY id";
    s[kReadDevice] = "SELECT " + device_columns + " FROM devices WHERE id = $1";
    s[kDeleteDevice] = "DELETE FROM devices WHERE id = $1";
    s[kDeleteDeviceTags] = "DELETE FROM device_tags WHERE device_id = $1";
    s[kDeleteDeviceMemberships] = "DELETE FROM group_members WHERE device_id = $1";
    s[kUnindexedVersions] = "SELECT id, version FROM devices WHERE version_key = '' AND version <> ''";
    s[kSetVersionKey] = "UPDATE devices SET version_key = $2 WHERE id = $1";
    s[kInsertTag] = "INSERT INTO device_tags (device_id, tag) VALUES ($1, $2) ON CONFLICT DO NOTHING";
    s[kDeleteTag] = "DELETE FROM device_tags WHERE device_id = $1 AND tag = $2";
    s[kLoadTags] = "SELECT device_id, tag FROM device_tags ORDER BY device_id, tag";
    s[kReadGroup] = "SELECT 1 FROM device_groups WHERE name = $1";
    s[kInsertGroup] = "INSERT INTO device_groups (name, selector, created_ms, actor) VALUES ($1, $2, $3, $4)";
    s[kInsertGroupMember] =
        "INSERT INTO group_members (group_name, device_id) VALUES ($1, $2) ON CONFLICT DO NOTHING";
    s[kDeleteGroupMember] = "DELETE FROM group_members WHERE group_name = $1 AND device_id = $2";
    s[kDeleteGroupMembers] = "DELETE FROM group_members WHERE group_name = $1";
    s[kDeleteGroup] = "DELETE FROM device_groups WHERE name = $1";
    s[kLoadGroups] = "SELECT name, selector, created_ms, actor FROM device_groups ORDER BY name";
    s[kLoadGroupMembers] = "SELECT group_name, device_id FROM group_members ORDER BY group_name, device_id";
    s[kUpsertRevocation] =
        "INSERT INTO revocations (device_id, reason, actor, revoked_ms, decommissioned_ms) VALUES "
        "($1,$2,$3,$4,$5) ON CONFLICT (device_id) DO UPDATE SET reason=EXCLUDED.reason, "
        "actor=EXCLUDED.actor, "
        "revoked_ms=EXCLUDED.revoked_ms, decommissioned_ms=EXCLUDED.decommissioned_ms";
    s[kLoadRevocations] =
        "SELECT device_id, reason, actor, revoked_ms, decommissioned_ms FROM revocations ORDER BY device_id";
    s[kUpsertRollout] = std::string("INSERT INTO rollouts (") + store_rows::kRolloutColumns +
                        ") VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9) ON CONFLICT (id) DO UPDATE SET "
                        "spec=EXCLUDED.spec, state=EXCLUDED.state, started_ms=EXCLUDED.started_ms, "
                        "finished_ms=EXCLUDED.finished_ms, targets_resolved=EXCLUDED.targets_resolved, "
                        "reason=EXCLUDED.reason, waves=EXCLUDED.waves";
    s[kUpsertMember] =
        std::string("INSERT INTO members (rollout_id, ") + store_rows::kMemberColumns +
        ") VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19) ON CONFLICT "
        "(rollout_id, "
        "device_id) DO UPDATE SET wave=EXCLUDED.wave, state=EXCLUDED.state, phase=EXCLUDED.phase, "
        "since_ms=EXCLUDED.since_ms, attempt=EXCLUDED.attempt, command_seq=EXCLUDED.command_seq, "
        "command_id=EXCLUDED.command_id, retry_at_ms=EXCLUDED.retry_at_ms, "
        "previous_artifact_id=EXCLUDED.previous_artifact_id, last_error=EXCLUDED.last_error, "
        "bytes_done=EXCLUDED.bytes_done, bytes_total=EXCLUDED.bytes_total, "
        "last_sequence=EXCLUDED.last_sequence, started_ms=EXCLUDED.started_ms, "
        "finished_ms=EXCLUDED.finished_ms, late_joiner=EXCLUDED.late_joiner, "
        "bytes_reused=EXCLUDED.bytes_reused";
    // The multi-row forms: one array parameter per column, unnest()ed into rows.
    const auto multi_row = [](const std::string& single, const std::vector<const char*>& types) {
      std::string select = "SELECT * FROM unnest(";
      for (std::size_t i = 0; i < types.size(); ++i)
        select += (i ? ", $" : "$") + std::to_string(i + 1) + "::" + types[i] + "[]";
      select += ")";
      const auto values = single.find(" VALUES (");
      const auto conflict = single.find(" ON CONFLICT");
      return single.substr(0, values) + " " + select + single.substr(conflict);
    };
    s[kUpsertDevices] = multi_row(s[kUpsertDevice],
                                  {"text",   "text", "text",   "text",   "text",   "text",   "text", "bigint",
                                   "bigint", "text", "bigint", "bigint", "text",   "bigint", "text", "text",
                                   "bigint", "text", "bigint", "bigint", "bigint", "bigint", "text"});
    s[kUpsertMembers] =
        multi_row(s[kUpsertMember],
                  {"text", "text", "bigint", "text", "bigint", "bigint", "bigint", "bigint", "text", "bigint",
                   "text", "text", "bigint", "bigint", "bigint", "bigint", "bigint", "bigint", "bigint"});
    s[kLoadRollouts] =
        std::string("SELECT ") + store_rows::kRolloutColumns + " FROM rollouts ORDER BY created_ms, id";
    s[kLoadMembers] = std::string("SELECT ") + store_rows::kMemberColumns +
                      " FROM members WHERE rollout_id = $1 ORDER BY wave, device_id";
    s[kInsertSample] =
        "INSERT INTO update_samples (rollout_id, device_id, attempt, finished_ms, concurrency, baseline_ms, "
        "duration_ms) VALUES ($1,$2,$3,$4,$5,$6,$7) ON CONFLICT DO NOTHING";
    s[kReadSamples] =
        "SELECT rollout_id, device_id, attempt, finished_ms, concurrency, baseline_ms, duration_ms FROM "
        "update_samples ORDER BY finished_ms DESC LIMIT $1";
    s[kPruneSamples] =
        "DELETE FROM update_samples WHERE finished_ms < (SELECT finished_ms FROM update_samples ORDER BY "
        "finished_ms DESC LIMIT 1 OFFSET $1)";
    s[kInsertWebhook] =
        "INSERT INTO webhooks (id, url, events, secret, ca_file, created_ms, actor) VALUES "
        "($1,$2,$3,$4,$5,$6,$7)";
    s[kDeleteWebhookDeliveries] = "DELETE FROM webhook_deliveries WHERE webhook_id = $1";
    s[kDeleteWebhook] = "DELETE FROM webhooks WHERE id = $1";
    s[kLoadWebhooks] = "SELECT id, url, events, secret, ca_file, created_ms, actor FROM webhooks ORDER BY id";
    s[kUpsertWebhookDelivery] =
        "INSERT INTO webhook_deliveries (" FOTA_WEBHOOK_DELIVERY_COLUMNS
        ") VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11) ON CONFLICT (id) DO UPDATE SET "
        "state=EXCLUDED.state, attempts=EXCLUDED.attempts, "
        "next_attempt_ms=EXCLUDED.next_attempt_ms, last_status=EXCLUDED.last_status, "
        "last_error=EXCLUDED.last_error, finished_ms=EXCLUDED.finished_ms";
    s[kDueWebhookDeliveries] = "SELECT " FOTA_WEBHOOK_DELIVERY_COLUMNS
                               " FROM webhook_deliveries WHERE state = 'pending' AND next_attempt_ms <= "
                               "$1::bigint ORDER BY next_attempt_ms, id LIMIT $2";
    s[kReadWebhookDeliveries] =
        "SELECT " FOTA_WEBHOOK_DELIVERY_COLUMNS
        " FROM webhook_deliveries WHERE webhook_id = $1 AND ($2::text = '' OR state = "
        "$2::text) ORDER BY created_ms DESC, id DESC LIMIT $3";
    s[kCountWebhookDeliveries] = "SELECT state, COUNT(*) FROM webhook_deliveries GROUP BY state";
    s[kInsertEvent] =
        "INSERT INTO events (time_ms, device_id, rollout_id, kind, detail) VALUES ($1,$2,$3,$4,$5)";
    s[kReadEvents] =
        "SELECT id, time_ms, device_id, rollout_id, kind, detail FROM events WHERE ($1::text = '' OR "
        "device_id = $1::text) AND ($2::text = '' OR rollout_id = $2::text) AND ($4::bigint = 0 OR id < "
        "$4::bigint) ORDER BY id DESC LIMIT $3";
    s[kInsertLog] =
        "INSERT INTO device_logs (device_id, time_ms, level, message, source) VALUES ($1,$2,$3,$4,$5)";
    s[kReadLogs] =
        "SELECT id, device_id, time_ms, level, message, source FROM device_logs WHERE device_id = $1 AND "
        "id > $2 ORDER BY id LIMIT $3";
    s[kLockAudit] = "SELECT pg_advisory_xact_lock($1)";
    s[kAuditHead] = "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1";
    s[kInsertAudit] =
        "INSERT INTO audit (seq, time_ms, actor, action, detail, prev_hash, hash) VALUES "
        "($1,$2,$3,$4,$5,$6,$7)";
    s[kReadAudit] =
        "SELECT seq, time_ms, actor, action, detail, prev_hash, hash FROM audit WHERE seq > $1 ORDER BY seq "
        "LIMIT $2";
    return s;
  }();
  return sql;
}

std::string statement_name(std::size_t index) { return "fota_" + std::to_string(index); }

// Parameters as text (the server converts them to the column types).
std::string param(std::string_view v) { return std::string(v); }
template <typename T>
requires std::is_integral_v<T> std::string param(T v) { return std::to_string(static_cast<std::int64_t>(v)); }
template <typename... Args>
std::vector<std::string> params(const Args&... args) {
  return {param(args)...};
}

std::string trimmed(const char* message) {
  std::string m = message ? message : "";
  while (!m.empty() && (m.back() == '\n' || m.back() == ' ')) m.pop_back();
  return m;
}

// A PostgreSQL array literal of text elements ({"a","b\"c"}): the value of one array parameter.
std::string array_literal(const std::vector<std::vector<std::string>>& rows, std::size_t column,
                          std::size_t begin, std::size_t end) {
  std::string out = "{";
  for (std::size_t i = begin; i < end; ++i) {
    if (i > begin) out += ',';
    out += '"';
    for (char c : rows[i][column]) {
      if (c == '"' || c == '\\') out += '\\';
      out += c;
    }
    out += '"';
  }
  out += '}';
  return out;
}

// Rows per multi-row statement: large enough that per-statement costs vanish, small enough that
// one statement's parameters stay a few megabytes.
constexpr std::size_t kRowsPerStatement = 5000;

// A pipeline this long is synced before more is sent: the results the server writes meanwhile
// then always fit the socket buffers (a blocking client that never reads could deadlock with a
// server blocked on writing).
constexpr std::size_t kMaxQueued = 512;

}  // namespace

// A result's rows; row(i) is the accessor store_rows' readers take.
struct PostgresStore::Rows {
  struct Row {
    const PGresult* result;
    int index;
    std::string text(int column) const {
      return std::string(PQgetvalue(result, index, column),
                         static_cast<std::size_t>(PQgetlength(result, index, column)));
    }
    std::int64_t integer(int column) const {
      return std::strtoll(PQgetvalue(result, index, column), nullptr, 10);
    }
  };
  std::unique_ptr<PGresult, void (*)(PGresult*)> result{nullptr, PQclear};
  int size() const { return PQntuples(result.get()); }
  Row row(int i) const { return Row{result.get(), i}; }
};

PostgresStore::PostgresStore(pg_conn* conn, std::string server) : conn_(conn), server_(std::move(server)) {}

PostgresStore::~PostgresStore() { PQfinish(conn_); }

Result<std::unique_ptr<PostgresStore>> PostgresStore::open(const std::string& url) {
  PGconn* conn = PQconnectdb(url.c_str());
  if (conn == nullptr) return Error(Errc::kIo, "cannot connect to PostgreSQL: out of memory");
  // Named without the password, which the URL may carry.
  std::string server = std::string(PQuser(conn) ? PQuser(conn) : "") + "@" +
                       (PQhost(conn) ? PQhost(conn) : "") + ":" + (PQport(conn) ? PQport(conn) : "") + "/" +
                       (PQdb(conn) ? PQdb(conn) : "");
  if (PQstatus(conn) != CONNECTION_OK) {
    const std::string message = trimmed(PQerrorMessage(conn));
    PQfinish(conn);
    return Error(Errc::kIo, "cannot connect to PostgreSQL " + server + ": " + message +
                                "; check that the server runs and accepts connections there, and the user, "
                                "password and database in the store URL (the database must exist: createdb)");
  }
  std::unique_ptr<PostgresStore> store(new PostgresStore(conn, server));
  // Quiet: notices (e.g. "relation already exists, skipping") would go to stderr.
  PQsetNoticeProcessor(
      conn, [](void*, const char*) {}, nullptr);
  if (auto st = store->exec("SET client_min_messages = warning"); !st) return st.error();
  if (auto st = store->migrate(); !st) return st.error().with_context("migrating PostgreSQL " + server);
  if (auto st = store->prepare_all(); !st) return st.error().with_context("PostgreSQL " + server);
  if (auto st = store->backfill_version_keys(); !st) return st.error().with_context("PostgreSQL " + server);
  return store;
}

Status PostgresStore::ensure_connected() {
  if (PQstatus(conn_) == CONNECTION_OK) return common::ok_status();
  PQreset(conn_);
  if (PQstatus(conn_) != CONNECTION_OK)
    return Error(Errc::kIo, "PostgreSQL " + server_ + " is unreachable: " + trimmed(PQerrorMessage(conn_)));
  if (auto st = exec("SET client_min_messages = warning"); !st) return st;
  return prepare_all();
}

Status PostgresStore::exec(const std::string& sql) {
  std::unique_ptr<PGresult, void (*)(PGresult*)> r(PQexec(conn_, sql.c_str()), PQclear);
  const auto status = PQresultStatus(r.get());
  if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK)
    return Error(Errc::kIo, "postgresql: " + trimmed(PQerrorMessage(conn_)));
  return common::ok_status();
}

int PostgresStore::schema_version() {
  std::lock_guard lock(mutex_);
  std::unique_ptr<PGresult, void (*)(PGresult*)> r(PQexec(conn_, "SELECT version FROM fota_schema_version"),
                                                   PQclear);
  if (PQresultStatus(r.get()) != PGRES_TUPLES_OK || PQntuples(r.get()) != 1) return -1;
  return std::atoi(PQgetvalue(r.get(), 0, 0));
}

Status PostgresStore::migrate() {
  std::lock_guard lock(mutex_);
  // One transaction (PostgreSQL's DDL is transactional) under an advisory lock: a second process
  // migrating at the same time waits and then finds the schema current.
  if (auto st = exec("BEGIN"); !st) return st;
  auto body = [&]() -> Status {
    if (auto st = exec(kMigrationLock); !st) return st;
    if (auto st = exec("CREATE TABLE IF NOT EXISTS fota_schema_version (version INTEGER NOT NULL); "
                       "INSERT INTO fota_schema_version SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM "
                       "fota_schema_version)");
        !st)
      return st;
    const int current = schema_version();
    if (current < 0)
      return Error(Errc::kIo, "cannot read the schema version: " + trimmed(PQerrorMessage(conn_)));
    if (current > kSchemaVersion) {
      return Error(Errc::kConflict, "the database has schema version " + std::to_string(current) +
                                        ", newer than this orchestrator understands (" +
                                        std::to_string(kSchemaVersion) + "); run a newer fota-orchestrator");
    }
    for (int v = current; v < kSchemaVersion; ++v) {
      if (auto st = exec(kMigrations[v]); !st)
        return st.error().with_context("schema migration to version " + std::to_string(v + 1));
      if (auto st = exec("UPDATE fota_schema_version SET version = " + std::to_string(v + 1)); !st) return st;
    }
    return common::ok_status();
  };
  if (auto st = body(); !st) {
    (void)exec("ROLLBACK");
    return st;
  }
  return exec("COMMIT");
}

Status PostgresStore::prepare_all() {
  const auto& sql = statements();
  for (std::size_t i = 0; i < sql.size(); ++i) {
    std::unique_ptr<PGresult, void (*)(PGresult*)> r(
        PQprepare(conn_, statement_name(i).c_str(), sql[i].c_str(), 0, nullptr), PQclear);
    if (PQresultStatus(r.get()) != PGRES_COMMAND_OK)
      return Error(Errc::kIo, "preparing \"" + sql[i] + "\": " + trimmed(PQerrorMessage(conn_)));
  }
  return common::ok_status();
}

namespace {
std::vector<const char*> pointers(const std::vector<std::string>& params) {
  std::vector<const char*> out;
  out.reserve(params.size());
  for (const auto& p : params) out.push_back(p.c_str());
  return out;
}
}  // namespace

void PostgresStore::sync_pipeline() {
  if (!pipelined_) return;
  if (PQpipelineSync(conn_) != 1) {
    if (pipeline_error_.empty()) pipeline_error_ = trimmed(PQerrorMessage(conn_));
  } else {
    // Results arrive per queued statement (each followed by a null), then the sync's.
    for (;;) {
      PGresult* r = PQgetResult(conn_);
      if (r == nullptr) {
        if (PQstatus(conn_) != CONNECTION_OK) {
          if (pipeline_error_.empty()) pipeline_error_ = trimmed(PQerrorMessage(conn_));
          break;
        }
        continue;
      }
      const auto status = PQresultStatus(r);
      if (status == PGRES_FATAL_ERROR && pipeline_error_.empty())
        pipeline_error_ = trimmed(PQresultErrorMessage(r));
      PQclear(r);
      if (status == PGRES_PIPELINE_SYNC) break;
    }
  }
  queued_ = 0;
}

Status PostgresStore::write(std::size_t index, const std::vector<std::string>& params,
                            const std::string& what) {
  std::lock_guard lock(mutex_);
  const auto values = pointers(params);
  const std::string name = statement_name(index);
  if (pipelined_) {
    if (!pipeline_error_.empty()) return Error(Errc::kIo, what + ": " + pipeline_error_);
    if (PQsendQueryPrepared(conn_, name.c_str(), static_cast<int>(values.size()), values.data(), nullptr,
                            nullptr, 0) != 1) {
      return Error(Errc::kIo, what + ": " + trimmed(PQerrorMessage(conn_)));
    }
    if (++queued_ >= kMaxQueued) {
      sync_pipeline();
      if (!pipeline_error_.empty()) return Error(Errc::kIo, what + ": " + pipeline_error_);
    }
    return common::ok_status();
  }
  if (auto st = ensure_connected(); !st) return st.error().with_context(what);
  std::unique_ptr<PGresult, void (*)(PGresult*)> r(
      PQexecPrepared(conn_, name.c_str(), static_cast<int>(values.size()), values.data(), nullptr, nullptr,
                     0),
      PQclear);
  if (PQresultStatus(r.get()) != PGRES_COMMAND_OK && PQresultStatus(r.get()) != PGRES_TUPLES_OK)
    return Error(Errc::kIo, what + ": " + trimmed(PQerrorMessage(conn_)));
  return common::ok_status();
}

Status PostgresStore::write_rows(std::size_t index, const std::vector<std::vector<std::string>>& rows,
                                 const std::string& what) {
  if (rows.empty()) return common::ok_status();
  const std::size_t columns = rows.front().size();
  for (std::size_t begin = 0; begin < rows.size(); begin += kRowsPerStatement) {
    const std::size_t end = std::min(rows.size(), begin + kRowsPerStatement);
    std::vector<std::string> arrays;
    arrays.reserve(columns);
    for (std::size_t c = 0; c < columns; ++c) arrays.push_back(array_literal(rows, c, begin, end));
    if (auto st = write(index, arrays, what); !st) return st;
  }
  return common::ok_status();
}

Result<PostgresStore::Rows> PostgresStore::read(std::size_t index, const std::vector<std::string>& params,
                                                const std::string& what) {
  const auto values = pointers(params);
  const std::string name = statement_name(index);
  return read_with(
      [&] {
        return PQexecPrepared(conn_, name.c_str(), static_cast<int>(values.size()), values.data(), nullptr,
                              nullptr, 0);
      },
      what);
}

Result<PostgresStore::Rows> PostgresStore::read_sql(const std::string& sql,
                                                    const std::vector<std::string>& params,
                                                    const std::string& what) {
  const auto values = pointers(params);
  return read_with(
      [&] {
        return PQexecParams(conn_, sql.c_str(), static_cast<int>(values.size()), nullptr, values.data(),
                            nullptr, nullptr, 0);
      },
      what);
}

Result<PostgresStore::Rows> PostgresStore::read_with(const std::function<PGresult*()>& run,
                                                     const std::string& what) {
  std::lock_guard lock(mutex_);
  const bool was_pipelined = pipelined_;
  if (pipelined_) {
    sync_pipeline();
    if (!pipeline_error_.empty()) return Error(Errc::kIo, what + ": " + pipeline_error_);
    PQexitPipelineMode(conn_);
    pipelined_ = false;
  }
  if (!was_pipelined) {
    if (auto st = ensure_connected(); !st) return st.error().with_context(what);
  }
  Rows rows;
  rows.result.reset(run());
  const bool ok = PQresultStatus(rows.result.get()) == PGRES_TUPLES_OK;
  if (was_pipelined && PQenterPipelineMode(conn_) == 1) pipelined_ = true;
  if (!ok) {
    const std::string message = trimmed(PQerrorMessage(conn_));
    // The transaction is aborted on the server: it must fail as a whole.
    if (transaction_depth_ > 0 && pipeline_error_.empty()) pipeline_error_ = message;
    return Error(Errc::kIo, what + ": " + message);
  }
  if (was_pipelined && !pipelined_) {
    pipeline_error_ = "cannot re-enter pipeline mode: " + trimmed(PQerrorMessage(conn_));
    return Error(Errc::kIo, what + ": " + pipeline_error_);
  }
  return rows;
}

Status PostgresStore::transaction(const std::function<Status()>& body) {
  std::lock_guard lock(mutex_);
  if (transaction_depth_ > 0) {
    ++transaction_depth_;
    Status st = body();
    --transaction_depth_;
    return st;
  }
  if (auto st = ensure_connected(); !st) return st;
  if (auto st = exec("BEGIN"); !st) return st;
  // The body's writes are queued, not waited for one by one; a read syncs first.
  if (PQenterPipelineMode(conn_) != 1) {
    (void)exec("ROLLBACK");
    return Error(Errc::kIo, "postgresql: cannot enter pipeline mode: " + trimmed(PQerrorMessage(conn_)));
  }
  pipelined_ = true;
  pipeline_error_.clear();
  ++transaction_depth_;
  Status st;
  try {
    st = body();
  } catch (const std::exception& e) {
    st = Error(Errc::kInternal, std::string("transaction body threw: ") + e.what());
  }
  --transaction_depth_;
  sync_pipeline();
  PQexitPipelineMode(conn_);
  pipelined_ = false;
  if (st && !pipeline_error_.empty()) st = Error(Errc::kIo, "postgresql: " + pipeline_error_);
  pipeline_error_.clear();
  if (!st) {
    (void)exec("ROLLBACK");
    return st;
  }
  // COMMIT of a transaction that failed on the server reports ROLLBACK, not an error: check both.
  std::unique_ptr<PGresult, void (*)(PGresult*)> r(PQexec(conn_, "COMMIT"), PQclear);
  if (PQresultStatus(r.get()) != PGRES_COMMAND_OK || std::string(PQcmdStatus(r.get())) != "COMMIT")
    return Error(Errc::kIo, "postgresql: commit failed: " + trimmed(PQerrorMessage(conn_)));
  return common::ok_status();
}

namespace {
std::vector<std::string> device_params(const DeviceRecord& d) {
  return params(d.facts.id, d.facts.hardware_type, d.facts.time_zone, d.facts.artifact_id, d.facts.version,
                store_rows::join_tags(d.facts.tags), d.facts.group, d.facts.online, d.facts.last_seen_ms,
                d.client_version, d.security_counter, d.free_bytes, d.pending_deployment_id, d.registered_ms,
                d.last_phase, d.last_error, d.certificate_not_after, d.facts.decryption_key_id,
                d.measured.download_bytes_per_second, d.measured.verify_bytes_per_second,
                d.measured.reboot_ms, d.measured.health_check_ms, version_sort_key(d.facts.version));
}
}  // namespace

Status PostgresStore::upsert_device(const DeviceRecord& d) {
  auto st = write(kUpsertDevice, device_params(d), "saving a device");
  if (!st) return st.error().with_context("device " + d.facts.id);
  return st;
}

Status PostgresStore::upsert_devices(const std::vector<DeviceRecord>& devices) {
  return transaction([&]() -> Status {
    std::vector<std::vector<std::string>> rows;
    rows.reserve(devices.size());
    for (const DeviceRecord& d : devices) rows.push_back(device_params(d));
    return write_rows(kUpsertDevices, rows, "saving " + std::to_string(devices.size()) + " devices");
  });
}

Result<std::vector<DeviceRecord>> PostgresStore::load_devices() {
  auto rows = read(kLoadDevices, {}, "loading devices");
  if (!rows) return rows.error();
  std::vector<DeviceRecord> out;
  out.reserve(static_cast<std::size_t>(rows->size()));
  for (int i = 0; i < rows->size(); ++i) out.push_back(store_rows::read_device(rows->row(i)));
  return out;
}

Result<DeviceRecord> PostgresStore::device(const std::string& id) {
  auto rows = read(kReadDevice, params(id), "reading a device");
  if (!rows) return rows.error().with_context("device " + id);
  if (rows->size() == 0) return Error(Errc::kNotFound, "device '" + id + "' is not registered");
  return store_rows::read_device(rows->row(0));
}

Status PostgresStore::delete_device(const std::string& id) {
  // A device's tags and memberships go with its row.
  auto st = transaction([&]() -> Status {
    for (const std::size_t q : {kDeleteDevice, kDeleteDeviceTags, kDeleteDeviceMemberships}) {
      if (auto deleted = write(q, params(id), "deleting a device"); !deleted) return deleted;
    }
    return common::ok_status();
  });
  if (!st) return st.error().with_context("device " + id);
  return st;
}

Status PostgresStore::backfill_version_keys() {
  return transaction([&]() -> Status {
    auto rows = read(kUnindexedVersions, {}, "reading versions to index");
    if (!rows) return rows.error();
    for (int i = 0; i < rows->size(); ++i) {
      const auto r = rows->row(i);
      if (auto st =
              write(kSetVersionKey, params(r.text(0), version_sort_key(r.text(1))), "indexing a version");
          !st)
        return st;
    }
    return common::ok_status();
  });
}

Status PostgresStore::set_device_tag(const DeviceTagChange& c) {
  auto st = c.present ? write(kInsertTag, params(c.device_id, c.tag), "tagging a device")
                      : write(kDeleteTag, params(c.device_id, c.tag), "untagging a device");
  if (!st) return st.error().with_context("device " + c.device_id + " tag " + c.tag);
  return st;
}

Result<std::vector<DeviceTagChange>> PostgresStore::load_device_tags() {
  auto rows = read(kLoadTags, {}, "loading device tags");
  if (!rows) return rows.error();
  std::vector<DeviceTagChange> out;
  out.reserve(static_cast<std::size_t>(rows->size()));
  for (int i = 0; i < rows->size(); ++i)
    out.push_back(DeviceTagChange{rows->row(i).text(0), rows->row(i).text(1), true});
  return out;
}

Status PostgresStore::create_group(const GroupRecord& g) {
  return transaction([&]() -> Status {
    auto exists = read(kReadGroup, params(g.name), "reading a group");
    if (!exists) return exists.error();
    if (exists->size() > 0) return Error(Errc::kAlreadyExists, "group '" + g.name + "' exists");
    return write(kInsertGroup, params(g.name, g.selector, g.created_ms, g.actor), "saving a group");
  });
}

Status PostgresStore::set_group_member(const GroupMemberChange& c) {
  return c.present ? write(kInsertGroupMember, params(c.group, c.device_id), "adding a group member")
                   : write(kDeleteGroupMember, params(c.group, c.device_id), "removing a group member");
}

Status PostgresStore::delete_group(const std::string& name) {
  return transaction([&]() -> Status {
    for (const std::size_t q : {kDeleteGroupMembers, kDeleteGroup}) {
      if (auto st = write(q, params(name), "deleting a group"); !st) return st;
    }
    return common::ok_status();
  });
}

Result<std::vector<GroupRecord>> PostgresStore::load_groups() {
  std::lock_guard lock(mutex_);
  auto groups = read(kLoadGroups, {}, "loading groups");
  if (!groups) return groups.error();
  std::vector<GroupRecord> out;
  out.reserve(static_cast<std::size_t>(groups->size()));
  for (int i = 0; i < groups->size(); ++i) {
    const auto s = groups->row(i);
    out.push_back(GroupRecord{s.text(0), s.text(1), s.integer(2), s.text(3), {}});
  }
  // All members in one read, both lists in name order: a merge walk hands them out.
  auto members = read(kLoadGroupMembers, {}, "loading group members");
  if (!members) return members.error();
  auto g = out.begin();
  for (int i = 0; i < members->size(); ++i) {
    const std::string group = members->row(i).text(0);
    while (g != out.end() && g->name < group) ++g;
    if (g == out.end()) break;
    if (g->name == group) g->members.push_back(members->row(i).text(1));
  }
  return out;
}

Result<DevicePage> PostgresStore::query_devices(const DeviceQuery& q) {
  const auto query = store_rows::device_query_sql(
      q, [](std::size_t n) { return "$" + std::to_string(n); }, "ILIKE");
  std::vector<std::string> values;
  values.reserve(query.args.size());
  for (const auto& a : query.args) {
    values.push_back(std::holds_alternative<std::string>(a) ? std::get<std::string>(a)
                                                            : std::to_string(std::get<std::int64_t>(a)));
  }
  auto rows = read_sql(query.sql, values, "querying devices");
  if (!rows) return rows.error();
  DevicePage page;
  for (int i = 0; i < rows->size(); ++i) page.ids.push_back(rows->row(i).text(0));
  store_rows::finish_page(page, q.limit);
  return page;
}

Status PostgresStore::upsert_revocation(const RevocationRecord& r) {
  auto st =
      write(kUpsertRevocation, params(r.device_id, r.reason, r.actor, r.revoked_ms, r.decommissioned_ms),
            "saving a revocation");
  if (!st) return st.error().with_context("device " + r.device_id);
  return st;
}

Result<std::vector<RevocationRecord>> PostgresStore::load_revocations() {
  auto rows = read(kLoadRevocations, {}, "loading revocations");
  if (!rows) return rows.error();
  std::vector<RevocationRecord> out;
  for (int i = 0; i < rows->size(); ++i) {
    const auto s = rows->row(i);
    out.push_back(RevocationRecord{s.text(0), s.text(1), s.text(2), s.integer(3), s.integer(4)});
  }
  return out;
}

Status PostgresStore::save_rollout(const Rollout& r) {
  return transaction([&]() -> Status {
    if (r.dirty) {
      auto st = write(
          kUpsertRollout,
          params(r.id, rollout_spec_to_json(r.spec), rollout_state_name(r.state), r.created_ms, r.started_ms,
                 r.finished_ms, r.targets_resolved, r.reason, store_rows::waves_json(r.waves)),
          "saving a rollout");
      if (!st) return st.error().with_context("rollout " + r.id);
    }
    // Members are distinct by device id: one multi-row statement per chunk saves them.
    std::vector<std::vector<std::string>> rows;
    for (const Member& x : r.members) {
      if (!x.dirty) continue;
      rows.push_back(params(r.id, x.device_id, x.wave, member_state_name(x.state), static_cast<int>(x.phase),
                            x.since_ms, x.attempt, x.command_seq, x.command_id, x.retry_at_ms,
                            x.previous_artifact_id, x.last_error, x.bytes_done, x.bytes_total,
                            x.last_sequence, x.started_ms, x.finished_ms, x.late_joiner, x.bytes_reused));
    }
    return write_rows(kUpsertMembers, rows,
                      "saving " + std::to_string(rows.size()) + " members of rollout " + r.id);
  });
}

Result<std::vector<Rollout>> PostgresStore::load_rollouts() {
  std::lock_guard lock(mutex_);
  auto rows = read(kLoadRollouts, {}, "loading rollouts");
  if (!rows) return rows.error();
  std::vector<Rollout> out;
  for (int i = 0; i < rows->size(); ++i) {
    auto r = store_rows::read_rollout(rows->row(i));
    if (!r) return r.error();
    out.push_back(std::move(r).value());
  }
  for (Rollout& r : out) {
    auto members = read(kLoadMembers, params(r.id), "loading members");
    if (!members) return members.error().with_context("rollout " + r.id);
    r.members.reserve(static_cast<std::size_t>(members->size()));
    for (int i = 0; i < members->size(); ++i) {
      auto x = store_rows::read_member(members->row(i), r.id);
      if (!x) return x.error();
      r.members.push_back(std::move(x).value());
    }
    r.rebuild_index();
  }
  return out;
}

Status PostgresStore::append_update_samples(const std::vector<UpdateSample>& samples) {
  return transaction([&]() -> Status {
    for (const UpdateSample& x : samples) {
      auto st = write(kInsertSample,
                      params(x.rollout_id, x.device_id, x.attempt, x.finished_ms, x.concurrency,
                             x.baseline_ms, x.duration_ms),
                      "saving an update sample");
      if (!st) return st;
    }
    return common::ok_status();
  });
}

Result<std::vector<UpdateSample>> PostgresStore::update_samples(std::size_t limit) {
  auto rows = read(kReadSamples, params(limit), "reading update samples");
  if (!rows) return rows.error();
  std::vector<UpdateSample> out;
  for (int i = rows->size() - 1; i >= 0; --i) {  // oldest first
    const auto s = rows->row(i);
    out.push_back(UpdateSample{s.text(0), s.text(1), static_cast<std::uint32_t>(s.integer(2)), s.integer(3),
                               static_cast<std::size_t>(s.integer(4)), s.integer(5), s.integer(6)});
  }
  return out;
}

Status PostgresStore::prune_update_samples(std::size_t keep) {
  return write(kPruneSamples, params(static_cast<std::int64_t>(std::max<std::size_t>(keep, 1) - 1)),
               "pruning update samples");  // the offset of the oldest kept
}

Status PostgresStore::append_event(const EventRecord& e) {
  return write(kInsertEvent, params(e.time_ms, e.device_id, e.rollout_id, e.kind, e.detail),
               "appending an event");
}

Result<std::vector<EventRecord>> PostgresStore::events(const std::string& device, const std::string& rollout,
                                                       std::size_t limit, std::int64_t before_id) {
  auto rows = read(kReadEvents, params(device, rollout, limit, before_id), "reading events");
  if (!rows) return rows.error();
  std::vector<EventRecord> out;
  for (int i = 0; i < rows->size(); ++i) {
    const auto s = rows->row(i);
    out.push_back(EventRecord{s.integer(0), s.integer(1), s.text(2), s.text(3), s.text(4), s.text(5)});
  }
  return out;
}

Status PostgresStore::append_logs(const std::vector<LogRecord>& logs) {
  return transaction([&]() -> Status {
    for (const LogRecord& l : logs) {
      auto st = write(kInsertLog, params(l.device_id, l.time_ms, l.level, l.message, l.source),
                      "appending a device log");
      if (!st) return st;
    }
    return common::ok_status();
  });
}

Result<std::vector<LogRecord>> PostgresStore::logs(const std::string& device, std::int64_t after_id,
                                                   std::size_t limit) {
  auto rows = read(kReadLogs, params(device, after_id, limit), "reading device logs");
  if (!rows) return rows.error();
  std::vector<LogRecord> out;
  for (int i = 0; i < rows->size(); ++i) {
    const auto s = rows->row(i);
    out.push_back(LogRecord{s.integer(0), s.text(1), s.integer(2), static_cast<int>(s.integer(3)), s.text(4),
                            s.text(5)});
  }
  return out;
}

Status PostgresStore::create_webhook(const WebhookRecord& w) {
  auto st =
      write(kInsertWebhook,
            params(w.id, w.url, store_rows::join_tags(w.events), w.secret, w.ca_file, w.created_ms, w.actor),
            "saving a webhook");
  if (!st) return st.error().with_context("webhook " + w.id);
  return st;
}

Status PostgresStore::delete_webhook(const std::string& id) {
  return transaction([&]() -> Status {
    if (auto st = write(kDeleteWebhookDeliveries, params(id), "deleting a webhook's deliveries"); !st)
      return st;
    return write(kDeleteWebhook, params(id), "deleting a webhook");
  });
}

Result<std::vector<WebhookRecord>> PostgresStore::load_webhooks() {
  auto rows = read(kLoadWebhooks, {}, "loading webhooks");
  if (!rows) return rows.error();
  std::vector<WebhookRecord> out;
  for (int i = 0; i < rows->size(); ++i) {
    const auto s = rows->row(i);
    out.push_back(WebhookRecord{s.text(0), s.text(1), store_rows::split_tags(s.text(2)), s.text(3), s.text(4),
                                s.integer(5), s.text(6)});
  }
  return out;
}

Status PostgresStore::upsert_webhook_delivery(const WebhookDelivery& d) {
  auto st = write(kUpsertWebhookDelivery,
                  params(d.id, d.webhook_id, d.event, d.body, d.created_ms, d.state, d.attempts,
                         d.next_attempt_ms, d.last_status, d.last_error, d.finished_ms),
                  "saving a webhook delivery");
  if (!st) return st.error().with_context("webhook delivery " + d.id);
  return st;
}

Result<std::vector<WebhookDelivery>> PostgresStore::due_webhook_deliveries(Millis now, std::size_t limit) {
  auto rows = read(kDueWebhookDeliveries, params(now, limit), "reading due webhook deliveries");
  if (!rows) return rows.error();
  std::vector<WebhookDelivery> out;
  for (int i = 0; i < rows->size(); ++i) out.push_back(store_rows::read_webhook_delivery(rows->row(i)));
  return out;
}

Result<std::vector<WebhookDelivery>> PostgresStore::webhook_deliveries(const std::string& webhook_id,
                                                                       const std::string& state,
                                                                       std::size_t limit) {
  auto rows = read(kReadWebhookDeliveries, params(webhook_id, state, limit), "reading webhook deliveries");
  if (!rows) return rows.error();
  std::vector<WebhookDelivery> out;
  for (int i = 0; i < rows->size(); ++i) out.push_back(store_rows::read_webhook_delivery(rows->row(i)));
  return out;
}

Result<std::map<std::string, std::int64_t>> PostgresStore::webhook_delivery_counts() {
  auto rows = read(kCountWebhookDeliveries, {}, "counting webhook deliveries");
  if (!rows) return rows.error();
  std::map<std::string, std::int64_t> out;
  for (int i = 0; i < rows->size(); ++i) {
    const auto s = rows->row(i);
    out[s.text(0)] = s.integer(1);
  }
  return out;
}

Result<AuditEntry> PostgresStore::append_audit(const std::string& actor, const std::string& action,
                                               const std::string& detail, Millis now) {
  AuditEntry e;
  auto st = transaction([&]() -> Status {
    // Held to the commit: appends from other connections wait, so the head read here stays the head.
    if (auto lock = read(kLockAudit, params(kAuditLockKey), "locking the audit chain"); !lock)
      return lock.error();
    auto head = read(kAuditHead, {}, "reading the audit head");
    if (!head) return head.error();
    e.seq = 1;
    e.prev_hash = genesis_hash();
    if (head->size() > 0) {
      e.seq = head->row(0).integer(0) + 1;
      e.prev_hash = head->row(0).text(1);
    }
    e.time_ms = now;
    e.actor = actor;
    e.action = action;
    e.detail = detail;
    e.hash = audit_entry_hash(e);
    return write(kInsertAudit, params(e.seq, e.time_ms, e.actor, e.action, e.detail, e.prev_hash, e.hash),
                 "appending an audit entry");
  });
  if (!st) return st.error();
  return e;
}

Result<std::vector<AuditEntry>> PostgresStore::audit_entries(std::int64_t after_seq, std::size_t limit) {
  auto rows = read(kReadAudit, params(after_seq, limit), "reading the audit log");
  if (!rows) return rows.error();
  std::vector<AuditEntry> out;
  for (int i = 0; i < rows->size(); ++i) {
    const auto s = rows->row(i);
    out.push_back(
        AuditEntry{s.integer(0), s.integer(1), s.text(2), s.text(3), s.text(4), s.text(5), s.text(6)});
  }
  return out;
}

}  // namespace fota::orchestrator

// SPDX-License-Identifier: Apache-2.0
#include <sqlite3.h>

#include <memory>
#include <string_view>
#include <type_traits>
#include <variant>

#include "fota/orchestrator/store.hpp"
#include "store_rows.hpp"

namespace fota::orchestrator {

using common::Errc;
using common::Error;
using common::Result;
using common::Status;
using store_rows::join_tags;
using store_rows::waves_json;

namespace {

// Each entry moves the schema one version up; never edit a released entry, append a new one.
const char* const kMigrations[] = {
    // 1: initial schema
    R"sql(
CREATE TABLE devices (
  id TEXT PRIMARY KEY,
  hardware TEXT NOT NULL DEFAULT '',
  time_zone TEXT NOT NULL DEFAULT '',
  artifact_id TEXT NOT NULL DEFAULT '',
  version TEXT NOT NULL DEFAULT '',
  tags TEXT NOT NULL DEFAULT '',
  grp TEXT NOT NULL DEFAULT '',
  online INTEGER NOT NULL DEFAULT 0,
  last_seen_ms INTEGER NOT NULL DEFAULT 0,
  client_version TEXT NOT NULL DEFAULT '',
  security_counter INTEGER NOT NULL DEFAULT 0,
  free_bytes INTEGER NOT NULL DEFAULT 0,
  pending_deployment_id TEXT NOT NULL DEFAULT '',
  registered_ms INTEGER NOT NULL DEFAULT 0,
  last_phase TEXT NOT NULL DEFAULT '',
  last_error TEXT NOT NULL DEFAULT '');
CREATE TABLE rollouts (
  id TEXT PRIMARY KEY,
  spec TEXT NOT NULL,
  state TEXT NOT NULL,
  created_ms INTEGER NOT NULL,
  started_ms INTEGER NOT NULL,
  finished_ms INTEGER NOT NULL,
  targets_resolved INTEGER NOT NULL,
  reason TEXT NOT NULL,
  waves TEXT NOT NULL);
CREATE TABLE members (
  rollout_id TEXT NOT NULL,
  device_id TEXT NOT NULL,
  wave INTEGER NOT NULL,
  state TEXT NOT NULL,
  phase INTEGER NOT NULL,
  since_ms INTEGER NOT NULL,
  attempt INTEGER NOT NULL,
  command_seq INTEGER NOT NULL,
  command_id TEXT NOT NULL,
  retry_at_ms INTEGER NOT NULL,
  previous_artifact_id TEXT NOT NULL,
  last_error TEXT NOT NULL,
  bytes_done INTEGER NOT NULL,
  bytes_total INTEGER NOT NULL,
  last_sequence INTEGER NOT NULL,
  started_ms INTEGER NOT NULL,
  finished_ms INTEGER NOT NULL,
  late_joiner INTEGER NOT NULL,
  PRIMARY KEY (rollout_id, device_id)) WITHOUT ROWID;
CREATE TABLE events (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  time_ms INTEGER NOT NULL,
  device_id TEXT NOT NULL,
  rollout_id TEXT NOT NULL,
  kind TEXT NOT NULL,
  detail TEXT NOT NULL);
CREATE TABLE device_logs (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  device_id TEXT NOT NULL,
  time_ms INTEGER NOT NULL,
  level INTEGER NOT NULL,
  message TEXT NOT NULL,
  source TEXT NOT NULL);
CREATE TABLE audit (
  seq INTEGER PRIMARY KEY,
  time_ms INTEGER NOT NULL,
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
  rollout_id TEXT NOT NULL,
  device_id TEXT NOT NULL,
  attempt INTEGER NOT NULL,
  finished_ms INTEGER NOT NULL,
  concurrency INTEGER NOT NULL,
  baseline_ms INTEGER NOT NULL,
  duration_ms INTEGER NOT NULL,
  PRIMARY KEY (rollout_id, device_id, attempt));
CREATE INDEX update_samples_by_time ON update_samples(finished_ms);
)sql",
    // 4: revoked and decommissioned devices
    R"sql(
CREATE TABLE revocations (
  device_id TEXT PRIMARY KEY,
  reason TEXT NOT NULL DEFAULT '',
  actor TEXT NOT NULL DEFAULT '',
  revoked_ms INTEGER NOT NULL,
  decommissioned_ms INTEGER NOT NULL DEFAULT 0);
)sql",
    // 5: what devices report of their certificate and decryption key (issue 17); bytes a member
    // copied from its running slot instead of downloading (Progress.bytes_reused, issue 22)
    R"sql(
ALTER TABLE devices ADD COLUMN certificate_not_after INTEGER NOT NULL DEFAULT 0;
ALTER TABLE devices ADD COLUMN decryption_key_id TEXT NOT NULL DEFAULT '';
ALTER TABLE members ADD COLUMN bytes_reused INTEGER NOT NULL DEFAULT 0;
)sql",
    // 6: operator tags and groups; a sortable version for version<2.0 filters (filled by
    // backfill_version_keys for the rows already there)
    R"sql(
ALTER TABLE devices ADD COLUMN version_key TEXT NOT NULL DEFAULT '';
CREATE TABLE device_tags (
  device_id TEXT NOT NULL,
  tag TEXT NOT NULL,
  PRIMARY KEY (device_id, tag));
CREATE INDEX device_tags_by_tag ON device_tags(tag, device_id);
CREATE TABLE device_groups (
  name TEXT PRIMARY KEY,
  selector TEXT NOT NULL DEFAULT '',
  created_ms INTEGER NOT NULL,
  actor TEXT NOT NULL DEFAULT '');
CREATE TABLE group_members (
  group_name TEXT NOT NULL,
  device_id TEXT NOT NULL,
  PRIMARY KEY (group_name, device_id));
CREATE INDEX group_members_by_device ON group_members(device_id, group_name);
)sql",
    // 7: webhook subscriptions and their outbox of deliveries (docs/ORCHESTRATOR.md, "Webhooks")
    R"sql(
CREATE TABLE webhooks (
  id TEXT PRIMARY KEY,
  url TEXT NOT NULL,
  events TEXT NOT NULL,
  secret TEXT NOT NULL,
  ca_file TEXT NOT NULL DEFAULT '',
  created_ms INTEGER NOT NULL,
  actor TEXT NOT NULL DEFAULT '');
CREATE TABLE webhook_deliveries (
  id TEXT PRIMARY KEY,
  webhook_id TEXT NOT NULL,
  event TEXT NOT NULL,
  body TEXT NOT NULL,
  created_ms INTEGER NOT NULL,
  state TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  next_attempt_ms INTEGER NOT NULL DEFAULT 0,
  last_status INTEGER NOT NULL DEFAULT 0,
  last_error TEXT NOT NULL DEFAULT '',
  finished_ms INTEGER NOT NULL DEFAULT 0);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries(state, next_attempt_ms);
CREATE INDEX webhook_deliveries_by_webhook ON webhook_deliveries(webhook_id, created_ms);
  )sql",
    // 8: what devices measured themselves (Inventory.measurements, issue 20)
    R"sql(
ALTER TABLE devices ADD COLUMN measured_download_rate INTEGER NOT NULL DEFAULT 0;
ALTER TABLE devices ADD COLUMN measured_verify_rate INTEGER NOT NULL DEFAULT 0;
ALTER TABLE devices ADD COLUMN measured_reboot_ms INTEGER NOT NULL DEFAULT 0;
ALTER TABLE devices ADD COLUMN measured_health_check_ms INTEGER NOT NULL DEFAULT 0;
)sql",
};
static_assert(sizeof(kMigrations) / sizeof(kMigrations[0]) == SqliteStore::kSchemaVersion);

// A prepared statement from the store's cache, in use. Binds positionally without copying
// (SQLITE_STATIC: the bound values must outlive the last step(), which the helpers below
// guarantee by binding and stepping in one call) and is reset and unbound when it goes out of
// scope, so the next user finds it clean and a read releases its snapshot.
class Statement {
 public:
  Statement(sqlite3* db, sqlite3_stmt* stmt) : db_(db), stmt_(stmt) {}
  ~Statement() {
    if (stmt_ != nullptr) {
      sqlite3_reset(stmt_);
      sqlite3_clear_bindings(stmt_);
    }
  }
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  bool ok() const { return stmt_ != nullptr; }
  template <typename... Args>
  void bind_all(const Args&... args) {
    int i = 0;
    (bind(++i, args), ...);
  }
  // SQLITE_ROW, SQLITE_DONE or an error code.
  int step() { return sqlite3_step(stmt_); }
  // Ready for the next set of binds (the statement stays prepared).
  void rewind() { sqlite3_reset(stmt_); }
  std::string text(int i) const {
    const auto* p = sqlite3_column_text(stmt_, i);
    return p ? std::string(reinterpret_cast<const char*>(p),
                           static_cast<std::size_t>(sqlite3_column_bytes(stmt_, i)))
             : std::string();
  }
  std::int64_t integer(int i) const { return sqlite3_column_int64(stmt_, i); }
  Error error(std::string_view what) const {
    return Error(Errc::kIo, std::string(what) + ": " + sqlite3_errmsg(db_));
  }

 private:
  void bind(int i, std::string_view v) {
    sqlite3_bind_text(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_STATIC);
  }
  template <typename T>
  requires std::is_integral_v<T>
  void bind(int i, T v) { sqlite3_bind_int64(stmt_, i, static_cast<std::int64_t>(v)); }

  sqlite3* db_;
  sqlite3_stmt* stmt_;
};

// The one write path: binds `args` to ?1..?N and steps to completion.
template <typename... Args>
Status run(Statement&& s, std::string_view what, const Args&... args) {
  if (!s.ok()) return s.error(std::string("preparing ") + std::string(what));
  s.bind_all(args...);
  if (s.step() != SQLITE_DONE) return s.error(what);
  return common::ok_status();
}

// The one read path: binds `args`, then calls `row` (returning Status) for every result row.
template <typename RowFn, typename... Args>
Status each_row(Statement&& s, std::string_view what, RowFn&& row, const Args&... args) {
  if (!s.ok()) return s.error(std::string("preparing ") + std::string(what));
  s.bind_all(args...);
  int rc;
  while ((rc = s.step()) == SQLITE_ROW) {
    if (auto st = row(static_cast<const Statement&>(s)); !st) return st;
  }
  if (rc != SQLITE_DONE) return s.error(what);
  return common::ok_status();
}

}  // namespace

SqliteStore::SqliteStore(sqlite3* db, std::filesystem::path path) : db_(db), path_(std::move(path)) {}
SqliteStore::~SqliteStore() {
  for (auto& [sql, stmt] : statements_) sqlite3_finalize(stmt);
  sqlite3_close_v2(db_);
}

sqlite3_stmt* SqliteStore::prepared(const char* sql) {
  auto it = statements_.find(sql);
  if (it != statements_.end()) return it->second;
  sqlite3_stmt* stmt = nullptr;
  // PERSISTENT: kept for the connection's life; a batch reuses it for every row.
  if (sqlite3_prepare_v3(db_, sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt, nullptr) != SQLITE_OK) {
    sqlite3_finalize(stmt);
    return nullptr;
  }
  statements_.emplace(sql, stmt);
  return stmt;
}

Result<std::unique_ptr<SqliteStore>> SqliteStore::open(const std::filesystem::path& path) {
  sqlite3* db = nullptr;
  // NOMUTEX: the store serialises every use of the connection with its own mutex.
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                      nullptr) != SQLITE_OK) {
    std::string msg = db ? sqlite3_errmsg(db) : "out of memory";
    sqlite3_close_v2(db);
    return Error(Errc::kIo, "cannot open database " + path.string() + ": " + msg +
                                "; check that the directory exists and is writable");
  }
  std::unique_ptr<SqliteStore> store(new SqliteStore(db, path));
  sqlite3_busy_timeout(db, 5000);
  // WAL: readers do not block the writer; NORMAL sync is durable across a process crash (kill -9)
  // because committed transactions are in the WAL file before the commit returns.
  if (auto st = store->exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;");
      !st) {
    return st.error().with_context("opening " + path.string());
  }
  if (store->journal_mode() != "wal") {
    return Error(Errc::kIo,
                 "database " + path.string() + " cannot use WAL mode (is it on a network file system?)");
  }
  if (auto st = store->migrate(); !st) return st.error().with_context("migrating " + path.string());
  if (auto st = store->backfill_version_keys(); !st)
    return st.error().with_context("opening " + path.string());
  return store;
}

Status SqliteStore::exec(const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : sqlite3_errmsg(db_);
    sqlite3_free(err);
    return Error(Errc::kIo, "sqlite: " + msg);
  }
  return common::ok_status();
}

int SqliteStore::schema_version() {
  std::lock_guard lock(mutex_);
  int version = -1;
  (void)each_row(Statement(db_, prepared("PRAGMA user_version")), "reading the schema version",
                 [&](const Statement& s) {
                   version = static_cast<int>(s.integer(0));
                   return common::ok_status();
                 });
  return version;
}

std::string SqliteStore::journal_mode() {
  std::lock_guard lock(mutex_);
  std::string mode;
  (void)each_row(Statement(db_, prepared("PRAGMA journal_mode")), "reading the journal mode",
                 [&](const Statement& s) {
                   mode = s.text(0);
                   return common::ok_status();
                 });
  return mode;
}

Status SqliteStore::migrate() {
  const int current = schema_version();
  if (current > kSchemaVersion) {
    return Error(Errc::kConflict, "the database has schema version " + std::to_string(current) +
                                      ", newer than this orchestrator understands (" +
                                      std::to_string(kSchemaVersion) + "); run a newer fota-orchestrator");
  }
  for (int v = current; v < kSchemaVersion; ++v) {
    const std::string sql = std::string("BEGIN IMMEDIATE;") + kMigrations[v] +
                            "PRAGMA user_version=" + std::to_string(v + 1) + ";COMMIT;";
    if (auto st = exec(sql.c_str()); !st) {
      (void)exec("ROLLBACK");
      return st.error().with_context("schema migration to version " + std::to_string(v + 1));
    }
  }
  return common::ok_status();
}

Status SqliteStore::backfill_version_keys() {
  return transaction([&]() -> Status {
    std::vector<std::pair<std::string, std::string>> missing;
    auto st = each_row(Statement(db_, prepared("SELECT id, version FROM devices WHERE version_key = '' AND "
                                               "version <> ''")),
                       "reading versions to index", [&](const Statement& s) {
                         missing.emplace_back(s.text(0), s.text(1));
                         return common::ok_status();
                       });
    if (!st) return st;
    for (const auto& [id, version] : missing) {
      st = run(Statement(db_, prepared("UPDATE devices SET version_key = ?2 WHERE id = ?1")),
               "indexing a version", id, version_sort_key(version));
      if (!st) return st;
    }
    return common::ok_status();
  });
}

Status Store::upsert_devices(const std::vector<DeviceRecord>& devices) {
  for (const DeviceRecord& d : devices) {
    if (auto st = upsert_device(d); !st) return st;
  }
  return common::ok_status();
}

Status Store::write(const StoreBatch& batch, Millis now, const std::vector<WebhookDelivery>& deliveries) {
  const Status written = transaction([&]() -> Status {
    if (!batch.devices.empty()) {
      if (auto st = upsert_devices(batch.devices); !st) return st;
    }
    for (Rollout* r : batch.rollouts) {
      if (auto st = save_rollout(*r); !st) return st;
    }
    if (!batch.samples.empty()) {
      if (auto st = append_update_samples(batch.samples); !st) return st;
    }
    if (batch.prune_samples) {
      if (auto st = prune_update_samples(kHistoryKept); !st) return st;
    }
    for (const EventRecord& e : batch.events) {
      if (auto st = append_event(e); !st) return st;
    }
    if (!batch.logs.empty()) {
      if (auto st = append_logs(batch.logs); !st) return st;
    }
    for (const RevocationRecord& r : batch.revocations) {
      if (auto st = upsert_revocation(r); !st) return st;
    }
    for (const std::string& id : batch.removed_devices) {
      if (auto st = delete_device(id); !st) return st;
    }
    for (const GroupRecord& g : batch.created_groups) {
      if (auto st = create_group(g); !st) return st;
    }
    for (const GroupMemberChange& c : batch.member_changes) {
      if (auto st = set_group_member(c); !st) return st;
    }
    for (const DeviceTagChange& c : batch.tag_changes) {
      if (auto st = set_device_tag(c); !st) return st;
    }
    for (const std::string& name : batch.deleted_groups) {
      if (auto st = delete_group(name); !st) return st;
    }
    for (const AuditRecord& a : batch.audit) {
      if (auto st = append_audit(a.actor, a.action, a.detail, now); !st) return st.error();
    }
    for (const WebhookDelivery& d : deliveries) {
      if (auto st = upsert_webhook_delivery(d); !st) return st;
    }
    return common::ok_status();
  });
  // Saved only once committed: a batch that fails later (an audit or event write) leaves its
  // rollouts dirty, so the next save writes them again.
  if (written) {
    for (Rollout* r : batch.rollouts) {
      r->dirty = false;
      for (Member& m : r->members) m.dirty = false;
    }
  }
  return written;
}

Status SqliteStore::transaction(const std::function<Status()>& body) {
  std::lock_guard lock(mutex_);
  if (transaction_depth_ > 0) {
    ++transaction_depth_;
    Status st = body();
    --transaction_depth_;
    return st;
  }
  if (auto st = exec("BEGIN IMMEDIATE"); !st) return st;
  ++transaction_depth_;
  Status st;
  try {
    st = body();
  } catch (const std::exception& e) {
    st = Error(Errc::kInternal, std::string("transaction body threw: ") + e.what());
  }
  --transaction_depth_;
  if (!st) {
    (void)exec("ROLLBACK");
    return st;
  }
  return exec("COMMIT");
}

Status SqliteStore::upsert_device(const DeviceRecord& d) {
  std::lock_guard lock(mutex_);
  auto st = run(
      Statement(
          db_,
          prepared(
              "INSERT INTO devices (id, hardware, time_zone, artifact_id, version, tags, grp, online, "
              "last_seen_ms, client_version, security_counter, free_bytes, pending_deployment_id, "
              "registered_ms, last_phase, last_error, certificate_not_after, decryption_key_id, "
              "measured_download_rate, measured_verify_rate, measured_reboot_ms, measured_health_check_ms, "
              "version_key) "
              "VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?18,?20,?21,?22,?23,?19) "
              "ON CONFLICT(id) "
              "DO "
              "UPDATE SET hardware=?2, time_zone=?3, artifact_id=?4, version=?5, tags=?6, grp=?7, online=?8, "
              "last_seen_ms=?9, client_version=?10, security_counter=?11, free_bytes=?12, "
              "pending_deployment_id=?13, last_phase=?15, last_error=?16, certificate_not_after=?17, "
              "decryption_key_id=?18, version_key=?19, measured_download_rate=?20, measured_verify_rate=?21, "
              "measured_reboot_ms=?22, measured_health_check_ms=?23")),
      "saving a device", d.facts.id, d.facts.hardware_type, d.facts.time_zone, d.facts.artifact_id,
      d.facts.version, join_tags(d.facts.tags), d.facts.group, d.facts.online, d.facts.last_seen_ms,
      d.client_version, d.security_counter, d.free_bytes, d.pending_deployment_id, d.registered_ms,
      d.last_phase, d.last_error, d.certificate_not_after, d.facts.decryption_key_id,
      version_sort_key(d.facts.version), d.measured.download_bytes_per_second,
      d.measured.verify_bytes_per_second, d.measured.reboot_ms, d.measured.health_check_ms);
  if (!st) return st.error().with_context("device " + d.facts.id);
  return st;
}

namespace {
const std::string kLoadDevices =
    std::string("SELECT ") + store_rows::kDeviceColumns + " FROM devices ORDER BY id";
const std::string kLoadMembers = std::string("SELECT ") + store_rows::kMemberColumns +
                                 " FROM members WHERE rollout_id = ?1 ORDER BY wave, device_id";
const std::string kReadDevice =
    std::string("SELECT ") + store_rows::kDeviceColumns + " FROM devices WHERE id = ?1";
}  // namespace

Result<std::vector<DeviceRecord>> SqliteStore::load_devices() {
  std::lock_guard lock(mutex_);
  std::vector<DeviceRecord> out;
  auto st =
      each_row(Statement(db_, prepared(kLoadDevices.c_str())), "loading devices", [&](const Statement& s) {
        out.push_back(store_rows::read_device(s));
        return common::ok_status();
      });
  if (!st) return st.error();
  return out;
}

Result<DeviceRecord> SqliteStore::device(const std::string& id) {
  std::lock_guard lock(mutex_);
  std::optional<DeviceRecord> found;
  auto st = each_row(
      Statement(db_, prepared(kReadDevice.c_str())), "reading a device",
      [&](const Statement& s) {
        found = store_rows::read_device(s);
        return common::ok_status();
      },
      id);
  if (!st) return st.error().with_context("device " + id);
  if (!found) return Error(Errc::kNotFound, "device '" + id + "' is not registered");
  return std::move(*found);
}

Status SqliteStore::delete_device(const std::string& id) {
  auto st = transaction([&]() -> Status {
    for (const char* sql :
         {"DELETE FROM devices WHERE id = ?1", "DELETE FROM device_tags WHERE device_id = ?1",
          "DELETE FROM group_members WHERE device_id = ?1"}) {
      if (auto deleted = run(Statement(db_, prepared(sql)), "deleting a device", id); !deleted)
        return deleted;
    }
    return common::ok_status();
  });
  if (!st) return st.error().with_context("device " + id);
  return st;
}

Status SqliteStore::set_device_tag(const DeviceTagChange& c) {
  std::lock_guard lock(mutex_);
  auto st = c.present
                ? run(Statement(db_, prepared("INSERT INTO device_tags (device_id, tag) VALUES (?1, ?2) "
                                              "ON CONFLICT DO NOTHING")),
                      "tagging a device", c.device_id, c.tag)
                : run(Statement(db_, prepared("DELETE FROM device_tags WHERE device_id = ?1 AND tag = ?2")),
                      "untagging a device", c.device_id, c.tag);
  if (!st) return st.error().with_context("device " + c.device_id + " tag " + c.tag);
  return st;
}

Result<std::vector<DeviceTagChange>> SqliteStore::load_device_tags() {
  std::lock_guard lock(mutex_);
  std::vector<DeviceTagChange> out;
  auto st =
      each_row(Statement(db_, prepared("SELECT device_id, tag FROM device_tags ORDER BY device_id, tag")),
               "loading device tags", [&](const Statement& s) {
                 out.push_back(DeviceTagChange{s.text(0), s.text(1), true});
                 return common::ok_status();
               });
  if (!st) return st.error();
  return out;
}

Status SqliteStore::create_group(const GroupRecord& g) {
  std::lock_guard lock(mutex_);
  bool exists = false;
  auto st = each_row(
      Statement(db_, prepared("SELECT 1 FROM device_groups WHERE name = ?1")), "reading a group",
      [&](const Statement&) {
        exists = true;
        return common::ok_status();
      },
      g.name);
  if (!st) return st;
  if (exists) return Error(Errc::kAlreadyExists, "group '" + g.name + "' exists");
  return run(Statement(db_, prepared("INSERT INTO device_groups (name, selector, created_ms, actor) VALUES "
                                     "(?1, ?2, ?3, ?4)")),
             "saving a group", g.name, g.selector, g.created_ms, g.actor);
}

Status SqliteStore::set_group_member(const GroupMemberChange& c) {
  std::lock_guard lock(mutex_);
  return c.present ? run(Statement(db_, prepared("INSERT INTO group_members (group_name, device_id) VALUES "
                                                 "(?1, ?2) ON CONFLICT DO NOTHING")),
                         "adding a group member", c.group, c.device_id)
                   : run(Statement(db_, prepared("DELETE FROM group_members WHERE group_name = ?1 AND "
                                                 "device_id = ?2")),
                         "removing a group member", c.group, c.device_id);
}

Status SqliteStore::delete_group(const std::string& name) {
  return transaction([&]() -> Status {
    for (const char* sql :
         {"DELETE FROM group_members WHERE group_name = ?1", "DELETE FROM device_groups WHERE name = ?1"}) {
      if (auto st = run(Statement(db_, prepared(sql)), "deleting a group", name); !st) return st;
    }
    return common::ok_status();
  });
}

Result<std::vector<GroupRecord>> SqliteStore::load_groups() {
  std::lock_guard lock(mutex_);
  std::vector<GroupRecord> out;
  auto st = each_row(Statement(db_, prepared("SELECT name, selector, created_ms, actor FROM device_groups "
                                             "ORDER BY name")),
                     "loading groups", [&](const Statement& s) {
                       out.push_back(GroupRecord{s.text(0), s.text(1), s.integer(2), s.text(3), {}});
                       return common::ok_status();
                     });
  if (!st) return st.error();
  for (GroupRecord& g : out) {
    st = each_row(
        Statement(db_,
                  prepared("SELECT device_id FROM group_members WHERE group_name = ?1 ORDER BY device_id")),
        "loading group members",
        [&](const Statement& s) {
          g.members.push_back(s.text(0));
          return common::ok_status();
        },
        g.name);
    if (!st) return st.error().with_context("group " + g.name);
  }
  return out;
}

Result<DevicePage> SqliteStore::query_devices(const DeviceQuery& q) {
  const auto [sql, args] = store_rows::device_query_sql(
      q, [](std::size_t) { return std::string("?"); }, "LIKE");

  std::lock_guard lock(mutex_);
  sqlite3_stmt* raw = nullptr;
  if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &raw, nullptr) != SQLITE_OK) {
    sqlite3_finalize(raw);
    return Error(Errc::kIo, std::string("preparing the device query: ") + sqlite3_errmsg(db_));
  }
  std::unique_ptr<sqlite3_stmt, int (*)(sqlite3_stmt*)> stmt(raw, sqlite3_finalize);
  for (std::size_t i = 0; i < args.size(); ++i) {
    const int at = static_cast<int>(i + 1);
    if (const auto* text = std::get_if<std::string>(&args[i])) {
      sqlite3_bind_text(raw, at, text->data(), static_cast<int>(text->size()), SQLITE_STATIC);
    } else {
      sqlite3_bind_int64(raw, at, std::get<std::int64_t>(args[i]));
    }
  }
  DevicePage page;
  int rc;
  while ((rc = sqlite3_step(raw)) == SQLITE_ROW) {
    const auto* p = sqlite3_column_text(raw, 0);
    page.ids.emplace_back(p ? reinterpret_cast<const char*>(p) : "");
  }
  if (rc != SQLITE_DONE) return Error(Errc::kIo, std::string("querying devices: ") + sqlite3_errmsg(db_));
  store_rows::finish_page(page, q.limit);
  return page;
}

Status SqliteStore::upsert_revocation(const RevocationRecord& r) {
  std::lock_guard lock(mutex_);
  auto st =
      run(Statement(db_, prepared("INSERT INTO revocations (device_id, reason, actor, revoked_ms, "
                                  "decommissioned_ms) VALUES (?1,?2,?3,?4,?5) ON CONFLICT(device_id) "
                                  "DO UPDATE SET reason=?2, actor=?3, revoked_ms=?4, decommissioned_ms=?5")),
          "saving a revocation", r.device_id, r.reason, r.actor, r.revoked_ms, r.decommissioned_ms);
  if (!st) return st.error().with_context("device " + r.device_id);
  return st;
}

Result<std::vector<RevocationRecord>> SqliteStore::load_revocations() {
  std::lock_guard lock(mutex_);
  std::vector<RevocationRecord> out;
  auto st =
      each_row(Statement(db_, prepared("SELECT device_id, reason, actor, revoked_ms, decommissioned_ms "
                                       "FROM revocations ORDER BY device_id")),
               "loading revocations", [&](const Statement& s) {
                 out.push_back(RevocationRecord{s.text(0), s.text(1), s.text(2), s.integer(3), s.integer(4)});
                 return common::ok_status();
               });
  if (!st) return st.error();
  return out;
}

Status SqliteStore::save_rollout(const Rollout& r) {
  return transaction([&]() -> Status {
    if (r.dirty) {
      auto st =
          run(Statement(db_, prepared("INSERT INTO rollouts (id, spec, state, created_ms, started_ms, "
                                      "finished_ms, targets_resolved, reason, waves) VALUES "
                                      "(?1,?2,?3,?4,?5,?6,?7,?8,?9) ON CONFLICT(id) DO UPDATE SET "
                                      "spec=?2, state=?3, started_ms=?5, finished_ms=?6, "
                                      "targets_resolved=?7, reason=?8, waves=?9")),
              "saving a rollout", r.id, rollout_spec_to_json(r.spec), rollout_state_name(r.state),
              r.created_ms, r.started_ms, r.finished_ms, r.targets_resolved, r.reason, waves_json(r.waves));
      if (!st) return st.error().with_context("rollout " + r.id);
    }
    Statement m(db_,
                prepared("INSERT OR REPLACE INTO members (rollout_id, device_id, wave, state, phase, "
                         "since_ms, attempt, command_seq, command_id, retry_at_ms, previous_artifact_id, "
                         "last_error, bytes_done, bytes_total, last_sequence, started_ms, finished_ms, "
                         "late_joiner, bytes_reused) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,"
                         "?15,?16,?17,?18,?19)"));
    if (!m.ok()) return m.error("preparing member save");
    for (const Member& x : r.members) {
      if (!x.dirty) continue;
      m.bind_all(r.id, x.device_id, x.wave, member_state_name(x.state), static_cast<int>(x.phase), x.since_ms,
                 x.attempt, x.command_seq, x.command_id, x.retry_at_ms, x.previous_artifact_id, x.last_error,
                 x.bytes_done, x.bytes_total, x.last_sequence, x.started_ms, x.finished_ms, x.late_joiner,
                 x.bytes_reused);
      if (m.step() != SQLITE_DONE) return m.error("saving member " + x.device_id + " of rollout " + r.id);
      m.rewind();
    }
    return common::ok_status();
  });
}

Result<std::vector<Rollout>> SqliteStore::load_rollouts() {
  std::lock_guard lock(mutex_);
  std::vector<Rollout> out;
  auto st = each_row(
      Statement(db_,
                prepared("SELECT id, spec, state, created_ms, started_ms, finished_ms, targets_resolved, "
                         "reason, waves FROM rollouts ORDER BY created_ms, id")),
      "loading rollouts", [&](const Statement& s) -> Status {
        auto r = store_rows::read_rollout(s);
        if (!r) return r.error();
        out.push_back(std::move(r).value());
        return common::ok_status();
      });
  if (!st) return st.error();
  for (Rollout& r : out) {
    st = each_row(
        Statement(db_, prepared(kLoadMembers.c_str())), "loading members",
        [&](const Statement& m) -> Status {
          auto x = store_rows::read_member(m, r.id);
          if (!x) return x.error();
          r.members.push_back(std::move(x).value());
          return common::ok_status();
        },
        r.id);
    if (!st) return st.error().with_context("rollout " + r.id);
    r.rebuild_index();
  }
  return out;
}

Status SqliteStore::append_update_samples(const std::vector<UpdateSample>& samples) {
  return transaction([&]() -> Status {
    for (const UpdateSample& x : samples) {
      auto st = run(Statement(db_, prepared("INSERT OR IGNORE INTO update_samples (rollout_id, device_id, "
                                            "attempt, finished_ms, concurrency, baseline_ms, duration_ms) "
                                            "VALUES (?1,?2,?3,?4,?5,?6,?7)")),
                    "saving an update sample", x.rollout_id, x.device_id, x.attempt, x.finished_ms,
                    x.concurrency, x.baseline_ms, x.duration_ms);
      if (!st) return st;
    }
    return common::ok_status();
  });
}

Result<std::vector<UpdateSample>> SqliteStore::update_samples(std::size_t limit) {
  std::lock_guard lock(mutex_);
  std::vector<UpdateSample> out;
  auto st = each_row(
      Statement(db_, prepared("SELECT rollout_id, device_id, attempt, finished_ms, concurrency, baseline_ms, "
                              "duration_ms FROM update_samples ORDER BY finished_ms DESC LIMIT ?1")),
      "reading update samples",
      [&](const Statement& s) {
        out.push_back(UpdateSample{s.text(0), s.text(1), static_cast<std::uint32_t>(s.integer(2)),
                                   s.integer(3), static_cast<std::size_t>(s.integer(4)), s.integer(5),
                                   s.integer(6)});
        return common::ok_status();
      },
      limit);
  if (!st) return st.error();
  std::reverse(out.begin(), out.end());
  return out;
}

Status SqliteStore::prune_update_samples(std::size_t keep) {
  std::lock_guard lock(mutex_);
  return run(
      Statement(db_, prepared("DELETE FROM update_samples WHERE finished_ms < (SELECT finished_ms FROM "
                              "update_samples ORDER BY finished_ms DESC LIMIT 1 OFFSET ?1)")),
      "pruning update samples",
      static_cast<std::int64_t>(std::max<std::size_t>(keep, 1) - 1));  // the oldest kept
}

Status SqliteStore::append_event(const EventRecord& e) {
  std::lock_guard lock(mutex_);
  return run(Statement(db_, prepared("INSERT INTO events (time_ms, device_id, rollout_id, kind, detail) "
                                     "VALUES (?1,?2,?3,?4,?5)")),
             "appending an event", e.time_ms, e.device_id, e.rollout_id, e.kind, e.detail);
}

Result<std::vector<EventRecord>> SqliteStore::events(const std::string& device, const std::string& rollout,
                                                     std::size_t limit, std::int64_t before_id) {
  std::lock_guard lock(mutex_);
  std::vector<EventRecord> out;
  auto st = each_row(
      Statement(db_, prepared("SELECT id, time_ms, device_id, rollout_id, kind, detail FROM events WHERE "
                              "(?1 = '' OR device_id = ?1) AND (?2 = '' OR rollout_id = ?2) AND (?4 = 0 OR "
                              "id < ?4) ORDER BY id DESC LIMIT ?3")),
      "reading events",
      [&](const Statement& s) {
        out.push_back(EventRecord{s.integer(0), s.integer(1), s.text(2), s.text(3), s.text(4), s.text(5)});
        return common::ok_status();
      },
      device, rollout, limit, before_id);
  if (!st) return st.error();
  return out;
}

Status SqliteStore::append_logs(const std::vector<LogRecord>& logs) {
  return transaction([&]() -> Status {
    for (const LogRecord& l : logs) {
      auto st = run(Statement(db_, prepared("INSERT INTO device_logs (device_id, time_ms, level, message, "
                                            "source) VALUES (?1,?2,?3,?4,?5)")),
                    "appending a device log", l.device_id, l.time_ms, l.level, l.message, l.source);
      if (!st) return st;
    }
    return common::ok_status();
  });
}

Result<std::vector<LogRecord>> SqliteStore::logs(const std::string& device, std::int64_t after_id,
                                                 std::size_t limit) {
  std::lock_guard lock(mutex_);
  std::vector<LogRecord> out;
  auto st = each_row(
      Statement(db_, prepared("SELECT id, device_id, time_ms, level, message, source FROM device_logs WHERE "
                              "device_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3")),
      "reading device logs",
      [&](const Statement& s) {
        out.push_back(LogRecord{s.integer(0), s.text(1), s.integer(2), static_cast<int>(s.integer(3)),
                                s.text(4), s.text(5)});
        return common::ok_status();
      },
      device, after_id, limit);
  if (!st) return st.error();
  return out;
}

Status SqliteStore::create_webhook(const WebhookRecord& w) {
  std::lock_guard lock(mutex_);
  auto st = run(Statement(db_, prepared("INSERT INTO webhooks (id, url, events, secret, ca_file, created_ms, "
                                        "actor) VALUES (?1,?2,?3,?4,?5,?6,?7)")),
                "saving a webhook", w.id, w.url, store_rows::join_tags(w.events), w.secret, w.ca_file,
                w.created_ms, w.actor);
  if (!st) return st.error().with_context("webhook " + w.id);
  return st;
}

Status SqliteStore::delete_webhook(const std::string& id) {
  return transaction([&]() -> Status {
    auto st = run(Statement(db_, prepared("DELETE FROM webhook_deliveries WHERE webhook_id = ?1")),
                  "deleting a webhook's deliveries", id);
    if (!st) return st;
    return run(Statement(db_, prepared("DELETE FROM webhooks WHERE id = ?1")), "deleting a webhook", id);
  });
}

Result<std::vector<WebhookRecord>> SqliteStore::load_webhooks() {
  std::lock_guard lock(mutex_);
  std::vector<WebhookRecord> out;
  auto st =
      each_row(Statement(db_, prepared("SELECT id, url, events, secret, ca_file, created_ms, actor FROM "
                                       "webhooks ORDER BY id")),
               "loading webhooks", [&](const Statement& s) {
                 out.push_back(WebhookRecord{s.text(0), s.text(1), store_rows::split_tags(s.text(2)),
                                             s.text(3), s.text(4), s.integer(5), s.text(6)});
                 return common::ok_status();
               });
  if (!st) return st.error();
  return out;
}

Status SqliteStore::upsert_webhook_delivery(const WebhookDelivery& d) {
  std::lock_guard lock(mutex_);
  auto st = run(Statement(db_, prepared("INSERT INTO webhook_deliveries (" FOTA_WEBHOOK_DELIVERY_COLUMNS
                                        ") VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11) ON CONFLICT(id) DO "
                                        "UPDATE SET state=?6, attempts=?7, next_attempt_ms=?8, "
                                        "last_status=?9, last_error=?10, finished_ms=?11")),
                "saving a webhook delivery", d.id, d.webhook_id, d.event, d.body, d.created_ms, d.state,
                d.attempts, d.next_attempt_ms, d.last_status, d.last_error, d.finished_ms);
  if (!st) return st.error().with_context("webhook delivery " + d.id);
  return st;
}

Result<std::vector<WebhookDelivery>> SqliteStore::due_webhook_deliveries(Millis now, std::size_t limit) {
  std::lock_guard lock(mutex_);
  std::vector<WebhookDelivery> out;
  auto st = each_row(
      Statement(db_, prepared("SELECT " FOTA_WEBHOOK_DELIVERY_COLUMNS
                              " FROM webhook_deliveries WHERE state = 'pending' AND "
                              "next_attempt_ms <= ?1 ORDER BY next_attempt_ms, id LIMIT ?2")),
      "reading due webhook deliveries",
      [&](const Statement& s) {
        out.push_back(store_rows::read_webhook_delivery(s));
        return common::ok_status();
      },
      now, static_cast<std::int64_t>(limit));
  if (!st) return st.error();
  return out;
}

Result<std::vector<WebhookDelivery>> SqliteStore::webhook_deliveries(const std::string& webhook_id,
                                                                     const std::string& state,
                                                                     std::size_t limit) {
  std::lock_guard lock(mutex_);
  std::vector<WebhookDelivery> out;
  auto st = each_row(
      Statement(db_, prepared("SELECT " FOTA_WEBHOOK_DELIVERY_COLUMNS
                              " FROM webhook_deliveries WHERE webhook_id = ?1 AND (?2 = '' OR "
                              "state = ?2) ORDER BY created_ms DESC, id DESC LIMIT ?3")),
      "reading webhook deliveries",
      [&](const Statement& s) {
        out.push_back(store_rows::read_webhook_delivery(s));
        return common::ok_status();
      },
      webhook_id, state, static_cast<std::int64_t>(limit));
  if (!st) return st.error();
  return out;
}

Result<std::map<std::string, std::int64_t>> SqliteStore::webhook_delivery_counts() {
  std::lock_guard lock(mutex_);
  std::map<std::string, std::int64_t> out;
  auto st =
      each_row(Statement(db_, prepared("SELECT state, COUNT(*) FROM webhook_deliveries GROUP BY state")),
               "counting webhook deliveries", [&](const Statement& s) {
                 out[s.text(0)] = s.integer(1);
                 return common::ok_status();
               });
  if (!st) return st.error();
  return out;
}

Result<AuditEntry> SqliteStore::append_audit(const std::string& actor, const std::string& action,
                                             const std::string& detail, Millis now) {
  AuditEntry e;
  auto st = transaction([&]() -> Status {
    e.seq = 1;
    e.prev_hash = genesis_hash();
    auto head = each_row(Statement(db_, prepared("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")),
                         "reading the audit head", [&](const Statement& s) {
                           e.seq = s.integer(0) + 1;
                           e.prev_hash = s.text(1);
                           return common::ok_status();
                         });
    if (!head) return head;
    e.time_ms = now;
    e.actor = actor;
    e.action = action;
    e.detail = detail;
    e.hash = audit_entry_hash(e);
    return run(Statement(db_, prepared("INSERT INTO audit (seq, time_ms, actor, action, detail, prev_hash, "
                                       "hash) VALUES (?1,?2,?3,?4,?5,?6,?7)")),
               "appending an audit entry", e.seq, e.time_ms, e.actor, e.action, e.detail, e.prev_hash,
               e.hash);
  });
  if (!st) return st.error();
  return e;
}

Result<std::vector<AuditEntry>> SqliteStore::audit_entries(std::int64_t after_seq, std::size_t limit) {
  std::lock_guard lock(mutex_);
  std::vector<AuditEntry> out;
  auto st = each_row(
      Statement(db_, prepared("SELECT seq, time_ms, actor, action, detail, prev_hash, hash FROM audit WHERE "
                              "seq > ?1 ORDER BY seq LIMIT ?2")),
      "reading the audit log",
      [&](const Statement& s) {
        out.push_back(
            AuditEntry{s.integer(0), s.integer(1), s.text(2), s.text(3), s.text(4), s.text(5), s.text(6)});
        return common::ok_status();
      },
      after_seq, limit);
  if (!st) return st.error();
  return out;
}

}  // namespace fota::orchestrator

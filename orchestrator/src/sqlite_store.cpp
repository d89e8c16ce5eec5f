#include <sqlite3.h>

#include <nlohmann/json.hpp>

#include "fota/orchestrator/store.hpp"

namespace fota::orchestrator {

using common::Errc;
using common::Error;
using common::Result;
using common::Status;

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
};
static_assert(sizeof(kMigrations) / sizeof(kMigrations[0]) == SqliteStore::kSchemaVersion);

// RAII prepared statement with positional binds.
class Statement {
 public:
  Statement(sqlite3* db, const char* sql) : db_(db) {
    if (sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr) != SQLITE_OK) stmt_ = nullptr;
  }
  ~Statement() { sqlite3_finalize(stmt_); }
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  bool ok() const { return stmt_ != nullptr; }
  Statement& bind(int i, const std::string& v) {
    sqlite3_bind_text(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Statement& bind(int i, std::int64_t v) {
    sqlite3_bind_int64(stmt_, i, v);
    return *this;
  }
  void reset() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }
  // SQLITE_ROW, SQLITE_DONE or an error code.
  int step() { return sqlite3_step(stmt_); }
  std::string text(int i) const {
    const auto* p = sqlite3_column_text(stmt_, i);
    return p ? std::string(reinterpret_cast<const char*>(p),
                           static_cast<std::size_t>(sqlite3_column_bytes(stmt_, i)))
             : std::string();
  }
  std::int64_t integer(int i) const { return sqlite3_column_int64(stmt_, i); }
  Error error(const std::string& what) const { return Error(Errc::kIo, what + ": " + sqlite3_errmsg(db_)); }

 private:
  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
};

std::string join(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : ",") + s;
  return out;
}
std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start < s.size()) {
    std::size_t end = s.find(',', start);
    if (end == std::string::npos) end = s.size();
    if (end > start) out.push_back(s.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

}  // namespace

SqliteStore::SqliteStore(sqlite3* db, std::filesystem::path path) : db_(db), path_(std::move(path)) {}
SqliteStore::~SqliteStore() { sqlite3_close_v2(db_); }

Result<std::unique_ptr<SqliteStore>> SqliteStore::open(const std::filesystem::path& path) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
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
  Statement s(db_, "PRAGMA user_version");
  return s.ok() && s.step() == SQLITE_ROW ? static_cast<int>(s.integer(0)) : -1;
}

std::string SqliteStore::journal_mode() {
  std::lock_guard lock(mutex_);
  Statement s(db_, "PRAGMA journal_mode");
  return s.ok() && s.step() == SQLITE_ROW ? s.text(0) : std::string();
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
  Statement s(
      db_,
      "INSERT INTO devices (id, hardware, time_zone, artifact_id, version, tags, grp, online, last_seen_ms, "
      "client_version, security_counter, free_bytes, pending_deployment_id, registered_ms, last_phase, "
      "last_error) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16) ON CONFLICT(id) DO UPDATE "
      "SET hardware=?2, time_zone=?3, artifact_id=?4, version=?5, tags=?6, grp=?7, online=?8, "
      "last_seen_ms=?9, client_version=?10, security_counter=?11, free_bytes=?12, "
      "pending_deployment_id=?13, last_phase=?15, last_error=?16");
  if (!s.ok()) return s.error("preparing device upsert");
  s.bind(1, d.facts.id)
      .bind(2, d.facts.hardware_type)
      .bind(3, d.facts.time_zone)
      .bind(4, d.facts.artifact_id)
      .bind(5, d.facts.version)
      .bind(6, join(d.facts.tags))
      .bind(7, d.facts.group)
      .bind(8, std::int64_t{d.facts.online ? 1 : 0})
      .bind(9, d.facts.last_seen_ms)
      .bind(10, d.client_version)
      .bind(11, static_cast<std::int64_t>(d.security_counter))
      .bind(12, static_cast<std::int64_t>(d.free_bytes))
      .bind(13, d.pending_deployment_id)
      .bind(14, d.registered_ms)
      .bind(15, d.last_phase)
      .bind(16, d.last_error);
  if (s.step() != SQLITE_DONE) return s.error("saving device " + d.facts.id);
  return common::ok_status();
}

namespace {
const char* const kDeviceColumns =
    "SELECT id, hardware, time_zone, artifact_id, version, tags, grp, online, last_seen_ms, client_version, "
    "security_counter, free_bytes, pending_deployment_id, registered_ms, last_phase, last_error FROM devices";

DeviceRecord read_device(const Statement& s) {
  DeviceRecord d;
  d.facts.id = s.text(0);
  d.facts.hardware_type = s.text(1);
  d.facts.time_zone = s.text(2);
  d.facts.artifact_id = s.text(3);
  d.facts.version = s.text(4);
  d.facts.tags = split(s.text(5));
  d.facts.group = s.text(6);
  d.facts.online = s.integer(7) != 0;
  d.facts.last_seen_ms = s.integer(8);
  d.client_version = s.text(9);
  d.security_counter = static_cast<std::uint64_t>(s.integer(10));
  d.free_bytes = static_cast<std::uint64_t>(s.integer(11));
  d.pending_deployment_id = s.text(12);
  d.registered_ms = s.integer(13);
  d.last_phase = s.text(14);
  d.last_error = s.text(15);
  return d;
}
}  // namespace

Result<std::vector<DeviceRecord>> SqliteStore::load_devices() {
  std::lock_guard lock(mutex_);
  Statement s(db_, (std::string(kDeviceColumns) + " ORDER BY id").c_str());
  if (!s.ok()) return s.error("preparing device load");
  std::vector<DeviceRecord> out;
  int rc;
  while ((rc = s.step()) == SQLITE_ROW) out.push_back(read_device(s));
  if (rc != SQLITE_DONE) return s.error("loading devices");
  return out;
}

Result<DeviceRecord> SqliteStore::device(const std::string& id) {
  std::lock_guard lock(mutex_);
  Statement s(db_, (std::string(kDeviceColumns) + " WHERE id = ?1").c_str());
  if (!s.ok()) return s.error("preparing device read");
  s.bind(1, id);
  const int rc = s.step();
  if (rc == SQLITE_ROW) return read_device(s);
  if (rc == SQLITE_DONE) return Error(Errc::kNotFound, "device '" + id + "' is not registered");
  return s.error("reading device " + id);
}

Status SqliteStore::save_rollout(Rollout& r) {
  return transaction([&]() -> Status {
    if (r.dirty) {
      nlohmann::json waves = nlohmann::json::array();
      for (const WaveState& w : r.waves) {
        waves.push_back({{"status", std::string(wave_status_name(w.status))},
                         {"planned_size", w.planned_size},
                         {"started_ms", w.started_ms},
                         {"gate_passed_ms", w.gate_passed_ms},
                         {"finished_ms", w.finished_ms},
                         {"breach_overridden", w.breach_overridden}});
      }
      Statement s(
          db_,
          "INSERT INTO rollouts (id, spec, state, created_ms, started_ms, finished_ms, targets_resolved, "
          "reason, waves) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9) ON CONFLICT(id) DO UPDATE SET spec=?2, "
          "state=?3, started_ms=?5, finished_ms=?6, targets_resolved=?7, reason=?8, waves=?9");
      if (!s.ok()) return s.error("preparing rollout save");
      s.bind(1, r.id)
          .bind(2, rollout_spec_to_json(r.spec))
          .bind(3, std::string(rollout_state_name(r.state)))
          .bind(4, r.created_ms)
          .bind(5, r.started_ms)
          .bind(6, r.finished_ms)
          .bind(7, std::int64_t{r.targets_resolved ? 1 : 0})
          .bind(8, r.reason)
          .bind(9, waves.dump());
      if (s.step() != SQLITE_DONE) return s.error("saving rollout " + r.id);
    }
    Statement m(
        db_,
        "INSERT OR REPLACE INTO members (rollout_id, device_id, wave, state, phase, since_ms, attempt, "
        "command_seq, command_id, retry_at_ms, previous_artifact_id, last_error, bytes_done, bytes_total, "
        "last_sequence, started_ms, finished_ms, late_joiner) VALUES "
        "(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16,?17,?18)");
    if (!m.ok()) return m.error("preparing member save");
    for (Member& x : r.members) {
      if (!x.dirty) continue;
      m.bind(1, r.id)
          .bind(2, x.device_id)
          .bind(3, std::int64_t{x.wave})
          .bind(4, std::string(member_state_name(x.state)))
          .bind(5, std::int64_t{x.phase})
          .bind(6, x.since_ms)
          .bind(7, std::int64_t{x.attempt})
          .bind(8, std::int64_t{x.command_seq})
          .bind(9, x.command_id)
          .bind(10, x.retry_at_ms)
          .bind(11, x.previous_artifact_id)
          .bind(12, x.last_error)
          .bind(13, static_cast<std::int64_t>(x.bytes_done))
          .bind(14, static_cast<std::int64_t>(x.bytes_total))
          .bind(15, static_cast<std::int64_t>(x.last_sequence))
          .bind(16, x.started_ms)
          .bind(17, x.finished_ms)
          .bind(18, std::int64_t{x.late_joiner ? 1 : 0});
      if (m.step() != SQLITE_DONE) return m.error("saving member " + x.device_id + " of rollout " + r.id);
      m.reset();
    }
    for (Member& x : r.members) x.dirty = false;
    r.dirty = false;
    return common::ok_status();
  });
}

Result<std::vector<Rollout>> SqliteStore::load_rollouts() {
  std::lock_guard lock(mutex_);
  std::vector<Rollout> out;
  Statement s(
      db_,
      "SELECT id, spec, state, created_ms, started_ms, finished_ms, targets_resolved, reason, waves FROM "
      "rollouts ORDER BY created_ms, id");
  if (!s.ok()) return s.error("preparing rollout load");
  int rc;
  while ((rc = s.step()) == SQLITE_ROW) {
    Rollout r;
    r.id = s.text(0);
    auto spec = parse_rollout_spec(s.text(1));
    if (!spec) return spec.error().with_context("stored rollout " + r.id);
    r.spec = std::move(spec).value();
    auto state = parse_rollout_state(s.text(2));
    if (!state) return state.error().with_context("stored rollout " + r.id);
    r.state = *state;
    r.created_ms = s.integer(3);
    r.started_ms = s.integer(4);
    r.finished_ms = s.integer(5);
    r.targets_resolved = s.integer(6) != 0;
    r.reason = s.text(7);
    try {
      for (const auto& w : nlohmann::json::parse(s.text(8))) {
        WaveState ws;
        auto status = parse_wave_status(w.at("status").get<std::string>());
        if (!status) return status.error().with_context("stored rollout " + r.id);
        ws.status = *status;
        ws.planned_size = w.at("planned_size").get<std::uint32_t>();
        ws.started_ms = w.at("started_ms").get<Millis>();
        ws.gate_passed_ms = w.at("gate_passed_ms").get<Millis>();
        ws.finished_ms = w.at("finished_ms").get<Millis>();
        ws.breach_overridden = w.at("breach_overridden").get<bool>();
        r.waves.push_back(ws);
      }
    } catch (const nlohmann::json::exception& e) {
      return Error(Errc::kMalformed, "stored rollout " + r.id + " has unreadable wave state: " + e.what());
    }
    if (r.waves.size() != r.spec.waves.size()) r.waves.resize(r.spec.waves.size());
    r.dirty = false;
    out.push_back(std::move(r));
  }
  if (rc != SQLITE_DONE) return s.error("loading rollouts");
  for (Rollout& r : out) {
    Statement m(
        db_,
        "SELECT device_id, wave, state, phase, since_ms, attempt, command_seq, command_id, retry_at_ms, "
        "previous_artifact_id, last_error, bytes_done, bytes_total, last_sequence, started_ms, finished_ms, "
        "late_joiner FROM members WHERE rollout_id = ?1 ORDER BY wave, device_id");
    if (!m.ok()) return m.error("preparing member load");
    m.bind(1, r.id);
    while ((rc = m.step()) == SQLITE_ROW) {
      Member x;
      x.device_id = m.text(0);
      x.wave = static_cast<int>(m.integer(1));
      auto state = parse_member_state(m.text(2));
      if (!state) return state.error().with_context("stored member " + x.device_id + " of rollout " + r.id);
      x.state = *state;
      x.phase = static_cast<v1::Phase>(m.integer(3));
      x.since_ms = m.integer(4);
      x.attempt = static_cast<std::uint32_t>(m.integer(5));
      x.command_seq = static_cast<std::uint32_t>(m.integer(6));
      x.command_id = m.text(7);
      x.retry_at_ms = m.integer(8);
      x.previous_artifact_id = m.text(9);
      x.last_error = m.text(10);
      x.bytes_done = static_cast<std::uint64_t>(m.integer(11));
      x.bytes_total = static_cast<std::uint64_t>(m.integer(12));
      x.last_sequence = static_cast<std::uint64_t>(m.integer(13));
      x.started_ms = m.integer(14);
      x.finished_ms = m.integer(15);
      x.late_joiner = m.integer(16) != 0;
      x.dirty = false;
      r.members.push_back(std::move(x));
    }
    if (rc != SQLITE_DONE) return m.error("loading members of rollout " + r.id);
    r.rebuild_index();
  }
  return out;
}

Status SqliteStore::append_event(const EventRecord& e) {
  std::lock_guard lock(mutex_);
  Statement s(db_,
              "INSERT INTO events (time_ms, device_id, rollout_id, kind, detail) VALUES (?1,?2,?3,?4,?5)");
  if (!s.ok()) return s.error("preparing event append");
  s.bind(1, e.time_ms).bind(2, e.device_id).bind(3, e.rollout_id).bind(4, e.kind).bind(5, e.detail);
  if (s.step() != SQLITE_DONE) return s.error("appending event");
  return common::ok_status();
}

Result<std::vector<EventRecord>> SqliteStore::events(const std::string& device, const std::string& rollout,
                                                     std::size_t limit) {
  std::lock_guard lock(mutex_);
  Statement s(
      db_,
      "SELECT id, time_ms, device_id, rollout_id, kind, detail FROM events WHERE (?1 = '' OR device_id = ?1) "
      "AND (?2 = '' OR rollout_id = ?2) ORDER BY id DESC LIMIT ?3");
  if (!s.ok()) return s.error("preparing event read");
  s.bind(1, device).bind(2, rollout).bind(3, static_cast<std::int64_t>(limit));
  std::vector<EventRecord> out;
  int rc;
  while ((rc = s.step()) == SQLITE_ROW) {
    out.push_back(EventRecord{s.integer(0), s.integer(1), s.text(2), s.text(3), s.text(4), s.text(5)});
  }
  if (rc != SQLITE_DONE) return s.error("reading events");
  return out;
}

Status SqliteStore::append_logs(const std::vector<LogRecord>& logs) {
  return transaction([&]() -> Status {
    Statement s(
        db_, "INSERT INTO device_logs (device_id, time_ms, level, message, source) VALUES (?1,?2,?3,?4,?5)");
    if (!s.ok()) return s.error("preparing log append");
    for (const LogRecord& l : logs) {
      s.bind(1, l.device_id)
          .bind(2, l.time_ms)
          .bind(3, std::int64_t{l.level})
          .bind(4, l.message)
          .bind(5, l.source);
      if (s.step() != SQLITE_DONE) return s.error("appending device log");
      s.reset();
    }
    return common::ok_status();
  });
}

Result<std::vector<LogRecord>> SqliteStore::logs(const std::string& device, std::int64_t after_id,
                                                 std::size_t limit) {
  std::lock_guard lock(mutex_);
  Statement s(db_,
              "SELECT id, device_id, time_ms, level, message, source FROM device_logs WHERE device_id = ?1 "
              "AND id > ?2 "
              "ORDER BY id LIMIT ?3");
  if (!s.ok()) return s.error("preparing log read");
  s.bind(1, device).bind(2, after_id).bind(3, static_cast<std::int64_t>(limit));
  std::vector<LogRecord> out;
  int rc;
  while ((rc = s.step()) == SQLITE_ROW) {
    out.push_back(LogRecord{s.integer(0), s.text(1), s.integer(2), static_cast<int>(s.integer(3)), s.text(4),
                            s.text(5)});
  }
  if (rc != SQLITE_DONE) return s.error("reading device logs");
  return out;
}

Result<AuditEntry> SqliteStore::append_audit(const std::string& actor, const std::string& action,
                                             const std::string& detail, Millis now) {
  AuditEntry e;
  auto st = transaction([&]() -> Status {
    Statement last(db_, "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1");
    if (!last.ok()) return last.error("preparing audit head read");
    e.seq = 1;
    e.prev_hash = genesis_hash();
    const int rc = last.step();
    if (rc == SQLITE_ROW) {
      e.seq = last.integer(0) + 1;
      e.prev_hash = last.text(1);
    } else if (rc != SQLITE_DONE) {
      return last.error("reading the audit head");
    }
    e.time_ms = now;
    e.actor = actor;
    e.action = action;
    e.detail = detail;
    e.hash = audit_entry_hash(e);
    Statement s(db_,
                "INSERT INTO audit (seq, time_ms, actor, action, detail, prev_hash, hash) VALUES "
                "(?1,?2,?3,?4,?5,?6,?7)");
    if (!s.ok()) return s.error("preparing audit append");
    s.bind(1, e.seq)
        .bind(2, e.time_ms)
        .bind(3, e.actor)
        .bind(4, e.action)
        .bind(5, e.detail)
        .bind(6, e.prev_hash)
        .bind(7, e.hash);
    if (s.step() != SQLITE_DONE) return s.error("appending audit entry");
    return common::ok_status();
  });
  if (!st) return st.error();
  return e;
}

Result<std::vector<AuditEntry>> SqliteStore::audit_entries(std::int64_t after_seq, std::size_t limit) {
  std::lock_guard lock(mutex_);
  Statement s(db_,
              "SELECT seq, time_ms, actor, action, detail, prev_hash, hash FROM audit WHERE seq > ?1 ORDER "
              "BY seq LIMIT ?2");
  if (!s.ok()) return s.error("preparing audit read");
  s.bind(1, after_seq).bind(2, static_cast<std::int64_t>(limit));
  std::vector<AuditEntry> out;
  int rc;
  while ((rc = s.step()) == SQLITE_ROW) {
    out.push_back(
        AuditEntry{s.integer(0), s.integer(1), s.text(2), s.text(3), s.text(4), s.text(5), s.text(6)});
  }
  if (rc != SQLITE_DONE) return s.error("reading the audit log");
  return out;
}

}  // namespace fota::orchestrator

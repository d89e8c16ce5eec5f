// SPDX-License-Identifier: Apache-2.0
// The SQLite store on real files: migrations, WAL, reopen, batched transactions, kill -9, audit chain.
#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <random>

#include "fota/orchestrator/store.hpp"

namespace fota::orchestrator {
namespace {

constexpr const char* kArtifact = "0123456789abcdef0123456789abcdef";

class ScratchDir {
 public:
  ScratchDir() {
    std::random_device rd;
    path_ = std::filesystem::temp_directory_path() / ("fota-store-test-" + std::to_string(rd()));
    std::filesystem::create_directories(path_);
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

void raw_exec(const std::filesystem::path& db_path, const std::string& sql) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(db_path.c_str(), &db), SQLITE_OK);
  char* err = nullptr;
  EXPECT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err), SQLITE_OK) << (err ? err : "");
  sqlite3_free(err);
  sqlite3_close(db);
}

Rollout sample_rollout(const std::string& id) {
  auto spec = parse_rollout_spec(std::string("name: s\nartifact: ") + kArtifact +
                                 "\ntarget: {tags: [a]}\nwaves: [{size: 1, soak: 5m}, {size: 100%}]\n");
  EXPECT_TRUE(spec.ok());
  auto r = RolloutEngine::create(id, *spec, 1000);
  EXPECT_TRUE(r.ok());
  return std::move(r).value();
}

TEST(SqliteStoreTest, FreshDatabaseIsMigratedToTheLatestSchemaInWalMode) {
  ScratchDir dir;
  auto store = SqliteStore::open(dir.path() / "state.db");
  ASSERT_TRUE(store.ok()) << store.error().message;
  EXPECT_EQ((*store)->schema_version(), SqliteStore::kSchemaVersion);
  EXPECT_EQ((*store)->journal_mode(), "wal");
}

TEST(SqliteStoreTest, OlderSchemaIsMigratedKeepingItsData) {
  ScratchDir dir;
  const auto path = dir.path() / "state.db";
  {
    auto store = SqliteStore::open(path);
    ASSERT_TRUE(store.ok());
    DeviceRecord d;
    d.facts.id = "dev-1";
    ASSERT_TRUE((*store)->upsert_device(d).ok());
  }
  // Take the database back to version 1 as an older release left it.
  raw_exec(
      path,
      "DROP INDEX events_by_device; DROP INDEX events_by_rollout; DROP INDEX logs_by_device; "
      "DROP TABLE update_samples; DROP TABLE revocations; DROP TABLE device_tags; DROP TABLE device_groups; "
      "DROP TABLE group_members; ALTER TABLE devices DROP COLUMN version_key; ALTER TABLE devices DROP "
      "COLUMN certificate_not_after; ALTER TABLE devices DROP COLUMN decryption_key_id; ALTER TABLE members "
      "DROP COLUMN bytes_reused; PRAGMA user_version=1;");
  auto store = SqliteStore::open(path);
  ASSERT_TRUE(store.ok()) << store.error().message;
  EXPECT_EQ((*store)->schema_version(), SqliteStore::kSchemaVersion);
  EXPECT_TRUE((*store)->update_samples(10).ok());
  EXPECT_TRUE((*store)->load_revocations().ok());
  auto d = (*store)->device("dev-1");
  ASSERT_TRUE(d.ok());
}

TEST(SqliteStoreTest, RevocationsAndRemovedDevicesAreWrittenWithTheBatch) {
  ScratchDir dir;
  auto store = SqliteStore::open(dir.path() / "state.db");
  ASSERT_TRUE(store.ok());
  StoreBatch first;
  for (const char* id : {"dev-1", "dev-2"}) {
    DeviceRecord d;
    d.facts.id = id;
    first.devices.push_back(d);
  }
  ASSERT_TRUE((*store)->write(first, 1000).ok());
  StoreBatch lifecycle;
  lifecycle.revocations = {RevocationRecord{"dev-1", "stolen", "token:ann", 2000, 0},
                           RevocationRecord{"dev-2", "", "token:ann", 2000, 2000}};
  lifecycle.removed_devices = {"dev-2"};
  lifecycle.audit = {AuditRecord{"token:ann", "device.decommission", "dev-2"}};
  ASSERT_TRUE((*store)->write(lifecycle, 2000).ok());
  auto revocations = (*store)->load_revocations();
  ASSERT_TRUE(revocations.ok());
  ASSERT_EQ(revocations->size(), 2u);
  EXPECT_EQ((*revocations)[0].device_id, "dev-1");
  EXPECT_EQ((*revocations)[0].reason, "stolen");
  EXPECT_EQ((*revocations)[0].decommissioned_ms, 0);
  EXPECT_EQ((*revocations)[1].decommissioned_ms, 2000);
  auto devices = (*store)->load_devices();
  ASSERT_TRUE(devices.ok());
  ASSERT_EQ(devices->size(), 1u);
  EXPECT_EQ((*devices)[0].facts.id, "dev-1");
  EXPECT_EQ((*store)->audit_entries(0, 10)->size(), 1u);
}

TEST(SqliteStoreTest, NewerSchemaIsRefused) {
  ScratchDir dir;
  const auto path = dir.path() / "state.db";
  { ASSERT_TRUE(SqliteStore::open(path).ok()); }
  raw_exec(path, "PRAGMA user_version=99;");
  auto store = SqliteStore::open(path);
  ASSERT_FALSE(store.ok());
  EXPECT_NE(store.error().message.find("newer than this orchestrator understands"), std::string::npos);
}

TEST(SqliteStoreTest, UnwritableLocationGivesAClearError) {
  auto store = SqliteStore::open("/nonexistent-dir/state.db");
  ASSERT_FALSE(store.ok());
  EXPECT_NE(store.error().message.find("cannot open database /nonexistent-dir/state.db"), std::string::npos);
}

TEST(SqliteStoreTest, RolloutsDevicesAndMembersSurviveReopen) {
  ScratchDir dir;
  const auto path = dir.path() / "state.db";
  Fleet fleet;
  {
    auto store = SqliteStore::open(path);
    ASSERT_TRUE(store.ok());
    for (int i = 0; i < 3; ++i) {
      DeviceRecord d;
      d.facts.id = "dev-" + std::to_string(i);
      d.facts.tags = {"a", "b"};
      d.facts.time_zone = "Europe/Berlin";
      d.facts.artifact_id = "ffffffffffffffffffffffffffffffff";
      fleet.devices[d.facts.id] = d.facts;
      ASSERT_TRUE((*store)->upsert_device(d).ok());
    }
    Rollout r = sample_rollout("r-1");
    RolloutEngine engine;
    ASSERT_TRUE(engine.start(r, fleet, 2000).ok());
    engine.tick(r, fleet, 3000);
    ASSERT_EQ(r.members.size(), 3u);
    StoreBatch batch;
    batch.rollouts.push_back(&r);
    ASSERT_TRUE((*store)->write(batch, 3000).ok());
    for (const Member& m : r.members) EXPECT_FALSE(m.dirty);
  }
  auto store = SqliteStore::open(path);
  ASSERT_TRUE(store.ok());
  auto devices = (*store)->load_devices();
  ASSERT_TRUE(devices.ok());
  ASSERT_EQ(devices->size(), 3u);
  EXPECT_EQ((*devices)[0].facts.tags, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ((*devices)[0].facts.time_zone, "Europe/Berlin");
  auto rollouts = (*store)->load_rollouts();
  ASSERT_TRUE(rollouts.ok()) << rollouts.error().message;
  ASSERT_EQ(rollouts->size(), 1u);
  const Rollout& r = (*rollouts)[0];
  EXPECT_EQ(r.state, RolloutState::kRunning);
  EXPECT_TRUE(r.targets_resolved);
  EXPECT_EQ(r.waves[0].status, WaveStatus::kActive);
  EXPECT_EQ(r.waves[0].planned_size, 1u);
  EXPECT_EQ(r.spec.waves[0].soak_ms, 300'000);
  ASSERT_EQ(r.members.size(), 3u);
  std::size_t dispatched = 0;
  for (const Member& m : r.members) {
    if (m.state == MemberState::kDispatched) {
      ++dispatched;
      EXPECT_FALSE(m.command_id.empty());
      EXPECT_EQ(m.previous_artifact_id, "ffffffffffffffffffffffffffffffff");
    }
  }
  EXPECT_EQ(dispatched, 1u);
  EXPECT_NE(r.find_member("dev-2"), nullptr);
}

TEST(SqliteStoreTest, UpdateHistorySurvivesReopenOncePerUpdateAndLatestLast) {
  ScratchDir dir;
  const auto path = dir.path() / "state.db";
  {
    auto store = SqliteStore::open(path);
    ASSERT_TRUE(store.ok());
    std::vector<UpdateSample> samples;
    for (int i = 0; i < 5; ++i)
      samples.push_back({"r-1", "dev-" + std::to_string(i), 1, 1000 + i, 50, 2000, 3000 + i});
    ASSERT_TRUE((*store)->append_update_samples(samples).ok());
    // Saved again (a retried transaction): still one row per rollout, device and attempt.
    ASSERT_TRUE((*store)->append_update_samples({samples[4]}).ok());
  }
  auto store = SqliteStore::open(path);
  ASSERT_TRUE(store.ok());
  auto latest = (*store)->update_samples(3);
  ASSERT_TRUE(latest.ok()) << latest.error().message;
  ASSERT_EQ(latest->size(), 3u);
  EXPECT_EQ((*latest)[0].device_id, "dev-2");
  EXPECT_EQ((*latest)[2].device_id, "dev-4");
  EXPECT_EQ((*latest)[2].concurrency, 50u);
  EXPECT_EQ((*latest)[2].baseline_ms, 2000);
  EXPECT_EQ((*latest)[2].duration_ms, 3004);
  EXPECT_EQ((*store)->update_samples(100)->size(), 5u);
  // Pruned to the latest two; pruning to more than there are deletes nothing.
  ASSERT_TRUE((*store)->prune_update_samples(10).ok());
  EXPECT_EQ((*store)->update_samples(100)->size(), 5u);
  ASSERT_TRUE((*store)->prune_update_samples(2).ok());
  auto kept = (*store)->update_samples(100);
  ASSERT_EQ(kept->size(), 2u);
  EXPECT_EQ((*kept)[0].device_id, "dev-3");
  EXPECT_EQ((*kept)[1].device_id, "dev-4");
}

TEST(SqliteStoreTest, FailedTransactionLeavesNoTrace) {
  ScratchDir dir;
  auto store = SqliteStore::open(dir.path() / "state.db");
  ASSERT_TRUE(store.ok());
  auto st = (*store)->transaction([&]() -> common::Status {
    DeviceRecord d;
    d.facts.id = "ghost";
    if (auto s = (*store)->upsert_device(d); !s) return s;
    return common::Error(common::Errc::kInternal, "abandon");
  });
  EXPECT_FALSE(st.ok());
  EXPECT_FALSE((*store)->device("ghost").ok());
}

// One StoreBatch is one transaction, its audit entries typed (actor and action kept apart).
TEST(SqliteStoreTest, ABatchLandsWholeWithTypedAuditEntries) {
  ScratchDir dir;
  auto store = SqliteStore::open(dir.path() / "state.db");
  ASSERT_TRUE(store.ok());
  Rollout r = sample_rollout("r-batch");
  StoreBatch batch;
  DeviceRecord d;
  d.facts.id = "dev-1";
  d.client_version = "1.2.3";
  batch.devices.push_back(d);
  batch.rollouts.push_back(&r);
  batch.events.push_back(EventRecord{0, 5, "dev-1", "r-batch", "presence", "online"});
  batch.logs.push_back(LogRecord{0, "dev-1", 5, 2, "hello", "test"});
  batch.audit.push_back(AuditRecord{"operator:alice", "rollout.create", "r-batch"});
  batch.audit.push_back(AuditRecord{"engine", "engine.decision", "wave 1 started"});
  ASSERT_TRUE((*store)->write(batch, 7).ok());
  EXPECT_FALSE(r.dirty);
  EXPECT_EQ((*store)->device("dev-1")->client_version, "1.2.3");
  EXPECT_EQ((*store)->load_rollouts()->size(), 1u);
  EXPECT_EQ((*store)->events("dev-1", "", 10, 0)->size(), 1u);
  EXPECT_EQ((*store)->logs("dev-1", 0, 10)->size(), 1u);
  auto audit = (*store)->audit_entries(0, 10);
  ASSERT_EQ(audit->size(), 2u);
  EXPECT_EQ((*audit)[0].actor, "operator:alice");
  EXPECT_EQ((*audit)[0].action, "rollout.create");
  EXPECT_EQ((*audit)[0].time_ms, 7);
  EXPECT_EQ((*audit)[1].actor, "engine");
  EXPECT_EQ((*audit)[1].action, "engine.decision");

  // A batch whose last write fails leaves nothing of its first ones.
  raw_exec(dir.path() / "state.db",
           "CREATE TRIGGER no_more BEFORE INSERT ON audit BEGIN SELECT RAISE(ABORT, 'full'); END;");
  StoreBatch failing;
  DeviceRecord ghost;
  ghost.facts.id = "ghost";
  failing.devices.push_back(ghost);
  failing.audit.push_back(AuditRecord{"operator:alice", "rollout.start", "r-batch"});
  // A rollout in a batch that fails stays to be saved (its flags were cleared before the commit).
  r.dirty = true;
  failing.rollouts.push_back(&r);
  EXPECT_FALSE((*store)->write(failing, 8).ok());
  EXPECT_FALSE((*store)->device("ghost").ok());
  EXPECT_TRUE(r.dirty);
}

TEST(SqliteStoreTest, KillNineLosesNoAcknowledgedWrite) {
  ScratchDir dir;
  const auto path = dir.path() / "state.db";
  { ASSERT_TRUE(SqliteStore::open(path).ok()); }
  int pipefd[2];
  ASSERT_EQ(pipe(pipefd), 0);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    close(pipefd[0]);
    auto store = SqliteStore::open(path);
    if (!store.ok()) _exit(2);
    for (std::int64_t batch = 0;; ++batch) {
      auto st = (*store)->transaction([&]() -> common::Status {
        for (int i = 0; i < 50; ++i) {
          EventRecord e;
          e.time_ms = batch;
          e.device_id = "dev";
          e.kind = "progress";
          e.detail = std::to_string(batch * 50 + i);
          if (auto s = (*store)->append_event(e); !s) return s;
        }
        return common::ok_status();
      });
      if (!st) _exit(3);
      // Acknowledge only after the commit returned.
      if (write(pipefd[1], &batch, sizeof batch) != sizeof batch) _exit(4);
    }
  }
  close(pipefd[1]);
  std::int64_t acknowledged = -1, value = 0;
  while (acknowledged < 40 && read(pipefd[0], &value, sizeof value) == sizeof value) acknowledged = value;
  kill(child, SIGKILL);
  while (read(pipefd[0], &value, sizeof value) == sizeof value) acknowledged = value;  // drain in-flight acks
  close(pipefd[0]);
  int status = 0;
  waitpid(child, &status, 0);
  ASSERT_TRUE(WIFSIGNALED(status));
  auto store = SqliteStore::open(path);
  ASSERT_TRUE(store.ok()) << store.error().message;
  auto events = (*store)->events("dev", "", 1'000'000, 0);
  ASSERT_TRUE(events.ok());
  // Every acknowledged batch is there, and batches are whole (50 events each).
  EXPECT_GE(static_cast<std::int64_t>(events->size()), (acknowledged + 1) * 50);
  EXPECT_EQ(events->size() % 50, 0u);
}

TEST(AuditChainTest, VerifiesAndDetectsEditsAndDeletions) {
  ScratchDir dir;
  const auto path = dir.path() / "state.db";
  std::string head;
  {
    auto store = SqliteStore::open(path);
    ASSERT_TRUE(store.ok());
    for (int i = 0; i < 5; ++i) {
      auto e = (*store)->append_audit("operator:alice", "rollout.start", "rollout r-" + std::to_string(i),
                                      1000 + i);
      ASSERT_TRUE(e.ok());
      EXPECT_EQ(e->seq, i + 1);
      head = e->hash;
    }
    auto all = (*store)->audit_entries(0, 100);
    ASSERT_TRUE(all.ok());
    auto v = verify_audit_chain(*all, head);
    ASSERT_TRUE(v.ok()) << v.error().message;
    EXPECT_EQ(v->entries, 5);
    EXPECT_EQ(v->head_hash, head);
  }
  auto check = [&](const std::string& expected_head) {
    auto store = SqliteStore::open(path);
    EXPECT_TRUE(store.ok());
    auto all = (*store)->audit_entries(0, 100);
    EXPECT_TRUE(all.ok());
    return verify_audit_chain(*all, expected_head);
  };
  // Edited detail.
  raw_exec(path, "UPDATE audit SET detail = 'rollout r-harmless' WHERE seq = 3");
  auto v = check(head);
  ASSERT_FALSE(v.ok());
  EXPECT_NE(v.error().message.find("audit entry 3 (rollout.start) was modified"), std::string::npos)
      << v.error().message;
  // Edit with a recomputed hash of that entry still breaks the link of the next one.
  {
    auto store = SqliteStore::open(path);
    auto all = (*store)->audit_entries(0, 100);
    AuditEntry e = (*all)[2];
    raw_exec(path, "UPDATE audit SET hash = '" + audit_entry_hash(e) + "' WHERE seq = 3");
  }
  v = check(head);
  ASSERT_FALSE(v.ok());
  EXPECT_NE(v.error().message.find("audit entry 4 does not link"), std::string::npos) << v.error().message;
  // Deleted entry.
  raw_exec(path, "DELETE FROM audit WHERE seq IN (3)");
  v = check(head);
  ASSERT_FALSE(v.ok());
  EXPECT_NE(v.error().message.find("audit entry 3 is missing"), std::string::npos) << v.error().message;
}

TEST(AuditChainTest, TruncationIsDetectedWithARecordedHead) {
  ScratchDir dir;
  auto store = SqliteStore::open(dir.path() / "state.db");
  ASSERT_TRUE(store.ok());
  std::string head;
  for (int i = 0; i < 3; ++i) head = (*store)->append_audit("engine", "wave.gate", "x", i)->hash;
  auto all = (*store)->audit_entries(0, 100);
  all->pop_back();
  EXPECT_TRUE(verify_audit_chain(*all).ok());  // without the recorded head a cut tail looks fine
  auto v = verify_audit_chain(*all, head);
  ASSERT_FALSE(v.ok());
  EXPECT_NE(v.error().message.find("removed from the end"), std::string::npos);
}

}  // namespace
}  // namespace fota::orchestrator

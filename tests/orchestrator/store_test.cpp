// SPDX-License-Identifier: Apache-2.0
// The stores on real databases, every test against both back ends (a real SQLite file and a real
// PostgreSQL cluster on loopback): migrations, reopen, batched transactions, kill -9, audit chain.
#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <random>
#include <thread>

#include "fota/orchestrator/postgres_store.hpp"
#include "fota/orchestrator/store.hpp"
#include "fota/testing/postgres.hpp"

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

// One empty database of the back end under test: a file in a scratch directory, or a fresh
// database in this test binary's PostgreSQL cluster. SQL that differs between the two (schema
// version, triggers) is chosen here; the rest is common SQL.
class TestDatabase {
 public:
  explicit TestDatabase(std::string backend) : backend_(std::move(backend)) {
    if (postgres()) {
      url_ = testing::PostgresCluster::shared().create_database();
      database_ = url_.substr(url_.rfind('/') + 1);
    } else {
      url_ = "sqlite:" + (dir_.path() / "state.db").string();
    }
  }
  bool postgres() const { return backend_ == "postgresql"; }
  const std::string& url() const { return url_; }
  common::Result<std::unique_ptr<Store>> open() const { return open_store(url_); }
  // SQL run behind the store's back, as an attacker or an older release would.
  void exec(const std::string& sql) const {
    if (postgres()) {
      testing::PostgresCluster::shared().exec(database_, sql);
    } else {
      raw_exec(dir_.path() / "state.db", sql);
    }
  }
  void set_schema_version(int version) const {
    exec(postgres() ? "UPDATE fota_schema_version SET version = " + std::to_string(version)
                    : "PRAGMA user_version=" + std::to_string(version));
  }
  // Every insert into the audit table fails from now on.
  void refuse_audit_inserts() const {
    exec(postgres()
             ? "CREATE FUNCTION no_more() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE "
               "EXCEPTION 'full'; END $$; CREATE TRIGGER no_more BEFORE INSERT ON audit FOR EACH ROW "
               "EXECUTE FUNCTION no_more();"
             : "CREATE TRIGGER no_more BEFORE INSERT ON audit BEGIN SELECT RAISE(ABORT, 'full'); END;");
  }
  int latest_schema_version() const {
    return postgres() ? PostgresStore::kSchemaVersion : SqliteStore::kSchemaVersion;
  }
  int schema_version(Store& store) const {
    if (auto* pg = dynamic_cast<PostgresStore*>(&store)) return pg->schema_version();
    return dynamic_cast<SqliteStore&>(store).schema_version();
  }

 private:
  std::string backend_;
  ScratchDir dir_;
  std::string url_;
  std::string database_;
};

class StoreTest : public ::testing::TestWithParam<std::string> {
 protected:
  TestDatabase db_{GetParam()};
};
using AuditChainTest = StoreTest;

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

TEST_P(StoreTest, FreshDatabaseIsMigratedToTheLatestSchema) {
  auto store = db_.open();
  ASSERT_TRUE(store.ok()) << store.error().message;
  EXPECT_EQ(db_.schema_version(**store), db_.latest_schema_version());
  // Opening again migrates nothing and keeps the version.
  store->reset();
  store = db_.open();
  ASSERT_TRUE(store.ok()) << store.error().message;
  EXPECT_EQ(db_.schema_version(**store), db_.latest_schema_version());
}

TEST_P(StoreTest, OlderSchemaIsMigratedKeepingItsData) {
  {
    auto store = db_.open();
    ASSERT_TRUE(store.ok()) << store.error().message;
    DeviceRecord d;
    d.facts.id = "dev-1";
    d.facts.version = "1.10";
    ASSERT_TRUE((*store)->upsert_device(d).ok());
  }
  // Take the database back to version 1 as an older release left it.
  db_.exec(
      "DROP INDEX events_by_device; DROP INDEX events_by_rollout; DROP INDEX logs_by_device; "
      "DROP TABLE update_samples; DROP TABLE revocations; DROP TABLE device_tags; DROP TABLE device_groups; "
      "DROP TABLE group_members; ALTER TABLE devices DROP COLUMN version_key; ALTER TABLE devices DROP "
      "COLUMN certificate_not_after; ALTER TABLE devices DROP COLUMN decryption_key_id; ALTER TABLE members "
      "DROP COLUMN bytes_reused; DROP TABLE webhook_deliveries; DROP TABLE webhooks;");
  db_.exec(  // schema 8
      "ALTER TABLE devices DROP COLUMN measured_download_rate; ALTER TABLE devices DROP COLUMN "
      "measured_verify_rate; ALTER TABLE devices DROP COLUMN measured_reboot_ms; ALTER TABLE devices DROP "
      "COLUMN measured_health_check_ms;");
  db_.set_schema_version(1);
  auto store = db_.open();
  ASSERT_TRUE(store.ok()) << store.error().message;
  EXPECT_EQ(db_.schema_version(**store), db_.latest_schema_version());
  EXPECT_TRUE((*store)->update_samples(10).ok());
  EXPECT_TRUE((*store)->load_revocations().ok());
  auto d = (*store)->device("dev-1");
  ASSERT_TRUE(d.ok());
  // Schema 6: the tag and group tables are there, and the version written before it is indexed
  // (1.10 sorts after 1.9, which text order alone would not give).
  EXPECT_TRUE((*store)->set_device_tag(DeviceTagChange{"dev-1", "lab", true}).ok());
  EXPECT_TRUE((*store)->create_group(GroupRecord{"g", "", 1, "token:ann", {}}).ok());
  EXPECT_TRUE((*store)->set_group_member(GroupMemberChange{"g", "dev-1", true}).ok());
  DeviceQuery q;
  q.selectors.push_back(DeviceSelector{});
  q.selectors[0].versions.push_back(VersionTerm{VersionOp::kGt, "1.9"});
  auto page = (*store)->query_devices(q);
  ASSERT_TRUE(page.ok()) << page.error().message;
  EXPECT_EQ(page->ids, std::vector<std::string>{"dev-1"});
  // Schema 7: the webhook tables.
  EXPECT_TRUE(
      (*store)
          ->create_webhook(WebhookRecord{
              "wh-1", "http://127.0.0.1:1/", {"device.failed"}, "0123456789abcdef", "", 1, "token:ann"})
          .ok());
  EXPECT_EQ((*store)->load_webhooks()->size(), 1u);
}

WebhookDelivery sample_delivery(const std::string& id, const std::string& webhook, Millis created) {
  WebhookDelivery d;
  d.id = id;
  d.webhook_id = webhook;
  d.event = "rollout.completed";
  d.body = R"({"event":"rollout.completed","note":"'; DROP TABLE x; -- \u00e9"})";
  d.created_ms = created;
  d.next_attempt_ms = created;
  return d;
}

TEST_P(StoreTest, WebhooksAndTheirOutboxSurviveReopenAndLandWithTheirBatch) {
  {
    auto store = db_.open();
    ASSERT_TRUE(store.ok()) << store.error().message;
    ASSERT_TRUE((*store)
                    ->create_webhook(WebhookRecord{"wh-b",
                                                   "https://hooks.example/b",
                                                   {"rollout.started", "device.failed"},
                                                   "secret-secret-secret",
                                                   "/etc/ca.pem",
                                                   10,
                                                   "token:ann"})
                    .ok());
    ASSERT_TRUE((*store)
                    ->create_webhook(WebhookRecord{"wh-a",
                                                   "http://127.0.0.1:9/a",
                                                   {"rollout.completed"},
                                                   "another-long-secret",
                                                   "",
                                                   11,
                                                   "cert:bob"})
                    .ok());
    // The same id twice is refused.
    EXPECT_FALSE(
        (*store)
            ->create_webhook(WebhookRecord{"wh-a", "http://x/", {"rollout.completed"}, "s", "", 12, ""})
            .ok());
    // Deliveries go with their batch: three due at 1000, one later.
    StoreBatch batch;
    batch.audit = {AuditRecord{"engine", "engine.decision", "done"}};
    std::vector<WebhookDelivery> out = {sample_delivery("wd-1", "wh-a", 1000),
                                        sample_delivery("wd-2", "wh-a", 1001),
                                        sample_delivery("wd-3", "wh-b", 1002)};
    out.push_back(sample_delivery("wd-4", "wh-b", 1003));
    out.back().next_attempt_ms = 9000;
    ASSERT_TRUE((*store)->write(batch, 1000, out).ok());
    // A batch that fails (its audit entry cannot be written) leaves no delivery behind.
    db_.refuse_audit_inserts();
    EXPECT_FALSE((*store)->write(batch, 2000, {sample_delivery("wd-5", "wh-a", 2000)}).ok());
  }
  auto store = db_.open();
  ASSERT_TRUE(store.ok()) << store.error().message;
  auto hooks = (*store)->load_webhooks();
  ASSERT_TRUE(hooks.ok()) << hooks.error().message;
  ASSERT_EQ(hooks->size(), 2u);
  EXPECT_EQ((*hooks)[0].id, "wh-a");
  EXPECT_EQ((*hooks)[1].events, (std::vector<std::string>{"rollout.started", "device.failed"}));
  EXPECT_EQ((*hooks)[1].secret, "secret-secret-secret");
  EXPECT_EQ((*hooks)[1].ca_file, "/etc/ca.pem");
  EXPECT_EQ((*hooks)[1].actor, "token:ann");

  auto due = (*store)->due_webhook_deliveries(5000, 10);
  ASSERT_TRUE(due.ok()) << due.error().message;
  ASSERT_EQ(due->size(), 3u);
  EXPECT_EQ((*due)[0].id, "wd-1");
  EXPECT_EQ((*due)[0].body, sample_delivery("", "", 0).body);
  EXPECT_EQ((*due)[2].id, "wd-3");
  EXPECT_EQ((*store)->due_webhook_deliveries(5000, 1)->size(), 1u);
  EXPECT_EQ((*store)->due_webhook_deliveries(9000, 10)->size(), 4u);

  // Attempts update the row in place; its id stays.
  WebhookDelivery retried = (*due)[0];
  retried.attempts = 1;
  retried.last_status = 500;
  retried.last_error = "the receiver answered 500";
  retried.next_attempt_ms = 7000;
  ASSERT_TRUE((*store)->upsert_webhook_delivery(retried).ok());
  WebhookDelivery delivered = (*due)[1];
  delivered.state = "delivered";
  delivered.attempts = 1;
  delivered.last_status = 200;
  delivered.finished_ms = 5001;
  ASSERT_TRUE((*store)->upsert_webhook_delivery(delivered).ok());
  EXPECT_EQ((*store)->due_webhook_deliveries(5000, 10)->size(), 1u);  // wd-3
  auto mine = (*store)->webhook_deliveries("wh-a", "", 10);
  ASSERT_TRUE(mine.ok()) << mine.error().message;
  ASSERT_EQ(mine->size(), 2u);
  EXPECT_EQ((*mine)[0].id, "wd-2");  // newest first
  EXPECT_EQ((*mine)[0].state, "delivered");
  EXPECT_EQ((*mine)[0].finished_ms, 5001);
  EXPECT_EQ((*mine)[1].attempts, 1);
  EXPECT_EQ((*mine)[1].last_error, "the receiver answered 500");
  EXPECT_EQ((*mine)[1].next_attempt_ms, 7000);
  EXPECT_EQ((*store)->webhook_deliveries("wh-a", "pending", 10)->size(), 1u);
  auto counts = (*store)->webhook_delivery_counts();
  ASSERT_TRUE(counts.ok());
  EXPECT_EQ((*counts)["pending"], 3);
  EXPECT_EQ((*counts)["delivered"], 1);

  // A webhook deleted takes its deliveries with it.
  ASSERT_TRUE((*store)->delete_webhook("wh-b").ok());
  EXPECT_EQ((*store)->load_webhooks()->size(), 1u);
  EXPECT_TRUE((*store)->webhook_deliveries("wh-b", "", 10)->empty());
  EXPECT_EQ((*store)->due_webhook_deliveries(9000, 10)->size(), 1u);
}

TEST_P(StoreTest, RevocationsAndRemovedDevicesAreWrittenWithTheBatch) {
  auto store = db_.open();
  ASSERT_TRUE(store.ok()) << store.error().message;
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

TEST_P(StoreTest, NewerSchemaIsRefused) {
  { ASSERT_TRUE(db_.open().ok()); }
  db_.set_schema_version(99);
  auto store = db_.open();
  ASSERT_FALSE(store.ok());
  EXPECT_NE(store.error().message.find("newer than this orchestrator understands"), std::string::npos)
      << store.error().message;
}

TEST_P(StoreTest, UnreachableDatabaseGivesAClearError) {
  if (db_.postgres()) {
    // Nothing listens on a port just released.
    const std::string url =
        "postgresql://fota:secret@127.0.0.1:" + std::to_string(testing::free_loopback_port()) + "/fota";
    auto store = open_store(url);
    ASSERT_FALSE(store.ok());
    EXPECT_NE(store.error().message.find("cannot connect to PostgreSQL fota@127.0.0.1:"), std::string::npos)
        << store.error().message;
    EXPECT_NE(store.error().message.find("check that the server runs"), std::string::npos);
    EXPECT_EQ(store.error().message.find("secret"), std::string::npos) << "the password is not repeated";
    // A database that does not exist on a running server.
    auto missing = open_store(testing::PostgresCluster::shared().url("no_such_database"));
    ASSERT_FALSE(missing.ok());
    EXPECT_NE(missing.error().message.find("\"no_such_database\" does not exist"), std::string::npos)
        << missing.error().message;
  } else {
    auto store = open_store("sqlite:/nonexistent-dir/state.db");
    ASSERT_FALSE(store.ok());
    EXPECT_NE(store.error().message.find("cannot open database /nonexistent-dir/state.db"),
              std::string::npos);
  }
}

// The server closes the store's connection (a restart, a failover): the call that meets the closed
// connection fails, the next one reconnects and works; nothing half-written remains.
TEST(PostgresStoreTest, AClosedConnectionIsOpenedAgainForTheNextCall) {
  auto& cluster = testing::PostgresCluster::shared();
  const std::string url = cluster.create_database();
  const std::string database = url.substr(url.rfind('/') + 1);
  auto store = open_store(url);
  ASSERT_TRUE(store.ok()) << store.error().message;
  DeviceRecord d;
  d.facts.id = "dev-1";
  ASSERT_TRUE((*store)->upsert_device(d).ok());
  cluster.exec("postgres",
               "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '" + database + "'");
  StoreBatch batch;
  d.facts.id = "dev-2";
  batch.devices.push_back(d);
  batch.audit.push_back(AuditRecord{"engine", "x", "y"});
  if (!(*store)->write(batch, 1).ok()) {
    ASSERT_TRUE((*store)->write(batch, 1).ok()) << "the second try reconnects";
  }
  auto devices = (*store)->load_devices();
  ASSERT_TRUE(devices.ok()) << devices.error().message;
  EXPECT_EQ(devices->size(), 2u);
  EXPECT_EQ((*store)->audit_entries(0, 10)->size(), 1u);
}

TEST(OpenStoreTest, UnknownKindOfStoreIsRefusedNamingTheKnownOnes) {
  auto store = open_store("mysql://root:pw@db/fota");
  ASSERT_FALSE(store.ok());
  EXPECT_NE(store.error().message.find("store 'mysql:...': unknown kind of store; write sqlite:"),
            std::string::npos)
      << store.error().message;
  EXPECT_NE(store.error().message.find("postgresql://user@host:port/database"), std::string::npos);
  EXPECT_EQ(store.error().message.find("pw"), std::string::npos);
  EXPECT_FALSE(open_store("sqlite:").ok());
  EXPECT_FALSE(open_store("/var/lib/state.db").ok());
}

TEST_P(StoreTest, RolloutsDevicesAndMembersSurviveReopen) {
  Fleet fleet;
  {
    auto store = db_.open();
    ASSERT_TRUE(store.ok()) << store.error().message;
    for (int i = 0; i < 3; ++i) {
      DeviceRecord d;
      d.facts.id = "dev-" + std::to_string(i);
      d.facts.tags = {"a", "b"};
      d.facts.time_zone = "Europe/Berlin";
      d.facts.artifact_id = "ffffffffffffffffffffffffffffffff";
      // Schema 5: what the device reported of its certificate and decryption key.
      d.certificate_not_after = 1'900'000'000 + i;
      d.facts.decryption_key_id = i == 1 ? "key-a" : "";
      if (i == 2) {                                            // schema 8: what the device measured itself
        d.measured.download_bytes_per_second = 5'000'000'000;  // over 32 bits
        d.measured.verify_bytes_per_second = 40'000'000;
        d.measured.reboot_ms = 12'345;
        d.measured.health_check_ms = 678;
      }
      fleet.devices[d.facts.id] = d.facts;
      ASSERT_TRUE((*store)->upsert_device(d).ok());
    }
    Rollout r = sample_rollout("r-1");
    RolloutEngine engine;
    ASSERT_TRUE(engine.start(r, fleet, 2000).ok());
    engine.tick(r, fleet, 3000);
    ASSERT_EQ(r.members.size(), 3u);
    r.find_member("dev-1")->bytes_reused = 123'456;  // schema 5: copied from the running slot
    StoreBatch batch;
    batch.rollouts.push_back(&r);
    ASSERT_TRUE((*store)->write(batch, 3000).ok());
    for (const Member& m : r.members) EXPECT_FALSE(m.dirty);
  }
  auto store = db_.open();
  ASSERT_TRUE(store.ok());
  auto devices = (*store)->load_devices();
  ASSERT_TRUE(devices.ok());
  ASSERT_EQ(devices->size(), 3u);
  EXPECT_EQ((*devices)[0].facts.tags, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ((*devices)[0].facts.time_zone, "Europe/Berlin");
  EXPECT_EQ((*devices)[2].certificate_not_after, 1'900'000'002);
  EXPECT_EQ((*devices)[1].facts.decryption_key_id, "key-a");
  EXPECT_EQ((*devices)[0].facts.decryption_key_id, "");
  EXPECT_EQ((*devices)[2].measured.download_bytes_per_second, 5'000'000'000u);
  EXPECT_EQ((*devices)[2].measured.verify_bytes_per_second, 40'000'000u);
  EXPECT_EQ((*devices)[2].measured.reboot_ms, 12'345);
  EXPECT_EQ((*devices)[2].measured.health_check_ms, 678);
  EXPECT_EQ((*devices)[0].measured.download_bytes_per_second, 0u);
  EXPECT_EQ((*devices)[0].measured.reboot_ms, 0);
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
  EXPECT_EQ(r.find_member("dev-1")->bytes_reused, 123'456u);
  EXPECT_EQ(r.find_member("dev-0")->bytes_reused, 0u);
}

// Operator tags and groups (schema 6) survive a reopen, go with a removed device, and a group's
// name is taken once.
TEST_P(StoreTest, TagsAndGroupsSurviveReopenAndGoWithTheirDevice) {
  {
    auto store = db_.open();
    ASSERT_TRUE(store.ok()) << store.error().message;
    StoreBatch batch;
    for (const char* id : {"dev-b", "dev-a", "dev-Z"}) {
      DeviceRecord d;
      d.facts.id = id;
      batch.devices.push_back(d);
    }
    batch.tag_changes = {DeviceTagChange{"dev-b", "lab", true}, DeviceTagChange{"dev-a", "lab", true},
                         DeviceTagChange{"dev-a", "lab", true}, DeviceTagChange{"dev-a", "old", true},
                         DeviceTagChange{"dev-a", "old", false}};
    batch.created_groups = {GroupRecord{"static", "", 1000, "token:ann", {}},
                            GroupRecord{"dynamic", "hardware=rpi4,version<2.0", 1000, "token:bob", {}}};
    batch.member_changes = {
        GroupMemberChange{"static", "dev-b", true}, GroupMemberChange{"static", "dev-Z", true},
        GroupMemberChange{"static", "dev-a", true}, GroupMemberChange{"static", "dev-a", false}};
    batch.audit = {AuditRecord{"token:ann", "group.create", "static"}};
    ASSERT_TRUE((*store)->write(batch, 1000).ok());
    auto again = (*store)->create_group(GroupRecord{"static", "", 2000, "token:eve", {}});
    ASSERT_FALSE(again.ok());
    EXPECT_EQ(again.error().code, common::Errc::kAlreadyExists);
    EXPECT_NE(again.error().message.find("group 'static' exists"), std::string::npos)
        << again.error().message;
  }
  auto store = db_.open();
  ASSERT_TRUE(store.ok()) << store.error().message;
  auto tags = (*store)->load_device_tags();
  ASSERT_TRUE(tags.ok()) << tags.error().message;
  ASSERT_EQ(tags->size(), 2u);
  EXPECT_EQ((*tags)[0].device_id, "dev-a");
  EXPECT_EQ((*tags)[1].device_id, "dev-b");
  EXPECT_EQ((*tags)[1].tag, "lab");
  auto groups = (*store)->load_groups();
  ASSERT_TRUE(groups.ok()) << groups.error().message;
  ASSERT_EQ(groups->size(), 2u);
  EXPECT_EQ((*groups)[0].name, "dynamic");
  EXPECT_EQ((*groups)[0].selector, "hardware=rpi4,version<2.0");
  EXPECT_EQ((*groups)[0].actor, "token:bob");
  EXPECT_TRUE((*groups)[0].members.empty());
  EXPECT_EQ((*groups)[1].name, "static");
  EXPECT_EQ((*groups)[1].created_ms, 1000);
  EXPECT_EQ((*groups)[1].members, (std::vector<std::string>{"dev-Z", "dev-b"}));  // byte order

  // A removed device takes its tags and memberships along; a deleted group its members.
  ASSERT_TRUE((*store)->delete_device("dev-b").ok());
  tags = (*store)->load_device_tags();
  ASSERT_EQ(tags->size(), 1u);
  EXPECT_EQ((*tags)[0].device_id, "dev-a");
  EXPECT_EQ((*store)->load_groups()->at(1).members, std::vector<std::string>{"dev-Z"});
  ASSERT_TRUE((*store)->delete_group("static").ok());
  groups = (*store)->load_groups();
  ASSERT_EQ(groups->size(), 1u);
  ASSERT_TRUE((*store)->create_group(GroupRecord{"static", "", 3000, "token:ann", {}}).ok());
  EXPECT_TRUE((*store)->load_groups()->at(1).members.empty()) << "the old members went with the group";
}

// The device list's query in the database: every filter, LIKE's wildcards taken literally, versions
// by their sort key, keyset pages in byte order of the ids.
TEST_P(StoreTest, DeviceQueryFiltersAndPagesByKey) {
  auto store = db_.open();
  ASSERT_TRUE(store.ok()) << store.error().message;
  struct Row {
    const char* id;
    const char* hardware;
    const char* version;
    std::vector<std::string> tags;
    const char* group;
    bool online;
    const char* phase;
  };
  const std::vector<Row> rows = {
      {"gw-1", "gw-v2", "1.9", {"lab"}, "", true, "committed"},
      {"gw-2", "gw-v2", "1.10", {}, "north", false, "failed"},
      {"gw-Z", "gw-v1", "2.0", {"field", "lab%"}, "", true, "committed"},
      {"gw_3", "gw-v2", "1.2.3", {}, "", true, ""},
      {"gw%4", "rpi4", "3.0", {}, "", false, ""},
      {"sensor-1", "rpi4", "0.9", {"lab"}, "", true, "committed"},
  };
  StoreBatch batch;
  for (const Row& r : rows) {
    DeviceRecord d;
    d.facts.id = r.id;
    d.facts.hardware_type = r.hardware;
    d.facts.version = r.version;
    d.facts.tags = r.tags;
    d.facts.group = r.group;
    d.facts.online = r.online;
    d.last_phase = r.phase;
    batch.devices.push_back(d);
  }
  batch.tag_changes = {DeviceTagChange{"gw-2", "lab", true}};  // an operator tag
  batch.created_groups = {GroupRecord{"north", "", 1, "token:ann", {}}};
  batch.member_changes = {GroupMemberChange{"north", "sensor-1", true}};  // a static member
  ASSERT_TRUE((*store)->write(batch, 1).ok());

  const auto ids = [&](const std::string& selector, const std::string& id_contains = "",
                       const std::string& phase = "") {
    DeviceQuery q;
    if (!selector.empty()) {
      auto s = parse_device_selector(selector);
      EXPECT_TRUE(s.ok()) << selector;
      q.selectors.push_back(*s);
    }
    q.id_contains = id_contains;
    q.phase = phase;
    auto page = (*store)->query_devices(q);
    EXPECT_TRUE(page.ok()) << page.error().message;
    return page.ok() ? page->ids : std::vector<std::string>{"error"};
  };
  using V = std::vector<std::string>;
  EXPECT_EQ(ids(""), (V{"gw%4", "gw-1", "gw-2", "gw-Z", "gw_3", "sensor-1"}));  // byte order
  EXPECT_EQ(ids("hardware=gw-v2"), (V{"gw-1", "gw-2", "gw_3"}));
  EXPECT_EQ(ids("tag=lab"), (V{"gw-1", "gw-2", "sensor-1"}));  // reported or set by an operator
  EXPECT_EQ(ids("tag=field"), (V{"gw-Z"}));
  EXPECT_EQ(ids("group=north"), (V{"gw-2", "sensor-1"}));  // reported or a static member
  EXPECT_EQ(ids("online=true"), (V{"gw-1", "gw-Z", "gw_3", "sensor-1"}));
  EXPECT_EQ(ids("version<1.10"), (V{"gw-1", "gw_3", "sensor-1"}));
  EXPECT_EQ(ids("version>=1.10"), (V{"gw%4", "gw-2", "gw-Z"}));
  EXPECT_EQ(ids("version!=2.0"), (V{"gw%4", "gw-1", "gw-2", "gw_3", "sensor-1"}));
  EXPECT_EQ(ids("hardware=gw-v2,online=true,version<2.0"), (V{"gw-1", "gw_3"}));
  EXPECT_EQ(ids("", "", "committed"), (V{"gw-1", "gw-Z", "sensor-1"}));
  EXPECT_EQ(ids("", "w-"), (V{"gw-1", "gw-2", "gw-Z"}));
  EXPECT_EQ(ids("", "_"), (V{"gw_3"}));         // not "any one character"
  EXPECT_EQ(ids("", "%"), (V{"gw%4"}));         // not "anything"
  EXPECT_EQ(ids("", "SENSOR"), V{"sensor-1"});  // ASCII letters of either case, as SQLite's LIKE

  // Pages of two, each starting after the last id of the one before.
  DeviceQuery q;
  q.limit = 2;
  V seen;
  int pages = 0;
  for (;;) {
    auto page = (*store)->query_devices(q);
    ASSERT_TRUE(page.ok()) << page.error().message;
    ++pages;
    seen.insert(seen.end(), page->ids.begin(), page->ids.end());
    if (page->next_after.empty()) break;
    EXPECT_EQ(page->next_after, page->ids.back());
    q.after_id = page->next_after;
  }
  EXPECT_EQ(pages, 3);
  EXPECT_EQ(seen, (V{"gw%4", "gw-1", "gw-2", "gw-Z", "gw_3", "sensor-1"}));
}

// Events newest first, the next page below the last id seen.
TEST_P(StoreTest, EventsPageBackwardsFromAnId) {
  auto store = db_.open();
  ASSERT_TRUE(store.ok()) << store.error().message;
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE((*store)
                    ->append_event(EventRecord{0, 1000 + i, i % 2 ? "dev-odd" : "dev-even", "r-1", "k",
                                               std::to_string(i)})
                    .ok());
  }
  auto first = (*store)->events("", "", 2, 0);
  ASSERT_TRUE(first.ok()) << first.error().message;
  ASSERT_EQ(first->size(), 2u);
  EXPECT_EQ((*first)[0].detail, "4");
  EXPECT_EQ((*first)[1].detail, "3");
  auto next = (*store)->events("", "", 2, first->back().id);
  ASSERT_TRUE(next.ok()) << next.error().message;
  ASSERT_EQ(next->size(), 2u);
  EXPECT_EQ((*next)[0].detail, "2");
  EXPECT_EQ((*next)[1].detail, "1");
  auto even = (*store)->events("dev-even", "", 10, (*next)[0].id);
  ASSERT_TRUE(even.ok());
  ASSERT_EQ(even->size(), 1u);
  EXPECT_EQ((*even)[0].detail, "0");
}

// Keys sort by their bytes on both back ends (PostgreSQL's own collation would put "Z" after "a").
TEST_P(StoreTest, DevicesComeBackInByteOrderOfTheirIds) {
  auto store = db_.open();
  ASSERT_TRUE(store.ok()) << store.error().message;
  for (const char* id : {"dev-b", "dev-Z", "dev-a", "dev-_"}) {
    DeviceRecord d;
    d.facts.id = id;
    ASSERT_TRUE((*store)->upsert_device(d).ok());
  }
  auto devices = (*store)->load_devices();
  ASSERT_TRUE(devices.ok());
  std::vector<std::string> ids;
  for (const auto& d : *devices) ids.push_back(d.facts.id);
  EXPECT_EQ(ids, (std::vector<std::string>{"dev-Z", "dev-_", "dev-a", "dev-b"}));
}

// Text that means something to SQL or to PostgreSQL's array syntax (a batch's devices and members
// travel as arrays there) comes back byte for byte.
TEST_P(StoreTest, ABatchKeepsAwkwardTextExactly) {
  auto store = db_.open();
  ASSERT_TRUE(store.ok()) << store.error().message;
  const std::vector<std::string> awkward = {
      "",          "NULL",     "a\"b",     "back\\slash", "{x,y}", "comma,s", "it's; DROP TABLE devices;--",
      "ünïcødé ✓", " spaced ", "new\nline"};
  StoreBatch batch;
  for (std::size_t i = 0; i < awkward.size(); ++i) {
    DeviceRecord d;
    d.facts.id = "dev-" + std::to_string(i);
    d.facts.hardware_type = awkward[i];
    d.last_error = awkward[awkward.size() - 1 - i];
    d.security_counter = 1ULL << 62;
    batch.devices.push_back(d);
  }
  Rollout r = sample_rollout("r-awkward");
  for (std::size_t i = 0; i < awkward.size(); ++i) {
    Member m;
    m.device_id = "dev-" + std::to_string(i);
    m.last_error = awkward[i];
    m.dirty = true;
    r.members.push_back(m);
  }
  r.rebuild_index();
  batch.rollouts.push_back(&r);
  ASSERT_TRUE((*store)->write(batch, 1).ok());
  auto devices = (*store)->load_devices();
  ASSERT_TRUE(devices.ok());
  ASSERT_EQ(devices->size(), awkward.size());
  for (const DeviceRecord& d : *devices) {
    const std::size_t i = std::stoul(d.facts.id.substr(4));
    EXPECT_EQ(d.facts.hardware_type, awkward[i]);
    EXPECT_EQ(d.last_error, awkward[awkward.size() - 1 - i]);
    EXPECT_EQ(d.security_counter, 1ULL << 62);
  }
  auto rollouts = (*store)->load_rollouts();
  ASSERT_TRUE(rollouts.ok()) << rollouts.error().message;
  ASSERT_EQ(rollouts->size(), 1u);
  for (const Member& m : (*rollouts)[0].members)
    EXPECT_EQ(m.last_error, awkward[std::stoul(m.device_id.substr(4))]);
  // Saved again (every row updated, none added).
  batch.rollouts.clear();
  ASSERT_TRUE((*store)->write(batch, 2).ok());
  EXPECT_EQ((*store)->load_devices()->size(), awkward.size());
}

TEST_P(StoreTest, UpdateHistorySurvivesReopenOncePerUpdateAndLatestLast) {
  {
    auto store = db_.open();
    ASSERT_TRUE(store.ok()) << store.error().message;
    std::vector<UpdateSample> samples;
    for (int i = 0; i < 5; ++i)
      samples.push_back({"r-1", "dev-" + std::to_string(i), 1, 1000 + i, 50, 2000, 3000 + i});
    ASSERT_TRUE((*store)->append_update_samples(samples).ok());
    // Saved again (a retried transaction): still one row per rollout, device and attempt.
    ASSERT_TRUE((*store)->append_update_samples({samples[4]}).ok());
  }
  auto store = db_.open();
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

TEST_P(StoreTest, FailedTransactionLeavesNoTrace) {
  auto store = db_.open();
  ASSERT_TRUE(store.ok()) << store.error().message;
  auto st = (*store)->transaction([&]() -> common::Status {
    DeviceRecord d;
    d.facts.id = "ghost";
    if (auto s = (*store)->upsert_device(d); !s) return s;
    return common::Error(common::Errc::kInternal, "abandon");
  });
  EXPECT_FALSE(st.ok());
  EXPECT_FALSE((*store)->device("ghost").ok());
  // The store is usable afterwards.
  DeviceRecord d;
  d.facts.id = "real";
  EXPECT_TRUE((*store)->upsert_device(d).ok());
  EXPECT_TRUE((*store)->device("real").ok());
}

// Reads inside a transaction see its own writes (the PostgreSQL store queues writes until a read
// or the commit).
TEST_P(StoreTest, ATransactionReadsItsOwnWrites) {
  auto store = db_.open();
  ASSERT_TRUE(store.ok()) << store.error().message;
  auto st = (*store)->transaction([&]() -> common::Status {
    for (int i = 0; i < 1200; ++i) {  // more than one pipeline's worth
      EventRecord e{0, i, "dev-1", "", "progress", std::to_string(i)};
      if (auto s = (*store)->append_event(e); !s) return s;
    }
    auto seen = (*store)->events("dev-1", "", 5000, 0);
    if (!seen) return seen.error();
    EXPECT_EQ(seen->size(), 1200u);
    DeviceRecord d;
    d.facts.id = "dev-1";
    return (*store)->upsert_device(d);
  });
  ASSERT_TRUE(st.ok()) << st.error().message;
  EXPECT_EQ((*store)->events("dev-1", "", 5000, 0)->size(), 1200u);
  EXPECT_TRUE((*store)->device("dev-1").ok());
}

// One StoreBatch is one transaction, its audit entries typed (actor and action kept apart).
TEST_P(StoreTest, ABatchLandsWholeWithTypedAuditEntries) {
  auto store = db_.open();
  ASSERT_TRUE(store.ok()) << store.error().message;
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
  db_.refuse_audit_inserts();
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

TEST_P(StoreTest, KillNineLosesNoAcknowledgedWrite) {
  { ASSERT_TRUE(db_.open().ok()); }
  int pipefd[2];
  ASSERT_EQ(pipe(pipefd), 0);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    close(pipefd[0]);
    auto store = db_.open();
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
  ASSERT_TRUE(WIFSIGNALED(status)) << "the writer exited with " << WEXITSTATUS(status);
  auto store = db_.open();
  ASSERT_TRUE(store.ok()) << store.error().message;
  auto events = (*store)->events("dev", "", 1'000'000, 0);
  ASSERT_TRUE(events.ok());
  // Every acknowledged batch is there, and batches are whole (50 events each).
  EXPECT_GE(static_cast<std::int64_t>(events->size()), (acknowledged + 1) * 50);
  EXPECT_EQ(events->size() % 50, 0u);
}

TEST_P(AuditChainTest, VerifiesAndDetectsEditsAndDeletions) {
  std::string head;
  {
    auto store = db_.open();
    ASSERT_TRUE(store.ok()) << store.error().message;
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
    auto store = db_.open();
    EXPECT_TRUE(store.ok());
    auto all = (*store)->audit_entries(0, 100);
    EXPECT_TRUE(all.ok());
    return verify_audit_chain(*all, expected_head);
  };
  // Edited detail.
  db_.exec("UPDATE audit SET detail = 'rollout r-harmless' WHERE seq = 3");
  auto v = check(head);
  ASSERT_FALSE(v.ok());
  EXPECT_NE(v.error().message.find("audit entry 3 (rollout.start) was modified"), std::string::npos)
      << v.error().message;
  // Edit with a recomputed hash of that entry still breaks the link of the next one.
  {
    auto store = db_.open();
    auto all = (*store)->audit_entries(0, 100);
    AuditEntry e = (*all)[2];
    db_.exec("UPDATE audit SET hash = '" + audit_entry_hash(e) + "' WHERE seq = 3");
  }
  v = check(head);
  ASSERT_FALSE(v.ok());
  EXPECT_NE(v.error().message.find("audit entry 4 does not link"), std::string::npos) << v.error().message;
  // Deleted entry.
  db_.exec("DELETE FROM audit WHERE seq IN (3)");
  v = check(head);
  ASSERT_FALSE(v.ok());
  EXPECT_NE(v.error().message.find("audit entry 3 is missing"), std::string::npos) << v.error().message;
}

TEST_P(AuditChainTest, TruncationIsDetectedWithARecordedHead) {
  auto store = db_.open();
  ASSERT_TRUE(store.ok()) << store.error().message;
  std::string head;
  for (int i = 0; i < 3; ++i) head = (*store)->append_audit("engine", "wave.gate", "x", i)->hash;
  auto all = (*store)->audit_entries(0, 100);
  all->pop_back();
  EXPECT_TRUE(verify_audit_chain(*all).ok());  // without the recorded head a cut tail looks fine
  auto v = verify_audit_chain(*all, head);
  ASSERT_FALSE(v.ok());
  EXPECT_NE(v.error().message.find("removed from the end"), std::string::npos);
}

// Two stores (two orchestrator processes) appending to one database keep one chain.
TEST_P(AuditChainTest, ConcurrentAppendersKeepOneChain) {
  auto a = db_.open();
  auto b = db_.open();
  ASSERT_TRUE(a.ok() && b.ok());
  std::thread other([&] {
    for (int i = 0; i < 50; ++i) (void)(*b)->append_audit("engine", "b", std::to_string(i), i);
  });
  for (int i = 0; i < 50; ++i) (void)(*a)->append_audit("engine", "a", std::to_string(i), i);
  other.join();
  auto all = (*a)->audit_entries(0, 1000);
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->size(), 100u);
  auto v = verify_audit_chain(*all);
  EXPECT_TRUE(v.ok()) << v.error().message;
}

std::string backend_name(const ::testing::TestParamInfo<std::string>& info) { return info.param; }
INSTANTIATE_TEST_SUITE_P(Backends, StoreTest, ::testing::Values("sqlite", "postgresql"), backend_name);
INSTANTIATE_TEST_SUITE_P(Backends, AuditChainTest, ::testing::Values("sqlite", "postgresql"), backend_name);

}  // namespace
}  // namespace fota::orchestrator

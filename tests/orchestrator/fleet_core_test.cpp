// SPDX-License-Identifier: Apache-2.0
// The fleet core in-process with a manual clock: messages and operator actions in, store batches
// and commands out; a save that fails takes back what it would have recorded.
#include "fota/orchestrator/fleet_core.hpp"

#include <gtest/gtest.h>

#include <spdlog/sinks/null_sink.h>

#include <algorithm>

namespace fota::orchestrator {
namespace {

constexpr const char* kArtifact = "0123456789abcdef0123456789abcdef";
constexpr const char* kOldArtifact = "ffffffffffffffffffffffffffffffff";
constexpr Millis kSecond = 1000;

class FakeCatalog final : public ArtifactCatalog {
 public:
  common::Result<v1::SignedManifest> signed_manifest(const std::string& artifact_id) const override {
    if (artifact_id != kArtifact) return common::Error(common::Errc::kNotFound, "no artifact " + artifact_id);
    v1::SignedManifest m;
    m.set_manifest("manifest of " + artifact_id);
    return m;
  }
  std::uint64_t image_size(const std::string& artifact_id) const override {
    return artifact_id == kArtifact ? 1024 * 1024 : 0;
  }
};

class FleetCoreTest : public ::testing::Test {
 protected:
  FleetCoreTest() : core_(options(), catalog_, quiet_log()) {}

  static std::shared_ptr<spdlog::logger> quiet_log() {
    return std::make_shared<spdlog::logger>("fleet-core-test",
                                            std::make_shared<spdlog::sinks::null_sink_mt>());
  }
  FleetCoreOptions options() {
    FleetCoreOptions o;
    // Deterministic ids: r-test-1, r-test-2, ...
    o.new_rollout_id = [this] { return "r-test-" + std::to_string(++ids_); };
    o.command_key = command_key();
    return o;
  }

  // The orchestrator command key of every core in these tests, made once per process.
  static std::shared_ptr<const common::Ed25519PrivateKey> command_key() {
    static const auto key = std::make_shared<const common::Ed25519PrivateKey>(
        std::move(common::Ed25519PrivateKey::generate()).value());
    return key;
  }
  static common::TrustStore command_keys() {
    common::TrustStore keys;
    keys.add(command_key()->public_key());
    return keys;
  }

  // A save that records every batch it is given, or fails while `failing_`.
  SaveBatch save() {
    return [this](const StoreBatch& batch) -> common::Status {
      if (failing_) return common::Error(common::Errc::kIo, "disk full");
      saved_.push_back(batch);
      for (Rollout* r : batch.rollouts) {
        r->dirty = false;
        for (Member& m : r->members) m.dirty = false;
      }
      return common::ok_status();
    };
  }

  static common::DeviceId id_of(const std::string& id) { return *common::DeviceId::parse(id); }

  void report_inventory(const std::string& id, FleetCore* core = nullptr) {
    v1::Inventory inv;
    inv.set_device_id(id);
    inv.set_hardware_type("gw");
    inv.set_time_zone("UTC");
    inv.set_artifact_id(kOldArtifact);
    inv.set_version("1.0");
    (*inv.mutable_attributes())["tags"] = "fleet";
    (core != nullptr ? *core : core_).on_message(id_of(id), inv, now_);
  }

  void report(const v1::Command& command, v1::Phase phase, std::uint64_t sequence) {
    v1::Progress p;
    p.set_device_id(command.device_id());
    p.set_deployment_id(command.deployment_id());
    p.set_command_id(command.command_id());
    p.set_artifact_id(kArtifact);
    p.set_phase(phase);
    p.set_sequence(sequence);
    core_.on_message(id_of(command.device_id()), p, now_);
  }

  // One loop iteration: tick, then save.
  common::Status step() {
    core_.tick(now_);
    return core_.commit(save());
  }

  std::vector<v1::Command> take_commands() {
    std::vector<v1::Command> out;
    for (const DeviceCommand& c : core_.take_commands()) {
      // Every command the core queues is signed with the command key, as a device checks it.
      auto verified = common::verify_command(c.payload, command_keys());
      EXPECT_TRUE(verified.ok()) << (verified.ok() ? "" : verified.error().to_string());
      v1::Command cmd;
      EXPECT_TRUE(cmd.ParseFromString(c.payload));
      EXPECT_EQ(c.topic, topics_.device_topic(id_of(cmd.device_id()), common::Channel::kCommand));
      EXPECT_GT(c.expiry_seconds, 0u);
      out.push_back(cmd);
    }
    return out;
  }

  static RolloutSpec spec(const std::string& extra = "") {
    auto s = parse_rollout_spec(std::string("name: t\nartifact: ") + kArtifact +
                                "\ntarget: {tags: [fleet]}\n" + extra);
    EXPECT_TRUE(s.ok()) << s.error().message;
    return *s;
  }

  static std::size_t count_audit(const StoreBatch& batch, const std::string& action) {
    return static_cast<std::size_t>(std::count_if(batch.audit.begin(), batch.audit.end(),
                                                  [&](const AuditRecord& a) { return a.action == action; }));
  }
  static std::size_t count_events(const StoreBatch& batch, const std::string& kind) {
    return static_cast<std::size_t>(std::count_if(batch.events.begin(), batch.events.end(),
                                                  [&](const EventRecord& e) { return e.kind == kind; }));
  }

  common::TopicScheme topics_;
  FakeCatalog catalog_;
  int ids_ = 0;
  FleetCore core_;
  Millis now_ = *parse_timestamp("2026-12-03T08:00:00Z");
  bool failing_ = false;
  std::vector<StoreBatch> saved_;
};

TEST_F(FleetCoreTest, DevicesReportARolloutStartsAndCommandsComeOutOnceSaved) {
  report_inventory("dev-0");
  report_inventory("dev-1");
  ASSERT_TRUE(step().ok());
  ASSERT_EQ(saved_.size(), 1u);
  EXPECT_EQ(saved_[0].devices.size(), 2u);
  EXPECT_EQ(count_events(saved_[0], "inventory"), 2u);
  EXPECT_TRUE(take_commands().empty());
  ASSERT_TRUE(core_.device("dev-0").has_value());
  EXPECT_EQ(core_.device("dev-0")->facts.artifact_id, kOldArtifact);
  EXPECT_TRUE(core_.device("dev-0")->facts.online);

  auto created = core_.create_rollout(spec(), "operator:alice", now_, save());
  ASSERT_TRUE(created.ok()) << created.error().message;
  EXPECT_EQ((*created)->id, "r-test-1");
  ASSERT_EQ(saved_.size(), 2u);
  ASSERT_EQ(count_audit(saved_[1], "rollout.create"), 1u);
  EXPECT_EQ(saved_[1].audit[0].actor, "operator:alice");
  EXPECT_EQ(saved_[1].audit[0].detail.rfind("r-test-1 t artifact ", 0), 0u);

  auto started = core_.rollout_action("r-test-1", "start", "operator:alice", now_, save());
  ASSERT_TRUE(started.ok()) << started.error().message;
  EXPECT_EQ(count_audit(saved_.back(), "rollout.start"), 1u);
  EXPECT_GE(count_audit(saved_.back(), "engine.decision"), 1u);
  EXPECT_EQ(count_events(saved_.back(), "command"), 2u);
  const std::vector<v1::Command> commands = take_commands();
  ASSERT_EQ(commands.size(), 2u);
  for (const v1::Command& c : commands) {
    EXPECT_TRUE(c.has_install());
    EXPECT_EQ(c.deployment_id(), "r-test-1");
    EXPECT_EQ(c.install().manifest().manifest(), std::string("manifest of ") + kArtifact);
    EXPECT_EQ(c.issued_at_ms(), now_);
  }

  // Both devices commit: the rollout ends at once, not a tick later.
  now_ += 5 * kSecond;
  for (const v1::Command& c : commands) {
    report(c, v1::PHASE_DOWNLOADING, 1);
    report(c, v1::PHASE_COMMITTED, 2);
  }
  ASSERT_TRUE(step().ok());
  EXPECT_EQ(core_.rollout("r-test-1")->state, RolloutState::kCompleted);
  EXPECT_EQ(saved_.back().samples.size(), 2u);  // finished updates become prediction history
  EXPECT_EQ(core_.summary(now_).progress_reports, 4u);
  EXPECT_EQ(core_.summary(now_).rollouts_by_state.at("completed"), 1u);
  EXPECT_TRUE(core_.owner("dev-0").empty());
}

// Issue 20: what a device measured itself (Inventory.measurements) is saved with it, comes back
// after a restart, and is what the plan rests on before any history.
TEST_F(FleetCoreTest, WhatADeviceMeasuredIsSavedRestoredAndPlannedFrom) {
  report_inventory("dev-0");
  v1::Inventory inv;
  inv.set_device_id("dev-1");
  inv.set_time_zone("UTC");
  (*inv.mutable_attributes())["tags"] = "fleet";
  v1::DeviceMeasurements& m = *inv.mutable_measurements();
  m.set_download_bytes_per_second(2 * 1024 * 1024);
  m.set_download_samples(3);
  m.set_verify_bytes_per_second(4 * 1024 * 1024);
  m.set_reboot_ms(2000);
  m.set_health_check_ms(-5);  // a broken clock: not believed
  m.set_measured_at_ms(now_);
  core_.on_message(id_of("dev-1"), inv, now_);
  ASSERT_TRUE(step().ok());
  const DeviceRecord saved = *core_.device("dev-1");
  EXPECT_EQ(saved.measured.download_bytes_per_second, 2u * 1024 * 1024);
  EXPECT_EQ(saved.measured.verify_bytes_per_second, 4u * 1024 * 1024);
  EXPECT_EQ(saved.measured.reboot_ms, 2000);
  EXPECT_EQ(saved.measured.health_check_ms, 0);
  EXPECT_EQ(core_.device("dev-0")->measured.reboot_ms, 0);
  bool stored = false;
  for (const StoreBatch& b : saved_) {
    for (const DeviceRecord& d : b.devices) stored |= d.facts.id == "dev-1" && d.measured.reboot_ms == 2000;
  }
  EXPECT_TRUE(stored);

  // A restarted core plans from the stored figures: 1 MiB at 2 MiB/s + 0.25 s verify + 2 s reboot.
  FleetCore restarted(options(), catalog_, quiet_log());
  restarted.restore({*core_.device("dev-0"), saved}, {}, {}, {}, {}, {});
  ASSERT_TRUE(restarted.create_rollout(spec("max_concurrent: 1\n"), "operator:alice", now_, save()).ok());
  const auto plan = restarted.plan("r-test-1", now_);
  ASSERT_TRUE(plan.ok()) << plan.error().message;
  EXPECT_EQ(plan->prediction.devices_with_own_measurements, 1u);
  EXPECT_EQ(plan->prediction.devices_with_default_rate, 1u);
  // dev-0 at the defaults (1 MB/s, 30 s), dev-1 its own 0.5 + 0.25 + 2 s.
  EXPECT_EQ(plan->prediction.duration_ms, 1'048 + 30'000 + 500 + 250 + 2'000);
}

TEST_F(FleetCoreTest, AnActionWhoseSaveFailsIsTakenBackWhole) {
  report_inventory("dev-0");
  report_inventory("dev-1");
  ASSERT_TRUE(step().ok());
  failing_ = true;
  EXPECT_FALSE(core_.create_rollout(spec(), "operator:bob", now_, save()).ok());
  EXPECT_TRUE(core_.rollouts().empty());
  failing_ = false;
  auto created = core_.create_rollout(spec(), "operator:alice", now_, save());
  ASSERT_TRUE(created.ok());
  const std::string id = (*created)->id;
  EXPECT_EQ(count_audit(saved_.back(), "rollout.create"), 1u);  // this one's only

  // Something the loop queued before the action: it stays queued.
  v1::Presence offline;
  offline.set_online(false);
  core_.on_message(id_of("dev-1"), offline, now_);
  failing_ = true;
  auto started = core_.rollout_action(id, "start", "operator:alice", now_, save());
  EXPECT_FALSE(started.ok());
  EXPECT_EQ(core_.rollout(id)->state, RolloutState::kCreated);
  EXPECT_TRUE(core_.owner("dev-0").empty());
  EXPECT_TRUE(take_commands().empty());

  failing_ = false;
  const std::size_t saves = saved_.size();
  ASSERT_TRUE(step().ok());
  ASSERT_EQ(saved_.size(), saves + 1);
  const StoreBatch& after = saved_.back();
  EXPECT_EQ(count_audit(after, "rollout.start"), 0u);
  EXPECT_EQ(count_audit(after, "engine.decision"), 0u);
  EXPECT_EQ(count_events(after, "command"), 0u);
  EXPECT_EQ(count_events(after, "presence"), 1u);  // queued before the action: kept
  EXPECT_TRUE(take_commands().empty());

  // The same action succeeds once saves do.
  ASSERT_TRUE(core_.rollout_action(id, "start", "operator:alice", now_, save()).ok());
  EXPECT_EQ(count_audit(saved_.back(), "rollout.start"), 1u);
  EXPECT_FALSE(take_commands().empty());
}

TEST_F(FleetCoreTest, CommandsWaitUntilTheStateThatProducedThemIsSaved) {
  report_inventory("dev-0");
  report_inventory("dev-1");
  ASSERT_TRUE(step().ok());
  ASSERT_TRUE(
      core_.create_rollout(spec("start_at: 2026-12-03T08:10:00Z\n"), "operator:alice", now_, save()).ok());
  ASSERT_TRUE(core_.rollout_action("r-test-1", "start", "operator:alice", now_, save()).ok());
  EXPECT_TRUE(take_commands().empty());  // not before start_at

  now_ = *parse_timestamp("2026-12-03T08:10:00Z");
  failing_ = true;
  EXPECT_FALSE(step().ok());
  EXPECT_TRUE(take_commands().empty());  // decided, not durable: not sent

  failing_ = false;
  now_ += kSecond;
  ASSERT_TRUE(step().ok());
  EXPECT_EQ(count_events(saved_.back(), "command"), 2u);  // the failed save's batch, saved now
  EXPECT_EQ(take_commands().size(), 2u);
}

TEST_F(FleetCoreTest, RolloutIdsComeFromTheInjectedGeneratorAndNeverRepeat) {
  std::vector<std::string> ids = {"r-same", "r-same", "r-other"};
  FleetCoreOptions o;
  o.new_rollout_id = [&, n = std::size_t{0}]() mutable { return ids[n++ % ids.size()]; };
  o.command_key = command_key();
  FleetCore core(o, catalog_, quiet_log());
  report_inventory("dev-0", &core);
  auto first = core.create_rollout(spec(), "operator:alice", now_, save());
  ASSERT_TRUE(first.ok());
  EXPECT_EQ((*first)->id, "r-same");
  ASSERT_TRUE(core.rollout_action("r-same", "abort", "operator:alice", now_, save()).ok());
  auto second = core.create_rollout(spec(), "operator:alice", now_, save());
  ASSERT_TRUE(second.ok()) << second.error().message;
  EXPECT_EQ((*second)->id, "r-other");
}

TEST_F(FleetCoreTest, UnknownRolloutsAndActionsAreRefusedWithoutStateChange) {
  report_inventory("dev-0");
  ASSERT_TRUE(step().ok());
  auto missing = core_.rollout_action("r-nope", "start", "operator:alice", now_, save());
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code, common::Errc::kNotFound);
  ASSERT_TRUE(core_.create_rollout(spec(), "operator:alice", now_, save()).ok());
  const std::size_t saves = saved_.size();
  auto unknown = core_.rollout_action("r-test-1", "launch", "operator:alice", now_, save());
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.error().code, common::Errc::kInvalidArgument);
  EXPECT_EQ(saved_.size(), saves);
}

// Certificate lifecycle: a revoked device is selected by no rollout and what it says is ignored;
// a decommissioned one leaves the inventory; both are audited and taken back when the save fails.
TEST_F(FleetCoreTest, ARevokedDeviceIsSelectedByNoRolloutAndItsMessagesAreIgnored) {
  report_inventory("dev-0");
  report_inventory("dev-stolen");
  ASSERT_TRUE(step().ok());

  auto revoked = core_.revoke_device("dev-stolen", "stolen 2026-12-02", "cert:admin-ann", now_, save());
  ASSERT_TRUE(revoked.ok()) << revoked.error().message;
  EXPECT_EQ(revoked->actor, "cert:admin-ann");
  EXPECT_EQ(revoked->revoked_ms, now_);
  EXPECT_EQ(revoked->decommissioned_ms, 0);
  ASSERT_EQ(count_audit(saved_.back(), "device.revoke"), 1u);
  EXPECT_EQ(saved_.back().audit[0].detail, "dev-stolen reason: stolen 2026-12-02");
  ASSERT_EQ(saved_.back().revocations.size(), 1u);
  EXPECT_TRUE(core_.device("dev-stolen")->facts.revoked);  // still listed, marked
  EXPECT_FALSE(core_.device("dev-stolen")->facts.online);
  EXPECT_TRUE(core_.is_revoked("dev-stolen"));

  // Revoking again changes nothing and records nothing.
  const std::size_t saves = saved_.size();
  ASSERT_TRUE(core_.revoke_device("dev-stolen", "again", "cert:admin-bob", now_ + kSecond, save()).ok());
  EXPECT_EQ(saved_.size(), saves);
  EXPECT_EQ(core_.revocations().at("dev-stolen").actor, "cert:admin-ann");

  // A rollout over the whole tag takes the other device only; naming the revoked one is refused.
  auto created = core_.create_rollout(spec(), "operator:alice", now_, save());
  ASSERT_TRUE(created.ok()) << created.error().message;
  ASSERT_TRUE(core_.rollout_action("r-test-1", "start", "operator:alice", now_, save()).ok());
  const auto commands = take_commands();
  ASSERT_EQ(commands.size(), 1u);
  EXPECT_EQ(commands[0].device_id(), "dev-0");
  auto named = core_.create_rollout(
      [] {
        auto s = parse_rollout_spec(std::string("name: n\nartifact: ") + kArtifact +
                                    "\ntarget: {devices: [dev-stolen]}\n");
        return *s;
      }(),
      "operator:alice", now_, save());
  ASSERT_FALSE(named.ok());
  EXPECT_NE(named.error().message.find("revoked"), std::string::npos) << named.error().message;

  // A message still on its way is ignored: no inventory, no re-registration.
  const auto facts_before = core_.device("dev-stolen")->facts;
  v1::Inventory inv;
  inv.set_device_id("dev-stolen");
  inv.set_hardware_type("gw");
  inv.set_version("6.6.6");
  core_.on_message(id_of("dev-stolen"), inv, now_ + 2 * kSecond);
  ASSERT_TRUE(step().ok());
  EXPECT_EQ(core_.device("dev-stolen")->facts.version, facts_before.version);
  EXPECT_EQ(core_.ignored_from_revoked(), 1u);
  EXPECT_EQ(core_.summary(now_).messages_from_revoked, 1u);
  EXPECT_EQ(count_events(saved_.back(), "inventory"), 0u);
}

TEST_F(FleetCoreTest, ADecommissionedDeviceLeavesTheInventoryAndStaysOut) {
  report_inventory("dev-0");
  report_inventory("dev-old");
  ASSERT_TRUE(step().ok());
  // Not while a rollout owns it.
  ASSERT_TRUE(core_.create_rollout(spec(), "operator:alice", now_, save()).ok());
  ASSERT_TRUE(core_.rollout_action("r-test-1", "start", "operator:alice", now_, save()).ok());
  auto refused = core_.decommission_device("dev-old", "", "cert:admin-ann", now_, save());
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, common::Errc::kConflict);
  EXPECT_NE(refused.error().message.find("r-test-1"), std::string::npos) << refused.error().message;
  ASSERT_TRUE(core_.rollout_action("r-test-1", "abort", "operator:alice", now_, save()).ok());

  auto done = core_.decommission_device("dev-old", "end of life", "cert:admin-ann", now_, save());
  ASSERT_TRUE(done.ok()) << done.error().message;
  EXPECT_EQ(done->decommissioned_ms, now_);
  EXPECT_EQ(done->revoked_ms, now_);
  EXPECT_EQ(count_audit(saved_.back(), "device.decommission"), 1u);
  ASSERT_EQ(saved_.back().removed_devices.size(), 1u);
  EXPECT_EQ(saved_.back().removed_devices[0], "dev-old");
  EXPECT_FALSE(core_.device("dev-old").has_value());
  EXPECT_EQ(core_.devices().size(), 1u);
  EXPECT_TRUE(core_.is_revoked("dev-old"));

  // It cannot come back by reporting.
  report_inventory("dev-old");
  ASSERT_TRUE(step().ok());
  EXPECT_FALSE(core_.device("dev-old").has_value());

  // After a restart it stays out; a revoked-only device stays marked.
  ASSERT_TRUE(core_.revoke_device("dev-0", "", "cert:admin-ann", now_, save()).ok());
  FleetCore restarted(options(), catalog_, quiet_log());
  std::vector<DeviceRecord> stored;
  for (DeviceRecord d : core_.devices()) stored.push_back(d);
  DeviceRecord stray;  // a row the decommission did not delete would still not come back
  stray.facts.id = "dev-old";
  stored.push_back(stray);
  std::vector<RevocationRecord> revocations;
  for (const auto& [id, r] : core_.revocations()) revocations.push_back(r);
  restarted.restore(stored, {}, {}, revocations);
  EXPECT_FALSE(restarted.device("dev-old").has_value());
  ASSERT_TRUE(restarted.device("dev-0").has_value());
  EXPECT_TRUE(restarted.device("dev-0")->facts.revoked);
}

TEST_F(FleetCoreTest, ALifecycleActionWhoseSaveFailsIsTakenBack) {
  report_inventory("dev-0");
  ASSERT_TRUE(step().ok());
  failing_ = true;
  EXPECT_FALSE(core_.revoke_device("dev-0", "", "cert:admin-ann", now_, save()).ok());
  EXPECT_FALSE(core_.decommission_device("dev-0", "", "cert:admin-ann", now_, save()).ok());
  EXPECT_FALSE(core_.is_revoked("dev-0"));
  ASSERT_TRUE(core_.device("dev-0").has_value());
  EXPECT_FALSE(core_.device("dev-0")->facts.revoked);
  failing_ = false;
  ASSERT_TRUE(step().ok());
  EXPECT_EQ(count_audit(saved_.back(), "device.revoke"), 0u);
  EXPECT_TRUE(saved_.back().revocations.empty());
  EXPECT_TRUE(saved_.back().removed_devices.empty());
  // Bad input is refused before anything happens.
  EXPECT_EQ(core_.revoke_device("dev/0", "", "cert:admin-ann", now_, save()).error().code,
            common::Errc::kInvalidArgument);
  EXPECT_EQ(core_.revoke_device("dev-0", std::string(600, 'x'), "a", now_, save()).error().code,
            common::Errc::kInvalidArgument);
  // An id never seen may be revoked ahead of it.
  ASSERT_TRUE(core_.revoke_device("dev-never-seen", "", "cert:admin-ann", now_, save()).ok());
  EXPECT_FALSE(core_.device("dev-never-seen").has_value());
  report_inventory("dev-never-seen");
  ASSERT_TRUE(step().ok());
  EXPECT_FALSE(core_.device("dev-never-seen").has_value());
}

// Tags and groups are operator actions like the others: saved with their audit line, or taken
// back whole; a rollout naming a group records its members of the moment.
TEST_F(FleetCoreTest, TagAndGroupActionsAreSavedOrTakenBackAndGroupsResolveAtCreation) {
  for (const char* id : {"dev-0", "dev-1", "dev-2"}) report_inventory(id);
  ASSERT_TRUE(step().ok());
  failing_ = true;
  EXPECT_FALSE(core_.set_device_tag("dev-0", "lab", true, "token:olivia", now_, save()).ok());
  EXPECT_FALSE(core_.create_group("canary", "", "token:olivia", now_, save()).ok());
  EXPECT_TRUE(core_.device("dev-0")->facts.operator_tags.empty());
  EXPECT_TRUE(core_.groups().empty());
  failing_ = false;
  ASSERT_TRUE(step().ok());
  EXPECT_TRUE(saved_.back().tag_changes.empty());
  EXPECT_TRUE(saved_.back().created_groups.empty());
  EXPECT_EQ(count_audit(saved_.back(), "device.tag"), 0u);

  ASSERT_TRUE(core_.set_device_tag("dev-0", "lab", true, "token:olivia", now_, save()).ok());
  EXPECT_EQ(saved_.back().tag_changes.size(), 1u);
  EXPECT_EQ(count_audit(saved_.back(), "device.tag"), 1u);
  const std::size_t batches = saved_.size();
  ASSERT_TRUE(core_.set_device_tag("dev-0", "lab", true, "token:olivia", now_, save()).ok());  // no change
  EXPECT_EQ(saved_.size(), batches);
  ASSERT_TRUE(core_.create_group("canary", "", "token:olivia", now_, save()).ok());
  ASSERT_TRUE(core_.set_group_member("canary", "dev-1", true, "token:olivia", now_, save()).ok());
  failing_ = true;
  EXPECT_FALSE(core_.set_group_member("canary", "dev-2", true, "token:olivia", now_, save()).ok());
  EXPECT_FALSE(core_.delete_group("canary", "token:olivia", now_, save()).ok());
  failing_ = false;
  EXPECT_EQ(*core_.group_members("canary"), std::vector<std::string>{"dev-1"});
  EXPECT_EQ(core_.device("dev-1")->facts.static_groups, std::vector<std::string>{"canary"});
  EXPECT_TRUE(core_.device("dev-2")->facts.static_groups.empty());
  EXPECT_EQ(core_.set_group_member("canary", "nobody", true, "a", now_, save()).error().code,
            common::Errc::kNotFound);
  ASSERT_TRUE(core_.create_group("labs", "tag=lab", "token:olivia", now_, save()).ok());
  EXPECT_EQ(core_.set_group_member("labs", "dev-1", true, "a", now_, save()).error().code,
            common::Errc::kConflict);
  EXPECT_EQ(core_.groups_of(core_.device("dev-0")->facts), std::vector<std::string>{"labs"});

  RolloutSpec by_group = spec();
  by_group.target.tags.clear();
  by_group.target.groups = {"canary", "labs"};
  auto r = core_.create_rollout(by_group, "token:olivia", now_, save());
  ASSERT_TRUE(r.ok()) << r.error().message;
  const auto& resolved = (*r)->spec.target.resolved_groups;
  EXPECT_EQ(resolved.at("canary"), std::vector<std::string>{"dev-1"});
  EXPECT_EQ(resolved.at("labs"), std::vector<std::string>{"dev-0"});
  // Read back from its JSON as the store does, it targets the same devices.
  auto stored = parse_rollout_spec(rollout_spec_to_json((*r)->spec));
  ASSERT_TRUE(stored.ok()) << stored.error().message;
  EXPECT_EQ(stored->target.resolved_groups, resolved);
}

// An encrypted artifact names its recipients' key ids: a rollout whose target holds devices that
// reported another key (or none) is refused naming them, unless the spec says to exclude them
// (kept in the selector, so a late joiner without the key is left out too) or include them.
class RecipientCatalog final : public ArtifactCatalog {
 public:
  common::Result<v1::SignedManifest> signed_manifest(const std::string& artifact_id) const override {
    v1::Manifest m;
    m.set_artifact_id(artifact_id);
    m.mutable_encryption()->add_recipients()->set_recipient_key_id("key-a");
    v1::SignedManifest s;
    s.set_manifest(m.SerializeAsString());
    return s;
  }
  std::uint64_t image_size(const std::string&) const override { return 1024; }
};

TEST_F(FleetCoreTest, AnEncryptedArtifactIsRefusedForDevicesThatCannotDecryptItOrExcludesThem) {
  RecipientCatalog catalog;
  FleetCore core(options(), catalog, quiet_log());
  auto inventory = [&](const std::string& id, const std::string& key) {
    v1::Inventory inv;
    inv.set_device_id(id);
    inv.set_hardware_type("gw");
    inv.set_version("1.0");
    (*inv.mutable_attributes())["tags"] = "fleet";
    inv.set_decryption_key_id(key);
    core.on_message(id_of(id), inv, now_);
  };
  inventory("dev-holder", "key-a");
  inventory("dev-other", "key-b");
  inventory("dev-none", "");
  ASSERT_TRUE(core.commit(save()).ok());
  EXPECT_EQ(core.device("dev-other")->facts.decryption_key_id, "key-b");

  auto refused = core.create_rollout(spec(), "token:op", now_, save());
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, common::Errc::kInvalidArgument);
  const std::string& message = refused.error().message;
  EXPECT_NE(message.find("2 targeted device(s) cannot decrypt"), std::string::npos) << message;
  EXPECT_NE(message.find("dev-none (no decryption key)"), std::string::npos) << message;
  EXPECT_NE(message.find("dev-other (key key-b)"), std::string::npos) << message;
  EXPECT_EQ(message.find("dev-holder"), std::string::npos) << message;
  EXPECT_NE(message.find("non_recipients: exclude"), std::string::npos) << message;
  EXPECT_TRUE(core.rollouts().empty());
  // Naming only the holder is fine.
  auto named = parse_rollout_spec(std::string("name: t\nartifact: ") + kArtifact +
                                  "\ntarget: {devices: [dev-holder]}\n");
  ASSERT_TRUE(named.ok());
  auto holder_only = core.create_rollout(*named, "token:op", now_, save());
  ASSERT_TRUE(holder_only.ok()) << holder_only.error().message;
  ASSERT_TRUE(core.rollout_action((*holder_only)->id, "abort", "token:op", now_, save()).ok());

  auto excluded = core.create_rollout(spec("non_recipients: exclude\n"), "token:op", now_, save());
  ASSERT_TRUE(excluded.ok()) << excluded.error().message;
  const std::string id = (*excluded)->id;
  EXPECT_EQ((*excluded)->spec.target.decryption_keys, std::vector<std::string>{"key-a"});
  // Stored as canonical JSON and read back with the exclusion.
  auto stored = parse_rollout_spec(rollout_spec_to_json((*excluded)->spec));
  ASSERT_TRUE(stored.ok()) << stored.error().message;
  EXPECT_EQ(stored->target.decryption_keys, std::vector<std::string>{"key-a"});
  EXPECT_EQ(stored->non_recipients, NonRecipients::kExclude);
  ASSERT_TRUE(core.rollout_action(id, "start", "token:op", now_, save()).ok());
  inventory("dev-late", "");  // joins without a key
  now_ += kSecond;
  core.tick(now_);
  ASSERT_TRUE(core.commit(save()).ok());
  std::vector<std::string> sent_to;
  for (const DeviceCommand& c : core.take_commands()) {
    v1::Command cmd;
    ASSERT_TRUE(cmd.ParseFromString(c.payload));
    if (cmd.has_install()) sent_to.push_back(cmd.device_id());
  }
  EXPECT_EQ(sent_to, std::vector<std::string>{"dev-holder"});
  EXPECT_TRUE(core.owner("dev-late").empty());
  EXPECT_TRUE(core.owner("dev-other").empty());
}

}  // namespace
}  // namespace fota::orchestrator

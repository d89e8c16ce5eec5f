// SPDX-License-Identifier: Apache-2.0
// Signed checkpoints of the audit chain (pure: entries and checkpoints in memory, real Ed25519).
#include <gtest/gtest.h>

#include "fota/orchestrator/audit.hpp"

namespace fota::orchestrator {
namespace {

std::vector<AuditEntry> chain(int n, const std::string& actor = "token:alice") {
  std::vector<AuditEntry> entries;
  std::string prev = genesis_hash();
  for (int i = 1; i <= n; ++i) {
    AuditEntry e{i, 1'000'000 + i, actor, "rollout.start", "r-" + std::to_string(i), prev, ""};
    e.hash = audit_entry_hash(e);
    prev = e.hash;
    entries.push_back(e);
  }
  return entries;
}

class AuditCheckpointTest : public ::testing::Test {
 protected:
  AuditCheckpoint sign(const std::vector<AuditEntry>& entries, int seq, std::int64_t time_ms) {
    auto c = sign_audit_checkpoint(entries[static_cast<std::size_t>(seq - 1)], time_ms, key_);
    EXPECT_TRUE(c.ok());
    return *c;
  }
  common::Ed25519PrivateKey key_ = std::move(common::Ed25519PrivateKey::generate()).value();
};

TEST_F(AuditCheckpointTest, CheckpointsOfTheChainVerifyAndRoundTripThroughTheFile) {
  const auto entries = chain(10);
  const std::string file =
      audit_checkpoint_line(sign(entries, 4, 2000)) + audit_checkpoint_line(sign(entries, 10, 3000));
  auto parsed = parse_audit_checkpoints(file);
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  ASSERT_EQ(parsed->size(), 2u);
  auto v = verify_audit_checkpoints(entries, *parsed, key_.public_key());
  ASSERT_TRUE(v.ok()) << v.error().message;
  EXPECT_EQ(v->checkpoints, 2u);
  EXPECT_EQ(v->last_seq, 10);
  EXPECT_EQ(v->last_time_ms, 3000);
}

// What verify_audit_chain cannot see: every entry rewritten with recomputed hashes.
TEST_F(AuditCheckpointTest, AChainRewrittenWithRecomputedHashesContradictsTheFirstCheckpointAfterTheEdit) {
  const auto original = chain(10);
  const std::vector<AuditCheckpoint> checkpoints{sign(original, 3, 2000), sign(original, 8, 3000)};
  auto rewritten = chain(10);
  // Entries 1..5 stay, 6 on are rewritten by someone who recomputes the hashes.
  std::string prev = rewritten[4].hash;
  for (std::size_t i = 5; i < rewritten.size(); ++i) {
    rewritten[i].actor = "token:mallory";
    rewritten[i].prev_hash = prev;
    rewritten[i].hash = audit_entry_hash(rewritten[i]);
    prev = rewritten[i].hash;
  }
  ASSERT_TRUE(verify_audit_chain(rewritten).ok());
  auto v = verify_audit_checkpoints(rewritten, checkpoints, key_.public_key());
  ASSERT_FALSE(v.ok());
  EXPECT_EQ(v.error().code, common::Errc::kIntegrity);
  EXPECT_NE(v.error().message.find("checkpoint 2 (entry 8, signed "), std::string::npos) << v.error().message;
  EXPECT_NE(v.error().message.find("the audit log was rewritten after this checkpoint was signed"),
            std::string::npos);
}

TEST_F(AuditCheckpointTest, EditedForgedReorderedOrMissingCheckpointsAreRefused) {
  const auto entries = chain(6);
  // Edited: a checkpoint moved to the forged chain's head without the key.
  AuditCheckpoint edited = sign(entries, 5, 2000);
  edited.head_hash = entries[5].hash;
  auto v = verify_audit_checkpoints(entries, {edited}, key_.public_key());
  ASSERT_FALSE(v.ok());
  EXPECT_EQ(v.error().code, common::Errc::kBadSignature);
  EXPECT_NE(v.error().message.find("checkpoint 1 (entry 5"), std::string::npos) << v.error().message;
  // Signed by another key (one the attacker holds).
  auto other = std::move(common::Ed25519PrivateKey::generate()).value();
  v = verify_audit_checkpoints(entries, {*sign_audit_checkpoint(entries[5], 2000, other)}, key_.public_key());
  ASSERT_FALSE(v.ok());
  EXPECT_EQ(v.error().code, common::Errc::kBadSignature);
  // Reordered.
  v = verify_audit_checkpoints(entries, {sign(entries, 5, 3000), sign(entries, 2, 2000)}, key_.public_key());
  ASSERT_FALSE(v.ok());
  EXPECT_NE(v.error().message.find("reordered"), std::string::npos) << v.error().message;
  // None at all.
  v = verify_audit_checkpoints(entries, {}, key_.public_key());
  ASSERT_FALSE(v.ok());
  EXPECT_EQ(v.error().code, common::Errc::kNotFound);
}

TEST_F(AuditCheckpointTest, EntriesCutBelowASignedHeadAreReported) {
  const auto entries = chain(6);
  const std::vector<AuditCheckpoint> checkpoints{sign(entries, 6, 2000)};
  const std::vector<AuditEntry> cut(entries.begin(), entries.begin() + 4);
  auto v = verify_audit_checkpoints(cut, checkpoints, key_.public_key());
  ASSERT_FALSE(v.ok());
  EXPECT_NE(v.error().message.find("covers entry 6 but the chain has 4 entries"), std::string::npos)
      << v.error().message;
}

TEST_F(AuditCheckpointTest, AMalformedCheckpointLineIsNamed) {
  const auto entries = chain(2);
  const std::string good = audit_checkpoint_line(sign(entries, 2, 2000));
  for (const std::string& bad :
       {std::string("{\"seq\": 1"), std::string("[1,2]"), std::string("{\"seq\": 1}")}) {
    auto parsed = parse_audit_checkpoints(good + bad + "\n");
    ASSERT_FALSE(parsed.ok()) << bad;
    EXPECT_EQ(parsed.error().code, common::Errc::kMalformed);
    EXPECT_NE(parsed.error().message.find("line 2"), std::string::npos) << parsed.error().message;
  }
}

}  // namespace
}  // namespace fota::orchestrator

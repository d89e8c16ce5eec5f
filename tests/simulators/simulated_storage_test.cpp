// SPDX-License-Identifier: Apache-2.0
#include "fota/sim/simulated_storage.hpp"

#include <gtest/gtest.h>

#include "fota/common/crypto.hpp"

namespace fota::sim {
namespace {

TEST(ChunkPool, IdenticalContentIsStoredOnce) {
  ChunkPool pool;
  auto a = pool.intern(std::string(16 * 1024, 'x'));
  auto b = pool.intern(std::string(16 * 1024, 'x'));
  auto c = pool.intern(std::string(16 * 1024, 'y'));
  EXPECT_EQ(a.get(), b.get());
  EXPECT_NE(a.get(), c.get());
  EXPECT_EQ(pool.distinct(), 2u);
}

TEST(SimulatedStorage, FactoryBootThenTrialThenCommit) {
  ChunkPool pool;
  SimulatedStorage storage(pool, "1.0.0");
  auto booted = storage.boot();
  ASSERT_TRUE(booted.ok());
  EXPECT_EQ(*booted, "a");
  EXPECT_EQ(storage.bootable_version("a", "", "2.0.0"), "1.0.0");

  const std::string image = std::string(3000, 'i') + std::string(2000, 'j');
  const std::string digest = common::digest_bytes(common::Sha256::digest(image));
  ASSERT_TRUE(storage.prepare({"b", image.size(), false, v1::PAYLOAD_TYPE_AB_IMAGE, ""}).ok());
  // Chunks arrive out of order and are written by offset.
  ASSERT_TRUE(storage.write("b", 3000, image.substr(3000)).ok());
  EXPECT_EQ(storage.bootable_version("b", digest, "2.0.0"), "") << "a partial image must not be bootable";
  EXPECT_FALSE(storage.hash("b", image.size()).ok());
  ASSERT_TRUE(storage.write("b", 0, image.substr(0, 3000)).ok());
  auto hash = storage.hash("b", image.size());
  ASSERT_TRUE(hash.ok());
  EXPECT_EQ(*hash, digest);
  EXPECT_EQ(storage.bootable_version("b", digest, "2.0.0"), "2.0.0");

  ASSERT_TRUE(storage.activate("b").ok());
  booted = storage.boot();
  ASSERT_TRUE(booted.ok());
  EXPECT_EQ(*booted, "b");
  auto status = storage.boot_status();
  ASSERT_TRUE(status.ok());
  EXPECT_TRUE(status->trial);
  ASSERT_TRUE(storage.commit("b").ok());
  booted = storage.boot();
  EXPECT_EQ(*booted, "b");
  EXPECT_FALSE(storage.boot_status()->trial);
}

TEST(SimulatedStorage, BootloaderFallsBackAfterTheBootLimit) {
  ChunkPool pool;
  SimulatedStorage storage(pool, "1.0.0");
  ASSERT_TRUE(storage.boot().ok());
  ASSERT_TRUE(storage.prepare({"b", 10, false, v1::PAYLOAD_TYPE_AB_IMAGE, ""}).ok());
  ASSERT_TRUE(storage.write("b", 0, "0123456789").ok());
  ASSERT_TRUE(storage.activate("b").ok());
  // The trial slot never confirms: three attempts, then the committed slot again.
  for (int attempt = 0; attempt < 3; ++attempt) EXPECT_EQ(*storage.boot(), "b");
  EXPECT_EQ(*storage.boot(), "a");
  EXPECT_FALSE(storage.boot_status()->trial);
}

TEST(SimulatedStorage, FullStorageRefusesWritesPastTheSpace) {
  ChunkPool pool;
  SimulatedStorage storage(pool, "1.0.0", StorageFaults{4096});
  ASSERT_TRUE(storage.boot().ok());  // a device writes into the slot that is not running
  ASSERT_TRUE(storage.prepare({"b", 8192, false, v1::PAYLOAD_TYPE_AB_IMAGE, ""}).ok());
  EXPECT_TRUE(storage.write("b", 0, std::string(4096, 'a')).ok());
  auto refused = storage.write("b", 4096, std::string(4096, 'b'));
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.error().message.find("no space left"), std::string::npos);
  EXPECT_FALSE(storage.write("c", 0, "x").ok()) << "unknown slot";
}

// Slot writes are volatile until synced: a power cut loses what sync() did not cover, so a
// journal stored before its chunks were synced would claim data that is gone.
TEST(SimulatedStorage, APowerCutLosesTheWritesSinceTheLastSync) {
  ChunkPool pool;
  SimulatedStorage storage(pool, "1.0.0");
  ASSERT_TRUE(storage.boot().ok());
  const std::string image(2000, 'i');
  ASSERT_TRUE(storage.prepare({"b", image.size(), false, v1::PAYLOAD_TYPE_AB_IMAGE, ""}).ok());
  ASSERT_TRUE(storage.write("b", 0, image.substr(0, 1000)).ok());
  ASSERT_TRUE(storage.sync().ok());
  ASSERT_TRUE(storage.write("b", 1000, image.substr(1000)).ok());
  ASSERT_TRUE(storage.hash("b", image.size()).ok());
  storage.power_cut();
  EXPECT_FALSE(storage.hash("b", image.size()).ok()) << "the unsynced second half survived the cut";
  EXPECT_TRUE(storage.hash("b", 1000).ok()) << "the synced first half was lost";
}

TEST(SimulatedJournal, KeepsTheLastRecordAndManifest) {
  SimulatedJournal journal;
  auto empty = journal.load();
  ASSERT_TRUE(empty.ok());
  EXPECT_FALSE(empty->has_value());
  client::journal::JournalRecord record;
  record.set_accepted_security_counter(3);
  ASSERT_TRUE(journal.store(record).ok());
  ASSERT_TRUE(journal.store_manifest("signed").ok());
  auto loaded = journal.load();
  ASSERT_TRUE(loaded.ok() && loaded->has_value());
  EXPECT_EQ((*loaded)->record.accepted_security_counter(), 3U);
  EXPECT_EQ((*loaded)->signed_manifest, "signed");
}

}  // namespace
}  // namespace fota::sim

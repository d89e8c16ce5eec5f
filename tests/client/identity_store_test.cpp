// SPDX-License-Identifier: Apache-2.0
// IdentityStore (identity_store.hpp) on a real filesystem: the provisioned pair until a renewal,
// then the renewed one; what a power cut can leave behind never becomes the pair in use.
#include "fota/client/identity_store.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <fstream>

#include "fota/common/crypto.hpp"
#include "fota/testing/broker.hpp"

namespace fota::client {
namespace {

namespace fs = std::filesystem;

class IdentityStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    provisioned_ = {dir_.path() / "device.crt", dir_.path() / "device.key"};
    std::ofstream(provisioned_.cert) << "PROVISIONED CERT";
    std::ofstream(provisioned_.key) << "PROVISIONED KEY";
  }
  std::string read(const fs::path& path) { return common::read_file(path).value(); }

  testing::TempDir dir_;
  IdentityFiles provisioned_;
};

TEST_F(IdentityStoreTest, ProvisionedPairUntilARenewalThenTheRenewedOne) {
  IdentityStore store(dir_.path() / "identity", provisioned_);
  EXPECT_EQ(store.current().cert, provisioned_.cert);
  EXPECT_EQ(store.current().key, provisioned_.key);

  ASSERT_TRUE(store.install({"CHAIN 1", "KEY 1", 100}).ok());
  EXPECT_EQ(read(store.current().cert), "CHAIN 1");
  EXPECT_EQ(read(store.current().key), "KEY 1");
  struct stat st {};
  ASSERT_EQ(::stat(store.current().key.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  // A second renewal replaces it; the older generation is gone.
  ASSERT_TRUE(store.install({"CHAIN 2", "KEY 2", 200}).ok());
  EXPECT_EQ(read(store.current().cert), "CHAIN 2");
  EXPECT_EQ(read(store.current().key), "KEY 2");
  EXPECT_FALSE(fs::exists(dir_.path() / "identity" / "gen-1"));
  // A new store over the same directory (the next start) finds it.
  EXPECT_EQ(read(IdentityStore(dir_.path() / "identity", provisioned_).current().key), "KEY 2");
}

TEST_F(IdentityStoreTest, WhatAPowerCutLeavesIsNeverThePairInUse) {
  const fs::path dir = dir_.path() / "identity";
  IdentityStore store(dir, provisioned_);
  ASSERT_TRUE(store.install({"CHAIN 1", "KEY 1", 100}).ok());
  // Cut while writing the next generation (half a pair, a temp file) and before the link was
  // renamed over `current` (a stray current.new pointing at it).
  fs::create_directories(dir / "gen-2");
  std::ofstream(dir / "gen-2" / "device.key.tmp") << "KEY 2 (half";
  ASSERT_EQ(::symlink("gen-2", (dir / "current.new").c_str()), 0);
  EXPECT_EQ(read(store.current().cert), "CHAIN 1");
  EXPECT_EQ(read(store.current().key), "KEY 1");
  // The next renewal writes over the leftovers and switches.
  ASSERT_TRUE(store.install({"CHAIN 3", "KEY 3", 300}).ok());
  EXPECT_EQ(read(store.current().cert), "CHAIN 3");
  EXPECT_EQ(read(store.current().key), "KEY 3");
}

TEST_F(IdentityStoreTest, AFailedInstallKeepsThePairInUse) {
  // The identity directory cannot be made (a file is in the way; works as root too).
  const fs::path dir = dir_.path() / "identity";
  std::ofstream(dir) << "not a directory";
  IdentityStore store(dir, provisioned_);
  auto st = store.install({"CHAIN 1", "KEY 1", 100});
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code, common::Errc::kIo);
  EXPECT_NE(st.error().message.find(dir.string()), std::string::npos) << st.error().message;
  EXPECT_EQ(store.current().key, provisioned_.key);
}

}  // namespace
}  // namespace fota::client

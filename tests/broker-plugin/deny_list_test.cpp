// SPDX-License-Identifier: Apache-2.0
#include "fota/plugin/deny_list.hpp"

#include <gtest/gtest.h>

#include <fstream>

#include "fota/testing/broker.hpp"

namespace fota::plugin {
namespace {

TEST(DenyList, ParsesIdsSerialsCommentsAndBlankLines) {
  auto list = DenyList::parse(
      "# revoked 2026-11-25\n"
      "\n"
      "  device-0042   # stolen\n"
      "serial:4f:2a:09\n"
      "serial: 00ABCDEF\n");
  ASSERT_TRUE(list) << list.error().to_string();
  EXPECT_EQ(list->size(), 3u);
  EXPECT_TRUE(list->denies("device-0042", "1234"));
  EXPECT_FALSE(list->denies("device-0043", "1234"));
  // Serials match whatever the case, separators and leading zeros.
  EXPECT_TRUE(list->denies("other", "4F2A09"));
  EXPECT_TRUE(list->denies("other", "ABCDEF"));
  EXPECT_TRUE(list->denies("other", "0abcdef"));
  EXPECT_FALSE(list->denies("other", "4F2A0"));
  EXPECT_FALSE(list->denies("other", ""));
}

TEST(DenyList, BadLineIsRefusedWithItsNumber) {
  auto list = DenyList::parse("device-1\nnot a device id\n");
  ASSERT_FALSE(list);
  EXPECT_NE(list.error().message.find("line 2"), std::string::npos) << list.error().message;

  auto serial = DenyList::parse("serial:xyz\n");
  ASSERT_FALSE(serial);
  EXPECT_NE(serial.error().message.find("line 1"), std::string::npos) << serial.error().message;
  EXPECT_FALSE(DenyList::parse("serial:\n"));
  EXPECT_FALSE(DenyList::parse("serial::\n"));
}

TEST(DenyList, LoadsAFileAndNamesAMissingOne) {
  testing::TempDir dir;
  const auto path = dir.path() / "deny.txt";
  std::ofstream(path) << "device-7\n";
  auto list = DenyList::load(path);
  ASSERT_TRUE(list) << list.error().to_string();
  EXPECT_TRUE(list->denies("device-7", ""));

  auto missing = DenyList::load(dir.path() / "absent.txt");
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().message.find("absent.txt"), std::string::npos);
}

TEST(DenyListWatcher, ReportsAReplacedFileOnceAndOnlyAfterTheInterval) {
  testing::TempDir dir;
  const auto path = dir.path() / "deny.txt";
  std::ofstream(path) << "device-1\n";
  DenyListWatcher watcher(path, 1000);
  watcher.remember(10'000);
  EXPECT_FALSE(watcher.poll(10'500));  // unchanged
  // Replaced the way the orchestrator writes it: a new file renamed over the old one.
  std::ofstream(dir.path() / "deny.tmp") << "device-1\ndevice-2\n";
  std::filesystem::rename(dir.path() / "deny.tmp", path);
  EXPECT_FALSE(watcher.poll(10'900));  // not yet time to look
  auto changed = watcher.poll(11'000);
  ASSERT_TRUE(changed);
  ASSERT_TRUE(*changed) << changed->error().to_string();
  EXPECT_TRUE((*changed)->denies("device-2", ""));
  EXPECT_FALSE(watcher.poll(12'000));  // reported once
  EXPECT_FALSE(watcher.poll(13'000));
}

TEST(DenyListWatcher, ReportsABrokenOrMissingFileAsAnErrorOnce) {
  testing::TempDir dir;
  const auto path = dir.path() / "deny.txt";
  std::ofstream(path) << "device-1\n";
  DenyListWatcher watcher(path, 1000);
  watcher.remember(0);
  std::ofstream(path) << "not an id!\n";
  auto broken = watcher.poll(1000);
  ASSERT_TRUE(broken);
  ASSERT_FALSE(*broken);
  EXPECT_NE(broken->error().message.find("line 1"), std::string::npos) << broken->error().message;
  EXPECT_FALSE(watcher.poll(2000));
  std::filesystem::remove(path);
  auto missing = watcher.poll(3000);
  ASSERT_TRUE(missing);
  ASSERT_FALSE(*missing);
  EXPECT_NE(missing->error().message.find("disappeared"), std::string::npos) << missing->error().message;
}

TEST(DenyListWatcher, IntervalZeroNeverLooks) {
  testing::TempDir dir;
  const auto path = dir.path() / "deny.txt";
  std::ofstream(path) << "device-1\n";
  DenyListWatcher watcher(path, 0);
  watcher.remember(0);
  std::ofstream(path) << "device-1\ndevice-2\n";
  EXPECT_FALSE(watcher.poll(100'000));
}

}  // namespace
}  // namespace fota::plugin

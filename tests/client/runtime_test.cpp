// SPDX-License-Identifier: Apache-2.0
// DeviceRuntime against the Journal and Installer ports with in-memory fakes: the rule "slot data
// is durable before the journal claims it" holds for every store of a whole download.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "fota/client/runtime.hpp"
#include "sim_device.hpp"

namespace fota::client {
namespace {

using testing::ChunkServer;
using testing::make_artifact;
using testing::RecordingTransport;

using testing::MemoryInstaller;
using testing::MemoryJournal;
using testing::Trace;

TEST(RuntimeTest, SlotDataIsSyncedBeforeEveryJournalStore) {
  auto key = std::move(common::Ed25519PrivateKey::generate()).value();
  common::TrustStore trust;
  trust.add(key.public_key());
  OpenSslEngineCrypto crypto(std::move(trust), testing::command_keys());
  const auto artifact = make_artifact(key);
  ChunkServer server(&artifact);
  Trace trace;
  MemoryJournal journal(trace);
  MemoryInstaller installer(trace, crypto);
  RecordingTransport transport;
  UpdateEngine engine(testing::SimDevice::default_config(), crypto);
  DeviceRuntime runtime(engine, installer, journal, transport, {});

  const std::int64_t now = 1'700'000'000'000;
  ASSERT_TRUE(runtime.execute(engine.on_started({"a", false}, now), now));
  ASSERT_TRUE(runtime.execute(engine.on_connected(now), now));
  ASSERT_TRUE(runtime.execute(
      engine.on_command(testing::signed_command(testing::install_command("c1", artifact, now)), now), now));
  while (!transport.chunk_requests.empty() && !runtime.stopped()) {
    const v1::ChunkRequest request = std::move(transport.chunk_requests.front());
    transport.chunk_requests.pop_front();
    for (auto& chunk : server.answer(request)) runtime.execute(engine.on_chunk(std::move(chunk), now), now);
  }
  EXPECT_TRUE(runtime.reboot_requested()) << engine_state_name(engine.state());

  int writes = 0;
  int stores_after_writes = 0;
  bool unsynced = false;
  for (const auto& step : trace) {
    if (step == "write") {
      ++writes;
      unsynced = true;
    } else if (step == "sync") {
      unsynced = false;
    } else if (step == "store") {
      EXPECT_FALSE(unsynced) << "the journal was stored with slot writes not yet synced";
      if (writes > 0) ++stores_after_writes;
    }
  }
  EXPECT_GT(writes, 0);
  EXPECT_GE(stores_after_writes, writes) << "persist_every_chunks is 1: a store after every chunk";
  ASSERT_TRUE(journal.load().ok());
  ASSERT_TRUE(journal.load()->has_value());
  EXPECT_FALSE((*journal.load())->signed_manifest.empty());
}

// The check runs on its own thread: start() returns while it hangs, the answer waits in the
// mailbox with its ticket, and the owner is notified.
TEST(ThreadedHealthCheckTest, AHangingCheckDoesNotBlockTheCallerAndAnswersLater) {
  std::atomic<bool> release{false};
  std::atomic<int> notified{0};
  ThreadedHealthCheck check(
      [&](const HealthCheckSubject& subject, std::string& detail) {
        while (!release) std::this_thread::sleep_for(std::chrono::milliseconds(2));
        detail = "checked " + subject.version;
        return false;
      },
      [&] { ++notified; });
  const auto started = std::chrono::steady_clock::now();
  check.start(7, {"b", "2.0.0", "art"});
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(1));
  EXPECT_TRUE(check.take().empty());
  release = true;
  std::vector<ThreadedHealthCheck::Answer> answers;
  for (int i = 0; i < 500 && answers.empty(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    answers = check.take();
  }
  ASSERT_EQ(answers.size(), 1U);
  EXPECT_EQ(answers[0].ticket, 7U);
  EXPECT_FALSE(answers[0].healthy);
  EXPECT_EQ(answers[0].detail, "checked 2.0.0");
  EXPECT_EQ(notified, 1);
}

// A check still running when its owner goes finishes without touching the owner.
TEST(ThreadedHealthCheckTest, ACheckMayOutliveItsOwner) {
  auto release = std::make_shared<std::atomic<bool>>(false);
  auto finished = std::make_shared<std::atomic<bool>>(false);
  std::atomic<int> notified{0};
  {
    ThreadedHealthCheck check(
        [release, finished](const HealthCheckSubject&, std::string&) {
          while (!*release) std::this_thread::sleep_for(std::chrono::milliseconds(2));
          *finished = true;
          return true;
        },
        [&] { ++notified; });
    check.start(1, {});
  }
  *release = true;
  for (int i = 0; i < 500 && !*finished; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_TRUE(*finished);
  EXPECT_EQ(notified, 0);
}

}  // namespace
}  // namespace fota::client

namespace fota::client {
namespace {

// Issue 16: store_count (field 2) was removed from the journal and its number reserved. A journal
// an older client wrote, with the field set, still loads: the field is skipped.
TEST(FileJournalTest, AJournalWrittenWithTheRemovedStoreCountStillLoads) {
  char pattern[] = "/tmp/fota-journal-XXXXXX";
  ASSERT_NE(::mkdtemp(pattern), nullptr);
  const std::filesystem::path dir(pattern);
  journal::JournalRecord record;
  record.set_format_version(1);
  record.set_accepted_security_counter(7);
  // Field 2 as varint 5: tag (2 << 3 | 0) = 0x10.
  const std::string bytes = record.SerializeAsString() + std::string("\x10\x05", 2);
  ASSERT_TRUE(write_file_atomically(dir / "journal.pb", bytes).ok());
  FileJournal file_journal(dir);
  auto loaded = file_journal.load();
  ASSERT_TRUE(loaded.ok()) << loaded.error().message;
  ASSERT_TRUE(loaded->has_value());
  EXPECT_EQ((*loaded)->record.accepted_security_counter(), 7u);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace fota::client

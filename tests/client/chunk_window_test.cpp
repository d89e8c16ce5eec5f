// SPDX-License-Identifier: Apache-2.0
// ChunkWindow on its own: which chunks to ask for next and when, over virtual time.
#include <gtest/gtest.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "fota/client/chunk_window.hpp"

namespace fota::client {
namespace {

using Indices = std::vector<std::uint32_t>;

constexpr std::uint32_t kChunkSize = 64;  // two 32-byte hashes per hash-table chunk

// A fake 32-byte hash that says which chunk (or hash chunk) it belongs to.
std::string hash_of(std::uint32_t index) { return std::string(32, static_cast<char>('A' + index)); }

v1::Manifest inline_manifest(std::uint32_t chunks) {
  v1::Manifest m;
  m.set_image_size(std::uint64_t{chunks} * kChunkSize);
  m.set_chunk_size(kChunkSize);
  for (std::uint32_t i = 0; i < chunks; ++i) m.add_chunk_sha256(hash_of(i));
  return m;
}

// Image chunks 0..chunks-1, their hashes in hash chunks chunks, chunks+1, ...
v1::Manifest hash_table_manifest(std::uint32_t chunks) {
  v1::Manifest m;
  m.set_image_size(std::uint64_t{chunks} * kChunkSize);
  m.set_chunk_size(kChunkSize);
  for (std::uint32_t j = 0; j < (chunks + 1) / 2; ++j) m.add_hash_table_sha256(hash_of(100 + j));
  return m;
}

// The hash chunk holding the hashes of image chunks 2j and 2j + 1.
std::string hash_chunk_contents(std::uint32_t j) { return hash_of(2 * j) + hash_of(2 * j + 1); }

std::string empty_bitmap(std::uint32_t chunks) { return std::string((chunks + 7) / 8, '\0'); }

ChunkWindow::Limits limits(std::uint32_t initial, bool adaptive = true) {
  ChunkWindow::Limits l;
  l.initial_window = initial;
  l.min_window = 1;
  l.max_window = 16;
  l.adaptive = adaptive;
  l.chunk_timeout_ms = 5000;
  l.unavailable_backoff_ms = 2000;
  return l;
}

TEST(ChunkWindowTest, AsksForTheFirstWindowOfMissingChunksInOrder) {
  ChunkWindow window(limits(4));
  window.load(inline_manifest(10));
  window.start(0, 0, 0);
  std::string verified = empty_bitmap(10);
  mark_chunk_verified(verified, 1);
  EXPECT_EQ(window.take_requests(verified, 0), (Indices{0, 2, 3, 4}));
  EXPECT_EQ(window.in_flight(), 4U);
  EXPECT_TRUE(window.take_requests(verified, 0).empty()) << "the window is full";
  EXPECT_EQ(window.answered(2, 30), std::optional<std::int64_t>(30));
  EXPECT_EQ(window.take_requests(verified, 30), (Indices{5}));
}

TEST(ChunkWindowTest, TheCommandCapsTheWindow) {
  ChunkWindow window(limits(8));
  window.load(inline_manifest(10));
  window.start(/*max_inflight_chunks=*/3, 0, 0);
  EXPECT_EQ(window.width(), 3U);
  EXPECT_EQ(window.take_requests(empty_bitmap(10), 0), (Indices{0, 1, 2}));
  for (int i = 0; i < 10; ++i) window.on_verified();
  EXPECT_EQ(window.width(), 3U) << "additive increase stops at the cap";
}

// AIMD: +1/window per verified chunk, halved (not below min_window) when requests time out.
struct SizingRow {
  const char* name;
  bool adaptive;
  int verified;
  bool time_out;
  std::uint32_t width;
};

class WindowSizingTest : public ::testing::TestWithParam<SizingRow> {};

TEST_P(WindowSizingTest, FollowsTheRow) {
  const SizingRow& row = GetParam();
  ChunkWindow window(limits(4, row.adaptive));
  window.load(inline_manifest(40));
  window.start(0, 0, 0);
  (void)window.take_requests(empty_bitmap(40), 0);
  for (int i = 0; i < row.verified; ++i) window.on_verified();
  if (row.time_out) {
    EXPECT_EQ(window.expire(5000), 4U);
  }
  EXPECT_EQ(window.width(), row.width);
}

INSTANTIATE_TEST_SUITE_P(Rows, WindowSizingTest,
                         ::testing::Values(SizingRow{"starts_at_initial", true, 0, false, 4},
                                           SizingRow{"five_verified_add_one", true, 5, false, 5},
                                           SizingRow{"timeout_halves", true, 0, true, 2},
                                           SizingRow{"fixed_when_not_adaptive", false, 8, true, 4}),
                         [](const ::testing::TestParamInfo<SizingRow>& row_info) {
                           return std::string(row_info.param.name);
                         });

TEST(ChunkWindowTest, TimedOutRequestsAreAskedForFirstAgain) {
  ChunkWindow window(limits(2, /*adaptive=*/false));
  window.load(inline_manifest(10));
  window.start(0, 0, 0);
  const std::string verified = empty_bitmap(10);
  EXPECT_EQ(window.take_requests(verified, 0), (Indices{0, 1}));
  EXPECT_EQ(window.timeout_deadline_ms(), 5000);
  EXPECT_EQ(window.expire(4999), 0U);
  EXPECT_EQ(window.expire(5000), 2U);
  EXPECT_EQ(window.timeout_deadline_ms(), ChunkWindow::kNever);
  EXPECT_EQ(window.take_requests(verified, 5000), (Indices{0, 1}));
  EXPECT_EQ(window.answered(0, 5010), std::optional<std::int64_t>(10));
  EXPECT_FALSE(window.answered(0, 5020).has_value()) << "answered once";
}

TEST(ChunkWindowTest, AChunkThatFailsItsHashIsAskedForBeforeAnythingElse) {
  ChunkWindow window(limits(2, /*adaptive=*/false));
  window.load(inline_manifest(10));
  window.start(0, 0, 0);
  const std::string verified = empty_bitmap(10);
  EXPECT_EQ(window.take_requests(verified, 0), (Indices{0, 1}));
  ASSERT_TRUE(window.answered(1, 10).has_value());
  EXPECT_EQ(window.on_hash_mismatch(1), 1U);
  EXPECT_EQ(window.take_requests(verified, 10), (Indices{1}));
  ASSERT_TRUE(window.answered(1, 20).has_value());
  EXPECT_EQ(window.on_hash_mismatch(1), 2U) << "failures are counted per chunk";
  window.start(0, 0, 30);
  EXPECT_EQ(window.on_hash_mismatch(1), 3U) << "a restarted download keeps counting";
  window.clear();
  window.load(inline_manifest(10));
  EXPECT_EQ(window.on_hash_mismatch(1), 1U) << "a new artifact starts at zero";
}

TEST(ChunkWindowTest, LinkLossAndUnavailableQueueWhatWasInFlight) {
  ChunkWindow window(limits(3, /*adaptive=*/false));
  window.load(inline_manifest(10));
  window.start(0, 0, 0);
  const std::string verified = empty_bitmap(10);
  EXPECT_EQ(window.take_requests(verified, 0), (Indices{0, 1, 2}));
  window.requeue_in_flight();
  EXPECT_EQ(window.in_flight(), 0U);
  EXPECT_EQ(window.take_requests(verified, 100), (Indices{0, 1, 2}));

  window.pause(200);
  EXPECT_TRUE(window.take_requests(verified, 200).empty());
  EXPECT_EQ(window.send_deadline_ms(200), 2200);
  EXPECT_TRUE(window.take_requests(verified, 2199).empty());
  EXPECT_EQ(window.take_requests(verified, 2200), (Indices{0, 1, 2}));
  EXPECT_EQ(window.send_deadline_ms(2200), ChunkWindow::kNever);
}

TEST(ChunkWindowTest, TheTokenBucketPacesRequests) {
  ChunkWindow window(limits(4, /*adaptive=*/false));
  window.load(inline_manifest(10));
  window.start(0, /*max_bytes_per_second=*/kChunkSize * 2, 0);  // a chunk every 500 ms
  const std::string verified = empty_bitmap(10);
  EXPECT_TRUE(window.take_requests(verified, 0).empty()) << "the bucket starts empty";
  EXPECT_EQ(window.send_deadline_ms(0), 501);
  EXPECT_EQ(window.take_requests(verified, 501), (Indices{0}));
  EXPECT_EQ(window.take_requests(verified, 1001), (Indices{1}));
  ASSERT_TRUE(window.answered(0, 1100).has_value());
  ASSERT_TRUE(window.answered(1, 1100).has_value());
  // A long quiet spell buys at most one window (4 chunks) of burst.
  EXPECT_EQ(window.take_requests(verified, 60'000), (Indices{2, 3, 4, 5}));
  EXPECT_EQ(window.send_deadline_ms(60'000), ChunkWindow::kNever) << "the window is full";
  for (std::uint32_t i = 2; i <= 5; ++i) ASSERT_TRUE(window.answered(i, 60'000).has_value());
  EXPECT_TRUE(window.take_requests(verified, 60'000).empty()) << "the burst used every token";
  EXPECT_EQ(window.send_deadline_ms(60'000), 60'501);
}

TEST(ChunkWindowTest, DuplicatesAndLateAnswers) {
  ChunkWindow window(limits(2, /*adaptive=*/false));
  window.load(inline_manifest(4));
  window.start(0, 0, 0);
  std::string verified = empty_bitmap(4);
  EXPECT_EQ(window.take_requests(verified, 0), (Indices{0, 1}));
  window.drop(0);
  EXPECT_EQ(window.in_flight(), 1U);
  window.retry_later(3);
  mark_chunk_verified(verified, 0);
  EXPECT_EQ(window.take_requests(verified, 10), (Indices{3}));
  EXPECT_EQ(window.take_requests(verified, 20), Indices{}) << "3 and 1 in flight";
  window.clear();
  EXPECT_EQ(window.in_flight(), 0U);
  EXPECT_EQ(window.space().total(), 0U);
}

TEST(ChunkWindowTest, InlineHashesAreTheManifests) {
  ChunkWindow window(limits(2));
  window.load(inline_manifest(4));
  EXPECT_FALSE(window.space().has_hash_table());
  EXPECT_EQ(window.expected_hash(2), hash_of(2));
}

// Hash-table manifests: each hash chunk is asked for before the image chunks it covers, at most
// kHashChunkCache are kept, and only one no request in flight needs is evicted.
TEST(ChunkWindowTest, HashChunksComeFirstAndTheCacheStaysSmall) {
  ChunkWindow window(limits(8, /*adaptive=*/false));
  window.load(hash_table_manifest(6));  // image chunks 0..5, hash chunks 6, 7, 8
  ASSERT_TRUE(window.space().has_hash_table());
  window.start(0, 0, 0);
  const std::string verified = empty_bitmap(6);

  EXPECT_EQ(window.take_requests(verified, 0), (Indices{6}));
  EXPECT_TRUE(window.awaits_hash_chunk(6));
  EXPECT_TRUE(window.expected_hash(0).empty()) << "its hash chunk is not verified yet";
  EXPECT_EQ(window.expected_hash(6), hash_of(100));
  ASSERT_TRUE(window.answered(6, 10).has_value());
  window.store_hash_chunk(6, hash_chunk_contents(0));
  EXPECT_FALSE(window.awaits_hash_chunk(6));
  EXPECT_EQ(window.expected_hash(1), hash_of(1));

  EXPECT_EQ(window.take_requests(verified, 10), (Indices{0, 1, 7}));
  ASSERT_TRUE(window.answered(7, 20).has_value());
  window.store_hash_chunk(7, hash_chunk_contents(1));
  EXPECT_EQ(window.take_requests(verified, 20), (Indices{2, 3}))
      << "hash chunk 8 waits: both cached hash chunks are needed by chunks in flight";

  ASSERT_TRUE(window.answered(0, 30).has_value());
  ASSERT_TRUE(window.answered(1, 30).has_value());
  EXPECT_EQ(window.take_requests(verified, 30), (Indices{8})) << "hash chunk 6 is evicted";
  EXPECT_TRUE(window.expected_hash(0).empty());
  EXPECT_EQ(window.expected_hash(3), hash_of(3));
}

TEST(ChunkWindowTest, ALostHashChunkRequestIsAskedForAgain) {
  ChunkWindow window(limits(4, /*adaptive=*/false));
  window.load(hash_table_manifest(4));  // image chunks 0..3, hash chunks 4, 5
  window.start(0, 0, 0);
  const std::string verified = empty_bitmap(4);
  EXPECT_EQ(window.take_requests(verified, 0), (Indices{4}));
  EXPECT_EQ(window.expire(5000), 1U);
  EXPECT_EQ(window.take_requests(verified, 5000), (Indices{4}));
  window.requeue_in_flight();
  EXPECT_EQ(window.take_requests(verified, 6000), (Indices{4}));
}

TEST(ChunkWindowTest, VerifiedBitmap) {
  std::string bitmap = empty_bitmap(12);
  mark_chunk_verified(bitmap, 0);
  mark_chunk_verified(bitmap, 9);
  EXPECT_EQ(bitmap, std::string("\x01\x02", 2));
  EXPECT_TRUE(chunk_verified(bitmap, 9));
  EXPECT_FALSE(chunk_verified(bitmap, 8));
}

}  // namespace
}  // namespace fota::client

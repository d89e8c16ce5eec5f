// SPDX-License-Identifier: Apache-2.0
#include "fota/common/chunk_responder.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <set>
#include <utility>
#include <vector>

namespace fota::common {
namespace {

const std::string kArtifact = "0123456789abcdef0123456789abcdef";
constexpr std::uint32_t kMax = std::numeric_limits<std::uint32_t>::max();

// Chunk i is `chunk_size` copies of 'a' + i % 26; the last one is half as long.
class MemoryChunkSource final : public ChunkSource {
 public:
  std::uint32_t count = 10;
  std::size_t chunk_size = 1024;
  std::set<std::uint32_t> failing;           // reads of these fail
  std::optional<Error> count_error;          // chunk_count fails (the artifact is there)
  mutable std::vector<std::uint32_t> reads;  // every index read, in order

  Result<std::uint32_t> chunk_count(const std::string& artifact_id) const override {
    if (artifact_id != kArtifact) return Error(Errc::kNotFound, "no such artifact");
    if (count_error) return *count_error;
    return count;
  }
  Status read_chunk(const std::string& artifact_id, std::uint32_t index, std::string& out) const override {
    reads.push_back(index);
    EXPECT_EQ(artifact_id, kArtifact);
    EXPECT_LT(index, count) << "read past the end";
    if (failing.count(index)) return Error(Errc::kIo, "disk on fire");
    out.assign(index + 1 == count ? chunk_size / 2 : chunk_size, static_cast<char>('a' + index % 26));
    return ok_status();
  }
};

using Reply = std::pair<std::uint32_t, v1::ChunkStatus>;
Reply ok(std::uint32_t i) { return {i, v1::CHUNK_STATUS_OK}; }
Reply past_end(std::uint32_t i) { return {i, v1::CHUNK_STATUS_OUT_OF_RANGE}; }
Reply later(std::uint32_t i) { return {i, v1::CHUNK_STATUS_UNAVAILABLE}; }

struct Case {
  const char* name;
  std::vector<std::pair<std::uint32_t, std::uint32_t>> ranges;  // first, count
  std::string bitmap;
  std::uint32_t bitmap_base = 0;
  ChunkBudget budget;
  std::vector<Reply> replies;
  std::uint32_t duplicates = 0;
  bool over_max_chunks = false;
  bool unaddressable = false;
  std::uint32_t chunks = 10;  // the artifact's chunk count
  std::set<std::uint32_t> failing = {};
};

void PrintTo(const Case& c, std::ostream* out) { *out << c.name; }

ChunkBudget chunks_at_most(std::uint32_t n) { return ChunkBudget{n, kUnlimitedChunkBytes}; }
ChunkBudget bytes_at_most(std::uint64_t n) { return ChunkBudget{kDefaultMaxChunksPerRequest, n}; }

const Case kCases[] = {
    {"range", {{2, 3}}, "", 0, {}, {ok(2), ok(3), ok(4)}},
    {"bitmap, LSB first from the base", {}, "\x09", 8, {}, {ok(8), past_end(11)}},
    {"ranges before bitmap", {{5, 1}, {1, 1}}, "\x01", 3, {}, {ok(5), ok(1), ok(3)}},
    {"range running past the end", {{8, 4}}, "", 0, {}, {ok(8), ok(9), past_end(10), past_end(11)}},
    {"empty request", {}, "", 0, {}, {}},
    {"range of zero chunks and an empty bitmap", {{3, 0}}, std::string(4, '\0'), 0, {}, {}},
    {"max_chunks cuts a huge range",
     {{0, 4'000'000'000u}},
     "",
     0,
     chunks_at_most(4),
     {ok(0), ok(1), ok(2), ok(3)},
     0,
     true,
     false,
     1'000'000},
    // The orchestrator's copy checked its cap once per bitmap byte: up to 7 chunks more.
    {"max_chunks inside one bitmap byte",
     {},
     "\xff",
     0,
     chunks_at_most(4),
     {ok(0), ok(1), ok(2), ok(3)},
     0,
     true},
    {"max_chunks over ranges and bitmap together",
     {{0, 2}},
     "\xff",
     100,
     chunks_at_most(3),
     {ok(0), ok(1), ok(100)},
     0,
     true,
     false,
     1000},
    {"exactly max_chunks is not over", {{0, 3}}, "", 0, chunks_at_most(3), {ok(0), ok(1), ok(2)}},
    // The orchestrator's copy wrapped first + i to 0, 1, ... and served chunks never asked for.
    {"range wrapping past 2^32 - 1",
     {{kMax - 1, 4}},
     "",
     0,
     {},
     {past_end(kMax - 1), past_end(kMax)},
     0,
     false,
     true},
    {"range wrapping, then another range",
     {{kMax, 3}, {1, 1}},
     "",
     0,
     {},
     {past_end(kMax), ok(1)},
     0,
     false,
     true},
    // ... and bitmap_base + i the same way.
    {"bitmap wrapping past 2^32 - 1",
     {},
     "\xff",
     kMax - 3,
     {},
     {past_end(kMax - 3), past_end(kMax - 2), past_end(kMax - 1), past_end(kMax)},
     0,
     false,
     true},
    {"bitmap wrapping in a later byte",
     {},
     std::string("\x00\x80\xff", 3),
     kMax - 15,
     {},
     {past_end(kMax)},
     0,
     false,
     true},
    {"duplicates answered once", {{0, 2}, {1, 2}}, "\x01", 0, {}, {ok(0), ok(1), ok(2)}, 2},
    {"duplicates count against max_chunks",
     {{0, 1}, {0, 1}, {0, 1}, {1, 1}},
     "",
     0,
     chunks_at_most(3),
     {ok(0)},
     2,
     true},
    {"failed read", {{0, 3}}, "", 0, {}, {ok(0), later(1), ok(2)}, 0, false, false, 10, {1}},
    {"byte budget: the rest unavailable",
     {{0, 4}},
     "",
     0,
     bytes_at_most(2048),
     {ok(0), ok(1), later(2), later(3)}},
    // Chunk 9 is the short last one (512 bytes): it still fits after chunk 1 did not.
    {"byte budget: a smaller chunk still fits",
     {{0, 2}, {9, 1}},
     "",
     0,
     bytes_at_most(1536),
     {ok(0), later(1), ok(9)}},
    {"past the end is out of range even without bytes", {{10, 1}}, "", 0, bytes_at_most(0), {past_end(10)}},
};

class ChunkResponderTable : public ::testing::TestWithParam<Case> {};

TEST_P(ChunkResponderTable, Answers) {
  const Case& c = GetParam();
  MemoryChunkSource source;
  source.count = c.chunks;
  source.failing = c.failing;
  v1::ChunkRequest request;
  request.set_artifact_id(kArtifact);
  request.set_request_id(77);
  for (auto [first, count] : c.ranges) {
    auto* range = request.add_ranges();
    range->set_first(first);
    range->set_count(count);
  }
  request.set_bitmap(c.bitmap);
  request.set_bitmap_base(c.bitmap_base);

  const ChunkResponse response = respond_to_chunk_request(request, source, c.budget);

  std::vector<Reply> got;
  std::uint64_t bytes = 0;
  for (const auto& reply : response.replies) {
    got.emplace_back(reply.index(), reply.status());
    EXPECT_EQ(reply.artifact_id(), kArtifact);
    EXPECT_EQ(reply.request_id(), 77u);
    if (reply.status() == v1::CHUNK_STATUS_OK) {
      const std::size_t size = reply.index() + 1 == c.chunks ? 512 : 1024;
      EXPECT_EQ(reply.data(), std::string(size, static_cast<char>('a' + reply.index() % 26)))
          << reply.index();
      bytes += reply.data().size();
    } else {
      EXPECT_TRUE(reply.data().empty()) << reply.index();
    }
  }
  EXPECT_EQ(got, c.replies);
  const ChunkResponseSummary& s = response.summary;
  EXPECT_EQ(s.refusal, ChunkRefusal::kNone);
  EXPECT_EQ(s.served_bytes, bytes);
  auto count_status = [&](v1::ChunkStatus status) {
    return static_cast<std::uint32_t>(
        std::count_if(got.begin(), got.end(), [&](const Reply& r) { return r.second == status; }));
  };
  EXPECT_EQ(s.served, count_status(v1::CHUNK_STATUS_OK));
  EXPECT_EQ(s.out_of_range, count_status(v1::CHUNK_STATUS_OUT_OF_RANGE));
  EXPECT_EQ(s.unavailable, count_status(v1::CHUNK_STATUS_UNAVAILABLE));
  EXPECT_EQ(s.duplicates, c.duplicates);
  EXPECT_EQ(s.over_max_chunks, c.over_max_chunks);
  EXPECT_EQ(s.unaddressable, c.unaddressable);
  EXPECT_EQ(s.read_error.has_value(), !c.failing.empty());
  // Work is bounded by the budget, and nothing is read past the end.
  EXPECT_LE(source.reads.size(), c.budget.max_chunks);
}

INSTANTIATE_TEST_SUITE_P(Requests, ChunkResponderTable, ::testing::ValuesIn(kCases),
                         [](const ::testing::TestParamInfo<Case>& param) {
                           std::string name;
                           for (const char* p = param.param.name; *p != '\0'; ++p)
                             name += std::isalnum(static_cast<unsigned char>(*p)) ? *p : '_';
                           return name;
                         });

v1::ChunkRequest request_for(const std::string& artifact) {
  v1::ChunkRequest request;
  request.set_artifact_id(artifact);
  request.set_request_id(9);
  auto* range = request.add_ranges();
  range->set_first(0);
  range->set_count(3);
  return request;
}

TEST(ChunkResponder, UnknownArtifactIsAnsweredOnce) {
  MemoryChunkSource source;
  const auto response = respond_to_chunk_request(request_for("ffffffffffffffffffffffffffffffff"), source, {});
  EXPECT_EQ(response.summary.refusal, ChunkRefusal::kUnknownArtifact);
  ASSERT_EQ(response.replies.size(), 1u);
  EXPECT_EQ(response.replies[0].status(), v1::CHUNK_STATUS_UNKNOWN_ARTIFACT);
  EXPECT_EQ(response.replies[0].artifact_id(), "ffffffffffffffffffffffffffffffff");
  EXPECT_EQ(response.replies[0].request_id(), 9u);
  EXPECT_EQ(response.replies[0].index(), 0u);
  EXPECT_TRUE(source.reads.empty());
}

TEST(ChunkResponder, UnknownArtifactCanBeLeftToTheCaller) {
  MemoryChunkSource source;
  const auto response = respond_to_chunk_request(request_for("ffffffffffffffffffffffffffffffff"), source, {},
                                                 UnknownArtifact::kLeave);
  EXPECT_EQ(response.summary.refusal, ChunkRefusal::kUnknownArtifact);
  EXPECT_TRUE(response.replies.empty());
}

TEST(ChunkResponder, ArtifactThatCannotBeReadNowIsUnavailableWithinTheBudget) {
  MemoryChunkSource source;
  source.count_error = Error(Errc::kUnavailable, "out of file descriptors");
  v1::ChunkRequest request = request_for(kArtifact);
  request.mutable_ranges(0)->set_count(1'000'000);
  const auto response = respond_to_chunk_request(request, source, ChunkBudget{5, kUnlimitedChunkBytes});
  EXPECT_EQ(response.summary.refusal, ChunkRefusal::kNone);
  ASSERT_EQ(response.replies.size(), 5u);
  for (const auto& reply : response.replies) EXPECT_EQ(reply.status(), v1::CHUNK_STATUS_UNAVAILABLE);
  EXPECT_EQ(response.summary.unavailable, 5u);
  ASSERT_TRUE(response.summary.read_error);
  EXPECT_EQ(response.summary.read_error->code, Errc::kUnavailable);
  EXPECT_TRUE(source.reads.empty());
}

TEST(ChunkResponder, StreamsEachReplyToTheSinkInOrder) {
  MemoryChunkSource source;
  std::vector<std::uint32_t> indices;
  const auto summary = respond_to_chunk_request(
      request_for(kArtifact), source, {}, [&](v1::ChunkData&& chunk) { indices.push_back(chunk.index()); });
  EXPECT_EQ(indices, (std::vector<std::uint32_t>{0, 1, 2}));
  EXPECT_EQ(summary.served, 3u);
  EXPECT_EQ(summary.served_bytes, 3u * 1024);
}

}  // namespace
}  // namespace fota::common

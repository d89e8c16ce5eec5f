// SPDX-License-Identifier: Apache-2.0
#include "fota/common/chunk_responder.hpp"

#include <unordered_set>
#include <utility>

namespace fota::common {

namespace {

constexpr std::uint64_t kLastIndex = std::numeric_limits<std::uint32_t>::max();

// One request's walk over the indices it names, in order, within the budget.
class RequestWalk {
 public:
  RequestWalk(const v1::ChunkRequest& request, const ChunkSource& source, const ChunkBudget& budget,
              const ChunkSink& sink, Result<std::uint32_t> count)
      : request_(request),
        source_(source),
        sink_(sink),
        count_(std::move(count)),
        chunks_left_(budget.max_chunks),
        bytes_left_(budget.max_bytes),
        // One range, or a bitmap alone, cannot name an index twice: no set to keep.
        may_repeat_(request.ranges_size() + (request.bitmap().empty() ? 0 : 1) > 1) {
    if (!count_) summary_.read_error = count_.error();
  }

  ChunkResponseSummary run() && {
    for (const auto& range : request_.ranges()) {
      for (std::uint64_t i = 0; i < range.count(); ++i) {
        const std::uint64_t index = std::uint64_t{range.first()} + i;
        if (index > kLastIndex) {
          summary_.unaddressable = true;
          break;
        }
        if (!visit(static_cast<std::uint32_t>(index))) return std::move(summary_);
      }
    }
    const std::string& bitmap = request_.bitmap();
    for (std::size_t byte = 0; byte < bitmap.size(); ++byte) {
      const auto bits = static_cast<unsigned char>(bitmap[byte]);
      if (bits == 0) continue;
      for (unsigned bit = 0; bit < 8; ++bit) {
        if ((bits & (1U << bit)) == 0) continue;
        const std::uint64_t index = std::uint64_t{request_.bitmap_base()} + std::uint64_t{byte} * 8 + bit;
        if (index > kLastIndex) {  // every later bit is further still
          summary_.unaddressable = true;
          return std::move(summary_);
        }
        if (!visit(static_cast<std::uint32_t>(index))) return std::move(summary_);
      }
    }
    return std::move(summary_);
  }

 private:
  // Answers one index; false when max_chunks was already reached (the walk stops).
  bool visit(std::uint32_t index) {
    if (chunks_left_ == 0) {
      summary_.over_max_chunks = true;
      return false;
    }
    --chunks_left_;
    if (may_repeat_ && !seen_.insert(index).second) {
      ++summary_.duplicates;
      return true;
    }
    v1::ChunkData reply;
    reply.set_artifact_id(request_.artifact_id());
    reply.set_index(index);
    reply.set_request_id(request_.request_id());
    reply.set_status(answer(index, *reply.mutable_data()));
    switch (reply.status()) {
      case v1::CHUNK_STATUS_OK:
        ++summary_.served;
        summary_.served_bytes += reply.data().size();
        break;
      case v1::CHUNK_STATUS_OUT_OF_RANGE:
        ++summary_.out_of_range;
        break;
      default:
        ++summary_.unavailable;
        break;
    }
    sink_(std::move(reply));
    return true;
  }

  v1::ChunkStatus answer(std::uint32_t index, std::string& data) {
    if (!count_) return v1::CHUNK_STATUS_UNAVAILABLE;
    // Past the end first: no budget makes such an index exist.
    if (index >= *count_) return v1::CHUNK_STATUS_OUT_OF_RANGE;
    if (bytes_left_ == 0) return v1::CHUNK_STATUS_UNAVAILABLE;
    if (auto read = source_.read_chunk(request_.artifact_id(), index, data); !read) {
      if (!summary_.read_error) summary_.read_error = read.error();
      data.clear();
      return v1::CHUNK_STATUS_UNAVAILABLE;
    }
    if (data.size() > bytes_left_) {
      data.clear();
      return v1::CHUNK_STATUS_UNAVAILABLE;
    }
    bytes_left_ -= data.size();
    return v1::CHUNK_STATUS_OK;
  }

  const v1::ChunkRequest& request_;
  const ChunkSource& source_;
  const ChunkSink& sink_;
  const Result<std::uint32_t> count_;
  std::uint32_t chunks_left_;
  std::uint64_t bytes_left_;
  const bool may_repeat_;
  std::unordered_set<std::uint32_t> seen_;
  ChunkResponseSummary summary_;
};

}  // namespace

ChunkResponseSummary respond_to_chunk_request(const v1::ChunkRequest& request, const ChunkSource& source,
                                              const ChunkBudget& budget, const ChunkSink& sink,
                                              UnknownArtifact unknown) {
  auto count = source.chunk_count(request.artifact_id());
  if (!count && count.error().code == Errc::kNotFound) {
    ChunkResponseSummary summary;
    summary.refusal = ChunkRefusal::kUnknownArtifact;
    if (unknown == UnknownArtifact::kAnswer) {
      v1::ChunkData reply;
      reply.set_artifact_id(request.artifact_id());
      reply.set_request_id(request.request_id());
      reply.set_status(v1::CHUNK_STATUS_UNKNOWN_ARTIFACT);
      sink(std::move(reply));
    }
    return summary;
  }
  return RequestWalk(request, source, budget, sink, std::move(count)).run();
}

ChunkResponse respond_to_chunk_request(const v1::ChunkRequest& request, const ChunkSource& source,
                                       const ChunkBudget& budget, UnknownArtifact unknown) {
  ChunkResponse response;
  response.summary = respond_to_chunk_request(
      request, source, budget, [&](v1::ChunkData&& reply) { response.replies.push_back(std::move(reply)); },
      unknown);
  return response;
}

}  // namespace fota::common

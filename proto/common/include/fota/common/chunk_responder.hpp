// SPDX-License-Identifier: Apache-2.0
// The one answer to a ChunkRequest (docs/PROTOCOL.md, "Chunks"): which ChunkData messages a chunk
// server sends back, and in which order. The broker plugin, the orchestrator, fota-sim and the test
// and bench servers all answer through it; each only adapts its own store as a ChunkSource and
// sends what it is given. Pure: no I/O of its own, no clock, no logging. C++17.
#pragma once

#include <cstdint>
#include <functional>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "fota/common/result.hpp"
#include "fota/v1/fota.pb.h"

namespace fota::common {

// Where the chunks come from: an artifact store, memory, a file. Called only from
// respond_to_chunk_request, on the caller's thread.
class ChunkSource {
 public:
  virtual ~ChunkSource() = default;
  // Chunks in the artifact's index space (image chunks, then hash-table chunks: ChunkSpace::total()).
  // Errors: kNotFound when the source does not have the artifact (answered UNKNOWN_ARTIFACT);
  // any other error when it has it but cannot read it now (every chunk answered UNAVAILABLE).
  virtual Result<std::uint32_t> chunk_count(const std::string& artifact_id) const = 0;
  // Reads chunk `index` (< chunk_count) into `out`, replacing its content. Any error is answered
  // UNAVAILABLE (the device asks again later).
  virtual Status read_chunk(const std::string& artifact_id, std::uint32_t index, std::string& out) const = 0;
};

inline constexpr std::uint32_t kDefaultMaxChunksPerRequest = 256;
inline constexpr std::uint64_t kUnlimitedChunkBytes = std::numeric_limits<std::uint64_t>::max();

// What one request may cost the server.
struct ChunkBudget {
  // Indices looked at per request, ranges and bitmap together, duplicates included: bounds the
  // work and the replies whatever counts the request claims. The rest is ignored; the device asks
  // again. At least 1.
  std::uint32_t max_chunks = kDefaultMaxChunksPerRequest;
  // Chunk bytes that may be sent for this request (the broker plugin's per-device rate limit).
  // A chunk that does not fit is answered UNAVAILABLE without its data; once nothing is left,
  // chunks are not even read.
  std::uint64_t max_bytes = kUnlimitedChunkBytes;
};

// What to do when the source does not have the artifact.
enum class UnknownArtifact {
  kAnswer,  // one ChunkData{UNKNOWN_ARTIFACT} (index 0, the request's id): the device fails its update
  kLeave,   // nothing: the caller passes the request on (the broker plugin forwards it to the orchestrator)
};

enum class ChunkRefusal {
  kNone,
  kUnknownArtifact,  // the source does not have the artifact
};

// What was answered, for the caller's counters and logs.
struct ChunkResponseSummary {
  ChunkRefusal refusal = ChunkRefusal::kNone;
  std::uint32_t served = 0;         // CHUNK_STATUS_OK replies
  std::uint64_t served_bytes = 0;   // their data
  std::uint32_t out_of_range = 0;   // CHUNK_STATUS_OUT_OF_RANGE replies
  std::uint32_t unavailable = 0;    // CHUNK_STATUS_UNAVAILABLE replies (read failed or over max_bytes)
  std::uint32_t duplicates = 0;     // indices asked for again in the same request: not answered twice
  bool over_max_chunks = false;     // indices were left unanswered because of max_chunks
  bool unaddressable = false;       // the request named indices past 2^32 - 1 (ignored)
  std::optional<Error> read_error;  // the first failed read (or chunk_count), for the log
};

// Receives each reply, in order: ranges first (in request order), then bitmap bits (ascending).
using ChunkSink = std::function<void(v1::ChunkData&&)>;

// Answers `request` from `source` within `budget`, one ChunkData per distinct index it looks at
// (each carrying the request's artifact_id and request_id): OK with the data, OUT_OF_RANGE past
// the source's chunk count, UNAVAILABLE when the read failed or the bytes are over budget. Indices
// past 2^32 - 1 (a range or bitmap that wraps) are not answered. Never throws except bad_alloc
// (and what `sink` throws).
ChunkResponseSummary respond_to_chunk_request(const v1::ChunkRequest& request, const ChunkSource& source,
                                              const ChunkBudget& budget, const ChunkSink& sink,
                                              UnknownArtifact unknown = UnknownArtifact::kAnswer);

// The same, collected: for callers that hold the replies anyway (tests, simulators). Servers of
// large chunks should stream with the sink instead of holding max_chunks chunks at once.
struct ChunkResponse {
  ChunkResponseSummary summary;
  std::vector<v1::ChunkData> replies;
};
ChunkResponse respond_to_chunk_request(const v1::ChunkRequest& request, const ChunkSource& source,
                                       const ChunkBudget& budget,
                                       UnknownArtifact unknown = UnknownArtifact::kAnswer);

}  // namespace fota::common

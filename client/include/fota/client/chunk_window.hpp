// SPDX-License-Identifier: Apache-2.0
// The download window of the update engine: which chunks to ask for next and when. C++17.
//
// Sans-IO like the engine that owns it: `now_ms` is an argument, deadlines are queried
// (timeout_deadline_ms / send_deadline_ms), and it neither hashes, logs nor sends. It keeps
//  - the chunk space and the manifest's chunk hashes, with a cache of at most kHashChunkCache
//    verified hash-table chunks (docs/PROTOCOL.md, "Chunk hashes"),
//  - the requests in flight and when each was sent (request timeouts),
//  - a retry queue that is served before new chunks, and hash failures per chunk,
//  - the window size (AIMD between min and max, capped by the command's max_inflight_chunks),
//  - a token bucket for the command's max_bytes_per_second, and a pause after UNAVAILABLE.
// Which chunks are verified is the journal's fact (its verified bitmap): callers pass it in.
// The engine decides what an outcome means for the update (failing it, reporting progress).
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fota/common/codec.hpp"
#include "fota/v1/fota.pb.h"

namespace fota::client {

// The journal's verified bitmap: bit `index % 8` of byte `index / 8` is set once chunk `index`
// is verified and written. `bitmap` must cover `index`.
bool chunk_verified(const std::string& bitmap, std::uint32_t index) noexcept;
void mark_chunk_verified(std::string& bitmap, std::uint32_t index) noexcept;

class ChunkWindow {
 public:
  struct Limits {
    std::uint32_t initial_window = 8;
    std::uint32_t min_window = 1;
    std::uint32_t max_window = 64;
    bool adaptive = true;  // AIMD between min_window and max_window; fixed at initial_window if not
    std::int64_t chunk_timeout_ms = 5000;
    std::int64_t unavailable_backoff_ms = 2000;
  };
  // Verified hash-table chunks kept in memory: the one the download is in and the next.
  static constexpr std::size_t kHashChunkCache = 2;
  static constexpr std::int64_t kNever = std::numeric_limits<std::int64_t>::max();

  explicit ChunkWindow(Limits limits) : limits_(limits) {}

  // ---- The artifact ---------------------------------------------------------------------------
  // Takes the manifest's chunk space and chunk hashes (inline or hash-table); empties the cache.
  void load(const v1::Manifest& manifest);
  const common::ChunkSpace& space() const noexcept { return space_; }
  // The manifest's hash of chunk `index`: for an image chunk from the inline list or a cached
  // hash chunk (empty when that hash chunk is not at hand), for a hash chunk the manifest's.
  std::string_view expected_hash(std::uint32_t index) const;
  // True when hash chunk `index` was requested and is not verified yet (a cache entry waits).
  bool awaits_hash_chunk(std::uint32_t index) const;
  // Hash chunk `index` passed its manifest hash: keep it for the image chunks it covers.
  void store_hash_chunk(std::uint32_t index, std::string hashes);

  // ---- Requests -------------------------------------------------------------------------------
  // A download (new or resumed) begins: nothing in flight or queued, the window at its initial
  // size, an empty token bucket. The artifact (load()) and the hash failures are kept.
  void start(std::uint32_t max_inflight_chunks, std::uint64_t max_bytes_per_second, std::int64_t now_ms);
  // Forgets the artifact and every request. The window size and a pause are kept (they only
  // matter once a download starts again, and start() resets the size).
  void clear();
  // The chunks to ask for now, ascending, each now in flight: missing image chunks whose hash
  // is at hand, or first the hash chunk they need; retries first. Empty while paused, while
  // the window is full or the bucket short of a chunk's worth of tokens, or when nothing is
  // missing. `verified` is the journal's verified bitmap.
  std::vector<std::uint32_t> take_requests(const std::string& verified, std::int64_t now_ms);

  // ---- Answers and their outcome --------------------------------------------------------------
  // An answer to chunk `index`: no longer in flight. Its round trip when it was in flight.
  std::optional<std::int64_t> answered(std::uint32_t index, std::int64_t now_ms);
  // An answer that is not needed (a duplicate): no longer in flight.
  void drop(std::uint32_t index);
  // A chunk passed its hash: the window widens (additive increase) when adaptive.
  void on_verified();
  // Chunk `index` failed its hash: it is asked for again before anything else. Returns how
  // many times it has failed since load().
  std::uint32_t on_hash_mismatch(std::uint32_t index);
  // Chunk `index` is to be asked for again after what is queued.
  void retry_later(std::uint32_t index);
  // Requests sent longer than chunk_timeout_ms ago go back into the retry queue; the window
  // halves (multiplicative decrease) when adaptive and any did. Returns how many timed out.
  std::size_t expire(std::int64_t now_ms);
  // The link came back: requests in flight may be lost, queue them again.
  void requeue_in_flight();
  // The chunk server has no chunks now: queue what is in flight and send nothing for
  // unavailable_backoff_ms.
  void pause(std::int64_t now_ms);

  // ---- Timers ---------------------------------------------------------------------------------
  // When the oldest request in flight times out (call expire()); kNever when none is.
  std::int64_t timeout_deadline_ms() const;
  // When take_requests() may give more than it gives at `now_ms` (the pause ends, the bucket
  // holds a chunk); kNever when only an answer can. Only meaningful while the link is up.
  std::int64_t send_deadline_ms(std::int64_t now_ms) const;

  // Outstanding requests allowed now (the window, truncated) and outstanding now.
  std::uint32_t width() const noexcept { return static_cast<std::uint32_t>(window_); }
  std::size_t in_flight() const noexcept { return inflight_.size(); }

 private:
  struct CachedHashChunk {
    std::uint32_t hash_chunk = 0;
    bool ready = false;  // false: requested, not verified yet
    std::string hashes;
  };

  std::uint32_t effective_max_window() const;
  std::size_t slots() const;
  std::optional<std::uint32_t> next_wanted(const std::string& verified);
  CachedHashChunk* cached_hash_chunk(std::uint32_t hash_chunk);
  const CachedHashChunk* cached_hash_chunk(std::uint32_t hash_chunk) const;
  bool reserve_hash_chunk(std::uint32_t hash_chunk);

  Limits limits_;
  // Where each chunk's hash comes from. Inline manifests: chunk_hashes_ holds 32 bytes per image
  // chunk. Hash-table manifests: hash_chunk_hashes_ holds the manifest's 32 bytes per hash chunk,
  // and verified hash chunks are cached, at most kHashChunkCache of them, so memory does not
  // grow with the image.
  common::ChunkSpace space_;
  std::string chunk_hashes_;
  std::string hash_chunk_hashes_;
  std::vector<CachedHashChunk> hash_cache_;
  std::map<std::uint32_t, std::uint32_t> hash_failures_;

  std::map<std::uint32_t, std::int64_t> inflight_;  // index -> sent at
  std::deque<std::uint32_t> retry_queue_;
  std::uint32_t cursor_ = 0;  // next index never asked for
  std::uint32_t max_inflight_chunks_ = 0;
  std::uint64_t max_bytes_per_second_ = 0;
  double window_ = 0;
  double tokens_ = 0;
  std::int64_t tokens_at_ = 0;
  std::int64_t paused_until_ = 0;
};

}  // namespace fota::client

// SPDX-License-Identifier: Apache-2.0
// The download window: which chunks to ask for next and when (chunk_window.hpp).
#include "fota/client/chunk_window.hpp"

#include <algorithm>
#include <utility>

namespace fota::client {

using common::kSha256Bytes;

bool chunk_verified(const std::string& bitmap, std::uint32_t index) noexcept {
  return (static_cast<unsigned char>(bitmap[index / 8]) >> (index % 8)) & 1U;
}

void mark_chunk_verified(std::string& bitmap, std::uint32_t index) noexcept {
  bitmap[index / 8] = static_cast<char>(static_cast<unsigned char>(bitmap[index / 8]) | (1U << (index % 8)));
}

// ---- The artifact -----------------------------------------------------------------------------
void ChunkWindow::load(const v1::Manifest& manifest) {
  space_ = common::ChunkSpace::of(manifest);
  chunk_hashes_.clear();
  chunk_hashes_.reserve(static_cast<std::size_t>(manifest.chunk_sha256_size()) * kSha256Bytes);
  for (const auto& h : manifest.chunk_sha256()) chunk_hashes_.append(h);
  hash_chunk_hashes_.clear();
  hash_chunk_hashes_.reserve(static_cast<std::size_t>(manifest.hash_table_sha256_size()) * kSha256Bytes);
  for (const auto& h : manifest.hash_table_sha256()) hash_chunk_hashes_.append(h);
  hash_cache_.clear();
}

std::string_view ChunkWindow::expected_hash(std::uint32_t index) const {
  if (space_.is_hash_chunk(index)) {
    const std::size_t hash_chunk = index - space_.image_chunks();
    return std::string_view(hash_chunk_hashes_).substr(hash_chunk * kSha256Bytes, kSha256Bytes);
  }
  if (!space_.has_hash_table()) {
    return std::string_view(chunk_hashes_).substr(std::size_t{index} * kSha256Bytes, kSha256Bytes);
  }
  const CachedHashChunk* entry = cached_hash_chunk(space_.hash_chunk_index(index));
  if (entry == nullptr || !entry->ready) return {};
  return std::string_view(entry->hashes).substr(space_.hash_offset(index), kSha256Bytes);
}

bool ChunkWindow::awaits_hash_chunk(std::uint32_t index) const {
  const CachedHashChunk* entry = cached_hash_chunk(index - space_.image_chunks());
  return entry != nullptr && !entry->ready;
}

void ChunkWindow::store_hash_chunk(std::uint32_t index, std::string hashes) {
  if (CachedHashChunk* entry = cached_hash_chunk(index - space_.image_chunks())) {
    entry->hashes = std::move(hashes);
    entry->ready = true;
  }
}

ChunkWindow::CachedHashChunk* ChunkWindow::cached_hash_chunk(std::uint32_t hash_chunk) {
  for (auto& entry : hash_cache_) {
    if (entry.hash_chunk == hash_chunk) return &entry;
  }
  return nullptr;
}

const ChunkWindow::CachedHashChunk* ChunkWindow::cached_hash_chunk(std::uint32_t hash_chunk) const {
  for (const auto& entry : hash_cache_) {
    if (entry.hash_chunk == hash_chunk) return &entry;
  }
  return nullptr;
}

// Reserves a cache entry for `hash_chunk`, evicting a verified one that no chunk in flight
// needs. False when every entry is still needed: the caller waits for answers.
bool ChunkWindow::reserve_hash_chunk(std::uint32_t hash_chunk) {
  if (hash_cache_.size() < kHashChunkCache) {
    hash_cache_.push_back(CachedHashChunk{hash_chunk, false, {}});
    return true;
  }
  for (auto& entry : hash_cache_) {
    if (!entry.ready) continue;
    const bool needed = std::any_of(inflight_.begin(), inflight_.end(), [&](const auto& flight) {
      return flight.first < space_.image_chunks() &&
             space_.hash_chunk_index(flight.first) == entry.hash_chunk;
    });
    if (!needed) {
      entry = CachedHashChunk{hash_chunk, false, {}};
      return true;
    }
  }
  return false;
}

// ---- Requests ---------------------------------------------------------------------------------
void ChunkWindow::start(std::uint32_t max_inflight_chunks, std::uint64_t max_bytes_per_second,
                        std::int64_t now_ms) {
  max_inflight_chunks_ = max_inflight_chunks;
  max_bytes_per_second_ = max_bytes_per_second;
  cursor_ = 0;
  inflight_.clear();
  retry_queue_.clear();
  window_ = static_cast<double>(std::min(effective_max_window(), limits_.initial_window));
  tokens_ = 0;
  tokens_at_ = now_ms;
}

void ChunkWindow::clear() {
  space_ = {};
  chunk_hashes_.clear();
  chunk_hashes_.shrink_to_fit();
  hash_chunk_hashes_.clear();
  hash_chunk_hashes_.shrink_to_fit();
  hash_cache_.clear();
  inflight_.clear();
  retry_queue_.clear();
  hash_failures_.clear();
  cursor_ = 0;
}

std::uint32_t ChunkWindow::effective_max_window() const {
  std::uint32_t max = std::max<std::uint32_t>(limits_.max_window, 1);
  if (max_inflight_chunks_ > 0) max = std::min(max, max_inflight_chunks_);
  return max;
}

// Requests the window allows outstanding at once (at least one, however small it became).
std::size_t ChunkWindow::slots() const { return static_cast<std::size_t>(std::max(window_, 1.0)); }

// The next index to request: a missing image chunk whose hash is at hand, or first the hash
// chunk it needs; nothing when everything is requested or a hash chunk must arrive first.
std::optional<std::uint32_t> ChunkWindow::next_wanted(const std::string& verified) {
  const std::uint32_t image_chunks = space_.image_chunks();
  for (;;) {
    const bool from_retry = !retry_queue_.empty();
    if (!from_retry && cursor_ >= image_chunks) return std::nullopt;
    const std::uint32_t i = from_retry ? retry_queue_.front() : cursor_;
    auto take = [&] {
      if (from_retry) {
        retry_queue_.pop_front();
      } else {
        ++cursor_;
      }
    };
    if (space_.is_hash_chunk(i)) {
      take();
      // A hash chunk whose request was lost: ask again while it is still awaited.
      if (awaits_hash_chunk(i) && inflight_.count(i) == 0) return i;
      continue;
    }
    if (chunk_verified(verified, i) || inflight_.count(i) != 0) {
      take();
      continue;
    }
    if (!space_.has_hash_table()) {
      take();
      return i;
    }
    const std::uint32_t hash_chunk = space_.hash_chunk_index(i);
    const std::uint32_t hash_index = image_chunks + hash_chunk;
    if (const CachedHashChunk* entry = cached_hash_chunk(hash_chunk)) {
      if (entry->ready) {
        take();
        return i;
      }
      if (inflight_.count(hash_index) == 0) return hash_index;
      return std::nullopt;  // its hash chunk is on the way
    }
    if (!reserve_hash_chunk(hash_chunk)) return std::nullopt;
    return hash_index;
  }
}

std::vector<std::uint32_t> ChunkWindow::take_requests(const std::string& verified, std::int64_t now_ms) {
  std::vector<std::uint32_t> wanted;
  if (now_ms < paused_until_) return wanted;
  const double chunk_size = static_cast<double>(space_.chunk_size());
  const std::uint64_t rate = max_bytes_per_second_;
  if (rate > 0) {
    // Token bucket: at most one window of burst.
    tokens_ =
        std::min(tokens_ + static_cast<double>(rate) * static_cast<double>(now_ms - tokens_at_) / 1000.0,
                 chunk_size * std::max(window_, 1.0));
    tokens_at_ = now_ms;
  }
  while (inflight_.size() < slots()) {
    if (rate > 0 && tokens_ < chunk_size) break;
    auto next = next_wanted(verified);
    if (!next) break;
    wanted.push_back(*next);
    inflight_[*next] = now_ms;  // before the next pick, which looks at what is in flight
    if (rate > 0) tokens_ -= chunk_size;
  }
  std::sort(wanted.begin(), wanted.end());
  return wanted;
}

// ---- Answers and their outcome ----------------------------------------------------------------
std::optional<std::int64_t> ChunkWindow::answered(std::uint32_t index, std::int64_t now_ms) {
  const auto flight = inflight_.find(index);
  if (flight == inflight_.end()) return std::nullopt;
  const std::int64_t rtt = std::max<std::int64_t>(now_ms - flight->second, 0);
  inflight_.erase(flight);
  return rtt;
}

void ChunkWindow::drop(std::uint32_t index) { inflight_.erase(index); }

void ChunkWindow::on_verified() {
  if (limits_.adaptive) {
    window_ = std::min(static_cast<double>(effective_max_window()), window_ + 1.0 / std::max(window_, 1.0));
  }
}

std::uint32_t ChunkWindow::on_hash_mismatch(std::uint32_t index) {
  retry_queue_.push_front(index);
  return ++hash_failures_[index];
}

void ChunkWindow::retry_later(std::uint32_t index) { retry_queue_.push_back(index); }

std::size_t ChunkWindow::expire(std::int64_t now_ms) {
  std::size_t timed_out = 0;
  for (auto it = inflight_.begin(); it != inflight_.end();) {
    if (it->second + limits_.chunk_timeout_ms <= now_ms) {
      retry_queue_.push_back(it->first);
      it = inflight_.erase(it);
      ++timed_out;
    } else {
      ++it;
    }
  }
  if (timed_out > 0 && limits_.adaptive) {
    window_ = std::max(static_cast<double>(std::max<std::uint32_t>(limits_.min_window, 1)), window_ / 2);
  }
  return timed_out;
}

void ChunkWindow::requeue_in_flight() {
  for (const auto& [index, sent_at] : inflight_) retry_queue_.push_back(index);
  inflight_.clear();
}

void ChunkWindow::pause(std::int64_t now_ms) {
  requeue_in_flight();
  paused_until_ = now_ms + limits_.unavailable_backoff_ms;
}

// ---- Timers -----------------------------------------------------------------------------------
std::int64_t ChunkWindow::timeout_deadline_ms() const {
  std::int64_t deadline = kNever;
  for (const auto& [index, sent_at] : inflight_)
    deadline = std::min(deadline, sent_at + limits_.chunk_timeout_ms);
  return deadline;
}

std::int64_t ChunkWindow::send_deadline_ms(std::int64_t now_ms) const {
  std::int64_t deadline = kNever;
  if (now_ms < paused_until_) deadline = paused_until_;
  const std::uint64_t rate = max_bytes_per_second_;
  const double chunk_size = static_cast<double>(space_.chunk_size());
  if (rate > 0 && inflight_.size() < slots() && tokens_ < chunk_size) {
    const double missing = chunk_size - tokens_;
    deadline = std::min(
        deadline, tokens_at_ + static_cast<std::int64_t>(missing * 1000.0 / static_cast<double>(rate)) + 1);
  }
  return deadline;
}

}  // namespace fota::client

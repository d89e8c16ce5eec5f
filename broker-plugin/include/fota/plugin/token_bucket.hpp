// SPDX-License-Identifier: Apache-2.0
// A token bucket over virtual time: the rate limiter of the broker policy.
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>

namespace fota::plugin {

struct RateLimit {
  double per_second = 0;  // refill rate; 0 = unlimited
  double burst = 0;       // capacity, the most that may be taken at once after a quiet period

  bool unlimited() const noexcept { return per_second <= 0; }
};

class TokenBucket {
 public:
  TokenBucket() = default;
  TokenBucket(RateLimit limit, std::int64_t now_ms) : limit_(limit), tokens_(limit.burst), last_ms_(now_ms) {}

  // Takes `amount` tokens when that many are available. A request larger than the burst can
  // never succeed, which is intended: the burst is also the largest single message allowed.
  bool try_take(double amount, std::int64_t now_ms) noexcept {
    if (limit_.unlimited()) return true;
    refill(now_ms);
    if (tokens_ < amount) return false;
    tokens_ -= amount;
    return true;
  }

  // Whole tokens in the bucket now; UINT64_MAX when unlimited.
  std::uint64_t available(std::int64_t now_ms) noexcept {
    if (limit_.unlimited()) return std::numeric_limits<std::uint64_t>::max();
    refill(now_ms);
    // Below 2^63: converting is defined and never reaches the unlimited value.
    return tokens_ < 1 ? 0 : static_cast<std::uint64_t>(std::min(tokens_, 9.2e18));
  }

  // True when a limited bucket holds less than one token.
  bool exhausted(std::int64_t now_ms) noexcept {
    if (limit_.unlimited()) return false;
    refill(now_ms);
    return tokens_ < 1;
  }

 private:
  void refill(std::int64_t now_ms) noexcept {
    // A wall clock may step backwards; such a step just adds nothing.
    if (now_ms > last_ms_) {
      tokens_ = std::min(limit_.burst,
                         tokens_ + limit_.per_second * static_cast<double>(now_ms - last_ms_) / 1000.0);
      last_ms_ = now_ms;
    }
  }

  RateLimit limit_;
  double tokens_ = 0;
  std::int64_t last_ms_ = 0;
};

}  // namespace fota::plugin

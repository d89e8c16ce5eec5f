// SPDX-License-Identifier: Apache-2.0
// A manual clock for tests of sans-IO cores: time only moves when the test says so.
#pragma once

#include <chrono>
#include <cstdint>

namespace fota::testing {

class ManualClock {
 public:
  explicit ManualClock(std::int64_t start_ms = 1'700'000'000'000) : now_ms_(start_ms) {}
  std::int64_t now_ms() const noexcept { return now_ms_; }
  void advance(std::chrono::milliseconds d) noexcept { now_ms_ += d.count(); }
  void set(std::int64_t ms) noexcept { now_ms_ = ms; }

 private:
  std::int64_t now_ms_;
};

}  // namespace fota::testing

// SPDX-License-Identifier: Apache-2.0
// Seeded, platform-independent randomness for the simulator. std::*_distribution differ between
// standard libraries, so a scenario replayed elsewhere would diverge; these do not.
#pragma once

#include <cmath>
#include <cstdint>
#include <string_view>

namespace fota::sim {

// splitmix64: used to expand seeds; also a fine stand-alone mixer.
constexpr std::uint64_t mix64(std::uint64_t x) noexcept {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// FNV-1a, so streams can be named ("link", "faults") instead of numbered.
constexpr std::uint64_t hash_name(std::string_view name) noexcept {
  std::uint64_t h = 0xCBF29CE484222325ull;
  for (char c : name) {
    h ^= static_cast<unsigned char>(c);
    h *= 0x100000001B3ull;
  }
  return h;
}

// Seed of an independent stream: (scenario seed, purpose, device index). Adding devices or
// purposes never changes the numbers drawn by existing ones.
constexpr std::uint64_t derive_seed(std::uint64_t seed, std::string_view purpose,
                                    std::uint64_t index = 0) noexcept {
  return mix64(mix64(seed ^ hash_name(purpose)) + index);
}

// xoshiro256**: fast, small state, good statistical quality.
class Rng {
 public:
  explicit Rng(std::uint64_t seed) noexcept {
    std::uint64_t x = seed;
    for (auto& word : state_) {
      x = mix64(x);
      word = x;
    }
  }

  std::uint64_t next() noexcept {
    const std::uint64_t result = rotl(state_[1] * 5, 7) * 9;
    const std::uint64_t t = state_[1] << 17;
    state_[2] ^= state_[0];
    state_[3] ^= state_[1];
    state_[1] ^= state_[2];
    state_[0] ^= state_[3];
    state_[2] ^= t;
    state_[3] = rotl(state_[3], 45);
    return result;
  }

  // [0, 1)
  double uniform() noexcept { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
  double uniform(double lo, double hi) noexcept { return lo + (hi - lo) * uniform(); }
  // [0, n) for n > 0; 0 for n == 0.
  std::uint64_t below(std::uint64_t n) noexcept { return n == 0 ? 0 : next() % n; }
  bool chance(double probability) noexcept { return uniform() < probability; }
  // Exponential with the given mean (inter-arrival times of a Poisson process).
  double exponential(double mean) noexcept { return -mean * std::log1p(-uniform()); }
  // Normal via Box-Muller (one value per call; simplicity over speed).
  double normal(double mean, double stddev) noexcept {
    const double u1 = 1.0 - uniform();  // (0, 1]
    const double u2 = uniform();
    return mean + stddev * std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  }

 private:
  static constexpr std::uint64_t rotl(std::uint64_t x, int k) noexcept { return (x << k) | (x >> (64 - k)); }
  std::uint64_t state_[4] = {};
};

}  // namespace fota::sim

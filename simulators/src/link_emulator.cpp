// SPDX-License-Identifier: Apache-2.0
#include "fota/sim/link_emulator.hpp"

#include <algorithm>
#include <cmath>
#include <string>

namespace fota::sim {

std::string_view link_state_name(LinkState state) noexcept {
  switch (state) {
    case LinkState::kUp:
      return "up";
    case LinkState::kStalled:
      return "stalled";
    case LinkState::kDown:
      return "down";
  }
  return "unknown";
}

std::string_view link_fault_cause_name(LinkFaultCause cause) noexcept {
  switch (cause) {
    case LinkFaultCause::kRandomReset:
      return "random-reset";
    case LinkFaultCause::kRandomStall:
      return "random-stall";
    case LinkFaultCause::kOutage:
      return "outage";
    case LinkFaultCause::kPartition:
      return "partition";
  }
  return "unknown";
}

bool outage_hits_device(const OutageFault& outage, std::size_t outage_index, std::uint64_t seed,
                        std::uint32_t device_index) noexcept {
  if (outage.fraction >= 1.0) return true;
  Rng rng(derive_seed(seed, "outage-" + std::to_string(outage_index), device_index));
  return rng.uniform() < outage.fraction;
}

LinkSchedule LinkSchedule::build(const LinkProfile& profile, const std::vector<OutageFault>& outages,
                                 std::uint64_t seed, std::uint32_t device_index, std::int64_t duration_ms) {
  LinkSchedule schedule;
  Rng rng(derive_seed(seed, "link-drops", device_index));
  const DropSpec& drops = profile.drops;
  const std::int64_t window_start = std::max<std::int64_t>(0, drops.window_start_ms);
  const std::int64_t window_end =
      drops.window_end_ms > 0 ? std::min(drops.window_end_ms, duration_ms) : duration_ms;

  std::vector<std::int64_t> drop_times;
  if (window_end > window_start) {
    if (drops.count > 0) {
      for (std::uint32_t i = 0; i < drops.count; ++i) {
        drop_times.push_back(window_start +
                             static_cast<std::int64_t>(rng.uniform() * double(window_end - window_start)));
      }
    } else if (drops.per_minute > 0) {
      const double mean_gap_ms = 60'000.0 / drops.per_minute;
      double t = double(window_start) + rng.exponential(mean_gap_ms);
      while (t < double(window_end)) {
        drop_times.push_back(static_cast<std::int64_t>(t));
        t += rng.exponential(mean_gap_ms);
      }
    }
  }
  std::sort(drop_times.begin(), drop_times.end());
  for (std::int64_t at : drop_times) {
    const bool stall = rng.chance(drops.stall_fraction);
    LinkFault fault;
    fault.start_ms = at;
    fault.state = stall ? LinkState::kStalled : LinkState::kDown;
    fault.cause = stall ? LinkFaultCause::kRandomStall : LinkFaultCause::kRandomReset;
    fault.end_ms = at + std::max<std::int64_t>(1, stall ? drops.stall_ms : drops.down_ms);
    schedule.faults_.push_back(fault);
  }
  for (std::size_t i = 0; i < outages.size(); ++i) {
    const OutageFault& outage = outages[i];
    if (!outage_hits_device(outage, i, seed, device_index)) continue;
    schedule.faults_.push_back(
        {outage.at_ms, outage.at_ms + outage.duration_ms, LinkState::kDown,
         outage.fraction >= 1.0 ? LinkFaultCause::kOutage : LinkFaultCause::kPartition});
  }
  std::stable_sort(schedule.faults_.begin(), schedule.faults_.end(),
                   [](const LinkFault& a, const LinkFault& b) { return a.start_ms < b.start_ms; });
  return schedule;
}

LinkState LinkSchedule::state_at(std::int64_t now_ms) const noexcept {
  LinkState worst = LinkState::kUp;
  for (const auto& fault : faults_) {
    if (fault.start_ms > now_ms) break;
    if (now_ms < fault.end_ms) {
      if (fault.state == LinkState::kDown) return LinkState::kDown;
      worst = LinkState::kStalled;
    }
  }
  return worst;
}

std::optional<std::int64_t> LinkSchedule::next_change_after(std::int64_t now_ms) const noexcept {
  std::optional<std::int64_t> next;
  for (const auto& fault : faults_) {
    for (std::int64_t t : {fault.start_ms, fault.end_ms}) {
      if (t > now_ms && (!next || t < *next)) next = t;
    }
  }
  return next;
}

std::uint32_t LinkSchedule::resets_between(std::int64_t from_ms, std::int64_t to_ms) const noexcept {
  std::uint32_t n = 0;
  for (const auto& fault : faults_) {
    if (fault.state == LinkState::kDown && fault.start_ms >= from_ms && fault.start_ms < to_ms) ++n;
  }
  return n;
}

std::int64_t LinkSchedule::stalled_between(std::int64_t from_ms, std::int64_t to_ms) const noexcept {
  // Union of stall intervals intersected with [from, to): overlapping stalls count once.
  std::int64_t total = 0;
  std::int64_t covered_until = from_ms;
  for (const auto& fault : faults_) {
    if (fault.state != LinkState::kStalled) continue;
    const std::int64_t start = std::max(fault.start_ms, covered_until);
    const std::int64_t end = std::min(fault.end_ms, to_ms);
    if (end > start) {
      total += end - start;
      covered_until = end;
    }
  }
  return total;
}

std::int64_t LinkSchedule::arrival_with_stalls(std::int64_t sent_ms, std::int64_t arrival_ms) const noexcept {
  std::int64_t covered_until = sent_ms;  // overlapping stalls freeze the link only once
  for (const auto& fault : faults_) {
    if (fault.state != LinkState::kStalled) continue;
    if (fault.start_ms >= arrival_ms) break;  // sorted by start; arrival only grows
    const std::int64_t frozen_from = std::max(fault.start_ms, covered_until);
    if (fault.end_ms > frozen_from) {
      arrival_ms += fault.end_ms - frozen_from;
      covered_until = fault.end_ms;
    }
  }
  return arrival_ms;
}

std::uint32_t LinkSchedule::random_drop_count() const noexcept {
  return static_cast<std::uint32_t>(std::count_if(faults_.begin(), faults_.end(), [](const LinkFault& f) {
    return f.cause == LinkFaultCause::kRandomReset || f.cause == LinkFaultCause::kRandomStall;
  }));
}

LinkPipe::LinkPipe(std::int64_t latency_ms, std::int64_t jitter_ms, std::uint64_t bandwidth_bytes_per_second,
                   std::uint64_t seed) noexcept
    : latency_ms_(latency_ms), jitter_ms_(jitter_ms), bandwidth_(bandwidth_bytes_per_second), rng_(seed) {}

std::int64_t LinkPipe::schedule(std::int64_t now_ms, std::uint64_t bytes) noexcept {
  bytes_sent_ += bytes;
  double on_wire_done = double(now_ms);
  if (bandwidth_ > 0) {
    on_wire_done = std::max(double(now_ms), wire_free_at_ms_) + double(bytes) * 1000.0 / double(bandwidth_);
    wire_free_at_ms_ = on_wire_done;
  }
  std::int64_t delay = latency_ms_;
  if (jitter_ms_ > 0)
    delay += static_cast<std::int64_t>(std::llround(rng_.uniform(-double(jitter_ms_), double(jitter_ms_))));
  const std::int64_t arrival =
      std::max(last_arrival_ms_, static_cast<std::int64_t>(std::ceil(on_wire_done)) + delay);
  last_arrival_ms_ = arrival;
  return arrival;
}

void LinkPipe::reset(std::int64_t now_ms) noexcept {
  wire_free_at_ms_ = double(now_ms);
  last_arrival_ms_ = now_ms;
}

LinkEmulator::LinkEmulator(const LinkProfile& profile, const std::vector<OutageFault>& outages,
                           std::uint64_t seed, std::uint32_t device_index, std::int64_t duration_ms)
    : schedule_(LinkSchedule::build(profile, outages, seed, device_index, duration_ms)),
      up_(profile.latency_ms, profile.jitter_ms, profile.bandwidth_bytes_per_second,
          derive_seed(seed, "link-up", device_index)),
      down_(profile.latency_ms, profile.jitter_ms, profile.bandwidth_bytes_per_second,
            derive_seed(seed, "link-down", device_index)) {}

std::optional<std::int64_t> LinkEmulator::send(LinkPipe& pipe, std::int64_t& last_arrival_ms,
                                               std::int64_t now_ms, std::uint64_t bytes) noexcept {
  if (armed_ && schedule_.state_at(now_ms) == LinkState::kDown) return std::nullopt;
  const std::int64_t arrival = pipe.schedule(now_ms, bytes);
  last_arrival_ms =
      std::max(last_arrival_ms, armed_ ? schedule_.arrival_with_stalls(now_ms, arrival) : arrival);
  return last_arrival_ms;
}

std::optional<std::int64_t> LinkEmulator::uplink(std::int64_t now_ms, std::uint64_t bytes) noexcept {
  return send(up_, last_up_ms_, now_ms, bytes);
}

std::optional<std::int64_t> LinkEmulator::downlink(std::int64_t now_ms, std::uint64_t bytes) noexcept {
  return send(down_, last_down_ms_, now_ms, bytes);
}

void LinkEmulator::on_reset(std::int64_t now_ms) noexcept {
  up_.reset(now_ms);
  down_.reset(now_ms);
  last_up_ms_ = now_ms;
  last_down_ms_ = now_ms;
}

}  // namespace fota::sim

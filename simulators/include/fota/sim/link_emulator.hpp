// SPDX-License-Identifier: Apache-2.0
// The link emulator: what a device's connection does over time. Pure logic, seeded, no I/O; the
// transport asks it when a message may arrive and whether the link is up, and obeys.
//
// Two parts:
//  - LinkSchedule: the precomputed timeline of link faults of one device (random resets and silent
//    stalls from its profile, scheduled outages and partitions of the fleet).
//  - LinkPipe: latency, jitter and a bandwidth cap for one direction; keeps TCP's in-order delivery.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

#include "fota/sim/random.hpp"
#include "fota/sim/scenario.hpp"

namespace fota::sim {

enum class LinkState {
  kUp,
  kStalled,  // the socket stays open but no byte moves in either direction
  kDown,     // the connection was reset; connecting fails until the interval ends
};
std::string_view link_state_name(LinkState state) noexcept;

enum class LinkFaultCause { kRandomReset, kRandomStall, kOutage, kPartition };
std::string_view link_fault_cause_name(LinkFaultCause cause) noexcept;

struct LinkFault {
  std::int64_t start_ms = 0;
  std::int64_t end_ms = 0;  // exclusive
  LinkState state = LinkState::kDown;
  LinkFaultCause cause = LinkFaultCause::kRandomReset;
};

class LinkSchedule {
 public:
  LinkSchedule() = default;
  // Builds the fault timeline of device `device_index` for [0, duration_ms). The same inputs always
  // give the same timeline; other devices' draws do not influence this one.
  static LinkSchedule build(const LinkProfile& profile, const std::vector<OutageFault>& outages,
                            std::uint64_t seed, std::uint32_t device_index, std::int64_t duration_ms);

  // Sorted by start; overlapping faults are kept as they are (state_at picks the worst).
  const std::vector<LinkFault>& faults() const noexcept { return faults_; }
  // kDown beats kStalled beats kUp when faults overlap.
  LinkState state_at(std::int64_t now_ms) const noexcept;
  // The first start or end of a fault strictly after now_ms (when state_at may change next).
  std::optional<std::int64_t> next_change_after(std::int64_t now_ms) const noexcept;
  // How many resets start in [from_ms, to_ms): each one closes the connection once.
  std::uint32_t resets_between(std::int64_t from_ms, std::int64_t to_ms) const noexcept;
  // Total stalled time overlapping [from_ms, to_ms): how long a message in flight then is held up.
  std::int64_t stalled_between(std::int64_t from_ms, std::int64_t to_ms) const noexcept;
  std::uint32_t random_drop_count() const noexcept;
  // Stalls freeze the link: a message sent at sent_ms that would arrive at arrival_ms without
  // stalls arrives later by every stall it meets on the way (the frozen time is not flight time).
  std::int64_t arrival_with_stalls(std::int64_t sent_ms, std::int64_t arrival_ms) const noexcept;

 private:
  std::vector<LinkFault> faults_;
};

// True when device `device_index` is among the `fraction` of the fleet cut by outage number
// `outage_index` (fraction 1 cuts everyone). Deterministic per seed.
bool outage_hits_device(const OutageFault& outage, std::size_t outage_index, std::uint64_t seed,
                        std::uint32_t device_index) noexcept;

// One direction of a link: when does a message sent now arrive?
class LinkPipe {
 public:
  LinkPipe(std::int64_t latency_ms, std::int64_t jitter_ms, std::uint64_t bandwidth_bytes_per_second,
           std::uint64_t seed) noexcept;

  // Arrival time of a message of `bytes` handed to the link at now_ms. Never earlier than the
  // previous arrival (TCP delivers in order).
  std::int64_t schedule(std::int64_t now_ms, std::uint64_t bytes) noexcept;
  // A connection reset empties the pipe: what was in flight is lost with the socket.
  void reset(std::int64_t now_ms) noexcept;

  std::uint64_t bytes_sent() const noexcept { return bytes_sent_; }

 private:
  std::int64_t latency_ms_;
  std::int64_t jitter_ms_;
  std::uint64_t bandwidth_;
  Rng rng_;
  // Sub-millisecond bookkeeping so a bandwidth cap holds for messages smaller than 1 ms of wire.
  double wire_free_at_ms_ = 0.0;
  std::int64_t last_arrival_ms_ = 0;
  std::uint64_t bytes_sent_ = 0;
};

// A device's complete link: fault timeline plus a pipe per direction.
class LinkEmulator {
 public:
  LinkEmulator(const LinkProfile& profile, const std::vector<OutageFault>& outages, std::uint64_t seed,
               std::uint32_t device_index, std::int64_t duration_ms);

  LinkState state_at(std::int64_t now_ms) const noexcept { return schedule_.state_at(now_ms); }
  const LinkSchedule& schedule() const noexcept { return schedule_; }

  // Arrival time of a message the device sends (uplink) or receives (downlink) at now_ms, or
  // nullopt when the link is down at now_ms (the message dies with the connection). Stalls that
  // overlap the flight hold the message back by their length.
  std::optional<std::int64_t> uplink(std::int64_t now_ms, std::uint64_t bytes) noexcept;
  std::optional<std::int64_t> downlink(std::int64_t now_ms, std::uint64_t bytes) noexcept;
  // Called by the transport when it closes the connection for a reset.
  void on_reset(std::int64_t now_ms) noexcept;
  // Faults (downs, stalls) apply only while armed (the default). A virtual device disarms its link
  // until the rollout starts: the schedule counts from the rollout's start, and a drop window that
  // fell into the fleet's set-up would otherwise swallow messages of a connection that stays up.
  void set_faults_armed(bool armed) noexcept { armed_ = armed; }

 private:
  std::optional<std::int64_t> send(LinkPipe& pipe, std::int64_t& last_arrival_ms, std::int64_t now_ms,
                                   std::uint64_t bytes) noexcept;
  LinkSchedule schedule_;
  LinkPipe up_;
  LinkPipe down_;
  // Arrivals after stall hold-ups, so stalls cannot reorder messages either.
  std::int64_t last_up_ms_ = 0;
  std::int64_t last_down_ms_ = 0;
  bool armed_ = true;
};

}  // namespace fota::sim

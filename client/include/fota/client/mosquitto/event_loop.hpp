// SPDX-License-Identifier: Apache-2.0
// One thread's event loop for many MosquittoSessions plus timers: poll() over every socket,
// libmosquitto's read/write/misc steps, then due timers. No locks: everything runs on the thread
// that calls run_once().
#pragma once

#include <cstdint>
#include <functional>
#include <queue>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "fota/client/mosquitto/mosquitto_session.hpp"

namespace fota::client::mosquitto {

class EventLoop {
 public:
  using TimerId = std::uint64_t;

  // Unix milliseconds (commands carry Unix expiry times, so the loop uses the wall clock).
  static std::int64_t wall_clock_ms() noexcept;
  std::int64_t now_ms() const noexcept { return now_ms_; }

  // The session must stay alive until unwatch() or the loop's end.
  void watch(MosquittoSession* session);
  void unwatch(MosquittoSession* session);
  // A paused session's socket is not serviced at all (a silently stalled link).
  void set_paused(MosquittoSession* session, bool paused);

  TimerId at(std::int64_t when_ms, std::function<void()> fn);
  TimerId after(std::int64_t delay_ms, std::function<void()> fn) {
    return at(now_ms_ + delay_ms, std::move(fn));
  }
  void cancel(TimerId id);

  // One round: waits up to max_wait_ms (less when a timer is due), services sockets, runs due
  // timers and, about once a second, every session's keepalive step.
  void run_once(int max_wait_ms);

  std::size_t session_count() const noexcept { return sessions_.size(); }

 private:
  struct Timer {
    std::int64_t at;
    TimerId id;
    std::function<void()> fn;
    bool operator>(const Timer& other) const { return at != other.at ? at > other.at : id > other.id; }
  };
  struct Entry {
    MosquittoSession* session;
    bool paused;
  };
  void run_due_timers();

  std::int64_t now_ms_ = wall_clock_ms();
  std::int64_t last_idle_ms_ = 0;
  std::vector<Entry> sessions_;
  std::unordered_map<MosquittoSession*, std::size_t> index_;
  std::priority_queue<Timer, std::vector<Timer>, std::greater<>> timers_;
  std::unordered_set<TimerId> cancelled_;
  TimerId next_timer_ = 1;
};

}  // namespace fota::client::mosquitto

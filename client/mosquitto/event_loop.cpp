// SPDX-License-Identifier: Apache-2.0
#include "fota/client/mosquitto/event_loop.hpp"

#include <poll.h>

#include <algorithm>
#include <cerrno>
#include <chrono>

namespace fota::client::mosquitto {

std::int64_t EventLoop::wall_clock_ms() noexcept {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

void EventLoop::watch(MosquittoSession* session) {
  if (index_.count(session)) return;
  index_[session] = sessions_.size();
  sessions_.push_back({session, false});
}

void EventLoop::unwatch(MosquittoSession* session) {
  auto it = index_.find(session);
  if (it == index_.end()) return;
  const std::size_t i = it->second;
  index_.erase(it);
  if (i + 1 != sessions_.size()) {
    sessions_[i] = sessions_.back();
    index_[sessions_[i].session] = i;
  }
  sessions_.pop_back();
}

void EventLoop::set_paused(MosquittoSession* session, bool paused) {
  if (auto it = index_.find(session); it != index_.end()) sessions_[it->second].paused = paused;
}

EventLoop::TimerId EventLoop::at(std::int64_t when_ms, std::function<void()> fn) {
  const TimerId id = next_timer_++;
  timers_.push({when_ms, id, std::move(fn)});
  return id;
}

void EventLoop::cancel(TimerId id) { cancelled_.insert(id); }

void EventLoop::run_due_timers() {
  now_ms_ = wall_clock_ms();
  while (!timers_.empty() && timers_.top().at <= now_ms_) {
    Timer timer = timers_.top();
    timers_.pop();
    if (cancelled_.erase(timer.id)) continue;
    timer.fn();
  }
}

void EventLoop::run_once(int max_wait_ms) {
  now_ms_ = wall_clock_ms();
  int wait = max_wait_ms;
  if (!timers_.empty())
    wait = static_cast<int>(std::clamp<std::int64_t>(timers_.top().at - now_ms_, 0, max_wait_ms));

  std::vector<pollfd> fds;
  std::vector<MosquittoSession*> owners;
  fds.reserve(sessions_.size());
  owners.reserve(sessions_.size());
  for (const auto& entry : sessions_) {
    if (entry.paused) continue;
    const int fd = entry.session->socket();
    if (fd < 0) continue;
    short events = POLLIN;
    if (entry.session->want_write()) events |= POLLOUT;
    fds.push_back({fd, events, 0});
    owners.push_back(entry.session);
  }
  const int ready = ::poll(fds.data(), fds.size(), wait);
  if (ready > 0) {
    for (std::size_t i = 0; i < fds.size(); ++i) {
      if (fds[i].revents == 0) continue;
      MosquittoSession* session = owners[i];
      // A callback may have closed or replaced the socket since poll(); skip stale entries.
      if (session->socket() != fds[i].fd) continue;
      if (fds[i].revents & (POLLIN | POLLHUP | POLLERR)) session->on_readable();
      if ((fds[i].revents & POLLOUT) && session->socket() == fds[i].fd) session->on_writable();
      if ((fds[i].revents & (POLLHUP | POLLERR)) && session->socket() == fds[i].fd) session->on_hangup();
    }
  }
  run_due_timers();
  if (now_ms_ - last_idle_ms_ >= 1000) {
    last_idle_ms_ = now_ms_;
    for (std::size_t i = 0; i < sessions_.size(); ++i) {
      if (!sessions_[i].paused) sessions_[i].session->on_idle();
    }
  }
}

}  // namespace fota::client::mosquitto

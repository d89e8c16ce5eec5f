#include "fota/client/connection_supervisor.hpp"

#include <algorithm>

namespace fota::client {

ReconnectBackoff::ReconnectBackoff(std::int64_t base_ms, std::int64_t max_ms, std::uint64_t seed)
    : base_ms_(base_ms),
      max_ms_(max_ms),
      // Both halves of a 64-bit seed count (minstd_rand keeps its seed modulo 2^31 - 1).
      rng_(static_cast<std::minstd_rand::result_type>(seed != 0 ? (seed ^ (seed >> 31))
                                                                : std::random_device{}())) {}

std::int64_t ReconnectBackoff::next_delay_ms() {
  const int exponent = std::min(attempt_, 20);
  ++attempt_;
  const std::int64_t cap = std::min<std::int64_t>(max_ms_, base_ms_ * (std::int64_t{1} << exponent));
  std::uniform_int_distribution<std::int64_t> jitter(0, std::max<std::int64_t>(cap, 0));
  return jitter(rng_);
}

ConnectionSupervisor::ConnectionSupervisor(ConnectionSupervisorConfig config)
    : config_(config), backoff_(config.reconnect_base_ms, config.reconnect_max_ms, config.seed) {}

void ConnectionSupervisor::start(std::int64_t now_ms) { handle(Event::kStart, now_ms); }
void ConnectionSupervisor::on_connected(std::int64_t now_ms) { handle(Event::kConnected, now_ms); }
void ConnectionSupervisor::on_connect_failed(std::int64_t now_ms) { handle(Event::kConnectFailed, now_ms); }
void ConnectionSupervisor::on_connection_lost(std::int64_t now_ms) { handle(Event::kConnectionLost, now_ms); }
void ConnectionSupervisor::stop() noexcept { handle(Event::kStop, 0); }

std::int64_t ConnectionSupervisor::next_deadline_ms() const noexcept { return deadline_ms_; }

ConnectionAction ConnectionSupervisor::on_deadline(std::int64_t now_ms) {
  if (now_ms < deadline_ms_) return ConnectionAction::kNone;
  switch (state_) {
    case ConnectionState::kWaiting:
      state_ = ConnectionState::kConnecting;
      deadline_ms_ = config_.connect_timeout_ms > 0 ? now_ms + config_.connect_timeout_ms : kNoDeadline;
      return ConnectionAction::kConnect;
    case ConnectionState::kConnecting:
      handle(Event::kConnectTimedOut, now_ms);
      return ConnectionAction::kAbandonAttempt;
    case ConnectionState::kStopped:
    case ConnectionState::kConnected:
      break;  // no deadline in these states: unreachable, as now_ms < kNoDeadline
  }
  return ConnectionAction::kNone;
}

// Every state's answer to every event, top to bottom; a pair not listed changes nothing. Late
// transport events are expected, not errors: a callback can arrive after stop(), and libmosquitto
// ends a connection whose CONNACK refused it after that refusal was reported.
void ConnectionSupervisor::handle(Event event, std::int64_t now_ms) {
  if (event == Event::kStop) return enter_stopped();  // from every state
  switch (state_) {
    case ConnectionState::kStopped:
      if (event == Event::kStart) return enter_waiting(now_ms, /*after_backoff=*/false);
      return;
    case ConnectionState::kWaiting:
      // The transport says it is connected, whatever we thought.
      if (event == Event::kConnected) return enter_connected();
      return;
    case ConnectionState::kConnecting:
      if (event == Event::kConnected) return enter_connected();
      // libmosquitto reports a handshake that failed as the end of the connection.
      if (event == Event::kConnectFailed || event == Event::kConnectionLost ||
          event == Event::kConnectTimedOut)
        return enter_waiting(now_ms, /*after_backoff=*/true);
      return;
    case ConnectionState::kConnected:
      // The backoff was reset on connect: the first retry comes soon, later ones spread out.
      if (event == Event::kConnectionLost) return enter_waiting(now_ms, /*after_backoff=*/true);
      return;
  }
}

void ConnectionSupervisor::enter_stopped() noexcept {
  state_ = ConnectionState::kStopped;
  deadline_ms_ = kNoDeadline;
}

void ConnectionSupervisor::enter_waiting(std::int64_t now_ms, bool after_backoff) {
  if (after_backoff) {
    retry_delay_ms_ = backoff_.next_delay_ms();
  } else {
    // A device that comes up connects at once, its backoff afresh as a new process's.
    backoff_.reset();
    retry_delay_ms_ = 0;
  }
  state_ = ConnectionState::kWaiting;
  deadline_ms_ = now_ms + retry_delay_ms_;
}

void ConnectionSupervisor::enter_connected() noexcept {
  ++connects_;
  backoff_.reset();
  state_ = ConnectionState::kConnected;
  deadline_ms_ = kNoDeadline;
}

}  // namespace fota::client

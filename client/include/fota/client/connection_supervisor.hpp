// When a device connects to its broker: the one connect/reconnect rule every transport adapter
// drives (Paho's MqttDeviceClient, the event loop's MosquittoDeviceClient, fota-sim's
// VirtualDevice), so a simulated fleet reconnects exactly as a real one does. C++17.
//
// Sans-IO like the update engine: it opens no socket and reads no clock. The adapter reports what
// its transport did (start, connected, connect failed, connection lost, stop) with `now_ms`, and
// the timers are inverted: it asks next_deadline_ms() and calls on_deadline() once that passed,
// which says whether to start a connect attempt or abandon one that timed out.
#pragma once

#include <cstdint>
#include <limits>
#include <random>

namespace fota::client {

// Reconnect delay with exponential backoff and full jitter: uniform in
// [0, min(max, base * 2^attempt)], so a fleet that lost its broker does not come back at once.
class ReconnectBackoff {
 public:
  // seed 0 = from std::random_device.
  ReconnectBackoff(std::int64_t base_ms, std::int64_t max_ms, std::uint64_t seed);
  // The delay before the next attempt; counts the attempt.
  std::int64_t next_delay_ms();
  // A connection succeeded: the next failure starts from base again.
  void reset() noexcept { attempt_ = 0; }
  int attempts() const noexcept { return attempt_; }

 private:
  std::int64_t base_ms_;
  std::int64_t max_ms_;
  int attempt_ = 0;
  // A jitter needs no better generator, and fota-sim holds one per virtual device: 8 bytes of
  // state instead of std::mt19937_64's 2,504 (2.4 KiB of a device's 64 KiB in fleet-10k).
  std::minstd_rand rng_;
};

struct ConnectionSupervisorConfig {
  // The backoff's base and maximum (ReconnectBackoff). fota-device's defaults.
  std::int64_t reconnect_base_ms = 500;
  std::int64_t reconnect_max_ms = 60'000;
  // An attempt with neither an answer nor an error after this long is abandoned and counts as a
  // failure. 0 = the transport times its attempts out itself and reports a failure (Paho).
  std::int64_t connect_timeout_ms = 10'000;
  // The jitter's seed; 0 = from std::random_device. fota-sim seeds each device from its scenario.
  std::uint64_t seed = 0;
};

enum class ConnectionState {
  kStopped,     // before start() and after stop(): no attempts
  kWaiting,     // the next attempt is due at next_deadline_ms()
  kConnecting,  // an attempt is under way; it times out at next_deadline_ms() (if timed)
  kConnected,
};

// What on_deadline() asks of the adapter.
enum class ConnectionAction {
  kNone,            // nothing is due yet (or the supervisor is stopped or connected)
  kConnect,         // start a connect attempt now, then report its outcome
  kAbandonAttempt,  // the attempt timed out: drop it without callbacks; the retry is scheduled
};

class ConnectionSupervisor {
 public:
  static constexpr std::int64_t kNoDeadline = std::numeric_limits<std::int64_t>::max();

  explicit ConnectionSupervisor(ConnectionSupervisorConfig config);

  // ---- Inputs ---------------------------------------------------------------------------------
  // The device came up (process start, power-on): the first attempt is due at once and the
  // backoff starts afresh. Ignored unless stopped.
  void start(std::int64_t now_ms);
  // The broker accepted the connection: the backoff starts afresh. Accepted in any state but
  // stopped: a transport that says it is connected is.
  void on_connected(std::int64_t now_ms);
  // The attempt failed (refused, no route, TLS error, a CONNACK with an error): the next one is
  // due after the backoff. Ignored unless connecting, so the end of a connection whose CONNACK
  // refused it (reported once already) does not back off twice.
  void on_connect_failed(std::int64_t now_ms);
  // The connection ended: a retry after the backoff. While connecting it is the attempt failing
  // (libmosquitto reports a failed handshake so); while waiting or stopped it is ignored.
  void on_connection_lost(std::int64_t now_ms);
  // The device shuts down (or powers off): no more attempts until start().
  void stop() noexcept;

  // ---- Inverted timer -------------------------------------------------------------------------
  // When on_deadline() has something to do: the next attempt, or the running one's timeout.
  // kNoDeadline when connected, stopped, or connecting without a timeout.
  std::int64_t next_deadline_ms() const noexcept;
  // Call once now_ms >= next_deadline_ms() (earlier calls return kNone). Waiting: the attempt
  // starts (kConnect). Connecting: the attempt timed out, the retry is scheduled (kAbandonAttempt).
  ConnectionAction on_deadline(std::int64_t now_ms);

  // ---- Observations ---------------------------------------------------------------------------
  ConnectionState state() const noexcept { return state_; }
  bool connected() const noexcept { return state_ == ConnectionState::kConnected; }
  // Failed attempts since the last connection (or start): what the backoff is at.
  int failed_attempts() const noexcept { return backoff_.attempts(); }
  // The delay the latest failure or loss scheduled its retry after, for the adapter's log.
  std::int64_t retry_delay_ms() const noexcept { return retry_delay_ms_; }
  // Connections established, and those after the first one, over the supervisor's lifetime
  // (across stop() and start(), so a simulated device's power cycles count too).
  std::uint32_t connects() const noexcept { return connects_; }
  std::uint32_t reconnects() const noexcept { return connects_ > 0 ? connects_ - 1 : 0; }

 private:
  enum class Event { kStart, kConnected, kConnectFailed, kConnectionLost, kConnectTimedOut, kStop };
  // The transition table: each state's answer to each event (connection_supervisor.cpp).
  void handle(Event event, std::int64_t now_ms);
  void enter_stopped() noexcept;
  // The next attempt at once (start) or after the backoff's next delay (a failure or a loss).
  void enter_waiting(std::int64_t now_ms, bool after_backoff);
  void enter_connected() noexcept;

  ConnectionSupervisorConfig config_;
  ReconnectBackoff backoff_;
  ConnectionState state_ = ConnectionState::kStopped;
  std::int64_t deadline_ms_ = kNoDeadline;
  std::int64_t retry_delay_ms_ = 0;
  std::uint32_t connects_ = 0;
};

}  // namespace fota::client

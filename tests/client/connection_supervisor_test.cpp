// ConnectionSupervisor (connection_supervisor.hpp): its transition table step by step on a manual
// clock, and the reconnect backoff it draws its delays from.
#include "fota/client/connection_supervisor.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "fota/testing/clock.hpp"

namespace fota::client {
namespace {

using namespace std::chrono_literals;

constexpr std::int64_t kBase = 100;
constexpr std::int64_t kMax = 1000;
constexpr std::int64_t kTimeoutMs = 3000;

enum class Input {
  kStart,
  kConnected,
  kConnectFailed,
  kConnectionLost,
  kStop,
  kDeadline,       // on_deadline() at the supervisor's deadline
  kBeforeDeadline  // on_deadline() 1 ms before it
};

// Where the supervisor's deadline must be after a step, relative to the step's time.
enum class Deadline {
  kNone,     // kNoDeadline
  kNow,      // the step's time: an attempt is due at once
  kTimeout,  // the step's time + the connect timeout
  kBackoff,  // within the backoff's cap for failed_attempts, and equal to retry_delay_ms()
  kSame      // unchanged by this step
};

struct Step {
  Input input;
  ConnectionState state;
  Deadline deadline;
  int failed_attempts = 0;
  std::uint32_t connects = 0;
  ConnectionAction action = ConnectionAction::kNone;  // for kDeadline and kBeforeDeadline
};

struct Case {
  std::string name;
  std::int64_t connect_timeout_ms = kTimeoutMs;
  std::vector<Step> steps;
};

// Names the row in gtest's output instead of dumping its bytes.
void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

using S = ConnectionState;
using D = Deadline;
using I = Input;
using A = ConnectionAction;

const Step kAttempt{I::kDeadline, S::kConnecting, D::kTimeout, 0, 0, A::kConnect};

const std::vector<Case>& cases() {
  static const std::vector<Case> table = {
      {"StartConnectsAtOnce",
       kTimeoutMs,
       {{I::kStart, S::kWaiting, D::kNow}, kAttempt, {I::kConnected, S::kConnected, D::kNone, 0, 1}}},
      {"EachFailedAttemptBacksOffFurther",
       kTimeoutMs,
       {{I::kStart, S::kWaiting, D::kNow},
        kAttempt,
        {I::kConnectFailed, S::kWaiting, D::kBackoff, 1},
        {I::kBeforeDeadline, S::kWaiting, D::kSame, 1, 0, A::kNone},
        {I::kDeadline, S::kConnecting, D::kTimeout, 1, 0, A::kConnect},
        {I::kConnectFailed, S::kWaiting, D::kBackoff, 2},
        {I::kDeadline, S::kConnecting, D::kTimeout, 2, 0, A::kConnect},
        {I::kConnectFailed, S::kWaiting, D::kBackoff, 3},
        {I::kDeadline, S::kConnecting, D::kTimeout, 3, 0, A::kConnect},
        {I::kConnected, S::kConnected, D::kNone, 0, 1}}},
      {"AnAttemptWithoutAnswerIsAbandonedAndRetried",
       kTimeoutMs,
       {{I::kStart, S::kWaiting, D::kNow},
        kAttempt,
        {I::kBeforeDeadline, S::kConnecting, D::kSame, 0, 0, A::kNone},
        {I::kDeadline, S::kWaiting, D::kBackoff, 1, 0, A::kAbandonAttempt},
        {I::kDeadline, S::kConnecting, D::kTimeout, 1, 0, A::kConnect},
        {I::kConnected, S::kConnected, D::kNone, 0, 1}}},
      {"ATransportThatTimesItsAttemptsOutHasNoTimeoutDeadline",
       0,
       {{I::kStart, S::kWaiting, D::kNow},
        {I::kDeadline, S::kConnecting, D::kNone, 0, 0, A::kConnect},
        {I::kConnectFailed, S::kWaiting, D::kBackoff, 1}}},
      {"ALostConnectionRetriesFromTheBaseAndCountsAReconnect",
       kTimeoutMs,
       {{I::kStart, S::kWaiting, D::kNow},
        kAttempt,
        {I::kConnectFailed, S::kWaiting, D::kBackoff, 1},
        {I::kDeadline, S::kConnecting, D::kTimeout, 1, 0, A::kConnect},
        {I::kConnected, S::kConnected, D::kNone, 0, 1},
        {I::kConnectionLost, S::kWaiting, D::kBackoff, 1, 1},
        {I::kDeadline, S::kConnecting, D::kTimeout, 1, 1, A::kConnect},
        {I::kConnected, S::kConnected, D::kNone, 0, 2}}},
      {"ARefusedConnackAndTheEndOfItsConnectionBackOffOnce",
       kTimeoutMs,
       {{I::kStart, S::kWaiting, D::kNow},
        kAttempt,
        {I::kConnectFailed, S::kWaiting, D::kBackoff, 1},
        {I::kConnectionLost, S::kWaiting, D::kSame, 1},
        {I::kConnectFailed, S::kWaiting, D::kSame, 1}}},
      {"AHandshakeThatEndsTheConnectionIsAFailedAttempt",
       kTimeoutMs,
       {{I::kStart, S::kWaiting, D::kNow}, kAttempt, {I::kConnectionLost, S::kWaiting, D::kBackoff, 1}}},
      {"StopEndsAttemptsAndLateCallbacksChangeNothing",
       kTimeoutMs,
       {{I::kStart, S::kWaiting, D::kNow},
        kAttempt,
        {I::kConnected, S::kConnected, D::kNone, 0, 1},
        {I::kStop, S::kStopped, D::kNone, 0, 1},
        {I::kConnectionLost, S::kStopped, D::kNone, 0, 1},
        {I::kConnected, S::kStopped, D::kNone, 0, 1},
        {I::kConnectFailed, S::kStopped, D::kNone, 0, 1}}},
      {"StopWhileConnectingDropsTheTimeout",
       kTimeoutMs,
       {{I::kStart, S::kWaiting, D::kNow}, kAttempt, {I::kStop, S::kStopped, D::kNone}}},
      {"StartAfterStopBeginsAfreshAndKeepsTheCount",
       kTimeoutMs,
       {{I::kStart, S::kWaiting, D::kNow},
        kAttempt,
        {I::kConnected, S::kConnected, D::kNone, 0, 1},
        {I::kConnectionLost, S::kWaiting, D::kBackoff, 1, 1},
        {I::kDeadline, S::kConnecting, D::kTimeout, 1, 1, A::kConnect},
        {I::kConnectFailed, S::kWaiting, D::kBackoff, 2, 1},
        {I::kStop, S::kStopped, D::kNone, 2, 1},
        {I::kStart, S::kWaiting, D::kNow, 0, 1},
        {I::kDeadline, S::kConnecting, D::kTimeout, 0, 1, A::kConnect},
        {I::kConnected, S::kConnected, D::kNone, 0, 2}}},
      {"StartWhileRunningChangesNothing",
       kTimeoutMs,
       {{I::kStart, S::kWaiting, D::kNow},
        kAttempt,
        {I::kStart, S::kConnecting, D::kSame},
        {I::kConnected, S::kConnected, D::kNone, 0, 1},
        {I::kStart, S::kConnected, D::kNone, 0, 1}}},
      {"ATransportThatSaysItIsConnectedIsBelieved",
       kTimeoutMs,
       {{I::kStart, S::kWaiting, D::kNow}, {I::kConnected, S::kConnected, D::kNone, 0, 1}}},
      {"AFailureWithoutAnAttemptChangesNothing",
       kTimeoutMs,
       {{I::kStart, S::kWaiting, D::kNow},
        {I::kConnectFailed, S::kWaiting, D::kSame},
        kAttempt,
        {I::kConnected, S::kConnected, D::kNone, 0, 1},
        {I::kConnectFailed, S::kConnected, D::kNone, 0, 1}}},
  };
  return table;
}

class ConnectionSupervisorTable : public ::testing::TestWithParam<Case> {};

TEST_P(ConnectionSupervisorTable, FollowsTheTransitionTable) {
  const Case& c = GetParam();
  ConnectionSupervisorConfig config;
  config.reconnect_base_ms = kBase;
  config.reconnect_max_ms = kMax;
  config.connect_timeout_ms = c.connect_timeout_ms;
  config.seed = 42;
  ConnectionSupervisor supervisor(config);
  testing::ManualClock clock;
  EXPECT_EQ(supervisor.state(), S::kStopped);
  EXPECT_EQ(supervisor.next_deadline_ms(), ConnectionSupervisor::kNoDeadline);
  for (std::size_t i = 0; i < c.steps.size(); ++i) {
    const Step& step = c.steps[i];
    SCOPED_TRACE("step " + std::to_string(i));
    const std::int64_t before = supervisor.next_deadline_ms();
    ConnectionAction action = A::kNone;
    switch (step.input) {
      case I::kStart:
        clock.advance(10ms);
        supervisor.start(clock.now_ms());
        break;
      case I::kConnected:
        clock.advance(10ms);
        supervisor.on_connected(clock.now_ms());
        break;
      case I::kConnectFailed:
        clock.advance(10ms);
        supervisor.on_connect_failed(clock.now_ms());
        break;
      case I::kConnectionLost:
        clock.advance(10ms);
        supervisor.on_connection_lost(clock.now_ms());
        break;
      case I::kStop:
        clock.advance(10ms);
        supervisor.stop();
        break;
      case I::kDeadline:
        ASSERT_NE(before, ConnectionSupervisor::kNoDeadline);
        clock.set(before);
        action = supervisor.on_deadline(clock.now_ms());
        break;
      case I::kBeforeDeadline:
        ASSERT_NE(before, ConnectionSupervisor::kNoDeadline);
        clock.set(before - 1);
        action = supervisor.on_deadline(clock.now_ms());
        break;
    }
    const std::int64_t now = clock.now_ms();
    EXPECT_EQ(action, step.action);
    EXPECT_EQ(supervisor.state(), step.state);
    EXPECT_EQ(supervisor.connected(), step.state == S::kConnected);
    EXPECT_EQ(supervisor.failed_attempts(), step.failed_attempts);
    EXPECT_EQ(supervisor.connects(), step.connects);
    EXPECT_EQ(supervisor.reconnects(), step.connects > 0 ? step.connects - 1 : 0);
    const std::int64_t deadline = supervisor.next_deadline_ms();
    switch (step.deadline) {
      case D::kNone:
        EXPECT_EQ(deadline, ConnectionSupervisor::kNoDeadline);
        break;
      case D::kNow:
        EXPECT_EQ(deadline, now);
        break;
      case D::kTimeout:
        EXPECT_EQ(deadline, now + c.connect_timeout_ms);
        break;
      case D::kBackoff: {
        const std::int64_t cap = std::min(kMax, kBase << (step.failed_attempts - 1));
        EXPECT_EQ(deadline, now + supervisor.retry_delay_ms());
        EXPECT_GE(supervisor.retry_delay_ms(), 0);
        EXPECT_LE(supervisor.retry_delay_ms(), cap);
        break;
      }
      case D::kSame:
        EXPECT_EQ(deadline, before);
        break;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Transitions, ConnectionSupervisorTable, ::testing::ValuesIn(cases()),
                         [](const ::testing::TestParamInfo<Case>& row) { return row.param.name; });

// Fails every attempt until `failures` have failed, then connects; returns the retry delays.
std::vector<std::int64_t> delays_until_connected(ConnectionSupervisor& supervisor, int failures) {
  testing::ManualClock clock;
  std::vector<std::int64_t> delays;
  supervisor.start(clock.now_ms());
  for (int i = 0; i <= failures; ++i) {
    clock.set(supervisor.next_deadline_ms());
    EXPECT_EQ(supervisor.on_deadline(clock.now_ms()), ConnectionAction::kConnect);
    if (i == failures) break;
    supervisor.on_connect_failed(clock.now_ms());
    delays.push_back(supervisor.retry_delay_ms());
  }
  supervisor.on_connected(clock.now_ms());
  return delays;
}

TEST(ConnectionSupervisorTest, TheSameSeedRetriesAtTheSameTimesAndAnotherSeedDoesNot) {
  // fota-sim seeds each device from its scenario: a run repeats, and devices do not move in step.
  ConnectionSupervisorConfig config;
  config.seed = 7;
  ConnectionSupervisor a(config);
  ConnectionSupervisor b(config);
  config.seed = 8;
  ConnectionSupervisor other(config);
  const auto delays = delays_until_connected(a, 12);
  EXPECT_EQ(delays, delays_until_connected(b, 12));
  EXPECT_NE(delays, delays_until_connected(other, 12));
  EXPECT_EQ(a.connects(), 1U);
}

TEST(ConnectionSupervisorTest, RetriesWithinTheDefaultsAreCappedAtTheMaximum) {
  // fota-device's defaults: 500 ms doubling up to 60 s.
  ConnectionSupervisor supervisor(ConnectionSupervisorConfig{});
  const auto delays = delays_until_connected(supervisor, 40);
  for (std::size_t i = 0; i < delays.size(); ++i) {
    EXPECT_LE(delays[i], std::min<std::int64_t>(60'000, std::int64_t{500} << std::min<std::size_t>(i, 20)))
        << "failure " << i + 1;
  }
  EXPECT_GT(*std::max_element(delays.begin() + 20, delays.end()), 30'000);
}

TEST(ReconnectBackoffTest, FullJitterUnderACapThatDoublesUpToTheMaximum) {
  ReconnectBackoff backoff(100, 1000, 42);
  for (int round = 0; round < 200; ++round) {
    const int attempt = backoff.attempts();
    const std::int64_t cap = std::min<std::int64_t>(1000, std::int64_t{100} << std::min(attempt, 20));
    const std::int64_t delay = backoff.next_delay_ms();
    EXPECT_GE(delay, 0) << "attempt " << attempt;
    EXPECT_LE(delay, cap) << "attempt " << attempt;
    EXPECT_EQ(backoff.attempts(), attempt + 1);
  }
  backoff.reset();
  EXPECT_EQ(backoff.attempts(), 0);
  EXPECT_LE(backoff.next_delay_ms(), 100);
}

TEST(ReconnectBackoffTest, TheSameSeedGivesTheSameDelaysAndLateAttemptsSpreadOut) {
  ReconnectBackoff a(500, 60'000, 7);
  ReconnectBackoff b(500, 60'000, 7);
  std::int64_t smallest = INT64_MAX;
  std::int64_t largest = 0;
  for (int i = 0; i < 100; ++i) {
    const std::int64_t delay = a.next_delay_ms();
    EXPECT_EQ(delay, b.next_delay_ms());
    if (i >= 20) {  // capped at 60 s from here on: spread over the whole range, not bunched
      smallest = std::min(smallest, delay);
      largest = std::max(largest, delay);
    }
  }
  EXPECT_LT(smallest, 15'000);
  EXPECT_GT(largest, 45'000);
}

}  // namespace
}  // namespace fota::client

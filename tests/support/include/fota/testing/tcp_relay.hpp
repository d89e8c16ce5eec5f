// SPDX-License-Identifier: Apache-2.0
// Test harness: a TCP relay on a free loopback port that forwards every connection to a target
// port on 127.0.0.1 and counts the bytes it carries, both ways. Put between two parts (an edge
// broker's bridge and the core broker, say) it measures what crosses that link; TLS passes through
// untouched.
#pragma once

#include <atomic>
#include <cstdint>
#include <thread>

namespace fota::testing {

class TcpRelay {
 public:
  // Listens at once; throws std::runtime_error when it cannot.
  explicit TcpRelay(int target_port);
  ~TcpRelay();
  TcpRelay(const TcpRelay&) = delete;
  TcpRelay& operator=(const TcpRelay&) = delete;

  int port() const noexcept { return port_; }
  std::uint64_t bytes_to_target() const noexcept { return to_target_.load(); }
  std::uint64_t bytes_from_target() const noexcept { return from_target_.load(); }
  std::uint64_t bytes() const noexcept { return bytes_to_target() + bytes_from_target(); }
  std::uint64_t connections() const noexcept { return connections_.load(); }
  // Closes every connection it carries (a cut link); new ones are still accepted.
  void cut();

 private:
  void run();

  int target_port_;
  int listen_fd_ = -1;
  int wake_[2] = {-1, -1};
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<bool> cut_{false};
  std::atomic<std::uint64_t> to_target_{0};
  std::atomic<std::uint64_t> from_target_{0};
  std::atomic<std::uint64_t> connections_{0};
  std::thread thread_;
};

}  // namespace fota::testing

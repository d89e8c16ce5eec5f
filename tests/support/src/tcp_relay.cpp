// SPDX-License-Identifier: Apache-2.0
#include "fota/testing/tcp_relay.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

namespace fota::testing {
namespace {

sockaddr_in loopback(int port) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return addr;
}

// One relayed connection: bytes read from one side are written (blocking, loopback) to the other.
struct Pair {
  int client = -1;
  int target = -1;
};

// Moves what `from` has to `to`; false when the connection is over.
bool pump(int from, int to, std::atomic<std::uint64_t>& counter) {
  std::array<char, 64 * 1024> buffer{};
  const ssize_t n = ::read(from, buffer.data(), buffer.size());
  if (n <= 0) return n < 0 && (errno == EINTR || errno == EAGAIN);
  ssize_t written = 0;
  while (written < n) {
    const ssize_t w = ::write(to, buffer.data() + written, static_cast<std::size_t>(n - written));
    if (w < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    written += w;
  }
  counter += static_cast<std::uint64_t>(n);
  return true;
}

}  // namespace

TcpRelay::TcpRelay(int target_port) : target_port_(target_port) {
  listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listen_fd_ < 0 || ::pipe2(wake_, O_CLOEXEC) != 0) throw std::runtime_error("relay: socket/pipe failed");
  const int one = 1;
  ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in addr = loopback(0);
  socklen_t len = sizeof(addr);
  if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::listen(listen_fd_, 64) != 0 ||
      ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    throw std::runtime_error(std::string("relay: cannot listen on 127.0.0.1: ") + std::strerror(errno));
  }
  port_ = ntohs(addr.sin_port);
  thread_ = std::thread([this] { run(); });
}

TcpRelay::~TcpRelay() {
  stop_ = true;
  const char byte = 0;
  [[maybe_unused]] auto n = ::write(wake_[1], &byte, 1);
  thread_.join();
  ::close(listen_fd_);
  ::close(wake_[0]);
  ::close(wake_[1]);
}

void TcpRelay::cut() {
  cut_ = true;
  const char byte = 0;
  [[maybe_unused]] auto n = ::write(wake_[1], &byte, 1);
}

void TcpRelay::run() {
  std::vector<Pair> pairs;
  const auto close_pair = [](Pair& p) {
    ::close(p.client);
    ::close(p.target);
    p = Pair{};
  };
  while (!stop_) {
    if (cut_.exchange(false)) {
      for (auto& p : pairs) close_pair(p);
      pairs.clear();
    }
    std::vector<pollfd> fds{{listen_fd_, POLLIN, 0}, {wake_[0], POLLIN, 0}};
    for (const auto& p : pairs) {
      fds.push_back({p.client, POLLIN, 0});
      fds.push_back({p.target, POLLIN, 0});
    }
    if (::poll(fds.data(), fds.size(), 500) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (fds[1].revents != 0) {
      char drain[64];
      [[maybe_unused]] auto n = ::read(wake_[0], drain, sizeof(drain));
    }
    for (std::size_t i = 0; i < pairs.size(); ++i) {
      const auto& client = fds[2 + 2 * i];
      const auto& target = fds[3 + 2 * i];
      bool open = true;
      if (client.revents != 0) open = pump(pairs[i].client, pairs[i].target, to_target_);
      if (open && target.revents != 0) open = pump(pairs[i].target, pairs[i].client, from_target_);
      if (!open) close_pair(pairs[i]);
    }
    std::erase_if(pairs, [](const Pair& p) { return p.client < 0; });
    if (fds[0].revents != 0) {
      const int client = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (client < 0) continue;
      const int target = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_in addr = loopback(target_port_);
      if (target < 0 || ::connect(target, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
        ::close(client);
        if (target >= 0) ::close(target);
        continue;
      }
      ++connections_;
      pairs.push_back({client, target});
    }
  }
  for (auto& p : pairs) close_pair(p);
}

}  // namespace fota::testing

// SPDX-License-Identifier: Apache-2.0
// The libmosquitto event-loop transport against a real mosquitto over mTLS.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "fota/client/mosquitto/event_loop.hpp"
#include "fota/client/mosquitto/mosquitto_session.hpp"
#include "fota/testing/broker.hpp"

namespace fota::client::mosquitto {
namespace {

using common::IssueOptions;
using common::Role;

class TransportTest : public ::testing::Test {
 protected:
  TransportTest() : pki_(dir_.path() / "pki"), broker_(pki_, dir_.path() / "broker") {}

  std::shared_ptr<TlsContext> tls_for(Role role, const std::string& name) {
    IssueOptions options;
    options.role = role;
    options.common_name = name;
    auto issued = pki_.ca().issue(options);
    EXPECT_TRUE(issued.ok()) << issued.error().message;
    auto tls = TlsContext::create(pki_.ca().ca_cert_pem(), issued->cert_pem, issued->key_pem);
    EXPECT_TRUE(tls.ok()) << tls.error().message;
    return *tls;
  }

  template <typename Pred>
  bool run_until(Pred pred, int timeout_ms = 5000) {
    const auto deadline = EventLoop::wall_clock_ms() + timeout_ms;
    while (!pred()) {
      if (EventLoop::wall_clock_ms() > deadline) return false;
      loop_.run_once(20);
    }
    return true;
  }

  MosquittoLibrary library_;
  testing::TempDir dir_;
  testing::TestPki pki_;
  testing::MosquittoBroker broker_;
  EventLoop loop_;
};

// A loopback listener that holds connections back, then relays them to the broker. While its accept
// queue is full the kernel drops a client's SYN, so the client's TCP connect stays in progress and
// the TLS handshake's first write must wait for the socket to become writable.
class HeldBackListener {
 public:
  explicit HeldBackListener(int target_port) : target_port_(target_port) {
    listener_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof addr;
    if (::bind(listener_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        ::listen(listener_, 0) != 0 ||
        ::getsockname(listener_, reinterpret_cast<sockaddr*>(&addr), &length) != 0) {
      throw std::runtime_error("cannot listen on loopback");
    }
    port_ = ntohs(addr.sin_port);
    // A backlog of 0 holds one connection; this one fills it, so later SYNs are dropped.
    filler_ = connect_to(port_, /*blocking=*/true);
  }
  ~HeldBackListener() {
    stop_ = true;
    if (relay_.joinable()) relay_.join();
    for (int fd : fds_) ::close(fd);
    ::close(filler_);
    ::close(listener_);
  }
  int port() const { return port_; }

  // Accepts what is queued and what arrives from now on, relaying each connection to the target.
  void open() {
    relay_ = std::thread([this] {
      std::vector<std::pair<int, int>> pairs;  // accepted, upstream
      while (!stop_) {
        std::vector<pollfd> polled{{listener_, POLLIN, 0}};
        for (auto [a, b] : pairs) {
          polled.push_back({a, POLLIN, 0});
          polled.push_back({b, POLLIN, 0});
        }
        if (::poll(polled.data(), polled.size(), 50) <= 0) continue;
        if (polled[0].revents & POLLIN) {
          const int accepted = ::accept(listener_, nullptr, nullptr);
          if (accepted >= 0) {
            pairs.emplace_back(accepted, connect_to(target_port_, true));
            fds_.push_back(accepted);
            fds_.push_back(pairs.back().second);
          }
        }
        for (std::size_t i = 1; i < polled.size(); ++i) {
          if (!(polled[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
          auto& pair = pairs[(i - 1) / 2];
          const int from = polled[i].fd;
          const int to = from == pair.first ? pair.second : pair.first;
          char buffer[16384];
          const ssize_t n = ::read(from, buffer, sizeof buffer);
          if (n <= 0 || ::write(to, buffer, static_cast<std::size_t>(n)) != n) {
            ::shutdown(pair.first, SHUT_RDWR);
            ::shutdown(pair.second, SHUT_RDWR);
            closed_.push_back((i - 1) / 2);
          }
        }
        // Forget relays that ended (back to front, so indexes stay valid).
        std::sort(closed_.begin(), closed_.end());
        closed_.erase(std::unique(closed_.begin(), closed_.end()), closed_.end());
        for (auto it = closed_.rbegin(); it != closed_.rend(); ++it)
          pairs.erase(pairs.begin() + static_cast<std::ptrdiff_t>(*it));
        closed_.clear();
      }
    });
  }

 private:
  static int connect_to(int port, bool blocking) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | (blocking ? 0 : SOCK_NONBLOCK), 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<std::uint16_t>(port));
    (void)::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    return fd;
  }

  int target_port_;
  int listener_ = -1;
  int port_ = 0;
  int filler_ = -1;
  std::vector<int> fds_;
  std::vector<std::size_t> closed_;
  std::atomic<bool> stop_{false};
  std::thread relay_;
};

TEST_F(TransportTest, AHandshakeThatMustWaitToWriteStillCompletes) {
  // Found at 1,000 devices: reconnecting after their reboot, a few devices met a full listen backlog;
  // their TLS handshake then had to wait to write, which loop_write never drove, and each waited
  // 30 s for the keepalive to give up.
  HeldBackListener listener(broker_.port());
  SessionConfig config;
  config.port = listener.port();
  config.client_id = "dev-held";
  config.tls = tls_for(Role::kDevice, config.client_id);
  bool connected = false;
  SessionCallbacks callbacks;
  callbacks.on_connected = [&](int rc) { connected = rc == 0; };
  auto session = MosquittoSession::create(std::move(config), std::move(callbacks));
  ASSERT_TRUE(session.ok()) << session.error().message;
  loop_.watch(session->get());
  ASSERT_TRUE((*session)->connect().ok());
  // The SYN is dropped; let the session sit on its pending connect, then let it through.
  run_until([] { return false; }, 300);
  EXPECT_FALSE(connected);
  listener.open();
  // The client retransmits its SYN after 1 s (then 3 s): well inside this, far from the 30 s keepalive.
  EXPECT_TRUE(run_until([&] { return connected; }, 10'000));
  loop_.unwatch(session->get());
}

TEST_F(TransportTest, ManySessionsConnectAndExchangeMessagesOnOneThread) {
  constexpr int kDevices = 50;
  std::vector<std::unique_ptr<MosquittoSession>> devices;
  std::vector<int> received(kDevices, 0);
  int connected = 0;
  for (int i = 0; i < kDevices; ++i) {
    SessionConfig config;
    config.port = broker_.port();
    config.client_id = "dev-" + std::to_string(i);
    config.tls = tls_for(Role::kDevice, config.client_id);
    SessionCallbacks callbacks;
    callbacks.on_connected = [&, i](int rc) {
      ASSERT_EQ(rc, 0);
      ++connected;
      ASSERT_TRUE(devices[i]->subscribe("t/dev-" + std::to_string(i), 1).ok());
    };
    callbacks.on_message = [&, i](std::string_view topic, std::string_view payload) {
      EXPECT_EQ(topic, "t/dev-" + std::to_string(i));
      EXPECT_EQ(payload, "hello " + std::to_string(i));
      ++received[i];
    };
    auto session = MosquittoSession::create(std::move(config), std::move(callbacks));
    ASSERT_TRUE(session.ok()) << session.error().message;
    devices.push_back(std::move(*session));
    loop_.watch(devices.back().get());
    ASSERT_TRUE(devices.back()->connect().ok());
  }
  ASSERT_TRUE(run_until([&] { return connected == kDevices; })) << connected << " connected";

  SessionConfig sender_config;
  sender_config.port = broker_.port();
  sender_config.client_id = "orchestrator";
  sender_config.tls = tls_for(Role::kOrchestrator, "orchestrator");
  bool sender_up = false;
  SessionCallbacks sender_callbacks;
  sender_callbacks.on_connected = [&](int rc) { sender_up = rc == 0; };
  auto sender = MosquittoSession::create(std::move(sender_config), std::move(sender_callbacks));
  ASSERT_TRUE(sender.ok());
  loop_.watch(sender->get());
  ASSERT_TRUE((*sender)->connect().ok());
  ASSERT_TRUE(run_until([&] { return sender_up; }));
  // Let the SUBACKs land before publishing.
  run_until([] { return false; }, 200);
  for (int i = 0; i < kDevices; ++i) {
    ASSERT_TRUE((*sender)->publish("t/dev-" + std::to_string(i), "hello " + std::to_string(i), 1).ok());
  }
  ASSERT_TRUE(run_until([&] {
    for (int n : received) {
      if (n == 0) return false;
    }
    return true;
  }));
  for (int n : received) EXPECT_EQ(n, 1);
  // Bytes were counted from the kernel's TCP counters: at least the TLS handshake went both ways.
  EXPECT_GT(devices[0]->wire().bytes_received, 500u);
  EXPECT_GT(devices[0]->wire().bytes_sent, 300u);
}

TEST_F(TransportTest, ResetLooksLikeALostLinkAndTheSessionReconnects) {
  SessionConfig watcher_config;
  watcher_config.port = broker_.port();
  watcher_config.client_id = "observer";
  watcher_config.tls = tls_for(Role::kObserver, "observer");
  std::vector<std::string> wills;
  bool watcher_up = false;
  SessionCallbacks watcher_callbacks;
  watcher_callbacks.on_connected = [&](int) { watcher_up = true; };
  watcher_callbacks.on_message = [&](std::string_view, std::string_view payload) {
    wills.emplace_back(payload);
  };
  auto watcher = MosquittoSession::create(std::move(watcher_config), std::move(watcher_callbacks));
  ASSERT_TRUE(watcher.ok());
  loop_.watch(watcher->get());
  ASSERT_TRUE((*watcher)->connect().ok());
  ASSERT_TRUE(run_until([&] { return watcher_up; }));
  ASSERT_TRUE((*watcher)->subscribe("will/#", 1).ok());

  SessionConfig config;
  config.port = broker_.port();
  config.client_id = "dev-reset";
  config.tls = tls_for(Role::kDevice, "dev-reset");
  config.will = LastWill{"will/dev-reset", "gone", 1, false};
  int connects = 0;
  int disconnects = 0;
  SessionCallbacks callbacks;
  callbacks.on_connected = [&](int rc) { connects += rc == 0; };
  callbacks.on_disconnected = [&](int) { ++disconnects; };
  auto device = MosquittoSession::create(std::move(config), std::move(callbacks));
  ASSERT_TRUE(device.ok());
  loop_.watch(device->get());
  ASSERT_TRUE((*device)->connect().ok());
  ASSERT_TRUE(run_until([&] { return connects == 1; }));

  (*device)->reset();
  ASSERT_TRUE(run_until([&] { return disconnects == 1; }));
  EXPECT_FALSE((*device)->connected());
  ASSERT_TRUE(run_until([&] { return wills.size() == 1; })) << "the broker must publish the last will";
  EXPECT_EQ(wills[0], "gone");

  ASSERT_TRUE((*device)->connect().ok());
  ASSERT_TRUE(run_until([&] { return connects == 2; }));
  EXPECT_EQ((*device)->connects(), 2u);
}

TEST_F(TransportTest, ForeignCertificateIsRefused) {
  testing::TempDir other_dir;
  testing::TestPki other(other_dir.path());
  IssueOptions options;
  options.common_name = "intruder";
  auto issued = other.ca().issue(options);
  ASSERT_TRUE(issued.ok());
  // Trusts our broker's CA but presents a certificate from another CA.
  auto tls = TlsContext::create(pki_.ca().ca_cert_pem(), issued->cert_pem, issued->key_pem);
  ASSERT_TRUE(tls.ok());
  SessionConfig config;
  config.port = broker_.port();
  config.client_id = "intruder";
  config.tls = *tls;
  bool connected = false;
  bool ended = false;
  SessionCallbacks callbacks;
  callbacks.on_connected = [&](int rc) { connected = rc == 0; };
  callbacks.on_disconnected = [&](int) { ended = true; };
  auto session = MosquittoSession::create(std::move(config), std::move(callbacks));
  ASSERT_TRUE(session.ok());
  loop_.watch(session->get());
  // The refusal surfaces either at once (connect() fails) or from the loop (on_disconnected).
  if ((*session)->connect().ok()) {
    run_until([&] { return ended; }, 3000);
    EXPECT_TRUE(ended);
  }
  EXPECT_FALSE(connected);
  EXPECT_FALSE((*session)->connected());
}

TEST_F(TransportTest, ConnectingToAStoppedBrokerFailsPromptly) {
  SessionConfig config;
  config.port = broker_.port();
  config.client_id = "dev-early";
  config.tls = tls_for(Role::kDevice, "dev-early");
  int disconnects = 0;
  int connects = 0;
  SessionCallbacks callbacks;
  callbacks.on_connected = [&](int rc) { connects += rc == 0; };
  callbacks.on_disconnected = [&](int) { ++disconnects; };
  auto session = MosquittoSession::create(std::move(config), std::move(callbacks));
  ASSERT_TRUE(session.ok());
  loop_.watch(session->get());
  broker_.stop();
  const auto started = EventLoop::wall_clock_ms();
  if ((*session)->connect().ok()) {
    ASSERT_TRUE(run_until([&] { return disconnects == 1; }, 3000)) << "a refused connect must be reported";
  }
  EXPECT_LT(EventLoop::wall_clock_ms() - started, 3000);
  EXPECT_FALSE((*session)->active());
  // And once the broker is back, the same session connects.
  broker_.start();
  ASSERT_TRUE((*session)->connect().ok());
  ASSERT_TRUE(run_until([&] { return connects == 1; }));
}

std::size_t open_descriptors() {
  std::size_t n = 0;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) n += entry.exists() ? 1 : 0;
  return n;
}

TEST_F(TransportTest, SessionsCostNoDescriptorUntilTheyConnect) {
  // libmosquitto's per-client wake-up socket pair is suppressed: 10,000 devices need 10,000
  // descriptors, not 30,000.
  auto tls = tls_for(Role::kDevice, "dev-fd");
  const std::size_t before = open_descriptors();
  std::vector<std::unique_ptr<MosquittoSession>> sessions;
  for (int i = 0; i < 20; ++i) {
    SessionConfig config;
    config.port = broker_.port();
    config.client_id = "dev-fd-" + std::to_string(i);
    config.tls = tls;
    auto session = MosquittoSession::create(std::move(config), {});
    ASSERT_TRUE(session.ok());
    sessions.push_back(std::move(*session));
  }
  EXPECT_EQ(open_descriptors(), before);
  // The limit is back where it was: other code can open files again.
  std::FILE* file = std::fopen("/proc/self/status", "r");
  EXPECT_NE(file, nullptr);
  if (file != nullptr) std::fclose(file);
}

TEST(TlsContextTest, GarbageIsRefusedWithAMessage) {
  auto tls = TlsContext::create("not a pem", "x", "y");
  ASSERT_FALSE(tls.ok());
  EXPECT_NE(tls.error().message.find("CA"), std::string::npos);
}

}  // namespace
}  // namespace fota::client::mosquitto

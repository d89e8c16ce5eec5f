// SPDX-License-Identifier: Apache-2.0
#include "fota/sim/broker_process.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <thread>

#include "fota/common/crypto.hpp"
#include "fota/common/process.hpp"

namespace fota::sim {

using common::Errc;
using common::Error;

int free_loopback_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof addr;
  int port = -1;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &length) == 0) {
    port = ntohs(addr.sin_port);
  }
  ::close(fd);
  return port;
}

bool loopback_accepts(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return ok;
}

void stop_process(int& pid, bool hard) {
  if (pid <= 0) return;
  ::kill(pid, hard ? SIGKILL : SIGTERM);
  for (int i = 0; i < 500; ++i) {
    if (::waitpid(pid, nullptr, WNOHANG) == pid) {
      pid = -1;
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
  pid = -1;
}

namespace {

std::string current_user() {
  const passwd* pw = ::getpwuid(::geteuid());
  return pw != nullptr ? pw->pw_name : "root";
}

}  // namespace

BrokerProcess::BrokerProcess(std::filesystem::path dir, common::CertificateAuthority ca, int port)
    : dir_(std::move(dir)), ca_(std::move(ca)), port_(port) {}

BrokerProcess::~BrokerProcess() { stop(false); }

common::Result<std::unique_ptr<BrokerProcess>> BrokerProcess::launch(
    const std::filesystem::path& dir, const std::optional<BrokerPlugin>& plugin) {
  std::error_code ec;
  std::filesystem::create_directories(dir / "broker", ec);
  if (ec) return Error(Errc::kIo, "cannot create " + (dir / "broker").string() + ": " + ec.message());
  auto ca = common::CertificateAuthority::open(dir / "pki");
  if (!ca.ok()) ca = common::CertificateAuthority::init(dir / "pki", "fota-sim fleet CA");
  if (!ca.ok()) return ca.error().with_context("creating the simulator's fleet CA");
  common::IssueOptions options;
  options.role = common::Role::kBroker;
  options.common_name = "fota-sim-broker";
  options.ip_addresses = {"127.0.0.1"};
  options.dns_names = {"localhost"};
  auto issued = ca->issue(options);
  if (!issued.ok()) return issued.error().with_context("issuing the broker certificate");
  const auto cert = dir / "broker" / "broker.crt";
  const auto key = dir / "broker" / "broker.key";
  std::filesystem::remove(cert, ec);
  std::filesystem::remove(key, ec);
  if (auto s = common::write_new_file(cert, issued->cert_pem, 0644); !s.ok()) return s.error();
  if (auto s = common::write_new_file(key, issued->key_pem, 0600); !s.ok()) return s.error();
  const int port = free_loopback_port();
  if (port <= 0) return Error(Errc::kUnavailable, "no free port on 127.0.0.1");
  std::ofstream conf(dir / "broker" / "mosquitto.conf", std::ios::trunc);
  conf << "# written by fota-sim --spawn-broker\n"
       << "per_listener_settings false\nallow_anonymous true\npersistence false\n"
       << "user " << current_user() << "\n"
       << "log_dest file " << (dir / "broker" / "mosquitto.log").string() << "\n"
       << "log_type error\nlog_type warning\nlog_type notice\n"
       << "max_queued_messages 100000\n"
       << "listener " << port << " 127.0.0.1\n"
       << "cafile " << ca->ca_cert_path().string() << "\n"
       << "certfile " << cert.string() << "\nkeyfile " << key.string() << "\n"
       << "require_certificate true\nuse_identity_as_username false\n";
  if (plugin) {
    std::filesystem::create_directories(plugin->artifact_dir, ec);  // the plugin needs it at start
    // Limits sized for a simulated fleet on one machine: every device shares the loopback link.
    conf << "max_packet_size 4210688\n"
         << "plugin " << plugin->library.string() << "\n"
         << "plugin_opt_artifact_dir " << plugin->artifact_dir.string() << "\n"
         << "plugin_opt_device_msgs_per_second 1000\nplugin_opt_device_msg_burst 2000\n"
         // Every simulated device connects from 127.0.0.1: no per-address CONNECT limit here.
         << "plugin_opt_address_connects_per_second 0\n"
         << "plugin_opt_log_level warn\n";
  }
  conf.close();
  if (!conf) return Error(Errc::kIo, "cannot write the broker configuration");
  std::unique_ptr<BrokerProcess> broker(new BrokerProcess(dir, std::move(*ca), port));
  if (auto s = broker->start(); !s.ok()) return s.error();
  return broker;
}

common::Status BrokerProcess::start() {
  if (pid_ > 0) return common::ok_status();
  const std::string config = (dir_ / "broker" / "mosquitto.conf").string();
  const std::string err = (dir_ / "broker" / "mosquitto.stderr").string();
  const int pid = common::spawn_process({FOTA_MOSQUITTO_BIN, "-c", config}, err);
  if (pid < 0) return Error(Errc::kInternal, "cannot start " + std::string(FOTA_MOSQUITTO_BIN));
  pid_ = pid;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return Error(Errc::kUnavailable, "mosquitto exited at start-up; its log ends:\n" + log_tail());
    }
    if (loopback_accepts(port_)) return common::ok_status();
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  stop(true);
  return Error(Errc::kUnavailable,
               "mosquitto did not accept connections within 10 s; its log ends:\n" + log_tail());
}

void BrokerProcess::stop(bool hard) { stop_process(pid_, hard); }

std::string BrokerProcess::log_tail(std::size_t bytes) const {
  std::ifstream in(dir_ / "broker" / "mosquitto.log");
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string text = ss.str();
  return text.size() > bytes ? text.substr(text.size() - bytes) : text;
}

}  // namespace fota::sim

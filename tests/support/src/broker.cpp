// SPDX-License-Identifier: Apache-2.0
#include "fota/testing/broker.hpp"

#include "fota/common/process.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string_view>
#include <thread>

namespace fota::testing {
namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

template <typename T>
T must(common::Result<T> result, const char* what) {
  if (!result) throw std::runtime_error(std::string(what) + ": " + result.error().to_string());
  return std::move(result).value();
}

bool tcp_accepts(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  ::close(fd);
  return ok;
}

std::string current_user() {
  passwd* pw = ::getpwuid(::geteuid());
  return pw ? pw->pw_name : "root";
}

}  // namespace

TempDir::TempDir() {
  std::string tmpl = (fs::temp_directory_path() / "fota-test-XXXXXX").string();
  if (::mkdtemp(tmpl.data()) == nullptr)
    throw std::runtime_error("mkdtemp failed: " + std::string(std::strerror(errno)));
  path_ = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

pid_t spawn(const std::vector<std::string>& argv, const std::filesystem::path& output,
            const std::vector<std::string>& extra_env) {
  const pid_t pid = common::spawn_process(argv, output, extra_env);
  if (pid < 0) throw std::runtime_error("fork failed: " + std::string(std::strerror(errno)));
  return pid;
}

pid_t spawn_until_ready(const std::vector<std::string>& argv, const std::filesystem::path& output,
                        const std::function<bool()>& ready, std::string& failure) {
  pid_t pid = spawn(argv, output);
  const auto read_output = [&] {
    std::ifstream in(output);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  for (int i = 0; i < 200; ++i) {
    if (ready()) return pid;
    if (waitpid(pid, nullptr, WNOHANG) == pid) {
      failure = argv.front() + " exited:\n" + read_output();
      return -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  stop_process(pid, SIGKILL);
  failure = argv.front() + " did not get ready within 10 s:\n" + read_output();
  return -1;
}

void stop_process(pid_t& pid, int signal) {
  if (pid <= 0) return;
  kill(pid, signal);
  waitpid(pid, nullptr, 0);
  pid = -1;
}

int free_loopback_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = 0;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    throw std::runtime_error("cannot bind a loopback port: " + std::string(std::strerror(errno)));
  }
  socklen_t len = sizeof(addr);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

TestPki::TestPki(const fs::path& dir)
    : dir_(dir), ca_(must(common::CertificateAuthority::init(dir / "pki"), "creating the test CA")) {
  common::IssueOptions broker;
  broker.role = common::Role::kBroker;
  broker.common_name = "broker";
  broker.dns_names = {"localhost"};
  broker.ip_addresses = {"127.0.0.1"};
  broker_ = must(ca_.issue_to_files(broker), "issuing the broker certificate");
}

common::IssuedFiles TestPki::issue(common::Role role, const std::string& name) {
  common::IssuedFiles files = ca_.paths_for(role, name);
  if (fs::exists(files.cert) && fs::exists(files.key)) return files;
  common::IssueOptions options;
  options.role = role;
  options.common_name = name;
  return must(ca_.issue_to_files(options), "issuing a test certificate");
}

const common::CommandKeyFiles& TestPki::command_key() {
  if (!command_key_)
    command_key_ = must(common::create_command_key(dir_ / "pki", "command"), "the command key");
  return *command_key_;
}

common::IssuedFiles TestPki::issue_custom(const common::IssueOptions& options, const std::string& file_stem) {
  auto issued = must(ca_.issue(options), "issuing a custom test certificate");
  fs::path base = dir_ / "custom";
  fs::create_directories(base);
  common::IssuedFiles files{base / (file_stem + ".crt"), base / (file_stem + ".key")};
  std::ofstream(files.cert) << issued.cert_pem;
  std::ofstream(files.key) << issued.key_pem;
  return files;
}

MosquittoBroker::MosquittoBroker(const TestPki& pki, const fs::path& work_dir, BrokerOptions options)
    : pki_(pki), work_dir_(work_dir), options_(std::move(options)) {
  fs::create_directories(work_dir_);
  config_path_ = work_dir_ / "mosquitto.conf";
  log_path_ = work_dir_ / "mosquitto.log";
  port_ = options_.port != 0 ? options_.port : free_loopback_port();
  write_config();
  start();
}

MosquittoBroker::~MosquittoBroker() { stop(); }

std::string MosquittoBroker::uri() const { return "ssl://127.0.0.1:" + std::to_string(port_); }

void MosquittoBroker::write_config() {
  std::ofstream conf(config_path_);
  conf << "# written by fota::testing::MosquittoBroker\n"
       << "per_listener_settings false\n"
       << "allow_anonymous true\n"
       << "persistence false\n"
       << "user " << current_user() << "\n"
       << "log_dest file " << log_path_.string() << "\n"
       << "log_type error\nlog_type warning\nlog_type notice\nlog_type information\n"
       << "connection_messages true\n"
       << "max_queued_messages 100000\n"
       << "listener " << port_ << " 127.0.0.1\n"
       << "cafile " << pki_.ca_cert().string() << "\n"
       << "certfile " << pki_.broker().cert.string() << "\n"
       << "keyfile " << pki_.broker().key.string() << "\n"
       << "require_certificate true\n"
       << "use_identity_as_username false\n";
  if (options_.with_plugin) {
    const std::string plugin = FOTA_PLUGIN_PATH;
    if (plugin.empty())
      throw std::runtime_error("BrokerOptions::with_plugin set but the plugin was not built");
    conf << "plugin " << plugin << "\n";
    for (const auto& [key, value] : options_.plugin_options)
      conf << "plugin_opt_" << key << " " << value << "\n";
  }
  conf << options_.extra_config << "\n";
}

void MosquittoBroker::start() {
  if (pid_ > 0) return;
  // An instrumented plugin needs the sanitizer runtime loaded first; the broker's own shutdown
  // leaks are not ours to judge.
  std::vector<std::string> env;
  const std::string asan = FOTA_ASAN_RUNTIME;
  if (!asan.empty() && options_.with_plugin) env = {"LD_PRELOAD=" + asan, "ASAN_OPTIONS=detect_leaks=0"};
  // The broker's own stderr (e.g. its warning about running as root) goes next to its log.
  pid_ = spawn({FOTA_MOSQUITTO_BIN, "-c", config_path_.string()}, work_dir_ / "mosquitto.stderr", env);
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      throw std::runtime_error("mosquitto exited at start-up; its log:\n" + log());
    }
    // "running" is logged after mosquitto installed its signal handlers, so a SIGHUP sent by a
    // test right after start() reloads instead of killing the broker.
    if (tcp_accepts(port_) && log().find(" running") != std::string::npos) return;
    std::this_thread::sleep_for(10ms);
  }
  stop();
  throw std::runtime_error("mosquitto did not accept connections within 10 s; its log:\n" + log());
}

void MosquittoBroker::send_signal(int signal) {
  if (pid_ > 0) ::kill(pid_, signal);
}

void MosquittoBroker::kill_hard() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  ::waitpid(pid_, nullptr, 0);
  pid_ = -1;
}

void MosquittoBroker::stop() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGTERM);
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (std::chrono::steady_clock::now() < deadline) {
    if (::waitpid(pid_, nullptr, WNOHANG) == pid_) {
      pid_ = -1;
      return;
    }
    std::this_thread::sleep_for(5ms);
  }
  kill_hard();
}

std::string MosquittoBroker::log() const {
  std::ifstream in(log_path_);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace fota::testing

// SPDX-License-Identifier: Apache-2.0
#include "fota/sim/orchestrator_process.hpp"

#include <sys/wait.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <thread>

#include "fota/common/crypto.hpp"
#include "fota/common/process.hpp"
#include "fota/sim/broker_process.hpp"

namespace fota::sim {

using common::Errc;
using common::Error;

namespace {
constexpr const char* kClientId = "fota-orchestrator";
}

OrchestratorProcess::OrchestratorProcess(OrchestratorSettings settings, int http_port, std::string token)
    : settings_(std::move(settings)), http_port_(http_port), token_(std::move(token)) {}

OrchestratorProcess::~OrchestratorProcess() { stop(false); }

common::Result<std::unique_ptr<OrchestratorProcess>> OrchestratorProcess::launch(
    const OrchestratorSettings& settings, const common::CertificateAuthority& ca) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(settings.binary, ec)) {
    return Error(Errc::kNotFound, "fota-orchestrator not found at " + settings.binary.string() +
                                      "; build it (cmake --build build) or pass --orchestrator-bin");
  }
  const auto& dir = settings.dir;
  const auto data_dir = settings.data_dir.empty() ? dir / "data" : settings.data_dir;
  std::filesystem::create_directories(data_dir, ec);
  std::filesystem::create_directories(settings.artifacts_dir, ec);
  if (ec) return Error(Errc::kIo, "cannot create " + dir.string() + ": " + ec.message());

  common::IssueOptions issue;
  issue.role = common::Role::kOrchestrator;
  issue.common_name = kClientId;
  auto issued = ca.issue(issue);
  if (!issued.ok()) return issued.error().with_context("issuing the orchestrator's certificate");
  const auto cert = dir / "orchestrator.crt";
  const auto key = dir / "orchestrator.key";
  const auto token_file = dir / "api.token";
  for (const auto& f : {cert, key, token_file}) std::filesystem::remove(f, ec);
  if (auto s = common::write_new_file(cert, issued->cert_pem, 0644); !s.ok()) return s.error();
  if (auto s = common::write_new_file(key, issued->key_pem, 0600); !s.ok()) return s.error();
  // The token only guards a loopback API for the length of one run.
  const auto token =
      common::to_hex(common::digest_bytes(common::Sha256::digest(issued->key_pem))).substr(0, 32);
  if (auto s = common::write_new_file(token_file, token + "\n", 0600); !s.ok()) return s.error();

  const int http_port = free_loopback_port();
  if (http_port <= 0) return Error(Errc::kUnavailable, "no free port on 127.0.0.1 for the orchestrator API");
  if (settings.command_key.empty()) {
    return Error(Errc::kInvalidArgument, "the orchestrator needs a command key to sign commands with");
  }
  std::ofstream conf(dir / "orchestrator.yaml", std::ios::trunc);
  conf << "# written by fota-sim for one run\n"
       << "broker:\n"
       << "  uri: ssl://" << settings.broker_host << ":" << settings.broker_port << "\n"
       << "  ca: " << ca.ca_cert_path().string() << "\n"
       << "  cert: " << cert.string() << "\n"
       << "  key: " << key.string() << "\n"
       << "  client_id: " << kClientId << "\n"
       << "data_dir: " << data_dir.string() << "\n"
       << "artifacts_dir: " << settings.artifacts_dir.string() << "\n"
       << "trusted_keys: " << settings.trusted_key.string() << "\n"
       << "command_key: " << settings.command_key.string() << "\n"
       << "http: {listen: 127.0.0.1, port: " << http_port << "}\n"
       << "api_tokens:\n  - {name: fota-sim, role: admin, token_file: " << token_file.string() << "}\n"
       << "tick_interval: 100ms\n"
       << "default_link_rate: " << settings.default_link_rate << "\n"
       << "default_device_time: " << settings.default_device_time_ms << "ms\n"
       << "log_level: info\n";
  conf.close();
  if (!conf) return Error(Errc::kIo, "cannot write " + (dir / "orchestrator.yaml").string());
  std::unique_ptr<OrchestratorProcess> process(new OrchestratorProcess(settings, http_port, token));
  if (auto s = process->start(); !s.ok()) return s.error();
  return process;
}

std::string OrchestratorProcess::api_url() const { return "http://127.0.0.1:" + std::to_string(http_port_); }

common::Status OrchestratorProcess::start() {
  if (pid_ > 0) return common::ok_status();
  pid_ = common::spawn_process(
      {settings_.binary.string(), "--config", (settings_.dir / "orchestrator.yaml").string()},
      settings_.dir / "orchestrator.log");
  if (pid_ < 0) return Error(Errc::kInternal, "cannot start " + settings_.binary.string());
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return Error(Errc::kUnavailable, "fota-orchestrator exited at start-up; its log ends:\n" + log_tail());
    }
    if (loopback_accepts(http_port_)) return common::ok_status();
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  stop(true);
  return Error(Errc::kUnavailable,
               "fota-orchestrator's API did not answer within 20 s; its log ends:\n" + log_tail());
}

void OrchestratorProcess::stop(bool hard) { stop_process(pid_, hard); }

std::string OrchestratorProcess::log_tail(std::size_t bytes) const {
  std::ifstream in(settings_.dir / "orchestrator.log");
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string text = ss.str();
  return text.size() > bytes ? text.substr(text.size() - bytes) : text;
}

}  // namespace fota::sim

// SPDX-License-Identifier: Apache-2.0
#include "webhook_sender.hpp"

#include <httplib.h>
#include <openssl/x509.h>

#include <chrono>

namespace fota::orchestrator {

WebhookAttempt send_webhook(const WebhookJob& job, Millis timeout_ms, Millis now) {
  const bool https = job.url.rfind("https://", 0) == 0;
  const std::size_t host_start = job.url.find("://") + 3;
  const std::size_t path_start = job.url.find_first_of("/?#", host_start);
  const std::string origin = job.url.substr(0, path_start);
  std::string path = path_start == std::string::npos ? "/" : job.url.substr(path_start);
  if (path.front() != '/') path = "/" + path;
  if (const auto hash = path.find('#'); hash != std::string::npos) path.resize(hash);

  httplib::Client client(origin);
  if (!client.is_valid()) return {0, "cannot use " + origin};
  if (https) {
    client.enable_server_certificate_verification(true);
    if (!job.ca_file.empty()) client.set_ca_cert_path(job.ca_file.c_str());
  }
  const auto timeout = std::chrono::milliseconds(timeout_ms);
  client.set_connection_timeout(timeout);
  client.set_read_timeout(timeout);
  client.set_write_timeout(timeout);
  client.set_follow_location(false);
  const std::string timestamp = std::to_string(now / 1000);
  httplib::Headers headers = {
      {"X-Fota-Event", job.delivery.event},
      {"X-Fota-Delivery", job.delivery.id},
      {"X-Fota-Timestamp", timestamp},
      {"X-Fota-Signature", webhook_signature(job.secret, timestamp, job.delivery.body)},
      {"User-Agent", "fota-orchestrator-webhook"},
  };
  auto res = client.Post(path, headers, job.delivery.body, "application/json");
  if (!res) {
    std::string why = httplib::to_string(res.error());
    if (https) {
      if (const auto verify = client.get_openssl_verify_result(); verify != 0)
        why += " (certificate verification: " + std::string(X509_verify_cert_error_string(verify)) + ")";
    }
    return {0, "POST " + job.url + ": " + why};
  }
  if (res->status >= 200 && res->status < 300) return {res->status, ""};
  return {res->status, "POST " + job.url + ": the receiver answered " + std::to_string(res->status) + " " +
                           res->body.substr(0, 200)};
}

WebhookSender::WebhookSender(OrchestratorService& service, std::function<Millis()> clock,
                             std::shared_ptr<spdlog::logger> log)
    : service_(service), clock_(std::move(clock)), log_(std::move(log)) {}

WebhookSender::~WebhookSender() { stop(); }

void WebhookSender::start() {
  for (int i = 0; i < service_.webhook_options().workers; ++i) threads_.emplace_back([this] { run(); });
}

void WebhookSender::stop() {
  stop_ = true;
  service_.stop_webhooks();
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
  threads_.clear();
}

void WebhookSender::run() {
  while (!stop_) {
    auto jobs = service_.take_webhook_jobs(clock_(), 1);
    if (jobs.empty()) {
      // Retries come due with time: look again at least every second.
      service_.wait_for_webhook_work(std::chrono::seconds(1));
      continue;
    }
    for (const WebhookJob& job : jobs) {
      const WebhookAttempt attempt = send_webhook(job, service_.webhook_options().timeout_ms, clock_());
      if (!attempt.error.empty()) log_->info("webhook delivery {}: {}", job.delivery.id, attempt.error);
      service_.finish_webhook_job(job, attempt.status, attempt.error, clock_());
    }
  }
}

}  // namespace fota::orchestrator

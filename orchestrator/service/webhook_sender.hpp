// SPDX-License-Identifier: Apache-2.0
// Sends the webhook outbox (docs/ORCHESTRATOR.md, "Webhooks"): a few threads of their own take the
// due deliveries from the service, POST each, signed, with timeouts, and report the result, so a
// slow or dead receiver holds up neither the rollout loop nor MQTT nor the API.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include <spdlog/spdlog.h>

#include "orchestrator_service.hpp"

namespace fota::orchestrator {

// The result of one attempt: the receiver's status (0 = no answer) and what went wrong.
struct WebhookAttempt {
  int status = 0;
  std::string error;
};

// POSTs one delivery: the body as JSON with X-Fota-Event, X-Fota-Delivery, X-Fota-Timestamp (Unix
// seconds) and X-Fota-Signature (webhook_signature over timestamp and body); https verified against
// the job's CA file, else the system's CAs. `timeout_ms` bounds connecting, sending and reading.
WebhookAttempt send_webhook(const WebhookJob& job, Millis timeout_ms, Millis now);

class WebhookSender {
 public:
  WebhookSender(OrchestratorService& service, std::function<Millis()> clock,
                std::shared_ptr<spdlog::logger> log);
  ~WebhookSender();  // stop()
  void start();      // options.webhooks.workers threads
  void stop();       // lets the attempts under way end (bounded by the timeout), then joins

 private:
  void run();

  OrchestratorService& service_;
  std::function<Millis()> clock_;
  std::shared_ptr<spdlog::logger> log_;
  std::atomic<bool> stop_{false};
  std::vector<std::thread> threads_;
};

}  // namespace fota::orchestrator

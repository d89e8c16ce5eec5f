// SPDX-License-Identifier: Apache-2.0
// The service's MQTT adapter: Paho MQTT C++ v5 over mutual TLS with the orchestrator-role
// certificate, shared subscriptions for every device channel it consumes.
#pragma once

#include <memory>
#include <string>

#include <spdlog/spdlog.h>

#include "config.hpp"
#include "orchestrator_service.hpp"

namespace fota::orchestrator {

class MqttLink final : public Publisher {
 public:
  MqttLink(const ServiceConfig& config, const common::TopicScheme& topics, OrchestratorService& service,
           std::shared_ptr<spdlog::logger> logger);
  ~MqttLink() override;
  // Connects (and subscribes; re-subscribes after every automatic reconnect).
  common::Status connect(std::chrono::milliseconds timeout);
  void disconnect();
  void publish(const std::string& topic, const std::string& payload, int qos,
               std::uint32_t expiry_seconds) override;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace fota::orchestrator

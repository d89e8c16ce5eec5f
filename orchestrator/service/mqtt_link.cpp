#include "mqtt_link.hpp"

#include <mqtt/async_client.h>

namespace fota::orchestrator {

using common::Channel;
using common::Errc;
using common::Error;

struct MqttLink::Impl {
  Impl(const ServiceConfig& c, const common::TopicScheme& t, OrchestratorService& s,
       std::shared_ptr<spdlog::logger> l)
      // MQTT 5 create options: without them a v5 connect fails.
      : config(c),
        topics(t),
        service(s),
        log(std::move(l)),
        client(c.broker_uri, c.client_id, mqtt::create_options(MQTTVERSION_5)) {}

  void subscribe_all() {
    for (Channel ch : {Channel::kInventory, Channel::kProgress, Channel::kLog, Channel::kPresence,
                       Channel::kChunkRequest}) {
      const std::string filter = topics.shared_filter(ch);
      try {
        client.subscribe(filter, 1);
      } catch (const mqtt::exception& e) {
        log->error("subscribe {} failed: {}", filter, e.what());
      }
    }
  }

  ServiceConfig config;
  common::TopicScheme topics;
  OrchestratorService& service;
  std::shared_ptr<spdlog::logger> log;
  mqtt::async_client client;
};

MqttLink::MqttLink(const ServiceConfig& config, const common::TopicScheme& topics,
                   OrchestratorService& service, std::shared_ptr<spdlog::logger> logger)
    : impl_(std::make_unique<Impl>(config, topics, service, std::move(logger))) {
  Impl* impl = impl_.get();
  impl_->client.set_message_callback([impl](mqtt::const_message_ptr msg) {
    // Paho's thread: hand over without blocking (the service queues it).
    impl->service.on_message(msg->get_topic(), msg->get_payload_str());
  });
  impl_->client.set_connected_handler([impl](const std::string&) {
    impl->log->info("connected to {}", impl->config.broker_uri);
    impl->subscribe_all();
  });
  impl_->client.set_connection_lost_handler([impl](const std::string& cause) {
    impl->log->warn("connection to the broker lost ({}); reconnecting",
                    cause.empty() ? "no reason given" : cause);
  });
}

MqttLink::~MqttLink() {
  disconnect();
  impl_->client.disable_callbacks();
}

common::Status MqttLink::connect(std::chrono::milliseconds timeout) {
  auto ssl = mqtt::ssl_options_builder()
                 .trust_store(impl_->config.ca_cert.string())
                 .key_store(impl_->config.cert.string())
                 .private_key(impl_->config.key.string())
                 .enable_server_cert_auth(true)
                 .verify(true)
                 .finalize();
  auto options = mqtt::connect_options_builder()
                     .mqtt_version(MQTTVERSION_5)
                     .clean_start(true)
                     .keep_alive_interval(std::chrono::seconds(30))
                     .connect_timeout(timeout)
                     .automatic_reconnect(std::chrono::seconds(1), std::chrono::seconds(30))
                     .ssl(std::move(ssl))
                     .finalize();
  try {
    auto token = impl_->client.connect(options);
    if (!token->wait_for(timeout + std::chrono::seconds(1))) {
      return Error(Errc::kUnavailable, "no answer from the broker at " + impl_->config.broker_uri +
                                           " within " + std::to_string(timeout.count()) + " ms");
    }
  } catch (const mqtt::exception& e) {
    return Error(Errc::kUnavailable, "cannot connect to the broker at " + impl_->config.broker_uri + ": " +
                                         e.what() +
                                         "; check broker.uri, and that broker.cert is an orchestrator-role "
                                         "certificate from the fleet CA in broker.ca");
  }
  return common::ok_status();
}

void MqttLink::disconnect() {
  try {
    if (impl_->client.is_connected()) impl_->client.disconnect()->wait_for(std::chrono::seconds(2));
  } catch (const mqtt::exception&) {
    // Already gone.
  }
}

void MqttLink::publish(const std::string& topic, const std::string& payload, int qos) {
  try {
    impl_->client.publish(topic, payload.data(), payload.size(), qos, false);
  } catch (const mqtt::exception& e) {
    // Level-triggered dispatch repairs a lost command on the device's next report.
    impl_->log->warn("publish to {} failed: {}", topic, e.what());
  }
}

}  // namespace fota::orchestrator

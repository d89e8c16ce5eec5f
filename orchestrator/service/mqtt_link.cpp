// SPDX-License-Identifier: Apache-2.0
#include "mqtt_link.hpp"

#include <algorithm>
#include <condition_variable>
#include <mutex>

#include <mqtt/async_client.h>

namespace fota::orchestrator {

using common::Channel;
using common::Errc;
using common::Error;

namespace {
// Publishes handed to Paho and not yet acknowledged (PUBACK for QoS 1). Paho refuses a publish
// once more than its max_buffered_messages are queued, so publish() waits below a window instead
// of losing the message. The window is this or the broker's Receive Maximum (CONNACK), whichever
// is smaller (mosquitto's default is 20). Paho C before 1.3.14 (Debian 12 has 1.3.12) does not
// wake its send thread when an acknowledgement frees a slot of the broker's window, so a publish
// queued inside Paho beyond that window waits for the thread's 1 s timeout: install commands of
// one wave went out in two bursts a second apart (fota-sim's happy-path and power-loss), and
// 128 or 1,024 in flight served chunks at a third or a tenth of the rate 32 did.
constexpr std::size_t kMaxPublishesInFlight = 32;
constexpr int kMaxBufferedMessages = 4 * static_cast<int>(kMaxPublishesInFlight);
// A lost connection re-opens the window (reset_slots). While connected, acknowledgements are
// waited for this long before the window is re-opened regardless: a broker busy with a reconnect
// storm can take seconds, and re-opening early (it was 2 s) let publishes pile up past Paho's
// buffer, which then refused install commands (fota-sim's fleet-10k lost 487 of 8,000).
constexpr auto kInFlightWait = std::chrono::seconds(30);
// Marks the retained-inventory snapshot subscription (see subscribe_all).
constexpr int kSnapshotSubscription = 1;
}  // namespace

struct MqttLink::Impl {
  Impl(const ServiceConfig& c, const common::TopicScheme& t, OrchestratorService& s,
       std::shared_ptr<spdlog::logger> l)
      // MQTT 5 create options: without them a v5 connect fails.
      : config(c),
        topics(t),
        service(s),
        log(std::move(l)),
        delivered(*this),
        client(c.broker_uri, c.client_id,
               mqtt::create_options_builder()
                   .mqtt_version(MQTTVERSION_5)
                   .max_buffered_messages(kMaxBufferedMessages)
                   .finalize()) {}

  void subscribe_all() {
    for (Channel ch : {Channel::kInventory, Channel::kProgress, Channel::kLog, Channel::kPresence,
                       Channel::kChunkRequest, Channel::kCertificateRequest}) {
      const std::string filter = topics.shared_filter(ch);
      try {
        client.subscribe(filter, 1);
      } catch (const mqtt::exception& e) {
        log->error("subscribe {} failed: {}", filter, e.what());
      }
    }
    // Brokers send no retained messages on shared subscriptions (MQTT 5; mosquitto 2.0 included),
    // yet the retained inventories are what repairs, after a restart, commands and reports lost
    // while the orchestrator was away. A plain subscription marked with a subscription identifier
    // fetches that snapshot; its live copies (not retained) are dropped in on_message below,
    // because the shared subscription delivers them too.
    const std::string snapshot = topics.all_devices_filter(Channel::kInventory);
    try {
      client.subscribe(snapshot, 1, mqtt::subscribe_options(),
                       mqtt::properties{{mqtt::property::SUBSCRIPTION_IDENTIFIER, kSnapshotSubscription}});
    } catch (const mqtt::exception& e) {
      log->warn("subscribe {} failed: {}; lost commands are repaired when devices reconnect", snapshot,
                e.what());
    }
  }

  static bool is_snapshot_duplicate(const mqtt::const_message_ptr& msg) {
    const auto& props = msg->get_properties();
    if (msg->is_retained() || !props.contains(mqtt::property::SUBSCRIPTION_IDENTIFIER)) return false;
    return mqtt::get<int>(props, mqtt::property::SUBSCRIPTION_IDENTIFIER) == kSnapshotSubscription;
  }

  // Flow control of publishes (see kMaxPublishesInFlight).
  bool acquire_slot() {
    std::unique_lock lock(flow_mutex);
    if (!flow_cv.wait_for(lock, kInFlightWait, [&] { return in_flight < window; })) {
      log->warn("{} publishes unacknowledged for {} s; re-opening the window", in_flight,
                std::chrono::duration_cast<std::chrono::seconds>(kInFlightWait).count());
      in_flight = 0;
    }
    ++in_flight;
    return true;
  }
  void release_slot() {
    {
      std::lock_guard lock(flow_mutex);
      if (in_flight > 0) --in_flight;
    }
    flow_cv.notify_one();
  }
  // The broker's Receive Maximum bounds the window (absent: 65,535, no bound below ours). Read at
  // the first connect; a reconnect goes to the same broker.
  void fit_window(const mqtt::properties& connack) {
    std::size_t receive_maximum = 65535;
    if (connack.contains(mqtt::property::RECEIVE_MAXIMUM))
      receive_maximum = mqtt::get<std::uint16_t>(connack, mqtt::property::RECEIVE_MAXIMUM);
    const std::size_t fitted = std::clamp<std::size_t>(receive_maximum, 1, kMaxPublishesInFlight);
    {
      std::lock_guard lock(flow_mutex);
      window = fitted;
    }
    log->info("broker receive maximum {}: at most {} publishes in flight", receive_maximum, fitted);
    flow_cv.notify_all();
  }
  void reset_slots() {
    {
      std::lock_guard lock(flow_mutex);
      in_flight = 0;
    }
    flow_cv.notify_all();
  }

  // Paho's thread: completion of one publish (acknowledged, or given up).
  struct Delivered final : mqtt::iaction_listener {
    explicit Delivered(Impl& i) : impl(i) {}
    void on_success(const mqtt::token&) override { impl.release_slot(); }
    void on_failure(const mqtt::token&) override { impl.release_slot(); }
    Impl& impl;
  };

  ServiceConfig config;
  common::TopicScheme topics;
  OrchestratorService& service;
  std::shared_ptr<spdlog::logger> log;
  std::mutex flow_mutex;
  std::condition_variable flow_cv;
  std::size_t in_flight = 0;
  std::size_t window = kMaxPublishesInFlight;  // guarded by flow_mutex
  Delivered delivered;  // declared before the client: it must outlive the client's callbacks
  mqtt::async_client client;
};

MqttLink::MqttLink(const ServiceConfig& config, const common::TopicScheme& topics,
                   OrchestratorService& service, std::shared_ptr<spdlog::logger> logger)
    : impl_(std::make_unique<Impl>(config, topics, service, std::move(logger))) {
  Impl* impl = impl_.get();
  impl_->client.set_message_callback([impl](mqtt::const_message_ptr msg) {
    // Paho's thread: hand over without blocking (the service queues it).
    if (Impl::is_snapshot_duplicate(msg)) return;
    impl->service.on_message(msg->get_topic(), msg->get_payload_str());
  });
  impl_->client.set_connected_handler([impl](const std::string&) {
    impl->log->info("connected to {}", impl->config.broker_uri);
    impl->reset_slots();  // a clean start: nothing of the old session is in flight
    impl->subscribe_all();
  });
  impl_->client.set_connection_lost_handler([impl](const std::string& cause) {
    impl->log->warn("connection to the broker lost ({}); reconnecting",
                    cause.empty() ? "no reason given" : cause);
    impl->reset_slots();
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
    impl_->fit_window(token->get_connect_response().get_properties());
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

void MqttLink::publish(const std::string& topic, const std::string& payload, int qos,
                       std::uint32_t expiry_seconds) {
  // Never called on Paho's thread: this may wait for acknowledgements, which that thread reads.
  if (!impl_->client.is_connected()) {
    // Level-triggered dispatch repairs a lost command on the device's next report; a device
    // re-requests a chunk it did not get.
    impl_->log->debug("not connected; dropping publish to {}", topic);
    return;
  }
  impl_->acquire_slot();
  try {
    auto message = mqtt::make_message(topic, payload.data(), payload.size(), qos, false);
    if (expiry_seconds > 0) {
      mqtt::properties properties;
      properties.add(
          mqtt::property(mqtt::property::MESSAGE_EXPIRY_INTERVAL, static_cast<int>(expiry_seconds)));
      message->set_properties(std::move(properties));
    }
    impl_->client.publish(std::move(message), nullptr, impl_->delivered);
  } catch (const mqtt::exception& e) {
    impl_->release_slot();
    impl_->log->warn("publish to {} failed: {}", topic, e.what());
  }
}

}  // namespace fota::orchestrator

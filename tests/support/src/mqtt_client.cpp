// SPDX-License-Identifier: Apache-2.0
#include <condition_variable>
#include <deque>
#include <mutex>

#include <mqtt/async_client.h>

#include "fota/testing/broker.hpp"

namespace fota::testing {

using common::Errc;
using common::Error;

struct TestMqttClient::Impl : public virtual mqtt::callback {
  Impl(const std::string& uri, const std::string& client_id)
      : client(uri, client_id, mqtt::create_options(MQTTVERSION_5)) {}

  void message_arrived(mqtt::const_message_ptr msg) override {
    std::lock_guard lock(mutex);
    const auto& properties = msg->get_properties();
    const std::uint32_t expiry =
        properties.contains(mqtt::property::MESSAGE_EXPIRY_INTERVAL)
            ? mqtt::get<std::uint32_t>(properties, mqtt::property::MESSAGE_EXPIRY_INTERVAL)
            : 0;
    messages.push_back(
        TestMessage{msg->get_topic(), msg->get_payload_str(), msg->is_retained(), expiry, msg->get_qos()});
    cv.notify_all();
  }
  void connection_lost(const std::string& /*cause*/) override {
    std::lock_guard lock(mutex);
    lost = true;
    cv.notify_all();
  }

  mqtt::async_client client;
  Identity identity;
  std::mutex mutex;
  std::condition_variable cv;
  std::deque<TestMessage> messages;
  bool lost = false;
};

TestMqttClient::TestMqttClient(std::string uri, std::string client_id, Identity identity)
    : impl_(std::make_unique<Impl>(uri, client_id)) {
  impl_->identity = std::move(identity);
  impl_->client.set_callback(*impl_);
}

TestMqttClient::~TestMqttClient() {
  disconnect();
  impl_->client.disable_callbacks();
}

common::Status TestMqttClient::connect(std::chrono::milliseconds timeout) {
  auto ssl = mqtt::ssl_options_builder()
                 .trust_store(impl_->identity.ca.string())
                 .enable_server_cert_auth(true)
                 .verify(true)
                 .finalize();
  if (impl_->identity.cert) {
    ssl.set_key_store(impl_->identity.cert->cert.string());
    ssl.set_private_key(impl_->identity.cert->key.string());
  }
  auto options = mqtt::connect_options_builder()
                     .mqtt_version(MQTTVERSION_5)
                     .clean_start(true)
                     .connect_timeout(timeout)
                     .ssl(std::move(ssl))
                     .finalize();
  try {
    auto token = impl_->client.connect(options);
    if (!token->wait_for(timeout + std::chrono::seconds(1)))
      return Error(Errc::kUnavailable, "connect timed out");
    {
      std::lock_guard lock(impl_->mutex);
      impl_->lost = false;
    }
    return common::ok_status();
  } catch (const mqtt::exception& e) {
    return Error(Errc::kPermissionDenied, std::string("connect refused: ") + e.what() + " (reason code " +
                                              std::to_string(e.get_reason_code()) + ")");
  }
}

void TestMqttClient::disconnect() {
  try {
    if (impl_->client.is_connected()) impl_->client.disconnect()->wait_for(std::chrono::seconds(2));
  } catch (const mqtt::exception&) {
    // already gone
  }
}

bool TestMqttClient::connected() const { return impl_->client.is_connected(); }

common::Result<int> TestMqttClient::subscribe(const std::string& filter, int qos) {
  try {
    auto token = impl_->client.subscribe(filter, qos);
    if (!token->wait_for(std::chrono::seconds(5))) return Error(Errc::kUnavailable, "no SUBACK within 5 s");
    const auto response = token->get_subscribe_response();
    const auto& codes = response.get_reason_codes();
    return codes.empty() ? 0 : static_cast<int>(codes.front());
  } catch (const mqtt::exception& e) {
    if (e.get_reason_code() >= 0x80) return e.get_reason_code();
    return Error(Errc::kUnavailable, std::string("subscribe failed: ") + e.what());
  }
}

common::Result<int> TestMqttClient::publish(const std::string& topic, const std::string& payload, int qos,
                                            bool retain) {
  try {
    auto token = impl_->client.publish(topic, payload.data(), payload.size(), qos, retain);
    if (!token->wait_for(std::chrono::seconds(5))) return Error(Errc::kUnavailable, "no PUBACK within 5 s");
    return static_cast<int>(token->get_reason_code());
  } catch (const mqtt::exception& e) {
    if (e.get_reason_code() >= 0x80) return e.get_reason_code();
    return Error(Errc::kUnavailable, std::string("publish failed: ") + e.what());
  }
}

std::optional<TestMessage> TestMqttClient::wait_message(std::chrono::milliseconds timeout) {
  std::unique_lock lock(impl_->mutex);
  if (!impl_->cv.wait_for(lock, timeout, [&] { return !impl_->messages.empty(); })) return std::nullopt;
  TestMessage msg = std::move(impl_->messages.front());
  impl_->messages.pop_front();
  return msg;
}

bool TestMqttClient::wait_disconnected(std::chrono::milliseconds timeout) {
  std::unique_lock lock(impl_->mutex);
  return impl_->cv.wait_for(lock, timeout, [&] { return impl_->lost; });
}

}  // namespace fota::testing

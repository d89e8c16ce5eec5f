// SPDX-License-Identifier: Apache-2.0
// Over a real mosquitto: who may connect over mutual TLS.
#include <gtest/gtest.h>

#include "fota/testing/broker.hpp"

namespace fota::testing {
namespace {

using common::Role;

class MutualTlsTest : public ::testing::Test {
 protected:
  TempDir dir_;
  TestPki pki_{dir_.path()};
  MosquittoBroker broker_{pki_, dir_.path() / "broker"};
};

TEST_F(MutualTlsTest, DeviceCertificateConnects) {
  TestMqttClient client(broker_.uri(), "dev-1", {pki_.ca_cert(), pki_.issue(Role::kDevice, "dev-1")});
  auto st = client.connect();
  ASSERT_TRUE(st.ok()) << st.error().message << "\n" << broker_.log();
  EXPECT_TRUE(client.connected());
  ASSERT_EQ(client.subscribe("fota/v1/dev/dev-1/cmd").value(), 1);
  ASSERT_EQ(client.publish("fota/v1/dev/dev-1/cmd", "hello").value(), 0);
  auto msg = client.wait_message();
  ASSERT_TRUE(msg.has_value());
  EXPECT_EQ(msg->payload, "hello");
}

TEST_F(MutualTlsTest, NoCertificateIsRefused) {
  TestMqttClient client(broker_.uri(), "dev-1", {pki_.ca_cert(), std::nullopt});
  EXPECT_FALSE(client.connect(std::chrono::seconds(3)).ok());
  EXPECT_FALSE(client.connected());
}

TEST_F(MutualTlsTest, CertificateFromAnotherCaIsRefused) {
  TempDir other_dir;
  TestPki other(other_dir.path());
  TestMqttClient client(broker_.uri(), "dev-1", {pki_.ca_cert(), other.issue(Role::kDevice, "dev-1")});
  EXPECT_FALSE(client.connect(std::chrono::seconds(3)).ok());
}

TEST_F(MutualTlsTest, ExpiredCertificateIsRefused) {
  common::IssueOptions options;
  options.common_name = "dev-old";
  options.not_before = -std::chrono::hours(48);
  options.not_after = -std::chrono::hours(24);
  auto files = pki_.issue_custom(options, "expired");
  TestMqttClient client(broker_.uri(), "dev-old", {pki_.ca_cert(), files});
  EXPECT_FALSE(client.connect(std::chrono::seconds(3)).ok());
}

TEST_F(MutualTlsTest, BrokerRestartKeepsPort) {
  const int port = broker_.port();
  broker_.stop();
  EXPECT_FALSE(broker_.running());
  broker_.start();
  EXPECT_EQ(broker_.port(), port);
  TestMqttClient client(broker_.uri(), "dev-2", {pki_.ca_cert(), pki_.issue(Role::kDevice, "dev-2")});
  EXPECT_TRUE(client.connect().ok());
}

}  // namespace
}  // namespace fota::testing

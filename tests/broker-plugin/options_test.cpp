// SPDX-License-Identifier: Apache-2.0
#include "fota/plugin/options.hpp"

#include <gtest/gtest.h>

namespace fota::plugin {
namespace {

TEST(PluginOptions, DefaultsWhenNothingIsSet) {
  auto options = parse_plugin_options({});
  ASSERT_TRUE(options) << options.error().to_string();
  EXPECT_EQ(options->scheme.prefix(), "fota/v1");
  EXPECT_FALSE(options->artifact_dir);
  EXPECT_FALSE(options->deny_list);
  EXPECT_EQ(options->max_chunks_per_request, 64u);
  EXPECT_EQ(options->chunk_qos, 1);
}

TEST(PluginOptions, ParsesEveryKey) {
  auto options = parse_plugin_options({{"topic_prefix", "acme/fota"},
                                       {"artifact_dir", "/var/lib/fota/artifacts"},
                                       {"deny_list", "/etc/fota/deny.txt"},
                                       {"device_msgs_per_second", "2.5"},
                                       {"device_msg_burst", "10"},
                                       {"device_bytes_per_second", "1000"},
                                       {"device_byte_burst", "5000"},
                                       {"device_chunk_bytes_per_second", "0"},
                                       {"device_chunk_byte_burst", "2000000"},
                                       {"abuse_refusals", "7"},
                                       {"abuse_window_seconds", "1.5"},
                                       {"abuser_ban_seconds", "0"},
                                       {"max_chunks_per_request", "16"},
                                       {"chunk_qos", "0"},
                                       {"stats_interval_seconds", "0.25"},
                                       {"log_level", "debug"}});
  ASSERT_TRUE(options) << options.error().to_string();
  EXPECT_EQ(options->scheme.prefix(), "acme/fota");
  EXPECT_EQ(options->artifact_dir->string(), "/var/lib/fota/artifacts");
  EXPECT_EQ(options->deny_list->string(), "/etc/fota/deny.txt");
  EXPECT_DOUBLE_EQ(options->device_messages.per_second, 2.5);
  EXPECT_DOUBLE_EQ(options->device_messages.burst, 10);
  EXPECT_DOUBLE_EQ(options->device_bytes.per_second, 1000);
  EXPECT_DOUBLE_EQ(options->device_bytes.burst, 5000);
  EXPECT_TRUE(options->device_chunk_bytes.unlimited());
  EXPECT_EQ(options->abuse_refusals, 7u);
  EXPECT_EQ(options->abuse_window_ms, 1500);
  EXPECT_EQ(options->abuser_ban_ms, 0);
  EXPECT_EQ(options->max_chunks_per_request, 16u);
  EXPECT_EQ(options->chunk_qos, 0);
  EXPECT_EQ(options->stats_interval_ms, 250);
  EXPECT_EQ(options->log_level, "debug");
}

TEST(PluginOptions, UnknownKeyIsRefusedAndKnownKeysAreListed) {
  auto options = parse_plugin_options({{"max_chunk_per_request", "8"}});
  ASSERT_FALSE(options);
  EXPECT_NE(options.error().message.find("unknown option plugin_opt_max_chunk_per_request"),
            std::string::npos);
  EXPECT_NE(options.error().message.find("max_chunks_per_request"), std::string::npos);
}

struct BadValue {
  const char* key;
  const char* value;
};

class PluginOptionsBadValue : public ::testing::TestWithParam<BadValue> {};

TEST_P(PluginOptionsBadValue, IsRefusedNamingKeyAndValue) {
  auto options = parse_plugin_options({{GetParam().key, GetParam().value}});
  ASSERT_FALSE(options);
  EXPECT_NE(options.error().message.find(std::string("plugin_opt_") + GetParam().key), std::string::npos)
      << options.error().message;
  EXPECT_NE(options.error().message.find("expected"), std::string::npos) << options.error().message;
}

INSTANTIATE_TEST_SUITE_P(
    Values, PluginOptionsBadValue,
    ::testing::Values(BadValue{"topic_prefix", "fota/#"}, BadValue{"topic_prefix", "/fota"},
                      BadValue{"artifact_dir", ""}, BadValue{"device_msgs_per_second", "fast"},
                      BadValue{"device_msgs_per_second", "-1"}, BadValue{"device_msg_burst", "0"},
                      BadValue{"device_msg_burst", "1e999"}, BadValue{"device_chunk_byte_burst", "100"},
                      BadValue{"abuse_refusals", "0"}, BadValue{"abuse_refusals", "3.5"},
                      BadValue{"abuse_window_seconds", "0"}, BadValue{"max_chunks_per_request", "100000"},
                      BadValue{"chunk_qos", "2"}, BadValue{"log_level", "loud"},
                      BadValue{"edge_brokers", "edge-1,,edge-2"}, BadValue{"edge_brokers", "edge/1"},
                      BadValue{"bridge_client_id", "a/b"}, BadValue{"upstream_url", "http://127.0.0.1:8443"},
                      BadValue{"upstream_url", "https://"}));

TEST(PluginOptions, EdgeOptionsParseAndACacheFillNeedsAllItsParts) {
  auto options = parse_plugin_options({{"edge_brokers", "edge-1,edge-2"}});
  ASSERT_TRUE(options) << options.error().message;
  EXPECT_EQ(options->edge_brokers, (std::vector<std::string>{"edge-1", "edge-2"}));
  options =
      parse_plugin_options({{"upstream_url", "https://127.0.0.1:8443"}, {"artifact_dir", "/var/cache/fota"}});
  ASSERT_FALSE(options);
  for (const char* missing : {"plugin_opt_upstream_ca", "plugin_opt_upstream_cert", "plugin_opt_upstream_key",
                              "plugin_opt_trusted_keys", "plugin_opt_bridge_client_id"}) {
    EXPECT_NE(options.error().message.find(missing), std::string::npos) << options.error().message;
  }
  EXPECT_EQ(options.error().message.find("plugin_opt_artifact_dir"), std::string::npos)
      << options.error().message;
  options = parse_plugin_options({{"upstream_url", "https://127.0.0.1:8443"},
                                  {"upstream_ca", "/ca.crt"},
                                  {"upstream_cert", "/edge.crt"},
                                  {"upstream_key", "/edge.key"},
                                  {"trusted_keys", "/keys"},
                                  {"artifact_dir", "/cache"},
                                  {"bridge_client_id", "bridge.edge-1"},
                                  {"upstream_retry_seconds", "5"}});
  ASSERT_TRUE(options) << options.error().message;
  ASSERT_TRUE(options->upstream.has_value());
  EXPECT_EQ(options->upstream->url, "https://127.0.0.1:8443");
  EXPECT_EQ(options->upstream->retry_ms, 5000);
}

}  // namespace
}  // namespace fota::plugin

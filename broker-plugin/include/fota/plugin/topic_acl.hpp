// SPDX-License-Identifier: Apache-2.0
// Which topics each role may publish to, subscribe to and receive. Pure functions of the
// topic scheme; the table is in docs/BROKER_PLUGIN.md.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "fota/common/pki.hpp"
#include "fota/common/topics.hpp"

namespace fota::plugin {

// A concrete device topic split into its parts, pointing into the topic string.
struct DeviceTopicView {
  std::string_view device;
  common::Channel channel;
};

class TopicAcl {
 public:
  explicit TopicAcl(common::TopicScheme scheme);

  const common::TopicScheme& scheme() const noexcept { return scheme_; }

  // The channel a client with this identity may publish `topic` on, or nullopt when it may
  // not. Payload checks come on top (BrokerPolicy).
  std::optional<common::ParsedTopic> publishable(common::Role role, std::string_view common_name,
                                                 std::string_view topic) const;
  // Whether the client may subscribe with `filter` (wildcards and $share/ included).
  bool may_subscribe(common::Role role, std::string_view common_name, std::string_view filter) const;
  // Whether a message on the concrete `topic` may be delivered to the client.
  bool may_receive(common::Role role, std::string_view common_name, std::string_view topic) const;

  // The same result as TopicScheme::parse but without allocating: this runs for every
  // message the broker receives and every delivery.
  std::optional<DeviceTopicView> split(std::string_view topic) const;

 private:
  // The channel a filter `{p}/dev/<id or +>/<literal channel>` can only match, else nullopt.
  std::optional<common::Channel> filter_channel(std::string_view filter) const;
  bool is_report_filter(std::string_view filter) const;
  // `{p}/dev/<id or +>/cmd` or `.../chunk`: what an edge broker's bridge subscribes to.
  bool is_delivery_filter(std::string_view filter) const;
  bool is_device_readable(std::string_view common_name, std::string_view topic) const;

  common::TopicScheme scheme_;
  std::string dev_root_;  // "{prefix}/dev/"
  std::string stats_topic_;
};

// Device -> orchestrator channels (what reports are made of, chunk requests included).
bool is_report_channel(common::Channel channel) noexcept;

}  // namespace fota::plugin

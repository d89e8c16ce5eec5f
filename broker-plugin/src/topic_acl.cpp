// SPDX-License-Identifier: Apache-2.0
#include "fota/plugin/topic_acl.hpp"

#include <string>

namespace fota::plugin {

using common::Channel;
using common::Role;

namespace {

constexpr std::string_view kSharePrefix = "$share/";

// "$share/<group>/<filter>" -> "<filter>"; other filters unchanged; nullopt when the share
// syntax is broken (the broker refuses those anyway).
std::optional<std::string_view> strip_share(std::string_view filter) {
  if (filter.substr(0, kSharePrefix.size()) != kSharePrefix) return filter;
  std::string_view rest = filter.substr(kSharePrefix.size());
  const auto slash = rest.find('/');
  if (slash == 0 || slash == std::string_view::npos) return std::nullopt;
  const std::string_view group = rest.substr(0, slash);
  if (group.find_first_of("+#") != std::string_view::npos) return std::nullopt;
  return rest.substr(slash + 1);
}

bool is_device_id(std::string_view id) noexcept {
  if (id.empty() || id.size() > common::DeviceId::kMaxLength) return false;
  const auto alnum = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
  };
  if (!alnum(id.front())) return false;
  for (char c : id) {
    if (!alnum(c) && c != '.' && c != '_' && c != '-') return false;
  }
  return true;
}

}  // namespace

bool is_report_channel(Channel channel) noexcept { return common::device_publishes(channel); }

TopicAcl::TopicAcl(common::TopicScheme scheme)
    : scheme_(std::move(scheme)),
      dev_root_(scheme_.prefix() + "/dev/"),
      stats_topic_(scheme_.broker_stats_topic()) {}

std::optional<DeviceTopicView> TopicAcl::split(std::string_view topic) const {
  if (topic.size() <= dev_root_.size() || topic.compare(0, dev_root_.size(), dev_root_) != 0)
    return std::nullopt;
  const std::string_view rest = topic.substr(dev_root_.size());
  const auto slash = rest.find('/');
  if (slash == std::string_view::npos) return std::nullopt;
  const std::string_view id = rest.substr(0, slash);
  if (!is_device_id(id)) return std::nullopt;
  const std::string_view suffix = rest.substr(slash + 1);
  for (Channel channel : common::kAllChannels) {
    if (suffix == common::channel_suffix(channel)) return DeviceTopicView{id, channel};
  }
  return std::nullopt;
}

std::optional<common::ParsedTopic> TopicAcl::publishable(Role role, std::string_view common_name,
                                                         std::string_view topic) const {
  const auto parts = split(topic);
  if (!parts) return std::nullopt;
  bool allowed = false;
  switch (role) {
    case Role::kDevice:
      // Only its own subtree, only the channels a device writes.
      allowed = parts->device == common_name && common::device_publishes(parts->channel);
      break;
    case Role::kOrchestrator:
      allowed = parts->channel == Channel::kCommand || parts->channel == Channel::kChunk;
      break;
    case Role::kBroker:
      // An edge broker's bridge (admitted only when listed in edge_brokers) relays the reports of
      // the devices behind it; the edge's own plugin checked each device's identity.
      allowed = common::device_publishes(parts->channel);
      break;
    case Role::kObserver:
    case Role::kOperator:
      allowed = false;
      break;
  }
  if (!allowed) return std::nullopt;
  auto device = common::DeviceId::parse(parts->device);
  if (!device) return std::nullopt;
  return common::ParsedTopic{std::move(device).value(), parts->channel};
}

std::optional<Channel> TopicAcl::filter_channel(std::string_view filter) const {
  // The device level may be '+' or one id; the channel part must be literal, so the filter can
  // only ever match topics of that one channel.
  if (filter.substr(0, dev_root_.size()) != dev_root_) return std::nullopt;
  std::string_view rest = filter.substr(dev_root_.size());
  const auto slash = rest.find('/');
  if (slash == std::string_view::npos) return std::nullopt;
  const std::string_view id_level = rest.substr(0, slash);
  const std::string_view suffix = rest.substr(slash + 1);
  if (suffix.find_first_of("+#") != std::string_view::npos) return std::nullopt;
  if (id_level != "+" && !is_device_id(id_level)) return std::nullopt;
  for (Channel channel : common::kAllChannels) {
    if (suffix == common::channel_suffix(channel)) return channel;
  }
  return std::nullopt;
}

bool TopicAcl::is_report_filter(std::string_view filter) const {
  if (filter == stats_topic_) return true;
  const auto channel = filter_channel(filter);
  return channel && is_report_channel(*channel);
}

bool TopicAcl::may_subscribe(Role role, std::string_view common_name, std::string_view filter) const {
  switch (role) {
    case Role::kDevice:
      // Exact own topics only: any wildcard either reaches other devices or the device's own
      // report topics, and a device never needs a shared subscription.
      return is_device_readable(common_name, filter);
    case Role::kOrchestrator:
    case Role::kObserver: {
      auto inner = strip_share(filter);
      return inner && is_report_filter(*inner);
    }
    case Role::kBroker:
      // An edge broker's bridge: the commands and chunks of any device (it forwards each to the
      // one device behind it that may read it); never reports, never a shared subscription.
      return is_delivery_filter(filter);
    case Role::kOperator:
      return false;
  }
  return false;
}

bool TopicAcl::is_delivery_filter(std::string_view filter) const {
  const auto channel = filter_channel(filter);
  return channel && (*channel == Channel::kCommand || *channel == Channel::kChunk);
}

bool TopicAcl::is_device_readable(std::string_view common_name, std::string_view topic) const {
  const auto parts = split(topic);
  return parts && parts->device == common_name &&
         (parts->channel == Channel::kCommand || parts->channel == Channel::kChunk);
}

bool TopicAcl::may_receive(Role role, std::string_view common_name, std::string_view topic) const {
  switch (role) {
    case Role::kDevice:
      return is_device_readable(common_name, topic);
    case Role::kOrchestrator:
    case Role::kObserver: {
      if (topic == stats_topic_) return true;
      const auto parts = split(topic);
      return parts && is_report_channel(parts->channel);
    }
    case Role::kBroker: {
      const auto parts = split(topic);
      return parts && (parts->channel == Channel::kCommand || parts->channel == Channel::kChunk);
    }
    case Role::kOperator:
      return false;
  }
  return false;
}

}  // namespace fota::plugin

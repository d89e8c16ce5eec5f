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

}  // namespace

bool is_report_channel(Channel channel) noexcept { return common::device_publishes(channel); }

TopicAcl::TopicAcl(common::TopicScheme scheme)
    : scheme_(std::move(scheme)), stats_topic_(scheme_.broker_stats_topic()) {}

std::optional<common::ParsedTopic> TopicAcl::publishable(Role role, std::string_view common_name,
                                                         std::string_view topic) const {
  auto parsed = scheme_.parse(topic);
  if (!parsed) return std::nullopt;
  switch (role) {
    case Role::kDevice:
      // Only its own subtree, only the channels a device writes.
      if (parsed->device.str() != common_name || !common::device_publishes(parsed->channel))
        return std::nullopt;
      return std::move(parsed).value();
    case Role::kOrchestrator:
      if (parsed->channel != Channel::kCommand && parsed->channel != Channel::kChunk) return std::nullopt;
      return std::move(parsed).value();
    case Role::kObserver:
    case Role::kOperator:
    case Role::kBroker:
      return std::nullopt;
  }
  return std::nullopt;
}

bool TopicAcl::is_report_filter(std::string_view filter) const {
  if (filter == stats_topic_) return true;
  // The device level may be '+' or one id; the channel part must be literal, so the filter
  // can only ever match report topics.
  const std::string dev_root = scheme_.prefix() + "/dev/";
  if (filter.substr(0, dev_root.size()) != dev_root) return false;
  std::string_view rest = filter.substr(dev_root.size());
  const auto slash = rest.find('/');
  if (slash == std::string_view::npos) return false;
  const std::string_view id_level = rest.substr(0, slash);
  const std::string_view suffix = rest.substr(slash + 1);
  if (suffix.find_first_of("+#") != std::string_view::npos) return false;
  if (id_level != "+" && !common::DeviceId::parse(id_level)) return false;
  for (Channel channel : common::kAllChannels) {
    if (suffix == common::channel_suffix(channel)) return is_report_channel(channel);
  }
  return false;
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
    case Role::kOperator:
    case Role::kBroker:
      return false;
  }
  return false;
}

bool TopicAcl::is_device_readable(std::string_view common_name, std::string_view topic) const {
  auto parsed = scheme_.parse(topic);
  return parsed && parsed->device.str() == common_name &&
         (parsed->channel == Channel::kCommand || parsed->channel == Channel::kChunk);
}

bool TopicAcl::may_receive(Role role, std::string_view common_name, std::string_view topic) const {
  switch (role) {
    case Role::kDevice:
      return is_device_readable(common_name, topic);
    case Role::kOrchestrator:
    case Role::kObserver: {
      if (topic == stats_topic_) return true;
      auto parsed = scheme_.parse(topic);
      return parsed && is_report_channel(parsed->channel);
    }
    case Role::kOperator:
    case Role::kBroker:
      return false;
  }
  return false;
}

}  // namespace fota::plugin

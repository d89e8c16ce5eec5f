// SPDX-License-Identifier: Apache-2.0
#include "fota/common/topics.hpp"

#include <array>

namespace fota::common {
namespace {

constexpr std::string_view kDevLevel = "/dev/";

bool is_id_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
         c == '-';
}

bool is_alnum(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'); }

// Printable form of untrusted text for error messages.
std::string quoted(std::string_view text) {
  std::string out = "\"";
  for (char c : text.substr(0, 80)) {
    auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u >= 0x7f || c == '"' || c == '\\') {
      static constexpr char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[u >> 4];
      out += kHex[u & 0xf];
    } else {
      out += c;
    }
  }
  if (text.size() > 80) out += "...";
  return out + "\"";
}

}  // namespace

Result<DeviceId> DeviceId::parse(std::string_view text) {
  if (text.empty()) return Error(Errc::kInvalidArgument, "device id is empty");
  if (text.size() > kMaxLength) {
    return Error(Errc::kInvalidArgument, "device id " + quoted(text) + " is " + std::to_string(text.size()) +
                                             " characters long; the maximum is " +
                                             std::to_string(kMaxLength));
  }
  if (!is_alnum(text.front())) {
    return Error(Errc::kInvalidArgument, "device id " + quoted(text) + " must start with a letter or digit");
  }
  for (char c : text) {
    if (!is_id_char(c)) {
      return Error(Errc::kInvalidArgument,
                   "device id " + quoted(text) +
                       " contains a character outside [A-Za-z0-9._-] (no '/', '+', '#', "
                       "spaces or non-ASCII)");
    }
  }
  return DeviceId(std::string(text));
}

std::string_view channel_suffix(Channel channel) noexcept {
  switch (channel) {
    case Channel::kCommand:
      return "cmd";
    case Channel::kInventory:
      return "inventory";
    case Channel::kProgress:
      return "progress";
    case Channel::kLog:
      return "log";
    case Channel::kPresence:
      return "presence";
    case Channel::kChunkRequest:
      return "chunk/req";
    case Channel::kChunk:
      return "chunk";
    case Channel::kCertificateRequest:
      return "csr";
  }
  return "";
}

bool device_publishes(Channel channel) noexcept {
  switch (channel) {
    case Channel::kInventory:
    case Channel::kProgress:
    case Channel::kLog:
    case Channel::kPresence:
    case Channel::kChunkRequest:
    case Channel::kCertificateRequest:
      return true;
    case Channel::kCommand:
    case Channel::kChunk:
      return false;
  }
  return false;
}

TopicScheme::TopicScheme() : prefix_(kDefaultPrefix) {}

Result<TopicScheme> TopicScheme::create(std::string_view prefix) {
  if (prefix.empty()) return Error(Errc::kInvalidArgument, "topic prefix is empty; use e.g. \"fota/v1\"");
  if (prefix.front() == '/' || prefix.back() == '/' || prefix.front() == '$') {
    return Error(Errc::kInvalidArgument,
                 "topic prefix " + quoted(prefix) + " must not start with '/' or '$' nor end with '/'");
  }
  if (prefix.find("//") != std::string_view::npos) {
    return Error(Errc::kInvalidArgument, "topic prefix " + quoted(prefix) + " has an empty level");
  }
  for (char c : prefix) {
    auto u = static_cast<unsigned char>(c);
    if (c == '+' || c == '#' || u < 0x20 || u >= 0x7f) {
      return Error(Errc::kInvalidArgument,
                   "topic prefix " + quoted(prefix) + " contains a wildcard or a non-printable character");
    }
  }
  return TopicScheme(std::string(prefix));
}

std::string TopicScheme::device_root(const DeviceId& device) const {
  std::string out;
  out.reserve(prefix_.size() + kDevLevel.size() + device.str().size() + 1);
  out.append(prefix_).append(kDevLevel).append(device.str()).append("/");
  return out;
}

std::string TopicScheme::device_topic(const DeviceId& device, Channel channel) const {
  return device_root(device).append(channel_suffix(channel));
}

std::string TopicScheme::all_devices_filter(Channel channel) const {
  return prefix_ + std::string(kDevLevel) + "+/" + std::string(channel_suffix(channel));
}

std::string TopicScheme::shared_filter(Channel channel, std::string_view group) const {
  return "$share/" + std::string(group) + "/" + all_devices_filter(channel);
}

std::string TopicScheme::broker_stats_topic() const { return prefix_ + "/broker/stats"; }

bool TopicScheme::in_namespace(std::string_view topic) const {
  return topic.size() > prefix_.size() && topic.compare(0, prefix_.size(), prefix_) == 0 &&
         topic[prefix_.size()] == '/';
}

Result<ParsedTopic> TopicScheme::parse(std::string_view topic) const {
  const std::string dev_root = prefix_ + std::string(kDevLevel);
  if (topic.size() <= dev_root.size() || topic.compare(0, dev_root.size(), dev_root) != 0) {
    return Error(Errc::kInvalidArgument, "topic " + quoted(topic) + " is not under " + quoted(dev_root));
  }
  std::string_view rest = topic.substr(dev_root.size());
  auto slash = rest.find('/');
  if (slash == std::string_view::npos) {
    return Error(Errc::kInvalidArgument, "topic " + quoted(topic) + " names no channel after the device id");
  }
  auto id = DeviceId::parse(rest.substr(0, slash));
  if (!id) return id.error().with_context("topic " + quoted(topic));
  std::string_view suffix = rest.substr(slash + 1);
  for (Channel channel : kAllChannels) {
    if (suffix == channel_suffix(channel)) return ParsedTopic{std::move(id).value(), channel};
  }
  return Error(Errc::kInvalidArgument, "topic " + quoted(topic) + " has unknown channel " + quoted(suffix));
}

}  // namespace fota::common

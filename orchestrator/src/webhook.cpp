// SPDX-License-Identifier: Apache-2.0
#include "fota/orchestrator/webhook.hpp"

#include <algorithm>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <nlohmann/json.hpp>

#include "fota/common/crypto.hpp"
#include "fota/orchestrator/rollout_spec.hpp"

namespace fota::orchestrator {

using common::Errc;
using common::Error;
using common::Status;

const std::vector<std::string>& webhook_event_types() {
  static const std::vector<std::string> types = {"rollout.started",     "rollout.breached",
                                                 "rollout.completed",   "rollout.aborted",
                                                 "rollout.rolled_back", "device.failed"};
  return types;
}

namespace {

std::string known_events() {
  std::string out;
  for (const auto& e : webhook_event_types()) out += (out.empty() ? "" : ", ") + e;
  return out;
}

std::size_t breached_waves(const Rollout& r) {
  return static_cast<std::size_t>(std::count_if(
      r.waves.begin(), r.waves.end(), [](const WaveState& w) { return w.status == WaveStatus::kBreached; }));
}

}  // namespace

Status validate_webhook(const WebhookRecord& w) {
  const std::string shown = w.url.substr(0, 200);
  const bool https = w.url.rfind("https://", 0) == 0;
  const bool http = w.url.rfind("http://", 0) == 0;
  if (!https && !http) {
    return Error(Errc::kInvalidArgument, "url '" + shown +
                                             "': webhooks are delivered over http:// or https:// only; write "
                                             "e.g. https://hooks.example.com/fota");
  }
  const std::string rest = w.url.substr(https ? 8 : 7);
  const std::string authority = rest.substr(0, rest.find_first_of("/?#"));
  if (authority.empty() || authority.find('@') != std::string::npos ||
      authority.find_first_of(" \t\r\n") != std::string::npos || w.url.size() > 2048 ||
      w.url.find_first_of(" \t\r\n") != std::string::npos) {
    return Error(Errc::kInvalidArgument, "url '" + shown +
                                             "' has no host (or has spaces or user:password@): write "
                                             "scheme://host[:port]/path, at most 2048 characters");
  }
  if (const auto colon = authority.rfind(':'); colon != std::string::npos && authority.back() != ']') {
    const std::string port = authority.substr(colon + 1);
    if (port.empty() || port.size() > 5 || !std::all_of(port.begin(), port.end(), ::isdigit) ||
        std::stoi(port) < 1 || std::stoi(port) > 65535) {
      return Error(Errc::kInvalidArgument, "url '" + shown + "': the port must be a number from 1 to 65535");
    }
  }
  if (w.events.empty()) {
    return Error(Errc::kInvalidArgument, "events: name at least one of " + known_events());
  }
  for (const auto& e : w.events) {
    const auto& types = webhook_event_types();
    if (std::find(types.begin(), types.end(), e) == types.end()) {
      return Error(Errc::kInvalidArgument,
                   "events: '" + e.substr(0, 64) + "' is not an event; the events are " + known_events());
    }
  }
  if (w.secret.size() < 16 || w.secret.size() > 512) {
    return Error(Errc::kInvalidArgument,
                 "secret: " + std::string(w.secret.empty() ? "missing" : "too short or too long") +
                     "; give 16 to 512 bytes the receiver also knows (e.g. `openssl rand -hex 32`), used "
                     "as the HMAC-SHA256 key of every delivery's signature");
  }
  if (!w.ca_file.empty() && !https) {
    return Error(Errc::kInvalidArgument,
                 "ca_file is for https:// URLs only (the receiver's certificate "
                 "must chain to it); '" +
                     shown + "' is http://");
  }
  return common::ok_status();
}

std::string webhook_signature(std::string_view secret, std::string_view timestamp, std::string_view body) {
  std::string message;
  message.reserve(timestamp.size() + 1 + body.size());
  message.append(timestamp).append(".").append(body);
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int mac_len = 0;
  if (HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
           reinterpret_cast<const unsigned char*>(message.data()), message.size(), mac,
           &mac_len) == nullptr) {
    return {};
  }
  return "sha256=" + common::to_hex(std::string_view(reinterpret_cast<const char*>(mac), mac_len));
}

bool verify_webhook_signature(std::string_view secret, std::string_view timestamp, std::string_view body,
                              std::string_view signature) {
  const std::string expected = webhook_signature(secret, timestamp, body);
  return !expected.empty() && expected.size() == signature.size() &&
         CRYPTO_memcmp(expected.data(), signature.data(), expected.size()) == 0;
}

Millis webhook_retry_delay(int attempts, Millis initial, Millis max, std::uint64_t random) {
  Millis delay = std::max<Millis>(initial, 1);
  for (int i = 1; i < attempts && delay < max; ++i) delay *= 2;
  delay = std::min(delay, max);
  const Millis jitter = static_cast<Millis>(random % static_cast<std::uint64_t>(delay / 2 + 1));
  return delay - jitter;
}

std::string webhook_body(const WebhookNotice& notice, const Rollout& r, const std::string& delivery_id,
                         Millis now) {
  std::size_t succeeded = 0, failed = 0;
  for (const Member& m : r.members) {
    if (m.state == MemberState::kSucceeded) ++succeeded;
    if (m.state == MemberState::kFailed) ++failed;
  }
  nlohmann::json body = {{"delivery_id", delivery_id},
                         {"event", notice.event},
                         {"time", format_timestamp(now)},
                         {"time_ms", now},
                         {"rollout",
                          {{"id", r.id},
                           {"name", r.spec.name},
                           {"state", rollout_state_name(r.state)},
                           {"artifact_id", r.spec.artifact_id},
                           {"reason", r.reason},
                           {"devices", r.members.size()},
                           {"succeeded", succeeded},
                           {"failed", failed}}}};
  if (!notice.device_id.empty()) {
    const Member* m = r.find_member(notice.device_id);
    body["device"] = {{"id", notice.device_id},
                      {"error", notice.detail},
                      {"attempts", m != nullptr ? m->attempt : 0},
                      {"wave", m != nullptr ? m->wave + 1 : 0}};
  }
  return body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

void WebhookWatch::restore(const std::vector<const Rollout*>& rollouts) {
  seen_.clear();
  for (const Rollout* r : rollouts) {
    Seen& s = seen_[r->id];
    s.state = r->state;
    s.breached_waves = breached_waves(*r);
    for (const Member& m : r->members) {
      if (m.state == MemberState::kFailed) s.failed.insert(m.device_id);
    }
  }
}

std::vector<WebhookNotice> WebhookWatch::changes(const std::vector<Rollout*>& rollouts) const {
  std::vector<WebhookNotice> out;
  static const Seen kNew;
  for (const Rollout* r : rollouts) {
    auto it = seen_.find(r->id);
    const Seen& before = it == seen_.end() ? kNew : it->second;
    for (const Member& m : r->members) {
      if (m.dirty && m.state == MemberState::kFailed && !before.failed.count(m.device_id))
        out.push_back(WebhookNotice{"device.failed", r->id, m.device_id, m.last_error});
    }
    if (breached_waves(*r) > before.breached_waves)
      out.push_back(WebhookNotice{"rollout.breached", r->id, "", r->reason});
    if (r->state == before.state) continue;
    switch (r->state) {
      case RolloutState::kRunning:
        if (before.state == RolloutState::kCreated)
          out.push_back(WebhookNotice{"rollout.started", r->id, "", ""});
        break;
      case RolloutState::kCompleted:
        out.push_back(WebhookNotice{"rollout.completed", r->id, "", r->reason});
        break;
      case RolloutState::kAborted:
        out.push_back(WebhookNotice{"rollout.aborted", r->id, "", r->reason});
        break;
      case RolloutState::kRolledBack:
        out.push_back(WebhookNotice{"rollout.rolled_back", r->id, "", r->reason});
        break;
      default:
        break;
    }
  }
  return out;
}

void WebhookWatch::apply(const std::vector<Rollout*>& rollouts, const std::vector<WebhookNotice>& told) {
  for (const Rollout* r : rollouts) {
    Seen& s = seen_[r->id];
    s.state = r->state;
    s.breached_waves = breached_waves(*r);
  }
  for (const WebhookNotice& n : told) {
    if (n.event == "device.failed") seen_[n.rollout_id].failed.insert(n.device_id);
  }
}

}  // namespace fota::orchestrator

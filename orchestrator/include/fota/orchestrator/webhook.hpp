// SPDX-License-Identifier: Apache-2.0
// Webhooks (docs/ORCHESTRATOR.md, "Webhooks"): what a subscription may be, which rollout changes
// become events, how a delivery is signed and verified, and how long a failed one waits. Pure: the
// service writes the deliveries to the store's outbox, an adapter sends them.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "fota/common/result.hpp"
#include "fota/orchestrator/records.hpp"
#include "fota/orchestrator/rollout_engine.hpp"

namespace fota::orchestrator {

// How deliveries are made (orchestrator.yaml `webhooks:`): sender threads, attempts before a
// delivery is marked failed, the first and the longest wait between attempts, and the time a
// receiver has to connect and to answer.
struct WebhookOptions {
  int workers = 2;
  int max_attempts = 10;
  Millis retry_initial_ms = 5'000;
  Millis retry_max_ms = 15 * 60'000;
  Millis timeout_ms = 10'000;
};

// rollout.started, rollout.breached, rollout.completed, rollout.aborted, rollout.rolled_back,
// device.failed.
const std::vector<std::string>& webhook_event_types();

// Checks a subscription before it is stored: an http:// or https:// URL with a host, at least one
// event, each a known one, a secret of 16 to 512 bytes, a CA file only for https. The error says
// what was wrong and what to write instead.
common::Status validate_webhook(const WebhookRecord& webhook);

// The signature header's value: "sha256=" and the hex HMAC-SHA256, keyed with the secret, over
// the timestamp header's value, a '.', and the body as sent.
std::string webhook_signature(std::string_view secret, std::string_view timestamp, std::string_view body);
// What a receiver does (compared in constant time): true when `signature` is the one above.
bool verify_webhook_signature(std::string_view secret, std::string_view timestamp, std::string_view body,
                              std::string_view signature);

// How long a delivery that failed `attempts` times waits: initial * 2^(attempts-1), at most `max`,
// then a random jitter takes up to half of it away (`random` from any generator).
Millis webhook_retry_delay(int attempts, Millis initial, Millis max, std::uint64_t random);

// One event for the subscribers: the rollout (and device) it concerns and the body's essentials.
struct WebhookNotice {
  std::string event;
  std::string rollout_id;
  std::string device_id;
  std::string detail;  // the rollout's reason, the device's error
};

// The JSON body of a delivery: {"delivery_id", "event", "time", "time_ms", "rollout": {...}, and
// for device.failed "device": {...}}.
std::string webhook_body(const WebhookNotice& notice, const Rollout& rollout, const std::string& delivery_id,
                         Millis now);

// Remembers what subscribers were told of each rollout, so that each change is one event: a state
// left for running, completed, aborted or rolled back, a wave newly breached, a member newly failed.
class WebhookWatch {
 public:
  // The rollouts as loaded: what they are now is not news.
  void restore(const std::vector<const Rollout*>& rollouts);
  // The events in the rollouts' changes since the last apply() (their dirty members are looked at).
  std::vector<WebhookNotice> changes(const std::vector<Rollout*>& rollouts) const;
  // The rollouts were saved with the deliveries of `told` (what changes() returned): remember them.
  void apply(const std::vector<Rollout*>& rollouts, const std::vector<WebhookNotice>& told);

 private:
  struct Seen {
    RolloutState state = RolloutState::kCreated;
    std::size_t breached_waves = 0;
    std::unordered_set<std::string> failed;
  };
  std::unordered_map<std::string, Seen> seen_;
};

}  // namespace fota::orchestrator

// SPDX-License-Identifier: Apache-2.0
// Webhooks' pure parts: validation, signature, backoff, and which rollout changes become events.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "fota/orchestrator/rollout_spec.hpp"
#include "fota/orchestrator/webhook.hpp"

namespace fota::orchestrator {
namespace {

WebhookRecord good() {
  return WebhookRecord{"",
                       "https://hooks.example.com:8443/fota?x=1",
                       {"rollout.completed", "device.failed"},
                       "0123456789abcdef",
                       "",
                       0,
                       ""};
}

TEST(WebhookTest, BadSubscriptionsAreRefusedSayingWhatToWrite) {
  EXPECT_TRUE(validate_webhook(good()).ok());
  auto w = good();
  w.url = "http://127.0.0.1:8080/hook";
  EXPECT_TRUE(validate_webhook(w).ok());

  auto refused = [](const WebhookRecord& hook, const std::string& says) {
    auto st = validate_webhook(hook);
    ASSERT_FALSE(st.ok()) << hook.url;
    EXPECT_NE(st.error().message.find(says), std::string::npos) << st.error().message;
  };
  w = good();
  w.url = "ftp://hooks.example.com/x";
  refused(w, "http:// or https:// only");
  w.url = "file:///etc/passwd";
  refused(w, "http:// or https:// only");
  w.url = "hooks.example.com/x";
  refused(w, "http:// or https:// only");
  w.url = "https:///x";
  refused(w, "has no host");
  w.url = "https://user:pw@hooks.example.com/";
  refused(w, "user:password@");
  w.url = "https://hooks.example.com:99999/";
  refused(w, "port");
  w = good();
  w.events = {};
  refused(w, "at least one of rollout.started");
  w.events = {"rollout.completed", "rollout.exploded"};
  refused(w, "'rollout.exploded' is not an event");
  w = good();
  w.secret = "";
  refused(w, "secret: missing");
  w.secret = "short";
  refused(w, "16 to 512 bytes");
  w = good();
  w.url = "http://127.0.0.1/";
  w.ca_file = "/etc/ssl/ca.pem";
  refused(w, "ca_file is for https://");
}

TEST(WebhookTest, SignatureIsHmacSha256OverTimestampAndBodyAndATamperedOneIsDetected) {
  // RFC 4231 test case 2 shape, checked against `openssl dgst -sha256 -hmac`:
  // printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac 'Jefe-secret-0123'
  const std::string sig = webhook_signature("Jefe-secret-0123", "1700000000", R"({"a":1})");
  ASSERT_EQ(sig.rfind("sha256=", 0), 0u);
  EXPECT_EQ(sig.size(), 7u + 64u);
  EXPECT_TRUE(verify_webhook_signature("Jefe-secret-0123", "1700000000", R"({"a":1})", sig));
  EXPECT_FALSE(verify_webhook_signature("Jefe-secret-0123", "1700000000", R"({"a":2})", sig));  // body
  EXPECT_FALSE(verify_webhook_signature("Jefe-secret-0123", "1700000001", R"({"a":1})", sig));  // time
  EXPECT_FALSE(verify_webhook_signature("another-secret-1", "1700000000", R"({"a":1})", sig));  // key
  std::string flipped = sig;
  flipped.back() = flipped.back() == '0' ? '1' : '0';
  EXPECT_FALSE(verify_webhook_signature("Jefe-secret-0123", "1700000000", R"({"a":1})", flipped));
  EXPECT_FALSE(verify_webhook_signature("Jefe-secret-0123", "1700000000", R"({"a":1})", ""));
}

TEST(WebhookTest, RetryDelayDoublesUpToTheMaximumWithJitterOfAtMostHalf) {
  for (std::uint64_t random : {0ULL, 1ULL, 12345ULL, ~0ULL}) {
    Millis last_cap = 0;
    for (int attempts = 1; attempts <= 12; ++attempts) {
      const Millis cap = std::min<Millis>(1000LL << (attempts - 1), 60'000);
      const Millis d = webhook_retry_delay(attempts, 1000, 60'000, random);
      EXPECT_LE(d, cap);
      EXPECT_GE(d, cap / 2);
      EXPECT_GE(cap, last_cap);
      last_cap = cap;
    }
  }
  EXPECT_EQ(webhook_retry_delay(1, 1000, 60'000, 0), 1000);
  EXPECT_EQ(webhook_retry_delay(3, 1000, 60'000, 0), 4000);
  EXPECT_EQ(webhook_retry_delay(30, 1000, 60'000, 0), 60'000);
  // Different random draws spread retries of the same attempt.
  EXPECT_NE(webhook_retry_delay(5, 1000, 60'000, 1), webhook_retry_delay(5, 1000, 60'000, 7000));
}

Rollout two_device_rollout() {
  auto spec = parse_rollout_spec(
      "name: canary\nartifact: 0123456789abcdef0123456789abcdef\ntarget: {devices: [d1, d2]}\nwaves: [{size: "
      "100%}]\n");
  EXPECT_TRUE(spec.ok()) << spec.error().message;
  auto r = RolloutEngine::create("r-1", *spec, 0);
  EXPECT_TRUE(r.ok());
  Rollout rollout = std::move(r).value();
  for (const char* id : {"d1", "d2"}) {
    Member m;
    m.device_id = id;
    rollout.members.push_back(m);
  }
  rollout.rebuild_index();
  rollout.waves.resize(1);
  return rollout;
}

std::vector<std::string> events_of(const std::vector<WebhookNotice>& notices) {
  std::vector<std::string> out;
  for (const auto& n : notices) out.push_back(n.event + (n.device_id.empty() ? "" : ":" + n.device_id));
  return out;
}

TEST(WebhookTest, EachRolloutChangeIsOneEventOnceSaved) {
  WebhookWatch watch;
  Rollout r = two_device_rollout();
  std::vector<Rollout*> touched = {&r};
  EXPECT_TRUE(watch.changes(touched).empty());  // created: not news
  watch.apply(touched, {});

  r.state = RolloutState::kRunning;
  auto started = watch.changes(touched);
  EXPECT_EQ(events_of(started), std::vector<std::string>{"rollout.started"});
  // Not saved (apply not called): asked again, the same event; once applied, no more.
  EXPECT_EQ(events_of(watch.changes(touched)), std::vector<std::string>{"rollout.started"});
  watch.apply(touched, started);
  EXPECT_TRUE(watch.changes(touched).empty());

  r.members[0].state = MemberState::kFailed;
  r.members[0].last_error = "ERROR_VERIFY_FAILED: bad image";
  r.members[0].dirty = true;
  r.waves[0].status = WaveStatus::kBreached;
  r.state = RolloutState::kPaused;
  r.reason = "wave 1 breached";
  auto breached = watch.changes(touched);
  EXPECT_EQ(events_of(breached), (std::vector<std::string>{"device.failed:d1", "rollout.breached"}));
  EXPECT_EQ(breached[0].detail, "ERROR_VERIFY_FAILED: bad image");
  watch.apply(touched, breached);
  EXPECT_TRUE(watch.changes(touched).empty());  // d1 still dirty and failed: told once

  // Resumed (no event), then completed.
  r.state = RolloutState::kRunning;
  EXPECT_TRUE(watch.changes(touched).empty());
  watch.apply(touched, {});
  r.state = RolloutState::kCompleted;
  EXPECT_EQ(events_of(watch.changes(touched)), std::vector<std::string>{"rollout.completed"});

  // A restart: what the rollouts are when loaded is not news.
  WebhookWatch restarted;
  restarted.restore({&r});
  EXPECT_TRUE(restarted.changes(touched).empty());

  Rollout aborted = two_device_rollout();
  aborted.state = RolloutState::kAborted;
  std::vector<Rollout*> other = {&aborted};
  EXPECT_EQ(events_of(watch.changes(other)), std::vector<std::string>{"rollout.aborted"});
  aborted.state = RolloutState::kRolledBack;
  EXPECT_EQ(events_of(watch.changes(other)), std::vector<std::string>{"rollout.rolled_back"});
}

TEST(WebhookTest, BodyCarriesTheEventTheRolloutAndTheFailedDevice) {
  Rollout r = two_device_rollout();
  r.state = RolloutState::kRunning;
  r.members[0].state = MemberState::kFailed;
  r.members[0].attempt = 3;
  r.members[1].state = MemberState::kSucceeded;
  const auto body = nlohmann::json::parse(webhook_body(
      WebhookNotice{"device.failed", "r-1", "d1", "ERROR_DOWNLOAD: timeout"}, r, "wd-1", 1'700'000'000'000));
  EXPECT_EQ(body["delivery_id"], "wd-1");
  EXPECT_EQ(body["event"], "device.failed");
  EXPECT_EQ(body["time"], "2023-11-14T22:13:20.000Z");
  EXPECT_EQ(body["rollout"]["id"], "r-1");
  EXPECT_EQ(body["rollout"]["name"], "canary");
  EXPECT_EQ(body["rollout"]["state"], "running");
  EXPECT_EQ(body["rollout"]["devices"], 2);
  EXPECT_EQ(body["rollout"]["succeeded"], 1);
  EXPECT_EQ(body["rollout"]["failed"], 1);
  EXPECT_EQ(body["device"]["id"], "d1");
  EXPECT_EQ(body["device"]["error"], "ERROR_DOWNLOAD: timeout");
  EXPECT_EQ(body["device"]["attempts"], 3);
}

}  // namespace
}  // namespace fota::orchestrator

// SPDX-License-Identifier: Apache-2.0
// CertificateRenewal (certificate_renewal.hpp) on a virtual clock: when a device asks, how it backs
// off, and which answers it refuses (replayed, another request's, another identity, another key or
// root) — with an injected check for the timing, and with the real PKI and OpenSSL check for the
// answers an attacker would forge.
#include "fota/client/certificate_renewal.hpp"

#include <gtest/gtest.h>

#include <chrono>

#include "fota/common/pki.hpp"
#include "fota/testing/broker.hpp"

namespace fota::client {
namespace {

constexpr std::int64_t kDay = 86'400'000;
constexpr std::int64_t kNow = 1'800'000'000'000;  // ms
constexpr const char* kDevice = "dev-1";

CertificateRenewalConfig config() {
  CertificateRenewalConfig c;
  c.renew_before_ms = 30 * kDay;
  c.response_timeout_ms = 60'000;
  c.retry_initial_ms = 10'000;
  c.retry_max_ms = 80'000;
  return c;
}

// A check that accepts everything and reports this identity.
CertificateChainCheck accepting(std::string cn, std::string role, std::int64_t not_after_s) {
  return [=](std::string_view, std::string_view, std::int64_t) -> common::Result<CheckedCertificate> {
    return CheckedCertificate{cn, role, not_after_s};
  };
}

v1::CertificateIssued answer(const std::string& request_id, const std::string& chain = "CHAIN") {
  v1::CertificateIssued issued;
  issued.set_request_id(request_id);
  issued.set_chain_pem(chain);
  return issued;
}

TEST(CertificateRenewal, DueOnlyWithinRenewBeforeOfTheEnd) {
  const std::int64_t not_after_s = (kNow + 40 * kDay) / 1000;
  CertificateRenewal renewal(config(), kDevice, not_after_s);
  EXPECT_FALSE(renewal.due(kNow));
  EXPECT_EQ(renewal.next_deadline_ms(), kNow + 10 * kDay);
  EXPECT_FALSE(renewal.due(kNow + 10 * kDay - 1));
  EXPECT_TRUE(renewal.due(kNow + 10 * kDay));
  // An expired certificate is due at once too (the broker would refuse it, but the policy asks).
  CertificateRenewal expired(config(), kDevice, (kNow - kDay) / 1000);
  EXPECT_TRUE(expired.due(kNow));
}

// The operator's RenewCertificateCommand: due at once whatever renew_before says, a pending
// request replaced (its answer then refused), retried after a failure, and over once installed.
TEST(CertificateRenewal, RenewNowIsDueAtOnceReplacesAPendingRequestAndEndsWithTheInstall) {
  const std::int64_t not_after_s = (kNow + 300 * kDay) / 1000;
  CertificateRenewal renewal(config(), kDevice, not_after_s);
  EXPECT_FALSE(renewal.due(kNow));
  renewal.renew_now();
  EXPECT_TRUE(renewal.forced());
  EXPECT_TRUE(renewal.due(kNow));
  EXPECT_EQ(renewal.next_deadline_ms(), 0);
  renewal.on_request_sent("r1", "KEY1", kNow);
  EXPECT_FALSE(renewal.due(kNow));
  // Asked again while r1 waits: r1 is given up, a new request is due now.
  renewal.renew_now();
  EXPECT_FALSE(renewal.pending());
  EXPECT_TRUE(renewal.due(kNow + 1));
  renewal.on_request_sent("r2", "KEY2", kNow + 1);
  EXPECT_FALSE(renewal.on_issued(answer("r1"), accepting(kDevice, "device", not_after_s), kNow + 2).ok());
  // A failed publish backs off, then asks again although renew_before is far away.
  renewal.renew_now();
  renewal.on_request_failed(kNow + 3);
  EXPECT_FALSE(renewal.due(kNow + 4));
  EXPECT_TRUE(renewal.due(kNow + 3 + 10'000));
  renewal.on_request_sent("r3", "KEY3", kNow + 3 + 10'000);
  const std::int64_t new_end = (kNow + 390 * kDay) / 1000;
  auto renewed = renewal.on_issued(answer("r3"), accepting(kDevice, "device", new_end), kNow + 20'000);
  ASSERT_TRUE(renewed.ok()) << renewed.error().message;
  EXPECT_EQ(renewed->key_pem, "KEY3");
  renewal.on_installed(new_end);
  EXPECT_FALSE(renewal.forced());
  EXPECT_FALSE(renewal.due(kNow + 30'000));
}

TEST(CertificateRenewal, OneRequestAtATimeThenBacksOffWhenUnanswered) {
  CertificateRenewal renewal(config(), kDevice, (kNow + kDay) / 1000);
  ASSERT_TRUE(renewal.due(kNow));
  renewal.on_request_sent("r1", "KEY1", kNow);
  EXPECT_FALSE(renewal.due(kNow + 1));
  EXPECT_EQ(renewal.next_deadline_ms(), kNow + 60'000);
  renewal.on_tick(kNow + 59'999);
  EXPECT_TRUE(renewal.pending());
  // Unanswered: given up, asked again after 10 s, 20 s, 40 s, then capped at 80 s.
  std::int64_t t = kNow + 60'000;
  for (std::int64_t delay : {10'000, 20'000, 40'000, 80'000, 80'000}) {
    renewal.on_tick(t);
    EXPECT_FALSE(renewal.pending());
    EXPECT_FALSE(renewal.due(t + delay - 1)) << delay;
    EXPECT_TRUE(renewal.due(t + delay)) << delay;
    EXPECT_EQ(renewal.next_deadline_ms(), t + delay);
    t += delay;
    renewal.on_request_sent("r", "K", t);
    t += 60'000;
  }
  EXPECT_EQ(renewal.failed_attempts(), 5u);
  EXPECT_TRUE(renewal.pending());
}

TEST(CertificateRenewal, AcceptsTheAnswerToItsRequestOnceAndResetsTheBackoff) {
  CertificateRenewal renewal(config(), kDevice, (kNow + kDay) / 1000);
  renewal.on_request_failed(kNow);  // e.g. publishing failed
  EXPECT_FALSE(renewal.due(kNow + 9'999));
  ASSERT_TRUE(renewal.due(kNow + 10'000));
  renewal.on_request_sent("r2", "KEY2", kNow + 10'000);
  const std::int64_t new_end = (kNow + 90 * kDay) / 1000;
  auto renewed = renewal.on_issued(answer("r2"), accepting(kDevice, "device", new_end), kNow + 11'000);
  ASSERT_TRUE(renewed.ok()) << renewed.error().message;
  EXPECT_EQ(renewed->key_pem, "KEY2");
  EXPECT_EQ(renewed->chain_pem, "CHAIN");
  EXPECT_EQ(renewed->not_after, new_end);
  renewal.on_installed(renewed->not_after);
  EXPECT_EQ(renewal.failed_attempts(), 0u);
  EXPECT_FALSE(renewal.due(kNow + 59 * kDay));
  EXPECT_TRUE(renewal.due(kNow + 60 * kDay));
  // The same answer again (a replay) answers no pending request.
  auto replayed = renewal.on_issued(answer("r2"), accepting(kDevice, "device", new_end), kNow + 12'000);
  ASSERT_FALSE(replayed.ok());
  EXPECT_EQ(replayed.error().code, common::Errc::kPermissionDenied);
  EXPECT_NE(replayed.error().message.find("replayed"), std::string::npos) << replayed.error().message;
}

TEST(CertificateRenewal, RefusesAnotherRequestsAnswerAndAnotherIdentityAndKeepsWaiting) {
  CertificateRenewal renewal(config(), kDevice, (kNow + kDay) / 1000);
  renewal.on_request_sent("r3", "KEY3", kNow);
  const std::int64_t end = (kNow + 90 * kDay) / 1000;
  EXPECT_FALSE(renewal.on_issued(answer("r-other"), accepting(kDevice, "device", end), kNow).ok());
  auto other_cn = renewal.on_issued(answer("r3"), accepting("dev-2", "device", end), kNow);
  ASSERT_FALSE(other_cn.ok());
  EXPECT_NE(other_cn.error().message.find("dev-2"), std::string::npos) << other_cn.error().message;
  EXPECT_FALSE(renewal.on_issued(answer("r3"), accepting(kDevice, "orchestrator", end), kNow).ok());
  auto failing = [](std::string_view, std::string_view, std::int64_t) -> common::Result<CheckedCertificate> {
    return common::Error(common::Errc::kIntegrity, "chain does not verify");
  };
  EXPECT_FALSE(renewal.on_issued(answer("r3"), failing, kNow).ok());
  // A forged answer cancels nothing: the real one is still taken.
  EXPECT_TRUE(renewal.pending());
  EXPECT_EQ(renewal.pending_request_id(), "r3");
  EXPECT_TRUE(renewal.on_issued(answer("r3"), accepting(kDevice, "device", end), kNow).ok());
}

// The real check, as fota-device passes it: common::verify_certificate_chain against the root.
CertificateChainCheck real_check(std::string root_pem) {
  return [root_pem](std::string_view chain, std::string_view key,
                    std::int64_t now_s) -> common::Result<CheckedCertificate> {
    auto verified = common::verify_certificate_chain(chain, root_pem, key, now_s);
    if (!verified) return verified.error();
    return CheckedCertificate{verified->identity.common_name,
                              std::string(common::role_name(verified->identity.role)), verified->not_after};
  };
}

class CertificateRenewalPki : public ::testing::Test {
 protected:
  void SetUp() override {
    auto root = common::CertificateAuthority::init(dir_.path() / "root");
    ASSERT_TRUE(root.ok()) << root.error().message;
    auto issuing_dir = root->create_issuing_ca("issuing", std::chrono::hours(24 * 365));
    ASSERT_TRUE(issuing_dir.ok()) << issuing_dir.error().message;
    auto issuing = common::CertificateAuthority::open(*issuing_dir);
    ASSERT_TRUE(issuing.ok()) << issuing.error().message;
    root_pem_ = root->ca_cert_pem();
    issuing_ = std::make_unique<common::CertificateAuthority>(std::move(issuing).value());
    // Another fleet's PKI, same names.
    auto other = common::CertificateAuthority::init(dir_.path() / "other");
    ASSERT_TRUE(other.ok());
    other_ = std::make_unique<common::CertificateAuthority>(std::move(other).value());
  }

  std::string sign(const common::CertificateAuthority& ca, const std::string& csr) {
    auto issued = ca.sign_request(csr, kDevice, common::Role::kDevice, std::chrono::hours(24 * 90));
    EXPECT_TRUE(issued.ok()) << issued.error().message;
    return issued ? issued->cert_pem : std::string();
  }

  testing::TempDir dir_;
  std::string root_pem_;
  std::unique_ptr<common::CertificateAuthority> issuing_, other_;
};

TEST_F(CertificateRenewalPki, TakesAChainOfItsOwnKeyToItsRootOnly) {
  const std::int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                                  std::chrono::system_clock::now().time_since_epoch())
                                  .count();
  CertificateRenewal renewal(config(), kDevice, now_ms / 1000 + 3600);
  auto mine = common::make_certificate_request(kDevice, common::Role::kDevice);
  ASSERT_TRUE(mine.ok()) << mine.error().message;
  auto theirs = common::make_certificate_request(kDevice, common::Role::kDevice);
  ASSERT_TRUE(theirs.ok());
  renewal.on_request_sent("r9", mine->key_pem, now_ms);
  const auto check = real_check(root_pem_);

  // A chain for a key the attacker holds (same CN, same CA): the device would present a
  // certificate whose key it does not have.
  auto other_key = renewal.on_issued(answer("r9", sign(*issuing_, theirs->csr_pem)), check, now_ms);
  ASSERT_FALSE(other_key.ok());
  EXPECT_EQ(other_key.error().code, common::Errc::kPermissionDenied);
  // Its own key, but signed under another root.
  auto other_root = renewal.on_issued(answer("r9", sign(*other_, mine->csr_pem)), check, now_ms);
  ASSERT_FALSE(other_root.ok());
  // The real one.
  auto renewed = renewal.on_issued(answer("r9", sign(*issuing_, mine->csr_pem)), check, now_ms);
  ASSERT_TRUE(renewed.ok()) << renewed.error().message;
  EXPECT_EQ(renewed->key_pem, mine->key_pem);
  EXPECT_GT(renewed->not_after, now_ms / 1000 + 89 * 86'400);
}

}  // namespace
}  // namespace fota::client

// SPDX-License-Identifier: Apache-2.0
// When a device renews its certificate and whether it takes the answer (docs/PROTOCOL.md,
// "Certificate renewal"). Sans-IO: no clock, no files, no OpenSSL; time is an argument, the key and
// request come from the adapter, and the chain check is injected (the adapter passes
// common::verify_certificate_chain). C++17.
//
// The adapter's loop: when due(now) it makes a P-256 key and a CSR, stores the key, calls
// on_request_sent() and publishes the request; a CertificateIssued command goes to on_issued(),
// whose answer is the pair to install (or why not); after installing it the adapter calls
// on_installed(), or on_install_failed() when writing the files failed.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "fota/common/result.hpp"
#include "fota/v1/fota.pb.h"

namespace fota::client {

struct CertificateRenewalConfig {
  // Renew once the certificate expires within this long (certificate.renew_before).
  std::int64_t renew_before_ms = 30LL * 86'400'000;
  // A request without an answer for this long is given up and, after the backoff, asked again.
  std::int64_t response_timeout_ms = 10 * 60'000;
  // Delay before the next attempt after a refused, failed or unanswered one: doubles up to the cap.
  std::int64_t retry_initial_ms = 60'000;
  std::int64_t retry_max_ms = 6 * 3'600'000;
};

// What the injected chain check found (the leaf's subject and validity end).
struct CheckedCertificate {
  std::string common_name;
  std::string role;            // the subject OU, "device" for a device certificate
  std::int64_t not_after = 0;  // seconds since the epoch
};

// Verifies `chain_pem` (leaf first) against the device's trust anchor at `now_s` and that the
// leaf's public key belongs to `key_pem`. Any error refuses the answer.
using CertificateChainCheck = std::function<common::Result<CheckedCertificate>(
    std::string_view chain_pem, std::string_view key_pem, std::int64_t now_s)>;

// A checked answer: the files to install.
struct RenewedCertificate {
  std::string chain_pem;
  std::string key_pem;
  std::int64_t not_after = 0;  // seconds since the epoch
};

class CertificateRenewal {
 public:
  static constexpr std::int64_t kNoDeadline = INT64_MAX;

  // `not_after_s`: the validity end of the certificate in use (seconds since the epoch).
  CertificateRenewal(CertificateRenewalConfig config, std::string device_id, std::int64_t not_after_s);

  // A request is due: the certificate is within renew_before of its end (or past it), no request
  // is waiting for an answer and the backoff after the last failure has passed.
  bool due(std::int64_t now_ms) const;
  // When due() turns true or a pending request times out; kNoDeadline never.
  std::int64_t next_deadline_ms() const;
  // Gives up a request that timed out (starting the backoff). Call when now >= next_deadline_ms().
  void on_tick(std::int64_t now_ms);

  // The adapter made `key_pem` and a request `request_id` for it and publishes it now.
  void on_request_sent(std::string request_id, std::string key_pem, std::int64_t now_ms);
  // Making the key or the request, or publishing it, failed: try again after the backoff.
  void on_request_failed(std::int64_t now_ms);
  // The operator asked for a renewal now (a verified RenewCertificateCommand): due() from now on,
  // whatever renew_before and the backoff say, until a renewed pair is installed. A request still
  // waiting for its answer is given up (a new key and request replace it), so its answer, if it
  // comes, is refused as a foreign one.
  void renew_now();

  // An answer. Refused (the old pair stays): kPermissionDenied when it answers no pending request
  // (a replay, or another request's), when the leaf is not this device's (CN, role) or when the
  // check fails (another key, another root, expired); the pending request stays until it times
  // out, so a forged answer cannot cancel it.
  common::Result<RenewedCertificate> on_issued(const v1::CertificateIssued& issued,
                                               const CertificateChainCheck& check, std::int64_t now_ms);
  // The renewed pair is installed: it is the certificate in use from now on.
  void on_installed(std::int64_t not_after_s);
  // Installing failed (the old pair stays): try again after the backoff.
  void on_install_failed(std::int64_t now_ms);

  bool pending() const noexcept { return pending_.has_value(); }
  const std::string& pending_request_id() const;
  std::int64_t not_after_s() const noexcept { return not_after_s_; }
  std::uint32_t failed_attempts() const noexcept { return failed_attempts_; }
  bool forced() const noexcept { return forced_; }

 private:
  struct Pending {
    std::string request_id;
    std::string key_pem;
    std::int64_t sent_ms = 0;
  };
  std::int64_t renew_at_ms() const;
  void fail(std::int64_t now_ms);

  CertificateRenewalConfig config_;
  std::string device_id_;
  std::int64_t not_after_s_ = 0;
  std::optional<Pending> pending_;
  std::int64_t retry_at_ms_ = 0;  // no attempt before this
  std::uint32_t failed_attempts_ = 0;
  bool forced_ = false;  // renew_now() until the next installed pair
};

}  // namespace fota::client

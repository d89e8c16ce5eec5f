// SPDX-License-Identifier: Apache-2.0
#include "fota/client/certificate_renewal.hpp"

#include <algorithm>

namespace fota::client {

using common::Errc;
using common::Error;

CertificateRenewal::CertificateRenewal(CertificateRenewalConfig config, std::string device_id,
                                       std::int64_t not_after_s)
    : config_(config), device_id_(std::move(device_id)), not_after_s_(not_after_s) {}

std::int64_t CertificateRenewal::renew_at_ms() const {
  // A forced renewal waits only for the backoff after a failed attempt of its own.
  if (forced_) return retry_at_ms_;
  return std::max(not_after_s_ * 1000 - config_.renew_before_ms, retry_at_ms_);
}

bool CertificateRenewal::due(std::int64_t now_ms) const { return !pending_ && now_ms >= renew_at_ms(); }

std::int64_t CertificateRenewal::next_deadline_ms() const {
  if (pending_) return pending_->sent_ms + config_.response_timeout_ms;
  return renew_at_ms();
}

void CertificateRenewal::on_tick(std::int64_t now_ms) {
  if (pending_ && now_ms >= pending_->sent_ms + config_.response_timeout_ms) fail(now_ms);
}

void CertificateRenewal::fail(std::int64_t now_ms) {
  pending_.reset();
  // 1, 2, 4 ... times the initial delay, capped; the shift stops growing well before it overflows.
  const std::uint32_t shift = std::min<std::uint32_t>(failed_attempts_, 20);
  retry_at_ms_ = now_ms + std::min(config_.retry_max_ms, config_.retry_initial_ms << shift);
  ++failed_attempts_;
}

void CertificateRenewal::on_request_sent(std::string request_id, std::string key_pem, std::int64_t now_ms) {
  pending_ = Pending{std::move(request_id), std::move(key_pem), now_ms};
}

void CertificateRenewal::on_request_failed(std::int64_t now_ms) { fail(now_ms); }

void CertificateRenewal::renew_now() {
  pending_.reset();
  forced_ = true;
  retry_at_ms_ = 0;
  failed_attempts_ = 0;
}

const std::string& CertificateRenewal::pending_request_id() const {
  static const std::string kNone;
  return pending_ ? pending_->request_id : kNone;
}

common::Result<RenewedCertificate> CertificateRenewal::on_issued(const v1::CertificateIssued& issued,
                                                                 const CertificateChainCheck& check,
                                                                 std::int64_t now_ms) {
  if (!pending_ || issued.request_id() != pending_->request_id) {
    return Error(Errc::kPermissionDenied, "certificate for request '" + issued.request_id().substr(0, 64) +
                                              "' refused: it answers no pending request (" +
                                              (pending_ ? "waiting for '" + pending_->request_id + "'"
                                                        : std::string("none is pending")) +
                                              "); a replayed or foreign answer");
  }
  auto checked = check(issued.chain_pem(), pending_->key_pem, now_ms / 1000);
  if (!checked) {
    return Error(Errc::kPermissionDenied, "certificate for request '" + pending_->request_id +
                                              "' refused: " + checked.error().message);
  }
  if (checked->common_name != device_id_ || checked->role != "device") {
    return Error(Errc::kPermissionDenied, "certificate for request '" + pending_->request_id +
                                              "' refused: it names '" + checked->common_name + "' (" +
                                              checked->role + "), not this device '" + device_id_ +
                                              "' (device)");
  }
  RenewedCertificate out{issued.chain_pem(), std::move(pending_->key_pem), checked->not_after};
  pending_.reset();
  return out;
}

void CertificateRenewal::on_installed(std::int64_t not_after_s) {
  not_after_s_ = not_after_s;
  forced_ = false;
  failed_attempts_ = 0;
  retry_at_ms_ = 0;
}

void CertificateRenewal::on_install_failed(std::int64_t now_ms) { fail(now_ms); }

}  // namespace fota::client

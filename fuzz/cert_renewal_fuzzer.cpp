// SPDX-License-Identifier: Apache-2.0
// The device side of certificate renewal (docs/PROTOCOL.md, "Certificate renewal"). The input is
// a CertificateIssued; the target signs it into a command with the fuzz command key (what a
// stolen command key could send: the signature itself is the device_messages target's), and a
// device waiting for request kRenewalRequestId with the fixed fuzz TLS key takes it through
// UpdateEngine::on_command (verification, expiry, InstallCertificate) and
// CertificateRenewal::on_issued with fota-device's chain check (common::verify_certificate_chain
// against the fuzz root, and that the leaf holds the device's key). Aborts when an accepted answer
// is not this device's, or when the same answer is accepted twice.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <variant>

#include "fota/client/certificate_renewal.hpp"
#include "fota/client/runtime.hpp"
#include "fota/common/codec.hpp"
#include "fota/common/pki.hpp"
#include "fuzz_support.hpp"

namespace {

using namespace fota;

// fota-device's check (client/device/main.cpp), against the fuzz root.
common::Result<client::CheckedCertificate> check_chain(std::string_view chain, std::string_view key,
                                                       std::int64_t now_s) {
  auto verified = common::verify_certificate_chain(chain, fuzz::kFuzzRootCaPem, key, now_s);
  if (!verified.ok()) return verified.error();
  return client::CheckedCertificate{verified->identity.common_name,
                                    std::string(common::role_name(verified->identity.role)),
                                    verified->not_after};
}

// Certificates are checked at the wall-clock time (the seeds' chains are issued when
// make-seeds.sh runs), commands at the fixtures' fixed time.
std::int64_t wall_clock_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const client::OpenSslEngineCrypto crypto(fuzz::trust_store(), fuzz::trust_store());
  static const client::CertificateChainCheck check = check_chain;
  auto issued = common::decode<v1::CertificateIssued>(
      std::string_view(reinterpret_cast<const char*>(data), size), common::kMaxCommandBytes);
  if (!issued) return 0;

  v1::Command command;
  command.set_command_id("cert-0001");
  command.set_device_id(std::string(fuzz::kDeviceId));
  command.set_issued_at_ms(fuzz::kNowMs);
  command.set_expires_at_ms(fuzz::kNowMs + 600'000);
  *command.mutable_certificate_issued() = *issued;

  const std::int64_t now_ms = wall_clock_ms();
  client::CertificateRenewal renewal(client::CertificateRenewalConfig{}, std::string(fuzz::kDeviceId),
                                     now_ms / 1000 + 86'400);
  renewal.on_request_sent(std::string(fuzz::kRenewalRequestId), std::string(fuzz::kFuzzDeviceTlsKeyPem),
                          now_ms - 1000);

  client::UpdateEngine engine(fuzz::engine_config(), crypto);
  (void)engine.on_started(client::BootStatus{"a", false}, fuzz::kNowMs);
  (void)engine.on_connected(fuzz::kNowMs);
  for (const client::Action& action : engine.on_command(fuzz::signed_command(command), fuzz::kNowMs + 10)) {
    const auto* install = std::get_if<client::action::InstallCertificate>(&action);
    if (install == nullptr) continue;
    auto renewed = renewal.on_issued(install->issued, check, now_ms);
    if (!renewed) continue;
    auto identity = common::peer_identity_from_pem(renewed->chain_pem);
    if (!identity || identity->common_name != fuzz::kDeviceId || identity->role != common::Role::kDevice ||
        renewed->key_pem != fuzz::kFuzzDeviceTlsKeyPem) {
      std::abort();  // took a certificate that is not this device's, or for another key
    }
    renewal.on_installed(renewed->not_after);
    if (renewal.on_issued(install->issued, check, now_ms)) std::abort();  // a replay accepted
  }
  return 0;
}

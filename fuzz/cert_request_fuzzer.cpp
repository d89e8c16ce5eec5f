// SPDX-License-Identifier: Apache-2.0
// A device's certificate signing request as the orchestrator reads it (docs/SECURITY.md,
// "Certificate lifecycle"). The first byte picks the form of the rest:
//  - even: the CertificateRequest payload as published on the device's own topic;
//  - odd: a DER certificate request, put in PEM in a CertificateRequest (request "r-1"), so that
//    mutations reach OpenSSL's request parser instead of dying in base64.
// Either goes through common::validate_device_message (the plugin's and orchestrator's gate),
// decode_device_message (what OrchestratorService::on_message queues) and the checks that decide
// whether to sign: a request id, then CertificateAuthority::sign_request with an issuing CA
// (proof of possession, P-256, subject CN = the topic's device id, OU = device). Whatever is signed
// must name that device and no other: anything else aborts.
#include <openssl/bio.h>
#include <openssl/pem.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "fota/common/codec.hpp"
#include "fota/common/pki.hpp"
#include "fota/common/topics.hpp"
#include "fuzz_support.hpp"

namespace {

using namespace fota;

// A throwaway issuing CA, made once per process as `fotactl pki init` and `pki issue-ca` make one:
// the requests are signed by their own keys, not by this CA, so the seeds do not depend on it.
common::CertificateAuthority make_issuing_ca() {
  const auto root_dir = fuzz::scratch_dir() / "root";
  auto root = common::CertificateAuthority::init(root_dir, "fota fuzz root CA");
  if (!root) fuzz::fixture_failed("making the root CA", root.error());
  auto issuing_dir = root->create_issuing_ca("fuzz", std::chrono::hours(24 * 365));
  if (!issuing_dir) fuzz::fixture_failed("making the issuing CA", issuing_dir.error());
  auto issuing = common::CertificateAuthority::open(*issuing_dir);
  if (!issuing) fuzz::fixture_failed("opening the issuing CA", issuing.error());
  return std::move(issuing).value();
}

std::string pem_of_der(std::string_view der) {
  BIO* bio = BIO_new(BIO_s_mem());
  if (bio == nullptr) std::abort();
  PEM_write_bio(bio, "CERTIFICATE REQUEST", "", reinterpret_cast<const unsigned char*>(der.data()),
                static_cast<long>(der.size()));
  char* text = nullptr;
  const long size = BIO_get_mem_data(bio, &text);
  std::string pem(text, static_cast<std::size_t>(size));
  BIO_free(bio);
  return pem;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  static const common::CertificateAuthority ca = make_issuing_ca();
  static const common::DeviceId device = common::DeviceId::parse(fuzz::kDeviceId).value();
  constexpr auto channel = common::Channel::kCertificateRequest;
  const std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
  std::string payload;
  if (data[0] % 2 == 0) {
    payload = std::string(rest);
  } else {
    v1::CertificateRequest request;
    request.set_device_id(std::string(fuzz::kDeviceId));
    request.set_request_id("r-1");
    request.set_csr_pem(pem_of_der(rest));
    payload = request.SerializeAsString();
  }

  (void)common::validate_device_message(channel, device, payload);
  auto request = common::decode_device_message<v1::CertificateRequest>(device, payload,
                                                                       common::max_message_bytes(channel));
  if (!request || request->request_id().empty()) return 0;
  auto issued =
      ca.sign_request(request->csr_pem(), device.str(), common::Role::kDevice, std::chrono::hours(24 * 90));
  if (!issued) return 0;
  // What the orchestrator puts in its answer, and what the device checks it for.
  if (!common::certificate_not_after(issued->cert_pem)) std::abort();
  auto identity = common::peer_identity_from_pem(issued->cert_pem);
  if (!identity || identity->common_name != fuzz::kDeviceId || identity->role != common::Role::kDevice) {
    std::abort();  // signed a certificate for another identity or role
  }
  return 0;
}

// SPDX-License-Identifier: Apache-2.0
// A device's certificate signing request as the orchestrator reads it (docs/SECURITY.md,
// "Certificate lifecycle"). Bit 0 of the first byte picks the form of the rest:
//  - 0: the CertificateRequest payload as published on the device's own topic;
//  - 1: a DER certificate request, put in PEM in a CertificateRequest (request "r-1"), so that
//    mutations reach OpenSSL's request parser instead of dying in base64.
// Bit 1 picks who reads it:
//  - 0: common::validate_device_message (the plugin's and orchestrator's gate),
//    decode_device_message and the checks that decide whether to sign, called directly (fast): a
//    request id, then CertificateAuthority::sign_request (proof of possession, P-256, subject
//    CN = the topic's device id, OU = device);
//  - 1: a real OrchestratorService (SQLite state in a scratch directory, one per process): its
//    on_message, run_once (revocation, the checks, the audit record) and send_commands; every
//    command it sends is verified as the device verifies it.
// Both use an issuing CA made once per process. Whatever is signed must name the requesting device
// and no other, and an answer must echo the request's id: anything else aborts.
#include <openssl/bio.h>
#include <openssl/pem.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "fota/client/runtime.hpp"
#include "fota/common/codec.hpp"
#include "fota/common/pki.hpp"
#include "fota/common/topics.hpp"
#include "fuzz_support.hpp"
#include "orchestrator_service.hpp"

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

// Signed certificates must be the requester's (a device id and role), whoever signed them.
void check_certificate(std::string_view chain_pem) {
  if (!common::certificate_not_after(chain_pem)) std::abort();
  auto identity = common::peer_identity_from_pem(chain_pem);
  if (!identity || identity->common_name != fuzz::kDeviceId || identity->role != common::Role::kDevice) {
    std::abort();  // signed a certificate for another identity or role
  }
}

class CapturedCommands final : public orchestrator::Publisher {
 public:
  void publish(const std::string& topic, const std::string& payload, int /*qos*/,
               std::uint32_t /*expiry_seconds*/) override {
    sent.emplace_back(topic, payload);
  }
  std::vector<std::pair<std::string, std::string>> sent;
};

struct Service {
  CapturedCommands commands;
  std::unique_ptr<orchestrator::OrchestratorService> service;
  client::OpenSslEngineCrypto device_crypto{fuzz::trust_store(), fuzz::trust_store()};

  explicit Service(std::shared_ptr<const common::CertificateAuthority> ca) {
    orchestrator::ServiceOptions options;
    options.data_dir = fuzz::scratch_dir() / "orchestrator";
    options.trust = fuzz::trust_store();
    options.command_key = std::make_shared<const common::Ed25519PrivateKey>(fuzz::signing_key());
    options.new_rollout_id = [] { return std::string("r-0000000001"); };
    options.issuing_ca = std::move(ca);
    auto opened = orchestrator::OrchestratorService::open(std::move(options), fuzz::null_logger());
    if (!opened) fuzz::fixture_failed("opening the orchestrator service", opened.error());
    service = std::move(opened).value();
    service->set_publisher(&commands);
  }
};

void through_service(Service& s, const common::DeviceId& device, const std::string& payload,
                     std::string_view request_id) {
  const common::TopicScheme topics;
  s.commands.sent.clear();
  s.service->on_message(topics.device_topic(device, common::Channel::kCertificateRequest), payload);
  (void)s.service->run_once(fuzz::kNowMs);
  while (s.service->send_commands(std::chrono::milliseconds(0)) > 0) {
  }
  for (const auto& [topic, command_payload] : s.commands.sent) {
    if (topic != topics.device_topic(device, common::Channel::kCommand)) std::abort();  // to someone else
    auto command = s.device_crypto.verify_command(command_payload);
    if (!command || !command->has_certificate_issued()) std::abort();
    if (command->certificate_issued().request_id() != request_id) std::abort();
    check_certificate(command->certificate_issued().chain_pem());
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  static const auto ca = std::make_shared<const common::CertificateAuthority>(make_issuing_ca());
  static const common::DeviceId device = common::DeviceId::parse(fuzz::kDeviceId).value();
  constexpr auto channel = common::Channel::kCertificateRequest;
  const std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);
  std::string payload;
  if ((data[0] & 1) == 0) {
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
  if (data[0] & 2) {
    static Service service(ca);
    through_service(service, device, payload, request ? request->request_id().substr(0, 64) : std::string());
    return 0;
  }
  if (!request || request->request_id().empty()) return 0;
  auto issued =
      ca->sign_request(request->csr_pem(), device.str(), common::Role::kDevice, std::chrono::hours(24 * 90));
  if (issued) check_certificate(issued->cert_pem);
  return 0;
}

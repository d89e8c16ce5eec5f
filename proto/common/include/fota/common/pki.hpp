// SPDX-License-Identifier: Apache-2.0
// The fleet PKI: an ECDSA P-256 CA and certificates whose CN is the identity and whose
// subject OU carries the role. Built with the OpenSSL API. fota_crypto library.
#pragma once

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "fota/common/result.hpp"

typedef struct x509_st X509;  // NOLINT: OpenSSL's forward declaration

namespace fota::common {

enum class Role { kDevice, kOrchestrator, kObserver, kOperator, kBroker };

std::string_view role_name(Role role) noexcept;  // "device", "orchestrator", ...
Result<Role> parse_role(std::string_view name);

struct IssueOptions {
  Role role = Role::kDevice;
  std::string common_name;
  // Validity window relative to now. A negative not_after makes an already expired certificate
  // (tests of refusal).
  std::chrono::seconds not_before{-300};
  std::chrono::seconds not_after{std::chrono::hours(24 * 825)};
  // Subject alternative names (brokers): DNS names and IP addresses.
  std::vector<std::string> dns_names;
  std::vector<std::string> ip_addresses;
  // Subject title (X.520: a person's function in the organisation), empty for none. Operator
  // certificates carry their role on the orchestrator's API here (viewer, operator, admin).
  std::string title;
};

struct IssuedCertificate {
  std::string cert_pem;
  std::string key_pem;  // PKCS#8
  std::string serial_hex;
};

struct IssuedFiles {
  std::filesystem::path cert;
  std::filesystem::path key;
};

// Files: <dir>/ca.crt, <dir>/ca.key (0600); issued certificates under <dir>/<role>/<cn>.{crt,key}.
// A root (`fotactl pki init`, kept offline) or an issuing CA signed by the root
// (`fotactl pki issue-ca NAME`: <root dir>/issuing/<NAME>/, pathlen 0, the one the orchestrator
// holds). An issuing CA's directory also holds root.crt, the trust anchor brokers and devices keep;
// certificates it issues are written with the issuing CA's certificate after the leaf, so a client
// presents the whole chain.
class CertificateAuthority {
 public:
  // Creates a new CA in `dir` (created if missing); refuses when ca.crt or ca.key exists.
  static Result<CertificateAuthority> init(const std::filesystem::path& dir,
                                           std::string_view name = "fota fleet CA");
  static Result<CertificateAuthority> open(const std::filesystem::path& dir);

  ~CertificateAuthority();
  CertificateAuthority(CertificateAuthority&&) noexcept;
  CertificateAuthority& operator=(CertificateAuthority&&) noexcept;

  const std::filesystem::path& dir() const noexcept { return dir_; }
  std::filesystem::path ca_cert_path() const { return dir_ / "ca.crt"; }
  const std::string& ca_cert_pem() const noexcept { return ca_cert_pem_; }
  // An issuing CA (its certificate is signed by another); false for a root.
  bool is_issuing() const noexcept;
  // What peers verify against: the root's certificate (this one for a root).
  std::string trust_anchor_path() const;

  // Makes an issuing CA signed by this root in <dir>/issuing/<name>/ (ca.crt, ca.key 0600,
  // root.crt). kInvalidArgument when this CA is itself an issuing one (the chain stays one level
  // deep: pathlen 0), kAlreadyExists when that directory holds a CA.
  Result<std::filesystem::path> create_issuing_ca(std::string_view name, std::chrono::seconds validity) const;

  // Issues in memory. Validates the CN: a DeviceId for devices, the same rules for others.
  Result<IssuedCertificate> issue(const IssueOptions& options) const;
  // Issues and writes <dir>/<role>/<cn>.crt and .key (0600); refuses to overwrite.
  Result<IssuedFiles> issue_to_files(const IssueOptions& options) const;
  // Where issue_to_files puts the files of a role and name.
  IssuedFiles paths_for(Role role, std::string_view common_name) const;

  // Signs a certificate request (PEM) for renewal: the request's signature must verify with its
  // own key (proof of possession), the key must be ECDSA P-256, and its subject must be exactly
  // CN = `common_name`, OU = role_name(`role`) (kPermissionDenied otherwise: a device asking for
  // another identity). The certificate gets the request's key and this CA's usual extensions;
  // cert_pem is the chain (leaf, then this CA when it is an issuing one); key_pem stays empty.
  Result<IssuedCertificate> sign_request(std::string_view csr_pem, std::string_view common_name, Role role,
                                         std::chrono::seconds validity) const;

 private:
  struct Impl;
  CertificateAuthority(std::filesystem::path dir, std::string ca_pem, std::unique_ptr<Impl> impl);
  std::filesystem::path dir_;
  std::string ca_cert_pem_;
  std::unique_ptr<Impl> impl_;
};

// A new P-256 key (PKCS#8 PEM) and a certificate request for it with subject O = fota,
// OU = role_name(role), CN = common_name, signed with that key (a device renewing its certificate).
struct CertificateRequest {
  std::string key_pem;
  std::string csr_pem;
};
Result<CertificateRequest> make_certificate_request(std::string_view common_name, Role role);

// Who a verified peer certificate says it is.
struct PeerIdentity {
  std::string common_name;
  Role role = Role::kDevice;
  std::string serial_hex;  // uppercase hex without separators
};

// Reads CN, role (subject OU) and serial from a certificate. kInvalidArgument when the CN or
// the role is missing or not valid.
Result<PeerIdentity> peer_identity(const X509* certificate);
Result<PeerIdentity> peer_identity_from_pem(std::string_view cert_pem);
// The subject title of a certificate; empty when it has none. kInvalidArgument when it has two
// (ambiguous, like a second CN or OU).
Result<std::string> certificate_title(const X509* certificate);

// Checks a certificate chain (PEM, leaf first, then intermediates) against the trust anchor
// (`ca_pem`, one or more PEM certificates) at `now` (seconds since the epoch), and that the leaf's
// public key is the one in `key_pem` (a private key). Returns the leaf's identity and its
// validity end. kIntegrity / kPermissionDenied with what did not match.
struct VerifiedChain {
  PeerIdentity identity;
  std::int64_t not_after = 0;  // seconds since the epoch
};
Result<VerifiedChain> verify_certificate_chain(std::string_view chain_pem, std::string_view ca_pem,
                                               std::string_view key_pem, std::int64_t now);
// The validity end of the first certificate in `cert_pem` (seconds since the epoch).
Result<std::int64_t> certificate_not_after(std::string_view cert_pem);

}  // namespace fota::common

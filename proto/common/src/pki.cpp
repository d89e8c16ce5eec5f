// SPDX-License-Identifier: Apache-2.0
#include "fota/common/pki.hpp"

#include <openssl/bn.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

#include <ctime>
#include <optional>

#include "fota/common/crypto.hpp"
#include "fota/common/topics.hpp"
#include "openssl_util.hpp"

namespace fota::common {
namespace fs = std::filesystem;
using detail::crypto_error;
using detail::EvpPkeyPtr;
using detail::X509Ptr;

namespace {

constexpr Role kAllRoles[] = {Role::kDevice, Role::kOrchestrator, Role::kObserver, Role::kOperator,
                              Role::kBroker};

EvpPkeyPtr generate_p256() { return EvpPkeyPtr(EVP_EC_gen("P-256")); }

std::string key_to_pem(EVP_PKEY* key) {
  detail::BioPtr bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr);
  return detail::bio_to_string(bio.get());
}

std::string cert_to_pem(X509* cert) {
  detail::BioPtr bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_X509(bio.get(), cert);
  return detail::bio_to_string(bio.get());
}

Status add_extension(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
  if (ext == nullptr) return crypto_error("building certificate extension " + value);
  X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
  return ok_status();
}

std::string serial_hex_of(const X509* cert) {
  const ASN1_INTEGER* serial = X509_get0_serialNumber(cert);
  BIGNUM* bn = ASN1_INTEGER_to_BN(serial, nullptr);
  char* hex = BN_bn2hex(bn);
  std::string out = hex ? hex : "";
  OPENSSL_free(hex);
  BN_free(bn);
  return out;
}

// Builds and signs a certificate for `subject_key`.
// ca_pathlen: how many CAs may follow this one (a root: 1, an issuing CA: 0); -1 = a leaf.
Result<X509Ptr> make_certificate(EVP_PKEY* subject_key, const std::string& cn, std::string_view ou,
                                 X509* issuer, EVP_PKEY* issuer_key, const IssueOptions& options,
                                 int ca_pathlen) {
  X509Ptr cert(X509_new());
  X509_set_version(cert.get(), 2);
  unsigned char serial[16];
  RAND_bytes(serial, sizeof(serial));
  serial[0] &= 0x7f;  // positive
  BIGNUM* bn = BN_bin2bn(serial, sizeof(serial), nullptr);
  BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert.get()));
  BN_free(bn);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), static_cast<long>(options.not_before.count()));
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), static_cast<long>(options.not_after.count()));
  X509_set_pubkey(cert.get(), subject_key);
  X509_NAME* name = X509_get_subject_name(cert.get());
  auto add = [&](const char* field, const std::string& value) {
    X509_NAME_add_entry_by_txt(name, field, MBSTRING_UTF8,
                               reinterpret_cast<const unsigned char*>(value.c_str()), -1, -1, 0);
  };
  add("O", "fota");
  add("OU", std::string(ou));
  add("CN", cn);
  if (!options.title.empty()) add("title", options.title);
  X509_set_issuer_name(cert.get(), issuer ? X509_get_subject_name(issuer) : name);
  X509* issuer_cert = issuer ? issuer : cert.get();
  Status st;
  if (ca_pathlen >= 0) {
    st = add_extension(cert.get(), issuer_cert, NID_basic_constraints,
                       "critical,CA:TRUE,pathlen:" + std::to_string(ca_pathlen));
    if (st) st = add_extension(cert.get(), issuer_cert, NID_key_usage, "critical,keyCertSign,cRLSign");
  } else {
    st = add_extension(cert.get(), issuer_cert, NID_basic_constraints, "critical,CA:FALSE");
    if (st) st = add_extension(cert.get(), issuer_cert, NID_key_usage, "critical,digitalSignature");
    if (st) st = add_extension(cert.get(), issuer_cert, NID_ext_key_usage, "clientAuth,serverAuth");
  }
  if (st) st = add_extension(cert.get(), issuer_cert, NID_subject_key_identifier, "hash");
  if (st && issuer) st = add_extension(cert.get(), issuer_cert, NID_authority_key_identifier, "keyid:always");
  if (st && (!options.dns_names.empty() || !options.ip_addresses.empty())) {
    std::string san;
    for (const auto& dns : options.dns_names) san += (san.empty() ? "DNS:" : ",DNS:") + dns;
    for (const auto& ip : options.ip_addresses) san += (san.empty() ? "IP:" : ",IP:") + ip;
    st = add_extension(cert.get(), issuer_cert, NID_subject_alt_name, san);
  }
  if (!st) return st.error();
  if (X509_sign(cert.get(), issuer_key, EVP_sha256()) == 0) return crypto_error("signing the certificate");
  return cert;
}

// Every certificate in a PEM text, in order.
std::vector<X509Ptr> read_certificates(std::string_view pem) {
  std::vector<X509Ptr> out;
  auto bio = detail::memory_bio(pem);
  while (X509* cert = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) out.emplace_back(cert);
  ERR_clear_error();  // the end of the text reads as an error
  return out;
}

std::int64_t not_after_of(const X509* cert) {
  std::tm tm{};
  if (ASN1_TIME_to_tm(X509_get0_notAfter(cert), &tm) != 1) return 0;
  return static_cast<std::int64_t>(timegm(&tm));
}

bool self_issued(X509* cert) {
  return X509_NAME_cmp(X509_get_subject_name(cert), X509_get_issuer_name(cert)) == 0;
}

// The one entry of a subject field: empty when absent, nullopt when it appears twice (a second
// entry of the same field makes the identity ambiguous).
std::optional<std::string> name_field(const X509_NAME* name, int nid) {
  int idx = X509_NAME_get_index_by_NID(name, nid, -1);
  if (idx < 0) return std::string();
  if (X509_NAME_get_index_by_NID(name, nid, idx) >= 0) return std::nullopt;
  const ASN1_STRING* data = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, idx));
  return std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(data)),
                     static_cast<std::size_t>(ASN1_STRING_length(data)));
}

std::optional<std::string> subject_field(const X509* certificate, int nid) {
  return name_field(X509_get_subject_name(certificate), nid);
}

}  // namespace

std::string_view role_name(Role role) noexcept {
  switch (role) {
    case Role::kDevice:
      return "device";
    case Role::kOrchestrator:
      return "orchestrator";
    case Role::kObserver:
      return "observer";
    case Role::kOperator:
      return "operator";
    case Role::kBroker:
      return "broker";
  }
  return "unknown";
}

Result<Role> parse_role(std::string_view name) {
  for (Role role : kAllRoles) {
    if (role_name(role) == name) return role;
  }
  return Error(Errc::kInvalidArgument, "unknown role \"" + std::string(name.substr(0, 32)) +
                                           "\"; expected device, orchestrator, observer, operator or broker");
}

struct CertificateAuthority::Impl {
  EvpPkeyPtr key;
  X509Ptr cert;
  bool issuing = false;  // signed by a root, not self-signed
};

bool CertificateAuthority::is_issuing() const noexcept { return impl_->issuing; }

std::string CertificateAuthority::trust_anchor_path() const {
  return (dir_ / (impl_->issuing ? "root.crt" : "ca.crt")).string();
}

CertificateAuthority::CertificateAuthority(fs::path dir, std::string ca_pem, std::unique_ptr<Impl> impl)
    : dir_(std::move(dir)), ca_cert_pem_(std::move(ca_pem)), impl_(std::move(impl)) {}
CertificateAuthority::~CertificateAuthority() = default;
CertificateAuthority::CertificateAuthority(CertificateAuthority&&) noexcept = default;
CertificateAuthority& CertificateAuthority::operator=(CertificateAuthority&&) noexcept = default;

Result<CertificateAuthority> CertificateAuthority::init(const fs::path& dir, std::string_view name) {
  std::error_code ec;
  for (const char* f : {"ca.crt", "ca.key"}) {
    if (fs::exists(dir / f, ec)) {
      return Error(
          Errc::kAlreadyExists,
          (dir / f).string() + " already exists; this directory already holds a CA (use another --dir)");
    }
  }
  auto impl = std::make_unique<Impl>();
  impl->key = generate_p256();
  if (!impl->key) return crypto_error("generating the CA key");
  IssueOptions options;
  options.not_after = std::chrono::hours(24 * 365 * 10);
  // pathlen 1: one issuing CA (`fotactl pki issue-ca`) may stand between the root and a leaf.
  auto cert =
      make_certificate(impl->key.get(), std::string(name), "ca", nullptr, impl->key.get(), options, 1);
  if (!cert) return cert.error();
  impl->cert = std::move(cert).value();
  std::string pem = cert_to_pem(impl->cert.get());
  fs::create_directories(dir, ec);
  if (auto st = write_new_file(dir / "ca.key", key_to_pem(impl->key.get()), 0600); !st) return st.error();
  if (auto st = write_new_file(dir / "ca.crt", pem, 0644); !st) return st.error();
  return CertificateAuthority(dir, std::move(pem), std::move(impl));
}

Result<CertificateAuthority> CertificateAuthority::open(const fs::path& dir) {
  auto cert_pem = read_file(dir / "ca.crt", 64 * 1024);
  if (!cert_pem)
    return cert_pem.error().with_context("no CA in " + dir.string() + " (run `fotactl pki init` first)");
  auto key_pem = read_file(dir / "ca.key", 64 * 1024);
  if (!key_pem) return key_pem.error().with_context("the CA key is missing");
  auto impl = std::make_unique<Impl>();
  auto cbio = detail::memory_bio(*cert_pem);
  impl->cert.reset(PEM_read_bio_X509(cbio.get(), nullptr, nullptr, nullptr));
  auto kbio = detail::memory_bio(*key_pem);
  impl->key.reset(PEM_read_bio_PrivateKey(kbio.get(), nullptr, nullptr, nullptr));
  if (!impl->cert || !impl->key) return crypto_error("reading the CA in " + dir.string());
  if (X509_check_private_key(impl->cert.get(), impl->key.get()) != 1) {
    return crypto_error("ca.key does not belong to ca.crt in " + dir.string());
  }
  impl->issuing = !self_issued(impl->cert.get());
  return CertificateAuthority(dir, std::move(cert_pem).value(), std::move(impl));
}

Result<IssuedCertificate> CertificateAuthority::issue(const IssueOptions& options) const {
  // Every identity obeys the device-id rules: it becomes an MQTT client id and a file name.
  auto id = DeviceId::parse(options.common_name);
  if (!id) return id.error().with_context(std::string(role_name(options.role)) + " name");
  EvpPkeyPtr key = generate_p256();
  if (!key) return crypto_error("generating a P-256 key");
  auto cert = make_certificate(key.get(), options.common_name, role_name(options.role), impl_->cert.get(),
                               impl_->key.get(), options, -1);
  if (!cert) return cert.error();
  // From an issuing CA the chain goes with the leaf: peers hold only the root.
  return IssuedCertificate{cert_to_pem(cert->get()) + (impl_->issuing ? ca_cert_pem_ : std::string()),
                           key_to_pem(key.get()), serial_hex_of(cert->get())};
}

Result<std::filesystem::path> CertificateAuthority::create_issuing_ca(std::string_view name,
                                                                      std::chrono::seconds validity) const {
  if (impl_->issuing) {
    return Error(Errc::kInvalidArgument, dir_.string() +
                                             " is an issuing CA; issuing CAs are made by the root "
                                             "(`fotactl pki issue-ca NAME --dir ROOT_DIR`)");
  }
  auto id = DeviceId::parse(name);
  if (!id) return id.error().with_context("issuing CA name");
  if (validity.count() <= 0)
    return Error(Errc::kInvalidArgument, "the issuing CA's validity must be positive");
  const fs::path dir = dir_ / "issuing" / std::string(name);
  std::error_code ec;
  for (const char* f : {"ca.crt", "ca.key"}) {
    if (fs::exists(dir / f, ec)) {
      return Error(Errc::kAlreadyExists,
                   (dir / f).string() + " already exists; choose another name for a new issuing CA");
    }
  }
  EvpPkeyPtr key = generate_p256();
  if (!key) return crypto_error("generating the issuing CA key");
  IssueOptions options;
  options.not_after = validity;
  auto cert =
      make_certificate(key.get(), std::string(name), "ca", impl_->cert.get(), impl_->key.get(), options, 0);
  if (!cert) return cert.error();
  fs::create_directories(dir, ec);
  if (auto st = write_new_file(dir / "ca.key", key_to_pem(key.get()), 0600); !st) return st.error();
  if (auto st = write_new_file(dir / "ca.crt", cert_to_pem(cert->get()), 0644); !st) return st.error();
  if (auto st = write_new_file(dir / "root.crt", ca_cert_pem_, 0644); !st) return st.error();
  return dir;
}

Result<IssuedCertificate> CertificateAuthority::sign_request(std::string_view csr_pem,
                                                             std::string_view common_name, Role role,
                                                             std::chrono::seconds validity) const {
  using X509ReqPtr = std::unique_ptr<X509_REQ, detail::Deleter<X509_REQ_free>>;
  auto bio = detail::memory_bio(csr_pem);
  X509ReqPtr req(PEM_read_bio_X509_REQ(bio.get(), nullptr, nullptr, nullptr));
  if (!req) {
    detail::openssl_error();
    return Error(Errc::kMalformed, "the certificate request is not a PEM CERTIFICATE REQUEST");
  }
  EVP_PKEY* key = X509_REQ_get0_pubkey(req.get());
  if (key == nullptr || X509_REQ_verify(req.get(), key) != 1) {
    detail::openssl_error();
    return Error(
        Errc::kBadSignature,
        "the certificate request's signature does not verify with its own key (no proof of possession)");
  }
  char group[64] = {};
  std::size_t group_len = 0;
  if (!EVP_PKEY_is_a(key, "EC") ||
      EVP_PKEY_get_utf8_string_param(key, "group", group, sizeof(group), &group_len) != 1 ||
      std::string_view(group, group_len) != "prime256v1") {
    ERR_clear_error();
    return Error(Errc::kInvalidArgument,
                 "the certificate request's key is not ECDSA P-256; make a P-256 key");
  }
  const X509_NAME* subject = X509_REQ_get_subject_name(req.get());
  const auto cn = name_field(subject, NID_commonName);
  const auto ou = name_field(subject, NID_organizationalUnitName);
  if (!cn || *cn != common_name) {
    return Error(Errc::kPermissionDenied, "the certificate request is for CN \"" +
                                              cn.value_or("(two CNs)").substr(0, 64) +
                                              "\" but comes from \"" + std::string(common_name) +
                                              "\": a client renews only its own certificate");
  }
  if (!ou || *ou != role_name(role)) {
    return Error(Errc::kPermissionDenied,
                 "the certificate request asks for role (OU) \"" + ou.value_or("(two OUs)").substr(0, 32) +
                     "\" but its sender is a " + std::string(role_name(role)) + ": a renewal keeps the role");
  }
  if (validity.count() <= 0) return Error(Errc::kInvalidArgument, "the validity must be positive");
  IssueOptions options;
  options.role = role;
  options.common_name = std::string(common_name);
  options.not_after = validity;
  auto cert = make_certificate(key, options.common_name, role_name(role), impl_->cert.get(), impl_->key.get(),
                               options, -1);
  if (!cert) return cert.error();
  return IssuedCertificate{cert_to_pem(cert->get()) + (impl_->issuing ? ca_cert_pem_ : std::string()), "",
                           serial_hex_of(cert->get())};
}

Result<CertificateRequest> make_certificate_request(std::string_view common_name, Role role) {
  auto id = DeviceId::parse(common_name);
  if (!id) return id.error().with_context("certificate request name");
  using X509ReqPtr = std::unique_ptr<X509_REQ, detail::Deleter<X509_REQ_free>>;
  EvpPkeyPtr key = generate_p256();
  if (!key) return crypto_error("generating a P-256 key");
  X509ReqPtr req(X509_REQ_new());
  X509_REQ_set_version(req.get(), 0);
  X509_NAME* name = X509_REQ_get_subject_name(req.get());
  auto add = [&](const char* field, std::string_view value) {
    X509_NAME_add_entry_by_txt(name, field, MBSTRING_UTF8,
                               reinterpret_cast<const unsigned char*>(value.data()),
                               static_cast<int>(value.size()), -1, 0);
  };
  add("O", "fota");
  add("OU", role_name(role));
  add("CN", common_name);
  if (X509_REQ_set_pubkey(req.get(), key.get()) != 1 ||
      X509_REQ_sign(req.get(), key.get(), EVP_sha256()) == 0)
    return crypto_error("signing the certificate request");
  detail::BioPtr bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_X509_REQ(bio.get(), req.get());
  return CertificateRequest{key_to_pem(key.get()), detail::bio_to_string(bio.get())};
}

Result<VerifiedChain> verify_certificate_chain(std::string_view chain_pem, std::string_view ca_pem,
                                               std::string_view key_pem, std::int64_t now) {
  using StorePtr = std::unique_ptr<X509_STORE, detail::Deleter<X509_STORE_free>>;
  using StoreCtxPtr = std::unique_ptr<X509_STORE_CTX, detail::Deleter<X509_STORE_CTX_free>>;
  struct StackFree {
    void operator()(STACK_OF(X509) * stack) const noexcept { sk_X509_free(stack); }
  };
  using StackPtr = std::unique_ptr<STACK_OF(X509), StackFree>;
  auto chain = read_certificates(chain_pem);
  if (chain.empty()) return Error(Errc::kMalformed, "the certificate chain holds no PEM certificate");
  auto anchors = read_certificates(ca_pem);
  if (anchors.empty()) return Error(Errc::kInvalidArgument, "the trusted CA file holds no PEM certificate");
  StorePtr store(X509_STORE_new());
  for (auto& anchor : anchors) X509_STORE_add_cert(store.get(), anchor.get());
  StackPtr untrusted(sk_X509_new_null());
  for (std::size_t i = 1; i < chain.size(); ++i) sk_X509_push(untrusted.get(), chain[i].get());
  StoreCtxPtr ctx(X509_STORE_CTX_new());
  if (!ctx || X509_STORE_CTX_init(ctx.get(), store.get(), chain[0].get(), untrusted.get()) != 1)
    return crypto_error("setting up certificate verification");
  X509_VERIFY_PARAM_set_time(X509_STORE_CTX_get0_param(ctx.get()), static_cast<time_t>(now));
  X509_STORE_CTX_set_purpose(ctx.get(), X509_PURPOSE_SSL_CLIENT);
  if (X509_verify_cert(ctx.get()) != 1) {
    const int err = X509_STORE_CTX_get_error(ctx.get());
    ERR_clear_error();
    return Error(Errc::kIntegrity,
                 std::string("the certificate chain does not verify against the trusted CA: ") +
                     X509_verify_cert_error_string(err));
  }
  auto kbio = detail::memory_bio(key_pem);
  EvpPkeyPtr key(PEM_read_bio_PrivateKey(kbio.get(), nullptr, nullptr, nullptr));
  if (!key) return crypto_error("reading the private key");
  if (EVP_PKEY_eq(X509_get0_pubkey(chain[0].get()), key.get()) != 1) {
    ERR_clear_error();
    return Error(Errc::kPermissionDenied,
                 "the certificate is for another public key than the one this client made");
  }
  auto identity = peer_identity(chain[0].get());
  if (!identity) return identity.error();
  return VerifiedChain{std::move(identity).value(), not_after_of(chain[0].get())};
}

Result<std::int64_t> certificate_not_after(std::string_view cert_pem) {
  auto certs = read_certificates(cert_pem);
  if (certs.empty()) return Error(Errc::kMalformed, "not a PEM certificate");
  return not_after_of(certs.front().get());
}

IssuedFiles CertificateAuthority::paths_for(Role role, std::string_view common_name) const {
  fs::path base = dir_ / std::string(role_name(role));
  return IssuedFiles{base / (std::string(common_name) + ".crt"), base / (std::string(common_name) + ".key")};
}

Result<IssuedFiles> CertificateAuthority::issue_to_files(const IssueOptions& options) const {
  auto id = DeviceId::parse(options.common_name);
  if (!id) return id.error().with_context(std::string(role_name(options.role)) + " name");
  IssuedFiles files = paths_for(options.role, options.common_name);
  std::error_code ec;
  for (const auto& p : {files.cert, files.key}) {
    if (fs::exists(p, ec)) {
      return Error(Errc::kAlreadyExists,
                   p.string() + " already exists; refusing to overwrite (revoke and remove it first)");
    }
  }
  auto issued = issue(options);
  if (!issued) return issued.error();
  if (auto st = write_new_file(files.key, issued->key_pem, 0600); !st) return st.error();
  if (auto st = write_new_file(files.cert, issued->cert_pem, 0644); !st) return st.error();
  return files;
}

Result<PeerIdentity> peer_identity(const X509* certificate) {
  if (certificate == nullptr) return Error(Errc::kInvalidArgument, "no client certificate");
  auto field = [&](int nid) { return subject_field(certificate, nid).value_or(""); };
  std::string cn = field(NID_commonName);
  auto id = DeviceId::parse(cn);
  if (!id) return id.error().with_context("certificate common name");
  auto role = parse_role(field(NID_organizationalUnitName));
  if (!role) return role.error().with_context("certificate OU");
  return PeerIdentity{cn, *role, serial_hex_of(certificate)};
}

Result<std::string> certificate_title(const X509* certificate) {
  if (certificate == nullptr) return Error(Errc::kInvalidArgument, "no certificate");
  auto title = subject_field(certificate, NID_title);
  if (!title) return Error(Errc::kInvalidArgument, "the certificate subject has two titles");
  return *title;
}

Result<PeerIdentity> peer_identity_from_pem(std::string_view cert_pem) {
  auto bio = detail::memory_bio(cert_pem);
  X509Ptr cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  if (!cert) {
    detail::openssl_error();
    return Error(Errc::kInvalidArgument, "not a PEM certificate");
  }
  return peer_identity(cert.get());
}

}  // namespace fota::common

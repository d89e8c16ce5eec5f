// SPDX-License-Identifier: Apache-2.0
#include <sys/stat.h>

#include <gtest/gtest.h>

#include <chrono>

#include "fota/common/crypto.hpp"
#include "fota/common/pki.hpp"
#include "fota/testing/broker.hpp"

namespace fota::common {
namespace {

TEST(Pki, InitIssuesAndReadsIdentity) {
  testing::TempDir dir;
  auto ca = CertificateAuthority::init(dir.path() / "pki");
  ASSERT_TRUE(ca.ok()) << ca.error().message;
  struct stat st {};
  ASSERT_EQ(::stat((dir.path() / "pki" / "ca.key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  IssueOptions options;
  options.role = Role::kDevice;
  options.common_name = "dev-42";
  auto files = ca->issue_to_files(options);
  ASSERT_TRUE(files.ok()) << files.error().message;
  ASSERT_EQ(::stat(files->key.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto identity = peer_identity_from_pem(read_file(files->cert).value());
  ASSERT_TRUE(identity.ok()) << identity.error().message;
  EXPECT_EQ(identity->common_name, "dev-42");
  EXPECT_EQ(identity->role, Role::kDevice);
  EXPECT_FALSE(identity->serial_hex.empty());

  // Re-open and issue another role.
  auto reopened = CertificateAuthority::open(dir.path() / "pki");
  ASSERT_TRUE(reopened.ok());
  options.role = Role::kOrchestrator;
  options.common_name = "orch";
  auto issued = reopened->issue(options);
  ASSERT_TRUE(issued.ok());
  EXPECT_EQ(peer_identity_from_pem(issued->cert_pem)->role, Role::kOrchestrator);
}

TEST(Pki, RefusesOverwriteAndBadNames) {
  testing::TempDir dir;
  auto ca = CertificateAuthority::init(dir.path());
  ASSERT_TRUE(ca.ok());
  EXPECT_EQ(CertificateAuthority::init(dir.path()).error().code, Errc::kAlreadyExists);
  IssueOptions options;
  options.common_name = "dev-1";
  ASSERT_TRUE(ca->issue_to_files(options).ok());
  EXPECT_EQ(ca->issue_to_files(options).error().code, Errc::kAlreadyExists);
  for (const char* bad : {"", "a/b", "+", "#", "../x"}) {
    options.common_name = bad;
    EXPECT_FALSE(ca->issue(options).ok()) << bad;
  }
  EXPECT_EQ(CertificateAuthority::open(dir.path() / "missing").error().code, Errc::kNotFound);
}

TEST(Pki, Roles) {
  for (Role role : {Role::kDevice, Role::kOrchestrator, Role::kObserver, Role::kOperator, Role::kBroker}) {
    EXPECT_EQ(parse_role(role_name(role)).value(), role);
  }
  EXPECT_FALSE(parse_role("admin").ok());
}

std::int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

TEST(Pki, IssuingCaSignsLeavesThatVerifyAgainstTheRootWithTheirChain) {
  testing::TempDir dir;
  auto root = CertificateAuthority::init(dir.path() / "pki");
  ASSERT_TRUE(root.ok());
  EXPECT_FALSE(root->is_issuing());
  auto issuing_dir = root->create_issuing_ca("issuing-1", std::chrono::hours(24 * 365));
  ASSERT_TRUE(issuing_dir.ok()) << issuing_dir.error().message;
  EXPECT_EQ(*issuing_dir, dir.path() / "pki" / "issuing" / "issuing-1");
  struct stat st {};
  ASSERT_EQ(::stat((*issuing_dir / "ca.key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(read_file(*issuing_dir / "root.crt").value(), root->ca_cert_pem());
  EXPECT_EQ(root->create_issuing_ca("issuing-1", std::chrono::hours(1)).error().code, Errc::kAlreadyExists);

  auto issuing = CertificateAuthority::open(*issuing_dir);
  ASSERT_TRUE(issuing.ok()) << issuing.error().message;
  EXPECT_TRUE(issuing->is_issuing());
  EXPECT_EQ(issuing->trust_anchor_path(), (*issuing_dir / "root.crt").string());
  // pathlen 0: no CA below the issuing one.
  EXPECT_EQ(issuing->create_issuing_ca("deeper", std::chrono::hours(1)).error().code, Errc::kInvalidArgument);

  IssueOptions options;
  options.common_name = "dev-1";
  auto leaf = issuing->issue(options);
  ASSERT_TRUE(leaf.ok());
  // The chain travels with the leaf.
  EXPECT_EQ(leaf->cert_pem.find(issuing->ca_cert_pem()),
            leaf->cert_pem.size() - issuing->ca_cert_pem().size());
  auto verified = verify_certificate_chain(leaf->cert_pem, root->ca_cert_pem(), leaf->key_pem, unix_now());
  ASSERT_TRUE(verified.ok()) << verified.error().message;
  EXPECT_EQ(verified->identity.common_name, "dev-1");
  EXPECT_GT(verified->not_after, unix_now() + 800 * 86400);
  // Without the intermediate, or against another root, it does not verify.
  const std::string bare = leaf->cert_pem.substr(0, leaf->cert_pem.size() - issuing->ca_cert_pem().size());
  EXPECT_EQ(verify_certificate_chain(bare, root->ca_cert_pem(), leaf->key_pem, unix_now()).error().code,
            Errc::kIntegrity);
  auto other_root = CertificateAuthority::init(dir.path() / "other");
  ASSERT_TRUE(other_root.ok());
  EXPECT_EQ(verify_certificate_chain(leaf->cert_pem, other_root->ca_cert_pem(), leaf->key_pem, unix_now())
                .error()
                .code,
            Errc::kIntegrity);
  // After it expires it does not verify either.
  EXPECT_FALSE(
      verify_certificate_chain(leaf->cert_pem, root->ca_cert_pem(), leaf->key_pem, unix_now() + 900LL * 86400)
          .ok());
  // A key that is not the certificate's.
  auto other_leaf = issuing->issue(options);
  ASSERT_TRUE(other_leaf.ok());
  EXPECT_EQ(verify_certificate_chain(leaf->cert_pem, root->ca_cert_pem(), other_leaf->key_pem, unix_now())
                .error()
                .code,
            Errc::kPermissionDenied);
}

TEST(Pki, SignRequestRenewsOnlyTheSendersOwnIdentityAndRole) {
  testing::TempDir dir;
  auto root = CertificateAuthority::init(dir.path() / "pki");
  ASSERT_TRUE(root.ok());
  auto issuing = CertificateAuthority::open(*root->create_issuing_ca("issuing-1", std::chrono::hours(24)));
  ASSERT_TRUE(issuing.ok());

  auto request = make_certificate_request("dev-1", Role::kDevice);
  ASSERT_TRUE(request.ok()) << request.error().message;
  auto signed_cert =
      issuing->sign_request(request->csr_pem, "dev-1", Role::kDevice, std::chrono::hours(24 * 30));
  ASSERT_TRUE(signed_cert.ok()) << signed_cert.error().message;
  EXPECT_TRUE(signed_cert->key_pem.empty());
  auto verified =
      verify_certificate_chain(signed_cert->cert_pem, root->ca_cert_pem(), request->key_pem, unix_now());
  ASSERT_TRUE(verified.ok()) << verified.error().message;
  EXPECT_EQ(verified->identity.common_name, "dev-1");
  EXPECT_EQ(verified->identity.role, Role::kDevice);
  EXPECT_NEAR(static_cast<double>(verified->not_after), static_cast<double>(unix_now() + 30 * 86400), 60.0);

  // Another device's identity, another role, a request that is not one, a tampered request.
  auto refused = issuing->sign_request(request->csr_pem, "dev-2", Role::kDevice, std::chrono::hours(1));
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, Errc::kPermissionDenied);
  EXPECT_NE(refused.error().message.find("dev-2"), std::string::npos) << refused.error().message;
  auto as_orchestrator = make_certificate_request("dev-1", Role::kOrchestrator);
  ASSERT_TRUE(as_orchestrator.ok());
  refused = issuing->sign_request(as_orchestrator->csr_pem, "dev-1", Role::kDevice, std::chrono::hours(1));
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, Errc::kPermissionDenied);
  EXPECT_NE(refused.error().message.find("orchestrator"), std::string::npos) << refused.error().message;
  EXPECT_EQ(
      issuing->sign_request("not a request", "dev-1", Role::kDevice, std::chrono::hours(1)).error().code,
      Errc::kMalformed);
  std::string tampered = request->csr_pem;
  tampered[tampered.size() / 2] = tampered[tampered.size() / 2] == 'A' ? 'B' : 'A';
  EXPECT_FALSE(issuing->sign_request(tampered, "dev-1", Role::kDevice, std::chrono::hours(1)).ok());
}

}  // namespace
}  // namespace fota::common

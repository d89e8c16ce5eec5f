// SPDX-License-Identifier: Apache-2.0
#include <sys/stat.h>

#include <gtest/gtest.h>

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

}  // namespace
}  // namespace fota::common

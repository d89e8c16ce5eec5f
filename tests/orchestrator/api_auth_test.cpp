// SPDX-License-Identifier: Apache-2.0
// Who calls the API and in which role (ApiAuthenticator), with real certificates of a fleet CA.
#include <openssl/pem.h>

#include <gtest/gtest.h>

#include <memory>
#include <optional>

#include "api_auth.hpp"
#include "fota/testing/broker.hpp"

namespace fota::orchestrator {
namespace {

using X509Ptr = std::unique_ptr<X509, decltype(&X509_free)>;

X509Ptr parse(const std::string& pem) {
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  X509Ptr cert(PEM_read_bio_X509(bio, nullptr, nullptr, nullptr), &X509_free);
  BIO_free(bio);
  return cert;
}

class ApiAuthTest : public ::testing::Test {
 protected:
  X509Ptr issue(common::Role role, const std::string& cn, const std::string& title) {
    common::IssueOptions options;
    options.role = role;
    options.common_name = cn;
    options.title = title;
    auto issued = ca_->issue(options);
    EXPECT_TRUE(issued.ok());
    return parse(issued->cert_pem);
  }
  void SetUp() override {
    auto ca = common::CertificateAuthority::init(dir_.path() / "pki");
    ASSERT_TRUE(ca.ok()) << ca.error().message;
    ca_.emplace(std::move(ca).value());
  }
  fota::testing::TempDir dir_;
  std::optional<common::CertificateAuthority> ca_;
  ApiAuthenticator auth_{{{"alice", "alice-token-0123456789", ApiRole::kOperator},
                          {"root", "root-token-0123456789ab", ApiRole::kAdmin}}};
};

TEST_F(ApiAuthTest, TokensCarryTheRoleTheConfigBindsThemTo) {
  auto alice = auth_.identify("Bearer alice-token-0123456789", nullptr);
  ASSERT_TRUE(alice.ok());
  EXPECT_EQ(alice->actor, "token:alice");
  EXPECT_EQ(alice->role, ApiRole::kOperator);
  auto root = auth_.identify("Bearer root-token-0123456789ab", nullptr);
  ASSERT_TRUE(root.ok());
  EXPECT_EQ(root->role, ApiRole::kAdmin);
  EXPECT_TRUE(api_role_grants(ApiRole::kAdmin, ApiRole::kOperator));
  EXPECT_FALSE(api_role_grants(ApiRole::kOperator, ApiRole::kAdmin));
  EXPECT_FALSE(api_role_grants(ApiRole::kViewer, ApiRole::kOperator));
}

TEST_F(ApiAuthTest, WrongOrMissingCredentialsAre401AndATokenDecidesOverACertificate) {
  const auto admin = issue(common::Role::kOperator, "ada", "admin");
  for (const char* header :
       {"Bearer alice-token-012345678", "Bearer ", "Basic YWxpY2U6eA==", "alice-token-0123456789"}) {
    auto caller = auth_.identify(header, admin.get());
    ASSERT_FALSE(caller.ok()) << header;
    EXPECT_EQ(caller.error().code, common::Errc::kInvalidArgument) << header;
  }
  auto none = auth_.identify("", nullptr);
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.error().message.find("missing credentials"), std::string::npos);
  auto token = auth_.identify("Bearer alice-token-0123456789", admin.get());
  ASSERT_TRUE(token.ok());
  EXPECT_EQ(token->actor, "token:alice");
}

TEST_F(ApiAuthTest, OperatorCertificatesCarryTheirRoleInTheTitle) {
  const struct {
    const char* title;
    ApiRole role;
  } cases[] = {{"viewer", ApiRole::kViewer},
               {"operator", ApiRole::kOperator},
               {"admin", ApiRole::kAdmin},
               {"", ApiRole::kOperator}};  // made before API roles: an operator
  for (const auto& c : cases) {
    const auto cert = issue(common::Role::kOperator, "ada", c.title);
    auto caller = auth_.identify("", cert.get());
    ASSERT_TRUE(caller.ok()) << c.title << ": " << caller.error().message;
    EXPECT_EQ(caller->actor, "cert:ada");
    EXPECT_EQ(caller->role, c.role) << c.title;
  }
}

TEST_F(ApiAuthTest, CertificatesOfOtherRolesOrUnknownTitlesAre403AndABrokerIsOnlyAnEdge) {
  for (common::Role role : {common::Role::kDevice, common::Role::kOrchestrator, common::Role::kObserver}) {
    const auto cert = issue(role, "someone", "admin");
    auto caller = auth_.identify("", cert.get());
    ASSERT_FALSE(caller.ok()) << common::role_name(role);
    EXPECT_EQ(caller.error().code, common::Errc::kPermissionDenied);
    EXPECT_NE(caller.error().message.find("cannot use the API"), std::string::npos) << caller.error().message;
  }
  // A broker certificate is an edge broker's: whatever its title, it may download artifact
  // bundles and nothing else (ApiRole::kEdge is below viewer).
  const auto edge = issue(common::Role::kBroker, "edge-1", "admin");
  auto edge_caller = auth_.identify("", edge.get());
  ASSERT_TRUE(edge_caller.ok()) << edge_caller.error().message;
  EXPECT_EQ(edge_caller->role, ApiRole::kEdge);
  EXPECT_FALSE(api_role_grants(edge_caller->role, ApiRole::kViewer));
  const auto root = issue(common::Role::kOperator, "ada", "root");
  auto caller = auth_.identify("", root.get());
  ASSERT_FALSE(caller.ok());
  EXPECT_EQ(caller.error().code, common::Errc::kPermissionDenied);
  EXPECT_NE(caller.error().message.find("unknown API role \"root\""), std::string::npos)
      << caller.error().message;
}

// The event stream's tickets (docs/ORCHESTRATOR.md, "Console"): the caller they were issued to, once,
// within their lifetime; a bounded number outstanding.
TEST(StreamTicketsTest, ATicketStandsForItsCallerOnceAndExpires) {
  StreamTickets tickets;
  const ApiCaller viewer{"token:watcher", ApiRole::kViewer};
  auto ticket = tickets.issue(viewer, 1'000);
  ASSERT_TRUE(ticket.ok()) << ticket.error().message;
  EXPECT_EQ(ticket->size(), 48u);
  auto other = tickets.issue(viewer, 1'000);
  ASSERT_TRUE(other.ok());
  EXPECT_NE(*ticket, *other);
  auto caller = tickets.redeem(*ticket, 2'000);
  ASSERT_TRUE(caller.ok()) << caller.error().message;
  EXPECT_EQ(caller->actor, "token:watcher");
  EXPECT_EQ(caller->role, ApiRole::kViewer);
  // Used: refused, saying how to get another.
  auto again = tickets.redeem(*ticket, 2'000);
  ASSERT_FALSE(again.ok());
  EXPECT_NE(again.error().message.find("stream-tickets"), std::string::npos) << again.error().message;
  // Expired: refused.
  EXPECT_FALSE(tickets.redeem(*other, 1'000 + StreamTickets::kTicketLifetimeMs).ok());
  EXPECT_FALSE(tickets.redeem("", 2'000).ok());
  EXPECT_FALSE(tickets.redeem(std::string(48, '0'), 2'000).ok());
}

TEST(StreamTicketsTest, UnusedTicketsAreBoundedAndFreedByTime) {
  StreamTickets tickets;
  const ApiCaller admin{"token:admin", ApiRole::kAdmin};
  for (std::size_t i = 0; i < StreamTickets::kMaxOutstanding; ++i)
    ASSERT_TRUE(tickets.issue(admin, 0).ok()) << i;
  auto refused = tickets.issue(admin, 0);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, common::Errc::kUnavailable);
  EXPECT_TRUE(tickets.issue(admin, StreamTickets::kTicketLifetimeMs).ok());
}

}  // namespace
}  // namespace fota::orchestrator

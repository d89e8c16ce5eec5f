// SPDX-License-Identifier: Apache-2.0
#include "api_auth.hpp"

#include <openssl/crypto.h>

#include "fota/common/pki.hpp"

namespace fota::orchestrator {

using common::Errc;
using common::Error;

ApiAuthenticator::ApiAuthenticator(std::vector<ApiToken> tokens) : tokens_(std::move(tokens)) {}

common::Result<ApiCaller> ApiAuthenticator::identify(std::string_view authorization,
                                                     const X509* client_certificate) const {
  if (!authorization.empty()) {
    constexpr std::string_view kPrefix = "Bearer ";
    if (authorization.substr(0, kPrefix.size()) != kPrefix) {
      return Error(Errc::kInvalidArgument,
                   "unsupported Authorization scheme: send 'Authorization: Bearer <token>' or a client "
                   "certificate");
    }
    const std::string_view presented = authorization.substr(kPrefix.size());
    for (const ApiToken& t : tokens_) {
      // Constant-time compare: the response time must not reveal how much of a token matched.
      if (t.token.size() == presented.size() &&
          CRYPTO_memcmp(t.token.data(), presented.data(), presented.size()) == 0) {
        return ApiCaller{"token:" + t.name, t.role};
      }
    }
    return Error(Errc::kInvalidArgument,
                 "invalid API token: use a token listed under api_tokens in the orchestrator config");
  }
  if (client_certificate == nullptr) {
    return Error(Errc::kInvalidArgument,
                 "missing credentials: send 'Authorization: Bearer <token>' (fotactl reads FOTA_TOKEN or "
                 "--token) or, over HTTPS, an operator certificate (fotactl --client-cert/--client-key)");
  }
  // The handshake verified the chain to the fleet CA; the subject says who and in which role.
  auto peer = common::peer_identity(client_certificate);
  if (!peer) {
    return Error(Errc::kPermissionDenied, "client certificate refused: " + peer.error().message);
  }
  // An edge broker fetches artifact bundles with its own broker certificate (kEdge allows nothing
  // else).
  if (peer->role == common::Role::kBroker) return ApiCaller{"cert:" + peer->common_name, ApiRole::kEdge};
  if (peer->role != common::Role::kOperator) {
    return Error(Errc::kPermissionDenied,
                 "a " + std::string(common::role_name(peer->role)) + " certificate (\"" + peer->common_name +
                     "\") cannot use the API: use an operator certificate from `fotactl pki issue-operator`");
  }
  auto title = common::certificate_title(client_certificate);
  if (!title) return Error(Errc::kPermissionDenied, "client certificate refused: " + title.error().message);
  // Operator certificates made before API roles existed carry no title: they were operators.
  ApiRole role = ApiRole::kOperator;
  if (!title->empty()) {
    auto parsed = parse_api_role(*title);
    if (!parsed) {
      return Error(Errc::kPermissionDenied,
                   "client certificate \"" + peer->common_name + "\": title: " + parsed.error().message);
    }
    role = *parsed;
  }
  return ApiCaller{"cert:" + peer->common_name, role};
}

}  // namespace fota::orchestrator

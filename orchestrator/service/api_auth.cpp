// SPDX-License-Identifier: Apache-2.0
#include "api_auth.hpp"

#include <openssl/crypto.h>
#include <openssl/rand.h>

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

void StreamTickets::prune(std::int64_t now_ms) {
  for (auto it = tickets_.begin(); it != tickets_.end();) {
    it = it->second.second <= now_ms ? tickets_.erase(it) : std::next(it);
  }
}

common::Result<std::string> StreamTickets::issue(const ApiCaller& caller, std::int64_t now_ms) {
  unsigned char bytes[24];
  if (RAND_bytes(bytes, sizeof bytes) != 1)
    return Error(Errc::kCrypto, "no random bytes for a stream ticket");
  std::string ticket;
  static constexpr char kHex[] = "0123456789abcdef";
  for (unsigned char b : bytes) {
    ticket += kHex[b >> 4];
    ticket += kHex[b & 15];
  }
  std::lock_guard lock(mutex_);
  prune(now_ms);
  if (tickets_.size() >= kMaxOutstanding) {
    return Error(Errc::kUnavailable,
                 "too many unused event stream tickets; open the stream with the ones issued "
                 "or retry in " +
                     std::to_string(kTicketLifetimeMs / 1000) + " s");
  }
  tickets_[ticket] = {caller, now_ms + kTicketLifetimeMs};
  return ticket;
}

common::Result<ApiCaller> StreamTickets::redeem(std::string_view ticket, std::int64_t now_ms) {
  std::lock_guard lock(mutex_);
  prune(now_ms);
  auto it = tickets_.find(ticket);
  if (it == tickets_.end()) {
    return Error(Errc::kInvalidArgument,
                 "unknown, used or expired stream ticket: ask for a new one with POST "
                 "/api/v1/events/stream-tickets (each is good once, for " +
                     std::to_string(kTicketLifetimeMs / 1000) + " s)");
  }
  ApiCaller caller = it->second.first;
  tickets_.erase(it);
  return caller;
}

}  // namespace fota::orchestrator

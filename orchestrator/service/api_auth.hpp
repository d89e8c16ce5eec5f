// SPDX-License-Identifier: Apache-2.0
// Who calls the HTTP API and with which role: a bearer token from the config (its role bound
// there), or a client certificate the TLS handshake verified against the fleet CA (an operator
// certificate; its role is the subject title, docs/ORCHESTRATOR.md "API access").
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "config.hpp"
#include "fota/common/result.hpp"
#include "fota/orchestrator/api_role.hpp"

typedef struct x509_st X509;  // NOLINT: OpenSSL's forward declaration

namespace fota::orchestrator {

struct ApiCaller {
  std::string actor;  // what the audit log records: "token:<name>" or "cert:<common name>"
  ApiRole role = ApiRole::kViewer;
};

class ApiAuthenticator {
 public:
  explicit ApiAuthenticator(std::vector<ApiToken> tokens);

  // From the request's Authorization header (empty when absent) and the client certificate the
  // handshake verified (nullptr when none). A token, when sent, decides; otherwise the
  // certificate. Errors: kInvalidArgument when no credentials or a wrong token were sent (401),
  // kPermissionDenied when a verified certificate is not an operator's (403).
  common::Result<ApiCaller> identify(std::string_view authorization, const X509* client_certificate) const;

 private:
  std::vector<ApiToken> tokens_;
};

// Short-lived, single-use tickets for the event stream (GET /api/v1/events/stream?ticket=): a
// browser's EventSource cannot send an Authorization header, and a long-lived token must not go
// into a URL (proxies and logs keep URLs). An authenticated caller asks for one (POST
// /api/v1/events/stream-tickets); redeeming it yields that caller, once, within kTicketLifetimeMs.
class StreamTickets {
 public:
  static constexpr std::int64_t kTicketLifetimeMs = 30'000;
  static constexpr std::size_t kMaxOutstanding = 1024;
  // Errors: kUnavailable when kMaxOutstanding unexpired tickets are waiting.
  common::Result<std::string> issue(const ApiCaller& caller, std::int64_t now_ms);
  // Errors: kInvalidArgument when the ticket is unknown, used or expired.
  common::Result<ApiCaller> redeem(std::string_view ticket, std::int64_t now_ms);

 private:
  void prune(std::int64_t now_ms);
  std::mutex mutex_;
  std::map<std::string, std::pair<ApiCaller, std::int64_t>, std::less<>> tickets_;  // -> caller, expiry
};

}  // namespace fota::orchestrator

// SPDX-License-Identifier: Apache-2.0
#include "fota/orchestrator/api_role.hpp"

namespace fota::orchestrator {

std::string_view api_role_name(ApiRole role) noexcept {
  switch (role) {
    case ApiRole::kEdge:
      return "edge";
    case ApiRole::kViewer:
      return "viewer";
    case ApiRole::kOperator:
      return "operator";
    case ApiRole::kAdmin:
      return "admin";
  }
  return "unknown";
}

common::Result<ApiRole> parse_api_role(std::string_view name) {
  for (ApiRole role : {ApiRole::kEdge, ApiRole::kViewer, ApiRole::kOperator, ApiRole::kAdmin}) {
    if (api_role_name(role) == name) return role;
  }
  return common::Error(common::Errc::kInvalidArgument,
                       "unknown API role \"" + std::string(name.substr(0, 32)) +
                           "\"; expected edge (artifact bundles only, for edge brokers), viewer (read), "
                           "operator (also rollouts) or admin (also artifacts, "
                           "keys, tokens, revocation)");
}

}  // namespace fota::orchestrator

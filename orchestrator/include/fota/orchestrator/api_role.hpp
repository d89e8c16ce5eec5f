// SPDX-License-Identifier: Apache-2.0
// Roles on the orchestrator's HTTP API, each including the ones before it: a viewer reads, an
// operator also runs rollouts, an admin also manages artifacts, keys, tokens and revocation.
// A bearer token gets its role from the config, a client certificate from its subject title
// (`fotactl pki issue-operator NAME --api-role ROLE`).
#pragma once

#include <string>
#include <string_view>

#include "fota/common/result.hpp"

namespace fota::orchestrator {

// kEdge is below viewer: an edge broker's certificate (role broker) may only download artifact
// bundles to fill its chunk cache.
enum class ApiRole { kEdge, kViewer, kOperator, kAdmin };

std::string_view api_role_name(ApiRole role) noexcept;  // "edge", "viewer", "operator", "admin"
// kInvalidArgument naming the roles there are.
common::Result<ApiRole> parse_api_role(std::string_view name);
// Whether a caller holding `held` may do what needs `needed`.
constexpr bool api_role_grants(ApiRole held, ApiRole needed) noexcept { return held >= needed; }

}  // namespace fota::orchestrator

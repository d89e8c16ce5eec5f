// SPDX-License-Identifier: Apache-2.0
#include "fota/common/breach_action.hpp"

#include <array>
#include <utility>

namespace fota::common {
namespace {

constexpr std::array<std::pair<BreachAction, std::string_view>, 3> kNames = {{
    {BreachAction::kPause, "pause"},
    {BreachAction::kAbort, "abort"},
    {BreachAction::kRollback, "rollback"},
}};

}  // namespace

std::string_view breach_action_name(BreachAction action) noexcept {
  for (const auto& [value, name] : kNames)
    if (value == action) return name;
  return "pause";
}

std::optional<BreachAction> parse_breach_action(std::string_view name) noexcept {
  for (const auto& [value, known] : kNames)
    if (known == name) return value;
  return std::nullopt;
}

}  // namespace fota::common

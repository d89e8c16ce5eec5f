// SPDX-License-Identifier: Apache-2.0
// What a rollout does when a wave's failures pass its threshold: the orchestrator's rollout spec
// (`on_breach`) and fota-sim's scenarios name it the same way.
#pragma once

#include <optional>
#include <string_view>

namespace fota::common {

enum class BreachAction { kPause, kAbort, kRollback };

// "pause", "abort" or "rollback".
std::string_view breach_action_name(BreachAction action) noexcept;
// The action named exactly so; nullopt for anything else.
std::optional<BreachAction> parse_breach_action(std::string_view name) noexcept;
// For error messages: the names a spec may use.
inline constexpr std::string_view kBreachActionNames = "pause, abort or rollback";

}  // namespace fota::common

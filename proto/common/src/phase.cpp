// SPDX-License-Identifier: Apache-2.0
#include "fota/common/phase.hpp"

#include <array>
#include <utility>

namespace fota::common {
namespace {

constexpr std::array<std::pair<v1::Phase, std::string_view>, 12> kNames = {{
    {v1::PHASE_UNSPECIFIED, "unspecified"},
    {v1::PHASE_IDLE, "idle"},
    {v1::PHASE_DOWNLOADING, "downloading"},
    {v1::PHASE_VERIFYING, "verifying"},
    {v1::PHASE_INSTALLING, "installing"},
    {v1::PHASE_REBOOTING, "rebooting"},
    {v1::PHASE_CONFIRMING, "confirming"},
    {v1::PHASE_COMMITTED, "committed"},
    {v1::PHASE_FAILED, "failed"},
    {v1::PHASE_ROLLING_BACK, "rolling_back"},
    {v1::PHASE_ROLLED_BACK, "rolled_back"},
    {v1::PHASE_CANCELLED, "cancelled"},
}};

}  // namespace

std::string_view phase_name(v1::Phase phase) noexcept {
  for (const auto& [value, name] : kNames)
    if (value == phase) return name;
  return "unknown";
}

}  // namespace fota::common

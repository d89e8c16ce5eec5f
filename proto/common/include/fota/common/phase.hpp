// SPDX-License-Identifier: Apache-2.0
// The names of the wire's update phases (v1::Phase) wherever people read them: the orchestrator's
// API, events and audit, fota-sim's reports and timelines. snake_case, like the API's other names.
#pragma once

#include <string_view>

#include "fota/v1/fota.pb.h"

namespace fota::common {

// "idle", "downloading", ..., "rolling_back", "rolled_back", "cancelled"; "unspecified" for
// PHASE_UNSPECIFIED and "unknown" for a value this build does not know (a newer device's).
std::string_view phase_name(v1::Phase phase) noexcept;

}  // namespace fota::common

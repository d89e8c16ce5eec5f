// SPDX-License-Identifier: Apache-2.0
// The web console's static files (orchestrator/console/), compiled into fota-orchestrator by
// cmake/FotaEmbed.cmake and served under /console/ (docs/ORCHESTRATOR.md, "Console").
#pragma once

#include <map>
#include <string_view>

namespace fota::orchestrator {

// Path relative to orchestrator/console/ ("index.html", "app.js", ...) -> the file's bytes.
const std::map<std::string_view, std::string_view>& console_assets();

}  // namespace fota::orchestrator

// SPDX-License-Identifier: Apache-2.0
// Renders a RunReport: a terminal summary, a JSON document (per-device timelines, totals) and a
// self-contained HTML page with inline SVG charts (no scripts, nothing downloaded).
#pragma once

#include <array>
#include <filesystem>
#include <string>

#include "fota/common/result.hpp"
#include "fota/sim/runner.hpp"
#include "fota/v1/fota.pb.h"

namespace fota::sim {

// The phases in the order reports and the live view show them (named by common::phase_name): the
// way through an update, then its ends.
inline constexpr std::array<v1::Phase, 11> kReportPhaseOrder = {
    v1::PHASE_IDLE,      v1::PHASE_DOWNLOADING, v1::PHASE_VERIFYING,    v1::PHASE_INSTALLING,
    v1::PHASE_REBOOTING, v1::PHASE_CONFIRMING,  v1::PHASE_ROLLING_BACK, v1::PHASE_COMMITTED,
    v1::PHASE_FAILED,    v1::PHASE_ROLLED_BACK, v1::PHASE_CANCELLED};

std::string summary_text(const RunReport& report);
std::string report_json(const RunReport& report);
std::string report_html(const RunReport& report);

// Writes report.json and report.html into `dir` (created when missing).
common::Status write_reports(const RunReport& report, const std::filesystem::path& dir);

}  // namespace fota::sim

// Renders a RunReport: a terminal summary, a JSON document (per-device timelines, totals) and a
// self-contained HTML page with inline SVG charts (no scripts, nothing downloaded).
#pragma once

#include <filesystem>
#include <string>

#include "fota/common/result.hpp"
#include "fota/sim/runner.hpp"

namespace fota::sim {

std::string summary_text(const RunReport& report);
std::string report_json(const RunReport& report);
std::string report_html(const RunReport& report);

// Writes report.json and report.html into `dir` (created when missing).
common::Status write_reports(const RunReport& report, const std::filesystem::path& dir);

}  // namespace fota::sim

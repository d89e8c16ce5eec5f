// SPDX-License-Identifier: Apache-2.0
#include "fota/sim/report.hpp"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace fota::sim {
namespace {

RunReport sample_report() {
  RunReport r;
  r.scenario = "demo <script>";
  r.seed = 9;
  r.device_count = 2;
  r.outcome = "completed";
  r.expected_outcome = "completed";
  r.duration_ms = 4000;
  r.predicted_duration_ms = 3000;
  r.wire_bytes = 2100;
  r.image_bytes_delivered = 2000;
  r.wire_ratio = 1.05;
  r.messages = 1234;
  r.messages_per_second = 308.5;
  r.waves = {{"canary", {"d-1"}, 0, 1000, 1, 0}, {"rest", {"d-2"}, 1000, 4000, 1, 0}};
  for (std::int64_t t : {0, 2000, 4000}) {
    Sample s;
    s.at_ms = t;
    s.by_state = {{t < 4000 ? "downloading" : "committed", 2}};
    s.wire_bytes = std::uint64_t(t / 2);
    s.image_bytes = std::uint64_t(t / 2);
    r.samples.push_back(s);
  }
  DeviceResult d;
  d.device_id = "d-1";
  d.final_phase = "committed";
  d.final_version = "2.0.0";
  d.timeline = {{0, "boot", "slot a"}, {900, "committed", ""}};
  r.devices = {d};
  r.invariants = {{"no bricked device", true, ""}, {"expected rollout outcome", false, "expected x, got y"}};
  r.passed = false;
  return r;
}

TEST(Report, JsonCarriesTotalsTimelinesAndInvariants) {
  const auto doc = nlohmann::json::parse(report_json(sample_report()));
  EXPECT_EQ(doc["totals"]["devices"], 2);
  EXPECT_DOUBLE_EQ(doc["totals"]["wire_ratio"].get<double>(), 1.05);
  EXPECT_EQ(doc["totals"]["messages"], 1234);
  EXPECT_DOUBLE_EQ(doc["totals"]["messages_per_second"].get<double>(), 308.5);
  EXPECT_EQ(doc["devices"][0]["timeline"][1]["event"], "committed");
  EXPECT_EQ(doc["invariants"][1]["held"], false);
  EXPECT_EQ(doc["waves"][1]["started_ms"], 1000);
  EXPECT_EQ(doc["samples"].size(), 3u);
  EXPECT_EQ(doc["passed"], false);
}

TEST(Report, HtmlIsSelfContainedAndEscaped) {
  const std::string html = report_html(sample_report());
  EXPECT_NE(html.find("<svg"), std::string::npos);
  EXPECT_NE(html.find("Devices by state over time"), std::string::npos);
  EXPECT_NE(html.find("Bytes over time"), std::string::npos);
  EXPECT_NE(html.find("Predicted versus actual"), std::string::npos);
  EXPECT_EQ(html.find("<script"), std::string::npos) << "no scripts, and the scenario name is escaped";
  EXPECT_NE(html.find("demo &lt;script&gt;"), std::string::npos);
  EXPECT_EQ(html.find("http://"), html.find("http://www.w3.org/2000/svg")) << "nothing is downloaded";
}

TEST(Report, SummaryNamesFailedInvariants) {
  const std::string text = summary_text(sample_report());
  EXPECT_NE(text.find("[FAILED] expected rollout outcome: expected x, got y"), std::string::npos);
  EXPECT_NE(text.find("1.0500"), std::string::npos);
  EXPECT_NE(text.find("FAILED\n"), std::string::npos);
}

}  // namespace
}  // namespace fota::sim

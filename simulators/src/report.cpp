// SPDX-License-Identifier: Apache-2.0
#include "fota/sim/report.hpp"

#include <algorithm>
#include <fstream>
#include <iomanip>
#include <nlohmann/json.hpp>
#include <sstream>

#include "fota/common/phase.hpp"

namespace fota::sim {

namespace {

// One colour per phase of kReportPhaseOrder.
constexpr const char* kColors[] = {"#c7c7c7", "#4e79a7", "#76b7b2", "#59a14f", "#edc948", "#b07aa1",
                                   "#ff9da7", "#2ca02c", "#e15759", "#f28e2b", "#9c755f"};

static_assert(std::size(kColors) == kReportPhaseOrder.size());

std::string fixed(double value, int digits) {
  std::ostringstream out;
  out << std::fixed << std::setprecision(digits) << value;
  return out.str();
}

std::string escape_html(const std::string& text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '&':
        out += "&amp;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string mib(std::uint64_t bytes) { return fixed(double(bytes) / 1048576.0, 2) + " MiB"; }

}  // namespace

std::string summary_text(const RunReport& r) {
  std::ostringstream out;
  out << "scenario " << r.scenario << " (seed " << r.seed << "): " << r.device_count << " devices\n";
  out << "  outcome            " << r.outcome << (r.timed_out ? " (timed out)" : "")
      << (r.halt_reason.empty() ? "" : " - " + r.halt_reason) << "\n";
  out << "  time to complete   " << fixed(double(r.duration_ms) / 1000.0, 1) << " s (predicted "
      << fixed(double(r.predicted_duration_ms) / 1000.0, 1) << " s, " << r.prediction_source << ")\n";
  if (r.rollout_duration_ms >= 0) {
    out << "  rollout duration   " << fixed(double(r.rollout_duration_ms) / 1000.0, 1)
        << " s (the orchestrator's own start to end, which its plan predicts)\n";
  }
  if (r.predicted_at_first_wave_ms >= 0) {
    out << "  predicted at wave 1 end " << fixed(double(r.predicted_at_first_wave_ms) / 1000.0, 1)
        << " s (the orchestrator's live ETA once the first wave finished)\n";
  }
  if (r.predicted_at_half_ms >= 0) {
    out << "  predicted at half time " << fixed(double(r.predicted_at_half_ms) / 1000.0, 1)
        << " s (the orchestrator's live ETA at half the actual duration)\n";
  }
  if (r.orchestrator_restarts > 0) out << "  orchestrator restarts " << r.orchestrator_restarts << "\n";
  out << "  setup              " << fixed(double(r.setup_ms) / 1000.0, 1) << " s (certificates, connects)\n";
  out << "  wire / image bytes " << fixed(r.wire_ratio, 4) << " (" << mib(r.wire_bytes) << " on the wire for "
      << mib(r.image_bytes_delivered) << " of image; connecting the fleet before: " << mib(r.setup_wire_bytes)
      << ")\n";
  out << "  reused on devices  " << mib(r.bytes_reused)
      << " (image chunks copied from the running slot instead of downloaded)\n";
  out << "  messages           " << r.messages << " (" << fixed(r.messages_per_second, 0)
      << "/s; MQTT publishes the devices sent and received in the rollout)\n";
  out << "  reconnects         " << r.reconnects << " (link resets " << r.link_resets << ", power cuts "
      << r.power_cuts << ")\n";
  out << "  memory per device  " << fixed(double(r.memory_per_device_bytes) / 1024.0, 1)
      << " KiB (RSS growth / devices)\n";
  std::map<std::string, std::uint32_t> finals;
  for (const auto& d : r.devices) ++finals[d.final_phase];
  out << "  final states      ";
  for (const auto& [state, n] : finals) out << " " << state << " " << n;
  out << "\n  waves\n";
  for (const auto& w : r.waves) {
    out << "    " << std::left << std::setw(12) << w.name << std::right << std::setw(6) << w.devices.size()
        << " devices  committed " << w.committed << "  failed " << w.failed;
    if (w.started_ms >= 0)
      out << "  started " << fixed(double(w.started_ms) / 1000.0, 1) << " s";
    else
      out << "  never started";
    if (w.finished_ms >= 0) out << "  finished " << fixed(double(w.finished_ms) / 1000.0, 1) << " s";
    out << "\n";
  }
  out << "  invariants\n";
  for (const auto& i : r.invariants) {
    out << "    [" << (i.held ? "ok" : "FAILED") << "] " << i.name
        << (i.detail.empty() ? "" : ": " + i.detail) << "\n";
  }
  out << (r.passed ? "PASSED" : "FAILED") << "\n";
  return out.str();
}

std::string report_json(const RunReport& r) {
  using nlohmann::json;
  json doc;
  doc["scenario"] = r.scenario;
  doc["seed"] = r.seed;
  doc["passed"] = r.passed;
  doc["totals"] = {{"devices", r.device_count},
                   {"outcome", r.outcome},
                   {"expected_outcome", r.expected_outcome},
                   {"halt_reason", r.halt_reason},
                   {"timed_out", r.timed_out},
                   {"duration_ms", r.duration_ms},
                   {"rollout_duration_ms", r.rollout_duration_ms},
                   {"predicted_duration_ms", r.predicted_duration_ms},
                   {"predicted_bound_ms", r.predicted_bound_ms},
                   {"prediction_source", r.prediction_source},
                   {"predicted_at_first_wave_ms", r.predicted_at_first_wave_ms},
                   {"predicted_at_half_ms", r.predicted_at_half_ms},
                   {"rollout_id", r.rollout_id},
                   {"orchestrator_restarts", r.orchestrator_restarts},
                   {"setup_ms", r.setup_ms},
                   {"image_size", r.image_size},
                   {"wire_bytes", r.wire_bytes},
                   {"setup_wire_bytes", r.setup_wire_bytes},
                   {"image_bytes_delivered", r.image_bytes_delivered},
                   {"bytes_reused", r.bytes_reused},
                   {"wire_ratio", r.wire_ratio},
                   {"messages", r.messages},
                   {"messages_per_second", r.messages_per_second},
                   {"reconnects", r.reconnects},
                   {"link_resets", r.link_resets},
                   {"power_cuts", r.power_cuts},
                   {"memory_per_device_bytes", r.memory_per_device_bytes},
                   {"driver",
                    {{"commands_sent", r.driver.commands_sent},
                     {"commands_resent", r.driver.commands_resent},
                     {"chunk_requests", r.driver.chunk_requests},
                     {"chunks_served", r.driver.chunks_served},
                     {"chunk_bytes_served", r.driver.chunk_bytes_served},
                     {"progress_reports", r.driver.progress_reports}}}};
  json invariants = json::array();
  for (const auto& i : r.invariants)
    invariants.push_back({{"name", i.name}, {"held", i.held}, {"detail", i.detail}});
  doc["invariants"] = invariants;
  json waves = json::array();
  for (const auto& w : r.waves) {
    waves.push_back({{"name", w.name},
                     {"devices", w.devices.size()},
                     {"started_ms", w.started_ms},
                     {"finished_ms", w.finished_ms},
                     {"committed", w.committed},
                     {"failed", w.failed}});
  }
  doc["waves"] = waves;
  json samples = json::array();
  for (const auto& s : r.samples) {
    samples.push_back({{"at_ms", s.at_ms},
                       {"eta_ms", s.eta_ms},
                       {"by_state", s.by_state},
                       {"wire_bytes", s.wire_bytes},
                       {"image_bytes", s.image_bytes}});
  }
  doc["samples"] = samples;
  json devices = json::array();
  for (const auto& d : r.devices) {
    json timeline = json::array();
    for (const auto& t : d.timeline) {
      json entry = {{"at_ms", t.at_ms}, {"event", t.event}};
      if (!t.detail.empty()) entry["detail"] = t.detail;
      timeline.push_back(std::move(entry));
    }
    devices.push_back({{"id", d.device_id},
                       {"group", d.group},
                       {"hardware", d.hardware_type},
                       {"link", d.link_profile},
                       {"time_zone", d.time_zone},
                       {"initial_version", d.initial_version},
                       {"final_version", d.final_version},
                       {"final_phase", d.final_phase},
                       {"last_error", d.last_error},
                       {"targeted", d.targeted},
                       {"expected_failure", d.expected_failure},
                       {"planned_power_cuts", d.planned_power_cuts},
                       {"bad_image", d.faults.fails_health_check},
                       {"storage_full", d.faults.storage_full},
                       {"slow_flash_bytes_per_second", d.faults.flash_write_bytes_per_second},
                       {"clock_skew_ms", d.faults.clock_skew_ms},
                       {"bricked", d.bricked},
                       {"connects", d.counters.connects},
                       {"reconnects", d.counters.reconnects},
                       {"link_resets", d.counters.link_resets},
                       {"link_stalls", d.counters.link_stalls},
                       {"power_cuts", d.counters.power_cuts},
                       {"reboots", d.counters.reboots},
                       {"chunks_received", d.counters.chunks_received},
                       {"wire_bytes", d.wire_bytes},
                       {"image_bytes", d.image_bytes},
                       {"bytes_reused", d.bytes_reused},
                       {"timeline", timeline}});
  }
  doc["devices"] = devices;
  return doc.dump(1);
}

namespace {

// A chart area: x = time, y = value; margins for axes.
struct Chart {
  double width = 860, height = 260, left = 60, right = 20, top = 20, bottom = 40;
  double t_max = 1, y_max = 1;
  double x(double t) const { return left + (width - left - right) * (t / t_max); }
  double y(double v) const { return top + (height - top - bottom) * (1.0 - v / y_max); }
};

void axes(std::ostringstream& svg, const Chart& c, const std::string& y_label, double y_tick_scale,
          const std::string& y_unit) {
  svg << "<line x1='" << c.left << "' y1='" << c.y(0) << "' x2='" << c.width - c.right << "' y2='" << c.y(0)
      << "' stroke='#333'/>";
  svg << "<line x1='" << c.left << "' y1='" << c.top << "' x2='" << c.left << "' y2='" << c.y(0)
      << "' stroke='#333'/>";
  for (int i = 0; i <= 5; ++i) {
    const double t = c.t_max * i / 5.0;
    svg << "<text x='" << c.x(t) << "' y='" << c.height - 22 << "' font-size='11' text-anchor='middle'>"
        << fixed(t / 1000.0, 1) << " s</text>";
    const double v = c.y_max * i / 5.0;
    svg << "<text x='" << c.left - 6 << "' y='" << c.y(v) + 4 << "' font-size='11' text-anchor='end'>"
        << fixed(v / y_tick_scale, y_tick_scale > 1 ? 1 : 0) << y_unit << "</text>";
  }
  svg << "<text x='12' y='" << c.top + 4 << "' font-size='11'>" << escape_html(y_label) << "</text>";
}

void wave_markers(std::ostringstream& svg, const Chart& c, const RunReport& r) {
  for (const auto& w : r.waves) {
    if (w.started_ms < 0) continue;
    svg << "<line x1='" << c.x(double(w.started_ms)) << "' y1='" << c.top << "' x2='"
        << c.x(double(w.started_ms)) << "' y2='" << c.y(0) << "' stroke='#000' stroke-dasharray='4 3'/>";
    svg << "<text x='" << c.x(double(w.started_ms)) + 3 << "' y='" << c.top + 10 << "' font-size='10'>"
        << escape_html(w.name) << "</text>";
  }
}

}  // namespace

std::string report_html(const RunReport& r) {
  std::ostringstream html;
  html << "<!DOCTYPE html><html><head><meta charset='utf-8'><title>fota-sim: " << escape_html(r.scenario)
       << "</"
          "title><style>body{font-family:sans-serif;margin:24px;max-width:920px}table{border-collapse:"
          "collapse}"
          "td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px;text-align:left}.ok{color:#2ca02c}"
          ".bad{color:#e15759;font-weight:bold}svg{background:#fafafa;border:1px solid "
          "#ddd}</style></head><body>";
  html << "<h1>fota-sim: " << escape_html(r.scenario) << " <span class='"
       << (r.passed ? "ok'>PASSED" : "bad'>FAILED") << "</span></h1>";
  html << "<p>" << r.device_count << " devices, seed " << r.seed << ", outcome <b>" << escape_html(r.outcome)
       << "</b>" << (r.halt_reason.empty() ? "" : " &mdash; " + escape_html(r.halt_reason)) << "</p>";

  html << "<h2>Figures</h2><table>";
  auto row = [&](const std::string& k, const std::string& v) {
    html << "<tr><th>" << escape_html(k) << "</th><td>" << escape_html(v) << "</td></tr>";
  };
  row("time to complete",
      fixed(double(r.duration_ms) / 1000.0, 1) + " s" + (r.timed_out ? " (timed out)" : ""));
  if (r.rollout_duration_ms >= 0)
    row("rollout duration", fixed(double(r.rollout_duration_ms) / 1000.0, 1) + " s (the orchestrator's own)");
  row("predicted duration",
      fixed(double(r.predicted_duration_ms) / 1000.0, 1) + " s (" + r.prediction_source + ")");
  if (r.predicted_at_first_wave_ms >= 0) {
    row("predicted when wave 1 finished",
        fixed(double(r.predicted_at_first_wave_ms) / 1000.0, 1) + " s (the orchestrator's live ETA)");
  }
  if (r.predicted_at_half_ms >= 0) {
    row("predicted at half time",
        fixed(double(r.predicted_at_half_ms) / 1000.0, 1) + " s (the orchestrator's live ETA)");
  }
  if (!r.rollout_id.empty()) row("orchestrator rollout", r.rollout_id);
  if (r.orchestrator_restarts > 0) row("orchestrator restarts", std::to_string(r.orchestrator_restarts));
  row("bytes on the wire / image bytes delivered", fixed(r.wire_ratio, 4));
  row("bytes on the wire", mib(r.wire_bytes));
  row("image bytes delivered", mib(r.image_bytes_delivered));
  row("of which reused on the devices", mib(r.bytes_reused));
  row("MQTT messages to and from the devices",
      std::to_string(r.messages) + " (" + fixed(r.messages_per_second, 0) + "/s)");
  row("reconnects", std::to_string(r.reconnects));
  row("link resets / power cuts", std::to_string(r.link_resets) + " / " + std::to_string(r.power_cuts));
  row("memory per virtual device", fixed(double(r.memory_per_device_bytes) / 1024.0, 1) + " KiB");
  html << "</table>";

  html << "<h2>Invariants</h2><table>";
  for (const auto& i : r.invariants) {
    html << "<tr><td class='" << (i.held ? "ok'>held" : "bad'>FAILED") << "</td><td>" << escape_html(i.name)
         << "</td><td>" << escape_html(i.detail) << "</td></tr>";
  }
  html << "</table>";

  double t_max = 1;
  for (const auto& s : r.samples) t_max = std::max(t_max, double(s.at_ms));
  t_max = std::max({t_max, double(r.predicted_duration_ms), double(r.duration_ms)});

  // Devices by state over time: stacked areas.
  {
    Chart c;
    c.t_max = t_max;
    c.y_max = std::max<double>(1, r.device_count);
    std::ostringstream svg;
    svg << "<svg width='" << c.width << "' height='" << c.height << "' xmlns='http://www.w3.org/2000/svg'>";
    std::vector<double> base(r.samples.size(), 0.0);
    for (std::size_t k = 0; k < kReportPhaseOrder.size(); ++k) {
      const std::string state(common::phase_name(kReportPhaseOrder[k]));
      std::vector<double> top(base);
      bool any = false;
      for (std::size_t i = 0; i < r.samples.size(); ++i) {
        auto it = r.samples[i].by_state.find(state);
        if (it != r.samples[i].by_state.end()) {
          top[i] += it->second;
          any = true;
        }
      }
      if (!any) continue;
      svg << "<polygon fill='" << kColors[k] << "' fill-opacity='0.85' points='";
      for (std::size_t i = 0; i < r.samples.size(); ++i) {
        svg << fixed(c.x(double(r.samples[i].at_ms)), 1) << "," << fixed(c.y(top[i]), 1) << " ";
      }
      for (std::size_t i = r.samples.size(); i-- > 0;) {
        svg << fixed(c.x(double(r.samples[i].at_ms)), 1) << "," << fixed(c.y(base[i]), 1) << " ";
      }
      svg << "'><title>" << state << "</title></polygon>";
      base = top;
    }
    wave_markers(svg, c, r);
    axes(svg, c, "devices", 1, "");
    svg << "</svg>";
    html << "<h2>Devices by state over time</h2>" << svg.str() << "<p>";
    for (std::size_t k = 0; k < kReportPhaseOrder.size(); ++k) {
      html << "<span style='display:inline-block;width:10px;height:10px;background:" << kColors[k]
           << "'></span> " << common::phase_name(kReportPhaseOrder[k]) << " &nbsp;";
    }
    html << "<br>Dashed lines: wave starts.</p>";
  }
  // Bytes over time.
  {
    Chart c;
    c.t_max = t_max;
    double y_max = 1;
    for (const auto& s : r.samples) y_max = std::max({y_max, double(s.wire_bytes), double(s.image_bytes)});
    c.y_max = y_max;
    std::ostringstream svg;
    svg << "<svg width='" << c.width << "' height='" << c.height << "' xmlns='http://www.w3.org/2000/svg'>";
    auto line = [&](auto value, const char* color, const char* name) {
      svg << "<polyline fill='none' stroke='" << color << "' stroke-width='2' points='";
      for (const auto& s : r.samples)
        svg << fixed(c.x(double(s.at_ms)), 1) << "," << fixed(c.y(value(s)), 1) << " ";
      svg << "'><title>" << name << "</title></polyline>";
    };
    line([](const Sample& s) { return double(s.wire_bytes); }, "#4e79a7", "bytes on the wire");
    line([](const Sample& s) { return double(s.image_bytes); }, "#59a14f", "image bytes delivered");
    wave_markers(svg, c, r);
    axes(svg, c, "MiB", 1048576.0, "");
    svg << "</svg>";
    html << "<h2>Bytes over time</h2>" << svg.str()
         << "<p><span style='color:#4e79a7'>&#9632;</span> bytes on the wire (TCP, both directions, TLS "
            "included) "
            "&nbsp; <span style='color:#59a14f'>&#9632;</span> image bytes delivered</p>";
  }
  // Predicted versus actual completion.
  {
    Chart c;
    c.height = 110;
    c.t_max = t_max;
    std::ostringstream svg;
    svg << "<svg width='" << c.width << "' height='" << c.height << "' xmlns='http://www.w3.org/2000/svg'>";
    svg << "<rect x='" << c.left << "' y='15' height='25' width='"
        << c.x(double(r.predicted_duration_ms)) - c.left << "' fill='#b07aa1'/><text x='" << c.left + 4
        << "' y='32' font-size='12' fill='#fff'>predicted "
        << fixed(double(r.predicted_duration_ms) / 1000.0, 1) << " s</text>";
    svg << "<rect x='" << c.left << "' y='50' height='25' width='" << c.x(double(r.duration_ms)) - c.left
        << "' fill='#4e79a7'/><text x='" << c.left + 4 << "' y='67' font-size='12' fill='#fff'>actual "
        << fixed(double(r.duration_ms) / 1000.0, 1) << " s</text>";
    svg << "</svg>";
    html << "<h2>Predicted versus actual completion</h2>" << svg.str();
  }

  html << "<h2>Waves</h2><table><tr><th>wave</th><th>devices</th><th>started</th><th>finished</th>"
          "<th>committed</th><th>failed</th></tr>";
  for (const auto& w : r.waves) {
    html << "<tr><td>" << escape_html(w.name) << "</td><td>" << w.devices.size() << "</td><td>"
         << (w.started_ms < 0 ? "never" : fixed(double(w.started_ms) / 1000.0, 1) + " s") << "</td><td>"
         << (w.finished_ms < 0 ? "-" : fixed(double(w.finished_ms) / 1000.0, 1) + " s") << "</td><td>"
         << w.committed << "</td><td>" << w.failed << "</td></tr>";
  }
  html << "</table>";

  // Devices that did not end committed first: they are the interesting ones.
  std::vector<const DeviceResult*> order;
  for (const auto& d : r.devices) order.push_back(&d);
  std::stable_sort(order.begin(), order.end(), [](const DeviceResult* a, const DeviceResult* b) {
    return (a->final_phase != "committed") > (b->final_phase != "committed");
  });
  html << "<h2>Devices</h2><p>First 200, devices not committed first; report.json has every timeline.</p>"
          "<table><tr><th>device</th><th>group</th><th>link</th><th>final</th><th>version</th><th>error</th>"
          "<th>reconnects</th><th>power cuts</th><th>injected</th></tr>";
  for (std::size_t i = 0; i < order.size() && i < 200; ++i) {
    const DeviceResult& d = *order[i];
    std::string injected;
    if (d.expected_failure) injected += "failure ";
    for (const auto& c : d.planned_power_cuts) injected += "power@" + c + " ";
    if (d.faults.flash_write_bytes_per_second > 0)
      injected += "slow-flash@" + std::to_string(d.faults.flash_write_bytes_per_second / 1024) + "KiB/s ";
    if (d.faults.clock_skew_ms != 0)
      injected += std::string(d.faults.clock_skew_ms > 0 ? "clock+" : "clock") +
                  fixed(double(d.faults.clock_skew_ms) / 1000.0, 0) + "s ";
    html << "<tr><td>" << escape_html(d.device_id) << "</td><td>" << escape_html(d.group) << "</td><td>"
         << escape_html(d.link_profile) << "</td><td>" << escape_html(d.final_phase) << "</td><td>"
         << escape_html(d.final_version) << "</td><td>" << escape_html(d.last_error) << "</td><td>"
         << d.counters.reconnects << "</td><td>" << d.counters.power_cuts << "</td><td>"
         << escape_html(injected) << "</td></tr>";
  }
  html << "</table></body></html>\n";
  return html.str();
}

common::Status write_reports(const RunReport& report, const std::filesystem::path& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec)
    return common::Error(common::Errc::kIo,
                         "cannot create report directory " + dir.string() + ": " + ec.message());
  for (const auto& [name, content] :
       {std::pair<std::string, std::string>{"report.json", report_json(report)},
        std::pair<std::string, std::string>{"report.html", report_html(report)}}) {
    std::ofstream out(dir / name, std::ios::binary | std::ios::trunc);
    out << content;
    out.close();
    if (!out) return common::Error(common::Errc::kIo, "cannot write " + (dir / name).string());
  }
  return common::ok_status();
}

}  // namespace fota::sim

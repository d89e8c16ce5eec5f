// SPDX-License-Identifier: Apache-2.0
#include "store_rows.hpp"

#include <nlohmann/json.hpp>

namespace fota::orchestrator::store_rows {

std::string join_tags(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : ",") + s;
  return out;
}

std::vector<std::string> split_tags(const std::string& s) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start < s.size()) {
    std::size_t end = s.find(',', start);
    if (end == std::string::npos) end = s.size();
    if (end > start) out.push_back(s.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

std::string waves_json(const std::vector<WaveState>& waves) {
  nlohmann::json out = nlohmann::json::array();
  for (const WaveState& w : waves) {
    out.push_back({{"status", std::string(wave_status_name(w.status))},
                   {"planned_size", w.planned_size},
                   {"started_ms", w.started_ms},
                   {"gate_passed_ms", w.gate_passed_ms},
                   {"finished_ms", w.finished_ms},
                   {"breach_overridden", w.breach_overridden}});
  }
  return out.dump();
}

common::Status parse_waves(const std::string& text, Rollout& r) {
  try {
    for (const auto& w : nlohmann::json::parse(text)) {
      WaveState ws;
      auto status = parse_wave_status(w.at("status").get<std::string>());
      if (!status) return status.error();
      ws.status = *status;
      ws.planned_size = w.at("planned_size").get<std::uint32_t>();
      ws.started_ms = w.at("started_ms").get<Millis>();
      ws.gate_passed_ms = w.at("gate_passed_ms").get<Millis>();
      ws.finished_ms = w.at("finished_ms").get<Millis>();
      ws.breach_overridden = w.at("breach_overridden").get<bool>();
      r.waves.push_back(ws);
    }
  } catch (const nlohmann::json::exception& e) {
    return common::Error(common::Errc::kMalformed, std::string("unreadable wave state: ") + e.what());
  }
  return common::ok_status();
}

}  // namespace fota::orchestrator::store_rows

// SPDX-License-Identifier: Apache-2.0
#include "store_rows.hpp"

#include <nlohmann/json.hpp>

namespace fota::orchestrator::store_rows {

namespace {
// A LIKE pattern matching `text` literally (with ESCAPE '\\').
std::string like_literal(std::string_view text) {
  std::string out;
  for (char c : text) {
    if (c == '%' || c == '_' || c == '\\') out += '\\';
    out += c;
  }
  return out;
}

}  // namespace

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

DeviceQuerySql device_query_sql(const DeviceQuery& q,
                                const std::function<std::string(std::size_t)>& placeholder,
                                const std::string& like) {
  DeviceQuerySql out;
  std::string& sql = out.sql;
  auto& args = out.args;
  // The next parameter's placeholder, its value bound in the same order.
  const auto next = [&] { return placeholder(args.size() + 1); };
  sql = "SELECT id FROM devices WHERE id > " + next();
  args.emplace_back(q.after_id);
  if (!q.phase.empty()) {
    sql += " AND last_phase = " + next();
    args.emplace_back(q.phase);
  }
  if (!q.id_contains.empty()) {
    sql += " AND id " + like + " " + next() + " ESCAPE '\\'";
    args.emplace_back("%" + like_literal(q.id_contains) + "%");
  }
  for (const DeviceSelector& s : q.selectors) {
    for (const auto& hw : s.hardware) {
      sql += " AND hardware = " + next();
      args.emplace_back(hw);
    }
    for (const auto& tag : s.tags) {
      sql += " AND ((',' || tags || ',') " + like + " " + next() + " ESCAPE '\\'";
      args.emplace_back("%," + like_literal(tag) + ",%");
      sql += " OR EXISTS (SELECT 1 FROM device_tags t WHERE t.device_id = devices.id AND t.tag = " + next() +
             "))";
      args.emplace_back(tag);
    }
    for (const auto& group : s.groups) {
      sql += " AND (grp = " + next();
      args.emplace_back(group);
      sql += " OR EXISTS (SELECT 1 FROM group_members m WHERE m.device_id = devices.id AND m.group_name = " +
             next() + "))";
      args.emplace_back(group);
    }
    if (s.online) {
      sql += " AND online = " + next();
      args.emplace_back(std::int64_t{*s.online ? 1 : 0});
    }
    for (const auto& v : s.versions) {
      sql += " AND version_key " + std::string(version_op_text(v.op)) + " " + next();
      args.emplace_back(version_sort_key(v.version));
    }
  }
  sql += " ORDER BY id LIMIT " + next();
  args.emplace_back(static_cast<std::int64_t>(q.limit + 1));  // one more: is there a next page?
  return out;
}

void finish_page(DevicePage& page, std::size_t limit) {
  if (page.ids.size() > limit) {
    page.ids.resize(limit);
    page.next_after = page.ids.back();
  }
}

}  // namespace fota::orchestrator::store_rows

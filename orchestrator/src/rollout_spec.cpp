// SPDX-License-Identifier: Apache-2.0
#include "fota/orchestrator/rollout_spec.hpp"

#include "fota/orchestrator/rollout_spec_section.hpp"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <chrono>
#include <cmath>
#include <regex>
#include <sstream>
#include <utility>

// date.h's parser trips GCC 12's -Wmaybe-uninitialized in optimized builds (a false positive inside
// date::from_stream); the pragma must cover the header and the instantiation below.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <date/date.h>
#include <nlohmann/json.hpp>

#include "fota/common/codec.hpp"

namespace fota::orchestrator {

using common::Errc;
using common::Error;
using common::Result;
using common::Status;

Result<Millis> parse_duration(std::string_view text) {
  std::string s(text);
  s.erase(std::remove_if(s.begin(), s.end(), [](unsigned char c) { return std::isspace(c) != 0; }), s.end());
  const Error bad(Errc::kInvalidArgument, "'" + std::string(text) +
                                              "' is not a duration; write e.g. 500ms, 90s, 10m, 2h, 1d or a "
                                              "number of seconds");
  if (s.empty()) return bad;
  std::size_t digits = 0;
  while (digits < s.size() && std::isdigit(static_cast<unsigned char>(s[digits])) != 0) ++digits;
  if (digits == 0 || digits > 15) return bad;
  std::int64_t value = 0;
  std::from_chars(s.data(), s.data() + digits, value);
  const std::string unit = s.substr(digits);
  std::int64_t factor = 0;
  if (unit.empty() || unit == "s")
    factor = 1000;
  else if (unit == "ms")
    factor = 1;
  else if (unit == "m" || unit == "min")
    factor = 60'000;
  else if (unit == "h")
    factor = 3'600'000;
  else if (unit == "d")
    factor = 86'400'000;
  else
    return bad;
  return value * factor;
}

std::string format_duration(Millis ms) {
  if (ms % 86'400'000 == 0 && ms != 0) return std::to_string(ms / 86'400'000) + "d";
  if (ms % 3'600'000 == 0 && ms != 0) return std::to_string(ms / 3'600'000) + "h";
  if (ms % 60'000 == 0 && ms != 0) return std::to_string(ms / 60'000) + "m";
  if (ms % 1000 == 0) return std::to_string(ms / 1000) + "s";
  return std::to_string(ms) + "ms";
}

Result<Millis> parse_timestamp(std::string_view text) {
  const Error bad(Errc::kInvalidArgument, "'" + std::string(text) +
                                              "' is not an RFC 3339 time; write e.g. 2026-11-25T20:00:00Z or "
                                              "2026-11-25T21:00:00+01:00");
  std::string s(text);
  // date::parse is lenient where RFC 3339 is not, and only a well-formed time may reach it: its %Y
  // also reads a sign and fewer digits ("-026", a year format_timestamp then writes in a form this
  // parser refuses, so the stored spec would not load again), and bytes inside %T made it convert
  // a NaN (undefined behaviour). Fractions stop at milliseconds, the precision kept.
  static const std::regex kRfc3339(
      R"(\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,3})?([Zz]|[+-]\d{2}:\d{2}))");
  if (!std::regex_match(s, kRfc3339)) return bad;
  const auto digit = [](char c) { return c >= '0' && c <= '9'; };
  date::sys_time<std::chrono::milliseconds> tp;
  std::istringstream in;
  if (s.back() == 'Z' || s.back() == 'z') {
    in.str(s.substr(0, s.size() - 1));
    in >> date::parse("%FT%T", tp);
  } else {
    // date::parse takes any two digits for the offset's hours and minutes (+25:00, +23:75), which
    // would schedule the rollout elsewhere in time; RFC 3339 allows 00-23 and 00-59.
    const std::string offset = s.substr(s.size() - 6);
    if ((offset[0] != '+' && offset[0] != '-') || !digit(offset[1]) || !digit(offset[2]) ||
        offset[3] != ':' || !digit(offset[4]) || !digit(offset[5]))
      return bad;
    const int hours = (offset[1] - '0') * 10 + (offset[2] - '0');
    const int minutes = (offset[4] - '0') * 10 + (offset[5] - '0');
    if (hours > 23 || minutes > 59) {
      return Error(Errc::kInvalidArgument, "UTC offset " + offset + " is impossible in '" + s +
                                               "'; an offset is +HH:MM or -HH:MM with hours 00 to 23 and "
                                               "minutes 00 to 59, e.g. +01:00 or -05:30");
    }
    in.str(s);
    in >> date::parse("%FT%T%Ez", tp);
  }
  if (in.fail()) return bad;
  in.peek();
  if (!in.eof()) return bad;
  return static_cast<Millis>(tp.time_since_epoch().count());
}

std::string format_timestamp(Millis ms) {
  const date::sys_time<std::chrono::milliseconds> tp{std::chrono::milliseconds(ms)};
  return date::format("%FT%TZ", tp);
}

namespace {

// A spec is stored and served as JSON, and nlohmann::json throws rather than write a string that
// is not UTF-8 (yaml-cpp passes such bytes through): such a string is refused when parsed, with
// the field named, instead of failing the save.
bool is_utf8(const std::string& text) {
  try {
    (void)nlohmann::json(text).dump();
    return true;
  } catch (const nlohmann::json::type_error&) {
    return false;
  }
}

// A missing field is "" (yaml-cpp throws when asked the type of a node that is not there).
std::string scalar(const YAML::Node& node) {
  return node.IsDefined() && node.IsScalar() ? node.Scalar() : std::string();
}

// Reads one spec from a YAML node. Errors name the field: "rollout spec: waves[1].size: ..." for a
// spec of its own, "<document>:<line>:<column>: <path>.waves[1].size: ..." for a section of a
// larger document, with the position of the field (or of the nearest enclosing node there is).
class SpecParser {
 public:
  SpecParser(const YAML::Node& root, const RolloutSpecSection* section) : root_(root), section_(section) {}

 private:
  Result<std::vector<std::string>> string_list(const YAML::Node& node, const std::string& field) const {
    std::vector<std::string> out;
    if (!node) return out;
    if (node.IsScalar()) {
      out.push_back(node.Scalar());
    } else if (node.IsSequence()) {
      for (const auto& item : node) {
        if (!item.IsScalar() || item.Scalar().empty())
          return field_error(field, "every entry must be a non-empty string");
        out.push_back(item.Scalar());
      }
    } else {
      return field_error(field, "expected a list of strings");
    }
    for (const auto& entry : out) {
      if (!is_utf8(entry)) return field_error(field, "an entry is not valid UTF-8 text");
    }
    return out;
  }

  Result<double> number(const YAML::Node& node, const std::string& field, double min, double max) const {
    const std::string s = scalar(node);
    double value = 0;
    auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
    if (s.empty() || ec != std::errc() || ptr != s.data() + s.size() || !std::isfinite(value)) {
      return field_error(field, "'" + s + "' is not a number");
    }
    if (value < min || value > max) {
      std::ostringstream msg;
      msg << value << " is out of range; allowed " << min << " to " << max;
      return field_error(field, msg.str());
    }
    return value;
  }

  Result<Millis> duration_field(const YAML::Node& node, const std::string& field) const {
    auto d = parse_duration(scalar(node));
    if (!d) return field_error(field, d.error().message);
    return *d;
  }

  // A ratio as 0.9 or "90%".
  Result<double> ratio(const YAML::Node& node, const std::string& field) const {
    std::string s = scalar(node);
    if (!s.empty() && s.back() == '%') {
      YAML::Node n(s.substr(0, s.size() - 1));
      auto v = number(n, field, 0, 100);
      if (!v) return v.error();
      return *v / 100.0;
    }
    return number(node, field, 0, 1);
  }

  Result<int> clock_minutes(const std::string& text, const std::string& field) const {
    int h = 0, m = 0;
    if (text.size() != 5 || text[2] != ':' || std::sscanf(text.c_str(), "%2d:%2d", &h, &m) != 2 || h < 0 ||
        h > 23 || m < 0 || m > 59) {
      return field_error(field, "'" + text + "' is not a local time; write HH:MM, e.g. 02:30");
    }
    return h * 60 + m;
  }

  Result<std::uint8_t> day_mask(const YAML::Node& node, const std::string& field) const {
    static const char* kDays[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat"};
    auto list = string_list(node, field);
    if (!list) return list.error();
    std::uint8_t mask = 0;
    for (std::string day : *list) {
      std::transform(day.begin(), day.end(), day.begin(), [](unsigned char c) { return std::tolower(c); });
      if (day == "daily" || day == "all") {
        mask = 0x7f;
        continue;
      }
      if (day == "weekdays") {
        mask |= 0x3e;
        continue;
      }
      if (day == "weekends") {
        mask |= 0x41;
        continue;
      }
      bool found = false;
      for (int i = 0; i < 7; ++i) {
        if (day.rfind(kDays[i], 0) == 0) {
          mask |= static_cast<std::uint8_t>(1u << i);
          found = true;
        }
      }
      if (!found)
        return field_error(field, "'" + day + "' is not a day; use mon..sun, weekdays, weekends or daily");
    }
    if (mask == 0) return field_error(field, "name at least one day");
    return mask;
  }

  Status check_keys(const YAML::Node& map, const std::string& where, std::vector<std::string> allowed) const {
    // The top level of a section also holds the enclosing document's own keys.
    if (where.empty() && section_) {
      allowed.insert(allowed.end(), section_->document_keys.begin(), section_->document_keys.end());
    }
    for (const auto& kv : map) {
      const std::string key = kv.first.Scalar();
      if (std::find(allowed.begin(), allowed.end(), key) != allowed.end()) continue;
      std::string list;
      for (const std::string& a : allowed) list += (list.empty() ? "" : ", ") + a;
      return field_error(where.empty() ? key : where + "." + key, "unknown field; known fields: " + list);
    }
    return common::ok_status();
  }

 public:
  Result<RolloutSpec> parse(const YAML::Node& root) const {
    if (!root.IsMap()) {
      return field_error(
          "", section_ ? "expected a mapping of rollout spec fields (docs/ORCHESTRATOR.md)"
                       : "expected a mapping with name, artifact, target and waves at the top level");
    }
    std::vector<std::string> keys = {"name",
                                     "waves",
                                     "max_concurrent",
                                     "max_bytes_per_second",
                                     "retries",
                                     "timeouts",
                                     "start_at",
                                     "windows",
                                     "on_breach",
                                     "command_ttl",
                                     "max_inflight_chunks",
                                     "non_recipients"};
    // A section's program supplies the artifact and the target itself.
    if (!section_) keys.insert(keys.begin() + 1, {"artifact", "target"});
    if (auto st = check_keys(root, "", keys); !st) return st.error();
    RolloutSpec spec;
    spec.name = scalar(root["name"]);
    if ((!section_ || root["name"]) && (spec.name.empty() || spec.name.size() > 128))
      return field_error("name", "required, 1 to 128 characters");
    if (!is_utf8(spec.name)) return field_error("name", "is not valid UTF-8 text");
    if (section_) return parse_waves_and_limits(root, std::move(spec));
    spec.artifact_id = scalar(root["artifact"]);
    if (!common::is_valid_artifact_id(spec.artifact_id)) {
      return field_error("artifact",
                         "'" + spec.artifact_id +
                             "' is not an artifact id (32 lowercase hex characters); `fotactl artifact "
                             "list` shows the uploaded ones");
    }

    const YAML::Node target = root["target"];
    if (!target || !target.IsMap()) {
      return field_error("target", "required: give devices, tags, groups, hardware, or all: true");
    }
    if (auto st = check_keys(
            target, "target",
            {"all", "devices", "tags", "group", "groups", "hardware", "resolved_groups", "decryption_keys"});
        !st)
      return st.error();
    if (target["group"] && target["groups"])
      return field_error("target.group", "give group (one name) or groups (a list), not both");
    if (target["all"]) spec.target.all = scalar(target["all"]) == "true";
    auto ids = string_list(target["devices"], "target.devices");
    if (!ids) return ids.error();
    spec.target.device_ids = *ids;
    auto tags = string_list(target["tags"], "target.tags");
    if (!tags) return tags.error();
    spec.target.tags = *tags;
    auto groups = target["group"] ? string_list(target["group"], "target.group")
                                  : string_list(target["groups"], "target.groups");
    if (!groups) return groups.error();
    spec.target.groups = *groups;
    // Written by the orchestrator when it creates the rollout (read back from its store).
    if (const YAML::Node resolved = target["resolved_groups"]) {
      if (!resolved.IsMap())
        return field_error("target.resolved_groups", "expected a mapping of group to ids");
      for (const auto& entry : resolved) {
        const std::string name = entry.first.Scalar();
        auto members = string_list(entry.second, "target.resolved_groups." + name);
        if (!members) return members.error();
        std::sort(members->begin(), members->end());
        spec.target.resolved_groups[name] = *members;
      }
    }
    auto hw = string_list(target["hardware"], "target.hardware");
    if (!hw) return hw.error();
    spec.target.hardware_types = *hw;
    auto keys_wanted = string_list(target["decryption_keys"], "target.decryption_keys");
    if (!keys_wanted) return keys_wanted.error();
    spec.target.decryption_keys = *keys_wanted;
    if (!spec.target.all && spec.target.device_ids.empty() && spec.target.tags.empty() &&
        spec.target.groups.empty() && spec.target.hardware_types.empty()) {
      return field_error("target", "selects nothing; give devices, tags, groups, hardware, or all: true");
    }
    return parse_waves_and_limits(root, std::move(spec));
  }

 private:
  // Everything but name, artifact and target.
  Result<RolloutSpec> parse_waves_and_limits(const YAML::Node& root, RolloutSpec spec) const {
    const YAML::Node waves = root["waves"];
    if (!waves) {
      spec.waves.push_back(WaveSpec{});
    } else {
      if (!waves.IsSequence() || waves.size() == 0)
        return field_error("waves", "expected a non-empty list of waves");
      if (waves.size() > 100) return field_error("waves", "at most 100 waves");
      for (std::size_t i = 0; i < waves.size(); ++i) {
        const std::string where = "waves[" + std::to_string(i) + "]";
        const YAML::Node w = waves[i];
        if (!w.IsMap())
          return field_error(where, "expected a mapping with size, success_ratio, failure_threshold, soak");
        if (auto st = check_keys(w, where, {"size", "success_ratio", "failure_threshold", "soak"}); !st) {
          return st.error();
        }
        WaveSpec wave;
        const std::string size = scalar(w["size"]);
        if (size.empty())
          return field_error(where + ".size", "required: a count like 10 or a percentage like 25%");
        if (size.back() == '%') {
          wave.size_kind = WaveSizeKind::kPercent;
          auto v = number(YAML::Node(size.substr(0, size.size() - 1)), where + ".size", 0.001, 100);
          if (!v) return v.error();
          wave.size = *v;
        } else {
          wave.size_kind = WaveSizeKind::kCount;
          auto v = number(w["size"], where + ".size", 1, 10'000'000);
          if (!v) return v.error();
          if (std::floor(*v) != *v) return field_error(where + ".size", "a count must be a whole number");
          wave.size = *v;
        }
        if (w["success_ratio"]) {
          auto r = ratio(w["success_ratio"], where + ".success_ratio");
          if (!r) return r.error();
          wave.success_ratio = *r;
        }
        if (w["failure_threshold"]) {
          auto r = ratio(w["failure_threshold"], where + ".failure_threshold");
          if (!r) return r.error();
          wave.failure_threshold = *r;
        }
        if (w["soak"]) {
          auto d = duration_field(w["soak"], where + ".soak");
          if (!d) return d.error();
          wave.soak_ms = *d;
        }
        spec.waves.push_back(wave);
      }
    }

    if (root["max_concurrent"]) {
      auto v = number(root["max_concurrent"], "max_concurrent", 0, 1'000'000);
      if (!v) return v.error();
      spec.max_concurrent = static_cast<std::uint32_t>(*v);
    }
    if (root["max_inflight_chunks"]) {
      auto v = number(root["max_inflight_chunks"], "max_inflight_chunks", 0, 1024);
      if (!v) return v.error();
      spec.max_inflight_chunks = static_cast<std::uint32_t>(*v);
    }
    if (root["max_bytes_per_second"]) {
      auto v = number(root["max_bytes_per_second"], "max_bytes_per_second", 0, 1e13);
      if (!v) return v.error();
      spec.max_bytes_per_second = static_cast<std::uint64_t>(*v);
    }
    if (const YAML::Node r = root["retries"]) {
      if (!r.IsMap()) return field_error("retries", "expected a mapping with max, backoff, max_backoff");
      if (auto st = check_keys(r, "retries", {"max", "backoff", "max_backoff"}); !st) return st.error();
      if (r["max"]) {
        auto v = number(r["max"], "retries.max", 0, 100);
        if (!v) return v.error();
        spec.retry.max_retries = static_cast<std::uint32_t>(*v);
      }
      if (r["backoff"]) {
        auto d = duration_field(r["backoff"], "retries.backoff");
        if (!d) return d.error();
        spec.retry.backoff_ms = *d;
      }
      if (r["max_backoff"]) {
        auto d = duration_field(r["max_backoff"], "retries.max_backoff");
        if (!d) return d.error();
        spec.retry.max_backoff_ms = *d;
      }
    }
    if (const YAML::Node t = root["timeouts"]) {
      if (!t.IsMap()) return field_error("timeouts", "expected a mapping of phase: duration");
      if (auto st = check_keys(t, "timeouts",
                               {"dispatch", "downloading", "verifying", "installing", "rebooting",
                                "confirming", "rolling_back"});
          !st) {
        return st.error();
      }
      struct Slot {
        const char* key;
        Millis* value;
      };
      const Slot slots[] = {
          {"dispatch", &spec.timeouts.dispatch_ms},        {"downloading", &spec.timeouts.downloading_ms},
          {"verifying", &spec.timeouts.verifying_ms},      {"installing", &spec.timeouts.installing_ms},
          {"rebooting", &spec.timeouts.rebooting_ms},      {"confirming", &spec.timeouts.confirming_ms},
          {"rolling_back", &spec.timeouts.rolling_back_ms}};
      for (const Slot& slot : slots) {
        if (!t[slot.key]) continue;
        auto d = duration_field(t[slot.key], std::string("timeouts.") + slot.key);
        if (!d) return d.error();
        if (*d <= 0) return field_error(std::string("timeouts.") + slot.key, "must be greater than zero");
        *slot.value = *d;
      }
    }
    if (root["start_at"]) {
      auto ts = parse_timestamp(scalar(root["start_at"]));
      if (!ts) return field_error("start_at", ts.error().message);
      spec.start_at_ms = *ts;
    }
    if (const YAML::Node windows = root["windows"]) {
      if (!windows.IsSequence()) return field_error("windows", "expected a list of {days, start, duration}");
      for (std::size_t i = 0; i < windows.size(); ++i) {
        const std::string where = "windows[" + std::to_string(i) + "]";
        const YAML::Node w = windows[i];
        if (!w.IsMap()) return field_error(where, "expected a mapping with days, start (HH:MM) and duration");
        if (auto st = check_keys(w, where, {"days", "start", "duration"}); !st) return st.error();
        WeeklyWindow window;
        if (w["days"]) {
          auto mask = day_mask(w["days"], where + ".days");
          if (!mask) return mask.error();
          window.days_mask = *mask;
        }
        auto start = clock_minutes(scalar(w["start"]), where + ".start");
        if (!start) return start.error();
        window.start_minute = *start;
        auto d = duration_field(w["duration"], where + ".duration");
        if (!d) return d.error();
        if (*d < 60'000 || *d > 86'400'000)
          return field_error(where + ".duration", "must be between 1m and 24h");
        window.duration_minutes = static_cast<int>(*d / 60'000);
        spec.windows.push_back(window);
      }
    }
    if (root["on_breach"]) {
      const std::string action = scalar(root["on_breach"]);
      const auto parsed = common::parse_breach_action(action);
      if (!parsed)
        return field_error(
            "on_breach", "'" + action + "' is not an action; use " + std::string(common::kBreachActionNames));
      spec.on_breach = *parsed;
    }
    if (root["non_recipients"]) {
      const std::string mode = scalar(root["non_recipients"]);
      if (mode == "refuse") {
        spec.non_recipients = NonRecipients::kRefuse;
      } else if (mode == "exclude") {
        spec.non_recipients = NonRecipients::kExclude;
      } else if (mode == "include") {
        spec.non_recipients = NonRecipients::kInclude;
      } else {
        return field_error("non_recipients",
                           "'" + mode + "' is not a choice; use refuse, exclude or include");
      }
    }
    if (root["command_ttl"]) {
      auto d = duration_field(root["command_ttl"], "command_ttl");
      if (!d) return d.error();
      if (*d < 1000) return field_error("command_ttl", "must be at least 1s");
      spec.command_ttl_ms = *d;
    }
    return spec;
  }

 private:
  Error field_error(const std::string& field, const std::string& what) const {
    if (!section_)
      return Error(Errc::kInvalidArgument, "rollout spec: " + (field.empty() ? "" : field + ": ") + what);
    const YAML::Mark mark = locate(field).Mark();
    std::string where = section_->document;
    if (mark.line >= 0) where += ":" + std::to_string(mark.line + 1) + ":" + std::to_string(mark.column + 1);
    std::string path = section_->path;
    if (!field.empty()) path += (path.empty() ? "" : ".") + field;
    return Error(Errc::kInvalidArgument, where + ": " + path + ": " + what);
  }

  // The node a field path such as "waves[1].size" names, or the nearest one above it that exists.
  YAML::Node locate(const std::string& field) const {
    YAML::Node node = root_;  // rebound below with reset(), never assigned to
    std::size_t at = 0;
    while (at < field.size()) {
      const std::size_t end = field.find_first_of(".[", at);
      const std::string key = field.substr(at, end == std::string::npos ? std::string::npos : end - at);
      if (!key.empty()) {
        const YAML::Node next = std::as_const(node)[key];
        if (!node.IsMap() || !next) return node;
        node.reset(next);
      }
      if (end == std::string::npos) break;
      if (field[end] == '[') {
        const std::size_t close = field.find(']', end);
        if (close == std::string::npos) return node;
        const std::size_t index = std::stoul(field.substr(end + 1, close - end - 1));
        if (!node.IsSequence() || index >= node.size()) return node;
        const YAML::Node next = std::as_const(node)[index];
        node.reset(next);
        at = close + 1;
        if (at < field.size() && field[at] == '.') ++at;
      } else {
        at = end + 1;
      }
    }
    return node;
  }

  YAML::Node root_;
  const RolloutSpecSection* section_;  // null: a spec of its own
};

}  // namespace

Result<RolloutSpec> parse_rollout_spec(std::string_view text) {
  if (text.size() > 1024 * 1024) return Error(Errc::kTooLarge, "rollout spec is larger than 1 MiB");
  try {
    const YAML::Node root = YAML::Load(std::string(text));
    return SpecParser(root, nullptr).parse(root);
  } catch (const YAML::Exception& e) {
    return Error(Errc::kInvalidArgument, "rollout spec is not valid YAML or JSON: line " +
                                             std::to_string(e.mark.line + 1) + ", column " +
                                             std::to_string(e.mark.column + 1) + ": " + e.msg);
  }
}

Result<RolloutSpec> parse_rollout_spec_section(const YAML::Node& section, const RolloutSpecSection& where) {
  try {
    return SpecParser(section, &where).parse(section);
  } catch (const YAML::Exception& e) {
    return Error(Errc::kInvalidArgument, where.document + ": " + where.path + ": " + e.msg);
  }
}

std::string rollout_spec_to_json(const RolloutSpec& spec) {
  using nlohmann::json;
  static const char* kDays[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat"};
  json j;
  j["name"] = spec.name;
  j["artifact"] = spec.artifact_id;
  json target = json::object();
  if (spec.target.all) target["all"] = true;
  if (!spec.target.device_ids.empty()) target["devices"] = spec.target.device_ids;
  if (!spec.target.tags.empty()) target["tags"] = spec.target.tags;
  if (!spec.target.groups.empty()) target["groups"] = spec.target.groups;
  if (!spec.target.resolved_groups.empty()) {
    json resolved = json::object();
    for (const auto& [name, ids] : spec.target.resolved_groups) resolved[name] = ids;
    target["resolved_groups"] = resolved;
  }
  if (!spec.target.hardware_types.empty()) target["hardware"] = spec.target.hardware_types;
  if (!spec.target.decryption_keys.empty()) target["decryption_keys"] = spec.target.decryption_keys;
  j["target"] = target;
  json waves = json::array();
  for (const WaveSpec& w : spec.waves) {
    json wave;
    if (w.size_kind == WaveSizeKind::kPercent) {
      std::ostringstream s;
      s << w.size << '%';
      wave["size"] = s.str();
    } else {
      wave["size"] = static_cast<std::int64_t>(w.size);
    }
    wave["success_ratio"] = w.success_ratio;
    wave["failure_threshold"] = w.failure_threshold;
    wave["soak"] = format_duration(w.soak_ms);
    waves.push_back(wave);
  }
  j["waves"] = waves;
  j["max_concurrent"] = spec.max_concurrent;
  j["max_bytes_per_second"] = spec.max_bytes_per_second;
  j["max_inflight_chunks"] = spec.max_inflight_chunks;
  j["retries"] = {{"max", spec.retry.max_retries},
                  {"backoff", format_duration(spec.retry.backoff_ms)},
                  {"max_backoff", format_duration(spec.retry.max_backoff_ms)}};
  j["timeouts"] = {{"dispatch", format_duration(spec.timeouts.dispatch_ms)},
                   {"downloading", format_duration(spec.timeouts.downloading_ms)},
                   {"verifying", format_duration(spec.timeouts.verifying_ms)},
                   {"installing", format_duration(spec.timeouts.installing_ms)},
                   {"rebooting", format_duration(spec.timeouts.rebooting_ms)},
                   {"confirming", format_duration(spec.timeouts.confirming_ms)},
                   {"rolling_back", format_duration(spec.timeouts.rolling_back_ms)}};
  if (spec.start_at_ms) j["start_at"] = format_timestamp(*spec.start_at_ms);
  json windows = json::array();
  for (const WeeklyWindow& w : spec.windows) {
    json days = json::array();
    for (int i = 0; i < 7; ++i) {
      if ((w.days_mask >> i) & 1u) days.push_back(kDays[i]);
    }
    char start[32];
    std::snprintf(start, sizeof start, "%02d:%02d", w.start_minute / 60, w.start_minute % 60);
    windows.push_back(
        {{"days", days}, {"start", start}, {"duration", format_duration(w.duration_minutes * 60'000LL)}});
  }
  if (!windows.empty()) j["windows"] = windows;
  j["on_breach"] = std::string(breach_action_name(spec.on_breach));
  j["command_ttl"] = format_duration(spec.command_ttl_ms);
  if (spec.non_recipients != NonRecipients::kRefuse)
    j["non_recipients"] = spec.non_recipients == NonRecipients::kExclude ? "exclude" : "include";
  return j.dump();
}

std::vector<std::size_t> wave_sizes(const RolloutSpec& spec, std::size_t total) {
  std::vector<std::size_t> sizes;
  std::size_t next = 0;
  for (std::size_t w = 0; w < spec.waves.size(); ++w) {
    const WaveSpec& wave = spec.waves[w];
    std::size_t size =
        wave.size_kind == WaveSizeKind::kCount
            ? static_cast<std::size_t>(wave.size)
            : static_cast<std::size_t>(std::ceil(static_cast<double>(total) * wave.size / 100.0 - 1e-9));
    if (w + 1 == spec.waves.size()) size = total - next;  // the last wave takes the rest
    size = std::min(size, total - next);
    sizes.push_back(size);
    next += size;
  }
  return sizes;
}

}  // namespace fota::orchestrator

#pragma GCC diagnostic pop

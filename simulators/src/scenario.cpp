// SPDX-License-Identifier: Apache-2.0
#include "fota/sim/scenario.hpp"

#include <date/tz.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <fstream>
#include <functional>
#include <initializer_list>
#include <set>
#include <sstream>

#include "fota/orchestrator/rollout_spec_section.hpp"

namespace fota::sim {

using common::Errc;
using common::Error;
using common::Result;

std::uint32_t Fleet::total() const noexcept {
  std::uint32_t sum = 0;
  for (const auto& group : groups) sum += group.count;
  return sum;
}

std::string_view device_phase_name(DevicePhase phase) noexcept {
  switch (phase) {
    case DevicePhase::kDownloading:
      return "downloading";
    case DevicePhase::kVerifying:
      return "verifying";
    case DevicePhase::kInstalling:
      return "installing";
    case DevicePhase::kRebooting:
      return "rebooting";
    case DevicePhase::kConfirming:
      return "confirming";
  }
  return "unknown";
}

common::Result<orchestrator::WeeklyWindow> window_open_now_in(const std::string& zone_name,
                                                              int length_minutes, std::int64_t unix_ms) {
  const date::time_zone* zone = nullptr;
  try {
    zone = date::locate_zone(zone_name);
  } catch (const std::exception&) {
    return Error(Errc::kInvalidArgument,
                 "'" + zone_name + "' is not an IANA time zone; write e.g. Asia/Tokyo or Europe/Berlin");
  }
  const auto local =
      zone->to_local(date::sys_time<std::chrono::milliseconds>(std::chrono::milliseconds(unix_ms)));
  const auto minute =
      std::chrono::duration_cast<std::chrono::minutes>(local - date::floor<date::days>(local));
  constexpr int kMinutesPerDay = 24 * 60;
  orchestrator::WeeklyWindow window;  // every day
  window.start_minute = (static_cast<int>(minute.count()) + kMinutesPerDay - 1) % kMinutesPerDay;
  window.duration_minutes = length_minutes;
  return window;
}

std::string_view expected_outcome_name(ExpectedOutcome outcome) noexcept {
  switch (outcome) {
    case ExpectedOutcome::kCompleted:
      return "completed";
    case ExpectedOutcome::kHalted:
      return "halted";
    case ExpectedOutcome::kRunning:
      return "running";
    case ExpectedOutcome::kAny:
      return "any";
  }
  return "unknown";
}

namespace {

std::string trim(std::string_view text) {
  std::size_t begin = 0;
  std::size_t end = text.size();
  while (begin < end && std::isspace(static_cast<unsigned char>(text[begin]))) ++begin;
  while (end > begin && std::isspace(static_cast<unsigned char>(text[end - 1]))) --end;
  return std::string(text.substr(begin, end - begin));
}

std::string lower(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return text;
}

// Splits "12.5KiB" into 12.5 and "KiB". Refuses signs, exponents and empty numbers.
bool split_number(std::string_view text, double& number, std::string& unit) {
  const std::string t = trim(text);
  std::size_t i = 0;
  bool digits = false;
  while (i < t.size() && (std::isdigit(static_cast<unsigned char>(t[i])) || t[i] == '.')) {
    digits = digits || std::isdigit(static_cast<unsigned char>(t[i]));
    ++i;
  }
  if (!digits) return false;
  const std::string number_text = t.substr(0, i);
  if (std::count(number_text.begin(), number_text.end(), '.') > 1) return false;
  try {
    std::size_t used = 0;
    number = std::stod(number_text, &used);
    if (used != number_text.size()) return false;
  } catch (const std::exception&) {
    return false;
  }
  unit = trim(std::string_view(t).substr(i));
  return std::isfinite(number);
}

}  // namespace

Result<std::int64_t> parse_duration_ms(std::string_view text) {
  double number = 0;
  std::string unit;
  const Error bad(
      Errc::kInvalidArgument,
      "expected a duration with a unit such as 250ms, 5s, 2m or 1h, got '" + std::string(text) + "'");
  if (!split_number(text, number, unit)) return bad;
  double factor = 0;
  if (unit == "ms")
    factor = 1;
  else if (unit == "s")
    factor = 1000;
  else if (unit == "m" || unit == "min")
    factor = 60'000;
  else if (unit == "h")
    factor = 3'600'000;
  else
    return bad;
  const double ms = number * factor;
  if (ms > 9.0e15) return bad;
  return static_cast<std::int64_t>(std::llround(ms));
}

Result<std::uint64_t> parse_size_bytes(std::string_view text) {
  double number = 0;
  std::string unit;
  const Error bad(
      Errc::kInvalidArgument,
      "expected a size such as 512, 512B, 16KiB, 4MiB, 1GiB, 100KB or 10MB, got '" + std::string(text) + "'");
  if (!split_number(text, number, unit)) return bad;
  static const std::map<std::string, double> kUnits = {
      {"", 1},        {"B", 1},       {"KiB", 1024.0}, {"MiB", 1048576.0}, {"GiB", 1073741824.0},
      {"KB", 1000.0}, {"kB", 1000.0}, {"MB", 1e6},     {"GB", 1e9}};
  const auto it = kUnits.find(unit);
  if (it == kUnits.end()) return bad;
  const double bytes = number * it->second;
  if (bytes > 1.0e18 || bytes != std::floor(bytes)) return bad;
  return static_cast<std::uint64_t>(bytes);
}

Result<std::uint64_t> parse_rate_bytes_per_second(std::string_view text) {
  const Error bad(Errc::kInvalidArgument,
                  "expected a rate such as 256KiB/s, 1MB/s or 8Mbit/s, got '" + std::string(text) + "'");
  const std::string t = trim(text);
  const auto slash = t.rfind("/s");
  if (slash == std::string::npos || slash + 2 != t.size()) return bad;
  const std::string amount = t.substr(0, slash);
  for (const auto& [suffix, bits] : std::initializer_list<std::pair<std::string_view, double>>{
           {"Gbit", 1e9}, {"Mbit", 1e6}, {"kbit", 1e3}, {"Kbit", 1e3}, {"bit", 1}}) {
    if (amount.size() > suffix.size() &&
        amount.compare(amount.size() - suffix.size(), suffix.size(), suffix) == 0) {
      double number = 0;
      std::string unit;
      if (!split_number(std::string_view(amount).substr(0, amount.size() - suffix.size()), number, unit) ||
          !unit.empty()) {
        return bad;
      }
      return static_cast<std::uint64_t>(std::llround(number * bits / 8.0));
    }
  }
  auto size = parse_size_bytes(amount);
  if (!size) return bad;
  return *size;
}

Result<double> parse_fraction(std::string_view text) {
  double number = 0;
  std::string unit;
  const Error bad(
      Errc::kInvalidArgument,
      "expected a fraction between 0 and 1 or a percentage such as 20%, got '" + std::string(text) + "'");
  if (!split_number(text, number, unit)) return bad;
  if (unit == "%")
    number /= 100.0;
  else if (!unit.empty())
    return bad;
  if (number < 0.0 || number > 1.0) return bad;
  return number;
}

Result<int> parse_time_of_day_minutes(std::string_view text) {
  const std::string t = trim(text);
  const Error bad(Errc::kInvalidArgument, "expected a time of day HH:MM such as 02:30, got '" + t + "'");
  const auto colon = t.find(':');
  if (colon == std::string::npos || colon == 0 || colon > 2 || t.size() != colon + 3) return bad;
  int hours = 0;
  int minutes = 0;
  auto [p1, e1] = std::from_chars(t.data(), t.data() + colon, hours);
  auto [p2, e2] = std::from_chars(t.data() + colon + 1, t.data() + t.size(), minutes);
  if (e1 != std::errc() || e2 != std::errc() || p1 != t.data() + colon || p2 != t.data() + t.size())
    return bad;
  if (hours < 0 || hours > 24 || minutes < 0 || minutes > 59 || (hours == 24 && minutes != 0)) return bad;
  return hours * 60 + minutes;
}

namespace {

// Thrown inside the parser only; parse_scenario turns it into an Error value.
struct ScenarioError {
  std::string message;
};

// Walks the YAML tree keeping the dotted path of the current field for error messages.
class ScenarioParser {
 public:
  explicit ScenarioParser(std::string source) : source_(std::move(source)) {}

  [[noreturn]] void fail(const YAML::Node& node, const std::string& path, const std::string& what) const {
    std::ostringstream out;
    out << source_;
    if (node.IsDefined() && node.Mark().line >= 0) {
      out << ":" << node.Mark().line + 1 << ":" << node.Mark().column + 1;
    }
    out << ": " << (path.empty() ? "(top level)" : path) << ": " << what;
    throw ScenarioError{out.str()};
  }

  void expect_map(const YAML::Node& node, const std::string& path,
                  std::initializer_list<std::string_view> known) const {
    if (!node.IsMap()) fail(node, path, "expected a mapping of fields");
    for (const auto& entry : node) {
      const std::string key = entry.first.as<std::string>("");
      if (std::find(known.begin(), known.end(), key) == known.end()) {
        std::string list;
        for (auto k : known) list += (list.empty() ? "" : ", ") + std::string(k);
        fail(entry.first, join(path, key), "unknown field; known fields here: " + list);
      }
    }
  }

  static std::string join(const std::string& path, std::string_view key) {
    return path.empty() ? std::string(key) : path + "." + std::string(key);
  }
  static std::string index(const std::string& path, std::size_t i) {
    return path + "[" + std::to_string(i) + "]";
  }

  std::string scalar(const YAML::Node& node, const std::string& path) const {
    if (!node.IsScalar()) fail(node, path, "expected a single value");
    return node.Scalar();
  }

  template <typename T>
  T check(const YAML::Node& node, const std::string& path, Result<T> value) const {
    if (!value) fail(node, path, value.error().message);
    return *value;
  }

  std::string string(const YAML::Node& node, const std::string& path) const {
    std::string value = scalar(node, path);
    if (value.empty()) fail(node, path, "must not be empty");
    return value;
  }

  std::uint64_t whole(const YAML::Node& node, const std::string& path, std::uint64_t min,
                      std::uint64_t max) const {
    const std::string text = scalar(node, path);
    std::uint64_t value = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc() || end != text.data() + text.size() || value < min || value > max) {
      fail(node, path,
           "expected a whole number from " + std::to_string(min) + " to " + std::to_string(max) + ", got '" +
               text + "'");
    }
    return value;
  }

  double real(const YAML::Node& node, const std::string& path, double min, double max) const {
    const std::string text = scalar(node, path);
    double value = 0;
    std::string unit;
    if (!split_number(text, value, unit) || !unit.empty() || value < min || value > max) {
      std::ostringstream range;
      range << "expected a number from " << min << " to " << max << ", got '" << text << "'";
      fail(node, path, range.str());
    }
    return value;
  }

  bool boolean(const YAML::Node& node, const std::string& path) const {
    const std::string text = lower(scalar(node, path));
    if (text == "true" || text == "yes" || text == "on") return true;
    if (text == "false" || text == "no" || text == "off") return false;
    fail(node, path, "expected true or false, got '" + text + "'");
  }

  std::int64_t duration(const YAML::Node& node, const std::string& path) const {
    return check(node, path, parse_duration_ms(scalar(node, path)));
  }
  std::uint64_t size(const YAML::Node& node, const std::string& path) const {
    return check(node, path, parse_size_bytes(scalar(node, path)));
  }
  std::uint64_t rate(const YAML::Node& node, const std::string& path) const {
    return check(node, path, parse_rate_bytes_per_second(scalar(node, path)));
  }
  double fraction(const YAML::Node& node, const std::string& path) const {
    return check(node, path, parse_fraction(scalar(node, path)));
  }

  template <typename F>
  void each(const YAML::Node& node, const std::string& path, F&& fn) const {
    if (!node.IsSequence()) fail(node, path, "expected a list");
    for (std::size_t i = 0; i < node.size(); ++i) fn(node[i], index(path, i));
  }

  std::vector<std::string> strings(const YAML::Node& node, const std::string& path) const {
    std::vector<std::string> out;
    if (node.IsScalar()) {
      out.push_back(string(node, path));
      return out;
    }
    each(node, path, [&](const YAML::Node& item, const std::string& p) { out.push_back(string(item, p)); });
    return out;
  }

  // A single value, a list (equal weights) or a mapping value -> share ("20%" or 0.2).
  std::vector<WeightedChoice> choices(const YAML::Node& node, const std::string& path) const {
    std::vector<WeightedChoice> out;
    if (node.IsMap()) {
      double sum = 0;
      for (const auto& entry : node) {
        const std::string key = entry.first.as<std::string>("");
        const double weight = fraction(entry.second, join(path, key));
        out.push_back({key, weight});
        sum += weight;
      }
      if (out.empty()) fail(node, path, "must name at least one value");
      if (std::fabs(sum - 1.0) > 1e-6) {
        std::ostringstream msg;
        msg << "shares must add up to 100%, they add up to " << sum * 100.0 << "%";
        fail(node, path, msg.str());
      }
      return out;
    }
    for (auto& value : strings(node, path)) out.push_back({std::move(value), 1.0});
    if (out.empty()) fail(node, path, "must name at least one value");
    for (auto& choice : out) choice.weight = 1.0 / static_cast<double>(out.size());
    return out;
  }

  LinkProfile link_profile(const YAML::Node& node, const std::string& path, std::string name) const {
    expect_map(node, path, {"latency", "jitter", "bandwidth", "drops"});
    LinkProfile profile;
    profile.name = std::move(name);
    if (node["latency"]) profile.latency_ms = duration(node["latency"], join(path, "latency"));
    if (node["jitter"]) profile.jitter_ms = duration(node["jitter"], join(path, "jitter"));
    if (profile.jitter_ms > profile.latency_ms) {
      fail(node["jitter"], join(path, "jitter"),
           "must not exceed latency (latency - jitter is the fastest delivery)");
    }
    if (node["bandwidth"])
      profile.bandwidth_bytes_per_second = rate(node["bandwidth"], join(path, "bandwidth"));
    if (const auto drops = node["drops"]) {
      const std::string p = join(path, "drops");
      expect_map(drops, p, {"count", "per_minute", "between", "stall_fraction", "stall", "down"});
      DropSpec& d = profile.drops;
      if (drops["count"])
        d.count = static_cast<std::uint32_t>(whole(drops["count"], join(p, "count"), 0, 10'000));
      if (drops["per_minute"]) d.per_minute = real(drops["per_minute"], join(p, "per_minute"), 0, 600);
      if (d.count > 0 && d.per_minute > 0) fail(drops, p, "give either count or per_minute, not both");
      if (const auto between = drops["between"]) {
        const std::string bp = join(p, "between");
        if (!between.IsSequence() || between.size() != 2)
          fail(between, bp, "expected [start, end], e.g. [5s, 60s]");
        d.window_start_ms = duration(between[0], index(bp, 0));
        d.window_end_ms = duration(between[1], index(bp, 1));
        if (d.window_end_ms <= d.window_start_ms) fail(between, bp, "end must be after start");
      }
      if (drops["stall_fraction"])
        d.stall_fraction = fraction(drops["stall_fraction"], join(p, "stall_fraction"));
      if (drops["stall"]) d.stall_ms = duration(drops["stall"], join(p, "stall"));
      if (drops["down"]) d.down_ms = duration(drops["down"], join(p, "down"));
    }
    return profile;
  }

  FleetGroup group(const YAML::Node& node, const std::string& path, std::size_t number) const {
    expect_map(node, path,
               {"name", "count", "hardware", "version", "security_counter", "time_zones", "time_zone",
                "links", "link"});
    FleetGroup g;
    g.name = node["name"] ? string(node["name"], join(path, "name")) : "group" + std::to_string(number);
    if (!node["count"]) fail(node, path, "missing field 'count' (number of devices in this group)");
    g.count = static_cast<std::uint32_t>(whole(node["count"], join(path, "count"), 1, 100'000));
    if (!node["hardware"]) fail(node, path, "missing field 'hardware' (hardware type, e.g. gw-a)");
    g.hardware_type = string(node["hardware"], join(path, "hardware"));
    if (!node["version"]) fail(node, path, "missing field 'version' (installed firmware version)");
    g.installed_version = string(node["version"], join(path, "version"));
    if (node["security_counter"]) {
      g.security_counter = whole(node["security_counter"], join(path, "security_counter"), 0, UINT64_MAX);
    }
    if (node["time_zones"] && node["time_zone"])
      fail(node, path, "give either time_zone or time_zones, not both");
    if (node["time_zones"]) g.time_zones = choices(node["time_zones"], join(path, "time_zones"));
    if (node["time_zone"]) g.time_zones = choices(node["time_zone"], join(path, "time_zone"));
    if (g.time_zones.empty()) g.time_zones.push_back({"UTC", 1.0});
    if (node["links"] && node["link"]) fail(node, path, "give either link or links, not both");
    if (node["links"]) g.links = choices(node["links"], join(path, "links"));
    if (node["link"]) g.links = choices(node["link"], join(path, "link"));
    if (g.links.empty()) g.links.push_back({"ideal", 1.0});
    return g;
  }

  FaultTarget target(const YAML::Node& node, const std::string& path) const {
    FaultTarget t;
    if (!node["fraction"]) fail(node, path, "missing field 'fraction' (share of devices hit, e.g. 10%)");
    t.fraction = fraction(node["fraction"], join(path, "fraction"));
    if (node["groups"]) t.groups = strings(node["groups"], join(path, "groups"));
    return t;
  }

  DevicePhase phase(const YAML::Node& node, const std::string& path) const {
    const std::string name = lower(scalar(node, path));
    for (auto p : {DevicePhase::kDownloading, DevicePhase::kVerifying, DevicePhase::kInstalling,
                   DevicePhase::kRebooting, DevicePhase::kConfirming}) {
      if (name == device_phase_name(p)) return p;
    }
    fail(node, path,
         "unknown phase '" + name + "'; use downloading, verifying, installing, rebooting or confirming");
  }

  ProcessRestartFault restart(const YAML::Node& node, const std::string& path, bool hard_default) const {
    expect_map(node, path, {"at", "down", "hard"});
    ProcessRestartFault r;
    r.hard_kill = hard_default;
    if (!node["at"]) fail(node, path, "missing field 'at' (when, e.g. 20s)");
    r.at_ms = duration(node["at"], join(path, "at"));
    if (node["down"]) r.down_ms = duration(node["down"], join(path, "down"));
    if (node["hard"]) r.hard_kill = boolean(node["hard"], join(path, "hard"));
    return r;
  }

  Faults faults(const YAML::Node& node, const std::string& path) const {
    expect_map(node, path,
               {"power_loss", "slow_flash", "full_storage", "clock_skew", "bad_image", "outages",
                "partitions", "broker_restart", "orchestrator_kill"});
    Faults f;
    auto list = [&](const char* key, auto&& fn) {
      if (const auto n = node[key]) {
        const std::string p = join(path, key);
        if (n.IsMap())
          fn(n, p);  // a single entry may be written without the list
        else
          each(n, p, fn);
      }
    };
    list("power_loss", [&](const YAML::Node& n, const std::string& p) {
      expect_map(n, p, {"fraction", "groups", "times", "during"});
      PowerLossFault fault;
      fault.target = target(n, p);
      if (n["times"]) fault.times = static_cast<std::uint32_t>(whole(n["times"], join(p, "times"), 1, 100));
      if (n["during"]) {
        const auto during = n["during"];
        if (during.IsScalar())
          fault.during.push_back(phase(during, join(p, "during")));
        else
          each(during, join(p, "during"),
               [&](const YAML::Node& x, const std::string& xp) { fault.during.push_back(phase(x, xp)); });
      }
      f.power_loss.push_back(std::move(fault));
    });
    list("slow_flash", [&](const YAML::Node& n, const std::string& p) {
      expect_map(n, p, {"fraction", "groups", "write_rate"});
      SlowFlashFault fault;
      fault.target = target(n, p);
      if (n["write_rate"]) fault.write_bytes_per_second = rate(n["write_rate"], join(p, "write_rate"));
      if (fault.write_bytes_per_second == 0)
        fail(n["write_rate"], join(p, "write_rate"), "must be above zero");
      f.slow_flash.push_back(std::move(fault));
    });
    list("full_storage", [&](const YAML::Node& n, const std::string& p) {
      expect_map(n, p, {"fraction", "groups"});
      f.full_storage.push_back({target(n, p)});
    });
    list("clock_skew", [&](const YAML::Node& n, const std::string& p) {
      expect_map(n, p, {"fraction", "groups", "max"});
      ClockSkewFault fault;
      fault.target = target(n, p);
      if (!n["max"]) fail(n, p, "missing field 'max' (largest skew, e.g. 10m)");
      fault.max_skew_ms = duration(n["max"], join(p, "max"));
      f.clock_skew.push_back(std::move(fault));
    });
    list("bad_image", [&](const YAML::Node& n, const std::string& p) {
      expect_map(n, p, {"fraction", "groups"});
      f.bad_image.push_back({target(n, p)});
    });
    auto outage = [&](const YAML::Node& n, const std::string& p, bool partition) {
      expect_map(n, p, {"at", "for", "fraction"});
      OutageFault o;
      if (!n["at"]) fail(n, p, "missing field 'at' (when the links are cut, e.g. 20s)");
      if (!n["for"]) fail(n, p, "missing field 'for' (how long, e.g. 10s)");
      o.at_ms = duration(n["at"], join(p, "at"));
      o.duration_ms = duration(n["for"], join(p, "for"));
      if (o.duration_ms <= 0) fail(n["for"], join(p, "for"), "must be above zero");
      if (partition) {
        if (!n["fraction"]) fail(n, p, "missing field 'fraction' (share of the fleet cut off, e.g. 30%)");
        o.fraction = fraction(n["fraction"], join(p, "fraction"));
      } else if (n["fraction"]) {
        o.fraction = fraction(n["fraction"], join(p, "fraction"));
      }
      f.outages.push_back(o);
    };
    list("outages", [&](const YAML::Node& n, const std::string& p) { outage(n, p, false); });
    list("partitions", [&](const YAML::Node& n, const std::string& p) { outage(n, p, true); });
    if (node["broker_restart"])
      f.broker_restart = restart(node["broker_restart"], join(path, "broker_restart"), false);
    if (node["orchestrator_kill"]) {
      f.orchestrator_kill = restart(node["orchestrator_kill"], join(path, "orchestrator_kill"), true);
    }
    return f;
  }

  // The rollout section is an orchestrator rollout spec, read by the orchestrator's parser; only
  // the scenario's own keys are read here.
  ScenarioRollout rollout(const YAML::Node& node, const std::string& path) const {
    if (!node.IsMap())
      fail(node, path, "expected a mapping: a rollout spec (docs/ORCHESTRATOR.md) and driver");
    ScenarioRollout r;
    if (node["driver"]) {
      const std::string d = lower(scalar(node["driver"], join(path, "driver")));
      if (d == "orchestrator")
        r.driver = RolloutDriver::kOrchestrator;
      else if (d == "attach")
        r.driver = RolloutDriver::kAttach;
      else if (d == "builtin")
        fail(node["driver"], join(path, "driver"),
             "the builtin driver is gone: fota-orchestrator runs every scenario's rollout (fota-sim starts "
             "it); write driver: orchestrator or leave driver out");
      else
        fail(node["driver"], join(path, "driver"), "unknown driver '" + d + "'; use orchestrator or attach");
    }
    if (node["attach"]) {
      r.attach_id = string(node["attach"], join(path, "attach"));
      if (!node["driver"]) r.driver = RolloutDriver::kAttach;
    }
    if (r.driver == RolloutDriver::kAttach && r.attach_id.empty()) {
      fail(node, path, "driver attach needs 'attach: <rollout id>'");
    }
    if (node["start_after"]) r.start_after_ms = duration(node["start_after"], join(path, "start_after"));
    if (const auto w = node["maintenance_window"]) {
      const std::string p = join(path, "maintenance_window");
      if (w.IsMap() && (w["start"] || w["end"])) {
        fail(w, p,
             "a fixed window is the spec's windows field, e.g. windows: [{days: daily, start: \"02:00\", "
             "duration: 2h}]; maintenance_window only takes {open_now_in: <zone>, length: <duration>}");
      }
      expect_map(w, p, {"open_now_in", "length"});
      if (node["windows"]) fail(w, p, "give either windows or maintenance_window, not both");
      if (!w["open_now_in"] || !w["length"])
        fail(w, p, "needs open_now_in and length, e.g. {open_now_in: Asia/Tokyo, length: 2h}");
      r.window_open_now_in = scalar(w["open_now_in"], join(p, "open_now_in"));
      const auto length = duration(w["length"], join(p, "length"));
      if (length < 60'000 || length > 24 * 3'600'000)
        fail(w["length"], join(p, "length"), "must be from 1m to 24h");
      r.window_length_minutes = static_cast<int>(length / 60'000);
      check(w["open_now_in"], join(p, "open_now_in"),
            window_open_now_in(r.window_open_now_in, r.window_length_minutes, 0));  // the zone exists
    }
    auto spec = orchestrator::parse_rollout_spec_section(
        node, {source_, path, {"driver", "attach", "start_after", "maintenance_window"}});
    if (!spec) throw ScenarioError{spec.error().message};
    r.spec = std::move(*spec);
    if (r.spec.name.empty()) r.spec.name = "sim-rollout";
    return r;
  }

  ArtifactPlan artifact(const YAML::Node& node, const std::string& path) const {
    expect_map(node, path,
               {"name", "version", "security_counter", "size", "chunk_size", "hardware", "fails_health_check",
                "encrypted"});
    ArtifactPlan a;
    if (node["name"]) a.name = string(node["name"], join(path, "name"));
    if (!node["version"]) fail(node, path, "missing field 'version' (the version the rollout installs)");
    a.version = string(node["version"], join(path, "version"));
    if (node["security_counter"])
      a.security_counter = whole(node["security_counter"], join(path, "security_counter"), 0, UINT64_MAX);
    if (node["size"]) a.image_size = size(node["size"], join(path, "size"));
    if (a.image_size == 0) fail(node["size"], join(path, "size"), "an image must have at least one byte");
    if (node["chunk_size"]) {
      const std::uint64_t c = size(node["chunk_size"], join(path, "chunk_size"));
      if (c < 1024 || c > 1024 * 1024)
        fail(node["chunk_size"], join(path, "chunk_size"), "must be from 1KiB to 1MiB");
      a.chunk_size = static_cast<std::uint32_t>(c);
    }
    if (node["hardware"]) a.compatible_hardware = strings(node["hardware"], join(path, "hardware"));
    if (node["fails_health_check"])
      a.fails_health_check = boolean(node["fails_health_check"], join(path, "fails_health_check"));
    if (node["encrypted"]) a.encrypted = boolean(node["encrypted"], join(path, "encrypted"));
    return a;
  }

  Expectations expectations(const YAML::Node& node, const std::string& path) const {
    expect_map(node, path, {"outcome", "max_wire_ratio", "max_duration"});
    Expectations e;
    if (node["outcome"]) {
      const std::string o = lower(scalar(node["outcome"], join(path, "outcome")));
      if (o == "completed")
        e.outcome = ExpectedOutcome::kCompleted;
      else if (o == "halted")
        e.outcome = ExpectedOutcome::kHalted;
      else if (o == "running")
        e.outcome = ExpectedOutcome::kRunning;
      else if (o == "any")
        e.outcome = ExpectedOutcome::kAny;
      else
        fail(node["outcome"], join(path, "outcome"),
             "unknown outcome '" + o + "'; use completed, halted, running or any");
    }
    if (node["max_wire_ratio"])
      e.max_wire_ratio = real(node["max_wire_ratio"], join(path, "max_wire_ratio"), 1.0, 100.0);
    if (node["max_duration"]) e.max_duration_ms = duration(node["max_duration"], join(path, "max_duration"));
    return e;
  }

  Scenario scenario(const YAML::Node& root) const {
    if (!root.IsDefined() || root.IsNull()) fail(root, "", "the scenario is empty");
    expect_map(root, "",
               {"name", "description", "seed", "duration", "link_profiles", "fleet", "artifact", "rollout",
                "faults", "expect"});
    Scenario s;
    if (!root["name"]) fail(root, "", "missing field 'name'");
    s.name = string(root["name"], "name");
    if (root["description"]) s.description = scalar(root["description"], "description");
    if (root["seed"]) s.seed = whole(root["seed"], "seed", 0, UINT64_MAX);
    if (root["duration"]) s.duration_ms = duration(root["duration"], "duration");
    if (s.duration_ms <= 0) fail(root["duration"], "duration", "must be above zero");

    s.link_profiles["ideal"] = LinkProfile{"ideal", 0, 0, 0, {}};
    if (const auto profiles = root["link_profiles"]) {
      if (!profiles.IsMap())
        fail(profiles, "link_profiles", "expected a mapping of profile name -> settings");
      for (const auto& entry : profiles) {
        const std::string name = entry.first.as<std::string>("");
        s.link_profiles[name] = link_profile(entry.second, join("link_profiles", name), name);
      }
    }
    for (auto& [name, profile] : s.link_profiles) {
      if (profile.drops.window_end_ms == 0) profile.drops.window_end_ms = s.duration_ms;
    }

    if (!root["fleet"]) fail(root, "", "missing field 'fleet'");
    const auto fleet = root["fleet"];
    expect_map(fleet, "fleet", {"id_prefix", "groups"});
    if (fleet["id_prefix"]) {
      s.fleet.id_prefix = string(fleet["id_prefix"], "fleet.id_prefix");
      const bool valid =
          s.fleet.id_prefix.size() <= 40 && std::isalnum(static_cast<unsigned char>(s.fleet.id_prefix[0])) &&
          std::all_of(s.fleet.id_prefix.begin(), s.fleet.id_prefix.end(),
                      [](unsigned char c) { return std::isalnum(c) || c == '.' || c == '_' || c == '-'; });
      if (!valid) {
        fail(fleet["id_prefix"], "fleet.id_prefix",
             "must be 1..40 characters from A-Z a-z 0-9 . _ - starting with a letter or digit (it starts "
             "every device id)");
      }
    }
    if (!fleet["groups"]) fail(fleet, "fleet", "missing field 'groups' (a list of device groups)");
    std::set<std::string> group_names;
    each(fleet["groups"], "fleet.groups", [&](const YAML::Node& n, const std::string& p) {
      FleetGroup g = group(n, p, s.fleet.groups.size() + 1);
      if (!group_names.insert(g.name).second) fail(n, p, "duplicate group name '" + g.name + "'");
      for (const auto& link : g.links) {
        if (!s.link_profiles.count(link.value)) {
          fail(n["links"] ? n["links"] : n["link"], join(p, "link"),
               "unknown link profile '" + link.value + "'; define it under link_profiles");
        }
      }
      s.fleet.groups.push_back(std::move(g));
    });
    if (s.fleet.groups.empty()) fail(fleet["groups"], "fleet.groups", "needs at least one group");
    if (s.fleet.total() > 100'000)
      fail(fleet, "fleet", "more than 100000 devices in one run is not supported");

    if (!root["artifact"]) fail(root, "", "missing field 'artifact' (what the rollout installs)");
    s.artifact = artifact(root["artifact"], "artifact");
    if (s.artifact.compatible_hardware.empty()) {
      std::set<std::string> types;
      for (const auto& g : s.fleet.groups) types.insert(g.hardware_type);
      s.artifact.compatible_hardware.assign(types.begin(), types.end());
    }
    s.rollout = rollout(root["rollout"] ? root["rollout"] : YAML::Node(YAML::NodeType::Map), "rollout");
    if (root["faults"]) s.faults = faults(root["faults"], "faults");
    auto check_groups = [&](const FaultTarget& t, const char* where) {
      for (const auto& g : t.groups) {
        if (!group_names.count(g)) {
          fail(root["faults"][where], join("faults", where), "unknown group '" + g + "'");
        }
      }
    };
    for (const auto& f : s.faults.power_loss) check_groups(f.target, "power_loss");
    for (const auto& f : s.faults.slow_flash) check_groups(f.target, "slow_flash");
    for (const auto& f : s.faults.full_storage) check_groups(f.target, "full_storage");
    for (const auto& f : s.faults.clock_skew) check_groups(f.target, "clock_skew");
    for (const auto& f : s.faults.bad_image) check_groups(f.target, "bad_image");
    if (root["expect"]) s.expect = expectations(root["expect"], "expect");
    if (s.expect.outcome == ExpectedOutcome::kRunning && !s.rollout.has_windows()) {
      fail(root["expect"]["outcome"], "expect.outcome",
           "running means the rollout waits for closed maintenance windows; it needs rollout.windows or "
           "rollout.maintenance_window");
    }
    return s;
  }

 private:
  std::string source_;
};

}  // namespace

Result<Scenario> parse_scenario(std::string_view yaml_text, std::string_view source_name) {
  ScenarioParser parser{std::string(source_name)};
  try {
    const YAML::Node root = YAML::Load(std::string(yaml_text));
    return parser.scenario(root);
  } catch (const ScenarioError& e) {
    return Error(Errc::kInvalidArgument, e.message);
  } catch (const YAML::Exception& e) {
    std::string message = std::string(source_name);
    if (e.mark.line >= 0)
      message += ":" + std::to_string(e.mark.line + 1) + ":" + std::to_string(e.mark.column + 1);
    return Error(Errc::kMalformed, message + ": not valid YAML: " + e.msg);
  }
}

Result<Scenario> load_scenario(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Error(Errc::kNotFound, "cannot open scenario file " + path.string() + ": check the path");
  std::ostringstream text;
  text << in.rdbuf();
  if (text.str().size() > 4 * 1024 * 1024) {
    return Error(Errc::kTooLarge, "scenario file " + path.string() + " is larger than 4 MiB");
  }
  return parse_scenario(text.str(), path.filename().string());
}

}  // namespace fota::sim

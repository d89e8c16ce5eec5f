#include "module_config.hpp"

#include <charconv>
#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>

namespace fota::device {
namespace {

std::uint64_t positive(const YAML::Node& node, const std::string& key, bool unlimited_allowed) {
  const std::string text = node.IsScalar() ? node.Scalar() : std::string();
  if (unlimited_allowed && text == "unlimited") return client::ModuleSandbox::kUnlimited;
  std::uint64_t value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || value == 0) {
    throw std::runtime_error(key + " must be a positive whole number" +
                             (unlimited_allowed ? std::string(" or 'unlimited'") : std::string()) +
                             ", not '" + text + "'");
  }
  return value;
}

}  // namespace

client::ModuleSandbox module_sandbox_from_config(const YAML::Node& config) {
  client::ModuleSandbox s;
  if (config["module_user"]) s.user = config["module_user"].as<std::string>();
  if (config["module_group"]) s.group = config["module_group"].as<std::string>();
  if (config["module_timeout_ms"]) {
    s.timeout = std::chrono::milliseconds(positive(config["module_timeout_ms"], "module_timeout_ms", false));
  }
  if (config["module_kill_grace_ms"]) {
    s.kill_grace =
        std::chrono::milliseconds(positive(config["module_kill_grace_ms"], "module_kill_grace_ms", false));
  }
  const YAML::Node limits = config["module_limits"];
  if (!limits) return s;
  if (!limits.IsMap()) throw std::runtime_error("module_limits must be a map (e.g. {cpu_seconds: 600})");
  for (const auto& kv : limits) {
    const std::string name = kv.first.as<std::string>();
    const std::string key = "module_limits." + name;
    const auto limit = [&](std::uint64_t& field) { field = positive(kv.second, key, true); };
    const auto cap = [&](std::size_t& field) {
      field = static_cast<std::size_t>(positive(kv.second, key, false));
    };
    if (name == "cpu_seconds") {
      limit(s.cpu_seconds);
    } else if (name == "memory_bytes") {
      limit(s.memory_bytes);
    } else if (name == "file_size_bytes") {
      limit(s.file_size_bytes);
    } else if (name == "open_files") {
      limit(s.open_files);
    } else if (name == "processes") {
      limit(s.processes);
    } else if (name == "output_lines") {
      cap(s.output_lines);
    } else if (name == "output_bytes") {
      cap(s.output_bytes);
    } else {
      throw std::runtime_error("unknown key " + key +
                               " (known: cpu_seconds, memory_bytes, file_size_bytes, open_files, processes, "
                               "output_lines, output_bytes)");
    }
  }
  return s;
}

}  // namespace fota::device

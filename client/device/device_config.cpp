// SPDX-License-Identifier: Apache-2.0
// fota-device's configuration file.
#include "device_config.hpp"

#include <yaml-cpp/yaml.h>

#include <iterator>
#include <stdexcept>

#include "fota/client/boot_chooser.hpp"
#include "fota/common/crypto.hpp"
#include "module_config.hpp"

namespace fota::device {
namespace {

// "90s", "10m", "12h", "30d" or a number of seconds, as milliseconds (at least 1 s).
std::int64_t parse_duration_ms(const std::string& key, const std::string& text) {
  std::size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') ++digits;
  const std::string unit = text.substr(digits);
  std::int64_t factor = 0;
  if (unit.empty() || unit == "s") factor = 1000;
  if (unit == "m") factor = 60'000;
  if (unit == "h") factor = 3'600'000;
  if (unit == "d") factor = 86'400'000;
  if (digits == 0 || digits > 9 || factor == 0 || std::stoll(text.substr(0, digits)) == 0) {
    throw std::runtime_error(key + " '" + text + "' is not a duration; write e.g. 90s, 10m, 12h or 30d");
  }
  return std::stoll(text.substr(0, digits)) * factor;
}

struct BootLoaderName {
  const char* name;
  BootLoader loader;
};
constexpr BootLoaderName kBootLoaders[] = {
    {"simulated", BootLoader::kSimulated}, {"grub", BootLoader::kGrub}, {"uboot", BootLoader::kUBoot}};

BootLoader parse_bootloader(const std::string& name) {
  for (const auto& known : kBootLoaders) {
    if (name == known.name) return known.loader;
  }
  throw std::runtime_error("bootloader '" + name + "' is not one of grub, uboot, simulated");
}

// A config is a page of YAML; anything near this is not one.
constexpr std::size_t kMaxConfigBytes = 1024 * 1024;

}  // namespace

bool known_transport(const std::string& name) {
  for (const char* known : kTransports) {
    if (name == known) return true;
  }
  return false;
}

const char* bootloader_name(BootLoader loader) {
  for (const auto& known : kBootLoaders) {
    if (loader == known.loader) return known.name;
  }
  return "?";
}

common::Result<DeviceConfig> load_config(const std::filesystem::path& path) {
  auto text = common::read_file(path, kMaxConfigBytes);
  if (!text) {
    return common::Error(
        common::Errc::kInvalidArgument,
        "config " + path.string() + ": " + text.error().message + " (see docs/CLIENT.md, fota-device)");
  }
  return parse_config(*text, path);
}

common::Result<DeviceConfig> parse_config(std::string_view yaml, const std::filesystem::path& path) {
  DeviceConfig c;
  try {
    const YAML::Node y = YAML::Load(std::string(yaml));
    const std::filesystem::path base = std::filesystem::absolute(path).parent_path();
    auto rel = [&](const std::string& p) {
      return std::filesystem::path(p).is_absolute() ? std::filesystem::path(p) : base / p;
    };
    auto need = [&](const char* key) -> std::string {
      if (!y[key]) throw std::runtime_error(std::string("missing required key '") + key + "'");
      return y[key].as<std::string>();
    };
    c.engine.device_id = need("device_id");
    c.engine.hardware_type = need("hardware_type");
    c.mqtt.broker_uri = need("broker");
    c.mqtt.ca_cert = rel(need("ca"));
    c.mqtt.cert = rel(need("cert"));
    c.mqtt.key = rel(need("key"));
    c.trust = rel(need("trust"));
    c.command_keys = rel(need("command_keys"));
    if (y["decryption_key"]) c.decryption_key = rel(y["decryption_key"].as<std::string>());
    c.state_dir = rel(need("state_dir"));
    if (y["topic_prefix"]) c.mqtt.topic_prefix = y["topic_prefix"].as<std::string>();
    if (y["factory_version"]) c.engine.factory_version = y["factory_version"].as<std::string>();
    if (y["factory_security_counter"]) {
      c.engine.factory_security_counter = y["factory_security_counter"].as<std::uint64_t>();
    }
    c.engine.slot_capacity_bytes =
        y["slot_capacity_bytes"] ? y["slot_capacity_bytes"].as<std::uint64_t>() : std::uint64_t{1} << 30;
    if (y["time_zone"]) c.engine.time_zone = y["time_zone"].as<std::string>();
    if (y["window"]) c.engine.max_window = y["window"].as<std::uint32_t>();
    if (y["progress_interval_ms"])
      c.engine.progress_interval_ms = y["progress_interval_ms"].as<std::int64_t>();
    if (y["health_check_timeout_ms"]) {
      c.engine.health_check_timeout_ms = y["health_check_timeout_ms"].as<std::int64_t>();
    }
    if (y["attributes"]) {
      for (const auto& kv : y["attributes"]) {
        c.engine.attributes[kv.first.as<std::string>()] = kv.second.as<std::string>();
      }
    }
    c.slots = {{"a", c.state_dir / "slot-a"}, {"b", c.state_dir / "slot-b"}};
    if (y["slots"]) {
      for (const char* name : {"a", "b"}) {
        if (y["slots"][name]) c.slots[name] = rel(y["slots"][name].as<std::string>());
      }
    }
    if (y["files"]) {
      for (const auto& kv : y["files"])
        c.files[kv.first.as<std::string>()] = rel(kv.second.as<std::string>());
      c.engine.capabilities.push_back(v1::PAYLOAD_TYPE_FILE);
    }
    if (y["modules_dir"]) {
      c.modules_dir = rel(y["modules_dir"].as<std::string>());
      c.engine.capabilities.push_back(v1::PAYLOAD_TYPE_MODULE);
    }
    c.module_sandbox = module_sandbox_from_config(y);
    if (y["health_check"]) c.health_check_command = y["health_check"].as<std::string>();
    if (y["log_level"]) c.log_level = y["log_level"].as<std::string>();
    if (y["transport"]) {
      c.transport = y["transport"].as<std::string>();
      if (!known_transport(c.transport)) {
        throw std::runtime_error("transport '" + c.transport + "' is not paho or mosquitto");
      }
    }

    // The boot loader and how the agent talks to it.
    if (const auto cert = y["certificate"]) {
      for (const auto& kv : cert) {
        const std::string k = kv.first.as<std::string>();
        if (k == "renew") {
          c.renew_certificate = kv.second.as<bool>();
        } else if (k == "renew_before") {
          c.certificate.renew_before_ms =
              parse_duration_ms("certificate.renew_before", kv.second.as<std::string>());
        } else if (k == "response_timeout") {
          c.certificate.response_timeout_ms =
              parse_duration_ms("certificate.response_timeout", kv.second.as<std::string>());
        } else if (k == "retry_initial") {
          c.certificate.retry_initial_ms =
              parse_duration_ms("certificate.retry_initial", kv.second.as<std::string>());
        } else if (k == "retry_max") {
          c.certificate.retry_max_ms =
              parse_duration_ms("certificate.retry_max", kv.second.as<std::string>());
        } else {
          throw std::runtime_error(
              "certificate." + k +
              ": unknown key; known: renew, renew_before, response_timeout, retry_initial, "
              "retry_max");
        }
      }
    }
    if (y["bootloader"]) c.bootloader = parse_bootloader(y["bootloader"].as<std::string>());
    if (y["boot_tries"]) {
      c.boot_tries = y["boot_tries"].as<int>();
      if (c.boot_tries < 1 || c.boot_tries > client::kMaxBootTries) {
        throw std::runtime_error("boot_tries " + std::to_string(c.boot_tries) + " is outside 1.." +
                                 std::to_string(client::kMaxBootTries) +
                                 " (the GRUB script counts down a single digit)");
      }
    }
    switch (c.bootloader) {
      case BootLoader::kSimulated:
        c.kernel_cmdline = c.state_dir / "cmdline";
        break;
      case BootLoader::kGrub:
        if (!y["grubenv"]) {
          throw std::runtime_error(
              "bootloader 'grub' needs 'grubenv': the GRUB environment block grub.cfg loads (e.g. "
              "/boot/grub/grubenv)");
        }
        c.grubenv = rel(y["grubenv"].as<std::string>());
        c.kernel_cmdline = "/proc/cmdline";
        break;
      case BootLoader::kUBoot:
        if (!y["fw_env_config"]) {
          throw std::runtime_error(
              "bootloader 'uboot' needs 'fw_env_config': the fw_env.config that says where U-Boot keeps "
              "its environment (e.g. /etc/fw_env.config)");
        }
        c.fw_env_config = rel(y["fw_env_config"].as<std::string>());
        c.kernel_cmdline = "/proc/cmdline";
        break;
    }
    // A key of another boot loader is a mistake worth stopping for: the agent would otherwise
    // drive a boot loader the device does not run.
    auto only_with = [&](const char* key, BootLoader owner) {
      if (y[key] && c.bootloader != owner) {
        throw std::runtime_error(std::string("'") + key + "' is set but bootloader is '" +
                                 bootloader_name(c.bootloader) +
                                 "'; set bootloader: " + bootloader_name(owner) + " or remove '" + key + "'");
      }
    };
    only_with("grubenv", BootLoader::kGrub);
    only_with("fw_env_config", BootLoader::kUBoot);
    if (y["kernel_cmdline"]) c.kernel_cmdline = rel(y["kernel_cmdline"].as<std::string>());
    // A real boot loader needs a real reboot; the simulated one reboots inside this process.
    if (c.bootloader != BootLoader::kSimulated) c.reboot_command = "systemctl reboot";
    if (y["reboot_command"]) c.reboot_command = y["reboot_command"].as<std::string>();
    if (c.bootloader != BootLoader::kSimulated && c.reboot_command.empty()) {
      throw std::runtime_error("reboot_command is empty; with bootloader '" +
                               std::string(bootloader_name(c.bootloader)) +
                               "' the device must really reboot (default: systemctl reboot)");
    }
  } catch (const std::exception& e) {
    return common::Error(common::Errc::kInvalidArgument,
                         "config " + path.string() + ": " + e.what() + " (see docs/CLIENT.md, fota-device)");
  }
  return c;
}

}  // namespace fota::device

// SPDX-License-Identifier: Apache-2.0
// fota-device's configuration file (YAML; docs/CLIENT.md, "fota-device", and the commented
// example client/device/device.yaml).
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <string_view>

#include "fota/client/certificate_renewal.hpp"
#include "fota/client/engine.hpp"
#include "fota/client/installer.hpp"
#include "fota/client/mqtt_client.hpp"
#include "fota/common/result.hpp"

namespace fota::device {

// Where the boot loader keeps its variables.
enum class BootLoader {
  kSimulated,  // a key=value file in state_dir and an in-process boot loop (demo, tests)
  kGrub,       // GRUB's environment block (grubenv:)
  kUBoot,      // U-Boot's environment through libubootenv (fw_env_config:)
};

inline constexpr const char* kTransports[] = {"paho", "mosquitto"};

struct DeviceConfig {
  client::MqttClientConfig mqtt;
  client::EngineConfig engine;
  std::filesystem::path trust;         // artifact release public keys
  std::filesystem::path command_keys;  // orchestrator command public keys (docs/SECURITY.md)
  // X25519 private key (PEM, 0600) that opens encrypted artifacts; empty = installs unencrypted only.
  std::filesystem::path decryption_key;
  std::filesystem::path state_dir;
  std::map<std::string, std::filesystem::path> slots;
  std::map<std::string, std::filesystem::path> files;  // file payload targets
  std::filesystem::path modules_dir;                   // update modules (empty = none)
  client::ModuleSandbox module_sandbox;                // how they run (module_* keys)
  std::string health_check_command;
  // Run to reboot. Empty (only with the simulated boot loader) = a simulated reboot inside
  // this process; otherwise "systemctl reboot" unless configured.
  std::string reboot_command;
  std::string log_level = "info";
  std::string transport = "paho";  // or "mosquitto" (the event-loop adapter)

  BootLoader bootloader = BootLoader::kSimulated;
  std::filesystem::path grubenv;        // bootloader: grub
  std::filesystem::path fw_env_config;  // bootloader: uboot
  // Where the booted slot is read from (fota.slot=): /proc/cmdline on a device; the simulated
  // boot loader writes <state_dir>/cmdline.
  std::filesystem::path kernel_cmdline;
  int boot_tries = 3;  // tries a slot gets when activated or committed (1..9)
  // Certificate renewal (certificate.*): on unless certificate.renew is false; the renewed pair
  // lives in <state_dir>/identity (client::IdentityStore).
  bool renew_certificate = true;
  client::CertificateRenewalConfig certificate;
};

bool known_transport(const std::string& name);
const char* bootloader_name(BootLoader loader);

// Loads the YAML config; relative paths are relative to the config file's directory.
// Errors: kInvalidArgument, naming the key, what was wrong and the valid choices.
common::Result<DeviceConfig> load_config(const std::filesystem::path& path);
// The parser of load_config: `yaml` is the text of the file at `path` (which names it in errors
// and anchors relative paths; it is not read).
common::Result<DeviceConfig> parse_config(std::string_view yaml, const std::filesystem::path& path);

}  // namespace fota::device

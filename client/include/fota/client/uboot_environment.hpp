// SPDX-License-Identifier: Apache-2.0
// U-Boot's environment through libubootenv (Debian libubootenv-dev), the library behind
// fw_printenv/fw_setenv: where the environment lives (a file, a partition, an MTD device, one or
// two redundant copies) comes from an fw_env.config. C++17. Target fota_client_uboot.
#pragma once

#include <filesystem>
#include <map>
#include <string>

#include "fota/client/boot_environment.hpp"

namespace fota::client {

class UBootEnvironment : public BootEnvironment {
 public:
  explicit UBootEnvironment(std::filesystem::path fw_env_config);
  // Errors: kNotFound (no fw_env.config), kInvalidArgument (libubootenv cannot use it), kIo
  // (the environment cannot be read: neither copy has a valid CRC, or the device is missing).
  common::Result<std::map<std::string, std::string>> load() override;
  // Writes all variables in one store; with redundant copies libubootenv writes the older copy
  // and flips the flag, so a power cut leaves the old or the new environment. An empty value
  // removes the variable (U-Boot has no empty variables). Errors: those of load(), kIo.
  common::Status set(const std::map<std::string, std::string>& variables) override;
  const std::filesystem::path& config() const noexcept { return config_; }

 private:
  std::filesystem::path config_;
};

}  // namespace fota::client

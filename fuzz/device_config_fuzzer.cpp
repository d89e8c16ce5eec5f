// SPDX-License-Identifier: Apache-2.0
// fota-device's configuration file (YAML): device::parse_config, the parser of load_config.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "device_config.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  (void)fota::device::parse_config(std::string_view(reinterpret_cast<const char*>(data), size),
                                   "/etc/fota/device.yaml");
  return 0;
}

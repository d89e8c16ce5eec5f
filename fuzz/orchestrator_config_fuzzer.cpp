// SPDX-License-Identifier: Apache-2.0
// fota-orchestrator's configuration file (docs/ORCHESTRATOR.md, "Running"): the input is the YAML,
// written to a file in a scratch directory (relative paths name files there) and read as the
// service reads it at start: load_service_config, then validate_service_config.
#include <cstddef>
#include <cstdint>
#include <fstream>
#include <string_view>

#include "config.hpp"
#include "fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace fota;
  const auto path = fuzz::scratch_dir() / "orchestrator.yaml";
  std::ofstream(path, std::ios::binary | std::ios::trunc)
      .write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  auto config = orchestrator::load_service_config(path);
  if (config) (void)orchestrator::validate_service_config(*config);
  return 0;
}

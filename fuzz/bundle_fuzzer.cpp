// SPDX-License-Identifier: Apache-2.0
// Artifact bundles as `fotactl artifact import` and the orchestrator read them: the input is a
// bundle file (common::read_bundle_header, common::verify_bundle against the fuzz key). The seeds
// are real signed bundles, so mutations of the image reach the chunk and image hash checks.
#include <cstddef>
#include <cstdint>
#include <fstream>

#include "fota/common/artifact.hpp"
#include "fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace fota;
  static const common::TrustStore trust = fuzz::trust_store();
  static const auto path = fuzz::scratch_dir() / "input.bundle";
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  (void)common::read_bundle_header(path);
  (void)common::verify_bundle(path, trust);
  return 0;
}

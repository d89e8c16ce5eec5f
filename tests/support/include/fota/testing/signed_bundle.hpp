// SPDX-License-Identifier: Apache-2.0
// A signed artifact bundle for tests: a deterministic image of a given size, signed with a key file.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>

namespace fota::testing {

struct BundleSpec {
  std::string name = "fw";
  std::string version = "2.0";
  std::size_t image_size = 64 * 1024;
  std::uint32_t chunk_size = 16 * 1024;
  std::uint64_t security_counter = 2;
  std::string hardware = "gw-v2";
  // Non-empty: the image's bytes (image_size is then ignored).
  std::string image = {};
};

// Writes <dir>/<name>-<version>.img and .bundle (the image bytes depend on the version, so two
// versions differ) signed with the Ed25519 private key in `key_file`; returns the bundle's path.
// Throws std::runtime_error naming what failed.
std::filesystem::path make_signed_bundle(const std::filesystem::path& dir,
                                         const std::filesystem::path& key_file, const BundleSpec& spec = {});

}  // namespace fota::testing

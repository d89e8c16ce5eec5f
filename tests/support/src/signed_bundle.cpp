// SPDX-License-Identifier: Apache-2.0
#include "fota/testing/signed_bundle.hpp"

#include <fstream>
#include <stdexcept>

#include "fota/common/artifact.hpp"
#include "fota/common/crypto.hpp"
#include "fota/testing/command.hpp"

namespace fota::testing {

std::filesystem::path make_signed_bundle(const std::filesystem::path& dir,
                                         const std::filesystem::path& key_file, const BundleSpec& spec) {
  const auto stem = dir / (spec.name + "-" + spec.version);
  const auto image = stem.string() + ".img";
  {
    std::ofstream out(image, std::ios::binary);
    if (!spec.image.empty()) out << spec.image;
    for (std::size_t i = 0; spec.image.empty() && i < spec.image_size; ++i)
      out.put(static_cast<char>((i * 131 + spec.version.size()) & 0xff));
  }
  auto key = common::Ed25519PrivateKey::load(key_file);
  if (!key.ok()) throw std::runtime_error("signing key " + key_file.string() + ": " + key.error().message);
  common::ArtifactSpec artifact;
  artifact.name = spec.name;
  artifact.version = spec.version;
  artifact.security_counter = spec.security_counter;
  artifact.compatible_hardware = {spec.hardware};
  artifact.chunk_size = spec.chunk_size;
  auto manifest = common::build_signed_manifest(image, artifact, *key, wall_clock_ms());
  if (!manifest.ok()) throw std::runtime_error("signing " + image + ": " + manifest.error().message);
  const std::filesystem::path bundle = stem.string() + ".bundle";
  if (auto st = common::write_bundle(bundle, *manifest, image); !st.ok())
    throw std::runtime_error("writing " + bundle.string() + ": " + st.error().message);
  return bundle;
}

}  // namespace fota::testing

// SPDX-License-Identifier: Apache-2.0
// Manifests. The input is a SignedManifest:
//  - verified with the fuzz key (common::TrustStore::verify: parse, signature, structure), as
//    the orchestrator's import and the device do;
//  - its `manifest` bytes parsed and structure-checked without the signature
//    (common::check_manifest_structure), and every ChunkSpace question asked of it;
//  - installed by an UpdateEngine whose crypto accepts any structurally valid manifest: what a
//    device does with whatever a stolen release key signs.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fota/client/engine.hpp"
#include "fota/common/codec.hpp"
#include "fuzz_support.hpp"

namespace {

using namespace fota;

class StolenKeyCrypto final : public client::EngineCrypto {
 public:
  std::string sha256(std::string_view data) const override {
    return common::digest_bytes(common::Sha256::digest(data));
  }
  common::Result<v1::Manifest> verify_manifest(const v1::SignedManifest& signed_manifest) const override {
    auto manifest = common::decode<v1::Manifest>(signed_manifest.manifest(), common::kMaxCommandBytes);
    if (!manifest) return manifest.error();
    auto structure = common::check_manifest_structure(*manifest);
    if (!structure) return structure.error();
    return manifest;
  }
  // The command comes from the target itself (signed by nobody): only the manifest is under test.
  common::Result<v1::Command> verify_command(std::string_view payload) const override {
    return common::decode<v1::Command>(payload, common::kMaxCommandBytes);
  }
};

void ask_chunk_space(const v1::Manifest& manifest) {
  const auto space = common::ChunkSpace::of(manifest);
  const std::uint32_t total = space.total();
  for (std::uint32_t index : {0u, 1u, space.image_chunks() - 1, space.image_chunks(), total - 1, total}) {
    (void)space.offset(index);
    (void)space.length(index);
    (void)common::chunk_length(manifest, index);
    if (space.is_hash_chunk(index)) continue;
    if (index < space.image_chunks() && space.has_hash_table()) {
      (void)space.hash_chunk_index(index);
      (void)space.hash_offset(index);
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const common::TrustStore trust = fuzz::trust_store();
  static const StolenKeyCrypto crypto;
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  auto signed_manifest = common::decode<v1::SignedManifest>(bytes, common::kMaxCommandBytes);
  if (!signed_manifest) return 0;
  if (auto verified = trust.verify(*signed_manifest)) ask_chunk_space(*verified);

  auto manifest = common::decode<v1::Manifest>(signed_manifest->manifest(), common::kMaxCommandBytes);
  if (!manifest || !common::check_manifest_structure(*manifest)) return 0;
  ask_chunk_space(*manifest);

  client::UpdateEngine engine(fuzz::engine_config(), crypto);
  (void)engine.on_started(client::BootStatus{"a", false}, fuzz::kNowMs);
  (void)engine.on_connected(fuzz::kNowMs);
  (void)engine.on_command(fuzz::install_command(*signed_manifest, "c-install").SerializeAsString(),
                          fuzz::kNowMs);
  (void)engine.on_tick(fuzz::kNowMs + 20'000);
  (void)engine.inventory(fuzz::kNowMs + 20'000);
  return 0;
}

// SPDX-License-Identifier: Apache-2.0
// Encrypted artifacts on the device (docs/SECURITY.md, "Encrypted artifacts"). The input is
// u16 (little endian) n, n bytes of a Manifest, then the stored bytes a chunk server serves (the
// ciphertext chunks, then the hash table when the manifest has one). The device holds the fuzz
// X25519 key; its crypto (OpenSslEngineCrypto's unwrap and decrypt) accepts any structurally valid
// manifest: what a device does with whatever a stolen release key signs, wrapped keys and
// chunk hashes included.
//  - the wrapped keys straight through unwrap_content_key, and with the key every image chunk
//    straight through decrypt_chunk (the GCM tag, without the signed hash in front of it);
//  - an UpdateEngine installing the manifest, served from the stored bytes: the scheme and
//    recipient checks, the unwrap, then per chunk the signed hash, the tag and the write, then
//    the plaintext image hash, up to the reboot.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "fota/client/runtime.hpp"
#include "fota/common/chunk_responder.hpp"
#include "fota/common/codec.hpp"
#include "fuzz_support.hpp"

namespace {

using namespace fota;

class StolenKeyCrypto final : public client::OpenSslEngineCrypto {
 public:
  StolenKeyCrypto() : OpenSslEngineCrypto(fuzz::trust_store(), fuzz::trust_store(), fuzz::decryption_key()) {}
  common::Result<v1::Manifest> verify_manifest(const v1::SignedManifest& signed_manifest) const override {
    auto manifest = common::decode<v1::Manifest>(signed_manifest.manifest(), common::kMaxCommandBytes);
    if (!manifest) return manifest.error();
    auto structure = common::check_manifest_structure(*manifest);
    if (!structure) return structure.error();
    return manifest;
  }
  // The command comes from the target itself: only the artifact is under test.
  common::Result<v1::Command> verify_command(std::string_view payload) const override {
    return common::decode<v1::Command>(payload, common::kMaxCommandBytes);
  }
};

// The stored bytes as a chunk server reads them (ArtifactStore::read_chunk's layout).
class StoredChunks final : public common::ChunkSource {
 public:
  StoredChunks(const common::ChunkSpace& space, std::string_view stored) : space_(space), stored_(stored) {}
  common::Result<std::uint32_t> chunk_count(const std::string& /*artifact_id*/) const override {
    return space_.total();
  }
  common::Status read_chunk(const std::string& /*artifact_id*/, std::uint32_t index,
                            std::string& out) const override {
    const std::uint64_t base = space_.is_hash_chunk(index) ? space_.stored_image_size() : 0;
    const std::uint64_t offset = base + space_.offset(index);
    if (offset + space_.length(index) > stored_.size()) {
      return common::Error(common::Errc::kNotFound, "chunk " + std::to_string(index) + " is not stored");
    }
    out.assign(stored_.substr(offset, space_.length(index)));
    return common::ok_status();
  }
  // Image chunk `index`; empty when the stored bytes end before it.
  std::string_view image_chunk(std::uint32_t index) const {
    const std::uint64_t offset = space_.offset(index);
    if (offset + space_.length(index) > stored_.size()) return {};
    return stored_.substr(offset, space_.length(index));
  }

 private:
  common::ChunkSpace space_;
  std::string_view stored_;
};

constexpr std::uint64_t kMaxSlotBytes = 16u << 20;

void decrypt_directly(const StolenKeyCrypto& crypto, const v1::Manifest& manifest, const StoredChunks& chunks,
                      const common::ChunkSpace& space) {
  auto key = crypto.unwrap_content_key(manifest.encryption());
  if (!key) return;
  if (key->size() != common::kContentKeyBytes) std::abort();
  for (std::uint32_t i = 0; i < space.image_chunks() && i < 64; ++i) {
    const std::string_view stored = chunks.image_chunk(i);
    if (stored.empty()) break;
    std::string data(stored);
    if (crypto.decrypt_chunk(*key, i, data) &&
        data.size() + common::kEncryptedChunkOverhead != stored.size()) {
      std::abort();  // a tag that verified over a plaintext of the wrong length
    }
  }
}

// Answers the engine as a device and a chunk server would, until it asks to reboot.
void install(const StolenKeyCrypto& crypto, const v1::SignedManifest& signed_manifest,
             const StoredChunks& chunks) {
  client::UpdateEngine engine(fuzz::engine_config(), crypto);
  std::vector<client::Action> pending;
  auto take = [&](client::Actions more) {
    for (auto& a : more) pending.push_back(std::move(a));
  };
  take(engine.on_started(client::BootStatus{"a", false}, fuzz::kNowMs));
  take(engine.on_connected(fuzz::kNowMs));
  v1::Command command = fuzz::install_command(signed_manifest, "c-install");
  take(engine.on_command(command.SerializeAsString(), fuzz::kNowMs));
  std::string slot;
  std::int64_t now = fuzz::kNowMs;
  for (std::size_t i = 0; i < pending.size() && i < 5'000; ++i) {
    now += 10;
    client::Action action = std::move(pending[i]);
    if (auto* request = std::get_if<client::action::RequestChunks>(&action)) {
      auto response = common::respond_to_chunk_request(request->request, chunks, common::ChunkBudget{});
      for (auto& chunk : response.replies) take(engine.on_chunk(std::move(chunk), now));
    } else if (auto* write = std::get_if<client::action::WriteChunk>(&action)) {
      if (write->offset + write->data.size() > kMaxSlotBytes) return;
      if (slot.size() < write->offset + write->data.size()) slot.resize(write->offset + write->data.size());
      slot.replace(write->offset, write->data.size(), write->data);
    } else if (auto* hash = std::get_if<client::action::HashSlot>(&action)) {
      const std::string_view written =
          std::string_view(slot).substr(0, std::min<std::uint64_t>(hash->size, slot.size()));
      take(engine.on_slot_hash(common::digest_bytes(common::Sha256::digest(written)), now));
    } else if (std::holds_alternative<client::action::Reboot>(action)) {
      return;
    }
  }
  (void)engine.on_tick(now + 60'000);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  static const StolenKeyCrypto crypto;
  const std::size_t length = data[0] | (std::size_t{data[1]} << 8);
  if (size - 2 < length) return 0;
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const std::string_view manifest_bytes = input.substr(2, length);
  const std::string_view stored = input.substr(2 + length);

  auto manifest = common::decode<v1::Manifest>(manifest_bytes, common::kMaxCommandBytes);
  if (!manifest) return 0;
  const auto space = common::ChunkSpace::of(*manifest);
  const StoredChunks chunks(space, stored);
  if (manifest->has_encryption()) decrypt_directly(crypto, *manifest, chunks, space);
  if (!common::check_manifest_structure(*manifest)) return 0;
  v1::SignedManifest signed_manifest;
  signed_manifest.set_manifest(std::string(manifest_bytes));
  install(crypto, signed_manifest, chunks);
  return 0;
}

// SPDX-License-Identifier: Apache-2.0
// What encrypting an artifact costs (docs/SECURITY.md, "Encrypted artifacts"): bytes on the wire
// and device CPU, each against the unencrypted baseline measured in the same run.
//  - wire: every ChunkData message as the chunk server sends it (serialized), and the manifest;
//  - device CPU: the real UpdateEngine taking every chunk of the image (hash check, for the
//    encrypted artifact also the GCM tag check and decryption, journal record, actions), the
//    process CPU time of its on_chunk calls only (slot writes and storage are not executed: they
//    are the same in both modes); and the primitives alone (SHA-256, SHA-256 + AES-256-GCM open).
// Artifacts are made with the functions `fotactl artifact create` uses and served from an
// ArtifactStore, as the broker plugin serves them.
// Usage: fota_encryption_cost [--smoke] [--size MiB] [--chunk-size bytes] [work_dir (default /dev/shm)]
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fstream>
#include <iostream>
#include <random>
#include <string>
#include <vector>

#include "fota/client/engine.hpp"
#include "fota/client/runtime.hpp"
#include "fota/common/artifact.hpp"
#include "fota/common/chunk_responder.hpp"
#include "fota/common/codec.hpp"
#include "fota/common/crypto.hpp"
#include "fota/common/encryption.hpp"

namespace {

using namespace fota;
namespace fs = std::filesystem;

double cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

[[noreturn]] void die(const std::string& what) {
  std::cerr << "fota_encryption_cost: " << what << "\n";
  std::exit(1);
}

template <typename T>
T must(common::Result<T> r, const char* what) {
  if (!r.ok()) die(std::string(what) + ": " + r.error().to_string());
  return std::move(r).value();
}

struct Artifact {
  v1::SignedManifest signed_manifest;
  v1::Manifest manifest;
  std::uint64_t wire_bytes = 0;  // every ChunkData (image and hash chunks) serialized
};

struct Run {
  double cpu = 0;  // seconds in on_chunk
  std::uint64_t chunks = 0;
  bool reached_verifying = false;
};

// Drives a fresh engine through the download of `a` from `store`, chunks answered in request order.
Run download(const Artifact& a, const common::ArtifactStore& store, const client::EngineCrypto& crypto,
             const common::Ed25519PrivateKey& command_key) {
  client::EngineConfig config;
  config.device_id = "bench-0001";
  config.hardware_type = "bench-hw";
  config.slot_capacity_bytes = a.manifest.image_size();
  config.adaptive_window = false;
  config.initial_window = 32;
  config.max_window = 32;
  // Every chunk is downloaded: the figure is the cost of taking chunks off the wire.
  config.reuse_active_slot = false;
  client::UpdateEngine engine(config, crypto);
  std::deque<v1::ChunkRequest> requests;
  auto take = [&](client::Actions actions) {
    for (auto& action : actions) {
      if (auto* r = std::get_if<client::action::RequestChunks>(&action))
        requests.push_back(std::move(r->request));
    }
  };
  std::int64_t now = 1'700'000'000'000;
  take(engine.on_started(client::BootStatus{"a", false}, now));
  take(engine.on_connected(now));
  v1::Command command;
  command.set_command_id("bench-1");
  command.set_device_id(config.device_id);
  command.set_issued_at_ms(now);
  command.set_expires_at_ms(now + 3'600'000);
  *command.mutable_install()->mutable_manifest() = a.signed_manifest;
  take(engine.on_command(must(common::sign_command(command, command_key), "signing the command"), now));
  if (engine.state() != client::EngineState::kDownloading) die("the engine did not start downloading");

  const common::ArtifactStoreChunkSource source(store);
  Run run;
  while (!requests.empty()) {
    const v1::ChunkRequest request = std::move(requests.front());
    requests.pop_front();
    std::vector<v1::ChunkData> replies =
        common::respond_to_chunk_request(request, source, common::ChunkBudget{}).replies;
    for (auto& chunk : replies) {
      const double start = cpu_seconds();
      client::Actions actions = engine.on_chunk(std::move(chunk), now);
      run.cpu += cpu_seconds() - start;
      ++run.chunks;
      take(std::move(actions));
    }
  }
  run.reached_verifying = engine.state() == client::EngineState::kVerifying;
  return run;
}

std::uint64_t wire_bytes(const common::ArtifactStore& store, const std::string& id) {
  const std::uint32_t total = must(store.chunk_count(id), "chunk count");
  std::uint64_t bytes = 0;
  v1::ChunkData chunk;
  chunk.set_artifact_id(id);
  chunk.set_request_id(1);
  for (std::uint32_t i = 0; i < total; ++i) {
    chunk.set_index(i);
    if (auto st = store.read_chunk(id, i, *chunk.mutable_data()); !st.ok()) die(st.error().to_string());
    bytes += chunk.ByteSizeLong();
  }
  return bytes;
}

}  // namespace

int main(int argc, char** argv) {
  bool smoke = false;
  std::uint64_t mib = 64;
  std::uint32_t chunk_size = static_cast<std::uint32_t>(common::kDefaultChunkSize);
  fs::path work = "/dev/shm";
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--smoke") {
      smoke = true;
      mib = 2;
    } else if (arg == "--size" && i + 1 < argc) {
      mib = std::strtoull(argv[++i], nullptr, 10);
    } else if (arg == "--chunk-size" && i + 1 < argc) {
      chunk_size = static_cast<std::uint32_t>(std::strtoul(argv[++i], nullptr, 10));
    } else if (!arg.empty() && arg[0] != '-') {
      work = arg;
    } else {
      die("usage: fota_encryption_cost [--smoke] [--size MiB] [--chunk-size bytes] [work_dir]");
    }
  }
  const fs::path dir = work / ("fota-encryption-cost-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::uint64_t size = mib << 20;

  // Incompressible image bytes.
  {
    std::mt19937_64 rng(1);
    std::ofstream out(dir / "image", std::ios::binary);
    std::string block(1 << 20, '\0');
    for (std::uint64_t done = 0; done < size; done += block.size()) {
      for (std::size_t j = 0; j < block.size(); j += 8) {
        const std::uint64_t v = rng();
        std::memcpy(block.data() + j, &v, 8);
      }
      out.write(block.data(), static_cast<std::streamsize>(block.size()));
    }
  }
  const auto release = must(common::Ed25519PrivateKey::generate(), "release key");
  const auto command_key = must(common::Ed25519PrivateKey::generate(), "command key");
  const auto device_key = std::make_shared<const common::X25519PrivateKey>(
      must(common::X25519PrivateKey::generate(), "device key"));
  common::TrustStore trust;
  trust.add(release.public_key());
  common::TrustStore commands;
  commands.add(command_key.public_key());
  const client::OpenSslEngineCrypto crypto(trust, commands, device_key);

  common::ArtifactSpec spec;
  spec.version = "1.0";
  spec.compatible_hardware = {"bench-hw"};
  spec.chunk_size = chunk_size;
  common::ArtifactStore store(dir / "store");
  auto make = [&](bool encrypted) {
    const fs::path bundle = dir / (encrypted ? "encrypted.fota" : "plain.fota");
    Artifact a;
    if (encrypted) {
      a.signed_manifest =
          must(common::build_encrypted_manifest(dir / "image", spec, {device_key->public_key()}, release, 1,
                                                dir / "ciphertext"),
               "encrypting");
      if (auto st = common::write_bundle(bundle, a.signed_manifest, dir / "ciphertext"); !st.ok())
        die(st.error().to_string());
      fs::remove(dir / "ciphertext");
    } else {
      a.signed_manifest = must(common::build_signed_manifest(dir / "image", spec, release, 1), "signing");
      if (auto st = common::write_bundle(bundle, a.signed_manifest, dir / "image"); !st.ok())
        die(st.error().to_string());
    }
    a.manifest = must(store.import_bundle(bundle, trust), "import");
    fs::remove(bundle);
    a.wire_bytes = wire_bytes(store, a.manifest.artifact_id());
    return a;
  };
  const Artifact plain = make(false);
  const Artifact encrypted = make(true);
  fs::remove(dir / "image");

  // Device CPU through the engine: the best of three runs each, alternating.
  const int rounds = smoke ? 1 : 3;
  double plain_cpu = 1e300;
  double encrypted_cpu = 1e300;
  for (int r = 0; r < rounds; ++r) {
    const Run p = download(plain, store, crypto, command_key);
    const Run e = download(encrypted, store, crypto, command_key);
    if (!p.reached_verifying || !e.reached_verifying) die("a download did not complete");
    plain_cpu = std::min(plain_cpu, p.cpu);
    encrypted_cpu = std::min(encrypted_cpu, e.cpu);
  }

  // The primitives alone, over the same stored chunks.
  const std::string key = must(device_key->unwrap_content_key(encrypted.manifest.encryption()), "unwrap");
  const common::ChunkSpace space = common::ChunkSpace::of(encrypted.manifest);
  double sha_cpu = 1e300;
  double open_cpu = 1e300;
  std::string chunk;
  for (int r = 0; r < rounds; ++r) {
    double sha = 0;
    double open = 0;
    for (std::uint32_t i = 0; i < space.image_chunks(); ++i) {
      if (auto st = store.read_chunk(encrypted.manifest.artifact_id(), i, chunk); !st.ok())
        die(st.error().to_string());
      double t = cpu_seconds();
      (void)crypto.sha256(chunk);
      sha += cpu_seconds() - t;
      t = cpu_seconds();
      (void)crypto.sha256(chunk);
      if (auto st = crypto.decrypt_chunk(key, i, chunk); !st.ok()) die(st.error().to_string());
      open += cpu_seconds() - t;
    }
    sha_cpu = std::min(sha_cpu, sha);
    open_cpu = std::min(open_cpu, open);
  }
  fs::remove_all(dir);

  const double m = static_cast<double>(mib);
  const auto ms_per_mib = [&](double s) { return s * 1000.0 / m; };
  std::printf("image %llu MiB, chunk size %u bytes, %u image chunks, one recipient\n",
              static_cast<unsigned long long>(mib), chunk_size, space.image_chunks());
  std::printf("wire: plain %llu bytes, encrypted %llu bytes: +%llu bytes (+%.3f %%; %u per image chunk)\n",
              static_cast<unsigned long long>(plain.wire_bytes),
              static_cast<unsigned long long>(encrypted.wire_bytes),
              static_cast<unsigned long long>(encrypted.wire_bytes - plain.wire_bytes),
              100.0 * static_cast<double>(encrypted.wire_bytes - plain.wire_bytes) /
                  static_cast<double>(plain.wire_bytes),
              common::kEncryptedChunkOverhead);
  std::printf("manifest: plain %zu bytes, encrypted %zu bytes (+%zu: the scheme and one wrapped key)\n",
              plain.signed_manifest.ByteSizeLong(), encrypted.signed_manifest.ByteSizeLong(),
              encrypted.signed_manifest.ByteSizeLong() - plain.signed_manifest.ByteSizeLong());
  std::printf("device CPU, engine on_chunk: verify only %.2f ms/MiB, verify+decrypt %.2f ms/MiB (x%.2f)\n",
              ms_per_mib(plain_cpu), ms_per_mib(encrypted_cpu), encrypted_cpu / plain_cpu);
  std::printf("device CPU, primitives: SHA-256 %.2f ms/MiB, SHA-256 + AES-256-GCM open %.2f ms/MiB (x%.2f)\n",
              ms_per_mib(sha_cpu), ms_per_mib(open_cpu), open_cpu / sha_cpu);
  return 0;
}

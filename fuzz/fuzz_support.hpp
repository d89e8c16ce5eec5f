// SPDX-License-Identifier: Apache-2.0
// What the fuzz targets and the seed generator share: the fuzz-only signing key, the scratch
// directory of file-based targets, and the fixtures (device, artifact) the seeds refer to.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

#include <spdlog/logger.h>
#include <spdlog/sinks/null_sink.h>

#include "fota/client/engine.hpp"
#include "fota/common/artifact.hpp"
#include "fota/common/crypto.hpp"
#include "fota/v1/fota.pb.h"

namespace fota::fuzz {

// Signs the seed corpus' manifests and is the only key the targets trust, so seeds carry valid
// signatures and mutations reach the code behind the signature check. Trusted by nothing else:
// a key in a public repository protects nothing.
inline constexpr std::string_view kFuzzSigningKeyPem =
    "-----BEGIN PRIVATE KEY-----\n"
    "MC4CAQAwBQYDK2VwBCIEIJKZvkpu+NQvz6we0nlPmgZ/UMRLHpW8oqwdp4VtsRk+\n"
    "-----END PRIVATE KEY-----\n";

inline constexpr std::string_view kDeviceId = "dev-1";
inline constexpr std::string_view kOtherDeviceId = "dev-2";
inline constexpr std::string_view kHardware = "gw-v2";

// The time every fixture is made at and every target runs at (fixed, so a crash replays).
inline constexpr std::int64_t kNowMs = 1'800'000'000'000;

// Aborts (a broken fixture: nothing can be fuzzed) with `what` and the error on stderr.
[[noreturn]] void fixture_failed(std::string_view what, const common::Error& error);

common::Ed25519PrivateKey signing_key();
common::TrustStore trust_store();
std::shared_ptr<spdlog::logger> null_logger();

// A directory of this process for targets whose parser reads files (libFuzzer runs one input
// at a time per process). Removed at exit.
const std::filesystem::path& scratch_dir();

// A deterministic image of `size` bytes.
std::string image_bytes(std::size_t size, char salt = 'a');

// The SignedManifest of `image` for kHardware, signed with the fuzz key (hash table when the
// image has more than kMaxInlineChunkHashes chunks, as `fotactl artifact create` does).
v1::SignedManifest signed_manifest(const std::string& image, std::uint32_t chunk_size);

// A bundle file's bytes (docs/PROTOCOL.md) for `image`, as `fotactl artifact create` writes it.
std::string bundle_bytes(const std::string& image, std::uint32_t chunk_size);

// An install command for kDeviceId, issued at kNowMs.
v1::Command install_command(const v1::SignedManifest& manifest, std::string command_id);
// `command` as the orchestrator sends it: signed with the fuzz key (which the targets also trust
// as their command key), so mutations reach the engine behind the signature check.
std::string signed_command(const v1::Command& command);

// The device the client targets run: kDeviceId on kHardware with room for any seed image.
client::EngineConfig engine_config();

}  // namespace fota::fuzz

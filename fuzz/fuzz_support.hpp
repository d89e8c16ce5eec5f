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
#include <vector>

#include <spdlog/logger.h>
#include <spdlog/sinks/null_sink.h>

#include "fota/client/engine.hpp"
#include "fota/common/artifact.hpp"
#include "fota/common/crypto.hpp"
#include "fota/common/encryption.hpp"
#include "fota/common/pki.hpp"
#include "fota/v1/fota.pb.h"

namespace fota::fuzz {

// Signs the seed corpus' manifests and is the only key the targets trust, so seeds carry valid
// signatures and mutations reach the code behind the signature check. Trusted by nothing else:
// a key in a public repository protects nothing.
inline constexpr std::string_view kFuzzSigningKeyPem =
    "-----BEGIN PRIVATE KEY-----\n"
    "MC4CAQAwBQYDK2VwBCIEIJKZvkpu+NQvz6we0nlPmgZ/UMRLHpW8oqwdp4VtsRk+\n"
    "-----END PRIVATE KEY-----\n";

// The device's X25519 decryption key of the encrypted_artifact target: the seeds' artifacts are
// encrypted for it (and for another key). Fuzz-only, like the signing key.
inline constexpr std::string_view kFuzzDecryptionKeyPem =
    "-----BEGIN PRIVATE KEY-----\n"
    "MC4CAQAwBQYDK2VuBCIEIDj7ARZIXYNCAtWBCodgWEEIecTxKCktxf3an9Nzdm1P\n"
    "-----END PRIVATE KEY-----\n";

// A fleet PKI of the fuzz targets only (made once with `fotactl pki init` and `pki issue-ca fuzz`):
// the root devices trust, the issuing CA that signs renewals, and a device's P-256 TLS key. Fixed,
// because the cert_renewal seeds carry chains issued by it for that key; valid until 2036.
inline constexpr std::string_view kFuzzRootCaPem =
    "-----BEGIN CERTIFICATE-----\n"
    "MIIBszCCAVmgAwIBAgIQeIZ6E4R0RpoKZbdcUmWx5jAKBggqhkjOPQQDAjA4MQ0w\n"
    "CwYDVQQKDARmb3RhMQswCQYDVQQLDAJjYTEaMBgGA1UEAwwRZm90YSBmdXp6IHJv\n"
    "b3QgQ0EwHhcNMjYxMjA0MTQ0NDQ4WhcNMzYxMjAxMTQ0OTQ4WjA4MQ0wCwYDVQQK\n"
    "DARmb3RhMQswCQYDVQQLDAJjYTEaMBgGA1UEAwwRZm90YSBmdXp6IHJvb3QgQ0Ew\n"
    "WTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAAT9E3XKlYvxEYpcoBhkKmX2z9tlVf1s\n"
    "ilx9+pKwzJWbtQNZTjnI2UbLfldEpP0xuIkQuolqR0XKtEEnfB++Jv/bo0UwQzAS\n"
    "BgNVHRMBAf8ECDAGAQH/AgEBMA4GA1UdDwEB/wQEAwIBBjAdBgNVHQ4EFgQUDzWx\n"
    "SxgtVblhra8Xw3EiYerIBD0wCgYIKoZIzj0EAwIDSAAwRQIgUmlLW1vNkMh6KaXk\n"
    "MkFLCYjFpEnzURqtv7T+r57C7oECIQCLV/P64x4d/v68zdyDwYhbzRNvRvoSUeMC\n"
    "GHhUCOyIgA==\n"
    "-----END CERTIFICATE-----\n";
inline constexpr std::string_view kFuzzIssuingCaCertPem =
    "-----BEGIN CERTIFICATE-----\n"
    "MIIByjCCAW+gAwIBAgIQe5NynQvq8VgXz4wZFSyvYTAKBggqhkjOPQQDAjA4MQ0w\n"
    "CwYDVQQKDARmb3RhMQswCQYDVQQLDAJjYTEaMBgGA1UEAwwRZm90YSBmdXp6IHJv\n"
    "b3QgQ0EwIBcNMjYxMjA0MTQ0NDQ4WhgPMjA1MTA3MjYxNDQ5NDhaMCsxDTALBgNV\n"
    "BAoMBGZvdGExCzAJBgNVBAsMAmNhMQ0wCwYDVQQDDARmdXp6MFkwEwYHKoZIzj0C\n"
    "AQYIKoZIzj0DAQcDQgAEJayVXu/IDXlD5qjCCYyxlaXQ6iL9ZB2hBAeBdqlRys4n\n"
    "0Xl/1Gr00uiJI5o9fAe7SUEY393uVhlRVcXnd00rWKNmMGQwEgYDVR0TAQH/BAgw\n"
    "BgEB/wIBADAOBgNVHQ8BAf8EBAMCAQYwHQYDVR0OBBYEFF8oHyM+ahHLD6PIeRBu\n"
    "I8z3wMCTMB8GA1UdIwQYMBaAFA81sUsYLVW5Ya2vF8NxImHqyAQ9MAoGCCqGSM49\n"
    "BAMCA0kAMEYCIQDUN/OVpSglloMx8IOboygBUWcyVIK+lCS7KSrUexW+bwIhAN/v\n"
    "pZuqWqvCx1zlPg+ka/lXiF86BaWnMXiqgfoK0kRb\n"
    "-----END CERTIFICATE-----\n";
inline constexpr std::string_view kFuzzIssuingCaKeyPem =
    "-----BEGIN PRIVATE KEY-----\n"
    "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgwJl+gR/VZCiSZRwQ\n"
    "tK3EyD3VKecK4KsWNc2W0c6dyOKhRANCAAQlrJVe78gNeUPmqMIJjLGVpdDqIv1k\n"
    "HaEEB4F2qVHKzifReX/UavTS6Ikjmj18B7tJQRjf3e5WGVFVxed3TStY\n"
    "-----END PRIVATE KEY-----\n";
inline constexpr std::string_view kFuzzDeviceTlsKeyPem =
    "-----BEGIN PRIVATE KEY-----\n"
    "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgb/CnzxR+OD+c+gtg\n"
    "rJ01GDRSpNL2go0rKO2xj5UVglWhRANCAARIQCwVYwhfOWS2pLyBc2J8v3NuSHrh\n"
    "fKeZid/LFcMUYZ4h+5JBjna+6c+zZRm+kYY9CK03CQ+dQqVc+mKnwH9I\n"
    "-----END PRIVATE KEY-----\n";
// The renewal request the cert_renewal target's device is waiting for.
inline constexpr std::string_view kRenewalRequestId = "renew-0001";

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
std::shared_ptr<const common::X25519PrivateKey> decryption_key();
// The fixed issuing CA above, opened from scratch_dir()/pki (written once per process).
const common::CertificateAuthority& fixed_issuing_ca();

// A directory of this process for targets whose parser reads files (libFuzzer runs one input
// at a time per process). Removed at exit.
const std::filesystem::path& scratch_dir();

// A deterministic image of `size` bytes.
std::string image_bytes(std::size_t size, char salt = 'a');

// The SignedManifest of `image` for kHardware, signed with the fuzz key (hash table when the
// image has more than kMaxInlineChunkHashes chunks, as `fotactl artifact create` does).
v1::SignedManifest signed_manifest(const std::string& image, std::uint32_t chunk_size);

// The SignedManifest of `image` encrypted for `recipients`, signed with the fuzz key, and the
// stored bytes a chunk server serves (ciphertext chunks, then the hash table when it has one).
struct EncryptedArtifact {
  v1::SignedManifest manifest;
  std::string stored;
};
EncryptedArtifact encrypted_artifact(const std::string& image, std::uint32_t chunk_size,
                                     const std::vector<common::X25519PublicKey>& recipients);

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

// SPDX-License-Identifier: Apache-2.0
// Delta artifacts (docs/PROTOCOL.md, "Delta artifacts"): a zstd patch that turns a base image (the
// device's running slot) into a target image, made with the whole base as the compressor's prefix
// (zstd --patch-from through libzstd). fota_delta library: libzstd + fota_crypto.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

#include "fota/common/crypto.hpp"
#include "fota/common/result.hpp"
#include "fota/v1/fota.pb.h"

typedef struct ZSTD_DCtx_s ZSTD_DCtx;

namespace fota::common {

// The zstd window (log2 bytes) a patch between images of these sizes uses: it covers the larger
// one, so every match into the base is reachable. kInvalidArgument when no zstd window is that
// large on this build.
Result<unsigned> delta_window_log(std::uint64_t base_size, std::uint64_t target_size);

// One zstd frame: `target` compressed at `level` with `base` as its prefix, long-distance
// matching, window 2^window_log, content checksum on.
Result<std::string> make_zstd_patch(std::string_view base, std::string_view target, unsigned window_log,
                                    int level);

// Applies a patch streaming: pieces of the patch go in as they arrive, the target comes out into
// `out` (the whole target, e.g. the memory-mapped inactive slot: zstd then needs no window buffer
// of its own, its heap stays under a megabyte). `base` (e.g. the mapped running slot) must stay
// mapped until finish(). Pure logic: no files.
class ZstdPatchApplier {
 public:
  // `window_log` is the manifest's (DeltaEncoding.window_log): larger windows are refused.
  ZstdPatchApplier(std::string_view base, char* out, std::size_t out_size, unsigned window_log);
  ~ZstdPatchApplier();
  ZstdPatchApplier(const ZstdPatchApplier&) = delete;
  ZstdPatchApplier& operator=(const ZstdPatchApplier&) = delete;

  // Decodes `piece`. kIntegrity when the patch is corrupt, does not fit this base (zstd's content
  // checksum), or would write more than out_size bytes; once failed, every later call fails.
  Status feed(std::string_view piece);
  // The frame is complete and produced exactly out_size bytes; kIntegrity otherwise.
  Status finish();
  std::size_t produced() const noexcept { return produced_; }

 private:
  ZSTD_DCtx* dctx_ = nullptr;
  char* out_;
  std::size_t out_size_;
  std::size_t produced_ = 0;
  bool frame_done_ = false;
  Status failed_ = ok_status();
};

struct DeltaOptions {
  int level = 19;
};

// `fotactl artifact delta`: reads two bundles (each image checked against its manifest's hash;
// signatures are not checked here, the key that signs the delta vouches for it), refuses inputs
// that cannot make a delta (kInvalidArgument: encrypted, not A/B images, different hardware,
// payload target or chunk size, the same image, a delta as input), makes the patch and writes a
// signed delta bundle to `out` (refused when it exists). The delta's manifest copies the target's
// name, version, security counter, hardware, payload and chunk size, and its DeltaEncoding names
// base and target by hash, size and artifact id.
Result<v1::SignedManifest> build_delta_bundle(const std::filesystem::path& from_bundle,
                                              const std::filesystem::path& to_bundle,
                                              const Ed25519PrivateKey& key, std::int64_t now_ms,
                                              const std::filesystem::path& out,
                                              const DeltaOptions& options = {});

}  // namespace fota::common

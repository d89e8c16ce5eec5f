// SPDX-License-Identifier: Apache-2.0
#include "fota/common/delta.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

// ZSTD_d_stableOutBuffer is an "experimental" parameter (a value of the stable setParameter call).
#define ZSTD_STATIC_LINKING_ONLY
#include <zstd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>

#include "fota/common/artifact.hpp"
#include "fota/common/codec.hpp"

namespace fota::common {
namespace fs = std::filesystem;

Result<unsigned> delta_window_log(std::uint64_t base_size, std::uint64_t target_size) {
  const std::uint64_t bytes = std::max(base_size, target_size);
  const ZSTD_bounds bounds = ZSTD_cParam_getBounds(ZSTD_c_windowLog);
  unsigned log = static_cast<unsigned>(std::max(bounds.lowerBound, 10));
  while ((std::uint64_t{1} << log) < bytes) {
    if (static_cast<int>(log) >= bounds.upperBound) {
      return Error(Errc::kInvalidArgument, "an image of " + std::to_string(bytes) +
                                               " bytes is larger than zstd's largest window (2^" +
                                               std::to_string(bounds.upperBound) + " bytes) on this build");
    }
    ++log;
  }
  return log;
}

Result<std::string> make_zstd_patch(std::string_view base, std::string_view target, unsigned window_log,
                                    int level) {
  ZSTD_CCtx* cctx = ZSTD_createCCtx();
  if (cctx == nullptr) return Error(Errc::kInternal, "zstd: cannot create a compression context");
  std::string out(ZSTD_compressBound(target.size()), '\0');
  std::size_t rc = ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, level);
  if (!ZSTD_isError(rc)) rc = ZSTD_CCtx_setParameter(cctx, ZSTD_c_enableLongDistanceMatching, 1);
  if (!ZSTD_isError(rc)) rc = ZSTD_CCtx_setParameter(cctx, ZSTD_c_windowLog, static_cast<int>(window_log));
  if (!ZSTD_isError(rc)) rc = ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 1);
  if (!ZSTD_isError(rc)) rc = ZSTD_CCtx_refPrefix(cctx, base.data(), base.size());
  if (!ZSTD_isError(rc)) rc = ZSTD_compress2(cctx, out.data(), out.size(), target.data(), target.size());
  ZSTD_freeCCtx(cctx);
  if (ZSTD_isError(rc)) return Error(Errc::kInternal, std::string("zstd patch: ") + ZSTD_getErrorName(rc));
  out.resize(rc);
  return out;
}

ZstdPatchApplier::ZstdPatchApplier(std::string_view base, char* out, std::size_t out_size,
                                   unsigned window_log)
    : dctx_(ZSTD_createDCtx()), out_(out), out_size_(out_size) {
  if (dctx_ == nullptr) {
    failed_ = Error(Errc::kInternal, "zstd: cannot create a decompression context");
    return;
  }
  std::size_t rc = ZSTD_DCtx_setParameter(dctx_, ZSTD_d_windowLogMax, static_cast<int>(window_log));
  // The whole target is the output buffer and stays put: zstd decodes straight into it.
  if (!ZSTD_isError(rc)) rc = ZSTD_DCtx_setParameter(dctx_, ZSTD_d_stableOutBuffer, 1);
  if (!ZSTD_isError(rc)) rc = ZSTD_DCtx_refPrefix(dctx_, base.data(), base.size());
  if (ZSTD_isError(rc))
    failed_ = Error(Errc::kInvalidArgument, std::string("zstd: ") + ZSTD_getErrorName(rc));
}

ZstdPatchApplier::~ZstdPatchApplier() { ZSTD_freeDCtx(dctx_); }

Status ZstdPatchApplier::feed(std::string_view piece) {
  if (!failed_) return failed_;
  ZSTD_inBuffer in{piece.data(), piece.size(), 0};
  while (in.pos < in.size) {
    if (frame_done_) {
      failed_ = Error(Errc::kIntegrity, "the patch has bytes after its zstd frame");
      return failed_;
    }
    // stableOutBuffer: the same buffer each call, only pos advances.
    ZSTD_outBuffer o{out_, out_size_, produced_};
    const std::size_t consumed_before = in.pos;
    const std::size_t rc = ZSTD_decompressStream(dctx_, &o, &in);
    if (ZSTD_isError(rc)) {
      failed_ = Error(Errc::kIntegrity,
                      std::string("the patch does not decode over this base: ") + ZSTD_getErrorName(rc));
      return failed_;
    }
    const bool progress = in.pos != consumed_before || o.pos != produced_;
    produced_ = o.pos;
    if (rc == 0) {
      frame_done_ = true;
    } else if (!progress) {
      // Input left, nothing consumed or made: the output is full and the frame wants more.
      failed_ = Error(Errc::kIntegrity,
                      "the patch makes more than the target's " + std::to_string(out_size_) + " bytes");
      return failed_;
    }
  }
  return ok_status();
}

Status ZstdPatchApplier::finish() {
  if (!failed_) return failed_;
  if (!frame_done_) {
    failed_ = Error(Errc::kIntegrity, "the patch ended before its zstd frame (" + std::to_string(produced_) +
                                          " of " + std::to_string(out_size_) + " bytes made)");
    return failed_;
  }
  if (produced_ != out_size_) {
    failed_ = Error(Errc::kIntegrity, "the patch made " + std::to_string(produced_) +
                                          " bytes, not the target's " + std::to_string(out_size_));
    return failed_;
  }
  return ok_status();
}

namespace {

// A read-only view of `size` bytes at `offset` of a file.
class MappedRange {
 public:
  static Result<MappedRange> open(const fs::path& path, std::uint64_t offset, std::uint64_t size) {
    MappedRange r;
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return Error(Errc::kIo, "cannot open " + path.string() + ": " + std::strerror(errno));
    const long page = ::sysconf(_SC_PAGESIZE);
    const std::uint64_t start = offset - offset % static_cast<std::uint64_t>(page);
    r.map_size_ = static_cast<std::size_t>(size + (offset - start));
    void* p = ::mmap(nullptr, r.map_size_, PROT_READ, MAP_PRIVATE, fd, static_cast<off_t>(start));
    ::close(fd);
    if (p == MAP_FAILED) return Error(Errc::kIo, "cannot map " + path.string() + ": " + std::strerror(errno));
    r.map_ = p;
    r.view_ =
        std::string_view(static_cast<const char*>(p) + (offset - start), static_cast<std::size_t>(size));
    return r;
  }
  MappedRange() = default;
  MappedRange(MappedRange&& o) noexcept : map_(o.map_), map_size_(o.map_size_), view_(o.view_) {
    o.map_ = nullptr;
  }
  MappedRange& operator=(MappedRange&&) = delete;
  MappedRange(const MappedRange&) = delete;
  ~MappedRange() {
    if (map_ != nullptr) ::munmap(map_, map_size_);
  }
  std::string_view view() const { return view_; }

 private:
  void* map_ = nullptr;
  std::size_t map_size_ = 0;
  std::string_view view_;
};

struct Input {
  v1::Manifest manifest;
  MappedRange image;
};

Result<Input> read_input(const fs::path& bundle, const char* role) {
  auto info = read_bundle_header(bundle);
  if (!info) return info.error().with_context(std::string("--") + role);
  auto m = decode<v1::Manifest>(info->signed_manifest.manifest(), kMaxCommandBytes);
  if (!m) return m.error().with_context(std::string("--") + role + " " + bundle.string());
  if (auto st = check_manifest_structure(*m); !st) {
    return st.error().with_context(std::string("--") + role + " " + bundle.string());
  }
  auto bad = [&](const std::string& why) {
    return Error(Errc::kInvalidArgument, std::string("--") + role + " " + bundle.string() + " " + why);
  };
  if (m->has_delta()) return bad("is itself a delta artifact; give the full artifacts of both versions");
  if (m->has_encryption()) {
    return bad(
        "is encrypted; a delta needs the plaintext images (make deltas between unencrypted artifacts)");
  }
  if (m->payload_type() != v1::PAYLOAD_TYPE_AB_IMAGE) {
    return bad("is not an A/B image (--payload ab); deltas apply to the running slot of an A/B device");
  }
  if (info->image_size != m->image_size()) {
    return bad("holds " + std::to_string(info->image_size) + " image bytes but its manifest says " +
               std::to_string(m->image_size()));
  }
  auto image = MappedRange::open(bundle, info->image_offset, info->image_size);
  if (!image) return image.error();
  if (digest_bytes(Sha256::digest(image->view())) != m->image_sha256()) {
    return bad("is damaged: its image does not match the image hash in its manifest");
  }
  return Input{std::move(m).value(), std::move(image).value()};
}

std::vector<std::string> sorted(const google::protobuf::RepeatedPtrField<std::string>& in) {
  std::vector<std::string> v(in.begin(), in.end());
  std::sort(v.begin(), v.end());
  return v;
}

}  // namespace

Result<v1::SignedManifest> build_delta_bundle(const fs::path& from_bundle, const fs::path& to_bundle,
                                              const Ed25519PrivateKey& key, std::int64_t now_ms,
                                              const fs::path& out, const DeltaOptions& options) {
  std::error_code ec;
  if (fs::exists(out, ec)) {
    return Error(Errc::kAlreadyExists,
                 out.string() + " already exists; refusing to overwrite it (choose another -o)");
  }
  auto from = read_input(from_bundle, "from");
  if (!from) return from.error();
  auto to = read_input(to_bundle, "to");
  if (!to) return to.error();
  const v1::Manifest& base = from->manifest;
  const v1::Manifest& target = to->manifest;
  if (sorted(base.compatible_hardware()) != sorted(target.compatible_hardware())) {
    return Error(
        Errc::kInvalidArgument,
        "--from and --to are for different hardware types; a delta needs artifacts of the same hardware");
  }
  if (base.payload_target() != target.payload_target()) {
    return Error(Errc::kInvalidArgument, "--from and --to have different payload targets (\"" +
                                             base.payload_target() + "\" and \"" + target.payload_target() +
                                             "\")");
  }
  if (base.image_sha256() == target.image_sha256()) {
    return Error(Errc::kInvalidArgument, "--from and --to hold the same image; there is nothing to send");
  }
  auto window_log = delta_window_log(base.image_size(), target.image_size());
  if (!window_log) return window_log.error();
  auto patch = make_zstd_patch(from->image.view(), to->image.view(), *window_log, options.level);
  if (!patch) return patch.error();

  v1::DeltaEncoding delta;
  delta.set_codec(v1::DELTA_CODEC_ZSTD_PATCH_FROM);
  delta.set_base_image_size(base.image_size());
  delta.set_base_image_sha256(base.image_sha256());
  delta.set_base_artifact_id(base.artifact_id());
  delta.set_base_version(base.version());
  delta.set_target_image_size(target.image_size());
  delta.set_target_image_sha256(target.image_sha256());
  delta.set_target_artifact_id(target.artifact_id());
  delta.set_window_log(*window_log);

  ArtifactSpec spec;
  spec.name = target.name();
  spec.version = target.version();
  spec.security_counter = target.security_counter();
  spec.compatible_hardware.assign(target.compatible_hardware().begin(), target.compatible_hardware().end());
  spec.payload_type = target.payload_type();
  spec.payload_target = target.payload_target();
  spec.chunk_size = target.chunk_size();

  // The patch is staged beside the bundle and removed once the bundle holds it.
  const fs::path staged = out.string() + ".patch";
  if (auto st = write_new_file(staged, *patch, 0600); !st) return st.error();
  auto sm = build_delta_manifest(staged, spec, delta, key, now_ms);
  Status written = sm ? write_bundle(out, *sm, staged) : Status(sm.error());
  fs::remove(staged, ec);
  if (!written) return written.error();
  return sm;
}

}  // namespace fota::common

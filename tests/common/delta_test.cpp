// SPDX-License-Identifier: Apache-2.0
// Delta artifacts (fota/common/delta.hpp): the patch applier as pure logic (pieces of any size,
// corrupt, truncated, wrong base, too large) and build_delta_bundle with what it refuses.
#include <fstream>
#include <random>

#include <gtest/gtest.h>

#include "fota/common/artifact.hpp"
#include "fota/common/codec.hpp"
#include "fota/common/delta.hpp"
#include "fota/testing/broker.hpp"

namespace fota::common {
namespace {
namespace fs = std::filesystem;

// A base of random 4 KiB blocks and a target that moves, changes and adds some, like a package upgrade.
std::string random_bytes(std::size_t size, unsigned seed) {
  std::mt19937 rng(seed);
  std::string s(size, '\0');
  for (auto& c : s) c = static_cast<char>(rng());
  return s;
}

std::string make_target(const std::string& base) {
  std::string t = base.substr(0, 40000) + random_bytes(3000, 7) + base.substr(52000);
  for (std::size_t i = 100000; i < 100100; ++i) t[i] = 'x';
  return t + random_bytes(5000, 8);
}

class DeltaPatchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    base_ = random_bytes(256 * 1024, 1);
    target_ = make_target(base_);
    window_log_ = delta_window_log(base_.size(), target_.size()).value();
    patch_ = make_zstd_patch(base_, target_, window_log_, 19).value();
  }
  // Feeds `patch` in pieces of `piece` bytes; the first error of feed() or finish().
  Status apply(std::string_view base, std::string_view patch, std::string& out, std::size_t piece) {
    ZstdPatchApplier applier(base, out.data(), out.size(), window_log_);
    for (std::size_t off = 0; off < patch.size(); off += piece) {
      if (auto st = applier.feed(patch.substr(off, piece)); !st) return st;
    }
    return applier.finish();
  }

  std::string base_, target_, patch_;
  unsigned window_log_ = 0;
};

TEST_F(DeltaPatchTest, PatchIsSmallAndAppliesInPiecesOfAnySize) {
  EXPECT_LT(patch_.size(), target_.size() / 10) << "the unchanged blocks come from the base";
  EXPECT_EQ(window_log_, 18u);  // 2^18 covers the 256 KiB base
  for (std::size_t piece : {std::size_t{1}, std::size_t{7}, std::size_t{4096}, patch_.size()}) {
    std::string out(target_.size(), '\0');
    auto st = apply(base_, patch_, out, piece);
    ASSERT_TRUE(st.ok()) << "piece " << piece << ": " << st.error().message;
    EXPECT_TRUE(out == target_) << "piece " << piece;
  }
}

TEST_F(DeltaPatchTest, CorruptPatchIsRefused) {
  for (std::size_t at : {std::size_t{20}, patch_.size() / 2, patch_.size() - 2}) {
    std::string bad = patch_;
    bad[at] = static_cast<char>(bad[at] ^ 0x40);
    std::string out(target_.size(), '\0');
    auto st = apply(base_, bad, out, 1000);
    ASSERT_FALSE(st.ok()) << "byte " << at << " flipped";
    EXPECT_EQ(st.error().code, Errc::kIntegrity) << st.error().message;
  }
}

TEST_F(DeltaPatchTest, WrongBaseIsRefusedByTheChecksum) {
  std::string other = base_;
  other[60000] = static_cast<char>(other[60000] ^ 1);  // a block the target copies
  std::string out(target_.size(), '\0');
  auto st = apply(other, patch_, out, 1000);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code, Errc::kIntegrity);
}

TEST_F(DeltaPatchTest, TruncatedTrailingOrTooLargeIsRefused) {
  std::string out(target_.size(), '\0');
  auto truncated = apply(base_, std::string_view(patch_).substr(0, patch_.size() - 10), out, 1000);
  ASSERT_FALSE(truncated.ok());
  EXPECT_NE(truncated.error().message.find("ended before"), std::string::npos) << truncated.error().message;

  auto trailing = apply(base_, patch_ + "junk", out, 1000);
  ASSERT_FALSE(trailing.ok());
  EXPECT_NE(trailing.error().message.find("after its zstd frame"), std::string::npos)
      << trailing.error().message;

  std::string small(target_.size() - 1, '\0');
  auto too_large = apply(base_, patch_, small, 1000);
  ASSERT_FALSE(too_large.ok());
  EXPECT_EQ(too_large.error().code, Errc::kIntegrity);

  std::string big(target_.size() + 1, '\0');
  auto too_small = apply(base_, patch_, big, 1000);
  ASSERT_FALSE(too_small.ok());
  EXPECT_NE(too_small.error().message.find("not the target's"), std::string::npos)
      << too_small.error().message;
}

// The manifest's window_log bounds what the decoder accepts (streamed in pieces, as a device does).
TEST_F(DeltaPatchTest, AWindowLargerThanTheManifestsIsRefused) {
  std::string out(target_.size(), '\0');
  window_log_ = 12;
  auto st = apply(base_, patch_, out, 1000);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message.find("does not decode"), std::string::npos) << st.error().message;
}

class DeltaBundleTest : public ::testing::Test {
 protected:
  void SetUp() override {
    base_ = random_bytes(256 * 1024, 1);
    target_ = make_target(base_);
    trust_.add(key_.public_key());
  }
  fs::path bundle(const std::string& name, const std::string& image, const std::string& version,
                  std::vector<std::string> hardware = {"gw-v2", "gw-v3"},
                  v1::PayloadType type = v1::PAYLOAD_TYPE_AB_IMAGE) {
    const fs::path img = dir_.path() / (name + ".img");
    std::ofstream(img, std::ios::binary) << image;
    ArtifactSpec spec;
    spec.name = "rootfs";
    spec.version = version;
    spec.security_counter = version == "1.0" ? 1 : 2;
    spec.compatible_hardware = std::move(hardware);
    spec.payload_type = type;
    spec.chunk_size = 4096;
    auto sm = build_signed_manifest(img, spec, key_, 1700000000000);
    EXPECT_TRUE(sm.ok()) << sm.error().message;
    const fs::path out = dir_.path() / name;
    EXPECT_TRUE(write_bundle(out, *sm, img).ok());
    return out;
  }
  Result<v1::SignedManifest> delta(const fs::path& from, const fs::path& to, const std::string& out) {
    return build_delta_bundle(from, to, key_, 1700000001000, dir_.path() / out);
  }

  testing::TempDir dir_;
  std::string base_, target_;
  Ed25519PrivateKey key_ = Ed25519PrivateKey::generate().value();
  TrustStore trust_;
};

TEST_F(DeltaBundleTest, DeltaBundleIsSignedNamesBaseAndTargetAndApplies) {
  const fs::path v1 = bundle("v1.fota", base_, "1.0");
  const fs::path v2 = bundle("v2.fota", target_, "2.0");
  auto sm = delta(v1, v2, "d.fota");
  ASSERT_TRUE(sm.ok()) << sm.error().message;
  EXPECT_FALSE(fs::exists(dir_.path() / "d.fota.patch")) << "the staged patch is removed";
  // A normal artifact for the store and verify: signature, chunk hashes, image (= patch) hash.
  auto verified = verify_bundle(dir_.path() / "d.fota", trust_);
  ASSERT_TRUE(verified.ok()) << verified.error().message;
  const v1::Manifest& m = verified->manifest;
  const v1::Manifest base =
      *decode<v1::Manifest>(read_bundle_header(v1)->signed_manifest.manifest(), kMaxCommandBytes);
  const v1::Manifest target =
      *decode<v1::Manifest>(read_bundle_header(v2)->signed_manifest.manifest(), kMaxCommandBytes);
  ASSERT_TRUE(m.has_delta());
  EXPECT_EQ(m.delta().codec(), v1::DELTA_CODEC_ZSTD_PATCH_FROM);
  EXPECT_EQ(m.delta().base_image_sha256(), base.image_sha256());
  EXPECT_EQ(m.delta().base_image_size(), base_.size());
  EXPECT_EQ(m.delta().base_artifact_id(), base.artifact_id());
  EXPECT_EQ(m.delta().base_version(), "1.0");
  EXPECT_EQ(m.delta().target_image_sha256(), target.image_sha256());
  EXPECT_EQ(m.delta().target_image_size(), target_.size());
  EXPECT_EQ(m.delta().target_artifact_id(), target.artifact_id());
  EXPECT_EQ(m.version(), "2.0");
  EXPECT_EQ(m.security_counter(), 2u);
  EXPECT_EQ(m.chunk_size(), 4096u);
  EXPECT_NE(m.artifact_id(), target.artifact_id());
  EXPECT_LT(m.image_size(), target_.size() / 10);
  // Its image is the patch: applied over the base it gives the target.
  std::ifstream in(dir_.path() / "d.fota", std::ios::binary);
  in.seekg(static_cast<std::streamoff>(verified->info.image_offset));
  std::string patch(m.image_size(), '\0');
  in.read(patch.data(), static_cast<std::streamsize>(patch.size()));
  std::string out(m.delta().target_image_size(), '\0');
  ZstdPatchApplier applier(base_, out.data(), out.size(), m.delta().window_log());
  ASSERT_TRUE(applier.feed(patch).ok());
  ASSERT_TRUE(applier.finish().ok());
  EXPECT_EQ(digest_bytes(Sha256::digest(out)), m.delta().target_image_sha256());
}

TEST_F(DeltaBundleTest, RefusesInputsThatCannotMakeADelta) {
  const fs::path v1 = bundle("v1.fota", base_, "1.0");
  const fs::path v2 = bundle("v2.fota", target_, "2.0");
  auto expect_refused = [&](Result<v1::SignedManifest> r, const std::string& text) {
    ASSERT_FALSE(r.ok()) << text;
    EXPECT_NE(r.error().message.find(text), std::string::npos) << r.error().message;
  };
  expect_refused(delta(v1, bundle("hw.fota", target_, "2.0", {"gw-v9"}), "a.fota"), "different hardware");
  expect_refused(
      delta(v1, bundle("file.fota", target_, "2.0", {"gw-v2", "gw-v3"}, v1::PAYLOAD_TYPE_FILE), "b.fota"),
      "not an A/B image");
  expect_refused(delta(v1, v1, "c.fota"), "same image");
  ASSERT_TRUE(delta(v1, v2, "d.fota").ok());
  expect_refused(delta(dir_.path() / "d.fota", v2, "e.fota"), "itself a delta");
  expect_refused(delta(v1, v2, "d.fota"), "already exists");
  // A damaged input: one image byte changed.
  {
    std::fstream f(v2, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(-100, std::ios::end);
    f.put('\x5a');
  }
  expect_refused(delta(v1, v2, "f.fota"), "damaged");
  // An encrypted base.
  const fs::path img = dir_.path() / "enc.img";
  std::ofstream(img, std::ios::binary) << base_;
  ArtifactSpec spec;
  spec.version = "1.0";
  spec.compatible_hardware = {"gw-v2", "gw-v3"};
  spec.chunk_size = 4096;
  auto x = X25519PrivateKey::generate().value();
  auto enc = build_encrypted_manifest(img, spec, {x.public_key()}, key_, 1, dir_.path() / "enc.ct");
  ASSERT_TRUE(enc.ok()) << enc.error().message;
  ASSERT_TRUE(write_bundle(dir_.path() / "enc.fota", *enc, dir_.path() / "enc.ct").ok());
  expect_refused(delta(dir_.path() / "enc.fota", v2, "g.fota"), "encrypted");
  EXPECT_FALSE(fs::exists(dir_.path() / "g.fota"));
}

TEST(DeltaStructure, ManifestChecksRefuseBrokenDeltaFields) {
  v1::Manifest m;
  m.set_artifact_id(std::string(32, 'a'));
  m.set_version("2");
  m.add_compatible_hardware("h");
  m.set_payload_type(v1::PAYLOAD_TYPE_AB_IMAGE);
  m.set_chunk_size(4096);
  m.set_image_size(10);
  m.set_image_sha256(std::string(32, 'x'));
  m.add_chunk_sha256(std::string(32, 'y'));
  ASSERT_TRUE(check_manifest_structure(m).ok());
  v1::DeltaEncoding& d = *m.mutable_delta();
  d.set_codec(v1::DELTA_CODEC_ZSTD_PATCH_FROM);
  d.set_base_image_size(100);
  d.set_base_image_sha256(std::string(32, 'b'));
  d.set_base_artifact_id(std::string(32, 'b'));
  d.set_target_image_size(100);
  d.set_target_image_sha256(std::string(32, 't'));
  d.set_target_artifact_id(std::string(32, 'c'));
  d.set_window_log(20);
  ASSERT_TRUE(check_manifest_structure(m).ok());
  auto broken = [&](auto change, const std::string& text) {
    v1::Manifest copy = m;
    change(copy);
    auto st = check_manifest_structure(copy);
    ASSERT_FALSE(st.ok()) << text;
    EXPECT_NE(st.error().message.find(text), std::string::npos) << st.error().message;
  };
  broken([](v1::Manifest& c) { c.mutable_delta()->set_codec(v1::DELTA_CODEC_UNSPECIFIED); }, "no codec");
  broken([](v1::Manifest& c) { c.set_payload_type(v1::PAYLOAD_TYPE_FILE); }, "not an A/B image");
  broken([](v1::Manifest& c) { c.mutable_delta()->set_target_image_sha256("short"); }, "not 32 bytes");
  broken([](v1::Manifest& c) { c.mutable_delta()->set_base_image_size(0); }, "size is 0");
  broken([](v1::Manifest& c) { c.mutable_delta()->set_window_log(40); }, "window_log");
  broken([](v1::Manifest& c) { c.mutable_delta()->set_base_artifact_id("x"); }, "artifact id");
}

}  // namespace
}  // namespace fota::common

// SPDX-License-Identifier: Apache-2.0
#include <fstream>
#include <random>

#include <gtest/gtest.h>

#include "fota/common/artifact.hpp"
#include "fota/common/codec.hpp"
#include "fota/testing/broker.hpp"

namespace fota::common {
namespace {
namespace fs = std::filesystem;

class ArtifactTest : public ::testing::Test {
 protected:
  void SetUp() override {
    image_ = dir_.path() / "image.bin";
    std::mt19937 rng(42);
    image_bytes_.resize(10 * 1024 + 123);
    for (auto& c : image_bytes_) c = static_cast<char>(rng());
    std::ofstream(image_, std::ios::binary) << image_bytes_;
    trust_.add(key_.public_key());
    spec_.version = "1.0.1";
    spec_.security_counter = 3;
    spec_.compatible_hardware = {"gw-v2", "gw-v3"};
    spec_.chunk_size = 4096;
  }

  fs::path make_bundle(const std::string& name) {
    auto sm = build_signed_manifest(image_, spec_, key_, 1700000000000);
    EXPECT_TRUE(sm.ok());
    fs::path out = dir_.path() / name;
    EXPECT_TRUE(write_bundle(out, *sm, image_).ok());
    return out;
  }

  void flip_byte(const fs::path& file, std::uint64_t offset) {
    std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(static_cast<std::streamoff>(offset));
    char c = 0;
    f.get(c);
    f.seekp(static_cast<std::streamoff>(offset));
    f.put(static_cast<char>(c ^ 0x01));
  }

  testing::TempDir dir_;
  fs::path image_;
  std::string image_bytes_;
  Ed25519PrivateKey key_ = Ed25519PrivateKey::generate().value();
  TrustStore trust_;
  ArtifactSpec spec_;
};

TEST_F(ArtifactTest, ManifestDescribesImage) {
  auto sm = build_signed_manifest(image_, spec_, key_, 1700000000000).value();
  auto m = trust_.verify(sm);
  ASSERT_TRUE(m.ok()) << m.error().message;
  EXPECT_TRUE(is_valid_artifact_id(m->artifact_id()));
  EXPECT_EQ(m->image_size(), image_bytes_.size());
  EXPECT_EQ(m->chunk_sha256_size(), 3);
  EXPECT_EQ(m->image_sha256(), digest_bytes(Sha256::digest(image_bytes_)));
  EXPECT_EQ(m->chunk_sha256(2), digest_bytes(Sha256::digest(std::string_view(image_bytes_).substr(8192))));
  EXPECT_EQ(m->security_counter(), 3u);
}

TEST_F(ArtifactTest, BundleVerifies) {
  auto bundle = make_bundle("a.fota");
  auto verified = verify_bundle(bundle, trust_);
  ASSERT_TRUE(verified.ok()) << verified.error().message;
  EXPECT_EQ(verified->info.image_size, image_bytes_.size());
}

TEST_F(ArtifactTest, TamperedImageIsRefused) {
  auto bundle = make_bundle("a.fota");
  auto info = read_bundle_header(bundle).value();
  flip_byte(bundle, info.image_offset + 5000);
  auto verified = verify_bundle(bundle, trust_);
  ASSERT_FALSE(verified.ok());
  EXPECT_EQ(verified.error().code, Errc::kIntegrity);
  EXPECT_NE(verified.error().message.find("chunk 1"), std::string::npos) << verified.error().message;
}

TEST_F(ArtifactTest, TamperedManifestIsRefused) {
  auto bundle = make_bundle("a.fota");
  flip_byte(bundle, 16 + 10);  // inside the serialized SignedManifest
  auto verified = verify_bundle(bundle, trust_);
  ASSERT_FALSE(verified.ok());
}

TEST_F(ArtifactTest, UntrustedBundleIsRefused) {
  auto bundle = make_bundle("a.fota");
  TrustStore other;
  other.add(Ed25519PrivateKey::generate()->public_key());
  EXPECT_EQ(verify_bundle(bundle, other).error().code, Errc::kUntrustedKey);
}

TEST_F(ArtifactTest, NotABundle) {
  std::ofstream(dir_.path() / "junk") << "hello world, not a bundle";
  EXPECT_EQ(read_bundle_header(dir_.path() / "junk").error().code, Errc::kMalformed);
  EXPECT_EQ(read_bundle_header(dir_.path() / "missing").error().code, Errc::kNotFound);
}

TEST_F(ArtifactTest, RefusesToOverwriteBundle) {
  auto bundle = make_bundle("a.fota");
  auto sm = build_signed_manifest(image_, spec_, key_, 1).value();
  EXPECT_EQ(write_bundle(bundle, sm, image_).error().code, Errc::kAlreadyExists);
}

TEST_F(ArtifactTest, BadSpecIsRefused) {
  auto spec = spec_;
  spec.compatible_hardware.clear();
  EXPECT_EQ(build_signed_manifest(image_, spec, key_, 1).error().code, Errc::kInvalidArgument);
  spec = spec_;
  spec.chunk_size = 10;
  EXPECT_EQ(build_signed_manifest(image_, spec, key_, 1).error().code, Errc::kInvalidArgument);
  EXPECT_EQ(build_signed_manifest(dir_.path() / "nope", spec_, key_, 1).error().code, Errc::kNotFound);
}

TEST_F(ArtifactTest, StoreImportsAndServesChunks) {
  auto bundle = make_bundle("a.fota");
  ArtifactStore store(dir_.path() / "store");
  auto m = store.import_bundle(bundle, trust_);
  ASSERT_TRUE(m.ok()) << m.error().message;
  EXPECT_TRUE(store.contains(m->artifact_id()));
  EXPECT_EQ(store.list(), std::vector<std::string>{m->artifact_id()});
  std::string reassembled;
  std::string chunk;
  for (std::uint32_t i = 0; i < 3; ++i) {
    ASSERT_TRUE(store.read_chunk(m->artifact_id(), i, chunk).ok());
    reassembled += chunk;
  }
  EXPECT_EQ(reassembled, image_bytes_);
  EXPECT_EQ(store.read_chunk(m->artifact_id(), 3, chunk).error().code, Errc::kInvalidArgument);
  EXPECT_EQ(store.read_chunk("0123456789abcdef0123456789abcdef", 0, chunk).error().code, Errc::kNotFound);
  EXPECT_EQ(store.chunk_count(m->artifact_id()).value(), 3u);
  EXPECT_EQ(store.chunk_count("0123456789abcdef0123456789abcdef").error().code, Errc::kNotFound);
  EXPECT_FALSE(store.contains("../../etc"));
  // Importing again is idempotent.
  EXPECT_TRUE(store.import_bundle(bundle, trust_).ok());
}

// Issue 16: the orchestrator asked for manifests while holding its state lock, and each ask read
// the file. A stored artifact never changes, so its manifest is read once.
TEST_F(ArtifactTest, StoreReadsAManifestFromDiskOnce) {
  auto bundle = make_bundle("a.fota");
  const fs::path root = dir_.path() / "store";
  std::string id;
  {
    ArtifactStore importer(root);
    auto m = importer.import_bundle(bundle, trust_);
    ASSERT_TRUE(m.ok()) << m.error().message;
    id = m->artifact_id();
  }
  ArtifactStore store(root);
  auto first = store.signed_manifest(id);
  ASSERT_TRUE(first.ok()) << first.error().message;
  // Once read, the file is no longer consulted: removing it changes nothing for this store.
  fs::remove(root / id / "manifest.pb");
  auto again = store.signed_manifest(id);
  ASSERT_TRUE(again.ok()) << again.error().message;
  EXPECT_EQ(again->SerializeAsString(), first->SerializeAsString());
  ASSERT_TRUE(store.manifest(id).ok());
  EXPECT_EQ(store.manifest(id)->artifact_id(), id);
  EXPECT_EQ(store.image_size(id).value(), store.manifest(id)->image_size());
  // A store that never read it finds it missing.
  EXPECT_EQ(ArtifactStore(root).signed_manifest(id).error().code, Errc::kNotFound);
}

// 40 chunks of 1 KiB: more than fit inline in one 1 KiB hash chunk (32), so a hash table.
class HashTableArtifactTest : public ArtifactTest {
 protected:
  void SetUp() override {
    ArtifactTest::SetUp();
    image_bytes_.resize(40 * 1024 - 100);
    std::mt19937 rng(43);
    for (auto& c : image_bytes_) c = static_cast<char>(rng());
    std::ofstream(image_, std::ios::binary | std::ios::trunc) << image_bytes_;
    spec_.chunk_size = 1024;
  }
  std::string chunk_hash(std::uint32_t i) const {
    return digest_bytes(Sha256::digest(std::string_view(image_bytes_).substr(std::size_t{i} * 1024, 1024)));
  }
};

TEST_F(HashTableArtifactTest, ManifestCarriesTheHashOfEachHashChunk) {
  auto sm = build_signed_manifest(image_, spec_, key_, 1700000000000).value();
  auto m = trust_.verify(sm);
  ASSERT_TRUE(m.ok()) << m.error().message;
  EXPECT_EQ(m->chunk_sha256_size(), 0);
  ASSERT_EQ(m->hash_table_sha256_size(), 2);
  std::string first, second;
  for (std::uint32_t i = 0; i < 32; ++i) first += chunk_hash(i);
  for (std::uint32_t i = 32; i < 40; ++i) second += chunk_hash(i);
  EXPECT_EQ(m->hash_table_sha256(0), digest_bytes(Sha256::digest(first)));
  EXPECT_EQ(m->hash_table_sha256(1), digest_bytes(Sha256::digest(second)));
}

TEST_F(HashTableArtifactTest, TamperedImageIsRefusedThroughTheHashTable) {
  auto bundle = make_bundle("a.fota");
  ASSERT_TRUE(verify_bundle(bundle, trust_).ok());
  auto info = read_bundle_header(bundle).value();
  flip_byte(bundle, info.image_offset + 35 * 1024 + 7);
  auto verified = verify_bundle(bundle, trust_);
  ASSERT_FALSE(verified.ok());
  EXPECT_EQ(verified.error().code, Errc::kIntegrity);
  EXPECT_NE(verified.error().message.find("chunks 32-39 do not match hash-table chunk 1"), std::string::npos)
      << verified.error().message;
}

TEST_F(HashTableArtifactTest, StoreServesImageChunksThenHashChunks) {
  auto bundle = make_bundle("a.fota");
  ArtifactStore store(dir_.path() / "store");
  auto m = store.import_bundle(bundle, trust_);
  ASSERT_TRUE(m.ok()) << m.error().message;
  std::string chunk;
  std::string reassembled;
  for (std::uint32_t i = 0; i < 40; ++i) {
    ASSERT_TRUE(store.read_chunk(m->artifact_id(), i, chunk).ok());
    reassembled += chunk;
  }
  EXPECT_EQ(reassembled, image_bytes_);
  // Index 40 + j is hash chunk j, and it matches the signed manifest.
  for (std::uint32_t j = 0; j < 2; ++j) {
    ASSERT_TRUE(store.read_chunk(m->artifact_id(), 40 + j, chunk).ok());
    EXPECT_EQ(chunk.size(), j == 0 ? 32u * 32 : 8u * 32);
    EXPECT_EQ(digest_bytes(Sha256::digest(chunk)), m->hash_table_sha256(static_cast<int>(j)));
    EXPECT_EQ(chunk.substr(0, 32), chunk_hash(j * 32));
  }
  EXPECT_EQ(store.read_chunk(m->artifact_id(), 42, chunk).error().code, Errc::kInvalidArgument);
  EXPECT_EQ(store.chunk_count(m->artifact_id()).value(), 42u);
  // The responder over the store answers the same index space.
  v1::ChunkRequest request;
  request.set_artifact_id(m->artifact_id());
  auto* range = request.add_ranges();
  range->set_first(39);
  range->set_count(4);
  const auto response = respond_to_chunk_request(request, ArtifactStoreChunkSource(store), {});
  ASSERT_EQ(response.replies.size(), 4u);
  EXPECT_EQ(response.replies[0].data(), image_bytes_.substr(39 * 1024));
  EXPECT_EQ(response.replies[1].data().substr(0, 32), chunk_hash(0));
  EXPECT_EQ(response.replies[2].status(), v1::CHUNK_STATUS_OK);
  EXPECT_EQ(response.replies[3].status(), v1::CHUNK_STATUS_OUT_OF_RANGE);
}

TEST_F(ArtifactTest, StoreRefusesTamperedBundleAndKeepsNothing) {
  auto bundle = make_bundle("a.fota");
  auto info = read_bundle_header(bundle).value();
  flip_byte(bundle, info.image_offset + 1);
  ArtifactStore store(dir_.path() / "store");
  EXPECT_FALSE(store.import_bundle(bundle, trust_).ok());
  EXPECT_TRUE(store.list().empty());
}

}  // namespace
}  // namespace fota::common

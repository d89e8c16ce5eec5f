// SPDX-License-Identifier: Apache-2.0
// Encrypted artifacts: key wrapping, chunk encryption and the encrypted bundle, with the tampering
// an attacker would try (docs/SECURITY.md, "Encrypted artifacts").
#include <sys/stat.h>

#include <fstream>
#include <random>

#include <gtest/gtest.h>

#include "fota/common/artifact.hpp"
#include "fota/common/codec.hpp"
#include "fota/common/encryption.hpp"
#include "fota/testing/broker.hpp"

namespace fota::common {
namespace {
namespace fs = std::filesystem;

X25519PrivateKey new_key() { return X25519PrivateKey::generate().value(); }

TEST(EncryptionTest, EveryRecipientUnwrapsTheSameContentKey) {
  const X25519PrivateKey device = new_key();
  const X25519PrivateKey group = new_key();
  const std::string content_key = generate_content_key().value();
  auto e = make_encryption(content_key, {device.public_key(), group.public_key()});
  ASSERT_TRUE(e.ok()) << e.error().message;
  EXPECT_EQ(e->scheme(), v1::ENCRYPTION_SCHEME_X25519_AES256GCM_V1);
  ASSERT_EQ(e->recipients_size(), 2);
  EXPECT_EQ(e->recipients(0).recipient_key_id(), device.public_key().key_id());
  EXPECT_EQ(e->recipients(0).wrapped_key().size(), kWrappedContentKeyBytes);
  // A fresh ephemeral key per recipient.
  EXPECT_NE(e->recipients(0).ephemeral_public_key(), e->recipients(1).ephemeral_public_key());
  EXPECT_EQ(device.unwrap_content_key(*e).value(), content_key);
  EXPECT_EQ(group.unwrap_content_key(*e).value(), content_key);
}

TEST(EncryptionTest, AKeyNotAmongTheRecipientsGetsNothing) {
  const X25519PrivateKey device = new_key();
  const X25519PrivateKey other = new_key();
  auto e = make_encryption(generate_content_key().value(), {device.public_key()}).value();
  auto key = other.unwrap_content_key(e);
  ASSERT_FALSE(key.ok());
  EXPECT_EQ(key.error().code, Errc::kNotFound);
  EXPECT_NE(key.error().message.find(other.public_key().key_id()), std::string::npos) << key.error().message;
}

TEST(EncryptionTest, AnEntryRelabelledForAnotherKeyDoesNotOpen) {
  // An attacker copies the entry wrapped for `device` and labels it with `other`'s key id.
  const X25519PrivateKey device = new_key();
  const X25519PrivateKey other = new_key();
  auto e = make_encryption(generate_content_key().value(), {device.public_key()}).value();
  e.mutable_recipients(0)->set_recipient_key_id(other.public_key().key_id());
  auto key = other.unwrap_content_key(e);
  ASSERT_FALSE(key.ok());
  EXPECT_EQ(key.error().code, Errc::kIntegrity);
}

TEST(EncryptionTest, TamperedWrappedKeysDoNotOpen) {
  const X25519PrivateKey device = new_key();
  const auto e = make_encryption(generate_content_key().value(), {device.public_key()}).value();
  for (std::size_t i = 0; i < kWrappedContentKeyBytes; i += 7) {
    auto bad = e;
    (*bad.mutable_recipients(0)->mutable_wrapped_key())[i] ^= 0x01;
    auto key = device.unwrap_content_key(bad);
    ASSERT_FALSE(key.ok()) << "byte " << i;
    EXPECT_EQ(key.error().code, Errc::kIntegrity) << key.error().message;
  }
  auto bad = e;
  (*bad.mutable_recipients(0)->mutable_ephemeral_public_key())[3] ^= 0x10;
  auto key = device.unwrap_content_key(bad);
  ASSERT_FALSE(key.ok());
  EXPECT_EQ(key.error().code, Errc::kIntegrity);
  // A low-order ephemeral point (all zero) gives no shared secret.
  bad = e;
  bad.mutable_recipients(0)->set_ephemeral_public_key(std::string(32, '\0'));
  key = device.unwrap_content_key(bad);
  ASSERT_FALSE(key.ok());
  EXPECT_EQ(key.error().code, Errc::kIntegrity);
  bad = e;
  bad.mutable_recipients(0)->set_wrapped_key("short");
  EXPECT_EQ(device.unwrap_content_key(bad).error().code, Errc::kIntegrity);
}

TEST(EncryptionTest, AnUnknownSchemeIsRefusedByName) {
  const X25519PrivateKey device = new_key();
  auto e = make_encryption(generate_content_key().value(), {device.public_key()}).value();
  e.set_scheme(static_cast<v1::EncryptionScheme>(9));
  auto key = device.unwrap_content_key(e);
  ASSERT_FALSE(key.ok());
  EXPECT_EQ(key.error().code, Errc::kInvalidArgument);
  EXPECT_NE(key.error().message.find("scheme 9"), std::string::npos) << key.error().message;
}

TEST(EncryptionTest, RecipientsMustBeGivenAndDistinct) {
  const X25519PrivateKey device = new_key();
  const std::string k = generate_content_key().value();
  EXPECT_EQ(make_encryption(k, {}).error().code, Errc::kInvalidArgument);
  EXPECT_EQ(make_encryption(k, {device.public_key(), device.public_key()}).error().code,
            Errc::kInvalidArgument);
  EXPECT_EQ(wrap_content_key("short", device.public_key()).error().code, Errc::kInvalidArgument);
}

TEST(EncryptionTest, ChunksRoundTripAndTamperingFailsTheTag) {
  const std::string key = generate_content_key().value();
  const std::string plain(4096, 'x');
  const std::string sealed = encrypt_chunk(key, 7, plain).value();
  ASSERT_EQ(sealed.size(), plain.size() + kEncryptedChunkOverhead);
  EXPECT_EQ(sealed.find(std::string(64, 'x')), std::string::npos) << "the plaintext shows through";

  std::string data = sealed;
  ASSERT_TRUE(decrypt_chunk(key, 7, data).ok());
  EXPECT_EQ(data, plain);

  // The nonce is the index: the same plaintext at another index encrypts differently, and a
  // chunk moved to another index does not open.
  EXPECT_NE(encrypt_chunk(key, 8, plain).value(), sealed);
  data = sealed;
  auto moved = decrypt_chunk(key, 8, data);
  ASSERT_FALSE(moved.ok());
  EXPECT_EQ(moved.error().code, Errc::kIntegrity);
  EXPECT_TRUE(data.empty()) << "no unauthenticated plaintext is handed out";

  for (std::size_t at : {std::size_t{0}, plain.size() / 2, plain.size(), sealed.size() - 1}) {
    data = sealed;
    data[at] ^= 0x01;
    auto st = decrypt_chunk(key, 7, data);
    ASSERT_FALSE(st.ok()) << "flipped byte " << at;
    EXPECT_EQ(st.error().code, Errc::kIntegrity);
  }
  data = sealed;
  std::string other_key = generate_content_key().value();
  EXPECT_EQ(decrypt_chunk(other_key, 7, data).error().code, Errc::kIntegrity);
  data = sealed.substr(0, 10);
  EXPECT_EQ(decrypt_chunk(key, 7, data).error().code, Errc::kIntegrity);
  data = sealed.substr(0, sealed.size() - 1);
  EXPECT_EQ(decrypt_chunk(key, 7, data).error().code, Errc::kIntegrity);
  data = sealed;
  EXPECT_EQ(decrypt_chunk("short", 7, data).error().code, Errc::kInvalidArgument);
}

TEST(EncryptionTest, KeyFilesRoundTripAndKeepThePrivateKeyPrivate) {
  testing::TempDir dir;
  const X25519PrivateKey key = new_key();
  ASSERT_TRUE(save_key_pair(key, dir.path() / "dev.key", dir.path() / "dev.pub").ok());
  struct stat st {};
  ASSERT_EQ(::stat((dir.path() / "dev.key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(X25519PrivateKey::load(dir.path() / "dev.key")->public_key().key_id(), key.public_key().key_id());
  EXPECT_EQ(X25519PublicKey::load(dir.path() / "dev.pub")->raw(), key.public_key().raw());
  EXPECT_EQ(save_key_pair(key, dir.path() / "dev.key", dir.path() / "x.pub").error().code,
            Errc::kAlreadyExists);
  // An Ed25519 signing key is not a decryption key, and the other way round.
  auto signing = Ed25519PrivateKey::generate().value();
  ASSERT_TRUE(save_key_pair(signing, dir.path() / "sign.key", dir.path() / "sign.pub").ok());
  EXPECT_EQ(X25519PublicKey::load(dir.path() / "sign.pub").error().code, Errc::kInvalidArgument);
  EXPECT_EQ(X25519PrivateKey::load(dir.path() / "sign.key").error().code, Errc::kInvalidArgument);
  EXPECT_EQ(Ed25519PublicKey::load(dir.path() / "dev.pub").error().code, Errc::kInvalidArgument);
}

TEST(EncryptionTest, ChunkSpaceAddsTheTagToImageChunksOnly) {
  const ChunkSpace space(10 * 1024 + 5, 1024, /*hash_table=*/true, kEncryptedChunkOverhead);
  EXPECT_EQ(space.image_chunks(), 11u);
  EXPECT_EQ(space.length(0), 1024u + 16);
  EXPECT_EQ(space.plain_length(0), 1024u);
  EXPECT_EQ(space.offset(3), 3u * (1024 + 16));
  EXPECT_EQ(space.length(10), 5u + 16);
  EXPECT_EQ(space.plain_length(10), 5u);
  EXPECT_EQ(space.stored_image_size(), 10u * 1024 + 5 + 11 * 16);
  // Hash chunks (the hash table is not encrypted) keep their size and offset.
  EXPECT_EQ(space.length(11), 11u * kSha256Bytes);
  EXPECT_EQ(space.offset(11), 0u);
  EXPECT_EQ(space.plain_length(11), 0u);
}

class EncryptedArtifactTest : public ::testing::Test {
 protected:
  void SetUp() override {
    image_ = dir_.path() / "image.bin";
    std::mt19937 rng(7);
    // 40 KiB + a tail in 1 KiB chunks: more than one hash chunk holds, so a hash table.
    image_bytes_.resize(40 * 1024 + 321);
    for (auto& c : image_bytes_) c = static_cast<char>(rng());
    std::ofstream(image_, std::ios::binary) << image_bytes_;
    trust_.add(release_.public_key());
    spec_.version = "2.0.0";
    spec_.compatible_hardware = {"gw-v2"};
    spec_.chunk_size = 1024;
  }

  fs::path make_bundle(const std::string& name, v1::SignedManifest* out = nullptr) {
    const fs::path staged = dir_.path() / (name + ".ct");
    auto sm =
        build_encrypted_manifest(image_, spec_, {device_.public_key()}, release_, 1700000000000, staged);
    EXPECT_TRUE(sm.ok()) << sm.error().message;
    const fs::path bundle = dir_.path() / name;
    EXPECT_TRUE(write_bundle(bundle, *sm, staged).ok());
    if (out != nullptr) *out = *sm;
    return bundle;
  }

  testing::TempDir dir_;
  fs::path image_;
  std::string image_bytes_;
  Ed25519PrivateKey release_ = Ed25519PrivateKey::generate().value();
  X25519PrivateKey device_ = new_key();
  TrustStore trust_;
  ArtifactSpec spec_;
};

TEST_F(EncryptedArtifactTest, TheBundleHoldsCiphertextTheServerCanVerifyButNotRead) {
  v1::SignedManifest sm;
  const fs::path bundle = make_bundle("enc.fota", &sm);
  auto verified = verify_bundle(bundle, trust_);
  ASSERT_TRUE(verified.ok()) << verified.error().message;
  const v1::Manifest& m = verified->manifest;
  ASSERT_TRUE(m.has_encryption());
  EXPECT_EQ(m.image_size(), image_bytes_.size());
  EXPECT_EQ(m.image_sha256(), digest_bytes(Sha256::digest(image_bytes_)));
  EXPECT_GT(m.hash_table_sha256_size(), 0);
  const ChunkSpace space = ChunkSpace::of(m);
  EXPECT_EQ(verified->info.image_size, image_bytes_.size() + std::uint64_t{space.image_chunks()} * 16);

  const std::string stored = read_file(bundle).value();
  EXPECT_EQ(stored.find(image_bytes_.substr(5000, 48)), std::string::npos) << "plaintext in the bundle";

  // Served from the store as ciphertext; a recipient decrypts each chunk to the image's bytes.
  ArtifactStore store(dir_.path() / "store");
  ASSERT_TRUE(store.import_bundle(bundle, trust_).ok());
  const std::string content_key = device_.unwrap_content_key(m.encryption()).value();
  std::string image;
  for (std::uint32_t i = 0; i < space.image_chunks(); ++i) {
    std::string chunk;
    ASSERT_TRUE(store.read_chunk(m.artifact_id(), i, chunk).ok());
    ASSERT_EQ(chunk.size(), space.length(i));
    ASSERT_TRUE(decrypt_chunk(content_key, i, chunk).ok()) << "chunk " << i;
    image += chunk;
  }
  EXPECT_EQ(image, image_bytes_);
  // The hash chunks are served in the clear, as for any artifact.
  std::string hash_chunk;
  ASSERT_TRUE(store.read_chunk(m.artifact_id(), space.image_chunks(), hash_chunk).ok());
  EXPECT_EQ(digest_bytes(Sha256::digest(hash_chunk)), m.hash_table_sha256(0));
}

TEST_F(EncryptedArtifactTest, AFlippedCiphertextByteIsRefusedAtImport) {
  const fs::path bundle = make_bundle("enc.fota");
  const auto info = read_bundle_header(bundle).value();
  std::fstream f(bundle, std::ios::in | std::ios::out | std::ios::binary);
  f.seekp(static_cast<std::streamoff>(info.image_offset + 3000));
  f.put('\x5a');
  f.close();
  auto verified = verify_bundle(bundle, trust_);
  ASSERT_FALSE(verified.ok());
  EXPECT_EQ(verified.error().code, Errc::kIntegrity) << verified.error().message;
}

TEST_F(EncryptedArtifactTest, AnUnknownSchemeIsRefusedAtImport) {
  v1::SignedManifest sm;
  const fs::path bundle = make_bundle("enc.fota", &sm);
  v1::Manifest m;
  ASSERT_TRUE(m.ParseFromString(sm.manifest()));
  m.mutable_encryption()->set_scheme(static_cast<v1::EncryptionScheme>(5));
  auto resigned = sign_manifest(m, release_).value();
  const fs::path staged = dir_.path() / "again.ct";
  const auto info = read_bundle_header(bundle).value();
  {
    std::ifstream in(bundle, std::ios::binary);
    in.seekg(static_cast<std::streamoff>(info.image_offset));
    std::ofstream(staged, std::ios::binary) << in.rdbuf();
  }
  ASSERT_TRUE(write_bundle(dir_.path() / "unknown.fota", resigned, staged).ok());
  auto verified = verify_bundle(dir_.path() / "unknown.fota", trust_);
  ASSERT_FALSE(verified.ok());
  EXPECT_EQ(verified.error().code, Errc::kMalformed);
  EXPECT_NE(verified.error().message.find("scheme 5"), std::string::npos) << verified.error().message;
}

TEST_F(EncryptedArtifactTest, StructureChecksRefuseMalformedEncryption) {
  v1::SignedManifest sm;
  make_bundle("enc.fota", &sm);
  v1::Manifest m;
  ASSERT_TRUE(m.ParseFromString(sm.manifest()));
  ASSERT_TRUE(check_manifest_structure(m).ok());
  auto bad = m;
  bad.mutable_encryption()->clear_recipients();
  EXPECT_EQ(check_manifest_structure(bad).error().code, Errc::kMalformed);
  bad = m;
  bad.mutable_encryption()->set_scheme(v1::ENCRYPTION_SCHEME_UNSPECIFIED);
  EXPECT_EQ(check_manifest_structure(bad).error().code, Errc::kMalformed);
  bad = m;
  bad.mutable_encryption()->mutable_recipients(0)->set_wrapped_key("x");
  EXPECT_EQ(check_manifest_structure(bad).error().code, Errc::kMalformed);
}

TEST_F(EncryptedArtifactTest, NoStagedCiphertextIsOverwritten) {
  const fs::path staged = dir_.path() / "taken.ct";
  std::ofstream(staged) << "keep";
  auto sm = build_encrypted_manifest(image_, spec_, {device_.public_key()}, release_, 1, staged);
  ASSERT_FALSE(sm.ok());
  EXPECT_EQ(sm.error().code, Errc::kAlreadyExists);
  EXPECT_EQ(read_file(staged).value(), "keep");
  EXPECT_EQ(build_encrypted_manifest(image_, spec_, {}, release_, 1, dir_.path() / "n.ct").error().code,
            Errc::kInvalidArgument);
}

}  // namespace
}  // namespace fota::common

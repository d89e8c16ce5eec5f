// SPDX-License-Identifier: Apache-2.0
#include <sys/stat.h>

#include <gtest/gtest.h>

#include "fota/common/codec.hpp"
#include "fota/common/crypto.hpp"
#include "fota/testing/broker.hpp"

namespace fota::common {
namespace {

TEST(Sha256, KnownVectorAndStreaming) {
  EXPECT_EQ(to_hex(digest_bytes(Sha256::digest("abc"))),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  Sha256 h;
  h.update("a");
  h.update("bc");
  EXPECT_EQ(h.finish(), Sha256::digest("abc"));
  EXPECT_EQ(h.finish(), Sha256::digest(""));  // finish resets
}

TEST(Hex, RoundTripAndErrors) {
  EXPECT_EQ(*from_hex(to_hex("\x01\xfe")), "\x01\xfe");
  EXPECT_FALSE(from_hex("abc").ok());
  EXPECT_FALSE(from_hex("zz").ok());
}

class SignatureTest : public ::testing::Test {
 protected:
  Ed25519PrivateKey key = Ed25519PrivateKey::generate().value();
  Ed25519PrivateKey other = Ed25519PrivateKey::generate().value();

  v1::Manifest manifest() const {
    v1::Manifest m;
    m.set_artifact_id("0123456789abcdef0123456789abcdef");
    m.set_version("2.0.0");
    m.add_compatible_hardware("hw");
    m.set_payload_type(v1::PAYLOAD_TYPE_AB_IMAGE);
    m.set_image_size(1024);
    m.set_image_sha256(std::string(32, 'h'));
    m.set_chunk_size(1024);
    m.add_chunk_sha256(std::string(32, 'c'));
    return m;
  }
};

TEST_F(SignatureTest, ValidSignaturePasses) {
  TrustStore trust;
  trust.add(key.public_key());
  auto sm = sign_manifest(manifest(), key).value();
  EXPECT_EQ(sm.signature().size(), 64u);
  auto verified = trust.verify(sm);
  ASSERT_TRUE(verified.ok()) << verified.error().message;
  EXPECT_EQ(verified->version(), "2.0.0");
}

TEST_F(SignatureTest, EveryFlippedBitInManifestFails) {
  TrustStore trust;
  trust.add(key.public_key());
  const auto sm = sign_manifest(manifest(), key).value();
  for (std::size_t byte = 0; byte < sm.manifest().size(); ++byte) {
    auto tampered = sm;
    (*tampered.mutable_manifest())[byte] ^= 0x01;
    auto result = trust.verify(tampered);
    ASSERT_FALSE(result.ok()) << "flip at byte " << byte;
    EXPECT_EQ(result.error().code, Errc::kBadSignature);
  }
}

TEST_F(SignatureTest, FlippedBitInSignatureFails) {
  TrustStore trust;
  trust.add(key.public_key());
  const auto sm = sign_manifest(manifest(), key).value();
  for (std::size_t byte : {0u, 31u, 63u}) {
    auto tampered = sm;
    (*tampered.mutable_signature())[byte] ^= 0x80;
    EXPECT_EQ(trust.verify(tampered).error().code, Errc::kBadSignature);
  }
  auto truncated = sm;
  truncated.mutable_signature()->pop_back();
  EXPECT_EQ(trust.verify(truncated).error().code, Errc::kBadSignature);
}

TEST_F(SignatureTest, WrongKeyFails) {
  TrustStore trust;
  trust.add(other.public_key());
  auto sm = sign_manifest(manifest(), key).value();
  EXPECT_EQ(trust.verify(sm).error().code, Errc::kUntrustedKey);
  // Claiming the trusted key's id does not help a signature made with another key.
  sm.set_key_id(other.public_key().key_id());
  EXPECT_EQ(trust.verify(sm).error().code, Errc::kBadSignature);
}

TEST_F(SignatureTest, KeysSurvivePemAndFilesAreProtected) {
  testing::TempDir dir;
  ASSERT_TRUE(save_key_pair(key, dir.path() / "k.pem", dir.path() / "k.pub").ok());
  struct stat st {};
  ASSERT_EQ(::stat((dir.path() / "k.pem").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto loaded = Ed25519PrivateKey::load(dir.path() / "k.pem");
  ASSERT_TRUE(loaded.ok());
  EXPECT_EQ(loaded->public_key().raw(), key.public_key().raw());
  auto pub = Ed25519PublicKey::load(dir.path() / "k.pub");
  ASSERT_TRUE(pub.ok());
  EXPECT_EQ(pub->key_id(), key.public_key().key_id());
  auto again = save_key_pair(other, dir.path() / "k.pem", dir.path() / "k2.pub");
  EXPECT_EQ(again.error().code, Errc::kAlreadyExists);
  EXPECT_EQ(Ed25519PublicKey::load(dir.path() / "missing.pub").error().code, Errc::kNotFound);
  EXPECT_FALSE(Ed25519PublicKey::from_pem("not a key").ok());
  EXPECT_FALSE(Ed25519PrivateKey::from_pem(pub->to_pem()).ok());
}

// ---- Signed commands (sign_command / verify_command) -------------------------------------------
class CommandSigningTest : public ::testing::Test {
 protected:
  CommandSigningTest() { keys.add(key.public_key()); }

  static v1::Command rollback() {
    v1::Command c;
    c.set_command_id("c-1");
    c.set_deployment_id("r-1");
    c.set_device_id("dev-1");
    c.set_issued_at_ms(1000);
    c.set_expires_at_ms(2000);
    c.mutable_rollback();
    return c;
  }

  Ed25519PrivateKey key = Ed25519PrivateKey::generate().value();
  TrustStore keys;
};

TEST_F(CommandSigningTest, SignedCommandVerifiesAndStaysDecodableByThePlainDecoder) {
  auto payload = sign_command(rollback(), key);
  ASSERT_TRUE(payload.ok());
  auto verified = verify_command(*payload, keys);
  ASSERT_TRUE(verified.ok()) << verified.error().to_string();
  EXPECT_EQ(verified->command_id(), "c-1");
  EXPECT_EQ(verified->signature().key_id(), key.public_key().key_id());
  // Whoever only routes commands (the broker plugin) reads them with the ordinary decoder.
  auto plain = decode<v1::Command>(*payload, kMaxCommandBytes);
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(plain->device_id(), "dev-1");
  EXPECT_TRUE(plain->has_rollback());
  EXPECT_EQ(plain->signature().signature().size(), kEd25519SignatureBytes);
}

// A signature the command already carries is dropped, not signed over.
TEST_F(CommandSigningTest, SigningAgainReplacesTheSignature) {
  auto once = sign_command(rollback(), key);
  ASSERT_TRUE(once.ok());
  auto decoded = decode<v1::Command>(*once, kMaxCommandBytes);
  ASSERT_TRUE(decoded.ok());
  auto twice = sign_command(*decoded, key);
  ASSERT_TRUE(twice.ok());
  EXPECT_EQ(*twice, *once);  // Ed25519 is deterministic
}

// Fields a newer orchestrator adds (unknown here) are inside the signed bytes and verify, because
// the device checks the bytes it received, not a re-serialization.
TEST_F(CommandSigningTest, FieldsUnknownToTheDeviceAreCoveredAndVerify) {
  v1::Command body = rollback();
  std::string bytes = body.SerializeAsString() + std::string("\xa8\x06\x07", 3);  // field 101 = 7
  auto signature = key.sign(std::string(kCommandSignatureContext) + bytes);
  ASSERT_TRUE(signature.ok());
  v1::Command trailer;
  trailer.mutable_signature()->set_key_id(key.public_key().key_id());
  trailer.mutable_signature()->set_signature(*signature);
  EXPECT_TRUE(verify_command(bytes + trailer.SerializeAsString(), keys).ok());
  bytes[bytes.size() - 1] = 8;  // the unknown field's value changed
  auto refused = verify_command(bytes + trailer.SerializeAsString(), keys);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, Errc::kBadSignature);
}

TEST_F(CommandSigningTest, RefusalsSayWhatWasWrong) {
  auto payload = sign_command(rollback(), key);
  ASSERT_TRUE(payload.ok());
  v1::Command extra;
  extra.set_deployment_id("r-2");  // a field appended after the signature overrides a signed one
  TrustStore nobody;
  const struct {
    const char* name;
    std::string payload;
    const TrustStore* keys;
    Errc code;
  } cases[] = {
      {"unsigned", rollback().SerializeAsString(), &keys, Errc::kBadSignature},
      {"empty", "", &keys, Errc::kBadSignature},
      {"garbage", "\xff\xff\xff", &keys, Errc::kMalformed},
      {"too large", std::string(kMaxCommandBytes + 1, '\0'), &keys, Errc::kTooLarge},
      {"untrusted key", *payload, &nobody, Errc::kUntrustedKey},
      {"a field after the signature", *payload + extra.SerializeAsString(), &keys, Errc::kBadSignature},
  };
  for (const auto& c : cases) {
    auto verified = verify_command(c.payload, *c.keys);
    ASSERT_FALSE(verified.ok()) << c.name;
    EXPECT_EQ(verified.error().code, c.code) << c.name << ": " << verified.error().to_string();
  }
}

}  // namespace
}  // namespace fota::common

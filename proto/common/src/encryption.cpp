// SPDX-License-Identifier: Apache-2.0
#include "fota/common/encryption.hpp"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

#include <array>

#include "fota/common/crypto.hpp"
#include "openssl_util.hpp"

namespace fota::common {

using detail::crypto_error;
using detail::EvpPkeyCtxPtr;
using detail::EvpPkeyPtr;

namespace {

using CipherCtxPtr = std::unique_ptr<EVP_CIPHER_CTX, detail::Deleter<EVP_CIPHER_CTX_free>>;
using KdfPtr = std::unique_ptr<EVP_KDF, detail::Deleter<EVP_KDF_free>>;
using KdfCtxPtr = std::unique_ptr<EVP_KDF_CTX, detail::Deleter<EVP_KDF_CTX_free>>;

constexpr std::size_t kGcmNonceBytes = 12;
constexpr std::size_t kGcmTagBytes = 16;
constexpr std::string_view kChunkAad{"fota-chunk-v1\0", 14};
constexpr std::string_view kWrapInfo{"fota-content-key-v1"};

const unsigned char* bytes(std::string_view s) { return reinterpret_cast<const unsigned char*>(s.data()); }
unsigned char* bytes(std::string& s) { return reinterpret_cast<unsigned char*>(s.data()); }

std::array<unsigned char, kGcmNonceBytes> chunk_nonce(std::uint32_t index) {
  std::array<unsigned char, kGcmNonceBytes> nonce{};
  for (int i = 0; i < 4; ++i) nonce[8 + i] = static_cast<unsigned char>(index >> (24 - 8 * i));
  return nonce;
}

Status check_key(std::string_view key) {
  if (key.size() != kContentKeyBytes) {
    return Error(Errc::kInvalidArgument, "a content key has 32 bytes, not " + std::to_string(key.size()));
  }
  return ok_status();
}

// AES-256-GCM: plaintext in, ciphertext || tag out.
Result<std::string> gcm_seal(std::string_view key, const unsigned char* nonce, std::string_view aad,
                             std::string_view plain) {
  CipherCtxPtr ctx(EVP_CIPHER_CTX_new());
  std::string out(plain.size() + kGcmTagBytes, '\0');
  int len = 0;
  int final_len = 0;
  if (!ctx || EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, bytes(key), nonce) != 1 ||
      (!aad.empty() &&
       EVP_EncryptUpdate(ctx.get(), nullptr, &len, bytes(aad), static_cast<int>(aad.size())) != 1) ||
      EVP_EncryptUpdate(ctx.get(), bytes(out), &len, bytes(plain), static_cast<int>(plain.size())) != 1 ||
      EVP_EncryptFinal_ex(ctx.get(), bytes(out) + len, &final_len) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, static_cast<int>(kGcmTagBytes),
                          bytes(out) + plain.size()) != 1) {
    return crypto_error("AES-256-GCM encryption");
  }
  return out;
}

// AES-256-GCM in place: ciphertext || tag in, plaintext out; kIntegrity when the tag fails.
Status gcm_open(std::string_view key, const unsigned char* nonce, std::string_view aad, std::string& data,
                const std::string& what) {
  if (data.size() < kGcmTagBytes) {
    return Error(Errc::kIntegrity, what + " has " + std::to_string(data.size()) +
                                       " bytes, fewer than its 16-byte authentication tag");
  }
  const std::size_t text = data.size() - kGcmTagBytes;
  CipherCtxPtr ctx(EVP_CIPHER_CTX_new());
  int len = 0;
  if (!ctx || EVP_DecryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, bytes(key), nonce) != 1 ||
      (!aad.empty() &&
       EVP_DecryptUpdate(ctx.get(), nullptr, &len, bytes(aad), static_cast<int>(aad.size())) != 1) ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, static_cast<int>(kGcmTagBytes),
                          bytes(data) + text) != 1 ||
      EVP_DecryptUpdate(ctx.get(), bytes(data), &len, bytes(data), static_cast<int>(text)) != 1) {
    return crypto_error("AES-256-GCM decryption of " + what);
  }
  int final_len = 0;
  if (EVP_DecryptFinal_ex(ctx.get(), bytes(data) + len, &final_len) != 1) {
    detail::openssl_error();
    cleanse(data);
    data.clear();
    return Error(Errc::kIntegrity,
                 what + " fails its AES-GCM authentication tag (altered, or not for this key)");
  }
  data.resize(text);
  return ok_status();
}

EvpPkeyPtr generate_x25519() {
  EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new_id(EVP_PKEY_X25519, nullptr));
  EVP_PKEY* raw = nullptr;
  if (!ctx || EVP_PKEY_keygen_init(ctx.get()) != 1 || EVP_PKEY_keygen(ctx.get(), &raw) != 1) return nullptr;
  return EvpPkeyPtr(raw);
}

std::string raw_public(EVP_PKEY* key) { return detail::raw_public_key(key, kX25519KeyBytes); }

EvpPkeyPtr x25519_public(std::string_view raw) {
  return EvpPkeyPtr(EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, nullptr, bytes(raw), raw.size()));
}

// HKDF-SHA256(X25519(mine, peer), salt = ephemeral || recipient, info) -> the key-wrapping key.
Result<std::string> wrapping_key(EVP_PKEY* mine, std::string_view peer_raw, std::string_view ephemeral_raw,
                                 std::string_view recipient_raw) {
  auto peer = x25519_public(peer_raw);
  if (!peer) return crypto_error("loading an X25519 public key");
  EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new(mine, nullptr));
  std::string shared(kX25519KeyBytes, '\0');
  std::size_t shared_len = shared.size();
  if (!ctx || EVP_PKEY_derive_init(ctx.get()) != 1 || EVP_PKEY_derive_set_peer(ctx.get(), peer.get()) != 1 ||
      EVP_PKEY_derive(ctx.get(), bytes(shared), &shared_len) != 1) {
    // X25519 with a low-order point gives an all-zero secret, which OpenSSL refuses here.
    return crypto_error("X25519 key agreement");
  }
  std::string salt = std::string(ephemeral_raw) + std::string(recipient_raw);
  std::string info(kWrapInfo);
  KdfPtr kdf(EVP_KDF_fetch(nullptr, "HKDF", nullptr));
  KdfCtxPtr kctx(kdf ? EVP_KDF_CTX_new(kdf.get()) : nullptr);
  char digest[] = "SHA256";
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, digest, 0),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, shared.data(), shared_len),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, salt.data(), salt.size()),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, info.data(), info.size()),
      OSSL_PARAM_construct_end(),
  };
  std::string kek(kContentKeyBytes, '\0');
  const bool ok = kctx && EVP_KDF_derive(kctx.get(), bytes(kek), kek.size(), params) == 1;
  cleanse(shared);
  if (!ok) return crypto_error("HKDF-SHA256");
  return kek;
}

}  // namespace

void cleanse(std::string& secret) noexcept {
  if (!secret.empty()) OPENSSL_cleanse(secret.data(), secret.size());
}

Result<std::string> generate_content_key() {
  std::string key(kContentKeyBytes, '\0');
  if (RAND_priv_bytes(bytes(key), static_cast<int>(key.size())) != 1) {
    return crypto_error("generating a content key");
  }
  return key;
}

// ---------------------------------------------------------------------------------- X25519 keys

Result<X25519PublicKey> X25519PublicKey::from_raw(std::string_view raw) {
  if (raw.size() != kX25519KeyBytes) {
    return Error(Errc::kInvalidArgument,
                 "an X25519 public key has 32 bytes, not " + std::to_string(raw.size()));
  }
  return X25519PublicKey(std::string(raw));
}

Result<X25519PublicKey> X25519PublicKey::from_pem(std::string_view pem) {
  auto key = detail::read_pem_key(pem, detail::PemKey::kPublic, EVP_PKEY_X25519, "X25519",
                                  "fotactl keys generate --x25519");
  if (!key) return key.error();
  auto raw = raw_public(key->get());
  if (raw.size() != kX25519KeyBytes) return crypto_error("reading the X25519 public key");
  return X25519PublicKey(std::move(raw));
}

Result<X25519PublicKey> X25519PublicKey::load(const std::filesystem::path& path) {
  auto pem = read_file(path, 64 * 1024);
  if (!pem) return pem.error().with_context("loading recipient key");
  auto key = from_pem(*pem);
  if (!key) return key.error().with_context(path.string());
  return key;
}

std::string X25519PublicKey::key_id() const {
  auto digest = Sha256::digest(raw_);
  return to_hex(std::string_view(reinterpret_cast<const char*>(digest.data()), 8));
}

std::string X25519PublicKey::to_pem() const { return detail::public_key_pem(x25519_public(raw_).get()); }

struct X25519PrivateKey::Impl {
  EvpPkeyPtr key;
};

X25519PrivateKey::X25519PrivateKey(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
X25519PrivateKey::~X25519PrivateKey() = default;
X25519PrivateKey::X25519PrivateKey(X25519PrivateKey&&) noexcept = default;
X25519PrivateKey& X25519PrivateKey::operator=(X25519PrivateKey&&) noexcept = default;

Result<X25519PrivateKey> X25519PrivateKey::generate() {
  auto key = generate_x25519();
  if (!key) return crypto_error("generating an X25519 key");
  auto impl = std::make_unique<Impl>();
  impl->key = std::move(key);
  return X25519PrivateKey(std::move(impl));
}

Result<X25519PrivateKey> X25519PrivateKey::from_pem(std::string_view pem) {
  auto key = detail::read_pem_key(pem, detail::PemKey::kPrivate, EVP_PKEY_X25519, "X25519",
                                  "fotactl keys generate --x25519");
  if (!key) return key.error();
  auto impl = std::make_unique<Impl>();
  impl->key = std::move(*key);
  return X25519PrivateKey(std::move(impl));
}

Result<X25519PrivateKey> X25519PrivateKey::load(const std::filesystem::path& path) {
  auto pem = read_file(path, 64 * 1024);
  if (!pem) return pem.error().with_context("loading decryption key");
  auto key = from_pem(*pem);
  if (!key) return key.error().with_context(path.string());
  return key;
}

std::string X25519PrivateKey::to_pem() const { return detail::private_key_pem(impl_->key.get()); }

X25519PublicKey X25519PrivateKey::public_key() const {
  // 32 bytes by construction: from_raw cannot fail here.
  return X25519PublicKey::from_raw(raw_public(impl_->key.get())).value();
}

Result<std::string> X25519PrivateKey::unwrap_content_key(const v1::ArtifactEncryption& encryption) const {
  if (encryption.scheme() != v1::ENCRYPTION_SCHEME_X25519_AES256GCM_V1) {
    return Error(Errc::kInvalidArgument, "encryption scheme " + std::to_string(encryption.scheme()) +
                                             " is not known to this build (it knows "
                                             "ENCRYPTION_SCHEME_X25519_AES256GCM_V1)");
  }
  const X25519PublicKey mine = public_key();
  const std::string id = mine.key_id();
  for (const auto& r : encryption.recipients()) {
    if (r.recipient_key_id() != id) continue;
    if (r.ephemeral_public_key().size() != kX25519KeyBytes ||
        r.wrapped_key().size() != kWrappedContentKeyBytes) {
      return Error(Errc::kIntegrity, "the content key wrapped for key " + id + " is malformed");
    }
    auto kek = wrapping_key(impl_->key.get(), r.ephemeral_public_key(), r.ephemeral_public_key(), mine.raw());
    if (!kek) {
      return Error(Errc::kIntegrity,
                   "the content key wrapped for key " + id + " does not open: " + kek.error().message);
    }
    const std::array<unsigned char, kGcmNonceBytes> zero{};
    std::string key = r.wrapped_key();
    auto opened = gcm_open(*kek, zero.data(), id, key, "the content key wrapped for key " + id);
    cleanse(*kek);
    if (!opened) return opened.error();
    return key;
  }
  return Error(Errc::kNotFound, "the artifact's content key is not wrapped for this device's key " + id +
                                    "; re-create the artifact with --encrypt-for including its public key");
}

Status save_key_pair(const X25519PrivateKey& key, const std::filesystem::path& private_path,
                     const std::filesystem::path& public_path) {
  std::error_code ec;
  for (const auto& p : {private_path, public_path}) {
    if (std::filesystem::exists(p, ec)) {
      return Error(Errc::kAlreadyExists, p.string() + " already exists; refusing to overwrite a key");
    }
  }
  if (auto st = write_new_file(private_path, key.to_pem(), 0600); !st) return st;
  return write_new_file(public_path, key.public_key().to_pem(), 0644);
}

// ---------------------------------------------------------------------------------- wrapping

Result<v1::WrappedContentKey> wrap_content_key(std::string_view content_key,
                                               const X25519PublicKey& recipient) {
  if (auto st = check_key(content_key); !st) return st.error();
  auto eph = generate_x25519();
  if (!eph) return crypto_error("generating an ephemeral X25519 key");
  const std::string ephemeral_raw = raw_public(eph.get());
  // The same derivation as unwrap_content_key, from the other side of the agreement.
  auto kek = wrapping_key(eph.get(), recipient.raw(), ephemeral_raw, recipient.raw());
  if (!kek) return kek.error();
  const std::array<unsigned char, kGcmNonceBytes> zero{};  // one wrap per fresh ephemeral key
  auto wrapped = gcm_seal(*kek, zero.data(), recipient.key_id(), content_key);
  cleanse(*kek);
  if (!wrapped) return wrapped.error();
  v1::WrappedContentKey out;
  out.set_recipient_key_id(recipient.key_id());
  out.set_ephemeral_public_key(ephemeral_raw);
  out.set_wrapped_key(std::move(wrapped).value());
  return out;
}

Result<v1::ArtifactEncryption> make_encryption(std::string_view content_key,
                                               const std::vector<X25519PublicKey>& recipients) {
  if (recipients.empty()) return Error(Errc::kInvalidArgument, "no recipient key to encrypt for");
  v1::ArtifactEncryption e;
  e.set_scheme(v1::ENCRYPTION_SCHEME_X25519_AES256GCM_V1);
  for (const auto& r : recipients) {
    for (const auto& have : e.recipients()) {
      if (have.recipient_key_id() == r.key_id()) {
        return Error(Errc::kInvalidArgument, "recipient key " + r.key_id() + " is given twice");
      }
    }
    auto wrapped = wrap_content_key(content_key, r);
    if (!wrapped) return wrapped.error();
    *e.add_recipients() = std::move(wrapped).value();
  }
  return e;
}

// ---------------------------------------------------------------------------------- chunks

Result<std::string> encrypt_chunk(std::string_view content_key, std::uint32_t index, std::string_view plain) {
  if (auto st = check_key(content_key); !st) return st.error();
  const auto nonce = chunk_nonce(index);
  return gcm_seal(content_key, nonce.data(), kChunkAad, plain);
}

Status decrypt_chunk(std::string_view content_key, std::uint32_t index, std::string& data) {
  if (auto st = check_key(content_key); !st) return st;
  const auto nonce = chunk_nonce(index);
  return gcm_open(content_key, nonce.data(), kChunkAad, data, "chunk " + std::to_string(index));
}

}  // namespace fota::common

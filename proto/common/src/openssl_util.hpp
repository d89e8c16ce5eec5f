// SPDX-License-Identifier: Apache-2.0
// RAII holders and error text for OpenSSL objects; private to fota_crypto.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "fota/common/result.hpp"

namespace fota::common::detail {

template <auto Fn>
struct Deleter {
  template <typename T>
  void operator()(T* p) const noexcept {
    Fn(p);
  }
};

using EvpPkeyPtr = std::unique_ptr<EVP_PKEY, Deleter<EVP_PKEY_free>>;
using EvpPkeyCtxPtr = std::unique_ptr<EVP_PKEY_CTX, Deleter<EVP_PKEY_CTX_free>>;
using EvpMdCtxPtr = std::unique_ptr<EVP_MD_CTX, Deleter<EVP_MD_CTX_free>>;
using BioPtr = std::unique_ptr<BIO, Deleter<BIO_free_all>>;
using X509Ptr = std::unique_ptr<X509, Deleter<X509_free>>;
using X509NamePtr = std::unique_ptr<X509_NAME, Deleter<X509_NAME_free>>;

// The most recent OpenSSL error as text, and clears the queue.
inline std::string openssl_error() {
  unsigned long code = ERR_get_error();
  ERR_clear_error();
  if (code == 0) return "unknown OpenSSL error";
  char buf[256];
  ERR_error_string_n(code, buf, sizeof(buf));
  return buf;
}

inline Error crypto_error(const std::string& what) {
  return Error(Errc::kCrypto, what + ": " + openssl_error());
}

inline BioPtr memory_bio(std::string_view data) {
  return BioPtr(BIO_new_mem_buf(data.data(), static_cast<int>(data.size())));
}

inline std::string bio_to_string(BIO* bio) {
  char* data = nullptr;
  long len = BIO_get_mem_data(bio, &data);
  return std::string(data, static_cast<std::size_t>(len));
}

// The key in PEM text of one type (EVP_PKEY_ED25519, EVP_PKEY_X25519, ...): a public key
// ("BEGIN PUBLIC KEY") or a private one ("BEGIN PRIVATE KEY"). The errors name what was expected
// and `make_hint`, the command that makes the right key.
enum class PemKey { kPublic, kPrivate };
inline Result<EvpPkeyPtr> read_pem_key(std::string_view pem, PemKey which, int type,
                                       std::string_view type_name, std::string_view make_hint) {
  auto bio = memory_bio(pem);
  const bool is_public = which == PemKey::kPublic;
  EvpPkeyPtr key(is_public ? PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr)
                           : PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
  const std::string kind = is_public ? "public" : "private";
  if (!key) {
    openssl_error();
    return Error(Errc::kInvalidArgument, "not a PEM " + kind + " key (expected \"-----BEGIN " +
                                             (is_public ? "PUBLIC" : "PRIVATE") + " KEY-----\")");
  }
  if (EVP_PKEY_get_id(key.get()) != type) {
    return Error(Errc::kInvalidArgument, "the " + kind + " key is not an " + std::string(type_name) +
                                             " key (make one with `" + std::string(make_hint) + "`)");
  }
  return key;
}

// The raw public key of `key`, `size` bytes (32 for Ed25519 and X25519).
inline std::string raw_public_key(EVP_PKEY* key, std::size_t size) {
  std::string raw(size, '\0');
  std::size_t len = raw.size();
  if (EVP_PKEY_get_raw_public_key(key, reinterpret_cast<unsigned char*>(raw.data()), &len) != 1) return {};
  raw.resize(len);
  return raw;
}

inline std::string public_key_pem(EVP_PKEY* key) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_PUBKEY(bio.get(), key);
  return bio_to_string(bio.get());
}

inline std::string private_key_pem(EVP_PKEY* key) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr);
  return bio_to_string(bio.get());
}

}  // namespace fota::common::detail

// SPDX-License-Identifier: Apache-2.0
#include "fota/common/crypto.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>

#include <openssl/pem.h>

#include "fota/common/codec.hpp"
#include "openssl_util.hpp"

namespace fota::common {

using detail::crypto_error;
using detail::EvpMdCtxPtr;
using detail::EvpPkeyCtxPtr;
using detail::EvpPkeyPtr;

// ---------------------------------------------------------------------------------- SHA-256

struct Sha256::Impl {
  EvpMdCtxPtr ctx{EVP_MD_CTX_new()};
  void reset() { EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr); }
};

Sha256::Sha256() : impl_(std::make_unique<Impl>()) { impl_->reset(); }
Sha256::~Sha256() = default;
Sha256::Sha256(Sha256&&) noexcept = default;
Sha256& Sha256::operator=(Sha256&&) noexcept = default;

void Sha256::update(const void* data, std::size_t size) { EVP_DigestUpdate(impl_->ctx.get(), data, size); }

Sha256Digest Sha256::finish() {
  Sha256Digest out{};
  unsigned int len = 0;
  EVP_DigestFinal_ex(impl_->ctx.get(), out.data(), &len);
  impl_->reset();
  return out;
}

Sha256Digest Sha256::digest(std::string_view data) {
  Sha256 h;
  h.update(data);
  return h.finish();
}

Result<Sha256Digest> Sha256::file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Error(Errc::kNotFound, "cannot open " + path.string() + ": " + std::strerror(errno));
  Sha256 h;
  std::string buf(64 * 1024, '\0');
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    h.update(buf.data(), static_cast<std::size_t>(in.gcount()));
  }
  if (in.bad()) return Error(Errc::kIo, "reading " + path.string() + " failed");
  return h.finish();
}

std::string digest_bytes(const Sha256Digest& digest) {
  return std::string(reinterpret_cast<const char*>(digest.data()), digest.size());
}

std::string to_hex(std::string_view bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) {
    out += kHex[c >> 4];
    out += kHex[c & 0xf];
  }
  return out;
}

Result<std::string> from_hex(std::string_view hex) {
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  if (hex.size() % 2 != 0) return Error(Errc::kInvalidArgument, "hex string has an odd number of characters");
  std::string out(hex.size() / 2, '\0');
  for (std::size_t i = 0; i < out.size(); ++i) {
    int hi = nibble(hex[2 * i]);
    int lo = nibble(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return Error(Errc::kInvalidArgument, "hex string contains a non-hex character");
    out[i] = static_cast<char>((hi << 4) | lo);
  }
  return out;
}

// ---------------------------------------------------------------------------------- files

Status write_new_file(const std::filesystem::path& path, std::string_view content, unsigned mode) {
  std::error_code ec;
  if (std::filesystem::exists(path, ec)) {
    return Error(Errc::kAlreadyExists,
                 path.string() + " already exists; refusing to overwrite it (move it away first)");
  }
  if (path.has_parent_path()) std::filesystem::create_directories(path.parent_path(), ec);
  const std::string tmp = path.string() + ".tmp." + std::to_string(::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, static_cast<mode_t>(mode));
  if (fd < 0) return Error(Errc::kIo, "cannot create " + tmp + ": " + std::strerror(errno));
  ::fchmod(fd, static_cast<mode_t>(mode));  // umask must not widen or narrow the mode we promise
  std::size_t done = 0;
  while (done < content.size()) {
    ssize_t n = ::write(fd, content.data() + done, content.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      return Error(Errc::kIo, "writing " + tmp + " failed: " + std::strerror(err));
    }
    done += static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    ::unlink(tmp.c_str());
    return Error(Errc::kIo, "flushing " + tmp + " failed: " + std::strerror(errno));
  }
  // link() fails if the target appeared meanwhile, so we never overwrite.
  if (::link(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    if (err == EEXIST)
      return Error(Errc::kAlreadyExists, path.string() + " already exists; refusing to overwrite it");
    return Error(Errc::kIo, "cannot create " + path.string() + ": " + std::strerror(err));
  }
  ::unlink(tmp.c_str());
  return ok_status();
}

Status replace_file(const std::filesystem::path& path, std::string_view content, unsigned mode) {
  const auto io_error = [](const std::string& what, const std::filesystem::path& p) {
    return Error(Errc::kIo, what + " " + p.string() + ": " + std::strerror(errno));
  };
  const std::filesystem::path temp = path.string() + ".tmp";
  const int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, static_cast<mode_t>(mode));
  if (fd < 0) return io_error("cannot create", temp);
  ::fchmod(fd, static_cast<mode_t>(mode));  // a temp file left by a crash may have had another mode
  std::size_t done = 0;
  while (done < content.size()) {
    const ssize_t n = ::write(fd, content.data() + done, content.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      Error e = io_error("cannot write", temp);
      ::close(fd);
      return e;
    }
    done += static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0) {
    Error e = io_error("cannot fsync", temp);
    ::close(fd);
    return e;
  }
  ::close(fd);
  if (::rename(temp.c_str(), path.c_str()) != 0) return io_error("cannot rename over", path);
  const std::filesystem::path dir = path.has_parent_path() ? path.parent_path() : std::filesystem::path(".");
  const int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd >= 0) {
    ::fsync(dir_fd);  // makes the rename durable; failure here is not fatal on odd filesystems
    ::close(dir_fd);
  }
  return ok_status();
}

Result<std::string> read_file(const std::filesystem::path& path, std::size_t max_bytes) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) {
    return Error(Errc::kNotFound, path.string() + " does not exist or is not a regular file");
  }
  auto size = std::filesystem::file_size(path, ec);
  if (ec) return Error(Errc::kIo, "cannot stat " + path.string() + ": " + ec.message());
  if (size > max_bytes) {
    return Error(Errc::kTooLarge, path.string() + " is " + std::to_string(size) + " bytes; at most " +
                                      std::to_string(max_bytes) + " expected");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return Error(Errc::kPermissionDenied, "cannot open " + path.string() + ": " + std::strerror(errno));
  std::string out(size, '\0');
  in.read(out.data(), static_cast<std::streamsize>(size));
  if (static_cast<std::uintmax_t>(in.gcount()) != size)
    return Error(Errc::kIo, "short read of " + path.string());
  return out;
}

// ---------------------------------------------------------------------------------- Ed25519

Result<Ed25519PublicKey> Ed25519PublicKey::from_raw(std::string_view raw) {
  if (raw.size() != kRawSize) {
    return Error(Errc::kInvalidArgument,
                 "an Ed25519 public key has 32 bytes, not " + std::to_string(raw.size()));
  }
  return Ed25519PublicKey(std::string(raw));
}

Result<Ed25519PublicKey> Ed25519PublicKey::from_pem(std::string_view pem) {
  auto key = detail::read_pem_key(pem, detail::PemKey::kPublic, EVP_PKEY_ED25519, "Ed25519",
                                  "fotactl keys generate");
  if (!key) return key.error();
  auto raw = detail::raw_public_key(key->get(), kRawSize);
  if (raw.size() != kRawSize) return crypto_error("reading the Ed25519 public key");
  return Ed25519PublicKey(std::move(raw));
}

Result<Ed25519PublicKey> Ed25519PublicKey::load(const std::filesystem::path& path) {
  auto pem = read_file(path, 64 * 1024);
  if (!pem) return pem.error().with_context("loading public key");
  auto key = from_pem(*pem);
  if (!key) return key.error().with_context(path.string());
  return key;
}

std::string Ed25519PublicKey::key_id() const {
  auto digest = Sha256::digest(raw_);
  return to_hex(std::string_view(reinterpret_cast<const char*>(digest.data()), 8));
}

namespace {
EvpPkeyPtr public_pkey(const std::string& raw) {
  return EvpPkeyPtr(EVP_PKEY_new_raw_public_key(
      EVP_PKEY_ED25519, nullptr, reinterpret_cast<const unsigned char*>(raw.data()), raw.size()));
}
}  // namespace

std::string Ed25519PublicKey::to_pem() const { return detail::public_key_pem(public_pkey(raw_).get()); }

Status Ed25519PublicKey::verify(std::string_view message, std::string_view signature) const {
  if (signature.size() != kEd25519SignatureBytes) {
    return Error(Errc::kBadSignature, "signature has " + std::to_string(signature.size()) + " bytes, not 64");
  }
  auto key = public_pkey(raw_);
  if (!key) return crypto_error("loading the Ed25519 public key");
  EvpMdCtxPtr ctx(EVP_MD_CTX_new());
  if (EVP_DigestVerifyInit(ctx.get(), nullptr, nullptr, nullptr, key.get()) != 1) {
    return crypto_error("initialising Ed25519 verification");
  }
  int rc =
      EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(signature.data()), signature.size(),
                       reinterpret_cast<const unsigned char*>(message.data()), message.size());
  if (rc != 1) {
    detail::openssl_error();
    return Error(Errc::kBadSignature, "Ed25519 signature does not verify with key " + key_id());
  }
  return ok_status();
}

struct Ed25519PrivateKey::Impl {
  EvpPkeyPtr key;
};

Ed25519PrivateKey::Ed25519PrivateKey(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Ed25519PrivateKey::~Ed25519PrivateKey() = default;
Ed25519PrivateKey::Ed25519PrivateKey(Ed25519PrivateKey&&) noexcept = default;
Ed25519PrivateKey& Ed25519PrivateKey::operator=(Ed25519PrivateKey&&) noexcept = default;

Result<Ed25519PrivateKey> Ed25519PrivateKey::generate() {
  EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new_id(EVP_PKEY_ED25519, nullptr));
  EVP_PKEY* raw = nullptr;
  if (!ctx || EVP_PKEY_keygen_init(ctx.get()) != 1 || EVP_PKEY_keygen(ctx.get(), &raw) != 1) {
    return crypto_error("generating an Ed25519 key");
  }
  auto impl = std::make_unique<Impl>();
  impl->key.reset(raw);
  return Ed25519PrivateKey(std::move(impl));
}

Result<Ed25519PrivateKey> Ed25519PrivateKey::from_pem(std::string_view pem) {
  auto key = detail::read_pem_key(pem, detail::PemKey::kPrivate, EVP_PKEY_ED25519, "Ed25519",
                                  "fotactl keys generate");
  if (!key) return key.error();
  auto impl = std::make_unique<Impl>();
  impl->key = std::move(*key);
  return Ed25519PrivateKey(std::move(impl));
}

Result<Ed25519PrivateKey> Ed25519PrivateKey::load(const std::filesystem::path& path) {
  auto pem = read_file(path, 64 * 1024);
  if (!pem) return pem.error().with_context("loading signing key");
  auto key = from_pem(*pem);
  if (!key) return key.error().with_context(path.string());
  return key;
}

std::string Ed25519PrivateKey::to_pem() const { return detail::private_key_pem(impl_->key.get()); }

Ed25519PublicKey Ed25519PrivateKey::public_key() const {
  return *Ed25519PublicKey::from_raw(detail::raw_public_key(impl_->key.get(), Ed25519PublicKey::kRawSize));
}

Result<std::string> Ed25519PrivateKey::sign(std::string_view message) const {
  EvpMdCtxPtr ctx(EVP_MD_CTX_new());
  if (EVP_DigestSignInit(ctx.get(), nullptr, nullptr, nullptr, impl_->key.get()) != 1) {
    return crypto_error("initialising Ed25519 signing");
  }
  std::string sig(kEd25519SignatureBytes, '\0');
  std::size_t len = sig.size();
  if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &len,
                     reinterpret_cast<const unsigned char*>(message.data()), message.size()) != 1) {
    return crypto_error("Ed25519 signing");
  }
  sig.resize(len);
  return sig;
}

Status save_key_pair(const Ed25519PrivateKey& key, const std::filesystem::path& private_path,
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

Result<CommandKeyFiles> create_command_key(const std::filesystem::path& pki_dir, std::string_view name) {
  auto valid = DeviceId::parse(name);
  if (!valid) return valid.error().with_context("command key name");
  const auto dir = pki_dir / "command";
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return Error(Errc::kIo, "cannot create " + dir.string() + ": " + ec.message());
  auto key = Ed25519PrivateKey::generate();
  if (!key) return key.error();
  CommandKeyFiles files{dir / (std::string(name) + ".key"), dir / (std::string(name) + ".pub"),
                        key->public_key().key_id()};
  if (auto st = save_key_pair(*key, files.private_key, files.public_key); !st) return st.error();
  return files;
}

// ---------------------------------------------------------------------------------- trust

void TrustStore::add(Ed25519PublicKey key) {
  if (find(key.key_id()) == nullptr) keys_.push_back(std::move(key));
}

Status TrustStore::load(const std::filesystem::path& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    std::size_t loaded = 0;
    for (const auto& entry : std::filesystem::directory_iterator(path, ec)) {
      auto ext = entry.path().extension();
      if (!entry.is_regular_file() || (ext != ".pub" && ext != ".pem")) continue;
      auto key = Ed25519PublicKey::load(entry.path());
      if (!key) return key.error();
      add(std::move(key).value());
      ++loaded;
    }
    if (loaded == 0) {
      return Error(Errc::kNotFound, "no *.pub or *.pem public key in " + path.string());
    }
    return ok_status();
  }
  auto key = Ed25519PublicKey::load(path);
  if (!key) return key.error();
  add(std::move(key).value());
  return ok_status();
}

const Ed25519PublicKey* TrustStore::find(std::string_view key_id) const {
  for (const auto& key : keys_) {
    if (key.key_id() == key_id) return &key;
  }
  return nullptr;
}

Result<v1::Manifest> TrustStore::verify(const v1::SignedManifest& signed_manifest) const {
  const Ed25519PublicKey* key = find(signed_manifest.key_id());
  if (key == nullptr) {
    return Error(Errc::kUntrustedKey, "manifest is signed with key \"" +
                                          signed_manifest.key_id().substr(0, 32) +
                                          "\", which is not among the trusted keys");
  }
  if (auto st = key->verify(signed_manifest.manifest(), signed_manifest.signature()); !st) return st.error();
  auto manifest = decode<v1::Manifest>(signed_manifest.manifest(), kMaxCommandBytes);
  if (!manifest) return manifest.error();
  if (auto st = check_manifest_structure(*manifest); !st) return st.error();
  return manifest;
}

Result<v1::SignedManifest> sign_manifest(const v1::Manifest& manifest, const Ed25519PrivateKey& key) {
  v1::SignedManifest out;
  out.set_manifest(manifest.SerializeAsString());
  auto sig = key.sign(out.manifest());
  if (!sig) return sig.error();
  out.set_signature(std::move(sig).value());
  out.set_key_id(key.public_key().key_id());
  return out;
}

// ---------------------------------------------------------------------------------- commands

Result<std::string> sign_command(const v1::Command& command, const Ed25519PrivateKey& key) {
  v1::Command body = command;
  body.clear_signature();
  std::string payload = body.SerializeAsString();
  auto signature = key.sign(std::string(kCommandSignatureContext) + payload);
  if (!signature) return signature.error();
  // A serialized message followed by another parses as their merge, so appending a Command that
  // holds only the signature adds the field without touching the signed bytes before it.
  v1::Command trailer;
  trailer.mutable_signature()->set_key_id(key.public_key().key_id());
  trailer.mutable_signature()->set_signature(std::move(signature).value());
  payload += trailer.SerializeAsString();
  return payload;
}

Result<v1::Command> verify_command(std::string_view payload, const TrustStore& command_keys) {
  auto command = decode<v1::Command>(payload, kMaxCommandBytes);
  if (!command) return command.error();
  if (!command->has_signature()) {
    return Error(Errc::kBadSignature,
                 "command is not signed; the orchestrator must sign every command with its command key "
                 "(command_key in its configuration)");
  }
  const v1::CommandSignature& signature = command->signature();
  const Ed25519PublicKey* key = command_keys.find(signature.key_id());
  if (key == nullptr) {
    // The id is the sender's text and may reach logs that are sent on: quote only a plausible one.
    const std::string& id = signature.key_id();
    const bool plausible =
        id.size() <= 32 && std::all_of(id.begin(), id.end(), [](char c) {
          return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
        });
    return Error(Errc::kUntrustedKey, "command is signed with key \"" + (plausible ? id : std::string("?")) +
                                          "\", which is not among this device's command keys; add the "
                                          "orchestrator's command public key to the device first");
  }
  v1::Command trailer;
  *trailer.mutable_signature() = signature;
  const std::string tail = trailer.SerializeAsString();
  if (payload.size() < tail.size() || payload.substr(payload.size() - tail.size()) != tail) {
    return Error(Errc::kBadSignature, "command signature is not the payload's last field");
  }
  const std::string_view body = payload.substr(0, payload.size() - tail.size());
  if (auto st = key->verify(std::string(kCommandSignatureContext) + std::string(body), signature.signature());
      !st) {
    return st.error().with_context("command");
  }
  return command;
}

}  // namespace fota::common

// SPDX-License-Identifier: Apache-2.0
#include "fota/common/artifact.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>

#include "fota/common/codec.hpp"
#include "fota/common/encryption.hpp"

namespace fota::common {
namespace fs = std::filesystem;

namespace {

constexpr std::size_t kHeaderFixedBytes = sizeof(kBundleMagic) + 4 + 4;

void put_u32(std::string& out, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) out += static_cast<char>((v >> (8 * i)) & 0xff);
}

std::uint32_t get_u32(const char* p) {
  std::uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= std::uint32_t{static_cast<unsigned char>(p[i])} << (8 * i);
  return v;
}

Status pread_all(int fd, char* out, std::size_t size, std::uint64_t offset) {
  std::size_t done = 0;
  while (done < size) {
    ssize_t n = ::pread(fd, out + done, size - done, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return Error(Errc::kIo, std::string("read failed: ") + std::strerror(errno));
    }
    if (n == 0) return Error(Errc::kIo, "unexpected end of file");
    done += static_cast<std::size_t>(n);
  }
  return ok_status();
}

// Streams `size` bytes of `in` through per-chunk and whole-image hashes.
struct ImageHashes {
  std::string table;  // every chunk's SHA-256, concatenated
  Sha256Digest image{};
};

// Encrypts image chunks on their way into the hash table and into `out` (encrypted artifacts).
struct ChunkEncryptor {
  std::string_view content_key;
  std::ofstream* out = nullptr;
};

// `image` is the SHA-256 of the bytes read; with `encrypt`, the chunk hashes are of the
// ciphertexts it writes.
Result<ImageHashes> hash_image(std::istream& in, std::uint64_t size, std::uint32_t chunk_size,
                               const ChunkEncryptor* encrypt = nullptr) {
  ImageHashes out;
  out.table.reserve(std::size_t{chunk_count(size, chunk_size)} * kSha256Bytes);
  Sha256 whole;
  Sha256 chunk;
  std::string buf(chunk_size, '\0');
  std::uint64_t left = size;
  std::uint32_t index = 0;
  while (left > 0) {
    const auto n = static_cast<std::size_t>(left < chunk_size ? left : chunk_size);
    in.read(buf.data(), static_cast<std::streamsize>(n));
    if (static_cast<std::size_t>(in.gcount()) != n) return Error(Errc::kIo, "image ended early");
    whole.update(buf.data(), n);
    if (encrypt != nullptr) {
      auto sealed = encrypt_chunk(encrypt->content_key, index, std::string_view(buf.data(), n));
      if (!sealed) return sealed.error();
      chunk.update(*sealed);
      encrypt->out->write(sealed->data(), static_cast<std::streamsize>(sealed->size()));
    } else {
      chunk.update(buf.data(), n);
    }
    out.table += digest_bytes(chunk.finish());
    left -= n;
    ++index;
  }
  out.image = whole.finish();
  return out;
}

std::string_view hash_chunk(const ChunkSpace& space, std::string_view table, std::uint32_t j) {
  const std::uint32_t index = space.image_chunks() + j;
  return table.substr(static_cast<std::size_t>(space.offset(index)), space.length(index));
}

}  // namespace

void set_chunk_hashes(v1::Manifest& m, std::string_view table, bool use_hash_table) {
  m.clear_chunk_sha256();
  m.clear_hash_table_sha256();
  const ChunkSpace space(m.image_size(), m.chunk_size(), use_hash_table);
  if (!use_hash_table) {
    for (std::size_t off = 0; off + kSha256Bytes <= table.size(); off += kSha256Bytes) {
      m.add_chunk_sha256(std::string(table.substr(off, kSha256Bytes)));
    }
    return;
  }
  for (std::uint32_t j = 0; j < space.hash_chunks(); ++j) {
    m.add_hash_table_sha256(digest_bytes(Sha256::digest(hash_chunk(space, table, j))));
  }
}

namespace {

Result<v1::SignedManifest> build_manifest(const fs::path& image, const ArtifactSpec& spec,
                                          const Ed25519PrivateKey& key, std::int64_t now_ms,
                                          const std::vector<X25519PublicKey>* recipients,
                                          const fs::path* ciphertext, const v1::DeltaEncoding* delta) {
  if (spec.version.empty()) return Error(Errc::kInvalidArgument, "--version is empty");
  if (spec.compatible_hardware.empty()) {
    return Error(Errc::kInvalidArgument, "no compatible hardware type given (use --hardware HW[,HW])");
  }
  for (const auto& hw : spec.compatible_hardware) {
    if (hw.empty()) return Error(Errc::kInvalidArgument, "an empty hardware type was given in --hardware");
  }
  if (spec.chunk_size < kMinChunkSize || spec.chunk_size > kMaxChunkSize) {
    return Error(Errc::kInvalidArgument, "chunk size " + std::to_string(spec.chunk_size) + " is outside [" +
                                             std::to_string(kMinChunkSize) + ", " +
                                             std::to_string(kMaxChunkSize) + "]");
  }
  std::error_code ec;
  if (!fs::is_regular_file(image, ec)) {
    return Error(Errc::kNotFound, "image " + image.string() + " does not exist or is not a regular file");
  }
  const std::uint64_t size = fs::file_size(image, ec);
  if (size == 0) return Error(Errc::kInvalidArgument, "image " + image.string() + " is empty");
  std::ifstream in(image, std::ios::binary);
  if (!in)
    return Error(Errc::kPermissionDenied, "cannot open " + image.string() + ": " + std::strerror(errno));

  v1::Manifest m;
  Result<ImageHashes> hashes = Error(Errc::kInternal, "not hashed");
  if (recipients != nullptr) {
    if (fs::exists(*ciphertext, ec)) {
      return Error(Errc::kAlreadyExists, ciphertext->string() + " already exists; refusing to overwrite it");
    }
    auto content_key = generate_content_key();
    if (!content_key) return content_key.error();
    auto encryption = make_encryption(*content_key, *recipients);
    if (!encryption) {
      cleanse(*content_key);
      return encryption.error();
    }
    *m.mutable_encryption() = std::move(encryption).value();
    std::ofstream out(*ciphertext, std::ios::binary | std::ios::trunc);
    if (!out) {
      cleanse(*content_key);
      return Error(Errc::kIo, "cannot create " + ciphertext->string() + ": " + std::strerror(errno));
    }
    const ChunkEncryptor encryptor{*content_key, &out};
    hashes = hash_image(in, size, spec.chunk_size, &encryptor);
    cleanse(*content_key);  // from here on only the recipients can recover it
    out.flush();
    if (hashes && !out) hashes = Error(Errc::kIo, "writing " + ciphertext->string() + " failed (disk full?)");
    if (!hashes) fs::remove(*ciphertext, ec);
  } else {
    hashes = hash_image(in, size, spec.chunk_size);
  }
  if (!hashes) return hashes.error().with_context(image.string());

  m.set_name(spec.name.empty() ? image.filename().string() : spec.name);
  m.set_version(spec.version);
  m.set_security_counter(spec.security_counter);
  for (const auto& hw : spec.compatible_hardware) m.add_compatible_hardware(hw);
  m.set_payload_type(spec.payload_type);
  m.set_payload_target(spec.payload_target);
  m.set_image_size(size);
  m.set_image_sha256(digest_bytes(hashes->image));
  m.set_chunk_size(spec.chunk_size);
  set_chunk_hashes(m, hashes->table, ChunkSpace::wants_hash_table(size, spec.chunk_size));
  m.set_created_at_ms(now_ms);
  if (delta != nullptr) *m.mutable_delta() = *delta;
  // Content-addressed id: a hash of everything else the manifest says.
  m.set_artifact_id(to_hex(digest_bytes(Sha256::digest(m.SerializeAsString()))).substr(0, kArtifactIdLength));
  return sign_manifest(m, key);
}

}  // namespace

Result<v1::SignedManifest> build_signed_manifest(const fs::path& image, const ArtifactSpec& spec,
                                                 const Ed25519PrivateKey& key, std::int64_t now_ms) {
  return build_manifest(image, spec, key, now_ms, nullptr, nullptr, nullptr);
}

Result<v1::SignedManifest> build_encrypted_manifest(const fs::path& image, const ArtifactSpec& spec,
                                                    const std::vector<X25519PublicKey>& recipients,
                                                    const Ed25519PrivateKey& key, std::int64_t now_ms,
                                                    const fs::path& ciphertext) {
  if (recipients.empty()) {
    return Error(Errc::kInvalidArgument, "no recipient key to encrypt for (--encrypt-for KEY.pub[,KEY.pub])");
  }
  return build_manifest(image, spec, key, now_ms, &recipients, &ciphertext, nullptr);
}

Result<v1::SignedManifest> build_delta_manifest(const fs::path& patch, const ArtifactSpec& spec,
                                                const v1::DeltaEncoding& delta, const Ed25519PrivateKey& key,
                                                std::int64_t now_ms) {
  return build_manifest(patch, spec, key, now_ms, nullptr, nullptr, &delta);
}

std::string bundle_header(const v1::SignedManifest& manifest) {
  std::string header(kBundleMagic, sizeof(kBundleMagic));
  put_u32(header, kBundleFormatVersion);
  const std::string body = manifest.SerializeAsString();
  put_u32(header, static_cast<std::uint32_t>(body.size()));
  header += body;
  return header;
}

Status write_bundle(const fs::path& out, const v1::SignedManifest& manifest, const fs::path& image) {
  std::error_code ec;
  if (fs::exists(out, ec))
    return Error(Errc::kAlreadyExists, out.string() + " already exists; refusing to overwrite it");
  std::ifstream in(image, std::ios::binary);
  if (!in) return Error(Errc::kNotFound, "cannot open image " + image.string() + ": " + std::strerror(errno));
  const std::string tmp = out.string() + ".tmp." + std::to_string(::getpid());
  {
    std::ofstream file(tmp, std::ios::binary | std::ios::trunc);
    if (!file) return Error(Errc::kIo, "cannot create " + tmp + ": " + std::strerror(errno));
    const std::string header = bundle_header(manifest);
    file.write(header.data(), static_cast<std::streamsize>(header.size()));
    file << in.rdbuf();
    file.flush();
    if (!file) {
      fs::remove(tmp, ec);
      return Error(Errc::kIo, "writing " + tmp + " failed (disk full?)");
    }
  }
  if (::link(tmp.c_str(), out.c_str()) != 0) {
    int err = errno;
    fs::remove(tmp, ec);
    return Error(err == EEXIST ? Errc::kAlreadyExists : Errc::kIo,
                 "cannot create " + out.string() + ": " + std::strerror(err));
  }
  fs::remove(tmp, ec);
  return ok_status();
}

Result<BundleInfo> read_bundle_header(const fs::path& bundle) {
  std::ifstream in(bundle, std::ios::binary);
  if (!in)
    return Error(Errc::kNotFound, "cannot open bundle " + bundle.string() + ": " + std::strerror(errno));
  std::error_code ec;
  const std::uint64_t file_size = fs::file_size(bundle, ec);
  char fixed[kHeaderFixedBytes];
  in.read(fixed, sizeof(fixed));
  if (in.gcount() != static_cast<std::streamsize>(sizeof(fixed)) ||
      std::memcmp(fixed, kBundleMagic, sizeof(kBundleMagic)) != 0) {
    return Error(
        Errc::kMalformed,
        bundle.string() + " is not a fota bundle (bad magic); create one with `fotactl artifact create`");
  }
  const std::uint32_t version = get_u32(fixed + 8);
  if (version != kBundleFormatVersion) {
    return Error(Errc::kMalformed, bundle.string() + " has bundle format " + std::to_string(version) +
                                       "; this build reads format " + std::to_string(kBundleFormatVersion));
  }
  const std::uint32_t manifest_len = get_u32(fixed + 12);
  if (manifest_len > kMaxCommandBytes || kHeaderFixedBytes + manifest_len > file_size) {
    return Error(Errc::kMalformed, bundle.string() + " has a manifest length that does not fit the file");
  }
  std::string body(manifest_len, '\0');
  in.read(body.data(), manifest_len);
  auto sm = decode<v1::SignedManifest>(body, kMaxCommandBytes);
  if (!sm) return sm.error().with_context(bundle.string());
  BundleInfo info;
  info.signed_manifest = std::move(sm).value();
  info.image_offset = kHeaderFixedBytes + manifest_len;
  info.image_size = file_size - info.image_offset;
  return info;
}

Result<VerifiedBundle> verify_bundle(const fs::path& bundle, const TrustStore& trust) {
  auto info = read_bundle_header(bundle);
  if (!info) return info.error();
  auto manifest = trust.verify(info->signed_manifest);
  if (!manifest) return manifest.error().with_context(bundle.string());
  const ChunkSpace space = ChunkSpace::of(*manifest);
  const bool encrypted = manifest->has_encryption();
  if (encrypted && manifest->encryption().scheme() != v1::ENCRYPTION_SCHEME_X25519_AES256GCM_V1) {
    return Error(Errc::kMalformed, bundle.string() + ": encryption scheme " +
                                       std::to_string(manifest->encryption().scheme()) +
                                       " is not known to this build; devices would refuse it");
  }
  if (space.stored_image_size() != info->image_size) {
    return Error(Errc::kIntegrity, bundle.string() + ": the manifest says the " +
                                       (encrypted ? "encrypted image" : "image") + " has " +
                                       std::to_string(space.stored_image_size()) +
                                       " bytes but the bundle holds " + std::to_string(info->image_size));
  }
  std::ifstream in(bundle, std::ios::binary);
  in.seekg(static_cast<std::streamoff>(info->image_offset));
  // An encrypted image's chunk hashes cover the stored ciphertext chunks (plaintext + tag each).
  auto hashes = hash_image(in, info->image_size, manifest->chunk_size() + space.chunk_overhead());
  if (!hashes) return hashes.error().with_context(bundle.string());
  if (!space.has_hash_table()) {
    for (std::uint32_t i = 0; i < space.image_chunks(); ++i) {
      if (hashes->table.compare(std::size_t{i} * kSha256Bytes, kSha256Bytes,
                                manifest->chunk_sha256(static_cast<int>(i))) != 0) {
        return Error(Errc::kIntegrity,
                     bundle.string() + ": chunk " + std::to_string(i) +
                         " does not match its hash in the signed manifest (the image was altered)");
      }
    }
  }
  for (std::uint32_t j = 0; j < space.hash_chunks(); ++j) {
    if (digest_bytes(Sha256::digest(hash_chunk(space, hashes->table, j))) !=
        manifest->hash_table_sha256(static_cast<int>(j))) {
      const std::uint32_t first = j * space.hashes_per_hash_chunk();
      const std::uint32_t last = first + space.length(space.image_chunks() + j) / kSha256Bytes - 1;
      return Error(Errc::kIntegrity, bundle.string() + ": chunks " + std::to_string(first) + "-" +
                                         std::to_string(last) + " do not match hash-table chunk " +
                                         std::to_string(j) +
                                         " of the signed manifest (the image was altered)");
    }
  }
  // image_sha256 is of the plaintext: only a recipient can check it (the device does, after writing).
  if (!encrypted && digest_bytes(hashes->image) != manifest->image_sha256()) {
    return Error(Errc::kIntegrity, bundle.string() + ": image hash does not match the signed manifest");
  }
  return VerifiedBundle{std::move(info).value(), std::move(manifest).value(), std::move(hashes->table)};
}

// ---------------------------------------------------------------------------------- store

ArtifactStore::ArtifactStore(fs::path root, std::size_t max_open_files)
    : root_(std::move(root)), max_open_files_(max_open_files == 0 ? 1 : max_open_files) {}

namespace {
void close_image(int fd, int hash_table_fd) {
  ::close(fd);
  if (hash_table_fd >= 0) ::close(hash_table_fd);
}
}  // namespace

ArtifactStore::~ArtifactStore() {
  for (auto& [id, img] : open_) close_image(img.fd, img.hash_table_fd);
}

Result<v1::Manifest> ArtifactStore::import_bundle(const fs::path& bundle, const TrustStore& trust) {
  auto verified = verify_bundle(bundle, trust);
  if (!verified) return verified.error();
  const std::string& id = verified->manifest.artifact_id();
  std::error_code ec;
  const fs::path final_dir = root_ / id;
  if (fs::exists(final_dir / "image", ec)) return verified->manifest;
  fs::create_directories(root_, ec);
  const fs::path tmp_dir = root_ / (".import-" + id + "-" + std::to_string(::getpid()));
  fs::remove_all(tmp_dir, ec);
  if (!fs::create_directory(tmp_dir, ec)) {
    return Error(Errc::kIo, "cannot create " + tmp_dir.string() + ": " + ec.message());
  }
  auto fail = [&](const std::string& what) {
    fs::remove_all(tmp_dir, ec);
    return Error(Errc::kIo, what);
  };
  {
    std::ifstream in(bundle, std::ios::binary);
    in.seekg(static_cast<std::streamoff>(verified->info.image_offset));
    std::ofstream out(tmp_dir / "image", std::ios::binary);
    out << in.rdbuf();
    out.flush();
    if (!out) return fail("writing " + (tmp_dir / "image").string() + " failed (disk full?)");
    std::ofstream mf(tmp_dir / "manifest.pb", std::ios::binary);
    mf << verified->info.signed_manifest.SerializeAsString();
    mf.flush();
    if (!mf) return fail("writing the manifest into the store failed (disk full?)");
    if (verified->manifest.hash_table_sha256_size() > 0) {
      std::ofstream table(tmp_dir / "hash_table", std::ios::binary);
      table << verified->hash_table;
      table.flush();
      if (!table) return fail("writing the hash table into the store failed (disk full?)");
    }
  }
  // Data must be on disk before the directory becomes visible under its final name.
  for (const char* name : {"image", "manifest.pb", "hash_table"}) {
    int fd = ::open((tmp_dir / name).c_str(), O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
      ::fsync(fd);
      ::close(fd);
    }
  }
  fs::rename(tmp_dir, final_dir, ec);
  if (ec) {
    if (fs::exists(final_dir / "image")) {  // a concurrent import won
      fs::remove_all(tmp_dir, ec);
      return verified->manifest;
    }
    return fail("cannot move the artifact into " + final_dir.string() + ": " + ec.message());
  }
  return verified->manifest;
}

bool ArtifactStore::contains(const std::string& artifact_id) const {
  if (!is_valid_artifact_id(artifact_id)) return false;
  std::error_code ec;
  return fs::exists(root_ / artifact_id / "image", ec) && fs::exists(root_ / artifact_id / "manifest.pb", ec);
}

Result<fs::path> ArtifactStore::image_path(const std::string& artifact_id) const {
  if (!contains(artifact_id)) {
    return Error(Errc::kNotFound, "artifact \"" + artifact_id.substr(0, 64) + "\" is not in the store");
  }
  return root_ / artifact_id / "image";
}

Result<std::shared_ptr<const ArtifactStore::Manifests>> ArtifactStore::manifests(
    const std::string& artifact_id) const {
  if (!is_valid_artifact_id(artifact_id)) {
    return Error(Errc::kInvalidArgument, "\"" + artifact_id.substr(0, 64) + "\" is not an artifact id");
  }
  {
    std::lock_guard lock(manifest_mutex_);
    if (auto it = manifests_.find(artifact_id); it != manifests_.end()) return it->second;
  }
  // Read outside the lock.
  auto bytes = read_file(root_ / artifact_id / "manifest.pb", kMaxCommandBytes);
  if (!bytes) return Error(Errc::kNotFound, "artifact " + artifact_id + " is not in the store");
  auto signed_manifest = decode<v1::SignedManifest>(*bytes, kMaxCommandBytes);
  if (!signed_manifest) return signed_manifest.error();
  auto manifest = decode<v1::Manifest>(signed_manifest->manifest(), kMaxCommandBytes);
  if (!manifest) return manifest.error();
  auto loaded = std::make_shared<const Manifests>(
      Manifests{std::move(signed_manifest).value(), std::move(manifest).value()});
  std::lock_guard lock(manifest_mutex_);
  return manifests_.emplace(artifact_id, std::move(loaded)).first->second;
}

Result<v1::SignedManifest> ArtifactStore::signed_manifest(const std::string& artifact_id) const {
  auto m = manifests(artifact_id);
  if (!m) return m.error();
  return (*m)->signed_manifest;
}

Result<v1::Manifest> ArtifactStore::manifest(const std::string& artifact_id) const {
  auto m = manifests(artifact_id);
  if (!m) return m.error();
  return (*m)->manifest;
}

Result<std::uint64_t> ArtifactStore::image_size(const std::string& artifact_id) const {
  auto m = manifests(artifact_id);
  if (!m) return m.error();
  return (*m)->manifest.image_size();
}

std::vector<std::string> ArtifactStore::list() const {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(root_, ec)) {
    auto name = entry.path().filename().string();
    if (contains(name)) out.push_back(name);
  }
  return out;
}

Status ArtifactStore::remove(const std::string& artifact_id) {
  if (!contains(artifact_id))
    return Error(Errc::kNotFound, "artifact " + artifact_id.substr(0, 64) + " is not in the store");
  {
    std::lock_guard lock(mutex_);
    if (auto it = open_.find(artifact_id); it != open_.end()) {
      close_image(it->second.fd, it->second.hash_table_fd);
      open_.erase(it);
    }
  }
  {
    std::lock_guard lock(manifest_mutex_);
    manifests_.erase(artifact_id);
  }
  // Renamed away first, so that no reader ever sees a half-deleted artifact.
  std::error_code ec;
  const fs::path doomed = root_ / (".deleting-" + artifact_id);
  fs::remove_all(doomed, ec);
  fs::rename(root_ / artifact_id, doomed, ec);
  if (ec) return Error(Errc::kIo, "cannot delete artifact " + artifact_id + ": " + ec.message());
  fs::remove_all(doomed, ec);
  return ok_status();
}

Result<ArtifactStore::OpenImage> ArtifactStore::open_image(const std::string& artifact_id) const {
  if (auto it = open_.find(artifact_id); it != open_.end()) return it->second;
  auto m = manifest(artifact_id);
  if (!m) return m.error();
  int fd = ::open((root_ / artifact_id / "image").c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Error(Errc::kNotFound, "artifact " + artifact_id + " has no image in the store");
  const ChunkSpace space = ChunkSpace::of(*m);
  int table_fd = -1;
  if (space.has_hash_table()) {
    table_fd = ::open((root_ / artifact_id / "hash_table").c_str(), O_RDONLY | O_CLOEXEC);
    if (table_fd < 0) {
      ::close(fd);
      return Error(Errc::kNotFound, "artifact " + artifact_id + " has no hash table in the store");
    }
  }
  if (open_.size() >= max_open_files_) {
    close_image(open_.begin()->second.fd, open_.begin()->second.hash_table_fd);
    open_.erase(open_.begin());
  }
  OpenImage img{fd, table_fd, space};
  open_.emplace(artifact_id, img);
  return img;
}

Result<std::uint32_t> ArtifactStore::chunk_count(const std::string& artifact_id) const {
  if (!contains(artifact_id))
    return Error(Errc::kNotFound, "artifact " + artifact_id + " is not in the store");
  std::lock_guard lock(mutex_);
  auto img = open_image(artifact_id);
  // It is there (contains), so whatever failed may work on the next request.
  if (!img) return Error(Errc::kUnavailable, img.error().message);
  return img->space.total();
}

Status ArtifactStore::read_chunk(const std::string& artifact_id, std::uint32_t index,
                                 std::string& out) const {
  std::lock_guard lock(mutex_);
  auto img = open_image(artifact_id);
  if (!img) return img.error();
  const std::uint32_t length = img->space.length(index);
  if (length == 0) {
    return Error(Errc::kInvalidArgument,
                 "chunk " + std::to_string(index) + " is past the end of artifact " + artifact_id);
  }
  out.resize(length);
  return pread_all(img->space.is_hash_chunk(index) ? img->hash_table_fd : img->fd, out.data(), out.size(),
                   img->space.offset(index));
}

}  // namespace fota::common

// SPDX-License-Identifier: Apache-2.0
// Peak memory of a complete update session must not grow with the image size. Each session
// runs in its own child process (engine + DeviceRuntime + A/B file slots + file journal, chunks
// served in-process from the image file and its hash table, as ArtifactStore lays them out; no
// MQTT, whose cost does not depend on the image) and reports VmHWM. The manifest is built with
// set_chunk_hashes, as `fotactl artifact create` builds it (a hash table for large images).
// Usage: fota_client_footprint [--smoke] [work_dir (default /dev/shm)]
//   --smoke: small images (a quick run that the program still works; bench-smoke in ctest)
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "fota/client/engine.hpp"
#include "fota/client/installer.hpp"
#include "fota/client/runtime.hpp"
#include "fota/common/artifact.hpp"
#include "fota/common/codec.hpp"
#include "fota/common/crypto.hpp"

namespace {

using namespace fota;

long status_kib(const char* field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(field, 0) == 0) return std::atol(line.c_str() + std::strlen(field));
  }
  return -1;
}

struct NullTransport : client::Transport {
  std::vector<v1::ChunkRequest> requests;
  common::Status publish(common::Channel channel, std::string payload) override {
    if (channel == common::Channel::kChunkRequest) requests.emplace_back().ParseFromString(payload);
    return common::ok_status();
  }
};

// Signs a manifest of a sparse image of `size` bytes (all zeros), writes its hash table (what a
// store serves as hash chunks) and the install command.
void prepare(const std::filesystem::path& dir, std::uint64_t size, std::uint32_t chunk_size,
             const common::Ed25519PrivateKey& key) {
  std::filesystem::create_directories(dir);
  const auto image = dir / "image";
  { std::ofstream touch(image); }
  std::filesystem::resize_file(image, size);
  v1::Manifest m;
  m.set_artifact_id("0123456789abcdef0123456789abcdef");
  m.set_name("bench");
  m.set_version("2.0.0");
  m.set_security_counter(1);
  m.add_compatible_hardware("bench-board");
  m.set_payload_type(v1::PAYLOAD_TYPE_AB_IMAGE);
  m.set_image_size(size);
  m.set_chunk_size(chunk_size);
  const std::string zeros(chunk_size, '\0');
  const std::string chunk_hash = common::digest_bytes(common::Sha256::digest(zeros));
  common::Sha256 whole;
  std::string hash_table;
  for (std::uint64_t off = 0; off < size; off += chunk_size) {
    const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(chunk_size, size - off));
    whole.update(zeros.data(), n);
    hash_table +=
        n == chunk_size ? chunk_hash : common::digest_bytes(common::Sha256::digest(zeros.substr(0, n)));
  }
  m.set_image_sha256(common::digest_bytes(whole.finish()));
  common::set_chunk_hashes(m, hash_table, common::ChunkSpace::wants_hash_table(size, chunk_size));
  std::ofstream(dir / "hash_table", std::ios::binary) << hash_table;
  auto signed_manifest = common::sign_manifest(m, key);
  v1::Command c;
  c.set_command_id("bench-1");
  c.set_device_id("bench-device");
  c.set_expires_at_ms(std::numeric_limits<std::int64_t>::max());
  *c.mutable_install()->mutable_manifest() = *signed_manifest;
  // Signed as the orchestrator does; the bench's one key stands in for the command key too.
  std::ofstream(dir / "command.pb", std::ios::binary) << *common::sign_command(c, key);
}

// The prepared artifact's image and hash table, read with pread.
class FileChunkSource final : public common::ChunkSource {
 public:
  FileChunkSource(std::string artifact_id, common::ChunkSpace space, int image, int hash_table)
      : artifact_id_(std::move(artifact_id)), space_(space), image_(image), hash_table_(hash_table) {}
  common::Result<std::uint32_t> chunk_count(const std::string& artifact_id) const override {
    if (artifact_id != artifact_id_)
      return common::Error(common::Errc::kNotFound, "not the prepared artifact");
    return space_.total();
  }
  common::Status read_chunk(const std::string&, std::uint32_t i, std::string& out) const override {
    out.resize(space_.length(i));
    const ssize_t n = ::pread(space_.is_hash_chunk(i) ? hash_table_ : image_, out.data(), out.size(),
                              static_cast<off_t>(space_.offset(i)));
    if (n != static_cast<ssize_t>(out.size())) return common::Error(common::Errc::kIo, "short read");
    return common::ok_status();
  }

 private:
  std::string artifact_id_;
  common::ChunkSpace space_;
  int image_;
  int hash_table_;
};

// One update session; runs in a child. Prints "<baseline_kib> <peak_kib> <chunks>".
int session(const std::filesystem::path& dir, const common::Ed25519PublicKey& pub,
            std::uint32_t persist_every) {
  const long baseline = status_kib("VmRSS:");
  common::TrustStore trust;
  trust.add(pub);
  client::OpenSslEngineCrypto crypto(trust, trust);
  client::EngineConfig config;
  config.device_id = "bench-device";
  config.hardware_type = "bench-board";
  config.slot_capacity_bytes = std::uint64_t{4} << 30;
  config.initial_window = 16;
  config.max_window = 16;
  config.persist_every_chunks = persist_every;
  client::FileBootEnvironment env(dir / "bootenv");
  client::BootControl boot(env, *client::BootChooser::create({}), client::cmdline_file(dir / "cmdline"));
  (void)client::simulate_bootloader(env, boot.chooser(), dir / "cmdline");
  client::AbSlotInstaller slots({{"a", dir / "slot-a"}, {"b", dir / "slot-b"}}, boot);
  client::FileJournal journal(dir / "journal");
  NullTransport transport;
  common::ChunkSpace space;
  std::string artifact_id;
  client::UpdateEngine engine(config, crypto);
  client::DeviceRuntime runtime(engine, slots, journal, transport, {});
  std::int64_t now = 1'700'000'000'000;
  runtime.execute(engine.on_started({"a", false}, now), now);
  runtime.execute(engine.on_connected(now), now);
  {
    // The engine gets the command's wire bytes, as from the MQTT adapter, and verifies them.
    std::ifstream in(dir / "command.pb", std::ios::binary);
    std::ostringstream bytes;
    bytes << in.rdbuf();
    auto command = common::decode<v1::Command>(bytes.str(), common::kMaxCommandBytes);
    if (!command.ok()) {
      std::cerr << command.error().to_string() << "\n";
      return 1;
    }
    v1::Manifest manifest;
    manifest.ParseFromString(command->install().manifest().manifest());
    space = common::ChunkSpace::of(manifest);
    artifact_id = manifest.artifact_id();
    runtime.execute(engine.on_command(bytes.str(), now), now);
  }
  const int image = ::open((dir / "image").c_str(), O_RDONLY);
  const int hash_table = ::open((dir / "hash_table").c_str(), O_RDONLY);
  const FileChunkSource source(artifact_id, space, image, hash_table);
  std::uint64_t chunks = 0;
  while (!transport.requests.empty() && !runtime.stopped()) {
    auto requests = std::move(transport.requests);
    transport.requests.clear();
    for (const auto& r : requests) {
      // Streamed one chunk at a time, as a server would: the peak is the device's, not the server's.
      (void)common::respond_to_chunk_request(r, source, common::ChunkBudget{}, [&](v1::ChunkData&& d) {
        ++chunks;
        runtime.execute(engine.on_chunk(std::move(d), now), now);
      });
    }
  }
  ::close(image);
  ::close(hash_table);
  if (!runtime.reboot_requested()) {
    std::cerr << "session did not reach the reboot into the new slot (state "
              << client::engine_state_name(engine.state()) << ")\n";
    return 1;
  }
  std::printf("%ld %ld %llu\n", baseline, status_kib("VmHWM:"), static_cast<unsigned long long>(chunks));
  return 0;
}

struct Figures {
  long baseline_kib = 0;
  long peak_kib = 0;
  unsigned long long chunks = 0;
};

// Runs one session in a freshly exec'ed copy of this program, so its peak RSS holds nothing of
// the parent (fork alone would inherit the pages the parent touched while signing).
Figures run_child(const char* self, const std::filesystem::path& dir, const common::Ed25519PublicKey& pub,
                  std::uint32_t persist_every) {
  int fds[2];
  if (::pipe(fds) != 0) std::exit(1);
  std::cout.flush();  // the child must not inherit unflushed output
  std::fflush(stdout);
  const std::string key_hex = common::to_hex(pub.raw());
  const std::string persist = std::to_string(persist_every);
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(fds[1], 1);
    ::execl(self, self, "--session", dir.c_str(), key_hex.c_str(), persist.c_str(),
            static_cast<char*>(nullptr));
    ::_exit(127);
  }
  ::close(fds[1]);
  std::string out;
  char buf[256];
  ssize_t n;
  while ((n = ::read(fds[0], buf, sizeof buf)) > 0) out.append(buf, static_cast<std::size_t>(n));
  ::close(fds[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  Figures f;
  if (!WIFEXITED(status)) std::cerr << "session killed by signal " << WTERMSIG(status) << "\n";
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 ||
      std::sscanf(out.c_str(), "%ld %ld %llu", &f.baseline_kib, &f.peak_kib, &f.chunks) != 3) {
    std::cerr << "session in " << dir << " failed\n";
    std::exit(1);
  }
  return f;
}

std::uintmax_t stripped_size(const std::string& archive) {
  const std::string copy = "/tmp/fota-footprint-stripped.a";
  const std::string cmd = "strip --strip-unneeded -o " + copy + " '" + archive + "' 2>/dev/null";
  if (std::system(cmd.c_str()) != 0) return 0;
  const auto size = std::filesystem::file_size(copy);
  std::filesystem::remove(copy);
  return size;
}

void print_archives(const char* title, const std::string& list) {
  std::uintmax_t total = 0;
  std::stringstream ss(list);
  std::string path;
  std::cout << title << "\n";
  while (std::getline(ss, path, '|')) {
    const auto size = stripped_size(path);
    total += size;
    std::cout << "  " << std::filesystem::path(path).filename().string() << ": " << size / 1024 << " KiB\n";
  }
  std::cout << "  total: " << total / 1024 << " KiB\n";
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 5 && std::string(argv[1]) == "--session") {
    auto raw = common::from_hex(argv[3]);
    auto pub = raw.ok() ? common::Ed25519PublicKey::from_raw(*raw)
                        : common::Result<common::Ed25519PublicKey>(raw.error());
    if (!pub.ok()) return 2;
    const int code = session(argv[2], *pub, static_cast<std::uint32_t>(std::atoi(argv[4])));
    std::fflush(stdout);
    return code;
  }
  bool smoke = false;
  std::filesystem::path work_dir = "/dev/shm";
  for (int i = 1; i < argc; ++i) {
    if (std::string(argv[i]) == "--smoke") {
      smoke = true;
    } else {
      work_dir = argv[i];
    }
  }
  const std::filesystem::path root = work_dir / ("fota-footprint-" + std::to_string(::getpid()));
  auto key = std::move(common::Ed25519PrivateKey::generate()).value();
  struct Case {
    const char* name;
    std::uint64_t size;
    std::uint32_t chunk;
    std::uint32_t persist_every;
  };
  // Pairs of a small and a large image per chunk size: the peak must not grow with the image.
  // The smoke run keeps one image per pair above 512 chunks (a manifest with a hash table).
  const std::vector<Case> cases =
      smoke ? std::vector<Case>{
                  {"256 KiB, 16 KiB chunks", std::uint64_t{256} << 10, 16 * 1024, 1},
                  {"9 MiB, 16 KiB chunks", std::uint64_t{9} << 20, 16 * 1024, 1},
                  {"1 MiB, 256 KiB chunks", std::uint64_t{1} << 20, 256 * 1024, 1},
                  {"4 MiB, 256 KiB chunks", std::uint64_t{4} << 20, 256 * 1024, 1},
              }
            : std::vector<Case>{
                  {"16 MiB, 16 KiB chunks", std::uint64_t{16} << 20, 16 * 1024, 1},
                  {"1 GiB, 16 KiB chunks", std::uint64_t{1} << 30, 16 * 1024, 1},
                  {"16 MiB, 256 KiB chunks", std::uint64_t{16} << 20, 256 * 1024, 1},
                  {"1 GiB, 256 KiB chunks", std::uint64_t{1} << 30, 256 * 1024, 1},
              };
  std::cout << "Update session peak RSS (engine + A/B file slots + journal; work dir " << root.parent_path()
            << ")\n";
  std::vector<Figures> figures;
  for (const Case& c : cases) {
    const auto dir = root / std::to_string(figures.size());
    prepare(dir, c.size, c.chunk, key);
    const Figures f = run_child(argv[0], dir, key.public_key(), c.persist_every);
    figures.push_back(f);
    std::cout << "  " << c.name << ": " << f.chunks << " chunks served (image + hash table), RSS before "
              << f.baseline_kib << " KiB, peak " << f.peak_kib << " KiB, growth "
              << (f.peak_kib - f.baseline_kib) << " KiB\n";
    std::filesystem::remove_all(dir);
  }
  std::cout << "Peak difference " << cases[1].name << " - " << cases[0].name << ": "
            << (figures[1].peak_kib - figures[0].peak_kib) << " KiB; " << cases[3].name << " - "
            << cases[2].name << ": " << (figures[3].peak_kib - figures[2].peak_kib)
            << " KiB (target <= 256 KiB)\n";
  std::filesystem::remove_all(root);
  print_archives("Client libraries, stripped (excluding Paho, OpenSSL, protobuf):", FOTA_CLIENT_ARCHIVES);
  print_archives("Shared common libraries they need, stripped:", FOTA_COMMON_ARCHIVES);
  return 0;
}

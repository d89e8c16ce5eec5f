// SPDX-License-Identifier: Apache-2.0
// What an update from OLD to NEW costs on the wire and on the device, sent four ways, all measured
// in the same run (issue 22; docs/BENCHMARKS.md, "Delta updates"):
//  - full: every byte of NEW, as a fota artifact sends it today (the baseline);
//  - dedup: only the chunks of NEW (at the artifact chunk size) whose SHA-256 matches no chunk of
//    OLD: what a device that reuses its active slot's chunks still downloads;
//  - zstd: a zstd patch from OLD (libzstd, --patch-from: OLD as prefix, long-distance matching,
//    level 19), applied the way a device would: OLD and NEW's slot memory-mapped, one pass;
//  - xdelta3 and bsdiff: Debian's command line tools (VCDIFF; bsdiff 4), for comparison.
// Each patch is applied in a child process and its output checked against NEW's SHA-256; the
// device-side figures are that child's CPU time (user + system) and memory: peak resident set
// (including the pages of the mapped slots it touched) and, for the zstd decoder, its anonymous
// memory (heap) at the end of the pass.
//
// Usage: fota_delta_bench [--smoke] [--chunk-size BYTES] [--level N] [--tools zstd,xdelta3,bsdiff]
//                         [DIR | OLD NEW [OLD NEW...]]
//   DIR: a directory made by bench/delta/make-images.sh (rootfs-v1/v2.ext4, app-v1/v2.tar).
//   --smoke: a synthetic 2 MiB pair in a temporary directory (the suite's bench-smoke check).
#include <fcntl.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zstd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <random>
#include <sstream>
#include <string>
#include <unordered_set>
#include <vector>

#include "fota/common/codec.hpp"
#include "fota/common/crypto.hpp"

extern char** environ;

namespace {

using namespace fota;
namespace fs = std::filesystem;

[[noreturn]] void die(const std::string& what) {
  std::cerr << "fota_delta_bench: " << what << "\n";
  std::exit(1);
}

double wall_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

double cpu_of(const rusage& ru) {
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

// A read-only view of a whole file.
class MappedFile {
 public:
  explicit MappedFile(const fs::path& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) die("cannot open " + path.string() + ": " + std::strerror(errno));
    struct stat st {};
    ::fstat(fd, &st);
    size_ = static_cast<std::size_t>(st.st_size);
    if (size_ > 0) {
      data_ = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
      if (data_ == MAP_FAILED) die("cannot map " + path.string() + ": " + std::strerror(errno));
    }
    ::close(fd);
  }
  ~MappedFile() {
    if (size_ > 0) ::munmap(data_, size_);
  }
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  const char* data() const { return static_cast<const char*>(data_); }
  std::size_t size() const { return size_; }
  std::string_view view() const { return {data(), size_}; }

 private:
  void* data_ = nullptr;
  std::size_t size_ = 0;
};

std::string hex_digest(std::string_view data) {
  const auto d = common::Sha256::digest(data);
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (auto b : d) {
    out += hex[b >> 4];
    out += hex[b & 15];
  }
  return out;
}

std::string file_digest(const fs::path& path) {
  MappedFile f(path);
  return hex_digest(f.view());
}

// Bytes a device reusing its active slot still downloads: NEW's chunks whose hash OLD lacks.
std::uint64_t dedup_bytes(std::string_view old_image, std::string_view new_image, std::size_t chunk) {
  std::unordered_set<std::string> have;
  for (std::size_t at = 0; at < old_image.size(); at += chunk) {
    const auto d = common::Sha256::digest(old_image.substr(at, chunk));
    have.emplace(reinterpret_cast<const char*>(d.data()), d.size());
  }
  std::uint64_t missing = 0;
  for (std::size_t at = 0; at < new_image.size(); at += chunk) {
    const std::string_view piece = new_image.substr(at, chunk);
    const auto d = common::Sha256::digest(piece);
    if (!have.count(std::string(reinterpret_cast<const char*>(d.data()), d.size()))) missing += piece.size();
  }
  return missing;
}

struct Run {
  double cpu_seconds = 0;
  long peak_rss_kib = 0;
  long heap_kib = -1;  // measured for the zstd decoder only
};

// Runs argv to completion in a fresh process and returns its CPU time and peak RSS. A child's
// ru_maxrss counts the memory of the process that forked it (the spawn shares it until exec), so
// the command runs under `fota_delta_bench --measure`, a small process of its own, that reports
// its child's figures.
Run run_tool(const std::vector<std::string>& argv, const fs::path& work) {
  const fs::path report = work / "measure.txt";
  std::vector<std::string> full = {"/proc/self/exe", "--measure", report.string(), "--"};
  full.insert(full.end(), argv.begin(), argv.end());
  std::vector<char*> args;
  for (const auto& a : full) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
  pid_t pid = 0;
  const int spawned = posix_spawn(&pid, "/proc/self/exe", &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (spawned != 0) die("cannot start " + argv[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  Run run;
  std::ifstream(report) >> run.cpu_seconds >> run.peak_rss_kib >> run.heap_kib;
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::string line;
    for (const auto& a : argv) line += a + " ";
    die("failed: " + line + "(a tool is missing? scripts/install-deps.sh installs xdelta3 and bsdiff)");
  }
  fs::remove(report);
  return run;
}

// `--measure REPORT -- COMMAND...`: runs COMMAND, writes "cpu_seconds peak_rss_kib heap_kib" to
// REPORT (heap_kib from the file COMMAND may leave at REPORT.heap, else -1), exits with its status.
int measure_main(const fs::path& report, char** command) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::execvp(command[0], command);
    _exit(127);
  }
  int status = 0;
  rusage ru{};
  ::wait4(pid, &status, 0, &ru);
  long heap = -1;
  std::ifstream(report.string() + ".heap") >> heap;
  fs::remove(report.string() + ".heap");
  std::ofstream(report) << cpu_of(ru) << " " << ru.ru_maxrss << " " << heap << "\n";
  return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}

int window_log_for(std::size_t bytes) {
  const ZSTD_bounds bounds = ZSTD_cParam_getBounds(ZSTD_c_windowLog);
  int log = bounds.lowerBound;
  while (log < bounds.upperBound && (std::size_t{1} << log) < bytes) ++log;
  return log;
}

std::string zstd_patch(std::string_view old_image, std::string_view new_image, int level) {
  ZSTD_CCtx* cctx = ZSTD_createCCtx();
  const int window_log = window_log_for(std::max(old_image.size(), new_image.size()));
  ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, level);
  ZSTD_CCtx_setParameter(cctx, ZSTD_c_enableLongDistanceMatching, 1);
  ZSTD_CCtx_setParameter(cctx, ZSTD_c_windowLog, window_log);
  ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 1);
  ZSTD_CCtx_refPrefix(cctx, old_image.data(), old_image.size());
  std::string out(ZSTD_compressBound(new_image.size()), '\0');
  const std::size_t n = ZSTD_compress2(cctx, out.data(), out.size(), new_image.data(), new_image.size());
  ZSTD_freeCCtx(cctx);
  if (ZSTD_isError(n)) die(std::string("zstd patch: ") + ZSTD_getErrorName(n));
  out.resize(n);
  return out;
}

std::string zstd_full(std::string_view image, int level) {
  ZSTD_CCtx* cctx = ZSTD_createCCtx();
  ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, level);
  std::string out(ZSTD_compressBound(image.size()), '\0');
  const std::size_t n = ZSTD_compress2(cctx, out.data(), out.size(), image.data(), image.size());
  ZSTD_freeCCtx(cctx);
  if (ZSTD_isError(n)) die(std::string("zstd: ") + ZSTD_getErrorName(n));
  out.resize(n);
  return out;
}

long rss_anon_kib() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("RssAnon:", 0) == 0) return std::strtol(line.c_str() + 8, nullptr, 10);
  }
  return -1;
}

// `--zstd-apply OLD PATCH OUT SIZE HEAP_FILE`: applies a zstd patch as a device would: OLD (the
// active slot) and OUT (the inactive slot) memory-mapped, one decompression pass straight into
// the slot; writes the anonymous memory (heap) it used to HEAP_FILE.
int zstd_apply_main(const fs::path& old_path, const fs::path& patch_path, const fs::path& out_path,
                    std::size_t new_size, const fs::path& heap_file) {
  MappedFile old_image(old_path);
  MappedFile patch(patch_path);
  const int fd = ::open(out_path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0 || ::ftruncate(fd, static_cast<off_t>(new_size)) != 0) die("cannot make " + out_path.string());
  void* slot = ::mmap(nullptr, new_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (slot == MAP_FAILED) die("cannot map " + out_path.string());
  ZSTD_DCtx* dctx = ZSTD_createDCtx();
  ZSTD_DCtx_setParameter(dctx, ZSTD_d_windowLogMax, ZSTD_dParam_getBounds(ZSTD_d_windowLogMax).upperBound);
  ZSTD_DCtx_refPrefix(dctx, old_image.data(), old_image.size());
  const std::size_t n = ZSTD_decompressDCtx(dctx, slot, new_size, patch.data(), patch.size());
  if (ZSTD_isError(n)) die(std::string("zstd apply: ") + ZSTD_getErrorName(n));
  if (n != new_size)
    die("zstd apply: the patch made " + std::to_string(n) + " bytes, not " + std::to_string(new_size));
  const long heap = rss_anon_kib();
  ::msync(slot, new_size, MS_SYNC);
  ZSTD_freeDCtx(dctx);
  std::ofstream(heap_file) << heap;
  return 0;
}

struct Row {
  std::string method;
  std::uint64_t wire = 0;
  double make_seconds = 0;  // on the server
  Run apply;                // on the device
  bool applies = false;
};

void print_pair(const std::string& name, std::uint64_t old_size, std::uint64_t new_size,
                const std::vector<Row>& rows) {
  std::printf("\n%s: old %llu bytes, new %llu bytes\n", name.c_str(),
              static_cast<unsigned long long>(old_size), static_cast<unsigned long long>(new_size));
  std::printf("  %-22s %14s %9s %10s %14s %14s %12s\n", "method", "wire bytes", "of full", "make s",
              "device cpu s", "device peak", "device heap");
  const double full = static_cast<double>(rows.front().wire);
  for (const Row& r : rows) {
    char cpu[32] = "-", peak[32] = "-", heap[32] = "-";
    if (r.applies) {
      std::snprintf(cpu, sizeof cpu, "%.2f", r.apply.cpu_seconds);
      std::snprintf(peak, sizeof peak, "%ld KiB", r.apply.peak_rss_kib);
      if (r.apply.heap_kib >= 0) std::snprintf(heap, sizeof heap, "%ld KiB", r.apply.heap_kib);
    }
    std::printf("  %-22s %14llu %8.2f%% %10.2f %14s %14s %12s\n", r.method.c_str(),
                static_cast<unsigned long long>(r.wire), 100.0 * static_cast<double>(r.wire) / full,
                r.make_seconds, cpu, peak, heap);
  }
  std::fflush(stdout);  // a long run shows each pair as it ends
}

void bench_pair(const std::string& name, const std::string& stem, const fs::path& old_path,
                const fs::path& new_path, const fs::path& work, std::size_t chunk, int level,
                const std::vector<std::string>& tools) {
  MappedFile old_image(old_path);
  MappedFile new_image(new_path);
  const std::string want = hex_digest(new_image.view());
  std::vector<Row> rows;
  rows.push_back({"full (today)", new_image.size(), 0, {}, false});

  double t = wall_seconds();
  const std::uint64_t reused = dedup_bytes(old_image.view(), new_image.view(), chunk);
  rows.push_back(
      {"dedup (" + std::to_string(chunk / 1024) + " KiB chunks)", reused, wall_seconds() - t, {}, false});

  t = wall_seconds();
  const std::string compressed = zstd_full(new_image.view(), level);
  rows.push_back({"full, zstd -" + std::to_string(level), compressed.size(), wall_seconds() - t, {}, false});

  const fs::path out = work / (stem + ".out");
  auto check = [&](const std::string& method) {
    if (file_digest(out) != want) die(method + ": the patched image differs from the new one");
    fs::remove(out);
  };
  for (const std::string& tool : tools) {
    const fs::path patch = work / (stem + "." + tool);
    Row row;
    row.applies = true;
    if (tool == "zstd") {
      t = wall_seconds();
      const std::string p = zstd_patch(old_image.view(), new_image.view(), level);
      row.make_seconds = wall_seconds() - t;
      std::ofstream(patch, std::ios::binary) << p;
      row.method = "zstd --patch-from -" + std::to_string(level);
      row.wire = p.size();
      row.apply = run_tool({"/proc/self/exe", "--zstd-apply", old_path.string(), patch.string(), out.string(),
                            std::to_string(new_image.size()), (work / "measure.txt.heap").string()},
                           work);
    } else if (tool == "xdelta3") {
      // The source window spans the whole old image, as zstd's does.
      const std::string window = std::to_string(std::max<std::size_t>(old_image.size(), 1 << 24));
      t = wall_seconds();
      run_tool({"xdelta3", "-e", "-9", "-f", "-B", window, "-s", old_path.string(), new_path.string(),
                patch.string()},
               work);
      row.make_seconds = wall_seconds() - t;
      row.method = "xdelta3 -9";
      row.wire = fs::file_size(patch);
      row.apply = run_tool(
          {"xdelta3", "-d", "-f", "-B", window, "-s", old_path.string(), patch.string(), out.string()}, work);
    } else if (tool == "bsdiff") {
      t = wall_seconds();
      run_tool({"bsdiff", old_path.string(), new_path.string(), patch.string()}, work);
      row.make_seconds = wall_seconds() - t;
      row.method = "bsdiff 4";
      row.wire = fs::file_size(patch);
      row.apply = run_tool({"bspatch", old_path.string(), out.string(), patch.string()}, work);
    } else {
      die("unknown tool " + tool + " (zstd, xdelta3, bsdiff)");
    }
    check(row.method);
    fs::remove(patch);
    rows.push_back(row);
  }
  print_pair(name, old_image.size(), new_image.size(), rows);
}

// 2 MiB of a file system's worth of varied data and v2 = v1 with edits, insertions and moves.
void make_smoke_pair(const fs::path& dir) {
  std::mt19937_64 rng(22);
  std::string v1(2 << 20, '\0');
  for (std::size_t at = 0; at < v1.size(); at += 4096) {
    if (at % (64 << 10) < (48 << 10)) {  // some text-like, some random, some zero blocks
      for (std::size_t i = at; i < at + 4096; ++i) v1[i] = static_cast<char>('a' + rng() % 26);
    } else if (at % (64 << 10) < (60 << 10)) {
      for (std::size_t i = at; i < at + 4096; i += 8) {
        const auto r = rng();
        std::memcpy(&v1[i], &r, 8);
      }
    }
  }
  std::string v2 = v1;
  for (int i = 0; i < 40; ++i) {  // small edits
    const std::size_t at = rng() % (v2.size() - 64);
    for (std::size_t k = 0; k < 32; ++k) v2[at + k] = static_cast<char>(rng());
  }
  v2.insert(v2.size() / 3, std::string(1000, 'X'));  // a shift
  v2.resize(v1.size());
  std::ofstream(dir / "old.bin", std::ios::binary) << v1;
  std::ofstream(dir / "new.bin", std::ios::binary) << v2;
}

std::vector<std::string> split(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream ss(text);
  for (std::string item; std::getline(ss, item, ',');)
    if (!item.empty()) out.push_back(item);
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 4 && std::string(argv[1]) == "--measure" && std::string(argv[3]) == "--")
    return measure_main(argv[2], argv + 4);
  if (argc == 7 && std::string(argv[1]) == "--zstd-apply")
    return zstd_apply_main(argv[2], argv[3], argv[4], std::stoul(argv[5]), argv[6]);
  bool smoke = false;
  std::size_t chunk = common::kDefaultChunkSize;
  int level = 19;
  std::vector<std::string> tools = {"zstd", "xdelta3", "bsdiff"};
  std::vector<std::string> paths;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) die(arg + " needs a value");
      return argv[++i];
    };
    if (arg == "--smoke") {
      smoke = true;
    } else if (arg == "--chunk-size") {
      chunk = std::stoul(value());
    } else if (arg == "--level") {
      level = std::stoi(value());
    } else if (arg == "--tools") {
      tools = split(value());
    } else if (!arg.empty() && arg[0] == '-') {
      die("unknown option " + arg +
          "; usage: fota_delta_bench [--smoke] [--chunk-size BYTES] [--level N] [--tools "
          "zstd,xdelta3,bsdiff] "
          "[DIR | OLD NEW ...]");
    } else {
      paths.push_back(arg);
    }
  }
  if (chunk < 1024) die("--chunk-size must be at least 1024");

  char work_template[] = "/tmp/fota-delta-XXXXXX";
  if (::mkdtemp(work_template) == nullptr) die("cannot make a work directory in /tmp");
  const fs::path work = work_template;
  std::vector<std::pair<std::string, std::pair<fs::path, fs::path>>> pairs;
  if (smoke) {
    make_smoke_pair(work);
    pairs.push_back({"synthetic-2MiB", {work / "old.bin", work / "new.bin"}});
  } else if (paths.size() == 1 && fs::is_directory(paths[0])) {
    const fs::path dir = paths[0];
    pairs.push_back({"rootfs (ext4)", {dir / "rootfs-v1.ext4", dir / "rootfs-v2.ext4"}});
    pairs.push_back({"application bundle (tar)", {dir / "app-v1.tar", dir / "app-v2.tar"}});
    for (const auto& [name, files] : pairs) {
      if (!fs::exists(files.first) || !fs::exists(files.second))
        die(dir.string() + " lacks " + files.first.filename().string() + " or " +
            files.second.filename().string() + ": make it with bench/delta/make-images.sh " + dir.string());
    }
  } else if (!paths.empty() && paths.size() % 2 == 0) {
    for (std::size_t i = 0; i < paths.size(); i += 2)
      pairs.push_back({fs::path(paths[i + 1]).filename().string(), {paths[i], paths[i + 1]}});
  } else {
    die("give --smoke, a directory from bench/delta/make-images.sh, or OLD NEW pairs");
  }
  std::printf("delta bench: chunk size %zu, zstd level %d, tools:", chunk, level);
  for (const auto& t : tools) std::printf(" %s", t.c_str());
  std::printf("\n");
  for (std::size_t i = 0; i < pairs.size(); ++i) {
    bench_pair(pairs[i].first, "pair" + std::to_string(i), pairs[i].second.first, pairs[i].second.second,
               work, chunk, level, tools);
  }
  fs::remove_all(work);
  return 0;
}

// File and update-module installers, and the router that picks an installer per slot name.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <vector>

#include "fota/client/installer.hpp"
#include "fota/client/runtime.hpp"
#include "fota/common/crypto.hpp"

namespace fota::client {
namespace {

using common::Errc;
using common::Error;

Error io_error(const std::string& what, const std::filesystem::path& path) {
  return Error(Errc::kIo, what + " " + path.string() + ": " + std::strerror(errno));
}

std::filesystem::path with_suffix(const std::filesystem::path& p, const char* suffix) {
  return p.string() + suffix;
}

common::Status write_at(const std::filesystem::path& path, std::uint64_t offset, std::string_view data) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return io_error("cannot open", path);
  std::size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::pwrite(fd, data.data() + done, data.size() - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      Error e = io_error("cannot write", path);
      ::close(fd);
      return e;
    }
    done += static_cast<std::size_t>(n);
  }
  const bool synced = ::fdatasync(fd) == 0;
  ::close(fd);
  if (!synced) return io_error("cannot sync", path);
  return common::ok_status();
}

common::Status create_sized(const std::filesystem::path& path, std::uint64_t size, bool resume) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC | (resume ? 0 : O_TRUNC), 0644);
  if (fd < 0) return io_error("cannot create", path);
  const bool ok = ::ftruncate(fd, static_cast<off_t>(size)) == 0;
  ::close(fd);
  if (!ok) return io_error("cannot size", path);
  return common::ok_status();
}

common::Result<std::string> hash_prefix(const std::filesystem::path& path, std::uint64_t size) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return io_error("cannot open", path);
  common::Sha256 sha;
  std::vector<char> buffer(64 * 1024);
  std::uint64_t done = 0;
  while (done < size) {
    const ssize_t n = ::pread(fd, buffer.data(), std::min<std::uint64_t>(buffer.size(), size - done),
                              static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      ::close(fd);
      return Error(Errc::kIo, path.string() + " is shorter than the image");
    }
    sha.update(buffer.data(), static_cast<std::size_t>(n));
    done += static_cast<std::uint64_t>(n);
  }
  ::close(fd);
  return common::digest_bytes(sha.finish());
}

void sync_dir(const std::filesystem::path& file) {
  const int fd = ::open(file.parent_path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
}

bool starts_with(const std::string& s, const char* prefix) { return s.rfind(prefix, 0) == 0; }

}  // namespace

// ---- FileInstaller -------------------------------------------------------------------------
FileInstaller::FileInstaller(std::map<std::string, std::filesystem::path> targets)
    : targets_(std::move(targets)) {}

common::Result<std::filesystem::path> FileInstaller::path_of(const std::string& target) const {
  auto it = targets_.find(target);
  if (it == targets_.end()) {
    return Error(Errc::kInvalidArgument,
                 "no file target named '" + target + "' is configured on this device");
  }
  return it->second;
}

common::Status FileInstaller::prepare(const std::string& target, std::uint64_t image_size, bool resume) {
  auto path = path_of(target);
  if (!path.ok()) return path.error();
  return create_sized(with_suffix(*path, ".fota-new"), image_size, resume);
}

common::Status FileInstaller::write(const std::string& target, std::uint64_t offset, std::string_view data) {
  auto path = path_of(target);
  if (!path.ok()) return path.error();
  return write_at(with_suffix(*path, ".fota-new"), offset, data);
}

common::Result<std::string> FileInstaller::hash(const std::string& target, std::uint64_t size) {
  auto path = path_of(target);
  if (!path.ok()) return path.error();
  return hash_prefix(with_suffix(*path, ".fota-new"), size);
}

common::Status FileInstaller::activate(const std::string& target) {
  auto path = path_of(target);
  if (!path.ok()) return path.error();
  const auto staged = with_suffix(*path, ".fota-new");
  const auto previous = with_suffix(*path, ".fota-prev");
  const auto absent = with_suffix(*path, ".fota-absent");
  std::error_code ec;
  if (!std::filesystem::exists(staged, ec)) {
    // Already activated before a restart: the backup (or absence marker) proves it.
    if (std::filesystem::exists(previous, ec) || std::filesystem::exists(absent, ec))
      return common::ok_status();
    return Error(Errc::kNotFound, "nothing staged for '" + target + "' at " + staged.string());
  }
  std::filesystem::remove(previous, ec);
  if (std::filesystem::exists(*path, ec)) {
    // A hard link keeps the old file intact while the rename below replaces the name.
    if (::link(path->c_str(), previous.c_str()) != 0) return io_error("cannot keep a backup of", *path);
  } else if (auto s = write_file_atomically(absent, ""); !s.ok()) {
    return s;
  }
  if (::rename(staged.c_str(), path->c_str()) != 0) return io_error("cannot replace", *path);
  sync_dir(*path);
  return common::ok_status();
}

common::Status FileInstaller::commit(const std::string& target) {
  auto path = path_of(target);
  if (!path.ok()) return path.error();
  std::error_code ec;
  std::filesystem::remove(with_suffix(*path, ".fota-prev"), ec);
  std::filesystem::remove(with_suffix(*path, ".fota-absent"), ec);
  sync_dir(*path);
  return common::ok_status();
}

common::Status FileInstaller::revert(const std::string& target) {
  auto path = path_of(target);
  if (!path.ok()) return path.error();
  const auto previous = with_suffix(*path, ".fota-prev");
  const auto absent = with_suffix(*path, ".fota-absent");
  std::error_code ec;
  if (std::filesystem::exists(previous, ec)) {
    if (::rename(previous.c_str(), path->c_str()) != 0) return io_error("cannot restore", *path);
  } else if (std::filesystem::exists(absent, ec)) {
    std::filesystem::remove(*path, ec);
    std::filesystem::remove(absent, ec);
  }
  std::filesystem::remove(with_suffix(*path, ".fota-new"), ec);
  sync_dir(*path);
  return common::ok_status();
}

// ---- ModuleInstaller -----------------------------------------------------------------------
ModuleInstaller::ModuleInstaller(std::filesystem::path modules_dir, std::filesystem::path work_dir,
                                 std::chrono::milliseconds timeout)
    : modules_dir_(std::move(modules_dir)), work_dir_(std::move(work_dir)), timeout_(timeout) {}

std::filesystem::path ModuleInstaller::image_path(const std::string& module) const {
  return work_dir_ / (module + ".image");
}

common::Status ModuleInstaller::prepare(const std::string& module, std::uint64_t image_size, bool resume) {
  if (module.empty() || module.find('/') != std::string::npos || module[0] == '.') {
    return Error(Errc::kInvalidArgument, "update module name '" + module + "' is not a plain file name");
  }
  std::error_code ec;
  if (::access((modules_dir_ / module).c_str(), X_OK) != 0) {
    return Error(Errc::kNotFound, "no executable update module " + (modules_dir_ / module).string());
  }
  std::filesystem::create_directories(work_dir_, ec);
  return create_sized(image_path(module), image_size, resume);
}

common::Status ModuleInstaller::write(const std::string& module, std::uint64_t offset,
                                      std::string_view data) {
  return write_at(image_path(module), offset, data);
}

common::Result<std::string> ModuleInstaller::hash(const std::string& module, std::uint64_t size) {
  return hash_prefix(image_path(module), size);
}

common::Status ModuleInstaller::activate(const std::string& module) { return run(module, "install"); }
common::Status ModuleInstaller::commit(const std::string& module) { return run(module, "commit"); }
common::Status ModuleInstaller::revert(const std::string& module) { return run(module, "rollback"); }

common::Status ModuleInstaller::run(const std::string& module, const std::string& verb) {
  const std::filesystem::path exe = modules_dir_ / module;
  int to_child[2];
  int from_child[2];
  if (::pipe2(to_child, O_CLOEXEC) != 0) return io_error("pipe for", exe);
  if (::pipe2(from_child, O_CLOEXEC) != 0) {
    ::close(to_child[0]);
    ::close(to_child[1]);
    return io_error("pipe for", exe);
  }
  const pid_t pid = ::fork();
  if (pid < 0) return io_error("cannot start", exe);
  if (pid == 0) {
    ::dup2(to_child[0], 0);
    ::dup2(from_child[1], 1);
    ::execl(exe.c_str(), exe.c_str(), verb.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  ::close(to_child[0]);
  ::close(from_child[1]);
  std::error_code ec;
  std::string input = "image=" + image_path(module).string() +
                      "\nimage_size=" + std::to_string(std::filesystem::file_size(image_path(module), ec)) +
                      "\nwork_dir=" + work_dir_.string() + "\n";
  // The module may not read stdin at all: ignore EPIPE.
  auto* old = ::signal(SIGPIPE, SIG_IGN);
  (void)!::write(to_child[1], input.data(), input.size());
  ::signal(SIGPIPE, old);
  ::close(to_child[1]);
  std::string output;
  const auto deadline = std::chrono::steady_clock::now() + timeout_;
  bool timed_out = false;
  char buffer[4096];
  for (;;) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      timed_out = true;
      break;
    }
    pollfd pfd{from_child[0], POLLIN, 0};
    const int r = ::poll(&pfd, 1, static_cast<int>(std::min<std::int64_t>(left.count(), 1000)));
    if (r < 0 && errno == EINTR) continue;
    if (r == 0) continue;
    const ssize_t n = ::read(from_child[0], buffer, sizeof buffer);
    if (n <= 0) break;
    if (output.size() < 64 * 1024) output.append(buffer, static_cast<std::size_t>(n));
  }
  ::close(from_child[0]);
  if (timed_out) ::kill(pid, SIGKILL);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (timed_out) {
    return Error(Errc::kUnavailable, "update module " + module + " " + verb + " did not finish within " +
                                         std::to_string(timeout_.count()) + " ms");
  }
  // The last non-empty line is the verdict.
  std::string last;
  std::size_t end = output.find_last_not_of("\n\r ");
  if (end != std::string::npos) {
    const std::size_t start = output.find_last_of('\n', end);
    last = output.substr(start == std::string::npos ? 0 : start + 1,
                         end - (start == std::string::npos ? 0 : start + 1) + 1);
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0 && last == "ok") return common::ok_status();
  const std::string why = last.rfind("error ", 0) == 0 ? last.substr(6)
                          : WIFEXITED(status) ? "exit status " + std::to_string(WEXITSTATUS(status)) +
                                                    (last.empty() ? "" : ", last line '" + last + "'")
                                              : "killed by a signal";
  return Error(Errc::kIo, "update module " + module + " " + verb + " failed: " + why);
}

// ---- PayloadRouter -------------------------------------------------------------------------
PayloadRouter::PayloadRouter(AbSlotInstaller& slots, FileInstaller* files, ModuleInstaller* modules)
    : slots_(slots), files_(files), modules_(modules) {}

#define FOTA_ROUTE(slot, call_file, call_module, call_ab)                                                 \
  do {                                                                                                    \
    if (starts_with(slot, kFileSlotPrefix)) {                                                             \
      if (files_ == nullptr) return Error(Errc::kInvalidArgument, "this device has no file installer");   \
      const std::string name = slot.substr(sizeof(kFileSlotPrefix) - 1);                                  \
      return files_->call_file;                                                                           \
    }                                                                                                     \
    if (starts_with(slot, kModuleSlotPrefix)) {                                                           \
      if (modules_ == nullptr) return Error(Errc::kInvalidArgument, "this device has no update modules"); \
      const std::string name = slot.substr(sizeof(kModuleSlotPrefix) - 1);                                \
      return modules_->call_module;                                                                       \
    }                                                                                                     \
    return slots_.call_ab;                                                                                \
  } while (false)

common::Result<BootStatus> PayloadRouter::boot_status() { return slots_.boot_status(); }

common::Status PayloadRouter::prepare(const action::PrepareSlot& p) {
  FOTA_ROUTE(p.slot, prepare(name, p.image_size, p.resume), prepare(name, p.image_size, p.resume),
             prepare(p));
}
common::Status PayloadRouter::write(const std::string& slot, std::uint64_t offset, std::string_view data) {
  FOTA_ROUTE(slot, write(name, offset, data), write(name, offset, data), write(slot, offset, data));
}
common::Status PayloadRouter::sync() { return slots_.sync(); }
common::Result<std::string> PayloadRouter::hash(const std::string& slot, std::uint64_t size) {
  FOTA_ROUTE(slot, hash(name, size), hash(name, size), hash(slot, size));
}
common::Status PayloadRouter::activate(const std::string& slot) {
  FOTA_ROUTE(slot, activate(name), activate(name), activate(slot));
}
common::Status PayloadRouter::commit(const std::string& slot) {
  FOTA_ROUTE(slot, commit(name), commit(name), commit(slot));
}
common::Status PayloadRouter::revert(const std::string& slot) {
  FOTA_ROUTE(slot, revert(name), revert(name), revert(slot));
}

#undef FOTA_ROUTE

}  // namespace fota::client

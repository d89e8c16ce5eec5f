// SPDX-License-Identifier: Apache-2.0
// File and update-module installers, and the router that picks an installer per slot name.
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <optional>
#include <utility>
#include <vector>

#include "fota/client/installer.hpp"
#include "fota/client/runtime.hpp"
#include "fota/common/crypto.hpp"
#include "fota/common/process.hpp"

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
namespace {

// The fixed PATH of every module: the agent's own PATH is not a module's business.
constexpr const char* kModulePath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

// Between RLIMIT_CPU's SIGXCPU and its SIGKILL.
constexpr rlim_t kCpuHardLimitGraceSeconds = 5;

// getpwnam_r and getgrnam_r want a buffer of a size sysconf only suggests: grown on ERANGE (a
// group with many members).
template <typename Entry, typename Lookup>
int look_up(const std::string& name, int size_hint, Entry& entry, Entry*& found, std::vector<char>& buffer,
            Lookup lookup) {
  const long hint = ::sysconf(size_hint);
  buffer.resize(hint > 0 ? static_cast<std::size_t>(hint) : 16384);
  for (;;) {
    const int rc = lookup(name.c_str(), &entry, buffer.data(), buffer.size(), &found);
    if (rc != ERANGE || buffer.size() >= (std::size_t{1} << 24)) return rc;
    buffer.resize(buffer.size() * 2);
  }
}

std::string lookup_failure(const char* what, const std::string& name, int rc, const char* remedy) {
  return std::string("module ") + what + " '" + name + "' " +
         (rc != 0 ? std::string("cannot be looked up: ") + std::strerror(rc)
                  : "does not exist on this device") +
         " (" + remedy + ")";
}

// The user's uid and primary gid.
common::Result<std::pair<uid_t, gid_t>> find_user(const std::string& name) {
  passwd pw{};
  passwd* found = nullptr;
  std::vector<char> buffer;
  const int rc = look_up(name, _SC_GETPW_R_SIZE_MAX, pw, found, buffer, ::getpwnam_r);
  if (found == nullptr) {
    return Error(Errc::kInvalidArgument, lookup_failure("user", name, rc,
                                                        ("create it, e.g. useradd --system " + name +
                                                         ", or set module_user to an "
                                                         "existing one")
                                                            .c_str()));
  }
  return std::make_pair(pw.pw_uid, pw.pw_gid);
}

common::Result<gid_t> find_group(const std::string& name) {
  group gr{};
  group* found = nullptr;
  std::vector<char> buffer;
  const int rc = look_up(name, _SC_GETGR_R_SIZE_MAX, gr, found, buffer, ::getgrnam_r);
  if (found == nullptr) {
    return Error(Errc::kInvalidArgument,
                 lookup_failure("group", name, rc, "create it or set module_group to an existing one"));
  }
  return gr.gr_gid;
}

rlim_t as_rlimit(std::uint64_t value) {
  return value == ModuleSandbox::kUnlimited ? RLIM_INFINITY : static_cast<rlim_t>(value);
}

std::string signal_name(int sig) {
  const char* abbrev = ::sigabbrev_np(sig);
  return abbrev != nullptr ? std::string("SIG") + abbrev : "signal " + std::to_string(sig);
}

// A module's stdout and stderr, split into lines for the log stream within the sandbox's caps.
// It holds one partial line per stream and the last stdout line (the verdict), never more: a
// module that floods its output costs the agent CPU until its time limit, not memory.
class ModuleOutput {
 public:
  ModuleOutput(const ModuleSandbox& caps, const InstallerLogSink& sink, std::string source, std::string verb)
      : caps_(caps), sink_(sink), source_(std::move(source)), verb_(std::move(verb)) {}

  void feed(int stream, const char* data, std::size_t size) {
    Partial& p = partial_[stream == STDERR_FILENO ? 1 : 0];
    while (size > 0) {
      const auto* newline = static_cast<const char*>(std::memchr(data, '\n', size));
      const std::size_t piece = newline != nullptr ? static_cast<std::size_t>(newline - data) : size;
      if (p.text.size() < caps_.line_bytes)
        p.text.append(data, std::min(piece, caps_.line_bytes - p.text.size()));
      if (newline == nullptr) break;
      line_done(stream, p);
      data += piece + 1;
      size -= piece + 1;
    }
  }

  // The unterminated last lines, then what was dropped.
  void finish() {
    line_done(STDOUT_FILENO, partial_[0]);
    line_done(STDERR_FILENO, partial_[1]);
    if (dropped_ > 0) {
      emit(v1::LOG_LEVEL_WARN, "dropped " + std::to_string(dropped_) + " output lines (a run sends at most " +
                                   std::to_string(caps_.output_lines) + " lines, " +
                                   std::to_string(caps_.output_bytes) +
                                   " bytes; module_limits in the device config)");
    }
  }

  const std::string& verdict() const noexcept { return verdict_; }

 private:
  struct Partial {
    std::string text;
  };

  // In place, without allocating: a flood of dropped lines must cost no heap churn either.
  void line_done(int stream, Partial& p) {
    std::string& line = p.text;
    const std::size_t end = line.find_last_not_of("\r \t");
    if (end == std::string::npos) {  // blank lines are neither logged nor verdicts
      line.clear();
      return;
    }
    line.resize(end + 1);
    if (stream == STDOUT_FILENO) verdict_.assign(line);
    if (sent_lines_ >= caps_.output_lines || sent_bytes_ + line.size() > caps_.output_bytes) {
      ++dropped_;
    } else {
      ++sent_lines_;
      sent_bytes_ += line.size();
      emit(stream == STDOUT_FILENO ? v1::LOG_LEVEL_INFO : v1::LOG_LEVEL_WARN, line);
    }
    line.clear();
  }

  void emit(v1::LogLevel level, const std::string& line) {
    if (sink_) sink_(level, verb_ + ": " + line, source_);
  }

  const ModuleSandbox& caps_;
  const InstallerLogSink& sink_;
  const std::string source_;
  const std::string verb_;
  Partial partial_[2];
  std::string verdict_;
  std::size_t sent_lines_ = 0;
  std::size_t sent_bytes_ = 0;
  std::uint64_t dropped_ = 0;
};

// Reads what is there without blocking, at most `max_reads` times (a module writing as fast as
// this reads must not keep the caller from its deadlines); false at EOF or on an error.
bool drain(int fd, int stream, ModuleOutput& output, int max_reads) {
  char buffer[16 * 1024];
  for (int reads = 0; reads < max_reads;) {
    const ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n > 0) {
      output.feed(stream, buffer, static_cast<std::size_t>(n));
      ++reads;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    return n < 0 && errno == EAGAIN;
  }
  return true;
}

// The leader has exited (it stays a zombie, keeping its process group id reserved).
bool has_exited(pid_t pid) {
  siginfo_t info{};
  if (::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) != 0) return errno != EINTR;
  return info.si_pid == pid;
}

class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() { reset(); }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const noexcept { return fd_; }
  void reset(int fd = -1) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

// A pipe whose ends are close-on-exec: other threads' children must not hold them.
bool make_pipe(Fd& read_end, Fd& write_end) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return false;
  read_end.reset(fds[0]);
  write_end.reset(fds[1]);
  return true;
}

}  // namespace

ModuleInstaller::ModuleInstaller(std::filesystem::path modules_dir, std::filesystem::path work_dir,
                                 ModuleSandbox sandbox)
    : modules_dir_(std::move(modules_dir)), work_dir_(std::move(work_dir)), sandbox_(std::move(sandbox)) {}

common::Result<std::unique_ptr<ModuleInstaller>> ModuleInstaller::create(std::filesystem::path modules_dir,
                                                                         std::filesystem::path work_dir,
                                                                         ModuleSandbox sandbox) {
  if (sandbox.timeout.count() <= 0 || sandbox.kill_grace.count() < 0) {
    return Error(Errc::kInvalidArgument, "the update module timeout must be positive");
  }
  for (const auto& [name, value] : {std::pair<const char*, std::uint64_t>{"cpu_seconds", sandbox.cpu_seconds},
                                    {"memory_bytes", sandbox.memory_bytes},
                                    {"file_size_bytes", sandbox.file_size_bytes},
                                    {"open_files", sandbox.open_files},
                                    {"processes", sandbox.processes},
                                    {"output_lines", sandbox.output_lines},
                                    {"output_bytes", sandbox.output_bytes},
                                    {"line_bytes", sandbox.line_bytes}}) {
    if (value == 0) {
      return Error(Errc::kInvalidArgument, std::string("update module limit ") + name +
                                               " is 0: no module could run (give a positive value)");
    }
  }
  std::unique_ptr<ModuleInstaller> installer(
      new ModuleInstaller(std::move(modules_dir), std::move(work_dir), std::move(sandbox)));
  ModuleInstaller& m = *installer;
  const uid_t agent_uid = ::geteuid();
  const bool agent_is_root = agent_uid == 0;
  // A name that does not exist is the first thing to fix, whatever else is wrong.
  std::optional<gid_t> group;
  if (!m.sandbox_.group.empty()) {
    auto gid = find_group(m.sandbox_.group);
    if (!gid.ok()) return gid.error();
    group = *gid;
  }
  if (m.sandbox_.user.empty()) {
    if (agent_is_root) {
      return Error(Errc::kPermissionDenied,
                   "update modules would run as root: set module_user to an unprivileged user of their own "
                   "(e.g. fota-module), or to root if they really need it");
    }
    if (!m.sandbox_.group.empty()) {
      return Error(Errc::kPermissionDenied,
                   "module_group needs module_user, and both need fota-device running as root");
    }
    m.uid_ = agent_uid;
    m.gid_ = ::getegid();
  } else {
    auto ids = find_user(m.sandbox_.user);
    if (!ids.ok()) return ids.error();
    m.uid_ = ids->first;
    m.gid_ = ids->second;
    if (group) m.gid_ = *group;
    m.switch_user_ = agent_is_root;
    if (!agent_is_root && (m.uid_ != agent_uid || m.gid_ != ::getegid())) {
      return Error(Errc::kPermissionDenied,
                   "update modules cannot run as " + m.sandbox_.user +
                       (m.sandbox_.group.empty() ? "" : ":" + m.sandbox_.group) +
                       ": fota-device runs as uid " + std::to_string(agent_uid) +
                       ", not root; run it as root or leave module_user and module_group unset");
    }
  }
  std::error_code ec;
  std::filesystem::create_directories(m.work_dir_, ec);
  if (ec) {
    return Error(Errc::kIo, "cannot create the update module work directory " + m.work_dir_.string() + ": " +
                                ec.message());
  }
  // The modules keep their state here between install, commit and rollback.
  if (m.switch_user_ && (::chown(m.work_dir_.c_str(), static_cast<uid_t>(-1), m.gid_) != 0 ||
                         ::chmod(m.work_dir_.c_str(), 0770) != 0)) {
    return io_error("cannot give the module group its work directory", m.work_dir_);
  }
  return installer;
}

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
  const std::string what = "update module " + module + " " + verb;
  Fd in_read, in_write, out_read, out_write, err_read, err_write;
  if (!make_pipe(in_read, in_write) || !make_pipe(out_read, out_write) || !make_pipe(err_read, err_write)) {
    return io_error("cannot make pipes for", exe);
  }
  std::error_code ec;
  const std::string input = "image=" + image_path(module).string() + "\nimage_size=" +
                            std::to_string(std::filesystem::file_size(image_path(module), ec)) +
                            "\nwork_dir=" + work_dir_.string() + "\n";
  // A few paths fit the pipe's buffer: written whole before the module starts, and no SIGPIPE
  // while this process holds the read end.
  if (::write(in_write.get(), input.data(), input.size()) != static_cast<ssize_t>(input.size())) {
    return io_error("cannot write the input of", exe);
  }
  in_write.reset();
  for (const Fd* fd : {&out_read, &err_read}) ::fcntl(fd->get(), F_SETFL, O_NONBLOCK);

  common::SpawnOptions options;
  options.stdin_fd = in_read.get();
  options.stdout_fd = out_write.get();
  options.stderr_fd = err_write.get();
  options.inherit_environment = false;
  options.environment = {kModulePath, "HOME=" + work_dir_.string(), "LC_ALL=C"};
  options.close_other_descriptors = true;
  options.new_session = true;
  options.no_new_privileges = true;
  if (switch_user_) options.credentials = common::ProcessCredentials{uid_, gid_};
  // RLIMIT_CPU's soft limit sends SIGXCPU (the module may clean up), its hard one SIGKILL.
  const rlim_t cpu = as_rlimit(sandbox_.cpu_seconds);
  const auto same = [](int resource, std::uint64_t value) {
    return common::ResourceLimit{resource, as_rlimit(value), as_rlimit(value)};
  };
  options.limits = {{RLIMIT_CPU, cpu, cpu == RLIM_INFINITY ? cpu : cpu + kCpuHardLimitGraceSeconds},
                    same(RLIMIT_DATA, sandbox_.memory_bytes),
                    same(RLIMIT_FSIZE, sandbox_.file_size_bytes),
                    same(RLIMIT_NOFILE, sandbox_.open_files),
                    same(RLIMIT_NPROC, sandbox_.processes)};
  options.working_directory = work_dir_;
  auto spawned = common::spawn({exe.string(), verb}, options);
  in_read.reset();
  out_write.reset();
  err_write.reset();
  if (!spawned.ok()) return Error(spawned.error().code, what + ": " + spawned.error().message);
  const pid_t pid = *spawned;  // also its process group's id (SpawnOptions::new_session)

  // The leader's exit wakes poll through a pidfd; without one (Linux < 5.3) poll wakes often.
  const Fd exit_fd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  ModuleOutput output(sandbox_, sink_, std::string(kModuleSlotPrefix) + module, verb);
  using Clock = std::chrono::steady_clock;
  const Clock::time_point term_at = Clock::now() + sandbox_.timeout;
  Clock::time_point kill_at = Clock::time_point::max();
  bool timed_out = false;
  bool out_open = true;
  bool err_open = true;
  for (;;) {
    const Clock::time_point now = Clock::now();
    if (!timed_out && now >= term_at) {
      timed_out = true;
      ::kill(-pid, SIGTERM);
      kill_at = now + sandbox_.kill_grace;
    }
    if (timed_out && now >= kill_at) {
      ::kill(-pid, SIGKILL);
      kill_at = Clock::time_point::max();
    }
    if (has_exited(pid)) break;
    const Clock::time_point next = timed_out ? kill_at : term_at;
    std::int64_t wait_ms =
        next == Clock::time_point::max()
            ? -1
            : std::max<std::int64_t>(
                  0, std::chrono::duration_cast<std::chrono::milliseconds>(next - now).count() + 1);
    if (exit_fd.get() < 0 && (wait_ms < 0 || wait_ms > 50)) wait_ms = 50;
    pollfd fds[3] = {{out_open ? out_read.get() : -1, POLLIN, 0},
                     {err_open ? err_read.get() : -1, POLLIN, 0},
                     {exit_fd.get(), POLLIN, 0}};
    const int ready = ::poll(fds, 3, static_cast<int>(std::min<std::int64_t>(wait_ms, 60'000)));
    if (ready < 0 && errno != EINTR) break;
    if (out_open && fds[0].revents != 0) out_open = drain(out_read.get(), STDOUT_FILENO, output, 64);
    if (err_open && fds[1].revents != 0) err_open = drain(err_read.get(), STDERR_FILENO, output, 64);
  }
  // Whatever the module left behind in its group goes with it; its leader, a zombie until the
  // waitpid below, keeps the group's id from being reused meanwhile.
  ::kill(-pid, SIGKILL);
  // What is left in the pipes (bounded: a process that left the group may still write).
  if (out_open) drain(out_read.get(), STDOUT_FILENO, output, 1024);
  if (err_open) drain(err_read.get(), STDERR_FILENO, output, 1024);
  int status = 0;
  pid_t reaped;
  while ((reaped = ::waitpid(pid, &status, 0)) < 0 && errno == EINTR) {
  }
  output.finish();
  if (reaped != pid) {
    // SIGCHLD ignored in this process: the kernel reaped it and its status is gone.
    return Error(Errc::kInternal, what + ": lost its exit status (" + std::strerror(errno) + ")");
  }
  if (timed_out) {
    return Error(Errc::kUnavailable, what + " did not finish within " +
                                         std::to_string(sandbox_.timeout.count()) +
                                         " ms and was killed with its process group");
  }
  const std::string& last = output.verdict();
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0 && last == "ok") return common::ok_status();
  std::string why;
  if (last.rfind("error ", 0) == 0) {
    why = last.substr(6);
  } else if (WIFEXITED(status)) {
    why = "exit status " + std::to_string(WEXITSTATUS(status)) +
          (last.empty() ? "" : ", last line '" + last + "'");
  } else {
    const int sig = WTERMSIG(status);
    why = "killed by " + signal_name(sig) + (sig == SIGXCPU ? " (it used up its cpu_seconds limit)" : "");
  }
  return Error(Errc::kIo, what + " failed: " + why);
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
common::Result<std::string> PayloadRouter::read(const std::string& slot, std::uint64_t offset,
                                                std::uint32_t size) {
  if (starts_with(slot, kFileSlotPrefix) || starts_with(slot, kModuleSlotPrefix)) {
    return Installer::read(slot, offset, size);
  }
  return slots_.read(slot, offset, size);
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
void PayloadRouter::set_log_sink(InstallerLogSink sink) {
  if (modules_ != nullptr) modules_->set_log_sink(std::move(sink));
}

#undef FOTA_ROUTE

}  // namespace fota::client

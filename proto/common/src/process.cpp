// SPDX-License-Identifier: Apache-2.0
#include "fota/common/process.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string_view>

namespace fota::common {
namespace {

// What the child reports through the pipe when a step before exec fails.
struct ChildFailure {
  int step = 0;  // index into kStepNames
  int error = 0;
  long long arg = 0;  // the id or resource of the step, for the message
};

enum Step : int {
  kStepSignals,
  kStepSetsid,
  kStepDup,
  kStepLimit,
  kStepNoNewPrivs,
  kStepSetgroups,
  kStepSetgid,
  kStepSetuid,
  kStepParentDeathSignal,
  kStepChdir,
  kStepCloseDescriptors,
  kStepExec,
};

constexpr const char* kStepNames[] = {"resetting signals",
                                      "setsid",
                                      "redirecting stdio",
                                      "setrlimit",
                                      "PR_SET_NO_NEW_PRIVS",
                                      "setgroups",
                                      "setgid",
                                      "setuid",
                                      "PR_SET_PDEATHSIG",
                                      "chdir",
                                      "closing descriptors",
                                      "execve"};

[[noreturn]] void fail_in_child(int report_fd, Step step, long long arg = 0) {
  const ChildFailure failure{step, errno, arg};
  (void)!::write(report_fd, &failure, sizeof failure);
  ::_exit(127);
}

// Marks every descriptor from 3 up close-on-exec rather than closing it: the report pipe must stay
// open until the exec. close_range (Linux 5.11) does it in one call; older kernels get
// /proc/self/fd read with the raw getdents64 syscall (opendir would allocate).
bool cloexec_all_but_stdio() {
#ifdef CLOSE_RANGE_CLOEXEC
  if (::close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) == 0) return true;
#endif
  const int dir = ::open("/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir < 0) return false;
  alignas(8) char buffer[4096];
  for (;;) {
    const long n = ::syscall(SYS_getdents64, dir, buffer, sizeof buffer);
    if (n < 0) {
      ::close(dir);
      return false;
    }
    if (n == 0) break;
    for (long offset = 0; offset < n;) {
      const auto* entry = reinterpret_cast<const dirent64*>(buffer + offset);
      offset += entry->d_reclen;
      int fd = 0;
      const char* c = entry->d_name;
      if (*c < '0' || *c > '9') continue;
      for (; *c >= '0' && *c <= '9'; ++c) fd = fd * 10 + (*c - '0');
      if (fd > 2 && fd != dir) ::fcntl(fd, F_SETFD, FD_CLOEXEC);
    }
  }
  ::close(dir);
  return true;
}

// The child, between fork and exec: async-signal-safe calls only, no allocation.
[[noreturn]] void run_child(char* const* argv, char* const* envp, const SpawnOptions& o,
                            const char* working_directory, int report_fd) {
  // An ignored signal stays ignored across exec (this process may ignore SIGPIPE), and a blocked
  // one blocked. Dispositions first: a signal let through must not run this process's handler.
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; ++sig) (void)::sigaction(sig, &dfl, nullptr);
  sigset_t none;
  ::sigemptyset(&none);
  if (::sigprocmask(SIG_SETMASK, &none, nullptr) != 0) fail_in_child(report_fd, kStepSignals);

  if (o.new_session && ::setsid() < 0) fail_in_child(report_fd, kStepSetsid);

  // Move the sources above 2 first, so that one of them sitting on 0-2 is not overwritten by
  // another's dup2; dup2 then clears close-on-exec on the copy.
  const int sources[3] = {o.stdin_fd, o.stdout_fd, o.stderr_fd};
  int moved[3] = {-1, -1, -1};
  for (int i = 0; i < 3; ++i) {
    if (sources[i] < 0) continue;
    moved[i] = ::fcntl(sources[i], F_DUPFD_CLOEXEC, 3);
    if (moved[i] < 0) fail_in_child(report_fd, kStepDup, i);
  }
  for (int i = 0; i < 3; ++i) {
    if (moved[i] >= 0 && ::dup2(moved[i], i) < 0) fail_in_child(report_fd, kStepDup, i);
  }

  for (const ResourceLimit& limit : o.limits) {
    const rlimit value{limit.soft, limit.hard};
    if (::setrlimit(limit.resource, &value) != 0) fail_in_child(report_fd, kStepLimit, limit.resource);
  }
  if (o.no_new_privileges && ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
    fail_in_child(report_fd, kStepNoNewPrivs);
  }
  if (o.credentials) {
    const gid_t gid = o.credentials->gid;
    // Groups first: after setuid a non-root user may no longer change them.
    if (::setgroups(1, &gid) != 0) fail_in_child(report_fd, kStepSetgroups, gid);
    if (::setresgid(gid, gid, gid) != 0) fail_in_child(report_fd, kStepSetgid, gid);
    const uid_t uid = o.credentials->uid;
    if (::setresuid(uid, uid, uid) != 0) fail_in_child(report_fd, kStepSetuid, uid);
  }
  // After the credentials: changing them clears the setting.
  if (o.parent_death_signal != 0 && ::prctl(PR_SET_PDEATHSIG, o.parent_death_signal, 0, 0, 0) != 0) {
    fail_in_child(report_fd, kStepParentDeathSignal);
  }
  if (working_directory != nullptr && ::chdir(working_directory) != 0) fail_in_child(report_fd, kStepChdir);
  if (o.close_other_descriptors && !cloexec_all_but_stdio()) fail_in_child(report_fd, kStepCloseDescriptors);
  ::execve(argv[0], argv, envp);
  fail_in_child(report_fd, kStepExec);
}

std::string describe(const ChildFailure& f) {
  std::string step = f.step >= 0 && f.step <= kStepExec ? kStepNames[f.step] : "an unknown step";
  switch (f.step) {
    case kStepLimit:
    case kStepSetgroups:
    case kStepSetgid:
    case kStepSetuid:
      step += "(" + std::to_string(f.arg) + ")";
      break;
    default:
      break;
  }
  return step + ": " + std::strerror(f.error);
}

}  // namespace

Result<pid_t> spawn(const std::vector<std::string>& argv, const SpawnOptions& options) {
  if (argv.empty() || argv[0].empty()) return Error(Errc::kInvalidArgument, "no program to start");
  const auto name_of = [](std::string_view entry) { return entry.substr(0, entry.find('=') + 1); };
  std::vector<std::string> env;
  if (options.inherit_environment) {
    for (char** e = environ; *e != nullptr; ++e) {
      const std::string_view entry(*e);
      const bool replaced = std::any_of(options.environment.begin(), options.environment.end(),
                                        [&](const std::string& x) { return name_of(x) == name_of(entry); });
      if (!replaced) env.emplace_back(entry);
    }
  }
  env.insert(env.end(), options.environment.begin(), options.environment.end());
  std::vector<char*> envp, args;
  for (std::string& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  const std::string working_directory = options.working_directory.string();

  int report[2];
  if (::pipe2(report, O_CLOEXEC) != 0) {
    return Error(Errc::kIo, "cannot start " + argv[0] + ": pipe: " + std::strerror(errno));
  }
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::close(report[0]);
    run_child(args.data(), envp.data(), options,
              working_directory.empty() ? nullptr : working_directory.c_str(), report[1]);
  }
  const int fork_errno = errno;
  ::close(report[1]);
  if (pid < 0) {
    ::close(report[0]);
    return Error(Errc::kIo, "cannot start " + argv[0] + ": fork: " + std::strerror(fork_errno));
  }
  // EOF: the exec closed the pipe. A report: the child failed before it and exits 127.
  ChildFailure failure;
  ssize_t n;
  while ((n = ::read(report[0], &failure, sizeof failure)) < 0 && errno == EINTR) {
  }
  ::close(report[0]);
  if (n <= 0) return pid;
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (n != static_cast<ssize_t>(sizeof failure)) {
    return Error(Errc::kIo, "cannot start " + argv[0] + ": the child failed before exec");
  }
  return Error(Errc::kIo, "cannot start " + argv[0] + ": " + describe(failure));
}

pid_t spawn_process(const std::vector<std::string>& argv, const std::filesystem::path& output,
                    const std::vector<std::string>& extra_env) {
  const int fd = ::open(output.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) return -1;
  SpawnOptions options;
  options.stdout_fd = fd;
  options.stderr_fd = fd;
  options.environment = extra_env;
  auto pid = spawn(argv, options);
  ::close(fd);
  return pid.ok() ? *pid : -1;
}

}  // namespace fota::common

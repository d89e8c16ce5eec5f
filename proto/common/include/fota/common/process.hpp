// SPDX-License-Identifier: Apache-2.0
// Starting a child process from a program that may run other threads: the helpers of fota-sim and
// the tests (a broker, an orchestrator, a device agent), the device's health check, and update
// modules confined to what they need (SpawnOptions).
#pragma once

#include <sys/resource.h>
#include <sys/types.h>

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "fota/common/result.hpp"

namespace fota::common {

// One resource limit for the child (RLIM_INFINITY: none). The soft limit is the one that acts;
// the hard one above it leaves room, e.g. for a SIGXCPU handler before RLIMIT_CPU's SIGKILL.
struct ResourceLimit {
  int resource = RLIMIT_CORE;  // RLIMIT_CPU, RLIMIT_DATA, RLIMIT_FSIZE, RLIMIT_NOFILE, RLIMIT_NPROC...
  rlim_t soft = 0;
  rlim_t hard = 0;
};

// The user and group the child runs as; its supplementary groups become just `gid`.
struct ProcessCredentials {
  uid_t uid = 0;
  gid_t gid = 0;
};

// How spawn() starts a child. The defaults start it like this process's own child: its descriptors
// 0-2, its environment, its user.
struct SpawnOptions {
  // Descriptors of this process that become the child's 0, 1 and 2; -1 keeps this process's own.
  int stdin_fd = -1;
  int stdout_fd = -1;
  int stderr_fd = -1;
  // "NAME=value" entries. With inherit_environment they are added to this process's environment
  // (replacing a variable of the same name); without it they are the child's whole environment.
  bool inherit_environment = true;
  std::vector<std::string> environment;
  // Every descriptor but 0, 1 and 2 is closed at exec, whether or not it was opened close-on-exec
  // (another thread's open(), a library's socket).
  bool close_other_descriptors = false;
  // The child leads a new session, so a new process group: kill(-pid, signal) reaches everything
  // it starts that stays in its group, and the terminal's signals do not reach it.
  bool new_session = false;
  // prctl(PR_SET_NO_NEW_PRIVS): set-user-ID programs and file capabilities no longer raise the
  // privileges of the child or anything it starts.
  bool no_new_privileges = false;
  // Run as this user and group (needs root, or the ids this process already has).
  std::optional<ProcessCredentials> credentials;
  // Signal the child gets when the thread that started it ends (PR_SET_PDEATHSIG; 0 = none): a
  // server a test started stops with the test even when the test process dies by a signal.
  int parent_death_signal = 0;
  std::vector<ResourceLimit> limits;
  std::filesystem::path working_directory;  // empty: this process's
};

// Starts argv[0] (an absolute path; no PATH search) and returns its pid. Each step the child takes
// before exec that fails (setsid, a limit, setuid, chdir, execve itself) is reported back through
// a close-on-exec pipe, so the error names it: kIo "cannot start /x/y: setuid(65534): Operation
// not permitted"; the child is reaped then. kInvalidArgument for an empty argv; kIo when fork or
// pipe fail. Signal dispositions and the signal mask are reset to their defaults in the child.
//
// Everything is prepared before the fork: in the child of a multithreaded process only
// async-signal-safe calls are allowed, and a malloc there can hang forever on a lock another
// thread held at the fork (a restarted test broker that never ran, under ASan).
Result<pid_t> spawn(const std::vector<std::string>& argv, const SpawnOptions& options);

// Starts argv[0] with stdout and stderr appended to `output` and `extra_env` ("NAME=value", each
// replacing a variable of that name) added to this process's environment; the child's pid, or -1
// when it cannot be started (`output` cannot be opened, fork fails, argv[0] cannot be executed).
pid_t spawn_process(const std::vector<std::string>& argv, const std::filesystem::path& output,
                    const std::vector<std::string>& extra_env = {});

}  // namespace fota::common

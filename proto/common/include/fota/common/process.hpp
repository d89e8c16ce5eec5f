// Starting a helper process (a broker, an orchestrator, a device agent) from a program that may
// run other threads: fota-sim and the tests.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <string>
#include <vector>

namespace fota::common {

// Starts argv[0] with stdout and stderr appended to `output` and `extra_env` ("NAME=value", each
// replacing a variable of that name) added to this process's environment; the child's pid, or -1
// when fork fails. Everything is prepared before the fork: in the child of a multithreaded
// process only async-signal-safe calls are allowed, and a malloc there can hang forever on a lock
// another thread held at the fork (a restarted test broker that never ran, under ASan).
pid_t spawn_process(const std::vector<std::string>& argv, const std::filesystem::path& output,
                    const std::vector<std::string>& extra_env = {});

}  // namespace fota::common

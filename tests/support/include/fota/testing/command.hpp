// SPDX-License-Identifier: Apache-2.0
// Running the project's command-line programs from tests, as an operator would.
#pragma once

#include <cstdint>
#include <string>

namespace fota::testing {

struct CommandRun {
  int exit_code = -1;  // -1 when the command did not exit normally
  std::string output;  // stdout and stderr
};

// Runs `shell_command` with /bin/sh and collects what it prints on both streams.
CommandRun run_command(const std::string& shell_command);

// Unix time in milliseconds by the wall clock.
std::int64_t wall_clock_ms();

}  // namespace fota::testing

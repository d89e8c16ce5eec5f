// SPDX-License-Identifier: Apache-2.0
#include "fota/testing/command.hpp"

#include <sys/wait.h>

#include <array>
#include <chrono>
#include <cstdio>

namespace fota::testing {

CommandRun run_command(const std::string& shell_command) {
  CommandRun r;
  FILE* pipe = ::popen((shell_command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return r;
  std::array<char, 4096> buf{};
  while (std::size_t n = std::fread(buf.data(), 1, buf.size(), pipe)) r.output.append(buf.data(), n);
  const int status = ::pclose(pipe);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

std::int64_t wall_clock_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace fota::testing

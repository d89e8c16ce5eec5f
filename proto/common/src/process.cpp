#include "fota/common/process.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <string_view>

namespace fota::common {

pid_t spawn_process(const std::vector<std::string>& argv, const std::filesystem::path& output,
                    const std::vector<std::string>& extra_env) {
  const auto name_of = [](std::string_view entry) { return entry.substr(0, entry.find('=') + 1); };
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string_view entry(*e);
    const bool replaced = std::any_of(extra_env.begin(), extra_env.end(),
                                      [&](const std::string& x) { return name_of(x) == name_of(entry); });
    if (!replaced) env.emplace_back(entry);
  }
  env.insert(env.end(), extra_env.begin(), extra_env.end());
  std::vector<char*> envp, args;
  for (std::string& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  const std::string out = output.string();
  const pid_t pid = ::fork();
  if (pid != 0) return pid;  // the parent: the child's pid, or -1
  const int fd = ::open(out.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd >= 0) {
    ::dup2(fd, STDOUT_FILENO);
    ::dup2(fd, STDERR_FILENO);
  }
  ::execve(args[0], args.data(), envp.data());
  ::_exit(127);
}

}  // namespace fota::common

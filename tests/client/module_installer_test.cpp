// SPDX-License-Identifier: Apache-2.0
// Update modules confined (ModuleSandbox): real module scripts written by the tests, run as real
// processes. As root (CI's containers) the modules run as `nobody`; as another user they run as
// that user, and the one test that needs root to switch users says it is skipped.
#include <fcntl.h>
#include <pwd.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "fota/client/boot_environment.hpp"
#include "fota/client/device_agent.hpp"
#include "fota/client/installer.hpp"
#include "fota/common/codec.hpp"
#include "fota/testing/broker.hpp"
#include "fota/testing/command.hpp"
#include "sim_device.hpp"

namespace fota::client {
namespace {

namespace fs = std::filesystem;

struct LoggedLine {
  v1::LogLevel level;
  std::string message;
  std::string source;
};

bool running_as_root() { return ::geteuid() == 0; }

// The state of a process ('R', 'S', 'Z'...), or 0 when it is gone.
char process_state(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat;
  if (!std::getline(in, stat)) return 0;
  const std::size_t paren = stat.rfind(')');
  return paren == std::string::npos || paren + 2 >= stat.size() ? 0 : stat[paren + 2];
}

// Killed processes take a moment to die; a zombie is dead (init reaps it when it gets to it).
bool dies_eventually(pid_t pid) {
  for (int i = 0; i < 200; ++i) {
    const char state = process_state(pid);
    if (state == 0 || state == 'Z') return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

// Live (not zombie) processes of process group `pgid`.
std::vector<pid_t> live_members(pid_t pgid) {
  std::vector<pid_t> members;
  for (const auto& entry : fs::directory_iterator("/proc")) {
    const std::string name = entry.path().filename().string();
    if (name.empty() || !std::all_of(name.begin(), name.end(), ::isdigit)) continue;
    std::ifstream in(entry.path() / "stat");
    std::string stat;
    if (!std::getline(in, stat)) continue;
    const std::size_t paren = stat.rfind(')');
    if (paren == std::string::npos) continue;
    std::istringstream rest(stat.substr(paren + 2));
    char state = 0;
    long ppid = 0, pgrp = 0;
    rest >> state >> ppid >> pgrp;
    if (pgrp == pgid && state != 'Z') members.push_back(static_cast<pid_t>(std::stol(name)));
  }
  return members;
}

class ModuleSandboxTest : public ::testing::Test {
 protected:
  ModuleSandboxTest() {
    // mkdtemp makes 0700: the module's user must reach its executable and its work directory.
    fs::permissions(dir_.path(), fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                                     fs::perms::others_read | fs::perms::others_exec);
    fs::create_directories(modules_dir());
    sandbox_.user = running_as_root() ? "nobody" : "";
    sandbox_.timeout = std::chrono::seconds(20);
    sandbox_.kill_grace = std::chrono::milliseconds(200);
  }

  fs::path modules_dir() const { return dir_.path() / "modules"; }
  fs::path work_dir() const { return dir_.path() / "work"; }

  void write_module(const std::string& name, const std::string& script) {
    const fs::path path = modules_dir() / name;
    std::ofstream(path) << script;
    fs::permissions(path, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                              fs::perms::others_read | fs::perms::others_exec);
  }

  std::unique_ptr<ModuleInstaller> installer() {
    auto created = ModuleInstaller::create(modules_dir(), work_dir(), sandbox_);
    EXPECT_TRUE(created.ok()) << created.error().to_string();
    if (!created.ok()) return nullptr;
    (*created)->set_log_sink([this](v1::LogLevel level, std::string message, std::string source) {
      logged_.push_back({level, std::move(message), std::move(source)});
    });
    return std::move(created).value();
  }

  // Stages an empty image for `name` and runs its install.
  common::Status install(const std::string& name) {
    auto modules = installer();
    if (!modules) return common::Error(common::Errc::kInternal, "no installer");
    if (auto s = modules->prepare(name, 0, false); !s.ok()) return s;
    return modules->activate(name);
  }

  bool logged(const std::string& message) const {
    return std::any_of(logged_.begin(), logged_.end(),
                       [&](const LoggedLine& l) { return l.message == message; });
  }
  std::string all_logged() const {
    std::string all;
    for (const auto& l : logged_) all += l.source + " [" + std::to_string(l.level) + "] " + l.message + "\n";
    return all;
  }
  // The number after "install: <word> " in the first line that has it.
  pid_t logged_pid(const std::string& word) const {
    const std::string prefix = "install: " + word + " ";
    for (const auto& l : logged_) {
      if (l.message.rfind(prefix, 0) == 0)
        return static_cast<pid_t>(std::stol(l.message.substr(prefix.size())));
    }
    return 0;
  }

  fota::testing::TempDir dir_;
  ModuleSandbox sandbox_;
  std::vector<LoggedLine> logged_;
};

TEST_F(ModuleSandboxTest, RunsAsTheConfiguredUserAndCannotReadARootOnlyFile) {
  if (!running_as_root()) GTEST_SKIP() << "switching the module's user needs the test to run as root";
  const fs::path secret = dir_.path() / "secret";
  std::ofstream(secret) << "top-secret-42\n";
  ASSERT_EQ(::chown(secret.c_str(), 0, 0), 0);
  fs::permissions(secret, fs::perms::owner_read | fs::perms::owner_write);
  write_module("reader",
               "#!/bin/sh\necho \"ids $(id -u) $(id -g) $(id -G)\"\n"
               "if cat " +
                   secret.string() +
                   "; then echo 'error read the secret'; exit 1; fi\n"
                   "echo ok\n");
  const passwd* nobody = ::getpwnam("nobody");
  ASSERT_NE(nobody, nullptr);
  const std::string ids = std::to_string(nobody->pw_uid) + " " + std::to_string(nobody->pw_gid);

  const common::Status s = install("reader");

  EXPECT_TRUE(s.ok()) << s.error().to_string() << "\n" << all_logged();
  EXPECT_TRUE(logged("install: ids " + ids + " " + std::to_string(nobody->pw_gid)))
      << "the user, its group and no other group\n"
      << all_logged();
  EXPECT_EQ(all_logged().find("top-secret-42"), std::string::npos) << all_logged();
  // cat's complaint reaches the log stream (stderr: a warning), not the agent's stderr.
  const auto denied = std::find_if(logged_.begin(), logged_.end(), [](const LoggedLine& l) {
    return l.message.find("Permission denied") != std::string::npos;
  });
  ASSERT_NE(denied, logged_.end()) << all_logged();
  EXPECT_EQ(denied->level, v1::LOG_LEVEL_WARN);
  EXPECT_EQ(denied->source, "module:reader");
}

TEST_F(ModuleSandboxTest, EnvironmentHoldsOnlyTheDocumentedVariables) {
  ::setenv("FOTA_AGENT_SECRET", "leaked", 1);
  write_module("env", "#!/bin/sh\nenv\necho ok\n");
  const common::Status s = install("env");
  ::unsetenv("FOTA_AGENT_SECRET");
  ASSERT_TRUE(s.ok()) << s.error().to_string();
  EXPECT_TRUE(logged("install: PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"))
      << all_logged();
  EXPECT_TRUE(logged("install: HOME=" + work_dir().string())) << all_logged();
  EXPECT_TRUE(logged("install: LC_ALL=C")) << all_logged();
  for (const auto& l : logged_) {
    if (l.message == "install: ok") continue;
    const std::string name = l.message.substr(9, l.message.find('=') - 9);
    // PWD is the shell's own (its working directory, the work directory).
    EXPECT_TRUE(name == "PATH" || name == "HOME" || name == "LC_ALL" || name == "PWD") << l.message;
  }
  EXPECT_EQ(all_logged().find("leaked"), std::string::npos) << all_logged();
}

TEST_F(ModuleSandboxTest, InheritedDescriptorsAreNotVisible) {
  // Not close-on-exec, and numbered well above anything the module opens itself.
  const int plain = ::open("/dev/null", O_RDONLY);
  ASSERT_GE(plain, 0);
  const int inherited = ::fcntl(plain, F_DUPFD, 100);
  ::close(plain);
  ASSERT_GE(inherited, 100);
  write_module("fds", "#!/bin/sh\nls /proc/self/fd\necho ok\n");
  const common::Status s = install("fds");
  ::close(inherited);
  ASSERT_TRUE(s.ok()) << s.error().to_string();
  std::vector<int> fds;
  for (const auto& l : logged_) {
    if (l.message != "install: ok") fds.push_back(std::stoi(l.message.substr(9)));
  }
  // 0-2, and the directory ls reads.
  EXPECT_GE(fds.size(), 3U) << all_logged();
  for (int fd : fds) EXPECT_LE(fd, 3) << all_logged();
}

TEST_F(ModuleSandboxTest, NoNewPrivilegesAndAProcessGroupOfItsOwn) {
  write_module("status",
               "#!/bin/sh\ngrep NoNewPrivs /proc/self/status\n"
               "echo \"group $(cut -d' ' -f5 /proc/$$/stat)\"\necho \"leader $$\"\necho ok\n");
  const common::Status s = install("status");
  ASSERT_TRUE(s.ok()) << s.error().to_string();
  EXPECT_TRUE(logged("install: NoNewPrivs:\t1")) << all_logged();
  EXPECT_NE(logged_pid("leader"), 0) << all_logged();
  EXPECT_EQ(logged_pid("group"), logged_pid("leader")) << all_logged();
  EXPECT_NE(logged_pid("group"), ::getpgrp());
}

TEST_F(ModuleSandboxTest, ModuleThatNeverExitsIsKilledWithItsChildrenAtTheTimeLimit) {
  sandbox_.timeout = std::chrono::milliseconds(300);
  // SIGTERM is ignored (by the child too): only the SIGKILL after the grace period ends them.
  write_module("hang",
               "#!/bin/sh\ntrap '' TERM\nsleep 1000 &\necho \"child $!\"\necho \"leader $$\"\nsleep 1000\n");
  const common::Status s = install("hang");
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code, common::Errc::kUnavailable);
  EXPECT_NE(s.error().message.find("did not finish within 300 ms"), std::string::npos) << s.error().message;
  const pid_t leader = logged_pid("leader");
  const pid_t child = logged_pid("child");
  ASSERT_NE(leader, 0) << all_logged();
  ASSERT_NE(child, 0) << all_logged();
  EXPECT_TRUE(dies_eventually(child));
  EXPECT_TRUE(dies_eventually(leader));
  std::vector<pid_t> left = live_members(leader);
  for (pid_t pid : left)
    EXPECT_TRUE(dies_eventually(pid)) << pid << " of the module's process group lives on";
  EXPECT_TRUE(live_members(leader).empty()) << "the module's process group is gone";
}

TEST_F(ModuleSandboxTest, ProcessesLeftBehindByAFinishedModuleAreKilled) {
  write_module("daemon", "#!/bin/sh\nsleep 1000 &\necho \"child $!\"\necho ok\n");
  const common::Status s = install("daemon");
  ASSERT_TRUE(s.ok()) << s.error().to_string();
  const pid_t child = logged_pid("child");
  ASSERT_NE(child, 0) << all_logged();
  EXPECT_TRUE(dies_eventually(child));
}

TEST_F(ModuleSandboxTest, FloodingModuleIsCappedAndTheDropIsReported) {
  sandbox_.output_lines = 50;
  // 128 MiB of 100-byte lines, then the verdict: the agent keeps none of it beyond the cap.
  write_module("flood", "#!/bin/sh\nyes \"$(printf '%099d' 7)\" | head -c 134217728\necho\necho ok\n");
  rusage before{};
  ::getrusage(RUSAGE_SELF, &before);
  const common::Status s = install("flood");
  rusage after{};
  ::getrusage(RUSAGE_SELF, &after);
  ASSERT_TRUE(s.ok()) << s.error().to_string() << "\n" << all_logged().substr(0, 2000);
  EXPECT_LT(after.ru_maxrss - before.ru_maxrss, 32 * 1024) << "peak RSS grew (KiB)";
  ASSERT_EQ(logged_.size(), 51U) << all_logged().substr(0, 2000);
  EXPECT_EQ(logged_[0].message, "install: " + std::string(99, '0').replace(98, 1, "7"));
  EXPECT_EQ(logged_[0].level, v1::LOG_LEVEL_INFO);
  const LoggedLine& note = logged_.back();
  EXPECT_EQ(note.level, v1::LOG_LEVEL_WARN);
  EXPECT_EQ(note.source, "module:flood");
  // 1342177 whole lines and a partial one past the 50 sent, and "ok".
  EXPECT_NE(note.message.find("dropped 1342129 output lines"), std::string::npos) << note.message;
}

TEST_F(ModuleSandboxTest, CpuLimitEndsABusyModule) {
  sandbox_.cpu_seconds = 1;
  write_module("spin", "#!/bin/sh\nwhile :; do :; done\n");
  const common::Status s = install("spin");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().message.find("killed by SIGXCPU (it used up its cpu_seconds limit)"), std::string::npos)
      << s.error().message;
}

TEST_F(ModuleSandboxTest, ModulesDoNotRunAsRootUnlessSaidSo) {
  sandbox_.user.clear();
  auto created = ModuleInstaller::create(modules_dir(), work_dir(), sandbox_);
  if (running_as_root()) {
    ASSERT_FALSE(created.ok());
    EXPECT_EQ(created.error().code, common::Errc::kPermissionDenied);
    EXPECT_NE(created.error().message.find("set module_user"), std::string::npos) << created.error().message;
    sandbox_.user = "root";
    EXPECT_TRUE(ModuleInstaller::create(modules_dir(), work_dir(), sandbox_).ok());
  } else {
    EXPECT_TRUE(created.ok()) << "a non-root agent runs modules as itself";
    sandbox_.user = "root";
    auto as_root = ModuleInstaller::create(modules_dir(), work_dir(), sandbox_);
    ASSERT_FALSE(as_root.ok());
    EXPECT_EQ(as_root.error().code, common::Errc::kPermissionDenied);
  }
}

TEST_F(ModuleSandboxTest, UnknownUserOrGroupIsAClearError) {
  sandbox_.user = "no-such-user-fota";
  auto created = ModuleInstaller::create(modules_dir(), work_dir(), sandbox_);
  ASSERT_FALSE(created.ok());
  EXPECT_EQ(created.error().code, common::Errc::kInvalidArgument);
  EXPECT_NE(created.error().message.find("module user 'no-such-user-fota' does not exist"), std::string::npos)
      << created.error().message;
  sandbox_.user = running_as_root() ? "nobody" : "";
  sandbox_.group = "no-such-group-fota";
  created = ModuleInstaller::create(modules_dir(), work_dir(), sandbox_);
  ASSERT_FALSE(created.ok());
  EXPECT_NE(created.error().message.find("no-such-group-fota"), std::string::npos) << created.error().message;
}

// The output reaches the fleet: through the DeviceAgent's log stream, as LogBatch entries.
class RecordingLink : public DeviceLink {
 public:
  common::Status publish(const OutboundMessage& message) override {
    published.push_back(message);
    return common::ok_status();
  }
  common::Status subscribe(const std::string&, int) override { return common::ok_status(); }
  std::vector<OutboundMessage> published;
};

TEST_F(ModuleSandboxTest, OutputGoesToTheDeviceLogStreamAsLogBatch) {
  sandbox_.output_lines = 20;
  write_module("chatty",
               "#!/bin/sh\ni=0\nwhile [ $i -lt 500 ]; do echo \"step $i\"; i=$((i+1)); done\n"
               "echo 'disk is slow' >&2\necho ok\n");
  FileBootEnvironment env(dir_.path() / "bootenv.txt");
  BootControl boot(env, *BootChooser::create({}), cmdline_file(dir_.path() / "cmdline"));
  ASSERT_TRUE(simulate_bootloader(env, boot.chooser(), dir_.path() / "cmdline").ok());
  AbSlotInstaller slots(
      std::map<std::string, fs::path>{{"a", dir_.path() / "slot-a"}, {"b", dir_.path() / "slot-b"}}, boot);
  auto modules = ModuleInstaller::create(modules_dir(), work_dir(), sandbox_);
  ASSERT_TRUE(modules.ok()) << modules.error().to_string();
  PayloadRouter router(slots, nullptr, modules->get());
  testing::Trace trace;
  testing::MemoryJournal journal(trace);
  OpenSslEngineCrypto crypto(common::TrustStore{}, common::TrustStore{});
  RecordingLink link;
  DeviceAgentConfig config;
  config.engine = testing::SimDevice::default_config();
  auto agent = DeviceAgent::create(config, router, journal, crypto, link, {});
  ASSERT_TRUE(agent.ok()) << agent.error().to_string();
  std::int64_t now = 1'700'000'000'000;
  ASSERT_TRUE((*agent)->start(now).ok());
  (*agent)->on_connected(now);

  action::PrepareSlot prepare;
  prepare.slot = "module:chatty";
  ASSERT_TRUE(router.prepare(prepare).ok());
  ASSERT_TRUE(router.activate("module:chatty").ok());
  for (int i = 0; i < 10; ++i) (*agent)->on_tick(now += 5000);

  const std::string log_topic = (*agent)->topics().device_topic((*agent)->device(), common::Channel::kLog);
  std::vector<v1::LogEntry> entries;
  for (const auto& m : link.published) {
    if (m.topic != log_topic) continue;
    auto batch = common::decode<v1::LogBatch>(m.payload, 1 << 20);
    ASSERT_TRUE(batch.ok());
    for (const auto& e : batch->entries()) {
      if (e.source() == "module:chatty") entries.push_back(e);
    }
  }
  ASSERT_EQ(entries.size(), 21U);
  EXPECT_EQ(entries.front().message(), "install: step 0");
  EXPECT_EQ(entries[19].message(), "install: step 19");
  EXPECT_EQ(entries.back().level(), v1::LOG_LEVEL_WARN);
  // 480 steps, the stderr line and "ok".
  EXPECT_NE(entries.back().message().find("dropped 482 output lines"), std::string::npos)
      << entries.back().message();

  // Once the agent is gone, the module's output goes nowhere (and nothing dangles).
  agent->reset();
  EXPECT_TRUE(router.activate("module:chatty").ok());
}

#ifdef FOTA_DEVICE_BIN
// fota-device refuses a config whose module keys are wrong, before anything else, exit status 2.
class DeviceModuleConfigTest : public ModuleSandboxTest {
 protected:
  fota::testing::CommandRun run_device(const std::string& extra) {
    const fs::path config = dir_.path() / "device.yaml";
    std::ofstream(config)
        << "device_id: dev-0001\nhardware_type: board\nbroker: ssl://127.0.0.1:1\n"
           "ca: ca.crt\ncert: d.crt\nkey: d.key\ntrust: keys/\ncommand_keys: command-keys/\n"
           "state_dir: state/\n"
           "modules_dir: modules/\n"
        << extra;
    return fota::testing::run_command(std::string(FOTA_DEVICE_BIN) + " --config " + config.string() +
                                      " 2>&1");
  }
};

TEST_F(DeviceModuleConfigTest, BadLimitIsNamed) {
  const auto run = run_device("module_user: nobody\nmodule_limits: {open_files: -3}\n");
  EXPECT_EQ(run.exit_code, 2) << run.output;
  EXPECT_NE(
      run.output.find("module_limits.open_files must be a positive whole number or 'unlimited', not '-3'"),
      std::string::npos)
      << run.output;
}

TEST_F(DeviceModuleConfigTest, UnknownLimitIsNamed) {
  const auto run = run_device("module_user: nobody\nmodule_limits: {threads: 3}\n");
  EXPECT_EQ(run.exit_code, 2) << run.output;
  EXPECT_NE(run.output.find("unknown key module_limits.threads"), std::string::npos) << run.output;
}

TEST_F(DeviceModuleConfigTest, UnknownUserIsRefusedAtStart) {
  const auto run = run_device("module_user: no-such-user-fota\n");
  EXPECT_EQ(run.exit_code, 2) << run.output;
  EXPECT_NE(run.output.find("module user 'no-such-user-fota' does not exist"), std::string::npos)
      << run.output;
}

TEST_F(DeviceModuleConfigTest, RootAgentWithoutModuleUserIsRefusedAtStart) {
  if (!running_as_root()) GTEST_SKIP() << "the refusal is for an agent running as root";
  const auto run = run_device("");
  EXPECT_EQ(run.exit_code, 2) << run.output;
  EXPECT_NE(run.output.find("update modules would run as root"), std::string::npos) << run.output;
}
#endif

}  // namespace
}  // namespace fota::client

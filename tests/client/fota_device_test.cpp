// SPDX-License-Identifier: Apache-2.0
// fota-device as a real process against a real Mosquitto with mutual TLS, driving a real
// boot-loader environment (GRUB's environment block, checked with grub-editenv). The test plays
// the orchestrator and the machine: when the agent runs its reboot command and exits, the test
// "powers on" with the boot scripts' C++ twin (simulate_bootloader over the same grubenv), writes
// the kernel command line the agent reads, and starts the agent again.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "fota/client/boot_environment.hpp"
#include "fota/client/uboot_environment.hpp"
#include "fota/testing/command.hpp"
#include "update_server_fixture.hpp"

#ifndef FOTA_DEVICE_BIN
#error "FOTA_DEVICE_BIN must be defined by CMake"
#endif
#if !defined(FOTA_GRUB_EDITENV) || !defined(FOTA_MKENVIMAGE) || !defined(FOTA_FW_PRINTENV)
#error "FOTA_GRUB_EDITENV, FOTA_MKENVIMAGE and FOTA_FW_PRINTENV must be defined by CMake"
#endif

namespace fota::client {
namespace {

class FotaDeviceTest : public UpdateServerFixture {
 protected:
  ~FotaDeviceTest() override { stop_agent(SIGKILL); }

  std::filesystem::path grubenv() const { return agent_dir() / "grubenv"; }
  std::filesystem::path cmdline() const { return agent_dir() / "cmdline"; }
  std::filesystem::path reboot_marker() const { return agent_dir() / "rebooted"; }

  // A device with GRUB: an environment block made by GRUB's tool, slots as files.
  void make_grub_device(const std::string& health_check = "true") { make_device("grub", health_check); }

  // A device with `loader` (grub: a block made by grub-editenv; uboot: an environment image made
  // by mkenvimage and an fw_env.config), slots as files.
  void make_device(const std::string& loader, const std::string& health_check = "true") {
    loader_ = loader;
    std::filesystem::create_directories(agent_dir() / "keys");
    std::ofstream(agent_dir() / "keys" / "signing.pub") << key_.public_key().to_pem();
    std::ofstream(agent_dir() / "slot-a", std::ios::binary) << factory_;
    std::string boot_keys;
    if (loader == "grub") {
      ASSERT_EQ(editenv("create").exit_code, 0);
      boot_keys = "bootloader: grub\ngrubenv: grubenv\n";
    } else {
      std::ofstream(agent_dir() / "uboot-env.txt") << "bootcmd=run fota\n";
      const auto made = fota::testing::run_command(std::string(FOTA_MKENVIMAGE) + " -s 0x4000 -o " +
                                                   (agent_dir() / "uboot-env.img").string() + " " +
                                                   (agent_dir() / "uboot-env.txt").string());
      ASSERT_EQ(made.exit_code, 0) << made.output;
      std::ofstream(fw_env_config()) << (agent_dir() / "uboot-env.img").string() << " 0x0 0x4000\n";
      boot_keys = "bootloader: uboot\nfw_env_config: fw_env.config\n";
    }
    std::ofstream(agent_dir() / "device.yaml")
        << "device_id: " << testing::kDeviceId << "\nhardware_type: " << testing::kHardware
        << "\nbroker: " << uri() << "\nca: " << pki_.ca_cert().string()
        << "\ncert: " << device_files_.cert.string() << "\nkey: " << device_files_.key.string()
        << "\ntrust: keys\nstate_dir: state\nprogress_interval_ms: 200\nlog_level: info\nwindow: 4\n"
        << "slots:\n  a: slot-a\n  b: slot-b\n"
        << command_keys_config(agent_dir()) << boot_keys << "kernel_cmdline: cmdline\n"
        << "reboot_command: 'touch " << reboot_marker().string() << "'\n"
        << "health_check: '" << health_check << "'\n"
        << "transport: " << transport_ << "\n";
  }

  fota::testing::CommandRun editenv(const std::string& args) const {
    return fota::testing::run_command(std::string(FOTA_GRUB_EDITENV) + " " + grubenv().string() + " " + args);
  }
  std::filesystem::path fw_env_config() const { return agent_dir() / "fw_env.config"; }
  std::unique_ptr<BootEnvironment> boot_env() const {
    if (loader_ == "uboot") return std::make_unique<UBootEnvironment>(fw_env_config());
    return std::make_unique<GrubEnvironment>(grubenv());
  }
  // A boot-loader variable ("" when unset: U-Boot has no empty variables).
  std::string boot_variable(const std::string& name) const {
    auto vars = boot_env()->load();
    if (!vars.ok()) return "<" + vars.error().to_string() + ">";
    auto it = vars->find(name);
    return it == vars->end() ? "" : it->second;
  }
  // The boot loader's own tool lists the variable as `name=value`.
  std::string listed_by_the_boot_loaders_tool(const std::string& name) const {
    const auto run = loader_ == "uboot" ? fota::testing::run_command(std::string(FOTA_FW_PRINTENV) + " -c " +
                                                                     fw_env_config().string() + " " + name)
                                        : editenv("list");
    std::istringstream lines(run.output);
    for (std::string line; std::getline(lines, line);) {
      if (line.rfind(name + "=", 0) == 0) return line;
    }
    return "<" + name + " not listed>";
  }

  // Power-on: GRUB's script (its C++ twin) picks a slot and counts a try. While
  // `kernel_panics_in_` names the slot it picked, that boot dies before the agent starts (the
  // machine resets, GRUB runs again).
  void boot_device() override {
    stop_agent(SIGKILL);
    std::filesystem::remove(reboot_marker());
    auto env = boot_env();
    auto chooser = BootChooser::create({});
    ASSERT_TRUE(chooser.ok());
    for (int power_on = 0; power_on < 10; ++power_on) {
      auto slot = simulate_bootloader(*env, *chooser, cmdline());
      ASSERT_TRUE(slot.ok()) << slot.error().to_string();
      booted_.push_back(*slot);
      if (*slot != kernel_panics_in_) break;
    }
    start_agent_process();
  }

  // Starts the agent on the running boot (after a boot, or a restart by systemd).
  void start_agent_process() {
    ++starts_;
    pid_ = fota::testing::spawn({FOTA_DEVICE_BIN, "--config", (agent_dir() / "device.yaml").string()},
                                agent_dir() / ("agent-" + std::to_string(starts_) + ".log"));
  }

  // SIGTERM must end the agent cleanly (exit status 0) within a few seconds.
  void expect_clean_sigterm() {
    const auto status = stop_agent(SIGTERM);
    ASSERT_TRUE(status.has_value()) << "fota-device did not end within 10 s of SIGTERM\n" << agent_logs();
    EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0) << "wait status " << *status << "\n"
                                                                 << agent_logs();
  }

  // The retained presence says offline (it was online before).
  void expect_offline_presence() {
    const auto until = std::chrono::steady_clock::now() + 5s;
    while (last_presence_.online() && std::chrono::steady_clock::now() < until) (void)serve(100ms);
    EXPECT_FALSE(last_presence_.online()) << "no offline presence after SIGTERM";
  }

  // The agent ran its reboot command and ended.
  bool device_reboot_requested() override {
    if (pid_ <= 0 || !std::filesystem::exists(reboot_marker())) return false;
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) != pid_) return false;
    pid_ = -1;
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "after the reboot command: " << status;
    return true;
  }

  void device_log(v1::LogLevel, std::string) override {}
  std::uint32_t device_reconnects() override { return 0; }

  // Sends `sig` and returns the wait status (nullopt when it did not end within 10 s).
  std::optional<int> stop_agent(int sig) {
    if (pid_ <= 0) return std::nullopt;
    ::kill(pid_, sig);
    const auto until = std::chrono::steady_clock::now() + 10s;
    int status = 0;
    while (std::chrono::steady_clock::now() < until) {
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return status;
      }
      std::this_thread::sleep_for(20ms);
    }
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    return std::nullopt;
  }

  std::string agent_logs() const {
    std::string all;
    for (int i = 1; i <= starts_; ++i) {
      all += read_all(agent_dir() / ("agent-" + std::to_string(i) + ".log"));
    }
    return all;
  }

  std::string loader_ = "grub";
  std::string transport_ = "paho";
  pid_t pid_ = -1;
  int starts_ = 0;
  std::vector<std::string> booted_;  // every slot GRUB booted, in order
  std::string kernel_panics_in_;
};

// The same flows for GRUB's environment block and U-Boot's environment (through libubootenv).
class FotaDeviceBootLoaderTest : public FotaDeviceTest, public ::testing::WithParamInterface<std::string> {};

TEST_P(FotaDeviceBootLoaderTest, InstallsBootsTheTrialAndCommits) {
  make_device(GetParam());
  connect_server();
  boot_device();
  wait_device_online();
  send_command(install_command("c1"));
  const v1::Progress last = serve_until_terminal(60s);
  EXPECT_EQ(last.phase(), v1::PHASE_COMMITTED) << last.error_detail() << "\n" << agent_logs();
  EXPECT_EQ(reboots_, 1);
  EXPECT_EQ(booted_, (std::vector<std::string>{"a", "b"}));
  EXPECT_TRUE(read_all(agent_dir() / "slot-b") == image_);
  // The boot loader's own tool sees the committed slot first with its tries restored, no trial.
  EXPECT_EQ(listed_by_the_boot_loaders_tool("FOTA_ORDER"), "FOTA_ORDER=b a");
  EXPECT_EQ(listed_by_the_boot_loaders_tool("FOTA_B_LEFT"), "FOTA_B_LEFT=3");
  EXPECT_EQ(boot_variable("FOTA_TRIAL"), "");
  if (GetParam() == "grub") {
    EXPECT_EQ(std::filesystem::file_size(grubenv()), 1024U);
  }
  expect_clean_sigterm();
}

TEST_P(FotaDeviceBootLoaderTest, TrialThatNeverReachesTheAgentIsUndoneByTheBootLoaderAndReported) {
  make_device(GetParam());
  kernel_panics_in_ = "b";
  connect_server();
  boot_device();
  wait_device_online();
  send_command(install_command("c1"));
  const v1::Progress last = serve_until_terminal(60s);
  EXPECT_EQ(last.phase(), v1::PHASE_ROLLED_BACK) << agent_logs();
  EXPECT_EQ(last.error(), v1::ERROR_BOOT_FAILED) << last.error_detail();
  // The boot loader tried b three times, then fell back to a, where the agent runs again.
  EXPECT_EQ(booted_, (std::vector<std::string>{"a", "b", "b", "b", "a"}));
  EXPECT_EQ(boot_variable("FOTA_ORDER"), "a b");
  EXPECT_EQ(boot_variable("FOTA_A_LEFT"), "3");
  EXPECT_EQ(boot_variable("FOTA_B_LEFT"), "0") << "the failed slot is never fallen back to";
  EXPECT_EQ(boot_variable("FOTA_TRIAL"), "");
  EXPECT_NE(agent_logs().find("slot b was on trial and did not come up"), std::string::npos) << agent_logs();
}

INSTANTIATE_TEST_SUITE_P(BootLoaders, FotaDeviceBootLoaderTest, ::testing::Values("grub", "uboot"),
                         [](const ::testing::TestParamInfo<std::string>& param_info) {
                           return param_info.param;
                         });

// SIGTERM is a clean stop in every state (systemd's `systemctl stop`, a shutdown): exit status
// 0, an offline presence, and the journal resumes on the next start. On both transports.
class FotaDeviceSigtermTest : public FotaDeviceTest, public ::testing::WithParamInterface<std::string> {
 protected:
  void SetUp() override {
    transport_ = GetParam();
    FotaDeviceTest::SetUp();
  }
};

TEST_P(FotaDeviceSigtermTest, WhileIdleExitsCleanly) {
  make_grub_device();
  connect_server();
  boot_device();
  wait_device_online();
  last_presence_.set_online(true);
  expect_clean_sigterm();
  expect_offline_presence();
}

TEST_P(FotaDeviceSigtermTest, WhileDownloadingExitsCleanlyAndTheDownloadResumes) {
  make_grub_device();
  connect_server();
  boot_device();
  wait_device_online();
  on_served = [&] {
    if (served_ == 20) interrupt_serving_ = true;
  };
  send_command(install_command("c1"));
  ASSERT_FALSE(serve(30s).has_value()) << "the update ended before 20 chunks were served";
  on_served = nullptr;
  last_presence_.set_online(true);
  expect_clean_sigterm();
  expect_offline_presence();
  start_agent_process();  // systemd starts it again; no reboot happened
  const v1::Progress last = serve_until_terminal(60s);
  EXPECT_EQ(last.phase(), v1::PHASE_COMMITTED) << last.error_detail() << "\n" << agent_logs();
  EXPECT_TRUE(read_all(agent_dir() / "slot-b") == image_);
  // Verified chunks are not fetched again: only what was in flight at the stop is, at most two
  // windows (4) of requested-but-unprocessed chunks, the bound the broker-kill tests use.
  const int chunks = static_cast<int>(common::ChunkSpace::of(manifest_).total());
  EXPECT_LE(served_, chunks + 2 * 4) << "served " << served_ << " chunks for an image of " << chunks;
  for (const auto& [index, count] : requested_) EXPECT_LE(count, 2) << "chunk " << index;
}

TEST_P(FotaDeviceSigtermTest, WhileWaitingForTheHealthCheckExitsCleanlyAndTheCheckRunsAgain) {
  const auto checking = dir_.path() / "checking";
  const auto healthy = dir_.path() / "healthy";
  // The check says it runs, then waits until the test lets it pass.
  make_grub_device("touch " + checking.string() + "; while [ ! -e " + healthy.string() +
                   " ]; do sleep 0.1; done");
  connect_server();
  boot_device();
  wait_device_online();
  send_command(install_command("c1"));
  const auto until = std::chrono::steady_clock::now() + 40s;
  while (!std::filesystem::exists(checking) && std::chrono::steady_clock::now() < until) (void)serve(100ms);
  ASSERT_TRUE(std::filesystem::exists(checking)) << "the health check never started\n" << agent_logs();
  EXPECT_EQ(booted_.back(), "b");
  expect_clean_sigterm();
  EXPECT_FALSE(last_presence_.online()) << "the offline presence from before the reboot stays";
  std::ofstream(healthy).flush();  // ends the check the stopped agent left behind
  std::this_thread::sleep_for(300ms);
  std::filesystem::remove(checking);
  start_agent_process();  // the same boot: still the trial of b
  const v1::Progress last = serve_until_terminal(60s);
  EXPECT_EQ(last.phase(), v1::PHASE_COMMITTED) << last.error_detail() << "\n" << agent_logs();
  EXPECT_TRUE(std::filesystem::exists(checking)) << "the health check ran again after the restart";
  EXPECT_EQ(reboots_, 1);
  EXPECT_EQ(boot_variable("FOTA_ORDER"), "b a");
  EXPECT_EQ(boot_variable("FOTA_B_LEFT"), "3");
  EXPECT_EQ(boot_variable("FOTA_TRIAL"), "");
}

INSTANTIATE_TEST_SUITE_P(Transports, FotaDeviceSigtermTest, ::testing::Values("paho", "mosquitto"),
                         [](const ::testing::TestParamInfo<std::string>& param_info) {
                           return param_info.param;
                         });

// An agent that cannot start its update client (here: the boot status cannot be recorded, as
// the environment block has no room for the booted slot's tries) ends with a failure status on
// both transports, so systemd's Restart=on-failure restarts it and the journal says why. On the
// Paho transport it once exited 0: the failure ended a loop thread nobody asked.
// docs/SECURITY.md, "Signed commands": someone who can publish on a device's command topic with
// the orchestrator role but does not hold the command key (a stolen orchestrator certificate, an
// ACL bypass, a compromised broker) forges commands with mosquitto_pub through the broker plugin.
// The agent refuses each before reading it and answers none; the forged command id is not spent,
// so the genuine command with that id still runs to its end.
TEST_F(FotaDeviceTest, ForgedCommandsPublishedWithMosquittoPubAreRefusedByTheAgent) {
  fota::testing::BrokerOptions options;
  options.with_plugin = true;
  options.plugin_options = {{"artifact_dir", store_->root().string()}};
  plugin_broker_ =
      std::make_unique<fota::testing::MosquittoBroker>(pki_, dir_.path() / "plugin-broker", options);
  make_grub_device();
  connect_server();
  boot_device();
  wait_device_online();

  const v1::Command wanted = install_command("c1");
  auto attacker_key = common::Ed25519PrivateKey::generate();
  ASSERT_TRUE(attacker_key.ok());
  auto genuine = common::decode<v1::Command>(testing::signed_command(wanted), common::kMaxCommandBytes);
  ASSERT_TRUE(genuine.ok());
  auto rekeyed =
      common::decode<v1::Command>(testing::signed_command(wanted, *attacker_key), common::kMaxCommandBytes);
  ASSERT_TRUE(rekeyed.ok());
  rekeyed->mutable_signature()->set_key_id(genuine->signature().key_id());
  v1::Command altered = *genuine;  // the orchestrator's signature over other bytes
  altered.set_deployment_id("dep-evil");
  const std::pair<const char*, std::string> forged[] = {
      {"unsigned", common::encode(wanted)},
      {"signed-by-attacker", testing::signed_command(wanted, *attacker_key)},
      {"re-signed-under-the-orchestrator-key-id", common::encode(*rekeyed)},
      {"altered-after-signing", common::encode(altered)},
  };
  const auto mallory = pki_.issue(common::Role::kOrchestrator, "mallory");
  for (const auto& [name, payload] : forged) {
    const auto file = dir_.path() / (std::string(name) + ".pb");
    std::ofstream(file, std::ios::binary) << payload;
    const auto published = fota::testing::run_command(
        std::string(FOTA_MOSQUITTO_PUB) + " -h 127.0.0.1 -p " + std::to_string(plugin_broker_->port()) +
        " --cafile " + pki_.ca_cert().string() + " --cert " + mallory.cert.string() + " --key " +
        mallory.key.string() + " -i mallory -V mqttv5 -q 1 -t " +
        topics_.device_topic(device_id_, Channel::kCommand) + " -f " + file.string());
    ASSERT_EQ(published.exit_code, 0) << name << ": " << published.output;
  }

  // Each reached the agent (the plugin lets the orchestrator role publish commands) and was refused.
  const auto refusals = [&] {
    const std::string logs = agent_logs();
    std::size_t n = 0;
    for (auto at = logs.find("refused a command of"); at != std::string::npos;
         at = logs.find("refused a command of", at + 1)) {
      ++n;
    }
    return n;
  };
  for (int i = 0; i < 200 && refusals() < std::size(forged); ++i) (void)serve(100ms);
  ASSERT_EQ(refusals(), std::size(forged)) << agent_logs();
  const std::string logs = agent_logs();
  EXPECT_NE(logs.find("command is not signed"), std::string::npos) << logs;
  EXPECT_NE(logs.find("not among this device's command keys"), std::string::npos) << logs;
  EXPECT_NE(logs.find("does not verify"), std::string::npos) << logs;
  EXPECT_TRUE(phases_.empty()) << "the agent answered a forged command";
  EXPECT_EQ(boot_variable("FOTA_TRIAL"), "");

  send_command(wanted);
  const v1::Progress last = serve_until_terminal();
  EXPECT_EQ(last.phase(), v1::PHASE_COMMITTED) << last.error_detail() << "\n" << agent_logs();
  EXPECT_EQ(last.command_id(), "c1");
}

TEST_F(FotaDeviceTest, AnAgentThatCannotStartEndsWithAFailure) {
  make_grub_device();
  // 1003 of the block's 1024 bytes (more than grub-editenv itself would write).
  ASSERT_TRUE(GrubEnvironment(grubenv()).set({{"filler", std::string(970, 'x')}}).ok());
  std::ofstream(cmdline()) << "console=ttyS0 fota.slot=a\n";
  for (const char* transport : {"paho", "mosquitto"}) {
    SCOPED_TRACE(transport);
    const auto run =
        fota::testing::run_command(std::string(FOTA_DEVICE_BIN) + " --config " +
                                   (agent_dir() / "device.yaml").string() + " --transport " + transport);
    EXPECT_EQ(run.exit_code, 1) << run.output;
    EXPECT_NE(run.output.find("more than its 1024-byte block"), std::string::npos) << run.output;
  }
}

// The shipped example configuration is valid: the agent gets past the config and stops at the
// first thing a build machine lacks (the artifact signing keys in /etc/fota/keys).
TEST(FotaDeviceConfig, TheExampleConfigurationLoads) {
  const auto run =
      fota::testing::run_command(std::string(FOTA_DEVICE_BIN) + " --config " + FOTA_EXAMPLE_DEVICE_CONFIG);
  EXPECT_EQ(run.exit_code, 2) << run.output;
  EXPECT_EQ(run.output.find("config "), std::string::npos) << run.output;
  EXPECT_NE(run.output.find("cannot load the artifact signing keys from /etc/fota/keys"), std::string::npos)
      << run.output;
}

// A bad configuration stops the agent at once with a message that names the key and what to do.
TEST(FotaDeviceConfig, BadBootLoaderSettingsAreRefusedWithTheReason) {
  fota::testing::TempDir dir;
  struct Bad {
    std::string yaml;
    std::string says;
  };
  const Bad bad[] = {
      {"bootloader: lilo\n", "bootloader 'lilo' is not one of grub, uboot, simulated"},
      {"bootloader: grub\n", "bootloader 'grub' needs 'grubenv'"},
      {"bootloader: uboot\n", "bootloader 'uboot' needs 'fw_env_config'"},
      {"bootloader: simulated\ngrubenv: /boot/grub/grubenv\n",
       "'grubenv' is set but bootloader is 'simulated'; set bootloader: grub"},
      {"bootloader: grub\ngrubenv: grubenv\nboot_tries: 12\n", "boot_tries 12 is outside 1..9"},
      {"bootloader: grub\ngrubenv: grubenv\nreboot_command: ''\n", "reboot_command is empty"},
  };
  const std::string common_keys =
      "device_id: d1\nhardware_type: hw\nbroker: ssl://127.0.0.1:1\nca: ca.pem\ncert: c.pem\nkey: k.pem\n"
      "trust: keys\ncommand_keys: command-keys\nstate_dir: state\n";
  for (const auto& b : bad) {
    SCOPED_TRACE(b.yaml);
    const auto config = dir.path() / "device.yaml";
    std::ofstream(config) << common_keys << b.yaml;
    const auto run =
        fota::testing::run_command(std::string(FOTA_DEVICE_BIN) + " --config " + config.string());
    EXPECT_EQ(run.exit_code, 2) << run.output;
    EXPECT_NE(run.output.find(b.says), std::string::npos) << run.output;
  }
}

}  // namespace
}  // namespace fota::client

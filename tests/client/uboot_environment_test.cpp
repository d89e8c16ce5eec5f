// SPDX-License-Identifier: Apache-2.0
// UBootEnvironment against U-Boot's own tools: environment images made with mkenvimage
// (u-boot-tools) and read back with fw_printenv (libubootenv-tool), single and redundant.
#include "fota/client/uboot_environment.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "fota/testing/broker.hpp"
#include "fota/testing/command.hpp"

#if !defined(FOTA_MKENVIMAGE) || !defined(FOTA_FW_PRINTENV)
#error "FOTA_MKENVIMAGE and FOTA_FW_PRINTENV must be defined by CMake"
#endif

namespace fota::client {
namespace {

constexpr const char* kEnvSize = "0x4000";

class UBootEnvironmentTest : public ::testing::Test {
 protected:
  std::filesystem::path path(const std::string& name) const { return dir_.path() / name; }

  // An environment image of `text` ("name=value" lines) made by U-Boot's mkenvimage.
  void make_image(const std::string& image, const std::string& text, bool redundant = false) {
    std::ofstream(path("env.txt")) << text;
    const auto run =
        fota::testing::run_command(std::string(FOTA_MKENVIMAGE) + (redundant ? " -r" : "") + " -s " +
                                   kEnvSize + " -o " + path(image).string() + " " + path("env.txt").string());
    ASSERT_EQ(run.exit_code, 0) << run.output;
  }
  // An fw_env.config with one line per copy.
  std::filesystem::path make_config(const std::vector<std::string>& images) {
    std::ofstream out(path("fw_env.config"));
    out << "# device offset size\n";
    for (const auto& image : images) out << path(image).string() << " 0x0 " << kEnvSize << "\n";
    return path("fw_env.config");
  }
  fota::testing::CommandRun printenv(const std::string& names = "") const {
    return fota::testing::run_command(std::string(FOTA_FW_PRINTENV) + " -c " +
                                      path("fw_env.config").string() + " " + names);
  }

  fota::testing::TempDir dir_;
};

TEST_F(UBootEnvironmentTest, ReadsAnImageMadeByMkenvimage) {
  make_image("env.img", "FOTA_ORDER=b a\nFOTA_A_LEFT=3\nbootcmd=run fota\n");
  UBootEnvironment env(make_config({"env.img"}));
  auto vars = env.load();
  ASSERT_TRUE(vars.ok()) << vars.error().to_string();
  EXPECT_EQ(vars->at("FOTA_ORDER"), "b a");
  EXPECT_EQ(vars->at("FOTA_A_LEFT"), "3");
  EXPECT_EQ(vars->at("bootcmd"), "run fota");
}

TEST_F(UBootEnvironmentTest, FwPrintenvReadsWhatItWrote) {
  make_image("env.img", "bootcmd=run fota\nFOTA_TRIAL=b\n");
  UBootEnvironment env(make_config({"env.img"}));
  ASSERT_TRUE(env.set({{"FOTA_ORDER", "b a"}, {"FOTA_B_LEFT", "3"}, {"FOTA_TRIAL", ""}}).ok());
  const auto listed = printenv();
  ASSERT_EQ(listed.exit_code, 0) << listed.output;
  EXPECT_NE(listed.output.find("FOTA_ORDER=b a\n"), std::string::npos) << listed.output;
  EXPECT_NE(listed.output.find("FOTA_B_LEFT=3\n"), std::string::npos) << listed.output;
  EXPECT_NE(listed.output.find("bootcmd=run fota\n"), std::string::npos) << "other variables are kept";
  EXPECT_EQ(listed.output.find("FOTA_TRIAL"), std::string::npos) << "an empty value removes the variable";
  EXPECT_EQ(std::filesystem::file_size(path("env.img")), 0x4000U);
}

TEST_F(UBootEnvironmentTest, RedundantCopiesSurviveATornWrite) {
  make_image("env1.img", "bootcmd=run fota\n", /*redundant=*/true);
  make_image("env2.img", "bootcmd=run fota\n", /*redundant=*/true);
  UBootEnvironment env(make_config({"env1.img", "env2.img"}));
  ASSERT_TRUE(env.set({{"FOTA_A_LEFT", "1"}}).ok());
  ASSERT_TRUE(env.set({{"FOTA_A_LEFT", "2"}}).ok());
  EXPECT_EQ(printenv("FOTA_A_LEFT").output, "FOTA_A_LEFT=2\n");
  // Tear the copy holding the newest write (a power cut in the middle of it): the older copy,
  // with the write before, is what U-Boot and the agent then read.
  const std::string newest = [&] {
    for (const char* image : {"env1.img", "env2.img"}) {
      std::ifstream in(path(image), std::ios::binary);
      std::ostringstream bytes;
      bytes << in.rdbuf();
      if (bytes.str().find("FOTA_A_LEFT=2") != std::string::npos) return std::string(image);
    }
    return std::string();
  }();
  ASSERT_FALSE(newest.empty());
  {
    std::fstream torn(path(newest), std::ios::in | std::ios::out | std::ios::binary);
    torn.seekp(8);
    torn << "torn write";
  }
  auto vars = env.load();
  ASSERT_TRUE(vars.ok()) << vars.error().to_string();
  EXPECT_EQ(vars->at("FOTA_A_LEFT"), "1");
  EXPECT_EQ(printenv("FOTA_A_LEFT").output, "FOTA_A_LEFT=1\n");
}

TEST_F(UBootEnvironmentTest, TheBootSchemeRunsOverAUBootEnvironment) {
  make_image("env.img", "bootcmd=run fota\n");
  UBootEnvironment env(make_config({"env.img"}));
  auto chooser = BootChooser::create({});
  ASSERT_TRUE(chooser.ok());
  BootControl boot(env, *chooser, cmdline_file(path("cmdline")));
  ASSERT_EQ(*simulate_bootloader(env, *chooser, path("cmdline")), "a");
  ASSERT_TRUE(boot.boot_status().ok());
  ASSERT_TRUE(boot.activate("b").ok());
  EXPECT_EQ(printenv("FOTA_ORDER FOTA_TRIAL").output, "FOTA_ORDER=b a\nFOTA_TRIAL=b\n");
  ASSERT_EQ(*simulate_bootloader(env, *chooser, path("cmdline")), "b");
  auto status = boot.boot_status();
  ASSERT_TRUE(status.ok());
  EXPECT_TRUE(status->trial);
  ASSERT_TRUE(boot.commit("b").ok());
  EXPECT_EQ(printenv("FOTA_ORDER FOTA_B_LEFT").output, "FOTA_ORDER=b a\nFOTA_B_LEFT=3\n");
}

TEST_F(UBootEnvironmentTest, ProblemsAreReportedWithWhatToCheck) {
  UBootEnvironment missing_config(path("nope.config"));
  auto vars = missing_config.load();
  ASSERT_FALSE(vars.ok());
  EXPECT_EQ(vars.error().code, common::Errc::kNotFound);
  EXPECT_NE(vars.error().message.find("fw_env.config"), std::string::npos) << vars.error().message;

  // The config names a device that is not there.
  UBootEnvironment missing_device(make_config({"absent.img"}));
  vars = missing_device.load();
  ASSERT_FALSE(vars.ok());
  EXPECT_EQ(vars.error().code, common::Errc::kInvalidArgument);
  EXPECT_NE(vars.error().message.find("naming devices or files that exist"), std::string::npos)
      << vars.error().message;

  // Bytes that are no environment (no valid CRC): refused, not taken for an empty environment.
  std::ofstream(path("garbage.img"), std::ios::binary) << std::string(0x4000, 'x');
  UBootEnvironment garbage(make_config({"garbage.img"}));
  vars = garbage.load();
  ASSERT_FALSE(vars.ok());
  EXPECT_EQ(vars.error().code, common::Errc::kIo);
  // A failed open must not leave libubootenv's lock held: the next one (and a good one) works.
  EXPECT_FALSE(garbage.set({{"FOTA_ORDER", "a b"}}).ok());
  make_image("env.img", "bootcmd=run fota\n");
  UBootEnvironment good(make_config({"env.img"}));
  EXPECT_TRUE(good.set({{"FOTA_ORDER", "a b"}}).ok());
}

}  // namespace
}  // namespace fota::client

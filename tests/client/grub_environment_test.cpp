// SPDX-License-Identifier: Apache-2.0
// GrubEnvironment against GRUB's own grub-editenv: what one writes the other reads, and the
// block stays exactly 1024 bytes (GRUB's save_env rewrites the file's blocks in place).
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "fota/client/boot_environment.hpp"
#include "fota/testing/broker.hpp"
#include "fota/testing/command.hpp"

#ifndef FOTA_GRUB_EDITENV
#error "FOTA_GRUB_EDITENV (the path of grub-editenv) must be defined by CMake"
#endif

namespace fota::client {
namespace {

std::string read_all(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

class GrubEnvironmentTest : public ::testing::Test {
 protected:
  std::filesystem::path grubenv() const { return dir_.path() / "grubenv"; }
  testing::CommandRun editenv(const std::string& args) {
    return testing::run_command(std::string(FOTA_GRUB_EDITENV) + " " + grubenv().string() + " " + args);
  }
  fota::testing::TempDir dir_;
};

TEST_F(GrubEnvironmentTest, ReadsWhatGrubEditenvWrote) {
  ASSERT_EQ(editenv("create").exit_code, 0);
  ASSERT_EQ(editenv("set FOTA_ORDER='b a' FOTA_A_LEFT=3 FOTA_B_LEFT=0 'odd=back\\slash'").exit_code, 0);
  GrubEnvironment env(grubenv());
  auto vars = env.load();
  ASSERT_TRUE(vars.ok()) << vars.error().to_string();
  EXPECT_EQ(vars->at("FOTA_ORDER"), "b a");
  EXPECT_EQ(vars->at("FOTA_A_LEFT"), "3");
  EXPECT_EQ(vars->at("FOTA_B_LEFT"), "0");
  EXPECT_EQ(vars->at("odd"), "back\\slash");
}

TEST_F(GrubEnvironmentTest, GrubEditenvReadsWhatItWroteAndTheBlockStays1024Bytes) {
  ASSERT_EQ(editenv("create").exit_code, 0);
  ASSERT_EQ(editenv("set saved_entry=1 FOTA_A_LEFT=2").exit_code, 0);
  GrubEnvironment env(grubenv());
  ASSERT_TRUE(
      env.set({{"FOTA_ORDER", "b a"}, {"FOTA_A_LEFT", "3"}, {"FOTA_TRIAL", ""}, {"line", "one\ntwo"}}).ok());
  EXPECT_EQ(std::filesystem::file_size(grubenv()), 1024U);
  const auto listed = editenv("list");
  ASSERT_EQ(listed.exit_code, 0) << listed.output;
  // Existing variables keep their place, new ones follow, and a newline survives escaped.
  EXPECT_EQ(listed.output, "saved_entry=1\nFOTA_A_LEFT=3\nFOTA_ORDER=b a\nFOTA_TRIAL=\nline=one\ntwo\n");
  // And grub-editenv can still change it in place.
  ASSERT_EQ(editenv("set FOTA_B_LEFT=1").exit_code, 0);
  auto vars = env.load();
  ASSERT_TRUE(vars.ok());
  EXPECT_EQ(vars->at("FOTA_B_LEFT"), "1");
  EXPECT_EQ(vars->at("line"), "one\ntwo");
  EXPECT_EQ(std::filesystem::file_size(grubenv()), 1024U);
}

TEST_F(GrubEnvironmentTest, TheBootSchemeRunsOverAGrubenvBlock) {
  ASSERT_EQ(editenv("create").exit_code, 0);
  GrubEnvironment env(grubenv());
  auto chooser = BootChooser::create({});
  ASSERT_TRUE(chooser.ok());
  const auto cmdline = dir_.path() / "cmdline";
  BootControl boot(env, *chooser, cmdline_file(cmdline));
  ASSERT_EQ(*simulate_bootloader(env, *chooser, cmdline), "a");
  ASSERT_TRUE(boot.boot_status().ok());
  ASSERT_TRUE(boot.activate("b").ok());
  ASSERT_EQ(*simulate_bootloader(env, *chooser, cmdline), "b");
  auto status = boot.boot_status();
  ASSERT_TRUE(status.ok());
  EXPECT_TRUE(status->trial);
  ASSERT_TRUE(boot.commit("b").ok());
  const auto listed = editenv("list");
  EXPECT_NE(listed.output.find("FOTA_ORDER=b a\n"), std::string::npos) << listed.output;
  EXPECT_NE(listed.output.find("FOTA_B_LEFT=3\n"), std::string::npos) << listed.output;
  EXPECT_NE(listed.output.find("FOTA_TRIAL=\n"), std::string::npos) << listed.output;
}

TEST_F(GrubEnvironmentTest, AMissingFileSaysHowToCreateIt) {
  GrubEnvironment env(grubenv());
  auto vars = env.load();
  ASSERT_FALSE(vars.ok());
  EXPECT_EQ(vars.error().code, common::Errc::kNotFound);
  EXPECT_NE(vars.error().message.find("grub-editenv " + grubenv().string() + " create"), std::string::npos)
      << vars.error().message;
  EXPECT_FALSE(env.set({{"FOTA_ORDER", "a b"}}).ok());
  EXPECT_FALSE(std::filesystem::exists(grubenv())) << "the agent must not invent a grubenv GRUB never reads";
}

TEST_F(GrubEnvironmentTest, AFileThatIsNotAnEnvironmentBlockIsRefused) {
  std::ofstream(grubenv()) << "FOTA_ORDER=a b\n";
  GrubEnvironment env(grubenv());
  auto vars = env.load();
  ASSERT_FALSE(vars.ok());
  EXPECT_EQ(vars.error().code, common::Errc::kMalformed);
  EXPECT_NE(vars.error().message.find("not a GRUB environment block"), std::string::npos);
  EXPECT_FALSE(env.set({{"FOTA_ORDER", "a b"}}).ok());
  EXPECT_EQ(read_all(grubenv()), "FOTA_ORDER=a b\n") << "a refused write leaves the file alone";
}

// GRUB finds the block through the file's existing disk blocks and does not replay a journal:
// a write must go over those blocks (same inode), never into a replacement file.
TEST_F(GrubEnvironmentTest, AWriteGoesOverTheFilesOwnBlocks) {
  ASSERT_EQ(editenv("create").exit_code, 0);
  const auto inode = [&] {
    struct stat st {};
    EXPECT_EQ(::stat(grubenv().c_str(), &st), 0);
    return st.st_ino;
  };
  const auto before = inode();
  GrubEnvironment env(grubenv());
  ASSERT_TRUE(env.set({{"FOTA_ORDER", "b a"}, {"FOTA_B_LEFT", "3"}}).ok());
  EXPECT_EQ(inode(), before) << "the block was replaced by another file";
  EXPECT_EQ(editenv("list").output, "FOTA_B_LEFT=3\nFOTA_ORDER=b a\n");
}

TEST_F(GrubEnvironmentTest, ABlockOfTheWrongSizeIsRefusedWithHowToMakeIt) {
  ASSERT_EQ(editenv("create").exit_code, 0);
  std::ofstream(grubenv(), std::ios::app) << "#";  // 1025 bytes
  GrubEnvironment env(grubenv());
  auto vars = env.load();
  ASSERT_FALSE(vars.ok());
  EXPECT_EQ(vars.error().code, common::Errc::kMalformed);
  EXPECT_NE(vars.error().message.find("is 1025 bytes, not 1024"), std::string::npos) << vars.error().message;
  EXPECT_NE(vars.error().message.find("grub-editenv"), std::string::npos) << vars.error().message;
  EXPECT_FALSE(env.set({{"FOTA_ORDER", "a b"}}).ok());
  EXPECT_EQ(std::filesystem::file_size(grubenv()), 1025U) << "a refused write leaves the file alone";
}

TEST_F(GrubEnvironmentTest, VariablesThatDoNotFitAreRefusedAndTheBlockIsKept) {
  ASSERT_EQ(editenv("create").exit_code, 0);
  const std::string before = read_all(grubenv());
  GrubEnvironment env(grubenv());
  auto s = env.set({{"big", std::string(1100, 'x')}});
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code, common::Errc::kTooLarge);
  EXPECT_NE(s.error().message.find("1024"), std::string::npos) << s.error().message;
  EXPECT_EQ(read_all(grubenv()), before);
}

TEST_F(GrubEnvironmentTest, BadNamesAreRefused) {
  ASSERT_EQ(editenv("create").exit_code, 0);
  GrubEnvironment env(grubenv());
  for (const std::string name : {"", "a=b", "#x", "new\nline"}) {
    auto s = env.set({{name, "1"}});
    ASSERT_FALSE(s.ok()) << name;
    EXPECT_EQ(s.error().code, common::Errc::kInvalidArgument) << name;
  }
}

TEST(GrubEnvironmentFormat, ParsesCommentsPaddingAndEscapes) {
  auto entries =
      GrubEnvironment::parse("# GRUB Environment Block\n# a comment\nk=v\nesc=a\\\\b\\\nc\nempty=\n########");
  ASSERT_TRUE(entries.ok()) << entries.error().to_string();
  const GrubEnvironment::Entries expected = {{"k", "v"}, {"esc", "a\\b\nc"}, {"empty", ""}};
  EXPECT_EQ(*entries, expected);
  EXPECT_FALSE(GrubEnvironment::parse("# GRUB Environment Block\nnoequals\n").ok());
  EXPECT_FALSE(GrubEnvironment::parse("# GRUB Environment Block\nk=unterminated").ok());
}

}  // namespace
}  // namespace fota::client

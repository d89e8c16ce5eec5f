// SPDX-License-Identifier: Apache-2.0
// The fota boot scheme, table-driven: each case is a device's life as a list of steps, the boot
// loader's (choose) and the agent's (booted, activate, commit, revert), with the variables and
// decisions expected after each.
#include "fota/client/boot_chooser.hpp"

#include <gtest/gtest.h>

#include <sstream>

namespace fota::client {
namespace {

enum class Op {
  kPowerOn,   // the boot loader chooses; `arg` is the slot it must boot ("a!" = after a reset)
  kAgentUp,   // the agent reads its status; `arg`: "trial", "committed", "abandoned:<slot>"
  kActivate,  // `arg` = slot
  kCommit,
  kRevert,
  kOverwrite,  // an image starts into `arg` while the booted slot runs
};

struct Step {
  Op op;
  std::string arg;
  // Variables that must hold after the step: "FOTA_ORDER=b a, FOTA_B_LEFT=2" ("" = anything).
  std::string expect;
};

struct Case {
  std::string name;
  BootVariables initial;
  std::vector<Step> steps;
};

BootVariables parse_expect(const std::string& text) {
  BootVariables out;
  std::istringstream in(text);
  for (std::string item; std::getline(in, item, ',');) {
    while (!item.empty() && item.front() == ' ') item.erase(item.begin());
    const auto eq = item.find('=');
    if (eq != std::string::npos) out[item.substr(0, eq)] = item.substr(eq + 1);
  }
  return out;
}

void merge(BootVariables& vars, const BootVariables& updates) {
  for (const auto& [k, v] : updates) vars[k] = v;
}

const std::vector<Case>& cases() {
  static const std::vector<Case> kCases = {
      {"FactoryBootOfTheFirstSlot",
       {},
       {
           {Op::kPowerOn, "a", "FOTA_A_LEFT=2"},
           {Op::kAgentUp, "committed", "FOTA_ORDER=a b, FOTA_A_LEFT=3"},
           {Op::kPowerOn, "a", "FOTA_A_LEFT=2"},
       }},
      {"ActivateTrialBootCommit",
       {},
       {
           {Op::kPowerOn, "a", ""},
           {Op::kAgentUp, "committed", ""},
           {Op::kActivate, "b", "FOTA_ORDER=b a, FOTA_B_LEFT=3, FOTA_TRIAL=b, FOTA_A_LEFT=3"},
           {Op::kPowerOn, "b", "FOTA_B_LEFT=2"},
           {Op::kAgentUp, "trial", "FOTA_B_LEFT=2"},  // a trial's tries keep counting
           {Op::kCommit, "b", "FOTA_ORDER=b a, FOTA_B_LEFT=3, FOTA_TRIAL="},
           {Op::kPowerOn, "b", "FOTA_B_LEFT=2"},
           {Op::kAgentUp, "committed", "FOTA_B_LEFT=3"},
       }},
      {"TrialThatNeverReachesTheAgentFallsBackWhenItsTriesRunOut",
       {},
       {
           {Op::kPowerOn, "a", ""},
           {Op::kAgentUp, "committed", ""},
           {Op::kActivate, "b", ""},
           {Op::kPowerOn, "b", "FOTA_B_LEFT=2"},
           {Op::kPowerOn, "b", "FOTA_B_LEFT=1"},
           {Op::kPowerOn, "b", "FOTA_B_LEFT=0"},
           {Op::kPowerOn, "a", "FOTA_B_LEFT=0, FOTA_A_LEFT=2"},
           {Op::kAgentUp, "abandoned:b", "FOTA_A_LEFT=3, FOTA_ORDER=b a"},
           {Op::kRevert, "a", "FOTA_ORDER=a b, FOTA_A_LEFT=3, FOTA_B_LEFT=0, FOTA_TRIAL="},
           {Op::kPowerOn, "a", ""},
           {Op::kAgentUp, "committed", ""},
       }},
      {"FailedHealthCheckRevertsAndTheRejectedSlotIsNeverFallenBackTo",
       {},
       {
           {Op::kPowerOn, "a", ""},
           {Op::kActivate, "b", ""},
           {Op::kPowerOn, "b", ""},
           {Op::kAgentUp, "trial", ""},
           {Op::kRevert, "a", "FOTA_ORDER=a b, FOTA_A_LEFT=3, FOTA_B_LEFT=0, FOTA_TRIAL="},
           {Op::kPowerOn, "a", "FOTA_A_LEFT=2"},
           {Op::kPowerOn, "a", "FOTA_A_LEFT=1"},
           {Op::kPowerOn, "a", "FOTA_A_LEFT=0"},
           // a broke too: no slot has tries left, so both get them back, a first.
           {Op::kPowerOn, "a!", "FOTA_A_LEFT=2, FOTA_B_LEFT=3"},
       }},
      {"ASlotBeingWrittenIsNeverBootedEvenWhenTheRunningSlotStopsBooting",
       {},
       {
           {Op::kPowerOn, "a", ""},
           {Op::kActivate, "b", ""},
           {Op::kPowerOn, "b", ""},
           {Op::kAgentUp, "trial", ""},
           {Op::kCommit, "b", "FOTA_ORDER=b a, FOTA_A_LEFT=2, FOTA_B_LEFT=3"},
           {Op::kOverwrite, "a", "FOTA_ORDER=b a, FOTA_A_LEFT=0, FOTA_B_LEFT=3"},
           // b stops coming up before a's image is complete: b, b, b, then the reset picks b.
           {Op::kPowerOn, "b", "FOTA_B_LEFT=2"},
           {Op::kPowerOn, "b", "FOTA_B_LEFT=1"},
           {Op::kPowerOn, "b", "FOTA_B_LEFT=0"},
           {Op::kPowerOn, "b!", "FOTA_B_LEFT=2"},
           // A finished image gets its tries when it is activated.
           {Op::kAgentUp, "committed", ""},
           {Op::kActivate, "a", "FOTA_ORDER=a b, FOTA_A_LEFT=3, FOTA_TRIAL=a"},
       }},
      {"BothSlotsExhaustedResetsAndBootsTheFirstInOrder",
       {{"FOTA_ORDER", "b a"}, {"FOTA_A_LEFT", "0"}, {"FOTA_B_LEFT", "0"}},
       {
           {Op::kPowerOn, "b!", "FOTA_B_LEFT=2, FOTA_A_LEFT=3"},
           {Op::kPowerOn, "b", "FOTA_B_LEFT=1"},
       }},
      {"CommittedSlotThatStopsBootingFallsBackAndTheOtherBecomesFirst",
       {{"FOTA_ORDER", "a b"}, {"FOTA_A_LEFT", "1"}, {"FOTA_B_LEFT", "3"}},
       {
           {Op::kPowerOn, "a", "FOTA_A_LEFT=0"},
           {Op::kPowerOn, "b", "FOTA_B_LEFT=2"},
           {Op::kAgentUp, "committed", "FOTA_ORDER=b a, FOTA_B_LEFT=3, FOTA_A_LEFT=0"},
       }},
      {"AgentRestartBeforeTheRebootLeavesTheActivationAlone",
       {},
       {
           {Op::kPowerOn, "a", ""},
           {Op::kActivate, "b", "FOTA_ORDER=b a, FOTA_B_LEFT=3"},
           {Op::kAgentUp, "committed", "FOTA_ORDER=b a, FOTA_B_LEFT=3, FOTA_TRIAL=b"},
           {Op::kPowerOn, "b", ""},
           {Op::kAgentUp, "trial", ""},
       }},
      {"UnreadableTriesCountAsNone",
       {{"FOTA_ORDER", "a b"}, {"FOTA_A_LEFT", "x"}, {"FOTA_B_LEFT", "10"}},
       {
           {Op::kPowerOn, "a!", "FOTA_A_LEFT=2, FOTA_B_LEFT=3"},
       }},
      {"UnknownNamesInTheOrderAreSkipped",
       {{"FOTA_ORDER", "c b"}, {"FOTA_B_LEFT", "2"}},
       {
           {Op::kPowerOn, "b", "FOTA_B_LEFT=1"},
           {Op::kAgentUp, "committed", "FOTA_ORDER=b a, FOTA_B_LEFT=3"},
       }},
  };
  return kCases;
}

class BootSchemeTest : public ::testing::TestWithParam<Case> {};

TEST_P(BootSchemeTest, FollowsTheScheme) {
  const Case& c = GetParam();
  auto chooser = BootChooser::create({});
  ASSERT_TRUE(chooser.ok());
  BootVariables vars = c.initial;
  std::string booted;
  for (std::size_t i = 0; i < c.steps.size(); ++i) {
    const Step& step = c.steps[i];
    SCOPED_TRACE("step " + std::to_string(i));
    switch (step.op) {
      case Op::kPowerOn: {
        const BootChoice choice = chooser->choose(vars);
        const bool reset = step.arg.back() == '!';
        EXPECT_EQ(choice.slot, reset ? step.arg.substr(0, step.arg.size() - 1) : step.arg);
        EXPECT_EQ(choice.reset, reset);
        merge(vars, choice.updates);
        booted = choice.slot;
        break;
      }
      case Op::kAgentUp: {
        auto up = chooser->booted(vars, booted);
        ASSERT_TRUE(up.ok()) << up.error().to_string();
        EXPECT_EQ(up->status.booted_slot, booted);
        EXPECT_EQ(up->status.trial, step.arg == "trial");
        const std::string abandoned = step.arg.rfind("abandoned:", 0) == 0 ? step.arg.substr(10) : "";
        EXPECT_EQ(up->abandoned_trial, abandoned);
        merge(vars, up->updates);
        break;
      }
      case Op::kOverwrite: {
        auto updates = chooser->overwrite(step.arg, booted);
        ASSERT_TRUE(updates.ok()) << updates.error().to_string();
        merge(vars, *updates);
        break;
      }
      case Op::kActivate:
      case Op::kCommit:
      case Op::kRevert: {
        auto updates = step.op == Op::kActivate ? chooser->activate(vars, step.arg)
                       : step.op == Op::kCommit ? chooser->commit(vars, step.arg)
                                                : chooser->revert(vars, step.arg);
        ASSERT_TRUE(updates.ok()) << updates.error().to_string();
        merge(vars, *updates);
        break;
      }
    }
    for (const auto& [key, value] : parse_expect(step.expect)) EXPECT_EQ(vars[key], value) << key;
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, BootSchemeTest, ::testing::ValuesIn(cases()),
                         [](const ::testing::TestParamInfo<Case>& param_info) {
                           return param_info.param.name;
                         });

TEST(BootChooser, TheRunningSlotIsNeverOverwritten) {
  auto chooser = BootChooser::create({});
  ASSERT_TRUE(chooser.ok());
  auto refused = chooser->overwrite("a", "a");
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, common::Errc::kInvalidArgument);
  EXPECT_NE(refused.error().message.find("the one running"), std::string::npos);
  EXPECT_FALSE(chooser->overwrite("c", "a").ok());
}

TEST(BootChooser, AgentUpTwiceChangesNothingTheSecondTime) {
  auto chooser = BootChooser::create({});
  BootVariables vars;
  merge(vars, chooser->choose(vars).updates);
  merge(vars, chooser->booted(vars, "a")->updates);
  EXPECT_TRUE(chooser->booted(vars, "a")->updates.empty()) << "boot_status() must be idempotent";
}

TEST(BootChooser, ConfiguredTriesAreWhatActivateAndCommitGive) {
  auto chooser = BootChooser::create({{"a", "b"}, 5});
  ASSERT_TRUE(chooser.ok());
  BootVariables vars;
  merge(vars, *chooser->activate(vars, "b"));
  EXPECT_EQ(vars["FOTA_B_LEFT"], "5");
  for (int left = 4; left >= 0; --left) {
    const BootChoice choice = chooser->choose(vars);
    EXPECT_EQ(choice.slot, "b");
    merge(vars, choice.updates);
    EXPECT_EQ(vars["FOTA_B_LEFT"], std::to_string(left));
  }
  EXPECT_EQ(chooser->choose(vars).slot, "a");
}

TEST(BootChooser, RefusesABadSchemeWithTheReason) {
  struct Bad {
    BootSchemeConfig config;
    std::string says;
  };
  const Bad bad[] = {
      {{{}, 3}, "at least one slot"},     {{{"a", "B"}, 3}, "'B' is not usable"},
      {{{"a", "a"}, 3}, "listed twice"},  {{{"a", "b"}, 0}, "outside 1..9"},
      {{{"a", "b"}, 10}, "outside 1..9"},
  };
  for (const auto& b : bad) {
    auto chooser = BootChooser::create(b.config);
    ASSERT_FALSE(chooser.ok()) << b.says;
    EXPECT_EQ(chooser.error().code, common::Errc::kInvalidArgument);
    EXPECT_NE(chooser.error().message.find(b.says), std::string::npos) << chooser.error().message;
  }
}

TEST(BootChooser, AgentCallsNameUnknownSlots) {
  auto chooser = BootChooser::create({});
  BootVariables vars;
  auto activate = chooser->activate(vars, "c");
  ASSERT_FALSE(activate.ok());
  EXPECT_NE(activate.error().message.find("no slot named 'c'"), std::string::npos);
  auto up = chooser->booted(vars, "c");
  ASSERT_FALSE(up.ok());
  EXPECT_EQ(up.error().code, common::Errc::kNotFound);
}

TEST(BootChooser, TriesVariableNamesAreUpperCase) {
  EXPECT_EQ(BootChooser::tries_variable("a"), "FOTA_A_LEFT");
  EXPECT_EQ(BootChooser::tries_variable("r2"), "FOTA_R2_LEFT");
}

TEST(KernelCmdline, TheSlotComesFromFotaSlot) {
  EXPECT_EQ(*slot_from_kernel_cmdline("BOOT_IMAGE=/vmlinuz root=/dev/vda3 fota.slot=b quiet\n"), "b");
  EXPECT_EQ(*slot_from_kernel_cmdline("fota.slot=a fota.slot=b"), "b") << "the last one wins";
  EXPECT_EQ(*slot_from_kernel_cmdline(kernel_cmdline_for_slot("a")), "a");
  auto none = slot_from_kernel_cmdline("root=/dev/vda2 notfota.slot=a");
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.error().code, common::Errc::kNotFound);
  EXPECT_NE(none.error().message.find("fota.slot="), std::string::npos);
  auto empty = slot_from_kernel_cmdline("fota.slot= quiet");
  ASSERT_FALSE(empty.ok());
  EXPECT_EQ(empty.error().code, common::Errc::kMalformed);
}

}  // namespace
}  // namespace fota::client
